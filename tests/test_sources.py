"""Weights from Keras, TF checkpoints, PyTorch state dicts and ONNX: real files made here, built, and checked
against the framework they came from."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import tflrnn
from tflrnn.network import Dense
from support import assert_clean_error, needs_torch, random_weights, run_without as _without, torch, write_onnx_rnn, \
    write_state_dict

keras = pytest.importorskip("keras", reason="needs the test extra: pip install 'tflrnn[test]'")
tf = pytest.importorskip("tensorflow", reason="needs the test extra: pip install 'tflrnn[test]'")
onnx = pytest.importorskip("onnx", reason="needs the test extra: pip install 'tflrnn[test]'")
safetensors_numpy = pytest.importorskip("safetensors.numpy", reason="needs the test extra")


def _npz_build(tmp_path, cli, weights: tflrnn.CellWeights, *args) -> bytes:
    npz = tmp_path / "same.npz"
    np.savez(npz, **weights.to_tflite())
    out = tmp_path / "from_npz.tflite"
    assert cli("build", "--weights", npz, *args, "-o", out).code == 0
    return out.read_bytes()


def _build(cli, tmp_path, *args):
    out = tmp_path / "model.tflite"
    result = cli("build", *args, "-o", out)
    assert result.code == 0, result.err
    return out, result.out


def _verify_against(cli, model, source, *args):
    result = cli("verify", model, "--against", source, "--json", *args)
    report = json.loads(result.out)
    assert result.code == 0, [c for c in report["checks"] if not c["passed"]]
    checks = [c for c in report["checks"] if c["name"].startswith("against.")]
    assert checks and all(c["passed"] and c["max_abs_error"] < 1e-5 for c in checks)
    return report


# Keras ----------------------------------------------------------------------------------------------------------


def _keras_model(activation="relu", use_bias=True, extra_layers=()):
    rnn = keras.layers.SimpleRNN(6, activation=activation, use_bias=use_bias, return_sequences=True, name="speech")
    model = keras.Sequential([keras.Input((None, 4)), rnn, *extra_layers])
    rng = np.random.default_rng(0)
    weights = [rng.standard_normal(w.shape).astype(np.float32) * 0.4 for w in rnn.get_weights()]
    rnn.set_weights(weights)
    return model, rnn


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_keras_model_files(tmp_path, cli, suffix):
    model, rnn = _keras_model(extra_layers=[keras.layers.Dense(3)])
    path = tmp_path / f"model{suffix}"
    model.save(path)

    # The SimpleRNN layer alone (--layer); the whole model with its Dense head is tests/test_network.py's.
    out, printed = _build(cli, tmp_path, "--weights", path, "--layer", "speech", "--time-steps", 5, "--batch-size", 2)

    assert "keras 'speech'" in printed and "activation relu" in printed and "input_weights [6, 4]" in printed
    kernel, recurrent, bias = rnn.get_weights()
    expected = tflrnn.CellWeights.from_keras(kernel, recurrent, bias)
    assert out.read_bytes() == _npz_build(tmp_path, cli, expected, "--activation", "relu", "--time-steps", 5,
                                          "--batch-size", 2)
    report = _verify_against(cli, out, path, "--runtime", "all")
    assert report["against"]["framework"].startswith("keras ")
    assert {c["runtime"] for c in report["checks"] if c["name"] == "against.keras"} == {"litert", "tensorflow"}


def test_keras_weights_only_file_and_no_bias(tmp_path, cli):
    model, rnn = _keras_model(activation="tanh", use_bias=False)
    path = tmp_path / "model.weights.h5"
    model.save_weights(path)
    out, printed = _build(cli, tmp_path, "--weights", path, "--time-steps", 3)
    assert "weights-only file" in printed
    assert not tflrnn.inspect(out).model.subgraphs[0].tensors[3].data.any()  # use_bias=False: zero bias
    _verify_against(cli, out, path)


def test_keras_reading_does_not_import_tensorflow(tmp_path):
    model, _ = _keras_model()
    path = tmp_path / "model.keras"
    model.save(path)
    program = (
        "import sys; from tflrnn.cli import main\n"
        "try: main(['build', '--weights', sys.argv[1], '-o', sys.argv[2]])\n"
        "except SystemExit as e: assert e.code == 0, e.code\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))"
    )
    result = subprocess.run([sys.executable, "-c", program, str(path), str(tmp_path / "m.tflite")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_keras_files_that_cannot_be_built(tmp_path, cli):
    no_rnn = keras.Sequential([keras.Input((5, 4)), keras.layers.Conv1D(3, 2), keras.layers.Dense(2)])
    no_rnn.save(tmp_path / "conv.keras")
    assert_clean_error(cli("build", "--weights", tmp_path / "conv.keras"), "no SimpleRNN layer",
                       "(layers: Conv1D, Dense)")

    sigmoid, _ = _keras_model(activation="sigmoid")
    sigmoid.save(tmp_path / "sigmoid.keras")
    assert_clean_error(cli("build", "--weights", tmp_path / "sigmoid.keras"), "'sigmoid'", "cannot apply")

    two = keras.Sequential([keras.Input((5, 4)), keras.layers.SimpleRNN(3, return_sequences=True, name="a"),
                            keras.layers.Dense(3), keras.layers.SimpleRNN(2, name="b")])
    two.save(tmp_path / "two.keras")
    assert_clean_error(cli("build", "--weights", tmp_path / "two.keras", "-o", tmp_path / "x.tflite"),
                       "Dense layer 'dense", "before or between the recurrent layers", "--layer")
    assert not (tmp_path / "x.tflite").exists()
    out, _ = _build(cli, tmp_path, "--weights", tmp_path / "two.keras", "--layer", "b")
    assert tflrnn.inspect(out).model.subgraphs[0].tensors[1].shape == (2, 3)
    assert_clean_error(cli("build", "--weights", tmp_path / "two.keras", "--layer", "c"), "no SimpleRNN layer 'c'")

    model, _ = _keras_model()
    model.save(tmp_path / "good.keras")
    data = (tmp_path / "good.keras").read_bytes()
    (tmp_path / "truncated.keras").write_bytes(data[: len(data) // 2])
    assert_clean_error(cli("build", "--weights", tmp_path / "truncated.keras"), "truncated.keras")
    (tmp_path / "corrupt.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 4)
    assert_clean_error(cli("build", "--weights", tmp_path / "corrupt.h5"), "cannot read Keras file")
    assert_clean_error(cli("build", "--weights", tmp_path / "good.keras", "--activation", "tanh"),
                       "records activation relu, but 'tanh' was given")


# TensorFlow checkpoints ----------------------------------------------------------------------------------------


def _tf1_checkpoint(directory, scopes):
    """Variables named as TfLiteRNNCell named them, saved by a TF1 graph."""
    graph = tf.Graph()
    with graph.as_default():
        for scope, (w, r, b) in scopes.items():
            with tf.compat.v1.variable_scope(scope):
                tf.compat.v1.get_variable("input_weights", initializer=w)
                tf.compat.v1.get_variable("recurrent_weights", initializer=r)
                tf.compat.v1.get_variable("bias", initializer=b)
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            return saver.save(session, str(directory / "model.ckpt"))


def test_tf1_checkpoint_with_tflite_rnn_cell_names(tmp_path, cli):
    encoder, decoder = random_weights(5, 3, seed=1), random_weights(7, 5, seed=2)
    prefix = _tf1_checkpoint(tmp_path, {"encoder/rnn": encoder, "decoder/rnn": decoder})

    assert_clean_error(cli("build", "--weights", prefix), "several cells", "--scope")
    out, printed = _build(cli, tmp_path, "--weights", tmp_path, "--scope", "decoder/rnn", "--time-steps", 4)

    assert "checkpoint 'decoder/rnn'" in printed
    assert out.read_bytes() == _npz_build(tmp_path, cli, tflrnn.CellWeights(*decoder), "--time-steps", 4)
    report = _verify_against(cli, out, prefix, "--scope", "decoder/rnn")
    assert report["against"]["reference"].startswith("the numpy reference on the checkpoint's variables")


def test_keras_simple_rnn_cell_checkpoint(tmp_path, cli):
    _, rnn = _keras_model(activation="tanh")
    prefix = tf.train.Checkpoint(rnn=rnn).write(str(tmp_path / "keras_ckpt"))
    out, printed = _build(cli, tmp_path, "--weights", prefix, "--time-steps", 3)
    assert "checkpoint 'rnn/cell'" in printed
    kernel, recurrent, bias = rnn.get_weights()
    stored = tflrnn.inspect(out).model.subgraphs[0].tensors
    np.testing.assert_array_equal(stored[1].data, kernel.T)
    np.testing.assert_array_equal(stored[3].data, bias)
    _verify_against(cli, out, prefix)


# PyTorch --------------------------------------------------------------------------------------------------------


def _state_dict(units=5, input_size=3, layers=1, bias=True, seed=0):
    rng = np.random.default_rng(seed)
    state = {}
    for k in range(layers):
        size = input_size if k == 0 else units
        state[f"rnn.weight_ih_l{k}"] = rng.standard_normal((units, size)).astype(np.float32) * 0.4
        state[f"rnn.weight_hh_l{k}"] = rng.standard_normal((units, units)).astype(np.float32) * 0.3
        if bias:
            state[f"rnn.bias_ih_l{k}"] = rng.standard_normal(units).astype(np.float32) * 0.1
            state[f"rnn.bias_hh_l{k}"] = rng.standard_normal(units).astype(np.float32) * 0.1
    return state


def test_safetensors_state_dict(tmp_path, cli):
    state = _state_dict(layers=2)
    path = tmp_path / "rnn.safetensors"
    safetensors_numpy.save_file(state, str(path))

    whole, printed = _build(cli, tmp_path, "--weights", path, "--activation", "relu")  # both layers: a stack
    assert printed.count("read ") == 2 and "2 layers (5 relu, 5 relu)" in printed
    assert tflrnn.verify(whole).passed
    out, printed = _build(cli, tmp_path, "--weights", path, "--layer-index", 1, "--activation", "relu")

    # The activation was given: no hint to give it.
    assert "safetensors 'rnn.l1'" in printed and "activation not recorded (relu as given)" in printed
    assert "give --activation" not in printed
    bias = state["rnn.bias_ih_l1"].astype(np.float64) + state["rnn.bias_hh_l1"]
    expected = tflrnn.CellWeights(state["rnn.weight_ih_l1"], state["rnn.weight_hh_l1"], bias)
    assert out.read_bytes() == _npz_build(tmp_path, cli, expected, "--activation", "relu")
    _, printed = _build(cli, tmp_path, "--weights", path, "--layer-index", 1)
    assert "activation not recorded: a state dict does not record nn.RNN's nonlinearity; give --activation relu" \
        in printed


def test_pytorch_state_dicts_that_cannot_be_built(tmp_path, cli):
    lstm = {"weight_ih_l0": np.zeros((16, 3), np.float32), "weight_hh_l0": np.zeros((16, 2), np.float32),
            "weight_hr_l0": np.zeros((2, 4), np.float32)}  # nn.LSTM(3, 4, proj_size=2)
    safetensors_numpy.save_file(lstm, str(tmp_path / "lstm.safetensors"))
    assert_clean_error(cli("build", "--weights", tmp_path / "lstm.safetensors"), "nn.LSTM's projection",
                       "projection is not supported")
    half = {**_state_dict(), "rnn.weight_ih_l0_reverse": np.zeros((5, 3), np.float32)}
    safetensors_numpy.save_file(half, str(tmp_path / "half.safetensors"))
    assert_clean_error(cli("build", "--weights", tmp_path / "half.safetensors"), "missing key 'rnn.weight_hh_l0_reverse'")
    stacked_bidirectional = {**_state_dict(layers=2), **{k + "_reverse": v for k, v in _state_dict(layers=2).items()}}
    safetensors_numpy.save_file(stacked_bidirectional, str(tmp_path / "sb.safetensors"))
    # Layer 1 of a bidirectional stack reads [fw | bw]: 10 values, not the 5 these weights take.
    assert_clean_error(cli("build", "--weights", tmp_path / "sb.safetensors"), "previous layer's 10 outputs")
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    assert_clean_error(cli("build", "--weights", tmp_path / "bad.safetensors"), "cannot read safetensors")


def test_pt_file_without_torch_says_how_to_get_safetensors(tmp_path):
    path = tmp_path / "rnn.pt"
    path.write_bytes(b"PK\x03\x04 not really")  # never opened: torch is missing
    result = _without("torch", ["build", "--weights", path, "-o", tmp_path / "m.tflite"])
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "pip install 'tflrnn[torch]'" in result.stderr and "safetensors.torch.save_file" in result.stderr
    assert not (tmp_path / "m.tflite").exists()


@needs_torch
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_pytorch_files_against_torch(tmp_path, cli, nonlinearity):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    rnn = torch.nn.RNN(3, 5, nonlinearity=nonlinearity, batch_first=True)
    save_file(rnn.state_dict(), str(tmp_path / "rnn.safetensors"))
    torch.save(rnn.state_dict(), tmp_path / "rnn.pt")
    for source in ("rnn.safetensors", "rnn.pt"):
        out, _ = _build(cli, tmp_path, "--weights", tmp_path / source, "--activation", nonlinearity,
                        "--time-steps", 6, "--batch-size", 2)
        report = _verify_against(cli, out, tmp_path / source)
        assert report["against"]["framework"].startswith("torch ")


@needs_torch
@pytest.mark.parametrize("layers, bidirectional", [(3, False), (1, True)])
def test_pytorch_stacks_and_bidirectional_against_torch(tmp_path, cli, layers, bidirectional):
    from safetensors.torch import save_file

    torch.manual_seed(2)
    rnn = torch.nn.RNN(4, 6, num_layers=layers, bidirectional=bidirectional, batch_first=True)
    save_file(rnn.state_dict(), str(tmp_path / "rnn.safetensors"))
    out, printed = _build(cli, tmp_path, "--weights", tmp_path / "rnn.safetensors", "--time-steps", 5)
    assert printed.count("read ") == (2 if bidirectional else layers)
    report = _verify_against(cli, out, tmp_path / "rnn.safetensors")
    assert f"num_layers={layers}, bidirectional={bidirectional}" in report["against"]["reference"]


# ONNX -----------------------------------------------------------------------------------------------------------


def test_onnx_rnn_node(tmp_path, cli):
    path = tmp_path / "rnn.onnx"
    expected = write_onnx_rnn(path, seed=5, recurrent_bias=0.05, initial_h=np.zeros((1, 1, 4), np.float32))
    out, printed = _build(cli, tmp_path, "--weights", path, "--time-steps", 5, "--batch-size", 3, "--time-major")
    assert "onnx 'rnn'" in printed and "activation tanh" in printed
    assert out.read_bytes() == _npz_build(tmp_path, cli, expected, "--time-steps", 5, "--batch-size", 3,
                                          "--time-major")
    report = _verify_against(cli, out, path)
    assert report["against"]["framework"].startswith("onnxruntime ")


@pytest.mark.parametrize(
    "variant, fragment",
    [
        ({"clip": 3.0}, "clip"),
        ({"sequence_lens": True}, "sequence_lens"),
        ({"initial_h": np.ones((1, 1, 4), np.float32)}, "not a zero constant"),
        ({"activations": ("Sigmoid",)}, "Sigmoid"),
        ({"direction": "reverse"}, "runs direction 'reverse'"),
    ],
)
def test_onnx_variants_refused_with_the_reason(tmp_path, cli, variant, fragment):
    path = tmp_path / "rnn.onnx"
    write_onnx_rnn(path, seed=5, recurrent_bias=0.05, **variant)
    assert_clean_error(cli("build", "--weights", path, "-o", tmp_path / "m.tflite"), fragment)
    assert not (tmp_path / "m.tflite").exists()


def test_onnx_against_without_onnxruntime_names_the_extra(tmp_path, cli):
    path = tmp_path / "rnn.onnx"
    write_onnx_rnn(path, seed=5, recurrent_bias=0.05)
    out, _ = _build(cli, tmp_path, "--weights", path)
    result = _without("onnxruntime", ["verify", out, "--against", path])
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == "tflrnn: error: this needs the 'onnxruntime' package: pip install " \
                                    "'tflrnn[onnx]' (verifying against ONNX runs it in onnxruntime)"


@needs_torch
def test_torch_onnx_export(tmp_path, cli):
    torch.manual_seed(1)

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = torch.nn.RNN(3, 6, nonlinearity="relu", batch_first=True)

        def forward(self, x):
            return self.rnn(x)[0]

    path = tmp_path / "exported.onnx"
    torch.onnx.export(Model().eval(), (torch.randn(2, 5, 3),), str(path), dynamo=False)
    out, printed = _build(cli, tmp_path, "--weights", path, "--time-steps", 5, "--batch-size", 2)
    assert "activation relu" in printed
    _verify_against(cli, out, path)


# Weights out ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("names", ["tflite", "keras"])
def test_extracted_weights_rebuild_byte_identical(tmp_path, cli, names):
    original, _ = _build(cli, tmp_path, "--units", 12, "--input-size", 5, "--time-steps", 4, "--activation",
                         "relu6", "--name", "enc", "--seed", 7)
    exported = tmp_path / "weights.npz"
    result = cli("weights", original, "-o", exported, "--format", names, "--json")
    assert result.code == 0
    listed = json.loads(result.out)["arrays"]
    assert listed == ({"input_weights": [12, 5], "recurrent_weights": [12, 12], "bias": [12]} if names == "tflite"
                      else {"kernel": [5, 12], "recurrent_kernel": [12, 12], "bias": [12]})
    rebuilt = tmp_path / "rebuilt.tflite"
    assert cli("build", "--weights", exported, "--time-steps", 4, "--activation", "relu6", "--name", "enc",
               "-o", rebuilt).code == 0
    assert rebuilt.read_bytes() == original.read_bytes()
    assert cli("verify", original, "--weights", exported).code == 0


@pytest.mark.parametrize("kind", ["stack", "bidirectional", "bidirectional-separate"])
def test_keras_stacks_and_bidirectional_against_keras(tmp_path, cli, kind):
    if kind == "stack":
        layers = [keras.layers.SimpleRNN(5, activation="relu", return_sequences=True, name="l0"),
                  keras.layers.SimpleRNN(4, name="l1")]  # the last returns only its final step
    else:
        merge = "concat" if kind == "bidirectional" else None
        layers = [keras.layers.Bidirectional(keras.layers.SimpleRNN(4, return_sequences=True), merge_mode=merge,
                                             name="bi")]
    model = keras.Sequential([keras.Input((None, 3)), *layers])
    path = tmp_path / "model.keras"
    model.save(path)

    out, printed = _build(cli, tmp_path, "--weights", path, "--time-steps", 4, "--batch-size", 2)

    assert printed.count("read ") == 2
    info = tflrnn.inspect(out).to_dict()["subgraphs"][0]
    if kind == "stack":
        assert [op["op"] for op in info["operators"]][-1] == "STRIDED_SLICE"  # return_sequences=False: last step
        x = np.random.default_rng(0).standard_normal((2, 4, 3)).astype(np.float32)
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(out))
        y = interpreter.get_signature_runner("serving_default")(input=x)["output"]
        np.testing.assert_allclose(y, model.predict(x, verbose=0), atol=1e-5)
    report = _verify_against(cli, out, path)
    assert report["against"]["framework"].startswith("keras ")


@pytest.mark.parametrize("layout", [0, 1])
def test_onnx_bidirectional_rnn_against_onnxruntime(tmp_path, cli, layout):
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(layout)
    w = (rng.standard_normal((2, 4, 3)) * 0.4).astype(np.float32)
    r = (rng.standard_normal((2, 4, 4)) * 0.3).astype(np.float32)
    b = (rng.standard_normal((2, 8)) * 0.1).astype(np.float32)
    x_shape = ["B", "T", 3] if layout else ["T", "B", 3]
    node = helper.make_node("RNN", ["X", "W", "R", "B"], ["Y"], name="birnn", hidden_size=4,
                            direction="bidirectional", activations=["Relu", "Relu"], layout=layout)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
                              initializer=[numpy_helper.from_array(a, n) for a, n in ((w, "W"), (r, "R"), (b, "B"))])
    path = tmp_path / "bi.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]), str(path))

    out, printed = _build(cli, tmp_path, "--weights", path, "--time-steps", 5, "--batch-size", 2)
    assert "BIDIRECTIONAL_SEQUENCE_RNN" in printed and printed.count("read ") == 2 and "relu" in printed
    report = _verify_against(cli, out, path)
    assert report["against"]["framework"].startswith("onnxruntime ")


def test_weights_export_refuses_names_that_would_overwrite_each_other(tmp_path, cli):
    head = [Dense("rnn", np.ones((2, 4), np.float32), np.zeros(2, np.float32))]  # rnn/bias, as the cell's
    path = tmp_path / "clash.tflite"
    path.write_bytes(tflrnn.build(tflrnn.RNNCell(4), input_size=3, last_step=True, head=head))
    assert_clean_error(cli("weights", path, "-o", tmp_path / "w.npz"), "would be saved as 'rnn/bias'")
    assert not (tmp_path / "w.npz").exists()


def test_state_dict_layers_must_be_contiguous(tmp_path, cli):
    write_state_dict(tmp_path / "gap.safetensors", (0, 2))
    assert_clean_error(cli("build", "--weights", tmp_path / "gap.safetensors"), "layers [0, 2]")


def test_against_a_source_of_other_cells_is_refused(tmp_path, cli):
    write_state_dict(tmp_path / "one.safetensors", (0,), units=6)
    model = tmp_path / "m.tflite"
    model.write_bytes(tflrnn.build(tflrnn.RNNCell(5), input_size=3))
    assert_clean_error(cli("verify", model, "--against", tmp_path / "one.safetensors"), "not the source of this model")


def test_hybrid_stack_against_is_refused_with_the_reason(tmp_path, cli):
    write_state_dict(tmp_path / "two.safetensors", (0, 1))
    out = tmp_path / "q.tflite"
    assert cli("build", "--weights", tmp_path / "two.safetensors", "--quantize", "int8", "-o", out).code == 0
    assert_clean_error(cli("verify", out, "--against", tmp_path / "two.safetensors"), "hybrid (int8) stack")


@needs_torch
def test_hybrid_against_allows_for_quantization(tmp_path, cli):
    write_state_dict(tmp_path / "one.safetensors", (0,), units=6)
    out = tmp_path / "q.tflite"
    assert cli("build", "--weights", tmp_path / "one.safetensors", "--quantize", "int8", "--time-steps", 5,
               "-o", out).code == 0
    assert cli("verify", out, "--against", tmp_path / "one.safetensors").code == 0


def test_keras_models_that_are_not_one_chain_are_refused(tmp_path, cli):
    keras = pytest.importorskip("keras", reason="needs the test extra")
    x = keras.Input((None, 3))
    a = keras.layers.SimpleRNN(5, return_sequences=True, name="a")(x)
    b = keras.layers.SimpleRNN(4, return_sequences=True, name="b")(x)  # parallel, not stacked
    keras.Model(x, keras.layers.Concatenate()([a, b])).save(tmp_path / "parallel.keras")
    assert_clean_error(cli("build", "--weights", tmp_path / "parallel.keras"), "is not one chain")

    layer = keras.layers.Bidirectional(
        keras.layers.SimpleRNN(4, return_sequences=True),
        backward_layer=keras.layers.SimpleRNN(4, activation="relu", return_sequences=True, go_backwards=True),
        name="bi")
    keras.Sequential([keras.Input((None, 3)), layer]).save(tmp_path / "bw.keras")
    assert_clean_error(cli("build", "--weights", tmp_path / "bw.keras"), "backward layer whose activation differ")
