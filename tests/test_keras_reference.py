"""The numpy reference, and the built model, against Keras SimpleRNN with the same weights.

These tests import tensorflow (the test extra installs it); nothing else in the suite does.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import tflrnn
from tflrnn import reference
from tflrnn.cell import parse_activation

pytestmark = pytest.mark.tensorflow
keras = pytest.importorskip("keras", reason="needs the tensorflow extra: pip install 'tflrnn[tensorflow]'")
pytest.importorskip("tensorflow", reason="needs the tensorflow extra: pip install 'tflrnn[tensorflow]'")


def _keras_rnn(units, input_size, steps, batch, activation, seed):
    layer = keras.layers.SimpleRNN(units, activation=activation, return_sequences=True)
    model = keras.Sequential([keras.Input(shape=(steps, input_size), batch_size=batch), layer])
    rng = np.random.default_rng(seed)
    kernel = rng.standard_normal((input_size, units)).astype(np.float32) * 0.4
    recurrent = rng.standard_normal((units, units)).astype(np.float32) * (0.9 / np.sqrt(units))
    bias = rng.standard_normal(units).astype(np.float32) * 0.1
    layer.set_weights([kernel, recurrent, bias])
    return model, layer


@pytest.mark.parametrize("activation", ["tanh", "relu", "linear", "relu6"])
def test_reference_matches_keras_simple_rnn(activation):
    model, layer = _keras_rnn(units=24, input_size=7, steps=11, batch=3, activation=activation, seed=1)
    x = np.random.default_rng(2).standard_normal((3, 11, 7)).astype(np.float32)
    expected = model.predict(x, verbose=0)

    weights = tflrnn.CellWeights.from_keras(*layer.get_weights())
    ours, final = reference.run(x, weights, parse_activation(activation))

    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(final, expected[:, -1], rtol=1e-5, atol=1e-5)
    time_major, _ = reference.run(np.swapaxes(x, 0, 1), weights, parse_activation(activation), time_major=True)
    np.testing.assert_allclose(np.swapaxes(time_major, 0, 1), ours, rtol=1e-12)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_built_model_in_litert_matches_keras(tmp_path, cli, activation):
    from ai_edge_litert.interpreter import Interpreter

    model, layer = _keras_rnn(units=16, input_size=5, steps=9, batch=2, activation=activation, seed=3)
    weights_path = tmp_path / "keras.npz"
    kernel, recurrent, bias = layer.get_weights()
    np.savez(weights_path, kernel=kernel, recurrent_kernel=recurrent, bias=bias)
    config = tmp_path / "layer.json"
    config.write_text(json.dumps(layer.get_config()))  # a real Keras get_config(), as written by Keras 3
    out = tmp_path / "m.tflite"
    built = cli("build", "--config", config, "--weights", weights_path, "--time-steps", 9, "--batch-size", 2,
                "-o", out)
    assert built.code == 0, built.err

    x = np.random.default_rng(4).standard_normal((2, 9, 5)).astype(np.float32)
    interpreter = Interpreter(model_path=str(out))
    interpreter.allocate_tensors()
    runner = interpreter.get_signature_runner("serving_default")
    np.testing.assert_allclose(runner(input=x)["output"], model.predict(x, verbose=0), rtol=1e-5, atol=1e-5)
