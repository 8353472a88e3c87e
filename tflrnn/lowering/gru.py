"""A GRU's steps in the portable lowering (plain builtin ops every TFLite runtime has; no builtin GRU op exists).

Per direction, the input projections of every step at once, one FULLY_CONNECTED per gate group (so XNNPACK packs
each weight matrix once and the graph stays one delegate partition):
    G = FULLY_CONNECTED(x, W_zr, b_zr)   [B,T,2U]          C = FULLY_CONNECTED(x, W_n, b_n)   [B,T,U]
then each step t (unrolled, or as a WHILE loop's body over (t, h, C, G) gathering step t, writing h_t into C's step t):
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
from ..model import (Activation, AddOptions, BuiltinOperator, FullyConnectedOptions, MulOptions, Operator,
                     PackOptions, Quantization, SplitOptions, SubOptions, Tensor, UnpackOptions, WhileOptions)
from .common import Tensors

# Role -> the names of its gate-group and candidate tensors.
PARTS = {role: (f"gate_{role}", f"candidate_{role}")
         for role in ("input_weights", "recurrent_weights", "bias", "recurrent_bias")}
INT8_VALUE_BITS = 8  # its full-int8 values: int8
INT8_LOOPS = False  # its full-int8 steps are unrolled
MARKER = "/gate_input_weights"  # how the reader finds a GRU direction: its gate projection's weights
LOOP_VALUES = 4  # t, h, the candidate projection (becoming the output), the gate projection


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
    tensors, units = g.tensors, layer.weights.num_units
    if layer.name not in g.weights:  # a reused cell's directions share them
        found = {"input_weights": tensors.add(*weight_tensors(layer, "input_weights")) - 1,
                 "bias": tensors.add(*weight_tensors(layer, "bias")) - 1}
        if not g.network.loop:  # else R and c live in the loop's body
            found["recurrent_weights"] = tensors.add(*weight_tensors(layer, "recurrent_weights")) - 1
            if layer.weights.reset_after:
                found["recurrent_bias"] = tensors.add(*weight_tensors(layer, "recurrent_bias")) - 1
        g.weights[layer.name] = found
    found = g.weights[layer.name]
    gates, candidate = g.project_groups(source, found, ((f"{name}/gate_projection", 2 * units),
                                                        (f"{name}/candidate_projection", units)))
    if h is None:  # the zero state: the steps still need one to start from
        h = tensors.add(Tensor(f"{name}/zeros", (g.batch, units), data=np.zeros((g.batch, units), np.float32)))
    if g.network.loop:
        return _loop(g, layer, name, gates, candidate, h, backward)
    return _unrolled(g, layer, name, gates, candidate, h, found, backward, sequence)


def _unrolled(g, layer, name, gates, candidate, h, found, backward, sequence):
    tensors, operators, steps, batch = g.tensors, g.operators, g.steps, g.batch
    units = layer.weights.num_units
    pieces = g.unpack_steps(name, (("g", gates, 2 * units), ("c", candidate, units)))
    axis = tensors.add(Tensor(f"{name}/split_axis", (), "int32", data=np.asarray(1, np.int32)))
    weights = (found["recurrent_weights"], found["recurrent_weights"] + 1,
               found.get("recurrent_bias", -1), found["recurrent_bias"] + 1 if "recurrent_bias" in found else -1)
    outputs = [None] * steps
    for t in (range(steps - 1, -1, -1) if backward else range(steps)):
        h = write_step(tensors, operators, pieces["g"] + t, pieces["c"] + t, h, weights, axis, f"{name}/", t,
                       (batch, units), layer.weights.reset_after)
        outputs[t] = h
    return (g.pack_output(layer.name, outputs, units) if sequence else None), h


# The tensor each step value is written to: its name stem (<layer>/<stem><t>), by role, and the role of its int8
# format (quantization.py; `gate` and `candidate` are the kernels' fixed LOGISTIC and TANH outputs). Reset after:
# `rn` is h R_n + c_n and `m` r times it; reset before: `rh` is r h and `m` (r h) R_n.
STEP_ROLES = {"rg": "gate_recurrent", "ag": "gate_sum", "gate": "gate", "z": "gate", "reset": "gate",
              "rn": "candidate_recurrent", "rh": "reset_product", "an": "candidate_sum", "n": "candidate",
              "d": "difference", "e": "kept", "h": "state",
              "zh": "kept_state", "w": "complement", "wn": "kept_candidate"}
INT8_VERSIONS = {BuiltinOperator.FULLY_CONNECTED: 4}  # op_version.cc: int8 FULLY_CONNECTED 4, the others 2


def write_step(tensors: Tensors, operators: list, gate_in: int, candidate_in: int, h: int, weights, axis: int,
               prefix: str, t, shape: tuple, reset_after: bool, formats: dict | None = None, one: int = -1) -> int:
    """One step's ops (module docstring); `weights` = (R_zr, R_n, c_zr, c_n) indices (-1: no bias). The new h.
    With `formats` (a full-int8 GRU: role -> Int8Format, the fixed ones included), every value is int8, and `one`
    is an int8 constant 1 (for 1 - z)."""
    r_gates, r_candidate, c_gates, c_candidate = weights
    gate_shape = (*shape[:-1], 2 * shape[-1])
    # A step in the loop body is [1,B,U] (or [B,1,U]): FULLY_CONNECTED keeps its dims there (version 5).
    fc = ({"version": 5, "options": FullyConnectedOptions(keep_num_dims=True)} if len(shape) == 3 else
          {"options": FullyConnectedOptions()})

    def value(stem: str, out_shape, role: str | None = None) -> Tensor:
        if formats is None:
            return Tensor(f"{prefix}{stem}{t}", out_shape)
        fmt = formats[role or STEP_ROLES[stem]]
        return Tensor(f"{prefix}{stem}{t}", out_shape, "int8", quantization=Quantization((fmt.scale,),
                                                                                         (fmt.zero_point,)))

    def op(code, inputs, stem, out_shape=shape, role=None, **kwargs):
        out = tensors.add(value(stem, out_shape, role))
        if formats is not None:
            kwargs["version"] = INT8_VERSIONS.get(code, 2)
            if code == BuiltinOperator.MUL:  # op_version.cc: version 3 when the rescale s_a s_b / s_out is >= 1
                s_a, s_b = (tensors[i].quantization.scale[0] for i in inputs)
                kwargs["version"] = 3 if s_a * s_b / tensors[out].quantization.scale[0] >= 1 else 2
        operators.append(Operator(code, inputs, [out], **kwargs))
        return out

    recurrent = op(BuiltinOperator.FULLY_CONNECTED, [h, r_gates, c_gates], "rg", gate_shape, **fc)
    summed = op(BuiltinOperator.ADD, [gate_in, recurrent], "ag", gate_shape, options=AddOptions())
    gate = op(BuiltinOperator.LOGISTIC, [summed], "gate", gate_shape)
    update = tensors.add(value("z", shape), value("reset", shape)) - 1  # the update gate z, then r
    operators.append(Operator(BuiltinOperator.SPLIT, [axis, gate], [update, update + 1],
                              options=SplitOptions(num_splits=2), version=1 if formats is None else 2))
    if reset_after:
        product = op(BuiltinOperator.FULLY_CONNECTED, [h, r_candidate, c_candidate], "rn", **fc)
        reset = op(BuiltinOperator.MUL, [update + 1, product], "m", role="reset_product", options=MulOptions())
    else:
        reset_h = op(BuiltinOperator.MUL, [update + 1, h], "rh", options=MulOptions())
        reset = op(BuiltinOperator.FULLY_CONNECTED, [reset_h, r_candidate, -1], "m", role="candidate_recurrent",
                   **fc)
    candidate = op(BuiltinOperator.ADD, [candidate_in, reset], "an", options=AddOptions())
    n = op(BuiltinOperator.TANH, [candidate], "n")
    if formats is None:  # h' = n + z (h - n): three ops
        difference = op(BuiltinOperator.SUB, [h, n], "d", options=SubOptions())
        kept = op(BuiltinOperator.MUL, [update, difference], "e", options=MulOptions())
        return op(BuiltinOperator.ADD, [n, kept], "h", options=AddOptions())
    # In int8, h' = z h + (1 - z) n: each product lies within its factor's range (|z h| <= |h|, |(1 - z) n| <= 1),
    # so no format clips it. z (h - n) spans twice the state's range, and clipping its tail (a range chosen by
    # least error) moved the state itself: the max error 2-3x the converter's (measured, docs/model.md).
    kept_state = op(BuiltinOperator.MUL, [update, h], "zh", options=MulOptions())
    complement = op(BuiltinOperator.SUB, [one, update], "w", options=SubOptions())
    kept_candidate = op(BuiltinOperator.MUL, [complement, n], "wn", options=MulOptions())
    return op(BuiltinOperator.ADD, [kept_state, kept_candidate], "h", options=AddOptions())


def write_int8_direction(g, layer, rows: int, backward: bool, sequence: bool):
    """One direction of a full-int8 GRU (lowering/int8.py's graph `g`), its steps unrolled: the projections on the
    stage's input rows (TFLite Micro's per-channel FULLY_CONNECTED takes rank 2), reshaped and unpacked; the same
    write_step as the float GRU, every value int8 in the plan's formats. (Its PACKed output or None, final state.)"""
    from .. import quantization as quant
    from .int8 import _int8_weights, per_channel, per_tensor

    tensors, name, units = g.tensors, layer.name, layer.weights.num_units
    f = g.plan.layers[name]
    formats = {**f.formats, "gate": quant.PROBABILITY_OUTPUT, "candidate": quant.TANH_OUTPUT}
    w = layer.weights
    parts = {}
    for role, scale_role, source in (("input_weights", "input_weights", rows), ("recurrent_weights",
                                                                               "recurrent_weights", None)):
        weights = w.gate_rows(w.roles()[role])
        scales = w.gate_rows(f.scales[scale_role])
        bias_role = "bias" if role == "input_weights" else "recurrent_bias"
        biases = w.gate_rows(w.roles()[bias_role]) if w.roles().get(bias_role) is not None else (None, None)
        for part, array, channel, bias in zip(PARTS[role], weights, scales, biases):
            index = tensors.add(Tensor(f"{name}/{part}", array.shape, "int8", data=_int8_weights(array, channel),
                                       quantization=per_channel(channel)))
            bias_index, bias_name = -1, f"{name}/{part.replace(role, bias_role)}"
            if bias is not None and source is not None:  # int32 (int64 on an int16 input) at its scale x W's
                bias_index = g.bias(source, bias, channel, bias_name)
            elif bias is not None:  # joins h R^T: at the state's scale x R's
                bias_scales = quant.bias_scales(f.state.scale, channel)
                bias_index = tensors.add(Tensor(bias_name, bias.shape, "int32",
                                                data=quant.bias_int32(bias, bias_scales),
                                                quantization=per_channel(bias_scales)))
            parts[part] = (index, bias_index)
    pieces = {}
    for stem, part, width, role in (("g", "gate", 2 * units, "gate_projection"),
                                    ("c", "candidate", units, "candidate_projection")):
        index, bias_index = parts[f"{part}_input_weights"]
        out = g.project(rows, index, bias_index, f"{name}/{part}_projection_rows", formats[role])
        projection = g.reshaped(out, (*g.lead, width), f"{name}/{part}_projection")
        first = len(tensors)
        tensors.add(*(Tensor(f"{name}/{stem}{t}", (g.batch, width), "int8",
                             quantization=tensors[projection].quantization) for t in range(g.steps)))
        g.op(BuiltinOperator.UNPACK, [projection], range(first, first + g.steps), version=2,
             options=UnpackOptions(num=g.steps, axis=g.time_axis))
        pieces[stem] = first
    h, handle = g.initial_state(name, units, f.state)
    if h is None:  # the zero state: zeros at the state's zero point
        h = tensors.add(Tensor(f"{name}/zeros", (g.batch, units), "int8",
                               data=np.full((g.batch, units), f.state.zero_point, np.int8),
                               quantization=per_tensor(f.state)))
    axis = tensors.add(Tensor(f"{name}/split_axis", (), "int32", data=np.asarray(1, np.int32)))
    # 1 exactly: q = 0 at scale 1/128, zero point -128
    one = tensors.add(Tensor(f"{name}/one", (1,), "int8", data=np.zeros(1, np.int8),
                             quantization=Quantization((float(np.float32(1 / 128)),), (-128,))))
    weights = (parts["gate_recurrent_weights"][0], parts["candidate_recurrent_weights"][0],
               parts["gate_recurrent_weights"][1], parts["candidate_recurrent_weights"][1])
    outputs = [None] * g.steps
    for t in (range(g.steps - 1, -1, -1) if backward else range(g.steps)):
        h = write_step(tensors, g.operators, pieces["g"] + t, pieces["c"] + t, h, weights, axis, f"{name}/", t,
                       (g.batch, units), w.reset_after, formats, one)
        outputs[t] = h
    output = None
    if sequence:
        output = g.int8(f"{name}/output", (*g.lead, units), f.state)
        g.op(BuiltinOperator.PACK, outputs, [output], version=2,
             options=PackOptions(values_count=g.steps, axis=g.time_axis))
    g.keep_state(h, handle)
    return output, h


def _loop(g, layer, name, gates, candidate, h, backward):
    """The steps as a WHILE loop over (t, h, candidate projection, gate projection): its body gathers step t of
    both, runs write_step and writes h_t over the candidate's step t, which becomes the output sequence."""
    from . import portable

    tensors, operators = g.tensors, g.operators
    units, batch = layer.weights.num_units, g.batch
    t0 = g.loop_start(name, candidate, backward)
    t_end = tensors.add(Tensor(f"{name}/t_end", (), "int32"))
    h_end = tensors.add(Tensor(f"{name}/h_end", (batch, units)))
    output = tensors.add(g.sequence_of(f"{layer.name}/output", units))
    gates_end = tensors.add(g.sequence_of(f"{name}/gate_projection_end", 2 * units))
    cond = g.first_loop_subgraph + len(g.loops)
    shapes = ((batch, units), tensors[output].shape, tensors[output].shape_signature)
    extra = [Tensor("gates", tensors[gates].shape, shape_signature=tensors[gates].shape_signature)]
    g.loops.extend([portable._loop_condition(name, *shapes, g.steps, backward, g.time_axis, extra),
                    _loop_body(layer, name, *shapes, tensors[gates], g.time_axis, backward,
                               g.network.steps_per_iteration)])
    operators.append(Operator(BuiltinOperator.WHILE, [t0, h, candidate, gates], [t_end, h_end, output, gates_end],
                              options=WhileOptions(cond_subgraph_index=cond, body_subgraph_index=cond + 1)))
    return output, h_end


def _loop_body(layer, name, state_shape, sequence_shape, signature, gates_tensor: Tensor, time_axis: int,
               backward: bool, count: int = 1):
    """Steps t .. t + count - 1 (backward: from the last), then t += count (backward: -). The steps are GATHERed,
    not SLICEd: a SLICE at a begin known only at run time has a dynamic output, and a body with one makes TFLite
    re-prepare its ops and deep-copy the loop's values on every iteration (while.cc: Eval_dynamic); measured in
    docs/model.md#gru."""
    from ..model import Subgraph
    from .portable import gather_block, step_begin, write_back_step

    tensors = Tensors([Tensor("t", (), "int32"), Tensor("h", state_shape),
                       Tensor("sequence", sequence_shape, shape_signature=signature),
                       Tensor("gates", gates_tensor.shape, shape_signature=gates_tensor.shape_signature)])
    t, h, sequence, gates = 0, 1, 2, 3
    operators = []
    begin = step_begin(tensors, operators, t, time_axis)
    pieces = gather_block(tensors, operators, t, time_axis, state_shape,
                          (("x", sequence, state_shape[-1]), ("g", gates, 2 * state_shape[-1])), count)
    r = tensors.add(*weight_tensors(layer, "recurrent_weights")) - 1
    c = (tensors.add(*weight_tensors(layer, "recurrent_bias")) - 1) if layer.weights.reset_after else None
    axis = tensors.add(Tensor("split_axis", (), "int32", data=np.asarray(1, np.int32)))
    new_hs, new_h = [None] * count, h
    for j in (range(count - 1, -1, -1) if backward else range(count)):
        new_h = write_step(tensors, operators, pieces["g"][j], pieces["x"][j], new_h,
                           (r, r + 1, -1 if c is None else c, -1 if c is None else c + 1), axis, "",
                           j if count > 1 else "", state_shape, layer.weights.reset_after)
        new_hs[j] = new_h
    written, next_t = write_back_step(tensors, operators, t, new_hs, sequence, begin, sequence_shape, signature,
                                      time_axis, backward)
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


# A GRU's values added linearly into a sum: each takes the range that leaves the least squared error.
_GRU_LINEAR = ("gate_projection", "candidate_projection", "gate_recurrent", "candidate_recurrent", "reset_product")


def int8_formats(directions, observed: dict, channels: dict) -> dict:
    """A full-int8 GRU stage's formats, from the values calibration `observed` (quantization.calibrate; `channels`:
    each layer's per-channel weight scales): the linear terms by least error; the sum before LOGISTIC clipped
    where the sigmoid's int8 output stops moving (tanh_limit of half the sum: sigmoid(x) = (1 + tanh(x / 2)) / 2, and
    LOGISTIC's (1/256, -128) steps are tanh's 1/128); the sum before TANH as the basic cell's; the state h = z h +
    (1 - z) n within [-1, 1] (both directions of a bidirectional layer in one format: CONCATENATION copies bytes)."""
    from ..network import Int8Cell
    from ..quantization import PROBABILITY_OUTPUT, int8_format, sum_format

    states = [observed[f"{layer.name}/state"] for layer in directions]
    low, high = max(min(seen.low for seen in states), -1.0), min(max(seen.high for seen in states), 1.0)
    found = {}
    for layer in directions:
        name = layer.name
        formats = {role: int8_format(*observed[f"{name}/{role}"].least_error_range()) for role in _GRU_LINEAR}
        limit = 2 * observed[f"{name}/gate_sum/2"].tanh_limit()
        seen = observed[f"{name}/gate_sum"]
        formats["gate_sum"] = int8_format(max(seen.low, -limit), min(seen.high, limit))
        formats["candidate_sum"] = sum_format(Activation.TANH, observed[f"{name}/candidate_sum"])
        formats["state"] = int8_format(low, high)
        # h = z h + (1 - z) n: z h within the state's range, 1 - z in LOGISTIC's format, (1 - z) n within tanh's
        seen = observed[f"{name}/kept_state"]
        formats["kept_state"] = int8_format(max(seen.low, low), min(seen.high, high))
        formats["complement"] = PROBABILITY_OUTPUT
        seen = observed[f"{name}/kept_candidate"]
        formats["kept_candidate"] = int8_format(max(seen.low, -1.0), min(seen.high, 1.0))
        sw, sr = channels[name]
        found[name] = Int8Cell(formats, {"input_weights": sw, "recurrent_weights": sr})
    return found



def int8_plan(layer, fmt, scales, any_step):
    """A full-int8 GRU direction's formats, read from the tensors lowering/gru.py names by role."""
    from ..network import Int8Cell

    name, units = layer.name, layer.weights.num_units
    stems = {role: stem for stem, role in STEP_ROLES.items()
             if role not in ("gate", "candidate", "difference", "kept")}  # d and e: the float form's
    # `m` is r's product when the reset comes after R_n, the candidate's recurrent term when it comes before
    stems["reset_product" if layer.weights.reset_after else "candidate_recurrent"] = "m"
    formats = {role: fmt(any_step(name, stem)) for role, stem in stems.items()}
    formats.update({role: fmt(f"{name}/{role}_rows") for role in ("gate_projection", "candidate_projection")})
    found = {role: np.concatenate([scales(f"{name}/gate_{role}", 2 * units), scales(f"{name}/candidate_{role}", units)])
             for role in ("input_weights", "recurrent_weights")}
    return Int8Cell(formats, found)
