"""Property tests: random alloc/free sequences against a deliberately simple reference buddy."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from replay.model.buddy import __free_one_page, __rmqueue
from replay.model.engine import replay
from replay.model.invariants import check_invariants
from replay.model.state import MIGRATE_MOVABLE, MIGRATE_UNMOVABLE, PG_ALLOC, PG_BUDDY, PG_NONE, PG_PCP, new_state
from tests.helpers.events import make_events
from tests.helpers.replay import RefBuddy, tiny_layout

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _free_set(st: Any) -> set[tuple[int, int]]:
    base = int(st.geo[0])
    heads = np.nonzero(st.pg_state == PG_BUDDY)[0]
    return {(int(h) + base, int(st.pg_order[h])) for h in heads}


@SETTINGS
@given(hs.lists(hs.tuples(hs.booleans(), hs.integers(0, 6), hs.integers(0, 2), hs.integers(0, 1 << 30)),
                min_size=1, max_size=120))
def test_buddy_ops_conserve_pages_and_merge_fully(ops: list[tuple[bool, int, int, int]]) -> None:
    """__rmqueue / __free_one_page: free + allocated = present after every step; freeing all merges back."""
    pages = 1024
    st = new_state(np.array([0]), np.array([pages]), 1, n_orders=8, pageblock_order=5)
    st.z_present[:] = pages
    for h in range(0, pages, 128):
        __free_one_page(st, h, 0, 7, MIGRATE_MOVABLE, False)
    allocated: dict[int, int] = {}
    for is_alloc, order, mt, pick in ops:
        if is_alloc or not allocated:
            i = __rmqueue(st, 0, order, (MIGRATE_UNMOVABLE, MIGRATE_MOVABLE, 2)[mt], 0)
            if i < 0:
                assert int(st.z_nr_free[0]) < pages
                continue
            assert all(not (i < j + (1 << o) and j < i + (1 << order)) for j, o in allocated.items())
            st.pg_state[i] = PG_ALLOC
            st.pg_order[i] = order
            st.z_nr_alloc[0] += 1 << order
            allocated[i] = order
        else:
            i = sorted(allocated)[pick % len(allocated)]
            o = allocated.pop(i)
            st.pg_state[i] = PG_NONE
            st.z_nr_alloc[0] -= 1 << o
            __free_one_page(st, i, 0, o, int(st.pb_mt[i >> 5]), False)
        assert int(st.z_nr_free[0]) + sum(1 << o for o in allocated.values()) == pages
    rep = check_invariants(st)
    assert rep["ok"], rep
    # the free pages are exactly the complement of the allocated blocks
    used = np.zeros(pages, bool)
    for i, o in allocated.items():
        used[i:i + (1 << o)] = True
    free = np.zeros(pages, bool)
    for h, o in _free_set(st):
        free[h:h + (1 << o)] = True
    assert np.array_equal(free, ~used)
    for i, o in list(allocated.items()):
        st.pg_state[i] = PG_NONE
        st.z_nr_alloc[0] -= 1 << o
        __free_one_page(st, i, 0, o, int(st.pb_mt[i >> 5]), False)
    blocks = _free_set(st)
    # everything merges back to order-7 blocks, except where a pageblock changed type (steals):
    # merging at >= pageblock order is only refused for non-mergeable types, so all merge
    assert blocks == {(h, 7) for h in range(0, pages, 128)}


def _gen_trace(ops: list[tuple[int, int, int, int]], pages: int = 4096, cpus: int = 2) -> tuple[list[dict[str, Any]], RefBuddy, dict[int, list[tuple[int, int]]]]:
    """Turn random ops into a kernel-like event sequence, with a RefBuddy as the ground truth."""
    ref = RefBuddy.full(0, pages, 10)
    pcp: dict[int, list[tuple[int, int]]] = {c: [] for c in range(cpus)}
    alloc: dict[int, int] = {}
    rows: list[dict[str, Any]] = []
    t = 1000

    def ev(name: str, c: int, pfn: int, order: int, **kw: Any) -> None:
        nonlocal t
        t += 1000
        rows.append({"ts_ns": t, "cpu": c, "event": name, "pfn": pfn, "order": order, **kw})

    for kind, a, b, c in ops:
        cpu = c % cpus
        if kind == 0:  # rmqueue_buddy of a non-pcp order
            order = 4 + a % 5
            blk = ref.smallest(order)
            if blk is None:
                continue
            ref.take(blk[0], order)
            ev("mm_page_alloc_zone_locked", cpu, blk[0], order, migratetype=1, percpu_refill=False)
            ev("mm_page_alloc", cpu, blk[0], order, migratetype=1)
            alloc[blk[0]] = order
        elif kind == 1:  # rmqueue_bulk refill of order 0 or 1
            order = a % 2
            for _ in range(1 + b % 4):
                blk = ref.smallest(order)
                if blk is None:
                    break
                ref.take(blk[0], order)
                ev("mm_page_alloc_zone_locked", cpu, blk[0], order, migratetype=1, percpu_refill=True)
                pcp[cpu].append((blk[0], order))
        elif kind == 2:  # mm_page_alloc off the pcp list head
            if pcp[cpu]:
                p, o = pcp[cpu].pop(0)
                ev("mm_page_alloc", cpu, p, o, migratetype=1)
                alloc[p] = o
        elif kind == 3:  # free an allocated block
            if not alloc:
                continue
            p = sorted(alloc)[b % len(alloc)]
            o = alloc.pop(p)
            ev("mm_page_free", cpu, p, o)
            if o <= 3:
                if o == 0 and a % 2:
                    ev("mm_page_free_batched", cpu, p, 0)
                pcp[cpu].insert(0, (p, o))
            else:
                ref.give(p, o)
        else:  # free_pcppages_bulk from the list tail
            for _ in range(1 + b % 3):
                if not pcp[cpu]:
                    break
                p, o = pcp[cpu].pop()
                ev("mm_page_pcpu_drain", cpu, p, o, migratetype=1)
                ref.give(p, o)
    return rows, ref, pcp


@SETTINGS
@given(hs.lists(hs.tuples(hs.integers(0, 4), hs.integers(0, 100), hs.integers(0, 100), hs.integers(0, 3)),
                min_size=1, max_size=150))
def test_exact_replay_matches_reference(ops: list[tuple[int, int, int, int]]) -> None:
    """A consistent trace replays with no anomaly, and the model's free blocks equal the reference's."""
    rows, ref, pcp = _gen_trace(ops)
    if not rows:
        return
    out = replay(make_events(rows), tiny_layout(4096), mode="exact", boot=True)
    assert int(out.acount.sum()) == 0, {k: int(v) for k, v in enumerate(out.acount) if v}
    assert _free_set(out.state) == ref.free
    st = out.state
    model_pcp = {(int(i), int(st.pg_order[i]), int(st.pg_cpu[i])) for i in np.nonzero(st.pg_state == PG_PCP)[0]}
    assert model_pcp == {(p, o, c) for c, lst in pcp.items() for p, o in lst}
    rep = out.invariant_reports[-1]
    assert rep["ok"], rep
    assert int(st.z_nr_free[0]) == ref.free_pages()


@SETTINGS
@given(hs.lists(hs.tuples(hs.booleans(), hs.integers(0, 9), hs.integers(0, 3), hs.integers(0, 1 << 20)),
                min_size=1, max_size=150))
def test_simulate_keeps_invariants(ops: list[tuple[bool, int, int, int]]) -> None:
    """Simulate mode serves requests itself; the model stays consistent and frees follow identity."""
    rows: list[dict[str, Any]] = []
    live: list[tuple[int, int]] = []
    next_pfn = 0
    t = 0
    for is_alloc, order, cpu, pick in ops:
        t += 1000
        if is_alloc or not live:
            # trace pfns are only identities here; make them distinct and aligned
            size = 1 << order
            next_pfn = -(-next_pfn // size) * size
            if next_pfn + size > 4096:
                continue
            rows.append({"ts_ns": t, "cpu": cpu % 2, "event": "mm_page_alloc", "pfn": next_pfn, "order": order,
                         "migratetype": pick % 3})
            live.append((next_pfn, order))
            next_pfn += size
        else:
            p, o = live.pop(pick % len(live))
            rows.append({"ts_ns": t, "cpu": cpu % 2, "event": "mm_page_free", "pfn": p, "order": o})
    if not rows:
        return
    out = replay(make_events(rows), tiny_layout(4096, high=16, batch=4), mode="simulate", boot=True)
    rep = out.invariant_reports[-1]
    assert rep["ok"], rep
    assert int(out.acount.sum()) == 0
    st = out.state
    live_pages = sum(1 << o for _, o in live)
    assert int(st.z_nr_alloc[0]) == live_pages
    assert int(st.z_nr_free[0] + st.z_nr_pcp[0] + st.z_nr_alloc[0]) == 4096
