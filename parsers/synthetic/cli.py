"""``pagereplay synth``: wiring only (the lead adds ``register(app)`` to ``replay/cli/__init__.py``)."""

from __future__ import annotations

import functools
import inspect
import json
import os
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..errors import PagereplayError
# the heavy modules (numba, polars) are imported when the command runs, not when the CLI starts
FORMATS = ("ftrace", "trace-cmd", "perf")  # == render.FORMATS (checked in tests)
ERAS = ("A", "B", "C", "D")  # == render.ERAS
WORKLOAD_NAMES = ("boot", "churn", "fault-in", "fork-storm", "page-cache")  # == workloads.WORKLOADS

_out = Console(highlight=False, soft_wrap=True)
_err = Console(stderr=True, highlight=False, soft_wrap=True)

_WORKLOADS = ", ".join([*WORKLOAD_NAMES, "mix", "custom"])


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
    _synth(dict(STANDIN_ONLY), "standin", workload, output, param, config, seed, events, duration, cpus, memory, text,
           fmt, era, trace_pipe, compare_to, compare_out, compare_chart, emitter)  # fmt: skip


def _synth(emitters, default, workload, output, param, config, seed, events, duration, cpus, memory, text, fmt, era,
           trace_pipe, compare_to, compare_out, compare_chart, emitter) -> None:  # fmt: skip
    try:
        _run(workload, output, param or [], config, seed, events, duration, cpus, memory, text, fmt, era, trace_pipe,
             compare_to, compare_out, compare_chart, emitter or default, emitters)  # fmt: skip
    except (PagereplayError, ValueError, OSError) as e:
        if os.environ.get("PAGEREPLAY_DEBUG"):
            raise
        _err.print(f"[bold red]error:[/] {escape(str(e))}", markup=True, highlight=False)
        raise typer.Exit(1) from None


#: emitter name -> factory (``pipeline.EmitterFactory``); None = the stand-in.  The replay side adds
#: ``engine`` through :func:`register` (parsers/ never imports replay/).
STANDIN_ONLY: dict[str, object] = {"standin": None}


def _check_outputs(output, text, inputs) -> None:
    """No output replaces an input, the other output, or a file pagereplay did not write (a text
    trace cannot be told from a real one: an existing --text file is refused)."""
    from ..api import check_parquet_output
    from ..errors import refuse_clobber, refuse_foreign

    check_parquet_output(output, inputs)
    if text is not None:
        refuse_clobber(text, [*inputs, output], option="--text")
        refuse_foreign(text, False, "a trace", option="--text")


def _run(workload, output, params, config, seed, events, duration, cpus, memory, text, fmt, era, trace_pipe,
         compare_to, compare_out, compare_chart=None, emitter="standin", emitters=None) -> None:  # fmt: skip
    from .config import SynthConfigError, load_config, parse_param_overrides, parse_size
    from .pipeline import render_parquet, write_parquet
    from .render import RenderOptions

    emitters = emitters or dict(STANDIN_ONLY)
    if emitter not in emitters:
        raise SynthConfigError(f"--emitter {emitter!r}: use one of {', '.join(emitters)}")
    if fmt not in FORMATS:
        raise SynthConfigError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
    if era not in ERAS:
        raise SynthConfigError(f"--kernel-era {era!r}: use one of {', '.join(ERAS)}")
    machine: dict = {"seed": seed, "cpus": cpus, "duration_s": duration}
    if memory is not None:
        machine["memory"] = parse_size(memory, "--memory")
    if events is not None:
        machine["events"] = events
    elif duration is not None:
        machine["events"] = None
    cfg = load_config(config, workload=workload, overrides=parse_param_overrides(params), machine=machine)
    _check_outputs(output, text, [config, compare_to])
    t0 = time.perf_counter()
    md = write_parquet(cfg, output, emitter=emitters[emitter])  # type: ignore[arg-type]
    dt = time.perf_counter() - t0
    n = int(md["pagereplay.synthetic.events"])
    req = json.loads(md["pagereplay.synthetic.requests"])
    _out.print(
        f"{cfg.workload}: {req['alloc'] + req['free']:,} requests -> {n:,} events in {dt:.2f}s "
        f"({n / max(dt, 1e-9) / 1e6:.2f}M events/s, {emitter} emitter) -> {output}"
    )
    if text is not None:
        t0 = time.perf_counter()
        opts = RenderOptions(fmt=fmt, era=era, header=not trace_pipe)
        nbytes = render_parquet(output, text, opts, nr_cpus=cfg.machine.cpus)
        dt = time.perf_counter() - t0
        _out.print(f"{fmt} text, kernel era {era}: {nbytes:,} bytes in {dt:.2f}s ({n / max(dt, 1e-9) / 1e6:.2f}M lines/s) -> {text}")
    if compare_to is not None:
        _compare(output, compare_to, compare_out, compare_chart)
    elif compare_out is not None or compare_chart is not None:
        raise SynthConfigError("--compare-out/--compare-chart need --compare-to REAL_TRACE")


def comparison_chart(cmp, title: str):  # type: ignore[no-untyped-def]
    """Altair chart of a :func:`compare` table: log2(synthetic / real) per statistic (0 = equal)."""
    import altair as alt
    import polars as pl

    df = cmp.filter((pl.col("synthetic") > 0) & (pl.col("real") > 0)).with_columns(
        (pl.col("synthetic") / pl.col("real")).log(2).alias("log2_ratio"),
        (pl.col("group") + ": " + pl.col("statistic")).alias("stat"),
    )
    return (
        alt.Chart(alt.Data(values=df.to_dicts()), title=title)
        .mark_bar()
        .encode(
            x=alt.X("log2_ratio:Q", title="log2(synthetic / real)  (0 = equal, 1 = twice)"),
            y=alt.Y("stat:N", sort=None, title=None),
            color=alt.Color("group:N"),
            tooltip=["group:N", "statistic:N", "synthetic:Q", "real:Q", "log2_ratio:Q"],
        )
        .properties(width=480)
    )


def _compare(synth_path: Path, real: Path, out: Path | None, chart: Path | None = None) -> None:
    from ..api import load_events
    from .compare import compare, distance

    real_table, _ = load_events(real)
    cmp = compare(str(synth_path), real_table)
    tab = Table(title=f"synthetic {synth_path.name} vs real {real.name}")
    for c in ("group", "statistic", "synthetic", "real", "synthetic/real"):
        tab.add_column(c, justify="right" if c not in ("group", "statistic") else "left")
    fmt = lambda v: "-" if v is None else (f"{v:,.4g}")  # noqa: E731
    for g, s, a, b, r in cmp.iter_rows():
        tab.add_row(g, s, fmt(a), fmt(b), fmt(r))
    _out.print(tab)
    _out.print(f"distance (mean |log ratio| over the fit targets): {distance(cmp):.3f}")
    if out is not None:
        if out.suffix == ".parquet":
            cmp.write_parquet(out)
        elif out.suffix == ".json":
            out.write_text(json.dumps(cmp.to_dicts(), indent=1))
        else:
            cmp.write_csv(out)
    if chart is not None:
        c = comparison_chart(cmp, f"synthetic {synth_path.name} vs real {real.name}")
        if chart.suffix == ".html":
            c.save(str(chart), inline=True)  # offline: the Vega JS is inlined
        else:
            c.save(str(chart))


def register(app: typer.Typer, emitters: dict[str, object] | None = None, default: str | None = None) -> None:
    """Add ``pagereplay synth`` to the application.

    ``emitters`` adds emitter factories by name (``--emitter``; ``standin`` is always there),
    ``default`` picks the one used without ``--emitter`` (default: ``standin``).
    """
    table = {**STANDIN_ONLY, **(emitters or {})}
    dflt = default or "standin"
    if dflt not in table:
        raise ValueError(f"default emitter {dflt!r} is not registered")
    if table == STANDIN_ONLY:
        app.command("synth")(synth)
        return

    @functools.wraps(synth)
    def synth_cmd(*args, **kw):  # type: ignore[no-untyped-def]
        bound = inspect.signature(synth).bind(*args, **kw)
        bound.apply_defaults()
        _synth(table, dflt, **bound.arguments)

    app.command("synth")(synth_cmd)


__all__ = ["STANDIN_ONLY", "register", "synth"]
