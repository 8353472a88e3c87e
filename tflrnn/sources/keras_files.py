"""Keras files read with zipfile + h5py, without TensorFlow.

- `.keras` (Keras 3): a zip of config.json and model.weights.h5, where each layer's variables sit at
  layers/<path>/cell/vars/{0,1,2} (kernel, recurrent_kernel, bias) and layers/<path>/vars carries the layer name.
- `.weights.h5` (Keras 3 save_weights): the same HDF5 layout, without the config.
- `.h5` (Keras 2 / tf_keras, or Keras 3 legacy): attrs model_config (absent when saved with save_weights), and
  model_weights/<layer>/ (or /<layer>/) holding datasets listed in the weight_names attribute.

SimpleRNN, GRU and LSTM layers are read (a GRU's kernel and recurrent_kernel have 3 * units columns, z, r, h; its
bias is [2, 3 * units] with reset_after, else [3 * units]; an LSTM's have 4 * units columns, i, f, c, o, and its bias
[4 * units]), alone, stacked or in a Bidirectional, then Dense layers.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np

from ..cell import SUPPORTED_ACTIVATIONS, CellWeights, parse_activation
from ..cells import gru, lstm
from ..cells.gru import GRUWeights
from ..cells.lstm import LSTMWeights
from ..errors import ConfigError, WeightsError
from . import DeclaredInput, ImportedCell, require

_DENSE = "dense:"  # key prefix of a Dense layer's arrays among the cells' arrays
# The Keras recurrent layers read, and the kind of cell each holds (a Bidirectional wraps one of them)
def _keras_classes() -> dict[str, str]:
    """The Keras layer classes read, by the kind each is (cells/: each kind names its Keras layer first)."""
    from ..cells import kinds

    return {kind.keras[0]: kind.name for kind in kinds().values()}


_CLASSES = _keras_classes()
_CORRUPT = (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError, UnicodeDecodeError, RecursionError)


# Reading a Keras file: 10 s (TFLRNN_READ_TIMEOUT), plus the time to read it at this rate; memory: what the child
# held at the fork, plus this and 4x the file.
READ_SECONDS = 10.0
READ_BYTES_PER_SECOND = 20e6
MEMORY_HEADROOM = 2 << 30


def _load(path: Path) -> tuple[dict | None, dict[str, list]]:
    """The model config (None for a weights-only file) and every SimpleRNN, GRU or LSTM cell's arrays, by layer
    name; a Bidirectional layer's two cells are keyed <name>/forward and <name>/backward (and each Dense layer's
    arrays under "dense:<name>"). Parsed in a child process with a time limit: the HDF5 library can hang on a corrupt
    file, beyond the reach of any Python signal handler."""
    from ..isolation import ChildFailed, ChildRaised, call_in_fork, seconds_setting

    require("h5py", "keras")
    size = path.stat().st_size
    what = "Keras file"
    limit = None

    def seconds() -> float:  # read only when the parse runs in a child
        nonlocal limit
        base = seconds_setting("TFLRNN_READ_TIMEOUT", off_allowed=False, error=WeightsError) or READ_SECONDS
        limit = base + size / READ_BYTES_PER_SECOND
        return limit

    try:
        return tuple(call_in_fork(_parse, path, seconds=seconds, memory=MEMORY_HEADROOM + 4 * size))
    except TimeoutError:
        raise WeightsError(f"reading {what} {path} did not finish within {limit:.0f} s: the file is malformed "
                           "(its parser hangs on it)") from None
    except ChildFailed as failed:
        raise WeightsError(f"cannot read {what} {path}: its parser died ({failed.reason}); the file is malformed or "
                           "too large") from None
    except ChildRaised as raised:
        raise WeightsError(raised.message if raised.user_error else
                           f"cannot read {what} {path}: {raised.kind} {raised.message}".rstrip()) from None


def _parse(path: Path) -> tuple[dict | None, dict[str, list]]:
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
                return config, _keras3_cells(h5, _budget(weights_h5.getbuffer().nbytes))
        budget = _budget(path.stat().st_size)
        with h5py.File(path, "r") as h5:
            if "layers" in h5:  # Keras 3 .weights.h5
                return None, _keras3_cells(h5, budget)
            raw = _attr(h5, "model_config", budget)
            if raw is not None and not isinstance(raw, (str, bytes)):
                raise WeightsError(f"{path}: model_config is not JSON text")
            config = json.loads(raw.decode() if isinstance(raw, bytes) else raw) if raw is not None else None
            return config, _legacy_cells(h5["model_weights"] if "model_weights" in h5 else h5, budget)
    except WeightsError:
        raise
    except _CORRUPT as exc:
        raise WeightsError(f"cannot read Keras file {path}: {' '.join(str(exc).split()) or type(exc).__name__}") from None


def read_keras(path: Path, layer: str | None = None, loaded=None) -> ImportedCell:
    """One SimpleRNN, GRU or LSTM layer (`layer`, or the only one). `loaded`: what _load already returned for this
    file."""
    config, found = loaded or _load(path)
    found = {name: arrays for name, arrays in found.items() if not name.startswith(_DENSE)}
    layers = _rnn_configs(config) if config is not None else {}
    if config is not None:
        found = {name: arrays for name, arrays in found.items() if name in layers}
    if not found:
        kinds = (", ".join(sorted(_layer_classes(config))) if config is not None
                 else "none with SimpleRNN, GRU or LSTM weights")
        raise WeightsError(f"no SimpleRNN layer (nor GRU or LSTM) in {path} (layers: {kinds})")
    if layer is None:
        if len(found) > 1:
            raise WeightsError(f"{path} has several recurrent layers ({', '.join(sorted(found))}); pick one with "
                               "--layer")
        layer = next(iter(found))
    elif layer not in found:
        raise WeightsError(f"{path} has no SimpleRNN layer '{layer}' nor a GRU or LSTM of that name (it has: "
                           f"{', '.join(sorted(found))})")
    cls, layer_config = layers.get(layer, (None, {}))
    cell = _cell(path, layer, found[layer], layer_config, config is not None, cls)
    cell.declared = declared_input(config, layer)
    return cell


def read_keras_model(path: Path) -> tuple[list[ImportedCell], str, dict]:
    """Every SimpleRNN, GRU or LSTM of a saved Keras model, as it connects: ([cell], "cell"), a stack of consecutive
    recurrent layers ("stack"), one Bidirectional(SimpleRNN, GRU or LSTM) ("bidirectional"), or any chain of those
    followed by Dense layers ("network"); with the build options they imply (last step, merge mode, per-layer
    directions, the dense head). Dropout is skipped (a no-op at inference); any other layer is an error that names
    it. Layers of every kind may follow one another: each cell carries its own kind."""
    config, found = _load(path)
    if config is None:
        return [read_keras(path, loaded=(config, found))], "cell", {}
    order = [(kind, layer) for kind, layer in _top_level_layers(config) if kind != "InputLayer"]
    if not any(_is_rnn(kind, c) for kind, c in order):
        return [read_keras(path, loaded=(config, found))], "cell", {}  # reports that there is no SimpleRNN
    if len(order) == 1 and order[0][0] in _CLASSES:
        return [read_keras(path, loaded=(config, found))], "cell", {}
    names = [c.get("name") for _, c in order]
    feeds = _inbound(config)
    for previous, name in zip(names, names[1:]):
        if name in feeds and feeds[name] != [previous]:
            raise WeightsError(f"layer '{name}' in {path} takes {feeds[name] or 'the model input'}, not '{previous}': "
                               "the model is not one chain; build one recurrent layer with --layer")
    order = [(kind, c) for kind, c in order if kind != "Dropout"]  # a no-op at inference, wherever it is
    stages = [(kind, c) for kind, c in order if _is_rnn(kind, c)]
    if order[: len(stages)] != stages:
        first = next((kind, c) for kind, c in order if not _is_rnn(kind, c))
        raise WeightsError(_unsupported(path, *first, "before or between the recurrent layers"))
    cells, flags, merge = [], [], "concat"
    for k, (kind, c) in enumerate(stages):
        final = k == len(stages) - 1
        inner = c["layer"]["config"] if kind == "Bidirectional" else c
        if not final and not inner.get("return_sequences", False):
            raise WeightsError(f"{kind} '{c['name']}' in {path} feeds another layer but returns only its last step")
        if kind in _CLASSES:
            cells.append(_cell(path, c["name"], found.get(c["name"]), c, True, kind))
            flags.append(False)
            continue
        _check_backward_layer(path, c)
        mode = c.get("merge_mode", "concat")
        if mode not in ("concat", None) or (mode is None and (not final or len(order) > len(stages))):
            raise WeightsError(f"Bidirectional '{c['name']}' in {path} merges with {mode!r}; the fused op concatenates "
                               "(merge_mode='concat'), or keeps both outputs (merge_mode=None) as the model's last layer")
        if final:
            merge = "concat" if mode == "concat" else "none"
        cells += [_cell(path, f"{c['name']}/{d}", found.get(f"{c['name']}/{d}"), inner, True,
                        c["layer"].get("class_name")) for d in ("forward", "backward")]
        flags.append(True)
    for c in cells:  # the last step is applied as Keras does (see the options), not left to --last-step
        c.details = "; ".join(d for d in c.details.split("; ") if d and not d.startswith("return_sequences"))
    cells[0].declared = declared_input(config, stages[0][1].get("name"))
    last = stages[-1][1]["layer"]["config"] if stages[-1][0] == "Bidirectional" else stages[-1][1]
    options = {"last_step": not last.get("return_sequences", False)}
    head = order[len(stages):]
    if head:
        options["head"] = [_dense(path, kind, c, found) for kind, c in head]
    if len(stages) == 1 and flags[0] and not head:
        return cells, "bidirectional", {**options, "merge": merge}
    if not any(flags) and not head:
        return cells, "stack", options
    return cells, "network", {**options, "bidirectional": flags, "merge": merge}


def _check_backward_layer(path: Path, config: dict) -> None:
    """A Bidirectional's backward layer of its own must be the forward one mirrored: tflrnn builds both directions
    from one cell (one kind, activation and size)."""
    backward = config.get("backward_layer") or {}
    if not backward.get("config"):
        return
    forward = config["layer"]
    differs = ["class"] if backward.get("class_name") != forward.get("class_name") else []
    differs += [key for key in ("units", "activation", "use_bias", "recurrent_activation", "reset_after")
                if backward["config"].get(key) != forward["config"].get(key)]
    if differs:
        raise WeightsError(f"Bidirectional '{config['name']}' in {path} has a backward layer whose "
                           f"{', '.join(differs)} differ from the forward one's; tflrnn builds both directions "
                           "from one cell")


def declared_input(config, layer: str | None) -> DeclaredInput | None:
    """The model input's shape as the model declares it (its InputLayer's batch_shape, or Keras 2's
    batch_input_shape, on the InputLayer or the first layer), when it reaches `layer` with its batch and time axes
    unchanged: only recurrent layers that return sequences, and Dropout, may stand before it. None otherwise."""
    shape = None
    for kind, c in _top_level_layers(config):
        if shape is None:
            shape = c.get("batch_shape") if kind == "InputLayer" else None
            shape = shape or c.get("batch_input_shape")
        if kind == "InputLayer":
            continue
        if c.get("name") == layer:
            break
        inner = c.get("layer", {}).get("config", {}) if kind == "Bidirectional" else c
        if not (kind == "Dropout" or _is_rnn(kind, c) and inner.get("return_sequences")):
            return None
    else:
        return None
    if not isinstance(shape, list) or len(shape) != 3:
        return None
    batch, time = shape[0], shape[1]

    def positive(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 1

    if not (time is None or positive(time)) or not (batch is None or positive(batch)):
        return None
    return DeclaredInput("the Keras Input", time_steps=time if time is not None else "dynamic",
                         batch_size=batch, time_major=False)


def _is_rnn(kind: str, config: dict) -> bool:
    return kind in _CLASSES or (kind == "Bidirectional" and config.get("layer", {}).get("class_name") in _CLASSES)


def _unsupported(path: Path, kind: str, config: dict, where: str) -> str:
    return (f"{kind} layer '{config.get('name')}' in {path} ({where}) has no TFLite form here: tflrnn writes "
            "SimpleRNN, GRU and LSTM layers (or a Bidirectional of one), then Dense layers (Dropout is skipped); build one "
            "recurrent layer with --layer")


def _dense(path: Path, kind: str, config: dict, found: dict):
    """A Dense layer of the head, as graph.Dense (kernel transposed to TFLite's [units, input])."""

    from ..network import DENSE_ACTIVATIONS, Dense

    if kind != "Dense":
        raise WeightsError(_unsupported(path, kind, config, "after the recurrent layers"))
    name = config.get("name")
    raw = config.get("activation", "linear")
    activation = raw if isinstance(raw, str) else _shown(raw).strip("'")
    if activation not in DENSE_ACTIVATIONS:
        raise WeightsError(f"Dense '{name}' in {path} uses activation {_shown(raw)}; tflrnn writes Dense layers with "
                           f"{', '.join(DENSE_ACTIVATIONS)}")
    arrays = found.get(f"{_DENSE}{name}")
    if arrays is None or not 1 <= len(arrays) <= 2 or np.ndim(arrays[0]) != 2:
        raise WeightsError(f"{path}: no kernel for Dense '{name}'")
    kernel = np.asarray(arrays[0], dtype=np.float32)
    bias = np.asarray(arrays[1], dtype=np.float32) if len(arrays) == 2 else np.zeros(kernel.shape[1], np.float32)
    if bias.shape != (kernel.shape[1],) or not (np.isfinite(kernel).all() and np.isfinite(bias).all()):
        raise WeightsError(f"{path}: Dense '{name}' has kernel {list(kernel.shape)} and bias {list(bias.shape)}, or "
                           "non-finite values")
    return Dense(name, np.ascontiguousarray(kernel.T), bias, activation)


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


def _cell(path: Path, layer: str, arrays: list | None, layer_config: dict, has_config: bool,
          cls: str | None = None) -> ImportedCell:
    """One recurrent layer's cell. `cls`: its Keras class as the config names it (None: told by the arrays' shapes,
    which differ between the kinds)."""
    if arrays is None:
        raise WeightsError(f"{path}: no weights for {cls or 'recurrent layer'} '{layer}'")
    kind = _array_kind(arrays)
    cls = cls or {"gru": "GRU", "lstm": "LSTM"}.get(kind, "SimpleRNN")
    if _CLASSES.get(cls) != kind:
        shapes = ", ".join(str(list(np.shape(a))) for a in arrays)
        raise WeightsError(f"{path}: {cls} '{layer}' holds arrays shaped {shapes}, not a {cls}'s weights")
    read = {"gru": _gru_cell, "lstm": _lstm_cell}.get(kind, _simple_rnn_cell)
    return read(path, layer, arrays, layer_config, has_config)


def _simple_rnn_cell(path: Path, layer: str, arrays: list, layer_config: dict, has_config: bool) -> ImportedCell:
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
        details += _layer_details(path, "SimpleRNN", layer, layer_config)
    if len(arrays) == 2:
        details.append("use_bias=false: zero bias")
    hint = "" if has_config else "a weights-only file does not record it; give --activation if the layer does not use tanh"
    return ImportedCell(weights, "keras", layer, activation, "; ".join(details), has_bias=len(arrays) > 2, hint=hint)


def _gru_cell(path: Path, layer: str, arrays: list, layer_config: dict, has_config: bool) -> ImportedCell:
    """A GRU layer: tanh and sigmoid only (what tflrnn's GRU computes); no bias (use_bias=False) is zero biases."""
    kernel, recurrent = arrays[0], arrays[1]
    bias = arrays[2] if len(arrays) > 2 else None
    details = []
    if has_config:
        _check_functions(path, "GRU", layer, layer_config)
        details += _layer_details(path, "GRU", layer, layer_config)
    # Keras 3's default is reset_after=True; its bias shape says which it was where the config does not
    reset_after = layer_config.get("reset_after", True if bias is None else np.ndim(bias) == 2)
    if bias is None:
        units3 = np.shape(recurrent)[1]
        bias = np.zeros((2, units3) if reset_after else units3, np.float32)
        details.append("use_bias=false: zero biases")
        if not has_config:
            details.append("a weights-only file does not record reset_after: read as reset_after=True (Keras' "
                           "default)")
    try:
        weights = GRUWeights.from_keras(kernel, recurrent, bias, bool(reset_after))
    except WeightsError as exc:
        raise WeightsError(f"{path}: GRU '{layer}' (reset_after={bool(reset_after)}): {exc}") from None
    return ImportedCell(weights, "keras", layer, "tanh", "; ".join(details), has_bias=len(arrays) > 2)


def _lstm_cell(path: Path, layer: str, arrays: list, layer_config: dict, has_config: bool) -> ImportedCell:
    """An LSTM layer: tanh and sigmoid only (what tflrnn's LSTM computes); no bias (use_bias=False) is zero biases.
    Keras' unit_forget_bias only initializes the bias: the trained bias is read as it is."""
    kernel, recurrent = arrays[0], arrays[1]
    bias = arrays[2] if len(arrays) > 2 else None
    details = []
    if has_config:
        _check_functions(path, "LSTM", layer, layer_config)
        details += _layer_details(path, "LSTM", layer, layer_config)
    if bias is None:
        details.append("use_bias=false: zero biases")
    try:
        weights = LSTMWeights.from_keras(kernel, recurrent, bias)
    except WeightsError as exc:
        raise WeightsError(f"{path}: LSTM '{layer}': {exc}") from None
    return ImportedCell(weights, "keras", layer, "tanh", "; ".join(details), has_bias=bias is not None)


def _check_functions(path: Path, cls: str, layer: str, layer_config: dict) -> None:
    """A GRU's or LSTM's activation must be tanh and its recurrent_activation sigmoid: all tflrnn's cells compute."""
    for key, default, wanted in (("activation", "tanh", "tanh"), ("recurrent_activation", "sigmoid", "sigmoid")):
        raw = layer_config.get(key, default)
        if _function_name(raw) != wanted:
            raise WeightsError(f"{cls} '{layer}' in {path} uses {key} {_shown(raw)}; tflrnn's {cls} computes "
                               f"{wanted} there (Keras' default)")


def _layer_details(path: Path, cls: str, layer: str, layer_config: dict) -> list[str]:
    """What a recurrent layer's config says beyond its cell: go_backwards is refused (the ops run forward), and
    return_sequences=False is noted. stateful and dropout change nothing at inference from the zero state."""
    if layer_config.get("go_backwards"):
        raise WeightsError(f"{cls} '{layer}' in {path} has go_backwards=true; tflrnn's layers run forward (or both ways: Bidirectional)")
    if layer_config.get("time_major"):  # tf_keras' layers only: Keras 3 has no such option
        raise WeightsError(f"{cls} '{layer}' in {path} has time_major=true; tflrnn reads a Keras layer's input "
                           "batch-major, as Keras 3 does (build it with --time-major from the weights in an .npz)")
    if not layer_config.get("return_sequences", False):
        return ["return_sequences=false in Keras: add --last-step to output only the final step as it does"]
    return []


def _budget(file_bytes: int) -> int:
    """The most bytes one array or attribute of an HDF5 file may claim: what an uncompressed file of this size could
    hold, with room for compression. A hostile header may claim terabytes; h5py would try to allocate them."""
    return 16 * file_bytes + (1 << 20)


def _attr(obj, name: str, budget: int, default=None):
    if name not in obj.attrs:
        return default
    attr = obj.attrs.get_id(name)
    claimed = float(np.prod(attr.shape or (), dtype=np.float64)) * max(attr.dtype.itemsize, 1)
    if claimed > budget:
        raise WeightsError(f"attribute '{name}' of '{obj.name}' claims {claimed:,.0f} bytes, more than the file holds")
    return obj.attrs[name]


def _data(node, budget: int):
    """A weights dataset's values, after checking it is one: numeric, at most 2-D, no larger than the file allows."""
    if not hasattr(node, "dtype") or not hasattr(node, "shape") or node.dtype.kind not in "fiu" or len(node.shape) > 2:
        raise WeightsError(f"'{getattr(node, 'name', node)}' is not a weights array")
    claimed = float(np.prod(node.shape, dtype=np.float64)) * node.dtype.itemsize
    if claimed > budget:
        raise WeightsError(f"'{node.name}' claims {claimed:,.0f} bytes, more than the file holds")
    return node[()]


def _keras3_cells(h5, budget: int) -> dict[str, list]:
    """Layer name -> [kernel, recurrent_kernel(, bias)] for every group shaped like a SimpleRNN cell."""
    found = {}

    def visit(name, group):
        if not hasattr(group, "keys"):
            return
        if "cell" not in group and "vars" in group and len(group["vars"]) in (1, 2):
            variables = group["vars"]
            if len(getattr(variables.get("0"), "shape", ())) != 2:
                return  # not shaped like a Dense layer (a Conv1D's kernel is 3-D): not read
            arrays = [_data(variables[str(i)], budget) for i in range(len(variables)) if str(i) in variables]
            if arrays and arrays[0].ndim == 2:  # shaped like a Dense layer: kernel [input, units], bias [units]
                found[_DENSE + _text(_attr(variables, "name", budget, name.rsplit("/", 1)[-1]))] = arrays
            return
        if "cell" not in group or "vars" not in group["cell"]:
            return
        variables = group["cell"]["vars"]
        arrays = [_data(variables[str(i)], budget) for i in range(len(variables)) if str(i) in variables]
        if _array_kind(arrays) is not None:
            key = name.rsplit("/", 1)[-1]
            if key in ("forward_layer", "backward_layer"):  # one half of a Bidirectional: <its name>/<direction>
                parent_vars = group.parent.get("vars")
                parent = _text(_attr(parent_vars, "name", budget)) if parent_vars is not None else group.parent.name
                found[f"{parent}/{key.split('_')[0]}"] = arrays
                return
            layer_vars = group.get("vars")
            layer_name = _attr(layer_vars, "name", budget) if layer_vars is not None else None
            found[_text(layer_name) if layer_name is not None else key] = arrays

    h5.visititems(visit)
    return found


def _legacy_cells(root, budget: int) -> dict[str, list]:
    found = {}
    for layer_name in _attr(root, "layer_names", budget, []):
        layer_name = _text(layer_name)
        group = root[layer_name]
        parts = {}  # "" for a layer's own weights, "forward" / "backward" for a Bidirectional's halves
        for weight_name in _attr(group, "weight_names", budget, []):
            weight_name = _text(weight_name)
            path = weight_name.split("/")
            role = path[-1].split(":")[0]  # ".../simple_rnn_cell/kernel:0" (or gru_cell) -> kernel
            half = next((p.split("_")[0] for p in path if p.startswith(("forward_", "backward_"))), "")
            parts.setdefault(half, {})[role] = _data(group[weight_name], budget)
        for half, by_role in parts.items():
            key = f"{layer_name}/{half}" if half else layer_name
            arrays = [by_role[r] for r in ("kernel", "recurrent_kernel", "bias") if r in by_role]
            if "kernel" in by_role and "recurrent_kernel" in by_role and _array_kind(arrays) is not None:
                found[key] = arrays
            elif not half and set(by_role) <= {"kernel", "bias"} and "kernel" in by_role:
                found[_DENSE + layer_name] = [by_role[r] for r in ("kernel", "bias") if r in by_role]
    return found


def _array_kind(arrays: list) -> str | None:
    """The kind of cell a layer's arrays are shaped as: "rnn" (SimpleRNN: kernel [I, U], recurrent_kernel [U, U],
    optional bias [U]), "gru" (kernel [I, 3U], recurrent_kernel [U, 3U], optional bias [3U] or [2, 3U]), "lstm"
    (kernel [I, 4U], recurrent_kernel [U, 4U], optional bias [4U]), or None (anything else is not a cell)."""
    if len(arrays) not in (2, 3) or np.ndim(arrays[0]) != 2 or np.ndim(arrays[1]) != 2:
        return None
    units, columns = arrays[1].shape
    g3, g4 = gru.GATES, lstm.GATES
    for kind, gates, biases in (("rnn", 1, ((units,),)), ("gru", g3, ((g3 * units,), (2, g3 * units))),
                                ("lstm", g4, ((g4 * units,),))):
        if columns == gates * units and arrays[0].shape[1] == columns and (
                len(arrays) == 2 or arrays[2].shape in biases):
            return kind
    return None


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


def _rnn_configs(config) -> dict[str, tuple[str, dict]]:
    """Every SimpleRNN, GRU and LSTM layer's (class, config), by name."""
    return {layer.get("name"): (kind, layer) for kind, layer in _layer_configs(config) if kind in _CLASSES}


def _layer_classes(config) -> set[str]:
    skipped = ("Sequential", "Functional", "Model", "InputLayer")
    # Layers carry a dtype or trainable flag; nested objects such as a DTypePolicy or an initializer do not.
    return {kind for kind, layer in _layer_configs(config)
            if ("dtype" in layer or "trainable" in layer) and kind not in skipped} or {"none"}


def _activation_name(raw) -> str:
    from ..cell import ACTIVATION_NAMES

    return ACTIVATION_NAMES[parse_activation(raw)]


def _function_name(raw):
    """An activation as Keras saves it (a name, or {"class_name": ..., "config": name}) -> its name."""
    if isinstance(raw, dict):
        raw = raw.get("config") if isinstance(raw.get("config"), str) else raw.get("class_name")
    return raw.strip().lower() if isinstance(raw, str) else raw


def _shown(raw) -> str:
    if isinstance(raw, dict):
        raw = raw.get("config") if isinstance(raw.get("config"), str) else raw.get("class_name")
    return repr(raw)


def _zeros_like_units(recurrent):
    return np.zeros(recurrent.shape[0], dtype=recurrent.dtype)


def _text(value) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
