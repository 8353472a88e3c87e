"""Stacked cells (MultiRNNCell): one fused op and one variable state per layer, and TfLiteRNNCell's reuse."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tflrnn
from support import assert_clean_error, random_weights
from tflrnn import reference
from tflrnn.cell import ACTIVATIONS
from tflrnn.model import Activation


def _run_chain(data: bytes, xs: list[np.ndarray]) -> list[np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=data)
    interpreter.allocate_tensors()
    runner = interpreter.get_signature_runner("serving_default")
    return [runner(input=x)["output"] for x in xs]


def test_stack_matches_the_chained_reference_across_invokes():
    cells = [tflrnn.RNNCell(12, activation="relu", name="enc/l0"), tflrnn.RNNCell(7, activation="tanh",
                                                                                   name="enc/l1")]
    weights = [tflrnn.CellWeights(*random_weights(12, 5, seed=1)), tflrnn.CellWeights(*random_weights(7, 12, seed=2))]
    data = tflrnn.build(cells, weights=weights, time_steps=6, batch_size=2)
    xs = list(np.random.default_rng(3).standard_normal((3, 2, 6, 5)).astype(np.float32))

    ys = _run_chain(data, xs)

    # Free-running numpy over the joined sequence: layer by layer, state carried across the three invokes.
    joined = np.concatenate(xs, axis=1)
    hidden, _ = reference.run(joined, weights[0], Activation.RELU)
    expected, _ = reference.run(hidden, weights[1], Activation.TANH)
    np.testing.assert_allclose(np.concatenate(ys, axis=1), expected, atol=1e-5)
    report = tflrnn.verify(data)
    assert report.passed, [(c.name, c.detail) for c in report.failures]
    assert {c.name for c in report.checks} >= {"op.options[0]", "op.options[1]", "state.variable[1]"}


def test_layers_option_builds_a_verified_stack(tmp_path, cli):
    out = tmp_path / "stack.tflite"
    built = cli("build", "--units", 16, "--layers", 3, "--input-size", 4, "--time-steps", 5, "-o", out, "--json")
    assert built.code == 0, built.err
    summary = json.loads(built.out)
    assert [layer["name"] for layer in summary["layers"]] == ["rnn/cell_0", "rnn/cell_1", "rnn/cell_2"]
    assert summary["input_shape"] == [1, 5, 4] and summary["output_shape"] == [1, 5, 16]
    info = tflrnn.inspect(out).model
    assert len(info.subgraphs[0].operators) == 3
    assert [t.name for t in info.subgraphs[0].tensors if t.is_variable] == [
        "rnn/cell_0/hidden_state", "rnn/cell_1/hidden_state", "rnn/cell_2/hidden_state"]
    assert cli("verify", out).code == 0

    exported = tmp_path / "w.npz"
    assert cli("weights", out, "-o", exported).code == 0
    rebuilt = tmp_path / "rebuilt.tflite"
    assert cli("build", "--units", 16, "--layers", 3, "--time-steps", 5, "--weights", exported, "-o", rebuilt).code == 0
    assert rebuilt.read_bytes() == out.read_bytes()
    assert cli("verify", out, "--weights", exported).code == 0


def test_config_cells_list(tmp_path, cli):
    config = tmp_path / "stack.json"
    config.write_text(json.dumps({"cells": [{"num_units": 10, "activation": "relu6"},
                                            {"num_units": 4, "activation": "linear", "name": "head"}],
                                  "input_size": 3, "time_steps": 4, "time_major": True}))
    out = tmp_path / "m.tflite"
    assert cli("build", "--config", config, "-o", out).code == 0
    ops = tflrnn.inspect(out).to_dict()["subgraphs"][0]["operators"]
    assert [op["options"]["fused_activation_function"] for op in ops] == ["RELU6", "NONE"]
    assert all(op["options"]["time_major"] for op in ops)
    assert tflrnn.verify(out).passed


def test_reuse_shares_variables_only_when_allowed(tmp_path):
    shared = [tflrnn.RNNCell(8, name="rnn", reuse=True), tflrnn.RNNCell(8, name="rnn", reuse=True)]
    data = tflrnn.build(shared, input_size=8, time_steps=3)
    graph = tflrnn.inspect(data).model.subgraphs[0]
    first, second = graph.operators
    assert first.inputs[1:4] == second.inputs[1:4]  # the same W, R and b tensors
    assert first.inputs[4] != second.inputs[4]  # each layer its own state
    assert len(data) < len(tflrnn.build([tflrnn.RNNCell(8, name="a"), tflrnn.RNNCell(8, name="b")], input_size=8,
                                        time_steps=3))
    assert tflrnn.verify(data).passed

    with pytest.raises(tflrnn.ConfigError, match="Variable rnn/input_weights already exists, disallowed. Did you "
                                                 "mean to set reuse=True"):
        tflrnn.build([tflrnn.RNNCell(8, name="rnn"), tflrnn.RNNCell(8, name="rnn")], input_size=8)
    with pytest.raises(tflrnn.ConfigError, match=r"Trying to share variable rnn/input_weights, but specified shape "
                                                 r"\[8, 8\] and found shape \[8, 3\]"):
        tflrnn.build([tflrnn.RNNCell(8, name="rnn", reuse=True), tflrnn.RNNCell(8, name="rnn", reuse=True)],
                     input_size=3)


def test_stack_input_problems(tmp_path, cli):
    weights = tmp_path / "w.npz"
    w0 = random_weights(6, 3)
    np.savez(weights, **{f"rnn/cell_0/{k}": v for k, v in zip(("input_weights", "recurrent_weights", "bias"), w0)})
    assert_clean_error(cli("build", "--units", 6, "--layers", 2, "--weights", weights), "no weights under 'rnn/cell_1/'")
    assert_clean_error(cli("build", "--layers", 2), "--layers needs --units")
    config = tmp_path / "c.json"
    config.write_text('{"cells": [{"num_units": 4, "bogus": 1}]}')
    assert_clean_error(cli("build", "--config", config), "unknown key 'bogus'")
    stack = tmp_path / "s.tflite"
    stack.write_bytes(tflrnn.build([tflrnn.RNNCell(4, name="a"), tflrnn.RNNCell(4, name="b")]))
    assert_clean_error(cli("verify", stack, "--against", weights), "stack of 2 layers")


def test_verify_names_the_broken_layer():
    from tflrnn.builder import describe_model
    from tflrnn.writer import write

    model = describe_model([tflrnn.RNNCell(5, name="a"), tflrnn.RNNCell(5, name="b")], input_size=2, time_steps=3)
    model.subgraphs[0].operators[1].options.activation = 9
    report = tflrnn.verify(write(model))
    failed = {c.name: c.detail for c in report.failures}
    assert "op.options[1]" in failed and failed["op.options[1]"].startswith("layer 1: activation 9")
    assert "op.options[0]" not in failed


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    units=st.lists(st.integers(1, 48), min_size=1, max_size=4),
    input_size=st.integers(1, 24),
    time_steps=st.integers(1, 8),
    batch_size=st.integers(1, 3),
    time_major=st.booleans(),
    activations=st.lists(st.sampled_from(sorted(ACTIVATIONS)), min_size=4, max_size=4),
    last_step=st.booleans(),
    quantize=st.sampled_from([None, "int8", "int8-asymmetric"]),
    dynamic=st.booleans(),
)
def test_property_stacks_build_and_verify(units, input_size, time_steps, batch_size, time_major, activations,
                                          last_step, quantize, dynamic):
    cells = [tflrnn.RNNCell(u, activation=a, name=f"s/l{k}") for k, (u, a) in enumerate(zip(units, activations))]
    data = tflrnn.build(cells, input_size=input_size, time_steps="dynamic" if dynamic else time_steps,
                        batch_size=batch_size, time_major=time_major, last_step=last_step,
                        quantize=quantize and "int8", asymmetric_inputs=quantize == "int8-asymmetric")
    report = tflrnn.verify(data)
    assert report.passed, [(c.name, c.detail) for c in report.failures]


def test_option_combinations_that_would_be_ignored_are_refused(tmp_path, cli):
    config = tmp_path / "c.json"
    config.write_text('{"cells": [{"num_units": 4}, {"num_units": 3}]}')
    assert_clean_error(cli("build", "--config", config, "--activation", "relu"), "set --activation per cell")


@pytest.mark.parametrize("lowering", ["fused", "portable"])
def test_a_mixed_stack_is_summarised_layer_by_layer(tmp_path, cli, lowering):
    # A plain layer, then a bidirectional one: two ops of two kinds, not "one BIDIRECTIONAL_SEQUENCE_RNN model"
    config = tmp_path / "mixed.json"
    config.write_text(json.dumps({"cells": [{"num_units": 5}, {"num_units": 4, "bidirectional": True}],
                                  "input_size": 3, "time_steps": 4}))
    out = tmp_path / "mixed.tflite"
    result = cli("build", "--config", config, "--lowering", lowering, "-o", out)
    assert result.code == 0, result.err
    line = result.out.splitlines()[0]
    op = "UNIDIRECTIONAL_SEQUENCE_RNN + BIDIRECTIONAL_SEQUENCE_RNN" if lowering == "fused" else "portable lowering"
    assert line.startswith(f"{out}: {op} input [1, 4, 3] -> output [1, 4, 8], 2 layers (rnn/cell_0 5 tanh, "
                           "rnn/cell_1 forward and backward 4 tanh), "), line
    summary = json.loads(cli("build", "--config", config, "--lowering", lowering, "--json", "-o", out).out)
    assert summary["op"] == op
    both = cli("build", "--units", 4, "--layers", 2, "--bidirectional", "--lowering", lowering, "-o", out).out
    assert "2 layers (rnn/cell_0 forward and backward 4 tanh, rnn/cell_1 forward and backward 4 tanh)" in both
    assert both.startswith(f"{out}: {'BIDIRECTIONAL_SEQUENCE_RNN' if lowering == 'fused' else op} input")
