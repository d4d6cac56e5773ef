"""Kernel-faithful synthetic emission: workload requests through the replay model.

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

from collections import namedtuple
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from parsers.synthetic.emit import HeldBack, gfp_lookup, release_sorted
from parsers.synthetic.emitted import EVENT_COLUMNS, KIND_ALLOC, KIND_FREE_BATCHED, KIND_FREE_CORE, put_event
from replay.events.arrays import EV_ALLOC, EV_BATCHED, EV_DRAIN, EV_EXTFRAG, EV_FREE, EV_ZL
from replay.jit import kernel, kernel_entry
from replay.model.buddy import __free_one_page, __rmqueue, add_to_free_list, del_page_from_free_list
from replay.model.layout import MemoryLayout
from replay.model.layout_x86 import layout_for_guest
from replay.model.pcp import __rmqueue_pcplist, free_unref_page_commit, pcp_allowed_order
from replay.model.simulate import Zonelist, gfp_zone_limit, zonelist_of, zonelist_zone
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

#: what ``pagereplay.synthetic.emitter`` says for this emitter
DESCRIPTION = "engine: replay.synth.emit (the replay model of 6.1: buddy, migratetypes, fallback, per-CPU lists, zones)"

# status codes of emit_chunk
ST_DONE, ST_OUT_FULL, ST_MAP_FULL, ST_LOG_OVERFLOW = 0, 1, 2, 3

#: the guest: what ``get_page_from_freelist()`` walks (``replay.model.simulate.Zonelist``: zone
#: kinds, low watermarks), the layout's per-CPU, per-zone pcp batch and high
Guest = namedtuple("Guest", ("zonelist", "batch", "high"))
#: per phase of the workload: the pcp batch in force (0: the layout's; 1: the boot pageset) and
#: whether the watermarks are still zero
Phases = namedtuple("Phases", ("batch", "wm_zero"))
#: ``costs``: ns per alloc, free, zone_locked/extfrag and drain event (``EmitParams``); ``cpu``:
#: each CPU's clock; ``zone_lock``: when each zone's lock is next free
Clocks = namedtuple("Clocks", ("costs", "cpu", "zone_lock"))
#: ``cur``: [phase in force, carve pointer of ``carve_pretrace``]; ``touched``: pages an event named
Progress = namedtuple("Progress", ("cur", "touched"))
#: req_id -> (page, time of its allocation event): open addressing, ``n[0]`` entries, key -1 empty
LiveMap = namedtuple("LiveMap", ("key", "page", "time", "n"))
#: a request batch (``REQUEST_SCHEMA``, gfp as its dictionary index, -1 none) plus the gfp mask
Requests = namedtuple(
    "Requests", ("ts", "cpu", "pid", "comm", "kind", "order", "mt", "gfp", "mask", "life", "id", "phase")
)
#: the emitted events: ``EVENT_COLUMNS``, ``aux0`` percpu_refill (or -1), ``aux1`` fallback_order,
#: ``aux2`` fallback_migratetype and change_ownership packed as ``fb_mt * 2 + chown``
Emitted = namedtuple("Emitted", (*EVENT_COLUMNS, "aux0", "aux1", "aux2"))


# ----------------------------------------------------------------- live map (req_id -> page)
@kernel(nrt=False)
def _home(key: int, mask: int) -> int:
    """Home slot of ``key``: multiplicative hashing (request ids are dense: ``key & mask`` would
    make one long probe cluster of the live window).  Products stay below 2**63."""
    return (((key & 0xFFFFFFFF) * 0x5BD1E995) >> 13) & mask


@kernel(nrt=False)
def live_find(m: LiveMap, key: int) -> int:
    """Slot of ``key`` (linear probing), -1 if absent."""
    mask = m.key.shape[0] - 1
    s = _home(key, mask)
    while True:
        k = m.key[s]
        if k == key:
            return s
        if k == -1:
            return -1
        s = (s + 1) & mask


@kernel(nrt=False)
def live_put(m: LiveMap, key: int, page: int, t: int) -> None:
    mask = m.key.shape[0] - 1
    s = _home(key, mask)
    while m.key[s] != -1 and m.key[s] != key:
        s = (s + 1) & mask
    if m.key[s] == -1:
        m.n[0] += 1
    m.key[s] = key
    m.page[s] = page
    m.time[s] = t


@kernel(nrt=False)
def live_del(m: LiveMap, s: int) -> None:
    """Delete slot ``s`` with backward-shift deletion (no tombstones)."""
    mask = m.key.shape[0] - 1
    m.n[0] -= 1
    i = s
    j = s
    while True:
        j = (j + 1) & mask
        if m.key[j] == -1:
            break
        home = _home(m.key[j], mask)
        # leave the entry where it is if its home lies cyclically in (i, j]
        if i <= j:
            if i < home <= j:
                continue
        elif home > i or home <= j:
            continue
        m.key[i] = m.key[j]
        m.page[i] = m.page[j]
        m.time[i] = m.time[j]
        i = j
    m.key[i] = -1


@kernel_entry(nrt=False)
def live_rehash(old: LiveMap, new: LiveMap) -> None:
    for s in range(old.key.shape[0]):
        if old.key[s] != -1:
            live_put(new, old.key[s], old.page[s], old.time[s])


def new_live_map(cap: int) -> LiveMap:
    return LiveMap(np.full(cap, -1, np.int64), np.zeros(cap, np.int64), np.zeros(cap, np.int64), np.zeros(1, np.int64))


# ----------------------------------------------------------------- model steps
@kernel(nrt=False)
def engine_rmqueue(st: ModelState, c: int, z: int, o: int, m: int) -> int:
    """6.1 ``rmqueue()``: ``rmqueue_pcplist()`` for pcp orders, else ``rmqueue_buddy()``.

    (When ``rmqueue_bulk()`` finds nothing, 6.1 tries ``rmqueue_buddy()``, which finds
    nothing either without ``ALLOC_HARDER``: not repeated here.)  Simulate mode's
    ``sim_rmqueue`` also records the zone->lock section; here the tracepoint log does.
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
def engine_alloc(st: ModelState, zl: Zonelist, wm_zero: bool, c: int, o: int, m: int,
                 limit: int) -> tuple[int, int]:
    """``get_page_from_freelist()`` as simulate mode runs it: (page index, zone) or (-1, -1)."""
    nz = st.z_start.shape[0]
    for wpass in range(2):
        for j in range(nz):
            z = zonelist_zone(zl.zkind, limit, j)
            if z < 0:
                break
            if wpass == 0 and not wm_zero and st.z_nr_free[z] - (1 << o) < zl.wmark_low[z]:
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
def _next_us(t: int) -> int:
    return (t // 1000 + 1) * 1000


@kernel(nrt=False)
def _put(out: Emitted, ne: int, t: int, c: int, pid: int, comm: int, ev: int, pfn: int, order: int, mt: int,
         gfp: int, a: int, b: int, cc: int) -> int:  # fmt: skip
    """Write one event at row ``ne`` of ``out``; returns ``ne + 1``."""
    put_event(out, ne, t, c, pid, comm, ev, pfn, order, mt, gfp)
    out.aux0[ne] = a
    out.aux1[ne] = b
    out.aux2[ne] = cc
    return ne + 1


@kernel(nrt=False)
def _set_phase_pcp(st: ModelState, guest: Guest, batch: int) -> None:
    """The pcp batch/high of a phase on every CPU and zone (batch 1: the boot pageset, high 0;
    batch 0: the layout's)."""
    for c in range(st.pcp_batch.shape[0]):
        for z in range(st.z_start.shape[0]):
            if batch > 0:
                st.pcp_batch[c, z] = batch
                st.pcp_high[c, z] = 0 if batch <= 1 else guest.high[c, z]
            else:
                st.pcp_batch[c, z] = guest.batch[c, z]
                st.pcp_high[c, z] = guest.high[c, z]


@kernel(nrt=False)
def _freed_block(st: ModelState, prog: Progress, live: LiveMap, rid: int, o: int, t: int) -> tuple[int, int]:
    """(page index or -1, time) of the block a free of request id ``rid`` releases: the allocation's
    (after its event), or for ``rid`` -1 one allocated before the trace (``carve_pretrace``)."""
    if rid < 0:
        return carve_pretrace(st, prog.touched, prog.cur, o), t
    s = live_find(live, rid)
    if s < 0:
        return -1, t
    j = live.page[s]
    t = max(t, live.time[s] + 1000)
    live_del(live, s)
    return j, t


@kernel(nrt=False)
def _drain_events(st: ModelState, nl: int, c: int, pid: int, comm: int, t: int, drain_ns: int, out: Emitted,
                  ne: int) -> tuple[int, int]:  # fmt: skip
    """One ``mm_page_pcpu_drain`` per block of the tracepoint log (``free_pcppages_bulk()``); (events, time)."""
    base = st.geo[0]
    for r in range(1, nl + 1):
        ne = _put(out, ne, t, c, pid, comm, EV_DRAIN, st.tp[r, TP_PAGE] + base, st.tp[r, TP_ORDER], st.tp[r, TP_MT],
                  -1, -1, -1, -1)  # fmt: skip
        t += drain_ns
    return ne, t


@kernel(nrt=False)
def _zone_locked_events(st: ModelState, prog: Progress, nl: int, c: int, pid: int, comm: int, t: int, zl_ns: int,
                        zone_lock: np.ndarray, out: Emitted, ne: int) -> tuple[int, int]:  # fmt: skip
    """The events of the zone->lock section(s) an allocation went through, from the ``nl`` rows of
    the tracepoint log: ``mm_page_alloc_zone_locked`` per block ``__rmqueue_smallest()`` took,
    ``mm_page_alloc_extfrag`` per ``__rmqueue_fallback()`` steal.  A zone's section starts once
    its lock is free and frees it a microsecond after its last event; (events, time)."""
    base = st.geo[0]
    pz = -1
    for r in range(1, nl + 1):
        z = st.tp[r, TP_ZONE]
        if z != pz:
            if pz >= 0:
                zone_lock[pz] = _next_us(t)
            t = max(t, zone_lock[z])
            pz = z
        p = st.tp[r, TP_PAGE]
        ro = st.tp[r, TP_ORDER]
        if st.tp[r, TP_EV] == TP_ZONE_LOCKED:
            ne = _put(out, ne, t, c, pid, comm, EV_ZL, p + base, ro, st.tp[r, TP_MT], -1, st.tp[r, TP_A], -1, -1)
            for q in range(p, p + (1 << ro)):
                prog.touched[q] = 1
        else:
            ne = _put(out, ne, t, c, pid, comm, EV_EXTFRAG, p + base, ro, st.tp[r, TP_MT], -1, -1,
                      st.tp[r, TP_A], st.tp[r, TP_B] * 2 + st.tp[r, TP_C])  # fmt: skip
            # the event names the whole free block stolen from: none of it may be carved later as
            # "allocated before the trace"
            for q in range(p, p + (1 << st.tp[r, TP_A])):
                prog.touched[q] = 1
        t += zl_ns
    if pz >= 0:
        zone_lock[pz] = _next_us(t)
    return ne, t


# One function for the request loop: the allocation and free paths below would each be a call of
# their own otherwise, too large for LLVM to inline, passing every array of the model state, the
# requests and the outputs as separate arguments for every request (~20% of the emission).
@kernel_entry(nrt=False)
def emit_chunk(st: ModelState, guest: Guest, phases: Phases, clk: Clocks, prog: Progress, live: LiveMap,
               req: Requests, start: int, out: Emitted) -> tuple[int, int, int]:  # fmt: skip
    """Serve requests ``start..`` into ``out``; returns (next request, events written, status).

    status: 0 done; 1 output nearly full; 2 live map over half full (grow it); 3 tracepoint log
    overflow (a bug: the log is sized for the largest drain).
    """
    n = req.ts.shape[0]
    base = st.geo[0]
    pbo = st.geo[G_PB_ORDER]
    cap_out = out.ts_ns.shape[0]
    tp_cap = st.tp.shape[0]
    alloc_ns, free_ns, zl_ns, drain_ns = clk.costs[0], clk.costs[1], clk.costs[2], clk.costs[3]
    zone_lock = clk.zone_lock
    ne = 0
    i = start
    while i < n:
        if ne + tp_cap + 8 > cap_out:
            return i, ne, ST_OUT_FULL
        if 2 * (live.n[0] + 1) > live.key.shape[0]:
            return i, ne, ST_MAP_FULL
        ph = req.phase[i]
        if ph != prog.cur[0]:  # the pcp batch/high in force (boot pageset: batch 1, high 0)
            prog.cur[0] = ph
            _set_phase_pcp(st, guest, phases.batch[ph])
        c = req.cpu[i]
        o = req.order[i]
        kind = req.kind[i]
        pid = req.pid[i]
        comm = req.comm[i]
        t = max(clk.cpu[c], req.ts[i])
        st.tp[0, 0] = 0
        if kind == KIND_ALLOC:
            m = req.mt[i]
            if m < 0 or m >= MIGRATE_ISOLATE:
                m = MIGRATE_MOVABLE
            got, _z = engine_alloc(st, guest.zonelist, phases.wm_zero[ph] != 0, c, o, m,
                                   gfp_zone_limit(req.mask[i]))  # fmt: skip
            nl = st.tp[0, 0]
            if nl >= tp_cap:
                return i, ne, ST_LOG_OVERFLOW
            ne, t = _zone_locked_events(st, prog, nl, c, pid, comm, t, zl_ns, zone_lock, out, ne)
            st.tp[0, 0] = 0
            pfn = got + base if got >= 0 else -1
            ne = _put(out, ne, t, c, pid, comm, EV_ALLOC, pfn, o, req.mt[i], req.gfp[i], -1, -1, -1)
            t += alloc_ns
            if got >= 0 and req.life[i] >= 0:
                live_put(live, req.id[i], got, t)  # a free (on any CPU) comes after this event
        else:
            j, t = _freed_block(st, prog, live, req.id[i], o, t)
            if j >= 0:
                z = zone_of(st, j)
                ne = _put(out, ne, t, c, pid, comm, EV_FREE, j + base, o, -1, -1, -1, -1, -1)
                t += free_ns
                if kind == KIND_FREE_BATCHED and o == 0:
                    ne = _put(out, ne, t, c, pid, comm, EV_BATCHED, j + base, 0, -1, -1, -1, -1, -1)
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
                        t = max(t, zone_lock[z])
                        ne, t = _drain_events(st, nl, c, pid, comm, t, drain_ns, out, ne)
                        zone_lock[z] = _next_us(t)
                    st.tp[0, 0] = 0
                else:  # free_one_page() / __free_pages_core(): zone->lock, no tracepoint
                    t = max(t, zone_lock[z])
                    __free_one_page(st, j, z, o, pbmt, kind == KIND_FREE_CORE)
                    t += zl_ns
                    zone_lock[z] = _next_us(t)
        clk.cpu[c] = t
        i += 1
    return i, ne, ST_DONE


# ----------------------------------------------------------------- Python driver
_OUT = {**EVENT_COLUMNS, "aux0": np.int8, "aux1": np.int8, "aux2": np.int8}
assert tuple(_OUT) == Emitted._fields


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

        p = self._setup(machine, params, source)
        self.layout = layout or layout_for_guest(machine.memory, machine.cpus)
        st = _initial_state(self.layout)
        batch = st.pcp_batch.copy()
        high = st.pcp_high.copy()
        if p.batch != EmitParams().batch:
            batch[:] = p.batch
        if p.high > 0:
            high[:] = p.high
        # the largest burst one request can log: a drain of everything on a CPU's lists
        # (at most high + one refill of each of the 13 lists) or a refill with a steal per block
        cap = int(high.max()) + 16 * int(max(batch.max(), 2)) + 4096
        self.st = with_trace_log(st, cap)
        from replay.model.initial_state import model_zones

        zones = model_zones(self.layout)
        self.zone_names = [z.name for z in zones]
        self.guest = Guest(zonelist_of(zones), batch, high)
        nph = max(128, len(phases or []) + 1)
        self.phases = Phases(np.zeros(nph, np.int64), np.zeros(nph, np.int64))
        for ph in phases or []:
            if ph.get("pcp_batch"):
                self.phases.batch[ph["index"]] = int(ph["pcp_batch"])
            if ph.get("watermarks_zero"):
                self.phases.wm_zero[ph["index"]] = 1
        self.clocks = Clocks(np.array([p.alloc_ns, p.free_ns, p.zone_locked_ns, p.drain_ns], np.int64),
                             np.zeros(st.pcp_batch.shape[0], np.int64), np.zeros(len(zones), np.int64))  # fmt: skip
        self.progress = Progress(np.array([-1, len(st.pg_state)], np.int64), np.zeros(len(st.pg_state), np.uint8))
        self.live = new_live_map(1 << 16)
        self.buf: dict[str, np.ndarray] | None = None

    # pipeline metadata
    @property
    def high(self) -> dict[str, int]:
        return {n: int(self.guest.high[0, z]) for z, n in enumerate(self.zone_names)}

    def pcp_info(self) -> dict[str, Any]:
        return {"batch": {n: int(self.guest.batch[0, z]) for z, n in enumerate(self.zone_names)}, "high": self.high}

    def _grow_map(self) -> None:
        old = self.live
        self.live = new_live_map(len(old.key) * 2)
        live_rehash(old, self.live)

    def _gfp_mask_table(self) -> np.ndarray:
        """The gfp mask of each gfp text of the batch (-1 unknown), and -1 for "no gfp" last."""
        masks, known = gfp_lookup(self.gfp_dict.to_pylist() if self.gfp_dict is not None else [], self._gfp_masks)
        return np.where(known, (masks & np.uint64((1 << 62) - 1)).astype(np.int64), -1)

    def feed(self, batch: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
        """Emit the events of one request batch; yields the events that are final (time-ordered)."""
        n = batch.num_rows
        if n == 0:
            return
        cols = self._request_columns(batch)
        req = Requests(**cols, mask=self._gfp_mask_table()[cols["gfp"]])  # gfp -1 -> the trailing -1
        ncpu = len(self.clocks.cpu)
        if int(req.cpu.max()) >= ncpu:
            raise ValueError(f"request on cpu {int(req.cpu.max())}: the machine has {ncpu} CPUs")
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
            out = Emitted(**{k: v[ne_all:] for k, v in buf.items()})
            i2, ne, status = emit_chunk(self.st, self.guest, self.phases, self.clocks, self.progress, self.live, req, i, out)
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
        ready, self.held = release_sorted(ev, (int(req.ts[-1]) // 1000) * 1000)
        yield from self._batch(ready)

    def _own_columns(self, ev: dict[str, np.ndarray]) -> dict[str, Any]:
        n = len(ev["ts_ns"])
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
        return {"percpu_refill": pa.array(ev["aux0"] == 1, mask=e != EV_ZL),
                "failed": pa.array((e == EV_ALLOC) & (pfn < 0)), "extfrag": extfrag}


def emit(requests: Iterable[pa.RecordBatch], machine: Any, params: Any = None, *, phases: list[dict] | None = None,
         source: str = "<synthetic>", layout: MemoryLayout | None = None) -> Iterator[pa.RecordBatch]:
    """Canonical event batches (sorted by ts_ns, cpu, seq) for a stream of request batches."""
    if phases is None and hasattr(requests, "phase_info"):
        phases = requests.phase_info()  # type: ignore[union-attr]
    yield from EngineEmitter(machine, params, phases=phases, source=source, layout=layout).stream(requests)


__all__ = ["DESCRIPTION", "EngineEmitter", "carve_pretrace", "emit", "emit_chunk", "engine_alloc", "engine_rmqueue"]
