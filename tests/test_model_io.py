"""The model layer both ways: read(write(m)) == m for every options type, quantization, shape signatures,
signatures, metadata and raw values the schema allows but the runtime does not know."""

from __future__ import annotations

import numpy as np
import pytest

from tflrnn.model import (
    AddOptions,
    BidirectionalSequenceRNNOptions,
    BuiltinOperator,
    CallOnceOptions,
    ConcatenationOptions,
    FullyConnectedOptions,
    Model,
    Operator,
    PackOptions,
    Quantization,
    SequenceRNNOptions,
    Signature,
    SoftmaxOptions,
    StridedSliceOptions,
    Subgraph,
    Tensor,
    UnpackOptions,
    VarHandleOptions,
    op_name,
)
from tflrnn.reader import read
from tflrnn.writer import write

OPTIONS = [
    (BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_RNN, SequenceRNNOptions(time_major=True, activation=3,
                                                                     asymmetric_quantize_inputs=True)),
    (BuiltinOperator.BIDIRECTIONAL_SEQUENCE_RNN, BidirectionalSequenceRNNOptions(
        time_major=False, activation=1, merge_outputs=True, asymmetric_quantize_inputs=False)),
    (BuiltinOperator.STRIDED_SLICE, StridedSliceOptions(begin_mask=5, end_mask=5, ellipsis_mask=0,
                                                       new_axis_mask=0, shrink_axis_mask=2)),
    (BuiltinOperator.FULLY_CONNECTED, FullyConnectedOptions(activation=3, weights_format=0, keep_num_dims=True,
                                                            asymmetric_quantize_inputs=False)),
    (BuiltinOperator.SOFTMAX, SoftmaxOptions(beta=0.5)),
    (BuiltinOperator.CONCATENATION, ConcatenationOptions(axis=-1, activation=0)),
    (BuiltinOperator.TANH, None),
    (BuiltinOperator.ADD, AddOptions(activation=1, pot_scale_int16=False)),
    (BuiltinOperator.PACK, PackOptions(values_count=3, axis=1)),
    (BuiltinOperator.UNPACK, UnpackOptions(num=3, axis=1)),
    (BuiltinOperator.CALL_ONCE, CallOnceOptions(init_subgraph_index=2)),
    (BuiltinOperator.VAR_HANDLE, VarHandleOptions(container="", shared_name="rnn/hidden_state")),
]


def _model(operators: list[Operator], **extra) -> Model:
    rng = np.random.default_rng(0)
    tensors = [
        Tensor("x", (2, 3, 4), shape_signature=(2, -1, 4)),
        Tensor("w", (5, 4), data=rng.standard_normal((5, 4)).astype(np.float32)),
        Tensor("q", (5, 5), "int8", data=rng.integers(-127, 128, (5, 5)).astype(np.int8),
               quantization=Quantization((float(np.float32(0.02)),), (0,))),  # the schema's scales are float32
        Tensor("per_channel", (5, 4), "int8", data=np.ones((5, 4), np.int8),
               quantization=Quantization(tuple(np.linspace(0.1, 0.5, 5).astype(np.float32).tolist()), (0,) * 5, 0)),
        Tensor("state", (2, 5), is_variable=True),
        Tensor("begin", (3,), "int32", data=np.array([0, -1, 0], np.int32)),
        Tensor("y", (2, 3, 5)),
    ]
    return Model(subgraphs=[Subgraph(tensors, operators, inputs=[0], outputs=[6], name="main")],
                 signatures=[Signature("serving_default", {"input": 0}, {"output": 6})],
                 metadata={"min_runtime_version": b"1.14.0".ljust(16, b"\0"), "tflrnn": b'{"c":[]}'},
                 description="loopback", **extra)


def _same(a: Model, b: Model) -> None:
    assert (a.version, a.description, a.metadata, a.signatures) == (b.version, b.description, b.metadata,
                                                                     b.signatures)
    for g, h in zip(a.subgraphs, b.subgraphs, strict=True):
        assert (g.inputs, g.outputs, g.name) == (h.inputs, h.outputs, h.name)
        assert g.tensors == h.tensors
        for op, other in zip(g.operators, h.operators, strict=True):
            assert (op.code, op.inputs, op.outputs, op.version, op.options) == (
                other.code, other.inputs, other.outputs, other.version, other.options)


@pytest.mark.parametrize("code, options", OPTIONS, ids=[op_name(c) for c, _ in OPTIONS])
def test_every_options_type_round_trips(code, options):
    model = _model([Operator(code, [0, 1, 2, 3, 4], [6], version=2, options=options)])
    back = read(write(model))
    _same(model, back)
    assert write(back) == write(model)


def test_raw_values_the_runtime_does_not_know_are_kept():
    """An activation outside the enum, an op code beyond the schema, an unknown tensor type: read as they are, so
    that verify can name them (the runtime would run them as something else, or refuse them)."""
    model = _model([Operator(BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_RNN, [0, 1, 2, 3, 4], [6],
                             options=SequenceRNNOptions(activation=17)),
                    Operator(250, [6], [6])])
    back = read(write(model))
    _same(model, back)
    assert back.subgraphs[0].operators[0].options.activation == 17
    assert back.subgraphs[0].operators[1].code == 250 and op_name(250) == "BUILTIN_250"
    assert op_name(BuiltinOperator.FULLY_CONNECTED) == "FULLY_CONNECTED" and op_name(0) == "ADD"


def test_codes_above_127_use_the_placeholder():
    model = _model([Operator(142, [], [6])])  # VAR_HANDLE: deprecated_builtin_code 127, builtin_code 142
    op = read(write(model)).subgraphs[0].operators[0]
    assert (op.deprecated_builtin_code, op.builtin_code, op.code) == (127, 142, 142)


def test_an_empty_name_is_left_out_and_reads_back_empty():
    """The schema's name field is optional: an empty name is not written, and reads back ""."""
    import tflite

    named = _model([Operator(BuiltinOperator.TANH, [0], [6])])
    anonymous = _model([Operator(BuiltinOperator.TANH, [0], [6])])
    anonymous.subgraphs[0].tensors[1].name = ""
    data = write(anonymous)
    assert tflite.Model.GetRootAsModel(data, 0).Subgraphs(0).Tensors(1).Name() is None
    back = read(data)
    _same(anonymous, back)
    assert back.subgraphs[0].tensors[1].name == ""
    assert len(data) < len(write(named))  # no string, no offset to it


def test_an_empty_description_signature_list_and_metadata_are_left_out():
    """Each of them is an optional field of the schema's Model: left out when empty, read back empty."""
    import tflite

    full = _model([Operator(BuiltinOperator.TANH, [0], [6])])
    bare = _model([Operator(BuiltinOperator.TANH, [0], [6])])
    bare.description, bare.signatures, bare.metadata = "", [], {}
    data = write(bare)
    root = tflite.Model.GetRootAsModel(data, 0)
    assert (root.Description(), root.SignatureDefsIsNone(), root.MetadataIsNone()) == (None, True, True)
    _same(bare, read(data))
    assert len(data) < len(write(full))


def test_equal_tensors_share_one_buffer_and_read_back_apart():
    model = _model([Operator(BuiltinOperator.TANH, [0], [6])])
    model.subgraphs[0].tensors.append(Tensor("w_again", (5, 4), data=model.subgraphs[0].tensors[1].data.copy()))
    data = write(model)
    back = read(data)
    _same(model, back)
    assert len(data) < len(write(_model([Operator(BuiltinOperator.TANH, [0], [6])]))) + 4 * 20 + 64


def _counter(runtime_shape=(1, 4)) -> Model:
    """y = state + x, the state a resource variable carried across invokes: VAR_HANDLE / READ_VARIABLE /
    ASSIGN_VARIABLE, zeroed once through CALL_ONCE and its init subgraph, and by a `reset` signature."""
    op = BuiltinOperator
    handle = VarHandleOptions(container="", shared_name="state")
    main = Subgraph(
        [Tensor("x", runtime_shape), Tensor("handle", (), "resource"), Tensor("state", runtime_shape),
         Tensor("y", runtime_shape)],
        [Operator(op.CALL_ONCE, [], [], options=CallOnceOptions(init_subgraph_index=1)),
         Operator(op.VAR_HANDLE, [], [1], options=handle),
         Operator(op.READ_VARIABLE, [1], [2]),
         Operator(op.ADD, [2, 0], [3], options=AddOptions()),
         Operator(op.ASSIGN_VARIABLE, [1, 3], [])],
        inputs=[0], outputs=[3], name="serving_default")

    def zeroing(name: str) -> Subgraph:
        return Subgraph([Tensor("handle", (), "resource"),
                         Tensor("zeros", runtime_shape, data=np.zeros(runtime_shape, np.float32))],
                        [Operator(op.VAR_HANDLE, [], [0], options=handle), Operator(op.ASSIGN_VARIABLE, [0, 1], [])],
                        inputs=[], outputs=[], name=name)

    return Model(subgraphs=[main, zeroing("init"), zeroing("reset")],
                 signatures=[Signature("serving_default", {"input": 0}, {"output": 3}, 0),
                             Signature("reset", {}, {}, 2)], description="counter")


def test_resource_variables_round_trip_and_run_in_litert():
    """The ops a portable lowering keeps its state with, written by tflrnn's writer and run by LiteRT: the state
    carries across invokes, and the `reset` signature zeroes it (reset_all_variables() does not, for these)."""
    from ai_edge_litert.interpreter import Interpreter

    model = _counter()
    data = write(model)
    back = read(data)
    _same(model, back)
    assert back.subgraphs[0].tensors[1].dtype == "resource"
    interpreter = Interpreter(model_content=data)
    run = interpreter.get_signature_runner("serving_default")
    x = np.ones((1, 4), np.float32)
    assert [float(run(input=x)["output"][0, 0]) for _ in range(3)] == [1.0, 2.0, 3.0]
    interpreter.get_signature_runner("reset")()
    assert float(run(input=x)["output"][0, 0]) == 1.0
