"""Bad input through the CLI (issue 20): every class ends in exit status != 0, exactly one line
``error: ...`` naming the input (file and line, table, key or option) and no traceback.

Every bad input is generated here from a small well-formed trace and copies of the bundled
snapshot; a mutation per class (a field out of range, a snapshot file cut short, a NaN in a
policy...), not a fixed list of files.  Outputs, interrupted writes and impossible pfns are in
``test_bad_input_outputs.py``.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from typer.testing import CliRunner

from tests.conftest import SAMPLES

runner = CliRunner()
SNAP = SAMPLES / "debian12-6.1-small" / "proc_before"
HEADER = """# tracer: nop
#
# entries-in-buffer/entries-written: 4/4   #P:4
#
#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION
#              | |         |   |||||     |         |
"""
ALLOC = ("          <idle>-0       [000] d..1.     0.548825: mm_page_alloc: page=00000000f959ab0b pfn=0x1011fe "
         "order=1 migratetype=0 gfp_flags=__GFP_NOWARN|__GFP_NORETRY|__GFP_COMP")
FREE = "            bash-412     [001] d..1.     0.600100: mm_page_free: page=00000000f959ab0b pfn=0x1011fe order=1"


def cli(*args: object):  # type: ignore[no-untyped-def]
    from replay.cli import app

    return runner.invoke(app, [str(a) for a in args])


def one_line_error(r, *names: object, code: int | None = None) -> str:  # type: ignore[no-untyped-def]
    """The single ``error:`` line of a failed command, checked to name each of ``names``."""
    out = r.output
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert r.exit_code != 0, out
    if code is not None:
        assert r.exit_code == code, out
    assert "Traceback" not in out and (r.exception is None or isinstance(r.exception, SystemExit)), out
    assert len(lines) == 1 and lines[0].startswith("error: "), out
    for n in names:
        assert str(n) in lines[0], (n, lines[0])
    assert "internal error" not in lines[0], lines[0]
    return lines[0]


def trace(tmp_path: Path, *lines: str, name: str = "t.txt") -> Path:
    p = tmp_path / name
    p.write_text(HEADER + "\n".join(lines) + "\n")
    return p


@pytest.fixture
def good(tmp_path: Path) -> Path:
    return trace(tmp_path, ALLOC, FREE, name="good.txt")


# ------------------------------------------------------------------ parsed fields out of range
FIELD_CASES = {  # field: (the line as the text says it, the reason the scanner gives)
    "order=-1": (ALLOC.replace("order=1", "order=-1"), "order"),
    "order=11": (ALLOC.replace("order=1", "order=11"), "order"),
    "order=300": (ALLOC.replace("order=1", "order=300"), "order"),
    "migratetype=99": (ALLOC.replace("migratetype=0", "migratetype=99"), "migratetype"),
    "pid 2^33": (ALLOC.replace("<idle>-0 ", "<idle>-8589934592 "), "pid"),
    "pid 99999999999": (ALLOC.replace("<idle>-0 ", "<idle>-99999999999 "), "pid"),
    "timestamp past int64 ns": (ALLOC.replace("0.548825", "99999999999.999999"), "timestamp"),
    "pfn negative": (ALLOC.replace("pfn=0x1011fe", "pfn=-5"), ""),
    "pfn past 64 bits": (ALLOC.replace("pfn=0x1011fe", "pfn=0x1ffffffffffffffff"), ""),
    "cpu 2^32": (ALLOC.replace("[000]", "[4294967296]"), ""),
}


@pytest.mark.parametrize("case", sorted(FIELD_CASES))
def test_field_out_of_range_is_malformed_never_changed(tmp_path: Path, case: str) -> None:
    bad, reason = FIELD_CASES[case]
    p = trace(tmp_path, FREE, bad)
    line_no = HEADER.count("\n") + 2
    msg = one_line_error(cli("parse", p, "-o", tmp_path / "s.parquet", "--strict"), f"{p}:{line_no}", code=1)
    assert reason in msg
    # without --strict: the line is counted malformed with its reason, and its value is never stored
    r = cli("parse", p, "-o", tmp_path / "e.parquet", "--json")
    assert r.exit_code == 0, r.output
    acc = json.loads(r.stdout)
    assert acc["lines_malformed"] == 1 and acc["lines_parsed"] == 1
    assert acc["malformed_examples"][0]["line"] == line_no
    t = pq.read_table(tmp_path / "e.parquet")
    assert t.num_rows == 1 and t.column("event").to_pylist() == ["mm_page_free"]


# ------------------------------------------------------------------ snapshot files
def _sub(pattern: str, repl: str, count: int = 1):  # type: ignore[no-untyped-def]
    return lambda t: re.sub(pattern, repl, t, count=count, flags=re.MULTILINE)


SNAPSHOT_CASES = {  # (file, mutation, what the message says besides the file)
    "zoneinfo negative present": ("zoneinfo", _sub(r"present\s+\d+", "present  -5"), "negative"),
    "zoneinfo present > spanned": ("zoneinfo", _sub(r"spanned\s+\d+", "spanned  1"), "exceeds spanned"),
    "zoneinfo managed > present": ("zoneinfo", _sub(r"managed\s+\d+", "managed  99999999999"), "exceeds present"),
    "zoneinfo beyond 52 bits": ("zoneinfo", _sub(r"(spanned\s+)\d+", r"\g<1>99999999999999999"), "52-bit"),
    "zoneinfo negative pcp count": ("zoneinfo", _sub(r"count:\s+\d+", "count: -4"), "negative"),
    "zoneinfo cut mid-line": ("zoneinfo", lambda t: t[: t.index("spanned") + 9], "cut short"),
    "zoneinfo cut at a third": ("zoneinfo", lambda t: t[: len(t) // 3], ""),
    "zoneinfo garbage": ("zoneinfo", lambda t: t.replace("\n", "\n\x00\x00garbage\n", 3), ":"),
    "zoneinfo empty": ("zoneinfo", lambda t: "", "empty"),
    "buddyinfo cut": ("buddyinfo", lambda t: t[: len(t) // 2], ""),
    "buddyinfo negative": ("buddyinfo", lambda t: re.sub(r"(zone\s+\S+\s+)\d+", r"\g<1>-1", t, count=1), "count"),
    "buddyinfo empty": ("buddyinfo", lambda t: "", "empty"),
    "buddyinfo blank lines": ("buddyinfo", lambda t: "\n\n", "empty"),
    "pagetypeinfo cut": ("pagetypeinfo", lambda t: t[: len(t) // 2], ""),
    "pagetypeinfo headers only": ("pagetypeinfo", lambda t: "Page block order: 9\nPages per block:  512\n", "no 'Free"),
    "pagetypeinfo garbage": ("pagetypeinfo", lambda t: "hello world\n" + t, ":1:"),
    "meminfo cut mid-number": ("meminfo", lambda t: t[: t.index("MemFree:") + 14], "cut short"),
    "meminfo no MemTotal": ("meminfo", lambda t: "".join(t.splitlines(True)[1:]), "MemTotal"),
    "meminfo garbage": ("meminfo", lambda t: "MemTotal: lots kB\n" + t, ":1:"),
    "meminfo empty": ("meminfo", lambda t: "", "empty"),
    "vmstat garbage": ("vmstat", lambda t: "nr_free_pages banana\n" + t, ":1:"),
    "vmstat cut mid-line": ("vmstat", lambda t: t[: t.index("nr_zone_active_file") + 12], "cut short"),
    "vmstat empty": ("vmstat", lambda t: "", "empty"),
}


@pytest.mark.parametrize("case", sorted(SNAPSHOT_CASES))
def test_damaged_snapshot_file(tmp_path: Path, good: Path, case: str) -> None:
    fname, mutate, says = SNAPSHOT_CASES[case]
    snap = tmp_path / "proc_before"
    shutil.copytree(SNAP, snap)
    f = snap / fname
    f.write_text(mutate(f.read_text()))
    for opt in ("--snapshot", "--end-snapshot"):
        args = ["--snapshot", SNAP] if opt == "--end-snapshot" else []
        msg = one_line_error(cli("replay", good, *args, opt, snap, "-o", tmp_path / f"r{opt}"), f, code=1)
        assert says in msg


def test_snapshot_not_utf8_or_missing(tmp_path: Path, good: Path) -> None:
    snap = tmp_path / "s"
    shutil.copytree(SNAP, snap)
    (snap / "zoneinfo").write_bytes(b"\xff\xfe\x00garbage")
    one_line_error(cli("replay", good, "--snapshot", snap, "-o", tmp_path / "r"), snap / "zoneinfo", "cannot read")
    (snap / "zoneinfo").unlink()
    one_line_error(cli("replay", good, "--snapshot", snap, "-o", tmp_path / "r"), snap / "zoneinfo", "missing")
    one_line_error(cli("replay", good, "--snapshot", good, "-o", tmp_path / "r"), good, "not a snapshot folder")


# ------------------------------------------------------------------ TOML policies and cost presets
POLICY_CASES = {  # body of [policy.x]: (the key named, what the message says)
    'base = "background"\nbackground_cpu_budget = nan': ("background_cpu_budget", "finite"),
    'base = "background"\nbackground_cpu_budget = inf': ("background_cpu_budget", "finite"),
    'base = "background"\nbackground_rate_bytes_s = inf': ("background_rate_bytes_s", "finite"),
    'base = "background"\nbackground_rate_bytes_s = 1e300': ("background_rate_bytes_s", "<="),
    'base = "background"\nbackground_rate_bytes_s = -1.0': ("background_rate_bytes_s", ">= 0"),
    'base = "background"\ninit_threads = -1': ("init_threads", ">= 0"),
    'base = "list-6.6"\nunit_byte = "2M"': ("unit_byte", "did you mean 'unit_bytes'?"),
    'base = "list-6.6"\nbackground_budget = 0.5': ("background_budget", "did you mean 'background_cpu_budget'?"),
    'base = "list-6.6"\nblock_order = "ten"': ("block_order", "expected an integer"),
    'base = "list-6.6"\nunit_bytes = "2Q"': ("unit_bytes", "expected a size"),
    'base = "list-6.7"': ("base", "not a preset"),
}


@pytest.mark.parametrize("body", sorted(POLICY_CASES))
def test_policy_toml(tmp_path: Path, good: Path, body: str) -> None:
    key, says = POLICY_CASES[body]
    f = tmp_path / "pol.toml"
    f.write_text(f"[policy.x]\n{body}\n")
    for r in (cli("policies", "--file", f),
              cli("replay", good, "-o", tmp_path / "r", "--policies-file", f, "--policy", "x")):
        msg = one_line_error(r, f, "[policy.x]", f"'{key}'", says, code=1)  # the brackets survive: no markup
        assert msg.count("[policy.x]") == 1


COST_CASES = {
    "cpu_ghz = nan": ("cpu_ghz", "finite"),
    "tdcall_cycles = inf": ("tdcall_cycles", "finite"),
    "tdcall_cycles = 1e308": ("tdcall_cycles", "<= 1e+12"),
    "zero_gib_s = 1e-300": ("zero_gib_s", "> 0"),
    "cpu_ghz = 0": ("cpu_ghz", "> 0"),
    "list_op_ns = -1": ("list_op_ns", ">= 0"),
    "cpu_gz = 2.6": ("cpu_gz", "did you mean 'cpu_ghz'?"),
    'cpu_ghz = "fast"': ("cpu_ghz", "expected a number"),
    "psc_max_entries = 300": ("psc_max_entries", "1..253"),
}


@pytest.mark.parametrize("line", sorted(COST_CASES))
def test_cost_toml(tmp_path: Path, good: Path, line: str) -> None:
    key, says = COST_CASES[line]
    f = tmp_path / "costs.toml"
    f.write_text(f'[costs.x]\nbase = "tdx-4k"\n{line}\n')
    for r in (cli("costs", "--file", f), cli("replay", good, "-o", tmp_path / "r", "--costs", f, "--policy", "list-6.6")):
        one_line_error(r, f, "[costs.x]", f"'{key}'", says, code=1)


def test_toml_not_toml(tmp_path: Path) -> None:
    f = tmp_path / "p.toml"
    f.write_text("[policy.x\n")
    one_line_error(cli("policies", "--file", f), f, "not valid TOML")
    one_line_error(cli("costs", "--file", tmp_path / "none.toml"), tmp_path / "none.toml", "not found")


# ------------------------------------------------------------------ options
@pytest.mark.parametrize("args, names", [
    (["--cpus", "0"], ["--cpus", "0", ">= 1"]),
    (["--cpus", "-3"], ["--cpus", "-3"]),
    (["--guest-size", "4Q"], ["--guest-size", "'4Q'"]),
    (["--guest-size", "-4G"], ["--guest-size"]),
    (["--guest-size", "0"], ["--guest-size", "64 MiB"]),
    (["--mode", "bogus"], ["--mode", "bogus", "pagereplay replay --help"]),
    (["--workers", "0"], ["--workers", "0"]),
    (["--check-every", "-1"], ["--check-every"]),
    (["--policy", "nope"], ["--policy", "nope"]),
    (["--costs", "tdx-5k"], ["tdx-5k"]),
    (["--kernel", "bogus"], ["bogus"]),
])
def test_replay_options(tmp_path: Path, good: Path, args: list[str], names: list[str]) -> None:
    one_line_error(cli("replay", good, "-o", tmp_path / "r", *args), *names)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("args, names", [
    (["synth", "churn", "--events", "-5"], ["events", "-5"]),
    (["synth", "churn", "--memory", "4Q"], ["--memory", "4Q"]),
    (["synth", "churn", "--cpus", "0"], ["cpus"]),
    (["synth", "churn", "--duration", "nan"], ["duration", "nan"]),
    (["synth", "churn", "-p", "tasks=nan"], ["tasks"]),
    (["synth", "bogus"], ["bogus"]),
    (["record", "--script", "--duration", "nan"], ["--duration", "nan"]),
    (["record", "--script", "--duration", "0"], ["--duration"]),
    (["record", "--script", "--buffer-mb", "0"], ["--buffer-mb"]),
    (["parse", "--format", "bogus", "x.txt"], ["--format", "bogus"]),
    (["sweep", "x.txt", "-o", "sw", "-j", "0"], ["--jobs"]),
])
def test_other_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], names: list[str]) -> None:
    monkeypatch.chdir(tmp_path)
    one_line_error(cli(*args, *(["-o", "s.parquet"] if args[0] == "synth" else [])), *names)


# ------------------------------------------------------------------ Parquet inputs
@pytest.fixture
def table(tmp_path: Path, good: Path) -> Path:
    out = tmp_path / "good.parquet"
    assert cli("parse", good, "-o", out).exit_code == 0
    return out


@pytest.mark.parametrize("column, value", [("order", -1), ("order", 11), ("pfn", -5), ("cpu", 10**6), ("pid", -7),
                                           ("migratetype", 77), ("ts_ns", -1)])
@pytest.mark.parametrize("command", ["info", "replay"])
def test_parquet_value_out_of_range(tmp_path: Path, table: Path, column: str, value: int, command: str) -> None:
    t = pq.read_table(table)
    vals = t.column(column).to_pylist()
    vals[0] = value
    bad = tmp_path / f"bad-{column}.parquet"
    t = t.set_column(t.column_names.index(column), t.schema.field(column), pa.array(vals, t.schema.field(column).type))
    pq.write_table(t, bad)
    extra = ["-o", tmp_path / "r"] if command == "replay" else []
    one_line_error(cli(command, bad, *extra), bad, f"'{column}'", str(value), code=1)


@pytest.mark.parametrize("command", ["info", "replay"])
def test_parquet_order_unknown_on_lock_rows(tmp_path: Path, command: str) -> None:
    """``order`` -1 is what the parser stores on lock contention rows: its own table is accepted,
    while -1 on a kmem row (the test above) is refused."""
    begin = "         busybox-1922    [002] d..2.     0.549000: contention_begin: 00000000a4fc5a6a (flags=SPIN)"
    end = "         busybox-1922    [002] d..2.     0.549100: contention_end: 00000000a4fc5a6a (ret=0)"
    out = tmp_path / "lock.parquet"
    assert cli("parse", trace(tmp_path, ALLOC, begin, end, FREE), "-o", out).exit_code == 0
    orders = dict(zip(pq.read_table(out).column("event").to_pylist(), pq.read_table(out).column("order").to_pylist()))
    assert orders["contention_begin"] == -1 and orders["mm_page_alloc"] == 1
    extra = ["-o", tmp_path / "r"] if command == "replay" else []
    r = cli(command, out, *extra)
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("command", ["info", "replay"])
def test_parquet_damaged_or_foreign(tmp_path: Path, table: Path, command: str) -> None:
    extra = ["-o", tmp_path / "r"] if command == "replay" else []
    raw = table.read_bytes()
    cases = {"cut.parquet": (raw[: len(raw) // 2], "unreadable"), "garbage.parquet": (b"PAR1" + b"\0" * 100, "unreadable"),
             "flipped.parquet": (raw[:-12] + bytes(b ^ 0xFF for b in raw[-12:-8]) + raw[-8:], "")}
    for name, (data, says) in cases.items():
        (tmp_path / name).write_bytes(data)
        one_line_error(cli(command, tmp_path / name, *extra), tmp_path / name, says)
    pq.write_table(pa.table({"a": [1, 2]}), tmp_path / "foreign.parquet")
    one_line_error(cli(command, tmp_path / "foreign.parquet", *extra), tmp_path / "foreign.parquet",
                   "not a pagereplay event table", "missing column 'ts_ns'")
    t = pq.read_table(table)
    wrong = t.set_column(t.column_names.index("order"), "order", t.column("order").cast(pa.string()))
    pq.write_table(wrong, tmp_path / "wrongtype.parquet")
    one_line_error(cli(command, tmp_path / "wrongtype.parquet", *extra), tmp_path / "wrongtype.parquet", "order")


# ------------------------------------------------------------------ compressed text cut short, garbage
def test_compressed_cut_short(tmp_path: Path) -> None:
    text = (HEADER + "\n".join([ALLOC] * 2000) + "\n").encode()
    z = zstandard.ZstdCompressor().compress(text)
    cut = tmp_path / "cut.txt.zst"
    cut.write_bytes(z[: len(z) // 2])
    for cmd in (["info", cut], ["parse", cut, "-o", tmp_path / "o.parquet"]):
        one_line_error(cli(*cmd), cut, "cut short")
    nul = tmp_path / "nul.txt"
    nul.write_bytes(b"\0" * 4096)
    one_line_error(cli("info", nul), nul, "binary data")


# ------------------------------------------------------------------ results folders (report, chart, results, compare)
@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("res")
    src = d / "t.txt"
    src.write_text(HEADER + ALLOC + "\n" + FREE + "\n")
    r = cli("replay", src, "-o", d / "results", "--policy", "list-6.6")
    assert r.exit_code == 0, r.output
    return d / "results"


def _damaged(results: Path, tmp: Path, table: str, how: str) -> tuple[Path, Path]:
    d = tmp / f"{table}-{how}"
    shutil.copytree(results, d)
    f = d / f"{table}.parquet"
    if how == "cut":
        f.write_bytes(f.read_bytes()[:300])
    elif how == "empty":
        f.write_bytes(b"")
    elif how == "foreign":
        pq.write_table(pa.table({"policy": ["none"]}), f)
    else:
        f.unlink()
    return d, f


RESULTS_COMMANDS = {
    "report": lambda d, t: ["report", d, "-o", t / "rep", "--no-images"],
    "chart": lambda d, t: ["chart", d, "policy-comparison", "-o", t / "c.html"],
    "results": lambda d, t: ["results", d, "--describe"],
    "results csv": lambda d, t: ["results", d, "-f", "csv", "-o", t / "csv"],
    "compare": lambda d, t: ["compare", d],
}


@pytest.mark.parametrize("table, how", [("summary", "cut"), ("summary", "empty"), ("summary", "foreign"),
                                        ("summary", "missing"), ("events", "cut"), ("lock_sections", "foreign"),
                                        ("anomalies", "empty"), ("timeseries", "cut")])
@pytest.mark.parametrize("command", sorted(RESULTS_COMMANDS))
def test_damaged_results_folder(tmp_path: Path, results: Path, table: str, how: str, command: str) -> None:
    d, f = _damaged(results, tmp_path, table, how)
    one_line_error(cli(*RESULTS_COMMANDS[command](d, tmp_path)), f, code=1)


def test_results_folder_whole_passes(tmp_path: Path, results: Path) -> None:
    for command in sorted(RESULTS_COMMANDS):
        r = cli(*RESULTS_COMMANDS[command](results, tmp_path / command))
        assert r.exit_code == 0, (command, r.output)


# ------------------------------------------------------------------ sweep, demo, compare: their own inputs
def test_sweep_demo_compare_inputs(tmp_path: Path, good: Path, results: Path) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text("[sweep]\nbogus = 1\n")
    one_line_error(cli("sweep", good, "-o", tmp_path / "sw", "--spec", spec, "-q"), spec, "unknown key")
    one_line_error(cli("sweep", good, "-o", tmp_path / "sw", "--policy", "nope", "-q"), "nope", "did you mean")
    one_line_error(cli("sweep", good, "-o", tmp_path / "sw", "--axis", "bogus=1,2", "-q"), "--axis", "bogus")
    one_line_error(cli("sweep", good, "-o", tmp_path / "sw", "--axis", "vcpus=0", "-q"), "vcpus")
    one_line_error(cli("demo", "-o", tmp_path / "d", "--trace", tmp_path / "nope.txt", "--no-images"),
                   tmp_path / "nope.txt")
    one_line_error(cli("compare", results, results, results), "one or two", code=2)
    one_line_error(cli("compare", tmp_path / "nope"), tmp_path / "nope", code=1)


def test_help_keeps_square_brackets() -> None:
    """User-facing text with [KEY.NAME] is never read as rich markup (it used to vanish)."""
    for args, text in ((["policies", "--help"], "[policy.NAME]"), (["replay", "--help"], "[policy.NAME]"),
                       (["costs", "--help"], "[costs.NAME]")):
        from replay.cli import app

        r = runner.invoke(app, args, env={"COLUMNS": "200"})
        assert r.exit_code == 0 and text in r.output, (args, r.output)
