"""Regressions from reviewing stacks, bidirectional models and their imports: each once passed or crashed."""

from __future__ import annotations

import numpy as np
import pytest

import tflrnn
from support import assert_clean_error, random_weights
from tflrnn.builder import describe_model
from tflrnn.writer import write


def _failed(data, **kwargs) -> set[str]:
    return {c.name for c in tflrnn.verify(data, **kwargs).failures}


def test_swapped_directions_and_mixed_layers_fail_verify():
    model = describe_model(tflrnn.RNNCell(4), input_size=3, time_steps=2, bidirectional=True)
    op = model.subgraphs[0].operators[0]
    op.inputs[1:9] = op.inputs[5:9] + op.inputs[1:5]  # backward weights and state in the forward slots
    del model.metadata["tflrnn"]
    assert "op.directions" in _failed(write(model))

    stack = describe_model([tflrnn.RNNCell(4, name="a"), tflrnn.RNNCell(4, name="b")], input_size=4, time_steps=2)
    first, second = stack.subgraphs[0].operators
    first.inputs[1], second.inputs[1] = second.inputs[1], first.inputs[1]  # W of each layer in the other
    del stack.metadata["tflrnn"]
    assert {"tensors.names[0]", "tensors.names[1]"} <= _failed(write(stack))


def test_manifest_builds_multi_layer_weights(tmp_path, cli):
    w0, w1 = random_weights(5, 3, seed=1), random_weights(5, 5, seed=2)
    names = ("input_weights", "recurrent_weights", "bias")
    np.savez(tmp_path / "w.npz", **{f"rnn/cell_0/{n}": a for n, a in zip(names, w0)},
             **{f"rnn/cell_1/{n}": a for n, a in zip(names, w1)})
    (tmp_path / "m.toml").write_text('[[models]]\nname = "stack"\nunits = 5\nlayers = 2\nweights = "w.npz"\n')
    result = cli("build", "--manifest", tmp_path / "m.toml", "--out-dir", tmp_path / "out")
    assert result.code == 0, result.out


def test_option_combinations_that_would_be_ignored_are_refused(tmp_path, cli):
    config = tmp_path / "c.json"
    config.write_text('{"cells": [{"num_units": 4}, {"num_units": 3}]}')
    assert_clean_error(cli("build", "--config", config, "--activation", "relu"), "set --activation per cell")


def _state_dict_file(path, layers, units=4, input_size=3):
    """An nn.RNN state dict with the given layer indices, saved as .safetensors (no torch needed)."""
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    arrays = {}
    for k in layers:
        w, r, b = random_weights(units, input_size if k == 0 else units, seed=k)
        arrays.update({f"weight_ih_l{k}": w, f"weight_hh_l{k}": r, f"bias_ih_l{k}": b, f"bias_hh_l{k}": 0 * b})
    safetensors_numpy.save_file(arrays, str(path))
    return path


def test_state_dict_layers_must_be_contiguous(tmp_path, cli):
    _state_dict_file(tmp_path / "gap.safetensors", (0, 2))
    assert_clean_error(cli("build", "--weights", tmp_path / "gap.safetensors"), "layers [0, 2]")


def test_against_a_source_of_other_cells_is_refused(tmp_path, cli):
    _state_dict_file(tmp_path / "one.safetensors", (0,), units=6)
    model = tmp_path / "m.tflite"
    model.write_bytes(tflrnn.build(tflrnn.RNNCell(5), input_size=3))
    assert_clean_error(cli("verify", model, "--against", tmp_path / "one.safetensors"), "not the source of this model")


def test_hybrid_stack_against_is_refused_with_the_reason(tmp_path, cli):
    _state_dict_file(tmp_path / "two.safetensors", (0, 1))
    out = tmp_path / "q.tflite"
    assert cli("build", "--weights", tmp_path / "two.safetensors", "--quantize", "int8", "-o", out).code == 0
    assert_clean_error(cli("verify", out, "--against", tmp_path / "two.safetensors"), "hybrid (int8) stack")


@pytest.mark.skipif("not _has_torch()", reason="the comparison runs torch.nn.RNN")
def test_hybrid_against_allows_for_quantization(tmp_path, cli):
    _state_dict_file(tmp_path / "one.safetensors", (0,), units=6)
    out = tmp_path / "q.tflite"
    assert cli("build", "--weights", tmp_path / "one.safetensors", "--quantize", "int8", "--time-steps", 5,
               "-o", out).code == 0
    assert cli("verify", out, "--against", tmp_path / "one.safetensors").code == 0


def _has_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def test_keras_models_that_are_not_one_chain_are_refused(tmp_path, cli):
    keras = pytest.importorskip("keras", reason="needs the test extra")
    x = keras.Input((None, 3))
    a = keras.layers.SimpleRNN(5, return_sequences=True, name="a")(x)
    b = keras.layers.SimpleRNN(4, return_sequences=True, name="b")(x)  # parallel, not stacked
    keras.Model(x, keras.layers.Concatenate()([a, b])).save(tmp_path / "parallel.keras")
    assert_clean_error(cli("build", "--weights", tmp_path / "parallel.keras"), "is not one chain")

    layer = keras.layers.Bidirectional(
        keras.layers.SimpleRNN(4, return_sequences=True),
        backward_layer=keras.layers.SimpleRNN(4, activation="relu", return_sequences=True, go_backwards=True),
        name="bi")
    keras.Sequential([keras.Input((None, 3)), layer]).save(tmp_path / "bw.keras")
    assert_clean_error(cli("build", "--weights", tmp_path / "bw.keras"), "backward layer whose activation differ")
