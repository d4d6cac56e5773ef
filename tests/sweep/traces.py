"""Tiny synthetic traces for the sweep tests (canonical tables written as Parquet)."""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow.parquet as pq

from tests.helpers.events import make_events

#: the first pfn above 4 GiB: memory the firmware leaves unaccepted
HIGH_PFN = 1 << 20


def churn_rows(seed: int, n_blocks: int = 48, cpus: int = 2, base_pfn: int = HIGH_PFN) -> list[dict]:
    """Allocations of distinct blocks above 4 GiB on ``cpus`` CPUs, then their frees (exact-mode
    consistent: every block is free before its allocation, allocated before its free)."""
    rng = random.Random(seed)
    rows: list[dict] = []
    t = 1_000
    blocks = []
    pfn = base_pfn
    for _ in range(n_blocks):
        order = rng.choice([0, 0, 0, 1, 2, 3])
        pfn = (pfn + (1 << order) - 1) // (1 << order) * (1 << order)
        blocks.append((pfn, order))
        pfn += (1 << order) + rng.choice([0, 0, 1024, 4096])  # some blocks in later 4 MiB blocks
    for pfn, order in blocks:
        t += rng.randint(500, 5_000)
        rows.append({"ts_ns": t, "cpu": rng.randrange(cpus), "event": "mm_page_alloc", "pfn": pfn, "order": order,
                     "migratetype": 1, "gfp_flags": "GFP_KERNEL", "pid": 100 + rng.randrange(3), "comm": "worker"})
    for pfn, order in blocks:
        t += rng.randint(500, 5_000)
        rows.append({"ts_ns": t, "cpu": rng.randrange(cpus), "event": "mm_page_free", "pfn": pfn, "order": order,
                     "pid": 100, "comm": "worker"})
    return rows


def write_trace(path: Path, seed: int = 1, **kw: object) -> Path:
    """A tiny trace as the canonical Parquet table."""
    pq.write_table(make_events(churn_rows(seed, **kw)), path)  # type: ignore[arg-type]
    return path


def tree(root: Path, skip: tuple[str, ...] = ("timings.json",)) -> dict[str, bytes]:
    """Every file under ``root`` by relative path (wall-clock files left out)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in skip}
