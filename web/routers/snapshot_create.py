"""``POST /api/snapshots``: write a snapshot in the server that owns the data folder.

Why in the server: while ``partrig serve`` runs it holds the data folder's lock, and the store's
one writer is the lock holder (contracts.md, #7), so ``partrig dataset snapshot`` used to refuse
and the README's flow stopped there.  The command now sends its options here with an operator
key; the server writes the snapshot with the same function the command uses by itself
(:func:`capture.snapshots.build.create_snapshot`) and answers its manifest and report.

The route is a plain ``def``: FastAPI runs it in a worker thread, so a snapshot of many
thousand shots (tens of seconds) never blocks the event loop, the e-stop or the page.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from web.deps import OperatorAuth, SettingsDep, StoreDep

router = APIRouter(prefix="/api/snapshots", tags=["snapshots"])

Fraction = Annotated[float | None, Field(default=None, ge=0, le=1)]


class SnapshotRequest(BaseModel):
    """The options of ``partrig dataset snapshot``; empty lists mean "all"."""

    labels: list[Annotated[str, Field(max_length=64)]] = Field(
        default_factory=list, max_length=1000
    )
    # NOTE: ids are SQLite integers: a larger number is a 422 here, not an overflow in the query.
    runs: list[Annotated[int, Field(ge=1, le=2**63 - 1)]] = Field(
        default_factory=list, max_length=10000
    )
    backgrounds: list[Annotated[int, Field(ge=0, le=2**63 - 1)]] = Field(
        default_factory=list, max_length=1000
    )
    sources: list[Literal["capture", "sorter", "import"]] = Field(
        default_factory=list, max_length=3
    )
    since: str | None = Field(None, max_length=64, description="captured at or after (ISO 8601)")
    until: str | None = Field(None, max_length=64, description="captured at or before")
    min_per_class: int = Field(1, ge=1, le=10_000_000)
    train: Fraction = None
    val: Fraction = None
    test: Fraction = None
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    group_by: Literal["instance", "session", "pose"] = "instance"
    formats: list[Literal["webdataset", "folder", "coco", "csv"]] = Field(
        default_factory=list, max_length=4
    )
    allow_empty_splits: bool = False


@router.post("", status_code=201)
def create(
    body: SnapshotRequest, settings: SettingsDep, store: StoreDep, who: OperatorAuth
) -> dict[str, Any]:
    """Freeze a filtered view of the store into a new snapshot; answers its manifest and report.

    400 when the selection is empty or a class has too few part instances to split (the
    message says what to change, as the command says it when it runs by itself).
    """
    from capture.snapshots.build import create_snapshot, snapshot_dir
    from capture.snapshots.filter import SnapshotFilter
    from capture.snapshots.formats import FORMATS
    from capture.snapshots.splits import SplitError, SplitRules
    from rig.errors import QueryError

    cfg = settings.snapshot
    rules = SplitRules(
        train=cfg.train if body.train is None else body.train,
        val=cfg.val if body.val is None else body.val,
        test=cfg.test if body.test is None else body.test,
        seed=cfg.seed if body.seed is None else body.seed,
        group_by=body.group_by,
        allow_empty=body.allow_empty_splits,
    )
    flt = SnapshotFilter(
        labels=tuple(body.labels),
        runs=tuple(body.runs),
        backgrounds=tuple(body.backgrounds),
        sources=tuple(body.sources),
        since=body.since,
        until=body.until,
        min_per_class=body.min_per_class,
    )
    try:
        manifest = create_snapshot(
            store, settings, flt, rules, formats=tuple(body.formats or FORMATS)
        )
    except SplitError as exc:
        raise QueryError(str(exc)) from None
    report_path = snapshot_dir(store.data_dir, manifest["id"]) / "report.json"
    report = json.loads(report_path.read_text(encoding="utf-8"))
    return {"manifest": manifest, "report": report, "created_by": who.name}
