"""The real ``pagereplay`` application, invoked in-process (``typer.testing.CliRunner``)."""

from __future__ import annotations

from typing import Any

from typer.testing import CliRunner


def invoke(*args: object) -> Any:
    """``pagereplay ARGS...``: the click result (exit code, output)."""
    from replay.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def run_ok(*args: object) -> str:
    """``pagereplay ARGS...``, which must succeed: its output."""
    r = invoke(*args)
    assert r.exit_code == 0, r.output
    return r.output
