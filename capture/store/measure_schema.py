"""The migration and the rows for per-shot measurements in millimetres (``shot_measurements``).

Why a table of its own rather than shot columns: a measurement is derived data (from the image,
the mask and the lens calibration), re-computable when the method or the calibration improves,
and absent for imported photos without a sheet; one row per measured shot keeps the shot row
and its insert path unchanged.  A shot whose sheet marker was not found gets a row with
``status = 'marker_missing'`` and no sizes: flagged, never given a guessed scale.

Columns: the sheet the marker named, whether a lens calibration was applied, length and width
(minimum-area rectangle), area, the rectangle's angle, the shaft and head lengths of a screw
where its shape allows, the local scale, and the height above the sheet the outline was
measured at (the parallax correction, ``docs/capture.md``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlite_utils import Database

from rig.errors import QueryError

#: A measurement's outcome.
MEASURE_STATES = ("measured", "marker_missing", "no_part")

_DDL = f"""
CREATE TABLE shot_measurements (
    shot_id INTEGER PRIMARY KEY REFERENCES shots(id) ON DELETE CASCADE,
    status TEXT NOT NULL CHECK (status IN ({", ".join(repr(s) for s in MEASURE_STATES)})),
    sheet INTEGER,
    calibrated INTEGER NOT NULL DEFAULT 0,
    length_mm REAL,
    width_mm REAL,
    area_mm2 REAL,
    angle_deg REAL,
    shaft_length_mm REAL,
    head_length_mm REAL,
    mm_per_px REAL,
    plane_mm REAL,
    measured_at TEXT NOT NULL
)
"""

#: The columns a measurement carries (besides the shot id, status and time).
SIZE_COLUMNS = (
    "sheet", "calibrated", "length_mm", "width_mm", "area_mm2", "angle_deg",
    "shaft_length_mm", "head_length_mm", "mm_per_px", "plane_mm",
)  # fmt: skip


def v_measurements(db: Database) -> None:
    """Add ``shot_measurements``."""
    db.conn.execute(_DDL)
    db.conn.execute("CREATE INDEX shot_measurements_length ON shot_measurements(length_mm)")


def measurement_row(shot_id: int, status: str, sizes: dict[str, Any] | None, at: str) -> dict:
    """The row for one shot; ``sizes`` is :meth:`capture.vision.measure.Measurement.to_json` or
    None."""
    if status not in MEASURE_STATES:
        raise ValueError(f"status must be one of {', '.join(MEASURE_STATES)} (got {status!r})")
    row: dict[str, Any] = {"shot_id": int(shot_id), "status": status, "measured_at": at}
    for col in SIZE_COLUMNS:
        row[col] = None if sizes is None else sizes.get(col)
    row["calibrated"] = int(bool(row["calibrated"]))
    return row


def record_measurement(conn: Any, row: dict) -> None:
    """Insert or replace one shot's measurement (re-measuring wins); call inside the store's
    ``transaction()``."""
    cols = list(row)
    conn.execute(
        f"INSERT OR REPLACE INTO shot_measurements({', '.join(cols)}) "
        f"VALUES ({', '.join('?' * len(cols))})",
        [row[c] for c in cols],
    )


def measurements_for(db: Database, shot_ids: list[int]) -> dict[int, dict]:
    """The stored measurements of these shots, by shot id (shots never measured are absent)."""
    out: dict[int, dict] = {}
    ids = [int(i) for i in shot_ids]
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        cur = db.conn.execute(
            f"SELECT * FROM shot_measurements WHERE shot_id IN ({', '.join('?' * len(chunk))})",
            chunk,
        )
        names = [d[0] for d in cur.description]
        for values in cur.fetchall():
            row = dict(zip(names, values, strict=True))
            out[int(row["shot_id"])] = row
    return out


#: The measurement's fields as snapshots export them with each shot (metadata, CSV, COCO).
EXPORT_FIELDS = (
    "length_mm", "width_mm", "area_mm2", "shaft_length_mm", "head_length_mm", "mm_per_px",
)  # fmt: skip


def measurement_fields(db: Database | None, shot_id: int) -> dict[str, Any]:
    """The shot's measurement for export: ``measure_status``, ``measure_calibrated`` and
    :data:`EXPORT_FIELDS`; empty when the shot was never measured (or there is no store)."""
    if db is None:
        return {}
    cur = db.conn.execute(
        f"SELECT status, calibrated, {', '.join(EXPORT_FIELDS)} FROM shot_measurements"
        " WHERE shot_id = ?",
        (int(shot_id),),
    )
    row = cur.fetchone()
    if row is None:
        return {}
    out: dict[str, Any] = {"measure_status": row[0], "measure_calibrated": bool(row[1])}
    out.update(zip(EXPORT_FIELDS, row[2:], strict=True))
    return out


#: The size bounds the browse filter takes: (keyword, column, comparison).
SIZE_BOUNDS = (
    ("min_length_mm", "length_mm", ">="), ("max_length_mm", "length_mm", "<="),
    ("min_width_mm", "width_mm", ">="), ("max_width_mm", "width_mm", "<="),
    ("min_area_mm2", "area_mm2", ">="), ("max_area_mm2", "area_mm2", "<="),
)  # fmt: skip


def size_filter_sql(bounds: Mapping[str, float | None]) -> tuple[list[str], list[Any]]:
    """WHERE clauses (over ``shots``) keeping measured shots within the given sizes in mm.

    A shot never measured, or flagged ``marker_missing``, has no size and matches no bound.
    """
    unknown = set(bounds) - {key for key, _, _ in SIZE_BOUNDS}
    if unknown:
        known = ", ".join(key for key, _, _ in SIZE_BOUNDS)
        raise QueryError(f"unknown size bound(s) {', '.join(sorted(unknown))}; use {known}")
    conds: list[str] = []
    params: list[Any] = []
    for key, column, op in SIZE_BOUNDS:
        value = bounds.get(key)
        if value is not None:
            conds.append(f"m.{column} {op} ?")
            params.append(float(value))
    if not conds:
        return [], []
    clause = (
        "EXISTS (SELECT 1 FROM shot_measurements m WHERE m.shot_id = shots.id"
        f" AND m.status = 'measured' AND {' AND '.join(conds)})"
    )
    return [clause], params
