"""verify runs the interpreter in a child process: a crash, a hang or a memory blow-up on a hostile model becomes a
failed check (exit 1), the caller survives, and no child process outlives the call. Everything runs for real: the
models crash or run long in LiteRT itself."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import tflrnn
from support import assert_clean_error
from tflrnn import runtime
from tflrnn.isolation import seconds_setting, size_setting
from tflrnn.reader import read
from tflrnn.writer import write

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc for child processes")


def _children() -> set[int]:
    """This process's live child processes (a zombie counts: it has not been reaped)."""
    kids = set()
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/children") as f:
                kids.update(int(pid) for pid in f.read().split())
        except OSError:
            pass
    return kids


def _state(pid: int) -> str:
    """'gone', or the process state letter (Z: dead, waiting to be reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0]
    except OSError:
        return "gone"


def _gone(pid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if _state(pid) in ("gone", "Z", "X"):
            return True
        time.sleep(0.02)
    return False


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> bytes:
    """A time-major hybrid (int8) BIDIRECTIONAL_SEQUENCE_RNN: LiteRT 2.3 segfaults invoking it. tflrnn's builder
    refuses the combination, so a batch-major one is written and turned time-major through the reader."""
    model = read(tflrnn.build(tflrnn.RNNCell(8), input_size=4, time_steps=5, batch_size=2, bidirectional=True,
                              quantize="int8"))
    graph = model.subgraphs[0]
    graph.operators[0].options = dataclasses.replace(graph.operators[0].options, time_major=True)
    for index in (*graph.inputs, *graph.outputs):
        batch, steps, width = graph.tensors[index].shape
        graph.tensors[index].shape = (steps, batch, width)
    return write(model)


@pytest.fixture(scope="module")
def slow(tmp_path_factory):
    """A legitimate model whose every invoke takes seconds (1024 units over 4000 steps: ~8 GMAC)."""
    path = tmp_path_factory.mktemp("slow") / "slow.tflite"
    path.write_bytes(tflrnn.build(tflrnn.RNNCell(1024), input_size=1024, time_steps=4000))
    return path


def _tflrnn(*args, env=None, **kwargs) -> subprocess.CompletedProcess:
    environment = dict(os.environ, **(env or {}))
    environment.pop("TFLRNN_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "tflrnn", *map(str, args)], capture_output=True, text=True,
                          env=environment, timeout=300, **kwargs)


def test_a_segfault_in_litert_is_a_failed_check_and_this_process_survives(hostile):
    before = _children()
    report = tflrnn.verify(hostile)  # in this very process: without isolation, pytest itself would die here
    failed = {c.name: c.detail for c in report.failures}
    assert set(failed) == {"runtime"}, failed
    assert failed["runtime"].startswith("the LiteRT interpreter crashed (SIGSEGV"), failed["runtime"]
    assert "during invoke" in failed["runtime"]
    assert _children() == before


def test_verify_exits_1_on_a_segfaulting_model_with_a_clear_message_and_no_native_noise(tmp_path, hostile):
    model = tmp_path / "hostile.tflite"
    model.write_bytes(hostile)
    result = _tflrnn("verify", model)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stderr == ""
    line = next(line for line in result.stdout.splitlines() if line.startswith("FAIL"))
    assert "runtime" in line and "crashed (SIGSEGV, Segmentation fault) during invoke on this model" in line
    assert "refused" not in line

    as_json = _tflrnn("verify", model, "--json")
    assert as_json.returncode == 1 and '"passed": false' in as_json.stdout


def test_a_crash_raises_a_runtime_error_and_the_child_is_reaped(hostile):
    interpreter = runtime.load("litert", hostile, 0, [9])
    pid = interpreter.pid
    assert pid in _children()
    x = np.random.default_rng(0).standard_normal((5, 2, 4)).astype(np.float32)  # (all zeros skip the kernel)
    with pytest.raises(runtime.InterpreterCrashed, match=r"crashed \(SIGSEGV") as raised:
        interpreter.run(x)
    assert isinstance(raised.value, RuntimeError)  # what the verifier catches
    assert _state(pid) == "gone" and pid not in _children()
    with pytest.raises(runtime.IsolationError, match="already stopped"):
        interpreter.run(x)


def test_a_time_limit_stops_a_slow_invoke(slow):
    start = time.monotonic()
    result = _tflrnn("verify", slow, env={"TFLRNN_VERIFY_TIMEOUT": "0.5"})
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stderr == ""
    assert ("the LiteRT interpreter did not finish invoke within 0.5 s and was stopped (time limit per call: "
            "TFLRNN_VERIFY_TIMEOUT)") in result.stdout
    assert time.monotonic() - start < 30

    interpreter = runtime.load("litert", slow.read_bytes(), 0, [5], timeout=0.5)
    pid = interpreter.pid
    with pytest.raises(runtime.InterpreterTimeout, match="did not finish invoke within 0.5 s"):
        interpreter.run(np.ones((1, 4000, 1024), np.float32))
    assert _state(pid) == "gone"


def test_the_default_time_limit_grows_with_the_work_of_a_call(monkeypatch):
    # No limit set: 30 s plus an allowance for the call's work, so a huge legitimate model is not cut short;
    # a limit set is exactly that limit.
    monkeypatch.delenv("TFLRNN_VERIFY_TIMEOUT", raising=False)
    data = tflrnn.build(tflrnn.RNNCell(4))
    with runtime.load("litert", data, 0, [5]) as interpreter:
        assert interpreter._limit(0) == runtime.DEFAULT_TIMEOUT
        assert interpreter._limit(100.0) == runtime.DEFAULT_TIMEOUT + 100.0
        interpreter.run(np.ones((1, 1, 4), np.float32))
    with runtime.load("litert", data, 0, [5], timeout=2) as interpreter:
        assert interpreter._limit(100.0) == 2


def test_a_memory_cap_is_a_failed_check(tmp_path):
    model = tmp_path / "long.tflite"  # a 0.3 MB model whose input and output take 4 MB each
    model.write_bytes(tflrnn.build(tflrnn.RNNCell(256), input_size=256, time_steps=4000))
    result = _tflrnn("verify", model, env={"TFLRNN_VERIFY_MEMORY": "2M"})
    assert result.returncode == 1, (result.stdout, result.stderr)
    line = next(line for line in result.stdout.splitlines() if line.startswith("FAIL"))
    assert "runtime" in line and "memory" in line and "2.0 MiB" in line and "TFLRNN_VERIFY_MEMORY" in line
    assert _tflrnn("verify", model, env={"TFLRNN_VERIFY_MEMORY": "64M"}).returncode == 0

    # Too little even to take the model in: Python's own MemoryError in the child.
    with pytest.raises(runtime.InterpreterOutOfMemory, match="ran out of memory while loading the model"):
        runtime.load("litert", model.read_bytes(), 0, [5], memory=64 << 10)


def test_isolated_results_are_bit_identical_to_in_process_ones():
    model = read(tflrnn.build([tflrnn.RNNCell(16, name="a"), tflrnn.RNNCell(16, name="b")], input_size=3,
                              time_steps="dynamic"))
    outputs = [op.outputs[0] for op in model.subgraphs[0].operators]  # both layers' outputs
    assert len(outputs) == 2
    data = write(model)
    results = []
    for isolate in (False, True):
        rng = np.random.default_rng(0)
        interpreter = runtime.load("litert", data, 0, outputs, isolate=isolate)
        xs = [rng.standard_normal((1, 1, 3)).astype(np.float32) for _ in range(2)]
        got = [interpreter.run(x) for x in xs]
        interpreter.resize([1, 7, 3])
        got.append(interpreter.run(np.ones((1, 7, 3), np.float32)))
        interpreter.reset()
        got.append(interpreter.run(np.ones((1, 7, 3), np.float32)))
        interpreter.close()
        results.append((xs, got))
    (xs0, a), (xs1, b) = results
    assert all(np.array_equal(p, q) for p, q in zip(xs0, xs1))
    for ys, zs in zip(a, b):
        for y, z in zip(ys, zs):
            assert y.dtype == z.dtype and y.shape == z.shape and np.array_equal(y, z)


def test_the_runtime_s_own_errors_keep_their_type_and_message():
    model = read(tflrnn.build(tflrnn.RNNCell(6), input_size=3, time_steps=4, batch_size=2))
    state = model.subgraphs[0].tensors[model.subgraphs[0].operators[0].inputs[4]]
    state.data = np.zeros(state.shape, dtype=np.float32)
    in_process = isolated = None
    try:
        runtime.load("litert", write(model), 0, [5], isolate=False)
    except (RuntimeError, ValueError) as exc:
        in_process = exc
    try:
        runtime.load("litert", write(model), 0, [5])
    except (RuntimeError, ValueError) as exc:
        isolated = exc
    assert type(isolated) is type(in_process) and str(isolated) == str(in_process)
    assert "variable tensor with buffer" in str(isolated)
    assert not isinstance(isolated, runtime.IsolationError)


def test_ctrl_c_kills_the_child_and_propagates(slow):
    interpreter = runtime.load("litert", slow.read_bytes(), 0, [5])
    pid = interpreter.pid
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    # Python's own Ctrl-C handler, even when the tests run as a background job (which starts with SIGINT ignored).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            interpreter.run(np.ones((1, 4000, 1024), np.float32))
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    assert _state(pid) == "gone" and pid not in _children()


def _verify_in_background(model) -> tuple[subprocess.Popen, int]:
    """`tflrnn verify` on a slow model, once its interpreter child is up and invoking: (process, child pid)."""
    env = dict(os.environ)
    env.pop("TFLRNN_DEBUG", None)
    # As from a terminal: Ctrl-C's default disposition, even when the tests run as a background job (which starts
    # its processes with SIGINT ignored, so Python would install no KeyboardInterrupt handler).
    process = subprocess.Popen([sys.executable, "-m", "tflrnn", "verify", str(model)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    kids: list[int] = []
    while not kids and time.monotonic() < deadline:
        time.sleep(0.05)
        for task in os.listdir(f"/proc/{process.pid}/task"):
            with open(f"/proc/{process.pid}/task/{task}/children") as f:
                kids += [int(pid) for pid in f.read().split()]
    assert kids, "verify started no interpreter process"
    time.sleep(1.0)  # started, loaded, invoking: one invoke of this model takes seconds
    return process, kids[0]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_or_ctrl_c_of_verify_stops_its_child(slow, sig):
    process, child = _verify_in_background(slow)
    process.send_signal(sig)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 130, (out, err)
    assert err.strip() == "tflrnn: error: interrupted"
    assert _gone(child)


def test_a_killed_verify_takes_its_child_with_it(slow):
    process, child = _verify_in_background(slow)
    process.kill()  # no clean-up can run in the parent: the kernel kills the child (PR_SET_PDEATHSIG)
    process.communicate(timeout=30)
    assert _gone(child), _state(child)


@pytest.mark.parametrize("name, value, fragment", [
    ("TFLRNN_VERIFY_TIMEOUT", "soon", "TFLRNN_VERIFY_TIMEOUT must be a number of seconds"),
    ("TFLRNN_VERIFY_TIMEOUT", "-1", "TFLRNN_VERIFY_TIMEOUT must be a number of seconds"),
    ("TFLRNN_VERIFY_MEMORY", "lots", "TFLRNN_VERIFY_MEMORY must be a size such as 512M or 2G"),
])
def test_bad_limit_settings_are_clean_errors(tmp_path, cli, monkeypatch, name, value, fragment):
    model = tmp_path / "rnn.tflite"
    model.write_bytes(tflrnn.build(tflrnn.RNNCell(4)))
    monkeypatch.setenv(name, value)
    assert_clean_error(cli("verify", model), fragment)


def test_limits_can_be_switched_off_and_sizes_read(tmp_path, cli, monkeypatch):
    model = tmp_path / "rnn.tflite"
    model.write_bytes(tflrnn.build(tflrnn.RNNCell(4)))
    monkeypatch.setenv("TFLRNN_VERIFY_TIMEOUT", "0")
    monkeypatch.setenv("TFLRNN_VERIFY_MEMORY", "none")
    assert cli("verify", model).code == 0
    assert size_setting("TFLRNN_VERIFY_MEMORY", "512M") == 512 << 20
    assert size_setting("TFLRNN_VERIFY_MEMORY", "1.5GiB") == 3 << 29
    assert size_setting("TFLRNN_VERIFY_MEMORY", 0) == float("inf")
    assert seconds_setting("TFLRNN_VERIFY_TIMEOUT", 0) == float("inf")
    monkeypatch.setenv("TFLRNN_VERIFY_TIMEOUT", "2.5s")
    assert seconds_setting("TFLRNN_VERIFY_TIMEOUT", None) == 2.5


def test_tensorflow_s_interpreter_is_isolated_too(tmp_path, hostile):
    pytest.importorskip("tensorflow")
    model = tmp_path / "hostile.tflite"
    model.write_bytes(hostile)
    result = _tflrnn("verify", model, "--runtime", "all")
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stderr == ""  # TensorFlow's start-up log stays in the child
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failed) == 2 and all("crashed (SIGSEGV" in line for line in failed), failed
    assert any("TensorFlow Lite (tf.lite) interpreter" in line for line in failed)


# The fork a native parser runs in (isolation.call_in_fork): each case in a fresh Python, not forked from pytest's
# threaded process.

FORK_PROGRAM = """
import json, os, sys, time
import numpy as np
from tflrnn.errors import WeightsError
from tflrnn.isolation import ChildFailed, ChildRaised, call_in_fork

def work(kind):
    if kind == "arrays":
        return {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": [1, "x", np.zeros(0, np.int8)]}
    if kind == "user":
        raise WeightsError("a message for the user")
    if kind == "bug":
        raise KeyError("k")
    if kind == "crash":
        os.kill(os.getpid(), 11)
    if kind == "memory":
        return np.ones(1 << 30, np.uint8).sum()  # 1 GiB, over a cap of 64 MiB
    if kind == "sleep":
        print(os.getpid(), flush=True)
        time.sleep(60)

kind, seconds = sys.argv[1], float(sys.argv[2])
try:
    value = call_in_fork(work, kind, seconds=seconds, memory=64 << 20)
    out = {"a": value["a"].tolist(), "dtype": value["a"].dtype.str, "b": [value["b"][0], value["b"][1],
           value["b"][2].dtype.str], "writable": bool(value["a"].flags.writeable)}
except ChildRaised as raised:
    out = {"raised": [raised.kind, raised.message, raised.user_error]}
except ChildFailed as failed:
    out = {"failed": failed.reason}
except TimeoutError:
    out = {"timeout": True}
print(json.dumps(out))
"""


def _fork_case(kind: str, seconds: float = 30) -> dict:
    result = subprocess.run([sys.executable, "-c", FORK_PROGRAM, kind, str(seconds)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_forked_call_returns_arrays_as_plain_data():
    assert _fork_case("arrays") == {"a": [[0, 1, 2], [3, 4, 5]], "dtype": "<f4", "b": [1, "x", "|i1"],
                                    "writable": True}  # as arrays read in this process would be


def test_a_forked_call_reports_what_went_wrong():
    assert _fork_case("user") == {"raised": ["WeightsError", "a message for the user", True]}
    assert _fork_case("bug") == {"raised": ["KeyError", "'k'", False]}
    assert _fork_case("crash") == {"failed": "signal 11"}
    assert _fork_case("memory")["raised"][0] == "MemoryError"  # the cap, not the machine, stopped it
    started = time.monotonic()
    assert _fork_case("sleep", seconds=0.5) == {"timeout": True}
    assert time.monotonic() - started < 30


def test_a_forked_call_dies_with_its_parent():
    parent = subprocess.Popen([sys.executable, "-c", FORK_PROGRAM, "sleep", "60"], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    parent.kill()  # no clean-up runs in the parent: the kernel takes the child (PR_SET_PDEATHSIG)
    parent.wait(timeout=30)
    assert _gone(child), _state(child)


@pytest.mark.parametrize("value", ["soon", "5s", "", "0", "inf"])
def test_a_bad_read_timeout_is_a_clean_error(tmp_path, cli, monkeypatch, value):
    """TFLRNN_READ_TIMEOUT, when set, is a plain positive number of seconds (the HDF5 parser's time limit)."""
    keras = pytest.importorskip("keras", reason="needs the test extra")
    keras.Sequential([keras.Input((None, 3)), keras.layers.SimpleRNN(4)]).save(tmp_path / "m.keras")
    monkeypatch.setenv("TFLRNN_READ_TIMEOUT", value)
    assert_clean_error(cli("build", "--weights", tmp_path / "m.keras", "-o", tmp_path / "m.tflite"),
                       f"TFLRNN_READ_TIMEOUT must be a positive number of seconds, got {value!r}")
