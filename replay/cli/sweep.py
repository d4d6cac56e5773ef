"""``pagereplay sweep`` and ``sweep-report``: options in, ``replay.sweep`` / ``replay.report.sweep_charts`` calls, results out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from replay.cli.errors import fail, friendly_errors

#: the axes, for the help text (a light copy: building the CLI imports no replay module; tested
#: equal to replay.sweep.spec.AXES)
AXIS_NAMES = ("unit", "host_backing", "calls_model", "background_budget", "background_rate", "init_threads",
              "guest_size", "vcpus", "firmware_accepted")


def register(app: typer.Typer) -> None:
    """Add ``sweep`` and ``sweep-report`` to ``app``."""

    @app.command("sweep")
    @friendly_errors
    def sweep_cmd(
        traces: Annotated[list[str] | None, typer.Argument(help="Trace files, capture folders or globs (or traces = [...] in --spec).")] = None,
        output: Annotated[Path, typer.Option("-o", "--output", help="Sweep folder: hive-partitioned Parquet, summary.parquet (docs/sweep.md); a rerun resumes.")] = Path("sweep"),
        policy: Annotated[list[str] | None, typer.Option("--policy", help="Policies (repeatable, or a,b,c; 'all': every preset); default: every preset.")] = None,
        costs: Annotated[list[str] | None, typer.Option("--costs", help="Cost presets or .toml files (repeatable, or a,b); default: tdx-4k.")] = None,
        axis: Annotated[list[str] | None, typer.Option("--axis", help="NAME=V1,V2,... or ranges A..B, A..B+STEP, A..B*FACTOR (repeatable). Axes: " + ", ".join(AXIS_NAMES) + ".")] = None,
        spec: Annotated[Path | None, typer.Option("--spec", help="Sweep spec TOML (the options above replace its values).")] = None,
        jobs: Annotated[int | None, typer.Option("--jobs", "-j", min=1, help="Local worker processes (default: the CPU count), or Ray tasks at once (default: the cluster's CPUs).")] = None,
        ray: Annotated[str | None, typer.Option("--ray", help="Run as Ray tasks: auto (the cluster `ray start` made), ADDRESS (host:port), or local (a private Ray on this machine). Needs pip install 'pagereplay\\[ray]'.")] = None,
        mode: Annotated[str | None, typer.Option("--mode", help="exact (default) or simulate.")] = None,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print what the run did as JSON.")] = False,
    ) -> None:
        """Replay traces x policies x cost presets x the axes of the design space; resumable."""
        from replay.sweep.execute import run_sweep
        from replay.sweep.spec import spec_from_cli

        if not traces and spec is None:
            raise fail("give TRACE... or --spec sweep.toml", 2)
        s = spec_from_cli(traces, policies=policy, costs=costs, axes=axis, spec_file=spec, mode=mode)
        res = run_sweep(s, output, jobs=jobs, ray=ray, progress=False if quiet or as_json else None)
        if as_json:
            print(json.dumps({"out": str(res.out), "points": res.points, "skipped": res.skipped, "ran": res.ran,
                              "failed": res.failed, "wall_s": round(res.wall_s, 3),
                              "points_per_s": round(res.points_per_s, 3), "executor": res.executor,
                              "workers": res.workers, "failures": [list(f) for f in res.failures]}, indent=1))
            return
        print(f"{res.points:,} points: {res.skipped:,} already done, {res.ran:,} replayed "
              f"({res.executor}, {res.workers} worker{'s' if res.workers != 1 else ''}) in {res.wall_s:.1f} s, "
              f"{res.points_per_s:.1f} points/s")
        if res.failed:
            print(f"{res.failed:,} points failed (status and error in summary.parquet); first ones:")
            for name, err in res.failures[:5]:
                print(f"  {name}: {err}")
        print(f"summary: {res.out / 'summary.parquet'}")

    @app.command("sweep-report")
    @friendly_errors
    def sweep_report_cmd(
        sweep_dir: Annotated[Path, typer.Argument(help="Sweep folder written by `pagereplay sweep -o`.")],
        output: Annotated[Path | None, typer.Option("-o", "--output", help="Folder for index.html and charts/ (default: DIR/report).")] = None,
    ) -> None:
        """Charts of a sweep (cost against each axis, heatmaps over two axes, the Pareto front) as one offline HTML page."""
        from replay.report.sweep_charts import write_sweep_report

        if not sweep_dir.is_dir():
            raise fail(f"{sweep_dir}: no such sweep folder (write one with `pagereplay sweep TRACE... -o {sweep_dir}`)")
        print(f"wrote {write_sweep_report(sweep_dir, output)}")
