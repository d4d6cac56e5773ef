"""Hand-computed split/merge cases for the buddy and per-CPU list model (Linux 6.1 rules)."""

from __future__ import annotations

import numpy as np

from replay.model.buddy import (
    __free_one_page,
    __rmqueue,
    __rmqueue_fallback,
    __rmqueue_smallest,
    add_to_free_list,
    expand,
)
from replay.model.invariants import check_invariants
from replay.model.pcp import free_pcppages_bulk, free_unref_page_commit, nr_pcp_free, pcp_add, rmqueue_bulk
from replay.model.state import (
    MIGRATE_HIGHATOMIC,
    MIGRATE_MOVABLE,
    MIGRATE_UNMOVABLE,
    PG_ALLOC,
    PG_BUDDY,
    ModelState,
    fa_list,
    new_state,
    state_bytes_per_page,
)


def _list(st: ModelState, lid: int) -> list[int]:
    out, i = [], int(st.l_head[lid])
    while i >= 0:
        out.append(i)
        i = int(st.pg_next[i])
    return out


def _free_blocks(st: ModelState) -> list[tuple[int, int]]:
    heads = np.nonzero(st.pg_state == PG_BUDDY)[0]
    return [(int(h), int(st.pg_order[h])) for h in heads]


def _alloc(st: ModelState, i: int, order: int, z: int = 0) -> None:
    st.pg_state[i] = PG_ALLOC
    st.pg_order[i] = order
    st.z_nr_alloc[z] += 1 << order


def _state(pages: int = 16, n_orders: int = 5, zones: list[tuple[int, int]] | None = None, cpus: int = 1) -> ModelState:
    zones = zones or [(0, pages)]
    st = new_state(np.array([a for a, _ in zones]), np.array([b for _, b in zones]), cpus, n_orders=n_orders,
                   pageblock_order=min(9, n_orders - 1), pcp_high=np.full((cpus, len(zones)), 100),
                   pcp_batch=np.full((cpus, len(zones)), 10))
    st.z_present[:] = [b - a for a, b in zones]
    return st


def test_expand_puts_upper_halves_at_list_heads() -> None:
    st = _state(16, n_orders=5)
    add_to_free_list(st, 0, 0, 3, MIGRATE_MOVABLE, False)  # one order-3 block at 0
    _alloc(st, 8, 3)
    i = __rmqueue_smallest(st, 0, 0, MIGRATE_MOVABLE)
    assert i == 0
    # expand(): 4 (order 2), 2 (order 1), 1 (order 0) go back on the lists
    assert sorted(_free_blocks(st)) == [(1, 0), (2, 1), (4, 2)]
    _alloc(st, 0, 0)
    assert check_invariants(st)["ok"]


def test_rmqueue_smallest_takes_smallest_order_then_list_head() -> None:
    st = _state(16, n_orders=5)
    add_to_free_list(st, 8, 0, 3, MIGRATE_MOVABLE, False)
    add_to_free_list(st, 2, 0, 1, MIGRATE_MOVABLE, False)
    add_to_free_list(st, 6, 0, 1, MIGRATE_MOVABLE, False)  # list_add: now the head of order 1
    _alloc(st, 0, 1)
    _alloc(st, 4, 1)
    assert _list(st, fa_list(st, 0, 1, MIGRATE_MOVABLE)) == [6, 2]
    assert __rmqueue_smallest(st, 0, 1, MIGRATE_MOVABLE) == 6
    assert __rmqueue_smallest(st, 0, 0, MIGRATE_MOVABLE) == 2  # order 1 split: 3 back at order 0
    assert _list(st, fa_list(st, 0, 0, MIGRATE_MOVABLE)) == [3]
    assert __rmqueue_smallest(st, 0, 0, MIGRATE_UNMOVABLE) == -1  # no unmovable free list entries


def test_free_one_page_merges_up_to_max_order() -> None:
    st = _state(16, n_orders=5)  # max order 4: one 16-page block
    for i in range(16):
        _alloc(st, i, 0)
    for i in (5, 4, 7, 6, 0, 1, 3, 2, 12, 13, 14, 15, 8, 9, 10, 11):
        st.pg_state[i] = 0
        st.z_nr_alloc[0] -= 1
        __free_one_page(st, i, 0, 0, MIGRATE_MOVABLE, False)
    assert _free_blocks(st) == [(0, 4)]
    assert int(st.ctr[0]) == 15  # 15 merges build one 16-page block
    assert check_invariants(st)["ok"]


def test_no_merge_across_zone_boundary() -> None:
    st = _state(32, n_orders=6, zones=[(0, 16), (16, 32)])
    __free_one_page(st, 0, 0, 4, MIGRATE_MOVABLE, False)
    __free_one_page(st, 16, 1, 4, MIGRATE_MOVABLE, False)
    assert sorted(_free_blocks(st)) == [(0, 4), (16, 4)]
    assert check_invariants(st)["ok"]


def test_no_merge_of_highatomic_pageblock_at_pageblock_order() -> None:
    st = _state(32, n_orders=6)  # pageblock order 5 here
    st = new_state(np.array([0]), np.array([64]), 1, n_orders=7, pageblock_order=5)
    st.z_present[:] = 64
    st.pb_mt[0] = MIGRATE_HIGHATOMIC
    __free_one_page(st, 0, 0, 5, MIGRATE_HIGHATOMIC, False)
    __free_one_page(st, 32, 0, 5, MIGRATE_MOVABLE, False)
    assert sorted(_free_blocks(st)) == [(0, 5), (32, 5)]
    assert check_invariants(st)["ok"]  # the invariant knows this merge is forbidden


def test_buddy_merge_likely_puts_block_at_tail() -> None:
    st = _state(64, n_orders=7)  # orders 0..6: buddy_merge_likely works below order 5
    for i in range(64):
        _alloc(st, i, 0)

    def free(i: int, o: int = 0) -> None:
        st.pg_state[i] = 0
        st.z_nr_alloc[0] -= 1 << o
        __free_one_page(st, i, 0, o, MIGRATE_MOVABLE, False)

    free(40)  # lone page: its higher buddy (42..43 at order 1) is not free -> head
    free(0)
    free(1)  # 0+1 merge to order 1 at 0
    free(2)  # buddy 3 allocated; the order-1 buddy of 2..3 is 0..1, free -> tail
    assert _list(st, fa_list(st, 0, 0, MIGRATE_MOVABLE)) == [40, 2]
    free(20)  # higher buddy not free -> head
    assert _list(st, fa_list(st, 0, 0, MIGRATE_MOVABLE)) == [20, 40, 2]


def test_fallback_steals_whole_pageblock_for_unmovable() -> None:
    st = new_state(np.array([0]), np.array([64]), 1, n_orders=7, pageblock_order=5)
    st.z_present[:] = 64
    __free_one_page(st, 0, 0, 6, MIGRATE_MOVABLE, False)  # one free order-6 block (two pageblocks)
    i = __rmqueue(st, 0, 0, MIGRATE_UNMOVABLE, 0)
    assert i == 0
    # order >= pageblock_order: change_pageblock_range() claims both pageblocks
    assert list(st.pb_mt[:2]) == [MIGRATE_UNMOVABLE, MIGRATE_UNMOVABLE]
    assert int(st.ctr[2]) == 1  # one steal
    assert sorted(_free_blocks(st)) == [(1, 0), (2, 1), (4, 2), (8, 3), (16, 4), (32, 5)]
    assert all(int(st.pg_mt[h]) == MIGRATE_UNMOVABLE for h, _ in _free_blocks(st))


def test_fallback_movable_small_block_does_not_claim() -> None:
    st = new_state(np.array([0]), np.array([64]), 1, n_orders=7, pageblock_order=5)
    st.z_present[:] = 64
    st.pb_mt[:] = MIGRATE_UNMOVABLE
    for i in range(64):
        _alloc(st, i, 0)
    st.pg_state[3] = 0
    st.z_nr_alloc[0] -= 1
    __free_one_page(st, 3, 0, 0, MIGRATE_UNMOVABLE, False)
    # a movable order-0 request steals the single page without claiming (can_steal false: order < pbo/2)
    assert __rmqueue_fallback(st, 0, 0, MIGRATE_MOVABLE, 0) == 3
    assert int(st.pb_mt[0]) == MIGRATE_UNMOVABLE
    assert int(st.pg_mt[3]) == MIGRATE_MOVABLE  # move_to_free_list onto the movable list


def test_rmqueue_bulk_adds_in_physical_order_at_tail() -> None:
    st = _state(16, n_orders=5)
    __free_one_page(st, 0, 0, 4, MIGRATE_MOVABLE, False)
    got = rmqueue_bulk(st, 0, 0, 0, 4, MIGRATE_MOVABLE, 0)
    assert got == 4
    lid = st.geo[4] + 0 * 13 + 1  # pcp list (cpu 0, zone 0, pindex 1 = order 0 movable)
    assert _list(st, int(lid)) == [0, 1, 2, 3]
    assert int(st.pcp_count[0, 0]) == 4
    assert check_invariants(st)["ok"]


def test_nr_pcp_free_doubles_with_free_factor() -> None:
    st = _state(16, n_orders=5)
    st.pcp_count[0, 0] = 90
    seq = [nr_pcp_free(st, 0, 0, 100, 10, False) for _ in range(5)]
    assert seq == [10, 20, 40, 80, 90]  # clamped to high - batch
    assert nr_pcp_free(st, 0, 0, 5, 10, False) == 1  # high < batch: boot pageset
    assert nr_pcp_free(st, 0, 0, 100, 10, True) == 90  # free_high: everything


def test_free_unref_page_commit_drains_past_high_from_tail() -> None:
    st = _state(64, n_orders=7)
    st.pcp_high[0, 0] = 4
    st.pcp_batch[0, 0] = 2
    for i in range(64):
        _alloc(st, i, 0)
    drained = 0
    for i in (10, 20, 30, 40):
        st.pg_state[i] = 0
        st.z_nr_alloc[0] -= 1
        drained += free_unref_page_commit(st, 0, 0, i, 0, MIGRATE_MOVABLE)
    # the 4th free reaches high (4): nr_pcp_free = clamp(2 << 0, 2, 2) = 2 blocks from the tail
    assert drained == 2
    assert sorted(_free_blocks(st)) == [(10, 0), (20, 0)]
    assert int(st.pcp_count[0, 0]) == 2
    assert check_invariants(st)["ok"]


def test_free_pcppages_bulk_round_robin_and_pcp_add() -> None:
    st = _state(64, n_orders=7)
    for i in range(64):
        _alloc(st, i, 0)
    for i, mt in ((8, MIGRATE_UNMOVABLE), (16, MIGRATE_MOVABLE), (24, MIGRATE_MOVABLE)):
        st.pg_state[i] = 0
        st.z_nr_alloc[0] -= 1
        pcp_add(st, 0, 0, i, 0, mt, False)
    assert free_pcppages_bulk(st, 0, 0, 2, 0) == 2
    # starts at pindex 0 (unmovable): page 8, then pindex 1 (movable) tail: 16
    assert sorted(_free_blocks(st)) == [(8, 0), (16, 0)]
    assert check_invariants(st)["ok"]


def test_expand_direct() -> None:
    st = _state(16, n_orders=5)
    expand(st, 0, 0, 1, 4, MIGRATE_MOVABLE)
    assert sorted(_free_blocks(st)) == [(2, 1), (4, 2), (8, 3)]


def test_state_bytes_per_page_small() -> None:
    st = new_state(np.array([0]), np.array([1 << 20]), 4)
    assert state_bytes_per_page(st) <= 16
