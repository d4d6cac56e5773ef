"""Queries on a ``MemoryLayout`` that only the tests make."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from replay.model.layout import MemoryLayout, NodeLayout, ZoneLayout


def find_zone(layout: MemoryLayout, node: int, name: str) -> ZoneLayout | None:
    i = layout.zone_index(node, name)
    return layout.zones[i] if i >= 0 else None


def ram_pages_in(layout: MemoryLayout, start_pfn: int, end_pfn: int) -> int | None:
    """System RAM pages (iomem) inside [start_pfn, end_pfn); None when iomem was absent."""
    if not layout.ram_ranges:
        return None
    return sum(max(0, min(e, end_pfn) - max(s, start_pfn)) for s, e in layout.ram_ranges)


def snapshot_skew_tolerance(zone: ZoneLayout) -> int:
    """Pages by which buddyinfo's sum may differ from zoneinfo's ``nr_free_pages``.

    In 6.1 pages on pcp lists are *not* in NR_FREE_PAGES (``rmqueue_bulk`` subtracts them),
    so at one instant under zone->lock the two agree exactly.  They differ because (a)
    zoneinfo prints the global counter without the per-CPU deltas, each below the CPU's
    ``stat_threshold``, and (b) the files are read one after the other, so a refill or
    drain (``batch`` pages) can land in between.  Bound: sum over CPUs of
    ``stat_threshold + batch``.
    """
    return sum(zone.pcp_stat_threshold) + sum(zone.pcp_batch)


def layout_from_dict(d: Mapping[str, Any] | str) -> MemoryLayout:
    """Inverse of :meth:`MemoryLayout.as_dict` (also accepts its JSON text)."""
    def tup(x: Any) -> Any:  # JSON lists back to (nested) tuples; dicts keep their keys
        if isinstance(x, list):
            return tuple(tup(v) for v in x)
        return {k: tup(v) for k, v in x.items()} if isinstance(x, dict) else x

    d = json.loads(d) if isinstance(d, str) else d
    zones = tuple(ZoneLayout(**{k: (dict(v) if k == "stats" else tup(v))
                                for k, v in z.items()}) for z in d["zones"])
    nodes = tuple(NodeLayout(**{k: (dict(v) if k == "stats" else tup(v))
                                for k, v in n.items()}) for n in d["nodes"])
    names = {f.name for f in dataclasses.fields(MemoryLayout)} - {"nodes", "zones", "meminfo"}
    return MemoryLayout(nodes=nodes, zones=zones, meminfo=dict(d.get("meminfo", {})),
                        **{k: tup(d[k]) for k in names if k in d})


def free_counts_from_pages(layout: MemoryLayout, pfns: Iterable[int], orders: Iterable[int]
                           ) -> dict[tuple[int, str], list[int]]:
    """A ``compare_free_counts`` model dict from free block heads and their orders."""
    out = {(z.node, z.name): [0] * layout.nr_page_orders for z in layout.zones}
    p = np.fromiter(pfns, dtype=np.int64)
    o = np.fromiter(orders, dtype=np.int64)
    zi = layout.zones_of(p)
    for z_i, order in zip(zi.tolist(), o.tolist()):
        if z_i >= 0:
            z = layout.zones[z_i]
            out[(z.node, z.name)][order] += 1
    return out
