"""Helpers for the replay tests: tiny memory layouts and a deliberately simple reference buddy."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from replay.model.layout import MemoryLayout, NodeLayout, ZoneLayout


def tiny_layout(pages: int = 4096, *, zones: tuple[tuple[str, int, int], ...] | None = None, cpus: int = 2,
                high: int = 64, batch: int = 8, max_page_order: int = 10) -> MemoryLayout:
    """A single-node layout; ``zones`` = ((name, start_pfn, end_pfn), ...), default one Normal zone [0, pages)."""
    zones = zones or (("Normal", 0, pages),)
    zl = []
    for idx, (name, a, b) in enumerate(zones):
        zl.append(ZoneLayout(node=0, name=name, zone_idx=idx, zone_start_pfn=a, spanned=b - a, present=b - a,
                             managed=b - a, wmark_min=0, wmark_low=0, wmark_high=0,
                             pcp_cpus=tuple(range(cpus)), pcp_count=(0,) * cpus, pcp_high=(high,) * cpus,
                             pcp_batch=(batch,) * cpus))
    lo, hi = zones[0][1], zones[-1][2]
    node = NodeLayout(node=0, start_pfn=lo, end_pfn=hi, spanned=hi - lo, present=hi - lo, managed=hi - lo,
                      zone_indices=tuple(range(len(zl))))
    return MemoryLayout(nodes=(node,), zones=tuple(zl), max_page_order=max_page_order, nr_cpus=cpus,
                        cpu_ids=tuple(range(cpus)), ram_ranges=((lo, hi),))


@dataclass
class RefBuddy:
    """A set-based buddy allocator: free blocks as {(pfn, order)}, merged eagerly on free.

    Deliberately simple (no lists, no migratetypes): it only knows which blocks are free.
    """

    start: int
    end: int
    max_order: int
    free: set[tuple[int, int]] = field(default_factory=set)

    @classmethod
    def full(cls, start: int, end: int, max_order: int) -> "RefBuddy":
        rb = cls(start, end, max_order)
        p = start
        while p < end:
            o = max_order
            while o > 0 and (p % (1 << o) or p + (1 << o) > end):
                o -= 1
            rb.free.add((p, o))
            p += 1 << o
        return rb

    def free_pages(self) -> int:
        return sum(1 << o for _, o in self.free)

    def smallest(self, order: int) -> tuple[int, int] | None:
        cands = [b for b in self.free if b[1] >= order]
        return min(cands, key=lambda b: (b[1], b[0])) if cands else None

    def take(self, pfn: int, order: int) -> None:
        """Remove the order-``order`` block at ``pfn`` from a containing free block (splitting it)."""
        for (h, o) in list(self.free):
            if h <= pfn < h + (1 << o) and o >= order:
                self.free.remove((h, o))
                while o > order:
                    o -= 1
                    half = 1 << o
                    if pfn >= h + half:
                        self.free.add((h, o))
                        h += half
                    else:
                        self.free.add((h + half, o))
                return
        raise AssertionError(f"block {pfn}/{order} not free")

    def give(self, pfn: int, order: int) -> None:
        while order < self.max_order:
            b = pfn ^ (1 << order)
            if (b, order) not in self.free or not (self.start <= b < self.end):
                break
            self.free.remove((b, order))
            pfn &= b
            order += 1
        self.free.add((pfn, order))


def replay_digest(trace: str, mode: str, snapshot: str | None = None) -> dict[str, str]:
    """Replay ``trace`` and hash every output array and the final model state (for cross-checks)."""
    import hashlib

    import numpy as np

    from parsers.api import load_events
    from replay.model.engine import replay
    from replay.model.layout import load_snapshot

    table, _ = load_events(trace)
    snap = load_snapshot(snapshot) if snapshot else None
    layout = snap if snap is not None else tiny_layout_for(table)
    out = replay(table, layout, mode=mode, snapshot=snap, check_every=5000)
    res = {}
    arrays = {"anom": out.out_anom, "sec": out.out_sec, "zone": out.out_zone, "pfn": out.out_pfn, "acount": out.acount}
    arrays.update({f"st.{k}": np.asarray(v) for k, v in out.state._asdict().items()})
    n = out.n_sections
    arrays.update({f"sec.{k}": np.asarray(v)[:n] for k, v in out.sections._asdict().items()
                   if k not in ("n", "cur", "cur_kind", "cur_order", "cur_mt", "cur_zl")})
    for k, v in sorted(arrays.items()):
        res[k] = hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest()
    res["invariants_ok"] = str(all(r["ok"] for r in out.invariant_reports))
    return res


def tiny_layout_for(table: "object") -> MemoryLayout:
    """An inferred x86-64 layout covering the trace's pfns (no snapshot)."""
    import numpy as np

    from replay.model.layout_x86 import infer_layout

    pfn = np.asarray(table.column("pfn").drop_null().to_numpy(), np.int64)  # type: ignore[attr-defined]
    pfn = pfn[pfn > 0]
    cpus = int(np.asarray(table.column("cpu").to_numpy()).max()) + 1  # type: ignore[attr-defined]
    return infer_layout(int(pfn.min()), int(pfn.max()), nr_cpus=cpus)


def every_preset_on_a_generated_trace() -> tuple[Any, Any, list[Any], Any, Any]:
    """(table, prepared exact replay, every preset policy, result context, the snp-2m costs) of a
    generated boot trace in an 8 GiB layout: above the 4 GiB the firmware accepts, memory is
    unaccepted and the policies act."""
    from replay.acceptance.costs import COST_PRESETS
    from replay.pipeline.inputs import resolve_policies
    from replay.policy.prepare import prepare
    from replay.results.tables import result_context
    from tests.helpers.events import make_events
    from tests.model.test_properties import _gen_trace

    rows, _, _ = _gen_trace([(0, 3, 1, 0), (1, 1, 2, 1), (2, 0, 0, 1), (3, 0, 0, 0), (0, 4, 1, 1), (4, 2, 2, 0)] * 40)
    table = make_events(rows)
    prep = prepare(table, tiny_layout(1 << 21), mode="exact", boot=True)
    pols = resolve_policies(None, True, None)
    return table, prep, pols, result_context(table, [p.name for p in pols]), COST_PRESETS["snp-2m"]
