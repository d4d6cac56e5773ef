"""Recognise binary traces by their magic bytes, after gzip/zstd unwrapping, and load them.

``sniff`` looks at the first bytes of an input (decompressing a little of a ``.gz``/``.zst``
wrapper), so a compressed trace.dat or perf.data reaches the binary reader and never the text
scanner.  ``load`` then brings the whole input into memory (both formats need random access):
a plain file is memory-mapped, a compressed one decompressed; the sha256 is of the bytes as
stored, as for text inputs.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import sys
import zlib
from dataclasses import dataclass
from typing import Any

from ..errors import TraceInputError
from ..inputs import GZIP_MAGIC, ZSTD_MAGIC

TRACEDAT_MAGIC = b"\x17\x08Dtracing"
PERF_MAGICS = (b"PERFILE2", b"2ELIFREP", b"PERFFILE")
SNIFF_BYTES = 1 << 18  # a whole zstd block (128 KiB) fits
READ_CHUNK = 1 << 22


def kind_of(head: bytes) -> str | None:
    """``"trace.dat"`` or ``"perf.data"`` for the first bytes of a binary trace, else None."""
    if head.startswith(TRACEDAT_MAGIC):
        return "trace.dat"
    if head[:8] in PERF_MAGICS:
        return "perf.data"
    return None


def _unwrap_head(head: bytes) -> bytes:
    """The first decompressed bytes of a gzip/zstd head, else b"" (fed a little at a time: a zstd
    block yields nothing until it is complete, so a few KiB may not be enough)."""
    try:
        if head.startswith(ZSTD_MAGIC):
            import zstandard

            d = zstandard.ZstdDecompressor().decompressobj()
        elif head.startswith(GZIP_MAGIC):
            d = zlib.decompressobj(wbits=31)
        else:
            return b""
        out = b""
        for i in range(0, len(head), 4096):
            out += d.decompress(head[i : i + 4096])
            if len(out) >= 16:
                break
        return out[:64]
    except Exception:  # noqa: BLE001 - a damaged wrapper: the text path reports it
        return b""


def _raw_head(src: Any) -> bytes:
    if isinstance(src, (bytes, bytearray, memoryview)):
        return bytes(src[:SNIFF_BYTES])
    if str(src) == "-":
        stdin = sys.stdin.buffer
        peek = getattr(stdin, "peek", None)
        return peek(SNIFF_BYTES)[:SNIFF_BYTES] if peek else b""
    try:
        with open(src, "rb") as f:
            return f.read(SNIFF_BYTES)
    except OSError:
        return b""


def sniff(src: Any) -> str | None:
    """The binary kind of an input (path, ``"-"`` or bytes), plain or compressed, or None (text)."""
    head = _raw_head(src)
    k = kind_of(head)
    if k is None and (head[:4] == ZSTD_MAGIC or head[:2] == GZIP_MAGIC):
        k = kind_of(_unwrap_head(head))
    return k


@dataclass
class BinaryInput:
    name: str
    kind: str
    data: Any  # bytes, mmap or bytearray: the (decompressed) file
    compression: str
    raw_bytes: int
    _sha256: Any  # the digest, or the ``RawHasher`` computing it on its thread

    @property
    def sha256(self) -> str:
        """The sha256 of the input as stored (waits for the hashing thread: ask at the end)."""
        if not isinstance(self._sha256, str):
            self._sha256 = self._sha256.hexdigest(self.raw_bytes)
        return self._sha256


def _decompress(raw: bytes, kind: str, name: str) -> bytes:
    """All members/frames of a gzip or zstd stream; a stream cut short is an error."""
    out: list[bytes] = []
    if kind == "zstd":
        import zstandard

        errs: tuple[type[BaseException], ...] = (zstandard.ZstdError,)

        def new():
            return zstandard.ZstdDecompressor().decompressobj()
    else:
        errs = (zlib.error,)

        def new():
            return zlib.decompressobj(wbits=31)

    view = memoryview(raw)
    pos = 0
    d = new()
    in_member = False
    try:
        while pos < len(raw):
            chunk = view[pos : pos + READ_CHUNK]
            pos += len(chunk)
            data = bytes(chunk)
            while data:
                in_member = True
                out.append(d.decompress(data))
                if d.eof:
                    in_member = False
                    data = d.unused_data
                    d = new()
                else:
                    data = b""
    except errs as e:
        raise TraceInputError(f"{name}: unreadable {kind} data: {e}") from None
    if in_member:
        raise TraceInputError(f"{name}: {kind} stream ends early (file cut short?) at byte {len(raw):#x} of the compressed file")
    return b"".join(out)


def load(src: Any, name: str | None = None, hasher: Any = None) -> BinaryInput:
    """Read a binary trace input whole: ``src`` is a path, ``"-"`` (standard input) or bytes."""
    if isinstance(src, (bytes, bytearray, memoryview)):
        raw: Any = bytes(src)
        nm = name or "<bytes>"
        raw_n = len(raw)
        sha = hashlib.sha256(raw).hexdigest()
    elif str(src) == "-":
        raw = sys.stdin.buffer.read()
        nm = name or "<stdin>"
        raw_n = len(raw)
        sha = hashlib.sha256(raw).hexdigest()
    else:
        nm = name or str(src)
        try:
            with open(src, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size == 0:
                    raise TraceInputError(f"{nm}: empty file")
                head = f.read(4)
                f.seek(0)
                if head.startswith((ZSTD_MAGIC, GZIP_MAGIC)):
                    raw = f.read()
                else:
                    raw = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except OSError as e:
            raise TraceInputError(f"{nm}: cannot open: {e.strerror or e}") from None
        raw_n = len(raw)
        if hasher is not None:
            sha = hasher  # (still hashing on its thread: the digest is read once the file is parsed)
        else:
            sha = hashlib.sha256(raw).hexdigest()
    comp = "none"
    data = raw
    if bytes(raw[:4]) == ZSTD_MAGIC:
        comp = "zstd"
    elif bytes(raw[:2]) == GZIP_MAGIC:
        comp = "gzip"
    if comp != "none":
        data = _decompress(bytes(raw), comp, nm)
    kind = kind_of(bytes(data[:16]))
    if kind is None:
        raise TraceInputError(f"{nm}: not a trace.dat or perf.data file (bad magic at byte 0x0)")
    return BinaryInput(nm, kind, data, comp, raw_n, sha)
