"""Byte searches of the scanner: line ends, the next byte of a kind, equal ranges, word lists.

Under numba the searches read eight bytes at a time (SWAR: "SIMD within a register"), with the
classic has-zero-byte test on ``word ^ pattern``; plain Python (``PAGEREPLAY_JIT=0``) reads the
same bytes one by one and gives the same answers, which makes it the reference the word tricks
are tested against (``tests/parsers/test_scan_fast_paths.py``).
"""

from __future__ import annotations

import numpy as np

from ..compiled import JIT_ENABLED
from .compile import kernel

#: eight bytes at a time (numba); plain Python has no unaligned word load
SWAR = JIT_ENABLED

ONES = np.uint64(0x0101010101010101)
HIGHS = np.uint64(0x8080808080808080)
LOW7 = np.uint64(0x7F7F7F7F7F7F7F7F)
NEWLINES = np.uint64(0x0A0A0A0A0A0A0A0A)
SPACES = np.uint64(0x2020202020202020)
COLONS = np.uint64(0x3A3A3A3A3A3A3A3A)
EQUALS = np.uint64(0x3D3D3D3D3D3D3D3D)

if SWAR:
    from llvmlite import ir as _ir
    from numba.core import types as _nbt
    from numba.cpython.unsafe.numbers import trailing_zeros as ctz
    from numba.extending import intrinsic as _intrinsic

    @_intrinsic
    def load8(typingctx, arr, idx):
        """The eight bytes arr[idx:idx + 8] as one little-endian word (an unaligned load)."""

        def codegen(context, builder, sig, args):
            ary = context.make_array(sig.args[0])(context, builder, args[0])
            ptr = builder.gep(ary.data, [args[1]])
            return builder.load(builder.bitcast(ptr, _ir.IntType(64).as_pointer()), align=1)

        return _nbt.uint64(arr, _nbt.intp), codegen


@kernel()
def is_digit(c):
    return 48 <= c <= 57


@kernel(inline="always")
def find2(buf, q, le, nb, pat1, c1, pat2, c2):
    """min(first index >= q of byte ``c1`` or ``c2``, le) for q <= le; ``pat1``, ``pat2``: each
    byte in every byte of a word."""
    if SWAR:
        while q + 8 <= nb:
            if q >= le:
                return le
            w = load8(buf, q)
            x = w ^ pat1
            y = w ^ pat2
            m = ((x - ONES) & ~x | (y - ONES) & ~y) & HIGHS  # lowest bit: the first of either
            if m != np.uint64(0):
                r = q + np.int64(ctz(m) >> np.uint64(3))
                return min(le, r)
            q += 8
        if q >= le:
            return le
    while q < le and buf[q] != c1 and buf[q] != c2:
        q += 1
    return q


@kernel(inline="always")
def find(buf, q, le, nb, pat, c):
    """min(first index >= q of byte ``c``, le) for q <= le; ``pat`` is ``c`` in every byte of a word.

    (:func:`find2` of the same byte twice: the compiler folds the second test away.)
    """
    return find2(buf, q, le, nb, pat, c, pat, c)


@kernel(inline="always")
def same(buf, a, b, n, nb):
    """buf[a:a + n] == buf[b:b + n] (both ranges lie in buf[:nb])."""
    j = 0
    if SWAR:
        while j + 8 <= n:
            if load8(buf, a + j) != load8(buf, b + j):
                return False
            j += 8
        if j < n and n >= 8:  # the last (overlapping) word
            return load8(buf, a + n - 8) == load8(buf, b + n - 8)
    while j < n:
        if buf[a + j] != buf[b + j]:
            return False
        j += 1
    return True


@kernel(_nrt=False)
def match(buf, s, e, words, off, ln):
    """Index of buf[s:e] in a packed word list (``codes._pack``), or -1."""
    n = e - s
    for k in range(ln.shape[0]):
        if ln[k] != n:
            continue
        o = off[k]
        ok = True
        for j in range(n):
            if words[o + j] != buf[s + j]:
                ok = False
                break
        if ok:
            return k
    return -1


@kernel(_nrt=False)
def _fill_ends(buf, nw, ends, k, w):
    """Offsets of the newlines of words w, w + 1, ... of ``buf`` into ``ends[k:]``, while a word fits.

    Returns ``(k, w)``: newlines stored so far and the first word not scanned (``nw`` when done).
    The exact zero-byte mask of ``word ^ 0x0a..`` (0x80 in each byte that was a newline, and only
    there) gives the newlines of a word by their trailing-zero counts.
    """
    cap = ends.shape[0] - 8
    while w < nw and k <= cap:
        v = load8(buf, w * 8) ^ NEWLINES
        m = ~(((v & LOW7) + LOW7) | v | LOW7)
        while m != np.uint64(0):
            ends[k] = w * 8 + np.int64(ctz(m) >> np.uint64(3))
            k += 1
            m &= m - np.uint64(1)
        w += 1
    return k, w


@kernel()
def line_ends(buf, nbytes):
    """Offsets of every newline in buf[:nbytes] (plus nbytes for a last line without one), in one pass.

    The array starts at room for lines of 32 bytes on average and doubles when full (outside
    the word loop, which gets the array as an argument: reassigning an array inside a hot loop
    costs numba's reference counting there).
    """
    ends = np.empty(nbytes // 32 + 16, np.int64)
    k = 0
    nw = nbytes // 8 if SWAR else 0
    w = 0
    while True:
        k, w = _fill_ends(buf, nw, ends, k, w)
        if w >= nw:
            break
        grown = np.empty(2 * ends.shape[0], np.int64)
        grown[:k] = ends[:k]
        ends = grown
    if ends.shape[0] < k + (nbytes - nw * 8) + 1:
        grown = np.empty(k + (nbytes - nw * 8) + 1, np.int64)
        grown[:k] = ends[:k]
        ends = grown
    for i in range(nw * 8, nbytes):
        if buf[i] == 10:
            ends[k] = i
            k += 1
    if k == 0 or ends[k - 1] != nbytes - 1:
        ends[k] = nbytes
        k += 1
    return ends[:k]
