"""PyTorch nn.RNN state dicts: `.safetensors` (read with the safetensors package, no torch needed) or `.pt`/`.pth`
(torch.load with weights_only=True, when torch is installed).

nn.RNN layer k holds weight_ih_l{k} [U,I] -> W, weight_hh_l{k} [U,U] -> R, and bias_ih_l{k} + bias_hh_l{k} -> b.
A state dict does not record `nonlinearity`: it is tanh unless --activation says relu.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..cell import CellWeights
from ..errors import WeightsError
from . import ImportedCell, require

_KEY = re.compile(r"^(?P<prefix>.*?)(?P<role>weight_ih|weight_hh|bias_ih|bias_hh)_l(?P<layer>\d+)(?P<reverse>_reverse)?$")
_SAFETENSORS_HINT = (
    "or save a .safetensors file, which tflrnn reads without torch: "
    "safetensors.torch.save_file(rnn.state_dict(), 'rnn.safetensors')"
)


def read_safetensors(path: Path, layer_index: int | None) -> ImportedCell:
    require("safetensors", "safetensors")
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        arrays = load_file(str(path))
    except (SafetensorError, OSError, ValueError, TypeError) as exc:
        raise WeightsError(f"cannot read safetensors file {path}: {exc}") from None
    return cell_from_state_dict(arrays, layer_index, "safetensors", path)


def read_torch(path: Path, layer_index: int | None) -> ImportedCell:
    torch = require("torch", "torch", _SAFETENSORS_HINT)
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad or unsafe pickle
        raise WeightsError(f"cannot read {path} as a state dict: {' '.join(str(exc).split())[:300]}") from None
    if hasattr(state, "state_dict") and callable(state.state_dict):
        state = state.state_dict()
    if not isinstance(state, dict):
        raise WeightsError(f"{path} holds a {type(state).__name__}, not a state dict (save rnn.state_dict())")
    arrays = {k: v.detach().to(torch.float32).numpy() for k, v in state.items() if torch.is_tensor(v)}
    return cell_from_state_dict(arrays, layer_index, "torch", path)


def cell_from_state_dict(arrays: dict, layer_index: int | None, fmt: str, path: Path) -> ImportedCell:
    layers: dict[tuple[str, int], dict[str, np.ndarray]] = {}
    reverse = False
    for key, value in arrays.items():
        match = _KEY.match(key)
        if match is None:
            continue
        if match["reverse"]:
            reverse = True
            continue
        layers.setdefault((match["prefix"], int(match["layer"])), {})[match["role"]] = value
    if not layers:
        raise WeightsError(f"no nn.RNN weights (weight_ih_l0, weight_hh_l0, ...) in {path}")
    if reverse:
        raise WeightsError(f"{path} is a bidirectional nn.RNN, which tflrnn does not build yet (one direction only)")
    prefixes = sorted({prefix for prefix, _ in layers})
    if len(prefixes) > 1:
        raise WeightsError(f"{path} holds several RNN modules ({', '.join(repr(p) for p in prefixes)})")
    indices = sorted(index for _, index in layers)
    if layer_index is None:
        if len(indices) > 1:
            raise WeightsError(f"{path} has {len(indices)} layers (0..{indices[-1]}); pick one with --layer-index")
        layer_index = indices[0]
    if layer_index not in indices:
        raise WeightsError(f"{path} has no layer {layer_index} (layers: {', '.join(map(str, indices))})")
    roles = layers[(prefixes[0], layer_index)]
    prefix = f"{prefixes[0]}" if prefixes[0] else ""
    for role in ("weight_ih", "weight_hh"):
        if role not in roles:
            raise WeightsError(f"{path}: missing key '{prefix}{role}_l{layer_index}'")
    w, r = roles["weight_ih"], roles["weight_hh"]
    if r.ndim == 2 and w.ndim == 2 and r.shape[0] != r.shape[1]:
        kind = {4: "an LSTM", 3: "a GRU"}.get(r.shape[0] // max(r.shape[1], 1), "not an nn.RNN")
        raise WeightsError(f"{path}: weight_hh_l{layer_index} is {list(r.shape)}, {kind}; tflrnn reads nn.RNN")
    bias = np.zeros(r.shape[0], dtype=np.float64)
    for role in ("bias_ih", "bias_hh"):
        if role in roles:
            bias = bias + roles[role].astype(np.float64)  # nn.RNN adds both biases every step
    try:
        weights = CellWeights(w, r, bias)
    except WeightsError as exc:
        raise WeightsError(f"{path}: layer {layer_index}: {exc}") from None
    details = ["nonlinearity is not recorded in a state dict: give --activation relu for nonlinearity='relu'"]
    if "bias_ih" not in roles and "bias_hh" not in roles:
        details.append("bias=False: zero bias")
    return ImportedCell(weights, fmt, f"{prefix}l{layer_index}", activation=None, details="; ".join(details))
