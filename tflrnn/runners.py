"""The interpreters a model runs on, in this process, behind one interface: `run(x, *states)` gives the tensors
asked for, `resize` sets a new length, `reset` zeroes the state. runtime.py runs one of them in a child process.

| runtime    | what                                         | tensors addressed by            | reset                          |
| ---------- | -------------------------------------------- | ------------------------------- | ------------------------------ |
| litert     | ai_edge_litert's classic Interpreter         | index (every tensor is kept)    | reset_all_variables(), or the  |
| tensorflow | tf.lite.Interpreter (deprecated)             | index                           | model's reset signature        |
| compiled   | ai_edge_litert's CompiledModel API           | the serving signature's names   | the reset signature            |
| micro      | TFLite Micro (the tflite-micro package)      | position among the subgraph's   | reset()                        |
|            |                                              | inputs and outputs              |                                |

`wiring` (JSON-able, from the caller, who has read the model) says how: extra_inputs (tensor indices of states given
as inputs), reset_key, xnnpack (litert: with the default XNNPACK delegate), input_names / output_names and
output_shapes (compiled), input_positions / output_positions and arena (micro).
"""

from __future__ import annotations

import importlib
import warnings

import numpy as np

RUNTIMES = ("litert", "tensorflow", "compiled", "micro")
RESIZABLE = ("litert", "tensorflow")  # the others run a model at the length it was allocated for
LABELS = {"litert": "LiteRT", "tensorflow": "TensorFlow Lite (tf.lite)", "compiled": "LiteRT CompiledModel",
          "micro": "TFLite Micro"}
PACKAGES = {"litert": ("ai_edge_litert", None), "tensorflow": ("tensorflow", "tensorflow"),
            "compiled": ("ai_edge_litert", None), "micro": ("tflite_micro", "micro")}


def micro_arena_bytes(model) -> int:
    """A TFLite Micro tensor arena for a model description: twice every non-constant tensor of every subgraph (Micro
    plans them all in one arena), plus 1 MiB, at most 2 GiB - 1."""
    from .model import ARRAY_TYPES

    activations = sum(np.dtype(t.dtype).itemsize * float(np.prod(t.shape, dtype=np.float64))
                      for graph in model.subgraphs for t in graph.tensors
                      if t.data is None and t.dtype in ARRAY_TYPES and all(d >= 0 for d in t.shape))
    return int(min(2 * activations + (1 << 20), (1 << 31) - 1))


def _as_input(value) -> np.ndarray:
    """An input as the model takes it: int8 for a full-integer model's int8 interface, else float32."""
    value = np.asarray(value)
    return np.ascontiguousarray(value, dtype=np.int8 if value.dtype == np.int8 else np.float32)


def open_runtime(runtime: str) -> str:
    """Import the runtime (here, where it is needed); its version."""
    if runtime in ("litert", "compiled"):
        import ai_edge_litert

        return ai_edge_litert.__version__
    if runtime == "micro":
        import tflite_micro

        return getattr(tflite_micro, "__version__", "") or _distribution_version("tflite-micro")
    return importlib.import_module("tensorflow").__version__


def _distribution_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return ""


def make_runner(runtime: str, version: str, model: bytes, input_index: int, output_indices: list[int],
                wiring: dict | None = None):
    wiring = wiring or {}
    if runtime == "compiled":
        return CompiledRunner(version, model, wiring)
    if runtime == "micro":
        return MicroRunner(version, model, wiring)
    return InterpreterModel(runtime, version, _classic(runtime, model, bool(wiring.get("xnnpack"))), input_index,
                            output_indices, wiring.get("extra_inputs", ()), wiring.get("reset_key"))


def _classic(runtime: str, model: bytes, xnnpack: bool):
    """A classic interpreter that keeps every tensor after invoke (so intermediate outputs can be read)."""
    if runtime == "litert":
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    else:
        tf = importlib.import_module("tensorflow")
        Interpreter, OpResolverType = tf.lite.Interpreter, tf.lite.experimental.OpResolverType
    # XNNPACK does not take the fused RNN ops, so without `xnnpack` the builtin kernels run and the default
    # delegate's set-up (and its log line) is skipped; a portable model is also checked with it.
    resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    with warnings.catch_warnings():  # tf.lite.Interpreter's deprecation notice: the README already says so
        warnings.simplefilter("ignore", UserWarning)
        return Interpreter(model_content=model, num_threads=1, experimental_op_resolver_type=resolver,
                           experimental_preserve_all_tensors=not xnnpack)


class InterpreterModel:
    """One interpreter over one model, in this process. The hidden state lives in the interpreter and carries
    across `run` calls. (runtime.load gives an `IsolatedInterpreter`, which runs one of these in a child process.)"""

    def __init__(self, name: str, version: str, interpreter, input_index: int, output_indices: list[int],
                 extra_inputs: list[int] = (), reset_key: str | None = None):
        self.name, self.version = name, version
        self.interpreter = interpreter
        self.interpreter.allocate_tensors()
        self.input_index, self.output_indices = input_index, output_indices
        self.extra_inputs, self.reset_key = list(extra_inputs), reset_key

    def run(self, x: np.ndarray, *extra: np.ndarray) -> list[np.ndarray]:
        """Invoke on x (and `extra` into extra_inputs, e.g. states); the tensors named by output_indices
        (intermediate ones are preserved), in that order."""
        self.interpreter.set_tensor(self.input_index, _as_input(x))
        for index, value in zip(self.extra_inputs, extra, strict=True):
            self.interpreter.set_tensor(index, _as_input(value))
        self.interpreter.invoke()
        return [self.interpreter.get_tensor(index).copy() for index in self.output_indices]

    def resize(self, input_shape: list[int]) -> None:
        """A new length for a dynamic-time model. Allocation also zeroes the variables, as a reset does."""
        self.interpreter.resize_tensor_input(self.input_index, input_shape)
        self.interpreter.allocate_tensors()

    def reset(self) -> None:
        """Zero the state: reset_all_variables() (variable tensors), or the model's reset signature (resource
        variables, which reset_all_variables() leaves as they are)."""
        if self.reset_key is None:
            self.interpreter.reset_all_variables()
        else:
            self.interpreter.get_signature_runner(self.reset_key)()

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()



class CompiledRunner:
    """The CompiledModel API: the serving signature (0) by its tensors' names, and the reset signature."""

    def __init__(self, version: str, model: bytes, wiring: dict):
        from ai_edge_litert.compiled_model import CompiledModel

        self.name, self.version = "compiled", version
        self.model = CompiledModel.from_buffer(model)
        signature = self.model.get_signature_by_index(0)
        self.inputs = [signature["inputs"].index(n) for n in wiring["input_names"]]
        self.outputs = [signature["outputs"].index(n) for n in wiring["output_names"]]
        self.shapes = [tuple(s) for s in wiring["output_shapes"]]
        self.dtypes = [np.dtype(t) for t in wiring.get("output_dtypes", ["float32"] * len(self.shapes))]
        self.input_buffers, self.output_buffers = self.model.create_input_buffers(0), self.model.create_output_buffers(0)
        self.reset_key = wiring.get("reset_key")

    def run(self, x: np.ndarray, *extra: np.ndarray) -> list[np.ndarray]:
        for position, value in zip(self.inputs, (x, *extra), strict=True):
            self.input_buffers[position].write(_as_input(value))
        self.model.run_by_index(0, self.input_buffers, self.output_buffers)
        return [self.output_buffers[p].read(int(np.prod(shape)), dtype).reshape(shape).copy()
                for p, shape, dtype in zip(self.outputs, self.shapes, self.dtypes)]

    def resize(self, input_shape: list[int]) -> None:
        raise RuntimeError("the CompiledModel API runs the model at the length it was built for")

    def reset(self) -> None:
        if self.reset_key is None:
            raise RuntimeError("the model has no reset signature, and the CompiledModel API has no other reset")
        self.model.run_by_index(self.model.get_signature_index(self.reset_key), [], [])

    def close(self) -> None:
        pass


class MicroRunner:
    """TFLite Micro: subgraph 0, its tensors by position; reset() zeroes its variables."""

    def __init__(self, version: str, model: bytes, wiring: dict):
        from tflite_micro.python.tflite_micro import runtime as tflm

        self.name, self.version = "micro", version
        # `tensors`: also read these tensors of subgraph 0 by index after each invoke (Micro then keeps them all)
        self.tensors = wiring.get("tensors", [])
        config = tflm.InterpreterConfig.kPreserveAllTensors if self.tensors else tflm.InterpreterConfig.kAllocationRecording
        self.interpreter = tflm.Interpreter.from_bytes(model, arena_size=int(wiring.get("arena", 1 << 20)),
                                                       intrepreter_config=config)
        self.inputs, self.outputs = wiring["input_positions"], wiring["output_positions"]

    def run(self, x: np.ndarray, *extra: np.ndarray) -> list[np.ndarray]:
        for position, value in zip(self.inputs, (x, *extra), strict=True):
            self.interpreter.set_input(_as_input(value), position)
        self.interpreter.invoke()
        outputs = [np.array(self.interpreter.get_output(p), copy=True) for p in self.outputs]
        for index in self.tensors:
            found = self.interpreter.GetTensor(index, 0)
            outputs.append(np.array(found["tensor_data"], dtype=found["dtype"], copy=True).reshape(found["shape"]))
        return outputs

    def resize(self, input_shape: list[int]) -> None:
        raise RuntimeError("TFLite Micro runs the model at the length it was built for")

    def reset(self) -> None:
        self.interpreter.reset()

    def close(self) -> None:
        pass
