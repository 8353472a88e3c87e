"""`tflrnn weights` then `tflrnn build --weights`: the .npz records how the layers connect, so the whole network
builds again from it alone, byte for byte, in either lowering; an .npz without that record reads as before."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

import tflrnn
from support import assert_clean_error
from tflrnn.network import Dense
from tflrnn.sources.npz import NETWORK_KEY


def _dense(name, units, inputs, activation, seed):
    rng = np.random.default_rng(seed)
    return Dense(name, (rng.standard_normal((units, inputs)) * 0.5).astype(np.float32),
                 (rng.standard_normal(units) * 0.1).astype(np.float32), activation)


def _cells(*specs):
    """A stack's cells, named as --layers names them: rnn/cell_0, rnn/cell_1, ..."""
    return [tflrnn.RNNCell(units, activation=activation, name=f"rnn/cell_{k}")
            for k, (units, activation) in enumerate(specs)]


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# What the original model is built with (tflrnn.build_file's arguments): none of it is given to the rebuild.
MODELS = {
    "2-layer stack": dict(cell=_cells((6, "relu"), (4, "tanh")), input_size=3,
                          time_steps=5),
    "named stack, time-major, batch 2, last step": dict(
        cell=[tflrnn.RNNCell(5, activation="relu6", name="enc/l0"), tflrnn.RNNCell(3, name="enc/l1")],
        input_size=2, time_steps=4, batch_size=2, time_major=True, last_step=True),
    "bidirectional": dict(cell=tflrnn.RNNCell(5, name="bi"), input_size=3, time_steps=4, bidirectional=True),
    "bidirectional, separate outputs": dict(cell=tflrnn.RNNCell(4), input_size=3, time_steps=3, bidirectional=True,
                                            merge="none"),
    "mixed stack": dict(cell=_cells((5, "tanh"), (4, "relu")), input_size=3, time_steps=4,
                        bidirectional=[False, True]),
    "classifier": dict(cell=_cells((6, "tanh"), (5, "tanh")), input_size=3, time_steps=4,
                       bidirectional=[False, True], last_step=True,
                       head=[_dense("hidden", 7, 10, "relu", 1), _dense("classes", 3, 7, "softmax", 2)]),
    "tagger (Dense on every step)": dict(cell=tflrnn.RNNCell(4), input_size=3, time_steps=4,
                                         head=[_dense("mix", 2, 4, "sigmoid", 3)]),
    "one cell, relu, named": dict(cell=tflrnn.RNNCell(4, activation="relu", name="speech"), input_size=3,
                                  time_steps=6),
    "dynamic time": dict(cell=_cells((4, "tanh"), (3, "tanh")), input_size=2, time_steps="dynamic"),
}
FUSED_ONLY = {
    "hybrid int8 stack": dict(cell=_cells((6, "tanh"), (4, "tanh")), input_size=3, time_steps=4,
                              quantize="int8", asymmetric_inputs=True),
}
PORTABLE_ONLY = {
    "state io, steps in a loop": dict(cell=_cells((5, "tanh"), (4, "tanh")), input_size=3, time_steps=4,
                                      state="io", recurrence="loop"),
    "state zero, bidirectional": dict(cell=tflrnn.RNNCell(4), input_size=3, time_steps=4, state="zero",
                                      bidirectional=True),
}
CASES = ([(name, "fused") for name in [*MODELS, *FUSED_ONLY]]
         + [(name, "portable") for name in [*MODELS, *PORTABLE_ONLY]])


@pytest.mark.parametrize("names", ["tflite", "keras"])
@pytest.mark.parametrize("model, lowering", CASES)
def test_the_weights_out_build_the_same_model_again(tmp_path, cli, model, lowering, names):
    options = {**MODELS, **FUSED_ONLY, **PORTABLE_ONLY}[model]
    original, exported, rebuilt = tmp_path / "m.tflite", tmp_path / "m.npz", tmp_path / "again.tflite"
    tflrnn.build_file(original, lowering=lowering, **options)
    written = cli("weights", original, "-o", exported, "--format", names, "--json")
    assert written.code == 0, written.err
    assert NETWORK_KEY not in json.loads(written.out)["arrays"]  # the arrays listed are the weights
    built = cli("build", "--weights", exported, "-o", rebuilt)  # nothing else: the .npz says it all
    assert built.code == 0, built.err
    assert _sha256(rebuilt) == _sha256(original)
    assert "(from the .npz)" in built.out  # the sizes say where they came from


def test_full_int8_builds_again_from_its_calibration(tmp_path, cli):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "cal.npy", rng.standard_normal((8, 1, 4, 3)).astype(np.float32))
    original, exported, rebuilt = tmp_path / "m.tflite", tmp_path / "m.npz", tmp_path / "again.tflite"
    assert cli("build", "--units", 5, "--input-size", 3, "--time-steps", 4, "--layers", 2, "--lowering", "portable",
               "--quantize", "full-int8", "--io", "int8", "--calibration", tmp_path / "cal.npy", "-o",
               original).code == 0
    assert cli("weights", original, "-o", exported).code == 0
    # The ranges come from the data, which the .npz does not hold: the rebuild asks for it
    assert_clean_error(cli("build", "--weights", exported, "-o", rebuilt), "records a full-int8 model",
                       "--calibration DATA")
    assert not rebuilt.exists()
    assert cli("build", "--weights", exported, "--calibration", tmp_path / "cal.npy", "-o", rebuilt).code == 0
    assert _sha256(rebuilt) == _sha256(original)


def test_options_override_the_record_and_name_a_layer(tmp_path, cli):
    original, exported = tmp_path / "m.tflite", tmp_path / "m.npz"
    tflrnn.build_file(original, _cells((4, "tanh"), (3, "tanh")), input_size=2, time_steps=5)
    assert cli("weights", original, "-o", exported).code == 0
    longer = cli("build", "--weights", exported, "--time-steps", 9, "--lowering", "portable", "--json", "-o",
                 tmp_path / "longer.tflite")
    summary = json.loads(longer.out)
    assert summary["input_shape"] == [1, 9, 2] and summary["lowering"] == "portable"
    assert summary["sizes_from"]["time_steps"] == "the command line" and summary["sizes_from"]["batch_size"] == \
        "the .npz"
    assert [layer["name"] for layer in summary["layers"]] == ["rnn/cell_0", "rnn/cell_1"]
    renamed = json.loads(cli("build", "--weights", exported, "--name", "enc", "--json", "-o",
                             tmp_path / "renamed.tflite").out)
    assert [layer["name"] for layer in renamed["layers"]] == ["enc/cell_0", "enc/cell_1"]
    # --scope still picks one cell of the .npz
    one = json.loads(cli("build", "--weights", exported, "--scope", "rnn/cell_1", "--json", "-o",
                         tmp_path / "one.tflite").out)
    assert one["input_shape"] == [1, 1, 4] and one["units"] == 3
    # A recorded activation is the source's: one that disagrees is an error, as for a Keras file
    relu = tmp_path / "relu.tflite"
    tflrnn.build_file(relu, tflrnn.RNNCell(4, activation="relu"), input_size=2)
    assert cli("weights", relu, "-o", tmp_path / "relu.npz").code == 0
    assert_clean_error(cli("build", "--weights", tmp_path / "relu.npz", "--activation", "tanh", "-o",
                           tmp_path / "x.tflite"), "records activation relu")


def test_an_npz_without_the_record_reads_as_before(tmp_path, cli):
    original, exported, plain = tmp_path / "m.tflite", tmp_path / "m.npz", tmp_path / "plain.npz"
    tflrnn.build_file(original, _cells((4, "tanh"), (3, "tanh")), input_size=2, time_steps=5)
    assert cli("weights", original, "-o", exported).code == 0
    with np.load(exported) as saved:  # as an older tflrnn wrote it, or a hand-made one
        np.savez(plain, **{key: saved[key] for key in saved.files if key != NETWORK_KEY})
    assert_clean_error(cli("build", "--weights", plain, "-o", tmp_path / "x.tflite"), "pick one with --scope")
    again = tmp_path / "again.tflite"
    assert cli("build", "--weights", plain, "--units", 4, "--layers", 2, "--time-steps", 5, "-o", again).code == 2
    cells = tmp_path / "cells.json"  # the stack named as the layers are: the same model
    cells.write_text(json.dumps({"cells": [{"num_units": 4, "name": "rnn/cell_0"}, {"num_units": 3, "name":
                                 "rnn/cell_1"}], "time_steps": 5}))
    assert cli("build", "--weights", plain, "--config", cells, "-o", again).code == 0
    assert again.read_bytes() == original.read_bytes()


@pytest.mark.parametrize("record, fragment", [
    (b"not json", "is not the network record"),
    (b'{"tflrnn_network": 1, "layers": []}', "is not the network record"),
    (json.dumps({"tflrnn_network": 1, "names": "tflite", "layers": [{"name": "other", "activation": "tanh",
                                                                     "bidirectional": False}] * 2, "dense": [],
                 "time_steps": 1, "batch_size": 1, "time_major": False, "last_step": False,
                 "lowering": "fused"}).encode(), "names layer 'other', whose weights are not there"),
    (json.dumps({"tflrnn_network": 1, "names": "tflite", "layers": [{"name": "rnn/cell_0", "activation": "tanh",
                                                                     "bidirectional": False}], "dense": [],
                 "time_steps": 1, "batch_size": 1, "time_major": False, "last_step": False,
                 "lowering": "fused"}).encode(), "names layer 'rnn/cell_0', whose weights are not there"),
    (json.dumps({"tflrnn_network": 1, "names": "tflite", "layers": [
        {"name": f"rnn/cell_{k}", "activation": "tanh", "bidirectional": False} for k in range(2)], "dense": [],
                 "time_steps": 1, "batch_size": 1, "time_major": False, "last_step": False,
                 "lowering": "sideways"}).encode(), "unknown lowering 'sideways'"),
])
def test_a_broken_record_is_a_clean_error(tmp_path, cli, record, fragment):
    original, exported, broken = tmp_path / "m.tflite", tmp_path / "m.npz", tmp_path / "broken.npz"
    tflrnn.build_file(original, _cells((4, "tanh"), (3, "tanh")), input_size=2)
    assert cli("weights", original, "-o", exported).code == 0
    with np.load(exported) as saved:
        arrays = {key: saved[key] for key in saved.files if key != NETWORK_KEY}
    np.savez(broken, **arrays, **{NETWORK_KEY: np.frombuffer(record, np.uint8)})
    out = tmp_path / "x.tflite"
    assert_clean_error(cli("build", "--weights", broken, "-o", out), fragment)
    assert not out.exists()
