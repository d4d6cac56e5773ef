"""The buddy allocator of Linux 6.1 ``mm/page_alloc.c``, on the struct-of-arrays state.

Every function is named after the kernel function it models and takes page
*indices* (``pfn - pfn_base``; the base is aligned to the largest block, so
``__find_buddy_pfn`` is the same xor).  Where 6.1 differs from 6.12 (the
source under /tmp/linux) the 6.1 behaviour is modelled:

* ``del_page_from_free_list`` does not check the migratetype (6.12 passes it);
* ``move_to_free_list`` is ``list_move_tail`` onto the new migratetype;
* ``__rmqueue_fallback`` / ``steal_suitable_fallback`` / ``move_freepages_block``
  are the 6.1 versions (no ``try_to_claim_block``, no per-pageblock free
  accounting); watermark boosting is not modelled (it changes reclaim, not
  placement).
"""

from __future__ import annotations

from replay.model.state import (
    C_MERGES,
    C_SPLITS,
    C_STEALS,
    G_NR_ORDERS,
    G_PB_ORDER,
    MIGRATE_HIGHATOMIC,
    MIGRATE_MOVABLE,
    MIGRATE_PCPTYPES,
    MIGRATE_RECLAIMABLE,
    MIGRATE_UNMOVABLE,
    N_MT,
    PG_ALLOC,
    PG_BUDDY,
    PG_NONE,
    PAGE_ALLOC_COSTLY_ORDER,
    TP_EXTFRAG,
    TP_ZONE_LOCKED,
    ModelState,
    fa_list,
    list_add,
    list_add_tail,
    list_del,
    tp_emit,
)
from replay.jit import kernel

#: alloc_flags bits the model understands (6.1 mm/internal.h values).
ALLOC_NOFRAGMENT = 0x100


@kernel(nrt=False)
def add_to_free_list(st: ModelState, i: int, z: int, order: int, mt: int, to_tail: bool) -> None:
    """``add_to_free_list()``/``add_to_free_list_tail()`` plus ``set_buddy_order()``."""
    st.pg_state[i] = PG_BUDDY
    st.pg_order[i] = order
    st.pg_mt[i] = mt
    lid = fa_list(st, z, order, mt)
    if to_tail:
        list_add_tail(st, lid, i)
    else:
        list_add(st, lid, i)
    st.z_nr_free[z] += 1 << order


@kernel(nrt=False)
def del_page_from_free_list(st: ModelState, i: int, z: int) -> None:
    """``del_page_from_free_list()``: unlink, ``__ClearPageBuddy``, account."""
    order = int(st.pg_order[i])
    list_del(st, fa_list(st, z, order, int(st.pg_mt[i])), i)
    st.pg_state[i] = PG_NONE
    st.z_nr_free[z] -= 1 << order


@kernel(nrt=False)
def move_to_free_list(st: ModelState, i: int, z: int, order: int, mt: int) -> None:
    """6.1 ``move_to_free_list()``: ``list_move_tail`` onto ``free_list[mt]``."""
    list_del(st, fa_list(st, z, order, int(st.pg_mt[i])), i)
    st.pg_mt[i] = mt
    list_add_tail(st, fa_list(st, z, order, mt), i)


@kernel(nrt=False)
def page_is_buddy(st: ModelState, buddy: int, order: int, z: int) -> bool:
    """``page_is_buddy()``: ``buddy`` is a free block head of exactly ``order`` in zone ``z``."""
    if buddy < 0 or buddy >= st.pg_state.shape[0]:
        return False
    if int(st.pg_state[buddy]) != PG_BUDDY or int(st.pg_order[buddy]) != order:
        return False
    return st.z_start[z] <= buddy < st.z_end[z]


@kernel(nrt=False)
def migratetype_is_mergeable(mt: int) -> bool:
    return mt < MIGRATE_PCPTYPES


@kernel(nrt=False)
def buddy_merge_likely(st: ModelState, i: int, buddy: int, order: int, z: int) -> bool:
    """6.1 ``buddy_merge_likely()``: is the buddy of the next-higher block free?

    If so the freed block is put at the list tail, so that it is less likely to be
    allocated soon and more likely to merge when its buddy is freed.
    """
    if order >= st.geo[G_NR_ORDERS] - 2:
        return False
    higher = buddy & i
    return page_is_buddy(st, higher ^ (1 << (order + 1)), order + 1, z)


@kernel(nrt=False)
def __free_one_page(st: ModelState, i: int, z: int, order: int, mt: int, fpi_to_tail: bool) -> int:
    """6.1 ``__free_one_page()``: merge with free buddies, then head/tail insertion.

    Returns the index of the (merged) block head.  ``compaction_capture()`` and
    page reporting are not modelled (capture shows up as an allocation of a free
    block without ``mm_page_alloc_zone_locked``, see anomalies).
    """
    max_order = st.geo[G_NR_ORDERS] - 1
    pbo = st.geo[G_PB_ORDER]
    st.pg_state[i] = PG_NONE  # the caller's state of this head is over
    origin = int(st.pg_origin[i])  # the caller's (pg_origin in replay.model.state)
    buddy = i ^ (1 << order)
    while order < max_order:
        buddy = i ^ (1 << order)
        if not page_is_buddy(st, buddy, order, z):
            break
        if order >= pbo:
            # Prevent merging free pages of isolated/highatomic/CMA pageblocks with normal ones.
            buddy_mt = int(st.pb_mt[buddy >> pbo])
            if mt != buddy_mt and (not migratetype_is_mergeable(mt) or not migratetype_is_mergeable(buddy_mt)):
                break
        del_page_from_free_list(st, buddy, z)
        st.ctr[C_MERGES] += 1
        origin = max(origin, int(st.pg_origin[buddy]))
        i = buddy & i
        order += 1
    st.pg_origin[i] = origin
    if fpi_to_tail:
        to_tail = True
    else:
        # is_shuffle_order() is false: the shuffle static key is off unless page_alloc.shuffle=1.
        to_tail = buddy_merge_likely(st, i, buddy, order, z)
    add_to_free_list(st, i, z, order, mt, to_tail)
    return i


@kernel(nrt=False)
def expand(st: ModelState, i: int, z: int, low: int, high: int, mt: int) -> None:
    """``expand()``: keep the low half, put each upper half at the head of its list."""
    size = 1 << high
    origin = st.pg_origin[i]
    while high > low:
        high -= 1
        size >>= 1
        add_to_free_list(st, i + size, z, high, mt, False)
        st.pg_origin[i + size] = origin
        st.ctr[C_SPLITS] += 1


@kernel(nrt=False)
def break_down_buddy_pages(st: ModelState, i: int, target: int, z: int, low: int, high: int, mt: int) -> None:
    """``break_down_buddy_pages()`` (mm/page_alloc.c, used by ``take_page_off_buddy``).

    Split the free block at ``i`` (already off its list) so that the order-``low``
    block at ``target`` is left off the lists and every other piece is free.  The
    same as ``expand()`` when ``target == i``.
    """
    size = 1 << high
    origin = st.pg_origin[i]
    while high > low:
        high -= 1
        size >>= 1
        if target >= i + size:
            nxt = i + size
            cur = i
        else:
            nxt = i
            cur = i + size
        add_to_free_list(st, cur, z, high, mt, False)
        st.pg_origin[cur] = origin
        st.ctr[C_SPLITS] += 1
        i = nxt


@kernel(nrt=False)
def __rmqueue_smallest(st: ModelState, z: int, order: int, mt: int) -> int:
    """``__rmqueue_smallest()``: first block of the smallest order >= ``order`` on ``free_list[mt]``.

    Fires ``mm_page_alloc_zone_locked(page, order, mt, pcp_allowed_order(order) && mt <
    MIGRATE_PCPTYPES)`` into the tracepoint log, as 6.1 does here (since 5.19).
    """
    for co in range(order, st.geo[G_NR_ORDERS]):
        i = int(st.l_head[fa_list(st, z, co, mt)])
        if i < 0:
            continue
        del_page_from_free_list(st, i, z)
        expand(st, i, z, order, co, mt)
        if st.tp.shape[0] != 0:
            refill = (order <= PAGE_ALLOC_COSTLY_ORDER or order == st.geo[G_PB_ORDER]) and mt < MIGRATE_PCPTYPES
            tp_emit(st, TP_ZONE_LOCKED, i, order, mt, 1 if refill else 0, 0, 0, z)
        return i
    return -1


@kernel(nrt=False)
def predict_rmqueue_smallest(st: ModelState, z: int, order: int, mt: int) -> int:
    """The block ``__rmqueue_smallest()`` would take, without taking it (-1: none)."""
    for co in range(order, st.geo[G_NR_ORDERS]):
        i = int(st.l_head[fa_list(st, z, co, mt)])
        if i >= 0:
            return i
    return -1


@kernel(nrt=False)
def fallback_mt(start_mt: int, k: int) -> int:
    """6.1 ``fallbacks[][]``; -1 ends the row (MIGRATE_TYPES in the kernel)."""
    if k >= 2 or start_mt >= MIGRATE_PCPTYPES:
        return -1
    if start_mt == MIGRATE_UNMOVABLE:
        return MIGRATE_RECLAIMABLE if k == 0 else MIGRATE_MOVABLE
    if start_mt == MIGRATE_MOVABLE:
        return MIGRATE_RECLAIMABLE if k == 0 else MIGRATE_UNMOVABLE
    return MIGRATE_UNMOVABLE if k == 0 else MIGRATE_MOVABLE


@kernel(nrt=False)
def can_steal_fallback(order: int, start_mt: int, pbo: int) -> bool:
    """6.1 ``can_steal_fallback()`` (page_group_by_mobility_disabled is false)."""
    if order >= pbo:
        return True
    if order >= pbo // 2 or start_mt == MIGRATE_RECLAIMABLE or start_mt == MIGRATE_UNMOVABLE:
        return True
    return False


@kernel(nrt=False)
def area_nr_free(st: ModelState, z: int, order: int) -> int:
    n = 0
    for mt in range(N_MT):
        n += st.l_len[fa_list(st, z, order, mt)]
    return n


@kernel(nrt=False)
def find_suitable_fallback(st: ModelState, z: int, order: int, start_mt: int, only_stealable: bool) -> tuple[int, bool]:
    """6.1 ``find_suitable_fallback()``: returns (fallback migratetype or -1, can_steal)."""
    can_steal = False
    if area_nr_free(st, z, order) == 0:
        return -1, can_steal
    for k in range(2):
        fmt = fallback_mt(start_mt, k)
        if fmt < 0:
            break
        if st.l_len[fa_list(st, z, order, fmt)] == 0:
            continue
        if can_steal_fallback(order, start_mt, st.geo[G_PB_ORDER]):
            can_steal = True
        if not only_stealable:
            return fmt, can_steal
        if can_steal:
            return fmt, can_steal
    return -1, can_steal


@kernel(nrt=False)
def move_freepages_block(st: ModelState, i: int, z: int, mt: int) -> tuple[int, int]:
    """6.1 ``move_freepages_block()``: move the pageblock's free blocks to ``free_list[mt]``.

    Returns (pages moved, movable pages).  The kernel counts a non-free page as
    movable when it is on the LRU or ``__PageMovable``; the model counts the head
    of each block allocated with a MOVABLE request (the trace does not say which
    pages are on the LRU).
    """
    pbo = st.geo[G_PB_ORDER]
    start = (i >> pbo) << pbo
    end = start + (1 << pbo) - 1
    if not (st.z_start[z] <= start < st.z_end[z]):
        start = i
    if not (st.z_start[z] <= end < st.z_end[z]):
        return 0, 0
    moved = 0
    movable = 0
    j = start
    while j <= end:
        s = int(st.pg_state[j])
        if s == PG_BUDDY:
            o = int(st.pg_order[j])
            move_to_free_list(st, j, z, o, mt)
            moved += 1 << o
            j += 1 << o
            continue
        if s == PG_ALLOC and int(st.pg_mt[j]) == MIGRATE_MOVABLE:
            movable += 1
        j += 1
    return moved, movable


@kernel(nrt=False)
def steal_suitable_fallback(st: ModelState, i: int, z: int, start_type: int, whole_block: bool) -> bool:
    """6.1 ``steal_suitable_fallback()``; returns True when the pageblock changed ownership."""
    pbo = st.geo[G_PB_ORDER]
    current_order = int(st.pg_order[i])
    old_block_type = int(st.pb_mt[i >> pbo])
    st.ctr[C_STEALS] += 1
    if old_block_type == MIGRATE_HIGHATOMIC:
        move_to_free_list(st, i, z, current_order, start_type)
        return False
    if current_order >= pbo:
        # change_pageblock_range()
        first = i >> pbo
        for b in range(first, first + (1 << (current_order - pbo))):
            st.pb_mt[b] = start_type
        move_to_free_list(st, i, z, current_order, start_type)
        return True
    if not whole_block:
        move_to_free_list(st, i, z, current_order, start_type)
        return False
    free_pages, movable_pages = move_freepages_block(st, i, z, start_type)
    if start_type == MIGRATE_MOVABLE:
        alike_pages = movable_pages
    elif old_block_type == MIGRATE_MOVABLE:
        alike_pages = (1 << pbo) - (free_pages + movable_pages)
    else:
        alike_pages = 0
    if free_pages == 0:
        move_to_free_list(st, i, z, current_order, start_type)
        return False
    if free_pages + alike_pages >= (1 << (pbo - 1)):
        st.pb_mt[i >> pbo] = start_type
        return True
    return False


@kernel(nrt=False)
def __rmqueue_fallback(st: ModelState, z: int, order: int, start_mt: int, alloc_flags: int) -> int:
    """6.1 ``__rmqueue_fallback()``: steal the largest suitable block; returns its index or -1.

    Fires ``mm_page_alloc_extfrag`` into the tracepoint log after ``steal_suitable_fallback()``.

    (The kernel returns bool and lets ``__rmqueue`` retry ``__rmqueue_smallest``.)
    """
    min_order = order
    if alloc_flags & ALLOC_NOFRAGMENT:
        min_order = st.geo[G_PB_ORDER]
    max_order = st.geo[G_NR_ORDERS] - 1
    co = max_order
    found = -1
    can_steal = False
    while co >= min_order:
        fmt, can_steal = find_suitable_fallback(st, z, co, start_mt, False)
        if fmt >= 0:
            found = fmt
            break
        co -= 1
    if found < 0:
        return -1
    if not can_steal and start_mt == MIGRATE_MOVABLE and co > order:
        # find_smallest: steal and split the smallest available block instead
        co = order
        while co <= max_order:
            fmt, can_steal = find_suitable_fallback(st, z, co, start_mt, False)
            if fmt >= 0:
                found = fmt
                break
            co += 1
    i = int(st.l_head[fa_list(st, z, co, found)])
    steal_suitable_fallback(st, i, z, start_mt, can_steal)
    if st.tp.shape[0] != 0:
        # trace_mm_page_alloc_extfrag(page, order, current_order, start_migratetype, fallback_mt);
        # change_ownership = get_pageblock_migratetype(page) == alloc_migratetype (5.14+)
        chown = 1 if int(st.pb_mt[i >> st.geo[G_PB_ORDER]]) == start_mt else 0
        tp_emit(st, TP_EXTFRAG, i, order, start_mt, co, found, chown, z)
    return i


@kernel(nrt=False)
def __rmqueue(st: ModelState, z: int, order: int, mt: int, alloc_flags: int) -> int:
    """6.1 ``__rmqueue()`` without CMA: smallest first, else fall back and retry."""
    for _ in range(3):
        i = __rmqueue_smallest(st, z, order, mt)
        if i >= 0:
            return i
        if __rmqueue_fallback(st, z, order, mt, alloc_flags) < 0:
            return -1
    return __rmqueue_smallest(st, z, order, mt)
