"""LSTM, the third cell kind (cells/lstm.py), in the portable lowering (lowering/lstm.py): the float64 reference
against Keras and PyTorch (the oracles), every form in the real interpreters (LiteRT with and without XNNPACK, TFLite
Micro through verify), the state [h | c] given, returned and carried, the loopback read(write(n)) == n, and the
command line. The fused op's tests are in test_lstm_fused.py."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter, OpResolverType

import tflrnn
from support import assert_clean_error, needs_torch
from tflrnn import reference
from tflrnn.builder import model_of, network_of
from tflrnn.cells.lstm import LSTMCell, LSTMWeights, initial_weights
from tflrnn.lowering import recover
from tflrnn.model import BuiltinOperator
from tflrnn.network import Dense
from tflrnn.reader import read
from tflrnn.writer import write

PORTABLE = {"lowering": "portable"}


def _random(units: int, input_size: int, seed: int = 0) -> LSTMWeights:
    """Weights far from Keras' starting point, so every gate (and a gate order mix-up) shows."""
    rng = np.random.default_rng(seed)
    return LSTMWeights(*((rng.standard_normal(shape) * 0.5).astype(np.float32)
                         for shape in ((4 * units, input_size), (4 * units, units), (4 * units,))))


def _keras_lstm(units, input_size, steps, seed=0, batch=None, return_sequences=True):
    """A Keras LSTM with random weights (biases included): the model, the layer and its LSTMWeights."""
    keras = pytest.importorskip("keras")
    inputs = keras.Input((steps, input_size), batch_size=batch)
    layer = keras.layers.LSTM(units, return_sequences=return_sequences)
    model = keras.Model(inputs, layer(inputs))
    rng = np.random.default_rng(seed)
    layer.set_weights([(rng.standard_normal(w.shape) * 0.5).astype(np.float32) for w in layer.get_weights()])
    return model, layer, LSTMWeights.from_keras(*layer.get_weights())


# --- the reference, against the frameworks ---------------------------------------------------------------------

def test_reference_is_keras_lstm_with_its_states():
    keras = pytest.importorskip("keras")
    inputs = keras.Input((7, 3), batch_size=2)
    layer = keras.layers.LSTM(5, return_sequences=True, return_state=True)
    model = keras.Model(inputs, layer(inputs))
    rng = np.random.default_rng(1)
    layer.set_weights([(rng.standard_normal(w.shape) * 0.5).astype(np.float32) for w in layer.get_weights()])
    x = rng.standard_normal((2, 7, 3)).astype(np.float32)
    sequence, h, c = (np.asarray(a) for a in model(x))
    got, final = reference.run_lstm(x, LSTMWeights.from_keras(*layer.get_weights()))
    np.testing.assert_allclose(got, sequence, atol=2e-6)
    np.testing.assert_allclose(final, np.concatenate([h, c], axis=1), atol=2e-6)  # the state is [h | c]


@needs_torch
def test_reference_is_torch_lstm_from_a_given_state():
    import torch

    torch.manual_seed(0)
    lstm = torch.nn.LSTM(3, 4, batch_first=True)
    with torch.no_grad():
        for p in lstm.parameters():
            p.normal_(0, 0.5)
    state = {k: v.detach().numpy() for k, v in lstm.state_dict().items()}
    weights = LSTMWeights.from_torch(*(state[f"{k}_l0"] for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")))
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 6, 3)).astype(np.float32)
    h0, c0 = (rng.standard_normal((2, 4)).astype(np.float32) for _ in range(2))
    expected, (h_n, c_n) = lstm(torch.from_numpy(x), (torch.from_numpy(h0[None]), torch.from_numpy(c0[None])))
    got, final = reference.run_lstm(x, weights, initial_state=np.concatenate([h0, c0], axis=1))
    np.testing.assert_allclose(got, expected.detach().numpy(), atol=2e-6)
    np.testing.assert_allclose(final, np.concatenate([h_n[0].detach().numpy(), c_n[0].detach().numpy()], axis=1),
                               atol=2e-6)


def test_seeded_weights_open_the_forget_gate_as_keras_does():
    weights = initial_weights(3, 2, seed=0)
    np.testing.assert_array_equal(weights.bias, [0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0])  # unit_forget_bias=True


# --- the portable lowering, in the real interpreters ------------------------------------------------------------

def _signature_runner(data: bytes, xnnpack: bool):
    kind = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    return Interpreter(model_content=data, experimental_op_resolver_type=kind).get_signature_runner("serving_default")


@pytest.mark.parametrize("recurrence,time_major,bidirectional,xnnpack", [
    case for case in itertools.product(("unrolled", "loop"), (False, True), (False, True), (False, True))
    if not (case[1] and case[3])  # time-major: XNNPACK takes the same ops, checked batch-major
])
def test_every_form_computes_the_lstm(recurrence, time_major, bidirectional, xnnpack):
    """The caller's state [h | c] in, the final state out (--state io), from a random state: every step and both
    directions against the float64 reference."""
    units, inputs, steps, batch = 5, 3, 6, 2
    weights = [_random(units, inputs, seed) for seed in range(2 if bidirectional else 1)]
    network = network_of(LSTMCell(units), weights=weights, input_size=inputs, time_steps=steps, batch_size=batch,
                         time_major=time_major, bidirectional=bidirectional, recurrence=recurrence, state="io",
                         **PORTABLE)
    run = _signature_runner(write(model_of(network)), xnnpack)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((steps, batch, inputs) if time_major else (batch, steps, inputs)).astype(np.float32)
    states = [rng.standard_normal((batch, 2 * units)).astype(np.float32) for _ in weights]
    keys = ["state"] if len(states) == 1 else [f"state_{k}" for k in range(len(states))]
    got = run(input=x, **dict(zip(keys, states)))
    expected, finals = reference.run_network(network, x, states)
    np.testing.assert_allclose(got["output"], expected[0], atol=2e-6)
    for key, final in zip(keys, finals):
        np.testing.assert_allclose(got[key], final, atol=2e-6)


@pytest.mark.parametrize("recurrence", ["unrolled", "loop"])
def test_carried_state_is_keras_over_the_joined_sequence(recurrence):
    """Two invokes with h and c carried in the model equal Keras run once over both halves joined; after the
    `reset` signature, the first half again."""
    model, _, weights = _keras_lstm(6, 4, 10, seed=7, batch=1)
    x = np.random.default_rng(8).standard_normal((1, 10, 4)).astype(np.float32)
    expected = model.predict(x, verbose=0)
    data = tflrnn.build(LSTMCell(6), weights=weights, input_size=4, time_steps=5, recurrence=recurrence, **PORTABLE)
    interpreter = Interpreter(model_content=data)
    run = interpreter.get_signature_runner("serving_default")
    halves = [run(input=x[:, :5])["output"], run(input=x[:, 5:])["output"]]
    np.testing.assert_allclose(np.concatenate(halves, axis=1), expected, atol=3e-6)
    interpreter.get_signature_runner("reset")()
    np.testing.assert_allclose(run(input=x[:, :5])["output"], expected[:, :5], atol=3e-6)


def test_zero_state_last_step_and_dense_head_match_keras():
    keras = pytest.importorskip("keras")
    inputs = keras.Input((7, 3), batch_size=2)
    lstm = keras.layers.LSTM(5, return_sequences=False)
    dense = keras.layers.Dense(4, activation="softmax")
    model = keras.Model(inputs, dense(lstm(inputs)))
    rng = np.random.default_rng(9)
    for layer in (lstm, dense):
        layer.set_weights([(rng.standard_normal(w.shape) * 0.5).astype(np.float32) for w in layer.get_weights()])
    kernel, bias = dense.get_weights()
    head = [Dense("dense", np.ascontiguousarray(kernel.T), bias, "softmax")]
    data = tflrnn.build(LSTMCell(5), weights=LSTMWeights.from_keras(*lstm.get_weights()), input_size=3,
                        time_steps=7, batch_size=2, last_step=True, head=head, state="zero", **PORTABLE)
    x = rng.standard_normal((2, 7, 3)).astype(np.float32)
    run = _signature_runner(data, xnnpack=False)
    for _ in range(2):  # no state: the same each invoke
        np.testing.assert_allclose(run(input=x)["output"], model.predict(x, verbose=0), atol=2e-6)


@pytest.mark.parametrize("state", ["carry", "io"])
def test_last_step_of_a_kept_state_is_h_not_the_state(state):
    """The last step is h_T [B, U], though the final state a carried or returned LSTM keeps is [h | c] [B, 2U]."""
    weights = _random(4, 3)
    network = network_of(LSTMCell(4), weights=weights, input_size=3, time_steps=5, last_step=True, state=state,
                         **PORTABLE)
    run = _signature_runner(write(model_of(network)), xnnpack=False)
    x = np.random.default_rng(3).standard_normal((1, 5, 3)).astype(np.float32)
    got = run(input=x, **({"state": np.zeros((1, 8), np.float32)} if state == "io" else {}))
    sequence, final = reference.run_lstm(x, weights)
    np.testing.assert_allclose(got["output"], sequence[:, -1], atol=2e-6)
    if state == "io":
        np.testing.assert_allclose(got["state"], final, atol=2e-6)


def test_dynamic_time_runs_any_length():
    weights = _random(4, 3)
    network = network_of(LSTMCell(4), weights=weights, time_steps="dynamic", state="zero", **PORTABLE)
    assert network.loop
    interpreter = Interpreter(model_content=write(model_of(network)))
    for steps in (1, 9):
        x = np.random.default_rng(steps).standard_normal((1, steps, 3)).astype(np.float32)
        interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], x.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
        interpreter.invoke()
        got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
        np.testing.assert_allclose(got, reference.run_lstm(x, weights)[0], atol=2e-6)


def test_steps_group_the_sigmoid_gates_in_one_op_each():
    """One FULLY_CONNECTED, one ADD and one LOGISTIC for i, f and o together, split in three equal parts (what
    XNNPACK takes whole); no SLICE, STRIDED_SLICE or SPLIT_V, which cut a graph into many delegate partitions."""
    model = model_of(network_of(LSTMCell(4), weights=_random(4, 3), time_steps=3, state="zero", **PORTABLE))
    codes = [op.code for op in model.subgraphs[0].operators]
    assert codes.count(BuiltinOperator.LOGISTIC) == 3 and codes.count(BuiltinOperator.SPLIT) == 3
    assert codes.count(BuiltinOperator.FULLY_CONNECTED) == 2 + 2 * 3  # the projections, then R_ifo and R_g a step
    assert not {BuiltinOperator.SLICE, BuiltinOperator.STRIDED_SLICE} & set(codes)


@pytest.mark.parametrize("options", [
    {"recurrence": "unrolled"},
    {"recurrence": "loop", "time_major": True},
    {"time_steps": "dynamic", "bidirectional": True, "last_step": True},
    {"state": "io", "bidirectional": True, "merge": "none"},
    {"state": "zero", "layers": 2},
    {"recurrence": "loop", "state": "io", "last_step": True},
])
def test_read_gives_back_the_network(options):
    """recover(lower(n)) == n: every weight role (the gates' and the candidate's parts joined back in the order
    i, f, g, o), the form, the state."""
    options = dict(options)  # never mutate the shared parameter
    layers = options.pop("layers", 1)
    cells = [LSTMCell(4, name=f"l{k}") for k in range(layers)]
    options.setdefault("time_steps", 5)
    network = network_of(cells if layers > 1 else cells[0], input_size=3, seed=3, **PORTABLE, **options)
    assert all(layer.kind == "lstm" for layer in network.layers)
    assert recover(read(write(model_of(network)))) == network


def test_an_lstm_never_equals_another_kind_of_the_same_arrays():
    lstm = initial_weights(2, 3, seed=0)
    basic = tflrnn.CellWeights(lstm.input_weights[:2], lstm.recurrent_weights[:2, :2], lstm.bias[:2])
    assert not lstm.equals(basic) and not basic.equals(lstm)
    assert lstm.sha256() != basic.sha256()


# --- the command line --------------------------------------------------------------------------------------------

def test_cli_builds_and_verifies_a_portable_lstm_on_every_runtime(cli, tmp_path):
    out = tmp_path / "lstm.tflite"
    built = cli("build", "--cell", "lstm", "--lowering", "portable", "--units", "8", "--input-size", "4",
                "--time-steps", "6", "--json", "-o", out)
    assert built.code == 0, built.err
    summary = json.loads(built.out)
    assert summary["layers"][0]["cell"] == "lstm" and summary["layers"][0]["state_shape"] == [1, 16]
    verified = cli("verify", out, "--runtime", "all", "--json")
    assert verified.code == 0, verified.out + verified.err
    report = json.loads(verified.out)
    ran = {(c["name"], c["runtime"]) for c in report["checks"] if c["name"].startswith("numeric") and c["passed"]}
    assert {("numeric.state_carried", runtime) for runtime in ("litert", "litert+xnnpack", "compiled", "micro")} <= ran
    inspected = cli("inspect", out, "--json")
    assert json.loads(inspected.out)["network"]["layers"][0]["cell"] == "lstm"


def test_same_inputs_give_the_same_bytes():
    assert tflrnn.build(LSTMCell(6), input_size=3, time_steps=4, **PORTABLE) == tflrnn.build(
        LSTMCell(6), input_size=3, time_steps=4, **PORTABLE)


@pytest.mark.parametrize("args,fragments", [
    (["--lowering", "portable", "--quantize", "full-int8", "--calibration", "c.npy", "--time-steps", "dynamic"],
     ["full-int8", "fixed number of steps"]),
    (["--activation", "relu"], ["activation 'relu'", "tanh"]),
])
def test_cli_refuses_what_an_lstm_cannot_be(cli, tmp_path, args, fragments):
    np.save(tmp_path / "c.npy", np.zeros((2, 1, 1, 4), np.float32))
    out = tmp_path / "l.tflite"
    result = cli("build", "--cell", "lstm", "--units", "4", *[str(tmp_path / a) if a == "c.npy" else a for a in args],
                 "-o", out)
    assert_clean_error(result, *fragments)
    assert not out.exists()
