"""verify's op-by-op check of a full-int8 model of any cell kind (`int8.ops`): every op of the serving graph
recomputed in float64 from the interpreter's own values of its inputs, as the kernels define it.

The model runs on a real interpreter that keeps every tensor (LiteRT, tf.lite; TFLite Micro with
kPreserveAllTensors) over several invokes, the state carried as the model keeps it. Then, op by op in graph order,
the inputs are read back (a constant's int8 weights and int32 biases dequantized per channel; the caller's inputs as
given), the op's real-valued result is computed here and clamped to its output's int8 range, and the output the
interpreter wrote must lie within a few steps (LSB, the output format's scale) of it:
    data movement (RESHAPE, UNPACK, PACK, SPLIT, CONCATENATION), DEQUANTIZE   exact
    QUANTIZE, FULLY_CONNECTED, ADD, SUB, MUL                                  1 LSB (rounding, fixed-point multiplier);
                                                                              an int16 FULLY_CONNECTED 2 (INT16_FC_STEPS)
    TANH, LOGISTIC, SOFTMAX                                                   2 LSB (tables and fixed point differ);
                                                                              on int16, 4 (INT16_SQUASH_STEPS)
    READ_VARIABLE                   the state the previous invoke assigned (zeros at its zero point at first and
                                    after the `reset` signature): a lost or stale state fails here
Each op is judged from the values it was given, so rounding cannot compound and a wrong weight, scale, format or
wiring is off by many steps. It restates the kernels' arithmetic from their sources (TFLite's reference kernels,
TFLite Micro's), not the quantizer that chose the formats; the free-running error against the float64 reference
is measured and reported beside it.
"""

from __future__ import annotations

import numpy as np

from .. import quantization as quant
from ..lowering import portable
from ..lowering.common import SIGNATURE_INPUT, SIGNATURE_KEY, SIGNATURE_OUTPUT
from ..model import Activation, BuiltinOperator as Op, Model
from ..network import Network
from .report import Check, VerifyReport

EXACT = {Op.RESHAPE, Op.UNPACK, Op.PACK, Op.SPLIT, Op.CONCATENATION, Op.DEQUANTIZE, Op.STRIDED_SLICE}
ONE_STEP = {Op.QUANTIZE, Op.FULLY_CONNECTED, Op.ADD, Op.SUB, Op.MUL}
TWO_STEPS = {Op.TANH, Op.LOGISTIC, Op.SOFTMAX}
# The int16 LOGISTIC and TANH (16x8: a full-int8 LSTM's) rescale their input to steps of 1 / (3 x 4096) and read a
# 513-entry table between its points (activations.cc, LiteRT's and TFLite Micro's): the input's rounding moves tanh
# by up to 1.4 steps of its output (1/32768), the table's points and interpolation by 1-2 more (measured: 2.3)
INT16_SQUASH_STEPS = 4
# A 16x8 FULLY_CONNECTED's int16 output: TFLite Micro requantizes its int64 sums with the multiplier cut to 16 bits
# (MultiplyByQuantizedMultiplier for int64), a relative error up to 2^-16 besides the rounding: near full scale one
# more step (measured: 1.24 steps on a degenerate calibration); LiteRT rounds exactly
INT16_FC_STEPS = 2
_SKIPPED = {Op.CALL_ONCE, Op.VAR_HANDLE, Op.ASSIGN_VARIABLE}


def _real(tensor, values: np.ndarray) -> np.ndarray:
    """A tensor's values as reals: int8 / int32 by their (per-channel) quantization, float as they are."""
    q = tensor.quantization
    values = np.asarray(values)
    if values.dtype.kind != "i" or q is None:
        return values.astype(np.float64)
    scale = np.asarray(q.scale, np.float64)
    zero = np.asarray(q.zero_point, np.float64)
    if scale.size > 1:  # per channel, along the quantized dimension
        shape = [1] * values.ndim
        shape[q.quantized_dimension] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return (values.astype(np.float64) - zero) * scale


# What recomputing an op raises on values, wiring or options (another table, or none) that no kernel would take
MALFORMED = (ValueError, KeyError, IndexError, TypeError, AttributeError)


def malformed(exc: Exception) -> str:
    """A check's problem for one of MALFORMED."""
    return (f"an op's values, tensors or options are not what its kernel takes ({type(exc).__name__}: "
            f"{' '.join(str(exc).split())[:80]})")


def _range(tensor) -> tuple[float, float] | None:
    q = tensor.quantization
    if tensor.dtype not in ("int8", "int16") or q is None or len(q.scale) != 1:
        return None
    return quant.representable(quant.Int8Format(float(q.scale[0]), int(q.zero_point[0]),
                                                bits=16 if tensor.dtype == "int16" else 8))


def _activate(values: np.ndarray, activation: int) -> np.ndarray:
    return {Activation.NONE: values, Activation.RELU: np.maximum(values, 0),
            Activation.RELU6: np.clip(values, 0, 6), Activation.RELU_N1_TO_1: np.clip(values, -1, 1)}[activation]


def _compute(op, inputs: list, tensors) -> list[np.ndarray]:
    """The op's real-valued outputs from its real-valued inputs, as the kernel defines it."""
    code, options = op.code, op.options
    if code in (Op.QUANTIZE, Op.DEQUANTIZE, Op.RESHAPE):
        out = inputs[0].reshape(tensors[op.outputs[0]].shape)
        return [out]
    if code == Op.STRIDED_SLICE:  # the last step: each axis whole (masks) or one index (shrink)
        begin = tensors[op.inputs[1]].data
        index = tuple(int(begin[k]) if options.shrink_axis_mask >> k & 1 else slice(None)
                      for k in range(inputs[0].ndim))
        strides = tensors[op.inputs[3]].data if len(op.inputs) > 3 else None
        if any(not (options.begin_mask >> k & 1 and options.end_mask >> k & 1) for k, i in enumerate(index)
               if isinstance(i, slice)) or strides is None or np.any(np.ravel(strides) != 1):
            raise ValueError("a STRIDED_SLICE other than one step of whole axes (strides 1)")
        return [inputs[0][index]]
    if code == Op.UNPACK:
        return [np.take(inputs[0], k, axis=options.axis) for k in range(len(op.outputs))]
    if code == Op.PACK:
        return [np.stack(inputs, axis=options.axis)]
    if code == Op.CONCATENATION:
        return [np.concatenate(inputs, axis=options.axis)]
    if code == Op.SPLIT:
        axis = int(np.asarray(inputs[0]).reshape(-1)[0])
        return list(np.split(inputs[1], len(op.outputs), axis=axis))
    if code == Op.FULLY_CONNECTED:
        x, w = inputs[0], inputs[1]
        out = x.reshape(-1, w.shape[1]) @ w.T + (inputs[2] if len(inputs) > 2 and inputs[2] is not None else 0.0)
        return [_activate(out, options.activation).reshape(tensors[op.outputs[0]].shape)]
    if code in (Op.ADD, Op.SUB, Op.MUL):
        a, b = inputs
        out = a + b if code == Op.ADD else a - b if code == Op.SUB else a * b
        return [_activate(out, getattr(options, "activation", Activation.NONE))]
    if code == Op.TANH:
        return [np.tanh(inputs[0])]
    if code == Op.LOGISTIC:
        return [0.5 * (1 + np.tanh(inputs[0] / 2))]
    if code == Op.SOFTMAX:
        z = options.beta * inputs[0]
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return [e / e.sum(axis=-1, keepdims=True)]
    raise ValueError(f"no int8 arithmetic restated for op {Op(code).name}")


def ops_checks(data: bytes, model: Model, network: Network, report: VerifyReport, runtime_name: str, *, seed: int,
               sequences: int) -> list[Check]:
    """`int8.ops` on one runtime (int8.steps, beside it, checks each step's values and measures the free-running
    error)."""
    from .. import runtime
    from ..runners import micro_arena_bytes

    graph = model.subgraphs[0]
    tensors = graph.tensors
    serving = next(s for s in model.signatures if s.key == SIGNATURE_KEY)
    state_keys = [k for k in serving.inputs if k.startswith(portable.STATE)]
    inputs = [serving.inputs[SIGNATURE_INPUT], *(serving.inputs[k] for k in state_keys)]
    outputs = [i for k, i in serving.outputs.items() if k.startswith(SIGNATURE_OUTPUT)]
    finals = [serving.outputs[k] for k in state_keys]
    # every value an op writes (constants are in the file; resources are handles)
    reads = sorted({o for op in graph.operators for o in op.outputs
                    if o >= 0 and tensors[o].data is None and tensors[o].dtype != "resource"} - set(outputs + finals))
    # a fused LSTM's h and c variables, read after each invoke: the state the next one starts from
    reads += sorted({i for op in graph.operators for i in op.inputs if i >= 0 and tensors[i].is_variable})
    fused = any(op.code == Op.UNIDIRECTIONAL_SEQUENCE_LSTM for op in graph.operators)
    wiring = {"input_positions": [graph.inputs.index(i) for i in inputs],
              "output_positions": [graph.outputs.index(i) for i in outputs + finals],
              "tensors": reads, "arena": micro_arena_bytes(model)}
    indices = outputs + finals + ([] if runtime_name == "micro" else reads)
    plan = network.int8
    rng = np.random.default_rng(seed)
    xs = [rng.standard_normal(tensors[inputs[0]].shape).astype(np.float32) for _ in range(sequences)]
    given = [quant.quantize_values(x, plan.input) if plan.int8_io else x for x in xs]
    zeros = [np.full(tensors[i].shape, tensors[i].quantization.zero_point[0], np.int8) if tensors[i].dtype == "int8"
             else np.zeros(tensors[i].shape, np.float32) for i in inputs[1:]]
    runs = []
    try:
        with runtime.load(runtime_name, data, inputs[0], indices, extra_inputs=inputs[1:],
                          reset_key=portable.RESET_KEY if network.state == "carry" and not fused else None,
                          **wiring) as interpreter:
            if runtime_name not in [r["name"] for r in report.runtimes]:
                report.runtimes.append({"name": runtime_name, "version": interpreter.version})
            states = zeros
            for x in given:
                fed = states if network.state == "io" else []
                values = interpreter.run(x, *fed)
                runs.append(([x, *fed], values))
                if network.state == "io":
                    states = values[len(outputs):len(outputs) + len(finals)]
            after_reset = None
            if network.state == "carry":
                interpreter.reset()
                after_reset = (([given[0]], interpreter.run(given[0])))
    except (RuntimeError, ValueError) as exc:
        message = " ".join(str(exc).split())
        if not isinstance(exc, runtime.IsolationError):
            message = f"the interpreter refused the model: {message}"
        return [Check("runtime", False, message, runtime=runtime_name)]

    worst, problems, carried, previous = 0.0, [], None, None
    checked = 0
    ends = [] if fused else _state_ends(graph, network)
    loosest = {}  # a fused LSTM's widest allowance for h, in steps of h (int8_lstm.check_op)
    for k, (fed, values) in enumerate(runs + ([after_reset] if after_reset else [])):
        known = dict(zip(outputs + finals, values[:len(outputs) + len(finals)]))
        known.update(zip(reads, values[len(outputs) + len(finals):]))
        known.update(zip(inputs, fed))
        first = k == 0 or k == len(runs)  # the first invoke, and the one after the reset: from zeros
        try:
            ratio, problem, carried, count = _check_invoke(graph, known, None if first else carried, runtime_name,
                                                           loosest)
        except MALFORMED as exc:
            ratio, count, problem = 0.0, 0, malformed(exc)
        if not fused:  # (a fused LSTM's check starts each invoke from the variables the one before left)
            problem = problem or _state_problem(graph, network, ends, known, None if first else previous,
                                                dict(zip(finals, values[len(outputs):len(outputs) + len(finals)])))
        previous = known
        checked += count
        worst = max(worst, ratio)
        if problem:
            problems.append(f"invoke {k + 1}{' (after reset)' if k == len(runs) else ''}: {problem}")
    kept = {"carry": "the state carried by the model", "io": "the final states fed back",
            "zero": "each invoke from zeros"}[network.state]
    detail = (f"{len(runs)} invokes ({kept}{', then reset' if after_reset else ''}): each of {checked:,} op "
              f"outputs recomputed from the interpreter's own inputs to it, worst {worst:.2f} of its "
              "quantization-step bound")
    if loosest.get("h_steps", 0) > LOOSE_STEPS:
        detail += (f"; an LSTM's h allowed up to {loosest['h_steps']:.0f} steps of its format late in a sequence (its "
                   "c, which no output shows, carried with its bound over steps with f near 1): those steps are "
                   "checked loosely")
    return [Check("int8.ops", not problems, f"{'; '.join(problems[:2])}; {detail}" if problems else detail,
                  runtime=runtime_name)]


def _state_ends(graph, network: Network) -> list[tuple[str, int, int | None]]:
    """Each direction's (name, its last step's h, the state it starts from): by the names the lowering gives
    them (<layer>/h<t>; a backward direction ends at t = 0; <layer>/state, read from its variable or given)."""
    index = {t.name: k for k, t in enumerate(graph.tensors)}
    found = []
    for stage in network.stages:
        for d, layer in enumerate(stage if isinstance(stage, tuple) else (stage,)):
            last = 0 if d == 1 else network.time_steps - 1
            # a state holding more than h (an LSTM's [h | c]) is what its last step leaves in <layer>/final_state
            end = index.get(f"{layer.name}/final_state", index.get(f"{layer.name}/h{last}"))
            found.append((layer.name, end, index.get(f"{layer.name}/state")))
    return found


def _state_problem(graph, network: Network, ends, known: dict, previous: dict | None, final_outputs: dict):
    """Whether the state went where the network keeps it: carried, each direction starts from the h its last step
    ended at in the previous invoke (zeros at first and after a reset); io, the final state outputs are those h."""
    if network.state == "zero":
        return None
    finals = list(final_outputs) or [None] * len(ends)  # the final state outputs (io), in layer order
    for (name, last, start), final in zip(ends, finals):
        if last is None or last not in known:
            return f"layer '{name}': its last step's h was not read back"
        if network.state == "carry" and (start is None or start not in known):
            return f"layer '{name}': no state read from its variable ('{name}/state')"
        if network.state == "carry":
            fmt = graph.tensors[start].quantization
            expected = (np.full(graph.tensors[start].shape, fmt.zero_point[0], graph.tensors[start].dtype)
                        if previous is None else previous.get(last))
            if expected is None or not np.array_equal(known[start], expected):
                return f"layer '{name}': it did not start from the state its last step left"
        if network.state == "io" and final is not None:
            got = _real(graph.tensors[final], final_outputs[final])
            expected = _real(graph.tensors[last], known[last]).reshape(got.shape)
            if not np.allclose(got, expected, rtol=0, atol=1e-6):
                return f"layer '{name}': its final state output is not its last step's h"
    return None


LOOSE_STEPS = 8  # an allowance past this many steps of h is said to be loose


def _check_invoke(graph, known: dict, carried: dict | None, runtime_name: str = "litert", loosest: dict | None = None):
    """One invoke: (worst error / bound, the first problem or None, the states it assigned, outputs checked)."""
    tensors = graph.tensors
    worst, problem, assigned, count = 0.0, None, {}, 0
    handles = {}
    for op in graph.operators:
        if op.code == Op.VAR_HANDLE:
            handles[op.outputs[0]] = getattr(op.options, "shared_name", "")  # (op.options checks it is named)
            continue
        if op.code == Op.ASSIGN_VARIABLE:
            assigned[handles.get(op.inputs[0])] = known.get(op.inputs[1])
            continue
        if op.code in _SKIPPED:
            continue
        if op.code == Op.UNIDIRECTIONAL_SEQUENCE_LSTM:
            from .int8_lstm import check_op

            names = [tensors[op.inputs[18]].name, tensors[op.inputs[19]].name]
            start = None if carried is None or any(carried.get(n) is None for n in names) else carried
            ratio, found, final, checked = check_op(op, tensors, known, start, runtime_name, loosest)
            worst, problem, count = max(worst, ratio), problem or found, count + checked
            assigned.update(final)
            continue
        out = tensors[op.outputs[0]] if op.outputs else None
        if op.code == Op.READ_VARIABLE:
            got = known.get(op.outputs[0])
            name = handles.get(op.inputs[0])
            expected = (np.full(out.shape, out.quantization.zero_point[0], out.dtype)
                        if carried is None or carried.get(name) is None else carried[name])
            count += 1
            if got is None or not np.array_equal(np.asarray(got), np.asarray(expected)):
                problem = problem or f"'{out.name}' is not the state the previous invoke assigned"
            continue
        values = []
        for i in op.inputs:
            if i < 0:
                values.append(None)
            elif tensors[i].data is not None:
                values.append(_real(tensors[i], tensors[i].data))
            elif i in known:
                values.append(_real(tensors[i], known[i]))
            else:
                return worst, problem or f"'{tensors[i].name}' was not read back", assigned, count
        if op.code == Op.SPLIT:  # the axis is an int32 constant, not a value
            values[0] = tensors[op.inputs[0]].data
        expected = _compute(op, values, tensors)
        for index, value in zip(op.outputs, expected):
            if index not in known:
                continue
            t = tensors[index]
            got = _real(t, known[index]).reshape(value.shape)
            limits = _range(t)
            if limits is not None:
                value = np.clip(value, *limits)
            step = float(t.quantization.scale[0]) if _range(t) is not None else 0.0
            steps = (0 if op.code in EXACT else
                     INT16_FC_STEPS if op.code == Op.FULLY_CONNECTED and t.dtype == "int16" else
                     1 if op.code in ONE_STEP else INT16_SQUASH_STEPS if t.dtype == "int16" else 2)
            bound = steps * step + 1e-6 * (1 + float(np.max(np.abs(value), initial=0.0)))
            error = float(np.max(np.abs(got - value), initial=0.0))
            count += 1
            worst = max(worst, error / bound)
            if not error <= bound and problem is None:
                problem = f"{Op(op.code).name} '{t.name}' off by {error:.4g} (bound {bound:.4g})"
    return worst, problem, assigned, count

