"""One declarative description of a TFLite model, used in both directions.

`writer.write(Model)` turns it into flatbuffer bytes and does all the bookkeeping (buffers, op-code table,
vtables); `reader.read(bytes)` returns the same description. Tensors carry their data directly, as in
tflite-micro's model_editor: buffers are an encoding detail the writer owns.

The reader keeps raw values it does not understand (an out-of-range activation, an unknown options type) so that
`verify` can report them; the runtime would silently treat them as defaults.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

FILE_IDENTIFIER = b"TFL3"
SCHEMA_VERSION = 3
MAX_FLATBUFFER_BYTES = 2**31 - 1  # flatbuffers use signed 32-bit offsets


class BuiltinOperator(enum.IntEnum):
    """The ops tflrnn writes (codes of the schema). Above 127, `deprecated_builtin_code` holds 127."""

    ADD = 0
    CONCATENATION = 2
    DEQUANTIZE = 6
    FULLY_CONNECTED = 9
    LOGISTIC = 14
    MUL = 18
    RELU = 19
    RELU_N1_TO_1 = 20
    RELU6 = 21
    RESHAPE = 22
    SOFTMAX = 25
    TANH = 28
    GATHER = 36
    UNIDIRECTIONAL_SEQUENCE_RNN = 35
    SUB = 41
    UNIDIRECTIONAL_SEQUENCE_LSTM = 44
    STRIDED_SLICE = 45
    BIDIRECTIONAL_SEQUENCE_RNN = 46
    SPLIT = 49
    BIDIRECTIONAL_SEQUENCE_LSTM = 52
    LESS = 58
    GREATER_EQUAL = 62
    SLICE = 65
    MAXIMUM = 55
    MINIMUM = 57
    SHAPE = 77
    FILL = 94
    PACK = 83
    UNPACK = 88
    QUANTIZE = 114
    WHILE = 119
    CALL_ONCE = 129
    VAR_HANDLE = 142
    READ_VARIABLE = 143
    ASSIGN_VARIABLE = 144
    DYNAMIC_UPDATE_SLICE = 151


def op_name(code: int) -> str:
    """An operator code's name in the schema (`FULLY_CONNECTED`), or `BUILTIN_N` for a code it does not have."""
    if code in BuiltinOperator._value2member_map_:
        return BuiltinOperator(code).name
    from tflite.BuiltinOperator import BuiltinOperator as every  # the schema's whole table: only when needed

    names = {v: k for k, v in vars(every).items() if not k.startswith("_") and isinstance(v, int)}
    return names.get(code, f"BUILTIN_{code}")


class BuiltinOptions(enum.IntEnum):
    """Union tags of Operator.builtin_options."""

    NONE = 0
    FullyConnectedOptions = 8
    SoftmaxOptions = 9
    ConcatenationOptions = 10
    AddOptions = 11
    GatherOptions = 23
    MulOptions = 21
    SubOptions = 28
    SequenceRNNOptions = 31
    StridedSliceOptions = 32
    SplitOptions = 35
    ShapeOptions = 55
    PackOptions = 59
    UnpackOptions = 64
    WhileOptions = 93
    BidirectionalSequenceLSTMOptions = 69
    BidirectionalSequenceRNNOptions = 70
    UnidirectionalSequenceLSTMOptions = 71
    CallOnceOptions = 103
    VarHandleOptions = 111


class Activation(enum.IntEnum):
    """ActivationFunctionType: the only activations a fused TFLite op can apply."""

    NONE = 0
    RELU = 1
    RELU_N1_TO_1 = 2
    RELU6 = 3
    TANH = 4
    SIGN_BIT = 5


# TensorType codes of the schema, by numpy dtype name ("resource": a resource variable's handle, no data).
TENSOR_TYPES = {"float32": 0, "float16": 1, "int32": 2, "uint8": 3, "int64": 4, "bool": 6, "int16": 7, "int8": 9,
                "resource": 13}
TENSOR_TYPE_NAMES = {code: name for name, code in TENSOR_TYPES.items()}
ARRAY_TYPES = {name for name in TENSOR_TYPES if name != "resource"}  # the ones numpy holds


@dataclass
class SequenceRNNOptions:
    time_major: bool = False
    activation: int = Activation.TANH  # raw enum value as stored; may be out of range in a file we read
    asymmetric_quantize_inputs: bool = False


@dataclass
class BidirectionalSequenceRNNOptions:
    time_major: bool = False
    activation: int = Activation.TANH
    merge_outputs: bool = False
    asymmetric_quantize_inputs: bool = False


@dataclass
class UnidirectionalSequenceLSTMOptions:
    """UNIDIRECTIONAL_SEQUENCE_LSTM's options. `activation` is the one applied to the cell candidate and to the cell
    state before the output gate (tanh for Keras' and PyTorch's LSTM); a clip of 0 means none."""

    activation: int = Activation.TANH  # raw enum value as stored
    cell_clip: float = 0.0
    proj_clip: float = 0.0
    time_major: bool = False
    asymmetric_quantize_inputs: bool = False
    diagonal_recurrent_tensors: bool = False


@dataclass
class BidirectionalSequenceLSTMOptions:
    """BIDIRECTIONAL_SEQUENCE_LSTM's options (the schema's time_major defaults to true: written either way)."""

    activation: int = Activation.TANH
    cell_clip: float = 0.0
    proj_clip: float = 0.0
    merge_outputs: bool = False
    time_major: bool = False
    asymmetric_quantize_inputs: bool = False


@dataclass
class StridedSliceOptions:
    begin_mask: int = 0
    end_mask: int = 0
    ellipsis_mask: int = 0
    new_axis_mask: int = 0
    shrink_axis_mask: int = 0


@dataclass
class FullyConnectedOptions:
    activation: int = Activation.NONE
    weights_format: int = 0  # DEFAULT
    keep_num_dims: bool = False
    asymmetric_quantize_inputs: bool = False


@dataclass
class SoftmaxOptions:
    beta: float = 1.0


@dataclass
class ConcatenationOptions:
    axis: int = 0
    activation: int = Activation.NONE


@dataclass
class AddOptions:
    activation: int = Activation.NONE
    pot_scale_int16: bool = True  # the schema's default; only int16 kernels read it


@dataclass
class MulOptions:
    activation: int = Activation.NONE


@dataclass
class SubOptions:
    activation: int = Activation.NONE
    pot_scale_int16: bool = True  # the schema's default; only int16 kernels read it


@dataclass
class GatherOptions:
    axis: int = 0
    batch_dims: int = 0


@dataclass
class SplitOptions:
    num_splits: int = 0


@dataclass
class PackOptions:
    values_count: int = 0
    axis: int = 0


@dataclass
class UnpackOptions:
    num: int = 0
    axis: int = 0


@dataclass
class CallOnceOptions:
    init_subgraph_index: int = 0


@dataclass
class ShapeOptions:
    out_type: int = 2  # TensorType INT32 (the schema's default, 0, is FLOAT32)


@dataclass
class WhileOptions:
    """A loop: the body subgraph runs while the cond subgraph's single bool output is true."""

    cond_subgraph_index: int = 0
    body_subgraph_index: int = 0


@dataclass
class VarHandleOptions:
    """A resource variable: VAR_HANDLE ops with the same container and shared_name name the same one."""

    container: str = ""
    shared_name: str = ""


@dataclass
class Quantization:
    """Affine quantization: real = scale * (q - zero_point), per tensor (one value each) or per channel."""

    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    quantized_dimension: int = 0


@dataclass(eq=False)
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"  # numpy name; "type<N>" for a TensorType this package does not know
    data: np.ndarray | None = None  # constant contents, shaped; None for activations and variables
    is_variable: bool = False
    shape_signature: tuple[int, ...] | None = None
    quantization: Quantization | None = None

    @property
    def nbytes(self) -> int:
        return 0 if self.data is None else int(self.data.nbytes)

    def __eq__(self, other) -> bool:
        """Equal names, shapes, types, flags, quantization and contents (bit for bit)."""
        if not isinstance(other, Tensor):
            return NotImplemented
        facts = ("name", "dtype", "is_variable", "quantization")
        if any(getattr(self, f) != getattr(other, f) for f in facts):
            return False
        if tuple(self.shape) != tuple(other.shape) or (self.shape_signature is None) != (
                other.shape_signature is None) or tuple(self.shape_signature or ()) != tuple(other.shape_signature or ()):
            return False
        if self.data is None or other.data is None:
            return self.data is None and other.data is None
        return self.data.shape == other.data.shape and self.data.tobytes() == other.data.tobytes()


@dataclass
class Operator:
    builtin_code: int
    inputs: list[int]
    outputs: list[int]
    version: int = 1
    options: object | None = None  # one of the *Options dataclasses above
    # As read from a file; the writer derives both from builtin_code / options when they are None.
    deprecated_builtin_code: int | None = None
    options_type: int | None = None
    # Tensors the kernel reads its internal formats from (a full-int8 LSTM's gate and hidden scales), not data.
    intermediates: list[int] = field(default_factory=list)

    @property
    def code(self) -> int:
        # What the runtime executes: the larger field (builtin_code is 0 in files older than TF 2.4).
        return max(self.builtin_code, self.deprecated_builtin_code or 0)


@dataclass
class Subgraph:
    tensors: list[Tensor]
    operators: list[Operator]
    inputs: list[int]
    outputs: list[int]
    name: str = ""


@dataclass
class Signature:
    key: str
    inputs: dict[str, int]  # signature name -> tensor index
    outputs: dict[str, int]
    subgraph: int = 0


@dataclass
class Model:
    subgraphs: list[Subgraph]
    signatures: list[Signature] = field(default_factory=list)
    metadata: dict[str, bytes] = field(default_factory=dict)
    description: str = ""
    version: int = SCHEMA_VERSION
