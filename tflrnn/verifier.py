"""verify(): prove a fused-RNN model right, structurally and numerically.

Structure is read through the project's reader and checked against what the runtime needs but does not check
itself (it silently defaults a bad activation or missing options). Numbers come from the LiteRT interpreter on
seeded inputs and are compared with the numpy reference: a first invoke from the zero state, several consecutive
invokes that must carry the state, and an invoke after reset_all_variables() that must equal the first one.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import reference
from .reference import DEFAULT_ATOL, DEFAULT_RTOL, DEFAULT_SEQUENCES, MAX_VERIFY_VALUES

DYNAMIC_LENGTHS = (1, 4, 9)  # lengths a dynamic-time model is resized to, besides its allocated one
from .assemble import MAX_TENSOR_BYTES, METADATA_KEY, MIN_RUNTIME_VERSION, sha256
from .cell import ACTIVATION_NAMES, CellWeights, dequantize, quantize_int8
from .errors import ConfigError, TflrnnError
from .files import read_bytes
from .graph import (
    SIGNATURE_INPUT,
    SIGNATURE_KEY,
    SIGNATURE_OUTPUT,
    RNNGraph,
    find_bidirectional,
    find_last_step,
    find_rnns,
    last_step_slice,
)
from .model import SCHEMA_VERSION, Activation, BuiltinOperator, BuiltinOptions
from .reader import read
from .version import __version__
from .runtime import RUNTIMES
from .sources import detect_format
from .weights import load_weights



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
    bidirectional = find_bidirectional(description)
    layers = [bidirectional.forward, bidirectional.backward] if bidirectional else find_rnns(description)
    for g in layers:
        _check_verifiable_size(g)
    if against is not None and len(layers) > 1 and any(g.hybrid for g in layers):
        raise ConfigError("--against a hybrid (int8) stack or bidirectional model is not supported: its int8 "
                          "rounding compounds through the layers; verify the float model against the source")
    whole_sources = ("safetensors", "torch", "keras", "onnx")
    if against is not None and len(layers) > 1 and (format or detect_format(Path(against))) not in whole_sources:
        kind = "bidirectional" if bidirectional else f"a stack of {len(layers)} layers"
        raise ConfigError(f"--against compares a stack or bidirectional model with a PyTorch nn.RNN, a Keras model "
                          f"or an ONNX RNN node only; this model is {kind}")
    if weights is not None:
        if isinstance(weights, CellWeights):
            weights = [weights]
        if isinstance(weights, (list, tuple)):  # one per layer (or forward, backward), in the model's op order
            if len(weights) != len(layers):
                raise ConfigError(f"{len(weights)} sets of weights for a model of {len(layers)} layers")
            weights = list(weights)
        elif len(layers) > 1 and (format or detect_format(Path(weights))) in ("safetensors", "torch", "keras"):
            # A whole PyTorch nn.RNN or Keras model: its cells in order, matched to the model's layers by position.
            from .sources import import_cells

            weights = [c.weights for c in import_cells(weights, format=format)[0]]
            if len(weights) != len(layers):
                raise ConfigError(f"the weights hold {len(weights)} cells; the model has {len(layers)} layers")
        else:
            # Each layer's weights are read under its cell name (a single cell's under --scope when given).
            names = [scope] if scope and len(layers) == 1 else [_cell_name(g) for g in layers]
            weights = [load_weights(weights, name, format=format, layer=layer, layer_index=layer_index)
                       for name in names]

    report = VerifyReport(
        model=label,
        bytes=len(data),
        sha256=sha256(data),
        settings={"atol": atol, "rtol": rtol, "sequences": sequences, "seed": seed, "runtime": runtime},
    )
    usable = [_usable_weights(g) for g in layers]  # read (and dequantized) once, for every check that needs them
    report.checks += _structure_checks(layers, bidirectional, [w for w, _ in usable])
    model_weights = [w for w, _ in usable]
    why_not = next((f"layer {k}: {reason}" if len(layers) > 1 else reason
                    for k, (_, reason) in enumerate(usable) if reason), None)
    float_weights = None
    if weights is not None:
        if any(g.hybrid for g in layers):
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
        checks, outputs = _numeric_checks(data, layers, model_weights, report, inputs, atol, rtol, name,
                                          float_weights, bidirectional)
        report.checks += checks
        if outputs is not None:
            runs[name] = outputs
    if against is not None:
        report.checks += _against_checks(layers, model_weights, inputs, runs, report, atol, rtol, against=against,
                                         format=format, layer=layer, scope=scope, layer_index=layer_index)
    return report


def _as_stored(w: CellWeights) -> CellWeights:
    """Float weights as a hybrid model stores them: W and R through int8 and back."""
    return CellWeights(dequantize(*quantize_int8(w.input_weights)), dequantize(*quantize_int8(w.recurrent_weights)),
                       w.bias)


def _cell_name(g: RNNGraph) -> str | None:
    return g.input_weights.name.rpartition("/")[0] or None


def _against_checks(layers: list[RNNGraph], model_weights: list, inputs, runs: dict, report: VerifyReport, atol,
                    rtol, **source) -> list[Check]:
    from .against import run_source

    g = layers[0]
    path = source.pop("against")
    shapes = [tuple(layer.input_weights.shape) for layer in layers]
    result = run_source(path, inputs, activation=ACTIVATION_NAMES.get(g.options.activation),
                        time_major=g.time_major, whole=len(layers) > 1, shapes=shapes, **source)
    report.against = {
        "source": str(path),
        "format": result.source.format,
        "reference": result.reference,
        "framework": result.framework,
    }
    # The scale of each step's terms along the source's own trajectory, for the rounding allowance. (A stack or
    # both directions compound their rounding: there, the outputs' own magnitude plus one stands in.)
    # A hybrid cell also rounds its weights (against the source's float ones) and its inputs each step.
    scales, extras, state = [], [], np.zeros(g.hidden_state.shape)
    for x, y in zip(inputs, result.outputs):
        if len(layers) > 1:
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


# Structure ------------------------------------------------------------------------------------------------------


def _structure_checks(layers: list[RNNGraph], bidirectional, weights: list) -> list[Check]:
    model = layers[0].model
    checks = [Check("model.version", model.version == SCHEMA_VERSION, f"schema version {model.version}")]
    if bidirectional:
        op = bidirectional.operator
        width = sum(g.input_weights.shape[0] for g in layers if len(g.input_weights.shape) == 2)
        for direction, g in zip(("fw", "bw"), layers):
            for check in _layer_checks(g, output_width=width if bidirectional.merged else None):
                if direction == "bw" and check.name.startswith("op."):
                    continue  # one op: its code, version and options are checked once
                if not check.name.startswith("op."):
                    check.name, check.detail = f"{check.name}[{direction}]", f"{direction}: {check.detail}"
                checks.append(check)
        checks.append(Check("op.aux_inputs", op.inputs[9:] == [-1, -1, -1],
                            f"aux inputs {op.inputs[9:]} (unused: all -1)"))
        prefixes = [_cell_name(g) or "" for g in layers]
        swapped = prefixes[0].endswith("/bw") or prefixes[1].endswith("/fw")
        checks.append(Check("op.directions", not swapped,
                            f"forward slots hold '{prefixes[0]}', backward slots '{prefixes[1]}'"
                            + ("; they are swapped" if swapped else "")))
        checks.append(_signature_check(layers, bidirectional))
        checks += _metadata_checks(layers, weights, _expected_op_version(layers[0]))
        return checks
    for k, g in enumerate(layers):
        for check in _layer_checks(g):
            if len(layers) > 1:  # one set of checks per layer, named by its index
                check.name, check.detail = f"{check.name}[{k}]", f"layer {k}: {check.detail}"
            checks.append(check)
    last = find_last_step(layers)
    if last is not None:
        checks.append(_last_step_check(layers, last))
    checks.append(_signature_check(layers))
    checks += _metadata_checks(layers, weights, max(_expected_op_version(g) for g in layers))
    return checks


def _output_index(layers: list[RNNGraph]) -> int:
    last = find_last_step(layers)
    return (last or layers[-1].operator).outputs[0]


def _last_step_check(layers: list[RNNGraph], op) -> Check:
    g = layers[-1]
    tensors = g.subgraph.tensors
    begin, options = last_step_slice(g.time_major)
    expected_constants = (begin, [0, 0, 0], [1, 1, 1])
    problems = []
    if op.builtin_code != BuiltinOperator.STRIDED_SLICE or op.deprecated_builtin_code != BuiltinOperator.STRIDED_SLICE:
        problems.append(f"builtin_code {op.builtin_code}, deprecated_builtin_code {op.deprecated_builtin_code}")
    if op.version != 1:
        problems.append(f"version {op.version}, expected 1")
    if len(op.inputs) != 4 or len(op.outputs) != 1 or any(not 0 <= i < len(tensors) for i in (*op.inputs, *op.outputs)):
        return Check("last_step", False, f"STRIDED_SLICE has inputs {op.inputs} and outputs {op.outputs}")
    if op.inputs[0] != g.operator.outputs[0]:
        problems.append("it does not slice the last layer's output")
    for name, index, values in zip(("begin", "end", "strides"), op.inputs[1:], expected_constants):
        tensor = tensors[index]
        if tensor.data is None or tensor.dtype != "int32" or list(np.ravel(tensor.data)) != values:
            shown = None if tensor.data is None else list(np.ravel(tensor.data))
            problems.append(f"{name} {shown} ({tensor.dtype}), expected constant int32 {values}")
    if op.options != options:
        problems.append(f"options {op.options}, expected {options}")
    out = tensors[op.outputs[0]]
    expected_shape = (g.hidden_state.shape[0], g.output.shape[-1])
    if tuple(out.shape) != expected_shape or out.dtype != "float32" or out.data is not None or out.is_variable:
        problems.append(f"output '{out.name}' {list(out.shape)} {out.dtype}, expected a plain float32 "
                        f"{list(expected_shape)}")
    if problems:
        return Check("last_step", False, "; ".join(problems))
    return Check("last_step", True, f"STRIDED_SLICE takes the final step: output {list(out.shape)}")


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


def _signature_check(layers: list[RNNGraph], bidirectional=None) -> Check:
    g = layers[0]
    x_index = g.operator.inputs[0]
    if bidirectional and not bidirectional.merged:
        outputs = dict(zip((f"{SIGNATURE_OUTPUT}_fw", f"{SIGNATURE_OUTPUT}_bw"), bidirectional.operator.outputs))
    else:
        outputs = {SIGNATURE_OUTPUT: bidirectional.operator.outputs[0] if bidirectional else _output_index(layers)}
    signature = next((s for s in g.model.signatures if s.key == SIGNATURE_KEY), None)
    subgraph_index = next(i for i, graph in enumerate(g.model.subgraphs) if graph is g.subgraph)
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
    if g.subgraph.inputs != [x_index] or g.subgraph.outputs != list(outputs.values()):
        problems.append(f"subgraph inputs {g.subgraph.inputs} and outputs {g.subgraph.outputs}, expected "
                        f"[{x_index}] and {list(outputs.values())}")
    if problems:
        return Check("signature", False, "; ".join(problems))
    shown = ", ".join(f"{name} -> tensor {index}" for name, index in outputs.items())
    return Check("signature", True, f"'{SIGNATURE_KEY}': input -> tensor {x_index}, {shown}")


def _metadata_checks(layers: list[RNNGraph], layer_weights: list, op_version: int) -> list[Check]:
    metadata = layers[0].model.metadata
    expected = MIN_RUNTIME_VERSION.get(op_version)
    found = metadata.get("min_runtime_version")
    text = None if found is None else found.rstrip(b"\0").decode("utf-8", errors="replace")
    checks = [
        Check(
            "metadata.min_runtime_version",
            text == expected,
            f"{text!r}, expected {expected!r} for op version {op_version}" if text is not None else "missing",
        )
    ]
    raw = metadata.get(METADATA_KEY)
    if raw is None:
        checks.append(Check("metadata.tflrnn", True, "absent: the model was not built by tflrnn"))
        return checks
    cells, document = _tflrnn_metadata(raw)
    if cells is None:
        checks.append(Check("metadata.tflrnn", False, "not valid tflrnn JSON"))
        return checks
    if len(cells) != len(layers):
        return checks + [Check("metadata.tflrnn", False, f"{len(cells)} cells recorded, {len(layers)} in the graph")]
    problems = []
    for k, (g, cell, weights) in enumerate(zip(layers, cells, layer_weights)):
        where = f"layer {k}: " if len(layers) > 1 else ""
        w = g.input_weights
        facts = {
            "name": _cell_name(g),
            "num_units": w.shape[0] if len(w.shape) == 2 else None,
            "input_size": w.shape[1] if len(w.shape) == 2 else None,
            "activation": ACTIVATION_NAMES.get(g.options.activation),
        }
        problems += [f"{where}{key} {cell.get(key)!r} but the graph has {actual!r}" for key, actual in facts.items()
                     if cell.get(key) != actual]
        if weights is not None and cell.get("weights_sha256") != weights.sha256():
            problems.append(f"{where}weights_sha256 does not match the weights in the file")
    if problems:
        return checks + [Check("metadata.tflrnn", False, "; ".join(problems))]
    return checks + [Check("metadata.tflrnn", True, f"written by tflrnn {document.get('version')}; name, sizes, "
                                                     "activation and weights sha256 match the graph")]


def _tflrnn_metadata(raw: bytes) -> tuple[list[dict] | None, dict | None]:
    """The cells of a tflrnn metadata entry, or (None, None) when the entry is not what tflrnn writes."""
    try:
        document = json.loads(raw, parse_constant=_reject)
    except (ValueError, RecursionError):
        return None, None
    cells = document.get("cells") if isinstance(document, dict) else None
    if not isinstance(cells, list) or not cells or not all(isinstance(c, dict) for c in cells):
        return None, None
    return cells, document


def _reject(constant: str):
    raise ValueError(f"{constant} is not JSON")


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
                if not c.passed and c.name.split("[")[0] in ("op.options", "tensors.shapes", "last_step")]
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


def _numeric_checks(data, layers: list[RNNGraph], weights: list, report, inputs, atol, rtol, runtime_name: str,
                    float_weights: list | None = None, bidirectional=None):
    """The numeric checks on one runtime, and the last layer's outputs for each input (None when it could not run).

    Every layer (or direction) is judged on its own: its input is what the runtime actually fed it (the previous
    layer's output, read back from the interpreter), so an error is reported where it arises and does not spread.
    A backward direction is judged with time reversed: then it too runs forward from its carried state.
    """
    from . import runtime

    g0 = layers[0]
    last = None if bidirectional else find_last_step(layers)
    if bidirectional:
        outputs_of = list(bidirectional.operator.outputs)
    else:
        outputs_of = [g.operator.outputs[0] for g in layers] + ([last.outputs[0]] if last is not None else [])
    time_axis = 0 if g0.time_major else 1
    dynamic = g0.input.shape_signature is not None and g0.input.shape_signature[time_axis] == -1
    # A dynamic-time model is resized to several lengths and checked at each; the first is its allocated one.
    lengths = list(dict.fromkeys([g0.input.shape[time_axis], *DYNAMIC_LENGTHS])) if dynamic else [None]
    try:
        interpreter = runtime.load(runtime_name, data, g0.operator.inputs[0], outputs_of)
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
            runs = [interpreter.run(x) for x in xs]  # per invoke: the outputs read back
            interpreter.reset()
            results.append((xs, runs, interpreter.run(xs[0])))
    except (RuntimeError, ValueError) as exc:
        message = " ".join(str(exc).split())
        return [Check("runtime", False, f"the interpreter refused the model: {message}", runtime=runtime_name)], None

    def views(x: np.ndarray, ys: list[np.ndarray]) -> tuple[list[tuple[np.ndarray, np.ndarray]], bool]:
        """(input, output) of each layer or direction, in forward time order; and whether a last-step output is
        exactly the last layer's final step."""
        if bidirectional:
            if bidirectional.merged:
                units = layers[0].input_weights.shape[0]
                forward, backward = ys[0][..., :units], ys[0][..., units:]
            else:
                forward, backward = ys
            return [(x, forward), (np.flip(x, axis=time_axis), np.flip(backward, axis=time_axis))], True
        if last is not None:
            ys, final = ys[:-1], ys[-1]
            exact = np.array_equal(final, _last_step(ys[-1], layers[-1].time_major))
        else:
            exact = True
        return list(zip([x, *ys[:-1]], ys)), exact

    def compare(x: np.ndarray, ys: list[np.ndarray], starts: list[np.ndarray], against=None) -> Comparison:
        """Each layer against the reference; `against` = float weights to judge a hybrid model by instead."""
        pairs, exact = views(x, ys)
        parts = []
        for k, (g, w, (x_k, y_k), start) in enumerate(zip(layers, weights, pairs, starts)):
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
        result = Comparison.worst(parts)
        if not exact:
            result.ok, result.note = False, "the output is not the last layer's final step"
        return result

    def final_states(x: np.ndarray, ys: list[np.ndarray]) -> list[np.ndarray]:
        # What each state holds after an invoke: its direction's last output (time-reversed for backward).
        return [_last_step(y_k, g.time_major) for g, (_, y_k) in zip(layers, views(x, ys)[0])]

    zeros = [np.zeros(g.hidden_state.shape) for g in layers]
    firsts, carries, resets, identical = [], [], [], True
    for xs, runs, after_reset in results:
        firsts.append(compare(xs[0], runs[0], zeros))
        carries += [compare(xs[k], runs[k], final_states(xs[k - 1], runs[k - 1])) for k in range(1, len(xs))]
        resets.append(compare(xs[0], after_reset, zeros))
        identical = identical and all(np.array_equal(a, b) for a, b in zip(after_reset, runs[0]))
    first, carried, reset = Comparison.worst(firsts), Comparison.worst(carries), Comparison.worst(resets)
    reset.ok = reset.ok and identical
    extra_checks = []
    if float_weights is not None:
        xs, runs, _ = results[0]
        starts, parts = zeros, []
        for x, ys in zip(xs, runs):
            parts.append(compare(x, ys, starts, against=float_weights))
            starts = final_states(x, ys)
        extra_checks.append(_numeric_check(
            "numeric.float_weights", Comparison.worst(parts), atol, rtol,
            "the hybrid model against the float weights it was quantized from, allowing for int8 rounding of weights "
            "and inputs", runtime_name))
    if bidirectional:
        each = " (forward, and backward with its state carried from t=0 to the next invoke)"
    else:
        each = f" (each of {len(layers)} layers on its own input)" if len(layers) > 1 else ""
    if any(g.hybrid for g in layers):
        each += "; hybrid int8: allowing for the kernel's int8 quantization of x and h each step"
    if dynamic:
        each += f"; resized to {len(lengths)} lengths: {', '.join(map(str, lengths))} steps"
    if last is not None:
        each += "; the output is the last layer's final step, bit for bit"
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
    ], [_model_output(ys, len(layers), bidirectional) for ys in results[0][1]]  # for --against


def _model_output(ys: list[np.ndarray], layer_count: int, bidirectional) -> np.ndarray:
    """What the source framework outputs: the last layer's sequence, or both directions concatenated."""
    if bidirectional:
        return ys[0] if bidirectional.merged else np.concatenate(ys, axis=-1)
    return ys[layer_count - 1]


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
