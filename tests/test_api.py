"""The library API: RNNCell mirrors TfLiteRNNCell; build/verify/inspect take and return plain objects."""

from __future__ import annotations

import numpy as np
import pytest

import tflrnn


def test_rnn_cell_mirrors_tflite_rnn_cell():
    cell = tflrnn.RNNCell(32)
    assert cell.num_units == cell.output_size == cell.state_size == 32
    assert cell.activation == "tanh" and cell.name == "rnn" and cell.dtype == "float32"
    state = cell.zero_state(3, np.float32)
    assert state.shape == (3, 32) and state.dtype == np.float32 and not state.any()
    inputs = np.ones((5, 7, 4), dtype=np.float32)
    assert cell.get_initial_state(inputs=inputs).shape == (5, 32)
    assert cell.get_initial_state(batch_size=2, dtype=np.float64).dtype == np.float64


def test_get_config_round_trips():
    cell = tflrnn.RNNCell(16, activation="relu6", reuse=True, name="encoder/rnn", dtype="float32")
    config = cell.get_config()
    assert config == {"name": "encoder/rnn", "trainable": True, "dtype": "float32", "num_units": 16,
                      "activation": "relu6", "reuse": True}
    assert tflrnn.RNNCell.from_config(config) == cell


@pytest.mark.parametrize("name, canonical", [("none", "linear"), ("LINEAR", "linear"), ("RELU_N1_TO_1", "relu_n1_to_1"),
                                             (None, "tanh"), ({"class_name": "function", "config": "relu"}, "relu")])
def test_activation_spellings(name, canonical):
    assert tflrnn.RNNCell(4, activation=name).activation == canonical


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"num_units": 0}, "positive integer"),
        ({"num_units": 2.5}, "positive integer"),
        ({"num_units": True}, "positive integer"),
        ({"num_units": 4, "dtype": "float16"}, "dtype float16 is not supported"),
        ({"num_units": 4, "bogus": 1}, "unexpected argument(s): bogus"),
        ({"num_units": 4, "name": ""}, "not a valid cell name"),
    ],
)
def test_rnn_cell_rejects_bad_arguments(kwargs, fragment):
    with pytest.raises(tflrnn.ConfigError, match=None) as error:
        tflrnn.RNNCell(**kwargs)
    assert fragment in str(error.value)


def test_build_verify_inspect_with_trained_weights(tmp_path):
    rng = np.random.default_rng(7)
    weights = tflrnn.CellWeights(rng.standard_normal((8, 5)) * 0.3, rng.standard_normal((8, 8)) * 0.2,
                                 rng.standard_normal(8) * 0.1)
    data = tflrnn.build(tflrnn.RNNCell(8, activation="relu"), weights=weights, time_steps=6, batch_size=2)
    assert isinstance(data, bytes)

    report = tflrnn.verify(data, weights=weights, sequences=5, seed=3)
    assert isinstance(report, tflrnn.VerifyReport) and report.passed
    assert report.settings["sequences"] == 5
    assert {c.name for c in report.checks} >= {"weights.match", "numeric.state_carried"}

    info = tflrnn.inspect(data)
    assert isinstance(info, tflrnn.Inspection)
    stored = info.model.subgraphs[0].tensors
    np.testing.assert_array_equal(stored[1].data, weights.input_weights)
    np.testing.assert_array_equal(stored[2].data, weights.recurrent_weights)
    np.testing.assert_array_equal(stored[3].data, weights.bias)

    path = tmp_path / "m.tflite"
    summary = tflrnn.build_file(path, tflrnn.RNNCell(8, activation="relu"), weights=weights, time_steps=6,
                                batch_size=2)
    assert path.read_bytes() == data and summary["bytes"] == len(data)
    assert tflrnn.verify(path).passed and tflrnn.inspect(path).sha256 == summary["sha256"]


def test_weights_decide_the_sizes_when_no_cell_is_given():
    weights = tflrnn.initial_weights(12, 5, seed=1)
    info = tflrnn.inspect(tflrnn.build(weights=weights)).to_dict()
    assert info["subgraphs"][0]["tensors"][0]["shape"] == [1, 1, 5]


def test_initial_weights_are_drawn_as_keras_draws_them():
    weights = tflrnn.initial_weights(64, 32, seed=0)
    limit = np.sqrt(6 / (64 + 32))
    assert np.abs(weights.input_weights).max() <= limit
    assert np.abs(weights.input_weights).max() > 0.9 * limit  # uniform over the whole range, not a narrower one
    np.testing.assert_allclose(weights.recurrent_weights @ weights.recurrent_weights.T, np.eye(64), atol=1e-5)
    assert not weights.bias.any()
    assert tflrnn.initial_weights(64, 32, seed=0).equals(weights)
    assert not tflrnn.initial_weights(64, 32, seed=1).equals(weights)


def test_keras_layout_is_transposed():
    kernel = np.arange(12, dtype=np.float32).reshape(3, 4)  # [I, U]
    recurrent = np.arange(16, dtype=np.float32).reshape(4, 4)
    weights = tflrnn.CellWeights.from_keras(kernel, recurrent, np.zeros(4))
    np.testing.assert_array_equal(weights.input_weights, kernel.T)
    np.testing.assert_array_equal(weights.recurrent_weights, recurrent.T)
    np.testing.assert_array_equal(weights.to_keras()["kernel"], kernel)
    assert weights.num_units == 4 and weights.input_size == 3


def test_reference_takes_activation_names():
    from tflrnn import reference
    from tflrnn.model import Activation

    weights = tflrnn.initial_weights(6, 3, seed=2)
    x = np.random.default_rng(0).standard_normal((2, 4, 3))
    by_name, final = reference.run(x, weights, "relu6")
    by_enum, _ = reference.run(x, weights, Activation.RELU6)
    np.testing.assert_array_equal(by_name, by_enum)
    np.testing.assert_array_equal(final, by_name[:, -1])
    assert by_name.min() >= 0 and by_name.max() <= 6


def test_large_seeded_cells_stay_orthogonal_without_a_quadratic_memory_qr():
    weights = tflrnn.initial_weights(3000, 2, seed=5)  # above QR_UNITS: a random signed permutation
    r = weights.recurrent_weights
    assert r.dtype == np.float32 and np.count_nonzero(r) == 3000 and set(np.unique(np.abs(r))) == {0.0, 1.0}
    np.testing.assert_array_equal(r @ r.T, np.eye(3000, dtype=np.float32))
    assert tflrnn.initial_weights(3000, 2, seed=5).equals(weights)
