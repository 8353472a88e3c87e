"""verify's budget: a model too large for its reference is refused with advice, and the advice works."""

from __future__ import annotations

import re

import pytest

import tflrnn
from tflrnn.builder import describe_model
from tflrnn.errors import ConfigError
from tflrnn.lowering.fused import find_network
from tflrnn.reference import MAX_VERIFY_MULTIPLY_ADDS
from tflrnn.verification.limits import DYNAMIC_LENGTHS, _check_verifiable_time, budget_advice


def _refusal(network, sequences: int) -> str:
    with pytest.raises(ConfigError) as refused:
        _check_verifiable_time(network, sequences)
    return str(refused.value)


def test_the_docs_example_is_told_what_fits():
    # docs/model.md: 4,096 units (input 4,096) x 2,000 steps is refused. Two sequences do not fit either, so the
    # error must not suggest them (it once did, and said the same again with --sequences 2).
    network = find_network(describe_model(tflrnn.RNNCell(4096), input_size=4096, time_steps=2000))
    for sequences in (3, 2):
        message = _refusal(network, sequences)
        assert "--sequences 2" not in message, message
        assert "--time-steps 1024 or fewer" in message if sequences == 3 else "--time-steps 1365 or fewer" in message
    del network
    fits = find_network(describe_model(tflrnn.RNNCell(4096), input_size=4096, time_steps=1024))
    _check_verifiable_time(fits, 3)  # the advice followed: within the budget


def _follow(advice: str, time_steps: int, batch: int, sequences: int) -> tuple[int, int, int]:
    """The model and verify settings the advice asks for."""
    if advice == "pass --sequences 2":
        return time_steps, batch, 2
    found = re.fullmatch(r"verify a copy built with (?:fewer time steps \(--time-steps (\d+) or fewer\)|a smaller "
                         r"batch \((?:--time-steps (1) and )?--batch-size (\d+) or less\))( and pass --sequences 2)?",
                         advice)
    assert found, advice
    steps = found[1] or found[2] or time_steps
    return int(steps), int(found[3]) if found[3] else batch, 2 if found[4] else sequences


@pytest.mark.parametrize("per_step, time_steps, batch, sequences, dynamic", [
    (2 * 4096 * 8192, 2000, 1, 3, False),  # the docs' example: fewer steps
    (2 * 4096 * 8192, 2000, 1, 10, False),  # fewer steps, or two sequences... neither alone: both
    (2 * 2048 * 4096, 5000, 1, 3, False),  # two sequences are enough
    (2 * 4096 * 8192, 1, 4000, 3, False),  # one step already too much: a smaller batch
    (2 * 4096 * 8192, 700, 1, 1000, True),  # a dynamic model, checked at 1, 4 and 9 steps besides its own
    (1e12, 1, 1, 2, False),  # nothing fits
])
def test_every_piece_of_advice_brings_the_model_within_budget(per_step, time_steps, batch, sequences, dynamic):
    def work(t, b, s):
        return per_step * b * float(sum(set([t, *DYNAMIC_LENGTHS]) if dynamic else {t})) * (s + 1)

    assert work(time_steps, batch, sequences) > MAX_VERIFY_MULTIPLY_ADDS
    advice = budget_advice(work, time_steps, batch, sequences)
    if work(1, 1, 2) > MAX_VERIFY_MULTIPLY_ADDS:
        assert advice.startswith("no copy with fewer time steps"), advice
        return
    for piece in advice.split(", or "):
        t, b, s = _follow(piece, time_steps, batch, sequences)
        assert (t, b, s) != (time_steps, batch, sequences)
        assert work(t, b, s) <= MAX_VERIFY_MULTIPLY_ADDS, piece
        if t != time_steps and not dynamic:
            assert work(t + 1, b, s) > MAX_VERIFY_MULTIPLY_ADDS, piece  # and it is the most that fits


def test_a_portable_model_is_told_what_fits_too():
    # The portable verify has its own cost (a whole network per invoke), and the same rule: only advice that works.
    from tflrnn.lowering import portable
    from tflrnn.verification.portable import _check_verifiable

    def network(time_steps):
        return portable.recover(describe_model(tflrnn.RNNCell(2048), input_size=2048, time_steps=time_steps,
                                               lowering="portable", recurrence="loop"))

    with pytest.raises(ConfigError) as refused:
        _check_verifiable(network(5000), 3)
    message = str(refused.value)
    found = re.search(r"--time-steps (\d+) or fewer", message)
    assert found and "--sequences 2" not in message.split("or fewer")[0], message
    _check_verifiable(network(int(found[1])), 3)  # the advice followed: within the budget
