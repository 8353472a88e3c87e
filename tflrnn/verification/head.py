"""The ops after the RNN ops, checked as a Keras model means them: the last step of each direction (a
STRIDED_SLICE each, then a CONCATENATION of two) and Dense layers (FULLY_CONNECTED, then an activation op)."""

from __future__ import annotations

import math

import numpy as np

from ..lowering.common import DENSE_FOLLOWERS
from ..lowering.fused import FusedGraph, RNNGraph, dense_activation
from ..model import StridedSliceOptions
from ..model import Activation, BuiltinOperator, FullyConnectedOptions, op_name
from .report import Check


def _head_checks(network: FusedGraph) -> tuple[list[Check], list[int]]:
    """The ops after the RNN ops, each as tflrnn writes them: the last step (a STRIDED_SLICE per direction, then a
    CONCATENATION of two), then Dense layers. Returns the checks and the tensors the model should output."""
    ends, checks = network.sequence_outputs, []
    head = list(network.head)
    slices = []
    while head and head[0].code == BuiltinOperator.STRIDED_SLICE:
        slices.append(head.pop(0))
    if slices:
        concat = head.pop(0) if head and head[0].code == BuiltinOperator.CONCATENATION else None
        check, ends = _last_step_check(network, slices, concat)
        checks.append(check)
    index = 0
    while head:
        op = head.pop(0)
        following = head.pop(0) if head and head[0].code in DENSE_FOLLOWERS else None
        check, ends = _dense_check(network, index, op, following, ends)
        checks.append(check)
        index += 1
    return checks, ends


def _op_problems(op, code: int, version: int, inputs: int, tensors) -> list[str]:
    problems = []
    if op.builtin_code != code or op.deprecated_builtin_code != code:
        problems.append(f"{op_name(code)}: builtin_code {op.builtin_code}, deprecated_builtin_code "
                        f"{op.deprecated_builtin_code}")
    if op.version != version:
        problems.append(f"{op_name(code)} version {op.version}, expected {version}")
    if len(op.inputs) != inputs or len(op.outputs) != 1 or any(not 0 <= i < len(tensors) for i in op.inputs):
        problems.append(f"{op_name(code)} has inputs {op.inputs} and outputs {op.outputs}, expected {inputs} and 1")
    return problems


def _plain_float(tensor, shape) -> str | None:
    """Why `tensor` is not a plain float32 activation of `shape` (None when it is)."""
    if tuple(tensor.shape) != tuple(shape) or tensor.dtype != "float32" or tensor.data is not None or tensor.is_variable:
        return f"'{tensor.name}' {list(tensor.shape)} {tensor.dtype}, expected a plain float32 {list(shape)}"
    return None


def _last_step_check(network: FusedGraph, slices: list, concat) -> tuple[Check, list[int]]:
    tensors = network.subgraph.tensors
    final = network.rnn_ops[-1]
    directions = network.directions_of(final)
    g = directions[0]
    problems = []
    if len(slices) != len(final.outputs) or g.columns:
        problems.append(f"{len(slices)} STRIDED_SLICE ops for the final RNN op's {len(final.outputs)} outputs"
                        + ("; a merged bidirectional output cannot be sliced per direction (its backward half's "
                           "final state is at t=0)" if g.columns else ""))
        return Check("last_step", False, "; ".join(problems)), [op.outputs[0] for op in slices if op.outputs]
    outs = []
    for d, (op, source) in enumerate(zip(slices, directions if len(slices) == 2 else directions[:1])):
        problems += _op_problems(op, BuiltinOperator.STRIDED_SLICE, 1, 4, tensors)
        if problems:
            break
        if op.inputs[0] != final.outputs[d]:
            problems.append(f"STRIDED_SLICE {d} does not slice the final RNN op's output {d}")
        problems += slice_problems(op, tensors, g.time_major, backward=d == 1)
        units = source.input_weights.shape[0] if len(source.input_weights.shape) == 2 else -1
        if op.outputs and 0 <= op.outputs[0] < len(tensors):
            problem = _plain_float(tensors[op.outputs[0]], (_batch(source), units))
            problems += [problem] if problem else []
        outs.append(op.outputs[0] if op.outputs else -1)
    ends = outs
    if concat is not None and not problems:
        problems += _op_problems(concat, BuiltinOperator.CONCATENATION, 1, 2, tensors)
        if not problems:
            rank_axes = (-1, 1)
            if concat.inputs != outs:
                problems.append(f"CONCATENATION joins {concat.inputs}, expected the slices {outs} (forward first)")
            if concat.options is None or concat.options.axis not in rank_axes or concat.options.activation != 0:
                problems.append(f"CONCATENATION options {concat.options}, expected axis -1 and no activation")
            width = sum(tensors[i].shape[-1] for i in outs)
            problem = _plain_float(tensors[concat.outputs[0]], (_batch(g), width))
            problems += [problem] if problem else []
            ends = [concat.outputs[0]]
    if problems:
        return Check("last_step", False, "; ".join(problems)), ends
    shape = list(tensors[ends[0]].shape)
    what = ("forward at the last step and backward at t=0, concatenated" if concat is not None else
            "forward at the last step and backward at t=0" if len(outs) == 2 else "the final step")
    return Check("last_step", True, f"STRIDED_SLICE takes {what}: output {shape}"), ends


def slice_problems(op, tensors, time_major: bool, backward: bool) -> list[str]:
    """Why a STRIDED_SLICE (4 inputs in range) does not take one direction's final step: its begin, end, strides
    and options against _final_step_slice's."""
    begin, options = _final_step_slice(time_major, backward)
    problems = []
    for name, index, values in zip(("begin", "end", "strides"), op.inputs[1:], (begin, [0, 0, 0], [1, 1, 1])):
        tensor = tensors[index]
        if tensor.data is None or tensor.dtype != "int32" or list(np.ravel(tensor.data)) != values:
            shown = None if tensor.data is None else [int(v) for v in np.ravel(tensor.data)]
            problems.append(f"{name} {shown} ({tensor.dtype}), expected constant int32 {values}"
                            + (" (the backward direction's final state is its output at t=0)" if backward and
                               name == "begin" else ""))
    if op.options != options:
        problems.append(f"options {op.options}, expected {options}")
    return problems


def _final_step_slice(time_major: bool, backward: bool) -> tuple[list[int], StridedSliceOptions]:
    """What the schema needs for a STRIDED_SLICE of [B,T,U] (or [T,B,U]) to give one direction's final step [B,U]
    at any length, stated here rather than taken from the code that writes it: on the time axis begin -1 for the
    forward direction (its last step) or 0 for the backward one (it ends at t=0), with that axis shrunk away; the
    two other axes whole through begin_mask and end_mask (end and strides then [0, 0, 0] and [1, 1, 1])."""
    axis = 0 if time_major else 1
    begin = [0, 0, 0]
    begin[axis] = 0 if backward else -1
    others = sum(1 << a for a in range(3) if a != axis)
    return begin, StridedSliceOptions(begin_mask=others, end_mask=others, ellipsis_mask=0, new_axis_mask=0,
                                      shrink_axis_mask=1 << axis)


def _batch(g: RNNGraph) -> int:
    return g.hidden_state.shape[0] if g.hidden_state.shape else -1  # -1: a malformed state, reported elsewhere


def _dense_check(network: FusedGraph, index: int, op, following, ends: list[int]) -> tuple[Check, list[int]]:
    """A FULLY_CONNECTED (and the activation op after it) as a Keras Dense layer."""
    tensors = network.subgraph.tensors
    name = f"dense[{index}]"
    sequence = bool(op.inputs) and 0 <= op.inputs[0] < len(tensors) and len(tensors[op.inputs[0]].shape) == 3
    problems = _op_problems(op, BuiltinOperator.FULLY_CONNECTED, 5 if sequence else 1, 3, tensors)
    if op.code != BuiltinOperator.FULLY_CONNECTED:
        return Check(name, False, f"{op_name(op.code)} where a FULLY_CONNECTED was expected"), op.outputs[:1]
    if len(op.inputs) != 3 or len(op.outputs) != 1 or any(not 0 <= i < len(tensors) for i in op.inputs):
        return Check(name, False, "; ".join(problems)), op.outputs[:1]
    x, w, b = (tensors[i] for i in op.inputs)
    out = tensors[op.outputs[0]]
    if op.inputs[0] != (ends[0] if len(ends) == 1 else None):
        problems.append(f"it takes tensor {op.inputs[0]}, not the output before it ({ends})")
    if w.data is None or w.dtype != "float32" or len(w.shape) != 2 or x.shape[-1:] != w.shape[1:]:
        problems.append(f"kernel '{w.name}' {list(w.shape)} {w.dtype}, expected constant float32 [units, "
                        f"{x.shape[-1] if x.shape else '?'}]")
    units = w.shape[0] if len(w.shape) == 2 else -1
    if b.data is None or b.dtype != "float32" or tuple(b.shape) != (units,):
        problems.append(f"bias '{b.name}' {list(b.shape)} {b.dtype}, expected constant float32 [{units}]")
    options = op.options
    if not isinstance(options, FullyConnectedOptions):
        problems.append(f"builtin_options type {op.options_type}, expected FullyConnectedOptions (8)")
    else:
        if options.activation not in (Activation.NONE, Activation.RELU, Activation.RELU6, Activation.RELU_N1_TO_1):
            problems.append(f"fused activation {options.activation}: FULLY_CONNECTED's float kernel takes only "
                            "none, relu, relu_n1_to_1 and relu6 (the runtime refuses the model)")
        if options.weights_format != 0 or options.keep_num_dims != sequence:
            problems.append(f"options {options}, expected weights_format 0 and keep_num_dims {sequence}")
    problem = _plain_float(out, (*x.shape[:-1], units))
    problems += [problem] if problem else []
    activation = dense_activation(op, following)
    end = op.outputs[0]
    if following is not None:
        problems += _op_problems(following, following.code, 1, 1, tensors)
        if following.inputs[:1] != [op.outputs[0]]:
            problems.append(f"{op_name(following.code)} does not take the FULLY_CONNECTED output")
        if following.code == BuiltinOperator.SOFTMAX:
            beta = getattr(following.options, "beta", None)
            if beta is None or not (0 < beta < math.inf):
                problems.append(f"SOFTMAX beta {beta}, expected a positive finite value")
        if following.outputs and 0 <= following.outputs[0] < len(tensors):
            problem = _plain_float(tensors[following.outputs[0]], out.shape)
            problems += [problem] if problem else []
            end = following.outputs[0]
    if problems:
        return Check(name, False, f"'{w.name.rpartition('/')[0]}': " + "; ".join(problems)), [end]
    return Check(name, True, f"'{w.name.rpartition('/')[0]}': FULLY_CONNECTED {list(x.shape)} -> {list(out.shape)}, "
                             f"activation {activation}"), [end]
