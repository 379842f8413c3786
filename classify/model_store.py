"""Trained models in object storage: publish once from the trainer, pull onto any number of rigs.

Usage::

    publish_model(Path("models/m1"), "s3://parts/team", "m1", transfer)  # -> .../models/m1
    folder = fetch_model("s3://parts/team/models/m1", Path(tmp), transfer)
    push("http://rig.local:8000", folder, key=...)   # the rig validates it, as for any push

Layout: the model's files are content-addressed objects beside the snapshots'
(``<prefix>/objects/sha256/..``) and ``<prefix>/models/<name>/manifest.json`` lists them,
uploaded last, as for a snapshot (:mod:`capture.publish.publisher`).

Why a pulled model is *pushed* to the rig and never loaded here: a model file is untrusted
input, and the rig validates every upload in a child process on its own held-out test split
(contracts.md).  ``partrig model pull`` only fetches and checks the bytes against the manifest,
then hands the folder to the same upload path ``partrig model push`` uses.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from capture.publish.objstore import ObjectExists, ObjectStore, S3Location, TransferSettings
from capture.publish.published import PublishedSnapshot
from capture.publish.publisher import MANIFEST, OBJECTS, object_key, send_verified
from capture.store.records import utc_now
from classify.push import OPTIONAL, REQUIRED, model_files
from rig.errors import ChecksumMismatch, ConfigError, ModelError, QueryError

MODELS = "models"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
MODEL_FILES = frozenset(REQUIRED + OPTIONAL)


def model_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise ConfigError(
            f"model name {name!r} must match {NAME_RE.pattern} (lower case, digits, '.', '_', '-')"
        )
    return name


def publish_model(
    model_dir: Path,
    url: str,
    name: str,
    transfer: TransferSettings,
    store: ObjectStore | None = None,
) -> str:
    """Upload the model folder as ``<url>/models/<name>``; its URL.  Immutable: a different
    model under the same name is refused, the same one again is a no-op."""
    root = S3Location.parse(url)
    target = root.child(MODELS, model_name(name))
    paths = model_files(model_dir)
    store = store or ObjectStore.connect(root.bucket, transfer)
    objects_prefix = root.key(OBJECTS)
    files: list[dict[str, Any]] = []
    for path in paths:
        data = path.read_bytes()
        files.append({"path": path.name, "format": "model",
                      "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)})  # fmt: skip
    metrics = json.loads((Path(model_dir) / "metrics.json").read_text(encoding="utf-8"))
    manifest = {
        "id": name,
        "kind": "partrig-model",
        "snapshot": metrics.get("snapshot"),
        "snapshots": metrics.get("snapshots", [metrics.get("snapshot")]),
        "files": files,
        "published": {"objects_prefix": objects_prefix, "published_at": utc_now()},
    }
    key = target.key(MANIFEST)
    if store.head(key) is not None:
        existing = PublishedSnapshot.open(target.url(), transfer, store).manifest
        if sorted((f["path"], f["sha256"]) for f in existing["files"]) == sorted(
            (f["path"], f["sha256"]) for f in files
        ):
            return target.url()
        raise QueryError(f"{target.url()} already holds a different model; choose a new --name")
    for path, entry in zip(paths, files, strict=True):
        sha = entry["sha256"]
        if store.head(object_key(objects_prefix, sha)) is None:
            send_verified(store, path, object_key(objects_prefix, sha), sha, entry["size"],
                  transfer.part_size, name)  # fmt: skip
    body = json.dumps(manifest, indent=1, sort_keys=True).encode()
    try:
        store.put_bytes(key, body, sha256=hashlib.sha256(body).hexdigest(),
                        content_type="application/json", if_absent=True)  # fmt: skip
    except ObjectExists:
        raise QueryError(f"{target.url()} was just published by someone else") from None
    return target.url()


def fetch_model(
    url: str, dest: Path, transfer: TransferSettings, store: ObjectStore | None = None
) -> Path:
    """Download a published model into the new folder ``dest``, every file sha256-checked."""
    published = PublishedSnapshot.open(url, transfer, store)
    manifest: dict[str, Any] = published.manifest
    if manifest.get("kind") != "partrig-model":
        raise ModelError(f"{url} is not a published model (publish one with `model publish`)")
    unknown = [f["path"] for f in manifest["files"] if f["path"] not in MODEL_FILES]
    if unknown:
        raise ModelError(f"{url} lists files a model does not have: {', '.join(unknown)}")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=False)
    for entry in manifest["files"]:
        digest = hashlib.sha256()
        with open(dest / entry["path"], "wb") as f:
            size = published.store.get_to_file(published.key_of(entry), f, digest)
        if digest.hexdigest() != entry["sha256"] or size != entry["size"]:
            raise ChecksumMismatch(
                f"{entry['path']} of {url} does not match the manifest's sha256; the object "
                "is damaged or replaced: publish the model again"
            )
    return dest
