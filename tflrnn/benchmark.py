"""bench(): invoke latency through LiteRT's classic interpreter.

`litert-benchmark` and LiteRT's CompiledModel cannot load variable tensors, so they cannot time these models.
Each timed invoke starts a new sequence: the state is reset (untimed) before it, through the model's `reset`
signature where it has one (a portable model's state is in resource variables, which `reset_all_variables()`
leaves as they are), else with `reset_all_variables()` (the fused ops' variable tensors). With `vs`, the two models
are timed alternately, pair by pair, so both see the same machine state and the ratio is measured, not derived.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from .errors import ConfigError, ModelFormatError
from .files import model_bytes, native_stderr_silenced
from .lowering.portable import RESET_KEY


def bench(model, *, vs=None, runs: int = 100, warmup: int = 10, threads: int = 1, seed: int = 0) -> dict:
    for value, what, least in ((runs, "runs", 1), (warmup, "warmup", 0), (threads, "threads", 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ConfigError(f"{what} must be an integer of at least {least}, got {value!r}")
    subjects = [_Subject(model, threads, seed)]
    if vs is not None:
        subjects.append(_Subject(vs, threads, seed))
    for _ in range(warmup):
        for subject in subjects:
            subject.invoke()
    times = [[] for _ in subjects]
    for _ in range(runs):
        for subject, samples in zip(subjects, times):
            samples.append(subject.invoke())
    import ai_edge_litert

    result = {
        "runtime": {"name": "litert", "version": ai_edge_litert.__version__},
        "settings": {"runs": runs, "warmup": warmup, "threads": threads, "seed": seed},
        "model": subjects[0].stats(times[0]),
    }
    if vs is not None:
        result["vs"] = subjects[1].stats(times[1])
        ratios = sorted(b / a for a, b in zip(times[0], times[1]))
        result["ratio"] = {  # how many times longer `vs` takes than `model`, pair by pair
            "median": statistics.median(ratios),
            "p10": _percentile(ratios, 10),
            "p90": _percentile(ratios, 90),
        }
    return result


class _Subject:
    def __init__(self, model, threads: int, seed: int):
        data, self.label = model_bytes(model)
        from ai_edge_litert.interpreter import Interpreter

        from .reader import read

        description = read(data)  # a readable TFLite file first: the interpreter's own errors are not friendly
        self.time_steps = _time_steps(description)
        try:
            with native_stderr_silenced():  # the default XNNPACK delegate announces itself on stderr
                self.interpreter = Interpreter(model_content=data, num_threads=threads)
                self.interpreter.allocate_tensors()
        except (RuntimeError, ValueError) as exc:
            raise ModelFormatError(f"the interpreter cannot load {self.label}: {' '.join(str(exc).split())}") from None
        details = self.interpreter.get_input_details()
        rng = np.random.default_rng(seed)
        self.inputs = [(d["index"], rng.standard_normal(d["shape"]).astype(d["dtype"])) for d in details]
        self.bytes = len(data)
        self.reset_key = RESET_KEY if RESET_KEY in self.interpreter.get_signature_list() else None

    def reset(self) -> None:
        """Zero the state: a portable model's resource variables through its reset signature (a runner is not kept:
        it would hold the interpreter's internals and make invoke() refuse), the fused ops' variable tensors with
        reset_all_variables() (a model with neither has no state to reset)."""
        if self.reset_key is None:
            self.interpreter.reset_all_variables()
        else:
            self.interpreter.get_signature_runner(self.reset_key)()

    def invoke(self) -> float:
        self.reset()
        for index, value in self.inputs:
            self.interpreter.set_tensor(index, value)
        start = time.perf_counter_ns()
        self.interpreter.invoke()
        return (time.perf_counter_ns() - start) / 1000.0  # microseconds

    def stats(self, samples: list[float]) -> dict:
        ordered = sorted(samples)
        median = statistics.median(ordered)
        return {
            "model": self.label,
            "bytes": self.bytes,
            "time_steps": self.time_steps,
            "median_us": median,
            "p10_us": _percentile(ordered, 10),
            "p90_us": _percentile(ordered, 90),
            "per_step_median_us": median / self.time_steps,
        }


def _time_steps(model) -> int:
    """Steps per invoke: from the network tflrnn wrote (either lowering), else the time axis of a [B, T, ...]
    input."""
    from .lowering import recover

    try:
        return recover(model).time_steps
    except ModelFormatError:
        graph = model.subgraphs[0] if model.subgraphs else None
        if graph and graph.inputs and len(graph.tensors[graph.inputs[0]].shape) == 3:
            return max(1, graph.tensors[graph.inputs[0]].shape[1])
        return 1


def _percentile(ordered: list[float], q: int) -> float:
    return ordered[min(len(ordered) - 1, (len(ordered) * q) // 100)]
