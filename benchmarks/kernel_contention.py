"""The kernel's measured lock contention beside the model's baseline prediction, per trace.

    .venv/bin/python benchmarks/kernel_contention.py [TRACE_FOLDER ...]

A trace captured with ``lock:contention_begin`` / ``contention_end`` (``pagereplay record
--contention``; ``../shared/traces/debian13-6.18-*contention``) records every time a task started
and stopped waiting for a lock.  For each such folder this prints, side by side:

- measured: contended acquisitions by lock flags (``SPIN`` is a plain spinlock such as
  zone->lock; ``WRITE``/``READ`` rwsems, ``MUTEX``...), their total and p99 wait (begin to the
  same CPU's next end);
- modelled: the ``none`` replay's zone->lock sections, how many waited, total and p99 wait.

The issue's target: the model's baseline predicts at most max(2 x the kernel's contended
spinlock acquisitions, 0.5 % of its zone->lock sections) contended zone->lock sections.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TRACES = ROOT.parent / "shared" / "traces"


def measured(trace: Path) -> dict[str, dict[str, float]]:
    """Contended acquisitions per flags text: count, total and p99 wait (ns)."""
    from parsers.api import load_events
    from parsers.schema import LockEvent, lock_flags_text

    table, _ = load_events(trace)
    ev = table.column("event").combine_chunks().indices.to_numpy(zero_copy_only=False)
    sel = np.nonzero((ev == LockEvent.CONTENTION_BEGIN) | (ev == LockEvent.CONTENTION_END))[0]
    cpu = table.column("cpu").to_numpy()[sel]
    ts = table.column("ts_ns").to_numpy()[sel]
    flags = table.column("lock_flags").to_numpy(zero_copy_only=False)[sel]
    kind = ev[sel]
    out: dict[str, list[int]] = {}
    open_begin: dict[int, tuple[int, str]] = {}
    for c, t, f, k in zip(cpu.tolist(), ts.tolist(), flags.tolist(), kind.tolist()):
        if k == LockEvent.CONTENTION_BEGIN:
            open_begin[c] = (t, lock_flags_text(int(f or 0)) or "(none)")
        elif c in open_begin:
            t0, name = open_begin.pop(c)
            out.setdefault(name, []).append(t - t0)
    return {name: {"contended": len(w), "wait_ns": float(sum(w)), "p99_ns": float(np.percentile(w, 99))}
            for name, w in sorted(out.items())}


def modelled(folder: Path, trace: Path) -> dict[str, float]:
    """The none replay's zone->lock sections: how many, how many waited, total and p99 wait."""
    import polars as pl
    from typer.testing import CliRunner

    from replay.cli import app

    with tempfile.TemporaryDirectory() as tmp:
        args = ["replay", str(trace), "--json", "-o", f"{tmp}/r"]
        if (folder / "proc_before").is_dir():
            args += ["--snapshot", str(folder / "proc_before")]
        r = CliRunner().invoke(app, args)
        if r.exit_code != 0:
            raise SystemExit(r.output)
        ls = pl.read_parquet(f"{tmp}/r/lock_sections.parquet").filter(
            pl.col("lock").cast(pl.Utf8).str.starts_with("zone"))
        json.loads(r.stdout)
    w = ls["wait_ns"].to_numpy()
    return {"sections": int(len(w)), "contended": int((w > 0).sum()), "wait_ns": float(w.sum()),
            "p99_ns": float(np.percentile(w, 99)) if len(w) else 0.0}


def main(argv: list[str]) -> int:
    folders = [Path(a) for a in argv] or sorted(d for d in TRACES.glob("*contention*") if d.is_dir())
    for d in folders:
        trace = d / "trace.txt.zst"
        meas = measured(trace)
        model = modelled(d, trace)
        spin = meas.get("SPIN", {"contended": 0})["contended"]
        bound = max(2 * spin, 0.005 * model["sections"])
        print(f"{d.name}")
        print(f"  {'':28s} {'contended':>10s} {'total wait':>14s} {'p99 wait':>12s}")
        for name, m in meas.items():
            print(f"  kernel, flags={name:14s} {m['contended']:10,d} {m['wait_ns'] / 1e6:11.3f} ms {m['p99_ns'] / 1e3:9.1f} us")
        print(f"  model none, zone->lock       {model['contended']:10,d} {model['wait_ns'] / 1e6:11.3f} ms "
              f"{model['p99_ns'] / 1e3:9.1f} us   (of {model['sections']:,} sections)")
        ok = model["contended"] <= bound
        print(f"  target: model contended <= max(2 x {spin} SPIN, 0.5% of sections) = {bound:.1f}: "
              f"{'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
