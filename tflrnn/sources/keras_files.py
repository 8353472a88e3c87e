"""Keras files read with zipfile + h5py, without TensorFlow.

- `.keras` (Keras 3): a zip of config.json and model.weights.h5, where each layer's variables sit at
  layers/<path>/cell/vars/{0,1,2} (kernel, recurrent_kernel, bias) and layers/<path>/vars carries the layer name.
- `.weights.h5` (Keras 3 save_weights): the same HDF5 layout, without the config.
- `.h5` (Keras 2 / tf_keras, or Keras 3 legacy): attrs model_config (absent when saved with save_weights), and
  model_weights/<layer>/ (or /<layer>/) holding datasets listed in the weight_names attribute.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

from ..cell import SUPPORTED_ACTIVATIONS, CellWeights, parse_activation
from ..errors import ConfigError, WeightsError
from . import ImportedCell, require

_CORRUPT = (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError, UnicodeDecodeError, RecursionError)


def _load(path: Path) -> tuple[dict | None, dict[str, list]]:
    """The model config (None for a weights-only file) and every SimpleRNN cell's arrays, by layer name; a
    Bidirectional layer's two cells are keyed <name>/forward and <name>/backward."""
    h5py = require("h5py", "keras")
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                names = set(archive.namelist())
                if "model.weights.h5" not in names:
                    raise WeightsError(f"{path}: a zip without model.weights.h5 is not a .keras file")
                config = json.loads(archive.read("config.json")) if "config.json" in names else None
                weights_h5 = io.BytesIO(archive.read("model.weights.h5"))
            with h5py.File(weights_h5, "r") as h5:
                return config, _keras3_cells(h5)
        with h5py.File(path, "r") as h5:
            if "layers" in h5:  # Keras 3 .weights.h5
                return None, _keras3_cells(h5)
            raw = h5.attrs.get("model_config")
            config = json.loads(raw.decode() if isinstance(raw, bytes) else raw) if raw is not None else None
            return config, _legacy_cells(h5["model_weights"] if "model_weights" in h5 else h5)
    except WeightsError:
        raise
    except _CORRUPT as exc:
        raise WeightsError(f"cannot read Keras file {path}: {' '.join(str(exc).split()) or type(exc).__name__}") from None


def read_keras(path: Path, layer: str | None = None) -> ImportedCell:
    config, found = _load(path)
    layers = _simple_rnn_configs(config) if config is not None else {}
    if config is not None:
        found = {name: arrays for name, arrays in found.items() if name in layers}
    if not found:
        kinds = ", ".join(sorted(_layer_classes(config))) if config is not None else "none with SimpleRNN weights"
        raise WeightsError(f"no SimpleRNN layer in {path} (layers: {kinds})")
    if layer is None:
        if len(found) > 1:
            raise WeightsError(f"{path} has several SimpleRNN layers ({', '.join(sorted(found))}); pick one with --layer")
        layer = next(iter(found))
    elif layer not in found:
        raise WeightsError(f"{path} has no SimpleRNN layer '{layer}' (it has: {', '.join(sorted(found))})")
    return _cell(path, layer, found[layer], layers.get(layer, {}), config is not None)


def read_keras_model(path: Path) -> tuple[list[ImportedCell], str, dict]:
    """Every SimpleRNN of a saved Keras model, as it connects: ([cell], "cell"), a stack of consecutive SimpleRNN
    layers ("stack"), or one Bidirectional(SimpleRNN) ("bidirectional"); with the build options they imply."""
    config, found = _load(path)
    if config is None:
        return [read_keras(path)], "cell", {}
    order = [(kind, layer) for kind, layer in _top_level_layers(config) if kind != "InputLayer"]
    rnn = [(k, c) for k, c in order if k == "SimpleRNN" or (k == "Bidirectional" and
                                                            c.get("layer", {}).get("class_name") == "SimpleRNN")]
    if len(rnn) == 1 and rnn[0][0] == "SimpleRNN":
        return [read_keras(path)], "cell", {}
    if len(rnn) == 1:  # one Bidirectional(SimpleRNN)
        bi = rnn[0][1]
        inner = bi["layer"]["config"]
        backward = (bi.get("backward_layer") or {}).get("config")
        if backward is not None:  # a backward layer of its own: the fused op has one activation and one size
            differs = [k for k in ("units", "activation", "use_bias") if backward.get(k) != inner.get(k)]
            if differs:
                raise WeightsError(f"Bidirectional '{bi['name']}' in {path} has a backward layer whose "
                                   f"{', '.join(differs)} differ from the forward one's; tflrnn builds both directions from one cell")
        merge = bi.get("merge_mode", "concat")
        if merge not in ("concat", None):
            raise WeightsError(f"Bidirectional '{bi['name']}' in {path} merges with '{merge}'; the fused op "
                               "concatenates (merge_mode='concat') or keeps both outputs (merge_mode=None)")
        if not inner.get("return_sequences", False):
            raise WeightsError(f"Bidirectional '{bi['name']}' in {path} returns the last step only; a last-step "
                               "bidirectional model is not built yet")
        cells = [_cell(path, f"{bi['name']}/{d}", found.get(f"{bi['name']}/{d}"), inner, True)
                 for d in ("forward", "backward")]
        return cells, "bidirectional", {"merge": "concat" if merge == "concat" else "none"}
    if rnn and all(k == "SimpleRNN" for k, _ in rnn):
        names = [c["name"] for _, c in rnn]
        feeds = _inbound(config)
        for previous, name in zip(names, names[1:]):
            if name in feeds and feeds[name] != [previous]:
                raise WeightsError(f"SimpleRNN '{name}' in {path} takes {feeds[name] or 'the model input'}, not "
                                   f"'{previous}': its SimpleRNN layers do not form one chain; build one with --layer")
        between = [k for k, c in order[order.index(rnn[0]): order.index(rnn[-1]) + 1] if k != "SimpleRNN"]
        if between:
            raise WeightsError(f"{path} has {', '.join(between)} between its SimpleRNN layers; build one with --layer")
        for _, c in rnn[:-1]:
            if not c.get("return_sequences", False):
                raise WeightsError(f"SimpleRNN '{c['name']}' in {path} feeds another but returns only its last step")
        cells = [_cell(path, name, found.get(name), c, True) for name, (_, c) in zip(names, rnn)]
        return cells, "stack", {"last_step": not rnn[-1][1].get("return_sequences", False)}
    if not rnn:
        return [read_keras(path)], "cell", {}  # reports that there is no SimpleRNN
    raise WeightsError(f"{path} mixes SimpleRNN and Bidirectional layers; build one with --layer")


def _inbound(config) -> dict[str, list[str]]:
    """For a Functional model: each layer's input layers, by name (a Sequential model is a chain by definition)."""
    feeds = {}
    if not isinstance(config, dict) or config.get("class_name") not in ("Functional", "Model"):
        return feeds
    for entry in config.get("config", {}).get("layers", []):
        names = set()

        def walk(node):
            if isinstance(node, dict):
                history = node.get("config", {}).get("keras_history") if isinstance(node.get("config"), dict) else None
                if isinstance(history, list) and history:
                    names.add(history[0])
                for value in node.values():
                    walk(value)
            elif isinstance(node, list):
                if len(node) >= 3 and isinstance(node[0], str) and isinstance(node[1], int):  # Keras 2: [name, i, j]
                    names.add(node[0])
                for value in node:
                    walk(value)

        walk(entry.get("inbound_nodes", []))
        feeds[entry.get("name") or entry.get("config", {}).get("name")] = sorted(names)
    return feeds


def _top_level_layers(config) -> list[tuple[str, dict]]:
    """(class_name, config) of the model's own layers, in order (Sequential or a linear Functional)."""
    layers = config.get("config", {}).get("layers", []) if isinstance(config, dict) else []
    return [(entry.get("class_name"), entry.get("config", {})) for entry in layers if isinstance(entry, dict)]


def _cell(path: Path, layer: str, arrays: list | None, layer_config: dict, has_config: bool) -> ImportedCell:
    if arrays is None:
        raise WeightsError(f"{path}: no weights for SimpleRNN '{layer}'")
    kernel, recurrent = arrays[0], arrays[1]
    bias = arrays[2] if len(arrays) > 2 else _zeros_like_units(recurrent)
    try:
        weights = CellWeights.from_keras(kernel, recurrent, bias)
    except WeightsError as exc:
        raise WeightsError(f"{path}: SimpleRNN '{layer}': {exc}") from None
    activation, details = None, []
    if has_config:
        raw_activation = layer_config.get("activation", "tanh")
        try:
            activation = _activation_name(raw_activation)
        except ConfigError:
            raise WeightsError(
                f"SimpleRNN '{layer}' in {path} uses activation {_shown(raw_activation)}, which the fused op cannot "
                f"apply; supported: {SUPPORTED_ACTIVATIONS}"
            ) from None
        if layer_config.get("go_backwards"):
            raise WeightsError(f"SimpleRNN '{layer}' in {path} has go_backwards=true; the fused op runs forward")
        if not layer_config.get("return_sequences", False):
            details.append("return_sequences=false in Keras: add --last-step to output only the final step as it does")
    else:
        details.append("weights-only file: give --activation if the layer does not use tanh")
    if len(arrays) == 2:
        details.append("use_bias=false: zero bias")
    return ImportedCell(weights, "keras", layer, activation, "; ".join(details), has_bias=len(arrays) > 2)


def _keras3_cells(h5) -> dict[str, list]:
    """Layer name -> [kernel, recurrent_kernel(, bias)] for every group shaped like a SimpleRNN cell."""
    found = {}

    def visit(name, group):
        if not hasattr(group, "keys") or "cell" not in group or "vars" not in group["cell"]:
            return
        variables = group["cell"]["vars"]
        arrays = [variables[str(i)][()] for i in range(len(variables)) if str(i) in variables]
        if _looks_like_simple_rnn(arrays):
            key = name.rsplit("/", 1)[-1]
            if key in ("forward_layer", "backward_layer"):  # one half of a Bidirectional: <its name>/<direction>
                parent_vars = group.parent.get("vars")
                parent = _text(parent_vars.attrs.get("name")) if parent_vars is not None else group.parent.name
                found[f"{parent}/{key.split('_')[0]}"] = arrays
                return
            layer_vars = group.get("vars")
            layer_name = layer_vars.attrs.get("name") if layer_vars is not None else None
            found[_text(layer_name) if layer_name is not None else key] = arrays

    h5.visititems(visit)
    return found


def _legacy_cells(root) -> dict[str, list]:
    found = {}
    for layer_name in root.attrs.get("layer_names", []):
        layer_name = _text(layer_name)
        group = root[layer_name]
        by_role = {}
        for weight_name in group.attrs.get("weight_names", []):
            weight_name = _text(weight_name)
            role = weight_name.rsplit("/", 1)[-1].split(":")[0]  # ".../simple_rnn_cell/kernel:0" -> kernel
            by_role[role] = group[weight_name][()]
        arrays = [by_role[r] for r in ("kernel", "recurrent_kernel", "bias") if r in by_role]
        if "kernel" in by_role and "recurrent_kernel" in by_role and _looks_like_simple_rnn(arrays):
            found[layer_name] = arrays
    return found


def _looks_like_simple_rnn(arrays: list) -> bool:
    # kernel [I, U], recurrent_kernel [U, U] (LSTM and GRU have 4U and 3U columns), optional bias [U]
    if len(arrays) not in (2, 3) or arrays[0].ndim != 2 or arrays[1].ndim != 2:
        return False
    units = arrays[1].shape[0]
    return arrays[1].shape == (units, units) and arrays[0].shape[1] == units and (
        len(arrays) == 2 or arrays[2].shape == (units,)
    )


def _layer_configs(node):
    """(class_name, config) of every layer in a (nested) Keras model config."""
    if isinstance(node, dict):
        if isinstance(node.get("class_name"), str) and isinstance(node.get("config"), dict):
            yield node["class_name"], node["config"]
        for value in node.values():
            yield from _layer_configs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _layer_configs(value)


def _simple_rnn_configs(config) -> dict[str, dict]:
    return {layer.get("name"): layer for kind, layer in _layer_configs(config) if kind == "SimpleRNN"}


def _layer_classes(config) -> set[str]:
    skipped = ("Sequential", "Functional", "Model", "InputLayer")
    # Layers carry a dtype or trainable flag; nested objects such as a DTypePolicy or an initializer do not.
    return {kind for kind, layer in _layer_configs(config)
            if ("dtype" in layer or "trainable" in layer) and kind not in skipped} or {"none"}


def _activation_name(raw) -> str:
    from ..cell import ACTIVATION_NAMES

    return ACTIVATION_NAMES[parse_activation(raw)]


def _shown(raw) -> str:
    if isinstance(raw, dict):
        raw = raw.get("config") if isinstance(raw.get("config"), str) else raw.get("class_name")
    return repr(raw)


def _zeros_like_units(recurrent):
    import numpy as np

    return np.zeros(recurrent.shape[0], dtype=recurrent.dtype)


def _text(value) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
