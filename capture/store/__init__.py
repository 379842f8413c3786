"""The dataset store: SQLite (WAL, migrations) for rows plus durable files under the data dir.

Usage::

    with DatasetStore.open(Path("data")) as store:
        run_id = store.create_run("bricks", plan_toml, plan_json, shots_total=72)
        stored = store.write_file("images/1/000000.jpg", jpeg_bytes)   # durable first
        store.add_shot(ShotRecord(label="3001", instance_id="3001-a", run_id=run_id,
                                  shot_index=0, path=stored.path, sha256=stored.sha256,
                                  size=stored.size))                  # then the row

The class is assembled from small mixins, one job each: :mod:`.base` (connections and
transactions), :mod:`.runs` (runs, catalogue, references), :mod:`.shots` (write path, queries,
curation), :mod:`.events` (incidents, the latched fault) and :mod:`.audit` (check, stats,
thumbnails).  See docs/datasets.md.
"""

from __future__ import annotations

from pathlib import Path

from capture.store.audit import MANAGED_DIRS, REFERENCED_FILE_QUERIES, AuditMixin
from capture.store.base import DB_NAME
from capture.store.events import EventsMixin
from capture.store.files import StoredFile
from capture.store.label_queue import LabelQueueMixin
from capture.store.models import ModelsMixin
from capture.store.records import CheckReport, DatasetStats, ShotPage, ShotRecord
from capture.store.runs import RunsMixin
from capture.store.schema import MIGRATIONS, RUN_STATES
from capture.store.shots import ShotsMixin
from capture.store.snapshots import SnapshotsMixin
from capture.store.sorting import SortingMixin


class DatasetStore(
    RunsMixin,
    ShotsMixin,
    EventsMixin,
    AuditMixin,
    ModelsMixin,
    SnapshotsMixin,
    SortingMixin,
    LabelQueueMixin,
):
    """The one store of runs, shots, incidents and faults; thread-safe (a connection per thread).

    Open with :meth:`DatasetStore.open`; use as a context manager or call :meth:`close`.
    """

    @classmethod
    def open(cls, data_dir: Path | str, *, thumbnail_px: int = 256) -> DatasetStore:  # type: ignore[override]
        """Open (creating and migrating as needed) the store in ``data_dir``."""
        return super().open(data_dir, thumbnail_px=thumbnail_px)

    def __enter__(self) -> DatasetStore:
        return self


__all__ = [
    "DB_NAME",
    "MANAGED_DIRS",
    "MIGRATIONS",
    "REFERENCED_FILE_QUERIES",
    "RUN_STATES",
    "CheckReport",
    "DatasetStats",
    "DatasetStore",
    "ShotPage",
    "ShotRecord",
    "StoredFile",
]
