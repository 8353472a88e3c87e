"""The seed inputs: valid models, weights files and configs that every command accepts, which cases mutate."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .cases import DEFAULT_TIMEOUT, Seed
from .formats import _weights, keras_bytes, keras_spec, npz_bytes, onnx_bytes, onnx_spec, render_json, render_toml, safetensors_bytes, safetensors_spec
from .run import run_argv
from .mutate_bytes import flatbuffer_positions
from .mutate_calibration import calibration_bytes


def _gru_weights(units=3, input_size=3, seed=3):
    """A GRU's input_weights [3U, I], recurrent_weights [3U, U] and bias [3U] (gates z, r, n)."""
    w, r, b = (np.concatenate(parts) for parts in zip(*(_weights(units, input_size, seed + k) for k in range(3))))
    return w, r[:, :units], b


def _lstm_weights(units=3, input_size=3, seed=5):
    """An LSTM's input_weights [4U, I], recurrent_weights [4U, U] and bias [4U] (gates i, f, g, o)."""
    w, r, b = (np.concatenate(parts) for parts in zip(*(_weights(units, input_size, seed + k) for k in range(4))))
    return w, r[:, :units], b


def generate_seeds(workdir: Path) -> dict[str, list[Seed]]:
    """Valid inputs for every target, written and read back here: models by `tflrnn build` itself."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    models = []
    builds = {
        "basic": ["--units", "4", "--input-size", "3", "--time-steps", "2"],
        "relu-time-major": ["--units", "3", "--input-size", "2", "--time-steps", "3", "--batch-size", "2",
                            "--activation", "relu", "--time-major"],
        "stack-last-step": ["--units", "3", "--input-size", "2", "--time-steps", "2", "--layers", "2",
                            "--last-step"],
        "bidirectional": ["--units", "3", "--input-size", "2", "--time-steps", "2", "--bidirectional"],
        "bidirectional-separate": ["--units", "2", "--input-size", "2", "--time-steps", "2", "--bidirectional",
                                   "--merge", "none"],
        "int8": ["--units", "4", "--input-size", "3", "--time-steps", "2", "--quantize", "int8"],
        "int8-asymmetric": ["--units", "3", "--input-size", "3", "--quantize", "int8", "--asymmetric-inputs"],
        "dynamic-time": ["--units", "3", "--input-size", "2", "--time-steps", "dynamic"],
        "sign-bit": ["--units", "3", "--input-size", "2", "--activation", "sign_bit", "--name", "enc/cell.x-1"],
        # The portable lowering: plain ops, the state in resource variables, an input/output, or none
        "portable": ["--units", "3", "--input-size", "2", "--time-steps", "3", "--lowering", "portable"],
        "portable-io-bidirectional": ["--units", "2", "--input-size", "2", "--time-steps", "2", "--lowering",
                                      "portable", "--state", "io", "--bidirectional", "--last-step"],
        "portable-zero-stack": ["--units", "3", "--input-size", "2", "--time-steps", "2", "--lowering", "portable",
                                "--state", "zero", "--layers", "2", "--activation", "relu"],
        "portable-loop": ["--units", "3", "--input-size", "2", "--time-steps", "3", "--lowering", "portable",
                          "--recurrence", "loop"],
        "portable-loop-dynamic": ["--units", "3", "--input-size", "2", "--time-steps", "dynamic", "--lowering",
                                  "portable", "--bidirectional", "--last-step"],
        "portable-loop-io-bidirectional": ["--units", "2", "--input-size", "2", "--time-steps", "2", "--lowering",
                                           "portable", "--recurrence", "loop", "--state", "io", "--bidirectional"],
        # A GRU (portable only): gate and candidate weights apart, SPLIT / MUL / SUB steps, unrolled and as a loop
        "gru": ["--cell", "gru", "--units", "3", "--input-size", "2", "--time-steps", "3"],
        "gru-loop-io-bidirectional": ["--cell", "gru", "--units", "2", "--input-size", "2", "--time-steps", "2",
                                      "--recurrence", "loop", "--state", "io", "--bidirectional"],
        "gru-full-int8": ["--cell", "gru", "--units", "3", "--input-size", "2", "--time-steps", "3", "--quantize",
                          "full-int8", "--calibration", "{calibration}"],
        # every value int8 (a float input is QUANTIZEd to int16 for the 16x8 projection otherwise)
        "full-int8-int8-input": ["--units", "3", "--input-size", "2", "--time-steps", "3", "--lowering", "portable",
                                 "--quantize", "full-int8", "--calibration", "{calibration}", "--input-precision",
                                 "int8"],
        # An LSTM: its state [h | c] split and joined once a direction, SPLIT in three, unrolled and as a loop
        "lstm-portable": ["--cell", "lstm", "--lowering", "portable", "--units", "3", "--input-size", "2",
                          "--time-steps", "3"],
        "lstm-loop-io-bidirectional": ["--cell", "lstm", "--lowering", "portable", "--units", "2", "--input-size",
                                       "2", "--time-steps", "2", "--recurrence", "loop", "--state", "io",
                                       "--bidirectional", "--last-step"],
        # The fused LSTM op in full int8 (its integer kernel: int16 c, five intermediates) and hybrid
        "lstm-full-int8": ["--cell", "lstm", "--units", "3", "--input-size", "2", "--time-steps", "3", "--quantize",
                           "full-int8", "--calibration", "{calibration}", "--layers", "2", "--last-step"],
        "lstm-hybrid": ["--cell", "lstm", "--units", "3", "--input-size", "2", "--time-steps", "2", "--quantize",
                        "int8", "--asymmetric-inputs"],
        # The portable LSTM in full int8: int16 values (16x8), unrolled, and as a loop reading float sequences
        "lstm-portable-full-int8": ["--cell", "lstm", "--lowering", "portable", "--units", "3", "--input-size", "2",
                                    "--time-steps", "3", "--quantize", "full-int8", "--calibration", "{calibration}",
                                    "--state", "io", "--bidirectional"],
        "lstm-portable-full-int8-loop": ["--cell", "lstm", "--lowering", "portable", "--recurrence", "loop", "--units",
                                         "2", "--input-size", "2", "--time-steps", "3", "--quantize", "full-int8",
                                         "--calibration", "{calibration}", "--layers", "2", "--last-step"],
        # An LSTM's cell_clip: the fused op's option, and MAXIMUM / MINIMUM by two constants in the portable loop
        "lstm-cell-clip": ["--cell", "lstm", "--units", "3", "--input-size", "2", "--time-steps", "3", "--cell-clip",
                           "0.5"],
        "lstm-loop-cell-clip": ["--cell", "lstm", "--lowering", "portable", "--recurrence", "loop", "--units", "2",
                                "--input-size", "2", "--time-steps", "2", "--cell-clip", "0.5"],
        # Loops of several steps a pass: a GRU's bidirectional, a basic cell's time-major
        "gru-loop-passes": ["--cell", "gru", "--units", "3", "--input-size", "2", "--time-steps", "4",
                            "--steps-per-iteration", "2", "--bidirectional", "--state", "io"],
        "rnn-loop-passes": ["--lowering", "portable", "--units", "3", "--input-size", "2", "--time-steps", "6",
                            "--steps-per-iteration", "3", "--time-major", "--batch-size", "2"],
    }
    from tflrnn import reader

    calibration_file = workdir / "seed-calibration.npy"  # for the full-int8 model seeds
    np.save(calibration_file, np.random.default_rng(0).standard_normal((4, 1, 3, 2)).astype(np.float32))
    builds = {name: [a.format(calibration=calibration_file) for a in args] for name, args in builds.items()}
    for name, args in builds.items():
        out = workdir / f"{name}.tflite"
        result = run_argv(["build", *args, "-o", str(out)], "inprocess", DEFAULT_TIMEOUT)
        if result.code != 0:
            raise RuntimeError(f"seed model {name}: tflrnn build failed: {result.err}")
        data = out.read_bytes()
        models.append(Seed(name, "model", data, ".tflite", positions=flatbuffer_positions(data),
                           description=reader.read(data)))

    weights = []
    w, r, b = _weights()
    w2, r2, b2 = _weights(seed=1)
    w3, r3, b3 = _weights(units=4, input_size=4, seed=2)
    gw, gr, gb = _gru_weights()
    _, _, gb2 = _gru_weights(seed=1)
    kw, kr, kb = _gru_weights(units=4)  # Keras seeds declare 4 units
    lw, lr, lb = _lstm_weights()
    _, _, lb2 = _lstm_weights(seed=1)
    klw, klr, klb = _lstm_weights(units=4)
    for name, arrays, args in [
        ("npz-tflite", {"input_weights": w, "recurrent_weights": r, "bias": b}, []),
        ("npz-keras", {"kernel": w.T.copy(), "recurrent_kernel": r.T.copy(), "bias": b}, []),
        ("npz-scoped", {"enc/input_weights": w, "enc/recurrent_weights": r, "enc/bias": b,
                        "dense/kernel": w.T.copy(), "dense/bias": b}, ["--scope", "enc"]),
        ("npz-stack", {"rnn/cell_0/input_weights": w, "rnn/cell_0/recurrent_weights": r, "rnn/cell_0/bias": b,
                       "rnn/cell_1/input_weights": w3, "rnn/cell_1/recurrent_weights": r3, "rnn/cell_1/bias": b3},
         ["--layers", "2", "--units", "4"]),
        ("npz-bidirectional", {"rnn/fw/input_weights": w, "rnn/fw/recurrent_weights": r, "rnn/fw/bias": b,
                               "rnn/bw/input_weights": w2, "rnn/bw/recurrent_weights": r2, "rnn/bw/bias": b2},
         ["--bidirectional", "--units", "4"]),
        # GRUs (cells/gru.py): the same names with 3 * units rows, told apart by shape; reset after, then before
        ("npz-gru", {"input_weights": gw, "recurrent_weights": gr, "bias": gb, "recurrent_bias": gb2}, []),
        ("npz-gru-keras", {"kernel": gw.T.copy(), "recurrent_kernel": gr.T.copy(), "bias": gb}, []),
        # LSTMs (cells/lstm.py): 4 * units rows
        ("npz-lstm", {"input_weights": lw, "recurrent_weights": lr, "bias": lb}, []),
        ("npz-lstm-keras", {"kernel": lw.T.copy(), "recurrent_kernel": lr.T.copy(), "bias": lb}, []),
    ]:
        spec = {"arrays": arrays, "compressed": name == "npz-keras"}
        weights.append(Seed(name, "npz", npz_bytes(arrays, spec["compressed"]), ".npz", args, spec))

    state1 = {"rnn.weight_ih_l0": w, "rnn.weight_hh_l0": r, "rnn.bias_ih_l0": b, "rnn.bias_hh_l0": b2}
    state2 = {**state1, "rnn.weight_ih_l1": w3, "rnn.weight_hh_l1": r3, "rnn.bias_ih_l1": b3, "rnn.bias_hh_l1": b3}
    state_bi = {**state1, "rnn.weight_ih_l0_reverse": w2, "rnn.weight_hh_l0_reverse": r2,
                "rnn.bias_ih_l0_reverse": b2, "rnn.bias_hh_l0_reverse": b}
    state_gru = {"gru.weight_ih_l0": gw, "gru.weight_hh_l0": gr, "gru.bias_ih_l0": gb, "gru.bias_hh_l0": gb2}  # nn.GRU
    for name, state in (("safetensors-1", state1), ("safetensors-2layers", state2), ("safetensors-bi", state_bi),
                        ("safetensors-gru", state_gru),
                        ("safetensors-lstm", {"lstm.weight_ih_l0": lw, "lstm.weight_hh_l0": lr, "lstm.bias_ih_l0": lb,
                                              "lstm.bias_hh_l0": lb2})):
        spec = safetensors_spec(state)
        weights.append(Seed(name, "safetensors", safetensors_bytes(spec), ".safetensors", [], spec))

    for name, spec in (
        ("onnx-forward", onnx_spec(w, r, b, b2)),
        ("onnx-bidirectional", onnx_spec(np.stack([w, w2]), np.stack([r, r2]), np.stack([b, b2]),
                                         np.stack([b2, b]), direction="bidirectional", layout=1)),
        ("onnx-constant-state", onnx_spec(w, r, b, b2, zero_state="ConstantOfShape", activation="Relu",
                                          constant_node=True)),
        ("onnx-gru", onnx_spec(gw, gr, gb, gb2, op="GRU", linear_before_reset=1)),  # ONNX's GRU: gates z, r, h
        ("onnx-gru-reset-before", onnx_spec(np.stack([gw, gw]), np.stack([gr, gr]), np.stack([gb, gb2]),
                                            np.stack([gb2, gb]), direction="bidirectional", layout=1, op="GRU")),
        ("onnx-lstm", onnx_spec(lw, lr, lb, lb2, op="LSTM")),  # ONNX's LSTM: gates i, o, f, c; B = Wb then Rb
    ):
        weights.append(Seed(name, "onnx", onnx_bytes(spec), ".onnx", [], spec))

    for name, suffix, spec in (
        ("keras3-model", ".keras", keras_spec("keras3", [("SimpleRNN", "rnn", [w.T, r.T, b])])),
        ("keras3-weights", ".weights.h5", keras_spec("keras3-weights", [("SimpleRNN", "rnn", [w.T, r.T, b])])),
        ("keras3-stack", ".keras", keras_spec("keras3", [("SimpleRNN", "rnn_a", [w.T, r.T, b]),
                                                         ("SimpleRNN", "rnn_b", [w3.T, r3.T, b3])],
                                              return_sequences=[True, False])),
        ("keras3-bidirectional", ".keras", keras_spec("keras3", [("Bidirectional", "bi", [w.T, r.T, b, w2.T, r2.T,
                                                                                         b2])])),
        ("keras2-h5", ".h5", keras_spec("legacy", [("SimpleRNN", "rnn", [w.T, r.T, b]), ("Dense", "dense", [r, b])],
                                        activation="relu")),
        ("keras2-weights-h5", ".h5", keras_spec("legacy-weights", [("SimpleRNN", "rnn", [w.T, r.T])])),
        ("keras3-gru", ".keras", keras_spec("keras3", [("GRU", "gru", [kw.T, kr.T, np.stack([kb, kb])])])),
        ("keras2-gru-h5", ".h5", keras_spec("legacy", [("GRU", "gru", [kw.T, kr.T, np.stack([kb, kb])]),
                                                       ("Dense", "dense", [r, b])])),
        ("keras3-lstm", ".keras", keras_spec("keras3", [("LSTM", "lstm", [klw.T, klr.T, klb])])),
        ("keras2-lstm-h5", ".h5", keras_spec("legacy", [("LSTM", "lstm", [klw.T, klr.T, klb])])),
    ):
        weights.append(Seed(name, "keras", keras_bytes(spec), suffix, [], spec))

    configs = []
    keras_config = {
        "name": "rnn", "trainable": True,
        "dtype": {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}},
        "return_sequences": True, "return_state": False, "go_backwards": False, "stateful": False, "unroll": False,
        "zero_output_for_mask": False, "units": 4, "activation": "tanh", "use_bias": True,
        "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": None}},
        "kernel_regularizer": None, "dropout": 0.0, "recurrent_dropout": 0.0,
    }
    for name, doc in (
        ("tflite-cell", {"num_units": 4, "activation": "relu", "name": "rnn", "input_size": 3, "time_steps": 2}),
        ("keras-simple-rnn", keras_config),
        ("keras-wrapped", {"class_name": "SimpleRNN", "config": {**keras_config, "return_sequences": False}}),
        ("keras2-batch-shape", {"units": 3, "batch_input_shape": [2, 3, 5], "activation": "linear"}),
        ("stack", {"cells": [{"num_units": 4, "activation": "relu", "name": "enc/l0"},
                             {"num_units": 3, "name": "enc/l1"}],
                   "input_size": 3, "time_steps": 2, "return_sequences": False}),
        ("bidirectional", {"num_units": 3, "bidirectional": True, "merge": "none", "time_steps": "dynamic"}),
        ("int8", {"num_units": 3, "quantize": "int8", "asymmetric_inputs": True, "seed": 7, "time_major": True}),
        # Keras GRU and LSTM configs (the kind from the serialized class or a key only that kind writes)
        ("keras-gru", {"class_name": "GRU", "config": {**keras_config, "name": "gru", "recurrent_activation": "sigmoid",
                                                       "reset_after": False}}),
        ("keras-lstm", {**keras_config, "name": "lstm", "recurrent_activation": "sigmoid", "unit_forget_bias": True,
                        "cell_clip": 0.5, "time_steps": 2}),
        # TF1 LSTMCell.get_config() (TFLiteLSTMCell's is the same), its null values left out (TOML has none)
        ("tf1-lstm-cell", {"name": "lstm_cell", "trainable": True, "dtype": "float32", "num_units": 3,
                           "use_peepholes": False, "cell_clip": 0.5, "forget_bias": 1.0, "state_is_tuple": True,
                           "activation": "tanh"}),
    ):
        for suffix in (".json", ".toml"):
            text = render_json(doc) if suffix == ".json" else render_toml(doc)
            configs.append(Seed(f"{name}{suffix}", "config", text.encode(), suffix, [], doc))

    # Representative sequences for small full-int8 builds: [N, B, T, I] ([N, T, B, I] time-major), in a .npy, a
    # stored .npz or a deflated one; the seed's arguments are the model they calibrate.
    calibration = []
    draw = np.random.default_rng(5)
    for name, shape, dtype, container, fortran, args in (
        ("cal-npy", (4, 1, 3, 3), np.float32, "npy", False, ["--units", "4", "--input-size", "3", "--time-steps",
                                                             "3"]),
        ("cal-npz-batch", (3, 2, 2, 2), np.float32, "npz", False, ["--units", "3", "--input-size", "2",
                                                                   "--time-steps", "2", "--batch-size", "2"]),
        ("cal-npz-compressed-time-major", (2, 3, 1, 3), np.float64, "npz-compressed", False,
         ["--units", "3", "--input-size", "3", "--time-steps", "3", "--time-major", "--io", "int8"]),
        ("cal-npy-fortran-state-io", (3, 1, 2, 2), np.float64, "npy", True,
         ["--units", "2", "--input-size", "2", "--time-steps", "2", "--state", "io", "--bidirectional"]),
        ("cal-npz-stack-last-step", (2, 1, 4, 2), np.float32, "npz", False,
         ["--units", "3", "--input-size", "2", "--time-steps", "4", "--layers", "2", "--last-step",
          "--activation", "relu"]),
    ):
        spec = {"array": draw.standard_normal(shape).astype(dtype), "container": container, "name": "sequences",
                "fortran": fortran}
        calibration.append(Seed(name, "calibration", calibration_bytes(spec), ".npy" if container == "npy" else ".npz",
                                [*args, "--lowering", "portable", "--quantize", "full-int8"], spec))
    return {"model": models, "weights": weights, "config": configs, "calibration": calibration}
