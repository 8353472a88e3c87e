"""Running a model in the LiteRT interpreter (ai_edge_litert), imported only when a model is run."""

from __future__ import annotations

import numpy as np


class LiteRTModel:
    """One interpreter over one model. The hidden state lives in the interpreter and carries across `run` calls."""

    name = "litert"

    def __init__(self, model: bytes, input_index: int, output_index: int):
        import ai_edge_litert
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        self.version = ai_edge_litert.__version__
        # XNNPACK does not take this op, so the builtin kernel runs either way; leaving the default delegate out
        # only skips its set-up (and the log line it prints).
        self.interpreter = Interpreter(
            model_content=model,
            num_threads=1,
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
        self.interpreter.allocate_tensors()
        self.input_index = input_index
        self.output_index = output_index

    def run(self, x: np.ndarray) -> np.ndarray:
        self.interpreter.set_tensor(self.input_index, np.ascontiguousarray(x, dtype=np.float32))
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output_index).copy()

    def reset(self) -> None:
        self.interpreter.reset_all_variables()
