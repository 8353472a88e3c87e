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

