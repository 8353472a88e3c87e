"""The full-int8 fused LSTM (lowering/fused_int8.py): UNIDIRECTIONAL_SEQUENCE_LSTM on TFLite's integer kernel (int8 x,
h and weights, int16 c, int32 biases, five intermediates), on LiteRT and TFLite Micro with its state carried.
Expectations come from Keras (a real keras.layers.LSTM), the float64 reference and the layout TensorFlow's converter
writes for a tf_keras LSTM (its int8 model's tensors, read once and restated here), never from the writer."""

from __future__ import annotations

import numpy as np
import pytest

import tflrnn
from support import assert_clean_error
from tflrnn import reference
from tflrnn.builder import network_of
from tflrnn.cells.lstm import LSTMCell, LSTMWeights
from tflrnn.lowering import lower, recover
from tflrnn.model import BuiltinOperator
from tflrnn.reader import read
from tflrnn.runners import micro_arena_bytes
from tflrnn.verification import verify

LSTM_OP = BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_LSTM


def _weights(units: int, input_size: int, seed: int = 0) -> LSTMWeights:
    rng = np.random.default_rng(seed)
    return LSTMWeights(*((rng.standard_normal(shape) * 0.4).astype(np.float32)
                         for shape in ((4 * units, input_size), (4 * units, units), (4 * units,))))


def _calibration(shape, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((32, *shape)).astype(np.float32)


def _build(units=8, input_size=4, time_steps=6, batch_size=1, time_major=False, **options):
    shape = (time_steps, batch_size, input_size) if time_major else (batch_size, time_steps, input_size)
    layers = options.pop("layers", 1)
    cell = LSTMCell(units) if layers == 1 else [LSTMCell(units, name=f"lstm_{k}") for k in range(layers)]
    weights = options.pop("weights", _weights(units, input_size) if layers == 1 else [
        _weights(units, input_size if k == 0 else units, seed=k) for k in range(layers)])
    return tflrnn.build(cell, weights=weights, input_size=input_size, time_steps=time_steps,
                        batch_size=batch_size, time_major=time_major, quantize="full-int8",
                        calibration=_calibration(shape), **options), weights, shape


def _run(runtime_name: str, data: bytes, xs: list[np.ndarray], reset_after: int | None = None) -> list[np.ndarray]:
    from tflrnn import runtime

    if runtime_name == "micro":
        pytest.importorskip("tflite_micro")
    graph = read(data).subgraphs[0]
    interpreter = runtime.load(runtime_name, data, graph.inputs[0], graph.outputs, isolate=False,
                               input_positions=[0], output_positions=[0], arena=micro_arena_bytes(read(data)))
    found = []
    for k, x in enumerate(xs):
        if k == reset_after:
            interpreter.reset()
        found.append(interpreter.run(x)[0].copy())
    return found


def test_the_layout_is_the_integer_kernels():
    """As TensorFlow's converter writes a tf_keras LSTM in full int8 (read from its model): int8 weights with one
    scale each, int32 biases at x's scale x the gate's W scale, h an int8 variable in the output's format, c an int16
    variable at a power-of-two scale, zero point 0, five intermediates (four float32 [0], the hidden's int8 in h's
    format), version 1, tanh."""
    data, _, _ = _build()
    graph = read(data).subgraphs[0]
    t = graph.tensors
    (op,) = [op for op in graph.operators if op.code == LSTM_OP]
    assert op.version == 1 and op.options.activation == 4 and op.options.cell_clip == 0
    x = t[op.inputs[0]]
    assert x.dtype == "int8"
    for slot in range(1, 9):
        w = t[op.inputs[slot]]
        assert w.dtype == "int8" and len(w.quantization.scale) == 1 and w.quantization.zero_point == (0,)
    for k, slot in enumerate(range(12, 16)):
        b = t[op.inputs[slot]]
        expected = np.float32(x.quantization.scale[0]) * np.float64(t[op.inputs[1 + k]].quantization.scale[0])
        assert b.dtype == "int32" and np.isclose(b.quantization.scale[0], expected, rtol=1e-6)
    h, c, out = t[op.inputs[18]], t[op.inputs[19]], t[op.outputs[0]]
    assert h.is_variable and c.is_variable and h.data is None and c.data is None
    assert h.dtype == "int8" and h.quantization == out.quantization
    assert c.dtype == "int16" and c.quantization.zero_point == (0,)
    assert np.log2(c.quantization.scale[0]) == int(np.log2(c.quantization.scale[0])) <= -9
    assert [t[i].dtype for i in op.intermediates] == ["float32"] * 4 + ["int8"]
    assert all(t[i].shape == (0,) for i in op.intermediates)
    assert t[op.intermediates[4]].quantization == h.quantization
    assert [o.code for o in graph.operators] == [BuiltinOperator.QUANTIZE, LSTM_OP, BuiltinOperator.DEQUANTIZE]


@pytest.mark.parametrize("runtime_name", ["litert", "micro"])
def test_it_is_keras_within_its_quantization_with_the_state_carried(runtime_name):
    """Against a real Keras LSTM with the same weights, chained over three invokes through its returned h and c
    (stateful as the model is), then a reset: within what int8 h at its scale and the gates' fixed point leave."""
    keras = pytest.importorskip("keras")
    data, weights, shape = _build(units=8, input_size=4, time_steps=6)
    layer = keras.layers.LSTM(8, return_sequences=True, return_state=True)
    layer.build((1, 6, 4))
    layer.set_weights([weights.input_weights.T, weights.recurrent_weights.T, weights.bias])
    xs = [np.random.default_rng(10 + k).standard_normal(shape).astype(np.float32) for k in range(3)]
    got = _run(runtime_name, data, xs + [xs[0]], reset_after=3)
    state = None
    for x, y in zip(xs, got):
        expected, h, c = (np.asarray(v) for v in layer(x, initial_state=state))
        state = [h, c]
        assert np.max(np.abs(y - expected)) < 0.03, np.max(np.abs(y - expected))
    assert not np.array_equal(got[0], got[1])  # the state moved on
    np.testing.assert_array_equal(got[3], got[0])  # and a reset zeroes it


def test_litert_and_micro_agree_within_a_step():
    """Both run an integer LSTM of the same arithmetic, written apart (lstm_eval.cc in each): measured, their
    outputs differ by at most one step of h's format, in about 7 % of the values (rounding in the gates' fixed point
    differs); a wrong kernel or a lost state is tens of steps off."""
    data, _, shape = _build(units=12, input_size=5, time_steps=10, batch_size=2)
    step = recover(read(data)).int8.layers["lstm"].state.scale
    xs = [np.random.default_rng(k).standard_normal(shape).astype(np.float32) * 2 for k in range(3)]
    for a, b in zip(_run("litert", data, xs), _run("micro", data, xs)):
        apart = np.abs(a - b)
        assert apart.max() <= 2.001 * step and np.mean(apart > step / 2) < 0.2


@pytest.mark.parametrize("options", [
    {},
    {"time_major": True, "batch_size": 2, "last_step": True, "io": "int8"},
    {"layers": 2},
])
def test_loopback_and_same_bytes(options):
    data, _, _ = _build(**options)
    model = read(data)
    network = recover(model)
    assert network.int8 is not None and network.lowering == "fused"
    assert recover(lower(network)) == network
    assert _build(**options)[0] == data


@pytest.mark.parametrize("options", [
    {},
    {"time_major": True, "batch_size": 2, "last_step": True, "io": "int8"},
    {"layers": 2, "time_steps": 12},
])
def test_verify_passes_on_litert_tflite_and_micro(options):
    data, _, _ = _build(**options)
    report = verify(data, runtime="all")
    assert report.passed, [(c.name, c.detail) for c in report.checks if not c.passed]
    ran = {c.runtime for c in report.checks if c.kind == "int8.ops"}
    assert {"litert", "micro"} <= ran
    assert any(c.kind == "int8.lstm" and c.passed for c in report.checks)
    # LiteRT's default (XNNPACK takes the ops around the LSTM): its outputs against the reference
    assert any(c.kind == "int8.outputs" and c.runtime == "litert+xnnpack" and c.passed for c in report.checks)
    assert {"litert", "micro", "litert+xnnpack"} <= {r["name"] for r in report.runtimes}


def test_verify_catches_a_state_lost_between_invokes(monkeypatch):
    """A runtime that starts each invoke from zeros computes another LSTM than one carrying its state: judged as
    such (the check told the op started from zeros while the runtime carried it), invoke 2 is off by far more than
    its bound."""
    from tflrnn.verification import int8_lstm

    data, _, _ = _build(time_steps=8)
    check = int8_lstm.check_op
    monkeypatch.setattr(int8_lstm, "check_op",
                        lambda op, tensors, known, start, *rest: check(op, tensors, known, None, *rest))
    report = verify(data, runtime="litert")
    failed = [c for c in report.checks if not c.passed]
    assert [c.kind for c in failed] == ["int8.ops"]
    assert "invoke 2: UNIDIRECTIONAL_SEQUENCE_LSTM" in failed[0].detail and "h off by" in failed[0].detail
    assert "invoke 1:" not in failed[0].detail  # the first invoke, from zeros either way, passes


@pytest.mark.parametrize("which,values", [(1, [0, -2, 0]), (1, [0, 0, 0]), (3, [1, 2, 1])])
def test_verify_holds_the_last_step_to_the_final_step(which, values):
    """The op check recomputes a STRIDED_SLICE from its own constants, which a changed begin or stride still
    matches: the slice itself must take the final step (begin, end, strides and options), before any numbers."""
    from tflrnn.writer import write

    data, _, _ = _build(last_step=True)
    assert verify(data, runtime="litert").passed
    model = read(data)
    graph = model.subgraphs[0]
    (op,) = [op for op in graph.operators if op.code == BuiltinOperator.STRIDED_SLICE]
    graph.tensors[op.inputs[which]].data = np.asarray(values, np.int32)
    report = verify(write(model), runtime="litert")
    failed = {c.kind: c.detail for c in report.checks if not c.passed}
    assert f"{values}" in failed["last_step"] and failed["numeric"] == "not run: last_step failed"


@pytest.mark.parametrize("mutation,fragment", [
    ("bias_scale", "not x's scale"),
    ("cell_scale", "power-of-two"),
    ("hidden_zero_point", "one format"),
    ("intermediates", "five intermediates"),
])
def test_verify_catches_what_the_kernel_would_misread(mutation, fragment):
    from tflrnn.model import Quantization
    from tflrnn.writer import write

    data, _, _ = _build()
    model = read(data)
    graph = model.subgraphs[0]
    (op,) = [op for op in graph.operators if op.code == LSTM_OP]
    t = graph.tensors
    if mutation == "bias_scale":
        b = t[op.inputs[13]]
        b.quantization = Quantization((b.quantization.scale[0] * 1.5,), (0,))
    elif mutation == "cell_scale":
        c = t[op.inputs[19]]
        c.quantization = Quantization((c.quantization.scale[0] * 1.5,), (0,))
    elif mutation == "hidden_zero_point":
        h = t[op.inputs[18]]
        h.quantization = Quantization(h.quantization.scale, (h.quantization.zero_point[0] + 3,))
    else:
        op.intermediates = op.intermediates[:4]
    report = verify(write(model), runtime="litert")
    assert not report.passed
    assert any(c.kind == "int8.lstm" and not c.passed and fragment in c.detail for c in report.checks)
    assert not any(c.kind == "int8.ops" for c in report.checks)  # numbers not judged on a model the kernel misreads


def test_calibration_error_is_near_the_float_model():
    """The error on held-out data against the float64 LSTM of the float weights: of the order of h's int8 step."""
    data, weights, shape = _build(units=16, input_size=6, time_steps=12)
    xs = [np.random.default_rng(100 + k).standard_normal(shape).astype(np.float32) for k in range(8)]
    interpreter_outputs = _run("litert", data, xs, reset_after=None)
    state, worst = None, 0.0
    for x, y in zip(xs, interpreter_outputs):
        expected, state = reference.run_lstm(x, weights, initial_state=state)
        worst = max(worst, float(np.max(np.abs(y - expected))))
    assert worst < 0.05


@pytest.mark.parametrize("args,fragments", [
    (["--cell", "rnn"], ["basic RNN", "--lowering portable"]),
    (["--cell", "lstm", "--bidirectional"], ["bidirectional", "no integer kernel", "--lowering portable"]),
    (["--cell", "lstm", "--time-steps", "dynamic"], ["fixed number of steps"]),
    (["--cell", "lstm", "--state", "io"], ["state 'io' needs the portable lowering"]),
    (["--cell", "lstm", "--state", "zero"], ["state 'zero' needs the portable lowering"]),
])
def test_cli_refuses_what_it_does_not_write(cli, tmp_path, args, fragments):
    np.save(tmp_path / "c.npy", np.zeros((2, 1, 3, 4), np.float32))
    out = tmp_path / "l.tflite"
    result = cli("build", *args, "--units", "4", "--input-size", "4", "--quantize", "full-int8", "--calibration",
                 tmp_path / "c.npy", "-o", out)
    assert_clean_error(result, *fragments)
    assert not out.exists()


def test_cli_builds_inspects_and_verifies(cli, tmp_path):
    np.save(tmp_path / "c.npy", _calibration((1, 5, 4)))
    out = tmp_path / "l.tflite"
    built = cli("build", "--cell", "lstm", "--units", "6", "--input-size", "4", "--time-steps", "5", "--quantize",
                "full-int8", "--calibration", tmp_path / "c.npy", "-o", out)
    assert built.code == 0 and "full int8" in built.out and "UNIDIRECTIONAL_SEQUENCE_LSTM" in built.out
    inspected = cli("inspect", out)
    assert inspected.code == 0 and "cell_state" in inspected.out and "int16" in inspected.out
    verified = cli("verify", out, "--runtime", "all")
    assert verified.code == 0 and "int8.ops [micro]" in verified.out
    network = network_of(LSTMCell(6), input_size=4, time_steps=5, quantize="full-int8",
                         calibration=_calibration((1, 5, 4)))
    assert recover(read(out.read_bytes())) == network


def test_saturated_gates_are_judged_as_each_runtime_saturates_them(cli, tmp_path):
    """Large weights drive the gates' input parts far beyond the kernel's +-8: LiteRT adds h's part to the clamped
    input part and clamps the sum, TFLite Micro clamps each part first; verify restates each and passes both, and the
    build warns that the model departs from the float one there."""
    rng = np.random.default_rng(5)
    weights = LSTMWeights(*((rng.standard_normal(shape) * 3.0).astype(np.float32)
                            for shape in ((96, 8), (96, 24), (96,))))
    np.savez(tmp_path / "w.npz", input_weights=weights.input_weights, recurrent_weights=weights.recurrent_weights,
             bias=weights.bias)
    np.save(tmp_path / "c.npy", (rng.standard_normal((8, 1, 30, 8)) * 2).astype(np.float32))
    out = tmp_path / "big.tflite"
    built = cli("build", "--weights", tmp_path / "w.npz", "--time-steps", "30", "--quantize", "full-int8",
                "--calibration", tmp_path / "c.npy", "-o", out)
    assert built.code == 0 and "integer LSTM kernel saturates" in built.err
    report = verify(out.read_bytes(), runtime="all", sequences=3)
    assert report.passed, [(c.name, c.detail) for c in report.checks if not c.passed]


@pytest.mark.parametrize("args", [[], ["--layers", "2", "--last-step"]])
def test_exported_weights_rebuild_the_same_bytes(cli, tmp_path, args):
    """`tflrnn weights` then `build --weights` with the same calibration data gives the model back byte for byte
    (calibration settles on the int32 biases the model stores, which the export holds)."""
    np.save(tmp_path / "c.npy", _calibration((1, 8, 4)))
    first, exported, again = tmp_path / "a.tflite", tmp_path / "a.npz", tmp_path / "b.tflite"
    common = ["--quantize", "full-int8", "--calibration", tmp_path / "c.npy", "--time-steps", "8"]
    assert cli("build", "--cell", "lstm", "--units", "6", "--input-size", "4", *args, *common, "-o", first).code == 0
    assert cli("weights", first, "-o", exported).code == 0
    last = [a for a in args if a == "--last-step"]
    assert cli("build", "--weights", exported, *last, *common, "-o", again).code == 0
    assert again.read_bytes() == first.read_bytes()


def test_a_long_sequence_with_f_near_one_is_judged_tightly():
    """A forget gate biased to 1 keeps c over 200 steps: c's bound, carried, would grow with the steps; narrowed
    by what each step's h says of c and by tanh's flatness, h's allowance stays a few steps of its format."""
    rng = np.random.default_rng(1)
    weights = _weights(16, 8, seed=1)
    weights = LSTMWeights(weights.input_weights, weights.recurrent_weights,
                          weights.bias + np.repeat(np.float32([0, 5, 0, 0]), 16))
    data = tflrnn.build(LSTMCell(16), weights=weights, input_size=8, time_steps=200, quantize="full-int8",
                        calibration=rng.standard_normal((4, 1, 200, 8)).astype(np.float32))
    report = verify(data, runtime="litert", sequences=2)
    (ops,) = [c for c in report.checks if c.kind == "int8.ops"]
    assert ops.passed and "checked loosely" not in ops.detail


def test_an_int8_input_to_a_fused_rnn_op_is_read_cleanly(cli, tmp_path):
    """The basic cell's fused op has no integer kernel: an int8 input there is not a full-int8 model."""
    from tflrnn.model import Quantization
    from tflrnn.writer import write
    from tflrnn.cell import RNNCell

    model = read(tflrnn.build(RNNCell(4), input_size=3, time_steps=2))
    x = model.subgraphs[0].tensors[model.subgraphs[0].inputs[0]]
    x.dtype, x.quantization = "int8", Quantization((0.02,), (0,))
    path = tmp_path / "m.tflite"
    path.write_bytes(write(model))
    for command in (["inspect", path], ["verify", path]):
        result = cli(*command)
        assert result.code in (0, 1, 2) and "Traceback" not in result.err and "internal error" not in result.err


def test_verify_weights_takes_the_layer_of_a_keras_file(cli, tmp_path):
    keras = pytest.importorskip("keras")
    model = keras.Sequential([keras.Input((6, 4), batch_size=1), keras.layers.LSTM(5, return_sequences=True,
                                                                                      name="enc"),
                              keras.layers.LSTM(3, return_sequences=True, name="dec")])
    model.save(tmp_path / "two.keras")
    np.save(tmp_path / "c.npy", _calibration((1, 6, 5)))
    out = tmp_path / "dec.tflite"
    assert cli("build", "--weights", tmp_path / "two.keras", "--layer", "dec", "--quantize", "full-int8",
               "--calibration", tmp_path / "c.npy", "-o", out).code == 0
    report = verify(out.read_bytes(), weights=str(tmp_path / "two.keras"), layer="dec")
    assert report.passed and any(c.kind == "weights.match" and c.passed for c in report.checks)


def test_gptq_rounding_leaves_less_error_than_the_nearest_level():
    """Weights rounded against the values they multiply (quantization.gptq_rounded) leave a smaller error in x W^T
    over those values than each weight rounded to its nearest level, on the same grid; the largest |w| of each
    block lands on +-127 (the scale reads back), and weights already on the grid stay as they are."""
    from tflrnn.quantization import dequantized, gptq_rounded, per_gate_tensor

    rng = np.random.default_rng(3)
    x = rng.standard_normal((2000, 24)) @ rng.standard_normal((24, 24)) * 0.3  # correlated inputs
    weights = (rng.standard_normal((4 * 8, 24)) * 0.3).astype(np.float32)
    q, scales = per_gate_tensor(weights, 4)
    nearest = dequantized(q, scales)
    rounded = gptq_rounded(weights, scales, x.T @ x, blocks=4)
    error = lambda w: float(np.mean((x @ (w.astype(np.float64) - weights).T) ** 2))
    assert error(rounded) < 0.8 * error(nearest)
    levels = rounded / scales[:, None]
    np.testing.assert_allclose(levels, np.rint(levels), atol=1e-4)  # on the grid
    assert all(np.isclose(np.abs(levels[k * 8:(k + 1) * 8]).max(), 127) for k in range(4))
    np.testing.assert_array_equal(gptq_rounded(rounded, scales, x.T @ x, blocks=4), rounded)


def test_weights_match_holds_the_model_to_its_float_weights():
    """Rounded against the calibration data, the model's int8 weights are not each the nearest level of the float
    ones; weights.match accepts those within a few levels at the float weights' own scales, and no others."""
    data, weights, _ = _build(units=16, input_size=8, time_steps=6)
    report = verify(data, weights=weights, runtime="litert")
    assert any(c.kind == "weights.match" and c.passed for c in report.checks)
    other = _weights(16, 8, seed=9)
    assert not any(c.kind == "weights.match" and c.passed for c in verify(data, weights=other).checks)
    nudged = LSTMWeights(weights.input_weights * np.float32(1.02), weights.recurrent_weights, weights.bias)
    assert not any(c.kind == "weights.match" and c.passed for c in verify(data, weights=nudged).checks)
