"""The network description both ways: every lowering recovers exactly the network it wrote,
recover(lower(n)) == n, through real flatbuffer bytes."""

from __future__ import annotations

import numpy as np
import pytest

import tflrnn
from tflrnn import lowering
from tflrnn.builder import model_of, network_of
from tflrnn.errors import ConfigError, ModelFormatError
from tflrnn.network import DENSE_ACTIVATIONS, Dense
from tflrnn.reader import read
from tflrnn.writer import write
from support import random_weights


def _dense(name, units, inputs, activation, seed=0):
    rng = np.random.default_rng(seed)
    return Dense(name, rng.standard_normal((units, inputs)).astype(np.float32),
                 rng.standard_normal(units).astype(np.float32), activation)


NETWORKS = {
    "cell": lambda: network_of(tflrnn.RNNCell(6), input_size=3, time_steps=4),
    "trained relu, batch 2, time-major": lambda: network_of(
        tflrnn.RNNCell(4, activation="relu"), weights=tflrnn.CellWeights(*random_weights(4, 3)), time_steps=5,
        batch_size=2, time_major=True),
    "stack, last step": lambda: network_of([tflrnn.RNNCell(5, name="a"), tflrnn.RNNCell(3, name="b",
                                                                                     activation="relu6")],
                                           input_size=2, time_steps=3, last_step=True),
    "reused cell": lambda: network_of([tflrnn.RNNCell(4, name="s"), tflrnn.RNNCell(4, name="s", reuse=True)],
                                      input_size=4),
    "bidirectional, merged": lambda: network_of(tflrnn.RNNCell(4), input_size=3, bidirectional=True),
    "bidirectional, apart": lambda: network_of(tflrnn.RNNCell(4), bidirectional=True, merge="none"),
    "bidirectional stack, last step": lambda: network_of([tflrnn.RNNCell(4, name="x"), tflrnn.RNNCell(3, name="y")],
                                                         bidirectional=[True, True], last_step=True, time_steps=5),
    "last step apart": lambda: network_of(tflrnn.RNNCell(3), bidirectional=True, last_step=True, merge="none"),
    "mixed directions, dynamic time": lambda: network_of(
        [tflrnn.RNNCell(4, name="x"), tflrnn.RNNCell(3, name="y")], bidirectional=[True, False],
        time_steps="dynamic"),
    "hybrid int8": lambda: network_of(tflrnn.RNNCell(8), input_size=5, quantize="int8", time_steps=2),
    "hybrid, asymmetric, bidirectional": lambda: network_of(tflrnn.RNNCell(8), quantize="int8",
                                                            asymmetric_inputs=True, bidirectional=True),
    **{f"dense {a} on a sequence": (lambda a=a: network_of(tflrnn.RNNCell(4), input_size=2, time_steps=3,
                                                           head=[_dense(f"d_{a}", 3, 4, a)]))
       for a in DENSE_ACTIVATIONS},
    "classifier": lambda: network_of([tflrnn.RNNCell(4, name="r")], bidirectional=[True], last_step=True,
                                     head=[_dense("h1", 5, 8, "relu", 1), _dense("h2", 2, 5, "softmax", 2)]),
}


@pytest.mark.parametrize("make", NETWORKS.values(), ids=NETWORKS)
def test_recover_is_the_inverse_of_lower(make):
    network = make()
    recovered = lowering.recover(read(write(model_of(network))))
    assert recovered == network
    assert write(model_of(recovered)) == write(model_of(network))  # and so is writing it again


# Every float network, its steps unrolled or looped (a dynamic time axis only loops).
PORTABLE = [(name, loop) for name in NETWORKS if not any(word in name for word in ("int8", "hybrid"))
            for loop in (False, True) if loop or "dynamic" not in name]


@pytest.mark.parametrize("state", ["carry", "io", "zero"])
@pytest.mark.parametrize("name, loop", PORTABLE, ids=[f"{n}-{'loop' if loop else 'unrolled'}" for n, loop in PORTABLE])
def test_the_portable_lowering_is_recovered_too(name, state, loop):
    network = NETWORKS[name]()
    network.lowering, network.state, network.loop = "portable", state, loop
    recovered = lowering.recover(read(write(model_of(network))))
    assert recovered == network
    assert write(model_of(recovered)) == write(model_of(network))


def test_networks_that_differ_are_not_equal():
    a = NETWORKS["cell"]()
    b = NETWORKS["cell"]()
    b.layers[0].weights.input_weights.flat[0] += 1e-7
    assert a != b
    c = NETWORKS["cell"]()
    c.time_major = True
    assert a != c


def test_an_unknown_lowering_is_refused():
    network = NETWORKS["cell"]()
    network.lowering = "magic"
    with pytest.raises(ConfigError, match="unknown lowering 'magic'; one of fused"):
        model_of(network)


def test_a_model_without_a_network_is_refused():
    model = model_of(NETWORKS["cell"]())
    model.subgraphs[0].operators = []
    with pytest.raises(ModelFormatError, match="no UNIDIRECTIONAL_SEQUENCE_RNN"):
        lowering.recover(model)
