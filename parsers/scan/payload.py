"""The payload of a kmem event line: its ``key=value`` fields (kmem.h ``TP_printk`` of every era).

Keys the events do not print are skipped, so are ``page=`` (a hashed or raw pointer) and
``cpu=``; a value that does not parse makes the line malformed, and so does a missing field the
event must carry (``codes.REQUIRED``), and so does a value outside its field's range
(``parsers/ranges.py``: stored, it would not be the value the text says).
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from .bytes import EQUALS, SPACES, find, find2, is_digit, match, same
from .codes import (
    HAS_FMT,
    HAS_FORDER,
    HAS_GFP,
    HAS_MT,
    HAS_ORDER,
    HAS_PCP,
    HAS_PFN,
    KEY_AMT,
    KEY_AORDER,
    KEY_BYTES,
    KEY_CHOWN,
    KEY_COLD,
    KEY_CPU,
    KEY_FMT,
    KEY_FORDER,
    KEY_FRAG,
    KEY_GFP,
    KEY_LEN,
    KEY_MT,
    KEY_OFF,
    KEY_ORDER,
    KEY_PAGE,
    KEY_PBORDER,
    KEY_PCP,
    KEY_PFN,
    LINES_PFN_DEC,
    LINES_PFN_HEX,
    MALFORMED_BAD_VALUE,
    MALFORMED_MISSING_FIELD,
    MALFORMED_RANGE_BOOL,
    MALFORMED_RANGE_MT,
    MALFORMED_RANGE_ORDER,
    REQUIRED,
)  # fmt: skip
from .compile import kernel
from ..ranges import MAX_PAGE_ORDER, MIGRATE_TYPES
from .intern import intern_repeated

#: ``bad``: 0 or a ``MALFORMED_*`` reason; then the fields (-1: not printed; ``order`` 0 when
#: absent, as mm_page_free_batched before 4.15 printed none); ``gfp``: id in the gfp table;
#: ``pcp``: percpu_refill, ``fmt``: fallback_migratetype, ``frag``: fragmenting, ``chown``:
#: change_ownership
Fields = namedtuple(
    "Fields", ("bad", "pfn", "order", "mt", "gfp", "pcp", "forder", "pborder", "fmt", "frag", "chown", "cold")
)
#: the key found at each of the first ``KEYS_CACHED`` positions of the last payload: its length,
#: start and id (the keys of consecutive lines mostly come in the same order)
KeyCache = namedtuple("KeyCache", ("length", "start", "key"))
KEYS_CACHED = 8


@kernel()
def new_key_cache():
    return KeyCache(
        np.full(KEYS_CACHED, -1, np.int64), np.zeros(KEYS_CACHED, np.int64), np.zeros(KEYS_CACHED, np.int64)
    )


@kernel(_nrt=False)
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
        if not is_digit(c):
            return False, 0
        v = v * 10 + (c - 48)
    return True, -v if neg else v


_HEXVAL = np.full(256, -1, np.int64)
for _c in b"0123456789abcdef":
    _HEXVAL[_c] = int(chr(_c), 16)
for _c in b"ABCDEF":
    _HEXVAL[_c] = int(chr(_c), 16)

_ULONG_MAX_DEC = np.frombuffer(b"18446744073709551615", np.uint8).copy()  # (unsigned long)-1


@kernel(_nrt=False)
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


@kernel(inline="always")
def _range_bad(key, v):
    """0 when ``v`` is in the range of field ``key`` (``parsers/ranges.py``), else the reason."""
    if key == KEY_ORDER or key == KEY_AORDER or key == KEY_FORDER or key == KEY_PBORDER or key == KEY_FRAG:
        # fragmenting: trace-cmd and perf print the fallback order there (recomputed later)
        return 0 if 0 <= v <= MAX_PAGE_ORDER else MALFORMED_RANGE_ORDER
    if key == KEY_MT or key == KEY_AMT or key == KEY_FMT:
        return 0 if 0 <= v < MIGRATE_TYPES else MALFORMED_RANGE_MT
    if key == KEY_PCP or key == KEY_CHOWN or key == KEY_COLD:
        return 0 if 0 <= v <= 1 else MALFORMED_RANGE_BOOL
    return 0


@kernel(inline="always")
def _key(buf, ks, ke, ntok, keys, nb):
    """Id of the key buf[ks:ke], the ``ntok``-th of its payload (-1: not a kmem key)."""
    kn = ke - ks
    if ntok < KEYS_CACHED and kn == keys.length[ntok] and same(buf, ks, keys.start[ntok], kn, nb):
        return keys.key[ntok]
    key = match(buf, ks, ke, KEY_BYTES, KEY_OFF, KEY_LEN)
    if ntok < KEYS_CACHED:
        keys.length[ntok] = kn
        keys.start[ntok] = ks
        keys.key[ntok] = key
    return key


@kernel(inline="always")
def parse_payload(buf, q, le, nb, ev, keys, gfps, counts):
    """The fields of event ``ev`` from its payload buf[q:le]: :data:`Fields`.

    Interns the gfp text into ``gfps`` (even when the line turns out malformed) and counts hex
    and decimal pfns into ``counts``.
    """
    pfn = -1
    order = -1
    mt = -1
    gfp = -1
    pcp = -1
    forder = -1
    pborder = -1
    fmt = -1
    frag = -1
    chown = -1
    cold = -1
    have = 0
    bad = 0
    ntok = 0
    while q < le:
        while q < le and buf[q] == 32:
            q += 1
        if q >= le:
            break
        ks = q
        q = find2(buf, q, le, nb, EQUALS, 61, SPACES, 32)  # '=' or ' '
        if q >= le or buf[q] != 61:
            bad = MALFORMED_BAD_VALUE
            break
        ke = q
        q += 1
        vs = q
        q = find(buf, q, le, nb, SPACES, 32)
        ve = q
        key = _key(buf, ks, ke, ntok, keys, nb)
        ntok += 1
        if key < 0 or key == KEY_PAGE or key == KEY_CPU:
            continue
        if key == KEY_GFP:
            if ve == vs:
                bad = MALFORMED_BAD_VALUE
                break
            gfp = intern_repeated(buf, vs, ve, nb, gfps)
            have |= HAS_GFP
            continue
        if key == KEY_PFN:
            vok, v, ishex = _parse_pfn(buf, vs, ve)
            if not vok:
                bad = MALFORMED_BAD_VALUE
                break
            pfn = v
            have |= HAS_PFN
            if ishex:
                counts[LINES_PFN_HEX] += 1
            else:
                counts[LINES_PFN_DEC] += 1
            continue
        vok, v = _parse_int(buf, vs, ve)
        if not vok:
            bad = MALFORMED_BAD_VALUE
            break
        bad = _range_bad(key, v)
        if bad != 0:
            break
        if key == KEY_ORDER or key == KEY_AORDER:
            order = v
            have |= HAS_ORDER
        elif key == KEY_MT or key == KEY_AMT:
            mt = v
            have |= HAS_MT
        elif key == KEY_PCP:
            pcp = v
            have |= HAS_PCP
        elif key == KEY_FORDER:
            forder = v
            have |= HAS_FORDER
        elif key == KEY_PBORDER:
            pborder = v
        elif key == KEY_FMT:
            fmt = v
            have |= HAS_FMT
        elif key == KEY_FRAG:
            frag = v
        elif key == KEY_CHOWN:
            chown = v
        elif key == KEY_COLD:
            cold = v
    if bad == 0 and (have & REQUIRED[ev]) != REQUIRED[ev]:
        bad = MALFORMED_MISSING_FIELD
    if (have & HAS_ORDER) == 0:
        order = 0  # mm_page_free_batched before 4.15 printed no order: always 0
    return Fields(bad, pfn, order, mt, gfp, pcp, forder, pborder, fmt, frag, chown, cold)
