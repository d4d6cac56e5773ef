"""``pagereplay policies`` and ``pagereplay costs``: list acceptance policies and cost presets.

Wiring only: the data lives in :mod:`replay.acceptance.policies` and :mod:`replay.acceptance.costs`.  ``register(app)``
adds both commands to the lead's typer app.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from parsers.errors import PagereplayError
from replay.cli.errors import fail, one_line

# piped output (tests, files) gets a wide fixed width so table cells are not truncated
_out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)

_POLICY_COLS = ("trigger", "unit_bytes", "block_order", "guard_unit", "held_during_call",
                "bitmap_locking", "accept_target", "one_block_when_wmark_zero", "unaccepted_unusable",
                "collision", "calls_model", "init_threads")


_SUMMARY_COLS = ("trigger", "unit_bytes", "held_during_call", "bitmap_locking", "accept_target",
                 "collision")


def _fmt_size(n: int) -> str:
    for unit, s in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= s and n % s == 0:
            return f"{n // s}{unit}"
    return str(n)


def _cell(k: str, v: Any) -> str:
    if k == "unit_bytes":
        return _fmt_size(v)
    if isinstance(v, (list, tuple)):
        return "+".join(v) if v else "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return str(v)


def _fail(e: Exception) -> typer.Exit:
    return fail(one_line(e))  # the message names [policy.NAME]: escaped, not read as markup


def register(app: typer.Typer) -> None:
    """Add ``policies`` and ``costs`` to ``app``."""

    @app.command("policies")
    def policies_cmd(
        as_json: Annotated[bool, typer.Option("--json", help="Print every policy as JSON.")] = False,
        file: Annotated[Optional[Path], typer.Option(
            "--file", help="TOML file of \\[policy.NAME] tables to validate and list with the presets.")] = None,
    ) -> None:
        """List the acceptance policies: the ten presets (spec §6) and any from --file."""
        from replay.acceptance.policies import all_policies

        try:
            pols = all_policies([file] if file else [])
        except PagereplayError as e:
            raise _fail(e) from None
        if as_json:
            sys.stdout.write(json.dumps([p.as_dict() for p in pols.values()], indent=1) + "\n")
            return
        t = Table(title="Acceptance policies", box=box.SIMPLE_HEAVY, show_lines=False)
        t.add_column("policy", no_wrap=True, style="bold")
        for c in _SUMMARY_COLS:
            t.add_column(c.replace("_", " "))
        t.add_column("version")
        for p in pols.values():
            d = p.as_dict()
            t.add_row(p.name, *(_cell(c, d[c]) for c in _SUMMARY_COLS), p.kernel_version)
        _out.print(t)
        for p in pols.values():
            d = p.as_dict()
            _out.print(f"[bold]{p.name}[/]: {p.description}"
                       + (f"  [dim](from {p.source})[/]" if p.source != "preset" else ""))
            _out.print("  " + ", ".join(f"{c}={_cell(c, d[c])}" for c in _POLICY_COLS
                                        if c not in _SUMMARY_COLS), markup=False)
            if p.trigger == "background":
                _out.print(f"  background: {p.background_rate_bytes_s / (1 << 20):,.0f} MiB/s, "
                           f"{p.background_cpu_budget:.0%} of a CPU, from {p.background_start_ns / 1e9:g} s",
                           markup=False)
            _out.print(f"  kernel: {p.kernel_ref}; history: {p.history_ref}", markup=False)

    @app.command("costs")
    def costs_cmd(
        as_json: Annotated[bool, typer.Option("--json", help="Print every cost preset as JSON.")] = False,
        file: Annotated[Optional[Path], typer.Option(
            "--file", help="TOML file of \\[costs.NAME] tables (overrides) to validate and list.")] = None,
    ) -> None:
        """List the cost presets: each figure with its source, and the derived cost of one 2 MiB unit."""
        from replay.acceptance.costs import all_costs

        try:
            presets = all_costs([file] if file else [])
        except PagereplayError as e:
            raise _fail(e) from None
        if as_json:
            sys.stdout.write(json.dumps([c.as_dict() for c in presets.values()], indent=1) + "\n")
            return
        for c in presets.values():
            d = c.as_dict()
            t = Table(title=f"{c.name}: {c.description}", box=box.SIMPLE, title_justify="left")
            t.add_column("figure", no_wrap=True)
            t.add_column("value", justify="right", no_wrap=True)
            t.add_column("source")
            for k, v in c.figures().items():
                if k in ("name", "description", "source"):
                    continue
                if isinstance(v, float) and v == 0.0 and k not in c.sources:
                    continue  # the other platform's figures
                t.add_row(k, (f"{v:,.3g}" if v < 100 else f"{v:,.1f}") if isinstance(v, float) else str(v),
                          c.sources.get(k, ""))
            der = d["derived"]
            t.add_row("[dim]= one 2 MiB unit[/]", f"{der['unit_2m_ns'] / 1e3:,.1f} us",
                      f"{der['unit_2m_calls']} firmware calls; one stream "
                      f"{der['single_stream_gib_s']:.2f} GiB/s")
            _out.print(t)
