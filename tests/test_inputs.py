"""Weights files and config files: the names and layouts accepted, and how they combine with options."""

from __future__ import annotations

import json

import numpy as np
import pytest

import tflrnn
from support import random_weights


def _inspect(path):
    return tflrnn.inspect(path).to_dict()


@pytest.mark.parametrize("prefix", ["", "rnn/", "encoder/cell/"])
@pytest.mark.parametrize("layout", ["tflite", "keras"])
def test_npz_weights_in_either_naming(tmp_path, cli, prefix, layout):
    w, r, b = random_weights(6, 4)
    if layout == "tflite":
        arrays = {"input_weights": w, "recurrent_weights": r, "bias": b}
    else:
        arrays = {"kernel": w.T, "recurrent_kernel": r.T, "bias": b}
    weights = tmp_path / "w.npz"
    np.savez(weights, **{prefix + k: v for k, v in arrays.items()})
    out = tmp_path / "m.tflite"

    result = cli("build", "--weights", weights, "--time-steps", 3, "-o", out)

    assert result.code == 0, result.err
    tensors = tflrnn.inspect(out).model.subgraphs[0].tensors
    np.testing.assert_array_equal(tensors[1].data, w)
    np.testing.assert_array_equal(tensors[2].data, r)
    assert tensors[0].shape == (1, 3, 4)  # input size taken from the weights
    verified = cli("verify", out, "--weights", weights)
    assert verified.code == 0, verified.out


def test_weights_npz_and_in_memory_build_are_byte_identical(tmp_path, cli):
    w, r, b = random_weights(10, 3)
    weights = tmp_path / "w.npz"
    np.savez(weights, input_weights=w, recurrent_weights=r, bias=b)
    out = tmp_path / "m.tflite"
    assert cli("build", "--weights", weights, "-o", out).code == 0
    assert out.read_bytes() == tflrnn.build(tflrnn.RNNCell(10), weights=tflrnn.CellWeights(w, r, b))


def test_name_picks_among_several_cells(tmp_path, cli):
    weights = tmp_path / "w.npz"
    enc, dec = random_weights(4, 2, seed=1), random_weights(5, 2, seed=2)
    np.savez(weights, **{f"enc/{k}": v for k, v in zip(("input_weights", "recurrent_weights", "bias"), enc)},
             **{f"dec/{k}": v for k, v in zip(("input_weights", "recurrent_weights", "bias"), dec)})
    out = tmp_path / "m.tflite"
    assert cli("build", "--weights", weights, "--name", "dec", "-o", out).code == 0
    assert _inspect(out)["subgraphs"][0]["tensors"][1]["name"] == "dec/input_weights"
    assert cli("verify", out, "--weights", weights).code == 0  # verify picks the model's own cell


def test_tflite_rnn_cell_get_config_json(tmp_path, cli):
    config = tmp_path / "cell.json"
    config.write_text(json.dumps(tflrnn.RNNCell(20, activation="relu", name="speech").get_config()))
    out = tmp_path / "m.tflite"
    assert cli("build", "--config", config, "--input-size", 8, "-o", out).code == 0
    info = _inspect(out)
    assert info["subgraphs"][0]["tensors"][1]["shape"] == [20, 8]
    assert info["subgraphs"][0]["tensors"][1]["name"] == "speech/input_weights"
    assert info["subgraphs"][0]["operators"][0]["options"]["fused_activation_function"] == "RELU"


def test_keras_style_config_with_layout_keys(tmp_path, cli):
    config = tmp_path / "layer.json"
    config.write_text(json.dumps({
        "class_name": "SimpleRNN",
        "config": {"name": "simple_rnn", "trainable": True, "dtype": {"module": "keras", "class_name": "DTypePolicy",
                                                                       "config": {"name": "float32"}},
                   "return_sequences": True, "return_state": False, "go_backwards": False, "stateful": False,
                   "unroll": False, "units": 12, "activation": "tanh", "use_bias": True, "dropout": 0.0,
                   "recurrent_dropout": 0.0, "seed": 5, "kernel_initializer": {"class_name": "GlorotUniform"},
                   "batch_input_shape": [2, 9, 3]},
    }))
    out = tmp_path / "m.tflite"
    assert cli("build", "--config", config, "-o", out).code == 0
    tensors = _inspect(out)["subgraphs"][0]["tensors"]
    assert tensors[0]["shape"] == [2, 9, 3] and tensors[4]["shape"] == [2, 12]
    same_seed = tflrnn.build(tflrnn.RNNCell(12, name="simple_rnn"), input_size=3, time_steps=9, batch_size=2, seed=5)
    assert out.read_bytes() == same_seed


def test_toml_config_and_command_line_precedence(tmp_path, cli):
    config = tmp_path / "cell.toml"
    config.write_text('num_units = 8\nactivation = "relu6"\ntime_major = true\ntime_steps = 5\nname = "t"\n')
    out = tmp_path / "m.tflite"
    assert cli("build", "--config", config, "--activation", "linear", "--batch-major", "-o", out).code == 0
    op = _inspect(out)["subgraphs"][0]["operators"][0]["options"]
    assert op["fused_activation_function"] == "NONE" and op["time_major"] is False
    assert _inspect(out)["subgraphs"][0]["tensors"][0]["shape"] == [1, 5, 8]


def test_use_bias_false_requires_a_zero_bias(tmp_path, cli):
    config = tmp_path / "cell.json"
    config.write_text('{"units": 4, "use_bias": false}')
    weights = tmp_path / "w.npz"
    w, r, b = random_weights(4, 2)
    np.savez(weights, input_weights=w, recurrent_weights=r, bias=b)
    result = cli("build", "--config", config, "--weights", weights, "-o", tmp_path / "m.tflite")
    assert result.code == 2 and "use_bias=false" in result.err
    np.savez(weights, input_weights=w, recurrent_weights=r, bias=np.zeros(4))
    assert cli("build", "--config", config, "--weights", weights, "-o", tmp_path / "m.tflite").code == 0


def test_inspect_text_and_json(tmp_path, cli):
    out = tmp_path / "m.tflite"
    out.write_bytes(tflrnn.build(tflrnn.RNNCell(16), input_size=4, time_steps=2))
    text = cli("inspect", out)
    assert text.code == 0
    for fragment in ("UNIDIRECTIONAL_SEQUENCE_RNN v1", "rnn/hidden_state", "yes", "fused_activation_function TANH",
                     "signature 'serving_default'", "metadata min_runtime_version: 1.14.0", "metadata tflrnn:"):
        assert fragment in text.out, fragment
    as_json = json.loads(cli("inspect", out, "--json").out)
    assert as_json["bytes"] == out.stat().st_size
    assert [t["variable"] for t in as_json["subgraphs"][0]["tensors"]] == [False] * 4 + [True, False]


def test_config_keys_for_full_int8(tmp_path, cli):
    """A TOML config with lowering, quantize = "full-int8", calibration and io = "int8": the model is int8 through
    and through, its input in the calibration data's range; a command-line option still overrides the file."""
    from tflrnn.model import BuiltinOperator
    from tflrnn.reader import read

    calibration = np.random.default_rng(3).uniform(-2.0, 6.0, (10, 1, 4, 3)).astype(np.float32)
    np.save(tmp_path / "cal.npy", calibration)
    config = tmp_path / "cell.toml"
    config.write_text(f'num_units = 5\ninput_size = 3\ntime_steps = 4\nlowering = "portable"\n'
                      f"quantize = \"full-int8\"\ncalibration = '{tmp_path / 'cal.npy'}'\nio = \"int8\"\n")
    for io, extra in (("int8", []), ("float32", ["--io", "float"])):
        out = tmp_path / f"{io}.tflite"
        result = cli("build", "--config", config, *extra, "-o", out)
        assert result.code == 0, result.err
        graph = read(out.read_bytes()).subgraphs[0]
        x, y = graph.tensors[graph.inputs[0]], graph.tensors[graph.outputs[0]]
        assert (x.dtype, y.dtype) == (io, io)
        # (a float input is QUANTIZEd to int16: the first projection's bias is int64)
        assert all(t.dtype in ("int8", "int32", "int64") for t in graph.tensors if t.data is not None)
        steps = [graph.tensors[op.outputs[0]] for op in graph.operators if op.code == BuiltinOperator.TANH]
        assert len(steps) == 4 and all(t.dtype == "int8" for t in steps)
        quantized = x if io == "int8" else next(graph.tensors[op.outputs[0]] for op in graph.operators
                                                if op.code == BuiltinOperator.QUANTIZE)
        (scale,), (zero_point,) = quantized.quantization.scale, quantized.quantization.zero_point
        if io == "int8":  # the calibration data's range, to within half a step (the zero point is a whole number)
            assert scale * (-128 - zero_point) <= calibration.min() + scale / 2
            assert scale * (127 - zero_point) >= calibration.max() - scale / 2
            assert scale <= 1.5 * np.ptp(calibration) / 255  # the calibration data's range, not another
        else:  # int16, zero point 0, over twice the data's largest |x|
            assert quantized.dtype == "int16" and zero_point == 0
            assert scale * 32767 == pytest.approx(2 * np.abs(calibration).max(), rel=1e-6)
        assert tflrnn.verify(out, runtime="litert").passed


def test_a_config_files_calibration_path_is_relative_to_the_file(tmp_path, cli, monkeypatch):
    (tmp_path / "sub").mkdir()
    np.save(tmp_path / "sub" / "cal.npy", np.random.default_rng(3).standard_normal((4, 1, 4, 3)).astype(np.float32))
    (tmp_path / "sub" / "cell.toml").write_text('num_units = 5\ninput_size = 3\ntime_steps = 4\nlowering = '
                                                '"portable"\nquantize = "full-int8"\ncalibration = "cal.npy"\n')
    monkeypatch.chdir(tmp_path)  # not the config's folder
    result = cli("build", "--config", "sub/cell.toml", "-o", "m.tflite")
    assert result.code == 0, result.err
    assert (tmp_path / "m.tflite").exists()


def test_config_key_recurrence(tmp_path, cli):
    """A JSON config's `recurrence` decides the portable model's steps: a WHILE loop, or one op per step."""
    from tflrnn.model import BuiltinOperator
    from tflrnn.reader import read

    whiles = {}
    for recurrence in ("loop", "unrolled"):
        config = tmp_path / f"{recurrence}.json"
        config.write_text(json.dumps({"units": 4, "input_size": 2, "time_steps": 5, "lowering": "portable",
                                      "state": "io", "recurrence": recurrence}))
        out = tmp_path / f"{recurrence}.tflite"
        assert cli("build", "--config", config, "-o", out).code == 0
        model = read(out.read_bytes())
        whiles[recurrence] = sum(op.code == BuiltinOperator.WHILE for op in model.subgraphs[0].operators)
        assert tflrnn.verify(out).passed
    assert whiles == {"loop": 1, "unrolled": 0}
