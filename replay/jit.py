"""The replay's compiled functions: ``@kernel(nrt=...)`` and ``@kernel_entry(nrt=...)``.

Every model, acceptance, policy and results kernel is plain Python compiled by
``numba.njit(cache=True)``; ``PAGEREPLAY_JIT=0`` runs the same functions uncompiled
(``parsers.compiled``).  Each kernel says how it compiles:

- ``nrt=False``: the function never allocates inside compiled code.  Without numba's runtime
  (NRT) the arrays of a namedtuple such as ``ModelState`` are not reference-counted on every
  access (a bounds check on ``st`` costs 0.8 ns instead of 530 ns; the exact loop runs at
  ~20 M events/s instead of ~0.7 M).  Every function it calls must be ``nrt=False`` too.
- ``nrt=True``: it may allocate (``np.zeros`` and friends inside the kernel).

numba's cache lives in the project cache folder, in a subfolder keyed on the source of every
module that can hold a kernel or a constant a kernel reads (``cache_key``): numba itself only
notices when a function's *own* file changes, not when a function it inlined from another
module does, so a stale ``pcp_del`` could otherwise survive inside ``exact_chunk``.
``NUMBA_CACHE_DIR`` wins.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from parsers.compiled import JIT_ENABLED, cache_root

__all__ = ["JIT_ENABLED", "cache_key", "kernel", "kernel_entry"]

_PACKAGE = Path(__file__).resolve().parent
#: packages that hold no kernel and no constant a kernel reads (imports run one way: a kernel
#: module never imports them), so editing them keeps the cache
_PRESENTATION = ("cli", "report")
_cache_dir_set = False


def _kernel_sources() -> list[Path]:
    files = [p for p in _PACKAGE.rglob("*.py") if p.relative_to(_PACKAGE).parts[0] not in _PRESENTATION]
    files.append(_PACKAGE.parent / "parsers" / "schema.py")  # event codes
    return sorted(files)


def cache_key() -> str:
    """Digest of every kernel source (see the module docstring)."""
    h = hashlib.sha256()
    for p in _kernel_sources():
        h.update(str(p.relative_to(_PACKAGE.parent)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


def _set_cache_dir(numba: Any) -> None:
    global _cache_dir_set
    if _cache_dir_set or os.environ.get("NUMBA_CACHE_DIR"):
        return
    d = cache_root(f"numba/{cache_key()}")
    if d is not None:
        numba.config.CACHE_DIR = str(d)
    _cache_dir_set = True


def _compile(fn: Callable[..., Any], nrt: bool, nogil: bool) -> Callable[..., Any]:
    if not JIT_ENABLED:
        return fn
    import numba

    _set_cache_dir(numba)
    opts: dict[str, Any] = {"cache": True}
    if nogil:
        opts["nogil"] = True
    if not nrt:
        opts["_nrt"] = False
    return numba.njit(**opts)(fn)


def kernel(*, nrt: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A compiled model function, inlined into the compiled functions that call it."""
    return lambda fn: _compile(fn, nrt, nogil=False)


def kernel_entry(*, nrt: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A compiled entry point called from Python: it releases the GIL, so policy replays in
    threads and the warm-up beside the trace reader run in parallel."""
    return lambda fn: _compile(fn, nrt, nogil=True)
