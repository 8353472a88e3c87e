"""What verify reports: each check, declared with whether its failure blocks the numeric checks; the report;
and how a numeric comparison is summed up and shown."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from ..version import __version__


@dataclass(frozen=True)
class CheckKind:
    id: str
    blocks_numeric: bool  # when it fails, the numbers would mean nothing: the numeric checks are not run
    what: str


# Every check verify makes. A check's name is its id, with [layer.direction] for a stack or a bidirectional op
# (op.options[1.bw]), [k] for the k-th Dense layer, and .<format> for --against (against.keras).
CHECKS = {kind.id: kind for kind in (
    CheckKind("network", True, "a network the portable lowering writes, recovered from the model's ops"),
    CheckKind("model.version", False, "schema version 3"),
    CheckKind("op.code", False, "builtin_code and deprecated_builtin_code both the RNN op's"),
    CheckKind("op.version", False, "the op version its weights need (1 float, 2/3 hybrid int8)"),
    CheckKind("op.options", True, "the options table present, its activation inside the enum"),
    CheckKind("op.aux_inputs", False, "a bidirectional op's three aux inputs absent"),
    CheckKind("op.directions", False, "a bidirectional op's forward slots not holding the backward cell"),
    CheckKind("tensors.names", False, "a layer's W, R, b and state named under one cell"),
    CheckKind("tensors.shapes", True, "x, W, R, b, state and output agreeing with each other and the layout"),
    CheckKind("state.variable", False, "the state a variable with no buffer data"),
    CheckKind("last_step", True, "the final STRIDED_SLICEs take each direction's final step"),
    CheckKind("dense", True, "a Dense layer as a FULLY_CONNECTED the float kernel takes"),
    CheckKind("signature", False, "serving_default: input -> x, output -> the model's output"),
    CheckKind("metadata.min_runtime_version", False, "present and right for the ops' versions"),
    CheckKind("metadata.tflrnn", False, "tflrnn's record matching the graph and its weights"),
    CheckKind("weights.match", False, "the model holding exactly the given weights"),
    CheckKind("runtime", False, "the interpreter loading and running the model"),
    CheckKind("numeric", False, "the numeric checks not run, and why"),
    CheckKind("numeric.first_invoke", False, "the first invoke from the zero state against the reference"),
    CheckKind("numeric.state_carried", False, "later invokes continuing from the carried state"),
    CheckKind("numeric.reset", False, "after a reset, the first invoke again"),
    CheckKind("numeric.float_weights", False, "a hybrid model against the float weights it came from"),
    CheckKind("int8.formats", True, "a full-int8 model's formats as its kernels demand them"),
    CheckKind("int8.lstm", True, "a full-int8 fused LSTM's tensors as the integer LSTM kernel takes them"),
    CheckKind("int8.steps", False, "every step of a full-int8 model within its quantization steps"),
    CheckKind("int8.ops", False, "every op of a full-int8 model (a GRU's, a fused LSTM's) recomputed from its own "
                                 "inputs, within its quantization steps"),
    CheckKind("int8.outputs", False, "a full-int8 model's outputs on a runtime that gives back only them, against "
                                     "the float64 reference within twice the error of the step-checked kernels"),
    CheckKind("int8.loop", False, "a full-int8 loop's outputs bit for bit those of its unrolled twin, which the "
                                  "int8 checks verify step by step"),
    CheckKind("data", False, "the model over the user's sequences (--data) against the float network, within "
                             "--max-error when given"),
    CheckKind("against", False, "the source model in its own framework on the same inputs"),
)}


# The checks that compare numbers a runtime computed: a report without one of these checked no numbers.
NUMERIC_KINDS = frozenset({"numeric.first_invoke", "numeric.state_carried", "numeric.reset", "numeric.float_weights",
                           "int8.steps", "int8.ops", "int8.outputs", "int8.loop", "data", "against"})


@dataclass
class Check:
    name: str
    passed: bool
    detail: str
    max_abs_error: float | None = None
    max_rel_error: float | None = None
    runtime: str | None = None  # the interpreter a numeric check ran on

    def __post_init__(self):
        if self.kind not in CHECKS:
            raise ValueError(f"check {self.name!r} is not declared in CHECKS")

    @property
    def kind(self) -> str:
        """The declared check this is one of: op.options[1.bw] -> op.options, against.keras -> against."""
        base = self.name.split("[")[0]
        return "against" if base.startswith("against.") else base

    @property
    def blocks_numeric(self) -> bool:
        return CHECKS[self.kind].blocks_numeric


@dataclass
class VerifyReport:
    model: str
    bytes: int
    sha256: str
    settings: dict
    runtimes: list[dict] = field(default_factory=list)
    against: dict | None = None
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # facts worth a look that fail no check
    data: dict | None = None  # with --data: the errors on the user's sequences and the int8 formats' clipping

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def to_dict(self) -> dict:
        return {
            "tool": {"name": "tflrnn", "version": __version__},
            "model": self.model,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "passed": self.passed,
            "settings": self.settings,
            "runtimes": self.runtimes,
            "against": self.against,
            "checks": [asdict(c) for c in self.checks],
            "notes": self.notes,
            "data": self.data,
        }


@dataclass
class Comparison:
    """Runtime outputs against the reference, over one or more invokes."""

    ok: bool
    max_abs_error: float | None  # None: a non-finite output
    max_rel_error: float | None
    ties: int = 0  # sign_bit outputs within rounding of the jump, not counted
    note: str = ""  # why it failed, when not by the tolerance

    @classmethod
    def worst(cls, parts: list[Comparison]) -> Comparison:
        def largest(values):
            values = list(values)
            return None if None in values else max(values)

        return cls(
            ok=all(p.ok for p in parts),
            max_abs_error=largest(p.max_abs_error for p in parts),
            max_rel_error=largest(p.max_rel_error for p in parts),
            ties=sum(p.ties for p in parts),
            note="; ".join(dict.fromkeys(p.note for p in parts if p.note)),
        )


def _numeric_check(name: str, result: Comparison, atol: float, rtol: float, what: str, runtime: str) -> Check:
    shown = "non-finite" if result.max_abs_error is None else f"{result.max_abs_error:.3g}"
    detail = f"{what}; max abs error {shown} (atol {atol:g}, rtol {rtol:g})"
    if result.ties:
        detail += f"; {result.ties} output(s) within rounding of the sign bit's jump not counted"
    if result.note:
        detail += f"; {result.note}"
    return Check(name, result.ok, detail, result.max_abs_error, result.max_rel_error, runtime)


def _finite_max(values: np.ndarray) -> float | None:
    worst = float(np.max(values, initial=0.0))
    return worst if math.isfinite(worst) else None  # None: a non-finite output, which also fails the check
