"""Memory and time of a replay of an anomaly-heavy trace against a well-formed one of the same size.

Builds (once, under ``--dir``) a well-formed event table of ``--events`` rows (``pagereplay synth
churn``, cut to exactly that many rows) and its anomaly-heavy twin: the same rows, but every
other event's pfn replaced by a random pfn of the guest (frees of pages never allocated, double
frees, allocations of pages already allocated) and one event in a hundred of those by an
impossible pfn (``0xffffffffffff``: past x86-64's 52-bit physical address space).  Then replays
both ``--all-policies`` as separate processes, alternating (the machine is shared and noisy), and
prints each run's wall time, CPU time (user + system) and peak RSS (``wait4``'s ``ru_maxrss``)
side by side with the 1-minute load before and after.

With ``--baseline EXE`` (another install's ``pagereplay``) or ``--baseline-rev REV`` (built from
that commit as ``benchmarks/replay_baseline.py`` does) the same runs are made with the baseline
too, this tree and the baseline alternating, and both are printed side by side.

Target (issue 20): the anomaly-heavy replay under 2 GB peak RSS and under 5x the well-formed time.

    .venv/bin/python benchmarks/anomaly_heavy.py [--events 5000000] [--rounds 2] [--baseline-rev REV]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = [str(ROOT / ".venv" / "bin" / "pagereplay")] if (ROOT / ".venv" / "bin" / "pagereplay").exists() else \
    [sys.executable, "-m", "replay.cli"]
IMPOSSIBLE_PFN = 0xFFFF_FFFF_FFFF
GUEST = "4G"


def build(d: Path, events: int, seed: int = 1) -> tuple[Path, Path]:
    """(well-formed, anomaly-heavy) Parquet tables of exactly ``events`` rows each, under ``d``."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    wf, ah = d / f"wellformed-{events}.parquet", d / f"anomalous-{events}.parquet"
    if wf.exists() and ah.exists():
        return wf, ah
    raw = d / "synth.parquet"
    # churn emits ~2.1 events per primary request
    subprocess.run([*CLI, "synth", "churn", "--events", str(events // 2 + 1000), "--memory", GUEST, "--cpus", "4",
                    "--seed", str(seed), "-o", str(raw)], check=True, stdout=subprocess.DEVNULL)
    t = pq.read_table(raw)
    if t.num_rows < events:
        raise SystemExit(f"synth gave {t.num_rows} rows, fewer than {events}")
    t = t.slice(0, events)
    pq.write_table(t, wf, compression="zstd")
    pfn = t.column("pfn").to_numpy(zero_copy_only=False).copy()
    rng = np.random.default_rng(seed)
    odd = np.arange(1, events, 2)
    pfn[odd] = rng.integers(1, (4 << 30) // 4096, len(odd))
    pfn[odd[rng.random(len(odd)) < 0.01]] = IMPOSSIBLE_PFN
    t2 = t.set_column(t.column_names.index("pfn"), t.schema.field("pfn"), pa.array(pfn, pa.int64()))
    pq.write_table(t2, ah, compression="zstd")
    raw.unlink()
    return wf, ah


def run_once(table: Path, out: Path, workers: int = 2, cli: list[str] | None = None) -> tuple[float, float, float, str]:
    """(seconds, CPU seconds, peak RSS in GiB, summary line) of one ``pagereplay replay --all-policies``."""
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen([*(cli or CLI), "replay", str(table), "-o", str(out), "--all-policies", "--guest-size",
                             GUEST, "--workers", str(workers)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, ru = os.wait4(proc.pid, 0)
    dt = time.perf_counter() - t0
    stdout, stderr = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"replay of {table} failed ({proc.returncode}): {stderr.strip()[-500:]}")
    first = next((ln for ln in stdout.splitlines() if ln.startswith("exact replay")), "")
    return dt, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / (1 << 20), first  # ru_maxrss: KiB on Linux


def _table(rows: dict[tuple[str, int, str], list[tuple[float, float, float]]], tools: list[str],
           workers: list[int]) -> bool:
    """Print best time, best CPU time and highest peak RSS per tool and ``--workers``, well-formed
    and anomaly-heavy side by side with the ratios; return whether this tree's meet the target."""
    print(f"{'':34s}{'well-formed':>14s}{'anomaly-heavy':>16s}{'ratio':>8s}   target")
    met = True
    for w in workers:
        for tool in tools:
            (tw, cw, rw), (ta, ca, ra) = ((min(x[0] for x in rows[(tool, w, k)]), min(x[1] for x in rows[(tool, w, k)]),
                                           max(x[2] for x in rows[(tool, w, k)]))
                                          for k in ("well-formed", "anomaly-heavy"))
            label = f"{tool} --workers {w}"
            print(f"{label + ' time (best)':34s}{tw:12.2f} s{ta:14.2f} s{ta / tw:7.2f}x   < 5x")
            print(f"{label + ' CPU time (best)':34s}{cw:12.2f} s{ca:14.2f} s{ca / cw:7.2f}x")
            print(f"{label + ' peak RSS':34s}{rw:10.2f} GiB{ra:12.2f} GiB{ra / rw:7.2f}x   < 2 GiB")
            if tool == "this":
                met = met and ta < 5 * tw and ra < 2.0
    return met


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=5_000_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workers", default="2,1", help="--workers values to measure (2: the policies as threads "
                    "behind the baseline, the default; 1: one after the other)")
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "pagereplay-anomaly-bench")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--baseline", type=Path, help="another install's pagereplay executable, run alternately")
    g.add_argument("--baseline-rev", help="a commit of this repository to build the baseline from")
    a = ap.parse_args()
    a.dir.mkdir(parents=True, exist_ok=True)
    wf, ah = build(a.dir, a.events)
    workers = [int(w) for w in a.workers.split(",")]
    clis = {"this": CLI}
    if a.baseline or a.baseline_rev:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from replay_baseline import build_baseline

        clis["base"] = [str(a.baseline or build_baseline(a.baseline_rev))]
    print(f"load before: {os.getloadavg()[0]:.2f}")
    for tool, cli in clis.items():  # numba's cache filled once per tool, outside the figures
        run_once(wf, a.dir / "warm", cli=cli)
    rows: dict[tuple[str, int, str], list[tuple[float, float, float]]] = {}
    tools = list(clis)
    for r in range(a.rounds):
        for w in workers:
            for name, table in (("well-formed", wf), ("anomaly-heavy", ah)):
                for tool in (tools if r % 2 == 0 else tools[::-1]):  # alternating: neighbours compare
                    dt, cpu, rss, line = run_once(table, a.dir / f"out-{name}", w, clis[tool])
                    rows.setdefault((tool, w, name), []).append((dt, cpu, rss))
                    print(f"round {r + 1} {tool} --workers {w} {name:13s} {dt:7.2f} s  cpu {cpu:7.2f} s  "
                          f"{rss:5.2f} GiB  | {line}", flush=True)
    print(f"load after: {os.getloadavg()[0]:.2f}")
    print("target met" if _table(rows, tools, workers) else "target NOT met")


if __name__ == "__main__":
    main()
