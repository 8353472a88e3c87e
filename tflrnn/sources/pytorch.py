"""PyTorch nn.RNN, nn.GRU and nn.LSTM state dicts: `.safetensors` (read with the safetensors package, no torch
needed) or `.pt`/`.pth` (torch.load with weights_only=True, when torch is installed).

nn.RNN layer k holds weight_ih_l{k} [U,I] -> W, weight_hh_l{k} [U,U] -> R, and bias_ih_l{k} + bias_hh_l{k} -> b.
A state dict does not record `nonlinearity`: it is tanh unless --activation says relu.
nn.GRU has the same keys with 3U rows (gates r, z, n; reset after the recurrent product, so both biases are kept),
nn.LSTM with 4U rows (gates i, f, g, o; its two biases only add, so they are summed): the shape of weight_hh tells
the three apart ([U, U], [3U, U] or [4U, U]). An nn.LSTM with proj_size > 0 (keys weight_hr_l{k}) is refused: its
projection of h is not in tflrnn's LSTM.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..cell import CellWeights
from ..cells import lstm
from ..cells.gru import GATES, GRUWeights
from ..cells.lstm import LSTMWeights
from ..errors import WeightsError
from . import ImportedCell, require

_KEY = re.compile(r"^(?P<prefix>.*?)(?P<role>weight_ih|weight_hh|weight_hr|bias_ih|bias_hh)_l(?P<layer>\d+)"
                  r"(?P<reverse>_reverse)?$")
_SAFETENSORS_HINT = (
    "or save a .safetensors file, which tflrnn reads without torch: "
    "safetensors.torch.save_file(rnn.state_dict(), 'rnn.safetensors')"
)


def read_safetensors(path: Path) -> dict:
    """The file's tensors as numpy arrays."""
    require("safetensors", "safetensors")
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        arrays = load_file(str(path))
    except (SafetensorError, OSError, ValueError, TypeError) as exc:
        raise WeightsError(f"cannot read safetensors file {path}: {exc}") from None
    return arrays


def read_torch(path: Path) -> dict:
    """The state dict's tensors as float32 numpy arrays."""
    torch = require("torch", "torch", _SAFETENSORS_HINT)
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad or unsafe pickle
        raise WeightsError(f"cannot read {path} as a state dict: {' '.join(str(exc).split())[:300]}") from None
    if hasattr(state, "state_dict") and callable(state.state_dict):
        state = state.state_dict()
    if not isinstance(state, dict):
        raise WeightsError(f"{path} holds a {type(state).__name__}, not a state dict (save rnn.state_dict())")
    return {k: v.detach().to(torch.float32).numpy() for k, v in state.items() if torch.is_tensor(v)}


def cells_from_state_dict(arrays: dict, layer_index: int | None, fmt: str, path: Path) -> list[ImportedCell]:
    """The state dict's nn.RNN as cells: one (a single layer, or `layer_index`), a stack (num_layers > 1), with a
    forward and backward pair per layer when bidirectional=True. The layer names are l<k> and l<k>_reverse."""
    layers: dict[tuple[str, int, bool], dict[str, np.ndarray]] = {}
    for key, value in arrays.items():
        match = _KEY.match(key)
        if match is not None:
            layers.setdefault((match["prefix"], int(match["layer"]), bool(match["reverse"])), {})[match["role"]] = value
    if not layers:
        raise WeightsError(f"no nn.RNN, nn.GRU or nn.LSTM weights (weight_ih_l0, weight_hh_l0, ...) in {path}")
    prefixes = sorted({prefix for prefix, _, _ in layers})
    if len(prefixes) > 1:
        raise WeightsError(f"{path} holds several RNN modules ({', '.join(repr(p) for p in prefixes)})")
    prefix = prefixes[0]
    indices = sorted({index for _, index, _ in layers})
    if indices != list(range(len(indices))):
        raise WeightsError(f"{path} has nn.RNN layers {indices}; a state dict holds layers 0 to n-1")
    reverse = any(r for _, _, r in layers)
    if layer_index is not None:
        if reverse:
            raise WeightsError(f"{path} is bidirectional: --layer-index picks a layer of a unidirectional nn.RNN")
        if layer_index not in indices:
            raise WeightsError(f"{path} has no layer {layer_index} (layers: {', '.join(map(str, indices))})")
        indices = [layer_index]
    keys = [(prefix, k, r) for k in indices for r in ((False, True) if reverse else (False,))]
    cells = [_cell(layers.get(key, {}), key, fmt, path) for key in keys]
    if len({cell.weights.kind for cell in cells}) > 1:  # one module is one kind: no nn module mixes them
        raise WeightsError(f"{path} mixes layers shaped as different kinds (nn.RNN, nn.GRU, nn.LSTM) under one "
                           "module; one module is one kind of cell")
    return cells


def _cell(roles: dict, key: tuple, fmt: str, path: Path) -> ImportedCell:
    prefix, index, reverse = key
    name = f"{prefix}l{index}{'_reverse' if reverse else ''}"
    suffix = f"_l{index}{'_reverse' if reverse else ''}"
    for role in ("weight_ih", "weight_hh"):
        if role not in roles:
            raise WeightsError(f"{path}: missing key '{prefix}{role}{suffix}'")
    w, r = roles["weight_ih"], roles["weight_hh"]
    if "weight_hr" in roles:  # nn.LSTM(proj_size=P): h is projected to P values by weight_hr [P, U]
        raise WeightsError(f"{path}: '{prefix}weight_hr{suffix}' {list(np.shape(roles['weight_hr']))} is an "
                           "nn.LSTM's projection (proj_size > 0): projection is not supported (tflrnn's LSTM "
                           "outputs h itself)")
    if r.ndim == 2 and r.shape[1] and r.shape[0] == GATES * r.shape[1]:
        return _gru_cell(roles, name, fmt, path)
    if r.ndim == 2 and r.shape[1] and r.shape[0] == lstm.GATES * r.shape[1]:
        return _lstm_cell(roles, name, fmt, path)
    if r.ndim == 2 and w.ndim == 2 and r.shape[0] != r.shape[1]:
        raise WeightsError(f"{path}: weight_hh{suffix} is {list(r.shape)}: neither nn.RNN ([U, U]), nn.GRU "
                           "([3U, U]) nor nn.LSTM ([4U, U])")
    bias = np.zeros(r.shape[0], dtype=np.float64)
    for role in ("bias_ih", "bias_hh"):
        if role in roles:
            bias = bias + roles[role].astype(np.float64)  # nn.RNN adds both biases every step
    try:
        weights = CellWeights(w, r, bias)
    except WeightsError as exc:
        raise WeightsError(f"{path}: {name}: {exc}") from None
    details = "bias=False: zero bias" if "bias_ih" not in roles and "bias_hh" not in roles else ""
    return ImportedCell(weights, fmt, name, activation=None, details=details, has_bias="bias_ih" in roles,
                        hint="a state dict does not record nn.RNN's nonlinearity; give --activation relu for "
                             "nonlinearity='relu'")


def _gru_cell(roles: dict, name: str, fmt: str, path: Path) -> ImportedCell:
    """An nn.GRU layer: its biases stay apart (r multiplies the recurrent one); bias=False is zero biases."""
    w, r = roles["weight_ih"], roles["weight_hh"]
    zeros = np.zeros(r.shape[0], np.float32)
    try:
        weights = GRUWeights.from_torch(w, r, roles.get("bias_ih", zeros), roles.get("bias_hh", zeros))
    except WeightsError as exc:
        raise WeightsError(f"{path}: {name} (nn.GRU): {exc}") from None
    has_bias = "bias_ih" in roles or "bias_hh" in roles
    return ImportedCell(weights, fmt, name, activation="tanh", details="" if has_bias else "bias=False: zero biases",
                        has_bias=has_bias)


def _lstm_cell(roles: dict, name: str, fmt: str, path: Path) -> ImportedCell:
    """An nn.LSTM layer: its two biases only add (summed); bias=False is zero biases."""
    try:
        weights = LSTMWeights.from_torch(roles["weight_ih"], roles["weight_hh"], roles.get("bias_ih"),
                                         roles.get("bias_hh"))
    except WeightsError as exc:
        raise WeightsError(f"{path}: {name} (nn.LSTM): {exc}") from None
    has_bias = "bias_ih" in roles or "bias_hh" in roles
    return ImportedCell(weights, fmt, name, activation="tanh", details="" if has_bias else "bias=False: zero biases",
                        has_bias=has_bias)


def cell_from_state_dict(arrays: dict, layer_index: int | None, fmt: str, path: Path) -> ImportedCell:
    """One cell: the only layer, or `layer_index`."""
    cells = cells_from_state_dict(arrays, layer_index, fmt, path)
    if len(cells) > 1:
        kind = "a bidirectional nn.RNN" if cells[-1].layer.endswith("_reverse") else f"{len(cells)} layers"
        raise WeightsError(f"{path} holds {kind}; build it whole, or pick one layer with --layer-index")
    return cells[0]
