"""Running a sweep: in this process, in a pool of forked workers (``jobs``), or as Ray tasks.

``run_sweep(spec, out)`` expands the grid, cuts it into chunks (``grid.chunk_grid``), skips the
chunks ``out`` already holds, runs the rest and writes each chunk as it arrives
(``replay.sweep.dataset``), then the summary.

Where points run
----------------
* ``jobs == 1``: one chunk after the other in this process.
* ``jobs > 1`` (local pool): each trace is read and prepared here, once (``point.prepare_trace``),
  then a pool of ``jobs`` forked workers replays its chunks.  The workers inherit the prepared
  trace through fork (``_FORKED``, copy-on-write: never pickled); only a chunk's id travels to a
  worker and its encoded files back.  Before the first fork this process replays one point of
  each acceptance trigger itself (and drops the result), so that the workers inherit numba's
  loaded kernels instead of each loading them.
* ``ray``: each trace is prepared here once and put into Ray's object store (pickled once, the
  locks of its lazily filled caches re-created on the other side; its arrays out of band, copied
  into the store as they are); each Ray task names the object,
  and a worker process unpickles a trace once and keeps it for the following chunks
  (``_RAY_TRACES``).  Tasks return the encoded files, which this process writes: the workers need
  neither the trace files nor the output folder.

Failures
--------
A point that raises is recorded with its error (its row says ``status = "error"``) and the sweep
goes on; a trace that cannot be read records every point of it so.  A worker process that dies
(a crash, the out-of-memory killer) takes the chunks it was running with it: the pool is
restarted, each lost chunk's points are tried alone in a worker of their own to find the ones that
kill it, and the chunk is replayed with those recorded as failed.  Ray retries a task whose worker
died once, then records the chunk's points as failed.

The results do not depend on any of this: every chunk's files are a function of its points alone.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from replay.sweep.dataset import STATUS_OK, ChunkRecord, PointResult, SweepDir, chunk_record, error_text
from replay.sweep.grid import Chunk, Point, by_trace, chunk_grid, expand_grid, grid_json, trace_fingerprint
from replay.sweep.point import PreparedTrace, prepare_trace, run_point
from replay.sweep.progress import SweepProgress
from replay.sweep.spec import Output, SweepSpec, SweepSpecError

__all__ = ["SweepResult", "run_sweep"]

Commit = Callable[[ChunkRecord], None]
#: prepared traces a Ray worker keeps (least recently used dropped first)
RAY_TRACES_KEPT = 2
WORKER_DIED = "the worker process died while replaying this point"


@dataclass
class SweepResult:
    """What one ``run_sweep`` call did (wall-clock figures are also in ``DIR/timings.json``)."""

    out: Path
    points: int  # points in the grid
    skipped: int  # already done before this run
    ran: int
    failed: int  # of the points run now
    wall_s: float
    executor: str
    workers: int
    removed_chunks: int = 0  # of another grid, removed from the folder
    prepare_s: float = 0.0  # reading and preparing the traces (here)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (point, error), first ones
    point_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def points_per_s(self) -> float:
        return self.ran / self.wall_s if self.wall_s > 0 else 0.0


# ------------------------------------------------------------------ one chunk, wherever it runs
def chunk_task(pt: PreparedTrace, chunk: Chunk, tables: Output,
               failed: Mapping[str, str] | None = None) -> ChunkRecord:
    """Replay the points of ``chunk`` (those in ``failed`` are recorded with that error instead)
    and encode its files; a point's exception becomes its recorded error."""
    results = []
    for p in chunk.points:
        t0 = time.perf_counter()
        if failed and p.id in failed:
            results.append(PointResult(p, None, None, failed[p.id]))
            continue
        try:
            out = run_point(pt, p)
            # the tables not kept go now (with the point, as when a replay's result is dropped)
            res = PointResult(p, {name: out.tables[name] for name in tables.tables}, out.row)
            del out
        except Exception as e:  # noqa: BLE001 - recorded with the point; the sweep goes on
            res = PointResult(p, None, None, error_text(e))
        res.seconds = time.perf_counter() - t0
        results.append(res)
    t0 = time.perf_counter()
    rec = chunk_record(chunk, pt.fingerprint, results, tables)
    rec.encode_seconds = time.perf_counter() - t0
    return rec


def failed_chunk(chunk: Chunk, fingerprint: str, error: str) -> ChunkRecord:
    """The record of a chunk none of whose points could run."""
    return chunk_record(chunk, fingerprint, [PointResult(p, None, None, error) for p in chunk.points], Output(()))


class _Clock:
    """Seconds spent reading and preparing traces."""

    def __init__(self) -> None:
        self.prepare_s = 0.0

    def prepare(self, spec: SweepSpec, name: str, fps: Mapping[str, str]) -> PreparedTrace:
        t0 = time.perf_counter()
        try:
            src = next(t for t in spec.traces if t.name == name)
            return prepare_trace(src, fps[name], [p.name for p in spec.policies], spec.mode)
        finally:
            self.prepare_s += time.perf_counter() - t0


# ------------------------------------------------------------------ in this process / forked pool
_FORKED: Any = None  # (prepared trace, {chunk id: chunk}, tables): inherited by the forked workers
_WARMED: set[str] = set()  # acceptance triggers whose kernels this process has run


def _forked_chunk(chunk_id: str, failed: Mapping[str, str] | None = None, only: str | None = None) -> Any:
    """A forked worker's task: one chunk (``only``: just that point, to see whether it survives)."""
    pt, chunks, tables = _FORKED
    chunk = chunks[chunk_id]
    if only is not None:
        run_point(pt, next(p for p in chunk.points if p.id == only))
        return True
    return chunk_task(pt, chunk, tables, failed)


def _new_pool(width: int) -> Any:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=width, mp_context=mp.get_context("fork"))


def _stop_pool(ex: Any, now: bool) -> None:
    """Shut a pool down; ``now``: also end the workers still replaying (an interrupted sweep)."""
    if now:
        for proc in list(getattr(ex, "_processes", {}).values()):  # (no public way to end them)
            if proc.is_alive():
                proc.terminate()
    ex.shutdown(wait=True, cancel_futures=True)


def _run_pool(work: deque[Chunk], width: int, commit: Commit, lost: list[Chunk]) -> None:
    """Replay ``work`` in a pool of ``width`` forked workers until done or a worker dies; the
    chunks the broken pool was running go to ``lost``."""
    from concurrent.futures import FIRST_COMPLETED, wait
    from concurrent.futures.process import BrokenProcessPool

    ex = _new_pool(width)
    inflight: dict[Any, Chunk] = {}
    interrupted = True
    try:
        while work or inflight:
            while work and len(inflight) < width:
                c = work.popleft()
                inflight[ex.submit(_forked_chunk, c.id)] = c
            done, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
            broken = False
            for f in done:
                c = inflight.pop(f)
                try:
                    rec = f.result()
                except BrokenProcessPool:
                    lost.append(c)
                    broken = True
                    continue
                commit(rec)
            if broken:  # what is still in flight is lost too
                lost.extend(inflight.values())
                inflight.clear()
                break
        interrupted = False
    finally:
        _stop_pool(ex, now=interrupted)


def _survives(chunk: Chunk, only: str | None = None, failed: Mapping[str, str] | None = None) -> Any:
    """``_forked_chunk`` in a one-worker pool of its own: its result, or None if the worker died."""
    from concurrent.futures.process import BrokenProcessPool

    ex = _new_pool(1)
    try:
        return ex.submit(_forked_chunk, chunk.id, failed, only).result()
    except BrokenProcessPool:
        return None
    finally:
        _stop_pool(ex, now=False)


def _isolate(chunk: Chunk, fingerprint: str, commit: Commit) -> None:
    """A chunk whose worker died: each point alone, then the chunk with the killers recorded."""
    killers = {p.id: WORKER_DIED for p in chunk.points if _survives(chunk, only=p.id) is None}
    rec = _survives(chunk, failed=killers)
    commit(rec if rec is not None else failed_chunk(chunk, fingerprint, WORKER_DIED))


def _run_forked(pt: PreparedTrace, chunks: list[Chunk], jobs: int, tables: Output, commit: Commit) -> None:
    """The chunks of one prepared trace in forked workers (module docstring)."""
    global _FORKED
    for c in chunks:  # load each trigger's kernels here once, before the workers fork
        for p in c.points:
            if p.policy.trigger not in _WARMED:
                _WARMED.add(p.policy.trigger)
                with contextlib.suppress(Exception):  # (a worker replays it again and records it)
                    run_point(pt, p)  # only to load the kernels: the result comes from a worker
    _FORKED = (pt, {c.id: c for c in chunks}, tables)
    try:
        work = deque(chunks)
        while work:
            lost: list[Chunk] = []
            _run_pool(work, jobs, commit, lost)
            for c in sorted(lost, key=lambda c: c.points[0].index):
                _isolate(c, pt.fingerprint, commit)
    finally:
        _FORKED = None


def _can_fork() -> bool:
    import multiprocessing as mp

    return "fork" in mp.get_all_start_methods()


def _run_local(spec: SweepSpec, pending: list[Chunk], fps: dict[str, str], jobs: int, commit: Commit,
               clock: _Clock) -> None:
    for name, chunks in by_trace(pending).items():
        try:
            pt = clock.prepare(spec, name, fps)
        except Exception as e:  # noqa: BLE001 - every point of the trace records it
            for c in chunks:
                commit(failed_chunk(c, fps[name], f"trace {name}: {error_text(e)}"))
            continue
        if jobs <= 1 or len(chunks) == 1 or not _can_fork():
            for c in chunks:
                commit(chunk_task(pt, c, spec.output))
        else:
            _run_forked(pt, chunks, jobs, spec.output, commit)
        del pt


# ------------------------------------------------------------------ Ray
class _Pickler(pickle.Pickler):
    """Pickles a prepared trace for the object store: locks (which guard caches filled lazily)
    travel as new locks."""

    _LOCKS = (type(threading.Lock()), type(threading.RLock()))

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, self._LOCKS):
            return (threading.RLock if isinstance(obj, type(threading.RLock())) else threading.Lock), ()
        return NotImplemented


def dumps_trace(pt: PreparedTrace) -> tuple[bytes, list[Any]]:
    """``pt`` for the object store: the pickle (protocol 5) without the bytes of its arrays, and
    those bytes as flat uint8 arrays (``ray.put`` copies them into the store once, as they are;
    pickling them in-band copied each twice more and the worker once more on the way out)."""
    import io

    import numpy as np

    buf, out_of_band = io.BytesIO(), []
    _Pickler(buf, protocol=5, buffer_callback=out_of_band.append).dump(pt)
    return buf.getvalue(), [np.frombuffer(b.raw(), np.uint8) for b in out_of_band]


def loads_trace(head: bytes, buffers: list[Any]) -> PreparedTrace:
    """``dumps_trace``'s trace back, its arrays in private writable copies (the object store's
    views are read-only)."""
    return pickle.loads(head, buffers=[bytearray(b) for b in buffers])


_RAY_TRACES: OrderedDict[str, PreparedTrace] = OrderedDict()  # a Ray worker's unpickled traces


def _ray_chunk(trace_ref: list[Any], chunk: Chunk, tables: Output) -> ChunkRecord:
    """A Ray task: one chunk on the trace named by ``trace_ref[0]`` (in a list, so that Ray hands
    over the reference, not the value: the trace is unpickled once per worker, not per chunk)."""
    import ray

    key = trace_ref[0].hex()
    pt = _RAY_TRACES.get(key)
    if pt is None:
        pt = loads_trace(*ray.get(trace_ref[0]))
        _RAY_TRACES[key] = pt
        while len(_RAY_TRACES) > RAY_TRACES_KEPT:
            _RAY_TRACES.popitem(last=False)
    _RAY_TRACES.move_to_end(key)
    return chunk_task(pt, chunk, tables)


def _ray_connect(address: str, jobs: int | None) -> tuple[Any, bool]:
    """``ray`` connected, and whether this call connected it (then the caller disconnects): an
    already initialised session as it is, ``local`` a private instance on this machine, else the
    cluster at ``address`` (``auto``: the one ``ray start`` made here)."""
    if address == "local":  # private: on loopback (read when ray is imported), no usage report
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError:
        raise SweepSpecError("--ray needs Ray: pip install 'pagereplay[ray]'") from None
    if ray.is_initialized():
        return ray, False
    if address == "local":
        ray.init(address="local", num_cpus=jobs or os.cpu_count() or 1, include_dashboard=False,
                 log_to_driver=False)
    else:
        ray.init(address=address, log_to_driver=False)
    return ray, True


def _run_ray(spec: SweepSpec, pending: list[Chunk], fps: dict[str, str], jobs: int | None, address: str,
             commit: Commit, clock: _Clock) -> int:
    """Every pending chunk as a Ray task (module docstring); returns the tasks run at once."""
    ray, connected = _ray_connect(address, jobs)
    try:
        return _ray_tasks(ray, spec, pending, fps, jobs, commit, clock)
    finally:
        if connected:  # (a private instance ends with it: the CLI leaves without atexit hooks)
            ray.shutdown()


def _ray_tasks(ray: Any, spec: SweepSpec, pending: list[Chunk], fps: dict[str, str], jobs: int | None,
               commit: Commit, clock: _Clock) -> int:
    task = ray.remote(num_cpus=1, max_retries=1)(_ray_chunk)
    # --jobs N: at most N tasks at once; else the cluster's CPUs, with a task queued behind each
    # (it hides the round trip between two tasks)
    width = jobs or max(1, int(ray.cluster_resources().get("CPU", 1)))
    window = jobs or 2 * width
    queue = deque(pending)
    refs: dict[str, Any] = {}
    left = {name: len(cs) for name, cs in by_trace(pending).items()}
    inflight: dict[Any, Chunk] = {}
    while queue or inflight:
        while queue and len(inflight) < window:
            c = queue.popleft()
            if c.trace not in refs:
                try:
                    refs[c.trace] = ray.put(dumps_trace(clock.prepare(spec, c.trace, fps)))
                except Exception as e:  # noqa: BLE001 - every point of the trace records it
                    for d in [c, *(q for q in queue if q.trace == c.trace)]:
                        commit(failed_chunk(d, fps[d.trace], f"trace {d.trace}: {error_text(e)}"))
                    queue = deque(q for q in queue if q.trace != c.trace)
                    continue
            inflight[task.remote([refs[c.trace]], c, spec.output)] = c
        if not inflight:
            continue
        ready, _ = ray.wait(list(inflight), num_returns=1)
        for r in ready:
            c = inflight.pop(r)
            try:
                rec = ray.get(r)
            except Exception as e:  # noqa: BLE001 - the task's worker died (twice): recorded
                rec = failed_chunk(c, fps[c.trace], f"Ray task failed: {error_text(e)}")
            commit(rec)
            left[c.trace] -= 1
            if left[c.trace] == 0:
                refs.pop(c.trace, None)  # the object store may drop the trace now
    return width


# ------------------------------------------------------------------ the sweep
def run_sweep(spec: SweepSpec, out: str | Path, *, jobs: int | None = None, ray: str | None = None,
              progress: bool | None = None, on_commit: Callable[[ChunkRecord], None] | None = None) -> SweepResult:
    """Run every chunk of ``spec`` not yet done in ``out`` and write the summary.

    ``jobs``: local workers (default: the CPU count), or Ray tasks at once (default: the cluster's
    CPUs).  ``ray``: None (local), ``auto``, a cluster address or ``local`` (a private Ray on this
    machine).  ``progress``: None = a bar on a terminal; False = silent.  ``on_commit(record)`` is
    called after each chunk is written (an exception from it stops the sweep)."""
    t0 = time.perf_counter()
    fps = {t.name: trace_fingerprint(t) for t in spec.traces}
    points = expand_grid(spec, fps)
    chunks = chunk_grid(points, spec.points_per_file)
    d = SweepDir(out)
    d.prepare()
    removed = d.remove_stale(chunks)
    d.write_json("sweep.json", grid_json(spec, points, fps))
    done = d.done()
    pending = [c for c in chunks if set(done.get(c.id, {}).values()) != {STATUS_OK}]
    todo = sum(len(c.points) for c in pending)
    workers = max(1, jobs if jobs is not None else (os.cpu_count() or 1)) if ray is None else (jobs or 0)
    bar = SweepProgress(len(points), len(points) - todo, enabled=progress)
    res = SweepResult(out=Path(out), points=len(points), skipped=len(points) - todo, ran=0, failed=0, wall_s=0.0,
                      executor="ray" if ray is not None else ("pool" if workers > 1 else "process"),
                      workers=workers, removed_chunks=removed)
    names = {p.id: _describe(p) for p in points}
    clock = _Clock()

    def commit(rec: ChunkRecord) -> None:
        d.commit(rec)
        res.ran += len(rec.statuses)
        res.point_seconds.update((k, round(v, 6)) for k, v in rec.seconds.items())
        for pid, err in rec.errors.items():
            res.failed += 1
            if len(res.failures) < 20:
                res.failures.append((names[pid], err))
        for status in rec.statuses.values():
            bar.advance(status == STATUS_OK)
        if on_commit is not None:
            on_commit(rec)

    try:
        if pending:
            if ray is not None:
                res.workers = _run_ray(spec, pending, fps, jobs, ray, commit, clock)
            else:
                _run_local(spec, pending, fps, workers, commit, clock)
    finally:
        bar.stop()
        d.write_summary(chunks)
        res.wall_s = time.perf_counter() - t0
        res.prepare_s = clock.prepare_s
        d.append_timings({"executor": res.executor, "workers": res.workers, "points": res.points,
                          "skipped": res.skipped, "ran": res.ran, "failed": res.failed,
                          "wall_s": round(res.wall_s, 3), "prepare_s": round(res.prepare_s, 3),
                          "points_per_s": round(res.points_per_s, 3),
                          "point_seconds": dict(sorted(res.point_seconds.items()))})
    return res


def _describe(p: Point) -> str:
    s = " ".join(f"{k}={v}" for k, v in p.settings)
    return f"{p.trace}/{p.policy.name}/{p.costs.name}" + (f" {s}" if s else "")
