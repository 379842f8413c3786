"""Run a TFLite classifier on the Pi: load it, crop the part, predict label and top-k.

Why a fallback chain: LiteRT (``ai_edge_litert``) is the maintained runtime and has 64-bit Pi
wheels; ``tflite_runtime`` is the old standalone package some Pis still carry; ``tf.lite`` is
there on a trainer that has TensorFlow.  The first that imports wins, and
:attr:`Classifier.runtime` says which one, so a status page can show it.  No import of any of
them happens until a model is loaded, so this module imports anywhere.

Predictions go through :func:`classify.preprocess.prepare`, the same code training used.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from classify.open_set import MODEL_JSON, Head, ModelCard, OpenSet, read_card
from classify.preprocess import prepare
from rig.errors import ModelError

#: Runtimes in order of preference: (name reported, module to import, attribute path).
RUNTIMES: tuple[tuple[str, str, str], ...] = (
    ("ai_edge_litert", "ai_edge_litert.interpreter", "Interpreter"),
    ("tflite_runtime", "tflite_runtime.interpreter", "Interpreter"),
    ("tf.lite", "tensorflow", "lite.Interpreter"),
)

MODEL_FILE = "model.tflite"
LABELS_FILE = "labels.txt"


def find_interpreter() -> tuple[str, Any]:
    """The first runtime that imports: ``(name, Interpreter class)``; ModelError if none does."""
    tried = []
    for name, module_name, attr in RUNTIMES:
        try:
            module = importlib.import_module(module_name)
            found: Any = module
            for part in attr.split("."):
                found = getattr(found, part)
        except (ImportError, AttributeError) as exc:
            tried.append(f"{name} ({exc.__class__.__name__}: {exc})")
            continue
        return name, found
    raise ModelError(
        "no TFLite runtime could be imported; install LiteRT with "
        "`pip install ai-edge-litert` (tried: " + "; ".join(tried) + ")"
    )


def read_labels(path: Path) -> list[str]:
    """The labels of ``labels.txt``: one a line, in the model's output order."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ModelError(f"cannot read the labels file {path}: {exc.strerror}") from None
    labels = [line.strip() for line in text.splitlines() if line.strip()]
    if not labels:
        raise ModelError(f"the labels file {path} is empty; it needs one label per line")
    return labels


@dataclass(frozen=True)
class ModelLimits:
    """Bounds an untrusted model must fit before the runtime allocates anything for it.

    Why: a model's input shape decides the size of the tensor arena.  A few bytes of flatbuffer
    can ask for an 8192 x 8192 x 3 input and so hundreds of MB; the sorter only ever feeds one
    square crop of a few hundred pixels.
    """

    max_input_side: int = 1024
    max_tensors: int = 10_000

    def check(self, interpreter: Any, name: str = MODEL_FILE) -> None:
        """Raise ModelError when the parsed, not yet allocated, model exceeds a bound."""
        cap = self.max_input_side * self.max_input_side * 3
        for detail in interpreter.get_input_details():
            shape = [int(v) for v in detail["shape"]]
            if any(v < 0 for v in shape) or math.prod(shape[1:]) > cap:
                raise ModelError(
                    f"{name} takes an input of shape {shape}; the rig accepts at most "
                    f"{self.max_input_side} x {self.max_input_side} pixels "
                    "(models.max_input_side): export the model at the size it was trained at"
                )
            if len(shape) == 4 and shape[0] != 1:
                raise ModelError(f"{name} takes a batch of {shape[0]}; export it with batch 1")
        count = len(interpreter.get_tensor_details())
        if count > self.max_tensors:
            raise ModelError(
                f"{name} has {count} tensors; the rig accepts at most {self.max_tensors} "
                "(models.max_tensors)"
            )


@dataclass(frozen=True)
class HeadPrediction:
    """What one attribute head (``colour``, ``category``...) thinks, with how sure it is."""

    name: str
    label: str
    confidence: float
    top_k: list[tuple[str, float]] = field(default_factory=list)
    margin: float = 1.0
    open_set_score: float | None = None
    open_set_threshold: float | None = None
    min_margin: float = 0.0


@dataclass(frozen=True)
class Prediction:
    """What the model thinks one part is."""

    label: str
    index: int
    confidence: float
    top_k: list[tuple[str, float]] = field(default_factory=list)
    #: top-1 minus top-2 probability (1.0 with a single class).
    margin: float = 1.0
    #: The open-set score and the model's threshold; None for a model without ``model.json``.
    open_set_score: float | None = None
    open_set_threshold: float | None = None
    min_margin: float = 0.0
    #: The attribute heads of a multi-head model (``partrig train --heads``), by name.
    heads: dict[str, HeadPrediction] = field(default_factory=dict)


class Classifier:
    """A loaded TFLite image classifier.

    Works with the full-int8 model (``uint8`` in and out) and with the float model (``float32``
    in, raw 0..255 pixels, because scaling lives inside the model).  Not thread-safe: one
    interpreter per thread, or a lock around :meth:`predict` (the sorter holds one).

    >>> clf = Classifier.from_dir(Path("models/model-0003"))  # doctest: +SKIP
    >>> clf.predict(frame, bbox=(410, 300, 120, 96)).label      # doctest: +SKIP
    'brick-2x4-red'
    """

    def __init__(
        self,
        interpreter: Any,
        labels: Sequence[str],
        runtime: str,
        card: ModelCard | None = None,
    ) -> None:
        self._interpreter = interpreter
        self.labels = list(labels)
        self.runtime = runtime
        #: model.json, or None for an older bundle (no open-set rejection).
        self.card = card
        inp = interpreter.get_input_details()
        out = interpreter.get_output_details()
        self._features: dict[str, Any] | None = None
        self._attribute_heads: list[tuple[Head, dict[str, Any]]] = []
        if len(inp) != 1:
            raise ModelError("the model must have exactly one input tensor")
        if card is None:
            if len(out) != 1:
                raise ModelError(
                    f"the model has {len(out)} outputs; a model with more than one needs the "
                    "model.json written with it, which names them"
                )
            self._output = out[0]
        else:
            head = card.head
            if head.labels != self.labels and len(head.labels) == len(self.labels):
                raise ModelError(
                    "model.json's labels differ from labels.txt; use the pair written together"
                )
            if head.output_index >= len(out):
                raise ModelError(
                    f"model.json names output {head.output_index}; the model has {len(out)}"
                )
            self._output = out[head.output_index]
            rule = head.open_set
            if rule is not None and rule.needs_features:
                index = int(rule.feature_output_index or 0)
                if index >= len(out) or index == head.output_index:
                    raise ModelError(
                        f"model.json names feature output {index}; the model has {len(out)}"
                    )
                self._features = out[index]
                width = int(self._features["shape"][-1])
                if rule.prototypes is not None and rule.prototypes.shape[1] != width:
                    raise ModelError(
                        f"model.json's prototypes have {rule.prototypes.shape[1]} features; the "
                        f"model's feature output has {width}"
                    )
            self._attribute_heads = [_attribute_output(h, out) for h in card.heads[1:]]
        self._input = inp[0]
        shape = [int(v) for v in self._input["shape"]]
        if len(shape) != 4 or shape[1] != shape[2] or shape[3] != 3:
            raise ModelError(f"the model input must be 1 x N x N x 3 pixels (got {shape})")
        self.input_size: int = shape[1]
        self.input_dtype = np.dtype(self._input["dtype"])
        n_out = int(self._output["shape"][-1])
        if n_out != len(self.labels):
            raise ModelError(
                f"the model has {n_out} outputs but labels.txt has {len(self.labels)} labels; "
                "use the labels.txt written with this model"
            )

    @classmethod
    def load(
        cls,
        model_path: Path,
        labels: Sequence[str],
        num_threads: int = 2,
        *,
        limits: ModelLimits | None = None,
        card: ModelCard | None = None,
    ) -> Classifier:
        """Load ``model_path`` with the first runtime available (see :data:`RUNTIMES`).

        Without ``card``, the bundle's ``model.json`` beside the file is read when there is one
        (it names the outputs of ``model.tflite`` and ``model-float.tflite`` alike).
        """
        model_path = Path(model_path)
        if card is None:
            card = read_card(model_path.parent / MODEL_JSON)
        if not model_path.is_file():
            raise ModelError(f"no model file at {model_path}; check the path")
        try:
            content = model_path.read_bytes()
        except OSError as exc:
            raise ModelError(f"cannot read {model_path}: {exc.strerror}") from None
        return cls.from_bytes(
            content, labels, num_threads, limits=limits, name=model_path.name, card=card
        )

    @classmethod
    def from_bytes(
        cls,
        content: bytes,
        labels: Sequence[str],
        num_threads: int = 2,
        *,
        limits: ModelLimits | None = None,
        name: str = MODEL_FILE,
        card: ModelCard | None = None,
    ) -> Classifier:
        """Load a model from its bytes, so the bytes a caller checksummed are the ones that run.

        With ``limits``, the input shape and tensor count are checked after the model is parsed
        and *before* its tensors are allocated: an 8192 x 8192 input is refused without the
        runtime ever allocating its arena.
        """
        runtime, interpreter_class = find_interpreter()
        try:
            interpreter = interpreter_class(model_content=bytes(content), num_threads=num_threads)
            if limits is not None:
                limits.check(interpreter, name)
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            # NOTE: an allocation refused by the validation child's memory limit comes back
            # with an empty message; say what it most likely was.
            why = str(exc).strip() or "the runtime gave no reason (most often memory)"
            raise ModelError(f"{runtime} cannot load {name}: {why}") from None
        return cls(interpreter, labels, runtime, card)

    @classmethod
    def from_dir(cls, model_dir: Path, num_threads: int = 2) -> Classifier:
        """Load ``model.tflite``, ``labels.txt`` and, when there is one, ``model.json``."""
        model_dir = Path(model_dir)
        labels = read_labels(model_dir / LABELS_FILE)
        return cls.load(model_dir / MODEL_FILE, labels, num_threads)

    @property
    def open_set(self) -> OpenSet | None:
        """The model's open-set rule, or None (no model.json, or it has none)."""
        card = getattr(self, "card", None)
        return None if card is None else card.head.open_set

    def invoke_raw(self, batch_uint8: np.ndarray) -> np.ndarray:
        """Run the model on prepared pixels (1 x N x N x 3 ``uint8``); the output as floats.

        Quantized outputs are dequantized, so the result reads as probabilities either way.
        """
        return self.invoke_heads(batch_uint8)[0]

    @property
    def head_labels(self) -> dict[str, list[str]]:
        """Every head's labels by name, the label head under ``label`` (for sorting rules)."""
        out = {"label": list(self.labels)}
        for head, _ in getattr(self, "_attribute_heads", []):
            out[head.name] = list(head.labels)
        return out

    def invoke_heads(self, batch_uint8: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """One invoke: ``(class scores, features or None)``, both dequantized floats."""
        probs, features, _ = self.invoke_all(batch_uint8)
        return probs, features

    def invoke_all(
        self, batch_uint8: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray | None, dict[str, np.ndarray]]:
        """One invoke: class scores, features or None, and each attribute head's scores."""
        batch = np.asarray(batch_uint8)
        if batch.ndim == 3:
            batch = batch[None]
        expected = (1, self.input_size, self.input_size, 3)
        if batch.shape != expected:
            raise ModelError(f"the model takes a batch of shape {expected} (got {batch.shape})")
        interp = self._interpreter
        try:
            interp.set_tensor(self._input["index"], batch.astype(self.input_dtype, copy=False))
            interp.invoke()
            raw = interp.get_tensor(self._output["index"])
            feats = None if self._features is None else interp.get_tensor(self._features["index"])
            extra = {
                head.name: _dequantize(interp.get_tensor(detail["index"]), detail)
                for head, detail in getattr(self, "_attribute_heads", [])
            }
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"the model failed to run: {exc}") from None
        probs = _dequantize(raw, self._output)
        detail = self._features
        features = None if feats is None or detail is None else _dequantize(feats, detail)
        return probs, features, extra

    def probabilities(self, prepared: np.ndarray) -> np.ndarray:
        """Class probabilities for one prepared crop (``input_size`` square ``uint8``)."""
        return self.invoke_raw(prepared)[0]

    def predict(
        self,
        image_rgb: np.ndarray,
        bbox: Sequence[float] | None = None,
        colour_matrix: list[list[float]] | np.ndarray | None = None,
        top_k: int = 3,
    ) -> Prediction:
        """Crop, preprocess and classify one frame (RGB ``uint8``)."""
        return self.predict_prepared(self.prepare(image_rgb, bbox, colour_matrix), top_k)

    def prepare(
        self,
        image_rgb: np.ndarray,
        bbox: Sequence[float] | None = None,
        colour_matrix: list[list[float]] | np.ndarray | None = None,
    ) -> np.ndarray:
        """The model's input for one frame (the shared :func:`prepare` at this model's size).

        Apart from :meth:`predict_prepared` so the sorter can prepare the next frame while
        the model runs on this one (:mod:`classify.sort_pipeline`).
        """
        try:
            return prepare(image_rgb, bbox, colour_matrix, self.input_size)
        except ValueError as exc:
            raise ModelError(f"cannot prepare the frame for the model: {exc}") from None

    def predict_prepared(self, prepared: np.ndarray, top_k: int = 3) -> Prediction:
        """Classify one input from :meth:`prepare` (what :meth:`predict` does after it)."""
        probs, features, extra = self.invoke_all(prepared)
        prediction = self.decide(probs[0], top_k, None if features is None else features[0])
        if not extra:
            return prediction
        heads = {
            head.name: head_prediction(head, extra[head.name][0], top_k)
            for head, _ in self._attribute_heads
        }
        return replace(prediction, heads=heads)

    def decide(
        self, probs: np.ndarray, top_k: int = 3, features: np.ndarray | None = None
    ) -> Prediction:
        """The :class:`Prediction` for a probability vector in label order (and the features
        from the same invoke, for the open-set score)."""
        probs = np.asarray(probs, np.float32)
        if not np.all(np.isfinite(probs)):
            raise ModelError("the model returned non-finite scores")
        order = np.argsort(-probs, kind="stable")
        best = int(order[0])
        k = max(1, min(int(top_k), len(self.labels)))
        ranked = [(self.labels[int(i)], float(probs[int(i)])) for i in order[:k]]
        second = float(probs[int(order[1])]) if len(order) > 1 else 0.0
        score = threshold = None
        rule = self.open_set
        if rule is not None:
            score, threshold = rule.score(probs, features), rule.threshold
        card = getattr(self, "card", None)
        min_margin = 0.0 if card is None else card.head.min_margin
        return Prediction(
            self.labels[best], best, float(probs[best]), ranked,
            float(probs[best]) - second, score, threshold, min_margin,
        )  # fmt: skip


def _attribute_output(head: Head, outputs: list[dict[str, Any]]) -> tuple[Head, dict[str, Any]]:
    """An attribute head's output tensor, checked against model.json's labels."""
    if head.output_index >= len(outputs):
        raise ModelError(
            f"model.json names output {head.output_index} for head {head.name!r}; the model "
            f"has {len(outputs)}"
        )
    detail = outputs[head.output_index]
    if int(detail["shape"][-1]) != len(head.labels):
        raise ModelError(
            f"head {head.name!r} has {len(head.labels)} labels in model.json but its output "
            f"has {int(detail['shape'][-1])} scores; use the model.json written with the model"
        )
    return head, detail


def ranked(
    probs: np.ndarray, labels: Sequence[str], top_k: int
) -> tuple[list[tuple[str, float]], float]:
    """The ``top_k`` (label, score) pairs, best first (ties by index), and the top-1 margin."""
    probs = np.asarray(probs, np.float32)
    if not np.all(np.isfinite(probs)):
        raise ModelError("the model returned non-finite scores")
    order = np.argsort(-probs, kind="stable")
    k = max(1, min(int(top_k), len(labels)))
    best = [(labels[int(i)], float(probs[int(i)])) for i in order[:k]]
    second = float(probs[int(order[1])]) if len(order) > 1 else 0.0
    return best, float(probs[int(order[0])]) - second


def head_prediction(head: Head, probs: np.ndarray, top_k: int = 3) -> HeadPrediction:
    """One attribute head's answer: top-k, margin and, if calibrated, its open-set score."""
    top, margin = ranked(probs, head.labels, top_k)
    score = threshold = None
    if head.open_set is not None and not head.open_set.needs_features:
        score, threshold = head.open_set.score(np.asarray(probs), None), head.open_set.threshold
    return HeadPrediction(
        head.name, top[0][0], top[0][1], top, margin, score, threshold, head.min_margin
    )


def _dequantize(raw: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    scale, zero = detail.get("quantization", (0.0, 0))
    if raw.dtype != np.float32 and scale:
        return (raw.astype(np.float32) - zero) * scale
    return raw.astype(np.float32, copy=False)
