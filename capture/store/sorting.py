"""The sorter's durable record: every decision it made, and the review queue of uncertain parts.

Why in the dataset store: a decision log that survives power cuts is the sorter's audit trail
(which model put which part in which bin), and the review queue is how uncertain crops become
new labelled shots for the next snapshot, so both belong next to the shots they feed.

Why decisions are written in batches (:meth:`Sorting.add_decisions`): the sorter classifies
a part in about a millisecond on a PC, while one ``synchronous=FULL`` commit costs about as
much; a writer thread therefore commits whatever has queued up in one transaction (group
commit), with every crop file durable before the row that names it, as for shots.

Sorter shots (contracts, "Datasets"): a labelled review item becomes a shot with
``source = "sorter"``, a fresh instance id of its own, and no background, angle, pose or mask.
"""

from __future__ import annotations

import io
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from capture.store.audit import MANAGED_DIRS, REFERENCED_FILE_QUERIES
from capture.store.base import Repository, StoreBase
from capture.store.file_store import FileStore
from capture.store.records import ShotRecord, lastrowid, normalise_time, to_json
from capture.store.sorting_schema import DECISION_REASONS, REVIEW_STATES
from rig.errors import NotFound, QueryError, StoreError

CROP_DIR = "sorter"
MAX_LIST = 1000

# NOTE: crops live under data/sorter/; check() must know that every file there is named by a
# decision row, and that a labelled item's shot file (under images/) is a shot like any other.
_CROP_QUERY = "SELECT crop_path, NULL FROM decisions WHERE crop_path IS NOT NULL"
if CROP_DIR not in MANAGED_DIRS:
    MANAGED_DIRS.append(CROP_DIR)
if _CROP_QUERY not in REFERENCED_FILE_QUERIES:
    REFERENCED_FILE_QUERIES.append(_CROP_QUERY)


@dataclass
class DecisionRecord:
    """One sorting decision as the sorter hands it to :meth:`Sorting.add_decisions`.

    ``crop_jpeg`` (the part's crop, as captured) is stored when given; ``review`` puts the
    decision in the review queue, which needs the crop.  ``bbox`` is the part's box in the
    frame, ``crop_bbox`` the same box within the crop (it becomes a labelled shot's box).
    """

    label: str
    confidence: float
    bin: int
    reason: str
    top_k: list[tuple[str, float]] = field(default_factory=list)
    model_id: str | None = None
    crop_jpeg: bytes | None = None
    review: bool = False
    bbox: tuple[int, int, int, int] | None = None
    crop_bbox: tuple[int, int, int, int] | None = None
    colour_matrix: Any = None
    #: The simulated feeder's drop the decision was made on (None on a real rig); tests and
    #: benchmarks join it to the simulator's drop log.  Old rows keep their ``truth`` column.
    drop_id: str | None = None
    latency_ms: float | None = None
    at: str | None = None

    def validate(self) -> None:
        if self.reason not in DECISION_REASONS:
            raise StoreError(
                f"decision reason {self.reason!r} must be one of {', '.join(DECISION_REASONS)}"
            )
        if self.review and self.crop_jpeg is None:
            raise StoreError("a decision sent to review needs its crop image (crop_jpeg)")
        if not 0 <= int(self.bin) <= 255:
            raise StoreError(f"decision bin {self.bin} must be between 0 and 255")


class Sorting(Repository):
    """The decision log and the review queue's items (answers go through the label queue)."""

    def __init__(self, base: StoreBase, files: FileStore) -> None:
        super().__init__(base)
        self.files = files

    # --- decisions -------------------------------------------------------------------------------

    def add_decision(self, record: DecisionRecord) -> int:
        """Log one decision (its crop durable first); its id."""
        return self.add_decisions([record])[0]

    def add_decisions(self, records: Sequence[DecisionRecord], *, workers: int = 4) -> list[int]:
        """Log several decisions: crops durable (in parallel), THEN all rows in one transaction.

        Review items are created in the same transaction as their decisions, so a crash never
        leaves an uncertain decision without its queue entry.
        """
        if not records:
            return []
        for record in records:
            record.validate()
        paths = [self._crop_path(r) if r.crop_jpeg is not None else None for r in records]
        jobs = [
            (p, r.crop_jpeg)
            for p, r in zip(paths, records, strict=True)
            if p is not None and r.crop_jpeg is not None
        ]
        if jobs:
            # NOTE: the store's batched write path: every crop durable before any row names it
            self.files.write_files(jobs, workers=workers)
        ids: list[int] = []
        with self.transaction() as conn:
            for record, path in zip(records, paths, strict=True):
                at = normalise_time(record.at)
                cur = conn.execute(
                    "INSERT INTO decisions(at, label, confidence, top_k, bin, reason, model_id,"
                    " crop_path, bbox, crop_bbox, colour_matrix, drop_id, latency_ms)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        at,
                        record.label,
                        float(record.confidence),
                        to_json([[str(k), float(v)] for k, v in record.top_k]),
                        int(record.bin),
                        record.reason,
                        record.model_id,
                        path,
                        _box_json(record.bbox),
                        _box_json(record.crop_bbox),
                        to_json(record.colour_matrix),
                        record.drop_id,
                        record.latency_ms,
                    ),
                )
                decision_id = lastrowid(cur)
                ids.append(decision_id)
                if record.review:
                    conn.execute(
                        "INSERT INTO review_items(decision_id, crop_path, created_at)"
                        " VALUES (?, ?, ?)",
                        (decision_id, path, at),
                    )
        return ids

    def _crop_path(self, record: DecisionRecord) -> str:
        day = normalise_time(record.at)[:10]
        return f"{CROP_DIR}/{day}/{secrets.token_hex(8)}.jpg"

    def list_decisions(
        self,
        *,
        limit: int = 100,
        before_id: int | None = None,
        label: str | None = None,
        model_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """Decisions, newest first; page with ``before_id`` (the last id of the previous page)."""
        if not 1 <= int(limit) <= MAX_LIST:
            raise QueryError(f"limit {limit} must be between 1 and {MAX_LIST}")
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("label", label), ("model_id", model_id)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if before_id is not None:
            where.append("id < ?")
            params.append(int(before_id))
        sql = "SELECT * FROM decisions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self.query(sql + " ORDER BY id DESC LIMIT ?", (*params, int(limit)))
        return [_decode_decision(r) for r in rows]

    def count_decisions(self) -> int:
        return int(self.scalar("SELECT COUNT(*) FROM decisions"))

    def decision_counts(self) -> dict[str, Any]:
        """Totals by bin and by reason, for the Sorter page."""
        by_bin = {str(r["bin"]): r["n"] for r in self.query(
            "SELECT bin, COUNT(*) AS n FROM decisions GROUP BY bin ORDER BY bin")}  # fmt: skip
        by_reason = {r["reason"]: r["n"] for r in self.query(
            "SELECT reason, COUNT(*) AS n FROM decisions GROUP BY reason")}  # fmt: skip
        return {"total": sum(by_bin.values()), "by_bin": by_bin, "by_reason": by_reason}

    # --- the review queue ------------------------------------------------------------------------

    def review_queue(
        self, *, state: str = "open", limit: int = 100, before_id: int | None = None
    ) -> list[dict[str, Any]]:
        """Review items in ``state``, newest first, with their decision's label and confidence."""
        if state not in REVIEW_STATES:
            raise QueryError(f"review state {state!r} must be one of {', '.join(REVIEW_STATES)}")
        if not 1 <= int(limit) <= MAX_LIST:
            raise QueryError(f"limit {limit} must be between 1 and {MAX_LIST}")
        params: list[Any] = [state]
        extra = ""
        if before_id is not None:
            extra = " AND r.id < ?"
            params.append(int(before_id))
        rows = self.query(
            "SELECT r.*, d.label AS predicted, d.confidence, d.top_k, d.model_id, d.reason,"
            " d.at AS decided_at FROM review_items r JOIN decisions d ON d.id = r.decision_id"
            f" WHERE r.state = ?{extra} ORDER BY r.id DESC LIMIT ?",
            (*params, int(limit)),
        )
        return [_decode_decision(r) for r in rows]

    def get_review_item(self, item_id: int) -> dict[str, Any]:
        rows = self.query(
            "SELECT r.*, d.label AS predicted, d.confidence, d.top_k, d.model_id, d.reason,"
            " d.colour_matrix, d.crop_bbox, d.at AS decided_at"
            " FROM review_items r JOIN decisions d ON d.id = r.decision_id WHERE r.id = ?",
            (int(item_id),),
        )
        if not rows:
            raise NotFound(f"review item {item_id} does not exist")
        return _decode_decision(rows[0])

    def review_counts(self) -> dict[str, int]:
        rows = self.query("SELECT state, COUNT(*) AS n FROM review_items GROUP BY state")
        counts = {s: 0 for s in REVIEW_STATES}
        counts.update({r["state"]: r["n"] for r in rows})
        return counts

    def review_shot_record(self, item: dict[str, Any], label: str) -> ShotRecord:
        """The shot a review item becomes, its file (a copy of the crop) already durable.

        The caller commits the row (with the catalogue entries it needs) in its own transaction:
        :meth:`LabelQueue.label_review_item` or the labelling station, which records the action
        with it.
        """
        item_id = int(item["id"])
        data = self._read_crop(item["crop_path"])
        try:
            with Image.open(io.BytesIO(data)) as im:
                width, height = im.size
        except OSError as exc:
            raise StoreError(
                f"the crop of review item {item_id} is not a readable JPEG ({exc}): discard it"
            ) from None
        box = item.get("crop_bbox") or [0, 0, width, height]
        stored = self.files.write_file(f"images/sorter/{int(item_id):08d}.jpg", data)
        record = ShotRecord(
            label=label,
            instance_id=f"sorter-{int(item_id):08d}",
            path=stored.path,
            sha256=stored.sha256,
            size=stored.size,
            source="sorter",
            colour_matrix=item.get("colour_matrix"),
            width=width,
            height=height,
            format="jpeg",
            bbox_x=int(box[0]),
            bbox_y=int(box[1]),
            bbox_w=int(box[2]),
            bbox_h=int(box[3]),
            captured_at=item["decided_at"],
        )
        record.validate()
        return record

    def _read_crop(self, relpath: str) -> bytes:
        try:
            return (self.data_dir / relpath).read_bytes()
        except OSError as exc:
            raise StoreError(
                f"the crop {relpath} is missing from {self.data_dir} ({exc.strerror}); run"
                " `partrig dataset check` and discard this review item"
            ) from None


def _decode_decision(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for key in ("top_k", "bbox", "crop_bbox", "colour_matrix"):
        raw = out.get(key)
        if isinstance(raw, str):
            out[key] = json.loads(raw)
    return out


def _box_json(box: Any) -> str | None:
    return None if box is None else to_json([int(v) for v in box])
