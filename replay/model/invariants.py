"""Model invariants (issue 3): checked at the end of every replay, periodically with ``--check``.

1. pages conserved: free + pcp + allocated = present, per zone, both in the running
   counters and recomputed from the per-page arrays;
2. no two free buddies of the same order left unmerged where ``__free_one_page``
   would merge them;
3. free lists (and pcp lists) agree with the per-page state: every list is well
   linked, holds only heads of its (state, order, migratetype[, cpu]), its length
   is right, and every PG_BUDDY/PG_PCP head is on exactly one list; blocks do not
   overlap.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from replay.model.state import (
    G_FA_LISTS,
    G_NR_ORDERS,
    G_NR_ZONES,
    G_PB_ORDER,
    MIGRATE_PCPTYPES,
    N_MT,
    NR_PCP_LISTS,
    PG_ALLOC,
    PG_BUDDY,
    PG_FREEING,
    PG_NONE,
    PG_PCP,
    PG_TAKEN,
    ModelState,
    order_to_pindex,
)
from replay.jit import kernel_entry


@kernel_entry(nrt=False)
def check_lists(st: ModelState) -> int:
    """Walk every list; return the number of inconsistencies found."""
    bad = 0
    n_fa = st.geo[G_FA_LISTS]
    nz = st.geo[G_NR_ZONES]
    n_orders = st.geo[G_NR_ORDERS]
    seen = 0
    for lid in range(st.l_head.shape[0]):
        i = int(st.l_head[lid])
        prev = -1
        cnt = 0
        while i >= 0:
            if int(st.pg_prev[i]) != prev:
                bad += 1
            if lid < n_fa:
                z = lid // (n_orders * N_MT)
                o = (lid // N_MT) % n_orders
                m = lid % N_MT
                if int(st.pg_state[i]) != PG_BUDDY or int(st.pg_order[i]) != o or int(st.pg_mt[i]) != m:
                    bad += 1
                if not (st.z_start[z] <= i < st.z_end[z]):
                    bad += 1
            else:
                q = lid - n_fa
                p = q % NR_PCP_LISTS
                z = (q // NR_PCP_LISTS) % nz
                c = q // (NR_PCP_LISTS * nz)
                if int(st.pg_state[i]) != PG_PCP or int(st.pg_cpu[i]) != c:
                    bad += 1
                elif order_to_pindex(int(st.pg_mt[i]), int(st.pg_order[i])) != p:
                    bad += 1
                if not (st.z_start[z] <= i < st.z_end[z]):
                    bad += 1
            prev = i
            i = int(st.pg_next[i])
            cnt += 1
            if cnt > st.pg_state.shape[0]:
                bad += 1  # a cycle
                break
        if prev != int(st.l_tail[lid]) or cnt != st.l_len[lid]:
            bad += 1
        seen += cnt
    heads = 0
    for i in range(st.pg_state.shape[0]):
        s = int(st.pg_state[i])
        if s == PG_BUDDY or s == PG_PCP:
            heads += 1
    if heads != seen:
        bad += 1
    return bad


@kernel_entry(nrt=False)
def count_states(st: ModelState, out: np.ndarray) -> int:
    """Pages per (zone, state) from the per-page arrays into ``out[z, state]``; returns overlaps."""
    overlaps = 0
    n = st.pg_state.shape[0]
    nz = st.z_start.shape[0]
    end_prev = 0
    for i in range(n):
        s = int(st.pg_state[i])
        if s == PG_NONE:
            continue
        if i < end_prev:
            overlaps += 1
        size = 1 << int(st.pg_order[i])
        end_prev = i + size
        z = -1
        for zz in range(nz):
            if st.z_start[zz] <= i < st.z_end[zz]:
                z = zz
        if z < 0 or i + size > st.z_end[z]:
            overlaps += 1
            continue
        out[z, s] += size
    return overlaps


@kernel_entry(nrt=False)
def count_unmerged(st: ModelState) -> int:
    """Free buddies of the same order that ``__free_one_page`` would have merged."""
    bad = 0
    n = st.pg_state.shape[0]
    max_order = st.geo[G_NR_ORDERS] - 1
    pbo = st.geo[G_PB_ORDER]
    nz = st.z_start.shape[0]
    for i in range(n):
        if int(st.pg_state[i]) != PG_BUDDY:
            continue
        o = int(st.pg_order[i])
        if o >= max_order:
            continue
        b = i ^ (1 << o)
        if b < i or b >= n:
            continue  # count each pair once
        if int(st.pg_state[b]) != PG_BUDDY or int(st.pg_order[b]) != o:
            continue
        same = False
        for z in range(nz):
            if st.z_start[z] <= i < st.z_end[z] and st.z_start[z] <= b < st.z_end[z]:
                same = True
        if not same:
            continue
        if o >= pbo:
            m1 = int(st.pb_mt[i >> pbo])
            m2 = int(st.pb_mt[b >> pbo])
            if m1 != m2 and (m1 >= MIGRATE_PCPTYPES or m2 >= MIGRATE_PCPTYPES):
                continue
        bad += 1
    return bad


def check_invariants(st: ModelState) -> dict[str, Any]:
    """All invariants; ``ok`` is True when every one holds."""
    nz = len(st.z_start)
    cnt = np.zeros((nz, 8), np.int64)
    overlaps = int(count_states(st, cnt))
    free = cnt[:, PG_BUDDY]
    pcp = cnt[:, PG_PCP]
    alloc = cnt[:, PG_ALLOC] + cnt[:, PG_TAKEN] + cnt[:, PG_FREEING]
    counters_ok = bool(np.array_equal(free, st.z_nr_free) and np.array_equal(pcp, st.z_nr_pcp)
                       and np.array_equal(alloc, st.z_nr_alloc))
    conserved = bool(np.array_equal(free + pcp + alloc, st.z_present))
    pcp_ok = bool(np.array_equal(pcp, st.pcp_count.sum(axis=0)))
    unmerged = int(count_unmerged(st))
    list_errors = int(check_lists(st))
    ok = counters_ok and conserved and pcp_ok and unmerged == 0 and list_errors == 0 and overlaps == 0
    return {
        "ok": ok,
        "pages_conserved": conserved,
        "counters_match_pages": counters_ok,
        "pcp_counts_match": pcp_ok,
        "unmerged_buddies": unmerged,
        "list_errors": list_errors,
        "overlapping_blocks": overlaps,
        "free_pages": free.tolist(),
        "pcp_pages": pcp.tolist(),
        "allocated_pages": alloc.tolist(),
        "present_pages": st.z_present.tolist(),
    }
