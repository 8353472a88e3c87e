"""Lowerings: how a network becomes TFLite ops, and how a model is read back into the network it holds.

Each lowering is a pair of inverse functions, `lower(network) -> Model` (no metadata: `build` adds it) and
`recover(model) -> Network`, registered here under the name a network's `lowering` field carries. A new lowering
is a module beside `fused.py` and one entry in LOWERINGS; nothing else changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..errors import ConfigError, ModelFormatError
from ..model import Model
from ..network import Network
from . import fused, portable


@dataclass(frozen=True)
class Lowering:
    """A lowering, and what it can write: the rest of tflrnn asks these instead of comparing names."""

    name: str
    lower: Callable[[Network], Model]
    recover: Callable[[Model], Network]
    summary: str  # one line for help and errors
    states: tuple[str, ...]  # where a network's state may live (network.STATES)
    full_int8: tuple[str, ...]  # the cell kinds it writes with every op in int8 (--quantize full-int8)
    loops: bool  # the steps unrolled or in a WHILE loop (--recurrence)
    xnnpack: bool  # XNNPACK takes its ops: LiteRT runs it with and without the delegate
    reset_key: str | None  # the signature that zeroes a carried state (None: reset_all_variables() does)
    runtimes: tuple[str, ...] | None  # the runtimes with its kernels (None: every one)
    exported_weights: Callable  # model -> (each direction's (name, weights), each Dense's (kernel name, bias name,
    #                             kernel, bias)): what `tflrnn weights` writes
    ops_of: Callable[[Network], str]  # how a summary names the ops a network becomes
    runtimes_for: Callable[[Model], tuple[str, ...]] | None = None  # the runtimes with kernels for a given model's
    #                                                                  ops (None: `runtimes`)
    # How its full-int8 kernels take a weight tensor: a scale per output channel (FULLY_CONNECTED), or one per
    # tensor (the int8 LSTM op: one per gate's W and R)
    int8_weight_scales: str = "per-channel"


LOWERINGS = {
    "fused": Lowering("fused", fused.lower, fused.recover,
                      "TFLite's fused UNIDIRECTIONAL/BIDIRECTIONAL_SEQUENCE_RNN and _LSTM ops with variable state "
                      "tensors",
                      states=("carry",), full_int8=("lstm",), loops=False, xnnpack=False, reset_key=None,
                      runtimes=("litert", "tensorflow"), exported_weights=fused.exported_weights,
                      ops_of=fused.ops_of, runtimes_for=fused.runtimes_for, int8_weight_scales="per-tensor"),
    "portable": Lowering("portable", portable.lower, portable.recover,
                         "plain builtin ops (FULLY_CONNECTED, ADD, TANH, UNPACK, PACK), the state in resource "
                         "variables, an input/output, or none: every TFLite runtime runs it",
                         states=("carry", "io", "zero"), full_int8=("rnn", "gru", "lstm"), loops=True, xnnpack=True,
                         reset_key=portable.RESET_KEY, runtimes=None, exported_weights=portable.exported_weights,
                         ops_of=lambda network: "portable lowering"),
}


def lowering(name: str) -> Lowering:
    if name not in LOWERINGS:
        raise ConfigError(f"unknown lowering {name!r}; one of {', '.join(LOWERINGS)}")
    return LOWERINGS[name]


def lower(network: Network) -> Model:
    return lowering(network.lowering).lower(network)


def lowering_of_model(model: Model) -> str:
    """Which lowering a model is read with: "portable" for one without a fused RNN op that has a layer as the
    portable lowering writes it, else "fused" (whose reader says what is missing when neither is there)."""
    fused_ops = any(fused.is_ours(graph, op) for graph in model.subgraphs for op in graph.operators)
    return "portable" if not fused_ops and portable.holds_a_layer(model) else "fused"


def lowering_for_model(model: Model) -> Lowering:
    """The lowering a model is read with (lowering_of_model), as the registry has it."""
    return LOWERINGS[lowering_of_model(model)]


def recover(model: Model) -> Network:
    """The network in a model tflrnn wrote (ModelFormatError when it holds none)."""
    return lowering(lowering_of_model(model)).recover(model)


def holds_a_network(description) -> bool:
    """Whether a model holds a network tflrnn reads: a fused RNN op, or the portable lowering's layers."""
    return lowering_of_model(description) == "portable" or any(
        fused.is_ours(graph, op) for graph in description.subgraphs for op in graph.operators)


def require_a_network(description) -> None:
    """ModelFormatError, saying what tflrnn reads, for a model with neither lowering's RNN: one another tool wrote
    (the converter's WHILE loop or unrolled graph, say), or no RNN at all. (A model read as the portable lowering
    has its layers: lowering_of_model reads any other as fused.)"""
    if not holds_a_network(description):
        raise ModelFormatError(
            "the model holds no network tflrnn writes: neither a fused UNIDIRECTIONAL_SEQUENCE_RNN or "
            "BIDIRECTIONAL_SEQUENCE_RNN op nor the portable lowering's layers (a FULLY_CONNECTED by "
            "'<name>/input_weights'); tflrnn reads the models it builds, not another tool's (a converter's "
            "WHILE loop or unrolled steps): `verify MODEL --against SOURCE` compares one with its Keras or ONNX "
            "source")
