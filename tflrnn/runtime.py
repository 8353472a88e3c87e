"""Interpreters that run a model: LiteRT (ai_edge_litert, the default) and TensorFlow's deprecated
tf.lite.Interpreter. Each is imported only when a model is run on it."""

from __future__ import annotations

import warnings

import numpy as np

from .errors import TflrnnError

RUNTIMES = ("litert", "tensorflow")


class InterpreterModel:
    """One interpreter over one model. The hidden state lives in the interpreter and carries across `run` calls."""

    def __init__(self, name: str, version: str, interpreter, input_index: int, output_indices: list[int]):
        self.name, self.version = name, version
        self.interpreter = interpreter
        self.interpreter.allocate_tensors()
        self.input_index, self.output_indices = input_index, output_indices

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        """Invoke on x; the tensors named by output_indices (intermediate ones are preserved), in that order."""
        self.interpreter.set_tensor(self.input_index, np.ascontiguousarray(x, dtype=np.float32))
        self.interpreter.invoke()
        return [self.interpreter.get_tensor(index).copy() for index in self.output_indices]

    def resize(self, input_shape: list[int]) -> None:
        """A new length for a dynamic-time model. Allocation also zeroes the variables, as a reset does."""
        self.interpreter.resize_tensor_input(self.input_index, input_shape)
        self.interpreter.allocate_tensors()

    def reset(self) -> None:
        self.interpreter.reset_all_variables()


def load(runtime: str, model: bytes, input_index: int, output_indices: list[int]) -> InterpreterModel:
    """An interpreter over `model` that keeps every tensor after invoke, so intermediate outputs can be read."""
    if runtime == "litert":
        import ai_edge_litert
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        # XNNPACK does not take this op, so the builtin kernel runs either way; leaving the default delegate out
        # only skips its set-up (and the log line it prints).
        interpreter = Interpreter(
            model_content=model,
            num_threads=1,
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
            experimental_preserve_all_tensors=True,
        )
        return InterpreterModel("litert", ai_edge_litert.__version__, interpreter, input_index, output_indices)
    if runtime == "tensorflow":
        from .sources import require

        tf = require("tensorflow", "tensorflow", "--runtime tensorflow runs tf.lite.Interpreter")
        with warnings.catch_warnings():  # its deprecation notice: the README already says so
            warnings.simplefilter("ignore", UserWarning)
            interpreter = tf.lite.Interpreter(
                model_content=model,
                num_threads=1,
                experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
                experimental_preserve_all_tensors=True,
            )
        return InterpreterModel("tensorflow", tf.__version__, interpreter, input_index, output_indices)
    raise TflrnnError(f"unknown runtime '{runtime}'; one of {', '.join(RUNTIMES)}, all")
