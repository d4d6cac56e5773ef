"""The replay layer's error root: what a replay, its inputs or its results folder reject.

Raised with a message naming the input (file, table, key or option) and what is wrong; the CLI
(``replay/cli/errors.py``) alone turns it into the one-line message and the exit status.
"""

from __future__ import annotations

from parsers.errors import OutputClobberError as _OutputClobber
from parsers.errors import PagereplayError


class ReplayError(PagereplayError, ValueError):
    """Root of the replay layer's errors (a ``ValueError`` too, for callers that catch that)."""


class ReplayInputError(ReplayError):
    """A replay's input (events table, snapshot, option value) cannot be replayed as given."""


class ResultsFolderError(ReplayError):
    """A results folder's table is missing, cut short or not one pagereplay wrote."""


class OutputClobberError(ReplayError, _OutputClobber):
    """An output path names one of the command's inputs, or a file the command did not write."""
