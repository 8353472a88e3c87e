""".npy and .npz read without trusting them: header first, declared size checked before any data is read or
inflated, no pickles.

`np.load` trusts a file more than a tool that reads other people's files can: it allocates whatever a header
declares, inflates a compressed member to find out, and lets its header parser's own exceptions (tokenize's
TokenError, SyntaxError, RecursionError) escape. Here numpy's own `np.lib.format` functions parse the header, from
a stream cut at `HEADER_BYTES`; the shape and dtype are checked (real numbers only, at most `max_values` of them,
no more bytes than the file or the zip entry holds) before a byte of data is read or inflated; then exactly the
declared bytes are read. Object arrays are refused outright: only a pickle can load them. Every problem is an
`ArrayFileError`, one line, which the caller prefixes with what the file was for.
"""

from __future__ import annotations

import lzma
import math
import os
import stat
import struct
import tokenize
import warnings
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import TflrnnError

NPY_MAGIC = np.lib.format.MAGIC_PREFIX
ZIP_STARTS = (b"PK\x03\x04", b"PK\x05\x06")  # a member first, or an empty archive: as np.load tells them apart
MAX_HEADER_CHARS = 10000  # numpy's own default limit (np.lib.format's max_header_size)
HEADER_BYTES = 8 + 4 + MAX_HEADER_CHARS  # magic and version, a u32 length, the header
MAX_ITEMSIZE = 16  # the widest real number numpy writes (longdouble): bounds a zip entry before its header is read
READABLE_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)

# What numpy's header parser, zipfile and the decompressors raise on a malformed file. None of them is a bug of
# the caller's: the file is bad input.
READ_ERRORS = (ValueError, SyntaxError, tokenize.TokenError, TypeError, OverflowError, RecursionError, KeyError,
               IndexError, EOFError, OSError, struct.error, zipfile.BadZipFile, NotImplementedError, zlib.error,
               lzma.LZMAError)

_KINDS = {"c": "complex numbers", "b": "booleans", "U": "strings", "S": "bytes", "M": "dates", "m": "time spans",
          "V": "records or raw bytes"}


class ArrayFileError(TflrnnError):
    """A .npy or .npz that cannot be read as real numbers: the message says why, without the file's name."""


@dataclass(frozen=True)
class Header:
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    offset: int  # bytes before the data: magic, length and header

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize


def load(path, *, max_values: int) -> np.ndarray | NpzArchive:
    """An .npy's array, or an .npz's arrays (read when asked for: close it, or use it in `with`), told apart by
    their first bytes as np.load does; a pickle is never loaded."""
    path = Path(path)
    with _open(path) as stream:
        start = stream.read(len(NPY_MAGIC))
    if start.startswith(ZIP_STARTS):
        return open_npz(path, max_values=max_values)
    if start == NPY_MAGIC:
        return read_npy(path, max_values=max_values)
    if not start:
        raise ArrayFileError("the file is empty, not a .npy or .npz")
    if start[:1] == b"\x80":  # pickle protocol 2 and later open with PROTO
        raise ArrayFileError("a pickle, not a .npy or .npz: tflrnn never loads pickles (they can run code)")
    raise ArrayFileError(f"not a readable .npy or .npz: it starts with {start!r}, neither .npy's magic nor a zip's")


def read_npy(path, *, max_values: int) -> np.ndarray:
    path = Path(path)
    with _open(path) as stream:
        try:
            header = read_header(stream, max_values)
            return read_data(stream, header, os.fstat(stream.fileno()).st_size - header.offset)
        except READ_ERRORS as exc:
            raise ArrayFileError(_why(exc)) from None


def open_npz(path, *, max_values: int) -> NpzArchive:
    return NpzArchive(path, max_values)


class NpzArchive(Mapping):
    """An .npz's arrays by name (`x` for the member `x.npy`), each read and checked when asked for: a member
    nobody asks for is never inflated."""

    def __init__(self, path, max_values: int):
        _regular(Path(path))
        try:
            self._zip = zipfile.ZipFile(path)
        except READ_ERRORS as exc:
            raise ArrayFileError(f"not an .npz archive ({_detail(exc)})") from None
        self.max_values = max_values
        members = [info for info in self._zip.infolist() if not info.filename.endswith("/")]  # is_dir() fails on ""
        self._members = {info.filename[:-4] if info.filename.endswith(".npy") else info.filename: info
                         for info in members}

    def __getitem__(self, name: str) -> np.ndarray:
        info = self._members[name]
        what = f"array {name!r}"
        if info.flag_bits & 0x1:
            raise ArrayFileError(f"{what} is encrypted")
        if info.compress_type not in READABLE_METHODS:
            raise ArrayFileError(f"{what} is compressed with zip method {info.compress_type}, which Python's zipfile "
                                 "cannot read")
        # The entry's declared uncompressed size bounds what opening it could inflate: checked before it is opened
        if info.file_size > HEADER_BYTES + self.max_values * MAX_ITEMSIZE:
            raise ArrayFileError(f"{what}: its zip entry declares {info.file_size:,} bytes uncompressed, more than "
                                 f"{self.max_values:,} values need")
        try:
            with warnings.catch_warnings():  # zipfile's complaints about the archive: the error says enough
                warnings.simplefilter("ignore")
                with self._zip.open(info) as stream:
                    header = read_header(stream, self.max_values)
                    return read_data(stream, header, info.file_size - header.offset)
        except ArrayFileError as exc:
            raise ArrayFileError(f"{what}: {exc}") from None
        except READ_ERRORS as exc:
            raise ArrayFileError(f"{what}: {_why(exc, in_zip=True)}") from None

    def __contains__(self, name) -> bool:  # Mapping's would read the array
        return name in self._members

    def __iter__(self) -> Iterator[str]:
        return iter(self._members)

    def __len__(self) -> int:
        return len(self._members)

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> NpzArchive:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_header(stream, max_values: int) -> Header:
    """The .npy header at the stream's position, parsed by numpy, checked: real numbers, at most `max_values`."""
    capped = _Capped(stream, HEADER_BYTES)  # numpy reads a declared header length before it checks it
    with warnings.catch_warnings():  # numpy warns on a Python 2 header it could still read: the file reads
        warnings.simplefilter("ignore")
        version = np.lib.format.read_magic(capped)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(capped, MAX_HEADER_CHARS)
        elif version in ((2, 0), (3, 0)):  # 3.0 differs only in the header's encoding, UTF-8 (field names)
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(capped, MAX_HEADER_CHARS)
        else:
            raise ArrayFileError(f"unknown .npy format version {version[0]}.{version[1]} (numpy writes 1.0 to 3.0)")
    header = Header(tuple(shape), dtype, fortran_order, capped.consumed)
    if any(type(n) is not int or n < 0 for n in header.shape):  # numpy lets True and -1 through
        raise ArrayFileError(f"claims shape {list(header.shape)}: sizes are integers from 0")
    if dtype.hasobject:
        raise ArrayFileError(f"holds Python objects (dtype {_short(dtype)}), which only a pickle can load: tflrnn "
                             "never loads pickles (they can run code)")
    if dtype.kind not in "fiu":
        raise ArrayFileError(f"expected real numbers (float or integer), found dtype {_short(dtype)} "
                             f"({_KINDS.get(dtype.kind, 'not numbers')})")
    if header.size > max_values:
        raise ArrayFileError(f"claims shape {list(header.shape)} ({header.size:,} values), over the limit of "
                             f"{max_values:,}; refused before reading it")
    return header


def read_data(stream, header: Header, available: int) -> np.ndarray:
    """The array after `header`: exactly its declared bytes, of which the file or entry holds `available`."""
    if header.nbytes > available:
        raise ArrayFileError(f"truncated: its header claims shape {list(header.shape)} of {header.dtype.str} "
                             f"({header.nbytes:,} bytes of data), the file holds {max(available, 0):,}")
    data = bytearray(header.nbytes)  # a bytearray: the array is writable, as np.load's
    view, got = memoryview(data), 0
    while got < len(data):
        n = stream.readinto(view[got:])
        if not n:
            raise ArrayFileError(f"truncated: the data ends after {got:,} of {len(data):,} bytes")
        got += n
    array = np.frombuffer(data, header.dtype, count=header.size)
    return array.reshape(header.shape, order="F" if header.fortran_order else "C")


class _Capped:
    """The first `limit` bytes of a stream, for numpy's header reader (all it calls is read)."""

    def __init__(self, stream, limit: int):
        self.stream, self.left, self.consumed = stream, limit, 0

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(self.left if size is None or size < 0 else min(size, self.left))
        self.left -= len(data)
        self.consumed += len(data)
        return data


def _open(path: Path):
    _regular(path)
    try:
        return open(path, "rb")
    except OSError as exc:
        raise ArrayFileError(f"cannot open it: {exc.strerror or exc}") from None


def _regular(path: Path) -> None:
    """A regular file (not a directory, a FIFO or a device, which a reader could block on or read forever)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ArrayFileError("file not found") from None
    except OSError as exc:
        raise ArrayFileError(f"cannot open it: {exc.strerror or exc}") from None
    if stat.S_ISDIR(mode):
        raise ArrayFileError("is a directory")
    if not stat.S_ISREG(mode):
        raise ArrayFileError("not a regular file")


def _why(exc: BaseException, in_zip: bool = False) -> str:
    """Why a .npy (a file, or an .npz member) could not be read, from what numpy, zipfile or a decompressor
    raised."""
    # ast's and tokenize's complaints (with the header's text, or an object's address) say one thing
    if isinstance(exc, (tokenize.TokenError, SyntaxError)) or str(exc).startswith(("Cannot parse header",
                                                                                  "malformed node")):
        return "not a readable .npy: its header is not a Python dict literal"
    if isinstance(exc, RecursionError):
        return "not a readable .npy: its header is nested too deeply"
    if isinstance(exc, (zlib.error, lzma.LZMAError, EOFError)) or (isinstance(exc, OSError) and "stream" in str(exc)):
        return f"its compressed data is corrupt ({_detail(exc)})"  # bz2's is an OSError about the "data stream"
    if isinstance(exc, zipfile.BadZipFile) or (isinstance(exc, OSError) and in_zip):  # a seek the offsets broke
        return f"a corrupt zip entry ({_detail(exc)})"
    if isinstance(exc, OSError):
        return f"cannot read it ({_detail(exc)})"
    return f"not a readable .npy: {_detail(exc)}"


def _detail(exc: BaseException) -> str:
    detail = " ".join(str(exc).split()).split(". ")[0]  # numpy's first sentence is the fact, then advice
    if isinstance(exc, (KeyError, IndexError, struct.error)) or not detail:
        detail = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    return detail if len(detail) <= 120 else detail[:117] + "..."


def _short(dtype: np.dtype) -> str:
    text = str(dtype)
    return text if len(text) <= 60 else text[:57] + "..."
