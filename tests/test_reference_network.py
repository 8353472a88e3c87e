"""`reference.run_network` against Keras: the float64 oracle most portable and int8 checks judge a model by, judged
here by Keras itself. Keras 3 models (SimpleRNN stacks, Bidirectional(SimpleRNN), the last step, Dense heads) with
random weights are saved to .keras files; tflrnn reads each file as `build --weights` does (its own source reader,
no TensorFlow), and the network's reference output must be `model.predict`'s on the same inputs."""

from __future__ import annotations

import numpy as np
import pytest

from tflrnn import reference
from tflrnn.builder import network_of
from tflrnn.config import BuildOptions, resolve_build_options

pytestmark = pytest.mark.tensorflow
keras = pytest.importorskip("keras", reason="needs the tensorflow extra: pip install 'tflrnn[tensorflow]'")
pytest.importorskip("tensorflow", reason="needs the tensorflow extra: pip install 'tflrnn[tensorflow]'")

STEPS, FEATURES, BATCH = 7, 3, 2
TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}  # Keras computes in float32, the reference in float64


def _layers(L):
    """Keras layers after the Input, by case (L: keras.layers)."""
    return {
        "stack tanh, relu; dense linear": [L.SimpleRNN(6, return_sequences=True),
                                           L.SimpleRNN(5, activation="relu", return_sequences=True),
                                           L.Dense(4)],
        "stack relu, tanh, last step; dense relu, softmax": [
            L.SimpleRNN(6, activation="relu", return_sequences=True), L.SimpleRNN(5, return_sequences=False),
            L.Dense(8, activation="relu"), L.Dense(3, activation="softmax")],
        "bidirectional sequences; dense relu": [L.Bidirectional(L.SimpleRNN(4, return_sequences=True)),
                                                L.Dense(3, activation="relu")],
        "bidirectional last step": [L.Bidirectional(L.SimpleRNN(4, activation="relu", return_sequences=False))],
        "bidirectional, relu last step; dense softmax": [
            L.Bidirectional(L.SimpleRNN(4, return_sequences=True), merge_mode="concat"),
            L.SimpleRNN(5, activation="relu", return_sequences=False), L.Dense(3, activation="softmax")],
        "bidirectional stack, last step; dense linear": [
            L.Bidirectional(L.SimpleRNN(4, activation="relu", return_sequences=True)),
            L.Bidirectional(L.SimpleRNN(3, return_sequences=False)), L.Dense(2)],
    }


CASES = list(_layers(keras.layers))


def _keras_model(path, case: str, steps=STEPS, seed=0):
    """The case's model with every weight (kernels, recurrent kernels, biases) drawn at random, saved to `path`."""
    model = keras.Sequential([keras.Input((steps, FEATURES), batch_size=BATCH), *_layers(keras.layers)[case]])
    rng = np.random.default_rng(seed)
    model.set_weights([(rng.standard_normal(w.shape) * (0.5 if w.ndim == 2 else 0.2)).astype(np.float32)
                       for w in model.get_weights()])
    model.save(path)
    return model


def _network(path, **options):
    """The network `tflrnn build --weights path` writes, read through tflrnn's own source reader."""
    return network_of(**resolve_build_options(BuildOptions(weights=path, **options)).options)


def _x(steps=STEPS, seed=1):
    return np.random.default_rng(seed).standard_normal((BATCH, steps, FEATURES)).astype(np.float32)


@pytest.mark.parametrize("case", CASES)
def test_run_network_is_model_predict(tmp_path, case):
    model = _keras_model(tmp_path / "m.keras", case)
    network = _network(tmp_path / "m.keras")
    assert len(network.head) == sum(isinstance(layer, keras.layers.Dense) for layer in model.layers)
    x = _x()
    expected = model.predict(x, verbose=0)
    outputs, finals = reference.run_network(network, x)
    assert len(outputs) == 1 and outputs[0].shape == expected.shape
    np.testing.assert_allclose(outputs[0], expected, **TOLERANCE)
    assert len(finals) == len(network.layers)


@pytest.mark.parametrize("case", CASES)
def test_time_major_is_the_transposed_input(tmp_path, case):
    """The same file built time-major: [T, B, I] in, and the sequence outputs [T, B, U] out."""
    model = _keras_model(tmp_path / "m.keras", case, seed=2)
    network = _network(tmp_path / "m.keras", time_major=True)
    assert network.time_major
    x = _x(seed=3)
    expected = model.predict(x, verbose=0)
    outputs, _ = reference.run_network(network, np.swapaxes(x, 0, 1))
    got = outputs[0] if network.last_step else np.swapaxes(outputs[0], 0, 1)
    np.testing.assert_allclose(got, expected, **TOLERANCE)


def test_the_states_carried_across_chunks_are_keras_on_the_whole_sequence(tmp_path):
    """A one-way stack run chunk by chunk, each from the previous chunk's final states, is Keras on the joined
    sequence: the `states` run_network returns and takes are the ones the recurrence carries."""
    case = "stack tanh, relu; dense linear"
    model = _keras_model(tmp_path / "m.keras", case, steps=3 * STEPS, seed=4)
    network = _network(tmp_path / "m.keras", time_steps=STEPS)
    x = _x(3 * STEPS, seed=5)
    expected = model.predict(x, verbose=0)
    states, chunks = None, []
    for k in range(3):
        outputs, states = reference.run_network(network, x[:, k * STEPS:(k + 1) * STEPS], states)
        chunks.append(outputs[0])
    np.testing.assert_allclose(np.concatenate(chunks, axis=1), expected, **TOLERANCE)


def test_a_dynamic_time_axis_runs_any_length(tmp_path):
    """keras.Input((None, I)): the network is dynamic, and the reference is Keras at every length."""
    case = "bidirectional, relu last step; dense softmax"
    model = keras.Sequential([keras.Input((None, FEATURES), batch_size=BATCH), *_layers(keras.layers)[case]])
    rng = np.random.default_rng(6)
    model.set_weights([(rng.standard_normal(w.shape) * 0.4).astype(np.float32) for w in model.get_weights()])
    model.save(tmp_path / "m.keras")
    network = _network(tmp_path / "m.keras")
    assert network.dynamic_time
    for steps in (1, 4, 11):
        x = _x(steps, seed=steps)
        outputs, _ = reference.run_network(network, x)
        np.testing.assert_allclose(outputs[0], model.predict(x, verbose=0), **TOLERANCE)
