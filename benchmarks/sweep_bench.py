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
renaming the files, scheduling, the summary).  It also prints the overhead within the run:
(points-phase wall x workers - the points' own seconds) / the points' own seconds, each point's
seconds being its ``run_point`` inside the sweep (``SweepResult.point_seconds``): the same
quantity measured in the same run, so it does not drift with the machine's load between the
replay baseline and the sweep.  Every run's folder is compared byte for byte with the first one.

``--breakdown`` times each step of a 1-worker sweep in this process instead (wall and CPU
seconds of encoding, writing, the summary, the grid... against the points' own run_point).

``--baseline DIR`` (a checkout of another revision: ``git worktree add /tmp/base HEAD~1``)
measures that tree and this one side by side: each round runs one child process per tree,
alternating (the machine's load drifts), each child measuring the replay alone and every
configuration once; the figures are the best of the rounds, printed next to each other, and the
two trees' sweep folders are compared byte for byte.

    .venv/bin/python benchmarks/sweep_bench.py [--workers N] [--no-ray] [--baseline DIR] [TRACE TRACE]
    [SWEEP_BENCH_TREE=DIR] .venv/bin/python benchmarks/sweep_bench.py --breakdown [-r R]
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
#: the tree whose ``replay`` is measured: this one, or (a child process of ``--baseline``) another
TREE = Path(os.environ.get("SWEEP_BENCH_TREE") or ROOT)
sys.path.insert(0, str(TREE))

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
    """One timed sweep, as figures (JSON-ready: a child process of ``--baseline`` prints them)."""

    wall: float
    prepare: float  # reading and preparing the traces
    ran: int
    points_s: float  # the points' own seconds: their run_point inside the sweep
    cpu: float  # this process and its (forked) workers; not Ray's workers
    others: float  # CPU seconds the rest of the machine used meanwhile

    @property
    def phase(self) -> float:
        """The points alone: the run minus reading and preparing the traces."""
        return self.wall - self.prepare


def timed(spec: SweepSpec, out: Path, **kw: Any) -> Run:
    busy, own = _machine_busy(), _own_cpu()
    res: SweepResult = run_sweep(spec, out, progress=False, **kw)
    cpu = _own_cpu() - own
    assert res.failed == 0 and res.ran == res.points, res.failures[:3]
    return Run(res.wall_s, res.prepare_s, res.ran, sum(res.point_seconds.values()), cpu,
               _machine_busy() - busy - cpu)


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


def measure_local(spec: SweepSpec, scratch: Path, workers: int, rounds: int, ref: Path) -> dict[str, list[Run]]:
    """``rounds`` rounds of 1..N workers, alternating (the machine's load drifts)."""
    runs: dict[str, list[Run]] = {f"local-{n}": [] for n in range(1, workers + 1)}
    for _ in range(rounds):
        for n in range(1, workers + 1):
            out = scratch / f"local-{n}"
            runs[f"local-{n}"].append(timed(spec, out, jobs=n))
            assert _tree(out) == _tree(ref), f"local-{n} differs from the reference folder"
            shutil.rmtree(out)
    return runs


def measure_ray(spec: SweepSpec, scratch: Path, workers: int, rounds: int, ref: Path) -> dict[str, list[Run]]:
    import ray

    runs: dict[str, list[Run]] = {}
    for n in range(1, workers + 1):
        t0 = time.perf_counter()
        ray.init(address="local", num_cpus=n, include_dashboard=False, log_to_driver=False)
        print(f"(ray.init with {n} CPU{'s' if n > 1 else ''}: {time.perf_counter() - t0:.1f} s)", file=sys.stderr,
              flush=True)
        try:
            run_sweep(spec, scratch / f"ray-warm-{n}", ray="auto", progress=False)  # workers load, unpickle
            runs[f"ray-{n}"] = []
            for _ in range(rounds):
                out = scratch / f"ray-{n}"
                runs[f"ray-{n}"].append(timed(spec, out, ray="auto"))
                assert _tree(out) == _tree(ref), f"ray-{n} differs from the reference folder"
                shutil.rmtree(out)
        finally:
            ray.shutdown()
    return runs


def measure(spec: SweepSpec, workers: int, rounds: int, use_ray: bool, keep: Path | None) -> dict[str, Any]:
    """Everything this tree measures: the replay alone and each configuration ``rounds`` times.
    ``keep``: where to leave the reference folder (to compare it with another tree's)."""
    with tempfile.TemporaryDirectory(prefix="sweep-bench-") as tmp:
        scratch = Path(tmp)
        ref = keep or scratch / "reference"
        if ref.exists():
            shutil.rmtree(ref)
        t0 = time.perf_counter()
        run_sweep(spec, ref, jobs=1, progress=False)  # untimed: kernels loaded, the reference folder
        print(f"({TREE}: untimed first run {time.perf_counter() - t0:.1f} s)", file=sys.stderr, flush=True)
        rs, replay_cpu_total = replay_seconds(spec)
        runs = measure_local(spec, scratch, workers, rounds, ref)
        if use_ray:
            runs.update(measure_ray(spec, scratch, workers, rounds, ref))
    return {"tree": str(TREE), "replay_s": statistics.mean(rs), "replay_median_s": statistics.median(rs),
            "replay_max_s": max(rs), "replay_cpu_s": replay_cpu_total / len(rs),
            "runs": {k: [dataclasses.asdict(r) for r in v] for k, v in runs.items()}}


# ------------------------------------------------------------------ figures
def _best(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Best of the rounds of one tree: the least replay time, and per configuration the run
    with the shortest points phase (every run's figures kept for the runs' list)."""
    out: dict[str, Any] = {"replay_s": min(r["replay_s"] for r in rounds),
                           "replay_cpu_s": min(r["replay_cpu_s"] for r in rounds), "runs": {}, "walls": {}}
    for key in rounds[0]["runs"]:
        runs = [Run(**x) for r in rounds for x in r["runs"][key]]
        out["runs"][key] = min(runs, key=lambda x: x.phase)
        out["walls"][key] = [x.wall for x in runs]
    return out


def _figures(b: dict[str, Any], key: str) -> dict[str, float | None]:
    kind, n = key.rsplit("-", 1)[0], int(key.rsplit("-", 1)[1])
    run, one = b["runs"][key], b["runs"][f"{kind}-1"]
    replay = b["replay_s"]
    return {"wall": run.wall, "prepare": run.prepare, "e2e": run.ran / run.wall, "pps": run.ran / run.phase,
            "speedup": one.phase / run.phase, "n": n,
            "overhead": (run.phase * n / run.ran - replay) / replay,
            "in_run": (run.phase * n - run.points_s) / run.points_s,
            "cpu": run.cpu / run.ran / b["replay_cpu_s"] - 1 if kind == "local" else None,
            "others": run.others / run.wall}


def _label(key: str) -> str:
    kind, n = key.rsplit("-", 1)
    plural = "s" if n != "1" else ""
    return f"local, {n} worker{plural}" if kind == "local" else f"Ray, {n} CPU{plural}"


def report_one(raw: list[dict[str, Any]]) -> None:
    b = _best(raw)
    print(f"replay alone (run_point): {b['replay_s'] * 1e3:.2f} ms per point (best of {len(raw)} rounds' means), "
          f"CPU {b['replay_cpu_s'] * 1e3:.2f} ms; {1 / b['replay_s']:.1f} points/s")
    for key in b["runs"]:
        f = _figures(b, key)
        target = f"; target >= x{0.8 * f['n']:.1f}" if f["n"] > 1 else ""
        cpu = f"  CPU (with the preparation) {f['cpu']:+.1%}" if f["cpu"] is not None else ""
        walls = ", ".join(f"{w:.2f}" for w in b["walls"][key])
        print(f"{_label(key):<16} best {f['wall']:5.2f} s (runs: {walls}; prepare {f['prepare']:.2f} s)  "
              f"{f['e2e']:6.1f} points/s end to end, {f['pps']:6.1f} points/s  speed-up x{f['speedup']:.2f} "
              f"({f['speedup'] / f['n']:.0%} of {f['n']}{target})  overhead {f['overhead']:+.1%}, in the run "
              f"{f['in_run']:+.1%} (target < 10%){cpu}  other processes {f['others']:.2f} CPUs", flush=True)


def report_pair(base: list[dict[str, Any]], this: list[dict[str, Any]]) -> None:
    """The baseline's and this tree's figures side by side."""
    b, t = _best(base), _best(this)
    print(f"{'':<16} {'baseline':>10} {'this tree':>10}")
    print(f"{'replay alone':<16} {b['replay_s'] * 1e3:8.2f}ms {t['replay_s'] * 1e3:8.2f}ms  (run_point, per point; "
          f"CPU {b['replay_cpu_s'] * 1e3:.2f} / {t['replay_cpu_s'] * 1e3:.2f} ms)")
    rows = (("points/s", "pps", "{:10.1f}"), ("end to end", "e2e", "{:10.1f}"), ("speed-up", "speedup", "{:>10}"),
            ("overhead", "overhead", "{:>10}"), ("  in the run", "in_run", "{:>10}"),
            ("  CPU w/ prep", "cpu", "{:>10}"),
            ("others (CPUs)", "others", "{:10.2f}"))
    for key in t["runs"]:
        if key not in b["runs"]:
            continue
        fb, ft = _figures(b, key), _figures(t, key)
        print(f"{_label(key)}: best wall {fb['wall']:.2f} s / {ft['wall']:.2f} s")
        for name, k, fmt in rows:
            vals = []
            for f in (fb, ft):
                v = f[k]
                if v is None:
                    vals.append(f"{'-':>10}")
                elif k == "speedup":
                    vals.append(fmt.format(f"x{v:.2f}"))
                elif k in ("overhead", "in_run", "cpu"):
                    vals.append(fmt.format(f"{v:+.1%}"))
                else:
                    vals.append(fmt.format(v))
            target = {"speedup": f"  target >= x{0.8 * fb['n']:.1f}" if fb["n"] > 1 else "",
                      "overhead": "  target < 10%"}.get(k, "")
            print(f"  {name:<14} {vals[0]} {vals[1]}{target}")


#: what ``--breakdown`` times: (module, attribute, label); every name exists in earlier trees too
_STEPS = (("execute", "run_point", "points (run_point)"), ("execute", "chunk_record", "encode (chunk_record)"),
          ("SweepDir", "commit", "write (SweepDir.commit)"), ("SweepDir", "write_summary", "summary.parquet"),
          ("execute", "expand_grid", "grid (expand_grid)"), ("execute", "trace_fingerprint", "fingerprints"),
          ("SweepDir", "write_json", "sweep.json"), ("execute", "chunk_grid", "chunks (chunk_grid)"),
          ("SweepDir", "done", "done chunks (SweepDir.done)"), ("SweepDir", "remove_stale", "stale chunks"))


def breakdown(spec: SweepSpec, rounds: int) -> None:
    """Where a 1-worker sweep's time goes besides its points: each step's wall and CPU seconds
    (the run with the least overhead within it of ``rounds``), as a share of the points' own."""
    from replay.sweep import dataset, execute

    acc: dict[str, list[float]] = {}

    def wrap(owner: Any, name: str, label: str) -> None:
        f = getattr(owner, name)

        def timed_step(*a: Any, **k: Any) -> Any:
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                return f(*a, **k)
            finally:
                w = acc.setdefault(label, [0.0, 0.0])
                w[0] += time.perf_counter() - t0
                w[1] += time.process_time() - c0

        setattr(owner, name, timed_step)

    for owner, name, label in _STEPS:
        wrap(execute if owner == "execute" else dataset.SweepDir, name, label)
    best: tuple[float, dict[str, list[float]], Any] | None = None
    with tempfile.TemporaryDirectory(prefix="sweep-bench-steps-") as tmp:
        run_sweep(spec, Path(tmp) / "warm", jobs=1, progress=False)
        for i in range(rounds):
            acc.clear()
            res = run_sweep(spec, Path(tmp) / f"run-{i}", jobs=1, progress=False)
            pts = sum(res.point_seconds.values())
            over = (res.wall_s - res.prepare_s - pts) / pts
            if best is None or over < best[0]:
                best = (over, {k: list(v) for k, v in acc.items()}, res)
    assert best is not None
    over, steps, res = best
    pw, pc = steps.pop("points (run_point)")
    print(f"{TREE}: 1 worker, {res.ran} points, overhead within the run {over:+.1%} (best of {rounds}); "
          f"run_point {pw / res.ran * 1e3:.2f} ms wall, {pc / res.ran * 1e3:.2f} ms CPU per point")
    rest = res.wall_s - res.prepare_s - pw
    for label, (w, c) in sorted(steps.items(), key=lambda kv: -kv[1][0]):
        rest -= w
        print(f"  {label:<28} {w * 1e3:7.1f} ms wall ({w / pw:+6.1%})  {c * 1e3:7.1f} ms CPU ({c / pc:+6.1%})")
    print(f"  {'the rest (loop, results)':<28} {rest * 1e3:7.1f} ms wall ({rest / pw:+6.1%})")


def _child(args: argparse.Namespace, tree: Path, keep: Path) -> dict[str, Any]:
    """This script in a child process measuring ``tree`` once (every configuration one round)."""
    import json
    import subprocess

    cmd = [sys.executable, str(Path(__file__).resolve()), "--rounds", "1", "--workers", str(args.workers),
           "--child-json", "-", "--keep-reference", str(keep), *(["--no-ray"] if args.no_ray else []),
           *(["--points-per-file", str(args.points_per_file)] if args.points_per_file else []),
           *(str(Path(t).resolve()) for t in args.traces)]
    # the Ray workers (of the child's private Ray) import that tree's code too: their sys.path starts
    # with the driver's working folder, then PYTHONPATH
    path = os.pathsep.join([str(tree), *filter(None, [os.environ.get("PYTHONPATH")])])
    p = subprocess.run(cmd, env={**os.environ, "SWEEP_BENCH_TREE": str(tree), "PYTHONPATH": path}, cwd=tree,
                       stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(p.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("traces", nargs="*", help="two capture folders (default: ../shared/traces/" +
                    " and ".join(TRACES) + ")")
    ap.add_argument("--workers", "-N", type=int, default=2, help="largest worker count (default 2)")
    ap.add_argument("--rounds", "-r", type=int, default=5, help="timed runs of each configuration (default 5)")
    ap.add_argument("--no-ray", action="store_true", help="local pool only")
    ap.add_argument("--points-per-file", type=int, default=None, help="chunk size (default: the spec's default)")
    ap.add_argument("--baseline", type=Path, default=None,
                    help="a checkout of another revision, measured side by side with this tree")
    ap.add_argument("--breakdown", action="store_true",
                    help="only time each step of a 1-worker sweep in this process (SWEEP_BENCH_TREE=DIR: another tree)")
    ap.add_argument("--child-json", help=argparse.SUPPRESS)  # (a child of --baseline: figures as JSON on stdout)
    ap.add_argument("--keep-reference", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    traces = args.traces or [str(ROOT.parent / "shared" / "traces" / t) for t in TRACES]
    spec = spec_from_cli(traces, policies=[POLICIES], costs=[COSTS], axes=list(AXES))
    if args.points_per_file:
        spec = dataclasses.replace(spec, points_per_file=args.points_per_file)
    if args.breakdown:
        breakdown(spec, args.rounds)
        return
    use_ray = not args.no_ray
    if use_ray:
        try:
            import ray  # noqa: F401
        except ImportError:
            print("Ray is not installed (pip install 'pagereplay[ray]'): Ray runs skipped", file=sys.stderr)
            use_ray = False
    if args.child_json:
        import json

        print(json.dumps(measure(spec, args.workers, args.rounds, use_ray, args.keep_reference)))
        return
    points = expand_grid(spec)
    print(f"grid: {len(points)} points = {len(spec.traces)} traces x {len(spec.policies)} policies x "
          f"{len(spec.costs)} cost presets x {' x '.join(str(len(v)) for _, v in spec.axes)} "
          f"({', '.join(AXES)}); {spec.points_per_file} points per file; {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f}; best of {args.rounds} runs", flush=True)
    if args.baseline is None:
        raw = measure(spec, args.workers, args.rounds, use_ray, None)
        report_one([raw])
        b = _best([raw])
    else:
        base, this = [], []
        with tempfile.TemporaryDirectory(prefix="sweep-bench-pair-") as tmp:
            for i in range(args.rounds):  # alternating trees (the machine's load drifts)
                base.append(_child(args, args.baseline.resolve(), Path(tmp) / "baseline"))
                this.append(_child(args, ROOT, Path(tmp) / "this"))
                print(f"(round {i + 1} of {args.rounds} done, load {os.getloadavg()[0]:.1f})", flush=True)
            same = _tree(Path(tmp) / "baseline") == _tree(Path(tmp) / "this")
        print(f"baseline {args.baseline} and this tree {ROOT}: sweep folders "
              f"{'byte-identical' if same else 'DIFFER'}; best of {args.rounds} rounds (one child process per tree "
              f"and round, alternating)")
        report_pair(base, this)
        assert same, "the two trees wrote different sweep folders"
        b = _best(this)
    one = _figures(b, "local-1")
    print(f"per-point overhead at 1 worker: {one['overhead']:+.1%} of a point's replay "
          f"({one['overhead'] * b['replay_s'] * 1e3:.2f} ms of {b['replay_s'] * 1e3:.2f} ms); in the run "
          f"{one['in_run']:+.1%}; CPU (with the preparation) {one['cpu']:+.1%}; target < 10%")
    for kind in ("local", "ray"):
        if args.workers >= 2 and f"{kind}-2" in b["runs"]:
            sp = _figures(b, f"{kind}-2")["speedup"]
            print(f"speed-up at 2 {'local workers' if kind == 'local' else 'Ray CPUs'}: x{sp:.2f} ({sp / 2:.0%} of 2); "
                  f"target >= 0.8 x 2 = x1.6")


if __name__ == "__main__":
    main()
