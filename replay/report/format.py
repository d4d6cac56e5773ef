"""How figures are written for people: durations, sizes, one summary value."""

from __future__ import annotations

import math
from typing import Any


def human_ns(v: float | int | None) -> str:
    """A duration in ns in the largest unit that keeps it >= 1 (``1.50 ms``)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    v = float(v)
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:,.2f} {unit}"
    return f"{v:,.0f} ns"


def human_bytes(v: float | int | None) -> str:
    """A size in bytes in the largest binary unit that keeps it >= 1 (``1.50 GiB``)."""
    if v is None:
        return "-"
    v = float(v)
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(v) >= scale:
            return f"{v / scale:,.2f} {unit}"
    return f"{v:,.0f} B"


def metric(key: str, v: Any) -> str:
    """A summary column's value, by its name's unit suffix (``_ns``, ``_bytes``)."""
    if isinstance(v, bool) or v is None:
        return str(v)
    if key.endswith("_ns"):
        return human_ns(v)
    if key.endswith("_bytes"):
        return human_bytes(v)
    return f"{v:,}" if isinstance(v, int) else f"{v:.4g}"
