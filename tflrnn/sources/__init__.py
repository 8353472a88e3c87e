"""Weights from where people train RNNs, each format in its own module, all returning an ImportedCell.

| format      | module          | reads                                                          | needs        |
| npz         | npz.py          | TfLiteRNNCell or Keras names, optionally under <name>/          | numpy        |
| keras       | keras_files.py  | .keras (Keras 3), .h5 (legacy whole model), .weights.h5         | h5py         |
| checkpoint  | checkpoint.py   | TF checkpoints: TF1 TfLiteRNNCell / GRUCell / LSTMCell, Keras  | tensorflow   |
| safetensors | pytorch.py      | nn.RNN, nn.GRU and nn.LSTM state dicts                          | safetensors  |
| torch       | pytorch.py      | nn.RNN, nn.GRU and nn.LSTM state dicts saved with torch.save    | torch        |
| onnx        | onnx_graph.py   | RNN, GRU and LSTM nodes, as torch.onnx.export writes them       | onnx         |

Each reads the basic cell (SimpleRNN, nn.RNN, ONNX RNN) as CellWeights, a GRU as GRUWeights (cells/gru.py) and an
LSTM as LSTMWeights (cells/lstm.py), with the same names and structure (stacks, bidirectional pairs, Dense heads); a
model may mix the kinds, one kind per layer, and the builder decides what it writes of that.

A missing optional package is a clear error naming the extra to install, never an ImportError.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..cell import CellWeights
from ..errors import TflrnnError, WeightsError
from ..files import native_stderr_silenced

_ZIP, _HDF5 = b"PK\x03\x04", b"\x89HDF\r\n\x1a\n"


@dataclass(frozen=True)
class DeclaredInput:
    """The input shape a source model declares (a Keras Input, an ONNX graph input): None where it says nothing.

    `time_steps` is "dynamic" for an unknown length; an unknown batch is None (the state is [batch, units], so it
    stays at the default)."""

    origin: str  # e.g. "the Keras Input", "the ONNX graph input 'x'"
    time_steps: int | str | None = None
    batch_size: int | None = None
    time_major: bool | None = None

    def sizes(self) -> dict:
        """The build settings it implies."""
        return {key: value for key, value in (("time_steps", self.time_steps), ("batch_size", self.batch_size),
                                              ("time_major", self.time_major)) if value is not None}

    def to_dict(self) -> dict:
        return {"origin": self.origin, **self.sizes()}


@dataclass
class ImportedCell:
    weights: CellWeights  # or GRUWeights, LSTMWeights (cells/gru.py, lstm.py): `weights.kind` says which
    format: str
    layer: str | None  # the layer, scope or node it came from
    activation: str | None  # as the source records it; None when the source does not record one
    details: str = ""  # anything else the user should know about what was read
    has_bias: bool = True  # False: the source has no bias variable (a zero bias)
    hint: str = ""  # what to do when the source does not record the activation and none was given
    declared: DeclaredInput | None = None  # the model input's shape, where the source declares it
    cell_clip: float | None = None  # an LSTM's cell_clip, where the source records one (a `tflrnn weights` record)
    forget_bias: float | None = None  # what was added to the forget gate's bias on reading (a TF1 LSTMCell's)

    def describe(self, given_activation: str | None = None) -> str:
        w = self.weights
        found = f"{self.format}"
        if self.layer:
            found += f" '{self.layer}'"
        if self.activation:
            activation = self.activation
        elif given_activation:
            activation = f"not recorded ({given_activation} as given)"
        else:
            activation = "not recorded" + (f": {self.hint}" if self.hint else "")
        found += ": " + _cell_kind_text(w) + ", ".join(
            f"{role} {list(array.shape)}" for role, array in w.roles().items()) + f", activation {activation}"
        return found + (f"; {self.details}" if self.details else "")

    def to_dict(self) -> dict:
        return {
            "format": self.format,
            "layer": self.layer,
            "activation": self.activation,
            "cell": self.weights.kind,
            "units": self.weights.num_units,
            "input_size": self.weights.input_size,
            "details": self.details,
            "declared_input": self.declared.to_dict() if self.declared else None,
        }


def _cell_kind_text(weights) -> str:
    """How describe() names a cell that is not the basic one (whose text stays as it always was)."""
    kind = getattr(weights, "kind", "rnn")
    if kind == "gru":
        return f"GRU (reset {'after' if weights.reset_after else 'before'}), "
    if kind == "lstm":
        return "LSTM, "
    return ""


def require(module: str, extra: str, hint: str = ""):
    """Import an optional package, or fail with the command that installs it."""
    quiet = contextlib.nullcontext()
    if module in ("tensorflow", "keras"):
        # TensorFlow logs its start-up (oneDNN, CPU features) to stderr, partly before its log level is read; keep
        # that out of tflrnn's output unless the user asked for it.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        if module not in sys.modules and os.environ.get("TFLRNN_DEBUG", "").lower() in ("", "0", "false", "no"):
            quiet = native_stderr_silenced()
    try:
        with quiet:
            return importlib.import_module(module)
    except ImportError:
        message = f"this needs the '{module}' package: pip install 'tflrnn[{extra}]'"
        raise WeightsError(message + (f" ({hint})" if hint else "")) from None


def detect_format(path: Path) -> str:
    """The weights format, from the file's content where it tells and its suffix where it does not."""
    name = path.name.lower()
    if path.is_dir() or (not path.exists() and Path(f"{path}.index").exists()):
        return "checkpoint"
    if not path.exists():
        raise WeightsError(f"weights file not found: {path}")
    if name.endswith((".pt", ".pth")):
        return "torch"  # torch.save writes a zip too: the suffix decides
    if name.endswith(".safetensors"):
        return "safetensors"
    if name.endswith(".onnx"):
        return "onnx"
    if name.endswith(".index"):
        return "checkpoint"
    with path.open("rb") as f:
        magic = f.read(8)
    if magic.startswith(_HDF5):
        return "keras"
    if magic.startswith(_ZIP):
        return "keras" if name.endswith(".keras") else "npz"
    if name.endswith((".keras", ".h5", ".hdf5")):
        return "keras"
    if name.endswith(".npz"):
        return "npz"
    raise WeightsError(f"cannot tell the format of {path}; give --format ({', '.join(FORMATS)})")


def _state_dict(path: Path, fmt: str) -> dict:
    from .pytorch import read_safetensors, read_torch

    return read_safetensors(path) if fmt == "safetensors" else read_torch(path)


@dataclass
class SourceNetwork:
    """The network a source holds, as every source gives it: each layer's directions (ImportedCells, forward before
    backward), what each layer is called there (None: tflrnn names it), and the build options the source implies (a
    Keras model's last step, merge mode and Dense head; an .npz record's layout)."""

    layers: list[tuple[ImportedCell, ...]]
    names: list[str] | None = None
    implied: dict = field(default_factory=dict)

    @property
    def cells(self) -> list[ImportedCell]:
        """Every direction, layer by layer."""
        return [cell for layer in self.layers for cell in layer]

    @property
    def bidirectional(self) -> list[bool]:
        return [len(layer) == 2 for layer in self.layers]

    @property
    def single(self) -> bool:
        """One cell one way, with nothing after it: built as a cell (the source's sizes and names apply to it)."""
        return len(self.layers) == 1 and len(self.layers[0]) == 1 and not self.implied.get("head")

    @classmethod
    def of(cls, cells: list[ImportedCell], kind: str, implied: dict) -> SourceNetwork:
        """From a format reader's cells, their connection ("cell", "stack", "bidirectional", "network": then
        implied["bidirectional"] flags each layer) and implied options."""
        implied = dict(implied)
        flags = {"cell": [False], "bidirectional": [True], "stack": [False] * len(cells)}.get(kind)
        flags = implied.pop("bidirectional") if flags is None else flags
        implied.pop("bidirectional", None)
        layers, position = [], 0
        for flag in flags:
            layers.append(tuple(cells[position:position + (2 if flag else 1)]))
            position += 2 if flag else 1
        return cls(layers, implied.pop("layer_names", None), implied)


def import_network(path, *, format: str | None = None, name: str | None = None, layer: str | None = None,
                   layer_index: int | None = None) -> SourceNetwork:
    """The network a source holds (SourceNetwork): what `tflrnn build --weights` builds."""
    return SourceNetwork.of(*import_model(path, format=format, name=name, layer=layer, layer_index=layer_index))


def import_cells(path, *, format: str | None = None, name: str | None = None, layer: str | None = None,
                 layer_index: int | None = None) -> tuple[list[ImportedCell], str]:
    """All the RNN cells a source holds and how they connect: ("cell" | "stack" | "bidirectional").

    A PyTorch nn.RNN with num_layers > 1 (or a chain of ONNX RNN nodes) is a stack, one with bidirectional=True a
    forward and backward pair, or a "network" of such layers; a Keras model may add Dense layers ("network").
    Everything else (and any file with `layer`/`layer_index` picking one) is read as one cell.
    """
    cells, kind, _ = import_model(path, format=format, name=name, layer=layer, layer_index=layer_index)
    return cells, kind


def import_model(path, *, format: str | None = None, name: str | None = None, layer: str | None = None,
                 layer_index: int | None = None) -> tuple[list[ImportedCell], str, dict]:
    """As import_cells, with the build options the source implies (a Keras stack's last step, a
    Bidirectional layer's merge mode)."""
    path = Path(path)
    fmt = format or detect_format(path)
    with reading(path, fmt):
        return _import_model(path, fmt, name, layer, layer_index)


@contextlib.contextmanager
def reading(path: Path, fmt: str):
    """Turn whatever a reader library raises on a malformed file (h5py, zipfile, onnx, protobuf, numpy...) into a
    WeightsError naming the file. Files come from other people: a broken one is bad input, not a bug of tflrnn."""
    try:
        with warnings.catch_warnings():
            # The libraries' own complaints about a file (onnx's unknown external-data keys, zipfile's duplicate
            # names...) are not for the terminal: the file either reads, or gives one error line.
            warnings.simplefilter("ignore")
            yield
    except TflrnnError:
        raise
    except MemoryError:
        raise WeightsError(f"cannot read {fmt} file {path}: it claims more memory than there is") from None
    except RecursionError:
        raise WeightsError(f"cannot read {fmt} file {path}: nested too deeply") from None
    except Exception as exc:  # noqa: BLE001 - the readers' own exception types are many and undocumented
        detail = " ".join(str(exc).split())[:200]
        raise WeightsError(f"cannot read {fmt} file {path}: {type(exc).__name__}"
                           + (f": {detail}" if detail else "")) from None


def _import_model(path: Path, fmt: str, name, layer, layer_index) -> tuple[list[ImportedCell], str, dict]:
    whole = FORMATS[fmt].network if fmt in FORMATS else None
    found = whole(path, name, layer, layer_index) if whole is not None else None
    if found is not None:
        return found
    return [import_cell(path, format=fmt, name=name, layer=layer, layer_index=layer_index)], "cell", {}


def import_cell(path, *, format: str | None = None, name: str | None = None, layer: str | None = None,
                layer_index: int | None = None) -> ImportedCell:
    """Read one RNN cell's weights. `name` picks a <name>/ prefix or TF scope, `layer` a Keras layer,
    `layer_index` a PyTorch nn.RNN layer."""
    path = Path(path)
    fmt = format or detect_format(path)
    if fmt not in FORMATS:
        raise WeightsError(f"unknown weights format '{fmt}'; one of {', '.join(FORMATS)}")
    if fmt != "checkpoint" and not path.exists():
        raise WeightsError(f"weights file not found: {path}")
    if fmt != "checkpoint" and path.is_dir():
        raise WeightsError(f"weights path is a directory: {path}")
    if layer is not None and fmt != "keras":
        raise WeightsError(f"--layer picks a Keras layer; {path} is {fmt}")
    if layer_index is not None and fmt not in ("safetensors", "torch"):
        raise WeightsError(f"--layer-index picks a PyTorch nn.RNN layer; {path} is {fmt}")
    with reading(path, fmt):
        return _import_cell(path, fmt, name, layer, layer_index)


def _import_cell(path: Path, fmt: str, name, layer, layer_index) -> ImportedCell:
    return FORMATS[fmt].cell(path, name, layer, layer_index)


# Each format: how one cell is read, how a whole network is (None: the options pick one cell, or the format holds
# one), and what runs the source model for `verify --against` (the package and the extra that brings it; None: no
# model to run). Readers import their modules when called, so only the format at hand is loaded.


def _npz_cell(path, name, layer, layer_index):
    from .npz import read_npz

    return read_npz(path, name)


def _npz_network(path, name, layer, layer_index):
    if layer is not None or layer_index is not None or not path.is_file():
        return None  # the cell reader refuses them
    from .npz import read_npz_network

    return read_npz_network(path, name)


def _keras_cell(path, name, layer, layer_index):
    from .keras_files import read_keras

    return read_keras(path, layer)


def _keras_network(path, name, layer, layer_index):
    if layer is not None or not path.is_file():
        return None
    from .keras_files import read_keras_model

    return read_keras_model(path)


def _checkpoint_cell(path, name, layer, layer_index):
    from .checkpoint import read_checkpoint

    return read_checkpoint(path, name)


def _checkpoint_network(path, name, layer, layer_index):
    if name is not None:
        return None
    from .checkpoint import read_checkpoint_cells

    cells = read_checkpoint_cells(path)
    return cells, "stack" if len(cells) > 1 else "cell", {}


def _state_dict_cell(fmt: str):
    def cell(path, name, layer, layer_index):
        from .pytorch import cell_from_state_dict

        return cell_from_state_dict(_state_dict(path, fmt), layer_index, fmt, path)

    return cell


def _state_dict_network(fmt: str):
    def network(path, name, layer, layer_index):
        if layer_index is not None or not path.is_file():
            return None
        from .pytorch import cells_from_state_dict

        cells = cells_from_state_dict(_state_dict(path, fmt), None, fmt, path)
        reverse = cells[-1].layer.endswith("_reverse")
        if len(cells) == 1 or reverse and len(cells) == 2:
            return cells, "bidirectional" if reverse else "cell", {}
        return cells, "network" if reverse else "stack", {"bidirectional": [reverse] * (len(cells) // (1 + reverse))}

    return network


def _onnx_cell(path, name, layer, layer_index):
    from .onnx_graph import read_onnx

    return read_onnx(path)


def _onnx_network(path, name, layer, layer_index):
    if not path.is_file():
        return None
    from .onnx_graph import read_onnx_network

    cells, flags = read_onnx_network(path)
    if len(flags) == 1:
        return cells, "bidirectional" if flags[0] else "cell", {}
    return cells, "network" if any(flags) else "stack", {"bidirectional": flags}


@dataclass(frozen=True)
class SourceFormat:
    name: str
    cell: Callable  # (path, name, layer, layer_index) -> ImportedCell
    network: Callable | None  # (path, name, layer, layer_index) -> (cells, kind, implied), or None for one cell
    runner: tuple[str | None, str | None] | None  # (package, extra) that runs it for --against; None: nothing to run

    @property
    def runs(self) -> bool:
        """`verify --against` can run it (and so compare a whole stack, bidirectional model or classifier)."""
        return self.runner is not None


FORMATS = {f.name: f for f in (
    SourceFormat("npz", _npz_cell, _npz_network, None),  # the network `tflrnn weights` records, else one cell
    SourceFormat("keras", _keras_cell, _keras_network, ("keras", "tensorflow")),
    SourceFormat("checkpoint", _checkpoint_cell, _checkpoint_network, (None, None)),  # the numpy reference runs it
    SourceFormat("safetensors", _state_dict_cell("safetensors"), _state_dict_network("safetensors"),
                 ("torch", "torch")),
    SourceFormat("torch", _state_dict_cell("torch"), _state_dict_network("torch"), ("torch", "torch")),
    SourceFormat("onnx", _onnx_cell, _onnx_network, ("onnxruntime", "onnx")),
)}
