"""Open-set rejection: how unlike the training classes a part is, and the bundle's ``model.json``.

Why distance to class prototypes and not the softmax: a softmax over the trained classes must
spread all its mass over them, so a part the model never saw often gets a confident label.
Measured on simulated feeder shots, threshold at 95 % of val known parts accepted: a tiny model
at 64 px sent 45 % of unknown parts to review by max probability, 44 % by margin, 47 % by
energy, 84 % by this distance (class means from val); at 48 px, 30 % by max probability and
88 % by this distance (class means from train; 98 % leaving out brick-1x2-red, see
``bench/open_set.py``).  It runs on the Pi's int8
model at no extra cost: the model has a second output, the pooled features that feed its last
layer, and the score is a few hundred multiply-adds in numpy.

The score (``mahalanobis_min``): for features ``f``, the smallest over classes ``k`` of
``|(f - mu_k) W| / sqrt(r)``, where ``mu_k`` are the class means of the training split's
features (colour-corrected crops, no augmentation) and ``W`` (``D x r``) whitens the pooled
within-class scatter (shrunk towards its mean eigenvalue so a few hundred shots suffice).
Higher means less like anything trained.  The threshold is the ``known_acceptance`` quantile
(default 0.995) of the scores of the snapshot's **val** split, measured through the exported
int8 model in the runtime the Pi uses, so quantization is calibrated in.

A model without a feature output gets ``max_softmax`` (score ``1 - max probability``,
calibrated the same way).  A model folder without ``model.json`` (an older bundle) still
loads and sorts; it has no open-set rejection, and the sorter and validation say so.

``model.json`` (schema version 1)::

    {"schema_version": 1,
     "heads": [{"name": "part", "labels": [...], "output_index": 0, "min_margin": 0.0,
                "open_set": {"method": "prototype_distance", "score": "mahalanobis_min",
                             "threshold": 1.73, "feature_output_index": 1,
                             "calibrated_on": {"snapshot": "snap-0003", "split": "val",
                                               "count": 200, "known_acceptance": 0.995},
                             "prototypes": [[...], ...], "whitening": [[...], ...]}}],
     "preprocessing": {"function": "classify.preprocess.prepare", "input_size": 64,
                       "input_dtype": "uint8", "crop_margin": 0.15,
                       "colour_correction": "the shot's colour matrix"},
     "source_snapshots": ["snap-0003"]}
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rig.errors import ModelError

MODEL_JSON = "model.json"
SCHEMA_VERSION = 1
#: model.json is untrusted input on the rig: parsed only up to this size.
MAX_MODEL_JSON_BYTES = 16 * 2**20
METHODS = {"prototype_distance": "mahalanobis_min", "max_softmax": "one_minus_max_probability"}
#: Share of the val split's known parts the threshold accepts.  NOTE: 0.995, not 0.95: on the
#: simulated feeder the sorter's live known parts scored higher than the val split's stored
#: (JPEG) shots, so 0.95 sent 7.2 % and 0.98 6.4 % of known parts to review, while unknown
#: parts scored far above (bench/open_set.py; docs/benchmarks.md).
DEFAULT_ACCEPTANCE = 0.995
#: Whitening keeps at most this many directions (a MobileNet has 1280 features).
MAX_WHITENING_RANK = 128
SHRINKAGE = 0.1


@dataclass(frozen=True)
class OpenSet:
    """One head's open-set rule: reject a part whose ``score`` is above ``threshold``."""

    method: str
    threshold: float
    calibrated_on: dict[str, Any]
    feature_output_index: int | None = None
    prototypes: np.ndarray | None = None
    whitening: np.ndarray | None = None

    @property
    def score_name(self) -> str:
        return METHODS[self.method]

    @property
    def needs_features(self) -> bool:
        return self.method == "prototype_distance"

    def score(self, probs: np.ndarray, features: np.ndarray | None) -> float:
        """How unlike the training classes this part is (higher: less like them)."""
        return float(self.scores(np.asarray(probs)[None], _batch(features))[0])

    def scores(self, probs: np.ndarray, features: np.ndarray | None) -> np.ndarray:
        """:meth:`score` for a batch (rows)."""
        if self.method == "max_softmax":
            return 1.0 - np.asarray(probs, np.float64).max(axis=1)
        if features is None or self.prototypes is None or self.whitening is None:
            raise ModelError("the prototype open-set score needs the model's feature output")
        return mahalanobis_min(np.asarray(features, np.float64), self.prototypes, self.whitening)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "method": self.method,
            "score": self.score_name,
            "threshold": float(self.threshold),
            "calibrated_on": dict(self.calibrated_on),
        }
        if self.needs_features:
            out["feature_output_index"] = self.feature_output_index
            out["prototypes"] = np.round(self.prototypes, 6).tolist()  # type: ignore[arg-type]
            out["whitening"] = np.round(self.whitening, 6).tolist()  # type: ignore[arg-type]
        return out


@dataclass(frozen=True)
class Head:
    """One classification output of the model: its labels and how to trust an answer."""

    name: str
    labels: list[str]
    output_index: int
    open_set: OpenSet | None = None
    min_margin: float = 0.0


@dataclass(frozen=True)
class ModelCard:
    """The parsed ``model.json`` of a model bundle."""

    heads: list[Head]
    preprocessing: dict[str, Any] = field(default_factory=dict)
    source_snapshots: list[str] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION

    @property
    def head(self) -> Head:
        """The head the sorter uses (the first)."""
        return self.heads[0]

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "heads": [
                {
                    "name": h.name,
                    "labels": list(h.labels),
                    "output_index": h.output_index,
                    "min_margin": h.min_margin,
                    "open_set": None if h.open_set is None else h.open_set.to_json(),
                }
                for h in self.heads
            ],
            "preprocessing": dict(self.preprocessing),
            "source_snapshots": list(self.source_snapshots),
        }

    def dumps(self) -> bytes:
        return json.dumps(self.to_json(), separators=(",", ":")).encode()


# --- reading model.json ---------------------------------------------------------------------------


def read_card(path: Path) -> ModelCard | None:
    """The ``model.json`` at ``path``, or None when there is none (an older bundle)."""
    path = Path(path)
    if not path.is_file():
        return None
    size = path.stat().st_size
    if size > MAX_MODEL_JSON_BYTES:
        raise ModelError(f"{path} is {size} bytes; model.json may be at most 16 MiB")
    return parse_card(path.read_bytes(), str(path))


def parse_card(data: bytes, where: str = MODEL_JSON) -> ModelCard:
    """Validate and parse model.json's bytes; ModelError names the field that is wrong."""
    if len(data) > MAX_MODEL_JSON_BYTES:
        raise ModelError(f"{where} is larger than 16 MiB")
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"{where} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ModelError(f"{where} must hold a JSON object")
    version = raw.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ModelError(
            f"{where} has schema_version {version!r}; this rig reads version {SCHEMA_VERSION}"
        )
    heads = raw.get("heads")
    if not isinstance(heads, list) or not heads:
        raise ModelError(f"{where}: heads must be a non-empty list")
    parsed = [_head(h, f"{where}: heads[{i}]") for i, h in enumerate(heads)]
    snaps = raw.get("source_snapshots", [])
    if not isinstance(snaps, list) or not all(isinstance(s, str) for s in snaps):
        raise ModelError(f"{where}: source_snapshots must be a list of snapshot ids")
    pre = raw.get("preprocessing", {})
    if not isinstance(pre, dict):
        raise ModelError(f"{where}: preprocessing must be an object")
    return ModelCard(parsed, pre, list(snaps), SCHEMA_VERSION)


def _head(raw: Any, where: str) -> Head:
    if not isinstance(raw, dict):
        raise ModelError(f"{where} must be an object")
    labels = raw.get("labels")
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        raise ModelError(f"{where}.labels must be a non-empty list of labels")
    index = _index(raw.get("output_index"), f"{where}.output_index")
    margin = _number(raw.get("min_margin", 0.0), f"{where}.min_margin", 0.0, 1.0)
    open_set = raw.get("open_set")
    rule = None if open_set is None else _open_set(open_set, len(labels), f"{where}.open_set")
    return Head(str(raw.get("name", "part")), list(labels), index, rule, margin)


def _open_set(raw: Any, classes: int, where: str) -> OpenSet:
    if not isinstance(raw, dict):
        raise ModelError(f"{where} must be an object or null")
    method = raw.get("method")
    if method not in METHODS:
        raise ModelError(f"{where}.method must be one of {sorted(METHODS)} (got {method!r})")
    threshold = _number(raw.get("threshold"), f"{where}.threshold", 0.0, 1e6)
    calibrated = raw.get("calibrated_on", {})
    if not isinstance(calibrated, dict):
        raise ModelError(f"{where}.calibrated_on must be an object")
    if method == "max_softmax":
        return OpenSet(method, threshold, calibrated)
    feature_index = _index(raw.get("feature_output_index"), f"{where}.feature_output_index")
    protos = _matrix(raw.get("prototypes"), f"{where}.prototypes")
    whitening = _matrix(raw.get("whitening"), f"{where}.whitening")
    if protos.shape[0] != classes:
        raise ModelError(f"{where}.prototypes has {protos.shape[0]} rows for {classes} labels")
    if whitening.shape[0] != protos.shape[1]:
        raise ModelError(
            f"{where}.whitening has {whitening.shape[0]} rows for {protos.shape[1]} features"
        )
    return OpenSet(method, threshold, calibrated, feature_index, protos, whitening)


def _index(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 16:
        raise ModelError(f"{where} must be an output index 0..15 (got {value!r})")
    return value


def _number(value: Any, where: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise ModelError(f"{where} must be a number in [{lo:g}, {hi:g}] (got {value!r})")
    return float(value)


def _matrix(value: Any, where: str) -> np.ndarray:
    try:
        matrix = np.asarray(value, np.float64)
    except (TypeError, ValueError):
        raise ModelError(f"{where} must be a list of equal-length number lists") from None
    if matrix.ndim != 2 or 0 in matrix.shape or not np.isfinite(matrix).all():
        raise ModelError(f"{where} must be a non-empty matrix of finite numbers")
    return matrix


# --- the score and its calibration ----------------------------------------------------------------


def _batch(features: np.ndarray | None) -> np.ndarray | None:
    return None if features is None else np.asarray(features, np.float64).reshape(1, -1)


def mahalanobis_min(
    features: np.ndarray, prototypes: np.ndarray, whitening: np.ndarray
) -> np.ndarray:
    """Per row: the whitened distance to the nearest prototype, divided by sqrt(rank)."""
    projected = features @ whitening  # n x r
    centres = prototypes @ whitening  # k x r
    d2 = ((projected[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
    return np.sqrt(d2.min(axis=1) / whitening.shape[1])


def fit_prototypes(
    features: np.ndarray, classes: np.ndarray, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Class means and the whitening of the pooled within-class scatter (shrunk)."""
    features = np.asarray(features, np.float64)
    classes = np.asarray(classes, int)
    missing = [k for k in range(num_classes) if not np.any(classes == k)]
    if missing:
        raise ModelError(f"open-set calibration has no training shots of classes {missing}")
    protos = np.stack([features[classes == k].mean(axis=0) for k in range(num_classes)])
    centred = features - protos[classes]
    scatter = centred.T @ centred / max(1, len(features) - num_classes)
    values, vectors = np.linalg.eigh(scatter)
    values, vectors = values[::-1], vectors[:, ::-1]
    rank = min(MAX_WHITENING_RANK, len(values))
    floor = max(float(values.mean()), 1e-12)
    shrunk = (1.0 - SHRINKAGE) * np.clip(values[:rank], 0.0, None) + SHRINKAGE * floor
    whitening = vectors[:, :rank] / np.sqrt(shrunk)
    return protos, whitening


def calibrate_threshold(scores: Sequence[float] | np.ndarray, acceptance: float) -> float:
    """The score at the ``acceptance`` quantile of known parts (so that share is accepted)."""
    if not 0.5 <= acceptance < 1.0:
        raise ModelError(f"known acceptance must be in [0.5, 1) (got {acceptance})")
    values = np.asarray(scores, np.float64)
    if values.size == 0:
        raise ModelError("open-set calibration needs val shots; the snapshot's val split is empty")
    return float(np.quantile(values, acceptance, method="higher"))
