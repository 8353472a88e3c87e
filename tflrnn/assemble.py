"""build(): a cell, its weights and the input layout -> the bytes of a `.tflite` file.

Sizes are checked before anything is allocated, so an absurd request fails at once instead of after gigabytes of
random weights. The output depends only on the arguments (and the tool version in the metadata): the same inputs
give byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass

import numpy as np

from . import writer
from .cell import ACTIVATION_NAMES, CellWeights, RNNCell, check_positive_int, initial_weights
from .errors import ConfigError
from .files import write_atomic
from .graph import find_rnn, rnn_model
from .model import MAX_FLATBUFFER_BYTES, Model
from .version import __version__

OP_NAME = "UNIDIRECTIONAL_SEQUENCE_RNN"
MIN_RUNTIME_VERSION = {1: "1.14.0", 2: "1.14.0", 3: "2.3.0"}  # by op version: float, hybrid, hybrid asymmetric
METADATA_KEY = "tflrnn"
_STRUCTURE_BYTES = 8192  # tables, names and metadata around the weights, with room to spare
MAX_TENSOR_BYTES = 2**31 - 1  # the runtime sizes tensors with int: a larger input/output cannot be allocated


def _largest_square_units() -> int:
    # 4 bytes * (U*I + U*U + U) with I = U must fit beside the structure in a 2 GiB flatbuffer.
    units = math.isqrt((MAX_FLATBUFFER_BYTES - _STRUCTURE_BYTES) // 8)
    while 4 * (2 * units * units + units) + _STRUCTURE_BYTES > MAX_FLATBUFFER_BYTES:
        units -= 1
    return units


LARGEST_SQUARE_UNITS = _largest_square_units()


def check_sizes(num_units: int, input_size: int, time_steps: int, batch_size: int) -> None:
    """Refuse sizes that cannot make a loadable model, before allocating anything."""
    for value, what in ((num_units, "num_units"), (input_size, "input_size"), (time_steps, "time_steps"),
                        (batch_size, "batch_size")):
        check_positive_int(value, what)
    weight_bytes = 4 * (num_units * input_size + num_units * num_units + num_units)
    if weight_bytes + _STRUCTURE_BYTES > MAX_FLATBUFFER_BYTES:
        raise ConfigError(
            f"num_units={num_units}, input_size={input_size} need {weight_bytes / 2**30:.2f} GiB of weights; a TFLite "
            f"flatbuffer holds at most 2 GiB (with input_size = num_units, at most {LARGEST_SQUARE_UNITS} units)"
        )
    sequence_bytes = 4 * batch_size * time_steps * max(input_size, num_units)
    if sequence_bytes > MAX_TENSOR_BYTES:
        raise ConfigError(
            f"batch_size={batch_size} x time_steps={time_steps} x {max(input_size, num_units)} floats is "
            f"{sequence_bytes / 2**30:.2f} GiB per input/output tensor; the runtime allocates at most 2 GiB per tensor"
        )


def build(cell: RNNCell | None = None, **options) -> bytes:
    """The `.tflite` bytes of one fused UNIDIRECTIONAL_SEQUENCE_RNN op with a variable hidden state.

    Options as `describe_model`: weights, input_size, time_steps, batch_size, time_major, seed.
    """
    return writer.write(describe_model(cell, **options))


def build_file(path, cell: RNNCell | None = None, **options) -> dict:
    """Build (as `build`) and write the file atomically; returns the summary `tflrnn build` prints."""
    model = describe_model(cell, **options)
    data = writer.serialize(model)  # written and hashed in place: a 2 GiB model is not copied again
    write_atomic(path, data)
    g = find_rnn(model)
    units, input_size = g.input_weights.shape
    return {
        "path": str(path),
        "op": OP_NAME,
        "input_shape": list(g.input.shape),
        "output_shape": list(g.output.shape),
        "state_shape": list(g.hidden_state.shape),
        "units": units,
        "input_size": input_size,
        "activation": ACTIVATION_NAMES[g.options.activation],
        "time_major": g.time_major,
        "bytes": len(data),
        "sha256": sha256(data),
        "weights_sha256": json.loads(model.metadata[METADATA_KEY])["cells"][0]["weights_sha256"],
    }


def describe_model(
    cell: RNNCell | None = None,
    *,
    weights: CellWeights | None = None,
    input_size: int | None = None,
    time_steps: int = 1,
    batch_size: int = 1,
    time_major: bool = False,
    seed: int = 0,
) -> Model:
    """The model description `build` writes.

    `cell` gives units, activation and name (from the weights, with tanh and "rnn", when omitted). Without
    `weights`, seeded initial weights are drawn as Keras SimpleRNN draws them: W glorot-uniform, R orthogonal,
    b zeros. `input_size` defaults to the weights' input size, else the units.
    """
    if cell is None:
        if weights is None:
            raise ConfigError("give a cell (num_units) or weights")
        cell = RNNCell(weights.num_units)
    if weights is not None:
        if weights.num_units != cell.num_units:
            raise ConfigError(
                f"num_units={cell.num_units} does not match the weights: input_weights is "
                f"{list(weights.input_weights.shape)} (units {weights.num_units})"
            )
        if input_size is not None and input_size != weights.input_size:
            raise ConfigError(
                f"input_size={input_size} does not match the weights: input_weights is "
                f"{list(weights.input_weights.shape)} (input size {weights.input_size})"
            )
        input_size = weights.input_size
    elif input_size is None:
        input_size = cell.num_units
    check_sizes(cell.num_units, input_size, time_steps, batch_size)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    if weights is None:
        weights = initial_weights(cell.num_units, input_size, seed)

    info = BuildInfo(cell.name, cell.num_units, input_size, cell.activation, weights.sha256())
    model = rnn_model(
        weights,
        name=cell.name,
        activation=cell.fused_activation,
        time_steps=time_steps,
        batch_size=batch_size,
        time_major=bool(time_major),
        metadata={
            "min_runtime_version": MIN_RUNTIME_VERSION[1].encode().ljust(16, b"\0"),
            METADATA_KEY: info.to_json().encode(),
        },
        description=f"tflrnn {__version__}",
    )
    if writer.estimated_size(model) > MAX_FLATBUFFER_BYTES:
        raise ConfigError(f"the model would take {writer.estimated_size(model):,} bytes; a flatbuffer holds 2 GiB")
    return model


@dataclass(frozen=True)
class BuildInfo:
    """What tflrnn records about a cell in its `tflrnn` metadata entry (the layout is in the graph itself)."""

    name: str
    num_units: int
    input_size: int
    activation: str
    weights_sha256: str

    def to_json(self) -> str:
        document = {"version": __version__, "cells": [asdict(self)]}
        return json.dumps(document, separators=(",", ":"))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
