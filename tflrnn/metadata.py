"""The metadata tflrnn writes into a model, and reads back: `min_runtime_version` and the `tflrnn` record.

The record says, for each RNN direction and each Dense layer in graph order, its activation and the sha256 of its
weights, so that `verify` can tell whether the file still holds what was built. Everything else (names, sizes,
layout) is in the graph itself, and the tool version is in the model's description (`tflrnn 0.2.0`). It is compact
JSON, because it rides in every model (a 64-unit cell carries at most 1 KiB beside its weights):

    {"c": [["tanh", "<sha256, base64url>"], ...], "d": [["softmax", "<sha256>"], ...]}

one [activation, digest] pair per RNN direction ("c") and per Dense layer ("d"), a third item "int8" for a hybrid
cell. Records written by 0.1 (long keys, hex digests, the names and sizes too) are read as well.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass

import numpy as np

from .model import BuiltinOperator, Model

METADATA_KEY = "tflrnn"
DESCRIPTION_PREFIX = "tflrnn "
MIN_RUNTIME_VERSION = {1: "1.14.0", 2: "1.14.0", 3: "2.3.0"}  # by op version: float, hybrid, hybrid asymmetric

# The oldest runtime with each (op, version), from TFLite's runtime_version.cc.
_OP_MIN_RUNTIME = {
    **{(BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_RNN, v): r for v, r in MIN_RUNTIME_VERSION.items()},
    **{(BuiltinOperator.BIDIRECTIONAL_SEQUENCE_RNN, v): r for v, r in MIN_RUNTIME_VERSION.items()},
    # runtime_version.cc: {UNIDIRECTIONAL_SEQUENCE_LSTM, 1}: "1.13.1", 2: "1.14.0", 3: "2.3.0";
    # {BIDIRECTIONAL_SEQUENCE_LSTM, 1 to 3}: "1.14.0" (version 1 float, 2 hybrid, 3 hybrid asymmetric: op_version.cc)
    (BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_LSTM, 1): "1.13.1",
    (BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_LSTM, 2): "1.14.0",
    (BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_LSTM, 3): "2.3.0",
    **{(BuiltinOperator.BIDIRECTIONAL_SEQUENCE_LSTM, v): "1.14.0" for v in (1, 2, 3)},
    (BuiltinOperator.STRIDED_SLICE, 1): "1.6.0",
    (BuiltinOperator.FULLY_CONNECTED, 1): "1.5.0",
    (BuiltinOperator.FULLY_CONNECTED, 5): "2.0.0",  # keep_num_dims: a Dense layer on a sequence
    (BuiltinOperator.TANH, 1): "1.14.0",
    (BuiltinOperator.LOGISTIC, 1): "1.14.0",
    (BuiltinOperator.PACK, 1): "1.11.0",
    (BuiltinOperator.UNPACK, 1): "1.11.0",
    (BuiltinOperator.CALL_ONCE, 1): "2.5.0",
    (BuiltinOperator.VAR_HANDLE, 1): "2.6.0",  # resource variables: the portable lowering's carried state
    (BuiltinOperator.READ_VARIABLE, 1): "2.6.0",
    (BuiltinOperator.ASSIGN_VARIABLE, 1): "2.6.0",
    (BuiltinOperator.WHILE, 1): "1.15.0",  # the portable lowering's loop over the steps
    (BuiltinOperator.SLICE, 1): "1.14.0",
    (BuiltinOperator.GATHER, 1): "1.6.0",  # a GRU loop's step t
    (BuiltinOperator.DYNAMIC_UPDATE_SLICE, 1): "2.9.0",
    (BuiltinOperator.LESS, 1): "1.14.0",
    (BuiltinOperator.GREATER_EQUAL, 1): "1.14.0",
    (BuiltinOperator.SHAPE, 1): "1.10.0",  # its length, with a dynamic time axis
    (BuiltinOperator.MAXIMUM, 1): "1.14.0",  # a portable LSTM's cell_clip
    (BuiltinOperator.MINIMUM, 1): "1.14.0",
    (BuiltinOperator.MUL, 1): "1.5.0",  # a GRU's gates
    (BuiltinOperator.SUB, 1): "1.6.0",
    (BuiltinOperator.SPLIT, 1): "1.5.0",
    (BuiltinOperator.MUL, 2): "1.14.0",  # their int8 forms
    (BuiltinOperator.MUL, 3): "1.15.0",  # int8 with an output scale below the inputs' product
    (BuiltinOperator.SUB, 2): "1.14.0",
    (BuiltinOperator.SPLIT, 2): "1.14.0",
    # full-integer int8 (the portable lowering's --quantize full-int8): op_version.cc's int8 versions
    (BuiltinOperator.FULLY_CONNECTED, 4): "1.14.0",
    (BuiltinOperator.ADD, 2): "1.14.0",
    (BuiltinOperator.TANH, 2): "1.14.0",
    (BuiltinOperator.LOGISTIC, 2): "1.14.0",
    (BuiltinOperator.SOFTMAX, 2): "1.14.0",
    (BuiltinOperator.PACK, 2): "1.14.0",
    (BuiltinOperator.UNPACK, 2): "1.14.0",
    (BuiltinOperator.CONCATENATION, 2): "1.14.0",
    (BuiltinOperator.QUANTIZE, 1): "1.14.0",
    (BuiltinOperator.QUANTIZE, 2): "1.15.0",  # to int16: a float input for the 16x8 FULLY_CONNECTED (version 1)
    (BuiltinOperator.DEQUANTIZE, 2): "1.14.0",
    # a full-int8 LSTM's int16 values (16x8, the portable lowering): op_version.cc's int16 versions
    (BuiltinOperator.ADD, 3): "2.4.0",  # pot_scale_int16 false: the general int16 kernel
    (BuiltinOperator.MUL, 4): "2.3.0",
    (BuiltinOperator.LOGISTIC, 3): "2.3.0",
    (BuiltinOperator.TANH, 3): "2.3.0",
    (BuiltinOperator.SPLIT, 4): "2.3.0",
    (BuiltinOperator.UNPACK, 4): "2.3.0",
    (BuiltinOperator.PACK, 3): "2.3.0",
    (BuiltinOperator.CONCATENATION, 3): "2.3.0",
    (BuiltinOperator.DEQUANTIZE, 3): "1.15.0",
    (BuiltinOperator.FILL, 1): "1.13.0",  # a full-int8 LSTM loop's output buffer
}

_FIELDS = ("activation", "weights_sha256", "quantize", "cell_clip")  # the items of an entry, in order


def min_runtime_version(model: Model) -> str:
    """The oldest TFLite runtime that has every op at its version (TFLite's runtime_version.cc)."""
    versions = [_OP_MIN_RUNTIME.get((op.code, op.version), "1.5.0") for g in model.subgraphs for op in g.operators]
    return max(versions, key=lambda v: tuple(int(p) for p in v.split(".")))


def min_runtime_entry(model: Model) -> bytes:
    # 16 bytes, NUL-padded, as TensorFlow's converter writes it (its tools update the version in place).
    return min_runtime_version(model).encode().ljust(16, b"\0")


@dataclass(frozen=True)
class Record:
    """One RNN direction or Dense layer as the record keeps it."""

    activation: str
    weights_sha256: str  # hex
    quantize: str | None = None  # "int8": W and R stored as int8; the digest is of their dequantized values
    cell_clip: float | None = None  # an LSTM's cell_clip (None: none; not written then, so older records hold)


def record(cells: list[Record], dense: list[Record]) -> bytes:
    """The `tflrnn` metadata entry."""
    document = {"c": [_entry(r) for r in cells]}
    if dense:
        document["d"] = [_entry(r) for r in dense]
    return json.dumps(document, separators=(",", ":")).encode()


def _entry(r: Record) -> list:
    digest = base64.urlsafe_b64encode(bytes.fromhex(r.weights_sha256)).rstrip(b"=").decode()
    if r.cell_clip:
        return [r.activation, digest, r.quantize, r.cell_clip]
    return [r.activation, digest] + ([r.quantize] if r.quantize is not None else [])


def parse(raw: bytes, description: str = "") -> dict | None:
    """The record in long form: {"version", "cells": [{"activation", "weights_sha256", ...}], "dense": [...]};
    None when `raw` is not a record tflrnn writes. Digests come back as hex; an earlier version's record keeps
    its name and sizes (name, num_units / units, input_size) for the verifier to compare with the graph."""
    try:
        document = json.loads(raw, parse_constant=_reject)
    except (ValueError, RecursionError):
        return None
    if not isinstance(document, dict):
        return None
    if "cells" in document:  # written before 0.2: long keys already
        cells, dense, version = document.get("cells"), document.get("dense") or [], document.get("version")
    else:
        cells, dense = document.get("c"), document.get("d") or []
        version = description[len(DESCRIPTION_PREFIX):] if description.startswith(DESCRIPTION_PREFIX) else None
        def entries(value):
            if not isinstance(value, list) or not all(isinstance(e, list) for e in value):
                return None  # not a record tflrnn writes
            return [_long(e) for e in value]

        cells, dense = entries(cells), entries(dense)
        if dense is None:
            return None
    if not isinstance(cells, list) or not cells or not all(isinstance(c, dict) for c in cells):
        return None
    return {"version": version, "cells": cells, "dense": dense}


def _long(entry) -> dict | object:
    if not 2 <= len(entry) <= len(_FIELDS):
        return entry  # not an entry: refused by the caller
    expanded = dict(zip(_FIELDS, entry))
    digest = expanded.get("weights_sha256")
    if isinstance(digest, str):
        try:
            expanded["weights_sha256"] = base64.urlsafe_b64decode(digest + "=" * (-len(digest) % 4)).hex()
        except (binascii.Error, ValueError):
            expanded["weights_sha256"] = None  # matches no digest: reported as a mismatch
    return expanded


def _reject(constant: str):
    raise ValueError(f"{constant} is not JSON")


def dense_sha256(weights: np.ndarray, bias: np.ndarray) -> str:
    """The digest of a Dense layer: its kernel [units, in] then its bias, as float32 little-endian."""
    digest = hashlib.sha256()
    for array in (weights, bias):
        digest.update(np.ascontiguousarray(array, dtype="<f4").tobytes())
    return digest.hexdigest()
