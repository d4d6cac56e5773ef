"""``pagereplay record`` wiring (replay/cli/record.py) on a typer app of its own."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import typer
from typer.testing import CliRunner

from replay.cli import record as record_cli


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    a = typer.Typer()
    record_cli.register(a)

    @a.command("other")
    def _other() -> None:  # a second command, so that typer keeps the "record" sub-command name
        pass

    return a


def test_script_to_stdout(app, tmp_path):
    r = CliRunner().invoke(app, ["record", "-o", "/out/cap", "--script", "--duration", "5", "--untraced",
                                 "--contention", "--", "sh", "-c", "echo hi"])
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("#!/bin/sh\n")
    assert "OUT=${PAGEREPLAY_OUT:-'/out/cap'}" in r.stdout and "set -- 'sh' '-c' 'echo hi'" in r.stdout
    p = tmp_path / "c.sh"
    p.write_text(r.stdout)
    sh = shutil.which("busybox")
    argv = [sh, "sh", "-n", str(p)] if sh else ["sh", "-n", str(p)]
    assert subprocess.run(argv, check=False).returncode == 0


def test_script_without_output_uses_default(app):
    r = CliRunner().invoke(app, ["record", "--script"])
    assert r.exit_code == 0 and "pagereplay-capture" in r.stdout


@pytest.mark.parametrize("args, msg", [
    ([], "give the capture folder with -o DIR"),
    (["-o", "x", "--duration", "0"], "--duration must be positive"),
    (["-o", "x", "--buffer-mb", "-1"], "--buffer-mb must be positive"),
])
def test_argument_errors(app, args, msg):
    r = CliRunner().invoke(app, ["record", *args])
    assert r.exit_code == 2 and msg in r.output


def test_not_root_is_one_line(app, tmp_path, monkeypatch):
    import parsers.capture.record as rec

    monkeypatch.setattr(rec.os, "geteuid", lambda: 1000)
    r = CliRunner().invoke(app, ["record", "-o", str(tmp_path / "out"), "--duration", "1"])
    assert r.exit_code == 1
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "must run as root" in lines[0]


def test_record_against_a_tracefs(app, tmp_path):
    from tests.parsers.fake_tracefs import make_tracefs

    t = make_tracefs(tmp_path / "t", kmem=("mm_page_free",))
    r = CliRunner().invoke(app, ["record", "-o", str(tmp_path / "out"), "--tracefs", str(t), "--duration", "1"])
    assert r.exit_code == 1 and "kmem:mm_page_alloc is not available" in r.output
    assert not (tmp_path / "out").exists()


def test_no_tracefs_is_one_line(app, tmp_path):
    (tmp_path / "notrace").mkdir()
    r = CliRunner().invoke(app, ["record", "-o", str(tmp_path / "out"), "--tracefs", str(tmp_path / "notrace"),
                                 "--duration", "1"])
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert r.exit_code == 1 and len(lines) == 1, r.output
    assert f"{tmp_path / 'notrace'}: not a tracefs" in lines[0]
    assert not (tmp_path / "out").exists() and [p.name for p in tmp_path.iterdir()] == ["notrace"]


# ---------------------------------------------------------------------- parse | info | replay DIR
import json

import pyarrow.parquet as pq

from parsers.capture.folder import read_capture_folder
from tests.conftest import require_trace_file, require_traces


def _main(args: list[str]):
    from replay.cli import app as main_app

    r = CliRunner().invoke(main_app, args)
    assert r.exit_code == 0, r.output
    return r


def _json(args: list[str]) -> dict:
    return json.loads(_main([*args, "--json"]).stdout)


def test_every_shared_folder_reads_as_a_capture_folder():
    root = require_traces()
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    assert folders
    for d in folders:
        f = read_capture_folder(d)
        assert f.trace.is_file() and f.trace.parent == d
        uname = (d / "uname.txt").read_text().split()
        assert f.kernel_release == uname[2], d
        assert f.kernel_version and f.kernel_release.startswith(f.kernel_version.rsplit(".", 1)[0]), d
        if (d / "per_cpu_stats.txt").exists():
            assert f.overruns == 0 and len(f.overruns_per_cpu) == 4, d
        else:  # trace-cmd / perf captures record no ring-buffer stats: "not recorded"
            assert f.overruns is None and f.overruns_per_cpu == (), d
        if d.name.endswith("-boot"):
            assert f.after_is_boot and f.proc_before is None and f.proc_after.name == "proc_after_boot"
        else:
            assert f.proc_before.name == "proc_before" and f.proc_after.name == "proc_after"


def test_parse_and_info_read_a_shared_folder(tmp_path):
    d = require_trace_file("debian13-6.18-small")
    out = tmp_path / "e.parquet"
    acc = _json(["parse", str(d), "-o", str(out)])
    assert acc["files"][0]["file"] == str(d / "trace.txt.zst")
    md = {k.decode(): v.decode() for k, v in pq.read_metadata(out).metadata.items()}
    # what the kernel-profile picker reads: uname -r of the traced kernel, and its upstream version
    assert md["pagereplay.kernel_release"] == "6.18.15+deb13-amd64"
    assert md["pagereplay.kernel_upstream_version"] == "6.18.15"
    assert md["pagereplay.kernel_version"] == "6.18.15+deb13-amd64"
    for src in (str(d), str(out)):  # the folder, and the Parquet parsed from it
        s = _json(["info", src])
        cap = s["capture"]
        assert cap["overruns"] == 0 and cap["overruns_per_cpu"] == {"0": 0, "1": 0, "2": 0, "3": 0}
        assert cap["kernel_release"] == "6.18.15+deb13-amd64" and cap["folders"] == [str(d)]
        assert s["events"]["mm_page_alloc"] == acc["events"]["mm_page_alloc"]
    text = _main(["info", str(d)]).stdout
    assert "capture: kernel 6.18.15+deb13-amd64 (6.18.15); ring-buffer overruns 0" in text


def test_info_counts_contention_per_flags_on_the_contention_folder():
    d = require_trace_file("debian13-6.18-contention")
    s = _json(["info", str(d)])
    lc = s["lock_contention"]
    assert lc["begin"] > 0 and lc["end"] > 0 and lc["locks"] > 0
    assert sum(lc["by_flags"].values()) == lc["begin"] == s["accounting"]["events"]["contention_begin"]
    assert set(lc["by_flags"]) <= {"SPIN", "READ", "WRITE", "SPIN|READ", "SPIN|WRITE", "SPIN|MUTEX", "MUTEX"}
    assert "contention_begin" not in s["accounting"]["other_events"]


def _replay(src: str, out, *extra: str) -> dict:
    return _json(["replay", src, "-o", str(out), *extra])


_SAME = ("events_replayed", "anomalies", "anomalies_total", "invariants_ok", "end_snapshot", "initial_state",
         "lock_sections", "zones")


def test_replay_a_shared_folder_as_it_is(tmp_path):
    """`pagereplay replay DIR` = the trace with --snapshot proc_before --end-snapshot proc_after;
    explicit options still win."""
    d = require_trace_file("debian13-6.18-small")
    s = _replay(str(d), tmp_path / "a")
    ref = _replay(str(d / "trace.txt.zst"), tmp_path / "b", "--snapshot", str(d / "proc_before"),
                  "--end-snapshot", str(d / "proc_after"))
    assert s["capture"]["overruns"] == 0 and s["capture"]["kernel_release"] == "6.18.15+deb13-amd64"
    assert "capture" not in ref and "events_not_replayed" not in s
    for k in _SAME:
        assert s[k] == ref[k], k
    assert (pq.read_table(tmp_path / "a" / "events.parquet").equals(pq.read_table(tmp_path / "b" / "events.parquet")))
    # an explicit --end-snapshot replaces the folder's
    o = _replay(str(d), tmp_path / "c", "--end-snapshot", str(d / "proc_before"))
    assert o["end_snapshot"] != s["end_snapshot"] and o["events_replayed"] == s["events_replayed"]


def _recorded_folder(tmp_path, trace_text: bytes | None = None):
    from parsers.capture.record import RecordOptions, record
    from tests.parsers.fake_tracefs import KernelLikeTracefs, make_proc, make_tracefs

    t = make_tracefs(tmp_path / "tracefs")
    fs = KernelLikeTracefs(t, trace_text=trace_text)
    out = tmp_path / "cap"
    record(RecordOptions(output=out, duration=0.05, tracefs=fs, proc_root=make_proc(tmp_path / "proc"),
                         probe_seconds=0.05, untraced=True, contention=True))
    return out, fs


def test_a_recorded_folder_parses_and_replays(tmp_path):
    """A folder `record --untraced` wrote (fake tracefs, the sample 6.1 trace and two kprobe lines):
    parse, info and replay take it as it is; the kprobe lines are rows, not other events."""
    d, _ = _recorded_folder(tmp_path)
    acc = _json(["parse", str(d), "-o", str(tmp_path / "e.parquet")])
    assert acc["lines_malformed"] == 0 and not {"isolate_free_page", "isolate_free_page_ret"} & set(acc["other_events"])
    assert acc["events"]["isolate_free_page"] == 1 and acc["events"]["isolate_free_page_ret"] == 1
    s = _json(["info", str(d)])
    assert s["untraced"] == {"isolate_free_page": 1, "isolate_free_page_ret": 1}
    assert s["capture"]["kernel_release"] == "6.1.0-57-amd64" and s["capture"]["kernel_upstream_version"] == "6.1.192"
    r = _replay(str(d), tmp_path / "r")
    # every row replayed or named as not replayed (whether the model applies the untraced rows is
    # replay/model's business, not the capture's)
    nr = r.get("events_not_replayed", {})
    assert r["events_replayed"] + sum(nr.values()) == acc["events_total"] and set(nr) <= set(s["untraced"])
    assert r["capture"]["overruns"] == 0 and "end_snapshot" in r  # proc_after was picked up
    text = _main(["replay", str(d), "-o", str(tmp_path / "r2")]).stdout
    assert not nr or ("not replayed" in text and all(f"{e} {n}" in text for e, n in nr.items()))


def test_overruns_are_shown_per_cpu_by_info_and_replay(tmp_path):
    """A folder whose stats say CPU 1 lost events: info and replay report the count (per CPU) and
    the folder is still parsed and replayed."""
    from parsers.capture.record import RecordOptions, record
    from tests.parsers.fake_tracefs import KernelLikeTracefs, make_proc, make_tracefs

    t = make_tracefs(tmp_path / "tracefs")
    d = tmp_path / "cap"
    record(RecordOptions(output=d, duration=0.05, tracefs=KernelLikeTracefs(t, lost={1: 1234}),
                         proc_root=make_proc(tmp_path / "proc"), probe_seconds=0.05))
    want = {"overruns": 1234, "overruns_per_cpu": {"0": 0, "1": 1234}}
    s = _json(["info", str(d)])
    assert {k: s["capture"][k] for k in want} == want
    assert "ring-buffer overruns 1,234 (cpu0 0, cpu1 1,234)" in _main(["info", str(d)]).stdout
    r = _replay(str(d), tmp_path / "r")
    assert {k: r["capture"][k] for k in want} == want
    text = _main(["replay", str(d), "-o", str(tmp_path / "r2")]).stdout
    assert "ring-buffer overruns 1,234 (events lost: the trace has holes)" in text


def test_contention_rows_pass_the_model_by(tmp_path):
    """Lock contention rows change nothing in a replay: the same trace without them replays to the
    same summary (seq numbers aside, which count every row)."""
    from tests.parsers.fake_tracefs import sample_trace_text

    base = sample_trace_text()
    lines = base.splitlines(keepends=True)
    extra = []
    for i, ln in enumerate(lines):
        extra.append(ln)
        if i % 997 == 500 and b": mm_page_" in ln:
            head = ln.split(b": mm_page_")[0]
            extra.append(head + b": contention_begin: 00000000a4fc5a6a (flags=SPIN)\n")
            extra.append(head + b": contention_end: 00000000a4fc5a6a (ret=0)\n")
    with_lock, _ = _recorded_folder(tmp_path / "a", b"".join(extra))
    plain, _ = _recorded_folder(tmp_path / "b", base)
    s = _replay(str(with_lock), tmp_path / "ra")
    ref = _replay(str(plain), tmp_path / "rb")
    n = (len(extra) - len(lines)) // 2
    assert n > 0 and s["events_not_replayed"] == {"contention_begin": n, "contention_end": n}
    s["end_snapshot"].pop("snapshots"), ref["end_snapshot"].pop("snapshots")  # (the two folders' paths)
    for k in _SAME:
        assert s[k] == ref[k], k
    a, b = (pq.read_table(tmp_path / r / "events.parquet") for r in ("ra", "rb"))
    assert a.drop_columns(["seq"]).equals(b.drop_columns(["seq"]))
