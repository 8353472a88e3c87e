"""What gated cells' weights (GRU, LSTM) share: roles whose rows come in `GATES` blocks of `units` rows, each block one
gate, in TFLite's layout (rows are output units): input_weights [G*U, I], recurrent_weights [G*U, U], bias [G*U].
A kind's module subclasses GatedWeights with its gate count, gate letters and digest tag, and adds its own roles
and the frameworks' gate orders."""

from __future__ import annotations

import hashlib

import numpy as np

from ..cell import _float32, row_blocks
from ..errors import ConfigError, WeightsError


class GatedWeights:
    kind: str
    GATES: int  # blocks of rows per role
    GATE_LETTERS: str  # the gates in tflrnn's order, as messages name them: "z, r, n"

    def __init__(self, input_weights, recurrent_weights, bias):
        self.input_weights = _float32(input_weights, "input_weights")
        self.recurrent_weights = _float32(recurrent_weights, "recurrent_weights")
        self.bias = _float32(bias, "bias")
        b, w, r, gates = self.bias, self.input_weights, self.recurrent_weights, self.GATES
        if b.ndim != 1 or b.shape[0] % gates or b.shape[0] == 0:
            raise WeightsError(f"bias: expected a vector [{gates} * units] (gates {self.GATE_LETTERS}), found shape "
                               f"{list(b.shape)}")
        units = b.shape[0] // gates
        if w.ndim != 2 or w.shape[0] != gates * units or w.shape[1] == 0:
            raise WeightsError(f"input_weights: expected shape [{gates * units}, input_size], found {list(w.shape)}")
        if r.shape != (gates * units, units):
            raise WeightsError(f"recurrent_weights: expected shape [{gates * units}, {units}], found {list(r.shape)}")

    @property
    def num_units(self) -> int:
        return self.bias.shape[0] // self.GATES

    @property
    def input_size(self) -> int:
        return self.input_weights.shape[1]

    @property
    def state_width(self) -> int:
        """Values of state per example."""
        return self.num_units

    def roles(self) -> dict[str, np.ndarray]:
        """The weights by role name, as `tflrnn weights` exports them."""
        return {"input_weights": self.input_weights, "recurrent_weights": self.recurrent_weights, "bias": self.bias}

    def to_tflite(self) -> dict[str, np.ndarray]:
        return self.roles()

    def arrays(self) -> tuple[np.ndarray, ...]:
        return tuple(self.roles().values())

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays())

    def settings(self) -> dict:
        """What, besides the kind and sizes, sets how this cell computes (inspect and the summary show it)."""
        return {}

    def digest_tag(self) -> bytes:
        """What the digest starts with: the kind, so that two kinds' digests never agree."""
        return self.kind.encode()

    def sha256(self) -> str:
        """Digest of the roles as stored (float32 little-endian, row-major, in role order), after digest_tag()."""
        digest = hashlib.sha256(self.digest_tag())
        for array in self.arrays():
            for block in row_blocks(array):
                digest.update(memoryview(np.ascontiguousarray(block, dtype="<f4")).cast("B"))
        return digest.hexdigest()

    def equals(self, other) -> bool:
        return type(other) is type(self) and self.settings() == other.settings() and all(
            np.array_equal(a, b) for a, b in zip(self.arrays(), other.arrays()))

    def gates(self, array: np.ndarray) -> tuple[np.ndarray, ...]:
        """A role's rows of each gate, in tflrnn's order."""
        units = self.num_units
        return tuple(np.ascontiguousarray(array[k * units:(k + 1) * units]) for k in range(self.GATES))

    def to_keras(self) -> dict[str, np.ndarray]:
        return {"kernel": np.ascontiguousarray(self.input_weights.T),
                "recurrent_kernel": np.ascontiguousarray(self.recurrent_weights.T), "bias": self.bias}


def keras_kernels(kernel, recurrent_kernel, title: str, gates: int) -> tuple[np.ndarray, np.ndarray]:
    """A Keras layer's kernel [I, G*U] and recurrent_kernel [U, G*U] (acting on the right) as TFLite's [G*U, I] and
    [G*U, U]."""
    kernel, recurrent = _float32(kernel, "kernel"), _float32(recurrent_kernel, "recurrent_kernel")
    if kernel.ndim != 2 or recurrent.ndim != 2:
        raise WeightsError(f"{title} kernel {list(kernel.shape)} and recurrent_kernel {list(recurrent.shape)}: "
                           f"expected [input_size, {gates} * units] and [units, {gates} * units]")
    return np.ascontiguousarray(kernel.T), np.ascontiguousarray(recurrent.T)


def check_activations(title: str, activation, recurrent_activation) -> None:  # title: "GRU", "LSTM"
    """A gated cell computes tanh for its candidate and sigmoid for its gates, as Keras' and PyTorch's do: another
    activation is refused (named as Keras writes it: any case, or serialized as {"class_name": ..., "config": ...})."""
    for what, value, only, op in (("activation", activation, "tanh", "TANH"),
                                  ("recurrent_activation", recurrent_activation, "sigmoid", "LOGISTIC")):
        name = value
        if isinstance(name, dict):  # Keras 3 may serialize a function as {"class_name": ..., "config": "tanh"}
            name = name.get("config") if isinstance(name.get("config"), str) else name.get("class_name")
        if name is not None and not (isinstance(name, str) and name.strip().lower() == only):
            article = "an" if title[0] in "AEFHILMNORSX" else "a"  # as the letter is said: an LSTM
            raise ConfigError(f"{article} {title}'s {what} {value!r} is not written: tflrnn's {title} uses {only} "
                              f"(TFLite's {op}; Keras' and PyTorch's default)")
