"""The FastAPI application factory and its lifespan.

Why a factory: tests and the benchmark build an app around their own (simulated) rig and store;
``partrig serve`` builds one from the configuration.  The lifespan owns what it opened: the
store, the rig (real or simulated), the preview encoder and the runs; it marks runs a dead
process left live as ``interrupted`` and never restarts them (the operator decides).

One worker only: the rig's serial port and camera belong to exactly one process.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from rig.config import Settings
from web import errors
from web.middleware import Guard
from web.paths import WEB_DIR
from web.preview import PreviewHub
from web.routers.auth import LoginGate
from web.run_registry import RunRegistry
from web.security import SessionStore, Signer, session_secret
from web.sorting import open_sorting

if TYPE_CHECKING:
    from capture.store import DatasetStore
    from rig.owner import DataFolderLock
    from rig.rig_types import Rig

log = logging.getLogger("web")

__all__ = ["WEB_DIR", "create_app"]


def create_app(
    settings: Settings,
    *,
    rig: Rig | None = None,
    store: DatasetStore | None = None,
    owner: DataFolderLock | None = None,
) -> FastAPI:
    """The app for ``settings``; a given ``rig``/``store`` is used (and not closed) as is.

    ``owner`` is the data folder's lock (:class:`rig.owner.DataFolderLock`) when the caller
    already holds it (``partrig serve``); otherwise an app that opens its own store takes the
    lock first, so start-up recovery and temp-file cleanup run only in the lock's holder.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        opened: list[DataFolderLock | DatasetStore | Rig] = []
        state = app.state
        state.settings = settings
        state.owner = owner
        if owner is None and store is None:
            from rig.owner import DataFolderLock, client_url

            url = client_url(settings.web.host, settings.web.port)
            lock = DataFolderLock(settings.data.dir, "serve", url=url).acquire()
            state.owner = lock
            opened.append(lock)
        state.signer = Signer(session_secret(settings.auth))
        # NOTE: sessions live in memory (a restart signs everyone out): see web.security.
        state.sessions = SessionStore(ttl_s=settings.auth.session_hours * 3600)
        state.login_gate = LoginGate.from_config(settings.auth)
        the_store = store if store is not None else _open_store(settings)
        state.store = the_store
        if store is None:
            opened.append(the_store)
        interrupted = _recover(the_store)
        if interrupted:
            log.warning("runs left live by a stopped process are now interrupted: %s", interrupted)
        state.rig, state.rig_error = rig, None
        if rig is None:
            try:
                from rig.rig import open_rig

                opened_rig: Rig = open_rig(settings)
                state.rig = opened_rig
                opened.append(opened_rig)
            except Exception as exc:  # NOTE: serve the dataset even when the rig is absent
                state.rig_error = str(exc)
                log.error("the rig could not be opened: %s", exc)
        camera = getattr(state.rig, "camera", None)
        state.preview = PreviewHub(camera, settings.web.preview_fps) if camera else None
        state.runs = RunRegistry(state.store, state.rig, settings)
        state.sorting = open_sorting(settings, state.store, state.rig)
        state.sorter, state.models = state.sorting.sorter, state.sorting.registry
        try:
            yield
        finally:
            state.sorting.close()
            state.runs.close()
            if state.preview is not None:
                state.preview.close()
            feeder_hub = getattr(state, "feeder_preview", None)
            if feeder_hub is not None:
                feeder_hub.close()
            for thing in reversed(opened):
                try:
                    thing.close()
                except Exception as exc:
                    log.warning("closing %s failed: %s", type(thing).__name__, exc)

    app = FastAPI(
        title="partrig",
        version="0.1.0",
        summary="Turntable photo rig: capture runs, the rig, the dataset.",
        lifespan=lifespan,
    )
    errors.install(app)
    # NOTE: host, credentials-before-body, body limits and security headers (web.middleware).
    app.add_middleware(Guard, settings=settings)
    app.mount("/static", StaticFiles(directory=WEB_DIR / "static"), name="static")
    from web.routers import auth, dataset, pages, review, runs, sorter
    from web.routers import models as models_router
    from web.routers import rig as rig_router
    from web.routers import snapshots as snapshots_router

    for router in (auth.router, rig_router.router, runs.router, dataset.router, pages.router):
        app.include_router(router)
    for router in (models_router.router, sorter.router, review.router):
        app.include_router(router)
    app.include_router(snapshots_router.router)
    from web.routers import snapshot_create

    app.include_router(snapshot_create.router)
    from web.routers import camera, snapshot_archive, terminal
    from web.routers import health as health_router
    from web.routers import settings as settings_router

    for router in (health_router.router, terminal.router, settings_router.router, camera.router):
        app.include_router(router)
    app.include_router(snapshot_archive.router)
    from web.routers import label as label_router

    app.include_router(label_router.router)
    from web.routers import feeder as feeder_router
    from web.routers import port as port_router

    app.include_router(feeder_router.router)
    app.include_router(port_router.router)
    app.include_router(label_router.page_router)
    pages.install_not_found(app)

    @app.get("/api/health", tags=["health"])
    def health() -> dict[str, Any]:
        """Liveness for the CLI (no auth): says a partrig server owns the rig here."""
        return {"ok": True, "service": "partrig", "sim": settings.sim}

    return app


def _open_store(settings: Settings) -> DatasetStore:
    from capture.store import DatasetStore

    store = DatasetStore.open(settings.data.dir, thumbnail_px=settings.data.thumbnail_px)
    try:
        store.startup_check()
    except Exception as exc:  # NOTE: report, but still let the operator see the dataset
        log.error("dataset store start-up check: %s", exc)
    return store


def _recover(store: DatasetStore) -> list[int]:
    from capture.runs.run import recover_interrupted_runs

    return recover_interrupted_runs(store)
