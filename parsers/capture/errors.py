"""Errors of ``pagereplay record`` and of reading capture folders (one-line messages).

All derive from ``parsers.errors.PagereplayError``, so the CLI prints them as one line and
exits non-zero.
"""

from __future__ import annotations

from parsers.errors import PagereplayError


class CaptureError(PagereplayError):
    """A capture cannot start or complete (nothing half-done is left behind)."""


class NotRootError(CaptureError):
    """Tracing needs root (CAP_SYS_ADMIN for tracefs writes, kallsyms, /proc/pagetypeinfo)."""


class TracefsError(CaptureError):
    """No tracefs, or a tracefs file cannot be read or written."""


class MissingEventError(CaptureError):
    """A required trace event does not exist on this kernel."""


class CaptureAborted(CaptureError):
    """The capture was stopped by a signal before it completed (settings restored, no output)."""

    def __init__(self, message: str, signum: int | None = None) -> None:
        super().__init__(message)
        self.signum = signum


class CaptureFolderError(PagereplayError):
    """A folder is not a readable capture folder (no trace file in it, unreadable manifest...)."""
