"""The `tflite` package's generated builder functions, loaded module by module.

`import tflite` runs an __init__ that imports all ~190 generated modules: about 30 ms, a fifth of a whole
`tflrnn build`. The writer needs about a dozen, and each generated module imports only flatbuffers, so they are loaded
from their files on their own. (The reader, off the hot path, imports the package as usual.)
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

_TABLES = (
    "AddOptions", "BidirectionalSequenceLSTMOptions", "BidirectionalSequenceRNNOptions", "Buffer", "CallOnceOptions",
    "ConcatenationOptions", "FullyConnectedOptions", "GatherOptions", "Metadata", "Model", "MulOptions", "Operator",
    "OperatorCode", "PackOptions", "QuantizationParameters", "SequenceRNNOptions", "ShapeOptions", "SignatureDef",
    "SoftmaxOptions", "SplitOptions", "StridedSliceOptions", "SubGraph", "SubOptions", "Tensor", "TensorMap",
    "UnidirectionalSequenceLSTMOptions", "UnpackOptions", "VarHandleOptions", "WhileOptions",
)


def _load(directory: Path, table: str):
    spec = importlib.util.spec_from_file_location(f"tflite.{table}", directory / f"{table}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def builder_functions() -> SimpleNamespace:
    """ModelStart, TensorAddShape, ...: the prefixed builder functions of the tables the writer uses."""
    directory = Path(importlib.util.find_spec("tflite").origin).parent
    functions = {}
    for table in _TABLES:
        module = _load(directory, table)
        functions.update({k: v for k, v in vars(module).items() if k.startswith(table) and callable(v)})
    return SimpleNamespace(**functions)
