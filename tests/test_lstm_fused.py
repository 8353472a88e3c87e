"""The fused LSTM (lowering/fused.py): an LSTM layer as TFLite's UNIDIRECTIONAL_SEQUENCE_LSTM (a bidirectional one as
BIDIRECTIONAL_SEQUENCE_LSTM), h and c in variable tensors. Against Keras (the oracle: real keras.layers.LSTM with
random weights and biases) and the float64 reference, on LiteRT with and without XNNPACK and on TFLite Micro; the
state carried across invokes and zeroed by reset_all_variables(); the loopback recover(lower(n)) == n and
byte-identical rebuilds; verify passing on every runtime that runs the op and catching a broken model. Expectations
come from Keras and the reference, never from the writer. (The portable LSTM's tests are in test_lstm.py.)"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter, OpResolverType

import tflrnn
from support import assert_clean_error
from tflrnn import reference
from tflrnn.builder import model_of, network_of
from tflrnn.cell import CellWeights, RNNCell
from tflrnn.cells.lstm import LSTMCell, LSTMWeights, initial_weights
from tflrnn.errors import ConfigError, ModelFormatError
from tflrnn.lowering import recover
from tflrnn.lowering.fused import is_ours
from tflrnn.metadata import min_runtime_version
from tflrnn.model import Activation, BuiltinOperator
from tflrnn.network import Dense
from tflrnn.reader import read
from tflrnn.runners import micro_arena_bytes
from tflrnn.verification import verify
from tflrnn.writer import write

LSTM_OP = BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_LSTM


def _random(units: int, input_size: int, seed: int = 0) -> LSTMWeights:
    """Weights far from Keras' starting point, so every gate (and a gate order mix-up) shows."""
    rng = np.random.default_rng(seed)
    return LSTMWeights(*((rng.standard_normal(shape) * 0.5).astype(np.float32)
                         for shape in ((4 * units, input_size), (4 * units, units), (4 * units,))))


def _randomize(layer, rng) -> None:
    layer.set_weights([(rng.standard_normal(w.shape) * 0.5).astype(np.float32) for w in layer.get_weights()])


def _interpreter(data: bytes, xnnpack: bool) -> Interpreter:
    kind = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interpreter = Interpreter(model_content=data, experimental_op_resolver_type=kind)
    interpreter.allocate_tensors()
    return interpreter


def _invoke(interpreter: Interpreter, x: np.ndarray) -> np.ndarray:
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).copy()


def _codes(data: bytes) -> list[int]:
    return [op.code for op in read(data).subgraphs[0].operators]


# --- against Keras -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("time_major,batch,xnnpack", [(False, 1, False), (False, 2, True), (True, 2, False),
                                                      (True, 1, True)])
def test_fused_lstm_is_keras_with_its_state_carried(time_major, batch, xnnpack):
    """One UNIDIRECTIONAL_SEQUENCE_LSTM op: its output equals Keras' LSTM; two invokes with h and c carried by the
    model equal Keras over both halves joined; after reset_all_variables(), the first half again."""
    keras = pytest.importorskip("keras")
    units, size, steps = 6, 4, 5
    inputs = keras.Input((2 * steps, size), batch_size=batch)
    layer = keras.layers.LSTM(units, return_sequences=True)
    model = keras.Model(inputs, layer(inputs))
    _randomize(layer, np.random.default_rng(7))
    weights = LSTMWeights.from_keras(*layer.get_weights())
    assert np.all(weights.bias != 0)
    x = np.random.default_rng(8).standard_normal((batch, 2 * steps, size)).astype(np.float32)
    expected = np.asarray(model(x))  # [B, 2T, U]

    data = tflrnn.build(LSTMCell(units), weights=weights, input_size=size, time_steps=steps, batch_size=batch,
                        time_major=time_major)
    assert _codes(data) == [LSTM_OP]
    interpreter = _interpreter(data, xnnpack)
    layout = (lambda a: np.ascontiguousarray(np.swapaxes(a, 0, 1))) if time_major else (lambda a: a)
    halves = [layout(_invoke(interpreter, layout(x[:, t:t + steps]))) for t in (0, steps)]
    np.testing.assert_allclose(np.concatenate(halves, axis=1), expected, atol=3e-6)
    interpreter.reset_all_variables()
    np.testing.assert_allclose(layout(_invoke(interpreter, layout(x[:, :steps]))), expected[:, :steps], atol=3e-6)


def test_classifier_last_step_and_dense_head_match_keras():
    """Keras LSTM(return_sequences=False) -> Dense(relu) -> Dense(softmax): the LSTM op, the last step's
    STRIDED_SLICE and FULLY_CONNECTED layers, equal to model(x)."""
    keras = pytest.importorskip("keras")
    inputs = keras.Input((7, 3), batch_size=2)
    lstm = keras.layers.LSTM(5, return_sequences=False)
    hidden, out = keras.layers.Dense(6, activation="relu"), keras.layers.Dense(4, activation="softmax")
    model = keras.Model(inputs, out(hidden(lstm(inputs))))
    rng = np.random.default_rng(9)
    for layer in (lstm, hidden, out):
        _randomize(layer, rng)
    head = [Dense(name, np.ascontiguousarray(layer.get_weights()[0].T), layer.get_weights()[1], activation)
            for name, layer, activation in (("hidden", hidden, "relu"), ("out", out, "softmax"))]
    data = tflrnn.build(LSTMCell(5), weights=LSTMWeights.from_keras(*lstm.get_weights()), input_size=3,
                        time_steps=7, batch_size=2, last_step=True, head=head)
    assert _codes(data)[0] == LSTM_OP and BuiltinOperator.STRIDED_SLICE in _codes(data)
    x = rng.standard_normal((2, 7, 3)).astype(np.float32)
    for xnnpack in (False, True):
        np.testing.assert_allclose(_invoke(_interpreter(data, xnnpack), x), np.asarray(model(x)), atol=2e-6)


def test_stack_of_simple_rnn_and_lstms_is_keras():
    """A basic-RNN layer then two LSTM layers in one fused model, each its own op."""
    keras = pytest.importorskip("keras")
    inputs = keras.Input((6, 3), batch_size=2)
    layers = [keras.layers.SimpleRNN(4, return_sequences=True), keras.layers.LSTM(5, return_sequences=True),
              keras.layers.LSTM(3, return_sequences=True)]
    y = inputs
    for layer in layers:
        y = layer(y)
    model = keras.Model(inputs, y)
    rng = np.random.default_rng(10)
    for layer in layers:
        _randomize(layer, rng)
    weights = [CellWeights.from_keras(*layers[0].get_weights()),
               *(LSTMWeights.from_keras(*layer.get_weights()) for layer in layers[1:])]
    cells = [RNNCell(4, name="rnn"), LSTMCell(5, name="lstm_a"), LSTMCell(3, name="lstm_b")]
    data = tflrnn.build(cells, weights=weights, input_size=3, time_steps=6, batch_size=2)
    assert _codes(data) == [BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_RNN, LSTM_OP, LSTM_OP]
    x = rng.standard_normal((2, 6, 3)).astype(np.float32)
    np.testing.assert_allclose(_invoke(_interpreter(data, False), x), np.asarray(model(x)), atol=3e-6)


@pytest.mark.parametrize("time_major,batch,merge", [(False, 1, "concat"), (True, 2, "concat"), (False, 2, "none")])
def test_bidirectional_lstm_is_keras_bidirectional(time_major, batch, merge):
    """BIDIRECTIONAL_SEQUENCE_LSTM: merged [fw | bw] as Keras' Bidirectional(LSTM) concatenates them, or apart;
    its carried state as a stateful Keras Bidirectional carries both directions' (the backward one's from t=0)."""
    keras = pytest.importorskip("keras")
    steps = 6
    inputs = keras.Input((steps, 3), batch_size=batch)
    layer = keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True, stateful=True),
                                       merge_mode="concat" if merge == "concat" else None)
    model = keras.Model(inputs, layer(inputs))
    _randomize(layer, np.random.default_rng(11))
    arrays = layer.get_weights()
    weights = [LSTMWeights.from_keras(*arrays[:3]), LSTMWeights.from_keras(*arrays[3:])]
    data = tflrnn.build(LSTMCell(4), weights=weights, input_size=3, time_steps=steps, batch_size=batch,
                        bidirectional=True, time_major=time_major, merge=merge)
    assert _codes(data) == [BuiltinOperator.BIDIRECTIONAL_SEQUENCE_LSTM]
    xs = [np.random.default_rng(12 + k).standard_normal((batch, steps, 3)).astype(np.float32) for k in range(2)]
    expected = []
    for x in xs:
        found = model(x)
        expected.append(np.asarray(found) if merge == "concat" else np.concatenate([np.asarray(f) for f in found], -1))
    layout = (lambda a: np.ascontiguousarray(np.swapaxes(a, 0, 1))) if time_major else (lambda a: a)
    for xnnpack in (False, True):
        interpreter = _interpreter(data, xnnpack)
        for x, want in zip(xs, expected):
            interpreter.set_tensor(interpreter.get_input_details()[0]["index"], layout(x))
            interpreter.invoke()
            got = np.concatenate([layout(interpreter.get_tensor(d["index"]))
                                  for d in interpreter.get_output_details()], axis=-1)
            np.testing.assert_allclose(got, want, atol=3e-6)


def test_batch_major_merged_bidirectional_lstm_is_refused():
    """TFLite's kernel offsets a batch-major example's h by the merged output's width (lstm_eval.cc): every example
    after the first comes out wrong, so tflrnn does not write that model."""
    with pytest.raises(ConfigError, match="--time-major"):
        tflrnn.build(LSTMCell(4), input_size=3, time_steps=3, batch_size=2, bidirectional=True)


# --- against the reference, on LiteRT and TFLite Micro -----------------------------------------------------------

@pytest.mark.parametrize("runtime_name", ["litert", "micro"])
@pytest.mark.parametrize("time_major", [False, True])
def test_fused_lstm_is_the_reference_with_h_and_c_carried(runtime_name, time_major):
    """Three invokes against reference.run_lstm chained through its final [h | c], then a reset."""
    from tflrnn import runtime

    if runtime_name == "micro":
        pytest.importorskip("tflite_micro")
    weights = _random(5, 3, seed=1)
    data = tflrnn.build(LSTMCell(5), weights=weights, input_size=3, time_steps=4, batch_size=2,
                        time_major=time_major)
    shape = (4, 2, 3) if time_major else (2, 4, 3)
    xs = [np.random.default_rng(k).standard_normal(shape).astype(np.float32) for k in range(3)]
    graph = read(data).subgraphs[0]
    interpreter = runtime.load(runtime_name, data, graph.inputs[0], graph.outputs, isolate=False,
                               input_positions=[0], output_positions=[0], arena=micro_arena_bytes(read(data)))
    state = None
    for x in xs:
        expected, state = reference.run_lstm(x, weights, time_major=time_major, initial_state=state)
        np.testing.assert_allclose(interpreter.run(x)[0], expected, atol=2e-6)
    interpreter.reset()
    np.testing.assert_allclose(interpreter.run(xs[0])[0], reference.run_lstm(xs[0], weights, time_major=time_major)[0],
                               atol=2e-6)
    interpreter.close()


def test_dynamic_time_resizes():
    weights = _random(4, 3, seed=2)
    data = tflrnn.build(LSTMCell(4), weights=weights, input_size=3, time_steps="dynamic")
    signature = read(data).subgraphs[0].tensors[0].shape_signature
    assert tuple(signature) == (1, -1, 3)
    interpreter = _interpreter(data, False)
    for steps in (7, 2):
        interpreter.resize_tensor_input(0, [1, steps, 3])
        interpreter.allocate_tensors()
        x = np.random.default_rng(steps).standard_normal((1, steps, 3)).astype(np.float32)
        np.testing.assert_allclose(_invoke(interpreter, x), reference.run_lstm(x, weights)[0], atol=2e-6)


# --- what the file holds -----------------------------------------------------------------------------------------

def test_the_op_as_the_kernel_reads_it():
    """24 inputs, each gate's W, R and b in lstm_shared.h's slots (checked against the Keras gate order i, f, c, o),
    peepholes, projection and layer norm absent, h and c variables without data; the options as Keras computes."""
    weights = _random(3, 2, seed=3)
    model = read(tflrnn.build(LSTMCell(3, name="enc"), weights=weights, input_size=2, time_steps=4, batch_size=2))
    graph = model.subgraphs[0]
    op = graph.operators[0]
    assert (op.builtin_code, op.deprecated_builtin_code, op.version, len(op.inputs)) == (44, 44, 1, 24)
    absent = [9, 10, 11, 16, 17, 20, 21, 22, 23]
    assert [op.inputs[i] for i in absent] == [-1] * len(absent)
    tensors = graph.tensors
    units = 3
    for k, gate in enumerate(("input", "forget", "cell", "output")):  # Keras' and TFLite's gate order
        rows = slice(k * units, (k + 1) * units)
        for slot, name, array in ((1 + k, f"input_to_{gate}_weights", weights.input_weights),
                                  (5 + k, f"recurrent_to_{gate}_weights", weights.recurrent_weights),
                                  (12 + k, f"{gate}_gate_bias", weights.bias)):
            tensor = tensors[op.inputs[slot]]
            assert tensor.name == f"enc/{name}"
            np.testing.assert_array_equal(tensor.data, array[rows])
    for slot, name in ((18, "hidden_state"), (19, "cell_state")):
        state = tensors[op.inputs[slot]]
        assert (state.name, state.shape, state.is_variable, state.data) == (f"enc/{name}", (2, 3), True, None)
    options = op.options
    assert (options.activation, options.cell_clip, options.proj_clip, options.time_major,
            options.asymmetric_quantize_inputs, options.diagonal_recurrent_tensors) == (
        Activation.TANH, 0.0, 0.0, False, False, False)


@pytest.mark.parametrize("options,expected", [
    ({}, "1.13.1"),  # runtime_version.cc: {UNIDIRECTIONAL_SEQUENCE_LSTM, 1}
    ({"bidirectional": True}, "1.14.0"),  # {BIDIRECTIONAL_SEQUENCE_LSTM, 1}
    ({"head": [Dense("d", np.ones((2, 4), np.float32), np.zeros(2, np.float32))]}, "2.0.0"),  # FULLY_CONNECTED v5
])
def test_min_runtime_version(options, expected):
    model = read(tflrnn.build(LSTMCell(4), input_size=3, time_steps=2, **options))
    assert min_runtime_version(model) == expected
    assert model.metadata["min_runtime_version"].rstrip(b"\0").decode() == expected


NETWORKS = {
    "one": dict(time_steps=4),
    "time_major_batch": dict(time_steps=3, batch_size=2, time_major=True),
    "dynamic": dict(time_steps="dynamic"),
    "last_step_head": dict(time_steps=5, last_step=True,
                           head=[Dense("head", np.full((3, 4), 0.5, np.float32), np.ones(3, np.float32), "softmax")]),
    "mixed_stack": dict(cell=[RNNCell(4, name="a"), LSTMCell(4, name="b"), LSTMCell(4, name="c")], time_steps=3),
    "reused": dict(cell=[LSTMCell(4, name="s", reuse=True)] * 3, input_size=4, time_steps=3),
    "bidirectional": dict(time_steps=4, bidirectional=True),
    "bidirectional_stack_last": dict(cell=[LSTMCell(4, name="x"), LSTMCell(3, name="y")], time_steps=4,
                                     bidirectional=True, last_step=True),
    "bidirectional_apart": dict(time_steps=4, bidirectional=True, merge="none"),
}


@pytest.mark.parametrize("name", NETWORKS)
def test_loopback_and_byte_identical_rebuild(name):
    options = dict(NETWORKS[name])
    cell = options.pop("cell", LSTMCell(4))
    network = network_of(cell, **{"input_size": 3, **options})
    assert network.lowering == "fused"
    data = write(model_of(network))
    recovered = recover(read(data))
    assert recovered == network
    assert write(model_of(recovered)) == data
    assert tflrnn.build(cell, **{"input_size": 3, **options}) == data  # the same inputs, the same bytes


def test_weights_out_and_build_back_are_byte_identical(cli, tmp_path):
    model, weights, again = tmp_path / "m.tflite", tmp_path / "w.npz", tmp_path / "again.tflite"
    assert cli("build", "--cell", "lstm", "--units", "5", "--input-size", "3", "--time-steps", "4", "--layers", "2",
               "--last-step", "-o", model).code == 0
    assert cli("weights", model, "-o", weights).code == 0
    built = cli("build", "--weights", weights, "-o", again)
    assert built.code == 0, built.err
    assert again.read_bytes() == model.read_bytes()


def test_a_converters_lstm_is_not_taken_for_ours():
    """TensorFlow's converter also writes UNIDIRECTIONAL_SEQUENCE_LSTM, under its own tensor names: that model is
    another tool's (verify --against compares it with its Keras source), not a fused network tflrnn reads."""
    model = read(tflrnn.build(LSTMCell(3), input_size=2, time_steps=2))
    graph = model.subgraphs[0]
    assert is_ours(graph, graph.operators[0])
    for k, tensor in enumerate(graph.tensors):
        tensor.name = f"sequential/lstm/tensor_{k}"
    assert not is_ours(graph, graph.operators[0])


# --- the command line and verify ---------------------------------------------------------------------------------

def test_cli_defaults_to_the_fused_op_and_verifies_on_every_runtime_that_runs_it(cli, tmp_path):
    out = tmp_path / "lstm.tflite"
    built = cli("build", "--cell", "lstm", "--units", "6", "--input-size", "3", "--time-steps", "5", "-o", out)
    assert built.code == 0, built.err
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in built.out and "portable" not in built.out
    verified = cli("verify", out, "--runtime", "all", "--json")
    assert verified.code == 0, verified.out + verified.err
    report = json.loads(verified.out)
    passed = {(c["name"], c["runtime"]) for c in report["checks"] if c["passed"]}
    for runtime_name in ("litert", "litert+xnnpack", "tensorflow", "micro"):
        assert {(f"numeric.{k}", runtime_name) for k in ("first_invoke", "state_carried", "reset")} <= passed
    portable = cli("build", "--cell", "lstm", "--units", "6", "--lowering", "portable", "-o", tmp_path / "p.tflite")
    assert portable.code == 0 and "portable lowering" in portable.out


def test_compiled_model_api_says_it_does_not_run_it(tmp_path):
    """The CompiledModel API takes no variable tensor: verify says the runtime refused, as for the fused RNN op."""
    report = verify(tflrnn.build(LSTMCell(3), input_size=2, time_steps=2), runtime="compiled")
    assert not report.passed
    refused = [c for c in report.checks if c.name == "runtime"]
    assert refused and not refused[0].passed and "refused" in refused[0].detail


def test_verify_against_the_keras_source(cli, tmp_path):
    keras = pytest.importorskip("keras")
    inputs = keras.Input((6, 3), batch_size=1)
    layer = keras.layers.LSTM(5, return_sequences=True)
    model = keras.Model(inputs, layer(inputs))
    _randomize(layer, np.random.default_rng(13))
    model.save(tmp_path / "k.keras")
    out = tmp_path / "k.tflite"
    built = cli("build", "--weights", tmp_path / "k.keras", "-o", out)
    assert built.code == 0 and "UNIDIRECTIONAL_SEQUENCE_LSTM" in built.out, built.err
    verified = cli("verify", out, "--against", tmp_path / "k.keras", "--json")
    assert verified.code == 0, verified.out + verified.err
    assert any(c["name"] == "against.keras" and c["passed"] for c in json.loads(verified.out)["checks"])


def test_verify_against_a_dynamic_time_keras_source_on_every_runtime(cli, tmp_path):
    """LiteRT and tf.lite also run the resized lengths, TFLite Micro only the allocated one: each runtime's outputs
    are compared with the framework on that runtime's own inputs of the allocated length."""
    keras = pytest.importorskip("keras")
    inputs = keras.Input((None, 3), batch_size=1)
    layer = keras.layers.LSTM(5, return_sequences=True)
    model = keras.Model(inputs, layer(inputs))
    _randomize(layer, np.random.default_rng(14))
    model.save(tmp_path / "d.keras")
    out = tmp_path / "d.tflite"
    assert cli("build", "--weights", tmp_path / "d.keras", "--time-steps", "dynamic", "-o", out).code == 0
    verified = cli("verify", out, "--runtime", "all", "--against", tmp_path / "d.keras", "--json")
    assert verified.code == 0, verified.out + verified.err
    against = {c["runtime"] for c in json.loads(verified.out)["checks"] if c["name"] == "against.keras" and c["passed"]}
    assert {"litert", "micro"} <= against


def test_verify_takes_one_lstms_weights_object():
    weights = _random(4, 3, seed=5)
    data = tflrnn.build(LSTMCell(4), weights=weights, input_size=3, time_steps=4)
    report = verify(data, weights=weights)
    assert report.passed and any(c.name == "weights.match" and c.passed for c in report.checks)


def test_sizes_count_an_lstms_four_gates(cli, tmp_path):
    """12,000 units of a basic cell fit in a flatbuffer; an LSTM's four gates do not: refused before allocating."""
    out = tmp_path / "big.tflite"
    result = cli("build", "--cell", "lstm", "--units", "12000", "--input-size", "12000", "-o", out)
    assert_clean_error(result, "GiB of weights", "2 GiB")
    assert not out.exists()


def test_torch_biases_of_another_shape_are_refused():
    w, r = np.zeros((8, 3), np.float32), np.zeros((8, 2), np.float32)
    with pytest.raises(tflrnn.WeightsError, match="bias_hh"):
        LSTMWeights.from_torch(w, r, np.zeros(8, np.float32), np.zeros(1, np.float32))


def _broken(change) -> bytes:
    """A fused LSTM model with one thing changed in its description (two layers: the change goes to the second)."""
    model = read(tflrnn.build([LSTMCell(4, name="a"), LSTMCell(4, name="b")], input_size=3, time_steps=4))
    change(model.subgraphs[0], model.subgraphs[0].operators[1])
    return write(model)


def _swap_slots(graph, op, first=1, second=2):
    op.inputs[first], op.inputs[second] = op.inputs[second], op.inputs[first]


def _swap_data(graph, op):
    a, b = (graph.tensors[op.inputs[i]] for i in (2, 3))
    a.data, b.data = b.data, a.data


@pytest.mark.parametrize("change,failing", [
    (lambda g, op: setattr(op.options, "cell_clip", 3.0), {"metadata.tflrnn"}),  # a clip the record does not hold
    (lambda g, op: setattr(op.options, "cell_clip", -1.0), {"op.options[1]"}),
    (lambda g, op: setattr(op.options, "proj_clip", 1.0), {"op.options[1]"}),
    (lambda g, op: setattr(op.options, "activation", Activation.RELU), {"op.options[1]"}),
    (lambda g, op: setattr(op, "options", None), {"op.options[1]"}),
    (lambda g, op: setattr(op, "version", 2), {"op.version[1]", "metadata.min_runtime_version"}),
    (_swap_slots, {"tensors.names[1]", "metadata.tflrnn"}),  # input and forget gates' W in each other's slot
    (lambda g, op: _swap_slots(g, op, 13, 14), {"tensors.names[1]", "metadata.tflrnn"}),  # forget / cell biases
    (_swap_data, {"metadata.tflrnn"}),  # the forget and cell gates' W exchanged under their own names
    (lambda g, op: setattr(g.tensors[op.inputs[19]], "is_variable", False), {"state.variable[1]"}),
    (lambda g, op: op.inputs.__setitem__(9, op.inputs[12]), {"tensors.shapes[1]"}),  # a "peephole" present
    (lambda g, op: _swap_slots(g, op, 18, 19), {"tensors.names[1]"}),  # c in h's slot: an app reads h by name
])
def test_verify_catches_a_broken_fused_lstm(change, failing):
    report = verify(_broken(change), runtime="litert")
    failed = {c.name for c in report.checks if not c.passed}
    assert not report.passed and failing <= failed, failed


def test_a_clip_written_after_the_fact_fails_verify_and_the_runtime_applies_it():
    """Why the record holds the clip: LiteRT clips c as its options say, without a word, so a model whose clip was
    set after tflrnn wrote it computes another LSTM than the recorded one (Keras and PyTorch never clip)."""
    weights = _random(4, 3, seed=4)
    model = read(tflrnn.build(LSTMCell(4), weights=weights, input_size=3, time_steps=6))
    model.subgraphs[0].operators[0].options.cell_clip = 0.05  # small enough to clip at every step
    data = write(model)
    failed = {c.name for c in verify(data, runtime="litert").checks if not c.passed}
    assert "metadata.tflrnn" in failed
    x = np.random.default_rng(1).standard_normal((1, 6, 3)).astype(np.float32)
    got = _invoke(_interpreter(data, False), x)
    assert np.max(np.abs(got - reference.run_lstm(x, weights)[0])) > 1e-2
    np.testing.assert_allclose(got, reference.run_lstm(x, weights, cell_clip=np.float32(0.05))[0], atol=1e-6)


def test_refusals(cli, tmp_path):
    out = tmp_path / "l.tflite"
    assert_clean_error(cli("build", "--cell", "lstm", "--units", "4", "--quantize", "int8", "--lowering", "portable",
                           "-o", out), "int8")
    assert_clean_error(cli("build", "--cell", "lstm", "--units", "4", "--state", "zero", "-o", out),
                       "state 'zero' needs the portable lowering")
    assert not out.exists()


def test_recover_refuses_an_lstm_tflrnn_does_not_write():
    model = read(tflrnn.build(LSTMCell(3), input_size=2, time_steps=2))
    model.subgraphs[0].operators[0].options = replace(model.subgraphs[0].operators[0].options, proj_clip=1.0)
    with pytest.raises(ModelFormatError, match="proj_clip"):
        recover(model)


# --- hybrid int8 (versions 2 and 3): int8 W and R one scale per gate, float x, h, c -------------------------------

@pytest.mark.parametrize("asymmetric", [False, True])
def test_hybrid_lstm_is_the_reference_within_its_input_quantization(asymmetric):
    """Keras' LSTM on the dequantized weights, each step within what the kernel's per-row int8 quantization of x_t
    and h_{t-1} can move it (reference.input_quantization_error's step, per gate), run from the op's own h."""
    keras = pytest.importorskip("keras")
    weights = _random(6, 4, seed=3)
    data = tflrnn.build(LSTMCell(6), weights=weights, input_size=4, time_steps=8, quantize="int8",
                        asymmetric_inputs=asymmetric)
    model = read(data)
    op = next(op for op in model.subgraphs[0].operators if op.code == LSTM_OP)
    tensors = model.subgraphs[0].tensors
    assert op.version == (3 if asymmetric else 2)
    assert [tensors[i].dtype for i in op.inputs[1:9]] == ["int8"] * 8
    assert [tensors[i].dtype for i in op.inputs[12:16]] == ["float32"] * 4
    assert all(len(tensors[i].quantization.scale) == 1 for i in op.inputs[1:9])
    stored = recover(model).layers[0].weights  # the dequantized weights the kernel computes with
    layer = keras.layers.LSTM(6, return_sequences=True)
    layer.build((1, 8, 4))
    layer.set_weights([stored.input_weights.T, stored.recurrent_weights.T, stored.bias])
    x = np.random.default_rng(4).standard_normal((1, 8, 4)).astype(np.float32)
    got = _invoke(_interpreter(data, False), x)
    error = np.max(np.abs(got - np.asarray(layer(x))))
    assert 1e-5 < error < 0.05  # quantized on the fly (not float), and close
    report = verify(data, runtime="all")
    assert report.passed, [(c.name, c.detail) for c in report.checks if not c.passed]
    assert "micro" not in {r["name"] for r in report.runtimes}  # TFLite Micro has no hybrid LSTM kernel


@pytest.mark.parametrize("options", [{"layers": 2, "last_step": True}, {"bidirectional": True}])
def test_hybrid_lstm_stacks_and_bidirectional_verify(options):
    cells = [LSTMCell(5, name=f"l{k}") for k in range(options.pop("layers", 1))]
    data = tflrnn.build(cells if len(cells) > 1 else cells[0], input_size=3, time_steps=6, quantize="int8",
                        **options)
    report = verify(data, runtime="all")
    assert report.passed, [(c.name, c.detail) for c in report.checks if not c.passed]
    network = recover(read(data))
    assert all(layer.int8 is not None for layer in network.layers)
    assert recover(model_of(network)) == network


def test_hybrid_lstm_verify_catches_a_lost_state():
    """Judged from the variables a state-losing runtime would not have used: each invoke after the first is far off.
    (Simulated by telling the check the op began from zeros each time: the runtime did carry.)"""
    from tflrnn.verification import numeric

    data = tflrnn.build(LSTMCell(6), weights=_random(6, 4, seed=3), input_size=4, time_steps=8, quantize="int8")
    check = numeric._hybrid_lstm_comparison
    try:
        numeric._hybrid_lstm_comparison = lambda x, y, c, w, start, *a, **k: check(x, y, c, w, np.zeros_like(start),
                                                                                   *a, **k)
        failed = {c.kind for c in verify(data, runtime="litert").checks if not c.passed}
    finally:
        numeric._hybrid_lstm_comparison = check
    assert "numeric.state_carried" in failed


def test_hybrid_lstm_weights_match_and_against_refused(cli, tmp_path):
    weights = _random(6, 4, seed=3)
    np.savez(tmp_path / "w.npz", input_weights=weights.input_weights, recurrent_weights=weights.recurrent_weights,
             bias=weights.bias)
    out = tmp_path / "h.tflite"
    assert cli("build", "--weights", tmp_path / "w.npz", "--time-steps", "5", "--quantize", "int8", "-o", out).code == 0
    report = verify(out.read_bytes(), weights=str(tmp_path / "w.npz"))
    assert report.passed and {"weights.match", "numeric.float_weights"} <= {c.kind for c in report.checks}
    other = _random(6, 4, seed=9)
    assert not verify(out.read_bytes(), weights=other).passed
    assert_clean_error(cli("verify", out, "--against", tmp_path / "w.npz"), "--against a hybrid (int8) LSTM")


@pytest.mark.parametrize("asymmetric", [False, True])
def test_hybrid_lstm_check_restates_the_kernels_quantization(asymmetric):
    """The hybrid kernel quantizes x_t and h_{t-1} per batch row every step; verify quantizes them the same way, so
    LiteRT's outputs are its step to float32's rounding, and a gate's W 5 % off or R 30 % off (what a kernel reading
    them otherwise would compute) are judged wrong."""
    from tflrnn.verification import numeric

    rng = np.random.default_rng(7)
    weights = LSTMWeights(*((rng.standard_normal(shape) / 6).astype(np.float32)
                            for shape in ((256, 32), (256, 64), (256,))))
    data = tflrnn.build(LSTMCell(64), weights=weights, input_size=32, time_steps=12, batch_size=2, quantize="int8",
                        asymmetric_inputs=asymmetric)
    stored = recover(read(data)).layers[0].weights
    x = rng.standard_normal((2, 12, 32)).astype(np.float32)
    y = _invoke(_interpreter(data, False), x)
    start = np.zeros((2, 128))
    assert numeric._hybrid_lstm_comparison(x, y, None, stored, start, False, asymmetric, 1e-5, 1e-5).ok
    roles = dict(stored.roles())
    for role, factor in (("input_weights", 1.05), ("recurrent_weights", 1.3)):  # (h is small, R's terms too)
        off = roles[role].copy()
        off[64:128] *= factor  # the forget gate's
        judged = numeric._hybrid_lstm_comparison(x, y, None, LSTMWeights(**{**roles, role: off}), start, False,
                                                 asymmetric, 1e-5, 1e-5)
        assert not judged.ok, role


def test_the_float_step_check_sees_a_gate_a_little_off():
    """verify judges each step of a float LSTM op from the op's own h (rounding never feeds through R), so its
    allowance stays near float32's: a runtime computing one output-gate bias 7e-4 off, or one candidate bias 2e-4
    off, fails, which a free run's allowance (grown to 2.3e-3 by step 50) let pass (measured); the exact weights
    pass."""
    from tflrnn.verification.numeric import _lstm_comparison

    weights = initial_weights(64, 32, 0)
    x = np.random.default_rng(0).standard_normal((1, 50, 32)).astype(np.float32)
    start = np.zeros((1, 128))

    def output(bias):
        data = tflrnn.build(LSTMCell(64), weights=LSTMWeights(weights.input_weights, weights.recurrent_weights,
                                                              bias), input_size=32, time_steps=50)
        return _invoke(_interpreter(data, False), x)

    assert _lstm_comparison(x, output(weights.bias), weights, start, False, 1e-5, 1e-5).ok
    for gate, delta in ((3, 7e-4), (2, 2e-4)):  # one unit's output gate, its candidate
        off = weights.bias.copy()
        off[gate * 64 + 6] += delta
        assert not _lstm_comparison(x, output(off), weights, start, False, 1e-5, 1e-5).ok
