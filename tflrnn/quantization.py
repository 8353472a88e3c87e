"""Full-integer int8: the int8 format of every value a network's graph holds, from representative data.

`calibrate(network, sequences)` returns the same network with an `Int8Plan` (network.py) and the weights the int8
model computes with: W, R and Dense kernels symmetric per output channel (q = round(w / s_c), s_c = max|w_c| / 127),
biases int32 at (input scale x s_c), the weights of the network their dequantized values. Activations are asymmetric
int8 over the range the float reference reaches on the calibration data, run as the model would run it (the state
carried from one sequence to the next, unless the model keeps none), every step and the initial states included.

Where a kernel fixes a format, the plan takes it (TFLite's and TFLite Micro's int8 kernels; TFLite Micro writes
these whatever the tensor says): TANH's output is (1/128, 0); LOGISTIC's and SOFTMAX's (1/256, -128). A sum that
feeds TANH is clipped to +-atanh(1 - 1/256): beyond that tanh rounds to the same int8 output, so the clip loses
nothing and buys a finer step for the values that matter. Outputs joined by CONCATENATION or PACK share one format
(the kernels copy bytes), so the two directions of a bidirectional layer take the union of their ranges.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from . import reference
from .cell import CellWeights
from .errors import ConfigError
from .model import Activation
from .network import Dense, Int8Dense, Int8Format, Int8Layer, Int8Plan, Layer, Network, stage_layers

TANH_OUTPUT = Int8Format(float(np.float32(1 / 128)), 0)
PROBABILITY_OUTPUT = Int8Format(float(np.float32(1 / 256)), -128)
FIXED_OUTPUTS = {"tanh": TANH_OUTPUT, "sigmoid": PROBABILITY_OUTPUT, "softmax": PROBABILITY_OUTPUT}
TANH_INPUT_LIMIT = float(np.arctanh(1 - 1 / 256))


MAX_CALIBRATION_VALUES = 2**27  # 512 MiB of float32: more data than that does not move a range


def int8_format(low: float, high: float) -> Int8Format:
    """Asymmetric int8 over [low, high] widened to hold 0 exactly (a zero state, zero padding)."""
    low, high = min(float(low), 0.0), max(float(high), 0.0)
    if not high - low > 1e-12:  # a value that never moved: any step holds it
        high = low + 1.0
    scale = float(np.float32((high - low) / 255.0))
    return Int8Format(scale, int(np.clip(np.rint(-128 - low / scale), -128, 127)))


def quantize_values(real: np.ndarray, fmt: Int8Format) -> np.ndarray:
    return np.clip(np.rint(np.asarray(real, np.float64) / fmt.scale) + fmt.zero_point, -128, 127).astype(np.int8)


def dequantize_values(q: np.ndarray, fmt: Int8Format) -> np.ndarray:
    return (np.asarray(q, np.float64) - fmt.zero_point) * fmt.scale


def representable(fmt: Int8Format) -> tuple[float, float]:
    """The reals an int8 value of this format stands for: [scale (-128 - zp), scale (127 - zp)]."""
    return fmt.scale * (-128 - fmt.zero_point), fmt.scale * (127 - fmt.zero_point)


def per_channel(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per output channel (row), as TFLite's int8 FULLY_CONNECTED takes weights: (q, scales)."""
    largest = np.max(np.abs(weights.astype(np.float64)), axis=1)
    scales = np.where(largest > 0, largest / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(weights / scales[:, None].astype(np.float64)), -127, 127).astype(np.int8)
    return q, scales


def dequantized(q: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """What the kernel computes with: q x s_c in float32 (the same arithmetic when building and reading)."""
    return q.astype(np.float32) * np.asarray(scales, np.float32)[:, None]


def bias_scales(input_scale: float, channel_scales: np.ndarray) -> np.ndarray:
    """An int32 bias's scale per channel: the input's scale times the weights' (what the kernel's sum is in)."""
    return (np.float64(np.float32(input_scale)) * np.asarray(channel_scales, np.float64)).astype(np.float32)


def bias_int32(bias: np.ndarray, scales: np.ndarray) -> np.ndarray:
    q = np.rint(np.asarray(bias, np.float64) / np.asarray(scales, np.float64))
    if np.any(np.abs(q) > 2**31 - 1):
        raise ConfigError("a bias is over 2^31 steps of its int32 scale (input scale x weight scale): the input's "
                          "range or the weights are degenerate for int8")
    return q.astype(np.int32)


def dequantized_bias(q: np.ndarray, scales: np.ndarray) -> np.ndarray:
    return (q.astype(np.float64) * np.asarray(scales, np.float64)).astype(np.float32)


def load_calibration(path, network: Network) -> list[np.ndarray]:
    """The sequences of a `.npy` or `.npz` (one array): [N, B, T, I] batch-major, [N, T, B, I] time-major, each
    n one invoke's input in the model's layout (any B and T; I the model's input size)."""
    path = Path(path)
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                if len(loaded.files) != 1:
                    raise ConfigError(f"calibration {path.name}: an .npz of one array, found {len(loaded.files)} "
                                      f"({', '.join(loaded.files[:5]) or 'none'})")
                data = loaded[loaded.files[0]]
        else:
            data = loaded
    except ConfigError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise ConfigError(f"calibration {path}: not a readable .npy or .npz ({' '.join(str(exc).split())[:100]})") \
            from None
    return calibration_sequences(data, network, path.name)


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
    if network.lowering != "portable":
        return ("full-int8 needs --lowering portable: the fused RNN ops' kernels take float inputs (their int8 is "
                "hybrid, --quantize int8)")
    if network.loop or network.dynamic_time:
        return ("full-int8 writes the steps unrolled, with a fixed number of steps: drop --recurrence loop and "
                "--time-steps dynamic")
    names = [layer.name for layer in network.layers]
    if len(set(names)) != len(names):
        return "full-int8 gives each layer its own formats: layers that reuse one cell's variables are refused"
    for layer in network.layers:
        if layer.int8 is not None:
            return "full-int8 quantizes the float weights itself: drop the hybrid --quantize int8"
    return None


def calibrate(network: Network, sequences: list[np.ndarray], *, int8_io: bool = False) -> Network:
    """The network as full-integer int8 (see the module's docstring)."""
    why = refusal(network)
    if why:
        raise ConfigError(why)
    if not sequences:
        raise ConfigError("calibration needs at least one representative sequence")
    # Weights first (their formats need no data), so that the ranges are those the model's weights reach.
    channels = {}
    layers = {}
    for layer in network.layers:
        (qw, sw), (qr, sr) = per_channel(layer.weights.input_weights), per_channel(layer.weights.recurrent_weights)
        channels[layer.name] = (sw, sr)
        layers[layer.name] = replace(layer, weights=CellWeights(dequantized(qw, sw), dequantized(qr, sr),
                                                                layer.weights.bias))
    heads = []
    for dense in network.head:
        q, s = per_channel(dense.weights)
        channels[dense.name] = (s,)
        heads.append(replace(dense, weights=dequantized(q, s)))
    weighted = replace(network, stages=[_swap(stage, layers) for stage in network.stages], head=heads)

    ranges: dict[str, list[float]] = {}

    def seen(key: str, values: np.ndarray) -> None:
        low, high = ranges.get(key, (np.inf, -np.inf))
        ranges[key] = [min(low, float(values.min())), max(high, float(values.max()))]

    states = None
    for x in sequences:
        seen("input", x)
        trace = []
        _, finals = reference.run_network(weighted, x, states, trace)
        for item in trace:
            if isinstance(item[0], Layer):
                layer, source, start, outputs = item
                w, r, b = (a.astype(np.float64) for a in layer.weights.arrays())
                projection = source @ w.T + b
                previous = np.concatenate([start[:, None], outputs[:, :-1]], axis=1)
                recurrent = previous @ r.T
                seen(f"{layer.name}/projection", projection)
                seen(f"{layer.name}/recurrent", recurrent)
                seen(f"{layer.name}/sum", projection + recurrent)
            else:
                seen(f"{item[0].name}/output", item[2])
        states = finals if network.state != "zero" else None

    plan_layers = {}
    for stage in weighted.stages:
        directions = stage_layers(stage)
        sums = [_sum_format(layer.activation, ranges[f"{layer.name}/sum"]) for layer in directions]
        if len(directions) == 2 and directions[0].activation != Activation.TANH:
            # CONCATENATION copies bytes: both directions' states in one format
            both = [ranges[f"{layer.name}/sum"] for layer in directions]
            union = [min(low for low, _ in both), max(high for _, high in both)]
            sums = [_sum_format(layer.activation, union) for layer in directions]
        for layer, sum_format in zip(directions, sums):
            plan_layers[layer.name] = Int8Layer(
                projection=int8_format(*ranges[f"{layer.name}/projection"]),
                recurrent=int8_format(*ranges[f"{layer.name}/recurrent"]),
                sum=sum_format, state=TANH_OUTPUT if layer.activation == Activation.TANH else sum_format,
                input_scales=channels[layer.name][0], recurrent_scales=channels[layer.name][1])
    plan_dense = {}
    for dense in weighted.head:
        low, high = ranges[f"{dense.name}/output"]
        if dense.activation in ("relu", "relu6"):
            low, high = 0.0, (min(high, 6.0) if dense.activation == "relu6" else high)
        elif dense.activation == "tanh":
            low, high = max(low, -TANH_INPUT_LIMIT), min(high, TANH_INPUT_LIMIT)
        plan_dense[dense.name] = Int8Dense(int8_format(low, high), channels[dense.name][0])
    plan = Int8Plan(int8_format(*ranges["input"]), plan_layers, plan_dense, bool(int8_io))
    return with_int8_biases(weighted, plan)


def _sum_format(activation: Activation, bounds) -> Int8Format:
    """The format of z = P + r: clipped where TANH rounds to its ends; for the relu family, z after the activation
    (the ADD applies it through its output range), which is also the state."""
    low, high = bounds
    if activation == Activation.TANH:
        return int8_format(max(low, -TANH_INPUT_LIMIT), min(high, TANH_INPUT_LIMIT))
    limits = {Activation.RELU: (0.0, np.inf), Activation.RELU6: (0.0, 6.0), Activation.RELU_N1_TO_1: (-1.0, 1.0),
              Activation.NONE: (-np.inf, np.inf)}[Activation(activation)]
    return int8_format(np.clip(low, *limits), np.clip(high, *limits))


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


def with_int8_biases(network: Network, plan: Int8Plan) -> Network:
    """The biases as the int32 values they become (their dequantized values), at each op's input scale."""
    inputs = replace(network, int8=plan)
    formats = input_formats(inputs)
    stages = []
    for stage in network.stages:
        new = []
        for layer in stage_layers(stage):
            scales = bias_scales(formats[layer.name].scale, plan.layers[layer.name].input_scales)
            bias = dequantized_bias(bias_int32(layer.weights.bias, scales), scales)
            w = layer.weights
            new.append(replace(layer, weights=CellWeights(w.input_weights, w.recurrent_weights, bias)))
        stages.append(tuple(new) if isinstance(stage, tuple) else new[0])
    head = []
    for dense in network.head:
        scales = bias_scales(formats[dense.name].scale, plan.dense[dense.name].kernel_scales)
        head.append(Dense(dense.name, dense.weights, dequantized_bias(bias_int32(dense.bias, scales), scales),
                          dense.activation))
    return replace(network, stages=stages, head=head, int8=plan)
