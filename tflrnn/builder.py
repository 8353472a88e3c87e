"""build(): cells, their weights and the input layout -> a network -> the bytes of a `.tflite` file.

`network_of` checks the options and makes the network (drawing weights where none are given, quantizing them for a
hybrid model); `model_of` lowers it (`lowering/`) and adds the metadata; `build` and `build_file` write it.

Sizes are checked before anything is allocated, so an absurd request fails at once instead of after gigabytes of
random weights. The output depends only on the arguments (and the tool version in the metadata): the same inputs
give byte-identical files.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

from . import lowering, metadata, writer
from .lowering import lowering as lowering_of
from .cell import (
    ACTIVATION_NAMES,
    MAX_LAYERS,
    CellWeights,
    RNNCell,
    check_positive_int,
    dequantize,
    quantize_int8,
)
from .errors import ConfigError
from .files import write_atomic
from .model import MAX_FLATBUFFER_BYTES, Model, op_name
from .lowering import portable
from .cells import kind_of
from .network import DENSE_ACTIVATIONS, RECURRENCES, STATES, Dense, Layer, Network, stage_layers
from .version import __version__

_STRUCTURE_BYTES = 8192  # tables, names and metadata around the weights, with room to spare
MAX_TENSOR_BYTES = 2**31 - 1  # the runtime sizes tensors with int: a larger input/output cannot be allocated


def _largest_square_units() -> int:
    # 4 bytes * (U*I + U*U + U) with I = U must fit beside the structure in a 2 GiB flatbuffer.
    units = math.isqrt((MAX_FLATBUFFER_BYTES - _STRUCTURE_BYTES) // 8)
    while 4 * (2 * units * units + units) + _STRUCTURE_BYTES > MAX_FLATBUFFER_BYTES:
        units -= 1
    return units


LARGEST_SQUARE_UNITS = _largest_square_units()


def check_sizes(num_units: int, input_size: int, time_steps: int, batch_size: int,
                gates: int = 1) -> None:
    """Refuse sizes that cannot make a loadable model, before allocating anything (`gates`: the kind's blocks of
    rows in each weight, 3 for a GRU, 4 for an LSTM)."""
    for value, what in ((num_units, "num_units"), (input_size, "input_size"), (time_steps, "time_steps"),
                        (batch_size, "batch_size")):
        check_positive_int(value, what)
    weight_bytes = 4 * gates * (num_units * input_size + num_units * num_units + num_units)
    if weight_bytes + _STRUCTURE_BYTES > MAX_FLATBUFFER_BYTES:
        largest_input = (((MAX_FLATBUFFER_BYTES - _STRUCTURE_BYTES) // (4 * gates) - num_units * num_units - num_units)
                         // num_units)
        fits = (f"with {num_units} units, input_size at most {largest_input:,}" if largest_input >= 1 else
                f"{num_units} units do not fit at any input size")
        raise ConfigError(
            f"num_units={num_units}, input_size={input_size} need {weight_bytes / 2**30:.2f} GiB of weights; a TFLite "
            f"flatbuffer holds at most 2 GiB ({fits}; with input_size = num_units, at most {LARGEST_SQUARE_UNITS} "
            "units)"
        )
    sequence_bytes = 4 * batch_size * time_steps * max(input_size, num_units)
    if sequence_bytes > MAX_TENSOR_BYTES:
        raise ConfigError(
            f"batch_size={batch_size} x time_steps={time_steps} x {max(input_size, num_units)} floats is "
            f"{sequence_bytes / 2**30:.2f} GiB per input/output tensor; the runtime allocates at most 2 GiB per tensor"
        )


def build(cell: RNNCell | None = None, **options) -> bytes:
    """The `.tflite` bytes of the network `network_of(cell, **options)` describes (one fused
    UNIDIRECTIONAL_SEQUENCE_RNN op with a variable hidden state, by default).

    Options as `network_of`: weights, input_size, time_steps, batch_size, time_major, seed, ...
    """
    return writer.write(model_of(network_of(cell, **options)))


def build_file(path, cell: RNNCell | list[RNNCell] | None = None, **options) -> dict:
    """Build (as `build`) and write the file atomically; returns the summary `tflrnn build` prints."""
    network = network_of(cell, **options)
    model = model_of(network)
    data = writer.serialize(model)  # written and hashed in place: a 2 GiB model is not copied again
    summary = summary_of(network, model, data, path)
    if network.int8 is not None:  # measured before the file is written: a model that cannot run is not written
        summary["int8"]["calibration"] = calibration_report(network, model, data, float_network_of(cell, **options),
                                                            options["calibration"])
    write_atomic(path, data)
    return summary


def float_network_of(cell=None, **options) -> Network:
    """The float network a full-int8 build quantizes: the same options without the quantization."""
    return network_of(cell, **{**options, "quantize": None, "calibration": None, "io": "float",
                               "input_precision": "int16"})


def calibration_report(network: Network, model: Model, data, float_network: Network, calibration) -> dict:
    """A full-int8 model on its own calibration data, run by LiteRT's builtin kernels the way the model keeps its
    state, against the float network it was quantized from: the max and mean error, the share of each role's
    values its int8 format clips, and warnings for ranges that leave a tensor one or two int8 levels."""
    from . import quantization
    from .verification.data import measure

    sequences = quantization.sequences_of(calibration, network)  # read again: network_of keeps no copy of 512 MiB
    # LiteRT runs the sequences of the model's shape (any length, with a dynamic time axis): calibration may hold
    # others, whose values count for the ranges all the same
    graph = model.subgraphs[0]
    shape = tuple(graph.tensors[graph.inputs[0]].shape)
    time_axis = 0 if network.time_major else 1
    runnable = [x for x in sequences if tuple(x.shape) == shape or (
        network.dynamic_time and x.shape[1 - time_axis] == shape[1 - time_axis])]
    if not runnable:
        from .verification.data import clipped_shares

        return {"sequences": 0, "runtime": "litert", "max_error": None, "mean_error": None,
                "clipped": clipped_shares(network, sequences)[0],
                "warnings": [f"the model was not run on the calibration data: its sequences are "
                             f"{list(sequences[0].shape)}, the model takes {list(shape)}"]}
    sequences = runnable
    measured = measure(bytes(data), model, network, sequences, [("litert", False)], float_network)
    run = measured.runs[0]
    warnings = [f"{where}: the calibration values use {count} of the {size:,} int{size.bit_length() - 1} levels (a "
                "constant, or an outlier that stretches the range, leaves the rest no resolution)"
                for where, (count, size) in measured.levels.items() if count <= 2]
    for part, what in (("gate_input", "input parts (x W + b)"), ("gate_recurrent", "recurrent parts (h R)")):
        saturated = measured.clipped.get(part, 0.0)
        if saturated > 0.001:
            warnings.append(f"{saturated:.1%} of the LSTM gates' {what} lie beyond +-8, where TFLite's integer LSTM "
                            "kernel saturates them (the input part before h's is added; TFLite Micro also h's part "
                            "on its own): the model departs from the float one there (see the error above), and "
                            "LiteRT and TFLite Micro from each other; inputs or weights of a smaller scale avoid it")
    if run.refused:
        raise ConfigError(f"the full-int8 model does not run on LiteRT ({run.refused[:200]})"
                          + (f"; {warnings[0]}" if warnings else ""))
    return {"sequences": len(sequences), "runtime": "litert", "max_error": run.max_error,
            "mean_error": run.mean_error, "clipped": measured.clipped, "warnings": warnings}


def summary_of(network: Network, model: Model, data, path=None) -> dict:
    """What `tflrnn build` prints (and `--json` shows) about a network and the file it became."""
    layers = [
        {
            "name": layer.name,
            "cell": layer.kind,
            "units": layer.weights.num_units,
            "input_size": layer.weights.input_size,
            "activation": ACTIVATION_NAMES[layer.activation],
            "state_shape": [network.batch_size, layer.weights.state_width],
            "weights_sha256": layer.weights.sha256(),
            **layer.settings(),
        }
        for layer in network.layers
    ]
    graph = model.subgraphs[0]
    summary = {
        "path": str(path),
        "quantize": ("full-int8" if network.int8 is not None else
                     "int8" if any(layer.int8 is not None for layer in network.layers) else None),
        "op": lowering_of(network.lowering).ops_of(network),
        "lowering": network.lowering,
        "state": network.state,
        "recurrence": ("loop" if network.loop else "unrolled") if lowering_of(network.lowering).loops else None,
        "steps_per_iteration": network.steps_per_iteration if network.loop else None,
        "ops": [op_name(op.code) for op in graph.operators],
        "input_shape": _signature_shape(graph.tensors[graph.inputs[0]]),
        "output_shape": _signature_shape(graph.tensors[graph.outputs[0]]),
        "last_step": network.last_step,
        "bidirectional": network.bidirectional,
        "time_major": network.time_major,
        "bytes": len(data),
        "sha256": sha256(data),
        "layers": layers,
    }
    if network.head:
        summary["dense"] = [
            {"name": d.name, "units": d.units, "input_size": int(d.weights.shape[1]), "activation": d.activation,
             "weights_sha256": metadata.dense_sha256(d.weights, d.bias)}
            for d in network.head
        ]
    if network.int8 is not None:
        summary["int8"] = int8_summary(network, model, data)
    if len(layers) == 1:  # a single cell: its facts at the top level too
        summary.update({key: layers[0][key] for key in ("cell", "units", "input_size", "activation", "state_shape",
                                                          "weights_sha256", *network.layers[0].settings())})
    return summary


def int8_summary(network: Network, model: Model, data) -> dict:
    """A full-int8 model's interface and formats, and the TFLite Micro arena it needs (measured: arena.py; None
    without tflite-micro installed)."""
    from .arena import minimum_arena
    from .runners import micro_arena_bytes

    plan = network.int8

    def fmt(f):
        return {"scale": f.scale, "zero_point": f.zero_point}

    from .quantization import value_bits
    from .lowering import lowering as lowering_named

    return {
        "io": "int8" if plan.int8_io else "float",
        "input": {**fmt(plan.input), "type": f"int{plan.input.bits}"},
        # the recurrent values' type: int8, or int16 with int8 weights (16x8: a portable LSTM's)
        "values": f"int{max(value_bits(layer, lowering_named(network.lowering)) for layer in network.layers)}",
        "layers": {name: {role: fmt(value) for role, value in f.formats.items()} for name, f in plan.layers.items()},
        "dense": {name: {"output": fmt(f.output)} for name, f in plan.dense.items()},
        "micro_arena_bytes": minimum_arena(bytes(data), micro_arena_bytes(model)),
    }


def _signature_shape(tensor) -> list[int]:
    return list(tensor.shape_signature if tensor.shape_signature is not None else tensor.shape)


def model_of(network: Network) -> Model:
    """The network lowered to a model description, with tflrnn's metadata; ConfigError beyond 2 GiB."""
    model = lowering.lower(network)
    model.description = f"tflrnn {__version__}"
    records = [metadata.Record(ACTIVATION_NAMES[layer.activation], layer.weights.sha256(),
                               "int8" if layer.int8 is not None else None, layer.cell_clip or None)
               for layer in network.layers]
    dense = [metadata.Record(d.activation, metadata.dense_sha256(d.weights, d.bias)) for d in network.head]
    model.metadata = {
        "min_runtime_version": metadata.min_runtime_entry(model),
        metadata.METADATA_KEY: metadata.record(records, dense),
    }
    if writer.estimated_size(model) > MAX_FLATBUFFER_BYTES:
        raise ConfigError(f"the model would take {writer.estimated_size(model):,} bytes; a flatbuffer holds 2 GiB")
    return model


def describe_model(cell: RNNCell | list[RNNCell] | None = None, **options) -> Model:
    """The model description `build` writes: model_of(network_of(cell, **options))."""
    return model_of(network_of(cell, **options))


def network_of(
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
    bidirectional: bool | list[bool] = False,
    merge: str = "concat",
    head: list[Dense] | None = None,
    lowering: str | None = None,
    state: str = "carry",
    recurrence: str = "auto",
    steps_per_iteration: int = 1,
    calibration=None,
    io: str = "float",
    input_precision: str = "int16",
) -> Network:
    """The network `build` writes.

    `cell` gives units, activation and name (from the weights, with tanh and "rnn", when omitted); a list of
    cells makes a stack (MultiRNNCell), one op and one state per layer. `bidirectional` (for every layer, or a
    list with one flag per layer) makes a layer one BIDIRECTIONAL_SEQUENCE_RNN op: the cell runs forward and
    backward (named <name>/fw and <name>/bw), each with its own weights and state, and the layer's output is
    [fw | bw] (`merge="concat"`, Keras' default); the last layer may keep them apart (`merge="none"`).
    `weights`: one CellWeights per direction in op order (forward before backward), or None for seeded ones.
    Without weights, they are drawn as Keras SimpleRNN draws them: W glorot-uniform, R orthogonal, b zeros.
    `input_size` defaults to the first weights' input size, else the first cell's units.

    `quantize="int8"` stores W and R as symmetric per-tensor int8 (a hybrid op, version 2, about a quarter of the
    bytes); `asymmetric_inputs` also quantizes inputs asymmetrically at run time (version 3, runtime 2.3.0).
    `time_steps` may be "dynamic": the time axis is -1 in shape_signature and the model is resized to any length
    (allocated for 1 step until then). The batch cannot be dynamic: each state is a [batch, units] variable.
    `last_step` outputs only the final step [B,U] (Keras return_sequences=False; for a bidirectional layer the
    forward direction's last step and the backward one's first, as Keras does). `head`: Dense layers after that
    (FULLY_CONNECTED ops, float), e.g. a classifier's.

    `lowering="portable"` writes plain builtin ops instead of the fused ones, with the state carried in resource
    variables, an input and an output (`state="io"`), or none (`"zero"`); `recurrence` chooses its steps
    unrolled or in a WHILE loop ("auto": `portable.loops_by_default`), `steps_per_iteration` of them in each pass of
    the loop's body (more than 1 makes the steps a loop; they divide `time_steps`).

    `quantize="full-int8"`: every op in int8 (a basic RNN or GRU in the portable lowering, an LSTM as the fused op on
    its integer kernel), formats from `calibration` (a .npy / .npz path or an array of representative sequences
    [N, B, T, I], [N, T, B, I] time-major; quantization.py); `io="int8"` makes the signature's tensors int8 too
    (else float, quantized and dequantized at the edges: in the portable lowering the input to int16 for the first
    projection, TFLite's 16x8 FULLY_CONNECTED, unless `input_precision="int8"`).
    """
    if batch_size == "dynamic":
        raise ConfigError("the batch cannot be dynamic: each layer's hidden state is a [batch, units] variable "
                          "tensor, fixed when the model is built")
    lowering = _lowering_for(cell, weights, lowering)
    chosen = lowering_of(lowering)  # an unknown lowering is refused by name
    _check_modes(chosen, quantize, io, calibration, asymmetric_inputs, merge, state, recurrence, seed)
    if input_precision not in ("int16", "int8"):
        raise ConfigError(f"input_precision must be int16 or int8, got {input_precision!r}")
    if input_precision == "int8" and quantize != "full-int8":
        raise ConfigError("an int8 input (--input-precision int8) is a full-integer model's: add --quantize full-int8")
    hybrid, full_int8 = quantize == "int8", quantize == "full-int8"
    head = list(head or [])
    dynamic_time = time_steps == "dynamic"
    if dynamic_time:
        time_steps = 1
    cells, flags, given = _directions(cell, weights, bidirectional)
    _check_layout(cells, flags, hybrid, time_major, merge, head)
    expanded = []  # one cell per direction, with its stage
    for k, (c, flag) in enumerate(zip(cells, flags)):
        expanded += [(k, c.renamed(f"{c.name}/{d}")) for d in ("fw", "bw")] if flag else [(k, c)]
    layers = _layers(expanded, given, input_size, time_steps, batch_size, seed, hybrid, asymmetric_inputs)
    stages = []
    for k, flag in enumerate(flags):
        mine = [layer for (s, _), layer in zip(expanded, layers) if s == k]
        stages.append(tuple(mine) if flag else mine[0])
    _check_head(head, sum(x.weights.num_units for x in stage_layers(stages[-1])))

    _check_steps_per_iteration(steps_per_iteration, chosen, recurrence, time_steps, dynamic_time)
    loop = recurrence == "loop" or (recurrence == "auto" and chosen.loops and (
        steps_per_iteration > 1 or portable.auto_loops(stages, time_steps, dynamic_time, full_int8)))
    network = Network(stages, time_steps=time_steps, batch_size=batch_size, time_major=bool(time_major),
                      dynamic_time=dynamic_time, last_step=bool(last_step), merge=merge == "concat", head=head,
                      lowering=lowering, state=state, loop=loop, steps_per_iteration=steps_per_iteration)
    if full_int8:
        from . import quantization

        why = quantization.refusal(network)
        if why:
            raise ConfigError(why)
        sequences = quantization.sequences_of(calibration, network)
        network = quantization.calibrate(network, sequences, int8_io=io == "int8",
                                         int16_input=input_precision == "int16")
    return network


def _check_modes(chosen, quantize, io, calibration, asymmetric_inputs, merge, state, recurrence, seed) -> None:
    """The options' values, and the pairs of them that contradict each other or the lowering `chosen`."""
    if quantize not in (None, "none", "int8", "full-int8"):
        raise ConfigError(f"quantize must be int8, full-int8 (or none), got {quantize!r}")
    hybrid, full_int8 = quantize == "int8", quantize == "full-int8"
    if io not in ("float", "int8"):
        raise ConfigError(f"io must be float or int8, got {io!r}")
    if io == "int8" and not full_int8:
        raise ConfigError("an int8 interface (--io int8) needs a full-integer model: add --quantize full-int8")
    if full_int8 and not chosen.full_int8:
        raise ConfigError(f"--quantize full-int8 is not written for the {chosen.name} lowering")
    if full_int8 and calibration is None:
        raise ConfigError("--quantize full-int8 needs --calibration DATA (a .npy or .npz of representative input "
                          "sequences): int8 ranges guessed from seeded data would fit nobody's inputs")
    if calibration is not None and not full_int8:
        raise ConfigError("--calibration sets the ranges of a full-integer model: add --quantize full-int8")
    if asymmetric_inputs and not hybrid:
        raise ConfigError("asymmetric input quantization applies to hybrid models: add --quantize int8")
    if merge not in ("concat", "none"):
        raise ConfigError(f"merge must be concat or none, got {merge!r}")
    if state not in STATES:
        raise ConfigError(f"state must be one of {', '.join(STATES)}, got {state!r}")
    if recurrence not in RECURRENCES:
        raise ConfigError(f"recurrence must be one of {', '.join(RECURRENCES)}, got {recurrence!r}")
    if recurrence != "auto" and not chosen.loops:
        raise ConfigError(f"recurrence {recurrence!r} chooses how the portable lowering writes the steps (the fused "
                          "op runs its own loop): add --lowering portable")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")


def _check_steps_per_iteration(steps: int, chosen, recurrence: str, time_steps: int, dynamic_time: bool) -> None:
    """The steps a pass of the loop runs: a positive integer; more than 1 only for a loop of the portable lowering
    over a fixed number of steps that it divides (every pass runs as many)."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ConfigError(f"steps per iteration must be a positive integer, got {steps!r}")
    if steps == 1:
        return
    if not chosen.loops:
        raise ConfigError("--steps-per-iteration sets the steps in each pass of the portable lowering's WHILE loop "
                          "(the fused op runs its own loop): add --lowering portable")
    if recurrence == "unrolled":
        raise ConfigError("--steps-per-iteration sets the steps in each pass of a WHILE loop; --recurrence unrolled "
                          "writes every step as ops of its own")
    if dynamic_time:
        raise ConfigError("a dynamic time axis is looped over one step at a time: its length need not divide by "
                          f"{steps} (drop --steps-per-iteration)")
    if time_steps % steps:
        raise ConfigError(f"--steps-per-iteration {steps} does not divide the {time_steps} time steps: each pass of "
                          "the loop runs the same steps")


def _directions(cell, weights, bidirectional) -> tuple[list, list[bool], list]:
    """(one cell per stage, each stage's bidirectional flag, one weights or None per direction)."""
    cells = list(cell) if isinstance(cell, (list, tuple)) else [cell]
    flags = list(bidirectional) if isinstance(bidirectional, (list, tuple)) else [bool(bidirectional)] * len(cells)
    if len(cells) > MAX_LAYERS:
        raise ConfigError(f"{len(cells)} layers; tflrnn builds at most {MAX_LAYERS}")
    if len(flags) != len(cells):
        raise ConfigError(f"{len(flags)} bidirectional flags for {len(cells)} layers")
    directions = sum(2 if f else 1 for f in flags)
    given = list(weights) if isinstance(weights, (list, tuple)) else [weights] * (1 if weights is not None else 0)
    if len(given) == 1 and directions == 2 and flags[0]:
        given = [given[0], None]  # the forward direction's weights; the backward one's drawn
    if len(given) not in (0, directions):
        raise ConfigError(f"{directions} cells (directions) but {len(given)} sets of weights")
    given = given or [None] * directions
    if cells == [None]:
        if given[0] is None:
            raise ConfigError("give a cell (num_units) or weights")
        cells = [_cell_for(given[0])]
    return cells, flags, given


def _check_layout(cells, flags, hybrid, time_major, merge, head) -> None:
    """What the cells' kinds, the bidirectional layers and the head allow of the other options."""
    if hybrid and any(not kind_of(c).fused for c in cells):
        raise ConfigError("--quantize int8 stores the fused RNN op's weights as int8 (a hybrid op); a GRU has no "
                          "fused op: its int8 is --quantize full-int8 (every op int8, with --calibration)")
    if any(flags) and hybrid and time_major:
        # TFLite's hybrid time-major bidirectional kernel loops over the whole sequence once per step, and
        # crashed LiteRT 2.3 when tried here: tflrnn does not write a model the runtime cannot run.
        raise ConfigError("a hybrid (int8) bidirectional model must be batch-major: the runtime's time-major "
                          "hybrid bidirectional kernel is broken (it crashes LiteRT 2.3)")
    if merge == "none" and not flags[-1]:
        raise ConfigError("--merge chooses how a bidirectional layer's outputs come out; the last layer is not "
                          "bidirectional")
    if merge == "none" and head:
        raise ConfigError("a dense head takes one input: merge the bidirectional outputs (--merge concat)")


def _layers(expanded, given, input_size, time_steps, batch_size, seed, hybrid, asymmetric_inputs) -> list[Layer]:
    """One Layer per direction: its weights given (checked against the cell and the input before it), shared with
    an earlier layer of the same name (TfLiteRNNCell's reuse), or drawn from `seed`; quantized if `hybrid`."""
    layers, shared = [], {}
    size = input_size
    stage_input = {}  # stage -> its input size
    for k, ((stage, layer_cell), layer_weights) in enumerate(zip(expanded, given)):
        where = f"layer {stage} ('{layer_cell.name}'): " if len(expanded) > 1 else ""
        if stage in stage_input:
            size = stage_input[stage]  # the backward direction reads the same input as the forward one
        if layer_weights is not None:
            _check_weights(where, layer_cell, layer_weights, size, stage, single=len(expanded) == 1)
            size = layer_weights.input_size
        elif size is None:
            size = layer_cell.num_units
        stage_input.setdefault(stage, size)
        check_sizes(layer_cell.num_units, size, time_steps, batch_size, kind_of(layer_cell).gates)
        if layer_cell.name in shared:
            layer_weights = _reused(layer_cell, shared[layer_cell.name], size, layer_weights)
        elif layer_weights is None:
            layer_weights = layer_cell.initial_weights(size, seed + k)
        shared[layer_cell.name] = layer_weights
        int8 = None
        if hybrid and layer_weights.kind == "lstm":
            # each gate's W and R a tensor of the op's own, one scale each
            int8 = tuple(_gate_int8(layer_weights, role) for role in ("input_weights", "recurrent_weights"))
            layer_weights = type(layer_weights)(**{**layer_weights.roles(), **{
                role: np.concatenate([dequantize(q, s) for q, s in zip(layer_weights.gates(q_all), scales)])
                for role, (q_all, scales) in zip(("input_weights", "recurrent_weights"), int8)}})
        elif hybrid:
            int8 = (quantize_int8(layer_weights.input_weights), quantize_int8(layer_weights.recurrent_weights))
            # The model computes with the dequantized values: those are its weights (and their digest).
            layer_weights = CellWeights(dequantize(*int8[0]), dequantize(*int8[1]), layer_weights.bias)
        layers.append(Layer(layer_cell.name, layer_cell.fused_activation, layer_weights, int8,
                            bool(asymmetric_inputs), getattr(layer_cell, "cell_clip", None) or 0.0))
        size = sum(c.num_units for s, c in expanded if s == stage)  # the stage's output width, once complete
    return layers


def _gate_int8(weights, role: str) -> tuple[np.ndarray, np.ndarray]:
    """An LSTM role's rows as symmetric int8, each gate's rows with a scale of their own (the fused op takes each
    gate's W and R as a tensor): (q [4U, n], the four scales)."""
    pieces = [quantize_int8(rows) for rows in weights.gates(weights.roles()[role])]
    return np.concatenate([q for q, _ in pieces]), np.asarray([s for _, s in pieces], np.float64)


def _check_weights(where: str, cell, weights, size: int | None, stage: int, single: bool) -> None:
    """Given weights fit their cell (kind, units) and the values before them (`size`, None: not known yet)."""
    if weights.kind != cell.kind:
        raise ConfigError(f"{where}the cell is a {kind_of(cell).title} but the weights are a "
                          f"{kind_of(weights).title}'s" + (" (drop --cell: the weights say)" if single else ""))
    if weights.num_units != cell.num_units:
        raise ConfigError(f"{where}num_units={cell.num_units} does not match the weights: input_weights is "
                          f"{list(weights.input_weights.shape)} (units {weights.num_units})")
    if size is not None and size != weights.input_size:
        raise ConfigError(
            f"{where}input_size={size} does not match the weights: input_weights is "
            f"{list(weights.input_weights.shape)} (input size {weights.input_size})"
            if stage == 0 else f"{where}the previous layer's {size} outputs do not match its input_weights "
            f"{list(weights.input_weights.shape)}"
        )


def _check_head(head: list[Dense], width: int) -> None:
    """Each Dense layer's activation is one tflrnn writes and its kernel takes the `width` values before it."""
    for dense in head:
        if dense.activation not in DENSE_ACTIVATIONS:
            raise ConfigError(f"Dense '{dense.name}': activation {dense.activation!r} is not one tflrnn writes "
                              f"({', '.join(DENSE_ACTIVATIONS)})")
        if dense.weights.ndim != 2 or dense.weights.shape[1] != width or dense.bias.shape != (dense.units,):
            raise ConfigError(f"Dense '{dense.name}': kernel {list(dense.weights.shape)} and bias "
                              f"{list(dense.bias.shape)} do not take the {width} values before it")
        width = dense.units


def _lowering_for(cell, weights, lowering: str | None) -> str:
    """The lowering asked for, or the default: fused where every cell kind has a fused op (the basic cell, the
    LSTM), else portable (a GRU); a fused lowering asked for a kind without one is refused with the reason."""
    cells = cell if isinstance(cell, (list, tuple)) else [cell]
    given = weights if isinstance(weights, (list, tuple)) else [weights]
    kinds = [kind_of(x) for x in (*cells, *given) if x is not None]
    unfused = next((k for k in kinds if not k.fused), None)
    if lowering is None:
        return "fused" if unfused is None else "portable"
    if lowering == "fused" and unfused is not None:
        raise ConfigError(f"--lowering fused: TFLite has no builtin {unfused.title} op (the fused ops run the basic "
                          f"RNN and LSTM cells); a {unfused.title} is written with plain builtin ops: --lowering "
                          "portable, its default")
    return lowering


def _cell_for(weights):
    """The cell the weights imply: their kind, their units, tflrnn's default name."""
    return kind_of(weights).cell(weights.num_units, **({"reset_after": weights.reset_after}
                                                         if hasattr(weights, "reset_after") else {}))


def _reused(cell: RNNCell, existing: CellWeights, input_size: int, weights: CellWeights | None) -> CellWeights:
    """TfLiteRNNCell's variable sharing: a second layer of the same name reuses the first one's variables, only
    with reuse=True and matching shapes, and with the same errors TensorFlow's variable scopes gave."""
    variable = f"{cell.name}/input_weights"
    if not cell.reuse:
        raise ConfigError(
            f"Variable {variable} already exists, disallowed. Did you mean to set reuse=True? (two layers are "
            f"named '{cell.name}')"
        )
    if kind_of(cell).name != existing.kind or getattr(cell, "reset_after", None) != getattr(
            existing, "reset_after", None):
        raise ConfigError(f"Trying to share variable {variable} of a {kind_of(existing).title} with a "
                          f"{kind_of(cell).title} (two layers named '{cell.name}' of different kinds)")
    shape = (cell.num_units, input_size)
    if (existing.num_units, existing.input_size) != shape:
        raise ConfigError(
            f"Trying to share variable {variable}, but specified shape "
            f"{list(existing.input_weights.shape[:1]) + [input_size]} and found shape "
            f"{list(existing.input_weights.shape)}."
        )
    if weights is not None and not weights.equals(existing):
        raise ConfigError(f"layers named '{cell.name}' share variables but were given different weights")
    return existing


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
