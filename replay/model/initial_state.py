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
the pageblock (the fallback migratetype for an extfrag); with a snapshot, the untouched
pageblocks holding seeded free pages are typed so that free pages per type follow its
pagetypeinfo (``_seed_pageblock_types``); else MOVABLE.

Every full-guest pass (first touch, pageblock types, maximal blocks, candidates, free-list
insertion, the "allocated before the trace" marking) is a compiled linear pass without
full-size temporaries: the pass is ~0.2 s for a 35 GiB layout and 14.7M events.  The report
records the seed (``free_blocks_per_order``, the snapshot's ``snapshot_free_blocks_per_order``
and ``snapshot_pcp_pages``, ``seed_vs_pagetypeinfo``) for the end check (``replay.results.endcheck``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from parsers.schema import Event, UntracedEvent
from replay.jit import kernel, kernel_entry
from replay.model.buddy import add_to_free_list
from replay.model.layout import DEFAULT_MIGRATETYPE_NAMES, MemoryLayout, ZoneLayout, snapshot_free_counts
from replay.model.layout_x86 import ram_ranges_x86_qemu
from replay.model.pcp import pcp_add, pcp_allowed_order
from replay.model.state import (
    G_PB_ORDER,
    G_PFN_BASE,
    MIGRATE_MOVABLE,
    MIGRATE_PCPTYPES,
    PG_ALLOC,
    ORIGIN_PRE_TRACE,
    ORIGIN_SEEDED,
    PAGE_ALLOC_COSTLY_ORDER,
    PG_BUDDY,
    PG_NONE,
    PG_PCP,
    ModelState,
    new_state,
)

#: the kprobe rows (record --untraced) the initial state reads, ``UntracedEvent`` codes
UX_ISOLATE = int(UntracedEvent.ISOLATE_FREE_PAGE)
UX_TAKE_OFF = int(UntracedEvent.TAKE_PAGE_OFF_BUDDY)
UX_PUTBACK = int(UntracedEvent.PUTBACK_ISOLATED_PAGE)
UX_PUT_BACK = int(UntracedEvent.PUT_PAGE_BACK_BUDDY)
UX_SPLIT_PAGE = int(UntracedEvent.SPLIT_PAGE)

#: Default choice of the free blocks among untouched memory when seeding from a snapshot
#: (measured on the six real traces in docs/replay-fidelity.md, "Initial state").
SEED_ORDER = "low"
#: Type untouched pageblocks from pagetypeinfo (measured in docs/replay-fidelity.md).
SEED_MIGRATETYPES = True


def model_zones(layout: MemoryLayout) -> list[ZoneLayout]:
    """The populated zones the model keeps (in pfn order)."""
    return [z for z in layout.zones if z.spanned > 0 and z.present > 0]


@kernel_entry(nrt=False)
def first_touch(ev: np.ndarray, pfn: np.ndarray, order: np.ndarray, base: int, npages: int, first: np.ndarray) -> None:
    """``first[j]`` = index of the first event whose block covers page index ``j`` (-1: none)."""
    for k in range(ev.shape[0] - 1, -1, -1):
        p = int(pfn[k])
        if p < 0 or int(ev[k]) < 0:
            continue
        o = int(order[k])
        if int(ev[k]) == Event.MM_PAGE_ALLOC_EXTFRAG or o < 0:  # (kprobe rows: -1 when not fetched)
            o = 0
        i = p - base
        if i < 0 or i + (1 << o) > npages:
            continue
        for j in range(i, i + (1 << o)):
            first[j] = k


@kernel_entry(nrt=False)
def seed_touched(st: ModelState, first: np.ndarray, ev: np.ndarray, pfn: np.ndarray, order: np.ndarray,
                 mt: np.ndarray, cpu: np.ndarray, zid: np.ndarray, present: np.ndarray, base: int) -> None:
    """Place the blocks whose first event says "allocated" or "on a pcp list" before the trace.

    pcp list order: ``mm_page_alloc`` takes the head, ``free_pcppages_bulk`` the tail, so the
    list is built as [first allocated ... last allocated] + [last drained ... first drained].
    """
    pbo = st.geo[G_PB_ORDER]
    ncpu = st.pcp_count.shape[0]
    n = ev.shape[0]
    for step in range(2 * n):
        # pass 1: everything but drains, in trace order; pass 2: drains, in reverse order
        k = step if step < n else 2 * n - 1 - step
        e = int(ev[k])
        p = int(pfn[k])
        if p < 0:
            continue
        # (a kprobe row that gives back or splits a block first: held before the trace, like a free)
        held = e == UX_PUTBACK or e == UX_PUT_BACK or e == UX_SPLIT_PAGE
        if step < n and e != Event.MM_PAGE_FREE and e != Event.MM_PAGE_FREE_BATCHED and e != Event.MM_PAGE_ALLOC \
                and not held:
            continue
        if step >= n and e != Event.MM_PAGE_PCPU_DRAIN:
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
        if e == Event.MM_PAGE_PCPU_DRAIN or (e == Event.MM_PAGE_ALLOC and pcp_allowed_order(o, pbo)
                                             and 0 <= m < MIGRATE_PCPTYPES):
            c = int(cpu[k])
            if c < 0 or c >= ncpu:
                c = 0
            if m < 0 or m >= MIGRATE_PCPTYPES:
                m = MIGRATE_MOVABLE
            pcp_add(st, c, z, i, o, m, True)
        elif e == Event.MM_PAGE_FREE or e == Event.MM_PAGE_FREE_BATCHED or held:
            st.pg_state[i] = PG_ALLOC
            st.pg_order[i] = o
            st.pg_mt[i] = int(st.pb_mt[i >> pbo])
            st.z_nr_alloc[z] += 1 << o


@kernel_entry(nrt=False)
def mark_pre_trace_origins(st: ModelState, first: np.ndarray) -> None:
    """``pg_origin`` of every free and pcp block of the initial state: ``ORIGIN_PRE_TRACE`` when
    an event touches one of its pages (the trace shows it was there; not where on its list),
    ``ORIGIN_SEEDED`` when none does (kept free to match the snapshot: its very existence is a guess)."""
    npages = st.pg_state.shape[0]
    j = 0
    while j < npages:
        s = int(st.pg_state[j])
        if s != PG_BUDDY and s != PG_PCP:
            j += 1
            continue
        end = min(j + (1 << int(st.pg_order[j])), npages)
        touched = False
        for k in range(j, end):
            if first[k] >= 0:
                touched = True
                break
        st.pg_origin[j] = ORIGIN_PRE_TRACE if touched else ORIGIN_SEEDED
        j = end


@kernel_entry(nrt=False)
def _pageblock_mt_pass(ev: np.ndarray, pfn: np.ndarray, order: np.ndarray, mt: np.ndarray, fb_mt: np.ndarray,
                       base: int, pbo: int, pb_mt: np.ndarray, seen: np.ndarray) -> None:
    """pb_mt of each pageblock = migratetype of its first zone_locked/drain/extfrag event (if valid);
    in a pageblock with none of those, of its first pcp allocation (``_pcp_alloc_mt_pass``)."""
    _first_buddy_event_mt_pass(ev, pfn, mt, fb_mt, base, pbo, pb_mt, seen)
    _pcp_alloc_mt_pass(ev, pfn, order, mt, base, pbo, pb_mt, seen)


@kernel(nrt=False)
def _pcp_alloc_mt_pass(ev: np.ndarray, pfn: np.ndarray, order: np.ndarray, mt: np.ndarray, base: int, pbo: int,
                       pb_mt: np.ndarray, seen: np.ndarray) -> None:
    """A pageblock no zone_locked, drain or extfrag touches: its pages reach pcp lists only by
    frees, which put a page on the list of its pageblock's type (6.1 ``free_unref_page_commit()``,
    6.12 ``free_unref_folios()``), and ``__rmqueue_pcplist()`` serves a migratetype from its own
    list; so the migratetype of its first pcp-order ``mm_page_alloc`` is the pageblock's (unless
    the page came from a pre-trace refill that fell back to another type)."""
    for k in range(ev.shape[0]):
        p = int(pfn[k])
        if p < 0 or int(ev[k]) != Event.MM_PAGE_ALLOC or int(order[k]) > PAGE_ALLOC_COSTLY_ORDER:
            continue
        blk = (p - base) >> pbo
        if blk < 0 or blk >= pb_mt.shape[0] or seen[blk]:
            continue
        m = int(mt[k])
        if 0 <= m < MIGRATE_PCPTYPES:
            seen[blk] = True
            pb_mt[blk] = m


@kernel(nrt=False)
def _first_buddy_event_mt_pass(ev: np.ndarray, pfn: np.ndarray, mt: np.ndarray, fb_mt: np.ndarray, base: int,
                               pbo: int, pb_mt: np.ndarray, seen: np.ndarray) -> None:
    for k in range(ev.shape[0]):
        e = int(ev[k])
        p = int(pfn[k])
        if p < 0 or not (e == Event.MM_PAGE_ALLOC_ZONE_LOCKED or e == Event.MM_PAGE_PCPU_DRAIN
                         or e == Event.MM_PAGE_ALLOC_EXTFRAG):
            continue
        blk = (p - base) >> pbo
        if blk < 0 or blk >= pb_mt.shape[0] or seen[blk]:
            continue
        seen[blk] = True
        m = int(fb_mt[k]) if e == Event.MM_PAGE_ALLOC_EXTFRAG else int(mt[k])
        if 0 <= m < 5:
            pb_mt[blk] = m


def _pageblock_mt(st: ModelState, ea_ev: np.ndarray, pfn: np.ndarray, order: np.ndarray, mt: np.ndarray,
                  fb_mt: np.ndarray, base: int) -> None:
    _pageblock_mt_pass(ea_ev, pfn, order, mt, fb_mt, base, int(st.geo[G_PB_ORDER]), st.pb_mt,
                       np.zeros(len(st.pb_mt), np.bool_))


def present_mask(layout: MemoryLayout, zones: list[ZoneLayout], base: int, npages: int) -> np.ndarray:
    """Pages that exist: System RAM (iomem) inside a zone span.

    Without iomem, the qemu x86-64 e820 map of a guest of the snapshot's size is tried
    (``replay.model.layout_x86.ram_ranges_x86_qemu``) and kept when it gives every zone its
    ``present`` count; otherwise each zone's first ``present`` pfns.
    """
    ranges = tuple(layout.ram_ranges)
    if not ranges:
        total = sum(z.present for z in zones)
        step = 128 << 20
        guess = ram_ranges_x86_qemu(-(-(total * layout.page_size) // step) * step, layout.page_size)
        ok = all(sum(max(0, min(e, z.zone_end_pfn) - max(s, z.zone_start_pfn)) for s, e in guess) == z.present
                 for z in zones)
        ranges = guess if ok else ()
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


@kernel_entry(nrt=False)
def _decompose(avail: np.ndarray, a: int, b: int, n_orders: int, heads: np.ndarray, orders: np.ndarray) -> int:
    """Maximal aligned buddy blocks of the runs of ``avail[a:b]``, ascending; returns their count.

    Each run of available pages is cut greedily from its start into the largest aligned block
    that fits (the decomposition ``memblock_free_all()`` -> ``__free_pages_memory()`` makes).
    """
    n = 0
    i = a
    while i < b:
        if not avail[i]:
            i += 1
            continue
        j = i
        while j < b and avail[j]:
            j += 1
        while i < j:
            o = n_orders - 1
            while o > 0 and ((i & ((1 << o) - 1)) != 0 or i + (1 << o) > j):
                o -= 1
            heads[n] = i
            orders[n] = o
            n += 1
            i += 1 << o
    return n


def _maximal_blocks(avail: np.ndarray, a: int, b: int, n_orders: int) -> list[tuple[int, np.ndarray]]:
    """Decompose ``avail[a:b]`` (one zone) into maximal aligned blocks: [(order, heads)] from the top order."""
    heads = np.zeros(max(b - a, 1), np.int64)
    orders = np.zeros(max(b - a, 1), np.int64)
    n = _decompose(avail, a, b, n_orders, heads, orders)
    heads, orders = heads[:n], orders[:n]
    return [(o, heads[orders == o]) for o in range(n_orders - 1, -1, -1)]


@kernel_entry(nrt=False)
def _add_free_blocks(st: ModelState, zones: np.ndarray, orders: np.ndarray, heads: np.ndarray) -> None:
    """Put free blocks on the tail of their lists in the given order (pageblock migratetype)."""
    pbo = int(st.geo[G_PB_ORDER])
    for k in range(heads.shape[0]):
        h = int(heads[k])
        add_to_free_list(st, h, int(zones[k]), int(orders[k]), int(st.pb_mt[h >> pbo]), True)


@kernel_entry(nrt=False)
def _candidates(st: ModelState, first: np.ndarray, ev: np.ndarray, pres: np.ndarray, zid: np.ndarray,
                must_free: np.ndarray, cand: np.ndarray, counts: np.ndarray) -> None:
    """``cand``: present pages in a zone outside the blocks ``seed_touched`` placed; ``must_free``:
    pages whose first event takes them from the buddy; counts = [touched, must_free] pages."""
    n = st.pg_state.shape[0]
    i = 0
    while i < n:
        if st.pg_state[i] != PG_NONE:  # a placed block: head and tails are not candidates
            i += 1 << int(st.pg_order[i])
            continue
        if pres[i] and zid[i] >= 0:
            cand[i] = True
        i += 1
    for j in range(n):
        f = first[j]
        if f >= 0:
            counts[0] += 1
            e = int(ev[f])
            # (kprobes: __isolate_free_page and take_page_off_buddy take free blocks as well)
            if e == Event.MM_PAGE_ALLOC_ZONE_LOCKED or e == Event.MM_PAGE_ALLOC_EXTFRAG or e == UX_ISOLATE \
                    or e == UX_TAKE_OFF:
                must_free[j] = True
                counts[1] += 1


@kernel_entry(nrt=False)
def _allocate_rest(st: ModelState, cand: np.ndarray, zid: np.ndarray) -> None:
    """Candidate pages outside every free block are allocated before the trace (order-0 heads)."""
    pbo = int(st.geo[G_PB_ORDER])
    n = st.pg_state.shape[0]
    i = 0
    while i < n:
        s = st.pg_state[i]
        if s == PG_BUDDY:
            i += 1 << int(st.pg_order[i])
            continue
        if s == PG_NONE and cand[i]:
            st.pg_state[i] = PG_ALLOC
            st.pg_order[i] = 0
            st.pg_mt[i] = st.pb_mt[i >> pbo]
            st.z_nr_alloc[zid[i]] += 1
        i += 1


#: the migratetypes seeded from pagetypeinfo (a CONFIG_CMA=n kernel's order)
MT_NAMES = DEFAULT_MIGRATETYPE_NAMES


def _seed_pageblock_types(st: ModelState, zones: list[ZoneLayout], snapshot: MemoryLayout, first: np.ndarray,
                          fz: np.ndarray, fo: np.ndarray, fh: np.ndarray) -> int:
    """Migratetypes of untouched pageblocks so that free pages per type follow pagetypeinfo.

    A free block's type is its pageblock's (``get_pageblock_migratetype``).  Pageblocks holding
    a traced page keep the type the trace gave them; each pageblock no event touches and that
    holds seeded free pages (a block of pageblock order or more spans whole pageblocks, typed
    together) goes, in ascending pfn order, to the type with the largest remaining need
    (snapshot free pages of the type minus those already placed), MOVABLE once no need is left.
    Deterministic; returns the number of pageblocks typed.
    """
    pbo = int(st.geo[G_PB_ORDER])
    npb = len(st.pb_mt)
    touched_pb = np.zeros(npb, np.bool_)
    tp = np.nonzero(first >= 0)[0] >> pbo
    touched_pb[tp] = True
    szones = {(z.node, z.name): z for z in snapshot.zones}
    pages = np.left_shift(1, fo)
    n_typed = 0
    for zi, z in enumerate(zones):
        sz = szones.get((z.node, z.name))
        if sz is None or not sz.free_per_type or sz.free_per_type_overflow:
            continue
        m = fz == zi
        heads, orders, pg = fh[m], fo[m], pages[m]
        # units: (first pageblock, number of pageblocks, free pages) of untouched pageblocks
        units: dict[int, list[int]] = {}
        fixed = np.zeros(len(MT_NAMES), np.int64)
        for h, o, p in zip(heads.tolist(), orders.tolist(), pg.tolist()):
            b0 = h >> pbo
            nb = max(1, 1 << max(0, o - pbo))
            if touched_pb[b0:b0 + nb].any():
                fixed[int(st.pb_mt[b0])] += p
                continue
            u = units.setdefault(b0, [nb, 0])
            u[1] += p
        need = np.array([sum(int(c) << o for o, c in enumerate(sz.free_per_type.get(name, ())))
                         for name in MT_NAMES], np.int64) - fixed
        need[4] = 0  # never seed MIGRATE_ISOLATE
        for b0 in sorted(units):
            nb, p = units[b0]
            t = int(np.argmax(need[:4])) if need[:4].max() > 0 else 1
            if need[t] <= 0:
                t = 1
            st.pb_mt[b0:b0 + nb] = t
            need[t] -= p
            n_typed += nb
    return n_typed


def _seed_vs_pagetypeinfo(st: ModelState, zones: list[ZoneLayout], snapshot: MemoryLayout | None
                          ) -> dict[str, dict[str, int]] | None:
    """Seeded free pages per migratetype minus the snapshot's pagetypeinfo (a check, not a seed).

    The seed matches buddyinfo per order; the migratetype of a free block is its pageblock's,
    inferred from the trace (else MOVABLE), so this shows how far that inference is from the
    kernel's free lists.
    """
    if snapshot is None:
        return None
    szones = {(z.node, z.name): z for z in snapshot.zones}
    heads = np.nonzero(st.pg_state == PG_BUDDY)[0]
    pages = np.left_shift(1, st.pg_order[heads].astype(np.int64))
    mts = st.pg_mt[heads].astype(np.int64)
    zi_of = np.searchsorted(st.z_end, heads, side="right")
    out: dict[str, dict[str, int]] = {}
    for zi, z in enumerate(zones):
        sz = szones.get((z.node, z.name))
        if sz is None or not sz.free_per_type or sz.free_per_type_overflow:
            continue
        m = zi_of == zi
        model = np.bincount(mts[m], weights=pages[m], minlength=len(MT_NAMES))
        row = {}
        for mi, name in enumerate(MT_NAMES):
            snap = sum(int(c) << o for o, c in enumerate(sz.free_per_type.get(name, ())))
            row[name] = int(model[mi]) - snap
        out[z.name] = row
    return out


def _free_blocks_per_order(st: ModelState, n_zones: int, n_orders: int) -> list[list[int]]:
    """Free buddy blocks per zone and order (buddyinfo shape) of a state."""
    heads = np.nonzero(st.pg_state == PG_BUDDY)[0]
    orders = st.pg_order[heads].astype(np.int64)
    zi = np.searchsorted(st.z_end, heads, side="right")
    return [np.bincount(orders[zi == z], minlength=n_orders)[:n_orders].tolist() for z in range(n_zones)]


def _new_model_state(layout: MemoryLayout, zones: list[ZoneLayout], cpu: np.ndarray,
                     profile_params: np.ndarray | None = None) -> ModelState:
    """An empty model of ``zones`` with a per-CPU list for every CPU the layout or the trace names."""
    n_cpus = max([layout.nr_cpus] + [c + 1 for c in layout.cpu_ids] + [int(cpu.max()) + 1 if len(cpu) else 1])
    high = np.zeros((n_cpus, len(zones)), np.int64)
    batch = np.ones((n_cpus, len(zones)), np.int64)
    for zi, z in enumerate(zones):
        for c in range(n_cpus):
            high[c, zi] = z.pcp_high_for(c)
            batch[c, zi] = z.pcp_batch_for(c)
    return new_state(np.array([z.zone_start_pfn for z in zones]), np.array([z.zone_end_pfn for z in zones]), n_cpus,
                     n_orders=layout.nr_page_orders, pageblock_order=layout.pageblock_order, pcp_high=high,
                     pcp_batch=batch, profile_params=profile_params)


def _all_free(zi: int, blocks: list[tuple[int, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(zone, order, head) arrays of every maximal block of zone ``zi``: nothing to match, no
    per-block Python work."""
    hs = np.concatenate([h for _, h in blocks])
    os_ = np.concatenate([np.full(len(h), o, np.int64) for o, h in blocks])
    return np.full(len(hs), zi, np.int64), os_, hs


def _reserve_top(pool: dict[int, list[int]], reserve: int, mk_prefix: np.ndarray) -> dict[int, list[int]]:
    """Boot: ``reserve`` (present - managed) pages taken from the top of the zone, block by block,
    skipping the blocks holding pages the trace takes from the buddy; the blocks left by order."""
    allh = sorted(((h, o) for o, hs in pool.items() for h in hs), reverse=True)
    keep: dict[int, list[int]] = {o: [] for o in pool}
    for h, o in allh:
        if reserve >= (1 << o) and mk_prefix[h + (1 << o)] == mk_prefix[h]:
            reserve -= 1 << o
            continue
        keep[o].append(h)
    return keep


def _keep_to_target(zi: int, pool: dict[int, list[int]], tgt: list[int], n_orders: int, mk_prefix: np.ndarray,
                    seed_order: str, free_heads: list[tuple[int, int, int]]) -> tuple[list[tuple[int, int]], list[int]]:
    """Keep ``tgt[o]`` blocks of each order free, from the top order down: first the blocks
    holding pages the trace takes from the buddy, then by ``seed_order``.  A surplus block gives
    up one half (the half without such pages) to the order below and the other half stays
    allocated.  Returns (the allocated halves (head, order), the blocks still missing per order)."""
    given_up: list[tuple[int, int]] = []
    deficit = [0] * n_orders
    for o in range(n_orders - 1, -1, -1):
        lst = pool.get(o, [])
        need = int(tgt[o]) if o < len(tgt) else 0
        sign = 1 if seed_order == "low" else -1
        lst.sort(key=lambda h, o=o: (mk_prefix[h + (1 << o)] == mk_prefix[h], sign * h))
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
    return given_up, deficit


def _carve_deficit(zi: int, given_up: list[tuple[int, int]], deficit: list[int], n_orders: int,
                   free_heads: list[tuple[int, int, int]]) -> None:
    """Orders still short of the snapshot: carve free blocks out of the allocated regions, each
    the lower half of an order+1 unit whose upper half stays allocated (so it cannot merge)."""
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


def _free_blocks(st: ModelState, zones: list[ZoneLayout], cand: np.ndarray, mk_prefix: np.ndarray,
                 snap_counts: dict[tuple[int, str], list[int]] | None, boot: bool, n_orders: int,
                 seed_order: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The blocks that start free, as (zone, order, head) arrays in ascending head order (the
    order ``memblock_free_all()`` puts them on the lists, at the tail): the maximal blocks of the
    candidate pages of each zone, kept to the snapshot's counts (``snap_counts``), or all of them
    but the boot reservations (``boot``), or all of them."""
    free_heads: list[tuple[int, int, int]] = []  # (zone, order, head), seeded zones
    free_arrays: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (zone, order, head), unseeded zones
    for zi, z in enumerate(zones):
        blocks = _maximal_blocks(cand, int(st.z_start[zi]), int(st.z_end[zi]), n_orders)
        if snap_counts is None and not boot:
            free_arrays.append(_all_free(zi, blocks))
            continue
        pool: dict[int, list[int]] = {o: h.tolist() for o, h in blocks}
        tgt = None
        if snap_counts is not None:
            tgt = snap_counts.get((z.node, z.name))
        else:
            pool = _reserve_top(pool, max(0, z.present - z.managed), mk_prefix)
        if tgt is None:
            free_heads.extend((zi, o, h) for o in range(n_orders - 1, -1, -1) for h in pool.get(o, []))
            continue
        given_up, deficit = _keep_to_target(zi, pool, tgt, n_orders, mk_prefix, seed_order, free_heads)
        if any(deficit):
            _carve_deficit(zi, given_up, deficit, n_orders, free_heads)
    if free_heads:
        free_arrays.append(tuple(np.array(c, np.int64).reshape(-1) for c in zip(*free_heads)))  # type: ignore[arg-type]
    fz = np.concatenate([f[0] for f in free_arrays]) if free_arrays else np.zeros(0, np.int64)
    fo = np.concatenate([f[1] for f in free_arrays]) if free_arrays else np.zeros(0, np.int64)
    fh = np.concatenate([f[2] for f in free_arrays]) if free_arrays else np.zeros(0, np.int64)
    srt = np.argsort(fh, kind="stable")
    return fz[srt], fo[srt], fh[srt]


def _report(st: ModelState, zones: list[ZoneLayout], snapshot: MemoryLayout | None,
            snap_counts: dict[tuple[int, str], list[int]] | None, *, boot: bool, seed_order: str,
            seed_migratetypes: bool, mt_seeded: int, n_touched: int, n_must_free: int,
            first: np.ndarray, n_orders: int) -> dict[str, Any]:
    """What the seed did, for the summary and the end check."""
    report: dict[str, Any] = {
        "boot": boot,
        "seeded_from_snapshot": snap_counts is not None,
        "seed_order": seed_order,
        "seed_migratetypes": bool(seed_migratetypes and snap_counts is not None),
        "pageblocks_typed_from_pagetypeinfo": mt_seeded,
        "zones": [z.name for z in zones],
        "free_pages": st.z_nr_free.tolist(),
        "free_blocks_per_order": _free_blocks_per_order(st, len(zones), n_orders),
        "pcp_pages": st.z_nr_pcp.tolist(),
        "allocated_pages": st.z_nr_alloc.tolist(),
        "present_pages": st.z_present.tolist(),
        "touched_pages": n_touched,
        "must_free_pages": n_must_free,
        "_first": first,
    }
    if snap_counts is not None:
        szones = {(z.node, z.name): z for z in snapshot.zones} if snapshot is not None else {}
        report["snapshot_free_blocks_per_order"] = [
            [int(c) for c in snap_counts.get((z.node, z.name), [])] for z in zones]
        report["snapshot_pcp_pages"] = [
            (szones[(z.node, z.name)].pcp_pages if (z.node, z.name) in szones and szones[(z.node, z.name)].pcp_count
             else None) for z in zones]
        report["seed_vs_pagetypeinfo"] = _seed_vs_pagetypeinfo(st, zones, snapshot)
        report["snapshot_free_pages"] = [
            int(sum(int(c) << o for o, c in enumerate(snap_counts.get((z.node, z.name), [])))) for z in zones]
    return report


def infer_initial_state(ev: np.ndarray, pfn: np.ndarray, order: np.ndarray, mt: np.ndarray, cpu: np.ndarray,
                        fb_mt: np.ndarray, layout: MemoryLayout, *, snapshot: MemoryLayout | None = None,
                        boot: bool = False, seed_order: str = SEED_ORDER,
                        seed_migratetypes: bool = SEED_MIGRATETYPES,
                        profile_params: np.ndarray | None = None) -> tuple[ModelState, dict[str, Any]]:
    """Build the pre-trace model state (of the kernel profile ``profile_params``, default 6.1);
    returns (state, report).

    ``seed_order``: which untouched maximal blocks stay free when seeding from a snapshot,
    after the blocks holding pages the trace takes from the buddy: ``"low"`` (lowest pfns
    first) or ``"high"`` (highest first); see ``SEED_ORDER``.  ``seed_migratetypes``: give the
    pageblocks no event touches the migratetypes that make the seeded free pages per type
    match the snapshot's pagetypeinfo (``_seed_pageblock_types``).
    """
    if seed_order not in ("low", "high"):
        raise ValueError(f"seed_order {seed_order!r}: low or high")
    zones = model_zones(layout)
    n_orders = layout.nr_page_orders
    st = _new_model_state(layout, zones, cpu, profile_params)
    base = int(st.geo[G_PFN_BASE])
    npages = len(st.pg_state)
    zid = np.full(npages, -1, np.int8)
    for zi in range(len(zones)):
        zid[st.z_start[zi]:st.z_end[zi]] = zi
    pres = present_mask(layout, zones, base, npages)
    _pageblock_mt(st, ev, pfn, order, mt, fb_mt, base)

    first = np.full(npages, -1, np.int64)
    first_touch(ev, pfn, order, base, npages, first)
    seed_touched(st, first, ev, pfn, order, mt, cpu, zid, pres, base)
    # pages first taken from the buddy must start free; candidates: present, in a zone, not
    # covered by a block placed above (its tails included)
    must_free = np.zeros(npages, np.bool_)
    cand = np.zeros(npages, np.bool_)
    counts = np.zeros(2, np.int64)
    _candidates(st, first, ev, pres, zid, must_free, cand, counts)
    n_touched, n_must_free = int(counts[0]), int(counts[1])
    mk_prefix = np.zeros(1, np.int32)
    if boot or snapshot is not None:  # only the seeding below needs it (random access per block)
        mk_prefix = np.zeros(npages + 1, np.int32)
        np.cumsum(must_free & cand, out=mk_prefix[1:])

    snap_counts = None
    if snapshot is not None and not boot:
        try:
            snap_counts = snapshot_free_counts(snapshot)
        except Exception:  # noqa: BLE001 - a snapshot without buddyinfo just does not seed
            snap_counts = None
    fz, fo, fh = _free_blocks(st, zones, cand, mk_prefix, snap_counts, boot, n_orders, seed_order)
    mt_seeded = 0
    if seed_migratetypes and snap_counts is not None and snapshot is not None:
        mt_seeded = _seed_pageblock_types(st, zones, snapshot, first, fz, fo, fh)
    _add_free_blocks(st, fz, fo, fh)
    # everything else present is allocated (order-0 heads)
    _allocate_rest(st, cand, zid)
    mark_pre_trace_origins(st, first)
    st.z_present[:] = st.z_nr_free + st.z_nr_pcp + st.z_nr_alloc
    return st, _report(st, zones, snapshot, snap_counts, boot=boot, seed_order=seed_order,
                       seed_migratetypes=seed_migratetypes, mt_seeded=mt_seeded, n_touched=n_touched,
                       n_must_free=n_must_free, first=first, n_orders=n_orders)
