"""One pass over a block of text: every line classified, the kmem events' fields into arrays.

A line is blank, a comment, a header this scanner does not recognise (handed back as a span for
Python to classify: LOST markers, trace-cmd headers, stack traces, garbage), another event
(counted by name), a malformed kmem event (its line and reason), or a kmem event (a row of
:class:`~.result.EventColumns`).  Nothing is dropped.
"""

from __future__ import annotations

import numpy as np

from ..ranges import NR_CPUS_MAX, PID_MAX_LIMIT
from .bytes import line_ends, match
from .codes import (
    EV_BYTES,
    EV_CODE,
    EV_LEN,
    EV_OFF,
    LINES_EVENT,
    LINES_FLAGS,
    LINES_MALFORMED,
    LINES_OTHER_EVENT,
    LINES_SYS_PREFIX,
    LINES_TS_6,
    LINES_TS_9,
    LINES_TS_COUNTER,
    LINES_TS_DECIMAL,
    LINES_UNRECOGNISED,
    MALFORMED_RANGE_CPU,
    MALFORMED_RANGE_PID,
    MALFORMED_RANGE_TS,
    N_LINE_COUNTERS,
)  # fmt: skip
from .compile import kernel
from .header import HEADER_EVENT, HEADER_UNRECOGNISED, no_template, parse_header
from .intern import N, intern, intern_repeated, new_table
from .payload import Fields, new_key_cache, parse_payload
from .probes import XEV_BYTES, XEV_CODE, XEV_LEN, XEV_OFF, parse_probe_payload
from .result import EventColumns, ExtraFields, LineSpans, MalformedLines, OtherEvents, ScanResult, Strings


@kernel()
def _new_events(cap):
    i8 = np.int8
    return EventColumns(
        np.empty(cap, np.int64), np.empty(cap, np.int32), np.empty(cap, np.int32), np.empty(cap, np.int32),
        np.empty(cap, np.int32), np.empty(cap, i8), np.empty(cap, np.int64), np.empty(cap, i8), np.empty(cap, i8),
        np.empty(cap, np.int32), np.empty(cap, i8), np.empty(cap, i8), np.empty(cap, i8), np.empty(cap, i8),
        np.empty(cap, i8), np.empty(cap, i8), np.empty(cap, i8), np.empty(cap, np.int64),
    )  # fmt: skip


@kernel(inline="always")
def _count_stamp(counts, h):
    """The timestamp kind and the flags column of a kmem event line."""
    if h.nd == -1:
        counts[LINES_TS_COUNTER] += 1
    else:
        counts[LINES_TS_DECIMAL] += 1
        if h.nd == 6:
            counts[LINES_TS_6] += 1
        elif h.nd == 9:
            counts[LINES_TS_9] += 1
    if h.flags:
        counts[LINES_FLAGS] += 1


@kernel(inline="always")
def _header_range_bad(h):
    """0 when the header's pid, tgid, cpu and timestamp are in range (``parsers/ranges.py``),
    else the reason (``header`` saturates what would overflow: -1 for a timestamp)."""
    if h.ts < 0:
        return MALFORMED_RANGE_TS
    if h.pid > PID_MAX_LIMIT or h.tgid > PID_MAX_LIMIT:
        return MALFORMED_RANGE_PID
    if h.cpu >= NR_CPUS_MAX:
        return MALFORMED_RANGE_CPU
    return 0


@kernel(inline="always")
def _put_event(o, i, h, ev, comm, f, ln):
    """Row ``i`` of the event columns ``o``: header ``h``, event code, comm id, payload fields ``f``."""
    o.ts[i] = h.ts
    o.cpu[i] = h.cpu
    o.pid[i] = h.pid
    o.tgid[i] = h.tgid
    o.comm[i] = comm
    o.event[i] = ev
    o.pfn[i] = f.pfn
    o.order[i] = f.order
    o.migratetype[i] = f.mt
    o.gfp[i] = f.gfp
    o.percpu_refill[i] = f.pcp
    o.fallback_order[i] = f.forder
    o.pageblock_order[i] = f.pborder
    o.fallback_migratetype[i] = f.fmt
    o.fragmenting[i] = f.frag
    o.change_ownership[i] = f.chown
    o.cold[i] = f.cold
    o.line[i] = ln


@kernel(inline="always")
def _put_malformed(mal, nm, ln, reason, ls, end):
    """Malformed line ``ln`` (byte span ``ls..end``) at ``mal[nm]``; returns ``nm + 1``."""
    mal.line[nm] = ln
    mal.reason[nm] = reason
    mal.start[nm] = ls
    mal.end[nm] = end
    return nm + 1


@kernel(inline="always")
def _put_extra(xf, row, p):
    """The non-kmem fields of event row ``row`` (``probes.ProbeFields`` ``p``) at ``xf.n[0]``."""
    j = xf.n[0]
    xf.row[j] = row
    xf.have[j] = p.have
    xf.lock_addr[j] = p.lock
    xf.lock_flags[j] = p.flags
    xf.ret[j] = p.ret
    xf.nr_pages[j] = p.nr
    xf.n[0] = j + 1


@kernel()
def scan_block(buf, nbytes, fmt):
    """Scan ``buf[:nbytes]`` (whole lines) with line grammar ``fmt`` (``codes.FMT_*``).

    Returns the fields of a :class:`~.result.ScanResult` as plain tuples (``result.from_kernel``
    names them).  Line numbers are 0-based within the block.
    """
    ends = line_ends(buf, nbytes)
    cap = ends.shape[0] + 1  # the lines, plus one spare
    out = _new_events(cap)
    unrec = LineSpans(0, np.empty(cap, np.int64), np.empty(cap, np.int64), np.empty(cap, np.int64))
    mal = MalformedLines(0, np.empty(cap, np.int64), np.empty(cap, np.int8), np.empty(cap, np.int64),
                         np.empty(cap, np.int64))  # fmt: skip
    counts = np.zeros(N_LINE_COUNTERS, np.int64)
    comms = new_table(cap)
    gfps = new_table(cap)
    others = new_table(cap)
    other_count = np.zeros(cap + 1, np.int64)
    xf = ExtraFields(np.zeros(1, np.int64), np.empty(cap, np.int64), np.empty(cap, np.int8), np.empty(cap, np.int64),
                     np.empty(cap, np.int64), np.empty(cap, np.int64), np.empty(cap, np.int64))  # fmt: skip
    ne, nu, nm, lines = _scan_lines(buf, nbytes, fmt, ends, out, unrec, mal, counts, comms, gfps, others, other_count,
                                    new_key_cache(), xf)  # fmt: skip
    return ScanResult(
        ne, out[:], counts, lines, LineSpans(nu, unrec.line, unrec.start, unrec.end)[:],
        MalformedLines(nm, mal.line, mal.reason, mal.start, mal.end)[:],
        Strings(comms.state[N], comms.start, comms.length)[:], Strings(gfps.state[N], gfps.start, gfps.length)[:],
        OtherEvents(others.state[N], others.start, others.length, other_count)[:],
        ExtraFields(xf.n[0], xf.row, xf.have, xf.lock_addr, xf.lock_flags, xf.ret, xf.nr_pages)[:],
    )[:]  # fmt: skip


# One function for the whole loop, compiled without numba's reference counting: with it, every
# read of an array out of a namedtuple (``out.ts``, ``comms.slot``, ...) would increment and
# decrement that array's reference count with atomic instructions, per line.  The steps of a line
# are inlined helpers (``parse_header``, ``parse_payload``, ``intern``), so the loop costs what
# one hand-inlined function did.
@kernel(_nrt=False)
def _scan_lines(buf, nbytes, fmt, ends, out, unrec, mal, counts, comms, gfps, others, other_count, keys, xf):
    """The lines of buf[:nbytes] (``ends``: their ends) into the output arrays; returns (events,
    unrecognised lines, malformed lines, lines)."""
    tmpl = no_template()
    ne = 0
    nu = 0
    nm = 0
    pos = 0
    lineno = 0
    while pos < nbytes:
        ls = pos
        le = ends[lineno]
        pos = le + 1
        ln = lineno
        lineno += 1
        if le > ls and buf[le - 1] == 13:  # CRLF
            le -= 1
        h, tmpl = parse_header(buf, ls, le, nbytes, fmt, tmpl, counts)
        if h.kind != HEADER_EVENT:
            if h.kind == HEADER_UNRECOGNISED:
                unrec.line[nu] = ln
                unrec.start[nu] = ls
                unrec.end[nu] = le
                nu += 1
                counts[LINES_UNRECOGNISED] += 1
            continue
        ns = h.name_s  # the event name, minus a "<system>:" prefix (perf)
        for j in range(h.name_s, h.name_e):
            if buf[j] == 58:
                ns = j + 1
        if ns != h.name_s:
            counts[LINES_SYS_PREFIX] += 1
        k = match(buf, ns, h.name_e, EV_BYTES, EV_OFF, EV_LEN)
        if k < 0:
            x = match(buf, ns, h.name_e, XEV_BYTES, XEV_OFF, XEV_LEN)  # lock contention, untraced kprobes
            if x < 0:
                other_count[intern(buf, h.name_s, h.name_e, nbytes, others)] += 1
                counts[LINES_OTHER_EVENT] += 1
                continue
            _count_stamp(counts, h)
            p = parse_probe_payload(buf, h.pay_s, le, XEV_CODE[x])
            if p.bad != 0:
                nm = _put_malformed(mal, nm, ln, p.bad, ls, ends[ln])
                counts[LINES_MALFORMED] += 1
                continue
            _put_extra(xf, ne, p)
            f = Fields(0, p.pfn, p.order, p.mt, -1, -1, -1, -1, -1, -1, -1, -1)
            _put_event(out, ne, h, XEV_CODE[x], intern_repeated(buf, h.comm_s, h.comm_e, nbytes, comms), f, ln)
            ne += 1
            counts[LINES_EVENT] += 1
            continue
        ev = EV_CODE[k]
        _count_stamp(counts, h)
        f = parse_payload(buf, h.pay_s, le, nbytes, ev, keys, gfps, counts)
        bad = f.bad if f.bad != 0 else _header_range_bad(h)
        if bad != 0:
            mal.line[nm] = ln
            mal.reason[nm] = bad
            mal.start[nm] = ls
            mal.end[nm] = ends[ln]
            nm += 1
            counts[LINES_MALFORMED] += 1
            continue
        _put_event(out, ne, h, ev, intern_repeated(buf, h.comm_s, h.comm_e, nbytes, comms), f, ln)
        ne += 1
        counts[LINES_EVENT] += 1
    return ne, nu, nm, lineno
