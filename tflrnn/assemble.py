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
from .cell import (
    ACTIVATION_NAMES,
    CellWeights,
    RNNCell,
    check_positive_int,
    dequantize,
    initial_weights,
    quantize_int8,
)
from .errors import ConfigError
from .files import write_atomic
from .graph import Layer, bidirectional_model, find_bidirectional, find_rnns, rnn_model
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


def build_file(path, cell: RNNCell | list[RNNCell] | None = None, **options) -> dict:
    """Build (as `build`) and write the file atomically; returns the summary `tflrnn build` prints."""
    model = describe_model(cell, **options)
    data = writer.serialize(model)  # written and hashed in place: a 2 GiB model is not copied again
    write_atomic(path, data)
    bidirectional = find_bidirectional(model)
    rnns = [bidirectional.forward, bidirectional.backward] if bidirectional else find_rnns(model)
    recorded = json.loads(model.metadata[METADATA_KEY])["cells"]
    layers = [
        {
            "name": info["name"],
            "units": info["num_units"],
            "input_size": info["input_size"],
            "activation": info["activation"],
            "state_shape": list(g.hidden_state.shape),
            "weights_sha256": info["weights_sha256"],
        }
        for g, info in zip(rnns, recorded)
    ]
    summary = {
        "path": str(path),
        "op": "BIDIRECTIONAL_SEQUENCE_RNN" if bidirectional else OP_NAME,
        "input_shape": _signature_shape(rnns[0].input),
        "output_shape": _signature_shape(model.subgraphs[0].tensors[model.subgraphs[0].outputs[0]]),
        "last_step": not bidirectional and len(model.subgraphs[0].operators) > len(rnns),
        "bidirectional": bidirectional is not None,
        "time_major": rnns[0].time_major,
        "bytes": len(data),
        "sha256": sha256(data),
        "layers": layers,
    }
    if len(layers) == 1:  # a single cell: its facts at the top level too
        summary.update({key: layers[0][key] for key in ("units", "input_size", "activation", "state_shape",
                                                          "weights_sha256")})
    return summary


def _signature_shape(tensor) -> list[int]:
    return list(tensor.shape_signature if tensor.shape_signature is not None else tensor.shape)


def describe_model(
    cell: RNNCell | list[RNNCell] | None = None,
    *,
    weights: CellWeights | list[CellWeights | None] | None = None,
    input_size: int | None = None,
    time_steps: int = 1,
    batch_size: int = 1,
    time_major: bool = False,
    seed: int = 0,
    last_step: bool = False,
    quantize: str | None = None,
    asymmetric_inputs: bool = False,
    bidirectional: bool = False,
    merge: str = "concat",
) -> Model:
    """The model description `build` writes.

    `bidirectional` writes one BIDIRECTIONAL_SEQUENCE_RNN op: the cell runs forward and backward (cells named
    <name>/fw and <name>/bw; `weights` then a [forward, backward] pair), with the outputs concatenated
    (`merge="concat"`, Keras' default) or separate (`merge="none"`).
    `quantize="int8"` stores W and R as symmetric per-tensor int8 (a hybrid op, version 2, about a quarter of the
    bytes); `asymmetric_inputs` also quantizes inputs asymmetrically at run time (version 3, runtime 2.3.0).

    `time_steps` may be "dynamic": the time axis is -1 in shape_signature and the model is resized to any length
    (allocated for 1 step until then). The batch cannot be dynamic: each state is a [batch, units] variable.

    `cell` gives units, activation and name (from the weights, with tanh and "rnn", when omitted); a list of
    cells makes a stack (MultiRNNCell), one op and one state per layer, with `weights` a list in the same order.
    Without weights, seeded initial weights are drawn as Keras SimpleRNN draws them: W glorot-uniform,
    R orthogonal, b zeros. `input_size` defaults to the first weights' input size, else the first cell's units.
    `last_step` outputs only the final step [B,U] (Keras return_sequences=False), through one STRIDED_SLICE op.
    """
    if batch_size == "dynamic":
        raise ConfigError("the batch cannot be dynamic: each layer's hidden state is a [batch, units] variable "
                          "tensor, fixed when the model is built")
    if quantize not in (None, "none", "int8"):
        raise ConfigError(f"quantize must be int8 (or none), got {quantize!r}")
    hybrid = quantize == "int8"
    if asymmetric_inputs and not hybrid:
        raise ConfigError("asymmetric input quantization applies to hybrid models: add --quantize int8")
    if merge not in ("concat", "none"):
        raise ConfigError(f"merge must be concat or none, got {merge!r}")
    dynamic_time = time_steps == "dynamic"
    if dynamic_time:
        time_steps = 1
    cells = cell if isinstance(cell, (list, tuple)) else [cell]
    given = weights if isinstance(weights, (list, tuple)) else [weights] * (1 if weights is not None else 0)
    if bidirectional and len(cells) == 1 and len(given) == 2:
        cells = cells * 2  # one cell, run forward and backward, with a weights pair
    if len(given) not in (0, len(cells)):
        raise ConfigError(f"{len(cells)} cells but {len(given)} sets of weights")
    given = list(given) or [None] * len(cells)
    if cells == [None]:
        if given[0] is None:
            raise ConfigError("give a cell (num_units) or weights")
        cells = [RNNCell(given[0].num_units)]
    if bidirectional:
        if len(cells) != 1 and not (len(cells) == 2 and len(given) == 2):
            raise ConfigError("a bidirectional model takes one cell (run forward and backward); stacks of "
                              "bidirectional layers are not built yet")
        if last_step:
            raise ConfigError("--last-step with a bidirectional model is not built yet (Keras takes the backward "
                              "direction's output at t=0, not at the last step)")
        if hybrid and time_major:
            # TFLite's hybrid time-major bidirectional kernel loops over the whole sequence once per step, and
            # crashed LiteRT 2.3 when tried here: tflrnn does not write a model the runtime cannot run.
            raise ConfigError("a hybrid (int8) bidirectional model must be batch-major: the runtime's time-major "
                              "hybrid bidirectional kernel is broken (it crashes LiteRT 2.3)")
        base = cells[0]
        cells = [RNNCell(base.num_units, activation=base.activation, name=f"{base.name}/{d}") for d in ("fw", "bw")]
        if len(given) == 1:
            given = [given[0], None] if given[0] is not None else [None, None]
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")

    layers, shared = [], {}
    size = input_size
    for k, (layer_cell, layer_weights) in enumerate(zip(cells, given)):
        where = f"layer {k} ('{layer_cell.name}'): " if len(cells) > 1 else ""
        if layer_weights is not None:
            if layer_weights.num_units != layer_cell.num_units:
                raise ConfigError(
                    f"{where}num_units={layer_cell.num_units} does not match the weights: input_weights is "
                    f"{list(layer_weights.input_weights.shape)} (units {layer_weights.num_units})"
                )
            if size is not None and size != layer_weights.input_size:
                what = "input_size" if k == 0 else f"the previous layer's {size} units"
                raise ConfigError(
                    f"{where}{what}={size} does not match the weights: input_weights is "
                    f"{list(layer_weights.input_weights.shape)} (input size {layer_weights.input_size})"
                    if k == 0 else f"{where}{what} do not match its input_weights {list(layer_weights.input_weights.shape)}"
                )
            size = layer_weights.input_size
        elif size is None:
            size = layer_cell.num_units
        check_sizes(layer_cell.num_units, size, time_steps, batch_size)
        if layer_cell.name in shared:
            layer_weights = _reused(layer_cell, shared[layer_cell.name], size, layer_weights)
        elif layer_weights is None:
            layer_weights = initial_weights(layer_cell.num_units, size, seed + k)
        shared[layer_cell.name] = layer_weights
        if bidirectional:
            size = input_size if input_size is not None else layer_weights.input_size  # both read x
        int8 = None
        if hybrid:
            int8 = (quantize_int8(layer_weights.input_weights), quantize_int8(layer_weights.recurrent_weights))
            # The model computes with the dequantized values: those are its weights (and their digest).
            layer_weights = CellWeights(dequantize(*int8[0]), dequantize(*int8[1]), layer_weights.bias)
        layers.append(Layer(layer_cell.name, layer_cell.fused_activation, layer_weights, int8,
                            bool(asymmetric_inputs)))
        if not bidirectional:
            size = layer_cell.num_units

    cells_info = [BuildInfo(layer.name, layer.weights.num_units, layer.weights.input_size,
                            ACTIVATION_NAMES[layer.activation], layer.weights.sha256(),
                            "int8" if layer.int8 is not None else None) for layer in layers]
    common = dict(
        time_steps=time_steps,
        batch_size=batch_size,
        time_major=bool(time_major),
        dynamic_time=dynamic_time,
        metadata={
            "min_runtime_version": MIN_RUNTIME_VERSION[max(layer.op_version for layer in layers)].encode().ljust(
                16, b"\0"),
            METADATA_KEY: BuildInfo.document(cells_info).encode(),
        },
        description=f"tflrnn {__version__}",
    )
    if bidirectional:
        if layers[0].weights.input_size != layers[1].weights.input_size:
            raise ConfigError("the forward and backward weights read inputs of different sizes: "
                              f"{layers[0].weights.input_size} and {layers[1].weights.input_size}")
        model = bidirectional_model(layers[0], layers[1], merge=merge == "concat", **common)
    else:
        model = rnn_model(layers, last_step=bool(last_step), **common)
    if writer.estimated_size(model) > MAX_FLATBUFFER_BYTES:
        raise ConfigError(f"the model would take {writer.estimated_size(model):,} bytes; a flatbuffer holds 2 GiB")
    return model


def _reused(cell: RNNCell, existing: CellWeights, input_size: int, weights: CellWeights | None) -> CellWeights:
    """TfLiteRNNCell's variable sharing: a second layer of the same name reuses the first one's variables, only
    with reuse=True and matching shapes, and with the same errors TensorFlow's variable scopes gave."""
    variable = f"{cell.name}/input_weights"
    if not cell.reuse:
        raise ConfigError(
            f"Variable {variable} already exists, disallowed. Did you mean to set reuse=True? (two layers are "
            f"named '{cell.name}')"
        )
    shape = (cell.num_units, input_size)
    if (existing.num_units, existing.input_size) != shape:
        raise ConfigError(
            f"Trying to share variable {variable}, but specified shape {list(shape)} and found shape "
            f"{[existing.num_units, existing.input_size]}."
        )
    if weights is not None and not weights.equals(existing):
        raise ConfigError(f"layers named '{cell.name}' share variables but were given different weights")
    return existing


@dataclass(frozen=True)
class BuildInfo:
    """What tflrnn records about a cell in its `tflrnn` metadata entry (the layout is in the graph itself)."""

    name: str
    num_units: int
    input_size: int
    activation: str
    weights_sha256: str
    quantize: str | None = None  # "int8": W and R stored as int8; the digest is of their dequantized values

    @staticmethod
    def document(cells: list[BuildInfo]) -> str:
        recorded = [{k: v for k, v in asdict(c).items() if v is not None} for c in cells]
        return json.dumps({"version": __version__, "cells": recorded}, separators=(",", ":"))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
