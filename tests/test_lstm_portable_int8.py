"""The portable lowering's full-int8 LSTM (lowering/lstm.py write_int8_direction): TFLite's 16x8 form, int8 weights
per channel and every value int16 (zero point 0), its steps unrolled or a WHILE loop, on LiteRT, tf.lite and TFLite
Micro with its state carried, as an input/output or none. Expectations come from Keras (a real keras.layers.LSTM, chained through its returned h and c),
the int16 kernels' fixed formats restated from their sources (activations.cc: LOGISTIC and TANH write (1/32768, 0);
add.cc, mul.cc and the 16x8 FULLY_CONNECTED take zero points 0), never from the writer."""

from __future__ import annotations

import json

import numpy as np
import pytest

import tflrnn
from support import assert_clean_error
from tflrnn.cells.lstm import LSTMCell, LSTMWeights
from tflrnn.lowering import lower, recover
from tflrnn.model import BuiltinOperator, Quantization
from tflrnn.reader import read
from tflrnn.runners import micro_arena_bytes
from tflrnn.verification import verify
from tflrnn.writer import write

PORTABLE_INT8 = ["--cell", "lstm", "--lowering", "portable", "--quantize", "full-int8"]


def _weights(units: int, input_size: int, seed: int = 0) -> LSTMWeights:
    rng = np.random.default_rng(seed)
    return LSTMWeights(*((rng.standard_normal(shape) * 0.4).astype(np.float32)
                         for shape in ((4 * units, input_size), (4 * units, units), (4 * units,))))


def _calibration(path, shape=(1, 6, 4), seed: int = 1):
    np.save(path, np.random.default_rng(seed).standard_normal((16, *shape)).astype(np.float32))
    return path


def _build(units=8, input_size=4, time_steps=6, **options) -> tuple[bytes, LSTMWeights]:
    weights = options.pop("weights", _weights(units, input_size))
    calibration = np.random.default_rng(1).standard_normal((16, 1, time_steps, input_size)).astype(np.float32)
    data = tflrnn.build(LSTMCell(units), weights=weights, input_size=input_size, time_steps=time_steps,
                        lowering="portable", quantize="full-int8", calibration=calibration, **options)
    return data, weights


def _run(runtime_name: str, data: bytes, xs: list[np.ndarray]) -> list[np.ndarray]:
    from tflrnn import runtime

    if runtime_name == "micro":
        pytest.importorskip("tflite_micro")
    model = read(data)
    graph = model.subgraphs[0]
    interpreter = runtime.load(runtime_name, data, graph.inputs[0], graph.outputs, isolate=False,
                               input_positions=[0], output_positions=[0], arena=micro_arena_bytes(model))
    return [interpreter.run(x)[0].copy() for x in xs]


def test_every_value_is_int16_as_the_16x8_kernels_take_them():
    """Weights int8 per output channel, zero point 0; biases int64 at input scale x weight scale; every op's values
    int16 with zero point 0 (the int16 ADD, MUL, LOGISTIC, TANH and FULLY_CONNECTED kernels require it); LOGISTIC and
    TANH writing (1/32768, 0); the int16 ADD asks for its general kernel (pot_scale_int16 false)."""
    data, _ = _build()
    graph = read(data).subgraphs[0]
    t = graph.tensors
    step_codes = {BuiltinOperator.ADD, BuiltinOperator.MUL, BuiltinOperator.LOGISTIC, BuiltinOperator.TANH,
                  BuiltinOperator.SPLIT, BuiltinOperator.UNPACK, BuiltinOperator.PACK, BuiltinOperator.CONCATENATION}
    counted = 0
    for op in graph.operators:
        if op.code == BuiltinOperator.FULLY_CONNECTED:
            w, b = t[op.inputs[1]], t[op.inputs[2]] if op.inputs[2] >= 0 else None
            assert w.dtype == "int8" and len(w.quantization.scale) == w.shape[0] and not any(w.quantization.zero_point)
            x = t[op.inputs[0]]
            assert x.dtype == "int16" and t[op.outputs[0]].dtype == "int16"
            if b is not None:
                expected = np.float32(x.quantization.scale[0]) * np.asarray(w.quantization.scale, np.float64)
                assert b.dtype == "int64" and np.allclose(b.quantization.scale, expected, rtol=1e-6)
        if op.code in step_codes:
            counted += 1
            for i in (*op.inputs, *op.outputs):
                if t[i].dtype != "int32":  # (SPLIT's axis)
                    assert t[i].dtype == "int16" and t[i].quantization.zero_point == (0,), t[i].name
        if op.code in (BuiltinOperator.LOGISTIC, BuiltinOperator.TANH):
            assert t[op.outputs[0]].quantization.scale == (2.0 ** -15,)
        if op.code == BuiltinOperator.ADD:
            assert op.options.pot_scale_int16 is False
    assert counted > 6 * 10  # every step's


@pytest.mark.parametrize("runtime_name, recurrence", [("litert", "unrolled"), ("micro", "unrolled"),
                                                      ("litert", "loop"), ("micro", "loop")])
def test_it_is_keras_within_its_quantization_with_the_state_carried(runtime_name, recurrence):
    """Against a real Keras LSTM with the same weights, chained over three invokes through its returned h and c
    (stateful as the model is): int16 values leave far less error than the int8 kernel's h (1/128 steps)."""
    keras = pytest.importorskip("keras")
    data, weights = _build(units=8, input_size=4, time_steps=6, recurrence=recurrence)
    layer = keras.layers.LSTM(8, return_sequences=True, return_state=True)
    layer.build((1, 6, 4))
    layer.set_weights([weights.input_weights.T, weights.recurrent_weights.T, weights.bias])
    xs = [np.random.default_rng(10 + k).standard_normal((1, 6, 4)).astype(np.float32) for k in range(3)]
    state = None
    for x, y in zip(xs, _run(runtime_name, data, xs)):
        expected, h, c = (np.asarray(v) for v in layer(x, initial_state=state))
        state = [h, c]
        assert np.max(np.abs(y - expected)) < 0.01, np.max(np.abs(y - expected))


@pytest.mark.parametrize("args", [
    [],
    ["--state", "io", "--bidirectional", "--merge", "none"],
    ["--state", "zero", "--layers", "2", "--last-step"],
    ["--bidirectional", "--layers", "2", "--time-major", "--batch-size", "2"],
    ["--recurrence", "loop"],
    ["--recurrence", "loop", "--state", "io", "--bidirectional", "--last-step"],
    ["--recurrence", "loop", "--state", "zero", "--layers", "2", "--time-major", "--batch-size", "2"],
])
def test_verify_passes_on_every_runtime(cli, tmp_path, args):
    shape = (6, 2, 4) if "--time-major" in args else (1, 6, 4)
    out = tmp_path / "l.tflite"
    built = cli("build", *PORTABLE_INT8, "--units", "6", "--input-size", "4", "--time-steps", "6",
                "--calibration", _calibration(tmp_path / "c.npy", shape), *args, "-o", out, "--json")
    assert built.code == 0, built.err
    summary = json.loads(built.out)["int8"]
    assert summary["calibration"]["max_error"] < 0.01 and summary["values"] == "int16"
    verified = cli("verify", out, "--runtime", "all", "--json")
    assert verified.code == 0, verified.out + verified.err
    ran = {(c["name"], c["runtime"]) for c in json.loads(verified.out)["checks"] if c["passed"]}
    assert {("int8.formats", None), ("int8.steps", "litert"), ("int8.ops", "litert"), ("int8.steps", "micro"),
            ("int8.ops", "micro"), ("int8.outputs", "compiled"), ("int8.outputs", "litert+xnnpack")} <= ran
    if "loop" in args:  # those of its unrolled twin; the loop's own outputs are the twin's bit for bit
        assert {("int8.loop", name) for name in ("litert", "litert+xnnpack", "tensorflow", "compiled", "micro")} <= ran


def test_a_keras_classifier_builds_and_verifies_against_its_weights(cli, tmp_path):
    """A Keras LSTM and a softmax Dense: the Dense reads the int16 h through the 16x8 FULLY_CONNECTED, QUANTIZEd to
    int8 for SOFTMAX; verify --weights holds the model to the Keras file's float weights."""
    keras = pytest.importorskip("keras")
    inputs = keras.Input((6, 4), batch_size=1)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(keras.layers.LSTM(8)(inputs)))
    model.save(tmp_path / "k.keras")
    out = tmp_path / "k.tflite"
    assert cli("build", "--weights", tmp_path / "k.keras", "--lowering", "portable", "--quantize", "full-int8",
               "--calibration", _calibration(tmp_path / "c.npy"), "-o", out).code == 0
    network = recover(read(out.read_bytes()))
    assert [d.activation for d in network.head] == ["softmax"] and network.layers[0].kind == "lstm"
    verified = cli("verify", out, "--runtime", "all", "--weights", tmp_path / "k.keras")
    assert verified.code == 0, verified.out


@pytest.mark.parametrize("options", [{}, {"state": "io", "bidirectional": True}, {"layers": 2, "last_step": True},
                                     {"recurrence": "loop"}, {"recurrence": "loop", "layers": 2, "state": "zero"}])
def test_loopback_and_same_bytes(options):
    layers = options.pop("layers", 1)
    if layers > 1:
        cells = [LSTMCell(6, name=f"lstm_{k}") for k in range(layers)]
        weights = [_weights(6, 4 if k == 0 else 6, seed=k) for k in range(layers)]
        first = tflrnn.build(cells, weights=weights, input_size=4, time_steps=6, lowering="portable",
                             quantize="full-int8", calibration=np.random.default_rng(1).standard_normal(
                                 (8, 1, 6, 4)).astype(np.float32), **options)
    else:
        first, _ = _build(units=6, **options)
    network = recover(read(first))
    assert network.int8 is not None and network.lowering == "portable"
    assert network.loop == (options.get("recurrence") == "loop")
    assert all(layer.kind == "lstm" for layer in network.layers)
    assert recover(lower(network)) == network


@pytest.mark.parametrize("args", [[], ["--bidirectional", "--state", "io"], ["--layers", "2"],
                                  ["--recurrence", "loop", "--bidirectional"]])
def test_exported_weights_rebuild_the_same_bytes(cli, tmp_path, args):
    """`tflrnn weights` then `build --weights` with the same calibration data gives the model back byte for byte
    (calibration settles on the int64 biases the model stores, which the export holds)."""
    calibration = _calibration(tmp_path / "c.npy")
    first, exported, again = tmp_path / "a.tflite", tmp_path / "a.npz", tmp_path / "b.tflite"
    assert cli("build", *PORTABLE_INT8, "--units", "6", "--input-size", "4", "--time-steps", "6", *args,
               "--calibration", calibration, "-o", first).code == 0
    assert cli("weights", first, "-o", exported).code == 0
    assert cli("build", "--weights", exported, "--calibration", calibration, "-o", again).code == 0
    assert again.read_bytes() == first.read_bytes()
    assert cli("verify", first, "--weights", exported).code == 0


def _mutated(mutate, **options) -> list:
    data, _ = _build(units=6, **options)
    model = read(data)
    mutate(model.subgraphs[-1] if options.get("recurrence") == "loop" else model.subgraphs[0])
    report = verify(write(model), runtime="litert")
    return [c for c in report.checks if not c.passed]


def test_int8_steps_catch_a_miswired_gate():
    """MUL(i, c) where the LSTM has MUL(f, c): every op is still right on its own (int8.ops passes); the step is
    not an LSTM (int8.steps)."""
    def mutate(graph):
        names = [t.name for t in graph.tensors]
        op = next(op for op in graph.operators if op.outputs and names[op.outputs[0]] == "lstm/fc3")
        op.inputs[0] = names.index("lstm/i3")

    failed = _mutated(mutate)
    assert [c.name for c in failed] == ["int8.steps"], [(c.name, c.detail) for c in failed]
    assert "LSTM layer 'lstm' step 3: 'lstm/fc3' off by" in failed[0].detail


def test_int8_ops_catch_a_lost_state():
    def mutate(graph):
        graph.operators = [op for op in graph.operators if op.code != BuiltinOperator.ASSIGN_VARIABLE]

    failed = {c.name: c.detail for c in _mutated(mutate)}
    assert "did not start from the state its last step left" in failed["int8.ops"]
    assert "step 0" in failed["int8.steps"]


def test_int8_formats_catch_a_format_the_kernel_does_not_write():
    def mutate(graph):
        target = next(t for t in graph.tensors if t.name == "lstm/tc2")
        target.quantization = Quantization((2.0 ** -14,), (0,))

    failed = {c.name: c.detail for c in _mutated(mutate)}
    assert "int8.formats" in failed and "lstm/tc2" in failed["int8.formats"]


@pytest.mark.parametrize("args, fragments", [
    (["--io", "int8"], ["int16 (16x8)", "--io float"]),
    (["--input-precision", "int8"], ["int16 (16x8)", "drop --input-precision int8"]),
    (["--cell-clip", "0.5"], ["cell_clip", "--lowering fused"]),
])
def test_cli_refuses_what_it_does_not_write(cli, tmp_path, args, fragments):
    result = cli("build", *PORTABLE_INT8, "--units", "4", "--input-size", "4", "--time-steps", "6",
                 "--calibration", _calibration(tmp_path / "c.npy"), *args, "-o", tmp_path / "x.tflite")
    assert_clean_error(result, *fragments)
    assert not (tmp_path / "x.tflite").exists()


def test_a_stack_with_another_kind_is_refused():
    from tflrnn.cells.gru import GRUCell
    from tflrnn.errors import ConfigError

    with pytest.raises(ConfigError, match="16x8"):
        tflrnn.build([GRUCell(4, name="g"), LSTMCell(4, name="l")], input_size=4, time_steps=3, lowering="portable",
                     quantize="full-int8", calibration=np.zeros((2, 1, 3, 4), np.float32))


def test_a_loop_is_its_unrolled_twin_bit_for_bit_on_litert_and_micro():
    """The loop's body runs the unrolled step's integer ops on the same integers (its GATHER, QUANTIZE, DEQUANTIZE
    and DYNAMIC_UPDATE_SLICE only move them): its outputs are the unrolled model's, bit for bit, over carried
    invokes."""
    unrolled, _ = _build(units=8, time_steps=6, recurrence="unrolled")
    looped, _ = _build(units=8, time_steps=6, recurrence="loop")
    assert len(looped) < len(unrolled)
    xs = [np.random.default_rng(20 + k).standard_normal((1, 6, 4)).astype(np.float32) for k in range(3)]
    for runtime_name in ("litert", "micro"):
        for a, b in zip(_run(runtime_name, unrolled, xs), _run(runtime_name, looped, xs)):
            np.testing.assert_array_equal(a, b)


def test_int8_loop_catches_a_miswired_gate_in_the_body():
    """MUL(i, c) where the LSTM has MUL(f, c), in the loop's body: the twin verify writes from the recovered network
    is right, so its checks pass; the loop's outputs are not the twin's (int8.loop)."""
    def mutate(body):
        names = [t.name for t in body.tensors]
        op = next(op for op in body.operators if op.outputs and names[op.outputs[0]] == "lstm/fc")
        op.inputs[0] = names.index("lstm/i")

    failed = _mutated(mutate, recurrence="loop")
    assert [c.name for c in failed] == ["int8.loop", "int8.loop"], [(c.name, c.detail) for c in failed]
    assert "off its unrolled twin's by up to" in failed[0].detail


def test_int8_loop_catches_a_lost_state():
    def mutate(graph):
        graph.operators = [op for op in graph.operators if op.code != BuiltinOperator.ASSIGN_VARIABLE]

    data, _ = _build(units=6, recurrence="loop")
    model = read(data)
    mutate(model.subgraphs[0])
    failed = {c.name for c in verify(write(model), runtime="litert").checks if not c.passed}
    assert failed == {"int8.loop"}, failed


def test_int8_loop_catches_a_reset_that_does_not_reset():
    """The `reset` signature's subgraph emptied: the state is not zeroed, so the invoke after the reset is not the
    first invoke again, as the twin's is."""
    data, _ = _build(units=6, recurrence="loop")
    model = read(data)
    reset = next(s.subgraph for s in model.signatures if s.key == "reset")
    model.subgraphs[reset].operators = []
    failed = {c.name for c in verify(write(model), runtime="litert").checks if not c.passed}
    assert failed == {"int8.loop"}, failed


def test_int8_formats_catch_a_state_format_the_loop_body_does_not_share():
    """The main graph's h and c around the WHILE at twice the body's scale: the loop passes their bytes on as they
    are, so the state output (io) would be read at the wrong scale."""
    data, _ = _build(units=4, recurrence="loop", state="io")
    model = read(data)
    for t in model.subgraphs[0].tensors:
        if t.name in ("lstm/h_start", "lstm/c_start", "lstm/h_end", "lstm/c_end"):
            t.quantization = Quantization((2 * t.quantization.scale[0],), (0,))
    failed = {c.name: c.detail for c in verify(write(model), runtime="litert").checks if not c.passed}
    assert "keep one format through its body" in failed.get("int8.formats", ""), failed


def test_a_degenerate_calibration_still_verifies_on_micro(cli, tmp_path):
    """Calibration data of zeros: every format at its minimum, values near full scale, where TFLite Micro's 16x8
    FULLY_CONNECTED requantizes with a 16-bit multiplier (a step more than LiteRT's exact rounding): within the
    bound int8_ops restates."""
    np.save(tmp_path / "zeros.npy", np.zeros((4, 1, 5, 4), np.float32))
    out = tmp_path / "z.tflite"
    assert cli("build", *PORTABLE_INT8, "--units", "4", "--input-size", "4", "--time-steps", "5", "--calibration",
               tmp_path / "zeros.npy", "-o", out).code == 0
    verified = cli("verify", out, "--runtime", "micro")
    assert verified.code == 0, verified.out


def test_a_loop_without_a_head_quantizes_only_its_input():
    """The loop's float output is the signature's output as it is: no QUANTIZE of the whole sequence left unused."""
    data, _ = _build(units=4, recurrence="loop")
    graph = read(data).subgraphs[0]
    quantized = [graph.tensors[op.outputs[0]].name for op in graph.operators if op.code == BuiltinOperator.QUANTIZE]
    assert quantized == ["lstm/input/int16"]
