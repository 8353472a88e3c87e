"""verify on the user's data (`--data FILE [--max-error E]`): the model run over the user's own sequences, the state
as the model keeps it, against the float network in float64 on the same sequences.

The float network is the model's own weights (a full-int8 model's dequantized ones), or the float weights given
with --weights, so the error is what quantization (or anything else) costs on data that matters to the user. Each
runtime's max and mean absolute error over every output value are reported and, with --max-error, bounded: a
model whose int8 ranges saturate on real inputs fails here although each of its kernels did what the graph says.
For a full-int8 model the share of values beyond each int8 format, per role, is reported too; it is measured on
the float64 run of the model's weights, so it says what the formats clip, whichever runtime runs them.

The same run serves `build --quantize full-int8`, which reports the error and the clipped shares on the
calibration data (`measure`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import quantization as quant, reference
from ..reference import MAX_VERIFY_MULTIPLY_ADDS
from ..lowering import LOWERINGS, portable
from ..lowering.common import SIGNATURE_INPUT, SIGNATURE_KEY, SIGNATURE_OUTPUT
from ..model import Activation, Model
from ..network import Int8Format, Network
from .report import Check, VerifyReport

# The roles of a full-int8 model's values, in the order they are reported.
ROLES = ("input", "projection", "recurrent", "sum", "dense")


@dataclass
class DataRun:
    """One runtime's outputs over the data, against the float64 reference."""

    runtime: str
    max_error: float
    mean_error: float
    refused: str | None = None  # the runtime's reason, when it could not run the model


@dataclass
class Measured:
    sequences: int
    runs: list[DataRun] = field(default_factory=list)
    clipped: dict[str, float] | None = None  # role -> share of its values beyond its int8 format
    # "<role> of <layer>" -> how many of its format's levels its values use, of how many (256; 65,536 for the int16
    # input)
    levels: dict[str, tuple[int, int]] | None = None


def load_data(path, network: Network) -> list[np.ndarray]:
    """The user's sequences, each one invoke's input in the model's layout and shape (a dynamic time axis takes
    any length)."""
    from .. import quantization
    from ..errors import ConfigError

    sequences = quantization.load_calibration(path, network, what="--data")
    lead = [network.time_steps, network.batch_size] if network.time_major else [network.batch_size,
                                                                              network.time_steps]
    time_axis = 0 if network.time_major else 1
    x = sequences[0]
    if network.dynamic_time:
        lead[time_axis] = x.shape[time_axis]
    if list(x.shape[:2]) != lead:
        layout = "[N, T, B, I]" if network.time_major else "[N, B, T, I]"
        raise ConfigError(f"--data {path}: sequences {list(x.shape)} in {layout}; the model takes "
                          f"{[*lead, network.input_size]} per invoke")
    # The reference runs every sequence twice (the outputs, and an int8 model's clipped shares), in float64.
    steps = len(sequences) * x.shape[0] * x.shape[1]
    work = 2 * steps * (sum(2.0 * (layer.weights.input_weights.size + layer.weights.recurrent_weights.size)
                            for layer in network.layers) + sum(2.0 * d.weights.size for d in network.head))
    if work > MAX_VERIFY_MULTIPLY_ADDS:
        most = max(1, int(len(sequences) * MAX_VERIFY_MULTIPLY_ADDS // work))
        raise ConfigError(f"--data {path}: {len(sequences):,} sequences need about {work:.2g} float64 multiply-adds "
                          f"of the reference; its budget is {MAX_VERIFY_MULTIPLY_ADDS:.2g}: give at most {most:,}")
    return sequences


def serving_wiring(model: Model) -> dict:
    """How a runtime finds the serving signature's tensors: the input, the states fed as inputs (state io), the
    outputs (forward before backward) and the final states, in layer order (state, or state_0, state_1, ...)."""
    from ..runners import micro_arena_bytes

    graph = model.subgraphs[0]
    serving = next(s for s in model.signatures if s.key == SIGNATURE_KEY)
    state_keys = sorted((k for k in serving.inputs if k.startswith(portable.STATE)),
                        key=lambda k: int(k.rpartition("_")[2]) if "_" in k else -1)
    output_keys = [k for k in serving.outputs if k.startswith(SIGNATURE_OUTPUT)]
    inputs = [serving.inputs[SIGNATURE_INPUT], *(serving.inputs[k] for k in state_keys)]
    outputs = [serving.outputs[k] for k in output_keys] + [serving.outputs[k] for k in state_keys]
    return {"inputs": inputs, "outputs": outputs, "count": len(output_keys), "state_keys": state_keys,
            "wiring": {"input_names": [SIGNATURE_INPUT, *state_keys], "output_names": output_keys + state_keys,
                       "output_shapes": [list(graph.tensors[i].shape) for i in outputs],
                       "output_dtypes": [graph.tensors[i].dtype for i in outputs],
                       "input_positions": [graph.inputs.index(i) for i in inputs],
                       "output_positions": [graph.outputs.index(i) for i in outputs],
                       "arena": micro_arena_bytes(model)}}


def _format_of(tensor) -> Int8Format | None:
    q = tensor.quantization
    return Int8Format(float(q.scale[0]), int(q.zero_point[0])) if tensor.dtype == "int8" and q else None


def run_model(data: bytes, model: Model, network: Network, runtime_name: str, xs: list[np.ndarray], *,
              xnnpack: bool = False, then_reset: bool = False,
              states_too: bool = False) -> tuple[str, list[list[np.ndarray]]]:
    """The model's outputs (real values: an int8 interface dequantized at its tensors' formats) for each sequence,
    run one after the other with the state as the model keeps it: carried by the model from a reset, fed back
    (io, from zeros), or none; and the runtime's version. `then_reset` (a carried state): after them, the state
    reset and the first sequence run again, its outputs last; `states_too`: each invoke's final states (io) after
    its outputs. Raises RuntimeError / ValueError when the runtime cannot run it."""
    from .. import runtime

    found = serving_wiring(model)
    tensors = model.subgraphs[0].tensors
    in_formats = [_format_of(tensors[i]) for i in found["inputs"]]
    out_formats = [_format_of(tensors[i]) for i in found["outputs"]]
    states = [np.full(tensors[i].shape, f.zero_point, np.int8) if f else np.zeros(tensors[i].shape, np.float32)
              for i, f in zip(found["inputs"][1:], in_formats[1:])]
    carry = network.state == "carry"
    reset_key = LOWERINGS[network.lowering].reset_key if carry else None
    results = []
    with runtime.load(runtime_name, data, found["inputs"][0], found["outputs"], extra_inputs=found["inputs"][1:],
                      reset_key=reset_key, xnnpack=xnnpack, **found["wiring"]) as interpreter:
        if xs and tuple(xs[0].shape) != tuple(tensors[found["inputs"][0]].shape):  # a dynamic time axis
            interpreter.resize(list(xs[0].shape))
            if reset_key is not None:
                interpreter.reset()
        def run(x):
            given = x if in_formats[0] is None else np.clip(
                np.rint(x.astype(np.float64) / in_formats[0].scale) + in_formats[0].zero_point, -128, 127
            ).astype(np.int8)
            values = interpreter.run(given, *states)
            shown = values if states_too else values[:found["count"]]
            results.append([v.astype(np.float64) if f is None else (v.astype(np.float64) - f.zero_point) * f.scale
                            for v, f in zip(shown, out_formats)])
            return values[found["count"]:]

        for x in xs:
            finals = run(x)
            if states:
                states = finals
        if then_reset and carry and xs:
            interpreter.reset()
            run(xs[0])
        return interpreter.version, results


def expected_outputs(network: Network, xs: list[np.ndarray]) -> list[list[np.ndarray]]:
    """The float64 network over the sequences, its state as the model keeps it (chained unless it keeps none)."""
    found, states = [], None
    for x in xs:
        outputs, finals = reference.run_network(network, x, states)
        found.append(outputs)
        states = finals if network.state != "zero" else None
    return found


def errors(got: list[list[np.ndarray]], expected: list[list[np.ndarray]]) -> tuple[float, float]:
    """Max and mean absolute error over every output value (inf when an output is not finite); ValueError when an
    output has another number of values than the network gives (a model whose slice or shape constants were
    changed: the runtime sizes its outputs from them)."""
    for gs, es in zip(got, expected):
        for g, e in zip(gs, es):
            if g.size != e.size:
                raise ValueError(f"the model's output has {g.size} values where its network gives {e.size} "
                                 f"{list(e.shape)}")
    every = np.concatenate([np.abs(g.reshape(e.shape) - e).ravel() for gs, es in zip(got, expected)
                            for g, e in zip(gs, es)])
    if not np.all(np.isfinite(every)):
        return float("inf"), float("inf")
    return float(every.max(initial=0.0)), float(every.mean()) if every.size else 0.0


def clipped_shares(network: Network, xs: list[np.ndarray]) -> tuple[dict[str, float], dict[str, int]]:
    """For a full-int8 network: per role, the share of the values the float64 run of its weights reaches that its
    int8 format clips (beyond its ends by more than half a step; a sum before TANH only where the clip moves tanh by
    more than a step of TANH's output, 1/128: past that tanh is flat, which is why the sum is clipped), and per
    tensor (role/layer) how many of its format's levels its values occupy (256; 65,536 for an int16 input): a
    degenerate range puts them all on one or two."""
    plan = network.int8
    beyond: dict[str, list[int]] = {role: [0, 0] for role in ROLES}
    used: dict[str, np.ndarray] = {}

    def seen(role: str, where: str, values: np.ndarray, fmt: Int8Format, tanh_follows: bool = False,
             sigmoid_follows: bool = False) -> None:
        low, high = quant.representable(fmt)
        if tanh_follows or sigmoid_follows:  # sigmoid(x) = (1 + tanh(x / 2)) / 2, in steps of 1/256
            half = 2.0 if sigmoid_follows else 1.0
            clipped = np.abs(np.tanh(values / half) - np.tanh(np.clip(values, low, high) / half)) > 1 / 128
        else:
            clipped = (values < low - fmt.scale / 2) | (values > high + fmt.scale / 2)
        counts = beyond.setdefault(role, [0, 0])
        counts[0] += int(np.count_nonzero(clipped))
        counts[1] += values.size
        if fmt.bits != 8 and role != "input":  # (an int16 cell state has levels enough)
            return
        low_level, high_level = fmt.limits
        levels = np.clip(np.rint(values / fmt.scale) + fmt.zero_point, low_level, high_level).astype(np.int64)
        used.setdefault(f"{role} of {where}", np.zeros(high_level - low_level + 1, bool))[
            np.unique(levels) - low_level] = True

    states = None
    for x in xs:
        trace = []
        _, finals = reference.run_network(network, x, states, trace)
        seen("input", "the network", np.asarray(x, np.float64), plan.input)
        for item in trace:
            if len(item) == 4 and item[0].kind != "rnn":  # each value its steps hold, by its role
                f = plan.layers[item[0].name]
                for role, values in reference.cell_values(*item).items():
                    if role in f.formats:
                        seen(role, f"'{item[0].name}'", values, f.formats[role],
                             tanh_follows=role in ("candidate_sum", "g_sum"),
                             sigmoid_follows=role in ("gate_sum", "ifo_sum"))
            elif len(item) == 4:
                layer = item[0]
                f = plan.layers[layer.name]
                projection, recurrent, summed = reference.layer_values(*item)
                tanh = layer.activation == Activation.TANH
                if not tanh:  # the ADD applies a relu-like activation itself
                    summed = reference.activate(summed, layer.activation)
                seen("projection", f"'{layer.name}'", projection, f.projection)
                seen("recurrent", f"'{layer.name}'", recurrent, f.recurrent)
                seen("sum", f"'{layer.name}'", summed, f.sum, tanh_follows=tanh)
            else:
                dense, _, pre = item
                if dense.activation in ("relu", "relu6"):
                    pre = np.clip(pre, 0, 6 if dense.activation == "relu6" else np.inf)
                seen("dense", f"'{dense.name}'", pre, plan.dense[dense.name].output,
                     tanh_follows=dense.activation == "tanh")
        states = finals if network.state != "zero" else None
    shares = {role: count / total for role, (count, total) in beyond.items() if total}
    return shares, {where: (int(levels.sum()), levels.size) for where, levels in used.items()}


def measure(data: bytes, model: Model, network: Network, xs: list[np.ndarray], runtimes: list[tuple[str, bool]],
            float_network: Network | None = None) -> Measured:
    """The model on each (runtime, XNNPACK) over the sequences against the float64 run of `float_network` (the
    model's own network when None); a runtime that cannot run the model is left out."""
    expected = expected_outputs(float_network or network, xs)
    found = Measured(len(xs))
    for runtime_name, xnnpack in runtimes:
        label = f"{runtime_name}+xnnpack" if xnnpack else runtime_name
        try:
            _, got = run_model(data, model, network, runtime_name, xs, xnnpack=xnnpack)
            found.runs.append(DataRun(label, *errors(got, expected)))
        except (RuntimeError, ValueError) as exc:
            found.runs.append(DataRun(label, np.inf, np.inf, " ".join(str(exc).split())))
    if network.int8 is not None:
        found.clipped, found.levels = clipped_shares(network, xs)
    return found


def clipped_text(clipped: dict[str, float]) -> str:
    return ", ".join(f"{role} {100 * share:.2g}%" for role, share in clipped.items())


def data_checks(data: bytes, model: Model, network: Network, report: VerifyReport, runtimes: list[str], path,
                xs: list[np.ndarray], max_error: float | None, float_network: Network | None = None) -> None:
    """The `data` check on each runtime that runs the model, and the report's `data` section; `xs` the sequences
    load_data read from `path` (before anything ran, so that a refusal costs nothing)."""
    pairs = [(name, xnnpack) for name in runtimes
             for xnnpack in ((False, True) if name == "litert" and LOWERINGS[network.lowering].xnnpack else (False,))]
    found = measure(data, model, network, xs, pairs, float_network)
    weights = ("the float weights given (--weights) for its recurrent layers" if float_network is not None
               else "the model's own weights")
    carried = {"carry": "the state carried from one to the next", "io": "the final states fed back",
               "zero": "each from zeros"}[network.state]
    clipped = f"; beyond the int8 formats: {clipped_text(found.clipped)}" if found.clipped else ""
    for run in found.runs:
        if run.refused:  # a run that did not happen must not pass for one that did
            report.checks.append(Check("data", False, f"{len(xs)} sequences of {path}: the runtime did not run "
                                                      f"them: {run.refused[:300]}", runtime=run.runtime))
            continue
        bound = "" if max_error is None else f", bound {max_error:g} (--max-error)"
        passed = np.isfinite(run.max_error) and (max_error is None or run.max_error <= max_error)
        report.checks.append(Check(
            "data", bool(passed),
            f"{len(xs)} sequences of {path} ({carried}) against the float64 network of {weights}: max abs error "
            f"{run.max_error:.4g}, mean {run.mean_error:.4g}{bound}{clipped}",
            max_abs_error=run.max_error if np.isfinite(run.max_error) else None, runtime=run.runtime))
    report.data = {"path": str(path), "sequences": len(xs), "max_error": max_error,
                   "errors": {run.runtime: {"max": run.max_error if np.isfinite(run.max_error) else None,
                                            "mean": run.mean_error if np.isfinite(run.mean_error) else None}
                              for run in found.runs if not run.refused},
                   "clipped": found.clipped}
