"""The replay summary and the end-snapshot comparison.

``summary_dict`` is the JSON summary of the baseline run (events, anomalies by kind, fidelity,
lock sections, calibration, end snapshot); ``end_snapshot_report`` / ``vmstat_delta`` compare the
model's free pages with ``--end-snapshot`` (split into measured terms by ``replay.results.endcheck``).
The results tables are built and written by ``replay.results.tables`` (docs/results.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from replay.model.anomalies import ANOMALY_KINDS, counts_by_name
from replay.model.sections import SECTION_KIND_NAMES
from replay.model.engine import ReplayOutput
from replay.model.initial_state import model_zones
from replay.model.procfs import read_vmstat
from replay.model.profiles import profile_name
from replay.model.sections import Calibration
from replay.model.untraced import has_untraced, untraced_summary
from replay.model.state import C_AT_HALF, C_HALF_AT, CTR_NAMES, G_NR_ORDERS, PG_BUDDY
from replay.results.endcheck import end_check


def model_free_counts(out: ReplayOutput, layout: Any) -> dict[tuple[int, str], list[int]]:
    """Free blocks per order per (node, zone) in the model now (``compare_free_counts`` shape)."""
    st = out.state
    zones = model_zones(layout)
    n_orders = int(st.geo[G_NR_ORDERS])
    res: dict[tuple[int, str], list[int]] = {}
    heads = np.nonzero(st.pg_state == PG_BUDDY)[0]
    orders = st.pg_order[heads].astype(np.int64)
    for zi, z in enumerate(zones):
        m = (heads >= st.z_start[zi]) & (heads < st.z_end[zi])
        res[(z.node, z.name)] = np.bincount(orders[m], minlength=n_orders)[:n_orders].tolist()
    return res


def end_snapshot_report(out: ReplayOutput, layout: Any, end_layout: Any, *, before: Any = None,
                        after: Any = None) -> dict[str, Any]:
    """Model free pages per zone/order at the end against an end snapshot's buddyinfo.

    Each zone's difference is split into measured terms (initial state, pcp lists, compaction,
    untraced allocations and frees, from the snapshots' vmstat) and a residual:
    ``replay.results.endcheck.end_check``.
    """
    return end_check(out, layout, end_layout, model_free_counts(out, layout), before=before, after=after)


VMSTAT_HINTS = ("pgmigrate_success", "compact_isolated", "compact_free_scanned", "thp_split_page", "pgalloc_dma",
                "pgalloc_dma32", "pgalloc_normal", "pgfree", "nr_free_pages")


def vmstat_delta(before: str | Path | None, after: str | Path | None) -> dict[str, int]:
    """after - before of the /proc/vmstat counters that point at untraced page movements."""
    a, b = read_vmstat(before), read_vmstat(after)
    return {k: b[k] - a[k] for k in VMSTAT_HINTS if k in a and k in b}


def summary_dict(out: ReplayOutput, cal: Calibration, end: dict[str, Any] | None = None) -> dict[str, Any]:
    n = len(out.events)
    counts = counts_by_name(out.acount)
    total = int(sum(counts.values()))
    unexplained = int(sum(v for k, v in counts.items() if not _kind(k).explained))
    st = out.state
    sec_n = out.n_sections
    kinds = out.sections.kind[:sec_n]
    final = out.invariant_reports[-1] if out.invariant_reports else {}
    ctr = {name: int(st.ctr[i]) for i, name in CTR_NAMES.items()}

    def rate(a: str, b: str) -> float | None:
        return (ctr[a] / ctr[b]) if ctr[b] else None

    half = {name: int(st.ctr[i]) - int(st.ctr[C_AT_HALF + i]) for i, name in CTR_NAMES.items()}

    def rate2(a: str, b: str) -> float | None:  # over the second half of the events
        return (half[a] / half[b]) if half[b] > 0 and st.ctr[C_HALF_AT] >= 0 else None

    def causes(c: dict[str, int], agreed: str, checked: str, prefix: str) -> dict[str, Any]:
        pre, inf = c[prefix + "_disagree_pre_trace"], c[prefix + "_disagree_inferred"]
        model = c[checked] - c[agreed] - pre - inf
        traced = c[agreed] + model
        return {"pre_trace_order_unknown": pre, "untraced_path_inferred": inf, "model": model,
                "agreement_where_traced": c[agreed] / traced if traced > 0 else None}

    def by_cause(c: dict[str, int]) -> dict[str, Any]:
        return {"rmqueue_smallest": causes(c, "rmqueue_predicted", "rmqueue_checked", "rmqueue"),
                "pcp_alloc_head": causes(c, "pcp_alloc_head", "pcp_alloc_checked", "pcp_alloc"),
                "drain_tail": causes(c, "drain_tail", "drain_checked", "drain")}

    s: dict[str, Any] = {
        "mode": out.mode,
        "kernel_profile": profile_name(st.kp),
        "events_replayed": n,
        "anomalies": counts,
        "anomalies_total": total,
        "anomaly_rate": total / n if n else 0.0,
        "unexplained_anomalies": unexplained,
        "unexplained_anomaly_rate": unexplained / n if n else 0.0,
        "invariants_ok": all(r.get("ok", False) for r in out.invariant_reports),
        "invariants": {k: v for k, v in final.items()},
        "invariant_checks": len(out.invariant_reports),
        "fidelity": {
            "rmqueue_smallest_agreement": rate("rmqueue_predicted", "rmqueue_checked"),
            "pcp_alloc_took_list_head": rate("pcp_alloc_head", "pcp_alloc_checked"),
            "drain_took_list_tail": rate("drain_tail", "drain_checked"),
            "steal_ownership_agreement": rate("ownership_agree", "ownership_checked"),
            "second_half": {
                "rmqueue_smallest_agreement": rate2("rmqueue_predicted", "rmqueue_checked"),
                "pcp_alloc_took_list_head": rate2("pcp_alloc_head", "pcp_alloc_checked"),
                "drain_took_list_tail": rate2("drain_tail", "drain_checked"),
                "disagreement": by_cause(half) if st.ctr[C_HALF_AT] >= 0 else None,
            },
            "disagreement": by_cause(ctr),
        },
        "counters": ctr,
        "zones": list(out.zone_names),
        "free_pages": st.z_nr_free.tolist(),
        "pcp_pages": st.z_nr_pcp.tolist(),
        "allocated_pages": st.z_nr_alloc.tolist(),
        "initial_state": {k: v for k, v in out.initial.items() if not k.startswith("_")},
        "lock_sections": {SECTION_KIND_NAMES[k]: int(np.count_nonzero(kinds == k)) for k in SECTION_KIND_NAMES},
        "calibration": cal.as_dict(),
    }
    if out.mode == "exact" and has_untraced(out.events.ev):  # record --untraced: what the kprobe rows did
        s["kprobes"] = untraced_summary(out.events.ev, out.events.deferred, out.out_anom, out.acount,
                                        out.initial.get("_untraced_without"))
    if end is not None:
        s["end_snapshot"] = end
    return s


def _kind(name: str) -> Any:
    for k in ANOMALY_KINDS:
        if k.name == name:
            return k
    raise KeyError(name)
