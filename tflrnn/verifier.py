"""verify(): prove a fused-RNN model right, structurally and numerically.

Structure is read through the project's reader and checked against what the runtime needs but does not check
itself (it silently defaults a bad activation or missing options). Numbers come from the LiteRT interpreter on
seeded inputs and are compared with the numpy reference: a first invoke from the zero state, several consecutive
invokes that must carry the state, and an invoke after reset_all_variables() that must equal the first one.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import reference
from .reference import DEFAULT_ATOL, DEFAULT_RTOL, DEFAULT_SEQUENCES, MAX_VERIFY_MULTIPLY_ADDS, MAX_VERIFY_VALUES
from .builder import MAX_TENSOR_BYTES, sha256
from .metadata import METADATA_KEY, dense_sha256, min_runtime_version
from .metadata import parse as parse_metadata
from .cell import ACTIVATION_NAMES, CellWeights, dequantize, quantize_int8
from .errors import ConfigError, TflrnnError
from .files import read_bytes
from .lowering.fused import (
    SIGNATURE_INPUT,
    SIGNATURE_KEY,
    SIGNATURE_OUTPUT,
    DENSE_FOLLOWERS,
    FusedGraph as Network,
    RNNGraph,
    dense_activation,
    dense_arrays,
    dense_layers,
    find_network,
    last_step_slice,
)
from .model import SCHEMA_VERSION, Activation, BuiltinOperator, BuiltinOptions, FullyConnectedOptions, op_name
from .reader import read
from .version import __version__
from .runtime import RUNTIMES
from .sources import detect_format
from .weights import load_weights

DYNAMIC_LENGTHS = (1, 4, 9)  # lengths a dynamic-time model is resized to, besides its allocated one



@dataclass
class Check:
    name: str
    passed: bool
    detail: str
    max_abs_error: float | None = None
    max_rel_error: float | None = None
    runtime: str | None = None  # the interpreter a numeric check ran on


@dataclass
class VerifyReport:
    model: str
    bytes: int
    sha256: str
    settings: dict
    runtimes: list[dict] = field(default_factory=list)
    against: dict | None = None
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # facts worth a look that fail no check

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def to_dict(self) -> dict:
        return {
            "tool": {"name": "tflrnn", "version": __version__},
            "model": self.model,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "passed": self.passed,
            "settings": self.settings,
            "runtimes": self.runtimes,
            "against": self.against,
            "checks": [asdict(c) for c in self.checks],
            "notes": self.notes,
        }


def verify(
    model,
    *,
    weights: CellWeights | str | Path | None = None,
    against: str | Path | None = None,
    format: str | None = None,
    layer: str | None = None,
    scope: str | None = None,
    layer_index: int | None = None,
    runtime: str = "litert",
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    sequences: int = DEFAULT_SEQUENCES,
    seed: int = 0,
) -> VerifyReport:
    """Verify a model given as a path or as bytes. Raises TflrnnError when the input is unusable.

    `weights` (CellWeights or a file): also check the model holds exactly these weights. `against`: also run
    the source model (Keras, ONNX, PyTorch or a TF checkpoint) in its own framework on the same inputs and
    compare. `format`, `layer`, `scope` and `layer_index` pick from those files as for building.
    `runtime`: "litert", "tensorflow" or "all".
    """
    if not (0 <= atol < math.inf and 0 <= rtol < math.inf):
        raise ConfigError(f"atol and rtol must be finite and non-negative, got atol={atol}, rtol={rtol}")
    if isinstance(sequences, bool) or not isinstance(sequences, int) or not 2 <= sequences <= 1000:
        raise ConfigError(f"sequences must be an integer from 2 to 1000 (state is checked across them), got {sequences}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    runtimes = list(RUNTIMES) if runtime == "all" else [runtime]
    if any(r not in RUNTIMES for r in runtimes):
        raise ConfigError(f"unknown runtime '{runtime}'; one of {', '.join(RUNTIMES)}, all")
    if isinstance(model, (bytes, bytearray, memoryview)):
        data, label = bytes(model), "<bytes>"
    else:
        data, label = read_bytes(model, "model file"), str(Path(model))
    description = read(data)
    network = find_network(description)
    layers = network.directions  # each direction of each RNN op, in op order
    for g in layers:
        _check_verifiable_size(g)
    _check_verifiable_time(network, sequences)
    whole = len(layers) > 1 or _has_dense(network)  # --against runs the whole source model
    if against is not None and whole and any(g.hybrid for g in layers):
        raise ConfigError("--against a hybrid (int8) stack, bidirectional model or classifier is not supported: its int8 "
                          "rounding compounds through the layers; verify the float model against the source")
    whole_sources = ("safetensors", "torch", "keras", "onnx", "checkpoint")
    if against is not None and whole and (format or detect_format(Path(against))) not in whole_sources:
        kind = "bidirectional" if network.bidirectional else "a classifier" if len(layers) == 1 else \
            f"a stack of {len(layers)} layers"
        raise ConfigError(f"--against compares a stack or bidirectional model with a PyTorch nn.RNN, a Keras model, "
                          f"ONNX RNN nodes or a TF checkpoint's stack only; this model is {kind}")
    if weights is not None:
        if isinstance(weights, CellWeights):
            weights = [weights]
        if isinstance(weights, (list, tuple)):  # one per layer (or forward, backward), in the model's op order
            if len(weights) != len(layers):
                raise ConfigError(f"{len(weights)} sets of weights for a model of {len(layers)} layers")
            weights = list(weights)
        elif len(layers) > 1 and (format or detect_format(Path(weights))) in ("safetensors", "torch", "keras", "onnx",
                                                                               "checkpoint"):
            # A whole PyTorch nn.RNN or Keras model: its cells in order, matched to the model's layers by position.
            from .sources import import_cells

            weights = [c.weights for c in import_cells(weights, format=format)[0]]
            if len(weights) != len(layers):
                raise ConfigError(f"the weights hold {len(weights)} cells; the model has {len(layers)} layers")
        else:
            # Each layer's weights are read under its cell name (a single cell's under --scope when given).
            names = [scope] if scope and len(layers) == 1 else [g.name for g in layers]
            weights = [load_weights(weights, name, format=format, layer=layer, layer_index=layer_index)
                       for name in names]

    report = VerifyReport(
        model=label,
        bytes=len(data),
        sha256=sha256(data),
        settings={"atol": atol, "rtol": rtol, "sequences": sequences, "seed": seed, "runtime": runtime},
    )
    usable = [_usable_weights(g) for g in layers]  # read (and dequantized) once, for every check that needs them
    report.checks += _structure_checks(network, [w for w, _ in usable])
    model_weights = [w for w, _ in usable]
    why_not = next((f"layer {k}: {reason}" if len(layers) > 1 else reason
                    for k, (_, reason) in enumerate(usable) if reason), None)
    float_weights = None
    if weights is not None:
        if any(g.hybrid for g in layers) and all(
                w is not None and tuple(g.input_weights.shape) == w.input_weights.shape for g, w in zip(layers, weights)):
            float_weights = weights  # also judge the hybrid model against the float model they came from
            weights = [_as_stored(w) if g.hybrid else w for g, w in zip(layers, weights)]
        report.checks.append(_weights_match(model_weights, weights, why_not, float_weights is not None))
    if why_not is None:
        why_not = _why_not_runnable(report.checks)
    if why_not is not None:
        report.checks.append(Check("numeric", False, f"not run: {why_not}"))
        return report

    rng = np.random.default_rng(seed)
    inputs = [rng.standard_normal(layers[0].input.shape).astype(np.float32) for _ in range(sequences)]
    runs = {}
    for name in runtimes:
        checks, outputs = _numeric_checks(data, network, model_weights, report, inputs, atol, rtol, name,
                                          float_weights)
        report.checks += checks
        if outputs is not None:
            against_inputs, runs[name] = outputs
    if against is not None and runs:
        report.checks += _against_checks(layers, model_weights, against_inputs, runs, report, atol, rtol, whole,
                                         _has_dense(network), against=against,
                                         format=format, layer=layer, scope=scope, layer_index=layer_index)
    return report


def _as_stored(w: CellWeights) -> CellWeights:
    """Float weights as a hybrid model stores them: W and R through int8 and back."""
    return CellWeights(dequantize(*quantize_int8(w.input_weights)), dequantize(*quantize_int8(w.recurrent_weights)),
                       w.bias)


def _has_dense(network: Network) -> bool:
    return any(op.code == BuiltinOperator.FULLY_CONNECTED for op in network.head)


def _against_checks(layers: list[RNNGraph], model_weights: list, inputs, runs: dict, report: VerifyReport, atol,
                    rtol, whole: bool, final: bool, **source) -> list[Check]:
    from .against import run_source

    g = layers[0]
    path = source.pop("against")
    shapes = [tuple(layer.input_weights.shape) for layer in layers]
    result = run_source(path, inputs, activation=ACTIVATION_NAMES.get(g.options.activation),
                        time_major=g.time_major, whole=whole, shapes=shapes, final=final, **source)
    report.against = {
        "source": str(path),
        "format": result.source.format,
        "reference": result.reference,
        "framework": result.framework,
    }
    report.notes += _declared_input_notes(g, result.source.declared)
    # The scale of each step's terms along the source's own trajectory, for the rounding allowance. (A stack or
    # both directions compound their rounding: there, the outputs' own magnitude plus one stands in.)
    # A hybrid cell also rounds its weights (against the source's float ones) and its inputs each step.
    scales, extras, state = [], [], np.zeros(g.hidden_state.shape)
    for x, y in zip(inputs, result.outputs):
        if whole:
            scales.append(np.abs(y.astype(np.float64)) + 1.0)
            extras.append(0.0)
            continue
        previous = _previous_states(y, state, g.time_major)
        scales.append(reference.step(x, result.source.weights, g.options.activation, previous,
                                     time_major=g.time_major)[2])
        extra = 0.0
        if g.hybrid:
            extra = (reference.input_quantization_error(x, previous, model_weights[0],
                                                        g.options.asymmetric_quantize_inputs)
                     + reference.weight_quantization_error(x, previous, result.source.weights))
        extras.append(extra)
        state = _last_step(y, g.time_major)
    checks = []
    for name, outputs in runs.items():
        parts = [_compare(y, expected.astype(np.float64), None, scale, None, atol, rtol, extra)
                 for y, expected, scale, extra in zip(outputs, result.outputs, scales, extras)]
        checks.append(_numeric_check(
            f"against.{result.source.format}", Comparison.worst(parts), atol, rtol,
            f"{result.reference} on {result.framework}, {len(inputs)} invokes with the state chained",
            runtime=name,
        ))
    return checks


def _declared_input_notes(g: RNNGraph, declared) -> list[str]:
    """Where the model's fixed time steps, batch or layout differ from what the source model declares: not a
    failure (a streaming model built with --time-steps 1 on purpose is legitimate), but worth a look."""
    if declared is None:
        return []
    shape, signature = list(g.input.shape), g.input.shape_signature
    time_axis, batch_axis = (0, 1) if g.time_major else (1, 0)
    dynamic = signature is not None and signature[time_axis] == -1
    notes = []
    if isinstance(declared.time_steps, int) and not dynamic and shape[time_axis] != declared.time_steps:
        notes.append(f"{declared.origin} declares {declared.time_steps} time steps; this model takes "
                     f"{shape[time_axis]} per invoke")
    if declared.batch_size is not None and shape[batch_axis] != declared.batch_size:
        notes.append(f"{declared.origin} declares batch {declared.batch_size}; this model's batch is "
                     f"{shape[batch_axis]}")
    if declared.time_major is not None and declared.time_major != g.time_major:
        layouts = {True: "time-major [T, B, I]", False: "batch-major [B, T, I]"}
        notes.append(f"{declared.origin} is {layouts[declared.time_major]}; this model is {layouts[g.time_major]}")
    return notes


def _check_verifiable_size(g: RNNGraph) -> None:
    """A valid model can still be too large for verify's float64 reference, which holds several copies of every
    sequence; refuse it up front rather than run out of memory. (Larger than 2 GiB is the model's fault: the
    shapes check reports that.)"""
    values = max(float(np.prod(g.input.shape, dtype=np.float64)), float(np.prod(g.output.shape, dtype=np.float64)))
    if MAX_VERIFY_VALUES < values <= MAX_TENSOR_BYTES / 4:
        raise ConfigError(
            f"the model's input/output tensors hold {values:,.0f} values per invoke; verify's reference handles at "
            f"most {MAX_VERIFY_VALUES:,} (build a copy with fewer time steps or a smaller batch to verify the weights)"
        )


def _check_verifiable_time(network: Network, sequences: int) -> None:
    """Refuse a model whose reference comparisons would run for minutes: each invoke compared costs two float64
    products per direction per step (the step and the scale of its terms), 2*U*(I+U) multiply-adds per batch row,
    and as much per Dense layer; a dynamic-time model is compared at each of its lengths."""
    per_step = 0.0
    for g in network.directions:
        if len(g.input.shape) != 3 or len(g.input_weights.shape) != 2 or \
                4 * float(np.prod(g.input.shape, dtype=np.float64)) > MAX_TENSOR_BYTES:
            return  # malformed, or beyond 2 GiB: the shapes check reports it
        units, size = (float(d) for d in g.input_weights.shape)
        per_step += 2 * units * (size + units)
    for op, _ in dense_layers(network):
        kernel = network.tensor(op.inputs[1]).shape if len(op.inputs) > 1 and 0 <= op.inputs[1] < len(
            network.subgraph.tensors) else ()
        per_step += 2 * float(np.prod(kernel, dtype=np.float64))
    g = network.directions[0]
    time_axis = 0 if g.time_major else 1
    signature = g.input.shape_signature
    dynamic = signature is not None and len(signature) == 3 and signature[time_axis] == -1
    lengths = set([g.input.shape[time_axis], *DYNAMIC_LENGTHS]) if dynamic else {g.input.shape[time_axis]}
    total = per_step * g.input.shape[1 - time_axis] * float(sum(lengths)) * (sequences + 1)
    if total > MAX_VERIFY_MULTIPLY_ADDS:
        raise ConfigError(
            f"verify's reference would need about {total:.2g} float64 multiply-adds for {sequences + 1} invokes of "
            f"this model; its budget is {MAX_VERIFY_MULTIPLY_ADDS:.2g}: verify a copy built with fewer time steps or "
            "a smaller batch, or pass --sequences 2"
        )


# Structure ------------------------------------------------------------------------------------------------------


def _structure_checks(network: Network, weights: list) -> list[Check]:
    model = network.model
    checks = [Check("model.version", model.version == SCHEMA_VERSION, f"schema version {model.version}")]
    several = len(network.rnn_ops) > 1
    for k, op in enumerate(network.rnn_ops):
        directions = network.directions_of(op)
        for g in directions:
            width = sum(d.input_weights.shape[0] for d in directions if len(d.input_weights.shape) == 2)
            for check in _layer_checks(g, output_width=width if g.columns else None):
                if g.backward and check.name.startswith("op."):
                    continue  # one op: its code, version and options are checked once
                # One set of checks per layer and direction: [1], [fw], [1.bw]
                tag = ".".join(([str(k)] if several else []) +
                               ([g.direction] if g.direction and not check.name.startswith("op.") else []))
                if tag:
                    where = " ".join(([f"layer {k}"] if several else []) + ([g.direction] if "." in tag or
                                                                            not several and g.direction else []))
                    check.name, check.detail = f"{check.name}[{tag}]", f"{where}: {check.detail}"
                checks.append(check)
        if len(directions) == 2:
            tag, where = (f"[{k}]", f"layer {k}: ") if several else ("", "")
            checks.append(Check(f"op.aux_inputs{tag}", op.inputs[9:] == [-1, -1, -1],
                                f"{where}aux inputs {op.inputs[9:]} (unused: all -1)"))
            prefixes = [d.name or "" for d in directions]
            swapped = prefixes[0].endswith("/bw") or prefixes[1].endswith("/fw")
            checks.append(Check(f"op.directions{tag}", not swapped,
                                f"{where}forward slots hold '{prefixes[0]}', backward slots '{prefixes[1]}'"
                                + ("; they are swapped" if swapped else "")))
    head_checks, ends = _head_checks(network)
    checks += head_checks
    checks.append(_signature_check(network, ends))
    checks += _metadata_checks(network, weights)
    return checks


def _head_checks(network: Network) -> tuple[list[Check], list[int]]:
    """The ops after the RNN ops, each as tflrnn writes them: the last step (a STRIDED_SLICE per direction, then a
    CONCATENATION of two), then Dense layers. Returns the checks and the tensors the model should output."""
    ends, checks = network.sequence_outputs, []
    head = list(network.head)
    slices = []
    while head and head[0].code == BuiltinOperator.STRIDED_SLICE:
        slices.append(head.pop(0))
    if slices:
        concat = head.pop(0) if head and head[0].code == BuiltinOperator.CONCATENATION else None
        check, ends = _last_step_check(network, slices, concat)
        checks.append(check)
    index = 0
    while head:
        op = head.pop(0)
        following = head.pop(0) if head and head[0].code in DENSE_FOLLOWERS else None
        check, ends = _dense_check(network, index, op, following, ends)
        checks.append(check)
        index += 1
    return checks, ends


def _op_problems(op, code: int, version: int, inputs: int, tensors) -> list[str]:
    problems = []
    if op.builtin_code != code or op.deprecated_builtin_code != code:
        problems.append(f"{op_name(code)}: builtin_code {op.builtin_code}, deprecated_builtin_code "
                        f"{op.deprecated_builtin_code}")
    if op.version != version:
        problems.append(f"{op_name(code)} version {op.version}, expected {version}")
    if len(op.inputs) != inputs or len(op.outputs) != 1 or any(not 0 <= i < len(tensors) for i in op.inputs):
        problems.append(f"{op_name(code)} has inputs {op.inputs} and outputs {op.outputs}, expected {inputs} and 1")
    return problems


def _plain_float(tensor, shape) -> str | None:
    """Why `tensor` is not a plain float32 activation of `shape` (None when it is)."""
    if tuple(tensor.shape) != tuple(shape) or tensor.dtype != "float32" or tensor.data is not None or tensor.is_variable:
        return f"'{tensor.name}' {list(tensor.shape)} {tensor.dtype}, expected a plain float32 {list(shape)}"
    return None


def _last_step_check(network: Network, slices: list, concat) -> tuple[Check, list[int]]:
    tensors = network.subgraph.tensors
    final = network.rnn_ops[-1]
    directions = network.directions_of(final)
    g = directions[0]
    problems = []
    if len(slices) != len(final.outputs) or g.columns:
        problems.append(f"{len(slices)} STRIDED_SLICE ops for the final RNN op's {len(final.outputs)} outputs"
                        + ("; a merged bidirectional output cannot be sliced per direction (its backward half's "
                           "final state is at t=0)" if g.columns else ""))
        return Check("last_step", False, "; ".join(problems)), [op.outputs[0] for op in slices if op.outputs]
    outs = []
    for d, (op, source) in enumerate(zip(slices, directions if len(slices) == 2 else directions[:1])):
        problems += _op_problems(op, BuiltinOperator.STRIDED_SLICE, 1, 4, tensors)
        if problems:
            break
        backward = d == 1
        begin, options = last_step_slice(g.time_major, backward=backward)
        if op.inputs[0] != final.outputs[d]:
            problems.append(f"STRIDED_SLICE {d} does not slice the final RNN op's output {d}")
        for name, index, values in zip(("begin", "end", "strides"), op.inputs[1:], (begin, [0, 0, 0], [1, 1, 1])):
            tensor = tensors[index]
            if tensor.data is None or tensor.dtype != "int32" or list(np.ravel(tensor.data)) != values:
                shown = None if tensor.data is None else list(np.ravel(tensor.data))
                problems.append(f"{name} {shown} ({tensor.dtype}), expected constant int32 {values}"
                                + (" (the backward direction's final state is its output at t=0)" if backward and
                                   name == "begin" else ""))
        if op.options != options:
            problems.append(f"options {op.options}, expected {options}")
        units = source.input_weights.shape[0] if len(source.input_weights.shape) == 2 else -1
        if op.outputs and 0 <= op.outputs[0] < len(tensors):
            problem = _plain_float(tensors[op.outputs[0]], (_batch(source), units))
            problems += [problem] if problem else []
        outs.append(op.outputs[0] if op.outputs else -1)
    ends = outs
    if concat is not None and not problems:
        problems += _op_problems(concat, BuiltinOperator.CONCATENATION, 1, 2, tensors)
        if not problems:
            rank_axes = (-1, 1)
            if concat.inputs != outs:
                problems.append(f"CONCATENATION joins {concat.inputs}, expected the slices {outs} (forward first)")
            if concat.options is None or concat.options.axis not in rank_axes or concat.options.activation != 0:
                problems.append(f"CONCATENATION options {concat.options}, expected axis -1 and no activation")
            width = sum(tensors[i].shape[-1] for i in outs)
            problem = _plain_float(tensors[concat.outputs[0]], (_batch(g), width))
            problems += [problem] if problem else []
            ends = [concat.outputs[0]]
    if problems:
        return Check("last_step", False, "; ".join(problems)), ends
    shape = list(tensors[ends[0]].shape)
    what = ("forward at the last step and backward at t=0, concatenated" if concat is not None else
            "forward at the last step and backward at t=0" if len(outs) == 2 else "the final step")
    return Check("last_step", True, f"STRIDED_SLICE takes {what}: output {shape}"), ends


def _batch(g: RNNGraph) -> int:
    return g.hidden_state.shape[0] if g.hidden_state.shape else -1  # -1: a malformed state, reported elsewhere


def _dense_check(network: Network, index: int, op, following, ends: list[int]) -> tuple[Check, list[int]]:
    """A FULLY_CONNECTED (and the activation op after it) as a Keras Dense layer."""
    tensors = network.subgraph.tensors
    name = f"dense[{index}]"
    sequence = bool(op.inputs) and 0 <= op.inputs[0] < len(tensors) and len(tensors[op.inputs[0]].shape) == 3
    problems = _op_problems(op, BuiltinOperator.FULLY_CONNECTED, 5 if sequence else 1, 3, tensors)
    if op.code != BuiltinOperator.FULLY_CONNECTED:
        return Check(name, False, f"{op_name(op.code)} where a FULLY_CONNECTED was expected"), op.outputs[:1]
    if len(op.inputs) != 3 or len(op.outputs) != 1 or any(not 0 <= i < len(tensors) for i in op.inputs):
        return Check(name, False, "; ".join(problems)), op.outputs[:1]
    x, w, b = (tensors[i] for i in op.inputs)
    out = tensors[op.outputs[0]]
    if op.inputs[0] != (ends[0] if len(ends) == 1 else None):
        problems.append(f"it takes tensor {op.inputs[0]}, not the output before it ({ends})")
    if w.data is None or w.dtype != "float32" or len(w.shape) != 2 or x.shape[-1:] != w.shape[1:]:
        problems.append(f"kernel '{w.name}' {list(w.shape)} {w.dtype}, expected constant float32 [units, "
                        f"{x.shape[-1] if x.shape else '?'}]")
    units = w.shape[0] if len(w.shape) == 2 else -1
    if b.data is None or b.dtype != "float32" or tuple(b.shape) != (units,):
        problems.append(f"bias '{b.name}' {list(b.shape)} {b.dtype}, expected constant float32 [{units}]")
    options = op.options
    if not isinstance(options, FullyConnectedOptions):
        problems.append(f"builtin_options type {op.options_type}, expected FullyConnectedOptions (8)")
    else:
        if options.activation not in (Activation.NONE, Activation.RELU, Activation.RELU6, Activation.RELU_N1_TO_1):
            problems.append(f"fused activation {options.activation}: FULLY_CONNECTED's float kernel takes only "
                            "none, relu, relu_n1_to_1 and relu6 (the runtime refuses the model)")
        if options.weights_format != 0 or options.keep_num_dims != sequence:
            problems.append(f"options {options}, expected weights_format 0 and keep_num_dims {sequence}")
    problem = _plain_float(out, (*x.shape[:-1], units))
    problems += [problem] if problem else []
    activation = dense_activation(op, following)
    end = op.outputs[0]
    if following is not None:
        problems += _op_problems(following, following.code, 1, 1, tensors)
        if following.inputs[:1] != [op.outputs[0]]:
            problems.append(f"{op_name(following.code)} does not take the FULLY_CONNECTED output")
        if following.code == BuiltinOperator.SOFTMAX:
            beta = getattr(following.options, "beta", None)
            if beta is None or not (0 < beta < math.inf):
                problems.append(f"SOFTMAX beta {beta}, expected a positive finite value")
        if following.outputs and 0 <= following.outputs[0] < len(tensors):
            problem = _plain_float(tensors[following.outputs[0]], out.shape)
            problems += [problem] if problem else []
            end = following.outputs[0]
    if problems:
        return Check(name, False, f"'{w.name.rpartition('/')[0]}': " + "; ".join(problems)), [end]
    return Check(name, True, f"'{w.name.rpartition('/')[0]}': FULLY_CONNECTED {list(x.shape)} -> {list(out.shape)}, "
                             f"activation {activation}"), [end]


_OPTIONS_OF = {  # the options each RNN op must carry
    BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_RNN: BuiltinOptions.SequenceRNNOptions,
    BuiltinOperator.BIDIRECTIONAL_SEQUENCE_RNN: BuiltinOptions.BidirectionalSequenceRNNOptions,
}


def _layer_checks(g: RNNGraph, output_width: int | None = None) -> list[Check]:
    op = g.operator
    code = op.code if op.code in _OPTIONS_OF else BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_RNN
    checks = [
        Check(
            "op.code",
            op.builtin_code == code and op.deprecated_builtin_code == code,
            f"builtin_code {op.builtin_code}, deprecated_builtin_code {op.deprecated_builtin_code} "
            f"(both must be {int(code)})",
        ),
    ]
    expected_version = _expected_op_version(g)
    checks.append(
        Check("op.version", op.version == expected_version, f"version {op.version}, expected {expected_version}")
    )
    checks.append(_options_check(g, _OPTIONS_OF[code]))
    names = {t.name.rpartition("/")[0] for t in (g.input_weights, g.recurrent_weights, g.bias, g.hidden_state)}
    checks.append(Check("tensors.names", len(names) == 1,
                        f"W, R, b and the state are named under {sorted(names)}"
                        + ("" if len(names) == 1 else ": one layer's tensors mixed with another's")))
    checks.append(_shapes_check(g, output_width))
    state = g.hidden_state
    checks.append(
        Check(
            "state.variable",
            state.is_variable and state.data is None,
            f"'{state.name}' is_variable={state.is_variable}, "
            + ("no buffer data" if state.data is None else f"{state.nbytes} bytes of buffer data (runtime refuses)"),
        )
    )
    return checks


def _expected_op_version(g: RNNGraph) -> int:
    if g.input_weights.dtype == "int8":
        return 3 if g.options.asymmetric_quantize_inputs else 2
    return 1


def _options_check(g: RNNGraph, expected: BuiltinOptions) -> Check:
    op = g.operator
    if op.options_type != expected or op.options is None:
        return Check(
            "op.options",
            False,
            f"builtin_options type {op.options_type}, expected {expected.name} "
            f"({int(expected)}); the runtime would silently use batch-major and no activation",
        )
    act = op.options.activation
    valid = act in Activation._value2member_map_
    detail = (
        f"activation {Activation(act).name if valid else act}, time_major {bool(op.options.time_major)}, "
        f"asymmetric_quantize_inputs {bool(op.options.asymmetric_quantize_inputs)}"
        + (f", merge_outputs {bool(op.options.merge_outputs)}" if hasattr(op.options, "merge_outputs") else "")
    )
    if not valid:
        detail += "; not an ActivationFunctionType (the runtime would silently apply none)"
    return Check("op.options", valid, detail)


def _shapes_check(g: RNNGraph, output_width: int | None = None) -> Check:
    w, r, b, h, x, y = g.input_weights, g.recurrent_weights, g.bias, g.hidden_state, g.input, g.output
    problems = []
    if len(w.shape) != 2:
        return Check("tensors.shapes", False, f"'{w.name}' has shape {list(w.shape)}, expected [units, input_size]")
    units, input_size = w.shape
    if len(x.shape) != 3:
        return Check("tensors.shapes", False, f"'{x.name}' has shape {list(x.shape)}, expected rank 3")
    batch, steps = (x.shape[1], x.shape[0]) if g.time_major else (x.shape[0], x.shape[1])
    lead = (steps, batch) if g.time_major else (batch, steps)
    expected = {
        x.name: (x, (*lead, input_size)),
        r.name: (r, (units, units)),
        b.name: (b, (units,)),
        h.name: (h, (batch, units)),
        y.name: (y, (*lead, output_width or units)),
    }
    for name, (tensor, shape) in expected.items():
        if tuple(tensor.shape) != shape:
            problems.append(f"'{name}' has shape {list(tensor.shape)}, expected {list(shape)}")
    if min(units, input_size, batch, steps) < 1:
        problems.append(f"non-positive dimension in {list(x.shape)} / {list(w.shape)}")
    for tensor in (x, y):
        size = 4 * int(np.prod(tensor.shape, dtype=np.float64))  # float64: a hostile shape must not overflow
        if size > MAX_TENSOR_BYTES:
            problems.append(f"'{tensor.name}' {list(tensor.shape)} would take {size / 2**30:.1f} GiB (limit 2 GiB)")
        if tensor.data is not None or tensor.is_variable:
            # The runtime would write the sequence into the model's own bytes.
            problems.append(f"'{tensor.name}' is an input/output but has buffer data or is a variable")
    time_axis, batch_axis = (0, 1) if g.time_major else (1, 0)
    for tensor in (x, w, r, b, h, y):
        signature = tensor.shape_signature
        if signature is None or tuple(signature) == tuple(tensor.shape):
            continue
        dynamic = [axis for axis, (s, n) in enumerate(zip(signature, tensor.shape)) if s != n]
        sequence = tensor is x or tensor is y
        if sequence and dynamic == [time_axis] and signature[time_axis] == -1:
            continue  # dynamic time: resized per invoke
        if (sequence and batch_axis in dynamic) or (tensor is h and 0 in dynamic):
            problems.append(f"'{tensor.name}' has shape_signature {list(signature)}: a dynamic batch is not supported "
                            "(each state is a [batch, units] variable fixed in the model)")
        else:
            problems.append(f"'{tensor.name}' has shape_signature {list(signature)}: only the time axis of the "
                            "input and output may be dynamic")
    for tensor in (x, b, h, y):
        if tensor.dtype != "float32":
            problems.append(f"'{tensor.name}' is {tensor.dtype}, expected float32")
    for tensor in (w, r):
        if tensor.dtype not in ("float32", "int8"):
            problems.append(f"'{tensor.name}' is {tensor.dtype}, expected float32 or int8")
    if problems:
        return Check("tensors.shapes", False, "; ".join(problems))
    layout = "time-major" if g.time_major else "batch-major"
    if x.shape_signature is not None and -1 in x.shape_signature:
        layout += ", dynamic time"
    return Check(
        "tensors.shapes",
        True,
        f"x {list(x.shape)} ({layout}), W {list(w.shape)}, R {list(r.shape)}, b {list(b.shape)}, "
        f"state {list(h.shape)}, output {list(y.shape)}",
    )


def _signature_check(network: Network, ends: list[int]) -> Check:
    g = network.directions[0]
    x_index = g.operator.inputs[0]
    if len(ends) == 2:
        outputs = dict(zip((f"{SIGNATURE_OUTPUT}_fw", f"{SIGNATURE_OUTPUT}_bw"), ends))
    else:
        outputs = {SIGNATURE_OUTPUT: ends[0] if ends else -1}
    signature = next((s for s in network.model.signatures if s.key == SIGNATURE_KEY), None)
    subgraph_index = next(i for i, graph in enumerate(network.model.subgraphs) if graph is network.subgraph)
    problems = []
    if signature is None:
        problems.append(f"no '{SIGNATURE_KEY}' signature")
    else:
        if signature.subgraph != subgraph_index:
            problems.append(f"it names subgraph {signature.subgraph}, but the RNN is in subgraph {subgraph_index}")
        if signature.inputs != {SIGNATURE_INPUT: x_index}:
            problems.append(f"inputs {signature.inputs}, expected {{'{SIGNATURE_INPUT}': {x_index}}}")
        if signature.outputs != outputs:
            problems.append(f"outputs {signature.outputs}, expected {outputs}")
    if network.subgraph.inputs != [x_index] or network.subgraph.outputs != list(outputs.values()):
        problems.append(f"subgraph inputs {network.subgraph.inputs} and outputs {network.subgraph.outputs}, expected "
                        f"[{x_index}] and {list(outputs.values())}")
    if problems:
        return Check("signature", False, "; ".join(problems))
    shown = ", ".join(f"{name} -> tensor {index}" for name, index in outputs.items())
    return Check("signature", True, f"'{SIGNATURE_KEY}': input -> tensor {x_index}, {shown}")


def _metadata_checks(network: Network, layer_weights: list) -> list[Check]:
    layers = network.directions
    metadata = network.model.metadata
    expected = min_runtime_version(network.model)
    found = metadata.get("min_runtime_version")
    text = None if found is None else found.rstrip(b"\0").decode("utf-8", errors="replace")
    checks = [
        Check(
            "metadata.min_runtime_version",
            text == expected,
            f"{text!r}, expected {expected!r} for {_op_versions(network)}" if text is not None else "missing",
        )
    ]
    raw = metadata.get(METADATA_KEY)
    if raw is None:
        checks.append(Check("metadata.tflrnn", True, "absent: the model was not built by tflrnn"))
        return checks
    document = parse_metadata(raw, network.model.description)
    if document is None:
        checks.append(Check("metadata.tflrnn", False, "not valid tflrnn JSON"))
        return checks
    cells = document["cells"]
    if len(cells) != len(layers):
        return checks + [Check("metadata.tflrnn", False, f"{len(cells)} cells recorded, {len(layers)} in the graph")]
    problems = []
    for k, (g, cell, weights) in enumerate(zip(layers, cells, layer_weights)):
        where = f"layer {k}: " if len(layers) > 1 else ""
        w = g.input_weights
        facts = {
            "name": g.name,
            "num_units": w.shape[0] if len(w.shape) == 2 else None,
            "input_size": w.shape[1] if len(w.shape) == 2 else None,
            "activation": ACTIVATION_NAMES.get(g.options.activation),
        }
        problems += [f"{where}{key} {cell.get(key)!r} but the graph has {actual!r}" for key, actual in facts.items()
                     if (key in cell or key == "activation") and cell.get(key) != actual]
        if weights is not None and cell.get("weights_sha256") != weights.sha256():
            problems.append(f"{where}weights_sha256 does not match the weights in the file")
    dense = document.get("dense") or []
    layers_of_head = dense_layers(network)
    if len(dense) != len(layers_of_head) or not all(isinstance(d, dict) for d in dense):
        problems.append(f"{len(dense)} dense layers recorded, {len(layers_of_head)} FULLY_CONNECTED ops in the graph")
    else:
        for k, (info, (op, following)) in enumerate(zip(dense, layers_of_head)):
            try:
                w, b = dense_arrays(network, op)
            except TflrnnError as exc:
                problems.append(f"dense {k}: {exc}")
                continue
            facts = {"name": w.name.rpartition("/")[0], "units": w.shape[0] if len(w.shape) == 2 else None,
                     "input_size": w.shape[1] if len(w.shape) == 2 else None,
                     "activation": dense_activation(op, following)}
            problems += [f"dense {k}: {key} {info.get(key)!r} but the graph has {actual!r}"
                         for key, actual in facts.items()
                         if (key in info or key == "activation") and info.get(key) != actual]
            beta = getattr(getattr(following, "options", None), "beta", 1.0)
            if facts["activation"] == "softmax" and beta != 1.0:
                problems.append(f"dense {k}: SOFTMAX beta {beta}, but a Keras softmax has beta 1")
            if info.get("weights_sha256") != dense_sha256(w.data, b.data):
                problems.append(f"dense {k}: weights_sha256 does not match the kernel and bias in the file")
    if problems:
        return checks + [Check("metadata.tflrnn", False, "; ".join(problems))]
    recorded = "name, sizes, activation" if "name" in cells[0] else "activation"
    return checks + [Check("metadata.tflrnn", True, f"written by tflrnn {document['version']}; {recorded} and "
                                                     "weights sha256 match the graph")]


def _op_versions(network: Network) -> str:
    return ", ".join(dict.fromkeys(f"{op_name(op.code)} v{op.version}" for op in network.subgraph.operators))


def _usable_weights(g: RNNGraph) -> tuple[CellWeights | None, str | None]:
    try:
        return g.weights(), None
    except TflrnnError as exc:
        return None, str(exc)


def _weights_match(model_weights: list, expected: list[CellWeights], why_not: str | None, quantized=False) -> Check:
    if why_not is not None:
        return Check("weights.match", False, f"cannot compare: {why_not}")
    names = ("input_weights", "recurrent_weights", "bias")
    problems, worst = [], 0.0
    for k, (ours, theirs) in enumerate(zip(model_weights, expected)):
        where = f"layer {k} " if len(expected) > 1 else ""
        for name, a, b in zip(names, ours.arrays(), theirs.arrays()):
            if a.shape != b.shape:
                problems.append(f"{where}{name} is {list(a.shape)} in the model, {list(b.shape)} in the weights")
            elif not np.array_equal(a, b):
                diff = float(np.max(np.abs(a.astype(np.float64) - b)))
                worst = max(worst, diff)
                problems.append(f"{where}{name} differs (max {diff:.3g})")
    if problems:
        return Check("weights.match", False, "; ".join(problems), max_abs_error=worst or None)
    what = "every layer's" if len(expected) > 1 else "the"
    how = " once W and R are rounded to int8 as the model stores them" if quantized else ""
    return Check("weights.match", True, f"{what} input_weights, recurrent_weights and bias are bit-identical{how}",
                 0.0)


def _why_not_runnable(checks: list[Check]) -> str | None:
    blocking = [c.name for c in checks
                if not c.passed and c.name.split("[")[0] in ("op.options", "tensors.shapes", "last_step", "dense")]
    return f"{', '.join(blocking)} failed" if blocking else None


# Numbers --------------------------------------------------------------------------------------------------------


@dataclass
class Comparison:
    """Runtime outputs against the reference, over one or more invokes."""

    ok: bool
    max_abs_error: float | None  # None: a non-finite output
    max_rel_error: float | None
    ties: int = 0  # sign_bit outputs within rounding of the jump, not counted
    note: str = ""  # why it failed, when not by the tolerance

    @classmethod
    def worst(cls, parts: list[Comparison]) -> Comparison:
        def largest(values):
            values = list(values)
            return None if None in values else max(values)

        return cls(
            ok=all(p.ok for p in parts),
            max_abs_error=largest(p.max_abs_error for p in parts),
            max_rel_error=largest(p.max_rel_error for p in parts),
            ties=sum(p.ties for p in parts),
            note="; ".join(dict.fromkeys(p.note for p in parts if p.note)),
        )


def _numeric_checks(data, network: Network, weights: list, report, inputs, atol, rtol, runtime_name: str,
                    float_weights: list | None = None):
    """The numeric checks on one runtime, and the model's output for each input (None when it could not run).

    Every op is judged on its own: its input is what the runtime actually fed it (the previous op's output, read
    back from the interpreter), so an error is reported where it arises and does not spread. A backward direction
    is judged with time reversed: then it too runs forward from its carried state.
    """
    from . import runtime

    layers = network.directions
    g0 = layers[0]
    tensors = network.subgraph.tensors
    # Every activation an op reads or writes (not constants, not states), read back after each invoke.
    read_back = sorted({i for op in network.subgraph.operators for i in (*op.inputs, *op.outputs)
                        if 0 <= i < len(tensors) and tensors[i].data is None and not tensors[i].is_variable})
    time_axis = 0 if g0.time_major else 1
    dynamic = g0.input.shape_signature is not None and g0.input.shape_signature[time_axis] == -1
    # A dynamic-time model is resized to several lengths and checked at each; the first is its allocated one.
    lengths = list(dict.fromkeys([g0.input.shape[time_axis], *DYNAMIC_LENGTHS])) if dynamic else [None]
    try:
        # In a child process with a time limit and a memory cap: a hostile model may crash or hang the runtime.
        with runtime.load(runtime_name, data, g0.operator.inputs[0], read_back) as interpreter:
            report.runtimes.append({"name": interpreter.name, "version": interpreter.version})
            results = []
            for length in lengths:
                xs = inputs
                if length is not None and length != g0.input.shape[time_axis]:
                    shape = list(g0.input.shape)
                    shape[time_axis] = length
                    rng = np.random.default_rng([report.settings["seed"], length])
                    xs = [rng.standard_normal(shape).astype(np.float32) for _ in inputs]
                    interpreter.resize(shape)
                runs = [dict(zip(read_back, interpreter.run(x))) for x in xs]  # per invoke: tensor index -> value
                interpreter.reset()
                results.append((xs, runs, dict(zip(read_back, interpreter.run(xs[0])))))
    except (RuntimeError, ValueError) as exc:
        message = " ".join(str(exc).split())
        if not isinstance(exc, runtime.IsolationError):  # a crash, hang or memory blow-up says so itself
            message = f"the interpreter refused the model: {message}"
        return [Check("runtime", False, message, runtime=runtime_name)], None

    def views(values: dict) -> list[tuple[np.ndarray, np.ndarray]]:
        """(input, output) of each direction, in its own forward time order."""
        pairs = []
        for g in layers:
            x, y = values[g.operator.inputs[0]], values[g.output_index]
            if g.columns:
                y = y[..., g.columns[0]:g.columns[1]]
            if g.backward:
                x, y = np.flip(x, axis=time_axis), np.flip(y, axis=time_axis)
            pairs.append((x, y))
        return pairs

    def compare(values: dict, starts: list[np.ndarray], against=None) -> Comparison:
        """Each op against the reference; `against` = float weights to judge a hybrid model by instead."""
        parts = []
        for k, (g, w, (x_k, y_k), start) in enumerate(zip(layers, weights, views(values), starts)):
            previous = _previous_states(y_k, start, g.time_major)
            judge_by = against[k] if against is not None else w
            expected, pre, scale = reference.step(x_k, judge_by, g.options.activation, previous,
                                                  time_major=g.time_major)
            extra = 0.0
            if g.hybrid:  # the kernel quantizes x and h to int8 every step: allow for that, and no more
                extra = reference.input_quantization_error(x_k, previous, w, g.options.asymmetric_quantize_inputs)
                if against is not None:  # and, against float weights, for rounding them to int8
                    extra = extra + reference.weight_quantization_error(x_k, previous, judge_by)
            parts.append(_compare(y_k, expected, pre, scale, g.options.activation, atol, rtol, extra))
        parts += [_head_comparison(op, tensors, values, atol, rtol) for op in network.head]
        return Comparison.worst(parts)

    def final_states(values: dict) -> list[np.ndarray]:
        # What each state holds after an invoke: its direction's last output (time-reversed for backward).
        return [_last_step(y_k, g.time_major) for g, (_, y_k) in zip(layers, views(values))]

    zeros = [np.zeros(g.hidden_state.shape) for g in layers]
    outputs = network.subgraph.outputs
    firsts, carries, resets, identical = [], [], [], True
    for xs, runs, after_reset in results:
        firsts.append(compare(runs[0], zeros))
        carries += [compare(runs[k], final_states(runs[k - 1])) for k in range(1, len(xs))]
        resets.append(compare(after_reset, zeros))
        identical = identical and all(np.array_equal(after_reset[i], runs[0][i]) for i in outputs if i in after_reset)
    first, carried, reset = Comparison.worst(firsts), Comparison.worst(carries), Comparison.worst(resets)
    reset.ok = reset.ok and identical
    extra_checks = []
    if float_weights is not None:
        _, runs, _ = results[0]
        starts, parts = zeros, []
        for values in runs:
            parts.append(compare(values, starts, against=float_weights))
            starts = final_states(values)
        extra_checks.append(_numeric_check(
            "numeric.float_weights", Comparison.worst(parts), atol, rtol,
            "the hybrid model against the float weights it was quantized from, allowing for int8 rounding of weights "
            "and inputs", runtime_name))
    each = ""
    if len(network.rnn_ops) > 1:
        each = f" (each of {len(network.rnn_ops)} layers on its own input)"
    if network.bidirectional:
        each += " (forward, and backward with its state carried from t=0 to the next invoke)"
    if any(g.hybrid for g in layers):
        each += "; hybrid int8: allowing for the kernel's int8 quantization of x and h each step"
    if dynamic:
        each += f"; resized to {len(lengths)} lengths: {', '.join(map(str, lengths))} steps"
    if any(op.code == BuiltinOperator.STRIDED_SLICE for op in network.head):
        each += "; the output is the last layer's final step, bit for bit"
    if _has_dense(network):
        each += "; each dense layer on its own input"
    return [
        _numeric_check("numeric.first_invoke", first, atol, rtol, f"from the zero state{each}", runtime_name),
        _numeric_check(
            "numeric.state_carried", carried, atol, rtol,
            f"{len(inputs) - 1} more invokes, each continuing from the previous one's final state", runtime_name,
        ),
        _numeric_check(
            "numeric.reset", reset, atol, rtol,
            "after reset_all_variables(), "
            + ("bit-identical to the first invoke" if identical else "differs from the first invoke"),
            runtime_name,
        ),
        *extra_checks,
    ], (results[-1][0], [_model_output(network, values) for values in results[-1][1]])  # for --against: the
    # inputs and outputs at the longest length run (a dynamic-time model's allocated length is one step)


def _head_comparison(op, tensors, values: dict, atol: float, rtol: float) -> Comparison:
    """One op after the RNN ops, on the input the runtime gave it: slices and concatenation exactly, a dense layer
    within the rounding of its dot products, an activation within the rounding of its input."""
    actual = values[op.outputs[0]]
    x = values[op.inputs[0]].astype(np.float64)
    if op.code == BuiltinOperator.STRIDED_SLICE:
        begin = int(np.ravel(tensors[op.inputs[1]].data)[op.options.shrink_axis_mask.bit_length() - 1])
        time_major = op.options.shrink_axis_mask == 1
        expected = (x[begin] if time_major else x[:, begin])
        exact = np.array_equal(actual, expected.astype(np.float32))
        return Comparison(exact, 0.0 if exact else _finite_max(np.abs(actual - expected)), None,
                          note="" if exact else "the last step is not the final step of its direction")
    if op.code == BuiltinOperator.CONCATENATION:
        expected = np.concatenate([values[i] for i in op.inputs], axis=-1)
        exact = np.array_equal(actual, expected)
        return Comparison(exact, 0.0 if exact else None, None, note="" if exact else "the concatenation differs")
    if op.code == BuiltinOperator.FULLY_CONNECTED:
        w, b = (tensors[i].data.astype(np.float64) for i in op.inputs[1:3])
        pre = x @ w.T + b
        scale = np.abs(x) @ np.abs(w.T) + np.abs(b)
        return _compare(actual, reference.activate(pre, op.options.activation), pre, scale, op.options.activation,
                        atol, rtol)
    if op.code == BuiltinOperator.SOFTMAX:
        z = op.options.beta * x
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return _compare(actual, e / e.sum(axis=-1, keepdims=True), None, np.abs(z).max(axis=-1, keepdims=True), None,
                        atol, rtol)
    expected = np.tanh(x) if op.code == BuiltinOperator.TANH else 1.0 / (1.0 + np.exp(-x))
    return _compare(actual, expected, None, np.abs(x), None, atol, rtol)


def _model_output(network: Network, values: dict) -> np.ndarray:
    """What the source framework outputs: a classifier's final output, else the last RNN op's sequence (both
    directions concatenated)."""
    if _has_dense(network):
        return values[network.head[-1].outputs[0]]
    ys = [values[i] for i in network.sequence_outputs]
    return ys[0] if len(ys) == 1 else np.concatenate(ys, axis=-1)


def _previous_states(y: np.ndarray, start: np.ndarray, time_major: bool) -> np.ndarray:
    """h_{t-1} for every step, in the layout of y: the start state, then y shifted by one step."""
    if time_major:
        return np.concatenate([start[None], y[:-1]], axis=0)
    return np.concatenate([start[:, None], y[:, :-1]], axis=1)


def _last_step(y: np.ndarray, time_major: bool) -> np.ndarray:
    return y[-1] if time_major else y[:, -1]


def _compare(actual, expected, pre, scale, activation, atol, rtol, extra=0.0) -> Comparison:
    """|actual - expected| <= atol + rtol * scale, where scale = sum of |terms| in the step's dot products.

    float32 rounding grows with the terms summed, not with the result: a pre-activation that cancels to near
    zero still carries the rounding of its large terms. Every fused activation changes by at most as much as
    its input, so the bound carries over to the output.
    """
    diff = np.abs(actual.astype(np.float64) - expected)
    allowed = atol + rtol * scale + extra  # extra: input quantization of a hybrid op
    bad = ~(diff <= allowed)  # written so that a NaN output counts as bad
    ties = 0
    if activation in reference.DISCONTINUOUS:
        # A pre-activation within rounding of the jump may land either side of it in float32.
        tie = np.abs(pre) <= allowed
        ties = int(np.count_nonzero(bad & tie))
        bad &= ~tie
        diff = np.where(tie, 0.0, diff)
    rel = diff / np.maximum(np.abs(expected), atol or np.finfo(np.float32).tiny)
    return Comparison(not bad.any(), _finite_max(diff), _finite_max(rel), ties)


def _numeric_check(name: str, result: Comparison, atol: float, rtol: float, what: str, runtime: str) -> Check:
    shown = "non-finite" if result.max_abs_error is None else f"{result.max_abs_error:.3g}"
    detail = f"{what}; max abs error {shown} (atol {atol:g}, rtol {rtol:g})"
    if result.ties:
        detail += f"; {result.ties} output(s) within rounding of the sign bit's jump not counted"
    if result.note:
        detail += f"; {result.note}"
    return Check(name, result.ok, detail, result.max_abs_error, result.max_rel_error, runtime)


def _finite_max(values: np.ndarray) -> float | None:
    worst = float(np.max(values, initial=0.0))
    return worst if math.isfinite(worst) else None  # None: a non-finite output, which also fails the check
