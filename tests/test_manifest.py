"""`tflrnn build --manifest`: many models in parallel, reports, reproducibility, drift checks, interruption."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import numpy as np
import pytest

import tflrnn
from support import assert_clean_error, random_weights, run_without, write_onnx_rnn
from tflrnn.config import load_schema
from tflrnn.manifest import REPORT_SCHEMA

MANIFEST = """
[defaults]
time_steps = 6
activation = "tanh"

[[models]]
name = "seeded"
units = 16
input_size = 8

[[models]]
name = "time_major"
units = 8
time_major = true
batch_size = 2

[[models]]
name = "trained"
weights = "w.npz"
activation = "relu"

[[models]]
name = "broken"
units = 8
activation = "sigmoid"
"""


@pytest.fixture
def manifest(tmp_path):
    w, r, b = random_weights(5, 3)
    np.savez(tmp_path / "w.npz", input_weights=w, recurrent_weights=r, bias=b)
    path = tmp_path / "models.toml"
    path.write_text(MANIFEST)
    return path


def test_builds_verifies_and_reports_every_model(tmp_path, cli, manifest):
    import jsonschema

    out = tmp_path / "out"
    result = cli("build", "--manifest", manifest, "--out-dir", out)

    assert result.code == 1  # one entry fails; the rest are still built
    lines = result.out.strip().splitlines()
    assert sum(line.startswith("[") for line in lines) == 4  # plain progress lines off a terminal
    assert any("broken: error: activation 'sigmoid'" in line for line in lines)
    assert lines[-1].startswith(f"{out}: 3 of 4 models passed; failed: broken")
    assert sorted(p.name for p in out.iterdir()) == ["SHA256SUMS", "report.json", "report.md", "seeded.tflite",
                                                     "time_major.tflite", "trained.tflite"]
    import hashlib

    sums = (out / "SHA256SUMS").read_text().splitlines()
    assert sums == sorted(sums) and len(sums) == 3
    for line in sums:
        digest, name = line.split("  ")
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
        assert tflrnn.verify(out / name).passed

    report = json.loads((out / "report.json").read_text())
    jsonschema.validate(report, load_schema(REPORT_SCHEMA))
    assert report["passed"] is False
    by_name = {m["name"]: m for m in report["models"]}
    assert by_name["time_major"]["input_shape"] == [6, 2, 8] and by_name["trained"]["activation"] == "relu"
    assert by_name["broken"]["file"] is None and "sigmoid" in by_name["broken"]["error"]
    assert all(by_name[n]["passed"] and by_name[n]["max_abs_error"] < 1e-5 for n in ("seeded", "trained"))
    table = (out / "report.md").read_text()
    assert "## tflrnn: 3 of 4 models passed" in table and "| seeded | [1, 6, 8] | [1, 6, 16] | tanh |" in table


def test_same_manifest_gives_byte_identical_artifacts(tmp_path, cli, manifest):
    cli("build", "--manifest", manifest, "--out-dir", tmp_path / "a", "--jobs", 1)
    cli("build", "--manifest", manifest, "--out-dir", tmp_path / "b")
    for name in ("SHA256SUMS", "report.json", "report.md", "seeded.tflite", "time_major.tflite", "trained.tflite"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_check_detects_drift(tmp_path, cli, manifest):
    manifest.write_text(MANIFEST.split('[[models]]\nname = "broken"')[0])
    out = tmp_path / "out"
    assert cli("build", "--manifest", manifest, "--out-dir", out).code == 0
    up_to_date = cli("build", "--manifest", manifest, "--out-dir", out, "--check")
    assert up_to_date.code == 0 and up_to_date.out.strip().endswith(f"{out}: up to date")

    manifest.write_text(manifest.read_text().replace("units = 16", "units = 17"))
    (out / "old_model.tflite").write_bytes((out / "seeded.tflite").read_bytes())
    drifted = cli("build", "--manifest", manifest, "--out-dir", out, "--check", "--json")
    assert drifted.code == 1
    verdict = json.loads(drifted.out)
    assert verdict["up_to_date"] is False
    assert any("seeded: " in line and "differs from a rebuild" in line for line in verdict["drift"])
    assert any("old_model.tflite is not in the manifest" in line for line in verdict["drift"])


@pytest.mark.parametrize(
    "text, fragment",
    [
        ('[[models]]\nname = "a b"\nunits = 4\n', "key 'models/0/name'"),
        ('[[models]]\nname = "a"\nunit = 4\n', "unknown key 'unit' at key 'models/0'; did you mean 'units'?"),
        ("models = []\n", "key 'models'"),
        ('[defaults]\nbatch = 2\n[[models]]\nname = "a"\nunits = 4\n', "unknown key 'batch' at key 'defaults'; did you mean"),
        ('[[models]]\nname = "a"\nunits = 4\n[[models]]\nname = "a"\nunits = 5\n', "two models are named 'a'"),
    ],
)
def test_invalid_manifests(tmp_path, cli, text, fragment):
    path = tmp_path / "m.toml"
    path.write_text(text)
    assert_clean_error(cli("build", "--manifest", path, "--out-dir", tmp_path / "out"), fragment)
    assert not (tmp_path / "out").exists()


def test_manifest_excludes_single_model_options(tmp_path, cli, manifest):
    assert_clean_error(cli("build", "--manifest", manifest, "--units", 4), "drop --units")
    assert_clean_error(cli("build", "--units", 4, "--check"), "--check and --jobs go with --manifest")


def test_progress_bar_on_a_terminal(tmp_path, manifest):
    import pty

    controller, terminal = pty.openpty()
    result = subprocess.run(
        [sys.executable, "-m", "tflrnn", "build", "--manifest", str(manifest), "--out-dir", str(tmp_path / "out")],
        stdout=subprocess.PIPE, stderr=terminal, timeout=300,
    )
    os.close(terminal)
    shown = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(controller)
    assert result.returncode == 1
    assert b"building 4 models" in shown
    assert b"[1/4]" not in result.stdout  # the bar replaces the plain lines


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_leaves_no_partial_artifact(tmp_path, signum):
    models = "".join(f'[[models]]\nname = "m{i}"\nunits = 512\ntime_steps = 400\nseed = {i}\n' for i in range(12))
    path = tmp_path / "big.toml"
    path.write_text(models)
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "tflrnn", "build", "--manifest", str(path), "--out-dir",
                                str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2.5)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=300)

    if process.returncode == 130:
        assert stderr.strip().splitlines()[-1] == "tflrnn: error: interrupted"
        assert "Traceback" not in stderr
    else:  # it finished before the signal landed: nothing to clean up, and that is fine too
        assert process.returncode == 0, stderr
    leftovers = [p.name for p in out.iterdir() if p.name.endswith(".part")] if out.exists() else []
    assert leftovers == []
    for model in out.glob("*.tflite") if out.exists() else []:
        assert tflrnn.inspect(model).bytes == model.stat().st_size  # whole files only


def _safetensors_entry(tmp_path, against: str = "") -> Path:
    from safetensors.numpy import save_file

    w, r, b = random_weights(5, 3)
    save_file({"rnn.weight_ih_l0": w, "rnn.weight_hh_l0": r, "rnn.bias_ih_l0": b, "rnn.bias_hh_l0": b},
              str(tmp_path / "rnn.safetensors"))
    path = tmp_path / "models.toml"
    path.write_text(f'[[models]]\nname = "torch_rnn"\nweights = "rnn.safetensors"\ntime_steps = 4\n{against}')
    return path


def test_a_comparison_whose_framework_is_missing_is_skipped(tmp_path):
    """A safetensors source reads without torch; its automatic comparison needs torch, so it is skipped with the
    extra to install, and the model is still built and verified."""
    manifest = _safetensors_entry(tmp_path)
    result = run_without("torch", ["build", "--manifest", manifest, "--out-dir", tmp_path / "out"])
    assert result.returncode == 0, result.stderr
    assert "torch_rnn: pass" in result.stdout and "comparison skipped: running a safetensors source needs torch: " \
        "pip install 'tflrnn[torch]'" in result.stdout
    (model,) = json.loads((tmp_path / "out" / "report.json").read_text())["models"]
    assert model["passed"] and model["against"] is None and "tflrnn[torch]" in model["against_skipped"]
    assert "comparison skipped" in (tmp_path / "out" / "report.md").read_text()
    assert tflrnn.verify(tmp_path / "out" / "torch_rnn.tflite").passed

    # Asked for explicitly, the comparison is required: without torch the entry fails.
    manifest = _safetensors_entry(tmp_path, "against = true\n")
    result = run_without("torch", ["build", "--manifest", manifest, "--out-dir", tmp_path / "out2"])
    assert result.returncode == 1
    (model,) = json.loads((tmp_path / "out2" / "report.json").read_text())["models"]
    assert not model["passed"] and "pip install 'tflrnn[torch]'" in model["error"]


def test_report_is_the_same_wherever_the_manifest_lies(tmp_path, cli):
    import jsonschema

    reports = []
    for place in ("a", "b/deeper"):
        directory = tmp_path / place
        (directory / "sources").mkdir(parents=True)
        (directory / "manifests").mkdir()
        write_onnx_rnn(directory / "manifests" / "rnn.onnx", dims=[5, 1, 3])
        write_onnx_rnn(directory / "sources" / "beside.onnx", dims=[5, 1, 3])  # outside the manifest's folder
        (directory / "manifests" / "models.toml").write_text(
            '[[models]]\nname = "onnx_rnn"\nweights = "rnn.onnx"\n\n'
            '[[models]]\nname = "beside"\nweights = "../sources/beside.onnx"\n\n'
            '[[models]]\nname = "missing"\nweights = "gone.npz"\n')
        cli("build", "--manifest", directory / "manifests" / "models.toml", "--out-dir", directory / "out")
        reports.append((directory / "out" / "report.json").read_bytes())
    assert reports[0] == reports[1]
    report = json.loads(reports[0])
    jsonschema.validate(report, load_schema(REPORT_SCHEMA))
    onnx_rnn, beside, missing = report["models"]
    assert onnx_rnn["passed"] and onnx_rnn["against"]["source"] == "rnn.onnx"
    assert beside["passed"] and beside["against"]["source"] == "../sources/beside.onnx"
    assert missing["error"] == "weights file not found: gone.npz"
    assert str(tmp_path) not in reports[0].decode()


def test_drift_names_both_digests(tmp_path, cli, manifest):
    manifest.write_text(MANIFEST.split('[[models]]\nname = "broken"')[0])
    out = tmp_path / "out"
    assert cli("build", "--manifest", manifest, "--out-dir", out).code == 0
    committed = hashlib.sha256((out / "seeded.tflite").read_bytes()).hexdigest()
    manifest.write_text(manifest.read_text().replace("units = 16", "units = 17"))
    drifted = cli("build", "--manifest", manifest, "--out-dir", out, "--check")
    rebuilt = tflrnn.build(tflrnn.RNNCell(17), input_size=8, time_steps=6)
    line = next(line for line in drifted.out.splitlines() if line.startswith("drift: seeded"))
    assert f"committed sha256 {committed[:12]}, rebuild {hashlib.sha256(rebuilt).hexdigest()[:12]}" in line


def test_manifest_builds_multi_layer_weights(tmp_path, cli):
    w0, w1 = random_weights(5, 3, seed=1), random_weights(5, 5, seed=2)
    names = ("input_weights", "recurrent_weights", "bias")
    np.savez(tmp_path / "w.npz", **{f"rnn/cell_0/{n}": a for n, a in zip(names, w0)},
             **{f"rnn/cell_1/{n}": a for n, a in zip(names, w1)})
    (tmp_path / "m.toml").write_text('[[models]]\nname = "stack"\nunits = 5\nlayers = 2\nweights = "w.npz"\n')
    result = cli("build", "--manifest", tmp_path / "m.toml", "--out-dir", tmp_path / "out")
    assert result.code == 0, result.out


def test_a_hybrid_classifier_is_built_and_verified_without_the_comparison(tmp_path, cli):
    """verify cannot compare a hybrid model with Dense layers against its source (the int8 rounding compounds):
    the manifest asks verify's own rule and leaves the comparison out, rather than failing the entry."""
    keras = pytest.importorskip("keras", reason="needs the test extra")
    model = keras.Sequential([keras.Input((4, 3)), keras.layers.SimpleRNN(5, return_sequences=True),
                              keras.layers.Dense(2, activation="softmax")])
    model.save(tmp_path / "classifier.keras")
    (tmp_path / "m.toml").write_text('[[models]]\nname = "q"\nweights = "classifier.keras"\nquantize = "int8"\n')
    result = cli("build", "--manifest", tmp_path / "m.toml", "--out-dir", tmp_path / "out")
    assert result.code == 0, result.out
    (entry,) = json.loads((tmp_path / "out" / "report.json").read_text())["models"]
    assert entry["passed"] and entry["against"] is None



# The portable and full-int8 keys: each entry's model has what its keys asked for -----------------------------------


def _graph(path: Path):
    """Subgraph 0 of a built file as tflrnn's own reader sees it."""
    from tflrnn.reader import read

    return read(path.read_bytes()).subgraphs[0]


def _ops(graph) -> list[str]:
    from tflrnn.model import op_name

    return [op_name(op.code) for op in graph.operators]


def _fits(fmt, values: np.ndarray) -> bool:
    """An int8 format (real = scale (q - zero_point)) is the values' range: it holds all of them, to within half a
    step (the zero point is a whole number, so an end may move by up to that), with a step at most 1.5 times the
    finest that would (the range over 255: not another range)."""
    (scale,), (zero_point,) = fmt.scale, fmt.zero_point
    low, high = scale * (-128 - zero_point), scale * (127 - zero_point)
    return (low <= values.min() + scale / 2 and high >= values.max() - scale / 2
            and scale <= 1.5 * np.ptp(values) / 255)


def test_calibration_io_and_full_int8_keys(tmp_path, cli):
    """A full-int8 entry whose calibration path is relative to the manifest (built from another directory), with
    an int8 interface and without; the input's format is the calibration data's range (read from that file)."""
    from tflrnn.model import BuiltinOperator as Op

    (tmp_path / "data").mkdir()
    calibration = np.random.default_rng(7).uniform(-3.0, 5.0, (12, 1, 5, 3)).astype(np.float32)
    np.save(tmp_path / "data" / "cal.npy", calibration)
    manifest = tmp_path / "models.toml"
    manifest.write_text('[defaults]\nunits = 6\ninput_size = 3\ntime_steps = 5\nlowering = "portable"\n'
                        'quantize = "full-int8"\ncalibration = "data/cal.npy"\n\n'
                        '[[models]]\nname = "int8_io"\nio = "int8"\n\n'
                        '[[models]]\nname = "float_io"\n')
    result = cli("build", "--manifest", manifest, "--out-dir", tmp_path / "out")
    assert result.code == 0, result.out
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [(m["name"], m["passed"]) for m in report["models"]] == [("int8_io", True), ("float_io", True)]

    for name, edge in (("int8_io", "int8"), ("float_io", "float32")):
        graph = _graph(tmp_path / "out" / f"{name}.tflite")
        x, y = graph.tensors[graph.inputs[0]], graph.tensors[graph.outputs[0]]
        assert (x.dtype, y.dtype) == (edge, edge), name
        assert ("QUANTIZE" in _ops(graph)) == (edge == "float32") and ("DEQUANTIZE" in _ops(graph)) == (
            edge == "float32"), name
        weights = {t.name: t.dtype for t in graph.tensors if t.data is not None}
        # a float input is QUANTIZEd to int16, whose 16x8 projection adds an int64 bias and writes int16
        wide = edge == "float32"
        assert (weights["rnn/input_weights"], weights["rnn/recurrent_weights"], weights["rnn/bias"]) == (
            "int8", "int8", "int64" if wide else "int32") and "float32" not in weights.values(), name
        computed = [graph.tensors[i] for op in graph.operators if op.code in (Op.FULLY_CONNECTED, Op.ADD, Op.TANH)
                    for i in op.outputs]
        assert len(computed) == 1 + 3 * 5 and [t.dtype for t in computed].count("int16") == wide and all(
            t.dtype == "int8" for t in computed[1:]), name  # and every step
        quantized_input = x if edge == "int8" else next(graph.tensors[op.outputs[0]] for op in graph.operators
                                                        if op.code == Op.QUANTIZE)
        if wide:  # int16, zero point 0, over twice the data's largest |x|
            (scale,), (zero,) = quantized_input.quantization.scale, quantized_input.quantization.zero_point
            assert zero == 0 and abs(scale * 32767 / (2 * np.abs(calibration).max()) - 1) < 1e-6, name
        else:
            assert _fits(quantized_input.quantization, calibration), (name, quantized_input.quantization)


def test_recurrence_key_loops_or_unrolls(tmp_path, cli):
    """Small cells that `auto` unrolls: `recurrence = "loop"` writes a WHILE loop, "unrolled" none; both verify."""
    manifest = tmp_path / "models.json"
    manifest.write_text(json.dumps({
        "defaults": {"units": 4, "input_size": 3, "time_steps": 6, "lowering": "portable"},
        "models": [{"name": "loop", "recurrence": "loop"}, {"name": "unrolled", "recurrence": "unrolled"},
                   {"name": "auto"}]}))
    result = cli("build", "--manifest", manifest, "--out-dir", tmp_path / "out")
    assert result.code == 0, result.out
    whiles = {name: _ops(_graph(tmp_path / "out" / f"{name}.tflite")).count("WHILE")
              for name in ("loop", "unrolled", "auto")}
    assert whiles == {"loop": 1, "unrolled": 0, "auto": 0}
    assert all(m["passed"] for m in json.loads((tmp_path / "out" / "report.json").read_text())["models"])


@pytest.mark.tensorflow
def _keras_int8_entry(tmp_path, extra: str = "") -> Path:
    keras = pytest.importorskip("keras", reason="needs the test extra")
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((5, 3)), keras.layers.SimpleRNN(6, return_sequences=True),
                              keras.layers.Dense(2, activation="softmax")])
    model.save(tmp_path / "s.keras")
    np.save(tmp_path / "cal.npy", np.random.default_rng(8).standard_normal((12, 1, 5, 3)).astype(np.float32))
    np.save(tmp_path / "data.npy", np.random.default_rng(9).standard_normal((6, 1, 5, 3)).astype(np.float32))
    (tmp_path / "m.toml").write_text('[[models]]\nname = "k"\nweights = "s.keras"\nlowering = "portable"\n'
                                     'quantize = "full-int8"\ncalibration = "cal.npy"\n' + extra)
    return tmp_path / "m.toml"


@pytest.mark.tensorflow
def test_a_full_int8_keras_entry_is_compared_with_its_source_through_its_float_model(tmp_path, cli):
    """Where TensorFlow is installed the manifest compares an entry with its source by default. A full-int8 model
    is not the source's float arithmetic, so the float model built beside it is compared with Keras (issue 19:
    this entry used to fail with a refusal), and the int8 model is held to the float weights."""
    manifest = _keras_int8_entry(tmp_path)
    result = cli("build", "--manifest", manifest, "--out-dir", tmp_path / "out")
    assert result.code == 0, result.out
    (entry,) = json.loads((tmp_path / "out" / "report.json").read_text())["models"]
    assert entry["passed"] and entry["against"]["format"] == "keras" and entry["output_shape"] == [1, 5, 2]
    graph = _graph(tmp_path / "out" / "k.tflite")
    assert "SOFTMAX" in _ops(graph) and all(t.dtype != "float32" for t in graph.tensors if t.data is not None)
    report = tflrnn.verify(tmp_path / "out" / "k.tflite", weights=tmp_path / "s.keras")
    steps = [c for c in report.checks if c.name == "int8.steps"]
    assert report.passed and steps and all("of the float model (--weights)" in c.detail for c in steps)


def test_data_and_max_error_gate_an_entry(tmp_path, cli):
    """`data` and `max_error`: the entry is run over the user's sequences (a path relative to the manifest) and
    fails when an output is further from the float model than the bound, so CI fails when a re-calibration
    degrades a model."""
    manifest = _keras_int8_entry(tmp_path, 'against = false\ndata = "data.npy"\nmax_error = 0.5\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = cli("build", "--manifest", manifest, "--out-dir", tmp_path / "out", "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    jsonschema.validate(report, load_schema(REPORT_SCHEMA))
    (entry,) = report["models"]
    assert entry["passed"] and 0 < entry["max_abs_error"] < 0.5
    manifest.write_text(manifest.read_text().replace("max_error = 0.5", "max_error = 0.0001"))
    failed = cli("build", "--manifest", manifest, "--out-dir", tmp_path / "out2")
    assert failed.code == 1 and "k: FAIL" in failed.err + failed.out
    assert "data" in (tmp_path / "out2" / "report.md").read_text()


@pytest.mark.tensorflow
def test_workers_do_not_deadlock_in_a_process_that_imported_tensorflow(tmp_path):
    """TensorFlow's threads hold locks that a forked worker inherits locked: build_all called from a process that
    imported it (a notebook, a test) once hung for ever. Run in a process of its own, with a time limit."""
    (tmp_path / "m.toml").write_text('[[models]]\nname = "a"\nunits = 4\ninput_size = 3\n\n'
                                     '[[models]]\nname = "b"\nunits = 5\ninput_size = 3\nlowering = "portable"\n')
    program = ("import tensorflow\nfrom tflrnn.manifest import build_all, load_manifest\n"
               "print([o.passed for o in build_all(load_manifest('m.toml'), jobs=2)])")
    done = subprocess.run([sys.executable, "-c", program], cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[True, True]"
