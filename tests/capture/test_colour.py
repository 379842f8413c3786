"""Colour correction: a known cast applied to a rendered sheet is recovered from its patches."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from capture.vision.backgrounds import page_pixels, render_page
from capture.vision.colour import (
    apply_colour_matrix,
    colour_matrix_from_reference,
    fit_error,
    linear_to_srgb,
    srgb_to_linear,
)
from rig.sheets import PATCH_COLOURS, SHEETS, sheet_layout

CAST = np.array([[0.78, 0.1, 0.0], [0.04, 0.7, 0.03], [0.0, 0.08, 0.5]])


def with_cast(img):
    lin = srgb_to_linear(img) @ CAST.T
    return np.clip(np.round(linear_to_srgb(lin)), 0, 255).astype(np.uint8)


def patch_means(img, w, h):
    return np.array([img[r.slices()].reshape(-1, 3).mean(0) for r in sheet_layout(w, h).patches])


@pytest.mark.parametrize("sheet", [1, 3, 7])
def test_a_known_cast_on_a_rendered_sheet_is_recovered(sheet):
    from rig.sheets import render_sheet

    img = render_sheet(sheet, 640, 480)
    cast = with_cast(img)
    matrix = colour_matrix_from_reference(cast)
    assert matrix.shape == (3, 4)
    fixed = apply_colour_matrix(cast, matrix)
    before = np.abs(patch_means(cast, 640, 480) - np.array(PATCH_COLOURS)).mean()
    after = np.abs(patch_means(fixed, 640, 480) - np.array(PATCH_COLOURS)).mean()
    assert before > 10 and after < 2.5
    assert fit_error(cast, matrix) < 3.0
    # the part area (the sheet's own colour) is corrected too, not only the patches
    assert np.abs(fixed.astype(int) - img.astype(int)).mean() < 3.0


def test_patches_are_found_on_a_printed_page_seen_turned_and_slightly_keystoned():
    w, h = page_pixels("a4", 60)
    page = render_page(SHEETS[2], w, h, 60)
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    dst = np.float32([[70, 70], [590, 40], [604, 410], [84, 440]])  # turned, slightly keystoned
    view = cv2.warpPerspective(
        page, cv2.getPerspectiveTransform(src, dst), (640, 480), borderValue=(60, 60, 60)
    )
    cast = with_cast(view)
    matrix = colour_matrix_from_reference(cast)
    assert matrix is not None
    assert fit_error(cast, matrix) < 6.0


def test_no_marker_means_no_matrix_and_none_means_no_correction():
    blank = np.full((240, 320, 3), 128, np.uint8)
    assert colour_matrix_from_reference(blank) is None
    assert apply_colour_matrix(blank, None) is blank


def test_apply_accepts_stored_nested_lists_and_3x3_and_refuses_bad_shapes():
    img = np.full((4, 4, 3), 100, np.uint8)
    identity = np.eye(3, 4).tolist()
    assert np.array_equal(apply_colour_matrix(img, identity), img)
    assert np.array_equal(apply_colour_matrix(img, np.eye(3)), img)
    with pytest.raises(ValueError, match="3x3 or 3x4"):
        apply_colour_matrix(img, [[1, 2], [3, 4]])
