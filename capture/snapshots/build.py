"""Immutable, versioned dataset snapshots: freeze a filtered view of the store with its splits.

Usage::

    manifest = create_snapshot(store, settings, SnapshotFilter(labels=("3001", "3020")),
                               SplitRules(seed=1), formats=("webdataset", "folder"))
    manifest["id"]                   # "snap-0003"
    split_shot_ids(store, "snap-0003", "test")

Why this order (see docs/datasets.md): everything is written under
``<data.dir>/snapshots/<id>.tmp/``, each file fsynced, then every folder fsynced, then the
folder renamed to ``<id>/`` (atomic) and the parent fsynced, and only then the rows committed.
A crash before the rename leaves a ``.tmp`` folder, and one between the rename and the commit an
unrecorded folder; the next snapshot removes both before it starts, so no half snapshot is ever
listed.  A lock file serialises snapshot creation between processes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from capture.snapshots.filter import GROUP_BY, SnapshotFilter, full_rows, group_key, select_shots
from capture.snapshots.formats import (
    FORMATS,
    FormatWriter,
    HashingFile,
    Sample,
    WrittenFile,
    class_dir_name,
    sample_key,
)
from capture.snapshots.formats.coco import CocoWriter
from capture.snapshots.formats.csvfmt import CsvWriter
from capture.snapshots.formats.folder import FolderWriter
from capture.snapshots.formats.folder_card import attribute_types
from capture.snapshots.formats.webdataset import WebDatasetWriter
from capture.snapshots.report import ReportBuilder, render_markdown
from capture.snapshots.splits import SPLITS, Group, SplitRules, assign_splits, refuse_empty_splits
from capture.store.catalogue import ExportAttributes
from capture.store.files import ensure_dir, fsync_dir, os_error
from capture.store.measure_schema import measurement_fields
from capture.store.records import decode_row, utc_now
from rig.errors import NotFound, QueryError, RigError, StoreError

SNAPSHOTS_DIR = "snapshots"
SNAPSHOT_ID_RE = re.compile(r"^snap-(\d{4,})$")
TMP_SUFFIX = ".tmp"
LOCK_NAME = ".lock"


def snapshots_root(data_dir: Path) -> Path:
    return Path(data_dir) / SNAPSHOTS_DIR


def snapshot_dir(data_dir: Path, snapshot_id: str) -> Path:
    """The folder of a snapshot; refuses anything that is not a snapshot id (no paths)."""
    if not SNAPSHOT_ID_RE.match(str(snapshot_id)):
        raise NotFound(f"{snapshot_id!r} is not a snapshot id (they look like snap-0001)")
    return snapshots_root(data_dir) / snapshot_id


def load_manifest(data_dir: Path, snapshot_id: str) -> dict[str, Any]:
    """A snapshot's ``manifest.json``; NotFound if there is no such (complete) snapshot."""
    path = snapshot_dir(data_dir, snapshot_id) / "manifest.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotFound(
            f"snapshot {snapshot_id} does not exist: list them with `partrig dataset snapshots`"
        ) from None


def list_snapshots(store: Any) -> list[dict[str, Any]]:
    """Every recorded snapshot (id, created_at, group_by, seed, weaker, shots, bytes)."""
    return store.snapshot_rows()


def split_shot_ids(store: Any, snapshot_id: str, split: str) -> list[int]:
    """The shot ids of one split (the rig's held-out ``test`` split validates models)."""
    if split not in SPLITS:
        raise QueryError(f"split {split!r} must be one of {', '.join(SPLITS)}")
    return store.snapshot_shot_ids(snapshot_id, split)


def software_version() -> str:
    try:
        return metadata.version("partrig")
    except metadata.PackageNotFoundError:
        return "unknown"


def create_snapshot(
    store: Any,
    settings: Any,
    flt: SnapshotFilter,
    rules: SplitRules,
    formats: Sequence[str] = FORMATS,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Freeze the shots ``flt`` selects into a new snapshot; returns its manifest.

    ``progress(done, total)`` is called as shots are written (a command's progress bar).

    Raises SplitError when a class has too few instances for a per-instance split (unless
    ``rules.group_by`` asks for a weaker one), QueryError for an empty selection or unknown
    format, and StoreError when a stored image no longer matches its checksum.
    """
    formats = _check_formats(formats)
    if rules.group_by not in GROUP_BY:
        raise QueryError(f"group_by {rules.group_by!r} must be one of {', '.join(GROUP_BY)}")
    root = snapshots_root(store.data_dir)
    ensure_dir(root)
    # NOTE: the whole of it under the lock: a concurrent snapshot must see this one's recorded
    # splits, or the two could place the same new instance differently.
    with _creation_lock(root):
        rows, dropped = select_shots(store, flt)
        if not rows:
            raise QueryError(
                "no shots match this filter"
                + (f" (classes dropped by min_per_class: {', '.join(dropped)})" if dropped else "")
                + ": widen --label/--run/--background/--since/--until or lower --min-per-class"
            )
        groups = _groups(rows, rules.group_by)
        # NOTE: another rig's split (kept by an import) counts as an earlier assignment, and
        # this store's own earlier snapshots win over it.
        previous = {**_import_splits(store, rows, rules.group_by)}
        previous.update(store.previous_splits(rules.group_by))
        assigned = assign_splits(groups.values(), rules, previous)
        empty = refuse_empty_splits(groups.values(), assigned, rules)
        inferred = _inferred_groups(store, rows)
        classes = sorted({r["label"] for r in rows})
        by_split: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
        for row in rows:
            by_split[assigned[group_key(row, rules.group_by)]].append(row)

        _remove_leftovers(store, root)
        sid = _next_id(store, root)
        tmp = root / f"{sid}{TMP_SUFFIX}"
        final = root / sid
        try:
            tmp.mkdir()
            manifest = _write(
                store,
                settings,
                tmp,
                sid,
                flt,
                rules,
                formats,
                classes,
                by_split,
                {"dropped": dropped, "empty": empty, "inferred": inferred},
                progress,
            )
            _sync_tree(tmp)
            os.rename(tmp, final)
            fsync_dir(root)
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(exc, OSError) and not isinstance(exc, RigError):
                raise os_error(exc, f"writing snapshot {sid}", root) from None
            raise
        try:
            store.record_snapshot(
                manifest,
                ((k, g.label, assigned[k], g.shots) for k, g in sorted(groups.items())),
                ((int(r["id"]), s) for s in SPLITS for r in by_split[s]),
            )
        except BaseException:
            shutil.rmtree(final, ignore_errors=True)
            raise
    return manifest


def _check_formats(formats: Sequence[str]) -> list[str]:
    chosen = list(dict.fromkeys(formats or FORMATS))
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown:
        raise QueryError(
            f"unknown format(s) {', '.join(unknown)}: choose from {', '.join(FORMATS)}"
        )
    return [f for f in FORMATS if f in chosen]


def _import_splits(store: Any, rows: list[dict[str, Any]], group_by: str) -> dict[str, str]:
    """The split another rig's snapshot gave imported shots, by this snapshot's group key."""
    kept = {
        int(r["id"]): r["import_split"]
        for r in store.query("SELECT id, import_split FROM shots WHERE import_split IS NOT NULL")
    }
    if not kept:
        return {}
    return {group_key(r, group_by): kept[r["id"]] for r in rows if r["id"] in kept}


def _inferred_groups(store: Any, rows: list[dict[str, Any]]) -> int:
    """How many of the selected instances are groups inferred from imported photos."""
    inferred = {
        r["instance_id"]
        for r in store.query("SELECT instance_id FROM part_instances WHERE inferred = 1")
    }
    return len(inferred & {r["instance_id"] for r in rows})


def _groups(rows: list[dict[str, Any]], group_by: str) -> dict[str, Group]:
    """One Group per key; a group's class is the label most of its shots carry."""
    labels: dict[str, Counter[str]] = defaultdict(Counter)
    for row in rows:
        labels[group_key(row, group_by)][row["label"]] += 1
    return {
        key: Group(
            key=key,
            label=sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[0][0],
            shots=sum(c.values()),
        )
        for key, c in labels.items()
    }


@contextlib.contextmanager
def _creation_lock(root: Path) -> Iterator[None]:
    with open(root / LOCK_NAME, "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _remove_leftovers(store: Any, root: Path) -> list[str]:
    """Remove ``.tmp`` folders and folders never recorded (a crash before the commit)."""
    recorded = set(store.snapshot_ids())
    removed = []
    for path in sorted(root.iterdir()):
        name = path.name
        stale_tmp = name.endswith(TMP_SUFFIX) and SNAPSHOT_ID_RE.match(name[: -len(TMP_SUFFIX)])
        unrecorded = SNAPSHOT_ID_RE.match(name) and name not in recorded
        if path.is_dir() and (stale_tmp or unrecorded):
            shutil.rmtree(path)
            removed.append(name)
    if removed:
        fsync_dir(root)
    return removed


def _next_id(store: Any, root: Path) -> str:
    numbers = [int(m.group(1)) for s in store.snapshot_ids() if (m := SNAPSHOT_ID_RE.match(s))]
    numbers += [int(m.group(1)) for p in root.iterdir() if (m := SNAPSHOT_ID_RE.match(p.name))]
    return f"snap-{max(numbers, default=0) + 1:04d}"


def _writers(
    settings: Any,
    tmp: Path,
    formats: list[str],
    classes: list[str],
    attrs: ExportAttributes | None = None,
) -> list[FormatWriter]:
    dirs = [class_dir_name(i, c) for i, c in enumerate(classes)]
    names = attrs.names if attrs is not None else []
    per_class = [attrs.of_label(c) for c in classes] if attrs is not None and names else None
    card_attrs = attribute_types(names, attrs.words) if attrs is not None and names else None
    makers: dict[str, Callable[[], FormatWriter]] = {
        "webdataset": lambda: WebDatasetWriter(tmp, settings.snapshot.shard_bytes),
        "folder": lambda: FolderWriter(tmp, dirs, card_attrs),
        # NOTE: no snapshot id inside the formats' files: unchanged content must give equal bytes.
        "coco": lambda: CocoWriter(tmp, classes, "partrig dataset snapshot", per_class),
        "csv": lambda: CsvWriter(tmp, names),
    }
    return [makers[f]() for f in formats]


def _write(
    store: Any,
    settings: Any,
    tmp: Path,
    sid: str,
    flt: SnapshotFilter,
    rules: SplitRules,
    formats: list[str],
    classes: list[str],
    by_split: dict[str, list[dict[str, Any]]],
    notes: dict[str, Any],
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    dropped = notes["dropped"]
    index = {c: i for i, c in enumerate(classes)}
    # NOTE: the catalogue's attributes travel with each class and shot (capture.store.catalogue)
    db = getattr(store, "db", None)
    attrs = ExportAttributes(db.conn) if db is not None else None
    writers = _writers(settings, tmp, formats, classes, attrs)
    report = ReportBuilder(classes)
    total, done = sum(len(v) for v in by_split.values()), 0
    for split in SPLITS:
        for row in full_rows(store, by_split[split]):
            sample = _sample(store, row, split, index[row["label"]], attrs)
            for writer in writers:
                writer.add(sample)
            report.add(sample)
            done += 1
            if progress is not None:
                progress(done, total)
    files: list[WrittenFile] = []
    for writer in writers:
        files += writer.close()
    rules_dict = {
        "train": rules.train,
        "val": rules.val,
        "test": rules.test,
        "seed": rules.seed,
        "group_by": rules.group_by,
        "weaker": rules.weaker,
    }
    if notes["empty"]:
        rules_dict["empty_splits"] = notes["empty"]
    if notes["inferred"]:
        rules_dict["inferred_groups"] = notes["inferred"]
    built = report.build(rules_dict, dropped)
    report_json = HashingFile(tmp / "report.json")
    report_json.write(json.dumps(built, indent=1, sort_keys=True).encode())
    report_md = HashingFile(tmp / "report.md")
    report_md.write(render_markdown(sid, built).encode())
    files += [report_json.written(tmp, "report"), report_md.written(tmp, "report")]
    by_class_split = {
        c: {s: sum(1 for r in by_split[s] if r["label"] == c) for s in SPLITS} for c in classes
    }
    manifest = {
        "id": sid,
        "created_at": utc_now(),
        "software_version": software_version(),
        "filter": flt.as_dict(),
        "rules": rules_dict,
        "classes": [_class_entry(i, c, attrs) for i, c in enumerate(classes)],
        "counts": {
            "total": sum(len(v) for v in by_split.values()),
            "by_split": {s: len(by_split[s]) for s in SPLITS},
            "by_class_split": by_class_split,
        },
        "formats": formats,
        "files": [f.as_dict() for f in sorted(files, key=lambda f: f.path)],
    }
    out = HashingFile(tmp / "manifest.json")
    out.write(json.dumps(manifest, indent=1).encode())
    out.close()
    return manifest


def _class_entry(index: int, label: str, attrs: ExportAttributes | None) -> dict[str, Any]:
    """A manifest class; with its catalogue ``attributes`` when the catalogue has any."""
    entry: dict[str, Any] = {"index": index, "label": label}
    if attrs is not None and attrs.names:
        entry["attributes"] = attrs.of_label(label)
    return entry


def _sample(
    store: Any,
    row: dict[str, Any],
    split: str,
    class_index: int,
    attrs: ExportAttributes | None = None,
) -> Sample:
    shot = decode_row(row) or {}
    # NOTE: sizes in millimetres (shot_measurements) travel with the shot into every format.
    shot.update(measurement_fields(getattr(store, "db", None), int(shot["id"])))
    if attrs is not None and attrs.names:
        shot["attributes"] = attrs.of_shot(int(shot["id"]))
    image_path = store.path_of(shot["path"])
    try:
        image = image_path.read_bytes()
        mask = store.path_of(shot["mask_path"]).read_bytes() if shot.get("mask_path") else None
    except FileNotFoundError:
        raise StoreError(
            f"shot {shot['id']}: {shot['path']} or its mask is missing (deleted while the "
            "snapshot was written?): run `partrig dataset check`, then snapshot again"
        ) from None
    if hashlib.sha256(image).hexdigest() != shot["sha256"]:
        raise StoreError(
            f"shot {shot['id']}: {shot['path']} no longer matches its recorded sha256; run "
            "`partrig dataset check`, then delete or re-capture the shot before snapshotting"
        )
    suffix = Path(shot["path"]).suffix.lower().lstrip(".")
    return Sample(
        key=sample_key(shot["id"]),
        split=split,
        class_index=class_index,
        class_dir=class_dir_name(class_index, shot["label"]),
        shot=shot,
        image=image,
        image_ext="jpg" if suffix in ("jpg", "jpeg") else suffix,
        image_path=image_path,
        mask=mask,
    )


def _sync_tree(top: Path) -> None:
    """fsync every folder under ``top`` (bottom up), so every name in it is durable."""
    for dirpath, _dirs, _files in os.walk(top, topdown=False):
        fsync_dir(Path(dirpath))
