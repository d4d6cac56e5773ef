"""The end check: model free pages per zone/order against the end snapshot, explained.

``pagereplay replay --snapshot proc_before --end-snapshot proc_after`` compares the model's
buddy free pages at the end with ``proc_after/buddyinfo`` (issue 3, item 5 and "Fidelity
target").  A raw difference mixes the model's own error with kernel activity the trace cannot
show, so each zone's difference is split into terms measured from the two snapshots (their
``buddyinfo``, ``zoneinfo`` pcp ``count`` and ``vmstat``) and the trace, none fitted:

``initial_state``
    model free pages before the first event minus ``proc_before`` buddyinfo (the seed could not
    match the snapshot: pages the trace takes from the buddy first must start free).
``pcp_lists``
    buddyinfo does not count pcp pages (6.1 ``rmqueue_bulk`` takes them out of NR_FREE_PAGES):
    (model pcp - zoneinfo pcp ``count``) at the start minus the same at the end.
``compaction``
    ``pgmigrate_success`` (vmstat delta): every migrated page was copied into a free page that
    compaction's free scanner took out of the buddy with no tracepoint
    (``isolate_freepages_block()`` -> ``__isolate_free_page()``), while the source page was
    freed with a traced ``mm_page_free``; the model keeps the target free.  vmstat is global,
    so it is attributed to zones in proportion to the events where the trace itself shows
    compaction (``free_of_free`` / ``alloc_from_buddy`` anomalies); with no such event it stays
    unattributed (in ``all_zones`` only).
``untraced_allocations``
    ``pgalloc_<zone>`` (vmstat delta, counted in ``rmqueue()`` and ``__alloc_pages_bulk()``)
    minus the pages of traced ``mm_page_alloc`` and of the ``__alloc_pages_bulk()`` allocations
    the model inferred (at a pcp allocation below the list head, or ``free_of_pcp``) in the zone: allocations between the snapshot and the
    first event, after the last event (``perf script`` writing its output into tmpfs), or lost.
``untraced_frees``
    minus (``pgfree`` - pages of traced ``mm_page_free``): global, attributed to zones in
    proportion to their untraced allocations (the same out-of-window activity).

``residual = diff - sum(terms)`` is what the model cannot account for.  Per order only the
``initial_state`` term is known (the vmstat counters have no order); the rest of each order's
difference is reported as unattributed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from parsers.schema import Event
from replay.model.anomalies import A_ALLOC_FROM_BUDDY, A_FREE_OF_FREE, A_FREE_OF_PCP
from replay.model.initial_state import model_zones
from replay.model.layout import MemoryLayout, snapshot_free_counts
from replay.model.procfs import read_vmstat

__all__ = ["TERMS", "compare_free_counts", "end_check", "snapshot_dir", "traced_pages_per_zone"]

EV_ALLOC = int(Event.MM_PAGE_ALLOC)
EV_FREE = int(Event.MM_PAGE_FREE)

TERMS = ("initial_state", "pcp_lists", "compaction", "untraced_allocations", "untraced_frees")


def compare_free_counts(model: Mapping[tuple[int, str], Sequence[int]],
                        snapshot_layout: MemoryLayout) -> list[dict[str, Any]]:
    """Compare the model's free blocks per (node, zone) and order with a snapshot.

    ``model`` has the same shape as :func:`replay.model.layout.snapshot_free_counts` (free blocks
    per order).  Rows: ``{"node", "zone", "order", "model_blocks", "snapshot_blocks",
    "model_pages", "snapshot_pages", "diff_pages", "rel_diff"}`` for each order, then one row per
    zone with ``order`` -1 (zone total), then one with node -1, zone "ALL".  ``diff_pages`` is
    model minus snapshot; ``rel_diff`` is diff / snapshot pages (None when the snapshot has 0).
    Blocks of orders past either side's list count as 0.
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


def snapshot_dir(layout: Any) -> Path | None:
    """The folder a snapshot layout was read from (``load_snapshot`` sets ``snapshot:<dir>``)."""
    src = str(getattr(layout, "source", "") or "")
    if src.startswith("snapshot:"):
        p = Path(src[len("snapshot:"):])
        return p if p.is_dir() else None
    return None


def _share(total: int, weights: dict[str, int]) -> dict[str, int]:
    """Split ``total`` over ``weights`` (largest remainder, ties by name: deterministic)."""
    wsum = sum(max(0, w) for w in weights.values())
    if total == 0 or wsum == 0:
        return {k: 0 for k in weights}
    raw = {k: total * max(0, w) / wsum for k, w in weights.items()}
    out = {k: int(np.floor(v)) for k, v in raw.items()}
    rest = total - sum(out.values())
    for k in sorted(raw, key=lambda k: (-(raw[k] - out[k]), k))[:rest]:
        out[k] += 1
    return out


def traced_pages_per_zone(out: Any, n_zones: int) -> dict[str, np.ndarray]:
    """Pages per model zone of traced allocations, frees, inferred bulk allocations, compaction marks."""
    ea = out.events
    z = out.out_zone.astype(np.int64)
    ok = (ea.pfn >= 0) & (z >= 0)
    pages = np.left_shift(1, ea.order.astype(np.int64))

    def per_zone(mask: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
        m = mask & ok
        return np.bincount(z[m], weights=None if w is None else w[m], minlength=n_zones)[:n_zones].astype(np.int64)

    return {
        "alloc": per_zone(ea.ev == EV_ALLOC, pages),
        "free": per_zone(ea.ev == EV_FREE, pages),
        "free_all_zones": np.array([int(pages[(ea.ev == EV_FREE) & (ea.pfn >= 0)].sum())]),
        # pages the model inferred taken by __alloc_pages_bulk(): at the allocation that showed it
        # (replay.model.exact.infer_bulk_taken) or, failing that, at their free (free_of_pcp)
        "bulk": per_zone(out.out_anom == A_FREE_OF_PCP, pages) + np.asarray(out.state.z_nr_bulk[:n_zones], np.int64),
        "compaction_marks": per_zone((out.out_anom == A_FREE_OF_FREE) | (out.out_anom == A_ALLOC_FROM_BUDDY)),
    }


def _vmstat_change(before: str | Path | None, after: str | Path | None) -> dict[str, int]:
    """after - before of every counter both snapshots' vmstat have (empty unless both have one)."""
    va, vb = read_vmstat(before), read_vmstat(after)
    return {k: vb[k] - va[k] for k in va if k in vb} if va and vb else {}


@dataclass(frozen=True)
class _VmstatTerms:
    """The terms measured from the vmstat change (global counters) and their share per zone name;
    None where it was not measured (no vmstat in both snapshots, or a replay not seeded from one)."""

    migrated: int | None  # pgmigrate_success
    untraced_free_total: int | None  # pgfree - traced mm_page_free pages
    compaction: dict[str, int | None]
    untraced_allocations: dict[str, int | None]
    untraced_frees: dict[str, int | None]  # each zone's share of untraced_free_total


def _vmstat_terms(dv: dict[str, int], tr: dict[str, np.ndarray], zones: list[Any], seeded: bool) -> _VmstatTerms:
    names = [z.name for z in zones]
    have_vm = bool(dv) and seeded
    untraced_alloc: dict[str, int | None] = {}
    for zi, z in enumerate(zones):
        key = f"pgalloc_{z.name.lower()}"
        untraced_alloc[z.name] = ((dv[key] - int(tr["alloc"][zi]) - int(tr["bulk"][zi])) if have_vm and key in dv
                                  else None)
    untraced_free_total = (dv["pgfree"] - int(tr["free_all_zones"][0])) if have_vm and "pgfree" in dv else None
    migrated = dv.get("pgmigrate_success", 0) if have_vm else None
    # vmstat is global: compaction goes to the zones where the trace shows it, untraced frees to
    # the zones with untraced allocations (the same out-of-window activity)
    marks = {z.name: int(tr["compaction_marks"][zi]) for zi, z in enumerate(zones)}
    comp: dict[str, int | None] = (dict(_share(int(migrated or 0), marks)) if migrated is not None
                                   else {n: None for n in names})
    alloc_weights = {n: int(untraced_alloc[n] or 0) for n in names}
    ufree: dict[str, int | None] = (dict(_share(int(untraced_free_total), alloc_weights))
                                    if untraced_free_total is not None else {n: None for n in names})
    return _VmstatTerms(migrated, untraced_free_total, comp, untraced_alloc, ufree)


def _zone_terms(zi: int, z: Any, out: Any, end_zone: dict[tuple[int, str], Any],
                start_counts: dict[tuple[int, str], Any] | None, snap_pcp: list[int | None],
                vm: _VmstatTerms) -> dict[str, int | None]:
    """The measured terms of model zone ``zi``.  ``start_counts`` / ``snap_pcp``: the seed
    snapshot's buddyinfo per (node, zone) and pcp pages per model zone when the replay was
    seeded from one; ``end_zone``: the end snapshot's zones by (node, zone)."""
    init = out.initial
    t: dict[str, int | None] = {k: None for k in TERMS}
    if start_counts is not None and (z.node, z.name) in start_counts:
        snap0 = sum(int(c) << o for o, c in enumerate(start_counts[(z.node, z.name)]))
        t["initial_state"] = int(init["free_pages"][zi]) - snap0
        ez = end_zone.get((z.node, z.name))
        if snap_pcp[zi] is not None and ez is not None and ez.pcp_count:
            d0 = int(init["pcp_pages"][zi]) - int(snap_pcp[zi])
            d1 = int(out.state.z_nr_pcp[zi]) - ez.pcp_pages
            t["pcp_lists"] = d0 - d1
    t["compaction"] = vm.compaction.get(z.name)
    t["untraced_allocations"] = vm.untraced_allocations[z.name]
    share = vm.untraced_frees.get(z.name)
    t["untraced_frees"] = -share if share is not None else None
    return t


def _explained(r: dict[str, Any], t: dict[str, int | None]) -> dict[str, Any]:
    """A zone's (or all zones') report: the difference ``r``, the terms ``t``, what they leave."""
    explained = sum(v for v in t.values() if v is not None)
    complete = all(v is not None for v in t.values())
    diff = int(r["diff_pages"])
    snap = int(r["snapshot_pages"])
    return {
        "model_pages": int(r["model_pages"]), "snapshot_pages": snap, "diff_pages": diff,
        "rel_diff": r["rel_diff"],
        "explained": t,
        "explained_by_compaction_pages": t["compaction"],
        "explained_pages": explained if complete else None,
        "residual_pages": diff - explained if complete else None,
        "residual_rel": ((diff - explained) / snap if snap else None) if complete else None,
    }


def _all_zones(per_zone: dict[str, Any], vm: _VmstatTerms) -> dict[str, Any]:
    """All zones together: the zones' terms summed, the global vmstat terms unattributed."""
    tot_diff = sum(p["diff_pages"] for p in per_zone.values())
    tot_snap = sum(p["snapshot_pages"] for p in per_zone.values())
    tot_terms = {k: (sum(int(p["explained"][k]) for p in per_zone.values()
                         if p["explained"][k] is not None) if all(p["explained"][k] is not None
                                                                   for p in per_zone.values()) else None)
                 for k in TERMS}
    if vm.migrated is not None:
        tot_terms["compaction"] = int(vm.migrated)
    if vm.untraced_free_total is not None:
        tot_terms["untraced_frees"] = -int(vm.untraced_free_total)
    tot_complete = all(v is not None for v in tot_terms.values())
    tot_expl = sum(v for v in tot_terms.values() if v is not None)
    return {"model_pages": sum(p["model_pages"] for p in per_zone.values()), "snapshot_pages": tot_snap,
            "diff_pages": tot_diff, "rel_diff": tot_diff / tot_snap if tot_snap else None,
            "explained": tot_terms, "explained_pages": tot_expl if tot_complete else None,
            "residual_pages": tot_diff - tot_expl if tot_complete else None,
            "residual_rel": ((tot_diff - tot_expl) / tot_snap if tot_snap else None) if tot_complete else None}


def _per_order(rows: list[dict[str, Any]], names: list[str], init_blocks: Any,
               start_counts: dict[tuple[int, str], Any] | None) -> list[dict[str, Any]]:
    """The per-order rows, each with its ``initial_state`` term (the only one known per order)."""
    per_order = []
    for r in rows:
        if r["order"] < 0:
            continue
        row = dict(r)
        seed = None
        zi = names.index(r["zone"]) if r["zone"] in names else -1
        if (start_counts is not None and init_blocks is not None and zi >= 0
                and (r["node"], r["zone"]) in start_counts):
            s0 = start_counts[(r["node"], r["zone"])]
            mb = init_blocks[zi][r["order"]] if r["order"] < len(init_blocks[zi]) else 0
            sb = int(s0[r["order"]]) if r["order"] < len(s0) else 0
            seed = (int(mb) - sb) << r["order"]
        row["explained_initial_state_pages"] = seed
        row["unattributed_pages"] = r["diff_pages"] - (seed or 0)
        per_order.append(row)
    return per_order


def end_check(out: Any, layout: Any, end_layout: Any, model_counts: dict[tuple[int, str], list[int]], *,
              before: str | Path | None = None, after: str | Path | None = None) -> dict[str, Any]:
    """The end-snapshot report: per zone and order, model vs snapshot, explained terms, residual.

    ``model_counts``: the model's free blocks per order per (node, zone) now
    (``replay.results.summary.model_free_counts``).  ``before``/``after``: snapshot folders for vmstat
    (default: where ``layout``/``end_layout`` were read from; ``before`` only when the replay
    was seeded from a snapshot).
    """
    zones = model_zones(layout)
    init = out.initial
    seeded = bool(init.get("seeded_from_snapshot"))
    if before is None and seeded:
        before = snapshot_dir(layout)
    if after is None:
        after = snapshot_dir(end_layout)
    dv = _vmstat_change(before, after)
    rows = compare_free_counts(model_counts, end_layout)
    names = [z.name for z in zones]
    # the seed snapshot's buddyinfo / pcp counts, as the initial-state pass recorded them
    snap_blocks = init.get("snapshot_free_blocks_per_order")
    start_counts = ({(z.node, z.name): snap_blocks[zi] for zi, z in enumerate(zones)}
                    if seeded and snap_blocks is not None else None)
    snap_pcp = init.get("snapshot_pcp_pages") or [None] * len(zones)
    end_zone = {(z.node, z.name): z for z in end_layout.zones}
    vm = _vmstat_terms(dv, traced_pages_per_zone(out, len(zones)), zones, seeded)

    zrows = {r["zone"]: r for r in rows if r["order"] == -1 and r["node"] >= 0}
    per_zone: dict[str, Any] = {}
    for zi, z in enumerate(zones):
        r = zrows.get(z.name)
        if r is not None:
            per_zone[z.name] = _explained(r, _zone_terms(zi, z, out, end_zone, start_counts, snap_pcp, vm))

    def worst(key: str) -> float | None:
        vals = [abs(p[key]) for p in per_zone.values() if p[key] is not None and p["snapshot_pages"] > 0]
        return max(vals, default=0.0) if vals or key == "rel_diff" else None

    return {
        "per_zone": per_zone,
        "all_zones": _all_zones(per_zone, vm),
        "max_abs_rel_diff": worst("rel_diff") or 0.0,
        "max_abs_rel_residual": worst("residual_rel"),
        "within_1pct": (worst("rel_diff") or 0.0) <= 0.01,
        "residual_within_1pct": (None if worst("residual_rel") is None else worst("residual_rel") <= 0.01),
        "per_order": _per_order(rows, names, init.get("free_blocks_per_order"), start_counts),
        "vmstat_delta": {k: v for k, v in sorted(dv.items()) if v and (
            k.startswith(("compact_", "pgmigrate", "thp_", "pgalloc_")) or k in ("pgfree", "nr_free_pages"))},
        "snapshots": {"before": str(before or ""), "after": str(after or "")},
    }
