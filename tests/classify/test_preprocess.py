"""prepare(): the crop, padding, colour and resize that training and sorting share."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from capture.vision.colour import apply_colour_matrix
from classify.preprocess import CROP_MARGIN, prepare, prepare_mask, square_region


def part_on_sheet(h: int = 120, w: int = 160, box=(60, 40, 30, 20)) -> np.ndarray:
    img = np.full((h, w, 3), 230, np.uint8)
    x, y, bw, bh = box
    img[y : y + bh, x : x + bw] = (200, 20, 20)
    return img


def test_output_is_square_uint8_and_deterministic() -> None:
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (97, 131, 3), dtype=np.uint8)
    a = prepare(img, (10, 20, 50, 30), [[1.1, 0, 0, 0], [0, 0.9, 0, 0], [0, 0, 1, 0.01]], 64)
    b = prepare(img.copy(), (10, 20, 50, 30), [[1.1, 0, 0, 0], [0, 0.9, 0, 0], [0, 0, 1, 0.01]], 64)
    assert a.shape == (64, 64, 3) and a.dtype == np.uint8
    assert a.tobytes() == b.tobytes()


def test_crop_is_centred_on_the_box_with_a_margin() -> None:
    box = (60, 40, 30, 20)
    img = part_on_sheet(box=box)
    out = prepare(img, box, None, 65)
    assert tuple(out[32, 32]) == (200, 20, 20)  # the part's centre is the crop's centre
    assert tuple(out[0, 0]) == (230, 230, 230)  # corners are sheet
    # The longer side (30 px) plus the margin on both sides fills the crop: the part's width
    # is 1 / (1 + 2 * margin) of the crop's.
    red_cols = np.nonzero(out[32, :, 1] < 100)[0]
    expected = 65 / (1 + 2 * CROP_MARGIN)
    assert abs(len(red_cols) - expected) <= 2


def test_box_at_the_frame_edge_is_padded_with_the_edge_not_black() -> None:
    box = (0, 0, 20, 20)
    img = part_on_sheet(box=box)
    out = prepare(img, box, None, 48)
    region = square_region(box, img.shape[1], img.shape[0])
    assert region[0] < 0 and region[1] < 0  # the square really extends past the frame
    assert out.min() >= 20  # repeated edge pixels: part red or sheet, never black padding
    assert tuple(out[-1, -1]) == (230, 230, 230)


def test_without_a_box_the_whole_frame_is_padded_to_a_square() -> None:
    img = np.zeros((20, 40, 3), np.uint8)
    img[:, :20] = (255, 0, 0)
    img[:, 20:] = (0, 0, 255)
    out = prepare(img, None, None, 40)
    assert out.shape == (40, 40, 3)
    assert tuple(out[20, 5]) == (255, 0, 0) and tuple(out[20, 35]) == (0, 0, 255)
    # the 10 rows above and below are the repeated top and bottom rows
    assert tuple(out[0, 5]) == (255, 0, 0) and tuple(out[39, 35]) == (0, 0, 255)


def test_colour_matrix_is_the_shared_correction_applied_to_the_crop() -> None:
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (100, 100, 3), dtype=np.uint8)
    matrix = [[0.8, 0.1, 0, 0.02], [0, 1.2, 0, 0], [0.05, 0, 0.9, 0]]
    corrected = prepare(img, (30, 30, 40, 40), matrix, 32)
    plain = prepare(img, (30, 30, 40, 40), None, 32)
    assert not np.array_equal(corrected, plain)
    assert np.array_equal(corrected, apply_colour_matrix(plain, matrix))


def test_colour_matrix_removes_a_cast() -> None:
    grey = np.full((50, 50, 3), 128, np.uint8)
    cast = grey.copy()
    cast[..., 0] = 160  # too red
    from capture.vision.colour import fit_colour_matrix

    matrix = fit_colour_matrix(
        np.array([[160, 128, 128], [40, 32, 32], [255, 200, 200], [80, 64, 64], [0, 0, 0]]),
        np.array([[128, 128, 128], [32, 32, 32], [204, 200, 200], [64, 64, 64], [0, 0, 0]]),
    )
    out = prepare(cast, None, matrix.tolist(), 16)
    assert np.abs(out.astype(int) - 128).max() <= 3


@pytest.mark.parametrize(
    ("image", "bbox", "size", "message"),
    [
        (np.zeros((10, 10, 3), np.float32), None, 16, "uint8"),
        (np.zeros((10, 10), np.uint8), None, 16, "H x W x 3"),
        (np.zeros((10, 10, 3), np.uint8), (0, 0, 0, 5), 16, "w, h > 0"),
        (np.zeros((10, 10, 3), np.uint8), None, 4, "between 8 and 2048"),
        (np.zeros((10, 10, 3), np.uint8), (500, 500, 5, 5), 16, "outside"),
    ],
)
def test_bad_input_says_what_is_wrong(image, bbox, size, message) -> None:
    with pytest.raises(ValueError, match=message):
        prepare(image, bbox, None, size)


def test_mask_is_cut_exactly_like_the_image() -> None:
    box = (60, 40, 30, 20)
    img = part_on_sheet(box=box)
    mask = np.zeros(img.shape[:2], np.uint8)
    mask[40:60, 60:90] = 255
    crop = prepare(img, box, None, 48)
    cut = prepare_mask(mask, box, 48)
    assert cut.dtype == bool and cut.shape == (48, 48)
    red = crop[..., 1] < 100
    assert (red == cut).mean() > 0.97


def test_preprocess_and_runtime_import_without_tensorflow() -> None:
    code = (
        "import sys, classify.preprocess, classify.runtime, classify.metrics, classify.push;"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
