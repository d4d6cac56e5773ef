"""Tests for replay/model/layout.py, layout_x86.py and procfs.py: /proc snapshot parsing, x86-64
layout inference, free-count checks.

Measured on the shipped Debian 6.1 snapshots (11 folders): buddyinfo's page sum equals
zoneinfo's ``nr_free_pages`` exactly in 31 of 33 zones; the two exceptions differ by 63 pages
(small/proc_before Normal: one pcp ``batch``, a refill between the two reads) and 4 pages
(tracecmd/proc_before DMA32: an unfolded per-CPU vmstat delta, below ``stat_threshold``).  Pages
sitting on pcp lists (thousands here) are *not* part of the difference: 6.1's ``rmqueue_bulk``
takes them out of NR_FREE_PAGES.  The tolerance is ``tests.helpers.layout.snapshot_skew_tolerance``
(sum over CPUs of batch + stat_threshold: 348 pages for Normal).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replay.model.layout import layout_from_texts, load_snapshot, snapshot_free_counts
from replay.model.layout_x86 import infer_layout, layout_for_guest, zone_batchsize, zone_highsize
from replay.model.procfs import LayoutError, parse_buddyinfo, parse_iomem, parse_pagetypeinfo
from replay.results.endcheck import compare_free_counts
from tests.conftest import require_traces, shared_traces
from tests.helpers.layout import (find_zone, free_counts_from_pages, layout_from_dict, ram_pages_in,
                                  snapshot_skew_tolerance)

TRACES = shared_traces() or Path("/nonexistent")
ALL_SNAPSHOTS = sorted(p for p in TRACES.glob("*/proc_*") if (p / "zoneinfo").is_file())
#: the Linux 6.1 guest the constants below describe (4 GiB, 4 vCPUs, one node)
SNAPSHOTS = [p for p in ALL_SNAPSHOTS if p.parent.name.startswith("debian12-6.1-")]


def needs_traces(fn):
    """Run with the shared traces; without them skip, or fail under CI (tests.conftest)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kw):
        require_traces()
        return fn(*args, **kw)

    return wrapper
GiB = 1 << 30

# The 4 GiB qemu guest, identical in every boot (pfn spans and page counts).
REAL_ZONES = {  # name: (zone_start_pfn, spanned, present, managed, batch)
    "DMA": (1, 4095, 3998, 3840, 1),
    "DMA32": (4096, 1044480, 782289, 754587, 63),
    "Normal": (1048576, 262144, 262144, 243217, 63),
}


# --------------------------------------------------------------------------- real snapshots

@needs_traces
def test_all_snapshots_found():
    assert len(SNAPSHOTS) == 11  # 5 traces x before/after + the boot trace's proc_after_boot


@needs_traces
@pytest.mark.parametrize("snap", SNAPSHOTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_real_snapshot(snap):
    lay = load_snapshot(snap)
    assert [z.name for z in lay.zones] == ["DMA", "DMA32", "Normal", "Movable", "Device"]
    assert lay.nr_cpus == 4 and lay.cpu_ids == (0, 1, 2, 3)
    assert (lay.max_page_order, lay.pageblock_order) == (10, 9)
    # Debian 6.1: CONFIG_CMA off, CONFIG_MEMORY_ISOLATION on
    assert lay.migratetype_names == ("Unmovable", "Movable", "Reclaimable", "HighAtomic",
                                     "Isolate")
    assert len(lay.nodes) == 1 and lay.nodes[0].start_pfn == 1
    assert lay.nodes[0].end_pfn == 1310720
    assert lay.total_present() == 1048431
    for z in lay.zones[3:]:
        assert z.empty and not z.populated and z.pcp_cpus == ()
        assert lay.zone_of(z.zone_start_pfn) != lay.zones.index(z)
    for z in lay.zones[:3]:
        start, spanned, present, managed, batch = REAL_ZONES[z.name]
        assert (z.zone_start_pfn, z.spanned, z.present, z.managed) == (start, spanned, present,
                                                                       managed)
        # present == System RAM of iomem.txt (found in the parent folder) inside the span
        assert ram_pages_in(lay, z.zone_start_pfn, z.zone_end_pfn) == z.present
        # pcp: 6.1 zone_batchsize / zone_highsize (low watermark as set, i.e. without boost)
        assert z.pcp_batch == (batch,) * 4 == (zone_batchsize(z.managed),) * 4
        assert z.pcp_high == (zone_highsize(z.wmark_low - z.watermark_boost, batch, 4),) * 4
        # watermarks: low = min + tmp, high = low + tmp, promo (not printed by 6.1) = high + tmp
        tmp = z.wmark_low - z.wmark_min
        assert z.wmark_high - z.wmark_low == tmp
        assert tmp == max((z.wmark_min - z.watermark_boost) >> 2, z.managed * 10 // 10000)
        assert z.promo_computed and z.wmark_promo == z.wmark_high + tmp
        assert z.cma == 0 and len(z.protection) == 5
        # free blocks: buddyinfo vs nr_free_pages (module docstring: measured skew)
        pages = sum(n << o for o, n in enumerate(z.free_per_order))
        assert abs(pages - z.nr_free_pages) <= snapshot_skew_tolerance(z)
        assert abs(pages - z.nr_free_pages) <= 63
        # pagetypeinfo rows sum (per order) close to buddyinfo; pageblocks cover the RAM
        per_type = [sum(c) for c in zip(*z.free_per_type.values())]
        assert abs(sum(n << o for o, n in enumerate(per_type)) - pages) <= 2 * 63 * 4
        nblocks = sum(1 for pfn in range(z.zone_start_pfn, z.zone_end_pfn, 512)
                      if ram_pages_in(lay, pfn // 32768 * 32768, (pfn // 32768 + 1) * 32768))
        assert sum(z.blocks_per_type.values()) == nblocks
    dma32 = lay.zones[1]
    assert dma32.protection == (0, 0, 243217 // 256, 243217 // 256, 243217 // 256)
    assert lay.meminfo["MemTotal"] == 4006576 == lay.total_managed() * 4


@needs_traces
@pytest.mark.parametrize("snap", ALL_SNAPSHOTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_real_snapshot_is_consistent(snap):
    """Any kernel's snapshot: zones inside their nodes, present RAM as iomem says, buddyinfo
    within a pcp batch per CPU of nr_free_pages, pagetypeinfo's free counts beside buddyinfo's."""
    lay = load_snapshot(snap)
    cpus = (snap.parent / "cpuinfo.txt").read_text().count("processor\t:")
    assert lay.nr_cpus == cpus and len(lay.cpu_ids) == cpus
    assert (lay.max_page_order, lay.pageblock_order) == (10, 9)
    assert lay.total_present() > 0 and lay.nodes
    for z in lay.zones:
        node = next(n for n in lay.nodes if n.node == z.node)
        if z.empty:
            continue
        assert node.start_pfn <= z.zone_start_pfn and z.zone_end_pfn <= node.end_pfn
        assert ram_pages_in(lay, z.zone_start_pfn, z.zone_end_pfn) == z.present
        assert 0 < z.managed <= z.present
        if z.free_per_order is not None:
            pages = sum(n << o for o, n in enumerate(z.free_per_order))
            assert abs(pages - z.nr_free_pages) <= max(z.pcp_batch or (1,)) * 4 * cpus
            per_type = [sum(c) for c in zip(*z.free_per_type.values())]
            assert abs(sum(n << o for o, n in enumerate(per_type)) - pages) <= 2 * 63 * 4 * cpus


@needs_traces
def test_real_snapshot_skew_is_small():
    """The largest buddyinfo-vs-nr_free_pages difference over all snapshots is one batch."""
    diffs = []
    for snap in SNAPSHOTS:
        for z in load_snapshot(snap).zones:
            if z.free_per_order is not None:
                diffs.append(abs(sum(n << o for o, n in enumerate(z.free_per_order))
                                 - z.nr_free_pages))
    assert max(diffs) == 63 and sorted(diffs)[-2] == 4 and diffs.count(0) == len(diffs) - 2


@needs_traces
def test_snapshot_compare_with_itself_and_shifted():
    before = load_snapshot(TRACES / "debian12-6.1-small/proc_before")
    after = load_snapshot(TRACES / "debian12-6.1-small/proc_after")
    model = snapshot_free_counts(before)
    assert set(model) == {(0, n) for n in ("DMA", "DMA32", "Normal", "Movable", "Device")}
    rows = compare_free_counts(snapshot_free_counts(after), after)
    assert all(r["diff_pages"] == 0 for r in rows)
    rows = compare_free_counts(model, after)
    total = {r["zone"]: r for r in rows if r["order"] == -1}
    assert total["Normal"]["model_pages"] == 157013 and total["Normal"]["snapshot_pages"] == 156293
    assert total["Normal"]["diff_pages"] == 720
    assert total["Normal"]["rel_diff"] == pytest.approx(720 / 156293)
    assert total["ALL"]["node"] == -1 and total["ALL"]["diff_pages"] == 720
    assert total["Movable"]["rel_diff"] is None
    per_order = [r for r in rows if r["zone"] == "Normal" and r["order"] >= 0]
    assert len(per_order) == 11 and sum(r["diff_pages"] for r in per_order) == 720


@needs_traces
def test_inferred_4g_matches_real_guest():
    """infer_layout reproduces the shipped guest; watermarks match the boots whose khugepaged
    ran after initrd was freed (perf, tracecmd, large), minus their watermark boost."""
    inf = infer_layout(1, 1310719, nr_cpus=4)
    assert inf == layout_for_guest(4 * GiB, 4)  # the pfn range alone finds the 4 GiB guest
    real = load_snapshot(TRACES / "debian12-6.1-tracecmd/proc_after")
    assert inf.ram_ranges == real.ram_ranges
    for zi, zr in zip(inf.zones, real.zones):
        assert (zi.name, zi.zone_start_pfn, zi.spanned, zi.present, zi.managed) == \
            (zr.name, zr.zone_start_pfn, zr.spanned, zr.present, zr.managed)
        b = zr.watermark_boost
        assert (zi.wmark_min, zi.wmark_low, zi.wmark_high) == \
            (zr.wmark_min - b, zr.wmark_low - b, zr.wmark_high - b)
        assert (zi.pcp_high, zi.pcp_batch) == (zr.pcp_high, zr.pcp_batch)
        # lowmem_reserve ran earlier in boot, with ~0.7% less managed DMA32
        for pi, pr in zip(zi.protection, zr.protection):
            assert pi == pytest.approx(pr, rel=0.01)
    # The other boots computed watermarks before initrd was freed: within 1 %
    early = load_snapshot(TRACES / "debian12-6.1-medium/proc_before")
    for zi, zr in zip(inf.zones[:3], early.zones[:3]):
        assert zi.wmark_min == pytest.approx(zr.wmark_min, rel=0.02, abs=1)


# --------------------------------------------------------------------------- inference

def test_infer_4g_hand_checked():
    lay = layout_for_guest(4 * GiB, 4)
    dma, dma32, normal, movable, device = lay.zones
    # qemu i440fx: 3 GiB below 4 GiB (>= 3.5 GiB guest), 1 GiB from 4 GiB; page 0 reserved
    assert (dma.zone_start_pfn, dma.zone_end_pfn) == (1, 16 << 8)
    assert dma.present == (0x9F - 1) + (0x1000 - 0x100)  # 640 KiB hole to 1 MiB
    assert (dma32.zone_start_pfn, dma32.zone_end_pfn) == (4096, 1 << 20)
    assert dma32.present == (3 * GiB >> 12) - 47 - 4096
    assert (normal.zone_start_pfn, normal.spanned, normal.present) == (1 << 20, 1 << 18, 1 << 18)
    assert movable.empty and device.empty and lay.zone_of(0) == -1
    # min_free_kbytes: THP's 512 * 3 zones * 11 = 16896 pages (> int_sqrt(4006576*16) = 8006)
    assert "min_free_kbytes 67584" in lay.notes
    lowmem = 3840 + 754587 + 243217
    assert normal.wmark_min == 16896 * 243217 // lowmem == 4102
    tmp = max(4102 >> 2, 243217 * 10 // 10000)
    assert (normal.wmark_low, normal.wmark_high, normal.wmark_promo) == \
        (4102 + tmp, 4102 + 2 * tmp, 4102 + 3 * tmp)
    assert normal.pcp_batch == (63,) * 4 and normal.pcp_high == ((4102 + tmp) // 4,) * 4
    assert dma.pcp_batch == (1,) * 4 and dma.pcp_high == (80 // 4,) * 4
    assert dma.protection == (0, 754587 // 256, (754587 + 243217) // 256,
                              (754587 + 243217) // 256, (754587 + 243217) // 256)


def test_infer_256g_hand_checked():
    lay = layout_for_guest(256 * GiB, 16)
    _, dma32, normal = lay.zones[:3]
    above = 256 * GiB - 3 * GiB
    assert (normal.zone_start_pfn, normal.spanned) == (1 << 20, above >> 12) == (1048576,
                                                                                  66322432)
    assert normal.zone_end_pfn == 67371008 == lay.nodes[0].end_pfn
    assert normal.present == normal.spanned
    assert (dma32.zone_start_pfn, dma32.spanned) == (4096, (1 << 20) - 4096)
    assert lay.total_present() == 3998 + 782289 + 66322432
    assert lay.zone_of(67371007) == 2 and lay.zone_of(67371008) == -1
    # memmap: 64 B per page of the 2048 present 128 MiB sections, charged to Normal
    sections = 24 + (above >> 27)
    assert normal.managed == normal.present - sections * 512 - 2543
    assert dma32.managed == 782289 - 11318 - 16384
    # sqrt(lowmem_kb*16) = 65007 KiB < THP's 67584 KiB; Normal batch capped by 1 MiB / 4
    lowmem = sum(z.managed for z in lay.zones)
    assert "min_free_kbytes 67584" in lay.notes
    assert normal.wmark_min == 16896 * normal.managed // lowmem
    tmp = max(normal.wmark_min >> 2, normal.managed * 10 // 10000)  # scale factor wins here
    assert tmp == normal.managed // 1000 and normal.wmark_low == normal.wmark_min + tmp
    assert normal.pcp_batch == (63,) * 16
    assert normal.pcp_high == (normal.wmark_low // 16,) * 16
    assert lay.nr_cpus == 16
    text = lay.describe()
    assert "67371008" in text and "Normal" in text


def test_infer_small_guest_and_errors():
    lay = layout_for_guest(2 * GiB, 2)  # < 3.5 GiB: all RAM below 4 GiB, Normal empty
    assert lay.zones[1].zone_end_pfn == (2 * GiB >> 12) - 47
    assert [z.name for z in lay.zones if z.empty] == ["Normal", "Movable", "Device"]
    assert lay.zones[1].managed == lay.zones[1].present - 11318 - 512 * 16 - 2543
    inf = infer_layout(300, 400_000)  # no size: ends at max_pfn rounded up to 4 MiB
    assert inf.nodes[0].end_pfn == -(-400_001 // 1024) * 1024 - 47
    for top in (1023, 1024 - 47, 1024 - 48, 0xBFFFF, 0xFFFFF):  # BIOS-reserved tail fits
        assert infer_layout(1, top).nodes[0].end_pfn > top
    just_over = infer_layout(1, 1048600)  # RAM seen just past 4 GiB: 3 GiB low + 1024 pages
    assert just_over.zones[2].spanned == 1024 and just_over.zones[1].zone_end_pfn == 1 << 20
    assert just_over.zone_of(1048600) == 2 and just_over.zone_of(0xC0000) == 1  # hole: in span
    assert ram_pages_in(just_over, 0xC0000, 1 << 20) == 0
    with pytest.raises(LayoutError):
        infer_layout(10, 5)
    # a given guest ends where it ends: the trace's pfns past it are pfn_out_of_range anomalies
    assert infer_layout(1, 2_000_000, guest_bytes=4 * GiB).nodes[0].end_pfn < 2_000_000
    with pytest.raises(LayoutError, match="52-bit physical address space"):
        infer_layout(1, 0xFFFFFFFFFFFF)  # no machine has it (issue 20: this looped ~2^33 times)


def test_present_sections_per_range():
    """The memmap's section count, per RAM range, equals counting section by section."""
    from replay.model.layout_x86 import SECTION_PAGES, _present_sections, _ram_in

    for ram in (((1, 0x9F), (0x100, 0xBFFD1), (1 << 20, (1 << 20) + 12345)),
                ((5, 7), (8, 9)), ((1, SECTION_PAGES), (SECTION_PAGES, 3 * SECTION_PAGES + 1)),
                ((SECTION_PAGES * 7 + 3, SECTION_PAGES * 9),)):
        start, end = ram[0][0], ram[-1][1]
        brute = sum(1 for sec in range(start // SECTION_PAGES, -(-end // SECTION_PAGES))
                    if _ram_in(ram, sec * SECTION_PAGES, (sec + 1) * SECTION_PAGES))
        assert _present_sections(ram, start, end) == brute


def test_zone_batchsize_highsize():
    # 100000 pages: 97 // 4 = 24, rounddown_pow_of_two(24 + 12) - 1 = 31
    assert [zone_batchsize(m) for m in (0, 3840, 100_000, 754587, 10**8)] == [1, 1, 31, 63, 63]
    assert zone_highsize(81, 1, 4) == 20 and zone_highsize(10, 63, 4) == 252


# --------------------------------------------------------------------------- text variants

ZONEINFO_419 = """\
Node 0, zone      DMA
  per-node stats
      nr_inactive_anon 1
      nr_active_anon 2
  pages free     3977
        min      16
        low      20
        high     24
        spanned  4095
        present  3998
        managed  3977
        protection: (0, 2939, 3895, 3895, 3895)
      nr_free_pages 3977
      nr_zone_inactive_anon 0
  pagesets
    cpu: 0
              count: 0
              high:  0
              batch: 1
  vm stats threshold: 6
  node_unreclaimable:  0
  start_pfn:           1
Node 0, zone    DMA32
  pages free     700000
        min      11000
        low      13750
        high     16500
        spanned  1044480
        present  782288
        managed  753000
        protection: (0, 0, 956, 956, 956)
      nr_free_pages 700000
  pagesets
    cpu: 0
              count: 12
              high:  186
              batch: 31
  vm stats threshold: 30
    cpu: 1
              count: 40
              high:  186
              batch: 31
  vm stats threshold: 30
  node_unreclaimable:  0
  start_pfn:           4096
Node 0, zone   Normal
  pages free     0
        min      0
        low      0
        high     0
        spanned  0
        present  0
        managed  0
        protection: (0, 0, 0, 0, 0)
Node 0, zone  Movable
  pages free     0
        min      0
        low      0
        high     0
        spanned  0
        present  0
        managed  0
        protection: (0, 0, 0, 0, 0)
"""


def test_zoneinfo_419_without_boost_cma_promo():
    lay = layout_from_texts(ZONEINFO_419)
    dma, dma32, normal, movable = lay.zones
    assert (dma.cma, dma.watermark_boost) == (None, 0)
    assert dma32.wmark_promo == 16500 + 2750 and dma32.promo_computed
    assert dma32.pcp_high == (186, 186) and dma32.pcp_batch == (31, 31)
    assert dma32.pcp_count == (12, 40) and dma32.pcp_pages == 52
    assert dma32.pcp_stat_threshold == (30, 30) and snapshot_skew_tolerance(dma32) == 122
    assert normal.empty and movable.empty and normal.zone_start_pfn == 0
    assert lay.nodes[0].stats == {"nr_inactive_anon": 1, "nr_active_anon": 2}
    assert dma.stats["nr_zone_inactive_anon"] == 0 and dma.nr_free_pages == 3977
    assert lay.nr_cpus == 2 and lay.max_page_order == 10 and dma32.free_per_order is None
    assert any("max_page_order defaulted" in n for n in lay.notes)
    assert lay.zone_of(4095) == 0 and lay.zone_of(4096) == 1 and lay.zone_of(1 << 20) == -1
    with pytest.raises(LayoutError, match="no buddyinfo or pagetypeinfo"):
        snapshot_free_counts(lay)


def _zone(node, name, start, spanned, present, managed, cpus=(0,), high=100, batch=7,
          promo=None):
    if spanned == 0:
        return (f"Node {node}, zone {name:>8}\n  pages free     0\n        boost    0\n"
                "        min      0\n        low      0\n        high     0\n"
                "        spanned  0\n        present  0\n        managed  0\n"
                "        cma      0\n        protection: (0, 0, 0, 0, 0)\n")
    promo_line = f"        promo    {promo}\n" if promo is not None else ""
    pcp = "".join(f"    cpu: {c}\n              count: 1\n              high:  {high + c}\n"
                  f"              batch: {batch}\n  vm stats threshold: 10\n" for c in cpus)
    return (f"Node {node}, zone {name:>8}\n  pages free     {managed // 2}\n"
            "        boost    0\n        min      100\n        low      125\n"
            f"        high     150\n{promo_line}        spanned  {spanned}\n"
            f"        present  {present}\n        managed  {managed}\n        cma      0\n"
            f"        protection: (0, 0, 0, 0, 0)\n      nr_free_pages {managed // 2}\n"
            f"  pagesets\n{pcp}  node_unreclaimable:  0\n  start_pfn:           {start}\n")


def test_two_numa_nodes_with_movable_zone_and_promo_line():
    text = (_zone(0, "DMA", 1, 4095, 3998, 3840) + _zone(0, "DMA32", 4096, 1044480, 782289,
                                                         754000)
            + _zone(0, "Normal", 1 << 20, 1 << 20, 1 << 20, 1000000, promo=175)
            + _zone(0, "Movable", 0, 0, 0, 0)
            + _zone(1, "DMA", 0, 0, 0, 0) + _zone(1, "DMA32", 0, 0, 0, 0)
            + _zone(1, "Normal", 2 << 20, 1 << 19, 1 << 19, 500000, cpus=(2, 3))
            + _zone(1, "Movable", (2 << 20) + (1 << 19), 1 << 19, 1 << 19, 520000,
                    cpus=(2, 3)))
    buddy = ("Node 0, zone      DMA      1      1      1\n"
             "Node 0, zone    DMA32      1      1      1\n"
             "Node 0, zone   Normal      1      1      1\n"
             "Node 1, zone   Normal      0      0      5\n"
             "Node 1, zone  Movable      2      0      0\n")
    lay = layout_from_texts(text, buddy)
    assert lay.max_page_order == 2 and lay.nr_cpus == 3 and lay.cpu_ids == (0, 2, 3)
    assert [(z.node, z.name) for z in lay.zones[:5]] == [
        (0, "DMA"), (0, "DMA32"), (0, "Normal"), (1, "Normal"), (1, "Movable")]
    assert all(z.empty for z in lay.zones[5:])
    _, n1 = lay.nodes
    assert (n1.start_pfn, n1.end_pfn, n1.present) == (2 << 20, 3 << 20, 1 << 20)
    assert [lay.zones[i].name for i in n1.zone_indices] == ["Normal", "Movable", "DMA", "DMA32"]
    normal0 = find_zone(lay, 0, "Normal")
    assert normal0.wmark_promo == 175 and not normal0.promo_computed
    movable1 = find_zone(lay, 1, "Movable")
    assert movable1.zone_idx == 3 and movable1.pcp_high == (102, 103)
    assert movable1.pcp_high_for(3) == 103 and movable1.pcp_high_for(7) in (102, 103)
    assert movable1.pcp_batch_for(9) == 7 and find_zone(lay, 1, "DMA").free_per_order == (0,) * 3
    pfns = np.array([0, 1, 4096, (1 << 20) - 1, 1 << 20, (2 << 20) - 1, 2 << 20,
                     (2 << 20) + (1 << 19), (3 << 20) - 1, 3 << 20])
    expect = [-1, 0, 1, 1, 2, 2, 3, 4, 4, -1]
    assert lay.zone_of(pfns).tolist() == expect
    assert [lay.zone_of(int(p)) for p in pfns] == expect
    counts = snapshot_free_counts(lay)
    assert counts[(1, "Normal")] == [0, 0, 5] and counts[(1, "DMA")] == [0, 0, 0]
    model = free_counts_from_pages(lay, [2 << 20, (2 << 20) + 4], [2, 2])
    rows = compare_free_counts(model, lay)
    tot = {(r["node"], r["zone"]): r for r in rows if r["order"] == -1}
    assert tot[(1, "Normal")]["diff_pages"] == 8 - 20
    assert tot[(-1, "ALL")]["snapshot_pages"] == 7 * 3 + 20 + 2
    again = layout_from_dict(json.loads(json.dumps(lay.as_dict())))
    assert again == lay and again.zone_of(pfns).tolist() == expect


def test_pagetypeinfo_cma_column_overflow_and_mixed_blocks():
    pti = """Page block order: 9
Pages per block:  512

Free pages count per migrate type at order       0      1      2
Node    0, zone   Normal, type    Unmovable      1      0      0 
Node    0, zone   Normal, type      Movable >100000      2      0 
Node    0, zone   Normal, type  Reclaimable      0      0      0 
Node    0, zone   Normal, type   HighAtomic      0      0      0 
Node    0, zone   Normal, type          CMA      0      0      4 
Node    0, zone   Normal, type      Isolate      0      0      0 

Number of blocks type     Unmovable      Movable  Reclaimable   HighAtomic          CMA      Isolate 
Node 0, zone   Normal            3          100            1            0            8            0 
Number of mixed blocks    Unmovable      Movable  Reclaimable   HighAtomic          CMA      Isolate 
Node 0, zone   Normal            1            0            0            0            0            0 
"""
    zi = _zone(0, "Normal", 0, 1 << 17, 1 << 17, 120000)
    lay = layout_from_texts(zi, pagetypeinfo=pti)
    z = lay.zones[0]
    assert lay.migratetype_names == ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "CMA",
                                     "Isolate")
    assert z.free_per_type["Movable"] == (100000, 2, 0) and z.free_per_type_overflow
    assert z.free_per_type["CMA"] == (0, 0, 4) and z.blocks_per_type["CMA"] == 8
    assert lay.max_page_order == 2 and lay.pageblock_order == 9
    with pytest.raises(LayoutError, match="capped"):
        snapshot_free_counts(lay)
    no_cma = pti.replace(">100000", "     5")
    assert snapshot_free_counts(layout_from_texts(zi, pagetypeinfo=no_cma)) == {
        (0, "Normal"): [6, 2, 4]}


# --------------------------------------------------------------------------- malformed input

@pytest.mark.parametrize("mutate, where", [
    (lambda t: t.replace("        min      11000", "        min      eleven"), "zoneinfo:25:"),
    (lambda t: "garbage first line\n" + t, "zoneinfo:1:"),
    (lambda t: t.replace("              batch: 31\n", "", 1), "zoneinfo:34:"),
    (lambda t: t.replace("        spanned  4095\n", ""), "zoneinfo:1:"),
    (lambda t: t.replace("  start_pfn:           4096\n", ""), "zoneinfo:23:"),
    (lambda t: t.replace("protection: (0, 0, 956", "protection: (0, x, 956"), "zoneinfo:31:"),
    (lambda t: "", "no 'Node N, zone NAME'"),
])
def test_malformed_zoneinfo(mutate, where):
    with pytest.raises(LayoutError) as ei:
        layout_from_texts(mutate(ZONEINFO_419))
    assert where in str(ei.value)
    assert isinstance(ei.value, ValueError)


def test_malformed_other_files(tmp_path):
    with pytest.raises(LayoutError, match=r"^buddyinfo:2: expected a count"):
        parse_buddyinfo("Node 0, zone DMA 1 2\nNode 0, zone DMA32 1 x\n")
    with pytest.raises(LayoutError, match=r"^buddyinfo:2: 3 orders"):
        parse_buddyinfo("Node 0, zone DMA 1 2\nNode 0, zone DMA32 1 2 3\n")
    with pytest.raises(LayoutError, match=r"buddyinfo:1: zone HighMem of node 0 is not in"):
        layout_from_texts(ZONEINFO_419, "Node 0, zone HighMem 1 2\n")
    with pytest.raises(LayoutError, match=r"^pagetypeinfo:2: zone line before"):
        parse_pagetypeinfo("Page block order: 9\nNode 0, zone DMA 1 2\n")
    with pytest.raises(LayoutError, match=r"^buddyinfo:2: zone DMA of node 0 appears twice"):
        parse_buddyinfo("Node 0, zone DMA 1 2\nNode 0, zone DMA 1 2\n")
    with pytest.raises(LayoutError, match=r"^zoneinfo:64: zone DMA of node 0 appears twice"):
        layout_from_texts(ZONEINFO_419 + ZONEINFO_419)
    two = layout_from_texts(ZONEINFO_419, "Node 0, zone      DMA      1      2\n")
    with pytest.raises(LayoutError, match="populated zone DMA32 of node 0 has no buddyinfo"):
        snapshot_free_counts(two)
    with pytest.raises(LayoutError, match=r"^iomem:1: unrecognised"):
        parse_iomem("not an iomem line\n")
    with pytest.raises(LayoutError, match="max_page_order 10 requested"):
        layout_from_texts(ZONEINFO_419, "Node 0, zone DMA 1 2\n", max_page_order=10)
    (tmp_path / "snap").mkdir()
    with pytest.raises(LayoutError, match="zoneinfo: missing"):
        load_snapshot(tmp_path / "snap")
    with pytest.raises(LayoutError, match="not a snapshot folder"):
        load_snapshot(tmp_path / "nope")
    (tmp_path / "snap" / "zoneinfo").write_text(ZONEINFO_419)
    (tmp_path / "snap" / "meminfo").write_text("MemTotal: 4006576 kB\nBroken line\n")
    with pytest.raises(LayoutError) as ei:
        load_snapshot(tmp_path / "snap")
    assert str(ei.value).startswith(f"{tmp_path / 'snap' / 'meminfo'}:2: ")
    (tmp_path / "snap" / "meminfo").write_text("MemTotal: 4006576 kB\nHugePages_Total: 0\n")
    lay = load_snapshot(tmp_path / "snap")
    assert lay.meminfo == {"MemTotal": 4006576, "HugePages_Total": 0}
    assert lay.ram_ranges == () and ram_pages_in(lay, 0, 10) is None
    assert sum("not found" in n for n in lay.notes) == 3  # buddyinfo, pagetypeinfo, iomem


def test_iomem_unprivileged_and_partial_pages():
    assert parse_iomem("00000000-00000000 : System RAM\n00000000-00000000 : Reserved\n") == ()
    text = ("00001000-0009fbff : System RAM\n00100000-bffd0fff : System RAM\n"
            "  01000000-01ffffff : Kernel code\n100000000-13fffffff : System RAM\n")
    assert parse_iomem(text) == ((1, 0x9F), (0x100, 0xBFFD1), (1 << 20, 0x140000))


# --------------------------------------------------------------------------- zone_of property

@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5000), st.integers(0, 3000), st.integers(0, 1)),
                min_size=1, max_size=6),
       st.lists(st.integers(-10, 12000), min_size=1, max_size=50))
def test_zone_of_matches_brute_force(spans, pfns):
    """Zones laid end to end with gaps (some empty); zone_of agrees with a linear scan."""
    text, start = "", 0
    for i, (gap, spanned, _) in enumerate(spans):
        start += gap
        text += _zone(i, "Normal", start, spanned, spanned, spanned) if spanned else \
            _zone(i, "Normal", 0, 0, 0, 0)
        start += spanned
    lay = layout_from_texts(text)
    want = []
    for p in pfns:
        hit = [i for i, z in enumerate(lay.zones)
               if z.populated and z.zone_start_pfn <= p < z.zone_end_pfn]
        want.append(hit[0] if hit else -1)
    assert lay.zone_of(np.array(pfns, dtype=np.int64)).tolist() == want
    assert [lay.zone_of(p) for p in pfns] == want


def test_layout_is_frozen_and_replaceable():
    lay = layout_for_guest(4 * GiB, 4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        lay.nr_cpus = 8  # type: ignore[misc]
    more = dataclasses.replace(lay, nr_cpus=8)
    assert more.nr_cpus == 8 and more.zone_of(5000) == 1
    assert json.loads(lay.to_json())["total_present"] == 1048431


@pytest.mark.skipif(not Path("/proc/zoneinfo").is_file(), reason="no /proc/zoneinfo")
def test_live_proc_of_this_host():
    """Whatever kernel runs the tests (6.18 here: promo line, auto-tuned per-CPU pcp high,
    6.x's capped empty-Movable min of 32) must parse; iomem may read as zeros (unprivileged)."""
    lay = load_snapshot("/proc")
    assert lay.zones and lay.nr_cpus >= 1 and lay.total_present() > 0
    for i, z in enumerate(lay.zones):
        if z.populated:
            assert lay.zone_of(z.zone_start_pfn) == i and z.managed <= z.present <= z.spanned
            assert z.wmark_min <= z.wmark_low <= z.wmark_high <= z.wmark_promo


@settings(max_examples=80, deadline=None)
@given(st.integers(32, 1 << 20), st.integers(1, 256))
def test_inferred_layout_invariants(guest_mib, nr_cpus):
    lay = layout_for_guest(guest_mib << 20, nr_cpus)
    live = [z for z in lay.zones if not z.empty]
    assert [z.name for z in live] == ["DMA", "DMA32", "Normal"][:len(live)]
    for a, b in itertools.pairwise(live):
        assert a.zone_end_pfn <= b.zone_start_pfn
    assert lay.total_present() == sum(e - s for s, e in lay.ram_ranges)
    for i, z in enumerate(lay.zones):
        assert 0 <= z.managed <= z.present <= z.spanned
        assert z.wmark_min <= z.wmark_low <= z.wmark_high <= z.wmark_promo
        assert z.wmark_high - z.wmark_low == z.wmark_low - z.wmark_min
        if z.populated:
            assert lay.zone_of(z.zone_start_pfn) == i == lay.zone_of(z.zone_end_pfn - 1)
            assert z.present == ram_pages_in(lay, z.zone_start_pfn, z.zone_end_pfn)
            assert len(z.pcp_high) == nr_cpus and z.pcp_high[0] >= 4 * z.pcp_batch[0] >= 4
    end = lay.nodes[0].end_pfn
    assert lay.zone_of(end) == -1 and end * 4096 <= (guest_mib << 20) + (1 << 30)
