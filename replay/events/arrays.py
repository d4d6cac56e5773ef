"""The boundary between the canonical table and the model: flat event columns (``EventArrays``).

The event codes the kernels switch on (``EV_*``, the integers of ``parsers.schema.Event``), the
columns the loops read (nulls as -1), and the per-event marks the model needs from the whole
trace: deferred frees (``mark_deferred_frees``) and ``__free_pages_core`` frees.  The compiled
loops take the columns as one named bundle, ``Trace`` (``trace_of``).
"""

from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from parsers.schema import EVENT_BY_NAME, Event, UntracedEvent
from replay.events.columns import ChunkedColumn, column_values, dictionary_map, event_table, read_event_columns
from replay.jit import kernel_entry

EV_ALLOC = int(Event.MM_PAGE_ALLOC)
EV_ZL = int(Event.MM_PAGE_ALLOC_ZONE_LOCKED)
EV_FREE = int(Event.MM_PAGE_FREE)
EV_BATCHED = int(Event.MM_PAGE_FREE_BATCHED)
EV_DRAIN = int(Event.MM_PAGE_PCPU_DRAIN)
EV_EXTFRAG = int(Event.MM_PAGE_ALLOC_EXTFRAG)


@dataclass
class EventArrays:
    """Flat columns the loop reads (nulls as -1)."""

    ev: np.ndarray
    ts: np.ndarray
    cpu: np.ndarray
    pfn: np.ndarray
    order: np.ndarray
    mt: np.ndarray
    refill: np.ndarray
    fb_order: np.ndarray
    fb_mt: np.ndarray
    chown: np.ndarray
    gfp: np.ndarray
    seq: Any  # np.ndarray, or a columns.ChunkedColumn / AffineRuns (read at rows only)
    deferred: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))
    #: per page index: the first event touching it (-1: none), from the initial-state pass
    first: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.ev)


#: the event columns the compiled loops read, as one argument (a namedtuple of arrays, like
#: ``replay.model.state.ModelState``): ``EventArrays``' fields in their order, without ``fb_mt``
#: (only the initial-state pass reads it) and ``seq`` (only the result tables read it)
Trace = namedtuple("Trace", ["ev", "ts", "cpu", "pfn", "order", "mt", "refill", "fb_order", "chown", "gfp",
                             "deferred", "first"])


def trace_of(ea: EventArrays) -> Trace:
    """The ``Trace`` of an ``EventArrays`` (the same arrays, not copies)."""
    return Trace(*(getattr(ea, f) for f in Trace._fields))


def _col(table: pa.Table, name: str, dtype: Any, null: int, writable: bool = True) -> np.ndarray:
    """A ``dtype`` column, nulls as ``null`` (one pass: ``replay.events.columns``; gfp masks fit in 63 bits).

    ``writable=False``: a read-only zero-copy view when the column has no nulls and the type.
    """
    return column_values(table, name, dtype, null, writable=writable)


def seq_column(table: pa.Table) -> Any:
    """The ``seq`` column: only the results tables read it, at the rows they keep; several
    chunks (a Parquet file's row groups) stay as they are (``columns.ChunkedColumn``)."""
    col = table.column("seq")
    if col.num_chunks <= 1:
        return _col(table, "seq", np.int64, 0, writable=False)
    return ChunkedColumn(col, np.int64, 0)


#: the untraced kprobe rows' codes (``parsers.schema.UntracedEvent``): exact mode applies them
#: (``replay.model.untraced``); lock contention rows stay -1 (never replayed)
UNTRACED_BY_NAME: dict[str, int] = {e.tracepoint: int(e) for e in UntracedEvent}
EV_UNTRACED0 = int(min(UntracedEvent))


def _event_code(name: str) -> int:
    if name in EVENT_BY_NAME:
        return int(EVENT_BY_NAME[name])
    return UNTRACED_BY_NAME.get(name, -1)


def event_codes(table: pa.Table) -> np.ndarray:
    """``Event`` codes of the ``event`` column, whatever its dictionary order (the untraced kprobe
    events: their ``UntracedEvent`` codes; any other name: -1)."""
    return dictionary_map(table, "event", _event_code, np.int8, -1)


def event_arrays(table: pa.Table, *, with_gfp: bool = True) -> EventArrays:
    """The canonical table as flat columns, plus the deferred-free marks.

    ``with_gfp=False`` (exact mode: the trace places every page, no zonelist to walk): the gfp
    masks are not read and ``gfp`` is a one-element stand-in."""
    if not with_gfp:
        gfp = np.full(1, -1, np.int64)
    elif "gfp_mask" in table.column_names:
        gfp = _col(table, "gfp_mask", np.int64, -1)
    else:
        gfp = np.full(table.num_rows, -1, np.int64)
    ea = EventArrays(
        ev=event_codes(table),
        ts=_col(table, "ts_ns", np.int64, 0, writable=False),  # the loop never writes an event column
        cpu=_col(table, "cpu", np.int32, 0, writable=False),
        pfn=_col(table, "pfn", np.int64, -1),  # written below (failed allocations)
        order=_col(table, "order", np.int8, 0, writable=False),
        mt=_col(table, "migratetype", np.int8, -1),
        refill=_col(table, "percpu_refill", np.int8, -1),
        fb_order=_col(table, "fallback_order", np.int8, -1),
        fb_mt=_col(table, "fallback_migratetype", np.int8, -1),
        chown=_col(table, "change_ownership", np.int8, -1),
        gfp=gfp,
        seq=seq_column(table),
    )
    return _finish_event_arrays(ea, _col(table, "failed", np.int8, 0), table)


@kernel_entry(nrt=False)
def clear_pfns(pfn: np.ndarray, failed: np.ndarray, ev: np.ndarray, out: np.ndarray) -> None:
    """pfn -1 for failed allocations and unknown events; ``out`` = [valid count, min, max]."""
    cnt = 0
    lo = np.int64(1) << 62
    hi = np.int64(-1)
    for k in range(pfn.shape[0]):
        if failed[k] != 0 or ev[k] < 0:
            pfn[k] = -1
        p = pfn[k]
        if p >= 0:
            cnt += 1
            lo = min(lo, p)
            hi = max(hi, p)
    out[0] = cnt
    out[1] = lo
    out[2] = hi


@kernel_entry(nrt=False)
def pfn_bounds(pfn: np.ndarray, out: np.ndarray) -> None:
    """``out`` = [lowest pfn above 0 (-1: none), highest pfn] (nulls as -1)."""
    lo = np.int64(-1)
    hi = np.int64(-1)
    for k in range(pfn.shape[0]):
        p = pfn[k]
        if p > 0 and (lo < 0 or p < lo):
            lo = p
        hi = max(hi, p)
    out[0] = lo
    out[1] = hi


def _finish_event_arrays(ea: EventArrays, failed: np.ndarray, table: pa.Table) -> EventArrays:
    """No pfn for failed allocations and unknown events; the deferred-free and
    ``__free_pages_core`` marks (``table``: its ``comm`` column)."""
    rng = np.zeros(3, np.int64)  # valid pfns: count, min, max
    clear_pfns(ea.pfn, failed, ea.ev, rng)
    ea.deferred = mark_deferred_frees(ea.ev, ea.pfn, rng=(int(rng[0]), int(rng[1]), int(rng[2])))
    core = free_pages_core_mask(table)
    if core.any():
        ea.deferred[core & (ea.ev == EV_FREE)] |= FL_FREE_CORE
    return ea


def event_arrays_from_parquet(path: Any, *, with_gfp: bool = True
                              ) -> tuple[EventArrays, pa.Table, tuple[int | None, int]]:
    """``event_arrays`` of a Parquet event table (``parsers.schema``), read straight into the
    flat columns (``replay.events.columns.read_event_columns``: no table-sized Arrow copy first).

    Returns the arrays, the ``columns.TABLE_COLUMNS`` as an Arrow table, and the pfn range (see
    ``event_arrays_from_columns``)."""
    c, names = read_event_columns(path, with_gfp=with_gfp)
    table = event_table(c, names)
    ea, bounds = event_arrays_from_columns(c, table, with_gfp=with_gfp)
    return ea, table, bounds


def event_arrays_from_columns(c: dict[str, Any], table: pa.Table, *, with_gfp: bool = True
                              ) -> tuple[EventArrays, tuple[int | None, int]]:
    """``EventArrays`` from ``replay.events.columns.read_event_columns``' flat columns and table; and the
    lowest pfn above 0 (None: no pfn) and the highest of the trace as written (the layout's
    range when no snapshot gives one)."""
    n = table.num_rows
    bounds = np.zeros(2, np.int64)
    pfn_bounds(c["pfn"], bounds)
    gfp = c["gfp_mask"] if "gfp_mask" in c else np.full(n if with_gfp else 1, -1, np.int64)
    ea = EventArrays(ev=c["event"], ts=c["ts_ns"], cpu=c["cpu"], pfn=c["pfn"], order=c["order"], mt=c["migratetype"],
                     refill=c["percpu_refill"], fb_order=c["fallback_order"], fb_mt=c["fallback_migratetype"],
                     chown=c["change_ownership"], gfp=gfp, seq=c["seq"])
    ea = _finish_event_arrays(ea, c["failed"], table)
    return ea, (int(bounds[0]) if bounds[0] > 0 else None, int(bounds[1]))


#: ``EventArrays.deferred`` bits
FL_DEFERRED = 1  # an mm_page_free_batched of the page follows (commit happens there)
FL_FREE_CORE = 2  # __free_pages_core(): straight to the buddy with FPI_TO_TAIL


def free_pages_core_mask(table: pa.Table) -> np.ndarray:
    """Events of the deferred struct-page init threads (``pgdatinit%d``).

    ``deferred_init_memmap()`` hands memory to the buddy with ``__free_pages_core()`` ->
    ``__free_pages_ok(..., FPI_TO_TAIL)``: traced by ``mm_page_free`` but never through
    the per-CPU lists, whatever the order.
    """
    return dictionary_map(table, "comm", lambda n: bool(n) and str(n).startswith("pgdatinit"), bool, False)


def boot_free_core_mask(ea: EventArrays, pageblock_order: int) -> np.ndarray:
    """FL_FREE_CORE for boot-time frees that hand never-used memory to the buddy.

    6.1 ``deferred_init_memmap()`` runs in ``pgdatinit%d`` and in padata helper kworkers
    (``padata_do_multithreaded``); ``deferred_free_range()`` frees aligned pageblocks with
    ``__free_pages_core(page, pageblock_order)`` (and MAX_ORDER-1 blocks from
    ``memblock_free_all``).  A free of a block of at least pageblock order that is the very
    first event on that pfn in a boot trace is taken to be one of these.
    """
    n = len(ea.ev)
    out = np.zeros(n, np.int8)
    valid = np.nonzero(ea.pfn >= 0)[0]
    if len(valid) == 0:
        return out
    _, first = np.unique(ea.pfn[valid], return_index=True)
    k = valid[first]
    hit = k[(ea.ev[k] == EV_FREE) & (ea.order[k] >= pageblock_order)]
    out[hit] = FL_FREE_CORE
    return out


def mark_deferred_frees(ev: np.ndarray, pfn: np.ndarray, rng: tuple[int, int, int] | None = None) -> np.ndarray:
    """1 for each ``mm_page_free`` whose next event on the same pfn is ``mm_page_free_batched``.

    6.1 ``free_unref_page_list()`` runs ``free_unref_page_prepare()`` (which fires
    ``mm_page_free``) over the whole list first and commits each page to the pcp list
    later, firing ``mm_page_free_batched`` (6.12's ``free_unref_folios`` is the same
    two-pass shape).  The page reaches the pcp list at the second event.
    """
    out = np.zeros(len(ev), np.int8)
    if rng is None:  # (count, min, max) of the valid pfns, when the caller has not computed it
        valid = pfn >= 0
        cnt = int(valid.sum())
        rng = (cnt, int(pfn[valid].min()), int(pfn[valid].max())) if cnt else (0, 0, 0)
    if rng[0] < 2:
        return out
    lo = rng[1]
    span = rng[2] - lo + 1
    if span <= max(1 << 26, 4 * len(ev)):
        # last event index per pfn: int32 halves the pages touched (first-touch faults dominate here)
        _mark_deferred(ev, pfn, lo, np.full(span, -1, np.int32 if len(ev) < 2**31 else np.int64), out)
        return out
    valid = pfn >= 0
    idx = np.nonzero(valid)[0]
    o = np.lexsort((idx, pfn[idx]))
    sidx = idx[o]
    sp = pfn[sidx]
    se = ev[sidx]
    hit = (sp[1:] == sp[:-1]) & (se[1:] == EV_BATCHED) & (se[:-1] == EV_FREE)
    out[sidx[:-1][hit]] = 1
    return out


@kernel_entry(nrt=False)
def _mark_deferred(ev: np.ndarray, pfn: np.ndarray, lo: int, last: np.ndarray, out: np.ndarray) -> None:
    for k in range(ev.shape[0]):
        p = pfn[k]
        if p < 0:
            continue
        j = p - lo
        prev = last[j]
        if ev[k] == EV_BATCHED and prev >= 0 and ev[prev] == EV_FREE:
            out[prev] = 1
        last[j] = k
