"""Exact-mode event handlers: apply the trace's pfns to the model, check and repair.

One function per tracepoint, each returning an anomaly code (0: the event agrees
with the model).  Where the trace contradicts the model the model is repaired so
that it follows the trace (the kernel is right by definition), and the kind of
contradiction is returned.  See ``replay.model.anomalies`` for the kinds and the
kernel paths that explain them.
"""

from __future__ import annotations

from replay.model.anomalies import (
    A_ALLOC_FROM_BUDDY,
    A_ALLOC_ORDER,
    A_ALLOC_REMOTE_PCP,
    A_ALLOC_UNKNOWN,
    A_BATCHED_NO_FREE,
    A_DOUBLE_ALLOC,
    A_DOUBLE_FREE,
    A_DRAIN_OF_ALLOC,
    A_DRAIN_OF_FREE,
    A_DRAIN_ORDER,
    A_DRAIN_UNKNOWN,
    A_EXTFRAG_NOT_FREE,
    A_FREE_INSIDE,
    A_FREE_OF_FREE,
    A_FREE_OF_PCP,
    A_FREE_SPANS,
    A_FREE_UNKNOWN,
    A_ZL_INSIDE_FREE,
    A_ZL_ON_ALLOC,
    A_ZL_ON_PCP,
    A_ZL_UNKNOWN,
)
from replay.model.buddy import (
    __free_one_page,
    break_down_buddy_pages,
    can_steal_fallback,
    del_page_from_free_list,
    expand,
    predict_rmqueue_smallest,
    steal_suitable_fallback,
)
from replay.model.pcp import pcp_add, pcp_allowed_order, pcp_del, pcp_list_of
from replay.model.profiles import FREE_FOLIOS, KP_FREE_BATCH
from replay.model.state import (
    C_BULK_INFERRED,
    C_BULK_UNDONE,
    C_DRAIN_CHECKED,
    C_DRAIN_DIS_PRE_TRACE,
    C_DRAIN_TAIL,
    C_OWNERSHIP_AGREE,
    C_OWNERSHIP_CHECKED,
    C_PB_MT_FROM_ALLOC,
    C_PCP_ALLOC_CHECKED,
    C_PCP_ALLOC_DIS_PRE_TRACE,
    C_PCP_ALLOC_HEAD,
    C_RMQUEUE_CHECKED,
    C_RMQUEUE_DIS_PRE_TRACE,
    C_RMQUEUE_PREDICTED,
    G_PB_ORDER,
    MIGRATE_ISOLATE,
    MIGRATE_MOVABLE,
    MIGRATE_PCPTYPES,
    ORIGIN_INFERRED,
    ORIGIN_PRE_TRACE,
    ORIGIN_TRACED,
    PAGE_ALLOC_COSTLY_ORDER,
    PG_ALLOC,
    PG_BUDDY,
    PG_FREEING,
    PG_NONE,
    PG_PCP,
    PG_TAKEN,
    ModelState,
    block_head,
)
from replay.jit import kernel

# isolate_range() result bits
F_BUDDY = 1
F_PCP = 2
F_ALLOC = 4
F_HOLE = 8


@kernel(nrt=False)
def origin_of(st: ModelState, i: int) -> int:
    """``pg_origin`` of block head ``i`` (traced for -1: no block)."""
    return int(st.pg_origin[i]) if i >= 0 else ORIGIN_TRACED


@kernel(nrt=False)
def mark_inferred(st: ModelState, h: int) -> None:
    """Block ``h`` is about to be split by a repair: its pieces were placed by inference."""
    st.pg_origin[h] = max(int(st.pg_origin[h]), ORIGIN_INFERRED)


@kernel(nrt=False)
def count_disagreement(st: ModelState, pre_trace_ctr: int, origin: int) -> None:
    """A placement check the kernel decided otherwise: counted by cause (the counter after
    ``pre_trace_ctr`` is the inferred one; a traced origin is the model's own disagreement)."""
    if origin >= ORIGIN_PRE_TRACE:
        st.ctr[pre_trace_ctr] += 1
    elif origin == ORIGIN_INFERRED:
        st.ctr[pre_trace_ctr + 1] += 1


@kernel(nrt=False)
def carve_block(st: ModelState, h: int, target: int, low: int) -> None:
    """Split the non-free block at ``h`` so ``target`` heads an order-``low`` block.

    The pieces keep the block's state and migratetype, as ``split_page()`` leaves
    every piece of a non-compound allocation independently freeable.
    """
    s = int(st.pg_state[h])
    m = int(st.pg_mt[h])
    c = int(st.pg_cpu[h])
    o = int(st.pg_order[h])
    cur = h
    while o > low:
        o -= 1
        size = 1 << o
        if target >= cur + size:
            other = cur
            cur = cur + size
        else:
            other = cur + size
        st.pg_state[other] = s
        st.pg_order[other] = o
        st.pg_mt[other] = m
        st.pg_cpu[other] = c
    st.pg_state[cur] = s
    st.pg_order[cur] = low
    st.pg_mt[cur] = m
    st.pg_cpu[cur] = c


@kernel(nrt=False)
def isolate_range(st: ModelState, i: int, order: int, z: int) -> int:
    """Take the pages [i, i + 2**order) out of every list and count, whatever they were.

    Used to repair the model when the trace contradicts it.  Returns F_* bits saying
    what the range held; pages the model did not know (holes) become known (present).
    """
    found = 0
    h = block_head(st, i)
    if h >= 0 and (h != i or int(st.pg_order[h]) > order):
        ho = int(st.pg_order[h])
        if ho > order or h != i:
            s = int(st.pg_state[h])
            if s == PG_BUDDY:
                m = int(st.pg_mt[h])
                del_page_from_free_list(st, h, z)
                mark_inferred(st, h)
                break_down_buddy_pages(st, h, i, z, order, ho, m)
                st.pg_state[i] = PG_NONE
                return F_BUDDY
            if s == PG_PCP:
                pcp_del(st, h, z)
                st.pg_state[h] = PG_ALLOC
                st.z_nr_alloc[z] += 1 << ho
                found |= F_PCP
            carve_block(st, h, i, order)
    end = i + (1 << order)
    j = i
    holes = 0
    while j < end:
        s = int(st.pg_state[j])
        if s == PG_NONE:
            holes += 1
            j += 1
            continue
        o = int(st.pg_order[j])
        if s == PG_BUDDY:
            del_page_from_free_list(st, j, z)
            found |= F_BUDDY
        elif s == PG_PCP:
            pcp_del(st, j, z)
            found |= F_PCP
        else:
            st.z_nr_alloc[z] -= 1 << o
            found |= F_ALLOC
        st.pg_state[j] = PG_NONE
        j += 1 << o
    if holes:
        st.z_present[z] += holes
        found |= F_HOLE
    return found


@kernel(nrt=False)
def set_allocated(st: ModelState, i: int, z: int, order: int, mt: int, state: int) -> None:
    st.pg_state[i] = state
    st.pg_order[i] = order
    st.pg_mt[i] = mt
    st.z_nr_alloc[z] += 1 << order


@kernel(nrt=False)
def exact_zone_locked(st: ModelState, c: int, i: int, z: int, o: int, m: int, refill: bool) -> int:
    """``mm_page_alloc_zone_locked``: ``__rmqueue_smallest()`` took block ``i`` (del + ``expand``)."""
    anom = 0
    pred = predict_rmqueue_smallest(st, z, o, m)
    st.ctr[C_RMQUEUE_CHECKED] += 1
    h = block_head(st, i)
    if h >= 0 and int(st.pg_state[h]) == PG_BUDDY and int(st.pg_order[h]) >= o:
        ho = int(st.pg_order[h])
        hor = int(st.pg_origin[h])
        del_page_from_free_list(st, h, z)
        if h == i:
            if pred == i:
                st.ctr[C_RMQUEUE_PREDICTED] += 1
            else:
                count_disagreement(st, C_RMQUEUE_DIS_PRE_TRACE, max(hor, origin_of(st, pred)))
            expand(st, i, z, o, ho, m)
        else:
            count_disagreement(st, C_RMQUEUE_DIS_PRE_TRACE, max(hor, ORIGIN_INFERRED))
            mark_inferred(st, h)
            break_down_buddy_pages(st, h, i, z, o, ho, m)
            st.pg_state[i] = PG_NONE
            anom = A_ZL_INSIDE_FREE
    else:
        count_disagreement(st, C_RMQUEUE_DIS_PRE_TRACE, max(origin_of(st, h), ORIGIN_INFERRED))
        found = isolate_range(st, i, o, z)
        if found & 2:
            anom = A_ZL_ON_PCP
        elif found & 4:
            anom = A_ZL_ON_ALLOC
        elif found & 8:
            anom = A_ZL_UNKNOWN
        else:
            anom = A_ZL_INSIDE_FREE
    st.pg_origin[i] = ORIGIN_TRACED
    if refill:
        # rmqueue_bulk(): list_add_tail in the order the blocks come out
        pcp_add(st, c, z, i, o, m, True)
    else:
        set_allocated(st, i, z, o, m, PG_TAKEN)
    return anom


@kernel(nrt=False)
def infer_bulk_taken(st: ModelState, lid: int, i: int, z: int) -> int:
    """A traced order-0 pcp allocation took ``i`` from below the head of its list: the pages
    ahead of it left the list untraced, through ``__alloc_pages_bulk()`` (6.1 and 6.12
    mm/page_alloc.c: ``__rmqueue_pcplist()`` from the head of the same list, no
    ``mm_page_alloc``; vmalloc, fork's stacks, sunrpc, XFS/btrfs buffers).  They become
    allocated (their frees follow, traced); returns how many."""
    j = int(st.l_head[lid])
    n = 0
    while j >= 0 and j != i:
        nxt = int(st.pg_next[j])
        o = int(st.pg_order[j])
        pcp_del(st, j, z)
        st.pg_state[j] = PG_ALLOC
        st.pg_origin[j] = ORIGIN_INFERRED
        st.z_nr_alloc[z] += 1 << o
        st.z_nr_bulk[z] += 1 << o
        n += 1
        j = nxt
    st.ctr[C_BULK_INFERRED] += n
    return n


@kernel(nrt=False)
def undo_bulk_taken(st: ModelState, i: int, z: int, o: int) -> bool:
    """``i`` is a page ``infer_bulk_taken`` took off a pcp list that a traced allocation or drain
    now takes from it: it had stayed on the list (behind the page the kernel served), so the
    inference is undone (the page leaves the allocated count; the caller places it)."""
    if int(st.pg_state[i]) != PG_ALLOC or int(st.pg_origin[i]) != ORIGIN_INFERRED or int(st.pg_order[i]) != o:
        return False
    if block_head(st, i) != i:
        return False
    st.pg_state[i] = PG_NONE
    st.pg_origin[i] = ORIGIN_TRACED
    st.z_nr_alloc[z] -= 1 << o
    st.z_nr_bulk[z] -= 1 << o
    st.ctr[C_BULK_UNDONE] += 1
    return True


@kernel(nrt=False)
def learn_pageblock_mt(st: ModelState, i: int, o: int, m: int) -> None:
    """A pcp allocation of migratetype ``m`` took block ``i``, which the model has on another
    migratetype's list.  ``__rmqueue_pcplist()`` takes from ``pcp->lists[order_to_pindex(m, o)]``
    only, and a free puts a block on the list of its pageblock's type (6.1
    ``free_unref_page_commit()`` via ``get_pcppage_migratetype()``, 6.12 ``free_unref_folios()``
    via ``get_pfnblock_migratetype()``): when the model's list came from its pageblock type, that
    type was wrong (the pageblock was typed before the trace, or by a steal the trace does not
    show), and the kernel's is ``m``."""
    pbo = st.geo[G_PB_ORDER]
    if o > PAGE_ALLOC_COSTLY_ORDER or m < 0 or m >= MIGRATE_PCPTYPES:
        return
    lm = int(st.pg_mt[i])
    if lm != m and int(st.pb_mt[i >> pbo]) == lm:
        st.pb_mt[i >> pbo] = m
        st.ctr[C_PB_MT_FROM_ALLOC] += 1


@kernel(nrt=False)
def exact_alloc(st: ModelState, c: int, i: int, z: int, o: int, m: int) -> int:
    """``mm_page_alloc``: the block leaves a pcp list (or was taken by ``rmqueue_buddy``)."""
    anom = 0
    h = block_head(st, i)
    s = int(st.pg_state[h]) if h >= 0 else PG_NONE
    if h == i and s == PG_PCP and int(st.pg_order[i]) == o:
        owner = int(st.pg_cpu[i])
        st.ctr[C_PCP_ALLOC_CHECKED] += 1
        head = int(st.l_head[pcp_list_of(st, i, z)])
        if head == i:
            st.ctr[C_PCP_ALLOC_HEAD] += 1
        else:
            cause = max(origin_of(st, head), int(st.pg_origin[i]))
            if o == 0:
                infer_bulk_taken(st, pcp_list_of(st, i, z), i, z)
                cause = max(cause, ORIGIN_INFERRED)
            count_disagreement(st, C_PCP_ALLOC_DIS_PRE_TRACE, cause)
        learn_pageblock_mt(st, i, o, m)
        pcp_del(st, i, z)
        if owner != c:
            anom = A_ALLOC_REMOTE_PCP
        st.pcp_free_factor[owner, z] >>= 1  # rmqueue_pcplist(): pcp->free_factor >>= 1
    elif h == i and s == PG_TAKEN and int(st.pg_order[i]) == o:
        st.z_nr_alloc[z] -= 1 << o
    elif h == i and undo_bulk_taken(st, i, z, o):
        pass
    elif h >= 0 and s == PG_BUDDY and int(st.pg_order[h]) >= o:
        # compaction_capture(): the block never reached the free lists in the kernel
        ho = int(st.pg_order[h])
        hm = int(st.pg_mt[h])
        del_page_from_free_list(st, h, z)
        mark_inferred(st, h)
        break_down_buddy_pages(st, h, i, z, o, ho, hm)
        st.pg_state[i] = PG_NONE
        anom = A_ALLOC_FROM_BUDDY
    else:
        found = isolate_range(st, i, o, z)
        if found & 4:
            anom = A_DOUBLE_ALLOC
        elif found & 2:
            anom = A_ALLOC_ORDER
        elif found & 8:
            anom = A_ALLOC_UNKNOWN
        else:
            anom = A_ALLOC_FROM_BUDDY
    set_allocated(st, i, z, o, m, PG_ALLOC)
    return anom


@kernel(nrt=False)
def release_block(st: ModelState, c: int, i: int, z: int, o: int) -> int:
    """Take the block being freed out of the allocated state; returns an anomaly code."""
    h = block_head(st, i)
    s = int(st.pg_state[h]) if h >= 0 else PG_NONE
    if h == i and (s == PG_ALLOC or s == PG_TAKEN) and int(st.pg_order[i]) == o:
        st.z_nr_alloc[z] -= 1 << o
        st.pg_state[i] = PG_NONE
        return 0
    if h >= 0 and (s == PG_ALLOC or s == PG_TAKEN) and int(st.pg_order[h]) > o:
        carve_block(st, h, i, o)
        st.z_nr_alloc[z] -= 1 << o
        st.pg_state[i] = PG_NONE
        return A_FREE_INSIDE
    double = h == i and s == PG_FREEING
    found = isolate_range(st, i, o, z)
    if double:
        return A_DOUBLE_FREE
    if found == F_PCP:
        st.ctr[C_BULK_INFERRED] += 1
        return A_FREE_OF_PCP
    if found == F_BUDDY:
        return A_FREE_OF_FREE
    if found & F_HOLE:
        return A_FREE_UNKNOWN
    if found & F_PCP and not found & F_ALLOC:
        st.ctr[C_BULK_INFERRED] += 1
        return A_FREE_OF_PCP
    if found & F_BUDDY and not found & F_ALLOC:
        return A_FREE_OF_FREE
    return A_FREE_SPANS


@kernel(nrt=False)
def exact_free(st: ModelState, c: int, i: int, z: int, o: int, flags: int) -> tuple[int, bool]:
    """``mm_page_free`` (``free_pages_prepare``).  Returns (anomaly, freed straight to the buddy).

    ``flags`` bit 1: an ``mm_page_free_batched`` of this page follows (``free_unref_page_list``
    traces the prepare step first and commits the page to the pcp list later); bit 2:
    ``__free_pages_core()`` (deferred memmap init), straight to the buddy tail; bit 8: the
    page stays with the compactor (6.9+ ``compaction_free``: ``free_pages_prepare`` only, then
    ``cc->freepages``; ``replay.model.untraced``).
    Otherwise pcp-allowed orders go to the head of this CPU's list
    (``free_unref_page_commit``), others to ``free_one_page()`` under zone->lock.
    """
    anom = release_block(st, c, i, z, o)
    st.pg_origin[i] = ORIGIN_TRACED
    pbo = st.geo[G_PB_ORDER]
    pbmt = int(st.pb_mt[i >> pbo])
    if flags & 8:
        set_allocated(st, i, z, o, MIGRATE_MOVABLE, PG_ALLOC)
        return anom, False
    if flags & 1:
        set_allocated(st, i, z, o, pbmt, PG_FREEING)
        return anom, False
    if flags & 2:
        __free_one_page(st, i, z, o, pbmt, True)
        return anom, True
    if pcp_allowed_order(o, pbo) and pbmt != MIGRATE_ISOLATE:
        m = pbmt if pbmt < MIGRATE_PCPTYPES else MIGRATE_MOVABLE
        pcp_add(st, c, z, i, o, m, False)
        return anom, False
    __free_one_page(st, i, z, o, pbmt, False)
    return anom, True


@kernel(nrt=False)
def exact_free_batched(st: ModelState, c: int, i: int, z: int) -> tuple[int, bool]:
    """``mm_page_free_batched``: the pcp commit of a page already traced freed.

    6.1 ``free_unref_page_list()`` batches order-0 pages only, their migratetype cached at the
    prepare pass (``free_unref_page_prepare``).  From v6.10 ``free_unref_folios()`` (6.12.117,
    6.18.15) batches every pcp order (the event prints ``order=0`` whatever the folio's order:
    the order is the one its ``mm_page_free`` traced) and reads the pageblock's migratetype at
    the commit (``get_pfnblock_migratetype``)."""
    folios = st.kp[KP_FREE_BATCH] == FREE_FOLIOS
    if int(st.pg_state[i]) == PG_FREEING and (folios or int(st.pg_order[i]) == 0):
        o = int(st.pg_order[i])
        st.z_nr_alloc[z] -= 1 << o
        st.pg_state[i] = PG_NONE
        st.pg_origin[i] = ORIGIN_TRACED
        m = int(st.pb_mt[i >> st.geo[G_PB_ORDER]]) if folios else int(st.pg_mt[i])
        if m == MIGRATE_ISOLATE:
            __free_one_page(st, i, z, o, m, False)
            return 0, True
        if m >= MIGRATE_PCPTYPES:
            m = MIGRATE_MOVABLE
        pcp_add(st, c, z, i, o, m, False)
        return 0, False
    direct = exact_free(st, c, i, z, 0, 0)[1]
    return A_BATCHED_NO_FREE, direct


@kernel(nrt=False)
def exact_drain(st: ModelState, i: int, z: int, o: int, m: int) -> int:
    """``mm_page_pcpu_drain``: ``free_pcppages_bulk()`` took the block off a pcp list (the tail)
    and merged it into the buddy with ``__free_one_page()`` at the traced migratetype."""
    anom = 0
    if int(st.pg_state[i]) == PG_PCP and int(st.pg_order[i]) == o:
        st.ctr[C_DRAIN_CHECKED] += 1
        tail = int(st.l_tail[pcp_list_of(st, i, z)])
        if tail == i:
            st.ctr[C_DRAIN_TAIL] += 1
        else:
            count_disagreement(st, C_DRAIN_DIS_PRE_TRACE, max(origin_of(st, tail), int(st.pg_origin[i])))
        pcp_del(st, i, z)
        st.pg_state[i] = PG_NONE
    elif undo_bulk_taken(st, i, z, o):
        pass
    else:
        found = isolate_range(st, i, o, z)
        if found & F_PCP:
            anom = A_DRAIN_ORDER
        elif found & F_ALLOC:
            anom = A_DRAIN_OF_ALLOC
        elif found & F_HOLE:
            anom = A_DRAIN_UNKNOWN
        else:
            anom = A_DRAIN_OF_FREE
    st.pg_origin[i] = ORIGIN_TRACED
    __free_one_page(st, i, z, o, m, False)
    return anom


@kernel(nrt=False)
def exact_extfrag(st: ModelState, i: int, z: int, alloc_order: int, fb_order: int, alloc_mt: int, chown: int) -> int:
    """``mm_page_alloc_extfrag``: ``steal_suitable_fallback()`` ran on free block ``i``.

    The model makes its own stealing decision (6.1 rules) and then follows the trace's
    ``change_ownership`` (counted as agreement or not).
    """
    pbo = st.geo[G_PB_ORDER]
    if int(st.pg_state[i]) != PG_BUDDY or int(st.pg_order[i]) != fb_order or alloc_mt >= MIGRATE_PCPTYPES:
        return A_EXTFRAG_NOT_FREE
    old = int(st.pb_mt[i >> pbo])
    can_steal = can_steal_fallback(fb_order, alloc_mt, pbo)
    steal_suitable_fallback(st, i, z, alloc_mt, can_steal)
    owned = int(st.pb_mt[i >> pbo]) == alloc_mt
    if chown >= 0:
        st.ctr[C_OWNERSHIP_CHECKED] += 1
        if owned == (chown == 1):
            st.ctr[C_OWNERSHIP_AGREE] += 1
        elif chown == 1:
            st.pb_mt[i >> pbo] = alloc_mt
        else:
            st.pb_mt[i >> pbo] = old
    return 0


@kernel(nrt=False)
def pcp_owner(st: ModelState, i: int, c: int) -> int:
    if int(st.pg_state[i]) == PG_PCP:
        return int(st.pg_cpu[i])
    return c


__all__ = [
    "exact_zone_locked", "exact_alloc", "exact_free", "exact_free_batched", "exact_drain",
    "exact_extfrag", "isolate_range", "carve_block", "pcp_owner", "PG_ALLOC", "MIGRATE_MOVABLE",
]
