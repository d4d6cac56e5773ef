"""The model state before the first traced event.

Tracing never starts at the true beginning, so the state is inferred in a first
pass over the events (issue 3, item 5):

* the first event touching a page decides its state: a free
  (``mm_page_free``/``_batched``) means the block was allocated before the trace;
  a drain, or an ``mm_page_alloc`` with no ``mm_page_alloc_zone_locked`` before
  it, means it sat on that CPU's per-CPU list; a zone_locked (or extfrag) means it
  was free in the buddy;
* the pages no event touches are split into maximal aligned buddy blocks, and
  with a snapshot (``--snapshot proc_before``) just enough of them are kept free
  to reproduce its buddyinfo per zone and order (blocks the trace takes from the
  buddy first, then lowest pfn; a surplus block gives up its upper half, which is
  taken as allocated); the rest is allocated;
* a boot trace (no snapshot before it) starts from the boot layout: everything
  present and untouched is free except ``present - managed`` pages, reserved
  from the top of each zone (memblock allocates top-down).

The pageblock migratetype is the migratetype of the first zone_locked or drain in
the pageblock (the fallback migratetype for an extfrag), else MOVABLE.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from replay.buddy import add_to_free_list
from replay.layout import MemoryLayout, ZoneLayout, snapshot_free_counts
from replay.pcp import pcp_add, pcp_allowed_order
from replay.state import (
    MIGRATE_MOVABLE,
    MIGRATE_PCPTYPES,
    PG_ALLOC,
    PG_NONE,
    ModelState,
    kernel,
    kernel_entry,
    new_state,
)

EV_ALLOC, EV_ZL, EV_FREE, EV_BATCHED, EV_DRAIN, EV_EXTFRAG = 0, 1, 2, 3, 4, 5


def model_zones(layout: MemoryLayout) -> list[ZoneLayout]:
    """The populated zones the model keeps (in pfn order)."""
    return [z for z in layout.zones if z.spanned > 0 and z.present > 0]


@kernel_entry
def first_touch(ev: np.ndarray, pfn: np.ndarray, order: np.ndarray, base: int, npages: int, first: np.ndarray) -> None:
    """``first[j]`` = index of the first event whose block covers page index ``j`` (-1: none)."""
    for k in range(ev.shape[0] - 1, -1, -1):
        p = int(pfn[k])
        if p < 0 or int(ev[k]) < 0:
            continue
        o = int(order[k])
        if int(ev[k]) == EV_EXTFRAG:
            o = 0
        i = p - base
        if i < 0 or i + (1 << o) > npages:
            continue
        for j in range(i, i + (1 << o)):
            first[j] = k


@kernel_entry
def seed_touched(st: ModelState, first: np.ndarray, ev: np.ndarray, pfn: np.ndarray, order: np.ndarray,
                 mt: np.ndarray, cpu: np.ndarray, zid: np.ndarray, present: np.ndarray, base: int) -> None:
    """Place the blocks whose first event says "allocated" or "on a pcp list" before the trace.

    pcp list order: ``mm_page_alloc`` takes the head, ``free_pcppages_bulk`` the tail, so the
    list is built as [first allocated ... last allocated] + [last drained ... first drained].
    """
    pbo = st.geo[5]
    ncpu = st.pcp_count.shape[0]
    n = ev.shape[0]
    for step in range(2 * n):
        # pass 1: everything but drains, in trace order; pass 2: drains, in reverse order
        k = step if step < n else 2 * n - 1 - step
        e = int(ev[k])
        p = int(pfn[k])
        if p < 0:
            continue
        if step < n and e != EV_FREE and e != EV_BATCHED and e != EV_ALLOC:
            continue
        if step >= n and e != EV_DRAIN:
            continue
        o = int(order[k])
        i = p - base
        if i < 0 or i + (1 << o) > st.pg_state.shape[0] or i & ((1 << o) - 1):
            continue
        z = zid[i]
        if z < 0:
            continue
        whole = True
        for j in range(i, i + (1 << o)):
            if first[j] != k or zid[j] != z or not present[j]:
                whole = False
                break
        if not whole:
            continue
        m = int(mt[k])
        if e == EV_DRAIN or (e == EV_ALLOC and pcp_allowed_order(o, pbo) and 0 <= m < MIGRATE_PCPTYPES):
            c = int(cpu[k])
            if c < 0 or c >= ncpu:
                c = 0
            if m < 0 or m >= MIGRATE_PCPTYPES:
                m = MIGRATE_MOVABLE
            pcp_add(st, c, z, i, o, m, True)
        elif e == EV_FREE or e == EV_BATCHED:
            st.pg_state[i] = PG_ALLOC
            st.pg_order[i] = o
            st.pg_mt[i] = int(st.pb_mt[i >> pbo])
            st.z_nr_alloc[z] += 1 << o


def _pageblock_mt(st: ModelState, ea_ev: np.ndarray, pfn: np.ndarray, mt: np.ndarray, fb_mt: np.ndarray,
                  base: int) -> None:
    pbo = int(st.geo[5])
    sel = (pfn >= 0) & ((ea_ev == EV_ZL) | (ea_ev == EV_DRAIN) | (ea_ev == EV_EXTFRAG))
    idx = np.nonzero(sel)[0]
    if len(idx) == 0:
        return
    blk = (pfn[idx] - base) >> pbo
    ok = (blk >= 0) & (blk < len(st.pb_mt))
    idx, blk = idx[ok], blk[ok]
    ublk, first = np.unique(blk, return_index=True)
    k = idx[first]
    m = np.where(ea_ev[k] == EV_EXTFRAG, fb_mt[k], mt[k])
    good = (m >= 0) & (m < 5)
    st.pb_mt[ublk[good]] = m[good].astype(np.int8)


def present_mask(layout: MemoryLayout, zones: list[ZoneLayout], base: int, npages: int) -> np.ndarray:
    """Pages that exist: System RAM (iomem) inside a zone span.

    Without iomem, the qemu x86-64 e820 map of a guest of the snapshot's size is tried
    (``replay.layout._ram_ranges_x86_qemu``) and kept when it gives every zone its
    ``present`` count; otherwise each zone's first ``present`` pfns.
    """
    ranges = tuple(layout.ram_ranges)
    if not ranges:
        try:
            from replay.layout import _ram_ranges_x86_qemu

            total = sum(z.present for z in zones)
            step = 128 << 20
            guess = _ram_ranges_x86_qemu(-(-(total * layout.page_size) // step) * step, layout.page_size)
            ok = all(sum(max(0, min(e, z.zone_end_pfn) - max(s, z.zone_start_pfn)) for s, e in guess) == z.present
                     for z in zones)
            ranges = guess if ok else ()
        except Exception:  # noqa: BLE001 - only a better guess; fall back below
            ranges = ()
    pres = np.zeros(npages, bool)
    for z in zones:
        a, b = z.zone_start_pfn - base, z.zone_end_pfn - base
        if ranges:
            for s, e in ranges:
                lo, hi = max(a, s - base), min(b, e - base)
                if lo < hi:
                    pres[lo:hi] = True
        else:
            pres[a:min(b, a + z.present)] = True
    return pres


def _maximal_blocks(avail: np.ndarray, zid: np.ndarray, n_orders: int) -> list[tuple[int, np.ndarray]]:
    """Decompose ``avail`` into maximal aligned blocks inside one zone: [(order, heads)]."""
    avail = avail.copy()
    out = []
    for o in range(n_orders - 1, -1, -1):
        size = 1 << o
        a = avail.reshape(-1, size)
        zz = zid.reshape(-1, size)
        sel = a.all(axis=1) & (zz[:, 0] == zz[:, -1]) & (zz[:, 0] >= 0)
        heads = np.nonzero(sel)[0] * size
        a[sel] = False
        out.append((o, heads))
    return out


def infer_initial_state(ev: np.ndarray, pfn: np.ndarray, order: np.ndarray, mt: np.ndarray, cpu: np.ndarray,
                        fb_mt: np.ndarray, layout: MemoryLayout, *, snapshot: MemoryLayout | None = None,
                        boot: bool = False) -> tuple[ModelState, dict[str, Any]]:
    """Build the pre-trace model state; returns (state, report)."""
    zones = model_zones(layout)
    n_orders = layout.nr_page_orders
    n_cpus = max([layout.nr_cpus] + [c + 1 for c in layout.cpu_ids] + [int(cpu.max()) + 1 if len(cpu) else 1])
    high = np.zeros((n_cpus, len(zones)), np.int64)
    batch = np.ones((n_cpus, len(zones)), np.int64)
    for zi, z in enumerate(zones):
        for c in range(n_cpus):
            high[c, zi] = z.pcp_high_for(c)
            batch[c, zi] = z.pcp_batch_for(c)
    st = new_state(np.array([z.zone_start_pfn for z in zones]), np.array([z.zone_end_pfn for z in zones]), n_cpus,
                   n_orders=n_orders, pageblock_order=layout.pageblock_order, pcp_high=high, pcp_batch=batch)
    base = int(st.geo[0])
    npages = len(st.pg_state)
    zid = np.full(npages, -1, np.int8)
    for zi in range(len(zones)):
        zid[st.z_start[zi]:st.z_end[zi]] = zi
    pres = present_mask(layout, zones, base, npages)
    _pageblock_mt(st, ev, pfn, mt, fb_mt, base)

    first = np.full(npages, -1, np.int64)
    first_touch(ev, pfn, order, base, npages, first)
    seed_touched(st, first, ev, pfn, order, mt, cpu, zid, pres, base)
    touched = first >= 0
    fe = np.where(touched, ev[np.maximum(first, 0)], -1)
    # pages first taken from the buddy must start free
    must_free = touched & ((fe == EV_ZL) | (fe == EV_EXTFRAG))
    placed = st.pg_state != PG_NONE
    # pages covered by a placed block (tails) are placed too
    cover = np.zeros(npages + 1, np.int64)
    heads = np.nonzero(placed)[0]
    np.add.at(cover, heads, 1)
    np.add.at(cover, heads + (1 << st.pg_order[heads].astype(np.int64)), -1)
    covered = np.cumsum(cover[:-1]) > 0
    cand = pres & (zid >= 0) & ~covered
    mk_prefix = np.concatenate([[0], np.cumsum(must_free & cand)])

    targets: dict[str, list[int]] | None = None
    snap_counts = None
    if snapshot is not None and not boot:
        try:
            snap_counts = snapshot_free_counts(snapshot)
        except Exception:  # noqa: BLE001 - a snapshot without buddyinfo just does not seed
            snap_counts = None
    free_heads: list[tuple[int, int, int]] = []  # (zone, order, head)
    for zi, z in enumerate(zones):
        zmask = cand & (zid == zi)
        zero = np.zeros(npages, bool)
        zone_only = zero
        zone_only[st.z_start[zi]:st.z_end[zi]] = zmask[st.z_start[zi]:st.z_end[zi]]
        blocks = _maximal_blocks(zone_only, zid, n_orders)
        pool: dict[int, list[int]] = {o: h.tolist() for o, h in blocks}
        tgt = None
        if snap_counts is not None:
            tgt = snap_counts.get((z.node, z.name))
        elif boot:
            # reserve present - managed pages from the top of the zone
            reserve = max(0, z.present - z.managed)
            allh = sorted(((h, o) for o, hs in pool.items() for h in hs), reverse=True)
            keep: dict[int, list[int]] = {o: [] for o in pool}
            for h, o in allh:
                if reserve >= (1 << o) and mk_prefix[h + (1 << o)] == mk_prefix[h]:
                    reserve -= 1 << o
                    continue
                keep[o].append(h)
            pool = keep
        given_up: list[tuple[int, int]] = []  # allocated regions (head, order) cut from surplus blocks
        deficit = [0] * n_orders
        for o in range(n_orders - 1, -1, -1):
            lst = pool.get(o, [])
            if tgt is None:
                for h in lst:
                    free_heads.append((zi, o, h))
                continue
            need = int(tgt[o]) if o < len(tgt) else 0
            lst.sort(key=lambda h, o=o: (mk_prefix[h + (1 << o)] == mk_prefix[h], h))
            kept = 0
            for n_kept, h in enumerate(lst):
                has_mk = mk_prefix[h + (1 << o)] != mk_prefix[h]
                if n_kept < need or o == 0 and has_mk:
                    free_heads.append((zi, o, h))
                    kept += 1
                    continue
                if o == 0:
                    continue
                half = 1 << (o - 1)
                lo_mk = mk_prefix[h + half] != mk_prefix[h]
                hi_mk = mk_prefix[h + 2 * half] != mk_prefix[h + half]
                if lo_mk and hi_mk:
                    free_heads.append((zi, o, h))  # both halves are needed free: keep the block
                    kept += 1
                elif hi_mk:
                    pool.setdefault(o - 1, []).append(h + half)
                    given_up.append((h, o - 1))
                else:
                    pool.setdefault(o - 1, []).append(h)
                    given_up.append((h + half, o - 1))
            deficit[o] = max(0, need - kept)
        # Orders still short of the snapshot: carve free blocks out of the allocated regions, each
        # the lower half of an order+1 unit whose upper half stays allocated (so it cannot merge).
        if tgt is not None and any(deficit):
            regions = sorted(given_up, key=lambda r: (-r[1], r[0]))
            for o in range(n_orders - 2, -1, -1):
                d = deficit[o]
                rest: list[tuple[int, int]] = []
                for h, r in regions:
                    if d <= 0 or r < o + 1:
                        rest.append((h, r))
                        continue
                    unit = 1 << (o + 1)
                    for u in range(h, h + (1 << r), unit):
                        if d > 0:
                            free_heads.append((zi, o, u))
                            d -= 1
                        else:
                            rest.append((u, o + 1))
                regions = rest
    # free blocks go on the lists in ascending pfn order at the tail (memblock_free_all order)
    free_heads.sort(key=lambda t: (t[2]))
    for zi, o, h in free_heads:
        add_to_free_list(st, h, zi, o, int(st.pb_mt[h >> int(st.geo[5])]), True)
    # everything else present is allocated (order-0 heads)
    is_free = np.zeros(npages + 1, np.int64)
    if free_heads:
        fh = np.array([h for _, _, h in free_heads], np.int64)
        fo = np.array([o for _, o, _ in free_heads], np.int64)
        np.add.at(is_free, fh, 1)
        np.add.at(is_free, fh + (1 << fo), -1)
    freecov = np.cumsum(is_free[:-1]) > 0
    rest = pres & (zid >= 0) & ~covered & ~freecov
    st.pg_state[rest] = PG_ALLOC
    st.pg_order[rest] = 0
    st.pg_mt[rest] = st.pb_mt[np.nonzero(rest)[0] >> int(st.geo[5])]
    for zi in range(len(zones)):
        st.z_nr_alloc[zi] += int(np.count_nonzero(rest & (zid == zi)))
    st.z_present[:] = st.z_nr_free + st.z_nr_pcp + st.z_nr_alloc

    report: dict[str, Any] = {
        "boot": boot,
        "seeded_from_snapshot": snap_counts is not None,
        "zones": [z.name for z in zones],
        "free_pages": st.z_nr_free.tolist(),
        "pcp_pages": st.z_nr_pcp.tolist(),
        "allocated_pages": st.z_nr_alloc.tolist(),
        "present_pages": st.z_present.tolist(),
        "touched_pages": int(touched.sum()),
        "must_free_pages": int(must_free.sum()),
        "_first": first,
    }
    if snap_counts is not None:
        report["snapshot_free_pages"] = [
            int(sum(int(c) << o for o, c in enumerate(snap_counts.get((z.node, z.name), [])))) for z in zones]
    return st, report
