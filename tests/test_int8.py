"""Full-integer int8 (`--quantize full-int8`): the network read back from the file it was written to, run by the
real LiteRT and TFLite Micro interpreters step by step within its quantization steps, the refusals, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

import tflrnn
from tflrnn import quantization as quant
from tflrnn.builder import model_of, network_of
from tflrnn.errors import ConfigError
from tflrnn.lowering import recover
from tflrnn.model import BuiltinOperator, Quantization
from tflrnn.network import Dense
from tflrnn.reader import read
from tflrnn.verification import verify
from tflrnn.writer import write


def _calibration(input_size=3, steps=6, batch=1, n=16, seed=1, time_major=False):
    data = np.random.default_rng(seed).standard_normal((n, batch, steps, input_size)).astype(np.float32)
    return np.swapaxes(data, 1, 2).copy() if time_major else data


def _dense(units, inputs, activation, seed=0):
    rng = np.random.default_rng(seed)
    return Dense(f"d{seed}", (rng.standard_normal((units, inputs)) * 0.5).astype(np.float32),
                 (rng.standard_normal(units) * 0.1).astype(np.float32), activation)


def _int8(cell, *, input_size=3, time_steps=6, batch_size=1, time_major=False, **options):
    return network_of(cell, input_size=input_size, time_steps=time_steps, batch_size=batch_size,
                      time_major=time_major, lowering="portable", quantize="full-int8",
                      calibration=_calibration(input_size, time_steps, batch_size, time_major=time_major), **options)


NETWORKS = {
    "cell": lambda **o: _int8(tflrnn.RNNCell(8), **o),
    "relu6 and linear stack": lambda **o: _int8([tflrnn.RNNCell(6, name="a", activation="relu6"),
                                                 tflrnn.RNNCell(4, name="b", activation="linear")], **o),
    "bidirectional, batch 2, time-major": lambda **o: _int8(tflrnn.RNNCell(5, activation="relu"), batch_size=2,
                                                            time_major=True, bidirectional=True, **o),
    "classifier": lambda **o: _int8([tflrnn.RNNCell(6, name="r")], bidirectional=[True], last_step=True,
                                    head=[_dense(5, 12, "relu", 1), _dense(3, 5, "softmax", 2)], **o),
    "dense on every step": lambda **o: _int8(tflrnn.RNNCell(4), head=[_dense(3, 4, "tanh", 3)], **o),
}
STATES = ["carry", "io", "zero"]


@pytest.mark.parametrize("name", NETWORKS)
@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("io", ["float", "int8"])
def test_read_back_is_the_network(name, state, io):
    network = NETWORKS[name](state=state, io=io)
    model = model_of(network)
    back = recover(read(write(model)))
    assert back == network and back.int8 == network.int8
    assert all(t.dtype != "float32" for t in model.subgraphs[0].tensors if t.data is not None)  # no float weights


@pytest.mark.parametrize("name", NETWORKS)
@pytest.mark.parametrize("state", STATES)
def test_every_step_within_its_quantization_steps_on_litert_and_micro(name, state):
    """Each step recomputed from the interpreter's own int8 values: LiteRT and TFLite Micro (kPreserveAllTensors),
    the state carried by the model, fed back by the caller, or not kept."""
    data = write(model_of(NETWORKS[name](state=state)))
    for runtime in ("litert", "micro"):
        report = verify(data, runtime=runtime)
        assert report.passed, [(c.name, c.detail) for c in report.failures]
        steps = [c for c in report.checks if c.name == "int8.steps"]
        assert len(steps) == 1 and steps[0].runtime == runtime


def test_an_int8_interface_verifies_and_says_its_scales(cli, tmp_path):
    np.save(tmp_path / "cal.npy", _calibration(4, 5))
    out = tmp_path / "m.tflite"
    result = cli("build", "--units", "6", "--input-size", "4", "--time-steps", "5", "--lowering", "portable",
                 "--quantize", "full-int8", "--calibration", tmp_path / "cal.npy", "--io", "int8", "--state", "io",
                 "--json", "-o", out)
    assert result.code == 0, result.err
    summary = json.loads(result.out)
    assert summary["quantize"] == "full-int8" and summary["int8"]["io"] == "int8"
    assert summary["int8"]["layers"]["rnn"]["state"] == {"scale": 1 / 128, "zero_point": 0}  # TANH's int8 output
    assert isinstance(summary["int8"]["micro_arena_bytes"], int) and summary["int8"]["micro_arena_bytes"] > 0
    text = cli("inspect", out)
    assert "input: int8, scale" in text.out and "state: int8, scale 0.0078125 zero_point 0" in text.out
    assert "TFLite Micro arena:" in text.out
    info = json.loads(cli("inspect", out, "--json").out)
    assert info["micro_arena_bytes"] == summary["int8"]["micro_arena_bytes"]
    assert cli("verify", out, "--runtime", "micro").code == 0


def test_without_tflite_micro_the_arena_says_why_it_is_missing(cli, tmp_path):
    from support import run_without

    np.save(tmp_path / "cal.npy", _calibration(3, 4))
    args = ["build", "--units", "4", "--input-size", "3", "--time-steps", "4", "--lowering", "portable", "--quantize",
            "full-int8", "--calibration", tmp_path / "cal.npy", "-o", tmp_path / "m.tflite"]
    built = run_without("tflite_micro", args)
    assert built.returncode == 0, built.stderr
    assert ("full int8 (float interface, int16 input, TFLite Micro arena not measured: pip install 'tflrnn[micro]')"
            in built.stdout)
    shown = run_without("tflite_micro", ["inspect", tmp_path / "m.tflite"])
    assert "TFLite Micro arena not measured: pip install 'tflrnn[micro]'" in shown.stdout
    float_model = tmp_path / "float.tflite"  # a float model has no arena to measure: nothing said
    assert cli("build", "--units", "4", "--lowering", "portable", "-o", float_model).code == 0
    assert "TFLite Micro arena" not in run_without("tflite_micro", ["inspect", float_model]).stdout


def test_the_arena_is_the_smallest_micro_runs_in():
    """The measured arena runs the model; 16 bytes less does not."""
    from tflite_micro.python.tflite_micro import runtime as tflm

    from tflrnn.arena import minimum_arena
    from tflrnn.runners import micro_arena_bytes

    model = model_of(NETWORKS["cell"]())
    data = write(model)
    arena = minimum_arena(data, micro_arena_bytes(model))
    interpreter = tflm.Interpreter.from_bytes(data, arena_size=arena)
    interpreter.invoke()
    with pytest.raises(RuntimeError):
        tflm.Interpreter.from_bytes(data, arena_size=arena - 16).invoke()


def test_error_against_the_float_recurrence():
    """On the issue's network (U=32, I=16, T=20, 64 calibration sequences), the model's error against the float
    recurrence of the float weights with the state carried over 8 invokes on LiteRT stays at what was measured. With
    the input QUANTIZEd to int16 (the default): max 0.057, mean 0.0083. With --input-precision int8: mean 0.0101
    (0.0106 before issue 18's calibration), max 0.157 at the one step whose input (-4.49) lies beyond the calibration
    data's range (down to -4.02), where an int8 input saturates as the converter's does (both take the data's
    range); the int16 input spans twice the range. A regression bound; the comparison with the converter on the
    same weights and data is scripts/bench_int8.py's battery (BENCHMARKS.md)."""
    from ai_edge_litert.interpreter import Interpreter

    from tflrnn import reference

    rng = np.random.default_rng(0)
    calibration = rng.standard_normal((64, 1, 20, 16)).astype(np.float32)
    xs = rng.standard_normal((8, 1, 20, 16)).astype(np.float32)
    float_network = network_of(tflrnn.RNNCell(32), input_size=16, time_steps=20, lowering="portable")
    found = {}
    for precision in ("int16", "int8"):
        network = network_of(tflrnn.RNNCell(32), input_size=16, time_steps=20, lowering="portable",
                             quantize="full-int8", calibration=calibration, input_precision=precision)
        data = write(model_of(network))
        assert len(data) < 49920 / 2  # at most half the converter's full-int8 file on the same network
        interpreter = Interpreter(model_content=data)
        interpreter.allocate_tensors()
        x_index, y_index = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]
        errors, states = [], None
        for x in xs:
            interpreter.set_tensor(x_index, x)
            interpreter.invoke()
            expected, states = reference.run_network(float_network, x, states)
            errors.append(np.abs(interpreter.get_tensor(y_index) - expected[0]))
        errors = np.concatenate([e.ravel() for e in errors])
        found[precision] = (errors.max(), errors.mean())
    assert found["int16"][0] < 0.06 and found["int16"][1] < 0.0085
    assert found["int8"][0] < 0.16 and found["int8"][1] < 0.0102
    assert found["int16"][1] < 0.85 * found["int8"][1]


def test_a_float_interface_quantizes_the_input_to_int16():
    """The input QUANTIZEd to int16 (zero point 0); each first-layer projection a 16x8 FULLY_CONNECTED with an int64
    bias at the input's scale x W's, its int16 output (zero point 0) QUANTIZEd to the projection's int8 format; no
    int16 past it. --input-precision int8 (and an int8 interface) keep every value int8. Both read back."""
    for precision in ("int16", "int8"):
        network = NETWORKS["bidirectional, batch 2, time-major"](input_precision=precision)
        graph = model_of(network).subgraphs[0]
        wide = [t for t in graph.tensors if t.dtype == "int16"]
        fcs = [op for op in graph.operators if op.code == BuiltinOperator.FULLY_CONNECTED and
               graph.tensors[op.inputs[0]].dtype == "int16"]
        assert recover(read(write(model_of(network)))) == network
        assert network.int8.input.bits == (16 if precision == "int16" else 8)
        if precision == "int8":
            assert not wide and not fcs
            continue
        assert {t.name for t in wide} == {"rnn/input/int16", "rnn/input_rows", "rnn/fw/projection_rows/int16",
                                          "rnn/bw/projection_rows/int16"}
        assert all(t.quantization.zero_point == (0,) for t in wide) and len(fcs) == 2
        x_scale = graph.tensors[fcs[0].inputs[0]].quantization.scale[0]
        for op in fcs:
            w, b, out = (graph.tensors[i] for i in (*op.inputs[1:], op.outputs[0]))
            assert b.dtype == "int64" and out.dtype == "int16"
            np.testing.assert_allclose(b.quantization.scale, np.float32(x_scale) * np.asarray(w.quantization.scale),
                                       rtol=1e-6)
            requantize = next(o for o in graph.operators if o.inputs == [op.outputs[0]])
            assert requantize.code == BuiltinOperator.QUANTIZE
            assert graph.tensors[requantize.outputs[0]].dtype == "int8"


def test_an_int16_input_spans_twice_the_calibration_range():
    network = NETWORKS["cell"]()
    largest = np.abs(_calibration()).max()
    low, high = quant.representable(network.int8.input)
    assert high == pytest.approx(2 * largest, rel=1e-6) and low < -2 * largest


# verify finds what is wrong --------------------------------------------------------------------------------------


def _tampered(change) -> bytes:
    model = model_of(NETWORKS["cell"]())
    change(model.subgraphs[0])
    return write(model)


def test_a_changed_weight_fails_the_record():
    """The steps are checked against the weights the file holds; the tflrnn record says they are not those built."""
    def change(graph):
        r = next(t for t in graph.tensors if t.name == "rnn/recurrent_weights")
        r.data = r.data.copy()
        r.data[0, :] = -r.data[0, :]
    report = verify(_tampered(change), runtime="litert")
    assert [c.name for c in report.failures] == ["metadata.tflrnn"]


@pytest.mark.parametrize("runtime", ["litert", "micro"])
def test_one_wrong_step_fails_the_steps(runtime):
    """A relu fused into one step's int8 ADD (the kernel applies it by clamping): off by far more than its bound."""
    from tflrnn.model import Activation

    def change(graph):
        adds = [op for op in graph.operators if op.code == BuiltinOperator.ADD]
        adds[3].options.activation = Activation.RELU
    report = verify(_tampered(change), runtime=runtime)
    assert [c.name for c in report.failures] == ["int8.steps"]
    assert "layer 'rnn' off by" in report.failures[0].detail


@pytest.mark.parametrize("runtime", ["litert", "micro"])
def test_a_wrong_16x8_projection_fails_the_steps(runtime):
    """A relu fused into the 16x8 FULLY_CONNECTED (its kernel clamps the int16 output): every negative P is off."""
    from tflrnn.model import Activation

    def change(graph):
        fc = next(op for op in graph.operators if op.code == BuiltinOperator.FULLY_CONNECTED)
        assert graph.tensors[fc.inputs[0]].dtype == "int16"
        fc.options.activation = Activation.RELU
    report = verify(_tampered(change), runtime=runtime)
    assert [c.name for c in report.failures] == ["int8.steps"]
    assert "layer 'rnn' off by" in report.failures[0].detail


def test_an_int32_bias_on_the_int16_input_fails_the_formats():
    """TFLite's 16x8 FULLY_CONNECTED adds an int64 bias; verify says so before running anything."""
    def change(graph):
        b = next(t for t in graph.tensors if t.name == "rnn/bias")
        b.data, b.dtype = b.data.astype(np.int32), "int32"
    report = verify(_tampered(change), runtime="litert")
    assert [c.name for c in report.failures][:1] == ["int8.formats"]
    assert "'rnn/bias': not int64" in report.failures[0].detail


def test_a_coarse_int16_projection_fails_the_formats():
    """The 16x8 projection's int16 output 800 times coarser (3.5 steps of the int8 format it becomes): every step
    still lies within its bound, but the model doubled its error; verify holds the int16 step to 1/128 of it."""
    def change(graph):
        wide = next(t for t in graph.tensors if t.name == "rnn/projection_rows/int16")
        wide.quantization = Quantization((wide.quantization.scale[0] * 800,), (0,))
    report = verify(_tampered(change), runtime="litert")
    assert [c.name for c in report.failures][:1] == ["int8.formats"]
    assert "at least 128 times its step" in report.failures[0].detail


def test_weights_match_with_an_int64_bias_beyond_int32(tmp_path, cli):
    """A channel of tiny input weights and a bias of 5: its int64 bias is over 2^31 steps of its scale (the int16
    input's x W's). `verify --weights` compares it as the kernel adds it, int64."""
    rng = np.random.default_rng(2)
    w = (rng.standard_normal((6, 3)) * 0.4).astype(np.float32)
    w[1] *= 1e-3
    np.savez(tmp_path / "w.npz", input_weights=w, recurrent_weights=(rng.standard_normal((6, 6)) * 0.3).astype(
        np.float32), bias=np.full(6, 5.0, np.float32))
    np.save(tmp_path / "cal.npy", _calibration(3, 6))
    out = tmp_path / "m.tflite"
    assert cli("build", "--weights", tmp_path / "w.npz", "--time-steps", "6", "--lowering", "portable",
               "--quantize", "full-int8", "--calibration", tmp_path / "cal.npy", "-o", out).code == 0
    bias = next(t for t in read(out.read_bytes()).subgraphs[0].tensors if t.name == "rnn/bias")
    assert bias.dtype == "int64" and np.abs(bias.data).max() > 2**31
    result = cli("verify", out, "--weights", tmp_path / "w.npz")
    assert result.code == 0, result.out + result.err


def test_a_float_rebuild_of_exported_full_int8_weights(tmp_path, cli):
    """`weights` records how a full-int8 model was built (io, input precision); `build --weights ... --quantize none`
    makes the float model of those weights, for a portable cell and a fused LSTM alike."""
    np.save(tmp_path / "cal.npy", _calibration(3, 6))
    for cell in (["--lowering", "portable"], ["--cell", "lstm"], ["--lowering", "portable", "--input-precision",
                                                                  "int8"]):
        out = tmp_path / "m.tflite"
        assert cli("build", "--units", "4", "--input-size", "3", "--time-steps", "6", *cell, "--quantize",
                   "full-int8", "--calibration", tmp_path / "cal.npy", "-o", out).code == 0
        assert cli("weights", out, "-o", tmp_path / "w.npz").code == 0
        result = cli("build", "--weights", tmp_path / "w.npz", "--quantize", "none", "-o", tmp_path / "f.tflite")
        assert result.code == 0, (cell, result.err)


def test_a_wrong_tanh_output_format_fails_the_formats():
    """TFLite Micro writes TANH's output as (1/128, 0) whatever the tensor says: a model claiming another format
    would be read wrong, so verify refuses it before running anything."""
    def change(graph):
        for t in graph.tensors:
            if t.name.startswith("rnn/h"):
                t.quantization = Quantization((1 / 64,), (0,))
    report = verify(_tampered(change), runtime="litert")
    assert [c.name for c in report.failures][:1] == ["int8.formats"]
    assert any(c.name == "numeric" and "int8.formats" in c.detail for c in report.checks)


# refusals --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("options, fragment", [
    ({"lowering": "fused", "calibration": _calibration()}, "need --lowering portable"),
    ({"lowering": "portable"}, "needs --calibration"),
    ({"lowering": "portable", "calibration": _calibration(), "recurrence": "loop"}, "unrolled"),
    ({"lowering": "portable", "calibration": _calibration(), "time_steps": "dynamic"}, "fixed number of steps"),
    ({"lowering": "portable", "calibration": _calibration(input_size=5)}, "I = 3"),
    ({"lowering": "portable", "calibration": np.full((2, 1, 6, 3), np.nan, np.float32)}, "NaN"),
])
def test_refused_with_the_reason(options, fragment):
    with pytest.raises(ConfigError, match=fragment):
        network_of(tflrnn.RNNCell(4), input_size=3, **{"time_steps": 6, **options, "quantize": "full-int8"})


def test_int8_options_need_full_int8():
    with pytest.raises(ConfigError, match="--quantize full-int8"):
        network_of(tflrnn.RNNCell(4), input_size=3, lowering="portable", io="int8")
    with pytest.raises(ConfigError, match="--quantize full-int8"):
        network_of(tflrnn.RNNCell(4), input_size=3, lowering="portable", calibration=_calibration())
    with pytest.raises(ConfigError, match="--quantize full-int8"):
        network_of(tflrnn.RNNCell(4), input_size=3, lowering="portable", input_precision="int8")


def test_cli_errors_are_one_line(cli, tmp_path):
    (tmp_path / "bad.npy").write_text("not numpy")
    result = cli("build", "--units", "4", "--lowering", "portable", "--quantize", "full-int8", "--calibration",
                 tmp_path / "bad.npy", "-o", tmp_path / "m.tflite")
    assert result.code == 2 and "not a readable .npy or .npz" in result.err and len(result.err.splitlines()) == 1
    assert not (tmp_path / "m.tflite").exists()
    np.savez(tmp_path / "two.npz", a=_calibration(), b=_calibration())
    result = cli("build", "--units", "4", "--input-size", "3", "--lowering", "portable", "--quantize", "full-int8",
                 "--calibration", tmp_path / "two.npz", "-o", tmp_path / "m.tflite")
    assert result.code == 2 and "one array" in result.err


# weights ---------------------------------------------------------------------------------------------------------


def test_weights_export_int8_and_float_and_rebuild_byte_for_byte(cli, tmp_path):
    np.savez(tmp_path / "cal.npz", sequences=_calibration(3, 6))
    out, again = tmp_path / "m.tflite", tmp_path / "again.tflite"
    common = ["--units", "8", "--input-size", "3", "--time-steps", "6", "--lowering", "portable", "--quantize",
              "full-int8", "--calibration", tmp_path / "cal.npz"]
    assert cli("build", *common, "-o", out).code == 0
    assert cli("weights", out, "-o", tmp_path / "w.npz").code == 0
    with np.load(tmp_path / "w.npz") as saved:
        q, scales = saved["rnn/recurrent_weights/int8"], saved["rnn/recurrent_weights/scale"]
        assert q.dtype == np.int8 and scales.shape == (8,)
        np.testing.assert_array_equal(quant.dequantized(q, scales), saved["recurrent_weights"])
        # the first layer's bias joins products with the int16 input: int64, TFLite's 16x8 kernel
        assert saved["rnn/bias/int64"].dtype == np.int64
    assert cli("build", *common, "--weights", tmp_path / "w.npz", "-o", again).code == 0
    assert out.read_bytes() == again.read_bytes()
    assert cli("verify", out, "--weights", tmp_path / "w.npz").code == 0


def test_min_runtime_version_and_op_versions():
    """op_version.cc: int8 FULLY_CONNECTED 4, SOFTMAX 2, QUANTIZE to int8 1 and to int16 2; the 16x8
    FULLY_CONNECTED matches none of its rules (1). runtime_version.cc: QUANTIZE 2 is 1.15.0."""
    model = model_of(NETWORKS["classifier"](state="io"))
    versions = {(op.code, op.version) for op in model.subgraphs[0].operators}
    assert {(BuiltinOperator.FULLY_CONNECTED, 4), (BuiltinOperator.SOFTMAX, 2), (BuiltinOperator.QUANTIZE, 2),
            (BuiltinOperator.FULLY_CONNECTED, 1), (BuiltinOperator.QUANTIZE, 1)} <= versions
    assert model.metadata["min_runtime_version"].rstrip(b"\0") == b"1.15.0"
    model = model_of(NETWORKS["classifier"](state="io", input_precision="int8"))
    assert model.metadata["min_runtime_version"].rstrip(b"\0") == b"1.14.0"


def test_keras_classifier_full_int8(tmp_path, cli):
    """A trained-shape Keras classifier (bidirectional SimpleRNN, SimpleRNN, Dense softmax) built full-int8 from its
    file, verified on LiteRT and TFLite Micro, its error against the float weights reported."""
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6, 3)),
                              keras.layers.Bidirectional(keras.layers.SimpleRNN(4, return_sequences=True)),
                              keras.layers.SimpleRNN(3, activation="relu", return_sequences=False),
                              keras.layers.Dense(2, activation="softmax")])
    model.save(tmp_path / "s.keras")
    np.save(tmp_path / "cal.npy", _calibration(3, 6, n=32))
    out = tmp_path / "m.tflite"
    result = cli("build", "--weights", tmp_path / "s.keras", "--lowering", "portable", "--quantize", "full-int8",
                 "--calibration", tmp_path / "cal.npy", "-o", out)
    assert result.code == 0, result.err
    report = json.loads(cli("verify", out, "--runtime", "all", "--weights", tmp_path / "s.keras", "--json").out)
    assert report["passed"], [c for c in report["checks"] if not c["passed"]]
    steps = [c for c in report["checks"] if c["name"] == "int8.steps"]
    assert {c["runtime"] for c in steps} >= {"litert", "micro"}
    assert all("of the float model (--weights)" in c["detail"] for c in steps)


# the sum before TANH, and a lost state ---------------------------------------------------------------------------


def test_the_sum_before_tanh_is_clipped_where_tanh_rounds_to_its_ends():
    """Calibration data that drives z = x W^T + h R^T + b far past where int8 TANH saturates: z's format stops at
    +-atanh(1 - 1/256), beyond which tanh's int8 output (1/128 a step) no longer changes. So z's representable
    range, scale (-128 - zp) to scale (127 - zp), is that limit to within one step at each end."""
    limit = float(np.arctanh(1 - 1 / 256))  # |tanh(z)| >= 1 - 1/256 = 127.5/128: the last int8 step from here on
    units, size, steps = 8, 3, 6
    rng = np.random.default_rng(11)
    w = (rng.standard_normal((units, size)) * 2.5).astype(np.float32)
    r = (rng.standard_normal((units, units)) * 0.5).astype(np.float32)
    b = (rng.standard_normal(units) * 0.5).astype(np.float32)
    calibration = (rng.standard_normal((16, 1, steps, size)) * 3).astype(np.float32)
    z, h = [], np.zeros((1, units))
    for x in calibration[:, 0].astype(np.float64).reshape(-1, size):  # the float recurrence, state carried
        z.append(x @ w.T.astype(np.float64) + h @ r.T.astype(np.float64) + b)
        h = np.tanh(z[-1])
    z = np.concatenate(z)
    assert np.abs(z).max() > 4 * limit and np.mean(np.abs(z) > limit) > 0.5  # far past it, most of the time
    network = network_of(tflrnn.RNNCell(units), weights=tflrnn.CellWeights(w, r, b), time_steps=steps,
                         lowering="portable", quantize="full-int8", calibration=calibration)
    graph = read(write(model_of(network))).subgraphs[0]
    sums = [t for t in graph.tensors if t.name in {f"rnn/z{k}" for k in range(steps)}]
    assert len(sums) == steps
    for t in sums:
        (scale,), (zero_point,) = t.quantization.scale, t.quantization.zero_point
        low, high = scale * (-128 - zero_point), scale * (127 - zero_point)
        assert abs(low + limit) <= scale * 1.001 and abs(high - limit) <= scale * 1.001, (t.name, low, high, limit)
    assert verify(write(model_of(network)), runtime="litert").passed


def test_a_lost_state_fails_the_steps_not_the_structure():
    """The serving subgraph's ASSIGN_VARIABLE removed: the model still loads and runs, each invoke now starting
    from the zeros `init` wrote. Nothing in its structure says so; int8.steps does, from the second invoke on (the
    first starts from zeros either way), on LiteRT and TFLite Micro."""
    model = read(write(model_of(NETWORKS["cell"]())))
    serving = model.subgraphs[0]
    assert sum(op.code == BuiltinOperator.ASSIGN_VARIABLE for op in serving.operators) == 1
    serving.operators = [op for op in serving.operators if op.code != BuiltinOperator.ASSIGN_VARIABLE]
    data = write(model)
    for runtime in ("litert", "micro"):
        report = verify(data, runtime=runtime)
        assert [(c.name, c.runtime) for c in report.failures] == [("int8.steps", runtime)], report.failures
        detail = report.failures[0].detail
        assert detail.startswith("invoke 2: layer 'rnn' off by") and "invoke 1:" not in detail, detail
