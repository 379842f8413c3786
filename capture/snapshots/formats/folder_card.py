"""The image folder's dataset card, ``folder/README.md``: every metadata column's declared type.

Why: Hugging Face ``datasets`` infers a ``metadata.jsonl`` column's type from its values, so a
column that is null throughout one split (no measured shot in ``val``, an attribute no val shot
has) is typed ``null`` there and a number or word in the others, and the ``imagefolder`` builder
refuses the mismatch before any ``features=`` it is given applies.  The card's ``configs`` point
``load_dataset(<folder>)`` at the splits' ``metadata.jsonl`` files and its ``dataset_info``
declares every column's type from this module's schema and the catalogue's attribute types
(never from the data), so that call loads any snapshot; ``image`` is then one ``cast_column``
away (docs/datasets.md).

The card holds no snapshot id or date: an unchanged snapshot gives the same bytes.
"""

from __future__ import annotations

import json

#: The HF ``datasets`` split name of each snapshot split (what ``imagefolder`` names them).
HF_SPLITS = {"train": "train", "val": "validation", "test": "test"}

#: Every fixed ``metadata.jsonl`` column and its HF feature, in YAML card form.  ``sequence`` is
#: the list spelling every ``datasets`` release since 2.x reads.
COLUMNS: dict[str, str | dict[str, object]] = {
    "file_name": "string",
    "label": "string",
    "class_index": "int64",
    "key": "string",
    "shot_id": "int64",
    "instance_id": "string",
    "run_id": "int64",
    "background_id": "int64",
    "pose": "string",
    "angle_cmd": "float64",
    "bbox": {"sequence": "int64"},
    "colour_matrix": {"sequence": {"sequence": "float64"}},
    "sha256": "string",
    "measure_status": "string",
    "length_mm": "float64",
    "width_mm": "float64",
    "area_mm2": "float64",
    "shaft_length_mm": "float64",
}


def attribute_types(names: list[str], words: set[str]) -> dict[str, str]:
    """Each catalogue attribute's feature type: a word for any part is a word for all
    (``ExportAttributes``), every other attribute is a number."""
    return {n: "string" if n in words else "float64" for n in names}


def card_text(splits: list[str], attributes: dict[str, str] | None) -> str:
    """The card for the given snapshot splits (only those with a ``metadata.jsonl``);
    ``attributes`` is None when the rows carry no ``attributes`` object."""
    lines = ["---", "configs:", "- config_name: default", "  data_files:"]
    for split in (s for s in HF_SPLITS if s in splits):
        lines += [f"  - split: {HF_SPLITS[split]}", f"    path: {split}/metadata.jsonl"]
    lines += ["dataset_info:", "  features:"]
    for name, feature in COLUMNS.items():
        lines += _feature(name, feature, "  ")
    if attributes is not None:
        lines += ["  - name: attributes", "    struct:"]
        for name, dtype in attributes.items():
            lines += _feature(name, dtype, "    ")
    lines += [
        "---",
        "",
        "# partrig snapshot: image folder",
        "",
        "One folder per split, one `{index:03d}-{label}` folder per class, and each split's",
        "`metadata.jsonl` (one line per image). The front matter declares every metadata column's",
        "type, so `datasets.load_dataset(<this folder>)` loads every split even where a column is",
        "null throughout one of them; add the images with",
        "`ds.map(lambda r: {'image': f'<this folder>/<split>/' + r['file_name']})` and",
        "`.cast_column('image', datasets.Image())`. The manifest (`../manifest.json`) lists every",
        "file with its sha256 and the classes in index order.",
        "",
    ]
    return "\n".join(lines)


def _feature(name: str, feature: str | dict[str, object], indent: str) -> list[str]:
    # NOTE: json.dumps quotes any attribute name as a YAML double-quoted scalar.
    head = [f"{indent}- name: {json.dumps(name)}"]
    if isinstance(feature, str):
        return [*head, f"{indent}  dtype: {feature}"]
    return head + [f"{indent}  {line}" for line in _nested(feature)]


def _nested(feature: dict[str, object]) -> list[str]:
    ((key, inner),) = feature.items()
    if isinstance(inner, dict):
        return [f"{key}:"] + [f"  {line}" for line in _nested(inner)]
    return [f"{key}: {inner}"]
