"""The source model run in its own framework, for `verify --against`.

Each framework loads the weights through its own loader (not tflrnn's readers), so a mistake in tflrnn's import
cannot hide itself: Keras files through keras, ONNX through onnxruntime, PyTorch state dicts through
torch.nn.RNN (or torch.nn.GRU, torch.nn.LSTM). A TF checkpoint has no model to run, so its variables go through the
numpy reference of their kind. The state is chained from one invoke to the next, as the .tflite carries it (an
LSTM's h and c both: Keras' [h, c] states, torch's (h, c), onnxruntime's Y_h and Y_c).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import reference
from .cell import parse_activation
from .errors import TflrnnError
from .sources import FORMATS, ImportedCell, detect_format, import_cell, import_cells, require


def missing_runner(fmt: str) -> str | None:
    """Why a source of this format cannot be run here (naming the extra to install), or None when it can."""
    module, extra = FORMATS[fmt].runner if fmt in FORMATS and FORMATS[fmt].runs else (None, None)
    if module is None or importlib.util.find_spec(module) is not None:
        return None
    return f"running a {fmt} source needs {module}: pip install 'tflrnn[{extra}]'"


@dataclass
class SourceRun:
    outputs: list[np.ndarray]  # one per invoke, in the layout of the .tflite's output
    reference: str  # what ran, e.g. "keras.layers.SimpleRNN 'rnn' from model.keras"
    framework: str  # e.g. "keras 3.15.1"
    source: ImportedCell


def run_source(path, inputs: list[np.ndarray], *, activation: str, time_major: bool, format: str | None = None,
               layer: str | None = None, scope: str | None = None, layer_index: int | None = None,
               whole: bool = False, shapes: list[tuple[int, int]] | None = None, final: bool = False) -> SourceRun:
    """Run the source model on `inputs` (x in the .tflite's layout), chaining the state across them.

    `whole`: the .tflite holds every layer (or both directions) of the source, so run all of it; `final`: and its
    dense head, so compare the model's own output."""
    path = Path(path)
    fmt = format or detect_format(path)
    if whole:
        if fmt not in RUNS:
            raise TflrnnError(f"--against a stack or bidirectional model reads a PyTorch nn.RNN, a Keras model, "
                              f"ONNX RNN nodes or a TF checkpoint's stack; {path} is {fmt}")
        cells, kind = import_cells(path, format=fmt)
    else:
        cells, kind = [import_cell(path, format=fmt, name=scope, layer=layer, layer_index=layer_index)], "cell"
    _same_cells(path, [c.weights for c in cells], shapes)
    cell = cells[0]
    batch_major = [np.swapaxes(x, 0, 1) if time_major else x for x in inputs]
    if fmt not in RUNS:
        raise TflrnnError(f"--against needs a model in its framework (Keras, ONNX, PyTorch or a checkpoint); {path} "
                          f"is {fmt}: use --weights to compare the weights themselves")
    outputs, what, framework = RUNS[fmt](Run(path, fmt, cells, kind, batch_major, activation, whole, final))
    outputs = [np.swapaxes(y, 0, 1) if time_major and y.ndim == 3 else y for y in outputs]
    return SourceRun(outputs, what, framework, cell)


def _same_cells(path: Path, weights: list, shapes: list[tuple[int, int]] | None) -> None:
    """The source must hold the model's cells, in order: same count, same [units, input] each."""
    if shapes is None:
        return
    found = [(w.num_units, w.input_size) for w in weights]
    if found != [tuple(s) for s in shapes]:
        raise TflrnnError(f"{path} holds cells of [units, input size] {[list(f) for f in found]}; the model's are "
                          f"{[list(s) for s in shapes]}: not the source of this model")


def _keras(path: Path, cells: list[ImportedCell], kind: str, inputs, activation: str, final: bool = False):
    """A Keras model's recurrent layer (SimpleRNN, GRU, LSTM), or its chain of them and Bidirectional ones, loaded by
    Keras and run with every step returned and the states chained from one invoke to the next (an LSTM's [h, c]).
    `final`: the model's own output (its last step and Dense layers too), with the first invoke from model.predict
    itself."""
    keras = require("keras", "tensorflow", "verifying against a Keras file runs it in Keras")
    try:
        if path.name.lower().endswith(".weights.h5"):
            # Weights only: rebuild the one-layer model they came from and let Keras load them.
            rebuilt = _keras_layer(keras, cells[0], activation)
            model = keras.Sequential([keras.Input((None, cells[0].weights.input_size)), rebuilt])
            model.load_weights(str(path))
        else:
            model = keras.saving.load_model(str(path), compile=False)
    except (ValueError, OSError, TypeError, KeyError) as exc:
        raise TflrnnError(f"keras cannot load {path}: {' '.join(str(exc).split())[:300]}") from None
    every_step = {"return_sequences": True, "return_state": True, "stateful": False}
    if kind == "cell":
        sources = [_find_layer(model, cells[0].layer)]
    else:
        from .sources.keras_files import _CLASSES

        sources = [layer for layer in model.layers if type(layer).__name__ in (*_CLASSES, "Bidirectional")]
    layers, widths = [], []  # each layer's clone, and how many states each of its directions returns (an LSTM: h, c)
    for original in sources:
        config = original.get_config()
        bidirectional = type(original).__name__ == "Bidirectional"
        widths.append(_states_per_direction(config["layer"].get("class_name") if bidirectional
                                            else type(original).__name__))
        if bidirectional:
            for half in ("layer", "backward_layer"):  # the backward layer keeps its own config (and go_backwards)
                if config.get(half):
                    config[half] = {**config[half], "config": {**config[half]["config"], **every_step}}
            layers.append(keras.layers.Bidirectional.from_config(config))
        else:
            layers.append(type(original).from_config({**config, **every_step}))
    size = cells[0].weights.input_size
    for clone, original in zip(layers, sources):
        clone.build((None, None, size))
        clone.set_weights(original.get_weights())
        size = clone.compute_output_shape((None, None, size))[0][-1]  # each layer's output is the next one's input
    head = model.layers[model.layers.index(sources[-1]) + 1:] if final else []
    last_step = final and not _returns_sequences(sources[-1])
    outputs, states = [], [None] * len(layers)
    for x in inputs:
        y = x
        for k, layer in enumerate(layers):
            result = list(layer(y, initial_state=states[k]))
            held = widths[k] * (2 if type(layer).__name__ == "Bidirectional" else 1)  # the states it returns last
            outputs_of = result[: len(result) - held]  # Bidirectional with merge_mode=None: forward, backward
            y = keras.ops.concatenate(outputs_of, axis=-1) if len(outputs_of) > 1 else outputs_of[0]
            states[k] = result[len(result) - held:]
        if last_step:  # each direction's final h: Keras' output with return_sequences=False
            finals = states[-1][:: widths[-1]]  # an LSTM's states are h, c per direction: h
            y = keras.ops.concatenate(finals, axis=-1) if len(finals) > 1 else finals[0]
        for layer in head:
            y = layer(y, training=False)
        outputs.append(keras.ops.convert_to_numpy(y))
    what = (f"keras.layers.{type(sources[0]).__name__} '{sources[0].name}'" if len(sources) == 1 else
            f"{len(layers)} keras recurrent layers ({', '.join(layer.name for layer in sources)})")
    if final:
        outputs[0] = model.predict(inputs[0], verbose=0)
        what = (f"keras model '{model.name}': model.predict for the first invoke, then layer by layer with the states "
                "chained")
    return outputs, f"{what} from {path.name}", f"keras {keras.__version__}"


def _states_per_direction(class_name: str | None) -> int:
    """How many state tensors a Keras recurrent layer of this class returns per direction: an LSTM's h and c, else
    one."""
    from .sources.keras_files import _CLASSES

    return 2 if _CLASSES.get(class_name) == "lstm" else 1


def _keras_layer(keras, cell: ImportedCell, activation: str):
    """The layer a weights-only file's one cell came from, of its kind (a GRU's reset_after as its bias says)."""
    units = cell.weights.num_units
    if cell.weights.kind == "gru":
        return keras.layers.GRU(units, use_bias=cell.has_bias, reset_after=cell.weights.reset_after,
                                return_sequences=True, name=cell.layer)
    if cell.weights.kind == "lstm":
        return keras.layers.LSTM(units, use_bias=cell.has_bias, return_sequences=True, name=cell.layer)
    return keras.layers.SimpleRNN(units, activation=activation, use_bias=cell.has_bias, return_sequences=True,
                                  name=cell.layer)


def _returns_sequences(layer) -> bool:
    config = layer.get_config()
    inner = config["layer"]["config"] if "layer" in config else config
    return bool(inner.get("return_sequences", False))


def _find_layer(model, name: str):
    for layer in getattr(model, "layers", []):
        if layer.name == name:
            return layer
        found = _find_layer(layer, name) if hasattr(layer, "layers") else None
        if found is not None:
            return found
    if name is None:
        raise ValueError("no layer name")
    raise ValueError(f"no layer '{name}' in the loaded model")


def _onnx(path: Path, inputs, whole: bool):
    """The graph's RNN, GRU or LSTM node (or, `whole`, its chain of them) in onnxruntime, with the weight tensors
    exactly as the file stores them, each initial state as an input (an LSTM's initial_h and initial_c, chained from
    its Y_h and Y_c), and the layers joined as torch.onnx.export joins them (Y [T,D,B,U] -> [T,B,D*U]); outputs
    [B,T,D*U] (directions side by side)."""
    onnx = require("onnx", "onnx", "verifying against ONNX runs it in onnxruntime")
    ort = require("onnxruntime", "onnx", "verifying against ONNX runs it in onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    from .sources.onnx_graph import OPS, Constants

    original = onnx.load(str(path))
    rnn_nodes = [n for n in original.graph.node if n.op_type in OPS]
    rnn_nodes = rnn_nodes if whole else rnn_nodes[:1]
    constants = Constants(original.graph, numpy_helper)
    nodes, initializers, graph_inputs, states = [], [], [helper.make_tensor_value_info(
        "X", TensorProto.FLOAT, ["time", "batch", None])], []
    x = "X"
    for k, node in enumerate(rnn_nodes):
        names = []
        for index, role in ((1, "W"), (2, "R"), (3, "B"), (7, "P")):
            stored = constants.proto(node.input[index]) if index < len(node.input) and node.input[index] else None
            if role == "P" and (node.op_type != "LSTM" or stored is None):
                continue  # no peepholes, or zeros the graph computes (tflrnn's reader refuses any other)
            if stored is not None:
                tensor = TensorProto()
                tensor.CopyFrom(stored)
                tensor.name = f"{role}{k}"
                initializers.append(tensor)
                names.append(tensor.name)
            else:
                names.append("")
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        # onnxruntime runs only layout 0 (sequence-major); layout only orders the X, Y and H axes, so run the same
        # weights in layout 0 and arrange the data here. Every other attribute (a GRU's linear_before_reset) stays.
        attrs["layout"] = 0
        direction = attrs.get("direction", b"forward")
        directions = 2 if (direction.decode() if isinstance(direction, bytes) else direction) == "bidirectional" else 1
        units = constants.proto(node.input[2]).dims[-1]
        # the state inputs and the outputs that carry them on: initial_h -> Y_h, and an LSTM's initial_c -> Y_c
        carried = [(f"H{k}", f"Yh{k}")] + ([(f"C{k}", f"Yc{k}")] if node.op_type == "LSTM" else [])
        w, r, b, *peepholes = names
        node_inputs = [x, w, r, b, "", *(name for name, _ in carried), *peepholes]
        nodes.append(helper.make_node(node.op_type, node_inputs, [f"Y{k}", *(out for _, out in carried)], **attrs))
        nodes.append(helper.make_node("Transpose", [f"Y{k}"], [f"T{k}"], perm=[0, 2, 1, 3]))
        nodes.append(helper.make_node("Reshape", [f"T{k}", "joined"], [f"S{k}"]))
        for name, out in carried:
            graph_inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [directions, "batch", units]))
            states.append((name, out, directions, units))
        x = f"S{k}"
    initializers.append(helper.make_tensor("joined", TensorProto.INT64, [3], [0, 0, -1]))
    graph = helper.make_graph(
        nodes, "rnn", graph_inputs,
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, None),
         *(helper.make_tensor_value_info(out, TensorProto.FLOAT, None) for _, out, _, _ in states)],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=original.opset_import, ir_version=original.ir_version)
    try:
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own exception types
        raise TflrnnError(f"onnxruntime cannot run the recurrent nodes of {path}: "
                          f"{' '.join(str(exc).split())[:300]}") from None
    outputs, state = [], None
    for x in inputs:  # batch-major [B,T,I]
        if state is None:
            state = [np.zeros((d, x.shape[0], u), np.float32) for _, _, d, u in states]
        feed = {"X": np.ascontiguousarray(np.swapaxes(x, 0, 1), np.float32)}
        feed.update({name: value for (name, _, _, _), value in zip(states, state)})
        y, *state = session.run(None, feed)
        outputs.append(np.swapaxes(y, 0, 1))
    ops = "/".join(sorted({n.op_type for n in rnn_nodes}))
    label = (f"{len(rnn_nodes)} onnx {ops} nodes" if len(rnn_nodes) > 1 else
             f"onnx {ops} node '{rnn_nodes[0].name or rnn_nodes[0].output[0]}'")
    return outputs, f"{label} from {path.name}", f"onnxruntime {ort.__version__}"


def _torch(path: Path, fmt: str, cell: ImportedCell, inputs, activation: str, whole: bool):
    torch = require("torch", "torch", "verifying against a PyTorch state dict runs torch.nn.RNN")
    kind = cell.weights.kind
    if kind == "rnn" and activation not in ("tanh", "relu"):
        raise TflrnnError(f"torch.nn.RNN has no nonlinearity '{activation}' (tanh or relu)")
    if fmt == "safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
        state = state.state_dict() if hasattr(state, "state_dict") else state
    index = int(cell.layer.rsplit("l", 1)[1])  # "<prefix>l<k>"
    prefix = cell.layer[: -len(f"l{index}")]
    if whole:  # every layer and direction of the module, as it was
        layer_state = {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}
        layers = 1 + max(int(key.split("_l")[1].split("_")[0]) for key in layer_state if "_l" in key)
        bidirectional = any(key.endswith("_reverse") for key in layer_state)
    else:
        suffix = f"_l{index}"
        layer_state = {key[len(prefix):].replace(suffix, "_l0"): value for key, value in state.items()
                       if key.startswith(prefix) and key.endswith(suffix)}
        layers, bidirectional = 1, False
    module, options = {"gru": (torch.nn.GRU, {}), "lstm": (torch.nn.LSTM, {})}.get(
        kind, (torch.nn.RNN, {"nonlinearity": activation}))
    rnn = module(cell.weights.input_size, cell.weights.num_units, num_layers=layers, bias="bias_ih_l0" in layer_state,
                 batch_first=True, bidirectional=bidirectional, **options)
    rnn.load_state_dict(layer_state)  # strict: every tensor, through torch's own loader
    outputs, state_h = [], None  # h, or an LSTM's (h, c): chained as the module returns it
    with torch.no_grad():
        for x in inputs:
            y, state_h = rnn(torch.from_numpy(np.ascontiguousarray(x, np.float32)), state_h)
            outputs.append(y.numpy())
    what = (f"torch.nn.{module.__name__}(num_layers={layers}, bidirectional={bidirectional})" if whole
            else f"torch.nn.{module.__name__} layer {index}")
    return outputs, f"{what} from {path.name}", f"torch {torch.__version__}"


def _numpy(cells: list[ImportedCell], inputs, activation: str):
    """The cells chained (a stack), each from the state the previous invoke left, each by the reference of its kind
    (a GRU's weights never run as a basic cell)."""
    outputs, states = [], [None] * len(cells)
    for x in inputs:
        y = x
        for k, cell in enumerate(cells):
            y, states[k] = reference.run_cell(y, cell.weights, parse_activation(activation), initial_state=states[k])
        outputs.append(y)
    return outputs, "numpy reference", f"numpy {np.__version__}"


@dataclass
class Run:
    """One --against run: the source, its cells as tflrnn read them, and the inputs (batch-major)."""

    path: Path
    fmt: str
    cells: list[ImportedCell]
    kind: str
    inputs: list[np.ndarray]
    activation: str
    whole: bool
    final: bool


def _checkpoint(run: Run):
    outputs, _, framework = _numpy(run.cells, run.inputs, run.activation)
    scopes = ", ".join(c.layer for c in run.cells if c.layer)
    return outputs, f"the numpy reference on the checkpoint's variables{f' under {scopes}' if scopes else ''}", \
        framework


def _state_dict(run: Run):
    return _torch(run.path, run.fmt, run.cells[0], run.inputs, run.activation, run.whole)


# What runs each source format that has a model to run (sources.FORMATS says which do, and what they need).
RUNS = {
    "keras": lambda run: _keras(run.path, run.cells, run.kind, run.inputs, run.activation, run.final),
    "onnx": lambda run: _onnx(run.path, run.inputs, run.whole),
    "safetensors": _state_dict,
    "torch": _state_dict,
    "checkpoint": _checkpoint,
}
