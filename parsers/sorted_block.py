"""A scanned block's events as Arrow columns in (ts, cpu) order: the worker-thread part of a parse.

``scan_and_prepare`` runs on the parser's thread pool (the compiled scanner releases the GIL):
it scans one block of whole lines (``parsers.scan``), sorts its events by (ts, cpu) and builds
every column that depends on the block alone.  What needs global state (string ids, sequence
numbers, the per-CPU order across blocks, the line accounting) is left to
``parsers.trace_parser.TraceParser``, which takes the blocks in input order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from . import scan as _scan
from .arrow_columns import _bool_column, _column, _nulls
from .schema import ALL_EVENT_NAMES, EVENT_NAMES, Event, event_dictionary

_EVENT_DICT = event_dictionary()
_EVENT_DICT_ALL = event_dictionary(len(ALL_EVENT_NAMES))  # a block with lock contention / untraced rows


def _extra_columns(res: _scan.ScanResult, s: _Reorder) -> dict[str, pa.Array]:
    """``lock_addr``, ``lock_flags``, ``ret``, ``nr_pages`` of a block: null but on its lock contention
    and untraced kprobe rows (``parsers.scan.probes``)."""
    x = res.extras
    n = s.n
    if x.n == 0:
        return {name: _nulls(n, typ) for name, typ in (("lock_addr", pa.uint64()), ("lock_flags", pa.uint32()),
                                                        ("ret", pa.int64()), ("nr_pages", pa.int64()))}
    from .scan.probes import HAVE_FLAGS, HAVE_LOCK, HAVE_NR, HAVE_RET  # (it imports numba: only such blocks need it)

    rows, have = x.row[: x.n], x.have[: x.n]
    out = {}
    for name, bit, vals, typ in (("lock_addr", HAVE_LOCK, x.lock_addr, pa.uint64()),
                                 ("lock_flags", HAVE_FLAGS, x.lock_flags, pa.uint32()),
                                 ("ret", HAVE_RET, x.ret, pa.int64()), ("nr_pages", HAVE_NR, x.nr_pages, pa.int64())):
        full = np.zeros(n, np.int64)
        valid = np.zeros(n, bool)
        full[rows] = vals[: x.n]
        valid[rows] = (have & bit) != 0
        a, v = s(full), s(valid)
        a = a.view(np.uint64) if typ == pa.uint64() else a.astype(np.uint32) if typ == pa.uint32() else a
        out[name] = _column(a, typ, ~v) if v.any() else _nulls(n, typ)
    return out


@dataclass
class SortedBlock:
    """The worker-thread part of a scanned block: its numeric Arrow columns in (ts, cpu) order, and
    what the caller maps to global ids and sequence numbers in input order."""

    perm: np.ndarray | None  # the input row of each sorted row (None: already in order)
    arrays: dict[str, pa.Array]  # the columns that need no global state, sorted
    comm_local: np.ndarray  # ids in the block's comm table, sorted
    gfp_local: np.ndarray  # ids in the block's gfp table (-1: none), sorted
    line_rel: np.ndarray  # line numbers in the block, sorted
    ev_counts: np.ndarray  # events per ``Event`` code
    failed: int  # failed allocations
    frag_fixed: int  # extfrag events whose fragmenting= was recomputed


class _Reorder:
    """Columns of a block in (ts, cpu) order; a column that is all null is not reordered."""

    def __init__(self, perm: np.ndarray | None, n: int) -> None:
        self.perm = perm
        self.n = n

    def __call__(self, a: np.ndarray) -> np.ndarray:
        return a if self.perm is None else a.take(self.perm)  # (take: ~40% faster than a[perm])

    def ints(self, a0: np.ndarray, typ: pa.DataType) -> pa.Array:
        """-1 is null."""
        mask = a0 == -1
        if mask.all():
            return _nulls(self.n, typ)
        a = self(a0)
        return _column(a, typ, a == -1 if mask.any() else None)

    def bools(self, a0: np.ndarray) -> pa.Array:
        """1 is true, -1 null."""
        mask = a0 == -1
        if mask.all():
            return _nulls(self.n, pa.bool_())
        a = self(a0)
        return _bool_column(a == 1, a == -1 if mask.any() else None)


def _time_order(ts: np.ndarray, cpu: np.ndarray) -> np.ndarray | None:
    """The stable permutation that sorts a block's events by (ts, cpu); None when they are in order."""
    n = len(ts)
    perm = np.empty(n, np.int64)
    state = _scan.sort_order(ts, cpu, perm)
    if state == 0:
        return None
    if state == 2:  # far from sorted: the insertion sort gave up
        perm = np.lexsort((np.arange(n), cpu, ts))
    return perm


def _fragmenting(forder: np.ndarray, pborder: np.ndarray, frag: np.ndarray) -> tuple[np.ndarray, int]:
    """``fragmenting`` as the kernel defines it, fallback_order < pageblock_order, and how many
    events printed another value: libtraceevent (trace-cmd report, perf script) cannot evaluate
    pageblock_order and prints the fallback order instead."""
    known = (forder >= 0) & (pborder >= 0)
    if not known.any():
        return frag, 0
    want = np.where(known, (forder < pborder).astype(np.int8), frag)
    return want, int(np.count_nonzero((want != frag) & known))


def scan_and_prepare(arr: np.ndarray, nbytes: int, fmt_code: int) -> tuple[_scan.ScanResult, SortedBlock | None]:
    """Worker-thread part of a block: scan, sort by (ts, cpu), build the numeric Arrow columns.

    Everything here depends on the block alone; what needs global state (string
    ids, seq numbers, per-CPU order across blocks) is done in order by the caller.
    """
    res = _scan.scan_block(arr, nbytes, fmt_code)
    ne = res.n_events
    if ne == 0:
        return res, None
    c = res.events._make(a[:ne] for a in res.events)
    s = _Reorder(_time_order(c.ts, c.cpu), ne)
    # element-wise work is done before reordering
    failed = (c.event == Event.MM_PAGE_ALLOC) & (c.pfn <= 0)
    nfailed = int(np.count_nonzero(failed))
    pfn = np.where(failed, -1, c.pfn) if nfailed else c.pfn
    frag, nfrag_fixed = _fragmenting(c.fallback_order, c.pageblock_order, c.fragmenting)
    arrays = {
        "ts_ns": pa.array(s(c.ts), pa.int64()),
        "cpu": pa.array(s(c.cpu), pa.int32()),
        "pid": pa.array(s(c.pid), pa.int32()),
        "tgid": s.ints(c.tgid, pa.int32()),
        "event": pa.DictionaryArray.from_arrays(pa.array(s(c.event), pa.int8()),
                                                _EVENT_DICT_ALL if res.extras.n else _EVENT_DICT, safe=False),
        "pfn": s.ints(pfn, pa.int64()),
        "order": pa.array(s(c.order), pa.int8()),
        "migratetype": s.ints(c.migratetype, pa.int8()),
        "percpu_refill": s.bools(c.percpu_refill),
        "failed": _bool_column(s(failed)),
        "fallback_order": s.ints(c.fallback_order, pa.int8()),
        "pageblock_order": s.ints(c.pageblock_order, pa.int8()),
        "fallback_migratetype": s.ints(c.fallback_migratetype, pa.int8()),
        "fragmenting": s.bools(frag),
        "change_ownership": s.bools(c.change_ownership),
        "cold": s.bools(c.cold),
        **_extra_columns(res, s),
    }
    ev_counts = np.bincount(c.event, minlength=len(EVENT_NAMES))
    return res, SortedBlock(s.perm, arrays, s(c.comm), s(c.gfp), s(c.line), ev_counts, nfailed, nfrag_fixed)


__all__ = ["SortedBlock", "scan_and_prepare"]
