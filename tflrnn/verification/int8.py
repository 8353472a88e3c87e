"""verify for a full-integer int8 model (the portable lowering with `Network.int8`).

Structure: every value int8 in the formats the kernels demand (`int8.formats`). Numbers (`int8.steps`): the model
runs on a real interpreter over several invokes, its state carried, and every step of every op is recomputed in
float64 from the interpreter's own int8 inputs to that step (read back: LiteRT and tf.lite keep every tensor, TFLite
Micro with kPreserveAllTensors) with the dequantized weights, each int8 value clamped to what its format can hold.
What is left is rounding, bounded by the quantization steps (LSB: a format's scale) of the values on the way:
    P, r (FULLY_CONNECTED)        1 LSB of their own format (round to nearest, and the fixed-point multiplier)
    z = ADD(P, r)                 1 LSB of z + the errors of P and r
    h = TANH(z)                   2 LSB of h (TFLite's table and TFLite Micro's fixed point differ by one) + z's,
                                  as |tanh'| <= 1; for the relu family h is z
    Dense FULLY_CONNECTED         1 LSB of its output; TANH / LOGISTIC / SOFTMAX after it 2 LSB of theirs
    QUANTIZE of the input 1 LSB; DEQUANTIZE of the outputs exact.
A step is checked from the state the interpreter carried into it, so an error cannot compound and the bound stays
tight: a wrong weight, scale or activation, or a lost state, is off by many steps. The free-running error against
the float64 reference (and the float weights, with --weights) is measured and reported, not bounded: it compounds
through the recurrence as the model's own quantization error does.
"""

from __future__ import annotations

import numpy as np

from .. import quantization as quant
from .. import reference
from ..cells import kind
from ..lowering import portable
from ..lowering.common import SIGNATURE_INPUT, SIGNATURE_KEY, SIGNATURE_OUTPUT
from ..model import Activation, BuiltinOperator, Model, op_name
from ..network import Int8Format, Network, stage_layers
from .int8_ops import MALFORMED, malformed
from .report import Check, VerifyReport

STEP_RUNTIMES = ("litert", "tensorflow", "micro")  # those that give back every tensor after an invoke
# The output formats the int8 kernels fix, restated here from the kernels' sources rather than taken from the
# quantizer this module checks: TFLite Micro's tanh writes (1/128, 0) whatever the tensor says (tanh_common.cc);
# LiteRT's SigmoidPrepare requires (1/256, -128) (activations.cc), as TFLite Micro's logistic and softmax do.
_FIXED_CODES = {BuiltinOperator.TANH: Int8Format(float(np.float32(1 / 128)), 0),
                BuiltinOperator.LOGISTIC: Int8Format(float(np.float32(1 / 256)), -128),
                BuiltinOperator.SOFTMAX: Int8Format(float(np.float32(1 / 256)), -128)}
# Their int16 kernels (16x8: a full-int8 LSTM's values) write (1/32768, 0): activations.cc, LiteRT's and TFLite
# Micro's, require it of the output
_FIXED_CODES_16 = {code: Int8Format(2.0 ** -15, 0, bits=16) for code in (BuiltinOperator.TANH, BuiltinOperator.LOGISTIC)}
_FIXED_BY_ACTIVATION = {"tanh": _FIXED_CODES[BuiltinOperator.TANH], "sigmoid": _FIXED_CODES[BuiltinOperator.LOGISTIC],
                        "softmax": _FIXED_CODES[BuiltinOperator.SOFTMAX]}
# An int32 bias is in the scale of the sum it joins, input scale x weight scale per channel: the kernels require it
# within a relative 1e-6 (kernel_util.cc, GetQuantizedConvolutionMultipler).
_BIAS_SCALE_RTOL = 1e-6
# The ops whose values the checks below read: each has inputs and outputs
_VALUE_CODES = {*_FIXED_CODES, *_FIXED_CODES_16, BuiltinOperator.FULLY_CONNECTED, BuiltinOperator.ADD,
                BuiltinOperator.SUB, BuiltinOperator.MUL}
_SAME_FORMAT = (BuiltinOperator.RESHAPE, BuiltinOperator.UNPACK, BuiltinOperator.PACK, BuiltinOperator.CONCATENATION,
                BuiltinOperator.SPLIT)


def _data_inputs(op) -> list[int]:
    """The inputs whose bytes an op moves (RESHAPE's second is its shape; SPLIT's first its axis)."""
    if op.code == BuiltinOperator.SPLIT:
        return op.inputs[1:]
    return op.inputs[:1] if op.code == BuiltinOperator.RESHAPE else op.inputs


def fmt_of(tensor) -> tuple:
    """A tensor's type and per-tensor quantization, as bytes passed on unchanged must keep them."""
    q = tensor.quantization
    return (tensor.dtype, None if q is None else (tuple(q.scale), tuple(q.zero_point)))


def formats_check(model: Model, network: Network) -> Check:
    """What the int8 kernels need of the formats, which no runtime checks (TFLite Micro writes TANH's output as
    (1/128, 0) whatever the tensor says; CONCATENATION and PACK copy bytes): fixed outputs where the kernel fixes
    them, equal formats through data movement (a loop's values through its WHILE and body too), weights per channel
    with zero point 0, biases int32 (int64 on int16) at input scale x weight scale, every value int8 (int16 with zero
    point 0 in a 16x8 LSTM)."""
    problems = []
    t = None

    def fmt(index: int, wide: bool = False) -> Int8Format | None:
        """The tensor's int8 format (with `wide`, int16 too); None for anything else."""
        if index < 0:  # an optional input left out
            return None
        q = t[index].quantization
        if t[index].dtype not in (("int8", "int16") if wide else ("int8",)) or q is None or len(q.scale) != 1 or \
                len(q.zero_point) != 1:
            return None
        return Int8Format(float(q.scale[0]), int(q.zero_point[0]), bits=16 if t[index].dtype == "int16" else 8)

    wide_inputs = 0

    def int16(index: int) -> bool:
        """An int16 value with zero point 0, as TFLite's 16x8 kernels take and write them."""
        found = fmt(index, wide=True)
        return found is not None and found.bits == 16 and found.zero_point == 0

    for graph, op in ((graph, op) for graph in model.subgraphs for op in graph.operators):  # a loop body's too
        t = graph.tensors
        if not all(-1 <= i < len(t) for i in (*op.inputs, *op.outputs)):  # a malformed model's
            problems.append(f"{graph.name or 'a subgraph'}: {op_name(op.code)} names a tensor it does "
                            "not have")
            continue
        name = t[op.outputs[0]].name if op.outputs else ""
        if op.code in _VALUE_CODES and not (op.inputs and op.outputs):  # a malformed model's
            problems.append(f"{BuiltinOperator(op.code).name} without inputs or outputs")
            continue
        if op.outputs and t[op.outputs[0]].dtype in ("int32", "bool") and op.code != BuiltinOperator.WHILE:
            continue  # a loop's step index and its test
        wide_op = bool(op.outputs) and t[op.outputs[0]].dtype == "int16" and op.code != BuiltinOperator.QUANTIZE
        fixed = (_FIXED_CODES_16 if wide_op else _FIXED_CODES).get(op.code)
        if fixed is not None and fmt(op.outputs[0], wide=True) != fixed:
            problems.append(f"'{name}' is {fmt(op.outputs[0], wide=True)}; the int{fixed.bits} "
                            f"{BuiltinOperator(op.code).name} kernel writes ({fixed.scale:g}, {fixed.zero_point})")
        elif op.code in _SAME_FORMAT and _data_inputs(op) and len({fmt(i, wide=True) for i in (
                *_data_inputs(op), *op.outputs)}) > 1:  # (a loop body's float and int32 PACKs hold no format)
            problems.append(f"'{name}': {BuiltinOperator(op.code).name} copies bytes, so its inputs and outputs "
                            "need one format")
        elif op.code == BuiltinOperator.FULLY_CONNECTED and t[op.inputs[0]].dtype == "int16":
            # TFLite's 16x8 kernel: int16 in and out, both zero point 0 (fully_connected.cc, LiteRT's and Micro's)
            wide_inputs += 1
            if not (int16(op.inputs[0]) and int16(op.outputs[0])):
                problems.append(f"'{name}': a FULLY_CONNECTED on int16 needs int16 in and out, zero point 0")
            else:  # its int16 output QUANTIZEd to int8 (a step of 1/128 of that one's at most, or it is lost), or
                # read by int16 ops only (a 16x8 LSTM's)
                readers = [o for o in graph.operators if op.outputs[0] in o.inputs and o.outputs and
                           0 <= o.outputs[0] < len(t)]  # a reader naming a tensor it lacks is reported on its turn
                after = [fmt(o.outputs[0]) for o in readers if o.code == BuiltinOperator.QUANTIZE]
                if not (after and len(after) == len(readers) == 1 and after[0] is not None and
                        fmt(op.outputs[0], wide=True).scale <= after[0].scale / 128) and \
                        not (readers and all(t[o.outputs[0]].dtype == "int16" for o in readers)):
                    problems.append(f"'{name}': the int16 result is neither QUANTIZEd to one int8 format at least 128 "
                                    "times its step nor read by int16 ops only")
        elif wide_op and op.code in (BuiltinOperator.ADD, BuiltinOperator.SUB, BuiltinOperator.MUL,
                                     BuiltinOperator.TANH, BuiltinOperator.LOGISTIC) and \
                not all(int16(i) for i in (*op.inputs, *op.outputs)):
            # the int16 kernels (add.cc, mul.cc, activations.cc; Micro's too) take zero points 0 only
            problems.append(f"'{name}': int16 {BuiltinOperator(op.code).name} needs int16 inputs and output, zero "
                            "point 0")
        elif not wide_op and op.code in (BuiltinOperator.FULLY_CONNECTED, BuiltinOperator.ADD, BuiltinOperator.SUB,
                                         BuiltinOperator.MUL) and any(fmt(i) is None for i in (op.inputs[0],
                                                                                                op.outputs[0])):
            problems.append(f"'{name}': {BuiltinOperator(op.code).name} on values that are not int8 of one scale")
        if op.code == BuiltinOperator.WHILE:  # its values pass as bytes into the body and out again
            body = model.subgraphs[op.options.body_subgraph_index] \
                if 0 < getattr(op.options, "body_subgraph_index", -1) < len(model.subgraphs) else None
            inner = body.tensors if body is not None and len(body.inputs) == len(op.inputs) == len(
                body.outputs) == len(op.outputs) and all(0 <= i < len(body.tensors) for i in (
                    *body.inputs, *body.outputs)) else None  # (a body naming tensors it lacks: reported so)
            if inner is None or any(len({fmt_of(t[a]), fmt_of(inner[b]), fmt_of(inner[c]), fmt_of(t[d])}) > 1
                                    for a, b, c, d in zip(op.inputs, body.inputs, body.outputs, op.outputs)):
                problems.append(f"'{name}': the loop's values do not keep one format through its body")
        if op.code == BuiltinOperator.FULLY_CONNECTED and len(op.inputs) == 3:
            w = t[op.inputs[1]]
            qw = w.quantization
            if w.dtype != "int8" or qw is None or len(qw.scale) != w.shape[0] or any(qw.zero_point) or \
                    qw.quantized_dimension != 0:
                problems.append(f"'{w.name}': not int8 per output channel with zero point 0")
            elif op.inputs[2] >= 0:
                b, x = t[op.inputs[2]], fmt(op.inputs[0], wide=True)
                expected = np.float32(x.scale) * np.asarray(qw.scale, np.float64) if x else None
                qb = b.quantization
                kind = "int64" if x and x.bits == 16 else "int32"  # the 16x8 kernel adds an int64 bias
                if b.dtype != kind or qb is None or expected is None or len(qb.scale) != len(expected) or \
                        not np.allclose(np.asarray(qb.scale, np.float64), expected, rtol=_BIAS_SCALE_RTOL, atol=0):
                    problems.append(f"'{b.name}': not {kind} at input scale x weight scale per channel")
    if problems:
        return Check("int8.formats", False, "; ".join(problems[:3]) + (f" (and {len(problems) - 3} more)"
                                                                      if len(problems) > 3 else ""))
    plan = network.int8
    wide = (f", {wide_inputs} of them on int16 (int16 out, zero points 0, biases int64)" if wide_inputs else "")
    from ..lowering import lowering

    chosen = lowering(network.lowering)
    values = ("int8, the LSTM ops' cell states int16 (their kernel's)" if chosen.int8_weight_scales == "per-tensor"
              else "int16 (16x8: zero points 0) for the LSTM layers, int8 elsewhere" if any(
                  quant.value_bits(layer, chosen) == 16 for layer in network.layers) else "int8 but the input's")
    return Check("int8.formats", True, (
        f"every op's values {values}; TANH / LOGISTIC / SOFTMAX outputs as their kernels write them; data "
        f"movement in one format; FULLY_CONNECTED weights per channel, biases int32 on int8{wide}; interface "
        f"{'int8' if plan.int8_io else 'float'} (input int{plan.input.bits}, scale {plan.input.scale:.4g}, zero point "
        f"{plan.input.zero_point})"))


def int8_checks(data: bytes, model: Model, network: Network, report: VerifyReport, runtimes: list[str], *,
                seed: int, sequences: int, float_weights=None) -> None:
    """int8.steps on each runtime that gives back every tensor, with the free-running error measured; int8.outputs
    on those that give back only the outputs (the CompiledModel API, and LiteRT with XNNPACK, which users of
    LiteRT get by default). A loop's steps (a full-int8 LSTM's) overwrite their values each iteration: loop_checks."""
    if network.loop:
        loop_checks(data, model, network, report, runtimes, seed=seed, sequences=sequences,
                    float_weights=float_weights)
        return
    output_only = [(name, False) for name in runtimes if name not in STEP_RUNTIMES]
    if "litert" in runtimes:
        output_only.append(("litert", True))
    # The outputs-only runtimes are measured against LiteRT's builtin kernels, so those are checked step by step
    # too, asked for or not: a yardstick that lost its state would excuse the same loss elsewhere.
    stepped = [name for name in runtimes if name in STEP_RUNTIMES]
    if output_only and "litert" not in stepped:
        stepped.insert(0, "litert")
    by_op = any(layer.kind != "rnn" for layer in network.layers)  # a GRU's ops are also checked one by one
    try:
        _Graph(model, network)
    except KeyError as exc:  # a tensor the checks read is not where the lowering puts it
        report.checks.append(Check("int8.steps", False, f"the model has no tensor {exc} where tflrnn writes it"))
        return
    for runtime_name in stepped:
        report.checks += _steps_on(data, model, network, report, runtime_name, seed, sequences, float_weights)
        if by_op:
            from .int8_ops import ops_checks

            report.checks += ops_checks(data, model, network, report, runtime_name, seed=seed, sequences=sequences)
    stepwise = ("int8.steps", "int8.ops")
    yardstick = [c for c in report.checks if c.runtime == "litert" and c.kind in (*stepwise, "runtime")]
    if output_only and yardstick and all(c.passed and c.kind in stepwise for c in yardstick):
        report.checks += _outputs_on(data, model, network, report, output_only, seed, sequences)
    elif output_only:  # int8.steps failed already: the outputs-only runtimes have no sound yardstick
        names = ", ".join(f"{n}+xnnpack" if x else n for n, x in output_only)
        report.notes.append(f"int8.outputs not run on {names}: LiteRT's builtin kernels, their yardstick, failed "
                            "int8.steps (int8.ops)")


def loop_checks(data: bytes, model: Model, network: Network, report: VerifyReport, runtimes: list[str], *,
                seed: int, sequences: int, float_weights=None) -> None:
    """A full-int8 loop holds one step's values at a time, so no runtime gives back each step's. Its witness is its
    unrolled twin: the network verify recovered from this model, written with the steps unrolled (the same weights,
    the same formats, the same ops each step), checked as any unrolled model is, op by op and step by step from
    restated arithmetic (int8.steps, int8.ops, int8.outputs); then `int8.loop`: on each runtime, this model's
    outputs and final states must be the twin's bit for bit over the same invokes and after a reset (integer
    kernels on the same integers give the same integers; the loop's GATHER, DEQUANTIZE, QUANTIZE and
    DYNAMIC_UPDATE_SLICE only move them). Wiring in the body that is not the LSTM's, a lost state or a reset that
    does not reset makes other integers. The weights and formats are the model's own (the twin takes them from it):
    metadata.tflrnn's digest and --weights hold the weights to their source."""
    from dataclasses import replace

    from ..lowering import lower
    from ..writer import write
    from . import data as on_data

    twin = replace(network, loop=False)
    twin_model = lower(twin)
    twin_data = write(twin_model)
    witness = VerifyReport(report.model, len(twin_data), "", {})
    int8_checks(twin_data, twin_model, twin, witness, runtimes, seed=seed, sequences=sequences,
                float_weights=float_weights)
    report.checks += [replace(c, detail=f"its unrolled twin (the recovered network, steps unrolled): {c.detail}")
                      for c in witness.checks]
    report.notes += witness.notes
    serving = next(s for s in model.signatures if s.key == SIGNATURE_KEY)
    x_shape = model.subgraphs[serving.subgraph].tensors[serving.inputs[SIGNATURE_INPUT]].shape
    rng = np.random.default_rng(seed)
    xs = [rng.standard_normal(x_shape).astype(np.float32) for _ in range(sequences)]
    expected = on_data.expected_outputs(network, xs)
    carried = {"carry": "the state carried by the model, then reset", "io": "the final states fed back",
               "zero": "each invoke from zeros"}[network.state]
    for runtime_name in runtimes:
        for xnnpack in ((False, True) if runtime_name == "litert" else (False,)):
            label = f"{runtime_name}+xnnpack" if xnnpack else runtime_name
            try:
                version, got = on_data.run_model(data, model, network, runtime_name, xs, xnnpack=xnnpack,
                                                 then_reset=True, states_too=True)
                _, wanted = on_data.run_model(twin_data, twin_model, twin, runtime_name, xs, xnnpack=xnnpack,
                                              then_reset=True, states_too=True)
            except (RuntimeError, ValueError) as exc:
                report.checks.append(Check("runtime", False, "the interpreter refused the model or its twin: "
                                           f"{' '.join(str(exc).split())}", runtime=label))
                continue
            if label not in [r["name"] for r in report.runtimes]:
                report.runtimes.append({"name": label, "version": version})
            count = len(expected[0])  # the outputs; then the final states (io); then the reset's invoke
            try:
                worst, mean = on_data.errors([g[:count] for g in got[:len(xs)]], expected)
                apart = max(float(np.max(np.abs(g - w), initial=0.0)) for gs, ws in zip(got, wanted)
                            for g, w in zip(gs, ws))
            except ValueError as exc:  # outputs of another size than the network's (or than the twin's)
                report.checks.append(Check("int8.loop", False, " ".join(str(exc).split()), runtime=label))
                continue
            same = len(got) == len(wanted) and all(np.array_equal(g, w) for gs, ws in zip(got, wanted)
                                                     for g, w in zip(gs, ws))
            detail = (f"{len(got)} invokes ({carried}): " + (
                "every output (and final state) bit for bit its unrolled twin's" if same else
                f"the outputs off its unrolled twin's by up to {apart:.3g}")
                + f"; max error {worst:.4f} (mean {mean:.4f}) against the float64 reference on the dequantized "
                "weights")
            report.checks.append(Check("int8.loop", same, detail, max_abs_error=worst if np.isfinite(worst) else None,
                                       runtime=label))


def _outputs_on(data, model, network, report, pairs, seed, sequences) -> list[Check]:
    """A runtime that gives back only the outputs runs other int8 kernels (XNNPACK's requantize in float, round
    otherwise), so its outputs are not bit for bit LiteRT's builtin ones: a one-step difference in one op
    compounds through the recurrence (measured: up to 7 steps of the output's format). So each is held to the
    float64 reference as the builtin kernels are, which int8.steps proves op by op: its max error at most twice the
    builtin kernels' on the same inputs, plus two steps of the output format. A lost state, a wrong kernel or a
    misread format is off by tens of steps."""
    from . import data as on_data

    serving = next(s for s in model.signatures if s.key == SIGNATURE_KEY)
    x_shape = model.subgraphs[serving.subgraph].tensors[serving.inputs[SIGNATURE_INPUT]].shape
    rng = np.random.default_rng(seed)
    xs = [rng.standard_normal(x_shape).astype(np.float32) for _ in range(sequences)]
    expected = on_data.expected_outputs(network, xs)
    step = _output_format(network).scale
    try:
        _, anchor = on_data.run_model(data, model, network, "litert", xs)
    except (RuntimeError, ValueError) as exc:
        return [Check("runtime", False, f"LiteRT's builtin kernels, the yardstick of the outputs-only runtimes, "
                                        f"refused the model: {' '.join(str(exc).split())}", runtime="litert")]
    try:
        anchor_max, _ = on_data.errors(anchor, expected)
    except ValueError as exc:
        return [Check("runtime", False, f"LiteRT's builtin kernels, the yardstick of the outputs-only runtimes: "
                                        f"{' '.join(str(exc).split())}", runtime="litert")]
    bound = 2 * anchor_max + 2 * step
    checks = []
    for runtime_name, xnnpack in pairs:
        label = f"{runtime_name}+xnnpack" if xnnpack else runtime_name
        try:
            version, got = on_data.run_model(data, model, network, runtime_name, xs, xnnpack=xnnpack)
        except (RuntimeError, ValueError) as exc:
            checks.append(Check("runtime", False, f"the interpreter refused the model: {' '.join(str(exc).split())}",
                                runtime=label))
            continue
        if label not in [r["name"] for r in report.runtimes]:
            report.runtimes.append({"name": label, "version": version})
        try:
            worst, mean = on_data.errors(got, expected)
        except ValueError as exc:
            checks.append(Check("int8.outputs", False, " ".join(str(exc).split()), runtime=label))
            continue
        apart = max(float(np.max(np.abs(g.reshape(a.shape) - a), initial=0.0)) for gs, as_ in zip(got, anchor)
                    for g, a in zip(gs, as_))
        same = "bit for bit LiteRT's builtin kernels' outputs" if apart == 0 else (
            "LiteRT's builtin kernels' outputs but for float rounding" if apart < step / 2 else
            f"{apart / step:.0f} step(s) of the output's format from LiteRT's builtin kernels' outputs")
        carried = {"carry": "the state carried by the model", "io": "the final states fed back",
                   "zero": "each invoke from zeros"}[network.state]
        detail = (f"{len(xs)} invokes ({carried}): this runtime gives back only the outputs; they are {same}; max "
                  f"error {worst:.4f} (mean {mean:.4f}) against the float64 reference on the dequantized weights, "
                  f"bound {bound:.4f} = 2 x the builtin kernels' {anchor_max:.4f} (checked op by op) "
                  f"+ 2 steps")
        checks.append(Check("int8.outputs", bool(worst <= bound), detail, max_abs_error=worst
                            if np.isfinite(worst) else None, runtime=label))
    return checks


class _Graph:
    """Where the values the checks read are in subgraph 0, by the names the lowering gives them."""

    def __init__(self, model: Model, network: Network):
        graph = model.subgraphs[0]
        self.index = {t.name: k for k, t in enumerate(graph.tensors)}
        serving = next(s for s in model.signatures if s.key == SIGNATURE_KEY)
        x = graph.tensors[serving.inputs[SIGNATURE_INPUT]]
        self.state_keys = [k for k in serving.inputs if k.startswith(portable.STATE)]
        self.inputs = [serving.inputs[SIGNATURE_INPUT], *(serving.inputs[k] for k in self.state_keys)]
        self.outputs = [i for k, i in serving.outputs.items() if k.startswith(SIGNATURE_OUTPUT)]
        self.finals = [serving.outputs[k] for k in self.state_keys]
        self.x_shape = x.shape
        self.quantized_input = self.index[x.name if network.int8.int8_io else
                                          f"{x.name}/int{network.int8.input.bits}"]
        self.steps, self.values = {}, {}
        # a state holding more than the last h (an LSTM's [h | c]): the tensor its last step leaves it in
        self.final_states = {layer.name: self.index[f"{layer.name}/final_state"] for layer in network.layers
                             if network.state != "zero" and layer.weights.state_width != layer.weights.num_units}
        for layer in network.layers:
            role = "h" if layer.activation == Activation.TANH else "z"
            self.steps[layer.name] = [self.index[f"{layer.name}/{role}{t}"] for t in range(network.time_steps)]
            check = kind(layer.kind).int8_check()
            if check is not None:  # every value of its steps, by the stems its lowering names them
                stems = check.stems(layer)
                self.values[layer.name] = {stem: [self.index[f"{layer.name}/{stem}{t}"]
                                                  for t in range(network.time_steps)] for stem in stems}
        self.dense = {d.name: (self.index[f"{d.name}/output"], self.index.get(f"{d.name}/{d.activation}"))
                      for d in network.head}
        self.graph = graph

    def reads(self) -> list[int]:
        found = [self.quantized_input] + [i for steps in self.steps.values() for i in steps]
        found += [i for stems in self.values.values() for stem, steps in stems.items() if stem != "h" for i in steps]
        found += list(self.final_states.values())
        return found + [i for pair in self.dense.values() for i in pair if i is not None]

    def final_int8(self) -> list[int]:
        """The int8 tensors each float output dequantizes (or is, with an int8 interface)."""
        producers = {o: op for op in self.graph.operators for o in op.outputs}
        found = []
        for index in self.outputs + self.finals:
            op = producers.get(index)
            found.append(op.inputs[0] if op is not None and op.code in (BuiltinOperator.DEQUANTIZE,
                                                                        BuiltinOperator.RESHAPE) else index)
        return found


def _steps_on(data, model, network, report, runtime_name, seed, sequences, float_weights) -> list[Check]:
    from .. import runtime
    from ..runners import micro_arena_bytes

    plan = network.int8
    where = _Graph(model, network)
    reads = where.reads()
    graph_outputs = where.graph.outputs
    wiring = {"input_positions": [where.graph.inputs.index(i) for i in where.inputs],
              "output_positions": [graph_outputs.index(i) for i in where.outputs + where.finals],
              "tensors": reads, "arena": micro_arena_bytes(model)}
    # LiteRT and tf.lite address tensors by index (every one kept); Micro reads `tensors` after its outputs
    indices = where.outputs + where.finals + ([] if runtime_name == "micro" else reads)
    rng = np.random.default_rng(seed)
    xs = [rng.standard_normal(where.x_shape).astype(np.float32) for _ in range(sequences)]
    given = [quant.quantize_values(x, plan.input) if plan.int8_io else x for x in xs]
    try:
        with runtime.load(runtime_name, data, where.inputs[0], indices, extra_inputs=where.inputs[1:],
                          reset_key=portable.RESET_KEY if network.state == "carry" else None,
                          **wiring) as interpreter:
            report.runtimes.append({"name": runtime_name, "version": interpreter.version})
            runs, states = [], [_zero_state(network, layer) for layer in network.layers]
            for x in given:
                fed = states if network.state == "io" else []
                values = interpreter.run(x, *fed)
                runs.append((fed, values))
                if network.state == "io":
                    states = values[len(where.outputs):len(where.outputs) + len(where.finals)]
            after_reset = None
            if network.state == "carry":
                interpreter.reset()
                after_reset = interpreter.run(given[0])[:len(where.outputs)]
    except (RuntimeError, ValueError) as exc:
        message = " ".join(str(exc).split())
        if not isinstance(exc, runtime.IsolationError):
            message = f"the interpreter refused the model: {message}"
        return [Check("runtime", False, message, runtime=runtime_name)]

    worst, problems, previous = 0.0, [], None
    outputs_count = len(where.outputs) + len(where.finals)
    for k, (x, (fed, values)) in enumerate(zip(given, runs)):
        read = dict(zip(reads, values[outputs_count:]))
        try:
            starts = _starts(network, plan, fed, previous, where, read, k)
            ratio, problem = _check_invoke(network, plan, where, x, read, starts, values[:outputs_count])
        except MALFORMED as exc:  # values of shapes no step computes
            ratio, problem = 0.0, malformed(exc)
        worst = max(worst, ratio)
        if problem:
            problems.append(f"invoke {k + 1}: {problem}")
        previous = read
    identical = True
    if after_reset is not None:
        identical = all(np.array_equal(a, b) for a, b in zip(after_reset, runs[0][1][:len(where.outputs)]))
        if not identical:
            problems.append(f"after the '{portable.RESET_KEY}' signature the first invoke gives other outputs")
    try:
        error = _free_run_error(network, xs, [v[:len(where.outputs)] for _, v in runs], plan, float_weights)
    except ValueError as exc:
        error, problems = "not measured", problems + [" ".join(str(exc).split())]
    carried = {"carry": "the state carried by the model", "io": "the final states fed back",
               "zero": "each invoke from zeros"}[network.state]
    detail = (f"{len(xs)} invokes ({carried}{', then reset' if after_reset is not None else ''}): every step of "
              f"every op recomputed from the interpreter's own integer inputs to it, worst {worst:.2f} of its "
              f"quantization-step bound; free-running, the outputs are {error}")
    if problems:
        return [Check("int8.steps", False, f"{'; '.join(problems[:2])}; {detail}", runtime=runtime_name)]
    return [Check("int8.steps", True, detail, runtime=runtime_name)]


def _zero_state(network: Network, layer) -> np.ndarray:
    shape = (network.batch_size, layer.weights.state_width)
    if network.int8.int8_io:
        return np.full(shape, network.int8.layers[layer.name].state.zero_point, np.int8)
    return np.zeros(shape, np.float32)


def _starts(network, plan, fed, previous, where, read, k) -> list[np.ndarray]:
    """Each direction's state before its first step, as the model should have it (real values)."""
    starts = []
    for d, layer in enumerate(network.layers):
        fmt = plan.layers[layer.name].state
        if network.state == "io":
            value = fed[d]
            starts.append(quant.dequantize_values(value, fmt) if value.dtype == np.int8 else
                          quant.dequantize_values(quant.quantize_values(value, fmt), fmt))
        elif network.state == "carry" and previous is not None:
            steps = where.steps[layer.name]
            last = where.final_states.get(layer.name, steps[0] if backward(network, layer) else steps[-1])
            starts.append(quant.dequantize_values(previous[last], fmt))
        else:
            starts.append(np.zeros((network.batch_size, layer.weights.state_width)))
    return starts


def backward(network: Network, layer) -> bool:
    return any(isinstance(stage, tuple) and stage[1] is layer for stage in network.stages)


def clamp(values: np.ndarray, fmt: Int8Format) -> np.ndarray:
    return np.clip(values, *quant.representable(fmt))


def _check_invoke(network, plan, where, x, read, starts, outputs) -> tuple[float, str | None]:
    """The worst error / bound over every op of one invoke, and what failed first (None: nothing)."""
    worst, problem = 0.0, None

    def judge(what: str, got: np.ndarray, expected: np.ndarray, bound: float) -> None:
        nonlocal worst, problem
        error = float(np.max(np.abs(got - expected), initial=0.0))
        worst = max(worst, error / bound)
        if not error <= bound and problem is None:
            problem = f"{what} off by {error:.4g} (bound {bound:.4g})"

    xq = read[where.quantized_input]
    source = quant.dequantize_values(xq, plan.input)
    if not plan.int8_io:
        judge("QUANTIZE of the input", source, clamp(x.astype(np.float64), plan.input), plan.input.scale)
    source = np.swapaxes(source, 0, 1) if network.time_major else source  # batch-major from here
    k, last_states, ends = 0, [], []
    for index, stage in enumerate(network.stages):
        outputs_of_stage = []
        for d, layer in enumerate(stage_layers(stage)):
            f = plan.layers[layer.name]
            h = np.stack([quant.dequantize_values(read[i], f.state) for i in where.steps[layer.name]], axis=1)
            if layer.name in where.final_states:  # the whole state its last step leaves ([h | c])
                last_states.append(quant.dequantize_values(read[where.final_states[layer.name]], f.state))
            else:
                last_states.append(h[:, 0] if d == 1 else h[:, -1])  # where a backward direction ends
            check = kind(layer.kind).int8_check()
            if check is not None:  # a kind's steps, restated from its own equations (verification/int8_<kind>.py)
                check.judge_steps(network, layer, where, read, source, starts[k], judge)
                outputs_of_stage.append(h)
                k += 1
                continue
            w, r, b = (a.astype(np.float64) for a in layer.weights.arrays())
            projection = clamp(source @ w.T + b, f.projection)
            order = range(network.time_steps - 1, -1, -1) if d == 1 else range(network.time_steps)
            previous = np.empty_like(h)
            prior = starts[k]
            for t in order:
                previous[:, t] = prior
                prior = h[:, t]
            recurrent = clamp(previous @ r.T, f.recurrent)
            summed = clamp(reference.activate(projection + recurrent, layer.activation)
                            if layer.activation != Activation.TANH else projection + recurrent, f.sum)
            if layer.activation == Activation.TANH:
                expected = clamp(np.tanh(summed), f.state)
                bound = 2 * f.state.scale + f.sum.scale + f.projection.scale + f.recurrent.scale
            else:
                expected = summed
                bound = f.sum.scale + f.projection.scale + f.recurrent.scale
            judge(f"layer '{layer.name}'", h, expected, bound)
            outputs_of_stage.append(h)
            k += 1
        final = index == len(network.stages) - 1
        if final and network.last_step:
            outputs_of_stage = [o[:, 0] if d == 1 else o[:, -1] for d, o in enumerate(outputs_of_stage)]
        if len(outputs_of_stage) == 2 and (network.merge or not final):
            outputs_of_stage = [np.concatenate(outputs_of_stage, axis=-1)]
        source, ends = outputs_of_stage[0], outputs_of_stage
    for dense in network.head:
        fc, follower = where.dense[dense.name]
        f = plan.dense[dense.name]
        got = quant.dequantize_values(read[fc], f.output).reshape(*source.shape[:-1], dense.units)
        pre = source @ dense.weights.T.astype(np.float64) + dense.bias
        if dense.activation in ("relu", "relu6"):
            pre = reference.activate(pre, Activation.RELU if dense.activation == "relu" else Activation.RELU6)
        judge(f"Dense '{dense.name}'", got, clamp(pre, f.output), f.output.scale)
        if follower is not None:
            fixed = _FIXED_BY_ACTIVATION[dense.activation]
            activated = quant.dequantize_values(read[follower], fixed).reshape(got.shape)
            expected = {"tanh": np.tanh, "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
                        "softmax": lambda z: reference.softmax(z, beta=1.0)[0]}[dense.activation](got)
            judge(f"Dense '{dense.name}' {dense.activation}", activated, clamp(expected, fixed), 2 * fixed.scale)
            got = activated
        source, ends = got, [got]
    # The outputs: what the values checked above assemble to, as the network orders steps, directions and layers
    # (the last step, [fw | bw], the Dense layers; then each direction's final state), dequantized exactly
    wanted = [np.swapaxes(e, 0, 1) if network.time_major and e.ndim == 3 else e for e in ends]
    if network.state == "io":
        wanted += last_states
    for index, value, want in zip(where.outputs + where.finals, outputs, wanted):
        q = where.graph.tensors[index].quantization
        shown = quant.dequantize_values(value, Int8Format(q.scale[0], q.zero_point[0])) \
            if value.dtype in (np.int8, np.int16) else np.asarray(value, np.float64)
        if shown.size != want.size:
            judge(f"output '{where.graph.tensors[index].name}'", np.array([np.inf]), np.array([0.0]), 1.0)
            continue
        judge(f"output '{where.graph.tensors[index].name}'", shown.reshape(want.shape), want,
              1e-6 * (1 + float(np.max(np.abs(want), initial=0))))
    return worst, problem


def _free_run_error(network, xs, runs, plan, float_weights) -> str:
    """The outputs' error against the float64 reference on the dequantized weights (and the float weights)."""
    errors, float_errors, states, float_states = [], [], None, None
    float_network = None
    if network.takes(float_weights):  # else weights.match says they are not this model's
        from dataclasses import replace

        float_network = replace(network, int8=None, stages=_with_weights(network, float_weights))
    for x, outputs in zip(xs, runs):
        expected, finals = reference.run_network(network, x, states)
        states = finals if network.state != "zero" else None
        got = list(outputs)
        errors.append(_errors(network, got, expected))
        if float_network is not None:
            expected, finals = reference.run_network(float_network, x, float_states)
            float_states = finals if network.state != "zero" else None
            float_errors.append(_errors(network, got, expected))
    text = _summary(errors) + " of the float64 reference on the dequantized weights"
    if float_errors:
        text += f", {_summary(float_errors)} of the float model (--weights)"
    return text


def _errors(network, got, expected) -> np.ndarray:
    parts = []
    for g, e in zip(got, expected):
        if g.size != e.size:  # as data.errors: the runtime sized an output from changed constants
            raise ValueError(f"the model's output has {g.size} values where its network gives {e.size}")
        if g.dtype == np.int8:  # an int8 interface: the output's own format
            fmt = _output_format(network)
            g = quant.dequantize_values(g, fmt)
        parts.append(np.abs(g.astype(np.float64) - e).ravel())
    return np.concatenate(parts)


def _output_format(network) -> Int8Format:
    plan = network.int8
    if network.head:
        last = network.head[-1]
        return _FIXED_BY_ACTIVATION.get(last.activation, plan.dense[last.name].output)
    return plan.layers[stage_layers(network.stages[-1])[0].name].state


def _summary(errors: list[np.ndarray]) -> str:
    every = np.concatenate(errors)
    return f"within max {every.max():.4f} (mean {every.mean():.4f})"


def _with_weights(network, weights) -> list:
    from dataclasses import replace

    given = iter(weights)
    return [tuple(replace(layer, weights=next(given)) for layer in stage) if isinstance(stage, tuple)
            else replace(stage, weights=next(given)) for stage in network.stages]


# How far (in levels) a weight rounded against its inputs (quantization.gptq_rounded: a fused LSTM's) may sit from its
# nearest level: measured, 1 for about a quarter of them, 2 for a few in a thousand
GPTQ_LEVELS = 4


def weights_match(network: Network, given: list) -> Check:
    """--weights against a full-int8 model: each given float weight quantized as `build` quantizes it (per channel,
    at the model's scales; the bias at its int32 scale) must give the model's int8 values. A fused LSTM's W and R
    are rounded against the calibration data, which verify does not have: there, each gate's scale must be the one
    its float weights give (max |w| / 127) and each int8 value within GPTQ_LEVELS of the given weight's nearest."""
    from ..lowering import lowering

    plan, formats = network.int8, quant.input_formats(network)
    against_data = lowering(network.lowering).int8_weight_scales == "per-tensor"
    for layer, weights in zip(network.layers, given):
        f = plan.layers[layer.name]
        if weights is None or getattr(weights, "kind", "rnn") != layer.kind or (
                weights.num_units, weights.input_size) != (layer.weights.num_units, layer.weights.input_size):
            return Check("weights.match", False, f"layer '{layer.name}': the given weights have another kind or "
                                                 "shape")
        if weights.roles().keys() != layer.weights.roles().keys():
            return Check("weights.match", False, f"layer '{layer.name}': the given weights have other roles "
                                                 f"({', '.join(weights.roles())})")
        # W and R per channel at the model's scales; each bias at its int32 scale: the input's (b) or the state's
        # (a GRU's recurrent bias) times its weights' (restated from the kernels' rule, as int8.formats checks it)
        scales = f.scales
        pairs = ((weights.input_weights, layer.weights.input_weights, scales["input_weights"]),
                 (weights.recurrent_weights, layer.weights.recurrent_weights, scales["recurrent_weights"]))
        biases = [(weights.bias, layer.weights.bias, quant.bias_scales(formats[layer.name].scale,
                                                                         scales["input_weights"]))]
        if layer.weights.roles().get("recurrent_bias") is not None:
            biases.append((weights.recurrent_bias, layer.weights.recurrent_bias,
                           quant.bias_scales(f.state.scale, scales["recurrent_weights"])))
        if against_data:
            gates = kind(layer.kind).gates
            same = all(np.array_equal(quant.per_gate_tensor(g, gates)[1], s) and np.max(np.abs(
                np.clip(np.rint(g / s[:, None].astype(np.float64)), -127, 127) - np.rint(
                    m / s[:, None].astype(np.float64))), initial=0) <= GPTQ_LEVELS for g, m, s in pairs)
        else:
            same = all(np.array_equal(np.clip(np.rint(g / s[:, None].astype(np.float64)), -127, 127),
                                      np.rint(m / s[:, None].astype(np.float64))) for g, m, s in pairs)
        # (int64 beside an int16 input, as the 16x8 kernel adds it)
        dtype = quant.bias_type(formats[layer.name])
        same = same and all(np.array_equal(quant.bias_int32(g, scales, dtype), quant.bias_int32(m, scales, dtype))
                            for g, m, scales in biases)
        if not same:
            return Check("weights.match", False, f"layer '{layer.name}': the given weights do not quantize to the "
                                                 "model's int8 values at its scales")
    return Check("weights.match", True, f"the given float weights of {len(given)} direction(s) quantize to the "
                                        "model's int8 weights and integer biases at its scales"
                 + (f" (each W and R value within {GPTQ_LEVELS} levels of the nearest: rounded against the "
                    "calibration data)" if against_data else ""))
