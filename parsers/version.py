"""The tool's version, as the installed distribution names it (``0+src`` in a bare source tree).

Imports nothing but ``importlib.metadata``: the capture code (``parsers.capture``), which runs in
guests with a minimal Python, records it in ``manifest.json``.
"""

from __future__ import annotations


def tool_version() -> str:
    try:
        from importlib.metadata import version

        return version("pagereplay")
    except Exception:  # pragma: no cover - running from a source tree without metadata
        return "0+src"


#: recorded as ``pagereplay.tool_version`` in every Parquet file pagereplay writes
TOOL_VERSION = tool_version()

__all__ = ["TOOL_VERSION", "tool_version"]
