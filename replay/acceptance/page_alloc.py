"""Unaccepted memory in the page allocator: the per-zone lists and accept paths of mm/page_alloc.c.

* ``zone->unaccepted_pages``: a FIFO of MAX_PAGE_ORDER blocks (:func:`__free_unaccepted` appends
  at boot, :func:`try_to_accept_memory_one` takes the head), ``NR_UNACCEPTED`` per zone; a listed
  block is ``PageUnaccepted`` and not in the buddy.
* :func:`cond_accept_memory` (6.11+: promo watermark, one block while watermarks are zero) and
  :func:`try_to_accept_memory` (6.5-6.10: on watermark failure, up to high, at least one).
* :func:`accept_page` (isolation), :func:`accept_covering_units` (v1 / v2-v7: the units under a
  block the buddy hands out) and the proposed background acceptor (:func:`background_accept`).

Engine contract (per event, see :func:`acceptance_hook`): call the hook at the kernel's call
sites; it returns how many MAX_PAGE_ORDER blocks it wrote into ``out_pfns``: the engine frees
each with ``__free_pages_ok(page, MAX_PAGE_ORDER, FPI_TO_TAIL)`` (one zone->lock section, merge,
tail of the MOVABLE free list).  The receipt (:class:`replay.acceptance.unaccepted_memory.Receipt`)
says what the calling CPU paid.
"""

from __future__ import annotations

import enum

import numpy as np

from replay.acceptance import costs as C
from replay.acceptance import policies as P
from replay.acceptance.policies import AcceptTarget, Trigger
from replay.acceptance.unaccepted_memory import (
    PAGE_SIZE,
    RECEIPT_LEN,
    AcceptGeo,
    AcceptScal,
    AcceptState,
    Receipt,
    accept_memory,
    emit_locked,
    emit_step,
)
from replay.jit import kernel
from replay.model.locks import OP_ACQ, OP_REL, OP_WORK

__all__ = [
    "SITE_BUDDY_DEL", "SITE_BULK", "SITE_NAMES", "SITE_POST_ALLOC", "SITE_RMQUEUE_FAIL", "SITE_WMARK_FAIL",
    "SITE_ZONE_VISIT", "WMARK_HIGH", "WMARK_LOW", "WMARK_MIN", "WMARK_PROMO", "BlockState", "PageUnaccepted",
    "__free_unaccepted", "accept_covering_units", "accept_page", "acceptance_hook", "background_accept",
    "background_may_accept", "block_index", "block_pfn", "check_conservation", "cond_accept_memory",
    "set_watermarks_ready", "try_to_accept_memory", "try_to_accept_memory_one", "unaccepted_list_del",
    "unaccepted_pages_of",
]

# ------------------------------------------------------------------ call sites (acceptance_hook)
SITE_ZONE_VISIT = 0  # top of each get_page_from_freelist() zone iteration
SITE_WMARK_FAIL = 1  # check_alloc_wmark: zone_watermark_fast() failed
SITE_RMQUEUE_FAIL = 2  # rmqueue() returned NULL
SITE_BUDDY_DEL = 3  # del_page_from_free_list() (v1)
SITE_POST_ALLOC = 4  # post_alloc_hook() / prep_new_page() (v2-v7)
SITE_BULK = 5  # alloc_pages_bulk_noprof()
SITE_NAMES = ("zone_visit", "wmark_fail", "rmqueue_fail", "buddy_del", "post_alloc", "bulk")

# enum zone_watermarks: the columns of AcceptState.z_wmark
WMARK_MIN, WMARK_LOW, WMARK_HIGH, WMARK_PROMO = 0, 1, 2, 3


class BlockState(enum.IntEnum):
    """``AcceptState.blk_state``: where boot and acceptance left a MAX_PAGE_ORDER block."""

    NONE = 0  # not handled at boot (hole, reserved, partial block)
    LISTED = 1  # on zone->unaccepted_pages (PageUnaccepted)
    RELEASED = 2  # handed to the buddy (accepted, or tagged by v1-v7)


@kernel(nrt=False)
def block_pfn(st: AcceptState, b: int) -> int:
    """First pfn of MAX_PAGE_ORDER block ``b``."""
    return st.geo[AcceptGeo.PFN_BASE] + (b << st.geo[AcceptGeo.BLOCK_ORDER])


@kernel(nrt=False)
def block_index(st: AcceptState, pfn: int) -> int:
    """Index of the MAX_PAGE_ORDER block holding ``pfn`` (may lie outside ``[0, NR_BLOCKS)``)."""
    return (pfn - st.geo[AcceptGeo.PFN_BASE]) >> st.geo[AcceptGeo.BLOCK_ORDER]


@kernel(nrt=False)
def PageUnaccepted(st: AcceptState, pfn: int) -> bool:
    """``PageUnaccepted()`` of the MAX_PAGE_ORDER block holding ``pfn``: it is on
    ``zone->unaccepted_pages``, not in the buddy."""
    b = block_index(st, pfn)
    return 0 <= b < st.geo[AcceptGeo.NR_BLOCKS] and st.blk_state[b] == BlockState.LISTED


@kernel(nrt=True)
def unaccepted_list_del(st: AcceptState, z: int, b: int) -> None:
    """``list_del(&page->lru)`` of block ``b`` from zone ``z``'s ``unaccepted_pages``."""
    p = st.blk_prev[b]
    n = st.blk_next[b]
    if p >= 0:
        st.blk_next[p] = n
    else:
        st.ul_head[z] = n
    if n >= 0:
        st.blk_prev[n] = p
    else:
        st.ul_tail[z] = p
    st.blk_next[b] = -1
    st.blk_prev[b] = -1
    st.ul_len[z] -= 1


@kernel(nrt=True)
def __free_unaccepted(st: AcceptState, cv: np.ndarray, z: int, pfn: int, receipt: np.ndarray) -> bool:
    """6.12 ``__free_unaccepted(page)``: ``list_add_tail`` on ``zone->unaccepted_pages``,
    NR_UNACCEPTED +=; one zone->lock section.

    (The ``lazy_accept`` test is the caller's: boot only calls this for list policies.)
    """
    b = block_index(st, pfn)
    bpages = 1 << st.geo[AcceptGeo.BLOCK_ORDER]
    t = st.ul_tail[z]
    st.blk_prev[b] = t
    st.blk_next[b] = -1
    if t >= 0:
        st.blk_next[t] = b
    else:
        st.ul_head[z] = b
    st.ul_tail[z] = b
    st.ul_len[z] += 1
    st.blk_state[b] = BlockState.LISTED
    st.z_nr_unaccepted[z] += bpages
    st.z_boot_pages[z] += bpages
    emit_locked(st, z, cv[C.CV_LIST_OP])
    receipt[Receipt.ZONE_LOCK_SECTIONS] += 1
    receipt[Receipt.ZONE_LOCK_HOLD_NS] += cv[C.CV_LIST_OP]
    return True


@kernel(nrt=True)
def __accept_page(st: AcceptState, cv: np.ndarray, pv: np.ndarray, z: int, b: int, receipt: np.ndarray) -> float:
    """6.12 ``__accept_page()``: list_del + counters under zone->lock (taken by the caller),
    unlock, accept_memory(block), ``__free_pages_ok(page, MAX_PAGE_ORDER, FPI_TO_TAIL)`` (zone->lock
    again: its hold is ``AcceptScal.FREE_HOLD_NS``, its cost the caller's, who frees the block)."""
    bpages = 1 << st.geo[AcceptGeo.BLOCK_ORDER]
    unaccepted_list_del(st, z, b)
    st.blk_state[b] = BlockState.RELEASED
    st.z_nr_unaccepted[z] -= bpages
    st.z_released_pages[z] += bpages
    lop = cv[C.CV_LIST_OP]
    receipt[Receipt.ZONE_LOCK_SECTIONS] += 1
    receipt[Receipt.ZONE_LOCK_HOLD_NS] += lop
    # spin_lock_irqsave(&zone->lock) .. unlock: a short IRQs-off stretch of its own
    if lop > receipt[Receipt.IRQS_OFF_MAX_NS]:
        receipt[Receipt.IRQS_OFF_MAX_NS] = lop
    receipt[Receipt.IRQS_OFF_NS] += lop
    emit_step(st, OP_WORK, 0, 0, lop)
    emit_step(st, OP_REL, z, 0, 0.0)
    added = lop + accept_memory(st, cv, pv, block_pfn(st, b), bpages, pv[P.PV_GUARD], receipt)
    emit_locked(st, z, float(st.scal[AcceptScal.FREE_HOLD_NS]))
    receipt[Receipt.BLOCKS] += 1
    return added


@kernel(nrt=True)
def try_to_accept_memory_one(st: AcceptState, cv: np.ndarray, pv: np.ndarray, z: int,
                             receipt: np.ndarray) -> tuple[int, float]:
    """``try_to_accept_memory_one(zone)``: accept the head block; returns (pfn or -1, ns added).

    The caller frees the returned block with ``__free_pages_ok(page, MAX_PAGE_ORDER, FPI_TO_TAIL)``.
    """
    b = st.ul_head[z]
    emit_step(st, OP_ACQ, z, 0, 0.0)
    if b < 0:
        emit_step(st, OP_WORK, 0, 0, cv[C.CV_LIST_OP] * 0.25)
        emit_step(st, OP_REL, z, 0, 0.0)
        receipt[Receipt.ZONE_LOCK_SECTIONS] += 1
        receipt[Receipt.ZONE_LOCK_HOLD_NS] += cv[C.CV_LIST_OP] * 0.25  # lock, list_first_entry, unlock
        return -1, cv[C.CV_LIST_OP] * 0.25
    added = __accept_page(st, cv, pv, z, b, receipt)
    return block_pfn(st, b), added


@kernel(nrt=True)
def accept_page(st: AcceptState, cv: np.ndarray, pv: np.ndarray, pfn: int, receipt: np.ndarray) -> tuple[int, float]:
    """``accept_page(page)`` (isolation / alloc_contig_range): accept that block if still listed."""
    b = block_index(st, pfn)
    if b < 0 or b >= st.geo[AcceptGeo.NR_BLOCKS] or st.blk_state[b] != BlockState.LISTED:
        return -1, 0.0
    z = st.blk_zone[b]
    emit_step(st, OP_ACQ, z, 0, 0.0)
    added = __accept_page(st, cv, pv, z, b, receipt)
    return block_pfn(st, b), added


@kernel(nrt=True)
def _target_wmark(st: AcceptState, pv: np.ndarray, z: int) -> int:
    """The watermark a list policy fills accepted free memory up to: ``promo_wmark_pages()``
    (6.12) or ``high_wmark_pages()`` (6.5); 0 until ``init_per_zone_wmark_min()`` ran."""
    if st.z_wmark_ready[z] == 0:
        return 0
    if pv[P.PV_TARGET] == AcceptTarget.PROMO:
        return st.z_wmark[z, WMARK_PROMO]
    if pv[P.PV_TARGET] == AcceptTarget.HIGH:
        return st.z_wmark[z, WMARK_HIGH]
    return 0


@kernel(nrt=True)
def _accept_blocks(st: AcceptState, cv: np.ndarray, pv: np.ndarray, z: int, to_accept: int, at_least_one: bool,
                   out_pfns: np.ndarray, receipt: np.ndarray) -> int:
    """``try_to_accept_memory_one()`` while ``to_accept`` pages are left to accept (``at_least_one``:
    a do/while, the first call unconditional) and the list is not empty; each call starts when the
    one before returned.  Returns the number of block pfns written to ``out_pfns``."""
    bpages = 1 << st.geo[AcceptGeo.BLOCK_ORDER]
    n = 0
    while to_accept > 0 or (at_least_one and n == 0):
        pfn, added = try_to_accept_memory_one(st, cv, pv, z, receipt)
        receipt[Receipt.ADDED_NS] += added
        if pfn < 0:
            break
        out_pfns[n] = pfn
        n += 1
        to_accept -= bpages
    return n


@kernel(nrt=True)
def cond_accept_memory(st: AcceptState, cv: np.ndarray, pv: np.ndarray, z: int, order: int,
                       nr_free_accepted: int, unusable: int, out_pfns: np.ndarray, receipt: np.ndarray) -> int:
    """``cond_accept_memory(zone, order)`` (6.11+): fill accepted free memory up to the promo mark.

    ``to_accept = wmark - (NR_FREE_PAGES - unusable - NR_UNACCEPTED)``; NR_FREE_PAGES counts the
    listed blocks, so that is ``wmark - (nr_free_accepted - unusable)`` with ``nr_free_accepted``
    the buddy's free pages.  While watermarks are zero (before ``init_per_zone_wmark_min``),
    accept exactly one block (800f1059c99e).  Returns the number of block pfns in ``out_pfns``.
    """
    if st.ul_len[z] == 0:
        return 0
    wmark = _target_wmark(st, pv, z)
    if wmark == 0:
        if pv[P.PV_ONE_BLOCK_ZERO] == 0:
            return 0
        return _accept_blocks(st, cv, pv, z, 0, True, out_pfns, receipt)
    return _accept_blocks(st, cv, pv, z, wmark - (nr_free_accepted - unusable), False, out_pfns, receipt)


@kernel(nrt=True)
def try_to_accept_memory(st: AcceptState, cv: np.ndarray, pv: np.ndarray, z: int, order: int,
                         nr_free_accepted: int, unusable: int, out_pfns: np.ndarray, receipt: np.ndarray) -> int:
    """``try_to_accept_memory(zone, order)`` (6.5-6.10): after a watermark / rmqueue failure.

    ``to_accept = high - (NR_FREE_PAGES - __zone_watermark_unusable_free())`` where the 6.5
    unusable count includes NR_UNACCEPTED, i.e. ``high - (nr_free_accepted - unusable)``; the
    do/while accepts at least one block.
    """
    if st.ul_len[z] == 0:
        return 0
    return _accept_blocks(st, cv, pv, z, _target_wmark(st, pv, z) - (nr_free_accepted - unusable), True,
                          out_pfns, receipt)


@kernel(nrt=True)
def accept_covering_units(st: AcceptState, cv: np.ndarray, pv: np.ndarray, pfn: int, order: int,
                          receipt: np.ndarray) -> float:
    """v1 ``clear_page_offline(page, order)`` / v2-v7 ``accept_page(page, order)``: accept the
    bitmap units covering ``[pfn, pfn + 2**order)`` (no guard before v6.5)."""
    added = accept_memory(st, cv, pv, pfn, 1 << order, pv[P.PV_GUARD], receipt)
    receipt[Receipt.ADDED_NS] += added
    return added


@kernel(nrt=False)
def background_may_accept(st: AcceptState, pv: np.ndarray, now: int) -> bool:
    """The checks ``background_accept`` makes before each block: False when it would accept
    nothing at ``now`` (not started, busy, over its byte rate or CPU budget, nothing listed)."""
    start = pv[P.PV_BG_START_NS]
    if now <= start:
        return False
    if st.scal[AcceptScal.BG_CLOCK] > now:
        return False
    bbytes = (1 << st.geo[AcceptGeo.BLOCK_ORDER]) * PAGE_SIZE
    elapsed = now - start
    rate = pv[P.PV_BG_RATE]
    if rate > 0 and (st.scal[AcceptScal.BG_BYTES] + bbytes) * 1_000_000_000 > rate * elapsed:
        return False
    budget_ppm = pv[P.PV_BG_BUDGET_PPM]
    if budget_ppm > 0 and st.scal[AcceptScal.BG_CPU_NS] * 1_000_000 > budget_ppm * elapsed:
        return False
    for zz in range(st.geo[AcceptGeo.NR_ZONES]):
        if st.ul_len[zz] > 0:
            return True
    return False


@kernel(nrt=True)
def background_accept(st: AcceptState, cv: np.ndarray, pv: np.ndarray, now: int, out_pfns: np.ndarray,
                      receipt: np.ndarray) -> int:
    """P6 background acceptor (never merged): accept listed blocks, lowest zone first, within the
    policy's byte rate and CPU budget since ``background_start_ns``.  Its firmware time runs on
    the acceptor thread (``Receipt.BG_FW_NS``), not on a traced CPU; zone->lock and global-lock
    sections still count.  Returns the number of blocks written to ``out_pfns``."""
    start = pv[P.PV_BG_START_NS]
    bbytes = (1 << st.geo[AcceptGeo.BLOCK_ORDER]) * PAGE_SIZE
    n = 0
    nz = st.geo[AcceptGeo.NR_ZONES]
    while True:
        if not background_may_accept(st, pv, now):
            break
        z = -1
        for zz in range(nz):
            if st.ul_len[zz] > 0:
                z = zz
                break
        if z < 0 or n >= out_pfns.shape[0]:
            break
        t = st.scal[AcceptScal.BG_CLOCK] if st.scal[AcceptScal.BG_CLOCK] > start else start
        fw0 = receipt[Receipt.FW_NS]
        pfn, added = try_to_accept_memory_one(st, cv, pv, z, receipt)
        if pfn < 0:
            break
        receipt[Receipt.BG_FW_NS] += receipt[Receipt.FW_NS] - fw0
        st.scal[AcceptScal.BG_CLOCK] = t + int(added + 0.5)
        st.scal[AcceptScal.BG_BYTES] += bbytes
        st.scal[AcceptScal.BG_CPU_NS] += int(added + 0.5)
        out_pfns[n] = pfn
        n += 1
    return n


@kernel(nrt=True)
def acceptance_hook(st: AcceptState, cv: np.ndarray, pv: np.ndarray, site: int, z: int, pfn: int,
                    order: int, nr_free_accepted: int, unusable: int, out_pfns: np.ndarray,
                    receipt: np.ndarray) -> int:
    """The one per-event entry point: do what the policy does at kernel call site ``site``.

    * ``SITE_ZONE_VISIT`` / ``SITE_BULK``: ``cond_accept_memory`` for ``every_zone_visit`` and
      ``background`` policies (6.12 calls it at the top of each zone iteration and in the bulk
      allocator).
    * ``SITE_WMARK_FAIL`` / ``SITE_RMQUEUE_FAIL``: ``try_to_accept_memory`` (6.5-6.10 list
      policies) or ``cond_accept_memory`` (6.12); if it returns > 0 the kernel retries the zone
      (``goto try_this_zone``).
    * ``SITE_BUDDY_DEL`` (v1, under the caller's zone->lock): accept the units covering the
      block ``(pfn, order)`` being removed; firmware time is in ``Receipt.FW_UNDER_ZONE_LOCK_NS``.
    * ``SITE_POST_ALLOC`` (v2-v7, after zone->lock is dropped): the allocated block's units.

    Returns the number of MAX_PAGE_ORDER blocks in ``out_pfns`` that the engine must free into
    the buddy (``__free_pages_ok(.., MAX_PAGE_ORDER, FPI_TO_TAIL)``).  ``out_pfns`` must hold
    at least ``ul_len[z]`` entries.  ``receipt`` gets everything the calling CPU paid
    (``Receipt.ADDED_NS``), firmware ns and calls, and lock sections; it is also added to ``totals``.
    """
    trig = pv[P.PV_TRIGGER]
    n = 0
    r = np.zeros(RECEIPT_LEN, dtype=np.float64)
    if site == SITE_ZONE_VISIT or site == SITE_BULK:
        if trig == Trigger.EVERY_ZONE_VISIT or trig == Trigger.BACKGROUND:
            n = cond_accept_memory(st, cv, pv, z, order, nr_free_accepted, unusable, out_pfns, r)
    elif site == SITE_WMARK_FAIL or site == SITE_RMQUEUE_FAIL:
        if trig == Trigger.WATERMARK_FAIL:
            n = try_to_accept_memory(st, cv, pv, z, order, nr_free_accepted, unusable, out_pfns, r)
        elif trig == Trigger.EVERY_ZONE_VISIT or trig == Trigger.BACKGROUND:
            n = cond_accept_memory(st, cv, pv, z, order, nr_free_accepted, unusable, out_pfns, r)
    elif site == SITE_BUDDY_DEL:
        if trig == Trigger.ON_BUDDY_ALLOC:
            accept_covering_units(st, cv, pv, pfn, order, r)
    elif site == SITE_POST_ALLOC:
        if trig == Trigger.POST_ALLOC:
            accept_covering_units(st, cv, pv, pfn, order, r)
    for k in range(RECEIPT_LEN):
        if k == Receipt.IRQS_OFF_MAX_NS:
            if r[k] > receipt[k]:
                receipt[k] = r[k]
            if r[k] > st.totals[k]:
                st.totals[k] = r[k]
        else:
            receipt[k] += r[k]
            st.totals[k] += r[k]
    return n


def set_watermarks_ready(st: AcceptState, ready: bool = True, z: int = -1) -> None:
    """``init_per_zone_wmark_min()`` ran (postcore initcall): watermarks stop being zero."""
    if z < 0:
        st.z_wmark_ready[:] = int(ready)
    else:
        st.z_wmark_ready[z] = int(ready)


@kernel(nrt=True)
def check_conservation(st: AcceptState) -> bool:
    """Per zone: listed + released == pages handled at boot; NR_UNACCEPTED == blocks listed."""
    bpages = 1 << st.geo[AcceptGeo.BLOCK_ORDER]
    for z in range(st.geo[AcceptGeo.NR_ZONES]):
        if st.z_nr_unaccepted[z] + st.z_released_pages[z] != st.z_boot_pages[z]:
            return False
        if st.z_nr_unaccepted[z] != st.ul_len[z] * bpages:
            return False
    return True


@kernel(nrt=True)
def _walk_unaccepted(st: AcceptState, z: int, out: np.ndarray) -> int:
    n = 0
    b = st.ul_head[z]
    while b >= 0 and n < out.shape[0]:
        out[n] = block_pfn(st, b)
        n += 1
        b = st.blk_next[b]
    return n


def unaccepted_pages_of(st: AcceptState, z: int) -> np.ndarray:
    """Head pfns of the listed blocks of zone ``z`` in list (FIFO) order."""
    out = np.empty(int(st.ul_len[z]), np.int64)
    return out[: int(_walk_unaccepted(st, z, out))]
