"""The fused RNN graph in both directions: a cell and its weights -> a model description, and back.

One subgraph, one UNIDIRECTIONAL_SEQUENCE_RNN op with inputs
    0 x [B,T,I] (or [T,B,I] time-major), 1 W [U,I], 2 R [U,U], 3 b [U], 4 h [B,U] (variable, no data)
and output [B,T,U] (or [T,B,U]). The hidden state is a variable tensor: the runtime zero-fills it, keeps it across
invokes and zeroes it again on reset_all_variables().
"""

from __future__ import annotations

from dataclasses import dataclass

from .cell import CellWeights
from .errors import ModelFormatError, WeightsError
from .model import (
    Activation,
    BuiltinOperator,
    Model,
    Operator,
    SequenceRNNOptions,
    Signature,
    Subgraph,
    Tensor,
)

SIGNATURE_KEY = "serving_default"
SIGNATURE_INPUT = "input"
SIGNATURE_OUTPUT = "output"
INPUT, INPUT_WEIGHTS, RECURRENT_WEIGHTS, BIAS, HIDDEN_STATE = range(5)


def rnn_model(
    weights: CellWeights,
    *,
    name: str,
    activation: Activation,
    time_steps: int,
    batch_size: int,
    time_major: bool,
    metadata: dict[str, bytes],
    description: str,
) -> Model:
    units, input_size = weights.num_units, weights.input_size
    lead = (time_steps, batch_size) if time_major else (batch_size, time_steps)
    tensors = [
        Tensor(f"{name}/input", (*lead, input_size)),
        Tensor(f"{name}/input_weights", (units, input_size), data=weights.input_weights),
        Tensor(f"{name}/recurrent_weights", (units, units), data=weights.recurrent_weights),
        Tensor(f"{name}/bias", (units,), data=weights.bias),
        Tensor(f"{name}/hidden_state", (batch_size, units), is_variable=True),
        Tensor(f"{name}/output", (*lead, units)),
    ]
    output = len(tensors) - 1
    op = Operator(
        builtin_code=BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_RNN,
        inputs=[INPUT, INPUT_WEIGHTS, RECURRENT_WEIGHTS, BIAS, HIDDEN_STATE],
        outputs=[output],
        version=1,
        options=SequenceRNNOptions(time_major=time_major, activation=activation),
    )
    return Model(
        subgraphs=[Subgraph(tensors=tensors, operators=[op], inputs=[INPUT], outputs=[output])],
        signatures=[Signature(SIGNATURE_KEY, {SIGNATURE_INPUT: INPUT}, {SIGNATURE_OUTPUT: output})],
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

    def weights(self) -> CellWeights:
        """The weights as CellWeights; raises ModelFormatError when the model does not hold usable float weights."""
        for tensor in (self.input_weights, self.recurrent_weights, self.bias):
            if tensor.data is None:
                raise ModelFormatError(f"tensor '{tensor.name}' holds no data")
            if tensor.dtype != "float32":
                raise ModelFormatError(f"tensor '{tensor.name}' is {tensor.dtype}; only float32 weights are read")
        try:
            return CellWeights(self.input_weights.data, self.recurrent_weights.data, self.bias.data)
        except WeightsError as exc:  # inconsistent shapes or non-finite values in the file
            raise ModelFormatError(f"weights in the model are unusable: {exc}") from exc


def find_rnn(model: Model) -> RNNGraph:
    """The model's UNIDIRECTIONAL_SEQUENCE_RNN op; ModelFormatError if there is none or it is malformed."""
    found = [
        (g, op)
        for g in model.subgraphs
        for op in g.operators
        if op.code == BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_RNN
    ]
    if not found:
        raise ModelFormatError("the model has no UNIDIRECTIONAL_SEQUENCE_RNN op")
    if len(found) > 1:
        raise ModelFormatError(f"the model has {len(found)} UNIDIRECTIONAL_SEQUENCE_RNN ops; tflrnn verifies one")
    graph, op = found[0]
    if len(op.inputs) != 5 or len(op.outputs) != 1:
        raise ModelFormatError(
            f"UNIDIRECTIONAL_SEQUENCE_RNN has {len(op.inputs)} inputs and {len(op.outputs)} outputs; expected 5 and 1"
        )
    indices = [*op.inputs, op.outputs[0]]
    if any(not 0 <= i < len(graph.tensors) for i in indices):
        raise ModelFormatError(f"UNIDIRECTIONAL_SEQUENCE_RNN names tensors {indices} of {len(graph.tensors)}")
    return RNNGraph(model, graph, op, *(graph.tensors[i] for i in indices))
