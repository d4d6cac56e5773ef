"""The project's error hierarchy.  Only the CLI turns these into messages and exit codes."""

from __future__ import annotations

from collections.abc import Iterable
from os import PathLike
from pathlib import Path


class PagereplayError(Exception):
    """Root of every error pagereplay reports to a user (one line, no traceback)."""


class TraceInputError(PagereplayError):
    """An input file cannot be opened, decompressed or read as text."""


class TraceFormatError(PagereplayError):
    """The input is readable but is not a trace pagereplay knows, or holds no page-allocator events."""


class StrictModeError(PagereplayError):
    """``--strict`` was given and some lines were malformed."""


class SchemaMismatchError(PagereplayError):
    """A Parquet file does not hold the canonical event table."""


class OutputClobberError(PagereplayError, ValueError):
    """An output path names one of the command's inputs, or an existing file pagereplay did not write."""


def _relation(out: Path, inp: Path) -> str | None:
    """How ``out`` overlaps the input ``inp`` (the same file or folder, a path inside the folder
    ``inp``, a folder holding ``inp``), or None."""
    import os

    try:
        if out.exists() and inp.exists() and os.path.samefile(out, inp):
            return f"names the input {inp}"
    except OSError:
        pass
    o, i = out.resolve(), inp.resolve()
    if o == i:
        return f"names the input {inp}"
    if inp.is_dir() and o.is_relative_to(i):
        return f"lies inside the input folder {inp}"
    if out.is_dir() and i.is_relative_to(o):
        return f"is a folder holding the input {inp}"
    return None


def refuse_clobber(output: str | PathLike[str], inputs: Iterable[str | PathLike[str] | None], *,
                   option: str = "-o") -> None:
    """Raise :class:`OutputClobberError` if ``output`` is one of ``inputs`` (the same file, a path inside
    an input folder, or a folder holding an input): no command writes over or into what it reads."""
    out = Path(output)
    for inp in inputs:
        if inp is None or str(inp) == "-":
            continue
        how = _relation(out, Path(inp))
        if how:
            raise OutputClobberError(f"{out}: {option} {how}; an output never replaces or goes into an input "
                                     "(choose another path)")


def refuse_foreign(output: str | PathLike[str], ours: bool, what: str, *, option: str = "-o") -> None:
    """Raise :class:`OutputClobberError` if ``output`` exists and is not ``ours`` (a ``what`` pagereplay
    wrote, which a new run may replace)."""
    out = Path(output)
    if out.exists() and not ours:
        raise OutputClobberError(f"{out}: {option} exists and is not {what} pagereplay wrote; remove it "
                                 "or choose another path")
