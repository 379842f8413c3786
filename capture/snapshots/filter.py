"""Which shots a snapshot freezes: the filter, and the grouping its split works on.

Why the filter is a plain dataclass stored verbatim in the manifest: a trainer must be able to
see exactly which view of the store a snapshot is, and re-create a comparable one later.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from capture.store.records import normalise_time
from rig.errors import QueryError, RigError

GROUP_BY = ("instance", "session", "pose")

#: The shot columns a snapshot carries into its formats and its report.
SHOT_COLUMNS = (
    "id",
    "run_id",
    "shot_index",
    "label",
    "instance_id",
    "pose",
    "background_id",
    "angle_cmd",
    "angle_measured",
    "light_level",
    "exposure_us",
    "analogue_gain",
    "colour_gains",
    "colour_matrix",
    "path",
    "sha256",
    "size",
    "width",
    "height",
    "format",
    "mask_path",
    "bbox_x",
    "bbox_y",
    "bbox_w",
    "bbox_h",
    "captured_at",
    "source",
)


@dataclass(frozen=True)
class SnapshotFilter:
    """A view of the store: empty lists mean "all"; times are inclusive ISO 8601 bounds.

    ``min_per_class`` drops classes with fewer shots than that (listed in the report), so a
    class with a handful of shots does not sink the whole snapshot.
    """

    labels: tuple[str, ...] = ()
    runs: tuple[int, ...] = ()
    backgrounds: tuple[int, ...] = ()
    since: str | None = None
    until: str | None = None
    min_per_class: int = 1
    sources: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("labels", "runs", "backgrounds", "sources"):
            out[key] = list(out[key])
        return out

    def where(self) -> tuple[str, list[Any]]:
        """The SQL condition and its parameters for the live shots this filter selects."""
        if self.min_per_class < 1:
            raise QueryError(f"min_per_class is {self.min_per_class}; it must be 1 or more")
        clauses = ["deleted_at IS NULL"]
        params: list[Any] = []
        for column, values in (
            ("label", self.labels),
            ("run_id", self.runs),
            ("background_id", self.backgrounds),
            ("source", self.sources),
        ):
            if values:
                clauses.append(f"{column} IN ({', '.join('?' * len(values))})")
                params += list(values)
        if self.since:
            clauses.append("captured_at >= ?")
            params.append(_time(self.since, "since"))
        if self.until:
            clauses.append("captured_at <= ?")
            params.append(_time(self.until, "until"))
        return " AND ".join(clauses), params


def _time(value: str, name: str) -> str:
    try:
        return normalise_time(value)
    except RigError:
        raise QueryError(
            f"--{name} {value!r} is not an ISO 8601 time, e.g. 2025-01-31T12:00Z"
        ) from None


#: What the split needs of every selected shot; the rest is read in batches while writing.
SELECT_COLUMNS = ("id", "label", "instance_id", "run_id", "pose")
BATCH = 500


def select_shots(store: Any, flt: SnapshotFilter) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The selected shots (ascending id, :data:`SELECT_COLUMNS` only) and the dropped classes.

    NOTE: a million shots must not cost gigabytes: only the few columns the split needs are held
    for every shot; :func:`full_rows` reads the rest batch by batch as the formats are written.
    """
    where, params = flt.where()
    columns = ", ".join(SELECT_COLUMNS)
    rows = store.query(f"SELECT {columns} FROM shots WHERE {where} ORDER BY id", params)
    per_class = Counter(r["label"] for r in rows)
    dropped = {label: n for label, n in sorted(per_class.items()) if n < flt.min_per_class}
    if dropped:
        rows = [r for r in rows if r["label"] not in dropped]
    return rows, dropped


def group_key(shot: dict[str, Any], group_by: str) -> str:
    """The group a shot's split is decided by.

    ``instance`` is leak-free.  ``session`` (instance and run) and ``pose`` (instance, run and
    pose) let one physical part appear in two splits: weaker, and marked so in the report.
    """
    instance = str(shot["instance_id"])
    if group_by == "instance":
        return instance
    if group_by == "session":
        return f"{instance}|run{shot['run_id']}"
    if group_by == "pose":
        return f"{instance}|run{shot['run_id']}|pose{shot['pose']}"
    raise QueryError(f"group_by {group_by!r} must be one of {', '.join(GROUP_BY)}")


def full_rows(store: Any, shots: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every column of ``shots`` (selected rows, ascending id), read :data:`BATCH` at a time.

    The label is the one selected, so a relabel while the snapshot is written cannot move a shot
    to a class the snapshot does not list.
    """
    columns = ", ".join(SHOT_COLUMNS)
    for start in range(0, len(shots), BATCH):
        chunk = shots[start : start + BATCH]
        marks = ", ".join("?" * len(chunk))
        found = {
            r["id"]: r
            for r in store.query(
                f"SELECT {columns} FROM shots WHERE id IN ({marks})", [r["id"] for r in chunk]
            )
        }
        for selected in chunk:
            row = found[selected["id"]]
            row["label"] = selected["label"]
            yield row
