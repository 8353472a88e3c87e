"""TensorFlow checkpoints, read with tf.train.load_checkpoint (TensorFlow is imported here and only here).

Two namings: a TF1 graph with TfLiteRNNCell writes `<scope>/input_weights`, `<scope>/recurrent_weights`,
`<scope>/bias`; Keras SimpleRNNCell writes `kernel`, `recurrent_kernel`, `bias` (in object-based checkpoints as
`<path>/kernel/.ATTRIBUTES/VARIABLE_VALUE`). Optimizer slots are skipped.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import WeightsError
from . import ImportedCell, require
from .npz import KERAS_NAMES, RECURRENT_KEYS, TFLITE_NAMES, weights_from_arrays

_LEAVES = set(TFLITE_NAMES) | set(KERAS_NAMES)
_OBJECT_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"


def _checkpoint_arrays(path: Path) -> tuple[dict, str]:
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
        arrays = {}
        for name in names:
            clean = name.removesuffix(_OBJECT_SUFFIX)
            if ".OPTIMIZER_SLOT" in clean or clean.rpartition("/")[2] not in _LEAVES:
                continue
            arrays[clean] = reader.get_tensor(name)
    except (ValueError, OSError, tf.errors.OpError) as exc:
        raise WeightsError(f"cannot read checkpoint {prefix}: {' '.join(str(exc).split())[:300]}") from None
    return arrays, prefix


def read_checkpoint(path: Path, scope: str | None = None) -> ImportedCell:
    arrays, prefix = _checkpoint_arrays(path)
    return _cell(arrays, scope, prefix)


def read_checkpoint_cells(path: Path) -> list[ImportedCell]:
    """Every cell of a checkpoint: one, or a stack (MultiRNNCell's cell_0, cell_1, ..., Keras' stacked layers)
    when there are several whose scopes differ only in their indices and whose sizes chain, first layer first.
    Other sets of cells (an encoder and a decoder, say) need --scope."""
    arrays, prefix = _checkpoint_arrays(path)
    scopes = sorted({key.rpartition("/")[0] for key in arrays if key.rpartition("/")[2] in RECURRENT_KEYS}, key=_natural)
    if len(scopes) <= 1 or len({re.sub(r"\d+", "#", scope) for scope in scopes}) > 1:
        return [_cell(arrays, None, prefix)]  # one cell, or the error that asks for --scope
    cells = [_cell(arrays, scope, prefix) for scope in scopes]
    for before, after in zip(cells, cells[1:]):
        if after.weights.input_size != before.weights.num_units:
            listed = ", ".join(repr(s) for s in scopes)
            raise WeightsError(f"checkpoint {prefix} holds several cells ({listed}) whose sizes do not chain as a "
                               "stack; pick one with --scope")
    return cells


def _natural(text: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _cell(arrays: dict, scope: str | None, prefix: str) -> ImportedCell:
    try:
        weights, scope = weights_from_arrays(arrays, scope)
    except WeightsError as exc:
        raise WeightsError(f"checkpoint {prefix}: {exc}") from None
    return ImportedCell(weights, "checkpoint", scope or None, activation=None,
                        hint="a checkpoint does not record it; give --activation if it is not tanh")
