"""``pagereplay parse/info/replay`` on binary traces, through typer's runner, like any other input."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import zstandard
from typer.testing import CliRunner

from replay.cli import app
from tests.conftest import require_trace_file

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


# ---------------------------------------------------------------- damaged real binaries (issue 18, item 4)

REAL = {"trace.dat": "debian12-6.1-tracecmd/trace.dat.zst", "perf.data": "debian12-6.1-perf/perf.data.zst"}


@pytest.fixture(scope="module")
def real_binaries(tmp_path_factory):
    """The 6.1 trace.dat and perf.data, decompressed (the cuts and flips are of the files as the tools wrote them)."""
    d = tmp_path_factory.mktemp("real-binaries")
    out = {}
    for kind, rel in REAL.items():
        src = require_trace_file(rel)
        out[kind] = zstandard.ZstdDecompressor().decompressobj().decompress(src.read_bytes())
        (d / kind).write_bytes(out[kind])
    return d, out


def assert_one_line_error(r, path, offset_expected=True):
    assert r.exit_code == 1, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in r.output, r.output
    assert str(path) in lines[0], lines[0]
    if offset_expected:
        assert "at byte 0x" in lines[0], lines[0]


@pytest.mark.parametrize("kind", ["trace.dat", "perf.data"])
@pytest.mark.parametrize("cut", [16, 64, 200, 4096, "third", "last-100", "last-1"])
def test_truncated_real_binary_is_one_line_naming_the_offset(real_binaries, tmp_path, kind, cut):
    _d, data = real_binaries
    n = len(data[kind])
    at = {"third": n // 3, "last-100": n - 100, "last-1": n - 1}.get(cut, cut)
    bad = tmp_path / f"{kind}.cut"
    bad.write_bytes(data[kind][:at])
    r = invoke("parse", bad, "-o", tmp_path / "x.parquet")
    assert_one_line_error(r, bad)
    assert "truncated" in r.output or "cut short" in r.output or "past the end" in r.output, r.output
    assert not (tmp_path / "x.parquet").exists()


def _flip(data: bytes, at: int, value: bytes) -> bytes:
    return data[:at] + value + data[at + len(value):]


# (offset, replacement bytes, what the message must say): header fields of trace-cmd's v7 header
# (magic 10 bytes, version string, endian, long size, page size, compression, options offset) and
# of perf's perf_file_header (magic, size, attr_size, attrs, data, event_types sections)
TRACEDAT_FLIPS = [
    (10, b"9", "unsupported trace.dat file version 9"),
    (12, b"\x07", "bad endian byte 7"),
    (14, b"\x00\x30\x00\x00", "implausible page size"),
]
PERF_FLIPS = [
    (8, (7).to_bytes(8, "little"), "header"),  # header size
    (16, (3).to_bytes(8, "little"), "attr"),  # attr size
    (40, (1 << 40).to_bytes(8, "little"), "data section"),  # data offset
]


@pytest.mark.parametrize("kind,at,value,says", [("trace.dat", *f) for f in TRACEDAT_FLIPS] + [("perf.data", *f) for f in PERF_FLIPS])
def test_flipped_header_bytes_of_real_binary(real_binaries, tmp_path, kind, at, value, says):
    _d, data = real_binaries
    bad = tmp_path / kind
    bad.write_bytes(_flip(data[kind], at, value))
    r = invoke("parse", bad, "-o", tmp_path / "x.parquet")
    assert_one_line_error(r, bad)
    assert says in r.output, r.output


def test_corrupt_options_offset_of_real_tracedat(real_binaries, tmp_path):
    _d, data = real_binaries
    td = data["trace.dat"]
    # the options offset follows "7\0", endian, long size, page size and the compression name/version strings
    comp_end = td.index(b"\x00", td.index(b"\x00", 18) + 1) + 1
    bad = tmp_path / "trace.dat"
    bad.write_bytes(_flip(td, comp_end, (len(td) + 4096).to_bytes(8, "little")))
    r = invoke("parse", bad, "-o", tmp_path / "x.parquet")
    assert_one_line_error(r, bad)
    assert "options section offset outside the file" in r.output


def test_real_perfdata_replay(traces_dir, tmp_path):
    d = traces_dir / "debian12-6.1-perf"
    res = tmp_path / "res"
    r = invoke("replay", d / "perf.data.zst", "--snapshot", d / "proc_before", "-o", res)
    assert r.exit_code == 0, r.output
    # every record of the binary replayed, like the text twin's lines (446,026 in perf script's text)
    summary = pq.read_table(res / "summary.parquet").to_pylist()
    assert summary[0]["events_replayed"] == 446_026 and summary[0]["invariants_ok"]
    assert pq.read_metadata(res / "events.parquet").num_rows == 446_026
