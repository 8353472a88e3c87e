"""The numbers: the model run by a real interpreter on seeded inputs against the numpy reference, each op on the
input the runtime gave it, and against the source model in its own framework (--against)."""

from __future__ import annotations

import numpy as np

from .. import reference
from ..cell import ACTIVATION_NAMES, CellWeights, dequantize, quantize_int8
from ..lowering.fused import FusedGraph, RNNGraph
from ..model import BuiltinOperator
from .report import Check, Comparison, VerifyReport, _finite_max, _numeric_check
from .limits import DYNAMIC_LENGTHS


def _as_stored(w):
    """Float weights as a hybrid model stores them: W and R through int8 and back (an LSTM's each gate on its own,
    as the fused op takes each gate's W and R as a tensor)."""
    if getattr(w, "kind", "rnn") == "lstm":
        return type(w)(**{**w.roles(), **{role: np.concatenate([dequantize(*quantize_int8(rows))
                                                                for rows in w.gates(w.roles()[role])])
                                          for role in ("input_weights", "recurrent_weights")}})
    return CellWeights(dequantize(*quantize_int8(w.input_weights)), dequantize(*quantize_int8(w.recurrent_weights)),
                       w.bias)


def _has_dense(network: FusedGraph) -> bool:
    return any(op.code == BuiltinOperator.FULLY_CONNECTED for op in network.head)


def _against_checks(layers: list[RNNGraph], model_weights: list, inputs, runs: dict, report: VerifyReport, atol,
                    rtol, whole: bool, final: bool, **source) -> list[Check]:
    from ..against import run_source

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
    report.notes += declared_input_notes(g.input.shape, g.input.shape_signature, g.time_major,
                                         result.source.declared)
    report.notes += clip_notes([layer.cell_clip for layer in layers], result.source.format)
    # The scale of each step's terms along the source's own trajectory, for the rounding allowance. (A stack or
    # both directions compound their rounding: there, the outputs' own magnitude plus one stands in.)
    # A hybrid cell also rounds its weights (against the source's float ones) and its inputs each step.
    scales, extras, state = [], [], np.zeros(g.hidden_state.shape)
    lstm = any(layer.kind == "lstm" for layer in layers)
    for x, y in zip(inputs, result.outputs):
        if lstm:  # an LSTM's c is no output: the outputs' own magnitude plus one, times the steps it runs free
            steps = x.shape[0 if g.time_major else 1]
            scales.append(steps * (np.abs(y.astype(np.float64)) + 1.0))
            extras.append(0.0)
            continue
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


def clip_notes(clips: list[float], source_format: str) -> list[str]:
    """A note when the model clips an LSTM's c (its cell_clip) and is compared with a source that never does."""
    clips = sorted({clip for clip in clips if clip})
    if not clips:
        return []
    return [f"the model clips c (cell_clip {', '.join(f'{c:g}' for c in clips)}); the {source_format} source never "
            "does, so the two agree only where the clip never binds"]


def declared_input_notes(shape, signature, time_major: bool, declared) -> list[str]:
    """Where the model's fixed time steps, batch or layout (its input's `shape` and `signature`) differ from what
    the source model declares: not a failure (a streaming model built with --time-steps 1 on purpose is
    legitimate), but worth a look."""
    if declared is None:
        return []
    shape = list(shape)
    time_axis, batch_axis = (0, 1) if time_major else (1, 0)
    dynamic = signature is not None and signature[time_axis] == -1
    notes = []
    if isinstance(declared.time_steps, int) and not dynamic and shape[time_axis] != declared.time_steps:
        notes.append(f"{declared.origin} declares {declared.time_steps} time steps; this model takes "
                     f"{shape[time_axis]} per invoke")
    if declared.batch_size is not None and shape[batch_axis] != declared.batch_size:
        notes.append(f"{declared.origin} declares batch {declared.batch_size}; this model's batch is "
                     f"{shape[batch_axis]}")
    if declared.time_major is not None and declared.time_major != time_major:
        layouts = {True: "time-major [T, B, I]", False: "batch-major [B, T, I]"}
        notes.append(f"{declared.origin} is {layouts[declared.time_major]}; this model is {layouts[time_major]}")
    return notes


def _numeric_checks(data, network: FusedGraph, weights: list, report, inputs, atol, rtol, runtime_name: str,
                    float_weights: list | None = None, xnnpack: bool = False):
    """The numeric checks on one runtime, and the model's output for each input (None when it could not run).

    Every op is judged on its own: its input is what the runtime actually fed it (the previous op's output, read
    back from the interpreter), so an error is reported where it arises and does not spread. A backward direction
    is judged with time reversed: then it too runs forward from its carried state. A basic cell's op is judged step
    by step from its own previous outputs; an LSTM op, whose cell state c no output shows, runs free over its steps
    from the h and c the runtime's variables held when the invoke began (read back after the one before).
    `xnnpack` (LiteRT): with its default delegate, which computes the ops it takes without writing their
    intermediate tensors: the model's outputs are judged against the whole network run in float64 from the states
    the runtime's variables held.
    """
    from .. import runtime
    from ..runners import RESIZABLE, micro_arena_bytes

    label = f"{runtime_name}+xnnpack" if xnnpack else runtime_name
    layers = network.directions
    g0 = layers[0]
    tensors = network.subgraph.tensors
    # Each direction's variable state tensors (h; an LSTM's h and c), read back after each invoke for an LSTM model
    lstm = any(g.kind == "lstm" for g in layers)
    state_indices = [[next(i for i in g.operator.inputs if 0 <= i < len(tensors) and tensors[i] is state)
                      for state in g.states] for g in layers]
    if xnnpack:
        # the model's outputs; with a hybrid LSTM (which XNNPACK leaves to the builtin kernels) each op is judged on
        # its own output, read back even when the subgraph does not name it (a model whose outputs were changed)
        hybrid_outputs = [g.output_index for g in layers] if any(g.hybrid for g in layers) else []
        read_back = list(dict.fromkeys([g0.operator.inputs[0], *network.subgraph.outputs, *hybrid_outputs]))
    else:
        # Every activation an op reads or writes (not constants, not states), read back after each invoke.
        read_back = sorted({i for op in network.subgraph.operators for i in (*op.inputs, *op.outputs)
                            if 0 <= i < len(tensors) and tensors[i].data is None and not tensors[i].is_variable})
    if lstm or xnnpack:
        read_back += [i for indices in state_indices for i in indices if i not in read_back]
    time_axis = 0 if g0.time_major else 1
    dynamic = g0.input.shape_signature is not None and g0.input.shape_signature[time_axis] == -1
    # A dynamic-time model is resized to several lengths and checked at each; the first is its allocated one.
    # (TFLite Micro runs the length the model was allocated for.)
    lengths = list(dict.fromkeys([g0.input.shape[time_axis], *DYNAMIC_LENGTHS])) if dynamic and \
        runtime_name in RESIZABLE else [None]
    wiring = {"xnnpack": True} if xnnpack else {}
    if runtime_name == "micro":  # its tensors by position, and the others read by index
        wiring = {"input_positions": [network.subgraph.inputs.index(g0.operator.inputs[0])
                                      if g0.operator.inputs[0] in network.subgraph.inputs else 0],
                  "output_positions": [], "tensors": read_back, "arena": micro_arena_bytes(network.model)}
    try:
        # In a child process with a time limit and a memory cap: a hostile model may crash or hang the runtime.
        with runtime.load(runtime_name, data, g0.operator.inputs[0], read_back, **wiring) as interpreter:
            report.runtimes.append({"name": label, "version": interpreter.version})
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
        return [Check("runtime", False, message, runtime=label)], None

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
        if xnnpack and not any(g.hybrid for g in layers):  # (a hybrid LSTM alone: its op's output is the model's)
            return _whole_comparison(network, weights, values, starts, atol, rtol)
        parts = []
        for k, (g, w, (x_k, y_k), start) in enumerate(zip(layers, weights, views(values), starts)):
            if g.kind == "lstm" and g.hybrid:  # within what quantizing x and h each step may move it; its final c too
                indices = state_indices[k]
                final_c = values.get(indices[1]) if len(indices) == 2 else None
                parts.append(_hybrid_lstm_comparison(x_k, y_k, final_c, against[k] if against is not None else w,
                                                     start, g.time_major, bool(g.options.asymmetric_quantize_inputs),
                                                     atol, rtol, rounded=against is not None,
                                                     cell_clip=g.cell_clip))
                continue
            if g.kind == "lstm":
                parts.append(_lstm_comparison(x_k, y_k, w, start, g.time_major, atol, rtol,
                                              cell_clip=g.cell_clip))
                continue
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
        parts += [_head_comparison(network, op, values, atol, rtol) for op in network.head]
        return Comparison.worst(parts)

    def final_states(values: dict, starts: list[np.ndarray]) -> list[np.ndarray]:
        # What each state should hold after an invoke that began at `starts`: a basic cell's, its direction's last
        # output (time-reversed for backward), which the invoke's own check judged; an LSTM's c is no output, so
        # its [h | c] is the reference's over the invoke's own input from its start (not the variables read back:
        # a runtime that carried c wrongly would then pass the next invoke). With XNNPACK, the variables read back.
        found = []
        for g, w, indices, (x_k, y_k), start in zip(layers, weights, state_indices, views(values) if not xnnpack
                                                    else [(None, None)] * len(layers), starts):
            if xnnpack or (g.kind == "lstm" and g.hybrid):  # (a hybrid LSTM's final c is judged with its invoke)
                found.append(np.concatenate([values[i].reshape(tensors[i].shape) for i in indices], axis=-1))
            elif g.kind == "lstm":
                found.append(reference.run_lstm(x_k, w, time_major=g.time_major, initial_state=start,
                                                cell_clip=g.cell_clip)[1])
            else:
                found.append(_last_step(y_k, g.time_major))
        return found

    zeros = [np.zeros((g.hidden_state.shape[0], sum(t.shape[-1] for t in g.states)) if g.kind == "lstm"
                      else g.hidden_state.shape) for g in layers]
    outputs = network.subgraph.outputs
    firsts, carries, resets, identical = [], [], [], True
    for xs, runs, after_reset in results:
        firsts.append(compare(runs[0], zeros))
        starts = zeros
        for k in range(1, len(xs)):
            starts = final_states(runs[k - 1], starts)
            carries.append(compare(runs[k], starts))
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
            starts = final_states(values, starts)
        extra_checks.append(_numeric_check(
            "numeric.float_weights", Comparison.worst(parts), atol, rtol,
            "the hybrid model against the float weights it was quantized from, allowing for int8 rounding of weights "
            "and inputs", label))
    each = ""
    if xnnpack and not any(g.hybrid for g in layers):
        each = (" (with XNNPACK, which takes the ops after the recurrent ones: the model's outputs against the whole "
                "network run in float64 from the states its variables held, rtol times the steps)")
    elif xnnpack:
        each = " (with XNNPACK, which takes none of a hybrid LSTM alone: its output read back)"
    elif len(network.rnn_ops) > 1:
        each = f" (each of {len(network.rnn_ops)} layers on its own input)"
    if network.bidirectional:
        each += " (forward, and backward with its state carried from t=0 to the next invoke)"
    if lstm and not xnnpack and not any(g.hybrid for g in layers):  # (a hybrid one: below)
        each += ("; an LSTM op free-running over its steps from the h and c its variables held, within rtol times "
                 "the sum of its steps' terms")
    if any(g.hybrid and g.kind == "lstm" for g in layers):
        each += ("; a hybrid LSTM op step by step from its own outputs, x and h quantized per row as its kernel "
                 "quantizes them, c carried from its variable, and its final c")
    if any(g.hybrid for g in layers):
        each += "; hybrid int8: allowing for the kernel's int8 quantization of x and h each step"
    if dynamic and len(lengths) > 1:
        each += f"; resized to {len(lengths)} lengths: {', '.join(map(str, lengths))} steps"
    if any(op.code == BuiltinOperator.STRIDED_SLICE for op in network.head) and not xnnpack:
        each += "; the output is the last layer's final step, bit for bit"
    if _has_dense(network) and not xnnpack:
        each += "; each dense layer on its own input"
    return [
        _numeric_check("numeric.first_invoke", first, atol, rtol, f"from the zero state{each}", label),
        _numeric_check(
            "numeric.state_carried", carried, atol, rtol,
            f"{len(inputs) - 1} more invokes, each continuing from the previous one's final state", label,
        ),
        _numeric_check(
            "numeric.reset", reset, atol, rtol,
            "after reset_all_variables(), "
            + ("bit-identical to the first invoke" if identical else "differs from the first invoke"),
            label,
        ),
        *extra_checks,
    ], None if xnnpack else (results[0][0], [_model_output(network, values) for values in results[0][1]])


def _lstm_comparison(x: np.ndarray, y: np.ndarray, weights, start: np.ndarray, time_major: bool, atol: float,
                     rtol: float, final_c=None, cell_clip: float = 0.0) -> Comparison:
    """A float LSTM op's output y, step by step from its own outputs: the hybrid check's steps (below) with x and h
    as they are. Judged from the op's own h, no rounding feeds on itself through R: what is allowed is float32's
    rounding of each pre-activation's terms, and c's carried on through f (a 64-unit LSTM over 32 inputs: at most
    1.5e-4 at step 50, where a free run's allowance, grown with the steps, was 2.3e-3)."""
    return _hybrid_lstm_comparison(x, y, final_c, weights, start, time_major, False, atol, rtol,
                                   cell_clip=cell_clip, quantized=False)


# Values of x or h the check lets round to a neighbouring int8 level (a tie, or float32 against float64 in the scale)
_LEVEL_FLIPS = 1


def _kernel_quantized(v: np.ndarray, asymmetric: bool) -> tuple[np.ndarray, np.ndarray]:
    """Each row of v as the hybrid kernels quantize it before their int8 products, dequantized, and each row's step
    (portable_tensor_utils.cc, restated): symmetric, q = round(v * 127 / max|v|) with a float32 factor; asymmetric,
    the range [min(v, 0), max(v, 0)] over [-128, 127] with the zero point nudged to an integer."""
    v = np.asarray(v, np.float32)
    if not asymmetric:
        largest = np.abs(v).max(axis=-1, keepdims=True)
        safe = np.where(largest > 0, largest, np.float32(1))
        scale = (safe / np.float32(127)).astype(np.float32)
        inverse = (np.float32(127) / safe).astype(np.float32)
        q = np.clip(_round_away(v * inverse), -127, 127)
        return np.where(largest > 0, q * scale.astype(np.float64), 0.0), np.where(largest > 0, scale, 0.0)
    low = np.minimum(v.min(axis=-1, keepdims=True), 0).astype(np.float64)
    high = np.maximum(v.max(axis=-1, keepdims=True), 0).astype(np.float64)
    same = low == high
    scale = np.where(same, 1.0, (high - low) / 255.0)
    from_min, from_max = -128 - low / scale, 127 - high / scale
    zero = np.where(128 + np.abs(low / scale) < 127 + np.abs(high / scale), from_min, from_max)
    zero = np.clip(_round_away(zero), -128, 127)
    inverse = (np.float32(1) / scale.astype(np.float32)).astype(np.float32)
    q = np.clip(_round_away(zero + v * inverse), -128, 127)
    return np.where(same, 0.0, (q - zero) * scale.astype(np.float32).astype(np.float64)), np.where(same, 0.0, scale)


def _round_away(v):
    """TfLiteRound: half away from zero."""
    v = np.asarray(v, np.float64)
    return np.sign(v) * np.floor(np.abs(v) + 0.5)


def _hybrid_lstm_comparison(x, y, final_c, weights, start, time_major: bool, asymmetric: bool, atol: float,
                            rtol: float, rounded: bool = False, cell_clip: float = 0.0,
                            quantized: bool = True) -> Comparison:
    """A hybrid LSTM op (int8 W and R, float x, h and c; versions 2 and 3) step by step from its own outputs: step t
    is the LSTM step of its dequantized weights from the op's own x_t and h_{t-1} (its output at t-1; `start`'s h,
    the variable it began from, at t=0), each quantized per batch row as the kernel quantizes them every step
    (lstm_eval.cc, EvalHybrid: BatchQuantizeFloats; _kernel_quantized), and a c carried in float64 from `start`'s;
    its final c (the variable read back) against that carried c. What is left is float32's rounding (rtol x a
    pre-activation's terms) and, allowed for, _LEVEL_FLIPS values of x and of h landing on a neighbouring level
    (each gate's row: its largest |w| times the row's step): a gate's value moves by that (tanh) or a quarter of it
    (sigmoid); c carries its error on, scaled by f, B_c = (f + e_f) B_c + e_f |c| + e_i |g| + i e_g; h_t is allowed
    (o + e_o) B_c + e_o |tanh c|. Judged from the op's own h, no error feeds on itself through R; a weight or gate
    the kernel reads otherwise, or a lost state, is far outside. `rounded`: `weights` are the float ones the model
    was quantized from; each gate's W and R moved by at most half its int8 step, max|W_gate| / 127 / 2, which moves
    a pre-activation by that times sum |x| (and |h|). A `cell_clip` > 0 clips c as the kernel does (clipping moves
    no two values further apart, so B_c holds). Not `quantized`: a float op, x and h taken as they are."""
    from ..reference import _sigmoid, clip_cell

    units = weights.num_units
    w, r, b = (np.asarray(a, np.float64) for a in weights.arrays())
    xb = np.swapaxes(np.asarray(x, np.float64), 0, 1) if time_major else np.asarray(x, np.float64)
    yb = np.swapaxes(np.asarray(y, np.float64), 0, 1) if time_major else np.asarray(y, np.float64)
    w_largest, r_largest = np.abs(w).max(axis=1), np.abs(r).max(axis=1)
    # each gate's weights' rounding to int8 (with the float weights), per row
    w_half = np.repeat(np.abs(w).reshape(4, -1).max(axis=1) / 127.0 / 2, units) if rounded else np.zeros(4 * units)
    r_half = np.repeat(np.abs(r).reshape(4, -1).max(axis=1) / 127.0 / 2, units) if rounded else np.zeros(4 * units)

    h = np.asarray(start, np.float64)[:, :units]
    c = np.asarray(start, np.float64)[:, units:]
    bound_c = np.zeros_like(c)
    expected, allowance = np.empty_like(yb), np.empty_like(yb)
    for t in range(xb.shape[1]):
        if quantized:
            x_q, x_step = _kernel_quantized(xb[:, t], asymmetric)
            h_q, h_step = _kernel_quantized(h, asymmetric)
        else:
            (x_q, x_step), (h_q, h_step) = (xb[:, t], 0.0), (h, 0.0)
        terms = np.abs(x_q) @ np.abs(w).T + np.abs(h_q) @ np.abs(r).T + np.abs(b)
        e_z = (_LEVEL_FLIPS * (x_step * w_largest + h_step * r_largest) + rtol * (1.0 + terms)  # [B, 4U]
               + np.abs(xb[:, t]).sum(axis=-1, keepdims=True) * w_half + np.abs(h).sum(axis=-1, keepdims=True) * r_half)
        z = x_q @ w.T + b + h_q @ r.T
        i, f, g, o = (_sigmoid(z[:, :units]), _sigmoid(z[:, units:2 * units]), np.tanh(z[:, 2 * units:3 * units]),
                      _sigmoid(z[:, 3 * units:]))
        e_i, e_f, e_g, e_o = (e_z[:, k * units:(k + 1) * units] * (1.0 if k == 2 else 0.25) for k in range(4))
        bound_c = (f + e_f) * bound_c + e_f * np.abs(c) + e_i * np.abs(g) + i * e_g + rtol * (1.0 + np.abs(c))
        c = clip_cell(f * c + i * g, cell_clip)
        expected[:, t] = o * np.tanh(c)
        allowance[:, t] = (o + e_o) * bound_c + e_o * np.abs(np.tanh(c)) + rtol * (1.0 + np.abs(c))
        h = yb[:, t]
    if time_major:
        expected, allowance = np.swapaxes(expected, 0, 1), np.swapaxes(allowance, 0, 1)
    steps = _compare(np.asarray(y), expected, None, 0.0, None, atol, rtol, allowance)
    if final_c is None:
        return steps
    c_error = np.abs(np.asarray(final_c, np.float64).reshape(c.shape) - c)
    if np.all(c_error <= atol + bound_c):
        return steps
    return Comparison.worst([steps, Comparison(False, _finite_max(c_error), None,
                                               note="the final cell state c is off by more than its bound")])


def _whole_comparison(network: FusedGraph, weights: list, values: dict, starts: list, atol: float,
                      rtol: float) -> Comparison:
    """The model's outputs against the whole network run in float64 on the same input from `starts` (each
    direction's state: h, an LSTM's h | c), within atol + rtol * steps * (|expected| + 1): the recurrences run
    free over the steps."""
    g0 = network.directions[0]
    x = values.get(g0.operator.inputs[0])
    if x is None:
        return Comparison(False, None, None, note="the input was not read back")
    expected = _run_graph(network, weights, x, starts)
    steps = x.shape[0 if g0.time_major else 1]
    parts = []
    for index in network.subgraph.outputs:
        if index not in values or index not in expected:
            parts.append(Comparison(False, None, None, note=f"output tensor {index} was not computed"))
            continue
        e = expected[index]
        parts.append(_compare(values[index], e, None, steps * (np.abs(e) + 1.0), None, atol, rtol))
    return Comparison.worst(parts)


def _run_graph(network: FusedGraph, weights: list, x: np.ndarray, starts: list) -> dict[int, np.ndarray]:
    """Every tensor of the chain of recurrent ops and the head, computed in float64 from x and each direction's
    start state, by tensor index: the reference's meaning of each op (reference.run_cell, HEAD_OPS)."""
    layers = network.directions
    time_axis = 0 if layers[0].time_major else 1
    values = {layers[0].operator.inputs[0]: np.asarray(x, np.float64)}
    for op in network.rnn_ops:
        outs = []
        for g in network.directions_of(op):
            k = next(k for k, d in enumerate(layers) if d is g)
            source = values[op.inputs[0]]
            if g.backward:
                source = np.flip(source, axis=time_axis)
            y, _ = reference.run_cell(source, weights[k], g.options.activation, time_major=g.time_major,
                                      initial_state=starts[k], cell_clip=g.cell_clip)
            outs.append(np.flip(y, axis=time_axis) if g.backward else y)
        if len(outs) == 2 and len(op.outputs) == 1:
            values[op.outputs[0]] = np.concatenate(outs, axis=-1)
        else:
            values.update(zip(op.outputs, outs))
    for op in network.head:
        data = [values[i] for i in op.inputs if i in values]
        values[op.outputs[0]] = _head_expected(network, op, data)[0]
    return values


def _head_comparison(network: FusedGraph, op, values: dict, atol: float, rtol: float) -> Comparison:
    """One op after the RNN ops, on the input the runtime gave it, against the reference's meaning of it
    (reference.HEAD_OPS): a last-step slice and a concatenation exactly, a dense layer within the rounding of its
    dot products, an activation within the rounding of its input. A slice is expected to give the final step of
    the direction it takes, whatever constants the model holds (the structure check reads those)."""
    actual = values[op.outputs[0]]
    data = [values[i].astype(np.float64) for i in op.inputs if i in values]
    expected, pre, scale = _head_expected(network, op, data)
    activation = op.options.activation if op.code == BuiltinOperator.FULLY_CONNECTED else None
    if scale is None:  # exact
        exact = np.array_equal(actual, expected.astype(np.float32))
        if op.code == BuiltinOperator.STRIDED_SLICE:
            return Comparison(exact, 0.0 if exact else _finite_max(np.abs(actual - expected)), None,
                              note="" if exact else "the last step is not the final step of its direction")
        return Comparison(exact, 0.0 if exact else None, None, note="" if exact else "the concatenation differs")
    return _compare(actual, expected, pre, scale, activation, atol, rtol)


def _head_expected(network: FusedGraph, op, data: list) -> tuple:
    """(expected, pre-activation, scale) of a head op on its inputs' values `data` (reference.HEAD_OPS)."""
    tensors = network.subgraph.tensors
    attributes = {}
    if op.code == BuiltinOperator.STRIDED_SLICE:
        outputs = network.sequence_outputs
        attributes = {"time_major": network.directions[0].time_major,
                      "backward": len(outputs) == 2 and op.inputs[0] == outputs[1]}
        data = data[:1]
    elif op.code == BuiltinOperator.FULLY_CONNECTED:
        attributes = {"kernel": tensors[op.inputs[1]].data.astype(np.float64),
                      "bias": tensors[op.inputs[2]].data.astype(np.float64), "activation": op.options.activation}
        data = data[:1]
    elif op.code == BuiltinOperator.SOFTMAX:
        attributes = {"beta": op.options.beta}
    return reference.HEAD_OPS[op.code](*data, **attributes)


def _model_output(network: FusedGraph, values: dict) -> np.ndarray:
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
