"""The RNN cell: TfLiteRNNCell's configuration and weights, without TensorFlow.

`RNNCell` mirrors `tf.compat.v1.lite.experimental.nn.TfLiteRNNCell` (removed in TF 2.6); `CellWeights` holds its
three variables in their TFLite layout, `input_weights` [U, I], `recurrent_weights` [U, U] and `bias` [U].
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError, WeightsError
from .model import Activation

# Names accepted for each fused activation: Keras names first, then the TFLite enum names lower-cased.
ACTIVATIONS: dict[str, Activation] = {
    "tanh": Activation.TANH,
    "relu": Activation.RELU,
    "relu6": Activation.RELU6,
    "linear": Activation.NONE,
    "none": Activation.NONE,
    "relu_n1_to_1": Activation.RELU_N1_TO_1,
    "sign_bit": Activation.SIGN_BIT,
}
ACTIVATION_NAMES: dict[int, str] = {
    Activation.TANH: "tanh",
    Activation.RELU: "relu",
    Activation.RELU6: "relu6",
    Activation.NONE: "linear",
    Activation.RELU_N1_TO_1: "relu_n1_to_1",
    Activation.SIGN_BIT: "sign_bit",
}
SUPPORTED_ACTIVATIONS = "tanh, relu, relu6, linear (or none), relu_n1_to_1, sign_bit"

_NAME_PATTERN = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.\-/]*")  # TensorFlow's scope-name rule


MAX_LAYERS = 1024  # layers in a stack; each is an op with its own state (real stacks have a handful)


def parse_activation(value) -> Activation:
    """A Keras/TFLite activation name (or None for TfLiteRNNCell's default, tanh) -> the fused enum value."""
    if value is None:
        return Activation.TANH
    if isinstance(value, Activation):
        return value
    if isinstance(value, dict):  # Keras 3 may serialize a function as {"class_name": ..., "config": "tanh"}
        value = value.get("config") if isinstance(value.get("config"), str) else value.get("class_name")
    if isinstance(value, str) and value.strip().lower() in ACTIVATIONS:
        return ACTIVATIONS[value.strip().lower()]
    raise ConfigError(
        f"activation {value!r} cannot be fused into UNIDIRECTIONAL_SEQUENCE_RNN; supported: {SUPPORTED_ACTIVATIONS}"
    )


MAX_DIMENSION = 2**31 - 1  # TFLite shapes are int32


def check_positive_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{what} must be a positive integer, got {_shown(value)}")
    if value > MAX_DIMENSION:
        raise ConfigError(f"{what} must be at most {MAX_DIMENSION:,} (TFLite shapes are int32), got {_shown(value)}")
    return int(value)


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} characters)"


MAX_NAME_LENGTH = 256


def check_name(name) -> str:
    if isinstance(name, str) and len(name) > MAX_NAME_LENGTH:
        raise ConfigError(f"name is {len(name)} characters long; at most {MAX_NAME_LENGTH}")
    if not isinstance(name, str) or not _NAME_PATTERN.fullmatch(name):
        raise ConfigError(
            f"name {name!r} is not a valid cell name: use letters, digits and _ . - / (not starting with - or /)"
        )
    return name


class StateSized:
    """What every cell kind says of its sizes: one state of num_units per example (cells/)."""

    num_units: int

    @property
    def output_size(self) -> int:
        return self.num_units

    @property
    def state_size(self) -> int:
        return self.num_units

    def zero_state(self, batch_size, dtype=np.float32) -> np.ndarray:
        return np.zeros((check_positive_int(batch_size, "batch_size"), self.num_units), dtype=dtype)


class RNNCell(StateSized):
    """A basic RNN cell, `h_t = activation(x_t W^T + h_{t-1} R^T + b)`, as TfLiteRNNCell defined it.

    The constructor takes TfLiteRNNCell's arguments. The cell holds no weights: pass them to `tflrnn.build`.
    """

    kind = "rnn"  # cells/: the kinds of cell

    def __init__(self, num_units, activation=None, reuse=None, name=None, dtype=None, **kwargs):
        self.num_units = check_positive_int(num_units, "num_units")
        self._activation = parse_activation(activation)
        self.reuse = None if reuse is None else bool(reuse)
        self.name = check_name("rnn" if name is None else name)
        if dtype is not None and np.dtype(dtype) != np.float32:
            raise ConfigError(f"dtype {np.dtype(dtype).name} is not supported: the cell computes in float32")
        unknown = set(kwargs) - {"trainable"}  # what Keras' base Layer would also accept from a saved config
        if unknown:
            raise ConfigError(f"RNNCell got unexpected argument(s): {', '.join(sorted(unknown))}")
        self.trainable = kwargs.get("trainable", True)

    @property
    def activation(self) -> str:
        return ACTIVATION_NAMES[self._activation]

    @property
    def fused_activation(self) -> Activation:
        return self._activation

    @property
    def dtype(self) -> str:
        return "float32"

    def get_initial_state(self, inputs=None, batch_size=None, dtype=None) -> np.ndarray:
        if inputs is not None:
            inputs = np.asarray(inputs)
            batch_size = inputs.shape[0]
            dtype = dtype or inputs.dtype
        return self.zero_state(batch_size, dtype or np.float32)

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": self.dtype,
            "num_units": self.num_units,
            "activation": self.activation,
            "reuse": self.reuse,
        }

    def renamed(self, name: str) -> RNNCell:
        """The same cell under another name (a bidirectional layer's <name>/fw and <name>/bw)."""
        return RNNCell(self.num_units, activation=self.activation, reuse=self.reuse, name=name)

    def initial_weights(self, input_size: int, seed: int = 0) -> CellWeights:
        return initial_weights(self.num_units, input_size, seed)

    @classmethod
    def from_config(cls, config: dict) -> RNNCell:
        return cls(**config)

    def __eq__(self, other) -> bool:
        return isinstance(other, RNNCell) and self.get_config() == other.get_config()

    def __repr__(self) -> str:
        return f"RNNCell(num_units={self.num_units}, activation={self.activation!r}, name={self.name!r})"


@dataclass(frozen=True, eq=False)
class CellWeights:
    """The cell's variables in TFLite layout, as float32 arrays (any strides; `from_keras` makes them contiguous)."""

    kind = "rnn"

    input_weights: np.ndarray  # [U, I]
    recurrent_weights: np.ndarray  # [U, U]
    bias: np.ndarray  # [U]

    def __post_init__(self):
        arrays = {}
        for field in ("input_weights", "recurrent_weights", "bias"):
            arrays[field] = _float32(getattr(self, field), field)
            object.__setattr__(self, field, arrays[field])
        w, r, b = arrays["input_weights"], arrays["recurrent_weights"], arrays["bias"]
        if b.ndim != 1:
            raise WeightsError(f"bias: expected a vector [units], found shape {list(b.shape)}")
        units = b.shape[0]
        if w.ndim != 2 or w.shape[0] != units:
            raise WeightsError(f"input_weights: expected shape [{units}, input_size], found {list(w.shape)}")
        if r.shape != (units, units):
            raise WeightsError(f"recurrent_weights: expected shape [{units}, {units}], found {list(r.shape)}")
        if units == 0 or w.shape[1] == 0:
            raise WeightsError(f"input_weights: empty shape {list(w.shape)}")

    @property
    def num_units(self) -> int:
        return self.bias.shape[0]

    @property
    def input_size(self) -> int:
        return self.input_weights.shape[1]

    @property
    def state_width(self) -> int:
        """Values of state per example (an LSTM keeps two vectors: cells/lstm.py)."""
        return self.num_units

    @property
    def nbytes(self) -> int:
        return self.input_weights.nbytes + self.recurrent_weights.nbytes + self.bias.nbytes

    def settings(self) -> dict:
        """What, besides the kind and sizes, sets how this cell computes (inspect and the summary show it): none."""
        return {}

    def sha256(self) -> str:
        """Digest of W, R and b as stored in the model (float32 little-endian, row-major, in that order)."""
        digest = hashlib.sha256()
        for array in (self.input_weights, self.recurrent_weights, self.bias):
            for block in row_blocks(array):
                digest.update(memoryview(np.ascontiguousarray(block, dtype="<f4")).cast("B"))
        return digest.hexdigest()

    @classmethod
    def from_keras(cls, kernel, recurrent_kernel, bias) -> CellWeights:
        """Keras SimpleRNN weights: kernel [I, U] and recurrent_kernel [U, U] act on the right, so transpose."""
        kernel, recurrent_kernel = _float32(kernel, "kernel"), _float32(recurrent_kernel, "recurrent_kernel")
        if kernel.ndim != 2:
            raise WeightsError(f"kernel: expected shape [input_size, units], found {list(kernel.shape)}")
        if recurrent_kernel.ndim != 2:
            raise WeightsError(f"recurrent_kernel: expected shape [units, units], found {list(recurrent_kernel.shape)}")
        # Contiguous copies: writing a transposed view into the file is a strided copy, about half as fast.
        return cls(np.ascontiguousarray(kernel.T), np.ascontiguousarray(recurrent_kernel.T), bias)

    def to_keras(self) -> dict[str, np.ndarray]:
        return {
            "kernel": np.ascontiguousarray(self.input_weights.T),
            "recurrent_kernel": np.ascontiguousarray(self.recurrent_weights.T),
            "bias": self.bias,
        }

    def to_tflite(self) -> dict[str, np.ndarray]:
        return {
            "input_weights": self.input_weights,
            "recurrent_weights": self.recurrent_weights,
            "bias": self.bias,
        }

    def roles(self) -> dict[str, np.ndarray]:
        return self.to_tflite()

    def equals(self, other: CellWeights) -> bool:
        return getattr(other, "kind", "rnn") == "rnn" and all(
            np.array_equal(a, b) for a, b in zip(self.arrays(), other.arrays()))

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.input_weights, self.recurrent_weights, self.bias


def quantize_int8(array: np.ndarray) -> tuple[np.ndarray, float]:
    """Symmetric per-tensor int8, as TFLite's hybrid kernels take weights: q = round(w / s), s = max|w| / 127."""
    largest = float(np.max(np.abs(array), initial=0.0))
    scale = largest / 127.0 if largest > 0 else 1.0
    return np.clip(np.rint(array / np.float32(scale)), -127, 127).astype(np.int8), scale


def dequantize(q: np.ndarray, scale: float) -> np.ndarray:
    """What the kernel computes with: q * scale, in float32 (the same arithmetic when building and reading)."""
    return q.astype(np.float32) * np.float32(scale)


def row_blocks(array: np.ndarray, block_bytes: int = 1 << 22):
    """The array in blocks of whole rows of about `block_bytes`: bounded temporaries for strided arrays."""
    if array.ndim < 2 or array.shape[0] == 0:
        yield array
        return
    rows = max(1, block_bytes // max(1, array[0].nbytes))
    for start in range(0, array.shape[0], rows):
        yield array[start : start + rows]


def _float32(value, name: str) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "fiu":
        raise WeightsError(f"{name}: expected real numbers, found dtype {array.dtype}")
    if array.dtype != np.float32:
        with np.errstate(over="ignore"):
            array = array.astype(np.float32)
    # Finite exactly when the float64 sum is (float32 values cannot overflow it); no temporary of the array's size.
    if not np.isfinite(array.sum(dtype=np.float64)):
        bad = np.argwhere(~np.isfinite(array))[0]
        raise WeightsError(
            f"{name}: non-finite value {array[tuple(bad)]} at index {list(map(int, bad))} (NaN, Inf or beyond float32)"
        )
    return array


QR_UNITS = 2048  # above this, QR of an n x n matrix takes seconds to minutes and gigabytes (16383 units: 10 GB)


def initial_weights(num_units: int, input_size: int, seed: int = 0) -> CellWeights:
    """Seeded initial weights drawn as Keras SimpleRNN draws them: W glorot-uniform, R orthogonal, b zeros.
    Drawn in float32, as Keras does, so a 2 GiB model does not pass through float64 copies twice its size."""
    rng = np.random.default_rng(seed)
    limit = np.float32(np.sqrt(6.0 / (input_size + num_units)))
    kernel = rng.random((input_size, num_units), dtype=np.float32)
    kernel *= 2 * limit
    kernel -= limit
    recurrent_kernel = _orthogonal(rng, num_units)
    return CellWeights.from_keras(kernel, recurrent_kernel, np.zeros(num_units, dtype=np.float32))


def _orthogonal(rng: np.random.Generator, n: int) -> np.ndarray:
    if n <= QR_UNITS:
        # Keras' Orthogonal: QR of a normal matrix, with signs fixed so the result is uniformly distributed.
        q, r = np.linalg.qr(rng.standard_normal((n, n)))
        return (q * np.sign(np.diag(r))).astype(np.float32)
    # A random signed permutation: orthogonal too, in O(n^2) time and one float32 copy.
    matrix = np.zeros((n, n), dtype=np.float32)
    matrix[np.arange(n), rng.permutation(n)] = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=n)
    return matrix
