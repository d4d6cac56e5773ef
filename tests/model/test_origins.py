"""``pg_origin`` (what placed a free or pcp block) through merges and splits, the placement
checks' disagreement causes, and the pageblock types a pcp allocation corrects."""

from __future__ import annotations

import numpy as np

from replay.model.buddy import __free_one_page, add_to_free_list, expand
from replay.model.exact import exact_alloc, exact_drain, exact_zone_locked, learn_pageblock_mt
from replay.model.initial_state import _pageblock_mt_pass, mark_pre_trace_origins
from replay.model.pcp import pcp_add
from replay.model.state import (
    C_BULK_INFERRED,
    C_BULK_UNDONE,
    C_PB_MT_FROM_ALLOC,
    C_PCP_ALLOC_CHECKED,
    C_PCP_ALLOC_DIS_INFERRED,
    C_PCP_ALLOC_DIS_PRE_TRACE,
    C_PCP_ALLOC_HEAD,
    C_DRAIN_CHECKED,
    C_DRAIN_DIS_PRE_TRACE,
    C_RMQUEUE_CHECKED,
    C_RMQUEUE_DIS_INFERRED,
    C_RMQUEUE_DIS_PRE_TRACE,
    C_RMQUEUE_PREDICTED,
    MIGRATE_MOVABLE,
    MIGRATE_UNMOVABLE,
    ORIGIN_INFERRED,
    ORIGIN_PRE_TRACE,
    ORIGIN_SEEDED,
    ORIGIN_TRACED,
    PG_ALLOC,
    PG_BUDDY,
    ModelState,
    new_state,
)
from parsers.schema import Event


def _state(pages: int = 64, n_orders: int = 5, pbo: int = 4) -> ModelState:
    st = new_state(np.array([0]), np.array([pages]), 2, n_orders=n_orders, pageblock_order=pbo,
                   pcp_high=np.full((2, 1), 100), pcp_batch=np.full((2, 1), 10))
    st.z_present[:] = pages
    return st


def test_a_merge_keeps_the_least_certain_origin_and_a_split_hands_it_down() -> None:
    st = _state()
    add_to_free_list(st, 4, 0, 2, MIGRATE_MOVABLE, False)
    st.pg_origin[4] = ORIGIN_SEEDED
    st.pg_origin[0] = ORIGIN_TRACED  # a traced free of [0, 4) merges with the seeded buddy
    head = __free_one_page(st, 0, 0, 2, MIGRATE_MOVABLE, False)
    assert head == 0 and int(st.pg_order[0]) == 3 and int(st.pg_origin[0]) == ORIGIN_SEEDED
    st.pg_state[0] = 0  # taken (del_page_from_free_list is the caller's), split down to order 0
    st.l_head[:] = -1
    st.l_len[:] = 0
    expand(st, 0, 0, 0, 3, MIGRATE_MOVABLE)
    assert [int(st.pg_origin[i]) for i in (4, 2, 1)] == [ORIGIN_SEEDED] * 3
    st2 = _state()
    st2.pg_origin[8] = ORIGIN_TRACED
    assert int(st2.pg_origin[__free_one_page(st2, 8, 0, 1, MIGRATE_MOVABLE, False)]) == ORIGIN_TRACED


def test_rmqueue_disagreements_by_cause() -> None:
    st = _state()
    add_to_free_list(st, 16, 0, 1, MIGRATE_MOVABLE, False)  # the model's pick at order 1
    add_to_free_list(st, 32, 0, 2, MIGRATE_MOVABLE, False)  # the kernel splits this one
    st.pg_origin[16] = ORIGIN_SEEDED
    exact_zone_locked(st, 0, 32, 0, 1, MIGRATE_MOVABLE, False)
    assert int(st.ctr[C_RMQUEUE_CHECKED]) == 1 and int(st.ctr[C_RMQUEUE_PREDICTED]) == 0
    assert int(st.ctr[C_RMQUEUE_DIS_PRE_TRACE]) == 1  # the seeded block may never have been there
    assert int(st.pg_origin[34]) == ORIGIN_TRACED  # expand's upper half: the traced block's
    # the kernel takes a block inside one the model has whole: a repair, its pieces inferred
    exact_zone_locked(st, 0, 17, 0, 0, MIGRATE_MOVABLE, False)
    assert int(st.ctr[C_RMQUEUE_DIS_PRE_TRACE]) == 2  # that block (16) was seeded
    add_to_free_list(st, 48, 0, 2, MIGRATE_MOVABLE, False)
    exact_zone_locked(st, 0, 49, 0, 0, MIGRATE_MOVABLE, False)  # traced block, taken inside
    assert int(st.ctr[C_RMQUEUE_DIS_INFERRED]) == 1
    assert int(st.pg_origin[50]) == ORIGIN_INFERRED and int(st.pg_origin[48]) == ORIGIN_INFERRED
    assert int(st.ctr[C_RMQUEUE_CHECKED]) == 3


def test_pcp_and_drain_disagreements_by_cause() -> None:
    st = _state()
    for i in (0, 1, 2):
        pcp_add(st, 0, 0, i, 0, MIGRATE_MOVABLE, False)  # list: 2, 1, 0
    st.pg_origin[2] = ORIGIN_PRE_TRACE
    exact_alloc(st, 0, 1, 0, 0, MIGRATE_MOVABLE)  # below the head (2, placed before the trace)
    assert [int(st.ctr[k]) for k in (C_PCP_ALLOC_CHECKED, C_PCP_ALLOC_HEAD, C_PCP_ALLOC_DIS_PRE_TRACE,
                                     C_PCP_ALLOC_DIS_INFERRED)] == [1, 0, 1, 0]
    # 2 is inferred taken by __alloc_pages_bulk(): allocated, counted per zone
    assert int(st.pg_state[2]) == PG_ALLOC and int(st.pg_origin[2]) == ORIGIN_INFERRED
    assert int(st.ctr[C_BULK_INFERRED]) == 1 and int(st.z_nr_bulk[0]) == 1
    exact_alloc(st, 0, 0, 0, 0, MIGRATE_MOVABLE)  # the head now: agreement
    assert int(st.ctr[C_PCP_ALLOC_HEAD]) == 1
    pcp_add(st, 0, 0, 4, 0, MIGRATE_MOVABLE, False)
    pcp_add(st, 0, 0, 5, 0, MIGRATE_MOVABLE, False)  # list: 5, 4
    exact_alloc(st, 0, 4, 0, 0, MIGRATE_MOVABLE)  # 5 inferred taken...
    exact_alloc(st, 0, 5, 0, 0, MIGRATE_MOVABLE)  # ...but the kernel serves it later: undone
    assert int(st.ctr[C_BULK_UNDONE]) == 1 and int(st.z_nr_bulk[0]) == 1 and int(st.pg_state[5]) == PG_ALLOC
    assert int(st.ctr[C_PCP_ALLOC_DIS_INFERRED]) == 1  # that disagreement was the inference's
    for i in (8, 9, 10):
        pcp_add(st, 0, 0, i, 0, MIGRATE_MOVABLE, False)  # list: 10, 9, 8 (tail 8)
    exact_drain(st, 9, 0, 0, MIGRATE_MOVABLE)  # the kernel drains 9, the model's tail is 8
    assert int(st.ctr[C_DRAIN_CHECKED]) == 1 and int(st.ctr[C_DRAIN_DIS_PRE_TRACE]) == 0  # the model's own
    assert int(st.pg_origin[9]) == ORIGIN_TRACED and int(st.pg_state[8]) != PG_BUDDY


def test_a_pcp_allocation_corrects_the_pageblock_type_that_misplaced_a_freed_page() -> None:
    st = _state(pbo=4)
    st.pb_mt[:] = MIGRATE_MOVABLE
    pcp_add(st, 0, 0, 5, 0, MIGRATE_MOVABLE, False)  # freed onto its pageblock's (movable) list
    exact_alloc(st, 0, 5, 0, 0, MIGRATE_UNMOVABLE)  # but the kernel served an unmovable request
    assert int(st.pb_mt[0]) == MIGRATE_UNMOVABLE and int(st.ctr[C_PB_MT_FROM_ALLOC]) == 1
    assert int(st.pg_state[5]) == PG_ALLOC
    # a page on a list of another type than its pageblock (a fallback refill) teaches nothing
    st.pb_mt[1] = MIGRATE_MOVABLE
    st.pg_mt[20] = MIGRATE_UNMOVABLE
    learn_pageblock_mt(st, 20, 0, MIGRATE_MOVABLE)
    assert int(st.pb_mt[1]) == MIGRATE_MOVABLE
    learn_pageblock_mt(st, 20, 4, MIGRATE_UNMOVABLE)  # above PAGE_ALLOC_COSTLY_ORDER: one list
    assert int(st.ctr[C_PB_MT_FROM_ALLOC]) == 1


def test_initial_origins_and_pageblock_types_from_pcp_allocations() -> None:
    st = _state(pbo=4)
    add_to_free_list(st, 0, 0, 2, MIGRATE_MOVABLE, False)  # [0, 4): page 2 is touched by the trace
    add_to_free_list(st, 8, 0, 3, MIGRATE_MOVABLE, False)  # untouched: seeded
    pcp_add(st, 1, 0, 20, 0, MIGRATE_MOVABLE, False)
    st.pg_state[30] = PG_ALLOC
    first = np.full(64, -1, np.int64)
    first[2] = 0
    first[20] = 1
    mark_pre_trace_origins(st, first)
    assert [int(st.pg_origin[i]) for i in (0, 8, 20, 30)] == [ORIGIN_PRE_TRACE, ORIGIN_SEEDED, ORIGIN_PRE_TRACE, 0]
    # pageblock 0: a zone_locked says movable, before a pcp allocation of unmovable; pageblock 1:
    # only pcp allocations, the first one's type; pageblock 2: an order-4 allocation says nothing
    ev = np.array([Event.MM_PAGE_ALLOC, Event.MM_PAGE_ALLOC_ZONE_LOCKED, Event.MM_PAGE_ALLOC, Event.MM_PAGE_ALLOC,
                   Event.MM_PAGE_ALLOC], np.int64)
    pfn = np.array([3, 1, 17, 18, 32], np.int64)
    order = np.array([0, 0, 0, 0, 4], np.int64)
    mt = np.array([MIGRATE_UNMOVABLE, MIGRATE_MOVABLE, MIGRATE_UNMOVABLE, MIGRATE_MOVABLE, MIGRATE_UNMOVABLE], np.int64)
    pb = np.full(4, 9, np.int8)
    _pageblock_mt_pass(ev, pfn, order, mt, np.full(5, -1, np.int64), 0, 4, pb, np.zeros(4, np.bool_))
    assert pb.tolist() == [MIGRATE_MOVABLE, MIGRATE_UNMOVABLE, 9, 9]
