"""Arrow columns of the parser's blocks, built without per-row Python work.

String columns (comm, gfp flags) are interned to global ids in order of first appearance
(deterministic dictionaries); numeric and boolean columns wrap the scanner's NumPy arrays, with
validity and boolean bitmaps packed by ``np.packbits`` (``pa.array(..., mask=...)`` builds them a
byte at a time); all-null columns are slices of one shared array.
"""

from __future__ import annotations

import threading

import numpy as np
import pyarrow as pa

from .schema import GFP_BIT_TABLE_NAME, decode_gfp


class _Interner:
    """Global string ids in order of first appearance (deterministic)."""

    def __init__(self) -> None:
        self.ids: dict[bytes, int] = {}
        self.strings: list[str] = []

    def remap(self, buf: bytes, n: int, start: np.ndarray, length: np.ndarray) -> np.ndarray:
        out = np.zeros(max(n, 1), np.int32)
        for i in range(n):
            s = int(start[i])
            key = bytes(buf[s : s + int(length[i])])
            gid = self.ids.get(key)
            if gid is None:
                gid = len(self.strings)
                self.ids[key] = gid
                self.strings.append(key.decode("utf-8", errors="backslashreplace"))
                self._added(gid)
            out[i] = gid
        return out

    def _added(self, gid: int) -> None:
        pass

    def dictionary(self) -> pa.Array:
        return pa.array(self.strings, pa.string())


class _GfpInterner(_Interner):
    def __init__(self, table: str = GFP_BIT_TABLE_NAME) -> None:
        super().__init__()
        self.table = table  # the gfp bit table (parsers/gfp.py) the texts are decoded with
        self.masks: list[int] = []
        self.known: list[bool] = []

    def _added(self, gid: int) -> None:
        m = decode_gfp(self.strings[gid], self.table)
        self.masks.append(0 if m is None else m)
        self.known.append(m is not None)


def _column(values: np.ndarray, typ: pa.DataType, null: np.ndarray | None = None) -> pa.Array:
    """``values`` as an Arrow array of ``typ`` without copying them; ``null`` marks the nulls.

    ``pa.array(values, mask=...)`` builds the validity bitmap a byte at a time (~0.25 ms per
    62k-row column, a dozen times per block); ``np.packbits`` does it in a few µs.
    """
    nn = 0 if null is None else int(np.count_nonzero(null))
    if nn == 0:
        return pa.array(values, typ)  # zero-copy for a matching dtype
    if values.dtype.itemsize * 8 != typ.bit_width or not values.flags.c_contiguous:
        return pa.array(values, typ, mask=null)
    validity = pa.py_buffer(np.packbits(~null, bitorder="little"))
    return pa.Array.from_buffers(typ, len(values), [validity, pa.py_buffer(values)], null_count=nn)


_NULLS: dict[pa.DataType, pa.Array] = {}
_NULLS_LOCK = threading.Lock()


def _nulls(n: int, typ: pa.DataType) -> pa.Array:
    """An all-null array: a slice of one shared array (``pa.nulls`` zero-fills new buffers per block)."""
    a = _NULLS.get(typ)
    if a is None or len(a) < n:
        with _NULLS_LOCK:
            a = _NULLS.get(typ)
            if a is None or len(a) < n:
                a = _NULLS[typ] = pa.nulls(max(n, 1 << 17), typ)
    return a.slice(0, n)


def _bool_column(values: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    """A boolean numpy array as an Arrow boolean array (bit-packed with ``np.packbits``)."""
    nn = 0 if null is None else int(np.count_nonzero(null))
    validity = pa.py_buffer(np.packbits(~null, bitorder="little")) if nn else None
    data = pa.py_buffer(np.packbits(values, bitorder="little"))
    return pa.Array.from_buffers(pa.bool_(), len(values), [validity, data], null_count=nn)
