"""--bidirectional: one BIDIRECTIONAL_SEQUENCE_RNN op, both states variable, merged or separate outputs."""

from __future__ import annotations

import numpy as np
import pytest

import tflrnn
from support import assert_clean_error, random_weights
from tflrnn import reference
from tflrnn.model import Activation


def _run(data: bytes, xs):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=data)
    interpreter.allocate_tensors()
    runner = interpreter.get_signature_runner("serving_default")
    return [runner(input=x) for x in xs]


@pytest.mark.parametrize("merge", ["concat", "none"])
@pytest.mark.parametrize("time_major", [False, True])
def test_bidirectional_matches_the_reference_and_verifies(merge, time_major):
    fw, bw = tflrnn.CellWeights(*random_weights(5, 3, seed=1)), tflrnn.CellWeights(*random_weights(5, 3, seed=2))
    data = tflrnn.build(tflrnn.RNNCell(5, activation="relu"), weights=[fw, bw], time_steps=4, batch_size=2,
                        time_major=time_major, bidirectional=True, merge=merge)
    shape = (4, 2, 3) if time_major else (2, 4, 3)
    xs = list(np.random.default_rng(0).standard_normal((2, *shape)).astype(np.float32))
    outs = _run(data, xs)

    fw_state = bw_state = None
    for x, out in zip(xs, outs):
        xb = np.swapaxes(x, 0, 1) if time_major else x
        f, fw_state = reference.run(xb, fw, Activation.RELU, initial_state=fw_state)
        b_rev, _ = reference.run(xb[:, ::-1], bw, Activation.RELU, initial_state=bw_state)
        b = b_rev[:, ::-1]
        bw_state = b[:, 0]  # the backward state carries from its output at t=0 into the next invoke
        got = [out["output"]] if merge == "concat" else [out["output_fw"], out["output_bw"]]
        got = [np.swapaxes(g, 0, 1) if time_major else g for g in got]
        got = got[0] if merge == "concat" else np.concatenate(got, axis=-1)
        np.testing.assert_allclose(got, np.concatenate([f, b], axis=-1), atol=1e-5)

    report = tflrnn.verify(data)
    assert report.passed, [(c.name, c.detail) for c in report.failures]
    assert {"tensors.shapes[fw]", "state.variable[bw]", "op.aux_inputs"} <= {c.name for c in report.checks}


def test_bidirectional_cli_npz_weights_and_int8(tmp_path, cli):
    out = tmp_path / "bi.tflite"
    assert cli("build", "--units", 8, "--input-size", 4, "--time-steps", 5, "--bidirectional", "-o", out).code == 0
    exported = tmp_path / "w.npz"
    assert cli("weights", out, "-o", exported).code == 0
    assert sorted(np.load(exported).files)[:2] == ["rnn/bw/bias", "rnn/bw/input_weights"]
    rebuilt = tmp_path / "again.tflite"
    assert cli("build", "--units", 8, "--time-steps", 5, "--bidirectional", "--weights", exported, "-o",
               rebuilt).code == 0
    assert rebuilt.read_bytes() == out.read_bytes()
    assert cli("verify", out, "--weights", exported).code == 0

    hybrid = tmp_path / "q.tflite"
    assert cli("build", "--units", 8, "--input-size", 4, "--time-steps", 5, "--bidirectional", "--quantize", "int8",
               "-o", hybrid).code == 0
    assert cli("verify", hybrid).code == 0


def test_bidirectional_refusals(tmp_path, cli):
    assert_clean_error(cli("build", "--units", 4, "--bidirectional", "--quantize", "int8", "--time-major"),
                       "must be batch-major")
    assert_clean_error(cli("build", "--bidirectional"), "needs --units")
    assert_clean_error(cli("build", "--units", 4, "--merge", "none"), "add --bidirectional")
    model = tmp_path / "bi.tflite"
    model.write_bytes(tflrnn.build(tflrnn.RNNCell(4), bidirectional=True))
    (tmp_path / "x.npz").write_bytes(b"never read: refused before")
    assert_clean_error(cli("verify", model, "--against", tmp_path / "x.npz"), "a Keras model, ONNX RNN nodes",
                       "this model is bidirectional")


def test_verify_catches_a_broken_bidirectional_model():
    from tflrnn.builder import describe_model
    from tflrnn.writer import write

    model = describe_model(tflrnn.RNNCell(4), input_size=2, time_steps=3, bidirectional=True)
    op = model.subgraphs[0].operators[0]
    op.inputs[9] = 0  # an aux input that should be absent
    op.options.activation = 11
    failed = {c.name for c in tflrnn.verify(write(model)).failures}
    assert {"op.aux_inputs", "op.options"} <= failed
