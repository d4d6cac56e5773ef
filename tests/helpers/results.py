"""A small but realistic results folder, exactly as docs/results.md specifies, for chart/report tests.

``write_fake_results(folder, seed=0)`` writes the nine Parquet tables of a multi-policy replay
(``none`` first) with the ``pagereplay.*`` key-value metadata.  Nothing here runs the replay
engine: the numbers are drawn from a seeded ``numpy`` generator so that the output side can be
built and tested independently.  The tables are consistent with each other where a reader could
check it (attribution and summary are aggregated from ``events``/``lock_sections``/... with the
same definitions the real writer uses), and they exercise the awkward cases: a policy with no
firmware calls, IRQs-off stretches over 1 ms and one over 20 s, comms with spaces and slashes,
anomalies both explained and not, more ``events`` rows than a chart may embed (5,000).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

MiB, GiB = 1 << 20, 1 << 30
PAGE = 4096
RESULTS_SCHEMA_VERSION = "1"

DEFAULT_POLICIES = ("none", "kernel-eager", "post-alloc", "list-6.6", "list-promo")

# name -> (probability that an allocation triggers acceptance, median firmware ns per accept,
#          holds irqs off, lock contended by the accept, boot accept)
_POLICY_MODEL: dict[str, tuple[float, float, bool, str, bool]] = {
    "none": (0.0, 0.0, False, "none", False),
    "firmware-eager": (0.0, 0.0, False, "none", False),
    "kernel-eager": (0.0, 0.0, True, "none", True),
    "post-alloc": (0.05, 40_000.0, True, "accept_global", False),
    "list-6.5": (0.01, 1_800_000.0, True, "accept_global", False),
    "list-6.6": (0.01, 1_700_000.0, True, "accepting_list", False),
    "list-promo": (0.015, 1_750_000.0, True, "accepting_list", False),
    "background": (0.003, 1_750_000.0, True, "accepting_list", False),
}

PROCESSES = (
    ("swapper/0", 0), ("systemd", 1), ("kworker/0:1", 37), ("kworker/u8:2", 55), ("systemd-udevd", 301),
    ("bash", 812), ("gcc", 1402), ("cc1", 1403), ("python3", 2001), ("Web Content", 2210), ("(sd-pam)", 930),
)
ZONES = ("DMA32", "Normal")
EVENTS = ("mm_page_alloc", "mm_page_free", "mm_page_free_batched", "mm_page_alloc_zone_locked",
          "mm_page_pcpu_drain")
ANOMALY_KINDS = (
    ("free_of_free", True, "compaction's isolate_freepages_block() / split_free_page()"),
    ("alloc_from_remote_pcp", True, "trace_mm_page_alloc() runs after the pcp list lock is dropped"),
    ("free_of_pcp", True, "__alloc_pages_bulk() takes pages off the pcp list without mm_page_alloc"),
    ("double_alloc", False, ""),
    ("pfn_out_of_range", False, ""),
)
FW_KINDS = ("tdx_accept_4k", "tdx_accept_2m", "tdx_accept_2m_failed", "tdx_mapgpa", "snp_psc", "snp_pvalidate_4k",
            "snp_pvalidate_2m", "zeroing")


def _dict_col(values: list[str] | np.ndarray, categories: list[str] | None = None) -> pa.DictionaryArray:
    """A dictionary<int32, string> column (the contract's "dictionary string"), nulls for None."""
    vals = list(values)
    cats = categories if categories is not None else sorted({v for v in vals if v is not None})
    pos = {c: i for i, c in enumerate(cats)}
    idx = pa.array([None if v is None else pos[v] for v in vals], pa.int32())
    return pa.DictionaryArray.from_arrays(idx, pa.array(cats, pa.string()))


def _layout(n_cpus: int) -> dict[str, Any]:
    """A MemoryLayout.as_dict()-shaped description of a 4 GiB, one-node guest."""
    zones = [
        {"node": 0, "name": "DMA", "zone_idx": 0, "zone_start_pfn": 1, "spanned": 4095, "present": 3998,
         "managed": 3840, "wmark_min": 8, "wmark_low": 10, "wmark_high": 12, "wmark_promo": 14},
        {"node": 0, "name": "DMA32", "zone_idx": 1, "zone_start_pfn": 4096, "spanned": 1044480,
         "present": 782288, "managed": 763632, "wmark_min": 1520, "wmark_low": 1900, "wmark_high": 2280,
         "wmark_promo": 2660},
        {"node": 0, "name": "Normal", "zone_idx": 2, "zone_start_pfn": 1048576, "spanned": 262144,
         "present": 262144, "managed": 255871, "wmark_min": 508, "wmark_low": 635, "wmark_high": 762,
         "wmark_promo": 889},
    ]
    return {
        "format": "pagereplay.layout/1", "nodes": [{"node": 0, "start_pfn": 1, "present": 1048430,
                                                    "zone_indices": [0, 1, 2]}],
        "zones": zones, "max_page_order": 10, "pageblock_order": 9, "nr_cpus": n_cpus,
        "cpu_ids": list(range(n_cpus)), "page_size": PAGE, "source": "inferred from pfns (fake)",
        "total_present": sum(z["present"] for z in zones), "total_managed": sum(z["managed"] for z in zones),
    }


def _policy_params(name: str) -> dict[str, Any]:
    trig = {"none": "none", "firmware-eager": "firmware_boot", "kernel-eager": "kernel_boot",
            "post-alloc": "post_alloc", "list-6.5": "watermark_fail", "list-6.6": "watermark_fail",
            "list-promo": "every_zone_visit", "background": "background"}.get(name, "every_zone_visit")
    return {"name": name, "description": f"fake {name} policy", "trigger": trig, "unit_bytes": 2 * MiB,
            "block_order": 10, "guard_unit": True, "held_during_call": ["irqs_off"] if name != "none" else [],
            "accept_target": "promo" if trig in ("every_zone_visit", "background") else "none",
            "kernel_ref": "mm/page_alloc.c cond_accept_memory()" if trig == "every_zone_visit" else ""}


COST_PRESET = {"name": "tdx-4k", "platform": "tdx", "host_backing": "4K",
               "description": "TDX, host maps private memory at 4K: every 2 MiB unit = failed 2M TDCALL + 512 4K",
               "cpu_ghz": 2.1, "zero_gib_s": 15.0, "accept_ceiling_gib_s": 2.25, "tdx_exit_4k_ns": 3200.0}


def _write(folder: Path, name: str, table: pa.Table, md: dict[str, str]) -> None:
    meta = {f"pagereplay.{k}".encode(): v.encode() for k, v in sorted({**md, "table": name}.items())}
    pq.write_table(table.replace_schema_metadata(meta), folder / f"{name}.parquet", compression="zstd")


def write_fake_results(folder: str | Path, *, seed: int = 0, policies: tuple[str, ...] = DEFAULT_POLICIES,
                       n_events: int = 3000, n_cpus: int = 4, span_s: float = 8.0, buckets: int = 120,
                       mode: str = "exact") -> Path:
    """Write a complete results folder (docs/results.md) to ``folder`` and return its path.

    ``policies`` must start with ``none`` (the reference of every delta).  The same seed gives the
    same tables.
    """
    if not policies or policies[0] != "none":
        raise ValueError("policies must start with 'none'")
    rng = np.random.default_rng(seed)
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    trace_name = "debian12-6.1-small/trace.txt.zst"
    sha = hashlib.sha256(f"fake-trace-{seed}".encode()).hexdigest()
    md = {
        "tool_version": "0.1.0", "schema_version": RESULTS_SCHEMA_VERSION, "input_name": trace_name,
        "input_sha256": sha, "inputs": json.dumps([{"name": trace_name, "sha256": sha, "format": "ftrace",
                                                     "compression": "zstd", "bytes": 1234567}]),
        "format": "ftrace", "kernel_version": "6.1.0-28-amd64", "mode": mode, "cost_preset": COST_PRESET["name"],
        "cost_preset_json": json.dumps(COST_PRESET, sort_keys=True),
        "policies_json": json.dumps({p: _policy_params(p) for p in policies}, sort_keys=True),
        "seed": str(seed), "layout_json": json.dumps(_layout(n_cpus), sort_keys=True),
    }

    # ---------------------------------------------------------------- the input events (shared)
    t0 = 2_000_000_000
    span = int(span_s * 1e9)
    ts = np.sort(t0 + rng.integers(0, span, n_events)).astype(np.int64)
    seq = np.arange(n_events, dtype=np.int64)
    cpu = rng.integers(0, n_cpus, n_events).astype(np.int32)
    proc_i = rng.choice(len(PROCESSES), n_events, p=np.array([3, 4, 6, 5, 3, 4, 8, 9, 5, 6, 1]) / 54)
    ev_i = rng.choice(len(EVENTS), n_events, p=[0.45, 0.3, 0.1, 0.1, 0.05])
    order = np.where(rng.random(n_events) < 0.85, 0, rng.integers(1, 11, n_events)).astype(np.int8)
    zone_i = (rng.random(n_events) < 0.3).astype(np.int64)
    pfn = rng.integers(4096, 1_310_720, n_events).astype(np.int64)
    # lock sections: runs of zone_locked / drain events on one CPU belong to one section
    is_alloc = ev_i == 0
    in_section = (ev_i == 3) | (ev_i == 4)
    anom_idx = np.sort(rng.choice(n_events, 40, replace=False))
    anom_kind = rng.choice(len(ANOMALY_KINDS), 40, p=[0.4, 0.25, 0.2, 0.1, 0.05])
    anomaly = [None] * n_events
    for i, k in zip(anom_idx, anom_kind, strict=True):
        anomaly[int(i)] = ANOMALY_KINDS[int(k)][0]

    ev_tables: list[pl.DataFrame] = []
    sec_tables: list[pl.DataFrame] = []
    fw_tables: list[pl.DataFrame] = []
    irq_tables: list[pl.DataFrame] = []
    ts_tables: list[pl.DataFrame] = []
    total_bytes = 4 * GiB
    for pol in policies:
        p_hit, fw_med, irqs, contended, boot = _POLICY_MODEL.get(pol, _POLICY_MODEL["list-promo"])
        # acceptance triggered by an allocation: a 4 MiB block (list) or the covering 2 MiB units
        hit = is_alloc & (rng.random(n_events) < p_hit)
        block = 4 * MiB if pol.startswith("list") or pol == "background" else 2 * MiB
        firmware = np.where(hit, rng.lognormal(np.log(max(fw_med, 1.0)), 0.35, n_events), 0).astype(np.int64)
        accepted = np.where(hit, block, 0).astype(np.int64)
        # sections: base zone->lock cost plus contention when acceptance lengthens other sections
        sec_id = np.full(n_events, -1, np.int32)
        sec_idx = np.nonzero(in_section | hit)[0]
        sec_id[sec_idx] = np.arange(len(sec_idx), dtype=np.int32)
        hold = np.zeros(n_events, np.int64)
        hold[sec_idx] = rng.lognormal(np.log(2500), 0.8, len(sec_idx)).astype(np.int64)
        wait = np.zeros(n_events, np.int64)
        contend_p = 0.02 if pol == "none" else 0.02 + 25 * p_hit
        cont = rng.random(len(sec_idx)) < contend_p
        wscale = 3000 if pol == "none" else max(3000, fw_med / 4)
        wait[sec_idx[cont]] = rng.lognormal(np.log(wscale), 1.0, int(cont.sum())).astype(np.int64)
        # allocations that refilled their pcp list waited for zone->lock behind a longer section
        # (under `none` the trace's own timing already holds the real contention: nothing added)
        alloc_wait = np.where(is_alloc & (rng.random(n_events) < contend_p / 2) & (pol != "none"),
                              rng.lognormal(np.log(wscale / 2), 1.0, n_events), 0).astype(np.int64)
        wait = wait + alloc_wait
        added = (firmware + wait + np.where(hit, rng.integers(200, 2000, n_events), 0)).astype(np.int64)
        added[~is_alloc & ~in_section] = 0
        # vts: trace time plus what this policy has added to the CPU so far
        vts = ts.copy()
        for c in range(n_cpus):
            m = cpu == c
            vts[m] = ts[m] + np.concatenate([[0], np.cumsum(added[m])[:-1]])
        forced = is_alloc & (rng.random(n_events) < (0.02 if mode == "exact" else 0.0))
        ev_tables.append(pl.DataFrame({
            "policy": [pol] * n_events, "seq": seq, "ts_ns": ts, "vts_ns": vts, "cpu": cpu,
            "comm": [PROCESSES[i][0] for i in proc_i], "pid": np.array([PROCESSES[i][1] for i in proc_i], np.int32),
            "event": [EVENTS[i] for i in ev_i], "pfn": pfn, "order": order,
            "zone": [ZONES[i] for i in zone_i], "anomaly": anomaly, "section": sec_id, "added_ns": added,
            "lock_wait_ns": wait, "lock_wait_behind_accept_ns": np.where(in_section, wait, 0).astype(np.int64) // 2,
            "lock_hold_ns": hold, "firmware_ns": firmware, "accepted_bytes": accepted, "forced": forced,
        }))
        # lock_sections: one row per section
        s_is_acc = hit[sec_idx]
        s_ev = ev_i[sec_idx]
        locks = np.where(s_is_acc, contended if contended != "none" else "accept_global",
                         np.array([f"zone:0:{ZONES[z]}" for z in zone_i[sec_idx]]))
        kinds = np.where(s_is_acc, "accept", np.where(s_ev == 4, "pcp_drain",
                         np.where(rng.random(len(sec_idx)) < 0.8, "pcp_refill", "buddy_alloc")))
        sec_tables.append(pl.DataFrame({
            "policy": [pol] * len(sec_idx), "id": np.arange(len(sec_idx), dtype=np.int64), "lock": locks.tolist(),
            "kind": kinds.tolist(), "cpu": cpu[sec_idx], "zone": [ZONES[z] for z in zone_i[sec_idx]],
            "start_ns": vts[sec_idx], "wait_ns": wait[sec_idx],
            "hold_ns": hold[sec_idx] + firmware[sec_idx] * (contended == "accept_global"),
            "pages": np.where(s_is_acc, accepted[sec_idx] // PAGE, rng.integers(1, 64, len(sec_idx))).astype(np.int64),
            "firmware_ns": np.where(locks == "accept_global", firmware[sec_idx], 0).astype(np.int64),
            "irqs_off": np.ones(len(sec_idx), bool),
            # the holder when the wait began: the previous section's CPU; none when nobody waited
            "blocker_cpu": np.where(wait[sec_idx] > 0, np.roll(cpu[sec_idx], 1), -1).astype(np.int32),
            "waited_behind": np.where(wait[sec_idx] > 0, np.where(np.roll(s_is_acc, 1), "accept", "allocator"),
                                      "").tolist(),
        }))
        # firmware calls: one batch per accepting event (+ the boot-time accept of kernel-eager)
        rows: list[dict[str, Any]] = []
        if boot:
            for c in range(n_cpus):
                nb = total_bytes // n_cpus
                rows.append({"seq": -1, "cpu": c, "vts_ns": 0, "kind": "tdx_accept_2m_failed",
                             "calls": nb // (2 * MiB), "ns": int(nb // (2 * MiB) * 900), "bytes": 0,
                             "held": "irqs_off"})
                rows.append({"seq": -1, "cpu": c, "vts_ns": 0, "kind": "tdx_accept_4k", "calls": nb // PAGE,
                             "ns": int(nb / GiB * 2.6e9), "bytes": int(nb), "held": "irqs_off"})
                rows.append({"seq": -1, "cpu": c, "vts_ns": 0, "kind": "zeroing", "calls": nb // PAGE,
                             "ns": int(nb / GiB * 6.7e7), "bytes": int(nb), "held": "irqs_off"})
        held = "accept_global" if contended == "accept_global" else ("irqs_off" if irqs else "none")
        for i in np.nonzero(hit)[0]:
            units = int(accepted[i] // (2 * MiB))
            rows.append({"seq": int(seq[i]), "cpu": int(cpu[i]), "vts_ns": int(vts[i]), "kind": "tdx_accept_2m_failed",
                         "calls": units, "ns": units * 900, "bytes": 0, "held": held})
            rows.append({"seq": int(seq[i]), "cpu": int(cpu[i]), "vts_ns": int(vts[i]), "kind": "tdx_accept_4k",
                         "calls": units * 512, "ns": int(firmware[i] - units * 900), "bytes": int(accepted[i]),
                         "held": held})
        fw_schema = {"seq": pl.Int64, "cpu": pl.Int32, "vts_ns": pl.Int64, "kind": pl.String, "calls": pl.Int64,
                     "ns": pl.Int64, "bytes": pl.Int64, "held": pl.String}
        fw = pl.DataFrame(rows, schema=fw_schema) if rows else pl.DataFrame(schema=fw_schema)
        fw_tables.append(fw.with_columns(policy=pl.lit(pol)).select(["policy", *fw_schema]))
        # IRQs-off stretches: every zone->lock section (spin_lock_irqsave) plus accept calls with IRQs off
        irq_rows = [{"cpu": int(cpu[i]), "start_ns": int(vts[i]), "duration_ns": int(hold[i] + firmware[i]),
                     "cause": "accept_memory" if hit[i] else "zone_lock"} for i in sec_idx]
        if pol == "list-6.6":  # the accepting_list spin that soft-locked 6.5 guests
            irq_rows.append({"cpu": 1, "start_ns": t0 + span // 2, "duration_ns": 21_500_000_000,
                             "cause": "accepting_list_spin"})
        if boot:
            irq_rows += [{"cpu": c, "start_ns": 0, "duration_ns": 3_100_000, "cause": "accept_memory"}
                         for c in range(n_cpus)]
        irq_tables.append(pl.DataFrame(irq_rows, schema={"cpu": pl.Int32, "start_ns": pl.Int64,
                                                         "duration_ns": pl.Int64, "cause": pl.String})
                          .with_columns(policy=pl.lit(pol)).select(["policy", "cpu", "start_ns", "duration_ns", "cause"]))
        # timeseries: accepted / unaccepted memory and free pages per order per bucket
        edges = t0 + (np.arange(buckets, dtype=np.int64) * span) // buckets
        acc_cum = np.array([accepted[ts < e].sum() for e in edges[1:]] + [accepted.sum()], np.int64)
        if pol in ("none", "firmware-eager", "kernel-eager"):
            acc_b = np.full(buckets, total_bytes, np.int64)
        else:
            acc_b = (256 * MiB + acc_cum + (np.linspace(0, 1, buckets) * 512 * MiB if pol == "background" else 0)
                     ).astype(np.int64)
        unacc = np.maximum(total_bytes - acc_b, 0)
        free_cols: dict[str, np.ndarray] = {}
        walk = np.cumsum(rng.normal(0, 1, (buckets, 11)), axis=0)
        for o in range(11):
            blocks = np.maximum(0, (40 - 3 * o) + walk[:, o] * (6 - o / 2)).astype(np.int64)
            if o == 10:  # accepted but still free memory sits in order-10 blocks
                blocks += (acc_b // (4 * MiB) // 4).astype(np.int64)
            free_cols[f"free_order_{o}"] = blocks << o  # pages in order-o blocks
        free_pages = np.sum(np.stack(list(free_cols.values())), axis=0)
        ts_tables.append(pl.DataFrame({"policy": [pol] * buckets, "t_ns": edges, "accepted_bytes": acc_b,
                                       "unaccepted_bytes": unacc, "free_pages": free_pages, **free_cols}))

    events = pl.concat(ev_tables)
    sections = pl.concat(sec_tables)
    fwcalls = pl.concat(fw_tables)
    irqs_off = pl.concat(irq_tables)
    tseries = pl.concat(ts_tables)

    def attribution(keys: list[str]) -> pl.DataFrame:
        return (events.group_by(["policy", *keys], maintain_order=True)
                .agg(events=pl.len().cast(pl.Int64),
                     allocations=(pl.col("event") == "mm_page_alloc").sum().cast(pl.Int64),
                     added_ns=pl.col("added_ns").sum(), lock_wait_ns=pl.col("lock_wait_ns").sum(),
                     lock_wait_behind_accept_ns=pl.col("lock_wait_behind_accept_ns").sum(),
                     lock_hold_ns=pl.col("lock_hold_ns").sum(), firmware_ns=pl.col("firmware_ns").sum(),
                     accepted_bytes=pl.col("accepted_bytes").sum())
                .sort(["policy", *keys], maintain_order=True))

    order_key = {p: i for i, p in enumerate(policies)}
    by_cpu = attribution(["cpu"]).sort(pl.col("policy").replace_strict(order_key), "cpu")
    by_proc = attribution(["comm", "pid"]).sort(pl.col("policy").replace_strict(order_key), "comm", "pid")

    anomalies = pl.DataFrame({
        "seq": seq[anom_idx], "ts_ns": ts[anom_idx], "cpu": cpu[anom_idx],
        "event": [EVENTS[ev_i[i]] for i in anom_idx], "pfn": pfn[anom_idx], "order": order[anom_idx],
        "kind": [ANOMALY_KINDS[k][0] for k in anom_kind], "explained": [ANOMALY_KINDS[k][1] for k in anom_kind],
        "kernel_path": [ANOMALY_KINDS[k][2] for k in anom_kind],
    })

    summary_rows = []
    for pol in policies:
        e = events.filter(pl.col("policy") == pol)
        s = sections.filter(pl.col("policy") == pol)
        f = fwcalls.filter(pl.col("policy") == pol)
        q = irqs_off.filter(pl.col("policy") == pol)
        a = e.filter(pl.col("event") == "mm_page_alloc")["added_ns"]
        zone = s.filter(pl.col("lock").str.starts_with("zone:"))
        acc = s.filter(pl.col("lock").is_in(["accept_global", "accepting_list"]))
        n_anom = len(anomalies)
        unexplained = int((~anomalies["explained"]).sum())
        summary_rows.append({
            "policy": pol, "mode": mode, "cost_preset": COST_PRESET["name"], "events_replayed": n_events,
            "anomalies": n_anom, "anomaly_rate": n_anom / n_events, "unexplained_anomaly_rate": unexplained / n_events,
            "invariants_ok": True, "lock_overlaps": 0, "forced_allocations": int(e["forced"].sum()),
            "firmware_calls": int(f["calls"].sum()), "firmware_ns": int(f["ns"].sum()),
            "accepted_bytes": int(f["bytes"].filter(f["kind"] != "zeroing").sum()),
            "boot_accept_ns": int(f.filter(pl.col("seq") == -1)["ns"].sum()),
            "zone_lock_hold_ns": int(zone["hold_ns"].sum()), "zone_lock_hold_max_ns": int(zone["hold_ns"].max() or 0),
            "zone_lock_wait_ns": int(zone["wait_ns"].sum()), "zone_lock_wait_max_ns": int(zone["wait_ns"].max() or 0),
            "accept_lock_hold_ns": int(acc["hold_ns"].sum()), "accept_lock_wait_ns": int(acc["wait_ns"].sum()),
            "accept_lock_wait_max_ns": int(acc["wait_ns"].max() or 0),
            "irqs_off_max_ns": int(q["duration_ns"].max() or 0),
            "irqs_off_over_1ms": int((q["duration_ns"] > 1_000_000).sum()),
            "irqs_off_over_20s": int((q["duration_ns"] > 20_000_000_000).sum()),
            "alloc_added_p50_ns": int(a.quantile(0.5, "nearest") or 0),
            "alloc_added_p90_ns": int(a.quantile(0.9, "nearest") or 0),
            "alloc_added_p99_ns": int(a.quantile(0.99, "nearest") or 0),
            "alloc_added_p999_ns": int(a.quantile(0.999, "nearest") or 0),
            "alloc_added_max_ns": int(a.max() or 0),
        })
    summary = pl.DataFrame(summary_rows)

    def to_arrow(df: pl.DataFrame, dict_cols: tuple[str, ...], types: dict[str, pa.DataType]) -> pa.Table:
        cols = {}
        for name in df.columns:
            s = df[name]
            if name in dict_cols:
                cats = list(policies) if name == "policy" else None
                cols[name] = _dict_col(s.to_list(), cats)
            elif name in types:
                cols[name] = pa.array(s.to_list(), types[name])
            else:
                cols[name] = s.to_arrow()
        return pa.table(cols)

    i32, i8, i64 = pa.int32(), pa.int8(), pa.int64()
    tables = {
        "events": to_arrow(events, ("policy", "comm", "event", "zone", "anomaly"),
                           {"cpu": i32, "pid": i32, "order": i8, "section": i64}),
        "lock_sections": to_arrow(sections, ("policy", "lock", "kind", "zone", "waited_behind"),
                                  {"cpu": i32, "blocker_cpu": i32}),
        "firmware_calls": to_arrow(fwcalls, ("policy", "kind", "held"), {"cpu": i32}),
        "irqs_off": to_arrow(irqs_off, ("policy", "cause"), {"cpu": i32}),
        "attribution_cpu": to_arrow(by_cpu, ("policy",), {"cpu": i32}),
        "attribution_process": to_arrow(by_proc, ("policy", "comm"), {"pid": i32}),
        "timeseries": to_arrow(tseries, ("policy",), {}),
        "anomalies": to_arrow(anomalies, ("event", "kind", "kernel_path"), {"cpu": i32, "order": i8}),
        "summary": to_arrow(summary, ("policy", "mode", "cost_preset"), {}),
    }
    for name, table in tables.items():
        _write(out, name, table, md)
    return out
