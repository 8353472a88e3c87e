"""Building, verifying and inspecting never import tensorflow (or keras): ~3 s they must not pay."""

from __future__ import annotations

import subprocess
import sys

PROGRAM = r"""
import sys
from tflrnn.cli import main

for argv in (["build", "--units", "16", "--time-steps", "4", "-o", sys.argv[1]],
             ["verify", sys.argv[1]],
             ["inspect", sys.argv[1], "--json"]):
    try:
        main(argv)
    except SystemExit as exit:
        assert exit.code == 0, (argv, exit.code)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf_keras", "jax", "torch"))
print("heavy:", heavy)
"""


def test_build_verify_inspect_import_no_tensorflow(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM, str(tmp_path / "m.tflite")], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "heavy: []"


def test_build_alone_loads_neither_the_reader_nor_the_runtime(tmp_path):
    program = (
        "import sys; from tflrnn.cli import main\n"
        "try: main(['build', '--units', '8', '-o', sys.argv[1]])\n"
        "except SystemExit as e: assert e.code == 0\n"
        "print(sorted(m for m in sys.modules if m in ('tflite', 'ai_edge_litert', 'jsonschema', 'tflrnn.reader',"
        "'tflrnn.sources', 'tflrnn.verification')))"
    )
    result = subprocess.run([sys.executable, "-c", program, str(tmp_path / "m.tflite")], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_installed_command_and_module_entry_points(tmp_path):
    import shutil
    from pathlib import Path

    import tflrnn

    script = shutil.which("tflrnn", path=str(Path(sys.executable).parent))
    assert script is not None, "pyproject.toml should install the tflrnn command"
    for argv in ([script, "--version"], [sys.executable, "-m", "tflrnn", "--version"]):
        result = subprocess.run(argv, capture_output=True, text=True)
        assert result.returncode == 0 and result.stdout.strip() == f"tflrnn, version {tflrnn.__version__}"


def test_debug_flag_from_the_environment(tmp_path):
    import os

    argv = [sys.executable, "-m", "tflrnn", "build", "--units", "0", "-o", str(tmp_path / "m.tflite")]
    quiet = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "TFLRNN_DEBUG": "0"})
    assert quiet.returncode == 2 and "Traceback" not in quiet.stderr
    loud = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "TFLRNN_DEBUG": "1"})
    assert loud.returncode != 0 and "Traceback" in loud.stderr
