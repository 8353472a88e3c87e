"""Running one case (in-process, in a fork, or as a subprocess) and judging it against the pass criteria."""

from __future__ import annotations

import contextlib
import io
import os
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

from .cases import Case, DEFAULT_MODES, DEFAULT_TIMEOUT, MEMORY_HEADROOM, NPZ_PLACEHOLDER, Result, SLOW_CASE, SUBPROCESS_SLACK, _explain
from .formats import valid_npz_bytes


class CaseTimeout(BaseException):
    """Raised by the alarm in an in-process case (a BaseException: tflrnn's `except Exception` must not eat it)."""


def _output_path(case: Case, outdir: Path) -> Path | None:
    if case.target.startswith("build"):
        return outdir / "model.tflite"
    if case.target == "export":
        return outdir / "weights.npz"
    return None


def case_argv(case: Case, input_path: Path, outdir: Path) -> list[str]:
    args = [str(outdir.parent / "valid.npz") if a == NPZ_PLACEHOLDER else a for a in case.args]
    output = _output_path(case, outdir)
    if case.target == "inspect":
        return ["inspect", str(input_path), *args]
    if case.target == "verify":
        return ["verify", str(input_path), "--sequences", "2", *args]
    if case.target == "export":
        return ["weights", str(input_path), "-o", str(output), *args]
    if case.target == "build-weights":
        return ["build", "--weights", str(input_path), "-o", str(output), *args]
    if case.target == "build-config":
        return ["build", "--config", str(input_path), "-o", str(output), *args]
    if case.target == "build-calibration":  # the seed's arguments say which model the data calibrates
        return ["build", "--calibration", str(input_path), "-o", str(output), *args]
    raise ValueError(f"unknown target {case.target}")


def run_case(case: Case, workdir: Path, mode: str | None = None, timeout: float = DEFAULT_TIMEOUT,
             explain: bool = True) -> Result:
    """Run one case in a fresh directory under `workdir` and judge it against the pass criteria."""
    mode = mode or DEFAULT_MODES[case.target]
    casedir = Path(tempfile.mkdtemp(prefix="case-", dir=workdir))
    try:
        input_path = casedir / f"input{case.suffix}"
        input_path.write_bytes(case.data)
        if any(a == NPZ_PLACEHOLDER for a in case.args):
            (casedir / "valid.npz").write_bytes(valid_npz_bytes())
        outdir = casedir / "out"
        outdir.mkdir()
        argv = case_argv(case, input_path, outdir)
        result = run_argv(argv, mode, timeout + (SUBPROCESS_SLACK if mode == "subprocess" else 0))
        judge(case, result, outdir)
        if explain and result.problems and result.code not in (None, 0, 1, 2) and result.code > 0:
            # the one-line "internal error" hides where: run again with --debug for the traceback
            for path in outdir.iterdir():
                _remove(path)
            debug = run_argv(["--debug", *argv], "fork" if mode == "inprocess" else mode,
                             timeout + (SUBPROCESS_SLACK if mode == "subprocess" else 0))
            result.trace = debug.err or debug.out
            result.detail = _explain(result.trace)
        elif result.problems and "Traceback" in result.err + result.out:
            result.trace = result.err + result.out
            result.detail = _explain(result.trace)
        return result
    finally:
        shutil.rmtree(casedir, ignore_errors=True)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def judge(case: Case, result: Result, outdir: Path) -> None:
    """The pass criteria: result.problems gets every violation, result.notes what passed but looks odd."""
    code = result.code
    problems, notes = result.problems, result.notes
    if code is None:
        problems.append(f"timeout: no exit after {result.seconds:.1f} s")
    elif code < 0:
        problems.append(f"crash: killed by signal {-code} ({_signal_name(-code)})")
    elif code not in (0, 1, 2):
        problems.append(f"exit-{code}: " + _first_line(result.err))
    elif code == 1 and case.target != "verify":
        problems.append(f"exit-1: unexpected exit 1 from {case.target}")
    if "Traceback (most recent call last)" in result.out + result.err:
        problems.append("traceback")
    err_lines = result.err.strip().splitlines()
    if code == 2:
        if len(err_lines) != 1 or not err_lines[0].startswith("tflrnn: error: "):
            problems.append(f"stderr: exit 2 with {len(err_lines)} stderr lines: {_first_line(result.err)!r}")
        if result.out.strip():
            problems.append(f"stdout-on-error: {_first_line(result.out)!r}")
        if "not enough memory" in result.err:
            # the harness caps each case's address space: without the cap this input would have the process
            # swap or be killed by the kernel
            problems.append("memory: needed more than the harness's cap "
                            f"({MEMORY_HEADROOM >> 30} GiB above its own size)")
    elif code in (0, 1):
        # tflrnn's own warnings (`warning: ...`, e.g. calibration data that leaves int8 formats no resolution) are
        # meant for the user; anything else on stderr (a Python warning, a library's print) is not
        stray = [line for line in err_lines if line.strip() and not line.startswith("warning: ")]
        if stray:
            problems.append(f"stderr: output on stderr with exit {code}: {stray[0][:300]!r}")
        elif err_lines:
            notes.append(f"warning: {len(err_lines)} line(s) of tflrnn's own")
    output = _output_path(case, outdir)
    present = sorted(p.name for p in outdir.iterdir()) if outdir.exists() else []
    if output is not None and output.name in present and code != 0:
        problems.append(f"output-on-failure: {output.name} exists after exit {code}")
    stray = [name for name in present if output is None or name != output.name]
    if stray:
        problems.append(f"stray-file: {', '.join(stray)} left in the output directory")
    if output is not None and code == 0:
        if not output.exists():
            problems.append("no-output: exit 0 but no output file")
        elif case.target.startswith("build"):
            try:
                from tflrnn import reader

                reader.read(output.read_bytes())
            except Exception as exc:  # noqa: BLE001 - anything: the built file must read back
                problems.append(f"unreadable-output: {type(exc).__name__}: {exc}")
    if not problems and result.seconds > SLOW_CASE:
        notes.append(f"slow: {result.seconds:.1f} s")


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0][:300] if lines else ""


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return "?"


def run_argv(argv: list[str], mode: str, timeout: float) -> Result:
    """Run `tflrnn ARGV` in-process, in a forked child or as a subprocess: exit code, stdout, stderr, seconds."""
    start = time.monotonic()
    if mode == "inprocess":
        code, out, err = _run_inprocess(argv, timeout)
    elif mode == "fork":
        code, out, err = _run_forked(argv, timeout)
    elif mode == "subprocess":
        code, out, err = _run_subprocess(argv, timeout)
    else:
        raise ValueError(f"unknown mode {mode}")
    return Result(code, out, err, time.monotonic() - start, mode, argv)


def _memory_limit() -> int | None:
    """Address space for one case: the harness's own plus MEMORY_HEADROOM."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[0])
        return pages * os.sysconf("SC_PAGE_SIZE") + MEMORY_HEADROOM
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def _limited_memory():
    limit = _memory_limit()
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if limit is not None and (hard == resource.RLIM_INFINITY or limit < hard):
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _show_warning(message, category, filename, lineno, file=None, line=None):
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


@contextlib.contextmanager
def _cli_warnings():
    """Warning filters as a fresh `python -m tflrnn` has them (pytest and this harness change them)."""
    with warnings.catch_warnings():
        # printed to stderr as Python does (pytest, for one, records them instead)
        warnings.formatwarning = warnings._formatwarning_orig
        warnings.showwarning = _show_warning
        warnings.resetwarnings()
        warnings.simplefilter("always")
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.simplefilter("ignore", category)
        yield


def _call_cli(argv: list[str]) -> int:
    """tflrnn's own entry point; its exit code. An exception escaping main() is printed, as Python would."""
    import tflrnn.cli

    tflrnn.cli._debug = False
    try:
        tflrnn.cli.main(list(argv))
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return 1
    return 0


def _run_inprocess(argv: list[str], timeout: float) -> tuple[int | None, str, str]:
    out_bytes, err_bytes = io.BytesIO(), io.BytesIO()
    # As a real process's streams: stdout strict UTF-8, stderr backslashreplace.
    out = io.TextIOWrapper(out_bytes, encoding="utf-8", errors="strict", write_through=True)
    err = io.TextIOWrapper(err_bytes, encoding="utf-8", errors="backslashreplace", write_through=True)
    saved = sys.stdout, sys.stderr
    alarm = signal.getsignal(signal.SIGALRM)
    in_main = _is_main_thread()

    def expire(signum, frame):
        raise CaseTimeout

    code: int | None = None
    sys.stdout, sys.stderr = out, err
    try:
        if in_main:
            signal.signal(signal.SIGALRM, expire)
            signal.setitimer(signal.ITIMER_REAL, timeout)
        with _limited_memory(), _cli_warnings():
            code = _call_cli(argv)
    except CaseTimeout:
        code = None
    except BaseException:  # noqa: BLE001 - escaped tflrnn's main(): as Python would print it
        traceback.print_exc(file=err)
        code = 1
    finally:
        if in_main:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, alarm)
        sys.stdout, sys.stderr = saved
    return code, _decode(out_bytes.getvalue()), _decode(err_bytes.getvalue())


def _is_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", errors="backslashreplace")


def _run_forked(argv: list[str], timeout: float) -> tuple[int | None, str, str]:
    with tempfile.TemporaryFile() as out_file, tempfile.TemporaryFile() as err_file:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            code = 70
            try:
                os.dup2(out_file.fileno(), 1)
                os.dup2(err_file.fileno(), 2)
                sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8", errors="strict",
                                              write_through=True)
                sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8",
                                              errors="backslashreplace", write_through=True)
                signal.signal(signal.SIGALRM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                limit = _memory_limit()
                if limit is not None:
                    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
                with _cli_warnings():
                    code = _call_cli(argv)
            except BaseException:  # noqa: BLE001
                with contextlib.suppress(BaseException):
                    traceback.print_exc()
                code = 1
            finally:
                with contextlib.suppress(BaseException):
                    sys.stdout.flush()
                    sys.stderr.flush()
                os._exit(code if isinstance(code, int) and 0 <= code < 256 else 1)
        timed_out = not _wait_for(pid, timeout)
        if timed_out:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        code = None if timed_out else os.waitstatus_to_exitcode(status)
        out_file.seek(0)
        err_file.seek(0)
        return code, _decode(out_file.read()), _decode(err_file.read())


def _wait_for(pid: int, timeout: float) -> bool:
    """True when the child exited within `timeout` (it is not reaped here)."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        fd = None
    if fd is not None:
        try:
            ready, _, _ = select.select([fd], [], [], timeout)
            return bool(ready)
        finally:
            os.close(fd)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return True
        time.sleep(0.005)
    return False


def _run_subprocess(argv: list[str], timeout: float) -> tuple[int | None, str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TFLRNN_DEBUG"}
    try:
        proc = subprocess.run([sys.executable, "-m", "tflrnn", *argv], capture_output=True, timeout=timeout,
                              env=env, cwd=tempfile.gettempdir())
    except subprocess.TimeoutExpired as exc:
        return None, _decode(exc.stdout or b""), _decode(exc.stderr or b"")
    return proc.returncode, _decode(proc.stdout), _decode(proc.stderr)
