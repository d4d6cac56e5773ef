"""Kernel-faithful synthetic emission: workload requests through the replay model (issue 5).

``parsers.synthetic.workloads`` produces *requests* (who asks for which order when, and which
allocation each free releases).  :class:`EngineEmitter` serves them with the replay model of
Linux 6.1 (``replay.model.buddy``, ``replay.model.pcp``: the code simulate mode runs) on a plain-VM
baseline, and writes the tracepoints the kernel fires on the way, where it fires them:

=====================================  ==============================================================
request                                what runs (6.1 ``mm/page_alloc.c``) and what is traced
=====================================  ==============================================================
allocation (kind 0)                    ``get_page_from_freelist()``: zones from ``gfp_zone()`` down
                                       the zonelist, ``ALLOC_WMARK_LOW`` first, then without
                                       watermarks (reclaim is not modelled); ``rmqueue()``:
                                       ``rmqueue_pcplist()`` (``free_factor >>= 1``,
                                       ``__rmqueue_pcplist()`` refilling an empty list with
                                       ``rmqueue_bulk()``) for ``pcp_allowed_order()``, else
                                       ``rmqueue_buddy()``.  Every block ``__rmqueue_smallest()``
                                       takes fires ``mm_page_alloc_zone_locked`` (``percpu_refill``
                                       as 6.1 computes it), every ``__rmqueue_fallback()`` steal
                                       ``mm_page_alloc_extfrag``; then ``mm_page_alloc``
                                       (``__alloc_pages()``; a null page when every zone failed)
free (kind 1)                          ``free_pages_prepare()``: ``mm_page_free``; then
                                       ``free_unref_page()`` -> ``free_unref_page_commit()``
                                       (``free_pcppages_bulk()`` past ``high``: one
                                       ``mm_page_pcpu_drain`` per block) for pcp orders, else
                                       ``__free_pages_ok()`` -> ``free_one_page()``
free through a list (kind 2)           ``free_unref_page_list()``: ``mm_page_free`` (prepare),
                                       ``mm_page_free_batched``, then the commit as above
``__free_pages_core()`` (kind 3)       ``mm_page_free``, then ``__free_one_page(FPI_TO_TAIL)``
=====================================  ==============================================================

The tracepoints come from the model's tracepoint log (``ModelState.tp``, written by
``__rmqueue_smallest``, ``__rmqueue_fallback`` and ``free_pcppages_bulk`` themselves), so the
bursts are whatever the model did: refills of ``max(batch >> order, 2)`` blocks (fewer when
memory runs short), drains of ``nr_pcp_free()`` pages, ``free_high`` drains, steals.

Initial state: the guest of :func:`replay.model.layout.layout_for_guest` (zones, watermarks, pcp
batch/high of 6.1 ``zone_batchsize``/``zone_highsize``) with every present page free in the buddy
as maximal blocks in ascending pfn order, every pageblock MOVABLE (``memmap_init`` then
``memblock_free_all``), per-CPU lists empty.  Frees follow allocation identity (``req_id``);
a free of a page allocated before the trace (``req_id == -1``) takes, silently, a block no
event has touched yet, from the top of memory down (it was allocated before tracing began),
so an exact replay infers it allocated from the start (``replay.model.initial_state``) and finds no
anomaly: every free set the model passes through is a superset of the replay's by untouched
pages only.

Time: a clock per CPU; each event happens at ``max(clock, request time)`` and advances its
CPU's clock by its cost (``EmitParams``: ``alloc_ns``, ``free_ns``, ``zone_locked_ns`` per
zone_locked/extfrag, ``drain_ns`` per drain); the zone->lock sections (refill, buddy
allocation, drain, ``free_one_page``) of each zone are serialised across CPUs, and every
hand-off between CPUs (a lock released, a page allocated on one CPU and freed on another)
lands at least one microsecond later, so the text ftrace prints (microseconds) replays in
order.  Timestamps are microsecond-aligned and never go backwards on a CPU.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from parsers.schema import arrow_schema, decode_gfp
from parsers.synthetic.emit import HeldBack, event_batch, release_sorted
from replay.model.buddy import __free_one_page, __rmqueue, add_to_free_list, del_page_from_free_list
from replay.model.layout import MemoryLayout, layout_for_guest
from replay.model.pcp import __rmqueue_pcplist, free_unref_page_commit, pcp_allowed_order
from replay.model.simulate import gfp_zone_limit, zone_kinds, zonelist_zone
from replay.model.state import (
    G_PB_ORDER,
    MIGRATE_ISOLATE,
    MIGRATE_MOVABLE,
    MIGRATE_PCPTYPES,
    PG_ALLOC,
    PG_BUDDY,
    PG_NONE,
    TP_A,
    TP_B,
    TP_C,
    TP_EV,
    TP_MT,
    TP_ORDER,
    TP_PAGE,
    TP_ZONE,
    TP_ZONE_LOCKED,
    ModelState,
    block_head,
    with_trace_log,
    zone_of,
)
from replay.jit import kernel, kernel_entry

EV_ALLOC, EV_ZL, EV_FREE, EV_BATCHED, EV_DRAIN, EV_EXTFRAG = 0, 1, 2, 3, 4, 5
KIND_ALLOC, KIND_FREE, KIND_FREE_BATCHED, KIND_FREE_CORE = 0, 1, 2, 3

#: what ``pagereplay.synthetic.emitter`` says for this emitter
DESCRIPTION = "engine: replay.synth.emit (the replay model of 6.1: buddy, migratetypes, fallback, per-CPU lists, zones)"

# status codes of emit_chunk
ST_DONE, ST_OUT_FULL, ST_MAP_FULL, ST_LOG_OVERFLOW = 0, 1, 2, 3


# ----------------------------------------------------------------- live map (req_id -> page)
@kernel(nrt=False)
def _h_home(key: int, mask: int) -> int:
    """Home slot of ``key``: multiplicative hashing (request ids are dense: ``key & mask`` would
    make one long probe cluster of the live window).  Products stay below 2**63."""
    return (((key & 0xFFFFFFFF) * 0x5BD1E995) >> 13) & mask


@kernel(nrt=False)
def _h_find(hk: np.ndarray, key: int) -> int:
    """Slot of ``key`` in the open-addressing table (linear probing), -1 if absent."""
    mask = hk.shape[0] - 1
    s = _h_home(key, mask)
    while True:
        k = hk[s]
        if k == key:
            return s
        if k == -1:
            return -1
        s = (s + 1) & mask


@kernel(nrt=False)
def _h_put(hk: np.ndarray, hv: np.ndarray, ht: np.ndarray, hn: np.ndarray, key: int, v: int, t: int) -> None:
    mask = hk.shape[0] - 1
    s = _h_home(key, mask)
    while hk[s] != -1 and hk[s] != key:
        s = (s + 1) & mask
    if hk[s] == -1:
        hn[0] += 1
    hk[s] = key
    hv[s] = v
    ht[s] = t


@kernel(nrt=False)
def _h_del(hk: np.ndarray, hv: np.ndarray, ht: np.ndarray, hn: np.ndarray, s: int) -> None:
    """Delete slot ``s`` with backward-shift deletion (no tombstones)."""
    mask = hk.shape[0] - 1
    hn[0] -= 1
    i = s
    j = s
    while True:
        j = (j + 1) & mask
        if hk[j] == -1:
            break
        home = _h_home(hk[j], mask)
        # leave the entry where it is if its home lies cyclically in (i, j]
        if i <= j:
            if i < home <= j:
                continue
        elif home > i or home <= j:
            continue
        hk[i] = hk[j]
        hv[i] = hv[j]
        ht[i] = ht[j]
        i = j
    hk[i] = -1


@kernel_entry(nrt=False)
def _h_rehash(ok: np.ndarray, ov: np.ndarray, ot: np.ndarray, hk: np.ndarray, hv: np.ndarray, ht: np.ndarray,
              hn: np.ndarray) -> None:
    for s in range(ok.shape[0]):
        if ok[s] != -1:
            _h_put(hk, hv, ht, hn, ok[s], ov[s], ot[s])


# ----------------------------------------------------------------- model steps
@kernel(nrt=False)
def engine_rmqueue(st: ModelState, c: int, z: int, o: int, m: int) -> int:
    """6.1 ``rmqueue()``: ``rmqueue_pcplist()`` for pcp orders, else ``rmqueue_buddy()``.

    (When ``rmqueue_bulk()`` finds nothing, 6.1 tries ``rmqueue_buddy()``, which finds
    nothing either without ``ALLOC_HARDER``: not repeated here.)
    """
    if pcp_allowed_order(o, st.geo[G_PB_ORDER]) and m < MIGRATE_PCPTYPES:
        st.pcp_free_factor[c, z] >>= 1  # rmqueue_pcplist(): before __rmqueue_pcplist()
        i, _refilled = __rmqueue_pcplist(st, c, z, o, m, 0)
        return i
    i = __rmqueue(st, z, o, m, 0)
    if i >= 0:
        st.pg_state[i] = PG_ALLOC
        st.pg_order[i] = o
        st.pg_mt[i] = m
        st.z_nr_alloc[z] += 1 << o
    return i


@kernel(nrt=False)
def engine_alloc(st: ModelState, zkind: np.ndarray, wmark: np.ndarray, wm_zero: bool, c: int, o: int, m: int,
                 limit: int) -> tuple[int, int]:
    """``get_page_from_freelist()`` as simulate mode runs it: (page index, zone) or (-1, -1)."""
    nz = st.z_start.shape[0]
    for wpass in range(2):
        for j in range(nz):
            z = zonelist_zone(zkind, limit, j)
            if z < 0:
                break
            if wpass == 0 and not wm_zero and st.z_nr_free[z] - (1 << o) < wmark[z]:
                continue  # zone_watermark_fast() at ALLOC_WMARK_LOW
            got = engine_rmqueue(st, c, z, o, m)
            if got >= 0:
                return got, z
    return -1, -1


@kernel(nrt=False)
def _split_to_tail(st: ModelState, i: int, target: int, z: int, low: int, high: int, mt: int) -> None:
    """Split free block ``i`` (off its list) so ``target`` heads an order-``low`` block left off the
    lists; the other pieces go to the list tails (used last)."""
    while high > low:
        high -= 1
        size = 1 << high
        if target >= i + size:
            add_to_free_list(st, i, z, high, mt, True)
            i = i + size
        else:
            add_to_free_list(st, i + size, z, high, mt, True)


@kernel(nrt=False)
def carve_pretrace(st: ModelState, touched: np.ndarray, cur: np.ndarray, o: int) -> int:
    """A block of order ``o`` allocated before the trace: untouched by every event so far and free
    in the model, searched from the top of memory down (``cur[1]``: the search pointer); taken off
    the free lists silently and marked allocated.  -1 when none is left."""
    size = 1 << o
    npages = st.pg_state.shape[0]
    while True:
        a = (cur[1] - size) & ~(size - 1)
        if a < 0:
            return -1
        cur[1] = a
        z = zone_of(st, a)
        if z < 0:
            # below every zone start, or in a gap between zones: jump to the end of the zone below
            best = -1
            for zz in range(st.z_start.shape[0]):
                if st.z_end[zz] <= a and st.z_end[zz] > best:
                    best = st.z_end[zz]
            if best < 0:
                return -1
            cur[1] = best
            continue
        if a + size > st.z_end[z] or a + size > npages:
            continue
        h = block_head(st, a)
        if h < 0 or int(st.pg_state[h]) != PG_BUDDY or h + (1 << int(st.pg_order[h])) < a + size:
            continue
        fresh = True
        for p in range(a, a + size):
            if touched[p] != 0:
                fresh = False
                break
        if not fresh:
            continue
        ho = int(st.pg_order[h])
        hm = int(st.pg_mt[h])
        del_page_from_free_list(st, h, z)
        _split_to_tail(st, h, a, z, o, ho, hm)
        st.pg_state[a] = PG_ALLOC
        st.pg_order[a] = o
        st.pg_mt[a] = st.pb_mt[a >> st.geo[G_PB_ORDER]]
        st.z_nr_alloc[z] += size
        for p in range(a, a + size):
            touched[p] = 1
        return a


@kernel(nrt=False)
def _us(t: int) -> int:
    return (t // 1000) * 1000


@kernel(nrt=False)
def _next_us(t: int) -> int:
    return (t // 1000 + 1) * 1000


@kernel(nrt=False)
def _put(O, ne: int, t: int, c: int, pid: int, comm: int, ev: int,  # type: ignore[no-untyped-def]
         pfn: int, order: int, mt: int, gfp: int, a: int, b: int, cc: int) -> int:
    """Write one event at row ``ne`` of the output columns ``O``; returns ``ne + 1``."""
    O[0][ne] = _us(t)
    O[1][ne] = c
    O[2][ne] = pid
    O[3][ne] = comm
    O[4][ne] = ev
    O[5][ne] = pfn
    O[6][ne] = order
    O[7][ne] = mt
    O[8][ne] = gfp
    O[9][ne] = a
    O[10][ne] = b
    O[11][ne] = cc
    return ne + 1


@kernel_entry(nrt=False)
def emit_chunk(st: ModelState, zkind: np.ndarray, wmark: np.ndarray, ph_batch: np.ndarray, ph_wm0: np.ndarray,
               lay_batch: np.ndarray, lay_high: np.ndarray, cur: np.ndarray, costs: np.ndarray, clock: np.ndarray,
               zlock: np.ndarray, touched: np.ndarray, hk: np.ndarray, hv: np.ndarray, ht: np.ndarray, hn: np.ndarray,
               r_ts: np.ndarray, r_cpu: np.ndarray, r_pid: np.ndarray, r_comm: np.ndarray, r_kind: np.ndarray,
               r_order: np.ndarray, r_mt: np.ndarray, r_gfp: np.ndarray, r_mask: np.ndarray, r_life: np.ndarray,
               r_id: np.ndarray, r_phase: np.ndarray, start: int,
               o_ts: np.ndarray, o_cpu: np.ndarray, o_pid: np.ndarray, o_comm: np.ndarray, o_ev: np.ndarray,
               o_pfn: np.ndarray, o_order: np.ndarray, o_mt: np.ndarray, o_gfp: np.ndarray, o_a: np.ndarray,
               o_b: np.ndarray, o_c: np.ndarray) -> tuple[int, int, int]:
    """Serve requests ``start..``; returns (next request, events written, status).

    status: 0 done; 1 output nearly full; 2 live map over half full (grow it); 3 tracepoint log
    overflow (a bug: the log is sized for the largest drain).  ``cur``: [phase in force, carve
    pointer].  ``o_a``, ``o_b``, ``o_c``: percpu_refill (or -1), fallback_order, and
    fallback_migratetype / change_ownership packed as ``fb_mt * 2 + chown``, per event.
    """
    O = (o_ts, o_cpu, o_pid, o_comm, o_ev, o_pfn, o_order, o_mt, o_gfp, o_a, o_b, o_c)
    n = r_ts.shape[0]
    base = st.geo[0]
    pbo = st.geo[G_PB_ORDER]
    nz = st.z_start.shape[0]
    ncpu = st.pcp_batch.shape[0]
    cap_out = o_ts.shape[0]
    tp_cap = st.tp.shape[0]
    alloc_ns, free_ns, zl_ns, drain_ns = costs[0], costs[1], costs[2], costs[3]
    ne = 0
    i = start
    while i < n:
        if ne + tp_cap + 8 > cap_out:
            return i, ne, ST_OUT_FULL
        if 2 * (hn[0] + 1) > hk.shape[0]:
            return i, ne, ST_MAP_FULL
        ph = r_phase[i]
        if ph != cur[0]:  # the pcp batch/high in force (boot pageset: batch 1, high 0)
            cur[0] = ph
            b = ph_batch[ph]
            for cc in range(ncpu):
                for z in range(nz):
                    if b > 0:
                        st.pcp_batch[cc, z] = b
                        st.pcp_high[cc, z] = 0 if b <= 1 else lay_high[cc, z]
                    else:
                        st.pcp_batch[cc, z] = lay_batch[cc, z]
                        st.pcp_high[cc, z] = lay_high[cc, z]
        c = r_cpu[i]
        o = r_order[i]
        kind = r_kind[i]
        pid = r_pid[i]
        comm = r_comm[i]
        t = max(clock[c], r_ts[i])
        st.tp[0, 0] = 0
        if kind == KIND_ALLOC:
            m = r_mt[i]
            if m < 0 or m >= MIGRATE_ISOLATE:
                m = MIGRATE_MOVABLE
            got, gz = engine_alloc(st, zkind, wmark, ph_wm0[ph] != 0, c, o, m, gfp_zone_limit(r_mask[i]))
            # the zone->lock section(s) the allocation went through
            nl = st.tp[0, 0]
            if nl >= tp_cap:
                return i, ne, ST_LOG_OVERFLOW
            pz = -1
            for r in range(1, nl + 1):
                z = st.tp[r, TP_ZONE]
                if z != pz:
                    if pz >= 0:
                        zlock[pz] = _next_us(t)
                    t = max(t, zlock[z])
                    pz = z
                ev = st.tp[r, TP_EV]
                p = st.tp[r, TP_PAGE]
                ro = st.tp[r, TP_ORDER]
                if ev == TP_ZONE_LOCKED:
                    ne = _put(O, ne, t, c, pid, comm, EV_ZL, p + base, ro, st.tp[r, TP_MT], -1, st.tp[r, TP_A], -1, -1)
                    for q in range(p, p + (1 << ro)):
                        touched[q] = 1
                else:
                    ne = _put(O, ne, t, c, pid, comm, EV_EXTFRAG, p + base, ro, st.tp[r, TP_MT], -1, -1,
                              st.tp[r, TP_A], st.tp[r, TP_B] * 2 + st.tp[r, TP_C])
                    # the event names the whole free block stolen from: none of it may be carved
                    # later as "allocated before the trace"
                    for q in range(p, p + (1 << st.tp[r, TP_A])):
                        touched[q] = 1
                t += zl_ns
            if pz >= 0:
                zlock[pz] = _next_us(t)
            st.tp[0, 0] = 0
            pfn = got + base if got >= 0 else -1
            ne = _put(O, ne, t, c, pid, comm, EV_ALLOC, pfn, o, r_mt[i], r_gfp[i], -1, -1, -1)
            t += alloc_ns
            if got >= 0 and r_life[i] >= 0:
                _h_put(hk, hv, ht, hn, r_id[i], got, t)  # a free (on any CPU) comes after this event
        else:
            rid = r_id[i]
            j = -1
            if rid < 0:  # allocated before the trace
                j = carve_pretrace(st, touched, cur, o)
            else:
                s = _h_find(hk, rid)
                if s >= 0:
                    j = hv[s]
                    t = max(t, ht[s] + 1000)
                    _h_del(hk, hv, ht, hn, s)
            if j >= 0:
                z = zone_of(st, j)
                ne = _put(O, ne, t, c, pid, comm, EV_FREE, j + base, o, -1, -1, -1, -1, -1)
                t += free_ns
                if kind == KIND_FREE_BATCHED and o == 0:
                    ne = _put(O, ne, t, c, pid, comm, EV_BATCHED, j + base, 0, -1, -1, -1, -1, -1)
                    t += free_ns
                # free_pages_prepare() is over: the block leaves the allocated state
                st.z_nr_alloc[z] -= 1 << o
                st.pg_state[j] = PG_NONE
                pbmt = int(st.pb_mt[j >> pbo])  # get_pfnblock_migratetype()
                if kind != KIND_FREE_CORE and pcp_allowed_order(o, pbo) and pbmt != MIGRATE_ISOLATE:
                    free_unref_page_commit(st, c, z, j, o, pbmt)
                    nl = st.tp[0, 0]
                    if nl >= tp_cap:
                        return i, ne, ST_LOG_OVERFLOW
                    if nl > 0:  # free_pcppages_bulk(): one zone->lock section
                        t = max(t, zlock[z])
                        for r in range(1, nl + 1):
                            ne = _put(O, ne, t, c, pid, comm, EV_DRAIN, st.tp[r, TP_PAGE] + base,
                                      st.tp[r, TP_ORDER], st.tp[r, TP_MT], -1, -1, -1, -1)
                            t += drain_ns
                        zlock[z] = _next_us(t)
                    st.tp[0, 0] = 0
                else:  # free_one_page() / __free_pages_core(): zone->lock, no tracepoint
                    t = max(t, zlock[z])
                    __free_one_page(st, j, z, o, pbmt, kind == KIND_FREE_CORE)
                    t += zl_ns
                    zlock[z] = _next_us(t)
        clock[c] = t
        i += 1
    return i, ne, ST_DONE


# ----------------------------------------------------------------- Python driver
_OUT = {
    "ts_ns": np.int64, "cpu": np.int32, "pid": np.int32, "comm": np.int32, "ev": np.int8, "pfn": np.int64,
    "order": np.int8, "mt": np.int8, "gfp": np.int32, "aux0": np.int8, "aux1": np.int8, "aux2": np.int8,
}  # fmt: skip


def _blocks(lo: int, hi: int, n_orders: int) -> tuple[np.ndarray, np.ndarray]:
    """Maximal aligned blocks of [lo, hi), ascending: (heads, orders) (``__free_pages_memory()``)."""
    top = 1 << (n_orders - 1)
    heads: list[int] = []
    orders: list[int] = []
    mid_lo = min(max(lo, -(-lo // top) * top), hi)
    mid_hi = max(hi // top * top, mid_lo)
    for a, b in ((lo, mid_lo), (mid_hi, hi)):
        i = a
        while i < b:
            o = n_orders - 1
            while o > 0 and ((i & ((1 << o) - 1)) != 0 or i + (1 << o) > b):
                o -= 1
            heads.append(i)
            orders.append(o)
            i += 1 << o
    mid = np.arange(mid_lo, mid_hi, top, dtype=np.int64)
    h = np.concatenate([np.array(heads, np.int64), mid])
    o = np.concatenate([np.array(orders, np.int64), np.full(len(mid), n_orders - 1, np.int64)])
    srt = np.argsort(h, kind="stable")
    return h[srt], o[srt]


def _initial_state(layout: MemoryLayout) -> ModelState:
    """Every present page free (maximal blocks, ascending pfn at the list tails), lists empty.

    The state ``replay.model.initial_state.infer_initial_state()`` infers for a trace with no event,
    built from the RAM ranges directly (no per-page temporaries: a 1 TiB guest stays cheap).
    """
    from replay.model.initial_state import _add_free_blocks, model_zones
    from replay.model.state import new_state

    zones = model_zones(layout)
    n_orders = layout.nr_page_orders
    ncpu = layout.nr_cpus
    high = np.array([[z.pcp_high_for(c) for z in zones] for c in range(ncpu)], np.int64)
    batch = np.array([[z.pcp_batch_for(c) for z in zones] for c in range(ncpu)], np.int64)
    st = new_state(np.array([z.zone_start_pfn for z in zones]), np.array([z.zone_end_pfn for z in zones]), ncpu,
                   n_orders=n_orders, pageblock_order=layout.pageblock_order, pcp_high=high, pcp_batch=batch)
    base = int(st.geo[0])
    ranges = tuple(layout.ram_ranges) or tuple((z.zone_start_pfn, z.zone_start_pfn + z.present) for z in zones)
    fz, fh, fo = [], [], []
    for zi, z in enumerate(zones):
        for s, e in ranges:
            lo, hi = max(s, z.zone_start_pfn) - base, min(e, z.zone_end_pfn) - base
            if lo < hi:
                h, o = _blocks(lo, hi, n_orders)
                fz.append(np.full(len(h), zi, np.int64))
                fh.append(h)
                fo.append(o)
    h, o, zz = np.concatenate(fh), np.concatenate(fo), np.concatenate(fz)
    srt = np.argsort(h, kind="stable")
    _add_free_blocks(st, zz[srt], o[srt], h[srt])
    st.z_present[:] = st.z_nr_free
    return st


class EngineEmitter(HeldBack):
    """Stateful engine emitter: feed request batches, get canonical record batches in order.

    Same interface as the stand-in ``parsers.synthetic.emit.Emitter``.  ``params``: the
    ``EmitParams`` costs; its ``batch``/``high`` override the layout's per-zone pcp values when
    set (``batch`` != 63 or ``high`` > 0), as ``phases``' ``pcp_batch`` does per phase.
    ``layout``: default :func:`layout_for_guest` of the machine.
    """

    DESCRIPTION = DESCRIPTION
    name = "engine"

    def __init__(self, machine: Any, params: Any = None, *, phases: list[dict] | None = None,
                 source: str = "<synthetic>", layout: MemoryLayout | None = None) -> None:
        from parsers.synthetic.emit import EmitParams

        if machine.cpus > 4096:
            raise ValueError("the emitter packs (time, cpu) sort keys for up to 4096 CPUs")
        self.m = machine
        self.p = p = params or EmitParams()
        self.layout = layout or layout_for_guest(machine.memory, machine.cpus)
        st = _initial_state(self.layout)
        self.lay_batch = st.pcp_batch.copy()
        self.lay_high = st.pcp_high.copy()
        if p.batch != EmitParams().batch:
            self.lay_batch[:] = p.batch
        if p.high > 0:
            self.lay_high[:] = p.high
        # the largest burst one request can log: a drain of everything on a CPU's lists
        # (at most high + one refill of each of the 13 lists) or a refill with a steal per block
        cap = int(self.lay_high.max()) + 16 * int(max(self.lay_batch.max(), 2)) + 4096
        self.st = with_trace_log(st, cap)
        from replay.model.initial_state import model_zones

        zones = model_zones(self.layout)
        self.zone_names = [z.name for z in zones]
        self.zkind = zone_kinds(self.zone_names)
        self.wmark = np.array([z.wmark_low for z in zones], np.int64)
        nph = max(128, len(phases or []) + 1)
        self.ph_batch = np.zeros(nph, np.int64)
        self.ph_wm0 = np.zeros(nph, np.int64)
        for ph in phases or []:
            if ph.get("pcp_batch"):
                self.ph_batch[ph["index"]] = int(ph["pcp_batch"])
            if ph.get("watermarks_zero"):
                self.ph_wm0[ph["index"]] = 1
        self.cur = np.array([-1, len(st.pg_state)], np.int64)  # phase in force, carve pointer
        self.costs = np.array([p.alloc_ns, p.free_ns, p.zone_locked_ns, p.drain_ns], np.int64)
        self.clock = np.zeros(st.pcp_batch.shape[0], np.int64)
        self.zlock = np.zeros(len(zones), np.int64)
        self.touched = np.zeros(len(st.pg_state), np.uint8)
        self._new_map(1 << 16)
        self.cap = 1 << 20
        self.held: dict[str, np.ndarray] | None = None
        self.buf: dict[str, np.ndarray] | None = None
        self.seq = 0
        self.schema = arrow_schema()
        self.source = source
        self._gfp_masks: dict[str, int | None] = {}
        self.comm_dict: pa.Array | None = None
        self.gfp_dict: pa.Array | None = None

    # pipeline metadata
    @property
    def high(self) -> dict[str, int]:
        return {n: int(self.lay_high[0, z]) for z, n in enumerate(self.zone_names)}

    def pcp_info(self) -> dict[str, Any]:
        return {"batch": {n: int(self.lay_batch[0, z]) for z, n in enumerate(self.zone_names)}, "high": self.high}

    def _new_map(self, cap: int) -> None:
        self.hk = np.full(cap, -1, np.int64)
        self.hv = np.zeros(cap, np.int64)
        self.ht = np.zeros(cap, np.int64)
        self.hn = np.zeros(1, np.int64)

    def _grow_map(self) -> None:
        ok, ov, ot = self.hk, self.hv, self.ht
        self._new_map(len(ok) * 2)
        _h_rehash(ok, ov, ot, self.hk, self.hv, self.ht, self.hn)

    def _gfp_mask_table(self) -> np.ndarray:
        names = self.gfp_dict.to_pylist() if self.gfp_dict is not None else []
        out = np.full(len(names) + 1, -1, np.int64)
        for k, g in enumerate(names):
            if g not in self._gfp_masks:
                self._gfp_masks[g] = decode_gfp(g)
            mk = self._gfp_masks[g]
            if mk is not None:
                out[k] = int(mk) & ((1 << 62) - 1)
        return out

    def feed(self, batch: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
        """Emit the events of one request batch; yields the events that are final (time-ordered)."""
        n = batch.num_rows
        if n == 0:
            return
        col = lambda name: batch.column(name).to_numpy(zero_copy_only=False)  # noqa: E731
        comm_arr = batch.column("comm")
        gfp_arr = batch.column("gfp_flags")
        self.comm_dict = comm_arr.dictionary
        self.gfp_dict = gfp_arr.dictionary
        gfp_idx = gfp_arr.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        masks = self._gfp_mask_table()[gfp_idx]  # index -1 -> the trailing -1
        req = (
            col("ts_ns").astype(np.int64), col("cpu").astype(np.int64), col("pid").astype(np.int64),
            comm_arr.indices.to_numpy(zero_copy_only=False).astype(np.int64), col("kind").astype(np.int64),
            col("order").astype(np.int64), col("migratetype").astype(np.int64), gfp_idx, masks,
            col("lifetime_ns").astype(np.int64), col("req_id").astype(np.int64), col("phase").astype(np.int64),
        )  # fmt: skip
        if int(req[1].max()) >= len(self.clock):
            raise ValueError(f"request on cpu {int(req[1].max())}: the machine has {len(self.clock)} CPUs")
        # one buffer (reused across batches): the events held back from the last batch, then the new ones
        held = self.held or {}
        h = len(held.get("ts_ns", ()))
        if self.buf is None or len(self.buf["ts_ns"]) < h + self.cap:
            self.buf = {k: np.empty(h + self.cap, t) for k, t in _OUT.items()}
        buf = self.buf
        for k, v in held.items():
            buf[k][:h] = v
        ne_all = h
        i = 0
        while i < n:
            i2, ne, status = emit_chunk(
                self.st, self.zkind, self.wmark, self.ph_batch, self.ph_wm0, self.lay_batch, self.lay_high, self.cur,
                self.costs, self.clock, self.zlock, self.touched, self.hk, self.hv, self.ht, self.hn, *req, i,
                *(v[ne_all:] for v in buf.values()))  # fmt: skip
            ne_all += ne
            if status == ST_MAP_FULL:
                self._grow_map()
            elif status == ST_LOG_OVERFLOW:
                raise RuntimeError("tracepoint log overflow (one request logged more rows than its capacity)")
            elif status == ST_OUT_FULL:
                self.cap *= 2
                grown = {k: np.empty(ne_all + self.cap, t) for k, t in _OUT.items()}
                for k, v in buf.items():
                    grown[k][:ne_all] = v[:ne_all]
                self.buf = buf = grown
            i = i2
        ev = {k: v[:ne_all] for k, v in buf.items()}
        # every later event happens at or after the last request's time (microsecond-aligned)
        ready, self.held = release_sorted(ev, (int(req[0][-1]) // 1000) * 1000)
        yield from self._batch(ready)

    def _batch(self, ev: dict[str, np.ndarray]) -> Iterator[pa.RecordBatch]:
        """One record batch of events already in (ts_ns, cpu, emission) order."""
        n = len(ev["ts_ns"])
        if n == 0:
            return
        e = ev["ev"]
        pfn = ev["pfn"]
        xf = e == EV_EXTFRAG
        fbo = ev["aux1"]
        pbo = int(self.st.geo[G_PB_ORDER])
        extfrag = [
            pa.array(fbo.astype(np.int8), mask=~xf),
            pa.array(np.full(n, pbo, np.int8), mask=~xf),
            pa.array((ev["aux2"] >> 1).astype(np.int8), mask=~xf),
            pa.array(fbo < pbo, mask=~xf),
            pa.array((ev["aux2"] & 1) == 1, mask=~xf),
        ]
        batch = event_batch(self, ev, percpu_refill=pa.array(ev["aux0"] == 1, mask=e != EV_ZL),
                            failed=pa.array((e == EV_ALLOC) & (pfn < 0)), extfrag=extfrag)
        self.seq += n
        yield batch


def emit(requests: Iterable[pa.RecordBatch], machine: Any, params: Any = None, *, phases: list[dict] | None = None,
         source: str = "<synthetic>", layout: MemoryLayout | None = None) -> Iterator[pa.RecordBatch]:
    """Canonical event batches (sorted by ts_ns, cpu, seq) for a stream of request batches."""
    if phases is None and hasattr(requests, "phase_info"):
        phases = requests.phase_info()  # type: ignore[union-attr]
    em = EngineEmitter(machine, params, phases=phases, source=source, layout=layout)
    for b in requests:
        yield from em.feed(b)
    yield from em.finish()


__all__ = ["DESCRIPTION", "EngineEmitter", "carve_pretrace", "emit", "emit_chunk", "engine_alloc", "engine_rmqueue"]
