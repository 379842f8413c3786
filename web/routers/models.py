"""The models API: trainers upload, the rig validates, operators activate and roll back.

Why the upload answers only after validation: the trainer's ``partrig model push`` should learn
at once whether its model passed on this rig (and if not, why), instead of polling.  A model
that is not a model at all (files missing, metrics.json unreadable) is a 422 and nothing is
stored; a real model that fails a check, or crashes the validation child, is stored as
``rejected`` with its reasons (201).  The server process never parses the uploaded model: the
registry validates it in a child process (docs/security.md, "Untrusted models").
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, HTTPException, Path, Request, UploadFile

from classify.registry import UPLOAD_FILES, ModelRegistry, file_cap
from rig.errors import ModelError
from web.deps import OperatorAuth, StoreDep, TrainerAuth, ViewerAuth

router = APIRouter(prefix="/api/models", tags=["models"])

ModelId = Annotated[str, Path(pattern=r"^model-\d{4,9}$", description="e.g. model-0001")]


def get_registry(request: Request) -> ModelRegistry:
    registry = getattr(request.app.state, "models", None)
    if not isinstance(registry, ModelRegistry):
        raise HTTPException(503, "the model registry is not available: see the server log")
    return registry


@router.post("", status_code=201)
async def upload(
    request: Request,
    who: TrainerAuth,
    files: Annotated[
        list[UploadFile],
        File(
            description="model.tflite, labels.txt, metrics.json (+ model-float.tflite, "
            "confusion.png), each as a part named 'files' whose filename is the basename"
        ),
    ],
) -> dict[str, Any]:
    """Upload a trained model; it is stored and validated on the rig before this answers."""
    registry = get_registry(request)
    contents: dict[str, bytes] = {}
    for part in files:
        name = part.filename or ""
        if name not in UPLOAD_FILES:
            raise ModelError(f"unexpected file {name!r}: upload only {', '.join(UPLOAD_FILES)}")
        if name in contents:
            raise ModelError(f"{name} was sent twice; send each file once")
        cap = file_cap(name, registry.max_model_bytes)
        data = await part.read(cap + 1)
        if len(data) > cap:
            raise ModelError(f"{name} is larger than {cap / 2**20:g} MiB, the most the rig takes")
        contents[name] = data
    from starlette.concurrency import run_in_threadpool

    # NOTE: validation runs in a child process (classify.check_process) that this thread waits
    # for; the event loop stays free meanwhile.
    return await run_in_threadpool(registry.upload, contents, who.name)


@router.get("")
def list_models(store: StoreDep, who: ViewerAuth) -> dict[str, Any]:
    """Every model, newest first, with which one is active and what a rollback would restore."""
    active = store.active_model()
    return {
        "items": store.list_models(),
        "active": active["id"] if active else None,
        "rollback_to": store.rollback_target(),
    }


@router.get("/activations")
def activations(store: StoreDep, who: ViewerAuth) -> list[dict[str, Any]]:
    """Every activation and rollback: which model, replacing which, when and by whom."""
    return store.model_activations()


@router.post("/rollback")
def rollback(request: Request, who: OperatorAuth) -> dict[str, Any]:
    """Put back the model that was active before the current one (409 when there is none)."""
    return get_registry(request).rollback(who.name)


@router.get("/{model_id}")
def model(model_id: ModelId, store: StoreDep, who: ViewerAuth) -> dict[str, Any]:
    """One model: its files with checksums, labels, metrics, state and validation."""
    return store.get_model(model_id)


@router.post("/{model_id}/activate")
def activate(model_id: ModelId, request: Request, who: OperatorAuth) -> dict[str, Any]:
    """Make a validated model live; the running sorter switches to it without a restart.

    409 for a model that is not validated: its state is checked before its file is read.
    """
    return get_registry(request).activate(model_id, who.name)
