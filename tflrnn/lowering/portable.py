"""The portable lowering: a network as plain builtin ops that every TFLite runtime has, no fused RNN op.

Per direction of each layer (the steps unrolled, with T fixed; or as a WHILE loop, `loop_steps`):
    P = FULLY_CONNECTED(x, W, b)            every step's input projection at once, [B,T,U] (keep_num_dims)
    P_0 .. P_{T-1} = UNPACK(P, time axis)
    h_t = act(ADD(P_t, FULLY_CONNECTED(h_{t-1}, R)))   relu, relu6, relu_n1_to_1 fused into ADD; tanh a TANH op
    Y = PACK(h_0 .. h_{T-1}, time axis)     (not written where only the last step is used)
A backward direction runs t = T-1 .. 0 and ends at t=0; a bidirectional layer's output is CONCATENATION([Y_fw, Y_bw])
(its last step: h_fw at T-1 and h_bw at 0). Dense layers follow as in the fused lowering.

Where the state lives (`Network.state`):
    carry  a resource variable per direction (VAR_HANDLE / READ_VARIABLE / ASSIGN_VARIABLE) carried across
           invokes, zeroed once by CALL_ONCE (subgraph 1) and on demand by the `reset` signature (subgraph 2)
    io     an input `state` (`state_0`, `state_1`, ... with several, in layer order, forward before backward) and the
           final states as outputs of the same names
    zero   none: each invoke starts from zeros, as Keras' model.predict
The serving subgraph is subgraph 0: TFLite Micro and the classic input/output API run subgraph 0.
"""

from __future__ import annotations

import numpy as np

from ..cells import kind_of
from ..errors import ConfigError
from ..model import (
    Activation,
    AddOptions,
    BuiltinOperator,
    CallOnceOptions,
    ConcatenationOptions,
    FullyConnectedOptions,
    GatherOptions,
    Model,
    Operator,
    PackOptions,
    Subgraph,
    Tensor,
    UnpackOptions,
    ShapeOptions,
    StridedSliceOptions,
    VarHandleOptions,
    WhileOptions,
    op_name,
)
from ..network import Layer, Network, base_name, stage_layers
from .common import (_FUSED_IN_ADD, GraphWalk, SIGNATURE_OUTPUT, Tensors, sequence_tensor, time_layout,
                     weight_tensors, write_dense_head)
from .common import RESET_KEY, STATE  # this lowering's signature names (verify and benchmark read them from here)

__all__ = ["RESET_KEY", "STATE", "LOOP_ABOVE_R_BYTES", "lower", "recover", "holds_a_layer", "auto_loops",
           "loops_by_default", "exported_weights", "step_begin"]

# `recurrence="auto"` loops when the unrolled steps would hold more bytes of R than this, summed over every
# direction: XNNPACK packs each step's FULLY_CONNECTED by R on its own, one copy per step. Measured at T=50 (LiteRT
# 2.3, BENCHMARKS.md): 256 units unroll to 12.5 MiB of R, +17.6 MiB of interpreter memory against the loop's +4.7
# (about as fast, 407 against 427 us); at 128 units and below the loop's fixed cost per step (~1 us) outweighs it.
LOOP_ABOVE_R_BYTES = 8 * 2**20


def lower(network: Network) -> Model:
    if network.int8 is not None:  # full-integer int8: its own module, the same layout of ops
        from . import int8

        return int8.lower(network)
    if network.dynamic_time and not network.loop:
        raise ConfigError("unrolled steps are fixed in number: a dynamic time axis needs the steps in a loop "
                          "(--recurrence loop or auto)")
    for layer in network.layers:
        if layer.int8 is not None:
            raise ConfigError("the portable lowering writes float weights: a hybrid int8 model (int8 weights, float "
                              "arithmetic) needs the fused lowering (TFLite Micro has no hybrid FULLY_CONNECTED); "
                              "drop --quantize int8, or drop --lowering portable")
        if layer.activation not in _FUSED_IN_ADD and layer.activation != Activation.TANH:
            raise ConfigError(f"the portable lowering has no builtin op for activation {layer.activation.name.lower()} "
                              "(TFLite's SIGN gives -1/0/1, not the sign bit): use the fused lowering")
    return _Graph(network).model()


class _Graph(GraphWalk):
    """The serving graph being written, float (lowering/int8.py writes the full-int8 one): its tensors and ops, the
    state's inputs, outputs and variables, the loops' subgraphs. A cell kind's step writer (lowering/gru.py) adds
    to it through these attributes and methods."""

    def __init__(self, network: Network):
        self.network = network
        self.time_major, self.batch, self.steps = network.time_major, network.batch_size, network.time_steps
        self.time_axis = 0 if self.time_major else 1
        self.tensors, self.operators = Tensors(), []
        # With a dynamic time axis, every sequence has -1 there in shape_signature (allocated for `steps`).
        self.lead, self.dynamic = time_layout(self.steps, self.batch, self.time_major, network.dynamic_time)
        self.x = self.tensors.add(self.sequence_of(f"{base_name(network.stages[0])}/input", network.input_size))
        self.inputs, self.state_inputs, self.state_outputs = [self.x], [], []
        self.weights: dict[str, tuple[int, int, int]] = {}  # layer name -> W, R, b (a reused cell shares them)
        self.handles = []  # (shared_name, its zeros) of each carried state
        self.last_outputs: dict[int, int] = {}  # a final state -> the last step's output, where they differ (LSTM)
        self.loops: list[Subgraph] = []  # the WHILE loops' condition and body subgraphs, after the fixed ones
        self.first_loop_subgraph = 3 if self.network.state == "carry" else 1
        if self.network.state == "carry":
            self.operators.append(Operator(BuiltinOperator.CALL_ONCE, [], [],
                                           options=CallOnceOptions(init_subgraph_index=1)))

    def sequence_of(self, name: str, width: int) -> Tensor:
        return sequence_tensor(name, self.lead, width, self.dynamic)

    def run_direction(self, layer: Layer, source: int, backward: bool, suffix: str, sequence: bool):
        """The recurrence over `source`: (its output sequence, or None when not `sequence`; the final state)."""
        units = layer.weights.num_units
        if layer.kind != "rnn":  # another kind writes its own steps (cells/)
            name = f"{layer.name}{suffix}"
            h, handle = self.initial_state(name, layer.weights.state_width)
            output, h = kind_of(layer.weights).portable_steps().write_direction(self, layer, source, h, backward,
                                                                                name, sequence)
            self.keep_state(h, handle)
            return output, h
        if layer.name not in self.weights:
            w, r, b = weight_tensors(layer)
            if self.network.loop:  # R lives in the loop's body
                self.weights[layer.name] = (self.tensors.add(w), -1, self.tensors.add(b))
            else:
                start = self.tensors.add(w, r, b) - 2
                self.weights[layer.name] = (start, start + 1, start + 2)
        w_index, r_index, b_index = self.weights[layer.name]
        name = f"{layer.name}{suffix}"
        projection = self.tensors.add(self.sequence_of(f"{name}/projection", units))
        self.operators.append(Operator(BuiltinOperator.FULLY_CONNECTED, [source, w_index, b_index], [projection],
                                       version=5, options=FullyConnectedOptions(keep_num_dims=True)))
        h, handle = self.initial_state(name, units)
        if self.network.loop:
            output, h = self.loop_steps(layer, name, projection, h, backward)
        else:
            outputs, h = self.unrolled_steps(layer, name, projection, h, r_index, backward)
            output = None
            if sequence:
                output = self.tensors.add(Tensor(f"{layer.name}/output", (*self.lead, units)))
                self.operators.append(Operator(BuiltinOperator.PACK, outputs, [output],
                                               options=PackOptions(values_count=self.steps, axis=self.time_axis)))
        self.keep_state(h, handle)
        return output, h

    def keep_state(self, h: int, handle: int | None) -> None:
        """A direction's final state: an output of the signature (io), or assigned to its variable (carry)."""
        if self.network.state == "io":
            self.state_outputs.append(h)
        elif self.network.state == "carry":
            self.operators.append(Operator(BuiltinOperator.ASSIGN_VARIABLE, [handle, h], []))

    def unrolled_steps(self, layer: Layer, name: str, projection: int, h: int | None, r_index: int, backward: bool):
        """Every step as ops of its own: (the per-step outputs in time order, the final state)."""
        units = layer.weights.num_units
        first = len(self.tensors)
        # Per-step tensors have short names (x<t>, r<t>, z<t>, h<t>): at 50 steps they are most of the structure.
        self.tensors.add(*(Tensor(f"{name}/x{t}", (self.batch, units)) for t in range(self.steps)))
        self.operators.append(Operator(BuiltinOperator.UNPACK, [projection], list(range(first, first + self.steps)),
                                       options=UnpackOptions(num=self.steps, axis=self.time_axis)))
        outputs = [None] * self.steps
        for t in (range(self.steps - 1, -1, -1) if backward else range(self.steps)):
            step = first + t
            if h is not None:
                h = basic_step(self.tensors, self.operators, layer, step, h, r_index, (self.batch, units),
                               (f"{name}/r{t}", f"{name}/z{t}", f"{name}/h{t}"))
            else:  # the zero state: nothing to add, but a relu-like activation still applies
                h = step
                if layer.activation in _FUSED_IN_ADD - {Activation.NONE}:
                    # ADD of zeros with the activation fused: TFLite Micro has no RELU_N1_TO_1 op of its own
                    zeros = self.tensors.add(Tensor(f"{name}/zeros", (self.batch, units),
                                                    data=np.zeros((self.batch, units), np.float32)))
                    h = self.tensors.add(Tensor(f"{name}/z{t}", (self.batch, units)))
                    self.operators.append(Operator(BuiltinOperator.ADD, [step, zeros], [h],
                                                   options=AddOptions(activation=layer.activation)))
                if layer.activation == Activation.TANH:
                    summed, h = h, self.tensors.add(Tensor(f"{name}/h{t}", (self.batch, units)))
                    self.operators.append(Operator(BuiltinOperator.TANH, [summed], [h]))
            outputs[t] = h
        return outputs, h

    def loop_steps(self, layer: Layer, name: str, projection: int, h: int | None, backward: bool):
        """The steps as a WHILE loop over (t, h, sequence): its body slices step t out of the projection, applies
        R once (one FULLY_CONNECTED, so a delegate packs R once, not per step) and writes h_t back in its place;
        the projection becomes the output sequence. (The output sequence, the final state.)"""
        units = layer.weights.num_units
        step_shape = (1, self.batch, units) if self.time_major else (self.batch, 1, units)
        if h is None:  # the zero state: the loop still needs a state to start from
            h = self.tensors.add(Tensor(f"{name}/zeros", (self.batch, units),
                                        data=np.zeros((self.batch, units), np.float32)))
        start = self.reshaped(h, step_shape, f"{name}/h_start")
        t0 = self.loop_start(name, projection, backward)
        t_end = self.tensors.add(Tensor(f"{name}/t_end", (), "int32"))
        h_end = self.tensors.add(Tensor(f"{name}/h_end", step_shape))
        output = self.tensors.add(self.sequence_of(f"{layer.name}/output", units))
        cond = self.first_loop_subgraph + len(self.loops)
        shapes = (step_shape, self.tensors[output].shape, self.tensors[output].shape_signature)
        self.loops.extend([_loop_condition(name, *shapes, self.steps, backward, self.time_axis),
                           _loop_body(layer, name, *shapes, self.time_axis, backward,
                                      self.network.steps_per_iteration)])
        self.operators.append(Operator(BuiltinOperator.WHILE, [t0, start, projection], [t_end, h_end, output],
                                       options=WhileOptions(cond_subgraph_index=cond, body_subgraph_index=cond + 1)))
        return output, self.reshaped(h_end, (self.batch, units), f"{name}/final_state")

    def project_groups(self, source: int, found: dict, groups) -> list[int]:
        """A gated cell's input projections of every step at once, one FULLY_CONNECTED per gate group (XNNPACK packs
        each weight matrix once and the graph stays one delegate partition): `groups` = (tensor name, width) in the
        order of the group tensors from `found["input_weights"]` and `found["bias"]` on."""
        outputs = [self.tensors.add(self.sequence_of(name, width)) for name, width in groups]
        for part, out in enumerate(outputs):
            self.operators.append(Operator(BuiltinOperator.FULLY_CONNECTED, [source, found["input_weights"] + part,
                                                                             found["bias"] + part], [out],
                                           version=5, options=FullyConnectedOptions(keep_num_dims=True)))
        return outputs

    def unpack_steps(self, name: str, sources) -> dict[str, int]:
        """Each (stem, sequence, width) UNPACKed over time into <name>/<stem><t>: stem -> its step 0's index."""
        first_of = {}
        for stem, source, width in sources:
            first = len(self.tensors)
            self.tensors.add(*(Tensor(f"{name}/{stem}{t}", (self.batch, width)) for t in range(self.steps)))
            self.operators.append(Operator(BuiltinOperator.UNPACK, [source], list(range(first, first + self.steps)),
                                           options=UnpackOptions(num=self.steps, axis=self.time_axis)))
            first_of[stem] = first
        return first_of

    def pack_output(self, layer_name: str, outputs: list[int], units: int) -> int:
        """The steps' outputs PACKed into the layer's output sequence."""
        output = self.tensors.add(Tensor(f"{layer_name}/output", (*self.lead, units)))
        self.operators.append(Operator(BuiltinOperator.PACK, outputs, [output],
                                       options=PackOptions(values_count=self.steps, axis=self.time_axis)))
        return output

    def loop_start(self, name: str, projection: int, backward: bool) -> int:
        """The loop's first t: 0, or T - 1 backward (with a dynamic time axis, of the input as given)."""
        if self.dynamic and backward:  # from the last step, wherever that is: T - 1 of the input as given
            t0 = _steps_of(self.tensors, self.operators, projection, self.time_axis, f"{name}/steps")
            minus_one = self.tensors.add(Tensor(f"{name}/minus_one", (), "int32", data=np.asarray(-1, np.int32)))
            t0_value = self.tensors.add(Tensor(f"{name}/t_start", (), "int32"))
            self.operators.append(Operator(BuiltinOperator.ADD, [t0, minus_one], [t0_value], options=AddOptions()))
            return t0_value
        last_pass = self.steps - self.network.steps_per_iteration  # where the last pass's steps begin
        return self.tensors.add(Tensor(f"{name}/t_start", (), "int32",
                                       data=np.asarray(last_pass if backward else 0, np.int32)))

    def reshaped(self, index: int, shape: tuple[int, ...], new_name: str, shape_name: str | None = None) -> int:
        """A RESHAPE of `index` to `shape`: a new tensor (also a copy, where a runtime needs one of its own)."""
        target = self.tensors.add(Tensor(shape_name or f"{new_name}/shape", (len(shape),), "int32",
                                         data=np.asarray(shape, np.int32)))
        out = self.tensors.add(Tensor(new_name, shape))
        self.operators.append(Operator(BuiltinOperator.RESHAPE, [index, target], [out]))
        return out

    def initial_state(self, name: str, units: int) -> tuple[int | None, int | None]:
        """The state a direction starts from (None: zeros), and its variable's handle when it is carried."""
        if self.network.state == "zero":
            return None, None
        if self.network.state == "io":
            index = self.tensors.add(Tensor(f"{name}/state", (self.batch, units)))
            self.state_inputs.append(index)
            return index, None
        handle = self.tensors.add(Tensor(f"{name}/state_handle", (), "resource"))
        self.handles.append((f"{name}/hidden_state", np.zeros((self.batch, units), np.float32), None))
        self.operators.append(Operator(BuiltinOperator.VAR_HANDLE, [], [handle],
                                       options=VarHandleOptions(shared_name=self.handles[-1][0])))
        read = self.tensors.add(Tensor(f"{name}/state", (self.batch, units)))
        self.operators.append(Operator(BuiltinOperator.READ_VARIABLE, [handle], [read]))
        return read, handle

    # common.GraphWalk.model's hooks, for the float graph
    def first_source(self) -> int:
        return self.x

    def stage_source(self, source: int, stage) -> int:
        return source

    def write_direction(self, layer: Layer, source: int, backward: bool, suffix: str, sequence: bool):
        return self.run_direction(layer, source, backward, suffix, sequence)

    def merged(self, stage, ends: list[int], last_only: bool) -> int:
        """A bidirectional layer's [fw | bw] on the last axis."""
        shape = (*self.tensors[ends[0]].shape[:-1], sum(self.tensors[i].shape[-1] for i in ends))
        signature = None if last_only or not self.dynamic else (*self.dynamic, shape[-1])
        merged = self.tensors.add(Tensor(f"{base_name(stage)}/{'last_step' if last_only else 'output'}", shape,
                                         shape_signature=signature))
        self.operators.append(Operator(BuiltinOperator.CONCATENATION, ends, [merged],
                                       options=ConcatenationOptions(axis=-1)))
        return merged

    def write_head(self, ends: list[int]) -> list[int]:
        return write_dense_head(self.tensors, self.operators, self.network.head, ends)

    def signature_output(self, index: int) -> int:
        return index

    def state_output(self, state_in: int, state_out: int, named: dict) -> int:
        """A direction's final state as a signature output (io)."""
        if state_out in named.values():  # the last step is the final state: a copy, as runtimes name outputs
            name = self.tensors[state_out].name
            return self.reshaped(state_out, self.tensors[state_out].shape, f"{name}/final_state", f"{name}/shape")
        return state_out


def basic_step(tensors: Tensors, operators: list, layer: Layer, x: int, h: int, r: int, shape, names,
               **fc) -> int:
    """One step of the basic cell, h' = act(x + h R^T): FULLY_CONNECTED by R, ADD (with a relu-like activation fused),
    TANH after it for tanh; `names` those three values' tensor names, `fc` the FULLY_CONNECTED's version and options
    (default: version 1, on [B,U]). The new h."""
    recurrent = tensors.add(Tensor(names[0], shape))
    operators.append(Operator(BuiltinOperator.FULLY_CONNECTED, [h, r, -1], [recurrent],
                              **(fc or {"options": FullyConnectedOptions()})))
    fused = layer.activation if layer.activation in _FUSED_IN_ADD else Activation.NONE
    summed = tensors.add(Tensor(names[1], shape))
    operators.append(Operator(BuiltinOperator.ADD, [x, recurrent], [summed], options=AddOptions(activation=fused)))
    if layer.activation != Activation.TANH:
        return summed
    new_h = tensors.add(Tensor(names[2], shape))
    operators.append(Operator(BuiltinOperator.TANH, [summed], [new_h]))
    return new_h


def auto_loops(stages: list, time_steps: int, dynamic_time: bool, full_int8: bool) -> bool:
    """What `recurrence="auto"` chooses: a loop for a dynamic length or large unrolled steps (loops_by_default);
    full int8 is unrolled (quantization.refusal says why a loop is refused), but for kinds whose full-int8 steps
    have a loop form (an LSTM's int16 ones: `INT8_LOOPS`), chosen as in float."""
    if full_int8 and not all(int8_loops(layer) for stage in stages for layer in stage_layers(stage)):
        return False
    return dynamic_time or loops_by_default(stages, time_steps)


def int8_loops(layer: Layer) -> bool:
    """Whether a layer's kind writes its full-int8 steps as a loop too (its steps module's INT8_LOOPS)."""
    steps = kind_of(layer.weights).portable_steps()
    return steps is not None and steps.INT8_LOOPS


def loops_by_default(stages: list, time_steps: int) -> bool:
    """Whether `recurrence="auto"` writes the steps as a WHILE loop: when unrolled they would hold more than
    LOOP_ABOVE_R_BYTES of packed R (time steps x R's float32 bytes per direction: units^2 x 4 for the basic cell,
    3 x units^2 x 4 for a GRU, 4 x units^2 x 4 for an LSTM)."""
    r_bytes = sum(time_steps * layer.weights.recurrent_weights.size * 4 for stage in stages
                  for layer in stage_layers(stage))
    return r_bytes > LOOP_ABOVE_R_BYTES


def _loop_condition(name: str, step_shape, sequence_shape, signature, steps: int, backward: bool,
                    time_axis: int, extra: list[Tensor] = (), h: Tensor | None = None) -> Subgraph:
    """t < T (forward; with a dynamic time axis, T is the sequence's length), t >= 0 (backward): whether the loop
    runs step t. `extra`: more loop values after (t, h, sequence), as a cell kind's loop carries them; `h`: the state's
    tensor where it is not float32 (a full-int8 LSTM's int16)."""
    tensors = Tensors([Tensor("t", (), "int32"), h or Tensor("h", step_shape),
                        Tensor("sequence", sequence_shape, shape_signature=signature), *extra])
    operators = []
    if backward:
        limit = tensors.add(Tensor("limit", (), "int32", data=np.asarray(0, np.int32)))
    elif signature is not None:
        limit = _steps_of(tensors, operators, 2, time_axis, "limit")
    else:
        limit = tensors.add(Tensor("limit", (), "int32", data=np.asarray(steps, np.int32)))
    more = tensors.add(Tensor("more", (), "bool"))
    test = BuiltinOperator.GREATER_EQUAL if backward else BuiltinOperator.LESS
    operators.append(Operator(test, [0, limit], [more]))
    return Subgraph(list(tensors), operators, inputs=list(range(3 + len(extra))), outputs=[more], name=f"{name}/cond")


def _steps_of(tensors: Tensors, operators: list, sequence: int, time_axis: int, name: str) -> int:
    """The length of a sequence's time axis as it is given (SHAPE, then its element there): an int32 scalar."""
    shape = tensors.add(Tensor(f"{name}/shape", (3,), "int32"))
    operators.append(Operator(BuiltinOperator.SHAPE, [sequence], [shape], options=ShapeOptions()))
    begin, end, stride = (tensors.add(Tensor(f"{name}/{role}", (1,), "int32", data=np.asarray([v], np.int32)))
                          for role, v in (("begin", time_axis), ("end", time_axis + 1), ("stride", 1)))
    steps = tensors.add(Tensor(name, (), "int32"))
    operators.append(Operator(BuiltinOperator.STRIDED_SLICE, [shape, begin, end, stride], [steps],
                              options=StridedSliceOptions(shrink_axis_mask=1)))
    return steps


def step_begin(tensors: Tensors, operators: list, t: int, time_axis: int) -> int:
    """In a loop body: where step t begins in a sequence, [0, t, 0] (time-major [t, 0, 0]), for SLICE and
    DYNAMIC_UPDATE_SLICE."""
    zero = tensors.add(Tensor("zero", (), "int32", data=np.asarray(0, np.int32)))
    begin = tensors.add(Tensor("begin", (3,), "int32"))
    corner = [zero, zero, zero]
    corner[time_axis] = t
    operators.append(Operator(BuiltinOperator.PACK, corner, [begin], options=PackOptions(values_count=3, axis=0)))
    return begin


def gather_steps(tensors: Tensors, operators: list, t: int, time_axis: int, state_shape, sources) -> dict[str, int]:
    """In a gated cell's loop body: step t of each (stem, sequence, width), GATHERed (a scalar index drops the time
    axis, so every shape in the body stays static; lowering/gru.py says why not SLICE): stem -> its index."""
    pieces = {}
    for stem, source, width in sources:
        pieces[stem] = tensors.add(Tensor(stem, (*state_shape[:-1], width)))
        operators.append(Operator(BuiltinOperator.GATHER, [source, t], [pieces[stem]],
                                  options=GatherOptions(axis=time_axis)))
    return pieces


def gather_block(tensors: Tensors, operators: list, t: int, time_axis: int, state_shape, sources,
                 count: int) -> dict[str, list[int]]:
    """In a loop body: steps t .. t + count - 1 of each (stem, sequence, width): stem -> their indices in time
    order. One step is gather_steps'; more are GATHERed at once (indices t + [0, count)) and UNPACKed
    into <stem><j>."""
    if count == 1:
        return {stem: [index] for stem, index in gather_steps(tensors, operators, t, time_axis, state_shape,
                                                               sources).items()}
    offsets = tensors.add(Tensor("offsets", (count,), "int32", data=np.arange(count, dtype=np.int32)))
    steps = tensors.add(Tensor("steps", (count,), "int32"))
    operators.append(Operator(BuiltinOperator.ADD, [t, offsets], [steps], options=AddOptions()))
    pieces = {}
    for stem, source, width in sources:
        shape = [*state_shape[:-1], width]
        block = tensors.add(Tensor(f"{stem}_steps", tuple(shape[:time_axis] + [count] + shape[time_axis:])))
        operators.append(Operator(BuiltinOperator.GATHER, [source, steps], [block],
                                  options=GatherOptions(axis=time_axis)))
        first = tensors.add(*(Tensor(f"{stem}{j}", tuple(shape)) for j in range(count))) - count + 1
        operators.append(Operator(BuiltinOperator.UNPACK, [block], list(range(first, first + count)),
                                  options=UnpackOptions(num=count, axis=time_axis)))
        pieces[stem] = list(range(first, first + count))
    return pieces


def write_back_step(tensors: Tensors, operators: list, t: int, new_hs: list[int], sequence: int, begin: int,
                    sequence_shape, signature, time_axis: int, backward: bool) -> tuple[int, int]:
    """The end of a loop body (a gated cell's, or the basic cell's of several steps a pass): the pass's states
    (in time order) written over their steps of the sequence (PACKed, then DYNAMIC_UPDATE_SLICE), and t += the
    steps (backward: -). (The written sequence, the next t.)"""
    step_shape = list(sequence_shape)
    step_shape[time_axis] = len(new_hs)
    step = tensors.add(Tensor("step", tuple(step_shape)))
    operators.append(Operator(BuiltinOperator.PACK, list(new_hs), [step],
                              options=PackOptions(values_count=len(new_hs), axis=time_axis)))
    written = tensors.add(Tensor("sequence_next", sequence_shape, shape_signature=signature))
    operators.append(Operator(BuiltinOperator.DYNAMIC_UPDATE_SLICE, [sequence, step, begin], [written]))
    stride = tensors.add(Tensor("stride", (), "int32", data=np.asarray(-len(new_hs) if backward else len(new_hs),
                                                                       np.int32)))
    next_t = tensors.add(Tensor("t_next", (), "int32"))
    operators.append(Operator(BuiltinOperator.ADD, [t, stride], [next_t], options=AddOptions()))
    return written, next_t


def _loop_body(layer: Layer, name: str, step_shape, sequence_shape, signature, time_axis: int,
               backward: bool, count: int = 1) -> Subgraph:
    """One step: x_t = the projection's slice t; h = act(x_t + h R^T); the slice t := h; t += 1 (backward: -1).
    Step t's slice is read before it is overwritten and never read again, so the projection becomes the output.
    `count` steps a pass: _block_body."""
    tensors = Tensors([Tensor("t", (), "int32"), Tensor("h", step_shape),
                        Tensor("sequence", sequence_shape, shape_signature=signature)])
    t, h, sequence = 0, 1, 2
    operators = []
    begin = step_begin(tensors, operators, t, time_axis)
    if count > 1:
        return _block_body(layer, name, tensors, operators, begin, step_shape, sequence_shape, signature, time_axis,
                           backward, count)
    size = tensors.add(Tensor("size", (3,), "int32", data=np.asarray(step_shape, np.int32)))
    x = tensors.add(Tensor("x", step_shape))
    operators.append(Operator(BuiltinOperator.SLICE, [sequence, begin, size], [x]))
    r = tensors.add(weight_tensors(layer)[1])
    new_h = basic_step(tensors, operators, layer, x, h, r, step_shape, ("r", "z", "h_next"), version=5,
                       options=FullyConnectedOptions(keep_num_dims=True))  # [B,1,U]: FULLY_CONNECTED keeps its dims
    written = tensors.add(Tensor("sequence_next", sequence_shape, shape_signature=signature))
    operators.append(Operator(BuiltinOperator.DYNAMIC_UPDATE_SLICE, [sequence, new_h, begin], [written]))
    stride = tensors.add(Tensor("stride", (), "int32", data=np.asarray(-1 if backward else 1, np.int32)))
    next_t = tensors.add(Tensor("t_next", (), "int32"))
    operators.append(Operator(BuiltinOperator.ADD, [t, stride], [next_t], options=AddOptions()))
    return Subgraph(list(tensors), operators, inputs=[t, h, sequence], outputs=[next_t, new_h, written],
                    name=f"{name}/body")


def _block_body(layer: Layer, name: str, tensors: Tensors, operators: list, begin: int, step_shape, sequence_shape,
                signature, time_axis: int, backward: bool, count: int) -> Subgraph:
    """`count` steps a pass (t .. t + count - 1, backward from the last), as the gated kinds' bodies run them: the
    steps GATHERed and UNPACKed, h [B,U] between them (RESHAPEd from and to the loop's step shape), the new states
    PACKed over their steps of the sequence; t += count (backward: -)."""
    t, h, sequence = 0, 1, 2
    batch, units = step_shape[1 - time_axis], step_shape[-1]
    pieces = gather_block(tensors, operators, t, time_axis, (batch, units), (("x", sequence, units),), count)["x"]
    flat = tensors.add(Tensor("state_shape", (2,), "int32", data=np.asarray((batch, units), np.int32)))
    new_h = tensors.add(Tensor("h_flat", (batch, units)))
    operators.append(Operator(BuiltinOperator.RESHAPE, [h, flat], [new_h]))
    r = tensors.add(weight_tensors(layer)[1])
    new_hs = [None] * count
    for j in (range(count - 1, -1, -1) if backward else range(count)):
        new_h = basic_step(tensors, operators, layer, pieces[j], new_h, r, (batch, units), (f"r{j}", f"z{j}", f"h{j}"))
        new_hs[j] = new_h
    written, next_t = write_back_step(tensors, operators, t, new_hs, sequence, begin, sequence_shape, signature,
                                      time_axis, backward)
    shape = tensors.add(Tensor("step_shape", (3,), "int32", data=np.asarray(step_shape, np.int32)))
    last = tensors.add(Tensor("h_next", step_shape))
    operators.append(Operator(BuiltinOperator.RESHAPE, [new_h, shape], [last]))
    return Subgraph(list(tensors), operators, inputs=[t, h, sequence], outputs=[next_t, last, written],
                    name=f"{name}/body")


def holds_a_layer(model: Model) -> bool:
    """Whether the model's first subgraph has a layer as this lowering writes it (an input projection, or a WHILE
    whose body projects each step: a full-int8 LSTM's loop)."""
    if not model.subgraphs:
        return False
    from ..cells import portable_markers

    suffixes = ("/input_weights", *portable_markers())

    def projects(graph) -> bool:
        return any(op.code == BuiltinOperator.FULLY_CONNECTED and len(op.inputs) == 3 and
                   0 <= op.inputs[1] < len(graph.tensors) and graph.tensors[op.inputs[1]].name.endswith(suffixes)
                   for op in graph.operators)

    loops = [op.options.body_subgraph_index for op in model.subgraphs[0].operators if op.code == BuiltinOperator.WHILE
             and 0 < getattr(op.options, "body_subgraph_index", -1) < len(model.subgraphs)]
    return projects(model.subgraphs[0]) or any(projects(model.subgraphs[k]) for k in loops)


def recover(model: Model) -> Network:
    """The network a portable model holds; ModelFormatError when it is not one (whatever is wrong in it: a model
    read from a file may be anything). The inverse of `lower`."""
    from ..errors import ModelFormatError, TflrnnError

    try:
        return _recover(model)
    except TflrnnError:
        raise
    except (IndexError, KeyError, ValueError, TypeError, AttributeError) as exc:
        raise ModelFormatError(f"not a model the portable lowering writes: {type(exc).__name__} "
                               f"{' '.join(str(exc).split())[:120]}") from None


def _recover(model: Model) -> Network:
    """recover(), on a model that may be malformed anywhere.

    Read from the serving subgraph's ops: each layer direction is a FULLY_CONNECTED projection of its input by a
    constant `<name>/input_weights` (two reading the same input: a bidirectional layer, forward first), the UNPACK
    of that projection (its axis is the time axis), and the step ops on its slices (an ADD's fused activation, or a
    TANH after it); Dense layers are FULLY_CONNECTEDs by a `<name>/kernel`."""
    from ..cell import CellWeights
    from ..errors import ModelFormatError
    from ..network import DENSE_ACTIVATIONS, Dense
    from .common import DENSE_FOLLOWERS
    from .fused import dense_activation
    from ..cells import portable_markers
    from .int8 import real_values, recover_plan

    if not model.subgraphs:
        raise ModelFormatError("the model has no subgraphs")
    graph = model.subgraphs[0]
    tensors, ops = graph.tensors, graph.operators

    def tensor(index: int) -> Tensor:
        if not 0 <= index < len(tensors):
            raise ModelFormatError(f"an op names tensor {index} of {len(tensors)}")
        return tensors[index]

    def readers_of(operators: list[Operator]):
        readers: dict[int, list[Operator]] = {}
        for op in operators:  # built once: a hostile model may have thousands of ops
            for index in dict.fromkeys(op.inputs):
                readers.setdefault(index, []).append(op)
        return lambda index: readers.get(index, [])

    consumers = readers_of(ops)

    def loop_of(op: Operator, name: str):
        """A loop's (R, time axis, the step ops reading x_t, their graph's consumers), from its body subgraph."""
        if op.options is None or not 0 <= getattr(op.options, "body_subgraph_index", -1) < len(model.subgraphs) or \
                len(op.inputs) != 3 or len(op.outputs) != 3:
            raise ModelFormatError(f"layer '{name}': its loop has no body subgraph or not (t, h, sequence)")
        index = op.options.body_subgraph_index
        if index not in bodies:  # read once: a hostile model may point many loops at one large body
            body = model.subgraphs[index]
            weights = {t.name: t for t in body.tensors if t.name.endswith("/recurrent_weights")}
            pack = next((o for o in body.operators if o.code == BuiltinOperator.PACK), None)
            # step t's slice, or the first of a pass's steps (_block_body)
            piece = next((o for o in body.operators if o.code in (BuiltinOperator.SLICE, BuiltinOperator.UNPACK)),
                         None)
            if pack is None or piece is None or not body.inputs or body.inputs[0] not in pack.inputs:
                raise ModelFormatError(f"layer '{name}': its loop body does not slice step t out of the sequence")
            in_body = readers_of(body.operators)
            bodies[index] = (weights, pack.inputs.index(body.inputs[0]), in_body(piece.outputs[0]), in_body)
        weights, axis, after, in_body = bodies[index]
        whiles[id(op)] = (name, op)
        return weights.get(f"{name}/recurrent_weights"), axis, after, in_body

    def check_bounds(name: str, op: Operator, steps: int, dynamic: bool) -> int:
        """The loop runs t over the steps once, forward from 0 while t < T or backward from T-k while t >= 0, by
        the k steps of a pass each time (k divides T; 1 with a dynamic T): a verifier must not hang on a model whose
        loop never ends. Returns k."""
        def constant(graph, index):
            if not 0 <= index < len(graph.tensors) or graph.tensors[index].data is None or \
                    graph.tensors[index].data.size != 1:
                return None
            return int(graph.tensors[index].data.reshape(-1)[0])

        body = model.subgraphs[op.options.body_subgraph_index]
        cond_index = op.options.cond_subgraph_index
        if not 0 < cond_index < len(model.subgraphs) or cond_index == op.options.body_subgraph_index:
            raise ModelFormatError(f"layer '{name}': its loop has no condition subgraph of its own")
        cond = model.subgraphs[cond_index]
        if op.options.body_subgraph_index not in strides:  # once per body, however many loops share it
            step = next((o for o in body.operators if o.code == BuiltinOperator.ADD and body.inputs[0] in o.inputs
                         and len(o.inputs) == 2 and body.outputs and o.outputs == [body.outputs[0]]), None)
            strides[op.options.body_subgraph_index] = None if step is None else constant(
                body, step.inputs[1 - step.inputs.index(body.inputs[0])])
        stride = strides[op.options.body_subgraph_index]
        test = cond.operators[-1] if cond.operators and cond.inputs else None
        per_pass = abs(stride) if stride else 0
        if not 0 < per_pass <= steps or steps % per_pass or (dynamic and per_pass != 1) or test is None or \
                len(test.inputs) != 2 or test.inputs[0] != cond.inputs[0]:
            raise ModelFormatError(f"layer '{name}': its loop does not step t by the steps of a pass (dividing the "
                                   f"{steps} steps) under a condition on t")
        limit, start = constant(cond, test.inputs[1]), constant(graph, op.inputs[0])
        forward = (test.code == BuiltinOperator.LESS and stride > 0 and start == 0 and
                   (limit == steps or (dynamic and limit is None)))
        backward = (test.code == BuiltinOperator.GREATER_EQUAL and stride < 0 and limit == 0 and
                    (start == steps - per_pass or (dynamic and start is None)))
        if not (forward or backward):
            raise ModelFormatError(f"layer '{name}': its loop does not run t over the {steps} steps once (from "
                                   f"{start}, by {stride}, {op_name(test.code)} {limit})")
        return per_pass

    def requantized(projected: int) -> int:
        """Full int8 on an int16 input: the projection's int16, QUANTIZEd to its int8 format."""
        step = next((u for u in consumers(projected) if u.code == BuiltinOperator.QUANTIZE and u.outputs), None)
        return projected if step is None else step.outputs[0]

    fc = BuiltinOperator.FULLY_CONNECTED
    markers = portable_markers()  # each other kind's projection weights' suffix

    def body_projection(op):
        """A WHILE whose body projects each step itself (a full-int8 LSTM's loop: lowering/lstm.py): that
        FULLY_CONNECTED and its body, or None."""
        index = getattr(op.options, "body_subgraph_index", -1)
        if op.code != BuiltinOperator.WHILE or not 0 < index < len(model.subgraphs):
            return None
        body = model.subgraphs[index]
        inner = next((o for o in body.operators if o.code == fc and len(o.inputs) == 3 and 0 <= o.inputs[1] < len(
            body.tensors) and body.tensors[o.inputs[1]].name.endswith(tuple(markers))), None)
        return None if inner is None else (inner, body)

    projections = [op for op in ops if (op.code == fc and len(op.inputs) == 3 and
                                        tensor(op.inputs[1]).name.endswith(("/input_weights", *markers)))
                   or body_projection(op) is not None]
    if not projections:
        raise ModelFormatError("no portable RNN layer in the model (a FULLY_CONNECTED by <name>/input_weights)")
    layers: dict = {}  # by the weights' tensor (subgraph 0's index, or (body, index) for a loop's own projection)
    stages, source, axis, loops, whiles, bodies, strides, activations = [], None, None, [], {}, {}, {}, {}
    weight_types = set()
    for op in projections:
        inner = body_projection(op)
        if inner is not None:  # the loop projects each step of its input sequence (the WHILE's fourth value)
            projection, body = inner
            w, key, read_from = body.tensors[projection.inputs[1]], (id(body), projection.inputs[1]), op.inputs[3:4]
        else:
            w, key, read_from = tensor(op.inputs[1]), op.inputs[1], op.inputs[:1]
        weight_types.add(w.dtype)
        name = w.name.rpartition("/")[0]
        other = next((k for marker, k in markers.items() if w.name.endswith(marker)), None)
        if other is not None:  # another kind's direction: its weights by name, its time axis from its steps
            steps_module, title = other.portable_steps(), other.title
            loop = op if inner is not None else next((u for u in consumers(op.outputs[0])
                                                      if u.code == BuiltinOperator.WHILE), None)
            loops.append(loop is not None)
            if loop is not None:
                values = steps_module.LOOP_VALUES
                if not 0 <= getattr(loop.options, "body_subgraph_index", -1) < len(model.subgraphs) or \
                        len(loop.inputs) != values or len(loop.outputs) != values:
                    raise ModelFormatError(f"{title} layer '{name}': its loop has no body or not the {values} "
                                           "values its steps carry")
                body = model.subgraphs[loop.options.body_subgraph_index]
                pack = next((o for o in body.operators if o.code == BuiltinOperator.PACK), None)
                if pack is None or not body.inputs or body.inputs[0] not in pack.inputs:
                    raise ModelFormatError(f"{title} layer '{name}': its loop body does not read step t")
                axis = pack.inputs.index(body.inputs[0])
                whiles[id(loop)] = (name, loop)
                places = (graph, body)
            else:
                projected = requantized(op.outputs[0])
                rows = next((u for u in consumers(projected) if u.code == BuiltinOperator.RESHAPE), None)
                if rows is not None and rows.outputs:  # full int8: the projection is made on rows, reshaped back
                    projected = rows.outputs[0]
                unpack = next((u for u in consumers(projected) if u.code == BuiltinOperator.UNPACK), None)
                if unpack is None or unpack.options is None:
                    raise ModelFormatError(f"{title} layer '{name}': its projection is neither unpacked nor looped "
                                           "over")
                axis, places = unpack.options.axis, (graph,)
            named = {t.name: t for place in places for t in place.tensors if t.name.startswith(f"{name}/")}
            if key not in layers:
                constant = lambda n: real_values(named[n]) if n in named else None  # noqa: E731
                settings = getattr(steps_module, "recover_settings", lambda *_: {})(name, constant)
                layers[key] = Layer(name, Activation.TANH, steps_module.recover_weights(name, constant), **settings)
            layer = layers[key]
            if read_from[:1] == [source] and stages and not isinstance(stages[-1], tuple):
                stages[-1] = (stages[-1], layer)
            else:
                stages.append(layer)
            source = read_from[0] if read_from else None
            continue
        projected = requantized(op.outputs[0])
        rows = next((u for u in consumers(projected) if u.code == BuiltinOperator.RESHAPE), None)
        if rows is not None and rows.outputs:  # full int8: the projection is made on rows, then reshaped back
            projected = rows.outputs[0]
        unpack = next((u for u in consumers(projected) if u.code == BuiltinOperator.UNPACK), None)
        loop = next((u for u in consumers(op.outputs[0]) if u.code == BuiltinOperator.WHILE), None)
        loops.append(loop is not None)
        if loop is not None:
            r, axis, after, step_consumers = loop_of(loop, name)
        elif unpack is not None and unpack.options is not None:
            r = next((t for t in tensors if t.name == f"{name}/recurrent_weights"), None)
            axis, step_consumers = unpack.options.axis, consumers
            after = [o for t in unpack.outputs for o in consumers(t)]
        else:
            raise ModelFormatError(f"layer '{name}': its projection is neither unpacked over time nor looped over")
        arrays = [None if t is None else real_values(t) for t in (w, r, tensor(op.inputs[2]))]
        if any(a is None for a in arrays):
            raise ModelFormatError(f"layer '{name}': its input_weights, recurrent_weights and bias must be constants "
                                   "(float32, or int8 and int32 quantized per channel)")
        # Once per UNPACK or loop body: many projections of a hostile model may share one
        key = ("loop", loop.options.body_subgraph_index) if loop is not None else ("unpack", id(unpack))
        if key not in activations:
            activations[key] = _step_activation(after, step_consumers)
        activation = activations[key]
        if op.inputs[1] not in layers:  # a reused cell's directions read the same weights: one Layer
            layers[op.inputs[1]] = Layer(name, activation, CellWeights(*arrays))
        layer = layers[op.inputs[1]]
        if op.inputs[0] == source and stages and not isinstance(stages[-1], tuple):
            stages[-1] = (stages[-1], layer)  # a second direction over the same input: the backward one
        else:
            stages.append(layer)
        source = op.inputs[0]

    dense = []
    for op in ops:
        if op.code == fc and len(op.inputs) == 3 and tensor(op.inputs[1]).name.endswith("/kernel"):
            result = op.outputs[0]
            # on an int16 input (after a full-int8 LSTM), the 16x8 kernel's int16 result QUANTIZEd to int8 first
            requantized = next((o for o in consumers(result) if o.code == BuiltinOperator.QUANTIZE), None)
            result = requantized.outputs[0] if requantized is not None and requantized.outputs else result
            following = next((o for o in consumers(result) if o.code in DENSE_FOLLOWERS), None)
            kernel, bias = tensor(op.inputs[1]), tensor(op.inputs[2])
            dense.append((op, Dense(kernel.name.rpartition("/")[0], real_values(kernel), real_values(bias),
                                    dense_activation(op, following))))
    end = dense[0][0].inputs[0] if dense else graph.outputs[0]
    rows = next((o for o in ops if o.outputs == [end] and o.code == BuiltinOperator.RESHAPE), None)
    if dense and rows is not None and tensor(end).name.endswith("/input_rows"):
        end = rows.inputs[0]  # full int8: a Dense layer on a sequence reads its rows
    x = tensor(graph.inputs[0]) if graph.inputs else None
    if x is None or len(x.shape) != 3 or axis not in (0, 1) or min(x.shape) < 1:
        raise ModelFormatError("the serving subgraph's first input is not a [B,T,I] or [T,B,I] sequence")
    state = ("carry" if any(op.code == BuiltinOperator.CALL_ONCE for op in ops) else
             "io" if len(graph.inputs) > 1 else "zero")
    two_outputs = sum(1 for k in (model.signatures[0].outputs if model.signatures else {}) if k.startswith(
        SIGNATURE_OUTPUT)) == 2
    width = x.shape[2]
    for stage in stages:  # the sizes must chain, as lower() writes them
        for layer in stage_layers(stage):
            if layer.weights.input_size != width:
                raise ModelFormatError(f"layer '{layer.name}' takes {layer.weights.input_size} inputs, but {width} "
                                       "come before it")
        width = sum(layer.weights.num_units for layer in stage_layers(stage))
    for _, d in dense:
        if d.activation not in DENSE_ACTIVATIONS:
            raise ModelFormatError(f"Dense '{d.name}' has {d.activation}, not one tflrnn writes")
        if d.weights is None or d.bias is None or d.weights.ndim != 2 or d.weights.shape[1] != width or \
                d.bias.shape != (d.weights.shape[0],) or d.weights.dtype != np.float32 or d.bias.dtype != np.float32:
            raise ModelFormatError(f"Dense '{d.name}' is not a float32 kernel [units, {width}] and bias [units]")
        width = d.units
    dynamic_time = x.shape_signature is not None and len(x.shape_signature) == 3 and x.shape_signature[axis] == -1
    if dynamic_time and not all(loops):
        raise ModelFormatError("a dynamic time axis with unrolled steps: lower() writes it only as a loop")
    passes = {check_bounds(name, op, x.shape[axis], dynamic_time) for name, op in whiles.values()}
    if len(passes) > 1:  # lower() writes every loop of a network with the same steps a pass
        raise ModelFormatError(f"the model's loops run different steps a pass ({', '.join(map(str, sorted(passes)))})")
    network = Network(stages, time_steps=x.shape[axis], batch_size=x.shape[1 - axis], time_major=axis == 0,
                      dynamic_time=dynamic_time,
                      last_step=len(tensor(end).shape) == 2, merge=not two_outputs, head=[d for _, d in dense],
                      state=state, lowering="portable", loop=_one_form(loops),
                      steps_per_iteration=passes.pop() if passes else 1)
    if "int8" in weight_types:
        network.int8 = recover_plan(model, network)
    return network


def _step_activation(after: list[Operator], consumers) -> Activation:
    """A layer's activation, from the ops that read its steps' inputs: a TANH after the ADD, else the ADD's fused
    one (or a RELU-family op of its own)."""
    if any(o.code == BuiltinOperator.TANH for o in after) or any(
            o.code == BuiltinOperator.TANH for a in after if a.code == BuiltinOperator.ADD
            for o in consumers(a.outputs[0])):
        return Activation.TANH
    codes = {BuiltinOperator.RELU: Activation.RELU, BuiltinOperator.RELU6: Activation.RELU6,
             BuiltinOperator.RELU_N1_TO_1: Activation.RELU_N1_TO_1}
    activation = Activation.NONE
    for o in after:
        if o.code == BuiltinOperator.ADD and o.options is not None:
            activation = Activation(o.options.activation)
        elif o.code in codes:
            activation = codes[o.code]
    return activation


def _one_form(loops: list[bool]) -> bool:
    """Whether the layers loop: all of them, or none (lower() writes one form)."""
    from ..errors import ModelFormatError

    if len(set(loops)) > 1:
        raise ModelFormatError("some layers loop over the steps and others unroll them: not a model tflrnn writes")
    return loops[0]


def exported_weights(description: Model) -> tuple[list, list]:
    """What `tflrnn weights` writes of a portable model: the network it holds, each direction's (name, weights) and
    each Dense layer's (kernel name, bias name, kernel, bias)."""
    recovered = recover(description)
    return ([(layer.name, layer.weights) for layer in recovered.layers],
            [(f"{d.name}/kernel", f"{d.name}/bias", d.weights, d.bias) for d in recovered.head])
