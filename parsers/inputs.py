"""Opening trace inputs: files or standard input, plain, gzip or zstd (by magic bytes).

``LineBlocks`` yields blocks of whole lines (ending in a newline, except possibly
the very last one), so the scanner never sees a line split across two reads;
line numbers come from the scanner's own counts.  The sha256 of the raw bytes
(as stored on disk, compressed or not) is computed on the way.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import sys
import threading
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from .errors import TraceInputError

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# formats we can name but not read, so the message can say what to do
_OTHER_MAGIC = {
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
    b"\x04\x22\x4d\x18": "lz4",
    # binary traces: ``parsers.api`` hands them to ``parsers.binary`` (also inside gzip/zstd, by the
    # magic after decompression: ``binary.sniff``); a text stream of one is refused here
    b"\x17\x08\x44tracing": "trace-cmd binary trace.dat (parsers.binary reads it; `pagereplay parse` does so directly)",
    b"PERFILE2": "perf.data binary (parsers.binary reads it; `pagereplay parse` does so directly)",
}

DEFAULT_BLOCK = 8 << 20
MAX_LINE = 64 << 20
HASH_CHUNK = 16 << 20  # large reads (the hashing thread seldom needs the GIL), small enough to stay in cache


class RawHasher:
    """The sha256 of a regular file's raw bytes, computed on a thread of its own.

    Started as early as possible (before the compiled scanner is even imported,
    see ``pagereplay parse``), it reads the file independently of the parser:
    ``hashlib`` and the reads release the GIL, so on a second core the digest is
    mostly ready before the first block is scanned.  ``hexdigest(n)`` returns the
    digest if the thread hashed exactly the ``n`` bytes the parser read, else
    hashes the file's first ``n`` bytes again (the file changed meanwhile).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.nbytes = 0
        self._sha = hashlib.sha256()
        self._stop = False
        self._failed = False
        self._thread = threading.Thread(target=self._run, name="pagereplay-sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            with open(self.path, "rb", buffering=0) as f:
                buf = bytearray(HASH_CHUNK)
                mv = memoryview(buf)
                while not self._stop:
                    n = f.readinto(buf)
                    if not n:
                        break
                    self._sha.update(mv[:n])
                    self.nbytes += n
        except Exception:  # the parser reports unreadable files; the digest is then hashed again
            self._failed = True

    def cancel(self) -> None:
        self._stop = True

    def hexdigest(self, nbytes: int) -> str:
        self._thread.join()
        if not self._failed and not self._stop and self.nbytes == nbytes:
            return self._sha.hexdigest()
        try:
            return _hash_prefix(self.path, nbytes)
        except OSError as e:
            raise TraceInputError(f"{self.path}: read error: {e}") from None


def _hash_prefix(path: str, nbytes: int) -> str:
    sha = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        left = nbytes
        while left > 0:
            chunk = f.read(min(left, HASH_CHUNK))
            if not chunk:
                break
            sha.update(chunk)
            left -= len(chunk)
    return sha.hexdigest()


def start_hashers(sources) -> dict[str, RawHasher]:
    """Start hashing, on one thread per file, every source that is a regular file (by path)."""
    out: dict[str, RawHasher] = {}
    for src in sources:
        if isinstance(src, (bytes, bytearray, memoryview)) or str(src) == "-":
            continue
        key = os.fspath(src)
        if key in out:
            continue
        try:
            if not stat.S_ISREG(os.stat(key).st_mode):
                continue
        except OSError:
            continue
        out[key] = RawHasher(key)
    return out


class _HashingReader(io.RawIOBase):
    """Wraps a binary file, hashing and counting every byte read through it."""

    def __init__(self, f: BinaryIO, on_bytes: Callable[[int], None] | None = None) -> None:
        self._f = f
        self.sha256 = hashlib.sha256()
        self.nbytes = 0
        self._on_bytes = on_bytes

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        n = self._f.readinto(b)
        if n:
            if self.sha256 is not None:
                self.sha256.update(memoryview(b)[:n])
            self.nbytes += n
            if self._on_bytes:
                self._on_bytes(n)
        return n or 0


@dataclass
class InputInfo:
    name: str
    compression: str = "none"
    size: int | None = None
    sha256: str = ""
    raw_bytes: int = 0
    text_bytes: int = 0
    truncated: str | None = None  # why the stream ended early, if it did
    no_final_newline: bool = False
    warnings: list[str] = field(default_factory=list)


class _Members:
    """Decode concatenated gzip members or zstd frames incrementally, noticing a last one cut short.

    (``gzip.GzipFile.read`` drops everything it decoded in a call that hits a
    cut; zstandard's ``stream_reader`` returns a short read without error.)
    """

    def __init__(self, raw: BinaryIO, info: InputInfo, kind: str) -> None:
        self._raw = raw
        self._info = info
        self._kind = kind
        self._errors: tuple[type[BaseException], ...]
        if kind == "zstd":
            import zstandard

            self._new = lambda: zstandard.ZstdDecompressor().decompressobj()
            self._errors = (zstandard.ZstdError,)
        else:
            self._new = lambda: zlib.decompressobj(wbits=31)
            self._errors = (zlib.error,)
        self._d = self._new()
        self._in_member = False

    def read(self, n: int) -> bytes:
        while True:
            chunk = self._raw.read(max(n // 8, 1 << 16))
            if not chunk:
                if self._in_member:
                    self._info.truncated = f"{self._kind} stream ends early (file cut short?)"
                return b""
            out = []
            while chunk:
                self._in_member = True
                try:
                    out.append(self._d.decompress(chunk))
                except self._errors as e:
                    raise TraceInputError(f"{self._info.name}: unreadable {self._kind} data: {e}") from None
                if self._d.eof:
                    self._in_member = False
                    chunk = self._d.unused_data
                    self._d = self._new()
                else:
                    chunk = b""
            data = b"".join(out)
            if data:
                return data


class LineBlocks:
    """Iterate blocks of whole lines over a trace input.

    ``source`` is a path, ``"-"`` for standard input, or ``bytes`` (tests).
    """

    def __init__(
        self,
        source: str | os.PathLike[str] | bytes,
        *,
        name: str | None = None,
        block_size: int = DEFAULT_BLOCK,
        on_raw_bytes: Callable[[int], None] | None = None,
        hasher: RawHasher | None = None,
    ) -> None:
        self.block_size = block_size
        self._hasher = hasher
        self._on_raw = on_raw_bytes
        if isinstance(source, (bytes, bytearray, memoryview)):
            self._raw: BinaryIO = io.BytesIO(bytes(source))
            self.info = InputInfo(name=name or "<string>", size=len(source))
        elif str(source) == "-":
            self._raw = sys.stdin.buffer
            self.info = InputInfo(name=name or "<stdin>")
        else:
            p = Path(source)
            if not p.exists():
                raise TraceInputError(f"{p}: no such file")
            if p.is_dir():
                raise TraceInputError(f"{p}: is a directory, not a trace file")
            try:
                self._raw = open(p, "rb")  # noqa: SIM115 - closed in close()
            except OSError as e:
                raise TraceInputError(f"{p}: cannot open: {e.strerror or e}") from None
            self.info = InputInfo(name=name or str(source), size=p.stat().st_size)
        self._hr = _HashingReader(self._raw, on_raw_bytes)
        self._stream = self._open_stream()
        # plain input: the text blocks are the raw bytes; hash them on a side thread instead
        self._side_hash = None
        if hasher is not None:  # already being hashed from the file itself
            self._hr.sha256 = None  # type: ignore[assignment]
        elif self.info.compression == "none":
            self._hr.sha256 = None  # type: ignore[assignment]
            self._side_hash = hashlib.sha256()
            self._hash_pool = ThreadPoolExecutor(1)
            self._hash_futs: list[Future] = []
        # plain input: read straight into the block buffer (no intermediate copies)
        self._readinto = self._stream.readinto if self.info.compression == "none" else None
        self._pending = b""
        self._free: list[bytearray] = []  # block buffers handed back (``release``)

    def _open_stream(self) -> BinaryIO:
        head = self._raw.peek(16)[:16] if hasattr(self._raw, "peek") else b""
        buffered = io.BufferedReader(self._hr, buffer_size=1 << 20)
        if not head:
            head = buffered.peek(16)[:16]
        if head.startswith(GZIP_MAGIC):
            self.info.compression = "gzip"
            return _Members(buffered, self.info, "gzip")  # type: ignore[return-value]
        if head.startswith(ZSTD_MAGIC):
            self.info.compression = "zstd"
            return _Members(buffered, self.info, "zstd")  # type: ignore[return-value]
        for magic, what in _OTHER_MAGIC.items():
            if head.startswith(magic):
                raise TraceInputError(f"{self.info.name}: {what}: not a supported input (plain, gzip or zstd text)")
        return buffered  # type: ignore[return-value]

    def _hash_side(self, block) -> None:
        if self._side_hash is not None:
            self._hash_futs = [f for f in self._hash_futs if not f.done()]
            self._hash_futs.append(self._hash_pool.submit(self._side_hash.update, block))

    def _fill(self, buf: bytearray, start: int) -> int:
        """Read into ``buf[start:]``; return the number of bytes now in ``buf`` (0 read -> end)."""
        mv = memoryview(buf)
        pos = start
        while pos < len(buf):
            if self._readinto is not None:
                try:
                    n = self._readinto(mv[pos:])
                except (OSError, zlib.error) as e:
                    raise TraceInputError(f"{self.info.name}: read error: {e}") from None
            else:
                space = len(buf) - pos
                if self._pending:
                    data, self._pending = self._pending, b""
                else:  # _Members: decoding errors and cut-short streams are handled there
                    try:
                        data = self._stream.read(space)
                    except OSError as e:
                        raise TraceInputError(f"{self.info.name}: read error: {e}") from None
                if len(data) > space:  # decompressors may hand back more than asked for
                    data, self._pending = data[:space], data[space:]
                n = len(data)
                mv[pos : pos + n] = data
            if not n:
                break
            pos += n
            if self._readinto is None:
                break  # decompressors return what they have; don't block for more
        return pos

    def __iter__(self) -> Iterator[bytes]:
        for buf, n in self.blocks():
            yield buf if n == len(buf) else bytes(buf[:n])  # type: ignore[misc]

    def release(self, buf: bytearray) -> None:
        """Hand back a buffer yielded by ``blocks()`` once nothing reads it any more (it is reused)."""
        if self._side_hash is None and len(buf) == self.block_size and len(self._free) < 8:
            self._free.append(buf)

    def _buffer(self, size: int) -> bytearray:
        if size == self.block_size and self._free:
            return self._free.pop()
        return bytearray(size)

    def blocks(self) -> Iterator[tuple[bytearray, int]]:
        """``(buf, n)``: ``buf[:n]`` is the next block of whole lines (``buf`` may be longer).

        Buffers handed back with ``release`` are filled again, which spares
        allocating and zeroing 8 MiB per block.  The scanner reads a
        bytearray through numpy without a copy.
        """
        carry = b""
        size = self.block_size
        done = False
        try:
            while True:
                buf = self._buffer(max(size, 2 * len(carry)))
                buf[: len(carry)] = carry
                end = self._fill(buf, len(carry))
                if end == len(carry):
                    self.release(buf)
                    break
                if self.info.text_bytes == 0 and self.info.compression != "none":  # the decompressed head
                    for magic in (b"\x17\x08\x44tracing", b"PERFILE2"):
                        if buf.startswith(magic):
                            what = _OTHER_MAGIC[magic]
                            raise TraceInputError(f"{self.info.name}: {what}: not a text stream ({self.info.compression})")
                self.info.text_bytes += end - len(carry)
                cut = buf.rfind(b"\n", len(carry), end)
                if cut < 0:
                    if end > MAX_LINE:
                        raise TraceInputError(
                            f"{self.info.name}: a line longer than {MAX_LINE >> 20} MiB: not a text trace"
                        )
                    carry = bytes(buf[:end])
                    self.release(buf)
                    continue
                carry = bytes(buf[cut + 1 : end])
                if self._side_hash is not None:  # (no recycling then: the hash reads the block later)
                    self._hash_side(memoryview(buf)[: cut + 1])
                yield buf, cut + 1
            if carry:
                self.info.no_final_newline = True
                self._hash_side(carry)
                yield bytearray(carry), len(carry)  # a bytearray like every other block (one scanner signature)
            done = True
        finally:
            self.info.raw_bytes = self._hr.nbytes
            if self._hasher is not None:
                if done:
                    self.info.sha256 = self._hasher.hexdigest(self._hr.nbytes)
                else:  # abandoned (an error): don't wait for the rest of the file to be hashed
                    self._hasher.cancel()
            elif self._side_hash is not None:
                for f in self._hash_futs:
                    f.result()
                self._hash_pool.shutdown()
                self.info.sha256 = self._side_hash.hexdigest()
            else:
                self.info.sha256 = self._hr.sha256.hexdigest()

    def close(self) -> None:
        try:
            if self._raw is not sys.stdin.buffer:
                self._raw.close()
        except Exception:  # pragma: no cover
            pass
