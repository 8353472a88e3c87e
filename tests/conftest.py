"""Shared helpers. Everything runs for real: the CLI's own main(), the LiteRT interpreter, files on disk."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

import tflrnn.cli


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys):
    """Run `tflrnn ARGS...` in-process through the real entry point; returns exit code, stdout and stderr."""

    def run(*args) -> CliResult:
        tflrnn.cli._debug = False
        with pytest.raises(SystemExit) as exit_info:
            tflrnn.cli.main([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(exit_info.value.code, captured.out, captured.err)

    return run
