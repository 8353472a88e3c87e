"""An ONNX graph with RNN, GRU or LSTM nodes (one, or a chain), as torch.onnx.export writes nn.RNN, nn.GRU and
nn.LSTM, read with the onnx package.

RNN inputs: X, W [1,U,I], R [1,U,U], B [1,2U] (Wb then Rb; b = Wb + Rb), sequence_lens, initial_h. GRU: the same
inputs with 3U rows (gates z, r, h) and B [1,6U]; linear_before_reset=1 keeps Rb apart (reset after), 0 folds it into
the bias (reset before). LSTM: W [D,4U,I], R [D,4U,U] (gates i, o, f, c, reordered to tflrnn's i, f, g, o),
B [D,8U] (Wb + Rb), then sequence_lens, initial_h, initial_c and the peepholes P [D,3U]. Refused with the reason:
clip, a sequence_lens input, an initial state (h, or an LSTM's c) that is not a zero constant, a direction other than
forward or bidirectional, activations other than Tanh or Relu (RNN), Sigmoid, Tanh (GRU) or Sigmoid, Tanh, Tanh
(LSTM), activation_alpha/beta, and an LSTM's peepholes P that are not zero or input_forget=1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..cell import CellWeights
from ..cells import gru, lstm
from ..cells.gru import GRUWeights
from ..cells.lstm import LSTMWeights
from ..errors import WeightsError
from . import DeclaredInput, ImportedCell, require

_ACTIVATIONS = {"Tanh": "tanh", "Relu": "relu"}
_GRU_ACTIVATIONS = ["Sigmoid", "Tanh"]  # f (the gates) and g (the candidate), per direction: all tflrnn's GRU does
_LSTM_ACTIVATIONS = ["Sigmoid", "Tanh", "Tanh"]  # f (the gates), g (the candidate), h (the cell output), per direction
_GATES = {"RNN": 1, "GRU": gru.GATES, "LSTM": lstm.GATES}  # each op's gate blocks along W's and R's rows
def _ops() -> tuple[str, ...]:
    from ..cells import kinds

    return tuple(kind.onnx for kind in kinds().values())


OPS = _ops()  # the recurrent nodes read (each kind's ONNX op); each cell's kind follows its node's


def read_onnx(path: Path) -> ImportedCell:
    """The RNN, GRU or LSTM node as one cell (a forward node)."""
    cells, flags = read_onnx_network(path)
    if len(flags) > 1:
        raise WeightsError(f"{path} holds a chain of {len(flags)} recurrent nodes; build it whole (without --layer)")
    if flags[0]:
        raise WeightsError(f"{path} holds a bidirectional recurrent node; build it whole (without --layer)")
    return cells[0]


def read_onnx_network(path: Path) -> tuple[list[ImportedCell], list[bool]]:
    """The cells of the graph's RNN, GRU and LSTM nodes, in order (forward, then backward for a bidirectional node), and
    which nodes are bidirectional. Several nodes must form a chain, each reading the previous one's Y through the
    Squeeze (one direction) or Transpose [0,2,1,3] + Reshape (two) that torch.onnx.export writes for nn.RNN's (and
    nn.GRU's) num_layers."""
    onnx = require("onnx", "onnx")
    from onnx import numpy_helper

    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf's DecodeError and friends
        raise WeightsError(f"cannot read ONNX file {path}: {' '.join(str(exc).split())[:200] or 'not ONNX'}") from None
    graph = model.graph
    rnn_nodes = [node for node in graph.node if node.op_type in OPS]
    if not rnn_nodes:
        ops = ", ".join(sorted({node.op_type for node in graph.node})) or "none"
        raise WeightsError(f"no RNN, GRU or LSTM node in {path} (ops: {ops})")
    constants = Constants(graph, numpy_helper)
    cells, flags = [], []
    for k, node in enumerate(rnn_nodes):
        if k:
            _check_link(rnn_nodes[k - 1], node, constants, path)
        found = _node_cells(node, constants, path, onnx)
        cells += found
        flags.append(len(found) == 2)
    cells[0].declared = declared_input(graph, rnn_nodes[0], constants, onnx)
    return cells, flags


def declared_input(graph, node, constants, onnx) -> DeclaredInput | None:
    """The shape the graph declares for the first RNN node's X, when X is a graph input of rank 3, read with the
    node's layout (0: [T, B, I], time-major; 1: [B, T, I]). A dim_param or an absent dim is unknown. X may also be
    the graph input through a Transpose [1, 0, 2], as torch.onnx.export writes nn.RNN(batch_first=True): the input
    is then the other layout."""
    name, swapped = node.input[0], False
    producer = constants.producers.get(name)
    if producer is not None and producer.op_type == "Transpose" and producer.input:
        perm = next((list(a.ints) for a in producer.attribute if a.name == "perm"), None)
        if perm != [1, 0, 2]:
            return None
        name, swapped = producer.input[0], True
    initializers = {t.name for t in graph.initializer}
    value = next((v for v in graph.input if v.name == name and v.name not in initializers), None)
    if value is None or not value.type.HasField("tensor_type") or not value.type.tensor_type.HasField("shape"):
        return None
    dims = value.type.tensor_type.shape.dim
    if len(dims) != 3:
        return None
    known = [d.dim_value if d.HasField("dim_value") and d.dim_value >= 1 else None for d in dims]
    layout = next((onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == "layout"), 0)
    time_major = (layout != 1) != swapped
    time, batch = (known[0], known[1]) if time_major else (known[1], known[0])
    return DeclaredInput(f"the ONNX graph input '{value.name}'", time_steps=time if time is not None else "dynamic",
                         batch_size=batch, time_major=time_major)


def _check_link(previous, node, constants, path: Path) -> None:
    """`node` must read `previous`'s Y, reshaped only as torch.onnx.export does between layers."""
    name, seen = node.input[0], []
    while name != previous.output[0]:
        producer = constants.producers.get(name)
        if len(seen) > 8:  # torch.onnx.export puts two ops between layers; a cycle or a long detour is not a chain
            producer = None
        if producer is None or producer.op_type not in ("Squeeze", "Transpose", "Reshape", "Identity"):
            raise WeightsError(f"{node.op_type} node '{node.name or node.output[0]}' in {path} does not read the "
                               f"previous {previous.op_type} node's output (through {seen or 'nothing'}, then "
                               f"{producer.op_type if producer else 'a graph input'}): not a chain")
        if producer.op_type == "Transpose":
            perm = next((list(a.ints) for a in producer.attribute if a.name == "perm"), None)
            if perm != [0, 2, 1, 3]:
                raise WeightsError(f"{node.op_type} node '{node.name or node.output[0]}' in {path} reads the "
                                   f"previous node's output transposed with perm {perm}; a chain joins directions "
                                   "with [0, 2, 1, 3]")
        seen.append(producer.op_type)
        name = producer.input[0]


def _node_cells(node, constants, path: Path, onnx) -> list[ImportedCell]:
    """The node's cells, forward then backward: what RNN, GRU and LSTM nodes share is checked here, their weights
    read by _rnn_weights, _gru_weights or _lstm_weights."""
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    where = f"{node.op_type} node '{node.name or node.output[0]}' in {path}"
    if "clip" in attrs:
        raise WeightsError(f"{where} clips its cell state (clip={attrs['clip']}); tflrnn's cells do not clip")
    direction = _text(attrs.get("direction", b"forward"))
    if direction not in ("forward", "bidirectional"):
        raise WeightsError(f"{where} runs direction '{direction}'; tflrnn builds forward and bidirectional layers")
    directions = 2 if direction == "bidirectional" else 1
    for attr in ("activation_alpha", "activation_beta"):
        if attr in attrs:
            raise WeightsError(f"{where} sets {attr}, which tflrnn's cells cannot take")

    inputs = list(node.input) + [""] * (8 - len(node.input))
    if inputs[4]:
        raise WeightsError(f"{where} takes a sequence_lens input ('{inputs[4]}'); tflrnn's models run every step")
    for index in (5, 6) if node.op_type == "LSTM" else (5,):  # initial_h, and an LSTM's initial_c
        if inputs[index] and not constants.is_zero(inputs[index]):
            raise WeightsError(f"{where} takes an initial state '{inputs[index]}' that is not a zero constant")
    if node.op_type == "LSTM":
        if inputs[7] and not constants.is_zero(inputs[7]):
            raise WeightsError(f"{where} has peephole weights P ('{inputs[7]}') that are not zero; tflrnn's LSTM has "
                               "no peepholes")
        if attrs.get("input_forget", 0):
            raise WeightsError(f"{where} couples its input and forget gates (input_forget=1); tflrnn's LSTM computes "
                               "them apart")
    gates = _GATES[node.op_type]
    w, r = constants.get(inputs[1], where, "W"), constants.get(inputs[2], where, "R")
    rows = f"{gates}*U" if gates > 1 else "U"
    if w.ndim != 3 or w.shape[0] != directions or r.ndim != 3 or r.shape[0] != directions:
        raise WeightsError(f"{where}: W {list(w.shape)} and R {list(r.shape)} should be [{directions},{rows},I] and "
                           f"[{directions},{rows},U]")
    units = r.shape[2] if gates > 1 else r.shape[1]
    b = constants.get(inputs[3], where, "B") if inputs[3] else np.zeros((directions, 2 * gates * units))
    if b.shape != (directions, 2 * gates * units):
        raise WeightsError(f"{where}: B is {list(b.shape)}, expected [{directions}, {2 * gates * units}]")
    read = {"GRU": _gru_weights, "LSTM": _lstm_weights}.get(node.op_type, _rnn_weights)
    activation, weights, details = read(attrs, directions, w, r, b, where)
    layout = "batch-major" if attrs.get("layout", 0) == 1 else "sequence-major"
    name = node.name or node.output[0]
    return [ImportedCell(weights[d], "onnx", f"{name}/{label}" if label else name, activation,
                         details=f"{node.op_type} layout {layout}{details}")
            for d, label in zip(range(directions), ("", "backward"))]


def _rnn_weights(attrs: dict, directions: int, w, r, b, where: str):
    """An RNN node's activation and each direction's CellWeights (b = Wb + Rb)."""
    activations = [_text(a) for a in attrs.get("activations", [b"Tanh"] * directions)]
    if len(set(activations)) != 1 or activations[0] not in _ACTIVATIONS:
        raise WeightsError(f"{where} uses activations {activations}; the fused op takes Tanh or Relu, one for both "
                           "directions")
    units = r.shape[1]
    weights = []
    for d in range(directions):
        bias = b[d, :units].astype(np.float64) + b[d, units:]  # input bias + recurrent bias
        try:
            weights.append(CellWeights(w[d], r[d], bias))
        except WeightsError as exc:
            raise WeightsError(f"{where}: {exc}") from None
    return _ACTIVATIONS[activations[0]], weights, ""


def _gru_weights(attrs: dict, directions: int, w, r, b, where: str):
    """A GRU node's each direction's GRUWeights: linear_before_reset says where r applies (0: ONNX's default,
    reset before, Rb folded into the bias; 1: reset after, as torch.onnx.export writes nn.GRU)."""
    activations = [_text(a) for a in attrs.get("activations", _GRU_ACTIVATIONS * directions)]
    if activations != _GRU_ACTIVATIONS * directions:
        raise WeightsError(f"{where} uses activations {activations}; tflrnn's GRU computes Sigmoid, Tanh (ONNX's "
                           "default) in each direction")
    reset_after = bool(attrs.get("linear_before_reset", 0))
    weights = []
    for d in range(directions):
        try:
            weights.append(GRUWeights.from_onnx(w[d], r[d], b[d], reset_after))
        except WeightsError as exc:
            raise WeightsError(f"{where}: {exc}") from None
    return "tanh", weights, f", linear_before_reset={int(reset_after)}"


def _lstm_weights(attrs: dict, directions: int, w, r, b, where: str):
    """An LSTM node's each direction's LSTMWeights (gates i, o, f, c reordered to i, f, g, o; B's Wb and Rb
    summed)."""
    activations = [_text(a) for a in attrs.get("activations", _LSTM_ACTIVATIONS * directions)]
    if activations != _LSTM_ACTIVATIONS * directions:
        raise WeightsError(f"{where} uses activations {activations}; tflrnn's LSTM computes Sigmoid, Tanh, Tanh "
                           "(ONNX's default) in each direction")
    weights = []
    for d in range(directions):
        try:
            weights.append(LSTMWeights.from_onnx(w[d], r[d], b[d]))
        except WeightsError as exc:
            raise WeightsError(f"{where}: {exc}") from None
    return "tanh", weights, ""


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Constants:
    """Values known without running the graph: initializers and Constant nodes, and zeros shaped by Expand,
    Tile, Reshape or ConstantOfShape (torch.onnx.export builds nn.RNN's initial state that way)."""

    def __init__(self, graph, numpy_helper):
        self.numpy_helper = numpy_helper
        self.values = {t.name: t for t in graph.initializer}
        self.producers = {out: node for node in graph.node for out in node.output}

    def proto(self, name: str):
        """The TensorProto of an initializer or a Constant node's value, as the file stores it; None otherwise."""
        if name in self.values:
            return self.values[name]
        node = self.producers.get(name)
        if node is not None and node.op_type == "Constant":
            return next((attr.t for attr in node.attribute if attr.name == "value"), None)
        return None

    def value(self, name: str):
        proto = self.proto(name)
        return None if proto is None else self.numpy_helper.to_array(proto)

    def get(self, name: str, where: str, role: str) -> np.ndarray:
        value = self.value(name)
        if value is None:
            raise WeightsError(f"{where}: {role} ('{name}') is not a constant of the graph")
        return value

    def is_zero(self, name: str, depth: int = 0) -> bool:
        value = self.value(name)
        if value is not None:
            return not np.any(value)
        node = self.producers.get(name)
        if node is None or depth > 8:
            return False
        if node.op_type == "ConstantOfShape":
            fill = next((a.t for a in node.attribute if a.name == "value"), None)
            return fill is None or not np.any(self.numpy_helper.to_array(fill))
        if node.op_type in ("Expand", "Tile", "Reshape", "Identity", "Cast", "Unsqueeze", "Squeeze", "Slice", "Gather"):
            return self.is_zero(node.input[0], depth + 1)
        return False
