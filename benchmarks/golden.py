"""Digest of every result the tool writes, over every real trace: the check that a refactor
changed nothing.

    python benchmarks/golden.py --pagereplay .venv/bin/pagereplay -o digest.json [--quick]
    python benchmarks/golden.py --diff before.json after.json

For each capture folder under ``--traces`` (default ``../shared/traces``) it runs, with the
folder's ``proc_before``/``proc_after`` snapshots where present:

- ``parse`` of the trace text -> ``events.parquet`` and the ``--json`` accounting;
- ``info --json`` of that Parquet;
- ``replay --all-policies --json`` in exact mode (every results table) and, on the smaller
  traces, in simulate mode;
- and a few ``synth`` runs (Parquet and text).

Every output file and every ``--json`` stdout is recorded by the sha256 of its bytes.  The work
folder is fixed (``--workdir``, emptied first) because results name their inputs by path.
``--diff`` lists the entries that differ.  The run takes a few minutes on two cores.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRACE_FILES = ("trace.txt.zst", "trace-cmd-report.txt.zst", "perf-script.txt.zst")
SIMULATE_MAX_BYTES = 4 << 20  # compressed trace size up to which simulate mode runs too
SYNTH = (
    ["churn", "--events", "20000", "--seed", "7"],
    ["boot", "--events", "20000", "--seed", "3"],
    ["page-cache", "--events", "20000", "--seed", "11", "--format", "trace-cmd", "--kernel-era", "C"],
    ["fork-storm", "--events", "20000", "--seed", "5", "--format", "perf", "--emitter", "standin"],
)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _digest_file(path: Path) -> str:
    return _sha(path.read_bytes())


def _run(cmd: list[str], out: dict, key: str, *, stdout: bool = True) -> bytes:
    """Run ``cmd``; record its exit status and (``stdout``) the digest of what it printed."""
    env = dict(os.environ)
    env.pop("PAGEREPLAY_TIMING", None)
    p = subprocess.run(cmd, capture_output=True, env=env, check=False)
    out[key + ":rc"] = str(p.returncode)
    if stdout:
        out[key + ":stdout"] = _sha(p.stdout)
    if p.returncode != 0:
        out[key + ":stderr"] = p.stderr.decode(errors="replace")[-400:]
    return p.stdout


def _folder_outputs(folder: Path, out: dict, key: str) -> None:
    for f in sorted(folder.rglob("*")):
        if f.is_file():
            out[f"{key}/{f.relative_to(folder)}"] = _digest_file(f)


def trace_file(folder: Path) -> Path | None:
    for name in TRACE_FILES:
        if (folder / name).exists():
            return folder / name
    return None


def digest(pagereplay: str, traces: Path, quick: bool, workdir: Path) -> dict:
    out: dict[str, str] = {}
    folders = sorted(p for p in traces.iterdir() if p.is_dir())
    if quick:
        folders = [f for f in folders if "small" in f.name or "boot" in f.name]
    tmp = workdir
    for folder in folders:
        trace = trace_file(folder)
        if trace is None:
            continue
        name = folder.name
        print(f"  {name}", file=sys.stderr, flush=True)
        work = tmp / name
        work.mkdir()
        ev = work / "events.parquet"
        _run([pagereplay, "parse", str(trace), "-o", str(ev), "--json"], out, f"{name}/parse")
        if not ev.exists():
            continue
        out[f"{name}/events.parquet"] = _digest_file(ev)
        _run([pagereplay, "info", str(ev), "--json"], out, f"{name}/info")
        snap = []
        if (folder / "proc_before").is_dir():
            snap += ["--snapshot", str(folder / "proc_before")]
        if (folder / "proc_after").is_dir():
            snap += ["--end-snapshot", str(folder / "proc_after")]
        modes = ["exact"]
        if trace.stat().st_size <= SIMULATE_MAX_BYTES:
            modes.append("simulate")
        for mode in modes:
            res = work / f"results-{mode}"
            _run([pagereplay, "replay", str(ev), "-o", str(res), "--mode", mode, "--all-policies",
                  "--json", *snap], out, f"{name}/replay-{mode}")
            _folder_outputs(res, out, f"{name}/replay-{mode}")
            _run([pagereplay, "compare", str(res)], out, f"{name}/compare-{mode}")
        if "tracecmd" in name:  # the text input itself, every event row
            res = work / "results-text-all-events"
            _run([pagereplay, "replay", str(trace), "-o", str(res), "--all-policies", "--all-events",
                  "--json", *snap], out, f"{name}/replay-text-all-events")
            _folder_outputs(res, out, f"{name}/replay-text-all-events")
    for i, args in enumerate(SYNTH):
        pq_out = tmp / f"synth{i}.parquet"
        txt = tmp / f"synth{i}.txt"
        # (synth prints its own speed: only the files are compared)
        _run([pagereplay, "synth", *args, "-o", str(pq_out), "--text", str(txt)], out, f"synth{i}", stdout=False)
        for f in (pq_out, txt):
            if f.exists():
                out[f"synth{i}/{f.name}"] = _digest_file(f)
    return out


def diff(a: dict, b: dict) -> int:
    keys = sorted(set(a) | set(b))
    bad = [k for k in keys if a.get(k) != b.get(k)]
    for k in bad:
        print(f"differs: {k}\n  before: {a.get(k)}\n  after:  {b.get(k)}")
    print(f"{len(keys) - len(bad)} of {len(keys)} entries equal")
    return 1 if bad else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pagereplay", default=str(ROOT / ".venv" / "bin" / "pagereplay"))
    ap.add_argument("--traces", type=Path, default=ROOT.parent / "shared" / "traces")
    ap.add_argument("-o", "--output", type=Path)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "pagereplay-golden")
    ap.add_argument("--quick", action="store_true", help="boot and small traces only")
    ap.add_argument("--diff", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    a = ap.parse_args()
    if a.diff:
        return diff(json.loads(a.diff[0].read_text()), json.loads(a.diff[1].read_text()))
    shutil.rmtree(a.workdir, ignore_errors=True)
    a.workdir.mkdir(parents=True)
    d = digest(a.pagereplay, a.traces.resolve(), a.quick, a.workdir)
    text = json.dumps(d, indent=1, sort_keys=True)
    if a.output:
        a.output.write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
