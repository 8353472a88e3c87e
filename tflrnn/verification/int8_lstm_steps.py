"""verify's `int8.steps` for a full-int8 LSTM of the portable lowering (16x8: int8 weights, int16 values; TFLite's
integer LSTM op has its own check, int8_lstm.py): every value of each step recomputed from the interpreter's own
values of the ones it is made of, as the LSTM's equations make them (cells/lstm.py, restated here, not taken from
the lowering that wrote the ops)."""

from __future__ import annotations

import numpy as np

from .. import quantization as quant
from ..network import Int8Format
from .int8 import backward, clamp
from .int8_ops import INT16_FC_STEPS as FC_STEPS
from .int8_ops import INT16_SQUASH_STEPS as SQUASH_STEPS

# The values of an LSTM step this check reads back, by the names the portable lowering gives them
# (<layer>/<stem><t>): the input projections of the sigmoid gates (i, f, o, in that order) and of the candidate g,
# their recurrent terms and sums, the gates, g, f c, i g, c, tanh(c) and h.
LSTM_STEMS = ("p", "q", "rp", "ap", "gates", "i", "f", "o", "rq", "aq", "n", "fc", "in", "c", "tc", "h")


def stems(layer) -> list[str]:
    return list(LSTM_STEMS)


def judge_steps(network, layer, where, read, source: np.ndarray, start: np.ndarray, judge) -> None:
    """Each step of a full-int8 LSTM direction, its values recomputed in float64 from the interpreter's own values
    of what each is made of (the stage's input, the previous h and c, the step's earlier values) as cells/lstm.py's
    equations make them (gates i, f, g, o), clamped to its format, within its kernel's steps. So the right values
    meet in each op: a gate wired to another value, the gates' order, a lost c. Each value may be off by its
    kernel's steps (LSB: its format's scale) on top of that: ADD and MUL round once (1), SPLIT copies (0), the 16x8
    FULLY_CONNECTED, LOGISTIC and TANH as int8_ops says (FC_STEPS, SQUASH_STEPS)."""
    tensors = where.graph.tensors
    name, units, w = layer.name, layer.weights.num_units, layer.weights
    W, R, b = (np.asarray(a, np.float64) for a in (w.input_weights, w.recurrent_weights, w.bias))
    i_rows, f_rows, g_rows, o_rows = (np.arange(k * units, (k + 1) * units) for k in range(4))
    sigmoid_rows = np.concatenate([i_rows, f_rows, o_rows])
    indices = where.values[name]

    def fmt(stem: str, t: int) -> Int8Format:
        t_ = tensors[indices[stem][t]]
        q = t_.quantization
        return Int8Format(q.scale[0], q.zero_point[0], bits=16 if t_.dtype == "int16" else 8)

    def real(stem: str, t: int) -> np.ndarray:
        return quant.dequantize_values(read[indices[stem][t]], fmt(stem, t))

    steps = range(network.time_steps - 1, -1, -1) if backward(network, layer) else range(network.time_steps)
    h, c = start[:, :units], start[:, units:]
    for t in steps:
        got = {stem: real(stem, t) for stem in indices}
        x = source[:, t]
        sigmoid = lambda v: 0.5 * (1 + np.tanh(v / 2))  # noqa: E731
        expected = {"p": (x @ W[sigmoid_rows].T + b[sigmoid_rows], FC_STEPS),
                    "q": (x @ W[g_rows].T + b[g_rows], FC_STEPS),
                    "rp": (h @ R[sigmoid_rows].T, FC_STEPS), "ap": (got["p"] + got["rp"], 1),
                    "gates": (sigmoid(got["ap"]), SQUASH_STEPS),
                    "i": (got["gates"][:, :units], 0), "f": (got["gates"][:, units:2 * units], 0),
                    "o": (got["gates"][:, 2 * units:], 0),
                    "rq": (h @ R[g_rows].T, FC_STEPS), "aq": (got["q"] + got["rq"], 1),
                    "n": (np.tanh(got["aq"]), SQUASH_STEPS),
                    "fc": (got["f"] * c, 1), "in": (got["i"] * got["n"], 1), "c": (got["fc"] + got["in"], 1),
                    "tc": (np.tanh(got["c"]), SQUASH_STEPS), "h": (got["o"] * got["tc"], 1)}
        for stem, (value, allowed) in expected.items():
            f = fmt(stem, t)
            judge(f"LSTM layer '{name}' step {t}: '{name}/{stem}{t}'", got[stem], clamp(value, f),
                  max(allowed * f.scale, 1e-9))
        h, c = got["h"], got["c"]
