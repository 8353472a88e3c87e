"""The fused lowering: a network as TFLite's fused RNN and LSTM ops (and a dense head), and back.

One subgraph, in this order:
- a chain of recurrent ops, one per layer, each with its own variable state(s) (the runtime zero-fills them, keeps
  them across invokes and zeroes them on reset_all_variables()):
    UNIDIRECTIONAL_SEQUENCE_RNN (35): x [B,T,I] (or [T,B,I]), W [U,I], R [U,U], b [U], h [B,U] -> [B,T,U]
    BIDIRECTIONAL_SEQUENCE_RNN (46): x, forward W/R/b/h, backward W/R/b/h, three unused aux inputs (-1)
        -> [fw | bw] on the last axis (merged), or two outputs
    UNIDIRECTIONAL_SEQUENCE_LSTM (44), for an LSTM layer: 24 inputs (lstm_shared.h), -1 where absent:
        0 x; 1-4 input-to-{input, forget, cell, output} weights [U,I]; 5-8 recurrent-to-the-same [U,U];
        9-11 peepholes (absent); 12-15 the gates' biases [U]; 16-17 projection (absent); 18 h and 19 c, both
        variables [B,U]; 20-23 layer-norm coefficients (absent) -> [B,T,U]. Options: tanh, no clipping.
    BIDIRECTIONAL_SEQUENCE_LSTM (52), for a bidirectional LSTM layer: 48 inputs, -1 where absent: 0 x; 1-17 the
        forward cell's tensors in the order above; 18-34 the backward cell's; 35-36 forward h and c, 37-38 backward
        h and c; 39-47 aux input and its weights (absent) -> merged, or two outputs (merged batch-major with a
        batch over 1 is refused: the kernel computes it wrong, see `lower`)
  (an LSTM's tensors are named <layer>/input_to_forget_weights, <layer>/forget_gate_bias, ..., as the slots are;
  its h and c <layer>/hidden_state and <layer>/cell_state)
- optionally the last step (Keras return_sequences=False): one STRIDED_SLICE per direction, the forward one at
  t=-1 and the backward one at t=0 (its final state), joined by a CONCATENATION;
- optionally a dense head (Keras Dense layers): FULLY_CONNECTED each, with relu / relu6 fused and tanh, sigmoid
  and softmax as ops of their own (FULLY_CONNECTED's float kernel refuses a fused tanh).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..cell import CellWeights, dequantize
from ..cells import kind_of
from ..cells.lstm import GATE_NAMES, LSTMWeights
from ..errors import ConfigError, ModelFormatError, WeightsError
from ..model import (
    Activation,
    BidirectionalSequenceLSTMOptions,
    BidirectionalSequenceRNNOptions,
    BuiltinOperator,
    ConcatenationOptions,
    Model,
    Operator,
    Quantization,
    SequenceRNNOptions,
    Signature,
    StridedSliceOptions,
    Subgraph,
    Tensor,
    UnidirectionalSequenceLSTMOptions,
    op_name,
)
from ..network import Dense, Layer, Network, base_name, stage_layers
from .common import (DENSE_FOLLOWERS, SIGNATURE_INPUT, SIGNATURE_KEY, SIGNATURE_OUTPUT, Tensors,
                     sequence_tensor, time_layout, weight_tensors, write_dense_head)

INPUT = 0
LSTM_CODES = (BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_LSTM, BuiltinOperator.BIDIRECTIONAL_SEQUENCE_LSTM)
BIDIRECTIONAL_CODES = (BuiltinOperator.BIDIRECTIONAL_SEQUENCE_RNN, BuiltinOperator.BIDIRECTIONAL_SEQUENCE_LSTM)
RNN_CODES = (BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_RNN, BuiltinOperator.BIDIRECTIONAL_SEQUENCE_RNN, *LSTM_CODES)
# An LSTM cell's slots among the op's inputs, from its first (1 in either op; 18 for a bidirectional op's backward
# cell), and the role each holds, as lstm_shared.h names them: the tensor of that slot is <layer>/<role>.
LSTM_ROLES = {
    **{1 + k: f"input_to_{gate}_weights" for k, gate in enumerate(GATE_NAMES)},
    **{5 + k: f"recurrent_to_{gate}_weights" for k, gate in enumerate(GATE_NAMES)},
    **{12 + k: f"{gate}_gate_bias" for k, gate in enumerate(GATE_NAMES)},
}
LSTM_ABSENT = (9, 10, 11, 16, 17)  # peepholes, projection weights and bias (from the cell's first slot, as above)
LSTM_INPUTS = 24  # UNIDIRECTIONAL_SEQUENCE_LSTM: x, the cell's 17, h, c, four layer-norm coefficients
LSTM_STATES = (18, 19)  # its h and c
LSTM_LAYER_NORM = (20, 21, 22, 23)  # absent
BIDIRECTIONAL_LSTM_INPUTS = 48
BIDIRECTIONAL_LSTM_STATES = ((35, 36), (37, 38))  # forward h and c, backward h and c
BIDIRECTIONAL_LSTM_AUX = tuple(range(39, 48))  # aux input and its forward and backward weights: absent
INT8_HEAD_CODES = (BuiltinOperator.RESHAPE, BuiltinOperator.DEQUANTIZE)  # a full-int8 head's rows, a float output
HEAD_CODES = (BuiltinOperator.STRIDED_SLICE, BuiltinOperator.CONCATENATION, BuiltinOperator.FULLY_CONNECTED,
              *DENSE_FOLLOWERS)


def is_ours(graph: Subgraph, op: Operator) -> bool:
    """Whether `op` is a recurrent op this lowering reads: a fused RNN op, or an LSTM op whose input weights carry
    the names tflrnn gives them (<layer>/input_to_forget_weights, ...). TensorFlow's converter also writes
    UNIDIRECTIONAL_SEQUENCE_LSTM, for a Keras LSTM, under its own names: such a model is another tool's, which
    `verify --against` compares with its source."""
    if op.code not in RNN_CODES:
        return False
    if op.code not in LSTM_CODES:
        return True
    weights = {role for slot, role in LSTM_ROLES.items() if slot <= 4}
    return any(0 <= i < len(graph.tensors) and graph.tensors[i].name.rpartition("/")[2] in weights
               for i in op.inputs[1:5])


def last_step_slice(time_major: bool, backward: bool = False) -> tuple[list[int], StridedSliceOptions]:
    """STRIDED_SLICE begin and options taking one time step and dropping the time axis, for any length: begin -1
    (the last step; 0 for a backward direction, whose final state is its output at t=0) on the time axis with
    shrink_axis_mask; the other axes are whole through begin/end masks."""
    time_axis = 0 if time_major else 1
    begin = [0, 0, 0]
    begin[time_axis] = 0 if backward else -1
    whole = 0b111 & ~(1 << time_axis)
    return begin, StridedSliceOptions(begin_mask=whole, end_mask=whole, shrink_axis_mask=1 << time_axis)


def lstm_weight_tensors(layer: Layer) -> list[Tensor]:
    """An LSTM layer's 12 weight tensors in slot order (LSTM_ROLES): each gate's rows of W, of R, then of b, named
    <layer>/input_to_input_weights ... <layer>/output_gate_bias."""
    w = layer.weights
    if layer.int8 is None:
        pieces = [(piece, None) for role in ("input_weights", "recurrent_weights", "bias")
                  for piece in w.gates(w.roles()[role])]
    else:  # hybrid: each gate's W and R int8 with its own scale, the biases float
        pieces = [(q, Quantization((float(scale),), (0,))) for q_all, scales in layer.int8
                  for q, scale in zip(w.gates(q_all), scales)] + [(piece, None) for piece in w.gates(w.bias)]
    return [Tensor(f"{layer.name}/{role}", piece.shape, str(piece.dtype), data=piece, quantization=q)
            for role, (piece, q) in zip(LSTM_ROLES.values(), pieces)]


def lower(network: Network) -> Model:
    """The network as a chain of recurrent ops (UNIDIRECTIONAL_SEQUENCE_RNN / _LSTM for a Layer, BIDIRECTIONAL_
    SEQUENCE_RNN / _LSTM for a (forward, backward) pair), each with its own variable state(s); each op's output is
    the next one's input, a bidirectional one's merged as [fw | bw] unless it is the last and `merge` is off. Then
    the last step and the Dense layers. With `dynamic_time`, the sequences' time axis is -1 in shape_signature; the
    batch stays fixed, because each state is a [B,U] variable. No metadata: `build` adds it."""
    if network.int8 is not None:
        from . import fused_int8

        return fused_int8.lower(network)
    if network.state != "carry":
        raise ConfigError(f"state {network.state!r} needs the portable lowering: the fused op keeps each state in a "
                          "variable tensor of the model, carried across invokes")
    unfused = next((layer for layer in network.layers if not kind_of(layer.weights).fused), None)
    if unfused is not None:
        raise ConfigError(f"layer '{unfused.name}' is a {unfused.kind.upper()}: TFLite has no fused op for it; "
                          "--lowering portable writes it")
    stages, time_steps, batch_size = network.stages, network.time_steps, network.batch_size
    time_major, last_step, merge, head = network.time_major, network.last_step, network.merge, network.head
    lead, dynamic = time_layout(time_steps, batch_size, time_major, network.dynamic_time)
    first = stages[0][0] if isinstance(stages[0], tuple) else stages[0]
    tensors = Tensors()
    previous = tensors.add(sequence_tensor(f"{base_name(stages[0])}/input", lead, first.weights.input_size, dynamic))
    variables: dict[str, list[int]] = {}  # layer name -> its weight tensors' indices (W, R, b; an LSTM's 12)
    operators = []

    def layer_inputs(layer: Layer, suffix: str) -> list[int]:
        """A basic cell's W, R, b and h."""
        if layer.name not in variables:
            start = len(tensors)
            tensors.add(*weight_tensors(layer))
            variables[layer.name] = [start, start + 1, start + 2]
        state = tensors.add(Tensor(f"{layer.name}/hidden_state{suffix}", (batch_size, layer.weights.num_units),
                                   is_variable=True))
        return [*variables[layer.name], state]

    def lstm_inputs(layer: Layer, suffix: str) -> tuple[list[int], list[int]]:
        """An LSTM cell's 17 slots (1-17 of UNIDIRECTIONAL_SEQUENCE_LSTM, -1 where absent) and its h and c."""
        if layer.name not in variables:
            variables[layer.name] = [tensors.add(tensor) for tensor in lstm_weight_tensors(layer)]
        slots = [-1] * 17
        for slot, index in zip(LSTM_ROLES, variables[layer.name]):
            slots[slot - 1] = index
        units = layer.weights.num_units
        states = [tensors.add(Tensor(f"{layer.name}/{what}{suffix}", (batch_size, units), is_variable=True))
                  for what in ("hidden_state", "cell_state")]
        return slots, states

    def lstm_options(layer: Layer) -> dict:
        # Keras and PyTorch never clip: cell_clip 0 (none) unless the cell asks (TF1's cell_clip); no projection, so
        # proj_clip 0; tanh for the candidate and the cell output.
        return {"activation": layer.activation, "cell_clip": layer.cell_clip, "proj_clip": 0.0,
                "time_major": time_major, "asymmetric_quantize_inputs": layer.asymmetric_inputs}

    ends: list[int] = []  # the final op's outputs
    for k, stage in enumerate(stages):
        if isinstance(stage, tuple):
            forward, backward = stage
            lstm = forward.kind == "lstm"
            if lstm:
                (fw_slots, fw_states), (bw_slots, bw_states) = lstm_inputs(forward, ""), lstm_inputs(backward, "")
            else:
                slots = layer_inputs(forward, "") + layer_inputs(backward, "")
            separate = k == len(stages) - 1 and (last_step or not merge)
            if lstm and not separate and not time_major and batch_size > 1:
                raise ConfigError(
                    f"bidirectional LSTM '{base_name(stage)}': TFLite's BIDIRECTIONAL_SEQUENCE_LSTM computes a "
                    "batch-major merged output wrong for every example after the first (lstm_eval.cc offsets each "
                    "example's h by the merged output's width: activation_state + b * output_batch_leading_dim; "
                    "LiteRT and tf.lite both fail verify): build it --time-major, with --batch-size 1, with "
                    "--merge none as the last layer, or --lowering portable")
            if separate:
                ends = [tensors.add(sequence_tensor(f"{layer.name}/output", lead, layer.weights.num_units, dynamic))
                        for layer in stage]
            else:
                width = forward.weights.num_units + backward.weights.num_units
                ends = [tensors.add(sequence_tensor(f"{base_name(stage)}/output", lead, width, dynamic))]
            if lstm:
                operators.append(Operator(
                    BuiltinOperator.BIDIRECTIONAL_SEQUENCE_LSTM,
                    [previous, *fw_slots, *bw_slots, *fw_states, *bw_states, *[-1] * len(BIDIRECTIONAL_LSTM_AUX)],
                    list(ends), version=forward.op_version,
                    options=BidirectionalSequenceLSTMOptions(merge_outputs=not separate, **lstm_options(forward)),
                ))
            else:
                operators.append(Operator(
                    BuiltinOperator.BIDIRECTIONAL_SEQUENCE_RNN, [previous, *slots, -1, -1, -1], list(ends),
                    version=forward.op_version,
                    options=BidirectionalSequenceRNNOptions(time_major=time_major, activation=forward.activation,
                                                            merge_outputs=not separate,
                                                            asymmetric_quantize_inputs=forward.asymmetric_inputs),
                ))
        else:
            suffix = f"_{k}" if stage.name in variables else ""  # a reused cell: new state and output, same variables
            if stage.kind == "lstm":
                slots, states = lstm_inputs(stage, suffix)
                inputs = [previous, *slots, *states, *[-1] * len(LSTM_LAYER_NORM)]
            else:
                inputs = [previous, *layer_inputs(stage, suffix)]
            ends = [tensors.add(sequence_tensor(f"{stage.name}/output{suffix}", lead, stage.weights.num_units, dynamic))]
            if stage.kind == "lstm":
                operators.append(Operator(
                    BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_LSTM, inputs, list(ends), version=stage.op_version,
                    options=UnidirectionalSequenceLSTMOptions(**lstm_options(stage)),
                ))
            else:
                operators.append(Operator(
                    BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_RNN, inputs, list(ends),
                    version=stage.op_version,
                    options=SequenceRNNOptions(time_major=time_major, activation=stage.activation,
                                               asymmetric_quantize_inputs=stage.asymmetric_inputs),
                ))
        previous = ends[0]

    if last_step:
        final = stages[-1]
        layers = final if isinstance(final, tuple) else (final,)
        steps = []
        for direction, (layer, sequence) in enumerate(zip(layers, ends)):
            begin, options = last_step_slice(time_major, backward=direction == 1)
            name = f"{layer.name}/last_step"
            tensors.add(Tensor(f"{name}/begin", (3,), "int32", data=np.asarray(begin, dtype=np.int32)),
                        Tensor(f"{name}/end", (3,), "int32", data=np.zeros(3, dtype=np.int32)),
                        Tensor(f"{name}/strides", (3,), "int32", data=np.ones(3, dtype=np.int32)))
            out = tensors.add(Tensor(name, (batch_size, layer.weights.num_units)))
            operators.append(Operator(BuiltinOperator.STRIDED_SLICE, [sequence, out - 3, out - 2, out - 1], [out],
                                      options=options))
            steps.append(out)
        ends = steps
        if len(steps) == 2 and merge:
            width = sum(layer.weights.num_units for layer in layers)
            out = tensors.add(Tensor(f"{base_name(final)}/last_step", (batch_size, width)))
            operators.append(Operator(BuiltinOperator.CONCATENATION, steps, [out],
                                      options=ConcatenationOptions(axis=-1)))
            ends = [out]

    ends = write_dense_head(tensors, operators, head, ends)

    if len(ends) == 1:
        named = {SIGNATURE_OUTPUT: ends[0]}
    else:
        named = {f"{SIGNATURE_OUTPUT}_fw": ends[0], f"{SIGNATURE_OUTPUT}_bw": ends[1]}
    return Model(
        subgraphs=[Subgraph(tensors=list(tensors), operators=operators, inputs=[INPUT], outputs=list(ends))],
        signatures=[Signature(SIGNATURE_KEY, {SIGNATURE_INPUT: INPUT}, named)],
    )


# Reading --------------------------------------------------------------------------------------------------------


@dataclass
class RNNGraph:
    """One direction of an RNN op of a model we read, with its tensors resolved. For a bidirectional op with a
    merged output, `output` is the merged tensor and `columns` this direction's part of its last axis."""

    model: Model
    subgraph: Subgraph
    operator: Operator
    input: Tensor
    input_weights: Tensor
    recurrent_weights: Tensor
    bias: Tensor
    hidden_state: Tensor
    output: Tensor
    output_index: int = -1
    direction: str = ""  # "" for a unidirectional op, else "fw" or "bw"
    columns: tuple[int, int] | None = None

    @property
    def options(self) -> SequenceRNNOptions:
        options = self.operator.options
        if isinstance(options, (SequenceRNNOptions, BidirectionalSequenceRNNOptions)):
            return options
        return SequenceRNNOptions(activation=Activation.NONE)  # the runtime's default (the options check fails)

    @property
    def time_major(self) -> bool:
        return bool(self.options.time_major)

    @property
    def cell_clip(self) -> float:
        """The op's clip of an LSTM's c (0: none; an RNN op has none)."""
        return float(getattr(self.options, "cell_clip", 0.0))

    @property
    def hybrid(self) -> bool:
        return self.input_weights.dtype == "int8" and not self.full_int8

    full_int8 = False  # (the basic cell's fused op has no integer kernel; an LSTM's has, below)

    @property
    def backward(self) -> bool:
        return self.direction == "bw"

    @property
    def name(self) -> str | None:
        """The cell name its tensors are named under (<name>/input_weights)."""
        return self.input_weights.name.rpartition("/")[0] or None

    kind = "rnn"  # the cell kind the op runs (cells/)

    @property
    def weight_tensors(self) -> tuple[Tensor, ...]:
        """The tensors its weights are read from, in slot order."""
        return self.input_weights, self.recurrent_weights, self.bias

    @property
    def states(self) -> tuple[Tensor, ...]:
        """Its variable state tensor(s)."""
        return (self.hidden_state,)

    def weights(self) -> CellWeights:
        """The weights the op computes with (int8 weights dequantized); ModelFormatError when unusable."""
        arrays = []
        for tensor in (self.input_weights, self.recurrent_weights, self.bias):
            if tensor.data is None:
                raise ModelFormatError(f"tensor '{tensor.name}' holds no data")
            if tensor.dtype == "int8" and tensor is not self.bias:
                q = tensor.quantization
                if q is None or len(q.scale) != 1 or any(q.zero_point):
                    raise ModelFormatError(f"int8 tensor '{tensor.name}' needs one scale and a zero point of 0")
                arrays.append(dequantize(tensor.data, q.scale[0]))
            elif tensor.dtype != "float32":
                raise ModelFormatError(f"tensor '{tensor.name}' is {tensor.dtype}; float32 or int8 weights are read")
            else:
                arrays.append(tensor.data)
        try:
            return CellWeights(*arrays)
        except WeightsError as exc:  # inconsistent shapes or non-finite values in the file
            raise ModelFormatError(f"weights in the model are unusable: {exc}") from exc


@dataclass
class LSTMGraph(RNNGraph):
    """One direction of an LSTM op: `gates` its 12 weight tensors in slot order (LSTM_ROLES: each gate's W, then
    each one's R, then each one's bias), `hidden_state` (h) and `cell_state` (c) its variables. `input_weights`,
    `recurrent_weights` and `bias` are the input gate's [U,I], [U,U] and [U] (sizes, names and types read as a basic
    cell's); `slots` the op's input indices of this direction's 17 cell slots, `absent` those of the inputs tflrnn
    leaves out (peepholes, projection, layer norm / aux), which must be -1."""

    gates: tuple[Tensor, ...] = ()
    cell_state: Tensor | None = None
    slots: tuple[int, ...] = ()
    absent: tuple[int, ...] = ()

    kind = "lstm"

    @property
    def full_int8(self) -> bool:
        """Every value in int8 (the input too): the integer LSTM kernel's (lowering/fused_int8.py)."""
        return self.input.dtype == "int8"

    @property
    def options(self):
        options = self.operator.options
        if isinstance(options, (UnidirectionalSequenceLSTMOptions, BidirectionalSequenceLSTMOptions)):
            return options
        return UnidirectionalSequenceLSTMOptions(activation=Activation.NONE)  # the runtime's default

    @property
    def weight_tensors(self) -> tuple[Tensor, ...]:
        return self.gates

    @property
    def states(self) -> tuple[Tensor, ...]:
        return self.hidden_state, self.cell_state

    @property
    def hybrid(self) -> bool:
        return any(t.dtype == "int8" for t in self.gates[:8]) and not self.full_int8

    def weights(self) -> LSTMWeights:
        """The gates joined into LSTMWeights (i, f, g, o), in full int8 their dequantized values; ModelFormatError
        when unusable."""
        from .fused_int8 import gate_values

        arrays = []
        for k, tensor in enumerate(self.gates):
            if tensor.data is None:
                raise ModelFormatError(f"tensor '{tensor.name}' holds no data")
            if self.full_int8 or (self.hybrid and tensor.dtype == "int8" and k < 8):
                arrays.append(gate_values(tensor))
            elif tensor.dtype != "float32":
                raise ModelFormatError(f"tensor '{tensor.name}' is {tensor.dtype}; a fused LSTM's weights are read "
                                       "in float32, int8 W and R with float biases (hybrid), or all in int8 with an "
                                       "int8 input")
            else:
                arrays.append(tensor.data)
        try:
            return LSTMWeights(*(np.concatenate(arrays[k:k + 4]) for k in (0, 4, 8)))
        except (WeightsError, ValueError) as exc:  # inconsistent shapes or non-finite values in the file
            raise ModelFormatError(f"weights in the model are unusable: {exc}") from exc


@dataclass
class FusedGraph:
    """A model as the fused lowering reads it: its RNN ops in chain order, each direction of them (with their
    tensors), and the ops after them. The verifier checks the model through this view."""

    model: Model
    subgraph: Subgraph
    rnn_ops: list[Operator]
    directions: list[RNNGraph]
    head: list[Operator]
    edge: list[Operator] = field(default_factory=list)  # a full-int8 model's QUANTIZE of its float input

    @property
    def full_int8(self) -> bool:
        return self.directions[0].full_int8

    @property
    def bidirectional(self) -> bool:
        return any(op.code in BIDIRECTIONAL_CODES for op in self.rnn_ops)

    @property
    def sequence_outputs(self) -> list[int]:
        """The final RNN op's outputs."""
        return list(self.rnn_ops[-1].outputs)

    def directions_of(self, op: Operator) -> list[RNNGraph]:
        return [g for g in self.directions if g.operator is op]

    def tensor(self, index: int) -> Tensor:
        return self.subgraph.tensors[index]


def find_network(model: Model) -> FusedGraph:
    """The model's recurrent ops and what follows them; ModelFormatError when there is none, one is malformed, they
    do not form a chain (each op's output feeding the next op's input), or other ops are mixed in."""
    graphs = [g for g in model.subgraphs if any(op.code in RNN_CODES for op in g.operators)]
    if not graphs:
        raise ModelFormatError("the model has no UNIDIRECTIONAL_SEQUENCE_RNN op (nor a BIDIRECTIONAL_SEQUENCE_RNN, "
                               "UNIDIRECTIONAL_SEQUENCE_LSTM or BIDIRECTIONAL_SEQUENCE_LSTM)")
    if len(graphs) > 1:
        raise ModelFormatError(f"RNN ops in {len(graphs)} subgraphs; tflrnn verifies one")
    graph = graphs[0]
    # A full-int8 model's float input is QUANTIZEd first (lowering/fused_int8.py)
    start = next((k for k, op in enumerate(graph.operators) if op.code != BuiltinOperator.QUANTIZE),
                 len(graph.operators))
    count = next((k for k, op in enumerate(graph.operators) if k >= start and op.code not in RNN_CODES),
                 len(graph.operators))
    edge, rnn_ops, head = graph.operators[:start], graph.operators[start:count], graph.operators[count:]
    int8 = bool(rnn_ops) and bool(rnn_ops[0].inputs) and 0 <= rnn_ops[0].inputs[0] < len(graph.tensors) and \
        graph.tensors[rnn_ops[0].inputs[0]].dtype == "int8"
    if not rnn_ops or len(edge) > 1 or (edge and not int8):
        raise ModelFormatError("the model's ops do not start with its RNN op (or, in full int8, the QUANTIZE of its "
                               "input)")
    unexpected = sorted({op.code for op in head if op.code not in HEAD_CODES and
                         not (int8 and op.code in INT8_HEAD_CODES)})
    if unexpected:
        raise ModelFormatError(
            f"the RNN subgraph also has ops with codes {unexpected}; tflrnn verifies a chain of RNN ops, then "
            "optionally the last step and a dense head"
        )
    directions = []
    n = len(graph.tensors)
    for k, op in enumerate(rnn_ops):
        if op.code in LSTM_CODES:
            found = _lstm_directions(model, graph, op, k)
            _check_chain(rnn_ops, k)
            directions += found
            continue
        name = op_name(op.code)
        bidirectional = op.code == BuiltinOperator.BIDIRECTIONAL_SEQUENCE_RNN
        inputs, outputs = (12, (1, 2)) if bidirectional else (5, (1,))
        if len(op.inputs) != inputs or len(op.outputs) not in outputs:
            raise ModelFormatError(f"{name} {k} has {len(op.inputs)} inputs and {len(op.outputs)} outputs; expected "
                                   f"{inputs} and {' or '.join(map(str, outputs))}")
        used = [*op.inputs[:9 if bidirectional else 5], *op.outputs]
        if any(not 0 <= i < n for i in used):
            raise ModelFormatError(f"{name} {k} names tensors {used} of {n}")
        t = graph.tensors
        if not bidirectional:
            directions.append(RNNGraph(model, graph, op, *(t[i] for i in used), output_index=op.outputs[0]))
            continue
        units = [t[i].shape[0] if len(t[i].shape) == 2 else 0 for i in (op.inputs[1], op.inputs[5])]
        merged = len(op.outputs) == 1
        for d, (direction, slots) in enumerate((("fw", op.inputs[1:5]), ("bw", op.inputs[5:9]))):
            out = op.outputs[0] if merged else op.outputs[d]
            columns = ((0, units[0]) if d == 0 else (units[0], units[0] + units[1])) if merged else None
            directions.append(RNNGraph(model, graph, op, t[op.inputs[0]], *(t[i] for i in slots), t[out],
                                       output_index=out, direction=direction, columns=columns))
    for op in head:
        if not op.outputs or any(not -1 <= i < n for i in op.inputs) or any(not 0 <= i < n for i in op.outputs):
            raise ModelFormatError(f"{op_name(op.code)} names tensors {op.inputs} -> {op.outputs} "
                                   f"of {n}")
    return FusedGraph(model, graph, rnn_ops, directions, head, edge)


def _check_chain(rnn_ops: list[Operator], k: int) -> None:
    if k:
        before = rnn_ops[k - 1]
        if rnn_ops[k].inputs[0] != before.outputs[0] or len(before.outputs) != 1:
            raise ModelFormatError(f"RNN op {k} does not take op {k - 1}'s (single) output: not a chain")


def _lstm_directions(model: Model, graph: Subgraph, op: Operator, k: int) -> list[LSTMGraph]:
    """The direction(s) of an LSTM op: every slot tflrnn fills must name a tensor (a CIFG LSTM, without the input
    gate, is not read); the others may name one (the structure check says they must not)."""
    name = op_name(op.code)
    bidirectional = op.code == BuiltinOperator.BIDIRECTIONAL_SEQUENCE_LSTM
    inputs, outputs = (BIDIRECTIONAL_LSTM_INPUTS, (1, 2)) if bidirectional else (LSTM_INPUTS, (1,))
    if len(op.inputs) != inputs or len(op.outputs) not in outputs:
        raise ModelFormatError(f"{name} {k} has {len(op.inputs)} inputs and {len(op.outputs)} outputs; expected "
                               f"{inputs} and {' or '.join(map(str, outputs))}")
    n, t = len(graph.tensors), graph.tensors
    cells = [(1, LSTM_STATES)] if not bidirectional else [(1, BIDIRECTIONAL_LSTM_STATES[0]),
                                                          (18, BIDIRECTIONAL_LSTM_STATES[1])]
    required = [0, *(first - 1 + slot for first, _ in cells for slot in LSTM_ROLES),
                *(i for _, states in cells for i in states)]
    used = [op.inputs[i] for i in required] + list(op.outputs)
    if any(not 0 <= i < n for i in used):
        missing = [i for i in required if not 0 <= op.inputs[i] < n]
        raise ModelFormatError(f"{name} {k} names tensors {used} of {n}"
                               + (f" (inputs {missing} must be present: tflrnn reads an LSTM with every gate, "
                                  "without peepholes or projection)" if missing else ""))
    if any(not -1 <= i < n for i in op.inputs):
        raise ModelFormatError(f"{name} {k} names tensors {op.inputs} of {n}")
    absent = LSTM_LAYER_NORM if not bidirectional else BIDIRECTIONAL_LSTM_AUX
    if bidirectional:
        units = [t[op.inputs[first]].shape[0] if len(t[op.inputs[first]].shape) == 2 else 0 for first, _ in cells]
    merged = len(op.outputs) == 1
    found = []
    for d, (first, (h, c)) in enumerate(cells):
        slots = tuple(op.inputs[first:first + 17])
        out = op.outputs[0] if merged else op.outputs[d]
        columns = None
        if bidirectional and merged:
            columns = (0, units[0]) if d == 0 else (units[0], units[0] + units[1])
        gates = tuple(t[op.inputs[first - 1 + slot]] for slot in LSTM_ROLES)
        found.append(LSTMGraph(
            model, graph, op, t[op.inputs[0]], gates[0], gates[4], gates[8], t[op.inputs[h]], t[out],
            output_index=out, direction=("fw", "bw")[d] if bidirectional else "", columns=columns, gates=gates,
            cell_state=t[op.inputs[c]], slots=slots,
            absent=tuple(op.inputs[first - 1 + i] for i in LSTM_ABSENT) + tuple(op.inputs[i] for i in absent)))
    return found


def dense_layers(network: FusedGraph) -> list[tuple[Operator, Operator | None]]:
    """Each FULLY_CONNECTED of the head with the activation op that follows it, if any."""
    found = []
    for k, op in enumerate(network.head):
        if op.code == BuiltinOperator.FULLY_CONNECTED:
            following = network.head[k + 1] if k + 1 < len(network.head) else None
            found.append((op, following if following is not None and following.code in DENSE_FOLLOWERS else None))
    return found


def dense_arrays(network: FusedGraph, op: Operator) -> tuple[Tensor, Tensor]:
    """A FULLY_CONNECTED's kernel and bias tensors, both constant; ModelFormatError when it has no such inputs."""
    tensors = network.subgraph.tensors
    if len(op.inputs) != 3 or any(not 0 <= i < len(tensors) for i in op.inputs[1:]):
        raise ModelFormatError(f"FULLY_CONNECTED has inputs {op.inputs}; expected input, kernel and bias")
    w, b = (tensors[i] for i in op.inputs[1:])
    if w.data is None or b.data is None:
        raise ModelFormatError(f"FULLY_CONNECTED '{w.name}': its kernel and bias must be constants")
    return w, b


def dense_activation(op: Operator, following: Operator | None) -> str:
    """The Keras activation a FULLY_CONNECTED (and the op after it) computes: its fused one, or the follower's."""
    if following is not None:
        return DENSE_FOLLOWERS[following.code]
    from ..cell import ACTIVATION_NAMES

    activation = getattr(op.options, "activation", None)
    return ACTIVATION_NAMES.get(activation, f"activation {activation}")


def recover(model: Model) -> Network:
    """The network a model of this lowering holds; ModelFormatError when the model is not one (read it with
    `find_network` for the reasons). The inverse of `lower`: recover(lower(n)) == n."""
    graph = find_network(model)
    first = graph.directions[0]
    x = first.input
    time_axis = 0 if first.time_major else 1
    if len(x.shape) != 3:  # a model read from a file may say anything
        raise ModelFormatError(f"the first RNN op's input is {list(x.shape)}, not a [B,T,I] or [T,B,I] sequence")
    signature = x.shape_signature
    stages, layers = [], {}
    for op in graph.rnn_ops:
        found = tuple(_layer(g, layers) for g in graph.directions_of(op))
        stages.append(found if len(found) == 2 else found[0])
    slices = [op for op in graph.head if op.code == BuiltinOperator.STRIDED_SLICE]
    # A final bidirectional layer's two directions come out joined (one output, or the last-step slices concatenated)
    # or apart; any other network is "merged" by default.
    merge = not isinstance(stages[-1], tuple) or (
        any(op.code == BuiltinOperator.CONCATENATION for op in graph.head) if slices
        else len(graph.rnn_ops[-1].outputs) == 1)
    head = []
    for op, following in dense_layers(graph):
        w, b = dense_arrays(graph, op)
        kernel, bias = (w.data, b.data) if not graph.full_int8 else dense_values(w, b)
        head.append(Dense(w.name.rpartition("/")[0], kernel, bias, dense_activation(op, following)))
    network = Network(stages, time_steps=x.shape[time_axis], batch_size=x.shape[1 - time_axis],
                      time_major=first.time_major, dynamic_time=signature is not None and signature[time_axis] == -1,
                      last_step=bool(slices), merge=merge, head=head)
    if graph.full_int8:
        from .fused_int8 import recover_plan

        network.int8 = recover_plan(graph, network)
    return network


def dense_values(w: Tensor, b: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """A full-int8 Dense layer's kernel and bias as the kernel computes with them (dequantized per channel)."""
    from .int8 import real_values

    kernel, bias = real_values(w), real_values(b)
    if kernel is None or bias is None:
        raise ModelFormatError(f"FULLY_CONNECTED '{w.name}': an int8 kernel per channel and an int32 bias expected")
    return kernel, bias


def _layer(g: RNNGraph, seen: dict) -> Layer:
    """One direction as a Layer; directions reading the same variables (a reused cell) give equal Layers."""
    key = tuple(t.name for t in g.weight_tensors)
    if key not in seen:
        if g.kind == "lstm":
            _check_lstm(g)
        int8 = None
        if g.hybrid and g.kind == "lstm":
            if any(t.dtype != "int8" or t.quantization is None or len(t.quantization.scale) != 1 or t.data is None
                   or t.data.ndim != 2 for t in g.gates[:8]):
                raise ModelFormatError(f"'{g.name}': a hybrid LSTM's W and R are int8 matrices of one scale each")
            int8 = tuple((np.concatenate([t.data for t in g.gates[k:k + 4]]),
                          np.asarray([t.quantization.scale[0] for t in g.gates[k:k + 4]], np.float64)) for k in (0, 4))
        elif g.hybrid:
            if any(t.quantization is None or not t.quantization.scale for t in (g.input_weights, g.recurrent_weights)):
                raise ModelFormatError(f"'{g.name}': int8 weights without a scale")
            int8 = tuple((t.data, t.quantization.scale[0]) for t in (g.input_weights, g.recurrent_weights))
        activation = g.options.activation
        if activation not in Activation._value2member_map_:
            raise ModelFormatError(f"'{g.name}' has fused activation {activation}, which no RNN kernel applies")
        seen[key] = Layer(g.name, Activation(activation), g.weights(), int8,
                          bool(g.options.asymmetric_quantize_inputs), g.cell_clip)
    return seen[key]


def _check_lstm(g: LSTMGraph) -> None:
    """ModelFormatError for an LSTM op computing something else than the LSTM tflrnn writes (tanh, no clipping, no
    peepholes, projection or layer norm, each gate's tensors in their slots)."""
    options = g.options
    problems = []
    if options.activation != Activation.TANH:
        problems.append(f"fused activation {options.activation} (tflrnn's LSTM applies tanh)")
    if not (np.isfinite(options.cell_clip) and options.cell_clip >= 0) or options.proj_clip:
        problems.append(f"cell_clip {options.cell_clip}, proj_clip {options.proj_clip} (tflrnn's LSTM clips c by a "
                        "finite cell_clip >= 0, 0 for none, and has no projection to clip: proj_clip 0)")
    if getattr(options, "diagonal_recurrent_tensors", False):
        problems.append("diagonal_recurrent_tensors set")
    if any(i != -1 for i in g.absent):
        problems.append("peephole, projection, layer-norm or aux inputs present")
    misplaced = [t.name for t, role in zip(g.gates, LSTM_ROLES.values()) if t.name != f"{g.name}/{role}"]
    if misplaced:
        problems.append(f"tensors {misplaced} are not in the slots their names say")
    if problems:
        raise ModelFormatError(f"LSTM op of '{g.name}' is not one tflrnn writes: {'; '.join(problems)}")


def exported_weights(description: Model) -> tuple[list, list]:
    """What `tflrnn weights` writes of a fused model: its tensors as they are (a broken activation does not stop the
    weights coming out), each direction's (name, weights) and each Dense layer's (kernel name, bias name, kernel,
    bias)."""
    network = find_network(description)
    layers = [(g.name, g.weights()) for g in network.directions]
    dense = [(w.name, b.name, *((w.data, b.data) if not network.full_int8 else dense_values(w, b)))
             for w, b in (dense_arrays(network, op) for op, _ in dense_layers(network))]
    return layers, dense


def ops_of(network: Network) -> str:
    """The fused ops a network becomes, in order of appearance (a summary's words)."""
    return " + ".join(dict.fromkeys(
        ("BIDIRECTIONAL_SEQUENCE_" if isinstance(stage, tuple) else "UNIDIRECTIONAL_SEQUENCE_")
        + ("LSTM" if stage_layers(stage)[0].kind == "lstm" else "RNN") for stage in network.stages))


def runtimes_for(model: Model) -> tuple[str, ...]:
    """The runtimes with kernels for every recurrent op of a fused model (`verify --runtime all`): LiteRT and
    tf.lite run them all; TFLite Micro runs UNIDIRECTIONAL_SEQUENCE_LSTM (float) but no fused RNN op nor the
    bidirectional LSTM; the CompiledModel API takes no variable tensor."""
    ops = [(graph, op) for graph in model.subgraphs for op in graph.operators if op.code in RNN_CODES]
    codes = {op.code for _, op in ops}
    # TFLite Micro's LSTM kernel: float, or integer with an int8 input; not hybrid (float input, int8 weights)
    def int8(slot: slice) -> bool:  # (a slot a malformed op lacks, or out of range, is not int8)
        return any(0 <= i < len(graph.tensors) and graph.tensors[i].dtype == "int8" for graph, op in ops
                   for i in op.inputs[slot])

    hybrid = int8(slice(1, 2)) and not int8(slice(0, 1))  # int8 weights, a float input
    return ("litert", "tensorflow", "micro") if codes == {BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_LSTM} and \
        not hybrid else ("litert", "tensorflow")
