"""GRU, the second cell kind (cells/gru.py, lowering/gru.py): the float64 reference against Keras and PyTorch (the
oracles), the portable lowering against the frameworks in the real interpreters (LiteRT with and without XNNPACK,
TFLite Micro), every state mode and form, the loopback read(write(n)) == n, and the command line's refusals."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter, OpResolverType

import tflrnn
from support import assert_clean_error, needs_torch
from tflrnn import reference
from tflrnn.builder import model_of, network_of
from tflrnn.cells.gru import GRUCell, GRUWeights, initial_weights
from tflrnn.errors import ConfigError
from tflrnn.lowering import recover
from tflrnn.network import Dense
from tflrnn.reader import read
from tflrnn.writer import write


def _random(units: int, input_size: int, reset_after: bool, seed: int = 0) -> GRUWeights:
    """Weights far from the zero biases Keras starts from, so every role (and a gate order mix-up) shows."""
    rng = np.random.default_rng(seed)

    def r(*shape):
        return (rng.standard_normal(shape) * 0.5).astype(np.float32)

    return GRUWeights(r(3 * units, input_size), r(3 * units, units), r(3 * units),
                      r(3 * units) if reset_after else None)


def _keras_gru(units, input_size, steps, reset_after, seed=0, batch=None, stateful=False):
    """A Keras GRU with random weights (biases included): the model and its GRUWeights."""
    keras = pytest.importorskip("keras")
    inputs = keras.Input((steps, input_size), batch_size=batch)
    layer = keras.layers.GRU(units, return_sequences=True, reset_after=reset_after, stateful=stateful)
    model = keras.Model(inputs, layer(inputs))
    rng = np.random.default_rng(seed)
    layer.set_weights([(rng.standard_normal(w.shape) * 0.5).astype(np.float32) for w in layer.get_weights()])
    kernel, recurrent, bias = layer.get_weights()
    return model, layer, GRUWeights.from_keras(kernel, recurrent, bias, reset_after)


# --- the reference, against the frameworks ---------------------------------------------------------------------

@pytest.mark.parametrize("reset_after", [True, False])
def test_reference_is_keras_gru(reset_after):
    model, _, weights = _keras_gru(5, 3, 7, reset_after)
    x = np.random.default_rng(1).standard_normal((2, 7, 3)).astype(np.float32)
    expected = model.predict(x, verbose=0)
    got, final = reference.run_gru(x, weights)
    np.testing.assert_allclose(got, expected, atol=2e-6)
    np.testing.assert_array_equal(final, got[:, -1])


@needs_torch
def test_reference_is_torch_gru():
    import torch

    torch.manual_seed(0)
    gru = torch.nn.GRU(3, 4, batch_first=True)
    with torch.no_grad():
        for p in gru.parameters():
            p.normal_(0, 0.5)
    state = {k: v.detach().numpy() for k, v in gru.state_dict().items()}
    weights = GRUWeights.from_torch(state["weight_ih_l0"], state["weight_hh_l0"], state["bias_ih_l0"],
                                    state["bias_hh_l0"])
    x = np.random.default_rng(2).standard_normal((2, 6, 3)).astype(np.float32)
    h0 = np.random.default_rng(3).standard_normal((2, 4)).astype(np.float32)
    expected, h_n = gru(torch.from_numpy(x), torch.from_numpy(h0[None]))
    got, final = reference.run_gru(x, weights, initial_state=h0)
    np.testing.assert_allclose(got, expected.detach().numpy(), atol=2e-6)
    np.testing.assert_allclose(final, h_n.detach().numpy()[0], atol=2e-6)


def test_reference_time_major_is_the_transpose():
    weights = _random(4, 3, True)
    x = np.random.default_rng(4).standard_normal((2, 5, 3))
    batch_major, _ = reference.run_gru(x, weights)
    time_major, _ = reference.run_gru(np.swapaxes(x, 0, 1), weights, time_major=True)
    np.testing.assert_array_equal(np.swapaxes(time_major, 0, 1), batch_major)


# --- the portable lowering, in the real interpreters ------------------------------------------------------------

def _signature_runner(data: bytes, xnnpack: bool):
    kind = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    return Interpreter(model_content=data, experimental_op_resolver_type=kind).get_signature_runner("serving_default")


@pytest.mark.parametrize("reset_after,recurrence,time_major,bidirectional,xnnpack", [
    case for case in itertools.product((True, False), ("unrolled", "loop"), (False, True), (False, True),
                                       (False, True))
    if not (case[2] and case[4])  # time-major: XNNPACK takes the same ops, checked batch-major
])
def test_every_form_computes_the_gru(reset_after, recurrence, time_major, bidirectional, xnnpack):
    """The caller's state in, the final state out (--state io), from a random state: every step and both directions
    against the float64 reference."""
    units, inputs, steps, batch = 5, 3, 6, 2
    weights = [_random(units, inputs, reset_after, seed) for seed in range(2 if bidirectional else 1)]
    network = network_of(GRUCell(units, reset_after=reset_after), weights=weights, input_size=inputs,
                         time_steps=steps, batch_size=batch, time_major=time_major, bidirectional=bidirectional,
                         recurrence=recurrence, state="io")
    run = _signature_runner(write(model_of(network)), xnnpack)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((steps, batch, inputs) if time_major else (batch, steps, inputs)).astype(np.float32)
    states = [rng.standard_normal((batch, units)).astype(np.float32) for _ in weights]
    keys = ["state"] if len(states) == 1 else [f"state_{k}" for k in range(len(states))]
    got = run(input=x, **dict(zip(keys, states)))
    expected, finals = reference.run_network(network, x, states)
    np.testing.assert_allclose(got["output"], expected[0], atol=2e-6)
    for key, final in zip(keys, finals):
        np.testing.assert_allclose(got[key], final, atol=2e-6)


@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("recurrence", ["unrolled", "loop"])
def test_carried_state_is_keras_over_the_joined_sequence(reset_after, recurrence):
    """Two invokes with the state carried in the model equal Keras run once over both halves joined."""
    model, _, weights = _keras_gru(6, 4, 10, reset_after, seed=7, batch=1)
    x = np.random.default_rng(8).standard_normal((1, 10, 4)).astype(np.float32)
    expected = model.predict(x, verbose=0)
    data = tflrnn.build(GRUCell(6), weights=weights, input_size=4, time_steps=5, recurrence=recurrence)
    run = _signature_runner(data, xnnpack=True)
    halves = [run(input=x[:, :5])["output"], run(input=x[:, 5:])["output"]]
    np.testing.assert_allclose(np.concatenate(halves, axis=1), expected, atol=3e-6)


def test_zero_state_last_step_and_dense_head_match_keras():
    keras = pytest.importorskip("keras")
    inputs = keras.Input((7, 3), batch_size=2)
    gru = keras.layers.GRU(5, return_sequences=False)
    dense = keras.layers.Dense(4, activation="softmax")
    model = keras.Model(inputs, dense(gru(inputs)))
    rng = np.random.default_rng(9)
    for layer in (gru, dense):
        layer.set_weights([(rng.standard_normal(w.shape) * 0.5).astype(np.float32) for w in layer.get_weights()])
    kernel, bias = dense.get_weights()
    head = [Dense("dense", np.ascontiguousarray(kernel.T), bias, "softmax")]
    data = tflrnn.build(GRUCell(5), weights=GRUWeights.from_keras(*gru.get_weights()), input_size=3, time_steps=7,
                        batch_size=2, last_step=True, head=head, state="zero")
    x = rng.standard_normal((2, 7, 3)).astype(np.float32)
    run = _signature_runner(data, xnnpack=False)
    for _ in range(2):  # no state: the same each invoke
        np.testing.assert_allclose(run(input=x)["output"], model.predict(x, verbose=0), atol=2e-6)


def test_dynamic_time_runs_any_length():
    weights = _random(4, 3, True)
    network = network_of(GRUCell(4), weights=weights, time_steps="dynamic", bidirectional=False, state="zero")
    assert network.loop
    interpreter = Interpreter(model_content=write(model_of(network)))
    for steps in (1, 9):
        x = np.random.default_rng(steps).standard_normal((1, steps, 3)).astype(np.float32)
        interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], x.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
        interpreter.invoke()
        got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
        np.testing.assert_allclose(got, reference.run_gru(x, weights)[0], atol=2e-6)


@pytest.mark.parametrize("time_steps", [6, "dynamic"])
def test_loop_body_gathers_its_step(time_steps):
    """A SLICE at a run-time begin has a dynamic output, and a body holding one runs TFLite's slow WHILE path (its
    ops re-prepared and the loop's values deep-copied every iteration): the step is a GATHER, shapes all static."""
    from tflrnn.model import BuiltinOperator

    model = model_of(network_of(GRUCell(4), weights=_random(4, 3, True), time_steps=time_steps, recurrence="loop"))
    body = next(g for g in model.subgraphs if g.name.endswith("/body"))
    codes = [op.code for op in body.operators]
    assert codes.count(BuiltinOperator.GATHER) == 2 and BuiltinOperator.SLICE not in codes
    assert all(-1 not in t.shape for t in body.tensors if t.shape_signature is None)


@pytest.mark.parametrize("options", [
    {"recurrence": "unrolled"},
    {"recurrence": "loop", "time_major": True},
    {"time_steps": "dynamic", "bidirectional": True, "last_step": True},
    {"state": "io", "bidirectional": True, "merge": "none"},
    {"state": "zero", "layers": 2},
    {"reset_after": False, "recurrence": "loop", "state": "io"},
])
def test_read_gives_back_the_network(options):
    """recover(lower(n)) == n: every weight role (gate-group and candidate parts joined back), the variant, the
    form, the state."""
    options = dict(options)  # never mutate the shared parameter
    reset_after = options.pop("reset_after", True)
    layers = options.pop("layers", 1)
    cells = [GRUCell(4, reset_after=reset_after, name=f"g{k}") for k in range(layers)]
    options.setdefault("time_steps", 5)
    network = network_of(cells if layers > 1 else cells[0], input_size=3, seed=3, **options)
    assert all(layer.kind == "gru" for layer in network.layers)
    assert recover(read(write(model_of(network)))) == network


def test_a_gru_never_equals_a_basic_cell_of_the_same_arrays():
    gru = initial_weights(2, 3, seed=0)
    basic = tflrnn.CellWeights(gru.input_weights[:2], gru.recurrent_weights[:2, :2], gru.bias[:2])
    assert not gru.equals(basic) and not basic.equals(gru)
    assert gru.sha256() != basic.sha256()


# --- the command line --------------------------------------------------------------------------------------------

def test_cli_builds_and_verifies_a_gru_on_every_runtime(cli, tmp_path):
    out = tmp_path / "gru.tflite"
    built = cli("build", "--cell", "gru", "--units", "8", "--input-size", "4", "--time-steps", "6", "-o", out)
    assert built.code == 0, built.err
    assert "GRU" in built.out and "portable lowering" in built.out
    verified = cli("verify", out, "--runtime", "all", "--json")
    assert verified.code == 0, verified.out + verified.err
    import json

    report = json.loads(verified.out)
    ran = {(c["name"], c["runtime"]) for c in report["checks"] if c["name"].startswith("numeric") and c["passed"]}
    assert {("numeric.state_carried", runtime) for runtime in ("litert", "litert+xnnpack", "compiled", "micro")} <= ran
    inspected = cli("inspect", out, "--json")
    assert json.loads(inspected.out)["network"]["layers"][0]["cell"] == "gru"


def test_same_inputs_give_the_same_bytes():
    assert tflrnn.build(GRUCell(6), input_size=3, time_steps=4) == tflrnn.build(GRUCell(6), input_size=3,
                                                                                  time_steps=4)


@pytest.mark.parametrize("args,fragments", [
    (["--lowering", "fused"], ["no builtin GRU op", "--lowering portable"]),
    (["--quantize", "int8"], ["hybrid", "GRU", "full-int8"]),
    (["--activation", "relu"], ["activation 'relu'", "tanh"]),
])
def test_cli_refuses_what_a_gru_cannot_be(cli, tmp_path, args, fragments):
    out = tmp_path / "g.tflite"
    result = cli("build", "--cell", "gru", "--units", "4", *args, "-o", out)
    assert_clean_error(result, *fragments)
    assert not out.exists()


def test_weights_of_another_kind_are_refused():
    with pytest.raises(ConfigError, match="GRU"):
        network_of(GRUCell(4), weights=tflrnn.CellWeights(np.ones((4, 3)), np.eye(4), np.zeros(4)))


@pytest.mark.parametrize("args", [
    ["--units", "6", "--input-size", "3", "--time-steps", "4"],
    ["--units", "5", "--input-size", "3", "--time-steps", "dynamic", "--bidirectional", "--layers", "2",
     "--last-step", "--state", "io"],
    ["--units", "4", "--time-steps", "5", "--recurrence", "loop", "--state", "zero"],
])
@pytest.mark.parametrize("names", ["tflite", "keras"])
def test_exported_weights_rebuild_the_same_bytes(cli, tmp_path, args, names):
    """`tflrnn weights` writes a GRU's roles (or Keras' names) and how the layers connect; `build --weights` of that
    file gives the model back byte for byte."""
    model, npz, again = tmp_path / "a.tflite", tmp_path / "a.npz", tmp_path / "b.tflite"
    assert cli("build", "--cell", "gru", *args, "-o", model).code == 0
    exported = cli("weights", model, "-o", npz, "--format", names, "--json")
    assert exported.code == 0, exported.err
    import json

    arrays = json.loads(exported.out)["arrays"]
    role = "recurrent_bias" if names == "tflite" else "recurrent_kernel"
    assert any(name.endswith(role) for name in arrays), arrays
    assert cli("build", "--weights", npz, "-o", again).code == 0
    assert again.read_bytes() == model.read_bytes()


# --- full int8 -----------------------------------------------------------------------------------------------------

def _calibration(path, steps=6, inputs=4, batch=1, n=24, seed=11):
    np.save(path, np.random.default_rng(seed).standard_normal((n, batch, steps, inputs)).astype(np.float32))
    return path


@pytest.mark.parametrize("args", [
    [],
    ["--reset-before"],
    ["--state", "io", "--io", "int8"],
    ["--state", "zero", "--bidirectional", "--layers", "2", "--last-step"],
])
def test_full_int8_gru_passes_every_runtime(cli, tmp_path, args):
    """Every op within its quantization steps on LiteRT, tf.lite and TFLite Micro (int8.ops), every step a GRU of
    its own previous h, and the outputs-only runtimes against LiteRT's builtin kernels."""
    import json

    reset_before = "--reset-before" in args
    args = [a for a in args if a != "--reset-before"]
    out = tmp_path / "g.tflite"
    weights = []
    if reset_before:  # a Keras GRU with reset_after=False, through an .npz of its roles
        _, _, found = _keras_gru(5, 4, 6, reset_after=False, seed=2)
        np.savez(tmp_path / "w.npz", **found.roles())
        weights = ["--weights", tmp_path / "w.npz"]
    built = cli("build", "--cell", "gru", "--units", "5", "--input-size", "4", "--time-steps", "6", *weights,
                "--quantize", "full-int8", "--calibration", _calibration(tmp_path / "c.npy"), *args, "-o", out,
                "--json")
    assert built.code == 0, built.err
    assert json.loads(built.out)["int8"]["calibration"]["max_error"] < 0.1
    verified = cli("verify", out, "--runtime", "all", "--json")
    assert verified.code == 0, verified.out + verified.err
    report = json.loads(verified.out)
    ran = {(c["name"], c["runtime"]) for c in report["checks"] if c["passed"]}
    assert {("int8.steps", "litert"), ("int8.ops", "litert"), ("int8.steps", "micro"), ("int8.ops", "micro"),
            ("int8.outputs", "compiled")} <= ran


def _int8_model(tmp_path, cli, *args):
    out = tmp_path / "g.tflite"
    assert cli("build", "--cell", "gru", "--units", "5", "--input-size", "4", "--time-steps", "6", "--quantize",
               "full-int8", "--calibration", _calibration(tmp_path / "c.npy"), *args, "-o", out).code == 0
    return read(out.read_bytes())


def _verify_mutated(model, runtime="litert"):
    from tflrnn.verification import verify

    return verify(write(model), runtime=runtime)


def test_int8_steps_catch_a_miswired_reset_gate(cli, tmp_path):
    """MUL(z, R_n h) where the GRU has MUL(r, R_n h): every op is still right on its own (int8.ops passes), the
    step is not a GRU (int8.steps)."""
    model = _int8_model(tmp_path, cli)
    graph = model.subgraphs[0]
    names = [t.name for t in graph.tensors]
    mul = next(op for op in graph.operators if op.outputs and names[op.outputs[0]] == "gru/m2")
    mul.inputs[0] = names.index("gru/z2")
    report = _verify_mutated(model)
    failed = [c for c in report.checks if not c.passed]
    assert [c.name for c in failed] == ["int8.steps"], [(c.name, c.detail) for c in failed]
    assert "GRU layer 'gru' step 2: 'gru/m2' off by" in failed[0].detail


def test_int8_ops_catch_a_lost_state(cli, tmp_path):
    model = _int8_model(tmp_path, cli)
    graph = model.subgraphs[0]
    graph.operators = [op for op in graph.operators if op.code != 144]  # ASSIGN_VARIABLE
    report = _verify_mutated(model)
    failed = {c.name: c.detail for c in report.checks if not c.passed}
    assert "did not start from the state its last step left" in failed["int8.ops"]
    assert "step 0" in failed["int8.steps"]  # its first step is not the GRU of the state it should have had


def test_int8_formats_catch_a_format_the_kernel_does_not_write(cli, tmp_path):
    """A TANH output in another format than the kernel writes: int8.formats fails (and blocks the numbers)."""
    from tflrnn.model import Quantization

    model = _int8_model(tmp_path, cli)
    graph = model.subgraphs[0]
    target = next(t for t in graph.tensors if t.name == "gru/n3")
    target.quantization = Quantization((1 / 64,), (0,))
    report = _verify_mutated(model)
    failed = {c.name for c in report.checks if not c.passed}
    assert "int8.formats" in failed and "gru/n3" in next(c.detail for c in report.checks if c.name == "int8.formats")


def test_full_int8_gru_reads_back_and_rebuilds_the_same_bytes(cli, tmp_path):
    model_path, npz, again = tmp_path / "g.tflite", tmp_path / "g.npz", tmp_path / "again.tflite"
    calibration = _calibration(tmp_path / "c.npy")
    assert cli("build", "--cell", "gru", "--units", "5", "--input-size", "4", "--time-steps", "6", "--quantize",
               "full-int8", "--calibration", calibration, "--bidirectional", "-o", model_path).code == 0
    network = recover(read(model_path.read_bytes()))
    assert network.int8 is not None and all(layer.kind == "gru" for layer in network.layers)
    assert recover(read(write(model_of(network)))) == network
    assert cli("weights", model_path, "-o", npz).code == 0
    assert cli("build", "--weights", npz, "--calibration", calibration, "-o", again).code == 0
    assert again.read_bytes() == model_path.read_bytes()
