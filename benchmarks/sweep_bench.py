"""``pagereplay sweep`` throughput: one grid on 1..N local workers and 1..N Ray CPUs.

The grid (>= 200 points over two real captures of ../shared/traces) runs once untimed (numba's
kernels loaded, the traces' pages cached), then:

* **replay**: every point replayed in this process on the prepared traces (``run_point``), timed
  one by one: what one point costs with no sweep around it;
* **local, n workers** (n = 1 .. N): ``run_sweep(jobs=n)`` into a fresh folder;
* **Ray, n CPUs**: ``ray.init(num_cpus=n)`` on this machine (loopback only, no dashboard, no usage
  report), one untimed sweep (the Ray workers load the kernels and unpickle the traces), then
  the timed one.

It prints points/s end to end and for the points alone (the run minus reading and preparing the
traces, which happens once per trace whatever the grid), the speed-up over one worker, and the
per-point overhead: (points-phase wall x workers / points - replay) / replay, i.e. everything the
sweep adds to a point's replay (encoding its rows, moving them between processes, writing and
renaming the files, scheduling, the summary).  Every run's folder is compared byte for byte with
the first one.

    .venv/bin/python benchmarks/sweep_bench.py [--workers N] [--no-ray] [TRACE TRACE]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # Ray on loopback only
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from replay.sweep.execute import SweepResult, run_sweep
from replay.sweep.grid import expand_grid, trace_fingerprint
from replay.sweep.point import prepare_trace, run_point
from replay.sweep.spec import SweepSpec, spec_from_cli

TRACES = ("debian12-6.1-small", "debian13-6.18-small")
POLICIES = "none,kernel-eager,post-alloc,list-6.6,list-promo,background"
COSTS = "tdx-4k,snp-2m"
AXES = ("guest_size=traced,16G,64G", "vcpus=1,4,16")


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "timings.json"}


def _machine_busy() -> float:
    """CPU seconds every process of this machine has used since boot (/proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait


def _own_cpu() -> float:
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


@dataclass
class Run:
    res: SweepResult
    cpu: float  # this process and its (forked) workers; not Ray's workers
    others: float  # CPU seconds the rest of the machine used meanwhile

    @property
    def phase(self) -> float:
        """The points alone: the run minus reading and preparing the traces."""
        return self.res.wall_s - self.res.prepare_s


def timed(spec: SweepSpec, out: Path, **kw: Any) -> Run:
    busy, own = _machine_busy(), _own_cpu()
    res = run_sweep(spec, out, progress=False, **kw)
    cpu = _own_cpu() - own
    run = Run(res, cpu, _machine_busy() - busy - cpu)
    assert res.failed == 0 and res.ran == res.points, res.failures[:3]
    return run


def replay_seconds(spec: SweepSpec) -> tuple[list[float], float]:
    """Each point's ``run_point`` alone in this process (after one untimed pass of the first
    points): wall seconds per point, CPU seconds in all."""
    fps = {t.name: trace_fingerprint(t) for t in spec.traces}
    points = expand_grid(spec, fps)
    out, cpu = [], 0.0
    for src in spec.traces:
        pt = prepare_trace(src, fps[src.name], [p.name for p in spec.policies], spec.mode)
        mine = [p for p in points if p.trace == src.name]
        for p in mine[:len(spec.policies) * 4]:  # (first calls of each kernel)
            run_point(pt, p)
        c0 = time.process_time()
        for p in mine:
            t0 = time.perf_counter()
            run_point(pt, p)
            out.append(time.perf_counter() - t0)
        cpu += time.process_time() - c0
    return out, cpu


def _report(label: str, runs: list[Run], base: Run | None, replay: float, replay_cpu: float, n: int,
            cpu: bool) -> Run:
    best = min(runs, key=lambda r: r.phase)
    pts = best.res.ran
    speedup = (base.phase / best.phase) if base else 1.0
    overhead = (best.phase * n / pts - replay) / replay
    walls = ", ".join(f"{r.res.wall_s:.2f}" for r in runs)
    target = f"; target >= x{0.8 * n:.1f}" if n > 1 else ""
    cpu_txt = (f"  CPU {best.cpu / pts * 1e3:.2f} ms/point ({best.cpu / pts / replay_cpu - 1:+.1%})" if cpu else "")
    print(f"{label:<16} best {best.res.wall_s:5.2f} s (runs: {walls}; prepare {best.res.prepare_s:.2f} s)  "
          f"{best.res.points_per_s:6.1f} points/s end to end, {pts / best.phase:6.1f} points/s  "
          f"speed-up x{speedup:.2f} ({speedup / n:.0%} of {n}{target})  overhead {overhead:+.1%} (target < 10%)"
          f"{cpu_txt}  "
          f"other processes {best.others / best.res.wall_s:.2f} CPUs", flush=True)
    return best


def run_local(spec: SweepSpec, scratch: Path, workers: int, rounds: int, replay: float, replay_cpu: float,
              ref: Path) -> list[Run]:
    """``rounds`` rounds of 1..N workers, alternating (the machine's load drifts)."""
    runs: dict[int, list[Run]] = {n: [] for n in range(1, workers + 1)}
    for _ in range(rounds):
        for n, rs in runs.items():
            out = scratch / f"local-{n}"
            rs.append(timed(spec, out, jobs=n))
            assert _tree(out) == _tree(ref), f"local-{n} differs from the reference folder"
            shutil.rmtree(out)
    best: list[Run] = []
    for n, rs in runs.items():
        best.append(_report(f"local, {n} worker{'s' if n > 1 else ''}", rs, best[0] if best else None, replay,
                            replay_cpu, n, cpu=True))
    return best


def run_ray(spec: SweepSpec, scratch: Path, workers: int, rounds: int, replay: float, replay_cpu: float,
            ref: Path) -> list[Run]:
    import ray

    best: list[Run] = []
    for n in range(1, workers + 1):
        t0 = time.perf_counter()
        ray.init(address="local", num_cpus=n, include_dashboard=False, log_to_driver=False)
        print(f"(ray.init with {n} CPU{'s' if n > 1 else ''}: {time.perf_counter() - t0:.1f} s)", flush=True)
        try:
            run_sweep(spec, scratch / f"ray-warm-{n}", ray="auto", progress=False)  # workers load, unpickle
            runs = []
            for _ in range(rounds):
                out = scratch / f"ray-{n}"
                runs.append(timed(spec, out, ray="auto"))
                assert _tree(out) == _tree(ref), f"ray-{n} differs from the reference folder"
                shutil.rmtree(out)
        finally:
            ray.shutdown()
        best.append(_report(f"Ray, {n} CPU{'s' if n > 1 else ''}", runs, best[0] if best else None, replay,
                            replay_cpu, n, cpu=False))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("traces", nargs="*", help="two capture folders (default: ../shared/traces/" +
                    " and ".join(TRACES) + ")")
    ap.add_argument("--workers", "-N", type=int, default=2, help="largest worker count (default 2)")
    ap.add_argument("--rounds", "-r", type=int, default=5, help="timed runs of each configuration (default 5)")
    ap.add_argument("--no-ray", action="store_true", help="local pool only")
    ap.add_argument("--points-per-file", type=int, default=None, help="chunk size (default: the spec's default)")
    args = ap.parse_args()
    traces = args.traces or [str(ROOT.parent / "shared" / "traces" / t) for t in TRACES]
    spec = spec_from_cli(traces, policies=[POLICIES], costs=[COSTS], axes=list(AXES))
    if args.points_per_file:
        spec = dataclasses.replace(spec, points_per_file=args.points_per_file)
    points = expand_grid(spec)
    print(f"grid: {len(points)} points = {len(spec.traces)} traces x {len(spec.policies)} policies x "
          f"{len(spec.costs)} cost presets x {' x '.join(str(len(v)) for _, v in spec.axes)} "
          f"({', '.join(AXES)}); {spec.points_per_file} points per file; {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f}; best of {args.rounds} runs", flush=True)
    with tempfile.TemporaryDirectory(prefix="sweep-bench-") as tmp:
        scratch = Path(tmp)
        ref = scratch / "reference"
        t0 = time.perf_counter()
        run_sweep(spec, ref, jobs=1, progress=False)  # untimed: kernels loaded, the reference folder
        print(f"(untimed first run: {time.perf_counter() - t0:.1f} s)", flush=True)
        rs, replay_cpu_total = replay_seconds(spec)
        replay, replay_cpu = statistics.mean(rs), replay_cpu_total / len(rs)
        print(f"replay alone (run_point): mean {replay * 1e3:.2f} ms, median {statistics.median(rs) * 1e3:.2f} ms, "
              f"max {max(rs) * 1e3:.1f} ms per point, CPU {replay_cpu * 1e3:.2f} ms per point; "
              f"{len(rs) / sum(rs):.1f} points/s", flush=True)
        ray_runs: list[Run] = []
        local = run_local(spec, scratch, args.workers, args.rounds, replay, replay_cpu, ref)
        if not args.no_ray:
            try:
                import ray  # noqa: F401
            except ImportError:
                print("Ray is not installed (pip install 'pagereplay[ray]'): Ray runs skipped")
            else:
                ray_runs = run_ray(spec, scratch, args.workers, args.rounds, replay, replay_cpu, ref)
        one = local[0]
        over = one.phase / one.res.ran / replay - 1
        print(f"per-point overhead at 1 worker: {over:+.1%} of a point's replay ({over * replay * 1e3:.2f} ms of "
              f"{replay * 1e3:.2f} ms; CPU: {one.cpu / one.res.ran / replay_cpu - 1:+.1%}); target < 10%")
        if args.workers >= 2:
            sp = one.phase / local[1].phase
            print(f"speed-up at 2 local workers: x{sp:.2f} ({sp / 2:.0%} of 2); target >= 0.8 x 2 = x1.6")
            if len(ray_runs) >= 2:
                sp = ray_runs[0].phase / ray_runs[1].phase
                print(f"speed-up at 2 Ray CPUs: x{sp:.2f} ({sp / 2:.0%} of 2); target >= 0.8 x 2 = x1.6")


if __name__ == "__main__":
    main()
