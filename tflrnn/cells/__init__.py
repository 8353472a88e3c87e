"""Cell kinds: what a recurrent cell is, one module per kind, as onnx's reference keeps one op per file.

A kind declares its weights (their roles and shapes, in TFLite's layout: rows are output units), its
cell class (the python API), whether a fused builtin op runs it, and the names sources give it. The float64
reference of each kind is in `reference.py` (written apart from the lowering that writes its ops), its portable
steps and int8 formats in `lowering/<kind>.py`, verify's check of its int8 steps in `verification/int8_<kind>.py`. A network's `Layer` knows its kind from its weights (`weights.kind`).

| kind | module  | weights (roles)                                                   | fused op                     |
| rnn  | rnn.py  | input_weights [U,I], recurrent_weights [U,U], bias [U]            | UNIDIRECTIONAL_SEQUENCE_RNN  |
| gru  | gru.py  | input_weights [3U,I], recurrent_weights [3U,U], bias [3U] (+ recurrent_bias [3U] when reset after) | none |
| lstm | lstm.py | input_weights [4U,I], recurrent_weights [4U,U], bias [4U]; state h and c, [B, 2U]  | UNIDIRECTIONAL_SEQUENCE_LSTM |
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError


@dataclass(frozen=True)
class CellKind:
    name: str  # as --cell takes it
    title: str  # as a sentence names it
    cell: type  # the python API's cell class (RNNCell, GRUCell)
    weights: type  # its weights (CellWeights, GRUWeights)
    roles: tuple[str, ...]  # the weights' roles, as tflrnn weights exports them and an .npz is read by
    fused: bool  # a fused builtin op runs it (else only the portable lowering writes it)
    keras: tuple[str, ...]  # Keras class names of the layer and its cell (sources/keras_files.py reads the layer)
    torch: str  # the nn module (state dict keys weight_ih_l0 ... for both; the sources tell them by shape)
    onnx: str  # the ONNX op type
    reference: str = "run"  # its float64 recurrence: the function of that name in reference.py
    values: str | None = None  # the function in reference.py giving every value its steps compute (calibration)
    steps: str | None = None  # the module writing its portable steps (None: the basic cell's, in portable.py)
    int8_steps_check: str | None = None  # verify's int8.steps for it (None: the basic cell's, in verification/int8.py)
    gates: int = 1  # blocks of rows in each weight role (the basic cell 1, a GRU 3, an LSTM 4)
    settings: tuple[str, ...] = ()  # what else its cell takes (--reset-after, --cell-clip, a config's keys)
    config_keys: tuple[str, ...] = ()  # keys only its Keras get_config() writes: a config holding one is this kind
    describe: object = None  # (a layer as inspect and the summary give it) -> its settings as words, " (...)" or ""

    @property
    def a_title(self) -> str:
        """Its title with its article, as the letters are said: a GRU, an LSTM, a basic RNN."""
        return f"{'an' if self.title[0] in 'AEFHILMNORSX' else 'a'} {self.title}"

    def portable_steps(self):
        """The module that writes (and reads back) this kind's steps in the portable lowering: write_direction,
        write_int8_direction, recover_weights, int8_formats (calibration), int8_plan (read back), MARKER (its
        projection weights' name suffix)."""
        import importlib

        return importlib.import_module(self.steps) if self.steps else None

    def int8_check(self):
        """The module verify's int8.steps runs on this kind's full-int8 steps: stems(layer), judge_steps(...),
        written from the kind's equations apart from its lowering."""
        import importlib

        return importlib.import_module(self.int8_steps_check) if self.int8_steps_check else None


def _kinds() -> dict[str, CellKind]:
    from . import gru, lstm, rnn

    return {kind.name: kind for kind in (rnn.KIND, gru.KIND, lstm.KIND)}


_KINDS: dict[str, CellKind] = {}


def kinds() -> dict[str, CellKind]:
    """Every kind by name, in the order --cell lists them."""
    if not _KINDS:
        _KINDS.update(_kinds())
    return _KINDS


def kind(name: str) -> CellKind:
    if name not in kinds():
        raise ConfigError(f"unknown cell {name!r}; one of {', '.join(kinds())}")
    return kinds()[name]


def portable_markers() -> dict[str, CellKind]:
    """The name suffix by which the portable reader finds each kind's layers (other than the basic cell's)."""
    return {kind.portable_steps().MARKER: kind for kind in kinds().values() if kind.steps}


def kind_of(weights) -> CellKind:
    """The kind a weights object belongs to."""
    return kind(getattr(weights, "kind", "rnn"))
