"""verify(): prove a model tflrnn writes right, structurally and numerically: the fused lowering (the fused RNN ops,
float or hybrid int8) and the portable one (plain builtin ops, float or full int8), on every runtime asked for.

Structure is read through the project's reader and checked against what the runtime needs but does not check
itself (it silently defaults a bad activation or missing options). Numbers come from real interpreters on seeded
inputs: the fused ops on LiteRT and tf.lite (a fused LSTM also on LiteRT with XNNPACK and, unidirectional, on TFLite
Micro); a portable model also on LiteRT with XNNPACK, the CompiledModel API and TFLite Micro. A float model is compared with the numpy reference over a first invoke from the zero state, several
consecutive invokes that must carry the state, and an invoke after a reset that must equal the first one; a
full-int8 one step by step within its quantization steps, on the runtimes that give back every tensor.

| module       | owns                                                                   |
| report.py    | Check (and the declaration of every check), VerifyReport, Comparison  |
| limits.py    | what is refused up front (the reference's memory and time)            |
| structure.py | ops, options, shapes, states, signature, metadata, weights.match       |
| head.py      | the last step and Dense layers                                          |
| numeric.py   | a fused model: the interpreter against the reference, and --against    |
| portable.py  | a portable model: the recovered network against the float64 reference, |
|              | and --against its source                                                |
| int8.py      | a full-int8 model: int8.formats; int8.steps on LiteRT, tf.lite, Micro   |
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..reference import DEFAULT_ATOL, DEFAULT_RTOL, DEFAULT_SEQUENCES
from ..builder import sha256
from ..cell import CellWeights
from ..errors import ConfigError
from ..files import model_bytes
from ..lowering import holds_a_network, lowering_for_model, require_a_network
from ..lowering.fused import find_network
from ..reader import read
from ..runtime import RUNTIMES
from ..sources import FORMATS, detect_format
from ..weights import load_weights
from .report import NUMERIC_KINDS, Check, VerifyReport
from .limits import _check_verifiable_size, _check_verifiable_time
from .structure import _structure_checks, _usable_weights, _weights_match
from .numeric import _against_checks, _as_stored, _has_dense, _numeric_checks


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
    data: str | Path | None = None,
    max_error: float | None = None,
) -> VerifyReport:
    """Verify a model given as a path or as bytes. Raises TflrnnError when the input is unusable.

    `weights` (CellWeights or a file): also check the model holds exactly these weights. `against`: also run
    the source model (Keras, ONNX, PyTorch or a TF checkpoint) in its own framework on the same inputs and
    compare. `format`, `layer`, `scope` and `layer_index` pick from those files as for building.
    `runtime`: "litert", "tensorflow", "compiled", "micro" or "all". `data`: a .npy / .npz of the user's sequences
    ([N, B, T, I], [N, T, B, I] time-major) to run the model over against the float network (`max_error`: fail
    when an output is further off than this).
    """
    report = _verify(model, weights=weights, against=against, format=format, layer=layer, scope=scope,
                     layer_index=layer_index, runtime=runtime, atol=atol, rtol=rtol, sequences=sequences, seed=seed,
                     data=data, max_error=max_error)
    if report.passed and not any(c.kind in NUMERIC_KINDS for c in report.checks):
        ran = ", ".join(r["name"] for r in report.runtimes) or "none"
        report.checks.append(Check("numeric", False, f"no numeric check ran on the runtime(s) asked for "
                                                     f"({runtime}; ran: {ran}): nothing proves the numbers"))
    return report


def _verify(model, *, weights, against, format, layer, scope, layer_index, runtime, atol, rtol, sequences, seed,
            data, max_error) -> VerifyReport:
    if not (0 <= atol < math.inf and 0 <= rtol < math.inf):
        raise ConfigError(f"atol and rtol must be finite and non-negative, got atol={atol}, rtol={rtol}")
    if isinstance(sequences, bool) or not isinstance(sequences, int) or not 2 <= sequences <= 1000:
        raise ConfigError(f"sequences must be an integer from 2 to 1000 (state is checked across them), got {sequences}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    if runtime != "all" and runtime not in RUNTIMES:
        raise ConfigError(f"unknown runtime '{runtime}'; one of {', '.join(RUNTIMES)}, all")
    if max_error is not None and (isinstance(max_error, bool) or not 0 <= float(max_error) < math.inf):
        raise ConfigError(f"max_error must be a finite non-negative number, got {max_error!r}")
    if max_error is not None and data is None:
        raise ConfigError("--max-error bounds the error on your data: give the sequences with --data FILE (in a "
                          "manifest, the key data)")
    model_data, label = model_bytes(model)
    description = read(model_data)
    settings = {"atol": atol, "rtol": rtol, "sequences": sequences, "seed": seed, "runtime": runtime}
    if against is not None and not holds_a_network(description):
        return _verify_foreign(model_data, label, description, against, runtime, format, data, settings=settings)
    require_a_network(description)
    chosen = lowering_for_model(description)
    # `all`: the runtimes with the lowering's kernels (the fused ops: litert and tensorflow; a fused model of LSTM ops
    # only also micro), or every one installed
    all_of = list(chosen.runtimes) if chosen.runtimes is not None else [r for r in RUNTIMES if _installed(r)]
    if chosen.runtimes_for is not None:  # the runtimes with kernels for this model's ops (Micro: a fused LSTM)
        all_of = [r for r in chosen.runtimes_for(description) if r in all_of or _installed(r)]
    # (installed: tf.lite comes with the tensorflow extra, which a user of the fused ops may not have)
    runtimes = [r for r in all_of if _installed(r)] if runtime == "all" else [runtime]
    return _VERIFIERS[chosen.name](model_data, label, description, weights, against, runtimes, settings,
                                   (data, max_error), format=format, layer=layer, scope=scope,
                                   layer_index=layer_index)


def _verify_fused(model_data, label, description, weights, against, runtimes, settings, on_data, *, format, layer,
                  scope, layer_index) -> VerifyReport:
    """verify for a model of the fused RNN ops (the checks of structure.py, numeric.py and head.py)."""
    data, max_error = on_data
    sequences, seed, atol, rtol = settings["sequences"], settings["seed"], settings["atol"], settings["rtol"]
    network = find_network(description)
    layers = network.directions  # each direction of each RNN op, in op order
    for g in layers:
        _check_verifiable_size(g)
    _check_verifiable_time(network, sequences)
    if network.full_int8:
        return _verify_fused_int8(model_data, label, description, network, weights, against, runtimes, settings,
                                  on_data, format=format, layer=layer, scope=scope, layer_index=layer_index)
    if data is not None:  # read (and refused) before anything runs
        from ..lowering import recover
        from .data import data_checks, load_data

        recovered = recover(description)
        data_xs = load_data(data, recovered)
    whole = len(layers) > 1 or _has_dense(network)  # --against runs the whole source model
    refused = against_refused(len(layers), _has_dense(network), any(g.hybrid for g in layers),
                              any(g.hybrid and g.kind == "lstm" for g in layers))
    if against is not None and refused:
        raise ConfigError(refused)
    if against is not None and whole and not _holds_a_network(format or detect_format(Path(against))):
        kind = "bidirectional" if network.bidirectional else "a classifier" if len(layers) == 1 else \
            f"a stack of {len(layers)} layers"
        raise ConfigError(f"--against compares a stack or bidirectional model with a PyTorch nn.RNN, a Keras model, "
                          f"ONNX RNN nodes or a TF checkpoint's stack only; this model is {kind}")
    if weights is not None:
        weights = _weights_given(weights, [g.name for g in layers], format, layer, scope, layer_index)

    report = VerifyReport(model=label, bytes=len(model_data), sha256=sha256(model_data), settings=settings)
    usable = [_usable_weights(g) for g in layers]  # read (and dequantized) once, for every check that needs them
    report.checks += _structure_checks(network, [w for w, _ in usable])
    model_weights = [w for w, _ in usable]
    why_not = next((f"layer {k}: {reason}" if len(layers) > 1 else reason
                    for k, (_, reason) in enumerate(usable) if reason), None)
    float_weights = None
    if weights is not None:
        if any(g.hybrid for g in layers) and all(
                w is not None and tuple(g.input_weights.shape) == (w.num_units, w.input_size)
                for g, w in zip(layers, weights)):
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
    lstm = any(g.kind == "lstm" for g in layers)
    # XNNPACK takes a float LSTM model's head; a hybrid LSTM's outputs are judged against the float64 network with
    # an allowance written for the op alone (numeric._hybrid_lstm_comparison), so only where the op is the model
    with_xnnpack = lstm and (not any(g.hybrid for g in layers) or (len(layers) == 1 and not network.head))
    if lstm and not with_xnnpack and "litert" in runtimes:
        report.notes.append("LiteRT with XNNPACK not run: verify judges a hybrid LSTM op by its own output, which "
                            "LiteRT with XNNPACK (taking the ops after it) does not give back here; the LSTM op is "
                            "LiteRT's builtin kernel either way")
    for name in runtimes:
        # LiteRT with and without its default XNNPACK delegate, for a model with an LSTM op (XNNPACK takes its head)
        for xnnpack in ((False, True) if name == "litert" and with_xnnpack else (False,)):
            checks, outputs = _numeric_checks(model_data, network, model_weights, report, inputs, atol, rtol, name,
                                              float_weights, xnnpack=xnnpack)
            report.checks += checks
            if outputs is not None:
                against_inputs, runs[checks[0].runtime] = outputs
    if against is not None and runs:
        report.checks += _against_checks(layers, model_weights, against_inputs, runs, report, atol, rtol, whole,
                                         _has_dense(network), against=against,
                                         format=format, layer=layer, scope=scope, layer_index=layer_index)
    if data is not None:
        data_checks(model_data, description, recovered, report, runtimes, data, data_xs, max_error,
                    _float_network(recovered, float_weights or weights))
    return report


def _serving_wired(model) -> Check:
    """The serving signature on subgraph 0, its input among that subgraph's inputs and its outputs among its outputs:
    the tensors the numeric checks feed and read."""
    from ..lowering.common import SIGNATURE_INPUT, SIGNATURE_KEY

    serving = next((s for s in model.signatures if s.key == SIGNATURE_KEY), None)
    graph = model.subgraphs[0]
    if serving is None or serving.subgraph != 0 or SIGNATURE_INPUT not in serving.inputs:
        return Check("signature", False, f"no '{SIGNATURE_KEY}' signature with an '{SIGNATURE_INPUT}' on subgraph 0")
    stray = [k for k, i in serving.inputs.items() if i not in graph.inputs] + [
        k for k, i in serving.outputs.items() if i not in graph.outputs]
    if stray:
        return Check("signature", False, f"{', '.join(map(repr, stray))}: not a subgraph input or output")
    return Check("signature", True, f"'{SIGNATURE_KEY}': inputs {sorted(serving.inputs)}, outputs "
                                    f"{sorted(serving.outputs)}")


def _verify_fused_int8(model_data, label, description, graph, weights, against, runtimes, settings,
                       on_data, **source) -> VerifyReport:
    """verify for a full-int8 fused LSTM (int8_lstm.py): the integer kernel's tensors, then every op recomputed from
    the interpreter's own values on each runtime that gives them back (int8_ops.py), the free-running error against
    the float64 reference reported; --data as for any model."""
    from ..lowering import recover
    from .int8 import formats_check
    from .int8_lstm import structure_check
    from .int8_ops import ops_checks

    data, max_error = on_data
    if against is not None:
        raise ConfigError("--against compares a float model with its source; a full-int8 model differs from it by "
                          "its quantization: verify it with --data YOUR_SEQUENCES --max-error E against the float "
                          "network, or --weights to check it holds the source's weights")
    report = VerifyReport(model=label, bytes=len(model_data), sha256=sha256(model_data), settings=settings)
    report.checks.append(structure_check(graph))
    if not report.checks[-1].passed:  # (the network is not read from tensors the kernel would misread)
        report.checks.append(Check("numeric", False, "not run: int8.lstm failed"))
        return report
    network = recover(description)
    report.checks.append(_serving_wired(description))
    report.checks.append(formats_check(description, network))
    if network.last_step:
        report.checks.append(_int8_last_step(graph, network))
    if weights is not None:
        from .int8 import weights_match

        given = _weights_given(weights, [layer.name for layer in network.layers], source["format"], source["layer"],
                               source["scope"], source["layer_index"])
        report.checks.append(weights_match(network, given))
    blocking = _why_not_runnable(report.checks) or next(
        (f"{c.name} failed" for c in report.checks if c.kind in ("int8.lstm", "signature", "int8.formats",
                                                                   "last_step") and not c.passed), None)
    if blocking:
        report.checks.append(Check("numeric", False, f"not run: {blocking}"))
        return report
    for name in runtimes:
        report.checks += ops_checks(model_data, description, network, report, name, seed=settings["seed"],
                                    sequences=settings["sequences"])
    # LiteRT's default, with XNNPACK: it takes the ops around the LSTM (QUANTIZE, a Dense head), rounding its own
    # way, and gives back only the outputs; held to the float64 reference within twice the builtin kernels' error
    yardstick = [c for c in report.checks if c.runtime == "litert" and c.kind in ("int8.ops", "runtime")]
    if "litert" in runtimes and yardstick and all(c.passed and c.kind == "int8.ops" for c in yardstick):
        from .int8 import _outputs_on

        report.checks += _outputs_on(model_data, description, network, report, [("litert", True)],
                                     settings["seed"], settings["sequences"])
    report.notes.append(_free_running_error(model_data, description, network, settings,
                                            _float_network(network, None if weights is None else given)))
    if data is not None:
        from .data import data_checks, load_data

        data_checks(model_data, description, network, report, runtimes, data, load_data(data, network), max_error,
                    _float_network(network, None if weights is None else given))
    return report


def _int8_last_step(graph, network) -> Check:
    """The int8 op check recomputes a STRIDED_SLICE from its own constants, so it is the constants that must take
    the final step (as head.py holds a float model's): the final LSTM op's output sliced at its last step."""
    from ..model import BuiltinOperator
    from .head import _op_problems, slice_problems

    tensors = graph.subgraph.tensors
    slices = [op for op in graph.head if op.code == BuiltinOperator.STRIDED_SLICE]
    problems = [] if len(slices) == 1 else [f"{len(slices)} STRIDED_SLICE ops after the LSTM ops, expected 1"]
    for op in slices[:1]:
        problems += _op_problems(op, BuiltinOperator.STRIDED_SLICE, 2, 4, tensors)
        if not problems:
            if op.inputs[0] not in graph.rnn_ops[-1].outputs:
                problems.append("the STRIDED_SLICE does not slice the final LSTM op's output")
            problems += slice_problems(op, tensors, network.time_major, backward=False)
    if problems:
        return Check("last_step", False, "; ".join(problems))
    return Check("last_step", True, "STRIDED_SLICE takes the final step of the last LSTM op's output")


def _free_running_error(model_data, description, network, settings, float_network) -> str:
    """What the int8 model's quantization costs, measured (not bounded: it compounds through the recurrence): its
    outputs on LiteRT over seeded inputs, the state carried, against the float64 run of the float weights given
    (else of its own dequantized ones)."""
    from .data import errors, expected_outputs, run_model

    rng = np.random.default_rng(settings["seed"])
    x = description.subgraphs[0].tensors[description.subgraphs[0].inputs[0]]
    xs = [rng.standard_normal(x.shape).astype(np.float32) for _ in range(settings["sequences"])]
    try:
        _, got = run_model(model_data, description, network, "litert", xs)
        worst, mean = errors(got, expected_outputs(float_network or network, xs))
    except (RuntimeError, ValueError) as exc:
        return f"free-running error not measured: {' '.join(str(exc).split())}"
    return (f"free-running error on LiteRT over {len(xs)} invokes, the state carried, against the float64 network "
            f"of {'the given float weights' if float_network else 'its dequantized weights'}: max {worst:.4g}, "
            f"mean {mean:.4g} (measured, not bounded)")


def _installed(runtime: str) -> bool:
    import importlib.util

    from ..runners import PACKAGES

    return importlib.util.find_spec(PACKAGES[runtime][0]) is not None


def _weights_given(weights, names: list[str], format, layer, scope, layer_index) -> list[CellWeights]:
    """--weights as one CellWeights per direction of the model's layers (`names`, in order)."""
    if isinstance(weights, CellWeights) or hasattr(weights, "roles"):  # one cell's weights, of any kind
        weights = [weights]
    if isinstance(weights, (list, tuple)):  # one per layer (or forward, backward), in the model's op order
        if len(weights) != len(names):
            raise ConfigError(f"{len(weights)} sets of weights for a model of {len(names)} layers")
        return list(weights)
    if len(names) > 1 and _holds_a_network(format or detect_format(Path(weights))):
        # A whole PyTorch nn.RNN or Keras model: its cells in order, matched to the model's layers by position.
        from ..sources import import_cells

        found = [c.weights for c in import_cells(weights, format=format)[0]]
        if len(found) != len(names):
            raise ConfigError(f"the weights hold {len(found)} cells; the model has {len(names)} layers")
        return found
    # Each layer's weights are read under its cell name (a single cell's under --scope when given).
    names = [scope] if scope and len(names) == 1 else names
    return [load_weights(weights, name, format=format, layer=layer, layer_index=layer_index) for name in names]


def _float_network(network, weights):
    """The network with the given float weights (one per direction; a Dense head keeps the model's), for the error
    on the user's data; None when none were given, or not of this model's shapes."""
    if not network.takes(weights):
        return None  # weights.match says they are not this model's: the model's own weights are the reference
    from dataclasses import replace

    given = iter(weights)
    return replace(network, int8=None, stages=[
        tuple(replace(layer, weights=next(given), int8=None) for layer in stage) if isinstance(stage, tuple)
        else replace(stage, weights=next(given), int8=None) for stage in network.stages])


def _verify_foreign(data, label, model, against, runtime, format, on_data, settings) -> VerifyReport:
    """A model another tool wrote, against its source (foreign.py): what tflrnn can check of it."""
    from .foreign import foreign_checks

    if on_data is not None:
        raise ConfigError("--data runs a network tflrnn reads against its float reference; this model holds none "
                          "(compare it with its source by --against alone)")
    runtimes = [r for r in RUNTIMES if _installed(r)] if runtime == "all" else [runtime]
    report = VerifyReport(model=label, bytes=len(data), sha256=sha256(data), settings=settings)
    foreign_checks(data, model, report, runtimes, against=against, format=format, seed=settings["seed"],
                   sequences=settings["sequences"], atol=settings["atol"], rtol=settings["rtol"])
    return report


def _verify_portable(data, label, model, weights, against, runtimes, settings, on_data, **source) -> VerifyReport:
    """verify for a model of the portable lowering (portable.py, and int8.py for a full-int8 one)."""
    from .portable import portable_checks

    # The weights are read under the names of the layers the checks recover (not at all when there are none).
    weights_for = None if weights is None else (lambda names: _weights_given(weights, names, **source))
    report = VerifyReport(model=label, bytes=len(data), sha256=sha256(data), settings=settings)
    portable_checks(data, model, report, runtimes, seed=settings["seed"], sequences=settings["sequences"],
                    on_data=on_data, float_network_of=_float_network,
                    atol=settings["atol"], rtol=settings["rtol"], weights_for=weights_for, against=against, **source)
    return report


# Each lowering's verifier, by the name the lowering registry gives it.
_VERIFIERS = {"fused": _verify_fused, "portable": _verify_portable}


def against_refused(directions: int, has_dense: bool, hybrid: bool, hybrid_lstm: bool = False) -> str | None:
    """Why `--against` cannot compare a model of this shape (None: it can). The manifest asks this too, to leave
    the comparison out instead of failing the entry."""
    if hybrid_lstm:
        return ("--against a hybrid (int8) LSTM is not supported: its int8 rounding of x and h in four gates compounds "
                "over the steps; verify it with --weights SOURCE (its weights must quantize to the model's), or the "
                "float model against the source")
    if hybrid and (directions > 1 or has_dense):
        return ("--against a hybrid (int8) stack, bidirectional model or classifier is not supported: its int8 "
                "rounding compounds through the layers; verify the float model against the source")
    return None


def _holds_a_network(fmt: str) -> bool:
    """A source format that holds a whole network (a stack, both directions, a classifier) and a model to run."""
    return fmt in FORMATS and FORMATS[fmt].runs


def _why_not_runnable(checks: list[Check]) -> str | None:
    blocking = [c.name for c in checks if not c.passed and c.blocks_numeric]
    return f"{', '.join(blocking)} failed" if blocking else None
