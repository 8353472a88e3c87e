"""What the lowerings share: the serving signature's names, the tensor list they build, the sequences and weights
as tensors, and the Dense head (FULLY_CONNECTED layers after the recurrent ones), written the same way by each."""

from __future__ import annotations

import numpy as np

from ..model import (Activation, BuiltinOperator, FullyConnectedOptions, Model, Operator, Quantization, Signature,
                     SoftmaxOptions, Subgraph, Tensor, VarHandleOptions)
from ..network import Dense, Layer, stage_layers

SIGNATURE_KEY = "serving_default"
SIGNATURE_INPUT = "input"
SIGNATURE_OUTPUT = "output"
RESET_KEY = "reset"  # the portable lowering's signature that zeroes a carried state
STATE = "state"  # its state inputs and outputs (state, or state_0, state_1, ...)
# The activations the portable lowering fuses into ADD (tanh is an op of its own)
_FUSED_IN_ADD = {Activation.NONE, Activation.RELU, Activation.RELU6, Activation.RELU_N1_TO_1}

# Dense activations: the one FULLY_CONNECTED fuses, and the op that follows it (None: nothing follows).
DENSE_OPS = {
    "linear": (Activation.NONE, None),
    "relu": (Activation.RELU, None),
    "relu6": (Activation.RELU6, None),
    "tanh": (Activation.NONE, BuiltinOperator.TANH),
    "sigmoid": (Activation.NONE, BuiltinOperator.LOGISTIC),
    "softmax": (Activation.NONE, BuiltinOperator.SOFTMAX),
}
DENSE_FOLLOWERS = {code: name for name, (_, code) in DENSE_OPS.items() if code is not None}


class Tensors(list):
    def add(self, *tensors: Tensor) -> int:
        """Append; the index of the last one added."""
        self.extend(tensors)
        return len(self) - 1


def sequence_tensor(name: str, lead: tuple[int, int], width: int, dynamic: tuple[int, int] | None) -> Tensor:
    """An input or output sequence; with `dynamic`, its time axis is -1 in shape_signature."""
    return Tensor(name, (*lead, width), shape_signature=(*dynamic, width) if dynamic else None)


def weight_tensors(layer: Layer) -> list[Tensor]:
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


def time_layout(time_steps, batch_size, time_major, dynamic_time):
    lead = (time_steps, batch_size) if time_major else (batch_size, time_steps)
    dynamic = ((-1, batch_size) if time_major else (batch_size, -1)) if dynamic_time else None
    return lead, dynamic


def write_dense_head(tensors: Tensors, operators: list, head: list[Dense], ends: list[int]) -> list[int]:
    """Dense layers after `ends[0]`: FULLY_CONNECTED each (relu and relu6 fused; tanh, sigmoid and softmax as ops
    of their own, since the float kernel refuses a fused tanh). Returns the new end."""
    for dense in head:
        x = tensors[ends[0]]
        fused, after = DENSE_OPS[dense.activation]
        sequence = len(x.shape) == 3
        weights = tensors.add(Tensor(f"{dense.name}/kernel", dense.weights.shape, data=dense.weights),
                              Tensor(f"{dense.name}/bias", dense.bias.shape, data=dense.bias)) - 1
        signature = (*x.shape_signature[:-1], dense.units) if x.shape_signature is not None else None
        out = tensors.add(Tensor(f"{dense.name}/output", (*x.shape[:-1], dense.units), shape_signature=signature))
        # keep_num_dims keeps [B,T,units] on a sequence (op version 5); without it the output would be flattened.
        operators.append(Operator(BuiltinOperator.FULLY_CONNECTED, [ends[0], weights, weights + 1], [out],
                                  version=5 if sequence else 1,
                                  options=FullyConnectedOptions(activation=fused, keep_num_dims=sequence)))
        if after is not None:
            activated = tensors.add(Tensor(f"{dense.name}/{dense.activation}", tensors[out].shape,
                                           shape_signature=signature))
            operators.append(Operator(after, [out], [activated],
                                      options=SoftmaxOptions(beta=1.0) if after == BuiltinOperator.SOFTMAX else None))
            out = activated
        ends = [out]
    return ends


def _zeroing(handles: list[tuple[str, np.ndarray, object]], name: str) -> Subgraph:
    """A subgraph that assigns each carried state its zeros (float zeros; int8 ones hold the state's zero point,
    with its quantization): the init of CALL_ONCE, and the `reset` signature. Shared by the float and int8 portable
    lowerings."""
    tensors, operators = [], []
    for shared_name, zeros, quantization in handles:
        tensors += [Tensor(f"{shared_name}_handle", (), "resource"),
                    Tensor(f"{shared_name}_zeros", zeros.shape, zeros.dtype.name, data=zeros,
                           quantization=quantization)]
        operators += [Operator(BuiltinOperator.VAR_HANDLE, [], [len(tensors) - 2],
                               options=VarHandleOptions(shared_name=shared_name)),
                      Operator(BuiltinOperator.ASSIGN_VARIABLE, [len(tensors) - 2, len(tensors) - 1], [])]
    return Subgraph(tensors, operators, inputs=[], outputs=[], name=name)


class GraphWalk:
    """The walk both portable graphs share (portable._Graph, float; int8._Int8Graph, full int8): the stages in order,
    each direction written by the graph, a bidirectional layer's outputs joined, the Dense head, the signatures and
    the state's subgraphs. The graphs differ only in the hooks model() calls; they hold the attributes it reads:
    network, tensors, operators, x, inputs, state_inputs, state_outputs, handles, loops."""

    resource_state = True  # a carried state lives in resource variables (else in the ops' own variable tensors)

    def model(self) -> Model:
        """The network's stages, its Dense head and the signatures, as a Model."""
        source, ends = self.first_source(), []
        seen: dict[str, int] = {}
        for k, stage in enumerate(self.network.stages):
            final = k == len(self.network.stages) - 1
            last_only = final and self.network.last_step
            source = self.stage_source(source, stage)
            results = []
            for d, layer in enumerate(stage_layers(stage)):
                uses = seen.get(layer.name, 0)
                seen[layer.name] = uses + 1
                suffix = f"_{uses}" if uses else ""  # a reused cell: its own state and outputs, the same weights
                results.append(self.write_direction(layer, source, backward=d == 1, suffix=suffix,
                                                    sequence=not last_only))
            # The last step of each direction is its final state: forward at T-1, backward at t=0 (where it ends);
            # a kind whose state holds more than its output (an LSTM's [h | c]) records its last output apart.
            last_outputs = getattr(self, "last_outputs", {})
            ends = [last_outputs.get(final_state, final_state) if last_only else output
                    for output, final_state in results]
            if len(ends) == 2 and (self.network.merge or not final):
                ends = [self.merged(stage, ends, last_only)]
            source = ends[0]
        ends = self.write_head(ends)

        names = [SIGNATURE_OUTPUT] if len(ends) == 1 else [f"{SIGNATURE_OUTPUT}_fw", f"{SIGNATURE_OUTPUT}_bw"]
        named = {key: self.signature_output(end) for key, end in zip(names, ends)}
        signature_inputs = {SIGNATURE_INPUT: self.x}
        if self.network.state == "io":
            for k, (state_in, state_out) in enumerate(zip(self.state_inputs, self.state_outputs)):
                key = STATE if len(self.state_inputs) == 1 else f"{STATE}_{k}"
                signature_inputs[key] = state_in
                named[key] = self.state_output(state_in, state_out, named)
            self.inputs += self.state_inputs
        subgraphs = [Subgraph(list(self.tensors), self.operators, inputs=self.inputs, outputs=list(named.values()),
                              name=SIGNATURE_KEY)]
        signatures = [Signature(SIGNATURE_KEY, signature_inputs, named, 0)]
        if self.network.state == "carry" and self.resource_state:
            subgraphs += [_zeroing(self.handles, "init"), _zeroing(self.handles, RESET_KEY)]
            signatures.append(Signature(RESET_KEY, {}, {}, 2))
        subgraphs += self.loops
        return Model(subgraphs=subgraphs, signatures=signatures)

    def first_source(self) -> int:
        raise NotImplementedError

    def stage_source(self, source: int, stage) -> int:
        raise NotImplementedError

    def write_direction(self, layer, source: int, backward: bool, suffix: str, sequence: bool):
        raise NotImplementedError

    def merged(self, stage, ends: list[int], last_only: bool) -> int:
        raise NotImplementedError

    def write_head(self, ends: list[int]) -> list[int]:
        raise NotImplementedError

    def signature_output(self, index: int) -> int:
        raise NotImplementedError

    def state_output(self, state_in: int, state_out: int, named: dict) -> int:
        raise NotImplementedError
