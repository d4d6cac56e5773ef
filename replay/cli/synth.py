"""``pagereplay synth``: options in, ``parsers.synthetic`` calls, files and a summary out.

Two emitters decide pfns and bursts (``--emitter``): ``engine`` (the default), the replay model
of 6.1 (``replay.synth.emit.EngineEmitter``), and ``standin``, the plain pfn allocator of
``parsers.synthetic.emit``.  parsers/ never imports replay/: the engine is handed to
``parsers.synthetic.pipeline.write_parquet`` as an emitter factory (``replay.synth.engine_emitter``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from replay.cli.errors import friendly_errors
from replay.synth import engine_emitter

# light copies, so that building the CLI imports neither numba nor polars (tested equal to
# parsers.synthetic.render.FORMATS / ERAS and parsers.synthetic.workloads.WORKLOADS)
FORMATS = ("ftrace", "trace-cmd", "perf")
ERAS = ("A", "B", "C", "D")
WORKLOAD_NAMES = ("boot", "churn", "fault-in", "fork-storm", "page-cache")
_WORKLOADS = ", ".join([*WORKLOAD_NAMES, "mix", "custom"])


#: ``--emitter`` name -> emitter factory (``parsers.synthetic.pipeline.EmitterFactory``; None: the stand-in)
EMITTERS: dict[str, Any] = {"standin": None, "engine": engine_emitter}
DEFAULT_EMITTER = "engine"


def register(app: typer.Typer) -> None:
    """Add ``synth`` to ``app``."""

    @app.command("synth")
    @friendly_errors
    def synth(
        workload: Annotated[Optional[str], typer.Argument(help=f"workload: {_WORKLOADS} (default: from --config, else churn)")] = None,
        output: Annotated[Path, typer.Option("-o", "--output", help="Parquet file of the canonical event table")] = Path("trace.parquet"),
        param: Annotated[Optional[list[str]], typer.Option("--param", "-p", help="workload parameter key=value (repeatable)")] = None,
        config: Annotated[Optional[Path], typer.Option("--config", "-c", help=r"TOML file: workload, machine keys, \[params], \[emit], \[\[mix]], \[\[phase]] (docs/synthetic.md)")] = None,
        seed: Annotated[Optional[int], typer.Option(help="random seed (same seed: byte-identical output)")] = None,
        events: Annotated[Optional[int], typer.Option(help="primary requests to generate (allocations and pre-trace frees)")] = None,
        duration: Annotated[Optional[float], typer.Option("--duration", help="trace time to generate, seconds")] = None,
        cpus: Annotated[Optional[int], typer.Option(help="vCPUs")] = None,
        memory: Annotated[Optional[str], typer.Option(help="guest memory, e.g. 4G, 512M, 1T")] = None,
        text: Annotated[Optional[Path], typer.Option("--text", help="also render the trace as kernel text here")] = None,
        fmt: Annotated[str, typer.Option("--format", help=f"text format: {', '.join(FORMATS)}")] = "ftrace",
        era: Annotated[str, typer.Option("--kernel-era", help="kmem format era: A (<4.1), B (4.1-5.13), C (5.14-5.18), D (>=5.19)")] = "D",
        trace_pipe: Annotated[bool, typer.Option("--trace-pipe", help="ftrace: no header (trace_pipe instead of trace)")] = False,
        compare_to: Annotated[Optional[Path], typer.Option("--compare-to", help="real trace (text or Parquet): print statistics side by side")] = None,
        compare_out: Annotated[Optional[Path], typer.Option("--compare-out", help="write the comparison as CSV (or .parquet/.json)")] = None,
        compare_chart: Annotated[Optional[Path], typer.Option("--compare-chart", help="chart the comparison: standalone HTML (or .png/.svg)")] = None,
        emitter: Annotated[Optional[str], typer.Option("--emitter", help="who decides pfns and bursts: engine (the replay model of 6.1, default) or standin (plain pfn allocator)")] = None,
    ) -> None:
        """Generate a synthetic page-allocator trace from a workload model."""
        from parsers.synthetic.config import SynthConfigError, load_config, parse_param_overrides, parse_size
        from parsers.synthetic.pipeline import check_outputs, render_parquet, write_parquet
        from parsers.synthetic.render import RenderOptions

        emitter = emitter or DEFAULT_EMITTER
        for opt, value, known in (("--emitter", emitter, EMITTERS), ("--format", fmt, FORMATS), ("--kernel-era", era, ERAS)):
            if value not in known:
                raise SynthConfigError(f"{opt} {value!r}: use one of {', '.join(known)}")
        if compare_to is None and (compare_out is not None or compare_chart is not None):
            raise SynthConfigError("--compare-out/--compare-chart need --compare-to REAL_TRACE")
        machine: dict = {"seed": seed, "cpus": cpus, "duration_s": duration}
        if memory is not None:
            machine["memory"] = parse_size(memory, "--memory")
        if events is not None:
            machine["events"] = events
        elif duration is not None:
            machine["events"] = None
        cfg = load_config(config, workload=workload, overrides=parse_param_overrides(param or []), machine=machine)
        check_outputs(output, text, [config, compare_to])
        t0 = time.perf_counter()
        md = write_parquet(cfg, output, emitter=EMITTERS[emitter])
        dt = time.perf_counter() - t0
        n = int(md["pagereplay.synthetic.events"])
        req = json.loads(md["pagereplay.synthetic.requests"])
        print(f"{cfg.workload}: {req['alloc'] + req['free']:,} requests -> {n:,} events in {dt:.2f}s "
              f"({n / max(dt, 1e-9) / 1e6:.2f}M events/s, {emitter} emitter) -> {output}")
        if text is not None:
            t0 = time.perf_counter()
            nbytes = render_parquet(output, text, RenderOptions(fmt=fmt, era=era, header=not trace_pipe),
                                    nr_cpus=cfg.machine.cpus)
            dt = time.perf_counter() - t0
            print(f"{fmt} text, kernel era {era}: {nbytes:,} bytes in {dt:.2f}s ({n / max(dt, 1e-9) / 1e6:.2f}M lines/s) -> {text}")
        if compare_to is not None:
            _compare(output, compare_to, compare_out, compare_chart)


def _compare(synth_path: Path, real: Path, out: Path | None, chart: Path | None) -> None:
    """Print the calibration statistics of ``synth_path`` and ``real`` side by side; write them and
    their chart where asked."""
    from rich.console import Console
    from rich.table import Table

    from parsers.api import load_events
    from parsers.synthetic.compare import compare, distance, write_comparison, write_comparison_chart

    real_table, _ = load_events(real)
    cmp = compare(str(synth_path), real_table)
    title = f"synthetic {synth_path.name} vs real {real.name}"
    tab = Table(title=title)
    for c in ("group", "statistic", "synthetic", "real", "synthetic/real"):
        tab.add_column(c, justify="right" if c not in ("group", "statistic") else "left")
    fmt = lambda v: "-" if v is None else (f"{v:,.4g}")  # noqa: E731
    for g, s, a, b, r in cmp.iter_rows():
        tab.add_row(g, s, fmt(a), fmt(b), fmt(r))
    con = Console(highlight=False, soft_wrap=True)
    con.print(tab)
    con.print(f"distance (mean |log ratio| over the fit targets): {distance(cmp):.3f}")
    if out is not None:
        write_comparison(cmp, out)
    if chart is not None:
        write_comparison_chart(cmp, chart, title)


__all__ = ["DEFAULT_EMITTER", "EMITTERS", "register"]
