"""verify for a full-int8 fused LSTM (lowering/fused_int8.py): what TFLite's integer LSTM kernel needs of its
tensors (`int8.lstm`), and each of its steps recomputed from the interpreter's own values (`int8.ops`, with
int8_ops.py, which checks the ops around it).

The kernel ("8x8_16": lstm_eval.cc in LiteRT and in TFLite Micro, docs/lstm-int8-kernel.md) forms each gate's
pre-activation from int8 x and h and the gates' int8 W and R, rescaled to Q3.12 (int16, steps of 2^-12,
saturating at +-8), applies sigmoid / tanh in 16-bit fixed point (Q0.15), updates the int16 cell state c at its
power-of-two scale and writes h = o tanh(c) as int8 at the output's format. Restated here from those sources, not
from the quantizer: a step is recomputed in float64 from the interpreter's own x_t and h_{t-1} (the op's input and
previous output, read back) and the dequantized weights; c, which no output shows, is carried in float64 from the
state the op started from (its variable, read back after the invoke before) with a bound that grows by each step's
rounding and shrinks by f, and narrows where the step's own h pins c down (h = o tanh(c) read backwards, where o
is not near 0 and tanh not near +-1). Each h_t must lie within
    o (|tanh(c +- B_c(t)) - tanh(c)| + E_tanh(c)) + e_o |tanh c| + 1 LSB of h,
    B_c(t) = (f + e_f) B_c(t-1) + e_f |c| + e_i |g| + i e_g + 2 LSB of c  (f c and i g rounded apart, Micro twice),
and the final c (the variable after the invoke) within B_c(T) of the carried one. The gates' errors, from the
kernels' sources and a port of their arithmetic checked bit for bit against both runtimes (docs/lstm-int8-kernel.md):
a pre-activation part is rescaled to Q3.12 with two roundings (1.5 steps of 2^-12) and saturates at +-8 as each
runtime's kernel saturates it, restated here: TFLite Micro clamps the input part and the recurrent part each, then
their sum; LiteRT's (and tf.lite's) MatrixBatchVectorMultiplyAccumulate clamps the input part, then adds the
recurrent part to it and clamps the sum (portable_tensor_utils.cc); LiteRT's fixed-point sigmoid is within 6.4, its tanh within 12 steps of 2^-15
(TFLite Micro's tables within 2.5); so e_i = e_f = e_o = E_sigmoid + 1.5 q / 4 and e_g = E_tanh + 1.5 q. A wrong
format, zero point or lost state is off by tens of steps of h.
"""

from __future__ import annotations

import numpy as np

from ..model import Activation
from .report import Check

PREACTIVATION_LIMIT = 8.0  # Q3.12 in int16: [-8, 8)
_U, _Q = 2.0 ** -15, 2.0 ** -12  # a gate output's step (Q0.15), a pre-activation's (Q3.12)
SIGMOID_ERROR = 7 * _U + 1.5 * _Q / 4  # gemmlowp's logistic within 6.4 u; the pre-activation's rounding, slope 1/4
TANH_GATE_ERROR = 12 * _U + 1.5 * _Q  # gemmlowp's tanh within 11.8 u; the pre-activation's rounding, slope 1
TANH_CELL_ERROR = 13 * _U  # tanh(c) from c's own scale: within 12.05 u
_GATE_NAMES = ("input", "forget", "cell", "output")


def _fmt(t):
    q = t.quantization
    if q is None or len(q.scale) != 1 or len(q.zero_point) != 1:
        return None
    return float(q.scale[0]), int(q.zero_point[0])


def _power_of_two_exponent(scale: float) -> int | None:
    exponent = int(np.round(np.log2(scale))) if scale > 0 else None
    return exponent if exponent is not None and 2.0 ** exponent == scale else None


def structure_check(graph) -> Check:
    """`int8.lstm`: each LSTM op as the integer kernel takes it (lstm.cc's Prepare and TFLite Micro's, restated):
    x, h and the output int8, h in the output's format (the kernel writes h there and copies it out); W and R int8,
    one scale each, zero point 0; each gate's bias int32 at x's scale x its W's scale (both kernels assume it, neither
    reads it); c int16, zero point 0, at a power-of-two scale 2^-15 .. 2^-9 (LiteRT requires it); five intermediates (four gates' float32, the
    hidden's int8 in h's format: LiteRT writes h in it); version 1; tanh, a cell_clip >= 0 (0: none), proj_clip 0."""
    problems = []
    for g in graph.directions:
        op, name = g.operator, g.name
        x, h, c, out = g.input, g.hidden_state, g.cell_state, g.output
        fx, fh, fo = _fmt(x), _fmt(h), _fmt(out)
        if x.dtype != "int8" or fx is None:
            problems.append(f"'{name}': input '{x.name}' not int8 of one scale")
        if h.dtype != "int8" or out.dtype != "int8" or fh is None or fh != fo:
            problems.append(f"'{name}': h and the output must be int8 in one format (the kernel writes h there)")
        for t in g.gates:
            q = t.quantization
            dtype = "int32" if t.name.endswith("_gate_bias") else "int8"
            if t.dtype != dtype or q is None or len(q.scale) != 1 or any(q.zero_point):
                problems.append(f"'{t.name}': not {dtype} with one scale and zero point 0")
        if not problems and fx is not None:
            for k, gate in enumerate(_GATE_NAMES):
                w, b = g.gates[k], g.gates[8 + k]
                expected = np.float32(fx[0]) * np.float64(w.quantization.scale[0])
                if not np.isclose(np.float64(b.quantization.scale[0]), expected, rtol=1e-6, atol=0):
                    problems.append(f"'{b.name}': scale {b.quantization.scale[0]:.6g}, not x's scale x "
                                    f"'{w.name}''s ({expected:.6g})")
        fc = _fmt(c)
        exponent = None if fc is None else _power_of_two_exponent(fc[0])
        if c.dtype != "int16" or fc is None or fc[1] != 0 or exponent is None or not -15 <= exponent <= -9:
            problems.append(f"'{name}': cell state '{c.name}' not int16 at a power-of-two scale 2^-15 .. 2^-9 (LiteRT's "
                            "tanh of c needs 15 + p integer bits in 0..6), zero point 0")
        if not (h.is_variable and c.is_variable) or h.data is not None or c.data is not None:
            problems.append(f"'{name}': h and c must be variable tensors without data")
        t = graph.subgraph.tensors
        inter = [t[i] if 0 <= i < len(t) else None for i in op.intermediates]
        if len(inter) != 5 or any(i is None for i in inter) or any(i.dtype != "float32" for i in inter[:4]) or \
                inter[4].dtype != "int8" or _fmt(inter[4]) != fh:
            problems.append(f"'{name}': five intermediates expected (the gates' float32, the hidden's int8 in h's "
                            "format)")
        options = g.options
        if op.version != 1 or options.activation != Activation.TANH or options.proj_clip or not (
                np.isfinite(options.cell_clip) and options.cell_clip >= 0):
            problems.append(f"'{name}': version {op.version}, activation {options.activation}, cell_clip "
                            f"{options.cell_clip}, proj_clip {options.proj_clip} (1, tanh, a finite cell_clip >= 0, "
                            "0 expected)")
    if problems:
        return Check("int8.lstm", False, "; ".join(problems[:3]) + (f" (and {len(problems) - 3} more)"
                                                                   if len(problems) > 3 else ""))
    return Check("int8.lstm", True, f"{len(graph.directions)} LSTM op(s) as the integer kernel takes them: int8 x, h "
                 "and output in h's format, W and R int8 one scale each, biases int32 at x's scale x W's, c int16 at "
                 "a power of two, five intermediates, version 1, tanh, no projection clip")


def _sigmoid(z):
    return 0.5 * (1 + np.tanh(z / 2))


def check_op(op, tensors, known: dict, start: dict | None, runtime_name: str = "litert", loosest: dict | None = None):
    """One UNIDIRECTIONAL_SEQUENCE_LSTM op over one invoke, from the interpreter's values (`known`: its input and
    output sequences and, read after the invoke, its h and c variables) and the state it started from (`start`:
    the variables after the invoke before; None: the zero state). Returns (worst error / bound, the first problem
    or None, its final variables by name, the values checked). `runtime_name` says how its kernel saturates a gate's
    recurrent part (see the module's docstring). `loosest` receives the widest allowance of h, in steps of its
    format ("h_steps"): c's bound grows over steps with f near 1, so late steps of a long sequence are judged
    loosely, which the report says."""
    from .int8_ops import _real

    x_index, h_index, c_index = op.inputs[0], op.inputs[18], op.inputs[19]
    out = tensors[op.outputs[0]]
    h_t, c_t = tensors[h_index], tensors[c_index]
    missing = [tensors[i].name for i in (x_index, op.outputs[0], h_index, c_index) if i not in known]
    if missing:
        return 0.0, f"'{missing[0]}' was not read back", {}, 0
    gates = [_real(tensors[i], tensors[i].data) for i in op.inputs[1:9]]
    biases = [_real(tensors[i], tensors[i].data) for i in op.inputs[12:16]]
    time_major = bool(op.options.time_major)
    x = _real(tensors[x_index], known[x_index])
    y = _real(out, known[op.outputs[0]])
    if time_major:
        x, y = x.transpose(1, 0, 2), y.transpose(1, 0, 2)
    _recurrent_part = (lambda part: np.clip(part, -PREACTIVATION_LIMIT, PREACTIVATION_LIMIT)) \
        if runtime_name == "micro" else (lambda part: part)
    zero_h = np.full(h_t.shape, h_t.quantization.zero_point[0], np.int8)
    h0 = _real(h_t, zero_h if start is None else start[h_t.name])
    c = _real(c_t, np.zeros(c_t.shape, np.int16) if start is None else start[c_t.name])
    h_step, c_step = float(out.quantization.scale[0]), float(c_t.quantization.scale[0])
    h_low, h_high = ((-128 - out.quantization.zero_point[0]) * h_step, (127 - out.quantization.zero_point[0]) * h_step)
    # c saturates at int16's ends, and is then clipped by cell_clip as both kernels quantize it: int16(clip / s_c),
    # truncated, where a stored 0 (a clip of 0, or one below c's step) clips nothing
    clip = int(min(float(op.options.cell_clip) / c_step, 32767)) if float(op.options.cell_clip) > 0 else 0
    c_limit = (clip if clip > 0 else 32767) * c_step
    previous, bound_c = h0, np.zeros_like(c)
    worst, problem = 0.0, None
    for t in range(x.shape[1]):
        z = [np.clip(np.clip(x[:, t] @ gates[k].T + biases[k], -PREACTIVATION_LIMIT, PREACTIVATION_LIMIT)
                     + _recurrent_part(previous @ gates[4 + k].T), -PREACTIVATION_LIMIT, PREACTIVATION_LIMIT)
             for k in range(4)]
        i, f, g, o = _sigmoid(z[0]), _sigmoid(z[1]), np.tanh(z[2]), _sigmoid(z[3])
        bound_c = (f + SIGMOID_ERROR) * bound_c + SIGMOID_ERROR * (np.abs(c) + np.abs(g)) + i * TANH_GATE_ERROR \
            + 2 * c_step
        c = np.clip(f * c + i * g, -c_limit, c_limit)
        expected = np.clip(o * np.tanh(c), h_low, h_high)
        # how far tanh moves over c's interval (flat where |c| is large: an h of o tanh(c) says little there)
        moved = np.maximum(np.abs(np.tanh(c + bound_c) - np.tanh(c)), np.abs(np.tanh(c - bound_c) - np.tanh(c)))
        bound = o * (moved + TANH_CELL_ERROR) + SIGMOID_ERROR * np.abs(np.tanh(c)) + h_step
        if loosest is not None:
            loosest["h_steps"] = max(loosest.get("h_steps", 0.0), float(np.max(bound)) / h_step)
        error = np.abs(y[:, t] - expected)
        ratio = float(np.max(error / bound))
        worst = max(worst, ratio)
        if ratio > 1 and problem is None:
            problem = (f"UNIDIRECTIONAL_SEQUENCE_LSTM '{out.name}' step {t}: h off by {float(np.max(error)):.4g} "
                       f"(bound {float(np.max(bound)):.4g})")
        c, bound_c = _narrowed(c, bound_c, y[:, t], o, h_step, (h_low, h_high))
        previous = y[:, t]
    final_h, final_c = known[h_index], known[c_index]
    last = known[op.outputs[0]][-1] if time_major else known[op.outputs[0]][:, -1]
    if problem is None and not np.array_equal(np.asarray(final_h).reshape(last.shape), last):
        problem = f"'{h_t.name}' after the invoke is not the last step's h"
    c_error = np.abs(_real(c_t, final_c).reshape(c.shape) - c)
    worst = max(worst, float(np.max(c_error / bound_c)))
    if problem is None and np.any(c_error > bound_c):
        problem = (f"'{c_t.name}' after the invoke off by {float(np.max(c_error)):.4g} (bound "
                   f"{float(np.max(bound_c)):.4g})")
    return worst, problem, {h_t.name: final_h, c_t.name: final_c}, x.shape[1] + 1


def _narrowed(c, bound_c, h, o, h_step: float, h_range: tuple[float, float]):
    """c's carried interval [c - B, c + B] cut by what the step's own h says of it. The kernel wrote h = o tanh(c)
    with o within SIGMOID_ERROR, tanh within TANH_CELL_ERROR, rounded to h's step (and its fixed-point multiply:
    0.6 of a step in all): so tanh(c) lies within [(h - 0.6 d) / o', (h + 0.6 d) / o'] +- TANH_CELL_ERROR for some o'
    in o +- SIGMOID_ERROR. Where o is not near 0, tanh not near +-1 and h not clamped at its format's ends, that
    pins c far tighter than a bound carried over many steps with f near 1. The middle and half width of the
    intersection carry on (where they do not meet, the carried interval is kept: the step's own check judged h)."""
    low_o, high_o = o - SIGMOID_ERROR, o + SIGMOID_ERROR
    a, b = h - 0.6 * h_step, h + 0.6 * h_step
    usable = (low_o > 0.05) & (h > h_range[0] + h_step) & (h < h_range[1] - h_step)
    safe_o = np.where(usable, low_o, 1.0)
    t_low = np.minimum(a / safe_o, a / high_o) - TANH_CELL_ERROR
    t_high = np.maximum(b / safe_o, b / high_o) + TANH_CELL_ERROR
    usable &= (t_low > -0.999) & (t_high < 0.999)
    c_low = np.where(usable, np.arctanh(np.clip(t_low, -0.999, 0.999)), -np.inf)
    c_high = np.where(usable, np.arctanh(np.clip(t_high, -0.999, 0.999)), np.inf)
    low, high = np.maximum(c - bound_c, c_low), np.minimum(c + bound_c, c_high)
    tighter = usable & (low <= high) & (high - low < 2 * bound_c)
    return np.where(tighter, (low + high) / 2, c), np.where(tighter, (high - low) / 2, bound_c)

