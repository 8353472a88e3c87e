"""The portable lowering (plain builtin ops, state in resource variables, as an input/output, or none), run in the
real LiteRT interpreter: it must compute what the fused lowering of the same network computes, invoke after
invoke, with the state carried, reset by the `reset` signature, chained by the caller, or not kept at all."""

from __future__ import annotations

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

import tflrnn
from support import random_weights
from tflrnn.builder import model_of, network_of
from tflrnn.errors import ConfigError
from tflrnn.lowering import portable
from tflrnn.network import Dense
from tflrnn.writer import write

INVOKES = 3


def _dense(units, inputs, activation, seed=0):
    rng = np.random.default_rng(seed)
    return Dense(f"d{seed}", (rng.standard_normal((units, inputs)) * 0.5).astype(np.float32),
                 (rng.standard_normal(units) * 0.1).astype(np.float32), activation)


NETWORKS = {
    "tanh cell": lambda: network_of(tflrnn.RNNCell(6), weights=tflrnn.CellWeights(*random_weights(6, 3)),
                                    time_steps=5),
    "relu, batch 2, time-major": lambda: network_of(tflrnn.RNNCell(4, activation="relu"), input_size=3, time_steps=4,
                                                    batch_size=2, time_major=True),
    "relu6 and linear stack, last step": lambda: network_of(
        [tflrnn.RNNCell(5, name="a", activation="relu6"), tflrnn.RNNCell(3, name="b", activation="linear")],
        input_size=2, time_steps=6, last_step=True),
    "relu_n1_to_1": lambda: network_of(tflrnn.RNNCell(4, activation="relu_n1_to_1"), input_size=3, time_steps=3),
    "reused cell": lambda: network_of([tflrnn.RNNCell(4, name="s"), tflrnn.RNNCell(4, name="s", reuse=True)],
                                      input_size=4, time_steps=3),
    "bidirectional": lambda: network_of(tflrnn.RNNCell(4), input_size=3, time_steps=5, bidirectional=True),
    "bidirectional apart, batch 2": lambda: network_of(tflrnn.RNNCell(3), time_steps=4, batch_size=2,
                                                       bidirectional=True, merge="none"),
    "bidirectional stack, last step": lambda: network_of(
        [tflrnn.RNNCell(4, name="x"), tflrnn.RNNCell(3, name="y")], bidirectional=[True, True], last_step=True,
        time_steps=4, input_size=2),
    "classifier": lambda: network_of([tflrnn.RNNCell(4, name="r")], bidirectional=[True], last_step=True,
                                     input_size=3, time_steps=5,
                                     head=[_dense(5, 8, "relu", 1), _dense(2, 5, "softmax", 2)]),
    "dense on every step": lambda: network_of(tflrnn.RNNCell(4), input_size=2, time_steps=3,
                                              head=[_dense(3, 4, "tanh", 3)]),
}


def _interpreter(network) -> Interpreter:
    return Interpreter(model_content=write(model_of(network)))


def _inputs(network, seed=0) -> list[np.ndarray]:
    lead = (network.time_steps, network.batch_size) if network.time_major else (network.batch_size,
                                                                               network.time_steps)
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((*lead, network.input_size)).astype(np.float32) for _ in range(INVOKES)]


def _outputs(result: dict) -> list[np.ndarray]:
    return [result[k] for k in sorted(result) if k.startswith("output")]


FORMS = pytest.mark.parametrize("loop", [False, True], ids=["unrolled", "loop"])


@FORMS
@pytest.mark.parametrize("make", NETWORKS.values(), ids=NETWORKS)
def test_carried_state_matches_the_fused_lowering(make, loop):
    network = make()
    fused = _interpreter(network)
    network.lowering, network.state, network.loop = "portable", "carry", loop
    interpreter = _interpreter(network)
    run, fused_run = interpreter.get_signature_runner("serving_default"), fused.get_signature_runner("serving_default")
    xs = _inputs(network)
    for x in xs:  # the state carries from one invoke to the next in both
        for a, b in zip(_outputs(run(input=x)), _outputs(fused_run(input=x)), strict=True):
            np.testing.assert_allclose(a, b, atol=2e-6, rtol=1e-5)
    interpreter.get_signature_runner("reset")()
    fused.reset_all_variables()
    for a, b in zip(_outputs(run(input=xs[0])), _outputs(fused_run(input=xs[0]))):
        np.testing.assert_allclose(a, b, atol=2e-6, rtol=1e-5)


@FORMS
@pytest.mark.parametrize("name", ["tanh cell", "bidirectional stack, last step", "reused cell"])
def test_state_as_an_input_and_output_chained_by_the_caller(name, loop):
    network = NETWORKS[name]()
    fused = _interpreter(network).get_signature_runner("serving_default")
    network.lowering, network.state, network.loop = "portable", "io", loop
    run = _interpreter(network).get_signature_runner("serving_default")
    keys = sorted(k for k in run.get_input_details() if k.startswith("state"))
    assert keys == (["state"] if len(network.layers) == 1 else [f"state_{k}" for k in range(len(network.layers))])
    states = {k: np.zeros(run.get_input_details()[k]["shape"], np.float32) for k in keys}
    for x in _inputs(network, seed=1):
        result = run(input=x, **states)
        states = {k: result[k] for k in keys}  # the caller carries the state
        for a, b in zip(_outputs(result), _outputs(fused(input=x)), strict=True):
            np.testing.assert_allclose(a, b, atol=2e-6, rtol=1e-5)


@FORMS
@pytest.mark.parametrize("name", ["bidirectional", "relu, batch 2, time-major"])
def test_no_state_starts_every_invoke_from_zeros(name, loop):
    network = NETWORKS[name]()
    fused = _interpreter(network)
    network.lowering, network.state, network.loop = "portable", "zero", loop
    model = model_of(network)
    loops = 2 * len(network.layers) if loop else 0  # a condition and a body per direction
    assert len(model.subgraphs) == 1 + loops and not any(t.dtype == "resource" for t in model.subgraphs[0].tensors)
    run = Interpreter(model_content=write(model)).get_signature_runner("serving_default")
    fused_run = fused.get_signature_runner("serving_default")
    for x in _inputs(network, seed=2):
        expected = fused_run(input=x)["output"]
        fused.reset_all_variables()  # after the invoke: the fused model also starts every one from zeros
        for a, b in zip(_outputs(run(input=x)), [expected], strict=True):
            np.testing.assert_allclose(a, b, atol=2e-6, rtol=1e-5)


def test_the_serving_subgraph_is_subgraph_0_and_the_classic_api_runs_it():
    """TFLite Micro and get_input_details() / invoke() run subgraph 0."""
    network = NETWORKS["tanh cell"]()
    network.lowering = "portable"
    model = model_of(network)
    assert [g.name for g in model.subgraphs] == ["serving_default", "init", "reset"]
    assert [(s.key, s.subgraph) for s in model.signatures] == [("serving_default", 0), ("reset", 2)]
    interpreter = Interpreter(model_content=write(model))
    interpreter.allocate_tensors()
    x = _inputs(network)[0]
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    y = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    expected, _ = tflrnn.reference.run(x, network.layers[0].weights, "tanh")
    np.testing.assert_allclose(y, expected, atol=1e-5)


@pytest.mark.parametrize("options, fragment", [
    ({"time_steps": "dynamic"}, "a dynamic time axis needs the steps in a loop"),
    ({"quantize": "int8"}, "needs the fused lowering .TFLite Micro has no hybrid FULLY_CONNECTED."),
    ({"activation": "sign_bit"}, "no builtin op for activation sign_bit"),
])
def test_what_the_portable_lowering_refuses(options, fragment):
    options = dict(options)  # a copy: pytest hands every run of a case the same dict
    activation = options.pop("activation", "tanh")
    network = network_of(tflrnn.RNNCell(4, activation=activation), **options)
    network.lowering = "portable"
    with pytest.raises(ConfigError, match=fragment):
        model_of(network)


@pytest.mark.parametrize("state", ["io", "zero"])
def test_the_fused_lowering_keeps_its_state_in_the_model(state):
    network = NETWORKS["tanh cell"]()
    network.state = state
    with pytest.raises(ConfigError, match=f"state '{state}' needs the portable lowering"):
        model_of(network)


def test_portable_lowering_is_registered():
    assert portable.lower is tflrnn.lowering.LOWERINGS["portable"].lower


# verify, the command line, weights out -------------------------------------------------------------------------


@FORMS
@pytest.mark.parametrize("state", ["carry", "io", "zero"])
@pytest.mark.parametrize("name", ["tanh cell", "relu, batch 2, time-major", "bidirectional apart, batch 2",
                                  "bidirectional stack, last step", "classifier", "reused cell"])
def test_verify_passes_a_portable_model(name, state, loop):
    import jsonschema

    from tflrnn.config import load_schema

    network = NETWORKS[name]()
    network.lowering, network.state, network.loop = "portable", state, loop
    report = tflrnn.verify(write(model_of(network)))
    assert report.passed, [(c.name, c.detail) for c in report.failures]
    names = {c.name for c in report.checks}
    assert {"network", "signature", "metadata.tflrnn", "numeric.first_invoke", "numeric.state_carried"} <= names
    assert ("numeric.reset" in names) == (state == "carry")
    jsonschema.validate(report.to_dict(), load_schema("verify-report.schema.json"))


def _failed(model) -> dict[str, str]:
    report = tflrnn.verify(write(model))
    assert not report.passed
    return {c.name: c.detail for c in report.failures}


def test_verify_catches_what_is_wrong_in_a_portable_model():
    network = NETWORKS["tanh cell"]()
    network.lowering = "portable"
    model = model_of(network)
    recurrent = next(t for t in model.subgraphs[0].tensors if t.name.endswith("/recurrent_weights"))
    recurrent.data = recurrent.data.copy()
    recurrent.data[0, 0] += 0.5
    failed = _failed(model)
    assert "weights_sha256 does not match" in failed["metadata.tflrnn"]

    model = model_of(network)
    model.signatures = model.signatures[:1]  # no reset signature: the carried state could not be zeroed
    assert "no 'reset' signature" in _failed(model)["signature"]

    model = model_of(network)
    step = next(op for op in model.subgraphs[0].operators if op.code == tflrnn.model.BuiltinOperator.TANH)
    step.builtin_code = step.deprecated_builtin_code = tflrnn.model.BuiltinOperator.LOGISTIC
    assert "numeric.first_invoke" in _failed(model)


def test_build_verify_and_weights_out_on_the_command_line(tmp_path, cli):
    out = tmp_path / "p.tflite"
    built = cli("build", "--units", 6, "--input-size", 3, "--time-steps", 4, "--lowering", "portable", "--state",
                "io", "--json", "-o", out)
    assert built.code == 0, built.err
    summary = __import__("json").loads(built.out)
    assert (summary["lowering"], summary["state"], summary["op"]) == ("portable", "io", "portable lowering")
    assert cli("verify", out).code == 0
    assert cli("weights", out, "-o", tmp_path / "w.npz").code == 0
    again = tmp_path / "again.tflite"
    assert cli("build", "--weights", tmp_path / "w.npz", "--time-steps", 4, "--lowering", "portable", "--state",
               "io", "-o", again).code == 0
    assert again.read_bytes() == out.read_bytes()  # the weights out of a portable model rebuild it byte for byte


@pytest.mark.parametrize("args, fragment", [
    (["--state", "io"], "state 'io' needs the portable lowering"),
    (["--lowering", "portable", "--time-steps", "dynamic", "--recurrence", "unrolled"], "needs the steps in a loop"),
    (["--lowering", "portable", "--activation", "sign_bit"], "no builtin op for activation sign_bit"),
])
def test_command_line_refusals(tmp_path, cli, args, fragment):
    from support import assert_clean_error

    assert_clean_error(cli("build", "--units", 4, *args, "-o", tmp_path / "m.tflite"), fragment)
    assert not (tmp_path / "m.tflite").exists()


def test_a_manifest_builds_portable_models(tmp_path, cli):
    (tmp_path / "m.toml").write_text('[defaults]\ntime_steps = 5\n\n[[models]]\nname = "fused"\nunits = 8\n\n'
                                     '[[models]]\nname = "portable"\nunits = 8\nlowering = "portable"\n'
                                     'state = "zero"\n')
    result = cli("build", "--manifest", tmp_path / "m.toml", "--out-dir", tmp_path / "out")
    assert result.code == 0, result.out
    assert tflrnn.verify(tmp_path / "out" / "portable.tflite").passed


@FORMS
@pytest.mark.parametrize("name", ["bidirectional stack, last step", "relu, batch 2, time-major"])
def test_a_portable_model_runs_on_every_runtime(name, loop):
    """LiteRT with and without XNNPACK, tf.lite, the CompiledModel API and TFLite Micro: the same checks on each,
    the state carried and reset on each."""
    network = NETWORKS[name]()
    network.lowering, network.loop = "portable", loop
    report = tflrnn.verify(write(model_of(network)), runtime="all")
    assert report.passed, [(c.name, c.runtime, c.detail) for c in report.failures]
    assert [r["name"] for r in report.runtimes] == ["litert", "litert+xnnpack", "tensorflow", "compiled", "micro"]
    for name in ("litert+xnnpack", "compiled", "micro"):
        assert {c.name for c in report.checks if c.runtime == name} == {
            "numeric.first_invoke", "numeric.state_carried", "numeric.reset"}


@pytest.mark.parametrize("runtime, reason", [("compiled", "Variable tensors not yet supported"),
                                             ("micro", "Didn't find op for builtin opcode 'UNIDIRECTIONAL_SEQUENCE_RNN'")])
def test_a_fused_model_fails_where_its_op_does_not_run(runtime, reason):
    report = tflrnn.verify(write(model_of(NETWORKS["tanh cell"]())), runtime=runtime)
    failed = {c.name: c.detail for c in report.failures}
    assert list(failed) == ["runtime"] and reason in failed["runtime"]


def test_a_malformed_portable_model_fails_checks_instead_of_crashing():
    """What the fuzz harness found before the portable path was hardened: each is a failed check (exit 1)."""
    from tflrnn.model import BuiltinOperator, Signature

    network = NETWORKS["bidirectional stack, last step"]()
    network.lowering, network.state = "portable", "io"

    model = model_of(network)
    model.signatures = [Signature("other", {}, {}, 0)]  # no serving signature
    assert "no 'serving_default' signature" in _failed(model)["signature"]

    model = model_of(network)
    model.signatures[0].inputs["state_0"] = model.signatures[0].inputs["input"]  # a state on the wrong tensor
    failed = _failed(model)
    assert "'state_0' is not a subgraph input/output of shape" in failed["signature"] and "numeric" in failed

    model = model_of(network)
    add = next(op for op in model.subgraphs[0].operators if op.code == BuiltinOperator.ADD)
    add.options.activation = 17  # not an activation: LiteRT would silently run it as none
    assert "not an ActivationFunctionType" in _failed(model)["op.options"]

    model = model_of(network)
    model.subgraphs[0].tensors[model.subgraphs[0].inputs[0]].shape = (1, 4, 9)  # the input no longer chains
    assert "network" in _failed(model)


@pytest.mark.parametrize("args", [
    ["--state", "io", "--last-step"],  # the last step is the final state: its own output tensor
    ["--state", "io", "--bidirectional", "--merge", "none", "--last-step", "--time-major", "--batch-size", "2"],
    ["--state", "zero", "--activation", "relu_n1_to_1"],  # TFLite Micro has no RELU_N1_TO_1 op: fused into ADD
    ["--state", "io", "--units", "64", "--input-size", "16", "--time-steps", "50", "--activation", "linear"],
])
def test_builds_the_review_found_failing_verify(tmp_path, cli, args):
    """Legitimate portable builds that once failed verify on some runtime (found in review)."""
    out = tmp_path / "m.tflite"
    base = ["--units", "5", "--input-size", "3", "--time-steps", "4"] if "--units" not in args else []
    assert cli("build", *base, "--lowering", "portable", *args, "-o", out).code == 0
    result = cli("verify", out, "--runtime", "all")
    assert result.code == 0, result.out


def test_more_malformed_portable_models_fail_checks(tmp_path):
    from tflrnn.model import Tensor

    network = NETWORKS["tanh cell"]()
    network.lowering, network.state = "portable", "io"
    model = model_of(network)
    signature = model.signatures[0]
    signature.inputs["state_x"] = signature.inputs.pop("state")  # a state key verify does not know
    assert "state inputs and outputs" in _failed(model)["signature"]

    model = model_of(network)
    x = model.subgraphs[0].tensors[model.subgraphs[0].inputs[0]]
    x.shape = (1, -4, 3)  # a negative time axis
    assert "network" in _failed(model)

    model = model_of(network)
    model.subgraphs[0].inputs.append(999)  # a state input beyond the tensors
    model.signatures[0].inputs["state"] = 999
    assert "signature" in _failed(model)

    model = model_of(network)
    model.subgraphs[0].tensors.append(Tensor("huge", (2**31 - 1,) * 4))  # an arena TFLite Micro could not have
    report = tflrnn.verify(write(model), runtime="micro")
    assert report.passed or "runtime" in {c.name for c in report.failures}


# the steps as a WHILE loop ---------------------------------------------------------------------------------------


def test_the_loop_applies_R_with_one_op_per_direction():
    """XNNPACK packs a FULLY_CONNECTED's constant weights per op: unrolled, one copy of R per step; looped, one."""
    from tflrnn.model import BuiltinOperator

    network = NETWORKS["bidirectional stack, last step"]()
    network.lowering, network.loop = "portable", True
    model = model_of(network)
    by_r = [op for graph in model.subgraphs for op in graph.operators if op.code == BuiltinOperator.FULLY_CONNECTED
            and graph.tensors[op.inputs[1]].name.endswith("/recurrent_weights")]
    assert len(by_r) == len(network.layers)
    whiles = [op for op in model.subgraphs[0].operators if op.code == BuiltinOperator.WHILE]
    assert len(whiles) == len(network.layers)
    long = [network_of(tflrnn.RNNCell(8), input_size=2, time_steps=50, lowering="portable", recurrence=form)
            for form in ("loop", "unrolled")]
    assert len(write(model_of(long[0]))) < len(write(model_of(long[1])))  # fewer ops at 50 steps: a smaller file


@pytest.mark.parametrize("units, steps, loops", [(128, 50, False), (256, 50, True), (64, 513, True),
                                                  (64, 512, False), (16, 4, False)])
def test_recurrence_auto_loops_when_the_unrolled_steps_would_hold_over_8_MiB_of_R(units, steps, loops):
    network = network_of(tflrnn.RNNCell(units), input_size=2, time_steps=steps, lowering="portable")
    assert network.loop is loops
    assert (steps * units * units * 4 > portable.LOOP_ABOVE_R_BYTES) is loops
    assert network_of(tflrnn.RNNCell(units), input_size=2, time_steps=steps, lowering="portable",
                      recurrence="unrolled").loop is False
    assert network_of(tflrnn.RNNCell(units), input_size=2, time_steps=steps, lowering="portable",
                      recurrence="loop").loop is True
    assert network_of(tflrnn.RNNCell(units), input_size=2, time_steps=steps).loop is False  # the fused lowering


def test_recurrence_needs_the_portable_lowering():
    with pytest.raises(ConfigError, match="recurrence 'loop' chooses how the portable lowering writes the steps"):
        network_of(tflrnn.RNNCell(4), input_size=2, time_steps=3, recurrence="loop")
    with pytest.raises(ConfigError, match="recurrence must be one of auto, unrolled, loop"):
        network_of(tflrnn.RNNCell(4), input_size=2, time_steps=3, lowering="portable", recurrence="while")


def test_a_looped_model_on_the_command_line(tmp_path, cli):
    out = tmp_path / "loop.tflite"
    built = cli("build", "--units", 6, "--input-size", 3, "--time-steps", 7, "--lowering", "portable",
                "--recurrence", "loop", "--bidirectional", "--json", "-o", out)
    assert built.code == 0, built.err
    summary = __import__("json").loads(built.out)
    assert (summary["lowering"], summary["recurrence"]) == ("portable", "loop") and "WHILE" in summary["ops"]
    assert cli("verify", out, "--runtime", "all").code == 0
    inspected = cli("inspect", out)
    assert inspected.code == 0 and "WHILE" in inspected.out
    assert cli("weights", out, "-o", tmp_path / "w.npz").code == 0
    again = tmp_path / "again.tflite"
    assert cli("build", "--weights", tmp_path / "w.npz", "--units", 6, "--time-steps", 7, "--lowering", "portable",
               "--recurrence", "loop", "--bidirectional", "-o", again).code == 0
    assert again.read_bytes() == out.read_bytes()
    from support import assert_clean_error

    assert_clean_error(cli("build", "--units", 4, "--recurrence", "loop", "-o", tmp_path / "f.tflite"),
                       "add --lowering portable")


def test_a_malformed_loop_fails_checks_instead_of_crashing():
    from tflrnn.model import BuiltinOperator

    network = NETWORKS["tanh cell"]()
    network.lowering, network.loop = "portable", True
    model = model_of(network)
    loop = next(op for op in model.subgraphs[0].operators if op.code == BuiltinOperator.WHILE)
    loop.options.body_subgraph_index = 99
    assert "no body subgraph" in _failed(model)["network"]

    model = model_of(network)
    body = model.subgraphs[-1]
    body.operators = [op for op in body.operators if op.code != BuiltinOperator.SLICE]
    assert "does not slice step t" in _failed(model)["network"]

    model = model_of(network)
    step = next(op for op in model.subgraphs[-1].operators if op.code == BuiltinOperator.TANH)
    step.builtin_code = step.deprecated_builtin_code = BuiltinOperator.LOGISTIC  # the loop holds, the numbers do not
    assert "numeric.first_invoke" in _failed(model)


# verify --against the source framework ---------------------------------------------------------------------------


def _keras_source(path, seed=0, last_step=False):
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((6, 3)),
                              keras.layers.Bidirectional(keras.layers.SimpleRNN(4, return_sequences=True)),
                              keras.layers.SimpleRNN(3, activation="relu", return_sequences=not last_step)]
                             + ([keras.layers.Dense(2, activation="softmax")] if last_step else []))
    model.save(path)
    return path


@FORMS
@pytest.mark.parametrize("state", ["carry", "io", "zero"])
@pytest.mark.parametrize("classifier", [False, True], ids=["sequence", "classifier"])
def test_verify_against_keras(tmp_path, cli, state, loop, classifier):
    """The Keras model run in Keras on the same inputs, the state chained (or from zeros, as the model keeps none),
    against the portable model on every runtime."""
    import json

    source = _keras_source(tmp_path / "s.keras", last_step=classifier)
    out = tmp_path / "m.tflite"
    assert cli("build", "--weights", source, "--lowering", "portable", "--state", state, "--recurrence",
               "loop" if loop else "unrolled", "-o", out).code == 0
    result = cli("verify", out, "--against", source, "--runtime", "all", "--json")
    report = json.loads(result.out)
    assert result.code == 0, [c for c in report["checks"] if not c["passed"]]
    against = [c for c in report["checks"] if c["name"] == "against.keras"]
    assert {c["runtime"] for c in against} == {"litert", "litert+xnnpack", "tensorflow", "compiled", "micro"}
    assert report["against"]["format"] == "keras"


def test_verify_against_the_wrong_source_fails(tmp_path, cli):
    out = tmp_path / "m.tflite"
    assert cli("build", "--weights", _keras_source(tmp_path / "a.keras", seed=0), "--lowering", "portable",
               "-o", out).code == 0
    other = _keras_source(tmp_path / "b.keras", seed=1)  # the same shapes, other weights
    result = cli("verify", out, "--against", other)
    assert result.code == 1 and "FAIL  against.keras" in result.out


def test_verify_against_onnx_and_torch_sources(tmp_path, cli):
    """A single cell whose last step is the output (ONNX), and a two-layer chain as torch.onnx.export writes it."""
    from support import write_onnx_chain, write_onnx_rnn

    write_onnx_rnn(tmp_path / "one.onnx", dims=(5, 1, 3))
    write_onnx_chain(tmp_path / "chain.onnx", directions=2)
    for source, extra in ((tmp_path / "one.onnx", ["--last-step", "--state", "io"]),
                          (tmp_path / "chain.onnx", ["--time-steps", "4", "--recurrence", "loop"])):
        out = tmp_path / f"{source.stem}.tflite"
        assert cli("build", "--weights", source, "--lowering", "portable", *extra, "-o", out).code == 0
        result = cli("verify", out, "--against", source)
        assert result.code == 0, result.out
        assert "PASS  against.onnx" in result.out


# a dynamic time axis: the loop runs to the length given -------------------------------------------------------------


@pytest.mark.parametrize("state", ["carry", "io", "zero"])
@pytest.mark.parametrize("options", [{}, {"time_major": True, "batch_size": 2},
                                     {"bidirectional": True, "last_step": True},
                                     {"layers": 2, "activation": "relu"}], ids=["cell", "time-major", "bidi-last", "stack"])
def test_a_dynamic_time_axis_runs_any_length(state, options):
    """`--time-steps dynamic` loops (auto), and the model computes the reference at each length it is resized to,
    with and without XNNPACK; verify resizes it too."""
    from ai_edge_litert.interpreter import OpResolverType

    options = dict(options)  # a copy: pytest shares the parametrize dict between the three states
    layers = options.pop("layers", 1)
    activation = options.pop("activation", "tanh")
    cells = [tflrnn.RNNCell(5, name=f"l{k}", activation=activation) for k in range(layers)]
    network = network_of(cells, input_size=3, time_steps="dynamic", lowering="portable", state=state, **options)
    assert network.loop and network.dynamic_time
    assert len(network.stages) == layers  # the case's own network, not a plain tanh cell
    assert {layer.activation for layer in network.layers} == {tflrnn.model.Activation[activation.upper()]}
    data = write(model_of(network))
    assert lowering_recover(data) == network
    for resolver in (OpResolverType.AUTO, OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES):
        interpreter = Interpreter(model_content=data, experimental_op_resolver_type=resolver)
        run = interpreter.get_signature_runner("serving_default")
        for steps in (1, 6, 2):
            if state == "carry":
                interpreter.get_signature_runner("reset")()
            lead = (steps, network.batch_size) if network.time_major else (network.batch_size, steps)
            x = np.random.default_rng(steps).standard_normal((*lead, 3)).astype(np.float32)
            zeros = {k: np.zeros(d["shape"], np.float32) for k, d in run.get_input_details().items() if k != "input"}
            expected, _ = tflrnn.reference.run_network(network, x)
            for got, want in zip(_outputs(run(input=x, **zeros)), expected, strict=True):
                np.testing.assert_allclose(got, want, atol=2e-6, rtol=1e-5)
    report = tflrnn.verify(data)
    assert report.passed, [(c.name, c.detail) for c in report.failures]
    assert any("resized to" in c.detail for c in report.checks if c.name == "numeric.first_invoke")


def lowering_recover(data: bytes):
    from tflrnn import lowering
    from tflrnn.reader import read

    return lowering.recover(read(data))


def test_the_loop_needs_a_newer_runtime_than_the_unrolled_steps():
    """DYNAMIC_UPDATE_SLICE came in TFLite 2.9.0; resource variables in 2.6.0 (runtime_version.cc)."""
    from tflrnn.metadata import min_runtime_version

    def version(**options):
        return min_runtime_version(model_of(network_of(tflrnn.RNNCell(4), input_size=2, time_steps=3,
                                                       lowering="portable", **options)))

    assert version(recurrence="unrolled") == "2.6.0"
    assert version(recurrence="unrolled", state="zero") == "2.0.0"
    assert version(recurrence="loop") == "2.9.0"


@pytest.mark.parametrize("tensor_name, value, fragment", [
    ("stride", 0, "does not step t by the steps of a pass"),
    ("limit", 2**31 - 1, "does not run t over the 5 steps once"),
    ("t_start", 3, "does not run t over the 5 steps once"),
])
def test_a_loop_that_would_not_end_is_refused_before_it_runs(tensor_name, value, fragment):
    """A verifier must not hang: a loop whose counter does not step, or runs past the steps, fails `network`."""
    network = NETWORKS["tanh cell"]()
    network.lowering, network.loop = "portable", True
    model = model_of(network)
    found = [t for g in model.subgraphs for t in g.tensors if t.name == tensor_name or t.name.endswith(f"/{tensor_name}")]
    assert found
    for t in found:
        t.data = np.asarray(value, np.int32)
    assert fragment in _failed(model)["network"]


def test_a_loop_whose_condition_is_its_body_is_refused():
    from tflrnn.model import BuiltinOperator

    network = NETWORKS["tanh cell"]()
    network.lowering, network.loop = "portable", True
    model = model_of(network)
    loop = next(op for op in model.subgraphs[0].operators if op.code == BuiltinOperator.WHILE)
    loop.options.cond_subgraph_index = loop.options.body_subgraph_index
    assert "no condition subgraph of its own" in _failed(model)["network"]


def test_a_dynamic_unrolled_model_is_not_a_network_tflrnn_writes():
    """lower() writes a dynamic time axis only as a loop: recover() refuses the other."""
    network = NETWORKS["tanh cell"]()
    network.lowering = "portable"
    model = model_of(network)
    x = model.subgraphs[0].tensors[model.subgraphs[0].inputs[0]]
    x.shape_signature = (1, -1, x.shape[2])
    assert "dynamic time axis with unrolled steps" in _failed(model)["network"]


def test_each_runtime_names_its_own_failure(tmp_path, cli):
    """Where no runtime loads the model, each `runtime` failure still says which runtime it is."""
    from tflrnn.model import BuiltinOperator

    network = NETWORKS["tanh cell"]()
    network.lowering, network.loop = "portable", True
    model = model_of(network)
    loop = next(op for op in model.subgraphs[0].operators if op.code == BuiltinOperator.WHILE)
    body = model.subgraphs[loop.options.body_subgraph_index]
    body.inputs = body.inputs[:2]  # the body no longer takes the loop's three values: every runtime refuses it
    body.outputs = body.outputs[:2]
    (tmp_path / "m.tflite").write_bytes(write(model))
    result = cli("verify", tmp_path / "m.tflite", "--runtime", "all")
    assert result.code == 1
    failed = [line.split()[1:3] for line in result.out.splitlines() if line.startswith("FAIL")]
    assert len(failed) >= 2 and len({tuple(f) for f in failed}) == len(failed), result.out
