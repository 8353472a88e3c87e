"""`tflrnn bench`: real timings through LiteRT (the numbers are not asserted, only their shape and sense)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import tflrnn
from support import assert_clean_error
from tflrnn.benchmark import _Subject


def test_bench_one_model_and_a_pair(tmp_path, cli):
    small, large = tmp_path / "small.tflite", tmp_path / "large.tflite"
    small.write_bytes(tflrnn.build(tflrnn.RNNCell(16), time_steps=10))
    large.write_bytes(tflrnn.build(tflrnn.RNNCell(128), time_steps=10, time_major=True))

    text = cli("bench", small, "--runs", 5, "--warmup", 1)
    assert text.code == 0 and "us per invoke" in text.out and "over 10 steps" in text.out

    result = cli("bench", small, "--vs", large, "--runs", 7, "--warmup", 0, "--json")
    assert result.code == 0
    timings = json.loads(result.out)
    assert timings["settings"] == {"runs": 7, "warmup": 0, "threads": 1, "seed": 0}
    for key in ("model", "vs"):
        t = timings[key]
        assert 0 < t["p10_us"] <= t["median_us"] <= t["p90_us"]
        assert t["time_steps"] == 10 and t["per_step_median_us"] == t["median_us"] / 10
    assert timings["model"]["model"] == str(small) and timings["vs"]["bytes"] == large.stat().st_size
    assert 0 < timings["ratio"]["p10"] <= timings["ratio"]["median"] <= timings["ratio"]["p90"]


def test_bench_bad_input(tmp_path, cli):
    model = tmp_path / "m.tflite"
    model.write_bytes(tflrnn.build(tflrnn.RNNCell(4)))
    assert_clean_error(cli("bench", model, "--runs", 0), "runs must be an integer of at least 1")
    assert_clean_error(cli("bench", model, "--threads", 0), "threads must be")
    assert_clean_error(cli("bench", tmp_path / "none.tflite"), "model file not found")
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a model at all")
    assert_clean_error(cli("bench", model, "--vs", junk), "not a TFLite model")


def _first_output(data: bytes, inputs) -> np.ndarray:
    """The output of a fresh interpreter's first invoke: from a zero state."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=data)
    interpreter.allocate_tensors()
    for index, value in inputs:
        interpreter.set_tensor(index, value)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


@pytest.mark.parametrize("lowering", ["fused", "portable"])
def test_bench_times_every_invoke_from_a_zero_state(tmp_path, lowering):
    # A carried state: without a reset the second invoke continues from the first one's final state. A portable
    # model keeps it in resource variables, which reset_all_variables() does not zero: bench resets through the
    # model's reset signature.
    data = tflrnn.build(tflrnn.RNNCell(8), input_size=3, time_steps=4, lowering=lowering)
    subject = _Subject(data, threads=1, seed=0)
    output = subject.interpreter.get_output_details()[0]["index"]
    fresh = _first_output(data, subject.inputs)
    for _ in range(3):
        subject.invoke()  # the timed invoke, after bench's own reset
        np.testing.assert_array_equal(subject.interpreter.get_tensor(output), fresh)
    for index, value in subject.inputs:  # the same inputs again without a reset: the state carried, so it differs
        subject.interpreter.set_tensor(index, value)
    subject.interpreter.invoke()
    assert not np.array_equal(subject.interpreter.get_tensor(output), fresh)
