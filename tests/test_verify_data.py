"""verify on the user's data (`--data`, `--max-error`), the build's report on its calibration data, the runtimes
that give back only the outputs of a full-int8 model (`int8.outputs`), and no verify that passes on no numbers."""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import pytest

import tflrnn
from tflrnn.builder import model_of, network_of
from tflrnn.config import load_schema
from tflrnn.model import BuiltinOperator
from tflrnn.reader import read
from tflrnn.verification import verify
from tflrnn.weights import export_weights
from tflrnn.writer import write

from support import assert_clean_error

UNITS, INPUTS, STEPS = 8, 3, 6


def _sequences(n, seed, scale=1.0, steps=STEPS):
    return (np.random.default_rng(seed).standard_normal((n, 1, steps, INPUTS)) * scale).astype(np.float32)


def _int8_model(calibration, **options) -> bytes:
    return write(model_of(network_of(tflrnn.RNNCell(UNITS), input_size=INPUTS, time_steps=STEPS,
                                     lowering="portable", quantize="full-int8", calibration=calibration, **options)))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    np.save(folder / "calibration.npy", _sequences(32, 1))
    np.save(folder / "data.npy", _sequences(8, 2))
    (folder / "int8.tflite").write_bytes(_int8_model(_sequences(32, 1)))
    return folder


def test_the_error_on_the_users_data_is_reported_and_bounded(cli, files):
    passed = cli("verify", files / "int8.tflite", "--data", files / "data.npy", "--max-error", "0.5", "--json")
    report = json.loads(passed.out)
    jsonschema.validate(report, load_schema("verify-report.schema.json"))
    assert passed.code == 0 and report["passed"]
    data = [c for c in report["checks"] if c["name"] == "data"]
    assert {c["runtime"] for c in data} == {"litert", "litert+xnnpack"}
    # Against the float network: the error is quantization's, a few hundredths, not zero (a check that compared
    # the model's int8 outputs with themselves would say 0) and not the tenths of a wrong state.
    for check in data:
        assert 0.001 < check["max_abs_error"] < 0.5
    assert report["data"]["sequences"] == 8
    assert set(report["data"]["clipped"]) == {"input", "projection", "recurrent", "sum"}
    tight = cli("verify", files / "int8.tflite", "--data", files / "data.npy", "--max-error", "0.001")
    assert tight.code == 1 and "FAIL  data" in tight.out and "bound 0.001 (--max-error)" in tight.out


def test_ranges_that_saturate_on_real_inputs_pass_every_kernel_check_but_fail_the_data_bound(files, tmp_path):
    # Calibrated on inputs ten times smaller than the real ones: every kernel does what the int8 graph says (the
    # step checks pass), but the input saturates, which only the data check sees.
    model = _int8_model(_sequences(32, 1, scale=0.1))
    report = verify(model, data=files / "data.npy", max_error=0.2)
    steps = [c for c in report.checks if c.name == "int8.steps"]
    assert steps and all(c.passed for c in steps)
    data = [c for c in report.checks if c.name == "data"]
    assert data and not any(c.passed for c in data)
    assert report.data["clipped"]["input"] > 0.5  # most real inputs lie beyond a range fitted to a tenth of them


def test_float_models_are_gated_on_data_too(files, tmp_path):
    for lowering in ("fused", "portable"):
        model = write(model_of(network_of(tflrnn.RNNCell(UNITS), input_size=INPUTS, time_steps=STEPS,
                                          lowering=lowering)))
        report = verify(model, data=files / "data.npy", max_error=1e-4)
        data = [c for c in report.checks if c.name == "data"]
        assert report.passed and data and all(c.max_abs_error < 1e-5 for c in data), report.failures
        assert report.data["clipped"] is None


def test_the_data_runs_as_the_model_keeps_its_state(files):
    # Against the float weights: the io model fed back its final states, the zero model from zeros each time;
    # both within the quantization error of the reference run the same way (a mismatch would be ~0.5).
    for state in ("io", "zero"):
        report = verify(_int8_model(_sequences(32, 1), state=state), data=files / "data.npy", max_error=0.25)
        assert report.passed, [c.detail for c in report.failures]


def test_data_errors_are_one_line(cli, files, tmp_path):
    np.save(tmp_path / "long.npy", _sequences(2, 3, steps=STEPS + 1))
    assert_clean_error(cli("verify", files / "int8.tflite", "--data", tmp_path / "long.npy"), "--data",
                       "the model takes [1, 6, 3]")
    assert_clean_error(cli("verify", files / "int8.tflite", "--max-error", "0.1"), "--data FILE")
    assert_clean_error(cli("verify", files / "int8.tflite", "--data", files / "data.npy", "--max-error", "-1"),
                       "max_error")
    (tmp_path / "broken.npy").write_bytes(b"\x93NUMPY\x01\x00{'descr': '<f4', 'fortran_order': Fa")
    assert_clean_error(cli("verify", files / "int8.tflite", "--data", tmp_path / "broken.npy"), "--data")


def test_outputs_only_runtimes_are_checked_against_the_float_reference(files):
    report = verify(files / "int8.tflite", runtime="compiled")
    by_name = {(c.name, c.runtime): c for c in report.checks}
    outputs = by_name[("int8.outputs", "compiled")]
    assert outputs.passed and outputs.max_abs_error is not None and outputs.max_abs_error > 0
    assert by_name[("int8.steps", "litert")].passed  # the yardstick is checked step by step, asked for or not
    assert report.passed


def test_a_lost_state_fails_on_the_outputs_only_runtimes_too(files):
    # The state's ASSIGN_VARIABLE removed: the builtin kernels' step check catches it, so the outputs-only
    # runtimes are not excused by a yardstick that lost the state as well.
    model = read((files / "int8.tflite").read_bytes())
    graph = model.subgraphs[0]
    graph.operators = [op for op in graph.operators if op.code != BuiltinOperator.ASSIGN_VARIABLE]
    report = verify(write(model), runtime="compiled")
    assert not report.passed
    assert any(c.name == "int8.steps" and not c.passed for c in report.checks)
    assert not any(c.name == "int8.outputs" and c.passed for c in report.checks)


def test_a_verify_that_checked_no_numbers_does_not_pass(files, monkeypatch):
    # Every structural check passes, and the int8 numeric checks are made to add nothing (as the CompiledModel
    # path once did): verify must not say "passed".
    from tflrnn.verification import int8

    monkeypatch.setattr(int8, "int8_checks", lambda *args, **kwargs: None)
    report = verify(files / "int8.tflite")
    assert not report.passed
    assert [c.name for c in report.failures] == ["numeric"]
    assert "no numeric check ran" in report.failures[0].detail


def test_data_on_a_dynamic_time_axis_runs_at_the_datas_length(files, tmp_path):
    model = write(model_of(network_of(tflrnn.RNNCell(UNITS), input_size=INPUTS, time_steps="dynamic",
                                      lowering="portable")))
    np.save(tmp_path / "seven.npy", _sequences(3, 4, steps=7))
    report = verify(model, data=tmp_path / "seven.npy", max_error=1e-4)
    data = [c for c in report.checks if c.name == "data"]
    assert report.passed and len(data) == 2 and all(c.max_abs_error < 1e-5 for c in data), report.failures
    # The CompiledModel API cannot resize: its data check fails, saying why, instead of vanishing.
    compiled = verify(model, runtime="compiled", data=tmp_path / "seven.npy")
    failed = [c for c in compiled.checks if c.name == "data"]
    assert failed and not failed[0].passed and "did not run them" in failed[0].detail


def test_data_against_the_float_weights_given(files, tmp_path):
    # --weights: the reference is the float model the int8 one was quantized from (error a few hundredths);
    # weights of another shape fail weights.match and leave the model's own weights as the reference.
    float_model = write(model_of(network_of(tflrnn.RNNCell(UNITS), input_size=INPUTS, time_steps=STEPS,
                                            lowering="portable")))
    (tmp_path / "float.tflite").write_bytes(float_model)
    export_weights(tmp_path / "float.tflite", tmp_path / "w.npz")
    report = verify(files / "int8.tflite", weights=tmp_path / "w.npz", data=files / "data.npy", max_error=0.5)
    data = [c for c in report.checks if c.name == "data"]
    assert report.passed and data and all("float weights given" in c.detail for c in data)
    other = write(model_of(network_of(tflrnn.RNNCell(UNITS + 1), input_size=INPUTS, time_steps=STEPS,
                                      lowering="portable")))
    (tmp_path / "other.tflite").write_bytes(other)
    export_weights(tmp_path / "other.tflite", tmp_path / "o.npz")
    mismatched = verify(files / "int8.tflite", weights=tmp_path / "o.npz", data=files / "data.npy")
    assert [c.name for c in mismatched.failures] == ["weights.match"]
    assert all("the model's own weights" in c.detail for c in mismatched.checks if c.name == "data")


def test_data_beyond_the_reference_budget_is_refused(cli, files, tmp_path):
    big = write(model_of(network_of(tflrnn.RNNCell(2048), input_size=8, time_steps=50, lowering="portable")))
    (tmp_path / "big.tflite").write_bytes(big)
    np.save(tmp_path / "many.npy", np.zeros((400, 1, 50, 8), np.float32))  # 20,000 steps of 2048 units
    assert_clean_error(cli("verify", tmp_path / "big.tflite", "--data", tmp_path / "many.npy"), "budget",
                       "give at most")


def _build(cli, calibration, out, *extra):
    return cli("build", "--units", UNITS, "--input-size", INPUTS, "--time-steps", STEPS, "--lowering", "portable",
               "--quantize", "full-int8", "--calibration", calibration, "-o", out, *extra)


def test_build_reports_the_error_on_its_calibration_data(cli, files, tmp_path):
    built = _build(cli, files / "calibration.npy", tmp_path / "m.tflite", "--json")
    assert built.code == 0, built.err
    calibration = json.loads(built.out)["int8"]["calibration"]
    assert calibration["sequences"] == 32 and 0.001 < calibration["max_error"] < 0.2
    assert 0 < calibration["mean_error"] < calibration["max_error"]
    assert calibration["warnings"] == [] and set(calibration["clipped"]) == {"input", "projection", "recurrent", "sum"}
    text = _build(cli, files / "calibration.npy", tmp_path / "m.tflite")
    assert "on its 32 calibration sequences against the float model (LiteRT): error max" in text.out


def _build_with_outlier(cli, tmp_path, value: float, *options):
    """A full-int8 build calibrated on normal inputs with one value of `value` among them."""
    data = _sequences(16, 1)
    data[0, 0, 0, 0] = value
    np.save(tmp_path / "outlier.npy", data)
    return _build(cli, tmp_path / "outlier.npy", tmp_path / "m.tflite", *options)


def test_build_warns_of_a_degenerate_range(cli, tmp_path):
    # One value of 1e6: the input's format spans it, and every real input lands on one or two levels.
    built = _build_with_outlier(cli, tmp_path, 1e6)
    assert built.code == 0, built.err
    assert "warning: input of the network: the calibration values use 2 of the 65,536 int16 levels" in built.err
    built = _build_with_outlier(cli, tmp_path, 1e6, "--input-precision", "int8")
    assert built.code == 0, built.err
    assert "warning: input of the network: the calibration values use 2 of the 256 int8 levels" in built.err


def test_a_calibration_that_makes_an_unrunnable_model_is_refused(cli, tmp_path):
    assert_clean_error(_build_with_outlier(cli, tmp_path, 1e28), "does not run on LiteRT", "levels")
    assert not (tmp_path / "m.tflite").exists()
