"""The boot hand-off: what firmware, the EFI stub and memblock leave unaccepted, and what boot costs.

* :func:`boot_free_memory` is ``memblock_free_all()`` / ``deferred_init_memmap()`` handing free
  ranges to the allocator through ``__free_pages_core()``: per policy it lists, tags or accepts
  each MAX_PAGE_ORDER block (mm/mm_init.c, mm/page_alloc.c).
* :func:`state_from_layout` builds the acceptance state of a whole guest
  (:class:`replay.model.layout.MemoryLayout`) the way firmware, the stub and boot leave it.
* :func:`boot_accept_cost` prices each policy's boot path (kernel-notes §3 aggregates).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from replay.acceptance import costs as C
from replay.acceptance import policies as P
from replay.acceptance.costs import CostPreset, arch_accept_cost, cost_vector, parallel_accept_ns
from replay.acceptance.page_alloc import (
    WMARK_HIGH,
    BlockState,
    __free_unaccepted,
    block_index,
    cond_accept_memory,
    set_watermarks_ready,
    try_to_accept_memory,
)
from replay.acceptance.policies import AcceptancePolicy, Trigger, policy_vector
from replay.acceptance.unaccepted_memory import (
    AcceptGeo,
    AcceptState,
    Receipt,
    accept_memory,
    new_accept_state,
    new_receipt,
    range_contains_unaccepted_memory,
    reset_clocks,
)
from replay.jit import kernel_entry
from replay.model.layout_x86 import layout_for_guest

__all__ = ["BOOT_ACCEPT", "BOOT_LIST", "BOOT_TAG", "AcceptanceModel", "BootCost", "boot_accept_cost",
           "boot_free_memory", "boot_mode", "state_from_layout"]

# how boot_free_memory hands a block with unaccepted units over
BOOT_TAG = 0  # to the buddy, bits still set (v1-v7: PageOffline / PageUnaccepted, accepted when allocated)
BOOT_LIST = 1  # onto zone->unaccepted_pages (__free_unaccepted, lazy 6.5+)
BOOT_ACCEPT = 2  # accepted first (accept_memory=eager)


def boot_mode(policy: AcceptancePolicy) -> int:
    """How boot hands unaccepted blocks over: BOOT_LIST (lazy lists), BOOT_TAG (v1-v7), BOOT_ACCEPT."""
    if policy.lists_blocks:
        return BOOT_LIST
    if policy.trigger_id in (Trigger.ON_BUDDY_ALLOC, Trigger.POST_ALLOC):
        return BOOT_TAG
    return BOOT_ACCEPT


# ------------------------------------------------------------------ memblock_free_all()
def boot_free_memory(st: AcceptState, cv: np.ndarray, pv: np.ndarray, free_ranges: Sequence[tuple[int, int]],
                     receipt: np.ndarray, *, mode: int) -> None:
    """``memblock_free_all()`` / ``deferred_init_memmap()``: hand free pfn ranges to the allocator.

    Whole MAX_PAGE_ORDER blocks go through ``__free_pages_core()``: if the block (plus guard
    unit) contains unaccepted memory, ``mode`` BOOT_LIST lists it (``__free_unaccepted``, lazy
    6.5+), BOOT_ACCEPT accepts it (``accept_memory=eager``), BOOT_TAG releases it to the buddy
    with its bits still set (v1-v7: the page carries PageOffline/PageUnaccepted and is accepted
    when allocated); everything else is released to the buddy.  Pieces smaller than a block are
    accepted up front (``deferred_free_range``: "Accept chunks smaller than MAX_PAGE_ORDER").
    Ranges are walked in ascending order, as the kernel fills the lists.  Boot time is not a
    traced CPU's time: firmware ns land in ``receipt``; ``Receipt.ADDED_NS`` is untouched.
    """
    arr = np.asarray(sorted((int(a), int(b)) for a, b in free_ranges), dtype=np.int64).reshape(-1, 2)
    _boot_free_ranges(st, cv, pv, arr, receipt, mode)
    reset_clocks(st)


@kernel_entry(nrt=True)
def _boot_free_ranges(st: AcceptState, cv: np.ndarray, pv: np.ndarray, ranges: np.ndarray,
                      receipt: np.ndarray, mode: int) -> None:
    order = st.geo[AcceptGeo.BLOCK_ORDER]
    bpages = 1 << order
    guard = pv[P.PV_GUARD]
    for i in range(ranges.shape[0]):
        s = ranges[i, 0]
        e = ranges[i, 1]
        p = s
        while p < e:
            if p % bpages == 0 and p + bpages <= e:
                b = block_index(st, p)
                z = -1
                if 0 <= b < st.geo[AcceptGeo.NR_BLOCKS]:
                    z = st.blk_zone[b]
                if mode != BOOT_TAG and range_contains_unaccepted_memory(st, pv, p, bpages):
                    if mode == BOOT_LIST and z >= 0:
                        __free_unaccepted(st, cv, z, p, receipt)
                        p += bpages
                        continue
                    accept_memory(st, cv, pv, p, bpages, guard, receipt)
                if z >= 0:
                    st.blk_state[b] = BlockState.RELEASED
                    st.z_boot_pages[z] += bpages
                    st.z_released_pages[z] += bpages
                p += bpages
            else:
                q = p - p % bpages + bpages
                if e < q:
                    q = e
                accept_memory(st, cv, pv, p, q - p, guard, receipt)
                p = q


# ------------------------------------------------------------------ a whole guest
def _ram_ranges(layout: Any) -> list[tuple[int, int]]:
    if layout.ram_ranges:
        return [(int(s), int(e)) for s, e in layout.ram_ranges]
    return [(z.zone_start_pfn, z.zone_end_pfn) for z in layout.zones if z.populated]


def _memblock_ranges(layout: Any) -> list[tuple[int, int]]:
    """memblock reservations, estimated per zone as ``present - managed`` at the top of the zone
    (memblock allocates top-down); they are accepted by ``memblock_alloc_range_nid()``."""
    out = []
    for z in layout.zones:
        if z.populated and z.present > z.managed:
            out.append((z.zone_end_pfn - (z.present - z.managed), z.zone_end_pfn))
    return out


def _subtract(ranges: list[tuple[int, int]], holes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out = []
    for s, e in ranges:
        pieces = [(s, e)]
        for hs, he in holes:
            nxt = []
            for a, b in pieces:
                if he <= a or hs >= b:
                    nxt.append((a, b))
                else:
                    if a < hs:
                        nxt.append((a, hs))
                    if he < b:
                        nxt.append((he, b))
            pieces = nxt
        out.extend(p for p in pieces if p[1] > p[0])
    return out


def _stub_split(regions: list[tuple[int, int]], unit_pages: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """EFI stub ``process_unaccepted_memory()``: (ranges the stub accepts itself, unit-aligned
    ranges it sets in the bitmap); regions under 2 units and unaligned heads and tails are accepted."""
    stub_accept: list[tuple[int, int]] = []
    bitmap_ranges: list[tuple[int, int]] = []
    for s, e in regions:
        if e - s < 2 * unit_pages:
            stub_accept.append((s, e))
            continue
        s2 = -(-s // unit_pages) * unit_pages
        e2 = e // unit_pages * unit_pages
        if s2 > s:
            stub_accept.append((s, s2))
        if e > e2:
            stub_accept.append((e2, e))
        bitmap_ranges.append((s2, e2))
    return stub_accept, bitmap_ranges


@dataclass
class AcceptanceModel:
    """Python-side bundle: state + cost and policy vectors + boot receipt, for one replay."""

    policy: AcceptancePolicy
    costs: CostPreset
    st: AcceptState
    cv: np.ndarray
    pv: np.ndarray
    boot: np.ndarray  # receipt of everything accepted before the trace (stub, memblock, boot free)
    firmware_accepted: list[tuple[int, int]] = field(default_factory=list)
    out_pfns: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


def state_from_layout(layout: Any, policy: AcceptancePolicy, costs: CostPreset, *,
                      firmware_accepted_bytes: int = 4 << 30, accepted_ranges: Sequence[tuple[int, int]] = (),
                      memblock_ranges: Sequence[tuple[int, int]] | None = None,
                      wmarks_ready: bool = True, boot: bool = True) -> AcceptanceModel:
    """Build the acceptance state of a guest the way firmware, EFI stub and boot leave it.

    * The firmware accepts RAM below ``firmware_accepted_bytes`` (TDVF/OVMF first stage: below
      4 GiB, edk2 PR #3572; TDVF ``PcdLazyAcceptPartialMemorySize`` e.g. 512 MiB) plus any
      ``accepted_ranges`` (pfns); the rest is ``EFI_UNACCEPTED_MEMORY``.
    * ``process_unaccepted_memory()``: regions under 2 units and unaligned head/tail are accepted
      by the stub; the aligned middle is set in the bitmap (unit = ``policy.unit_bytes``).
    * memblock allocations (``memblock_ranges``, default :func:`_memblock_ranges`) are accepted.
    * With ``boot``, :func:`boot_free_memory` then lists or accepts every free block.
    Policies without an unaccepted table (``none``, ``firmware-eager``) get an empty bitmap.
    """
    ps = layout.page_size
    unit_pages = max(1, policy.unit_bytes // ps)
    fw_limit = firmware_accepted_bytes // ps
    ram = _ram_ranges(layout)
    acc = sorted([(int(s), int(e)) for s, e in accepted_ranges])
    unacc_regions = _subtract([(max(s, fw_limit), e) for s, e in ram if e > fw_limit], acc)
    stub_accept, bitmap_ranges = _stub_split(unacc_regions, unit_pages) if policy.has_unaccepted_table else ([], [])
    zones = [(z.zone_start_pfn, z.zone_end_pfn) for z in layout.zones]
    wm = [(z.wmark_min, z.wmark_low, z.wmark_high, z.wmark_promo) for z in layout.zones]
    st = new_accept_state(zones, wm, unaccepted=bitmap_ranges, unit_pages=unit_pages,
                          block_order=policy.block_order if policy.block_order else layout.max_page_order,
                          has_table=policy.has_unaccepted_table and bool(bitmap_ranges),
                          wmarks_ready=wmarks_ready)
    cv, pv = cost_vector(costs), policy_vector(policy, ps)
    boot_r = new_receipt()
    calls = np.zeros(C.NR_CALL_KINDS, dtype=np.int64)
    for s, e in stub_accept:  # arch_accept_memory() from the EFI stub, no bitmap involved
        boot_r[Receipt.FW_NS] += arch_accept_cost(cv, 0, s * ps, e * ps, calls)
        boot_r[Receipt.BYTES] += (e - s) * ps
    for k in range(C.NR_CALL_KINDS):
        boot_r[Receipt.CALLS + k] += calls[k]
    mb = _memblock_ranges(layout) if memblock_ranges is None else list(memblock_ranges)
    for s, e in mb:
        accept_memory(st, cv, pv, s, e - s, pv[P.PV_GUARD], boot_r)
    reset_clocks(st)
    model = AcceptanceModel(policy, costs, st, cv, pv, boot_r,
                            firmware_accepted=[(s, min(e, fw_limit)) for s, e in ram if s < fw_limit] + acc)
    if boot:
        free = _subtract(ram, sorted(mb))
        boot_free_memory(st, cv, pv, free, boot_r, mode=boot_mode(policy))
    model.out_pfns = np.zeros(max(1, int(st.geo[AcceptGeo.NR_BLOCKS])), dtype=np.int64)
    return model


# ------------------------------------------------------------------ boot-time cost of a policy
@dataclass(frozen=True)
class BootCost:
    """Acceptance work on the boot path of one policy (ns; bytes; calls by kind)."""

    policy: str
    costs: str
    wall_ns: float
    cpu_ns: float
    accepted_bytes: int
    threads: int
    bound: str  # "cpu" | "ceiling" | "-"
    parts_ns: dict[str, float]
    calls: dict[str, int]

    @property
    def seconds(self) -> float:
        return self.wall_ns / 1e9

    def as_dict(self) -> dict[str, Any]:
        return {"policy": self.policy, "costs": self.costs, "boot_accept_ns": self.wall_ns,
                "cpu_ns": self.cpu_ns, "accepted_bytes": self.accepted_bytes, "threads": self.threads,
                "bound": self.bound, "parts_ns": self.parts_ns, "calls": self.calls}


def _add_receipt_calls(calls: np.ndarray, r: np.ndarray) -> None:
    for k in range(C.NR_CALL_KINDS):
        calls[k] += int(r[Receipt.CALLS + k])


def _calls_by_kind(calls: np.ndarray) -> dict[str, int]:
    return {k: int(v) for k, v in zip(C.CALL_KIND_NAMES, calls) if v}


def _boot_threads(policy: AcceptancePolicy, init_threads: int | None, nr_cpus: int) -> int:
    """Threads accepting at boot: the policy's (or ``init_threads``), 0 = one per vCPU like
    ``deferred_page_init_max_threads()``."""
    threads = policy.init_threads if init_threads is None else init_threads
    return threads or nr_cpus


def _firmware_eager_cost(policy: AcceptancePolicy, costs: CostPreset, cv: np.ndarray, ram: list[tuple[int, int]],
                         ps: int, nr_cpus: int, init_threads: int | None) -> BootCost:
    """``firmware-eager``: the firmware accepts all RAM before ExitBootServices, on its threads."""
    calls = np.zeros(C.NR_CALL_KINDS, dtype=np.int64)
    fw = 0.0
    nbytes = 0
    for s, e in ram:
        fw += arch_accept_cost(cv, 0, s * ps, e * ps, calls)
        nbytes += (e - s) * ps
    threads = _boot_threads(policy, init_threads, nr_cpus)
    wall, bound = parallel_accept_ns(fw, nbytes, threads, costs)
    return BootCost(policy.name, costs.name, float(wall), float(fw), nbytes, threads, bound,
                    {"firmware": float(wall)}, _calls_by_kind(calls))


def _firmware_low_accept(cv: np.ndarray, ram: list[tuple[int, int]], fw_limit: int, ps: int,
                         calls: np.ndarray) -> tuple[float, int]:
    """The firmware's own accept of RAM below ``fw_limit`` (the same in every lazy-capable
    policy, one stream): (ns, bytes)."""
    fw_ns = 0.0
    nbytes = 0
    for s, e in ram:
        if s < fw_limit:
            fw_ns += arch_accept_cost(cv, 0, s * ps, min(e, fw_limit) * ps, calls)
            nbytes += (min(e, fw_limit) - s) * ps
    return fw_ns, nbytes


def _early_boot_accepts(m: AcceptanceModel, early_boot_blocks: int) -> np.ndarray:
    """Allocations while watermarks are still zero, one block each (800f1059c99e), from the
    highest populated zone down: their receipt."""
    st = m.st
    r = new_receipt()
    out = np.zeros(max(1, int(st.geo[AcceptGeo.NR_BLOCKS])), dtype=np.int64)
    set_watermarks_ready(st, False)
    zs = [i for i in range(int(st.geo[AcceptGeo.NR_ZONES])) if st.ul_len[i] > 0]
    left = early_boot_blocks
    for z in reversed(zs):
        while left > 0 and st.ul_len[z] > 0:
            cond_accept_memory(st, m.cv, m.pv, z, 0, 0, 0, out, r)
            left -= 1
    reset_clocks(st)
    set_watermarks_ready(st, True)
    return r


def _fill_to_watermark(m: AcceptanceModel, zones: list[int]) -> np.ndarray:
    """The first watermark-ready allocation of each zone in ``zones``, accepting up to promo
    (``cond_accept_memory``) or high (``try_to_accept_memory``, only when below it): its receipt."""
    st = m.st
    r = new_receipt()
    out = np.zeros(max(1, int(st.geo[AcceptGeo.NR_BLOCKS])), dtype=np.int64)
    for z in zones:
        free_acc = int(st.z_released_pages[z])
        if m.policy.trigger_id is Trigger.WATERMARK_FAIL:
            if free_acc < st.z_wmark[z, WMARK_HIGH]:
                try_to_accept_memory(st, m.cv, m.pv, z, 0, free_acc, 0, out, r)
        else:
            cond_accept_memory(st, m.cv, m.pv, z, 0, free_acc, 0, out, r)
    return r


def boot_accept_cost(policy: AcceptancePolicy, costs: CostPreset, guest_bytes: int, nr_cpus: int, *,
                     layout: Any = None, firmware_accepted_bytes: int = 4 << 30,
                     init_threads: int | None = None, early_boot_blocks: int = 0,
                     fill_to_watermark: bool = True) -> BootCost:
    """Boot-time acceptance cost of ``policy`` for a guest (kernel-notes §3 aggregates).

    Parts: ``firmware`` (the firmware's low-memory accept, single stream; everything for
    ``firmware-eager``), ``stub+memblock`` (unaligned pieces and early allocations, e.g. the
    memmap), ``kernel`` (boot free: for ``kernel-eager`` every block in ``__free_pages_core()`` on
    ``init_threads`` threads, 0 = ``nr_cpus`` like ``deferred_page_init_max_threads()``, under the
    bandwidth ceiling of :func:`replay.acceptance.costs.parallel_accept_ns`), ``early`` (list
    policies: ``early_boot_blocks`` allocations while watermarks are zero, one block each) and
    ``fill`` (the first watermark-ready allocation per zone accepting up to promo/high).
    ``none`` costs nothing.
    """
    if policy.trigger_id is Trigger.NONE:
        return BootCost(policy.name, costs.name, 0.0, 0.0, 0, 0, "-", {}, {})
    lay = layout if layout is not None else layout_for_guest(guest_bytes, nr_cpus)
    ps = lay.page_size
    cv = cost_vector(costs)
    ram = _ram_ranges(lay)
    if policy.trigger_id is Trigger.FIRMWARE_BOOT:
        return _firmware_eager_cost(policy, costs, cv, ram, ps, nr_cpus, init_threads)
    calls = np.zeros(C.NR_CALL_KINDS, dtype=np.int64)
    parts: dict[str, float] = {}
    fw_ns, nbytes = _firmware_low_accept(cv, ram, firmware_accepted_bytes // ps, ps, calls)
    parts["firmware"] = float(fw_ns)
    m = state_from_layout(lay, policy, costs, firmware_accepted_bytes=firmware_accepted_bytes, boot=False)
    parts["stub+memblock"] = float(m.boot[Receipt.FW_NS])
    nbytes += int(m.boot[Receipt.BYTES])
    _add_receipt_calls(calls, m.boot)
    # memblock_free_all(): accepts (kernel-eager) or lists (list policies) every free block
    r = new_receipt()
    boot_free_memory(m.st, m.cv, m.pv, _subtract(ram, sorted(_memblock_ranges(lay))), r, mode=boot_mode(policy))
    cpu_kernel = float(r[Receipt.FW_NS])
    threads, bound = 1, "cpu"
    if policy.trigger_id is Trigger.KERNEL_BOOT:
        threads = _boot_threads(policy, init_threads, nr_cpus)
        wall_k, bound = parallel_accept_ns(cpu_kernel, int(r[Receipt.BYTES]), threads, costs)
    else:
        wall_k = cpu_kernel  # stub-style pieces accepted during boot free (small)
    parts["kernel"] = float(wall_k)
    nbytes += int(r[Receipt.BYTES])
    _add_receipt_calls(calls, r)
    if policy.lists_blocks:
        listed = [i for i in range(int(m.st.geo[AcceptGeo.NR_ZONES])) if m.st.ul_len[i] > 0]
        early = _early_boot_accepts(m, early_boot_blocks)
        parts["early"] = float(early[Receipt.FW_NS])
        fill = _fill_to_watermark(m, listed) if fill_to_watermark else new_receipt()
        parts["fill"] = float(fill[Receipt.FW_NS])
        for rr in (early, fill):
            nbytes += int(rr[Receipt.BYTES])
            _add_receipt_calls(calls, rr)
    cpu = fw_ns + parts["stub+memblock"] + cpu_kernel + parts.get("early", 0.0) + parts.get("fill", 0.0)
    wall = fw_ns + parts["stub+memblock"] + wall_k + parts.get("early", 0.0) + parts.get("fill", 0.0)
    return BootCost(policy.name, costs.name, float(wall), float(cpu), nbytes, threads, bound, parts,
                    _calls_by_kind(calls))
