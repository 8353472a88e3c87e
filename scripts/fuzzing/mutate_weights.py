"""Mutations of weights files: array-level edits shared by every format, then npz, safetensors, ONNX, Keras."""

from __future__ import annotations

import copy
import io
import json
import random
import struct
import zipfile

import numpy as np

from .cases import Seed
from .formats import keras_bytes, npy_bytes, npy_raw, npz_bytes, onnx_bytes, safetensors_bytes, safetensors_from_arrays
from .mutate_bytes import bitflip
from .mutate_config import mutate_config_text


def mutate_array(rng: random.Random, a: np.ndarray) -> tuple[str, np.ndarray]:
    a = np.asarray(a)
    how = rng.choice(("nan", "inf", "-inf", "beyond-f32", "f32max", "denormal", "dtype", "dtype", "transpose",
                      "flatten", "add-axis", "scalar", "empty", "grow", "shrink", "int-extreme"))
    if how in ("nan", "inf", "-inf", "beyond-f32", "f32max", "denormal"):
        out = a.astype(np.float64 if how == "beyond-f32" else np.float32, copy=True)
        if out.size:
            out.flat[rng.randrange(out.size)] = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf, "beyond-f32": 1e39,
                                                 "f32max": 3.4028235e38, "denormal": 1e-45}[how]
        return f"array:{how}", out
    if how == "dtype":
        dtype = rng.choice(("float16", "float64", "int8", "int32", "int64", "uint8", "bool", "complex64", ">f4",
                            "U3", "object", "datetime64[s]", "V4"))
        try:
            if dtype == "object":
                return "array:dtype=object", np.array(a.tolist() if a.ndim else [a.item()], dtype=object)
            if dtype == "V4":
                return "array:dtype=V4", np.frombuffer(a.astype(np.float32).tobytes(), "V4").reshape(a.shape)
            return f"array:dtype={dtype}", a.astype(dtype)
        except (TypeError, ValueError):
            return "array:dtype=float64", a.astype(np.float64)
    if how == "transpose":
        return "array:transpose", a.T.copy()
    if how == "flatten":
        return "array:flatten", a.reshape(-1)
    if how == "add-axis":
        return "array:add-axis", a[None]
    if how == "scalar":
        return "array:scalar", np.array(a.flat[0] if a.size else 0, dtype=a.dtype)
    if how == "empty":
        return "array:empty", np.zeros((0,) * max(1, a.ndim), a.dtype)
    if how == "grow":
        return "array:grow", np.pad(a, [(0, 1)] * a.ndim) if a.ndim else a
    if how == "shrink":
        return "array:shrink", a[tuple(slice(0, max(0, d - 1)) for d in a.shape)] if a.ndim else a
    return "array:int-extreme", np.full(a.shape, rng.choice((2**62, -(2**63), 2**31)), np.int64)


def _mutate_named_arrays(rng, arrays: dict) -> tuple[str, dict]:
    arrays = dict(arrays)
    how = rng.choice(("array", "array", "array", "drop", "rename", "duplicate", "extra", "many", "non-utf8"))
    if how == "array" and arrays:
        key = rng.choice(sorted(arrays))
        label, arrays[key] = mutate_array(rng, arrays[key])
        return f"{label}@{key}", arrays
    if how == "drop" and arrays:
        arrays.pop(rng.choice(sorted(arrays)))
        return "names:drop", arrays
    if how == "rename" and arrays:
        key = rng.choice(sorted(arrays))
        new = rng.choice((key.upper(), key + "_", "/" + key, key.replace("/", "//"), "a/" + key, key + "/x",
                          key.replace("_l0", "_l1"), key.replace("_l0", "_l99999999999999999999"),
                          key.replace("weight", "bias"), "", "x" * 300, "\u00e9" + key))
        arrays[new] = arrays.pop(key)
        return "names:rename", arrays
    if how == "duplicate" and arrays:
        key = rng.choice(sorted(arrays))
        arrays[key.replace("rnn", "rnn2", 1) if "rnn" in key else "other/" + key] = arrays[key]
        return "names:duplicate", arrays
    if how == "many":
        for k in range(rng.choice((50, 500))):
            arrays[f"junk/{k}"] = np.zeros(1, np.float32)
        return "names:many", arrays
    if how == "non-utf8":
        key = rng.choice(sorted(arrays)) if arrays else "bias"
        arrays[key + "\udcff"] = arrays.get(key, np.zeros(3, np.float32))  # a surrogate: written as raw bytes
        return "names:non-utf8", arrays
    for name, value in (("input_weights", np.zeros((4, 3))), ("kernel", np.zeros((3, 4))),
                        ("recurrent_weights", np.zeros((5, 5))), ("bias", np.zeros(4))):
        if rng.random() < 0.3:
            arrays[name] = value
    return "names:extra", arrays


def mutate_npz(rng: random.Random, seed: Seed) -> tuple[str, bytes]:
    spec = seed.spec
    arrays = dict(spec["arrays"])
    how = rng.choice(("arrays", "arrays", "arrays", "header", "header", "zip-names", "pickle", "member"))
    if how == "arrays":
        label, arrays = _mutate_named_arrays(rng, arrays)
        try:
            return f"npz:{label}", _npz_with_names(arrays, spec["compressed"])
        except (ValueError, TypeError, UnicodeError):
            return bitflip(rng, seed.data)
    if how == "header":
        key = rng.choice(sorted(arrays))
        array = arrays.pop(key)
        label, raw = _mutated_npy(rng, np.asarray(array))
        return f"npz:header:{label}@{key}", npz_bytes(arrays, spec["compressed"], {key + ".npy": raw})
    if how == "zip-names":
        data = bytearray(seed.data)
        names = [n.encode() for n in arrays]
        name = rng.choice(names)
        junk = rng.choice((b"\xff", b"\x80", b"\xc3\x28", b"/"))
        replacement = name[:-1] + junk if len(name) > 1 else junk
        replacement = (replacement + b"?" * len(name))[: len(name)]
        data = bytes(data).replace(name + b".npy", replacement + b".npy")
        if rng.random() < 0.5:  # claim UTF-8 names (bit 11): a strict decoder must refuse these bytes
            data = _set_zip_utf8_flag(data)
        return f"npz:zip-names:{junk!r}", data
    if how == "pickle":
        key = rng.choice(sorted(arrays))
        arrays[key] = np.array([{"a": 1}, None], dtype=object)
        return f"npz:pickle@{key}", npz_bytes(arrays, spec["compressed"])
    # member: not an .npy, or a huge declared size, or a directory entry
    what = rng.choice(("not-npy", "dir", "empty", "nested-zip", "huge-claim"))
    raw = {"not-npy": {"bias.npy": b"not an array"}, "dir": {"bias.npy/": b""}, "empty": {"bias.npy": b""},
           "nested-zip": {"bias.npy": seed.data},
           "huge-claim": {"bias.npy": npy_raw("{'descr': '<f4', 'fortran_order': False, 'shape': (4000000000,), }",
                                              b"\0" * 16)}}[what]
    arrays.pop("bias", None)
    return f"npz:member:{what}", npz_bytes(arrays, spec["compressed"], raw)


def _npz_with_names(arrays: dict, compressed: bool) -> bytes:
    buf = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, "w", method) as archive:
        for name, array in arrays.items():
            info = zipfile.ZipInfo("placeholder")
            info.compress_type = method
            raw_name = name.encode("utf-8", errors="surrogateescape") + b".npy"
            try:
                info.filename = raw_name.decode("utf-8")
            except UnicodeDecodeError:
                info.filename = raw_name.decode("cp437")  # written back as these bytes, without the UTF-8 flag
            archive.writestr(info, npy_bytes(array))
    return buf.getvalue()


def _set_zip_utf8_flag(data: bytes) -> bytes:
    buf = bytearray(data)
    for signature, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = 0
        while (i := buf.find(signature, start)) >= 0:
            if i + flag_at + 2 <= len(buf):
                flags = struct.unpack_from("<H", buf, i + flag_at)[0] | 0x800
                struct.pack_into("<H", buf, i + flag_at, flags)
            start = i + 4
    return bytes(buf)


def _mutated_npy(rng: random.Random, array: np.ndarray) -> tuple[str, bytes]:
    array = np.ascontiguousarray(array, dtype=np.float32)
    payload = array.tobytes()
    descr, fortran, shape = "'<f4'", "False", repr(tuple(array.shape))
    version = (1, 0)
    how = rng.choice(("descr", "shape", "shape", "fortran", "payload", "syntax", "version", "length", "magic"))
    if how == "descr":
        descr = rng.choice(("'>f4'", "'<f8'", "'<f2'", "'|i1'", "'<i8'", "'|b1'", "'<c8'", "'|O'", "'<U4'", "'|V12'",
                            "'<M8[s]'", "[('a', '<f4')]", "'garbage'", "'<f4", "None", "3"))
    elif how == "shape":
        shape = rng.choice(("(4294967296, 3)", "(1099511627776,)", "(-1, 3)", "()", "(0, 3)", "(4, 3, 1)",
                            "(4, 3.0)", "('a',)", "(2**40,)", "(3, 4)", "(9223372036854775807, 2)",
                            "(65536, 65536)", "(" * 200 + ")" * 200, "[4, 3]", "(4,3,) + (1,)"))
    elif how == "fortran":
        fortran = rng.choice(("True", "1", "'no'"))
    elif how == "payload":
        payload = rng.choice((payload[: len(payload) // 2], payload + b"\0" * 8, b"", payload * 3))
    elif how == "version":
        version = rng.choice(((2, 0), (3, 0), (9, 9), (0, 0)))
    header = f"{{'descr': {descr}, 'fortran_order': {fortran}, 'shape': {shape}, }}"
    if how == "syntax":
        header = rng.choice(("[1, 2]", "{'descr': '<f4'}", "{" * 500, "{'descr': '<f4', 'fortran_order': False, "
                             "'shape': (4, 3), 'extra': 1}", "__import__('os')", "", "\xff\xfe"))
    raw = npy_raw(header, payload, version if version in ((1, 0), (2, 0), (3, 0)) else (1, 0))
    if how == "version" and version not in ((1, 0), (2, 0), (3, 0)):
        raw = raw[:6] + bytes(version) + raw[8:]
    if how == "length":
        raw = raw[:8] + struct.pack("<H", rng.choice((0, 1, 0xFFFF, 0x7FFF))) + raw[10:]
    if how == "magic":
        raw = b"\x93NUMPX" + raw[6:]
    return f"{how}", raw


def mutate_safetensors(rng: random.Random, seed: Seed) -> tuple[str, bytes]:
    spec = copy.deepcopy(seed.spec)
    header = spec["header"]
    names = [k for k in header if k != "__metadata__"]
    how = rng.choice(("arrays", "arrays", "dtype", "shape", "offsets", "length", "json", "names", "metadata",
                      "data"))
    if how == "arrays":
        arrays = _safetensors_arrays(seed.spec)
        label, arrays = _mutate_named_arrays(rng, arrays)
        try:
            spec = safetensors_from_arrays({k.encode("utf-8", "surrogateescape").decode("utf-8", "replace"): v
                                            for k, v in arrays.items()})
        except (ValueError, TypeError):
            return bitflip(rng, seed.data)
        return f"safetensors:{label}", safetensors_bytes(spec)
    name = rng.choice(names)
    entry = header[name]
    if how == "dtype":
        entry["dtype"] = rng.choice(("F16", "BF16", "F64", "I8", "I64", "U8", "BOOL", "F8_E4M3", "X", "f32", "", 3,
                                     None, ["F32"], "C64", "U64", "I4"))
    elif how == "shape":
        entry["shape"] = rng.choice(([2**40], [-1, 3], [4, 3, 1], [], [0], [4.0, 3], ["4", "3"], [[4], [3]],
                                     [2**64], None, 12, [4] * 64, [1, 2**32 + 4]))
    elif how == "offsets":
        lo, hi = entry["data_offsets"]
        entry["data_offsets"] = rng.choice(([hi, lo], [lo, hi + 4], [lo, 2**40], [-4, hi], [lo], [lo, hi, 0],
                                            [0, 0], [lo + 1, hi + 1], [2**64 - 1, 2**64 - 1], None, [lo, hi * 100],
                                            ["0", "4"]))
    elif how == "length":
        spec["length"] = rng.choice((0, 1, 7, 2**63, 2**64 - 1, 2**32, 100_000_000, len(seed.data), 8 * 10**9))
    elif how == "json":
        text = json.dumps(header).encode()
        spec["header_text"] = rng.choice((
            text[: len(text) // 2], b"[" * 100000 + b"]" * 100000, b"{\"a\":" * 5000 + b"1" + b"}" * 5000,
            text.replace(b'"', b"'", 1), text + b"garbage", b"\xff\xfe" + text, b"null", b"[]", b"1",
            text.replace(name.encode(), name.encode() + b"\xff"), text.replace(b"{", b'{"' + name.encode()
                                                                          + b'":{"dtype":"F32"},', 1),
            text.replace(b"F32", b"F32\\ud800", 1), b'{"a":' + b"1" * 5000 + b"}"))
    elif how == "names":
        header[rng.choice((name + "\udcff", "", "x" * 10000, name.replace("l0", "l-1"), "weight_ih_l0"))] = \
            header.pop(name)
        try:
            json.dumps(header).encode()
        except UnicodeEncodeError:
            pass
    elif how == "metadata":
        header["__metadata__"] = rng.choice(({"a": 1}, [], "x", None, {"format": {"nested": True}}, {"": ""}))
    else:
        data = bytearray(spec["data"])
        lo = entry["data_offsets"][0]
        value = rng.choice((float("nan"), float("inf"), -float("inf"), 3.4028235e38))
        if lo + 4 <= len(data):
            struct.pack_into("<f", data, lo, value)
        spec["data"] = bytes(data)
    try:
        return f"safetensors:{how}", safetensors_bytes(spec)
    except (TypeError, ValueError, UnicodeEncodeError):
        text = json.dumps(header, ensure_ascii=False).encode("utf-8", "surrogateescape")
        spec["header_text"] = text
        return f"safetensors:{how}", safetensors_bytes(spec)


def _safetensors_arrays(spec: dict) -> dict:
    arrays = {}
    for name, entry in spec["header"].items():
        if name == "__metadata__":
            continue
        lo, hi = entry["data_offsets"]
        arrays[name] = np.frombuffer(spec["data"][lo:hi], np.float32).reshape(entry["shape"])
    return arrays


def mutate_onnx(rng: random.Random, seed: Seed) -> tuple[str, bytes]:
    spec = copy.deepcopy({k: v for k, v in seed.spec.items() if k != "post"})
    spec["post"] = []
    how = rng.choice(("array", "array", "attr", "attr", "attr-type", "initializer", "initializer", "graph",
                      "state", "deep", "external"))
    label = how
    if how == "array":
        role = rng.choice(("W", "R", "B"))
        label, spec[role] = mutate_array(rng, spec[role])
        label = f"{label}@{role}"
        if spec[role].dtype.kind in "OUMV":
            spec[role] = spec[role].astype(np.float64) if spec[role].dtype.kind not in "OUMV" else np.zeros(3, np.int64)
    elif how == "attr":
        attrs = spec["attrs"]
        key = rng.choice(("hidden_size", "activations", "direction", "layout", "clip", "activation_alpha", "extra"))
        value = {
            "hidden_size": rng.choice((0, -1, 5, 2**40, 1)),
            "activations": rng.choice((["Sigmoid"], ["Tanh", "Relu"], [], ["tanh"], ["Tanh"] * 5, ["Relu"])),
            "direction": rng.choice(("reverse", "BIDIRECTIONAL", "", "forward\x00", "bidirectional")),
            "layout": rng.choice((0, 1, 2, -1, 2**62)),
            "clip": rng.choice((0.0, float("nan"), 1.0)),
            "activation_alpha": [0.5],
            "extra": "x",
        }[key]
        attrs[key] = value
        label = f"attr:{key}"
    elif how == "attr-type":  # the right attribute names with the wrong types or undecodable bytes
        key = rng.choice(("direction", "activations", "hidden_size", "layout"))
        value = rng.choice((b"\xff\xfe", [b"\xffTanh"], 1.5, [1, 2], "Tanh", [3.0], b"forward", b"\xc3"))
        spec["post"].append(_onnx_set_attribute(key, value))
        label = f"attr-type:{key}={value!r}"
    elif how == "initializer":
        what = rng.choice(("dims", "dims", "data_type", "raw-truncated", "raw-extra", "float_data", "segment",
                           "string", "name"))
        role = rng.choice(("W", "R", "B"))
        spec["post"].append(_onnx_edit_initializer(role, what, rng.random()))
        label = f"initializer:{what}@{role}"
    elif how == "graph":
        what = rng.choice(("no-rnn", "two-rnn", "no-bias", "w-input", "short-inputs", "long-inputs", "lens",
                           "identity-chain", "cycle", "op-type"))
        if what == "no-bias":
            spec["B"] = None
        else:
            spec["post"].append(_onnx_edit_graph(what))
        label = f"graph:{what}"
    elif how == "state":
        spec["zero_state"] = rng.choice(("ConstantOfShape", "initializer"))
        if rng.random() < 0.5:
            spec["post"].append(_onnx_nonzero_state(rng.choice(("value", "fill", "cycle", "deep"))))
        label = "state"
    elif how == "deep":  # subgraph attributes nested beyond protobuf's recursion limit
        depth = rng.choice((10, 90, 101, 200))
        spec["post"].append(_onnx_deep(depth))
        label = f"deep:{depth}"
    else:
        spec["post"].append(_onnx_external(rng.choice(("missing", "absolute", "parent", "huge-offset", "self"))))
        label = "external"
    try:
        return f"onnx:{label}", onnx_bytes(spec)
    except Exception:  # noqa: BLE001 - the onnx helper refused this edit
        return bitflip(rng, seed.data)


def _find_tensor(model, name):
    for t in model.graph.initializer:
        if t.name == name:
            return t
    for node in model.graph.node:
        if node.op_type == "Constant" and name in node.output:
            return node.attribute[0].t
    return None


def _onnx_set_attribute(key, value):
    def edit(model, onnx):
        node = next(n for n in model.graph.node if n.op_type == "RNN")
        for a in list(node.attribute):
            if a.name == key:
                node.attribute.remove(a)
        attr = onnx.AttributeProto()
        attr.name = key
        if isinstance(value, bytes):
            attr.type = onnx.AttributeProto.STRING
            attr.s = value
        elif isinstance(value, str):
            attr.type = onnx.AttributeProto.STRING
            attr.s = value.encode()
        elif isinstance(value, float):
            attr.type = onnx.AttributeProto.FLOAT
            attr.f = value
        elif isinstance(value, list) and value and isinstance(value[0], bytes):
            attr.type = onnx.AttributeProto.STRINGS
            attr.strings.extend(value)
        elif isinstance(value, list) and value and isinstance(value[0], float):
            attr.type = onnx.AttributeProto.FLOATS
            attr.floats.extend(value)
        elif isinstance(value, list):
            attr.type = onnx.AttributeProto.INTS
            attr.ints.extend(value)
        else:
            attr.type = onnx.AttributeProto.INT
            attr.i = value
        node.attribute.append(attr)
    return edit


def _onnx_edit_initializer(role, what, r):
    def edit(model, onnx):
        t = _find_tensor(model, role)
        if t is None:
            return
        if what == "dims":
            dims = list(t.dims)
            choice = int(r * 6)
            new = [[2**31, *dims[1:]], [*dims, 1], dims[::-1], [0] * len(dims), [-1, *dims[1:]], [2**40]][choice]
            del t.dims[:]
            t.dims.extend(new)
        elif what == "data_type":
            t.data_type = [onnx.TensorProto.DOUBLE, onnx.TensorProto.INT64, onnx.TensorProto.FLOAT16,
                           onnx.TensorProto.STRING, onnx.TensorProto.BOOL, onnx.TensorProto.COMPLEX64,
                           onnx.TensorProto.BFLOAT16, 0, 99][int(r * 9)]
        elif what == "raw-truncated":
            t.raw_data = t.raw_data[: len(t.raw_data) // 2]
        elif what == "raw-extra":
            t.raw_data = t.raw_data + b"\0" * 12
        elif what == "float_data":
            values = np.frombuffer(t.raw_data, np.float32).tolist()
            t.ClearField("raw_data")
            t.float_data.extend(values[: int(len(values) * r)])
        elif what == "segment":
            t.segment.begin = 0
            t.segment.end = 2
        elif what == "string":
            t.data_type = onnx.TensorProto.STRING
            t.ClearField("raw_data")
            t.string_data.extend([b"\xff"] * int(np.prod(t.dims)))
        else:
            t.name = t.name + "_renamed"
    return edit


def _onnx_edit_graph(what):
    def edit(model, onnx):
        from onnx import helper

        graph = model.graph
        node = next(n for n in graph.node if n.op_type == "RNN")
        if what == "no-rnn":
            node.op_type = "LSTM"
        elif what == "two-rnn":
            graph.node.append(copy.deepcopy(node))
            graph.node[-1].output[0] = "Y2"
        elif what == "w-input":
            graph.input.append(helper.make_tensor_value_info("W", onnx.TensorProto.FLOAT, [1, 4, 3]))
            for t in list(graph.initializer):
                if t.name == "W":
                    graph.initializer.remove(t)
        elif what == "short-inputs":
            del node.input[2:]
        elif what == "long-inputs":
            node.input.extend(["", "", "extra"])
        elif what == "lens":
            while len(node.input) < 5:
                node.input.append("")
            node.input[4] = "lens"
        elif what == "identity-chain":
            for k in range(50):
                graph.node.append(helper.make_node("Identity", [f"c{k}"], [f"c{k + 1}"]))
        elif what == "cycle":
            graph.node.append(helper.make_node("Identity", ["loop"], ["loop"]))
            while len(node.input) < 6:
                node.input.append("")
            node.input[5] = "loop"
        else:
            node.op_type = "rnn"
            node.domain = "com.example"
    return edit


def _onnx_nonzero_state(what):
    def edit(model, onnx):
        from onnx import helper, numpy_helper

        graph = model.graph
        node = next(n for n in graph.node if n.op_type == "RNN")
        if what == "value":
            t = _find_tensor(model, "H0")
            if t is not None:
                t.CopyFrom(numpy_helper.from_array(np.ones((1, 1, 4), np.float32), "H0"))
        elif what == "fill":
            for n in graph.node:
                if n.op_type == "ConstantOfShape":
                    del n.attribute[:]
                    n.attribute.append(helper.make_attribute("value", numpy_helper.from_array(
                        np.array([np.nan], np.float32))))
        elif what == "cycle":
            graph.node.append(helper.make_node("Expand", ["H1", "s"], ["H1"]))
            node.input[5] = "H1"
        else:
            prev = "H0"
            for k in range(40):
                graph.node.append(helper.make_node("Reshape", [prev, "s"], [f"R{k}"]))
                prev = f"R{k}"
            node.input[5] = prev
    return edit


def _onnx_deep(depth):
    def edit(model, onnx):
        from onnx import helper

        leaf = helper.make_graph([], "leaf", [], [])
        inner = leaf
        for k in range(depth):  # nested through then_branch only: one copy per level
            n = helper.make_node("If", ["c"], ["o"], then_branch=inner, else_branch=leaf)
            inner = helper.make_graph([n], f"g{k}", [], [])
        model.graph.node.append(helper.make_node("If", ["c"], ["o2"], then_branch=inner, else_branch=leaf))
    return edit


def _onnx_external(what):
    def edit(model, onnx):
        t = _find_tensor(model, "W")
        if t is None:
            return
        t.ClearField("raw_data")
        t.data_location = onnx.TensorProto.EXTERNAL
        location = {"missing": "nope.bin", "absolute": "/etc/hostname", "parent": "../../../../etc/hostname",
                    "huge-offset": "input.onnx", "self": "input.onnx"}[what]
        entries = [("location", location)]
        if what == "huge-offset":
            entries += [("offset", str(2**40)), ("length", str(2**40))]
        for key, value in entries:
            e = t.external_data.add()
            e.key, e.value = key, value
    return edit


def mutate_keras(rng: random.Random, seed: Seed) -> tuple[str, bytes]:
    spec = copy.deepcopy({k: v for k, v in seed.spec.items() if k != "h5_post"})
    spec["h5_post"] = []
    how = rng.choice(("array", "array", "config", "config", "attrs", "dataset", "structure", "zip"))
    label = how
    if how == "array":
        k = rng.randrange(len(spec["layers"]))
        cls, name, arrays = spec["layers"][k]
        i = rng.randrange(len(arrays))
        label, arrays[i] = mutate_array(rng, arrays[i])
        if arrays[i].dtype.kind == "O":
            arrays[i] = arrays[i].astype(str).astype("S")
        spec["layers"][k] = (cls, name, arrays)
        label = f"{label}@{name}[{i}]"
    elif how == "config":
        if spec["layout"] in ("keras3", "legacy"):
            label, text = mutate_config_text(rng, spec["config"], ".json", structured_only=rng.random() < 0.8,
                                             keras=True)
            spec["config_text"] = text
        else:
            spec["h5_post"].append(_h5_attr("/", "model_config", rng.choice((b"{}", b"\xff", b"[", b"null"))))
            label = "config:weights-only"
    elif how == "attrs":
        attr = rng.choice(("layer_names", "weight_names", "name", "model_config"))
        value = rng.choice((5, 2.5, np.array([1, 2]), [b"\xff\xfe"], [b"missing"], b"rnn", "rnn", [b""],
                            np.array([[b"rnn"]]), [b"rnn/../rnn"], np.array([], dtype="S1")))
        spec["h5_post"].append(_h5_attr_any(attr, value))
        label = f"attrs:{attr}={type(value).__name__}"
    elif how == "dataset":
        what = rng.choice(("string", "group", "compound", "huge", "scalar", "link-missing", "external-link",
                           "vlen", "empty"))
        spec["h5_post"].append(_h5_dataset(what))
        label = f"dataset:{what}"
    elif how == "structure":
        what = rng.choice(("drop-layer", "extra-rnn", "unicode-name", "three-vars", "four-vars"))
        if what == "drop-layer":
            spec["layers"] = spec["layers"][:-1] or spec["layers"]
            if len(seed.spec["layers"]) == 1:
                spec["h5_post"].append(_h5_dataset("drop"))
        elif what == "extra-rnn":
            spec["layers"].append(("SimpleRNN", "rnn_extra", [np.zeros((3, 2), np.float32),
                                                              np.zeros((2, 2), np.float32)]))
        elif what == "unicode-name":
            cls, name, arrays = spec["layers"][0]
            spec["layers"][0] = (cls, name + "\u00e9/\u2603", arrays)
        elif what == "three-vars":
            cls, name, arrays = spec["layers"][0]
            spec["layers"][0] = (cls, name, arrays[:2])
        else:
            cls, name, arrays = spec["layers"][0]
            spec["layers"][0] = (cls, name, [*arrays, np.zeros(4, np.float32)])
        label = f"structure:{what}"
    else:
        if spec["layout"] == "keras3":
            return f"keras:zip:{rng.choice(('no-weights', 'no-config'))}", _keras_zip_variant(rng, seed.data)
        return bitflip(rng, seed.data)
    try:
        return f"keras:{label}", keras_bytes(spec)
    except Exception:  # noqa: BLE001 - h5py refused the edit
        return bitflip(rng, seed.data)


def _keras_zip_variant(rng, data: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    drop = rng.choice(("model.weights.h5", "config.json"))
    members.pop(drop, None)
    if rng.random() < 0.5:
        members["model.weights.h5" if drop == "model.weights.h5" else "config.json"] = rng.choice(
            (b"", b"\x89HDF\r\n\x1a\n" + b"\0" * 100, b"{", b"\xff"))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, member in members.items():
            archive.writestr(name, member)
    return buf.getvalue()


def _h5_first_group_with(h5, attr):
    found = []

    def visit(name, obj):
        if attr in obj.attrs:
            found.append(obj)

    h5.visititems(visit)
    return found[0] if found else h5


def _h5_attr(path, key, value):
    def edit(h5):
        h5[path].attrs[key] = value
    return edit


def _h5_attr_any(attr, value):
    def edit(h5):
        obj = h5 if attr == "model_config" else _h5_first_group_with(h5, attr)
        obj.attrs[attr] = value
    return edit


def _h5_datasets(h5):
    import h5py

    found = []
    h5.visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Dataset) else None)
    return found


def _h5_dataset(what):
    def edit(h5):
        import h5py

        names = _h5_datasets(h5)
        if not names:
            return
        name = names[0] if what != "drop" else names[-1]
        shape = h5[name].shape
        del h5[name]
        if what == "string":
            h5[name] = "not a tensor"
        elif what == "group":
            h5.create_group(name)
        elif what == "compound":
            h5.create_dataset(name, data=np.zeros(shape, dtype=[("a", "<f4"), ("b", "<i4")]))
        elif what == "huge":  # chunked and never written: a tiny file declaring ~16 GiB
            h5.create_dataset(name, shape=(65536, 65536), dtype="<f4", chunks=(64, 64))
        elif what == "scalar":
            h5[name] = np.float32(1.0)
        elif what == "link-missing":
            h5[name] = h5py.SoftLink("/does/not/exist")
        elif what == "external-link":
            h5[name] = h5py.ExternalLink("/etc/hostname", "/x")
        elif what == "vlen":
            h5.create_dataset(name, data=np.array([np.zeros(3, np.float32)] * 2, dtype=object),
                              dtype=h5py.vlen_dtype(np.float32))
        elif what == "empty":
            h5.create_dataset(name, data=h5py.Empty("f4"))
    return edit
