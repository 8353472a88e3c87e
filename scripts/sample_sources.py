"""Write one small trained-looking source model in every format `tflrnn build --weights` reads, for
scripts/check_wheel.sh (run with the test venv, which has Keras, onnx and safetensors).

Usage: python scripts/sample_sources.py DIR
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

UNITS, INPUT, STEPS = 6, 4, 8


def main(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((UNITS, INPUT)) * 0.4).astype(np.float32)
    r = (rng.standard_normal((UNITS, UNITS)) * 0.4 / np.sqrt(UNITS)).astype(np.float32)
    b = (rng.standard_normal(UNITS) * 0.1).astype(np.float32)

    np.savez(directory / "rnn.npz", input_weights=w, recurrent_weights=r, bias=b)

    from safetensors.numpy import save_file

    save_file({"rnn.weight_ih_l0": w, "rnn.weight_hh_l0": r, "rnn.bias_ih_l0": b,
               "rnn.bias_hh_l0": np.zeros_like(b)}, str(directory / "rnn.safetensors"))

    from onnx import TensorProto, helper, numpy_helper, save

    initializers = [numpy_helper.from_array(w[None], "W"), numpy_helper.from_array(r[None], "R"),
                    numpy_helper.from_array(np.concatenate([b, np.zeros_like(b)])[None], "B")]
    node = helper.make_node("RNN", ["X", "W", "R", "B"], ["Y"], name="rnn", hidden_size=UNITS)
    graph = helper.make_graph([node], "rnn", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [STEPS, 1, INPUT])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)], initializer=initializers)
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]), str(directory / "rnn.onnx"))

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    model = keras.Sequential([keras.Input((STEPS, INPUT)),
                              keras.layers.SimpleRNN(UNITS, return_sequences=True, name="rnn"),
                              keras.layers.Dense(3, activation="softmax", name="head")])
    model.layers[0].set_weights([w.T, r.T, b])
    model.layers[1].set_weights([(rng.standard_normal((UNITS, 3)) * 0.5).astype(np.float32), np.zeros(3, np.float32)])
    model.save(directory / "rnn.keras")
    model.save(directory / "rnn.h5")
    model.save_weights(directory / "rnn.weights.h5")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[-1])
    main(Path(sys.argv[1]))
