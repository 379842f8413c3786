"""The value types the store takes and returns, and the conversions at its edge.

Why dataclasses and plain dicts: the run engine builds a :class:`ShotRecord` from field names
(it filters its values by ``dataclasses.fields``), and the web app serialises rows straight to
JSON, so rows come back as ``dict`` with the JSON columns already decoded.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rig.errors import QueryError, StoreError

#: Columns stored as JSON text and decoded when read back.
JSON_COLUMNS = ("meta", "action", "exposure", "colour_gains", "colour_matrix")


def utc_now() -> str:
    """Now as the one timestamp format the store keeps (sortable ISO 8601, UTC, microseconds)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def normalise_time(value: str | datetime | None) -> str:
    """Any ISO timestamp or datetime as UTC ISO with microseconds, so text order is time order.

    NOTE: keyset pagination compares ``captured_at`` as text; mixed formats ("Z" vs "+00:00",
    milliseconds vs microseconds) would sort wrongly, so every time is rewritten here.
    """
    if value is None:
        return utc_now()
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise StoreError(
                f"timestamp {value!r} is not ISO 8601 (e.g. 2025-01-31T12:00:00Z)"
            ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def to_json(value: Any) -> str | None:
    """JSON text for a JSON column; tuples and numpy arrays become lists."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        value = tolist()
    return json.dumps(value, separators=(",", ":"), default=_json_default)


def _json_default(obj: Any) -> Any:
    tolist = getattr(obj, "tolist", None)
    if callable(tolist):
        return tolist()
    if isinstance(obj, set | frozenset):
        return sorted(obj)
    raise TypeError(f"cannot store a {type(obj).__name__} as JSON")


def lastrowid(cur: sqlite3.Cursor) -> int:
    """The id an INSERT just made (sqlite3 types it optional; after an INSERT it is set)."""
    rowid = cur.lastrowid
    if rowid is None:
        raise StoreError("the database returned no id for a new row")
    return int(rowid)


def decode_row(row: dict[str, Any] | None) -> dict[str, Any] | None:
    """A row with its JSON columns decoded (text that is not JSON is left as it is)."""
    return None if row is None else decode_one(row)


def decode_one(row: dict[str, Any]) -> dict[str, Any]:
    """:func:`decode_row` for a row that is there."""
    out = dict(row)
    for key in JSON_COLUMNS:
        raw = out.get(key)
        if isinstance(raw, str):
            with contextlib.suppress(ValueError):
                out[key] = json.loads(raw)
    return out


@dataclass
class ShotRecord:
    """One shot as the run engine or the sorter hands it to :meth:`DatasetStore.add_shot`.

    Sorter shots (``source="sorter"``) leave ``run_id``, ``shot_index``, ``pose``,
    ``background_id``, the angles and the mask empty.  ``path``/``sha256``/``size`` come from
    :meth:`DatasetStore.write_file`, which must have returned before the record is added.
    """

    label: str
    instance_id: str
    path: str
    sha256: str
    size: int
    run_id: int | None = None
    shot_index: int | None = None
    pose: str | None = None
    background_id: int | None = None
    angle_cmd: float | None = None
    angle_measured: float | None = None
    light_level: float | None = None
    exposure_us: int | None = None
    analogue_gain: float | None = None
    colour_gains: Any = None
    colour_matrix: Any = None
    width: int | None = None
    height: int | None = None
    format: str | None = None
    mask_path: str | None = None
    bbox_x: int | None = None
    bbox_y: int | None = None
    bbox_w: int | None = None
    bbox_h: int | None = None
    captured_at: str | datetime | None = None
    source: str = "capture"
    thumb_path: str | None = None
    import_id: int | None = None
    origin: str | None = None
    import_split: str | None = None
    crop_hash: str | None = None

    @property
    def bbox(self) -> tuple[int, int, int, int] | None:
        x, y, w, h = self.bbox_x, self.bbox_y, self.bbox_w, self.bbox_h
        if x is None or y is None or w is None or h is None:
            return None
        return int(x), int(y), int(w), int(h)

    def validate(self) -> None:
        """Refuse a record that would store nonsense, naming the field to fix."""
        self.validate_fields()
        if self.size is None or int(self.size) < 0 or len(str(self.sha256)) != 64:
            raise StoreError("shot size/sha256 missing: store the file with write_file() first")

    def validate_fields(self) -> None:
        """:meth:`validate` without the file fields: checked before the files are written."""
        if not self.label or not str(self.label).strip():
            raise StoreError("shot label is empty: every shot needs its part label")
        if not self.instance_id:
            raise StoreError("shot instance_id is empty: give the physical part instance")
        if self.source not in ("capture", "sorter", "import"):
            raise StoreError(f"shot source {self.source!r} must be 'capture', 'sorter' or 'import'")
        if self.source == "import" and self.import_id is None:
            raise StoreError("an imported shot needs the import_id of its imports row")
        if self.source == "capture" and (self.run_id is None or self.shot_index is None):
            raise StoreError("a captured shot needs run_id and shot_index")
        for name in ("angle_cmd", "angle_measured", "light_level", "analogue_gain"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(float(value)):
                raise StoreError(f"shot {name} is {value!r}; it must be a finite number")
        if self.bbox is None and any(
            v is not None for v in (self.bbox_x, self.bbox_y, self.bbox_w, self.bbox_h)
        ):
            raise StoreError("shot bbox needs all of bbox_x, bbox_y, bbox_w and bbox_h")


@dataclass
class ShotPage:
    """One page of a shot query and the cursor for the next (``None`` on the last page)."""

    items: list[dict[str, Any]]
    next_cursor: str | None


def encode_cursor(captured_at: str, shot_id: int) -> str:
    raw = f"{captured_at}|{int(shot_id)}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, int]:
    """The (captured_at, id) a cursor points after; QueryError for anything we did not issue."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        text = base64.urlsafe_b64decode(padded.encode()).decode()
        at, _, sid = text.rpartition("|")
        datetime.fromisoformat(at)
        return at, int(sid)
    except (ValueError, UnicodeError):
        raise QueryError(
            "the page cursor is not valid: use the next_cursor of a previous page, "
            "or leave it empty for the first page"
        ) from None


@dataclass
class CheckReport:
    """What :meth:`DatasetStore.check` found; ``ok`` when there is nothing to fix."""

    orphan_files: list[str] = field(default_factory=list)
    missing_files: list[str] = field(default_factory=list)
    checksum_mismatches: list[str] = field(default_factory=list)
    temp_leftovers: list[str] = field(default_factory=list)
    files_checked: int = 0
    rows_checked: int = 0
    integrity: str = "ok"
    #: Temporary leftovers startup_check() removed (never referenced, so nothing was lost).
    removed_temp_files: list[str] = field(default_factory=list)
    #: Damaged pages: quick_check failed or a query raised.  The rows were then not compared
    #: with the files (they cannot be trusted), so only the file-level findings are listed.
    database_damaged: bool = False
    #: Other leftovers of interrupted writes (capture.store.leftovers.Leftover): unfinished
    #: snapshot folders, model uploads, partial downloads, with their sizes.
    leftovers: list[Any] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.integrity == "ok"
            and not self.database_damaged
            and not (
                self.orphan_files
                or self.missing_files
                or self.checksum_mismatches
                or self.temp_leftovers
                or self.leftovers
            )
        )

    def removable(self) -> list[str]:
        """Paths (relative to the data folder) that ``--remove-temporaries`` would delete."""
        return sorted([*self.temp_leftovers, *(x.path for x in self.leftovers)])

    def problems(self) -> list[str]:
        """One line per problem, saying what it is and what to do."""
        out = [] if self.integrity == "ok" else [f"database integrity: {self.integrity}"]
        out += [f"orphan file (no row refers to it): {p}" for p in self.orphan_files]
        out += [f"missing file (a row refers to it): {p}" for p in self.missing_files]
        out += [
            f"checksum mismatch (file changed after it was stored): {p}"
            for p in self.checksum_mismatches
        ]
        out += [f"temporary leftover from an interrupted write: {p}" for p in self.temp_leftovers]
        out += [leftover.describe() for leftover in self.leftovers]
        return out


@dataclass
class DatasetStats:
    """Live (not deleted) shot counts, for ``partrig dataset stats`` and the web page."""

    total: int
    deleted: int
    by_label: dict[str, int]
    by_background: dict[str, int]
    by_run: dict[str, int]
    by_instance: dict[str, int]
    by_label_background: dict[str, dict[str, int]]
    by_source: dict[str, int]
