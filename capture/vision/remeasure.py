"""Re-measure stored shots from their image, mask, reference frame and the stored lens calibration.

Why a job with a start time rather than a list of shot ids: after ``calibrate-lens`` (or a better
measuring method) every measurement of a run, or of the whole dataset, is recomputed, and on a
Pi that takes minutes.  A ``measure_jobs`` row records the scope and when the job started; a shot
is still to do while its measurement is older than that (or missing).  Killing the command and
running it again with the same scope resumes the open job: the shots already re-measured are
newer than its start and are skipped.  Each batch of measurements commits together with the
job's progress in one transaction, so a crash loses at most the batch being computed and never
leaves the progress and the rows disagreeing.  Re-measuring is idempotent: the same images and
calibration give the same rows.

Shots without a mask or without their run's reference frame (imported photos, the sorter's
shots) cannot be measured from a sheet and are left as they are, counted as ``skipped``.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from capture.store.measure_schema import measurement_row, record_measurement
from capture.store.records import lastrowid, utc_now
from capture.vision.measure import ShotMeasurer
from rig.errors import QueryError, StoreError

log = logging.getLogger(__name__)

#: Shots measured per transaction: big enough to amortise the commit's fsync, small enough that
#: an interruption repeats little.
BATCH = 25
#: Reference frames kept decoded (a run has one per background sheet).
REFERENCES_KEPT = 4

Progress = Callable[[int, int], None]

_PENDING_SQL = """
SELECT s.id, s.path, s.mask_path, s.run_id, s.background_id, s.pose
FROM shots s LEFT JOIN shot_measurements m ON m.shot_id = s.id
WHERE s.deleted_at IS NULL AND s.run_id IS NOT NULL {run}
  AND (m.measured_at IS NULL OR m.measured_at < ?) AND s.id > ?
ORDER BY s.id LIMIT ?
"""


@dataclass
class RemeasureReport:
    """What a re-measure did; ``resumed`` when it continued an interrupted job."""

    job_id: int
    total: int
    done: int
    measured: int = 0
    marker_missing: int = 0
    no_part: int = 0
    skipped: int = 0
    resumed: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _scope(run_id: int | None, all_runs: bool) -> str:
    if (run_id is None) == (not all_runs):
        raise QueryError("say what to re-measure: --run ID for one run, or --all for every run")
    return json.dumps({"run": int(run_id)} if run_id is not None else {"all": True})


def _read(path: Path, flags: int) -> np.ndarray:
    image = cv2.imread(str(path), flags)
    if image is None:
        raise StoreError(f"{path} is missing or not an image; run `partrig dataset check`")
    return image


class _References:
    """Decoded reference frames by path; the same array object for the same frame, so the
    measurer finds each sheet's pose once per reference."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._kept: OrderedDict[str, np.ndarray] = OrderedDict()

    def get(self, rel: str) -> np.ndarray:
        if rel in self._kept:
            self._kept.move_to_end(rel)
            return self._kept[rel]
        image = cv2.cvtColor(_read(self.data_dir / rel, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        self._kept[rel] = image
        while len(self._kept) > REFERENCES_KEPT:
            self._kept.popitem(last=False)
        return image


class Remeasure:
    """One re-measure job over a store (``store`` is a DatasetStore)."""

    def __init__(self, store: Any, measurer: ShotMeasurer | None = None) -> None:
        self.store = store
        self.measurer = measurer or ShotMeasurer.for_data_dir(store.data_dir)
        self.references = _References(Path(store.data_dir))

    def run(
        self,
        *,
        run_id: int | None = None,
        all_runs: bool = False,
        who: str = "cli",
        progress: Progress | None = None,
        stop: Callable[[], bool] | None = None,
        batch: int = BATCH,
    ) -> RemeasureReport:
        """Re-measure the scope's shots, resuming an interrupted job of the same scope."""
        scope = _scope(run_id, all_runs)
        if run_id is not None:
            self.store.get_run(run_id)  # NotFound names the command that lists runs
        report = self._open_job(scope, run_id, who)
        started = str(self.store.scalar("SELECT started_at FROM measure_jobs WHERE id = ?",
                                        (report.job_id,)))  # fmt: skip
        after = 0
        while not (stop is not None and stop()):
            rows = self.store.query(
                _PENDING_SQL.format(run="AND s.run_id = ?" if run_id is not None else ""),
                (*([run_id] if run_id is not None else []), started, after, int(batch)),
            )
            if not rows:
                self._finish(report)
                break
            after = int(rows[-1]["id"])
            self._batch(rows, report)
            if progress is not None:
                progress(report.done, report.total)
        return report

    def _open_job(self, scope: str, run_id: int | None, who: str) -> RemeasureReport:
        where = "s.deleted_at IS NULL AND s.run_id IS NOT NULL"
        params: tuple[Any, ...] = ()
        if run_id is not None:
            where += " AND s.run_id = ?"
            params = (run_id,)
        with self.store.transaction() as conn:
            row = conn.execute(
                "SELECT id, total, done FROM measure_jobs WHERE scope = ? AND finished_at IS NULL"
                " ORDER BY id DESC LIMIT 1",
                (scope,),
            ).fetchone()
            if row is not None:
                return RemeasureReport(int(row[0]), int(row[1]), int(row[2]), resumed=True)
            total = int(conn.execute(f"SELECT COUNT(*) FROM shots s WHERE {where}", params)
                        .fetchone()[0])  # fmt: skip
            cur = conn.execute(
                "INSERT INTO measure_jobs(scope, started_at, total, who) VALUES (?, ?, ?, ?)",
                (scope, utc_now(), total, who),
            )
            return RemeasureReport(lastrowid(cur), total, 0)

    def _batch(self, rows: list[dict[str, Any]], report: RemeasureReport) -> None:
        """Measure the rows (slow, outside any transaction), then store them in one."""
        results: list[dict[str, Any]] = []
        for row in rows:
            outcome = self._measure(row)
            if outcome is None:
                report.skipped += 1
                continue
            status, sizes = outcome
            setattr(report, status, getattr(report, status) + 1)
            results.append(measurement_row(int(row["id"]), status, sizes, utc_now()))
        report.done += len(rows)
        with self.store.transaction() as conn:
            for result in results:
                record_measurement(conn, result)
            conn.execute(
                "UPDATE measure_jobs SET done = MIN(total, done + ?) WHERE id = ?",
                (len(rows), report.job_id),
            )
        report.done = min(report.done, report.total)

    def _measure(self, row: dict[str, Any]) -> tuple[str, dict[str, Any] | None] | None:
        """(status, sizes) for one shot, or None when it cannot be measured from a sheet."""
        if not row["mask_path"] or row["background_id"] is None:
            return None
        ref = self.store.reference_for(int(row["run_id"]), int(row["background_id"]), row["pose"])
        if ref is None:
            return None
        data = Path(self.store.data_dir)
        try:
            reference = self.references.get(str(ref["path"]))
            frame = cv2.cvtColor(_read(data / row["path"], cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            mask = _read(data / row["mask_path"], cv2.IMREAD_GRAYSCALE) > 0
        except StoreError as exc:
            log.warning("shot %s not re-measured: %s", row["id"], exc)
            return None
        if mask.shape != frame.shape[:2] or reference.shape != frame.shape:
            log.warning("shot %s not re-measured: image, mask and reference sizes differ",
                        row["id"])  # fmt: skip
            return None
        return self.measurer(frame, reference, mask)

    def _finish(self, report: RemeasureReport) -> None:
        with self.store.transaction() as conn:
            conn.execute(
                "UPDATE measure_jobs SET finished_at = ?, done = total WHERE id = ?",
                (utc_now(), report.job_id),
            )
        report.done = report.total


def remeasure(store: Any, **kwargs: Any) -> RemeasureReport:
    """Convenience: :meth:`Remeasure.run` with the data folder's lens calibration."""
    return Remeasure(store).run(**kwargs)


def open_jobs(store: Any) -> list[dict[str, Any]]:
    """Interrupted re-measure jobs (the CLI names them so the person can resume)."""
    return list(store.query("SELECT * FROM measure_jobs WHERE finished_at IS NULL ORDER BY id"))
