"""The binary readers' inner loops, written for numba and compiled ahead of time (``aot.py``).

Touching a record costs a cache miss (perf.data records are ~100 bytes apart in a 40 MB
buffer), so each kernel reads everything the table needs from a record while it is at hand:

* ``rb_count`` then ``rb_scan_into``: every record of every ring-buffer page (trace.dat) with
  its timestamp, and its payload decoded (``_decode_all``), a range of pages per call;
* ``perf_walk``: every perf.data record (offset, type, size);
* ``perf_samples``: for the samples found by the walk, the sample fields (time, cpu, pid/tid,
  where the raw data is) and the raw tracepoint payload decoded, a range of rows per call;
* ``decode``: payloads at given offsets (pipe mode, where the sample layouts are only known
  after a first walk);
* ``comm_of``: each perf.data sample's comm, from the COMM/FORK events replayed before it;
* ``gather``: a fixed-size integer field of many records.

"Decoded" means: the event id (``common_type``), ``common_pid`` and the raw fields the event's
print fmt reads, as listed by a *plan* (per event id: up to F ``(offset, size, signed)``
fields) into ``vals[j, i]``.  ``st[i]`` is 0 when decoded, 1 when the payload is shorter than
the plan's fields, 2 when it is too short for the event header, 3 (perf) when a sample has no
raw data.  The numpy implementations in ``ringbuf``/``perfdata``/``table`` give the same
results and are used when this module is not compiled.  This module is plain Python: it is
only ever run compiled.

The kernels take their arrays in named bundles (a namedtuple is one argument to numba; each
kernel unpacks it at its start): ``RingGeo`` (a ring buffer's page layout), ``PlanArrays`` (the
decode plan), ``SampleLayout`` (how perf.data samples are laid out, per attr), and the rows
filled, ``Records`` (``rb_scan_into``) and ``SampleRows`` (``perf_samples``).
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np

#: a ring buffer's page layout (``tpformat.Headers``): page bytes, the page header's timestamp
#: size, commit field offset and size, data offset, byte order, ``sizeof(long)`` of the traced kernel
RingGeo = namedtuple("RingGeo", ["page_size", "ts_size", "commit_off", "commit_size", "data_off", "le", "long_size"])
#: the decode plan (``table.Plan.args``): the event header's ``common_type`` / ``common_pid``
#: (offset, size) pairs, plan index per event id (-1: none), per plan its (offset, size, signed)
#: fields, their count and the payload bytes they need
PlanArrays = namedtuple("PlanArrays", ["hdr", "id2plan", "plan", "plan_nf", "plan_need"])
#: the rows ``rb_scan_into`` fills per record: payload offset and length, timestamp, page index, decoded
Records = namedtuple("Records", ["pos", "length", "ts", "page", "evid", "cpid", "st", "vals"])
#: where a perf.data sample's fields are: the id's position (-1: no id), the sorted ids and their
#: attr index, per attr its sample_type, read_format and fixed layout (``perfsamples._fixed_layout``)
SampleLayout = namedtuple("SampleLayout", ["idpos", "id_sorted", "id_attr", "attr_st", "attr_rf", "attr_fix"])
#: the rows ``perf_samples`` fills per sample: its fields, where its raw data is, its attr, decoded
SampleRows = namedtuple("SampleRows", ["time", "cpu", "pid", "tid", "pos", "len", "attr", "evid", "cpid", "st",
                                       "vals"])

TS_SHIFT = 27
COMMIT_MASK = (1 << 27) - 1
MISSED_EVENTS = 1 << 31
MISSED_STORED = 1 << 30
TOP_MASK = -(1 << 59)

# bad-page reasons (rb_scan_into)
BAD_COMMIT = 1  # commit larger than the page
BAD_HEADER = 2  # a record header that cannot be (array[0] < 4)
BAD_OVERRUN = 3  # a record runs past the committed data

# perf_walk status
WALK_OK = 0
WALK_CUT_HEADER = 1
WALK_BAD_SIZE = 2
WALK_OVERRUN = 3
WALK_FULL = 4  # the output arrays are full: call again from where it stopped

# sample_type / read_format bits
S_IP, S_TID, S_TIME, S_ADDR, S_READ, S_CALLCHAIN, S_ID, S_CPU = 1, 2, 4, 8, 16, 32, 64, 128
S_PERIOD, S_STREAM_ID, S_RAW, S_IDENTIFIER = 256, 512, 1024, 65536
F_ENABLED, F_RUNNING, F_ID, F_GROUP, F_LOST = 1, 2, 4, 8, 16


def _u(buf, p, size, le):
    # unrolled for the usual sizes: numba's code for the generic loop was several times slower
    if le:
        if size == 8:
            return (np.int64(buf[p]) | (np.int64(buf[p + 1]) << 8) | (np.int64(buf[p + 2]) << 16)
                    | (np.int64(buf[p + 3]) << 24) | (np.int64(buf[p + 4]) << 32) | (np.int64(buf[p + 5]) << 40)
                    | (np.int64(buf[p + 6]) << 48) | (np.int64(buf[p + 7]) << 56))
        if size == 4:
            return np.int64(buf[p]) | (np.int64(buf[p + 1]) << 8) | (np.int64(buf[p + 2]) << 16) | (np.int64(buf[p + 3]) << 24)
        if size == 2:
            return np.int64(buf[p]) | (np.int64(buf[p + 1]) << 8)
        if size == 1:
            return np.int64(buf[p])
    v = np.int64(0)
    if le:
        for i in range(size):
            v |= np.int64(buf[p + i]) << (8 * i)
    else:
        for i in range(size):
            v = (v << 8) | np.int64(buf[p + i])
    return v


def _sext(v, size):
    if size >= 8:
        return v
    sh = 64 - 8 * size
    return (v << sh) >> sh


def _decode_all(buf, pos, length, le, pa, lo, hi, evid, cpid, st, vals):
    """Decode the payloads ``pos[i]`` (``length[i]`` bytes) of rows ``lo <= i < hi`` by the plan ``pa``."""
    hdr, id2plan, plan, plan_nf, plan_need = pa
    h0 = hdr[0]
    h1 = hdr[1]
    h2 = hdr[2]
    h3 = hdr[3]
    nid = len(id2plan)
    for i in range(lo, hi):
        p = pos[i]
        plen = length[i]
        if p < 0 or plen < h0 + h1 or plen < h2 + h3:
            evid[i] = -1
            cpid[i] = 0
            st[i] = 3 if p == -2 else 2
            continue
        e = _u(buf, p + h0, h1, le)
        evid[i] = e
        c = _u(buf, p + h2, h3, le)
        if h3 < 8:
            c = (c << (64 - 8 * h3)) >> (64 - 8 * h3)
        cpid[i] = c
        st[i] = 0
        if e < 0 or e >= nid:
            continue
        pi = id2plan[e]
        if pi < 0:
            continue
        if plen < plan_need[pi]:
            st[i] = 1
            continue
        for j in range(plan_nf[pi]):
            size = plan[pi, j, 1]
            v = _u(buf, p + plan[pi, j, 0], size, le)
            if plan[pi, j, 2] and size < 8:
                v = (v << (64 - 8 * size)) >> (64 - 8 * size)
            vals[j, i] = v


def _page(buf, start, page_size, ts_size, commit_off, commit_size, data_off, le, out_pos, out_len, out_ts,
          out_page, k, page_index, counts):
    """Walk one page, filling rows from ``k``; returns (records, bad reason, bad offset in page)."""
    ts = _u(buf, start, ts_size, le)
    commit = _u(buf, start + commit_off, commit_size, le)
    length = commit & np.int64(COMMIT_MASK)
    if length > page_size - data_off:
        return 0, BAD_COMMIT, 0
    p = start + data_off
    e = p + length
    nrec = 0
    while p < e:
        w = _u(buf, p, 4, le)  # (p + 4 <= the page's end: records keep 4-byte alignment)
        if le:
            tl = w & 31
            delta = w >> 5
        else:
            tl = w >> 27
            delta = w & 0x7FFFFFF
        a0 = np.int64(0)
        if (tl == 0 or tl > 28) and p + 8 <= len(buf):
            a0 = _u(buf, p + 4, 4, le)
        if tl == 29 and delta == 0:
            return nrec, 0, 0  # the rest of the page is empty
        if (tl == 0 or tl == 29) and a0 < 4 or tl == 29 and (a0 & 3) != 0:
            return nrec, BAD_HEADER, p - start
        if tl == 0:
            rec = 4 + ((a0 + 3) & ~np.int64(3))
        elif tl <= 28:
            rec = 4 + 4 * tl
        elif tl == 29:
            rec = 4 + a0
        else:
            rec = np.int64(8)
        if p + rec > e:
            return nrec, BAD_OVERRUN, p - start
        if tl <= 28:
            ts += delta
            r = k + nrec
            if tl == 0:
                q = p + 8
                ql = a0 - 4
            else:
                q = p + 4
                ql = 4 * tl
            out_pos[r] = q
            out_len[r] = ql
            out_ts[r] = ts
            out_page[r] = page_index
            nrec += 1
        elif tl == 29:
            ts += delta
            counts[0] += 1
        elif tl == 30:
            ts += (a0 << TS_SHIFT) + delta
            counts[1] += 1
        else:
            ts = ((a0 << TS_SHIFT) + delta) | (ts & np.int64(TOP_MASK))
            counts[2] += 1
        p += rec
    return nrec, 0, 0


def rb_count(buf, starts, page_size, ts_size, commit_off, commit_size, data_off, le):
    """The data records of each page at ``starts`` (the rows ``rb_scan_into`` writes for it), so
    that threads can fill exact, disjoint row ranges."""
    npg = len(starts)
    m = page_size // 8 + 1  # (a data record takes at least 8 bytes: a page's rows fit the scratch)
    s_pos = np.empty(m, np.int64)
    s_len = np.empty(m, np.int32)
    s_ts = np.empty(m, np.int64)
    s_page = np.empty(m, np.int32)
    counts = np.zeros(3, np.int64)
    out = np.empty(npg, np.int64)
    for i in range(npg):
        r, _b, _o = _page(buf, starts[i], page_size, ts_size, commit_off, commit_size, data_off, le, s_pos, s_len,
                          s_ts, s_page, 0, i, counts)
        out[i] = r
    return out


def rb_scan_into(buf, starts, lo, hi, row0, geo, pa, rec, page_lost, bad, counts):
    """The data records of pages ``lo <= i < hi`` (``geo``: a ``RingGeo``) into the ``Records``
    ``rec`` from row ``row0`` (``rb_count`` gives each page's rows), decoded by the plan ``pa``;
    ``page_lost[i]`` set, bad pages listed in ``bad`` (page, reason, offset in page), padding /
    time extends / time stamps counted in ``counts``.  Returns (rows, bad pages).  The GIL is
    released: two threads fill two page ranges."""
    page_size, ts_size, commit_off, commit_size, data_off, le, long_size = geo
    out_pos, out_len, out_ts, out_page, evid, cpid, st, vals = rec
    nbad = 0
    k = row0
    for i in range(lo, hi):
        s = starts[i]
        r, b, o = _page(buf, s, page_size, ts_size, commit_off, commit_size, data_off, le, out_pos, out_len,
                        out_ts, out_page, k, i, counts)
        k += r
        if b != 0:
            bad[nbad, 0] = i
            bad[nbad, 1] = b
            bad[nbad, 2] = o
            nbad += 1
        commit = _u(buf, s + commit_off, commit_size, le)
        if commit & np.int64(MISSED_EVENTS):
            length = commit & np.int64(COMMIT_MASK)
            page_lost[i] = -2
            if (commit & np.int64(MISSED_STORED)) and length + long_size <= page_size - data_off:
                page_lost[i] = _u(buf, s + data_off + length, long_size, le)
    _decode_all(buf, out_pos, out_len, le, pa, row0, k, evid, cpid, st, vals)
    return k - row0, nbad


def _attr_of(buf, q, size, le, idpos, id_sorted, id_attr):
    """The attr index of the sample at ``q`` (by its id; 0 when the samples carry none)."""
    if idpos < 0:
        return 0
    if 16 + idpos > size:
        return -1
    sid = _u(buf, q + 8 + idpos, 8, le)
    if len(id_sorted) == 1 and id_sorted[0] == -1:  # small ids: ``id_attr`` is indexed by the id itself
        if 0 <= sid < len(id_attr):
            return id_attr[sid]
        return -1
    lo = 0
    hi = len(id_sorted)
    while lo < hi:
        mid = (lo + hi) // 2
        if id_sorted[mid] < sid:
            lo = mid + 1
        else:
            hi = mid
    if lo < len(id_sorted) and id_sorted[lo] == sid:
        return id_attr[lo]
    return -1


def _sample(buf, q, size, le, stype, rf):
    """(ok, pid, tid, time, cpu, raw pos, raw len) of the sample record at ``q`` (``size`` bytes)."""
    end = q + size
    p = q + 8
    pid = -1
    tid = -1
    tm = 0
    cpu = 0
    if stype & S_IDENTIFIER:
        p += 8
    if stype & S_IP:
        p += 8
    if stype & S_TID:
        if p + 8 > end:
            return False, pid, tid, tm, cpu, -1, 0
        pid = _sext(_u(buf, p, 4, le), 4)
        tid = _sext(_u(buf, p + 4, 4, le), 4)
        p += 8
    if stype & S_TIME:
        if p + 8 > end:
            return False, pid, tid, tm, cpu, -1, 0
        tm = _u(buf, p, 8, le)
        p += 8
    if stype & S_ADDR:
        p += 8
    if stype & S_ID:
        p += 8
    if stype & S_STREAM_ID:
        p += 8
    if stype & S_CPU:
        if p + 8 > end:
            return False, pid, tid, tm, cpu, -1, 0
        cpu = _u(buf, p, 4, le)
        p += 8
    if stype & S_PERIOD:
        p += 8
    if stype & S_READ:
        if rf & F_GROUP:
            if p + 8 > end:
                return False, pid, tid, tm, cpu, -1, 0
            nr = _u(buf, p, 8, le)
            per = 8 * (1 + (1 if rf & F_ID else 0) + (1 if rf & F_LOST else 0))
            if nr < 0 or nr > (1 << 16):
                return False, pid, tid, tm, cpu, -1, 0
            p += 8 + 8 * ((1 if rf & F_ENABLED else 0) + (1 if rf & F_RUNNING else 0)) + nr * per
        else:
            p += 8 * (1 + (1 if rf & F_ENABLED else 0) + (1 if rf & F_RUNNING else 0) + (1 if rf & F_ID else 0)
                      + (1 if rf & F_LOST else 0))
    if stype & S_CALLCHAIN:
        if p + 8 > end:
            return False, pid, tid, tm, cpu, -1, 0
        nr = _u(buf, p, 8, le)
        if nr < 0 or nr > (1 << 16):
            return False, pid, tid, tm, cpu, -1, 0
        p += 8 + 8 * nr
    if not stype & S_RAW:
        return True, pid, tid, tm, cpu, -2, 0
    if p + 4 > end:
        return False, pid, tid, tm, cpu, -1, 0
    rsz = _u(buf, p, 4, le)
    if p + 4 + rsz > end:
        return False, pid, tid, tm, cpu, -1, 0
    return True, pid, tid, tm, cpu, p + 4, rsz


def perf_walk(buf, start, end, le, cap):
    """Records of ``buf[start:end]`` (at most ``cap``): (status, stop, n, rec_off, rec_type, rec_size),
    the first n rows set; status WALK_FULL: call again from ``stop``."""
    # (narrow types where they hold: the first touch of fresh memory costs as much as the walk)
    rec_off = np.empty(cap, np.int64)
    rec_type = np.empty(cap, np.int32)
    rec_size = np.empty(cap, np.int32)
    p = start
    n = 0
    status = np.int64(WALK_OK)
    while p < end:
        if n >= cap:
            status = np.int64(WALK_FULL)
            break
        if p + 8 > end:
            status = np.int64(WALK_CUT_HEADER)
            break
        typ = _u(buf, p, 4, le)
        size = _u(buf, p + 6, 2, le)
        if size < 8:
            status = np.int64(WALK_BAD_SIZE)
            break
        nxt = p + size
        if typ == 71 and p + 16 <= end:  # AUXTRACE: its data follows the record
            nxt += _u(buf, p + 8, 8, le)
        elif typ == 66 and p + 12 <= end:  # pipe-mode HEADER_TRACING_DATA: so does the tracing data
            nxt += _u(buf, p + 8, 4, le)
        if nxt > end:
            status = np.int64(WALK_OVERRUN)
            break
        rec_off[n] = p
        rec_type[n] = typ
        rec_size[n] = size
        n += 1
        p = nxt
    return status, p, n, rec_off, rec_type, rec_size


def perf_samples(buf, s_off, lo, hi, le, lay, pa, rows):
    """Samples ``lo <= i < hi`` (records at ``s_off[i]``, found by ``perf_walk``; ``lay``: a
    ``SampleLayout``): their fields and raw payloads decoded by the plan ``pa`` into row i of the
    ``SampleRows`` ``rows``.  The GIL is released: two threads fill two halves (the first touch
    of the output pages shared out too).

    ``attr_fix[a]``: for an attr whose samples have a fixed layout (no READ group, no CALLCHAIN),
    the offsets in the record of {pid, tid}, time, cpu and the raw size (-1: absent) and the
    smallest record that holds them (0: not fixed, decoded field by field by ``_sample``).
    (Written out here, not in a helper: numba's code for an inlined helper with these arrays
    was twice as slow.)
    """
    idpos, id_sorted, id_attr, attr_st, attr_rf, attr_fix = lay
    s_time, s_cpu, s_pid, s_tid, s_pos, s_len, s_attr, evid, cpid, st, vals = rows
    done = lo
    for i in range(lo, hi):
        p = s_off[i]
        size = _u(buf, p + 6, 2, le)
        a = _attr_of(buf, p, size, le, idpos, id_sorted, id_attr)
        s_attr[i] = a
        if a >= 0 and attr_fix[a, 4] > 0:
            v_pid = -1
            v_tid = -1
            v_tm = 0
            v_cpu = 0
            v_pos = -1
            v_len = 0
            if size >= attr_fix[a, 4]:
                o = attr_fix[a, 0]
                if o >= 0:
                    v_pid = _sext(_u(buf, p + o, 4, le), 4)
                    v_tid = _sext(_u(buf, p + o + 4, 4, le), 4)
                o = attr_fix[a, 1]
                if o >= 0:
                    v_tm = _u(buf, p + o, 8, le)
                o = attr_fix[a, 2]
                if o >= 0:
                    v_cpu = _u(buf, p + o, 4, le)
                o = attr_fix[a, 3]
                if o < 0:
                    v_pos = -2
                else:
                    rsz = _u(buf, p + o, 4, le)
                    if o + 4 + rsz <= size:
                        v_pos = p + o + 4
                        v_len = rsz
        elif a >= 0:
            _ok, v_pid, v_tid, v_tm, v_cpu, v_pos, v_len = _sample(buf, p, size, le, attr_st[a], attr_rf[a])
        else:
            v_pid, v_tid, v_tm, v_cpu, v_pos, v_len = -1, -1, 0, 0, -1, 0
        s_pid[i] = v_pid
        s_tid[i] = v_tid
        s_time[i] = v_tm
        s_cpu[i] = v_cpu
        s_pos[i] = v_pos
        s_len[i] = v_len
        if i + 1 - done >= 64:
            _decode_all(buf, s_pos, s_len, le, pa, done, i + 1, evid, cpid, st, vals)
            done = i + 1  # (decoded while their records are still in the cache)
    _decode_all(buf, s_pos, s_len, le, pa, done, hi, evid, cpid, st, vals)
    return hi - lo


def decode(buf, pos, length, le, pa):
    """Payloads at ``pos`` (-1: none, -2: a sample without raw data) decoded by the plan ``pa``:
    (evid, cpid, st, vals)."""
    n = len(pos)
    evid = np.empty(n, np.int32)
    cpid = np.empty(n, np.int32)
    st = np.empty(n, np.int8)
    vals = np.empty((pa.plan.shape[1], n), np.int64)
    _decode_all(buf, pos, length, le, pa, 0, n, evid, cpid, st, vals)
    return evid, cpid, st, vals


def comm_of(s_ts, s_rec, s_tid, ev_time, ev_rec, ks, kcomm, stride):
    """Each sample's comm id (-1: none): that of the last COMM/FORK event of its thread replayed
    before it in (time, record) order (``perfcomm.resolve_comms``).  ``ev_time``/``ev_rec``: the
    events in replay order; ``ks``: sorted keys ``tid * stride + event index``, ``kcomm`` their
    comm ids."""
    n = len(s_ts)
    ne = len(ev_time)
    nk = len(ks)
    out = np.empty(n, np.int32)
    for i in range(n):
        t = s_ts[i]
        r = s_rec[i]
        lo = 0
        hi = ne
        while lo < hi:  # j: the events ordered before the sample
            mid = (lo + hi) // 2
            if ev_time[mid] < t or (ev_time[mid] == t and ev_rec[mid] < r):
                lo = mid + 1
            else:
                hi = mid
        out[i] = -1
        if lo == 0:
            continue
        tid = np.int64(s_tid[i])
        key = tid * stride + (lo - 1)
        lo = 0
        hi = nk
        while lo < hi:  # the last key <= key: the thread's last event before j, if it is the thread's
            mid = (lo + hi) // 2
            if ks[mid] <= key:
                lo = mid + 1
            else:
                hi = mid
        if lo > 0 and ks[lo - 1] // stride == tid:
            out[i] = kcomm[lo - 1]
    return out


def gather(buf, pos, size, signed, le):
    """The ``size``-byte integers at ``pos``: sign-extended if ``signed``, else zero-extended
    (8-byte values are their int64 bit pattern either way)."""
    n = len(pos)
    out = np.empty(n, np.int64)
    for i in range(n):
        v = _u(buf, pos[i], size, le)
        if signed:
            v = _sext(v, size)
        out[i] = v
    return out
