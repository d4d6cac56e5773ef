"""The line header: who, where, when, which event.

    <comm>-<pid> [(<tgid>)] [<cpu>] [<flags>] <secs>.<frac>: <event>: ...   ftrace, trace-cmd report
    <comm> <pid>[/<tid>] [<cpu>] <secs>.<frac>: <sys>:<event>: ...          perf script

The header is found from the CPU column: the first ``[<cpu>]`` (after a blank, before one) that is
followed by an optional flags column, a timestamp and an event name wins; the comm, pid and tgid
are then read backwards from it, so a comm may hold blanks, dashes, brackets and digits.

Consecutive lines mostly share comm, pid, cpu and flags.  The text of a line up to its timestamp
is kept as a :data:`Template` with what was parsed from it; a later line that starts with exactly
those bytes has the same fields, and only its timestamp and event name are parsed.  A template is
only taken from a line whose first ``[<cpu>]`` candidate was the one that parsed (so the bytes
alone decide).
"""

from __future__ import annotations

from collections import namedtuple

from .bytes import COLONS, SPACES, find, is_digit, same
from .codes import FMT_FTRACE, FMT_PERF, LINES_BLANK, LINES_COMMENT, LINES_DASH, LINES_SPACE, LINES_TGID
from ..ranges import PID_MAX_LIMIT, TS_MAX_SECONDS
from .compile import kernel

PID_SATURATED = PID_MAX_LIMIT * 10  # a pid/tgid read this far is out of range whatever follows

# what a line is, as far as its header tells
HEADER_EVENT = 0  # a header: an event of some name follows (Header fields valid)
HEADER_BLANK = 1
HEADER_COMMENT = 2
HEADER_UNRECOGNISED = 3  # no header: the line goes back to Python to classify

#: ``kind`` (``HEADER_*``) and, for an event line: cpu, flags column present, timestamp (ns or a
#: counter) and its decimals (-1: a counter), the event name [name_s, name_e), the payload start,
#: the comm [comm_s, comm_e), pid and tgid (-1: none)
Header = namedtuple(
    "Header", ("kind", "cpu", "flags", "ts", "nd", "name_s", "name_e", "pay_s", "comm_s", "comm_e", "pid", "tgid")
)
#: a line's text up to its timestamp (``length`` bytes from ``start``; 0: none yet) and what it
#: gives: cpu, flags, the comm span relative to the line start, pid, tgid, whether a tgid column
#: was there, and the separator counter (``LINES_DASH`` / ``LINES_SPACE``)
Template = namedtuple(
    "Template", ("length", "start", "cpu", "flags", "comm_s", "comm_e", "pid", "tgid", "tgid_seen", "sep")
)
#: the timestamp token and the event name after it
_Stamp = namedtuple("_Stamp", ("ok", "ts", "nd", "name_s", "name_e", "pay_s"))
#: comm, pid and tgid from the text before the CPU column
_Task = namedtuple("_Task", ("ok", "comm_s", "comm_e", "pid", "tgid", "tgid_seen", "sep"))


@kernel(inline="always")
def no_template():
    return Template(0, 0, 0, False, 0, 0, 0, -1, False, 0)


@kernel(inline="always")
def _no_header(kind):
    return Header(kind, 0, False, 0, 0, 0, 0, 0, 0, 0, 0, -1)


@kernel(_nrt=False)
def _parse_ts(buf, s, e):
    """``secs.frac`` (1..9 decimals) -> ns, or a raw counter without a point.

    Returns (ok, value, ndecimals) with ndecimals == -1 for a counter clock.
    """
    if s >= e:
        return False, 0, 0
    v = 0
    i = s
    while i < e and is_digit(buf[i]):
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
    while i < e and is_digit(buf[i]):
        f = f * 10 + (buf[i] - 48)
        nd += 1
        i += 1
    if i != e or nd == 0 or nd > 9:
        return False, 0, 0
    if v > TS_MAX_SECONDS:  # its ns would not fit int64: -1 makes the line malformed (block.py)
        return True, -1, nd
    for _ in range(9 - nd):
        f *= 10
    return True, v * 1000000000 + f, nd


@kernel()
def _is_flag_char(c):
    # kernel/trace/trace_output.c:trace_print_lat_fmt (6.1 .. 7.3), any position (a superset):
    # irqs-off D d b X .; need-resched N n p and, from v6.13 (lazy preemption), B L b l;
    # hardirq/softirq/NMI Z z H h s; preempt depth and migrate-disable . or a hex digit
    return (
        c == 46
        or is_digit(c)
        or (97 <= c <= 102)  # a-f (b: BH off / need-resched + lazy)
        or c == 68  # D
        or c == 88  # X
        or c == 78  # N
        or c == 110  # n
        or c == 112  # p
        or c == 66  # B
        or c == 76  # L
        or c == 108  # l
        or c == 90  # Z
        or c == 122  # z
        or c == 72  # H
        or c == 104  # h
        or c == 115  # s
    )


@kernel(inline="always")
def _stamp(buf, t0, le, nb):
    """The token at ``t0`` as a timestamp ``<ts>:``, then the event name up to the first ": "
    (or a ':' at the end of the line; without one the rest of the line is the name, as in
    "<stack trace>")."""
    q = find(buf, t0, le, nb, SPACES, 32)
    if not (q - t0 >= 2 and buf[q - 1] == 58):
        return _Stamp(False, 0, 0, 0, 0, 0)
    ok, ts, nd = _parse_ts(buf, t0, q - 1)
    if not ok:
        return _Stamp(False, 0, 0, 0, 0, 0)
    while q < le and buf[q] == 32:
        q += 1
    name_s = q
    while True:
        q = find(buf, q, le, nb, COLONS, 58)
        if q >= le or q + 1 == le or buf[q + 1] == 32:
            break
        q += 1
    if q == name_s:
        return _Stamp(False, 0, 0, 0, 0, 0)
    return _Stamp(True, ts, nd, name_s, q, q + 1 if q < le else le)


@kernel(inline="always")
def _after_cpu(buf, p, le, nb):
    """The candidate CPU column ``[<cpu>]`` at ``p`` and what follows it: (stamp, cpu, flags
    column present, start of the timestamp)."""
    q = p + 1
    cpu = 0
    while q < le and is_digit(buf[q]):
        cpu = cpu * 10 + (buf[q] - 48)
        q += 1
    if q == p + 1 or q >= le or buf[q] != 93 or q - p > 8:  # ']'
        return _Stamp(False, 0, 0, 0, 0, 0), 0, False, 0
    q += 1
    if q >= le or (buf[q] != 32 and buf[q] != 9):
        return _Stamp(False, 0, 0, 0, 0, 0), 0, False, 0
    while q < le and buf[q] == 32:
        q += 1
    st = _stamp(buf, q, le, nb)
    if st.ok:
        return st, cpu, False, q
    # an irq-info flags column (1..6 flag characters) before the timestamp
    t0 = q
    q = find(buf, t0, le, nb, SPACES, 32)
    if q - t0 < 1 or q - t0 > 6:
        return st, 0, False, 0
    for j in range(t0, q):
        if not _is_flag_char(buf[j]):
            return st, 0, False, 0
    while q < le and buf[q] == 32:
        q += 1
    return _stamp(buf, q, le, nb), cpu, True, q


@kernel(inline="always")
def _task(buf, ls, bracket, fmt, counts):
    """comm, pid and tgid from the text of the line before its CPU column at ``bracket``."""
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
            return _Task(False, 0, 0, 0, -1, False, 0)
        tv = 0
        digits = 0
        for j in range(o + 1, r - 1):
            c = buf[j]
            if is_digit(c) and tv <= PID_SATURATED:  # saturates: out of range, not wrapped (block.py)
                tv = tv * 10 + (c - 48)
                digits += 1
        tgid = tv if digits > 0 else -1
        tgid_seen = True
        counts[LINES_TGID] += 1
        r = o
        while r > ls and buf[r - 1] == 32:
            r -= 1
    d = r
    while d > ls and is_digit(buf[d - 1]):
        d -= 1
    if d == r or d == ls:
        return _Task(False, 0, 0, 0, -1, False, 0)
    pid = 0
    for j in range(d, r):
        if pid <= PID_SATURATED:  # saturates: out of range, not wrapped (block.py)
            pid = pid * 10 + (buf[j] - 48)
    sep = buf[d - 1]
    if sep == 47:  # perf "pid/tid": the tid is what ftrace calls pid
        d2 = d - 1
        while d2 > ls and is_digit(buf[d2 - 1]):
            d2 -= 1
        if d2 == d - 1 or d2 == ls:
            return _Task(False, 0, 0, 0, -1, False, 0)
        d = d2
        sep = buf[d - 1]
    comm_e = d - 1
    if sep == 45:  # '-'
        if fmt == FMT_PERF:
            return _Task(False, 0, 0, 0, -1, False, 0)
        sepc = LINES_DASH
    elif sep == 32 or sep == 9:
        if fmt == FMT_FTRACE:
            return _Task(False, 0, 0, 0, -1, False, 0)
        sepc = LINES_SPACE
        while comm_e > ls and (buf[comm_e - 1] == 32 or buf[comm_e - 1] == 9):
            comm_e -= 1
    else:
        return _Task(False, 0, 0, 0, -1, False, 0)
    counts[sepc] += 1
    comm_s = ls
    while comm_s < comm_e and (buf[comm_s] == 32 or buf[comm_s] == 9):
        comm_s += 1
    return _Task(True, comm_s, comm_e, pid, tgid, tgid_seen, sepc)


@kernel(inline="always")
def parse_header(buf, ls, le, nb, fmt, tmpl, counts):
    """The header of the line buf[ls:le]: (:data:`Header`, the template for the next line).

    Counts blank, comment, tgid and separator lines into ``counts``.
    """
    if tmpl.length > 0 and le - ls > tmpl.length and same(buf, ls, tmpl.start, tmpl.length, nb):
        st = _stamp(buf, ls + tmpl.length, le, nb)
        if st.ok:
            if tmpl.tgid_seen:
                counts[LINES_TGID] += 1
            counts[tmpl.sep] += 1
            h = Header(HEADER_EVENT, tmpl.cpu, tmpl.flags, st.ts, st.nd, st.name_s, st.name_e, st.pay_s,
                       ls + tmpl.comm_s, ls + tmpl.comm_e, tmpl.pid, tmpl.tgid)  # fmt: skip
            return h, tmpl
    i = ls
    while i < le and (buf[i] == 32 or buf[i] == 9):
        i += 1
    if i == le:
        counts[LINES_BLANK] += 1
        return _no_header(HEADER_BLANK), tmpl
    if buf[i] == 35:  # '#'
        counts[LINES_COMMENT] += 1
        return _no_header(HEADER_COMMENT), tmpl
    p = i
    first = True  # the first candidate parsed: this line can be the next template
    st, cpu, flags, t0 = _Stamp(False, 0, 0, 0, 0, 0), 0, False, 0
    while p < le:
        if buf[p] != 91 or p == ls or buf[p - 1] != 32:  # '[' after ' '
            p += 1
            continue
        st, cpu, flags, t0 = _after_cpu(buf, p, le, nb)
        if st.ok:
            break
        first = False
        p += 1
    if p >= le:
        return _no_header(HEADER_UNRECOGNISED), tmpl
    tk = _task(buf, ls, p, fmt, counts)
    if not tk.ok:
        return _no_header(HEADER_UNRECOGNISED), tmpl
    if first:
        tmpl = Template(t0 - ls, ls, cpu, flags, tk.comm_s - ls, tk.comm_e - ls, tk.pid, tk.tgid, tk.tgid_seen, tk.sep)
    h = Header(HEADER_EVENT, cpu, flags, st.ts, st.nd, st.name_s, st.name_e, st.pay_s, tk.comm_s, tk.comm_e, tk.pid,
               tk.tgid)  # fmt: skip
    return h, tmpl
