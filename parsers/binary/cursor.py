"""Bounds-checked reads from an in-memory binary input, with errors that name the file and offset.

Every size or count read from a file is checked against the bytes that remain before anything is
allocated or sliced, so a corrupt field ends in a one-line ``TraceFormatError``
(``<file>: <what> at byte 0x1a2b: ...``), never in a traceback, a hang or a huge allocation.
"""

from __future__ import annotations

import struct
from typing import NoReturn

from ..errors import TraceFormatError


def fail(name: str, offset: int | None, msg: str) -> NoReturn:
    where = f" at byte {offset:#x}" if offset is not None else ""
    raise TraceFormatError(f"{name}:{where} {msg}" if where else f"{name}: {msg}")


class Cursor:
    """A read position in ``buf[start:end]``; ``base`` is added to offsets in messages.

    ``base`` lets a cursor over a decompressed section report offsets of the file
    (the section's offset), and ``what`` says which section it is.
    """

    __slots__ = ("base", "buf", "end", "le", "name", "pos", "what")

    def __init__(self, buf, name: str, *, pos: int = 0, end: int | None = None, le: bool = True,
                 base: int | None = None, what: str = "") -> None:
        self.buf = buf
        self.pos = pos
        self.end = len(buf) if end is None else min(end, len(buf))
        self.name = name
        self.le = le
        self.base = base  # None: offsets are file offsets; else the file offset of this (decompressed) data
        self.what = what

    # -------------------------------------------------------------- errors
    def file_offset(self, pos: int | None = None) -> int:
        p = self.pos if pos is None else pos
        return p if self.base is None else self.base

    def fail(self, msg: str, pos: int | None = None) -> NoReturn:
        ctx = f" (in {self.what})" if self.what else ""
        fail(self.name, self.file_offset(pos), msg + ctx)

    # -------------------------------------------------------------- reads
    @property
    def left(self) -> int:
        return self.end - self.pos

    def need(self, n: int, what: str) -> None:
        if n < 0 or n > self.end - self.pos:
            self.fail(f"truncated: {what} needs {n} bytes, {max(self.end - self.pos, 0)} left")

    def _unpack(self, fmt: str, n: int, what: str):
        self.need(n, what)
        v = struct.unpack_from(("<" if self.le else ">") + fmt, self.buf, self.pos)[0]
        self.pos += n
        return v

    def u8(self, what: str = "u8") -> int:
        return self._unpack("B", 1, what)

    def u16(self, what: str = "u16") -> int:
        return self._unpack("H", 2, what)

    def u32(self, what: str = "u32") -> int:
        return self._unpack("I", 4, what)

    def i32(self, what: str = "i32") -> int:
        return self._unpack("i", 4, what)

    def u64(self, what: str = "u64") -> int:
        return self._unpack("Q", 8, what)

    def bytes(self, n: int, what: str) -> bytes:
        self.need(n, what)
        v = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        return v

    def view(self, n: int, what: str) -> memoryview:
        self.need(n, what)
        v = memoryview(self.buf)[self.pos : self.pos + n]
        self.pos += n
        return v

    def skip(self, n: int, what: str) -> None:
        self.need(n, what)
        self.pos += n

    def cstr(self, what: str, limit: int = 1 << 16) -> str:
        """A NUL-terminated string (at most ``limit`` bytes before the NUL)."""
        stop = min(self.end, self.pos + limit + 1)
        i = bytes(self.buf[self.pos : stop]).find(b"\0")
        if i < 0:
            self.fail(f"truncated or corrupt: {what}: no NUL terminator within {stop - self.pos} bytes")
        s = bytes(self.buf[self.pos : self.pos + i]).decode("utf-8", "backslashreplace")
        self.pos += i + 1
        return s

    def expect(self, lit: bytes, what: str) -> None:
        got = self.bytes(len(lit), what) if self.left >= len(lit) else None
        if got != lit:
            self.pos -= len(lit) if got is not None else 0
            self.fail(f"expected {what} {lit!r}, found {bytes(self.buf[self.pos:self.pos + len(lit)])!r}")

    def sub(self, n: int, what: str) -> Cursor:
        """A cursor over the next ``n`` bytes (which this one skips)."""
        self.need(n, what)
        c = Cursor(self.buf, self.name, pos=self.pos, end=self.pos + n, le=self.le, base=self.base, what=self.what)
        self.pos += n
        return c
