"""The network: one description that every source produces, each lowering writes and the reader recovers.

A network is a chain of stages, each an RNN layer run one way (a `Layer`) or both ways (a forward and a backward
`Layer`), optionally followed by the last step (Keras return_sequences=False) and Dense layers, with the input's
layout and sizes. `build.network_of` makes one from cells, weights and options; a lowering (`lowering/`) turns it
into a model description and recovers it from a model. Two networks are equal when every name, size and option is,
and every weight array is (np.array_equal).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .cell import CellWeights
from .model import Activation

# The Keras Dense activations a network may have, in the order error messages list them.
DENSE_ACTIVATIONS = ("linear", "relu", "relu6", "tanh", "sigmoid", "softmax")
# Where the hidden state lives: in the model, carried across invokes; an input and an output the caller chains;
# nowhere (every invoke starts from zeros).
STATES = ("carry", "io", "zero")
# How the portable lowering writes the steps: chosen by size, one op per step, or a WHILE loop.
RECURRENCES = ("auto", "unrolled", "loop")


@dataclass(eq=False)
class Layer:
    """One direction of an RNN layer. Layers with the same name share one set of variables (TfLiteRNNCell reuse).

    With `int8`, W and R are stored as (int8 array, scale) and `weights` holds their dequantized values: a hybrid
    layer that quantizes x and h on the fly each step (with `asymmetric_inputs`, asymmetrically). An LSTM's scale
    is an array, one per gate (the fused op takes each gate's W and R as a tensor of its own).
    """

    name: str
    activation: Activation
    weights: CellWeights  # or another kind's weights (cells/): GRUWeights
    int8: tuple[tuple[np.ndarray, float], tuple[np.ndarray, float]] | None = None
    asymmetric_inputs: bool = False
    cell_clip: float = 0.0  # an LSTM's c clipped to [-cell_clip, cell_clip] each step (0: never), a float32 value

    @property
    def kind(self) -> str:
        """The cell kind (cells/): its weights say."""
        return self.weights.kind

    def settings(self) -> dict:
        """What, besides its kind, sizes and activation, sets how this direction computes, as inspect and the summary
        show it: its weights' (a GRU's reset_after) and its cell_clip, if any."""
        return {**self.weights.settings(), **({"cell_clip": self.cell_clip} if self.cell_clip else {})}

    @property
    def op_version(self) -> int:
        """The fused op's version for these weights: 1 float, 2 hybrid, 3 hybrid with asymmetric inputs."""
        return 1 if self.int8 is None else 3 if self.asymmetric_inputs else 2

    def __eq__(self, other) -> bool:
        if not isinstance(other, Layer):
            return NotImplemented
        same_int8 = (self.int8 is None) == (other.int8 is None) and (self.int8 is None or all(
            np.array_equal(q, p) and np.array_equal(np.float32(s), np.float32(t))  # a scale is stored as float32
            for (q, s), (p, t) in zip(self.int8, other.int8)))
        return (self.name, int(self.activation), self.asymmetric_inputs, self.cell_clip) == (
            other.name, int(other.activation), other.asymmetric_inputs, other.cell_clip) and same_int8 and \
            self.weights.equals(other.weights)


@dataclass(eq=False)
class Dense:
    """A Keras Dense layer: y = activation(x W^T + b), with W [units, input] as TFLite stores it (Keras' kernel
    transposed); on a sequence it applies to every step."""

    name: str
    weights: np.ndarray
    bias: np.ndarray
    activation: str = "linear"

    @property
    def units(self) -> int:
        return self.weights.shape[0]

    def __eq__(self, other) -> bool:
        if not isinstance(other, Dense):
            return NotImplemented
        return (self.name, self.activation) == (other.name, other.activation) and all(
            a.dtype == b.dtype and np.array_equal(a, b) for a, b in ((self.weights, other.weights),
                                                                    (self.bias, other.bias)))



@dataclass(frozen=True)
class Int8Format:
    """How one int8 value stands for a real one: real = scale * (q - zero_point). The scale is float32 (as a
    model stores it). `bits` 16 for an int16 value (the int8 LSTM kernel's cell state)."""

    scale: float
    zero_point: int
    bits: int = 8

    @property
    def limits(self) -> tuple[int, int]:
        """The integers it holds: [-128, 127] for int8."""
        return -(1 << (self.bits - 1)), (1 << (self.bits - 1)) - 1


@dataclass(eq=False)
class Int8Layer:
    """A layer direction's int8 formats: its input projection P = x W^T + b, the recurrent term r = h R^T, their
    sum z, and the state h = act(z) (for tanh (1/128, 0), TANH's int8 output; otherwise z's own); and the
    per-output-channel scales of W and R (symmetric, zero point 0)."""

    projection: Int8Format
    recurrent: Int8Format
    sum: Int8Format
    state: Int8Format
    input_scales: np.ndarray
    recurrent_scales: np.ndarray

    @property
    def formats(self) -> dict[str, Int8Format]:
        """By role, as Int8Cell keeps them."""
        return {"projection": self.projection, "recurrent": self.recurrent, "sum": self.sum, "state": self.state}

    @property
    def scales(self) -> dict[str, np.ndarray]:
        """The weights' per-channel scales by role, as Int8Cell keeps them."""
        return {"input_weights": self.input_scales, "recurrent_weights": self.recurrent_scales}

    def __eq__(self, other) -> bool:
        if not isinstance(other, Int8Layer):
            return NotImplemented
        return (self.projection, self.recurrent, self.sum, self.state) == (
            other.projection, other.recurrent, other.sum, other.state) and all(
            np.array_equal(a, b) for a, b in ((self.input_scales, other.input_scales),
                                              (self.recurrent_scales, other.recurrent_scales)))


@dataclass(eq=False)
class Int8Cell:
    """The int8 formats of a layer direction of another kind than the basic cell (a GRU: lowering/gru.py names its
    values), by the value's role, and its weights' per-output-channel scales by the weight tensor's role."""

    formats: dict[str, Int8Format]
    scales: dict[str, np.ndarray]

    @property
    def state(self) -> Int8Format:
        return self.formats["state"]

    def __eq__(self, other) -> bool:
        if not isinstance(other, Int8Cell):
            return NotImplemented
        return self.formats == other.formats and self.scales.keys() == other.scales.keys() and all(
            np.array_equal(a, other.scales[k]) for k, a in self.scales.items())


@dataclass(eq=False)
class Int8Dense:
    """A Dense layer's int8 formats: its FULLY_CONNECTED output, and its kernel's per-output-channel scales (its
    activation op's output format is the kernel's own: see quantization.FIXED_OUTPUTS)."""

    output: Int8Format
    kernel_scales: np.ndarray

    def __eq__(self, other) -> bool:
        if not isinstance(other, Int8Dense):
            return NotImplemented
        return self.output == other.output and np.array_equal(self.kernel_scales, other.kernel_scales)


@dataclass(eq=False)
class Int8Plan:
    """A full-integer network: every value the graph holds is int8 in these formats (by layer and Dense name),
    weights per channel, biases int32 at input scale x weight scale. The network's float weights are the
    dequantized ones (what the model computes with). `int8_io`: the input, output and state tensors of the
    signature are int8 too (else float, with QUANTIZE / DEQUANTIZE at the edges)."""

    input: Int8Format
    layers: dict[str, Int8Layer]
    dense: dict[str, Int8Dense] = field(default_factory=dict)
    int8_io: bool = False

    def __eq__(self, other) -> bool:
        if not isinstance(other, Int8Plan):
            return NotImplemented
        return (self.input, self.int8_io, self.layers, self.dense) == (
            other.input, other.int8_io, other.layers, other.dense)


@dataclass
class Network:
    """What tflrnn builds, independent of how it is lowered to ops.

    `stages`: the RNN layers in order, a (forward, backward) pair for a bidirectional one, each reading the
    previous one's output ([fw | bw] for a pair). `time_steps`: steps per invoke (with `dynamic_time`, the length
    allocated until the input is resized). `merge`: a final bidirectional layer's outputs joined [fw | bw] (else
    two outputs). `last_step`: only the final step (the backward direction's at t=0, its final state). `head`:
    Dense layers after that. `state`: where the hidden state lives. `lowering`: how it becomes ops. `loop`: the
    portable lowering runs the steps in a WHILE loop (R applied by one op) instead of unrolled, `steps_per_iteration`
    of them in each pass of its body (they divide `time_steps`). `int8`: a
    full-integer network (the portable lowering writes every op in int8), None for float.
    """

    stages: list
    time_steps: int
    batch_size: int
    time_major: bool = False
    dynamic_time: bool = False
    last_step: bool = False
    merge: bool = True
    head: list[Dense] = field(default_factory=list)
    state: str = "carry"
    lowering: str = "fused"
    loop: bool = False
    int8: Int8Plan | None = None
    steps_per_iteration: int = 1

    def takes(self, weights) -> bool:
        """Whether `weights` (one per direction, in layer order) are of this network's cell kinds and shapes."""
        return weights is not None and len(weights) == len(self.layers) and all(
            w is not None and getattr(w, "kind", "rnn") == layer.kind and
            (w.num_units, w.input_size) == (layer.weights.num_units, layer.weights.input_size)
            for w, layer in zip(weights, self.layers))

    @property
    def layers(self) -> list[Layer]:
        """Every direction of every stage, in order (forward before backward)."""
        return [layer for stage in self.stages for layer in (stage if isinstance(stage, tuple) else (stage,))]

    @property
    def bidirectional(self) -> bool:
        return any(isinstance(stage, tuple) for stage in self.stages)

    @property
    def input_size(self) -> int:
        return self.layers[0].weights.input_size

    @property
    def output_width(self) -> int:
        """Values per step (per output) at the end: the last Dense layer's units, else the last stage's."""
        if self.head:
            return self.head[-1].units
        return sum(layer.weights.num_units for layer in stage_layers(self.stages[-1]))


def stage_layers(stage) -> tuple[Layer, ...]:
    return stage if isinstance(stage, tuple) else (stage,)


def base_name(stage) -> str:
    """A stage's name: a layer's own, or what a forward/backward pair's names share (<name>/fw -> <name>)."""
    if isinstance(stage, tuple):
        return stage[0].name.rpartition("/")[0] or stage[0].name
    return stage.name
