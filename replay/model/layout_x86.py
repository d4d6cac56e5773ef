"""The layout of an x86-64 qemu (pc, i440fx) + SeaBIOS guest, inferred from its size or a trace's pfns.

:func:`infer_layout` builds the :class:`replay.model.layout.MemoryLayout` the kernel would: e820
RAM as qemu and SeaBIOS lay it out (:func:`ram_ranges_x86_qemu`), zones DMA / DMA32 / Normal,
``managed`` = present minus an estimate of memblock's reservations, and Linux 6.1's boot-time
watermarks, lowmem reserves and per-CPU list sizes.  :func:`layout_for_guest` is the same for a
whole guest of a given size.  The reservations are calibrated on one guest (the constants below).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from replay.model.layout import (
    DEFAULT_MAX_PAGE_ORDER,
    DEFAULT_PAGEBLOCK_ORDER,
    MemoryLayout,
    ZoneLayout,
    assemble_layout,
)
from parsers.ranges import PFN_LIMIT
from replay.model.procfs import PAGE_SIZE, LayoutError

__all__ = ["X86_64_ZONE_NAMES", "infer_layout", "layout_for_guest", "ram_ranges_x86_qemu", "zone_batchsize",
           "zone_highsize"]

# enum zone_type on x86-64 with CONFIG_ZONE_DEVICE (MAX_NR_ZONES = 5).
X86_64_ZONE_NAMES = ("DMA", "DMA32", "Normal", "Movable", "Device")
# sysctl_lowmem_reserve_ratio[] defaults (mm/page_alloc.c), indexed like X86_64_ZONE_NAMES.
LOWMEM_RESERVE_RATIO = (256, 256, 32, 0, 0)
MAX_DMA_PFN = 1 << 12           # 16 MiB
MAX_DMA32_PFN = 1 << 20         # 4 GiB
MEMMAP_BYTES_PER_PAGE = 64      # sizeof(struct page)
SECTION_PAGES = 1 << 15         # 128 MiB memory sections (vmemmap allocated per section)

# Calibration: the reservations memblock keeps out of the buddy allocator (present - managed per
# zone) and the BIOS-reserved top of low RAM, measured on the guest of the debian12-6.1-* traces:
# Debian 12, Linux 6.1, qemu pc + SeaBIOS, 4 GiB, 4 vCPUs, one node.  Other guests get the same
# figures, so their managed counts are estimates.
KERNEL_IMAGE_PAGES = 11318      # kernel text/data/bss + early allocations in DMA32
SWIOTLB_PAGES = 16384           # 64 MiB bounce buffer, allocated when RAM extends past 4 GiB
MISC_TOP_PAGES = 2543           # percpu areas, page tables... with the memmap, top zone
SEABIOS_TOP_RESERVED = 47       # e820-reserved pages below the end of low RAM (bffd1000-bfffffff)


def _rounddown_pow_of_two(x: int) -> int:
    return 1 << (x.bit_length() - 1) if x > 0 else 0


def zone_batchsize(managed: int, page_size: int = PAGE_SIZE) -> int:
    """6.1 ``zone_batchsize()`` (CONFIG_MMU), followed by ``max(1, ...)`` of its caller."""
    batch = min(managed >> 10, (1 << 20) // page_size)
    batch //= 4
    batch = max(batch, 1)
    return max(1, _rounddown_pow_of_two(batch + batch // 2) - 1)


def zone_highsize(low_wmark: int, batch: int, nr_split_cpus: int) -> int:
    """6.1 ``zone_highsize()`` with percpu_pagelist_high_fraction 0: low watermark split over
    the node's CPUs (``cpu_online`` 0 when called from ``setup_per_zone_wmarks``), at least
    ``batch * 4``.  6.12 returns this as ``high_min`` and auto-tunes up to ``high_max``."""
    return max(low_wmark // max(1, nr_split_cpus), batch << 2)


def _setup_per_zone_wmarks(managed: Sequence[int], highmem: Sequence[bool], min_free_kbytes: int,
                           wsf: int, page_size: int) -> list[tuple[int, int, int, int]]:
    """6.1 ``__setup_per_zone_wmarks``: (min, low, high, promo) per zone.

    6.1 caps only highmem zones (none on x86-64) and counts ZONE_MOVABLE as lowmem; 6.12 also
    caps ZONE_MOVABLE and leaves it out of ``lowmem_pages``.  Pass ``highmem`` True for the
    zones to cap (give Movable True to get the 6.12 behaviour).
    """
    pages_min = min_free_kbytes >> (page_size.bit_length() - 1 - 10)
    lowmem_pages = sum(m for m, hi in zip(managed, highmem) if not hi) or 1
    out = []
    for m, hi in zip(managed, highmem):
        tmp = pages_min * m // lowmem_pages
        wmin = min(max(m // 1024, 32), 128) if hi else tmp  # clamp(SWAP_CLUSTER_MAX, 128)
        tmp = max(tmp >> 2, m * wsf // 10000)  # mult_frac(managed, wsf, 10000)
        low = wmin + tmp
        high = low + tmp
        out.append((wmin, low, high, high + tmp))
    return out


def ram_ranges_x86_qemu(guest_bytes: int, page_size: int, low_bytes: int | None = None
                        ) -> tuple[tuple[int, int], ...]:
    """e820 RAM of a qemu pc (i440fx) + SeaBIOS guest, as the kernel sees it after trimming.

    Assumptions (true of the shipped traces, documented rather than general): page 0 is
    reserved by the kernel (trim_first_page), 0x9fc00-0xfffff is the EBDA/VGA/BIOS hole, the
    last 47 pages below the end of low RAM are BIOS-reserved, and qemu splits RAM at 3 GiB
    when the guest has >= 3.5 GiB (max_ram_below_4g with gigabyte_align), the rest starting at
    4 GiB; smaller guests keep all RAM below 4 GiB.  ``low_bytes`` overrides the split.
    """
    pages = guest_bytes // page_size
    if low_bytes is None:
        low_bytes = 0xC0000000 if guest_bytes >= 0xE0000000 else guest_bytes
    low_bytes = min(low_bytes, guest_bytes, 1 << 32)
    low_pages = low_bytes // page_size
    hi_pages = pages - low_pages
    ranges = [(1, min(0x9F, low_pages))]
    if low_pages > 0x100:
        ranges.append((0x100, low_pages - SEABIOS_TOP_RESERVED))
    if hi_pages > 0:
        ranges.append((MAX_DMA32_PFN, MAX_DMA32_PFN + hi_pages))
    return tuple((s, e) for s, e in ranges if e > s)


def _guest_from_pfns(max_pfn: int, block: int, page_size: int) -> tuple[int, int]:
    """(guest bytes, bytes below 4 GiB) of the smallest guest whose RAM holds ``max_pfn``: its end
    rounded up to a MAX_PAGE_ORDER block, 3 GiB below 4 GiB when that end is past 4 GiB."""
    if max_pfn >= MAX_DMA32_PFN:  # RAM seen above 4 GiB: qemu put 3 GiB below it
        end = -(-(max_pfn + 1) // block) * block
        low_bytes = 0xC0000000
        return low_bytes + (end - MAX_DMA32_PFN) * page_size, low_bytes
    # leave room for the BIOS-reserved top pages
    end = -(-(max_pfn + 1 + SEABIOS_TOP_RESERVED) // block) * block
    return end * page_size, end * page_size


def _ram_in(ram: Sequence[tuple[int, int]], s: int, e: int) -> int:
    return sum(max(0, min(b, e) - max(a, s)) for a, b in ram)


def _present_sections(ram: Sequence[tuple[int, int]], node_start: int, node_end: int) -> int:
    """Memory sections of [node_start, node_end) holding RAM, counted per RAM range (work per
    range, not per section up to the end: a section two ranges share counts once)."""
    count, last = 0, -1
    for a, b in sorted(ram):
        a, b = max(a, node_start), min(b, node_end)
        if b <= a:
            continue
        first, end = a // SECTION_PAGES, -(-b // SECTION_PAGES)
        first = max(first, last + 1)
        if end > first:
            count += end - first
            last = end - 1
    return count


def _zone_spans(node_start: int, node_end: int) -> list[tuple[int, int]]:
    """(start, spanned) of DMA, DMA32 and Normal clipped to the node (``zone_spanned_pages_in_node``)."""
    spans = []
    for lo, hi in [(0, MAX_DMA_PFN), (MAX_DMA_PFN, MAX_DMA32_PFN), (MAX_DMA32_PFN, 1 << 62)]:
        s, e = max(lo, node_start), min(hi, node_end)
        spans.append((s, e - s) if e > s else (0, 0))
    return spans


def _managed_estimate(ram: Sequence[tuple[int, int]], present: list[int], node_start: int, node_end: int,
                      page_size: int) -> list[int]:
    """managed per zone (all five): present minus memblock's reservations, calibrated as above:
    the first MiB, the kernel image in DMA32, the swiotlb when RAM extends past 4 GiB, and the
    vmemmap of each present section plus misc early allocations in the topmost zone."""
    top = max(i for i in range(3) if present[i])
    sections = _present_sections(ram, node_start, node_end)
    memmap = sections * SECTION_PAGES * MEMMAP_BYTES_PER_PAGE // page_size
    reserved = [_ram_in(ram, 0, 0x100), 0, 0]
    reserved[1 if present[1] else top] += KERNEL_IMAGE_PAGES
    if node_end > MAX_DMA32_PFN:
        reserved[1] += SWIOTLB_PAGES
    reserved[top] += memmap + MISC_TOP_PAGES
    return [max(0, p - r) for p, r in zip(present, reserved)] + [0, 0]


def _boot_watermarks(managed: list[int], present: list[int], wsf: int, thp: bool,
                     page_size: int) -> tuple[int, list[tuple[int, int, int, int]]]:
    """6.1 boot: ``init_per_zone_wmark_min`` -> ``calculate_min_free_kbytes`` and
    ``__setup_per_zone_wmarks``; then with THP khugepaged's ``set_recommended_min_free_kbytes``
    raises min_free_kbytes and recomputes.  Returns (min_free_kbytes, per-zone watermarks)."""
    highmem = [False] * 5  # x86-64 has no highmem; 6.1 treats ZONE_MOVABLE as lowmem
    gfp_user = managed[:3]
    mfk = min(max(math.isqrt(sum(gfp_user) * (page_size >> 10) * 16), 128), 262144)
    wm = _setup_per_zone_wmarks(managed, highmem, mfk, wsf, page_size)
    if thp:
        nr_zones = sum(1 for p in present[:3] if p)
        pb = 1 << DEFAULT_PAGEBLOCK_ORDER
        rec = pb * nr_zones * 2 + pb * nr_zones * 3 * 3
        nfbp = sum(max(0, m - w[2]) for m, w in zip(gfp_user, wm))
        rec = min(rec, nfbp // 20) * (page_size >> 10)
        if rec > mfk:
            mfk = rec
            wm = _setup_per_zone_wmarks(managed, highmem, mfk, wsf, page_size)
    return mfk, wm


def _zone(i: int, name: str, span: tuple[int, int], present: int, managed: list[int],
          wm: tuple[int, int, int, int], nr_cpus: int, page_size: int) -> ZoneLayout:
    """Zone ``i`` with ``setup_per_zone_lowmem_reserve`` protection and 6.1 pcp batch/high
    (all ``nr_cpus`` on this node)."""
    s, n = span
    m = managed[i]
    ratio = LOWMEM_RESERVE_RATIO[i]
    prot, acc = [], 0
    for j in range(len(X86_64_ZONE_NAMES)):
        if j > i:
            acc += managed[j]
        prot.append(0 if j <= i or not ratio or not m else acc // ratio)
    batch = zone_batchsize(m, page_size)
    high = zone_highsize(wm[1], batch, nr_cpus)
    cpus = tuple(range(nr_cpus)) if present else ()
    return ZoneLayout(
        node=0, name=name, zone_idx=i, zone_start_pfn=s if n else 0, spanned=n, present=present,
        managed=m, wmark_min=wm[0] if m else 0, wmark_low=wm[1] if m else 0,
        wmark_high=wm[2] if m else 0, wmark_promo=wm[3] if m else 0,
        promo_computed=True, cma=0, protection=tuple(prot), pcp_cpus=cpus,
        pcp_count=(0,) * len(cpus), pcp_high=(high,) * len(cpus),
        pcp_batch=(batch,) * len(cpus), pcp_stat_threshold=(0,) * len(cpus))


def infer_layout(min_pfn: int, max_pfn: int, *, guest_bytes: int | None = None,
                 nr_cpus: int | None = None, max_page_order: int = DEFAULT_MAX_PAGE_ORDER,
                 thp: bool = True, watermark_scale_factor: int = 10,
                 page_size: int = PAGE_SIZE) -> MemoryLayout:
    """Infer a single-node x86-64 qemu guest layout from the pfn range a trace touches.

    Zones: DMA [node start, 16 MiB), DMA32 [16 MiB, 4 GiB), Normal [4 GiB, end), each clipped
    to the node span (``zone_spanned_pages_in_node``); Movable and Device empty.  ``max_pfn`` is
    the highest pfn seen (inclusive); without ``guest_bytes`` the guest is taken to end at
    ``max_pfn + 1`` rounded up to a MAX_PAGE_ORDER block (plus the BIOS-reserved top pages),
    holding 3 GiB below 4 GiB when that end is past 4 GiB; a ``max_pfn`` no x86-64 machine has
    (:data:`parsers.ranges.PFN_LIMIT`) is an error (callers leave such pfns out: they are
    anomalies).  With ``guest_bytes`` the trace's pfns past its end are the replay's
    ``pfn_out_of_range`` anomalies.  ``min_pfn`` is only checked (< 0 is an error).  The work
    is per RAM range, not per page or section.

    present = RAM pages of :func:`ram_ranges_x86_qemu` in the span.  managed = present minus
    the memblock reservations, an *estimate* calibrated on the shipped 4 GiB guest: the first
    MiB (x86 reserves it since 5.13), the kernel image in DMA32, the 64 MiB swiotlb when RAM
    extends past 4 GiB (DMA32), and the vmemmap (64 bytes per page per present 128 MiB
    section) plus misc early allocations in the topmost zone (memblock allocates top-down).

    Watermarks follow the 6.1 boot sequence: ``init_per_zone_wmark_min`` sets
    min_free_kbytes = clamp(int_sqrt(lowmem_kbytes * 16), 128, 262144) and runs
    ``__setup_per_zone_wmarks``; then, with THP enabled (Debian: madvise, which counts),
    ``set_recommended_min_free_kbytes`` raises it to pageblock_nr_pages * nr_zones * (2 + 3*3)
    pages, capped at 5 % of ``nr_free_buffer_pages()``, and recomputes.  Managed counts are
    taken as final: the shipped boots where khugepaged started after the initrd was freed
    (perf, tracecmd, large) match exactly; in the others it ran earlier, with ~0.7 % less
    managed DMA32 (min 12706 against 12728: 0.2 %), as did ``setup_per_zone_lowmem_reserve``
    in every boot (protection 2926 against 2947).
    lowmem_reserve follows ``setup_per_zone_lowmem_reserve``; pcp batch/high follow 6.1
    ``zone_batchsize``/``zone_highsize`` with all ``nr_cpus`` on this node.
    """
    if min_pfn < 0 or max_pfn < min_pfn:
        raise LayoutError(f"infer_layout: bad pfn range [{min_pfn}, {max_pfn}]")
    if guest_bytes is None and max_pfn >= PFN_LIMIT:
        raise LayoutError(f"infer_layout: pfn {max_pfn:#x} lies beyond x86-64's 52-bit physical address "
                          f"space (pfn < {PFN_LIMIT:#x}): no guest has it")
    nr_cpus = nr_cpus or 1
    low_bytes = None
    if guest_bytes is None:
        guest_bytes, low_bytes = _guest_from_pfns(max_pfn, 1 << max_page_order, page_size)
    ram = ram_ranges_x86_qemu(guest_bytes, page_size, low_bytes)
    if not ram:
        raise LayoutError(f"infer_layout: guest of {guest_bytes} bytes has no RAM")
    node_start, node_end = ram[0][0], ram[-1][1]  # pfns past a given guest's end: pfn_out_of_range anomalies
    spans = _zone_spans(node_start, node_end)
    present = [_ram_in(ram, s, s + n) if n else 0 for s, n in spans]
    managed = _managed_estimate(ram, present, node_start, node_end, page_size)
    mfk, wm = _boot_watermarks(managed, present, watermark_scale_factor, thp, page_size)
    zones = [_zone(i, name, spans[i] if i < 3 else (0, 0), present[i] if i < 3 else 0, managed, wm[i], nr_cpus,
                   page_size) for i, name in enumerate(X86_64_ZONE_NAMES)]
    return assemble_layout(zones, {}, max_page_order=max_page_order,
                           pageblock_order=DEFAULT_PAGEBLOCK_ORDER, nr_cpus=nr_cpus,
                           cpu_ids=tuple(range(nr_cpus)), page_size=page_size, ram_ranges=ram,
                           meminfo={"MemTotal": sum(managed) * (page_size >> 10)},
                           source=f"inferred:x86_64 {guest_bytes} bytes",
                           notes=(f"min_free_kbytes {mfk}", "managed is an estimate (see infer_layout)"))


def layout_for_guest(guest_bytes: int, nr_cpus: int, *,
                     max_page_order: int = DEFAULT_MAX_PAGE_ORDER) -> MemoryLayout:
    """The inferred layout of a whole x86-64 qemu guest of ``guest_bytes`` (e.g. 256 GiB)."""
    ram = ram_ranges_x86_qemu(guest_bytes, PAGE_SIZE)
    if not ram:
        raise LayoutError(f"layout_for_guest: guest of {guest_bytes} bytes has no RAM")
    return infer_layout(ram[0][0], ram[-1][1] - 1, guest_bytes=guest_bytes, nr_cpus=nr_cpus,
                        max_page_order=max_page_order)
