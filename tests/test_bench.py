"""`tflrnn bench`: real timings through LiteRT (the numbers are not asserted, only their shape and sense)."""

from __future__ import annotations

import json

import tflrnn
from support import assert_clean_error


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
