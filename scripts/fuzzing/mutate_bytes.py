"""Byte-level and flatbuffer-aware mutations of any file."""

from __future__ import annotations

import random
import struct
from collections import defaultdict

from .cases import Seed


U32_HUGE = (0x7FFFFFFF, 0xFFFFFFFF, 0x80000000, 0xFFFFFFFC, 0x40000000, 0x3FFFFFFF, 0x10000, 0xFFFF)


def bitflip(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    if not data:
        return "bitflip:empty", b"\x00"
    buf = bytearray(data)
    flips = rng.choice((1, 1, 2, 4, 8, 32))
    for _ in range(flips):
        i = rng.randrange(len(buf))
        buf[i] ^= 1 << rng.randrange(8)
    return f"bitflip:{flips}", bytes(buf)


def byteset(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    if not data:
        return "byteset:empty", b"\xff"
    buf = bytearray(data)
    for _ in range(rng.choice((1, 2, 6))):
        buf[rng.randrange(len(buf))] = rng.choice((0, 0xFF, 0x7F, 0x80, 0x01, rng.randrange(256)))
    return "byteset", bytes(buf)


def truncate(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    n = len(data)
    how = rng.choice(("random", "random", "tail", "head", "tiny", "empty"))
    if how == "random":
        cut = rng.randrange(n) if n else 0
    elif how == "tail":
        cut = max(0, n - rng.randint(1, 16))
    elif how == "head":
        cut = min(n, rng.randint(1, 64))
    elif how == "tiny":
        cut = min(n, rng.randint(0, 8))
    else:
        cut = 0
    return f"truncate:{how}", data[:cut]


def extend(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    how = rng.choice(("zeros", "random", "self", "ff"))
    k = rng.choice((1, 3, 4, 16, 1000))
    tail = {"zeros": b"\0" * k, "random": rng.randbytes(k), "self": data[:k], "ff": b"\xff" * k}[how]
    return f"extend:{how}", data + tail


def chunk(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    n = len(data)
    if n < 8:
        return "chunk:short", data + data
    a = rng.randrange(n)
    b = min(n, a + rng.choice((1, 4, 16, 64, 256)))
    how = rng.choice(("delete", "duplicate", "zero", "move", "insert"))
    if how == "delete":
        return "chunk:delete", data[:a] + data[b:]
    if how == "duplicate":
        return "chunk:duplicate", data[:b] + data[a:b] + data[b:]
    if how == "zero":
        return "chunk:zero", data[:a] + b"\0" * (b - a) + data[b:]
    if how == "insert":
        return "chunk:insert", data[:a] + rng.randbytes(rng.choice((1, 4, 8))) + data[a:]
    c = rng.randrange(n)
    return "chunk:move", data[:a] + data[b:c] + data[a:b] + data[c:] if c > b else data[:c] + data[a:b] + data[c:a] + data[b:]


def splice(rng: random.Random, data: bytes, other: bytes) -> tuple[str, bytes]:
    if not data or not other:
        return "splice:empty", data or other
    a = rng.randrange(len(data))
    b = rng.randrange(len(other))
    return "splice", data[:a] + other[b:]


BYTE_MUTATORS = (bitflip, byteset, truncate, extend, chunk)


def flatbuffer_positions(data: bytes) -> dict[str, list]:
    """Where tflrnn's reader dereferences this file: uoffsets, vector lengths, soffsets to vtables, vtable slots
    and headers, int32 vector elements, string bytes and uint8 data, recorded by wrapping flatbuffers' Table while
    tflrnn.reader.read runs."""
    from flatbuffers import encode
    from flatbuffers import number_types as N
    from flatbuffers import table as fbtable

    from tflrnn import reader

    Table = fbtable.Table
    found: dict[str, set] = defaultdict(set)
    saved = {name: getattr(Table, name) for name in ("Offset", "Indirect", "String", "VectorLen", "Vector", "Union",
                                                      "GetVectorAsNumpy")}

    def get_u32(buf, pos):
        return encode.Get(N.UOffsetTFlags.packer_type, buf, pos)

    def Offset(self, vtable_offset):
        found["soffset"].add(self.Pos)
        vtable = self.Pos - self.Get(N.SOffsetTFlags, self.Pos)
        found["vtable_header"].add(vtable)
        if vtable_offset < self.Get(N.VOffsetTFlags, vtable):
            found["vtable"].add(vtable + vtable_offset)
        return saved["Offset"](self, vtable_offset)

    def Indirect(self, off):
        found["uoffset"].add(off)
        return saved["Indirect"](self, off)

    def String(self, off):
        found["uoffset"].add(off)
        start = off + get_u32(self.Bytes, off)
        found["length"].add(start)
        found["string"].add((start + 4, get_u32(self.Bytes, start)))
        return saved["String"](self, off)

    def VectorLen(self, off):
        at = off + self.Pos
        found["uoffset"].add(at)
        found["length"].add(at + get_u32(self.Bytes, at))
        return saved["VectorLen"](self, off)

    def Vector(self, off):
        found["uoffset"].add(off + self.Pos)
        return saved["Vector"](self, off)

    def Union(self, t2, off):
        found["uoffset"].add(off + self.Pos)
        return saved["Union"](self, t2, off)

    def GetVectorAsNumpy(self, flags, off):
        array = saved["GetVectorAsNumpy"](self, flags, off)
        start = self.Vector(off)
        if array.dtype.itemsize == 4:
            for k in range(min(len(array), 64)):
                found["elem32"].add(start + 4 * k)
        elif array.dtype.itemsize == 1 and len(array) >= 4:
            found["data"].add((start, len(array)))
        return array

    patched = {"Offset": Offset, "Indirect": Indirect, "String": String, "VectorLen": VectorLen, "Vector": Vector,
               "Union": Union, "GetVectorAsNumpy": GetVectorAsNumpy}
    try:
        for name, fn in patched.items():
            setattr(Table, name, fn)
        reader.read(data)
    finally:
        for name, fn in saved.items():
            setattr(Table, name, fn)
    found["uoffset"].add(0)  # the root table offset
    n = len(data)
    return {k: sorted(p for p in v if (p[0] if isinstance(p, tuple) else p) < n) for k, v in found.items()}


def _put(buf: bytearray, pos: int, fmt: str, value: int) -> None:
    size = struct.calcsize(fmt)
    if 0 <= pos <= len(buf) - size:
        struct.pack_into(fmt, buf, pos, value)


def _u32_values(rng, n, pos, orig):
    return [0, 1, 2, 3, *U32_HUGE, n, n - pos, n - pos - 4, n - pos + 4, (orig + 4) & 0xFFFFFFFF,
            (orig - 4) & 0xFFFFFFFF, (orig * 2) & 0xFFFFFFFF, orig ^ (1 << rng.randrange(32)), rng.getrandbits(32)]


def fb_mutate(rng: random.Random, seed: Seed) -> tuple[str, bytes]:
    """One flatbuffer-aware edit at a position the reader really uses."""
    data, pos_map = seed.data, seed.positions or {}
    buf = bytearray(data)
    n = len(buf)
    kinds = [k for k in ("uoffset", "length", "soffset", "vtable", "vtable_header", "elem32", "data", "string")
             if pos_map.get(k)] + ["root", "identifier", "word"]
    kind = rng.choice(kinds)
    if kind == "identifier":
        ident = rng.choice((b"TFL2", b"tfl3", b"\0\0\0\0", b"TFL4", b"\xff\xff\xff\xff", rng.randbytes(4), b"3LFT"))
        buf[4:8] = ident
        return f"fb:identifier={ident!r}", bytes(buf)
    if kind == "root":
        value = rng.choice(_u32_values(rng, n, 0, struct.unpack_from("<I", buf, 0)[0]) + [n - 1, n - 4, 4, 8])
        _put(buf, 0, "<I", value & 0xFFFFFFFF)
        return f"fb:root={value & 0xFFFFFFFF:#x}", bytes(buf)
    if kind == "word":  # any aligned word: catches fields the reader does not visit
        pos = rng.randrange(0, max(1, n - 3), 4)
        value = rng.choice([*U32_HUGE, n, n + rng.randint(1, 64), 0, rng.getrandbits(32)])
        _put(buf, pos, "<I", value)
        return f"fb:word={value:#x}", bytes(buf)
    choice = rng.choice(pos_map[kind])
    if kind in ("uoffset", "length"):
        pos = choice
        orig = struct.unpack_from("<I", buf, pos)[0] if pos + 4 <= n else 0
        if kind == "uoffset":
            value = rng.choice(_u32_values(rng, n, pos, orig))
        else:
            value = rng.choice([0, 1, *U32_HUGE, n // 4, n // 4 + 1, n, orig + 1, orig * 2 + 1, 1 << 20,
                                rng.getrandbits(32)])
        _put(buf, pos, "<I", value & 0xFFFFFFFF)
        return f"fb:{kind}={value & 0xFFFFFFFF:#x}", bytes(buf)
    if kind == "soffset":
        pos = choice
        orig = struct.unpack_from("<i", buf, pos)[0] if pos + 4 <= n else 0
        value = rng.choice([0, pos, pos + 1, pos - n, -n, 0x7FFFFFFF, -0x80000000, orig + 2, orig - 2, orig + 4,
                            orig - 4, -4, 4, rng.randint(-0x80000000, 0x7FFFFFFF)])
        value = max(-0x80000000, min(0x7FFFFFFF, value))
        _put(buf, pos, "<i", value)
        return f"fb:soffset={value}", bytes(buf)
    if kind in ("vtable", "vtable_header"):
        pos = choice + (2 * rng.randrange(2) if kind == "vtable_header" else 0)
        orig = struct.unpack_from("<H", buf, pos)[0] if pos + 2 <= n else 0
        value = rng.choice([0, 1, 2, 3, 4, 0xFFFF, 0x8000, 0x7FFF, orig + 2, orig + 4, orig - 2, orig * 2,
                            rng.getrandbits(16)]) & 0xFFFF
        _put(buf, pos, "<H", value)
        return f"fb:{kind}={value:#x}", bytes(buf)
    if kind == "elem32":
        pos = choice
        orig = struct.unpack_from("<i", buf, pos)[0] if pos + 4 <= n else 0
        value = rng.choice([-1, -2, 0, 1, 2, 3, 5, 6, 7, 9, 100, 2**31 - 1, -(2**31), 2**16, 2**20, orig + 1,
                            orig - 1, orig * 2, -orig, 46341])
        value = max(-(2**31), min(2**31 - 1, value))
        _put(buf, pos, "<i", value)
        return f"fb:elem32={value}", bytes(buf)
    if kind == "data":
        start, length = choice
        pos = start + 4 * rng.randrange(max(1, length // 4))
        value = rng.choice([float("nan"), float("inf"), float("-inf"), 3.4028235e38, -3.4028235e38, 1e-45, -0.0,
                            1e30])
        if pos + 4 <= n:
            struct.pack_into("<f", buf, pos, value)
        return f"fb:data={value}", bytes(buf)
    # string bytes: invalid UTF-8, NUL, control characters
    start, length = choice
    if length == 0 or start >= n:
        return "fb:string-empty", bytes(buf)
    pos = start + rng.randrange(min(length, n - start))
    junk = rng.choice((b"\xff", b"\xc3", b"\x00", b"\xed\xa0\x80", b"\n", b"\x1b", b"/"))
    buf[pos:pos + len(junk)] = junk[: max(0, min(len(junk), n - pos))]
    return f"fb:string={junk!r}", bytes(buf[:n])
