"""Cut the demo's sample from a real trace, by criteria that can be re-checked later.

``pagereplay demo`` replays the bundled sample under every policy preset; the sample is meant to
show what the tool is for, so it must make the policies differ where the tool measures them
(:data:`CRITERIA`, each checked on the demo's own replay, ``replay.pipeline.demo.demo_replay``):

- ``v1_zone_lock_waits``: under ``v1-buddy-global-lock`` other CPUs wait for zone->lock while a
  CPU holds it across its firmware calls (``zone_lock_wait_ns > 0``);
- ``accepting_list_waits``: some policy's CPUs wait on ``accepting_list`` (collisions on a range
  another CPU is accepting: a ``lock_sections`` row with ``lock = accepting_list``, ``wait_ns > 0``);
- ``eager_boot_cost``: ``firmware-eager`` and ``kernel-eager`` pay for the whole guest at boot
  (``boot_accept_ns > 0``);
- ``added_latency``: some policy adds latency to an allocation (``alloc_added_max_ns > 0``).

The sample is the first N lines of the source trace (the head, so that the source's
``proc_before`` snapshot is the state the slice starts from; ``proc_after`` is not copied, it
describes the end of the whole trace), for the smallest N of ``--lines`` that meets every criterion;
``uname.txt`` comes along so that the demo records the kernel version.

    python sample_traces/cut_demo_sample.py                   # cut from ../shared/traces, write here
    python sample_traces/cut_demo_sample.py --check           # re-check the bundled sample
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parent.parent / "shared" / "traces" / "debian12-6.1-medium"
#: the bundled demo sample (``replay.report.html.default_demo_trace`` looks here first)
SAMPLE = HERE / "debian12-6.1-medium-head"
LINES = (100_000, 150_000, 200_000, 250_000, 300_000, 400_000)
MAX_BYTES = 3 << 20  # "a few MB at most" (compressed)


def _summary(results: Path) -> dict[str, dict[str, Any]]:
    import polars as pl

    rows = pl.read_parquet(results / "summary.parquet").with_columns(pl.col("policy").cast(pl.String)).to_dicts()
    return {r["policy"]: r for r in rows}


def _accepting_list_waits(results: Path) -> int:
    import polars as pl

    ls = pl.read_parquet(results / "lock_sections.parquet", columns=["lock", "wait_ns"])
    return int(ls.filter((pl.col("lock").cast(pl.String) == "accepting_list") & (pl.col("wait_ns") > 0)).height)


CRITERIA: dict[str, Callable[[dict[str, dict[str, Any]], Path], bool]] = {
    "v1_zone_lock_waits": lambda s, _r: s["v1-buddy-global-lock"]["zone_lock_wait_ns"] > 0,
    "accepting_list_waits": lambda _s, r: _accepting_list_waits(r) > 0,
    "eager_boot_cost": lambda s, _r: min(s["firmware-eager"]["boot_accept_ns"], s["kernel-eager"]["boot_accept_ns"]) > 0,
    "added_latency": lambda s, _r: max(row["alloc_added_max_ns"] for row in s.values()) > 0,
}


def check(trace: Path, work: Path) -> dict[str, Any]:
    """Replay ``trace`` as the demo does and evaluate every criterion: ``{"ok", "criteria", "figures"}``."""
    from replay.pipeline.demo import demo_replay

    results = work / "results"
    demo_replay(trace, results)
    s = _summary(results)
    got = {name: bool(fn(s, results)) for name, fn in CRITERIA.items()}
    figures = {"v1_zone_lock_wait_ns": s["v1-buddy-global-lock"]["zone_lock_wait_ns"],
               "accepting_list_waits": _accepting_list_waits(results),
               "eager_boot_accept_ns": s["firmware-eager"]["boot_accept_ns"],
               "alloc_added_max_ns": max(r["alloc_added_max_ns"] for r in s.values()),
               "events": s["none"]["events_replayed"]}
    return {"ok": all(got.values()), "criteria": got, "figures": figures}


def _write_head(source: Path, n: int, out: Path) -> None:
    """The first ``n`` lines of a zstd text trace, zstd-compressed (level 19: the bundle is small)."""
    import zstandard as zstd

    out.parent.mkdir(parents=True, exist_ok=True)
    with source.open("rb") as raw, zstd.ZstdDecompressor().stream_reader(raw) as r:
        text = io.TextIOWrapper(r, encoding="utf-8", newline="")
        lines = [line for _, line in zip(range(n), text, strict=False)]
    out.write_bytes(zstd.ZstdCompressor(level=19).compress("".join(lines).encode()))


def _copy_plain(src: Path, dst: Path) -> None:
    """Copy a snapshot folder without its modes (the shared traces are read-only)."""
    dst.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.iterdir()):
        shutil.copyfile(f, dst / f.name)


def cut(source: Path, lines: tuple[int, ...], dest: Path) -> dict[str, Any]:
    """Write the smallest head of ``source`` that meets every criterion to ``dest`` (with proc_before)."""
    for n in lines:
        with tempfile.TemporaryDirectory(prefix="pagereplay-cut-") as tmp:
            cand = Path(tmp) / "sample" / "trace.txt.zst"
            _write_head(source / "trace.txt.zst", n, cand)
            _copy_plain(source / "proc_before", cand.parent / "proc_before")
            if (source / "uname.txt").is_file():  # the demo records the kernel version from it
                shutil.copyfile(source / "uname.txt", cand.parent / "uname.txt")
            res = check(cand, Path(tmp))
            res.update(lines=n, bytes=cand.stat().st_size)
            print(json.dumps(res), file=sys.stderr)
            if res["ok"] and res["bytes"] <= MAX_BYTES:
                if dest.exists():
                    shutil.rmtree(dest)
                shutil.copytree(cand.parent, dest, copy_function=shutil.copyfile)
                return res
    raise SystemExit(f"no head of {source} in {lines} meets every criterion within {MAX_BYTES:,} bytes")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", type=Path, default=SOURCE, help="real trace folder (trace.txt.zst, proc_before/)")
    ap.add_argument("--lines", type=int, nargs="+", default=list(LINES), help="candidate head lengths, smallest first")
    ap.add_argument("--check", action="store_true", help="only re-check the bundled sample")
    a = ap.parse_args(argv)
    if a.check:
        with tempfile.TemporaryDirectory(prefix="pagereplay-check-") as tmp:
            res = check(SAMPLE / "trace.txt.zst", Path(tmp))
        print(json.dumps(res, indent=1))
        return 0 if res["ok"] else 1
    print(json.dumps(cut(a.source, tuple(sorted(a.lines)), SAMPLE), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
