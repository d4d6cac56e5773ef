"""The replay engine: one sequential loop over flat arrays of the event table.

``replay(table, layout, mode=...)`` turns the canonical event table into flat
NumPy columns, infers the initial state (``replay.model.initial_state``), and runs the
compiled loop (``exact_chunk`` here, ``simulate_chunk`` in ``replay.model.simulate``)
in chunks, checking invariants between chunks when asked.  The loop functions
are plain Python compiled with ``numba.njit(cache=True)``; ``PAGEREPLAY_JIT=0``
runs the very same functions uncompiled (see ``replay.model.state.kernel``).

zone->lock sections are recognised while replaying (kernel-notes 4.3): a run of
``mm_page_alloc_zone_locked`` with ``percpu_refill=1`` on one CPU for one
(zone, order, migratetype), at most ``max(batch >> order, 2)`` blocks, is one
``rmqueue_bulk()``; a run of ``mm_page_pcpu_drain`` on one CPU for one (zone,
owning CPU) is one ``free_pcppages_bulk()`` (remote drains of 6.1's
``drain_all_pages`` run on the caller's CPU); a zone_locked without refill is
one ``rmqueue_buddy()``; a free that bypasses the pcp lists is one
``free_one_page()``; a section holding an ``mm_page_alloc_extfrag`` is a
fallback section.  Hold times are added afterwards by ``replay.model.sections``.
"""

from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from parsers.schema import EVENT_BY_NAME, Event
from replay.model.anomalies import A_PFN_OUT_OF_RANGE, A_ZL_INSIDE_FREE, A_ZL_PRETRACE, N_KINDS
from replay.model.exact import (
    exact_alloc,
    exact_drain,
    exact_extfrag,
    exact_free,
    exact_free_batched,
    exact_zone_locked,
    pcp_owner,
)
from replay.model.state import C_FAILED_ALLOCS, G_PFN_BASE, PG_BUDDY, ModelState, block_head, zone_of
from replay.jit import kernel, kernel_entry

if TYPE_CHECKING:
    from replay.model.layout import MemoryLayout

EV_ALLOC = int(Event.MM_PAGE_ALLOC)
EV_ZL = int(Event.MM_PAGE_ALLOC_ZONE_LOCKED)
EV_FREE = int(Event.MM_PAGE_FREE)
EV_BATCHED = int(Event.MM_PAGE_FREE_BATCHED)
EV_DRAIN = int(Event.MM_PAGE_PCPU_DRAIN)
EV_EXTFRAG = int(Event.MM_PAGE_ALLOC_EXTFRAG)

SEC_REFILL = 1
SEC_DRAIN = 2
SEC_ALLOC = 3
SEC_FREE = 4
SEC_FALLBACK = 5
SECTION_KIND_NAMES = {SEC_REFILL: "refill", SEC_DRAIN: "drain", SEC_ALLOC: "alloc", SEC_FREE: "free",
                      SEC_FALLBACK: "fallback"}

CUR_NONE = 0
CUR_REFILL = 1
CUR_DRAIN = 2
CUR_PENDING_FB = 6

Sections = namedtuple(
    "Sections",
    ["kind", "cpu", "zone", "start", "end", "pages", "nev", "first", "fallbacks", "owner", "n",
     "cur", "cur_kind", "cur_order", "cur_mt", "cur_zl"],
)


def new_sections(cap: int, n_cpus: int) -> Sections:
    cap = max(cap, 1)
    return Sections(
        kind=np.zeros(cap, np.int8), cpu=np.zeros(cap, np.int32), zone=np.zeros(cap, np.int8),
        start=np.zeros(cap, np.int64), end=np.zeros(cap, np.int64), pages=np.zeros(cap, np.int64),
        nev=np.zeros(cap, np.int32), first=np.zeros(cap, np.int64), fallbacks=np.zeros(cap, np.int32),
        owner=np.zeros(cap, np.int32), n=np.zeros(1, np.int64),
        cur=np.full(n_cpus, -1, np.int64), cur_kind=np.zeros(n_cpus, np.int64),
        cur_order=np.zeros(n_cpus, np.int64), cur_mt=np.zeros(n_cpus, np.int64), cur_zl=np.zeros(n_cpus, np.int64),
    )


# ------------------------------------------------------------------ event columns
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


def _col(table: pa.Table, name: str, dtype: Any, null: int, writable: bool = True) -> np.ndarray:
    """A ``dtype`` column, nulls as ``null`` (one pass: ``replay.events.columns``; gfp masks fit in 63 bits).

    ``writable=False``: a read-only zero-copy view when the column has no nulls and the type.
    """
    from replay.events.columns import column_values

    return column_values(table, name, dtype, null, writable=writable)


def seq_column(table: pa.Table) -> Any:
    """The ``seq`` column: only the results tables read it, at the rows they keep; several
    chunks (a Parquet file's row groups) stay as they are (``columns.ChunkedColumn``)."""
    from replay.events.columns import ChunkedColumn

    col = table.column("seq")
    if col.num_chunks <= 1:
        return _col(table, "seq", np.int64, 0, writable=False)
    return ChunkedColumn(col, np.int64, 0)


def event_codes(table: pa.Table) -> np.ndarray:
    """``Event`` codes of the ``event`` column, whatever its dictionary order."""
    from replay.events.columns import dictionary_map

    return dictionary_map(table, "event", lambda n: int(EVENT_BY_NAME[n]) if n in EVENT_BY_NAME else -1, np.int8, -1)


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
    from replay.events.columns import event_table, read_event_columns

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
    from replay.events.columns import dictionary_map

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


# ------------------------------------------------------------------ sections
@kernel(nrt=False)
def sec_close(S: Sections, c: int) -> None:
    S.cur[c] = -1
    S.cur_kind[c] = CUR_NONE


@kernel(nrt=False)
def sec_new(S: Sections, kind: int, c: int, z: int, t: int, k: int, owner: int, pages: int, nev: int) -> int:
    """A new zone->lock section of CPU ``c`` in zone ``z`` from event ``k`` at time ``t``."""
    sid = S.n[0]
    S.n[0] += 1
    S.kind[sid] = kind
    S.cpu[sid] = c
    S.zone[sid] = z
    S.start[sid] = t
    S.end[sid] = t
    S.pages[sid] = pages
    S.nev[sid] = nev
    S.first[sid] = k
    S.fallbacks[sid] = 0
    S.owner[sid] = owner
    return sid


@kernel(nrt=False)
def sec_open(S: Sections, c: int, kind: int, z: int, t: int, k: int, owner: int, cur_kind: int) -> int:
    """A new section that stays open on CPU ``c`` while the trace's events add to it."""
    sid = sec_new(S, kind, c, z, t, k, owner, 0, 0)
    S.cur[c] = sid
    S.cur_kind[c] = cur_kind
    return sid


@kernel(nrt=False)
def sec_add(S: Sections, sid: int, t: int, pages: int) -> None:
    S.end[sid] = t
    S.pages[sid] += pages
    S.nev[sid] += 1


@kernel(nrt=False)
def refill_limit(st: ModelState, c: int, z: int, o: int) -> int:
    """Blocks one ``rmqueue_bulk()`` takes: 6.1 ``__rmqueue_pcplist`` scales batch by order."""
    batch = st.pcp_batch[c, z]
    if batch > 1:
        return max(batch >> o, 2)
    return 1


@kernel(nrt=False)
def locate(st: ModelState, p: int, o: int) -> tuple[int, int]:
    """(page index, zone) of block (pfn ``p``, order ``o``); zone -1 when outside the model."""
    i = p - st.geo[G_PFN_BASE]
    if i < 0 or o < 0 or o >= st.geo[1] or i + (1 << o) > st.pg_state.shape[0]:
        return i, -1
    if i & ((1 << o) - 1):
        return i, -1
    z = zone_of(st, i)
    if z >= 0 and i + (1 << o) > st.z_end[z]:
        z = -1
    return i, z


@kernel(nrt=False)
def block_untouched_since(st: ModelState, first: np.ndarray, i: int, o: int, k: int) -> bool:
    """No event before ``k`` touched the free block holding page ``i``: its shape is the inferred one."""
    h = block_head(st, i)
    if h < 0 or int(st.pg_state[h]) != PG_BUDDY or h == i or first.shape[0] == 0:
        return False
    for j in range(h, h + (1 << int(st.pg_order[h]))):
        f = first[j]
        if 0 <= f < k:
            return False
    return True


@kernel_entry(nrt=False)
def exact_chunk(st: ModelState, S: Sections, ev: np.ndarray, ts: np.ndarray, cpu: np.ndarray, pfn: np.ndarray,
                order: np.ndarray, mt: np.ndarray, refill: np.ndarray, fb_order: np.ndarray, chown: np.ndarray,
                deferred: np.ndarray, first: np.ndarray, k0: int, k1: int, out_anom: np.ndarray, out_sec: np.ndarray,
                out_zone: np.ndarray, acount: np.ndarray, dfree: np.ndarray) -> None:
    """Apply events ``k0..k1-1`` to the model in trace order (exact mode).

    ``dfree`` (empty: off): each event's change of its zone's ``NR_FREE_PAGES``, for the policy
    replays of ``replay.policy.delta``."""
    rec = dfree.shape[0] > 0
    for k in range(k0, k1):
        e = int(ev[k])
        c = int(cpu[k])
        p = int(pfn[k])
        o = int(order[k])
        t = ts[k]
        out_sec[k] = -1
        out_zone[k] = -1
        out_anom[k] = 0
        if rec:
            dfree[k] = 0
        if p < 0:
            if e == EV_ALLOC:
                st.ctr[C_FAILED_ALLOCS] += 1
            if e != EV_EXTFRAG:
                sec_close(S, c)
            continue
        i, z = locate(st, p, o)
        if z < 0:
            out_anom[k] = A_PFN_OUT_OF_RANGE
            acount[A_PFN_OUT_OF_RANGE] += 1
            sec_close(S, c)
            continue
        out_zone[k] = z
        free_before = st.z_nr_free[z]
        a = 0
        if e == EV_ZL:
            m = int(mt[k])
            r = int(refill[k]) == 1
            sid = S.cur[c]
            ck = S.cur_kind[c]
            if r:
                if (ck == CUR_REFILL and S.zone[sid] == z and S.cur_order[c] == o and S.cur_mt[c] == m
                        and S.cur_zl[c] < refill_limit(st, c, z, o)):
                    pass
                elif ck == CUR_PENDING_FB and S.zone[sid] == z:
                    S.cur_kind[c] = CUR_REFILL
                    S.cur_order[c] = o
                    S.cur_mt[c] = m
                    S.cur_zl[c] = 0
                else:
                    sid = sec_open(S, c, SEC_REFILL, z, t, k, c, CUR_REFILL)
                    S.cur_order[c] = o
                    S.cur_mt[c] = m
                    S.cur_zl[c] = 0
                S.cur_zl[c] += 1
                sec_add(S, sid, t, 1 << o)
            else:
                if not (ck == CUR_PENDING_FB and S.zone[sid] == z):
                    sid = sec_open(S, c, SEC_ALLOC, z, t, k, c, CUR_NONE)
                sec_add(S, sid, t, 1 << o)
                sec_close(S, c)
            out_sec[k] = sid
            untouched = block_untouched_since(st, first, i, o, k)
            a = exact_zone_locked(st, c, i, z, o, m, r)
            if a == A_ZL_INSIDE_FREE and untouched:
                a = A_ZL_PRETRACE
        elif e == EV_ALLOC:
            sec_close(S, c)
            a = exact_alloc(st, c, i, z, o, int(mt[k]))
        elif e == EV_FREE or e == EV_BATCHED:
            sec_close(S, c)
            if e == EV_FREE:
                a, direct = exact_free(st, c, i, z, o, int(deferred[k]))
            else:
                a, direct = exact_free_batched(st, c, i, z)
            if direct:
                sid = sec_open(S, c, SEC_FREE, z, t, k, c, CUR_NONE)
                sec_add(S, sid, t, 1 << o)
                sec_close(S, c)
                out_sec[k] = sid
        elif e == EV_DRAIN:
            owner = pcp_owner(st, i, c)
            sid = S.cur[c]
            if not (S.cur_kind[c] == CUR_DRAIN and S.zone[sid] == z and S.owner[sid] == owner):
                sid = sec_open(S, c, SEC_DRAIN, z, t, k, owner, CUR_DRAIN)
            sec_add(S, sid, t, 1 << o)
            out_sec[k] = sid
            a = exact_drain(st, i, z, o, int(mt[k]))
        elif e == EV_EXTFRAG:
            sid = S.cur[c]
            if S.cur_kind[c] == CUR_REFILL and S.zone[sid] == z:
                S.kind[sid] = SEC_FALLBACK
            else:
                sid = sec_open(S, c, SEC_FALLBACK, z, t, k, c, CUR_PENDING_FB)
            S.fallbacks[sid] += 1
            S.nev[sid] += 1
            S.end[sid] = t
            out_sec[k] = sid
            a = exact_extfrag(st, i, z, o, int(fb_order[k]), int(mt[k]), int(chown[k]))
        if a != 0:
            out_anom[k] = a
            acount[a] += 1
        if rec:
            dfree[k] = st.z_nr_free[z] - free_before


# ------------------------------------------------------------------ driver
@dataclass
class ReplayOutput:
    """Everything a replay produced (the summary: ``replay.results.summary``; the tables: ``replay.results.tables``)."""

    mode: str
    events: EventArrays
    state: ModelState
    sections: Sections
    out_anom: np.ndarray
    out_sec: np.ndarray
    out_zone: np.ndarray
    out_pfn: np.ndarray
    acount: np.ndarray
    zone_names: list[str]
    initial: dict[str, Any]
    invariant_reports: list[dict[str, Any]]
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def n_sections(self) -> int:
        return int(self.sections.n[0])


def run_loop(mode: str, st: ModelState, ea: EventArrays, *, zone_kind: np.ndarray | None = None,
             wmark_low: np.ndarray | None = None, check_every: int = 0, chunk: int = 1 << 20
             ) -> tuple[Sections, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """Run the compiled loop over all events; check invariants every ``check_every`` events."""
    from replay.model.invariants import check_invariants
    from replay.model.simulate import new_sim_map, simulate_chunk

    n = len(ea)
    nz = len(st.z_start)
    S = new_sections(n, st.pcp_count.shape[0])
    out_anom = np.zeros(n, np.int8)
    out_sec = np.full(n, -1, np.int32)
    out_zone = np.full(n, -1, np.int8)
    out_pfn = ea.pfn.copy()
    acount = np.zeros(N_KINDS, np.int64)
    reports: list[dict[str, Any]] = []
    step = check_every if check_every > 0 else chunk
    simmap = new_sim_map(st) if mode == "simulate" else np.zeros(1, np.int32)
    zk = zone_kind if zone_kind is not None else np.full(nz, 2, np.int64)
    wm = wmark_low if wmark_low is not None else np.zeros(nz, np.int64)
    for k0 in range(0, n, step):
        k1 = min(n, k0 + step)
        if mode == "exact":
            exact_chunk(st, S, ea.ev, ea.ts, ea.cpu, ea.pfn, ea.order, ea.mt, ea.refill, ea.fb_order, ea.chown,
                        ea.deferred, ea.first, k0, k1, out_anom, out_sec, out_zone, acount, np.zeros(0, np.int32))
        else:
            simulate_chunk(st, S, simmap, zk, wm, ea.ev, ea.ts, ea.cpu, ea.pfn, ea.order, ea.mt, ea.gfp,
                           ea.deferred, k0, k1, out_anom, out_sec, out_zone, out_pfn, acount)
        if check_every > 0:
            rep = check_invariants(st)
            rep["after_event"] = int(k1)
            reports.append(rep)
    return S, out_anom, out_sec, out_zone, out_pfn, acount, reports


@dataclass
class InitialModel:
    """A trace's event columns and the model state it starts from (``prepare_events``)."""

    events: EventArrays
    state: ModelState
    initial: dict[str, Any]  # the initial-state report (``initial_state.infer_initial_state``)
    zone_names: list[str]


def prepare_events(table: pa.Table, layout: "MemoryLayout", *, mode: str = "exact",
                   snapshot: "MemoryLayout | None" = None, boot: bool | None = None,
                   events: EventArrays | None = None) -> InitialModel:
    """The event columns of ``table`` (or ``events``, already made) and the initial model state.

    ``snapshot`` (a layout read from ``proc_before``) seeds the initial free blocks; ``boot``
    (default: no snapshot and the first event within 5 s of boot) starts from the boot layout.
    """
    from replay.model.initial_state import infer_initial_state, model_zones

    if mode not in ("exact", "simulate"):
        raise ValueError(f"unknown mode {mode!r} (exact, simulate)")
    ea = events if events is not None else event_arrays(table, with_gfp=mode != "exact")
    if boot is None:
        boot = snapshot is None and len(ea) > 0 and int(ea.ts.min()) < 5_000_000_000
    if boot:
        ea.deferred |= boot_free_core_mask(ea, layout.pageblock_order)
    st, initial = infer_initial_state(ea.ev, ea.pfn, ea.order, ea.mt, ea.cpu, ea.fb_mt, layout,
                                      snapshot=snapshot, boot=bool(boot))
    ea.first = initial.pop("_first")
    return InitialModel(events=ea, state=st, initial=initial, zone_names=[z.name for z in model_zones(layout)])


def replay(table: pa.Table, layout: "MemoryLayout", *, mode: str = "exact", snapshot: "MemoryLayout | None" = None,
           boot: bool | None = None, check_every: int = 0, metadata: dict[str, str] | None = None,
           events: EventArrays | None = None) -> ReplayOutput:
    """Replay ``table`` through the model of ``layout`` (``mode``: ``exact`` or ``simulate``), the
    buddy model alone (no acceptance policy: ``replay.policy`` runs those, and ``pagereplay
    replay``); ``check_every`` > 0 checks the invariants every that many events as well as at
    the end.  See ``prepare_events`` for the other arguments."""
    from replay.model.initial_state import model_zones
    from replay.model.invariants import check_invariants
    from replay.model.simulate import zone_kinds

    init = prepare_events(table, layout, mode=mode, snapshot=snapshot, boot=boot, events=events)
    ea, st, names = init.events, init.state, init.zone_names
    zones = model_zones(layout)
    S, out_anom, out_sec, out_zone, out_pfn, acount, reports = run_loop(
        mode, st, ea, zone_kind=zone_kinds(names), wmark_low=np.array([z.wmark_low for z in zones], np.int64),
        check_every=check_every)
    final = check_invariants(st)
    final["after_event"] = len(ea)
    reports.append(final)
    return ReplayOutput(mode=mode, events=ea, state=st, sections=S, out_anom=out_anom, out_sec=out_sec,
                        out_zone=out_zone, out_pfn=out_pfn, acount=acount, zone_names=names, initial=init.initial,
                        invariant_reports=reports, metadata=dict(metadata or {}))
