"""The project's error hierarchy.  Only the CLI turns these into messages and exit codes."""

from __future__ import annotations


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
