"""tflrnn: TensorFlow Lite models of recurrent networks, written directly as a flatbuffer (the fused
UNIDIRECTIONAL_SEQUENCE_RNN op, or a portable lowering of plain builtin ops, in float or full int8) and verified on
every TFLite runtime.

    cell = tflrnn.RNNCell(64, activation="tanh")                # or tflrnn.GRUCell(64), tflrnn.LSTMCell(64)
    data = tflrnn.build(cell, input_size=32, time_steps=50)     # .tflite bytes
    report = tflrnn.verify(data)                                 # LiteRT vs the numpy reference
    info = tflrnn.inspect(data)                                  # what the file holds

Modules: network (what is built), lowering (network <-> model), model (the flatbuffer description), writer /
reader (flatbuffer both ways), builder (build), quantization (full int8), metadata, cell, weights, config,
reference (numpy), runtime / runners (LiteRT, tf.lite, CompiledModel, TFLite Micro), verification (verify),
inspection (inspect), weights (in and out), cli.
Nothing here imports tensorflow. Names are imported on first use, so `tflrnn build` loads only what it runs.
"""

import importlib

from .version import __version__

_EXPORTS = {
    "RNNCell": "cell",
    "CellWeights": "cell",
    "GRUCell": "cells.gru",
    "GRUWeights": "cells.gru",
    "LSTMCell": "cells.lstm",
    "LSTMWeights": "cells.lstm",
    "initial_weights": "cell",
    "load_weights": "weights",
    "import_cell": "weights",
    "ImportedCell": "weights",
    "build": "builder",
    "build_file": "builder",
    "verify": "verification",
    "VerifyReport": "verification",
    "Check": "verification",
    "inspect": "inspection",
    "Inspection": "inspection",
    "TflrnnError": "errors",
    "ConfigError": "errors",
    "WeightsError": "errors",
    "ModelFormatError": "errors",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tflrnn' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
