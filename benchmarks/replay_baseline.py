"""``pagereplay replay --all-policies`` end to end, this tree against a baseline install, in one run.

    .venv/bin/python benchmarks/replay_baseline.py --baseline /path/to/old/venv/bin/pagereplay
    .venv/bin/python benchmarks/replay_baseline.py --baseline-rev ed1ab54   # builds that one first

The baseline is another install's ``pagereplay`` (``--baseline``), or one built from a commit of
this repository (``--baseline-rev``: ``git archive`` of the commit into ``~/.cache/pagereplay/
bench/REV``, a venv there that sees this venv's dependencies, an editable ``pip install --no-deps``).
Each trace is replayed from its text file with its ``proc_before``/``proc_after`` snapshots under
every preset policy (``tdx-4k`` costs), once per tool untimed (numba's cache), then ``--runs``
times each, the two tools alternating (the machine is shared: only neighbouring runs compare).
Printed per trace: median and best wall time of each, the ratio, and the target (issue 15: within
1.3x of the baseline); the 1-minute load before and after.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = 1.3
DEFAULT_TRACES = ("debian12-6.1-large", "debian12-6.12-medium", "debian12-6.1-medium")


def build_baseline(rev: str) -> Path:
    """The ``pagereplay`` executable of commit ``rev``, built once into the user's cache."""
    home = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pagereplay" / "bench" / rev
    exe = home / "venv" / "bin" / "pagereplay"
    if exe.exists():
        return exe
    src = home / "src"
    shutil.rmtree(home, ignore_errors=True)
    src.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    subprocess.run([sys.executable, "-m", "venv", str(home / "venv")], check=True)
    # the baseline's dependencies are this venv's (a plain path in a .pth: its own .pth files,
    # such as this tree's editable install, are not processed)
    site = Path(subprocess.run([str(home / "venv" / "bin" / "python"), "-c",
                                "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "_bench_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # editable: the package lists of older commits omit sub-packages (a wheel of them is broken)
    subprocess.run([str(home / "venv" / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps",
                    "-e", str(src)], check=True)
    return exe


def load() -> float:
    return os.getloadavg()[0]


def run_once(exe: Path, folder: Path, out: Path) -> float:
    cmd = [str(exe), "replay", str(folder / "trace.txt.zst"), "--snapshot", str(folder / "proc_before"),
           "--end-snapshot", str(folder / "proc_after"), "--all-policies", "--costs", "tdx-4k", "-o", str(out)]
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"{exe}: replay of {folder.name} failed: {(r.stderr or r.stdout).strip().splitlines()[-1:]}")
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--baseline", type=Path, help="the baseline install's pagereplay executable")
    g.add_argument("--baseline-rev", help="a commit of this repository to build the baseline from")
    ap.add_argument("--traces", type=Path, default=ROOT.parent / "shared" / "traces")
    ap.add_argument("--trace", action="append", help=f"trace folder name (repeatable; default {DEFAULT_TRACES})")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    base = args.baseline or build_baseline(args.baseline_rev)
    this = Path(sys.executable).parent / "pagereplay"
    names = args.trace or list(DEFAULT_TRACES)
    print(f"this tree: {this}\nbaseline:  {base}\nload before: {load():.2f}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="pagereplay-bench-") as tmp:
        for name in names:
            folder = args.traces / name
            if not (folder / "trace.txt.zst").exists():
                raise SystemExit(f"{folder}: no trace.txt.zst")
            for exe in (this, base):  # numba's cache of each tree, untimed
                run_once(exe, folder, Path(tmp) / "warm")
            times: dict[str, list[float]] = {"this": [], "base": []}
            for i in range(args.runs):
                order = (("this", this), ("base", base)) if i % 2 == 0 else (("base", base), ("this", this))
                for key, exe in order:
                    times[key].append(run_once(exe, folder, Path(tmp) / key))
            rows.append((name, times))
    print(f"load after: {load():.2f}\n")
    print(f"{'trace':<24} {'this median':>12} {'base median':>12} {'this best':>10} {'base best':>10} "
          f"{'ratio':>6}  target <= {TARGET}x")
    worst = 0.0
    for name, t in rows:
        m_this, m_base = statistics.median(t["this"]), statistics.median(t["base"])
        ratio = m_this / m_base
        worst = max(worst, ratio)
        print(f"{name:<24} {m_this:>11.2f}s {m_base:>11.2f}s {min(t['this']):>9.2f}s {min(t['base']):>9.2f}s "
              f"{ratio:>5.2f}x  {'ok' if ratio <= TARGET else 'MISSED'}")
    print(f"\nworst ratio {worst:.2f}x ({'within' if worst <= TARGET else 'beyond'} the {TARGET}x target)")


if __name__ == "__main__":
    main()
