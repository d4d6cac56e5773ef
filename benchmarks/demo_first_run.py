"""First run of ``pagereplay demo`` on a fresh machine, as a new user meets it (issue 21: < 20 s).

Builds a fresh venv, ``pip install``s this checkout into it (a wheel, which carries the replay
kernels compiled at build time: replay/jit.py, "Compiled ahead of time"), and times two
``pagereplay demo`` runs in a fresh working folder with an empty user cache
(``PAGEREPLAY_CACHE_DIR``): the first (the cache seeded from the wheel) and a second one.  Beside
them, in the same run:

- the cold baseline: the same install built with ``PAGEREPLAY_BUILD_NO_JITCACHE=1`` (a wheel
  without the kernels, as before), first demo with an empty cache: numba compiles everything;
- today's warm run: the checkout's own ``pagereplay demo`` (``.venv``, its warm cache), which the
  second run must match ("later runs stay as fast as today").

Warm runs alternate (fresh venv, checkout) ``--repeat`` times; the median is printed.  Every
demo's stderr must be empty (no library warning reaches the terminal).  ``uptime`` is printed
before and after: the machine is shared.

    python benchmarks/demo_first_run.py [--work DIR] [--repeat 3] [--no-cold-baseline]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 20.0


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "(uptime unavailable)"


def _install(venv: Path, *, bundle: bool) -> float:
    """A fresh venv with this checkout installed from a wheel; returns the install's wall time."""
    if venv.exists():
        shutil.rmtree(venv)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if not bundle:
        env["PAGEREPLAY_BUILD_NO_JITCACHE"] = "1"
    t = time.perf_counter()
    # --no-cache-dir: pip would otherwise reuse a wheel of this version built earlier
    p = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--no-cache-dir", str(ROOT)], env=env,
                       capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise SystemExit(f"pip install {ROOT} into {venv} failed:\n{p.stderr[-3000:]}")
    return time.perf_counter() - t


def _demo(exe: Path, work: Path, cache: Path, name: str) -> float:
    """One ``pagereplay demo`` in ``work`` with the user cache at ``cache``; its wall time."""
    out = work / name
    if out.exists():
        shutil.rmtree(out)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NUMBA_CACHE_DIR", "PAGEREPLAY_NO_AOT")}
    env["PAGEREPLAY_CACHE_DIR"] = str(cache)
    t = time.perf_counter()
    p = subprocess.run([str(exe), "demo", "-o", str(out)], cwd=work, env=env, capture_output=True, text=True,
                       check=False)
    dt = time.perf_counter() - t
    if p.returncode != 0 or p.stderr.strip():
        raise SystemExit(f"{exe} demo: exit {p.returncode}, stderr:\n{p.stderr[-3000:]}")
    if not (out / "report" / "index.html").is_file():
        raise SystemExit(f"{exe} demo wrote no report under {out}")
    return dt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--repeat", type=int, default=3, help="warm runs of each side, alternating")
    ap.add_argument("--no-cold-baseline", action="store_true", help="skip the install without compiled kernels")
    a = ap.parse_args(argv)
    work = a.work or Path(tempfile.mkdtemp(prefix="pagereplay-first-run-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"load before: {_uptime()}")
    fresh = work / "fresh"
    inst = _install(fresh, bundle=True)
    print(f"pip install (wheel with compiled kernels): {inst:.1f} s")
    cache = work / "cache-fresh"
    shutil.rmtree(cache, ignore_errors=True)
    first = _demo(fresh / "bin" / "pagereplay", work, cache, "demo-first")
    cold = cold_inst = None
    if not a.no_cold_baseline:
        base = work / "cold"
        cold_inst = _install(base, bundle=False)
        cold_cache = work / "cache-cold"
        shutil.rmtree(cold_cache, ignore_errors=True)
        cold = _demo(base / "bin" / "pagereplay", work, cold_cache, "demo-cold")
        shutil.rmtree(base, ignore_errors=True)
    today_exe = ROOT / ".venv" / "bin" / "pagereplay"
    today_cache = Path(os.environ.get("PAGEREPLAY_CACHE_DIR") or
                       Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pagereplay")
    _demo(today_exe, work, today_cache, "demo-today")  # the checkout's cache may be stale: fill it first
    second, today = [], []
    for i in range(a.repeat):
        second.append(_demo(fresh / "bin" / "pagereplay", work, cache, f"demo-second-{i}"))
        today.append(_demo(today_exe, work, today_cache, f"demo-today-{i}"))
    print(f"load after:  {_uptime()}")
    print()
    print(f"{'pagereplay demo (with PNG/SVG images)':<52}{'seconds':>9}  target / baseline")
    print(f"{'first run, fresh venv + empty cache (kernels in wheel)':<52}{first:>9.1f}  < {TARGET_S:.0f} s: "
          f"{'met' if first < TARGET_S else 'MISSED'}")
    if cold is not None:
        print(f"{'first run, wheel without kernels (as before)':<52}{cold:>9.1f}  baseline "
              f"(x{cold / first:.1f} the new first run)")
    print(f"{'second run, fresh venv (median of ' + str(a.repeat) + ')':<52}{statistics.median(second):>9.1f}  "
          f"today {statistics.median(today):.1f} s (checkout, warm cache): "
          f"x{statistics.median(second) / statistics.median(today):.2f}")
    print(f"{'  runs':<52}{'':>9}  fresh {' '.join(f'{s:.1f}' for s in second)}; "
          f"today {' '.join(f'{s:.1f}' for s in today)}")
    print(f"{'pip install, wheel with kernels':<52}{inst:>9.1f}" +
          (f"  without: {cold_inst:.1f} s" if cold_inst is not None else ""))
    if a.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
