"""Mutations of calibration data (`build --quantize full-int8 --calibration FILE`): the array, the .npy header
(numpy's parser and tflrnn's checks of shape and dtype), and the .npz's zip (declared sizes, compression methods,
members), including bombs: members whose header or zip entry declares far more than the file holds."""

from __future__ import annotations

import io
import random
import struct
import zipfile

import numpy as np

from .cases import Seed
from .formats import npy_bytes, npy_raw, npz_bytes
from .mutate_bytes import BYTE_MUTATORS
from .mutate_weights import _mutated_npy, mutate_array

CENTRAL, LOCAL = b"PK\x01\x02", b"PK\x03\x04"
# (flags, method, crc, compressed size, uncompressed size) offsets from each header's signature
ZIP_FIELDS = {CENTRAL: (8, 10, 16, 20, 24), LOCAL: (6, 8, 14, 18, 22)}
HUGE_SHAPES = ("(1099511627776, 1, 1, {i})", "(4294967296, 1, {t}, {i})", "(2**40,)", "(134217728, 1, 1, {i})",
               "(33554432, 1, 2, {i})", "(9223372036854775807, 1, 1, {i})")


def calibration_bytes(spec: dict, array: np.ndarray | None = None, member: bytes | None = None) -> bytes:
    """The seed's container (.npy, .npz stored or deflated) around `array`, or around ready-made .npy bytes."""
    array = spec["array"] if array is None else array
    if spec["container"] == "npy":
        return member if member is not None else npy_bytes(np.asfortranarray(array) if spec["fortran"] else array)
    compressed = spec["container"] == "npz-compressed"
    if member is not None:
        return npz_bytes({}, compressed, {spec["name"] + ".npy": member})
    return npz_bytes({spec["name"]: array}, compressed)


def mutate_calibration(rng: random.Random, seed: Seed) -> tuple[str, bytes]:
    spec = seed.spec
    how = rng.choice(("array", "array", "header", "header", "npy", "npy", "zip", "zip", "bomb", "bytes"))
    if how == "array":
        label, array = mutate_array(rng, spec["array"])
        try:
            return f"cal:{label}", calibration_bytes(spec, array)
        except (ValueError, TypeError):
            return "cal:array-unwritable", seed.data
    if how == "header":
        label, raw = _mutated_npy(rng, spec["array"])
        return f"cal:header:{label}", calibration_bytes(spec, member=raw)
    if how == "npy":
        label, raw = _npy_edit(rng, spec)
        return f"cal:npy:{label}", calibration_bytes(spec, member=raw)
    if how == "zip":
        return _zip_edit(rng, seed)
    if how == "bomb":
        return _bomb(rng, spec)
    return rng.choice(BYTE_MUTATORS)(rng, seed.data)


def _npy_edit(rng: random.Random, spec: dict) -> tuple[str, bytes]:
    """Hand-written .npy files around the seed's values: some valid in unusual ways, most not."""
    a = np.ascontiguousarray(spec["array"], np.float32)
    n, i = a.shape[0], a.shape[-1]
    data = a.tobytes()
    plain = f"{{'descr': '<f4', 'fortran_order': False, 'shape': {a.shape}, }}"
    what = rng.choice(("python2-long", "fortran", "big-endian", "v2", "v3", "header-length", "non-ascii",
                       "unterminated", "cut-data", "no-newline", "shape-bool", "zero-size", "negative",
                       "object-field", "complex", "float16", "uint8", "int64-extreme", "subarray", "deep",
                       "huge-digits", "extra-data"))
    if what == "python2-long":  # numpy reads it after tokenize's filter, with a warning
        shape = "(" + ", ".join(f"{d}L" for d in a.shape) + ",)"
        return what, npy_raw(f"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}", data)
    if what == "fortran":
        return what, npy_raw(plain.replace("False", "True"), np.asfortranarray(a).tobytes(order="F"))
    if what == "big-endian":
        return what, npy_raw(plain.replace("'<f4'", "'>f4'"), a.astype(">f4").tobytes())
    if what in ("v2", "v3"):
        return what, npy_raw(plain, data, (2, 0) if what == "v2" else (3, 0))
    if what == "header-length":
        raw = bytearray(npy_raw(plain, data, (2, 0)))
        struct.pack_into("<I", raw, 8, rng.choice((0, 1, 10001, 0x7FFFFFFF, 0xFFFFFFFF)))
        return what, bytes(raw)
    if what == "non-ascii":
        return what, npy_raw(plain.replace("'descr'", "'d\xe9scr'"), data)
    if what == "unterminated":  # tokenize's TokenError once escaped numpy's parser
        return what, npy_raw(plain[: rng.randrange(1, len(plain) - 2)], data)
    if what == "cut-data":
        return what, npy_raw(plain, data[: rng.randrange(len(data))])
    if what == "no-newline":
        raw = npy_raw(plain, data)
        header_end = raw.index(b"\n")
        return what, raw[:header_end] + b" " + raw[header_end + 1:]
    if what == "shape-bool":
        return what, npy_raw(plain.replace(f"({n}, ", "(True, "), data[: len(data) // n])
    if what == "zero-size":
        return what, npy_raw(plain.replace(f"({n}, ", "(0, "), b"")
    if what == "negative":
        return what, npy_raw(plain.replace(f"({n}, ", f"(-{n}, "), data)
    if what == "object-field":
        return what, npy_raw(f"{{'descr': [('x', '|O')], 'fortran_order': False, 'shape': {a.shape}, }}", data)
    if what == "complex":
        return what, npy_bytes(a.astype(np.complex64))
    if what == "float16":
        return what, npy_bytes(a.astype(np.float16))
    if what == "uint8":
        return what, npy_bytes((a * 10).clip(0, 255).astype(np.uint8))
    if what == "int64-extreme":
        return what, npy_bytes(np.full(a.shape, rng.choice((2**63 - 1, -(2**63))), np.int64))
    if what == "subarray":
        return what, npy_raw(f"{{'descr': ('<f4', ({i},)), 'fortran_order': False, 'shape': {a.shape[:3]}, }}",
                             data)
    if what == "deep":
        depth = rng.choice((50, 150, 400))
        return what, npy_raw(f"{{'descr': {'(' * depth}'<f4'{', (1,))' * depth}, 'fortran_order': False, "
                             f"'shape': {a.shape}, }}", data)
    if what == "huge-digits":
        return what, npy_raw(plain.replace(f"({n}, ", "(" + "9" * 5000 + ", "), data)
    return what, npy_raw(plain, data + b"\0" * rng.choice((1, 4, 1000)))


def _zip_edit(rng: random.Random, seed: Seed) -> tuple[str, bytes]:
    spec = seed.spec
    member = npy_bytes(spec["array"])
    compressed = rng.random() < 0.5
    what = rng.choice(("two-members", "empty", "directory", "not-npy", "pickle", "nested", "encrypted", "method",
                       "crc", "declared-size", "compressed-size", "no-suffix", "npy-in-zip-named-npy"))
    if what == "two-members":
        return f"cal:zip:{what}", npz_bytes({"a": spec["array"], "b": spec["array"]}, compressed)
    if what == "empty":
        return f"cal:zip:{what}", npz_bytes({}, compressed)
    if what == "directory":
        return f"cal:zip:{what}", npz_bytes({}, compressed, {"sequences.npy/": b""})
    if what == "not-npy":
        return f"cal:zip:{what}", npz_bytes({}, compressed, {"sequences.npy": b"not an array\n" * 4})
    if what == "pickle":
        return f"cal:zip:{what}", npz_bytes({"sequences": np.array([{"a": 1}, None], dtype=object)}, compressed)
    if what == "nested":
        return f"cal:zip:{what}", npz_bytes({}, compressed, {"sequences.npy": seed.data})
    if what == "no-suffix":
        return f"cal:zip:{what}", npz_bytes({}, compressed, {"sequences": member})
    if what == "npy-in-zip-named-npy":
        return f"cal:zip:{what}", npz_bytes({}, compressed, {"a.npy": member, "b.txt": b"notes"})
    data = bytearray(npz_bytes({"sequences": spec["array"]}, compressed))
    field, value = {
        "encrypted": (0, 0x1),
        "method": (1, rng.choice((1, 6, 9, 13, 97, 99, 0xFFFF))),
        "crc": (2, rng.getrandbits(32)),
        "declared-size": (4, rng.choice((0, 1, 100, len(member) - 1, len(member) + 1, 2**31, 2**32 - 1))),
        "compressed-size": (3, rng.choice((0, 1, 2**32 - 1))),
    }[what]
    for signature in (CENTRAL, LOCAL):
        at = data.find(signature)
        if at < 0:
            continue
        offset = ZIP_FIELDS[signature][field]
        fmt = "<H" if field < 2 else "<I"
        if field == 0:
            value |= struct.unpack_from(fmt, data, at + offset)[0]
        struct.pack_into(fmt, data, at + offset, value)
    return f"cal:zip:{what}={value}", bytes(data)


def _bomb(rng: random.Random, spec: dict) -> tuple[str, bytes]:
    """A small file that declares a huge array: a deflated (or bzip2, lzma) member whose .npy header claims far
    more than the limit, over 1 MiB of zeros that compress to almost nothing; the zip entry's declared size is the
    truth or a lie. Reading must refuse it from the header, never inflate the rest."""
    _, t, _, i = spec["array"].shape
    shape = rng.choice(HUGE_SHAPES).format(t=t, i=i)
    header = npy_raw(f"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}", b"")
    method = rng.choice((zipfile.ZIP_DEFLATED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as archive:
        archive.writestr("sequences.npy", header + bytes(rng.choice((1 << 16, 1 << 20))))
    data = bytearray(buf.getvalue())
    lie = rng.choice((None, None, 2**32 - 1, 2**31, 1 << 30))
    if lie is not None:  # declare a size the entry's data does not have
        for signature in (CENTRAL, LOCAL):
            at = data.find(signature)
            struct.pack_into("<I", data, at + ZIP_FIELDS[signature][4], lie)
    return f"cal:bomb:{shape[:24]}:method{method}:size{lie}", bytes(data)
