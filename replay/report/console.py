"""Terminal rendering: the `pagereplay info` summary (``parsers.stats.info_summary``), the replay
summary, the policies table and ``compare``.

The headline block copies the layout of ``print_page_summary()`` in
``tools/perf/builtin-kmem.c`` (``%-30s: %'16lu   [ %'16lu KB ]``) so the figures
can be compared with ``perf kmem stat --page`` line by line; the per-process
table uses the column set of ``trace-pagealloc-postprocess.pl``.
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from replay.report.format import human_ns, metric

_NUM = {"justify": "right", "no_wrap": True}


def _n(v: Any) -> str:
    """Thousands separators like perf's ``%'lu``; '.' for zero (perf's order table); '-' for missing."""
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.1f}"
    return f"{v:,}"


def _dot(v: int) -> str:
    return "." if not v else f"{v:,}"


def _perf_line(label: str, sized: dict[str, int]) -> str:
    return f"{label:<30}: {sized['requests']:>16,}   [ {sized['bytes'] // 1024:>16,} KB ]"


def _render_headline(s: dict[str, Any], console: Console) -> None:
    p = s["perf_kmem"]
    lines = [
        "SUMMARY (page allocator)",
        "========================",
        _perf_line("Total allocation requests", p["allocation_requests"]),
        _perf_line("Total free requests", p["free_requests"]),
        "",
        _perf_line("Total alloc+freed requests", p["alloc_freed"]),
        _perf_line("Total alloc-only requests", p["alloc_only"]),
        _perf_line("Total free-only requests", p["free_only"]),
        "",
        _perf_line("Total allocation failures", p["allocation_failures"]),
    ]
    console.print(Text("\n".join(lines)))
    t = s["time"]
    f = s["frees"]
    unit = s.get("timestamp_unit") or "ns"
    span = human_ns(t["span_ns"]) if unit == "ns" else f"{_n(t['span_ns'])} {unit}"
    console.print(
        Text(
            f"\n{t['events']:,} events over {span} (ts {_n(t['first_ts_ns'])} .. {_n(t['last_ts_ns'])} {unit}); "
            f"pages allocated {s['allocations']['succeeded']['pages']:,}, pages freed {f['pages']:,}; "
            f"mm_page_free_batched {f['batched']:,} ({f['batched_after_free']:,} repeat an mm_page_free)"
        )
    )


def _render_events(s: dict[str, Any], console: Console) -> None:
    names = list(s["events"])
    t = Table(title="Events per CPU", box=box.SIMPLE_HEAD)
    t.add_column("CPU", **_NUM)
    for n in names:
        t.add_column(n.removeprefix("mm_page_"), **_NUM)
    t.add_column("total", **_NUM)
    for row in s["per_cpu"]:
        t.add_row(str(row["cpu"]), *[_n(row[n]) for n in names], _n(row["events"]))
    t.add_row("all", *[_n(s["events"][n]) for n in names], _n(s["time"]["events"]), style="bold")
    console.print(t)


def _render_order_mt(s: dict[str, Any], console: Console) -> None:
    om = s["order_migratetype"]
    t = Table(title="Successful allocations: order x migratetype (requests)", box=box.SIMPLE_HEAD)
    t.add_column("Order", **_NUM)
    for m in om["migratetypes"]:
        t.add_column(m, **_NUM)
    t.add_column("total", **_NUM)
    t.add_column("pages", **_NUM)
    for r in om["rows"]:
        t.add_row(str(r["order"]), *[_dot(r[m]) for m in om["migratetypes"]], _n(r["total"]), _n(r["pages"]))
    console.print(t)


_PROC_HEAD = (
    ("pages_allocd", "Pages\nallocd"),
    ("alloc_events", "Alloc\nevents"),
    ("allocd_under_lock", "Allocd\nunder lock"),
    ("freed_direct", "Freed\ndirect"),
    ("freed_batched", "Freed\nbatched"),
    ("pcpu_drain_pages", "PCPU pages\ndrain"),
    ("pcpu_drains", "PCPU\ndrains"),
    ("pcpu_refills", "PCPU\nrefills"),
    ("extfrag_fallback", "Frag\nfallback"),
    ("extfrag_causing", "Frag\ncausing"),
    ("extfrag_migtype_changed", "MigType\nchanged"),
    ("extfrag_severe", "Frag\nsevere"),
    ("extfrag_moderate", "Frag\nmoderate"),
)


def _render_procs(rows: list[dict[str, Any]], title: str, with_pid: bool, console: Console) -> None:
    t = Table(title=title, box=box.SIMPLE_HEAD)
    t.add_column("Process" if with_pid else "Comm", overflow="fold")
    if not with_pid:
        t.add_column("pids", **_NUM)
    for _, head in _PROC_HEAD:
        t.add_column(head, **_NUM)
    for r in rows:
        lead = [f"{r['comm']}-{r['pid']}"] if with_pid else [r["comm"], _n(r.get("pids"))]
        t.add_row(*lead, *[_n(r[k]) for k, _ in _PROC_HEAD])
    console.print(t)


def _render_gfp(s: dict[str, Any], console: Console) -> None:
    g = s["gfp"]
    for key, title in (("by_requests", "requests"), ("by_pages", "pages")):
        t = Table(title=f"GFP flag mix: top by {title} ({g['distinct']:,} distinct)", box=box.SIMPLE_HEAD)
        t.add_column("gfp_flags", overflow="fold")
        t.add_column("requests", **_NUM)
        t.add_column("pages", **_NUM)
        t.add_column("failed", **_NUM)
        for r in g[key]:
            t.add_row(r["gfp_flags"] or "(none)", _n(r["requests"]), _n(r["pages"]), _n(r["failed"]))
        console.print(t)


def _render_failed(s: dict[str, Any], console: Console) -> None:
    f = s["failed"]
    if not f["requests"]:
        console.print(Text("No failed allocations."))
        return
    t = Table(title=f"Failed allocations: {f['requests']:,} ({f['pages']:,} pages)", box=box.SIMPLE_HEAD)
    t.add_column("order / gfp_flags", overflow="fold")
    t.add_column("requests", **_NUM)
    t.add_column("pages", **_NUM)
    for r in f["by_order"]:
        t.add_row(f"order {r['order']}", _n(r["requests"]), _n(r["pages"]))
    for r in f["by_gfp"]:
        t.add_row(r["gfp_flags"] or "(none)", _n(r["requests"]), _n(r["pages"]))
    console.print(t)


def _render_extfrag(s: dict[str, Any], console: Console) -> None:
    x = s["extfrag"]
    console.print(
        Text(
            f"mm_page_alloc_extfrag: {x['events']:,} fallbacks, {x['fragmenting']:,} fragmenting "
            f"({x['severe']:,} severe, {x['moderate']:,} moderate), {x['change_ownership']:,} changed ownership"
        )
    )
    if not x["events"]:
        return
    t = Table(title="extfrag: alloc -> fallback migratetype", box=box.SIMPLE_HEAD)
    t.add_column("alloc migratetype")
    t.add_column("fallback migratetype")
    t.add_column("events", **_NUM)
    for r in x["by_migratetype"]:
        t.add_row(r["alloc_migratetype"], r["fallback_migratetype"], _n(r["events"]))
    console.print(t)


_DIST_ROWS = (("pages_per_burst", "pages/burst"), ("events_per_burst", "events/burst"), ("duration_ns", "duration"))


def _render_bursts(s: dict[str, Any], console: Console) -> None:
    ls = s["lock_sections"]
    # x86-tsc/counter clocks: durations are raw counter ticks, not ns
    dur = human_ns if (s.get("timestamp_unit") or "ns") == "ns" else (lambda v: f"{_n(v)} ticks")
    kinds = ("pcp_refill", "buddy_alloc", "pcp_drain")
    t = Table(title="zone->lock sections reconstructed per CPU", box=box.SIMPLE_HEAD)
    t.add_column("kind")
    t.add_column("models")
    for col in ("bursts", "events", "pages", "time in sections"):
        t.add_column(col, **_NUM)
    for kind in kinds:
        k = ls[kind]
        t.add_row(kind, k["models"], _n(k["bursts"]), _n(k["events"]), _n(k["pages"]), dur(k["duration_ns_total"]))
    console.print(t)
    d = Table(title="Burst size and duration distributions", box=box.SIMPLE_HEAD)
    d.add_column("kind")
    d.add_column("per burst")
    for q in ("mean", "p50", "p90", "p99", "max"):
        d.add_column(q, **_NUM)
    for kind in kinds:
        k = ls[kind]
        if not k["bursts"]:
            continue
        for key, label in _DIST_ROWS:
            fmt = dur if key == "duration_ns" else _n
            d.add_row(kind, label, *[fmt(k[key][q]) for q in ("mean", "p50", "p90", "p99", "max")])
    console.print(d)
    if not ls.get("extfrag_splits", False):
        console.print(Text("mm_page_alloc_extfrag inside a section (emitted under zone->lock) neither ends nor counts in a burst.", style="dim"))


def render_info(summary: dict[str, Any], console: Console) -> None:
    """Print every part of an ``info_summary()`` dict as terminal tables."""
    _render_headline(summary, console)
    _render_events(summary, console)
    _render_order_mt(summary, console)
    _render_failed(summary, console)
    tc = summary["top_comms"]
    _render_procs(tc["by_comm"], f"Top comms by pages allocated ({tc['comms']:,} comms)", False, console)
    _render_procs(tc["by_comm_pid"], f"Top comm-pid by pages allocated ({tc['processes']:,} processes)", True, console)
    _render_gfp(summary, console)
    _render_extfrag(summary, console)
    _render_bursts(summary, console)
    _render_capture(summary, console)


def _render_capture(s: dict[str, Any], console: Console) -> None:
    """A capture folder's kernel and overruns; lock contention by flags; the untraced kprobe events."""
    cap = s.get("capture")
    if cap:
        per_cpu = ", ".join(f"cpu{k} {v:,}" for k, v in sorted(cap["overruns_per_cpu"].items(), key=lambda kv: int(kv[0])))
        over = "not recorded" if cap["overruns"] is None else f"{cap['overruns']:,}" + (f" ({per_cpu})" if per_cpu else "")
        console.print(f"capture: kernel {cap['kernel_release'] or '?'} ({cap['kernel_upstream_version'] or '?'}); "
                      f"ring-buffer overruns {over}", markup=False)
    lc = s.get("lock_contention")
    if lc:
        t = Table(title=f"lock contention ({lc['begin']:,} begin, {lc['end']:,} end, {lc['locks']:,} locks)",
                  header_style="bold")
        t.add_column("flags")
        t.add_column("contention_begin", justify="right")
        for k, v in lc["by_flags"].items():
            t.add_row(k, f"{v:,}")
        console.print(t)
    un = s.get("untraced")
    if un:
        t = Table(title="untraced page movements (record --untraced kprobes)", header_style="bold")
        t.add_column("event")
        t.add_column("count", justify="right")
        for k, v in un.items():
            t.add_row(k, f"{v:,}")
        console.print(t)


# ------------------------------------------------------------------ pagereplay replay / compare
def print_replay_summary(s: dict[str, Any], c: Console) -> None:
    """The baseline replay: events, anomalies, fidelity, sections, calibration, end snapshot."""
    c.print(f"[bold]{s['mode']} replay[/]: {s['events_replayed']:,} events, "
            f"anomalies {s['anomalies_total']:,} ({100 * s['anomaly_rate']:.3f} %), "
            f"unexplained {s['unexplained_anomalies']:,} ({100 * s['unexplained_anomaly_rate']:.4f} %), "
            f"invariants {'ok' if s['invariants_ok'] else 'VIOLATED'}")
    if s.get("kernel_profile"):
        c.print(f"kernel profile {s['kernel_profile']} (from {s.get('kernel_profile_source') or 'the caller'})")
    if s["anomalies"]:
        t = Table(title="anomalies by kind")
        t.add_column("kind")
        t.add_column("events", justify="right")
        for k, v in sorted(s["anomalies"].items(), key=lambda kv: -kv[1]):
            t.add_row(k, f"{v:,}")
        c.print(t)
    f = s["fidelity"]
    c.print("fidelity: " + ", ".join(f"{k} {v:.3f}" for k, v in f.items() if isinstance(v, float)))
    if f.get("second_half"):
        c.print("fidelity, second half: " + ", ".join(f"{k} {v:.3f}" for k, v in f["second_half"].items()
                                                      if isinstance(v, float)))
    for check, d in (f.get("disagreement") or {}).items():
        wt = d["agreement_where_traced"]
        c.print(f"  {check} disagreements: pre-trace order unknown {d['pre_trace_order_unknown']:,}, "
                f"untraced path inferred {d['untraced_path_inferred']:,}, model {d['model']:,}"
                + ("" if wt is None else f" (agreement where traced {wt:.3f})"))
    c.print("lock sections: " + ", ".join(f"{k} {v:,}" for k, v in s["lock_sections"].items()))
    cal = s["calibration"]
    c.print(f"calibration: refill {cal['refill_base_ns']:.0f} + {cal['refill_per_block_ns']:.0f}/block ns, "
            f"drain {cal['drain_base_ns']:.0f} + {cal['drain_per_block_ns']:.0f}/block ns"
            + ("" if cal.get("source", "trace") == "trace" else f" (from {cal['source']})"))
    if "end_snapshot" in s:
        _print_end_snapshot(s["end_snapshot"], c)
    _print_capture(s, c)


def _print_capture(s: dict[str, Any], c: Console) -> None:
    """A capture folder's overruns, and the trace's rows the model does not replay (by name)."""
    cap = s.get("capture")
    if cap:
        over = "not recorded" if cap["overruns"] is None else f"{cap['overruns']:,}"
        c.print(f"capture: kernel {cap['kernel_release'] or '?'}, ring-buffer overruns {over}"
                + (" (events lost: the trace has holes)" if cap["overruns"] else ""), markup=False)
    nr = s.get("events_not_replayed")
    if nr:
        c.print("not replayed (lock contention; the untraced page movements in simulate mode): "
                + ", ".join(f"{k} {v:,}" for k, v in nr.items()), markup=False)
    kp = s.get("kprobes")
    if kp:  # exact mode applied the record --untraced rows (replay/model/untraced.py)
        ev = kp["events"]
        c.print(f"kprobe rows applied to the model: {kp['rows_applied']:,} ("
                + ", ".join(f"{k} {d['applied']:,}" + (f", {d['refused']:,} refused" if d.get("refused") else "")
                            + (f", {d['contradicted']:,} contradicting the model" if d.get("contradicted") else "")
                            for k, d in ev.items() if "applied" in d) + ")", markup=False)
        na = {k: d["not_applied"] for k, d in ev.items() if "not_applied" in d}
        if na:
            c.print("kprobe rows not applied: " + "; ".join(f"{k} {ev[k]['rows']:,} ({why})" for k, why in na.items()),
                    markup=False)
        rep = kp.get("inferences_replaced")
        if rep is not None:
            c.print("anomalies the kprobe rows replaced (the same replay without them): "
                    + (", ".join(f"{k} {n:,}" for k, n in rep.items()) or "none"), markup=False)


def _print_end_snapshot(end: dict[str, Any], c: Console) -> None:
    t = Table(title="free pages at the end vs end snapshot")
    for col in ("zone", "model", "snapshot", "diff", "rel", "explained", "residual", "residual rel"):
        t.add_column(col, justify="right")
    for z, r in end["per_zone"].items():
        rel = r["rel_diff"]
        rr = r.get("residual_rel")
        t.add_row(z, f"{r['model_pages']:,}", f"{r['snapshot_pages']:,}", f"{r['diff_pages']:+,}",
                  "-" if rel is None else f"{100 * rel:+.2f} %",
                  "-" if r.get("explained_pages") is None else f"{r['explained_pages']:+,}",
                  "-" if r.get("residual_pages") is None else f"{r['residual_pages']:+,}",
                  "-" if rr is None else f"{100 * rr:+.2f} %")
    c.print(t)
    for z, r in end["per_zone"].items():  # replay.results.endcheck: measured terms per zone
        ex = r.get("explained") or {}
        if any(v for v in ex.values()):
            c.print(f"{z}: explained by compaction: {ex.get('compaction')} pages; "
                    + ", ".join(f"{k} {v:+,}" for k, v in ex.items() if k != "compaction" and v is not None)
                    + f"; residual {r.get('residual_pages')}")


def print_policies(rows: list[dict[str, Any]], output: Any, c: Console) -> None:
    """One line per policy: what it cost."""
    t = Table(title=f"acceptance policies ({rows[0]['cost_preset']} costs) -> {output}")
    for col in ("policy", "forced", "fw calls", "fw time", "accepted", "zone wait", "accept wait", "IRQs-off max",
                "alloc +p99", "alloc +max", "boot accept"):
        t.add_column(col, justify="right")
    for r in rows:
        t.add_row(str(r["policy"]), f"{r['forced_allocations']:,}", f"{r['firmware_calls']:,}",
                  human_ns(r["firmware_ns"]), metric("accepted_bytes", r["accepted_bytes"]),
                  human_ns(r["zone_lock_wait_ns"]), human_ns(r["accept_lock_wait_ns"]), human_ns(r["irqs_off_max_ns"]),
                  human_ns(r["alloc_added_p99_ns"]), human_ns(r["alloc_added_max_ns"]), human_ns(r["boot_accept_ns"]))
    c.print(t)


def print_compare(cmp: dict[str, Any], keys: tuple[str, ...], c: Console) -> None:
    """``results.compare.compare_rows``: a column per policy, deltas against the reference."""
    rows = cmp["policies"]
    t = Table(title=f"policies side by side (deltas against {cmp['reference']})")
    t.add_column("metric")
    for r in rows:
        t.add_column(str(r["policy"]), justify="right")
    for k in keys:
        cells = []
        for r in rows:
            d = cmp["deltas"][r["policy"]].get(k, 0)
            cell = metric(k, r.get(k))
            if r["policy"] != cmp["reference"] and d:
                cell += f" ({'+' if d > 0 else '-'}{metric(k, abs(d))})"
            cells.append(cell)
        t.add_row(k, *cells)
    c.print(t)


def _identity(side: dict[str, Any]) -> str:
    parts = [f"{k.replace('_', ' ')} {side[k]}" for k in ("input_name", "kernel_version", "kernel_profile", "mode",
                                                           "cost_preset") if side.get(k)]
    return f"{side['folder']}: " + (", ".join(parts) or "(no metadata)")


def print_compare_folders(cmp: dict[str, Any], c: Console) -> None:
    """``results.compare.compare_folders``: one row per (policy, metric), A, B and B - A; rows that
    are 0 in both folders are left out (and counted)."""
    c.print(f"A = {_identity(cmp['a'])}", markup=False)
    c.print(f"B = {_identity(cmp['b'])}", markup=False)
    c.print("A and B differ in: " + (", ".join(k.replace("_", " ") for k in cmp["differs"]) or "nothing recorded"),
            markup=False)
    t = Table(title="B against A, per policy", box=box.SIMPLE_HEAD)
    for col, kw in (("policy", {"no_wrap": True}), ("metric", {"no_wrap": True}), ("A", _NUM), ("B", _NUM),
                    ("B - A", _NUM), ("B / A", _NUM)):
        t.add_column(col, **kw)
    zero = 0
    for pol in cmp["policies"]:
        first = True
        for k, v in cmp["rows"][pol].items():
            a, b, d = v["a"], v["b"], v["delta"]
            if not a and not b:
                zero += 1
                continue
            ratio = f"{b / a:.3g}x" if isinstance(d, (int, float)) and a else "-"
            dtxt = "-" if d is None else ("0" if d == 0 else ("+" if d > 0 else "-") + metric(k, abs(d)))
            t.add_row(pol if first else "", k, metric(k, a), metric(k, b), dtxt, ratio,
                      end_section=False)
            first = False
        if not first:
            t.add_section()
    c.print(t)
    if zero:
        c.print(f"({zero} policy/metric pairs are 0 in both folders and not shown; --json has every row)")
    for side, names in (("A", cmp["only_a"]), ("B", cmp["only_b"])):
        if names:
            c.print(f"only in {side}: {', '.join(names)}", markup=False)
