"""An independent numpy reference of the fused recurrence, in float64.

    h_t = act(x_t W^T + h_{t-1} R^T + b)

`run` is the free-running recurrence from a given state. `step` evaluates every step from given previous states
at once; verify feeds it the runtime's own previous outputs, so each step is judged on its own arithmetic and
float32 rounding does not compound over long or unstable sequences, while a lost or wrong state still fails the
first step after it.
"""

from __future__ import annotations

import numpy as np

from .cell import CellWeights, parse_activation
from .model import Activation, BuiltinOperator

# Defaults of verify's comparison. float32 rounds at ~6e-8 relative per operation; these leave room for long dot
# products while still catching any real difference in weights, activation or state.
DEFAULT_ATOL = 1e-5
DEFAULT_RTOL = 1e-5
DEFAULT_SEQUENCES = 3
# The reference keeps about 20 float64 copies of a sequence: 2**24 values per tensor is ~2.7 GB at the peak.
MAX_VERIFY_VALUES = 2**24
# And its time: float64 multiply-adds over all of verify's comparisons. 2**38 is about 7 s at the ~40 G/s numpy
# reaches on two cores here (the single-threaded interpreter takes several times longer on such a model).
MAX_VERIFY_MULTIPLY_ADDS = 2**38

DISCONTINUOUS = {Activation.SIGN_BIT}  # a rounding-sized change of the input can flip the output


def activate(z: np.ndarray, activation: int) -> np.ndarray:
    if activation == Activation.NONE:
        return z
    if activation == Activation.RELU:
        return np.maximum(z, 0.0)
    if activation == Activation.RELU_N1_TO_1:
        return np.clip(z, -1.0, 1.0)
    if activation == Activation.RELU6:
        return np.clip(z, 0.0, 6.0)
    if activation == Activation.TANH:
        return np.tanh(z)
    if activation == Activation.SIGN_BIT:
        return np.signbit(z).astype(z.dtype)  # TFLite: 1 where the sign bit is set, else 0
    raise ValueError(f"{activation} is not an ActivationFunctionType")


def _batch_major(x: np.ndarray, time_major: bool) -> np.ndarray:
    return np.swapaxes(x, 0, 1) if time_major else x


def run(
    x: np.ndarray,
    weights: CellWeights,
    activation: int,
    *,
    time_major: bool = False,
    initial_state: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Outputs [B,T,U] (or [T,B,U]) and the final state [B,U] of the recurrence over x [B,T,I] (or [T,B,I]).

    `activation` is an ActivationFunctionType value or a name such as "tanh".
    """
    activation = parse_activation(activation) if isinstance(activation, str) else activation
    w, r, b = (a.astype(np.float64) for a in weights.arrays())
    xb = _batch_major(np.asarray(x, dtype=np.float64), time_major)
    batch, steps = xb.shape[:2]
    h = np.zeros((batch, weights.num_units)) if initial_state is None else np.asarray(initial_state, np.float64)
    driven = xb @ w.T + b  # the input part of every step at once
    outputs = np.empty((batch, steps, weights.num_units))
    for t in range(steps):
        h = activate(driven[:, t] + h @ r.T, activation)
        outputs[:, t] = h
    return _batch_major(outputs, time_major), h


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # = 1 / (1 + e^-z), without overflow for large |z|


def run_gru(x: np.ndarray, weights, *, time_major: bool = False,
            initial_state: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A GRU, as Keras' GRU and PyTorch's nn.GRU define it (gates z, r, n; W [3U,I], R [3U,U], b, c [3U]):

        z = sigmoid(x W_z + b_z + h R_z + c_z),  r = sigmoid(x W_r + b_r + h R_r + c_r)
        reset after:  n = tanh(x W_n + b_n + r * (h R_n + c_n))
        reset before: n = tanh(x W_n + b_n + (r * h) R_n)
        h' = z * h + (1 - z) * n

    (W and R act transposed, as TFLite stores them; a reset-before cell has no c.) Outputs and final state, as run."""
    w, r, b = (np.asarray(a, np.float64) for a in (weights.input_weights, weights.recurrent_weights, weights.bias))
    c = None if weights.recurrent_bias is None else np.asarray(weights.recurrent_bias, np.float64)
    units = weights.num_units
    xb = _batch_major(np.asarray(x, dtype=np.float64), time_major)
    batch, steps = xb.shape[:2]
    h = np.zeros((batch, units)) if initial_state is None else np.asarray(initial_state, np.float64)
    driven = xb @ w.T + b
    outputs = np.empty((batch, steps, units))
    for t in range(steps):
        if c is not None:
            recurrent = h @ r.T + c
            z = _sigmoid(driven[:, t, :units] + recurrent[:, :units])
            reset = _sigmoid(driven[:, t, units:2 * units] + recurrent[:, units:2 * units])
            n = np.tanh(driven[:, t, 2 * units:] + reset * recurrent[:, 2 * units:])
        else:
            gates = h @ r[:2 * units].T
            z = _sigmoid(driven[:, t, :units] + gates[:, :units])
            reset = _sigmoid(driven[:, t, units:2 * units] + gates[:, units:])
            n = np.tanh(driven[:, t, 2 * units:] + (reset * h) @ r[2 * units:].T)
        h = z * h + (1.0 - z) * n
        outputs[:, t] = h
    return _batch_major(outputs, time_major), h


def run_lstm(x: np.ndarray, weights, *, time_major: bool = False, initial_state: np.ndarray | None = None,
             cell_clip: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """An LSTM, as Keras' LSTM and PyTorch's nn.LSTM define it (gates i, f, g, o; W [4U,I], R [4U,U], b [4U]):

        i = sigmoid(x W_i + h R_i + b_i),  f = sigmoid(x W_f + h R_f + b_f),  o = sigmoid(x W_o + h R_o + b_o)
        g = tanh(x W_g + h R_g + b_g),     c' = f * c + i * g,                h' = o * tanh(c')

    (W and R act transposed, as TFLite stores them.) With `cell_clip` > 0, c' is clipped to [-cell_clip, cell_clip]
    before tanh (TF1 LSTMCell's cell_clip, as TFLite's LSTM kernels apply it). The state is [B, 2U], h then c.
    Outputs (each step's h) and the final state [h | c], as run."""
    w, r, b = (np.asarray(a, np.float64) for a in (weights.input_weights, weights.recurrent_weights, weights.bias))
    units = weights.num_units
    xb = _batch_major(np.asarray(x, dtype=np.float64), time_major)
    batch, steps = xb.shape[:2]
    state = np.zeros((batch, 2 * units)) if initial_state is None else np.asarray(initial_state, np.float64)
    h, c = state[:, :units], state[:, units:]
    driven = xb @ w.T + b
    outputs = np.empty((batch, steps, units))
    for t in range(steps):
        z = driven[:, t] + h @ r.T
        i, f = _sigmoid(z[:, :units]), _sigmoid(z[:, units:2 * units])
        g, o = np.tanh(z[:, 2 * units:3 * units]), _sigmoid(z[:, 3 * units:])
        c = clip_cell(f * c + i * g, cell_clip)
        h = o * np.tanh(c)
        outputs[:, t] = h
    return _batch_major(outputs, time_major), np.concatenate([h, c], axis=1)


def clip_cell(c: np.ndarray, cell_clip: float) -> np.ndarray:
    """An LSTM's cell state clipped to [-cell_clip, cell_clip]; 0 (or None): no clipping."""
    return np.clip(c, -cell_clip, cell_clip) if cell_clip else c


def run_cell(x: np.ndarray, weights, activation, *, time_major: bool = False,
             initial_state: np.ndarray | None = None, cell_clip: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The recurrence of any kind of cell, as its kind names it (cells/): `run` for the basic cell, `run_gru`...;
    `cell_clip` only an LSTM has."""
    from .cells import kind_of

    recurrence = kind_of(weights).reference
    if recurrence == "run":
        return run(x, weights, activation, time_major=time_major, initial_state=initial_state)
    extra = {"cell_clip": cell_clip} if cell_clip else {}
    return globals()[recurrence](x, weights, time_major=time_major, initial_state=initial_state, **extra)


def cell_values(layer, source: np.ndarray, start: np.ndarray, outputs: np.ndarray) -> dict[str, np.ndarray]:
    """Every value a direction's steps compute, by role, for a kind other than the basic cell (its kind's `values`
    function: gru_values)."""
    from .cells import kind_of

    return globals()[kind_of(layer.weights).values](layer, source, start, outputs)


def step(
    x: np.ndarray,
    weights: CellWeights,
    activation: int,
    previous: np.ndarray,
    *,
    time_major: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every step from given previous states: `previous` has the layout of the outputs and holds h_{t-1}.

    Returns the outputs, the pre-activations and a bound on their magnitude (the sum of absolute terms), all
    in the layout of x.
    """
    w, r, b = (a.astype(np.float64) for a in weights.arrays())
    xb = _batch_major(np.asarray(x, dtype=np.float64), time_major)
    hb = _batch_major(np.asarray(previous, dtype=np.float64), time_major)
    z = xb @ w.T + hb @ r.T + b
    scale = np.abs(xb) @ np.abs(w.T) + np.abs(hb) @ np.abs(r.T) + np.abs(b)
    return tuple(_batch_major(a, time_major) for a in (activate(z, activation), z, scale))


def input_quantization_error(x: np.ndarray, previous: np.ndarray, weights: CellWeights, asymmetric: bool) -> np.ndarray:
    """A bound on what a hybrid (int8-weight) kernel loses by quantizing x_t and h_{t-1} to int8 each step.

    It quantizes each batch row of x_t and of h_{t-1} on its own, with a step of max|v|/127 (symmetric) or
    (max - min)/255 (asymmetric); each element is off by at most half a step, so each output by at most that
    times the sum of |weights| in its row. Same layout as x, with the units as the last axis.
    """

    def half_step(v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=np.float64)
        if asymmetric:
            span = np.maximum(v.max(axis=-1), 0.0) - np.minimum(v.min(axis=-1), 0.0)
            return span[..., None] / 255.0 / 2
        return np.abs(v).max(axis=-1)[..., None] / 127.0 / 2

    w_rows = np.abs(weights.input_weights.astype(np.float64)).sum(axis=1)
    r_rows = np.abs(weights.recurrent_weights.astype(np.float64)).sum(axis=1)
    return half_step(x) * w_rows + half_step(previous) * r_rows


def weight_quantization_error(x: np.ndarray, previous: np.ndarray, weights: CellWeights) -> np.ndarray:
    """A bound on the output change from rounding W and R to symmetric per-tensor int8: each weight moves by at
    most half a step, max|W|/127/2, so an output by that times the sum of |x| (and likewise for R and |h|)."""
    w_half = float(np.max(np.abs(weights.input_weights), initial=0.0)) / 127.0 / 2
    r_half = float(np.max(np.abs(weights.recurrent_weights), initial=0.0)) / 127.0 / 2
    x_sum = np.abs(np.asarray(x, dtype=np.float64)).sum(axis=-1, keepdims=True)
    h_sum = np.abs(np.asarray(previous, dtype=np.float64)).sum(axis=-1, keepdims=True)
    return w_half * x_sum + r_half * h_sum


# The ops after the RNN ops, as a Keras model means them, keyed by op code like onnx's reference evaluator: each
# takes the op's data inputs (float64) and the attributes the verifier reads off the model, and gives the expected
# output, the pre-activation where an activation may jump (else None), and the scale of the float32 rounding its
# arithmetic may carry (None: the op is exact).
def final_step(x: np.ndarray, *, time_major: bool, backward: bool = False):
    """The last step of a direction's output: the forward one's at t=-1, the backward one's at t=0 (where a
    backward direction ends: its final state)."""
    t = 0 if backward else -1
    return (x[t] if time_major else x[:, t]), None, None


def concatenate(*parts: np.ndarray):
    return np.concatenate(parts, axis=-1), None, None


def dense(x: np.ndarray, *, kernel: np.ndarray, bias: np.ndarray, activation: int):
    """A FULLY_CONNECTED with its fused activation: act(x W^T + b), W [units, in]."""
    pre = x @ kernel.T + bias
    return activate(pre, activation), pre, np.abs(x) @ np.abs(kernel.T) + np.abs(bias)


def softmax(x: np.ndarray, *, beta: float):
    z = beta * x
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True), None, np.abs(z).max(axis=-1, keepdims=True)


def tanh(x: np.ndarray):
    return np.tanh(x), None, np.abs(x)


def sigmoid(x: np.ndarray):
    return 1.0 / (1.0 + np.exp(-x)), None, np.abs(x)


HEAD_OPS = {
    BuiltinOperator.STRIDED_SLICE: final_step,
    BuiltinOperator.CONCATENATION: concatenate,
    BuiltinOperator.FULLY_CONNECTED: dense,
    BuiltinOperator.SOFTMAX: softmax,
    BuiltinOperator.TANH: tanh,
    BuiltinOperator.LOGISTIC: sigmoid,
}


_DENSE = {
    "linear": lambda z: z,
    "relu": lambda z: np.maximum(z, 0.0),
    "relu6": lambda z: np.clip(z, 0.0, 6.0),
    "tanh": np.tanh,
    "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)),
    "softmax": lambda z: softmax(z, beta=1.0)[0],
}


def layer_values(layer, source: np.ndarray, start: np.ndarray, outputs: np.ndarray):
    """From one trace entry of run_network (a layer direction's input, initial state and outputs, batch-major), the
    values its steps compute before the activation: the projection P = x W^T + b, the recurrent term r = h_{t-1}
    R^T, and their sum z, each [B, T, U]."""
    w, r, b = (a.astype(np.float64) for a in layer.weights.arrays())
    projection = source @ w.T + b
    previous = np.concatenate([start[:, None], outputs[:, :-1]], axis=1)
    recurrent = previous @ r.T
    return projection, recurrent, projection + recurrent


def gru_values(layer, source: np.ndarray, start: np.ndarray, outputs: np.ndarray) -> dict[str, np.ndarray]:
    """From one trace entry of run_network for a GRU direction (its input, initial state and outputs, batch-major),
    every value its steps compute, [B, T, width] each, by the names lowering/gru.py gives them: the projections
    (gate: z and r, [2U]; candidate), the recurrent gate term and the sum before the sigmoid, the candidate's
    recurrent term (reset after: h R_n + c_n; before: (r h) R_n), r's product (with that term; before: with h), the
    sum before tanh, n, h - n, z (h - n), and h."""
    weights = layer.weights
    units = weights.num_units
    w, r, b = (np.asarray(a, np.float64) for a in (weights.input_weights, weights.recurrent_weights, weights.bias))
    c = None if weights.recurrent_bias is None else np.asarray(weights.recurrent_bias, np.float64)
    previous = np.concatenate([start[:, None], outputs[:, :-1]], axis=1)
    projection = source @ w.T + b
    gate_recurrent = previous @ r[:2 * units].T + (0.0 if c is None else c[:2 * units])
    gate_sum = projection[..., :2 * units] + gate_recurrent
    gates = _sigmoid(gate_sum)
    z, reset = gates[..., :units], gates[..., units:]
    if c is not None:
        candidate_recurrent = previous @ r[2 * units:].T + c[2 * units:]
        product = reset * candidate_recurrent
    else:
        product = reset * previous
        candidate_recurrent = product @ r[2 * units:].T
    candidate_sum = projection[..., 2 * units:] + (product if c is not None else candidate_recurrent)
    n = np.tanh(candidate_sum)
    difference = previous - n
    return {"gate_projection": projection[..., :2 * units], "candidate_projection": projection[..., 2 * units:],
            "gate_recurrent": gate_recurrent, "gate_sum": gate_sum, "candidate_recurrent": candidate_recurrent,
            "reset_product": product, "candidate_sum": candidate_sum, "candidate": n, "difference": difference,
            "kept": z * difference, "state": n + z * difference,
            # the int8 form's h = z h + (1 - z) n (lowering/gru.py)
            "kept_state": z * previous, "complement": 1.0 - z, "kept_candidate": (1.0 - z) * n}


def lstm_values(layer, source: np.ndarray, start: np.ndarray, outputs: np.ndarray) -> dict[str, np.ndarray]:
    """From one trace entry of run_network for an LSTM direction (its input, initial state [h | c] and outputs,
    batch-major), every value an int8 LSTM holds, [B, T, width] each: the gates' pre-activations (i, f, g, o) and
    their parts x W + b and h R (also as the portable lowering groups them), the cell state c after each step, its
    parts f c and i g, and h."""
    weights = layer.weights
    units = weights.num_units
    w, r, b = (np.asarray(a, np.float64) for a in (weights.input_weights, weights.recurrent_weights, weights.bias))
    previous = np.concatenate([start[:, None, :units], outputs[:, :-1]], axis=1)
    gate_input = source @ w.T + b
    gate_recurrent = previous @ r.T
    gate_sum = gate_input + gate_recurrent
    i, f = _sigmoid(gate_sum[..., :units]), _sigmoid(gate_sum[..., units:2 * units])
    g = np.tanh(gate_sum[..., 2 * units:3 * units])
    cells, kept = np.empty(outputs.shape), np.empty(outputs.shape)
    c = np.asarray(start[:, units:], np.float64)
    for t in range(outputs.shape[1]):
        kept[:, t] = f[:, t] * c
        c = clip_cell(kept[:, t] + i[:, t] * g[:, t], layer.cell_clip)
        cells[:, t] = c
    # the portable lowering's groups: the sigmoid gates i, f, o together, the candidate g apart
    sigmoid = np.r_[0:2 * units, 3 * units:4 * units]
    candidate = np.r_[2 * units:3 * units]
    return {"gate_input": gate_input, "gate_recurrent": gate_recurrent, "gate_sum": gate_sum, "cell": cells,
            "state": outputs, "kept": kept, "added": i * g,
            "ifo_projection": gate_input[..., sigmoid], "g_projection": gate_input[..., candidate],
            "ifo_recurrent": gate_recurrent[..., sigmoid], "g_recurrent": gate_recurrent[..., candidate],
            "ifo_sum": gate_sum[..., sigmoid], "g_sum": gate_sum[..., candidate]}


def run_network(network, x: np.ndarray, states: list | None = None,
                trace: list | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A whole network, free-running in float64: its output(s) for x and each direction's final state (in layer
    order, forward before backward), from `states` (zeros where None). A backward direction runs with time
    reversed and ends at t=0; the last step takes each direction's final step; Dense layers follow.

    `trace` (a list) receives what each layer direction read and wrote, (layer, its input, its initial state, its
    outputs), backward ones in their own time order, batch-major; then (dense, its input, its pre-activation) for
    each Dense layer: calibration reads every value a quantized graph holds from it."""
    time_axis = 0 if network.time_major else 1
    states = list(states) if states is not None else [None] * len(network.layers)
    finals, k, ends = [], 0, []
    y = np.asarray(x, np.float64)
    for index, stage in enumerate(network.stages):
        outputs = []
        for direction, layer in enumerate(stage if isinstance(stage, tuple) else (stage,)):
            source = np.flip(y, axis=time_axis) if direction == 1 else y
            out, h = run_cell(source, layer.weights, layer.activation, time_major=network.time_major,
                              initial_state=states[k], cell_clip=layer.cell_clip)
            if trace is not None:
                start = np.zeros_like(h) if states[k] is None else np.asarray(states[k], np.float64)
                trace.append((layer, _batch_major(source, network.time_major), start,
                              _batch_major(out, network.time_major)))
            outputs.append(np.flip(out, axis=time_axis) if direction == 1 else out)
            finals.append(h)
            k += 1
        final = index == len(network.stages) - 1
        if final and network.last_step:
            outputs = [final_step(o, time_major=network.time_major, backward=d == 1)[0] for d, o in enumerate(outputs)]
        if len(outputs) == 2 and (network.merge or not final):
            outputs = [np.concatenate(outputs, axis=-1)]
        y, ends = outputs[0], outputs
    for dense in network.head:
        pre = y @ dense.weights.T.astype(np.float64) + dense.bias
        if trace is not None:
            trace.append((dense, y, pre))
        y = _DENSE[dense.activation](pre)
        ends = [y]
    return ends, finals
