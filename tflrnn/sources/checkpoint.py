"""TensorFlow checkpoints, read with tf.train.load_checkpoint (TensorFlow is imported here and only here).

Two namings: a TF1 graph with TfLiteRNNCell writes `<scope>/input_weights`, `<scope>/recurrent_weights`,
`<scope>/bias`; Keras SimpleRNNCell writes `kernel`, `recurrent_kernel`, `bias` (in object-based checkpoints as
`<path>/kernel/.ATTRIBUTES/VARIABLE_VALUE`). Optimizer slots are skipped.

GRUs: Keras' GRUCell writes the same names (told apart by shape, see npz.py); TF1's GRUCell
(`tf.compat.v1.nn.rnn_cell.GRUCell`) writes `<scope>/gates/kernel` [I+U, 2U] (columns r, u), `<scope>/gates/bias`
[2U], `<scope>/candidate/kernel` [I+U, U] and `<scope>/candidate/bias` [U], and computes

    r, u = split(sigmoid([x, h] gates/kernel + gates/bias))
    c = tanh([x, r * h] candidate/kernel + candidate/bias)          h' = u * h + (1 - u) * c

which is tflrnn's reset-before GRU with z = u: its variables become the GRU roles under `<scope>/`.

LSTMs: Keras' LSTMCell writes kernel [I,4U], recurrent_kernel [U,4U], bias [4U] (read as an .npz's). TF1's
LSTMCell and BasicLSTMCell (`tf.compat.v1.nn.rnn_cell`) write `<scope>/kernel` [I+U, 4U] (rows x's then h's,
columns i, j, f, o) and `<scope>/bias` [4U], and compute

    i, j, f, o = split([x, h] kernel + bias)
    c' = sigmoid(f + forget_bias) * c + sigmoid(i) * tanh(j)          h' = sigmoid(o) * tanh(c')

which is tflrnn's LSTM with g = j, once forget_bias is added to f's bias. The checkpoint does not store forget_bias:
its default, 1.0, is folded in (and said in what build prints). Peepholes (`w_f_diag`, ...) and a projection
(`<scope>/projection/kernel`, num_proj) are refused; cell_clip and the activation are not stored either (read as none
and tanh, the defaults). A scope holding only kernel and bias is taken for such a cell when it is shaped so and either
no other cell is in the checkpoint or its name says lstm (a Dense layer beside a cell stays a Dense layer).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..cells import lstm
from ..cells.gru import GRUWeights
from ..cells.lstm import LSTMWeights
from ..errors import WeightsError
from . import ImportedCell, require
from .npz import GRU_RECURRENT_BIAS, KERAS_NAMES, RECURRENT_KEYS, TFLITE_NAMES, weights_from_arrays

_PEEPHOLES = ("w_f_diag", "w_i_diag", "w_o_diag")  # TF1 LSTMCell(use_peepholes=True)'s
# TF1 GRUCell's and LSTMCell's leaves are kernel and bias too
_LEAVES = set(TFLITE_NAMES) | set(KERAS_NAMES) | {GRU_RECURRENT_BIAS} | set(_PEEPHOLES)
_TF1_GRU = ("gates/kernel", "gates/bias", "candidate/kernel", "candidate/bias")
TF1_FORGET_BIAS = 1.0  # TF1 LSTMCell's and BasicLSTMCell's default forget_bias, added to f at run time
_OBJECT_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"


def _checkpoint_arrays(path: Path) -> tuple[dict, str, set]:
    """The checkpoint's cell variables by name (each TF1 GRUCell's and LSTMCell's as tflrnn's roles), its prefix, and
    the scopes of the TF1 LSTM cells whose forget_bias was folded in."""
    tf = require("tensorflow", "tensorflow", "TF checkpoints are read with tf.train.load_checkpoint")
    prefix = str(path)
    if path.is_dir():
        prefix = tf.train.latest_checkpoint(str(path))
        if prefix is None:
            raise WeightsError(f"no checkpoint in {path} (no 'checkpoint' file naming one)")
    elif prefix.endswith(".index"):
        prefix = prefix[: -len(".index")]
    try:
        reader = tf.train.load_checkpoint(prefix)
        names = reader.get_variable_to_shape_map()
        arrays, graph_names = {}, set()  # graph_names: a TF1 graph's variables (not an object-based checkpoint's)
        for name in names:
            clean = name.removesuffix(_OBJECT_SUFFIX)
            if ".OPTIMIZER_SLOT" in clean or clean.rpartition("/")[2] not in _LEAVES:
                continue
            arrays[clean] = reader.get_tensor(name)
            if clean == name:
                graph_names.add(clean)
    except (ValueError, OSError, tf.errors.OpError) as exc:
        raise WeightsError(f"cannot read checkpoint {prefix}: {' '.join(str(exc).split())[:300]}") from None
    arrays = _tf1_gru_roles(arrays, prefix)
    folded = _tf1_lstm_roles(arrays, graph_names, prefix)
    return arrays, prefix, folded


def _tf1_gru_roles(arrays: dict, prefix: str) -> dict:
    """Each TF1 GRUCell's four variables replaced by the GRU roles under its scope, so every cell reads one way."""
    for key in [k for k in arrays if k.endswith("/" + _TF1_GRU[0])]:
        scope = key[: -len(_TF1_GRU[0]) - 1]
        names = [f"{scope}/{leaf}" for leaf in _TF1_GRU]
        if not all(name in arrays for name in names):
            continue  # not a GRUCell's: read (or refused) as the names say
        try:
            weights = _tf1_gru(*(arrays.pop(name) for name in names))
        except WeightsError as exc:
            raise WeightsError(f"checkpoint {prefix}: GRUCell '{scope}': {exc}") from None
        arrays.update({f"{scope}/{role}": array for role, array in weights.roles().items()})
    return arrays


def _tf1_gru(gates_kernel, gates_bias, candidate_kernel, candidate_bias) -> GRUWeights:
    """TF1 GRUCell's variables as tflrnn's GRU: columns r, u of the gates become rows z (= u), r; the rows of each
    kernel are x's then h's (concat([x, h]))."""
    gates_kernel, candidate_kernel = np.asarray(gates_kernel), np.asarray(candidate_kernel)
    if candidate_kernel.ndim != 2 or gates_kernel.shape != (candidate_kernel.shape[0], 2 * candidate_kernel.shape[1]):
        raise WeightsError(f"gates/kernel {list(gates_kernel.shape)} and candidate/kernel "
                           f"{list(candidate_kernel.shape)}: expected [I+U, 2U] and [I+U, U]")
    units = candidate_kernel.shape[1]
    inputs = candidate_kernel.shape[0] - units
    if inputs < 1:
        raise WeightsError(f"candidate/kernel {list(candidate_kernel.shape)} has no rows for the input")
    reset, update = gates_kernel[:, :units], gates_kernel[:, units:]
    kernel = np.concatenate([update, reset, candidate_kernel], axis=1)  # [I+U, 3U], columns z, r, n
    gates_bias = np.asarray(gates_bias)
    if gates_bias.shape != (2 * units,) or np.shape(candidate_bias) != (units,):
        raise WeightsError(f"gates/bias {list(gates_bias.shape)} and candidate/bias {list(np.shape(candidate_bias))}: "
                           f"expected [{2 * units}] and [{units}]")
    bias = np.concatenate([gates_bias[units:], gates_bias[:units], candidate_bias])
    return GRUWeights(np.ascontiguousarray(kernel[:inputs].T), np.ascontiguousarray(kernel[inputs:].T), bias)


def _tf1_lstm_roles(arrays: dict, graph_names: set, prefix: str) -> set:
    """Each TF1 LSTMCell's (or BasicLSTMCell's) kernel and bias replaced, in place, by the LSTM roles under its
    scope, with forget_bias 1.0 folded into f's bias; returns those scopes. Peepholes and a projection are refused."""
    def shaped(scope: str) -> bool:
        kernel, bias = np.shape(arrays[f"{scope}/kernel"]), np.shape(arrays.get(f"{scope}/bias"))
        return len(kernel) == 2 and kernel[1] > 0 and kernel[1] % lstm.GATES == 0 and bias == (kernel[1],) and \
            kernel[0] > kernel[1] // lstm.GATES

    scopes = [key[: -len("/kernel")] for key in graph_names if key.endswith("/kernel") and key in arrays]
    scopes = [scope for scope in scopes if f"{scope}/bias" in arrays and f"{scope}/recurrent_kernel" not in arrays
              and (shaped(scope) or f"{scope}/projection/kernel" in arrays
                   or any(f"{scope}/{leaf}" in arrays for leaf in _PEEPHOLES))]
    others = any(key.rpartition("/")[2] in RECURRENT_KEYS for key in arrays)  # TfLiteRNNCell, Keras or GRU cells
    scopes = [scope for scope in scopes if not others or "lstm" in scope.rpartition("/")[2].lower()]
    for scope in scopes:
        where = f"checkpoint {prefix}: LSTMCell '{scope}'"
        peepholes = [leaf for leaf in _PEEPHOLES if f"{scope}/{leaf}" in arrays]
        if peepholes:
            raise WeightsError(f"{where} has peepholes ({', '.join(peepholes)}; use_peepholes=True); tflrnn's LSTM "
                               "has none")
        if f"{scope}/projection/kernel" in arrays:
            raise WeightsError(f"{where} projects its output (projection/kernel, num_proj): projection is not "
                               "supported")
        try:
            weights = _tf1_lstm(arrays.pop(f"{scope}/kernel"), arrays.pop(f"{scope}/bias"))
        except WeightsError as exc:
            raise WeightsError(f"{where}: {exc}") from None
        arrays.update({f"{scope}/{role}": array for role, array in weights.roles().items()})
    return set(scopes)


def _tf1_lstm(kernel, bias, forget_bias: float = TF1_FORGET_BIAS) -> LSTMWeights:
    """TF1 LSTMCell's kernel [I+U, 4U] (columns i, j, f, o; rows x's then h's) and bias [4U] as tflrnn's LSTM: gates
    i, f, g (= j), o, and forget_bias added to f's bias (in float64, rounded once)."""
    kernel, bias = np.asarray(kernel), np.asarray(bias, np.float64)
    units = kernel.shape[1] // lstm.GATES
    inputs = kernel.shape[0] - units
    order = (0, 2, 1, 3)  # tflrnn's i, f, g, o from TF1's i, j, f, o

    def gates(array, axis):
        blocks = np.split(array, lstm.GATES, axis=axis)
        return np.concatenate([blocks[k] for k in order], axis=axis)

    kernel, bias = gates(kernel, 1), gates(bias, 0)
    bias[units:2 * units] += forget_bias
    return LSTMWeights(np.ascontiguousarray(kernel[:inputs].T), np.ascontiguousarray(kernel[inputs:].T), bias)


def read_checkpoint(path: Path, scope: str | None = None) -> ImportedCell:
    arrays, prefix, folded = _checkpoint_arrays(path)
    return _cell(arrays, scope, prefix, folded)


def read_checkpoint_cells(path: Path) -> list[ImportedCell]:
    """Every cell of a checkpoint: one, or a stack (MultiRNNCell's cell_0, cell_1, ..., Keras' stacked layers)
    when there are several whose scopes differ only in their indices and whose sizes chain, first layer first.
    Other sets of cells (an encoder and a decoder, say) need --scope."""
    arrays, prefix, folded = _checkpoint_arrays(path)
    scopes = sorted({key.rpartition("/")[0] for key in arrays if key.rpartition("/")[2] in RECURRENT_KEYS}, key=_natural)
    if len(scopes) <= 1 or len({re.sub(r"\d+", "#", scope) for scope in scopes}) > 1:
        return [_cell(arrays, None, prefix, folded)]  # one cell, or the error that asks for --scope
    cells = [_cell(arrays, scope, prefix, folded) for scope in scopes]
    for before, after in zip(cells, cells[1:]):
        if after.weights.input_size != before.weights.num_units:
            listed = ", ".join(repr(s) for s in scopes)
            raise WeightsError(f"checkpoint {prefix} holds several cells ({listed}) whose sizes do not chain as a "
                               "stack; pick one with --scope")
    return cells


def _natural(text: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _cell(arrays: dict, scope: str | None, prefix: str, folded: set = frozenset()) -> ImportedCell:
    try:
        weights, scope = weights_from_arrays(arrays, scope)
    except WeightsError as exc:
        raise WeightsError(f"checkpoint {prefix}: {exc}") from None
    if weights.kind == "lstm":  # tflrnn's LSTM computes tanh and sigmoid only
        details = "a checkpoint does not record the LSTM's activation: read as tanh (the default)"
        if scope in folded:
            details = (f"TF1 LSTMCell: its forget_bias, which a checkpoint does not store, is taken as "
                       f"{TF1_FORGET_BIAS} (the default) and added to the forget gate's bias; " + details +
                       " and without cell_clip (give --cell-clip if the cell had one)")
        return ImportedCell(weights, "checkpoint", scope or None, activation="tanh", details=details,
                            forget_bias=TF1_FORGET_BIAS if scope in folded else None)
    if weights.kind == "gru":  # a checkpoint does not record the activation either; tflrnn's GRU computes tanh
        return ImportedCell(weights, "checkpoint", scope or None, activation="tanh",
                            details="a checkpoint does not record the GRU's activation: read as tanh (the default)")
    return ImportedCell(weights, "checkpoint", scope or None, activation=None,
                        hint="a checkpoint does not record it; give --activation if it is not tanh")
