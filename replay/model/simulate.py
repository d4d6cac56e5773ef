"""Simulate mode: the model chooses the pfns itself from the trace's requests.

Each ``mm_page_alloc`` is a request (cpu, order, migratetype, gfp); the model
serves it the way 6.1 ``get_page_from_freelist()`` would: zones from the highest
one the gfp mask allows (``gfp_zone``) down the zonelist, first pass at the low
watermark (``ALLOC_WMARK_LOW``), then without watermarks (reclaim is not
modelled: a request the trace saw succeed succeeds if memory exists); per-CPU
lists for pcp orders (``rmqueue_pcplist`` with ``rmqueue_bulk`` refills), the
buddy otherwise (``rmqueue_buddy``).  Frees follow allocation identity: a trace
page maps to the model page allocated for it (``sim_map``), pages allocated
before the trace map to themselves (the initial state is the exact one), and
frees go through ``free_unref_page_commit`` (draining past ``high``) or
``free_one_page``.  ``mm_page_alloc_zone_locked``/``pcpu_drain``/``extfrag``
events are the kernel's own decisions and are ignored: the model makes its own.
"""

from __future__ import annotations

from collections import namedtuple
from typing import Any

import numpy as np

from replay.model.anomalies import A_FREE_OF_PCP, A_PFN_OUT_OF_RANGE, A_SIM_ALLOC_FAILED
from replay.model.buddy import __free_one_page, __rmqueue
from replay.events.arrays import EV_ALLOC, EV_BATCHED, EV_FREE, Trace
from replay.model.sections import SEC_ALLOC, SEC_DRAIN, SEC_FALLBACK, SEC_FREE, SEC_REFILL, sec_new
from replay.model.exact import release_block, set_allocated
from replay.model.pcp import __rmqueue_pcplist, free_unref_page_commit, pcp_add, pcp_allowed_order
from replay.model.replayed import Replayed
from replay.model.state import (
    C_BULK_INFERRED,
    C_FAILED_ALLOCS,
    C_STEALS,
    G_PB_ORDER,
    G_PFN_BASE,
    MIGRATE_ISOLATE,
    MIGRATE_MOVABLE,
    MIGRATE_PCPTYPES,
    PG_ALLOC,
    PG_FREEING,
    PG_NONE,
    PG_TAKEN,
    ModelState,
    block_head,
    zone_of,
)
from replay.jit import kernel, kernel_entry

# zone kinds (enum zone_type order on x86-64)
ZK_DMA, ZK_DMA32, ZK_NORMAL, ZK_MOVABLE = 0, 1, 2, 3
GFP_DMA, GFP_HIGHMEM, GFP_DMA32, GFP_MOVABLE = 0x01, 0x02, 0x04, 0x08

#: what ``get_page_from_freelist()`` walks, one argument of the compiled loops: per model zone
#: its kind (``ZK_*``, ``zone_kinds``: the zonelist order) and its low watermark (int64 each)
Zonelist = namedtuple("Zonelist", ["zkind", "wmark_low"])


def new_sim_map(st: ModelState) -> np.ndarray:
    """trace page index -> model page index (identity before any allocation)."""
    return np.arange(len(st.pg_state), dtype=np.int32)


def zone_kinds(names: list[str]) -> np.ndarray:
    """``ZK_*`` of each zone named (an unknown name: Normal)."""
    kinds = {"DMA": ZK_DMA, "DMA32": ZK_DMA32, "Normal": ZK_NORMAL, "Movable": ZK_MOVABLE}
    return np.array([kinds.get(n, ZK_NORMAL) for n in names], np.int64)


def zonelist_of(zones: Any) -> Zonelist:
    """The ``Zonelist`` of the model zones ``zones`` (``initial_state.model_zones``)."""
    return Zonelist(zone_kinds([z.name for z in zones]), np.array([z.wmark_low for z in zones], np.int64))


@kernel(nrt=False)
def zonelist_zone(zkind: np.ndarray, limit: int, j: int) -> int:
    """The ``j``-th zone of the zonelist ``get_page_from_freelist()`` walks for a request whose
    gfp allows zone kinds up to ``limit`` (``for_next_zone_zonelist_nodemask``: the highest kind
    first, within a kind the highest-numbered zone first); -1 past its end."""
    nz = zkind.shape[0]
    for kind in range(3, -1, -1):
        if kind > limit:
            continue
        for z in range(nz - 1, -1, -1):
            if zkind[z] == kind:
                if j == 0:
                    return z
                j -= 1
    return -1


@kernel(nrt=False)
def gfp_zone_limit(gfp: int) -> int:
    """6.1 ``gfp_zone()``: the highest zone kind a request may use."""
    if gfp < 0:
        return ZK_NORMAL
    if gfp & GFP_DMA:
        return ZK_DMA
    if gfp & GFP_DMA32:
        return ZK_DMA32
    if (gfp & GFP_MOVABLE) and (gfp & GFP_HIGHMEM):
        return ZK_MOVABLE
    return ZK_NORMAL


@kernel(nrt=False)
def sim_section(S, kind: int, c: int, z: int, t: int, k: int, pages: int, nev: int) -> int:  # type: ignore[no-untyped-def]
    """Open and close a zone->lock section of one call (simulate mode records whole sections)."""
    return sec_new(S, kind, c, z, t, k, c, pages, nev)


@kernel(nrt=False)
def sim_rmqueue(st: ModelState, S, c: int, z: int, o: int, m: int, t: int, k: int) -> int:  # type: ignore[no-untyped-def]
    """6.1 ``rmqueue()``: pcp list for pcp orders, else ``rmqueue_buddy``; records the section."""
    steals = st.ctr[C_STEALS]
    if pcp_allowed_order(o, st.geo[G_PB_ORDER]) and m < MIGRATE_PCPTYPES:
        i, refilled = __rmqueue_pcplist(st, c, z, o, m, 0)
        if refilled > 0:
            kind = SEC_FALLBACK if st.ctr[C_STEALS] != steals else SEC_REFILL
            sid = sim_section(S, kind, c, z, t, k, refilled << o, refilled)
            S.fallbacks[sid] = st.ctr[C_STEALS] - steals
        if i >= 0:
            st.pcp_free_factor[c, z] >>= 1
        return i
    i = __rmqueue(st, z, o, m, 0)
    if i >= 0:
        st.pg_state[i] = PG_ALLOC
        st.pg_order[i] = o
        st.pg_mt[i] = m
        st.z_nr_alloc[z] += 1 << o
        sid = sim_section(S, SEC_FALLBACK if st.ctr[C_STEALS] != steals else SEC_ALLOC, c, z, t, k, 1 << o, 1)
        S.fallbacks[sid] = st.ctr[C_STEALS] - steals
    return i


@kernel(nrt=False)
def sim_alloc(st: ModelState, S, zl: Zonelist, c: int, o: int, m: int, limit: int,  # type: ignore[no-untyped-def]
              t: int, k: int) -> tuple[int, int]:
    """``get_page_from_freelist()``: zones from the highest allowed down, low watermark first."""
    nz = st.z_start.shape[0]
    for wpass in range(2):
        for j in range(nz):
            z = zonelist_zone(zl.zkind, limit, j)
            if z < 0:
                break
            if wpass == 0 and st.z_nr_free[z] - (1 << o) < zl.wmark_low[z]:
                continue
            got = sim_rmqueue(st, S, c, z, o, m, t, k)
            if got >= 0:
                return got, z
    return -1, -1


@kernel(nrt=False)
def sim_free_commit(st: ModelState, S, c: int, j: int, z: int, o: int, t: int, k: int) -> int:  # type: ignore[no-untyped-def]
    """Free block ``j`` to this CPU's pcp list or straight to the buddy; returns the section or -1."""
    pbo = st.geo[G_PB_ORDER]
    pbmt = int(st.pb_mt[j >> pbo])
    if pcp_allowed_order(o, pbo) and pbmt != MIGRATE_ISOLATE:
        before = st.pcp_count[c, z] + (1 << o)
        nb = free_unref_page_commit(st, c, z, j, o, pbmt)
        if nb > 0:
            return sim_section(S, SEC_DRAIN, c, z, t, k, before - st.pcp_count[c, z], nb)
        return -1
    __free_one_page(st, j, z, o, pbmt, False)
    return sim_section(S, SEC_FREE, c, z, t, k, 1 << o, 1)


@kernel_entry(nrt=False)
def simulate_chunk(st: ModelState, S, zl: Zonelist, simmap: np.ndarray, tr: Trace, out: Replayed,  # type: ignore[no-untyped-def]
                   k0: int, k1: int) -> None:
    """Serve events ``k0..k1-1`` of ``tr`` with the model's own placement (simulate mode), writing
    ``out`` (``replay.model.replayed``) and the page map ``simmap`` (``new_sim_map``)."""
    ev, ts, cpu, pfn, order, mt, gfp, deferred = tr.ev, tr.ts, tr.cpu, tr.pfn, tr.order, tr.mt, tr.gfp, tr.deferred
    out_anom, out_sec, out_zone, out_pfn, acount = out.anom, out.sec, out.zone, out.pfn, out.acount
    base = st.geo[G_PFN_BASE]
    npages = st.pg_state.shape[0]
    for k in range(k0, k1):
        e = int(ev[k])
        c = int(cpu[k])
        p = int(pfn[k])
        o = int(order[k])
        t = ts[k]
        out_sec[k] = -1
        out_zone[k] = -1
        out_anom[k] = 0
        out_pfn[k] = -1
        if e != EV_ALLOC and e != EV_FREE and e != EV_BATCHED:
            continue
        if p < 0:
            if e == EV_ALLOC:
                st.ctr[C_FAILED_ALLOCS] += 1
            continue
        ti = p - base
        if ti < 0 or ti + (1 << o) > npages or o >= st.geo[1]:
            out_anom[k] = A_PFN_OUT_OF_RANGE
            acount[A_PFN_OUT_OF_RANGE] += 1
            continue
        if e == EV_ALLOC:
            m = int(mt[k])
            if m < 0 or m >= MIGRATE_ISOLATE:
                m = MIGRATE_MOVABLE
            got, gz = sim_alloc(st, S, zl, c, o, m, gfp_zone_limit(int(gfp[k])), t, k)
            if got < 0:
                out_anom[k] = A_SIM_ALLOC_FAILED
                acount[A_SIM_ALLOC_FAILED] += 1
                continue
            if S.n[0] > 0 and S.first[S.n[0] - 1] == k:
                out_sec[k] = S.n[0] - 1
            out_zone[k] = gz
            out_pfn[k] = got + base
            for d in range(1 << o):
                simmap[ti + d] = got + d
            continue
        # frees follow allocation identity
        j = int(simmap[ti])
        pre = 0
        if j == ti and e == EV_FREE:
            h = block_head(st, j)
            hs = int(st.pg_state[h]) if h >= 0 else PG_NONE
            if hs != PG_ALLOC and hs != PG_TAKEN and hs != PG_FREEING:
                # The trace frees a page it never allocated and that was not allocated before
                # it: the kernel took it through __alloc_pages_bulk() (no mm_page_alloc).
                # Serve that untraced request now, as the bulk allocator would (pcp lists).
                pbm = int(st.pb_mt[ti >> st.geo[G_PB_ORDER]])
                if pbm >= MIGRATE_PCPTYPES:
                    pbm = MIGRATE_MOVABLE
                got, gz = sim_alloc(st, S, zl, c, o, pbm, ZK_NORMAL, t, k)
                if got >= 0:
                    for d in range(1 << o):
                        simmap[ti + d] = got + d
                    j = got
                    pre = A_FREE_OF_PCP
        z = zone_of(st, j)
        if z < 0 or j + (1 << o) > st.z_end[z] or j & ((1 << o) - 1):
            out_anom[k] = A_PFN_OUT_OF_RANGE
            acount[A_PFN_OUT_OF_RANGE] += 1
            continue
        out_zone[k] = z
        out_pfn[k] = j + base
        if e == EV_BATCHED and int(st.pg_state[j]) == PG_FREEING and int(st.pg_order[j]) == 0:
            st.z_nr_alloc[z] -= 1
            st.pg_state[j] = PG_NONE
            out_sec[k] = sim_free_commit(st, S, c, j, z, 0, t, k)
            continue
        a = release_block(st, c, j, z, o)
        if pre != 0:
            a = pre
            st.ctr[C_BULK_INFERRED] += 1
        if a != 0:
            out_anom[k] = a
            acount[a] += 1
        if e == EV_FREE and int(deferred[k]) & 1:
            set_allocated(st, j, z, o, st.pb_mt[j >> st.geo[G_PB_ORDER]], PG_FREEING)
            continue
        out_sec[k] = sim_free_commit(st, S, c, j, z, o, t, k)


__all__ = ["simulate_chunk", "new_sim_map", "zone_kinds", "Zonelist", "zonelist_of", "A_SIM_ALLOC_FAILED", "pcp_add"]
