"""Helpers the tests import (fixtures live in conftest.py)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

try:
    import torch
except ImportError:  # the test extra installs it; without it, the tests that run torch are skipped
    torch = None


def needs_torch(test):
    """A test that runs torch itself: marked `torch`, and skipped with the reason where torch is missing."""
    test = pytest.mark.skipif(torch is None, reason="torch is not installed (pip install 'tflrnn[test]')")(test)
    return pytest.mark.torch(test)


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


def write_onnx_rnn(path, dims=("T", "B", 3), layout: int = 0, *, activations=("Tanh",), initial_h=None,
                   sequence_lens=False, clip=None, direction=None, seed: int = 2, recurrent_bias: float = 0.0):
    """A one-node ONNX RNN (4 units, input 3) whose graph input X has `dims`, written with onnx.helper; the keyword
    arguments make the variants tflrnn refuses. Returns the cell it holds (b = Wb + Rb)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from tflrnn import CellWeights

    w, r, b = random_weights(4, 3, seed=seed)
    bias = np.concatenate([b, np.full(4, recurrent_bias, np.float32)])[None]  # Wb then Rb
    initializers = [numpy_helper.from_array(w[None], "W"), numpy_helper.from_array(r[None], "R"),
                    numpy_helper.from_array(bias, "B")]
    inputs = ["X", "W", "R", "B", "lens" if sequence_lens else "", ""]
    graph_inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, dims)]
    if sequence_lens:
        graph_inputs.append(helper.make_tensor_value_info("lens", TensorProto.INT32, ["B"]))
    if initial_h is not None:
        initializers.append(numpy_helper.from_array(initial_h, "H0"))
        inputs[5] = "H0"
    attrs = {"hidden_size": 4, "activations": list(activations), "layout": layout}
    if clip is not None:
        attrs["clip"] = clip
    if direction is not None:
        attrs["direction"] = direction
    node = helper.make_node("RNN", inputs, ["Y", "Y_h"], name="rnn", **attrs)
    graph = helper.make_graph([node], "g", graph_inputs,
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)], initializer=initializers)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]), str(path))
    return CellWeights(w, r, b.astype(np.float64) + np.float32(recurrent_bias))


def write_state_dict(path, layers, units=4, input_size=3):
    """An nn.RNN state dict with the given layer indices, saved as .safetensors (no torch needed)."""
    from safetensors.numpy import save_file

    arrays = {}
    for k in layers:
        w, r, b = random_weights(units, input_size if k == 0 else units, seed=k)
        arrays.update({f"weight_ih_l{k}": w, f"weight_hh_l{k}": r, f"bias_ih_l{k}": b, f"bias_hh_l{k}": 0 * b})
    save_file(arrays, str(path))
    return path


def write_onnx_chain(path, directions: int, units=(5, 4), input_size=3, seed=0):
    """Two RNN nodes joined as torch.onnx.export joins nn.RNN's layers, written with onnx.helper (no torch)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes, initializers, x, size = [], [], "X", input_size
    for k, u in enumerate(units):
        for role, shape in (("W", (directions, u, size)), ("R", (directions, u, u)), ("B", (directions, 2 * u))):
            initializers.append(numpy_helper.from_array((rng.standard_normal(shape) * 0.4).astype(np.float32),
                                                        f"{role}{k}"))
        direction = "bidirectional" if directions == 2 else "forward"
        nodes.append(helper.make_node("RNN", [x, f"W{k}", f"R{k}", f"B{k}"], [f"Y{k}"], name=f"rnn{k}",
                                      hidden_size=u, direction=direction))
        if directions == 1:
            initializers.append(numpy_helper.from_array(np.array([1], np.int64), f"axis{k}"))
            nodes.append(helper.make_node("Squeeze", [f"Y{k}", f"axis{k}"], [f"S{k}"]))
        else:
            initializers.append(numpy_helper.from_array(np.array([0, 0, -1], np.int64), f"shape{k}"))
            nodes.append(helper.make_node("Transpose", [f"Y{k}"], [f"T{k}"], perm=[0, 2, 1, 3]))
            nodes.append(helper.make_node("Reshape", [f"T{k}", f"shape{k}"], [f"S{k}"]))
        x, size = f"S{k}", directions * u
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("X", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, None)], initializer=initializers)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]), str(path))
