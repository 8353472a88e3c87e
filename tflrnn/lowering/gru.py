"""A GRU's steps in the portable lowering (plain builtin ops every TFLite runtime has; no builtin GRU op exists).

Per direction, the input projections of every step at once, one FULLY_CONNECTED per gate group (so XNNPACK packs
each weight matrix once and the graph stays one delegate partition):
    G = FULLY_CONNECTED(x, W_zr, b_zr)   [B,T,2U]          C = FULLY_CONNECTED(x, W_n, b_n)   [B,T,U]
then each step t (unrolled, or as a WHILE loop's body over (t, h, C, G), writing h_t into C's slice t):
    g = LOGISTIC(ADD(G_t, FULLY_CONNECTED(h, R_zr, c_zr)));  z, r = SPLIT(g)
    reset after:  n = TANH(ADD(C_t, MUL(r, FULLY_CONNECTED(h, R_n, c_n))))
    reset before: n = TANH(ADD(C_t, FULLY_CONNECTED(MUL(r, h), R_n)))
    h' = ADD(n, MUL(z, SUB(h, n)))                                 (= z h + (1 - z) n)
The weights are the GRUWeights roles split by rows into the gate group (z, r) and the candidate (n), named
<layer>/gate_input_weights, <layer>/candidate_input_weights, ... ; `recover_weights` joins them back.
"""

from __future__ import annotations

import numpy as np

from ..cells.gru import GRUWeights
from ..model import (AddOptions, BuiltinOperator, FullyConnectedOptions, MulOptions, Operator, PackOptions,
                     SplitOptions, SubOptions, Tensor, UnpackOptions, WhileOptions)
from .common import Tensors

# Role -> the names of its gate-group and candidate tensors.
PARTS = {role: (f"gate_{role}", f"candidate_{role}")
         for role in ("input_weights", "recurrent_weights", "bias", "recurrent_bias")}
MARKER = "/gate_input_weights"  # how the reader finds a GRU direction: its gate projection's weights


def weight_tensors(layer, role: str) -> tuple[Tensor, Tensor] | None:
    """The gate-group and candidate tensors of one role (None: the cell has no such role)."""
    array = layer.weights.roles().get(role)
    if array is None:
        return None
    return tuple(Tensor(f"{layer.name}/{part}", piece.shape, data=piece)
                 for part, piece in zip(PARTS[role], layer.weights.gate_rows(array)))


def write_direction(g, layer, source: int, h: int | None, backward: bool, name: str, sequence: bool):
    """One direction of a GRU layer into the serving graph `g` (portable.lower's builder): (its output sequence,
    or None when not `sequence`; its final state)."""
    tensors, operators = g.tensors, g.operators
    units = layer.weights.num_units
    if layer.name not in g.weights:  # a reused cell's directions share them
        found = {"input_weights": tensors.add(*weight_tensors(layer, "input_weights")) - 1,
                 "bias": tensors.add(*weight_tensors(layer, "bias")) - 1}
        if not g.network.loop:  # else R and c live in the loop's body
            found["recurrent_weights"] = tensors.add(*weight_tensors(layer, "recurrent_weights")) - 1
            if layer.weights.reset_after:
                found["recurrent_bias"] = tensors.add(*weight_tensors(layer, "recurrent_bias")) - 1
        g.weights[layer.name] = found
    found = g.weights[layer.name]
    gates = tensors.add(g.sequence_of(f"{name}/gate_projection", 2 * units))
    candidate = tensors.add(g.sequence_of(f"{name}/candidate_projection", units))
    for part, out in ((0, gates), (1, candidate)):
        operators.append(Operator(BuiltinOperator.FULLY_CONNECTED, [source, found["input_weights"] + part,
                                                                     found["bias"] + part], [out],
                                  version=5, options=FullyConnectedOptions(keep_num_dims=True)))
    if h is None:  # the zero state: the steps still need one to start from
        h = tensors.add(Tensor(f"{name}/zeros", (g.batch, units), data=np.zeros((g.batch, units), np.float32)))
    if g.network.loop:
        return _loop(g, layer, name, gates, candidate, h, backward)
    return _unrolled(g, layer, name, gates, candidate, h, found, backward, sequence)


def _unrolled(g, layer, name, gates, candidate, h, found, backward, sequence):
    tensors, operators, steps, batch = g.tensors, g.operators, g.steps, g.batch
    units = layer.weights.num_units
    pieces = {}
    for what, source, width in (("g", gates, 2 * units), ("c", candidate, units)):
        first = len(tensors)
        tensors.add(*(Tensor(f"{name}/{what}{t}", (batch, width)) for t in range(steps)))
        operators.append(Operator(BuiltinOperator.UNPACK, [source], list(range(first, first + steps)),
                                  options=UnpackOptions(num=steps, axis=g.time_axis)))
        pieces[what] = first
    axis = tensors.add(Tensor(f"{name}/split_axis", (), "int32", data=np.asarray(1, np.int32)))
    weights = (found["recurrent_weights"], found["recurrent_weights"] + 1,
               found.get("recurrent_bias", -1), found["recurrent_bias"] + 1 if "recurrent_bias" in found else -1)
    outputs = [None] * steps
    for t in (range(steps - 1, -1, -1) if backward else range(steps)):
        h = write_step(tensors, operators, pieces["g"] + t, pieces["c"] + t, h, weights, axis, f"{name}/", t,
                       (batch, units), layer.weights.reset_after)
        outputs[t] = h
    output = None
    if sequence:
        output = tensors.add(Tensor(f"{layer.name}/output", (*g.lead, units)))
        operators.append(Operator(BuiltinOperator.PACK, outputs, [output],
                                  options=PackOptions(values_count=steps, axis=g.time_axis)))
    return output, h


def write_step(tensors: Tensors, operators: list, gate_in: int, candidate_in: int, h: int, weights, axis: int,
               prefix: str, t, shape: tuple, reset_after: bool) -> int:
    """One step's ops (module docstring); `weights` = (R_zr, R_n, c_zr, c_n) indices (-1: no bias). The new h."""
    r_gates, r_candidate, c_gates, c_candidate = weights
    gate_shape = (*shape[:-1], 2 * shape[-1])
    # A step in the loop body is [1,B,U] (or [B,1,U]): FULLY_CONNECTED keeps its dims there (version 5).
    fc = ({"version": 5, "options": FullyConnectedOptions(keep_num_dims=True)} if len(shape) == 3 else
          {"options": FullyConnectedOptions()})

    def op(code, inputs, tensor_name, out_shape=shape, **kwargs):
        out = tensors.add(Tensor(f"{prefix}{tensor_name}{t}", out_shape))
        operators.append(Operator(code, inputs, [out], **kwargs))
        return out

    recurrent = op(BuiltinOperator.FULLY_CONNECTED, [h, r_gates, c_gates], "rg", gate_shape, **fc)
    summed = op(BuiltinOperator.ADD, [gate_in, recurrent], "ag", gate_shape, options=AddOptions())
    gate = op(BuiltinOperator.LOGISTIC, [summed], "gate", gate_shape)
    z = tensors.add(Tensor(f"{prefix}u{t}", shape), Tensor(f"{prefix}reset{t}", shape)) - 1
    operators.append(Operator(BuiltinOperator.SPLIT, [axis, gate], [z, z + 1], options=SplitOptions(num_splits=2)))
    if reset_after:
        product = op(BuiltinOperator.FULLY_CONNECTED, [h, r_candidate, c_candidate], "rn", **fc)
        reset = op(BuiltinOperator.MUL, [z + 1, product], "m", options=MulOptions())
    else:
        reset_h = op(BuiltinOperator.MUL, [z + 1, h], "rh", options=MulOptions())
        reset = op(BuiltinOperator.FULLY_CONNECTED, [reset_h, r_candidate, -1], "m", **fc)
    candidate = op(BuiltinOperator.ADD, [candidate_in, reset], "an", options=AddOptions())
    n = op(BuiltinOperator.TANH, [candidate], "n")
    difference = op(BuiltinOperator.SUB, [h, n], "d", options=SubOptions())
    kept = op(BuiltinOperator.MUL, [z, difference], "e", options=MulOptions())
    return op(BuiltinOperator.ADD, [n, kept], "h", options=AddOptions())


def _loop(g, layer, name, gates, candidate, h, backward):
    """The steps as a WHILE loop over (t, h, candidate projection, gate projection): the body slices step t of
    both, runs write_step and writes h_t over the candidate's slice t, which becomes the output sequence."""
    from . import portable

    tensors, operators = g.tensors, g.operators
    units, batch = layer.weights.num_units, g.batch
    step_shape = (1, batch, units) if g.network.time_major else (batch, 1, units)
    start = g.reshaped(h, step_shape, f"{name}/h_start")
    t0 = g.loop_start(name, candidate, backward)
    t_end = tensors.add(Tensor(f"{name}/t_end", (), "int32"))
    h_end = tensors.add(Tensor(f"{name}/h_end", step_shape))
    output = tensors.add(g.sequence_of(f"{layer.name}/output", units))
    gates_end = tensors.add(g.sequence_of(f"{name}/gate_projection_end", 2 * units))
    cond = g.first_loop_subgraph + len(g.loops)
    shapes = (step_shape, tensors[output].shape, tensors[output].shape_signature)
    extra = [Tensor("gates", tensors[gates].shape, shape_signature=tensors[gates].shape_signature)]
    g.loops.extend([portable._loop_condition(name, *shapes, g.steps, backward, g.time_axis, extra),
                    _loop_body(layer, name, *shapes, tensors[gates], g.time_axis, backward)])
    operators.append(Operator(BuiltinOperator.WHILE, [t0, start, candidate, gates], [t_end, h_end, output, gates_end],
                              options=WhileOptions(cond_subgraph_index=cond, body_subgraph_index=cond + 1)))
    return output, g.reshaped(h_end, (batch, units), f"{name}/final_state")


def _loop_body(layer, name, step_shape, sequence_shape, signature, gates_tensor: Tensor, time_axis: int,
               backward: bool):
    from ..model import Subgraph

    tensors = Tensors([Tensor("t", (), "int32"), Tensor("h", step_shape),
                       Tensor("sequence", sequence_shape, shape_signature=signature),
                       Tensor("gates", gates_tensor.shape, shape_signature=gates_tensor.shape_signature)])
    t, h, sequence, gates = 0, 1, 2, 3
    operators = []
    zero = tensors.add(Tensor("zero", (), "int32", data=np.asarray(0, np.int32)))
    begin = tensors.add(Tensor("begin", (3,), "int32"))
    corner = [zero, zero, zero]
    corner[time_axis] = t
    operators.append(Operator(BuiltinOperator.PACK, corner, [begin], options=PackOptions(values_count=3, axis=0)))
    gate_shape = (*step_shape[:-1], 2 * step_shape[-1])
    sliced = {}
    for what, source, shape in (("x", sequence, step_shape), ("g", gates, gate_shape)):
        size = tensors.add(Tensor(f"{what}_size", (3,), "int32", data=np.asarray(shape, np.int32)))
        sliced[what] = tensors.add(Tensor(what, shape))
        operators.append(Operator(BuiltinOperator.SLICE, [source, begin, size], [sliced[what]]))
    r = tensors.add(*weight_tensors(layer, "recurrent_weights")) - 1
    c = (tensors.add(*weight_tensors(layer, "recurrent_bias")) - 1) if layer.weights.reset_after else None
    axis = tensors.add(Tensor("split_axis", (), "int32", data=np.asarray(2, np.int32)))
    new_h = write_step(tensors, operators, sliced["g"], sliced["x"], h,
                       (r, r + 1, -1 if c is None else c, -1 if c is None else c + 1), axis, "", "",
                       step_shape, layer.weights.reset_after)
    written = tensors.add(Tensor("sequence_next", sequence_shape, shape_signature=signature))
    operators.append(Operator(BuiltinOperator.DYNAMIC_UPDATE_SLICE, [sequence, new_h, begin], [written]))
    stride = tensors.add(Tensor("stride", (), "int32", data=np.asarray(-1 if backward else 1, np.int32)))
    next_t = tensors.add(Tensor("t_next", (), "int32"))
    operators.append(Operator(BuiltinOperator.ADD, [t, stride], [next_t], options=AddOptions()))
    return Subgraph(list(tensors), operators, inputs=[t, h, sequence, gates],
                    outputs=[next_t, new_h, written, gates], name=f"{name}/body")


def recover_weights(name: str, constant) -> GRUWeights:
    """The GRUWeights of layer `name` from its tensors: `constant(tensor name)` gives a constant's real values
    (None where there is none)."""
    from ..errors import ModelFormatError

    joined = {}
    for role, parts in PARTS.items():
        pieces = [constant(f"{name}/{part}") for part in parts]
        if all(p is None for p in pieces) and role == "recurrent_bias":
            joined[role] = None  # a reset-before cell
            continue
        if any(p is None for p in pieces):
            raise ModelFormatError(f"GRU layer '{name}': its {role} ({' and '.join(parts)}) are not both constants")
        joined[role] = np.concatenate(pieces)
    return GRUWeights(**joined)
