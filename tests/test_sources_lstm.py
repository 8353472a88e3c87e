"""LSTM weights from every source: real models made in their frameworks (Keras, PyTorch, ONNX, a TF1 graph),
imported with tflrnn.sources and checked by running the imported LSTMWeights through a few lines of numpy written
here (the equations of cells/lstm.py) against the framework's own output; then built and verified with
`verify --against`, and the built model run over consecutive invokes against the framework over the joined
sequence. The refusals, each one line naming the reason; .npz by either naming, and back through `tflrnn weights`.

Every weight and bias is random and non-zero, so a gate-order mix-up (ONNX's i, o, f, c, TF1's i, j, f, o) shows."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from tflrnn.cells.lstm import LSTMWeights
from tflrnn.errors import WeightsError
from tflrnn.sources import import_cell, import_model
from support import assert_clean_error, needs_torch, torch

keras = pytest.importorskip("keras", reason="needs the test extra: pip install 'tflrnn[test]'")
tf = pytest.importorskip("tensorflow", reason="needs the test extra: pip install 'tflrnn[test]'")
onnx = pytest.importorskip("onnx", reason="needs the test extra: pip install 'tflrnn[test]'")
onnxruntime = pytest.importorskip("onnxruntime", reason="needs the test extra: pip install 'tflrnn[test]'")
safetensors_numpy = pytest.importorskip("safetensors.numpy", reason="needs the test extra")

ATOL = 1e-5


# The LSTM in numpy, from the equations alone ----------------------------------------------------------------


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def lstm(x, weights: LSTMWeights, backward=False):
    """Outputs [B,T,U] and the final h of the LSTM over x [B,T,I] from zeros (gates i, f, g, o; a backward direction
    runs from the end and returns its outputs in the input's order, as Keras and PyTorch do)."""
    assert isinstance(weights, LSTMWeights)
    w, r, b = (a.astype(np.float64) for a in (weights.input_weights, weights.recurrent_weights, weights.bias))
    u = weights.num_units
    h, c = np.zeros((x.shape[0], u)), np.zeros((x.shape[0], u))
    y = np.zeros((x.shape[0], x.shape[1], u))
    for t in (range(x.shape[1] - 1, -1, -1) if backward else range(x.shape[1])):
        z = x[:, t].astype(np.float64) @ w.T + h @ r.T + b
        i, f, g, o = _sigmoid(z[:, :u]), _sigmoid(z[:, u:2 * u]), np.tanh(z[:, 2 * u:3 * u]), _sigmoid(z[:, 3 * u:])
        c = f * c + i * g
        h = o * np.tanh(c)
        y[:, t] = h
    return y, h


def stack(x, cells, bidirectional: bool):
    """A stack of layers (each a forward, backward pair when bidirectional), directions joined side by side."""
    step = 2 if bidirectional else 1
    for k in range(0, len(cells), step):
        x = np.concatenate([lstm(x, cells[k + d].weights, backward=d == 1)[0] for d in range(step)], axis=-1)
    return x


def _inputs(batch=2, steps=5, size=3, seed=0):
    return np.random.default_rng(seed).standard_normal((batch, steps, size)).astype(np.float32)


def _randomize(model, seed=0, scale=0.5):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        layer.set_weights([rng.standard_normal(w.shape).astype(np.float32) * scale for w in layer.get_weights()])


def _one_line(exc_info, *fragments):
    message = str(exc_info.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


# Building, verifying, running -------------------------------------------------------------------------------


def _build(cli, *args) -> dict:
    """Built with the portable lowering, named so: these tests are about the sources, whichever lowering an LSTM
    defaults to."""
    lowering = () if "--lowering" in args else ("--lowering", "portable")
    result = cli("build", *args, *lowering, "--json")
    assert result.code == 0, result.err
    return json.loads(result.out)


def _verify_against(cli, model, source, *args) -> dict:
    """verify --against passes, with the source run in its framework on each runtime asked for."""
    result = cli("verify", model, "--against", source, "--json", *args)
    report = json.loads(result.out)
    assert result.code == 0, [c for c in report["checks"] if not c["passed"]]
    against = [c for c in report["checks"] if c["name"].startswith("against.")]
    assert against and all(c["passed"] for c in against)
    assert {c["runtime"] for c in against} >= {"litert"}
    assert all("with the state chained" in c["detail"] for c in against), against
    return report


def _invokes(path, xs: list[np.ndarray]) -> list[np.ndarray]:
    """The model's outputs over consecutive invokes in LiteRT (its state carried from one to the next)."""
    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    (given,), (output,) = interpreter.get_input_details(), interpreter.get_output_details()
    outputs = []
    for x in xs:
        interpreter.set_tensor(given["index"], x)
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(output["index"]).copy())
    return outputs


def _joined(outputs: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(outputs, axis=1)


# Keras ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_keras_lstm_layer(tmp_path, suffix):
    model = keras.Sequential([keras.Input((None, 3)), keras.layers.LSTM(4, return_sequences=True, name="l")])
    _randomize(model, seed=1)
    path = tmp_path / f"lstm{suffix}"
    model.save(path)

    cells, kind, _ = import_model(path)

    assert kind == "cell" and len(cells) == 1
    cell = cells[0]
    assert cell.weights.kind == "lstm" and cell.activation == "tanh" and cell.layer == "l" and cell.has_bias
    assert "LSTM, input_weights [16, 3], recurrent_weights [16, 4], bias [16]" in cell.describe()
    assert cell.weights.bias.all()  # random: no gate's block is zero
    x = _inputs()
    np.testing.assert_allclose(lstm(x, cell.weights)[0], model.predict(x, verbose=0), atol=ATOL)


def test_keras_lstm_without_bias_and_weights_only(tmp_path, cli):
    model = keras.Sequential([keras.Input((None, 3)),
                              keras.layers.LSTM(4, use_bias=False, return_sequences=True, name="l")])
    _randomize(model, seed=2)
    model.save(tmp_path / "m.keras")
    cell = import_cell(tmp_path / "m.keras")
    assert not cell.has_bias and "zero biases" in cell.details and not cell.weights.bias.any()
    x = _inputs()
    np.testing.assert_allclose(lstm(x, cell.weights)[0], model.predict(x, verbose=0), atol=ATOL)

    model.save_weights(tmp_path / "m.weights.h5")  # no config: the kind from the arrays' shapes
    only = import_cell(tmp_path / "m.weights.h5")
    assert only.weights.equals(cell.weights) and not only.has_bias
    out = tmp_path / "m.tflite"
    _build(cli, "--weights", tmp_path / "m.weights.h5", "--time-steps", 5, "--batch-size", 2, "-o", out)
    report = _verify_against(cli, out, tmp_path / "m.weights.h5")
    assert report["against"]["reference"].startswith("keras.layers.LSTM 'l'")


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_keras_lstm_stack_bidirectional_and_dense_head(tmp_path, suffix):
    model = keras.Sequential([
        keras.Input(batch_shape=(None, 6, 3)),
        keras.layers.LSTM(5, return_sequences=True, name="l0"),
        keras.layers.Dropout(0.3),
        keras.layers.Bidirectional(keras.layers.LSTM(4), name="bi"),
        keras.layers.Dense(2, activation="softmax", name="head"),
    ])
    _randomize(model, seed=3)
    path = tmp_path / f"net{suffix}"
    model.save(path)

    cells, kind, options = import_model(path)

    assert kind == "network" and [c.layer for c in cells] == ["l0", "bi/forward", "bi/backward"]
    assert [c.weights.kind for c in cells] == ["lstm"] * 3
    assert options["last_step"] is True and options["bidirectional"] == [False, True] and options["merge"] == "concat"
    assert cells[0].declared.time_steps == 6 and cells[0].declared.time_major is False
    x = _inputs(steps=6)
    h0 = lstm(x, cells[0].weights)[0]
    forward, backward = lstm(h0, cells[1].weights)[1], lstm(h0, cells[2].weights, backward=True)[1]
    (head,) = options["head"]
    logits = np.concatenate([forward, backward], axis=-1) @ head.weights.T.astype(np.float64) + head.bias
    expected = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(expected, model.predict(x, verbose=0), atol=ATOL)


def test_keras_lstm_mixed_with_other_kinds_and_picked_with_layer(tmp_path, cli):
    model = keras.Sequential([keras.Input((None, 3)), keras.layers.SimpleRNN(4, return_sequences=True, name="s"),
                              keras.layers.GRU(5, return_sequences=True, name="g"),
                              keras.layers.LSTM(3, return_sequences=True, name="l")])
    _randomize(model, seed=4, scale=0.4)
    model.save(tmp_path / "mixed.keras")
    cells, kind, _ = import_model(tmp_path / "mixed.keras")
    assert kind == "stack" and [c.weights.kind for c in cells] == ["rnn", "gru", "lstm"]
    picked = import_cell(tmp_path / "mixed.keras", layer="l")
    assert picked.weights.equals(cells[2].weights) and picked.weights.input_size == 5

    out = tmp_path / "mixed.tflite"
    summary = _build(cli, "--weights", tmp_path / "mixed.keras", "--time-steps", 4, "-o", out)
    assert [layer["cell"] for layer in summary["layers"]] == ["rnn", "gru", "lstm"]
    _verify_against(cli, out, tmp_path / "mixed.keras")


def test_cli_builds_a_keras_lstm_stack_that_keras_agrees_with(tmp_path, cli):
    """Two LSTM layers returning sequences: built, verified against Keras on every runtime, and the model over two
    consecutive invokes is Keras over the joined sequence (h and c carried)."""
    model = keras.Sequential([keras.Input((None, 3)), keras.layers.LSTM(5, return_sequences=True, name="l0"),
                              keras.layers.LSTM(4, return_sequences=True, name="l1")])
    _randomize(model, seed=5)
    model.save(tmp_path / "stack.keras")
    out = tmp_path / "stack.tflite"
    summary = _build(cli, "--weights", tmp_path / "stack.keras", "--time-steps", 5, "--batch-size", 2, "-o", out)
    assert summary["output_shape"] == [2, 5, 4]

    report = _verify_against(cli, out, tmp_path / "stack.keras", "--runtime", "all")
    assert {c["runtime"] for c in report["checks"] if c["name"] == "against.keras"} >= {"litert", "micro"}

    xs = [_inputs(seed=10), _inputs(seed=11)]
    joined = np.concatenate(xs, axis=1)
    np.testing.assert_allclose(_joined(_invokes(out, xs)), model.predict(joined, verbose=0), atol=ATOL)


def test_cli_builds_a_keras_lstm_classifier(tmp_path, cli):
    """return_sequences=False on the last LSTM (its final h), then a Dense head: the model's output is the
    classifier's; after a second invoke it is Keras' over both sequences joined."""
    model = keras.Sequential([keras.Input((None, 3)), keras.layers.LSTM(5, name="l"),
                              keras.layers.Dense(3, activation="tanh", name="head")])
    _randomize(model, seed=6)
    model.save(tmp_path / "clf.keras")
    out = tmp_path / "clf.tflite"
    summary = _build(cli, "--weights", tmp_path / "clf.keras", "--time-steps", 5, "--batch-size", 2, "-o", out)
    assert summary["output_shape"] == [2, 3]
    _verify_against(cli, out, tmp_path / "clf.keras")
    xs = [_inputs(seed=12), _inputs(seed=13)]
    first, second = _invokes(out, xs)
    np.testing.assert_allclose(first, model.predict(xs[0], verbose=0), atol=ATOL)
    np.testing.assert_allclose(second, model.predict(np.concatenate(xs, axis=1), verbose=0), atol=ATOL)


def test_cli_builds_a_keras_bidirectional_lstm(tmp_path, cli):
    model = keras.Sequential([keras.Input((None, 3)),
                              keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True), name="bi")])
    _randomize(model, seed=7)
    model.save(tmp_path / "bi.keras")
    out = tmp_path / "bi.tflite"
    _build(cli, "--weights", tmp_path / "bi.keras", "--time-steps", 5, "--batch-size", 2, "-o", out)
    _verify_against(cli, out, tmp_path / "bi.keras")
    x = _inputs(seed=14)
    np.testing.assert_allclose(_invokes(out, [x])[0], model.predict(x, verbose=0), atol=ATOL)


@pytest.mark.parametrize("layer, fragments", [
    (lambda: keras.layers.LSTM(4, activation="relu", name="l"), ("LSTM 'l'", "activation 'relu'", "tanh")),
    (lambda: keras.layers.LSTM(4, recurrent_activation="hard_sigmoid", name="l"),
     ("LSTM 'l'", "recurrent_activation 'hard_sigmoid'", "sigmoid")),
    (lambda: keras.layers.LSTM(4, go_backwards=True, name="l"), ("LSTM 'l'", "go_backwards")),
    (lambda: keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True),
                                        backward_layer=keras.layers.GRU(4, return_sequences=True, go_backwards=True),
                                        name="bi"),
     ("Bidirectional 'bi'", "class")),
    (lambda: keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True), merge_mode="sum", name="bi"),
     ("Bidirectional 'bi'", "'sum'")),
])
def test_keras_lstm_refusals(tmp_path, cli, layer, fragments):
    keras.Sequential([keras.Input((None, 3)), layer()]).save(tmp_path / "bad.keras")
    out = tmp_path / "bad.tflite"
    assert_clean_error(cli("build", "--weights", tmp_path / "bad.keras", "--time-steps", 3, "-o", out), *fragments)
    assert not out.exists()


# PyTorch ----------------------------------------------------------------------------------------------------


def _torch_lstm(input_size=3, units=4, **options):
    torch.manual_seed(0)
    module = torch.nn.LSTM(input_size, units, batch_first=True, **options).eval()
    with torch.no_grad():
        for p in module.parameters():
            p.uniform_(-0.6, 0.6)
    return module


def _torch_output(module, x):
    with torch.no_grad():
        return module(torch.from_numpy(np.ascontiguousarray(x)))[0].numpy()


def _save_state_dict(module, path, prefix=""):
    state = {f"{prefix}{k}": v.detach() for k, v in module.state_dict().items()}
    if path.suffix == ".pt":
        torch.save(state, path)
    else:
        safetensors_numpy.save_file({k: v.numpy() for k, v in state.items()}, str(path))


@needs_torch
@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_torch_lstm_two_layers_bidirectional(tmp_path, suffix):
    module = _torch_lstm(num_layers=2, bidirectional=True)
    path = tmp_path / f"lstm{suffix}"
    _save_state_dict(module, path, "enc.")

    cells, kind, options = import_model(path)

    assert kind == "network" and options["bidirectional"] == [True, True]
    assert [c.layer for c in cells] == ["enc.l0", "enc.l0_reverse", "enc.l1", "enc.l1_reverse"]
    assert all(c.weights.kind == "lstm" and c.activation == "tanh" and c.has_bias for c in cells)
    x = _inputs()
    np.testing.assert_allclose(stack(x, cells, bidirectional=True), _torch_output(module, x), atol=ATOL)


@needs_torch
def test_torch_lstm_layer_index_and_no_bias(tmp_path):
    module = _torch_lstm(num_layers=2, bias=False)
    path = tmp_path / "lstm.safetensors"
    _save_state_dict(module, path)
    cells, kind, _ = import_model(path)
    assert kind == "stack" and all(not c.has_bias and "zero biases" in c.details for c in cells)
    assert not any(c.weights.bias.any() for c in cells)
    x = _inputs()
    np.testing.assert_allclose(stack(x, cells, bidirectional=False), _torch_output(module, x), atol=ATOL)
    second = import_cell(path, layer_index=1)
    assert second.layer == "l1" and second.weights.equals(cells[1].weights)


@needs_torch
@pytest.mark.parametrize("options", [{"num_layers": 2}, {"bidirectional": True}])
def test_cli_builds_a_torch_lstm_that_torch_agrees_with(tmp_path, cli, options):
    module = _torch_lstm(**options)
    path = tmp_path / "lstm.safetensors"
    _save_state_dict(module, path)
    out = tmp_path / "lstm.tflite"
    _build(cli, "--weights", path, "--time-steps", 5, "--batch-size", 2, "-o", out)
    report = _verify_against(cli, out, path)
    assert report["against"]["reference"].startswith("torch.nn.LSTM(")
    xs = [_inputs(seed=20), _inputs(seed=21)]
    if options.get("bidirectional"):  # each invoke's backward direction starts from its own end
        np.testing.assert_allclose(_invokes(out, xs[:1])[0], _torch_output(module, xs[0]), atol=ATOL)
    else:  # h and c carried: torch over the joined sequence
        np.testing.assert_allclose(_joined(_invokes(out, xs)), _torch_output(module, np.concatenate(xs, axis=1)),
                                   atol=ATOL)


@needs_torch
def test_torch_lstm_projection_refused(tmp_path, cli):
    module = torch.nn.LSTM(3, 4, proj_size=2)
    path = tmp_path / "proj.safetensors"
    _save_state_dict(module, path)
    out = tmp_path / "proj.tflite"
    assert_clean_error(cli("build", "--weights", path, "-o", out), "weight_hr_l0", "projection is not supported")
    assert not out.exists()
    with pytest.raises(WeightsError) as caught:  # the .pt too, and not "not supported yet"
        torch.save(module.state_dict(), tmp_path / "proj.pt")
        import_model(tmp_path / "proj.pt")
    _one_line(caught, "proj_size", "projection is not supported")
    assert "not supported yet" not in str(caught.value)


# ONNX -------------------------------------------------------------------------------------------------------


@needs_torch
@pytest.mark.parametrize("bidirectional", [False, True])
def test_torch_onnx_export_of_lstm(tmp_path, bidirectional):
    module = _torch_lstm(num_layers=2, bidirectional=bidirectional)
    path = _export(module, tmp_path / "lstm.onnx")

    cells, kind, _ = import_model(path)

    assert kind == ("network" if bidirectional else "stack") and len(cells) == 2 * (1 + bidirectional)
    assert all(c.weights.kind == "lstm" for c in cells)
    assert cells[0].declared.time_major is False  # batch_first: the graph input through a Transpose
    x = _inputs()
    np.testing.assert_allclose(stack(x, cells, bidirectional=bidirectional), _torch_output(module, x), atol=ATOL)


def _export(module, path):
    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = module

        def forward(self, x):
            return self.lstm(x)[0]

    torch.onnx.export(Model().eval(), (torch.from_numpy(_inputs()),), str(path), dynamo=False, input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {1: "time"}, "y": {1: "time"}})
    return path


def write_onnx_lstm(path, *, layout=0, direction="forward", units=4, input_size=3, seed=0, peepholes=None,
                    initial=None, **attrs):
    """One LSTM node made with onnx.helper: random W, R and B; `peepholes` a P array, `initial` {input index:
    array} for initial_h (5) or initial_c (6) as constants; `attrs` add what tflrnn refuses. X is [T,B,I] in layout 0,
    [B,T,I] in layout 1."""
    from onnx import TensorProto, helper, numpy_helper

    directions = 2 if direction == "bidirectional" else 1
    rng = np.random.default_rng(seed)
    arrays = {"W": rng.standard_normal((directions, 4 * units, input_size)) * 0.5,
              "R": rng.standard_normal((directions, 4 * units, units)) * 0.5,
              "B": rng.standard_normal((directions, 8 * units)) * 0.3}
    inputs = ["X", "W", "R", "B", "", "", "", ""]
    graph_inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["B", "T", input_size] if layout else
                                                  ["T", "B", input_size])]
    if attrs.pop("sequence_lens", False):
        inputs[4] = "lens"
        graph_inputs.append(helper.make_tensor_value_info("lens", TensorProto.INT32, ["B"]))
    for index, value in (initial or {}).items():
        inputs[index] = f"initial{index}"
        arrays[inputs[index]] = value
    if peepholes is not None:
        inputs[7] = "P"
        arrays["P"] = peepholes
    while not inputs[-1]:
        inputs.pop()
    node = helper.make_node("LSTM", inputs, ["Y"], name="lstm", hidden_size=units, direction=direction, layout=layout,
                            **attrs)
    graph = helper.make_graph([node], "g", graph_inputs, [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
                              initializer=[numpy_helper.from_array(np.asarray(a, np.float32), n)
                                           for n, a in arrays.items()])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]), str(path))


def _onnx_output(path, x, layout):
    """The node's Y as [B,T,D*U]: onnxruntime in layout 0 (X [T,B,I]); onnx's reference evaluator in layout 1, which
    onnxruntime does not run."""
    if layout:
        from onnx.reference import ReferenceEvaluator

        (y,) = ReferenceEvaluator(str(path)).run(None, {"X": np.ascontiguousarray(x)})  # Y [B, T, D, U]
    else:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (y,) = session.run(None, {"X": np.ascontiguousarray(np.swapaxes(x, 0, 1))})  # Y [T, D, B, U]
        y = np.transpose(y, (2, 0, 1, 3))
    return y.reshape(y.shape[0], y.shape[1], -1)


@pytest.mark.parametrize("layout", [0, 1])
@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_onnx_lstm_node(tmp_path, layout, direction):
    path = tmp_path / "lstm.onnx"
    directions = 2 if direction == "bidirectional" else 1
    # zero peepholes and zero initial states are what no peepholes and the zero state are: read
    write_onnx_lstm(path, layout=layout, direction=direction, seed=layout, peepholes=np.zeros((directions, 12)),
                    initial={5: np.zeros((directions, 2, 4)), 6: np.zeros((directions, 2, 4))})

    cells, kind, _ = import_model(path)

    assert kind == ("bidirectional" if directions == 2 else "cell")
    assert all(c.weights.kind == "lstm" for c in cells) and cells[0].declared.time_major is (layout == 0)
    x = _inputs()
    np.testing.assert_allclose(stack(x, cells, bidirectional=directions == 2), _onnx_output(path, x, layout),
                               atol=ATOL)


def test_onnx_reference_and_onnxruntime_agree(tmp_path):
    """The two expectations _onnx_output takes, on one layout-0 node (so neither one's reading of ONNX's gate order
    is taken on trust)."""
    from onnx.reference import ReferenceEvaluator

    path = tmp_path / "lstm.onnx"
    write_onnx_lstm(path, direction="bidirectional", seed=3)
    x = np.swapaxes(_inputs(), 0, 1).copy()
    (expected,) = ReferenceEvaluator(str(path)).run(None, {"X": x})
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"X": x})[0], expected, atol=ATOL)


@needs_torch
def test_cli_builds_a_torch_exported_onnx_lstm_that_onnxruntime_agrees_with(tmp_path, cli):
    module = _torch_lstm(num_layers=2)
    path = _export(module, tmp_path / "lstm.onnx")
    out = tmp_path / "lstm.tflite"
    _build(cli, "--weights", path, "--time-steps", 5, "--batch-size", 2, "-o", out)
    report = _verify_against(cli, out, path, "--runtime", "all")
    assert report["against"]["framework"].startswith("onnxruntime")
    xs = [_inputs(seed=30), _inputs(seed=31)]
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (expected,) = session.run(None, {"x": np.concatenate(xs, axis=1)})  # the exported graph, dynamic time
    np.testing.assert_allclose(_joined(_invokes(out, xs)), expected, atol=ATOL)


def test_cli_builds_a_layout_1_bidirectional_onnx_lstm(tmp_path, cli):
    path = tmp_path / "lstm.onnx"
    write_onnx_lstm(path, layout=1, direction="bidirectional", seed=4)
    out = tmp_path / "lstm.tflite"
    summary = _build(cli, "--weights", path, "--time-steps", 5, "--batch-size", 2, "-o", out)
    assert summary["time_major"] is False  # layout 1 is batch-major
    _verify_against(cli, out, path)
    x = _inputs(seed=32)
    np.testing.assert_allclose(_invokes(out, [x])[0], _onnx_output(path, x, layout=1), atol=ATOL)


@pytest.mark.parametrize("options, fragments", [
    ({"clip": 3.0}, ("LSTM node 'lstm'", "clip")),
    ({"activations": ["Sigmoid", "Tanh", "Relu"]}, ("LSTM node 'lstm'", "activations ['Sigmoid', 'Tanh', 'Relu']")),
    ({"activations": ["HardSigmoid", "Tanh", "Tanh"], "activation_alpha": [0.2], "activation_beta": [0.5]},
     ("LSTM node 'lstm'", "activation_alpha")),
    ({"input_forget": 1}, ("LSTM node 'lstm'", "input_forget=1")),
    ({"sequence_lens": True}, ("LSTM node 'lstm'", "sequence_lens")),
    ({"direction": "reverse"}, ("LSTM node 'lstm'", "direction 'reverse'")),
    ({"peepholes": np.full((1, 12), 0.1)}, ("LSTM node 'lstm'", "peephole", "'P'")),
    ({"initial": {5: np.full((1, 1, 4), 0.5)}}, ("LSTM node 'lstm'", "initial state 'initial5'", "zero")),
    ({"initial": {6: np.full((1, 1, 4), 0.5)}}, ("LSTM node 'lstm'", "initial state 'initial6'", "zero")),
])
def test_onnx_lstm_refusals(tmp_path, cli, options, fragments):
    path = tmp_path / "bad.onnx"
    write_onnx_lstm(path, **options)
    out = tmp_path / "bad.tflite"
    assert_clean_error(cli("build", "--weights", path, "--time-steps", 3, "-o", out), *fragments)
    assert not out.exists()


# npz --------------------------------------------------------------------------------------------------------


def _lstm_weights(units=4, input_size=3, seed=0):
    rng = np.random.default_rng(seed)
    return LSTMWeights(*(rng.standard_normal(shape).astype(np.float32) * 0.4 for shape in
                         ((4 * units, input_size), (4 * units, units), (4 * units,))))


@pytest.mark.parametrize("names", ["tflite", "keras"])
@pytest.mark.parametrize("prefix", ["", "enc/"])
def test_npz_lstm_by_role_and_keras_names(tmp_path, names, prefix):
    weights = _lstm_weights()
    arrays = weights.roles() if names == "tflite" else weights.to_keras()
    path = tmp_path / "lstm.npz"
    np.savez(path, **{prefix + k: v for k, v in arrays.items()})
    cell = import_cell(path)
    assert cell.weights.kind == "lstm" and cell.weights.equals(weights) and cell.activation == "tanh"
    assert cell.layer == (prefix.rstrip("/") or None)


def test_npz_lstm_keras_names_are_keras_weights(tmp_path):
    """Keras' own LSTM weights, saved by their Keras names, run as Keras runs them."""
    model = keras.Sequential([keras.Input((None, 3)), keras.layers.LSTM(4, return_sequences=True)])
    _randomize(model, seed=40)
    np.savez(tmp_path / "k.npz", **dict(zip(("kernel", "recurrent_kernel", "bias"), model.layers[0].get_weights())))
    x = _inputs()
    np.testing.assert_allclose(lstm(x, import_cell(tmp_path / "k.npz").weights)[0], model.predict(x, verbose=0),
                               atol=ATOL)


def test_npz_scope_picks_one_of_several_kinds(tmp_path, cli):
    lstm_weights = _lstm_weights(seed=1)
    rng = np.random.default_rng(2)
    gru_arrays = {"input_weights": rng.standard_normal((12, 3)), "recurrent_weights": rng.standard_normal((12, 4)),
                  "bias": rng.standard_normal(12)}
    arrays = {**{f"enc/{k}": v for k, v in lstm_weights.roles().items()},
              **{f"dec/{k}": v for k, v in gru_arrays.items()}}
    np.savez(tmp_path / "two.npz", **arrays)
    assert import_cell(tmp_path / "two.npz", name="enc").weights.equals(lstm_weights)
    assert import_cell(tmp_path / "two.npz", name="dec").weights.kind == "gru"
    out = tmp_path / "enc.tflite"
    summary = _build(cli, "--weights", tmp_path / "two.npz", "--scope", "enc", "--time-steps", 3, "-o", out)
    assert summary["layers"][0]["cell"] == "lstm"


def test_npz_from_tflrnn_weights_round_trips(tmp_path, cli):
    """A Keras LSTM network (an LSTM, a bidirectional LSTM, a Dense head) built, exported by `tflrnn weights` with
    either naming, and built again from the .npz alone: the same bytes, and the same weights Keras holds."""
    model = keras.Sequential([keras.Input((None, 3)), keras.layers.LSTM(5, return_sequences=True, name="l0"),
                              keras.layers.Bidirectional(keras.layers.LSTM(4), name="bi"),
                              keras.layers.Dense(2, name="head")])
    _randomize(model, seed=41)
    model.save(tmp_path / "net.keras")
    built = tmp_path / "net.tflite"
    _build(cli, "--weights", tmp_path / "net.keras", "--time-steps", 4, "-o", built)
    from_keras, _, _ = import_model(tmp_path / "net.keras")
    for names in ("tflite", "keras"):
        npz = tmp_path / f"w-{names}.npz"
        assert cli("weights", built, "-o", npz, "--format", names).code == 0
        cells, kind, options = import_model(npz)
        assert kind == "network" and len(cells) == 3 and options["bidirectional"] == [False, True]
        assert all(c.weights.kind == "lstm" and c.weights.equals(k.weights) for c, k in zip(cells, from_keras))
        again = tmp_path / f"again-{names}.tflite"
        _build(cli, "--weights", npz, "-o", again)
        assert again.read_bytes() == built.read_bytes()


def test_npz_single_lstm_round_trips(tmp_path, cli):
    weights = _lstm_weights(units=3, input_size=2, seed=42)
    np.savez(tmp_path / "w.npz", **weights.roles())
    built = tmp_path / "m.tflite"
    _build(cli, "--weights", tmp_path / "w.npz", "--time-steps", 3, "-o", built)
    for names in ("tflite", "keras"):
        out = tmp_path / f"out-{names}.npz"
        assert cli("weights", built, "-o", out, "--format", names).code == 0
        assert import_cell(out).weights.equals(weights)
        again = tmp_path / f"again-{names}.tflite"
        _build(cli, "--weights", out, "-o", again)
        assert again.read_bytes() == built.read_bytes()


# TF checkpoints ---------------------------------------------------------------------------------------------


def _tf1_graph(tmp_path, make_cell, x, seed=0):
    """Run `make_cell(rnn_cell_impl)` over x in a TF1 graph (dynamic_rnn under the scope 'enc') with every variable
    set to random values, save it; returns (the graph's output, the checkpoint prefix)."""
    from tensorflow.python.keras.layers.legacy_rnn import rnn_cell_impl

    graph = tf.Graph()
    rng = np.random.default_rng(seed)
    with graph.as_default():
        placeholder = tf.compat.v1.placeholder(tf.float32, x.shape)
        with tf.compat.v1.variable_scope("enc"):
            y, _ = tf.compat.v1.nn.dynamic_rnn(make_cell(rnn_cell_impl), placeholder, dtype=tf.float32)
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            for variable in tf.compat.v1.global_variables():
                shape = variable.shape.as_list()
                session.run(variable.assign((rng.standard_normal(shape) * 0.5).astype(np.float32)))
            expected = session.run(y, {placeholder: x})
            prefix = saver.save(session, str(tmp_path / "model.ckpt"))
    return expected, prefix


@pytest.mark.parametrize("cell_class, scope", [("LSTMCell", "enc/rnn/lstm_cell"),
                                               ("BasicLSTMCell", "enc/rnn/basic_lstm_cell")])
def test_tf1_lstm_cell_checkpoint(tmp_path, cli, cell_class, scope):
    """TF1's LSTMCell and BasicLSTMCell (the legacy implementations tf.compat.v1.nn.rnn_cell's were): gates i, j, f,
    o, and forget_bias 1.0 added at run time, which the checkpoint does not store."""
    x = _inputs()
    expected, prefix = _tf1_graph(tmp_path, lambda cells: getattr(cells, cell_class)(4), x)

    found = import_cell(prefix)

    assert found.layer == scope and found.weights.kind == "lstm" and "forget_bias" in found.details
    np.testing.assert_allclose(lstm(x, found.weights)[0], expected, atol=ATOL)
    built = cli("build", "--weights", prefix, "--time-steps", 5, "--batch-size", 2, "--lowering", "portable", "-o",
                tmp_path / "m.tflite")
    assert built.code == 0 and "forget_bias" in built.out, built.err
    _verify_against(cli, tmp_path / "m.tflite", prefix)  # the numpy reference on the variables read
    np.testing.assert_allclose(_invokes(tmp_path / "m.tflite", [x])[0], expected, atol=ATOL)


@pytest.mark.parametrize("lowering", ["fused", "portable"])
def test_tf1_lstm_cell_config_with_its_checkpoint_computes_as_tf1(tmp_path, cli, lowering):
    """A TF1 LSTMCell(forget_bias=0.3, cell_clip=0.2): its checkpoint holds neither, its get_config() both. Built
    from the two, the model computes what TF1 computed (the clip binds: without it the outputs differ)."""
    x = _inputs(steps=12) * 2
    made = {}

    def make(cells):
        made["cell"] = cells.LSTMCell(4, forget_bias=0.3, cell_clip=0.2)
        return made["cell"]

    expected, prefix = _tf1_graph(tmp_path, make, x)
    config = tmp_path / "cell.json"
    config.write_text(json.dumps(made["cell"].get_config()))
    out = tmp_path / "m.tflite"
    built = cli("build", "--weights", prefix, "--config", config, "--time-steps", 12, "--batch-size", 2,
                "--lowering", lowering, "-o", out)
    assert built.code == 0, built.err
    np.testing.assert_allclose(_invokes(out, [x])[0], expected, atol=ATOL)
    plain = tmp_path / "plain.tflite"  # the checkpoint alone: forget_bias 1.0 and no clip, as documented
    assert cli("build", "--weights", prefix, "--time-steps", 12, "--batch-size", 2, "--lowering", lowering, "-o",
               plain).code == 0
    assert np.max(np.abs(_invokes(plain, [x])[0] - expected)) > 1e-2
    assert_clean_error(cli("build", "--config", config, "-o", tmp_path / "x.tflite"),
                       "forget_bias=0.3 with seeded weights")


def test_tf1_lstm_cell_configs_refuse_what_tflrnn_does_not_write(tmp_path, cli):
    for document, message in (({"num_units": 4, "use_peepholes": True}, "use_peepholes=true"),
                              ({"num_units": 4, "num_proj": 2}, "num_proj=2"),
                              ({"num_units": 4, "forget_bias": 1.0, "cell": "gru"}, "name different cells")):
        config = tmp_path / "cell.json"
        config.write_text(json.dumps(document))
        assert_clean_error(cli("build", "--config", config, "-o", tmp_path / "x.tflite"), message)
    # weights other than a TF1 checkpoint's hold their whole forget-gate bias: a forget_bias has nowhere to go
    weights = tmp_path / "w.npz"
    rng = np.random.default_rng(0)
    np.savez(weights, input_weights=rng.standard_normal((16, 3)).astype(np.float32),
             recurrent_weights=rng.standard_normal((16, 4)).astype(np.float32), bias=np.zeros(16, np.float32))
    config.write_text(json.dumps({"num_units": 4, "forget_bias": 1.0}))
    assert_clean_error(cli("build", "--config", config, "--weights", weights, "-o", tmp_path / "x.tflite"),
                       "forget_bias=1 is what a TF1 LSTMCell adds at run time", "the npz weights hold")


def test_tf1_lstm_cell_beside_a_dense_layer(tmp_path, cli):
    """A Dense layer's kernel [U, 8] and bias [8] are shaped like an LSTMCell's (a multiple of 4 columns), and a TF1
    checkpoint says nothing of which is which: building asks for --scope in one line, and reads the scope named."""
    from tensorflow.python.keras.layers.legacy_rnn import rnn_cell_impl

    x = _inputs()
    graph = tf.Graph()
    with graph.as_default():
        placeholder = tf.compat.v1.placeholder(tf.float32, x.shape)
        with tf.compat.v1.variable_scope("enc"):
            y, _ = tf.compat.v1.nn.dynamic_rnn(rnn_cell_impl.LSTMCell(4), placeholder, dtype=tf.float32)
        with tf.compat.v1.variable_scope("head"):  # a Dense layer's variables, as tf.compat.v1.layers.dense names them
            tf.compat.v1.get_variable("kernel", [4, 8])
            tf.compat.v1.get_variable("bias", [8])
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            expected = session.run(y, {placeholder: x})
            prefix = saver.save(session, str(tmp_path / "model.ckpt"))
    out = tmp_path / "m.tflite"
    assert_clean_error(cli("build", "--weights", prefix, "-o", out), "several cells", "--scope")
    assert not out.exists()
    found = import_cell(prefix, name="enc/rnn/lstm_cell")
    assert found.layer == "enc/rnn/lstm_cell" and found.weights.num_units == 4
    np.testing.assert_allclose(lstm(x, found.weights)[0], expected, atol=ATOL)


def test_tf1_multi_rnn_cell_of_lstms_is_a_stack(tmp_path):
    x = _inputs()
    expected, prefix = _tf1_graph(
        tmp_path, lambda cells: cells.MultiRNNCell([cells.LSTMCell(5), cells.LSTMCell(4)]), x, seed=1)
    cells, kind, _ = import_model(prefix)
    assert kind == "stack" and [c.layer for c in cells] == [f"enc/rnn/multi_rnn_cell/cell_{k}/lstm_cell"
                                                            for k in (0, 1)]
    np.testing.assert_allclose(stack(x, cells, bidirectional=False), expected, atol=ATOL)


@pytest.mark.parametrize("options, fragments", [
    ({"use_peepholes": True}, ("LSTMCell 'enc/rnn/lstm_cell'", "peepholes", "w_f_diag")),
    ({"num_proj": 2}, ("LSTMCell 'enc/rnn/lstm_cell'", "projection is not supported")),
])
def test_tf1_lstm_cell_refusals(tmp_path, cli, options, fragments):
    _, prefix = _tf1_graph(tmp_path, lambda cells: cells.LSTMCell(4, **options), _inputs())
    out = tmp_path / "bad.tflite"
    assert_clean_error(cli("build", "--weights", prefix, "-o", out), *fragments)
    assert not out.exists()


def test_keras_lstm_cell_object_checkpoint(tmp_path):
    layer = keras.layers.LSTM(4, return_sequences=True)
    model = keras.Sequential([keras.Input((None, 3)), layer])
    _randomize(model, seed=8)
    prefix = tf.train.Checkpoint(lstm=layer).write(str(tmp_path / "ckpt"))
    found = import_cell(prefix)
    assert found.weights.kind == "lstm" and "forget_bias" not in found.details  # Keras stores its bias whole
    x = _inputs()
    np.testing.assert_allclose(lstm(x, found.weights)[0], model.predict(x, verbose=0), atol=ATOL)


# verify --against's runners, with the state carried -----------------------------------------------------------


def _against(path, xs, **options):
    from tflrnn.against import run_source

    run = run_source(path, xs, activation="tanh", time_major=False, **options)
    return run.outputs, run.reference


def test_against_carries_keras_lstm_states(tmp_path):
    """Two invokes with [h, c] chained are Keras over the joined sequence; a Bidirectional LSTM with merge_mode=None
    (four states) runs too."""
    model = keras.Sequential([keras.Input((None, 3)), keras.layers.LSTM(5, return_sequences=True, name="l0"),
                              keras.layers.LSTM(4, return_sequences=True, name="l1")])
    _randomize(model, seed=50)
    model.save(tmp_path / "m.keras")
    xs = [_inputs(seed=51), _inputs(seed=52)]
    ys, what = _against(tmp_path / "m.keras", xs, whole=True)
    np.testing.assert_allclose(_joined(ys), model.predict(np.concatenate(xs, axis=1), verbose=0), atol=ATOL)
    assert "keras recurrent layers" in what

    both = keras.Sequential([keras.Input((None, 3)), keras.layers.Bidirectional(
        keras.layers.LSTM(4, return_sequences=True), merge_mode=None, name="bi")])
    _randomize(both, seed=53)
    both.save(tmp_path / "both.keras")
    (y,), _ = _against(tmp_path / "both.keras", xs[:1], whole=True)
    np.testing.assert_allclose(y, np.concatenate(both.predict(xs[0], verbose=0), axis=-1), atol=ATOL)


@needs_torch
def test_against_carries_torch_lstm_states(tmp_path):
    module = _torch_lstm(num_layers=2)
    path = tmp_path / "lstm.pt"
    _save_state_dict(module, path)
    xs = [_inputs(seed=54), _inputs(seed=55)]
    ys, what = _against(path, xs, whole=True)
    np.testing.assert_allclose(_joined(ys), _torch_output(module, np.concatenate(xs, axis=1)), atol=ATOL)
    assert what.startswith("torch.nn.LSTM(num_layers=2, bidirectional=False)")


def test_against_carries_onnx_lstm_states(tmp_path):
    path = tmp_path / "lstm.onnx"
    write_onnx_lstm(path, seed=56, peepholes=np.zeros((1, 12)))
    xs = [_inputs(seed=57), _inputs(seed=58)]
    ys, what = _against(path, xs, whole=True)
    np.testing.assert_allclose(_joined(ys), _onnx_output(path, np.concatenate(xs, axis=1), layout=0), atol=ATOL)
    assert what.startswith("onnx LSTM node 'lstm'")
