"""The scanner's entry points as written: numba compiles them (they stay plain Python with
``PAGEREPLAY_JIT=0``), and the ahead-of-time build (``aot.py``) is compiled from them.

Importing this module imports numba (unless ``PAGEREPLAY_JIT=0``): ``parsers.scan`` only imports
it when no ahead-of-time build can be loaded.
"""

from __future__ import annotations

from .block import scan_block
from .order import per_cpu_order_check, sort_order

#: what ``parsers.scan`` calls, in this module and in the ahead-of-time one
EXPORTS = ("scan_block", "sort_order", "per_cpu_order_check")

__all__ = ["EXPORTS", "per_cpu_order_check", "scan_block", "sort_order"]
