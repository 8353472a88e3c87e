"""inspect(): what a `.tflite` file holds, from a pure flatbuffer read (no interpreter)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache

import tflite as fb

from .builder import sha256
from .errors import TflrnnError
from .files import model_bytes
from .model import Activation, Model, Operator, op_name
from .reader import read


@dataclass
class Inspection:
    """The reader's model description plus facts about the file."""

    model: Model
    source: str
    bytes: int
    sha256: str
    micro_arena_bytes: int | None = None  # measured for a portable model, with tflite-micro installed
    full_int8: bool = False  # a full-int8 network tflrnn wrote: the model a microcontroller runs
    network: dict | None = None  # the network tflrnn reads in it (lowering, each direction's cell), None: none

    def to_dict(self) -> dict:
        m = self.model
        return {
            "model": self.source,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "schema_version": m.version,
            "description": m.description,
            "subgraphs": [
                {
                    "name": g.name,
                    "inputs": g.inputs,
                    "outputs": g.outputs,
                    "tensors": [
                        {
                            "index": i,
                            "name": t.name,
                            "shape": list(t.shape),
                            "shape_signature": None if t.shape_signature is None else list(t.shape_signature),
                            "dtype": t.dtype,
                            "variable": t.is_variable,
                            "bytes": t.nbytes,
                            "quantization": None if t.quantization is None else {
                                "scale": list(t.quantization.scale), "zero_point": list(t.quantization.zero_point),
                                "quantized_dimension": t.quantization.quantized_dimension},
                        }
                        for i, t in enumerate(g.tensors)
                    ],
                    "operators": [_operator(op) for op in g.operators],
                }
                for g in m.subgraphs
            ],
            "signatures": [
                {"key": s.key, "subgraph": s.subgraph, "inputs": s.inputs, "outputs": s.outputs} for s in m.signatures
            ],
            "metadata": {name: _metadata_value(name, value) for name, value in m.metadata.items()},
            "micro_arena_bytes": self.micro_arena_bytes,
            "network": self.network,
        }


def inspect(model) -> Inspection:
    """Describe a model given as a path or as bytes. Raises TflrnnError when it is not a readable TFLite file."""
    data, source = model_bytes(model)
    description = read(data)
    full_int8 = _full_int8(description)
    return Inspection(description, source, len(data), sha256(data),
                      _micro_arena(data, description) if full_int8 else None, full_int8, _network(description))


# What reading a network out of a model broken anywhere may raise (inspect shows the tensors all the same)
_BROKEN = (TflrnnError, IndexError, KeyError, ValueError, TypeError, AttributeError)


def _network(description: Model) -> dict | None:
    """The network tflrnn reads in the model, in brief: its lowering and each direction's cell kind and sizes."""
    from .cell import ACTIVATION_NAMES
    from .lowering import holds_a_network, lowering as lowering_of, recover

    if not holds_a_network(description):
        return None
    try:
        network = recover(description)
    except _BROKEN:
        return None  # a model read from a file may be broken anywhere: verify says what is wrong with it
    loops = lowering_of(network.lowering).loops  # the lowering writes its steps unrolled or as a loop
    return {"lowering": network.lowering, "state": network.state,
            "recurrence": ("loop" if network.loop else "unrolled") if loops else None,
            "steps_per_iteration": network.steps_per_iteration if network.loop else None,
            "layers": [{"name": layer.name, "cell": layer.kind, "units": layer.weights.num_units,
                        "input_size": layer.weights.input_size, "activation": ACTIVATION_NAMES[layer.activation],
                        **layer.settings()}
                       for layer in network.layers]}


def _full_int8(description: Model) -> bool:
    """Whether the model is a full-int8 network tflrnn wrote (not a model tflrnn cannot read as one)."""
    from .lowering import lowering_for_model

    chosen = lowering_for_model(description)
    if not chosen.full_int8:
        return False
    try:
        return chosen.recover(description).int8 is not None
    except _BROKEN:
        return False


def _micro_arena(data: bytes, description: Model) -> int | None:
    """The smallest TFLite Micro arena a full-int8 model runs in (measured: arena.py; a microcontroller runs full
    int8); None without tflite-micro, or when TFLite Micro does not run it."""
    from .arena import minimum_arena
    from .runners import micro_arena_bytes

    return minimum_arena(data, micro_arena_bytes(description))


def _operator(op: Operator) -> dict:
    entry = {
        "op": op_name(op.code),
        "builtin_code": op.builtin_code,
        "deprecated_builtin_code": op.deprecated_builtin_code,
        "version": op.version,
        "inputs": op.inputs,
        "outputs": op.outputs,
        "options": None,
    }
    if op.intermediates:  # tensors a kernel reads its internal formats from (a full-int8 LSTM's five)
        entry["intermediates"] = op.intermediates
    if op.options is not None:
        fields = dict(vars(op.options))
        if "activation" in fields:  # shown under the schema's name, as an enum name when it is one
            act = fields.pop("activation")
            fields["fused_activation_function"] = (Activation(act).name if act in Activation._value2member_map_
                                                   else act)
        entry["options"] = {"type": type(op.options).__name__, **fields}
    elif op.options_type:
        entry["options"] = {"type": _names(fb.BuiltinOptions).get(op.options_type, op.options_type)}
    return entry


def _metadata_value(name: str, value: bytes):
    if name == "min_runtime_version":
        return value.rstrip(b"\0").decode("utf-8", errors="replace")
    try:
        return json.loads(value, parse_constant=_not_json)  # NaN/Infinity would make our own JSON invalid
    except (ValueError, RecursionError):
        return {"bytes": len(value)}


def _not_json(constant: str):
    raise ValueError(f"{constant} is not JSON")


@cache
def _names(enum_class) -> dict[int, str]:
    return {v: k for k, v in vars(enum_class).items() if not k.startswith("_") and isinstance(v, int)}
