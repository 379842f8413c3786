"""Hostile ``.tflite`` files made from a small valid one: the inputs the model validation must
survive.

Why edit the flatbuffer through LiteRT's own schema (``ai_edge_litert.schema_py_generated``)
instead of only flipping bytes: random byte flips mostly break the flatbuffer's framing, which
the runtime's verifier refuses cleanly.  The crashes live one level deeper, in files that parse
but lie: a tensor whose type disagrees with its kernel, a zero point outside its type's range,
a shape that asks for gigabytes.  Each mutant here is a well-formed flatbuffer with one such
lie, plus plain byte mutants for the framing.

Every mutant is deterministic for a given seed model and random seed.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

#: TFLite TensorType values used below.
UINT8, INT8, FLOAT32 = 3, 9, 0


def parse(content: bytes) -> Any:
    """The model as LiteRT's generated object API (``ModelT``), ready to edit."""
    from ai_edge_litert import schema_py_generated as schema

    return schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(content, 0))


def pack(model: Any) -> bytes:
    """Serialise an edited ``ModelT`` back into a ``.tflite`` file's bytes."""
    import flatbuffers

    builder = flatbuffers.Builder(4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _tensor(graph: Any, name_part: str) -> Any:
    for tensor in graph.tensors:
        if name_part in tensor.name.decode():
            return tensor
    raise KeyError(f"no tensor named like {name_part!r} in the seed model")


def edited(seed: bytes, edit: Callable[[Any], None]) -> bytes:
    """``seed`` with ``edit`` applied to its first subgraph."""
    model = parse(seed)
    edit(model.subgraphs[0])
    return pack(model)


def crashing_mutants(seed: bytes) -> dict[str, bytes]:
    """Mutants of the colour model (tests/classify/registry_helpers.py) that make LiteRT 2.x
    segfault when a process loads and invokes them, as the issue's 2.5 KB upload did."""

    def retype_quantize(g: Any) -> None:
        _tensor(g, "tfl.quantize").type = UINT8

    def zero_point_300(g: Any) -> None:
        _tensor(g, "StatefulPartitionedCall_1:01").quantization.zeroPoint = np.array(
            [300], np.int64
        )

    def negative_scale(g: Any) -> None:
        _tensor(g, "StatefulPartitionedCall_1:01").quantization.scale = np.array([-1.0], np.float32)

    def nan_scale(g: Any) -> None:
        _tensor(g, "tfl.quantize").quantization.scale = np.array([np.nan], np.float32)

    return {
        "quantize-output-retyped-uint8": edited(seed, retype_quantize),
        "zero-point-300": edited(seed, zero_point_300),
        "negative-scale": edited(seed, negative_scale),
        "nan-scale": edited(seed, nan_scale),
    }


def large_input(seed: bytes, side: int = 8192) -> bytes:
    """The seed model asking for a ``side`` x ``side`` input (~0.6 GB of tensors at 8192)."""

    def grow(g: Any) -> None:
        g.tensors[int(g.inputs[0])].shape = np.array([1, side, side, 3], np.int32)

    return edited(seed, grow)


# --- random mutants for the fuzz ------------------------------------------------------------------


def _structural(model: Any, rng: random.Random) -> str:
    """One random lie inside a well-formed flatbuffer; returns what kind it was."""
    g = model.subgraphs[0]
    kind = rng.choice(["shape", "type", "buffer", "op-input", "op-output", "opcode", "quant"])
    tensor = rng.choice(g.tensors)
    if kind == "shape":
        shape = [int(v) for v in tensor.shape] if tensor.shape is not None else []
        if shape and rng.random() < 0.7:
            shape[rng.randrange(len(shape))] = rng.choice([0, -1, 2, 7, 100, 8192, 65536])
        elif rng.random() < 0.5:
            shape.append(rng.choice([1, 2, 3]))
        else:
            shape = shape[:-1]
        tensor.shape = np.array(shape, np.int32)
    elif kind == "type":
        tensor.type = rng.randrange(0, 18)
    elif kind == "buffer":
        tensor.buffer = rng.choice([0, 1, 2, rng.randrange(len(model.buffers)), 1000])
    elif kind in ("op-input", "op-output"):
        op = rng.choice(g.operators)
        attr = "inputs" if kind == "op-input" else "outputs"
        ids = [int(v) for v in getattr(op, attr)]
        ids[rng.randrange(len(ids))] = rng.choice([-1, 0, 1, 2, len(g.tensors) - 1, 50])
        setattr(op, attr, np.array(ids, np.int32))
    elif kind == "opcode":
        rng.choice(g.operators).opcodeIndex = rng.randrange(len(model.operatorCodes) + 1)
    else:
        q = tensor.quantization
        if q is None or q.scale is None:
            return _structural(model, rng)
        if rng.random() < 0.5:
            q.scale = np.array([rng.choice([0.0, -1.0, 1e30, np.nan])] * len(q.scale), np.float32)
        else:
            q.zeroPoint = np.array([rng.choice([-(2**40), 300, -300])] * len(q.scale), np.int64)
    return kind


def _bytes(seed: bytes, rng: random.Random) -> tuple[str, bytes]:
    data = bytearray(seed)
    kind = rng.choice(["flip", "truncate", "splice"])
    if kind == "flip":
        for _ in range(rng.choice([1, 2, 4, 16])):
            data[rng.randrange(len(data))] = rng.choice([0, 0xFF, 0x7F, 0x80, rng.randrange(256)])
    elif kind == "truncate":
        data = data[: rng.randrange(8, len(data))]
    else:
        at = rng.randrange(len(data))
        data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
    return f"bytes-{kind}", bytes(data)


def random_mutants(seed: bytes, count: int, rng_seed: int = 0) -> Iterator[tuple[str, bytes]]:
    """``count`` mutants of ``seed``: three in four structural (one or two lies), one in four
    byte-level; each as ``(kind, bytes)``."""
    rng = random.Random(rng_seed)
    base = parse(seed)
    for _ in range(count):
        if rng.random() < 0.25:
            yield _bytes(seed, rng)
            continue
        model = copy.deepcopy(base)
        kinds = [_structural(model, rng) for _ in range(rng.choice([1, 1, 2]))]
        yield "+".join(kinds), pack(model)
