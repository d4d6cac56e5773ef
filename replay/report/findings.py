"""The report's findings: what each policy cost against ``none``, who paid most, and which policy is
cheapest on each axis, in plain sentences generated from a results folder's numbers.

Every figure comes from the tables of docs/results.md: the per-policy ``summary`` (firmware calls and
time during the trace, boot-time acceptance, zone->lock hold and wait, IRQs-off stretches, added
allocation latency), ``lock_sections`` (waits split by lock: ``accept_global`` is the global
acceptance lock, ``accepting_list`` the per-range list) and the ``attribution_cpu`` /
``attribution_process`` tables (who paid: the most ``added_ns``).  zone->lock hold and wait, and
the IRQs-off figures, are given as the difference against ``none`` (the trace's own sections
hold the lock under every policy); the rest are absolute (``none`` accepts nothing).  A zero is
said as such ("no CPU waited"), never left out silently.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from replay.report.charts import REFERENCE_POLICY, ResultsError, policy_order, scan_table
from replay.report.format import human_bytes, human_ns

__all__ = ["AXES", "Axis", "Findings", "findings", "findings_text"]


@dataclass(frozen=True)
class Axis:
    """One cost axis: its label, how to read a policy's value, and how to show it."""

    key: str
    label: str
    value: Callable[[dict[str, Any], dict[str, Any]], float]  # (row, reference row) -> cost
    show: Callable[[float], str] = human_ns


def _col(k: str) -> Callable[[dict[str, Any], dict[str, Any]], float]:
    return lambda r, _ref: float(r.get(k) or 0)


def _over_ref(k: str) -> Callable[[dict[str, Any], dict[str, Any]], float]:
    return lambda r, ref: float((r.get(k) or 0) - (ref.get(k) or 0))


def _count(v: float) -> str:
    return f"{int(v):,}"


#: the axes of the "cheapest on each axis" table, in the order the findings name them
AXES: tuple[Axis, ...] = (
    Axis("firmware_calls", "firmware calls during the trace", _col("firmware_calls"), _count),
    Axis("firmware_ns", "firmware time during the trace", _col("firmware_ns")),
    Axis("boot_accept_ns", "acceptance at boot", _col("boot_accept_ns")),
    Axis("zone_lock_hold", "zone->lock hold added", _over_ref("zone_lock_hold_ns")),
    Axis("zone_lock_wait", "zone->lock waits caused on other CPUs", _over_ref("zone_lock_wait_ns")),
    Axis("accept_global_wait", "waits on the global acceptance lock", _col("_wait_accept_global")),
    Axis("accepting_list_wait", "waits on accepting_list", _col("_wait_accepting_list")),
    Axis("irqs_off_max", "longest IRQs-off stretch added", _over_ref("irqs_off_max_ns")),
    Axis("alloc_added_p99_ns", "p99 added allocation latency", _col("alloc_added_p99_ns")),
    Axis("alloc_added_max_ns", "max added allocation latency", _col("alloc_added_max_ns")),
)


@dataclass
class Findings:
    """``policies``: (policy, sentence) pairs in report order; ``cheapest``: one row per axis
    (axis label, cheapest policies, their value, costliest policy, its value); ``notes``."""

    reference: str | None
    policies: list[tuple[str, str]] = field(default_factory=list)
    cheapest: list[tuple[str, list[str], str, str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------ reading
def _summary_rows(results_dir: Path) -> list[dict[str, Any]]:
    schema = pl.scan_parquet(results_dir / "summary.parquet").collect_schema()
    cols = ["policy", *[c for c in schema.names() if c != "policy"]]
    rows = scan_table(results_dir, "summary", cols).collect().to_dicts()
    order = policy_order(results_dir)
    rows.sort(key=lambda r: order.index(r["policy"]) if r["policy"] in order else len(order))
    return rows


def _lock_waits(results_dir: Path) -> dict[tuple[str, str], int]:
    """Wait ns per (policy, acceptance lock) from lock_sections, and per (policy, ``zone_behind_accept``):
    the zone->lock waits spent behind a holder in firmware (``waited_behind = accept``); {} when the
    table is missing."""
    try:
        ls = scan_table(results_dir, "lock_sections", ["policy", "lock", "wait_ns", "waited_behind"])
    except ResultsError:
        return {}
    lock = pl.col("lock").cast(pl.String)
    key = (pl.when(lock.str.starts_with("zone")).then(pl.lit("zone_behind_accept")).otherwise(lock))
    df = (ls.filter(lock.is_in(["accept_global", "accepting_list"])
                    | (lock.str.starts_with("zone") & (pl.col("waited_behind").cast(pl.String) == "accept")))
          .group_by("policy", key.alias("what")).agg(w=pl.col("wait_ns").sum()).collect())
    return {(r["policy"], r["what"]): int(r["w"]) for r in df.iter_rows(named=True)}


def _top_payers(results_dir: Path) -> dict[str, dict[str, tuple[str, int, int]]]:
    """Per policy, the CPU and the process with the most added_ns: ``{policy: {"cpu": (who, ns,
    total ns)}, "process": ...}}`` (missing tables or no added time: not listed)."""
    out: dict[str, dict[str, tuple[str, int, int]]] = {}
    specs = (("cpu", "attribution_cpu", ["policy", "cpu", "added_ns"], lambda r: f"CPU {r['cpu']}"),
             ("process", "attribution_process", ["policy", "comm", "pid", "added_ns"],
              lambda r: f"{r['comm']}-{r['pid']}"))
    for what, table, cols, name in specs:
        try:
            df = scan_table(results_dir, table, cols).collect()
        except ResultsError:
            continue
        tot = df.group_by("policy").agg(t=pl.col("added_ns").sum())
        top = (df.sort("added_ns", *cols[1:-1], descending=[True] + [False] * (len(cols) - 2))
               .group_by("policy", maintain_order=True).first().join(tot, on="policy"))
        for r in top.iter_rows(named=True):
            if (r["added_ns"] or 0) > 0:
                out.setdefault(r["policy"], {})[what] = (name(r), int(r["added_ns"]), int(r["t"]))
    return out


# ------------------------------------------------------------------ sentences
def _reference_sentence(ref: dict[str, Any]) -> str:
    return (f"the plain VM, the reference: no memory to accept; the trace's own zone->lock sections hold it "
            f"{human_ns(ref.get('zone_lock_hold_ns'))} in all (longest {human_ns(ref.get('zone_lock_hold_max_ns'))}) "
            f"and the longest IRQs-off stretch is {human_ns(ref.get('irqs_off_max_ns'))}.")


def _cost_clauses(r: dict[str, Any], ref: dict[str, Any]) -> list[str]:
    c: list[str] = []
    calls, fw = int(r.get("firmware_calls") or 0), r.get("firmware_ns") or 0
    c.append(f"{calls:,} firmware calls ({human_ns(fw)}, {human_bytes(r.get('accepted_bytes') or 0)} accepted) "
             "during the trace" if calls else "no firmware call during the trace")
    boot = r.get("boot_accept_ns") or 0
    c.append(f"{human_ns(boot)} of acceptance at boot" if boot else "nothing accepted at boot")
    hold = (r.get("zone_lock_hold_ns") or 0) - (ref.get("zone_lock_hold_ns") or 0)
    wait = (r.get("zone_lock_wait_ns") or 0) - (ref.get("zone_lock_wait_ns") or 0)
    if hold > 0:
        c.append(f"zone->lock held {human_ns(hold)} longer than under {REFERENCE_POLICY}")
    behind = r.get("_wait_zone_behind_accept", 0)
    behind_txt = f"{human_ns(behind)} of it behind a CPU in firmware, " if behind and wait > 0 else ""
    c.append(f"other CPUs waited {human_ns(wait)} more for zone->lock ({behind_txt}longest wait "
             f"{human_ns(r.get('zone_lock_wait_max_ns'))})" if wait > 0 else "no CPU waited longer for zone->lock")
    g, lst = r.get("_wait_accept_global", 0), r.get("_wait_accepting_list", 0)
    if g:
        c.append(f"{human_ns(g)} of waits on the global acceptance lock")
    if lst:
        c.append(f"{human_ns(lst)} of waits on accepting_list (another CPU accepting the same range)")
    irq = (r.get("irqs_off_max_ns") or 0) - (ref.get("irqs_off_max_ns") or 0)
    over = int(r.get("irqs_off_over_1ms") or 0) - int(ref.get("irqs_off_over_1ms") or 0)
    if irq > 0 or over > 0:
        c.append(f"IRQs off up to {human_ns(r.get('irqs_off_max_ns'))} ({over:+,} stretches over 1 ms)")
    p99, p999, mx = (r.get(k) or 0 for k in ("alloc_added_p99_ns", "alloc_added_p999_ns", "alloc_added_max_ns"))
    c.append(f"allocation latency added: p99 {human_ns(p99)}, p99.9 {human_ns(p999)}, max {human_ns(mx)}" if mx
             else "no allocation delayed")
    return c


def _payer_sentence(policy: str, r: dict[str, Any], payers: dict[str, dict[str, tuple[str, int, int]]]) -> str:
    p = payers.get(policy, {})
    parts = [f"{'' if kind == 'cpu' else 'process '}{who} ({human_ns(ns)}, {100 * ns / tot:.0f} % of the added time)"
             for kind in ("cpu", "process") if kind in p for who, ns, tot in [p[kind]] if tot]
    if parts:
        return "Paid most: " + " and ".join(parts) + "."
    if r.get("firmware_ns"):
        return "No traced event was delayed: the firmware time was spent off the allocation path."
    if r.get("boot_accept_ns"):
        return "Paid at boot, before any traced process ran; nothing added during the trace."
    return "Nobody paid: no event was delayed."


def _cheapest(rows: list[dict[str, Any]], ref: dict[str, Any]) -> list[tuple[str, list[str], str, str, str]]:
    cands = [r for r in rows if r["policy"] != REFERENCE_POLICY] or rows
    out = []
    for ax in AXES:
        vals = [(ax.value(r, ref), r["policy"]) for r in cands]
        lo = min(v for v, _ in vals)
        hi, worst = max(vals, key=lambda vp: vp[0])
        best = [p for v, p in vals if v == lo]
        if lo == hi:
            out.append((ax.label, ["every policy"] if len(best) == len(cands) > 1 else best, ax.show(lo), "",
                        "all equal"))
        else:
            out.append((ax.label, best, ax.show(lo), worst, ax.show(hi)))
    return out


def findings(results_dir: str | Path) -> Findings:
    """The findings of a results folder (see the module docstring)."""
    rd = Path(results_dir)
    rows = _summary_rows(rd)
    if not rows:
        raise ResultsError(f"{results_dir}/summary.parquet has no policy rows")
    waits = _lock_waits(rd)
    for r in rows:
        r["_wait_accept_global"] = waits.get((r["policy"], "accept_global"), 0)
        r["_wait_accepting_list"] = waits.get((r["policy"], "accepting_list"), 0)
        r["_wait_zone_behind_accept"] = waits.get((r["policy"], "zone_behind_accept"), 0)
    ref = next((r for r in rows if r["policy"] == REFERENCE_POLICY), None)
    f = Findings(reference=ref["policy"] if ref else None)
    if ref is None:
        f.notes.append(f"No '{REFERENCE_POLICY}' run in this folder: every figure is absolute.")
    base = ref or {}
    payers = _top_payers(rd)
    for r in rows:
        if r is ref:
            f.policies.append((r["policy"], _reference_sentence(r)))
            continue
        clauses = _cost_clauses(r, base)
        f.policies.append((r["policy"], clauses[0][0].upper() + "; ".join(clauses)[1:] + ". "
                           + _payer_sentence(r["policy"], r, payers)))
    f.cheapest = _cheapest(rows, base)
    if all(not r.get("zone_lock_wait_ns") and not r["_wait_accept_global"] and not r["_wait_accepting_list"]
           for r in rows):
        f.notes.append("No CPU waited for any lock under any policy on this trace: the policies differ here only "
                       "in firmware time, hold times and boot cost.")
    return f


def findings_text(f: Findings) -> str:
    """The findings as plain text (one paragraph per policy, then the cheapest policy per axis)."""
    lines = [f"{p}: {s}" for p, s in f.policies]
    lines += ["", "cheapest on each axis:"]
    for label, best, v, worst, wv in f.cheapest:
        lines.append(f"  {label}: {', '.join(best)} ({v})" + (f"; costliest {worst} ({wv})" if worst else
                                                               f" ({wv})"))
    return "\n".join([*lines, *f.notes]) + "\n"
