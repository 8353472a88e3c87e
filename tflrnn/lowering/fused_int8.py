"""The fused lowering in full-integer int8: LSTM layers as UNIDIRECTIONAL_SEQUENCE_LSTM on its integer kernel.

TFLite's and TFLite Micro's int8 LSTM kernel ("8x8_16", docs/lstm-int8-kernel.md) takes, per layer:
    x int8 (asymmetric), each gate's W and R int8 with one symmetric scale per tensor, each gate's bias int32 at
    x's scale x that gate's W scale; h a variable int8 tensor at the output's format; c a variable int16 tensor,
    zero point 0, at a power-of-two scale; and five intermediates: the four gates' (float32, shape [0], no
    quantization: without layer norm the kernel takes their inputs at 2^-12, Q3.12) and the hidden state's (int8,
    shape [0], h's format), as TensorFlow's converter writes them. Op version 1, tanh, no clipping.
Around the LSTM ops, as the portable int8 graph writes them (lowering/int8.py): QUANTIZE after a float input,
the last step (STRIDED_SLICE), Dense layers on rows (FULLY_CONNECTED, per-channel int8 kernels), DEQUANTIZE before a
float output. The states are the op's variables, which the runtimes fill with their zero points at the start and
on reset_all_variables() (real 0 for h and c): no resource variables, no CALL_ONCE, no reset signature.
"""

from __future__ import annotations

import numpy as np

from .. import quantization as quant
from ..model import (Activation, BuiltinOperator, Operator, Quantization, Tensor,
                     UnidirectionalSequenceLSTMOptions)
from ..network import Int8Cell, Int8Dense, Int8Plan, Network
from .int8 import _Int8Graph, per_tensor, value_format

LSTM_VERSION = 1  # op_version.cc: an int8 input is version 1 (2 and 3 are hybrid)
GATES = ("input", "forget", "cell", "output")


def lower(network: Network):
    why = quant.refusal(network)
    if why:
        from ..errors import ConfigError

        raise ConfigError(why)
    return _FusedInt8Graph(network).model()


class _FusedInt8Graph(_Int8Graph):
    """The int8 graph walk with each LSTM layer as one fused op, its states in the op's variable tensors."""

    resource_state = False

    def stage_source(self, source: int, stage) -> int:
        return source  # the op takes the sequence as it is

    def write_direction(self, layer, source: int, backward: bool, suffix: str, sequence: bool):
        from .fused import LSTM_LAYER_NORM, LSTM_ROLES, last_step_slice

        name, units, w = layer.name, layer.weights.num_units, layer.weights
        cell = self.plan.layers[name]
        x_scale = float(self.tensors[source].quantization.scale[0])
        gate_scales = {role: cell.scales[role][::units] for role in ("input_weights", "recurrent_weights")}
        tensors = []
        for role in ("input_weights", "recurrent_weights"):
            for k, piece in enumerate(w.gates(w.roles()[role])):
                scale = float(gate_scales[role][k])
                tensors.append(("int8", piece, np.clip(np.rint(piece / np.float64(scale)), -127, 127), scale))
        for k, piece in enumerate(w.gates(w.bias)):
            scale = float(quant.bias_scales(x_scale, gate_scales["input_weights"][k:k + 1])[0])
            tensors.append(("int32", piece, quant.bias_int32(piece, np.full(piece.shape, scale)), scale))
        slots = [-1] * 17
        for slot, role, (dtype, piece, q, scale) in zip(LSTM_ROLES, LSTM_ROLES.values(), tensors):
            slots[slot - 1] = self.tensors.add(Tensor(f"{name}/{role}", piece.shape, dtype, data=q.astype(dtype),
                                                      quantization=Quantization((scale,), (0,))))
        h = self.tensors.add(Tensor(f"{name}/hidden_state", (self.batch, units), "int8", is_variable=True,
                                    quantization=per_tensor(cell.state)))
        c = self.tensors.add(Tensor(f"{name}/cell_state", (self.batch, units), "int16", is_variable=True,
                                    quantization=per_tensor(cell.formats["cell"])))
        intermediates = [self.tensors.add(Tensor(f"{name}/{gate}_gate_intermediate", (0,))) for gate in GATES]
        intermediates.append(self.int8(f"{name}/hidden_intermediate", (0,), cell.state))
        output = self.int8(f"{name}/output", (*self.lead, units), cell.state)
        self.operators.append(Operator(
            BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_LSTM, [source, *slots, h, c, *[-1] * len(LSTM_LAYER_NORM)],
            [output], version=LSTM_VERSION, intermediates=intermediates,
            options=UnidirectionalSequenceLSTMOptions(activation=Activation.TANH, cell_clip=layer.cell_clip,
                                                      time_major=self.time_major)))
        if sequence:
            return output, output
        begin, options = last_step_slice(self.time_major)
        self.tensors.add(Tensor(f"{name}/last_step/begin", (3,), "int32", data=np.asarray(begin, np.int32)),
                         Tensor(f"{name}/last_step/end", (3,), "int32", data=np.zeros(3, np.int32)),
                         Tensor(f"{name}/last_step/strides", (3,), "int32", data=np.ones(3, np.int32)))
        last = self.int8(f"{name}/last_step", (self.batch, units), cell.state)
        n = len(self.tensors)
        self.op(BuiltinOperator.STRIDED_SLICE, [output, n - 4, n - 3, n - 2], [last], version=2, options=options)
        return None, last


# Reading --------------------------------------------------------------------------------------------------------


def gate_values(t: Tensor) -> np.ndarray:
    """One gate's W, R (int8) or bias (int32) as the kernel computes with them: its values times its one scale
    (float32, as calibration made them); ModelFormatError for another type or quantization."""
    from ..errors import ModelFormatError

    q = t.quantization
    if t.dtype not in ("int8", "int32") or q is None or len(q.scale) != 1 or any(q.zero_point) or \
            not (np.isfinite(q.scale[0]) and q.scale[0] > 0) or t.data.ndim != (2 if t.dtype == "int8" else 1):
        raise ModelFormatError(f"tensor '{t.name}' is {t.dtype} {list(t.data.shape)}: an int8 LSTM's W and R are "
                               "int8 [U, n] (and, in full int8, its biases int32 [U]), each with one positive scale "
                               "and zero point 0")
    scales = np.full(t.data.shape[0], q.scale[0], np.float32)
    return quant.dequantized(t.data, scales) if t.dtype == "int8" else quant.dequantized_bias(t.data, scales)


def recover_plan(graph, network: Network) -> Int8Plan:
    """The int8 formats of a full-int8 fused model (`graph`, fused.find_network's view of it) for the network
    fused.recover read from its ops: the LSTM input's, each layer's h and c and its gates' scales, each Dense
    output's and kernel's."""
    from ..errors import ModelFormatError
    from .fused import dense_arrays, dense_layers

    tensors = graph.subgraph.tensors
    if not graph.subgraph.inputs or not 0 <= graph.subgraph.inputs[0] < len(tensors):
        raise ModelFormatError("the serving subgraph has no input tensor")
    signature_input = tensors[graph.subgraph.inputs[0]]
    layers = {}
    for g in graph.directions:
        units = g.input_weights.shape[0]
        scales = {role: np.repeat(np.asarray([t.quantization.scale[0] for t in g.gates[k:k + 4]], np.float32), units)
                  for role, k in (("input_weights", 0), ("recurrent_weights", 4))}
        layers[g.name] = Int8Cell({"state": value_format(g.hidden_state), "cell": value_format(g.cell_state),
                                   "gate_input": quant.LSTM_GATE_FORMAT,
                                   "gate_recurrent": quant.LSTM_GATE_FORMAT}, scales)
    dense = {}
    for (op, _), d in zip(dense_layers(graph), network.head):
        w, _ = dense_arrays(graph, op)
        dense[d.name] = Int8Dense(value_format(tensors[op.outputs[0]]), np.asarray(w.quantization.scale, np.float32))
    return Int8Plan(value_format(graph.directions[0].input), layers, dense, signature_input.dtype == "int8")
