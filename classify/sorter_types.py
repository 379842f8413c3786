"""The sorter's seams: what it needs of its camera, model, store and clock, as Protocols.

Why here and not in :mod:`classify.sorter`: the registry (which swaps models into the sorter),
the web layer and the simulators need these names without importing the loop itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from capture.store.sorting import DecisionRecord
from classify.runtime import Prediction

Box = tuple[int, int, int, int]
ColourMatrix = list[list[float]] | np.ndarray | None


class PreviewCamera(Protocol):
    """The sorter watches the platform through the camera's preview stream."""

    def preview(self) -> np.ndarray: ...


@runtime_checkable
class DropTaggedCamera(Protocol):
    """A simulated platform camera that knows which drop each frame shows.

    The sorter records that id with its decision, so a test or benchmark can join decisions
    to the simulator's drop log (contracts: ground truth lives there, never in product code).
    A real camera has no such method and its decisions carry no drop id.
    """

    def preview_tagged(self) -> tuple[np.ndarray, str | None]: ...


class FrameClassifier(Protocol):
    """A model the sorter can ask about a part (the runtime's Classifier, or a test oracle)."""

    def predict(
        self,
        image_rgb: np.ndarray,
        bbox: Sequence[float] | None = None,
        colour_matrix: ColourMatrix = None,
        top_k: int = 3,
    ) -> Prediction: ...


@runtime_checkable
class PreparingClassifier(Protocol):
    """A model whose input can be prepared apart from running it (the runtime's Classifier):
    the sorter prepares the next frame while the model runs on this one."""

    def prepare(
        self,
        image_rgb: np.ndarray,
        bbox: Sequence[float] | None = None,
        colour_matrix: ColourMatrix = None,
    ) -> np.ndarray: ...

    def predict_prepared(self, prepared: np.ndarray, top_k: int = 3) -> Prediction: ...


class ClassifierSink(Protocol):
    """What the model registry swaps a newly active model into (the running sorter)."""

    def set_classifier(self, classifier: FrameClassifier | None, model_id: str | None) -> None: ...


class SortActuator(Protocol):
    """Pushes the part on the platform into a bin (:class:`classify.actuator_types.Actuator`)."""

    def fire(self, bin: int) -> None: ...


class SorterStore(Protocol):
    """The parts of the dataset store the sorter and its decision log use."""

    def active_fault(self) -> dict[str, Any] | None: ...

    def list_incidents(self, *, unacknowledged: bool = False) -> list[dict[str, Any]]: ...

    def add_incident(self, kind: str, message: str) -> int: ...

    def acknowledge_incident(self, incident_id: int, who: str) -> Any: ...

    def add_decisions(self, records: Sequence[DecisionRecord]) -> list[int]: ...


class LoopClock(Protocol):
    """A clock for the loop: the simulator's virtual one in tests, real time otherwise."""

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...
