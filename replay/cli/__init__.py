"""The ``pagereplay`` command line: wiring only.

Every command turns a ``PagereplayError`` (or another expected failure such
as a missing file) into a one-line message on stderr and exit status 1;
nothing user-caused ends in a traceback (``PAGEREPLAY_DEBUG=1`` shows it).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from replay.cli.errors import OneLineErrors, fail, friendly_errors

app = typer.Typer(
    cls=OneLineErrors,  # option errors are one line too
    name="pagereplay",
    help="Replay Linux page-allocator traces through a buddy-allocator model under memory-acceptance policies.",
    rich_markup_mode="rich",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(highlight=False, soft_wrap=True)
if not out.is_terminal:  # piped or captured: don't squeeze wide tables into 80 columns
    out = Console(highlight=False, soft_wrap=True, width=160)
err = Console(stderr=True, highlight=False, soft_wrap=True)


FormatOpt = Annotated[
    Optional[str],
    typer.Option("--format", "-f", help="Input format: ftrace, trace-cmd or perf (default: detect per file)."),
]


def _check_format(fmt: str | None) -> None:
    from parsers.formats import FORMATS

    if fmt is not None and fmt not in FORMATS:
        raise fail(f"unknown --format {fmt!r}; choose one of: {', '.join(FORMATS)}", 2)


def _progress_callback(paths: list[str]):
    """A rich progress bar over raw input bytes, for long inputs on a terminal."""
    sizes = [Path(p).stat().st_size for p in paths if p != "-" and Path(p).is_file()]
    total = sum(sizes)
    if not err.is_terminal or total < (64 << 20):
        return None, None
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    prog = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )
    task = prog.add_task("parsing", total=total)
    return prog, lambda n: prog.advance(task, n)


def print_accounting(acc: dict[str, Any], console: Console) -> None:
    """Line accounting and per-event counts, as a terminal table."""
    t = Table(title="line accounting", show_header=True, header_style="bold")
    t.add_column("lines")
    t.add_column("count", justify="right")
    for k in ("lines_parsed", "lines_comment", "lines_other_event", "lines_malformed", "lines_total"):
        t.add_row(k.removeprefix("lines_"), f"{acc[k]:,}")
    console.print(t)
    e = Table(title="events", show_header=True, header_style="bold")
    e.add_column("event")
    e.add_column("count", justify="right")
    for k, v in acc["events"].items():
        e.add_row(k, f"{v:,}")
    for k, v in acc["other_events"].items():
        e.add_row(f"[dim]{k} (other)[/]", f"{v:,}")
    console.print(e)
    if acc["failed_allocations"]:
        console.print(f"failed allocations: {acc['failed_allocations']:,}")
    if acc["lost_events"] or acc["lost_markers"]:
        console.print(
            f"[yellow]LOST markers: {len(acc['lost_markers'])} ({acc['lost_events']:,} events lost); "
            "replay treats these as holes[/]"
        )
    if acc["out_of_order_events"]:
        console.print(f"[yellow]timestamps going back within a CPU: {acc['out_of_order_events']:,}[/]")
        for f in acc["files"]:
            for ex in f["out_of_order_examples"][:3]:
                console.print(f"  {ex['file']}:{ex['line']} (cpu {ex['cpu']})")
    if acc["lines_malformed"]:
        reasons = ", ".join(f"{k}: {v:,}" for k, v in acc["malformed_reasons"].items())
        console.print(f"[yellow]malformed lines: {acc['lines_malformed']:,} ({reasons}); first ones:[/]")
        for ex in acc["malformed_examples"]:
            console.print(f"  {ex['file']}:{ex['line']}: {ex['reason']}: {ex['text'][:100]!r}", markup=False)
    for w in acc["warnings"]:
        console.print(f"[yellow]warning:[/] {w}")


@app.command()
@friendly_errors
def parse(
    traces: Annotated[list[str], typer.Argument(help="Trace files (plain, gzip or zstd), capture folders (`pagereplay record`), or - for standard input.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Parquet file to write.")] = Path("events.parquet"),
    fmt: FormatOpt = None,
    strict: Annotated[bool, typer.Option("--strict", help="Exit non-zero if any line is malformed.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the accounting as JSON on stdout.")] = False,
    kernel_version: Annotated[
        Optional[str], typer.Option("--kernel-version", help="Kernel version to record in the metadata (uname -r).")
    ] = None,
) -> None:
    """Parse text traces into the canonical event table (Parquet), accounting for every line."""
    # hash the input files on a side thread while numpy, pyarrow and the compiled scanner load
    # (parsers.inputs imports none of them)
    from parsers.inputs import start_hashers

    hashers = start_hashers(traces)
    try:
        _check_format(fmt)
        from parsers.api import parse_to_parquet

        prog, cb = _progress_callback(traces)
        if prog is not None:
            prog.start()
        try:
            acc = parse_to_parquet(
                traces, output, fmt, strict=strict, kernel_version=kernel_version, on_raw_bytes=cb, hashers=hashers
            )
        finally:
            if prog is not None:
                prog.stop()
    finally:
        for h in hashers.values():
            h.cancel()
    if as_json:
        sys.stdout.write(json.dumps(acc, indent=1, sort_keys=False) + "\n")
        return
    print_accounting(acc, out)
    out.print(f"wrote {acc['events_total']:,} events to {output}")


@app.command()
@friendly_errors
def info(
    trace: Annotated[str, typer.Argument(help="A trace, a capture folder (`pagereplay record`) or the Parquet written by `pagereplay parse`.")],
    fmt: FormatOpt = None,
    top: Annotated[int, typer.Option("--top", help="How many comms / gfp strings to list.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")] = False,
) -> None:
    """Page-allocator statistics (what perf kmem --page and trace-pagealloc-postprocess.pl print) and zone->lock bursts."""
    from parsers.api import is_parquet, load_events
    from parsers.stats import info_summary

    _check_format(fmt)
    table, md = load_events(trace, fmt)
    summary = info_summary(table, top=top)
    acc = md.get("pagereplay.accounting")
    if acc:
        summary["accounting"] = json.loads(acc)
    summary["input"] = {"path": trace, "parquet": is_parquet(trace), "format": md.get("pagereplay.format", "")}
    from parsers.capture.folder import capture_info

    cap = capture_info(md)  # a capture folder (or its parse): the kernel and the ring-buffer overruns
    if cap:
        summary["capture"] = cap
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=1, default=str) + "\n")
        return
    from replay.report.console import render_info

    render_info(summary, out)


@app.command()
def schema(as_json: Annotated[bool, typer.Option("--json", help="Print the schema as JSON.")] = False) -> None:
    """The canonical event table: columns, types, meaning, and the sort order."""
    from parsers.schema import ALL_COLUMNS as COLUMNS  # (with the lock contention / untraced columns)
    from parsers.schema import SCHEMA_VERSION, SORT_KEYS

    if as_json:
        cols = [{"name": c.name, "type": str(c.type), "nullable": c.nullable, "doc": c.doc} for c in COLUMNS]
        sys.stdout.write(json.dumps({"schema_version": SCHEMA_VERSION, "sorted_by": SORT_KEYS, "columns": cols}, indent=1) + "\n")
        return
    t = Table(title=f"canonical event table (schema {SCHEMA_VERSION}), sorted by {', '.join(SORT_KEYS)}", header_style="bold")
    for h in ("column", "type", "null", "meaning"):
        t.add_column(h)
    for c in COLUMNS:
        t.add_row(c.name, str(c.type).replace("dictionary<values=string, indices=", "dict<").replace(", ordered=0>", ">"),
                  "yes" if c.nullable else "", c.doc)
    out.print(t)


@app.command()
def version() -> None:
    """Print the tool and schema versions."""
    from parsers.api import TOOL_VERSION
    from parsers.schema import SCHEMA_VERSION

    out.print(f"pagereplay {TOOL_VERSION} (event schema {SCHEMA_VERSION})")


from replay.cli import policies as _policies  # noqa: E402  (each module adds its commands to app)
from replay.cli import record as _record  # noqa: E402
from replay.cli import replay as _replay  # noqa: E402
from replay.cli import report as _report  # noqa: E402
from replay.cli import sweep as _sweep  # noqa: E402
from replay.cli import synth as _synth  # noqa: E402

for _m in (_replay, _report, _policies, _synth, _record, _sweep):
    _m.register(app)


def main() -> None:  # console-script entry point
    """Run the CLI in a process set up for it (``replay.pipeline.schedule.configure_process``:
    importing this module imports neither NumPy nor Arrow, so the settings precede them), then
    leave without the interpreter's slow teardown of numba/LLVM (~0.3 s).

    Every output file is closed by the time a command returns; stdout and
    stderr are flushed before exiting.
    """
    from replay.pipeline.schedule import configure_process

    configure_process()
    code = 0
    try:
        app()
    except SystemExit as e:
        if isinstance(e.code, int):
            code = e.code
        elif e.code is not None:
            sys.stderr.write(f"{e.code}\n")
            code = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    main()
