"""How a multi-policy replay uses the machine: threads, processes, buffers, warm-ups, process tweaks.

Everything here is about time and CPUs, none of it about results: the model and policy code
(``replay.model``, ``replay.policy``) is the same whether it runs here in threads, in forked
processes or one call after the other, and the results are byte-identical either way.

The schedule (``run_policies``)
-------------------------------
``none`` (the plain-VM baseline, ``policies[0]``) always runs first and in full; every other
policy's result depends on it.

*Exact mode, ``workers`` > 1* (the usual case): one thread per policy.

1. The baseline thread replays in full and *records* each event's change of free pages
   (``run_full(recorder=BaselineFeed)``).  Every ``FEED_CHUNK`` events it reports how far it
   got and the *safe point*: every event before it is replayed and every zone->lock section
   opened before it is closed.
2. Each follower thread replays its policy on the baseline's results as they come
   (``run_delta`` with the ``BaselineFeed`` as its ``BaselineSource``): it walks up to the safe
   point, then waits for the next report.  The compiled walks release the GIL, so the
   followers' Python (acceptance round trips) runs beside the baseline.  The followers share
   one fewer CPU than the machine has (a semaphore: ``BaselineFeed.walking``) and run at nice
   ``FOLLOWER_NICE``: the baseline is the critical path, and with ten threads on two CPUs it
   was otherwise preempted thousands of times (each takes its priority back at the end of its
   run, ``_stop_yielding``, where the system lets it: the baseline is done by then).  A follower whose policy accepts nothing
   (``accepts_nothing``) takes the baseline's run with its own boot cost once it is done.
3. The first follower that needs the delta index extends it over the reported events (off
   the baseline's critical path).  Once the baseline is done, its thread builds its tables
   while the followers finish.
4. The end of each run (its lock schedule and charges, its tables and their write) holds
   memory in proportion to the trace's zone->lock sections, ~600 bytes each: ~0.8 GB per
   policy on a 5M-event anomaly-heavy trace, where all ten at once peaked at 6 GB.  A
   ``FinishGate`` lets the runs in, in policy order, as many at once as ``FINISH_BUDGET_BYTES``
   holds (all of them on a well-formed trace); each hands its freed memory back to the system
   when done (``release_free_memory``).  In policy order, the results writer streams each
   run's tables at once rather than holding them for an earlier policy.

*Simulate mode, or one worker*: the baseline here, then the other policies in up to
``workers`` forked processes (each inherits the prepared trace and the baseline through fork,
``_FORKED``, and reuses one ``Arena`` of per-event buffers from one policy to the next; only
the small tables travel back), or one after the other in this process.

Buffers
-------
First touches of fresh memory cost a page fault per 4 KiB (a TLB-shootdown IPI when a zero
page read first is written later), so the baseline's state copy is made on a side thread
while ``prepare`` calibrates, and its per-event output arrays are made and touched on the
(idle) context thread (``PrefaultedBuffers``); forked workers reuse theirs (``Arena``).

Warm-up
-------
numba loads each kernel from its cache on first call (~0.15 s for the first, LLVM start-up):
``warm_exact`` loads ``prepare``'s, the baseline's and the result tables' kernels on a side
thread while Arrow reads the trace (a tiny Parquet trace read the same way, so the array types
match); the followers load theirs in their own threads while the baseline replays.
(``pipeline.demo`` compiles everything once in a child process on a fresh machine, while the
sample trace is parsed.)

Process
-------
``configure_process``, the first thing the command line does (``replay.cli.main``): environment
settings that must precede the imports of NumPy and Arrow (page faults without huge-page
compaction, Arrow's system allocator, one OpenBLAS thread) and collector thresholds for one
batch run.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: ``configure_process`` runs before NumPy is imported
    import numpy as np

#: nice value of the follower threads (Linux: per thread)
FOLLOWER_NICE = 10
#: memory the ends of runs (lock schedule, charges, tables, write) may hold at once
FINISH_BUDGET_BYTES = 768 << 20
#: what the end of one run holds at its peak per zone->lock section of the trace (measured with
#: tracemalloc and Arrow's pool on a 5M-event anomaly-heavy trace: ~1.3M sections, ~0.8 GB)
FINISH_BYTES_PER_SECTION = 600


# ------------------------------------------------------------------ the process
def configure_process() -> None:
    """Settings for one ``pagereplay`` process, made first thing (``replay.cli.main``), before
    NumPy and Arrow are imported (this module imports neither at its top for that reason):

    - Large NumPy arrays are madvised MADV_HUGEPAGE by default; with THP ``defrag=madvise``
      (Debian's default) every such first touch may enter direct compaction, which cost more
      system time than the replay itself on a fragmented guest (3.1 s sys of 3.9 s to prepare
      14.7M events; 0.7 s without): plain 4 KiB faults (``NUMPY_MADVISE_HUGEPAGE=1`` restores it).
    - Arrow buffers from the system allocator, not the bundled mimalloc, whose fresh
      huge-page-backed segments made reading a 15M-event table cost 1.0-2.3 s of system time
      instead of 0.5 s (``ARROW_DEFAULT_MEMORY_POOL=mimalloc`` restores it).
    - OpenBLAS starts a thread per CPU that spins after each call; the replay's only BLAS call
      is a tiny least-squares fit (the calibration), and parsing makes none: the spinning took a
      core's time from the replay threads (~0.1 s per 15M-event run) and from the scanners.
    - Collector thresholds for a short-lived batch run: importing numba and loading its kernels
      makes hundreds of thousands of objects, and the default thresholds ran full collections
      over them (~0.1 s of GIL-held time per replay); cycles are still collected, less often.

    Each environment setting is a default: a value already in the environment wins.
    """
    import gc

    os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    gc.set_threshold(100_000, 50, 100)


def register_arrow_compute() -> None:
    """Arrow (>= 21) registers most compute kernels when ``pyarrow.compute`` is first imported,
    which a thread's first cast or take does; a Parquet read on another thread meanwhile could
    miss "cast" in the half-filled registry: register them before any thread starts."""
    import pyarrow.compute  # noqa: F401


def _yield_to_baseline() -> int | None:
    """Lower this (follower) thread's priority: the recording baseline is the critical path.
    Returns the nice value it had (None: unchanged).  Where per-thread nice is not supported,
    nothing."""
    if not sys.platform.startswith("linux"):  # elsewhere a thread id is not a PRIO_PROCESS target
        return None
    try:
        tid = threading.get_native_id()
        old = os.getpriority(os.PRIO_PROCESS, tid)
        if old < FOLLOWER_NICE:  # lower it, never raise it
            os.setpriority(os.PRIO_PROCESS, tid, FOLLOWER_NICE)
            return old
    except OSError:
        pass
    return None


def _stop_yielding(old: int | None) -> None:
    """Give this follower thread back the priority ``_yield_to_baseline`` took (the baseline is
    done by the end of a run: one run ending at a time at nice 10 got a tenth of a busy CPU).
    Raising a priority may need CAP_SYS_NICE or RLIMIT_NICE: without them it stays lowered."""
    if old is None:
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), old)
    except OSError:
        pass


_malloc_trim: Any = None


def release_free_memory() -> None:
    """Hand the allocator's free pages back to the system (glibc's ``malloc_trim``; elsewhere
    nothing).  Each thread allocates from an arena of its own, which keeps the pages a finished
    run freed for that thread's next allocation: ten threads kept ten runs' worth."""
    global _malloc_trim
    if _malloc_trim is None:
        try:
            import ctypes

            _malloc_trim = ctypes.CDLL(None).malloc_trim
            _malloc_trim.argtypes, _malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


class FinishGate:
    """Where the runs of one replay end (lock schedule, charges, tables and their write): run ``i``
    of ``n`` enters (``enter``) once every run before it has entered or failed, and while fewer
    than ``capacity()`` are inside; ``done(i)`` when it is out (or failed, entered or not), which
    hands the freed pages back when the budget limits the runs."""

    def __init__(self, n: int, sections: Callable[[], int]) -> None:
        self._cv = threading.Condition()
        self._n = n
        self._sections = sections
        self._next = 0  # the lowest run that has neither entered nor failed
        self._passed: set[int] = set()  # runs at or after _next that have
        self._inside: set[int] = set()

    def capacity(self) -> int:
        """Runs that may be inside at once: as many as ``FINISH_BUDGET_BYTES`` holds."""
        return max(1, FINISH_BUDGET_BYTES // (FINISH_BYTES_PER_SECTION * max(self._sections(), 1)))

    def _pass(self, i: int) -> None:
        self._passed.add(i)
        while self._next in self._passed:
            self._passed.discard(self._next)
            self._next += 1
        self._cv.notify_all()

    def enter(self, i: int) -> None:
        with self._cv:
            # (all of them fit: no order to keep, nobody waits)
            while self.capacity() < self._n and (self._next != i or len(self._inside) >= self.capacity()):
                self._cv.wait()
            self._inside.add(i)
            if i >= self._next:
                self._pass(i)

    def done(self, i: int) -> None:
        with self._cv:
            inside = i in self._inside
            self._inside.discard(i)
            if i >= self._next and i not in self._passed:
                self._pass(i)
            self._cv.notify_all()
            limited = self.capacity() < self._n
        if inside and limited:  # (where all fit, the freed pages are left for the next allocations)
            release_free_memory()


# ------------------------------------------------------------------ buffers
class Arena:
    """Per-event buffers kept from one policy's replay to the next in a worker process.

    A policy replay of n events fills n-long arrays of model results; fresh ones cost a page
    fault per 4 KiB on first touch, reused ones a memset.  Whatever a run returns lives in these
    buffers until the next run with the same arena: the worker sends its tables (which may view
    them, with ``--all-events``) back before that.
    """

    def __init__(self) -> None:
        self._bufs: dict[str, np.ndarray] = {}

    def state_copy(self, st: Any) -> Any:
        import numpy as np

        out = []
        for i, a in enumerate(st):
            b = self.empty(f"state{i}", a.shape, a.dtype)
            np.copyto(b, a)
            out.append(b)
        return type(st)._make(out)

    def empty(self, key: str, shape: Any, dtype: Any) -> np.ndarray:
        import numpy as np

        shape = tuple(shape) if isinstance(shape, tuple) else (int(shape),)
        b = self._bufs.get(key)
        if b is None or b.shape != shape or b.dtype != np.dtype(dtype):
            b = self._bufs[key] = np.empty(shape, dtype)
        return b

    def full(self, key: str, shape: Any, dtype: Any, value: int = 0) -> np.ndarray:
        b = self.empty(key, shape, dtype)
        b.fill(value)
        return b

    def recording_outputs(self, n: int) -> None:
        return None


def _empty_array() -> np.ndarray:
    """An empty array (NumPy is imported where used, see ``configure_process``)."""
    import numpy as np

    return np.zeros(0)


def prefault_outputs(n: int) -> dict[str, np.ndarray]:
    """The per-event arrays a recording exact-mode baseline fills for every event (``out_sec``
    and ``out_zone`` at -1, ``dfree`` at 0), their pages touched here, on a thread with nothing
    else to do, rather than in the baseline's first steps."""
    import numpy as np

    return {"out_sec": np.full(n, -1, np.int32), "out_zone": np.full(n, -1, np.int8),
            "dfree": np.full(n, 0, np.int32)}  # (np.full writes every page; np.zeros would not)


class PrefaultedBuffers:
    """The recording baseline's buffers: its state copy made on a side thread (``copy_from``,
    started while ``prepare`` calibrates) and its per-event arrays made ahead (``give_outputs``,
    on the context thread); anything not ready is made fresh."""

    def __init__(self) -> None:
        from replay.policy.run import Buffers

        self._fresh = Buffers()
        self._copier: threading.Thread | None = None
        self._copy: Any = None
        self._outputs: dict[str, np.ndarray] | None = None
        self._lock = threading.Lock()

    def copy_from(self, st: Any) -> None:
        from replay.policy.prepare import copy_state

        def work() -> None:
            self._copy = copy_state(st)

        self._copier = threading.Thread(target=work, daemon=True)
        self._copier.start()

    def give_outputs(self, outputs: dict[str, np.ndarray]) -> None:
        with self._lock:
            self._outputs = outputs

    def state_copy(self, st: Any) -> Any:
        copier, self._copier = self._copier, None
        if copier is not None:
            copier.join()
            copy, self._copy = self._copy, None
            if copy is not None:
                return copy
        return self._fresh.state_copy(st)

    def full(self, key: str, n: int, dtype: Any, value: int = 0) -> np.ndarray:
        return self._fresh.full(key, n, dtype, value)

    def empty(self, key: str, n: int, dtype: Any) -> np.ndarray:
        return self._fresh.empty(key, n, dtype)

    def recording_outputs(self, n: int) -> dict[str, np.ndarray] | None:
        with self._lock:
            out, self._outputs = self._outputs, None
        if out is not None and all(len(a) == n for a in out.values()):
            return out
        return None


# ------------------------------------------------------------------ the baseline as it runs
class BaselineFeed:
    """The recording baseline run as it is being made: its ``Recorder`` (it reports here) and,
    for the delta replays that follow it in other threads, their ``BaselineSource``: its live
    per-event arrays, the delta index built so far and the safe point (module docstring)."""

    def __init__(self, prep: Any, slots: int | None = None) -> None:
        from replay.policy.delta import new_index

        self.slots = max(1, (os.cpu_count() or 2) - 1) if slots is None else max(1, slots)
        self.slot = threading.BoundedSemaphore(self.slots + 1)
        self.slot.acquire()  # the baseline's CPU, given back by finish()
        self._cv = threading.Condition()
        self.n = len(prep.events)
        self._index = new_index(prep, self.n)
        self._index_lock = threading.Lock()
        self.reported = 0  # events the baseline has replayed (the index may lag: _extend_index)
        self.safe = 0
        self.run: Any = None
        self.error: BaseException | None = None
        self.records = True
        # the baseline's live arrays (set before its first report)
        self.S: Any = None
        self.out_sec = self.out_zone = self.dfree = self.ts_free = self.ts_order = _empty_array()

    # ---- Recorder: the baseline's side
    def attach(self, S: Any, out_sec: np.ndarray, out_zone: np.ndarray, dfree: np.ndarray,
               ts_free: np.ndarray, ts_order: np.ndarray) -> None:
        self.S, self.out_sec, self.out_zone, self.dfree = S, out_sec, out_zone, dfree
        self.ts_free, self.ts_order = ts_free, ts_order

    def advance(self, k: int) -> None:
        """The baseline has replayed the events before ``k``: report them and the safe point."""
        S = self.S
        assert S is not None
        safe = k
        for sid in S.cur.tolist():  # a CPU's open section may still take events
            if sid >= 0:
                safe = min(safe, int(S.first[sid]))
        with self._cv:
            self.reported = max(self.reported, k)
            self.safe = max(self.safe, safe)
            self._cv.notify_all()

    def finish(self, run: Any, error: BaseException | None = None) -> None:
        if run is not None and run.dfree is not None and self.S is not None:
            self._extend_index(self.n)
            run.delta_index = self._index
        with self._cv:
            self.run, self.error = run, error
            self._cv.notify_all()
        self.slot.release()

    # ---- BaselineSource: the followers' side
    def _extend_index(self, k: int) -> None:
        """The index over the baseline's events before ``k`` (all reported: their rows are final)."""
        with self._index_lock:
            self._index.extend(self.S, self.out_sec, self.out_zone, self.dfree, k)

    def limit(self, k: int) -> int:
        """Where a follower at event ``k`` may walk to, once the safe point is past ``k`` (the trace's
        end once the baseline is done)."""
        with self._cv:
            while self.safe <= k and self.run is None and self.error is None:
                self._cv.wait()
            if self.error is not None:
                raise RuntimeError("the baseline replay failed") from self.error
            limit, reported = (self.safe, self.reported) if self.run is None else (self.n, self.n)
        if reported and self.S is not None:
            self._extend_index(reported)
        return limit

    @contextlib.contextmanager
    def walking(self) -> Any:
        """A follower's compiled walk holds one of the followers' CPUs."""
        self.slot.acquire()
        try:
            yield
        finally:
            self.slot.release()

    def index(self, sparse: bool) -> Any:
        from replay.policy.delta import dense_index

        return self._index if sparse else dense_index()

    def result(self) -> Any:
        with self._cv:
            while self.run is None and self.error is None:
                self._cv.wait()
            if self.error is not None:
                raise RuntimeError("the baseline replay failed") from self.error
            return self.run


# ------------------------------------------------------------------ running the policies
TablesFn = Callable[[Any], tuple[Any, Any]]  # a run -> (its tables, its summary row)


def _record(prep: Any, policy: Any, costs: Any, feed: BaselineFeed, buffers: Any, check_every: int,
            gate: FinishGate) -> Any:
    """A thread: the baseline replay, recording for and reporting to the replays that follow it
    (its end is run 0 of ``gate``: the caller builds its tables and says ``done``)."""
    from replay.policy.run import run_full

    try:
        run = run_full(prep, policy, costs, buffers=buffers, recorder=feed, check_every=check_every,
                       finishing=lambda: gate.enter(0))
    except BaseException as exc:
        feed.finish(None, exc)
        gate.done(0)
        raise
    feed.finish(run)
    return run


def _follow(prep: Any, policy: Any, costs: Any, feed: BaselineFeed, tables: TablesFn, gate: FinishGate,
            i: int) -> tuple[Any, Any, float]:
    """A thread: replay policy ``i`` behind the recording baseline, then (inside ``gate``) build
    its tables; the run is dropped once they are."""
    from replay.policy.run import accepts_nothing, baseline_run_as, run_policy

    old = _yield_to_baseline()

    def finishing() -> None:
        gate.enter(i)
        _stop_yielding(old)

    try:
        if accepts_nothing(prep, policy, costs):
            base = feed.result()
            finishing()
            run = baseline_run_as(prep, base, policy, costs)
        else:
            run = run_policy(prep, policy, costs, baseline=feed, finishing=finishing)
        return (*tables(run), run.seconds)
    finally:
        gate.done(i)


def _run_exact_threads(prep: Any, policies: list[Any], costs: Any, tables: TablesFn, buffers: Any, check_every: int,
                       on_baseline: Callable[[Any], None] | None) -> tuple[Any, dict[str, tuple[Any, Any, float]]]:
    """Exact mode: the baseline in one thread, each other policy in a thread of its own that
    follows it (module docstring)."""
    from concurrent.futures import ThreadPoolExecutor

    feed = BaselineFeed(prep)
    gate = FinishGate(len(policies), lambda: int(feed.S.n[0]) if feed.S is not None else 0)
    with ThreadPoolExecutor(max_workers=len(policies)) as pool:
        fb = pool.submit(_record, prep, policies[0], costs, feed, buffers, check_every, gate)
        futures = {p.name: pool.submit(_follow, prep, p, costs, feed, tables, gate, i)
                   for i, p in enumerate(policies[1:], 1)}
        try:
            base = fb.result()
            done = {base.name: (*tables(base), base.seconds)}
            if on_baseline is not None:
                on_baseline(base)
        finally:
            gate.done(0)
        done.update((name, f.result()) for name, f in futures.items())
    return base, done


_FORKED: Any = None  # (prepared trace, baseline, tables function), inherited by forked workers
_ARENA: Arena | None = None  # a worker's per-event buffers, reused from one policy to the next


def _run_one(args: tuple[Any, Any]) -> Any:
    """A forked worker: replay one policy and build its tables; only the (small) tables travel back."""
    from replay.policy.run import run_policy

    global _ARENA
    policy, costs = args
    prep, base, tables = _FORKED
    if _ARENA is None:
        _ARENA = Arena()
    run = run_policy(prep, policy, costs, baseline=base, buffers=_ARENA)
    # the tables are pickled back before this worker runs its next policy (which reuses the arena)
    return (*tables(run), run.seconds)


def _run_in_processes(prep: Any, policies: list[Any], costs: Any, workers: int, tables: TablesFn,
                      buffers: Any, check_every: int) -> tuple[Any, dict[str, tuple[Any, Any, float]]]:
    """Simulate mode (or one worker): the baseline here, then the other policies in up to
    ``workers`` forked processes (in exact mode each replays on the recorded baseline)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from replay.policy.run import FinishedBaseline, accepts_nothing, baseline_run_as, run_full, run_policy

    global _FORKED, _ARENA
    # policies that leave nothing unaccepted at the trace's start replay exactly as the baseline
    same = [p for p in policies[1:] if accepts_nothing(prep, p, costs)]
    rest = [p for p in policies[1:] if p not in same]
    parallel = workers > 1 and len(rest) > 1 and "fork" in mp.get_all_start_methods()
    futures: list[Any] = []
    ex = None
    try:
        base = run_full(prep, policies[0], costs, buffers=buffers, record=prep.mode == "exact" and bool(rest),
                        check_every=check_every)
        source = FinishedBaseline(prep, base) if base.dfree is not None else base
        _FORKED = (prep, source, tables)
        if parallel:
            ex = ProcessPoolExecutor(max_workers=min(workers, len(rest)), mp_context=mp.get_context("fork"))
            futures = [ex.submit(_run_one, (p, costs)) for p in rest]
        done = {base.name: (*tables(base), base.seconds)}
        for p in same:
            run = baseline_run_as(prep, base, p, costs)
            done[p.name] = (*tables(run), run.seconds)
        if parallel:
            done.update((p.name, f.result()) for p, f in zip(rest, futures))
        else:  # in this process, fresh buffers per policy (the tables may share them)
            for p in rest:
                run = run_policy(prep, p, costs, baseline=source)
                done[p.name] = (*tables(run), run.seconds)
                del run
    finally:
        if ex is not None:
            ex.shutdown(cancel_futures=True)
        _FORKED = None
        _ARENA = None
    return base, done


def run_policies(prep: Any, policies: list[Any], costs: Any, tables: TablesFn, *, workers: int = 2,
                 buffers: Any = None, check_every: int = 0, on_baseline: Callable[[Any], None] | None = None
                 ) -> tuple[Any, list[tuple[Any, Any]], dict[str, float]]:
    """Run every policy on ``prep``, ``none`` (``policies[0]``) first (module docstring), and
    build each run's tables with ``tables(run)`` where it ran.

    ``buffers``: the baseline's (``PrefaultedBuffers``).  ``check_every``: the baseline checks the
    model's invariants every that many events too.  ``on_baseline(run)``: called with the
    ``none`` run once it is done (with the followers still running, in exact mode: work that
    needs only the baseline, off the critical path).

    Returns the ``none`` run, each policy's ``tables`` result in order, and the replay seconds
    per policy.
    """
    if prep.mode == "exact" and len(policies) > 1 and workers > 1:
        base, done = _run_exact_threads(prep, policies, costs, tables, buffers, check_every, on_baseline)
    else:
        base, done = _run_in_processes(prep, policies, costs, workers, tables, buffers, check_every)
        if on_baseline is not None:
            on_baseline(base)
    parts = [done[base.name][:2]]
    seconds = {base.name: base.seconds}
    for p in policies[1:]:
        t, row, sec = done[p.name]
        parts.append((t, row))
        seconds[p.name] = sec
    return base, parts, seconds


# ------------------------------------------------------------------ warm-up
def tiny_table(pfn: int) -> Any:
    """A five-event canonical table (pyarrow only): enough to drive every replay kernel once."""
    import pyarrow as pa

    from parsers.schema import COLUMNS, EVENT_BY_NAME, arrow_schema, event_dictionary

    evs = ["mm_page_alloc_zone_locked", "mm_page_alloc", "mm_page_free", "mm_page_free_batched", "mm_page_pcpu_drain"]
    n = len(evs)
    vals: dict[str, Any] = {c.name: [None] * n for c in COLUMNS}
    vals.update(ts_ns=[1000 * (i + 1) for i in range(n)], cpu=[0] * n, pid=[1] * n, comm=["warm"] * n,
                pfn=[pfn] * n, order=[0] * n, migratetype=[1, 1, None, None, 1], failed=[False] * n,
                percpu_refill=[True, None, None, None, None], gfp_flags=[None, "GFP_KERNEL", None, None, None],
                source_file=["<warm-up>"] * n, line=list(range(1, n + 1)), seq=list(range(n)))
    arrays = []
    for c in COLUMNS:
        if c.name == "event":
            arrays.append(pa.DictionaryArray.from_arrays(pa.array([EVENT_BY_NAME[e].value for e in evs], pa.int8()),
                                                         event_dictionary()))
        elif pa.types.is_dictionary(c.type):
            arrays.append(pa.array(vals[c.name], pa.string()).dictionary_encode().cast(c.type))
        else:
            arrays.append(pa.array(vals[c.name], c.type))
    return pa.Table.from_arrays(arrays, schema=arrow_schema())


def tiny_trace(path: Path, pfn: int) -> None:
    """``tiny_table`` written to ``path`` as Parquet."""
    import pyarrow.parquet as pq

    pq.write_table(tiny_table(pfn), path)


def import_replay_modules() -> None:
    """Import, on the calling thread, every module the warm-up thread and the replay use, and
    fill numba's typing and target registries: Python's per-module import locks deadlock
    (``_DeadlockError``) when two threads import the same modules in different orders, which
    numba's lazy registry refresh on a first compilation in each thread does."""
    import replay.events.arrays  # noqa: F401
    import replay.model.engine  # noqa: F401
    import replay.model.layout_x86  # noqa: F401
    import replay.policy.prepare  # noqa: F401
    import replay.policy.run  # noqa: F401
    import replay.results.tables  # noqa: F401
    import replay.results.writer  # noqa: F401
    from replay.jit import JIT_ENABLED

    if JIT_ENABLED:
        from numba.core.registry import cpu_target

        cpu_target.typing_context.refresh()
        cpu_target.target_context.refresh()


def warm_exact(pols: list[Any], cost: Any) -> None:
    """Load the kernels of ``prepare``, of the recording baseline and of the result tables from
    numba's cache on a tiny table (module docstring); best effort: a failure here only means
    they load later."""
    try:
        from replay.events.arrays import event_arrays_from_parquet
        from replay.model.layout_x86 import infer_layout
        from replay.policy.prepare import prepare
        from replay.policy.run import run_full
        from replay.results.tables import policy_tables, result_context

        # a 100 MiB layout of which the firmware accepts 8 MiB, and a page at 26 MiB, in memory
        # still unaccepted (few pages to set up: the kernels' types do not depend on the sizes);
        # read back from a Parquet file as the trace is, so that the columns are the same
        # (writable) array types
        pfn = 6656
        fw = 8 << 20
        with tempfile.TemporaryDirectory(prefix="pagereplay-warm-") as tmp:
            path = Path(tmp) / "warm.parquet"
            tiny_trace(path, pfn)
            ea, table, _ = event_arrays_from_parquet(path, with_gfp=False)
        layout = infer_layout((1 << 14) - (1 << 12), (1 << 14) + (1 << 13), nr_cpus=2)
        prep = prepare(table, layout, mode="exact", events=ea)
        ctx = result_context(table, [p.name for p in pols], ea)
        base = run_full(prep, pols[0], cost, record=True, firmware_accepted_bytes=fw)
        policy_tables(prep, base, ctx)
    except Exception:  # noqa: BLE001 - a warm-up only
        pass
