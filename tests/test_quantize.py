"""--quantize int8: hybrid ops (int8 W and R, float inputs), op version 2, or 3 with asymmetric inputs."""

from __future__ import annotations

import numpy as np
import pytest

import tflrnn
from support import assert_clean_error


@pytest.mark.parametrize("asymmetric, version, runtime", [(False, 2, "1.14.0"), (True, 3, "2.3.0")])
def test_hybrid_model_structure_and_verification(asymmetric, version, runtime):
    float_model = tflrnn.build(tflrnn.RNNCell(64), input_size=32, time_steps=20)
    data = tflrnn.build(tflrnn.RNNCell(64), input_size=32, time_steps=20, quantize="int8",
                        asymmetric_inputs=asymmetric)
    info = tflrnn.inspect(data)
    tensors = info.model.subgraphs[0].tensors
    assert tensors[1].dtype == tensors[2].dtype == "int8" and tensors[3].dtype == "float32"
    assert tensors[1].quantization.zero_point == (0,) and tensors[1].quantization.scale[0] > 0
    assert np.abs(tensors[1].data).max() == 127  # symmetric: the largest weight maps to 127
    (op,) = info.model.subgraphs[0].operators
    assert op.version == version and op.options.asymmetric_quantize_inputs is asymmetric
    assert info.to_dict()["metadata"]["min_runtime_version"] == runtime
    weight_bytes = 4 * (64 * 32 + 64 * 64)
    assert len(float_model) - len(data) > 0.7 * weight_bytes  # W and R take a quarter of the float bytes

    report = tflrnn.verify(data)
    assert report.passed, [(c.name, c.detail) for c in report.failures]


def test_hybrid_against_its_float_weights(tmp_path, cli):
    weights = tflrnn.initial_weights(48, 16, seed=3)
    np.savez(tmp_path / "w.npz", **weights.to_tflite())
    out = tmp_path / "q.tflite"
    assert cli("build", "--weights", tmp_path / "w.npz", "--quantize", "int8", "--time-steps", 10, "-o", out).code == 0
    result = cli("verify", out, "--weights", tmp_path / "w.npz")
    assert result.code == 0, result.out
    assert "PASS  numeric.float_weights" in result.out and "rounded to int8" in result.out

    other = tflrnn.initial_weights(48, 16, seed=4)
    np.savez(tmp_path / "other.npz", **other.to_tflite())
    mismatch = cli("verify", out, "--weights", tmp_path / "other.npz")
    assert mismatch.code == 1 and "FAIL  weights.match" in mismatch.out and "FAIL  numeric.float_weights" in mismatch.out


def test_hybrid_stack_with_dynamic_time_and_last_step():
    cells = [tflrnn.RNNCell(16, activation="relu", name="a"), tflrnn.RNNCell(8, name="b")]
    data = tflrnn.build(cells, input_size=4, time_steps="dynamic", last_step=True, quantize="int8")
    report = tflrnn.verify(data)
    assert report.passed, [(c.name, c.detail) for c in report.failures]


def test_asymmetric_inputs_need_quantization(tmp_path, cli):
    assert_clean_error(cli("build", "--units", 4, "--asymmetric-inputs", "-o", tmp_path / "m.tflite"),
                       "add --quantize int8")


def test_calibration_of_another_shape_sets_ranges_and_is_not_run(cli, tmp_path):
    """Calibration may hold sequences of any batch and length (they set the ranges); LiteRT runs only those of the
    model's shape, so data of another shape gives a build that says it was not run on it (a fuzz case: exit 3)."""
    import json

    np.save(tmp_path / "c.npy", np.random.default_rng(0).standard_normal((2, 1, 4, 2)).astype(np.float32))
    out = tmp_path / "m.tflite"
    built = cli("build", "--units", "3", "--input-size", "2", "--time-steps", "4", "--time-major", "--lowering",
                "portable", "--quantize", "full-int8", "--calibration", tmp_path / "c.npy", "-o", out, "--json")
    assert built.code == 0, built.err
    report = json.loads(built.out)["int8"]["calibration"]
    assert report["max_error"] is None and report["clipped"]
    assert "not run on the calibration data" in report["warnings"][0]
