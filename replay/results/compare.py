"""Results side by side: the policies of one folder with deltas against ``none``
(:func:`compare_rows`), or two folders (two kernels, traces, cost presets) policy by policy with
the deltas B - A (:func:`compare_folders`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: the summary columns compared (``docs/results.md``)
COMPARE_KEYS = ("forced_allocations", "firmware_calls", "firmware_ns", "accepted_bytes", "boot_accept_ns",
                "zone_lock_hold_ns", "zone_lock_hold_max_ns", "zone_lock_wait_ns", "zone_lock_wait_max_ns",
                "accept_lock_hold_ns", "accept_lock_wait_ns", "accept_lock_wait_max_ns", "irqs_off_max_ns",
                "irqs_off_over_1ms", "irqs_off_over_20s", "alloc_added_p50_ns", "alloc_added_p90_ns",
                "alloc_added_p99_ns", "alloc_added_p999_ns", "alloc_added_max_ns")
#: what identifies a results folder's run (``pagereplay.*`` metadata keys of summary.parquet)
IDENTITY_KEYS = ("input_name", "input_sha256", "kernel_version", "kernel_profile", "mode", "cost_preset",
                 "tool_version")


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


def read_identity(results: Path) -> dict[str, str]:
    """:data:`IDENTITY_KEYS` of ``results/summary.parquet``'s metadata ("" when not recorded); the
    input names are file names (a results folder may come from another machine)."""
    import pyarrow.parquet as pq

    raw = pq.read_metadata(Path(results) / "summary.parquet").metadata or {}
    md = {k.decode("utf-8", "replace").removeprefix("pagereplay."): v.decode("utf-8", "replace")
          for k, v in raw.items()}
    out = {k: md.get(k, "") for k in IDENTITY_KEYS}
    out["input_name"] = ",".join(Path(n).name for n in out["input_name"].split(",") if n)
    return out


def _delta(a: Any, b: Any) -> Any:
    if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
        return None
    return b - a


def compare_folders(a: Path, b: Path) -> dict[str, Any]:
    """Two results folders policy by policy: ``{"a": {...}, "b": {...}, "differs": [identity keys
    that differ], "policies": [in both, A's order], "only_a": [...], "only_b": [...],
    "rows": {policy: {key: {"a", "b", "delta"}}}}`` with ``delta = b - a`` (None when not numeric).
    """
    ra, rb = read_summary(a), read_summary(b)
    ia, ib = read_identity(a), read_identity(b)
    by_b = {r["policy"]: r for r in rb}
    names_a = [r["policy"] for r in ra]
    common = [p for p in names_a if p in by_b]
    rows: dict[str, dict[str, dict[str, Any]]] = {}
    for r in ra:
        if r["policy"] not in by_b:
            continue
        other = by_b[r["policy"]]
        rows[r["policy"]] = {k: {"a": r.get(k), "b": other.get(k), "delta": _delta(r.get(k), other.get(k))}
                             for k in COMPARE_KEYS if k in r or k in other}
    return {"a": {"folder": Path(a).name, **ia}, "b": {"folder": Path(b).name, **ib},
            "differs": [k for k in IDENTITY_KEYS if ia[k] != ib[k]], "policies": common,
            "only_a": [p for p in names_a if p not in by_b], "only_b": [p for p in by_b if p not in names_a],
            "rows": rows}


def to_json(cmp: dict[str, Any]) -> str:
    """The comparison as JSON text (what ``compare --json`` prints)."""
    return json.dumps(cmp, indent=2, default=str)
