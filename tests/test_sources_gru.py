"""GRU weights from every source: real models made in their frameworks, imported with tflrnn.sources, and checked by
running the imported GRUWeights through a few lines of numpy written here (the equations of cells/gru.py) against
the framework's own output. Then the refusals, each one line naming the reason, and `verify --against`'s runners."""

from __future__ import annotations

import numpy as np
import pytest

from tflrnn.cells.gru import GRUWeights
from tflrnn.errors import TflrnnError, WeightsError
from tflrnn.sources import import_cell, import_model
from support import needs_torch, torch

keras = pytest.importorskip("keras", reason="needs the test extra: pip install 'tflrnn[test]'")
tf = pytest.importorskip("tensorflow", reason="needs the test extra: pip install 'tflrnn[test]'")
onnx = pytest.importorskip("onnx", reason="needs the test extra: pip install 'tflrnn[test]'")
safetensors_numpy = pytest.importorskip("safetensors.numpy", reason="needs the test extra")

ATOL = 1e-5


# The GRU in numpy, from the equations alone -----------------------------------------------------------------


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def gru(x, weights: GRUWeights, h=None, backward=False):
    """Outputs [B,T,U] and the final state of the GRU over x [B,T,I] (a backward direction runs from the end and
    returns its outputs in the input's order, as Keras and PyTorch do)."""
    assert isinstance(weights, GRUWeights)
    w, r, b = (a.astype(np.float64) for a in (weights.input_weights, weights.recurrent_weights, weights.bias))
    c = None if weights.recurrent_bias is None else weights.recurrent_bias.astype(np.float64)
    u = weights.num_units
    h = np.zeros((x.shape[0], u)) if h is None else h.astype(np.float64)
    steps = range(x.shape[1] - 1, -1, -1) if backward else range(x.shape[1])
    y = np.zeros((x.shape[0], x.shape[1], u))
    for t in steps:
        xw = x[:, t].astype(np.float64) @ w.T + b
        z = _sigmoid(xw[:, :u] + h @ r[:u].T + (0 if c is None else c[:u]))
        reset = _sigmoid(xw[:, u:2 * u] + h @ r[u:2 * u].T + (0 if c is None else c[u:2 * u]))
        if c is not None:  # reset after the recurrent product
            n = np.tanh(xw[:, 2 * u:] + reset * (h @ r[2 * u:].T + c[2 * u:]))
        else:  # reset before it
            n = np.tanh(xw[:, 2 * u:] + (reset * h) @ r[2 * u:].T)
        h = z * h + (1 - z) * n
        y[:, t] = h
    return y, h


def stack(x, cells, bidirectional: bool):
    """A stack of layers (each a forward, backward pair when bidirectional), directions joined side by side."""
    step = 2 if bidirectional else 1
    for k in range(0, len(cells), step):
        outputs = [gru(x, cells[k + d].weights, backward=d == 1)[0] for d in range(step)]
        x = np.concatenate(outputs, axis=-1)
    return x


def _inputs(batch=2, steps=6, size=4, seed=0):
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


# Keras ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_keras_gru_layer(tmp_path, reset_after, suffix):
    model = keras.Sequential([keras.Input((None, 4)),
                              keras.layers.GRU(5, reset_after=reset_after, return_sequences=True, name="g")])
    _randomize(model, seed=int(reset_after))
    path = tmp_path / f"gru{suffix}"
    model.save(path)

    cells, kind, options = import_model(path)

    assert kind == "cell" and len(cells) == 1
    cell = cells[0]
    assert cell.weights.kind == "gru" and cell.weights.reset_after is reset_after and cell.activation == "tanh"
    assert cell.layer == "g" and "GRU (reset" in cell.describe()
    x = _inputs()
    np.testing.assert_allclose(gru(x, cell.weights)[0], model.predict(x, verbose=0), atol=ATOL)


@pytest.mark.parametrize("reset_after", [True, False])
def test_keras_gru_without_bias_and_weights_only(tmp_path, reset_after):
    model = keras.Sequential([keras.Input((None, 3)), keras.layers.GRU(4, use_bias=False, reset_after=reset_after,
                                                                       return_sequences=True, name="g")])
    _randomize(model, seed=3)
    model.save(tmp_path / "m.keras")
    cell = import_cell(tmp_path / "m.keras")
    assert not cell.has_bias and "zero biases" in cell.details and not cell.weights.bias.any()
    assert cell.weights.reset_after is reset_after  # from the config, not guessed
    x = _inputs(size=3)
    np.testing.assert_allclose(gru(x, cell.weights)[0], model.predict(x, verbose=0), atol=ATOL)

    model.save_weights(tmp_path / "m.weights.h5")  # no config: reset_after as its bias says, else Keras' default
    only = import_cell(tmp_path / "m.weights.h5")
    assert only.weights.kind == "gru" and only.weights.reset_after is True
    if reset_after:
        np.testing.assert_allclose(gru(x, only.weights)[0], model.predict(x, verbose=0), atol=ATOL)


def test_keras_gru_weights_only_with_bias_tells_reset_after_by_shape(tmp_path):
    for reset_after in (True, False):
        model = keras.Sequential([keras.Input((None, 3)),
                                  keras.layers.GRU(4, reset_after=reset_after, return_sequences=True, name="g")])
        _randomize(model, seed=4)
        model.save_weights(tmp_path / "w.weights.h5")
        cell = import_cell(tmp_path / "w.weights.h5")
        assert cell.weights.reset_after is reset_after
        x = _inputs(size=3)
        np.testing.assert_allclose(gru(x, cell.weights)[0], model.predict(x, verbose=0), atol=ATOL)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_keras_gru_stack_bidirectional_and_dense_head(tmp_path, suffix):
    model = keras.Sequential([
        keras.Input(batch_shape=(None, 7, 3)),
        keras.layers.GRU(5, return_sequences=True, name="g0"),
        keras.layers.Dropout(0.3),
        keras.layers.Bidirectional(keras.layers.GRU(4, reset_after=False), name="bi"),
        keras.layers.Dense(2, activation="softmax", name="head"),
    ])
    _randomize(model, seed=5)
    path = tmp_path / f"net{suffix}"
    model.save(path)

    cells, kind, options = import_model(path)

    assert kind == "network" and [c.layer for c in cells] == ["g0", "bi/forward", "bi/backward"]
    assert [c.weights.reset_after for c in cells] == [True, False, False]
    assert options["last_step"] is True and options["bidirectional"] == [False, True] and options["merge"] == "concat"
    assert cells[0].declared.time_steps == 7 and cells[0].declared.time_major is False
    x = _inputs(steps=7, size=3)
    h0 = gru(x, cells[0].weights)[0]
    forward = gru(h0, cells[1].weights)[1]
    backward = gru(h0, cells[2].weights, backward=True)[1]
    (head,) = options["head"]
    logits = np.concatenate([forward, backward], axis=-1) @ head.weights.T.astype(np.float64) + head.bias
    expected = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(expected, model.predict(x, verbose=0), atol=ATOL)


def test_keras_gru_picked_with_layer_and_mixed_kinds(tmp_path):
    model = keras.Sequential([keras.Input((None, 3)), keras.layers.SimpleRNN(4, return_sequences=True, name="s"),
                              keras.layers.GRU(5, return_sequences=True, name="g")])
    _randomize(model, seed=6)
    model.save(tmp_path / "mixed.keras")
    cells, kind, _ = import_model(tmp_path / "mixed.keras")
    assert kind == "stack" and [c.weights.kind for c in cells] == ["rnn", "gru"]  # each cell carries its kind
    picked = import_cell(tmp_path / "mixed.keras", layer="g")
    assert picked.weights.equals(cells[1].weights) and picked.weights.input_size == 4


@pytest.mark.parametrize("layer, fragments", [
    (lambda: keras.layers.GRU(4, activation="relu", name="g"), ("GRU 'g'", "activation 'relu'", "tanh")),
    (lambda: keras.layers.GRU(4, recurrent_activation="hard_sigmoid", name="g"),
     ("GRU 'g'", "recurrent_activation 'hard_sigmoid'", "sigmoid")),
    (lambda: keras.layers.GRU(4, go_backwards=True, name="g"), ("GRU 'g'", "go_backwards")),
    (lambda: keras.layers.Bidirectional(keras.layers.GRU(4, return_sequences=True),
                                        backward_layer=keras.layers.SimpleRNN(4, return_sequences=True,
                                                                              go_backwards=True), name="bi"),
     ("Bidirectional 'bi'", "class")),
])
def test_keras_gru_refusals(tmp_path, layer, fragments):
    keras.Sequential([keras.Input((None, 3)), layer()]).save(tmp_path / "bad.keras")
    with pytest.raises(WeightsError) as caught:
        import_model(tmp_path / "bad.keras")
    _one_line(caught, *fragments)


def test_keras_lstm_is_its_own_kind(tmp_path):
    """An LSTM is read as an LSTM (tests/test_sources_lstm.py), never as a GRU."""
    keras.Sequential([keras.Input((5, 4)), keras.layers.LSTM(3)]).save(tmp_path / "lstm.keras")
    cells, _, _ = import_model(tmp_path / "lstm.keras")
    assert [c.weights.kind for c in cells] == ["lstm"]


# PyTorch ----------------------------------------------------------------------------------------------------


def _torch_gru(**options):
    torch.manual_seed(0)
    module = torch.nn.GRU(3, 5, batch_first=True, **options).eval()
    with torch.no_grad():
        for p in module.parameters():
            p.uniform_(-0.6, 0.6)
    return module


@needs_torch
@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_torch_gru_two_layers_bidirectional(tmp_path, suffix):
    module = _torch_gru(num_layers=2, bidirectional=True)
    path = tmp_path / f"gru{suffix}"
    state = {f"enc.{k}": v for k, v in module.state_dict().items()}
    if suffix == ".pt":
        torch.save(state, path)
    else:
        safetensors_numpy.save_file({k: v.numpy() for k, v in state.items()}, str(path))

    cells, kind, options = import_model(path)

    assert kind == "network" and options["bidirectional"] == [True, True]
    assert [c.layer for c in cells] == ["enc.l0", "enc.l0_reverse", "enc.l1", "enc.l1_reverse"]
    assert all(c.weights.kind == "gru" and c.weights.reset_after and c.activation == "tanh" for c in cells)
    x = _inputs(size=3)
    with torch.no_grad():
        expected = module(torch.from_numpy(x))[0].numpy()
    np.testing.assert_allclose(stack(x, cells, bidirectional=True), expected, atol=ATOL)


@needs_torch
def test_torch_gru_layer_index_and_no_bias(tmp_path):
    module = _torch_gru(num_layers=2, bias=False)
    path = tmp_path / "gru.safetensors"
    safetensors_numpy.save_file({k: v.numpy() for k, v in module.state_dict().items()}, str(path))
    cells, kind, _ = import_model(path)
    assert kind == "stack" and all(not c.has_bias and "zero biases" in c.details for c in cells)
    x = _inputs(size=3)
    with torch.no_grad():
        expected = module(torch.from_numpy(x))[0].numpy()
    np.testing.assert_allclose(stack(x, cells, bidirectional=False), expected, atol=ATOL)
    second = import_cell(path, layer_index=1)
    assert second.layer == "l1" and second.weights.equals(cells[1].weights)


@needs_torch
def test_torch_lstm_read_as_lstm_and_odd_shapes_refused(tmp_path):
    lstm = torch.nn.LSTM(3, 4)
    safetensors_numpy.save_file({k: v.detach().numpy() for k, v in lstm.state_dict().items()},
                                str(tmp_path / "lstm.safetensors"))
    assert import_cell(tmp_path / "lstm.safetensors").weights.kind == "lstm"  # tests/test_sources_lstm.py

    odd = {"weight_ih_l0": np.zeros((8, 3), np.float32), "weight_hh_l0": np.zeros((8, 4), np.float32)}
    safetensors_numpy.save_file(odd, str(tmp_path / "odd.safetensors"))
    with pytest.raises(WeightsError) as caught:
        import_cell(tmp_path / "odd.safetensors")
    _one_line(caught, "neither nn.RNN", "nn.GRU")

    mixed = {**{k: v.detach().numpy() for k, v in torch.nn.GRU(3, 4).state_dict().items()},
             "weight_ih_l1": np.zeros((4, 4), np.float32), "weight_hh_l1": np.zeros((4, 4), np.float32)}
    safetensors_numpy.save_file(mixed, str(tmp_path / "mixed.safetensors"))
    with pytest.raises(WeightsError) as caught:
        import_model(tmp_path / "mixed.safetensors")
    _one_line(caught, "one kind of cell")


# ONNX -------------------------------------------------------------------------------------------------------


@needs_torch
@pytest.mark.parametrize("bidirectional", [False, True])
def test_torch_onnx_export_of_gru(tmp_path, bidirectional):
    module = _torch_gru(num_layers=2, bidirectional=bidirectional)

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = module

        def forward(self, x):
            return self.gru(x)[0]

    path = tmp_path / "gru.onnx"
    x = _inputs(size=3)
    torch.onnx.export(Model().eval(), (torch.from_numpy(x),), str(path), dynamo=False)

    cells, kind, _ = import_model(path)

    assert kind == ("network" if bidirectional else "stack") and len(cells) == 2 * (1 + bidirectional)
    assert all(c.weights.reset_after for c in cells)  # linear_before_reset=1
    assert "linear_before_reset=1" in cells[0].details
    assert cells[0].declared.time_major is False  # batch_first: the graph input through a Transpose
    with torch.no_grad():
        expected = module(torch.from_numpy(x))[0].numpy()
    np.testing.assert_allclose(stack(x, cells, bidirectional=bidirectional), expected, atol=ATOL)


def write_onnx_gru(path, *, layout=0, direction="forward", linear_before_reset=0, units=4, input_size=3, seed=0,
                   **attrs):
    """One GRU node made with onnx.helper; `attrs` add what tflrnn refuses. Returns the node's arrays."""
    from onnx import TensorProto, helper, numpy_helper

    directions = 2 if direction == "bidirectional" else 1
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((directions, 3 * units, input_size)) * 0.5).astype(np.float32)
    r = (rng.standard_normal((directions, 3 * units, units)) * 0.5).astype(np.float32)
    b = (rng.standard_normal((directions, 6 * units)) * 0.3).astype(np.float32)
    inputs = ["X", "W", "R", "B"]
    graph_inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["B", "T", input_size] if layout else
                                                  ["T", "B", input_size])]
    if attrs.pop("sequence_lens", False):
        inputs.append("lens")
        graph_inputs.append(helper.make_tensor_value_info("lens", TensorProto.INT32, ["B"]))
    node = helper.make_node("GRU", inputs, ["Y"], name="gru", hidden_size=units, direction=direction, layout=layout,
                            linear_before_reset=linear_before_reset, **attrs)
    graph = helper.make_graph([node], "g", graph_inputs, [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
                              initializer=[numpy_helper.from_array(a, n) for a, n in ((w, "W"), (r, "R"), (b, "B"))])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]), str(path))
    return w, r, b


def _onnx_gru_output(path, x, layout):
    """The node's Y [B,T,D*U], by onnx's reference evaluator (it runs either layout)."""
    from onnx.reference import ReferenceEvaluator

    feed = x if layout else np.swapaxes(x, 0, 1)
    (y,) = ReferenceEvaluator(str(path)).run(None, {"X": np.ascontiguousarray(feed)})
    # layout 0: Y [T, D, B, U]; layout 1: Y [B, T, D, U]
    y = y if layout else np.transpose(y, (2, 0, 1, 3))
    return y.reshape(y.shape[0], y.shape[1], -1)


@pytest.mark.parametrize("layout", [0, 1])
@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
@pytest.mark.parametrize("linear_before_reset", [0, 1])
def test_onnx_gru_node(tmp_path, layout, direction, linear_before_reset):
    path = tmp_path / "gru.onnx"
    write_onnx_gru(path, layout=layout, direction=direction, linear_before_reset=linear_before_reset, seed=layout)

    cells, kind, _ = import_model(path)

    assert kind == ("bidirectional" if direction == "bidirectional" else "cell")
    assert all(c.weights.reset_after is bool(linear_before_reset) for c in cells)
    assert cells[0].declared.time_major is (layout == 0)
    x = _inputs(size=3)
    np.testing.assert_allclose(stack(x, cells, bidirectional=direction == "bidirectional"),
                               _onnx_gru_output(path, x, layout), atol=ATOL)


@pytest.mark.parametrize("attrs, fragments", [
    ({"clip": 3.0}, ("GRU node 'gru'", "clip")),
    ({"activations": ["Sigmoid", "Relu"]}, ("GRU node 'gru'", "activations ['Sigmoid', 'Relu']")),
    ({"activations": ["HardSigmoid", "Tanh"], "activation_alpha": [0.2], "activation_beta": [0.5]},
     ("GRU node 'gru'", "activation_alpha")),
    ({"sequence_lens": True}, ("GRU node 'gru'", "sequence_lens")),
    ({"direction": "reverse"}, ("GRU node 'gru'", "direction 'reverse'")),
])
def test_onnx_gru_refusals(tmp_path, attrs, fragments):
    path = tmp_path / "bad.onnx"
    write_onnx_gru(path, **attrs)
    with pytest.raises(WeightsError) as caught:
        import_model(path)
    _one_line(caught, *fragments)


# npz --------------------------------------------------------------------------------------------------------


def _gru_weights(units=4, input_size=3, reset_after=True, seed=0):
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(shape).astype(np.float32) * 0.4 for shape in
              ((3 * units, input_size), (3 * units, units), (3 * units,))]
    return GRUWeights(*arrays, rng.standard_normal(3 * units).astype(np.float32) * 0.2 if reset_after else None)


@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("names", ["tflite", "keras"])
@pytest.mark.parametrize("prefix", ["", "enc/"])
def test_npz_gru_by_role_and_keras_names(tmp_path, reset_after, names, prefix):
    weights = _gru_weights(reset_after=reset_after)
    arrays = weights.roles() if names == "tflite" else weights.to_keras()
    path = tmp_path / "gru.npz"
    np.savez(path, **{prefix + k: v for k, v in arrays.items()})
    cell = import_cell(path)
    assert cell.weights.equals(weights) and cell.activation == "tanh"
    assert cell.layer == (prefix.rstrip("/") or None)


def test_npz_basic_cell_unchanged(tmp_path):
    rng = np.random.default_rng(0)
    w, r, b = rng.standard_normal((4, 3)), rng.standard_normal((4, 4)), rng.standard_normal(4)
    np.savez(tmp_path / "rnn.npz", input_weights=w, recurrent_weights=r, bias=b)
    cell = import_cell(tmp_path / "rnn.npz")
    assert cell.weights.kind == "rnn" and cell.activation is None


def test_npz_network_record_of_grus_round_trips(tmp_path):
    """The .npz `tflrnn weights` writes for a bidirectional GRU layer then a GRU layer and a Dense head: each
    direction's roles under <layer>/fw, <layer>/bw, and the record naming them."""
    import json

    from tflrnn.sources.npz import NETWORK_KEY

    fw, bw, top = _gru_weights(seed=1), _gru_weights(seed=2, reset_after=False), _gru_weights(input_size=8, seed=3)
    arrays = {}
    for name, weights in (("bi/fw", fw), ("bi/bw", bw), ("top", top)):
        arrays.update({f"{name}/{role}": a for role, a in weights.roles().items()})
    arrays.update({"head/kernel": np.ones((2, 4), np.float32), "head/bias": np.zeros(2, np.float32)})
    record = {"tflrnn_network": 1, "names": "tflite", "dense": [{"name": "head", "activation": "linear"}],
              "layers": [{"name": "bi", "activation": "tanh", "bidirectional": True},
                         {"name": "top", "activation": "tanh", "bidirectional": False}],
              "time_steps": 5, "batch_size": 1, "time_major": False, "last_step": True, "lowering": "portable"}
    arrays[NETWORK_KEY] = np.frombuffer(json.dumps(record).encode(), np.uint8)
    np.savez(tmp_path / "net.npz", **arrays)

    cells, kind, options = import_model(tmp_path / "net.npz")

    assert kind == "network" and [c.layer for c in cells] == ["bi/fw", "bi/bw", "top"]
    assert [c.weights.equals(w) for c, w in zip(cells, (fw, bw, top))] == [True] * 3
    assert options["bidirectional"] == [True, False] and options["head"][0].name == "head"


def test_npz_exported_by_tflrnn_weights_round_trips(tmp_path, cli):
    """Through the real commands, when the builder writes GRUs: build, export, read back the same weights."""
    import tflrnn
    from tflrnn.cells.gru import GRUCell

    weights = _gru_weights(units=4, input_size=3, seed=7)
    try:
        data = tflrnn.build(GRUCell(4), weights=weights, input_size=3, time_steps=3)
    except TflrnnError as exc:
        pytest.skip(f"the builder does not write this GRU yet: {exc}")
    (tmp_path / "gru.tflite").write_bytes(data)
    for names in ("tflite", "keras"):
        out = tmp_path / f"w-{names}.npz"
        assert cli("weights", tmp_path / "gru.tflite", "-o", out, "--format", names).code == 0
        cells, _, _ = import_model(out)
        assert len(cells) == 1 and cells[0].weights.equals(weights)


# TF checkpoints ---------------------------------------------------------------------------------------------


def test_tf1_gru_cell_checkpoint(tmp_path):
    """TF1's GRUCell (the legacy implementation tf.compat.v1.nn.rnn_cell.GRUCell was), run and saved in a graph."""
    from tensorflow.python.keras.layers.legacy_rnn import rnn_cell_impl

    x = _inputs(size=3)
    graph = tf.Graph()
    with graph.as_default():
        placeholder = tf.compat.v1.placeholder(tf.float32, x.shape)
        cell = rnn_cell_impl.GRUCell(5, name="gru_cell",
                                     bias_initializer=tf.compat.v1.random_uniform_initializer(-0.5, 0.5, seed=1))
        with tf.compat.v1.variable_scope("enc"):
            y, _ = tf.compat.v1.nn.dynamic_rnn(cell, placeholder, dtype=tf.float32)
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            expected = session.run(y, {placeholder: x})
            prefix = saver.save(session, str(tmp_path / "model.ckpt"))

    found = import_cell(prefix)

    assert found.layer == "enc/rnn/gru_cell" and found.weights.kind == "gru" and not found.weights.reset_after
    assert found.weights.bias.any()
    np.testing.assert_allclose(gru(x, found.weights)[0], expected, atol=ATOL)


def test_keras_gru_cell_object_checkpoint(tmp_path):
    layer = keras.layers.GRU(4, return_sequences=True)
    model = keras.Sequential([keras.Input((None, 3)), layer])
    _randomize(model, seed=8)
    prefix = tf.train.Checkpoint(gru=layer).write(str(tmp_path / "ckpt"))
    found = import_cell(prefix)
    assert found.weights.kind == "gru" and found.weights.reset_after
    x = _inputs(size=3)
    np.testing.assert_allclose(gru(x, found.weights)[0], model.predict(x, verbose=0), atol=ATOL)


# verify --against's runners ---------------------------------------------------------------------------------


def _against(path, x, **options):
    from tflrnn.against import run_source

    run = run_source(path, [x], activation="tanh", time_major=False, **options)
    return run.outputs[0], run.reference


def test_against_runs_keras_gru_models(tmp_path):
    model = keras.Sequential([keras.Input((None, 3)), keras.layers.GRU(5, return_sequences=True, name="g0"),
                              keras.layers.Bidirectional(keras.layers.GRU(4, reset_after=False,
                                                                          return_sequences=True), name="bi")])
    _randomize(model, seed=9)
    model.save(tmp_path / "m.keras")
    x = _inputs(size=3)
    y, what = _against(tmp_path / "m.keras", x, whole=True)
    np.testing.assert_allclose(y, model.predict(x, verbose=0), atol=ATOL)
    assert "keras recurrent layers" in what

    one = keras.Sequential([keras.Input((None, 3)), keras.layers.GRU(4, use_bias=False, return_sequences=True,
                                                                     name="g")])
    _randomize(one, seed=10)
    one.save_weights(tmp_path / "one.weights.h5")
    y, _ = _against(tmp_path / "one.weights.h5", x)
    np.testing.assert_allclose(y, one.predict(x, verbose=0), atol=ATOL)


@needs_torch
def test_against_runs_torch_gru(tmp_path):
    module = _torch_gru(num_layers=2, bidirectional=True)
    path = tmp_path / "gru.safetensors"
    safetensors_numpy.save_file({k: v.numpy() for k, v in module.state_dict().items()}, str(path))
    x = _inputs(size=3)
    y, what = _against(path, x, whole=True)
    with torch.no_grad():
        np.testing.assert_allclose(y, module(torch.from_numpy(x))[0].numpy(), atol=ATOL)
    assert what.startswith("torch.nn.GRU(num_layers=2, bidirectional=True)")


@pytest.mark.parametrize("layout", [0, 1])
def test_against_runs_onnx_gru_nodes(tmp_path, layout):
    pytest.importorskip("onnxruntime", reason="needs the onnx extra")
    path = tmp_path / "gru.onnx"
    write_onnx_gru(path, layout=layout, direction="bidirectional", linear_before_reset=0, seed=11)
    x = _inputs(size=3)
    y, what = _against(path, x, whole=True)
    np.testing.assert_allclose(y, _onnx_gru_output(path, x, layout), atol=ATOL)
    assert what.startswith("onnx GRU node 'gru'")


def test_against_runs_a_gru_checkpoint_through_the_gru_reference(tmp_path):
    weights = _gru_weights(units=4, input_size=3, reset_after=False, seed=12)
    keras_layer = keras.layers.GRU(4, reset_after=False, return_sequences=True)
    model = keras.Sequential([keras.Input((None, 3)), keras_layer])
    keras_layer.set_weights(list(weights.to_keras().values()))
    prefix = tf.train.Checkpoint(gru=keras_layer).write(str(tmp_path / "ckpt"))
    x = _inputs(size=3)
    y, what = _against(prefix, x)
    np.testing.assert_allclose(y, model.predict(x, verbose=0), atol=ATOL)  # not a basic RNN on GRU weights
    assert what.startswith("the numpy reference")
