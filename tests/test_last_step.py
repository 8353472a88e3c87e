"""--last-step: the final step only [B,U], as Keras return_sequences=False, through one STRIDED_SLICE op."""

from __future__ import annotations

import json

import numpy as np
import pytest

import tflrnn
from tflrnn.builder import describe_model
from tflrnn.model import BuiltinOperator as Op
from tflrnn.writer import write


def _outputs(data: bytes, xs):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=data)
    interpreter.allocate_tensors()
    runner = interpreter.get_signature_runner("serving_default")
    return [runner(input=x)["output"] for x in xs]


@pytest.mark.parametrize("time_major", [False, True])
def test_last_step_is_the_final_step_of_the_sequence_model(time_major):
    options = dict(input_size=3, time_steps=5, batch_size=2, time_major=time_major, seed=4)
    cells = [tflrnn.RNNCell(6, name="a"), tflrnn.RNNCell(4, activation="relu", name="b")]
    sequence = tflrnn.build(cells, **options)
    last = tflrnn.build(cells, **options, last_step=True)
    shape = (5, 2, 3) if time_major else (2, 5, 3)
    xs = list(np.random.default_rng(0).standard_normal((3, *shape)).astype(np.float32))

    full, final = _outputs(sequence, xs), _outputs(last, xs)

    for y, z in zip(full, final):
        assert z.shape == (2, 4)
        np.testing.assert_array_equal(z, y[-1] if time_major else y[:, -1])  # and the state carried alike
    ops = tflrnn.inspect(last).to_dict()["subgraphs"][0]["operators"]
    assert [op["op"] for op in ops] == ["UNIDIRECTIONAL_SEQUENCE_RNN"] * 2 + ["STRIDED_SLICE"]
    report = tflrnn.verify(last)
    assert report.passed, [(c.name, c.detail) for c in report.failures]
    assert any(c.name == "last_step" for c in report.checks)


def test_cli_and_keras_config(tmp_path, cli):
    out = tmp_path / "m.tflite"
    built = cli("build", "--units", 8, "--time-steps", 3, "--last-step", "-o", out, "--json")
    assert built.code == 0 and json.loads(built.out)["output_shape"] == [1, 8]
    assert json.loads(built.out)["last_step"] is True
    config = tmp_path / "layer.json"
    config.write_text('{"units": 8, "return_sequences": false}')  # Keras' default
    assert cli("build", "--config", config, "--time-steps", 3, "-o", tmp_path / "k.tflite").code == 0
    assert (tmp_path / "k.tflite").read_bytes() == out.read_bytes()


@pytest.mark.parametrize("broken", ["begin", "mask", "input"])
def test_verify_catches_a_wrong_slice(broken):
    model = describe_model(tflrnn.RNNCell(4), input_size=2, time_steps=3, last_step=True)
    graph = model.subgraphs[0]
    op = graph.operators[-1]
    if broken == "begin":
        graph.tensors[op.inputs[1]].data = np.asarray([0, 0, 0], dtype=np.int32)  # the first step, not the last
    elif broken == "mask":
        op.options.shrink_axis_mask = 0
    else:
        op.inputs[0] = 0  # slices the model's input
    report = tflrnn.verify(write(model))
    assert "last_step" in {c.name for c in report.failures}


def test_keras_return_sequences_false_against_keras(tmp_path, cli):
    keras = pytest.importorskip("keras", reason="needs the test extra")
    layer = keras.layers.SimpleRNN(5, activation="tanh", name="rnn")  # return_sequences=False
    model = keras.Sequential([keras.Input((None, 3)), layer])
    path = tmp_path / "m.keras"
    model.save(path)
    out = tmp_path / "m.tflite"
    built = cli("build", "--weights", path, "--last-step", "--time-steps", 4, "-o", out)
    assert built.code == 0 and "add --last-step" in built.out
    result = cli("verify", out, "--against", path)
    assert result.code == 0, result.out
    # The sliced output itself is what Keras returns (verify --against compares the sequence of the RNN layer).
    from ai_edge_litert.interpreter import Interpreter

    x = np.random.default_rng(3).standard_normal((1, 4, 3)).astype(np.float32)
    interpreter = Interpreter(model_path=str(out))
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    y = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    assert y.shape == (1, 5)
    np.testing.assert_allclose(y, model.predict(x, verbose=0), atol=1e-5)


def test_one_slice_of_a_merged_bidirectional_output_is_not_a_last_step():
    """Slicing [fw | bw] at t=-1 takes the backward half at the wrong end: verify must say so."""
    from tflrnn.lowering.fused import last_step_slice
    from tflrnn.model import Operator, Tensor

    model = describe_model(tflrnn.RNNCell(4), input_size=2, time_steps=5, bidirectional=True)
    graph = model.subgraphs[0]
    begin, options = last_step_slice(time_major=False)
    n = len(graph.tensors)
    graph.tensors += [Tensor("b", (3,), "int32", data=np.asarray(begin, np.int32)),
                      Tensor("e", (3,), "int32", data=np.zeros(3, np.int32)),
                      Tensor("s", (3,), "int32", data=np.ones(3, np.int32)), Tensor("last", (1, 8))]
    graph.operators.append(Operator(Op.STRIDED_SLICE, [graph.outputs[0], n, n + 1, n + 2], [n + 3], options=options))
    graph.outputs = [n + 3]
    model.signatures[0].outputs = {"output": n + 3}
    failed = {c.name: c.detail for c in tflrnn.verify(write(model)).failures}
    assert "merged bidirectional output cannot be sliced" in failed["last_step"]
