"""`.npz` weights, and the naming rules shared with TF checkpoints.

Keys are TfLiteRNNCell's variable names (`input_weights` [U,I], `recurrent_weights` [U,U], `bias` [U]) or Keras
SimpleRNN's (`kernel` [I,U], `recurrent_kernel` [U,U], `bias` [U], transposed on the way in), optionally under a
`<name>/` prefix, as a TF variable scope writes them.
"""

from __future__ import annotations

import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..cell import CellWeights
from ..errors import WeightsError
from . import ImportedCell

TFLITE_NAMES = ("input_weights", "recurrent_weights", "bias")
KERAS_NAMES = ("kernel", "recurrent_kernel", "bias")
RECURRENT_KEYS = {"recurrent_weights", "recurrent_kernel"}  # keys that mark a cell
_INPUT = {"input_weights", "kernel"}


def read_npz(path: Path, name: str | None = None) -> ImportedCell:
    if not zipfile.is_zipfile(path):
        raise WeightsError(f"cannot read weights {path}: not an .npz archive")
    try:
        with warnings.catch_warnings():  # numpy warns on odd headers before it raises: one line is enough
            warnings.simplefilter("ignore")
            _check_sizes(path)
            with np.load(path, allow_pickle=False) as archive:
                weights, prefix = weights_from_arrays(_NpzArrays(archive), name)
    except WeightsError as exc:
        raise WeightsError(f"{path}: {exc}") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise WeightsError(f"cannot read weights {path}: {' '.join(str(exc).split())}") from None
    return ImportedCell(weights, "npz", prefix or None, activation=None)


class _NpzArrays(Mapping):
    """An NpzFile's arrays by key, loaded one at a time when asked for."""

    def __init__(self, archive):
        self.archive = archive

    def __getitem__(self, key):
        return self.archive[key]

    def __iter__(self):
        return iter(self.archive.files)

    def __len__(self):
        return len(self.archive.files)


def _check_sizes(path: Path) -> None:
    """Refuse an array whose header claims more data than its archive member holds, before allocating it."""
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                    np.lib.format.read_array_header_2_0  # 3.0 differs from 2.0 only in the header's encoding
                shape, _, dtype = read_header(member)
            claimed = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
            if claimed > info.file_size:
                raise ValueError(f"'{info.filename[:-4]}' claims shape {list(shape)} ({claimed:,} bytes) but holds "
                                 f"{info.file_size:,} bytes")


def weights_from_arrays(arrays: Mapping[str, np.ndarray], name: str | None = None) -> tuple[CellWeights, str]:
    """The one cell among named arrays, and its prefix; `name` picks the prefix when there are several.

    Only the cell's own arrays are read from `arrays` (an NpzFile loads each on access), so nothing else in the
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
        return CellWeights(*(arrays[leaves[n]] for n in TFLITE_NAMES)), prefix
    return CellWeights.from_keras(*(arrays[leaves[n]] for n in KERAS_NAMES)), prefix


def _listing(arrays: dict) -> str:
    keys = sorted(arrays)
    shown = ", ".join(repr(k) for k in keys[:12])
    return shown + (f" and {len(keys) - 12} more" if len(keys) > 12 else "") if keys else "(none)"
