"""Interpreters that run a model: LiteRT (ai_edge_litert, the default) and TensorFlow's deprecated
tf.lite.Interpreter. Each is imported only when a model is run on it."""

from __future__ import annotations

import warnings

import numpy as np

from .errors import TflrnnError

RUNTIMES = ("litert", "tensorflow")


class InterpreterModel:
    """One interpreter over one model. The hidden state lives in the interpreter and carries across `run` calls."""

    def __init__(self, name: str, version: str, interpreter, input_index: int, output_index: int):
        self.name, self.version = name, version
        self.interpreter = interpreter
        self.interpreter.allocate_tensors()
        self.input_index, self.output_index = input_index, output_index

    def run(self, x: np.ndarray) -> np.ndarray:
        self.interpreter.set_tensor(self.input_index, np.ascontiguousarray(x, dtype=np.float32))
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output_index).copy()

    def reset(self) -> None:
        self.interpreter.reset_all_variables()


def load(runtime: str, model: bytes, input_index: int, output_index: int) -> InterpreterModel:
    if runtime == "litert":
        import ai_edge_litert
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        # XNNPACK does not take this op, so the builtin kernel runs either way; leaving the default delegate out
        # only skips its set-up (and the log line it prints).
        interpreter = Interpreter(
            model_content=model,
            num_threads=1,
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
        return InterpreterModel("litert", ai_edge_litert.__version__, interpreter, input_index, output_index)
    if runtime == "tensorflow":
        from .sources import require

        tf = require("tensorflow", "tensorflow", "--runtime tensorflow runs tf.lite.Interpreter")
        with warnings.catch_warnings():  # its deprecation notice: the README already says so
            warnings.simplefilter("ignore", UserWarning)
            interpreter = tf.lite.Interpreter(
                model_content=model,
                num_threads=1,
                experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
            )
        return InterpreterModel("tensorflow", tf.__version__, interpreter, input_index, output_index)
    raise TflrnnError(f"unknown runtime '{runtime}'; one of {', '.join(RUNTIMES)}, all")
