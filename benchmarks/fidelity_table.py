"""The replay-fidelity table: exact replay of every capture folder, measured through the CLI.

For each folder of ``../shared/traces`` (or the folders given) this runs
``pagereplay replay DIR --json -o TMP`` (the folder supplies trace, snapshots and kernel profile)
and prints one row per trace: kernel profile, events, unexplained anomaly rate, anomaly kinds,
invariants, placement agreement (``rmqueue_smallest``, pcp head, drain tail) overall and on the
second half of the events.  ``--json FILE`` keeps the figures; ``--baseline FILE`` (an earlier
``--json``) prints each figure beside its baseline, so a model change shows its before/after in
one run.  docs/replay-fidelity.md and the README's fidelity table are regenerated from it.

    .venv/bin/python benchmarks/fidelity_table.py --json /tmp/fid.json [--baseline /tmp/old.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TRACES = ROOT.parent / "shared" / "traces"
RATES = ("rmqueue_smallest_agreement", "pcp_alloc_took_list_head", "drain_took_list_tail")
SHORT = {"rmqueue_smallest_agreement": "rmq", "pcp_alloc_took_list_head": "head", "drain_took_list_tail": "tail"}


def measure(folder: Path) -> dict[str, Any]:
    """The figures of one folder's exact replay (``pagereplay replay FOLDER --json``)."""
    exe = ROOT / ".venv" / "bin" / "pagereplay"
    with tempfile.TemporaryDirectory(prefix="fidelity_") as tmp:
        t0 = time.perf_counter()
        p = subprocess.run([str(exe), "replay", str(folder), "--json", "-o", tmp], check=False, capture_output=True, text=True)
        wall = time.perf_counter() - t0
    if p.returncode != 0:
        return {"trace": folder.name, "error": (p.stderr.strip().splitlines() or ["?"])[-1], "wall_s": wall}
    s = json.loads(p.stdout)
    fid = s.get("fidelity", {})
    return {
        "trace": folder.name,
        "kernel_profile": s.get("kernel_profile"),
        "events": s["events_replayed"],
        "unexplained": s["unexplained_anomalies"],
        "unexplained_rate": s["unexplained_anomaly_rate"],
        "anomaly_rate": s["anomaly_rate"],
        "anomalies": s["anomalies"],
        "invariants_ok": s["invariants_ok"],
        "fidelity": {k: fid.get(k) for k in RATES},
        "second_half": {k: (fid.get("second_half") or {}).get(k) for k in RATES},
        "disagreement": fid.get("disagreement"),
        "second_half_disagreement": (fid.get("second_half") or {}).get("disagreement"),
        "wall_s": round(wall, 1),
    }


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.3f}%"


def _r(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _cell(row: dict[str, Any], base: dict[str, Any] | None, get: Any, fmt: Any) -> str:
    now = fmt(get(row))
    if base is None or "error" in base:
        return now
    was = fmt(get(base))
    return now if was == now else f"{was} -> {now}"


CHECKS = ("rmqueue_smallest", "pcp_alloc_head", "drain_tail")


def _cause_cells(d: dict[str, Any] | None) -> list[str]:
    """Agreement where the blocks were placed by traced events (rmq / head / tail), and the
    disagreements by cause summed over the three checks."""
    if not d:
        return ["-", "-"]
    traced = "/".join(_r(d[c]["agreement_where_traced"]) for c in CHECKS)
    causes = [sum(d[c][k] for c in CHECKS) for k in ("pre_trace_order_unknown", "untraced_path_inferred", "model")]
    return [traced, " / ".join(f"{n:,}" for n in causes)]


def table(rows: list[dict[str, Any]], baseline: dict[str, dict[str, Any]]) -> str:
    """The rows as a Markdown table (``was -> now`` where a baseline differs)."""
    head = ("| trace | profile | events | unexplained | inv | rmq | head | tail | rmq 2nd | head 2nd | tail 2nd |"
            " 2nd where traced | 2nd disagreements: pre-trace / inferred / model | unexplained kinds |")
    out = [head, "|" + "---|" * 14]
    from replay.model.anomalies import KIND_BY_NAME

    for r in rows:
        if "error" in r:
            out.append(f"| {r['trace']} | error: {r['error']} |" + " |" * 10)
            continue
        b = baseline.get(r["trace"])
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(r["anomalies"].items(), key=lambda kv: -kv[1])
                          if not KIND_BY_NAME[k].explained)
        cells = [r["trace"], str(r["kernel_profile"]), f"{r['events']:,}",
                 _cell(r, b, lambda x: x["unexplained_rate"], _pct),
                 "ok" if r["invariants_ok"] else "**FAIL**"]
        cells += [_cell(r, b, lambda x, k=k: x["fidelity"][k], _r) for k in RATES]
        cells += [_cell(r, b, lambda x, k=k: x["second_half"][k], _r) for k in RATES]
        cells += _cause_cells(r.get("second_half_disagreement"))
        cells.append(kinds or "-")
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="*", type=Path, help="capture folders (default: every one in shared/traces)")
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--baseline", type=Path, help="an earlier --json to print beside")
    ap.add_argument("--match", default="", help="only folders whose name contains this")
    a = ap.parse_args(argv)
    folders = a.folders or sorted(d for d in TRACES.iterdir() if d.is_dir())
    folders = [d for d in folders if a.match in d.name]
    baseline: dict[str, dict[str, Any]] = {}
    if a.baseline:
        baseline = {r["trace"]: r for r in json.loads(a.baseline.read_text())["rows"]}
    print(f"load before: {os.getloadavg()[0]:.2f}", file=sys.stderr)
    rows = []
    for d in folders:
        r = measure(d)
        print(f"{d.name}: {r.get('unexplained_rate', r.get('error'))} ({r['wall_s']} s)", file=sys.stderr)
        rows.append(r)
    print(f"load after: {os.getloadavg()[0]:.2f}", file=sys.stderr)
    if a.json:
        a.json.write_text(json.dumps({"rows": rows}, indent=1, sort_keys=True))
    print(table(rows, baseline))
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
