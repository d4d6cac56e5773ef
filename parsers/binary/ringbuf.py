"""The ftrace ring-buffer sub-buffers ("pages") of a trace.dat, decoded with numpy.

A page is ``u64 timestamp, long commit, data[commit & COMMIT_MASK]``; the data is a chain of
records, each starting with a u32 ``type_len:5, time_delta:27`` (little-endian bit order; the
other way round on big-endian kernels):

========  ============================================  ==========================================
type_len  record                                        timestamp
========  ============================================  ==========================================
1..28     data, ``4 * type_len`` payload bytes at +4    ``ts += delta``
0         data, ``array[0] - 4`` payload bytes at +8    ``ts += delta``
29        padding, ``4 + array[0]`` bytes; with delta   ``ts += delta`` (as libtraceevent does)
          0 the rest of the page is empty
30        time extend, 8 bytes                          ``ts += (array[0] << 27) + delta``
31        absolute time stamp, 8 bytes                  ``ts = (array[0] << 27) + delta`` (59 bits)
========  ============================================  ==========================================

A chain can only be walked record by record, but pages are independent, so the walk runs over
all pages at once: step ``k`` decodes the ``k``-th record of every page that still has one
(a few hundred numpy steps for any number of pages).  Timestamps are then one segmented cumulative
sum (segments restart at each page and at each absolute time stamp).  Flags in ``commit``:
bit 31, events were lost before this page; bit 30, their number is stored as a long right after
the data.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from . import aot
from .kernels import BAD_COMMIT, BAD_HEADER, BAD_OVERRUN, PlanArrays, RingGeo
from .tpformat import Headers

COMMIT_MASK = (1 << 27) - 1
MISSED_EVENTS = 1 << 31
MISSED_STORED = 1 << 30
TS_SHIFT = 27
PAGES_PER_BATCH = 4096


PARALLEL_MIN = 1 << 16  # records: fewer are scanned on one thread (a thread costs more than it saves)


def _scan_compiled(k, buf, starts, page_size, hdr: Headers, le: bool, plan_args: PlanArrays) -> PageScan:
    """The pages counted (``kernels.rb_count``), then scanned into exact row ranges, the two
    halves of the pages on two threads (``kernels.rb_scan_into`` releases the GIL)."""
    rbuf = aot.ro(buf)
    P = aot.ro(starts, np.int64)
    npg = len(P)
    geo = (page_size, hdr.page_ts_size, hdr.commit_offset, hdr.commit_size, hdr.data_offset, le)
    per_page = k.rb_count(rbuf, P, *geo) if npg else np.zeros(0, np.int64)
    n = int(per_page.sum())
    out = aot.rb_outputs(n, plan_args.plan.shape[1])
    page_lost = np.full(npg, -1, np.int64)
    h = npg // 2 if n >= PARALLEL_MIN else npg
    ranges = [(0, h), (h, npg)] if 0 < h < npg else [(0, npg)]
    res: list = [None] * len(ranges)

    def run(j: int) -> None:
        lo, hi = ranges[j]
        bad_j = np.full((max(hi - lo, 1), 3), -1, np.int64)
        counts_j = np.zeros(3, np.int64)
        try:
            _rows, nbad = k.rb_scan_into(rbuf, P, lo, hi, int(per_page[:lo].sum()), RingGeo(*geo, hdr.long_size),
                                         plan_args, out, page_lost, bad_j, counts_j)
            res[j] = (bad_j[:nbad], counts_j)
        except BaseException as e:  # noqa: BLE001 - re-raised on the calling thread
            res[j] = e

    threads = [threading.Thread(target=run, args=(j,), name="pagereplay-rb-scan") for j in range(1, len(ranges))]
    for t in threads:
        t.start()
    try:
        run(0)
    finally:
        for t in threads:
            t.join()
    for r in res:
        if isinstance(r, BaseException):
            raise r
    pos, length, ts, page, evid, cpid, st, vals = out
    counts = sum((r[1] for r in res), np.zeros(3, np.int64))
    bad = [(int(a), int(b), int(c)) for r in res for a, b, c in r[0].tolist()]
    c = {"pages": len(starts), "padding": int(counts[0]), "time_extend": int(counts[1]),
         "time_stamp": int(counts[2]), "records": len(pos)}
    page_first = np.searchsorted(page, np.arange(len(starts)), side="left").astype(np.int64)
    return PageScan(pos, length, ts, page, page_first, page_lost, c, bad, (evid, cpid, st, vals))


@dataclass
class PageScan:
    """Data records of a set of pages, in page order then record order."""

    pos: np.ndarray  # int64 payload offset in the buffer
    length: np.ndarray  # int64 payload bytes
    ts: np.ndarray  # int64 raw timestamp (ring-buffer clock units)
    page: np.ndarray  # int64 index of the page (into the scanned page list)
    page_first: np.ndarray  # int64 index of the first data record of each page (== len if none)
    page_lost: np.ndarray  # int64 per page: -1 none, -2 lost but count not stored, else the count
    counts: dict[str, int] = field(default_factory=dict)
    bad_pages: list[tuple[int, int, int]] = field(default_factory=list)  # (page index, BAD_* code, offset in page)
    decoded: tuple | None = None  # (evid, cpid, st, vals) when the compiled scan decoded the payloads


def bad_reason(code: int, offset: int) -> str:
    if code == BAD_COMMIT:
        return "its commit (data size) is larger than the page"
    if code == BAD_HEADER:
        return f"corrupt record header at page offset {offset}"
    return f"the record at page offset {offset} runs past the page's committed data"


def _gather_u(buf: np.ndarray, pos: np.ndarray, size: int, le: bool) -> np.ndarray:
    """The unsigned ``size``-byte integers at byte offsets ``pos`` (any alignment), as int64."""
    out = np.zeros(pos.shape, np.uint64)
    for i in range(size):
        b = buf[pos + i].astype(np.uint64)
        sh = np.uint64(8 * i if le else 8 * (size - 1 - i))
        out |= b << sh
    return out.view(np.int64)


def scan_pages(buf: np.ndarray, starts: np.ndarray, page_size: int, hdr: Headers, le: bool = True,
               compiled: bool = True, plan_args: PlanArrays | None = None) -> PageScan:
    """Decode every page that starts at ``starts`` (byte offsets into ``buf``, a uint8 array).

    With the compiled kernels and ``plan_args`` (``table.Plan.args()``), the payloads are
    decoded in the same pass: ``PageScan.decoded`` = (evid, cpid, st, vals).
    """
    starts = np.asarray(starts, np.int64)
    if len(starts) and (int(starts.min()) < 0 or int(starts.max()) + page_size > len(buf)):
        raise ValueError("a page outside the buffer")
    k = aot.get() if compiled and plan_args is not None else None
    if k is not None:
        return _scan_compiled(k, buf, starts, page_size, hdr, le, plan_args)  # type: ignore[arg-type]
    parts: list[tuple[np.ndarray, ...]] = []
    page_lost = np.full(len(starts), -1, np.int64)
    counts = {"pages": len(starts), "padding": 0, "time_extend": 0, "time_stamp": 0, "records": 0}
    bad: list[tuple[int, int, int]] = []
    aligned = le and bool(np.all(starts % 4 == 0)) and hdr.data_offset % 4 == 0
    n32 = len(buf) // 4
    u32v = buf[: n32 * 4].view("<u4") if aligned else None
    for b0 in range(0, len(starts), PAGES_PER_BATCH):
        P = starts[b0 : b0 + PAGES_PER_BATCH]
        res = _scan_batch(buf, u32v, P, page_size, hdr, le, counts, bad, b0)
        pos, length, ts, page, lost = res
        page_lost[b0 : b0 + len(P)] = lost
        parts.append((pos, length, ts, page + b0))
    if parts:
        pos = np.concatenate([p[0] for p in parts])
        length = np.concatenate([p[1] for p in parts])
        ts = np.concatenate([p[2] for p in parts])
        page = np.concatenate([p[3] for p in parts])
    else:
        pos = length = ts = page = np.zeros(0, np.int64)
    page_first = np.searchsorted(page, np.arange(len(starts)), side="left").astype(np.int64)
    counts["records"] = len(pos)
    return PageScan(pos, length, ts, page, page_first, page_lost, counts, sorted(bad))


def _scan_batch(buf, u32v, P, page_size, hdr: Headers, le, counts, bad, b0):
    """The data records of the pages at ``P`` with numpy: (payload offset, length, stamp, page,
    lost per page); bad pages are appended to ``bad`` (page ``b0`` + i, reason, offset)."""
    B = len(P)
    if B == 0:
        z = np.zeros(0, np.int64)
        return z, z, z, z, z
    page_ts, pos, end, lost = _page_heads(buf, P, page_size, hdr, le, bad, b0)
    fast_steps, slow_steps, cur = _walk_steps(buf, u32v, pos, end, le, bad, b0, P)
    # records that run past their page's data: the last one of such a page
    over = np.flatnonzero(cur > end)
    order = _file_order(fast_steps, slow_steps, B, over, P, bad, b0)
    if order is None:
        z = np.zeros(0, np.int64)
        return z, z, z, z, lost
    return (*_records(order, slow_steps, page_ts, le, counts), lost)


def _page_heads(buf, P, page_size, hdr: Headers, le, bad, b0):
    """(page stamps, data start, data end, lost events: -1 none, -2 an unknown number) of the
    pages at ``P``; a commit larger than the page is a bad page (its data taken as empty)."""
    B = len(P)
    page_ts = _gather_u(buf, P, hdr.page_ts_size, le)
    commit = _gather_u(buf, P + hdr.commit_offset, hdr.commit_size, le)
    length = commit & COMMIT_MASK
    data_cap = page_size - hdr.data_offset
    too_long = length > data_cap
    if too_long.any():
        for i in np.flatnonzero(too_long).tolist():
            bad.append((b0 + int(i), BAD_COMMIT, 0))
        length = np.where(too_long, 0, length)
    pos = P + hdr.data_offset
    end = pos + length
    # lost events (flags in commit; the count after the data when stored)
    lost = np.full(B, -1, np.int64)
    missed = (commit & MISSED_EVENTS) != 0
    if missed.any():
        stored = missed & ((commit & MISSED_STORED) != 0) & (length + hdr.long_size <= data_cap)
        lost[missed] = -2
        if stored.any():
            idx = np.flatnonzero(stored)
            lost[idx] = _gather_u(buf, end[idx], hdr.long_size, le)
    return page_ts, pos, end, lost


def _walk_steps(buf, u32v, pos, end, le, bad, b0, P):
    """Walk every page's records at once: (fast steps, slow steps, where each page's walk ended)."""
    nbuf = len(buf)
    # walk: step k reads the k-th record header of every page that has one.  The common case
    # (data records, type_len 1..28) costs a handful of numpy calls per step; the rest is decoded
    # after the walk, over all records at once.
    fast_steps: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (pages, offsets, header words)
    slow_steps: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]] = []  # (+ array[0], step)
    act = np.flatnonzero(pos < end)
    e_act = end[act]
    cur = pos.copy()
    u32n = len(u32v) if u32v is not None else 0
    one = np.uint32(1)
    k = 0
    while act.size:
        p = cur[act]
        if u32v is not None:
            w = u32v[p >> 2]
        else:
            w = _gather_u(buf, np.minimum(p, nbuf - 4), 4, le).astype(np.uint32)
        tl = (w & np.uint32(31)) if le else (w >> np.uint32(27))
        special = (tl - one) > np.uint32(27)  # type_len 0 or > 28 (uint32 wraps 0 - 1)
        if special.any():
            # padding, time extend/stamp or a type_len 0 record: these need array[0]
            if u32v is not None:
                a0 = u32v[np.minimum((p >> 2) + 1, u32n - 1)].astype(np.int64)
            else:
                a0 = _gather_u(buf, np.minimum(p + 4, nbuf - 4), 4, le)
            tli = tl.astype(np.int64)
            delta = (w >> np.uint32(5)) if le else (w & np.uint32(0x7FFFFFF))
            rec = 4 + 4 * tli
            rec = np.where(tli > 29, 8, rec)
            rec = np.where(tli == 0, 4 + ((a0 + 3) & ~3), rec)
            rec = np.where(tli == 29, 4 + a0, rec)
            null_pad = (tli == 29) & (delta == 0)
            broken = ~null_pad & ((((tli == 0) | (tli == 29)) & (a0 < 4)) | ((tli == 29) & ((a0 & 3) != 0)))
            ok = ~(null_pad | broken)
            if broken.any():
                for i in np.flatnonzero(broken).tolist():
                    bad.append((b0 + int(act[i]), BAD_HEADER, int(p[i] - P[act[i]])))
            if not ok.all():
                act, p, w, a0, rec, e_act = (x[ok] for x in (act, p, w, a0, rec, e_act))
            slow_steps.append((act, p, w, a0, k))
            nxt = p + rec
        else:
            fast_steps.append((act, p, w))
            nxt = p + 4 + (tl.astype(np.int64) << 2)
        cur[act] = nxt
        keep = nxt < e_act
        act = act[keep]
        e_act = e_act[keep]
        k += 1
    return fast_steps, slow_steps, cur


def _file_order(fast_steps, slow_steps, B: int, over, P, bad, b0):
    """The walk's steps scattered into page-major (file) order: (positions, header words, array[0],
    slow, page, keep or None, count), or None when there is no record."""
    # scatter the steps into page-major (file) order: a page's k-th entry is in step k
    steps_pages = [st[0] for st in fast_steps] + [st[0] for st in slow_steps]
    cnt = np.bincount(np.concatenate(steps_pages), minlength=B) if steps_pages else np.zeros(B, np.int64)
    n = int(cnt.sum())
    if n == 0:
        return None
    first_entry = np.cumsum(cnt) - cnt
    posf = np.empty(n, np.int64)
    wf = np.empty(n, np.uint32)
    a0f = np.zeros(n, np.int64)
    slowf = np.zeros(n, bool)
    # step numbers: fast steps are numbered in order, skipping the slow ones
    slow_k = {st[4] for st in slow_steps}
    fk = [i for i in range(len(fast_steps) + len(slow_steps)) if i not in slow_k]
    if fast_steps:
        rows_all = np.concatenate([st[0] for st in fast_steps])
        k_all = np.repeat(np.array(fk, np.int64), [len(st[0]) for st in fast_steps])
        idx = first_entry[rows_all] + k_all
        posf[idx] = np.concatenate([st[1] for st in fast_steps])
        wf[idx] = np.concatenate([st[2] for st in fast_steps])
    for rows, sp, sw, sa0, sk in slow_steps:
        idx = first_entry[rows] + sk
        posf[idx] = sp
        wf[idx] = sw
        a0f[idx] = sa0
        slowf[idx] = True
    pagef = np.repeat(np.arange(B, dtype=np.int64), cnt)
    keepf = None
    if over.size:
        keepf = np.ones(n, bool)
        for pg in over.tolist():
            if cnt[pg]:
                last = first_entry[pg] + cnt[pg] - 1
                keepf[last] = False
                bad.append((b0 + pg, BAD_OVERRUN, int(posf[last] - P[pg])))
    return posf, wf, a0f, slowf, pagef, keepf, n


def _records(order, slow_steps, page_ts, le, counts):
    """(payload offset, length, stamp, page) of the data records, from the records in file order:
    time deltas summed within each page, restarting at absolute stamps."""
    posf, wf, a0f, slowf, pagef, keepf, n = order
    tlf = ((wf & np.uint32(31)) if le else (wf >> np.uint32(27))).astype(np.int64)
    delta = ((wf >> np.uint32(5)) if le else (wf & np.uint32(0x7FFFFFF))).astype(np.int64)
    posf_data = posf + 4
    lenf = tlf << 2
    inc = delta
    absf = np.zeros(n, bool)
    if slow_steps:
        sl = slowf
        tls = tlf[sl]
        a0s = a0f[sl]
        ds = delta[sl]
        inc = delta.copy()
        inc[sl] = np.where(tls >= 30, (a0s << TS_SHIFT) + ds, ds)
        absf[sl] = tls == 31
        pd_ = posf_data[sl]
        posf_data[sl] = np.where(tls == 0, pd_ + 4, np.where(tls <= 28, pd_, -1))
        lenf[sl] = np.where(tls == 0, a0s - 4, lenf[sl])
        counts["padding"] += int(np.count_nonzero(tls == 29))
        counts["time_extend"] += int(np.count_nonzero(tls == 30))
        counts["time_stamp"] += int(np.count_nonzero(tls == 31))
    if keepf is not None:
        posf_data = np.where(keepf, posf_data, -1)
    posf = posf_data
    first = np.ones(n, bool)
    first[1:] = pagef[1:] != pagef[:-1]
    mark = first | absf
    add = np.where(absf, 0, inc)
    cs = np.cumsum(add)
    seg_start = np.flatnonzero(mark)
    seg = np.cumsum(mark) - 1
    top = page_ts[pagef[seg_start]] & np.int64(-(1 << 59))  # the bits above the 59 an absolute stamp holds
    seg_base = np.where(absf[seg_start], inc[seg_start] | top, page_ts[pagef[seg_start]])
    seg_off = cs[seg_start] - add[seg_start]
    ts = seg_base[seg] + cs - seg_off[seg]
    dataf = posf >= 0
    return posf[dataf], lenf[dataf], ts[dataf], pagef[dataf]
