"""Building the acceptance state of a whole guest, and the boot-time acceptance cost of a policy.

Python-level (not per event): :func:`state_from_layout` reproduces what firmware, the EFI stub,
memblock and ``memblock_free_all()`` leave behind for a :class:`replay.model.layout.MemoryLayout`;
:func:`boot_accept_cost` prices the boot path of each policy (kernel-notes §3 aggregates).
Re-exported by :mod:`replay.acceptance.unaccepted`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from replay.acceptance import costs as C
from replay.acceptance import policies as P
from replay.acceptance.unaccepted import (BOOT_ACCEPT, BOOT_LIST, BOOT_TAG, G_NR_BLOCKS, G_NR_ZONES, R_ADDED_NS, AcceptState,
                               R_BYTES, R_CALLS, R_FW_NS, W_HIGH, accept_memory, acceptance_hook,
                               boot_free_memory, cond_accept_memory, new_accept_state, new_receipt,
                               reset_clocks, set_watermarks_ready, try_to_accept_memory)
from replay.acceptance.costs import CostPreset, arch_accept_cost, cost_vector, parallel_accept_ns
from replay.acceptance.policies import AcceptancePolicy, policy_vector

__all__ = ["AcceptanceModel", "BootCost", "boot_accept_cost", "boot_mode", "state_from_layout"]


def boot_mode(policy: AcceptancePolicy) -> int:
    """How boot hands unaccepted blocks over: BOOT_LIST (lazy lists), BOOT_TAG (v1-v7), BOOT_ACCEPT."""
    if policy.lazy:
        return BOOT_LIST
    if policy.trigger in ("on_buddy_alloc", "post_alloc"):
        return BOOT_TAG
    return BOOT_ACCEPT


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

    def hook(self, site: int, z: int, pfn: int = 0, order: int = 0, nr_free_accepted: int = 0,
             unusable: int = 0, now: int = 0, receipt: np.ndarray | None = None) -> np.ndarray:
        """:func:`acceptance_hook`; returns the pfns of blocks to free into the buddy."""
        r = receipt if receipt is not None else new_receipt()
        n = acceptance_hook(self.st, self.cv, self.pv, site, z, pfn, order, nr_free_accepted,
                            unusable, now, self.out_pfns, r)
        return self.out_pfns[:n].copy()


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
    stub_accept: list[tuple[int, int]] = []
    bitmap_ranges: list[tuple[int, int]] = []
    if policy.has_unaccepted_table:
        for s, e in unacc_regions:
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
        boot_r[R_FW_NS] += arch_accept_cost(cv, 0, s * ps, e * ps, calls)
        boot_r[R_BYTES] += (e - s) * ps
    for k in range(C.NR_CALL_KINDS):
        boot_r[R_CALLS + k] += calls[k]
    mb = _memblock_ranges(layout) if memblock_ranges is None else list(memblock_ranges)
    t = 0.0
    for s, e in mb:
        t += accept_memory(st, cv, pv, s, e - s, int(t), pv[P.PV_GUARD], boot_r)
    reset_clocks(st)
    model = AcceptanceModel(policy, costs, st, cv, pv, boot_r,
                            firmware_accepted=[(s, min(e, fw_limit)) for s, e in ram if s < fw_limit] + acc)
    if boot:
        free = _subtract(ram, sorted(mb))
        boot_free_memory(st, cv, pv, free, boot_r, mode=boot_mode(policy))
    model.out_pfns = np.zeros(max(1, int(st.geo[G_NR_BLOCKS])), dtype=np.int64)
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


def boot_accept_cost(policy: AcceptancePolicy, costs: CostPreset, guest_bytes: int, nr_cpus: int, *,
                     layout: Any = None, firmware_accepted_bytes: int = 4 << 30,
                     init_threads: int | None = None, early_boot_blocks: int = 0,
                     fill_to_watermark: bool = True) -> BootCost:
    """Boot-time acceptance cost of ``policy`` for a guest (kernel-notes §3 aggregates).

    Parts: ``firmware`` (the firmware's low-memory accept, single stream; everything for
    ``firmware-eager``), ``stub`` (unaligned pieces), ``memblock`` (early allocations, e.g. the
    memmap), ``kernel`` (``kernel-eager``: every block in ``__free_pages_core()`` on
    ``init_threads`` threads, 0 = ``nr_cpus`` like ``deferred_page_init_max_threads()``, under the
    bandwidth ceiling of :func:`replay.acceptance.costs.parallel_accept_ns`), ``early`` (list policies:
    ``early_boot_blocks`` allocations while watermarks are zero, one block each) and ``fill``
    (the first watermark-ready allocation per zone accepting up to promo/high).
    ``none`` costs nothing.
    """
    from replay.model.layout import layout_for_guest

    name = policy.name
    if policy.trigger == "none":
        return BootCost(name, costs.name, 0.0, 0.0, 0, 0, "-", {}, {})
    lay = layout if layout is not None else layout_for_guest(guest_bytes, nr_cpus)
    ps = lay.page_size
    cv = cost_vector(costs)
    parts: dict[str, float] = {}
    calls = np.zeros(C.NR_CALL_KINDS, dtype=np.int64)
    ram = _ram_ranges(lay)
    threads = 1
    bound = "cpu"
    if policy.trigger == "firmware_boot":
        fw = 0.0
        nbytes = 0
        for s, e in ram:
            fw += arch_accept_cost(cv, 0, s * ps, e * ps, calls)
            nbytes += (e - s) * ps
        threads = policy.init_threads if init_threads is None else init_threads
        threads = threads or nr_cpus
        wall, bound = parallel_accept_ns(fw, nbytes, threads, costs)
        parts["firmware"] = float(wall)
        return BootCost(name, costs.name, float(wall), float(fw), nbytes, threads, bound, parts,
                        {k: int(v) for k, v in zip(C.CALL_KIND_NAMES, calls) if v})
    # firmware's own low-memory accept (the same in every lazy-capable policy)
    fw_limit = firmware_accepted_bytes // ps
    fw_ns = 0.0
    nbytes = 0
    for s, e in ram:
        if s < fw_limit:
            fw_ns += arch_accept_cost(cv, 0, s * ps, min(e, fw_limit) * ps, calls)
            nbytes += (min(e, fw_limit) - s) * ps
    parts["firmware"] = float(fw_ns)
    m = state_from_layout(lay, policy, costs, firmware_accepted_bytes=firmware_accepted_bytes, boot=False)
    st, pv = m.st, m.pv
    # stub + memblock (state_from_layout put them in m.boot)
    parts["stub+memblock"] = float(m.boot[R_FW_NS])
    nbytes += int(m.boot[R_BYTES])
    for k in range(C.NR_CALL_KINDS):
        calls[k] += int(m.boot[R_CALLS + k])
    mb = _memblock_ranges(lay)
    r = new_receipt()
    boot_free_memory(st, m.cv, pv, _subtract(ram, sorted(mb)), r, mode=boot_mode(policy))
    cpu_kernel = float(r[R_FW_NS])
    if policy.trigger == "kernel_boot":
        threads = policy.init_threads if init_threads is None else init_threads
        threads = threads or nr_cpus
        wall_k, bound = parallel_accept_ns(cpu_kernel, int(r[R_BYTES]), threads, costs)
    else:
        wall_k = cpu_kernel  # stub-style pieces accepted during boot free (small)
    parts["kernel"] = float(wall_k)
    nbytes += int(r[R_BYTES])
    for k in range(C.NR_CALL_KINDS):
        calls[k] += int(r[R_CALLS + k])
    if policy.lazy:
        r2 = new_receipt()
        out = np.zeros(max(1, int(st.geo[G_NR_BLOCKS])), dtype=np.int64)
        # early boot: watermarks zero, one block per allocation, from the highest populated zone
        set_watermarks_ready(st, False)
        zs = [i for i in range(int(st.geo[G_NR_ZONES])) if st.ul_len[i] > 0]
        left = early_boot_blocks
        for z in reversed(zs):
            while left > 0 and st.ul_len[z] > 0:
                cond_accept_memory(st, m.cv, pv, z, 0, 0, 0, int(r2[R_ADDED_NS]), out, r2)
                left -= 1
        reset_clocks(st)
        parts["early"] = float(r2[R_FW_NS])
        set_watermarks_ready(st, True)
        r3 = new_receipt()
        if fill_to_watermark:
            for z in zs:
                free_acc = int(st.z_released_pages[z])
                if policy.trigger == "watermark_fail":
                    try_to_accept_memory(st, m.cv, pv, z, 0, free_acc, 0, 0, out, r3) \
                        if free_acc < st.z_wmark[z, W_HIGH] else 0
                else:
                    cond_accept_memory(st, m.cv, pv, z, 0, free_acc, 0, 0, out, r3)
        parts["fill"] = float(r3[R_FW_NS])
        for rr in (r2, r3):
            nbytes += int(rr[R_BYTES])
            for k in range(C.NR_CALL_KINDS):
                calls[k] += int(rr[R_CALLS + k])
    cpu = fw_ns + parts["stub+memblock"] + cpu_kernel + parts.get("early", 0.0) + parts.get("fill", 0.0)
    wall = fw_ns + parts["stub+memblock"] + wall_k + parts.get("early", 0.0) + parts.get("fill", 0.0)
    return BootCost(name, costs.name, float(wall), float(cpu), nbytes, threads, bound, parts,
                    {k: int(v) for k, v in zip(C.CALL_KIND_NAMES, calls) if v})
