"""A WHILE loop that runs several steps a pass (`steps_per_iteration`, --steps-per-iteration): for every cell kind,
the float64 reference's outputs and final states from a random state, both directions, stacks, time-major and
batches, on LiteRT with and without XNNPACK and on TFLite Micro; the state carried across invokes; the loopback
read(write(n)) == n; the command line; the refusals; and the bounds the reader holds such a loop to."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter, OpResolverType

import tflrnn
from support import assert_clean_error
from tflrnn import reference
from tflrnn.builder import model_of, network_of
from tflrnn.cells.gru import GRUCell
from tflrnn.cells.lstm import LSTMCell
from tflrnn.errors import ConfigError, ModelFormatError
from tflrnn.lowering import recover
from tflrnn.model import BuiltinOperator
from tflrnn.reader import read
from tflrnn.writer import write

CELLS = {
    "rnn tanh": lambda name: tflrnn.RNNCell(5, name=name),
    "rnn relu": lambda name: tflrnn.RNNCell(5, name=name, activation="relu"),
    "gru": lambda name: GRUCell(5, name=name),
    "gru reset before": lambda name: GRUCell(5, name=name, reset_after=False),
    "lstm": lambda name: LSTMCell(5, name=name),
    "lstm cell clip": lambda name: LSTMCell(5, name=name, cell_clip=0.5),
}
LAYOUTS = {
    "bidirectional stack": {"bidirectional": [True, False], "batch_size": 1},
    "time-major, batch 2": {"time_major": True, "batch_size": 2},
}


def _network(kind: str, layout: str, steps_per_iteration: int, state: str = "io", time_steps: int = 6):
    options = LAYOUTS[layout]
    cells = [CELLS[kind]("a"), CELLS[kind]("b")] if "bidirectional" in options else CELLS[kind]("a")
    return network_of(cells, input_size=3, time_steps=time_steps, lowering="portable", recurrence="loop",
                      steps_per_iteration=steps_per_iteration, state=state, seed=3, **options)


def _run(data: bytes, xnnpack: bool):
    kind = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    return Interpreter(model_content=data, experimental_op_resolver_type=kind).get_signature_runner("serving_default")


def _input(network, seed: int) -> np.ndarray:
    lead = (network.time_steps, network.batch_size) if network.time_major else (network.batch_size,
                                                                               network.time_steps)
    return np.random.default_rng(seed).standard_normal((*lead, network.input_size)).astype(np.float32)


@pytest.mark.parametrize("xnnpack", [False, True], ids=["builtin", "xnnpack"])
@pytest.mark.parametrize("steps_per_iteration", [2, 3])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("kind", CELLS)
def test_every_kind_computes_its_reference_a_few_steps_a_pass(kind, layout, steps_per_iteration, xnnpack):
    network = _network(kind, layout, steps_per_iteration)
    model = model_of(network)
    bodies = [g for g in model.subgraphs if g.name.endswith("/body")]
    assert len(bodies) == len(network.layers)  # one loop per direction
    for body in bodies:  # R applied once per step of the pass, and t moved by the whole pass
        names = [body.tensors[op.inputs[1]].name for op in body.operators
                 if op.code == BuiltinOperator.FULLY_CONNECTED]
        assert len(names) == steps_per_iteration * (1 if kind.startswith("rnn") else 2)  # gated: 2 gate groups
        stride = next(t for t in body.tensors if t.name == "stride").data
        assert abs(int(stride)) == steps_per_iteration
    run = _run(write(model), xnnpack)
    rng = np.random.default_rng(4)
    x = _input(network, 5)
    states = [rng.standard_normal((network.batch_size, layer.weights.state_width)).astype(np.float32)
              for layer in network.layers]
    keys = ["state"] if len(states) == 1 else [f"state_{k}" for k in range(len(states))]
    got = run(input=x, **dict(zip(keys, states)))
    expected, finals = reference.run_network(network, x, states)
    np.testing.assert_allclose(got["output"], expected[0], atol=3e-6)
    for key, final in zip(keys, finals, strict=True):
        np.testing.assert_allclose(got[key], final, atol=3e-6)


@pytest.mark.parametrize("kind", ["rnn tanh", "gru", "lstm"])
def test_the_carried_state_is_the_reference_over_the_joined_sequence(kind):
    """Three invokes with the state in the model's variables: the reference run once over the three sequences."""
    network = network_of(CELLS[kind]("b"), input_size=3, time_steps=10, lowering="portable",
                         steps_per_iteration=5, seed=3)
    assert network.loop  # more than one step a pass makes the steps a loop
    run = _run(write(model_of(network)), xnnpack=True)
    xs = [_input(network, seed) for seed in range(3)]
    got = np.concatenate([run(input=x)["output"] for x in xs], axis=1)
    expected, _ = reference.run_network(network, np.concatenate(xs, axis=1))  # T from the input: 30
    np.testing.assert_allclose(got, expected[0], atol=5e-6)


@pytest.mark.parametrize("kind", CELLS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_recover_reads_the_steps_a_pass_back(kind, layout):
    network = _network(kind, layout, 3, state="carry")
    data = write(model_of(network))
    recovered = recover(read(data))
    assert recovered.steps_per_iteration == 3 and recovered.loop
    assert recovered == network
    assert write(model_of(recovered)) == data


def test_one_step_a_pass_is_the_loop_as_before():
    """steps_per_iteration=1 (the default) writes exactly the loop without it."""
    for cell in (tflrnn.RNNCell(4), GRUCell(4), LSTMCell(4)):
        plain = tflrnn.build(cell, input_size=3, time_steps=6, lowering="portable", recurrence="loop")
        assert tflrnn.build(cell, input_size=3, time_steps=6, lowering="portable", recurrence="loop",
                            steps_per_iteration=1) == plain


@pytest.mark.parametrize("options, fragment", [
    ({"steps_per_iteration": 4}, "does not divide the 6 time steps"),
    ({"steps_per_iteration": 0}, "positive integer"),
    ({"steps_per_iteration": 2.0}, "positive integer"),
    ({"steps_per_iteration": True}, "positive integer"),
    ({"steps_per_iteration": 2, "recurrence": "unrolled"}, "--recurrence unrolled"),
    ({"steps_per_iteration": 2, "time_steps": "dynamic"}, "dynamic time axis"),
    ({"steps_per_iteration": 2, "lowering": "fused"}, "add --lowering portable"),
])
def test_what_steps_per_iteration_refuses(options, fragment):
    settings = {"input_size": 3, "time_steps": 6, "lowering": "portable", **options}
    with pytest.raises(ConfigError, match=fragment):
        network_of(GRUCell(4) if settings["lowering"] == "portable" else tflrnn.RNNCell(4), **settings)


def test_a_full_int8_lstm_loop_runs_one_step_a_pass():
    calibration = np.random.default_rng(1).standard_normal((4, 1, 6, 3)).astype(np.float32)
    with pytest.raises(ConfigError, match="one step a pass"):
        network_of(LSTMCell(4), input_size=3, time_steps=6, lowering="portable", quantize="full-int8",
                   calibration=calibration, recurrence="loop", steps_per_iteration=3)


@pytest.mark.parametrize("stride, start, fragment", [
    (4, 0, "steps of a pass"),  # 4 does not divide 6
    (3, 3, "once"),  # forward from the wrong step
    (7, 0, "steps of a pass"),  # more than the steps
])
def test_the_reader_holds_a_pass_to_the_steps(stride, start, fragment):
    """A loop whose stride skips or overruns steps is refused before anything runs it."""
    model = model_of(_network("gru", "time-major, batch 2", 3, state="zero"))
    body = next(g for g in model.subgraphs if g.name.endswith("/body"))
    next(t for t in body.tensors if t.name == "stride").data = np.asarray(stride, np.int32)
    next(t for t in model.subgraphs[0].tensors if t.name.endswith("/t_start")).data = np.asarray(start, np.int32)
    with pytest.raises(ModelFormatError, match=fragment):
        recover(read(write(model)))


def test_the_command_line_builds_and_verifies_a_loop_of_passes(tmp_path, cli):
    path = tmp_path / "gru.tflite"
    result = cli("build", "--cell", "gru", "--units", "6", "--input-size", "3", "--time-steps", "10",
                  "--steps-per-iteration", "5", "--json", "-o", str(path))
    assert result.code == 0, result.out
    summary = json.loads(result.out)
    assert (summary["recurrence"], summary["steps_per_iteration"]) == ("loop", 5)
    result = cli("build", "--cell", "gru", "--units", "6", "--time-steps", "10", "--steps-per-iteration", "5",
                  "-o", str(tmp_path / "text.tflite"))
    assert "steps loop (5 a pass)" in result.out
    inspected = cli("inspect", str(path), "--json")
    network = json.loads(inspected.out)["network"]
    assert (network["recurrence"], network["steps_per_iteration"]) == ("loop", 5)
    assert "state carry, steps loop (5 a pass))" in cli("inspect", str(path)).out
    result = cli("verify", str(path), "--runtime", "micro", "--json")
    assert result.code == 0, result.out
    report = json.loads(result.out)
    assert report["passed"] and any(c["runtime"] == "micro" and c["name"] == "numeric.state_carried"
                                    for c in report["checks"])
    bad = cli("build", "--cell", "gru", "--units", "6", "--time-steps", "10", "--steps-per-iteration", "3",
               "-o", str(tmp_path / "bad.tflite"))
    assert_clean_error(bad, "does not divide the 10 time steps")
    assert not (tmp_path / "bad.tflite").exists()


def test_weights_out_rebuilds_the_loop_of_passes_byte_for_byte(tmp_path, cli):
    model = tmp_path / "lstm.tflite"
    assert cli("build", "--cell", "lstm", "--units", "4", "--input-size", "3", "--time-steps", "6",
                "--lowering", "portable", "--steps-per-iteration", "3", "-o", str(model)).code == 0
    weights = tmp_path / "lstm.npz"
    assert cli("weights", str(model), "-o", str(weights)).code == 0
    again = tmp_path / "again.tflite"
    result = cli("build", "--weights", str(weights), "-o", str(again))
    assert result.code == 0, result.out
    assert again.read_bytes() == model.read_bytes()
