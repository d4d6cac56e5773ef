"""Exact replay of the untraced kprobe rows (``pagereplay record --untraced``).

The kprobes of ``parsers/capture/untraced.py`` mark kernel paths that move pages with no kmem
tracepoint.  Exact mode applies each row to the buddy model as the kernel function does, instead
of inferring the path from a later kmem event (an anomaly such as ``free_of_free``):

==============================  ===========================================================
row (``UntracedEvent``)          model (kernel function, read in Debian's 6.1.192 / 6.12.118)
==============================  ===========================================================
``isolate_free_page``            ``__isolate_free_page`` (mm/page_alloc.c 6.1, 6.12):
                                 ``del_page_from_free_list`` of the block, held by the caller
                                 (compaction's free list, page reporting, alloc_contig_range);
                                 a block of order >= pageblock_order - 1 makes its mergeable
                                 pageblocks MOVABLE (6.1 ``set_pageblock_migratetype``; 6.12
                                 ``move_freepages_block``, profile ``isolate_moves_freepages``).
                                 Only when its return probe says it did (ret 0: the watermark
                                 check refused)
``putback_isolated_page``        ``__putback_isolated_page``: ``__free_one_page(.., mt,
                                 FPI_TO_TAIL)``, merging
``take_page_off_buddy``          ``take_page_off_buddy`` (memory-failure): the free block holding
                                 the page leaves the lists, ``break_down_buddy_pages`` frees the
                                 rest at the pageblock's migratetype; when ret is true
``put_page_back_buddy``          ``put_page_back_buddy``: ``__free_one_page(page, 0, pageblock
                                 mt, FPI_NONE)``; when ret is true
``split_page``                   ``split_page``: an allocated order-n block becomes 2^n order-0
                                 allocations (6.1 compaction's ``split_map_pages``,
                                 ``alloc_pages_exact``, vmalloc)
``free_pages_core``              ``__free_pages_core``: the block (reserved, or memory the model
                                 did not know) is handed to the buddy by the ``mm_page_free``
                                 that follows on the CPU, straight to the tail (FPI_TO_TAIL)
``free_unaccepted``              ``__free_unaccepted`` (6.5+): the MAX_ORDER block stays off the
                                 buddy on ``zone->unaccepted_pages`` (held); when ret is true
``accept_page``                  ``__accept_page`` (6.12+): the block leaves
                                 ``zone->unaccepted_pages``; its ``mm_page_free`` order 10
                                 follows (``__free_pages_ok(.., FPI_TO_TAIL)``)
``compaction_free``              ``compaction_free``: the migration target stays the compactor's;
                                 from 6.9 (profile ``compaction_free_event``) the
                                 ``mm_page_free`` that follows (``free_pages_prepare``) returns
                                 nothing to the allocator
``split_large_buddy``            ``split_large_buddy`` (6.10+): the free just traced went
                                 straight to the buddy (``free_one_page``), in pageblock pieces
==============================  ===========================================================

Not applied (counted): ``split_free_page`` (the table does not keep its split offset),
``offline_isolated_pages`` (hot-unplug), ``tdx_accept_memory`` / ``snp_accept_memory`` (firmware
calls: no buddy change), ``free_prepared_contig_range`` (7.x, no profile models it yet).

Return probes are paired with the entry before them on the same CPU (``mark_untraced``): the
callers hold ``zone->lock`` (or take it inside), so the two are consecutive on that CPU, and the
entry row is applied with the outcome its return row recorded.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from parsers.schema import UntracedEvent
from replay.events.arrays import EV_FREE, FL_FREE_CORE
from replay.jit import kernel, kernel_entry
from replay.model.anomalies import (A_FREE_UNKNOWN, A_ZL_INSIDE_FREE, A_ZL_ON_ALLOC, A_ZL_ON_PCP, A_ZL_PRETRACE,
                                    A_ZL_UNKNOWN, counts_by_name)
from replay.model.buddy import (__free_one_page, break_down_buddy_pages, del_page_from_free_list,
                                migratetype_is_mergeable, move_freepages_block)
from replay.model.exact import F_ALLOC, F_HOLE, F_PCP, isolate_range, mark_inferred, release_block, set_allocated
from replay.model.pcp import pcp_del
from replay.model.profiles import KP_COMPACTION_FREE_EVENT, KP_ISOLATE_MOVES_FREEPAGES
from replay.model.state import (G_PB_ORDER, MIGRATE_MOVABLE, ORIGIN_TRACED, PG_ALLOC, PG_BUDDY, PG_NONE, PG_PCP,
                                ModelState, block_head)

_U = UntracedEvent
UX_ISOLATE = int(_U.ISOLATE_FREE_PAGE)
UX_ISOLATE_RET = int(_U.ISOLATE_FREE_PAGE_RET)
UX_PUTBACK = int(_U.PUTBACK_ISOLATED_PAGE)
UX_TAKE_OFF = int(_U.TAKE_PAGE_OFF_BUDDY)
UX_TAKE_OFF_RET = int(_U.TAKE_PAGE_OFF_BUDDY_RET)
UX_PUT_BACK = int(_U.PUT_PAGE_BACK_BUDDY)
UX_PUT_BACK_RET = int(_U.PUT_PAGE_BACK_BUDDY_RET)
UX_SPLIT_FREE = int(_U.SPLIT_FREE_PAGE)
UX_SPLIT_FREE_RET = int(_U.SPLIT_FREE_PAGE_RET)
UX_FREE_UNACCEPTED = int(_U.FREE_UNACCEPTED)
UX_FREE_UNACCEPTED_RET = int(_U.FREE_UNACCEPTED_RET)
UX_SPLIT_PAGE = int(_U.SPLIT_PAGE)
UX_FREE_PAGES_CORE = int(_U.FREE_PAGES_CORE)
UX_ACCEPT_PAGE = int(_U.ACCEPT_PAGE)
UX_COMPACTION_FREE = int(_U.COMPACTION_FREE)
UX_SPLIT_LARGE_BUDDY = int(_U.SPLIT_LARGE_BUDDY)
UX_FIRST = int(min(_U))
UX_LAST = int(max(_U))

#: the rows exact mode applies to the model (the others are counted, see the module docstring)
APPLIED = (UX_ISOLATE, UX_PUTBACK, UX_TAKE_OFF, UX_PUT_BACK, UX_SPLIT_PAGE, UX_FREE_PAGES_CORE, UX_FREE_UNACCEPTED,
           UX_ACCEPT_PAGE, UX_COMPACTION_FREE, UX_SPLIT_LARGE_BUDDY)
NOT_APPLIED_WHY = {
    "split_free_page": "not applied: the parsed table does not keep its split offset (split=)",
    "split_free_page_ret": "the outcome of split_free_page",
    "offline_isolated_pages": "not applied: memory hot-unplug is not modelled",
    "tdx_accept_memory": "no buddy change (the firmware call the acceptance policies model)",
    "snp_accept_memory": "no buddy change (the firmware call the acceptance policies model)",
    "free_prepared_contig_range": "not applied: 7.x, no kernel profile models it yet",
}
#: entry -> its return probe
RET_OF = {UX_ISOLATE: UX_ISOLATE_RET, UX_TAKE_OFF: UX_TAKE_OFF_RET, UX_PUT_BACK: UX_PUT_BACK_RET,
          UX_SPLIT_FREE: UX_SPLIT_FREE_RET, UX_FREE_UNACCEPTED: UX_FREE_UNACCEPTED_RET}
_RET_ENTRY = np.full(UX_LAST + 1, -1, np.int64)
for _e, _r in RET_OF.items():
    _RET_ENTRY[_r] = _e

#: ``EventArrays.deferred`` bits of the kprobe rows (1 and 2 are ``replay.events.arrays``')
FL_UX_REFUSED = 4  # an entry row whose return probe says the function did nothing
FL_KEPT = 8  # an mm_page_free of a page compaction_free keeps (6.9+): nothing reaches the allocator
FL_UX_PAIRED = 16  # an entry row whose return probe says the function did its work


# ---------------------------------------------------------------------- marks from the whole trace
@kernel_entry(nrt=False)
def _mark(ev: np.ndarray, cpu: np.ndarray, pfn: np.ndarray, order: np.ndarray, ret_entry: np.ndarray,
          compaction_free_event: bool, deferred: np.ndarray, last: np.ndarray) -> None:
    """Per CPU, each row against the one before it: a return row gives its entry the outcome; the
    ``mm_page_free`` after ``free_pages_core`` / ``accept_page`` (same pfn) goes to the buddy tail,
    the one after ``compaction_free`` (6.9+) is kept by the compactor.  ``last``: per CPU, -1."""
    ncpu = last.shape[0]
    for k in range(ev.shape[0]):
        c = int(cpu[k])
        if c < 0 or c >= ncpu:
            continue
        j = last[c]
        last[c] = k
        if j < 0:
            continue
        e = int(ev[k])
        prev = int(ev[j])
        if UX_FIRST <= e <= UX_LAST and ret_entry[e] >= 0:
            if prev == ret_entry[e]:
                deferred[j] |= FL_UX_PAIRED if int(order[k]) == 0 else FL_UX_REFUSED
        elif e == EV_FREE and pfn[k] >= 0 and pfn[k] == pfn[j]:
            if prev == UX_FREE_PAGES_CORE or prev == UX_ACCEPT_PAGE:
                deferred[k] |= FL_FREE_CORE
            elif prev == UX_COMPACTION_FREE and compaction_free_event:
                deferred[k] |= FL_KEPT


def has_untraced(ev: np.ndarray) -> bool:
    return bool(len(ev)) and bool(((ev >= UX_FIRST) & (ev <= UX_LAST)).any())


def mark_untraced(ea: Any, kp: np.ndarray) -> None:
    """Set the kprobe bits of ``ea.deferred`` (see ``_mark``) for kernel profile ``kp``."""
    ncpu = int(ea.cpu.max()) + 1 if len(ea.cpu) else 1
    _mark(ea.ev, ea.cpu, ea.pfn, ea.order, _RET_ENTRY, bool(kp[KP_COMPACTION_FREE_EVENT]), ea.deferred,
          np.full(ncpu, -1, np.int64))


def without_untraced(ea: Any, deferred0: np.ndarray) -> Any:
    """``ea`` with its kprobe rows inert and the marks they made gone: what exact replay did
    before it applied them (the comparison ``untraced_summary`` reports)."""
    import dataclasses

    ev = ea.ev.copy()
    ev[(ev >= UX_FIRST) & (ev <= UX_LAST)] = -1
    return dataclasses.replace(ea, ev=ev, deferred=deferred0)


# ---------------------------------------------------------------------- the model
@kernel(nrt=False)
def block_untouched(st: ModelState, first: np.ndarray, i: int, k: int) -> bool:
    """No event before ``k`` touched the free block holding page ``i``: its shape is the
    initial-state inference's (``engine.block_untouched_since``, the head included)."""
    h = block_head(st, i)
    if h < 0 or int(st.pg_state[h]) != PG_BUDDY or first.shape[0] == 0:
        return False
    for j in range(h, h + (1 << int(st.pg_order[h]))):
        f = first[j]
        if 0 <= f < k:
            return False
    return True


@kernel(nrt=False)
def take_off_buddy(st: ModelState, i: int, z: int, o: int, untouched: bool, piece_mt: int) -> int:
    """Take the free block ``i`` of order ``o`` off the lists (``del_page_from_free_list``).

    The model may hold it inside a larger free block (its merge before the trace was larger than
    the kernel's): that block is broken down around it (``piece_mt`` -1: the pieces keep the
    list's migratetype).  Returns the anomaly (``zone_locked_*`` kinds: the same contradiction as
    ``__rmqueue_smallest`` taking a block the model does not hold free)."""
    h = block_head(st, i)
    if h == i and int(st.pg_state[i]) == PG_BUDDY and int(st.pg_order[i]) == o:
        del_page_from_free_list(st, i, z)
        return 0
    if h >= 0 and int(st.pg_state[h]) == PG_BUDDY and int(st.pg_order[h]) > o:
        ho = int(st.pg_order[h])
        m = int(st.pg_mt[h]) if piece_mt < 0 else piece_mt
        del_page_from_free_list(st, h, z)
        mark_inferred(st, h)  # a repair: the kernel's block was order o
        break_down_buddy_pages(st, h, i, z, o, ho, m)
        st.pg_state[i] = PG_NONE
        return A_ZL_PRETRACE if untouched else A_ZL_INSIDE_FREE
    found = isolate_range(st, i, o, z)
    if found & F_PCP:
        return A_ZL_ON_PCP
    if found & F_ALLOC:
        return A_ZL_ON_ALLOC
    if found & F_HOLE:
        return A_ZL_UNKNOWN
    return A_ZL_INSIDE_FREE


@kernel(nrt=False)
def isolate_free_page(st: ModelState, i: int, z: int, o: int, untouched: bool) -> int:
    """``__isolate_free_page()`` (mm/page_alloc.c 6.1.192, 6.12.118) of free block ``i``: off the
    lists, held by its caller; a block of at least half a pageblock makes each mergeable pageblock
    it starts MOVABLE (6.1 ``set_pageblock_migratetype``; 6.12 ``move_freepages_block`` moves the
    pageblock's other free blocks too)."""
    a = take_off_buddy(st, i, z, o, untouched, -1)
    pbo = st.geo[G_PB_ORDER]
    if o >= pbo - 1:
        j = i
        while j < i + (1 << o) - 1:
            b = j >> pbo
            if migratetype_is_mergeable(int(st.pb_mt[b])):
                if st.kp[KP_ISOLATE_MOVES_FREEPAGES] != 0:
                    move_freepages_block(st, j, z, MIGRATE_MOVABLE)
                st.pb_mt[b] = MIGRATE_MOVABLE
            j += 1 << pbo
    set_allocated(st, i, z, o, MIGRATE_MOVABLE, PG_ALLOC)
    return a


@kernel(nrt=False)
def take_page_off_buddy(st: ModelState, i: int, z: int, untouched: bool) -> int:
    """``take_page_off_buddy()`` (mm/page_alloc.c 6.1.192, 6.12.118): the free block holding page
    ``i`` leaves its list and ``break_down_buddy_pages`` frees the rest at the pageblock's
    migratetype (``get_pfnblock_migratetype`` of the head); the page is held (poisoned)."""
    h = block_head(st, i)
    a = 0
    if h >= 0 and int(st.pg_state[h]) == PG_BUDDY:
        ho = int(st.pg_order[h])
        del_page_from_free_list(st, h, z)
        break_down_buddy_pages(st, h, i, z, 0, ho, int(st.pb_mt[h >> st.geo[G_PB_ORDER]]))
        st.pg_state[i] = PG_NONE
    else:
        a = take_off_buddy(st, i, z, 0, untouched, -1)
    set_allocated(st, i, z, 0, int(st.pb_mt[i >> st.geo[G_PB_ORDER]]), PG_ALLOC)
    return a


@kernel(nrt=False)
def hold_block(st: ModelState, c: int, i: int, z: int, o: int, m: int, holes_ok: bool) -> int:
    """Block ``i`` of order ``o`` is held off the buddy (allocated, isolated, unaccepted): the model
    is made to agree; returns the anomaly of ``release_block`` (pages the model never saw are
    none when ``holes_ok``: ``__free_pages_core`` brings memory in)."""
    h = block_head(st, i)
    if h == i and int(st.pg_state[i]) == PG_ALLOC and int(st.pg_order[i]) == o:
        return 0
    a = release_block(st, c, i, z, o)
    if holes_ok and a == A_FREE_UNKNOWN:
        a = 0
    set_allocated(st, i, z, o, m, PG_ALLOC)
    return a


@kernel(nrt=False)
def split_page(st: ModelState, c: int, i: int, z: int, o: int) -> int:
    """``split_page()``: the allocated order-``o`` block ``i`` becomes 2^o order-0 allocations of
    its migratetype (``set_page_refcounted`` of each tail page)."""
    m = int(st.pg_mt[i]) if int(st.pg_state[i]) == PG_ALLOC else MIGRATE_MOVABLE
    a = hold_block(st, c, i, z, o, m, False)
    st.pg_order[i] = 0
    for j in range(i + 1, i + (1 << o)):
        st.pg_state[j] = PG_ALLOC
        st.pg_order[j] = 0
        st.pg_mt[j] = m
    return a


@kernel(nrt=False)
def split_large_buddy(st: ModelState, i: int, z: int, o: int) -> int:
    """``split_large_buddy()`` (6.10+, in ``free_one_page``): the block just freed goes straight to
    the buddy, in pageblock pieces of their pageblock's migratetype.  The model may have put it
    on a pcp list (pcp trylock failures, 6.18's deferred frees): it is moved."""
    if int(st.pg_state[i]) != PG_PCP or int(st.pg_order[i]) != o:
        return 0  # the model freed it to the buddy as well
    pcp_del(st, i, z)
    pbo = st.geo[G_PB_ORDER]
    po = o if o < pbo else pbo
    j = i
    while j < i + (1 << o):
        st.pg_origin[j] = ORIGIN_TRACED
        __free_one_page(st, j, z, po, int(st.pb_mt[j >> pbo]), False)
        j += 1 << po
    return 0


@kernel(nrt=False)
def exact_untraced(st: ModelState, c: int, i: int, z: int, o: int, e: int, m: int, flags: int,
                   untouched: bool) -> int:
    """Apply one kprobe row (code ``e``, block ``i`` of order ``o`` in zone ``z``, traced
    migratetype ``m``, ``flags`` from ``mark_untraced``) to the model; returns the anomaly."""
    if flags & FL_UX_REFUSED:
        return 0  # the return probe says nothing was done
    pbo = st.geo[G_PB_ORDER]
    if e == UX_ISOLATE:
        return isolate_free_page(st, i, z, o, untouched)
    if e == UX_PUTBACK or e == UX_PUT_BACK:
        a = release_block(st, c, i, z, o)
        mt = m if e == UX_PUTBACK and m >= 0 else int(st.pb_mt[i >> pbo])
        st.pg_origin[i] = ORIGIN_TRACED
        __free_one_page(st, i, z, o, mt, e == UX_PUTBACK)  # FPI_TO_TAIL / FPI_NONE
        return a
    if e == UX_TAKE_OFF:
        return take_page_off_buddy(st, i, z, untouched)
    if e == UX_SPLIT_PAGE:
        return split_page(st, c, i, z, o)
    if e == UX_FREE_PAGES_CORE:
        return hold_block(st, c, i, z, o, int(st.pb_mt[i >> pbo]), True)
    if e == UX_FREE_UNACCEPTED or e == UX_ACCEPT_PAGE:
        return hold_block(st, c, i, z, o, MIGRATE_MOVABLE, e == UX_FREE_UNACCEPTED)
    if e == UX_SPLIT_LARGE_BUDDY:
        return split_large_buddy(st, i, z, o)
    return 0  # compaction_free: the page stays held (its 6.9+ mm_page_free: FL_KEPT); the others: counted


# ---------------------------------------------------------------------- the report
def untraced_summary(ev: np.ndarray, deferred: np.ndarray, out_anom: np.ndarray, acount: np.ndarray,
                     without: np.ndarray | None) -> dict[str, Any]:
    """The summary's ``kprobes``: per kprobe event, its rows, how many were applied to the model,
    refused by the kernel (return probe), contradicted the model (an anomaly at the row, by kind),
    or not applied (why); and the anomalies by kind of the same replay with the kprobe rows not
    applied (``anomalies_without_kprobes``) and the kinds they removed (``inferences_replaced``:
    without - with, where positive)."""
    from parsers.schema import ALL_EVENT_NAMES

    from replay.model.anomalies import KIND_BY_CODE

    per: dict[str, Any] = {}
    ux = np.flatnonzero((ev >= UX_FIRST) & (ev <= UX_LAST))
    codes = ev[ux].astype(np.int64)
    for e in np.unique(codes):
        rows = ux[codes == e]
        name = ALL_EVENT_NAMES[int(e)]
        d: dict[str, Any] = {"rows": int(len(rows))}
        if int(e) in APPLIED:
            refused = (deferred[rows] & FL_UX_REFUSED) != 0
            anom = out_anom[rows]
            d["applied"] = int((~refused).sum())
            if int(e) in RET_OF:
                d["refused"] = int(refused.sum())
                d["without_return"] = int(((deferred[rows] & (FL_UX_REFUSED | FL_UX_PAIRED)) == 0).sum())
            bad = anom[anom != 0]
            d["contradicted"] = int(len(bad))
            if len(bad):
                d["contradicted_by_kind"] = {KIND_BY_CODE[int(k)].name: int(n) for k, n in zip(*np.unique(bad, return_counts=True))}
        elif _RET_ENTRY[int(e)] >= 0:
            d["paired_with"] = ALL_EVENT_NAMES[int(_RET_ENTRY[int(e)])]
        else:
            d["not_applied"] = NOT_APPLIED_WHY.get(name, "not applied")
        per[name] = d
    out: dict[str, Any] = {"events": per, "rows_applied": int(sum(d.get("applied", 0) for d in per.values()))}
    if without is not None:
        wo = counts_by_name(without)
        w = counts_by_name(acount)
        out["anomalies_without_kprobes"] = wo
        out["inferences_replaced"] = {k: n - w.get(k, 0) for k, n in wo.items() if n > w.get(k, 0)}
        out["anomalies_added"] = {k: n - wo.get(k, 0) for k, n in w.items() if n > wo.get(k, 0)}
    return out


__all__ = ["APPLIED", "exact_untraced", "has_untraced", "mark_untraced", "untraced_summary", "without_untraced"]
