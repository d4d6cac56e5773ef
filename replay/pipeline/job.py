"""``run_replay``: one trace replayed under every requested policy, the results folder written.

The phases: load (the trace read beside numba's start-up and the kernels' warm-up), prepare
(event columns, initial state, calibration; the (comm, pid) context and the baseline's buffers
beside it), policies (``schedule.run_policies``), tables, write.  ``PAGEREPLAY_TIMING=1``
prints each phase's wall, user and system seconds to stderr.
"""

from __future__ import annotations

import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from replay.pipeline import schedule
from replay.pipeline.inputs import load_inputs, resolve_policies


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


def _end_check(out: Any, layout: Any, end: Any, snapshot: Path | None, end_snapshot: Path | None) -> dict[str, Any]:
    """The end-snapshot report, with the vmstat changes between the snapshots when both exist."""
    from replay.results.summary import end_snapshot_report, vmstat_delta

    endrep = end_snapshot_report(out, layout, end)
    if snapshot is not None:
        vm = vmstat_delta(snapshot, end_snapshot)
        if vm:
            # compaction's free scanner takes its migration targets out of the buddy with no
            # tracepoint (isolate_freepages_block); each migrated page used one of them
            endrep["vmstat_delta"] = vm
            diff = sum(r["diff_pages"] for r in endrep["per_zone"].values())
            endrep["total_diff_pages"] = diff
            endrep["total_diff_minus_migrations"] = diff - vm.get("pgmigrate_success", 0)
    return endrep


def capture_summary(md: dict[str, str], other_kinds: dict[str, int]) -> dict[str, Any]:
    """The replay summary's ``capture`` (a capture folder's kernel and overruns per CPU:
    ``parsers.capture.folder.capture_info``) and ``events_not_replayed`` (lock contention and
    untraced kprobe rows, by name: the model replays the kmem events only), each when there is one."""
    from parsers.capture.folder import capture_info

    out: dict[str, Any] = {}
    cap = capture_info(md)
    if cap:
        out["capture"] = cap
    if other_kinds:
        out["events_not_replayed"] = dict(other_kinds)
    return out


def run_replay(trace: Path, mode: str, output: Path, *, snapshot: Path | None = None, end_snapshot: Path | None = None,
               guest_size: str | None = None, cpus: int | None = None, boot: bool | None = None,
               policies: list[str] | None = None, all_presets: bool = False, costs: str = "tdx-4k",
               policies_file: Path | None = None, workers: int = 2, all_events: bool = False,
               check_every: int = 0, kernel: str | None = None) -> dict[str, Any]:
    """Load, replay under each policy, write the results folder (docs/results.md).

    ``check_every`` > 0: the baseline also checks the model's invariants every that many events.

    Returns the replay summary of the ``none`` run (events, anomalies, fidelity, calibration,
    end snapshot...) with ``policies``: the per-policy summary rows, ``none`` first.
    """
    clock = PhaseClock()
    pols = resolve_policies(policies, all_presets, policies_file)  # cheap: a bad name fails at once
    from replay.results.folder import check_results_output

    check_results_output(output, [trace, snapshot, end_snapshot, policies_file, costs if Path(costs).exists() else None])
    schedule.register_arrow_compute()
    reader = ThreadPoolExecutor(1)
    # Arrow reads the trace without the GIL while the side thread loads the kernels from numba's
    # cache (it holds the GIL)
    # numba's registries are filled once, here, before any thread compiles or loads a kernel:
    # the trace's reader thread does (event arrays), and so does the warm-up thread
    schedule.import_replay_modules()
    loading = reader.submit(load_inputs, trace, snapshot, end_snapshot, guest_size, cpus, mode, kernel)
    try:
        from replay.acceptance.costs import get_costs
        from replay.jit import JIT_ENABLED

        cost = get_costs(costs)
        # (plain Python, PAGEREPLAY_JIT=0, has no kernels to load: no warm-up)
        warm = (threading.Thread(target=schedule.warm_exact, args=(pols, cost), daemon=True)
                if mode == "exact" and JIT_ENABLED else None)
        if warm is not None:
            warm.start()
        inp = loading.result()
    finally:
        reader.shutdown(wait=False)
    from replay.model.engine import prepare_events
    from replay.policy.prepare import prepare
    from replay.results.tables import anomalies_table, policy_tables, result_context, results_metadata
    from replay.results.writer import ResultsWriter

    table, md, layout = inp.table, inp.metadata, inp.layout
    clock.lap("load")
    if warm is not None:
        warm.join()
    clock.lap("warm-up")
    buffers = schedule.PrefaultedBuffers()
    with ThreadPoolExecutor(1) as pool:
        # the (comm, pid) groups (a compiled pass and NumPy, mostly without the GIL) alongside prepare
        ctx_f = pool.submit(result_context, table, [p.name for p in pols], inp.events)
        # then, on the same thread (idle until prepare ends), the baseline's per-event arrays
        outputs_f = pool.submit(schedule.prefault_outputs, table.num_rows) if mode == "exact" else None
        init = prepare_events(table, layout, mode=mode, snapshot=inp.snapshot, boot=boot, events=inp.events,
                              profile=inp.profile)
        if mode == "exact":  # the baseline's state copy, made while the calibration runs
            buffers.copy_from(init.state)
        prep = prepare(table, layout, mode=mode, metadata=md, initial=init)
        clock.lap("prepare")
        ctx = ctx_f.result()
        if outputs_f is not None:
            buffers.give_outputs(outputs_f.result())
    clock.lap("context")
    # a plain replay (the baseline alone) keeps every input event's row: its per-event model result
    all_events = all_events or len(pols) == 1
    meta = results_metadata(prep, pols, cost, extra={"kernel_profile": inp.profile.name,
                                                     "snapshot": str(snapshot or ""),
                                                     "end_snapshot": str(end_snapshot or "")})
    with ResultsWriter(output, [p.name for p in pols], meta) as writer:
        # each policy's big tables go to disk as it finishes (in policy order): memory per
        # policy, not per replay
        def tables_of(run: Any) -> tuple[dict[str, Any], dict[str, Any]]:
            t, row = policy_tables(prep, run, ctx, all_events=all_events)
            return writer.offer(run.name, t), row

        # the baseline's anomalies, written (and dropped) while the other policies finish
        base, parts, seconds = schedule.run_policies(
            prep, pols, cost, tables_of, workers=workers, buffers=buffers, check_every=check_every,
            on_baseline=lambda run: writer.write_now("anomalies", anomalies_table(prep, run)))
        clock.lap("policies")
        summary, rows = _finish(prep, base, parts, inp, trace, layout, snapshot, end_snapshot, writer, clock)
    summary["policies"] = rows
    summary["replay_seconds"] = seconds
    summary["phase_seconds"] = clock.phases
    return summary


def _finish(prep: Any, base: Any, parts: list[Any], inp: Any, trace: Path, layout: Any,
            snapshot: Path | None, end_snapshot: Path | None, writer: Any, clock: PhaseClock
            ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The replay summary of the baseline and the per-policy rows; the rest of the results written
    (``anomalies`` is, already)."""
    from replay.model.engine import ReplayOutput
    from replay.results.summary import summary_dict
    from replay.results.tables import combine_policy_tables
    from replay.results.writer import STREAMED

    md = inp.metadata
    out = ReplayOutput(mode=prep.mode, events=prep.events, state=base.st, sections=base.S, out_anom=base.out_anom,
                       out_sec=base.out_sec, out_zone=base.out_zone, out_pfn=base.out_pfn, acount=base.acount,
                       zone_names=prep.zone_names, initial=prep.initial,
                       invariant_reports=[*base.invariant_checks, base.invariant_report], metadata=md)
    endrep = _end_check(out, layout, inp.end_snapshot, snapshot, end_snapshot) if inp.end_snapshot is not None else None
    summary = summary_dict(out, prep.cal, endrep)
    summary["input"] = str(trace)
    summary["kernel_profile_source"] = inp.profile_source
    summary.update(capture_summary(md, inp.other_kinds))
    tables, rows = combine_policy_tables(parts, None)
    clock.lap("tables")
    writer.finish(parts, {n: t for n, t in tables.items() if n not in STREAMED and n != "anomalies"})
    clock.lap("write")
    return summary, rows
