"""Printable sheets (PNG, multi-page PDF) and reading the installed sheet from its marker."""

from __future__ import annotations

import re

import cv2
import numpy as np
from PIL import Image
from typer.testing import CliRunner

from capture.vision.backgrounds import detect_sheet, page_pixels, print_sheets
from capture.vision.backgrounds_cli import backgrounds_app
from rig.sheets import SHEETS, render_sheet


def test_print_writes_a_png_per_sheet_and_a_pdf_per_paper_with_the_right_page_size(tmp_path):
    printed = print_sheets(tmp_path, paper="both", dpi=50)
    for paper, (w_in, h_in) in {"a4": (11.69, 8.27), "letter": (11.0, 8.5)}.items():
        assert len(printed.pngs[paper]) == len(SHEETS)
        with Image.open(printed.pngs[paper][0]) as png:
            assert png.size == page_pixels(paper, 50)
        data = printed.pdfs[paper].read_bytes()
        assert data.startswith(b"%PDF")
        pages = re.findall(rb"/Type\s*/Page\b", data)
        assert len(pages) == len(SHEETS)
        box = re.search(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", data)
        w_pt, h_pt = float(box.group(1)), float(box.group(2))
        assert abs(w_pt / 72 - w_in) < 0.05 and abs(h_pt / 72 - h_in) < 0.05


def test_printed_pages_carry_a_readable_marker_for_their_sheet(tmp_path):
    printed = print_sheets(tmp_path, paper="a4", dpi=50)
    for spec, path in zip(
        sorted(SHEETS.values(), key=lambda s: s.id), printed.pngs["a4"], strict=True
    ):
        assert f"-{spec.id:02d}-" in path.name
        with Image.open(path) as png:
            assert detect_sheet(np.asarray(png.convert("RGB"))) == spec.id


def test_the_marker_is_found_on_a_rotated_scaled_noisy_view():
    rng = np.random.default_rng(1)
    for sheet in (3, 7, 9):
        img = render_sheet(sheet, 800, 600)
        turn = cv2.getRotationMatrix2D((400, 300), 17, 0.7)
        view = cv2.warpAffine(img, turn, (800, 600), borderValue=(90, 80, 70))
        noisy = np.clip(view + rng.normal(0, 6, view.shape), 0, 255).astype(np.uint8)
        assert detect_sheet(noisy) == sheet


def test_a_wrong_sheet_and_no_sheet_are_told_apart():
    assert detect_sheet(render_sheet(4, 640, 480)) == 4  # a different sheet is named, not None
    assert detect_sheet(np.full((480, 640, 3), 200, np.uint8)) is None


def test_the_cli_prints_sheets_and_reports_bad_options(tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        backgrounds_app, ["print", "--out", str(tmp_path), "--paper", "letter", "--dpi", "50"]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "sheets-letter.pdf").exists()
    bad = runner.invoke(backgrounds_app, ["print", "--out", str(tmp_path), "--paper", "a3"])
    assert bad.exit_code != 0
