"""The dataset store: SQLite (WAL, migrations) for rows plus durable files under the data dir.

Usage::

    with DatasetStore.open(Path("data")) as store:
        run_id = store.runs.create_run("bricks", plan_toml, plan_json, shots_total=72)
        store.shots.save_shots([ShotFiles(record, ("images/1/000000.jpg", jpeg_bytes))])

``save_shots`` makes every file durable first (temporary name, sync, rename, folder sync) and
only then commits the rows, in one transaction per batch.

The store is small repositories over one connection (:mod:`.dataset_store`): ``files``
(:mod:`.file_store`), ``runs`` (:mod:`.runs`: runs, catalogue, references), ``shots``
(:mod:`.shots`: write path, queries, curation), ``events`` (:mod:`.events`: incidents, the
latched fault), ``audit`` (:mod:`.audit`: check, stats, thumbnails), ``models``, ``snapshots``,
``sorting`` and ``labels``; :mod:`.base` holds the connections and transactions.  The old flat
methods (``store.add_shots``) delegate to them.  See docs/datasets.md.
"""

from __future__ import annotations

from capture.store.audit import MANAGED_DIRS, REFERENCED_FILE_QUERIES
from capture.store.base import DB_NAME
from capture.store.dataset_store import DatasetStore
from capture.store.files import StoredFile
from capture.store.records import CheckReport, DatasetStats, ShotPage, ShotRecord
from capture.store.schema import MIGRATIONS, RUN_STATES
from capture.store.shot_batches import ShotBatches, ShotFiles

__all__ = [
    "DB_NAME",
    "MANAGED_DIRS",
    "MIGRATIONS",
    "REFERENCED_FILE_QUERIES",
    "RUN_STATES",
    "CheckReport",
    "DatasetStats",
    "DatasetStore",
    "ShotBatches",
    "ShotFiles",
    "ShotPage",
    "ShotRecord",
    "StoredFile",
]
