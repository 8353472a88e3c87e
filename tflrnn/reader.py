"""TFLite flatbuffer bytes -> the model description of `model.py`, through the `tflite` package's reader classes.

Files come from other people, so every vector length and buffer range is checked against the file before use:
a hostile length is refused rather than looped over, and a bad offset becomes a `ModelFormatError` instead of an
IndexError deep inside the generated code.
"""

from __future__ import annotations

import struct

import flatbuffers
import numpy as np
import tflite as fb

from .errors import ModelFormatError
from .model import (
    ARRAY_TYPES,
    FILE_IDENTIFIER,
    TENSOR_TYPE_NAMES,
    AddOptions,
    MulOptions,
    SplitOptions,
    GatherOptions,
    SubOptions,
    BidirectionalSequenceLSTMOptions,
    BidirectionalSequenceRNNOptions,
    BuiltinOptions,
    CallOnceOptions,
    ConcatenationOptions,
    FullyConnectedOptions,
    Model,
    Operator,
    PackOptions,
    Quantization,
    SequenceRNNOptions,
    Signature,
    SoftmaxOptions,
    StridedSliceOptions,
    Subgraph,
    Tensor,
    UnidirectionalSequenceLSTMOptions,
    UnpackOptions,
    ShapeOptions,
    VarHandleOptions,
    WhileOptions,
)

_MIN_FILE_BYTES = 8  # root offset + identifier


def read(data: bytes) -> Model:
    data = bytes(data)
    if len(data) < _MIN_FILE_BYTES:
        raise ModelFormatError(f"not a TFLite model: the file has {len(data)} bytes")
    if data[4:8] != FILE_IDENTIFIER:
        raise ModelFormatError(
            f"not a TFLite model: file identifier is {data[4:8]!r}, expected {FILE_IDENTIFIER!r}"
        )
    try:
        return _Reader(data).model()
    except (struct.error, IndexError, ValueError, OverflowError, TypeError) as exc:
        # The generated readers fail deep inside on a bad offset; the details mean nothing to a user.
        raise ModelFormatError(
            f"corrupt or truncated TFLite model: an offset or length points outside the {len(data)}-byte file"
        ) from exc


class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        # Vector entries may all point at one table, so each vector fitting in the file is not enough: the whole
        # read visits at most one element per 4 bytes of file (every entry, and every table it names, takes at
        # least that), plus slack for the small shared shape vectors a writer may deduplicate.
        self.budget = len(data) // 4 + 64
        root = struct.unpack_from("<I", data, 0)[0]
        if root >= len(data):
            raise ModelFormatError(f"corrupt TFLite model: root table offset {root} is past the end of the file")
        self.fb_model = fb.Model.GetRootAs(data, 0)

    def model(self) -> Model:
        m = self.fb_model
        buffers = [self._buffer(m.Buffers(i)) for i in self._range(m.BuffersLength(), "buffers")]
        opcodes = [m.OperatorCodes(i) for i in self._range(m.OperatorCodesLength(), "operator codes")]
        subgraphs = [
            self._subgraph(m.Subgraphs(i), buffers, opcodes) for i in self._range(m.SubgraphsLength(), "subgraphs")
        ]
        signatures = [self._signature(m.SignatureDefs(i)) for i in self._range(m.SignatureDefsLength(), "signatures")]
        metadata = {}
        for i in self._range(m.MetadataLength(), "metadata"):
            entry = m.Metadata(i)
            index = entry.Buffer()
            if index >= len(buffers):
                raise ModelFormatError(f"corrupt TFLite model: metadata names buffer {index} of {len(buffers)}")
            raw = buffers[index]
            metadata[_text(entry.Name())] = b"" if raw is None else raw.tobytes()
        return Model(
            subgraphs=subgraphs,
            signatures=signatures,
            metadata=metadata,
            description=_text(m.Description()),
            version=m.Version(),
        )

    def _range(self, length: int, what: str) -> range:
        # Each element takes at least 4 bytes: a longer vector cannot be in this file.
        if length * 4 > len(self.data):
            raise ModelFormatError(f"corrupt TFLite model: {what} vector claims {length} entries")
        self.budget -= length
        if self.budget < 0:
            raise ModelFormatError("corrupt TFLite model: its vectors refer to the same entries over and over")
        return range(length)

    def _buffer(self, buf) -> np.ndarray | None:
        offset, size = buf.Offset(), buf.Size()
        if offset > 1:  # data stored after the flatbuffer (models over 2 GiB)
            if offset + size > len(self.data):
                raise ModelFormatError(f"corrupt TFLite model: buffer at {offset}+{size} is past the end of the file")
            return np.frombuffer(self.data, dtype=np.uint8, count=size, offset=offset)
        if buf.DataLength() == 0:
            return None
        return buf.DataAsNumpy()

    def _subgraph(self, g, buffers, opcodes) -> Subgraph:
        tensors = [self._tensor(g.Tensors(i), buffers) for i in self._range(g.TensorsLength(), "tensors")]
        operators = [self._operator(g.Operators(i), opcodes) for i in self._range(g.OperatorsLength(), "operators")]
        return Subgraph(
            tensors=tensors,
            operators=operators,
            inputs=self._ints(g.InputsAsNumpy, g.InputsLength()),
            outputs=self._ints(g.OutputsAsNumpy, g.OutputsLength()),
            name=_text(g.Name()),
        )

    def _tensor(self, t, buffers) -> Tensor:
        name = _text(t.Name())
        shape = tuple(self._ints(t.ShapeAsNumpy, t.ShapeLength()))
        signature = tuple(self._ints(t.ShapeSignatureAsNumpy, t.ShapeSignatureLength())) or None
        dtype = TENSOR_TYPE_NAMES.get(t.Type(), f"type{t.Type()}")
        index = t.Buffer()
        if index >= len(buffers):
            raise ModelFormatError(f"corrupt TFLite model: tensor '{name}' names buffer {index} of {len(buffers)}")
        raw = buffers[index]
        data = None
        if raw is not None:
            if dtype not in ARRAY_TYPES or any(d < 0 for d in shape):
                data = raw  # kept as bytes: nothing here needs it typed
            else:
                expected = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
                if raw.size != expected:
                    raise ModelFormatError(
                        f"corrupt TFLite model: tensor '{name}' has shape {list(shape)} ({expected} bytes) "
                        f"but its buffer holds {raw.size} bytes"
                    )
                data = raw.view(np.dtype(dtype).newbyteorder("<")).reshape(shape)
        quantization = None
        q = t.Quantization()
        if q is not None and q.ScaleLength():
            scale = self._floats(q.ScaleAsNumpy, q.ScaleLength())
            zero_point = self._ints(q.ZeroPointAsNumpy, q.ZeroPointLength())
            quantization = Quantization(tuple(scale), tuple(zero_point), q.QuantizedDimension())
        return Tensor(
            name=name, shape=shape, dtype=dtype, data=data, is_variable=t.IsVariable(), shape_signature=signature,
            quantization=quantization,
        )

    def _operator(self, op, opcodes) -> Operator:
        index = op.OpcodeIndex()
        if index >= len(opcodes):
            raise ModelFormatError(f"corrupt TFLite model: operator names op code {index} of {len(opcodes)}")
        code = opcodes[index]
        options_type = op.BuiltinOptionsType()
        options = None
        known = _OPTIONS.get(options_type)
        table = op.BuiltinOptions() if known else None
        if table is not None:
            reader_class, describe = known
            parsed = reader_class()
            parsed.Init(table.Bytes, table.Pos)
            options = describe(parsed)
        return Operator(
            builtin_code=_raw_builtin_code(code),
            deprecated_builtin_code=code.DeprecatedBuiltinCode(),
            inputs=self._ints(op.InputsAsNumpy, op.InputsLength()),
            outputs=self._ints(op.OutputsAsNumpy, op.OutputsLength()),
            version=code.Version(),
            options=options,
            options_type=options_type,
            intermediates=self._ints(op.IntermediatesAsNumpy, op.IntermediatesLength()),
        )

    def _signature(self, s) -> Signature:
        def maps(get, length):
            return {_text(get(i).Name()): get(i).TensorIndex() for i in self._range(length, "signature tensors")}

        return Signature(
            key=_text(s.SignatureKey()),
            inputs=maps(s.Inputs, s.InputsLength()),
            outputs=maps(s.Outputs, s.OutputsLength()),
            subgraph=s.SubgraphIndex(),
        )

    def _floats(self, as_numpy, length: int) -> list[float]:
        self._range(length, "scale")
        return [float(v) for v in as_numpy()]

    def _ints(self, as_numpy, length: int) -> list[int]:
        self._range(length, "index")
        return [] if length == 0 else [int(v) for v in as_numpy()]


# The options this package understands: the generated reader class, and how to turn it into the description's.
_OPTIONS = {
    BuiltinOptions.SequenceRNNOptions: (fb.SequenceRNNOptions, lambda p: SequenceRNNOptions(
        time_major=p.TimeMajor(), activation=p.FusedActivationFunction(),
        asymmetric_quantize_inputs=p.AsymmetricQuantizeInputs())),
    BuiltinOptions.BidirectionalSequenceRNNOptions: (fb.BidirectionalSequenceRNNOptions, lambda p:
        BidirectionalSequenceRNNOptions(
            time_major=p.TimeMajor(), activation=p.FusedActivationFunction(), merge_outputs=p.MergeOutputs(),
            asymmetric_quantize_inputs=p.AsymmetricQuantizeInputs())),
    BuiltinOptions.UnidirectionalSequenceLSTMOptions: (fb.UnidirectionalSequenceLSTMOptions, lambda p:
        UnidirectionalSequenceLSTMOptions(
            activation=p.FusedActivationFunction(), cell_clip=p.CellClip(), proj_clip=p.ProjClip(),
            time_major=p.TimeMajor(), asymmetric_quantize_inputs=p.AsymmetricQuantizeInputs(),
            diagonal_recurrent_tensors=p.DiagonalRecurrentTensors())),
    BuiltinOptions.BidirectionalSequenceLSTMOptions: (fb.BidirectionalSequenceLSTMOptions, lambda p:
        BidirectionalSequenceLSTMOptions(
            activation=p.FusedActivationFunction(), cell_clip=p.CellClip(), proj_clip=p.ProjClip(),
            merge_outputs=p.MergeOutputs(), time_major=p.TimeMajor(),
            asymmetric_quantize_inputs=p.AsymmetricQuantizeInputs())),
    BuiltinOptions.FullyConnectedOptions: (fb.FullyConnectedOptions, lambda p: FullyConnectedOptions(
        activation=p.FusedActivationFunction(), weights_format=p.WeightsFormat(), keep_num_dims=p.KeepNumDims(),
        asymmetric_quantize_inputs=p.AsymmetricQuantizeInputs())),
    BuiltinOptions.SoftmaxOptions: (fb.SoftmaxOptions, lambda p: SoftmaxOptions(beta=p.Beta())),
    BuiltinOptions.ConcatenationOptions: (fb.ConcatenationOptions, lambda p: ConcatenationOptions(
        axis=p.Axis(), activation=p.FusedActivationFunction())),
    BuiltinOptions.StridedSliceOptions: (fb.StridedSliceOptions, lambda p: StridedSliceOptions(
        begin_mask=p.BeginMask(), end_mask=p.EndMask(), ellipsis_mask=p.EllipsisMask(),
        new_axis_mask=p.NewAxisMask(), shrink_axis_mask=p.ShrinkAxisMask())),
    BuiltinOptions.AddOptions: (fb.AddOptions, lambda p: AddOptions(
        activation=p.FusedActivationFunction(), pot_scale_int16=p.PotScaleInt16())),
    BuiltinOptions.MulOptions: (fb.MulOptions, lambda p: MulOptions(activation=p.FusedActivationFunction())),
    BuiltinOptions.SubOptions: (fb.SubOptions, lambda p: SubOptions(
        activation=p.FusedActivationFunction(), pot_scale_int16=p.PotScaleInt16())),
    BuiltinOptions.SplitOptions: (fb.SplitOptions, lambda p: SplitOptions(num_splits=p.NumSplits())),
    BuiltinOptions.GatherOptions: (fb.GatherOptions, lambda p: GatherOptions(axis=p.Axis(), batch_dims=p.BatchDims())),
    BuiltinOptions.PackOptions: (fb.PackOptions, lambda p: PackOptions(values_count=p.ValuesCount(), axis=p.Axis())),
    BuiltinOptions.UnpackOptions: (fb.UnpackOptions, lambda p: UnpackOptions(num=p.Num(), axis=p.Axis())),
    BuiltinOptions.CallOnceOptions: (fb.CallOnceOptions, lambda p: CallOnceOptions(
        init_subgraph_index=p.InitSubgraphIndex())),
    BuiltinOptions.VarHandleOptions: (fb.VarHandleOptions, lambda p: VarHandleOptions(
        container=_text(p.Container()), shared_name=_text(p.SharedName()))),
    BuiltinOptions.ShapeOptions: (fb.ShapeOptions, lambda p: ShapeOptions(out_type=p.OutType())),
    BuiltinOptions.WhileOptions: (fb.WhileOptions, lambda p: WhileOptions(
        cond_subgraph_index=p.CondSubgraphIndex(), body_subgraph_index=p.BodySubgraphIndex())),
}


def _raw_builtin_code(code) -> int:
    # tflite's OperatorCode.BuiltinCode() returns deprecated_builtin_code for codes below 127, which would hide
    # a file whose builtin_code field is missing: read the field (slot 3, vtable offset 10) itself.
    offset = code._tab.Offset(10)
    return code._tab.Get(flatbuffers.number_types.Int32Flags, offset + code._tab.Pos) if offset else 0


def _text(raw: bytes | None) -> str:
    # Names come from the file: never let a bad byte raise.
    return "" if raw is None else raw.decode("utf-8", errors="replace")
