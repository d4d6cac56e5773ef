"""Sizes as users write them: ``8192``, ``"2M"``, ``"4KiB"``, ``"1G"`` (binary units) -> bytes.

The one size parser of the project; it lives in the bottom layer so that the parsers, the
synthetic workloads and the replay read sizes the same way.  The caller names what is being
read (``where``) and the error to raise, so each configuration keeps its own error type.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["parse_size"]

_SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMGT]?)(i?B)?\s*$", re.IGNORECASE)
_SUFFIX = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(value: Any, *, where: str = "<value>", error: type[Exception] = ValueError) -> int:
    """Bytes from an int or a string such as ``"2M"``, ``"4KiB"``, ``"1G"`` (binary units).

    A whole number of bytes, or of K/M/G/T with an optional ``B`` or ``iB``; anything else
    (a bool, a fraction, another unit) raises ``error`` with a message starting ``where:``.
    """
    if isinstance(value, bool):
        raise error(f"{where}: expected a size (bytes or e.g. \"2M\"), got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        m = _SIZE_RE.match(value)
        if m:
            return int(m.group(1)) * _SUFFIX[m.group(2).upper()]
    raise error(f"{where}: expected a size (bytes or e.g. \"2M\", \"4K\"), got {value!r}")
