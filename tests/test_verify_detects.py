"""Every verify check can fail: models broken in one way each, written through the project's own writer."""

from __future__ import annotations

import json

import numpy as np
import pytest

import tflrnn
from tflrnn.assemble import describe_model
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
    from tflrnn.verifier import _compare, _previous_states

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
