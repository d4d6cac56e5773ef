"""Memory layout of the replayed machine: nodes, zones, watermarks, per-CPU page list sizes.

A layout comes either from a /proc snapshot folder (:func:`load_snapshot`, assembled from the
texts :mod:`replay.model.procfs` parses) or is inferred for an x86-64 qemu guest
(:mod:`replay.model.layout_x86`).  Overrides (guest vCPU count etc.) are
``dataclasses.replace(layout, nr_cpus=8)``.  ``max_page_order`` is the highest order (10: orders
0..10), what 6.1 calls ``MAX_ORDER - 1``.

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
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from replay.model.procfs import (NODE_ZONE, PAGE_SIZE, LayoutError, check_snapshot_text, parse_buddyinfo, parse_iomem,
                                 parse_meminfo, parse_pagetypeinfo, parse_zoneinfo, read_vmstat,
                                 snapshot_error)

__all__ = [
    "DEFAULT_MAX_PAGE_ORDER", "DEFAULT_MIGRATETYPE_NAMES", "DEFAULT_PAGEBLOCK_ORDER", "MemoryLayout", "NodeLayout",
    "ZoneLayout", "assemble_layout", "layout_from_texts", "load_snapshot", "snapshot_free_counts",
]

DEFAULT_MAX_PAGE_ORDER = 10
DEFAULT_PAGEBLOCK_ORDER = 9
# migratetype_names[] of a CONFIG_CMA=n, CONFIG_MEMORY_ISOLATION=y kernel (Debian 6.1 amd64).
DEFAULT_MIGRATETYPE_NAMES = ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "Isolate")


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
        with a memmap; use ``ram_ranges`` to test for RAM.
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

    def total_present(self) -> int:
        return sum(z.present for z in self.zones)

    def total_managed(self) -> int:
        return sum(z.managed for z in self.zones)

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


# --------------------------------------------------------------------------- assembly

def _promo(fields: Mapping[str, int]) -> tuple[int, bool]:
    """WMARK_PROMO: printed by newer kernels; else ``high + tmp`` with ``tmp = high - low``
    (``__setup_per_zone_wmarks`` sets low = min + tmp, high = low + tmp, promo = high + tmp)."""
    if "promo" in fields:
        return fields["promo"], False
    hi, lo = fields.get("high", 0), fields.get("low", 0)
    return hi + (hi - lo), True


def assemble_layout(zones: list[ZoneLayout], node_stats: Mapping[int, dict[str, int]], **kw: Any
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


def _snapshot_max_page_order(buddy: Mapping[tuple[int, str], list[int]], pti: Mapping[str, Any] | None,
                             max_page_order: int | None, nm: Mapping[str, str], notes: list[str]) -> int:
    """MAX_PAGE_ORDER from the order columns of buddyinfo / pagetypeinfo (which must agree, and
    agree with an explicit ``max_page_order``), else ``max_page_order`` or the default."""
    orders_seen = {len(v) for v in buddy.values()}
    if pti and pti["nr_orders"]:
        orders_seen.add(pti["nr_orders"])
    if len(orders_seen) > 1:
        raise snapshot_error(nm["pagetypeinfo"], None, f"order columns {sorted(orders_seen)} disagree "
                             "with buddyinfo")
    if orders_seen:
        file_mpo = orders_seen.pop() - 1
        if max_page_order is not None and max_page_order != file_mpo:
            raise snapshot_error(nm["buddyinfo"], None, f"max_page_order {max_page_order} requested but "
                                 f"the snapshot has orders 0..{file_mpo}")
        return file_mpo
    if max_page_order is None:
        notes.append("no buddyinfo/pagetypeinfo: max_page_order defaulted to 10")
        return DEFAULT_MAX_PAGE_ORDER
    return max_page_order


def _check_zones_in_zoneinfo(raw: list[dict[str, Any]], buddyinfo: str | None, pti: Mapping[str, Any] | None,
                             nm: Mapping[str, str]) -> None:
    """Every zone buddyinfo and pagetypeinfo name is one of zoneinfo's."""
    known = {(z["node"], z["name"]) for z in raw}
    if buddyinfo is not None:
        for lineno, rawl in enumerate(buddyinfo.splitlines(), 1):
            m = NODE_ZONE.match(rawl.strip())
            if m and (int(m.group(1)), m.group(2)) not in known:
                raise snapshot_error(nm["buddyinfo"], lineno, f"zone {m.group(2)} of node {m.group(1)} "
                                     "is not in zoneinfo")
    if pti:
        for key in list(pti["free"]) + list(pti["blocks"]):
            if key not in known:
                raise snapshot_error(nm["pagetypeinfo"], None, f"zone {key[1]} of node {key[0]} is not "
                                     "in zoneinfo")


def _zone_layout(z: dict[str, Any], idx: int, buddy: Mapping[tuple[int, str], list[int]],
                 pti: Mapping[str, Any] | None, have_buddyinfo: bool, max_page_order: int,
                 nm: Mapping[str, str]) -> ZoneLayout:
    """One zone of ``parse_zoneinfo`` with its buddyinfo / pagetypeinfo rows; ``idx`` is its
    index among its node's zones."""
    f = z["fields"]
    key = (z["node"], z["name"])
    populated = f["present"] > 0
    start = z["start_pfn"]
    if start is None:
        if populated and f["spanned"] > 0:
            raise snapshot_error(nm["zoneinfo"], z["line"], f"populated zone {z['name']} of node "
                                 f"{z['node']} has no start_pfn line")
        start = 0  # the kernel leaves zone_start_pfn 0 for an empty zone
    promo, computed = _promo(f)
    pcps = sorted(z["pcp"], key=lambda p: p["cpu"])
    free_types = None
    if pti and key in pti["free"]:
        free_types = {mt: tuple(v) for mt, v in pti["free"][key].items()}
    return ZoneLayout(
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
            tuple([0] * (max_page_order + 1)) if have_buddyinfo and not populated
            else None),
        free_per_type=free_types,
        free_per_type_overflow=bool(pti and key in pti["overflow"]),
        blocks_per_type=dict(pti["blocks"][key]) if pti and key in pti["blocks"] else None,
        stats=dict(z["stats"]))


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
    max_page_order = _snapshot_max_page_order(buddy, pti, max_page_order, nm, notes)
    _check_zones_in_zoneinfo(raw, buddyinfo, pti, nm)
    mt_names = (pti["migratetype_names"] if pti and pti["migratetype_names"]
                else DEFAULT_MIGRATETYPE_NAMES)

    zones: list[ZoneLayout] = []
    node_stats: dict[int, dict[str, int]] = {}
    per_node_idx: Counter[int] = Counter()
    for z in raw:
        if z["node_stats"]:
            node_stats.setdefault(z["node"], {}).update(z["node_stats"])
        zones.append(_zone_layout(z, per_node_idx[z["node"]], buddy, pti, buddyinfo is not None, max_page_order, nm))
        per_node_idx[z["node"]] += 1
        if "managed" not in z["fields"]:
            notes.append(f"zone {z['name']} of node {z['node']}: no managed line, used present")
    cpus = {c for zl in zones for c in zl.pcp_cpus}
    if not cpus:
        notes.append("no pagesets in zoneinfo: nr_cpus defaulted to 1")
    ram = parse_iomem(iomem, nm["iomem"]) if iomem is not None else ()
    mem = parse_meminfo(meminfo, nm["meminfo"]) if meminfo is not None else {}
    managed_kb = sum(z.managed for z in zones) * (PAGE_SIZE >> 10)
    if "MemTotal" in mem and mem["MemTotal"] != managed_kb:  # totalram_pages() == sum managed
        notes.append(f"meminfo MemTotal {mem['MemTotal']} kB != zoneinfo managed {managed_kb} kB")
    return assemble_layout(zones, node_stats, max_page_order=max_page_order,
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
                check_snapshot_text(texts[key], str(p))  # empty, or cut short mid-line
                names[key] = str(p)
                break
        if texts[key] is None:
            if key == "zoneinfo":
                raise LayoutError(f"{d / 'zoneinfo'}: missing (a snapshot needs zoneinfo)")
            notes.append(f"{key} not found in {d}")
    read_vmstat(d)  # not part of the layout, but a damaged vmstat is named now, not after the replay
    lay = layout_from_texts(texts["zoneinfo"] or "", texts["buddyinfo"], texts["pagetypeinfo"],
                            texts["meminfo"], texts["iomem"], max_page_order=max_page_order,
                            source=f"snapshot:{d}", names=names)
    return dataclasses.replace(lay, notes=lay.notes + tuple(notes))


def snapshot_free_counts(layout: MemoryLayout) -> dict[tuple[int, str], list[int]]:
    """Free *blocks* per order (``free_area[order].nr_free``) per (node, zone name) of a snapshot.

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
