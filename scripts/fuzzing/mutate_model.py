"""Semantic model mutations, made through tflrnn's own reader and writer."""

from __future__ import annotations

import copy
import json
import random

import numpy as np

from .cases import Seed
from .mutate_bytes import bitflip
from .mutate_config import mutate_config_text


SEMANTIC_KINDS = ("shape", "dtype", "data", "variable", "shape_signature", "quantization", "op_inputs",
                  "op_outputs", "op_version", "op_code", "options", "graph_io", "signature", "metadata",
                  "subgraphs", "operators", "description")


def semantic_mutate(rng: random.Random, seed: Seed) -> tuple[str, bytes]:
    """Edit the model description (tensors, op, options, signature, metadata) and write it back: well-formed
    flatbuffers whose content is wrong, the kind of file that gets past the reader to the checks and runtime."""
    from tflrnn import model as m
    from tflrnn import writer

    for _ in range(8):
        model = copy.deepcopy(seed.description)
        kind = rng.choice(SEMANTIC_KINDS)
        try:
            label = _semantic_edit(rng, model, kind, m)
            return f"semantic:{kind}:{label}", writer.write(model)
        except Exception:  # noqa: BLE001 - the writer refused this edit: try another
            continue
    return bitflip(rng, seed.data)


def _semantic_edit(rng, model, kind, m) -> str:
    # half the edits in the serving subgraph, half in another where there are others (a loop's body and condition,
    # the state's init and reset)
    g = model.subgraphs[0] if len(model.subgraphs) == 1 or rng.random() < 0.5 else rng.choice(model.subgraphs[1:])
    tensors = g.tensors
    t = rng.choice(tensors)
    ops = g.operators
    op = rng.choice(ops)
    n = len(tensors)
    if kind == "shape":
        dims = list(t.shape)
        how = rng.choice(("zero", "negative", "huge", "plus", "drop", "add", "swap"))
        if how == "drop" and dims:
            dims.pop(rng.randrange(len(dims)))
        elif how == "add":
            dims.insert(rng.randrange(len(dims) + 1), rng.choice((1, 2, 0)))
        elif how == "swap" and len(dims) > 1:
            dims.reverse()
        elif dims:
            i = rng.randrange(len(dims))
            dims[i] = {"zero": 0, "negative": rng.choice((-1, -2)), "huge": rng.choice((2**31 - 1, 2**20, 46341)),
                       "plus": dims[i] + 1}.get(how, dims[i])
        t.shape = tuple(dims)
        return f"{t.name}={dims}"
    if kind == "dtype":
        t.dtype = rng.choice([d for d in m.TENSOR_TYPES if d != t.dtype])
        return f"{t.name}={t.dtype}"
    if kind == "data":
        how = rng.choice(("nan", "inf", "none", "add", "empty", "huge"))
        if how == "none":
            t.data = None
        elif how == "add":
            t.data = np.zeros(max(1, int(np.prod([d for d in t.shape if d > 0] or [1]))), np.float32)
        elif how == "empty":
            t.data = np.zeros(0, np.float32)
        elif t.data is not None and t.data.size:
            data = t.data.copy()
            if data.dtype.kind == "f":
                data.flat[rng.randrange(data.size)] = {"nan": np.nan, "inf": np.inf, "huge": 3.4e38}[how]
            else:
                data.flat[rng.randrange(data.size)] = np.iinfo(data.dtype).min
            t.data = data
        return f"{t.name}:{how}"
    if kind == "variable":
        t.is_variable = not t.is_variable
        return f"{t.name}={t.is_variable}"
    if kind == "shape_signature":
        t.shape_signature = tuple(rng.choice((-1, d, 0, -2)) for d in t.shape) if rng.random() < 0.7 else (-1,)
        return f"{t.name}={t.shape_signature}"
    if kind == "quantization":
        q = m.Quantization(scale=tuple(rng.choice((float("nan"), 0.0, -1.0, float("inf"), 1e-30, 1.0))
                                       for _ in range(rng.choice((1, 1, 2, 4)))),
                           zero_point=tuple(rng.choice((0, 127, -128, 2**31 - 1)) for _ in range(rng.choice((0, 1, 4)))),
                           quantized_dimension=rng.choice((0, 1, 5, -1)))
        t.quantization = q if rng.random() < 0.8 else None
        return f"{t.name}"
    if kind in ("op_inputs", "op_outputs"):
        vector = op.inputs if kind == "op_inputs" else op.outputs
        how = rng.choice(("index", "swap", "drop", "add", "duplicate"))
        if how == "index" and vector:
            vector[rng.randrange(len(vector))] = rng.choice((-1, -2, n, n + 5, 2**31 - 1, rng.randrange(n)))
        elif how == "swap" and len(vector) > 1:
            i, j = rng.sample(range(len(vector)), 2)
            vector[i], vector[j] = vector[j], vector[i]
        elif how == "drop" and vector:
            vector.pop(rng.randrange(len(vector)))
        elif how == "add":
            vector.append(rng.choice((-1, 0, n - 1, n)))
        elif vector:
            vector[rng.randrange(len(vector))] = vector[0]
        return f"{how}"
    if kind == "op_version":
        op.version = rng.choice((0, 2, 3, 4, 99, -1, 2**31 - 1))
        return str(op.version)
    if kind == "op_code":
        code = rng.choice((0, 35, 44, 45, 46, 127, 150, 200, 2**31 - 1))
        if rng.random() < 0.5:
            op.builtin_code = code
        else:
            op.deprecated_builtin_code = code if code < 128 else 127
        return str(code)
    if kind == "options":
        how = rng.choice(("none", "activation", "time_major", "merge", "asymmetric", "swap", "type"))
        if how == "none":
            op.options = None
        elif how == "activation" and op.options is not None and hasattr(op.options, "activation"):
            op.options.activation = rng.choice((0, 1, 2, 3, 4, 5, 6, 7, 127, 255, -1))
        elif how == "time_major" and hasattr(op.options, "time_major"):
            op.options.time_major = not op.options.time_major
        elif how == "merge" and hasattr(op.options, "merge_outputs"):
            op.options.merge_outputs = not op.options.merge_outputs
        elif how == "asymmetric" and hasattr(op.options, "asymmetric_quantize_inputs"):
            op.options.asymmetric_quantize_inputs = not op.options.asymmetric_quantize_inputs
        elif how == "swap":
            subgraph = rng.choice((-1, 0, 1, 2, len(model.subgraphs), 2**31 - 1))
            op.options = rng.choice((m.SequenceRNNOptions(), m.BidirectionalSequenceRNNOptions(merge_outputs=True),
                                     m.StridedSliceOptions(shrink_axis_mask=7), m.VarHandleOptions(shared_name=""),
                                     m.VarHandleOptions(shared_name=rng.choice(("state", "lstm/cell_0/state"))),
                                     m.WhileOptions(cond_subgraph_index=subgraph, body_subgraph_index=rng.choice(
                                         (subgraph, 0, 1, 2))), m.CallOnceOptions(init_subgraph_index=subgraph),
                                     m.GatherOptions(axis=rng.choice((0, 1, -1, 5)))))
        else:
            op.options_type = rng.choice((0, 31, 32, 70, 99, 255))
        return how
    if kind == "graph_io":
        vector = rng.choice((g.inputs, g.outputs))
        if vector and rng.random() < 0.7:
            vector[rng.randrange(len(vector))] = rng.choice((-1, n, rng.randrange(n)))
        else:
            vector.append(rng.randrange(n))
        return ""
    if kind == "signature":
        if not model.signatures or rng.random() < 0.15:
            model.signatures = [] if model.signatures else [m.Signature("serving_default", {"input": 0}, {"output": 1})]
            return "toggle"
        s = rng.choice(model.signatures)
        how = rng.choice(("key", "input", "output", "subgraph", "names", "duplicate"))
        if how == "key":
            s.key = rng.choice(("", "serving", "serving_default\x00", "x" * 300))
        elif how in ("input", "output"):
            target = s.inputs if how == "input" else s.outputs
            if target:
                key = rng.choice(sorted(target))
                target[key] = rng.choice((-1, n, 2**31 - 1, rng.randrange(n)))
        elif how == "subgraph":
            s.subgraph = rng.choice((1, 5, 2**31 - 1, -1))
        elif how == "names":
            target = s.inputs if rng.random() < 0.5 else s.outputs
            if target:
                target[rng.choice(("", "output_fw", "input", "x"))] = target.pop(rng.choice(sorted(target)))
        else:
            model.signatures.append(copy.deepcopy(s))
        return how
    if kind == "metadata":
        how = rng.choice(("tflrnn", "tflrnn", "tflrnn", "runtime", "drop", "add"))
        if how == "tflrnn" and "tflrnn" in model.metadata:
            try:
                doc = json.loads(model.metadata["tflrnn"])
            except ValueError:
                doc = {}
            label, text = mutate_config_text(rng, doc, ".json", structured_only=rng.random() < 0.7)
            model.metadata["tflrnn"] = text
            return label
        if how == "runtime":
            model.metadata["min_runtime_version"] = rng.choice((b"", b"\xff\xfe", b"99.0.0", b"1.14", b"x" * 1000,
                                                                b"1.14.0\x00junk", b"2.3.0"))
            return "runtime"
        if how == "drop" and model.metadata:
            model.metadata.pop(rng.choice(sorted(model.metadata)))
            return "drop"
        model.metadata[rng.choice(("tflrnn", "extra", "", "\u00e9"))] = rng.choice((b"{}", b"null", b"[]", b"\xff"))
        return "add"
    if kind == "subgraphs":
        how = rng.choice(("duplicate", "empty", "drop-all"))
        if how == "duplicate":
            model.subgraphs.append(copy.deepcopy(g))
        elif how == "empty":
            model.subgraphs.insert(0, m.Subgraph([], [], [], []))
        else:
            model.subgraphs = []
        return how
    if kind == "operators":
        how = rng.choice(("duplicate", "drop", "clear"))
        if how == "duplicate":
            ops.append(copy.deepcopy(op))
        elif how == "drop":
            ops.remove(op)
        else:
            ops.clear()
        return how
    model.description = rng.choice(("", "x" * 5000, "\x00", "tflrnn \u2603"))
    model.version = rng.choice((0, 2, 4, 2**31 - 1, 3))
    return "description/version"
