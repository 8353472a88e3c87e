"""`.npz` weights, and the naming rules shared with TF checkpoints.

Keys are TfLiteRNNCell's variable names (`input_weights` [U,I], `recurrent_weights` [U,U], `bias` [U]) or Keras
SimpleRNN's (`kernel` [I,U], `recurrent_kernel` [U,U], `bias` [U], transposed on the way in), optionally under a
`<name>/` prefix, as a TF variable scope writes them.

A GRU has the same names, told apart by shape: `input_weights` [3U,I], `recurrent_weights` [3U,U], `bias` [3U] and,
reset after, `recurrent_bias` [3U] (as `tflrnn weights` exports it), or Keras GRU's `kernel` [I,3U],
`recurrent_kernel` [U,3U], `bias` [2,3U] (reset after) or [3U] (reset before).

An LSTM too: `input_weights` [4U,I], `recurrent_weights` [4U,U], `bias` [4U] (gates i, f, g, o, as `tflrnn weights`
exports it), or Keras LSTM's `kernel` [I,4U], `recurrent_kernel` [U,4U], `bias` [4U]. The recurrent matrix's rows
(columns, in Keras' layout) say the kind: U (the basic cell), 3U (a GRU) or 4U (an LSTM).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..arrays import ArrayFileError, open_npz
from ..cell import CellWeights
from ..cells import gru, kind_of, lstm
from ..cells.gru import GRUWeights
from ..cells.lstm import LSTMWeights
from ..errors import WeightsError
from ..model import MAX_FLATBUFFER_BYTES
from . import ImportedCell

def _role_names():
    from ..cells import kinds

    every = kinds()
    basic = every["rnn"].roles
    return basic, tuple(dict.fromkeys(r for kind in every.values() for r in kind.roles if r not in basic))


# The roles every kind has (TfLiteRNNCell's names), and the others' (a reset-after GRU's recurrent_bias)
TFLITE_NAMES, OTHER_ROLES = _role_names()
KERAS_NAMES = ("kernel", "recurrent_kernel", "bias")
GRU_RECURRENT_BIAS = OTHER_ROLES[0]  # a reset-after GRU's, beside the TfLiteRNNCell names
RECURRENT_KEYS = {"recurrent_weights", "recurrent_kernel"}  # keys that mark a cell
_INPUT = {"input_weights", "kernel"}
MAX_WEIGHT_VALUES = MAX_FLATBUFFER_BYTES // 4  # float32 in the model: a larger array cannot be one of its tensors
# `tflrnn weights` records how the layers connect under this key (UTF-8 JSON as a uint8 array): build reads it to
# make the whole model again. Its name has no '/', so no cell is read from it; an .npz without it reads as before.
NETWORK_KEY = "tflrnn.network"


def read_npz(path: Path, name: str | None = None) -> ImportedCell:
    try:
        # Each array read when asked for, its header and declared size checked first (tflrnn/arrays.py): only
        # the cell's arrays are read, and one larger than a model can hold is refused before it is inflated.
        with open_npz(path, max_values=MAX_WEIGHT_VALUES) as archive:
            weights, prefix = weights_from_arrays(archive, name)
    except ArrayFileError as exc:
        raise WeightsError(f"cannot read weights {path}: {exc}") from None
    except WeightsError as exc:
        raise WeightsError(f"{path}: {exc}") from None
    # a GRU and an LSTM compute tanh (and sigmoid gates) only; the basic cell's activation is not recorded
    return ImportedCell(weights, "npz", prefix or None, activation=None if weights.kind == "rnn" else "tanh")


def read_npz_network(path: Path, name: str | None = None):
    """The whole network an .npz from `tflrnn weights` records: (cells, kind, implied build options), as a Keras
    model gives them; None for an .npz without the record (its cells are read one at a time), or when `name`
    picks one of several cells."""
    try:
        with open_npz(path, max_values=MAX_WEIGHT_VALUES) as archive:
            if NETWORK_KEY not in archive:
                return None
            record = _record(archive[NETWORK_KEY])
            prefixes = {key.rpartition("/")[0] for key in archive if key.rpartition("/")[2] in RECURRENT_KEYS}
            if name is not None and name in prefixes and len(prefixes) > 1:
                return None
            return _network(archive, record)
    except ArrayFileError as exc:
        raise WeightsError(f"cannot read weights {path}: {exc}") from None
    except WeightsError as exc:
        raise WeightsError(f"{path}: {exc}") from None


def _record(array: np.ndarray) -> dict:
    """The network record, checked for the shape `weights.network_record` gives it (its values are checked by the
    build, as any option is)."""
    import json

    try:
        record = json.loads(array.astype(np.uint8).tobytes().decode("utf-8")) if array.dtype == np.uint8 and \
            array.ndim == 1 else None
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        record = None
    kinds = {"layers": list, "dense": list, "time_steps": (int, str), "batch_size": int, "time_major": bool,
             "last_step": bool, "lowering": str}
    valid = isinstance(record, dict) and record.get("tflrnn_network") == 1 and all(
        isinstance(record.get(key), kind) for key, kind in kinds.items()) and len(record["layers"]) > 0 and all(
        isinstance(entry, dict) and isinstance(entry.get("name"), str) and isinstance(entry.get("activation"), str)
        for entry in record["layers"] + record["dense"]) and all(
        isinstance(entry.get("bidirectional"), bool) and isinstance(entry.get("cell_clip", 0.0), (int, float)) and
        not isinstance(entry.get("cell_clip"), bool) for entry in record["layers"])
    if not valid:
        raise WeightsError(f"'{NETWORK_KEY}' is not the network record `tflrnn weights` writes")
    return record


def _network(arrays: Mapping, record: dict):
    """The cells, kind and build options a network record gives, with the weights it names."""
    from ..network import Dense
    from . import DeclaredInput

    directions = [(f"{entry['name']}/{d}" if entry["bidirectional"] else entry["name"], entry["activation"],
                   entry.get("cell_clip"))
                  for entry in record["layers"] for d in (("fw", "bw") if entry["bidirectional"] else ("",))]
    # Each layer's weights under its name; one cell alone has plain names
    prefix = "" if len(directions) == 1 and not record["dense"] else None
    held = {key.rpartition("/")[0] for key in arrays if key.rpartition("/")[2] in RECURRENT_KEYS}
    cells = []
    for layer, activation, cell_clip in directions:
        if (layer if prefix is None else prefix) not in held:
            raise WeightsError(f"the network record names layer '{layer}', whose weights are not there")
        weights, _ = weights_from_arrays({key: arrays[key] for key in arrays
                                          if key.rpartition("/")[0] == (layer if prefix is None else prefix)})
        if cell_clip and "cell_clip" not in kind_of(weights).settings:
            raise WeightsError(f"the network record gives layer '{layer}' a cell_clip, which "
                               f"{kind_of(weights).a_title} has not")
        # the kind is in the weights' shapes
        cells.append(ImportedCell(weights, "npz", layer, activation=activation, cell_clip=cell_clip))
    head = []
    for entry in record["dense"]:
        kernel, bias = (f"{entry['name']}/{leaf}" for leaf in ("kernel", "bias"))
        if kernel not in arrays or bias not in arrays:
            raise WeightsError(f"the network record names Dense '{entry['name']}', without {kernel} and {bias}")
        w, b = np.asarray(arrays[kernel], np.float32), np.asarray(arrays[bias], np.float32)
        if w.ndim != 2 or not (np.isfinite(w).all() and np.isfinite(b).all()):
            raise WeightsError(f"Dense '{entry['name']}': kernel {list(w.shape)} and bias {list(b.shape)}, or "
                               "non-finite values")
        head.append(Dense(entry["name"], np.ascontiguousarray(w.T) if record.get("names") == "keras" else w, b,
                          entry["activation"]))
    cells[0].declared = DeclaredInput("the .npz", record["time_steps"], record["batch_size"], record["time_major"])
    options = {key: record[key] for key in ("last_step", "lowering", "state", "recurrence", "steps_per_iteration",
                                            "merge", "quantize", "asymmetric_inputs", "io", "input_precision")
               if key in record}
    options["layer_names"] = [entry["name"] for entry in record["layers"]]
    flags = [entry["bidirectional"] for entry in record["layers"]]
    if len(flags) == 1 and not head:
        return cells, "bidirectional" if flags[0] else "cell", options
    if not any(flags) and not head:
        return cells, "stack", options
    return cells, "network", {**options, "bidirectional": flags, "head": head}


def weights_from_arrays(arrays: Mapping[str, np.ndarray], name: str | None = None) -> tuple[CellWeights, str]:
    """The one cell among named arrays, and its prefix; `name` picks the prefix when there are several.

    Only the cell's own arrays are read from `arrays` (an NpzArchive reads each on access), so nothing else in the
    file takes memory.
    """
    cells: dict[str, dict[str, str]] = {}  # prefix -> leaf -> key
    for key in arrays.keys():
        prefix, _, leaf = key.rpartition("/")
        cells.setdefault(prefix, {})[leaf] = key
    # A recurrent matrix marks a cell (a Dense layer also has kernel and bias); without one, report what is missing.
    candidates = [prefix for prefix, leaves in cells.items() if RECURRENT_KEYS & set(leaves)]
    candidates = candidates or [prefix for prefix, leaves in cells.items() if _INPUT & set(leaves)]
    if not candidates:
        raise WeightsError(
            "no RNN cell weights found: expected input_weights, recurrent_weights, bias (TfLiteRNNCell) or kernel, "
            f"recurrent_kernel, bias (Keras), optionally under '<name>/'; found keys: {_listing(arrays)}"
        )
    if len(candidates) > 1:
        if name not in candidates:
            listed = ", ".join(repr(c) for c in sorted(candidates))
            raise WeightsError(f"several cells in the weights ({listed}); pick one with --scope")
        candidates = [name]
    prefix = candidates[0]
    leaves = cells[prefix]
    scope = f"{prefix}/" if prefix else ""
    tflite_keys = {"input_weights", "recurrent_weights"} & set(leaves)
    keras_keys = {"kernel", "recurrent_kernel"} & set(leaves)
    if tflite_keys and keras_keys:
        raise WeightsError(
            f"'{scope}' mixes TfLiteRNNCell names ({', '.join(sorted(tflite_keys))}) and Keras names "
            f"({', '.join(sorted(keras_keys))}); use one set"
        )
    names = TFLITE_NAMES if tflite_keys else KERAS_NAMES
    missing = [f"{scope}{n}" for n in names if n not in leaves]
    if missing:
        raise WeightsError(f"missing key {', '.join(repr(m) for m in missing)}; found keys: {_listing(arrays)}")
    if tflite_keys:
        return _from_tflite_names(arrays, leaves, scope), prefix
    return _from_keras_names(*(arrays[leaves[n]] for n in KERAS_NAMES)), prefix


def _gates(recurrent: np.ndarray, rows_axis: int) -> int | None:
    """How many gate blocks a recurrent matrix stacks along its gates' axis: 1 (the basic cell's is square), 3 (a
    GRU's, 3U) or 4 (an LSTM's, 4U); None for any other shape (the basic cell's reader then names it)."""
    shape = np.shape(recurrent)
    if len(shape) != 2 or shape[1 - rows_axis] == 0:
        return None
    for gates in (1, gru.GATES, lstm.GATES):
        if shape[rows_axis] == gates * shape[1 - rows_axis]:
            return gates
    return None


def _from_tflite_names(arrays: Mapping, leaves: dict, scope: str):
    named = {n: arrays[leaves[n]] for n in TFLITE_NAMES}  # each read once (an NpzArchive reads on access)
    gates = _gates(named["recurrent_weights"], 0)
    if GRU_RECURRENT_BIAS in leaves or gates == gru.GATES:
        recurrent_bias = arrays[leaves[GRU_RECURRENT_BIAS]] if GRU_RECURRENT_BIAS in leaves else None
        return GRUWeights(*named.values(), recurrent_bias)
    if gates == lstm.GATES:
        return LSTMWeights(*named.values())
    return CellWeights(*named.values())


def _from_keras_names(kernel, recurrent_kernel, bias):
    gates = _gates(recurrent_kernel, 1)
    if gates == gru.GATES:  # Keras' GRU: bias [2, 3U] when reset after
        return GRUWeights.from_keras(kernel, recurrent_kernel, bias, reset_after=np.ndim(bias) == 2)
    if gates == lstm.GATES:  # Keras' LSTM: columns i, f, c, o
        return LSTMWeights.from_keras(kernel, recurrent_kernel, bias)
    return CellWeights.from_keras(kernel, recurrent_kernel, bias)


def _listing(arrays: dict) -> str:
    keys = sorted(arrays)
    shown = ", ".join(repr(k) for k in keys[:12])
    return shown + (f" and {len(keys) - 12} more" if len(keys) > 12 else "") if keys else "(none)"
