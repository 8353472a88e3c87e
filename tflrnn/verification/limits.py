"""What verify refuses up front: a model whose reference would need too much memory or time."""

from __future__ import annotations

import numpy as np

from ..reference import MAX_VERIFY_MULTIPLY_ADDS, MAX_VERIFY_VALUES
from ..builder import MAX_TENSOR_BYTES
from ..cells import kind
from ..errors import ConfigError
from ..lowering.fused import FusedGraph, RNNGraph, dense_layers


DYNAMIC_LENGTHS = (1, 4, 9)  # lengths a dynamic-time model is resized to, besides its allocated one


def _check_verifiable_size(g: RNNGraph) -> None:
    """A valid model can still be too large for verify's float64 reference, which holds several copies of every
    sequence; refuse it up front rather than run out of memory. (Larger than 2 GiB is the model's fault: the
    shapes check reports that.)"""
    values = max(float(np.prod(g.input.shape, dtype=np.float64)), float(np.prod(g.output.shape, dtype=np.float64)))
    if MAX_VERIFY_VALUES < values <= MAX_TENSOR_BYTES / 4:
        raise ConfigError(
            f"the model's input/output tensors hold {values:,.0f} values per invoke; verify's reference handles at "
            f"most {MAX_VERIFY_VALUES:,} (build a copy with fewer time steps or a smaller batch to verify the weights)"
        )


def _check_verifiable_time(network: FusedGraph, sequences: int) -> None:
    """Refuse a model whose reference comparisons would run for minutes: each invoke compared costs two float64
    products per direction per step (the step and the scale of its terms), 2*U*(I+U) multiply-adds per batch row
    (four times that for an LSTM's gates),
    and as much per Dense layer; a dynamic-time model is compared at each of its lengths."""
    per_step = 0.0
    for g in network.directions:
        if len(g.input.shape) != 3 or len(g.input_weights.shape) != 2 or \
                4 * float(np.prod(g.input.shape, dtype=np.float64)) > MAX_TENSOR_BYTES:
            return  # malformed, or beyond 2 GiB: the shapes check reports it
        units, size = (float(d) for d in g.input_weights.shape)
        per_step += 2 * units * (size + units) * kind(g.kind).gates  # an LSTM: four gates' products
    for op, _ in dense_layers(network):
        kernel = network.tensor(op.inputs[1]).shape if len(op.inputs) > 1 and 0 <= op.inputs[1] < len(
            network.subgraph.tensors) else ()
        per_step += 2 * float(np.prod(kernel, dtype=np.float64))
    g = network.directions[0]
    time_axis = 0 if g.time_major else 1
    signature = g.input.shape_signature
    dynamic = signature is not None and len(signature) == 3 and signature[time_axis] == -1

    def work(time_steps: int, batch: int, invokes: int) -> float:
        lengths = set([time_steps, *DYNAMIC_LENGTHS]) if dynamic else {time_steps}
        return per_step * batch * float(sum(lengths)) * (invokes + 1)

    time_steps, batch = g.input.shape[time_axis], g.input.shape[1 - time_axis]
    total = work(time_steps, batch, sequences)
    if total > MAX_VERIFY_MULTIPLY_ADDS:
        raise ConfigError(
            f"verify's reference would need about {total:.2g} float64 multiply-adds for {sequences + 1} invokes of "
            f"this model; its budget is {MAX_VERIFY_MULTIPLY_ADDS:.2g}: "
            + budget_advice(work, time_steps, batch, sequences)
        )


def budget_advice(work, time_steps: int, batch: int, sequences: int) -> str:
    """What brings a model within verify's budget, `work(time_steps, batch, sequences)` multiply-adds: only
    advice that does (fewer sequences, at most so many time steps, a smaller batch), else that none of it would."""
    fits = MAX_VERIFY_MULTIPLY_ADDS

    def largest(limit: int, cost) -> int:
        """The largest n in 1..limit with cost(n) within the budget (cost grows with n), 0 when there is none."""
        low, high = 0, limit
        while low < high:
            middle = (low + high + 1) // 2
            low, high = (middle, high) if cost(middle) <= fits else (low, middle - 1)
        while low > 0 and cost(low) > fits:  # a dynamic model's lengths need not grow strictly: make sure
            low -= 1
        return low

    advice = []
    if sequences > 2 and work(time_steps, batch, 2) <= fits:
        advice.append("pass --sequences 2")
    for invokes in sorted({sequences, 2}, reverse=True):  # what else fits: with these sequences, else with two
        also = "" if invokes == sequences else " and pass --sequences 2"
        steps = largest(time_steps - 1, lambda t: work(t, batch, invokes))
        rows = largest(batch - 1, lambda b: work(1, b, invokes)) if not steps else 0
        if steps:
            advice.append(f"verify a copy built with fewer time steps (--time-steps {steps} or fewer){also}")
        elif rows:
            fewer_steps = "" if time_steps == 1 else "--time-steps 1 and "
            advice.append(f"verify a copy built with a smaller batch ({fewer_steps}--batch-size {rows} or less){also}")
        if steps or rows or advice:
            break
    return ", or ".join(advice) if advice else ("no copy with fewer time steps, a smaller batch or fewer sequences "
                                              "fits: verify a model with fewer units")
