"""tracefs helpers: clock and buffer parsing, stats, finding tracefs, recording and undoing changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from parsers.capture.errors import TracefsError
from parsers.capture.tracefs import (
    Changes,
    Tracefs,
    choose_clock,
    find_tracefs,
    lost_events,
    parse_buffer_size_kb,
    parse_cpu_stats,
    parse_trace_clock,
)
from tests.parsers.fake_tracefs import KernelLikeTracefs, make_tracefs, tree_state


def test_parse_trace_clock():
    assert parse_trace_clock("[local] global counter uptime perf mono mono_raw boot x86-tsc\n") == (
        "local", ["local", "global", "counter", "uptime", "perf", "mono", "mono_raw", "boot", "x86-tsc"])
    assert parse_trace_clock("local [global] counter")[0] == "global"
    assert parse_trace_clock("local global")[0] is None


def test_choose_clock_prefers_global_then_falls_back():
    assert choose_clock(["local", "global", "mono"]) == "global"
    assert choose_clock(["local", "mono", "boot"]) == "mono"
    assert choose_clock(["local", "counter"]) == "counter"
    assert choose_clock(["local", "perf"]) is None


def test_parse_buffer_size_kb():
    assert parse_buffer_size_kb("1408\n") == (1408, None)
    assert parse_buffer_size_kb("7 (expanded: 1408)\n") == (7, 1408)
    assert parse_buffer_size_kb("X\n") == (None, None)


def test_parse_cpu_stats_and_lost_events():
    s = parse_cpu_stats("entries: 10\noverrun: 3\ncommit overrun: 1\nbytes: 400\noldest event ts:  7.830146\n"
                        "now ts:  8.434767\ndropped events: 2\nread events: 5\n")
    assert s["entries"] == 10 and s["overrun"] == 3 and s["commit_overrun"] == 1 and s["bytes"] == 400
    assert s["oldest_event_ts"] == pytest.approx(7.830146) and s["read_events"] == 5
    assert lost_events(s) == 6


def test_find_tracefs_explicit_and_candidates(tmp_path):
    t = make_tracefs(tmp_path / "t")
    assert find_tracefs(t).tracefs.root == t
    with pytest.raises(TracefsError, match="not a tracefs"):
        find_tracefs(tmp_path)
    f = find_tracefs(candidates=[str(tmp_path / "none"), str(t)], mount=False)
    assert f.tracefs.root == t and f.mounted is None
    with pytest.raises(TracefsError, match="no tracefs found"):
        find_tracefs(candidates=[str(tmp_path / "none")], mount=False)


def test_find_tracefs_mounts_when_absent(tmp_path):
    target = tmp_path / "sys" / "kernel" / "tracing"
    target.mkdir(parents=True)
    calls = []

    def fake_mount(argv):
        calls.append(argv)
        make_tracefs(Path(argv[-1]))
        return 0

    f = find_tracefs(candidates=[str(target), str(tmp_path / "sys/kernel/debug/tracing")],
                     mounts_file=str(tmp_path / "mounts"), run=fake_mount)
    assert f.mounted == target and f.how == "mounted"
    assert calls == [["mount", "-t", "tracefs", "nodev", str(target)]]


def test_find_tracefs_says_how_to_mount(tmp_path):
    with pytest.raises(TracefsError, match="mount -t tracefs nodev /sys/kernel/tracing"):
        find_tracefs(candidates=[str(tmp_path / "a"), str(tmp_path / "b/tracing")],
                     mounts_file=str(tmp_path / "mounts"), run=lambda argv: 1)


def test_changes_restore_exactly(tmp_path):
    t = make_tracefs(tmp_path / "t")
    before = tree_state(t)
    fs = KernelLikeTracefs(t)
    ch = Changes(fs)
    ch.set("tracing_on", "0")
    ch.set_clock("global")
    ch.set_buffer_kb(8192)
    ch.set("events/kmem/mm_page_alloc/enable", "1")
    ch.add_kprobe("p:pagereplay/x __isolate_free_page page=%di:x64", "pagereplay", "x")
    ch.set("events/pagereplay/x/enable", "1")
    assert fs.clock()[0] == "global" and fs.buffer_sizes_kb() == {0: 8192, 1: 8192}
    assert tree_state(t) != before
    assert ch.restore() == []
    assert tree_state(t) == before


def test_changes_restore_per_cpu_sizes_and_never_raises(tmp_path):
    t = make_tracefs(tmp_path / "t")
    fs = KernelLikeTracefs(t)
    fs.write("per_cpu/cpu1/buffer_size_kb", "2048")
    before = tree_state(t)
    ch = Changes(fs)
    ch.set_buffer_kb(4096)
    ch.set("tracing_on", "0")
    (t / "tracing_on").unlink()  # something removed the file: restore goes on with the others
    problems = ch.restore()
    assert len(problems) == 1 and "tracing_on" in problems[0]
    state = tree_state(t)
    assert state["per_cpu/cpu0/buffer_size_kb"] == before["per_cpu/cpu0/buffer_size_kb"]
    assert state["per_cpu/cpu1/buffer_size_kb"] == before["per_cpu/cpu1/buffer_size_kb"]


def test_refused_kprobe_is_not_logged(tmp_path):
    t = make_tracefs(tmp_path / "t")
    fs = KernelLikeTracefs(t, symbols={"other"})
    ch = Changes(fs)
    with pytest.raises(TracefsError):
        ch.add_kprobe("p:pagereplay/x __isolate_free_page", "pagereplay", "x")
    assert len(ch) == 0


def test_write_errors_are_one_line(tmp_path):
    fs = Tracefs(tmp_path)
    with pytest.raises(TracefsError) as e:
        fs.write("nope/file", "1")
    assert "\n" not in str(e.value) and "nope/file" in str(e.value)


def test_eperm_under_lockdown_confidentiality_says_so(tmp_path, monkeypatch):
    """tracefs opens fail with EPERM under lockdown=confidentiality (LOCKDOWN_TRACEFS): the one-line
    error names the lockdown, which root alone cannot lift; other EPERMs stay plain."""
    import errno
    import os

    from parsers.capture import tracefs as tf

    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "tracing_on").write_text("1\n")
    real_open = os.open

    def eperm(path, *a, **kw):
        if str(path).startswith(str(tmp_path / "t")):
            raise PermissionError(errno.EPERM, "Operation not permitted", str(path))
        return real_open(path, *a, **kw)

    monkeypatch.setattr(tf.os, "open", eperm)
    lock = tmp_path / "lockdown"
    monkeypatch.setattr(tf, "LOCKDOWN_FILE", lock)
    fs = Tracefs(tmp_path / "t")
    lock.write_text("none [integrity] confidentiality\n")
    with pytest.raises(TracefsError) as e:
        fs.write("tracing_on", "0")
    assert str(e.value) == f"cannot write '0' to {tmp_path / 't' / 'tracing_on'}: Operation not permitted"
    lock.write_text("none integrity [confidentiality]\n")
    with pytest.raises(TracefsError) as e:
        fs.clear_trace()
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"cannot clear {tmp_path / 't' / 'trace'}: Operation not permitted")
    assert f"kernel lockdown is 'confidentiality' ({lock})" in msg
