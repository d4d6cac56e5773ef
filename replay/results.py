"""Result tables of a replay and their Parquet files (deterministic bytes).

``events``        one row per input event: seq, ts_ns, cpu, event, pfn (trace), model_pfn
                  (simulate: the model's choice), order, zone, anomaly (kind name or null),
                  section (id into lock_sections or -1).
``lock_sections`` one row per zone->lock section: id, kind, cpu, owner_cpu (the CPU whose
                  pcp list a drain emptied), zone, start_ns, end_ns, blocks (events moving a
                  block), pages, fallbacks, hold_ns (modelled, see replay.sections).
``anomalies``     one row per anomalous event: seq, ts_ns, cpu, event, pfn, order, kind,
                  explained, kernel_path.
``summary``       key/value rows (section, key, value, text): the JSON summary flattened.

Same input and options give byte-identical files: no wall-clock values, fixed row order,
fixed writer options.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from parsers.schema import EVENT_NAMES
from replay.anomalies import ANOMALY_KINDS, KIND_BY_CODE, counts_by_name
from replay.engine import SECTION_KIND_NAMES, ReplayOutput
from replay.sections import Calibration, hold_times
from replay.state import CTR_NAMES, PG_BUDDY

RESULT_FILES = ("events", "lock_sections", "anomalies", "summary")


def _dict_array(codes: np.ndarray, names: list[str], null_code: int | None = None) -> pa.DictionaryArray:
    idx = pa.array(codes.astype(np.int32), pa.int32(), mask=(codes == null_code) if null_code is not None else None)
    return pa.DictionaryArray.from_arrays(idx, pa.array(names, pa.string()))


def model_free_counts(out: ReplayOutput, layout: Any) -> dict[tuple[int, str], list[int]]:
    """Free blocks per order per (node, zone) in the model now (``compare_free_counts`` shape)."""
    from replay.initial_state import model_zones

    st = out.state
    zones = model_zones(layout)
    n_orders = int(st.geo[1])
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
    ``replay.endcheck.end_check``.
    """
    from replay.endcheck import end_check

    return end_check(out, layout, end_layout, model_free_counts(out, layout), before=before, after=after)


VMSTAT_HINTS = ("pgmigrate_success", "compact_isolated", "compact_free_scanned", "thp_split_page", "pgalloc_dma",
                "pgalloc_dma32", "pgalloc_normal", "pgfree", "nr_free_pages")


def vmstat_delta(before: str | Path | None, after: str | Path | None) -> dict[str, int]:
    """after - before of the /proc/vmstat counters that point at untraced page movements."""
    def read(d: str | Path | None) -> dict[str, int]:
        if d is None:
            return {}
        p = Path(d) / "vmstat"
        if not p.is_file():
            return {}
        out = {}
        for line in p.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].lstrip("-").isdigit():
                out[parts[0]] = int(parts[1])
        return out

    a, b = read(before), read(after)
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

    s: dict[str, Any] = {
        "mode": out.mode,
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
    if end is not None:
        s["end_snapshot"] = end
    return s


def _kind(name: str) -> Any:
    for k in ANOMALY_KINDS:
        if k.name == name:
            return k
    raise KeyError(name)


def build_tables(out: ReplayOutput, cal: Calibration, summary: dict[str, Any]) -> dict[str, pa.Table]:
    ea = out.events
    kind_names = [""] + [KIND_BY_CODE[c].name if c in KIND_BY_CODE else f"kind_{c}"
                         for c in range(1, max(KIND_BY_CODE) + 1)]
    ev_codes = np.where(ea.ev < 0, 0, ea.ev).astype(np.int32)
    znames = list(out.zone_names) or ["?"]
    zone_col = pa.DictionaryArray.from_arrays(
        pa.array(np.maximum(out.out_zone, 0).astype(np.int32), pa.int32(), mask=out.out_zone < 0),
        pa.array(znames, pa.string()))
    events = pa.table({
        "seq": pa.array(ea.seq, pa.int64()),
        "ts_ns": pa.array(ea.ts, pa.int64()),
        "cpu": pa.array(ea.cpu, pa.int32()),
        "event": _dict_array(ev_codes, list(EVENT_NAMES)),
        "pfn": pa.array(ea.pfn, pa.int64(), mask=ea.pfn < 0),
        "model_pfn": pa.array(out.out_pfn, pa.int64(), mask=out.out_pfn < 0),
        "order": pa.array(ea.order, pa.int8()),
        "zone": zone_col,
        "anomaly": _dict_array(out.out_anom.astype(np.int32), kind_names, 0),
        "section": pa.array(out.out_sec, pa.int32()),
    })
    S = out.sections
    m = out.n_sections
    kinds = S.kind[:m].astype(np.int32)
    sec_names = ["none"] + [SECTION_KIND_NAMES[k] for k in range(1, max(SECTION_KIND_NAMES) + 1)]
    blocks = S.nev[:m].astype(np.int64) - S.fallbacks[:m]
    sections = pa.table({
        "section": pa.array(np.arange(m, dtype=np.int32)),
        "kind": _dict_array(kinds, sec_names),
        "cpu": pa.array(S.cpu[:m], pa.int32()),
        "owner_cpu": pa.array(S.owner[:m], pa.int32()),
        "zone": pa.DictionaryArray.from_arrays(pa.array(S.zone[:m].astype(np.int32)),
                                               pa.array(znames, pa.string())),
        "start_ns": pa.array(S.start[:m], pa.int64()),
        "end_ns": pa.array(S.end[:m], pa.int64()),
        "blocks": pa.array(blocks, pa.int64()),
        "pages": pa.array(S.pages[:m], pa.int64()),
        "fallbacks": pa.array(S.fallbacks[:m], pa.int32()),
        "hold_ns": pa.array(hold_times(kinds, S.nev[:m], S.fallbacks[:m], cal), pa.int64()),
    })
    ai = np.nonzero(out.out_anom)[0]
    codes = out.out_anom[ai].astype(np.int32)
    anomalies = pa.table({
        "seq": pa.array(ea.seq[ai], pa.int64()),
        "ts_ns": pa.array(ea.ts[ai], pa.int64()),
        "cpu": pa.array(ea.cpu[ai], pa.int32()),
        "event": _dict_array(ev_codes[ai], list(EVENT_NAMES)),
        "pfn": pa.array(ea.pfn[ai], pa.int64()),
        "order": pa.array(ea.order[ai], pa.int8()),
        "kind": _dict_array(codes, kind_names),
        "explained": pa.array([KIND_BY_CODE[int(c)].explained for c in codes], pa.bool_()),
        "kernel_path": pa.array([KIND_BY_CODE[int(c)].kernel_path for c in codes], pa.string()),
    })
    rows: list[tuple[str, str, float | None, str | None]] = []

    def flatten(prefix: str, obj: Any) -> None:
        if isinstance(obj, dict):
            for k in obj:
                flatten(f"{prefix}.{k}" if prefix else str(k), obj[k])
        elif isinstance(obj, bool):
            rows.append((prefix.split(".")[0], prefix, float(obj), None))
        elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
            rows.append((prefix.split(".")[0], prefix, float(obj), None))
        elif obj is None:
            rows.append((prefix.split(".")[0], prefix, None, None))
        else:
            rows.append((prefix.split(".")[0], prefix, None, json.dumps(obj, sort_keys=True, default=str)))

    flatten("", summary)
    summary_t = pa.table({
        "section": pa.array([r[0] for r in rows], pa.string()),
        "key": pa.array([r[1] for r in rows], pa.string()),
        "value": pa.array([r[2] for r in rows], pa.float64()),
        "text": pa.array([r[3] for r in rows], pa.string()),
    })
    return {"events": events, "lock_sections": sections, "anomalies": anomalies, "summary": summary_t}


def write_results(folder: str | Path, tables: dict[str, pa.Table], metadata: dict[str, str] | None = None) -> list[Path]:
    """Write each table to ``folder/<name>.parquet`` with fixed writer options (deterministic)."""
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    paths = []
    md = {f"pagereplay.{k}": str(v) for k, v in sorted((metadata or {}).items())}
    for name in RESULT_FILES:
        t = tables[name]
        t = t.replace_schema_metadata({**md, "pagereplay.table": name})
        p = d / f"{name}.parquet"
        pq.write_table(t, p, compression="zstd", use_dictionary=True, write_statistics=True,
                       row_group_size=1 << 20, store_schema=True)
        paths.append(p)
    return paths
