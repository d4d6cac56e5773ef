"""The command line through typer's runner: parse, info, version, and every bad input.

Counts are checked against an independent count of the bundled samples (a plain
regex over the decompressed text), not against the parser's own output.
"""

from __future__ import annotations

import bz2
import collections
import gzip
import json
import lzma
import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import zstandard
from typer.testing import CliRunner

from parsers.formats import FORMATS
from parsers.schema import EVENT_NAMES, SCHEMA_VERSION
from replay.cli import app

from tests.conftest import SAMPLES

runner = CliRunner()

BOOT = SAMPLES / "debian12-6.1-boot-head3k.txt"  # plain ftrace text
SMALL = SAMPLES / "debian12-6.1-small" / "trace.txt.zst"  # zstd ftrace text
PERF = SAMPLES / "debian12-6.1-perf-head20k.txt.zst"  # zstd perf script text
TRACECMD = SAMPLES / "debian12-6.1-tracecmd-head20k.txt.gz"  # gzip trace-cmd report text

ACC_KEYS = (
    "lines_total", "lines_parsed", "lines_comment", "lines_other_event", "lines_malformed", "events", "lost_events",
)


# ----------------------------------------------------------------------------- helpers
def read_text(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        return gzip.decompress(raw)
    if raw[:4] == b"\x28\xb5\x2f\xfd":
        return zstandard.ZstdDecompressor().decompressobj().decompress(raw)
    return raw


_EV = re.compile(rb"\s(?:kmem:)?(mm_page_[a-z_]+):\s")
_ALLOC = re.compile(rb"^\s*(.+?)[- ](\d+)\s.*?\s(\d+\.\d+):\s+(?:kmem:)?mm_page_alloc:\s.*?\border=(\d+)")


def independent_count(path: Path) -> dict[str, object]:
    """Event counts and a few figures from the decompressed text with plain regexes."""
    text = read_text(path)
    lines = text.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    events: collections.Counter[str] = collections.Counter()
    alloc_pages = 0
    pages_by_comm: collections.Counter[str] = collections.Counter()
    for ln in lines:
        if ln.startswith(b"#"):
            continue
        m = _EV.search(ln)
        if not m:
            continue
        events[m.group(1).decode()] += 1
        a = _ALLOC.match(ln)
        if a:
            pages = 1 << int(a.group(4))
            alloc_pages += pages
            pages_by_comm[a.group(1).decode().strip()] += pages
    return {
        "lines": len(lines),
        "comments": sum(1 for ln in lines if ln.startswith(b"#")),
        "events": {e: events.get(e, 0) for e in EVENT_NAMES},
        "alloc_pages": alloc_pages,
        "pages_by_comm": pages_by_comm,
    }


def invoke(*args: object, input: bytes | str | None = None):
    return runner.invoke(app, [str(a) for a in args], input=input)


def balanced(acc: dict) -> bool:
    parts = ("lines_parsed", "lines_comment", "lines_other_event", "lines_malformed")
    return acc["lines_total"] == sum(acc[k] for k in parts)


def assert_one_line_failure(res, *needles: str, code: int | None = None) -> str:
    """Non-zero exit, no traceback, exactly one line on stderr containing every needle."""
    assert res.exit_code != 0, res.output
    if code is not None:
        assert res.exit_code == code, res.output
    # the runner stores an uncaught exception here; a clean failure is a SystemExit only
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in res.output
    err_lines = res.stderr.strip().splitlines()
    assert len(err_lines) == 1, res.stderr
    msg = err_lines[0]
    assert msg.startswith("error: "), msg
    for n in needles:
        assert n in msg, f"{n!r} not in {msg!r}"
    return msg


def parse_json(*paths: object, tmp_path: Path, extra: tuple[str, ...] = ()) -> tuple[dict, Path]:
    out = tmp_path / "events.parquet"
    res = invoke("parse", *paths, "-o", out, "--json", *extra)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout), out


# ----------------------------------------------------------------------------- parse: samples
@pytest.mark.parametrize("sample", [BOOT, SMALL, TRACECMD, PERF], ids=["plain", "zstd", "gzip-tracecmd", "zstd-perf"])
def test_parse_sample_json_matches_independent_count(sample: Path, tmp_path: Path) -> None:
    acc, out = parse_json(sample, tmp_path=tmp_path)
    for k in ACC_KEYS:
        assert k in acc, k
    assert balanced(acc)
    ref = independent_count(sample)
    assert acc["lines_total"] == ref["lines"]
    assert acc["events"] == ref["events"]
    assert acc["lines_parsed"] == sum(ref["events"].values())  # type: ignore[arg-type]
    assert acc["lines_malformed"] == 0
    assert acc["lost_events"] == 0
    # the Parquet holds one row per parsed event, and its metadata the same accounting
    pf = pq.ParquetFile(out)
    assert pf.metadata.num_rows == acc["lines_parsed"]
    stored = json.loads(pf.metadata.metadata[b"pagereplay.accounting"])
    assert stored["events"] == acc["events"]
    assert stored["lines_total"] == acc["lines_total"]


def test_parse_detects_each_format(tmp_path: Path) -> None:
    seen = {}
    for sample in (BOOT, TRACECMD, PERF):
        acc, _ = parse_json(sample, tmp_path=tmp_path)
        seen[sample.name] = acc["files"][0]["format"]
        assert acc["files"][0]["compression"] == {".gz": "gzip", ".zst": "zstd"}.get(sample.suffix, "none")
    assert seen == {BOOT.name: "ftrace", TRACECMD.name: "trace-cmd", PERF.name: "perf"}


def test_parse_counts_other_events_and_comments(tmp_path: Path) -> None:
    # the small sample holds two tracing_mark_write lines and the 12-line tracefs header
    acc, _ = parse_json(SMALL, tmp_path=tmp_path)
    ref = independent_count(SMALL)
    assert acc["lines_comment"] == ref["comments"] == 12
    assert acc["lines_other_event"] == 2
    assert acc["other_events"] == {"tracing_mark_write": 2}


def test_parse_human_output(tmp_path: Path) -> None:
    out = tmp_path / "boot.parquet"
    res = invoke("parse", BOOT, "-o", out)
    assert res.exit_code == 0, res.output
    ref = independent_count(BOOT)
    n = sum(ref["events"].values())  # type: ignore[arg-type]
    assert f"wrote {n:,} events to {out}" in res.stdout
    assert "line accounting" in res.stdout
    assert "mm_page_alloc_zone_locked" in res.stdout
    assert f"{ref['events']['mm_page_alloc_zone_locked']:,}" in res.stdout  # type: ignore[index]
    assert out.is_file()


def test_parse_several_files_sums_accounting(tmp_path: Path) -> None:
    one, _ = parse_json(BOOT, tmp_path=tmp_path)
    two, out = parse_json(BOOT, TRACECMD, tmp_path=tmp_path)
    ref = independent_count(TRACECMD)
    assert two["lines_total"] == one["lines_total"] + ref["lines"]
    assert two["events"] == {e: one["events"][e] + ref["events"][e] for e in EVENT_NAMES}  # type: ignore[index]
    assert [f["file"] for f in two["files"]] == [str(BOOT), str(TRACECMD)]
    assert pq.ParquetFile(out).metadata.num_rows == two["lines_parsed"]


# ----------------------------------------------------------------------------- standard input
def test_parse_stdin_plain(tmp_path: Path) -> None:
    out = tmp_path / "stdin.parquet"
    res = invoke("parse", "-", "-o", out, "--json", input=BOOT.read_bytes())
    assert res.exit_code == 0, res.output
    acc = json.loads(res.stdout)
    assert acc["events"] == independent_count(BOOT)["events"]
    assert acc["files"][0]["file"] == "<stdin>"
    assert balanced(acc)
    assert pq.ParquetFile(out).metadata.num_rows == acc["lines_parsed"]


def test_parse_stdin_compressed(tmp_path: Path) -> None:
    out = tmp_path / "stdin.parquet"
    res = invoke("parse", "-", "-o", out, "--json", input=TRACECMD.read_bytes())  # gzip bytes on stdin
    assert res.exit_code == 0, res.output
    acc = json.loads(res.stdout)
    assert acc["files"][0]["compression"] == "gzip"
    assert acc["events"] == independent_count(TRACECMD)["events"]


def test_parse_empty_stdin_fails(tmp_path: Path) -> None:
    res = invoke("parse", "-", "-o", tmp_path / "o.parquet", input=b"")
    assert_one_line_failure(res, "<stdin>", "empty")
    assert not (tmp_path / "o.parquet").exists()


# ----------------------------------------------------------------------------- --strict
def _with_malformed_line(tmp_path: Path) -> tuple[Path, int]:
    lines = BOOT.read_bytes().split(b"\n")
    bad = b"            init-1       [000] .....     0.543657: mm_page_alloc: page=00000000 pfn=zz order=0"
    lines.insert(100, bad)  # becomes line 101
    p = tmp_path / "one-bad-line.txt"
    p.write_bytes(b"\n".join(lines))
    return p, 101


def test_strict_fails_on_a_malformed_line(tmp_path: Path) -> None:
    p, lineno = _with_malformed_line(tmp_path)
    res = invoke("parse", p, "-o", tmp_path / "o.parquet", "--strict")
    assert_one_line_failure(res, "--strict", f"{p}:{lineno}", "1 malformed")
    assert not (tmp_path / "o.parquet").exists()


def test_without_strict_the_malformed_line_is_counted_and_shown(tmp_path: Path) -> None:
    p, lineno = _with_malformed_line(tmp_path)
    res = invoke("parse", p, "-o", tmp_path / "o.parquet", "--json")
    assert res.exit_code == 0, res.output
    acc = json.loads(res.stdout)
    assert acc["lines_malformed"] == 1
    assert balanced(acc)
    assert acc["malformed_examples"][0]["line"] == lineno
    assert acc["malformed_examples"][0]["file"] == str(p)
    res = invoke("parse", p, "-o", tmp_path / "o.parquet")
    assert res.exit_code == 0
    assert f"{p}:{lineno}" in res.stdout  # the human summary names file:line


def test_strict_passes_on_a_clean_file(tmp_path: Path) -> None:
    res = invoke("parse", BOOT, "-o", tmp_path / "o.parquet", "--strict", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["lines_malformed"] == 0


# ----------------------------------------------------------------------------- --format
def test_format_perf_override_gives_the_same_counts(tmp_path: Path) -> None:
    auto, _ = parse_json(PERF, tmp_path=tmp_path)
    forced, _ = parse_json(PERF, tmp_path=tmp_path, extra=("--format", "perf"))
    assert forced["events"] == auto["events"] == independent_count(PERF)["events"]
    assert forced["files"][0]["format"] == "perf"


def test_format_trace_cmd_reads_ftrace_text(tmp_path: Path) -> None:
    acc, _ = parse_json(BOOT, tmp_path=tmp_path, extra=("-f", "trace-cmd"))
    assert acc["events"] == independent_count(BOOT)["events"]


def test_wrong_forced_format_fails_cleanly(tmp_path: Path) -> None:
    res = invoke("parse", PERF, "-o", tmp_path / "o.parquet", "--format", "ftrace")
    assert_one_line_failure(res, str(PERF))


def test_wrong_forced_format_message_names_only_the_forced_format(tmp_path: Path) -> None:
    res = invoke("parse", PERF, "-o", tmp_path / "o.parquet", "--format", "ftrace")
    msg = assert_one_line_failure(res, str(PERF))
    assert "perf)" not in msg and "ftrace" in msg


@pytest.mark.parametrize("command", ["parse", "info"])
def test_unknown_format_value(command: str, tmp_path: Path) -> None:
    extra = ("-o", tmp_path / "o.parquet") if command == "parse" else ()
    res = invoke(command, BOOT, *extra, "--format", "ctf")
    msg = assert_one_line_failure(res, "'ctf'", code=2)
    for f in FORMATS:
        assert f in msg


# ----------------------------------------------------------------------------- bad input
OTHER_EVENTS_ONLY = (
    "# tracer: nop\n#\n"
    "          <idle>-0       [000] d..2.   100.000001: sched_switch: prev_comm=swapper/0 prev_pid=0 ==> "
    "next_comm=bash next_pid=7\n"
    "            bash-7       [000] d..2.   100.000002: sched_wakeup: comm=kworker/0:1 pid=12 prio=120 target_cpu=000\n"
    "            bash-7       [000] d..2.   100.000003: sched_switch: prev_comm=bash prev_pid=7 ==> "
    "next_comm=swapper/0 next_pid=0\n"
)


def _bad_inputs(tmp: Path) -> dict[str, tuple[Path, tuple[str, ...]]]:
    """name -> (path, phrases the one-line message must contain besides the path)."""
    cases: dict[str, tuple[Path, tuple[str, ...]]] = {}

    def put(name: str, data: bytes, *needles: str) -> None:
        p = tmp / name
        p.write_bytes(data)
        cases[name] = (p, needles)

    cases["missing"] = (tmp / "no-such-trace.txt", ("no such file",))
    (tmp / "a-directory").mkdir()
    cases["directory"] = (tmp / "a-directory", ("directory",))
    put("gzip-magic-junk.gz", b"\x1f\x8b" + bytes(range(7, 250)) * 3, "unreadable gzip")
    put("zstd-magic-junk.zst", b"\x28\xb5\x2f\xfd" + bytes(range(1, 200)), "unreadable zstd")
    put("trace.txt.xz", lzma.compress(BOOT.read_bytes()[:5000]), "xz", "not a supported input")
    put("trace.txt.bz2", bz2.compress(BOOT.read_bytes()[:5000]), "bzip2", "not a supported input")
    put("empty.txt", b"", "empty")
    put("comments-only.txt", b"# tracer: nop\n#\n# entries-in-buffer/entries-written: 0/0   #P:4\n#\n", "no events")
    put("other-events.txt", OTHER_EVENTS_ONLY.encode(), "no page-allocator", "sched_switch (2)", "sched_wakeup (1)")
    put("garbage.bin", bytes((i * 7 + 3) % 256 for i in range(8192)), "binary")
    dat = b"\x17\x08\x44tracing6\x00\x00\x00\x00\x10\x00\x00" + bytes(range(256)) * 16  # trace-cmd's magic + version
    put("trace.dat", dat, "trace.dat", "trace-cmd report")
    put("perf.data", b"PERFILE2" + bytes(range(256)) * 8, "perf.data", "perf script")
    put("notes.txt", b"hello world\nthis is a shopping list, not a trace\n", "unknown format", *FORMATS)
    return cases


BAD_IDS = [
    "missing",
    "directory",
    "gzip-magic-junk.gz",
    "zstd-magic-junk.zst",
    "trace.txt.xz",
    "trace.txt.bz2",
    "empty.txt",
    "comments-only.txt",
    "other-events.txt",
    "garbage.bin",
    "trace.dat",
    "perf.data",
    "notes.txt",
]


@pytest.mark.parametrize("case", BAD_IDS)
def test_parse_bad_input_is_one_line_and_non_zero(case: str, tmp_path: Path) -> None:
    path, needles = _bad_inputs(tmp_path)[case]
    out = tmp_path / "o.parquet"
    res = invoke("parse", path, "-o", out)
    assert_one_line_failure(res, str(path), *needles)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".pagereplay-")]  # no temp file left behind


@pytest.mark.parametrize("case", ["missing", "empty.txt", "other-events.txt", "trace.dat", "gzip-magic-junk.gz"])
def test_info_bad_input_is_one_line_and_non_zero(case: str, tmp_path: Path) -> None:
    path, needles = _bad_inputs(tmp_path)[case]
    res = invoke("info", path)
    assert_one_line_failure(res, str(path), *needles)


def _run_cli(*args: object) -> subprocess.CompletedProcess[str]:
    """The real console entry point in a child process (a native crash must not take pytest down)."""
    code = "from replay.cli import main; main()"
    env = {k: v for k, v in os.environ.items() if k != "PAGEREPLAY_DEBUG"}
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=env, timeout=120
    )


def test_missing_file_after_a_good_one_fails_cleanly_every_time(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-trace.txt"
    out = tmp_path / "o.parquet"
    for _ in range(10):  # the crash is a race; ten clean runs in a row make a fluke unlikely (~0.1%)
        p = _run_cli("parse", BOOT, missing, "-o", out)
        assert p.returncode == 1, (p.returncode, p.stderr[-500:])
        assert p.stderr.strip().splitlines() == [f"error: {missing}: no such file"]
        assert not out.exists()
        assert not [q.name for q in tmp_path.iterdir() if q.name.startswith(".pagereplay-")]


def test_empty_file_among_good_ones_is_not_silent(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    res = invoke("parse", BOOT, empty, "-o", tmp_path / "o.parquet", "--json")
    if res.exit_code != 0:
        assert_one_line_failure(res, str(empty), "empty")
        return
    acc = json.loads(res.stdout)
    assert any(str(empty) in w for w in acc["warnings"]), acc["warnings"]


def test_all_kmem_lines_malformed_is_not_called_an_unknown_format(tmp_path: Path) -> None:
    p = tmp_path / "all-bad.txt"
    line = (
        "            init-1       [000] .....     0.543657: mm_page_alloc: page=0 pfn=zz order=0 migratetype=0 "
        "gfp_flags=GFP_KERNEL\n"
    )
    p.write_text("# tracer: nop\n" + line * 3)
    res = invoke("parse", p, "-o", tmp_path / "o.parquet")
    msg = assert_one_line_failure(res, str(p))
    assert "unknown format" not in msg
    assert "malformed" in msg or "bad field value" in msg


def test_gzip_cut_short_warns_and_strict_fails(tmp_path: Path) -> None:
    data = gzip.compress(BOOT.read_bytes())
    p = tmp_path / "cut.txt.gz"
    p.write_bytes(data[: len(data) // 2])
    res = invoke("parse", p, "-o", tmp_path / "o.parquet", "--json")
    assert res.exit_code == 0, res.output
    acc = json.loads(res.stdout)
    assert acc["files"][0]["truncated"] is True
    assert any(str(p) in w and "cut short" in w for w in acc["warnings"])
    assert 0 < acc["lines_parsed"] < sum(independent_count(BOOT)["events"].values())  # type: ignore[arg-type]
    assert balanced(acc)
    res = invoke("parse", p, "-o", tmp_path / "o.parquet")
    assert res.exit_code == 0
    assert "cut short" in res.stdout
    res = invoke("parse", p, "-o", tmp_path / "o2.parquet", "--strict")
    assert_one_line_failure(res, "--strict", str(p), "truncated line")


def test_output_is_a_directory(tmp_path: Path) -> None:
    d = tmp_path / "outdir"
    d.mkdir()
    res = invoke("parse", BOOT, "-o", d)
    assert_one_line_failure(res, str(d))


def test_lost_events_marker_is_reported(tmp_path: Path) -> None:
    lines = BOOT.read_bytes().split(b"\n")
    lines.insert(50, b"CPU:2 [LOST 123 EVENTS]")  # line 51
    p = tmp_path / "lost.txt"
    p.write_bytes(b"\n".join(lines))
    acc, _ = parse_json(p, tmp_path=tmp_path)
    assert acc["lost_events"] == 123
    assert [(m["line"], m["cpu"], m["events"]) for m in acc["lost_markers"]] == [(51, 2, 123)]
    assert acc["events"] == independent_count(BOOT)["events"]
    assert balanced(acc)
    res = invoke("parse", p, "-o", tmp_path / "o.parquet")
    assert "LOST markers: 1 (123 events lost)" in res.stdout


def test_out_of_order_timestamps_are_reported(tmp_path: Path) -> None:
    lines = BOOT.read_bytes().split(b"\n")
    lines.insert(200, lines[400])  # a later event, again, before its time
    p = tmp_path / "ooo.txt"
    p.write_bytes(b"\n".join(lines))
    acc, _ = parse_json(p, tmp_path=tmp_path)
    assert acc["out_of_order_events"] >= 1
    res = invoke("parse", p, "-o", tmp_path / "o.parquet")
    assert "timestamps going back within a CPU" in res.stdout


# ----------------------------------------------------------------------------- info
def test_info_json_on_text_matches_independent_count() -> None:
    res = invoke("info", BOOT, "--json")
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    ref = independent_count(BOOT)
    assert s["events"] == ref["events"]
    assert s["allocations"]["requests"] == ref["events"]["mm_page_alloc"]  # type: ignore[index]
    assert s["allocations"]["pages"] == ref["alloc_pages"]
    assert s["allocations"]["bytes"] == 4096 * ref["alloc_pages"]  # type: ignore[operator]
    assert s["frees"]["requests"] == ref["events"]["mm_page_free"]  # type: ignore[index]
    assert s["time"]["events"] == sum(ref["events"].values())  # type: ignore[union-attr]
    top_comm, top_pages = ref["pages_by_comm"].most_common(1)[0]  # type: ignore[union-attr]
    assert s["top_comms"]["by_comm"][0]["comm"] == top_comm
    prefix = top_comm.encode() + b"-"
    text_lines = read_text(BOOT).split(b"\n")
    top_allocs = sum(1 for ln in text_lines if b" mm_page_alloc: " in ln and ln.lstrip().startswith(prefix))
    assert s["top_comms"]["by_comm"][0]["alloc_events"] == top_allocs
    assert s["input"] == {"path": str(BOOT), "parquet": False, "format": "ftrace"}
    assert s["accounting"]["lines_total"] == ref["lines"]


def test_info_json_on_parquet_equals_info_on_text(tmp_path: Path) -> None:
    _, out = parse_json(SMALL, tmp_path=tmp_path)
    res_pq = invoke("info", out, "--json")
    res_tx = invoke("info", SMALL, "--json")
    assert res_pq.exit_code == 0 and res_tx.exit_code == 0, res_pq.output + res_tx.output
    a, b = json.loads(res_pq.stdout), json.loads(res_tx.stdout)
    assert a["input"]["parquet"] is True and b["input"]["parquet"] is False
    assert a["events"] == b["events"] == independent_count(SMALL)["events"]
    for k in ("allocations", "frees", "order_migratetype", "top_comms", "gfp", "lock_sections", "time"):
        assert a[k] == b[k], k
    # the Parquet carries the parse accounting in its metadata
    assert a["accounting"]["lines_total"] == independent_count(SMALL)["lines"]
    assert a["accounting"]["other_events"] == {"tracing_mark_write": 2}


def test_info_human_output() -> None:
    res = invoke("info", BOOT)
    assert res.exit_code == 0, res.output
    ref = independent_count(BOOT)
    assert "SUMMARY (page allocator)" in res.stdout
    m = re.search(r"Total allocation requests\s*:\s*([\d,]+)", res.stdout)
    assert m and int(m.group(1).replace(",", "")) == ref["events"]["mm_page_alloc"]  # type: ignore[index]
    m = re.search(r"Total free requests\s*:\s*([\d,]+)", res.stdout)
    assert m and int(m.group(1).replace(",", "")) == ref["events"]["mm_page_free"]  # type: ignore[index]


def test_info_perf_text_with_format_override() -> None:
    res = invoke("info", PERF, "--format", "perf", "--json")
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    assert s["events"] == independent_count(PERF)["events"]
    assert s["input"]["format"] == "perf"


def test_info_on_a_foreign_parquet_fails_cleanly(tmp_path: Path) -> None:
    import pyarrow as pa

    p = tmp_path / "foreign.parquet"
    pq.write_table(pa.table({"x": [1, 2, 3]}), p)
    res = invoke("info", p)
    assert_one_line_failure(res, str(p), "not a pagereplay event table")


# ----------------------------------------------------------------------------- version
def test_version() -> None:
    res = invoke("version")
    assert res.exit_code == 0, res.output
    m = re.fullmatch(r"pagereplay (\S+) \(event schema (\S+)\)\n", res.stdout)
    assert m, res.stdout
    assert m.group(2) == SCHEMA_VERSION


def test_no_arguments_shows_help() -> None:
    res = invoke()
    assert "parse" in res.output and "info" in res.output and "version" in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)

