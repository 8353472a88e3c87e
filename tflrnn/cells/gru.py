"""The GRU cell, in one description every source maps onto (gates in Keras' and ONNX's order: update z, reset r,
candidate n; rows are output units, as TFLite stores a FULLY_CONNECTED's weights):

    z = sigmoid(x W_z^T + b_z + h R_z^T + c_z)          r = sigmoid(x W_r^T + b_r + h R_r^T + c_r)
    reset after  (Keras 3's default, PyTorch, ONNX linear_before_reset=1):  n = tanh(x W_n^T + b_n + r * (h R_n^T + c_n))
    reset before (Keras reset_after=False, ONNX linear_before_reset=0):     n = tanh(x W_n^T + b_n + (r * h) R_n^T)
    h' = z * h + (1 - z) * n

W = input_weights [3U, I], R = recurrent_weights [3U, U], b = bias [3U], c = recurrent_bias [3U] (reset after
only; a reset-before cell's recurrent biases add to b, where sources fold them). No builtin op runs a GRU: the
portable lowering writes it (lowering/portable.py), and reference.py computes it in float64.
"""

from __future__ import annotations

import numpy as np

from ..cell import StateSized, _float32, _orthogonal, check_name, check_positive_int
from ..errors import ConfigError, WeightsError
from ..model import Activation
from . import CellKind
from .gated import GatedWeights, check_activations, keras_kernels

GATES = 3  # z, r, n
# What each framework's gate blocks are, in tflrnn's order z, r, n: the rows (or columns) to take from each.
TORCH_ORDER = (1, 0, 2)  # PyTorch stacks r, z, n


class GRUWeights(GatedWeights):
    """A GRU's weights in TFLite layout, float32: input_weights [3U, I], recurrent_weights [3U, U], bias [3U] and,
    for a cell that resets after the recurrent product, recurrent_bias [3U] (None: reset before)."""

    kind = "gru"
    GATES = GATES
    GATE_LETTERS = "z, r, n"

    def __init__(self, input_weights, recurrent_weights, bias, recurrent_bias=None):
        super().__init__(input_weights, recurrent_weights, bias)
        self.recurrent_bias = None if recurrent_bias is None else _float32(recurrent_bias, "recurrent_bias")
        if self.recurrent_bias is not None and self.recurrent_bias.shape != self.bias.shape:
            raise WeightsError(f"recurrent_bias: expected shape [{self.bias.shape[0]}], found "
                               f"{list(self.recurrent_bias.shape)}")

    @property
    def reset_after(self) -> bool:
        return self.recurrent_bias is not None

    def roles(self) -> dict[str, np.ndarray]:
        """The weights by role name, as `tflrnn weights` exports them."""
        named = super().roles()
        if self.recurrent_bias is not None:
            named["recurrent_bias"] = self.recurrent_bias
        return named

    def settings(self) -> dict:
        return {"reset_after": self.reset_after}

    def digest_tag(self) -> bytes:
        return b"gru" if self.reset_after else b"gru/reset-before"

    def gate_rows(self, array: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(the update and reset gates' rows, the candidate's rows) of a role: how the lowering groups them."""
        units = self.num_units
        return np.ascontiguousarray(array[: 2 * units]), np.ascontiguousarray(array[2 * units:])

    @classmethod
    def from_keras(cls, kernel, recurrent_kernel, bias, reset_after: bool = True) -> GRUWeights:
        """Keras GRU weights: kernel [I, 3U] and recurrent_kernel [U, 3U] (columns z, r, h) act on the right;
        bias [2, 3U] (input row, recurrent row) with reset_after, else [3U]."""
        kernel, recurrent = keras_kernels(kernel, recurrent_kernel, "GRU", GATES)
        bias = _float32(bias, "bias")
        if reset_after:
            if bias.ndim != 2 or bias.shape[0] != 2:
                raise WeightsError(f"bias: a GRU with reset_after has bias [2, 3 * units], found {list(bias.shape)}")
            input_bias, recurrent_bias = bias[0], bias[1]
        else:
            input_bias, recurrent_bias = bias, None
        return cls(kernel, recurrent, input_bias, recurrent_bias)

    def to_keras(self) -> dict[str, np.ndarray]:
        found = super().to_keras()
        if self.recurrent_bias is not None:
            found["bias"] = np.stack([self.bias, self.recurrent_bias])
        return found

    @classmethod
    def from_torch(cls, weight_ih, weight_hh, bias_ih, bias_hh) -> GRUWeights:
        """nn.GRU's weight_ih [3U, I], weight_hh [3U, U], bias_ih and bias_hh [3U], gates r, z, n: reset after."""
        return cls(*(_torch_order(_float32(a, name)) for a, name in (
            (weight_ih, "weight_ih"), (weight_hh, "weight_hh"), (bias_ih, "bias_ih"), (bias_hh, "bias_hh"))))

    @classmethod
    def from_onnx(cls, w, r, b, linear_before_reset: bool) -> GRUWeights:
        """One direction of an ONNX GRU: W [3U, I], R [3U, U] (gates z, r, h), B [6U] (Wb then Rb). With
        linear_before_reset=0 Rb only adds, so it is folded into the bias (in float64, rounded once)."""
        b = np.asarray(b, np.float64)
        units3 = b.shape[0] // 2
        if linear_before_reset:
            return cls(w, r, b[:units3], b[units3:])
        return cls(w, r, b[:units3] + b[units3:])


def _torch_order(array: np.ndarray) -> np.ndarray:
    units = array.shape[0] // GATES
    return np.ascontiguousarray(np.concatenate([array[k * units:(k + 1) * units] for k in TORCH_ORDER]))


def initial_weights(num_units: int, input_size: int, seed: int = 0, reset_after: bool = True) -> GRUWeights:
    """Seeded weights drawn as Keras' GRU draws them: kernel glorot-uniform [I, 3U], recurrent kernel orthogonal
    per gate [U, U] blocks, biases zeros."""
    rng = np.random.default_rng(seed)
    units3 = GATES * num_units
    limit = np.float32(np.sqrt(6.0 / (input_size + units3)))
    kernel = rng.random((input_size, units3), dtype=np.float32)
    kernel *= 2 * limit
    kernel -= limit
    recurrent = np.concatenate([_orthogonal(rng, num_units) for _ in range(GATES)], axis=1)
    bias = np.zeros((2, units3) if reset_after else units3, np.float32)
    return GRUWeights.from_keras(kernel, recurrent, bias, reset_after)


class GRUCell(StateSized):
    """A GRU cell: num_units, activation (tanh), recurrent_activation (sigmoid), reset_after (Keras 3's default).
    The cell holds no weights: pass them to `tflrnn.build` (`weights=GRUWeights(...)`), or get seeded ones."""

    kind = "gru"

    def __init__(self, num_units, activation="tanh", recurrent_activation="sigmoid", reset_after=True, reuse=None,
                 name=None, dtype=None):
        self.num_units = check_positive_int(num_units, "num_units")
        check_activations("GRU", activation, recurrent_activation)
        self.reset_after = bool(reset_after)
        self.reuse = None if reuse is None else bool(reuse)
        self.name = check_name("gru" if name is None else name)
        if dtype is not None and np.dtype(dtype) != np.float32:
            raise ConfigError(f"dtype {np.dtype(dtype).name} is not supported: the cell computes in float32")

    activation = "tanh"
    recurrent_activation = "sigmoid"
    fused_activation = Activation.TANH

    def renamed(self, name: str) -> GRUCell:
        """The same cell under another name (a bidirectional layer's <name>/fw and <name>/bw)."""
        return GRUCell(self.num_units, reset_after=self.reset_after, reuse=self.reuse, name=name)

    def initial_weights(self, input_size: int, seed: int = 0) -> GRUWeights:
        return initial_weights(self.num_units, input_size, seed, reset_after=self.reset_after)

    def get_config(self) -> dict:
        return {"cell": "gru", "name": self.name, "num_units": self.num_units, "activation": self.activation,
                "recurrent_activation": self.recurrent_activation, "reset_after": self.reset_after,
                "reuse": self.reuse}

    def __eq__(self, other) -> bool:
        return isinstance(other, GRUCell) and self.get_config() == other.get_config()

    def __repr__(self) -> str:
        return f"GRUCell(num_units={self.num_units}, reset_after={self.reset_after}, name={self.name!r})"


def describe(layer: dict) -> str:
    """A GRU's settings as the summary and inspect say them: only a reset before the recurrent product."""
    return "" if layer.get("reset_after", True) else " (reset before)"


KIND = CellKind(
    name="gru", title="GRU", cell=GRUCell, weights=GRUWeights,
    roles=("input_weights", "recurrent_weights", "bias", "recurrent_bias"), fused=False,
    keras=("GRU", "GRUCell"), torch="GRU", onnx="GRU", gates=GATES,
    reference="run_gru", values="gru_values", steps="tflrnn.lowering.gru",
    int8_steps_check="tflrnn.verification.int8_gru",
    settings=("reset_after", "recurrent_activation"), config_keys=("reset_after",), describe=describe,
)
