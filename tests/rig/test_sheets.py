"""The printed sheet designs: markers are detectable with the right id, layout is data."""

from __future__ import annotations

import numpy as np
import pytest

from rig.errors import NotFound
from rig.sheets import PATCH_COLOURS, SHEETS, detect_marker, render_sheet, sheet_layout


def test_there_are_plain_texture_and_pattern_sheets_with_marker_ids_in_the_dictionary():
    kinds = {s.kind for s in SHEETS.values()}
    assert kinds == {"plain", "texture", "pattern"}
    assert len(SHEETS) >= 8
    assert all(0 <= i < 50 and SHEETS[i].id == i for i in SHEETS)
    assert len(PATCH_COLOURS) == 12


@pytest.mark.parametrize("sheet_id", sorted(SHEETS))
def test_every_sheet_renders_rgb_with_a_marker_that_reads_back_its_own_id(sheet_id):
    img = render_sheet(sheet_id, 640, 480)
    assert img.dtype == np.uint8 and img.shape == (480, 640, 3)
    found = detect_marker(img)
    assert found is not None and found[0] == sheet_id


def test_the_marker_is_found_where_the_layout_says():
    layout = sheet_layout(800, 600)
    _, corners = detect_marker(render_sheet(4, 800, 600))
    x0, y0 = corners.min(axis=0)
    x1, y1 = corners.max(axis=0)
    m = layout.marker
    assert abs(x0 - m.x) <= 2 and abs(y0 - m.y) <= 2
    assert abs(x1 - (m.x + m.w)) <= 2 and abs(y1 - (m.y + m.h)) <= 2


def test_patches_carry_their_known_colours_at_the_layout_positions():
    img = render_sheet(7, 1000, 700)
    for rect, colour in zip(sheet_layout(1000, 700).patches, PATCH_COLOURS, strict=True):
        assert (img[rect.slices()] == colour).all()


def test_the_part_area_overlaps_neither_the_marker_nor_the_patches():
    lay = sheet_layout(4056, 3040)
    area = lay.part_area
    assert area.y >= lay.quiet.y + lay.quiet.h
    assert area.y + area.h <= min(p.y for p in lay.patches)
    assert area.w > 0.8 * 4056 and area.h > 0.4 * 3040


def test_rendering_is_deterministic_and_textures_are_not_flat():
    a, b = render_sheet(6, 320, 240), render_sheet(6, 320, 240)
    assert np.array_equal(a, b)
    area = sheet_layout(320, 240).part_area
    assert a[area.slices()].std() > 2
    plain = render_sheet(2, 320, 240)[area.slices()]
    assert plain.std() == 0


def test_one_plain_sheet_is_close_in_colour_to_a_catalogue_part():
    from rig.sim.catalogue import CATALOGUE

    plains = [np.array(s.colours[0]) for s in SHEETS.values() if s.kind == "plain"]
    parts = [np.array(p.colour) for p in CATALOGUE.values()]
    closest = min(np.abs(s - p).max() for s in plains for p in parts)
    assert closest <= 50


def test_an_unknown_sheet_id_names_the_valid_ones():
    with pytest.raises(NotFound, match="valid ids: 1, 2"):
        render_sheet(49, 100, 100)


def test_a_nonsense_size_is_refused_with_the_allowed_range():
    with pytest.raises(ValueError, match=r"16\.\.20000"):
        render_sheet(1, 8, 100)
