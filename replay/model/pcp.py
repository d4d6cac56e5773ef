"""Per-CPU page lists as Linux 6.1 keeps them (``struct per_cpu_pages``).

6.1 (not 6.12) behaviour is modelled:

* one list per (migratetype < MIGRATE_PCPTYPES, order <= PAGE_ALLOC_COSTLY_ORDER)
  plus one THP list (``order_to_pindex``); 13 lists;
* ``free_unref_page_commit()`` adds at the head and drains when
  ``pcp->count >= nr_pcp_high()``, freeing ``nr_pcp_free()`` pages, with
  ``free_factor`` doubling the batch on consecutive frees (6.1; 6.7 replaced it by
  ``free_count``/``high_min``/``high_max``);
* ``__rmqueue_pcplist()`` refills an empty list with ``max(batch >> order, 2)``
  blocks via ``rmqueue_bulk()`` (list_add_tail in physical order) and takes the head;
* ``free_pcppages_bulk()`` round-robins over the lists starting at the list just
  freed to, taking ``list_last_entry`` (the tail) of each.

ZONE_RECLAIM_ACTIVE (which lowers high to ``4 * batch`` while kswapd runs) is not
known from the trace and is taken as clear.
"""

from __future__ import annotations

from replay.model.buddy import __free_one_page, __rmqueue
from replay.model.state import (
    G_PB_ORDER,
    MIGRATE_MOVABLE,
    MIGRATE_PCPTYPES,
    NR_PCP_LISTS,
    PAGE_ALLOC_COSTLY_ORDER,
    PG_ALLOC,
    PG_NONE,
    PG_PCP,
    TP_DRAIN,
    ModelState,
    list_add,
    list_add_tail,
    list_del,
    order_to_pindex,
    pcp_list,
    pindex_to_order,
    tp_emit,
)
from replay.jit import kernel


@kernel(nrt=False)
def pcp_allowed_order(order: int, pbo: int) -> bool:
    """6.1 ``pcp_allowed_order()`` with CONFIG_TRANSPARENT_HUGEPAGE."""
    return order <= PAGE_ALLOC_COSTLY_ORDER or order == pbo


@kernel(nrt=False)
def pcp_add(st: ModelState, cpu: int, z: int, i: int, order: int, mt: int, to_tail: bool) -> None:
    """Put block ``i`` on ``pcp->lists[order_to_pindex(mt, order)]`` of ``cpu`` (head or tail)."""
    lid = pcp_list(st, cpu, z, order_to_pindex(mt, order))
    st.pg_state[i] = PG_PCP
    st.pg_order[i] = order
    st.pg_mt[i] = mt  # set_pcppage_migratetype()
    st.pg_cpu[i] = cpu
    if to_tail:
        list_add_tail(st, lid, i)
    else:
        list_add(st, lid, i)
    st.pcp_count[cpu, z] += 1 << order
    st.z_nr_pcp[z] += 1 << order


@kernel(nrt=False)
def pcp_del(st: ModelState, i: int, z: int) -> None:
    """``list_del(&page->pcp_list)`` + ``pcp->count -= 1 << order``; the page is no longer PG_PCP."""
    order = int(st.pg_order[i])
    cpu = int(st.pg_cpu[i])
    list_del(st, pcp_list(st, cpu, z, order_to_pindex(int(st.pg_mt[i]), order)), i)
    st.pg_state[i] = PG_NONE
    st.pcp_count[cpu, z] -= 1 << order
    st.z_nr_pcp[z] -= 1 << order


@kernel(nrt=False)
def pcp_list_of(st: ModelState, i: int, z: int) -> int:
    return pcp_list(st, int(st.pg_cpu[i]), z, order_to_pindex(int(st.pg_mt[i]), int(st.pg_order[i])))


@kernel(nrt=False)
def nr_pcp_high(st: ModelState, cpu: int, z: int, free_high: bool) -> int:
    """6.1 ``nr_pcp_high()`` (ZONE_RECLAIM_ACTIVE assumed clear)."""
    high = st.pcp_high[cpu, z]
    if high == 0 or free_high:
        return 0
    return high


@kernel(nrt=False)
def nr_pcp_free(st: ModelState, cpu: int, z: int, high: int, batch: int, free_high: bool) -> int:
    """6.1 ``nr_pcp_free()``: batch doubled per consecutive free, clamped to [batch, high - batch]."""
    if free_high:
        return st.pcp_count[cpu, z]
    if high < batch:
        return 1
    min_nr_free = batch
    max_nr_free = high - batch
    batch = batch << st.pcp_free_factor[cpu, z]
    if batch < max_nr_free:
        st.pcp_free_factor[cpu, z] += 1
    if batch < min_nr_free:
        batch = min_nr_free
    if batch > max_nr_free:
        batch = max_nr_free
    return batch


@kernel(nrt=False)
def free_pcppages_bulk(st: ModelState, cpu: int, z: int, count: int, pindex: int) -> int:
    """6.1 ``free_pcppages_bulk()``: return ``count`` pages to the buddy, round-robin from ``pindex``.

    Returns the number of blocks freed (each one ``mm_page_pcpu_drain`` in the kernel, fired
    into the tracepoint log after ``__free_one_page()`` as 6.1 does).
    """
    pbo = st.geo[G_PB_ORDER]
    if count > st.pcp_count[cpu, z]:
        count = st.pcp_count[cpu, z]
    min_pindex = 0
    max_pindex = NR_PCP_LISTS - 1
    pindex = pindex - 1
    nblocks = 0
    while count > 0:
        lid = 0
        while True:
            pindex += 1
            if pindex > max_pindex:
                pindex = min_pindex
            lid = pcp_list(st, cpu, z, pindex)
            if int(st.l_head[lid]) >= 0:
                break
            if pindex == max_pindex:
                max_pindex -= 1
            if pindex == min_pindex:
                min_pindex += 1
        order = pindex_to_order(pindex, pbo)
        while True:
            i = int(st.l_tail[lid])
            mt = int(st.pg_mt[i])
            pcp_del(st, i, z)
            count -= 1 << order
            __free_one_page(st, i, z, order, mt, False)
            if st.tp.shape[0] != 0:
                tp_emit(st, TP_DRAIN, i, order, mt, 0, 0, 0, z)  # trace_mm_page_pcpu_drain(page, order, mt)
            nblocks += 1
            if count <= 0 or int(st.l_head[lid]) < 0:
                break
    return nblocks


@kernel(nrt=False)
def free_unref_page_commit(st: ModelState, cpu: int, z: int, i: int, order: int, mt: int) -> int:
    """6.1 ``free_unref_page_commit()``: list_add, then drain past high.  Returns blocks drained."""
    if mt >= MIGRATE_PCPTYPES:
        mt = MIGRATE_MOVABLE  # HIGHATOMIC pages go to the MOVABLE list
    pcp_add(st, cpu, z, i, order, mt, False)
    free_high = st.pcp_free_factor[cpu, z] > 0 and order > 0 and order <= PAGE_ALLOC_COSTLY_ORDER
    high = nr_pcp_high(st, cpu, z, free_high)
    if st.pcp_count[cpu, z] >= high:
        batch = st.pcp_batch[cpu, z]
        n = nr_pcp_free(st, cpu, z, high, batch, free_high)
        return free_pcppages_bulk(st, cpu, z, n, order_to_pindex(mt, order))
    return 0


@kernel(nrt=False)
def rmqueue_bulk(st: ModelState, cpu: int, z: int, order: int, count: int, mt: int, alloc_flags: int) -> int:
    """6.1 ``rmqueue_bulk()``: take ``count`` blocks with ``__rmqueue`` onto the pcp list tail."""
    allocated = 0
    for _ in range(count):
        i = __rmqueue(st, z, order, mt, alloc_flags)
        if i < 0:
            break
        pcp_add(st, cpu, z, i, order, mt, True)
        allocated += 1
    return allocated


@kernel(nrt=False)
def __rmqueue_pcplist(st: ModelState, cpu: int, z: int, order: int, mt: int, alloc_flags: int) -> tuple[int, int]:
    """6.1 ``__rmqueue_pcplist()``: refill an empty list, take its head.

    Returns (page index or -1, number of blocks refilled under zone->lock).
    """
    lid = pcp_list(st, cpu, z, order_to_pindex(mt, order))
    refilled = 0
    if int(st.l_head[lid]) < 0:
        batch = st.pcp_batch[cpu, z]
        if batch > 1:
            batch = max(batch >> order, 2)
        refilled = rmqueue_bulk(st, cpu, z, order, batch, mt, alloc_flags)
        if int(st.l_head[lid]) < 0:
            return -1, refilled
    i = int(st.l_head[lid])
    pcp_del(st, i, z)
    st.pg_state[i] = PG_ALLOC
    st.z_nr_alloc[z] += 1 << order
    return i, refilled
