"""The sorter inside the server process: built at start-up from the rig's camera, the configured
actuator and the active model; started on boot with ``partrig serve --sorter`` (or
``sorter.enabled = true``).

Why here and not in a separate service: one process owns the hardware (contracts.md).  The
sorter uses the same camera object as the preview and the capture runs, and the model registry
swaps models into this very sorter object, so an activation needs no restart.

Nothing here may stop the server from serving: a missing actuator library, a model that no
longer loads or a failed start is logged and reported on the Sorter page, and the dataset, the
runs and the model registry keep working.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rig.config import Settings
from rig.errors import CameraError, FaultLatched, RigError, RunStateError

if TYPE_CHECKING:
    from capture.store import DatasetStore
    from classify.actuator import ActuatorGate
    from classify.sorter import Sorter
    from rig.camera_types import Camera
    from rig.rig_types import Rig
    from web.run_registry import RunRegistry

log = logging.getLogger("web.sorting")

#: Held while a capture run or the sorter checks that the other is idle and starts: both need
#: the camera, and two requests at once must not both pass the check.  One server per process.
CAMERA_CLAIM = threading.Lock()


@dataclass
class Sorting:
    """What the lifespan keeps on ``app.state``: the sorter (or None, with why) and the registry."""

    sorter: Any
    registry: Any
    error: str | None
    actuator: Any = None

    def close(self) -> None:
        if self.sorter is not None:
            try:
                self.sorter.close()
            except Exception as exc:  # NOTE: shutting down: report, never block the rest
                log.warning("stopping the sorter failed: %s", exc)
        if self.actuator is not None:
            try:
                self.actuator.close()
            except Exception as exc:
                log.warning("closing the actuator failed: %s", exc)


def open_sorting(settings: Settings, store: DatasetStore, rig: Rig | None) -> Sorting:
    """Build the sorter (when the rig is open) and the model registry; start it if enabled."""
    from classify.registry import ModelRegistry

    sorter, actuator, error = None, None, None
    if not settings.sim and getattr(rig, "camera", None) is None:
        error = "the rig is not open, so the sorter has no camera"
    else:
        try:
            sorter, actuator = _build_sorter(settings, store, rig)
        except (RigError, ImportError, OSError) as exc:
            error = f"the sorter could not be set up: {exc}"
            log.error(error)
    registry = ModelRegistry(store, settings, sorter)
    leftovers = registry.remove_staging_leftovers()
    if leftovers:
        log.warning("removed unfinished model uploads: %s", leftovers)
    unfinished = registry.reject_unfinished()
    if unfinished:
        log.warning("rejected uploads whose validation never finished: %s", unfinished)
    sorting = Sorting(sorter, registry, error, actuator)
    if sorter is not None:
        _load_active_model(sorting)
        if settings.sorter.enabled and sorting.error is None:
            try:
                require_no_rig_fault(rig)
                sorter.start(collect_for_review=settings.sorter.collect_for_review)
                log.info("the sorter started on boot")
            except RigError as exc:
                sorting.error = f"the sorter did not start on boot: {exc}"
                log.error(sorting.error)
    return sorting


def _build_sorter(
    settings: Settings, store: DatasetStore, rig: Rig | None
) -> tuple[Sorter, ActuatorGate]:
    """The sorter over the rig's camera, or, simulated, over a simulated feeder's platform.

    NOTE: the simulated turntable never gets new parts by itself, so ``--sim`` sorts on the
    simulated feeder (classify/feeder_sim.py) instead: parts drop, the sim actuator removes
    them, and every decision records the drop id of the frame it was made on (the feeder's drop
    log holds the truth).
    """
    from classify.actuator import ActuatorGate, open_actuator
    from classify.sorter import Sorter

    camera: Camera
    if settings.sim:
        from classify.feeder_sim import SimFeeder

        feeder = SimFeeder(settings)
        camera, world, clock = feeder.camera, feeder.world, feeder.clock
    elif rig is not None and rig.camera is not None:
        camera, world, clock = rig.camera, None, None
    else:
        raise CameraError("the rig is not open, so the sorter has no camera")
    # NOTE: gated, so the e-stop can disable firing from the event loop without waiting.
    actuator = ActuatorGate(open_actuator(settings, world=world))
    try:
        return Sorter(camera, actuator, store, settings, clock), actuator
    except BaseException:
        actuator.close()
        raise


def _load_active_model(sorting: Sorting) -> None:
    try:
        classifier, model_id = sorting.registry.load_active()
    except RigError as exc:
        sorting.error = f"the active model could not be loaded: {exc}"
        log.error(sorting.error)
        return
    if classifier is not None:
        sorting.sorter.set_classifier(classifier, model_id)
        log.info("the sorter uses %s (%s)", model_id, classifier.runtime)


def require_idle_rig(runs: RunRegistry | None, rig: Rig | None = None) -> None:
    """The sorter and a capture run both need the camera: refuse to start beside a live run,
    and (FaultLatched) while the rig's fault is latched (an e-stop stops everything)."""
    live = runs.live_run() if runs is not None else None
    if live is not None:
        raise RunStateError(
            f"capture run {live.run_id} is using the camera: let it finish or abort it before "
            "starting the sorter"
        )
    require_no_rig_fault(rig)


def require_no_rig_fault(rig: Rig | None) -> None:
    """FaultLatched while the rig (link, turntable, e-stop) has a latched fault in memory; the
    sorter itself checks the fault latched in the store."""
    fault = rig.fault if rig is not None else None
    if fault:
        raise FaultLatched(str(fault))


def require_sorter_stopped(sorter: Any) -> None:
    """A capture run and the sorter share the camera: refuse a run while the sorter runs."""
    if sorter is not None and sorter.state == "running":
        raise RunStateError(
            "the sorter is running and using the camera: stop it on the Sorter page before "
            "starting a capture run"
        )
