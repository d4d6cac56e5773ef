"""One-line errors for every ``pagereplay`` command (shared by the CLI modules): the CLI edge.

Each layer raises its own root (``parsers.errors.PagereplayError`` and its subclasses, such as
``replay.errors.ReplayError``), with a message naming the input (file, line or offset, table,
key) and what is wrong.  Here, and only here, it becomes ``error: <message>`` on one line of
stderr and a non-zero exit status; so do option errors (typer's usage errors, through
:class:`OneLineErrors`).  Nothing user-caused ends in a traceback (``PAGEREPLAY_DEBUG=1``
re-raises to show it), and no user text is read as rich markup.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import typer
from typer.core import TyperGroup

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: message`` on stderr; return the ``typer.Exit`` to raise."""
    from rich.console import Console
    from rich.markup import escape

    # the message names user input (a [policy.NAME] table, a path): never read as markup
    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]error:[/] {escape(message)}", markup=True,
                                                                highlight=False)
    return typer.Exit(code)


def one_line(e: BaseException) -> str:
    """The message of an expected failure: its first line, a file named for an ``OSError``."""
    from parsers.errors import PagereplayError

    if isinstance(e, OSError) and not isinstance(e, PagereplayError) and e.filename is not None:
        what = e.strerror or type(e).__name__
        return f"{e.filename}: {what[:1].lower()}{what[1:]}"
    text = str(e).strip()
    msg = text.splitlines()[0] if text else type(e).__name__
    return msg if isinstance(e, PagereplayError) else f"{type(e).__name__}: {msg}"


def friendly_errors(fn: F) -> F:
    """Turn expected failures into one-line messages and a non-zero exit."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from parsers.errors import PagereplayError

        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None
        except (PagereplayError, OSError, ValueError) as e:
            if os.environ.get("PAGEREPLAY_DEBUG"):
                raise
            raise fail(one_line(e)) from None
        except Exception as e:  # a bug, not bad input: still one line, with the way to see more
            if os.environ.get("PAGEREPLAY_DEBUG"):
                raise
            first = (str(e).strip().splitlines() or [""])[0]
            raise fail(f"internal error: {type(e).__name__}: {first} (PAGEREPLAY_DEBUG=1 shows the traceback)") from None

    return wrapper  # type: ignore[return-value]


class OneLineErrors(TyperGroup):
    """The app's command group: a bad option or argument (``--mode bogus``, a missing value) is one
    line on stderr, ``error: <what>; see `pagereplay CMD --help```, exit status 2, like the
    errors the commands raise, instead of click's usage box."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        # typer >= 0.24 carries its own click (typer._click); its exception classes, whichever it is
        click = typer.BadParameter.__module__ and sys.modules[typer.BadParameter.__module__]

        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as e:
            if type(e).__name__ == "NoArgsIsHelpError":  # help was asked for by giving nothing
                from typer import rich_utils

                rich_utils.rich_format_error(e)
                sys.exit(e.exit_code)
            ctx = getattr(e, "ctx", None)
            hint = f"; see `{ctx.command_path} --help`" if ctx is not None and isinstance(e, click.UsageError) else ""
            what = " ".join(e.format_message().split())
            raise SystemExit(fail((what.removesuffix(".") if hint else what) + hint, e.exit_code).exit_code) from None
        except typer.Abort:
            raise SystemExit(fail("aborted", 1).exit_code) from None
        sys.exit(rv if isinstance(rv, int) else 0)
