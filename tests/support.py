"""Helpers the tests import (fixtures live in conftest.py)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np


def assert_clean_error(result, *fragments: str) -> None:
    """Exit 2, nothing on stdout, one line on stderr naming the problem, no traceback."""
    assert result.code == 2, (result.code, result.out, result.err)
    assert result.out == ""
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("tflrnn: error: "), result.err
    assert "Traceback" not in result.err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def random_weights(units: int, input_size: int, seed: int = 0, scale: float = 0.4):
    rng = np.random.default_rng(seed)
    return (
        (rng.standard_normal((units, input_size)) * scale).astype(np.float32),
        (rng.standard_normal((units, units)) * scale / np.sqrt(units)).astype(np.float32),
        (rng.standard_normal(units) * 0.1).astype(np.float32),
    )


def run_without(module: str, argv: list, cwd=None) -> subprocess.CompletedProcess:
    """Run the CLI in a process where `module` cannot be imported, as on a machine without it."""
    program = f"import sys; sys.modules[{module!r}] = None\nfrom tflrnn.cli import main\nmain(sys.argv[1:])"
    return subprocess.run([sys.executable, "-c", program, *map(str, argv)], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def write_onnx_rnn(path, dims=("T", "B", 3), layout: int = 0):
    """A one-node ONNX RNN (4 units, input 3, tanh) whose graph input X has `dims`; returns its W, R and b."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w, r, b = random_weights(4, 3, seed=2)
    bias = np.concatenate([b, np.zeros(4, np.float32)])[None]
    initializers = [numpy_helper.from_array(w[None], "W"), numpy_helper.from_array(r[None], "R"),
                    numpy_helper.from_array(bias, "B")]
    node = helper.make_node("RNN", ["X", "W", "R", "B"], ["Y"], name="rnn", hidden_size=4, layout=layout)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)], initializer=initializers)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]), str(path))
    return w, r, b
