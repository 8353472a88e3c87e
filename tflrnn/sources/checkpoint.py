"""TensorFlow checkpoints, read with tf.train.load_checkpoint (TensorFlow is imported here and only here).

Two namings: a TF1 graph with TfLiteRNNCell writes `<scope>/input_weights`, `<scope>/recurrent_weights`,
`<scope>/bias`; Keras SimpleRNNCell writes `kernel`, `recurrent_kernel`, `bias` (in object-based checkpoints as
`<path>/kernel/.ATTRIBUTES/VARIABLE_VALUE`). Optimizer slots are skipped.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import WeightsError
from . import ImportedCell, require
from .npz import KERAS_NAMES, TFLITE_NAMES, weights_from_arrays

_LEAVES = set(TFLITE_NAMES) | set(KERAS_NAMES)
_OBJECT_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"


def read_checkpoint(path: Path, scope: str | None = None) -> ImportedCell:
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
    try:
        weights, scope = weights_from_arrays(arrays, scope)
    except WeightsError as exc:
        raise WeightsError(f"checkpoint {prefix}: {exc}") from None
    return ImportedCell(weights, "checkpoint", scope or None, activation=None,
                        details="a checkpoint does not record the activation: give --activation if it is not tanh")
