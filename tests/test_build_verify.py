"""Build and verify through the real LiteRT interpreter: every activation, both layouts, sizes, determinism."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tflrnn
from tflrnn.cell import ACTIVATIONS
from tflrnn.config import load_schema

from support import random_weights

ACTIVATION_NAMES = sorted(ACTIVATIONS)
FUSED = {"tanh": "TANH", "relu": "RELU", "relu6": "RELU6", "linear": "NONE", "none": "NONE",
         "relu_n1_to_1": "RELU_N1_TO_1", "sign_bit": "SIGN_BIT"}


@pytest.mark.parametrize("time_major", [False, True], ids=["batch-major", "time-major"])
@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_every_activation_and_layout_verifies(activation, time_major):
    cell = tflrnn.RNNCell(24, activation=activation)
    data = tflrnn.build(cell, input_size=12, time_steps=7, batch_size=3, time_major=time_major)

    report = tflrnn.verify(data)

    assert report.passed, [(c.name, c.detail) for c in report.failures]
    names = {c.name for c in report.checks}
    assert {"numeric.first_invoke", "numeric.state_carried", "numeric.reset", "op.options"} <= names
    options = tflrnn.inspect(data).to_dict()["subgraphs"][0]["operators"][0]["options"]
    assert options["fused_activation_function"] == FUSED[activation]
    assert options["time_major"] is time_major
    x_shape = tflrnn.inspect(data).to_dict()["subgraphs"][0]["tensors"][0]["shape"]
    assert x_shape == ([7, 3, 12] if time_major else [3, 7, 12])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    units=st.integers(1, 128),
    input_size=st.integers(1, 64),
    time_steps=st.integers(1, 16),
    batch_size=st.integers(1, 4),
    time_major=st.booleans(),
    activation=st.sampled_from(ACTIVATION_NAMES),
    seed=st.integers(0, 2**16),
)
def test_property_any_size_builds_and_verifies(units, input_size, time_steps, batch_size, time_major, activation,
                                               seed):
    cell = tflrnn.RNNCell(units, activation=activation)
    data = tflrnn.build(cell, input_size=input_size, time_steps=time_steps, batch_size=batch_size,
                        time_major=time_major, seed=seed)
    report = tflrnn.verify(data, seed=seed)
    assert report.passed, [(c.name, c.detail) for c in report.failures]


def test_identical_inputs_give_identical_bytes(tmp_path, cli):
    a = tflrnn.build(tflrnn.RNNCell(32, activation="relu"), input_size=8, time_steps=5, seed=3)
    b = tflrnn.build(tflrnn.RNNCell(32, activation="relu"), input_size=8, time_steps=5, seed=3)
    assert a == b
    assert a != tflrnn.build(tflrnn.RNNCell(32, activation="relu"), input_size=8, time_steps=5, seed=4)

    first, second = tmp_path / "a.tflite", tmp_path / "b.tflite"
    assert cli("build", "--units", 16, "--seed", 9, "-o", first).code == 0
    assert cli("build", "--units", 16, "--seed", 9, "-o", second).code == 0
    assert first.read_bytes() == second.read_bytes()


def test_cli_build_then_verify(tmp_path, cli):
    path = tmp_path / "rnn.tflite"
    built = cli("build", "--units", 64, "-o", path)
    assert built.code == 0, built.err
    assert str(path) in built.out and "UNIDIRECTIONAL_SEQUENCE_RNN" in built.out and "sha256" in built.out

    verified = cli("verify", path)
    assert verified.code == 0, verified.out
    assert verified.out.strip().splitlines()[-1].startswith(f"{path}: all ")
    assert "FAIL" not in verified.out


def test_build_defaults_and_json_summary(tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("build", "--units", 64, "--json")
    assert result.code == 0, result.err
    summary = json.loads(result.out)
    data = (tmp_path / "rnn.tflite").read_bytes()
    assert summary["path"] == "rnn.tflite"
    assert summary["input_shape"] == [1, 1, 64] and summary["output_shape"] == [1, 1, 64]
    assert summary["state_shape"] == [1, 64]
    assert summary["activation"] == "tanh" and summary["time_major"] is False
    assert summary["bytes"] == len(data)
    import hashlib

    assert summary["sha256"] == hashlib.sha256(data).hexdigest()


def test_model_structure(tmp_path):
    data = tflrnn.build(tflrnn.RNNCell(16, name="enc"), input_size=4, time_steps=3, batch_size=2)
    info = tflrnn.inspect(data).to_dict()
    assert data[4:8] == b"TFL3" and info["schema_version"] == 3
    (graph,) = info["subgraphs"]
    (op,) = graph["operators"]
    assert op["op"] == "UNIDIRECTIONAL_SEQUENCE_RNN"
    assert op["builtin_code"] == 35 and op["deprecated_builtin_code"] == 35 and op["version"] == 1
    tensors = {t["name"]: t for t in graph["tensors"]}
    assert list(tensors) == ["enc/input", "enc/input_weights", "enc/recurrent_weights", "enc/bias",
                             "enc/hidden_state", "enc/output"]
    state = tensors["enc/hidden_state"]
    assert state["variable"] is True and state["bytes"] == 0 and state["shape"] == [2, 16]
    assert tensors["enc/input_weights"]["bytes"] == 16 * 4 * 4
    assert info["signatures"] == [{"key": "serving_default", "subgraph": 0, "inputs": {"input": 0},
                                   "outputs": {"output": 5}}]
    assert info["metadata"]["min_runtime_version"] == "1.14.0"
    # The record: [activation, sha256 in base64url] per direction; names and sizes are the graph's own.
    (entry,) = info["metadata"]["tflrnn"]["c"]
    weights = tflrnn.inspect(data).model.subgraphs[0].tensors
    digest = tflrnn.CellWeights(weights[1].data, weights[2].data, weights[3].data).sha256()
    assert entry == ["tanh", base64.urlsafe_b64encode(bytes.fromhex(digest)).rstrip(b"=").decode()]
    assert info["description"] == f"tflrnn {tflrnn.__version__}"


def test_metadata_is_compact():
    """A 64-unit, 32-input, 50-step cell: at most 1 KiB beside its raw weights, and the record still holds what
    verify checks."""
    data = tflrnn.build(tflrnn.RNNCell(64), input_size=32, time_steps=50)
    raw_weights = 4 * (64 * 32 + 64 * 64 + 64)
    assert len(data) - raw_weights <= 1024, len(data) - raw_weights
    assert tflrnn.verify(data).passed


def test_state_carries_and_reset_zeroes_in_the_interpreter():
    """The model's own behaviour, checked directly against the reference (not through verify)."""
    from ai_edge_litert.interpreter import Interpreter

    from tflrnn import reference
    from tflrnn.model import Activation

    w, r, b = random_weights(8, 3)
    data = tflrnn.build(tflrnn.RNNCell(8), weights=tflrnn.CellWeights(w, r, b), time_steps=4, batch_size=2)
    interpreter = Interpreter(model_content=data)
    interpreter.allocate_tensors()
    run = interpreter.get_signature_runner("serving_default")
    x1, x2 = np.random.default_rng(1).standard_normal((2, 2, 4, 3)).astype(np.float32)

    y1, y2 = run(input=x1)["output"], run(input=x2)["output"]
    interpreter.reset_all_variables()
    y3 = run(input=x1)["output"]

    joined, _ = reference.run(np.concatenate([x1, x2], axis=1), tflrnn.CellWeights(w, r, b), Activation.TANH)
    np.testing.assert_allclose(np.concatenate([y1, y2], axis=1), joined, atol=1e-5)
    np.testing.assert_array_equal(y3, y1)


def test_verify_json_report_follows_schema(tmp_path, cli):
    import jsonschema

    path = tmp_path / "m.tflite"
    path.write_bytes(tflrnn.build(tflrnn.RNNCell(10), time_steps=3))
    result = cli("verify", path, "--json", "--sequences", 4, "--seed", 5, "--atol", 1e-4)
    assert result.code == 0
    report = json.loads(result.out)
    jsonschema.validate(report, load_schema("verify-report.schema.json"))
    assert report["passed"] is True
    assert report["settings"] == {"atol": 1e-4, "rtol": 1e-5, "sequences": 4, "seed": 5, "runtime": "litert"}
    assert [r["name"] for r in report["runtimes"]] == ["litert"] and report["against"] is None
    numeric = [c for c in report["checks"] if c["name"].startswith("numeric.")]
    assert len(numeric) == 3 and all(0 <= c["max_abs_error"] < 1e-4 for c in numeric)
