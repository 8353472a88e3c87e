"""The LSTM cell, in one description every source maps onto (gates in Keras', PyTorch's and TFLite's order: input i,
forget f, cell candidate g, output o; rows are output units, as TFLite stores a FULLY_CONNECTED's weights):

    i = sigmoid(x W_i^T + h R_i^T + b_i)     f = sigmoid(x W_f^T + h R_f^T + b_f)
    g = tanh(x W_g^T + h R_g^T + b_g)        o = sigmoid(x W_o^T + h R_o^T + b_o)
    c' = f * c + i * g                       h' = o * tanh(c')

W = input_weights [4U, I], R = recurrent_weights [4U, U], b = bias [4U] (PyTorch's and ONNX's two biases summed:
they only add). No peepholes, projection, layer norm or clipping (sources holding them are refused). The state is
two vectors per example, h and c; tflrnn keeps them side by side as one [B, 2U] array, h first (the order of
Keras' returned states and of the fused op's inputs 18 and 19): a state input or output of a portable model, the
python API's zero_state and the float64 reference (reference.run_lstm) all take it so.
"""

from __future__ import annotations

import numpy as np

from ..cell import StateSized, _float32, _orthogonal, _shown, check_name, check_positive_int
from ..errors import ConfigError, WeightsError
from ..model import Activation
from . import CellKind
from .gated import GatedWeights, check_activations, keras_kernels

GATES = 4  # i, f, g, o
GATE_NAMES = ("input", "forget", "cell", "output")  # as the fused op's inputs name them
ONNX_ORDER = (0, 2, 3, 1)  # ONNX stacks i, o, f, c: the blocks to take, in tflrnn's order i, f, g, o


class LSTMWeights(GatedWeights):
    """An LSTM's weights in TFLite layout, float32: input_weights [4U, I], recurrent_weights [4U, U], bias [4U],
    gates i, f, g, o."""

    kind = "lstm"
    GATES = GATES
    GATE_LETTERS = "i, f, g, o"

    @property
    def state_width(self) -> int:
        """Values of state per example: h and c."""
        return 2 * self.num_units

    def gate_rows(self, array: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(the sigmoid gates' rows i, f, o together, the candidate g's rows): how the portable lowering groups them,
        one FULLY_CONNECTED and one LOGISTIC for the three."""
        i, f, g, o = self.gates(array)
        return np.ascontiguousarray(np.concatenate([i, f, o])), g

    @classmethod
    def from_gate_rows(cls, **roles: tuple[np.ndarray, np.ndarray]) -> LSTMWeights:
        """The inverse of gate_rows, for each role: (i f o rows, g rows) -> i, f, g, o."""
        joined = {}
        for role, (sigmoid_rows, candidate) in roles.items():
            units = candidate.shape[0]
            joined[role] = np.concatenate([sigmoid_rows[:2 * units], candidate, sigmoid_rows[2 * units:]])
        return cls(**joined)

    @classmethod
    def from_keras(cls, kernel, recurrent_kernel, bias=None) -> LSTMWeights:
        """Keras LSTM weights: kernel [I, 4U] and recurrent_kernel [U, 4U] (columns i, f, c, o) act on the right;
        bias [4U] (None: use_bias=False)."""
        kernel, recurrent = keras_kernels(kernel, recurrent_kernel, "LSTM", GATES)
        return cls(kernel, recurrent, np.zeros(kernel.shape[0], np.float32) if bias is None else bias)

    @classmethod
    def from_torch(cls, weight_ih, weight_hh, bias_ih=None, bias_hh=None) -> LSTMWeights:
        """nn.LSTM's weight_ih [4U, I], weight_hh [4U, U], bias_ih and bias_hh [4U] (gates i, f, g, o): the two
        biases only add, so they are summed (in float64, rounded once); bias=False gives zeros."""
        w = _float32(weight_ih, "weight_ih")
        biases = [np.asarray(_float32(b, name), np.float64) for b, name in ((bias_ih, "bias_ih"), (bias_hh, "bias_hh"))
                  if b is not None]
        for bias, name in zip(biases, ("bias_ih", "bias_hh")):
            if bias.shape != (w.shape[0],):  # summed, a [1] would broadcast silently
                raise WeightsError(f"nn.LSTM {name}: expected [{w.shape[0]}] (4 * hidden_size), found "
                                   f"{list(bias.shape)}")
        bias = sum(biases) if biases else np.zeros(w.shape[0])
        return cls(w, weight_hh, bias)

    @classmethod
    def from_onnx(cls, w, r, b=None) -> LSTMWeights:
        """One direction of an ONNX LSTM: W [4U, I], R [4U, U] (gates i, o, f, c), B [8U] (Wb then Rb, summed in
        float64; None: zeros)."""
        w, r = _float32(w, "W"), _float32(r, "R")
        units4 = w.shape[0]
        bias = np.zeros(units4) if b is None else np.asarray(b, np.float64)
        if bias.shape != (2 * units4,):
            raise WeightsError(f"ONNX LSTM B: expected [{2 * units4}] (Wb then Rb), found {list(bias.shape)}")
        bias = bias[:units4] + bias[units4:]
        return cls(*(_onnx_order(a) for a in (w, r, bias)))


def _onnx_order(array: np.ndarray) -> np.ndarray:
    units = array.shape[0] // GATES
    return np.ascontiguousarray(np.concatenate([array[k * units:(k + 1) * units] for k in ONNX_ORDER]))


def check_cell_clip(value) -> float | None:
    """A cell_clip as the LSTM ops store it (a float32 in their options): None or 0 for none, else a finite
    positive value."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"cell_clip must be a number, got {_shown(value)}")
    try:
        with np.errstate(over="ignore"):  # past float32's range: inf, refused below
            clip = float(np.float32(float(value)))
    except (OverflowError, ValueError):
        clip = float("inf")
    if clip == 0 and value == 0:
        return None
    # a subnormal clip leaves c and h too small for the hybrid kernel's per-row quantization (127 / max|h| overflows)
    if not np.isfinite(clip) or clip < np.finfo(np.float32).tiny:
        raise ConfigError(f"cell_clip must be 0 (no clipping) or a finite number from {np.finfo(np.float32).tiny:.3g} "
                          f"to {np.finfo(np.float32).max:.3g} (a normal float32), got {_shown(value)}")
    return clip


def initial_weights(num_units: int, input_size: int, seed: int = 0) -> LSTMWeights:
    """Seeded weights drawn as Keras' LSTM draws them: kernel glorot-uniform [I, 4U], recurrent kernel orthogonal
    per gate [U, U] blocks, biases zeros but the forget gate's ones (unit_forget_bias=True)."""
    rng = np.random.default_rng(seed)
    units4 = GATES * num_units
    limit = np.float32(np.sqrt(6.0 / (input_size + units4)))
    kernel = rng.random((input_size, units4), dtype=np.float32)
    kernel *= 2 * limit
    kernel -= limit
    recurrent = np.concatenate([_orthogonal(rng, num_units) for _ in range(GATES)], axis=1)
    bias = np.zeros(units4, np.float32)
    bias[num_units:2 * num_units] = 1.0
    return LSTMWeights.from_keras(kernel, recurrent, bias)


class LSTMCell(StateSized):
    """An LSTM cell: num_units, activation (tanh), recurrent_activation (sigmoid), cell_clip (None: c is never
    clipped, as in Keras and PyTorch; a positive value clips c to [-cell_clip, cell_clip] each step, as TF1's
    LSTMCell(cell_clip=...) and TFLite's LSTM ops do). Its state is h and c, [B, 2U] side by side (h first). The
    cell holds no weights: pass them to `tflrnn.build` (`weights=LSTMWeights(...)`), or get seeded ones."""

    kind = "lstm"

    def __init__(self, num_units, activation="tanh", recurrent_activation="sigmoid", reuse=None, name=None,
                 dtype=None, cell_clip=None):
        self.num_units = check_positive_int(num_units, "num_units")
        self.cell_clip = check_cell_clip(cell_clip)
        check_activations("LSTM", activation, recurrent_activation)
        self.reuse = None if reuse is None else bool(reuse)
        self.name = check_name("lstm" if name is None else name)
        if dtype is not None and np.dtype(dtype) != np.float32:
            raise ConfigError(f"dtype {np.dtype(dtype).name} is not supported: the cell computes in float32")

    activation = "tanh"
    recurrent_activation = "sigmoid"
    fused_activation = Activation.TANH

    @property
    def state_size(self) -> int:
        return 2 * self.num_units

    def zero_state(self, batch_size, dtype=np.float32) -> np.ndarray:
        return np.zeros((check_positive_int(batch_size, "batch_size"), self.state_size), dtype=dtype)

    def renamed(self, name: str) -> LSTMCell:
        """The same cell under another name (a bidirectional layer's <name>/fw and <name>/bw)."""
        return LSTMCell(self.num_units, reuse=self.reuse, name=name, cell_clip=self.cell_clip)

    def initial_weights(self, input_size: int, seed: int = 0) -> LSTMWeights:
        return initial_weights(self.num_units, input_size, seed)

    def get_config(self) -> dict:
        return {"cell": "lstm", "name": self.name, "num_units": self.num_units, "activation": self.activation,
                "recurrent_activation": self.recurrent_activation, "reuse": self.reuse, "cell_clip": self.cell_clip}

    def __eq__(self, other) -> bool:
        return isinstance(other, LSTMCell) and self.get_config() == other.get_config()

    def __repr__(self) -> str:
        clip = f", cell_clip={self.cell_clip:g}" if self.cell_clip else ""
        return f"LSTMCell(num_units={self.num_units}{clip}, name={self.name!r})"


def describe(layer: dict) -> str:
    """An LSTM's settings as the summary and inspect say them: its cell_clip, if any."""
    return f" (cell_clip {layer['cell_clip']:g})" if layer.get("cell_clip") else ""


KIND = CellKind(
    name="lstm", title="LSTM", cell=LSTMCell, weights=LSTMWeights,
    roles=("input_weights", "recurrent_weights", "bias"), fused=True,
    keras=("LSTM", "LSTMCell"), torch="LSTM", onnx="LSTM", gates=GATES,
    reference="run_lstm", values="lstm_values", steps="tflrnn.lowering.lstm",
    int8_steps_check="tflrnn.verification.int8_lstm_steps",
    settings=("recurrent_activation", "cell_clip"), describe=describe,
    # Keras' LSTM writes unit_forget_bias; TF1's LSTMCell and TFLiteLSTMCell the others
    config_keys=("unit_forget_bias", "use_peepholes", "num_proj", "forget_bias", "state_is_tuple", "num_unit_shards",
                 "num_proj_shards"),
)
