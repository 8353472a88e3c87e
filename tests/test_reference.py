"""The numpy reference on its own: the recurrence written out by hand, every activation, the head ops, and the
hybrid allowance. verify judges the runtime by this module, so it is judged here by first principles."""

from __future__ import annotations

import numpy as np
import pytest

import tflrnn
from tflrnn import reference
from tflrnn.model import Activation, BuiltinOperator
from support import random_weights

ACTIVATIONS = {
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0),
    "relu6": lambda z: np.minimum(np.maximum(z, 0), 6),
    "linear": lambda z: z,
    "relu_n1_to_1": lambda z: np.minimum(np.maximum(z, -1), 1),
    "sign_bit": lambda z: (z < 0).astype(z.dtype) + ((z == 0) & np.signbit(z)),
}


@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("time_major", [False, True])
def test_run_is_the_recurrence(name, time_major):
    w = tflrnn.CellWeights(*random_weights(5, 3, seed=1))
    x = np.random.default_rng(2).standard_normal((2, 7, 3)).astype(np.float32)
    h0 = np.random.default_rng(3).standard_normal((2, 5))
    h, expected = h0.copy(), []
    for t in range(7):  # h_t = act(x_t W^T + h_{t-1} R^T + b), one step at a time
        h = ACTIVATIONS[name](x[:, t].astype(np.float64) @ w.input_weights.T.astype(np.float64)
                              + h @ w.recurrent_weights.T.astype(np.float64) + w.bias)
        expected.append(h)
    expected = np.stack(expected, axis=1)
    given = np.swapaxes(x, 0, 1) if time_major else x
    outputs, final = reference.run(given, w, name, time_major=time_major, initial_state=h0)
    np.testing.assert_allclose(np.swapaxes(outputs, 0, 1) if time_major else outputs, expected, rtol=1e-12)
    np.testing.assert_allclose(final, expected[:, -1], rtol=1e-12)


def test_step_from_the_previous_outputs_is_run():
    """`step` judges each step from given previous states: fed run's own outputs, it gives run's outputs back."""
    w = tflrnn.CellWeights(*random_weights(4, 2, seed=4))
    x = np.random.default_rng(5).standard_normal((3, 6, 2)).astype(np.float32)
    outputs, _ = reference.run(x, w, "tanh")
    previous = np.concatenate([np.zeros((3, 1, 4)), outputs[:, :-1]], axis=1)
    expected, pre, scale = reference.step(x, w, Activation.TANH, previous)
    np.testing.assert_allclose(expected, outputs, rtol=1e-12)
    assert np.all(scale >= np.abs(pre) - 1e-12)  # the sum of |terms| bounds the sum of terms


def test_head_ops():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 5, 4))
    kernel, bias = rng.standard_normal((3, 4)), rng.standard_normal(3)
    y, pre, scale = reference.HEAD_OPS[BuiltinOperator.FULLY_CONNECTED](x, kernel=kernel, bias=bias,
                                                                         activation=Activation.RELU)
    np.testing.assert_allclose(pre, np.einsum("bti,ui->btu", x, kernel) + bias, rtol=1e-12)
    np.testing.assert_array_equal(y, np.maximum(pre, 0))
    probabilities = reference.HEAD_OPS[BuiltinOperator.SOFTMAX](x, beta=1.0)[0]
    np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(probabilities, np.exp(x) / np.exp(x).sum(axis=-1, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(reference.HEAD_OPS[BuiltinOperator.LOGISTIC](x)[0], 1 / (1 + np.exp(-x)), rtol=1e-12)
    np.testing.assert_array_equal(reference.HEAD_OPS[BuiltinOperator.TANH](x)[0], np.tanh(x))
    joined = reference.HEAD_OPS[BuiltinOperator.CONCATENATION](x[..., :1], x[..., 1:])[0]
    np.testing.assert_array_equal(joined, x)
    assert reference.HEAD_OPS[BuiltinOperator.STRIDED_SLICE](x, time_major=False)[0].shape == (2, 4)


def test_hybrid_allowance_covers_int8_rounding_of_the_inputs():
    """The kernel rounds x and h to int8 per row each step: the reference's allowance bounds what that changes."""
    w = tflrnn.CellWeights(*random_weights(6, 4, seed=7))
    x = np.random.default_rng(8).standard_normal((2, 5, 4)).astype(np.float32)
    previous = np.random.default_rng(9).uniform(-1, 1, (2, 5, 6))
    allowance = reference.input_quantization_error(x, previous, w, asymmetric=False)

    def rounded(v):  # symmetric per-row int8, as the kernel does
        scale = np.abs(v).max(axis=-1, keepdims=True) / 127
        return np.round(v / scale) * scale

    exact = x.astype(np.float64) @ w.input_weights.T + previous @ w.recurrent_weights.T
    quantized = rounded(x.astype(np.float64)) @ w.input_weights.T + rounded(previous) @ w.recurrent_weights.T
    assert np.all(np.abs(quantized - exact) <= allowance + 1e-12)
