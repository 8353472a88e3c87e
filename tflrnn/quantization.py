"""Full-integer int8: the int8 format of every value a network's graph holds, from representative data.

`calibrate(network, sequences)` returns the same network with an `Int8Plan` (network.py) and the weights the int8
model computes with: W, R and Dense kernels symmetric per output channel (q = round(w / s_c), s_c = max|w_c| / 127),
biases int32 at (input scale x s_c), the weights of the network their dequantized values. The fused LSTM op's
integer kernel takes one scale per gate tensor; there W and R are rounded against the values they multiply in the
calibration run (`gptq_rounded`), which leaves 2-9 % less mean error than rounding each to its nearest level
(scripts/bench_lstm_int8.py; on the portable basic cell it gained about 1 % and moved max errors both ways, so
there each weight takes its nearest level). Activations are asymmetric
int8, chosen from what the float reference reaches on the calibration data, run as the model would run it (the
state carried from one sequence to the next, unless the model keeps none), every step and the initial states
included (`_observe`: the ranges, then how the values spread over them). Each format is chosen by the error it
leaves, measured on the int8 battery (scripts/bench_int8.py, BENCHMARKS.md):
- the input: int16 (zero point 0) over twice the calibration data's largest |x|, where the interface is float: its
  rounding was the largest single source of error in int8 (13-15 % of the battery's mean error), and the int16
  QUANTIZE and the 16x8 FULLY_CONNECTED of the first projection (int64 bias, int16 output requantized to the
  projection's int8 format) run on LiteRT, XNNPACK's fallback and TFLite Micro; with `--io int8`, the int8 the
  caller gives, over the calibration data's range (the converter's); the fused LSTM op takes int8;
- the projection P and the recurrent term r, added linearly into z: the range shrunk by the factor that minimises
  the squared error of clipping plus rounding over the calibration values (`_Seen.least_error_range`);
- the sum before TANH: clipped at the limit that minimises the squared error it leaves after tanh
  (`_Seen.tanh_limit`), never past +-atanh(1 - 1/256), beyond which tanh's int8 output is 127 whatever the sum;
- a relu-family sum (the state): its range, the activation's bounds applied;
- a Dense output (what the user reads): its range widened to where ten times as many values would reach
  (`_Seen.widened`): a classifier's calibration gives only N values per class, and a clipped output is wrong by
  all of its excess.
Where a kernel fixes a format, the plan takes it (TFLite's and TFLite Micro's int8 kernels; TFLite Micro writes
these whatever the tensor says): TANH's output is (1/128, 0); LOGISTIC's and SOFTMAX's (1/256, -128). Outputs
joined by CONCATENATION or PACK share one format (the kernels copy bytes), so the two directions of a bidirectional
relu-family layer take the union of their ranges.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from . import reference
from .cells import kind_of
from .errors import ConfigError
from .model import Activation
from .network import Dense, Int8Cell, Int8Dense, Int8Format, Int8Layer, Int8Plan, Layer, Network, stage_layers

TANH_OUTPUT = Int8Format(float(np.float32(1 / 128)), 0)
PROBABILITY_OUTPUT = Int8Format(float(np.float32(1 / 256)), -128)
FIXED_OUTPUTS = {"tanh": TANH_OUTPUT, "sigmoid": PROBABILITY_OUTPUT, "softmax": PROBABILITY_OUTPUT}
TANH_INPUT_LIMIT = float(np.arctanh(1 - 1 / 256))
# A Dense output's range covers the extremes of this many times the values calibration saw (see _Seen.widened).
UNSEEN_FACTOR = 10


# The int8 LSTM kernel's cell state scale is 2^(e - 15) for e in [0, this]: LiteRT's tanh of c needs the scale's
# exponent in -15 .. -9 (docs/lstm-int8-kernel.md); a larger |c| saturates at 64.
CELL_STATE_EXPONENT_LIMIT = 6
INPUT_MARGIN = 2.0  # an int16 input covers this times the calibration data's largest |x|
BIAS_PASSES = 4  # calibration passes on the int32 biases (each a run of the float model over the data)
MAX_CALIBRATION_VALUES = 2**27  # 512 MiB of float32: more data than that does not move a range


def int8_format(low: float, high: float) -> Int8Format:
    """Asymmetric int8 over [low, high] widened to hold 0 exactly (a zero state, zero padding)."""
    low, high = min(float(low), 0.0), max(float(high), 0.0)
    if not high - low > 1e-12:  # a value that never moved: any step holds it
        high = low + 1.0
    scale = float(np.float32((high - low) / 255.0))
    return Int8Format(scale, int(np.clip(np.rint(-128 - low / scale), -128, 127)))


def int16_format(largest: float) -> Int8Format:
    """Symmetric int16 (zero point 0, as TFLite's 16x8 kernels require) holding [-largest, largest]."""
    largest = float(largest) if float(largest) > 1e-12 else 1.0
    return Int8Format(float(np.float32(largest / 32767.0)), 0, bits=16)


def quantize_values(real: np.ndarray, fmt: Int8Format) -> np.ndarray:
    return np.clip(np.rint(np.asarray(real, np.float64) / fmt.scale) + fmt.zero_point, *fmt.limits).astype(
        np.int8 if fmt.bits == 8 else np.int16)


def dequantize_values(q: np.ndarray, fmt: Int8Format) -> np.ndarray:
    return (np.asarray(q, np.float64) - fmt.zero_point) * fmt.scale


def representable(fmt: Int8Format) -> tuple[float, float]:
    """The reals an int8 value of this format stands for: [scale (-128 - zp), scale (127 - zp)]."""
    low, high = fmt.limits
    return fmt.scale * (low - fmt.zero_point), fmt.scale * (high - fmt.zero_point)


def per_channel(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per output channel (row), as TFLite's int8 FULLY_CONNECTED takes weights: (q, scales)."""
    largest = np.max(np.abs(weights.astype(np.float64)), axis=1)
    scales = np.where(largest > 0, largest / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(weights / scales[:, None].astype(np.float64)), -127, 127).astype(np.int8)
    return q, scales


def per_gate_tensor(weights: np.ndarray, gates: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 with one scale per gate's block of rows, as the int8 LSTM kernel takes each gate's W and R (a
    tensor of its own, one scale): (q, the scales repeated per row)."""
    rows = weights.shape[0] // gates
    blocks = np.abs(weights.astype(np.float64)).reshape(gates, -1).max(axis=1)
    scales = np.repeat(np.where(blocks > 0, blocks / 127.0, 1.0).astype(np.float32), rows)
    q = np.clip(np.rint(weights / scales[:, None].astype(np.float64)), -127, 127).astype(np.int8)
    return q, scales


def gptq_rounded(weights: np.ndarray, scales: np.ndarray, gram: np.ndarray, blocks: int = 1) -> np.ndarray:
    """Weights [rows, n] on their int8 grid (scales per row, symmetric), each rounded against the error it leaves
    in x W^T over the values x it multiplies (`gram`, X^T X of the calibration run) rather than to the nearest
    level: GPTQ (Frantar et al., 2022), column by column, each column's rounding error spread over the columns not
    yet rounded through the inverse Gram matrix's Cholesky factor (damped by 1 % of its mean diagonal). Each block
    of rows (a gate's tensor, one scale) takes first the column holding its largest |w|, which so lands on +-127
    exactly: the scale read back from the rounded weights is the scale, and rounding weights already on their grid
    changes nothing (a model rebuilt from its exported weights is the same). Dequantized, float32."""
    w = np.asarray(weights, np.float64).copy()
    rows, n = w.shape
    s = np.asarray(scales, np.float64)
    q = np.zeros_like(w)
    for block in np.split(np.arange(rows), blocks):
        first = int(np.argmax(np.abs(w[block]).max(axis=0)))
        order = [first] + [j for j in range(n) if j != first]
        gram_ordered = np.asarray(gram, np.float64)[np.ix_(order, order)]
        damped = gram_ordered + 0.01 * max(float(np.mean(np.diag(gram_ordered))), 1e-12) * np.eye(n)
        upper = np.linalg.cholesky(np.linalg.inv(damped)).T
        part = w[np.ix_(block, order)]
        done = np.zeros_like(part)
        for k in range(n):
            done[:, k] = np.clip(np.rint(part[:, k] / s[block]), -127, 127)
            error = (part[:, k] - done[:, k] * s[block]) / upper[k, k]
            part[:, k + 1:] -= np.outer(error, upper[k, k + 1:])
        q[np.ix_(block, order)] = done
    return dequantized(q.astype(np.int8), np.asarray(scales, np.float32))


def _input_grams(network: Network, sequences: list[np.ndarray]) -> dict:
    """Per layer, the Gram matrices X^T X of what its W and R multiply over the calibration data, run by the float64
    reference as the model runs it (the state carried unless the model keeps none): its input rows and its h_{t-1}
    rows."""
    grams: dict[str, dict[str, np.ndarray]] = {}
    states = None
    for x in sequences:
        trace = []
        _, finals = reference.run_network(network, x, states, trace)
        for item in trace:
            if isinstance(item[0], Layer):
                layer, source, start, outputs = item
                units = layer.weights.num_units
                previous = np.concatenate([start[:, None, :units], outputs[:, :-1]], axis=1).reshape(-1, units)
                rows = source.reshape(-1, source.shape[-1])
                found = grams.setdefault(layer.name, {"input_weights": 0.0, "recurrent_weights": 0.0})
                found["input_weights"] = found["input_weights"] + rows.T @ rows
                found["recurrent_weights"] = found["recurrent_weights"] + previous.T @ previous
        states = finals if network.state != "zero" else None
    return grams


def cell_state_format(largest: float) -> Int8Format:
    """The int16 cell state of the int8 LSTM kernel: zero point 0 and a power-of-two scale (the kernel shifts by
    its exponent), the finest whose range holds the largest |c| calibration saw; 2^-15 (|c| < 1) at the finest."""
    exponent = int(np.ceil(np.log2(max(float(largest), 2.0**-15) * 32768 / 32767)))
    return Int8Format(float(2.0 ** min(max(exponent, 0), CELL_STATE_EXPONENT_LIMIT) / 32768), 0, bits=16)


# The integer LSTM kernel's gate pre-activations: Q3.12 in int16, whatever the model says (its intermediates are
# read only with layer norm). Each gate's input part x W + b saturates at +-8 before h's part is added, and TFLite
# Micro saturates h's part h R on its own too (docs/lstm-int8-kernel.md): kept in the plan as those parts' format,
# so that the build reports the share of them that saturates.
LSTM_GATE_FORMAT = Int8Format(2.0 ** -12, 0, bits=16)


def lstm_kernel_formats(layer: Layer, observed: dict, channels: dict) -> Int8Cell:
    """An LSTM direction's formats for the fused int8 kernel: h (its output and state) over the range calibration
    saw, c int16 at a power of two (cell_state_format), the gates' input parts the kernel's fixed Q3.12; its W and R
    scales one per gate."""
    h, c = observed[f"{layer.name}/state"], observed[f"{layer.name}/cell"]
    cell = cell_state_format(max(-c.low, c.high))
    if layer.cell_clip and int(layer.cell_clip / cell.scale) == 0:
        # the kernels store the clip as int16(clip / s_c), and a stored 0 means no clipping at all
        raise ConfigError(f"LSTM layer '{layer.name}': cell_clip {layer.cell_clip:g} is below its int16 cell "
                          f"state's step {cell.scale:g}: TFLite's integer LSTM kernel would store it as 0, which "
                          f"means no clipping; give a clip of at least {cell.scale:g}, or build it in float")
    return Int8Cell({"state": int8_format(h.low, h.high), "cell": cell,
                     "gate_input": LSTM_GATE_FORMAT, "gate_recurrent": LSTM_GATE_FORMAT},
                    {"input_weights": channels[layer.name][0], "recurrent_weights": channels[layer.name][1]})


def dequantized(q: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """What the kernel computes with: q x s_c in float32 (the same arithmetic when building and reading)."""
    return q.astype(np.float32) * np.asarray(scales, np.float32)[:, None]


def bias_scales(input_scale: float, channel_scales: np.ndarray) -> np.ndarray:
    """An int32 bias's scale per channel: the input's scale times the weights' (what the kernel's sum is in)."""
    return (np.float64(np.float32(input_scale)) * np.asarray(channel_scales, np.float64)).astype(np.float32)


def bias_int32(bias: np.ndarray, scales: np.ndarray, dtype=np.int32) -> np.ndarray:
    """A bias as the integers the kernel adds (int32; int64 beside an int16 input, TFLite's 16x8 kernels)."""
    q = np.rint(np.asarray(bias, np.float64) / np.asarray(scales, np.float64))
    bits = np.iinfo(dtype).bits
    if np.any(np.abs(q) > 2.0 ** (bits - 1) - 1):
        raise ConfigError(f"a bias is over 2^{bits - 1} steps of its int{bits} scale (input scale x weight scale): "
                          "the input's range or the weights are degenerate for int8")
    return q.astype(dtype)


def bias_type(input_format: Int8Format):
    """The integer type of a bias added to products with an input in this format."""
    return np.int64 if input_format.bits == 16 else np.int32


def dequantized_bias(q: np.ndarray, scales: np.ndarray) -> np.ndarray:
    return (q.astype(np.float64) * np.asarray(scales, np.float64)).astype(np.float32)


def sequences_of(calibration, network: Network, what: str = "calibration") -> list[np.ndarray]:
    """The sequences of calibration data given as an array or as a file (`load_calibration`)."""
    if isinstance(calibration, np.ndarray):
        return calibration_sequences(calibration, network, what)
    return load_calibration(calibration, network, what)


def load_calibration(path, network: Network, what: str = "calibration") -> list[np.ndarray]:
    """The sequences of a `.npy` or `.npz` (one array): [N, B, T, I] batch-major, [N, T, B, I] time-major, each
    n one invoke's input in the model's layout (any B and T; I the model's input size)."""
    from . import arrays  # the file is someone else's: header and declared size first, never a pickle

    path = Path(path)
    try:
        loaded = arrays.load(path, max_values=MAX_CALIBRATION_VALUES)
        if isinstance(loaded, arrays.NpzArchive):
            with loaded:
                names = list(loaded)
                if len(names) != 1:
                    raise ConfigError(f"{what} {path.name}: an .npz of one array, found {len(names)} "
                                      f"({', '.join(repr(n) for n in names[:5]) or 'none'})")
                data = loaded[names[0]]
        else:
            data = loaded
    except arrays.ArrayFileError as exc:
        raise ConfigError(f"{what} {path}: {exc}") from None
    return calibration_sequences(data, network, f"{what} {path.name}")


def calibration_sequences(data, network: Network, what: str = "calibration") -> list[np.ndarray]:
    data = np.asarray(data)
    layout = "[N, T, B, I]" if network.time_major else "[N, B, T, I]"
    if data.ndim != 4 or data.shape[-1] != network.input_size or 0 in data.shape:
        raise ConfigError(f"{what}: representative sequences are {layout} with I = {network.input_size}, found shape "
                          f"{list(data.shape)}")
    if not np.issubdtype(data.dtype, np.floating) and not np.issubdtype(data.dtype, np.integer):
        raise ConfigError(f"{what}: numbers expected, found {data.dtype}")
    if data.size > MAX_CALIBRATION_VALUES:
        raise ConfigError(f"{what}: {data.size:,} values; calibration reads at most {MAX_CALIBRATION_VALUES:,}")
    data = data.astype(np.float32)
    if not np.all(np.isfinite(data)):
        raise ConfigError(f"{what}: holds NaN or infinite values")
    return list(data)


def refusal(network: Network) -> str | None:
    """Why a network cannot be full-int8 (None: it can)."""
    from .lowering import lowering, portable  # here: the lowerings import this module

    chosen = lowering(network.lowering)
    if not chosen.full_int8:
        return f"full-int8 is not written for the {chosen.name} lowering"
    if network.state not in chosen.states:
        return (f"state {network.state!r} needs the portable lowering: the {chosen.name} lowering keeps each state in "
                "the op's variable tensors, carried across invokes")
    kinds = {layer.kind for layer in network.layers}
    if not any(kinds <= set(other.full_int8) for other in _lowerings().values()) and len(kinds) > 1:
        return (f"a network of {' and '.join(sorted(kind_of_name(k) for k in kinds))} layers in full int8 is not "
                "written: " + "; ".join(f"the {name} lowering writes {' and '.join(kind_of_name(k) for k in other.full_int8)}"
                                       for name, other in _lowerings().items()) + " layers")
    unwritten = next((layer for layer in network.layers if layer.kind not in chosen.full_int8), None)
    if unwritten is not None:
        title = kind_of(unwritten.weights).title
        others = [name for name, other in _lowerings().items() if unwritten.kind in other.full_int8]
        if not others:
            return f"full-int8 {title} layers are not written yet (layer '{unwritten.name}'): build it in float"
        return (f"full-int8 {title} layers need --lowering {others[0]} (layer '{unwritten.name}'): the {chosen.name} "
                f"lowering writes {' and '.join(kind_of_name(k) for k in chosen.full_int8)} layers in full int8")
    if network.dynamic_time:
        return "full-int8 writes a fixed number of steps: drop --time-steps dynamic"
    if network.loop and not all(portable.int8_loops(layer) for layer in network.layers):
        return ("full-int8 writes a fixed number of steps, unrolled (an LSTM's also as a loop): drop --recurrence "
                "loop")
    if network.steps_per_iteration > 1:
        return "a full-int8 LSTM's loop runs one step a pass: drop --steps-per-iteration"
    if network.bidirectional and chosen.int8_weight_scales == "per-tensor":
        return ("a bidirectional LSTM in full int8 is not written as a fused op: TFLite's BIDIRECTIONAL_SEQUENCE_LSTM "
                "has no integer kernel; --lowering portable writes it (int8 weights, int16 values, every runtime), or "
                "build it in float or unidirectional")
    sixteen = [layer for layer in network.layers if value_bits(layer, chosen) == 16]
    if sixteen and len(kinds) > 1:
        others = " and ".join(kind_of_name(k) for k in sorted(kinds - {sixteen[0].kind}))
        return (f"a full-int8 {kind_of(sixteen[0].weights).title} keeps its values in int16 (16x8) in the "
                f"{chosen.name} lowering: stacked with {others} layers (int8 values) it is not written; build the "
                "stack in float, or of one kind")
    clipped = next((layer for layer in sixteen if layer.cell_clip), None)
    if clipped is not None:
        return (f"a cell_clip in a full-int8 {kind_of(clipped.weights).title} of the {chosen.name} lowering is not "
                f"written (layer '{clipped.name}'): its int16 bound would be the clip on c's grid, not the clip; "
                "build it with --lowering fused (the integer LSTM kernel clips) or in float")
    names = [layer.name for layer in network.layers]
    if len(set(names)) != len(names):
        return "full-int8 gives each layer its own formats: layers that reuse one cell's variables are refused"
    for layer in network.layers:
        if layer.int8 is not None:
            return "full-int8 quantizes the float weights itself: drop the hybrid --quantize int8"
    return None


def value_bits(layer: Layer, chosen=None) -> int:
    """The bits of a full-int8 layer's values in the portable lowering: 8, or 16 for a kind whose steps module
    says so (an LSTM: 16x8, int16 values and int8 weights); the fused op's are its kernel's."""
    from .lowering import lowering

    chosen = chosen or lowering("portable")
    steps = kind_of(layer.weights).portable_steps()
    if chosen.int8_weight_scales == "per-tensor" or steps is None:
        return 8
    return steps.INT8_VALUE_BITS


def _lowerings():
    from .lowering import LOWERINGS

    return LOWERINGS


def kind_of_name(name: str) -> str:
    from .cells import kind

    return kind(name).title


def calibrate(network: Network, sequences: list[np.ndarray], *, int8_io: bool = False,
              int16_input: bool = True) -> Network:
    """The network as full-integer int8 (see the module's docstring); `int16_input`: a float interface's input
    QUANTIZEd to int16 for the first projection (the portable lowering's; else int8, as an int8 interface is)."""
    why = refusal(network)
    if why:
        raise ConfigError(why)
    if not sequences:
        raise ConfigError("calibration needs at least one representative sequence")
    # Weights first (their formats need no data), so that the ranges are those the model's weights reach.
    from .lowering import lowering

    per_gate = lowering(network.lowering).int8_weight_scales == "per-tensor"
    sixteen = [layer for layer in network.layers if value_bits(layer, lowering(network.lowering)) == 16]
    if sixteen and (int8_io or not int16_input):
        raise ConfigError(
            f"a full-int8 {kind_of(sixteen[0].weights).title} of the {network.lowering} lowering keeps its values and "
            f"state in int16 (16x8): " + ("an int8 interface (--io int8) would round them to 8 bits at every invoke; "
                                          "use --io float" if int8_io else
                                          "its input is int16 too: drop --input-precision int8"))
    grams = _input_grams(network, sequences) if per_gate else {}
    channels = {}
    layers = {}
    for layer in network.layers:
        roles = {}
        for role in ("input_weights", "recurrent_weights"):
            weights = layer.weights.roles()[role]
            if per_gate:  # each gate's tensor on its grid, rounded against the values it multiplies
                _, scales = per_gate_tensor(weights, kind_of(layer.weights).gates)
                roles[role] = gptq_rounded(weights, scales, grams[layer.name][role], kind_of(layer.weights).gates)
            else:
                q, scales = per_channel(weights)
                roles[role] = dequantized(q, scales)
            channels.setdefault(layer.name, []).append(scales)
        channels[layer.name] = tuple(channels[layer.name])
        layers[layer.name] = replace(layer, weights=_with_roles(layer.weights, **roles))
    heads = []
    for dense in network.head:
        q, s = per_channel(dense.weights)
        channels[dense.name] = (s,)
        heads.append(replace(dense, weights=dequantized(q, s)))
    weighted = replace(network, stages=[_swap(stage, layers) for stage in network.stages], head=heads)
    wide = int16_input and not (int8_io or per_gate)  # the fused LSTM op takes int8
    calibrated = with_int8_biases(weighted, _plan(weighted, sequences, channels, per_gate, int8_io, wide))
    # The ranges again, of the biases as the model stores them (int32), until they settle (a layer's biases are on
    # the grid of its input's format, which the layer before sets): an LSTM's formats are its ranges (the fused op's h,
    # every int16 one of the portable lowering's), which the float biases move by a hair, so that a model rebuilt
    # from its exported weights would otherwise differ
    for _ in range(BIAS_PASSES if per_gate or sixteen else 0):
        plan = _plan(calibrated, sequences, channels, per_gate, int8_io, wide)
        if plan == calibrated.int8:
            break
        calibrated = with_int8_biases(calibrated, plan)
    return calibrated


def _plan(weighted: Network, sequences, channels: dict, per_gate: bool, int8_io: bool,
          int16_input: bool = False) -> Int8Plan:
    """The formats of every value of a network whose weights are on their int8 grids."""
    observed = _observe(weighted, sequences)
    ranges = {key: seen.least_error_range() for key, seen in observed.items()
              if key.endswith(("/projection", "/recurrent"))}

    plan_layers = {}
    for stage in weighted.stages:
        directions = stage_layers(stage)
        steps = kind_of(directions[0].weights).portable_steps()
        if per_gate:  # the int8 LSTM kernel's own values (lowering/fused_int8.py)
            plan_layers.update({layer.name: lstm_kernel_formats(layer, observed, channels) for layer in directions})
            continue
        if steps is not None:  # another kind's values have formats of their own (lowering/<kind>.py)
            plan_layers.update(steps.int8_formats(directions, observed, channels))
            continue
        sums = [sum_format(layer.activation, observed[f"{layer.name}/sum"]) for layer in directions]
        if len(directions) == 2 and directions[0].activation != Activation.TANH:
            # CONCATENATION copies bytes: both directions' states in one format
            both = [observed[f"{layer.name}/sum"] for layer in directions]
            union = _Seen(min(seen.low for seen in both), max(seen.high for seen in both))
            sums = [sum_format(layer.activation, union) for layer in directions]
        for layer, summed in zip(directions, sums):
            plan_layers[layer.name] = Int8Layer(
                projection=int8_format(*ranges[f"{layer.name}/projection"]),
                recurrent=int8_format(*ranges[f"{layer.name}/recurrent"]),
                sum=summed, state=TANH_OUTPUT if layer.activation == Activation.TANH else summed,
                input_scales=channels[layer.name][0], recurrent_scales=channels[layer.name][1])
    plan_dense = {}
    for dense in weighted.head:
        # What the model outputs is what the user reads: a value clipped there is wrong by all of its excess, and a
        # classifier's calibration gives only N values per class. The range covers the unseen tail.
        low, high = observed[f"{dense.name}/output"].widened()
        if dense.activation in ("relu", "relu6"):
            low, high = 0.0, (min(high, 6.0) if dense.activation == "relu6" else high)
        elif dense.activation == "tanh":
            limit = observed[f"{dense.name}/output"].tanh_limit()
            low, high = max(low, -limit), min(high, limit)
        plan_dense[dense.name] = Int8Dense(int8_format(low, high), channels[dense.name][0])
    seen = observed["input"]
    if int16_input:  # QUANTIZEd from float, with room to spare (a halved step still leaves 2^-15 of the range)
        given = int16_format(INPUT_MARGIN * max(abs(seen.low), abs(seen.high)))
    else:  # the caller's int8, or the fused LSTM op's, or --input-precision int8
        given = int8_format(seen.low, seen.high)
    return Int8Plan(given, plan_layers, plan_dense, bool(int8_io))


def _with_roles(weights, **roles):
    """The same kind of weights with some roles replaced (W and R by their int8 grid, the biases by theirs)."""
    return type(weights)(**{**weights.roles(), **roles})




def sum_format(activation: Activation, seen: "_Seen") -> Int8Format:
    """The format of z = P + r: clipped at `tanh_limit` before TANH; for the relu family, z after the activation
    (the ADD applies it through its output range), which is also the state."""
    if activation == Activation.TANH:
        limit = seen.tanh_limit()
        return int8_format(max(seen.low, -limit), min(seen.high, limit))
    limits = {Activation.RELU: (0.0, np.inf), Activation.RELU6: (0.0, 6.0), Activation.RELU_N1_TO_1: (-1.0, 1.0),
              Activation.NONE: (-np.inf, np.inf)}[Activation(activation)]
    return int8_format(np.clip(seen.low, *limits), np.clip(seen.high, *limits))


class _Seen:
    """What calibration saw of one value: its range, then how its values spread over that range (a histogram of
    BINS bins), from which a format is chosen by the error it leaves."""

    BINS = 1024

    def __init__(self, low: float = np.inf, high: float = -np.inf):
        self.low, self.high, self.counts = low, high, None

    def reach(self, values: np.ndarray) -> None:
        self.low, self.high = min(self.low, float(values.min())), max(self.high, float(values.max()))

    def widened(self) -> tuple[float, float]:
        """[low, high] widened at each end to where the extremes of UNSEEN_FACTOR times as many values would lie,
        were the tails Gaussian: the extreme of n values grows as sqrt(2 ln n), so by sqrt(ln(k n) / ln n) - 1
        (18 % for a classifier's 64 x 5 logits, 11 % for 20,000 values)."""
        n = max(float(self.counts.sum()) if self.counts is not None else 0.0, 2.0)
        margin = np.sqrt(np.log(UNSEEN_FACTOR * n) / np.log(n)) - 1
        return self.low - margin * abs(self.low), self.high + margin * abs(self.high)

    def count(self, values: np.ndarray) -> None:
        if self.counts is None:
            self.counts = np.zeros(self.BINS)
        # A range too narrow for its magnitude to split in BINS (values near 2^63 a few apart) keeps no spread: its
        # format is its range
        if self.high > self.low and np.all(np.diff(np.linspace(self.low, self.high, self.BINS + 1)) > 0):
            # in float64, as the edges are: numpy builds float32 data's edges in float32, which may not split
            self.counts += np.histogram(np.asarray(values, np.float64), self.BINS, (self.low, self.high))[0]

    def _centres(self) -> tuple[np.ndarray, np.ndarray]:
        edges = np.linspace(self.low, self.high, self.BINS + 1)
        counts = self.counts if self.counts is not None else np.zeros(self.BINS)
        return (edges[:-1] + edges[1:]) / 2, counts / max(counts.sum(), 1)

    def least_error_range(self) -> list[float]:
        """[low, high] shrunk by the factor (1 down to 1/2) that minimises the squared error of int8 over these
        values: clipping (v - clip(v))^2 plus rounding step^2 / 12. Min/max spends the int8 steps on a sample's
        extremes; a sum's error is these values' error, as they are added linearly."""
        if self.counts is None or not self.high > self.low:
            return [self.low, self.high]
        centres, weights = self._centres()
        best, best_cost = 1.0, np.inf
        for factor in np.linspace(1.0, 0.5, 51):
            low, high = min(self.low * factor, 0.0), max(self.high * factor, 0.0)
            cost = np.sum(weights * (centres - np.clip(centres, low, high)) ** 2) + ((high - low) / 255) ** 2 / 12
            if cost < best_cost:
                best, best_cost = float(factor), cost
        return [self.low * best, self.high * best]

    def tanh_limit(self) -> float:
        """Where to clip a sum before TANH: the limit c that minimises the mean squared error it leaves in tanh's
        output, what clipping loses, (tanh z - tanh c)^2 past +-c, plus what rounding to the format's step d
        costs, tanh'(z)^2 d^2 / 12. Sums whose tails lie where tanh is flat are clipped early; never past
        atanh(1 - 1/256), beyond which tanh's int8 output is 127 whatever the sum."""
        if self.counts is None or not self.high > self.low:
            return TANH_INPUT_LIMIT
        centres, weights = self._centres()
        best, best_cost = TANH_INPUT_LIMIT, np.inf
        for limit in np.arange(TANH_INPUT_LIMIT, 0.5, -0.02):
            clipped = np.clip(centres, -limit, limit)
            step = (max(min(self.high, limit), 0.0) - min(max(self.low, -limit), 0.0)) / 255  # as int8_format
            cost = np.sum(weights * ((np.tanh(centres) - np.tanh(clipped)) ** 2
                                     + (1 - np.tanh(clipped) ** 2) ** 2 * step ** 2 / 12))
            if cost < best_cost:
                best, best_cost = float(limit), cost
        return best


def _observe(network: Network, sequences: list[np.ndarray]) -> dict[str, _Seen]:
    """Every value the int8 graph holds, run over the calibration sequences by the float64 reference as the model
    runs them (the state carried from one sequence to the next unless the model keeps none): in two passes, the
    ranges, then how the values spread over them. Keys: input, <layer>/projection, /recurrent, /sum,
    <dense>/output."""
    observed: dict[str, _Seen] = {}
    for look in ("reach", "count"):
        states = None
        for x in sequences:
            values = [("input", x)]
            trace = []
            _, finals = reference.run_network(network, x, states, trace)
            for item in trace:
                if isinstance(item[0], Layer) and item[0].kind != "rnn":  # every value its steps compute
                    name = item[0].name
                    found = reference.cell_values(*item)
                    found["gate_sum/2"] = found["gate_sum"] / 2
                    values += [(f"{name}/{role}", value) for role, value in found.items()]
                elif isinstance(item[0], Layer):
                    name = item[0].name
                    projection, recurrent, summed = reference.layer_values(*item)
                    values += [(f"{name}/projection", projection), (f"{name}/recurrent", recurrent),
                               (f"{name}/sum", summed)]
                else:
                    values.append((f"{item[0].name}/output", item[2]))
            for key, value in values:
                getattr(observed.setdefault(key, _Seen()), look)(value)
            states = finals if network.state != "zero" else None
    return observed


def _swap(stage, layers: dict[str, Layer]):
    return tuple(layers[x.name] for x in stage) if isinstance(stage, tuple) else layers[stage.name]


def input_formats(network: Network) -> dict[str, Int8Format]:
    """Each layer direction's and Dense layer's input format: the network's input, then what the stage before
    wrote (its state format)."""
    plan = network.int8
    found, current = {}, plan.input
    for stage in network.stages:
        for layer in stage_layers(stage):
            found[layer.name] = current
        current = plan.layers[stage_layers(stage)[0].name].state
    for dense in network.head:
        found[dense.name] = current
        current = FIXED_OUTPUTS.get(dense.activation, plan.dense[dense.name].output)
    return found


def int8_biases(weights, input_format: Int8Format, formats) -> dict[str, np.ndarray]:
    """A layer's biases on their int32 grids, by role: `bias` joins x W^T (the input's scale x W's per channel), a
    GRU's `recurrent_bias` joins h R^T (the state's scale x R's)."""
    roles = weights.roles()
    found = {"bias": _grid_bias(roles["bias"], input_format.scale, formats.scales["input_weights"],
                                bias_type(input_format))}
    if roles.get("recurrent_bias") is not None:
        found["recurrent_bias"] = _grid_bias(roles["recurrent_bias"], formats.state.scale,
                                             formats.scales["recurrent_weights"])
    return found


def _grid_bias(bias: np.ndarray, input_scale: float, channel_scales: np.ndarray, dtype=np.int32) -> np.ndarray:
    """A bias as the integers it becomes at input scale x weight scale, dequantized."""
    scales = bias_scales(input_scale, channel_scales)
    return dequantized_bias(bias_int32(bias, scales, dtype), scales)


def with_int8_biases(network: Network, plan: Int8Plan) -> Network:
    """The biases as the int32 values they become (their dequantized values), at each op's input scale."""
    inputs = replace(network, int8=plan)
    formats = input_formats(inputs)
    stages = []
    for stage in network.stages:
        new = []
        for layer in stage_layers(stage):
            new.append(replace(layer, weights=_with_roles(layer.weights, **int8_biases(
                layer.weights, formats[layer.name], plan.layers[layer.name]))))
        stages.append(tuple(new) if isinstance(stage, tuple) else new[0])
    head = []
    for dense in network.head:
        scales = bias_scales(formats[dense.name].scale, plan.dense[dense.name].kernel_scales)
        integers = bias_int32(dense.bias, scales, bias_type(formats[dense.name]))  # int64 on an int16 input
        head.append(Dense(dense.name, dense.weights, dequantized_bias(integers, scales),
                          dense.activation))
    return replace(network, stages=stages, head=head, int8=plan)

