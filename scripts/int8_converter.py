#!/usr/bin/env python3
"""Baseline: TensorFlow's converter making a full-integer int8 model (float interface) of a Keras SimpleRNN network.

converter_full_int8_keras(model or .keras path, calibration) converts any network tflrnn reads from Keras (stacks,
relu, Bidirectional, the last step, Dense heads), unrolled; keras_network + seeded_weights make such a model with
seeded weights (save it as .keras and build tflrnn's model from the same file: both have the same weights).
converter_full_int8(weights, ...) takes [(W [units, input], R [units, units], b [units]), ...], one tuple per
stacked SimpleRNN layer. TensorFlow is imported only inside these, so runtime-only use (and the arena trials) stays
fast.

    .venv/bin/python scripts/int8_converter.py        # the demo
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@contextlib.contextmanager
def _quiet():
    """Send fds 1 and 2 (the converter's C++ and Keras' export chatter) to a temp file; replay it if we fail."""
    sys.stdout.flush(), sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1), os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            sink.seek(0)
            os.write(saved[1], sink.read())
            raise
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            os.close(saved[0]), os.close(saved[1])


def _tf():
    """TensorFlow, imported quietly (importing it prints absl/oneDNN notices despite TF_CPP_MIN_LOG_LEVEL)."""
    with _quiet():
        import tensorflow as tf
    tf.get_logger().setLevel("ERROR")
    return tf


def keras_network(*, input_size, time_steps, layers, last_step=False, head=(), batch_size=1, unroll=True):
    """A Keras model of the shapes tflrnn builds: `layers` is a list of (units, activation, bidirectional), one
    per SimpleRNN (or Bidirectional(SimpleRNN), merge concat) layer in a chain, each returning its sequence except
    the last with `last_step`; `head` a list of (units, activation) Dense layers after them. unroll=True: the
    converter cannot full-int8 the WHILE loop of the rolled graph. The weights are Keras' initial ones: set them
    with `seeded_weights`."""
    tf = _tf()
    keras = tf.keras
    x = inputs = keras.Input(shape=(time_steps, input_size), batch_size=batch_size)
    for k, (units, activation, bidirectional) in enumerate(layers):
        sequences = not (last_step and k == len(layers) - 1)
        rnn = keras.layers.SimpleRNN(units, activation=activation, return_sequences=sequences, unroll=unroll)
        x = (keras.layers.Bidirectional(rnn, merge_mode="concat") if bidirectional else rnn)(x)
    for units, activation in head:
        x = keras.layers.Dense(units, activation=activation)(x)
    return keras.Model(inputs, x)


def seeded_weights(model, seed: int) -> list[np.ndarray]:
    """Draw every weight of a keras_network model from numpy (the same for any Keras version), as Keras'
    initializers draw them: kernels glorot-uniform, recurrent kernels orthogonal; biases N(0, 0.1) rather than
    Keras' zeros, so that the biases' quantization is measured too. Sets them on the model and returns them."""
    rng = np.random.default_rng(seed)

    def glorot(shape):
        limit = np.sqrt(6 / (shape[0] + shape[1]))
        return rng.uniform(-limit, limit, shape)

    def orthogonal(n):
        q, r = np.linalg.qr(rng.standard_normal((n, n)))
        return q * np.sign(np.diag(r))

    drawn = []
    for variable in model.weights:
        shape, name = tuple(variable.shape), variable.path if hasattr(variable, "path") else variable.name
        if "recurrent_kernel" in name:
            drawn.append(orthogonal(shape[0]))
        elif len(shape) == 2:
            drawn.append(glorot(shape))
        else:
            drawn.append(0.1 * rng.standard_normal(shape))
    drawn = [a.astype(np.float32) for a in drawn]
    model.set_weights(drawn)
    return drawn


def _for_converter(config, batch_size):
    """A Keras model config with every SimpleRNN unrolled and the input's batch fixed (walks the nested dicts)."""
    if isinstance(config, dict):
        config = {key: _for_converter(value, batch_size) for key, value in config.items()}
        if config.get("class_name") == "SimpleRNN" and isinstance(config.get("config"), dict):
            config["config"]["unroll"] = True
        for key in ("batch_shape", "batch_input_shape"):
            if isinstance(config.get(key), (list, tuple)) and config[key]:
                config[key] = [batch_size, *config[key][1:]]
        return config
    if isinstance(config, (list, tuple)):
        return type(config)(_for_converter(value, batch_size) for value in config)
    return config


def load_keras(path):
    return _tf().keras.models.load_model(path, compile=False)


def converter_full_int8_keras(model, calibration, *, batch_size=1) -> bytes:
    """The converter's full-int8 flatbuffer (float in and out) of a Keras model (or a .keras path): rebuilt with
    every SimpleRNN unrolled (the converter cannot full-int8 the rolled WHILE loop) and a fixed batch, the same
    weights. calibration: [N, batch, T, I], each sequence one representative sample (the converter's model keeps no
    state: each starts from zeros)."""
    import warnings

    tf = _tf()
    if not hasattr(model, "get_config"):
        model = load_keras(model)
    rebuilt = model.__class__.from_config(_for_converter(model.get_config(), batch_size))
    rebuilt.set_weights(model.get_weights())
    converter = tf.lite.TFLiteConverter.from_keras_model(rebuilt)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    calibration = np.asarray(calibration, np.float32)
    converter.representative_dataset = lambda: ([sample] for sample in calibration)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.float32  # float interface, like the tflrnn model it is compared with
    converter.inference_output_type = tf.float32
    with _quiet(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bytes(converter.convert())


def converter_full_int8(weights, calibration, *, time_steps, batch_size=1, activation="tanh") -> bytes:
    """The converter's full-int8 flatbuffer of the stacked SimpleRNN (return_sequences=True), float in and out,
    from [(W [units, input], R [units, units], b [units]), ...]."""
    model = keras_network(input_size=weights[0][0].shape[1], time_steps=time_steps, batch_size=batch_size,
                          layers=[(W.shape[0], activation, False) for W, _, _ in weights])
    # Keras stores the transposes: kernel [input, units]
    model.set_weights([a for W, R, b in weights for a in (np.asarray(W, np.float32).T, np.asarray(R, np.float32).T,
                                                          np.asarray(b, np.float32))])
    return converter_full_int8_keras(model, calibration, batch_size=batch_size)


def run_litert(model_bytes, xs, xnnpack=True) -> list[np.ndarray]:
    """One invoke per x on LiteRT (XNNPACK via OpResolverType.AUTO, or the plain builtin kernels), one thread."""
    interpreter = _litert(model_bytes, xnnpack)
    inp, out = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]
    results = []
    for x in xs:
        interpreter.set_tensor(inp, np.asarray(x, np.float32))
        interpreter.invoke()
        results.append(interpreter.get_tensor(out).astype(np.float32))
    return results


def _litert(model_bytes, xnnpack):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interpreter = Interpreter(model_content=bytes(model_bytes), num_threads=1, experimental_op_resolver_type=resolver)
    interpreter.allocate_tensors()
    return interpreter


def run_micro(model_bytes, xs, arena_size=None) -> list[np.ndarray]:
    """One invoke per x on TFLite Micro. The converter's model has no variable tensors, so invokes are independent.
    arena_size defaults to a generous max(1 MiB, 10 x the file)."""
    from tflite_micro.python.tflite_micro import runtime as tflm

    arena_size = arena_size or max(1 << 20, 10 * len(model_bytes))
    interpreter = tflm.Interpreter.from_bytes(bytes(model_bytes), arena_size=arena_size)
    results = []
    for x in xs:
        interpreter.set_input(np.asarray(x, np.float32), 0)
        interpreter.invoke()
        results.append(np.array(interpreter.get_output(0), np.float32))
    return results


def _micro_trial(model_bytes, arena_size) -> bool:
    """Whether the model allocates and invokes once in `arena_size` bytes. In a child process: a too-small arena
    usually raises RuntimeError('TFLM failed to allocate tensors'), but some sizes segfault the process."""
    done = subprocess.run([sys.executable, os.path.abspath(__file__), "--micro-trial", str(arena_size)],
                          input=bytes(model_bytes), capture_output=True, timeout=120)
    return done.returncode == 0 and done.stdout.strip().endswith(b"ok")


def micro_min_arena(model_bytes) -> int:
    """The smallest TFLite Micro arena_size (bytes, 16-byte granularity) in which from_bytes and one invoke succeed,
    bisected between 1 KiB and 64 MiB.

    Found (tflite_micro's Python runtime): a too-small arena mostly fails cleanly (TFLM prints 'Failed to allocate
    tail memory...' and from_bytes raises RuntimeError 'TFLM failed to allocate tensors'), but some sizes below the
    minimum SEGFAULT the process: for the demo model (minimum 37440) 39 of the 16-byte steps in 18608..28112
    crashed (those re-tried in fresh processes crashed again); TFLM's log there shows its free space underflowing ('available
    4294967288'). So every trial runs in a child process (this file, --micro-trial); a crash counts as too small.
    A scan of every 16-byte step 1 KiB..37440 found no success below the minimum, so bisection is sound there.
    """
    lo, hi = 1024 // 16, (64 << 20) // 16  # in 16-byte units; invariant: lo fails (or untested), hi succeeds
    if not _micro_trial(model_bytes, hi * 16):
        raise RuntimeError("the model does not run on TFLite Micro even with a 64 MiB arena")
    if _micro_trial(model_bytes, lo * 16):
        return lo * 16
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if _micro_trial(model_bytes, mid * 16) else (mid, hi)
    return hi * 16


def float_reference(weights, x) -> np.ndarray:
    """float64 h_t = tanh(x_t W^T + h_{t-1} R^T + b) through the stack; x [B, T, I], zero initial state;
    the last layer's whole sequence [B, T, units]."""
    seq = np.asarray(x, np.float64)
    for W, R, b in weights:
        W, R, b = (np.asarray(a, np.float64) for a in (W, R, b))
        h, outs = np.zeros((seq.shape[0], W.shape[0])), []
        for t in range(seq.shape[1]):
            h = np.tanh(seq[:, t] @ W.T + h @ R.T + b)
            outs.append(h)
        seq = np.stack(outs, axis=1)
    return seq


def _median_invoke_us(model_bytes, x, xnnpack, runs=200) -> float:
    interpreter = _litert(model_bytes, xnnpack)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], np.asarray(x, np.float32))
    for _ in range(20):  # warm-up
        interpreter.invoke()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        interpreter.invoke()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def _demo():
    U, I, T = 32, 16, 20
    rng = np.random.default_rng(0)
    limit = np.sqrt(6 / (I + U))  # glorot-uniform
    W = rng.uniform(-limit, limit, (U, I)).astype(np.float32)
    R = np.linalg.qr(rng.standard_normal((U, U)))[0].astype(np.float32)  # orthogonal, like Keras' recurrent init
    b = (0.1 * rng.standard_normal(U)).astype(np.float32)
    weights = [(W, R, b)]
    calibration = np.random.default_rng(1).standard_normal((64, 1, T, I)).astype(np.float32)
    tests = np.random.default_rng(2).standard_normal((8, 1, T, I)).astype(np.float32)

    model = converter_full_int8(weights, calibration, time_steps=T)
    print(f"converter full-int8 model: {len(model)} bytes")
    expected = [float_reference(weights, x) for x in tests]
    for name, outputs in [("litert xnnpack", run_litert(model, tests, xnnpack=True)),
                          ("litert builtin", run_litert(model, tests, xnnpack=False)),
                          ("micro", run_micro(model, tests))]:
        err = np.abs(np.stack(outputs) - np.stack(expected))
        print(f"{name:15s} max abs err {err.max():.4f}  mean abs err {err.mean():.4f}")
    arena = micro_min_arena(model)
    same = all(np.array_equal(a, c) for a, c in zip(run_micro(model, tests, arena), run_micro(model, tests)))
    print(f"micro min arena: {arena} bytes (outputs at that size identical to a 1 MiB arena: {same})")
    for xnnpack in (True, False):
        print(f"litert {'xnnpack' if xnnpack else 'builtin'} invoke: median "
              f"{_median_invoke_us(model, tests[0], xnnpack):.1f} us over 200")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--micro-trial"]:  # child of _micro_trial: model bytes on stdin
        from tflite_micro.python.tflite_micro import runtime as tflm

        interpreter = tflm.Interpreter.from_bytes(sys.stdin.buffer.read(), arena_size=int(sys.argv[2]))
        shape = interpreter.get_input_details(0)["shape"]
        interpreter.set_input(np.zeros(shape, interpreter.get_input_details(0)["dtype"]), 0)
        interpreter.invoke()
        print("ok")
    else:
        _demo()
