"""``pagereplay replay``, ``compare`` and ``demo``: options in, library calls, printed results."""

from __future__ import annotations

import enum
import json
import os
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from replay.cli.errors import fail, friendly_errors


class Mode(str, enum.Enum):
    exact = "exact"
    simulate = "simulate"


#: the baseline's summary keys ``replay --json`` prints for a plain (single-policy) replay
PLAIN_JSON_KEYS = ("mode", "events_replayed", "anomalies", "anomalies_total", "anomaly_rate", "unexplained_anomalies",
                   "unexplained_anomaly_rate", "invariants_ok", "fidelity", "lock_sections", "calibration",
                   "free_pages", "zones", "initial_state", "end_snapshot", "invariants", "invariant_checks",
                   "capture", "events_not_replayed", "kprobes",  # (only for capture folders / such rows)
                   "kernel_profile", "kernel_profile_source")


def _console() -> Any:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True, width=170)


def _print_json(s: dict[str, Any]) -> None:
    rows = s["policies"]
    if len(rows) == 1:
        obj = {k: v for k, v in rows[0].items() if k != "anomalies"}
        obj.update({k: s[k] for k in PLAIN_JSON_KEYS if k in s})
        print(json.dumps(obj, indent=2, sort_keys=True, default=str))
    else:
        print(json.dumps(rows, indent=2, default=str))


def register(app: typer.Typer) -> None:
    """Add ``replay``, ``compare`` and ``demo`` to ``app``."""

    @app.command("replay")
    @friendly_errors
    def replay_cmd(
        trace: Annotated[Path, typer.Argument(help="Text trace (ftrace/trace-cmd/perf), trace.dat/perf.data, the Parquet from `pagereplay parse`, or a capture folder (`pagereplay record`: its trace, proc_before/ and proc_after/ are used).")],
        output: Annotated[Path, typer.Option("-o", "--output", help="Results folder (docs/results.md: one Parquet table per file).")],
        mode: Annotated[Mode, typer.Option("--mode", help="exact: apply the trace's pfns; simulate: the model chooses them.")] = Mode.exact,
        snapshot: Annotated[Optional[Path], typer.Option("--snapshot", help="/proc snapshot folder taken before the trace (proc_before/).")] = None,
        end_snapshot: Annotated[Optional[Path], typer.Option("--end-snapshot", help="/proc snapshot after the trace: compare free pages per zone/order.")] = None,
        check_every: Annotated[int, typer.Option("--check-every", help="Also check the model's invariants every N events of the baseline replay (0: only at the end of every policy's replay).", min=0)] = 0,
        as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
        guest_size: Annotated[Optional[str], typer.Option("--guest-size", help="Guest RAM (e.g. 4G) when no snapshot gives the layout.")] = None,
        cpus: Annotated[Optional[int], typer.Option("--cpus", help="vCPU count override.")] = None,
        boot: Annotated[Optional[bool], typer.Option("--boot/--no-boot", help="Start from the boot layout (default: guessed).")] = None,
        policy: Annotated[Optional[list[str]], typer.Option("--policy", help="Acceptance policy (repeatable); default: none only.")] = None,
        all_policies: Annotated[bool, typer.Option("--all-policies", help="Every preset (and every policy of --policies-file).")] = False,
        costs: Annotated[str, typer.Option("--costs", help="Cost preset name (tdx-2m, tdx-4k, snp-2m, snp-4k) or a TOML file.")] = "tdx-4k",
        policies_file: Annotated[Optional[Path], typer.Option("--policies-file", help="TOML file with \\[policy.NAME] tables.")] = None,
        workers: Annotated[int, typer.Option("--workers", help="Parallelism for the policies after none: exact mode runs them as threads that follow the baseline (1: one after the other); simulate mode in this many forked processes (at most the CPU count; each holds ~120 bytes per event).", min=1)] = 2,
        all_events: Annotated[bool, typer.Option("--all-events", help="events.parquet: one row per input event for every policy (default: only the events a policy charged something to, unless the plain-VM baseline runs alone).")] = False,
        kernel: Annotated[Optional[str], typer.Option("--kernel", "--kernel-version", help="Kernel profile (6.1, 6.12, 6.18, 7.3) or release (uname -r); default: the trace's metadata (capture folder uname.txt, parse --kernel-version), else a trace heuristic (docs/kernel-profiles.md).")] = None,
    ) -> None:
        """Replay a page-allocator trace through the buddy + per-CPU list model, under acceptance policies."""
        from replay.pipeline.job import run_replay

        if not trace.exists():
            raise fail(f"{trace}: no such file")
        if policy and all_policies:
            raise fail("give --policy or --all-policies, not both")
        if trace.is_dir():  # a capture folder: its snapshots unless given
            from parsers.capture.folder import read_capture_folder

            cf = read_capture_folder(trace)
            snapshot = snapshot if snapshot is not None else cf.proc_before
            end_snapshot = end_snapshot if end_snapshot is not None else cf.proc_after
        s = run_replay(trace, mode.value, output, snapshot=snapshot, end_snapshot=end_snapshot, guest_size=guest_size,
                       cpus=cpus, boot=boot, policies=policy, all_presets=all_policies, costs=costs,
                       policies_file=policies_file, workers=max(1, min(os.cpu_count() or 1, workers)),
                       all_events=all_events, check_every=check_every, kernel=kernel)
        if as_json:
            _print_json(s)
            return
        from replay.report.console import print_policies, print_replay_summary

        c = _console()
        print_replay_summary(s, c)
        print_policies(s["policies"], output, c)

    @app.command("compare")
    @friendly_errors
    def compare_cmd(
        results: Annotated[list[Path], typer.Argument(help="One results folder (its policies side by side, deltas against none) or two (RESULTS_A RESULTS_B: policy by policy, deltas B - A).")],
        as_json: Annotated[bool, typer.Option("--json", help="Rows and deltas as JSON.")] = False,
    ) -> None:
        """Policies side by side with deltas against none, or two results folders side by side (two kernels, traces or cost presets) with deltas B - A."""
        from rich.console import Console

        from replay.results.compare import COMPARE_KEYS, compare_folders, compare_rows, read_summary, to_json

        if len(results) > 2:
            raise fail(f"compare takes one or two results folders, not {len(results)}", 2)
        from replay.results.folder import check_results_folder

        for r in results:  # a table cut short or foreign: named before anything reads it
            check_results_folder(r)
        if len(results) == 2:
            cmp = compare_folders(results[0], results[1])
            if as_json:
                print(to_json(cmp))
                return
            from replay.report.console import print_compare_folders

            print_compare_folders(cmp, Console(highlight=False, soft_wrap=True, width=140))
            return
        cmp = compare_rows(read_summary(results[0]))
        if as_json:
            print(to_json(cmp))
            return
        from replay.report.console import print_compare

        print_compare(cmp, COMPARE_KEYS, Console(highlight=False, soft_wrap=True,
                                                 width=max(120, 24 + 22 * len(cmp["policies"]))))

    from replay.cli.report import register_demo

    register_demo(app, _demo_replay)


def _demo_replay(trace: Path, results_dir: Path) -> dict[str, Any]:
    from replay.pipeline.demo import demo_replay  # (NumPy and numba load when the demo runs)

    return demo_replay(trace, results_dir)
