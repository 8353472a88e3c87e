#!/usr/bin/env python3
"""Full int8 on a real task: test accuracy of a SimpleRNN classifier, Keras float, tflrnn and the converter's int8.

The classifier is trained with Keras on a UCR data set that sktime ships inside its package (no download at run
time); its test accuracy as Keras float, tflrnn float (portable), tflrnn full int8 and the converter's full int8,
on LiteRT (builtin, XNNPACK) and TFLite Micro. Run by `scripts/bench_int8.py --task`
(which writes it into BENCHMARKS.md); on its own it prints the table.

    .venv/bin/python scripts/bench_int8_task.py [--seeds N] [--datasets ItalyPowerDemand,BasicMotions]

Needs the bench extra (`pip install -e '.[bench]'`: TensorFlow, tflite-micro, sktime). The model: SimpleRNN(UNITS,
tanh) over the whole series, its last step, Dense(classes, softmax); trained seeded (Keras' seed, op determinism)
with Adam on the training split, cached under build/bench_cache/int8/ as .keras. Both int8 models are calibrated
on the same sequences, the whole training split; tflrnn's with `state="zero"`, so that each invoke starts from zeros
as the converter's (stateless) model does and as Keras' predict does.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import bench_int8 as bench  # noqa: E402
import int8_converter as conv  # noqa: E402

from tflrnn.builder import model_of  # noqa: E402
from tflrnn.writer import write  # noqa: E402

UNITS = 32
EPOCHS, BATCH, LEARNING_RATE = 150, 16, 3e-3
SEEDS = 5
DATASETS = ("ItalyPowerDemand",)
LOADERS = {"ItalyPowerDemand": "load_italy_power_demand", "BasicMotions": "load_basic_motions",
           "GunPoint": "load_gunpoint"}
MODELS = ("Keras float", "tflrnn float (portable)", "tflrnn full int8", "converter full int8")


def load(name: str):
    """(x_train [N, T, C] float32, y_train int, x_test, y_test, classes) from sktime's bundled copy of the set."""
    import warnings

    from sktime import datasets

    loader = getattr(datasets, LOADERS[name])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parts = [loader(split=split, return_X_y=True, return_type="numpy3D") for split in ("train", "test")]
    classes = sorted(set(parts[0][1]) | set(parts[1][1]))
    out = []
    for x, y in parts:
        out += [np.transpose(np.asarray(x, np.float32), (0, 2, 1)).copy(),
                np.array([classes.index(v) for v in y], np.int64)]
    return (*out, classes)


def trained(name: str, seed: int, data) -> Path:
    """The trained classifier's .keras (cached by data set, seed, hyperparameters and TensorFlow version)."""
    x_train, y_train, _, _, classes = data
    key = bench._digest("task v1", name, seed, UNITS, EPOCHS, BATCH, LEARNING_RATE, bench._tensorflow_version(),
                        x_train.tobytes(), y_train.tobytes())
    path = bench.CACHE / f"task-{name}-{seed}-{key}.keras"
    if path.exists():
        return path
    tf = conv._tf()
    keras = tf.keras
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    model = keras.Sequential([keras.Input(x_train.shape[1:]), keras.layers.SimpleRNN(UNITS),
                              keras.layers.Dense(len(classes), activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE), loss="sparse_categorical_crossentropy")
    model.fit(x_train, y_train, epochs=EPOCHS, batch_size=BATCH, shuffle=True, verbose=0)
    bench.CACHE.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.keras")
    model.save(partial)
    partial.replace(path)
    return path


def keras_predictions(path: Path, x: np.ndarray) -> np.ndarray:
    """Keras float probabilities (model.predict), cached beside the .keras."""
    cached = path.with_suffix(".predict.npy")
    if cached.exists():
        found = np.load(cached)
        if found.shape[0] == x.shape[0]:
            return found
    found = conv.load_keras(path).predict(x, batch_size=256, verbose=0).astype(np.float64)
    np.save(cached, found)
    return found


def evaluate(name: str, seed: int, data, runtimes=bench.RUNTIMES) -> dict:
    x_train, _, x_test, y_test, classes = data
    started = time.perf_counter()
    path = trained(name, seed, data)
    train_seconds = time.perf_counter() - started
    calibration = x_train[:, None]  # [N, 1, T, C]: each training series one representative sequence
    tests = x_test[:, None]
    keras_p = keras_predictions(path, x_test)
    float_network = bench.network(path, state="zero")
    models = {
        "tflrnn float (portable)": write(model_of(float_network)),
        "tflrnn full int8": bench.tflrnn_int8(path, calibration, state="zero"),
        "converter full int8": bench.converter_int8(path, bench.network(path), calibration),
    }
    row = {"dataset": name, "seed": seed, "classes": len(classes), "train": len(x_train), "test": len(x_test),
           "time_steps": x_train.shape[1], "channels": x_train.shape[2], "train_seconds": train_seconds,
           "bytes": {label: len(data) for label, data in models.items()},
           "accuracy": {"Keras float": float(np.mean(keras_p.argmax(1) == y_test))}, "flips": {}, "max_dp": {},
           "mean_dp": {}}
    for label, model in models.items():
        for runtime in runtimes:
            p = np.concatenate(bench.outputs(model, tests, runtime))
            row["accuracy"][f"{label} / {runtime}"] = float(np.mean(p.argmax(1) == y_test))
            row["flips"][f"{label} / {runtime}"] = int(np.sum(p.argmax(1) != keras_p.argmax(1)))
            row["max_dp"][f"{label} / {runtime}"] = float(np.abs(p - keras_p).max())
            row["mean_dp"][f"{label} / {runtime}"] = float(np.abs(p - keras_p).mean())
    row["meets"] = all(row["accuracy"][f"tflrnn full int8 / {r}"] >= row["accuracy"][f"converter full int8 / {r}"]
                       for r in runtimes)
    return row


def task(datasets=DATASETS, seeds: int = SEEDS, runtimes=bench.RUNTIMES, progress=None) -> list[dict]:
    """One row per data set and training seed (see `evaluate`)."""
    rows = []
    for name in datasets:
        data = load(name)
        for seed in range(seeds):
            started = time.perf_counter()
            rows.append(evaluate(name, seed, data, runtimes))
            if progress:
                acc = rows[-1]["accuracy"]
                progress(f"{name} seed {seed}: " + ", ".join(f"{k} {v:.4f}" for k, v in acc.items())
                         + f" ({time.perf_counter() - started:.0f} s)")
    return rows


def markdown(rows: list[dict]) -> str:
    runtimes = [r for r in bench.RUNTIMES if any(f"tflrnn full int8 / {r}" in row["accuracy"] for row in rows)]
    lines = ["### A real task (issue 18)", "",
             f"A Keras SimpleRNN({UNITS}, tanh) classifier (its last step, then Dense(classes, softmax)) trained on "
             "a UCR data set that sktime ships inside its package, one model per training seed (Adam "
             f"{LEARNING_RATE:g}, {EPOCHS} epochs, batch {BATCH}); saved as `.keras`, from which tflrnn builds its "
             "float model (`--lowering portable --state zero`) and its full int8 one (`--quantize full-int8 "
             "--state zero --calibration`, the whole training split) and the converter its full int8 one (the same "
             "calibration sequences). Test accuracy; in parentheses, the number of test series whose predicted class "
             "differs from Keras float's, and the mean |probability - Keras float's|. Every invoke starts from zeros, "
             "as `model.predict` does.", ""]
    for name in dict.fromkeys(row["dataset"] for row in rows):
        mine = [row for row in rows if row["dataset"] == name]
        r0 = mine[0]
        lines += [f"**{name}**: {r0['train']} training and {r0['test']} test series of {r0['time_steps']} steps x "
                  f"{r0['channels']} channel(s), {r0['classes']} classes. tflrnn's int8 accuracy at least the "
                  f"converter's on every runtime: {sum(row['meets'] for row in mine)} of {len(mine)} seeds.", "",
                  f"Over the {len(mine)} seeds, mean accuracy (and mean |probability - Keras float's|):", "",
                  "| model | " + " | ".join(runtimes) + " |", "|---|" + "---|" * len(runtimes),
                  "| Keras float | " + " | ".join(f"{np.mean([row['accuracy']['Keras float'] for row in mine]):.4f}"
                                                 for _ in runtimes) + " |"]
        for label in MODELS[1:]:
            lines.append(f"| {label} | " + " | ".join(
                f"{np.mean([row['accuracy'][f'{label} / {r}'] for row in mine]):.4f} "
                f"({np.mean([row['mean_dp'][f'{label} / {r}'] for row in mine]):.4f})" for r in runtimes) + " |")
        lines += ["", "| seed | model | file | " + " | ".join(runtimes) + " |",
                  "|---|---|---|" + "---|" * len(runtimes)]
        for row in mine:
            lines.append(f"| {row['seed']} | Keras float (`model.predict`) | | "
                         + " | ".join(f"{row['accuracy']['Keras float']:.4f}" for _ in runtimes) + " |")
            for label in MODELS[1:]:
                cells = [f"{row['accuracy'][f'{label} / {r}']:.4f} ({row['flips'][f'{label} / {r}']}; "
                         f"{row['mean_dp'][f'{label} / {r}']:.4f})" for r in runtimes]
                lines.append(f"| {row['seed']} | {label} | {row['bytes'][label]:,} B | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines).rstrip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=SEEDS)
    parser.add_argument("--datasets", default=",".join(DATASETS), help=f"Any of {', '.join(LOADERS)}.")
    parser.add_argument("--quick", action="store_true", help="LiteRT builtin only.")
    args = parser.parse_args()
    rows = task([d.strip() for d in args.datasets.split(",")], args.seeds,
                bench.QUICK_RUNTIMES if args.quick else bench.RUNTIMES, progress=lambda line: print(line, flush=True))
    print(markdown(rows))


if __name__ == "__main__":
    main()
