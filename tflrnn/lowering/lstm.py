"""An LSTM's steps in the portable lowering (plain builtin ops every TFLite runtime has).

Per direction, the input projections of every step at once, one FULLY_CONNECTED per gate group (the three sigmoid
gates i, f, o together, the candidate g apart: equal SPLITs and whole ops keep the graph one XNNPACK partition):
    P = FULLY_CONNECTED(x, W_ifo, b_ifo)   [B,T,3U]          Q = FULLY_CONNECTED(x, W_g, b_g)   [B,T,U]
then each step t (unrolled, or as a WHILE loop's body over (t, h, Q, P, c) gathering step t, writing h_t into Q's
step t):
    i, f, o = SPLIT(LOGISTIC(ADD(P_t, FULLY_CONNECTED(h, R_ifo))))      g = TANH(ADD(Q_t, FULLY_CONNECTED(h, R_g)))
    c' = ADD(MUL(f, c), MUL(i, g))                                         h' = MUL(o, TANH(c'))
    (with a cell_clip, c' = MINIMUM(MAXIMUM(c', <layer>/cell_clip_low), <layer>/cell_clip): -clip and clip, [1])
The state is [B, 2U], h then c (cells/lstm.py): SPLIT before the first step, CONCATENATION after the last. The
weights are the LSTMWeights roles split by rows into the gates (i, f, o) and the candidate (g), named
<layer>/ifo_input_weights, <layer>/g_input_weights, ... ; `recover_weights` joins them back.
"""

from __future__ import annotations

import numpy as np

from ..cells.lstm import LSTMWeights
from ..model import (AddOptions, BuiltinOperator, ConcatenationOptions, FullyConnectedOptions, MulOptions, Operator,
                     PackOptions, Quantization, SplitOptions, Subgraph, Tensor, UnpackOptions, WhileOptions)
from ..network import Int8Format
from .common import Tensors

ROLES = ("input_weights", "recurrent_weights", "bias")
# Role -> the names of its gates' and candidate's tensors.
PARTS = {role: (f"ifo_{role}", f"g_{role}") for role in ROLES}
INT8_VALUE_BITS = 16  # its full-int8 values: int16, weights int8 (TFLite's 16x8 kernels)
INT8_LOOPS = True  # its int16 steps also as a WHILE loop (float sequences in and out of the body: LiteRT has no int16 GATHER)
MARKER = "/ifo_input_weights"  # how the reader finds an LSTM direction: its gates' projection weights
LOOP_VALUES = 5  # t, h, the candidate projection (becoming the output), the gates' projection, c


def weight_tensors(layer, role: str) -> tuple[Tensor, Tensor]:
    """The gates' and the candidate's tensors of one role."""
    return tuple(Tensor(f"{layer.name}/{part}", piece.shape, data=piece)
                 for part, piece in zip(PARTS[role], layer.weights.gate_rows(layer.weights.roles()[role])))


def write_direction(g, layer, source: int, state: int | None, backward: bool, name: str, sequence: bool):
    """One direction of an LSTM layer into the serving graph `g` (portable.lower's builder): (its output sequence,
    or None when not `sequence`; its final state [B, 2U], or its last h when the network keeps no state)."""
    tensors, operators = g.tensors, g.operators
    units, batch = layer.weights.num_units, g.batch
    if layer.name not in g.weights:  # a reused cell's directions share them
        found = {role: tensors.add(*weight_tensors(layer, role)) - 1 for role in ("input_weights", "bias")}
        if not g.network.loop:  # else R (and the cell_clip's bounds) live in the loop's body
            found["recurrent_weights"] = tensors.add(*weight_tensors(layer, "recurrent_weights")) - 1
            if layer.cell_clip:
                found["cell_clip"] = clip_tensors(tensors, layer)
        g.weights[layer.name] = found
    found = g.weights[layer.name]
    gates, candidate = g.project_groups(source, found, ((f"{name}/ifo_projection", 3 * units),
                                                        (f"{name}/g_projection", units)))
    if state is None:  # the zero state: the steps still need an h and a c to start from
        h = tensors.add(Tensor(f"{name}/h_zeros", (batch, units), data=np.zeros((batch, units), np.float32)))
        c = tensors.add(Tensor(f"{name}/c_zeros", (batch, units), data=np.zeros((batch, units), np.float32)))
    else:
        axis = tensors.add(Tensor(f"{name}/state_axis", (), "int32", data=np.asarray(1, np.int32)))
        h = tensors.add(Tensor(f"{name}/h_start", (batch, units)), Tensor(f"{name}/c_start", (batch, units))) - 1
        operators.append(Operator(BuiltinOperator.SPLIT, [axis, state], [h, h + 1],
                                  options=SplitOptions(num_splits=2)))
        c = h + 1
    if g.network.loop:
        output, h, c = _loop(g, layer, name, gates, candidate, h, c, backward)
    else:
        output, h, c = _unrolled(g, layer, name, gates, candidate, h, c, found, backward, sequence)
    if g.network.state == "zero":
        return output, h
    final = tensors.add(Tensor(f"{name}/final_state", (batch, 2 * units)))
    operators.append(Operator(BuiltinOperator.CONCATENATION, [h, c], [final],
                              options=ConcatenationOptions(axis=1)))
    g.last_outputs[final] = h  # the last step's output is h, not the whole state
    return output, final


def _unrolled(g, layer, name, gates, candidate, h, c, found, backward, sequence):
    tensors, operators, steps, batch = g.tensors, g.operators, g.steps, g.batch
    units = layer.weights.num_units
    pieces = g.unpack_steps(name, (("p", gates, 3 * units), ("q", candidate, units)))
    axis = tensors.add(Tensor(f"{name}/split_axis", (), "int32", data=np.asarray(1, np.int32)))
    weights = (found["recurrent_weights"], found["recurrent_weights"] + 1)
    clip = found.get("cell_clip")
    outputs = [None] * steps
    for t in (range(steps - 1, -1, -1) if backward else range(steps)):
        h, c = write_step(tensors, operators, pieces["p"] + t, pieces["q"] + t, h, c, weights, axis, f"{name}/", t,
                          (batch, units), clip)
        outputs[t] = h
    return (g.pack_output(layer.name, outputs, units) if sequence else None), h, c


# The tensor each step value is written to: its name stem (<layer>/<stem><t>) and what it holds.
STEP_VALUES = {"rp": "h R_ifo", "ap": "the gates' sum", "gates": "sigmoid(ap)", "i": "input gate",
               "f": "forget gate", "o": "output gate", "rq": "h R_g", "aq": "the candidate's sum", "n": "tanh(aq)",
               "fc": "f c", "in": "i g", "cu": "f c + i g, before the cell_clip", "cl": "max(cu, -cell_clip)",
               "c": "the new c", "tc": "tanh(c)", "h": "the new h"}


# A full-int8 LSTM (16x8: int8 weights, int16 values, zero point 0): the role of each step value's format
# (quantization: the LOGISTIC and TANH outputs are the int16 kernels' fixed (1/32768, 0); h, c and c's clipping one
# state format, as [h | c] is one state tensor).
INT16_ROLES = {"rp": "ifo_recurrent", "ap": "ifo_sum", "gates": "gate", "rq": "g_recurrent", "aq": "g_sum",
               "n": "squashed", "fc": "kept", "in": "added", "c": "state", "tc": "squashed", "h": "state"}
# op_version.cc on int16 values (and their runtimes, metadata.py): ADD 3 (pot_scale_int16 false: any scales), MUL 4,
# LOGISTIC and TANH 3, SPLIT and UNPACK 4, PACK and CONCATENATION 3; a 16x8 FULLY_CONNECTED 1 (lowering/int8.py)
INT16_VERSIONS = {BuiltinOperator.FULLY_CONNECTED: 1, BuiltinOperator.ADD: 3, BuiltinOperator.MUL: 4,
                  BuiltinOperator.LOGISTIC: 3, BuiltinOperator.TANH: 3, BuiltinOperator.SPLIT: 4,
                  BuiltinOperator.UNPACK: 4, BuiltinOperator.PACK: 3, BuiltinOperator.CONCATENATION: 3}


def clip_tensors(tensors: Tensors, layer) -> tuple[int, int]:
    """A cell_clip's two constants, -clip and clip (float32 [1]): the bounds MAXIMUM and MINIMUM clip c' by."""
    clip = np.float32(layer.cell_clip)
    low = tensors.add(Tensor(f"{layer.name}/cell_clip_low", (1,), data=np.asarray([-clip], np.float32)))
    return low, tensors.add(Tensor(f"{layer.name}/cell_clip", (1,), data=np.asarray([clip], np.float32)))


def recover_settings(name: str, constant) -> dict:
    """What else than its weights makes layer `name` compute as it does: its cell_clip (0 without one), from the
    constants clip_tensors writes; ModelFormatError when they are not -clip and clip."""
    from ..errors import ModelFormatError

    low, high = constant(f"{name}/cell_clip_low"), constant(f"{name}/cell_clip")
    if low is None and high is None:
        return {}
    if low is None or high is None or np.shape(low) != (1,) or np.shape(high) != (1,) or not (
            np.isfinite(high[0]) and high[0] > 0 and low[0] == -high[0]):
        raise ModelFormatError(f"LSTM layer '{name}': its cell_clip bounds are not -clip and clip, one value each "
                               f"(found {low} and {high})")
    return {"cell_clip": float(np.float32(high[0]))}


def write_step(tensors: Tensors, operators: list, gates_in: int, candidate_in: int, h: int, c: int, weights,
               axis: int, prefix: str, t, shape: tuple, clip: tuple[int, int] | None = None,
               formats: dict | None = None) -> tuple[int, int]:
    """One step's ops (module docstring); `weights` = (R_ifo, R_g) indices; `clip` = the cell_clip constants
    (clip_tensors; None: no clipping). The new h and c. With `formats` (a full-int8 LSTM: role -> its int16 format,
    INT16_ROLES), every value is int16, zero point 0 (TFLite's 16x8 kernels)."""
    r_gates, r_candidate = weights

    def op(code, inputs, stem, out_shape=shape, **kwargs):
        if formats is None:
            out = tensors.add(Tensor(f"{prefix}{stem}{t}", out_shape))
        else:
            fmt = formats[INT16_ROLES[stem]]
            out = tensors.add(Tensor(f"{prefix}{stem}{t}", out_shape, "int16",
                                     quantization=Quantization((fmt.scale,), (0,))))
            kwargs["version"] = INT16_VERSIONS[code]
            if code in (BuiltinOperator.ADD, BuiltinOperator.SUB):  # the general int16 kernel, any scales
                kwargs["options"] = AddOptions(pot_scale_int16=False)
        operators.append(Operator(code, inputs, [out], **kwargs))
        return out

    gate_shape = (*shape[:-1], 3 * shape[-1])
    recurrent = op(BuiltinOperator.FULLY_CONNECTED, [h, r_gates, -1], "rp", gate_shape,
                   options=FullyConnectedOptions())
    summed = op(BuiltinOperator.ADD, [gates_in, recurrent], "ap", gate_shape, options=AddOptions())
    gate = op(BuiltinOperator.LOGISTIC, [summed], "gates", gate_shape)
    i = tensors.add(*(Tensor(f"{prefix}{stem}{t}", shape, tensors[gate].dtype, quantization=tensors[gate].quantization)
                      for stem in "ifo")) - 2
    operators.append(Operator(BuiltinOperator.SPLIT, [axis, gate], [i, i + 1, i + 2],
                              options=SplitOptions(num_splits=3),
                              version=1 if formats is None else INT16_VERSIONS[BuiltinOperator.SPLIT]))
    forget, output_gate = i + 1, i + 2
    candidate_recurrent = op(BuiltinOperator.FULLY_CONNECTED, [h, r_candidate, -1], "rq",
                             options=FullyConnectedOptions())
    candidate_sum = op(BuiltinOperator.ADD, [candidate_in, candidate_recurrent], "aq", options=AddOptions())
    n = op(BuiltinOperator.TANH, [candidate_sum], "n")
    kept = op(BuiltinOperator.MUL, [forget, c], "fc", options=MulOptions())
    added = op(BuiltinOperator.MUL, [i, n], "in", options=MulOptions())
    if clip is None:
        new_c = op(BuiltinOperator.ADD, [kept, added], "c", options=AddOptions())
    else:  # c' clipped to [-clip, clip]: MAXIMUM and MINIMUM by the layer's two constants
        summed_c = op(BuiltinOperator.ADD, [kept, added], "cu", options=AddOptions())
        new_c = op(BuiltinOperator.MINIMUM, [op(BuiltinOperator.MAXIMUM, [summed_c, clip[0]], "cl"), clip[1]], "c")
    squashed = op(BuiltinOperator.TANH, [new_c], "tc")
    return op(BuiltinOperator.MUL, [output_gate, squashed], "h", options=MulOptions()), new_c


def _loop(g, layer, name, gates, candidate, h, c, backward):
    """The steps as a WHILE loop over (t, h, candidate projection, gates' projection, c): its body gathers step t of
    both projections, runs write_step and writes h_t over the candidate's step t, which becomes the output."""
    from . import portable

    tensors, operators = g.tensors, g.operators
    units, batch = layer.weights.num_units, g.batch
    t0 = g.loop_start(name, candidate, backward)
    t_end = tensors.add(Tensor(f"{name}/t_end", (), "int32"))
    h_end = tensors.add(Tensor(f"{name}/h_end", (batch, units)))
    output = tensors.add(g.sequence_of(f"{layer.name}/output", units))
    gates_end = tensors.add(g.sequence_of(f"{name}/ifo_projection_end", 3 * units))
    c_end = tensors.add(Tensor(f"{name}/c_end", (batch, units)))
    cond = g.first_loop_subgraph + len(g.loops)
    shapes = ((batch, units), tensors[output].shape, tensors[output].shape_signature)
    extra = [Tensor("gates", tensors[gates].shape, shape_signature=tensors[gates].shape_signature),
             Tensor("c", (batch, units))]
    g.loops.extend([portable._loop_condition(name, *shapes, g.steps, backward, g.time_axis, extra),
                    _loop_body(layer, name, *shapes, tensors[gates], g.time_axis, backward,
                               g.network.steps_per_iteration)])
    operators.append(Operator(BuiltinOperator.WHILE, [t0, h, candidate, gates, c],
                              [t_end, h_end, output, gates_end, c_end],
                              options=WhileOptions(cond_subgraph_index=cond, body_subgraph_index=cond + 1)))
    return output, h_end, c_end


def _loop_body(layer, name, state_shape, sequence_shape, signature, gates_tensor: Tensor, time_axis: int,
               backward: bool, count: int = 1) -> Subgraph:
    """Steps t .. t + count - 1 (backward: from the last), then t += count (backward: -); the steps GATHERed, so
    every shape in the body is static (lowering/gru.py)."""
    from .portable import gather_block, step_begin, write_back_step

    tensors = Tensors([Tensor("t", (), "int32"), Tensor("h", state_shape),
                       Tensor("sequence", sequence_shape, shape_signature=signature),
                       Tensor("gates", gates_tensor.shape, shape_signature=gates_tensor.shape_signature),
                       Tensor("c", state_shape)])
    t, h, sequence, gates, c = range(LOOP_VALUES)
    operators = []
    begin = step_begin(tensors, operators, t, time_axis)
    pieces = gather_block(tensors, operators, t, time_axis, state_shape,
                          (("q", sequence, state_shape[-1]), ("p", gates, 3 * state_shape[-1])), count)
    r = tensors.add(*weight_tensors(layer, "recurrent_weights")) - 1
    axis = tensors.add(Tensor("split_axis", (), "int32", data=np.asarray(1, np.int32)))
    clip = clip_tensors(tensors, layer) if layer.cell_clip else None
    new_hs, new_h, new_c = [None] * count, h, c
    for j in (range(count - 1, -1, -1) if backward else range(count)):
        new_h, new_c = write_step(tensors, operators, pieces["p"][j], pieces["q"][j], new_h, new_c, (r, r + 1), axis,
                                  "", j if count > 1 else "", state_shape, clip)
        new_hs[j] = new_h
    written, next_t = write_back_step(tensors, operators, t, new_hs, sequence, begin, sequence_shape, signature,
                                      time_axis, backward)
    return Subgraph(list(tensors), operators, inputs=[t, h, sequence, gates, c],
                    outputs=[next_t, new_h, written, gates, new_c], name=f"{name}/body")


def recover_weights(name: str, constant) -> LSTMWeights:
    """The LSTMWeights of layer `name` from its tensors: `constant(tensor name)` gives a constant's real values
    (None where there is none)."""
    from ..errors import ModelFormatError, WeightsError

    found = {}
    for role, parts in PARTS.items():
        pieces = [constant(f"{name}/{part}") for part in parts]
        if any(p is None for p in pieces):
            raise ModelFormatError(f"LSTM layer '{name}': its {role} ({' and '.join(parts)}) are not both constants")
        found[role] = tuple(pieces)
    try:
        return LSTMWeights.from_gate_rows(**found)
    except (WeightsError, ValueError, IndexError) as error:
        raise ModelFormatError(f"LSTM layer '{name}': its weights do not fit together ({error})") from None


def int8_weight_tensors(layer, formats, role: str) -> list[tuple[Tensor, np.ndarray]]:
    """The gates' and the candidate's int8 tensors of one role (weight_tensors' full-int8 form: per output channel
    at the plan's scales), each with its channel scales."""
    from .int8 import _int8_weights, per_channel

    w = layer.weights
    return [(Tensor(f"{layer.name}/{part}", array.shape, "int8", data=_int8_weights(array, channel),
                    quantization=per_channel(channel)), channel)
            for part, array, channel in zip(PARTS[role], w.gate_rows(w.roles()[role]),
                                            w.gate_rows(formats.scales[role]))]


def write_int8_direction(g, layer, rows: int, backward: bool, sequence: bool):
    """One direction of a full-int8 LSTM (lowering/int8.py's graph `g`), its steps unrolled or a WHILE loop
    (_int8_loop), in TFLite's 16x8 form: int8 weights per channel, every value int16 with zero point 0, biases int64. An all-int8 graph would round nine
    values a step to 8 bits, c among them, and lose to the converter's integer LSTM kernel, which keeps its gates
    and c in 16 bits (docs/model.md). The same write_step as the float LSTM, in the plan's formats; the state [h | c]
    one int16 tensor in the state format. (Its PACKed output or None, its final state.)"""
    tensors, name, units = g.tensors, layer.name, layer.weights.num_units
    f, w = g.plan.layers[name], layer.weights
    formats = {**f.formats, **INT16_FIXED}
    h, c, handle = _int8_start(g, layer)
    if g.network.loop:  # `rows` is the float sequence the loop reads (int8._Int8Graph.stage_source)
        output, h, c = _int8_loop(g, layer, rows, h, c, formats, backward)
        return _int8_end(g, layer, output, h, c, handle)
    parts = {}
    for role in ("input_weights", "recurrent_weights"):
        for part, (tensor, channel) in zip(PARTS[role], int8_weight_tensors(layer, f, role)):
            parts[part] = (tensors.add(tensor), channel)
    pieces = {}
    for stem, group, bias, width in zip("pq", ("ifo", "g"), w.gate_rows(w.bias), (3 * units, units)):
        weights, channel = parts[f"{group}_input_weights"]
        bias_index = g.bias(rows, bias, channel, f"{name}/{group}_bias")  # int64 at the input's scale x W's
        out = g.project(rows, weights, bias_index, f"{name}/{group}_projection_rows", formats[f"{group}_projection"])
        projection = g.reshaped(out, (*g.lead, width), f"{name}/{group}_projection")
        first = len(tensors)
        tensors.add(*(Tensor(f"{name}/{stem}{t}", (g.batch, width), "int16", quantization=tensors[out].quantization)
                      for t in range(g.steps)))
        g.op(BuiltinOperator.UNPACK, [projection], range(first, first + g.steps),
             version=INT16_VERSIONS[BuiltinOperator.UNPACK], options=UnpackOptions(num=g.steps, axis=g.time_axis))
        pieces[stem] = first
    axis = tensors.add(Tensor(f"{name}/split_axis", (), "int32", data=np.asarray(1, np.int32)))
    recurrent = (parts["ifo_recurrent_weights"][0], parts["g_recurrent_weights"][0])
    outputs = [None] * g.steps
    for t in (range(g.steps - 1, -1, -1) if backward else range(g.steps)):
        h, c = write_step(tensors, g.operators, pieces["p"] + t, pieces["q"] + t, h, c, recurrent, axis, f"{name}/",
                          t, (g.batch, units), None, formats)  # (no cell_clip: quantization.refusal)
        outputs[t] = h
    output = None
    if sequence:
        output = g.quantized(f"{name}/output", (*g.lead, units), f.state)
        g.op(BuiltinOperator.PACK, outputs, [output], version=INT16_VERSIONS[BuiltinOperator.PACK],
             options=PackOptions(values_count=g.steps, axis=g.time_axis))
    return _int8_end(g, layer, output, h, c, handle)


def _int8_start(g, layer):
    """A full-int8 direction's state before its first step, h and c int16 in the state format: SPLIT from its
    variable or input, or zeros. (h, c, the variable's handle or None.)"""
    tensors, name, units = g.tensors, layer.name, layer.weights.num_units
    f = g.plan.layers[name]
    state_format = Quantization((f.state.scale,), (0,))
    state, handle = g.initial_state(name, 2 * units, f.state)
    if state is None:  # the zero state: an h and a c of zeros to start from
        h = tensors.add(Tensor(f"{name}/h_zeros", (g.batch, units), "int16", data=np.zeros((g.batch, units), np.int16),
                               quantization=state_format))
        c = tensors.add(Tensor(f"{name}/c_zeros", (g.batch, units), "int16", data=np.zeros((g.batch, units), np.int16),
                               quantization=state_format))
    else:
        axis = tensors.add(Tensor(f"{name}/state_axis", (), "int32", data=np.asarray(1, np.int32)))
        h = tensors.add(*(Tensor(f"{name}/{part}_start", (g.batch, units), "int16", quantization=state_format)
                          for part in "hc")) - 1
        g.op(BuiltinOperator.SPLIT, [axis, state], [h, h + 1], version=INT16_VERSIONS[BuiltinOperator.SPLIT],
             options=SplitOptions(num_splits=2))
        c = h + 1
    return h, c, handle


def _int8_end(g, layer, output, h, c, handle):
    """A full-int8 direction's end: its state [h | c] joined, kept where the network keeps it. (Its output, its
    final state: h alone when the network keeps none.)"""
    if g.network.state == "zero":
        return output, h
    f, units = g.plan.layers[layer.name], layer.weights.num_units
    final = g.quantized(f"{layer.name}/final_state", (g.batch, 2 * units), f.state)
    g.op(BuiltinOperator.CONCATENATION, [h, c], [final], version=INT16_VERSIONS[BuiltinOperator.CONCATENATION],
         options=ConcatenationOptions(axis=1))
    g.last_outputs[final] = h  # the last step's output is h, not the whole state
    g.keep_state(final, handle)
    return output, final


def _int8_loop(g, layer, source: int, h: int, c: int, formats: dict, backward: bool):
    """A full-int8 LSTM direction's steps as a WHILE loop over (t, h, output, input, c): h and c int16; the input
    and output sequences float on their int16 grids (LiteRT has no int16 GATHER), so that only they and one step's
    values live in memory (TFLite Micro's arena). The body GATHERs x_t, QUANTIZEs it to the input's int16 format
    (exact), projects it (16x8 FULLY_CONNECTED), runs write_step in int16 and writes h_t, DEQUANTIZEd (exact),
    into the output's step t: the same integers as the unrolled steps. (Output, h, c.)"""
    from . import portable

    tensors, name, units, batch = g.tensors, layer.name, layer.weights.num_units, g.batch
    state = Quantization((g.plan.layers[name].state.scale,), (0,))
    t0 = tensors.add(Tensor(f"{name}/t_start", (), "int32", data=np.asarray(g.steps - 1 if backward else 0, np.int32)))
    # the output's buffer, zeros: FILL, not a constant of T x U floats in the file
    shape = (*g.lead, units)
    dims = tensors.add(Tensor(f"{name}/output_shape", (3,), "int32", data=np.asarray(shape, np.int32)))
    zero = tensors.add(Tensor(f"{name}/zero", (), data=np.zeros((), np.float32)))
    empty = tensors.add(Tensor(f"{name}/output_start", shape))
    g.op(BuiltinOperator.FILL, [dims, zero], [empty])
    t_end = tensors.add(Tensor(f"{name}/t_end", (), "int32"))
    h_end = tensors.add(Tensor(f"{name}/h_end", (batch, units), "int16", quantization=state))
    output = tensors.add(Tensor(f"{name}/output", shape))
    source_end = tensors.add(Tensor(f"{name}/input_end", tensors[source].shape))
    c_end = tensors.add(Tensor(f"{name}/c_end", (batch, units), "int16", quantization=state))
    cond = g.first_loop_subgraph + len(g.loops)
    extra = [Tensor("input", tensors[source].shape), Tensor("c", (batch, units), "int16", quantization=state)]
    g.loops.extend([portable._loop_condition(name, (batch, units), shape, None, g.steps, backward, g.time_axis, extra,
                                             h=Tensor("h", (batch, units), "int16", quantization=state)),
                    _int8_loop_body(g, layer, formats, g.float_formats[source], shape, tensors[source].shape,
                                    backward)])
    g.op(BuiltinOperator.WHILE, [t0, h, empty, source, c], [t_end, h_end, output, source_end, c_end],
         options=WhileOptions(cond_subgraph_index=cond, body_subgraph_index=cond + 1))
    g.float_formats[output] = g.plan.layers[name].state
    return output, h_end, c_end


def _int8_loop_body(g, layer, formats: dict, input_format, sequence_shape, input_shape, backward: bool) -> Subgraph:
    """Step t of a full-int8 LSTM, then t += 1 (backward: -1), every value named as the unrolled step's without its
    t (<layer>/<stem>): x_t GATHERed and QUANTIZEd (<layer>/input_int16), its projections by W (int8 per channel,
    biases int64 at the input's scale x W's), write_step, h_t DEQUANTIZEd into the output's step t."""
    from .. import quantization as quant
    from .int8 import DEQUANTIZE_VERSIONS, QUANTIZE_VERSIONS, per_channel
    from .portable import gather_steps, step_begin, write_back_step

    name, units, batch, w = layer.name, layer.weights.num_units, g.batch, layer.weights
    f = g.plan.layers[name]
    state = Quantization((f.state.scale,), (0,))
    step_shape = (batch, units)
    tensors = Tensors([Tensor("t", (), "int32"), Tensor("h", step_shape, "int16", quantization=state),
                       Tensor("sequence", sequence_shape), Tensor("input", input_shape),
                       Tensor("c", step_shape, "int16", quantization=state)])
    t, h, sequence, source, c = range(LOOP_VALUES)
    operators = []
    begin = step_begin(tensors, operators, t, g.time_axis)
    x_float = gather_steps(tensors, operators, t, g.time_axis, step_shape,
                           (("input_t", source, input_shape[-1]),))["input_t"]
    x = tensors.add(Tensor(f"{name}/input_int16", tensors[x_float].shape, "int16",
                           quantization=Quantization((input_format.scale,), (0,))))
    operators.append(Operator(BuiltinOperator.QUANTIZE, [x_float], [x], version=QUANTIZE_VERSIONS[16]))

    def weights(role: str) -> list[int]:
        return [tensors.add(tensor) for tensor, _ in int8_weight_tensors(layer, f, role)]

    projected = {}
    for stem, group, weight, bias, channel in zip("pq", ("ifo", "g"), weights("input_weights"), w.gate_rows(w.bias),
                                                  w.gate_rows(f.scales["input_weights"])):
        scales = quant.bias_scales(input_format.scale, channel)
        b = tensors.add(Tensor(f"{name}/{group}_bias", bias.shape, "int64", data=quant.bias_int32(bias, scales, np.int64),
                               quantization=per_channel(scales)))
        fmt = formats[f"{group}_projection"]
        projected[stem] = tensors.add(Tensor(f"{name}/{stem}", (batch, 3 * units if stem == "p" else units), "int16",
                                             quantization=Quantization((fmt.scale,), (0,))))
        operators.append(Operator(BuiltinOperator.FULLY_CONNECTED, [x, weight, b], [projected[stem]],
                                  version=INT16_VERSIONS[BuiltinOperator.FULLY_CONNECTED],
                                  options=FullyConnectedOptions()))
    axis = tensors.add(Tensor("split_axis", (), "int32", data=np.asarray(1, np.int32)))
    new_h, new_c = write_step(tensors, operators, projected["p"], projected["q"], h, c,
                              tuple(weights("recurrent_weights")), axis, f"{name}/", "", step_shape, None, formats)
    h_float = tensors.add(Tensor(f"{name}/h_float", step_shape))
    operators.append(Operator(BuiltinOperator.DEQUANTIZE, [new_h], [h_float], version=DEQUANTIZE_VERSIONS["int16"]))
    written, next_t = write_back_step(tensors, operators, t, [h_float], sequence, begin, sequence_shape, None,
                                      g.time_axis, backward)
    return Subgraph(list(tensors), operators, inputs=[t, h, sequence, source, c],
                    outputs=[next_t, new_h, written, source, new_c], name=f"{name}/body")


# The int16 kernels' fixed output formats: LOGISTIC's and TANH's (1/32768, 0) (activations.cc)
INT16_FIXED = {"gate": Int8Format(2.0 ** -15, 0, bits=16), "squashed": Int8Format(2.0 ** -15, 0, bits=16)}
# The largest |sum| before LOGISTIC or TANH an int16 format holds: the int16 kernels rescale their input to steps of
# 1 / (3 x 4096) and read their table over +-10.7 (activations.cc), beyond which sigmoid and tanh are 1 to within
# their output's step
SUM_LIMIT = 10.7


def int8_formats(directions, observed: dict, channels: dict) -> dict:
    """A full-int8 LSTM stage's formats (16x8: int16, zero point 0, symmetric), from the values calibration
    `observed` (reference.lstm_values): each over INPUT_MARGIN times the largest |value| seen (an int16 step is
    1/32767 of it: the margin costs one bit and keeps unseen data from clipping); the sums before LOGISTIC and TANH
    at most SUM_LIMIT; the state h and c one format (|h| <= |c|), the same for both directions
    of a bidirectional layer (CONCATENATION copies bytes); f c in the state's format (|f c| <= |c|), i g in [-1, 1]."""
    from ..network import Int8Cell
    from ..quantization import INPUT_MARGIN, int16_format

    def largest(key: str) -> float:
        seen = observed[key]
        return INPUT_MARGIN * max(abs(seen.low), abs(seen.high))

    state = int16_format(max(largest(f"{layer.name}/cell") for layer in directions))
    found = {}
    for layer in directions:
        name = layer.name
        formats = {role: int16_format(largest(f"{name}/{role}"))
                   for role in ("ifo_projection", "g_projection", "ifo_recurrent", "g_recurrent")}
        formats.update({role: int16_format(min(largest(f"{name}/{role}"), SUM_LIMIT)) for role in ("ifo_sum", "g_sum")})
        formats.update(state=state, kept=state, added=int16_format(1.0))
        sw, sr = channels[name]
        found[name] = Int8Cell(formats, {"input_weights": sw, "recurrent_weights": sr})
    return found


def int8_plan(layer, fmt, scales, any_step):
    """A full-int8 LSTM direction's formats, read from the tensors write_int8_direction names by role."""
    from ..network import Int8Cell

    name, units = layer.name, layer.weights.num_units
    formats = {role: fmt(any_step(name, stem)) for stem, role in INT16_ROLES.items() if role not in INT16_FIXED}
    formats.update({role: fmt(any_step(name, stem)) for stem, role in (("p", "ifo_projection"), ("q", "g_projection"))})
    found = {}
    for role in ("input_weights", "recurrent_weights"):  # (i f o, g) back to i, f, g, o
        gates, candidate = scales(f"{name}/ifo_{role}", 3 * units), scales(f"{name}/g_{role}", units)
        found[role] = np.concatenate([gates[:2 * units], candidate, gates[2 * units:]])
    return Int8Cell(formats, found)
