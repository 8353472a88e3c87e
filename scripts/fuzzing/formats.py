"""Writers of every input format the harness feeds tflrnn: npy/npz, safetensors, ONNX, Keras files, JSON and TOML."""

from __future__ import annotations

import io
import json
import re
import struct
import zipfile

import numpy as np


def _weights(units=4, input_size=3, seed=0):
    rng = np.random.default_rng(seed)
    return ((rng.standard_normal((units, input_size)) * 0.4).astype(np.float32),
            (rng.standard_normal((units, units)) * 0.3).astype(np.float32),
            (rng.standard_normal(units) * 0.1).astype(np.float32))


def valid_npz_bytes() -> bytes:
    w, r, b = _weights()
    return npz_bytes({"input_weights": w, "recurrent_weights": r, "bias": b})


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asanyarray(array), allow_pickle=True)
    return buf.getvalue()


def npy_raw(header: str, payload: bytes, version: tuple[int, int] = (1, 0)) -> bytes:
    """An .npy with a hand-written header (version 1.0: u16 length; 2.0/3.0: u32)."""
    length_format = "<H" if version == (1, 0) else "<I"
    prefix = 6 + 2 + struct.calcsize(length_format)
    text = header.encode("latin1", errors="replace")
    pad = (64 - (prefix + len(text) + 1) % 64) % 64
    text = text + b" " * pad + b"\n"
    length = len(text) if len(text) < (1 << (8 * struct.calcsize(length_format))) else 0xFFFF
    return b"\x93NUMPY" + bytes(version) + struct.pack(length_format, length) + text + payload


def npz_bytes(arrays: dict, compressed: bool = False, raw: dict | None = None) -> bytes:
    """A zip of name.npy members; `raw` maps member names to ready-made bytes (hand-written headers)."""
    buf = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, "w", method) as archive:
        for name, array in arrays.items():
            archive.writestr(name + ".npy", npy_bytes(array))
        for name, data in (raw or {}).items():
            archive.writestr(name, data)
    return buf.getvalue()


SAFETENSORS_DTYPES = {"float32": "F32", "float16": "F16", "float64": "F64", "int8": "I8", "int16": "I16",
                      "int32": "I32", "int64": "I64", "uint8": "U8", "bool": "BOOL"}


def safetensors_spec(state: dict) -> dict:
    header, chunks, offset = {}, [], 0
    for name, array in state.items():
        raw = np.ascontiguousarray(array).tobytes()
        header[name] = {"dtype": SAFETENSORS_DTYPES.get(array.dtype.name, "F32"), "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    header["__metadata__"] = {"format": "pt"}
    return {"header": header, "data": b"".join(chunks), "header_text": None, "length": None}


def safetensors_bytes(spec: dict) -> bytes:
    text = spec["header_text"]
    if text is None:
        text = json.dumps(spec["header"], separators=(",", ":")).encode()
    text = text + b" " * ((8 - len(text) % 8) % 8)
    length = spec["length"] if spec["length"] is not None else len(text)
    return struct.pack("<Q", length & 0xFFFFFFFFFFFFFFFF) + text + spec["data"]


def safetensors_from_arrays(state: dict) -> dict:
    """A spec for arbitrary arrays (dtypes safetensors does not have are written as raw bytes with a made-up code)."""
    spec = safetensors_spec({})
    offset, chunks = 0, []
    header = {}
    for name, array in state.items():
        array = np.asarray(array)
        raw = array.tobytes() if array.dtype.kind not in "OU" else str(array.tolist()).encode()
        header[name] = {"dtype": SAFETENSORS_DTYPES.get(array.dtype.name, array.dtype.str),
                        "shape": list(array.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    spec["header"] = {**header, "__metadata__": {"format": "pt"}}
    spec["data"] = b"".join(chunks)
    return spec


def onnx_spec(w, r, wb, rb, direction=None, layout=None, zero_state=None, activation="Tanh",
              constant_node=False, op="RNN", linear_before_reset=None) -> dict:
    w, r = np.asarray(w), np.asarray(r)
    directions = 2 if direction == "bidirectional" else 1
    w3 = w if w.ndim == 3 else w[None]
    r3 = r if r.ndim == 3 else r[None]
    bias = np.concatenate([np.asarray(wb).reshape(directions, -1), np.asarray(rb).reshape(directions, -1)], axis=1)
    attrs = {"hidden_size": int(r3.shape[2] if op in ("GRU", "LSTM") else r3.shape[1]),
             "activations": {"GRU": ["Sigmoid", "Tanh"], "LSTM": ["Sigmoid", "Tanh", "Tanh"]}.get(op, [activation])
             * directions}
    if linear_before_reset is not None:
        attrs["linear_before_reset"] = linear_before_reset
    if direction is not None:
        attrs["direction"] = direction
    if layout is not None:
        attrs["layout"] = layout
    return {"W": w3.astype(np.float32), "R": r3.astype(np.float32), "B": bias.astype(np.float32), "attrs": attrs,
            "zero_state": zero_state, "constant_node": constant_node, "extra_nodes": 0, "post": [], "op": op}


def onnx_model(spec: dict):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inputs = ["X", "W", "R", "B", "", ""]
    initializers, nodes = [], []
    for name in ("W", "R", "B"):
        value = spec[name]
        if value is None:
            if name == "B":
                inputs[3] = ""
            continue
        tensor = numpy_helper.from_array(np.asarray(value), name)
        if spec["constant_node"] and name == "W":
            nodes.append(helper.make_node("Constant", [], ["W"], value=tensor))
        else:
            initializers.append(tensor)
    units = spec["R"].shape[2] if spec["R"] is not None and np.ndim(spec["R"]) == 3 else 1
    directions = spec["R"].shape[0] if spec["R"] is not None and np.ndim(spec["R"]) == 3 else 1
    if spec["zero_state"] == "ConstantOfShape":
        initializers.append(numpy_helper.from_array(np.array([directions, 1, units], np.int64), "h0_shape"))
        nodes.append(helper.make_node("ConstantOfShape", ["h0_shape"], ["H0"],
                                      value=numpy_helper.from_array(np.zeros(1, np.float32))))
        inputs[5] = "H0"
    elif spec["zero_state"] == "initializer":
        initializers.append(numpy_helper.from_array(np.zeros((directions, 1, units), np.float32), "H0"))
        inputs[5] = "H0"
    nodes.append(helper.make_node(spec.get("op", "RNN"), inputs, ["Y", "Y_h"], name="rnn", **spec["attrs"]))
    for k in range(spec["extra_nodes"]):
        nodes.append(helper.make_node("Identity", ["Y" if k == 0 else f"I{k - 1}"], [f"I{k}"], name=f"id{k}"))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["T", "B", 3])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)], initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    for edit in spec["post"]:
        edit(model, onnx)
    return model


def onnx_bytes(spec: dict) -> bytes:
    return onnx_model(spec).SerializeToString()


def keras_spec(layout: str, layers: list, activation="tanh", return_sequences=None) -> dict:
    """A Keras file: layout "keras3" (.keras zip), "keras3-weights" (.weights.h5), "legacy" (Keras 2 .h5 with
    model_config) or "legacy-weights" (save_weights .h5); layers (class, name, arrays)."""
    config_layers = [{"class_name": "InputLayer", "config": {"batch_shape": [None, None, 3], "name": "input"}}]
    for k, (cls, name, _) in enumerate(layers):
        rs = True if return_sequences is None else return_sequences[k]
        rnn = {"name": name, "units": 4, "activation": activation, "use_bias": True, "return_sequences": rs,
               "go_backwards": False, "dtype": "float32", "trainable": True}
        if cls == "Bidirectional":
            entry = {"class_name": "Bidirectional", "config": {
                "name": name, "merge_mode": "concat", "trainable": True, "dtype": "float32",
                "layer": {"class_name": "SimpleRNN", "config": {**rnn, "name": "inner", "return_sequences": True}}}}
        elif cls == "Dense":
            entry = {"class_name": "Dense", "config": {"name": name, "units": 4, "dtype": "float32",
                                                       "trainable": True}}
        elif cls == "GRU":
            entry = {"class_name": "GRU", "config": {**rnn, "recurrent_activation": "sigmoid", "reset_after": True}}
        elif cls == "LSTM":
            entry = {"class_name": "LSTM", "config": {**rnn, "recurrent_activation": "sigmoid",
                                                      "unit_forget_bias": True}}
        else:
            entry = {"class_name": cls, "config": rnn}
        config_layers.append(entry)
    config = {"class_name": "Sequential", "config": {"name": "sequential", "layers": config_layers}}
    return {"layout": layout, "layers": [(c, n, [np.asarray(a) for a in arrays]) for c, n, arrays in layers],
            "config": config, "config_text": None, "attrs": [], "datasets": [], "h5_post": []}


def keras_h5_bytes(spec: dict) -> bytes:
    import h5py

    buf = io.BytesIO()
    with h5py.File(buf, "w") as h5:
        if spec["layout"].startswith("keras3"):
            layers = h5.create_group("layers")
            for k, (cls, name, arrays) in enumerate(spec["layers"]):
                key = {"SimpleRNN": "simple_rnn", "GRU": "gru", "LSTM": "lstm", "Bidirectional": "bidirectional",
                       "Dense": "dense"}[cls]
                key = key if k == 0 else f"{key}_{k}"
                group = layers.create_group(key)
                group.create_group("vars").attrs["name"] = name
                if cls == "Bidirectional":
                    for half, part in (("forward_layer", arrays[:3]), ("backward_layer", arrays[3:])):
                        cell = group.create_group(half).create_group("cell").create_group("vars")
                        for i, a in enumerate(part):
                            cell.create_dataset(str(i), data=a)
                elif cls == "Dense":
                    for i, a in enumerate(arrays):
                        group["vars"].create_dataset(str(i), data=a)
                else:
                    cell = group.create_group("cell").create_group("vars")
                    for i, a in enumerate(arrays):
                        cell.create_dataset(str(i), data=a)
            h5.create_group("vars").attrs["name"] = "sequential"
        else:
            if spec["layout"] == "legacy":
                h5.attrs["model_config"] = spec["config_text"] if spec["config_text"] is not None else \
                    render_json(spec["config"])
                h5.attrs["keras_version"] = "2.15.0"
                root = h5.create_group("model_weights")
            else:
                root = h5
            root.attrs["layer_names"] = [n.encode() for _, n, _ in spec["layers"]]
            for cls, name, arrays in spec["layers"]:
                group = root.create_group(name)
                cell = {"SimpleRNN": "simple_rnn_cell", "GRU": "gru_cell", "LSTM": "lstm_cell"}.get(cls, name)
                roles = (("kernel", "recurrent_kernel", "bias") if cls in ("SimpleRNN", "GRU", "LSTM") else
                         ("kernel", "bias"))
                names = [f"{name}/{cell}/{role}:0"
                         for role in roles[: len(arrays)]]
                group.attrs["weight_names"] = [n.encode() for n in names]
                for weight_name, a in zip(names, arrays):
                    group.create_dataset(weight_name, data=a)
        for edit in spec["h5_post"]:
            edit(h5)
    return buf.getvalue()


def keras_bytes(spec: dict) -> bytes:
    h5 = keras_h5_bytes(spec)
    if spec["layout"] != "keras3":
        return h5
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.10.0"}))
        config = spec["config_text"] if spec["config_text"] is not None else render_json(spec["config"]).encode()
        archive.writestr("config.json", config)
        archive.writestr("model.weights.h5", h5)
    return buf.getvalue()


class Raw:
    """A literal written into the config text as is (a huge number, NaN, a deep nest)."""

    def __init__(self, json_text: str, toml_text: str | None = None):
        self.json_text, self.toml_text = json_text, toml_text if toml_text is not None else json_text

    def __repr__(self):
        return f"Raw({self.json_text[:20]!r})"


def render_json(value) -> str:
    if isinstance(value, Raw):
        return value.json_text
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {render_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(render_json(v) for v in value) + "]"
    if isinstance(value, float):
        if value != value:
            return "NaN"
        if value in (float("inf"), float("-inf")):
            return "Infinity" if value > 0 else "-Infinity"
        return repr(value)
    return json.dumps(value)


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml_key(key) -> str:
    key = str(key)
    return key if _BARE_KEY.match(key) else json.dumps(key, ensure_ascii=False)


def _toml_value(value) -> str:
    if isinstance(value, Raw):
        return value.toml_text
    if value is None:
        return '"null"'  # TOML has no null; a string the schema will refuse where null was allowed
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value:
            return "nan"
        if value in (float("inf"), float("-inf")):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    return "[" + ", ".join(_toml_value(v) for v in value) + "]"


def render_toml(doc) -> str:
    if not isinstance(doc, dict):
        return f"value = {_toml_value(doc)}\n"
    lines = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in doc.items()]
    return "\n".join(lines) + "\n"
