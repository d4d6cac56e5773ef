"""The EFI unaccepted-memory bitmap and ``accept_memory()``: drivers/firmware/efi/unaccepted_memory.c.

* ``bitmap[u]`` = 1: unit ``u`` (``unit_size``, 2 MiB on x86) of ``[phys_base, ...)`` is
  unaccepted (``struct efi_unaccepted_memory``); memory outside the bitmap is accepted.
* :func:`accept_memory` and :func:`range_contains_unaccepted_memory` extend a unit-aligned end by
  one guard unit (the load_unaligned_zeropad() fix, v6.5) and clamp the range to the bitmap.
* :func:`accept_memory` clears each run of set bits with one ``arch_accept_memory()`` call
  (priced by :func:`replay.acceptance.costs.arch_accept_cost`) under the policy's locking scheme:
  ``unaccepted_memory_lock`` held across the walk (6.5), ``accepting_list`` with the lock dropped
  around each call (6.6+), or per-bit atomics and no lock (v1 review).

The state of acceptance (this layer and the per-zone lists of :mod:`replay.acceptance.page_alloc`)
is one struct-of-arrays :data:`AcceptState`; its scalars are read by name: ``st.geo[AcceptGeo.X]``,
``st.scal[AcceptScal.X]``.  Compiled functions take ``(st, cv, pv, ...)``, ``cv`` from
:func:`replay.acceptance.costs.cost_vector` and ``pv`` from
:func:`replay.acceptance.policies.policy_vector`, and write what they cost into a ``receipt``
(float64, slots :class:`Receipt`).
"""

from __future__ import annotations

import enum
from collections import namedtuple
from collections.abc import Sequence

import numpy as np

from replay.acceptance import costs as C
from replay.acceptance import policies as P
from replay.acceptance.costs import arch_accept_cost
from replay.acceptance.policies import BitmapLocking, Collision
from replay.jit import kernel
from replay.model.locks import OP_ACQ, OP_RANGE_ADD, OP_RANGE_DEL, OP_RANGE_WAIT, OP_REL, OP_WORK

__all__ = [
    "PAGE_SIZE", "RECEIPT_LEN", "AcceptGeo", "AcceptScal", "AcceptState", "Receipt", "accept_memory",
    "bitmap_units", "firmware_calls", "new_accept_state", "new_receipt", "page_contains_unaccepted",
    "range_contains_unaccepted_memory", "reset_clocks", "unaccepted_bytes",
]

PAGE_SIZE = 4096


class Receipt(enum.IntEnum):
    """Slots of a receipt: what one call cost, in ns unless the name says otherwise."""

    FW_NS = 0  # firmware time (arch_accept_memory)
    ADDED_NS = 1  # time added to the calling CPU (fw + waits + spins + bookkeeping)
    UNITS = 2  # bitmap units accepted (bits cleared)
    BYTES = 3  # bytes accepted
    RUNS = 4  # arch_accept_memory() calls
    BLOCKS = 5  # MAX_PAGE_ORDER blocks taken off unaccepted_pages (the engine frees them)
    ZONE_LOCK_SECTIONS = 6  # zone->lock sections opened by acceptance (list ops)
    ZONE_LOCK_HOLD_NS = 7  # their hold, plus firmware time when zone->lock is held (v1)
    FW_UNDER_ZONE_LOCK_NS = 8  # firmware time inside the caller's zone->lock section (v1)
    GLOBAL_LOCK_SECTIONS = 9
    GLOBAL_LOCK_HOLD_NS = 10
    GLOBAL_LOCK_WAIT_NS = 11
    ACCEPTING_SPIN_NS = 12  # busy-wait on an overlapping accepting_list entry
    ACCEPTING_COLLISIONS = 13
    IRQS_OFF_NS = 14  # total IRQs-off time added
    IRQS_OFF_MAX_NS = 15  # longest single IRQs-off stretch (a maximum, not a sum)
    BG_FW_NS = 16  # firmware time spent by the background acceptor (not on a traced CPU)
    CALLS = 17  # CALLS + kind: call counts by replay.acceptance.costs.CallKind


RECEIPT_LEN = Receipt.CALLS + C.NR_CALL_KINDS


class AcceptGeo(enum.IntEnum):
    """Slots of ``AcceptState.geo`` (int64): the fixed shape of the bitmap and the block space."""

    PHYS_BASE = 0  # first pfn of the bitmap (phys_base >> PAGE_SHIFT)
    UNIT_PAGES = 1
    NR_UNITS = 2
    BLOCK_ORDER = 3  # MAX_PAGE_ORDER: order of the blocks on zone->unaccepted_pages
    PFN_BASE = 4  # first pfn of the block index space (block-aligned)
    NR_BLOCKS = 5
    NR_ZONES = 6
    HAS_TABLE = 7  # efi_get_unaccepted_table() != NULL


class AcceptScal(enum.IntEnum):
    """Slots of ``AcceptState.scal`` (int64): the scalars that change, in virtual time."""

    BG_CLOCK = 0  # background acceptor: busy until
    BG_BYTES = 1  # background acceptor: bytes accepted so far
    BG_CPU_NS = 2  # background acceptor: CPU time used so far
    STEPS_N = 3  # rows of ``steps`` written since the caller last emptied it
    STEPS_LOST = 4  # steps that did not fit (the caller raises)
    FREE_HOLD_NS = 5  # zone->lock hold of one ``__free_pages_ok(MAX_PAGE_ORDER)`` (the caller's calibration)


#: the lock of a program step (``steps[:, 1]`` of ``OP_ACQ`` / ``OP_REL``): a zone index (its
#: zone->lock) or this, ``unaccepted_memory_lock``
LOCK_UNACCEPTED_MEMORY = -1
#: rows of ``AcceptState.steps``: one round trip's program (a few per accepted block)
STEP_CAP = 1 << 15


AcceptState = namedtuple("AcceptState", [
    "geo", "scal",
    "bitmap",  # uint8 [nr_units]: 1 = unaccepted
    # int64 [STEP_CAP, 4]: what the calls since the caller emptied it did, as the program steps
    # of replay.model.locks (op, a, b, ns): which locks they took, for how long, which
    # accepting_list range they registered; the lock schedule decides the waits
    "steps",
    "blk_state", "blk_next", "blk_prev", "blk_zone",  # per MAX_PAGE_ORDER block (page_alloc.BLK_*)
    "z_start", "z_end", "z_wmark", "z_wmark_ready", "z_nr_unaccepted",
    "ul_head", "ul_tail", "ul_len",  # zone->unaccepted_pages (block indices)
    "z_boot_pages", "z_released_pages",
    "totals",  # float64 [RECEIPT_LEN]: every receipt summed (hooks add here too)
])


def new_receipt() -> np.ndarray:
    return np.zeros(RECEIPT_LEN, dtype=np.float64)


def firmware_calls(r: np.ndarray) -> int:
    """Firmware / hypervisor calls in a receipt (cache-line evictions excluded)."""
    return int(r[Receipt.CALLS:Receipt.CALLS + C.NR_FIRMWARE_CALL_KINDS].sum())


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
    geo = np.zeros(len(AcceptGeo), dtype=np.int64)
    geo[AcceptGeo.PHYS_BASE] = base
    geo[AcceptGeo.UNIT_PAGES] = unit_pages
    geo[AcceptGeo.NR_UNITS] = nr_units
    geo[AcceptGeo.BLOCK_ORDER] = block_order
    geo[AcceptGeo.PFN_BASE] = pfn_base
    geo[AcceptGeo.NR_BLOCKS] = nr_blocks
    geo[AcceptGeo.NR_ZONES] = nz
    geo[AcceptGeo.HAS_TABLE] = int(has_table)
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
        geo=geo, scal=np.zeros(len(AcceptScal), dtype=np.int64), bitmap=bitmap,
        steps=np.zeros((STEP_CAP, 4), dtype=np.int64),
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


def unaccepted_bytes(st: AcceptState) -> int:
    """Bytes still unaccepted in the bitmap."""
    return int(st.bitmap.sum()) * int(st.geo[AcceptGeo.UNIT_PAGES]) * PAGE_SIZE


def reset_clocks(st: AcceptState) -> None:
    """Forget what boot did in virtual time (before the trace's clock): its program steps."""
    st.scal[AcceptScal.STEPS_N] = 0
    st.scal[AcceptScal.STEPS_LOST] = 0


@kernel(nrt=False)
def emit_step(st: AcceptState, op: int, a: int, b: int, d: float) -> None:
    """Append one program step (``replay.model.locks.OP_*``; ``d`` rounded to ns)."""
    n = st.scal[AcceptScal.STEPS_N]
    if n >= st.steps.shape[0]:
        st.scal[AcceptScal.STEPS_LOST] += 1
        return
    st.steps[n, 0] = op
    st.steps[n, 1] = a
    st.steps[n, 2] = b
    st.steps[n, 3] = int(d + 0.5)
    st.scal[AcceptScal.STEPS_N] = n + 1


@kernel(nrt=False)
def emit_locked(st: AcceptState, lock: int, d: float) -> None:
    """``spin_lock(lock)``, ``d`` ns of work, ``spin_unlock(lock)``."""
    emit_step(st, OP_ACQ, lock, 0, 0.0)
    emit_step(st, OP_WORK, 0, 0, d)
    emit_step(st, OP_REL, lock, 0, 0.0)


# ------------------------------------------------------------------ the range a request covers
@kernel(nrt=False)
def bitmap_units(start_pfn: int, nr_pages: int, base: int, unit: int, nr_units: int, guard: int) -> tuple[int, int]:
    """Units ``[u0, u1)`` of a bitmap of ``nr_units`` units of ``unit`` pages from pfn ``base``
    that ``accept_memory(start, size)`` looks at: the part of the range the bitmap represents,
    with the guard unit when ``guard`` is set (empty: none of it)."""
    limit = nr_units * unit
    if limit == 0:
        return 0, 0
    start = start_pfn
    end = start_pfn + nr_pages
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


@kernel(nrt=False)
def _unit_range(st: AcceptState, start_pfn: int, nr_pages: int, guard: int) -> tuple[int, int]:
    """:func:`bitmap_units` of ``st``'s bitmap (none without an unaccepted table)."""
    if st.geo[AcceptGeo.HAS_TABLE] == 0:
        return 0, 0
    return bitmap_units(start_pfn, nr_pages, st.geo[AcceptGeo.PHYS_BASE], st.geo[AcceptGeo.UNIT_PAGES],
                        st.geo[AcceptGeo.NR_UNITS], guard)


@kernel(nrt=False)
def _any_unaccepted(st: AcceptState, u0: int, u1: int) -> bool:
    for u in range(u0, u1):
        if st.bitmap[u] != 0:
            return True
    return False


@kernel(nrt=False)
def range_contains_unaccepted_memory(st: AcceptState, pv: np.ndarray, start_pfn: int, nr_pages: int) -> bool:
    """``range_contains_unaccepted_memory(start, size)``: any set bit, guard unit included."""
    u0, u1 = _unit_range(st, start_pfn, nr_pages, pv[P.PV_GUARD])
    return _any_unaccepted(st, u0, u1)


@kernel(nrt=False)
def page_contains_unaccepted(st: AcceptState, pfn: int, order: int) -> bool:
    """Any unit under the block ``[pfn, pfn + 2**order)`` itself unaccepted (no guard unit): what
    v1-v7 tested before handing out a block (``PageOffline`` / ``accept_page(page, order)``)."""
    u0, u1 = _unit_range(st, pfn, 1 << order, 0)
    return _any_unaccepted(st, u0, u1)


# ------------------------------------------------------------------ accept_memory()
@kernel(nrt=True)
def _accept_set_runs(st: AcceptState, cv: np.ndarray, calls_model: int, u0: int, u1: int,
                     calls: np.ndarray) -> tuple[float, int, int]:
    """``for_each_set_bitrange_from()``: one ``arch_accept_memory()`` per run of set bits, whose
    bits are cleared; returns (firmware ns, runs, units) and adds the calls to ``calls``."""
    base = st.geo[AcceptGeo.PHYS_BASE]
    unit = st.geo[AcceptGeo.UNIT_PAGES]
    fw = 0.0
    runs = 0
    units = 0
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
    return fw, runs, units


@kernel(nrt=False)
def _locked_across_calls(st: AcceptState, bop: float, fw: float, receipt: np.ndarray) -> float:
    """6.5 (2053bc57f367; also v1 and v2-v7): ``spin_lock_irqsave(&unaccepted_memory_lock)``
    around the whole walk, firmware calls included: one section.  Returns the bookkeeping ns."""
    emit_locked(st, LOCK_UNACCEPTED_MEMORY, bop + fw)
    receipt[Receipt.GLOBAL_LOCK_SECTIONS] += 1
    receipt[Receipt.GLOBAL_LOCK_HOLD_NS] += bop + fw
    return bop


@kernel(nrt=False)
def _accepting_list_sections(st: AcceptState, bop: float, fw: float, runs: int, u0: int, u1: int,
                             spin_retry: bool, receipt: np.ndarray) -> float:
    """6.6+ (50e782a86c98): ``retry:`` take the lock, look for an overlapping ``accepting_list``
    entry (``spin_retry``: drop the lock and retry while there is one), ``list_add`` the range,
    then drop the lock around each ``arch_accept_memory()`` and re-take it to ``bitmap_clear()``
    that run, ``list_del`` at the end: 1 + runs sections, the firmware time spread evenly over
    the runs.  Returns the bookkeeping ns."""
    G = LOCK_UNACCEPTED_MEMORY
    if spin_retry:
        emit_step(st, OP_RANGE_WAIT, u0, u1, 0.0)
    emit_step(st, OP_ACQ, G, 0, 0.0)
    if spin_retry:
        emit_step(st, OP_RANGE_ADD, u0, u1, 0.0)
    emit_step(st, OP_WORK, 0, 0, bop)
    for _ in range(runs):
        emit_step(st, OP_REL, G, 0, 0.0)
        emit_step(st, OP_WORK, 0, 0, fw / runs)
        emit_step(st, OP_ACQ, G, 0, 0.0)
        emit_step(st, OP_WORK, 0, 0, bop)
    if spin_retry:
        emit_step(st, OP_RANGE_DEL, u0, u1, 0.0)
    emit_step(st, OP_REL, G, 0, 0.0)
    receipt[Receipt.GLOBAL_LOCK_SECTIONS] += 1 + runs
    receipt[Receipt.GLOBAL_LOCK_HOLD_NS] += bop * (1 + runs)
    return bop * (1 + runs)


@kernel(nrt=True)
def accept_memory(st: AcceptState, cv: np.ndarray, pv: np.ndarray, start_pfn: int, nr_pages: int,
                  guard: int, receipt: np.ndarray) -> float:
    """``accept_memory(start, size)``: accept every unaccepted unit of the range (+ guard unit).

    The ``unaccepted_memory_lock`` scheme follows ``pv``: with ``bitmap_locking`` ``atomic_bits``
    there is none (``clear_bit()`` per unit); otherwise ``held_during_call`` ``global_lock``
    holds the lock across the calls (:func:`_locked_across_calls`, 6.5) and its absence gives the
    6.6+ ``accepting_list`` (:func:`_accepting_list_sections`).  ``atomic_bits`` and
    ``lockless_test`` first test the bits without the lock and return when none is set.  With
    ``collision`` ``spin_retry`` a request overlapping an in-flight range busy-waits until it
    completes.  What the call does is appended to ``st.steps`` as a program
    (``replay.model.locks``), whose schedule gives the lock waits and spins; returns the ns of
    work added to the calling CPU; firmware time and calls, lock sections and what
    ``held_during_call`` keeps held go into ``receipt``.
    """
    u0, u1 = _unit_range(st, start_pfn, nr_pages, guard)
    if u1 <= u0:
        return 0.0
    held = pv[P.PV_HELD]
    locking = pv[P.PV_BITMAP_LOCKING]
    if locking != BitmapLocking.GLOBAL_SPINLOCK and not _any_unaccepted(st, u0, u1):
        return 0.0  # tested without the lock: nothing to accept
    calls = np.zeros(C.NR_CALL_KINDS, dtype=np.int64)
    fw, runs, units = _accept_set_runs(st, cv, pv[P.PV_CALLS_MODEL], u0, u1, calls)
    bop = cv[C.CV_BITMAP_OP]
    if locking == BitmapLocking.ATOMIC_BITS:
        emit_step(st, OP_WORK, 0, 0, fw)
        book = 0.0
    elif held & P.HELD_GLOBAL_LOCK:
        book = _locked_across_calls(st, bop, fw, receipt)
    else:
        book = _accepting_list_sections(st, bop, fw, runs, u0, u1, pv[P.PV_COLLISION] == Collision.SPIN_RETRY,
                                        receipt)
    receipt[Receipt.FW_NS] += fw
    receipt[Receipt.UNITS] += units
    receipt[Receipt.BYTES] += units * st.geo[AcceptGeo.UNIT_PAGES] * PAGE_SIZE
    receipt[Receipt.RUNS] += runs
    for k in range(C.NR_CALL_KINDS):
        receipt[Receipt.CALLS + k] += calls[k]
    held_ns = book + fw
    if held & P.HELD_IRQS_OFF:
        # spin_lock_irqsave() .. spin_unlock_irqrestore(): IRQs off for the bookkeeping and the
        # firmware (and the wait for the global lock, which the schedule adds)
        receipt[Receipt.IRQS_OFF_NS] += held_ns
        if held_ns > receipt[Receipt.IRQS_OFF_MAX_NS]:
            receipt[Receipt.IRQS_OFF_MAX_NS] = held_ns
    if held & P.HELD_ZONE_LOCK:
        receipt[Receipt.FW_UNDER_ZONE_LOCK_NS] += held_ns
        receipt[Receipt.ZONE_LOCK_HOLD_NS] += held_ns
    return book + fw
