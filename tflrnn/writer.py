"""Model description -> TFLite flatbuffer bytes.

All bookkeeping lives here: buffer 0 as the empty sentinel, one buffer per constant (shared when two tensors hold
the same array object), the op-code table, union tags and the file identifier. Weights go into the builder
straight from numpy memory, 16-byte aligned as the schema's `force_align` asks, with the builder pre-sized so that
large models are not copied while it grows.
"""

from __future__ import annotations

import enum

import flatbuffers
import numpy as np

from ._schema import builder_functions
from .cell import row_blocks
from .model import (
    FILE_IDENTIFIER,
    TENSOR_TYPES,
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
    SequenceRNNOptions,
    SoftmaxOptions,
    StridedSliceOptions,
    Subgraph,
    UnidirectionalSequenceLSTMOptions,
    UnpackOptions,
    ShapeOptions,
    VarHandleOptions,
    WhileOptions,
)

_DATA_ALIGNMENT = 16
_PLACEHOLDER_FOR_GREATER_OP_CODES = 127
_STRUCTURE_BYTES_ESTIMATE = 4096

fb = builder_functions()  # the tflite package's ModelStart, TensorAddShape, ...


def estimated_size(model: Model) -> int:
    """Bytes the flatbuffer will take, near enough to pre-size the builder and refuse > 2 GiB early."""
    data = sum(t.nbytes + _DATA_ALIGNMENT for g in model.subgraphs for t in g.tensors if t.data is not None)
    data += sum(len(v) + _DATA_ALIGNMENT for v in model.metadata.values())
    names = sum(len(t.name) + 64 for g in model.subgraphs for t in g.tensors)
    return data + names + len(model.description) + _STRUCTURE_BYTES_ESTIMATE


def write(model: Model) -> bytes:
    return bytes(serialize(model))


def serialize(model: Model) -> memoryview:
    """The flatbuffer as a view of the builder's own buffer: no copy, for writing large models to a file."""
    builder = flatbuffers.Builder(estimated_size(model))
    int_vectors: dict[tuple[int, ...], int] = {}  # identical shapes and index lists are stored once

    def ints(values) -> int:
        key = tuple(int(v) for v in values)
        if key not in int_vectors:
            int_vectors[key] = builder.CreateNumpyVector(np.asarray(key, dtype=np.int32))
        return int_vectors[key]

    buffer_data: list[np.ndarray | None] = [None]  # buffer 0: the empty sentinel
    # Tensors with equal contents share one buffer, so the bytes depend only on the values (not on which arrays
    # happen to be the same object) and shared weights are stored once.
    same_layout: dict[tuple, list[int]] = {}  # (dtype, shape) -> buffer indices
    tensor_buffers = []
    for graph in model.subgraphs:
        indices = []
        for tensor in graph.tensors:
            if tensor.data is None:
                indices.append(0)
                continue
            candidates = same_layout.setdefault((tensor.data.dtype.str, tensor.data.shape), [])
            index = next((i for i in candidates if _same_bytes(buffer_data[i], tensor.data)), None)
            if index is None:
                index = len(buffer_data)
                buffer_data.append(tensor.data)
                candidates.append(index)
            indices.append(index)
        tensor_buffers.append(indices)
    tensor_buffer_count = len(buffer_data)
    metadata_buffers = {}
    for name, value in model.metadata.items():
        metadata_buffers[name] = len(buffer_data)
        buffer_data.append(np.frombuffer(value, dtype=np.uint8))

    # Large byte vectors first: they land at the end of the file, away from the tables. Tensor data is 16-byte
    # aligned as the schema asks; metadata needs no alignment, so it is not padded.
    data_offsets = [None] + [
        _data_vector(builder, data, _DATA_ALIGNMENT if i < tensor_buffer_count else 1)
        for i, data in enumerate(buffer_data[1:], start=1)
    ]
    buffers = []
    for offset in data_offsets:
        fb.BufferStart(builder)
        if offset is not None:
            fb.BufferAddData(builder, offset)
        buffers.append(fb.BufferEnd(builder))

    opcode_keys: list[tuple[int, int, int]] = []
    for graph in model.subgraphs:
        for op in graph.operators:
            key = _opcode_key(op)
            if key not in opcode_keys:
                opcode_keys.append(key)
    opcodes = []
    for builtin, deprecated, version in opcode_keys:
        fb.OperatorCodeStart(builder)
        fb.OperatorCodeAddDeprecatedBuiltinCode(builder, deprecated)
        fb.OperatorCodeAddBuiltinCode(builder, builtin)
        fb.OperatorCodeAddVersion(builder, version)
        opcodes.append(fb.OperatorCodeEnd(builder))

    subgraphs = [_subgraph(builder, ints, g, bufs, opcode_keys) for g, bufs in zip(model.subgraphs, tensor_buffers)]

    signatures = []
    for sig in model.signatures:
        inputs = _tensor_maps(builder, sig.inputs, fb.SignatureDefStartInputsVector)
        outputs = _tensor_maps(builder, sig.outputs, fb.SignatureDefStartOutputsVector)
        key = builder.CreateString(sig.key)
        fb.SignatureDefStart(builder)
        fb.SignatureDefAddInputs(builder, inputs)
        fb.SignatureDefAddOutputs(builder, outputs)
        fb.SignatureDefAddSignatureKey(builder, key)
        fb.SignatureDefAddSubgraphIndex(builder, sig.subgraph)
        signatures.append(fb.SignatureDefEnd(builder))

    metadata = []
    for name, index in metadata_buffers.items():
        name_offset = builder.CreateString(name)
        fb.MetadataStart(builder)
        fb.MetadataAddName(builder, name_offset)
        fb.MetadataAddBuffer(builder, index)
        metadata.append(fb.MetadataEnd(builder))

    # An empty description, signature list or metadata list is left out (the schema's fields are optional)
    description = builder.CreateString(model.description) if model.description else None
    opcodes_vec = _table_vector(builder, opcodes, fb.ModelStartOperatorCodesVector)
    subgraphs_vec = _table_vector(builder, subgraphs, fb.ModelStartSubgraphsVector)
    buffers_vec = _table_vector(builder, buffers, fb.ModelStartBuffersVector)
    signatures_vec = _table_vector(builder, signatures, fb.ModelStartSignatureDefsVector) if signatures else None
    metadata_vec = _table_vector(builder, metadata, fb.ModelStartMetadataVector) if metadata else None

    fb.ModelStart(builder)
    fb.ModelAddVersion(builder, model.version)
    fb.ModelAddOperatorCodes(builder, opcodes_vec)
    fb.ModelAddSubgraphs(builder, subgraphs_vec)
    if description is not None:
        fb.ModelAddDescription(builder, description)
    fb.ModelAddBuffers(builder, buffers_vec)
    if signatures_vec is not None:
        fb.ModelAddSignatureDefs(builder, signatures_vec)
    if metadata_vec is not None:
        fb.ModelAddMetadata(builder, metadata_vec)
    builder.Finish(fb.ModelEnd(builder), file_identifier=FILE_IDENTIFIER)
    return memoryview(builder.Bytes)[builder.Head() :]  # Output() would copy


def _same_bytes(a: np.ndarray, b: np.ndarray) -> bool:
    # Block by block: bounded temporaries, and unequal weights differ in the first block.
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    return all(np.array_equal(x, y) for x, y in zip(row_blocks(a), row_blocks(b)))


def _opcode_key(op: Operator) -> tuple[int, int, int]:
    deprecated = op.deprecated_builtin_code
    if deprecated is None:
        deprecated = min(op.builtin_code, _PLACEHOLDER_FOR_GREATER_OP_CODES)
    return (op.builtin_code, deprecated, op.version)


def _subgraph(builder, ints, graph: Subgraph, tensor_buffers: list[int], opcode_keys) -> int:
    tensors = []
    for tensor, buffer_index in zip(graph.tensors, tensor_buffers):
        name = builder.CreateString(tensor.name) if tensor.name else None  # the schema's field is optional
        shape = ints(tensor.shape)
        signature = None
        if tensor.shape_signature is not None:
            signature = ints(tensor.shape_signature)
        quantization = None
        if tensor.quantization is not None:
            q = tensor.quantization
            scale = builder.CreateNumpyVector(np.asarray(q.scale, dtype="<f4"))
            zero_point = builder.CreateNumpyVector(np.asarray(q.zero_point, dtype="<i8"))
            fb.QuantizationParametersStart(builder)
            fb.QuantizationParametersAddScale(builder, scale)
            fb.QuantizationParametersAddZeroPoint(builder, zero_point)
            fb.QuantizationParametersAddQuantizedDimension(builder, q.quantized_dimension)
            quantization = fb.QuantizationParametersEnd(builder)
        fb.TensorStart(builder)
        fb.TensorAddShape(builder, shape)
        fb.TensorAddType(builder, TENSOR_TYPES[tensor.dtype])
        fb.TensorAddBuffer(builder, buffer_index)
        if name is not None:
            fb.TensorAddName(builder, name)
        if tensor.is_variable:
            fb.TensorAddIsVariable(builder, True)
        if signature is not None:
            fb.TensorAddShapeSignature(builder, signature)
        if quantization is not None:
            fb.TensorAddQuantization(builder, quantization)
        tensors.append(fb.TensorEnd(builder))

    operators = []
    for op in graph.operators:
        inputs = ints(op.inputs)
        outputs = ints(op.outputs)
        intermediates = ints(op.intermediates) if op.intermediates else None
        options_type, options = _options(builder, op.options)
        fb.OperatorStart(builder)
        fb.OperatorAddOpcodeIndex(builder, opcode_keys.index(_opcode_key(op)))
        fb.OperatorAddInputs(builder, inputs)
        fb.OperatorAddOutputs(builder, outputs)
        if options is not None:
            fb.OperatorAddBuiltinOptionsType(builder, options_type)
            fb.OperatorAddBuiltinOptions(builder, options)
        if intermediates is not None:
            fb.OperatorAddIntermediates(builder, intermediates)
        operators.append(fb.OperatorEnd(builder))

    tensors_vec = _table_vector(builder, tensors, fb.SubGraphStartTensorsVector)
    operators_vec = _table_vector(builder, operators, fb.SubGraphStartOperatorsVector)
    inputs_vec = ints(graph.inputs)
    outputs_vec = ints(graph.outputs)
    name = builder.CreateString(graph.name) if graph.name else None
    fb.SubGraphStart(builder)
    fb.SubGraphAddTensors(builder, tensors_vec)
    fb.SubGraphAddInputs(builder, inputs_vec)
    fb.SubGraphAddOutputs(builder, outputs_vec)
    fb.SubGraphAddOperators(builder, operators_vec)
    if name is not None:
        fb.SubGraphAddName(builder, name)
    return fb.SubGraphEnd(builder)


# Each options dataclass: its table in the schema, and (field, attribute) in the order the fields are added.
_OPTION_TABLES = {
    SequenceRNNOptions: ("SequenceRNNOptions", (("TimeMajor", "time_major"), ("FusedActivationFunction", "activation"),
                                                ("AsymmetricQuantizeInputs", "asymmetric_quantize_inputs"))),
    BidirectionalSequenceRNNOptions: ("BidirectionalSequenceRNNOptions", (
        ("TimeMajor", "time_major"), ("FusedActivationFunction", "activation"), ("MergeOutputs", "merge_outputs"),
        ("AsymmetricQuantizeInputs", "asymmetric_quantize_inputs"))),
    UnidirectionalSequenceLSTMOptions: ("UnidirectionalSequenceLSTMOptions", (
        ("FusedActivationFunction", "activation"), ("CellClip", "cell_clip"), ("ProjClip", "proj_clip"),
        ("TimeMajor", "time_major"), ("AsymmetricQuantizeInputs", "asymmetric_quantize_inputs"),
        ("DiagonalRecurrentTensors", "diagonal_recurrent_tensors"))),
    BidirectionalSequenceLSTMOptions: ("BidirectionalSequenceLSTMOptions", (
        ("FusedActivationFunction", "activation"), ("CellClip", "cell_clip"), ("ProjClip", "proj_clip"),
        ("MergeOutputs", "merge_outputs"), ("TimeMajor", "time_major"),
        ("AsymmetricQuantizeInputs", "asymmetric_quantize_inputs"))),
    StridedSliceOptions: ("StridedSliceOptions", (
        ("BeginMask", "begin_mask"), ("EndMask", "end_mask"), ("EllipsisMask", "ellipsis_mask"),
        ("NewAxisMask", "new_axis_mask"), ("ShrinkAxisMask", "shrink_axis_mask"))),
    FullyConnectedOptions: ("FullyConnectedOptions", (
        ("FusedActivationFunction", "activation"), ("WeightsFormat", "weights_format"),
        ("KeepNumDims", "keep_num_dims"), ("AsymmetricQuantizeInputs", "asymmetric_quantize_inputs"))),
    SoftmaxOptions: ("SoftmaxOptions", (("Beta", "beta"),)),
    ConcatenationOptions: ("ConcatenationOptions", (("Axis", "axis"), ("FusedActivationFunction", "activation"))),
    AddOptions: ("AddOptions", (("FusedActivationFunction", "activation"), ("PotScaleInt16", "pot_scale_int16"))),
    MulOptions: ("MulOptions", (("FusedActivationFunction", "activation"),)),
    SubOptions: ("SubOptions", (("FusedActivationFunction", "activation"), ("PotScaleInt16", "pot_scale_int16"))),
    SplitOptions: ("SplitOptions", (("NumSplits", "num_splits"),)),
    GatherOptions: ("GatherOptions", (("Axis", "axis"), ("BatchDims", "batch_dims"))),
    PackOptions: ("PackOptions", (("ValuesCount", "values_count"), ("Axis", "axis"))),
    UnpackOptions: ("UnpackOptions", (("Num", "num"), ("Axis", "axis"))),
    CallOnceOptions: ("CallOnceOptions", (("InitSubgraphIndex", "init_subgraph_index"),)),
    VarHandleOptions: ("VarHandleOptions", (("Container", "container"), ("SharedName", "shared_name"))),
    ShapeOptions: ("ShapeOptions", (("OutType", "out_type"),)),
    WhileOptions: ("WhileOptions", (("CondSubgraphIndex", "cond_subgraph_index"),
                                    ("BodySubgraphIndex", "body_subgraph_index"))),
}


def _options(builder, options) -> tuple[int, int | None]:
    if options is None:
        return BuiltinOptions.NONE, None
    if type(options) not in _OPTION_TABLES:
        raise TypeError(f"no writer for options of type {type(options).__name__}")
    table, fields = _OPTION_TABLES[type(options)]
    # Strings are made before the table starts (flatbuffers builds no nested objects inside a table).
    strings = {attribute: builder.CreateString(getattr(options, attribute)) for _, attribute in fields
               if isinstance(getattr(options, attribute), str)}
    getattr(fb, f"{table}Start")(builder)
    for field, attribute in fields:
        value = strings.get(attribute, getattr(options, attribute))
        getattr(fb, f"{table}Add{field}")(builder, int(value) if isinstance(value, enum.IntEnum) else value)
    return BuiltinOptions[table], getattr(fb, f"{table}End")(builder)


def _tensor_maps(builder, names_to_index: dict[str, int], start_vector) -> int:
    maps = []
    for name, index in names_to_index.items():
        name_offset = builder.CreateString(name)
        fb.TensorMapStart(builder)
        fb.TensorMapAddName(builder, name_offset)
        fb.TensorMapAddTensorIndex(builder, index)
        maps.append(fb.TensorMapEnd(builder))
    return _table_vector(builder, maps, start_vector)


def _table_vector(builder, offsets: list[int], start_vector) -> int:
    start_vector(builder, len(offsets))
    for offset in reversed(offsets):
        builder.PrependUOffsetTRelative(offset)
    return builder.EndVector()


def _data_vector(builder, array: np.ndarray, alignment: int) -> int:
    """A [ubyte] vector copied from the array (strided or not) straight into the builder: no list, no temporary."""
    nbytes = array.size * array.dtype.itemsize
    builder.StartVector(1, nbytes, alignment)
    builder.head -= nbytes
    # Into a little-endian numpy view of the builder's own buffer (a bytearray slice assignment would copy first).
    target = np.frombuffer(builder.Bytes, dtype=array.dtype.newbyteorder("<"), count=array.size, offset=builder.head)
    np.copyto(target.reshape(array.shape), array)
    del target  # release the export before the builder may need to grow its buffer
    return builder.EndVector()
