"""Helpers the tests import (fixtures live in conftest.py)."""

from __future__ import annotations

import numpy as np

def assert_clean_error(result, *fragments: str) -> None:
    """Exit 2, nothing on stdout, one line on stderr naming the problem, no traceback."""
    assert result.code == 2, (result.code, result.out, result.err)
    assert result.out == ""
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("tflrnn: error: "), result.err
    assert "Traceback" not in result.err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def random_weights(units: int, input_size: int, seed: int = 0, scale: float = 0.4):
    rng = np.random.default_rng(seed)
    return (
        (rng.standard_normal((units, input_size)) * scale).astype(np.float32),
        (rng.standard_normal((units, units)) * scale / np.sqrt(units)).astype(np.float32),
        (rng.standard_normal(units) * 0.1).astype(np.float32),
    )
