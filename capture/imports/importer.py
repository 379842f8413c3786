"""``partrig dataset import``: photos from elsewhere into the store as ``source='import'`` shots.

Usage::

    with DatasetStore.open(Path("data")) as store:
        result = import_photos(store, Path("photos/"), ImportOptions(new_labels=True))
        result.groups            # {"3001": 12, ...}: inferred groups per class

What it does, in order (see docs/datasets.md, "Importing photos"):

1. reads the source (:mod:`capture.imports.sources`) and normalises every label; labels not
   yet in the parts catalogue are refused unless ``new_labels`` confirms them;
2. finds or creates the source's ``imports`` row: the same source again resumes it, skipping
   every photo already in (by its path inside the source);
3. reads each remaining photo once for its checksum, time, part box and crop hash;
4. infers groups where the source names no instance (:mod:`capture.imports.groups`);
5. stores each photo under ``images/imports/<sha256[:2]>/<sha256>.<ext>`` (content-addressed,
   so the same bytes are stored once) through the store's durable batch write, files before
   rows, and counts progress in the ``imports`` row after every batch.

Why groups become instance ids: a snapshot splits by instance, so ``imp-<import>-<n>`` makes it
keep each inferred group on one side of the split with no new split code.  The instance is
marked ``inferred`` so the report can say what the split was grouped by.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from capture.imports.groups import (
    DEFAULT_MAX_DISTANCE,
    DEFAULT_TIME_GAP,
    MEDIAN_SAMPLE,
    Photo,
    analyse,
    background_of,
    group_photos,
    load_work_frames,
    stored_time,
)
from capture.imports.sources import ImportItem, ImportSource, ImportSourceError, read_source
from capture.store.records import ShotRecord, utc_now

IMPORT_DIR = "images/imports"
#: Progress callback: (phase, done, total); phases are "reading" and "storing".
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class ImportOptions:
    """How to import; stored with the ``imports`` row so a resume is told what was asked."""

    new_labels: bool = False
    max_distance: int = DEFAULT_MAX_DISTANCE
    time_gap: float = DEFAULT_TIME_GAP
    rig_id: str | None = None
    batch: int = 64


@dataclass
class ImportResult:
    """What an import did: ``groups`` counts the inferred groups per class (old and new)."""

    import_id: int
    kind: str
    photos: int
    added: int
    already_in: int
    duplicates: list[str] = field(default_factory=list)
    groups: dict[str, int] = field(default_factory=dict)
    new_groups: int = 0
    boxes_from: str = "none"
    labels: list[str] = field(default_factory=list)


def import_photos(
    store: Any, src: Path, opts: ImportOptions | None = None, progress: Progress | None = None
) -> ImportResult:
    """Import ``src`` into ``store``; resumable.  Raises ImportSourceError naming what to fix."""
    opts = opts or ImportOptions()
    source = read_source(Path(src), opts.rig_id)
    _check_labels(store, source, opts)
    import_id = _import_row(store, source, opts)
    done = {
        r["origin"]: r
        for r in store.query(
            "SELECT origin, label, instance_id, crop_hash, path FROM shots WHERE import_id = ?",
            (import_id,),
        )
    }
    todo = [it for it in source.items if it.origin not in done]
    result = ImportResult(
        import_id, source.kind, len(source.items), 0, len(source.items) - len(todo)
    )
    result.labels = sorted({it.label for it in source.items})
    background, result.boxes_from = _background(source, todo)
    photos = _read_all(todo, background, progress)
    instances, inferred = _instances(store, import_id, todo, photos, done, opts, result)
    _store_all(store, import_id, todo, photos, instances, inferred, opts, progress, result)
    with store.transaction() as conn:
        conn.execute(
            "UPDATE imports SET state = 'completed', groups = ?, updated_at = ? WHERE id = ?",
            (sum(result.groups.values()), utc_now(), import_id),
        )
    return result


def _check_labels(store: Any, source: ImportSource, opts: ImportOptions) -> None:
    known = {r["label"] for r in store.query("SELECT label FROM parts")}
    new = sorted({it.label for it in source.items} - known)
    if new and not opts.new_labels:
        where = {it.label: it.origin for it in source.items}
        raise ImportSourceError(
            f"{len(new)} label(s) are not in the parts catalogue: "
            + ", ".join(f"{lbl} (e.g. {where[lbl]})" for lbl in new[:10])
            + (" ..." if len(new) > 10 else "")
            + ". Check the spelling, or confirm they are new parts with --new-labels"
        )


def _import_row(store: Any, source: ImportSource, opts: ImportOptions) -> int:
    where = str(source.root.resolve())
    with store.transaction() as conn:
        row = conn.execute(
            "SELECT id FROM imports WHERE kind = ? AND source = ?", (source.kind, where)
        ).fetchone()
        now = utc_now()
        options = json.dumps(asdict(opts), sort_keys=True)
        if row is not None:
            conn.execute(
                "UPDATE imports SET options = ?, total = ?, state = 'running', updated_at = ? "
                "WHERE id = ?",
                (options, len(source.items), now, row[0]),
            )
            return int(row[0])
        cur = conn.execute(
            "INSERT INTO imports(kind, source, options, total, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (source.kind, where, options, len(source.items), now, now),
        )
        return int(cur.lastrowid)


def _background(source: ImportSource, todo: list[ImportItem]) -> tuple[Any, str]:
    """The empty background the crops are cut against, and where the boxes come from."""
    if not todo or all(it.box is not None for it in todo):
        return None, "given boxes" if todo else "none"
    if source.references:
        return background_of(load_work_frames(source.references)), "reference frames"
    if len(source.items) >= 5:
        step = max(1, len(source.items) // MEDIAN_SAMPLE)
        sample = [it.path for it in source.items[::step][:MEDIAN_SAMPLE]]
        return background_of(load_work_frames(sample)), "median of the photos"
    return None, "central crop"


def _read_all(todo: list[ImportItem], background: Any, progress: Progress | None) -> list[Photo]:
    photos: list[Photo] = []
    for n, item in enumerate(todo, start=1):
        try:
            _data, photo = analyse(item.path, item.box, background)
        except (OSError, ValueError) as exc:
            raise ImportSourceError(f"{item.origin}: cannot read it as an image ({exc})") from None
        photos.append(photo)
        if progress:
            progress("reading", n, len(todo))
    return photos


def _instances(
    store: Any,
    import_id: int,
    todo: list[ImportItem],
    photos: list[Photo],
    done: dict[str, dict[str, Any]],
    opts: ImportOptions,
    result: ImportResult,
) -> tuple[list[str], list[bool]]:
    """The instance id of every new photo, and whether it was inferred."""
    prefix = f"imp-{import_id}-"
    instances: list[str] = [""] * len(todo)
    inferred = [False] * len(todo)
    for i, item in enumerate(todo):
        if item.instance:
            instances[i] = item.instance
        elif item.session:
            instances[i] = f"{prefix}session-{item.session}"
    old = [r for r in done.values() if str(r["instance_id"]).startswith(prefix)]
    old = [r for r in old if str(r["instance_id"])[len(prefix) :].isdigit()]
    numbers = [int(str(r["instance_id"])[len(prefix) :]) for r in old]
    next_number = max(numbers, default=0) + 1
    start = next_number
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, item in enumerate(todo):
        if not instances[i]:
            by_label[item.label].append(i)
    old_by_label: dict[str, list[tuple[bytes, datetime | None, int]]] = defaultdict(list)
    for r, n in zip(old, numbers, strict=True):
        # NOTE: the time is read again from the stored file and the origin's name, as on the
        # first run; captured_at cannot tell a real time from the import's own clock.
        taken = stored_time(store.path_of(r["path"]), r["origin"])
        old_by_label[r["label"]].append((bytes.fromhex(r["crop_hash"] or "00" * 32), taken, n))
    for label in sorted(set(by_label) | set(old_by_label)):
        new_idx = by_label.get(label, [])
        olds = old_by_label.get(label, [])
        hashes = [h for h, _, _ in olds] + [photos[i].crop_hash for i in new_idx]
        times = [t for _, t, _ in olds] + [photos[i].taken for i in new_idx]
        known: list[int | None] = [n for _, _, n in olds] + [None] * len(new_idx)
        numbers_out, next_number = group_photos(
            hashes,
            times,
            known,
            next_number=next_number,
            max_distance=opts.max_distance,
            time_gap=opts.time_gap,
        )
        for k, i in enumerate(new_idx):
            instances[i] = f"{prefix}{numbers_out[len(olds) + k]}"
            inferred[i] = True
        result.groups[label] = len(set(numbers_out))
    result.new_groups = next_number - start
    return instances, inferred


def _store_all(
    store: Any,
    import_id: int,
    todo: list[ImportItem],
    photos: list[Photo],
    instances: list[str],
    inferred: list[bool],
    opts: ImportOptions,
    progress: Progress | None,
    result: ImportResult,
) -> None:
    """Write the photos in batches: durable files, then rows, then the import's progress."""
    order = list(range(len(todo)))
    seen: set[str] = set()
    for start in range(0, len(order), max(1, opts.batch)):
        batch = order[start : start + opts.batch]
        items: list[tuple[str, bytes, ShotRecord]] = []
        catalogue: dict[str, tuple[str, bool]] = {}
        for i in batch:
            item, photo = todo[i], photos[i]
            rel = f"{IMPORT_DIR}/{photo.sha256[:2]}/{photo.sha256}.{_ext(photo.format)}"
            if rel in seen or store.scalar("SELECT 1 FROM shots WHERE path = ?", (rel,)):
                result.duplicates.append(item.origin)
                continue
            seen.add(rel)
            catalogue[instances[i]] = (item.label, inferred[i])
            items.append(
                (rel, item.path.read_bytes(), _record(import_id, item, photo, instances[i]))
            )
        with store.transaction() as conn:
            for instance, (label, was_inferred) in catalogue.items():
                conn.execute(
                    "INSERT OR IGNORE INTO parts(label, name) VALUES (?, ?)", (label, label)
                )
                conn.execute(
                    "INSERT OR IGNORE INTO part_instances"
                    "(instance_id, label, source, created_at, inferred) VALUES (?, ?, ?, ?, ?)",
                    (instance, label, "import", utc_now(), int(was_inferred)),
                )
        store.save_shots(items)
        result.added += len(items)
        with store.transaction() as conn:
            conn.execute(
                "UPDATE imports SET done = done + ?, skipped = ?, updated_at = ? WHERE id = ?",
                (len(items), len(result.duplicates) + result.already_in, utc_now(), import_id),
            )
        if progress:
            progress("storing", min(start + len(batch), len(order)), len(order))


def _ext(fmt: str) -> str:
    return {"jpeg": "jpg", "tiff": "tif"}.get(fmt, fmt or "img")


def _record(import_id: int, item: ImportItem, photo: Photo, instance: str) -> ShotRecord:
    box = photo.box or (None, None, None, None)
    when = item.captured_at or (photo.taken.isoformat() if photo.taken else None)
    return ShotRecord(
        label=item.label,
        instance_id=instance,
        path="",
        sha256="0" * 64,
        size=0,
        width=photo.width,
        height=photo.height,
        format=photo.format,
        bbox_x=box[0],
        bbox_y=box[1],
        bbox_w=box[2],
        bbox_h=box[3],
        captured_at=when,
        source="import",
        import_id=import_id,
        origin=item.origin,
        import_split=item.split,
        crop_hash=photo.crop_hash.hex(),
    )


def group_summary(store: Any, import_id: int) -> dict[str, Counter[str]]:
    """Shots per inferred group, per class, of one import (for the report after an import)."""
    out: dict[str, Counter[str]] = defaultdict(Counter)
    for r in store.query(
        "SELECT s.label, s.instance_id FROM shots s JOIN part_instances p "
        "ON p.instance_id = s.instance_id WHERE s.import_id = ? AND p.inferred = 1 "
        "AND s.deleted_at IS NULL",
        (import_id,),
    ):
        out[r["label"]][r["instance_id"]] += 1
    return out
