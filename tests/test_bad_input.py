"""Bad input: one line on stderr, exit 2, no traceback, and no output file (an existing one is left untouched)."""

from __future__ import annotations

import numpy as np
import pytest

import tflrnn
from support import assert_clean_error


@pytest.fixture
def model_path(tmp_path):
    path = tmp_path / "good.tflite"
    path.write_bytes(tflrnn.build(tflrnn.RNNCell(8), time_steps=2))
    return path


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--units", "0"], "num_units must be a positive integer, got 0"),
        (["--units", "-4"], "num_units must be a positive integer"),
        (["--units", "many"], "'many' is not a valid integer"),
        (["--units", "8", "--time-steps", "0"], "time_steps must be a positive integer"),
        (["--units", "8", "--batch-size", "-1"], "batch_size must be a positive integer"),
        (["--units", "8", "--input-size", "0"], "input_size must be a positive integer"),
        (["--units", "20000"], "a TFLite flatbuffer holds at most 2 GiB"),
        (["--units", "64", "--input-size", "40000000"], "a TFLite flatbuffer holds at most 2 GiB"),
        (["--units", "64", "--time-steps", "100000", "--batch-size", "100000"], "at most 2 GiB per tensor"),
        (["--units", "8", "--seed", "-1"], "seed must be a non-negative integer"),
        (["--units", "8", "--name", "/abs"], "not a valid cell name"),
        ([], "the number of units is missing"),
        (["--units", "8", "--no-such-option"], "No such option"),
    ],
)
def test_bad_sizes_and_options(tmp_path, cli, args, fragment):
    out = tmp_path / "out.tflite"
    result = cli("build", *args, "-o", out)
    assert_clean_error(result, fragment)
    assert not out.exists()


@pytest.mark.parametrize("activation", ["sigmoid", "softmax", "elu", "gelu", "swish", "hard_sigmoid", "bogus"])
def test_unsupported_activation_lists_the_supported_ones(tmp_path, cli, activation):
    out = tmp_path / "out.tflite"
    result = cli("build", "--units", 8, "--activation", activation, "-o", out)
    assert_clean_error(result, repr(activation), "tanh, relu, relu6, linear (or none), relu_n1_to_1, sign_bit")
    assert not out.exists()
    with pytest.raises(tflrnn.ConfigError):
        tflrnn.RNNCell(8, activation=activation)


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    "arrays, fragment",
    [
        ({"input_weights": np.zeros((4, 3)), "recurrent_weights": np.zeros((4, 4))}, "missing key 'bias'"),
        ({"kernel": np.zeros((3, 4)), "bias": np.zeros(4)}, "missing key 'recurrent_kernel'"),
        ({"something": np.zeros(3)}, "no RNN cell weights found"),
        (
            {"input_weights": np.zeros((4, 3)), "recurrent_weights": np.zeros((5, 5)), "bias": np.zeros(4)},
            "recurrent_weights: expected shape [4, 4], found [5, 5]",
        ),
        (
            {"input_weights": np.zeros((4, 3)), "recurrent_weights": np.zeros((4, 4)), "bias": np.zeros((4, 1))},
            "bias: expected a vector",
        ),
        (
            {"input_weights": np.full((4, 3), np.nan), "recurrent_weights": np.zeros((4, 4)), "bias": np.zeros(4)},
            "input_weights: non-finite value nan",
        ),
        (
            {"kernel": np.zeros((3, 4)), "recurrent_kernel": np.zeros((4, 4)), "bias": np.array([0, 0, np.inf, 0])},
            "bias: non-finite value inf",
        ),
        (
            {"input_weights": np.full((4, 3), 1e39), "recurrent_weights": np.zeros((4, 4)), "bias": np.zeros(4)},
            "beyond float32",
        ),
        (
            {"input_weights": np.array([["a"] * 3] * 4), "recurrent_weights": np.zeros((4, 4)), "bias": np.zeros(4)},
            "expected real numbers",
        ),
        (
            {"a/kernel": np.zeros((3, 4)), "a/recurrent_kernel": np.zeros((4, 4)), "a/bias": np.zeros(4),
             "b/kernel": np.zeros((3, 4)), "b/recurrent_kernel": np.zeros((4, 4)), "b/bias": np.zeros(4)},
            "several cells in the weights ('a', 'b')",
        ),
        (
            {"input_weights": np.zeros((4, 3)), "kernel": np.zeros((3, 4)), "recurrent_weights": np.zeros((4, 4)),
             "bias": np.zeros(4)},
            "mixes TfLiteRNNCell names",
        ),
    ],
)
def test_bad_weights(tmp_path, cli, arrays, fragment):
    weights = _npz(tmp_path / "w.npz", **arrays)
    out = tmp_path / "out.tflite"
    result = cli("build", "--weights", weights, "-o", out)
    assert_clean_error(result, fragment)
    assert not out.exists()


def test_weights_file_problems(tmp_path, cli):
    out = tmp_path / "out.tflite"
    assert_clean_error(cli("build", "--weights", tmp_path / "none.npz", "-o", out), "weights file not found")
    junk = tmp_path / "junk.npz"
    junk.write_text("not an archive")
    assert_clean_error(cli("build", "--weights", junk, "-o", out), "not an .npz archive")
    truncated = _npz(tmp_path / "t.npz", input_weights=np.zeros((64, 64)), recurrent_weights=np.zeros((64, 64)),
                     bias=np.zeros(64))
    truncated.write_bytes(truncated.read_bytes()[:5000])
    assert_clean_error(cli("build", "--weights", truncated, "-o", out), "cannot read weights")
    corrupt_h5 = tmp_path / "w.h5"
    corrupt_h5.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    assert_clean_error(cli("build", "--weights", corrupt_h5, "-o", out), "cannot read Keras file")
    unknown = tmp_path / "w.bin"
    unknown.write_bytes(b"data")
    assert_clean_error(cli("build", "--weights", unknown, "-o", out), "cannot tell the format", "--format")
    assert not out.exists()


def test_sizes_given_must_agree_with_the_weights(tmp_path, cli):
    weights = _npz(tmp_path / "w.npz", kernel=np.zeros((3, 4)), recurrent_kernel=np.zeros((4, 4)), bias=np.zeros(4))
    out = tmp_path / "out.tflite"
    assert_clean_error(cli("build", "--weights", weights, "--units", 5, "-o", out), "num_units=5", "[4, 3]")
    assert_clean_error(cli("build", "--weights", weights, "--input-size", 7, "-o", out), "input_size=7")
    assert not out.exists()


@pytest.mark.parametrize(
    "text, suffix, fragment",
    [
        ('{"units": "8"}', ".json", "key 'units': '8' is not of type 'integer'"),
        ('{"units": 0}', ".json", "key 'units': 0 is less than the minimum of 1"),
        ('{"unit": 8}', ".json", "unknown key 'unit' at top level; did you mean 'units'?"),
        ('{"units": 8, "time_major": "yes"}', ".json", "key 'time_major'"),
        ('{"units": 8, "dtype": "float16"}', ".json", "key 'dtype'"),
        ('{"units": 8, "batch_input_shape": [1, 2]}', ".json", "key 'batch_input_shape'"),
        ('{"units": 8, "activation": "sigmoid"}', ".json", "'sigmoid' cannot be fused"),
        ('{"units": 8, "go_backwards": true}', ".json", "go_backwards=true"),
        ('{"num_units": 8, "units": 9}', ".json", "disagree"),
        ('{"units": 8,', ".json", "invalid JSON"),
        ("[1, 2]", ".json", "invalid config at top level"),
        ("units = 8\nactivation = 3\n", ".toml", "key 'activation'"),
        ("units = = 8", ".toml", "invalid TOML"),
        ("[" * 100000, ".json", "invalid"),
    ],
)
def test_bad_config_names_the_key(tmp_path, cli, text, suffix, fragment):
    config = tmp_path / f"cell{suffix}"
    config.write_text(text)
    out = tmp_path / "out.tflite"
    result = cli("build", "--config", config, "-o", out)
    assert_clean_error(result, fragment)
    assert not out.exists()


def test_missing_config(tmp_path, cli):
    assert_clean_error(cli("build", "--config", tmp_path / "none.json"), "config file not found")


def test_failure_leaves_an_existing_output_untouched(tmp_path, cli):
    out = tmp_path / "rnn.tflite"
    out.write_bytes(b"previous model")
    assert_clean_error(cli("build", "--units", 8, "--activation", "sigmoid", "-o", out))
    assert out.read_bytes() == b"previous model"
    assert [p.name for p in tmp_path.iterdir()] == ["rnn.tflite"]  # no temporary file left behind


def test_output_path_problems(tmp_path, cli):
    assert_clean_error(cli("build", "--units", 8, "-o", tmp_path / "missing" / "x.tflite"),
                       "output directory does not exist")
    assert_clean_error(cli("build", "--units", 8, "-o", tmp_path), "output path is a directory")


def _corrupt_models(good: bytes) -> dict[str, tuple[bytes, str]]:
    wrong_identifier = bytearray(good)
    wrong_identifier[4:8] = b"TFL2"
    root_past_end = bytearray(good)
    root_past_end[0:4] = (len(good) + 100).to_bytes(4, "little")
    vtable_garbage = bytearray(good)
    vtable_garbage[8:40] = b"\xff" * 32
    return {
        "empty": (b"", "the file has 0 bytes"),
        "text": (b"hello, not a model\n", "file identifier is"),
        "wrong identifier": (bytes(wrong_identifier), "file identifier is b'TFL2', expected b'TFL3'"),
        "truncated": (good[: len(good) // 3], "corrupt"),
        "root offset past end": (bytes(root_past_end), "past the end of the file"),
        "corrupt offsets": (bytes(vtable_garbage), "corrupt"),
    }


@pytest.mark.parametrize("command", ["verify", "inspect"])
@pytest.mark.parametrize("case", ["empty", "text", "wrong identifier", "truncated", "root offset past end",
                                  "corrupt offsets"])
def test_unreadable_models(tmp_path, cli, model_path, command, case):
    data, fragment = _corrupt_models(model_path.read_bytes())[case]
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(data)
    assert_clean_error(cli(command, bad), fragment)


@pytest.mark.parametrize("command", ["verify", "inspect"])
def test_missing_model_file(tmp_path, cli, command):
    assert_clean_error(cli(command, tmp_path / "none.tflite"), "model file not found")
    assert_clean_error(cli(command, tmp_path), "model file is a directory")


def test_model_without_rnn_op(tmp_path, cli):
    from tflrnn.model import Model, Subgraph, Tensor
    from tflrnn.writer import write

    data = write(Model([Subgraph([Tensor("x", (1, 4))], [], [0], [0])]))
    path = tmp_path / "identity.tflite"
    path.write_bytes(data)
    assert_clean_error(cli("verify", path), "no UNIDIRECTIONAL_SEQUENCE_RNN op")
    shown = cli("inspect", path)  # inspect describes any TFLite file
    assert shown.code == 0 and "identity.tflite" in shown.out


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--sequences", "1"], "sequences must be an integer from 2"),
        (["--atol", "-1"], "atol and rtol must be finite and non-negative"),
        (["--seed", "-3"], "seed must be a non-negative integer"),
        (["--atol", "x"], "'x' is not a valid float"),
    ],
)
def test_bad_verify_options(cli, model_path, args, fragment):
    assert_clean_error(cli("verify", model_path, *args), fragment)


def test_verify_with_bad_weights_file(tmp_path, cli, model_path):
    assert_clean_error(cli("verify", model_path, "--weights", tmp_path / "none.npz"), "weights file not found")


def test_json_mode_errors_are_still_one_line_on_stderr(tmp_path, cli):
    assert_clean_error(cli("build", "--units", 0, "--json", "-o", tmp_path / "x.tflite"), "num_units")
    assert_clean_error(cli("verify", tmp_path / "none.tflite", "--json"), "model file not found")


def test_interrupted_or_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    from tflrnn.files import write_atomic

    out = tmp_path / "rnn.tflite"
    out.write_bytes(b"previous model")
    with pytest.raises(TypeError):
        write_atomic(out, object())  # fails inside the write, after the temporary file exists
    assert out.read_bytes() == b"previous model"
    assert [p.name for p in tmp_path.iterdir()] == ["rnn.tflite"]


def test_output_through_a_symlink_writes_the_target(tmp_path, cli):
    target = tmp_path / "target.tflite"
    target.write_bytes(b"old")
    link = tmp_path / "link.tflite"
    link.symlink_to(target)
    assert cli("build", "--units", 4, "-o", link).code == 0
    assert link.is_symlink() and target.read_bytes()[4:8] == b"TFL3"


def test_output_that_is_not_a_regular_file_is_refused(tmp_path, cli):
    import os

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert_clean_error(cli("build", "--units", 4, "-o", fifo), "not a regular file")
    assert fifo.is_fifo()


def test_npz_header_claiming_a_huge_array_is_refused_before_allocating(tmp_path, cli):
    import io
    import zipfile

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                  "shape": (1000000, 1000000)})
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w") as archive:
        for name in ("input_weights", "recurrent_weights", "bias"):
            archive.writestr(f"{name}.npy", header.getvalue() + b"\0" * 16)
    assert_clean_error(cli("build", "--weights", path), "claims shape [1000000, 1000000]")


def test_overlong_name_is_refused(cli, tmp_path):
    assert_clean_error(cli("build", "--units", 4, "--name", "n" * 300, "-o", tmp_path / "m.tflite"),
                       "at most 256")


def test_model_too_large_for_verify_is_refused_clearly(tmp_path, cli):
    path = tmp_path / "long.tflite"
    assert cli("build", "--units", 1, "--input-size", 1, "--time-steps", 2**25, "-o", path).code == 0
    assert_clean_error(cli("verify", path), "verify's reference handles at most 16,777,216")


@pytest.mark.parametrize("value", ["inf", "nan"])
def test_tolerances_must_be_finite(cli, model_path, value):
    assert_clean_error(cli("verify", model_path, "--atol", value), "finite and non-negative")


def test_bare_command_prints_help(cli):
    result = cli()
    assert result.code == 0 and "Usage: tflrnn" in result.out and "build" in result.out


def test_size_limits_name_the_largest_that_fits(cli):
    assert_clean_error(cli("build", "--units", 1024, "--input-size", 523261), "input_size at most 523,260",
                       "at most 16383 units")
    assert_clean_error(cli("build", "--units", 30000, "--input-size", 2), "30000 units do not fit at any input size")
    assert_clean_error(cli("build", "--units", 2**31), "at most 2,147,483,647 (TFLite shapes are int32)")
    assert_clean_error(cli("build", "--units", 4, "--layers", 1025), "layers must be an integer from 1 to 1024")
