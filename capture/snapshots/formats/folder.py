"""The image folder: ``folder/{split}/{index:03d}-{label}/{key}.jpg`` plus ``metadata.jsonl``.

Why this layout: torchvision ImageFolder, Keras ``image_dataset_from_directory`` and the
Hugging Face ``imagefolder`` builder all read it unchanged.  They number classes by sorted
folder name, so the zero-padded index prefix makes their indices equal the manifest's; every
class folder exists in every split (an empty one holds a ``.keep`` file, so it survives a pull
that fetches only the manifest's files) for the same reason.

Why hard links: the image is the store's own file, so its sha256 is the shot's sha256, and a
trainer pulling the next snapshot skips every image it already has (content addressing).  Where
the snapshot folder is on another file system the bytes are copied instead.

``folder/README.md`` is the dataset card that declares every metadata column's type
(:mod:`capture.snapshots.formats.folder_card`), so Hugging Face loads splits whose columns are
null throughout.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

from capture.snapshots.formats import HashingFile, Sample, WrittenFile
from capture.snapshots.formats.folder_card import card_text

NAME = "folder"
KEEP_FILE = ".keep"
_EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


class FolderWriter:
    name = NAME

    def __init__(
        self, root: Path, class_dirs: list[str], attributes: dict[str, str] | None = None
    ) -> None:
        """``attributes``: each catalogue attribute's card type (``folder_card.attribute_types``),
        None when the rows carry no ``attributes`` object."""
        self.root = root
        self.class_dirs = class_dirs
        self.attributes = attributes
        self._metadata: dict[str, HashingFile] = {}
        self._filled: set[tuple[str, str]] = set()
        self._written: list[WrittenFile] = []

    def add(self, sample: Sample) -> None:
        split_dir = self.root / NAME / sample.split
        if sample.split not in self._metadata:
            for name in self.class_dirs:
                (split_dir / name).mkdir(parents=True, exist_ok=True)
            self._metadata[sample.split] = HashingFile(split_dir / "metadata.jsonl")
        target = split_dir / sample.file_name
        _link_or_copy(sample.image_path, target, sample.image)
        self._written.append(
            WrittenFile(
                target.relative_to(self.root).as_posix(),
                NAME,
                str(sample.shot["sha256"]),
                len(sample.image),
            )
        )
        self._filled.add((sample.split, sample.class_dir))
        row = {
            "file_name": sample.file_name,
            "label": sample.shot["label"],
            "class_index": sample.class_index,
            "key": sample.key,
            "shot_id": int(sample.shot["id"]),
            "instance_id": sample.shot["instance_id"],
            "run_id": sample.shot.get("run_id"),
            "background_id": sample.shot.get("background_id"),
            "pose": sample.shot.get("pose"),
            "angle_cmd": sample.shot.get("angle_cmd"),
            "bbox": sample.bbox,
            "colour_matrix": sample.shot.get("colour_matrix"),
            "sha256": sample.shot["sha256"],
        }
        # NOTE: sizes in millimetres (capture/vision/measure.py), null for shots never measured;
        # every
        # row has the same keys so loaders infer one schema.
        for key in ("measure_status", "length_mm", "width_mm", "area_mm2", "shaft_length_mm"):
            row[key] = sample.shot.get(key)
        # NOTE: the catalogue's attributes, every name on every row (capture.store.catalogue)
        if "attributes" in sample.shot:
            row["attributes"] = sample.shot["attributes"]
        line = json.dumps(row, sort_keys=True, separators=(",", ":")) + "\n"
        self._metadata[sample.split].write(line.encode())

    def close(self) -> list[WrittenFile]:
        out = list(self._written)
        for split, meta in sorted(self._metadata.items()):
            out.append(meta.written(self.root, NAME))
            for name in self.class_dirs:
                if (split, name) not in self._filled:
                    keep = self.root / NAME / split / name / KEEP_FILE
                    keep.touch()
                    out.append(
                        WrittenFile(keep.relative_to(self.root).as_posix(), NAME, _EMPTY_SHA256, 0)
                    )
        if self._metadata:
            # NOTE: the card is per snapshot and listed with its sha256 like every other file.
            card = HashingFile(self.root / NAME / "README.md")
            card.write(card_text(sorted(self._metadata), self.attributes).encode())
            out.append(card.written(self.root, NAME))
        return out


def _link_or_copy(source: Path, target: Path, data: bytes) -> None:
    try:
        os.link(source, target)
        return
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            raise
    with open(target, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
