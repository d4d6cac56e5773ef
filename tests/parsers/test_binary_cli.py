"""``pagereplay parse/info/replay`` on binary traces, through typer's runner, like any other input."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import zstandard
from typer.testing import CliRunner

from replay.cli import app

from .test_binary_synthetic import (
    CMDLINES,
    EXPECT_TWO_CPU,
    FMTS,
    F,
    perf_attrs,
    perf_records,
    perfdata,
    tracedat_v7,
    two_cpu_trace,
)

runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def test_parse_zst_tracedat_prints_the_accounting(tmp_path):
    src = tmp_path / "trace.dat.zst"
    src.write_bytes(zstandard.ZstdCompressor().compress(tracedat_v7(two_cpu_trace(), FMTS, comp="zstd", cmdlines=CMDLINES)))
    out = tmp_path / "x.parquet"
    r = invoke("parse", src, "-o", out)
    assert r.exit_code == 0, r.output
    assert "line accounting" in r.stdout and "mm_page_alloc" in r.stdout
    assert f"wrote {len(EXPECT_TWO_CPU)} events to {out}" in r.stdout
    md = pq.read_metadata(out).metadata
    assert md[b"pagereplay.format"] == b"trace.dat"
    assert md[b"pagereplay.kernel_version"] == b"6.1.0-test"
    acc = json.loads(md[b"pagereplay.accounting"])
    assert acc["files"][0]["compression"] == "zstd" and acc["files"][0]["unit"] == "records"
    assert pq.read_table(out).num_rows == len(EXPECT_TWO_CPU)
    r = invoke("parse", src, "-o", out, "--json")
    assert r.exit_code == 0, r.output
    acc = json.loads(r.stdout)
    assert acc["lines_total"] == acc["lines_parsed"] + acc["lines_other_event"] + acc["lines_malformed"] == 5
    assert acc["files"][0]["binary"]["ring_buffer"]["pages"] == 2


def test_info_and_parse_perfdata(tmp_path):
    src = tmp_path / "perf.data"
    attrs = perf_attrs()
    src.write_bytes(perfdata(attrs, perf_records(attrs), [*F.values()]))
    r = invoke("info", src, "--json")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["input"]["format"] == "perf.data" and summary["input"]["parquet"] is False
    assert summary["accounting"]["lines_parsed"] == 6 and summary["accounting"]["lost_events"] == 9
    r = invoke("parse", src, "-o", tmp_path / "p.parquet")
    assert r.exit_code == 0, r.output
    assert "LOST markers: 2 (9 events lost)" in r.stdout


def test_real_tracedat_parse_and_replay(traces_dir, tmp_path):
    d = traces_dir / "debian12-6.1-tracecmd"
    out = tmp_path / "e.parquet"
    r = invoke("parse", d / "trace.dat.zst", "-o", out)
    assert r.exit_code == 0, r.output
    assert "wrote 409,249 events" in r.stdout and "print (other)" in r.stdout
    assert pq.read_metadata(out).metadata[b"pagereplay.kernel_version"] == b"6.1.0-56-amd64"
    res = tmp_path / "res"
    r = invoke("replay", d / "trace.dat.zst", "--snapshot", d / "proc_before", "-o", res)
    assert r.exit_code == 0, r.output
    assert res.is_dir() and any(res.iterdir())
