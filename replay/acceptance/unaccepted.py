"""Memory acceptance as the kernel keeps it: the EFI bitmap, per-zone unaccepted lists, accept paths.

State is struct-of-arrays (:data:`AcceptState`, flat NumPy arrays, no per-page objects); the
hot functions below take ``(st, cv, pv, ...)`` where ``cv`` is :func:`replay.acceptance.costs.cost_vector`
and ``pv`` :func:`replay.acceptance.policies.policy_vector`, use only ints, floats and arrays, and write
their costs into a ``receipt`` (float64, indices ``R_*``), so the engine can call them per event
as plain Python or compile them with numba (``replay.model.state.kernel``).

Kernel model (kernel-notes §2):

* ``bitmap[u]`` = 1: 2 MiB unit ``u`` (``unit_size``) of ``[phys_base, ...)`` is unaccepted
  (``struct efi_unaccepted_memory``); memory outside the bitmap is accepted.
* :func:`accept_memory` / :func:`range_contains_unaccepted_memory` extend a unit-aligned end by
  one guard unit (load_unaligned_zeropad fix), serialise on ``unaccepted_memory_lock``, and
  (6.6+) register the range on ``accepting_list`` so overlapping requests busy-wait.  Each run of
  set bits is one ``arch_accept_memory()`` call priced by :func:`replay.acceptance.costs.arch_accept_cost`.
* ``zone->unaccepted_pages``: a FIFO of MAX_PAGE_ORDER blocks (:func:`__free_unaccepted` appends
  at boot, :func:`try_to_accept_memory_one` takes the head), NR_UNACCEPTED per zone.
* :func:`cond_accept_memory` (6.12: promo watermark, one block while watermarks are zero) and
  :func:`try_to_accept_memory` (6.5-6.10: on watermark failure, up to high, at least one).

Engine contract (per event, see :func:`acceptance_hook`): call the hook at the kernel's call
sites; it returns how many MAX_PAGE_ORDER blocks it wrote into ``out_pfns``: the engine frees
each with ``__free_pages_ok(page, MAX_PAGE_ORDER, FPI_TO_TAIL)`` (one zone->lock section,
merge, tail of the MOVABLE free list).  The receipt says what the calling CPU paid.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Sequence

import numpy as np

from replay.acceptance import costs as C
from replay.acceptance import policies as P
from replay.acceptance.costs import arch_accept_cost

from replay.jit import kernel, kernel_entry

__all__ = [
    "AcceptState", "AcceptanceModel", "BootCost", "new_accept_state", "state_from_layout",
    "new_receipt", "receipt_dict", "receipt_summary", "firmware_calls", "range_contains_unaccepted_memory", "accept_memory",
    "free_unaccepted", "try_to_accept_memory_one", "accept_page", "cond_accept_memory",
    "try_to_accept_memory", "accept_covering_units", "background_accept", "acceptance_hook",
    "boot_free_memory", "boot_accept_cost", "check_accepted", "check_conservation",
    "block_listed", "set_watermarks_ready", "unaccepted_pages_of", "unaccepted_bytes", "reset_clocks",
    "watermark_unusable_extra", "boot_mode", "SITE_NAMES",
]

PAGE_SIZE = 4096

# ------------------------------------------------------------------ call sites (acceptance_hook)
SITE_ZONE_VISIT = 0  # top of each get_page_from_freelist() zone iteration
SITE_WMARK_FAIL = 1  # check_alloc_wmark: zone_watermark_fast() failed
SITE_RMQUEUE_FAIL = 2  # rmqueue() returned NULL
SITE_BUDDY_DEL = 3  # del_page_from_free_list() (v1)
SITE_POST_ALLOC = 4  # post_alloc_hook() / prep_new_page() (v2-v7)
SITE_BULK = 5  # alloc_pages_bulk_noprof()
SITE_NAMES = ("zone_visit", "wmark_fail", "rmqueue_fail", "buddy_del", "post_alloc", "bulk")

# triggers (index into policies.TRIGGERS)
T_NONE, T_FW_BOOT, T_KERNEL_BOOT, T_BUDDY, T_POST_ALLOC, T_WMARK_FAIL, T_ZONE_VISIT, T_BACKGROUND = range(8)
TARGET_NONE, TARGET_HIGH, TARGET_PROMO = 0, 1, 2
BL_GLOBAL, BL_ATOMIC, BL_LOCKLESS = 0, 1, 2
COLL_NONE, COLL_SPIN = 0, 1

# ------------------------------------------------------------------ receipt (float64 array)
R_FW_NS = 0  # firmware time (arch_accept_memory), ns
R_ADDED_NS = 1  # time added to the calling CPU (fw + waits + spins + bookkeeping)
R_UNITS = 2  # bitmap units accepted (bits cleared)
R_BYTES = 3  # bytes accepted
R_RUNS = 4  # arch_accept_memory() calls
R_BLOCKS = 5  # MAX_PAGE_ORDER blocks taken off unaccepted_pages (engine frees them)
R_ZONE_LOCK_SECTIONS = 6  # zone->lock sections opened by acceptance (list ops)
R_ZONE_LOCK_HOLD_NS = 7  # their hold, plus firmware time when zone->lock is held (v1)
R_FW_UNDER_ZONE_LOCK_NS = 8  # firmware time inside the caller's zone->lock section (v1)
R_GLOBAL_LOCK_SECTIONS = 9
R_GLOBAL_LOCK_HOLD_NS = 10
R_GLOBAL_LOCK_WAIT_NS = 11
R_ACCEPTING_SPIN_NS = 12  # busy-wait on an overlapping accepting_list entry
R_ACCEPTING_COLLISIONS = 13
R_IRQS_OFF_NS = 14  # total IRQs-off time added
R_IRQS_OFF_MAX_NS = 15  # longest single IRQs-off stretch
R_BG_FW_NS = 16  # firmware time spent by the background acceptor (not on a traced CPU)
R_CALLS = 17  # R_CALLS + kind: call counts (replay.acceptance.costs.CALL_KIND_NAMES)
R_LEN = R_CALLS + C.NR_CALL_KINDS
RECEIPT_NAMES = ("firmware_ns", "added_ns", "units_accepted", "bytes_accepted", "arch_calls",
                 "blocks_accepted", "zone_lock_sections", "zone_lock_hold_ns",
                 "fw_under_zone_lock_ns", "global_lock_sections", "global_lock_hold_ns",
                 "global_lock_wait_ns", "accepting_spin_ns", "accepting_collisions", "irqs_off_ns",
                 "irqs_off_max_ns", "background_firmware_ns") + C.CALL_KIND_NAMES

# ------------------------------------------------------------------ state
# geo indices
G_PHYS_BASE = 0  # first pfn of the bitmap (phys_base >> PAGE_SHIFT)
G_UNIT_PAGES = 1
G_NR_UNITS = 2
G_BLOCK_ORDER = 3
G_PFN_BASE = 4  # first pfn of block index space (block-aligned)
G_NR_BLOCKS = 5
G_NR_ZONES = 6
G_HAS_TABLE = 7  # efi_get_unaccepted_table() != NULL
G_LEN = 8
# scal indices (int64 scalars that change)
S_GLOCK_FREE_AT = 0  # virtual time unaccepted_memory_lock is next free
S_BG_CLOCK = 1  # background acceptor: virtual time it is busy until
S_BG_BYTES = 2
S_BG_CPU_NS = 3
S_LEN = 4
# boot_free_memory modes
BOOT_TAG, BOOT_LIST, BOOT_ACCEPT = 0, 1, 2
# blk_state
B_NONE = 0  # not handled at boot (hole, reserved, partial block)
B_LISTED = 1  # on zone->unaccepted_pages
B_RELEASED = 2  # handed to the buddy (accepted)
# per-zone watermark columns
W_MIN, W_LOW, W_HIGH, W_PROMO = 0, 1, 2, 3

AcceptState = namedtuple("AcceptState", [
    "geo", "scal",
    "bitmap",  # uint8 [nr_units]: 1 = unaccepted
    "acc_busy_until",  # int64 [nr_units]: accepting_list entry covering the unit is in flight until
    "blk_state", "blk_next", "blk_prev", "blk_zone",  # per MAX_PAGE_ORDER block
    "z_start", "z_end", "z_wmark", "z_wmark_ready", "z_nr_unaccepted",
    "ul_head", "ul_tail", "ul_len",  # zone->unaccepted_pages (block indices)
    "z_boot_pages", "z_released_pages",
    "totals",  # float64 [R_LEN]: every receipt summed (hooks add here too)
])


def new_receipt() -> np.ndarray:
    return np.zeros(R_LEN, dtype=np.float64)


def receipt_dict(r: np.ndarray) -> dict[str, float]:
    return {k: float(v) for k, v in zip(RECEIPT_NAMES, r)}


def firmware_calls(r: np.ndarray) -> int:
    """Firmware / hypervisor calls in a receipt (cache-line evictions excluded)."""
    return int(r[R_CALLS:R_CALLS + C.NR_FIRMWARE_CALL_KINDS].sum())


def receipt_summary(r: np.ndarray) -> dict[str, float]:
    """A receipt (or ``st.totals``) under the per-policy summary keys of issue 4's ``--json``
    (the engine adds zone_lock_wait_ns, latency percentiles and boot_accept_ns)."""
    return {
        "firmware_calls": firmware_calls(r),
        "firmware_ns": float(r[R_FW_NS]),
        "accept_zone_lock_hold_ns": float(r[R_ZONE_LOCK_HOLD_NS]),
        "accept_lock_hold_ns": float(r[R_GLOBAL_LOCK_HOLD_NS]),
        "accept_lock_wait_ns": float(r[R_GLOBAL_LOCK_WAIT_NS]),
        "accepting_spin_ns": float(r[R_ACCEPTING_SPIN_NS]),
        "irqs_off_max_ns": float(r[R_IRQS_OFF_MAX_NS]),
        "accepted_bytes": float(r[R_BYTES]),
        "accepted_blocks": float(r[R_BLOCKS]),
        "added_ns": float(r[R_ADDED_NS]),
        **{k: float(r[R_CALLS + i]) for i, k in enumerate(C.CALL_KIND_NAMES)},
    }


def new_accept_state(zones: Sequence[tuple[int, int]], wmarks: Sequence[Sequence[int]] | None = None, *,
                     unaccepted: Sequence[tuple[int, int]] = (), unit_pages: int = 512,
                     block_order: int = 10, has_table: bool = True,
                     wmarks_ready: bool = True) -> AcceptState:
    """Empty acceptance state for zones ``[(start_pfn, end_pfn), ...]``.

    ``unaccepted``: pfn ranges ``[(start, end)]`` that are unit-aligned and unaccepted (what
    ``process_unaccepted_memory()`` recorded with ``bitmap_set``); the bitmap spans from the
    first to the last of them (``phys_base``, ``size``).  ``wmarks``: per zone (min, low, high,
    promo) in pages.
    """
    nz = len(zones)
    if unaccepted:
        lo = min(s for s, _ in unaccepted)
        hi = max(e for _, e in unaccepted)
        base = lo - lo % unit_pages
        nr_units = -(-(hi - base) // unit_pages)
    else:
        base, nr_units = 0, 0
    bitmap = np.zeros(nr_units, dtype=np.uint8)
    for s, e in unaccepted:
        if (s - base) % unit_pages or (e - base) % unit_pages:
            raise ValueError(f"unaccepted range [{s}, {e}) is not unit-aligned ({unit_pages} pages)")
        bitmap[(s - base) // unit_pages:(e - base) // unit_pages] = 1
    bpages = 1 << block_order
    zstart = min((s for s, _ in zones), default=0)
    zend = max((e for _, e in zones), default=0)
    pfn_base = zstart - zstart % bpages
    nr_blocks = max(0, -(-(zend - pfn_base) // bpages))
    geo = np.array([base, unit_pages, nr_units, block_order, pfn_base, nr_blocks, nz, int(has_table)],
                   dtype=np.int64)
    wm = np.zeros((nz, 4), dtype=np.int64)
    if wmarks is not None:
        wm[:] = np.asarray(wmarks, dtype=np.int64).reshape(nz, 4)
    blk_zone = np.full(nr_blocks, -1, dtype=np.int32)
    for z, (s, e) in enumerate(zones):
        b0 = -(-(s - pfn_base) // bpages)
        b1 = (e - pfn_base) // bpages
        if b1 > b0:
            blk_zone[b0:b1] = z
    return AcceptState(
        geo=geo, scal=np.zeros(S_LEN, dtype=np.int64), bitmap=bitmap,
        acc_busy_until=np.zeros(nr_units, dtype=np.int64),
        blk_state=np.zeros(nr_blocks, dtype=np.uint8),
        blk_next=np.full(nr_blocks, -1, dtype=np.int32), blk_prev=np.full(nr_blocks, -1, dtype=np.int32),
        blk_zone=blk_zone,
        z_start=np.array([s for s, _ in zones], dtype=np.int64),
        z_end=np.array([e for _, e in zones], dtype=np.int64),
        z_wmark=wm, z_wmark_ready=np.full(nz, int(wmarks_ready), dtype=np.uint8),
        z_nr_unaccepted=np.zeros(nz, dtype=np.int64),
        ul_head=np.full(nz, -1, dtype=np.int64), ul_tail=np.full(nz, -1, dtype=np.int64),
        ul_len=np.zeros(nz, dtype=np.int64),
        z_boot_pages=np.zeros(nz, dtype=np.int64), z_released_pages=np.zeros(nz, dtype=np.int64),
        totals=new_receipt())


# ------------------------------------------------------------------ bitmap layer (drivers/firmware/efi/unaccepted_memory.c)
@kernel(nrt=True)
def _unit_range(st: AcceptState, start_pfn: int, nr_pages: int, guard: int) -> tuple[int, int]:
    """Units ``[u0, u1)`` that ``accept_memory(start, size)`` looks at (clamped, guard applied)."""
    base = st.geo[G_PHYS_BASE]
    unit = st.geo[G_UNIT_PAGES]
    limit = st.geo[G_NR_UNITS] * unit
    start = start_pfn
    end = start_pfn + nr_pages
    if st.geo[G_HAS_TABLE] == 0 or limit == 0:
        return 0, 0
    if start < base:
        start = base
    if end < base:
        return 0, 0
    start -= base
    end -= base
    # load_unaligned_zeropad() guard: a unit-aligned end also takes the next unit
    if guard != 0 and end % unit == 0:
        end += unit
    if end > limit:
        end = limit
    if start >= end:
        return 0, 0
    return start // unit, (end + unit - 1) // unit


@kernel(nrt=True)
def range_contains_unaccepted_memory(st: AcceptState, pv: np.ndarray, start_pfn: int, nr_pages: int) -> bool:
    """``range_contains_unaccepted_memory(start, size)``: any set bit, guard unit included."""
    u0, u1 = _unit_range(st, start_pfn, nr_pages, pv[P.PV_GUARD])
    for u in range(u0, u1):
        if st.bitmap[u] != 0:
            return True
    return False


@kernel(nrt=True)
def _glock_section(st: AcceptState, now: int, hold: float, receipt: np.ndarray) -> float:
    """One ``unaccepted_memory_lock`` section starting at ``now``: FIFO in virtual time; returns wait."""
    free_at = st.scal[S_GLOCK_FREE_AT]
    wait = float(free_at - now) if free_at > now else 0.0
    st.scal[S_GLOCK_FREE_AT] = now + int(wait + hold + 0.5)
    receipt[R_GLOBAL_LOCK_SECTIONS] += 1
    receipt[R_GLOBAL_LOCK_HOLD_NS] += hold
    receipt[R_GLOBAL_LOCK_WAIT_NS] += wait
    return wait


@kernel(nrt=True)
def accept_memory(st: AcceptState, cv: np.ndarray, pv: np.ndarray, start_pfn: int, nr_pages: int,
                  now: int, guard: int, receipt: np.ndarray) -> float:
    """``accept_memory(start, size)``: accept every unaccepted unit of the range (+ guard unit).

    Locking follows the policy: ``global_lock`` held across the call (6.5, v1, post-alloc) makes
    the whole walk one ``unaccepted_memory_lock`` section; otherwise (6.6+) the lock is held only
    to register on ``accepting_list`` and to clear each run's bits, and a request overlapping an
    in-flight range busy-waits until it completes (``spin_retry``).  ``atomic_bits`` takes no
    global lock; ``lockless_test`` returns without locking when no bit is set.  Returns the ns
    added to the calling CPU; firmware time and calls go into ``receipt``.
    """
    u0, u1 = _unit_range(st, start_pfn, nr_pages, guard)
    if u1 <= u0:
        return 0.0
    held = pv[P.PV_HELD]
    locking = pv[P.PV_BITMAP_LOCKING]
    calls_model = pv[P.PV_CALLS_MODEL]
    unit = st.geo[G_UNIT_PAGES]
    base = st.geo[G_PHYS_BASE]
    bop = cv[C.CV_BITMAP_OP]
    if locking == BL_LOCKLESS or locking == BL_ATOMIC:
        any_set = False
        for u in range(u0, u1):
            if st.bitmap[u] != 0:
                any_set = True
                break
        if not any_set:
            return 0.0
    t = float(now)
    spin = 0.0
    # accepting_list: wait for overlapping in-flight ranges (6.6+: lock dropped during the call)
    if pv[P.PV_COLLISION] == COLL_SPIN:
        busy = 0
        for u in range(u0, u1):
            if st.acc_busy_until[u] > busy:
                busy = st.acc_busy_until[u]
        if busy > now:
            spin = float(busy - now)
            receipt[R_ACCEPTING_COLLISIONS] += 1
            receipt[R_ACCEPTING_SPIN_NS] += spin
            t += spin
    # walk the set-bit runs (for_each_set_bitrange_from) and price each arch_accept_memory()
    fw = 0.0
    runs = 0
    units = 0
    calls = np.zeros(C.NR_CALL_KINDS, dtype=np.int64)
    u = u0
    while u < u1:
        if st.bitmap[u] == 0:
            u += 1
            continue
        r0 = u
        while u < u1 and st.bitmap[u] != 0:
            st.bitmap[u] = 0
            u += 1
        runs += 1
        units += u - r0
        fw += arch_accept_cost(cv, calls_model, (base + r0 * unit) * PAGE_SIZE,
                               (base + u * unit) * PAGE_SIZE, calls)
    gwait = 0.0
    book = 0.0
    if locking != BL_ATOMIC:
        if held & P.HELD_GLOBAL_LOCK:
            # one section: the firmware runs under unaccepted_memory_lock (6.5 / v1 / v2-v7)
            gwait = _glock_section(st, int(t), bop + fw, receipt)
            book = bop
        else:
            # register on accepting_list, then re-take the lock after each run to clear its bits
            gwait = _glock_section(st, int(t), bop, receipt)
            book = bop
            tt = t + gwait + bop
            for _ in range(runs):
                tt += fw / runs
                gwait += _glock_section(st, int(tt), bop, receipt)
                tt += bop
                book += bop
    else:
        book = 0.0
    done = t + gwait + book + fw
    if pv[P.PV_COLLISION] == COLL_SPIN:
        for v in range(u0, u1):
            st.acc_busy_until[v] = int(done + 0.5)
    receipt[R_FW_NS] += fw
    receipt[R_UNITS] += units
    receipt[R_BYTES] += units * unit * PAGE_SIZE
    receipt[R_RUNS] += runs
    for k in range(C.NR_CALL_KINDS):
        receipt[R_CALLS + k] += calls[k]
    added = spin + gwait + book + fw
    if held & P.HELD_IRQS_OFF:
        # spin_lock_irqsave() .. spin_unlock_irqrestore(): IRQs off while waiting for the global
        # lock, bookkeeping and firmware; accepting_list retries re-enable IRQs between attempts
        stretch = gwait + book + fw
        receipt[R_IRQS_OFF_NS] += stretch
        if stretch > receipt[R_IRQS_OFF_MAX_NS]:
            receipt[R_IRQS_OFF_MAX_NS] = stretch
    if held & P.HELD_ZONE_LOCK:
        receipt[R_FW_UNDER_ZONE_LOCK_NS] += gwait + book + fw
        receipt[R_ZONE_LOCK_HOLD_NS] += gwait + book + fw
    return added


# ------------------------------------------------------------------ zone->unaccepted_pages (mm/page_alloc.c)
@kernel(nrt=True)
def _blk_pfn(st: AcceptState, b: int) -> int:
    return st.geo[G_PFN_BASE] + (b << st.geo[G_BLOCK_ORDER])


@kernel(nrt=True)
def _blk_of(st: AcceptState, pfn: int) -> int:
    return (pfn - st.geo[G_PFN_BASE]) >> st.geo[G_BLOCK_ORDER]


@kernel(nrt=True)
def _list_del(st: AcceptState, z: int, b: int) -> None:
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
def free_unaccepted(st: AcceptState, cv: np.ndarray, z: int, pfn: int, receipt: np.ndarray) -> bool:
    """``__free_unaccepted(page)``: ``list_add_tail`` on ``zone->unaccepted_pages``, NR_UNACCEPTED +=.

    (The ``lazy_accept`` test is the caller's: :func:`boot_free_memory` only calls this for lazy
    policies.)  One zone->lock section.
    """
    b = _blk_of(st, pfn)
    bpages = 1 << st.geo[G_BLOCK_ORDER]
    t = st.ul_tail[z]
    st.blk_prev[b] = t
    st.blk_next[b] = -1
    if t >= 0:
        st.blk_next[t] = b
    else:
        st.ul_head[z] = b
    st.ul_tail[z] = b
    st.ul_len[z] += 1
    st.blk_state[b] = B_LISTED
    st.z_nr_unaccepted[z] += bpages
    st.z_boot_pages[z] += bpages
    receipt[R_ZONE_LOCK_SECTIONS] += 1
    receipt[R_ZONE_LOCK_HOLD_NS] += cv[C.CV_LIST_OP]
    return True


@kernel(nrt=True)
def _accept_block(st: AcceptState, cv: np.ndarray, pv: np.ndarray, z: int, b: int, now: int,
                  receipt: np.ndarray) -> float:
    """``__accept_page()``: list_del + counters under zone->lock, unlock, accept_memory(block)."""
    bpages = 1 << st.geo[G_BLOCK_ORDER]
    _list_del(st, z, b)
    st.blk_state[b] = B_RELEASED
    st.z_nr_unaccepted[z] -= bpages
    st.z_released_pages[z] += bpages
    lop = cv[C.CV_LIST_OP]
    receipt[R_ZONE_LOCK_SECTIONS] += 1
    receipt[R_ZONE_LOCK_HOLD_NS] += lop
    # spin_lock_irqsave(&zone->lock) .. unlock: a short IRQs-off stretch of its own
    if lop > receipt[R_IRQS_OFF_MAX_NS]:
        receipt[R_IRQS_OFF_MAX_NS] = lop
    receipt[R_IRQS_OFF_NS] += lop
    added = lop + accept_memory(st, cv, pv, _blk_pfn(st, b), bpages, now + int(lop), pv[P.PV_GUARD], receipt)
    receipt[R_BLOCKS] += 1
    return added


@kernel(nrt=True)
def try_to_accept_memory_one(st: AcceptState, cv: np.ndarray, pv: np.ndarray, z: int, now: int,
                             receipt: np.ndarray) -> tuple[int, float]:
    """``try_to_accept_memory_one(zone)``: accept the head block; returns (pfn or -1, ns added).

    The caller frees the returned block with ``__free_pages_ok(page, MAX_PAGE_ORDER, FPI_TO_TAIL)``.
    """
    b = st.ul_head[z]
    if b < 0:
        receipt[R_ZONE_LOCK_SECTIONS] += 1
        receipt[R_ZONE_LOCK_HOLD_NS] += cv[C.CV_LIST_OP] * 0.25  # lock, list_first_entry, unlock
        return -1, cv[C.CV_LIST_OP] * 0.25
    added = _accept_block(st, cv, pv, z, b, now, receipt)
    return _blk_pfn(st, b), added


@kernel(nrt=True)
def accept_page(st: AcceptState, cv: np.ndarray, pv: np.ndarray, pfn: int, now: int,
                receipt: np.ndarray) -> tuple[int, float]:
    """``accept_page(page)`` (isolation / alloc_contig_range): accept that block if still listed."""
    b = _blk_of(st, pfn)
    if b < 0 or b >= st.geo[G_NR_BLOCKS] or st.blk_state[b] != B_LISTED:
        return -1, 0.0
    z = st.blk_zone[b]
    added = _accept_block(st, cv, pv, z, b, now, receipt)
    return _blk_pfn(st, b), added


@kernel(nrt=True)
def _target(st: AcceptState, pv: np.ndarray, z: int) -> int:
    if st.z_wmark_ready[z] == 0:
        return 0
    if pv[P.PV_TARGET] == TARGET_PROMO:
        return st.z_wmark[z, W_PROMO]
    if pv[P.PV_TARGET] == TARGET_HIGH:
        return st.z_wmark[z, W_HIGH]
    return 0


@kernel(nrt=True)
def cond_accept_memory(st: AcceptState, cv: np.ndarray, pv: np.ndarray, z: int, order: int,
                       nr_free_accepted: int, unusable: int, now: int, out_pfns: np.ndarray,
                       receipt: np.ndarray) -> int:
    """``cond_accept_memory(zone, order)`` (6.11+): fill accepted free memory up to the promo mark.

    ``to_accept = wmark - (NR_FREE_PAGES - unusable - NR_UNACCEPTED)``; NR_FREE_PAGES counts the
    listed blocks, so that is ``wmark - (nr_free_accepted - unusable)`` with ``nr_free_accepted``
    the buddy's free pages.  While watermarks are zero (before ``init_per_zone_wmark_min``),
    accept exactly one block (800f1059c99e).  Returns the number of block pfns in ``out_pfns``.
    """
    if st.ul_len[z] == 0:
        return 0
    bpages = 1 << st.geo[G_BLOCK_ORDER]
    wmark = _target(st, pv, z)
    n = 0
    t = now
    if wmark == 0:
        if pv[P.PV_ONE_BLOCK_ZERO] == 0:
            return 0
        pfn, added = try_to_accept_memory_one(st, cv, pv, z, t, receipt)
        receipt[R_ADDED_NS] += added
        if pfn >= 0:
            out_pfns[0] = pfn
            return 1
        return 0
    to_accept = wmark - (nr_free_accepted - unusable)
    while to_accept > 0:
        pfn, added = try_to_accept_memory_one(st, cv, pv, z, t, receipt)
        receipt[R_ADDED_NS] += added
        t += int(added + 0.5)
        if pfn < 0:
            break
        out_pfns[n] = pfn
        n += 1
        to_accept -= bpages
    return n


@kernel(nrt=True)
def try_to_accept_memory(st: AcceptState, cv: np.ndarray, pv: np.ndarray, z: int, order: int,
                         nr_free_accepted: int, unusable: int, now: int, out_pfns: np.ndarray,
                         receipt: np.ndarray) -> int:
    """``try_to_accept_memory(zone, order)`` (6.5-6.10): after a watermark / rmqueue failure.

    ``to_accept = high - (NR_FREE_PAGES - __zone_watermark_unusable_free())`` where the 6.5
    unusable count includes NR_UNACCEPTED, i.e. ``high - (nr_free_accepted - unusable)``; the
    do/while accepts at least one block.
    """
    if st.ul_len[z] == 0:
        return 0
    bpages = 1 << st.geo[G_BLOCK_ORDER]
    to_accept = _target(st, pv, z) - (nr_free_accepted - unusable)
    n = 0
    t = now
    while True:
        pfn, added = try_to_accept_memory_one(st, cv, pv, z, t, receipt)
        receipt[R_ADDED_NS] += added
        t += int(added + 0.5)
        if pfn < 0:
            break
        out_pfns[n] = pfn
        n += 1
        to_accept -= bpages
        if to_accept <= 0:
            break
    return n


@kernel(nrt=True)
def accept_covering_units(st: AcceptState, cv: np.ndarray, pv: np.ndarray, pfn: int, order: int,
                          now: int, receipt: np.ndarray) -> float:
    """v1 ``clear_page_offline(page, order)`` / v2-v7 ``accept_page(page, order)``: accept the
    bitmap units covering ``[pfn, pfn + 2**order)`` (no guard before v6.5)."""
    added = accept_memory(st, cv, pv, pfn, 1 << order, now, pv[P.PV_GUARD], receipt)
    receipt[R_ADDED_NS] += added
    return added


@kernel(nrt=True)
def background_may_accept(st: AcceptState, pv: np.ndarray, now: int) -> bool:
    """The checks ``background_accept`` makes before each block: False when it would accept
    nothing at ``now`` (not started, busy, over its byte rate or CPU budget, nothing listed)."""
    start = pv[P.PV_BG_START_NS]
    if now <= start:
        return False
    if st.scal[S_BG_CLOCK] > now:
        return False
    bbytes = (1 << st.geo[G_BLOCK_ORDER]) * PAGE_SIZE
    elapsed = now - start
    rate = pv[P.PV_BG_RATE]
    if rate > 0 and (st.scal[S_BG_BYTES] + bbytes) * 1_000_000_000 > rate * elapsed:
        return False
    budget_ppm = pv[P.PV_BG_BUDGET_PPM]
    if budget_ppm > 0 and st.scal[S_BG_CPU_NS] * 1_000_000 > budget_ppm * elapsed:
        return False
    for zz in range(st.geo[G_NR_ZONES]):
        if st.ul_len[zz] > 0:
            return True
    return False


@kernel(nrt=True)
def background_accept(st: AcceptState, cv: np.ndarray, pv: np.ndarray, now: int, out_pfns: np.ndarray,
                      receipt: np.ndarray) -> int:
    """P6 background acceptor (never merged): accept listed blocks, lowest zone first, within the
    policy's byte rate and CPU budget since ``background_start_ns``.  Its firmware time runs on
    the acceptor thread (``R_BG_FW_NS``), not on a traced CPU; zone->lock and global-lock
    sections still count.  Returns the number of blocks written to ``out_pfns``."""
    start = pv[P.PV_BG_START_NS]
    bbytes = (1 << st.geo[G_BLOCK_ORDER]) * PAGE_SIZE
    n = 0
    nz = st.geo[G_NR_ZONES]
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
        t = st.scal[S_BG_CLOCK] if st.scal[S_BG_CLOCK] > start else start
        fw0 = receipt[R_FW_NS]
        pfn, added = try_to_accept_memory_one(st, cv, pv, z, t, receipt)
        if pfn < 0:
            break
        receipt[R_BG_FW_NS] += receipt[R_FW_NS] - fw0
        st.scal[S_BG_CLOCK] = t + int(added + 0.5)
        st.scal[S_BG_BYTES] += bbytes
        st.scal[S_BG_CPU_NS] += int(added + 0.5)
        out_pfns[n] = pfn
        n += 1
    return n


@kernel(nrt=True)
def acceptance_hook(st: AcceptState, cv: np.ndarray, pv: np.ndarray, site: int, z: int, pfn: int,
                    order: int, nr_free_accepted: int, unusable: int, now: int, out_pfns: np.ndarray,
                    receipt: np.ndarray) -> int:
    """The one per-event entry point: do what the policy does at kernel call site ``site``.

    * ``SITE_ZONE_VISIT`` / ``SITE_BULK``: ``cond_accept_memory`` for ``every_zone_visit`` and
      ``background`` policies (6.12 calls it at the top of each zone iteration and in the bulk
      allocator).
    * ``SITE_WMARK_FAIL`` / ``SITE_RMQUEUE_FAIL``: ``try_to_accept_memory`` (6.5-6.10 list
      policies) or ``cond_accept_memory`` (6.12); if it returns > 0 the kernel retries the zone
      (``goto try_this_zone``).
    * ``SITE_BUDDY_DEL`` (v1, under the caller's zone->lock): accept the units covering the
      block ``(pfn, order)`` being removed; firmware time is in ``R_FW_UNDER_ZONE_LOCK_NS``.
    * ``SITE_POST_ALLOC`` (v2-v7, after zone->lock is dropped): the allocated block's units.

    Returns the number of MAX_PAGE_ORDER blocks in ``out_pfns`` that the engine must free into
    the buddy (``__free_pages_ok(.., MAX_PAGE_ORDER, FPI_TO_TAIL)``).  ``out_pfns`` must hold
    at least ``ul_len[z]`` entries.  ``receipt`` gets everything the calling CPU paid
    (``R_ADDED_NS``), firmware ns and calls, and lock sections; it is also added to ``totals``.
    """
    trig = pv[P.PV_TRIGGER]
    n = 0
    r = np.zeros(R_LEN, dtype=np.float64)
    if site == SITE_ZONE_VISIT or site == SITE_BULK:
        if trig == T_ZONE_VISIT or trig == T_BACKGROUND:
            n = cond_accept_memory(st, cv, pv, z, order, nr_free_accepted, unusable, now, out_pfns, r)
    elif site == SITE_WMARK_FAIL or site == SITE_RMQUEUE_FAIL:
        if trig == T_WMARK_FAIL:
            n = try_to_accept_memory(st, cv, pv, z, order, nr_free_accepted, unusable, now, out_pfns, r)
        elif trig == T_ZONE_VISIT or trig == T_BACKGROUND:
            n = cond_accept_memory(st, cv, pv, z, order, nr_free_accepted, unusable, now, out_pfns, r)
    elif site == SITE_BUDDY_DEL:
        if trig == T_BUDDY:
            accept_covering_units(st, cv, pv, pfn, order, now, r)
    elif site == SITE_POST_ALLOC:
        if trig == T_POST_ALLOC:
            accept_covering_units(st, cv, pv, pfn, order, now, r)
    for k in range(R_LEN):
        if k == R_IRQS_OFF_MAX_NS:
            if r[k] > receipt[k]:
                receipt[k] = r[k]
            if r[k] > st.totals[k]:
                st.totals[k] = r[k]
        else:
            receipt[k] += r[k]
            st.totals[k] += r[k]
    return n


@kernel(nrt=True)
def watermark_unusable_extra(st: AcceptState, pv: np.ndarray, z: int) -> int:
    """Pages the policy adds to ``__zone_watermark_unusable_free()``: NR_UNACCEPTED in 6.5-6.10."""
    return int(st.z_nr_unaccepted[z]) if pv[P.PV_UNUSABLE] != 0 else 0


def set_watermarks_ready(st: AcceptState, ready: bool = True, z: int = -1) -> None:
    """``init_per_zone_wmark_min()`` ran (postcore initcall): watermarks stop being zero."""
    if z < 0:
        st.z_wmark_ready[:] = int(ready)
    else:
        st.z_wmark_ready[z] = int(ready)


# ------------------------------------------------------------------ invariants
@kernel(nrt=True)
def check_accepted(st: AcceptState, pfn: int, order: int) -> bool:
    """No unaccepted page is handed out: every unit covering the block is accepted (no guard)."""
    u0, u1 = _unit_range(st, pfn, 1 << order, 0)
    for u in range(u0, u1):
        if st.bitmap[u] != 0:
            return False
    return True


@kernel(nrt=True)
def check_conservation(st: AcceptState) -> bool:
    """Per zone: listed + released == pages handled at boot; NR_UNACCEPTED == blocks listed."""
    bpages = 1 << st.geo[G_BLOCK_ORDER]
    for z in range(st.geo[G_NR_ZONES]):
        if st.z_nr_unaccepted[z] + st.z_released_pages[z] != st.z_boot_pages[z]:
            return False
        if st.z_nr_unaccepted[z] != st.ul_len[z] * bpages:
            return False
    return True


def block_listed(st: AcceptState, pfn: int) -> bool:
    """The MAX_PAGE_ORDER block containing ``pfn`` is on ``zone->unaccepted_pages`` (not in the buddy)."""
    b = _blk_of(st, pfn)
    return 0 <= b < st.geo[G_NR_BLOCKS] and st.blk_state[b] == B_LISTED


@kernel(nrt=True)
def _walk_unaccepted(st: AcceptState, z: int, out: np.ndarray) -> int:
    n = 0
    b = st.ul_head[z]
    while b >= 0 and n < out.shape[0]:
        out[n] = _blk_pfn(st, b)
        n += 1
        b = st.blk_next[b]
    return n


def unaccepted_pages_of(st: AcceptState, z: int) -> np.ndarray:
    """Head pfns of the listed blocks of zone ``z`` in list (FIFO) order."""
    out = np.empty(int(st.ul_len[z]), np.int64)
    return out[: int(_walk_unaccepted(st, z, out))]


def unaccepted_bytes(st: AcceptState) -> int:
    """Bytes still unaccepted in the bitmap."""
    return int(st.bitmap.sum()) * int(st.geo[G_UNIT_PAGES]) * PAGE_SIZE


# ------------------------------------------------------------------ boot (mm/mm_init.c, memblock, EFI stub)
def boot_free_memory(st: AcceptState, cv: np.ndarray, pv: np.ndarray, free_ranges: Sequence[tuple[int, int]],
                     receipt: np.ndarray, *, mode: int) -> None:
    """``memblock_free_all()`` / ``deferred_init_memmap()``: hand free pfn ranges to the allocator.

    Whole MAX_PAGE_ORDER blocks go through ``__free_pages_core()``: if the block (plus guard
    unit) contains unaccepted memory, ``mode`` BOOT_LIST lists it (:func:`free_unaccepted`, lazy
    6.5+), BOOT_ACCEPT accepts it (``accept_memory=eager``), BOOT_TAG releases it to the buddy
    with its bits still set (v1-v7: the page carries PageOffline/PageUnaccepted and is accepted
    when allocated); everything else is released to the buddy.  Pieces smaller than a block are
    accepted up front (``deferred_free_range``: "Accept chunks smaller than MAX_PAGE_ORDER").
    Ranges are walked in ascending order, as the kernel fills the lists.  Boot time is not a
    traced CPU's time: firmware ns land in ``receipt``; ``R_ADDED_NS`` is untouched.
    """
    arr = np.asarray(sorted((int(a), int(b)) for a, b in free_ranges), dtype=np.int64).reshape(-1, 2)
    _boot_free_ranges(st, cv, pv, arr, receipt, mode)
    reset_clocks(st)


@kernel_entry(nrt=True)
def _boot_free_ranges(st: AcceptState, cv: np.ndarray, pv: np.ndarray, ranges: np.ndarray,
                      receipt: np.ndarray, mode: int) -> None:
    order = st.geo[G_BLOCK_ORDER]
    bpages = 1 << order
    guard = pv[P.PV_GUARD]
    t = 0.0  # one boot stream in virtual time, so boot calls never wait on each other
    for i in range(ranges.shape[0]):
        s = ranges[i, 0]
        e = ranges[i, 1]
        p = s
        while p < e:
            if p % bpages == 0 and p + bpages <= e:
                b = _blk_of(st, p)
                z = -1
                if 0 <= b < st.geo[G_NR_BLOCKS]:
                    z = st.blk_zone[b]
                if mode != BOOT_TAG and range_contains_unaccepted_memory(st, pv, p, bpages):
                    if mode == BOOT_LIST and z >= 0:
                        free_unaccepted(st, cv, z, p, receipt)
                        p += bpages
                        continue
                    t += accept_memory(st, cv, pv, p, bpages, int(t), guard, receipt)
                if z >= 0:
                    st.blk_state[b] = B_RELEASED
                    st.z_boot_pages[z] += bpages
                    st.z_released_pages[z] += bpages
                p += bpages
            else:
                q = p - p % bpages + bpages
                if e < q:
                    q = e
                t += accept_memory(st, cv, pv, p, q - p, int(t), guard, receipt)
                p = q


def reset_clocks(st: AcceptState) -> None:
    """Forget virtual-time lock / accepting_list state (after boot, before the trace's clock)."""
    st.acc_busy_until[:] = 0
    st.scal[S_GLOCK_FREE_AT] = 0

