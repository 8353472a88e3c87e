"""The fused RNN graph in both directions: a cell and its weights -> a model description, and back.

One subgraph, one UNIDIRECTIONAL_SEQUENCE_RNN op with inputs
    0 x [B,T,I] (or [T,B,I] time-major), 1 W [U,I], 2 R [U,U], 3 b [U], 4 h [B,U] (variable, no data)
and output [B,T,U] (or [T,B,U]). The hidden state is a variable tensor: the runtime zero-fills it, keeps it across
invokes and zeroes it again on reset_all_variables().
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .cell import CellWeights, dequantize
from .errors import ModelFormatError, WeightsError
from .model import (
    Activation,
    BidirectionalSequenceRNNOptions,
    BuiltinOperator,
    Model,
    Operator,
    Quantization,
    SequenceRNNOptions,
    Signature,
    StridedSliceOptions,
    Subgraph,
    Tensor,
)

SIGNATURE_KEY = "serving_default"
SIGNATURE_INPUT = "input"
SIGNATURE_OUTPUT = "output"
INPUT, INPUT_WEIGHTS, RECURRENT_WEIGHTS, BIAS, HIDDEN_STATE = range(5)


@dataclass
class Layer:
    """One fused RNN op of a stack. Layers with the same name share one set of variables (TfLiteRNNCell reuse).

    With `int8`, W and R are stored as (int8 array, scale) and `weights` holds their dequantized values: a hybrid
    op (version 2; 3 with asymmetric input quantization) that quantizes x and h on the fly each step.
    """

    name: str
    activation: Activation
    weights: CellWeights
    int8: tuple[tuple[np.ndarray, float], tuple[np.ndarray, float]] | None = None
    asymmetric_inputs: bool = False

    @property
    def op_version(self) -> int:
        return 1 if self.int8 is None else 3 if self.asymmetric_inputs else 2


def _sequence(name: str, lead: tuple[int, int], width: int, dynamic: tuple[int, int] | None) -> Tensor:
    """An input or output sequence; with `dynamic`, its time axis is -1 in shape_signature."""
    return Tensor(name, (*lead, width), shape_signature=(*dynamic, width) if dynamic else None)


def _variables(layer: Layer) -> list[Tensor]:
    """W, R and b of a layer: float32, or int8 W and R with their scales for a hybrid op."""
    w = layer.weights
    shapes = {"input_weights": (w.num_units, w.input_size), "recurrent_weights": (w.num_units, w.num_units)}
    if layer.int8 is None:
        tensors = [Tensor(f"{layer.name}/{n}", shapes[n], data=a)
                   for n, a in (("input_weights", w.input_weights), ("recurrent_weights", w.recurrent_weights))]
    else:
        tensors = [Tensor(f"{layer.name}/{n}", shapes[n], "int8", data=q, quantization=Quantization((scale,), (0,)))
                   for n, (q, scale) in zip(shapes, layer.int8)]
    return tensors + [Tensor(f"{layer.name}/bias", (w.num_units,), data=w.bias)]


def _time_layout(time_steps, batch_size, time_major, dynamic_time):
    lead = (time_steps, batch_size) if time_major else (batch_size, time_steps)
    dynamic = ((-1, batch_size) if time_major else (batch_size, -1)) if dynamic_time else None
    return lead, dynamic


def last_step_slice(time_major: bool) -> tuple[list[int], StridedSliceOptions]:
    """STRIDED_SLICE begin and options taking the last time step and dropping the time axis, for any length:
    begin -1 on the time axis with shrink_axis_mask; the other axes are whole through begin/end masks."""
    time_axis = 0 if time_major else 1
    begin = [0, 0, 0]
    begin[time_axis] = -1
    whole = 0b111 & ~(1 << time_axis)
    return begin, StridedSliceOptions(begin_mask=whole, end_mask=whole, shrink_axis_mask=1 << time_axis)


def rnn_model(
    layers: list[Layer],
    *,
    time_steps: int,
    batch_size: int,
    time_major: bool,
    metadata: dict[str, bytes],
    description: str,
    last_step: bool = False,
    dynamic_time: bool = False,
) -> Model:
    """A chain of UNIDIRECTIONAL_SEQUENCE_RNN ops, each with its own variable state; layer k's output is layer
    k+1's input. One layer gives tensors input, W, R, b, state, output (indices 0..5). With `last_step`, one
    STRIDED_SLICE op turns the last sequence [B,T,U] into its final step [B,U] (Keras return_sequences=False).
    With `dynamic_time`, the sequences' time axis is -1 in shape_signature (`time_steps` is the shape it is
    allocated with until resized); the batch stays fixed, because each state is a [B,U] variable."""
    lead, dynamic = _time_layout(time_steps, batch_size, time_major, dynamic_time)
    first = layers[0]
    tensors = [_sequence(f"{first.name}/input", lead, first.weights.input_size, dynamic)]
    variables: dict[str, list[int]] = {}  # layer name -> [W, R, b] tensor indices
    operators = []
    previous = INPUT
    for k, layer in enumerate(layers):
        w = layer.weights
        suffix = f"_{k}" if layer.name in variables else ""  # a reused cell: new state and output, same variables
        if layer.name not in variables:
            variables[layer.name] = [len(tensors), len(tensors) + 1, len(tensors) + 2]
            tensors += _variables(layer)
        tensors.append(Tensor(f"{layer.name}/hidden_state{suffix}", (batch_size, w.num_units), is_variable=True))
        tensors.append(_sequence(f"{layer.name}/output{suffix}", lead, w.num_units, dynamic))
        state, output = len(tensors) - 2, len(tensors) - 1
        operators.append(Operator(
            builtin_code=BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_RNN,
            inputs=[previous, *variables[layer.name], state],
            outputs=[output],
            version=layer.op_version,
            options=SequenceRNNOptions(time_major=time_major, activation=layer.activation,
                                       asymmetric_quantize_inputs=layer.asymmetric_inputs),
        ))
        previous = output
    if last_step:
        begin, options = last_step_slice(time_major)
        name = layers[-1].name
        tensors += [
            Tensor(f"{name}/last_step/begin", (3,), "int32", data=np.asarray(begin, dtype=np.int32)),
            Tensor(f"{name}/last_step/end", (3,), "int32", data=np.zeros(3, dtype=np.int32)),
            Tensor(f"{name}/last_step/strides", (3,), "int32", data=np.ones(3, dtype=np.int32)),
            Tensor(f"{name}/last_step", (batch_size, layers[-1].weights.num_units)),
        ]
        n = len(tensors)
        operators.append(Operator(BuiltinOperator.STRIDED_SLICE, [previous, n - 4, n - 3, n - 2], [n - 1],
                                  options=options))
        previous = n - 1
    return Model(
        subgraphs=[Subgraph(tensors=tensors, operators=operators, inputs=[INPUT], outputs=[previous])],
        signatures=[Signature(SIGNATURE_KEY, {SIGNATURE_INPUT: INPUT}, {SIGNATURE_OUTPUT: previous})],
        metadata=metadata,
        description=description,
    )


def bidirectional_model(
    forward: Layer,
    backward: Layer,
    *,
    merge: bool,
    time_steps: int,
    batch_size: int,
    time_major: bool,
    metadata: dict[str, bytes],
    description: str,
    dynamic_time: bool = False,
) -> Model:
    """One BIDIRECTIONAL_SEQUENCE_RNN op (code 46): inputs x, forward W/R/b/state, backward W/R/b/state and three
    unused aux inputs (-1). The output is [fw | bw] on the last axis when merged (Keras merge_mode="concat"),
    else two outputs. Both states are variables; the backward one carries from its t=0 output to the next invoke.
    """
    lead, dynamic = _time_layout(time_steps, batch_size, time_major, dynamic_time)
    base = forward.name.rpartition("/")[0] or forward.name
    tensors = [_sequence(f"{base}/input", lead, forward.weights.input_size, dynamic)]
    for layer in (forward, backward):
        tensors += _variables(layer)
        tensors.append(Tensor(f"{layer.name}/hidden_state", (batch_size, layer.weights.num_units), is_variable=True))
    units = forward.weights.num_units, backward.weights.num_units
    if merge:
        tensors.append(_sequence(f"{base}/output", lead, sum(units), dynamic))
        outputs = [len(tensors) - 1]
        named = {SIGNATURE_OUTPUT: outputs[0]}
    else:
        tensors += [_sequence(f"{forward.name}/output", lead, units[0], dynamic),
                    _sequence(f"{backward.name}/output", lead, units[1], dynamic)]
        outputs = [len(tensors) - 2, len(tensors) - 1]
        named = {f"{SIGNATURE_OUTPUT}_fw": outputs[0], f"{SIGNATURE_OUTPUT}_bw": outputs[1]}
    op = Operator(
        builtin_code=BuiltinOperator.BIDIRECTIONAL_SEQUENCE_RNN,
        inputs=[INPUT, *range(1, 9), -1, -1, -1],
        outputs=outputs,
        version=forward.op_version,
        options=BidirectionalSequenceRNNOptions(time_major=time_major, activation=forward.activation,
                                                merge_outputs=merge,
                                                asymmetric_quantize_inputs=forward.asymmetric_inputs),
    )
    return Model(
        subgraphs=[Subgraph(tensors=tensors, operators=[op], inputs=[INPUT], outputs=outputs)],
        signatures=[Signature(SIGNATURE_KEY, {SIGNATURE_INPUT: INPUT}, named)],
        metadata=metadata,
        description=description,
    )


@dataclass
class RNNGraph:
    """The RNN op of a model we read, with its tensors resolved."""

    model: Model
    subgraph: Subgraph
    operator: Operator
    input: Tensor
    input_weights: Tensor
    recurrent_weights: Tensor
    bias: Tensor
    hidden_state: Tensor
    output: Tensor

    @property
    def options(self) -> SequenceRNNOptions:
        return self.operator.options or SequenceRNNOptions(activation=Activation.NONE)  # the runtime's default

    @property
    def time_major(self) -> bool:
        return bool(self.options.time_major)

    @property
    def hybrid(self) -> bool:
        return self.input_weights.dtype == "int8"

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


def find_rnns(model: Model) -> list[RNNGraph]:
    """The model's UNIDIRECTIONAL_SEQUENCE_RNN ops in order; ModelFormatError if there is none, one is malformed,
    or they do not form a chain (each op's output feeding the next op's input)."""
    graphs = [g for g in model.subgraphs
              if any(op.code == BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_RNN for op in g.operators)]
    if not graphs:
        if any(op.code == BuiltinOperator.BIDIRECTIONAL_SEQUENCE_RNN for g in model.subgraphs for op in g.operators):
            raise ModelFormatError("the model is bidirectional (BIDIRECTIONAL_SEQUENCE_RNN)")
        raise ModelFormatError("the model has no UNIDIRECTIONAL_SEQUENCE_RNN op")
    if len(graphs) > 1:
        raise ModelFormatError(f"RNN ops in {len(graphs)} subgraphs; tflrnn verifies one")
    graph = graphs[0]
    ops = [op for op in graph.operators if op.code == BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_RNN]
    head = graph.operators[len(ops):]
    if graph.operators[: len(ops)] != ops or len(head) > 1 or (head and head[0].code != BuiltinOperator.STRIDED_SLICE):
        others = sorted({op.code for op in graph.operators} - {BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_RNN})
        raise ModelFormatError(f"the RNN subgraph also has ops with codes {others}; tflrnn verifies RNN stacks, "
                               "optionally ending in one STRIDED_SLICE (the last step)")
    found = []
    for k, op in enumerate(ops):
        if len(op.inputs) != 5 or len(op.outputs) != 1:
            raise ModelFormatError(
                f"UNIDIRECTIONAL_SEQUENCE_RNN {k} has {len(op.inputs)} inputs and {len(op.outputs)} outputs; "
                "expected 5 and 1"
            )
        indices = [*op.inputs, op.outputs[0]]
        if any(not 0 <= i < len(graph.tensors) for i in indices):
            raise ModelFormatError(f"UNIDIRECTIONAL_SEQUENCE_RNN {k} names tensors {indices} of {len(graph.tensors)}")
        if k and op.inputs[0] != ops[k - 1].outputs[0]:
            raise ModelFormatError(f"UNIDIRECTIONAL_SEQUENCE_RNN {k} does not take op {k - 1}'s output: not a stack")
        found.append(RNNGraph(model, graph, op, *(graph.tensors[i] for i in indices)))
    return found


def find_last_step(layers: list[RNNGraph]) -> Operator | None:
    """The STRIDED_SLICE after the last layer, when the model outputs only the last step."""
    graph = layers[0].subgraph
    head = graph.operators[len(layers):]
    return head[0] if head else None


@dataclass
class Bidirectional:
    """A model's BIDIRECTIONAL_SEQUENCE_RNN op: each direction as an RNNGraph over its own tensors. When the output
    is merged, both directions' `output` is the merged tensor (forward first on the last axis)."""

    operator: Operator
    forward: RNNGraph
    backward: RNNGraph

    @property
    def merged(self) -> bool:
        return len(self.operator.outputs) == 1


def find_bidirectional(model: Model) -> Bidirectional | None:
    """The model's BIDIRECTIONAL_SEQUENCE_RNN op when it is a bidirectional model, else None."""
    found = [(g, op) for g in model.subgraphs for op in g.operators
             if op.code == BuiltinOperator.BIDIRECTIONAL_SEQUENCE_RNN]
    if not found:
        return None
    if len(found) > 1 or len(model.subgraphs[0].operators) > 1:
        raise ModelFormatError("tflrnn verifies a model of one BIDIRECTIONAL_SEQUENCE_RNN op")
    graph, op = found[0]
    if len(op.inputs) != 12 or len(op.outputs) not in (1, 2):
        raise ModelFormatError(f"BIDIRECTIONAL_SEQUENCE_RNN has {len(op.inputs)} inputs and {len(op.outputs)} "
                               "outputs; expected 12 and 1 or 2")
    used = [*op.inputs[:9], *op.outputs]
    if any(not 0 <= i < len(graph.tensors) for i in used):
        raise ModelFormatError(f"BIDIRECTIONAL_SEQUENCE_RNN names tensors {used} of {len(graph.tensors)}")
    t = graph.tensors
    fw_out = t[op.outputs[0]]
    bw_out = t[op.outputs[-1]]
    forward = RNNGraph(model, graph, op, t[op.inputs[0]], *(t[i] for i in op.inputs[1:5]), fw_out)
    backward = RNNGraph(model, graph, op, t[op.inputs[0]], *(t[i] for i in op.inputs[5:9]), bw_out)
    return Bidirectional(op, forward, backward)
