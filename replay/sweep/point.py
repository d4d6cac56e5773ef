"""One trace prepared for a sweep (``prepare_trace``) and one point replayed on it (``run_point``).

A trace is read, prepared (``replay.policy.prepare``) and replayed once under ``none``, the
plain-VM baseline that every policy's delta replay runs on (exact mode: it records its changes of
free pages; ``FinishedBaseline`` builds the delta index once).  The result tables' context (the
(comm, pid) groups) is made once too.  A point then costs one policy replay on that baseline
(``run_policy``, or ``baseline_run_as`` for a policy that leaves nothing unaccepted), its guest
shape (``replay.sweep.guest``) and its tables (``policy_tables``): the same sequence as
``replay.pipeline.job.run_replay``, for one policy.

Nothing here knows where it runs: ``replay.sweep.execute`` calls ``run_point`` in this process,
in forked workers or in Ray tasks, and the result is the same.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from replay.sweep.grid import Point
from replay.sweep.guest import GuestShape, guest_boot, guest_shape, traced_bytes
from replay.sweep.spec import TraceSource

__all__ = ["PointOutcome", "PreparedTrace", "prepare_trace", "run_point"]


@dataclass
class PreparedTrace:
    """What every point of one trace starts from (read-only while points run)."""

    name: str
    fingerprint: str  # sha256 of the trace's files (``grid.trace_fingerprint``)
    prep: Any  # replay.policy.prepare.Prepared
    baseline: Any  # the ``none`` PolicyRun (recording, in exact mode)
    source: Any  # what delta replays read: FinishedBaseline (exact mode) or the baseline run
    ctx: Any  # replay.results.tables.ResultContext, for every policy of the sweep


def prepare_trace(src: TraceSource, fingerprint: str, policy_names: list[str], mode: str) -> PreparedTrace:
    """Read and prepare ``src`` and replay its baseline (``none``) once."""
    from replay.acceptance.costs import get_costs
    from replay.acceptance.policies import PRESETS
    from replay.pipeline.inputs import load_inputs
    from replay.policy.prepare import prepare
    from replay.policy.run import FinishedBaseline, run_full
    from replay.results.tables import result_context

    inp = load_inputs(src.path, src.snapshot, src.end_snapshot, None, None, mode)
    prep = prepare(inp.table, inp.layout, mode=mode, snapshot=inp.snapshot, metadata=inp.metadata, events=inp.events)
    ctx = result_context(inp.table, list(dict.fromkeys(["none", *policy_names])), inp.events)
    # the baseline's costs only name it: ``none`` accepts nothing (each point renames it)
    base = run_full(prep, PRESETS["none"], get_costs("tdx-4k"), record=mode == "exact")
    source = FinishedBaseline(prep, base) if base.dfree is not None else base
    return PreparedTrace(name=src.name, fingerprint=fingerprint, prep=prep, baseline=base, source=source, ctx=ctx)


@dataclass
class PointOutcome:
    """A replayed point: its tables (docs/results.md, one policy) and its summary row."""

    tables: dict[str, Any]  # name -> pyarrow.Table
    row: dict[str, Any]  # the point's summary columns (docs/sweep.md), identity columns excluded
    method: str  # how the policy was replayed: "delta", "full" or "baseline"


def _replay(pt: PreparedTrace, point: Point) -> tuple[Any, str]:
    """The policy's run on the prepared trace (a policy that leaves nothing unaccepted is the
    baseline with its own acceptance state and boot cost)."""
    from replay.policy.run import accepts_nothing, baseline_run_as, run_policy

    prep, fa = pt.prep, point.firmware_accepted_bytes
    if accepts_nothing(prep, point.policy, point.costs, firmware_accepted_bytes=fa):
        return baseline_run_as(prep, pt.baseline, point.policy, point.costs, firmware_accepted_bytes=fa), "baseline"
    run = run_policy(prep, point.policy, point.costs, baseline=pt.source, firmware_accepted_bytes=fa)
    return run, run.method


def _in_guest(run: Any, shape: GuestShape, point: Point) -> tuple[Any, int]:
    """``run`` as the run in the whole guest: its boot cost, and the extra memory in the time
    series' unaccepted bytes (the replay of the traced events is unchanged)."""
    if shape.is_traced:
        return run, 0
    gb = guest_boot(shape, point.policy, point.costs, point.firmware_accepted_bytes)
    unaccepted = np.asarray(run.ts_unaccepted, np.int64) + np.int64(gb.extra_unaccepted_bytes)
    return dataclasses.replace(run, boot=gb.boot, ts_unaccepted=unaccepted,
                               present_bytes=shape.present_bytes), gb.extra_unaccepted_bytes


def run_point(pt: PreparedTrace, point: Point) -> PointOutcome:
    """Replay ``point`` on its prepared trace: tables and summary row."""
    from replay.results.tables import policy_tables

    shape = guest_shape(pt.prep.layout, point.guest_bytes, point.vcpus)
    run, method = _replay(pt, point)
    run, extra_unaccepted = _in_guest(run, shape, point)
    tables, summary = policy_tables(pt.prep, run, pt.ctx)
    added = tables["attribution_cpu"].column("added_ns").to_numpy()
    ts_unacc = np.asarray(run.ts_unaccepted, np.int64)
    boot = run.boot
    row = {k: v for k, v in summary.items() if k not in ("policy", "mode", "cost_preset")}
    row.update({
        "guest_size_bytes": int(point.guest_bytes if point.guest_bytes is not None else traced_bytes(shape.traced)),
        "guest_present_bytes": int(shape.present_bytes), "vcpus": int(shape.vcpus),
        "extra_bytes": int(shape.extra_bytes), "extra_unaccepted_bytes": int(extra_unaccepted),
        "unaccepted_bytes_end": int(ts_unacc[-1]) if len(ts_unacc) else 0,
        "added_ns": int(added.sum()), "boot_cpu_ns": round(float(boot.get("cpu_ns", 0.0))),
        "boot_accepted_bytes": int(boot.get("accepted_bytes", 0)), "boot_threads": int(boot.get("threads", 0)),
        "boot_bound": str(boot.get("bound", "-")),
    })
    return PointOutcome(tables=tables, row=row, method=method)
