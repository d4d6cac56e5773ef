"""The compiled line scanner behind every text parser.

One pass over a block of text bytes (whole lines only) classifies each line and
extracts the fields of the six kmem page-allocator events into flat arrays.
The grammar covers the three text formats of spec section 3 (see
``parsers/formats.py`` for what each accepts):

    <comm>-<pid> [(<tgid>)] [<cpu>] [<flags>] <secs>.<frac>: <event>: <k>=<v> ...   ftrace, trace-cmd report
    <comm> <pid>[/<tid>] [<cpu>] <secs>.<frac>: <sys>:<event>: <k>=<v> ...            perf script

Lines the header grammar does not recognise (LOST markers, trace-cmd headers,
stack-trace continuation lines, garbage) are returned as spans for the
Python side to classify; nothing is dropped here.  Strings (comm, gfp text,
names of other events) are interned per block into small open-addressing
tables whose ids the caller maps to global ids.

Runs under numba (``nogil`` so two blocks parse in parallel); with
``PAGEREPLAY_JIT=0`` the same functions run as plain Python.  When a
compiled copy of this module's kernels exists (``parsers/scan/aot.py``: built
ahead of time from this very source), it is used instead and numba is not
imported at all (a quarter of a second less start-up).
"""

from __future__ import annotations

import threading

import numpy as np

from ..compiled import JIT_ENABLED, numba_cache
from ..schema import EVENT_ALIASES, EVENT_BY_NAME
from . import aot as _scan_aot

JIT = JIT_ENABLED  # compiled kernels (ahead of time or JIT), not plain Python
_AOT = _scan_aot.load() if JIT else None
AOT = _AOT is not None  # the kernels below are replaced by the ahead-of-time compiled ones
if not JIT or AOT:  # (plain Python: exercised in tests via subprocess)

    def njit(*args, **kwargs):  # type: ignore[no-redef]
        if args and callable(args[0]):
            return args[0]
        return lambda f: f

else:
    import numba

    def njit(**kwargs):  # type: ignore[no-redef]
        """``numba.njit`` caching into the project cache (``parsers.compiled``), not next to the package."""

        def deco(f):
            with numba_cache("scan"):
                return numba.njit(**kwargs)(f)

        return deco

# line formats the caller can enforce
FMT_AUTO = 0
FMT_FTRACE = 1  # also trace-cmd report: same line grammar
FMT_PERF = 2

# counters (index into the counts array)
C_EVENTS = 0
C_COMMENT = 1
C_BLANK = 2
C_OTHER = 3
C_UNRECOGNISED = 4
C_MALFORMED = 5
C_SEP_DASH = 6
C_SEP_SPACE = 7
C_SYS_PREFIX = 8
C_FLAGS = 9
C_TS_DECIMAL = 10
C_TS_COUNTER = 11
C_PFN_HEX = 12
C_PFN_DEC = 13
C_TGID = 14
C_TS_6 = 15
C_TS_9 = 16
N_COUNTERS = 20

# malformed reasons (header recognised, payload not)
R_MISSING_FIELD = 1
R_BAD_VALUE = 2
R_BAD_TIMESTAMP = 3
MALFORMED_REASONS = {
    R_MISSING_FIELD: "missing field",
    R_BAD_VALUE: "bad field value",
    R_BAD_TIMESTAMP: "bad timestamp",
}

# payload keys, in the order of KEY_NAMES
KEY_NAMES = (
    "page",
    "pfn",
    "order",
    "migratetype",
    "gfp_flags",
    "percpu_refill",
    "alloc_order",
    "fallback_order",
    "pageblock_order",
    "alloc_migratetype",
    "fallback_migratetype",
    "fragmenting",
    "change_ownership",
    "cold",
    "cpu",
)
K_PAGE, K_PFN, K_ORDER, K_MT, K_GFP, K_PCP, K_AORDER, K_FORDER, K_PBORDER, K_AMT, K_FMT, K_FRAG, K_CHOWN, K_COLD, K_CPU = range(
    len(KEY_NAMES)
)

# field-present bits, for the per-event required-field check
B_PFN = 1 << 0
B_ORDER = 1 << 1
B_MT = 1 << 2
B_GFP = 1 << 3
B_PCP = 1 << 4
B_FORDER = 1 << 5
B_FMT = 1 << 6

_EVENT_TEXT = tuple(EVENT_BY_NAME) + tuple(EVENT_ALIASES)
_EVENT_CODE = tuple(int(v) for v in EVENT_BY_NAME.values()) + tuple(int(v) for v in EVENT_ALIASES.values())

#: fields each event must carry (kmem.h TP_printk of every era); a line missing one is malformed
REQUIRED = np.array(
    [
        B_PFN | B_ORDER | B_MT | B_GFP,  # mm_page_alloc
        B_PFN | B_ORDER | B_MT,  # mm_page_alloc_zone_locked (percpu_refill optional: absent in no era, but tolerate)
        B_PFN | B_ORDER,  # mm_page_free
        B_PFN,  # mm_page_free_batched (order=0 printed from 4.15 on; cold=%d before)
        B_PFN | B_ORDER | B_MT,  # mm_page_pcpu_drain
        B_PFN | B_ORDER | B_MT | B_FORDER | B_FMT,  # mm_page_alloc_extfrag
    ],
    dtype=np.int64,
)


def _pack(words: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    raw = [w.encode() for w in words]
    off = np.zeros(len(raw), np.int64)
    pos = 0
    for i, r in enumerate(raw):
        off[i] = pos
        pos += len(r)
    return (
        np.frombuffer(b"".join(raw), dtype=np.uint8).copy(),
        off,
        np.array([len(r) for r in raw], np.int64),
    )


KEY_BYTES, KEY_OFF, KEY_LEN = _pack(KEY_NAMES)
EV_BYTES, EV_OFF, EV_LEN = _pack(_EVENT_TEXT)
EV_CODE = np.array(_EVENT_CODE, np.int64)

_ONES = np.uint64(0x0101010101010101)
_HIGHS = np.uint64(0x8080808080808080)
_SPACES = np.uint64(0x2020202020202020)
_COLONS = np.uint64(0x3A3A3A3A3A3A3A3A)
_EQUALS = np.uint64(0x3D3D3D3D3D3D3D3D)

if JIT and not AOT:
    from llvmlite import ir as _ir
    from numba.core import types as _nbt
    from numba.cpython.unsafe.numbers import trailing_zeros as _ctz
    from numba.extending import intrinsic as _intrinsic

    @_intrinsic
    def _load8(typingctx, arr, idx):
        """The eight bytes arr[idx:idx + 8] as one little-endian word (an unaligned load)."""

        def codegen(context, builder, sig, args):
            ary = context.make_array(sig.args[0])(context, builder, args[0])
            ptr = builder.gep(ary.data, [args[1]])
            return builder.load(builder.bitcast(ptr, _ir.IntType(64).as_pointer()), align=1)

        return _nbt.uint64(arr, _nbt.intp), codegen

    @njit(cache=True, nogil=True, inline="always")
    def _find(buf, q, le, nb, pat, c):
        """min(first index >= q of byte ``c`` (``pat`` = c in every byte), le); eight bytes a step."""
        while q + 8 <= nb:
            if q >= le:
                return le
            x = _load8(buf, q) ^ pat
            m = (x - _ONES) & ~x & _HIGHS  # exact for the lowest matching byte
            if m != np.uint64(0):
                r = q + np.int64(_ctz(m) >> np.uint64(3))
                return r if r < le else le
            q += 8
        if q >= le:
            return le
        while q < le and buf[q] != c:
            q += 1
        return q

    @njit(cache=True, nogil=True, inline="always")
    def _find2(buf, q, le, nb, pat1, c1, pat2, c2):
        """min(first index >= q of byte ``c1`` or ``c2``, le); eight bytes a step."""
        while q + 8 <= nb:
            if q >= le:
                return le
            w = _load8(buf, q)
            x = w ^ pat1
            y = w ^ pat2
            m = ((x - _ONES) & ~x | (y - _ONES) & ~y) & _HIGHS  # lowest bit: the first of either
            if m != np.uint64(0):
                r = q + np.int64(_ctz(m) >> np.uint64(3))
                return r if r < le else le
            q += 8
        if q >= le:
            return le
        while q < le and buf[q] != c1 and buf[q] != c2:
            q += 1
        return q

    @njit(cache=True, nogil=True, inline="always")
    def _same(buf, a, b, n, nb):
        """buf[a:a + n] == buf[b:b + n], eight bytes a step (both ranges lie in buf[:nb])."""
        j = 0
        while j + 8 <= n:
            if _load8(buf, a + j) != _load8(buf, b + j):
                return False
            j += 8
        if j < n and n >= 8:  # the last (overlapping) word
            return _load8(buf, a + n - 8) == _load8(buf, b + n - 8)
        while j < n:
            if buf[a + j] != buf[b + j]:
                return False
            j += 1
        return True

else:  # pragma: no cover - plain Python: the same results byte by byte

    def _find(buf, q, le, nb, pat, c):
        while q < le and buf[q] != c:
            q += 1
        return q

    def _find2(buf, q, le, nb, pat1, c1, pat2, c2):
        while q < le and buf[q] != c1 and buf[q] != c2:
            q += 1
        return q

    def _same(buf, a, b, n, nb):
        for j in range(n):
            if buf[a + j] != buf[b + j]:
                return False
        return True


# The helpers below that take the block but allocate nothing are compiled without numba's reference
# counting (``_nrt=False``): otherwise every call increments and decrements the block's reference
# count with atomic instructions, ~10% of the scan.

_FNV_OFF = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


@njit(cache=True, nogil=True, _nrt=False)
def _unrecognised(u_line, u_start, u_end, counts, nu, ln, ls, le):
    """Record line ``ln`` (bytes ``[ls, le)`` of the block) as unrecognised; returns the new count."""
    u_line[nu] = ln
    u_start[nu] = ls
    u_end[nu] = le
    counts[C_UNRECOGNISED] += 1
    return nu + 1


@njit(cache=True, nogil=True, _nrt=False)
def _fnv(buf, s, e):
    h = _FNV_OFF
    for i in range(s, e):
        h ^= np.uint64(buf[i])
        h *= _FNV_PRIME
    return h


@njit(cache=True, nogil=True, inline="always")
def _intern(buf, s, e, slot_id, slot_hash, ent_start, ent_len, nent, size):
    """Id of the string buf[s:e] in a per-block table (open addressing over ``size`` slots, bytes verified)."""
    h = _fnv(buf, s, e)
    mask = size - 1
    i = np.int64(h & np.uint64(mask))
    n = e - s
    while True:
        sid = slot_id[i]
        if sid < 0:
            k = nent[0]
            nent[0] = k + 1
            slot_id[i] = k
            slot_hash[i] = h
            ent_start[k] = s
            ent_len[k] = n
            return k
        if slot_hash[i] == h and ent_len[sid] == n:
            st = ent_start[sid]
            same = True
            for j in range(n):
                if buf[st + j] != buf[s + j]:
                    same = False
                    break
            if same:
                return sid
        i = (i + 1) & mask


@njit(cache=True, nogil=True)
def _rehash(buf, slot_id, slot_hash, ent_start, ent_len, n, size):
    """Re-insert the ``n`` entries of an intern table into its first ``size`` slots (ids unchanged)."""
    slot_id[:size] = -1
    mask = size - 1
    for k in range(n):
        h = _fnv(buf, ent_start[k], ent_start[k] + ent_len[k])
        i = np.int64(h & np.uint64(mask))
        while slot_id[i] >= 0:
            i = (i + 1) & mask
        slot_id[i] = k
        slot_hash[i] = h


@njit(cache=True, nogil=True, _nrt=False)
def _match(buf, s, e, words, off, ln):
    """Index of buf[s:e] in a packed word list, or -1."""
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


_HEXVAL = np.full(256, -1, np.int64)
for _c in b"0123456789abcdef":
    _HEXVAL[_c] = int(chr(_c), 16)
for _c in b"ABCDEF":
    _HEXVAL[_c] = int(chr(_c), 16)


@njit(cache=True, nogil=True)
def _is_digit(c):
    return 48 <= c <= 57


@njit(cache=True, nogil=True, _nrt=False)
def _parse_int(buf, s, e):
    """Signed decimal integer in buf[s:e]; returns (ok, value)."""
    if s >= e:
        return False, 0
    neg = False
    if buf[s] == 45:  # '-'
        neg = True
        s += 1
        if s >= e:
            return False, 0
    v = 0
    if e - s > 18:
        return False, 0
    for i in range(s, e):
        c = buf[i]
        if not _is_digit(c):
            return False, 0
        v = v * 10 + (c - 48)
    return True, -v if neg else v


_ULONG_MAX_DEC = np.frombuffer(b"18446744073709551615", np.uint8).copy()  # (unsigned long)-1


@njit(cache=True, nogil=True, _nrt=False)
def _parse_pfn(buf, s, e):
    """pfn as printed: ``0x`` hex (>= 5.14) or decimal; -1UL (NULL page in raw data) -> -1.

    Returns (ok, value, is_hex).
    """
    if e - s >= 2 and buf[s] == 48 and (buf[s + 1] == 120 or buf[s + 1] == 88):
        s += 2
        n = e - s
        if n == 0 or n > 16:
            return False, 0, True
        allf = n == 16
        v = np.uint64(0)
        for i in range(s, e):
            d = _HEXVAL[buf[i]]
            if d < 0:
                return False, 0, True
            if d != 15:
                allf = False
            v = (v << np.uint64(4)) | np.uint64(d)
        if allf:
            return True, -1, True
        if n == 16 and v >= np.uint64(0x8000000000000000):
            return False, 0, True
        return True, np.int64(v), True
    n = e - s
    if n == 20:  # 18446744073709551615 == (unsigned long)-1
        for i in range(20):
            if buf[s + i] != _ULONG_MAX_DEC[i]:
                return False, 0, False
        return True, -1, False
    if n == 2 and buf[s] == 45 and buf[s + 1] == 49:  # "-1"
        return True, -1, False
    ok, v = _parse_int(buf, s, e)
    return ok and v >= 0, v, False


@njit(cache=True, nogil=True, _nrt=False)
def _parse_ts(buf, s, e):
    """``secs.frac`` (1..9 decimals) -> ns, or a raw counter without a point.

    Returns (ok, value, ndecimals) with ndecimals == -1 for a counter clock.
    """
    if s >= e:
        return False, 0, 0
    v = 0
    i = s
    while i < e and _is_digit(buf[i]):
        v = v * 10 + (buf[i] - 48)
        i += 1
    if i == s or i - s > 18:
        return False, 0, 0
    if i == e:
        return True, v, -1
    if buf[i] != 46:  # '.'
        return False, 0, 0
    i += 1
    f = 0
    nd = 0
    while i < e and _is_digit(buf[i]):
        f = f * 10 + (buf[i] - 48)
        nd += 1
        i += 1
    if i != e or nd == 0 or nd > 9:
        return False, 0, 0
    for _ in range(9 - nd):
        f *= 10
    return True, v * 1000000000 + f, nd


@njit(cache=True, nogil=True)
def _is_flag_char(c):
    # irqs-off d D b X .; need-resched N n p; hard/softirq Z z H h s; preempt hex digit
    return (
        c == 46
        or _is_digit(c)
        or (97 <= c <= 102)
        or c == 68
        or c == 88
        or c == 78
        or c == 110
        or c == 112
        or c == 90
        or c == 122
        or c == 72
        or c == 104
        or c == 115
    )


@njit(cache=True, nogil=True)
def _newlines(buf, nbytes, ends):
    """Count the newlines in buf[:nbytes], writing their offsets to ``ends`` unless it is empty.

    Words of eight bytes are tested for a 0x0a byte with the classic
    has-zero-byte trick; only words that have one are scanned bytewise
    (the byte-by-byte search was ~15% of the scan).
    """
    store = ends.shape[0] > 0
    k = 0
    nw = nbytes // 8 if buf.itemsize == 1 else 0  # (the plain-Python path scans int64 "bytes")
    words = buf[: nw * 8].view(np.uint64) if nw > 0 else np.zeros(1, np.uint64)
    ones = np.uint64(0x0101010101010101)
    highs = np.uint64(0x8080808080808080)
    nls = np.uint64(0x0A0A0A0A0A0A0A0A)
    for w in range(nw):
        v = words[w] ^ nls
        if ((v - ones) & ~v & highs) != np.uint64(0):
            base = w * 8
            for j in range(8):
                if buf[base + j] == 10:
                    if store:
                        ends[k] = base + j
                    k += 1
    for i in range(nw * 8, nbytes):
        if buf[i] == 10:
            if store:
                ends[k] = i
            k += 1
    return k


@njit(cache=True, nogil=True)
def _line_ends(buf, nbytes, cap):
    """Offsets of every newline in buf[:nbytes] (plus nbytes for a last line without one)."""
    ends = np.empty(cap + 1, np.int64)
    k = _newlines(buf, nbytes, ends)
    if k == 0 or ends[k - 1] != nbytes - 1:
        ends[k] = nbytes
        k += 1
    return ends[:k]


_LOW7 = np.uint64(0x7F7F7F7F7F7F7F7F)
_NEWLINES = np.uint64(0x0A0A0A0A0A0A0A0A)


@njit(cache=True, nogil=True, _nrt=False)
def _fill_ends(buf, nw, ends, k, w):
    """Offsets of the newlines of words w, w + 1, ... of ``buf`` into ``ends[k:]``, while a word fits.

    Returns ``(k, w)``: newlines stored so far and the first word not scanned (``nw`` when done).
    The exact zero-byte mask of ``word ^ 0x0a..`` (0x80 in each byte that was a newline, and only
    there) gives the newlines of a word by their trailing-zero counts.
    """
    cap = ends.shape[0] - 8
    while w < nw and k <= cap:
        v = _load8(buf, w * 8) ^ _NEWLINES
        m = ~(((v & _LOW7) + _LOW7) | v | _LOW7)
        while m != np.uint64(0):
            ends[k] = w * 8 + np.int64(_ctz(m) >> np.uint64(3))
            k += 1
            m &= m - np.uint64(1)
        w += 1
    return k, w


@njit(cache=True, nogil=True)
def _line_ends_one_pass(buf, nbytes):
    """Like ``_line_ends`` but in one pass, without counting the lines first.

    The array starts at room for lines of 32 bytes on average and doubles when full (outside
    the word loop, which gets the array as an argument: reassigning an array inside a hot loop
    costs numba's reference counting there).
    """
    ends = np.empty(nbytes // 32 + 16, np.int64)
    k = 0
    nw = nbytes // 8 if buf.itemsize == 1 else 0  # (the plain-Python path scans int64 "bytes")
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


@njit(cache=True, nogil=True)
def scan_block(buf, nbytes, cap, fmt, key_bytes, key_off, key_len, ev_bytes, ev_off, ev_len, ev_code, required):
    """Scan ``buf[:nbytes]`` (whole lines) and return the extracted columns.

    ``cap`` must be >= the number of lines in the block, or -1 to count them
    here (in the worker thread).  Line numbers in the outputs are 0-based
    within the block.
    """
    if cap < 0:
        # all line ends first, eight bytes at a time (the byte-by-byte search was ~15% of the scan)
        ends = _line_ends_one_pass(buf, nbytes)
        cap = ends.shape[0] + 1  # the lines, plus one spare
    else:
        ends = _line_ends(buf, nbytes, cap)
    # event columns
    o_ts = np.empty(cap, np.int64)
    o_cpu = np.empty(cap, np.int32)
    o_pid = np.empty(cap, np.int32)
    o_tgid = np.empty(cap, np.int32)
    o_comm = np.empty(cap, np.int32)
    o_ev = np.empty(cap, np.int8)
    o_pfn = np.empty(cap, np.int64)
    o_order = np.empty(cap, np.int8)
    o_mt = np.empty(cap, np.int8)
    o_gfp = np.empty(cap, np.int32)
    o_pcp = np.empty(cap, np.int8)
    o_forder = np.empty(cap, np.int8)
    o_pborder = np.empty(cap, np.int8)
    o_fmt = np.empty(cap, np.int8)
    o_frag = np.empty(cap, np.int8)
    o_chown = np.empty(cap, np.int8)
    o_cold = np.empty(cap, np.int8)
    o_line = np.empty(cap, np.int64)
    # lines handed back to Python: unrecognised spans, malformed lines
    u_line = np.empty(cap, np.int64)
    u_start = np.empty(cap, np.int64)
    u_end = np.empty(cap, np.int64)
    m_line = np.empty(cap, np.int64)
    m_reason = np.empty(cap, np.int8)
    counts = np.zeros(N_COUNTERS, np.int64)
    # intern tables: comm, gfp text, other event names
    # Room for every line of the block, but only the first c_size / g_size / x_size slots in use (doubled
    # and rehashed when half full): filling tables sized for every line cost more than the interning
    # itself.  (slot_hash is only read where slot_id >= 0, which wrote it.)
    tsize = 16
    while tsize < 2 * cap + 2:
        tsize *= 2
    c_size = min(tsize, 1024)
    g_size = c_size
    x_size = c_size
    c_slot = np.empty(tsize, np.int64)
    c_slot[:c_size] = -1
    c_hash = np.empty(tsize, np.uint64)
    c_start = np.empty(cap + 1, np.int64)
    c_len = np.empty(cap + 1, np.int64)
    c_n = np.zeros(1, np.int64)
    g_slot = np.empty(tsize, np.int64)
    g_slot[:g_size] = -1
    g_hash = np.empty(tsize, np.uint64)
    g_start = np.empty(cap + 1, np.int64)
    g_len = np.empty(cap + 1, np.int64)
    g_n = np.zeros(1, np.int64)
    x_slot = np.empty(tsize, np.int64)
    x_slot[:x_size] = -1
    x_hash = np.empty(tsize, np.uint64)
    x_start = np.empty(cap + 1, np.int64)
    x_len = np.empty(cap + 1, np.int64)
    x_n = np.zeros(1, np.int64)
    x_count = np.zeros(cap + 1, np.int64)

    kc_n = np.full(8, -1, np.int64)  # key cache: length, start and id of the key last seen at token i
    kc_s = np.zeros(8, np.int64)
    kc_id = np.zeros(8, np.int64)
    prev_comm_s = 0
    prev_comm_len = -1
    prev_comm_id = 0
    prev_gfp_s = 0
    prev_gfp_len = -1
    prev_gfp_id = 0
    ne = 0
    nu = 0
    nm = 0
    pos = 0
    lineno = 0
    # header template: the previous line's text up to its timestamp, with what was parsed from it.
    # Consecutive lines mostly share comm, pid, cpu and flags; when a line starts with exactly
    # those bytes, everything the header grammar would derive from them is the same (the
    # template is only taken from lines whose first "[cpu]" candidate was the one that parsed).
    t_len = 0
    t_s = 0
    t_cpu = 0
    t_flags = False
    t_comm_s = 0
    t_comm_e = 0
    t_pid = 0
    t_tgid = -1
    t_tgid_seen = False
    t_sep = 0
    while pos < nbytes:
        # --- the line
        ls = pos
        le = ends[lineno]
        pos = le + 1
        ln = lineno
        lineno += 1
        if le > ls and buf[le - 1] == 13:  # CRLF
            le -= 1
        fast = False
        if t_len > 0 and le - ls > t_len:
            if _same(buf, ls, t_s, t_len, nbytes):
                # the same candidate "[cpu]" and flags: parse the timestamp and the event name here
                q = _find(buf, ls + t_len, le, nbytes, _SPACES, 32)
                t0 = ls + t_len
                if q - t0 >= 2 and buf[q - 1] == 58:
                    tok_ok, ts, nd = _parse_ts(buf, t0, q - 1)
                    if tok_ok:
                        while q < le and buf[q] == 32:
                            q += 1
                        name_s = q
                        while True:
                            q = _find(buf, q, le, nbytes, _COLONS, 58)
                            if q >= le or q + 1 == le or buf[q + 1] == 32:
                                break
                            q += 1
                        name_e = q
                        if name_e != name_s:
                            pay_s = q + 1 if q < le else le
                            fast = True
        if fast:
            cpu = t_cpu
            flags = t_flags
            pid = t_pid
            tgid = t_tgid
            comm_s = ls + t_comm_s
            comm_e = ls + t_comm_e
            if t_tgid_seen:
                counts[C_TGID] += 1
            counts[t_sep] += 1
        else:
            # --- blank / comment
            i = ls
            while i < le and (buf[i] == 32 or buf[i] == 9):
                i += 1
            if i == le:
                counts[C_BLANK] += 1
                continue
            if buf[i] == 35:  # '#'
                counts[C_COMMENT] += 1
                continue
            # --- find "[<cpu>]" preceded by a blank and followed by a blank; first that parses wins
            ok = False
            p = i
            cpu = 0
            ts = 0
            nd = 0
            flags = False
            name_s = 0
            name_e = 0
            pay_s = 0
            bracket = 0
            nfail = 0  # candidates tried and rejected before the one that parsed
            sepc = C_SEP_DASH
            while p < le:
                if buf[p] != 91 or p == ls or buf[p - 1] != 32:  # '[' after ' '
                    p += 1
                    continue
                q = p + 1
                cpu = 0
                while q < le and _is_digit(buf[q]):
                    cpu = cpu * 10 + (buf[q] - 48)
                    q += 1
                if q == p + 1 or q >= le or buf[q] != 93 or q - p > 8:  # ']'
                    p += 1
                    nfail += 1
                    continue
                q += 1
                if q >= le or (buf[q] != 32 and buf[q] != 9):
                    p += 1
                    nfail += 1
                    continue
                # optional flags column, then the timestamp token "<ts>:"
                while q < le and buf[q] == 32:
                    q += 1
                t0 = q
                while q < le and buf[q] != 32:
                    q += 1
                flags = False
                if q - t0 >= 2 and buf[q - 1] == 58:
                    tok_s, tok_e = t0, q - 1
                else:
                    # flags token: 1..6 flag characters
                    good = q - t0 >= 1 and q - t0 <= 6
                    if good:
                        for j in range(t0, q):
                            if not _is_flag_char(buf[j]):
                                good = False
                                break
                    if not good:
                        p += 1
                        nfail += 1
                        continue
                    flags = True
                    while q < le and buf[q] == 32:
                        q += 1
                    t0 = q
                    while q < le and buf[q] != 32:
                        q += 1
                    if not (q - t0 >= 2 and buf[q - 1] == 58):
                        p += 1
                        nfail += 1
                        continue
                    tok_s, tok_e = t0, q - 1
                tok_ok, ts, nd = _parse_ts(buf, tok_s, tok_e)
                if not tok_ok:
                    p += 1
                    nfail += 1
                    continue
                # event name: up to the first ": " (or ':' at end of line)
                while q < le and buf[q] == 32:
                    q += 1
                name_s = q
                while q < le:
                    if buf[q] == 58 and (q + 1 == le or buf[q + 1] == 32):
                        break
                    q += 1
                # no ": " after the name: the rest of the line is the name ("<stack trace>")
                name_e = q
                if name_e == name_s:
                    p += 1
                    nfail += 1
                    continue
                pay_s = q + 1 if q < le else le
                bracket = p
                ok = True
                break
            if not ok:
                nu = _unrecognised(u_line, u_start, u_end, counts, nu, ln, ls, le)
                continue
            # --- comm, pid, tgid from the text before '['
            r = bracket
            while r > ls and buf[r - 1] == 32:
                r -= 1
            tgid = -1
            tgid_seen = False
            if r > ls and buf[r - 1] == 41:  # ')'
                o = r - 1
                while o > ls and buf[o] != 40:  # '('
                    o -= 1
                if buf[o] != 40:
                    nu = _unrecognised(u_line, u_start, u_end, counts, nu, ln, ls, le)
                    continue
                tv = 0
                digits = 0
                for j in range(o + 1, r - 1):
                    c = buf[j]
                    if _is_digit(c):
                        tv = tv * 10 + (c - 48)
                        digits += 1
                tgid = tv if digits > 0 else -1
                tgid_seen = True
                counts[C_TGID] += 1
                r = o
                while r > ls and buf[r - 1] == 32:
                    r -= 1
            d = r
            while d > ls and _is_digit(buf[d - 1]):
                d -= 1
            if d == r or d == ls:
                nu = _unrecognised(u_line, u_start, u_end, counts, nu, ln, ls, le)
                continue
            pid = 0
            for j in range(d, r):
                pid = pid * 10 + (buf[j] - 48)
            sep = buf[d - 1]
            if sep == 47:  # perf "pid/tid": the tid is what ftrace calls pid
                d2 = d - 1
                while d2 > ls and _is_digit(buf[d2 - 1]):
                    d2 -= 1
                if d2 == d - 1 or d2 == ls:
                    nu = _unrecognised(u_line, u_start, u_end, counts, nu, ln, ls, le)
                    continue
                d = d2
                sep = buf[d - 1]
            comm_e = d - 1
            if sep == 45:  # '-'
                if fmt == FMT_PERF:
                    nu = _unrecognised(u_line, u_start, u_end, counts, nu, ln, ls, le)
                    continue
                sepc = C_SEP_DASH
            elif sep == 32 or sep == 9:
                if fmt == FMT_FTRACE:
                    nu = _unrecognised(u_line, u_start, u_end, counts, nu, ln, ls, le)
                    continue
                sepc = C_SEP_SPACE
                while comm_e > ls and (buf[comm_e - 1] == 32 or buf[comm_e - 1] == 9):
                    comm_e -= 1
            else:
                nu = _unrecognised(u_line, u_start, u_end, counts, nu, ln, ls, le)
                continue
            counts[sepc] += 1
            comm_s = ls
            while comm_s < comm_e and (buf[comm_s] == 32 or buf[comm_s] == 9):
                comm_s += 1
            if nfail == 0:  # this line's header becomes the template (t0: start of its timestamp)
                t_len = t0 - ls
                t_s = ls
                t_cpu = cpu
                t_flags = flags
                t_comm_s = comm_s - ls
                t_comm_e = comm_e - ls
                t_pid = pid
                t_tgid = tgid
                t_tgid_seen = tgid_seen
                t_sep = sepc
        # --- event name, minus a "<system>:" prefix (perf)
        ns = name_s
        for j in range(name_s, name_e):
            if buf[j] == 58:
                ns = j + 1
        if ns != name_s:
            counts[C_SYS_PREFIX] += 1
        k = _match(buf, ns, name_e, ev_bytes, ev_off, ev_len)
        if k < 0:
            if 2 * x_n[0] + 2 > x_size:
                x_size *= 2
                _rehash(buf, x_slot, x_hash, x_start, x_len, x_n[0], x_size)
            xid = _intern(buf, name_s, name_e, x_slot, x_hash, x_start, x_len, x_n, x_size)
            x_count[xid] += 1
            counts[C_OTHER] += 1
            continue
        ev = ev_code[k]
        if nd == -1:
            counts[C_TS_COUNTER] += 1
        else:
            counts[C_TS_DECIMAL] += 1
            if nd == 6:
                counts[C_TS_6] += 1
            elif nd == 9:
                counts[C_TS_9] += 1
        if flags:
            counts[C_FLAGS] += 1
        # --- payload: key=value tokens
        pfn = -1
        order = -1
        mt = -1
        gfp = -1
        pcp = -1
        forder = -1
        pborder = -1
        fmt_ = -1
        frag = -1
        chown = -1
        cold = -1
        have = 0
        bad = 0
        ntok = 0
        q = pay_s
        while q < le:
            while q < le and buf[q] == 32:
                q += 1
            if q >= le:
                break
            ks = q
            q = _find2(buf, q, le, nbytes, _EQUALS, 61, _SPACES, 32)  # '=' or ' '
            if q >= le or buf[q] != 61:
                bad = R_BAD_VALUE
                break
            ke = q
            q += 1
            vs = q
            q = _find(buf, q, le, nbytes, _SPACES, 32)
            ve = q
            # the keys of consecutive lines mostly come in the same order: compare with the key
            # found at this position last time before searching the key list
            kn = ke - ks
            if ntok < 8 and kn == kc_n[ntok] and _same(buf, ks, kc_s[ntok], kn, nbytes):
                key = kc_id[ntok]
            else:
                key = _match(buf, ks, ke, key_bytes, key_off, key_len)
                if ntok < 8:
                    kc_n[ntok] = kn
                    kc_s[ntok] = ks
                    kc_id[ntok] = key
            ntok += 1
            if key < 0 or key == K_PAGE or key == K_CPU:
                continue
            if key == K_GFP:
                if ve == vs:
                    bad = R_BAD_VALUE
                    break
                gl = ve - vs
                if not (gl == prev_gfp_len and _same(buf, vs, prev_gfp_s, gl, nbytes)):
                    if 2 * g_n[0] + 2 > g_size:
                        g_size *= 2
                        _rehash(buf, g_slot, g_hash, g_start, g_len, g_n[0], g_size)
                    prev_gfp_id = _intern(buf, vs, ve, g_slot, g_hash, g_start, g_len, g_n, g_size)
                    prev_gfp_s = vs
                    prev_gfp_len = gl
                gfp = prev_gfp_id
                have |= B_GFP
                continue
            if key == K_PFN:
                vok, v, ishex = _parse_pfn(buf, vs, ve)
                if not vok:
                    bad = R_BAD_VALUE
                    break
                pfn = v
                have |= B_PFN
                if ishex:
                    counts[C_PFN_HEX] += 1
                else:
                    counts[C_PFN_DEC] += 1
                continue
            vok, v = _parse_int(buf, vs, ve)
            if not vok or v < -128 or v > 127:
                bad = R_BAD_VALUE
                break
            if key == K_ORDER or key == K_AORDER:
                order = v
                have |= B_ORDER
            elif key == K_MT or key == K_AMT:
                mt = v
                have |= B_MT
            elif key == K_PCP:
                pcp = v
                have |= B_PCP
            elif key == K_FORDER:
                forder = v
                have |= B_FORDER
            elif key == K_PBORDER:
                pborder = v
            elif key == K_FMT:
                fmt_ = v
                have |= B_FMT
            elif key == K_FRAG:
                frag = v
            elif key == K_CHOWN:
                chown = v
            elif key == K_COLD:
                cold = v
        if bad == 0 and (have & required[ev]) != required[ev]:
            bad = R_MISSING_FIELD
        if bad != 0:
            m_line[nm] = ln
            m_reason[nm] = bad
            nm += 1
            counts[C_MALFORMED] += 1
            continue
        if order < 0:
            order = 0  # mm_page_free_batched before 4.15 printed no order: always 0
        o_ts[ne] = ts
        o_cpu[ne] = cpu
        o_pid[ne] = pid
        o_tgid[ne] = tgid
        # consecutive lines mostly share the comm: compare with the previous one first
        cl = comm_e - comm_s
        if not (cl == prev_comm_len and _same(buf, comm_s, prev_comm_s, cl, nbytes)):
            if 2 * c_n[0] + 2 > c_size:
                c_size *= 2
                _rehash(buf, c_slot, c_hash, c_start, c_len, c_n[0], c_size)
            prev_comm_id = _intern(buf, comm_s, comm_e, c_slot, c_hash, c_start, c_len, c_n, c_size)
            prev_comm_s = comm_s
            prev_comm_len = cl
        o_comm[ne] = prev_comm_id
        o_ev[ne] = ev
        o_pfn[ne] = pfn
        o_order[ne] = order
        o_mt[ne] = mt
        o_gfp[ne] = gfp
        o_pcp[ne] = pcp
        o_forder[ne] = forder
        o_pborder[ne] = pborder
        o_fmt[ne] = fmt_
        o_frag[ne] = frag
        o_chown[ne] = chown
        o_cold[ne] = cold
        o_line[ne] = ln
        ne += 1
        counts[C_EVENTS] += 1

    return (
        ne,
        (o_ts, o_cpu, o_pid, o_tgid, o_comm, o_ev, o_pfn, o_order, o_mt, o_gfp, o_pcp, o_forder, o_pborder, o_fmt, o_frag, o_chown, o_cold, o_line),
        counts,
        lineno,
        (nu, u_line, u_start, u_end),
        (nm, m_line, m_reason),
        (c_n[0], c_start, c_len),
        (g_n[0], g_start, g_len),
        (x_n[0], x_start, x_len, x_count),
    )


@njit(cache=True, nogil=True)
def per_cpu_order_check(cpu, ts, last_ts, bad_idx):
    """Count events whose timestamp is below the previous one of the same CPU (input order).

    ``last_ts`` carries state across blocks (indexed by cpu, -1 = none yet);
    the first ``bad_idx.shape[0]`` offending positions are written to
    ``bad_idx``.  Returns the number of offending events.
    """
    nbad = 0
    for i in range(cpu.shape[0]):
        c = cpu[i]
        if ts[i] < last_ts[c]:
            if nbad < bad_idx.shape[0]:
                bad_idx[nbad] = i
            nbad += 1
        last_ts[c] = ts[i]
    return nbad


@njit(cache=True, nogil=True)
def sort_order(ts, cpu, idx):
    """Stable argsort by (ts, cpu) for nearly sorted input, written into ``idx``.

    Insertion sort: O(n + inversions); gives up (returns 2) past 32 inversions
    per element so the caller can use a real sort.  Returns 0 when the input
    was already in order (``idx`` untouched), 1 when ``idx`` holds the order.
    """
    n = ts.shape[0]
    in_order = True
    for i in range(1, n):
        if ts[i] < ts[i - 1] or (ts[i] == ts[i - 1] and cpu[i] < cpu[i - 1]):
            in_order = False
            break
    if in_order:
        return 0
    for i in range(n):
        idx[i] = i
    inversions = 0
    for i in range(1, n):
        j = i
        k = idx[i]
        while j > 0:
            p = idx[j - 1]
            if ts[p] > ts[k] or (ts[p] == ts[k] and cpu[p] > cpu[k]):
                idx[j] = p
                j -= 1
                inversions += 1
            else:
                break
        idx[j] = k
        if inversions > 32 * n:
            return 2
    return 1


def _use_aot(mod) -> None:
    """Replace the kernels the parser calls with the ahead-of-time compiled ones."""
    global scan_block, sort_order, per_cpu_order_check, AOT, _AOT
    scan_block, sort_order, per_cpu_order_check = mod.scan_block, mod.sort_order, mod.per_cpu_order_check
    _AOT, AOT = mod, True


if AOT:
    _use_aot(_AOT)

_warm_lock = threading.Lock()
_warm_done = False


def warm_up() -> None:
    """Load the parser's compiled kernels (compile them once if the on-disk cache is cold).

    Idempotent and thread-safe; called before the worker threads scan.  A bytearray, like the
    blocks ``LineBlocks`` yields, so one compiled signature is loaded, not two; the per-CPU order
    check is loaded here too rather than in the middle of the first block.
    """
    global _warm_done
    with _warm_lock:
        if _warm_done:
            return
        if JIT and not AOT:  # no ahead-of-time build of this source yet: make one for the next runs
            mod = _scan_aot.build_and_load()
            if mod is not None:
                _use_aot(mod)
        b = bytearray(b"x-1 [000] 1.000000: mm_page_free: page=0 pfn=0x1 order=0\n")
        arr = np.frombuffer(b, np.uint8)
        if not JIT:  # plain Python: numpy uint8 scalars would wrap in the arithmetic
            arr = arr.astype(np.int64)
        res = scan_block(arr, len(b), 2, FMT_AUTO, KEY_BYTES, KEY_OFF, KEY_LEN, EV_BYTES, EV_OFF, EV_LEN, EV_CODE,
                         REQUIRED)
        ne, cols = res[0], res[1]
        last = np.full(1, np.iinfo(np.int64).min, np.int64)
        per_cpu_order_check(cols[1][:ne], cols[0][:ne], last, np.empty(1, np.int64))
        _warm_done = True
