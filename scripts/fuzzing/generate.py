"""Making the seeded cases, and the regression corpus (saving, loading, shrinking failing inputs)."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

from .cases import Case, HASH_CHARS, NPZ_PLACEHOLDER, Result, Seed, TARGETS, TARGET_SHARE
from .run import run_case
from .mutate_bytes import BYTE_MUTATORS, fb_mutate, splice
from .mutate_calibration import mutate_calibration
from .mutate_model import semantic_mutate
from .mutate_weights import mutate_keras, mutate_npz, mutate_onnx, mutate_safetensors
from . import mutate_config as configs
from .mutate_config import DEPTHS, mutate_config


VERIFY_EXTRA = ([], [], [], ["--json"], ["--weights", NPZ_PLACEHOLDER], ["--seed", "3", "--atol", "1e-3"])


EXPORT_EXTRA = ([], ["--format", "keras"], ["--json"])


BUILD_EXTRA = ([], ["--activation", "relu"], ["--time-steps", "3"], ["--time-steps", "dynamic"], ["--last-step"],
               ["--quantize", "int8"], ["--json"], ["--units", "4"], ["--batch-size", "2", "--time-major"],
               ["--name", "enc/x"], ["--lowering", "portable", "--time-steps", "2"],
               ["--lowering", "portable", "--state", "io", "--time-steps", "2"], ["--state", "zero"],
               ["--lowering", "portable", "--recurrence", "loop", "--time-steps", "2"], ["--recurrence", "unrolled"],
               ["--cell", "gru", "--time-steps", "2"], ["--cell", "gru", "--lowering", "fused"],
               ["--cell", "lstm", "--time-steps", "2"], ["--cell", "lstm", "--lowering", "portable",
                                                         "--recurrence", "loop", "--state", "io"],
               ["--lowering", "portable", "--time-steps", "4", "--steps-per-iteration", "2"],
               ["--steps-per-iteration", "3"])


WEIGHTS_EXTRA = (["--format", "npz"], ["--format", "keras"], ["--format", "safetensors"], ["--format", "onnx"],
                 ["--layer", "rnn"], ["--layer-index", "0"], ["--layer-index", "1"], ["--scope", "rnn"],
                 ["--bidirectional", "--units", "4"], ["--layers", "2", "--units", "4"], ["--activation", "tanh"])


CONFIG_EXTRA = (["--weights", NPZ_PLACEHOLDER], ["--units", "4"], ["--layers", "2"], ["--bidirectional"],
                ["--time-steps", "2"])


# On top of a calibration seed's own build: other int8 models the same data may or may not fit
CALIBRATION_EXTRA = (["--json"], ["--io", "int8"], ["--state", "zero"], ["--state", "io"], ["--batch-size", "2"],
                     ["--time-major"], ["--time-steps", "4"], ["--layers", "2"], ["--bidirectional"],
                     ["--last-step"], ["--activation", "relu"], ["--quantize", "int8"], ["--lowering", "fused"],
                     ["--recurrence", "loop"], ["--weights", NPZ_PLACEHOLDER], ["--cell", "gru"], ["--cell", "lstm"],
                     ["--input-precision", "int8"])


def make_case(seeds: dict[str, list[Seed]], run_seed: int, index: int, targets=TARGETS, long: bool = False) -> Case:
    """Case `index` of run `run_seed`: the same pair always gives the same case."""
    configs._depths = DEPTHS["long" if long else "quick"]  # how deep its config mutations nest
    rng = random.Random(f"tflrnn-fuzz:{run_seed}:{index}")
    shares = [TARGET_SHARE[t] for t in targets]
    target = rng.choices(list(targets), shares)[0]
    if target in ("inspect", "verify", "export"):
        pool = seeds["model"]
    elif target == "build-weights":
        pool = seeds["weights"]
    elif target == "build-calibration":
        pool = seeds["calibration"]
    else:
        pool = seeds["config"]
    seed = rng.choice(pool)
    label, data = mutate_once(rng, seed, pool)
    stack = 0.35 if long else 0.2
    while rng.random() < stack and len(label) < 200:  # a second edit on top (byte level)
        extra, data = rng.choice(BYTE_MUTATORS)(rng, data)
        label = f"{label}+{extra}"
        stack /= 2
    args = list(seed.args)
    if target == "verify":
        args += rng.choice(VERIFY_EXTRA)
    elif target == "export":
        args += rng.choice(EXPORT_EXTRA)
    elif target == "build-weights" and rng.random() < 0.3:
        args += rng.choice(WEIGHTS_EXTRA + BUILD_EXTRA)
    elif target == "build-config" and rng.random() < 0.25:
        args += rng.choice(CONFIG_EXTRA + BUILD_EXTRA)
    elif target == "build-calibration" and rng.random() < 0.2:
        args += rng.choice(CALIBRATION_EXTRA)
    suffix = seed.suffix
    if target == "build-weights" and rng.random() < 0.04:  # content and suffix disagree
        suffix = rng.choice((".npz", ".h5", ".keras", ".onnx", ".safetensors", ".weights.h5", ".bin", ""))
        label += f"+suffix{suffix or '-none'}"
    return Case(target, data, suffix, args, seed.name, label, index)


def mutate_once(rng: random.Random, seed: Seed, pool: list[Seed]) -> tuple[str, bytes]:
    if rng.random() < 0.02:
        return "none", seed.data
    if rng.random() < 0.04:
        return splice(rng, seed.data, rng.choice(pool).data)
    if seed.kind == "model":
        r = rng.random()
        if r < 0.40:
            return fb_mutate(rng, seed)
        if r < 0.70:
            return semantic_mutate(rng, seed)
        return rng.choice(BYTE_MUTATORS)(rng, seed.data)
    structured = {"npz": mutate_npz, "safetensors": mutate_safetensors, "onnx": mutate_onnx, "keras": mutate_keras,
                  "config": mutate_config, "calibration": mutate_calibration}[seed.kind]
    if rng.random() < 0.7:
        return structured(rng, seed)
    return rng.choice(BYTE_MUTATORS)(rng, seed.data)


def save_case(case: Case, directory: Path) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / case.file_name()
    path.write_bytes(case.data)
    if case.args:
        args = [a for a in case.args]
        Path(f"{path}.args").write_text(json.dumps(args) + "\n")
    return path


def load_corpus(directory: Path) -> list[Case]:
    """Every case saved under `directory`: <target>-<hash><suffix>, with the arguments in <file>.args if any."""
    cases = []
    for path in sorted(Path(directory).iterdir()):
        if path.name.startswith(".") or path.name.endswith(".args") or path.suffix == ".md":
            continue
        target = next((t for t in sorted(TARGETS, key=len, reverse=True) if path.name.startswith(t + "-")), None)
        if target is None:
            continue
        suffix = path.name[len(target) + 1 + HASH_CHARS:]
        args_file = Path(f"{path}.args")
        args = json.loads(args_file.read_text()) if args_file.exists() else []
        cases.append(Case(target, path.read_bytes(), suffix, args, seed="corpus", mutation=f"corpus:{path.name}"))
    return cases


def minimize(case: Case, result: Result, workdir: Path, seeds: dict | None, budget: int = 48) -> Case:
    """Cheaply smaller: for a config, drop lines and characters while the failure stays the same; for a binary
    input of a seed's length, put the seed's bytes back wherever that keeps the failure."""
    if result.code is None or any(p.startswith("crash") for p in result.problems):
        return case
    want = result.signature(case)
    runs = 0

    def still_fails(candidate: Case) -> bool:
        nonlocal runs
        runs += 1
        r = run_case(candidate, workdir)
        return not r.passed and r.signature(candidate) == want

    original = None
    if seeds is not None:
        for pool in seeds.values():
            for seed in pool:
                if seed.name == case.seed and len(seed.data) == len(case.data):
                    original = seed.data
    data = case.data
    if original is not None:  # ddmin over the changed positions: revert groups of them
        diff = [i for i in range(len(data)) if data[i] != original[i]]
        chunk_size = max(1, len(diff) // 2)
        while chunk_size >= 1 and runs < budget and len(diff) > 1:
            changed = False
            for k in range(0, len(diff), chunk_size):
                if runs >= budget:
                    break
                group = set(diff[k:k + chunk_size])
                trial = bytes(original[i] if i in group else data[i] for i in range(len(data)))
                candidate = dataclasses.replace(case, data=trial)
                if still_fails(candidate):
                    data, diff, changed = trial, [i for i in diff if i not in group], True
                    break
            if not changed:
                if chunk_size == 1:
                    break
                chunk_size //= 2
        return dataclasses.replace(case, data=data)
    if case.target == "build-config" and len(data) < 20000:
        for unit in (b"\n", None):
            pieces = data.split(b"\n") if unit else [bytes([c]) for c in data]
            if not unit and len(pieces) > 400:
                break
            i = 0
            while i < len(pieces) and runs < budget:
                trial = (unit or b"").join(pieces[:i] + pieces[i + 1:])
                if trial and still_fails(dataclasses.replace(case, data=trial)):
                    pieces.pop(i)
                else:
                    i += 1
            data = (unit or b"").join(pieces)
        return dataclasses.replace(case, data=data)
    return case
