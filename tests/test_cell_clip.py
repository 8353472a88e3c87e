"""An LSTM's cell_clip (--cell-clip, TF1 LSTMCell's cell_clip): c clipped to [-clip, clip] after every update, in
the fused op (float, hybrid, full int8) and the portable lowering. Expectations come from an LSTM with the clip
written here in a few lines of numpy (apart from reference.py and the lowerings), and from the runtimes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter, OpResolverType

import tflrnn
from support import assert_clean_error
from tflrnn.builder import model_of, network_of
from tflrnn.cells.lstm import LSTMCell, LSTMWeights
from tflrnn.lowering import recover
from tflrnn.model import BuiltinOperator
from tflrnn.reader import read
from tflrnn.writer import write

UNITS, INPUTS, STEPS, CLIP = 5, 3, 12, 0.25


def _weights(seed: int = 0) -> LSTMWeights:
    """Weights that drive |c| well past CLIP within a few steps (an open forget gate, a strong candidate)."""
    rng = np.random.default_rng(seed)
    w, r, b = ((rng.standard_normal(shape) * 0.8).astype(np.float32)
               for shape in ((4 * UNITS, INPUTS), (4 * UNITS, UNITS), (4 * UNITS,)))
    b[UNITS:2 * UNITS] += 2.0
    return LSTMWeights(w, r, b)


def _clipped_lstm(x, weights: LSTMWeights, clip: float | None):
    """Keras' LSTM equations (gates i, f, g, o) with c clipped after each update, batch-major, from zeros."""
    sigmoid = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    w, r, b = (np.asarray(a, np.float64) for a in (weights.input_weights, weights.recurrent_weights, weights.bias))
    h = np.zeros((x.shape[0], UNITS))
    c = np.zeros_like(h)
    out = []
    for t in range(x.shape[1]):
        i, f, g, o = np.split(x[:, t] @ w.T + h @ r.T + b, 4, axis=-1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        if clip:
            c = np.minimum(np.maximum(c, -clip), clip)
        h = sigmoid(o) * np.tanh(c)
        out.append(h)
    return np.stack(out, axis=1)


def _run(data: bytes, x: np.ndarray) -> np.ndarray:
    interpreter = Interpreter(model_content=data, experimental_op_resolver_type=OpResolverType.AUTO)
    run = interpreter.get_signature_runner("serving_default")
    return run(input=x)["output"]


@pytest.mark.parametrize("options", [
    {"lowering": "fused"},
    {"lowering": "portable", "recurrence": "unrolled"},
    {"lowering": "portable", "recurrence": "loop"},
], ids=["fused", "unrolled", "loop"])
def test_the_clip_is_what_the_runtime_computes(options):
    weights = _weights()
    x = np.random.default_rng(1).standard_normal((1, STEPS, INPUTS)).astype(np.float32)
    clipped, free = _clipped_lstm(x, weights, CLIP), _clipped_lstm(x, weights, None)
    assert np.abs(clipped - free).max() > 0.05  # the clip binds: the test can tell the two apart

    data = tflrnn.build(LSTMCell(UNITS, cell_clip=CLIP), weights=weights, input_size=INPUTS, time_steps=STEPS,
                        **options)

    np.testing.assert_allclose(_run(data, x), clipped, atol=2e-6)
    unclipped = tflrnn.build(LSTMCell(UNITS), weights=weights, input_size=INPUTS, time_steps=STEPS, **options)
    np.testing.assert_allclose(_run(unclipped, x), free, atol=2e-6)


@pytest.mark.parametrize("options", [
    {"lowering": "fused"},
    {"lowering": "fused", "bidirectional": True},
    {"lowering": "portable", "recurrence": "unrolled", "bidirectional": True},
    {"lowering": "portable", "recurrence": "loop", "state": "io"},
    {"lowering": "portable", "recurrence": "loop", "time_steps": "dynamic"},
], ids=["fused", "fused-bidirectional", "unrolled-bidirectional", "loop-io", "loop-dynamic"])
def test_read_gives_back_the_clip(options):
    options = {"time_steps": STEPS, **options}
    network = network_of(LSTMCell(UNITS, cell_clip=CLIP), input_size=INPUTS, seed=2, **options)
    assert all(layer.cell_clip == np.float32(CLIP) for layer in network.layers)
    recovered = recover(read(write(model_of(network))))
    assert recovered == network
    assert [layer.cell_clip for layer in recovered.layers] == [layer.cell_clip for layer in network.layers]


def test_no_clip_writes_no_clipping_ops():
    plain = read(tflrnn.build(LSTMCell(UNITS), input_size=INPUTS, time_steps=STEPS, lowering="portable"))
    clipped = read(tflrnn.build(LSTMCell(UNITS, cell_clip=CLIP), input_size=INPUTS, time_steps=STEPS,
                                lowering="portable"))
    codes = lambda m: [op.code for op in m.subgraphs[0].operators]  # noqa: E731
    assert BuiltinOperator.MAXIMUM not in codes(plain) and BuiltinOperator.MINIMUM not in codes(plain)
    assert codes(clipped).count(BuiltinOperator.MAXIMUM) == codes(clipped).count(BuiltinOperator.MINIMUM) == STEPS


@pytest.mark.parametrize("args", [
    ["--lowering", "fused"],
    ["--lowering", "fused", "--quantize", "int8"],
    ["--lowering", "portable", "--recurrence", "loop"],
], ids=["fused", "hybrid", "portable-loop"])
def test_verify_passes_and_the_weights_rebuild_byte_for_byte(tmp_path, cli, args):
    weights = tmp_path / "w.npz"
    np.savez(weights, **_weights().roles())
    model, exported, rebuilt = tmp_path / "m.tflite", tmp_path / "out.npz", tmp_path / "r.tflite"
    built = cli("build", "--weights", weights, "--cell-clip", CLIP, "--time-steps", STEPS, *args, "--json",
                "-o", model)
    assert built.code == 0, built.err
    assert json.loads(built.out)["cell_clip"] == pytest.approx(CLIP)
    checked = cli("verify", model, "--runtime", "litert", "--runtime", "micro") if "int8" not in args else \
        cli("verify", model)
    assert checked.code == 0, checked.out
    assert cli("weights", model, "-o", exported).code == 0
    assert cli("build", "--weights", exported, "-o", rebuilt).code == 0
    assert rebuilt.read_bytes() == model.read_bytes()
    refused = cli("build", "--weights", exported, "--cell-clip", 1.5, "-o", tmp_path / "x.tflite")
    assert_clean_error(refused, "the weights record cell_clip 0.25", "but 1.5 was given")


def test_full_int8_clips_as_the_integer_kernel_does(tmp_path, cli):
    """The integer LSTM kernel clips c at int16(clip / s_c): verify's step check restates it, on LiteRT and Micro."""
    samples = tmp_path / "samples.npy"
    np.save(samples, np.random.default_rng(3).standard_normal((16, 1, STEPS, INPUTS)).astype(np.float32))
    weights = tmp_path / "w.npz"
    np.savez(weights, **_weights().roles())
    model = tmp_path / "q.tflite"
    assert cli("build", "--weights", weights, "--cell-clip", CLIP, "--time-steps", STEPS, "--quantize", "full-int8",
               "--calibration", samples, "-o", model).code == 0
    options = [op.options for op in read(model.read_bytes()).subgraphs[0].operators
               if op.code == BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_LSTM]
    assert [o.cell_clip for o in options] == [np.float32(CLIP)]
    checked = cli("verify", model, "--runtime", "litert", "--runtime", "micro")
    assert checked.code == 0, checked.out
    # the same model without its clip computes something else: the clip binds in the integer kernel too
    description = read(model.read_bytes())
    next(op for op in description.subgraphs[0].operators
         if op.code == BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_LSTM).options.cell_clip = 0.0
    unclipped = tmp_path / "unclipped.tflite"
    unclipped.write_bytes(write(description))
    x = np.random.default_rng(4).standard_normal((1, STEPS, INPUTS)).astype(np.float32)
    assert not np.array_equal(_run(model.read_bytes(), x), _run(unclipped.read_bytes(), x))


def test_a_config_and_a_manifest_take_the_clip(tmp_path, cli):
    config = tmp_path / "cell.json"
    config.write_text(json.dumps({"cell": "lstm", "num_units": 4, "cell_clip": 0.5}))
    assert cli("build", "--config", config, "-o", tmp_path / "c.tflite").code == 0
    assert tflrnn.inspect(tmp_path / "c.tflite").to_dict()["network"]["layers"][0]["cell_clip"] == 0.5
    manifest = tmp_path / "models.toml"
    manifest.write_text('[[models]]\nname = "clipped"\ncell = "lstm"\nunits = 4\ncell_clip = 2.0\n')
    assert cli("build", "--manifest", manifest, "--out-dir", tmp_path / "out").code == 0
    layers = tflrnn.inspect(tmp_path / "out" / "clipped.tflite").to_dict()["network"]["layers"]
    assert layers[0]["cell_clip"] == 2.0


@pytest.mark.parametrize("args, message", [
    (["--cell", "gru", "--cell-clip", "1"], "cell_clip is a setting of the LSTM cell, not of the GRU cell"),
    (["--cell-clip", "1"], "cell_clip is a setting of the LSTM cell, not of the basic RNN cell (the default)"),
    (["--cell", "lstm", "--cell-clip", "-1"], "cell_clip must be 0 (no clipping) or a finite number"),
    (["--cell", "lstm", "--cell-clip", "inf"], "cell_clip must be 0 (no clipping) or a finite number"),
    (["--cell", "lstm", "--cell-clip", "1e39"], "(a normal float32), got 1e+39"),
    (["--cell", "lstm", "--cell-clip", "1e-45"], "(a normal float32), got 1e-45"),
])
def test_a_clip_that_cannot_be_written_is_refused(tmp_path, cli, args, message):
    out = tmp_path / "m.tflite"
    assert_clean_error(cli("build", "--units", 4, *args, "-o", out), message)
    assert not out.exists()


@pytest.mark.parametrize("lowering", ["fused", "portable"])
def test_a_clip_the_record_does_not_hold_fails_verify(lowering):
    """The metadata record holds each layer's cell_clip: a model whose clip was changed after tflrnn wrote it (here:
    the record's clip removed) computes another LSTM than the one recorded."""
    description = read(tflrnn.build(LSTMCell(UNITS, cell_clip=CLIP), input_size=INPUTS, time_steps=STEPS,
                                    lowering=lowering))
    recorded = json.loads(description.metadata["tflrnn"])
    assert recorded["c"][0][3] == pytest.approx(CLIP)
    recorded["c"][0] = recorded["c"][0][:2]
    description.metadata["tflrnn"] = json.dumps(recorded, separators=(",", ":")).encode()
    report = tflrnn.verify(write(description), runtime="litert")
    assert not report.passed
    assert "metadata.tflrnn" in {c.name for c in report.checks if not c.passed}


def test_the_reader_refuses_bounds_that_are_not_a_clip():
    """A portable LSTM whose two bounds are not -clip and clip computes no cell_clip: the reader says so."""
    description = read(tflrnn.build(LSTMCell(UNITS, cell_clip=CLIP), input_size=INPUTS, time_steps=STEPS,
                                    lowering="portable"))
    low = next(t for t in description.subgraphs[0].tensors if t.name.endswith("/cell_clip_low"))
    low.data = np.asarray([-2 * CLIP], np.float32)
    with pytest.raises(tflrnn.TflrnnError, match="cell_clip bounds are not -clip and clip"):
        recover(read(write(description)))


@pytest.mark.parametrize("lowering", ["fused", "portable"])
def test_verify_against_keras_says_the_source_never_clips(tmp_path, cli, lowering):
    """Against Keras (which never clips), a clip that binds fails and one that never binds passes; both say why the
    two may differ."""
    keras = pytest.importorskip("keras", reason="needs the test extra: pip install 'tflrnn[test]'")
    model = keras.Sequential([keras.Input((STEPS, INPUTS)), keras.layers.LSTM(UNITS, return_sequences=True)])
    weights = _weights()
    model.layers[0].set_weights(list(weights.to_keras().values()))
    saved = tmp_path / "lstm.keras"
    model.save(saved)
    for clip, passes in ((CLIP, False), (1000.0, True)):
        out = tmp_path / f"clip{clip}.tflite"
        assert cli("build", "--weights", saved, "--cell-clip", clip, "--lowering", lowering, "-o", out).code == 0
        checked = cli("verify", out, "--runtime", "litert", "--against", saved, "--json")
        report = json.loads(checked.out)
        assert (checked.code == 0) is passes, checked.out
        assert any("never does, so the two agree only where the clip never binds" in n for n in report["notes"])


def test_full_int8_refuses_a_clip_below_the_cell_states_step(tmp_path, cli):
    """The integer kernel stores the clip as int16(clip / s_c), and a stored 0 means no clipping: a clip below c's
    step (2^-15 at the finest) would silently clip nothing, so it is refused."""
    samples = tmp_path / "samples.npy"
    np.save(samples, np.random.default_rng(3).standard_normal((8, 1, STEPS, INPUTS)).astype(np.float32))
    out = tmp_path / "q.tflite"
    result = cli("build", "--cell", "lstm", "--units", UNITS, "--input-size", INPUTS, "--time-steps", STEPS,
                 "--cell-clip", 1e-6, "--quantize", "full-int8", "--calibration", samples, "-o", out)
    assert_clean_error(result, "cell_clip 1e-06 is below its int16 cell state's step", "which means no clipping")
    assert not out.exists()


def test_hostile_clips_in_a_config_or_a_record_are_one_line_errors(tmp_path, cli):
    config = tmp_path / "big.json"
    config.write_text('{"cell": "lstm", "num_units": 4, "cell_clip": 1' + "0" * 400 + "}")
    assert_clean_error(cli("build", "--config", config, "-o", tmp_path / "x.tflite"), "cell_clip must be 0")
    gru = tmp_path / "g.tflite"
    assert cli("build", "--cell", "gru", "--units", 4, "-o", gru).code == 0
    assert cli("weights", gru, "-o", tmp_path / "g.npz").code == 0
    assert_clean_error(cli("build", "--weights", tmp_path / "g.npz", "--cell-clip", 0.3, "-o", tmp_path / "x.tflite"),
                       "cell_clip is a setting of the LSTM cell, and the weights are a GRU's")
    assert_clean_error(cli("build", "--weights", tmp_path / "g.npz", "--cell", "lstm", "-o", tmp_path / "x.tflite"),
                       "an LSTM cell was asked for (--cell, or what the config says), but the weights are a GRU's")


def test_a_zero_clip_is_no_clip_for_every_kind(tmp_path, cli):
    config = tmp_path / "rnn.json"
    config.write_text('{"num_units": 4, "cell_clip": 0}')
    assert cli("build", "--config", config, "-o", tmp_path / "r.tflite").code == 0
    assert cli("build", "--cell", "gru", "--units", 4, "--cell-clip", 0, "-o", tmp_path / "g.tflite").code == 0
    lstm = tmp_path / "l.tflite"
    assert cli("build", "--cell", "lstm", "--units", 4, "--cell-clip", 0, "-o", lstm).code == 0
    assert lstm.read_bytes() == tflrnn.build(LSTMCell(4), input_size=4)
