"""The dataset store as one object: small repositories over one connection, and the old API.

Why repositories: each area of the store (files, runs, shots, events, audit, models,
snapshots, sorting, labels) is a class of its own over the one :class:`StoreBase`, which holds
the per-thread connections, the transaction and the data folder.  A consumer that needs one
area takes that repository (``store.shots``, ``store.events``) or a Protocol of it
(:mod:`capture.store.areas`); an area that needs another is given it when the store is opened,
so nothing is found by name at run time.

Why the delegations below: every caller in the tree still says ``store.add_shots(...)``; they
keep working unchanged, one line each, while callers move to the repositories.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from capture.store.audit import Audit
from capture.store.base import StoreBase
from capture.store.events import Events
from capture.store.file_store import WRITE_WORKERS, FileStore
from capture.store.files import REAL_FS, FileSystem, StoredFile
from capture.store.label_queue import LabelQueue
from capture.store.models import Models
from capture.store.records import CheckReport, DatasetStats, ShotPage, ShotRecord
from capture.store.runs import Runs
from capture.store.shot_batches import ShotBatches, ShotItem
from capture.store.shots import Shots
from capture.store.snapshots import Snapshots
from capture.store.sorting import DecisionRecord, Sorting


class DatasetStore(StoreBase):
    """The one store of runs, shots, incidents and faults; thread-safe (a connection per thread).

    Open with :meth:`DatasetStore.open`; use as a context manager or call :meth:`close`.
    """

    def __init__(
        self, data_dir: Path, *, thumbnail_px: int = 256, fs: FileSystem = REAL_FS
    ) -> None:
        super().__init__(data_dir, thumbnail_px=thumbnail_px, fs=fs)
        self.files = FileStore(self)
        self.runs = Runs(self)
        self.shots = Shots(self, self.files)
        self.events = Events(self)
        self.audit = Audit(self, self.files, self.shots, self.events)
        self.models = Models(self)
        self.snapshots = Snapshots(self)
        self.sorting = Sorting(self, self.files)
        self.labels = LabelQueue(self, self.sorting)

    # --- files ------------------------------------------------------------------------------------

    def write_file(self, relpath: str, data: bytes) -> StoredFile:
        return self.files.write_file(relpath, data)

    def write_files(
        self, files: Sequence[tuple[str, bytes]], *, workers: int = WRITE_WORKERS
    ) -> list[StoredFile]:
        return self.files.write_files(files, workers=workers)

    # --- runs -------------------------------------------------------------------------------------

    def upsert_part(
        self, label: str, name: str | None = None, meta: dict[str, Any] | None = None
    ) -> None:
        return self.runs.upsert_part(label, name, meta)

    def upsert_instance(self, instance_id: str, label: str, source: str = "capture") -> None:
        return self.runs.upsert_instance(instance_id, label, source)

    def upsert_background(self, sheet_id: int, name: str, kind: str = "unknown") -> None:
        return self.runs.upsert_background(sheet_id, name, kind)

    def list_parts(self) -> list[dict[str, Any]]:
        return self.runs.list_parts()

    def create_run(self, name: str, plan_toml: str, plan_json: str, shots_total: int) -> int:
        return self.runs.create_run(name, plan_toml, plan_json, shots_total)

    def get_run(self, run_id: int) -> dict[str, Any]:
        return self.runs.get_run(run_id)

    def list_runs(self, limit: int = 1000) -> list[dict[str, Any]]:
        return self.runs.list_runs(limit)

    def set_run_state(
        self,
        run_id: int,
        state: str,
        *,
        prompt: str | None = None,
        action: dict[str, Any] | None = None,
        reason: str | None = None,
    ) -> None:
        return self.runs.set_run_state(run_id, state, prompt=prompt, action=action, reason=reason)

    def set_run_exposure(self, run_id: int, exposure: dict[str, Any]) -> None:
        return self.runs.set_run_exposure(run_id, exposure)

    def mark_running_runs_interrupted(self) -> list[int]:
        return self.runs.mark_running_runs_interrupted()

    def add_reference(
        self,
        run_id: int,
        background_id: int,
        *,
        path: str,
        sha256: str,
        colour_matrix: Any = None,
        exposure: Any = None,
        pose: str | None = None,
    ) -> int:
        return self.runs.add_reference(
            run_id,
            background_id,
            path=path,
            sha256=sha256,
            colour_matrix=colour_matrix,
            exposure=exposure,
            pose=pose,
        )

    def reference_for(
        self, run_id: int, background_id: int, pose: str | None = None
    ) -> dict[str, Any] | None:
        return self.runs.reference_for(run_id, background_id, pose)

    # --- shots ------------------------------------------------------------------------------------

    def save_shots(self, items: Sequence[ShotItem], *, workers: int = WRITE_WORKERS) -> list[int]:
        return self.shots.save_shots(items, workers=workers)

    def shot_batches(self, *, workers: int = WRITE_WORKERS) -> ShotBatches:
        return self.shots.batches(workers=workers)

    def add_shot(self, record: ShotRecord) -> int:
        return self.shots.add_shot(record)

    def add_shots(self, records: Iterable[ShotRecord]) -> list[int]:
        return self.shots.add_shots(records)

    def done_shot_indices(self, run_id: int) -> set[int]:
        return self.shots.done_shot_indices(run_id)

    def get_shot(self, shot_id: int) -> dict[str, Any]:
        return self.shots.get_shot(shot_id)

    def query_shots(
        self,
        label: str | None = None,
        background: int | None = None,
        run: int | None = None,
        instance: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
        *,
        source: str | None = None,
        include_deleted: bool = False,
        attributes: Mapping[str, object] | None = None,
        **size_bounds: float | None,
    ) -> ShotPage:
        return self.shots.query_shots(
            label,
            background,
            run,
            instance,
            limit,
            cursor,
            source=source,
            include_deleted=include_deleted,
            attributes=attributes,
            **size_bounds,
        )

    def shot_edits(self, shot_id: int) -> list[dict[str, Any]]:
        return self.shots.shot_edits(shot_id)

    def relabel(self, shot_id: int, label: str, who: str) -> dict[str, Any]:
        return self.shots.relabel(shot_id, label, who)

    def delete_shot(self, shot_id: int, who: str) -> None:
        return self.shots.delete_shot(shot_id, who)

    def finish_pending_deletes(self) -> int:
        return self.shots.finish_pending_deletes()

    # --- events -----------------------------------------------------------------------------------

    def add_incident(self, kind: str, message: str, run_id: int | None = None) -> int:
        return self.events.add_incident(kind, message, run_id)

    def list_incidents(
        self, *, unacknowledged: bool = False, limit: int = 100
    ) -> list[dict[str, Any]]:
        return self.events.list_incidents(unacknowledged=unacknowledged, limit=limit)

    def acknowledge_incident(self, incident_id: int, who: str) -> None:
        return self.events.acknowledge_incident(incident_id, who)

    def latch_fault(self, reason: str) -> dict[str, Any]:
        return self.events.latch_fault(reason)

    def active_fault(self) -> dict[str, Any] | None:
        return self.events.active_fault()

    def clear_fault(self, who: str) -> bool:
        return self.events.clear_fault(who)

    def fault_history(self, limit: int = 100) -> list[dict[str, Any]]:
        return self.events.fault_history(limit)

    # --- audit ------------------------------------------------------------------------------------

    def check(self, *, verify_checksums: bool = True, integrity: bool = True) -> CheckReport:
        return self.audit.check(verify_checksums=verify_checksums, integrity=integrity)

    def remove_temporaries(self, report: CheckReport) -> list[str]:
        return self.audit.remove_temporaries(report)

    def startup_check(self) -> CheckReport:
        return self.audit.startup_check()

    def stats(self) -> DatasetStats:
        return self.audit.stats()

    def make_thumbnail(self, path: str) -> str:
        return self.audit.make_thumbnail(path)

    def db_files(self) -> list[Any]:
        return self.audit.db_files()

    # --- models -----------------------------------------------------------------------------------

    def add_model(
        self,
        staged_dir: Path,
        *,
        files: list[dict[str, Any]],
        labels: list[str],
        snapshot_id: str | None,
        metrics: dict[str, Any],
        who: str,
    ) -> str:
        return self.models.add_model(
            staged_dir,
            files=files,
            labels=labels,
            snapshot_id=snapshot_id,
            metrics=metrics,
            who=who,
        )

    def model_dir(self, model_id: str) -> Path:
        return self.models.model_dir(model_id)

    def set_model_validation(self, model_id: str, passed: bool, validation: dict[str, Any]) -> None:
        return self.models.set_model_validation(model_id, passed, validation)

    def remove_rejected_model(self, model_id: str) -> None:
        return self.models.remove_rejected_model(model_id)

    def get_model(self, model_id: str) -> dict[str, Any]:
        return self.models.get_model(model_id)

    def list_models(self, limit: int = 200) -> list[dict[str, Any]]:
        return self.models.list_models(limit)

    def active_model(self) -> dict[str, Any] | None:
        return self.models.active_model()

    def model_activations(self, limit: int = 200) -> list[dict[str, Any]]:
        return self.models.model_activations(limit)

    def activate_model(self, model_id: str, who: str) -> dict[str, Any]:
        return self.models.activate_model(model_id, who)

    def rollback_model(self, who: str) -> dict[str, Any]:
        return self.models.rollback_model(who)

    def rollback_target(self) -> str | None:
        return self.models.rollback_target()

    # --- snapshots --------------------------------------------------------------------------------

    def snapshot_ids(self) -> list[str]:
        return self.snapshots.snapshot_ids()

    def previous_splits(self, group_by: str) -> dict[str, str]:
        return self.snapshots.previous_splits(group_by)

    def record_snapshot(
        self,
        manifest: dict[str, Any],
        groups: Iterable[tuple[str, str, str, int]],
        shot_splits: Iterable[tuple[int, str]],
    ) -> None:
        return self.snapshots.record_snapshot(manifest, groups, shot_splits)

    def snapshot_rows(self) -> list[dict[str, Any]]:
        return self.snapshots.snapshot_rows()

    def snapshot_manifest(self, snapshot_id: str) -> dict[str, Any]:
        return self.snapshots.snapshot_manifest(snapshot_id)

    def snapshot_shot_ids(self, snapshot_id: str, split: str) -> list[int]:
        return self.snapshots.snapshot_shot_ids(snapshot_id, split)

    # --- sorting ----------------------------------------------------------------------------------

    def add_decision(self, record: DecisionRecord) -> int:
        return self.sorting.add_decision(record)

    def add_decisions(self, records: Sequence[DecisionRecord], *, workers: int = 4) -> list[int]:
        return self.sorting.add_decisions(records, workers=workers)

    def list_decisions(
        self,
        *,
        limit: int = 100,
        before_id: int | None = None,
        label: str | None = None,
        model_id: str | None = None,
    ) -> list[dict[str, Any]]:
        return self.sorting.list_decisions(
            limit=limit, before_id=before_id, label=label, model_id=model_id
        )

    def count_decisions(self) -> int:
        return self.sorting.count_decisions()

    def decision_counts(self) -> dict[str, Any]:
        return self.sorting.decision_counts()

    def review_queue(
        self, *, state: str = "open", limit: int = 100, before_id: int | None = None
    ) -> list[dict[str, Any]]:
        return self.sorting.review_queue(state=state, limit=limit, before_id=before_id)

    def get_review_item(self, item_id: int) -> dict[str, Any]:
        return self.sorting.get_review_item(item_id)

    def review_counts(self) -> dict[str, int]:
        return self.sorting.review_counts()

    def review_shot_record(self, item: dict[str, Any], label: str) -> ShotRecord:
        return self.sorting.review_shot_record(item, label)

    # --- labels -----------------------------------------------------------------------------------

    def sync_label_queue(self) -> None:
        return self.labels.sync_label_queue()

    def enqueue_shots(
        self, predictions: Sequence[tuple[int, Sequence[tuple[str, float]], str | None]]
    ) -> int:
        return self.labels.enqueue_shots(predictions)

    def label_counts(self, who: str | None = None) -> dict[str, int]:
        return self.labels.label_counts(who)

    def label_queue(self, who: str, *, limit: int = 200) -> dict[str, Any]:
        return self.labels.label_queue(who, limit=limit)

    def queue_id_of_review_item(self, item_id: int) -> int:
        return self.labels.queue_id_of_review_item(item_id)

    def label_item(self, queue_id: int) -> dict[str, Any]:
        return self.labels.label_item(queue_id)

    def label_item_files(self, queue_id: int) -> dict[str, str | None]:
        return self.labels.label_item_files(queue_id)

    def set_label_cursor(self, who: str, queue_id: int) -> None:
        return self.labels.set_label_cursor(who, queue_id)

    def label_review_item(self, item_id: int, label: str, who: str) -> int:
        return self.labels.label_review_item(item_id, label, who)

    def discard_review_item(self, item_id: int, who: str) -> None:
        return self.labels.discard_review_item(item_id, who)

    def label_accept(
        self, ids: Sequence[int], who: str, label: str | None = None
    ) -> dict[str, Any]:
        return self.labels.label_accept(ids, who, label)

    def label_discard(self, ids: Sequence[int], who: str) -> dict[str, Any]:
        return self.labels.label_discard(ids, who)

    def label_undo(self, who: str) -> dict[str, Any]:
        return self.labels.label_undo(who)

    def label_redo(self, who: str) -> dict[str, Any]:
        return self.labels.label_redo(who)
