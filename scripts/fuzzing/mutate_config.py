"""Mutations of cell configs in JSON and TOML: type confusion, huge numbers, NaN/inf, deep nesting."""

from __future__ import annotations

import copy
import random

from .cases import Seed
from .formats import Raw, render_json, render_toml
from .mutate_bytes import bitflip, truncate


CONFIG_KEYS = ("num_units", "units", "activation", "name", "reuse", "dtype", "input_size", "time_steps",
               "batch_size", "time_major", "seed", "use_bias", "batch_input_shape", "return_sequences",
               "return_state", "go_backwards", "stateful", "unroll", "cells", "layers", "quantize",
               "asymmetric_inputs", "bidirectional", "merge", "class_name", "config", "dropout")


def _deep(kind: str, depth: int, leaf: str = "1") -> Raw:
    if kind == "list":
        return Raw("[" * depth + leaf + "]" * depth)
    return Raw('{"a": ' * depth + leaf + "}" * depth, "{a = " * depth + leaf + "}" * depth)


def random_value(rng: random.Random, depth: int = 0):
    choices = [None, True, False, 0, -1, 1, 3, 2**31, 2**63, 10**30, -(2**63), 1.0, 1.5, -0.0, 4.0,
               float("nan"), float("inf"), float("-inf"), 1e308, 5e-324, "", "dynamic", "tanh", "relu", "int8",
               "concat", "none", "sigmoid", "x" * 10000, "\ud800", "\x00", "enc/../x", "\u00e9\u2603", [], [1, 2, 3],
               [None, None, None], [4, 3], {}, {"a": 1}, {"class_name": "Activation", "config": "relu"},
               {"config": {"name": "float16"}}, Raw("1" * 5000, "1" * 5000), Raw("1e999"), Raw("-0"),
               Raw("123456789012345678901234567890"), Raw("0.1e-999999")]
    if depth < 2 and rng.random() < 0.1:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if rng.random() < 0.05:
        return _deep(rng.choice(("list", "dict")), rng.choice((50, 500, 990, 2000, 100000)))
    return rng.choice(choices)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, prefix + (i,))


def _set_path(doc, path, value):
    if not path:
        return value
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return doc


def mutate_config_doc(rng: random.Random, doc, keras: bool = False) -> tuple[str, object]:
    doc = copy.deepcopy(doc)
    how = rng.choice(("type", "type", "type", "add-key", "add-key", "del-key", "wrap", "root", "deep", "cells",
                      "huge"))
    if how == "type":
        paths = list(_paths(doc))[1:] or [()]
        path = rng.choice(paths)
        return f"type@{'/'.join(map(str, path))}", _set_path(doc, path, random_value(rng))
    if how == "add-key" and isinstance(doc, dict):
        target = _random_dict(rng, doc)
        key = rng.choice(CONFIG_KEYS + ("unknown", "", "\u00e9", "num_units ", "x" * 1000))
        target[key] = random_value(rng)
        return f"add-key:{key[:20]}", doc
    if how == "del-key" and isinstance(doc, dict):
        target = _random_dict(rng, doc)
        if target:
            key = rng.choice(list(target))
            del target[key]
            return f"del-key:{str(key)[:20]}", doc
    if how == "wrap":
        return "wrap", rng.choice(({"class_name": "SimpleRNN", "config": doc}, {"class_name": "LSTM", "config": doc},
                                   {"class_name": "SimpleRNN", "config": [doc]}, {"config": doc}, [doc]))
    if how == "root":
        return "root", random_value(rng)
    if how == "deep":
        depth = rng.choice((100, 900, 990, 1000, 3000, 100000))
        kind = rng.choice(("list", "dict"))
        if isinstance(doc, dict):
            target = _random_dict(rng, doc)
            target[rng.choice(CONFIG_KEYS)] = _deep(kind, depth)
            return f"deep:{kind}:{depth}", doc
        return f"deep-root:{kind}:{depth}", _deep(kind, depth)
    if how == "cells" and isinstance(doc, dict):
        cells = [{"num_units": random_value(rng) if rng.random() < 0.3 else 3,
                  **({"name": random_value(rng)} if rng.random() < 0.3 else {}),
                  **({"reuse": random_value(rng)} if rng.random() < 0.2 else {}),
                  **({rng.choice(CONFIG_KEYS): random_value(rng)} if rng.random() < 0.3 else {})}
                 for _ in range(rng.choice((0, 1, 2, 3, 300)))]
        if rng.random() < 0.3 and cells:
            cells[-1] = random_value(rng)
        doc["cells"] = cells
        return "cells", doc
    if how == "huge" and isinstance(doc, dict):
        key = rng.choice(("num_units", "units", "input_size", "time_steps", "batch_size", "seed", "layers"))
        # Just past the limits, not at them: a legal 16383-unit cell is a 1-2 GiB build whose memory (about twice
        # the weights) is the benchmark's to measure, beyond this harness's 3 GiB cap.
        doc[key] = rng.choice((2**31 - 1, 2**31, 2**63, 10**20, Raw("1" * 4301), Raw("1" * 100000), 16384,
                               46341, 2**24 + 1))
        return f"huge:{key}", doc
    return "type@root", random_value(rng)


def _random_dict(rng, doc):
    dicts = [doc] + [d for d in _walk_dicts(doc)]
    return rng.choice(dicts[:20])


def _walk_dicts(value):
    if isinstance(value, dict):
        for v in value.values():
            if isinstance(v, dict):
                yield v
            yield from _walk_dicts(v)
    elif isinstance(value, list):
        for v in value:
            if isinstance(v, dict):
                yield v
            yield from _walk_dicts(v)


def mutate_config_text(rng: random.Random, doc, suffix: str, structured_only: bool = False,
                       keras: bool = False) -> tuple[str, bytes]:
    """A mutated config as bytes: a structural edit, then sometimes a textual one."""
    label, mutated = mutate_config_doc(rng, doc, keras)
    try:
        text = (render_json(mutated) if suffix != ".toml" else render_toml(mutated)).encode("utf-8", "surrogatepass")
    except (RecursionError, ValueError):
        text = b"{}"
    if not structured_only and rng.random() < 0.35:
        tlabel, text = _mutate_text(rng, text, suffix)
        label = f"{label}+{tlabel}"
    return label, text


def _mutate_text(rng: random.Random, text: bytes, suffix: str) -> tuple[str, bytes]:
    how = rng.choice(("bitflip", "truncate", "invalid-utf8", "bom", "nul", "duplicate-key", "comment", "crlf",
                      "toml-special"))
    if how == "bitflip":
        return bitflip(rng, text)
    if how == "truncate":
        return truncate(rng, text)
    if how == "invalid-utf8":
        i = rng.randrange(len(text) + 1)
        return how, text[:i] + rng.choice((b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80")) + text[i:]
    if how == "bom":
        return how, rng.choice((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")) + text
    if how == "nul":
        i = rng.randrange(len(text) + 1)
        return how, text[:i] + b"\0" + text[i:]
    if how == "duplicate-key":
        if suffix == ".toml":
            return how, text + b"num_units = 5\n"
        return how, text.replace(b"{", b'{"num_units": 9, ', 1)
    if how == "comment":
        return how, (b"# comment\n" if suffix == ".toml" else b"// comment\n") + text
    if how == "crlf":
        return how, text.replace(b"\n", b"\r\n").replace(b", ", b",\r")
    return "toml-special", toml_special(rng)


DEPTHS = {"quick": (10, 500, 1000, 3000, 5000), "long": (10, 500, 1000, 5000, 30000, 100000)}


_depths = DEPTHS["quick"]  # set by make_case: the quick run stays fast, the long run goes deeper


def toml_special(rng: random.Random) -> bytes:
    """TOML-only shapes: deep tables, dotted keys, inline nests, dates, arrays of tables, oversize integers."""
    depth = rng.choice(_depths)
    how = rng.choice(("table", "dotted", "inline-array", "inline-table", "date", "array-of-tables", "bigint",
                      "redefine"))
    if how == "table":
        return f"num_units = 4\n[{'.'.join(['a'] * depth)}]\nx = 1\n".encode()
    if how == "dotted":
        return f"num_units = 4\n{'.'.join(['a'] * depth)} = 1\n".encode()
    if how == "inline-array":
        return f"num_units = {'[' * depth}1{']' * depth}\n".encode()
    if how == "inline-table":
        return f"num_units = 4\ncells = [{'{a = ' * depth}1{'}' * depth}]\n".encode()
    if how == "date":
        return rng.choice((b"num_units = 1979-05-27\n", b"num_units = 4\nname = 07:32:00\n",
                           b"num_units = 4\nseed = 1979-05-27T07:32:00Z\n", b"num_units = 4\ncells = [1979-05-27]\n"))
    if how == "array-of-tables":
        return b"[[cells]]\nnum_units = 3\n" * rng.choice((1, 2, 1000)) + b"[[cells]]\nnum_units = 1979-05-27\n"
    if how == "bigint":
        return f"num_units = {'9' * rng.choice((19, 4301, 100000))}\n".encode()
    return b"num_units = 4\n[cells]\nx = 1\n[[cells]]\ny = 2\n"


def mutate_config(rng: random.Random, seed: Seed) -> tuple[str, bytes]:
    if seed.suffix == ".toml" and rng.random() < 0.12:
        return "toml-special", toml_special(rng)
    label, text = mutate_config_text(rng, seed.spec, seed.suffix)
    return f"config:{label}", text
