"""How the scanner's kernels compile: one decorator for every module of ``parsers/scan``.

With ``PAGEREPLAY_JIT=0`` (``parsers.compiled``) the decorated functions stay the plain Python
they are written in; otherwise numba compiles them (``nogil``, so two blocks scan in parallel)
and caches them in the project cache, in a folder keyed on the scanner's sources
(:func:`sources_digest`): numba only notices an edit of a function's *own* file, not of a helper
it inlined from another module of the package, nor of the event codes it reads as constants.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..compiled import JIT_ENABLED, numba_cache

_HERE = Path(__file__).resolve().parent


@functools.lru_cache(maxsize=1)
def sources_digest() -> str:
    """Digest of every source a scanner kernel is compiled from: this package, the event codes and the field ranges."""
    h = hashlib.sha256()
    for p in [*sorted(_HERE.glob("*.py")), _HERE.parent / "schema.py", _HERE.parent / "ranges.py"]:
        h.update(p.name.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


def kernel(**opts: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``numba.njit(cache=True, nogil=True, **opts)``, or the function itself in plain Python.

    ``inline="always"`` inlines a helper into its callers (numba IR), which costs nothing at run
    time; ``_nrt=False`` compiles a called helper that allocates nothing without numba's
    reference counting (otherwise each call increments and decrements the block's reference
    count with atomic instructions, ~10% of the scan).
    """

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        if not JIT_ENABLED:
            return fn
        import numba

        with numba_cache(f"scan/{sources_digest()}"):
            return numba.njit(cache=True, nogil=True, **opts)(fn)

    return deco
