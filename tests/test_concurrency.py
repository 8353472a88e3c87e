"""Several `tflrnn build` processes writing the same output path at once leave one complete, valid file: the
output of exactly one of them, byte for byte, and no temporary `.part` file behind."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

import tflrnn

BUILD = ["build", "--units", "256", "--input-size", "256", "--time-steps", "10"]  # 0.5 MB a file
WRITERS = 4

# `python -m tflrnn ARGS` exactly (runpy runs the package's __main__), except that each process first imports the
# CLI and then waits for a shared instant, so all of them build and write together rather than in the order
# Python happened to start them.
SYNCHRONIZED = (
    "import runpy, sys, time\n"
    "import tflrnn.cli, tflrnn.builder, tflrnn.cell, tflrnn.writer\n"
    "start = float(sys.argv[1])\n"
    "time.sleep(max(0.0, start - time.time()))\n"
    "sys.argv = ['tflrnn', *sys.argv[2:]]\n"
    "runpy.run_module('tflrnn', run_name='__main__', alter_sys=True)\n"
)


@pytest.fixture(scope="module")
def expected(tmp_path_factory) -> dict[int, bytes]:
    """Each seed's file, built alone."""
    directory = tmp_path_factory.mktemp("alone")
    outputs = {}
    for seed in range(WRITERS):
        path = directory / f"seed{seed}.tflite"
        subprocess.run([sys.executable, "-m", "tflrnn", *BUILD, "--seed", str(seed), "-o", str(path)], check=True,
                       capture_output=True)
        outputs[seed] = path.read_bytes()
    assert len(set(outputs.values())) == WRITERS  # different seeds, different bytes: the test can tell them apart
    return outputs


def _launch(argv_of, seeds) -> list[subprocess.CompletedProcess]:
    processes = [subprocess.Popen(argv_of(seed), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for seed in seeds]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=300)
        results.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    return results


@pytest.mark.parametrize("start, existing", [("at-once", False), ("synchronized", True)],
                         ids=["at-once-new-file", "synchronized-replacing"])
def test_concurrent_builds_to_one_path_leave_one_valid_file(tmp_path, expected, start, existing):
    output = tmp_path / "shared.tflite"
    if existing:
        output.write_bytes(b"an older file, to be replaced whole")
    seeds = list(range(WRITERS))
    if start == "at-once":  # plain `python -m tflrnn build`, all started back to back
        results = _launch(lambda seed: [sys.executable, "-m", "tflrnn", *BUILD, "--seed", str(seed),
                                        "-o", str(output)], seeds)
    else:
        at = time.time() + 3.0  # after every process has started and imported tflrnn
        results = _launch(lambda seed: [sys.executable, "-c", SYNCHRONIZED, str(at), *BUILD, "--seed", str(seed),
                                        "-o", str(output)], seeds)

    for result in results:
        assert result.returncode == 0, (result.args, result.stdout, result.stderr)
        assert result.stderr == ""
        assert result.stdout.startswith(f"{output}: UNIDIRECTIONAL_SEQUENCE_RNN")
    final = output.read_bytes()
    assert final in expected.values(), f"{len(final)} bytes, none of the {WRITERS} outputs"
    assert sorted(os.listdir(tmp_path)) == ["shared.tflite"]  # no .part file left behind
    report = tflrnn.verify(final)
    assert report.passed, [(c.name, c.detail) for c in report.failures]
