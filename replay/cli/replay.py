"""``pagereplay replay TRACE [--policy P ...|--all-policies] --costs C --mode exact|simulate -o results/``,
``pagereplay compare results/`` and ``pagereplay demo``: wiring only.

``register(app)`` adds the commands to the lead's typer app.  Every failure is a
one-line message on stderr and exit status 1 (``PAGEREPLAY_DEBUG=1`` re-raises).
"""

from __future__ import annotations

import enum
import json
import os
import sys
import threading
from pathlib import Path
from typing import Annotated, Any, Optional

import typer


class Mode(str, enum.Enum):
    exact = "exact"
    simulate = "simulate"


def _parse_size(text: str) -> int:
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    if t and t[-1] in mult:
        return int(float(t[:-1]) * mult[t[-1]])
    return int(t)


def _load_events(trace: Path, mode: str = "simulate") -> tuple[Any, dict[str, str], Any, Any]:
    """The canonical table, its metadata, and for a Parquet file its ``EventArrays`` and pfn
    range (``replay.events.columns.read_event_columns``: the table then holds only the columns the
    results read; exact mode never reads the gfp mask: the trace places every page)."""
    import pyarrow.parquet as pq

    from parsers.api import is_parquet, load_events, read_metadata
    from parsers.errors import SchemaMismatchError
    from parsers.schema import check_schema
    from replay.events.columns import event_table, read_event_columns

    if not is_parquet(trace):
        table, md = load_events(trace)
        return table, md, None, None
    import pyarrow as pa

    with_gfp = mode != "exact"
    try:
        problems = check_schema(pq.read_schema(trace))
        if problems:
            raise SchemaMismatchError(f"{trace}: not a pagereplay event table: {'; '.join(problems)}")
        # no numba needed to read: the columns fill while it loads on the other threads
        cols, names = read_event_columns(trace, with_gfp=with_gfp)
        md = read_metadata(trace)
    except (pa.ArrowException, OSError) as e:  # cut short, damaged pages...: say which file
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"{trace}: unreadable Parquet file: {msg}") from None
    from replay.model.engine import event_arrays_from_columns

    table = event_table(cols, names)
    ea, bounds = event_arrays_from_columns(cols, table, with_gfp=with_gfp)
    return table, md, ea, bounds


def _load(trace: Path, snapshot: Path | None, end_snapshot: Path | None, guest_size: str | None,
          cpus: int | None, mode: str = "simulate") -> tuple[Any, Any, dict[str, str], Any, Any, Any]:
    """Events (the table, and its ``EventArrays`` when read from Parquet, else None), their
    metadata, the layout, the start and end snapshots."""
    import dataclasses

    import numpy as np

    from replay.model.layout import infer_layout, load_snapshot

    table, md, ea, bounds = _load_events(trace, mode)
    if table.num_rows == 0:
        raise ValueError(f"{trace}: no page-allocator events")
    snap = load_snapshot(snapshot) if snapshot else None
    end = load_snapshot(end_snapshot) if end_snapshot else None
    if snap is not None:
        layout = snap
    elif end is not None:
        layout = end
    else:
        import pyarrow as pa
        import pyarrow.compute as pc

        if bounds is not None:
            lo, hi = bounds
            cpu_max = int(ea.cpu.max()) + 1
        else:
            col = table.column("pfn")
            if pa.types.is_integer(col.type):  # Arrow kernels: no NumPy copies of a column of millions
                lo, hi = pc.min(pc.filter(col, pc.greater(col, 0))).as_py(), pc.max(col).as_py()
            else:  # a hand-made table (float pfns, NaN for none)
                pfn = np.asarray(col.to_numpy(zero_copy_only=False), np.float64)
                pfn = pfn[~np.isnan(pfn) & (pfn > 0)].astype(np.int64)
                lo, hi = (int(pfn.min()), int(pfn.max())) if len(pfn) else (None, None)
            cpu_max = int(pc.max(table.column("cpu")).as_py()) + 1
        if lo is None:
            raise ValueError(f"{trace}: no pfns to infer a memory layout from (give --snapshot)")
        layout = infer_layout(int(lo), int(hi), guest_bytes=_parse_size(guest_size) if guest_size else None,
                              nr_cpus=cpus or cpu_max)
    if cpus:
        layout = dataclasses.replace(layout, nr_cpus=cpus)
    return table, ea, md, layout, snap, end


def resolve_policies(names: list[str] | None, all_presets: bool, policies_file: Path | None) -> list[Any]:
    """The policies to run, ``none`` first (added when missing: every delta is against it)."""
    from replay.acceptance.policies import PRESET_ORDER, all_policies

    known = all_policies([policies_file] if policies_file else [])
    if all_presets:
        wanted = list(PRESET_ORDER) + [n for n in known if n not in PRESET_ORDER]
    else:
        wanted = list(dict.fromkeys(names or ["none"]))
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise ValueError(f"unknown policy {unknown[0]!r}; known: {', '.join(known)}")
    if "none" in wanted:
        wanted.remove("none")
    return [known["none"], *(known[n] for n in wanted)]


_PREP: Any = None  # (prepared replay, result context, baseline run), inherited by forked workers
_ARENA: Any = None  # a worker's per-event buffers, reused from one policy to the next


def _run_one(args: tuple[Any, Any, bool]) -> Any:
    """A forked worker: replay one policy and build its tables; only the (small) tables travel back."""
    from replay.results.tables import policy_tables
    from replay.policy.run import Arena, run_policy

    global _ARENA
    policy, costs, all_events = args
    prep, ctx, base = _PREP
    if _ARENA is None:
        _ARENA = Arena()
    run = run_policy(prep, policy, costs, arena=_ARENA, base=base)
    # the tables are pickled back before this worker runs its next policy (which reuses the arena)
    tables, row = policy_tables(prep, run, ctx, all_events=all_events)
    return tables, row, run.seconds


#: nice value of the follower threads (Linux: per thread)
FOLLOWER_NICE = 10


def _yield_to_baseline() -> None:
    """Lower this (follower) thread's scheduling priority: the recording baseline is the critical
    path, and with ten threads on a few CPUs it was otherwise preempted thousands of times (~0.1 s
    on 2 CPUs).  The followers trail it anyway; where per-thread nice is not supported, nothing."""
    if not sys.platform.startswith("linux"):  # elsewhere a thread id is not a PRIO_PROCESS target
        return
    try:
        tid = threading.get_native_id()
        if os.getpriority(os.PRIO_PROCESS, tid) < FOLLOWER_NICE:  # lower it, never raise it
            os.setpriority(os.PRIO_PROCESS, tid, FOLLOWER_NICE)
    except OSError:
        pass


def _follow(prep: Any, ctx: Any, policy: Any, costs: Any, feed: Any, all_events: bool) -> tuple[Any, Any, float]:
    """A thread: replay one policy behind the recording baseline, then build its tables (a policy
    that ``accepts_nothing`` takes the baseline's run once it is done)."""
    from replay.results.tables import policy_tables
    from replay.policy.run import accepts_nothing, baseline_run_as, run_policy

    _yield_to_baseline()
    if accepts_nothing(prep, policy, costs):
        run = baseline_run_as(prep, feed.result(), policy, costs)
    else:
        run = run_policy(prep, policy, costs, base=feed)
    tables, row = policy_tables(prep, run, ctx, all_events=all_events)
    return tables, row, run.seconds


def _record(prep: Any, policy: Any, costs: Any, feed: Any) -> Any:
    """A thread: the baseline replay, recording for and reporting to the delta replays that follow it."""
    from replay.policy.run import run_policy

    try:
        run = run_policy(prep, policy, costs, record=True, feed=feed)
    except BaseException as exc:
        feed.finish(None, exc)
        raise
    feed.finish(run)
    return run


def _run_exact_threads(prep: Any, ctx: Any, policies: list[Any], costs: Any, all_events: bool,
                       on_baseline: Any = None) -> tuple[Any, dict[str, tuple[Any, Any, float]]]:
    """Exact mode: the baseline in one thread, each other policy in a thread of its own that
    follows it (``replay.policy.run.BaselineFeed``: up to the baseline's safe point, reported
    every 1M events; the compiled walks release the GIL, so the followers' Python, mostly
    acceptance round trips, runs beside the baseline).  Once the baseline is done, this thread
    builds its tables while the followers finish."""
    from concurrent.futures import ThreadPoolExecutor

    from replay.results.tables import policy_tables
    from replay.policy.run import BaselineFeed

    feed = BaselineFeed(prep)
    with ThreadPoolExecutor(max_workers=len(policies)) as pool:
        fb = pool.submit(_record, prep, policies[0], costs, feed)
        futures = {p.name: pool.submit(_follow, prep, ctx, p, costs, feed, all_events) for p in policies[1:]}
        base = fb.result()
        done = {base.name: (*policy_tables(prep, base, ctx, all_events=all_events), base.seconds)}
        if on_baseline is not None:
            on_baseline(base)
        done.update((name, f.result()) for name, f in futures.items())
    return base, done


def run_policies(prep: Any, ctx: Any, policies: list[Any], costs: Any, *, workers: int = 2,
                 all_events: bool = False, on_baseline: Any = None) -> tuple[Any, list[Any], dict[str, float]]:
    """Run every policy on ``prep``, ``none`` (policies[0]) first.  In exact mode the baseline
    records each event's change of free pages and every other policy replays on its results
    (``replay.policy.delta``; in full where those would not hold) in a thread that follows the
    baseline as it goes.  In simulate mode the rest run in up to ``workers`` forked processes
    once the baseline is done (``workers`` 1: one after the other here).  A policy that leaves nothing
    unaccepted when the trace starts (``accepts_nothing``: firmware-eager, kernel-eager) takes
    the baseline's replay with its own boot cost (``baseline_run_as``) instead of replaying it.

    ``on_baseline(run)``: called with the ``none`` run once it is done (with the followers still
    running, in exact mode: work that needs only the baseline, off the critical path).

    Returns the ``none`` run (its model state feeds the end-snapshot check), each policy's
    ``policy_tables`` result in order, and the replay seconds per policy.
    """
    if prep.mode == "exact" and len(policies) > 1 and workers > 1:
        base, done = _run_exact_threads(prep, ctx, policies, costs, all_events, on_baseline)
    else:
        base, done = _run_in_processes(prep, ctx, policies, costs, workers, all_events)
        if on_baseline is not None:
            on_baseline(base)
    parts = [done[base.name][:2]]
    seconds = {base.name: base.seconds}
    for p in policies[1:]:
        tables, row, sec = done[p.name]
        parts.append((tables, row))
        seconds[p.name] = sec
    return base, parts, seconds


def _run_in_processes(prep: Any, ctx: Any, policies: list[Any], costs: Any, workers: int,
                      all_events: bool) -> tuple[Any, dict[str, tuple[Any, Any, float]]]:
    """Simulate mode (or one worker): the baseline here, then the other policies in up to
    ``workers`` forked processes (in exact mode each replays on the recorded baseline)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from replay.results.tables import policy_tables
    from replay.policy.run import accepts_nothing, baseline_run_as, run_policy

    global _PREP, _ARENA
    # policies that leave nothing unaccepted at the trace's start replay exactly as the baseline
    same = [p for p in policies[1:] if accepts_nothing(prep, p, costs)]
    rest = [p for p in policies[1:] if p not in same]
    parallel = workers > 1 and len(rest) > 1 and "fork" in mp.get_all_start_methods()
    futures: list[Any] = []
    ex = None
    try:
        base = run_policy(prep, policies[0], costs, record=prep.mode == "exact" and bool(rest))
        _PREP = (prep, ctx, base)
        if parallel:
            ex = ProcessPoolExecutor(max_workers=min(workers, len(rest)), mp_context=mp.get_context("fork"))
            futures = [ex.submit(_run_one, (p, costs, all_events)) for p in rest]
        done = {base.name: (*policy_tables(prep, base, ctx, all_events=all_events), base.seconds)}
        for p in same:
            run = baseline_run_as(prep, base, p, costs)
            done[p.name] = (*policy_tables(prep, run, ctx, all_events=all_events), run.seconds)
        if parallel:
            done.update((p.name, f.result()) for p, f in zip(rest, futures))
        else:  # in this process, fresh buffers per policy (the tables may share them)
            for p in rest:
                run = run_policy(prep, p, costs, base=base)
                done[p.name] = (*policy_tables(prep, run, ctx, all_events=all_events), run.seconds)
                del run
    finally:
        if ex is not None:
            ex.shutdown(cancel_futures=True)
        _PREP = None
        _ARENA = None
    return base, done


def run_replay(trace: Path, mode: str, output: Path, *, snapshot: Path | None = None, end_snapshot: Path | None = None,
               check: bool = False, check_every: int = 100_000, guest_size: str | None = None,
               cpus: int | None = None, boot: bool | None = None, policies: list[str] | None = None,
               all_presets: bool = False, costs: str = "tdx-4k", policies_file: Path | None = None,
               workers: int = 2, all_events: bool = False) -> dict[str, Any]:
    """Load, replay under each policy, write the results folder (docs/results.md).

    Returns the replay summary of the ``none`` run (events, anomalies, fidelity, calibration,
    end snapshot...) with ``policies``: the per-policy summary rows, ``none`` first.
    """
    import threading
    from concurrent.futures import ThreadPoolExecutor

    del check, check_every  # the invariants are checked at the end of every policy's replay
    clock = PhaseClock()
    pols = resolve_policies(policies, all_presets, policies_file)  # cheap: a bad name fails at once
    # Arrow (>= 21) registers most compute kernels when pyarrow.compute is first imported, which
    # a thread's first cast or take does; a Parquet read on another thread meanwhile could miss
    # "cast" in the half-filled registry ("No function registered with name: cast", seen about
    # once in a hundred runs): register them before any thread starts
    import pyarrow.compute  # noqa: F401
    reader = ThreadPoolExecutor(1)
    # Arrow reads the trace without the GIL while this thread imports numba and the replay
    # modules, and the side thread loads the kernels from numba's cache (both hold the GIL)
    loading = reader.submit(_load, trace, snapshot, end_snapshot, guest_size, cpus, mode)
    try:
        from replay.acceptance.costs import get_costs
        from replay.jit import JIT_ENABLED

        cost = get_costs(costs)
        # (plain Python, PAGEREPLAY_JIT=0, has no kernels to load: no warm-up)
        warm = (threading.Thread(target=_warm_exact, args=(pols, cost), daemon=True)
                if mode == "exact" and JIT_ENABLED else None)
        if warm is not None:
            warm.start()
        table, events, md, layout, snap, end = loading.result()
    finally:
        reader.shutdown(wait=False)
    from replay.model.engine import ReplayOutput
    from replay.results.tables import (anomalies_table, combine_policy_tables, result_context, results_metadata,
                                       write_policy_results)
    from replay.policy.run import prefault_outputs, prepare
    from replay.results.summary import end_snapshot_report, summary_dict

    clock.lap("load")
    if warm is not None:
        warm.join()
    clock.lap("warm-up")
    with ThreadPoolExecutor(1) as pool:
        # the (comm, pid) groups (a compiled pass and NumPy, mostly without the GIL) alongside prepare
        ctx_f = pool.submit(result_context, table, [p.name for p in pols], events)
        # then, on the same thread (idle until prepare ends), the baseline's per-event arrays
        outputs_f = pool.submit(prefault_outputs, table.num_rows) if mode == "exact" else None
        prep = prepare(table, layout, mode=mode, snapshot=snap, boot=boot, metadata=md, events=events,
                       spare_state=mode == "exact")
        clock.lap("prepare")
        ctx = ctx_f.result()
        if outputs_f is not None:
            prep.give_outputs(outputs_f.result())
    clock.lap("context")
    # a plain replay (the baseline alone) keeps every input event's row: its per-event model result
    all_events = all_events or len(pols) == 1
    anomalies: list[Any] = []  # (the baseline's, built while the other policies finish)
    base, parts, seconds = run_policies(prep, ctx, pols, cost, workers=workers, all_events=all_events,
                                        on_baseline=lambda run: anomalies.append(anomalies_table(prep, run)))
    clock.lap("policies")
    out = ReplayOutput(mode=mode, events=prep.events, state=base.st, sections=base.S, out_anom=base.out_anom,
                       out_sec=base.out_sec, out_zone=base.out_zone, out_pfn=base.out_pfn, acount=base.acount,
                       zone_names=prep.zone_names, initial=prep.base.initial,
                       invariant_reports=[base.invariant_report], metadata=md)
    endrep = end_snapshot_report(out, layout, end) if end is not None else None
    if endrep is not None and snapshot is not None:
        from replay.results.summary import vmstat_delta

        vm = vmstat_delta(snapshot, end_snapshot)
        if vm:
            # compaction's free scanner takes its migration targets out of the buddy with no
            # tracepoint (isolate_freepages_block); each migrated page used one of them
            endrep["vmstat_delta"] = vm
            tot = endrep["per_zone"]
            diff = sum(r["diff_pages"] for r in tot.values())
            endrep["total_diff_pages"] = diff
            endrep["total_diff_minus_migrations"] = diff - vm.get("pgmigrate_success", 0)
    summary = summary_dict(out, prep.cal, endrep)
    summary["input"] = str(trace)
    tables, rows = combine_policy_tables(parts, anomalies[0])
    meta = results_metadata(prep, pols, cost, extra={"snapshot": str(snapshot or ""),
                                                     "end_snapshot": str(end_snapshot or "")})
    clock.lap("tables")
    write_policy_results(output, tables, meta)
    clock.lap("write")
    summary["policies"] = rows
    summary["replay_seconds"] = seconds
    summary["phase_seconds"] = clock.phases
    return summary


class PhaseClock:
    """Wall, user and system seconds per phase of a replay (this process and its finished
    workers); printed to stderr with PAGEREPLAY_TIMING=1, returned as ``phase_seconds``."""

    def __init__(self) -> None:
        self.phases: dict[str, dict[str, float]] = {}
        self._last = self._now()

    @staticmethod
    def _now() -> tuple[float, float, float]:
        import resource
        import time

        s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.perf_counter(), s.ru_utime + c.ru_utime, s.ru_stime + c.ru_stime

    def lap(self, name: str) -> None:
        now = self._now()
        wall, user, sys_ = (round(a - b, 3) for a, b in zip(now, self._last))
        self._last = now
        self.phases[name] = {"wall": wall, "user": user, "sys": sys_}
        if os.environ.get("PAGEREPLAY_TIMING"):
            import resource

            with open("/proc/self/statm") as f:  # resident pages now, and the peak so far
                rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") >> 20
            ru = resource.getrusage(resource.RUSAGE_SELF)
            peak, faults = ru.ru_maxrss >> 10, ru.ru_minflt  # (page faults so far: first touches)
            print(f"[timing] {name:10s} wall {wall:7.2f} s  user {user:7.2f} s  sys {sys_:7.2f} s  "
                  f"rss {rss:6d} MiB  peak {peak:6d} MiB  faults {faults >> 8:6d} MiB", file=sys.stderr)


def _tiny_trace(path: Path, pfn: int) -> None:
    """A five-event canonical table (pyarrow only) written to ``path``: enough to drive every
    replay kernel once."""
    import pyarrow.parquet as pq

    pq.write_table(_tiny_table(pfn), path)


def _tiny_table(pfn: int) -> Any:
    """The five events of ``_tiny_trace`` as a table."""
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


def _warm_exact(pols: list[Any], cost: Any) -> None:
    """Load the kernels of ``prepare`` and of the recording baseline from numba's cache on a tiny
    table, on a side thread while the trace's Parquet file is read (Arrow reads it without the
    GIL): the replay then finds them loaded, and the results tables' (``event_rows``).  The
    other policies' kernels (the delta walk, the acceptance paths) load in their own threads
    while the baseline replays (it needs no GIL).  Best effort: any failure here only means
    they load later."""
    try:
        import tempfile

        from replay.model.engine import event_arrays_from_parquet
        from replay.model.layout import infer_layout
        from replay.results.tables import policy_tables, result_context
        from replay.policy.run import prepare, run_policy

        # a 100 MiB layout of which the firmware accepts 8 MiB, and a page at 26 MiB, in memory
        # still unaccepted (few pages to set up: the kernels' types do not depend on the sizes);
        # read back from a Parquet file as the trace is, so that the columns are the same
        # (writable) array types
        pfn = 6656
        fw = 8 << 20
        with tempfile.TemporaryDirectory(prefix="pagereplay-warm-") as tmp:
            path = Path(tmp) / "warm.parquet"
            _tiny_trace(path, pfn)
            ea, table, _ = event_arrays_from_parquet(path, with_gfp=False)
        layout = infer_layout((1 << 14) - (1 << 12), (1 << 14) + (1 << 13), nr_cpus=2)
        prep = prepare(table, layout, mode="exact", events=ea)
        ctx = result_context(table, [p.name for p in pols], ea)
        base = run_policy(prep, pols[0], cost, record=True, firmware_accepted_bytes=fw)
        policy_tables(prep, base, ctx)
    except Exception:  # noqa: BLE001 - a warm-up only
        pass


def _warm_kernels(snapshot: str, pfn: int) -> None:
    """Compile (and cache on disk) the replay and policy kernels on a tiny trace.

    ``pagereplay demo`` runs this in a child process while it parses the sample, so that on a
    fresh machine numba compiles the scanner and the replay engine on two cores at once.
    """
    import tempfile

    with tempfile.TemporaryDirectory(prefix="pagereplay-warm-") as tmp:
        t = Path(tmp) / "warm.parquet"
        _tiny_trace(t, pfn)
        run_replay(t, "exact", Path(tmp) / "results", snapshot=Path(snapshot), end_snapshot=Path(snapshot),
                   policies=["list-promo", "v1-buddy-global-lock", "post-alloc", "background", "kernel-eager"],
                   costs="tdx-4k", workers=1)


def demo_replay(trace: Path, results_dir: Path) -> dict[str, Any]:
    """``pagereplay demo``'s replay step: the trace (with ``proc_before``/``proc_after`` beside it)
    under every policy preset, ``tdx-4k`` costs, exact mode.

    A child process compiles the replay kernels while this one parses (numba's first
    compilation is most of a cold run); with a warm cache it only costs a second.
    """
    import subprocess

    d = Path(trace).parent
    before = d / "proc_before"
    after = d / "proc_after"
    warm = None
    if before.is_dir():
        code = f"from replay.cli.replay import _warm_kernels; _warm_kernels({str(before)!r}, 0x108bc0)"
        warm = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    from parsers.api import parse_to_parquet

    parsed = Path(results_dir).parent / "events.parquet"
    parse_to_parquet([trace], parsed)
    if warm is not None:
        warm.wait()
    return run_replay(parsed, "exact", Path(results_dir), snapshot=before if before.is_dir() else None,
                      end_snapshot=after if after.is_dir() else None, all_presets=True, costs="tdx-4k")


SUMMARY_JSON_KEYS = ("policy", "firmware_calls", "firmware_ns", "zone_lock_hold_ns", "zone_lock_wait_ns",
                     "accept_lock_wait_ns", "irqs_off_max_ns", "accepted_bytes", "boot_accept_ns",
                     "alloc_added_p99_ns", "alloc_added_max_ns")


def _print_summary(s: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    c = Console(highlight=False, soft_wrap=True)
    c.print(f"[bold]{s['mode']} replay[/]: {s['events_replayed']:,} events, "
            f"anomalies {s['anomalies_total']:,} ({100 * s['anomaly_rate']:.3f} %), "
            f"unexplained {s['unexplained_anomalies']:,} ({100 * s['unexplained_anomaly_rate']:.4f} %), "
            f"invariants {'ok' if s['invariants_ok'] else 'VIOLATED'}")
    if s["anomalies"]:
        t = Table(title="anomalies by kind")
        t.add_column("kind")
        t.add_column("events", justify="right")
        for k, v in sorted(s["anomalies"].items(), key=lambda kv: -kv[1]):
            t.add_row(k, f"{v:,}")
        c.print(t)
    f = s["fidelity"]
    c.print("fidelity: " + ", ".join(f"{k} {v:.3f}" for k, v in f.items() if v is not None))
    c.print("lock sections: " + ", ".join(f"{k} {v:,}" for k, v in s["lock_sections"].items()))
    cal = s["calibration"]
    c.print(f"calibration: refill {cal['refill_base_ns']:.0f} + {cal['refill_per_block_ns']:.0f}/block ns, "
            f"drain {cal['drain_base_ns']:.0f} + {cal['drain_per_block_ns']:.0f}/block ns")
    if "end_snapshot" in s:
        t = Table(title="free pages at the end vs end snapshot")
        for col in ("zone", "model", "snapshot", "diff", "rel", "explained", "residual", "residual rel"):
            t.add_column(col, justify="right")
        for z, r in s["end_snapshot"]["per_zone"].items():
            rel = r["rel_diff"]
            rr = r.get("residual_rel")
            t.add_row(z, f"{r['model_pages']:,}", f"{r['snapshot_pages']:,}", f"{r['diff_pages']:+,}",
                      "-" if rel is None else f"{100 * rel:+.2f} %",
                      "-" if r.get("explained_pages") is None else f"{r['explained_pages']:+,}",
                      "-" if r.get("residual_pages") is None else f"{r['residual_pages']:+,}",
                      "-" if rr is None else f"{100 * rr:+.2f} %")
        c.print(t)
        for z, r in s["end_snapshot"]["per_zone"].items():  # replay.results.endcheck: measured terms per zone
            ex = r.get("explained") or {}
            if any(v for v in ex.values()):
                c.print(f"{z}: explained by compaction: {ex.get('compaction')} pages; "
                        + ", ".join(f"{k} {v:+,}" for k, v in ex.items() if k != "compaction" and v is not None)
                        + f"; residual {r.get('residual_pages')}")


def register(app: typer.Typer) -> None:
    """Add ``replay`` to ``app``."""

    @app.command("replay")
    def replay_cmd(
        trace: Annotated[Path, typer.Argument(help="Text trace (ftrace/trace-cmd/perf) or the Parquet from `pagereplay parse`.")],
        output: Annotated[Path, typer.Option("-o", "--output", help="Results folder (docs/results.md: one Parquet table per file).")],
        mode: Annotated[Mode, typer.Option("--mode", help="exact: apply the trace's pfns; simulate: the model chooses them.")] = Mode.exact,
        snapshot: Annotated[Optional[Path], typer.Option("--snapshot", help="/proc snapshot folder taken before the trace (proc_before/).")] = None,
        end_snapshot: Annotated[Optional[Path], typer.Option("--end-snapshot", help="/proc snapshot after the trace: compare free pages per zone/order.")] = None,
        check: Annotated[bool, typer.Option("--check", help="Check the invariants periodically, not only at the end.")] = False,
        check_every: Annotated[int, typer.Option("--check-every", help="Events between periodic checks (--check).")] = 100_000,
        as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
        guest_size: Annotated[Optional[str], typer.Option("--guest-size", help="Guest RAM (e.g. 4G) when no snapshot gives the layout.")] = None,
        cpus: Annotated[Optional[int], typer.Option("--cpus", help="vCPU count override.")] = None,
        boot: Annotated[Optional[bool], typer.Option("--boot/--no-boot", help="Start from the boot layout (default: guessed).")] = None,
        policy: Annotated[Optional[list[str]], typer.Option("--policy", help="Acceptance policy (repeatable); default: none only.")] = None,
        all_policies: Annotated[bool, typer.Option("--all-policies", help="Every preset (and every policy of --policies-file).")] = False,
        costs: Annotated[str, typer.Option("--costs", help="Cost preset name (tdx-2m, tdx-4k, snp-2m, snp-4k) or a TOML file.")] = "tdx-4k",
        policies_file: Annotated[Optional[Path], typer.Option("--policies-file", help="TOML file with [policy.NAME] tables.")] = None,
        workers: Annotated[int, typer.Option("--workers", help="Parallelism for the policies after none: exact mode runs them as threads that follow the baseline (1: one after the other); simulate mode in this many forked processes (at most the CPU count; each holds ~120 bytes per event).")] = 2,
        all_events: Annotated[bool, typer.Option("--all-events", help="events.parquet: one row per input event for every policy (default: only the events a policy charged something to, unless the plain-VM baseline runs alone).")] = False,
    ) -> None:
        """Replay a page-allocator trace through the buddy + per-CPU list model, under acceptance policies."""
        try:
            if not trace.exists():
                raise FileNotFoundError(f"{trace}: no such file")
            if policy and all_policies:
                raise ValueError("give --policy or --all-policies, not both")
            s = run_replay(trace, mode.value, output, snapshot=snapshot, end_snapshot=end_snapshot, check=check,
                           check_every=check_every, guest_size=guest_size, cpus=cpus, boot=boot, policies=policy,
                           all_presets=all_policies, costs=costs, policies_file=policies_file,
                           workers=max(1, min(os.cpu_count() or 1, workers)), all_events=all_events)
        except typer.Exit:
            raise
        except Exception as e:  # noqa: BLE001 - one line, never a traceback
            if os.environ.get("PAGEREPLAY_DEBUG"):
                raise
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            print(f"error: {msg}", file=sys.stderr)
            raise typer.Exit(1) from None
        rows = s["policies"]
        if as_json:
            if len(rows) == 1:
                keep = ("mode", "events_replayed", "anomalies", "anomalies_total", "anomaly_rate",
                        "unexplained_anomalies", "unexplained_anomaly_rate", "invariants_ok", "fidelity",
                        "lock_sections", "calibration", "free_pages", "zones", "initial_state", "end_snapshot",
                        "invariants")
                obj = {k: v for k, v in rows[0].items() if k != "anomalies"}
                obj.update({k: s[k] for k in keep if k in s})
                print(json.dumps(obj, indent=2, sort_keys=True, default=str))
            else:
                print(json.dumps(rows, indent=2, default=str))
        else:
            _print_summary(s)
            _print_policies(rows, output)

    @app.command("compare")
    def compare_cmd(
        results: Annotated[Path, typer.Argument(help="Results folder of `pagereplay replay --policy ...`.")],
        as_json: Annotated[bool, typer.Option("--json", help="Rows and deltas against none as JSON.")] = False,
    ) -> None:
        """Policies side by side, with deltas against none (summary.parquet of a results folder)."""
        try:
            rows = read_summary(results)
        except Exception as e:  # noqa: BLE001 - one line, never a traceback
            if os.environ.get("PAGEREPLAY_DEBUG"):
                raise
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            print(f"error: {msg}", file=sys.stderr)
            raise typer.Exit(1) from None
        cmp = compare_rows(rows)
        if as_json:
            print(json.dumps(cmp, indent=2, default=str))
        else:
            _print_compare(cmp)

    from replay.cli.report import register_demo

    register_demo(app, demo_replay)


# ------------------------------------------------------------------ compare
COMPARE_KEYS = ("forced_allocations", "firmware_calls", "firmware_ns", "accepted_bytes", "boot_accept_ns",
                "zone_lock_hold_ns", "zone_lock_hold_max_ns", "zone_lock_wait_ns", "zone_lock_wait_max_ns",
                "accept_lock_hold_ns", "accept_lock_wait_ns", "accept_lock_wait_max_ns", "irqs_off_max_ns",
                "irqs_off_over_1ms", "irqs_off_over_20s", "alloc_added_p50_ns", "alloc_added_p90_ns",
                "alloc_added_p99_ns", "alloc_added_p999_ns", "alloc_added_max_ns")


def read_summary(results: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    p = Path(results) / "summary.parquet"
    if not p.is_file():
        raise FileNotFoundError(f"{results}: no summary.parquet (not a results folder)")
    rows = pq.read_table(p).to_pylist()
    if not rows or "policy" not in rows[0]:
        raise ValueError(f"{p}: no per-policy summary (written by an older pagereplay?)")
    return rows


def compare_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """``{"reference": "none", "policies": [...rows...], "deltas": {policy: {key: row - none}}}``."""
    ref = next((r for r in rows if r["policy"] == "none"), rows[0])
    deltas = {r["policy"]: {k: (r[k] - ref[k]) for k in COMPARE_KEYS if k in r and k in ref} for r in rows}
    return {"reference": ref["policy"], "policies": rows, "deltas": deltas}


def _fmt_ns(v: float) -> str:
    a = abs(v)
    for unit, f in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if a >= f:
            return f"{v / f:.3g} {unit}"
    return f"{v:.0f} ns"


def _fmt(k: str, v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if k.endswith("_ns"):
        return _fmt_ns(float(v))
    if k.endswith("_bytes"):
        return f"{float(v) / (1 << 20):,.1f} MiB"
    return f"{v:,}" if isinstance(v, int) else f"{v:.4g}"


def _print_compare(cmp: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    rows = cmp["policies"]
    t = Table(title=f"policies side by side (deltas against {cmp['reference']})")
    t.add_column("metric")
    for r in rows:
        t.add_column(str(r["policy"]), justify="right")
    for k in COMPARE_KEYS:
        cells = []
        for r in rows:
            d = cmp["deltas"][r["policy"]].get(k, 0)
            cell = _fmt(k, r.get(k))
            if r["policy"] != cmp["reference"] and d:
                cell += f" ({'+' if d > 0 else '-'}{_fmt(k, abs(d))})"
            cells.append(cell)
        t.add_row(k, *cells)
    Console(highlight=False, soft_wrap=True, width=max(120, 24 + 22 * len(rows))).print(t)


def _print_policies(rows: list[dict[str, Any]], output: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    c = Console(highlight=False, soft_wrap=True, width=170)
    t = Table(title=f"acceptance policies ({rows[0]['cost_preset']} costs) -> {output}")
    for col in ("policy", "forced", "fw calls", "fw time", "accepted", "zone wait", "accept wait", "IRQs-off max",
                "alloc +p99", "alloc +max", "boot accept"):
        t.add_column(col, justify="right")
    for r in rows:
        t.add_row(str(r["policy"]), f"{r['forced_allocations']:,}", f"{r['firmware_calls']:,}",
                  _fmt_ns(r["firmware_ns"]), _fmt("accepted_bytes", r["accepted_bytes"]),
                  _fmt_ns(r["zone_lock_wait_ns"]), _fmt_ns(r["accept_lock_wait_ns"]), _fmt_ns(r["irqs_off_max_ns"]),
                  _fmt_ns(r["alloc_added_p99_ns"]), _fmt_ns(r["alloc_added_max_ns"]), _fmt_ns(r["boot_accept_ns"]))
    c.print(t)
