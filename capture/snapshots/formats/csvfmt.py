"""``csv/shots.csv``: one row per shot, for spreadsheets and pandas.

``file_name`` is the image's path in the snapshot's folder format (``folder/...``); the sha256
names the same bytes in every format.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from capture.snapshots.formats import HashingFile, Sample, WrittenFile

NAME = "csv"
COLUMNS = (
    "key",
    "shot_id",
    "split",
    "label",
    "class_index",
    "instance_id",
    "run_id",
    "background_id",
    "pose",
    "angle_cmd",
    "bbox_x",
    "bbox_y",
    "bbox_w",
    "bbox_h",
    "width",
    "height",
    "source",
    "captured_at",
    "sha256",
    "size",
    "file_name",
    "has_mask",
    # NOTE: sizes on the sheet plane (capture/vision/measure.py); empty when the shot was not
    # measured.
    "measure_status",
    "length_mm",
    "width_mm",
    "area_mm2",
    "shaft_length_mm",
)


class CsvWriter:
    name = NAME

    def __init__(self, root: Path, attributes: list[str] | None = None) -> None:
        self.root = root
        # NOTE: one ``attr_<name>`` column per catalogue attribute (capture.store.catalogue)
        self.attributes = list(attributes or [])
        self._file = HashingFile(root / NAME / "shots.csv")
        self._write_row((*COLUMNS, *(f"attr_{n}" for n in self.attributes)))

    def _write_row(self, values: tuple[object, ...]) -> None:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(values)
        self._file.write(buf.getvalue().encode())

    def add(self, sample: Sample) -> None:
        shot = sample.shot
        values = {
            **{k: shot.get(k) for k in COLUMNS},
            "key": sample.key,
            "shot_id": shot["id"],
            "split": sample.split,
            "class_index": sample.class_index,
            "file_name": f"folder/{sample.split}/{sample.file_name}",
            "has_mask": int(sample.mask is not None),
        }
        own = shot.get("attributes") or {}
        cells = [values[c] for c in COLUMNS] + [own.get(n) for n in self.attributes]
        self._write_row(tuple("" if v is None else v for v in cells))

    def close(self) -> list[WrittenFile]:
        return [self._file.written(self.root, NAME)]
