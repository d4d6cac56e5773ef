"""``pagereplay report`` / ``chart`` / ``results``: wiring only (replay.report.html and replay.report.charts do the work).

``register(app)`` adds the commands to the lead's typer app.  Every expected failure is a one-line
message on stderr and exit status 1 (``PAGEREPLAY_DEBUG=1`` re-raises); unknown chart kinds and
output types exit 2 with the valid choices.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from replay.cli.errors import fail, friendly_errors


CHART_SUFFIXES = (".html", ".png", ".svg", ".json")


_fail = fail  # shared with the other commands (replay/cli/errors.py)
_one_line_errors = friendly_errors


# a light copy for the help text, so building the CLI does not import altair (tested equal to charts.CHART_KINDS)
CHART_KIND_NAMES = ("policy-comparison", "added-latency", "lock-hold", "acceptance", "lock-wait-heatmap",
                    "top-processes", "free-pages", "irqs-off")


def _kinds() -> list[str]:
    from replay.report.charts import CHART_KINDS

    return list(CHART_KINDS)


def _check_results_dir(results: Path) -> None:
    from replay.results.folder import check_results_folder

    check_results_folder(results)  # a table cut short or foreign: named before anything reads it


def _check_output(output: Path, results: Path) -> None:
    from parsers.errors import refuse_clobber

    refuse_clobber(output, [results])  # never written over, into or around the folder it reads


def register(app: typer.Typer) -> None:
    """Add ``report``, ``chart`` and ``results`` to ``app``."""

    @app.command("report")
    @_one_line_errors
    def report_cmd(
        results: Annotated[Path, typer.Argument(help="Results folder written by `pagereplay replay -o`.")],
        output: Annotated[Path, typer.Option("-o", "--output", help="Folder for index.html and charts/.")] = Path("report"),
        no_images: Annotated[bool, typer.Option("--no-images", help="Skip the PNG/SVG files (faster).")] = False,
    ) -> None:
        """Write one offline HTML page (inputs, summary, every chart, anomalies) plus each chart as PNG and SVG."""
        from replay.report.html import write_report

        _check_results_dir(results)
        _check_output(output, results)
        index = write_report(results, output, images=not no_images)
        print(f"wrote {index}")

    @app.command("chart")
    @_one_line_errors
    def chart_cmd(
        results: Annotated[Path, typer.Argument(help="Results folder written by `pagereplay replay -o`.")],
        kind: Annotated[str, typer.Argument(help="Chart kind: " + ", ".join(CHART_KIND_NAMES) + ".")],
        output: Annotated[Path, typer.Option("-o", "--output", help="Output file: .html (offline), .png, .svg or .json (Vega-Lite).")],
    ) -> None:
        """Write one chart as an offline HTML page, PNG, SVG or its Vega-Lite JSON (by the -o suffix)."""
        from replay.report.html import save_chart

        kinds = _kinds()
        if kind not in kinds:
            raise _fail(f"unknown chart kind {kind!r}; choose one of: {', '.join(kinds)}", 2)
        if output.suffix.lower() not in CHART_SUFFIXES:
            raise _fail(f"{output}: unknown output type {output.suffix or '(none)'!r}; use one of: "
                        f"{', '.join(CHART_SUFFIXES)}", 2)
        _check_results_dir(results)
        _check_output(output, results)
        print(f"wrote {save_chart(results, kind, output)}")

    @app.command("results")
    @_one_line_errors
    def results_cmd(
        results: Annotated[Path, typer.Argument(help="Results folder written by `pagereplay replay -o`.")],
        describe: Annotated[bool, typer.Option("--describe", help="Print the folder layout and what this folder holds.")] = False,
        fmt: Annotated[Optional[str], typer.Option("--format", "-f", help="Export every table: csv.")] = None,
        output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Folder for the exported tables.")] = None,
    ) -> None:
        """Describe a results folder (--describe) or export its tables (--format csv -o DIR)."""
        from replay.report.html import export_csv, results_readme

        if not describe and fmt is None:
            raise _fail("nothing to do: give --describe or --format csv -o DIR", 2)
        _check_results_dir(results)
        if describe:
            sys.stdout.write(results_readme(results))
        if fmt is not None:
            if fmt.lower() != "csv":
                raise _fail(f"unknown --format {fmt!r}; choose one of: csv", 2)
            if output is None:
                raise _fail("--format csv needs -o DIR", 2)
            _check_output(output, results)
            written = export_csv(results, output)
            print(f"wrote {len(written) - 1} CSV tables and metadata.json to {output}")


def register_demo(app: typer.Typer, replay_fn: Callable[[Path, Path], Any]) -> None:
    """Add ``demo`` to ``app``; ``replay_fn(trace, results_dir)`` parses and replays under every policy.

    The lead wires this once replay supports policies (``replay.report.html.run_demo`` documents the
    callable).
    """

    @app.command("demo")
    @_one_line_errors
    def demo_cmd(
        output: Annotated[Path, typer.Option("-o", "--output", help="Folder for results/ and report/.")] = Path("pagereplay-demo"),
        trace: Annotated[Optional[Path], typer.Option("--trace", help="Another trace instead of the bundled sample.")] = None,
        no_images: Annotated[bool, typer.Option("--no-images", help="Skip the PNG/SVG files (faster).")] = False,
    ) -> None:
        """Parse the bundled sample trace, replay it under every policy preset and write the HTML report."""
        from rich.console import Console
        from rich.progress import Progress, SpinnerColumn, TextColumn

        from replay.report.html import run_demo

        err = Console(stderr=True)
        # a spinner only on a terminal: elsewhere rich would leave a blank line on stderr
        with Progress(SpinnerColumn(), TextColumn("[progress.description]{task.description}"), transient=True,
                      console=err, disable=not err.is_terminal) as prog:
            prog.add_task("replaying the sample under every policy and writing the report", total=None)
            index = run_demo(output, replay_fn=replay_fn, trace=trace, images=not no_images)
        print(f"results: {output / 'results'}")
        print(f"report:  {index}")
