"""What a capture run needs from the dataset store, as Protocols (the rig's is
:class:`rig.rig_types.Rig`).

Why Protocols and not the concrete class: the engine is tested with small in-test fakes
(tests/capture/test_run.py) and runs against :class:`capture.store.DatasetStore` in the product;
naming the methods here lets mypy check the store against one list, so a store that lacks one
fails the type check instead of a run at its first shot.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import sqlite3

    from capture.store.files import StoredFile
    from capture.store.shot_batches import ShotFiles


class ShotStream(Protocol):
    """A writer's stream of durable shot batches (:class:`capture.store.ShotBatches`)."""

    def add(self, items: Sequence[ShotFiles]) -> list[int]: ...

    def flush(self) -> list[int]: ...


class ShotSink(Protocol):
    """Where the shot writer puts shots (files durable first, then rows) and references."""

    data_dir: Path

    def write_file(self, relpath: str, data: bytes) -> StoredFile: ...

    def shot_batches(self) -> ShotStream: ...

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]: ...


class RunStore(ShotSink, Protocol):
    """The store as a run uses it: its row and states, the catalogue, references, faults."""

    def create_run(self, name: str, plan_toml: str, plan_json: str, shots_total: int) -> int: ...

    def get_run(self, run_id: int) -> dict[str, Any]: ...

    def set_run_state(
        self,
        run_id: int,
        state: str,
        *,
        prompt: str | None = None,
        action: dict[str, Any] | None = None,
        reason: str | None = None,
    ) -> None: ...

    def set_run_exposure(self, run_id: int, exposure: dict[str, Any]) -> None: ...

    def mark_running_runs_interrupted(self) -> list[int]: ...

    def done_shot_indices(self, run_id: int) -> set[int]: ...

    def list_parts(self) -> list[dict[str, Any]]: ...

    def upsert_part(
        self, label: str, name: str | None = None, meta: dict[str, Any] | None = None
    ) -> None: ...

    def upsert_instance(self, instance_id: str, label: str, source: str = "capture") -> None: ...

    def upsert_background(self, sheet_id: int, name: str, kind: str = "unknown") -> None: ...

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
    ) -> int: ...

    def reference_for(
        self, run_id: int, background_id: int, pose: str | None = None
    ) -> dict[str, Any] | None: ...

    def latch_fault(self, reason: str) -> dict[str, Any]: ...

    def active_fault(self) -> dict[str, Any] | None: ...

    def add_incident(self, kind: str, message: str, run_id: int | None = None) -> int: ...
