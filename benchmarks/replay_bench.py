"""Replay speed and model memory, side by side with parsing, in one run.

    .venv/bin/python benchmarks/replay_bench.py [--traces ../shared/traces] [--tiles N]
                                                [--cli-tiles 2,3] [--cli-runs 5] [--no-cli]

0. end to end (``--cli``, first, from a lean process): the large trace tiled 2 and 3 times
   (9.8M and 14.7M events) rendered as ftrace text; ``pagereplay parse`` of it against
   ``pagereplay replay --all-policies`` of the result, alternating (the issue's target);
1. parse: ``parsers.api.parse_files`` on large + large + medium text traces (>= 10M events);
2. build a >= 10M-event table by tiling the parsed large trace N times, each tile shifted to
   its own pfn range (so the tiles do not collide) and its own time range;
3. exact replay and simulate replay of that table (the loop alone and end to end, initial-state
   inference included), in events/s, with the ratio to parsing;
4. each acceptance policy's replay of that table beside the ``none`` replay (``--policies``);
5. model state bytes per 4 KiB page for a 256 GiB guest layout (``layout_for_guest``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")  # as `pagereplay` itself runs (replay/cli/__init__.py)
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")  # (freed tables go back to the OS)
from pathlib import Path

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from parsers.api import load_events, parse_files  # noqa: E402
from replay.events.arrays import event_arrays  # noqa: E402
from replay.model.engine import replay, run_loop
from replay.model.initial_state import infer_initial_state, model_zones  # noqa: E402
from replay.model.layout_x86 import infer_layout, layout_for_guest  # noqa: E402
from replay.model.simulate import zonelist_of  # noqa: E402
from replay.model.state import new_state, state_bytes_per_page  # noqa: E402


def tile(table: pa.Table, tiles: int, pfn_stride: int) -> pa.Table:
    """``tiles`` copies of ``table``, copy k with pfn + k*stride and ts + k*span."""
    ts = table.column("ts_ns").to_numpy()
    span = int(ts.max() - ts.min()) + 1
    parts = []
    for k in range(tiles):
        t = table
        pfn = pa.compute.add(t.column("pfn"), pa.scalar(k * pfn_stride, pa.int64()))
        t = t.set_column(t.schema.get_field_index("pfn"), "pfn", pfn)
        t = t.set_column(t.schema.get_field_index("ts_ns"), "ts_ns",
                         pa.compute.add(t.column("ts_ns"), pa.scalar(k * span, pa.int64())))
        t = t.set_column(t.schema.get_field_index("seq"), "seq",
                         pa.compute.add(t.column("seq"), pa.scalar(k * table.num_rows, pa.int64())))
        parts.append(t)
    return pa.concat_tables(parts, promote_options="permissive").unify_dictionaries().combine_chunks()


def bench_policies(table: pa.Table, layout: object, n: int, parse_rate: float, which: str, costs: str,
                   repeat: int = 3) -> None:
    """Each acceptance policy's replay beside the ``none`` replay of the same table (exact mode).

    ``prepare`` (columns, initial state, calibration) is shared by all policies and timed once.
    ``none`` is timed as ``replay --all-policies`` runs it (recording each event's change of free
    pages for the delta replays), then each policy twice: its full replay (``run_policy`` alone:
    acceptance state from the layout, reconciliation, the compiled loop with its acceptance round
    trips, invariants, boot cost; a reused buffer arena, as a worker would) and its delta replay on
    the recorded baseline (``replay.policy.delta``, what ``replay`` runs: the walk that visits only
    the events that can matter; the walk over every event is timed beside it).  Best of ``repeat``.
    """
    import gc

    from replay.acceptance.unaccepted_memory import Receipt
    from replay.acceptance.costs import get_costs
    from replay.acceptance.policies import PRESET_ORDER, all_policies
    from replay.pipeline.schedule import Arena
    from replay.policy.prepare import prepare
    from replay.policy.run import FinishedBaseline, accepts_nothing, run_full, run_policy

    pols = all_policies()
    names = list(PRESET_ORDER) if which == "all" else ["none", *[p for p in which.split(",") if p != "none"]]
    cost = get_costs(costs)
    t0 = time.perf_counter()
    prep = prepare(table, layout, mode="exact")
    t_prep = time.perf_counter() - t0
    print(f"policies ({cost.name} costs, exact, best of {repeat}): prepare (columns + initial state + calibration) {t_prep:.2f} s")

    def best(fn: object) -> tuple[float, object]:
        b, r = float("inf"), None
        for _ in range(max(1, repeat)):  # best of N: the shared machine's spread is large
            r = None
            gc.collect()
            t1 = time.perf_counter()
            r = fn()  # type: ignore[operator]
            b = min(b, time.perf_counter() - t1)
        return b, r

    arena = Arena()
    run_full(prep, pols["none"], cost, buffers=arena)  # the arena's first touch, untimed
    t_none, base = best(lambda: run_full(prep, pols["none"], cost, record=True))
    t_plain, _ = best(lambda: run_full(prep, pols["none"], cost, buffers=arena))
    print(f"  {'none':24s} {t_none:6.2f} s = {n / t_none / 1e6:6.2f} M events/s (recording the baseline;"
          f" {t_plain:.2f} s without)")
    t0 = time.perf_counter()
    base = FinishedBaseline(prep, base)
    t_index = time.perf_counter() - t0
    print(f"  delta index (section sums, visited events, buckets): {t_index:.3f} s, once per baseline")
    total_full, total_delta, total_dense = 0.0, 0.0, 0.0
    worst = 0.0
    for name in names[1:]:
        t_full, r = best(lambda: run_full(prep, pols[name], cost, buffers=arena))
        del r
        t_dense, r = best(lambda: run_policy(prep, pols[name], cost, baseline=base, sparse=False))
        del r
        t_delta, r = best(lambda: run_policy(prep, pols[name], cost, baseline=base))
        total_full += t_full
        total_delta += t_delta
        total_dense += t_dense
        worst = max(worst, t_delta / t_none, t_full / t_plain)
        shared = " (shares the baseline replay in `replay`)" if accepts_nothing(prep, pols[name], cost) else ""
        print(f"  {name:24s} full {t_full:6.2f} s x{t_full / t_plain:4.2f} of none | delta {t_delta:6.3f} s"
              f" x{t_delta / t_none:5.3f} of none, visiting {r.visited / n:6.2%} of the events (every event:"
              f" {t_dense:5.2f} s) ({r.method}; round trips"
              f" {r.yields:,}, forced {int(r.handled_forced.sum()):,}, accepted"
              f" {int(r.totals[Receipt.BYTES]) >> 20:,} MiB, invariants"
              f" {'ok' if r.invariants_ok and r.accepted_ok else 'VIOLATED'}){shared}")
        del r
    print(f"  all {len(names)} policies: baseline {t_none:.2f} s + delta replays {total_delta:.2f} s"
          f" (visiting every event {total_dense:.2f} s, full replays {total_full:.2f} s) + prepare {t_prep:.2f} s;"
          f" worst policy x{worst:.2f} of"
          f" none (target <= 2x); parse_files of {n:,} events would take {n / parse_rate:.2f} s")


def _run(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, float, int]:
    """(wall s, user+sys CPU s of the child, peak RSS MiB, exit status) of one command."""
    import resource
    import subprocess

    child = {**os.environ, **(env or {})}
    # as on a user's machine after the first run, the children find (and write) cached bytecode:
    # a PYTHONDONTWRITEBYTECODE left in a sandbox's environment would have every run compile
    # the package from source (~0.1 s of start-up for replay, less for parse)
    child.pop("PYTHONDONTWRITEBYTECODE", None)
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=child)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode:
        print(p.stderr.decode(errors="replace")[-2000:])
    return (wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), r1.ru_maxrss / 1024, p.returncode)


def bench_cli(make_table: Any, tiles: list[int], workdir: Path, costs: str, runs: int = 5) -> None:
    """End to end, as a user runs it: for each tile count, render the tiled table as ftrace text,
    then time ``pagereplay parse TEXT -o events.parquet`` and ``pagereplay replay events.parquet
    --all-policies -o results/`` (the ten presets, results written), alternating, ``runs`` times.

    Runs before the in-process benchmarks, with this process's tables freed: on a VM a process
    holding several GB makes the children's first-touch page faults (and so both timings) noisy."""
    import gc

    from parsers.synthetic.render import render

    exe = str(Path(sys.executable).with_name("pagereplay"))
    for k in tiles:
        table = make_table(k)
        n = table.num_rows
        text = workdir / "trace.txt"
        t0 = time.perf_counter()
        nbytes = render(table, text, fmt="ftrace", era="D")
        del table
        gc.collect()
        print(f"end to end (CLI): {n:,} events ({k} tiles) rendered as ftrace text ({nbytes / 2**30:.2f} GiB) "
              f"in {time.perf_counter() - t0:.1f} s (not timed)")
        events = workdir / "events.parquet"
        os.sync()  # the GBs just written would otherwise be flushed to disk during the timed runs
        # page cache, numba's cache and the bytecode warm (untimed)
        _run([exe, "parse", str(text), "-o", str(events)])
        _run([exe, "replay", str(events), "--all-policies", "--costs", costs, "-o", str(workdir / "results")])
        parse_w, replay_w = [], []
        for i in range(runs):  # alternating
            order = ("parse", "replay") if i % 2 == 0 else ("replay", "parse")
            for what in order:
                if what == "parse":
                    w, c, _rss, rc = _run([exe, "parse", str(text), "-o", str(events), "--json"])
                    parse_w.append(w)
                else:
                    w, c, _rss, rc = _run([exe, "replay", str(events), "--all-policies", "--costs", costs, "-o",
                                        str(workdir / "results"), "--json"])
                    replay_w.append(w)
                print(f"  run {i + 1}: pagereplay {what:7s} {w:6.2f} s wall  {c:6.2f} s CPU  rc {rc}")
        wp, wr = sorted(parse_w)[runs // 2], sorted(replay_w)[runs // 2]
        print(f"  {n:,} events, median of {runs}: parse {wp:.2f} s (min {min(parse_w):.2f}), replay --all-policies "
              f"{wr:.2f} s (min {min(replay_w):.2f}); all ten policies / parse: x{wr / wp:.2f} wall (target < 1)")
        text.unlink()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--traces", default=str(ROOT.parent / "shared" / "traces"))
    ap.add_argument("--tiles", type=int, default=3)
    ap.add_argument("--policies", default="all", help="all, skip, or a comma list of policy names")
    ap.add_argument("--costs", default="tdx-4k")
    ap.add_argument("--repeat", type=int, default=3, help="best of N runs per policy")
    ap.add_argument("--cli", action=argparse.BooleanOptionalAction, default=True,
                    help="also time `pagereplay parse` and `pagereplay replay --all-policies` end to end")
    ap.add_argument("--cli-tiles", default="2,3", help="tile counts of the end-to-end runs (2: 9.8M events)")
    ap.add_argument("--cli-runs", type=int, default=5, help="alternating runs per tile count")
    a = ap.parse_args()
    tr = Path(a.traces)
    large = tr / "debian12-6.1-large" / "trace.txt.zst"
    medium = tr / "debian12-6.1-medium" / "trace.txt.zst"

    if a.cli:  # first, from a lean process (see bench_cli)
        import tempfile

        with tempfile.TemporaryDirectory(prefix="replay_bench_") as d:
            bench_cli(lambda k: tile(load_events(large)[0], k, 1 << 22), [int(x) for x in a.cli_tiles.split(",")],
                      Path(d), a.costs, a.cli_runs)

    # warm up numba (compiled once, cached on disk) so timings are steady-state
    t0 = time.perf_counter()
    small, _ = load_events(tr / "debian12-6.1-small" / "trace.txt.zst")
    pfn = small.column("pfn").drop_null().to_numpy()
    replay(small, infer_layout(int(pfn[pfn > 0].min()), int(pfn.max()), nr_cpus=4), mode="exact")
    replay(small, infer_layout(int(pfn[pfn > 0].min()), int(pfn.max()), nr_cpus=4), mode="simulate")
    if a.policies != "skip":
        from replay.acceptance.costs import get_costs
        from replay.acceptance.policies import all_policies
        from replay.policy.prepare import prepare
        from replay.policy.run import run_full, run_policy

        prep = prepare(small, infer_layout(int(pfn[pfn > 0].min()), int(pfn.max()), nr_cpus=4), mode="exact")
        base = run_full(prep, all_policies()["none"], get_costs(a.costs), record=True)
        for pol in all_policies().values():
            run_full(prep, pol, get_costs(a.costs))
            run_policy(prep, pol, get_costs(a.costs), baseline=base)
        del prep, base
    print(f"warm-up (numba compile or cache load): {time.perf_counter() - t0:.1f} s")

    t0 = time.perf_counter()
    res = parse_files([large, large, medium])
    t_parse = time.perf_counter() - t0
    n_parse = res.table.num_rows
    print(f"parse    {n_parse:>11,} events  {t_parse:7.2f} s  {n_parse / t_parse / 1e6:6.2f} M events/s"
          "  (large + large + medium text, zstd)")
    del res

    base, _ = load_events(large)
    stride = 1 << 22  # 16 GiB of pfns per tile
    table = tile(base, a.tiles, stride)
    n = table.num_rows
    pfn = table.column("pfn").drop_null().to_numpy()
    layout = infer_layout(int(pfn[pfn > 0].min()), int(pfn.max()), nr_cpus=4)
    print(f"replay table: {n:,} events ({a.tiles} tiles of the large trace), layout {layout.total_present() * 4 >> 20} GiB")

    for mode in ("exact", "simulate"):
        t0 = time.perf_counter()
        ea = event_arrays(table)
        t_arrays = time.perf_counter() - t0
        t1 = time.perf_counter()
        st, _ = infer_initial_state(ea.ev, ea.pfn, ea.order, ea.mt, ea.cpu, ea.fb_mt, layout, boot=False)
        t_init = time.perf_counter() - t1
        zones = model_zones(layout)
        t2 = time.perf_counter()
        run_loop(mode, st, ea, zonelist=zonelist_of(zones))
        t_loop = time.perf_counter() - t2
        total = time.perf_counter() - t0
        print(f"{mode:8s} {n:>11,} events  loop {t_loop:6.2f} s = {n / t_loop / 1e6:6.2f} M events/s"
              f"  | end to end {total:6.2f} s = {n / total / 1e6:6.2f} M events/s"
              f" (columns {t_arrays:.2f} s, initial state {t_init:.2f} s)"
              f"  | loop vs parse x{(n / t_loop) / (n_parse / t_parse):.1f}, end to end x{(n / total) / (n_parse / t_parse):.1f}")

    if a.policies != "skip":
        bench_policies(table, layout, n, n_parse / t_parse, a.policies, a.costs, a.repeat)

    lay = layout_for_guest(256 << 30, 64)
    zs = model_zones(lay)
    st = new_state(np.array([z.zone_start_pfn for z in zs]), np.array([z.zone_end_pfn for z in zs]), lay.nr_cpus)
    print(f"model state for a 256 GiB / 64 vCPU guest: {sum(x.nbytes for x in st) / 2**20:,.0f} MiB, "
          f"{state_bytes_per_page(st):.2f} bytes per 4 KiB page")


if __name__ == "__main__":
    main()
