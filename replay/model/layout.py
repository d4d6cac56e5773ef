"""Memory layout of the replayed machine: nodes, zones, watermarks, per-CPU page list sizes.

A layout comes either from a /proc snapshot folder (:func:`load_snapshot`) or is inferred for an
x86-64 guest from the trace's pfn range (:func:`infer_layout`, :func:`layout_for_guest`).  The
buddy model imports this module; the public names below are stable.

Public API
----------
``LayoutError(PagereplayError, ValueError)``
    Unreadable/inconsistent snapshot input; message is ``"<file>:<line>: <what>"``.
``ZoneLayout`` (frozen)
    ``node, name, zone_idx, zone_start_pfn, spanned, present, managed, wmark_min, wmark_low,
    wmark_high, wmark_promo, promo_computed, watermark_boost, cma, nr_free_pages, protection,
    pcp_cpus, pcp_count, pcp_high, pcp_batch, pcp_stat_threshold, free_per_order,
    free_per_type, free_per_type_overflow, blocks_per_type, stats``; properties ``zone_end_pfn``,
    ``empty`` (spanned == 0), ``populated`` (present > 0), ``pcp_pages``;
    methods ``pcp_high_for(cpu)``, ``pcp_batch_for(cpu)``, ``snapshot_skew_tolerance()``.
``NodeLayout`` (frozen)
    ``node, start_pfn, end_pfn, spanned, present, managed, zone_indices, stats``.
``MemoryLayout`` (frozen)
    ``nodes, zones`` (zones sorted by pfn; empty zones last), ``max_page_order`` (10),
    ``pageblock_order`` (9), ``nr_cpus, cpu_ids, page_size, migratetype_names, ram_ranges,
    meminfo, source, notes``; properties ``nr_page_orders, pageblock_nr_pages``; methods
    ``zone_of(pfn) -> int`` (index into ``zones`` or -1; array in -> int32 array out),
    ``zones_of(pfns: np.ndarray) -> np.ndarray``, ``zone_index(node, name)``,
    ``find_zone(node, name)``, ``total_present()``, ``total_managed()``, ``total_spanned()``,
    ``ram_pages_in(start_pfn, end_pfn)``, ``zone_arrays()`` (numpy columns + pfn lookup
    tables for compiled loops), ``as_dict()``, ``to_json()``, ``from_dict(d)``, ``describe()``.
Parsers (text in, ``name`` used in error messages)
    ``parse_zoneinfo(text, name)``, ``parse_buddyinfo``, ``parse_pagetypeinfo``,
    ``parse_meminfo``, ``parse_iomem``; ``layout_from_texts(zoneinfo, buddyinfo=None,
    pagetypeinfo=None, meminfo=None, iomem=None, *, max_page_order=None, source=...)``.
``load_snapshot(path, *, max_page_order=None, iomem_path=None) -> MemoryLayout``
``infer_layout(min_pfn, max_pfn, *, guest_bytes=None, nr_cpus=None, max_page_order=10,
thp=True, watermark_scale_factor=10, page_size=4096) -> MemoryLayout``
``layout_for_guest(guest_bytes, nr_cpus, *, max_page_order=10) -> MemoryLayout``
``zone_batchsize(managed)``, ``zone_highsize(low_wmark, batch, nr_split_cpus)`` (6.1)
``snapshot_free_counts(layout) -> dict[(node, zone), list[int]]``  free *blocks* per order
``compare_free_counts(model, snapshot_layout) -> list[dict]``  per zone/order and zone totals
``free_counts_from_pages(layout, head_pfns, orders)``  a model dict from free block heads

Overrides (guest vCPU count etc.) are ``dataclasses.replace(layout, nr_cpus=8)``.
``max_page_order`` is the highest order (10: orders 0..10), what 6.1 calls ``MAX_ORDER - 1``.

Kernel versions: the traces are from Linux 6.1 and computed values follow 6.1.  Where the 6.12
source differs: (1) 6.12 prints a ``promo`` line in zoneinfo; 6.1 does not but sets
``WMARK_PROMO`` the same way, ``high + (high - low)``, computed here when absent; (2) 6.12
auto-tunes ``pcp->high`` between ``high_min`` (= 6.1's ``zone_highsize``) and ``high_max``, so
printed per-CPU ``high`` values are kept per CPU; (3) 6.12 caps ZONE_MOVABLE's min watermark
(``clamp(managed/1024, 32, 128)``) and leaves it out of ``lowmem_pages``, 6.1 treats it as
lowmem.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_MIGRATETYPE_NAMES", "PAGE_SIZE", "X86_64_ZONE_NAMES", "LayoutError", "MemoryLayout",
    "NodeLayout", "ZoneLayout", "compare_free_counts", "free_counts_from_pages", "infer_layout",
    "layout_for_guest", "layout_from_texts", "load_snapshot", "parse_buddyinfo", "parse_iomem",
    "parse_meminfo", "parse_pagetypeinfo", "parse_zoneinfo", "snapshot_free_counts",
    "zone_batchsize", "zone_highsize",
]

from replay.model.procfs import PAGE_SIZE  # noqa: E402
DEFAULT_MAX_PAGE_ORDER = 10
DEFAULT_PAGEBLOCK_ORDER = 9
# migratetype_names[] of a CONFIG_CMA=n, CONFIG_MEMORY_ISOLATION=y kernel (Debian 6.1 amd64).
DEFAULT_MIGRATETYPE_NAMES = ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "Isolate")
# enum zone_type on x86-64 with CONFIG_ZONE_DEVICE (MAX_NR_ZONES = 5).
X86_64_ZONE_NAMES = ("DMA", "DMA32", "Normal", "Movable", "Device")
# sysctl_lowmem_reserve_ratio[] defaults (mm/page_alloc.c), indexed like X86_64_ZONE_NAMES.
LOWMEM_RESERVE_RATIO = (256, 256, 32, 0, 0)


from replay.model.procfs import LayoutError, _err  # noqa: E402  (the snapshot error, raised here too)


# --------------------------------------------------------------------------- dataclasses

@dataclass(frozen=True)
class ZoneLayout:
    """One ``struct zone`` as /proc/zoneinfo (+ buddyinfo, pagetypeinfo) shows it.

    Watermarks are as zoneinfo prints them, ``wmark_pages()`` = ``zone->_watermark[WMARK_*] +
    watermark_boost`` (the boost is in ``watermark_boost``); ``wmark_promo`` is read from zoneinfo when the
    kernel prints it (``promo_computed`` False) else computed as ``high + (high - low)`` exactly
    as ``__setup_per_zone_wmarks`` sets ``WMARK_PROMO``.  ``pcp_*`` tuples are aligned with
    ``pcp_cpus`` (the online CPUs listed under ``pagesets``).  ``free_per_order[o]`` is
    ``free_area[o].nr_free`` (blocks, buddyinfo); ``free_per_type[mt][o]`` the blocks on
    ``free_area[o].free_list[mt]`` (pagetypeinfo, capped at 100000 when the kernel printed
    ``>100000``: see ``free_per_type_overflow``); ``blocks_per_type[mt]`` the pageblock count.
    """

    node: int
    name: str
    zone_idx: int
    zone_start_pfn: int
    spanned: int
    present: int
    managed: int
    wmark_min: int = 0
    wmark_low: int = 0
    wmark_high: int = 0
    wmark_promo: int = 0
    promo_computed: bool = True
    watermark_boost: int = 0
    cma: int | None = None
    nr_free_pages: int | None = None
    protection: tuple[int, ...] = ()
    pcp_cpus: tuple[int, ...] = ()
    pcp_count: tuple[int, ...] = ()
    pcp_high: tuple[int, ...] = ()
    pcp_batch: tuple[int, ...] = ()
    pcp_stat_threshold: tuple[int, ...] = ()
    free_per_order: tuple[int, ...] | None = None
    free_per_type: dict[str, tuple[int, ...]] | None = field(default=None, hash=False)
    free_per_type_overflow: bool = False
    blocks_per_type: dict[str, int] | None = field(default=None, hash=False)
    stats: dict[str, int] = field(default_factory=dict, hash=False, compare=False)

    @property
    def zone_end_pfn(self) -> int:
        """``zone_end_pfn()``: first pfn past the span."""
        return self.zone_start_pfn + self.spanned

    @property
    def empty(self) -> bool:
        """Spanned 0: the zone exists in ``node_zones[]`` but covers no pfn."""
        return self.spanned == 0

    @property
    def populated(self) -> bool:
        """``populated_zone()``: present pages != 0."""
        return self.present > 0

    @property
    def pcp_pages(self) -> int:
        """Pages held on per-CPU lists at snapshot time (not part of nr_free_pages in 6.1)."""
        return sum(self.pcp_count)

    def _per_cpu(self, values: tuple[int, ...], cpu: int, default: int) -> int:
        if cpu in self.pcp_cpus:
            return values[self.pcp_cpus.index(cpu)]
        if values:  # CPU not in the snapshot (e.g. more vCPUs overridden): the common value
            return Counter(values).most_common(1)[0][0]
        return default

    def pcp_high_for(self, cpu: int) -> int:
        """``pcp->high`` of ``cpu`` (most common value for CPUs the snapshot did not list)."""
        return self._per_cpu(self.pcp_high, cpu, 0)

    def pcp_batch_for(self, cpu: int) -> int:
        """``pcp->batch`` of ``cpu``."""
        return self._per_cpu(self.pcp_batch, cpu, 1)

    def snapshot_skew_tolerance(self) -> int:
        """Pages by which buddyinfo's sum may differ from zoneinfo's ``nr_free_pages``.

        In 6.1 pages on pcp lists are *not* in NR_FREE_PAGES (``rmqueue_bulk`` subtracts them),
        so at one instant under zone->lock the two agree exactly.  They differ because (a)
        zoneinfo prints the global counter without the per-CPU deltas, each below the CPU's
        ``stat_threshold``, and (b) the files are read one after the other, so a refill or
        drain (``batch`` pages) can land in between.  Bound: sum over CPUs of
        ``stat_threshold + batch``.
        """
        return sum(self.pcp_stat_threshold) + sum(self.pcp_batch)


@dataclass(frozen=True)
class NodeLayout:
    """One ``pg_data_t``: its pfn span and indices of its zones in ``MemoryLayout.zones``."""

    node: int
    start_pfn: int
    end_pfn: int
    spanned: int
    present: int
    managed: int
    zone_indices: tuple[int, ...]
    stats: dict[str, int] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class MemoryLayout:
    """Nodes and zones of the replayed machine (zones in pfn order, empty zones last).

    ``migratetype_names[i]`` is the kernel's ``enum migratetype`` value ``i`` (pagetypeinfo's
    column order), so CONFIG_CMA kernels have "CMA" at 4 and "Isolate" at 5.
    """

    nodes: tuple[NodeLayout, ...]
    zones: tuple[ZoneLayout, ...]
    max_page_order: int = DEFAULT_MAX_PAGE_ORDER
    pageblock_order: int = DEFAULT_PAGEBLOCK_ORDER
    nr_cpus: int = 1
    cpu_ids: tuple[int, ...] = (0,)
    page_size: int = PAGE_SIZE
    migratetype_names: tuple[str, ...] = DEFAULT_MIGRATETYPE_NAMES
    ram_ranges: tuple[tuple[int, int], ...] = ()  # [start_pfn, end_pfn) of System RAM
    meminfo: dict[str, int] = field(default_factory=dict, hash=False, compare=False)
    source: str = ""
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Disjoint segments [bounds[i], bounds[i+1]) -> zone index, built once so that zone_of
        # stays correct with gaps between zones and with overlapping spans (NUMA interleave,
        # kernelcore=mirror): the first zone in pfn order wins, a documented approximation.
        live = [(i, z) for i, z in enumerate(self.zones) if z.spanned > 0 and z.present > 0]
        pts = sorted({p for _, z in live for p in (z.zone_start_pfn, z.zone_end_pfn)})
        owner = []
        for a in pts[:-1]:
            hit = next((i for i, z in live if z.zone_start_pfn <= a < z.zone_end_pfn), -1)
            owner.append(hit)
        object.__setattr__(self, "_bounds", np.asarray(pts, dtype=np.int64))
        object.__setattr__(self, "_owner", np.asarray(owner + [-1], dtype=np.int32))

    @property
    def nr_page_orders(self) -> int:
        """``NR_PAGE_ORDERS`` = MAX_PAGE_ORDER + 1 (``MAX_ORDER`` in 6.1, which counts orders)."""
        return self.max_page_order + 1

    @property
    def pageblock_nr_pages(self) -> int:
        return 1 << self.pageblock_order

    def zones_of(self, pfns: Any) -> np.ndarray:
        """Vectorised :meth:`zone_of`: int32 array of zone indices (-1 outside every zone)."""
        p = np.asarray(pfns, dtype=np.int64)
        b: np.ndarray = self._bounds  # type: ignore[attr-defined]
        if b.size == 0:
            return np.full(p.shape, -1, dtype=np.int32)
        # owner[-1] is -1, so seg -1 (below the first bound) and the last segment both miss
        return self._owner[np.searchsorted(b, p, side="right") - 1]  # type: ignore[attr-defined]

    def zone_of(self, pfn: Any) -> Any:
        """Index into ``zones`` of the populated zone whose span holds ``pfn``, else -1.

        An array-like argument returns an int32 array (see :meth:`zones_of`).  Holes inside a
        span (``present < spanned``) still map to the zone, as ``page_zone()`` would for a pfn
        with a memmap; use :meth:`ram_pages_in` / ``ram_ranges`` to test for RAM.
        """
        if np.ndim(pfn) == 0:
            return int(self.zones_of(np.int64(pfn)))
        return self.zones_of(pfn)

    def zone_index(self, node: int, name: str) -> int:
        """Index in ``zones`` of (node, zone name), -1 if absent."""
        for i, z in enumerate(self.zones):
            if z.node == node and z.name == name:
                return i
        return -1

    def find_zone(self, node: int, name: str) -> ZoneLayout | None:
        i = self.zone_index(node, name)
        return self.zones[i] if i >= 0 else None

    def total_present(self) -> int:
        return sum(z.present for z in self.zones)

    def total_managed(self) -> int:
        return sum(z.managed for z in self.zones)

    def total_spanned(self) -> int:
        return sum(z.spanned for z in self.zones)

    def ram_pages_in(self, start_pfn: int, end_pfn: int) -> int | None:
        """System RAM pages (iomem) inside [start_pfn, end_pfn); None when iomem was absent."""
        if not self.ram_ranges:
            return None
        return sum(max(0, min(e, end_pfn) - max(s, start_pfn)) for s, e in self.ram_ranges)

    def zone_arrays(self) -> dict[str, np.ndarray]:
        """Per-zone numpy columns (index = position in ``zones``) for compiled loops, plus
        ``bounds``/``owner``: pfn ``p`` lies in zone ``owner[searchsorted(bounds, p, 'right')-1]``
        when that segment index is >= 0 (else outside every zone)."""
        cols = ("zone_start_pfn", "spanned", "present", "managed", "wmark_min", "wmark_low",
                "wmark_high", "wmark_promo", "watermark_boost", "node", "zone_idx")
        out = {c: np.array([getattr(z, c) for z in self.zones], dtype=np.int64) for c in cols}
        out["zone_end_pfn"] = out["zone_start_pfn"] + out["spanned"]
        out["pcp_high"] = np.array([max(z.pcp_high, default=0) for z in self.zones], np.int64)
        out["pcp_batch"] = np.array([max(z.pcp_batch, default=1) for z in self.zones], np.int64)
        out["bounds"], out["owner"] = self._bounds.copy(), self._owner.copy()  # type: ignore
        return out

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (for ``json.dumps`` / Parquet key-value metadata)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["nodes"] = [dataclasses.asdict(n) for n in self.nodes]
        d["zones"] = [dataclasses.asdict(z) for z in self.zones]
        d = json.loads(json.dumps(d))  # tuples -> lists, copies of the dicts
        d.update(format="pagereplay.layout/1", total_present=self.total_present(),
                 total_managed=self.total_managed())
        return d

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | str) -> MemoryLayout:
        """Inverse of :meth:`as_dict` (also accepts its JSON text)."""
        def tup(x: Any) -> Any:  # JSON lists back to (nested) tuples; dicts keep their keys
            if isinstance(x, list):
                return tuple(tup(v) for v in x)
            return {k: tup(v) for k, v in x.items()} if isinstance(x, dict) else x

        d = json.loads(d) if isinstance(d, str) else d
        zones = tuple(ZoneLayout(**{k: (dict(v) if k == "stats" else tup(v))
                                    for k, v in z.items()}) for z in d["zones"])
        nodes = tuple(NodeLayout(**{k: (dict(v) if k == "stats" else tup(v))
                                    for k, v in n.items()}) for n in d["nodes"])
        names = {f.name for f in dataclasses.fields(cls)} - {"nodes", "zones", "meminfo"}
        return cls(nodes=nodes, zones=zones, meminfo=dict(d.get("meminfo", {})),
                   **{k: tup(d[k]) for k in names if k in d})

    def describe(self) -> str:
        """A human-readable table of the zones (used to show e.g. a 256 GiB guest)."""
        mib = self.page_size / 2**20
        lines = [(f"layout {self.source}: {len(self.nodes)} node(s), {self.nr_cpus} cpu(s), "
                  f"MAX_PAGE_ORDER {self.max_page_order}, pageblock_order {self.pageblock_order}"),
                 (f"{'node':>4} {'zone':<8} {'start_pfn':>12} {'end_pfn':>12} {'spanned':>10} "
                  f"{'present':>10} {'managed':>10} {'min':>7} {'low':>7} {'high':>7} "
                  f"{'promo':>7} {'batch':>5} {'high':>6}")]
        for z in self.zones:
            lines.append(
                f"{z.node:>4} {z.name:<8} {z.zone_start_pfn:>12} {z.zone_end_pfn:>12} "
                f"{z.spanned:>10} {z.present:>10} {z.managed:>10} {z.wmark_min:>7} "
                f"{z.wmark_low:>7} {z.wmark_high:>7} {z.wmark_promo:>7} "
                f"{max(z.pcp_batch, default=0):>5} {max(z.pcp_high, default=0):>6}")
        lines.append(f"total present {self.total_present()} pages "
                     f"({self.total_present() * mib:.0f} MiB), managed {self.total_managed()}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- parsers
# the /proc text parsers live in replay.model.procfs (re-exported here, where callers have found them)
from replay.model.procfs import (_NODE_ZONE, parse_buddyinfo, parse_iomem, parse_meminfo,  # noqa: E402
                           parse_pagetypeinfo, parse_zoneinfo)


# --------------------------------------------------------------------------- assembly

def _promo(fields: Mapping[str, int]) -> tuple[int, bool]:
    """WMARK_PROMO: printed by newer kernels; else ``high + tmp`` with ``tmp = high - low``
    (``__setup_per_zone_wmarks`` sets low = min + tmp, high = low + tmp, promo = high + tmp)."""
    if "promo" in fields:
        return fields["promo"], False
    hi, lo = fields.get("high", 0), fields.get("low", 0)
    return hi + (hi - lo), True


def _assemble(zones: list[ZoneLayout], node_stats: Mapping[int, dict[str, int]], **kw: Any
              ) -> MemoryLayout:
    """Sort zones into pfn order (empty last), build NodeLayouts, return the MemoryLayout."""
    zones = sorted(zones, key=lambda z: (not z.populated or z.empty, z.zone_start_pfn,
                                         z.node, z.zone_idx))
    nodes = []
    for nid in sorted({z.node for z in zones}):
        idx = tuple(i for i, z in enumerate(zones) if z.node == nid)
        live = [zones[i] for i in idx if not zones[i].empty and zones[i].populated]
        start = min((z.zone_start_pfn for z in live), default=0)
        end = max((z.zone_end_pfn for z in live), default=0)
        nodes.append(NodeLayout(node=nid, start_pfn=start, end_pfn=end, spanned=end - start,
                                present=sum(zones[i].present for i in idx),
                                managed=sum(zones[i].managed for i in idx), zone_indices=idx,
                                stats=dict(node_stats.get(nid, {}))))
    return MemoryLayout(nodes=tuple(nodes), zones=tuple(zones), **kw)


def layout_from_texts(zoneinfo: str, buddyinfo: str | None = None,
                      pagetypeinfo: str | None = None, meminfo: str | None = None,
                      iomem: str | None = None, *, max_page_order: int | None = None,
                      source: str = "<strings>", names: Mapping[str, str] | None = None
                      ) -> MemoryLayout:
    """Build a :class:`MemoryLayout` from the texts of the /proc files (zoneinfo required).

    ``names`` maps "zoneinfo"/"buddyinfo"/... to the file names used in error messages.
    ``max_page_order`` defaults to the order columns of buddyinfo/pagetypeinfo, else 10; an
    explicit value that disagrees with the files is an error.
    """
    nm = {k: k for k in ("zoneinfo", "buddyinfo", "pagetypeinfo", "meminfo", "iomem")}
    nm.update(names or {})
    raw = parse_zoneinfo(zoneinfo, nm["zoneinfo"])
    buddy = parse_buddyinfo(buddyinfo, nm["buddyinfo"]) if buddyinfo is not None else {}
    pti = parse_pagetypeinfo(pagetypeinfo, nm["pagetypeinfo"]) if pagetypeinfo is not None \
        else None
    notes: list[str] = []

    orders_seen = {len(v) for v in buddy.values()}
    if pti and pti["nr_orders"]:
        orders_seen.add(pti["nr_orders"])
    if len(orders_seen) > 1:
        raise _err(nm["pagetypeinfo"], None, f"order columns {sorted(orders_seen)} disagree "
                   "with buddyinfo")
    if orders_seen:
        file_mpo = orders_seen.pop() - 1
        if max_page_order is not None and max_page_order != file_mpo:
            raise _err(nm["buddyinfo"], None, f"max_page_order {max_page_order} requested but "
                       f"the snapshot has orders 0..{file_mpo}")
        max_page_order = file_mpo
    elif max_page_order is None:
        max_page_order = DEFAULT_MAX_PAGE_ORDER
        notes.append("no buddyinfo/pagetypeinfo: max_page_order defaulted to 10")

    known = {(z["node"], z["name"]) for z in raw}
    if buddyinfo is not None:
        for lineno, rawl in enumerate(buddyinfo.splitlines(), 1):
            m = _NODE_ZONE.match(rawl.strip())
            if m and (int(m.group(1)), m.group(2)) not in known:
                raise _err(nm["buddyinfo"], lineno, f"zone {m.group(2)} of node {m.group(1)} "
                           "is not in zoneinfo")
    if pti:
        for key in list(pti["free"]) + list(pti["blocks"]):
            if key not in known:
                raise _err(nm["pagetypeinfo"], None, f"zone {key[1]} of node {key[0]} is not "
                           "in zoneinfo")
    mt_names = (pti["migratetype_names"] if pti and pti["migratetype_names"]
                else DEFAULT_MIGRATETYPE_NAMES)

    zones: list[ZoneLayout] = []
    node_stats: dict[int, dict[str, int]] = {}
    per_node_idx: Counter[int] = Counter()
    cpus: set[int] = set()
    for z in raw:
        f = z["fields"]
        key = (z["node"], z["name"])
        idx = per_node_idx[z["node"]]
        per_node_idx[z["node"]] += 1
        if z["node_stats"]:
            node_stats.setdefault(z["node"], {}).update(z["node_stats"])
        populated = f["present"] > 0
        start = z["start_pfn"]
        if start is None:
            if populated and f["spanned"] > 0:
                raise _err(nm["zoneinfo"], z["line"], f"populated zone {z['name']} of node "
                           f"{z['node']} has no start_pfn line")
            start = 0  # the kernel leaves zone_start_pfn 0 for an empty zone
        promo, computed = _promo(f)
        pcps = sorted(z["pcp"], key=lambda p: p["cpu"])
        cpus.update(p["cpu"] for p in pcps)
        free_types = None
        if pti and key in pti["free"]:
            free_types = {mt: tuple(v) for mt, v in pti["free"][key].items()}
        zones.append(ZoneLayout(
            node=z["node"], name=z["name"], zone_idx=idx, zone_start_pfn=start,
            spanned=f["spanned"], present=f["present"], managed=f.get("managed", f["present"]),
            wmark_min=f.get("min", 0), wmark_low=f.get("low", 0), wmark_high=f.get("high", 0),
            wmark_promo=promo, promo_computed=computed, watermark_boost=f.get("boost", 0),
            cma=f.get("cma"),
            nr_free_pages=z["stats"].get("nr_free_pages", f.get("free")),
            protection=z["protection"] or (),
            pcp_cpus=tuple(p["cpu"] for p in pcps), pcp_count=tuple(p["count"] for p in pcps),
            pcp_high=tuple(p["high"] for p in pcps), pcp_batch=tuple(p["batch"] for p in pcps),
            pcp_stat_threshold=tuple(p.get("stat_threshold", 0) for p in pcps),
            free_per_order=tuple(buddy[key]) if key in buddy else (
                tuple([0] * (max_page_order + 1)) if buddyinfo is not None and not populated
                else None),
            free_per_type=free_types,
            free_per_type_overflow=bool(pti and key in pti["overflow"]),
            blocks_per_type=dict(pti["blocks"][key]) if pti and key in pti["blocks"] else None,
            stats=dict(z["stats"])))
        if "managed" not in f:
            notes.append(f"zone {z['name']} of node {z['node']}: no managed line, used present")
    if not cpus:
        notes.append("no pagesets in zoneinfo: nr_cpus defaulted to 1")
    ram = parse_iomem(iomem, nm["iomem"]) if iomem is not None else ()
    mem = parse_meminfo(meminfo, nm["meminfo"]) if meminfo is not None else {}
    managed_kb = sum(z.managed for z in zones) * (PAGE_SIZE >> 10)
    if "MemTotal" in mem and mem["MemTotal"] != managed_kb:  # totalram_pages() == sum managed
        notes.append(f"meminfo MemTotal {mem['MemTotal']} kB != zoneinfo managed {managed_kb} kB")
    return _assemble(zones, node_stats, max_page_order=max_page_order,
                     pageblock_order=(pti["pageblock_order"] if pti and pti["pageblock_order"]
                                      is not None else DEFAULT_PAGEBLOCK_ORDER),
                     nr_cpus=len(cpus) or 1, cpu_ids=tuple(sorted(cpus)) or (0,),
                     migratetype_names=tuple(mt_names), ram_ranges=ram, meminfo=mem,
                     source=source, notes=tuple(notes))


def load_snapshot(path: str | Path, *, max_page_order: int | None = None,
                  iomem_path: str | Path | None = None) -> MemoryLayout:
    """Read a /proc snapshot folder (``proc_before/`` etc.) into a :class:`MemoryLayout`.

    ``zoneinfo`` is required; ``buddyinfo``, ``pagetypeinfo``, ``meminfo`` and ``iomem`` (or
    ``iomem.txt``) are used when present.  The traces in ../shared/traces keep ``iomem.txt``
    next to the snapshot folders, so when the folder has none the parent folder is tried too
    (or give ``iomem_path``).  Missing optional files are listed in ``layout.notes``.
    """
    d = Path(path)
    if not d.is_dir():
        raise LayoutError(f"{d}: not a snapshot folder")
    texts: dict[str, str | None] = {}
    names: dict[str, str] = {}
    notes = []
    cands = {"zoneinfo": [d / "zoneinfo", d / "zoneinfo.txt"],
             "buddyinfo": [d / "buddyinfo", d / "buddyinfo.txt"],
             "pagetypeinfo": [d / "pagetypeinfo", d / "pagetypeinfo.txt"],
             "meminfo": [d / "meminfo", d / "meminfo.txt"],
             "iomem": ([Path(iomem_path)] if iomem_path else
                       [d / "iomem", d / "iomem.txt", d.parent / "iomem.txt",
                        d.parent / "iomem"])}
    for key, paths in cands.items():
        texts[key] = None
        for p in paths:
            if p.is_file():
                try:
                    texts[key] = p.read_text(encoding="utf-8", errors="strict")
                except (OSError, UnicodeDecodeError) as e:
                    raise LayoutError(f"{p}: cannot read: {e}") from None
                names[key] = str(p)
                break
        if texts[key] is None:
            if key == "zoneinfo":
                raise LayoutError(f"{d / 'zoneinfo'}: missing (a snapshot needs zoneinfo)")
            notes.append(f"{key} not found in {d}")
    lay = layout_from_texts(texts["zoneinfo"] or "", texts["buddyinfo"], texts["pagetypeinfo"],
                            texts["meminfo"], texts["iomem"], max_page_order=max_page_order,
                            source=f"snapshot:{d}", names=names)
    return dataclasses.replace(lay, notes=lay.notes + tuple(notes))


# --------------------------------------------------------------------------- inference (6.1)

# Calibration of the reservations memblock keeps out of the buddy allocator, measured on the
# shipped Debian 6.1 4 GiB/4 vCPU guest (present - managed per zone); see infer_layout.
KERNEL_IMAGE_PAGES = 11318      # kernel text/data/bss + early allocations in DMA32
SWIOTLB_PAGES = 16384           # 64 MiB bounce buffer, allocated when RAM extends past 4 GiB
MISC_TOP_PAGES = 2543           # percpu areas, page tables... with the memmap, top zone
MEMMAP_BYTES_PER_PAGE = 64      # sizeof(struct page)
SECTION_PAGES = 1 << 15         # 128 MiB memory sections (vmemmap allocated per section)
SEABIOS_TOP_RESERVED = 47       # e820-reserved pages below the end of low RAM (bffd1000-bfffffff)
MAX_DMA_PFN = 1 << 12           # 16 MiB
MAX_DMA32_PFN = 1 << 20         # 4 GiB


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


def _ram_ranges_x86_qemu(guest_bytes: int, page_size: int, low_bytes: int | None = None
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


def infer_layout(min_pfn: int, max_pfn: int, *, guest_bytes: int | None = None,
                 nr_cpus: int | None = None, max_page_order: int = DEFAULT_MAX_PAGE_ORDER,
                 thp: bool = True, watermark_scale_factor: int = 10,
                 page_size: int = PAGE_SIZE) -> MemoryLayout:
    """Infer a single-node x86-64 qemu guest layout from the pfn range a trace touches.

    Zones: DMA [node start, 16 MiB), DMA32 [16 MiB, 4 GiB), Normal [4 GiB, end), each clipped
    to the node span (``zone_spanned_pages_in_node``); Movable and Device empty.  ``max_pfn`` is
    the highest pfn seen (inclusive); without ``guest_bytes`` the guest is taken to end at
    ``max_pfn + 1`` rounded up to a MAX_PAGE_ORDER block (plus the BIOS-reserved top pages),
    holding 3 GiB below 4 GiB when that end is past 4 GiB.  ``min_pfn`` is only checked (< 0 is an error).

    present = RAM pages of :func:`_ram_ranges_x86_qemu` in the span.  managed = present minus
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
    nr_cpus = nr_cpus or 1
    block = 1 << max_page_order
    low_bytes = None
    if guest_bytes is None:
        if max_pfn >= MAX_DMA32_PFN:  # RAM seen above 4 GiB: qemu put 3 GiB below it
            end = -(-(max_pfn + 1) // block) * block
            low_bytes = 0xC0000000
            guest_bytes = low_bytes + (end - MAX_DMA32_PFN) * page_size
        else:  # leave room for the BIOS-reserved top pages
            end = -(-(max_pfn + 1 + SEABIOS_TOP_RESERVED) // block) * block
            guest_bytes = low_bytes = end * page_size
    ram = _ram_ranges_x86_qemu(guest_bytes, page_size, low_bytes)
    if not ram:
        raise LayoutError(f"infer_layout: guest of {guest_bytes} bytes has no RAM")
    node_start, node_end = ram[0][0], ram[-1][1]
    if max_pfn >= node_end:
        raise LayoutError(f"infer_layout: pfn {max_pfn} lies past the guest's RAM "
                          f"(ends at pfn {node_end}); give a larger guest_bytes")

    def ram_in(s: int, e: int) -> int:
        return sum(max(0, min(b, e) - max(a, s)) for a, b in ram)

    bounds = [(0, MAX_DMA_PFN), (MAX_DMA_PFN, MAX_DMA32_PFN), (MAX_DMA32_PFN, 1 << 62)]
    spans = []
    for lo, hi in bounds:
        s, e = max(lo, node_start), min(hi, node_end)
        spans.append((s, e - s) if e > s else (0, 0))
    present = [ram_in(s, s + n) if n else 0 for s, n in spans]
    top = max(i for i in range(3) if present[i])
    sections = sum(1 for sec in range(node_start // SECTION_PAGES,
                                      -(-node_end // SECTION_PAGES))
                   if ram_in(sec * SECTION_PAGES, (sec + 1) * SECTION_PAGES))
    memmap = sections * SECTION_PAGES * MEMMAP_BYTES_PER_PAGE // page_size
    reserved = [ram_in(0, 0x100), 0, 0]
    reserved[1 if present[1] else top] += KERNEL_IMAGE_PAGES
    if node_end > MAX_DMA32_PFN:
        reserved[1] += SWIOTLB_PAGES
    reserved[top] += memmap + MISC_TOP_PAGES
    managed = [max(0, p - r) for p, r in zip(present, reserved)] + [0, 0]
    highmem = [False] * 5  # x86-64 has no highmem; 6.1 treats ZONE_MOVABLE as lowmem

    # init_per_zone_wmark_min -> calculate_min_free_kbytes (watermarks still 0)
    gfp_user = managed[:3]
    mfk = min(max(math.isqrt(sum(gfp_user) * (page_size >> 10) * 16), 128), 262144)
    wm = _setup_per_zone_wmarks(managed, highmem, mfk, watermark_scale_factor, page_size)
    if thp:  # khugepaged: set_recommended_min_free_kbytes
        nr_zones = sum(1 for p in present[:3] if p)
        pb = 1 << DEFAULT_PAGEBLOCK_ORDER
        rec = pb * nr_zones * 2 + pb * nr_zones * 3 * 3
        nfbp = sum(max(0, m - w[2]) for m, w in zip(gfp_user, wm))
        rec = min(rec, nfbp // 20) * (page_size >> 10)
        if rec > mfk:
            mfk = rec
            wm = _setup_per_zone_wmarks(managed, highmem, mfk, watermark_scale_factor, page_size)

    zones = []
    for i, name in enumerate(X86_64_ZONE_NAMES):
        s, n = spans[i] if i < 3 else (0, 0)
        p, m = (present[i] if i < 3 else 0), managed[i]
        # setup_per_zone_lowmem_reserve
        ratio = LOWMEM_RESERVE_RATIO[i]
        prot, acc = [], 0
        for j in range(len(X86_64_ZONE_NAMES)):
            if j > i:
                acc += managed[j]
            prot.append(0 if j <= i or not ratio or not m else acc // ratio)
        batch = zone_batchsize(m, page_size)
        high = zone_highsize(wm[i][1], batch, nr_cpus)
        cpus = tuple(range(nr_cpus)) if p else ()
        zones.append(ZoneLayout(
            node=0, name=name, zone_idx=i, zone_start_pfn=s if n else 0, spanned=n, present=p,
            managed=m, wmark_min=wm[i][0] if m else 0, wmark_low=wm[i][1] if m else 0,
            wmark_high=wm[i][2] if m else 0, wmark_promo=wm[i][3] if m else 0,
            promo_computed=True, cma=0, protection=tuple(prot), pcp_cpus=cpus,
            pcp_count=(0,) * len(cpus), pcp_high=(high,) * len(cpus),
            pcp_batch=(batch,) * len(cpus), pcp_stat_threshold=(0,) * len(cpus)))
    return _assemble(zones, {}, max_page_order=max_page_order,
                     pageblock_order=DEFAULT_PAGEBLOCK_ORDER, nr_cpus=nr_cpus,
                     cpu_ids=tuple(range(nr_cpus)), page_size=page_size, ram_ranges=ram,
                     meminfo={"MemTotal": sum(managed) * (page_size >> 10)},
                     source=f"inferred:x86_64 {guest_bytes} bytes",
                     notes=(f"min_free_kbytes {mfk}", "managed is an estimate (see infer_layout)"))


def layout_for_guest(guest_bytes: int, nr_cpus: int, *,
                     max_page_order: int = DEFAULT_MAX_PAGE_ORDER) -> MemoryLayout:
    """The inferred layout of a whole x86-64 qemu guest of ``guest_bytes`` (e.g. 256 GiB)."""
    ram = _ram_ranges_x86_qemu(guest_bytes, PAGE_SIZE)
    if not ram:
        raise LayoutError(f"layout_for_guest: guest of {guest_bytes} bytes has no RAM")
    return infer_layout(ram[0][0], ram[-1][1] - 1, guest_bytes=guest_bytes, nr_cpus=nr_cpus,
                        max_page_order=max_page_order)


# --------------------------------------------------------------------------- end-of-trace check

def snapshot_free_counts(layout: MemoryLayout) -> dict[tuple[int, str], list[int]]:
    """Free *blocks* per order (``free_area[order].nr_free``) per (node, zone name).

    From buddyinfo; else summed over migratetypes from pagetypeinfo (an error if that was
    capped at 100000).  Unpopulated zones (absent from buddyinfo) give zeros.
    """
    out: dict[tuple[int, str], list[int]] = {}
    for z in layout.zones:
        if z.free_per_order is not None:
            out[(z.node, z.name)] = list(z.free_per_order)
        elif z.free_per_type is not None:
            if z.free_per_type_overflow:
                raise LayoutError(f"{layout.source}: zone {z.name} of node {z.node}: "
                                  "pagetypeinfo counts capped at 100000 and no buddyinfo")
            out[(z.node, z.name)] = [sum(c) for c in zip(*z.free_per_type.values())]
        elif not z.populated:
            out[(z.node, z.name)] = [0] * layout.nr_page_orders
        elif out or any(y.free_per_order is not None or y.free_per_type is not None
                        for y in layout.zones):
            raise LayoutError(f"{layout.source}: populated zone {z.name} of node {z.node} has "
                              "no buddyinfo/pagetypeinfo row")
    if not out or not any(z.free_per_order is not None or z.free_per_type is not None
                          for z in layout.zones):
        raise LayoutError(f"{layout.source}: no buddyinfo or pagetypeinfo in this snapshot")
    return out


def compare_free_counts(model: Mapping[tuple[int, str], Sequence[int]],
                        snapshot_layout: MemoryLayout) -> list[dict[str, Any]]:
    """Compare the model's free blocks per (node, zone) and order with a snapshot.

    ``model`` has the same shape as :func:`snapshot_free_counts` (free blocks per order).
    Rows: ``{"node", "zone", "order", "model_blocks", "snapshot_blocks", "model_pages",
    "snapshot_pages", "diff_pages", "rel_diff"}`` for each order, then one row per zone with
    ``order`` -1 (zone total), then one with node -1, zone "ALL".  ``diff_pages`` is model minus
    snapshot; ``rel_diff`` is diff / snapshot pages (None when the snapshot has 0).  Blocks of
    orders past either side's list count as 0.
    """
    snap = snapshot_free_counts(snapshot_layout)
    keys = list(snap) + [k for k in model if k not in snap]
    rows: list[dict[str, Any]] = []
    totals: list[dict[str, Any]] = []

    def row(node: int, zone: str, order: int, mb: int | None, sb: int | None, mp: int,
            sp: int) -> dict[str, Any]:
        d = mp - sp
        return {"node": node, "zone": zone, "order": order, "model_blocks": mb,
                "snapshot_blocks": sb, "model_pages": mp, "snapshot_pages": sp,
                "diff_pages": d, "rel_diff": (d / sp) if sp else None}

    for key in keys:
        m, s = list(model.get(key, ())), snap.get(key, [])
        n = max(len(m), len(s))
        mt = st = 0
        for o in range(n):
            mb = int(m[o]) if o < len(m) else 0
            sb = int(s[o]) if o < len(s) else 0
            rows.append(row(key[0], key[1], o, mb, sb, mb << o, sb << o))
            mt, st = mt + (mb << o), st + (sb << o)
        totals.append(row(key[0], key[1], -1, None, None, mt, st))
    rows.extend(totals)
    rows.append(row(-1, "ALL", -1, None, None, sum(t["model_pages"] for t in totals),
                    sum(t["snapshot_pages"] for t in totals)))
    return rows


def free_counts_from_pages(layout: MemoryLayout, pfns: Iterable[int], orders: Iterable[int]
                           ) -> dict[tuple[int, str], list[int]]:
    """Build a :func:`compare_free_counts` model dict from free block heads and their orders."""
    out = {(z.node, z.name): [0] * layout.nr_page_orders for z in layout.zones}
    p = np.fromiter(pfns, dtype=np.int64)
    o = np.fromiter(orders, dtype=np.int64)
    zi = layout.zones_of(p)
    for z_i, order in zip(zi.tolist(), o.tolist()):
        if z_i >= 0:
            z = layout.zones[z_i]
            out[(z.node, z.name)][order] += 1
    return out
