"""verify for a model of the portable lowering (plain builtin ops, no fused RNN op).

The network is recovered from the model's ops; the structure checks are that it is one, the signatures (serving
at subgraph 0, `reset` for a carried state, the state's inputs and outputs), and the metadata. The numbers: the
model run free by a real interpreter over several invokes, with its state carried (by the model, reset through
the `reset` signature; or by this verifier, as the caller would), against the whole network in float64
(reference.run_network) from the same states, within atol + rtol * T * (|reference| + 1) for T steps per invoke:
float32 rounding compounds through the steps of a free run (a linear cell carries all of it), so the tolerance
scales with the values and the steps. A wrong weight, activation or lost state is still off by orders more.
"""

from __future__ import annotations

import numpy as np

from .. import reference
from ..cell import ACTIVATION_NAMES
from ..errors import ConfigError, TflrnnError
from ..reference import MAX_VERIFY_MULTIPLY_ADDS, MAX_VERIFY_VALUES
from .limits import DYNAMIC_LENGTHS, budget_advice
from ..lowering import portable
from ..lowering.common import SIGNATURE_INPUT, SIGNATURE_KEY, SIGNATURE_OUTPUT
from ..metadata import METADATA_KEY, dense_sha256
from ..metadata import parse as parse_metadata
from ..model import SCHEMA_VERSION, Activation, BuiltinOperator, Model, op_name
from .report import Check, Comparison, VerifyReport, _finite_max, _numeric_check


def portable_checks(data: bytes, model: Model, report: VerifyReport, runtimes: list[str], *, seed: int,
                    sequences: int, atol: float, rtol: float, weights_for=None, against=None, on_data=(None, None),
                    float_network_of=None, **source) -> None:
    """Every check of a portable model into `report`. `weights_for(layer names)`: the weights to compare the
    model's with (--weights). `on_data`: (the user's sequences' file, --max-error) for the data checks."""
    try:
        network = portable.recover(model)
    except TflrnnError as exc:
        report.checks.append(Check("network", False, f"not a network the portable lowering writes: {exc}"))
        report.checks.append(Check("numeric", False, "not run: network failed"))
        return
    layers = network.layers
    _check_verifiable(network, sequences)
    if on_data[0] is not None:
        from .data import load_data

        on_data = (*on_data, load_data(on_data[0], network))
    report.checks.append(Check("network", True, (
        f"portable lowering: {len(network.stages)} layer(s), {len(layers)} direction(s) "
        f"({', '.join(f'{layer.name} {layer.weights.num_units} {_cell_words(layer)}' for layer in layers)})"
        f"{', last step' if network.last_step else ''}{f', {len(network.head)} dense' if network.head else ''}, "
        f"state {network.state}")))
    report.checks.append(Check("model.version", model.version == SCHEMA_VERSION, f"schema version {model.version}"))
    report.checks.append(_options_check(model))
    report.checks.append(_signature_check(model, network))
    report.checks += _metadata_checks(model, network)
    if network.int8 is not None:
        from . import int8

        report.checks.append(int8.formats_check(model, network))
    given = None
    if weights_for is not None:
        from .structure import _weights_match

        given = weights_for([layer.name for layer in layers])
        report.checks.append(_weights_match([layer.weights for layer in layers], given, None)
                             if network.int8 is None else int8.weights_match(network, given))
    blocking = [c.name for c in report.checks if not c.passed and (c.blocks_numeric or c.name == "signature")]
    if blocking:
        report.checks.append(Check("numeric", False, f"not run: {', '.join(blocking)} failed"))
        return
    if network.int8 is not None:
        if against is not None:
            raise ConfigError("--against compares a float model with its source; a full-int8 model's error against "
                              "the float weights is measured with --weights")
        int8.int8_checks(data, model, network, report, runtimes, seed=seed, sequences=sequences, float_weights=given)
        _on_data(data, model, network, report, runtimes, on_data, float_network_of, given)
        return
    runs = {}  # runtime label -> (inputs, the model's outputs for each)
    for runtime_name in runtimes:
        # LiteRT with and without its default XNNPACK delegate, which takes this lowering's ops (not the fused ones)
        for xnnpack in ((False, True) if runtime_name == "litert" else (False,)):
            checks, outputs = _numeric_checks(data, model, network, report, runtime_name, seed=seed,
                                              sequences=sequences, atol=atol, rtol=rtol, xnnpack=xnnpack)
            report.checks += checks
            if outputs is not None:
                runs[checks[0].runtime] = outputs
    if against is not None and runs:
        report.checks += _against_checks(network, runs, report, atol, rtol, against=against, **source)
    _on_data(data, model, network, report, runtimes, on_data, float_network_of, given)


def _on_data(data, model, network, report, runtimes, on_data, float_network_of, given) -> None:
    """The data checks, with `on_data` (path, --max-error, the sequences read from it)."""
    if on_data[0] is not None:
        from .data import data_checks

        path, max_error, xs = on_data
        float_network = float_network_of(network, given) if float_network_of is not None else None
        data_checks(data, model, network, report, runtimes, path, xs, max_error, float_network)


def _against_checks(network, runs: dict, report: VerifyReport, atol: float, rtol: float, **source) -> list[Check]:
    """The source model run in its framework on the same inputs (the state chained across them, or from zeros each
    time for a model that keeps none), against what each runtime gave: the final output of a classifier, else the
    last layer's sequence, or its last step (a backward direction's at t=0), both directions side by side."""
    from ..against import run_source
    from .numeric import clip_notes, declared_input_notes

    path = source.pop("against")
    layers = network.layers
    whole = len(layers) > 1 or bool(network.head)
    xs = next(iter(runs.values()))[0]
    options = dict(activation=ACTIVATION_NAMES[layers[0].activation], time_major=network.time_major, whole=whole,
                   shapes=[(layer.weights.num_units, layer.weights.input_size) for layer in layers],
                   final=bool(network.head), **source)
    if network.state == "zero":  # every invoke from zeros: the source too
        results = [run_source(path, [x], **options) for x in xs]
        result, outputs = results[0], [r.outputs[0] for r in results]
    else:
        result = run_source(path, xs, **options)
        outputs = result.outputs
    report.against = {"source": str(path), "format": result.source.format, "reference": result.reference,
                      "framework": result.framework}
    shape = xs[0].shape  # the model's input as allocated; -1 on a dynamic time axis
    time_axis = 0 if network.time_major else 1
    signature = tuple(-1 if k == time_axis else n for k, n in enumerate(shape)) if network.dynamic_time else None
    report.notes += declared_input_notes(shape, signature, network.time_major, result.source.declared)
    report.notes += clip_notes([layer.cell_clip for layer in layers], result.source.format)
    if network.last_step and not network.head:
        outputs = [_last_steps(y, network) for y in outputs]
    checks = []
    for label, (_, got) in runs.items():
        parts = [_compare([np.concatenate(g, axis=-1) if len(g) > 1 else g[0]], [y.astype(np.float64)], atol,
                          rtol * network.time_steps) for g, y in zip(got, outputs)]
        checks.append(_numeric_check(
            f"against.{result.source.format}", Comparison.worst(parts), atol, rtol,
            f"{result.reference} on {result.framework}, {len(xs)} invokes "
            f"{'each from zeros' if network.state == 'zero' else 'with the state chained'} (rtol times the "
            f"{network.time_steps} steps)", runtime=label))
    return checks


def _last_steps(y: np.ndarray, network) -> np.ndarray:
    """The last step of a sequence the source gave, as the model outputs it: a forward direction's at T-1, a
    backward one's (its columns after the forward's) at t=0."""
    def at(t):
        return y[t] if network.time_major else y[:, t]

    stage = network.stages[-1]
    if not isinstance(stage, tuple):
        return at(-1)
    units = stage[0].weights.num_units
    return np.concatenate([at(-1)[..., :units], at(0)[..., units:]], axis=-1)


def _cell_words(layer) -> str:
    """A direction's cell as the report names it: the basic cell by its activation, another kind by its name."""
    if layer.kind == "rnn":
        return ACTIVATION_NAMES[layer.activation]
    return layer.kind.upper() + ("" if getattr(layer.weights, "reset_after", True) else " (reset before)")


def _options_check(model: Model) -> Check:
    """Every fused activation inside the enum: the runtime silently runs an unknown one as none; no two VAR_HANDLEs
    of one subgraph name one variable (container and shared_name; no options table is the empty name): the runtime
    would give them one variable, so two states would overwrite each other (tflrnn writes a state's handle once a
    subgraph)."""
    bad = [f"{op_name(op.code)} {k} activation {op.options.activation}" for g in model.subgraphs
           for k, op in enumerate(g.operators)
           if op.options is not None and getattr(op.options, "activation", 0) not in Activation._value2member_map_]
    if bad:
        return Check("op.options", False, f"{'; '.join(bad[:3])}: not an ActivationFunctionType (the runtime would "
                                          "silently apply none)")
    shared = []
    for g in model.subgraphs:
        keys = [(getattr(op.options, "container", ""), getattr(op.options, "shared_name", "")) for op in g.operators
                if op.code == BuiltinOperator.VAR_HANDLE]
        shared += [f"{g.name or 'a subgraph'}: {keys.count(key)} VAR_HANDLEs name variable {key[1]!r}"
                   for key in dict.fromkeys(keys) if keys.count(key) > 1]
    if shared:
        return Check("op.options", False, f"{'; '.join(shared[:3])} (the runtime would give them one variable: "
                                          "the states would overwrite each other)")
    return Check("op.options", True, "every fused activation is an ActivationFunctionType, every state's variable "
                                     "its own")


def _check_verifiable(network, sequences: int) -> None:
    """As for a fused model (limits.py): refuse up front what the reference cannot hold or would take minutes on."""
    steps_rows = network.batch_size * max([network.time_steps, *(DYNAMIC_LENGTHS if network.dynamic_time else ())])
    # the widest value a step computes: the units, or a GRU's three gates' projections
    values = steps_rows * max([network.input_size] + [layer.weights.bias.size for layer in network.layers])
    if values > MAX_VERIFY_VALUES:
        raise ConfigError(f"the model's sequences hold {values:,} values per invoke; verify's reference handles at "
                          f"most {MAX_VERIFY_VALUES:,} (build a copy with fewer time steps or a smaller batch)")
    per_row = sum(2.0 * (layer.weights.input_weights.size + layer.weights.recurrent_weights.size)
                  for layer in network.layers)  # U (I + U) multiply-adds a step; a GRU's three gates, 3 U (I + U)

    def work(time_steps: int, batch: int, invokes: int) -> float:
        lengths = max([time_steps, *(DYNAMIC_LENGTHS if network.dynamic_time else ())])
        return per_row * batch * lengths * (invokes + 2)

    total = work(network.time_steps, network.batch_size, sequences)
    if total > MAX_VERIFY_MULTIPLY_ADDS:
        advice = budget_advice(work, network.time_steps, network.batch_size, sequences)
        raise ConfigError(f"verify's reference would need about {total:.2g} float64 multiply-adds for this model; its "
                          f"budget is {MAX_VERIFY_MULTIPLY_ADDS:.2g}: {advice}")


def _state_keys(network) -> list[str]:
    """The state inputs and outputs a portable model of this network has, in layer order (forward before
    backward): `state`, or `state_0`, `state_1`, ... with several; none unless the state is `io`."""
    if network.state != "io":
        return []
    count = len(network.layers)
    return [portable.STATE] if count == 1 else [f"{portable.STATE}_{k}" for k in range(count)]


def _signature_check(model: Model, network) -> Check:
    """The serving signature as the numeric checks address the model: each name on a tensor of subgraph 0's inputs
    or outputs, of the shape the network gives it. A failure here blocks the numeric checks (see `network`)."""
    graph = model.subgraphs[0]
    serving = next((s for s in model.signatures if s.key == SIGNATURE_KEY), None)
    problems = []
    if serving is None or serving.subgraph != 0:
        problems.append(f"no '{SIGNATURE_KEY}' signature on subgraph 0 (TFLite Micro and the classic API run it)")
    else:
        lead = (network.time_steps, network.batch_size) if network.time_major else (network.batch_size,
                                                                                    network.time_steps)
        expected_outputs, _ = reference.run_network(network, np.zeros((*lead, network.input_size)))
        outputs = [k for k in serving.outputs if k.startswith(SIGNATURE_OUTPUT)]
        states = _state_keys(network)
        found = sorted(k for k in (*serving.inputs, *serving.outputs) if k.startswith(portable.STATE))
        if found != sorted(states * 2):
            problems.append(f"state inputs and outputs {found}; a network of {len(network.layers)} direction(s) with "
                            f"state {network.state!r} has {states or 'none'}, each an input and an output")
            states = []
        state_shapes = [(network.batch_size, layer.weights.state_width) for layer in network.layers]
        wiring = [(SIGNATURE_INPUT, serving.inputs.get(SIGNATURE_INPUT), graph.inputs, (*lead, network.input_size))]
        wiring += [(k, serving.outputs[k], graph.outputs, e.shape) for k, e in zip(outputs, expected_outputs)]
        wiring += [(k, serving.inputs.get(k), graph.inputs, s) for k, s in zip(states, state_shapes)]
        wiring += [(k, serving.outputs.get(k), graph.outputs, s) for k, s in zip(states, state_shapes)]
        for key, index, ends, shape in wiring:
            if index not in ends or not 0 <= index < len(graph.tensors) or \
                    tuple(graph.tensors[index].shape) != tuple(shape):
                problems.append(f"'{key}' is not a subgraph input/output of shape {list(shape)}")
        if len(outputs) != len(expected_outputs):
            problems.append(f"outputs {list(serving.outputs)}: the network gives {len(expected_outputs)}")
    if network.state == "carry":
        reset = next((s for s in model.signatures if s.key == portable.RESET_KEY), None)
        if reset is None or reset.inputs or reset.outputs or not 0 < reset.subgraph < len(model.subgraphs):
            problems.append(f"no '{portable.RESET_KEY}' signature of its own subgraph, without inputs or outputs")
    if problems:
        return Check("signature", False, "; ".join(problems))
    keys = sorted(k for s in model.signatures for k in (s.key,))
    return Check("signature", True, f"signatures {keys}; '{SIGNATURE_KEY}' on subgraph 0")


def _metadata_checks(model: Model, network) -> list[Check]:
    from .structure import min_runtime_check

    checks = [min_runtime_check(model)]
    raw = model.metadata.get(METADATA_KEY)
    if raw is None:
        return checks + [Check("metadata.tflrnn", True, "absent: the model was not built by tflrnn")]
    document = parse_metadata(raw, model.description)
    if document is None:
        return checks + [Check("metadata.tflrnn", False, "not valid tflrnn JSON")]
    cells, dense = document["cells"], document["dense"]
    problems = []
    if len(cells) != len(network.layers) or len(dense) != len(network.head):
        problems.append(f"{len(cells)} cells and {len(dense)} dense layers recorded, {len(network.layers)} and "
                        f"{len(network.head)} in the graph")
    else:
        for k, (layer, cell) in enumerate(zip(network.layers, cells)):
            if cell.get("activation") != ACTIVATION_NAMES[layer.activation]:
                problems.append(f"layer {k}: activation {cell.get('activation')!r} but the graph has "
                                f"{ACTIVATION_NAMES[layer.activation]!r}")
            if cell.get("weights_sha256") != layer.weights.sha256():
                problems.append(f"layer {k}: weights_sha256 does not match the weights in the file")
            if cell.get("cell_clip") != (layer.cell_clip or None):
                problems.append(f"layer {k}: cell_clip {cell.get('cell_clip')!r} but the graph clips by "
                                f"{layer.cell_clip or None!r}")
        for k, (d, info) in enumerate(zip(network.head, dense)):
            if info.get("activation") != d.activation or info.get("weights_sha256") != dense_sha256(d.weights, d.bias):
                problems.append(f"dense {k}: activation or weights_sha256 does not match the graph")
    if problems:
        return checks + [Check("metadata.tflrnn", False, "; ".join(problems))]
    return checks + [Check("metadata.tflrnn", True, f"written by tflrnn {document['version']}; activation and "
                                                     "weights sha256 match the graph")]


def _numeric_checks(data: bytes, model: Model, network, report: VerifyReport, runtime_name: str, *, seed: int,
                    sequences: int, atol: float, rtol: float, xnnpack: bool = False):
    """The numeric checks on one runtime, and (the inputs, the model's outputs for each) for --against (None when
    it did not run)."""
    from .. import runtime
    from ..runners import RESIZABLE
    from .data import serving_wiring

    label = f"{runtime_name}+xnnpack" if xnnpack else runtime_name

    found = serving_wiring(model)  # its state keys are the network's, as the signature check found them
    state_keys, inputs, ends = found["state_keys"], found["inputs"], found["outputs"]
    outputs = ends[:found["count"]]
    x_shape = model.subgraphs[0].tensors[inputs[0]].shape
    rng = np.random.default_rng(seed)
    xs = [rng.standard_normal(x_shape).astype(np.float32) for _ in range(sequences)]
    # A dynamic time axis is also checked resized to other lengths, where the runtime can resize (not the
    # CompiledModel API or TFLite Micro, which run the length the model was allocated for).
    time_axis = 0 if network.time_major else 1
    lengths = [network.time_steps]
    if network.dynamic_time and runtime_name in RESIZABLE:
        lengths += [n for n in DYNAMIC_LENGTHS if n != network.time_steps]
    zeros = [np.zeros((network.batch_size, layer.weights.state_width), np.float32) for layer in network.layers]
    try:
        with runtime.load(runtime_name, data, inputs[0], ends, extra_inputs=inputs[1:],
                          reset_key=portable.RESET_KEY if network.state == "carry" else None,
                          xnnpack=xnnpack, **found["wiring"]) as interpreter:
            report.runtimes.append({"name": label, "version": interpreter.version})
            per_length = []  # (inputs, outputs of each, after reset) at each length
            for length in lengths:
                if length != network.time_steps:
                    shape = list(x_shape)
                    shape[time_axis] = length
                    length_rng = np.random.default_rng([seed, length])
                    xs = [length_rng.standard_normal(shape).astype(np.float32) for _ in range(sequences)]
                    interpreter.resize(shape)
                    if network.state == "carry":
                        interpreter.reset()
                runs, states = [], zeros
                for x in xs:
                    values = interpreter.run(x, *(states if state_keys else ()))
                    runs.append(values[:len(outputs)])
                    if state_keys:
                        states = values[len(outputs):]  # the caller carries the state, as an app would
                after_reset = None
                if network.state == "carry":
                    interpreter.reset()
                    after_reset = interpreter.run(xs[0])[:len(outputs)]
                per_length.append((xs, runs, after_reset))
    except (RuntimeError, ValueError) as exc:
        message = " ".join(str(exc).split())
        if not isinstance(exc, runtime.IsolationError):
            message = f"the interpreter refused the model: {message}"
        return [Check("runtime", False, message, runtime=label)], None

    carried = network.state != "zero"
    firsts, laters, resets, identical = [], [], [], True
    for xs, runs, after_reset in per_length:
        steps = xs[0].shape[time_axis]
        states = None
        for k, (x, got) in enumerate(zip(xs, runs)):
            expected, finals_ref = reference.run_network(network, x, states if carried else None)
            (firsts if k == 0 else laters).append(_compare(got, expected, atol, rtol * steps))
            states = finals_ref
        if after_reset is not None:
            identical = identical and all(np.array_equal(a, b) for a, b in zip(after_reset, runs[0]))
            resets.append(_compare(after_reset, reference.run_network(network, xs[0])[0], atol, rtol * steps))
    resized = f"; resized to {len(lengths)} lengths: {', '.join(map(str, lengths))} steps" if len(lengths) > 1 else ""
    checks = [
        _numeric_check("numeric.first_invoke", Comparison.worst(firsts), atol, rtol,
                       "from the zero state, the whole network free-running against the float64 reference (rtol "
                       f"times the steps){resized}",
                       label),
        _numeric_check("numeric.state_carried", Comparison.worst(laters), atol, rtol,
                       {"carry": f"{len(xs) - 1} more invokes, each continuing from the state the model carried",
                        "io": f"{len(xs) - 1} more invokes, the final states fed back as the next inputs",
                        "zero": f"{len(xs) - 1} more invokes, each from zeros (the model keeps no state)"}[
                           network.state], label),
    ]
    if resets:
        result = Comparison.worst(resets)
        result.ok = result.ok and identical
        checks.append(_numeric_check(
            "numeric.reset", result, atol, rtol,
            f"after the '{portable.RESET_KEY}' signature, "
            + ("bit-identical to the first invoke" if identical else "differs from the first invoke"), label))
    xs, runs, _ = per_length[0]  # at the allocated length, for --against
    return checks, (xs, runs)


def _compare(actual: list[np.ndarray], expected: list[np.ndarray], atol: float, rtol: float) -> Comparison:
    parts = []
    if len(actual) != len(expected) or any(a.shape != e.shape for a, e in zip(actual, expected)):
        return Comparison(False, None, None, note=f"outputs {[list(a.shape) for a in actual]}, the reference's "
                                                   f"{[list(e.shape) for e in expected]}")
    for a, e in zip(actual, expected):
        diff = np.abs(a.astype(np.float64) - e)
        allowed = atol + rtol * (np.abs(e) + 1.0)
        bad = ~(diff <= allowed)
        rel = diff / np.maximum(np.abs(e), atol or np.finfo(np.float32).tiny)
        parts.append(Comparison(not bad.any(), _finite_max(diff), _finite_max(rel)))
    return Comparison.worst(parts)
