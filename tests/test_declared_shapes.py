"""The input shape a source model declares (a Keras Input, an ONNX graph input) becomes the model's, unless an
option, a config or a manifest says otherwise; the summary says where each size came from, and verify --against
notes a model whose fixed sizes differ from the source's. Every model here runs in the real LiteRT interpreter."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from support import needs_torch, random_weights, torch, write_onnx_rnn

keras = pytest.importorskip("keras", reason="needs the test extra: pip install 'tflrnn[test]'")
onnx = pytest.importorskip("onnx", reason="needs the test extra: pip install 'tflrnn[test]'")
onnxruntime = pytest.importorskip("onnxruntime", reason="needs the test extra: pip install 'tflrnn[test]'")


def _keras_file(path, shape, batch_size=None, layers=None):
    layers = layers or [keras.layers.SimpleRNN(5, return_sequences=True, name="rnn")]
    model = keras.Sequential([keras.Input(shape, batch_size=batch_size), *layers])
    rng = np.random.default_rng(1)
    for layer in model.layers:
        layer.set_weights([(rng.standard_normal(w.shape) * 0.4).astype(np.float32) for w in layer.get_weights()])
    model.save(path)
    return model


def _build(cli, *args) -> dict:
    result = cli("build", *args, "--json")
    assert result.code == 0, result.err
    return json.loads(result.out)


def _run(path, x: np.ndarray) -> np.ndarray:
    """The model on x, through the classic interpreter API most apps use (resized when the time axis is dynamic)."""
    interpreter = Interpreter(model_path=str(path))
    (detail,) = interpreter.get_input_details()
    if list(detail["shape"]) != list(x.shape):
        interpreter.resize_tensor_input(detail["index"], list(x.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def _against(cli, model, source) -> dict:
    result = cli("verify", model, "--against", source, "--json")
    report = json.loads(result.out)
    assert result.code == 0, [c for c in report["checks"] if not c["passed"]]
    return report


def test_keras_fixed_time_steps(tmp_path, cli):
    source = tmp_path / "m.keras"
    model = _keras_file(source, (20, 8))
    summary = _build(cli, "--weights", source, "-o", tmp_path / "m.tflite")
    assert summary["input_shape"] == [1, 20, 8] and summary["output_shape"] == [1, 20, 5]
    assert summary["sizes_from"] == {"input_size": "the weights", "time_steps": "the Keras Input",
                                     "batch_size": "default", "time_major": "the Keras Input"}
    assert summary["source"]["declared_input"] == {"origin": "the Keras Input", "time_steps": 20, "time_major": False}
    x = np.random.default_rng(0).standard_normal((1, 20, 8)).astype(np.float32)
    np.testing.assert_allclose(_run(tmp_path / "m.tflite", x), model.predict(x, verbose=0), atol=1e-5)
    report = _against(cli, tmp_path / "m.tflite", source)  # at the declared length, 20 steps
    assert report["notes"] == []


def test_keras_unknown_time_is_dynamic(tmp_path, cli):
    source = tmp_path / "m.h5"
    model = _keras_file(source, (None, 6))
    summary = _build(cli, "--weights", source, "-o", tmp_path / "m.tflite")
    assert summary["input_shape"] == [1, -1, 6] and summary["sizes_from"]["time_steps"] == "the Keras Input"
    for steps in (3, 11):
        x = np.random.default_rng(steps).standard_normal((1, steps, 6)).astype(np.float32)
        np.testing.assert_allclose(_run(tmp_path / "m.tflite", x), model.predict(x, verbose=0), atol=1e-5)
    _against(cli, tmp_path / "m.tflite", source)


def test_keras_fixed_batch(tmp_path, cli):
    source = tmp_path / "m.keras"
    model = _keras_file(source, (7, 6), batch_size=2)
    summary = _build(cli, "--weights", source, "-o", tmp_path / "m.tflite")
    assert summary["input_shape"] == [2, 7, 6] and summary["state_shape"] == [2, 5]
    assert summary["sizes_from"]["batch_size"] == "the Keras Input"
    x = np.random.default_rng(0).standard_normal((2, 7, 6)).astype(np.float32)
    np.testing.assert_allclose(_run(tmp_path / "m.tflite", x), model.predict(x, verbose=0), atol=1e-5)
    assert _against(cli, tmp_path / "m.tflite", source)["notes"] == []


@pytest.mark.parametrize("where", ["InputLayer", "first layer"])
def test_keras_2_batch_input_shape(tmp_path, cli, where):
    """Keras 2 (tf_keras) writes batch_input_shape, on the InputLayer or, without one, on the first layer."""
    source = tmp_path / "m.h5"
    _keras_file(source, (9, 4), batch_size=3)
    with h5py.File(source, "r+") as h5:
        config = json.loads(h5.attrs["model_config"])
        layers = config["config"]["layers"]
        shape = layers[0]["config"].pop("batch_shape")
        if where == "InputLayer":
            layers[0]["config"]["batch_input_shape"] = shape
        else:
            layers.pop(0)
            layers[0]["config"]["batch_input_shape"] = shape
        h5.attrs["model_config"] = json.dumps(config)
    summary = _build(cli, "--weights", source, "-o", tmp_path / "m.tflite")
    assert summary["input_shape"] == [3, 9, 4]


def test_keras_stack_and_picked_layer(tmp_path, cli):
    source = tmp_path / "m.keras"
    _keras_file(source, (12, 3), layers=[keras.layers.SimpleRNN(4, return_sequences=True, name="a"),
                                         keras.layers.Dropout(0.1),
                                         keras.layers.SimpleRNN(5, return_sequences=True, name="b")])
    assert _build(cli, "--weights", source, "-o", tmp_path / "stack.tflite")["input_shape"] == [1, 12, 3]
    _against(cli, tmp_path / "stack.tflite", source)
    # The second layer sees the model's time axis unchanged: the declared length holds for it too.
    picked = _build(cli, "--weights", source, "--layer", "b", "-o", tmp_path / "b.tflite")
    assert picked["input_shape"] == [1, 12, 4] and picked["sizes_from"]["time_steps"] == "the Keras Input"


def test_a_layer_that_changes_the_time_axis_declares_nothing(tmp_path, cli):
    source = tmp_path / "m.keras"
    _keras_file(source, (12, 3), layers=[keras.layers.Conv1D(4, 3, name="conv"),
                                         keras.layers.SimpleRNN(5, return_sequences=True, name="rnn")])
    summary = _build(cli, "--weights", source, "--layer", "rnn", "-o", tmp_path / "m.tflite")
    assert summary["input_shape"] == [1, 1, 4] and summary["sizes_from"]["time_steps"] == "default"


def test_options_config_and_manifest_override_the_declared_shape(tmp_path, cli):
    source = tmp_path / "m.keras"
    _keras_file(source, (20, 8), batch_size=2)
    summary = _build(cli, "--weights", source, "--time-steps", 1, "-o", tmp_path / "m.tflite")
    assert summary["input_shape"] == [2, 1, 8]
    assert summary["sizes_from"]["time_steps"] == "the command line"
    assert summary["sizes_from"]["batch_size"] == "the Keras Input"
    printed = cli("build", "--weights", source, "--time-steps", 1, "-o", tmp_path / "m.tflite").out
    assert "time_steps 1 (from the command line), batch_size 2 (from the Keras Input)" in printed
    # A streaming model built on purpose: verify passes and notes the difference.
    report = _against(cli, tmp_path / "m.tflite", source)
    assert report["notes"] == ["the Keras Input declares 20 time steps; this model takes 1 per invoke"]
    text = cli("verify", tmp_path / "m.tflite", "--against", source).out
    assert "note: the Keras Input declares 20 time steps; this model takes 1 per invoke" in text

    config = tmp_path / "cell.json"
    config.write_text('{"batch_size": 1}')
    summary = _build(cli, "--weights", source, "--config", config, "-o", tmp_path / "m.tflite")
    assert summary["input_shape"] == [1, 20, 8] and summary["sizes_from"]["batch_size"] == "the config"

    manifest = tmp_path / "models.toml"
    manifest.write_text('[[models]]\nname = "short"\nweights = "m.keras"\ntime_steps = 4\n\n'
                        '[[models]]\nname = "declared"\nweights = "m.keras"\n')
    assert cli("build", "--manifest", manifest, "--out-dir", tmp_path / "out").code == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    shapes = {m["name"]: m["input_shape"] for m in report["models"]}
    assert shapes == {"short": [2, 4, 8], "declared": [2, 20, 8]}


@pytest.mark.parametrize("layout, dims, expected", [
    (0, [5, 3, 3], ([5, 3, 3], True)),       # [T, B, I]: time-major
    (1, [3, 5, 3], ([3, 5, 3], False)),      # [B, T, I]: batch-major
    (0, ["T", 2, 3], ([-1, 2, 3], True)),    # an unknown length: dynamic
    (0, [5, "B", 3], ([5, 1, 3], True)),     # an unknown batch stays 1
])
def test_onnx_graph_input(tmp_path, cli, layout, dims, expected):
    source = tmp_path / "rnn.onnx"
    w, r, b = write_onnx_rnn(source, dims, layout).arrays()
    summary = _build(cli, "--weights", source, "-o", tmp_path / "m.tflite")
    assert (summary["input_shape"], summary["time_major"]) == expected
    assert summary["sizes_from"]["time_major"] == "the ONNX graph input 'X'"
    shape = [d if isinstance(d, int) else 7 if d == "T" else 1 for d in dims]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    # The ONNX RNN's own equations on x as the file's layout has it (onnxruntime refuses layout 1 outright;
    # verify --against runs it in layout 0 on rearranged data).
    steps = x if layout == 0 else np.swapaxes(x, 0, 1)
    h, expected = np.zeros((steps.shape[1], 4)), []
    for x_t in steps.astype(np.float64):
        h = np.tanh(x_t @ w.T + h @ r.T + b)
        expected.append(h)
    expected = np.stack(expected) if layout == 0 else np.stack(expected, axis=1)
    np.testing.assert_allclose(_run(tmp_path / "m.tflite", x), expected, atol=1e-5)
    assert _against(cli, tmp_path / "m.tflite", source)["notes"] == []


def test_onnx_layout_overridden_is_noted(tmp_path, cli):
    source = tmp_path / "rnn.onnx"
    write_onnx_rnn(source, [5, 3, 3], 0)
    summary = _build(cli, "--weights", source, "--batch-major", "-o", tmp_path / "m.tflite")
    assert summary["input_shape"] == [3, 5, 3] and summary["sizes_from"]["time_major"] == "the command line"
    notes = _against(cli, tmp_path / "m.tflite", source)["notes"]
    assert notes == ["the ONNX graph input 'X' is time-major [T, B, I]; this model is batch-major [B, T, I]"]


def test_sources_without_a_shape_keep_the_defaults(tmp_path, cli):
    np.savez(tmp_path / "w.npz", **dict(zip(("input_weights", "recurrent_weights", "bias"), random_weights(4, 3))))
    summary = _build(cli, "--weights", tmp_path / "w.npz", "-o", tmp_path / "m.tflite")
    assert summary["input_shape"] == [1, 1, 3]
    assert summary["sizes_from"] == {"input_size": "the weights", "time_steps": "default", "batch_size": "default",
                                     "time_major": "default"}


@needs_torch
@pytest.mark.parametrize("batch_first", [False, True])
def test_torch_onnx_export_declares_its_shape(tmp_path, cli, batch_first):
    """torch.onnx.export writes the example input's dims: [T, B, I] into the RNN node, or [B, T, I] through a
    Transpose for batch_first=True. The model takes what the exported graph takes."""
    torch.manual_seed(0)

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = torch.nn.RNN(4, 6, batch_first=batch_first)

        def forward(self, x):
            return self.rnn(x)[0]

    shape = (3, 5, 4) if batch_first else (5, 3, 4)
    source = tmp_path / "rnn.onnx"
    torch.onnx.export(Model().eval(), (torch.randn(*shape),), str(source), dynamo=False)
    summary = _build(cli, "--weights", source, "-o", tmp_path / "m.tflite")
    assert summary["input_shape"] == list(shape) and summary["time_major"] is not batch_first
    assert {summary["sizes_from"][key] for key in ("time_steps", "batch_size", "time_major")} == {
        "the ONNX graph input 'input'"}
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    session = onnxruntime.InferenceSession(str(source), providers=["CPUExecutionProvider"])
    expected = session.run(None, {session.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(_run(tmp_path / "m.tflite", x), expected, atol=1e-5)
    assert _against(cli, tmp_path / "m.tflite", source)["notes"] == []
