"""--time-steps dynamic: -1 on the time axis, any length by resizing; the batch stays fixed."""

from __future__ import annotations

import json

import numpy as np

import tflrnn
from support import assert_clean_error, random_weights
from tflrnn import reference
from tflrnn.model import Activation


def test_dynamic_time_model_runs_any_length(tmp_path, cli):
    out = tmp_path / "m.tflite"
    w = tflrnn.CellWeights(*random_weights(6, 3))
    np.savez(tmp_path / "w.npz", **w.to_tflite())
    built = cli("build", "--weights", tmp_path / "w.npz", "--time-steps", "dynamic", "--batch-size", 2, "-o", out,
                "--json")
    assert built.code == 0, built.err
    assert json.loads(built.out)["input_shape"] == [2, -1, 3]
    tensors = tflrnn.inspect(out).to_dict()["subgraphs"][0]["tensors"]
    assert tensors[0]["shape_signature"] == [2, -1, 3] and tensors[5]["shape_signature"] == [2, -1, 6]

    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(out))
    interpreter.allocate_tensors()
    runner = interpreter.get_signature_runner("serving_default")
    for length in (1, 7, 30):
        interpreter.reset_all_variables()
        x = np.random.default_rng(length).standard_normal((2, length, 3)).astype(np.float32)
        expected, _ = reference.run(x, w, Activation.TANH)
        np.testing.assert_allclose(runner(input=x)["output"], expected, atol=1e-5)

    verified = cli("verify", out)
    assert verified.code == 0
    assert "resized to 3 lengths: 1, 4, 9 steps" in verified.out  # allocated for 1 step, then 4 and 9


def test_dynamic_time_with_a_stack_and_last_step():
    cells = [tflrnn.RNNCell(5, name="a"), tflrnn.RNNCell(3, activation="relu", name="b")]
    data = tflrnn.build(cells, input_size=2, time_steps="dynamic", time_major=True, last_step=True)
    info = tflrnn.inspect(data).to_dict()["subgraphs"][0]["tensors"]
    assert info[0]["shape_signature"] == [-1, 1, 2]
    report = tflrnn.verify(data, sequences=2)
    assert report.passed, [(c.name, c.detail) for c in report.failures]


def test_a_dynamic_batch_is_refused_with_the_reason(tmp_path, cli):
    assert_clean_error(cli("build", "--units", 4, "--batch-size", "dynamic", "-o", tmp_path / "m.tflite"),
                       "the batch cannot be dynamic", "[batch, units] variable")
    config = tmp_path / "c.json"
    config.write_text('{"units": 4, "batch_size": "dynamic"}')
    assert_clean_error(cli("build", "--config", config), "the batch cannot be dynamic")
    assert not (tmp_path / "m.tflite").exists()
