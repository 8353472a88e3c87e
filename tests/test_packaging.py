"""What `pip install .` ships: every package under tflrnn/ and the JSON Schemas. (scripts/check_wheel.sh installs
the wheel in a fresh venv and runs every command from it; this test only reads the wheel, so it fails fast.)"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_holds_every_package_and_schema(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check", "--no-deps", "-q", "-w",
                    str(tmp_path), str(ROOT)], check=True, capture_output=True, timeout=600)
    (wheel,) = tmp_path.glob("tflrnn-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "tflrnn").rglob("*.py") if "__pycache__" not in p.parts}
    packages = {Path(m).parent.as_posix() for m in modules}
    assert packages >= {"tflrnn", "tflrnn/sources"}
    missing = sorted(modules - shipped)
    assert not missing, f"not in the wheel: {missing}"
    schemas = {f"tflrnn/schemas/{p.name}" for p in (ROOT / "schemas").glob("*.json")}
    assert len(schemas) >= 4 and schemas <= shipped, sorted(schemas - shipped)
