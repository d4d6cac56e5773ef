"""The compiled line scanner behind every text parser.

One pass over a block of text bytes (whole lines only) classifies each line and extracts the
fields of the six kmem page-allocator events into flat arrays (:func:`scan_block`).  The grammar
covers the three text formats (see ``parsers/formats.py`` for what each accepts):

    <comm>-<pid> [(<tgid>)] [<cpu>] [<flags>] <secs>.<frac>: <event>: <k>=<v> ...   ftrace, trace-cmd report
    <comm> <pid>[/<tid>] [<cpu>] <secs>.<frac>: <sys>:<event>: <k>=<v> ...            perf script

Lines the header grammar does not recognise are returned as spans for the Python side to
classify; nothing is dropped here.  Strings (comm, gfp text, names of other events) are interned
per block into small tables whose ids the caller maps to global ids.

==============  ==================================================================
module          what it holds
==============  ==================================================================
``codes``       formats, line counters, malformed reasons, payload keys, word tables
``bytes``       line ends and byte searches (eight bytes at a time under numba)
``header``      the line header: comm, pid, tgid, cpu, flags, timestamp, event name
``payload``     the ``key=value`` fields of a kmem event
``intern``      the per-block string tables
``block``       the pass over a block (``scan_block``)
``order``       the per-CPU time-order check and the sort by (ts, cpu)
``result``      what a block gives back (:class:`ScanResult`)
``kernels``     the entry points as written; ``aot`` builds them ahead of time
==============  ==================================================================

Where the kernels come from (:func:`backend`): a module compiled ahead of time from these very
sources (``aot.py``), loaded without importing numba (a quarter of a second less start-up);
else numba's JIT; with ``PAGEREPLAY_JIT=0`` the same functions run as plain Python.  The choice
is made at the first call; :func:`warm_up` makes it before the worker threads scan, and builds
the ahead-of-time module for the next runs when there is none.  Every kernel releases the GIL,
so two blocks scan in parallel.
"""

from __future__ import annotations

import importlib
import threading
from types import ModuleType

import numpy as np

from ..compiled import JIT_ENABLED
from . import aot
from .codes import FMT_AUTO, FMT_FTRACE, FMT_PERF, MALFORMED_REASONS, N_LINE_COUNTERS
from .result import ScanResult, from_kernel

__all__ = [
    "FMT_AUTO", "FMT_FTRACE", "FMT_PERF", "MALFORMED_REASONS", "N_LINE_COUNTERS", "ScanResult", "backend",
    "per_cpu_order_check", "scan_block", "sort_order", "warm_up",
]  # fmt: skip


class _Kernels:
    """The module the entry points come from (``kernels`` or the ahead-of-time one), chosen once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.mod: ModuleType | None = None
        self.origin = ""
        self.warm = False

    def get(self) -> ModuleType:
        mod = self.mod
        if mod is None:
            with self.lock:
                if self.mod is None:
                    self._choose()
                mod = self.mod
        assert mod is not None
        return mod

    def _choose(self) -> None:
        built = aot.load()  # None in plain Python, with PAGEREPLAY_NO_AOT=1, or before the first build
        if built is not None:
            self.mod, self.origin = built, "aot"
        else:
            self.mod = importlib.import_module(".kernels", __name__)
            self.origin = "jit" if JIT_ENABLED else "python"


_KERNELS = _Kernels()
_LINE = b"x-1 [000] 1.000000: mm_page_free: page=0 pfn=0x1 order=0\n"


def scan_block(arr: np.ndarray, nbytes: int, fmt: int) -> ScanResult:
    """Scan the whole lines of ``arr[:nbytes]`` (uint8) with line grammar ``fmt`` (``FMT_*``)."""
    if not JIT_ENABLED:  # plain Python: numpy uint8 scalars would wrap in the arithmetic
        arr = arr.astype(np.int64)
    return from_kernel(_KERNELS.get().scan_block(arr, nbytes, fmt))


def per_cpu_order_check(cpu: np.ndarray, ts: np.ndarray, last_ts: np.ndarray, bad_idx: np.ndarray) -> int:
    """Events whose timestamp is below the previous one of the same CPU, in input order.

    ``last_ts`` (int64, by cpu) carries the state across blocks; the first ``len(bad_idx)``
    offending positions are written to ``bad_idx``.
    """
    return int(_KERNELS.get().per_cpu_order_check(cpu, ts, last_ts, bad_idx))


def sort_order(ts: np.ndarray, cpu: np.ndarray, idx: np.ndarray) -> int:
    """Stable argsort by (ts, cpu) of nearly sorted input into ``idx``: 0 already in order (``idx``
    untouched), 1 ``idx`` holds the order, 2 too many inversions (use a real sort)."""
    return int(_KERNELS.get().sort_order(ts, cpu, idx))


def backend() -> str:
    """Where the kernels come from: ``aot`` (built ahead of time), ``jit`` (numba) or ``python``."""
    _KERNELS.get()
    return _KERNELS.origin


def warm_up() -> None:
    """Load the scanner's kernels (compile them once if numba's on-disk cache is cold).

    Idempotent and thread-safe; called before the worker threads scan.  Without an ahead-of-time
    build of these sources, one is made for the next runs (and used from now on).  Each kernel is
    called once with the argument types the parser passes, so it is loaded here rather than in
    the middle of the first block: a bytearray, like the blocks ``LineBlocks`` yields (one
    compiled signature, not two).
    """
    k = _KERNELS
    k.get()
    with k.lock:
        if k.warm:
            return
        if k.origin == "jit":
            built = aot.build_and_load()
            if built is not None:
                k.mod, k.origin = built, "aot"
        res = scan_block(np.frombuffer(bytearray(_LINE), np.uint8), len(_LINE), FMT_AUTO)
        ts, cpu = res.events.ts[: res.n_events], res.events.cpu[: res.n_events]
        per_cpu_order_check(cpu, ts, np.full(1, np.iinfo(np.int64).min, np.int64), np.empty(1, np.int64))
        sort_order(ts, cpu, np.empty(res.n_events, np.int64))
        k.warm = True
