"""The profile-dependent free paths: free_unref_folios' batched commit (v6.10) and the order-0
__free_pages_core frees of deferred init's padata helpers."""

from __future__ import annotations

import numpy as np

from replay.events.arrays import EV_ALLOC, EV_FREE, FL_FREE_CORE
from replay.model.anomalies import A_BATCHED_NO_FREE
from replay.model.deferred_init import deferred_init_order0_mask
from replay.model.exact import exact_free, exact_free_batched, set_allocated
from replay.model.profiles import PROFILES
from replay.model.state import PG_ALLOC, PG_PCP, new_state, order_to_pindex, pcp_list


def _state(profile: str):
    return new_state(np.array([0]), np.array([4096]), 2, profile_params=PROFILES[profile].params())


def test_batched_commit_of_an_order2_folio_on_6_12() -> None:
    """6.12 free_unref_folios: mm_page_free order=2, then mm_page_free_batched (printed order=0)
    commits the order-2 block to the head of this CPU's order-2 list."""
    st = _state("6.12")
    set_allocated(st, 8, 0, 2, 1, PG_ALLOC)
    assert exact_free(st, 1, 8, 0, 2, 1) == (0, False)
    assert exact_free_batched(st, 1, 8, 0) == (0, False)
    assert st.pg_state[8] == PG_PCP and st.pg_order[8] == 2 and st.pg_cpu[8] == 1
    assert st.l_head[pcp_list(st, 1, 0, order_to_pindex(1, 2))] == 8
    assert st.pcp_count[1, 0] == 4 and st.z_nr_alloc[0] == 0


def test_batched_of_an_order2_free_contradicts_6_1() -> None:
    """6.1 free_unref_page_list batches order-0 pages only: the same pair is an anomaly there."""
    st = _state("6.1")
    set_allocated(st, 8, 0, 2, 1, PG_ALLOC)
    exact_free(st, 1, 8, 0, 2, 1)
    assert exact_free_batched(st, 1, 8, 0)[0] == A_BATCHED_NO_FREE


def test_deferred_init_order0_frees_of_the_block_freeing_threads() -> None:
    """First-event order-0 frees by a thread that made block frees, inside the block-free window,
    are __free_pages_core frees; another thread's, a later one and a second free are not."""
    ev = np.array([EV_FREE, EV_FREE, EV_FREE, EV_FREE, EV_ALLOC, EV_FREE, EV_FREE, EV_FREE], np.int8)
    pfn = np.array([1024, 7, 8, 9, 7, 7, 2048, 30], np.int64)
    order = np.array([10, 0, 0, 0, 0, 0, 10, 0], np.int8)
    pid = np.array([42, 42, 43, 42, 42, 42, 42, 42], np.int64)
    core = np.array([FL_FREE_CORE, 0, 0, 0, 0, 0, FL_FREE_CORE, 0], np.int8)
    m = deferred_init_order0_mask(ev, pfn, order, pid, core, 9)
    assert m.tolist() == [0, FL_FREE_CORE, 0, FL_FREE_CORE, 0, 0, 0, 0]
