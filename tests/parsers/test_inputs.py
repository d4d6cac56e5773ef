"""Inputs: compression, chunk boundaries, bad input, several files, determinism, Parquet round trip."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
import zstandard

from parsers.api import load_events, parse_files, parse_text, parse_to_parquet, read_metadata
from parsers.errors import StrictModeError, TraceFormatError, TraceInputError
from parsers.schema import ALL_COLUMN_NAMES, check_schema

from tests.conftest import SAMPLES


def balanced(acc: dict) -> bool:
    return acc["lines_total"] == acc["lines_parsed"] + acc["lines_comment"] + acc["lines_other_event"] + acc["lines_malformed"]


def make_trace(n: int, ncpu: int = 4, seed: int = 1) -> str:
    rng = np.random.default_rng(seed)
    lines = ["# tracer: nop", "#"]
    t = 1_000_000
    for i in range(n):
        t += int(rng.integers(0, 3))
        cpu = int(rng.integers(0, ncpu))
        pfn = 0x100000 + int(rng.integers(0, 1 << 16))
        if i % 3 == 0:
            payload = f"mm_page_alloc: page=00000000deadbeef pfn={pfn:#x} order={i % 4} migratetype={i % 3} gfp_flags=GFP_KERNEL|__GFP_ZERO"
        elif i % 3 == 1:
            payload = f"mm_page_free: page=00000000deadbeef pfn={pfn:#x} order={i % 4}"
        else:
            payload = f"mm_page_alloc_zone_locked: page=00000000deadbeef pfn={pfn:#x} order=0 migratetype=1 percpu_refill=1"
        comm = ["bash", "kworker/1:2", "<idle>", "Web Content"][i % 4]
        lines.append(f"{comm:>16}-{100 + i % 7:<7} [{cpu:03d}] d..1. {t // 1_000_000:5d}.{t % 1_000_000:06d}: {payload}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def trace_text() -> str:
    return make_trace(3000)


def test_chunk_boundaries_do_not_change_the_result(trace_text):
    data = trace_text.encode()
    ref = parse_files([data]).table
    for bs in (17, 64, 333, 4096):
        got = parse_files([data], block_size=bs).table
        assert got.equals(ref), bs


def test_compressed_inputs_match_plain(tmp_path, trace_text):
    data = trace_text.encode()
    plain = tmp_path / "t.txt"
    plain.write_bytes(data)
    gz = tmp_path / "t.gz"  # named without a telling suffix: detection is by magic bytes
    gz.write_bytes(gzip.compress(data))
    zs = tmp_path / "t.bin"
    zs.write_bytes(zstandard.ZstdCompressor().compress(data))
    multi = tmp_path / "t2.zst"  # two concatenated zstd frames
    half = len(data) // 2
    cut = data.rfind(b"\n", 0, half) + 1
    c = zstandard.ZstdCompressor()
    multi.write_bytes(c.compress(data[:cut]) + c.compress(data[cut:]))
    ref = parse_files([plain])
    for p, comp in ((gz, "gzip"), (zs, "zstd"), (multi, "zstd")):
        r = parse_files([p])
        assert r.accounting["files"][0]["compression"] == comp
        assert r.table.drop_columns(["source_file"]).equals(ref.table.drop_columns(["source_file"]))
        assert r.accounting["events"] == ref.accounting["events"]


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_compressed_file_cut_short(tmp_path, trace_text, kind):
    data = trace_text.encode()
    blob = gzip.compress(data) if kind == "gzip" else zstandard.ZstdCompressor().compress(data)
    p = tmp_path / "cut"
    p.write_bytes(blob[: len(blob) * 2 // 3])
    r = parse_files([p])
    acc = r.accounting
    assert balanced(acc)
    assert acc["files"][0]["truncated"] is True
    assert any("ends early" in w for w in acc["warnings"])
    assert 0 < acc["lines_parsed"] < 3000
    with pytest.raises(StrictModeError) if acc["lines_malformed"] else _nullcontext():
        parse_files([p], strict=True)


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def test_truncated_last_line_is_malformed_with_line_number(trace_text):
    text = trace_text.rstrip("\n")
    text = text[: text.rfind("order=")]  # cut the last line inside its payload
    r = parse_text(text)
    acc = r.accounting
    assert acc["lines_malformed"] == 1 and acc["malformed_reasons"] == {"truncated line": 1}
    assert acc["malformed_examples"][0]["line"] == 3002
    assert balanced(acc)


def test_binary_garbage_lines_are_counted():
    good = "            bash-1977    [003] d..1.  5023.412345: mm_page_free: page=0 pfn=0x10 order=0\n"
    junk = b"\x89PNG\x01\x02garbage\xff\xfe\n" + b"\x00\x00\x00\x00\n" + b"not a trace line\n"
    r = parse_text(good.encode() + junk + good.encode())
    acc = r.accounting
    assert acc["lines_parsed"] == 2 and acc["lines_malformed"] == 3
    assert acc["malformed_reasons"] == {"binary data": 2, "unrecognised line": 1}
    assert [e["line"] for e in acc["malformed_examples"]] == [2, 3, 4]
    assert balanced(acc)


def test_all_binary_file_is_rejected(tmp_path):
    p = tmp_path / "x.bin"
    p.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(TraceFormatError, match="binary data"):
        parse_files([p])


def test_empty_and_comment_only_and_missing(tmp_path):
    e = tmp_path / "empty.txt"
    e.write_bytes(b"")
    with pytest.raises(TraceFormatError, match="empty trace"):
        parse_files([e])
    c = tmp_path / "c.txt"
    c.write_text("# tracer: nop\n#\n\n")
    with pytest.raises(TraceFormatError, match="only comment/header lines"):
        parse_files([c])
    with pytest.raises(TraceInputError, match="no such file"):
        parse_files([tmp_path / "missing.txt"])
    with pytest.raises(TraceInputError, match="is a directory"):
        parse_files([tmp_path])
    x = tmp_path / "x.xz"
    x.write_bytes(b"\xfd7zXZ\x00junk")
    with pytest.raises(TraceInputError, match="xz"):
        parse_files([x])


def test_unknown_events_only_names_what_was_seen():
    text = "  x-1 [000] ..... 1.0: sched_switch: prev_comm=a\n  x-1 [000] ..... 1.1: sched_wakeup: comm=b\n"
    with pytest.raises(TraceFormatError, match="saw sched_switch \\(1\\), sched_wakeup \\(1\\)"):
        parse_text(text)


def test_unknown_format_says_what_was_tried():
    with pytest.raises(TraceFormatError, match="format\\(s\\) tried \\(ftrace, trace-cmd, perf\\)"):
        parse_text("hello world\nthis is not a trace\n")


def test_lost_markers_recorded_with_position():
    text = (
        "  x-1 [000] ..... 1.000001: mm_page_free: page=0 pfn=0x10 order=0\n"
        "CPU:1 [LOST 4711 EVENTS]\n"
        "  x-1 [001] ..... 1.000005: mm_page_free: page=0 pfn=0x11 order=0\n"
        "CPU:0 [LOST 5 EVENTS]\n"
    )
    r = parse_text(text)
    acc = r.accounting
    assert acc["lost_events"] == 4716
    assert [(m["line"], m["cpu"], m["events"], m["next_seq"]) for m in acc["lost_markers"]] == [(2, 1, 4711, 1), (4, 0, 5, 2)]
    assert acc["lines_comment"] == 2 and balanced(acc)
    assert "4711" in r.metadata["pagereplay.lost_events"]


def test_out_of_order_timestamps_within_a_cpu_are_reported_and_sorted():
    text = (
        "  x-1 [000] ..... 2.000000: mm_page_free: page=0 pfn=0x10 order=0\n"
        "  x-1 [001] ..... 1.500000: mm_page_free: page=0 pfn=0x11 order=0\n"
        "  x-1 [000] ..... 1.000000: mm_page_free: page=0 pfn=0x12 order=0\n"
    )
    r = parse_text(text)
    acc = r.accounting
    assert acc["out_of_order_events"] == 1
    assert acc["files"][0]["out_of_order_examples"] == [{"file": "<string>", "line": 3, "cpu": 0}]
    assert r.table.column("pfn").to_pylist() == [0x12, 0x11, 0x10]
    assert r.table.column("seq").to_pylist() == [2, 1, 0]


def test_ties_sorted_by_cpu_then_input_order():
    text = (
        "  x-1 [002] ..... 1.000000: mm_page_free: page=0 pfn=0x1 order=0\n"
        "  x-1 [001] ..... 1.000000: mm_page_free: page=0 pfn=0x2 order=0\n"
        "  x-1 [002] ..... 1.000000: mm_page_free: page=0 pfn=0x3 order=0\n"
    )
    assert parse_text(text).table.column("pfn").to_pylist() == [2, 1, 3]


def test_several_files_merged_by_time(tmp_path):
    # per-CPU dumps concatenated: each file is one CPU, interleaved in time
    files = []
    for cpu in range(3):
        lines = [f"  x-1 [{cpu:03d}] ..... 1.{t * 3 + cpu:06d}: mm_page_free: page=0 pfn={cpu * 1000 + t:#x} order=0" for t in range(500)]
        p = tmp_path / f"cpu{cpu}.txt"
        p.write_text("\n".join(lines) + "\n")
        files.append(p)
    out = tmp_path / "merged.parquet"
    acc = parse_to_parquet(files, out, block_size=2048)  # small blocks: many runs, forces the k-way merge
    t = pq.read_table(out)
    ts = t.column("ts_ns").to_numpy()
    assert acc["lines_parsed"] == 1500 and len(t) == 1500
    assert (np.diff(ts) > 0).all()
    mem = parse_files(files).table
    assert mem.column("seq").to_pylist() == t.column("seq").to_pylist()
    md = read_metadata(out)
    assert md["pagereplay.sorted_by"] == "ts_ns,cpu,seq"
    assert len(__import__("json").loads(md["pagereplay.inputs"])) == 3


def test_parquet_round_trip_metadata_and_determinism(tmp_path, trace_text):
    src = tmp_path / "t.txt"
    src.write_text(trace_text)
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    parse_to_parquet([src], a)
    parse_to_parquet([src], b)
    assert a.read_bytes() == b.read_bytes()
    table, md = load_events(a)
    assert list(table.column_names) == list(ALL_COLUMN_NAMES)
    assert check_schema(table.schema) == []
    assert md["pagereplay.schema_version"] == "2"
    acc = __import__("json").loads(md["pagereplay.accounting"])
    assert acc["lines_parsed"] == 3000 and balanced(acc)
    assert __import__("json").loads(md["pagereplay.inputs"])[0]["sha256"] == __import__("hashlib").sha256(src.read_bytes()).hexdigest()
    # the in-memory parse gives the same table
    assert parse_files([src]).table.equals(table)
    # polars reads it back without pagereplay
    import polars as pl

    df = pl.read_parquet(a)
    assert df.height == 3000 and df.schema["comm"] == pl.Categorical


def test_pure_python_scanner_matches_numba(tmp_path):
    """The scanner's plain-Python path (PAGEREPLAY_JIT=0) gives the same table."""
    src = tmp_path / "t.txt"
    src.write_text(make_trace(300))
    code = (
        "import sys, pyarrow.parquet as pq; from parsers.api import parse_to_parquet;"
        f"parse_to_parquet([{str(src)!r}], sys.argv[1])"
    )
    env = dict(os.environ, PAGEREPLAY_JIT="0")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "py.parquet")], check=True, env=env)
    parse_to_parquet([src], tmp_path / "jit.parquet")
    assert pq.read_table(tmp_path / "py.parquet").equals(pq.read_table(tmp_path / "jit.parquet"))


def test_bundled_samples_parse_cleanly():
    for p in sorted(SAMPLES.glob("*.txt*")) + [SAMPLES / "debian12-6.1-small" / "trace.txt.zst"]:
        r = parse_files([p])
        acc = r.accounting
        assert acc["lines_malformed"] == 0, (p, acc["malformed_examples"])
        assert balanced(acc)
        assert acc["lines_parsed"] > 0


def test_streamed_parquet_equals_in_memory_with_tied_block_boundaries(tmp_path, trace_text):
    """Blocks end inside runs of equal timestamps on different CPUs: held back and merged, not reordered wrongly."""
    src = tmp_path / "t.txt"
    src.write_text(trace_text)
    for bs in (200, 1000, 5000):
        out = tmp_path / f"o{bs}.parquet"
        parse_to_parquet([src], out, block_size=bs)
        assert pq.read_table(out).to_pylist() == parse_files([src]).table.to_pylist(), bs
