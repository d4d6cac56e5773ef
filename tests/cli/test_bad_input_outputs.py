"""Outputs never clobber inputs, writes are whole or absent, impossible pfns are anomalies (issue 20).

Through the CLI (typer's runner), and as subprocesses for the runs killed mid-write.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.cli.test_bad_input import ALLOC, FREE, SNAP, cli, one_line_error, trace
from tests.conftest import ROOT, SAMPLES

SMALL = SAMPLES / "debian12-6.1-small" / "trace.txt.zst"
CLI = [sys.executable, "-c", "from replay.cli import app; app()"]


@pytest.fixture
def good(tmp_path: Path) -> Path:
    return trace(tmp_path, ALLOC, FREE, name="good.txt")


def _digest(p: Path) -> dict[str, bytes]:
    return {str(f.relative_to(p)): f.read_bytes() for f in sorted(p.rglob("*")) if f.is_file()} if p.is_dir() \
        else {"": p.read_bytes()}


# ------------------------------------------------------------------ outputs never clobber inputs
def test_parse_output_is_never_an_input(tmp_path: Path, good: Path) -> None:
    before = good.read_bytes()
    one_line_error(cli("parse", good, "-o", good), good, "names the input", code=1)
    other = trace(tmp_path, FREE, name="other.txt")
    one_line_error(cli("parse", other, good, "-o", good), good, "names the input")
    # a file pagereplay did not write is not replaced either: a text file, a foreign Parquet file
    one_line_error(cli("parse", other, "-o", good), good, "not a Parquet file pagereplay wrote")
    foreign = tmp_path / "foreign.parquet"
    pq.write_table(pa.table({"a": [1]}), foreign)
    one_line_error(cli("parse", other, "-o", foreign), foreign, "not a Parquet file pagereplay wrote")
    assert good.read_bytes() == before and pq.read_table(foreign).column_names == ["a"]
    # its own earlier output is replaced (a re-run), and a Parquet input is never its own output
    out = tmp_path / "e.parquet"
    assert cli("parse", good, "-o", out).exit_code == 0
    assert cli("parse", other, "-o", out).exit_code == 0 and pq.read_table(out).num_rows == 1
    one_line_error(cli("replay", out, "-o", out), out, code=1)


def test_replay_output_is_never_an_input(tmp_path: Path, good: Path) -> None:
    snap = tmp_path / "proc_before"
    shutil.copytree(SNAP, snap)
    snap_before, trace_before = _digest(snap), good.read_bytes()
    one_line_error(cli("replay", good, "-o", good), good, "names the input", code=1)
    one_line_error(cli("replay", good, "--snapshot", snap, "-o", snap), snap, "names the input")
    one_line_error(cli("replay", good, "--snapshot", snap, "-o", snap / "results"), snap, "inside the input folder")
    one_line_error(cli("replay", good, "--end-snapshot", snap, "-o", tmp_path), tmp_path, "holding the input")
    policies = tmp_path / "p.toml"
    policies.write_text('[policy.x]\nbase = "list-6.6"\n')
    one_line_error(cli("replay", good, "--policies-file", policies, "-o", policies), policies, "names the input")
    # a folder of someone else's files is not written into
    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("keep me\n")
    one_line_error(cli("replay", good, "-o", other), other, "todo.txt", "no replay wrote")
    assert _digest(snap) == snap_before and good.read_bytes() == trace_before
    assert (other / "todo.txt").read_text() == "keep me\n" and sorted(p.name for p in other.iterdir()) == ["todo.txt"]
    # an earlier results folder is replaced by a re-run
    res = tmp_path / "res"
    assert cli("replay", good, "-o", res).exit_code == 0
    r = cli("replay", good, "-o", res, "--policy", "list-6.6")
    assert r.exit_code == 0, r.output
    assert pq.read_table(res / "summary.parquet").column("policy").to_pylist() == ["none", "list-6.6"]


def test_report_chart_results_never_write_into_their_input(tmp_path: Path, good: Path) -> None:
    res = tmp_path / "res"
    assert cli("replay", good, "-o", res).exit_code == 0
    before = _digest(res)
    one_line_error(cli("report", res, "-o", res, "--no-images"), res, "names the input", code=1)
    one_line_error(cli("chart", res, "policy-comparison", "-o", res / "c.html"), res, "inside the input folder")
    one_line_error(cli("results", res, "-f", "csv", "-o", res), res, "names the input")
    one_line_error(cli("results", res, "-f", "csv", "-o", tmp_path), res, "holding the input")
    assert _digest(res) == before


def test_synth_outputs_never_replace_what_it_did_not_write(tmp_path: Path, good: Path) -> None:
    before = good.read_bytes()
    one_line_error(cli("synth", "churn", "--events", "100", "-o", good), good, "not a Parquet file pagereplay wrote")
    out = tmp_path / "s.parquet"
    one_line_error(cli("synth", "churn", "--events", "100", "-o", out, "--text", good), good, "--text")
    one_line_error(cli("synth", "churn", "--events", "100", "-o", out, "--text", out), out, "--text")
    one_line_error(cli("synth", "churn", "--events", "100", "-o", good, "--compare-to", good), good)
    assert good.read_bytes() == before
    assert cli("synth", "churn", "--events", "100", "-o", out).exit_code == 0
    assert cli("synth", "churn", "--events", "100", "-o", out, "--seed", "3").exit_code == 0  # its own: replaced


def test_sweep_and_record_outputs(tmp_path: Path, good: Path) -> None:
    before = good.read_bytes()
    one_line_error(cli("sweep", good, "-o", good, "--policy", "none", "-q"), good)
    one_line_error(cli("record", "-o", good, "--duration", "1"), good, "not a folder")  # checked before tracing
    assert good.read_bytes() == before


# ------------------------------------------------------------------ writes: whole under the final name, or absent
def test_results_write_failing_midway_leaves_no_results_folder(tmp_path: Path, good: Path) -> None:
    """A write that fails after some tables are written (here: an events table Arrow cannot
    encode as Parquet) leaves no summary.parquet and no partial files; readers refuse it."""
    from replay.results.folder import POLICY_RESULT_FILES
    from replay.results.tables import write_policy_results

    res = tmp_path / "res"
    assert cli("replay", good, "-o", res).exit_code == 0
    tables = {n: pq.read_table(res / f"{n}.parquet") for n in POLICY_RESULT_FILES}
    tables["timeseries"] = pa.table({"x": pa.array([{}], pa.struct([]))})  # an empty struct: Parquet refuses it
    with pytest.raises(pa.ArrowException):
        write_policy_results(res, tables, {"tool": "test"})
    assert not (res / "summary.parquet").exists()
    assert not [p for p in res.iterdir() if p.name.endswith(".partial")]
    for args in (["report", res, "-o", tmp_path / "rep", "--no-images"], ["compare", res], ["results", res, "--describe"]):
        one_line_error(cli(*args), res / "summary.parquet", code=1)
    assert cli("replay", good, "-o", res).exit_code == 0  # and a new replay may write it again
    assert cli("compare", res).exit_code == 0


def _kill_when(cmd: list[str], marker: str | None, delay: float) -> int:
    """Run ``cmd``; SIGKILL it ``delay`` s after ``marker`` appears on its stderr (or after start)."""
    env = {**os.environ, "PAGEREPLAY_TIMING": "1", "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    assert p.stderr is not None
    if marker is not None:
        for line in p.stderr:
            if marker in line:
                break
    time.sleep(delay)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=120)
    return p.returncode


@pytest.mark.parametrize("delay", [0.0, 0.02, 0.1])
def test_replay_killed_while_writing(tmp_path: Path, delay: float) -> None:
    res = tmp_path / "res"
    _kill_when([*CLI, "replay", str(SMALL), "-o", str(res), "--all-policies"], "[timing] tables", delay)
    if (res / "summary.parquet").exists():  # the kill came after the last rename: every table is whole
        assert cli("compare", res).exit_code == 0
        assert not [p for p in res.iterdir() if p.name.endswith(".partial")]
    elif res.exists():  # killed before the last rename: refused, by name (summary.parquet, or the folder if empty)
        one_line_error(cli("report", res, "-o", tmp_path / "rep", "--no-images"), res)


@pytest.mark.parametrize("delay", [0.3, 0.8])
def test_parse_killed_midway(tmp_path: Path, delay: float) -> None:
    out = tmp_path / "e.parquet"
    _kill_when([*CLI, "parse", str(SMALL), str(SAMPLES / "debian12-6.1-perf-head20k.txt.zst"), "-o", str(out)],
               None, delay)
    r = cli("info", out)
    if out.exists():  # whole under its name: it reads
        assert r.exit_code == 0, r.output
    else:  # absent (what was written so far has a hidden temporary name)
        one_line_error(r, out, "no such file")
        assert all(p.name.startswith(".pagereplay-") for p in tmp_path.iterdir())


# ------------------------------------------------------------------ impossible pfns
IMPOSSIBLE = ALLOC.replace("pfn=0x1011fe", "pfn=0xffffffffffff")


@pytest.mark.parametrize("as_parquet", [False, True])
def test_impossible_pfns_are_anomalies_not_a_guest(tmp_path: Path, as_parquet: bool) -> None:
    """Four allocations at pfn 0xffffffffffff beside real ones: the layout comes from the real pfns,
    the four are pfn_out_of_range anomalies, in a subprocess that must end (it used to loop 2^33
    times in infer_layout)."""
    t = trace(tmp_path, ALLOC, *[IMPOSSIBLE] * 4, FREE)
    if as_parquet:
        assert cli("parse", t, "-o", tmp_path / "t.parquet").exit_code == 0
        t = tmp_path / "t.parquet"
    res = tmp_path / "res"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([*CLI, "replay", str(t), "--mode", "exact", "-o", str(res)], capture_output=True, text=True, check=False,
                       timeout=300, env=env, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    kinds = pq.read_table(res / "anomalies.parquet").column("kind").to_pylist()
    assert kinds.count("pfn_out_of_range") == 4
    summary = pq.read_table(res / "summary.parquet").to_pylist()[0]
    assert summary["anomalies"] >= 4


def test_only_impossible_or_absurd_pfns(tmp_path: Path) -> None:
    only = trace(tmp_path, *[IMPOSSIBLE] * 4, name="only.txt")
    one_line_error(cli("replay", only, "-o", tmp_path / "r"), only, "no pfns to infer a memory layout")
    # a pfn x86-64 allows but no guest this machine can model: refused, named, before any work
    far = trace(tmp_path, ALLOC, ALLOC.replace("pfn=0x1011fe", "pfn=0x8000000000"), name="far.txt")
    one_line_error(cli("replay", far, "-o", tmp_path / "r2"), far, "0x8000000000", "--guest-size")
    # with --guest-size the far pfn is an anomaly of that guest
    r = cli("replay", far, "-o", tmp_path / "r3", "--guest-size", "4G")
    assert r.exit_code == 0, r.output
    kinds = pq.read_table(tmp_path / "r3" / "anomalies.parquet").column("kind").to_pylist()
    assert kinds.count("pfn_out_of_range") == 1
