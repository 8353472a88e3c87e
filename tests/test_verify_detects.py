"""Every verify check can fail: models broken in one way each, written through the project's own writer."""

from __future__ import annotations

import json

import numpy as np
import pytest

import tflrnn
from tflrnn.builder import describe_model
from tflrnn.model import Activation, SequenceRNNOptions
from tflrnn.writer import write

from support import random_weights


def _model(**options):
    return describe_model(tflrnn.RNNCell(6), input_size=3, time_steps=4, batch_size=2, **options)


def _failed(data, **kwargs) -> dict[str, str]:
    report = tflrnn.verify(data, **kwargs)
    assert not report.passed
    return {c.name: c.detail for c in report.failures}


def test_unknown_activation_value_is_caught():
    # The interpreter runs activation 17 as "none" without a word; verify must not.
    model = _model()
    model.subgraphs[0].operators[0].options.activation = 17
    failed = _failed(write(model))
    assert "not an ActivationFunctionType" in failed["op.options"]
    assert "numeric" in failed  # no reference for an activation that does not exist


def test_missing_options_are_caught():
    model = _model()
    model.subgraphs[0].operators[0].options = None
    failed = _failed(write(model))
    assert "expected SequenceRNNOptions" in failed["op.options"]


def test_unnamed_variables_are_caught():
    """VAR_HANDLEs without their options all name the empty variable, and the runtime gives them one (measured: a
    two-layer GRU's outputs then change from the first invoke on); verify must say so, not run it. One such handle
    is harmless."""
    from tflrnn.model import BuiltinOperator

    model = describe_model([tflrnn.GRUCell(4, name="a"), tflrnn.GRUCell(4, name="b")], input_size=3, time_steps=5)
    for graph in model.subgraphs:
        for op in graph.operators:
            if op.code == BuiltinOperator.VAR_HANDLE:
                op.options = None
    failed = _failed(write(model))
    assert "2 VAR_HANDLEs name variable ''" in failed["op.options"]
    assert failed["numeric"] == "not run: op.options failed"
    one = describe_model(tflrnn.GRUCell(4), input_size=3, time_steps=5)  # one state: its unnamed variable is its own
    for graph in one.subgraphs:
        for op in graph.operators:
            if op.code == BuiltinOperator.VAR_HANDLE:
                op.options = None
    assert tflrnn.verify(write(one)).passed


@pytest.mark.parametrize("builtin, deprecated", [(35, 0), (0, 35)])
def test_both_op_code_fields_must_be_set(builtin, deprecated):
    # The runtime runs either (it reads the larger field); readers that read only one of them would not.
    model = _model()
    op = model.subgraphs[0].operators[0]
    op.builtin_code, op.deprecated_builtin_code = builtin, deprecated
    failed = _failed(write(model))
    assert set(failed) == {"op.code"}
    assert f"builtin_code {builtin}, deprecated_builtin_code {deprecated}" in failed["op.code"]


def test_wrong_op_version_is_caught():
    model = _model()
    model.subgraphs[0].operators[0].version = 2
    failed = _failed(write(model))
    assert "version 2, expected 1" in failed["op.version"]


def test_state_with_data_is_caught_and_the_runtime_refuses_it():
    model = _model()
    state = model.subgraphs[0].tensors[4]
    state.data = np.zeros(state.shape, dtype=np.float32)
    failed = _failed(write(model))
    assert "runtime refuses" in failed["state.variable"]
    assert "variable tensor with buffer" in failed["runtime"]


def test_state_that_is_not_variable_is_caught():
    model = _model()
    model.subgraphs[0].tensors[4].is_variable = False
    failed = _failed(write(model))
    assert "is_variable=False" in failed["state.variable"]


def test_layout_that_disagrees_with_shapes_is_caught():
    model = _model()
    model.subgraphs[0].operators[0].options = SequenceRNNOptions(time_major=True, activation=Activation.TANH)
    failed = _failed(write(model))
    assert "tensors.shapes" in failed and "numeric" in failed


def test_signature_and_metadata_are_checked():
    model = _model()
    model.signatures = []
    del model.metadata["min_runtime_version"]
    failed = _failed(write(model))
    assert "no 'serving_default' signature" in failed["signature"]
    assert failed["metadata.min_runtime_version"] == "missing"


def test_weights_changed_after_build_are_caught_by_the_recorded_digest():
    model = _model()
    bias = model.subgraphs[0].tensors[3]
    bias.data = bias.data + np.float32(0.5)
    failed = _failed(write(model))
    assert set(failed) == {"metadata.tflrnn"}
    assert "weights_sha256 does not match" in failed["metadata.tflrnn"]


def test_schema_version_is_checked():
    model = _model()
    model.version = 2
    assert "model.version" in _failed(write(model))


def test_weights_option_requires_exact_weights(tmp_path, cli):
    w, r, b = random_weights(6, 3)
    trained = tflrnn.CellWeights(w, r, b)
    data = tflrnn.build(tflrnn.RNNCell(6), weights=trained, time_steps=4)
    path = tmp_path / "m.tflite"
    path.write_bytes(data)
    same = tmp_path / "same.npz"
    np.savez(same, **trained.to_tflite())
    other = tmp_path / "other.npz"
    np.savez(other, input_weights=w, recurrent_weights=r, bias=b + np.float32(1e-3))

    assert tflrnn.verify(data, weights=trained).passed
    ok = cli("verify", path, "--weights", same)
    assert ok.code == 0 and "bit-identical" in ok.out

    bad = cli("verify", path, "--weights", other)
    assert bad.code == 1
    assert "FAIL  weights.match" in bad.out and "bias differs (max 0.001)" in bad.out
    assert bad.out.strip().splitlines()[-1].endswith("weights.match")


def test_numeric_checks_measure_real_differences(tmp_path, cli):
    """With no tolerance, float32 against the float64 reference must fail; with the defaults it passes."""
    path = tmp_path / "m.tflite"
    path.write_bytes(tflrnn.build(tflrnn.RNNCell(64), input_size=32, time_steps=20))
    strict = cli("verify", path, "--atol", 0, "--rtol", 0, "--json")
    assert strict.code == 1
    report = json.loads(strict.out)
    numeric = {c["name"]: c for c in report["checks"] if c["name"].startswith("numeric.")}
    assert all(not c["passed"] and 0 < c["max_abs_error"] < 1e-5 for c in numeric.values())
    assert cli("verify", path).code == 0


def test_comparison_flags_wrong_and_non_finite_outputs():
    """The comparison itself, on outputs the runtime could produce: a wrong value, a NaN, a lost state."""
    from tflrnn import reference
    from tflrnn.verification.numeric import _compare, _previous_states

    w, r, b = random_weights(5, 3)
    weights = tflrnn.CellWeights(w, r, b)
    x = np.random.default_rng(0).standard_normal((2, 6, 3))
    y, _ = reference.run(x, weights, Activation.TANH)
    previous = _previous_states(y, np.zeros((2, 5)), time_major=False)

    def judge(actual):
        expected, pre, scale = reference.step(x, weights, Activation.TANH, previous)
        return _compare(actual, expected, pre, scale, Activation.TANH, 1e-5, 1e-5)

    assert judge(y.astype(np.float32)).ok
    wrong = y.copy()
    wrong[1, 3, 2] += 1e-3
    result = judge(wrong)
    assert not result.ok and result.max_abs_error == pytest.approx(1e-3, rel=1e-3)
    nan = y.copy()
    nan[0, 0, 0] = np.nan
    result = judge(nan)
    assert not result.ok and result.max_abs_error is None
    # A runtime that lost its state between invokes: judged against the state it should have carried.
    restarted, _ = reference.run(x, weights, Activation.TANH)
    carried_start = y[:, -1]
    expected, pre, scale = reference.step(x, weights, Activation.TANH,
                                          _previous_states(restarted, carried_start, time_major=False))
    assert not _compare(restarted, expected, pre, scale, Activation.TANH, 1e-5, 1e-5).ok


def test_absurd_input_shape_is_refused_before_allocating():
    # A hostile file may claim any batch and time; verify must not try to allocate it.
    model = _model()
    tensors = model.subgraphs[0].tensors
    tensors[0].shape = (2, 10**9, 3)
    tensors[5].shape = (2, 10**9, 6)
    failed = _failed(write(model))
    assert "would take 22.4 GiB (limit 2 GiB)" in failed["tensors.shapes"]
    assert "numeric" in failed


@pytest.mark.parametrize("tensor, change", [(0, "data"), (5, "data"), (5, "variable")])
def test_inputs_and_outputs_must_be_plain_tensors(tensor, change):
    # With data, the runtime would write the sequence into the model's own bytes.
    model = _model()
    t = model.subgraphs[0].tensors[tensor]
    if change == "data":
        t.data = np.zeros(t.shape, dtype=np.float32)
    else:
        t.is_variable = True
    data = write(model)
    before = bytes(data)
    failed = _failed(data)
    assert "has buffer data or is a variable" in failed["tensors.shapes"] and "numeric" in failed
    assert data == before


def test_signature_must_name_the_rnn_subgraph():
    model = _model()
    model.signatures[0].subgraph = 5
    assert "names subgraph 5" in _failed(write(model))["signature"]


def test_metadata_activation_must_match():
    model = _model()
    model.metadata["tflrnn"] = model.metadata["tflrnn"].replace(b'["tanh"', b'["relu"')
    assert "activation 'relu' but the graph has 'tanh'" in _failed(write(model))["metadata.tflrnn"]


def test_a_0_1_record_is_still_checked():
    """tflrnn 0.1 wrote long keys, hex digests and the names and sizes: such a model is still verified in full."""
    model = _model()
    w = model.subgraphs[0].tensors
    digest = tflrnn.CellWeights(w[1].data, w[2].data, w[3].data).sha256()
    cell = {"name": "rnn", "num_units": 6, "input_size": 3, "activation": "tanh", "weights_sha256": digest}
    model.metadata["tflrnn"] = json.dumps({"version": "0.1.0", "cells": [cell]}).encode()
    report = tflrnn.verify(write(model))
    detail = next(c.detail for c in report.checks if c.name == "metadata.tflrnn")
    assert report.passed and "written by tflrnn 0.1.0; name, sizes, activation" in detail
    model.metadata["tflrnn"] = json.dumps({"version": "0.1.0", "cells": [{**cell, "name": "rnx"}]}).encode()
    assert "name 'rnx' but the graph has 'rnn'" in _failed(write(model))["metadata.tflrnn"]


@pytest.mark.parametrize("payload", [b'{"cells":[1]}', b"[" * 5000, b'{"cells":[{"num_units":NaN}]}', b"\xff",
                                     b'{"c":[{"a":"tanh"}]}', b'{"c":[]}', b'{"c":[["tanh"]]}', b'[["tanh","x"]]',
                                     b'{"c":[["tanh","x"]],"d":[5]}', b'{"c":[["tanh","x"]],"d":[null]}'])
def test_malformed_tflrnn_metadata_fails_the_check_not_the_tool(payload):
    model = _model()
    model.metadata["tflrnn"] = payload
    assert _failed(write(model))["metadata.tflrnn"] == "not valid tflrnn JSON"


@pytest.mark.parametrize("signature, fragment", [((-1, 4, 3), "a dynamic batch is not supported"),
                                                 ((2, 4, -1), "only the time axis")])
def test_dynamic_dimensions_other_than_time_are_reported(signature, fragment):
    model = _model()
    model.subgraphs[0].tensors[0].shape_signature = signature
    assert fragment in _failed(write(model))["tensors.shapes"]


def test_long_unstable_sequences_are_judged_by_float32_rounding_not_luck():
    """Linear activation over 1000 steps: values grow and cancel; the tolerance follows the terms summed."""
    for seed in range(3):
        data = tflrnn.build(tflrnn.RNNCell(256, activation="linear"), time_steps=1000, seed=seed)
        report = tflrnn.verify(data, seed=seed)
        assert report.passed, [(c.name, c.detail) for c in report.failures]


def test_vectors_that_reuse_one_table_are_refused_quickly():
    """A tiny file whose vectors all point at the same table would otherwise be read a million times over."""
    import flatbuffers

    from tflrnn.errors import ModelFormatError
    from tflrnn.reader import read
    from tflrnn.writer import _table_vector, fb

    builder = flatbuffers.Builder(1024)
    name = builder.CreateString("t")
    shape = builder.CreateNumpyVector(np.asarray([1], dtype=np.int32))
    fb.TensorStart(builder)
    fb.TensorAddShape(builder, shape)
    fb.TensorAddName(builder, name)
    tensor = fb.TensorEnd(builder)
    tensors = _table_vector(builder, [tensor] * 1000, fb.SubGraphStartTensorsVector)
    fb.SubGraphStart(builder)
    fb.SubGraphAddTensors(builder, tensors)
    graph = fb.SubGraphEnd(builder)
    graphs = _table_vector(builder, [graph] * 1000, fb.ModelStartSubgraphsVector)
    fb.BufferStart(builder)
    buffers = _table_vector(builder, [fb.BufferEnd(builder)], fb.ModelStartBuffersVector)
    fb.ModelStart(builder)
    fb.ModelAddVersion(builder, 3)
    fb.ModelAddSubgraphs(builder, graphs)
    fb.ModelAddBuffers(builder, buffers)
    builder.Finish(fb.ModelEnd(builder), file_identifier=b"TFL3")
    data = bytes(builder.Output())
    assert len(data) < 10_000
    with pytest.raises(ModelFormatError, match="refer to the same entries over and over"):
        read(data)


def test_equal_weights_share_one_buffer_whatever_the_objects():
    w = np.full((4, 4), 0.25, dtype=np.float32)
    b = np.zeros(4, dtype=np.float32)
    shared = tflrnn.build(tflrnn.RNNCell(4), weights=tflrnn.CellWeights(w, w, b))
    copied = tflrnn.build(tflrnn.RNNCell(4), weights=tflrnn.CellWeights(w, w.copy(), b))
    assert shared == copied and tflrnn.verify(shared).passed


def test_swapped_directions_and_mixed_layers_fail_verify():
    model = describe_model(tflrnn.RNNCell(4), input_size=3, time_steps=2, bidirectional=True)
    op = model.subgraphs[0].operators[0]
    op.inputs[1:9] = op.inputs[5:9] + op.inputs[1:5]  # backward weights and state in the forward slots
    del model.metadata["tflrnn"]
    assert "op.directions" in {c.name for c in tflrnn.verify(write(model)).failures}

    stack = describe_model([tflrnn.RNNCell(4, name="a"), tflrnn.RNNCell(4, name="b")], input_size=4, time_steps=2)
    first, second = stack.subgraphs[0].operators
    first.inputs[1], second.inputs[1] = second.inputs[1], first.inputs[1]  # W of each layer in the other
    del stack.metadata["tflrnn"]
    assert {"tensors.names[0]", "tensors.names[1]"} <= {c.name for c in tflrnn.verify(write(stack)).failures}
