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
        (["--units", "8", "--batch-size", "dynamic"], "the batch cannot be dynamic"),  # help offers INTEGER only
        (["--units", "8", "--out-dir", "models"], "--out-dir, --check and --jobs go with --manifest"),
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
    # Said for what tflrnn reads, either lowering (a portable model has neither fused op), not one op only
    for command in ("verify", "weights"):
        assert_clean_error(cli(command, path), "holds no network tflrnn writes: neither a fused "
                           "UNIDIRECTIONAL_SEQUENCE_RNN or BIDIRECTIONAL_SEQUENCE_RNN op nor the portable lowering's")
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


# Calibration data (build --quantize full-int8 --calibration) and .npz weights are read by tflrnn/arrays.py: the
# header first, the declared size checked before any data is read or inflated, never a pickle.

_FULL_INT8 = ["--units", 4, "--input-size", 3, "--time-steps", 3, "--lowering", "portable", "--quantize",
              "full-int8"]
_SEQUENCES = np.random.default_rng(3).standard_normal((4, 1, 3, 3)).astype(np.float32)


def _npy_bytes(array) -> bytes:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asanyarray(array), allow_pickle=True)  # what a careless writer would do
    return buf.getvalue()


def _hand_npy(header: str, data: bytes = b"", version: int = 1) -> bytes:
    """An .npy with a header written by hand (numpy's writer refuses bad ones): magic, version, length, text."""
    import struct

    text = header.encode("latin1") + b"\n"
    length = struct.pack("<H" if version == 1 else "<I", len(text))
    return b"\x93NUMPY" + bytes([version, 0]) + length + text + data


def _zip(members: dict, method=None) -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method or zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buf.getvalue()


def _zip_field(data: bytes, central: int, local: int, fmt: str, value: int) -> bytes:
    """One field of the first member set in both its central-directory and local header (offsets from each
    signature), as a hostile archiver would write it."""
    import struct

    buf = bytearray(data)
    for signature, offset in ((b"PK\x01\x02", central), (b"PK\x03\x04", local)):
        struct.pack_into(fmt, buf, buf.find(signature) + offset, value)
    return bytes(buf)


def _set_byte(data: bytes, at: int, value: int) -> bytes:
    return data[:at] + bytes([value]) + data[at + 1:]


_PLAIN = "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 1, 3, 3), }"
_DATA = _SEQUENCES.tobytes()


def _calibration_cases() -> dict[str, tuple[bytes, str]]:
    import pickle
    import zipfile

    npz = _zip({"sequences.npy": _npy_bytes(_SEQUENCES)})
    return {
        "empty": (b"", "the file is empty"),
        "truncated magic": (b"\x93NUM", "not a readable .npy or .npz: it starts with b'\\x93NUM'"),
        "text": (b"0.1, 0.2, 0.3\n", "not a readable .npy or .npz"),
        "header cut off": (_npy_bytes(_SEQUENCES)[:30], "not a readable .npy: EOF: reading array header"),
        # tokenize's TokenError escaped numpy's header parser: exit 3
        "unterminated dict": (_hand_npy(_PLAIN[:-8], _DATA), "its header is not a Python dict literal"),
        "expression": (_hand_npy(_PLAIN.replace("(4,", "(2**2,"), _DATA), "its header is not a Python dict literal"),
        "shape a list": (_hand_npy(_PLAIN.replace("(4, 1, 3, 3)", "[4, 1, 3, 3]"), _DATA),
                         "shape is not valid: [4, 1, 3, 3]"),
        "shape negative": (_hand_npy(_PLAIN.replace("(4,", "(-4,"), _DATA), "sizes are integers from 0"),
        "shape of bools": (_hand_npy(_PLAIN.replace("(4,", "(True,"), _DATA), "claims shape [True, 1, 3, 3]"),
        "keys": (_hand_npy("{'descr': '<f4', 'shape': (4, 1, 3, 3)}", _DATA), "does not contain the correct keys"),
        "bad descr": (_hand_npy(_PLAIN.replace("'<f4'", "'<q9'"), _DATA), "descr is not a valid dtype descriptor"),
        "version 9": (_hand_npy(_PLAIN, _DATA)[:6] + b"\x09\x00" + _hand_npy(_PLAIN, _DATA)[8:],
                      "unknown .npy format version 9.0"),
        "header length 4 GiB": (_hand_npy(_PLAIN, _DATA, version=2)[:8] + b"\xff\xff\xff\xff"
                                + _hand_npy(_PLAIN, _DATA, version=2)[12:], "EOF: reading array header"),
        "truncated data": (_npy_bytes(_SEQUENCES)[:-20], "truncated: its header claims shape [4, 1, 3, 3] of <f4 "
                           "(144 bytes of data), the file holds 124"),
        "object dtype": (_npy_bytes(np.array([_SEQUENCES, None], dtype=object)),
                         "holds Python objects (dtype object), which only a pickle can load: tflrnn never loads "
                         "pickles"),
        "object field": (_hand_npy("{'descr': [('x', '|O')], 'fortran_order': False, 'shape': (4,), }", b"\0" * 32),
                         "never loads pickles"),
        "a pickle": (pickle.dumps(_SEQUENCES), "a pickle, not a .npy or .npz: tflrnn never loads pickles"),
        "complex": (_npy_bytes(_SEQUENCES.astype(np.complex64)), "found dtype complex64 (complex numbers)"),
        "strings": (_npy_bytes(_SEQUENCES.astype(str)), "(strings)"),
        "booleans": (_npy_bytes(_SEQUENCES > 0), "found dtype bool (booleans)"),
        "structured": (_npy_bytes(np.zeros(4, [("a", "<f4"), ("b", "<i4")])), "(records or raw bytes)"),
        "dates": (_npy_bytes(np.zeros(4, "datetime64[s]")), "(dates)"),
        "over the limit": (_hand_npy(_PLAIN.replace("(4,", f"({2**27},"), _DATA),
                           "claims shape [134217728, 1, 3, 3] (1,207,959,552 values), over the limit of 134,217,728"),
        "two arrays": (_zip({"a.npy": _npy_bytes(_SEQUENCES), "b.npy": _npy_bytes(_SEQUENCES)}),
                       "an .npz of one array, found 2 ('a', 'b')"),
        "empty archive": (_zip({}), "an .npz of one array, found 0 (none)"),
        "member not an array": (_zip({"sequences.npy": b"0.1 0.2 0.3"}), "array 'sequences': not a readable .npy: "
                                "the magic string is not correct"),
        "member truncated": (_zip({"sequences.npy": _npy_bytes(_SEQUENCES)[:-4]}), "array 'sequences': truncated"),
        "member pickle": (_zip({"sequences.npy": _npy_bytes(np.array([1, None], dtype=object))}),
                          "never loads pickles"),
        "zip cut short": (npz[: len(npz) // 2], "not an .npz archive"),
        "encrypted": (_zip_field(npz, 8, 6, "<H", 0x1), "array 'sequences' is encrypted"),
        "unknown method": (_zip_field(npz, 10, 8, "<H", 99), "compressed with zip method 99, which Python's zipfile "
                           "cannot read"),
        "bad crc": (_zip_field(npz, 16, 14, "<I", 0x12345678), "a corrupt zip entry (Bad CRC-32"),
        # the deflate stream's first byte (after the 30-byte local header and the name) set to an invalid block type
        "corrupt deflate": (_set_byte(_zip({"sequences.npy": _npy_bytes(_SEQUENCES)}, zipfile.ZIP_DEFLATED), 43, 0xFF),
                            "array 'sequences': its compressed data is corrupt (Error -3 while decompressing data: "
                            "invalid block type)"),
    }


@pytest.mark.parametrize("case", list(_calibration_cases()))
def test_malformed_calibration_files_are_one_clear_line(tmp_path, cli, case):
    data, fragment = _calibration_cases()[case]
    path = tmp_path / "calibration.npy"
    path.write_bytes(data)
    out = tmp_path / "int8.tflite"
    assert_clean_error(cli("build", *_FULL_INT8, "--calibration", path, "-o", out), "calibration", fragment)
    assert [p.name for p in tmp_path.iterdir()] == ["calibration.npy"]  # no model, no temporary


def test_missing_or_odd_calibration_paths(tmp_path, cli):
    out = tmp_path / "int8.tflite"
    assert_clean_error(cli("build", *_FULL_INT8, "--calibration", tmp_path / "none.npy", "-o", out), "file not found")
    assert_clean_error(cli("build", *_FULL_INT8, "--calibration", tmp_path, "-o", out), "is a directory")
    assert not out.exists()


def _header(**fields) -> bytes:
    import io

    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, {"fortran_order": False, **fields})
    return head.getvalue()


def _bomb(header: bytes, zeros: int, method=None) -> bytes:
    """A compressed .npz member: an .npy header, then `zeros` zero bytes that compress to almost nothing."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method or zipfile.ZIP_DEFLATED) as archive:
        with archive.open("sequences.npy", "w") as member:
            member.write(header)
            block = bytes(1 << 20)
            for _ in range(zeros >> 20):
                member.write(block)
    return buf.getvalue()


def test_calibration_zip_bomb_is_refused_from_its_declared_shape(tmp_path, cli):
    """2^40 float32 values declared (4 TiB: no machine could inflate them), 1 MiB of zeros held: refused from the
    header, at once."""
    import time
    import zipfile

    for method in (zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA):
        path = tmp_path / "bomb.npz"
        path.write_bytes(_bomb(_header(descr="<f4", shape=(2**36, 1, 4, 4)), 1 << 20, method))
        assert path.stat().st_size < 20000
        start = time.monotonic()
        result = cli("build", *_FULL_INT8, "--calibration", path, "-o", tmp_path / "int8.tflite")
        assert_clean_error(result, "array 'sequences': claims shape [68719476736, 1, 4, 4] (1,099,511,627,776 "
                           "values), over the limit of 134,217,728; refused before reading it")
        assert time.monotonic() - start < 5
        assert not (tmp_path / "int8.tflite").exists()


def test_calibration_bomb_is_not_inflated(tmp_path, cli):
    """A member of 160 MiB of real zeros (int8: 167,772,160 values, over the limit), 160 KiB on disk: refused
    with less than 16 MiB allocated in all (tracemalloc sees numpy's and zlib's buffers), so nothing was inflated.
    Its zip entry's declared size is checked too, before the member is opened."""
    import tracemalloc

    path = tmp_path / "bomb.npz"
    data = _bomb(_header(descr="|i1", shape=(2**25, 1, 1, 5)), 160 << 20)
    path.write_bytes(data)
    assert path.stat().st_size < 1 << 20
    tracemalloc.start()
    try:
        result = cli("build", *_FULL_INT8, "--calibration", path, "-o", tmp_path / "int8.tflite")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert_clean_error(result, "claims shape [33554432, 1, 1, 5] (167,772,160 values)", "refused before reading it")
    assert peak < 16 << 20, peak
    # The zip directory declares 4 GiB uncompressed: refused before the member is opened at all
    path.write_bytes(_zip_field(data, 24, 22, "<I", 2**32 - 1))
    assert_clean_error(cli("build", *_FULL_INT8, "--calibration", path, "-o", tmp_path / "int8.tflite"),
                       "its zip entry declares 4,294,967,295 bytes uncompressed, more than 134,217,728 values need")


def test_calibration_in_other_layouts_and_dtypes_builds_the_same_model(tmp_path, cli):
    """Fortran order, big-endian float64 in a deflated .npz: the same values, the same model."""
    import zipfile

    def build(name, data):
        path = tmp_path / name
        path.write_bytes(data)
        out = tmp_path / f"{name}.tflite"
        result = cli("build", *_FULL_INT8, "--calibration", path, "-o", out)
        assert result.code == 0 and result.err == "", result.err
        return out.read_bytes()

    odd = np.asfortranarray(_SEQUENCES.astype(">f8"))
    assert build("odd.npz", _zip({"x.npy": _npy_bytes(odd)}, zipfile.ZIP_DEFLATED)) == build("plain.npy",
                                                                                             _npy_bytes(_SEQUENCES))


@pytest.mark.parametrize("data", [
    _npy_bytes(np.asfortranarray(_SEQUENCES)), _npy_bytes(_SEQUENCES.astype(">f4")),
    _hand_npy(_PLAIN, _DATA, version=2), _hand_npy(_PLAIN, _DATA, version=3),
    _hand_npy(_PLAIN.replace("(4, 1, 3, 3)", "(4L, 1L, 3L, 3L)"), _DATA),  # Python 2's, read after numpy's filter
    _npy_bytes(_SEQUENCES) + b"trailing bytes",  # as np.load, which reads what the header declares
], ids=["fortran", "big-endian", "version 2.0", "version 3.0", "python 2 header", "trailing bytes"])
def test_unusual_but_valid_npy_files_read_as_numpy_writes_them(tmp_path, data):
    import warnings

    from tflrnn import arrays

    path = tmp_path / "x.npy"
    path.write_bytes(data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        read = arrays.load(path, max_values=1000)
    assert caught == []  # numpy's warning about a Python 2 header would be a stray line on stderr
    np.testing.assert_array_equal(read, _SEQUENCES)
    assert read.flags.writeable


def _weights_npz(tmp_path, bias: bytes, **extra):
    w = {"input_weights": np.zeros((4, 3), np.float32), "recurrent_weights": np.eye(4, dtype=np.float32)}
    members = {f"{k}.npy": _npy_bytes(v) for k, v in w.items()} | {"bias.npy": bias} | extra
    path = tmp_path / "w.npz"
    path.write_bytes(_zip(members))
    return path


@pytest.mark.parametrize("bias, fragment", [
    (_hand_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4", b"\0" * 16),
     "array 'bias': not a readable .npy: its header is not a Python dict literal"),
    (_npy_bytes(np.array([0.0, None, 0.0, 0.0], dtype=object)), "tflrnn never loads pickles"),
    (_hand_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", b"\0" * 8), "array 'bias': truncated"),
    (_npy_bytes(np.zeros(4, np.complex64)), "array 'bias': expected real numbers (float or integer), found dtype "
                                            "complex64"),
], ids=["unterminated header", "object dtype", "truncated", "complex"])
def test_malformed_npz_weights_are_one_clear_line(tmp_path, cli, bias, fragment):
    out = tmp_path / "out.tflite"
    assert_clean_error(cli("build", "--weights", _weights_npz(tmp_path, bias), "-o", out), "cannot read weights",
                       fragment)
    assert not out.exists()


def test_npz_weights_bomb_is_refused_from_its_declared_shape(tmp_path, cli):
    """A deflated member declaring 2^30 float32 values (4 GiB, more than a model holds), 1 MiB held."""
    import zipfile

    path = tmp_path / "w.npz"
    path.write_bytes(_zip({"input_weights.npy": _npy_bytes(np.zeros((4, 3), np.float32)),
                           "recurrent_weights.npy": _npy_bytes(np.eye(4, dtype=np.float32)),
                           "bias.npy": _header(descr="<f4", shape=(2**30,)) + bytes(1 << 20)}, zipfile.ZIP_DEFLATED))
    assert path.stat().st_size < 20000
    assert_clean_error(cli("build", "--weights", path, "-o", tmp_path / "out.tflite"), "cannot read weights",
                       "array 'bias': claims shape [1073741824] (1,073,741,824 values), over the limit of 536,870,911")


def test_npz_weights_read_only_the_cell(tmp_path, cli):
    """Members the cell does not use are never read: a corrupt one beside a valid cell does not matter."""
    path = _weights_npz(tmp_path, _npy_bytes(np.zeros(4, np.float32)),
                        **{"notes.npy": _hand_npy("{'descr': '<f4', 'shape': (", b"")})
    assert cli("build", "--weights", path, "-o", tmp_path / "out.tflite").code == 0


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


@pytest.mark.parametrize("argv, code", [
    (["build", "--units", "0"], 2),  # bad input
    (["build", "--units", "4", "--out-dir", "elsewhere"], 2),
    (["verify", "missing.tflite"], 2),
])
def test_debug_shows_the_traceback_and_keeps_the_exit_code(tmp_path, argv, code):
    """`tflrnn --debug ...` adds the traceback; the error line and the exit code are those without it (it once
    exited 1, as a failed check does)."""
    import subprocess
    import sys

    plain = subprocess.run([sys.executable, "-m", "tflrnn", *argv], capture_output=True, text=True, cwd=tmp_path)
    debug = subprocess.run([sys.executable, "-m", "tflrnn", "--debug", *argv], capture_output=True, text=True,
                           cwd=tmp_path)
    assert plain.returncode == debug.returncode == code, (plain.stderr, debug.stderr)
    assert "Traceback" not in plain.stderr and "Traceback" in debug.stderr
    assert debug.stderr.strip().splitlines()[-1] == plain.stderr.strip() and plain.stderr.startswith("tflrnn: error:")
    assert not list(tmp_path.iterdir())  # no model written by either
