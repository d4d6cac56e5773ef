"""Policies side by side: the per-policy summary rows of a results folder, with deltas against ``none``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: the summary columns compared (``docs/results.md``)
COMPARE_KEYS = ("forced_allocations", "firmware_calls", "firmware_ns", "accepted_bytes", "boot_accept_ns",
                "zone_lock_hold_ns", "zone_lock_hold_max_ns", "zone_lock_wait_ns", "zone_lock_wait_max_ns",
                "accept_lock_hold_ns", "accept_lock_wait_ns", "accept_lock_wait_max_ns", "irqs_off_max_ns",
                "irqs_off_over_1ms", "irqs_off_over_20s", "alloc_added_p50_ns", "alloc_added_p90_ns",
                "alloc_added_p99_ns", "alloc_added_p999_ns", "alloc_added_max_ns")


def read_summary(results: Path) -> list[dict[str, Any]]:
    """The rows of ``results/summary.parquet``, one per policy."""
    import pyarrow.parquet as pq

    p = Path(results) / "summary.parquet"
    if not p.is_file():
        raise FileNotFoundError(f"{results}: no summary.parquet (not a results folder)")
    rows = pq.read_table(p).to_pylist()
    if not rows or "policy" not in rows[0]:
        raise ValueError(f"{p}: no per-policy summary rows")
    return rows


def compare_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """``{"reference": "none", "policies": [...rows...], "deltas": {policy: {key: row - none}}}``."""
    ref = next((r for r in rows if r["policy"] == "none"), rows[0])
    deltas = {r["policy"]: {k: (r[k] - ref[k]) for k in COMPARE_KEYS if k in r and k in ref} for r in rows}
    return {"reference": ref["policy"], "policies": rows, "deltas": deltas}
