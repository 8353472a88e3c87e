"""The model's structure, checked against what the runtime needs but does not check itself (it silently
defaults a bad activation or missing options): op codes, versions and options, tensor shapes and types, the
variable states, the signature and the metadata."""

from __future__ import annotations

import numpy as np

from ..builder import MAX_TENSOR_BYTES
from ..metadata import METADATA_KEY, dense_sha256, min_runtime_version
from ..metadata import parse as parse_metadata
from ..cell import ACTIVATION_NAMES, CellWeights
from ..errors import TflrnnError
from ..lowering.common import SIGNATURE_INPUT, SIGNATURE_KEY, SIGNATURE_OUTPUT
from ..lowering.fused import (BIDIRECTIONAL_LSTM_AUX, LSTM_ROLES, FusedGraph, LSTMGraph, RNNGraph,
                              dense_activation, dense_arrays, dense_layers)
from ..model import SCHEMA_VERSION, Activation, BuiltinOperator, BuiltinOptions, op_name
from .report import Check
from .head import _head_checks


def _structure_checks(network: FusedGraph, weights: list) -> list[Check]:
    model = network.model
    checks = [Check("model.version", model.version == SCHEMA_VERSION, f"schema version {model.version}")]
    several = len(network.rnn_ops) > 1
    for k, op in enumerate(network.rnn_ops):
        directions = network.directions_of(op)
        for g in directions:
            width = sum(d.input_weights.shape[0] for d in directions if len(d.input_weights.shape) == 2)
            for check in _layer_checks(g, output_width=width if g.columns else None):
                if g.backward and check.name.startswith("op."):
                    continue  # one op: its code, version and options are checked once
                # One set of checks per layer and direction: [1], [fw], [1.bw]
                tag = ".".join(([str(k)] if several else []) +
                               ([g.direction] if g.direction and not check.name.startswith("op.") else []))
                if tag:
                    where = " ".join(([f"layer {k}"] if several else []) + ([g.direction] if "." in tag or
                                                                            not several and g.direction else []))
                    check.name, check.detail = f"{check.name}[{tag}]", f"{where}: {check.detail}"
                checks.append(check)
        if len(directions) == 2:
            tag, where = (f"[{k}]", f"layer {k}: ") if several else ("", "")
            aux = op.inputs[9:] if op.code == BuiltinOperator.BIDIRECTIONAL_SEQUENCE_RNN else \
                [op.inputs[i] for i in BIDIRECTIONAL_LSTM_AUX if i < len(op.inputs)]
            checks.append(Check(f"op.aux_inputs{tag}", aux == [-1] * len(aux),
                                f"{where}aux inputs {aux} (unused: all -1)"))
            prefixes = [d.name or "" for d in directions]
            swapped = prefixes[0].endswith("/bw") or prefixes[1].endswith("/fw")
            checks.append(Check(f"op.directions{tag}", not swapped,
                                f"{where}forward slots hold '{prefixes[0]}', backward slots '{prefixes[1]}'"
                                + ("; they are swapped" if swapped else "")))
    head_checks, ends = _head_checks(network)
    checks += head_checks
    checks.append(_signature_check(network, ends))
    checks += _metadata_checks(network, weights)
    return checks


_OPTIONS_OF = {  # the options each RNN op must carry
    BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_RNN: BuiltinOptions.SequenceRNNOptions,
    BuiltinOperator.BIDIRECTIONAL_SEQUENCE_RNN: BuiltinOptions.BidirectionalSequenceRNNOptions,
    BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_LSTM: BuiltinOptions.UnidirectionalSequenceLSTMOptions,
    BuiltinOperator.BIDIRECTIONAL_SEQUENCE_LSTM: BuiltinOptions.BidirectionalSequenceLSTMOptions,
}


def _layer_checks(g: RNNGraph, output_width: int | None = None) -> list[Check]:
    if isinstance(g, LSTMGraph):
        return _lstm_layer_checks(g, output_width)
    op = g.operator
    code = op.code if op.code in _OPTIONS_OF else BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_RNN
    checks = [
        Check(
            "op.code",
            op.builtin_code == code and op.deprecated_builtin_code == code,
            f"builtin_code {op.builtin_code}, deprecated_builtin_code {op.deprecated_builtin_code} "
            f"(both must be {int(code)})",
        ),
    ]
    expected_version = _expected_op_version(g)
    checks.append(
        Check("op.version", op.version == expected_version, f"version {op.version}, expected {expected_version}")
    )
    checks.append(_options_check(g, _OPTIONS_OF[code]))
    names = {t.name.rpartition("/")[0] for t in (g.input_weights, g.recurrent_weights, g.bias, g.hidden_state)}
    checks.append(Check("tensors.names", len(names) == 1,
                        f"W, R, b and the state are named under {sorted(names)}"
                        + ("" if len(names) == 1 else ": one layer's tensors mixed with another's")))
    checks.append(_shapes_check(g, output_width))
    state = g.hidden_state
    checks.append(
        Check(
            "state.variable",
            state.is_variable and state.data is None,
            f"'{state.name}' is_variable={state.is_variable}, "
            + ("no buffer data" if state.data is None else f"{state.nbytes} bytes of buffer data (runtime refuses)"),
        )
    )
    return checks


def _lstm_layer_checks(g: LSTMGraph, output_width: int | None = None) -> list[Check]:
    """An LSTM op's direction: its code, version and options (tanh, a sound cell_clip, no projection clip: the
    kernel would silently apply another activation), its 12 weight tensors each in the slot its name says and under
    one cell with both states, their shapes (the slots tflrnn leaves out absent), and h and c variables without
    data."""
    op = g.operator
    code = op.code
    checks = [
        Check("op.code", op.builtin_code == code and op.deprecated_builtin_code == code,
              f"builtin_code {op.builtin_code}, deprecated_builtin_code {op.deprecated_builtin_code} "
              f"(both must be {int(code)})"),
        Check("op.version", op.version == _expected_op_version(g),
              f"version {op.version}, expected {_expected_op_version(g)}"
              + (" (hybrid)" if g.hybrid else " (float)")),
        _lstm_options_check(g, _OPTIONS_OF[code]),
    ]
    name = g.name or ""
    misplaced = [f"slot {slot} holds '{t.name}', expected '{name}/{role}'"
                 for (slot, role), t in zip(LSTM_ROLES.items(), g.gates) if t.name != f"{name}/{role}"]
    # h before c, as the kernel reads them (inputs 18 and 19): an app reads the state by these names
    misplaced += [f"the {what} state's slot holds '{t.name}', expected '{name}/{role}'"
                  for what, role, t in zip(("hidden", "cell"), ("hidden_state", "cell_state"), g.states)
                  if t.name != f"{name}/{role}"]
    names = {t.name.rpartition("/")[0] for t in (*g.gates, *g.states)}
    detail = (f"each gate's W, R and b in its slot and both states named under {sorted(names)}"
              if len(names) == 1 and not misplaced else
              "; ".join(misplaced + ([f"named under {sorted(names)}: one layer's tensors mixed with another's"]
                                     if len(names) > 1 else [])))
    checks.append(Check("tensors.names", len(names) == 1 and not misplaced, detail))
    checks.append(_lstm_shapes_check(g, output_width))
    problems = [f"'{t.name}' is_variable={t.is_variable}" + ("" if t.data is None else
                                                             f", {t.nbytes} bytes of buffer data (runtime refuses)")
                for t in g.states if not t.is_variable or t.data is not None]
    if g.hidden_state is g.cell_state:
        problems.append(f"h and c are one tensor '{g.hidden_state.name}' (the kernel would overwrite one with the "
                        "other)")
    checks.append(Check("state.variable", not problems, "; ".join(problems) if problems else
                        f"h '{g.hidden_state.name}' and c '{g.cell_state.name}' variables, no buffer data"))
    return checks


def _lstm_options_check(g: LSTMGraph, expected: BuiltinOptions) -> Check:
    """What the LSTM kernel reads from its options: only tanh computes Keras' and PyTorch's LSTM; any other
    activation, a negative or infinite cell_clip, a proj_clip or diagonal recurrent weights would be computed without
    a word. A cell_clip >= 0 is the model's own (the numeric checks clip c by it, as TF1's LSTMCell does)."""
    op = g.operator
    if op.options_type != expected or op.options is None:
        return Check("op.options", False, f"builtin_options type {op.options_type}, expected {expected.name} "
                                          f"({int(expected)}); the runtime would silently apply no activation")
    options = op.options
    act = options.activation
    valid = act in Activation._value2member_map_
    detail = (f"activation {Activation(act).name if valid else act}, cell_clip {options.cell_clip:g}, proj_clip "
              f"{options.proj_clip:g}, time_major {bool(options.time_major)}, asymmetric_quantize_inputs "
              f"{bool(options.asymmetric_quantize_inputs)}")
    if hasattr(options, "merge_outputs"):
        detail += f", merge_outputs {bool(options.merge_outputs)}"
    problems = []
    if act != Activation.TANH:
        problems.append("an LSTM's candidate and cell output need tanh; the kernel would apply "
                        + (Activation(act).name if valid else "none (not an ActivationFunctionType)"))
    if not (np.isfinite(options.cell_clip) and options.cell_clip >= 0):
        problems.append("cell_clip must be a finite number >= 0 (0: none): the kernel would clip c to nonsense")
    if options.proj_clip != 0:
        problems.append("proj_clip set: the op has no projection, so tflrnn's LSTM writes 0")
    if getattr(options, "diagonal_recurrent_tensors", False):
        problems.append("diagonal_recurrent_tensors would read R as diagonals")
    if options.asymmetric_quantize_inputs and not g.hybrid:
        problems.append("asymmetric_quantize_inputs on a float op")
    return Check("op.options", not problems, detail + ("; " + "; ".join(problems) if problems else ""))


def _lstm_shapes_check(g: LSTMGraph, output_width: int | None = None) -> Check:
    x, y, h, c = g.input, g.output, g.hidden_state, g.cell_state
    first = g.gates[0]
    if len(first.shape) != 2:
        return Check("tensors.shapes", False, f"'{first.name}' has shape {list(first.shape)}, expected [units, "
                                              "input_size]")
    units, input_size = first.shape
    if len(x.shape) != 3:
        return Check("tensors.shapes", False, f"'{x.name}' has shape {list(x.shape)}, expected rank 3")
    batch, steps = (x.shape[1], x.shape[0]) if g.time_major else (x.shape[0], x.shape[1])
    lead = (steps, batch) if g.time_major else (batch, steps)
    expected = [(x, (*lead, input_size)), *((t, (units, input_size)) for t in g.gates[:4]),
                *((t, (units, units)) for t in g.gates[4:8]), *((t, (units,)) for t in g.gates[8:]),
                (h, (batch, units)), (c, (batch, units)), (y, (*lead, output_width or units))]
    problems = [f"'{t.name}' has shape {list(t.shape)}, expected {list(shape)}" for t, shape in expected
                if tuple(t.shape) != shape]
    present = [i for i in g.absent if i != -1]
    if present:
        problems.append(f"inputs {present} name tensors where tflrnn's LSTM has none (peepholes, projection, "
                        "layer norm, aux input: all -1)")
    if min(units, input_size, batch, steps) < 1:
        problems.append(f"non-positive dimension in {list(x.shape)} / {list(first.shape)}")
    for tensor in (x, y):
        size = 4 * int(np.prod(tensor.shape, dtype=np.float64))  # float64: a hostile shape must not overflow
        if size > MAX_TENSOR_BYTES:
            problems.append(f"'{tensor.name}' {list(tensor.shape)} would take {size / 2**30:.1f} GiB (limit 2 GiB)")
        if tensor.data is not None or tensor.is_variable:
            problems.append(f"'{tensor.name}' is an input/output but has buffer data or is a variable")
    time_axis, batch_axis = (0, 1) if g.time_major else (1, 0)
    for tensor, _ in expected:
        signature = tensor.shape_signature
        if signature is None or tuple(signature) == tuple(tensor.shape):
            continue
        dynamic = [axis for axis, (s, n) in enumerate(zip(signature, tensor.shape)) if s != n]
        sequence = tensor is x or tensor is y
        if sequence and dynamic == [time_axis] and signature[time_axis] == -1:
            continue  # dynamic time: resized per invoke
        if (sequence and batch_axis in dynamic) or ((tensor is h or tensor is c) and 0 in dynamic):
            problems.append(f"'{tensor.name}' has shape_signature {list(signature)}: a dynamic batch is not supported "
                            "(each state is a [batch, units] variable fixed in the model)")
        else:
            problems.append(f"'{tensor.name}' has shape_signature {list(signature)}: only the time axis of the "
                            "input and output may be dynamic")
    # float32, but a hybrid op's W and R: int8, one symmetric scale each (the kernel reads one scale per tensor)
    weights = g.gates[:8] if g.hybrid else ()
    problems += [f"'{t.name}' is {t.dtype}, expected float32" for t, _ in expected
                 if t.dtype != "float32" and not any(t is w for w in weights)]
    problems += [f"'{t.name}' is {t.dtype}, expected int8 with one scale and zero point 0 (a hybrid op's W and R)"
                 for t in weights if t.dtype != "int8" or t.quantization is None or len(t.quantization.scale) != 1
                 or any(t.quantization.zero_point) or not 0 < t.quantization.scale[0] < np.inf]
    if problems:
        return Check("tensors.shapes", False, "; ".join(problems))
    layout = "time-major" if g.time_major else "batch-major"
    if x.shape_signature is not None and -1 in x.shape_signature:
        layout += ", dynamic time"
    return Check("tensors.shapes", True,
                 f"x {list(x.shape)} ({layout}), W {list(first.shape)}, R [{units}, {units}] and b [{units}] for each "
                 f"of the 4 gates, h and c {list(h.shape)}, output {list(y.shape)}; peepholes, projection and "
                 "layer norm absent")


def _expected_op_version(g: RNNGraph) -> int:
    if g.input_weights.dtype == "int8":
        return 3 if g.options.asymmetric_quantize_inputs else 2
    return 1


def _options_check(g: RNNGraph, expected: BuiltinOptions) -> Check:
    op = g.operator
    if op.options_type != expected or op.options is None:
        return Check(
            "op.options",
            False,
            f"builtin_options type {op.options_type}, expected {expected.name} "
            f"({int(expected)}); the runtime would silently use batch-major and no activation",
        )
    act = op.options.activation
    valid = act in Activation._value2member_map_
    detail = (
        f"activation {Activation(act).name if valid else act}, time_major {bool(op.options.time_major)}, "
        f"asymmetric_quantize_inputs {bool(op.options.asymmetric_quantize_inputs)}"
        + (f", merge_outputs {bool(op.options.merge_outputs)}" if hasattr(op.options, "merge_outputs") else "")
    )
    if not valid:
        detail += "; not an ActivationFunctionType (the runtime would silently apply none)"
    return Check("op.options", valid, detail)


def _shapes_check(g: RNNGraph, output_width: int | None = None) -> Check:
    w, r, b, h, x, y = g.input_weights, g.recurrent_weights, g.bias, g.hidden_state, g.input, g.output
    problems = []
    if len(w.shape) != 2:
        return Check("tensors.shapes", False, f"'{w.name}' has shape {list(w.shape)}, expected [units, input_size]")
    units, input_size = w.shape
    if len(x.shape) != 3:
        return Check("tensors.shapes", False, f"'{x.name}' has shape {list(x.shape)}, expected rank 3")
    batch, steps = (x.shape[1], x.shape[0]) if g.time_major else (x.shape[0], x.shape[1])
    lead = (steps, batch) if g.time_major else (batch, steps)
    expected = {
        x.name: (x, (*lead, input_size)),
        r.name: (r, (units, units)),
        b.name: (b, (units,)),
        h.name: (h, (batch, units)),
        y.name: (y, (*lead, output_width or units)),
    }
    for name, (tensor, shape) in expected.items():
        if tuple(tensor.shape) != shape:
            problems.append(f"'{name}' has shape {list(tensor.shape)}, expected {list(shape)}")
    if min(units, input_size, batch, steps) < 1:
        problems.append(f"non-positive dimension in {list(x.shape)} / {list(w.shape)}")
    for tensor in (x, y):
        size = 4 * int(np.prod(tensor.shape, dtype=np.float64))  # float64: a hostile shape must not overflow
        if size > MAX_TENSOR_BYTES:
            problems.append(f"'{tensor.name}' {list(tensor.shape)} would take {size / 2**30:.1f} GiB (limit 2 GiB)")
        if tensor.data is not None or tensor.is_variable:
            # The runtime would write the sequence into the model's own bytes.
            problems.append(f"'{tensor.name}' is an input/output but has buffer data or is a variable")
    time_axis, batch_axis = (0, 1) if g.time_major else (1, 0)
    for tensor in (x, w, r, b, h, y):
        signature = tensor.shape_signature
        if signature is None or tuple(signature) == tuple(tensor.shape):
            continue
        dynamic = [axis for axis, (s, n) in enumerate(zip(signature, tensor.shape)) if s != n]
        sequence = tensor is x or tensor is y
        if sequence and dynamic == [time_axis] and signature[time_axis] == -1:
            continue  # dynamic time: resized per invoke
        if (sequence and batch_axis in dynamic) or (tensor is h and 0 in dynamic):
            problems.append(f"'{tensor.name}' has shape_signature {list(signature)}: a dynamic batch is not supported "
                            "(each state is a [batch, units] variable fixed in the model)")
        else:
            problems.append(f"'{tensor.name}' has shape_signature {list(signature)}: only the time axis of the "
                            "input and output may be dynamic")
    for tensor in (x, b, h, y):
        if tensor.dtype != "float32":
            problems.append(f"'{tensor.name}' is {tensor.dtype}, expected float32")
    for tensor in (w, r):
        if tensor.dtype not in ("float32", "int8"):
            problems.append(f"'{tensor.name}' is {tensor.dtype}, expected float32 or int8")
    if problems:
        return Check("tensors.shapes", False, "; ".join(problems))
    layout = "time-major" if g.time_major else "batch-major"
    if x.shape_signature is not None and -1 in x.shape_signature:
        layout += ", dynamic time"
    return Check(
        "tensors.shapes",
        True,
        f"x {list(x.shape)} ({layout}), W {list(w.shape)}, R {list(r.shape)}, b {list(b.shape)}, "
        f"state {list(h.shape)}, output {list(y.shape)}",
    )


def _signature_check(network: FusedGraph, ends: list[int]) -> Check:
    g = network.directions[0]
    x_index = g.operator.inputs[0]
    if len(ends) == 2:
        outputs = dict(zip((f"{SIGNATURE_OUTPUT}_fw", f"{SIGNATURE_OUTPUT}_bw"), ends))
    else:
        outputs = {SIGNATURE_OUTPUT: ends[0] if ends else -1}
    signature = next((s for s in network.model.signatures if s.key == SIGNATURE_KEY), None)
    subgraph_index = next(i for i, graph in enumerate(network.model.subgraphs) if graph is network.subgraph)
    problems = []
    if signature is None:
        problems.append(f"no '{SIGNATURE_KEY}' signature")
    else:
        if signature.subgraph != subgraph_index:
            problems.append(f"it names subgraph {signature.subgraph}, but the RNN is in subgraph {subgraph_index}")
        if signature.inputs != {SIGNATURE_INPUT: x_index}:
            problems.append(f"inputs {signature.inputs}, expected {{'{SIGNATURE_INPUT}': {x_index}}}")
        if signature.outputs != outputs:
            problems.append(f"outputs {signature.outputs}, expected {outputs}")
    if network.subgraph.inputs != [x_index] or network.subgraph.outputs != list(outputs.values()):
        problems.append(f"subgraph inputs {network.subgraph.inputs} and outputs {network.subgraph.outputs}, expected "
                        f"[{x_index}] and {list(outputs.values())}")
    if problems:
        return Check("signature", False, "; ".join(problems))
    shown = ", ".join(f"{name} -> tensor {index}" for name, index in outputs.items())
    return Check("signature", True, f"'{SIGNATURE_KEY}': input -> tensor {x_index}, {shown}")


def _metadata_checks(network: FusedGraph, layer_weights: list) -> list[Check]:
    layers = network.directions
    metadata = network.model.metadata
    checks = [min_runtime_check(network.model)]
    raw = metadata.get(METADATA_KEY)
    if raw is None:
        checks.append(Check("metadata.tflrnn", True, "absent: the model was not built by tflrnn"))
        return checks
    document = parse_metadata(raw, network.model.description)
    if document is None:
        checks.append(Check("metadata.tflrnn", False, "not valid tflrnn JSON"))
        return checks
    cells = document["cells"]
    if len(cells) != len(layers):
        return checks + [Check("metadata.tflrnn", False, f"{len(cells)} cells recorded, {len(layers)} in the graph")]
    problems = []
    for k, (g, cell, weights) in enumerate(zip(layers, cells, layer_weights)):
        where = f"layer {k}: " if len(layers) > 1 else ""
        w = g.input_weights
        facts = {
            "name": g.name,
            "num_units": w.shape[0] if len(w.shape) == 2 else None,
            "input_size": w.shape[1] if len(w.shape) == 2 else None,
            "activation": ACTIVATION_NAMES.get(g.options.activation),
            "cell_clip": g.cell_clip or None,  # an LSTM's; None: no clip
        }
        problems += [f"{where}{key} {cell.get(key)!r} but the graph has {actual!r}" for key, actual in facts.items()
                     if (key in cell or key in ("activation", "cell_clip")) and cell.get(key) != actual]
        if weights is not None and cell.get("weights_sha256") != weights.sha256():
            problems.append(f"{where}weights_sha256 does not match the weights in the file")
    dense = document.get("dense") or []
    layers_of_head = dense_layers(network)
    if len(dense) != len(layers_of_head) or not all(isinstance(d, dict) for d in dense):
        problems.append(f"{len(dense)} dense layers recorded, {len(layers_of_head)} FULLY_CONNECTED ops in the graph")
    else:
        for k, (info, (op, following)) in enumerate(zip(dense, layers_of_head)):
            try:
                w, b = dense_arrays(network, op)
            except TflrnnError as exc:
                problems.append(f"dense {k}: {exc}")
                continue
            facts = {"name": w.name.rpartition("/")[0], "units": w.shape[0] if len(w.shape) == 2 else None,
                     "input_size": w.shape[1] if len(w.shape) == 2 else None,
                     "activation": dense_activation(op, following)}
            problems += [f"dense {k}: {key} {info.get(key)!r} but the graph has {actual!r}"
                         for key, actual in facts.items()
                         if (key in info or key == "activation") and info.get(key) != actual]
            beta = getattr(getattr(following, "options", None), "beta", 1.0)
            if facts["activation"] == "softmax" and beta != 1.0:
                problems.append(f"dense {k}: SOFTMAX beta {beta}, but a Keras softmax has beta 1")
            if info.get("weights_sha256") != dense_sha256(w.data, b.data):
                problems.append(f"dense {k}: weights_sha256 does not match the kernel and bias in the file")
    if problems:
        return checks + [Check("metadata.tflrnn", False, "; ".join(problems))]
    recorded = "name, sizes, activation" if "name" in cells[0] else "activation"
    return checks + [Check("metadata.tflrnn", True, f"written by tflrnn {document['version']}; {recorded} and "
                                                     "weights sha256 match the graph")]


def min_runtime_check(model) -> Check:
    """The `min_runtime_version` entry against the oldest runtime with every op at its version (either lowering)."""
    expected = min_runtime_version(model)
    found = model.metadata.get("min_runtime_version")
    text = None if found is None else found.rstrip(b"\0").decode("utf-8", errors="replace")
    versions = ", ".join(dict.fromkeys(f"{op_name(op.code)} v{op.version}" for g in model.subgraphs
                                       for op in g.operators))
    return Check("metadata.min_runtime_version", text == expected,
                 f"{text!r}, expected {expected!r} for {versions}" if text is not None else "missing")


def _usable_weights(g: RNNGraph) -> tuple[CellWeights | None, str | None]:
    try:
        return g.weights(), None
    except TflrnnError as exc:
        return None, str(exc)


def _weights_match(model_weights: list, expected: list[CellWeights], why_not: str | None, quantized=False) -> Check:
    if why_not is not None:
        return Check("weights.match", False, f"cannot compare: {why_not}")
    problems, worst = [], 0.0
    for k, (ours, theirs) in enumerate(zip(model_weights, expected)):
        where = f"layer {k} " if len(expected) > 1 else ""
        if getattr(ours, "kind", "rnn") != getattr(theirs, "kind", "rnn"):
            problems.append(f"{where}is a {ours.kind} cell in the model, a {theirs.kind} cell in the weights")
            continue
        mine, given = ours.roles(), theirs.roles()
        for name in dict.fromkeys([*mine, *given]):
            a, b = mine.get(name), given.get(name)
            if a is None or b is None:
                problems.append(f"{where}{name} is only in the {'weights' if a is None else 'model'}")
            elif a.shape != b.shape:
                problems.append(f"{where}{name} is {list(a.shape)} in the model, {list(b.shape)} in the weights")
            elif not np.array_equal(a, b):
                diff = float(np.max(np.abs(a.astype(np.float64) - b)))
                worst = max(worst, diff)
                problems.append(f"{where}{name} differs (max {diff:.3g})")
    if problems:
        return Check("weights.match", False, "; ".join(problems), max_abs_error=worst or None)
    what = "every layer's" if len(expected) > 1 else "the"
    how = " once W and R are rounded to int8 as the model stores them" if quantized else ""
    roles = list(model_weights[0].roles()) if model_weights else ["input_weights", "recurrent_weights", "bias"]
    return Check("weights.match", True, f"{what} {', '.join(roles[:-1])} and {roles[-1]} are bit-identical{how}",
                 0.0)
