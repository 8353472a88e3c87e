"""verify for a model another tool wrote (TensorFlow's converter's WHILE loop or unrolled steps, say): it holds no
network tflrnn reads, so there is no structural check, no numpy reference and no state to carry. With `--against`
the model still meets its source: each runtime's output against the source model run whole in its framework
(Keras' `model.predict`; the converter's models come from Keras) on the same seeded inputs, every invoke from
a fresh interpreter (a converter's model keeps no state; one that did would start from zeros as the source does).
The report says what was not checked.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ConfigError, TflrnnError
from ..model import Model
from ..sources import detect_format
from .report import Check, Comparison, VerifyReport, _finite_max, _numeric_check

FORMATS = ("keras",)  # the sources whose file holds a whole model to run, as the converter's models come from


def foreign_checks(data: bytes, model: Model, report: VerifyReport, runtimes: list[str], *, against, format,
                   seed: int, sequences: int, atol: float, rtol: float) -> None:
    """The against.<format> check on each runtime, for a model tflrnn did not write."""
    from .. import runtime
    from ..runners import micro_arena_bytes

    fmt = format or detect_format(Path(against))
    if fmt not in FORMATS:
        raise ConfigError(f"a model tflrnn did not write is compared with the Keras model it was converted from; "
                          f"{against} is {fmt}")
    graph = model.subgraphs[0]
    if len(graph.inputs) != 1 or graph.tensors[graph.inputs[0]].dtype != "float32" or not graph.outputs:
        raise ConfigError("a model tflrnn did not write is compared when it has one float32 input; this one has "
                          f"{len(graph.inputs)} input(s)")
    x_tensor = graph.tensors[graph.inputs[0]]
    output = graph.outputs[0]
    rng = np.random.default_rng(seed)
    xs = [rng.standard_normal(x_tensor.shape).astype(np.float32) for _ in range(sequences)]
    expected, reference, framework = _run_source(Path(against), xs)
    report.against = {"source": str(against), "format": fmt, "reference": reference, "framework": framework}
    signature = model.signatures[0] if model.signatures and model.signatures[0].subgraph == 0 else None
    wiring = {"input_positions": [0], "output_positions": [0], "arena": micro_arena_bytes(model),
              "output_shapes": [list(graph.tensors[output].shape)], "output_dtypes": [graph.tensors[output].dtype]}
    if signature is not None:  # the CompiledModel API finds tensors by the signature's names
        wiring["input_names"] = [next(k for k, i in signature.inputs.items() if i == graph.inputs[0])]
        wiring["output_names"] = [next((k for k, i in signature.outputs.items() if i == output), "")]
    steps = x_tensor.shape[1] if len(x_tensor.shape) == 3 else 1
    for runtime_name in runtimes:
        for xnnpack in ((False, True) if runtime_name == "litert" else (False,)):
            label = f"{runtime_name}+xnnpack" if xnnpack else runtime_name
            got = []
            try:
                for x in xs:  # a fresh interpreter each time: each invoke from zeros, as the source runs it
                    with runtime.load(runtime_name, data, graph.inputs[0], [output], xnnpack=xnnpack,
                                      **wiring) as interpreter:
                        got.append(interpreter.run(x)[0])
                        version = interpreter.version
            except (RuntimeError, ValueError) as exc:
                report.checks.append(Check("runtime", False, f"the interpreter refused the model: "
                                                             f"{' '.join(str(exc).split())[:300]}", runtime=label))
                continue
            if label not in [r["name"] for r in report.runtimes]:
                report.runtimes.append({"name": label, "version": version})
            report.checks.append(_numeric_check(
                f"against.{fmt}", _compare(got, expected, atol, rtol * steps), atol, rtol,
                f"{reference} on {framework}, {len(xs)} seeded inputs each from zeros (rtol times the {steps} "
                "steps)", runtime=label))
    report.notes.append("a model tflrnn did not write: no structural check, no numpy reference, no state or reset "
                        "check ran; only its outputs were compared with the source's")


def _compare(got: list[np.ndarray], expected: list[np.ndarray], atol: float, rtol: float) -> Comparison:
    parts = []
    for g, e in zip(got, expected):
        if g.size != e.size:
            return Comparison(False, None, None, note=f"the model outputs {list(g.shape)}, the source "
                                                     f"{list(e.shape)}")
        g, e = g.astype(np.float64).reshape(e.shape), e.astype(np.float64)
        diff = np.abs(g - e)
        parts.append(Comparison(bool(np.all(diff <= atol + rtol * (np.abs(e) + 1.0))), _finite_max(diff),
                                _finite_max(diff / np.maximum(np.abs(e), atol or np.finfo(np.float32).tiny))))
    return Comparison.worst(parts)


def _run_source(path: Path, xs: list[np.ndarray]) -> tuple[list[np.ndarray], str, str]:
    """The Keras model, whole, on each input (`model.predict`)."""
    from ..sources import require

    keras = require("keras", "tensorflow", "verifying against a Keras file runs it in Keras")
    try:
        source = keras.saving.load_model(str(path), compile=False)
    except (ValueError, OSError, TypeError, KeyError) as exc:
        raise TflrnnError(f"keras cannot load {path}: {' '.join(str(exc).split())[:300]}") from None
    try:
        outputs = [np.asarray(source.predict(x, verbose=0)) for x in xs]
    except (ValueError, TypeError) as exc:  # the model does not take the .tflite's input
        raise TflrnnError(f"keras cannot run {path} on the model's input {list(xs[0].shape)}: "
                          f"{' '.join(str(exc).split())[:300]}") from None
    return outputs, f"keras model '{source.name}' (model.predict) from {path.name}", f"keras {keras.__version__}"
