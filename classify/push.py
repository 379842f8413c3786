"""Upload a trained model folder to a rig: ``POST /api/models`` with a trainer key.

Why check before sending: a model folder missing its labels or its snapshot id would be
refused by the rig anyway, after the upload; checking here says what to fix at once and
spares a slow link.  The request is the contract's: multipart/form-data, one part per file,
all under the field name ``files``, each with its basename as the filename.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from rig.errors import AccessDenied, ModelError

REQUIRED = ("model.tflite", "labels.txt", "metrics.json")
OPTIONAL = ("model-float.tflite", "confusion.png", "model.json")
MEDIA_TYPES = {
    ".tflite": "application/octet-stream",
    ".txt": "text/plain",
    ".json": "application/json",
    ".png": "image/png",
}


def model_files(model_dir: Path) -> list[Path]:
    """The files to upload, required first; ModelError names anything missing or wrong."""
    model_dir = Path(model_dir)
    missing = [name for name in REQUIRED if not (model_dir / name).is_file()]
    if missing:
        raise ModelError(
            f"{model_dir} lacks {', '.join(missing)}; push the folder `partrig train --out` wrote"
        )
    try:
        metrics = json.loads((model_dir / "metrics.json").read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ModelError(f"{model_dir / 'metrics.json'} is not valid JSON: {exc}") from None
    if not str(metrics.get("snapshot", "")).startswith("snap-"):
        raise ModelError(
            f'{model_dir / "metrics.json"} has no "snapshot": "snap-NNNN"; the rig validates '
            "a model on the held-out split of the snapshot it was trained on"
        )
    names = list(REQUIRED) + [n for n in OPTIONAL if (model_dir / n).is_file()]
    return [model_dir / n for n in names]


def push(
    url: str,
    model_dir: Path,
    *,
    key: str | None,
    timeout_s: float = 300.0,
    transport: httpx.BaseTransport | None = None,
) -> dict[str, Any]:
    """Upload ``model_dir`` to the rig at ``url``; return the rig's answer (id, state, ...)."""
    if not key:
        raise AccessDenied(
            "pushing a model needs a trainer key: pass --key or set $PARTRIG_KEY; an operator "
            "makes one with `partrig auth new-key --role trainer`"
        )
    paths = model_files(model_dir)
    endpoint = url.rstrip("/") + "/api/models"
    handles = [p.open("rb") for p in paths]
    try:
        parts = [
            ("files", (p.name, fh, MEDIA_TYPES.get(p.suffix, "application/octet-stream")))
            for p, fh in zip(paths, handles, strict=True)
        ]
        with httpx.Client(timeout=timeout_s, transport=transport) as client:
            r = client.post(endpoint, files=parts, headers={"X-Api-Key": key})
    except httpx.HTTPError as exc:
        raise ModelError(f"cannot reach the rig at {endpoint}: {exc}; check the URL") from None
    finally:
        for fh in handles:
            fh.close()
    return _answer(r, endpoint)


def _answer(r: httpx.Response, endpoint: str) -> dict[str, Any]:
    try:
        body = r.json()
    except ValueError:
        body = {"detail": r.text[:500]}
    if r.status_code in (401, 403):
        raise AccessDenied(
            f"the rig at {endpoint} refused the key ({r.status_code}: {body.get('detail')}); "
            "it needs a trainer key"
        )
    if r.status_code not in (200, 201):
        raise ModelError(
            f"the rig at {endpoint} refused the model ({r.status_code}: {body.get('detail')})"
        )
    return body
