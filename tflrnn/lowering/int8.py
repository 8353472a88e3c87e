"""The portable lowering in full-integer int8 (`Network.int8`): every op of the recurrence and of the head on int8.

Per direction of each layer (the steps unrolled; `quantization.py` gives every format):
    X = RESHAPE(x, [B*T, I])                 (once per layer input: TFLite Micro's per-channel FULLY_CONNECTED
    P = RESHAPE(FULLY_CONNECTED(X, W, b))     takes a rank-2 output) W int8 per channel, b int32 at s_x * s_w
                                             (the first layer's X int16: P is FULLY_CONNECTED's int16, b int64,
                                             QUANTIZEd to P's int8 format)
    P_0 .. P_{T-1} = UNPACK(P, time axis)
    r_t = FULLY_CONNECTED(h_{t-1}, R)        R int8 per channel, no bias
    z_t = ADD(P_t, r_t)                      relu, relu6, relu_n1_to_1 fused (the int8 ADD applies them by clamping)
    h_t = TANH(z_t)                          (1/128, 0), as the int8 kernels write it; else h_t = z_t
    Y = PACK(h_0 .. h_{T-1}, time axis)
Dense layers: FULLY_CONNECTED on rank 2 (a sequence reshaped around it), TANH / LOGISTIC / SOFTMAX after it.
The state (`Network.state`) is as in the float lowering, in int8: a resource variable zeroed to the state's zero
point, or an input and output. The signature's tensors are float with QUANTIZE after the inputs (the sequence to
int16: its rounding in int8 was the largest single source of error) and DEQUANTIZE before the outputs, or int8
themselves (`int8_io`).
"""

from __future__ import annotations

import numpy as np

from .. import quantization as quant
from ..cells import kind_of
from ..model import (Activation, AddOptions, BuiltinOperator, CallOnceOptions, ConcatenationOptions,
                     FullyConnectedOptions, Model, Operator, PackOptions, Quantization, SoftmaxOptions, Tensor,
                     UnpackOptions, VarHandleOptions)
from ..network import Int8Dense, Int8Format, Int8Layer, Int8Plan, Network, base_name
from .common import _FUSED_IN_ADD, DENSE_OPS, GraphWalk, Tensors

FC_VERSION, ADD_VERSION, INT8_VERSION = 4, 2, 2  # op_version.cc: int8 FULLY_CONNECTED 4; ADD, TANH, ... 2
# op_version.cc: a 16x8 FULLY_CONNECTED (int16 x, int8 weights, int64 bias, no keep_num_dims) matches none of its
# rules and is 1; QUANTIZE to int16 is 2, to int8 (from float or int16) 1
FC16_VERSION, QUANTIZE_VERSIONS = 1, {8: 1, 16: 2}
DEQUANTIZE_VERSIONS = {"int8": 2, "int16": 3}
CONCATENATION_VERSIONS = {"int8": 2, "int16": 3, "float32": 1}


def per_tensor(fmt: Int8Format) -> Quantization:
    return Quantization((fmt.scale,), (fmt.zero_point,))


def per_channel(scales: np.ndarray) -> Quantization:
    return Quantization(tuple(float(s) for s in np.asarray(scales, np.float32)), (0,) * len(scales), 0)


def lower(network: Network) -> Model:
    why = quant.refusal(network)
    if why:
        from ..errors import ConfigError

        raise ConfigError(why)
    return _Int8Graph(network).model()


class _Int8Graph(GraphWalk):
    """The full-int8 serving graph being written (portable._Graph is the float one): its tensors and ops, the
    interface's QUANTIZE / DEQUANTIZE, the states. A cell kind's int8 steps (lowering/gru.py) add to it through these
    attributes and methods."""

    def __init__(self, network: Network):
        self.network = network
        self.plan, self.time_major, self.batch, self.steps = (network.int8, network.time_major, network.batch_size,
                                                              network.time_steps)
        self.time_axis = 0 if self.time_major else 1
        self.lead = (self.steps, self.batch) if self.time_major else (self.batch, self.steps)
        self.rows = self.batch * self.steps
        self.tensors, self.operators = Tensors(), []

        # float_formats: a loop's input and output sequences are float (LiteRT has no int16 GATHER to read them
        # by): their values on the int16 grid of a format, QUANTIZEd (exactly) where an int16 op reads them
        self.float_formats: dict[int, Int8Format] = {}
        self.x, self.xq = self.edge_in(f"{base_name(network.stages[0])}/input", (*self.lead, network.input_size),
                                       self.plan.input)
        if network.loop:
            # A loop GATHERs its steps from a float sequence (lowering/lstm.py): the input QUANTIZEd whole, as the
            # unrolled steps take it, then DEQUANTIZEd (exact) for the loop, whose QUANTIZE of each step is then
            # exact too. (LiteRT's QUANTIZE rounds x / s one value at a time but x * (1 / s) eight at a time: the
            # loop's steps of a few values would round apart from the whole sequence.)
            on_grid = self.tensors.add(Tensor(f"{self.tensors[self.xq].name}/float", self.tensors[self.xq].shape))
            self.op(BuiltinOperator.DEQUANTIZE, [self.xq], [on_grid], version=DEQUANTIZE_VERSIONS["int16"])
            self.xq = on_grid
            self.float_formats[on_grid] = self.plan.input
        self.inputs, self.state_inputs, self.state_outputs, self.handles = [self.x], [], [], []
        self.loops = []  # the loop subgraphs (condition, body) of a kind whose int8 steps loop (an LSTM's)
        self.last_outputs = {}  # final state -> the last step's output, where the state holds more (an LSTM's)
        self.first_loop_subgraph = 3 if self.network.state == "carry" else 1
        if self.network.state == "carry" and self.resource_state:
            self.op(BuiltinOperator.CALL_ONCE, [], [], options=CallOnceOptions(init_subgraph_index=1))

    def int8(self, name: str, shape, fmt: Int8Format) -> int:
        return self.tensors.add(Tensor(name, tuple(shape), "int8", quantization=per_tensor(fmt)))

    def quantized(self, name: str, shape, fmt: Int8Format) -> int:
        """A value in its format: int8, or int16 (the input where the interface is float)."""
        return self.tensors.add(Tensor(name, tuple(shape), f"int{fmt.bits}", quantization=per_tensor(fmt)))

    def op(self, code, inputs, outputs, version=1, options=None):
        self.operators.append(Operator(code, list(inputs), list(outputs), version=version, options=options))

    def reshaped(self, index: int, shape, name: str) -> int:
        source = self.tensors[index]
        target = self.tensors.add(Tensor(f"{name}/shape", (len(shape),), "int32", data=np.asarray(shape, np.int32)))
        out = self.tensors.add(Tensor(name, tuple(shape), source.dtype, quantization=source.quantization))
        self.op(BuiltinOperator.RESHAPE, [index, target], [out])
        return out

    def edge_in(self, name: str, shape, fmt: Int8Format) -> tuple[int, int]:
        """A signature input: (the tensor the caller sets, its int8 value in the graph)."""
        if self.plan.int8_io:
            index = self.int8(name, shape, fmt)
            return index, index
        given = self.tensors.add(Tensor(name, tuple(shape)))
        q = self.quantized(f"{name}/int{fmt.bits}", shape, fmt)
        self.op(BuiltinOperator.QUANTIZE, [given], [q], version=QUANTIZE_VERSIONS[fmt.bits])
        return given, q

    def edge_out(self, index: int, name: str | None = None) -> int:
        """A signature output of an int8 value: its DEQUANTIZE (a float copy), or the value itself in int8 (a loop's
        float output as it is)."""
        source = self.tensors[index]
        if source.dtype == "float32":
            return index
        if self.plan.int8_io:
            return self.reshaped(index, source.shape, name) if name else index
        out = self.tensors.add(Tensor(name or f"{source.name}/float", source.shape))
        self.op(BuiltinOperator.DEQUANTIZE, [index], [out], version=DEQUANTIZE_VERSIONS[source.dtype])
        return out

    def fully_connected(self, source: int, weights: np.ndarray, scales: np.ndarray, bias: np.ndarray | None,
                        out_name: str, fmt: Int8Format, weights_name: str, activation=Activation.NONE) -> int:
        """int8 FULLY_CONNECTED on a rank-2 input: per-channel weights, an int32 bias at input x weight scale."""
        w = self.tensors.add(Tensor(weights_name, weights.shape, "int8", data=_int8_weights(weights, scales),
                                    quantization=per_channel(scales)))
        b = -1 if bias is None else self.bias(source, bias, scales, f"{weights_name.rpartition('/')[0]}/bias")
        return self.project(source, w, b, out_name, fmt, activation)

    def bias(self, source: int, bias: np.ndarray, scales: np.ndarray, name: str) -> int:
        """A FULLY_CONNECTED's bias on `source`: int32 at input scale x weight scale per channel (int64 on int16)."""
        input_format = value_format(self.tensors[source])
        bias_scales = quant.bias_scales(input_format.scale, scales)
        dtype = quant.bias_type(input_format)
        return self.tensors.add(Tensor(name, bias.shape, np.dtype(dtype).name,
                                       data=quant.bias_int32(bias, bias_scales, dtype),
                                       quantization=per_channel(bias_scales)))

    def project(self, source: int, weights: int, bias: int, out_name: str, fmt: Int8Format,
                activation=Activation.NONE) -> int:
        """FULLY_CONNECTED of rows by int8 weights into `fmt`. On an int16 input, TFLite's 16x8 kernel: its int16
        output, `fmt` itself when that is int16 (an LSTM's values), else over what `fmt` holds, QUANTIZEd to it."""
        x = self.tensors[source]
        shape = (x.shape[0], self.tensors[weights].shape[0])
        options = FullyConnectedOptions(activation=activation)
        if fmt.bits == 16:
            out = self.quantized(out_name, shape, fmt)
            self.op(BuiltinOperator.FULLY_CONNECTED, [source, weights, bias], [out], version=FC16_VERSION,
                    options=options)
            return out
        if x.dtype != "int16":
            out = self.int8(out_name, shape, fmt)
            self.op(BuiltinOperator.FULLY_CONNECTED, [source, weights, bias], [out], version=FC_VERSION,
                    options=options)
            return out
        holds = max(map(abs, quant.representable(fmt)))  # beyond it, the QUANTIZE to fmt clips anyway
        wide = self.quantized(f"{out_name}/int16", shape, quant.int16_format(holds))
        self.op(BuiltinOperator.FULLY_CONNECTED, [source, weights, bias], [wide], version=FC16_VERSION,
                options=options)
        out = self.int8(out_name, shape, fmt)
        self.op(BuiltinOperator.QUANTIZE, [wide], [out], version=QUANTIZE_VERSIONS[8])
        return out

    def initial_state(self, name: str, units: int, fmt: Int8Format) -> tuple[int | None, int | None]:
        if self.network.state == "zero":
            return None, None
        if self.network.state == "io":
            given, q = self.edge_in(f"{name}/state", (self.batch, units), fmt)
            self.state_inputs.append(given)
            return q, None
        handle = self.tensors.add(Tensor(f"{name}/state_handle", (), "resource"))
        zeros = np.full((self.batch, units), fmt.zero_point, np.int8 if fmt.bits == 8 else np.int16)
        self.handles.append((f"{name}/hidden_state", zeros, per_tensor(fmt)))
        self.op(BuiltinOperator.VAR_HANDLE, [], [handle], options=VarHandleOptions(shared_name=self.handles[-1][0]))
        read = self.quantized(f"{name}/state", (self.batch, units), fmt)
        self.op(BuiltinOperator.READ_VARIABLE, [handle], [read])
        return read, handle

    def keep_state(self, h: int, handle: int | None) -> None:
        if self.network.state == "io":
            self.state_outputs.append(h)
        elif self.network.state == "carry":
            self.op(BuiltinOperator.ASSIGN_VARIABLE, [handle, h], [])

    def direction(self, layer, flat: int, backward: bool, sequence: bool):
        """One direction over the stage's input rows: (its PACKed output or None, its final state)."""
        if layer.kind != "rnn":  # another kind writes its own steps (cells/)
            return kind_of(layer.weights).portable_steps().write_int8_direction(self, layer, flat, backward,
                                                                                sequence)
        name, units, f = layer.name, layer.weights.num_units, self.plan.layers[layer.name]
        w = layer.weights
        projected = self.fully_connected(flat, w.input_weights, f.input_scales, w.bias, f"{name}/projection_rows",
                                         f.projection, f"{name}/input_weights")
        projection = self.reshaped(projected, (*self.lead, units), f"{name}/projection")
        first = len(self.tensors)
        self.tensors.add(*(Tensor(f"{name}/x{t}", (self.batch, units), "int8", quantization=per_tensor(f.projection))
                           for t in range(self.steps)))
        self.op(BuiltinOperator.UNPACK, [projection], range(first, first + self.steps), version=INT8_VERSION,
                options=UnpackOptions(num=self.steps, axis=self.time_axis))
        h, handle = self.initial_state(name, units, f.state)
        fused = layer.activation if layer.activation in _FUSED_IN_ADD else Activation.NONE
        r_weights = self.tensors.add(Tensor(f"{name}/recurrent_weights", (units, units), "int8",
                                            data=_int8_weights(w.recurrent_weights, f.recurrent_scales),
                                            quantization=per_channel(f.recurrent_scales)))
        outputs = [None] * self.steps
        for t in (range(self.steps - 1, -1, -1) if backward else range(self.steps)):
            step = first + t
            if h is not None:
                recurrent = self.int8(f"{name}/r{t}", (self.batch, units), f.recurrent)
                self.op(BuiltinOperator.FULLY_CONNECTED, [h, r_weights, -1], [recurrent], version=FC_VERSION,
                        options=FullyConnectedOptions())
            else:  # the zero state's first step adds zeros: the sum's format (and a relu-like activation) still hold
                recurrent = self.tensors.add(Tensor(f"{name}/zeros", (self.batch, units), "int8",
                                                    data=np.full((self.batch, units), f.recurrent.zero_point, np.int8),
                                                    quantization=per_tensor(f.recurrent)))
            summed = self.int8(f"{name}/z{t}", (self.batch, units), f.sum)
            self.op(BuiltinOperator.ADD, [step, recurrent], [summed], ADD_VERSION, AddOptions(activation=fused))
            if layer.activation == Activation.TANH:
                h = self.int8(f"{name}/h{t}", (self.batch, units), f.state)
                self.op(BuiltinOperator.TANH, [summed], [h], INT8_VERSION)
            else:
                h = summed
            outputs[t] = h
        output = None
        if sequence:
            output = self.int8(f"{name}/output", (*self.lead, units), f.state)
            self.op(BuiltinOperator.PACK, outputs, [output], INT8_VERSION,
                    PackOptions(values_count=self.steps, axis=self.time_axis))
        if self.network.state == "io":
            self.state_outputs.append(h)
        elif self.network.state == "carry":
            self.op(BuiltinOperator.ASSIGN_VARIABLE, [handle, h], [])
        return output, h

    # common.GraphWalk.model walks the stages, the head and the signatures; these hooks make it int8.
    def first_source(self) -> int:
        return self.xq

    def integer(self, source: int) -> int:
        """`source` as the integer value an int op reads: a loop's float output QUANTIZEd back to its int16 format
        (its values are on that grid: exact), anything else as it is."""
        fmt = self.float_formats.get(source)
        if fmt is None:
            return source
        q = self.quantized(f"{self.tensors[source].name}/int{fmt.bits}", self.tensors[source].shape, fmt)
        self.op(BuiltinOperator.QUANTIZE, [source], [q], version=QUANTIZE_VERSIONS[fmt.bits])
        return q

    def stage_source(self, source: int, stage) -> int:
        """The stage's input as rows [B*T, width]: TFLite Micro's per-channel FULLY_CONNECTED takes rank 2. A loop
        reads its input sequence, float, step by step."""
        if self.network.loop:
            return source
        source = self.integer(source)
        return self.reshaped(source, (self.rows, self.tensors[source].shape[-1]), f"{base_name(stage)}/input_rows")

    def write_direction(self, layer, source: int, backward: bool, suffix: str, sequence: bool):
        return self.direction(layer, source, backward, sequence)  # (no reused cells: quantization.refusal)

    def merged(self, stage, ends: list[int], last_only: bool) -> int:
        shape = (*self.tensors[ends[0]].shape[:-1], sum(self.tensors[i].shape[-1] for i in ends))
        first = self.tensors[ends[0]]
        merged = self.tensors.add(Tensor(f"{base_name(stage)}/{'last_step' if last_only else 'output'}", shape,
                                         first.dtype, quantization=first.quantization))
        self.op(BuiltinOperator.CONCATENATION, ends, [merged], CONCATENATION_VERSIONS[first.dtype],
                ConcatenationOptions(axis=-1))
        if ends[0] in self.float_formats:  # two loops' float outputs (both directions' state in one format)
            self.float_formats[merged] = self.float_formats[ends[0]]
        return merged

    def write_head(self, ends: list[int]) -> list[int]:
        """Dense layers in int8: FULLY_CONNECTED on rows, its activation op at the kernel's fixed format."""
        source = self.integer(ends[0]) if self.network.head else ends[0]
        for dense in self.network.head:
            shape = self.tensors[source].shape
            flat = source if len(shape) == 2 else self.reshaped(source, (self.rows, shape[-1]),
                                                                f"{dense.name}/input_rows")
            fused, after = DENSE_OPS[dense.activation]
            out = self.fully_connected(flat, dense.weights, self.plan.dense[dense.name].kernel_scales, dense.bias,
                                       f"{dense.name}/output", self.plan.dense[dense.name].output,
                                       f"{dense.name}/kernel", fused)
            if after is not None:
                activated = self.int8(f"{dense.name}/{dense.activation}", self.tensors[out].shape,
                                      quant.FIXED_OUTPUTS[dense.activation])
                self.op(after, [out], [activated], INT8_VERSION,
                        SoftmaxOptions(beta=1.0) if after == BuiltinOperator.SOFTMAX else None)
                out = activated
            source = out if len(shape) == 2 else self.reshaped(out, (*shape[:-1], dense.units),
                                                               f"{dense.name}/sequence")
            ends = [source]
        return ends

    def signature_output(self, index: int) -> int:
        return self.edge_out(index)

    def state_output(self, state_in: int, state_out: int, named: dict) -> int:
        # the last step may be the final state, already an output: a copy of its own, as runtimes name outputs
        copy = self.plan.int8_io and any(self.tensors[i] is self.tensors[state_out] for i in named.values())
        return self.edge_out(state_out, f"{self.tensors[state_in].name}/final"
                             if copy or not self.plan.int8_io else None)


def _int8_weights(weights: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """The int8 values of weights already on their grid (dequantized): round(w / s_c) gives them back exactly."""
    return np.clip(np.rint(weights / np.asarray(scales, np.float64)[:, None]), -127, 127).astype(np.int8)


def recover_plan(model: Model, network: Network) -> Int8Plan:
    """The int8 formats of a model `lower` wrote (read from its tensors by the names it gives them), for the network
    `portable.recover` read from its ops."""
    from ..errors import ModelFormatError

    graph = model.subgraphs[0]
    by_name = {t.name: t for t in graph.tensors}
    if network.loop:  # a loop body's step values, named <layer>/<stem> (lowering/lstm.py): the first of each name
        for body in model.subgraphs[1:]:
            for t in body.tensors:
                by_name.setdefault(t.name, t)

    def tensor(name: str, channels: int | None = None) -> Tensor:
        t = by_name.get(name)
        q = None if t is None else t.quantization
        count = 1 if channels is None else channels
        if t is None or q is None or len(q.scale) != count or len(q.zero_point) != count or \
                not all(np.isfinite(s) and s > 0 for s in q.scale):
            raise ModelFormatError(f"no quantized tensor '{name}' with {count} positive scale(s)")
        return t

    def fmt(name: str) -> Int8Format:
        return value_format(tensor(name))

    def scales(name: str, channels: int) -> np.ndarray:
        return np.asarray(tensor(name, channels).quantization.scale, np.float32)

    def any_step(name: str, role: str) -> str:
        # the first step's tensor <name>/<role><t> (t < T), else the loop body's <name>/<role>: found among the
        # names the graph has (T, read from a shape, may be anything)
        prefix = f"{name}/{role}"
        suffixes = (key[len(prefix):] for key in by_name if key.startswith(prefix))
        first = min((int(t) for t in suffixes if t.isdigit() and int(t) < network.time_steps), default=None)
        found = f"{prefix}{first}" if first is not None else prefix if prefix in by_name else None
        if found is None:
            raise ModelFormatError(f"layer '{name}' has no step tensor '{name}/{role}<t>'")
        return found

    x = graph.tensors[graph.inputs[0]]
    int8_io = x.dtype == "int8"
    layers = {}
    for layer in network.layers:
        name, units = layer.name, layer.weights.num_units
        if layer.kind != "rnn":
            layers[name] = kind_of(layer.weights).portable_steps().int8_plan(layer, fmt, scales, any_step)
            continue
        recurrent = fmt(f"{name}/zeros") if f"{name}/zeros" in by_name else fmt(any_step(name, "r"))
        summed = fmt(any_step(name, "z"))
        layers[name] = Int8Layer(fmt(f"{name}/projection_rows"), recurrent, summed,
                                 fmt(any_step(name, "h")) if layer.activation == Activation.TANH else summed,
                                 scales(f"{name}/input_weights", units), scales(f"{name}/recurrent_weights", units))
    dense = {d.name: Int8Dense(fmt(f"{d.name}/output"), scales(f"{d.name}/kernel", d.units)) for d in network.head}
    given = x.name if int8_io else f"{x.name}/int16" if f"{x.name}/int16" in by_name else f"{x.name}/int8"
    return Int8Plan(fmt(given), layers, dense, int8_io)


def value_format(t: Tensor) -> Int8Format:
    """The format of an int8 (or int16) value tensor; ModelFormatError without one scale and zero point."""
    from ..errors import ModelFormatError

    q = t.quantization
    if t.dtype not in ("int8", "int16") or q is None or len(q.scale) != 1 or len(q.zero_point) != 1 or \
            not (np.isfinite(q.scale[0]) and q.scale[0] > 0):
        raise ModelFormatError(f"tensor '{t.name}': an int8 or int16 value with one positive scale expected")
    return Int8Format(float(q.scale[0]), int(q.zero_point[0]), bits=16 if t.dtype == "int16" else 8)


def real_values(t: Tensor) -> np.ndarray | None:
    """A constant's values as the kernels compute with them: int8 weights and int32 (int64) biases dequantized per
    channel (float32), float32 as stored; None for anything else."""
    if t.data is None:
        return None
    if t.dtype == "float32":
        return t.data
    q = t.quantization
    if q is None or t.data.ndim not in (1, 2) or len(q.scale) != t.data.shape[0] or any(q.zero_point) or \
            q.quantized_dimension != 0 or not all(np.isfinite(s) and s > 0 for s in q.scale):
        return None
    if t.dtype == "int8" and t.data.ndim == 2:
        return quant.dequantized(t.data, np.asarray(q.scale, np.float32))
    if t.dtype in ("int32", "int64") and t.data.ndim == 1:
        return quant.dequantized_bias(t.data, np.asarray(q.scale, np.float32))
    return None
