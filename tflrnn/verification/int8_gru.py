"""verify's `int8.steps` for a full-int8 GRU (verification/int8.py runs it for each GRU direction): every value of
each step recomputed from the interpreter's own values of the ones it is made of, as the GRU's equations make them
(cells/gru.py, restated here, not taken from the lowering that wrote the ops)."""

from __future__ import annotations

import numpy as np

from .. import quantization as quant
from ..network import Int8Format
from .int8 import backward, clamp


# The values of a GRU step (lowering/gru.py's stems) this check reads back, besides rn (reset after) or rh (before)
GRU_STEMS = ("g", "c", "rg", "ag", "gate", "z", "reset", "m", "an", "n", "zh", "w", "wn", "h")


def stems(layer) -> list[str]:
    """The stems of the values judge_steps reads, by the names lowering/gru.py gives them (<layer>/<stem><t>)."""
    return [*GRU_STEMS, "rn" if layer.weights.reset_after else "rh"]


def judge_steps(network, layer, where, read, source: np.ndarray, start: np.ndarray, judge) -> None:
    """Each step of a full-int8 GRU direction: every value, by the names lowering/gru.py gives them, recomputed in
    float64 from the interpreter's own values of the ones it is made of (the stage's input, the previous h, the
    step's earlier values) as cells/gru.py's equations make it, clamped to its format, within its kernel's steps:
    1 LSB (FULLY_CONNECTED, ADD, SUB, MUL), 2 (LOGISTIC, TANH), 0 (the gates' SPLIT). So the right values meet in
    each op: a gate wired to another value, the gates' order, reset before or after."""
    tensors = where.graph.tensors
    name, units, w = layer.name, layer.weights.num_units, layer.weights
    W, R, b = (np.asarray(a, np.float64) for a in (w.input_weights, w.recurrent_weights, w.bias))
    c = np.zeros(3 * units) if w.recurrent_bias is None else np.asarray(w.recurrent_bias, np.float64)
    indices = where.values[name]

    def real(stem: str, t: int) -> np.ndarray:
        q = tensors[indices[stem][t]].quantization
        return quant.dequantize_values(read[indices[stem][t]], Int8Format(q.scale[0], q.zero_point[0]))

    steps = range(network.time_steps - 1, -1, -1) if backward(network, layer) else range(network.time_steps)
    h = start
    for t in steps:
        got = {stem: real(stem, t) for stem in indices}
        h = h.reshape(got["h"].shape)
        projection = source[:, t] @ W.T + b
        expected = {"g": (projection[:, :2 * units], 1), "c": (projection[:, 2 * units:], 1),
                    "rg": (h @ R[:2 * units].T + c[:2 * units], 1), "ag": (got["g"] + got["rg"], 1),
                    "gate": (0.5 * (1 + np.tanh(got["ag"] / 2)), 2),
                    "z": (got["gate"][:, :units], 0), "reset": (got["gate"][:, units:], 0),
                    "an": (got["c"] + got["m"], 1), "n": (np.tanh(got["an"]), 2),
                    # h = z h + (1 - z) n, as the int8 GRU writes it
                    "zh": (got["z"] * h, 1), "w": (1.0 - got["z"], 1), "wn": (got["w"] * got["n"], 1),
                    "h": (got["zh"] + got["wn"], 1)}
        if w.reset_after:
            expected["rn"] = (h @ R[2 * units:].T + c[2 * units:], 1)
            expected["m"] = (got["reset"] * got["rn"], 1)
        else:
            expected["rh"] = (got["reset"] * h, 1)
            expected["m"] = (got["rh"] @ R[2 * units:].T, 1)
        for stem, (value, steps_allowed) in expected.items():
            q = tensors[indices[stem][t]].quantization
            fmt = Int8Format(q.scale[0], q.zero_point[0])
            judge(f"GRU layer '{name}' step {t}: '{name}/{stem}{t}'", got[stem], clamp(value, fmt),
                  max(steps_allowed * fmt.scale, 1e-9))
        h = got["h"]
