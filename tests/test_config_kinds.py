"""Config files of GRU and LSTM cells: what Keras' GRU/LSTM get_config() (and keras.layers.serialize()) and tflrnn's
own GRUCell/LSTMCell.get_config() write builds the cell they describe; what a config asks that the cell cannot do is
refused in one line. Expectations come from Keras: its configs, its weights and its outputs (verify --against)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import tflrnn

keras = pytest.importorskip("keras", reason="needs the test extra: pip install 'tflrnn[test]'")


def _write(path, document):
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def _network(path) -> dict:
    return tflrnn.inspect(path).to_dict()["network"]


@pytest.mark.parametrize("serialized", [False, True], ids=["get_config", "serialize"])
@pytest.mark.parametrize("layer, kind, reset_after", [
    (lambda: keras.layers.GRU(6), "gru", True),
    (lambda: keras.layers.GRU(6, reset_after=False), "gru", False),
    (lambda: keras.layers.LSTM(6), "lstm", None),
], ids=["gru", "gru-reset-before", "lstm"])
def test_a_keras_config_builds_its_cell(tmp_path, cli, layer, kind, reset_after, serialized):
    made = layer()
    config = _write(tmp_path / "cell.json", keras.layers.serialize(made) if serialized else made.get_config())
    out = tmp_path / "m.tflite"

    built = cli("build", "--config", config, "--input-size", 3, "--time-steps", 4, "--json", "-o", out)

    assert built.code == 0, built.err
    summary = json.loads(built.out)
    assert (summary["cell"], summary["units"], summary.get("reset_after")) == (kind, 6, reset_after)
    layers = _network(out)["layers"]
    assert [(entry["cell"], entry.get("reset_after")) for entry in layers] == [(kind, reset_after)]
    assert cli("verify", out).code == 0


def test_a_reset_before_config_with_keras_weights_matches_keras(tmp_path, cli):
    """A Keras GRU(reset_after=False): its config and its weights (Keras names in an .npz) build a model that
    verify --against the Keras model itself passes; the config's reset_after=True (Keras' default) is refused."""
    model = keras.Sequential([keras.Input((5, 3)), keras.layers.GRU(4, reset_after=False, name="g")])
    rng = np.random.default_rng(3)
    model.layers[0].set_weights([rng.uniform(-0.5, 0.5, w.shape).astype(np.float32)
                                 for w in model.layers[0].get_weights()])
    saved = tmp_path / "g.keras"
    model.save(saved)
    kernel, recurrent_kernel, bias = model.layers[0].get_weights()
    weights = tmp_path / "w.npz"
    np.savez(weights, kernel=kernel, recurrent_kernel=recurrent_kernel, bias=bias)
    config = _write(tmp_path / "g.json", model.layers[0].get_config())
    out = tmp_path / "m.tflite"

    assert cli("build", "--config", config, "--weights", weights, "--time-steps", 5, "-o", out).code == 0
    checked = cli("verify", out, "--against", saved)
    assert checked.code == 0, checked.out

    after = _write(tmp_path / "after.json", keras.layers.GRU(4).get_config())
    refused = cli("build", "--config", after, "--weights", weights, "-o", tmp_path / "x.tflite")
    assert refused.code == 2 and "reset_after=True was asked, but the weights are a GRU's with reset_after=False" \
        in refused.err
    assert not (tmp_path / "x.tflite").exists()


@pytest.mark.parametrize("cell", [tflrnn.GRUCell(5, reset_after=False), tflrnn.GRUCell(5), tflrnn.LSTMCell(5)],
                         ids=["gru-reset-before", "gru", "lstm"])
def test_tflrnn_cells_configs_round_trip(tmp_path, cli, cell):
    config = _write(tmp_path / "cell.json", cell.get_config())
    out = tmp_path / "m.tflite"
    assert cli("build", "--config", config, "-o", out).code == 0
    assert out.read_bytes() == tflrnn.build(cell, input_size=5)


def test_reset_before_on_the_command_line(tmp_path, cli):
    out = tmp_path / "m.tflite"
    assert cli("build", "--cell", "gru", "--units", 4, "--reset-before", "-o", out).code == 0
    assert _network(out)["layers"][0]["reset_after"] is False
    assert out.read_bytes() == tflrnn.build(tflrnn.GRUCell(4, reset_after=False), input_size=4)


def test_a_stack_config_sets_each_cells_reset(tmp_path, cli):
    config = _write(tmp_path / "stack.json", {"cell": "gru", "cells": [
        {"num_units": 4, "reset_after": False}, {"num_units": 3}]})
    out = tmp_path / "m.tflite"
    assert cli("build", "--config", config, "-o", out).code == 0
    assert [layer["reset_after"] for layer in _network(out)["layers"]] == [False, True]


@pytest.mark.parametrize("document, options, message", [
    ({"units": 4, "recurrent_activation": "hard_sigmoid", "reset_after": True}, [],
     "a GRU's recurrent_activation 'hard_sigmoid' is not written"),
    ({"units": 4, "recurrent_activation": "hard_sigmoid", "unit_forget_bias": True}, [],
     "an LSTM's recurrent_activation 'hard_sigmoid' is not written"),
    ({"class_name": "GRU", "config": {"units": 4, "unit_forget_bias": True}}, [],
     "class_name GRU (gru) and key unit_forget_bias (lstm) name different cells"),
    ({"units": 4, "cell": "lstm", "reset_after": False}, [], "cell lstm (lstm)"),
    ({"class_name": "Dense", "config": {"units": 4}}, [], "a Dense's config: tflrnn builds SimpleRNN, GRU, LSTM"),
    ({"units": 4, "reset_after": True}, ["--cell", "rnn"],
     "reset_after is a setting of the GRU cell, not of the basic RNN cell asked for: say --cell gru"),
    ({"units": 4, "recurrent_activation": "sigmoid"}, [],
     "recurrent_activation is a setting of the GRU and LSTM cell, not of the basic RNN cell (the default): say "
     "--cell gru"),
    ({"units": 4}, ["--reset-before"], "reset_after is a setting of the GRU cell"),
], ids=["gru-hard-sigmoid", "lstm-hard-sigmoid", "class-and-key", "cell-and-key", "dense", "rnn-reset",
        "rnn-recurrent-activation", "flag-on-rnn"])
def test_what_a_cell_cannot_do_is_refused_in_one_line(tmp_path, cli, document, options, message):
    config = _write(tmp_path / "cell.json", document)
    out = tmp_path / "m.tflite"
    result = cli("build", "--config", config, *options, "-o", out)
    assert result.code == 2
    assert message in result.err and len(result.err.strip().splitlines()) == 1, result.err
    assert not out.exists()


def test_keras_activations_in_any_form_a_keras_config_writes(tmp_path, cli):
    """Keras may serialize an activation as a function object, and a name in any case: a tanh is a tanh."""
    config = _write(tmp_path / "lstm.json", {"units": 4, "unit_forget_bias": True, "recurrent_activation": "Sigmoid",
                                              "activation": {"class_name": "function", "config": "tanh"}})
    out = tmp_path / "m.tflite"
    assert cli("build", "--config", config, "-o", out).code == 0
    assert _network(out)["layers"][0]["cell"] == "lstm"


def test_a_stack_cells_keys_imply_its_kind(tmp_path, cli):
    config = _write(tmp_path / "stack.json", {"cells": [{"num_units": 4, "reset_after": False},
                                                        {"num_units": 3, "cell": "gru"}]})
    out = tmp_path / "m.tflite"
    assert cli("build", "--config", config, "-o", out).code == 0
    assert [(layer["cell"], layer["reset_after"]) for layer in _network(out)["layers"]] == [("gru", False),
                                                                                             ("gru", True)]
