"""One-line errors for every ``pagereplay`` command (shared by the CLI modules).

A ``PagereplayError`` (or another expected failure such as a missing file)
becomes one line on stderr and exit status 1; nothing user-caused ends in a
traceback (``PAGEREPLAY_DEBUG=1`` re-raises to show it).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

import typer

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: message`` on stderr; return the ``typer.Exit`` to raise."""
    from rich.console import Console
    from rich.markup import escape

    # the message names user input (a [policy.NAME] table, a path): never read as markup
    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]error:[/] {escape(message)}", markup=True,
                                                                highlight=False)
    return typer.Exit(code)


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
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise fail(msg if isinstance(e, PagereplayError) else f"{type(e).__name__}: {msg}") from None
        except Exception as e:  # a bug, not bad input: still one line, with the way to see more
            if os.environ.get("PAGEREPLAY_DEBUG"):
                raise
            raise fail(f"internal error: {type(e).__name__}: {e} (PAGEREPLAY_DEBUG=1 shows the traceback)") from None

    return wrapper  # type: ignore[return-value]
