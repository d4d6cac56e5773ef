"""The payload of the event lines beyond kmem: lock contention and the untraced kprobes.

    contention_begin: 00000000a4fc5a6a (flags=SPIN|MUTEX)                       include/trace/events/lock.h
    contention_end: 00000000a4fc5a6a (ret=0)
    isolate_free_page: (__isolate_free_page+0x0/0x2b0) page=0xff.. order=5 vmemmap=0xff..   record --untraced
    isolate_free_page_ret: (isolate_freepages_block+0x261/0x410 <- __isolate_free_page) ret=32

The lock address is ``%p`` (hashed in tracefs, ``0x`` raw in trace-cmd/perf; ``(____ptrval____)``
before the hash key exists: null).  A kprobe payload is the probe site in parentheses, then its
``key=value`` arguments (``x64`` as ``0x`` hex, ``u32``/``s32``/``u8`` decimal); what each probe's
fields mean is ``parsers.schema.UntracedEvent``, and ``parsers.capture.untraced.parse_untraced`` is
the reference decoder this one agrees with (``tests/parsers/test_scan_probes.py``).  Such lines are
rare (tens to thousands per trace), so plain byte loops do.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from ..schema import ALL_EVENT_NAMES, EVENT_NAMES, LOCK_FLAG_BITS, LockEvent, UntracedEvent
from .bytes import is_digit
from .codes import MALFORMED_BAD_VALUE, _pack
from .compile import kernel

#: the names this module reads, and their codes (``LockEvent``, ``UntracedEvent``)
XEV_BYTES, XEV_OFF, XEV_LEN = _pack(ALL_EVENT_NAMES[len(EVENT_NAMES):])
XEV_CODE = np.arange(len(EVENT_NAMES), len(ALL_EVENT_NAMES), dtype=np.int64)
EV_BEGIN = int(LockEvent.CONTENTION_BEGIN)
EV_END = int(LockEvent.CONTENTION_END)
EV_UNTRACED0 = int(min(UntracedEvent))

# how an untraced probe's pfn comes (the ``pfn_from`` of parsers/capture/untraced.py's ProbeSpec)
PF_PAGE = 0  # struct page pointer (page= / folio=) and vmemmap_base
PF_RET = 1  # a return probe: ret= only
PF_PHYS = 2  # physical [start, end)
PF_PFN = 3  # [start_pfn, end_pfn)
_U = UntracedEvent
#: per ``UntracedEvent`` (code - EV_UNTRACED0): (pfn_from, fixed order or -1, a return probe that succeeds on 0)
_PROBE = {
    _U.ISOLATE_FREE_PAGE: (PF_PAGE, -1, 0), _U.ISOLATE_FREE_PAGE_RET: (PF_RET, -1, 0),
    _U.PUTBACK_ISOLATED_PAGE: (PF_PAGE, -1, 0), _U.TAKE_PAGE_OFF_BUDDY: (PF_PAGE, 0, 0),
    _U.TAKE_PAGE_OFF_BUDDY_RET: (PF_RET, -1, 0), _U.PUT_PAGE_BACK_BUDDY: (PF_PAGE, 0, 0),
    _U.PUT_PAGE_BACK_BUDDY_RET: (PF_RET, -1, 0), _U.SPLIT_FREE_PAGE: (PF_PAGE, -1, 0),
    _U.SPLIT_FREE_PAGE_RET: (PF_RET, -1, 1), _U.FREE_UNACCEPTED: (PF_PAGE, 10, 0),
    _U.FREE_UNACCEPTED_RET: (PF_RET, -1, 0), _U.TDX_ACCEPT_MEMORY: (PF_PHYS, -1, 0),
    _U.SNP_ACCEPT_MEMORY: (PF_PHYS, -1, 0), _U.OFFLINE_ISOLATED_PAGES: (PF_PFN, -1, 0),
    _U.SPLIT_PAGE: (PF_PAGE, -1, 0), _U.FREE_PAGES_CORE: (PF_PAGE, -1, 0), _U.ACCEPT_PAGE: (PF_PAGE, 10, 0),
    _U.COMPACTION_FREE: (PF_PAGE, -1, 0), _U.SPLIT_LARGE_BUDDY: (PF_PAGE, -1, 0),
    _U.FREE_PREPARED_CONTIG_RANGE: (PF_PAGE, -1, 0),
}  # fmt: skip
PROBE_FROM = np.array([_PROBE[e][0] for e in sorted(_U)], np.int64)
PROBE_ORDER = np.array([_PROBE[e][1] for e in sorted(_U)], np.int64)
PROBE_OK_ON_ZERO = np.array([_PROBE[e][2] for e in sorted(_U)], np.int64)

STRUCT_PAGE_SHIFT = 6  # sizeof(struct page) == 64 on x86-64
PAGE_SHIFT = 12
VMEMMAP_START_DEFAULT = np.uint64(0xFFFFEA0000000000)  # without CONFIG_DYNAMIC_MEMORY_LAYOUT (no vmemmap=)

# the argument keys of the probes: page/folio, vmemmap/vmb, start/start_pfn, end/end_pfn are one each
_KEYS = ("page", "folio", "order", "vmemmap", "vmb", "mt", "nr", "start", "start_pfn", "end", "end_pfn", "ret")
_KEY_ID = np.array([0, 0, 1, 2, 2, 3, 4, 5, 5, 6, 6, 7], np.int64)
K_PAGE, K_ORDER, K_VM, K_MT, K_NR, K_START, K_END, K_RET = range(8)
_KEY_BYTES, _KEY_OFF, _KEY_LEN = _pack(_KEYS)
_FLAG_NAMES = tuple(LOCK_FLAG_BITS)
_FLAG_BYTES, _FLAG_OFF, _FLAG_LEN = _pack(_FLAG_NAMES)
_FLAG_BIT = np.array([LOCK_FLAG_BITS[n] for n in _FLAG_NAMES], np.int64)

# ``have`` bits of a row's extra fields (the others are null)
HAVE_LOCK = 1
HAVE_FLAGS = 2
HAVE_RET = 4
HAVE_NR = 8

#: one line's fields: ``bad`` (0 or ``MALFORMED_*``), pfn (-1 none), order, migratetype (-1), the
#: ``HAVE_*`` bits, lock address (the uint64 bits as int64), lock flags, ret, nr_pages
ProbeFields = namedtuple("ProbeFields", ("bad", "pfn", "order", "mt", "have", "lock", "flags", "ret", "nr"))

_HEXVAL = np.full(256, -1, np.int64)
for _c in b"0123456789abcdef":
    _HEXVAL[_c] = int(chr(_c), 16)
for _c in b"ABCDEF":
    _HEXVAL[_c] = int(chr(_c), 16)


@kernel(_nrt=False)
def _word(buf, s, e, words, off, ln):
    """Index of buf[s:e] in the packed word list (-1: none)."""
    n = e - s
    for k in range(off.shape[0]):
        if ln[k] != n:
            continue
        o = off[k]
        j = 0
        while j < n and buf[s + j] == words[o + j]:
            j += 1
        if j == n:
            return k
    return -1


@kernel(_nrt=False)
def _hex(buf, s, e):
    """Hex in buf[s:e] (``0x`` optional, at most 16 digits): (ok, the uint64 bits as int64)."""
    if e - s >= 2 and buf[s] == 48 and (buf[s + 1] == 120 or buf[s + 1] == 88):
        s += 2
    if s >= e or e - s > 16:
        return False, np.int64(0)
    v = np.uint64(0)
    for i in range(s, e):
        d = _HEXVAL[buf[i]]
        if d < 0:
            return False, np.int64(0)
        v = (v << np.uint64(4)) | np.uint64(d)
    return True, np.int64(v)


@kernel(_nrt=False)
def _number(buf, s, e):
    """A kprobe value: ``0x`` hex (64-bit, as int64 bits) or signed decimal: (ok, value)."""
    if e - s >= 2 and buf[s] == 48 and (buf[s + 1] == 120 or buf[s + 1] == 88):
        return _hex(buf, s, e)
    neg = s < e and buf[s] == 45
    if neg:
        s += 1
    if s >= e or e - s > 18:
        return False, np.int64(0)
    v = 0
    for i in range(s, e):
        if not is_digit(buf[i]):
            return False, np.int64(0)
        v = v * 10 + (buf[i] - 48)
    return True, np.int64(-v if neg else v)


@kernel(_nrt=False)
def _log2_exact(n):
    if n <= 0 or (n & (n - 1)) != 0:
        return -1
    k = 0
    while (1 << k) < n:
        k += 1
    return k


@kernel(_nrt=False)
def _lock_payload(buf, q, le, ev):
    """``<%p> (flags=A|B)`` / ``<%p> (ret=N)``."""
    while q < le and buf[q] == 32:
        q += 1
    s = q
    while q < le and buf[q] != 32:
        q += 1
    have = 0
    ok, lock = _hex(buf, s, q)
    if ok:
        have |= HAVE_LOCK
    elif not (q - s >= 2 and buf[s] == 40):  # "(____ptrval____)": no hash key yet
        return ProbeFields(MALFORMED_BAD_VALUE, -1, -1, -1, 0, np.int64(0), 0, 0, 0)
    while q < le and buf[q] == 32:
        q += 1
    if q >= le or buf[q] != 40 or buf[le - 1] != 41:
        return ProbeFields(MALFORMED_BAD_VALUE, -1, -1, -1, 0, np.int64(0), 0, 0, 0)
    ks = q + 1
    eq = ks
    while eq < le and buf[eq] != 61:
        eq += 1
    vs, ve = eq + 1, le - 1
    flags = 0
    ret = 0
    if ev == EV_BEGIN and eq - ks == 5 and buf[ks] == 102:  # flags=
        t = vs
        while t <= ve:  # "A|B|0x40", or empty (no bit set)
            u = t
            while u < ve and buf[u] != 124:
                u += 1
            if u > t:
                w = _word(buf, t, u, _FLAG_BYTES, _FLAG_OFF, _FLAG_LEN)
                if w >= 0:
                    flags |= _FLAG_BIT[w]
                else:
                    hok, hv = _hex(buf, t, u)
                    if not hok or u - t < 3 or buf[t + 1] != 120:
                        return ProbeFields(MALFORMED_BAD_VALUE, -1, -1, -1, 0, np.int64(0), 0, 0, 0)
                    flags |= hv
            t = u + 1
        have |= HAVE_FLAGS
    elif ev == EV_END and eq - ks == 3 and buf[ks] == 114:  # ret=
        rok, ret = _number(buf, vs, ve)
        if not rok:
            return ProbeFields(MALFORMED_BAD_VALUE, -1, -1, -1, 0, np.int64(0), 0, 0, 0)
        have |= HAVE_RET
    else:
        return ProbeFields(MALFORMED_BAD_VALUE, -1, -1, -1, 0, np.int64(0), 0, 0, 0)
    return ProbeFields(0, -1, -1, -1, have, lock, flags, ret, 0)


@kernel(_nrt=False)
def _kprobe_payload(buf, q, le, ev):
    """``(<site>) key=value ...`` of an untraced probe (``UntracedEvent`` ``ev``)."""
    while q < le and buf[q] == 32:
        q += 1
    if q >= le or buf[q] != 40:
        return ProbeFields(MALFORMED_BAD_VALUE, -1, -1, -1, 0, np.int64(0), 0, 0, 0)
    while q < le and buf[q] != 41:
        q += 1
    q += 1
    seen = 0  # bit K_* per argument read
    page = np.int64(0)
    order = np.int64(0)
    vm = np.int64(VMEMMAP_START_DEFAULT)
    mt = np.int64(0)
    nr = np.int64(0)
    start = np.int64(0)
    end = np.int64(0)
    ret = np.int64(0)
    while q < le:
        while q < le and buf[q] == 32:
            q += 1
        if q >= le:
            break
        ks = q
        while q < le and buf[q] != 61 and buf[q] != 32:
            q += 1
        if q >= le or buf[q] != 61:
            return ProbeFields(MALFORMED_BAD_VALUE, -1, -1, -1, 0, np.int64(0), 0, 0, 0)
        ke = q
        q += 1
        vs = q
        while q < le and buf[q] != 32:
            q += 1
        w = _word(buf, ks, ke, _KEY_BYTES, _KEY_OFF, _KEY_LEN)
        if w < 0:
            continue
        ok, v = _number(buf, vs, q)
        if not ok:
            return ProbeFields(MALFORMED_BAD_VALUE, -1, -1, -1, 0, np.int64(0), 0, 0, 0)
        k = _KEY_ID[w]
        seen |= 1 << k
        if k == K_PAGE:
            page = v
        elif k == K_ORDER:
            order = v
        elif k == K_VM:
            vm = v
        elif k == K_MT:
            mt = v
        elif k == K_NR:
            nr = v
        elif k == K_START:
            start = v
        elif k == K_END:
            end = v
        else:
            ret = v
    return _probe_fields(ev - EV_UNTRACED0, seen, page, order, vm, mt, nr, start, end, ret)


@kernel(_nrt=False)
def _probe_fields(x, seen, page, order_arg, vm, mt_arg, nr_arg, start, end, ret_arg):
    """pfn, order, nr_pages, ret of probe ``x`` from the arguments it printed (bits ``seen``)."""
    kind = PROBE_FROM[x]
    pfn = np.int64(-1)
    order = np.int64(-1)
    have = 0
    nr = np.int64(0)
    ret = np.int64(0)
    mt = mt_arg if seen & (1 << K_MT) else np.int64(-1)
    if kind == PF_RET:
        if seen & (1 << K_RET):
            ret = ret_arg
            have |= HAVE_RET
            ok = (ret == 0) if PROBE_OK_ON_ZERO[x] else (ret != 0)
            order = np.int64(0) if ok else np.int64(-1)
    elif kind == PF_PAGE:
        if seen & (1 << K_ORDER):
            order = order_arg
        elif seen & (1 << K_NR):
            nr = nr_arg
            have |= HAVE_NR
            order = np.int64(_log2_exact(nr))
        else:
            order = np.int64(PROBE_ORDER[x])
        if seen & (1 << K_PAGE) and np.uint64(page) >= np.uint64(vm):  # kernel addresses: unsigned
            pfn = np.int64((np.uint64(page) - np.uint64(vm)) >> np.uint64(STRUCT_PAGE_SHIFT))
    elif seen & (1 << K_START):  # PF_PHYS, PF_PFN
        sh = np.uint64(PAGE_SHIFT if kind == PF_PHYS else 0)
        pfn = np.int64(np.uint64(start) >> sh)
        if seen & (1 << K_END):
            nr = np.int64((np.uint64(end) - np.uint64(start)) >> sh)
            have |= HAVE_NR
        order = np.int64(_log2_exact(nr))
    if order < -1 or order > 127 or mt < -1 or mt > 127:  # int8 columns; no kernel prints more
        return ProbeFields(MALFORMED_BAD_VALUE, -1, -1, -1, 0, np.int64(0), 0, 0, 0)
    return ProbeFields(0, pfn, order, mt, have, np.int64(0), 0, ret, nr)


@kernel(_nrt=False)
def parse_probe_payload(buf, q, le, ev):
    """The fields of a lock contention or untraced kprobe line of event code ``ev`` from its
    payload buf[q:le]: :data:`ProbeFields`."""
    if ev == EV_BEGIN or ev == EV_END:
        return _lock_payload(buf, q, le, ev)
    return _kprobe_payload(buf, q, le, ev)
