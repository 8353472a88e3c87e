"""Cell config files (JSON or TOML) and how they combine with command-line options and weights.

A config is what TfLiteRNNCell.get_config(), tflrnn's GRUCell/LSTMCell.get_config() or Keras' SimpleRNN, GRU and
LSTM get_config() write, validated against
`schemas/cell-config.schema.json`. Precedence: explicit options > config file > sizes taken from the weights >
defaults. Sizes given anywhere must agree with the weights.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field, make_dataclass
from pathlib import Path

import numpy as np

from .cell import MAX_LAYERS, RNNCell, parse_activation
from .options import CONFIG_KEYS, LAYOUT_KEYS, OPTIONS, SOURCE_KEYS
from .errors import ConfigError
from .files import read_bytes

CELL_CONFIG_SCHEMA = "cell-config.schema.json"

# Keras options the fused op cannot honour, with the value that makes them refused and why.
_REFUSED = {
    "return_state": (True, "return_state=true is not supported: the model has one output, whose last step is "
                           "the final state"),
    "go_backwards": (True, "go_backwards=true is not supported: the fused op runs forward in time"),
    "use_peepholes": (True, "use_peepholes=true (a TF1 LSTMCell's peepholes) is not supported: tflrnn's LSTM has "
                            "none"),
}


SCHEMA_DIR = Path(__file__).parent / "schemas"


def load_schema(name: str) -> dict:
    return json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))


def validate(document, schema_name: str, where: str) -> None:
    """Raise ConfigError naming the offending key when `document` does not follow the schema."""
    import jsonschema  # ~0.1 s to import: only when a config is given

    schema = load_schema(schema_name)
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(document))
    if error is not None:
        key = "/".join(str(p) for p in error.absolute_path)
        at = f"key '{key}'" if key else "top level"
        if error.validator in ("additionalProperties", "unevaluatedProperties") and isinstance(error.instance, dict):
            known = _property_names(schema)
            unknown = [k for k in error.instance if k not in known]
            if unknown:
                close = difflib.get_close_matches(unknown[0], sorted(known), n=1)
                hint = f"; did you mean '{close[0]}'?" if close else f" (the keys are in schemas/{schema_name})"
                raise ConfigError(f"{where}: unknown key '{unknown[0]}' at {at}{hint}")
        raise ConfigError(f"{where}: invalid config at {at}: {error.message}")


def _property_names(schema) -> set[str]:
    """Every property name a schema defines, at any depth: what a typo is measured against."""
    names = set()
    if isinstance(schema, dict):
        if isinstance(schema.get("properties"), dict):
            names.update(schema["properties"])
        for value in schema.values():
            names |= _property_names(value)
    elif isinstance(schema, list):
        for value in schema:
            names |= _property_names(value)
    return names


def load_config(path) -> dict:
    """A validated config file as build settings: num_units, activation, name, sizes, time_major, seed."""
    path = Path(path)
    raw = read_bytes(path, "config file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    document = parse_document(text, path)
    class_name = None
    if isinstance(document, dict) and isinstance(document.get("config"), dict) and "class_name" in document:
        class_name = document["class_name"]
        document = document["config"]  # keras.layers.serialize() wraps get_config() like this
    validate(document, CELL_CONFIG_SCHEMA, str(path))
    settings = _settings(document, str(path), class_name)
    if "calibration" in settings:  # a path in a config file is relative to the file, as in a manifest
        settings["calibration"] = str(path.parent / settings["calibration"])
    return settings


MAX_NESTING = 64  # levels of tables, arrays or dotted keys in a config or manifest: real ones use three


def parse_document(text: str, path: Path):
    as_toml = path.suffix.lower() == ".toml"
    kind = "TOML" if as_toml else "JSON"
    if as_toml:
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib
        # tomllib takes time and memory quadratic in the depth of a dotted key (a.a.a...: 30,000 levels took 9 s
        # and 3 GB), so a deep one is refused before parsing.
        if any(line.split("=", 1)[0].count(".") > MAX_NESTING for line in text.splitlines()):
            raise ConfigError(f"{path}: invalid TOML: keys nested deeper than {MAX_NESTING} levels")
        parse, errors = tomllib.loads, (tomllib.TOMLDecodeError,)
    else:
        parse, errors = json.loads, ()
    try:
        return parse(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except errors as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid {kind}: nested too deeply") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise ConfigError(f"{path}: invalid {kind}: {' '.join(str(exc).split())[:160]}") from None


def _config_kind(document: dict, where: str, class_name) -> str | None:
    """The cell kind a config names (`cell`), implies by its keys, or by the class keras.layers.serialize() wraps it
    in (a kind's Keras names, cells/); they must agree."""
    from .cells import kinds

    said = {}
    if isinstance(class_name, str):
        found = [k.name for k in kinds().values() if class_name in k.keras]
        if not found:
            raise ConfigError(f"{where}: a {class_name}'s config: tflrnn builds "
                              f"{', '.join(n for k in kinds().values() for n in k.keras[:1])}")
        said[f"class_name {class_name}"] = found[0]
    # keys only one kind's get_config() writes (Keras GRU always writes reset_after, Keras LSTM unit_forget_bias)
    said.update({f"key {key}": k.name for k in kinds().values() for key in k.config_keys if key in document})
    if document.get("cell") is not None:
        said[f"cell {document['cell']}"] = document["cell"]
    if len(set(said.values())) > 1:
        raise ConfigError(f"{where}: {' and '.join(f'{what} ({kind})' for what, kind in said.items())} name "
                          "different cells")
    return next(iter(said.values()), None)


def _settings(document: dict, where: str, class_name=None) -> dict:
    for key, (refused, reason) in _REFUSED.items():
        if document.get(key) is refused:
            raise ConfigError(f"{where}: {reason}")
    if document.get("num_proj"):
        raise ConfigError(f"{where}: num_proj={document['num_proj']} (a TF1 LSTMCell's projection) is not supported: "
                          "tflrnn's LSTM outputs h itself")
    if "num_units" in document and "units" in document and document["num_units"] != document["units"]:
        raise ConfigError(f"{where}: num_units={document['num_units']} and units={document['units']} disagree")
    settings = {}
    shape = document.get("batch_input_shape") or [None, None, None]
    for key, value in (("batch_size", shape[0]), ("time_steps", shape[1]), ("input_size", shape[2])):
        if value is not None:
            settings[key] = value
    units = document.get("num_units", document.get("units"))
    if units is not None:
        settings["num_units"] = units
    if "cells" in document:
        settings["cells"] = document["cells"]
    if "return_sequences" in document:
        settings["last_step"] = not document["return_sequences"]
    for key in (*CONFIG_KEYS, "use_bias", "recurrent_activation", "forget_bias"):
        if document.get(key) is not None:
            settings[key] = document[key]
    kind = _config_kind(document, where, class_name)
    if kind is not None:
        settings["cell"] = kind
    return settings


@dataclass
class BuildPlan:
    """What `tflrnn build` will do: `tflrnn.build_file` arguments, and the weights source it read."""

    options: dict
    source: object | None = None  # the (first) ImportedCell read from --weights
    sources: list | None = None  # all of them, when the source is a stack or bidirectional
    origins: dict = field(default_factory=dict)  # where input_size, time_steps, batch_size and the layout came from


SIZE_KEYS = ("input_size", "time_steps", "batch_size", "time_major")


def _from_manifest(cls, entry: dict) -> BuildOptions:
    """A manifest entry's keys (defaults merged in): `units` or `num_units`, `cell_name` for the name."""
    given = {key: value for key, value in entry.items() if key in OPTIONS and key != "name"}
    return cls(**{**given, "num_units": entry.get("units", entry.get("num_units")), "name": entry.get("cell_name")})


def _settings_of(self) -> dict:
    """The options that shape the network (not where it comes from), None where not given."""
    return {key: getattr(self, key) for key in OPTIONS if key not in SOURCE_KEYS}


# One build as the command line, a manifest entry or the API asks for it: a field per option of options.py, None
# where not given (the config file, the source model or the default decides).
BuildOptions = make_dataclass("BuildOptions", [(key, object, field(default=None)) for key in OPTIONS], namespace={
    "SOURCE_KEYS": SOURCE_KEYS, "from_manifest": classmethod(_from_manifest), "settings": _settings_of,
    "__doc__": "One build's options (options.py declares them): None where not given."})


def resolve_build_options(options: BuildOptions, *, given_by: str = "the command line") -> BuildPlan:
    """Combine options, a config file and a weights file into `tflrnn.build` arguments.

    Precedence: options (`given_by` names where they came from) > config file > the input shape the source model
    declares (a Keras Input, an ONNX graph input) > defaults. Sizes and the activation given must agree with what
    the weights file records.
    """
    from_config = load_config(options.config) if options.config else {}
    given = {key: value for key, value in options.settings().items() if value is not None}
    plan = _resolve(dict(from_config), given, options.config, options.weights, options.format, options.layer,
                    options.scope, options.layer_index)
    declared = plan.source.declared if plan.source is not None else None
    for key in SIZE_KEYS:
        if key in given:
            plan.origins[key] = given_by
        elif key in from_config:
            plan.origins[key] = "the config"
        elif declared is not None and key in declared.sizes():
            plan.origins[key] = declared.origin
        elif key == "input_size" and plan.options.get("weights"):
            plan.origins[key] = "the weights"
        else:
            plan.origins[key] = "default"
    return plan


def _resolve(settings: dict, given: dict, config_path, weights_path, weights_format, layer, scope,
             layer_index) -> BuildPlan:
    settings.update(given)
    cells = _stack(settings, set(given))
    if cells is not None or settings.get("bidirectional"):  # cells made here, weights (if any) from an .npz
        _seeded_forget_bias(settings, from_weights=weights_path is not None)
    flags = settings.get("bidirectional")
    if flags and not isinstance(flags, list) or isinstance(flags, list) and any(flags):
        # Bidirectional layers: a cell (or a stack of them), each run forward (<name>/fw) and backward (<name>/bw).
        if cells is None:
            units = settings.get("num_units")
            if units is None:
                raise ConfigError("a bidirectional model needs --units (or a config with num_units)")
            cells = [_new_cell(settings, units, activation=settings.get("activation"), name=settings.get("name"))]
        flags = flags if isinstance(flags, list) else [True] * len(cells)
        weights = None
        if weights_path is not None:  # keyed <name>/fw/... and <name>/bw/... (a one-way layer: <name>/...)
            names = [n for c, f in zip(cells, flags) for n in ((f"{c.name}/fw", f"{c.name}/bw") if f else (c.name,))]
            weights = [_layer_weights(weights_path, weights_format, name) for name in names]
        layout = {**_layout(settings, bidirectional=True), "bidirectional": flags}
        return BuildPlan(options={"cell": cells, "weights": weights, **layout})
    if cells is not None:
        weights = None
        if weights_path is not None:
            weights = [_layer_weights(weights_path, weights_format, cell.name) for cell in cells]
        return BuildPlan(options={"cell": cells, "weights": weights, **_layout(settings)})
    source = None
    if weights_path is not None:
        from .sources import import_network  # only when there are weights to read: not on the plain build path

        found = import_network(weights_path, format=weights_format, name=scope or settings.get("name"),
                               layer=layer, layer_index=layer_index)
        implied = found.implied
        if implied.get("quantize") == "full-int8" and settings.get("quantize") is None and \
                settings.get("calibration") is None:
            raise ConfigError(f"{weights_path} records a full-int8 model, whose int8 formats came from calibration "
                              "data: give the same data with --calibration DATA to rebuild it (or --quantize none "
                              "for the float model)")
        if settings.get("quantize") not in (None, "full-int8"):  # a float (or hybrid) rebuild of a full-int8 record
            implied = {k: v for k, v in implied.items() if k not in ("io", "input_precision")}
        declared = found.cells[0].declared.sizes() if found.cells[0].declared is not None else {}
        # an .npz's record names each layer, unless --name renames them
        names = found.names if "name" not in settings else None
        if not found.single:
            return _imported_model(found, names, {**implied, **declared, **settings})
        settings = {**implied, **({"name": found.names[0]} if found.names else {}), **declared, **settings}
        source = found.cells[0]
    weights = _forget_bias_folded(settings, source, source.weights if source else None)
    units = settings.get("num_units")
    if units is None and weights is None:
        raise ConfigError("the number of units is missing: give --units, a config with num_units, or --weights")
    activation = settings.get("activation")
    if source is not None and source.activation is not None:
        if activation is not None and parse_activation(activation) != parse_activation(source.activation):
            label = f"{source.format} layer '{source.layer}'" if source.layer else f"{source.format} file"
            raise ConfigError(f"the {label} records activation {source.activation}, but {activation!r} was given")
        activation = source.activation
    cell = _new_cell(_with_source(settings, source), units if units is not None else weights.num_units,
                     activation=activation, name=settings.get("name"), weights=weights)
    if settings.get("use_bias") is False and weights is not None and any(
            np.any(weights.roles()[role] != 0) for role in ("bias", "recurrent_bias") if weights.roles().get(role)
            is not None):
        raise ConfigError("the config says use_bias=false but the weights have a non-zero bias")
    return BuildPlan(options={"cell": cell, "weights": weights, **_layout(settings)}, source=source)


def _imported_model(found, names: list[str] | None, settings: dict) -> BuildPlan:
    """A network read from a source (sources.SourceNetwork): a stack, a bidirectional layer, a Keras model's
    layers one way or both and its Dense head. One cell per layer, named as the source names it (an .npz record),
    else <name> for one layer and <name>/cell_<k> for several; each direction's weights in layer order."""
    from .cells import kind_of

    base = settings.get("name") or kind_of(found.cells[0].weights).name  # rnn, or gru, as --cell names them
    given = settings.get("activation")
    for c in found.cells:
        if given is not None and c.activation is not None and parse_activation(given) != parse_activation(c.activation):
            raise ConfigError(f"the {c.format} layer '{c.layer}' records activation {c.activation}, but {given!r} "
                              "was given")
    units = settings.get("num_units")
    first = found.cells[0]
    if units is not None and units != first.weights.num_units:
        raise ConfigError(f"num_units={units} does not match the weights: {first.layer} has "
                          f"{first.weights.num_units} units")
    refolded = {id(c): _forget_bias_folded(settings, c, c.weights) for c in found.cells}
    cells = []
    for k, layer in enumerate(found.layers):
        name = names[k] if names else base if len(found.layers) == 1 else f"{base}/cell_{k}"
        cells.append(_new_cell(_with_source(settings, layer[0]), layer[0].weights.num_units,
                               activation=layer[0].activation or given, name=name, weights=refolded[id(layer[0])]))
    flags = found.bidirectional
    # a merge mode the source implies (a Keras model's) is not the user's --merge on a one-way model
    layout = {**_layout(settings, bidirectional=any(flags) or "merge" in found.implied), "bidirectional": flags,
              "head": settings.get("head")}
    return BuildPlan(options={"cell": cells, "weights": [refolded[id(c)] for c in found.cells], **layout},
                     source=first, sources=found.cells)


def _layout(settings: dict, bidirectional: bool = False) -> dict:
    if settings.get("merge") is not None and not bidirectional:
        raise ConfigError("--merge chooses how a bidirectional model's outputs come out: add --bidirectional")
    return {key: settings.get(key, OPTIONS[key].default) for key in LAYOUT_KEYS}


def _stack(settings: dict, given: set[str]) -> list[RNNCell] | None:
    """The cells of a stack (a config's `cells`, or --layers N copies of one cell); None for a single cell.
    `given`: the options set on the command line (or the API call), which a `cells` list cannot take."""
    base = settings.get("name") or settings.get("cell") or "rnn"
    if settings.get("cells"):
        ignored = [f"--{k.replace('num_', '')}" for k in ("num_units", "activation") if k in given]
        if ignored:
            raise ConfigError(f"the config lists its cells: set {' and '.join(ignored)} per cell there, not on the "
                              "command line")
        if settings.get("layers") not in (None, len(settings["cells"])):
            raise ConfigError(f"layers={settings['layers']} but the config lists {len(settings['cells'])} cells")
        cells = []
        for k, c in enumerate(settings["cells"]):
            units = c.get("num_units", c.get("units"))
            if units is None:
                raise ConfigError(f"cell {k} of the stack has no num_units")
            cell_settings = {key: c.get(key, settings.get(key)) for key in _cell_arguments()}
            kind = _config_kind(c, f"cell {k} of the stack", None) or settings.get("cell")
            cells.append(_new_cell({**cell_settings, "cell": kind}, units,
                                   activation=c.get("activation"), name=c.get("name", f"{base}/cell_{k}"),
                                   reuse=c.get("reuse"), dtype=c.get("dtype") if isinstance(c.get("dtype"), str)
                                   else None))
        if any("bidirectional" in c for c in settings["cells"]):
            settings["bidirectional"] = [bool(c.get("bidirectional", settings.get("bidirectional"))) for c in
                                         settings["cells"]]
        return cells
    layers = settings.get("layers")
    if layers is None or layers == 1:
        return None
    if not isinstance(layers, int) or isinstance(layers, bool) or not 1 <= layers <= MAX_LAYERS:
        raise ConfigError(f"layers must be an integer from 1 to {MAX_LAYERS}, got {layers!r}")
    units = settings.get("num_units")
    if units is None:
        raise ConfigError("--layers needs --units (or a config with num_units)")
    return [_new_cell(settings, units, activation=settings.get("activation"), name=f"{base}/cell_{k}")
            for k in range(layers)]


def _cell_arguments() -> list[str]:
    """The settings only some kinds' cells take, as the kinds declare them (a GRU's reset_after, an LSTM's
    cell_clip, ...)."""
    from .cells import kinds

    return list(dict.fromkeys(key for k in kinds().values() for key in k.settings))


def _forget_bias_folded(settings: dict, source, weights):
    """The weights with a TF1 LSTMCell's forget_bias (a config's) folded into the forget gate's bias: a TF1
    checkpoint's reader folded its default, 1.0, in; another value replaces it (in float64, rounded once)."""
    asked = settings.get("forget_bias")
    folded = getattr(source, "forget_bias", None)
    if asked is None or (folded is not None and asked == folded):
        return weights
    if weights is None or folded is None:
        _seeded_forget_bias(settings, from_weights=weights is not None,
                            what=f"the {source.format} weights" if source is not None else "these weights")
        return weights
    bias = np.asarray(weights.bias, np.float64)
    units = weights.num_units
    bias[units:2 * units] += float(asked) - folded  # gates i, f, g, o
    return type(weights)(weights.input_weights, weights.recurrent_weights, bias)


def _seeded_forget_bias(settings: dict, from_weights: bool, what: str = "these weights") -> None:
    """A config's forget_bias where no TF1 checkpoint's weights take it: seeded weights open the forget gate by 1.0
    (TF1's default), and any other weights hold their whole forget-gate bias already."""
    asked = settings.get("forget_bias")
    if asked is None or (asked == 1.0 and not from_weights):
        return
    if not from_weights:
        raise ConfigError(f"forget_bias={asked:g} with seeded weights: tflrnn's seeded LSTM opens its forget gate by "
                          "1.0 (TF1's default); give the checkpoint's weights (--weights) to use another")
    raise ConfigError(f"forget_bias={asked:g} is what a TF1 LSTMCell adds at run time, folded into a TF1 "
                      f"checkpoint's weights; {what} hold their whole forget-gate bias")


def _with_source(settings: dict, source) -> dict:
    """The settings a cell read from `source` is made with: a cell_clip the source records (a `tflrnn weights`
    record), unless another was given."""
    recorded = getattr(source, "cell_clip", None)
    if recorded is None:
        return settings
    given = settings.get("cell_clip")
    if given is not None and np.float32(given) != np.float32(recorded):
        raise ConfigError(f"the weights record cell_clip {recorded:g} for '{source.layer}', but {given!r} was given")
    return {**settings, "cell_clip": recorded}


def _new_cell(settings: dict, units: int, *, weights=None, **arguments):
    """A cell of the kind asked for (--cell, a config's `cell`), else of the weights' kind, else the basic one."""
    from .cells import kind, kind_of, kinds

    asked = settings.get("cell")
    found = kind_of(weights) if weights is not None else None
    if asked is not None and found is not None and asked != found.name:
        raise ConfigError(f"{kind(asked).a_title} cell was asked for (--cell, or what the config says), but the "
                          f"weights are {found.a_title}'s: leave the kind to the weights")
    chosen = found or kind(asked or "rnn")
    for key in _cell_arguments():
        value = settings.get(key)
        if value is None or (value == 0 and not isinstance(value, bool)):  # a setting of 0 (a cell_clip) is none
            continue
        if key not in chosen.settings:
            owners = [k for k in kinds().values() if key in k.settings]
            whose = (f"and the weights are {chosen.a_title}'s" if found is not None else
                     f"not of the {chosen.title} cell {'asked for' if asked else '(the default)'}: say --cell "
                     f"{owners[0].name}")
            raise ConfigError(f"{key} is a setting of the {' and '.join(k.title for k in owners)} cell, {whose}")
        arguments[key] = value
    for key, value in (weights.settings() if weights is not None else {}).items():  # what the weights fix
        if arguments.get(key, value) != value:
            raise ConfigError(f"{key}={arguments[key]} was asked, but the weights are {chosen.a_title}'s with "
                              f"{key}={value}")
        arguments[key] = value
    return chosen.cell(units, **arguments)


def _layer_weights(path, weights_format, name: str):
    from .sources import import_cell

    source = import_cell(path, format=weights_format, name=name)
    if source.format != "npz":
        raise ConfigError(f"a stack's weights come from an .npz keyed <layer name>/input_weights ...; {path} is "
                          f"{source.format} (Keras, PyTorch and ONNX stacks are not read yet)")
    if source.layer != name:
        raise ConfigError(f"{path} has no weights under '{name}/' for that layer")
    return source.weights


