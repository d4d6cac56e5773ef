"""``pagereplay replay TRACE --mode exact|simulate -o results/``: wiring only.

``register(app)`` adds the command to the lead's typer app.  Every failure is a
one-line message on stderr and exit status 1 (``PAGEREPLAY_DEBUG=1`` re-raises).
"""

from __future__ import annotations

import enum
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer


class Mode(str, enum.Enum):
    exact = "exact"
    simulate = "simulate"


def _parse_size(text: str) -> int:
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    if t and t[-1] in mult:
        return int(float(t[:-1]) * mult[t[-1]])
    return int(t)


def run_replay(trace: Path, mode: str, output: Path, *, snapshot: Path | None = None, end_snapshot: Path | None = None,
               check: bool = False, check_every: int = 100_000, guest_size: str | None = None,
               cpus: int | None = None, boot: bool | None = None) -> dict[str, Any]:
    """Load, replay, write the four Parquet files; return the summary dict."""
    import dataclasses

    import numpy as np

    from parsers.api import load_events
    from replay.engine import replay
    from replay.layout import infer_layout, load_snapshot
    from replay.results import build_tables, end_snapshot_report, summary_dict, write_results
    from replay.sections import calibrate

    table, md = load_events(trace)
    if table.num_rows == 0:
        raise ValueError(f"{trace}: no page-allocator events")
    snap = load_snapshot(snapshot) if snapshot else None
    end = load_snapshot(end_snapshot) if end_snapshot else None
    if snap is not None:
        layout = snap
    elif end is not None:
        layout = end
    else:
        pfn = table.column("pfn").to_numpy(zero_copy_only=False)
        pfn = np.asarray(pfn[~np.isnan(pfn)] if pfn.dtype.kind == "f" else pfn, np.int64)
        pfn = pfn[pfn > 0]
        if len(pfn) == 0:
            raise ValueError(f"{trace}: no pfns to infer a memory layout from (give --snapshot)")
        cpu_max = int(np.asarray(table.column("cpu").to_numpy()).max()) + 1
        layout = infer_layout(int(pfn.min()), int(pfn.max()), guest_bytes=_parse_size(guest_size) if guest_size else None,
                              nr_cpus=cpus or cpu_max)
    if cpus:
        layout = dataclasses.replace(layout, nr_cpus=cpus)
    out = replay(table, layout, mode=mode, snapshot=snap, boot=boot, check_every=check_every if check else 0,
                 metadata=md)
    cal = calibrate(table)
    endrep = end_snapshot_report(out, layout, end) if end is not None else None
    if endrep is not None and snapshot is not None:
        from replay.results import vmstat_delta

        vm = vmstat_delta(snapshot, end_snapshot)
        if vm:
            # compaction's free scanner takes its migration targets out of the buddy with no
            # tracepoint (isolate_freepages_block); each migrated page used one of them
            endrep["vmstat_delta"] = vm
            tot = endrep["per_zone"]
            diff = sum(r["diff_pages"] for r in tot.values())
            endrep["total_diff_pages"] = diff
            endrep["total_diff_minus_migrations"] = diff - vm.get("pgmigrate_success", 0)
    summary = summary_dict(out, cal, endrep)
    summary["input"] = str(trace)
    tables = build_tables(out, cal, summary)
    try:
        inputs = json.loads(md.get("pagereplay.inputs", "[]"))
        sha = ",".join(str(i.get("sha256", "")) for i in inputs)
    except (ValueError, TypeError, AttributeError):
        sha = ""
    meta = {"mode": mode, "input_sha256": sha,
            "snapshot": str(snapshot or ""), "end_snapshot": str(end_snapshot or "")}
    write_results(output, tables, meta)
    return summary


def _print_summary(s: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    c = Console(highlight=False, soft_wrap=True)
    c.print(f"[bold]{s['mode']} replay[/]: {s['events_replayed']:,} events, "
            f"anomalies {s['anomalies_total']:,} ({100 * s['anomaly_rate']:.3f} %), "
            f"unexplained {s['unexplained_anomalies']:,} ({100 * s['unexplained_anomaly_rate']:.4f} %), "
            f"invariants {'ok' if s['invariants_ok'] else 'VIOLATED'}")
    if s["anomalies"]:
        t = Table(title="anomalies by kind")
        t.add_column("kind")
        t.add_column("events", justify="right")
        for k, v in sorted(s["anomalies"].items(), key=lambda kv: -kv[1]):
            t.add_row(k, f"{v:,}")
        c.print(t)
    f = s["fidelity"]
    c.print("fidelity: " + ", ".join(f"{k} {v:.3f}" for k, v in f.items() if v is not None))
    c.print("lock sections: " + ", ".join(f"{k} {v:,}" for k, v in s["lock_sections"].items()))
    cal = s["calibration"]
    c.print(f"calibration: refill {cal['refill_base_ns']:.0f} + {cal['refill_per_block_ns']:.0f}/block ns, "
            f"drain {cal['drain_base_ns']:.0f} + {cal['drain_per_block_ns']:.0f}/block ns")
    if "end_snapshot" in s:
        t = Table(title="free pages at the end vs end snapshot")
        for col in ("zone", "model", "snapshot", "diff", "rel"):
            t.add_column(col, justify="right")
        for z, r in s["end_snapshot"]["per_zone"].items():
            rel = r["rel_diff"]
            t.add_row(z, f"{r['model_pages']:,}", f"{r['snapshot_pages']:,}", f"{r['diff_pages']:+,}",
                      "-" if rel is None else f"{100 * rel:+.2f} %")
        c.print(t)


def register(app: typer.Typer) -> None:
    """Add ``replay`` to ``app``."""

    @app.command("replay")
    def replay_cmd(
        trace: Annotated[Path, typer.Argument(help="Text trace (ftrace/trace-cmd/perf) or the Parquet from `pagereplay parse`.")],
        output: Annotated[Path, typer.Option("-o", "--output", help="Folder for events/lock_sections/anomalies/summary Parquet.")],
        mode: Annotated[Mode, typer.Option("--mode", help="exact: apply the trace's pfns; simulate: the model chooses them.")] = Mode.exact,
        snapshot: Annotated[Optional[Path], typer.Option("--snapshot", help="/proc snapshot folder taken before the trace (proc_before/).")] = None,
        end_snapshot: Annotated[Optional[Path], typer.Option("--end-snapshot", help="/proc snapshot after the trace: compare free pages per zone/order.")] = None,
        check: Annotated[bool, typer.Option("--check", help="Check the invariants periodically, not only at the end.")] = False,
        check_every: Annotated[int, typer.Option("--check-every", help="Events between periodic checks (--check).")] = 100_000,
        as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
        guest_size: Annotated[Optional[str], typer.Option("--guest-size", help="Guest RAM (e.g. 4G) when no snapshot gives the layout.")] = None,
        cpus: Annotated[Optional[int], typer.Option("--cpus", help="vCPU count override.")] = None,
        boot: Annotated[Optional[bool], typer.Option("--boot/--no-boot", help="Start from the boot layout (default: guessed).")] = None,
    ) -> None:
        """Replay a page-allocator trace through the buddy + per-CPU list model."""
        try:
            if not trace.exists():
                raise FileNotFoundError(f"{trace}: no such file")
            s = run_replay(trace, mode.value, output, snapshot=snapshot, end_snapshot=end_snapshot, check=check,
                           check_every=check_every, guest_size=guest_size, cpus=cpus, boot=boot)
        except typer.Exit:
            raise
        except Exception as e:  # noqa: BLE001 - one line, never a traceback
            if os.environ.get("PAGEREPLAY_DEBUG"):
                raise
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            print(f"error: {msg}", file=sys.stderr)
            raise typer.Exit(1) from None
        if as_json:
            keep = ("mode", "events_replayed", "anomalies", "anomalies_total", "anomaly_rate", "unexplained_anomalies",
                    "unexplained_anomaly_rate", "invariants_ok", "fidelity", "lock_sections", "calibration",
                    "free_pages", "zones", "initial_state", "end_snapshot", "invariants")
            print(json.dumps({k: s[k] for k in keep if k in s}, indent=2, sort_keys=True, default=str))
        else:
            _print_summary(s)
