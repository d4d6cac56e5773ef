"""Where compiled code comes from, for the whole project: one switch and one cache folder.

``PAGEREPLAY_JIT=0`` (or ``pure``/``false``/``no``) runs every compiled function of the project
(the parser's scanner and the replay's kernels) as the plain Python it is written in.
``PAGEREPLAY_NO_AOT=1`` keeps numba but skips the scanner built ahead of time.

Compiled artefacts (numba's on-disk cache, the ahead-of-time scanner) live in the user's cache
folder, never next to the installed package: ``$PAGEREPLAY_CACHE_DIR``, else
``$XDG_CACHE_HOME/pagereplay``, else ``~/.cache/pagereplay``; when none of these can be
written, a folder of this user's under the system temporary directory.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

JIT_ENABLED = os.environ.get("PAGEREPLAY_JIT", "1").strip().lower() not in ("0", "pure", "false", "no", "off")


def aot_enabled() -> bool:
    """The scanner built ahead of time may be used (and built)."""
    return JIT_ENABLED and os.environ.get("PAGEREPLAY_NO_AOT") != "1"


def _candidates() -> list[Path]:
    env = os.environ.get("PAGEREPLAY_CACHE_DIR")
    if env:
        return [Path(env)]
    home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return [Path(home) / "pagereplay", Path(tempfile.gettempdir()) / f"pagereplay-{uid}"]


def cache_root(sub: str) -> Path | None:
    """A writable folder ``sub`` of the project's cache (created), or None when none can be made."""
    for base in _candidates():
        d = base / sub
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(d, os.W_OK | os.X_OK):
            return d
    return None


@contextlib.contextmanager
def numba_cache(sub: str) -> Iterator[None]:
    """numba functions decorated inside this block cache to ``numba/<sub>`` of the project cache.

    numba picks a function's cache folder when it is decorated (from ``numba.config.CACHE_DIR``),
    so each family of kernels keys its own folder; ``NUMBA_CACHE_DIR`` wins.
    """
    import numba

    if os.environ.get("NUMBA_CACHE_DIR"):
        yield
        return
    d = cache_root(f"numba/{sub}")
    old = numba.config.CACHE_DIR
    if d is not None:
        numba.config.CACHE_DIR = str(d)
    try:
        yield
    finally:
        numba.config.CACHE_DIR = old
