"""``record`` against a fake tracefs: settings changed and restored exactly (also after an exception,
SIGINT, SIGTERM and a killed command), the folder's contents, the manifest, the optional and
missing pieces, overruns."""

from __future__ import annotations

import json
import os
import signal
import threading

import pytest

from parsers.capture import read_capture_folder
from parsers.capture import record as rec
from parsers.capture.errors import CaptureAborted, CaptureError, MissingEventError, NotRootError
from parsers.capture.record import FLOOR_KB, KMEM_EVENTS, RecordOptions, record, size_buffers
from tests.parsers.fake_tracefs import KernelLikeTracefs, make_proc, make_tracefs, tree_state


@pytest.fixture
def env(tmp_path):
    t = make_tracefs(tmp_path / "tracefs")
    p = make_proc(tmp_path / "proc")
    return {"t": t, "proc": p, "out": tmp_path / "out", "before": tree_state(t), "tmp": tmp_path}


def _opts(env, fs, **kw) -> RecordOptions:
    base = dict(output=env["out"], duration=0.05, tracefs=fs, proc_root=env["proc"], probe_seconds=0.05)
    base.update(kw)
    return RecordOptions(**base)


def _leftovers(env) -> list[str]:
    return sorted(p.name for p in env["tmp"].iterdir() if p.name.startswith("."))


def assert_restored(env):
    assert tree_state(env["t"]) == env["before"]
    assert _leftovers(env) == []


def test_record_changes_then_restores_everything(env):
    fs = KernelLikeTracefs(env["t"])
    res = record(_opts(env, fs, untraced=True, contention=True))
    assert_restored(env)
    written = dict(fs.writes)
    assert written["trace_clock"] == "local"  # last write: the restore
    assert ("trace_clock", "global") in fs.writes
    assert ("buffer_size_kb", str(FLOOR_KB)) in fs.writes and ("buffer_size_kb", "1408") in fs.writes
    for e in KMEM_EVENTS:
        assert (f"events/kmem/{e}/enable", "1") in fs.writes and (f"events/kmem/{e}/enable", "0") in fs.writes
    assert ("kprobe_events", "-:pagereplay/isolate_free_page") in fs.writes
    assert fs.writes[-1] == ("tracing_on", "1")  # tracing_on was 1 before: put back last
    m = res.manifest
    assert m["trace_clock"] == "global" and m["trace_clock_original"] == "local"
    assert m["mode"] == "snapshot" and m["buffer_size_kb"] == FLOOR_KB and m["buffer_size_kb_original"] == {0: 1408, 1: 1408}
    assert m["events"][:6] == [f"kmem:{e}" for e in KMEM_EVENTS]
    assert "lock:contention_begin" in m["events"] and m["restore_problems"] == []
    assert {p["event"] for p in m["kprobes"]} >= {"pagereplay/isolate_free_page", "pagereplay/isolate_free_page_ret"}
    assert m["kernel_release"] == "6.1.0-57-amd64" and m["kernel_version"] == "6.1.192" and m["nr_cpus"] == 2
    assert m["overruns"] == {"total": 0, "per_cpu": {"0": 0, "1": 0}}
    assert m["command"] is None and m["command_exit"] is None and m["interrupted"] is False
    assert m["start_time"] <= m["stop_time"] and m["rate_probe"]["seconds"] > 0


def test_record_folder_contents_and_reader(env):
    fs = KernelLikeTracefs(env["t"])
    record(_opts(env, fs, untraced=True))
    out = env["out"]
    for f in ("trace.txt.zst", "manifest.json", "uname.txt", "version.txt", "cmdline.txt", "cpuinfo.txt", "iomem.txt",
              "trace_clock.txt", "set_event.txt", "per_cpu_stats.txt", "kprobe_events.txt", "trace_options.txt",
              "formats/mm_page_alloc.format", "formats/header_page", "formats/isolate_free_page.format"):
        assert (out / f).is_file(), f
    for d in ("proc_before", "proc_after"):
        assert sorted(p.name for p in (out / d).iterdir()) == ["buddyinfo", "meminfo", "pagetypeinfo", "vmstat", "zoneinfo"]
    assert (out / "trace_clock.txt").read_text().split()[1] == "[global]"
    assert "kmem:mm_page_alloc" in (out / "set_event.txt").read_text()
    m = json.loads((out / "manifest.json").read_text())
    assert m["files"]["trace"] == "trace.txt.zst" and "proc_before/zoneinfo" in m["files"]["all"]
    folder = read_capture_folder(out)
    assert folder.trace == out / "trace.txt.zst" and folder.trace_format == "ftrace"
    assert folder.kernel_release == "6.1.0-57-amd64" and folder.kernel_version == "6.1.192"
    assert folder.overruns == 0 and folder.trace_clock == "global" and folder.nr_cpus == 2

    from parsers.api import parse_files

    acc = parse_files([folder.trace]).accounting
    assert acc["lines_malformed"] == 0 and acc["events_total"] > 20000
    # the kprobe lines are rows of the table (parsers/scan/probes.py), not other events
    assert acc["events"]["isolate_free_page"] == 1 and acc["events"]["isolate_free_page_ret"] == 1
    assert "isolate_free_page" not in acc["other_events"]


def test_exception_restores_and_leaves_nothing(env, monkeypatch):
    fs = KernelLikeTracefs(env["t"])
    real = rec.snapshot_proc

    def boom(proc_root, dest):
        if dest.name == "proc_after":
            raise RuntimeError("disk full")
        return real(proc_root, dest)

    monkeypatch.setattr(rec, "snapshot_proc", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        record(_opts(env, fs, untraced=True, contention=True))
    assert_restored(env)
    assert not env["out"].exists()


def _signal_when_tracing(fs, signals: list[int]):
    """Send ``signals`` to this process once tracing is on for the capture (not the rate probe)."""
    state = {"n": 0}

    def hook(value):
        if value == "1" and any(w[0] == "buffer_size_kb" for w in fs.writes) and state["n"] == 0:
            state["n"] = 1

            def fire():
                for s in signals:
                    os.kill(os.getpid(), s)
            threading.Timer(0.1, fire).start()

    fs.on_tracing_on = hook


def test_sigint_while_tracing_completes_the_capture(env):
    fs = KernelLikeTracefs(env["t"])
    _signal_when_tracing(fs, [signal.SIGINT])
    res = record(_opts(env, fs, duration=30, untraced=True))
    assert res.manifest["interrupted"] is True and res.manifest["duration_s"] < 10
    assert_restored(env)
    assert read_capture_folder(env["out"]).proc_after is not None


def test_sigint_until_ctrl_c_without_duration(env):
    fs = KernelLikeTracefs(env["t"])
    _signal_when_tracing(fs, [signal.SIGINT])
    res = record(_opts(env, fs, duration=None, stream=False, buffer_mb=16))
    assert res.manifest["interrupted"] is True
    assert_restored(env)


@pytest.mark.parametrize("signals", [[signal.SIGTERM], [signal.SIGHUP]])
def test_sigterm_aborts_restores_and_writes_nothing(env, signals):
    fs = KernelLikeTracefs(env["t"])
    _signal_when_tracing(fs, signals)
    with pytest.raises(CaptureAborted, match="SIG"):
        record(_opts(env, fs, duration=30, untraced=True, contention=True))
    assert_restored(env)
    assert not env["out"].exists()


def test_second_sigint_aborts(env):
    fs = KernelLikeTracefs(env["t"])
    _signal_when_tracing(fs, [signal.SIGINT])
    real = rec.snapshot_proc

    def slow(proc_root, dest):  # a SIGINT while the capture is being written aborts it
        if dest.name == "proc_after":
            os.kill(os.getpid(), signal.SIGINT)
        return real(proc_root, dest)

    rec_snapshot = rec.snapshot_proc
    try:
        rec.snapshot_proc = slow
        with pytest.raises(CaptureAborted, match="SIGINT"):
            record(_opts(env, fs, duration=30))
    finally:
        rec.snapshot_proc = rec_snapshot
    assert_restored(env)
    assert not env["out"].exists()


def test_sigint_while_a_command_runs_ends_it_and_completes(env):
    """Ctrl-C during COMMAND: tracing stops, the command gets COMMAND_GRACE_S then SIGTERM, the
    capture is completed with the command's end recorded, and every setting is put back."""
    fs = KernelLikeTracefs(env["t"])
    _signal_when_tracing(fs, [signal.SIGINT])
    res = record(_opts(env, fs, command=["sleep", "60"], duration=None, stream=False, buffer_mb=16, untraced=True))
    m = res.manifest
    assert m["interrupted"] is True and m["command_exit"] == {"status": None, "signal": signal.SIGTERM}
    assert m["duration_s"] < 30
    assert_restored(env)
    assert read_capture_folder(env["out"]).proc_after is not None


def test_sigint_before_tracing_aborts(env):
    fs = KernelLikeTracefs(env["t"])
    threading.Timer(0.05, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
    with pytest.raises(CaptureAborted):
        record(_opts(env, fs, probe_seconds=2.0))  # the SIGINT lands in the rate probe
    assert_restored(env)


def test_command_exit_status_and_killed_command(env):
    fs = KernelLikeTracefs(env["t"])
    res = record(_opts(env, fs, command=["sh", "-c", "exit 3"], duration=None, stream=False, buffer_mb=16))
    assert res.manifest["command_exit"] == {"status": 3, "signal": None}
    assert res.manifest["command"] == ["sh", "-c", "exit 3"]
    assert_restored(env)
    res = record(_opts(env, fs, command=["sh", "-c", "kill -9 $$"], buffer_mb=16, force=True))
    assert res.manifest["command_exit"] == {"status": None, "signal": 9}
    assert any("SIGKILL" in n for n in res.notes)
    assert_restored(env)


def test_command_not_found(env):
    fs = KernelLikeTracefs(env["t"])
    with pytest.raises(CaptureError, match="cannot run"):
        record(_opts(env, fs, command=["/nonexistent/cmd"], buffer_mb=16))
    assert_restored(env)
    assert not env["out"].exists()


def test_not_root(env, monkeypatch):
    monkeypatch.setattr(rec.os, "geteuid", lambda: 1000)
    with pytest.raises(NotRootError, match="must run as root"):
        record(_opts(env, KernelLikeTracefs(env["t"])))
    assert_restored(env)


def test_output_not_empty_needs_force(env):
    env["out"].mkdir()
    (env["out"] / "old").write_text("x")
    fs = KernelLikeTracefs(env["t"])
    with pytest.raises(CaptureError, match="not empty.*--force"):
        record(_opts(env, fs))
    assert fs.writes == [] and (env["out"] / "old").exists()
    record(_opts(env, fs, force=True))
    assert not (env["out"] / "old").exists() and (env["out"] / "manifest.json").exists()
    assert_restored(env)


def test_empty_output_dir_is_used(env):
    env["out"].mkdir()
    record(_opts(env, KernelLikeTracefs(env["t"])))
    assert (env["out"] / "manifest.json").exists()


def test_required_event_missing(tmp_path):
    t = make_tracefs(tmp_path / "t", kmem=("mm_page_free",))
    before = tree_state(t)
    with pytest.raises(MissingEventError, match="kmem:mm_page_alloc"):
        record(RecordOptions(output=tmp_path / "out", tracefs=KernelLikeTracefs(t), proc_root=make_proc(tmp_path / "p")))
    assert tree_state(t) == before and not (tmp_path / "out").exists()


def test_optional_pieces_missing_are_notes(tmp_path):
    t = make_tracefs(tmp_path / "t", kmem=("mm_page_alloc", "mm_page_free", "mm_page_alloc_zone_locked"), lock=False,
                     clocks="[local] perf")
    before = tree_state(t)
    notes: list[str] = []
    res = record(RecordOptions(output=tmp_path / "out", duration=0.05, contention=True, tracefs=KernelLikeTracefs(t),
                               proc_root=make_proc(tmp_path / "p"), probe_seconds=0.05, on_note=notes.append))
    m = res.manifest
    assert "kmem:mm_page_free_batched" in m["events_missing"] and "lock:contention_begin" in m["events_missing"]
    assert any("contention_begin/end not in this kernel" in n for n in notes)
    assert any("no trace clock monotonic" in n for n in notes) and m["trace_clock"] == "local"
    assert all("\n" not in n for n in notes)
    assert tree_state(t) == before


def test_clock_fallback_to_mono(tmp_path):
    t = make_tracefs(tmp_path / "t", clocks="[local] perf mono boot")
    res = record(RecordOptions(output=tmp_path / "out", duration=0.05, tracefs=KernelLikeTracefs(t),
                               proc_root=make_proc(tmp_path / "p"), probe_seconds=0.05))
    assert res.manifest["trace_clock"] == "mono"
    assert (t / "trace_clock").read_text().strip() == "[local] perf mono boot"


def test_untraced_symbol_missing_and_refused(env):
    proc = make_proc(env["tmp"] / "proc2", kallsyms=("__isolate_free_page", "take_page_off_buddy"))
    fs = KernelLikeTracefs(env["t"], symbols={"__isolate_free_page"})  # the kernel refuses take_page_off_buddy
    notes: list[str] = []
    res = record(_opts(env, fs, proc_root=proc, untraced=True, on_note=notes.append))
    syms = {p["symbol"] for p in res.manifest["kprobes"]}
    assert syms == {"__isolate_free_page"}
    assert any("__putback_isolated_page not in this kernel" in n for n in notes)
    assert any("kprobe on take_page_off_buddy refused" in n for n in notes)
    assert_restored(env)


def test_untraced_vmemmap_refused_falls_back(env):
    fs = KernelLikeTracefs(env["t"], refuse_vmemmap=True)
    res = record(_opts(env, fs, untraced=True))
    iso = next(p for p in res.manifest["kprobes"] if p["event"] == "pagereplay/isolate_free_page")
    assert "vmemmap" not in iso["definition"] and "order=%si:u32" in iso["definition"]
    assert any("@vmemmap_base not accepted" in n for n in res.notes)
    assert_restored(env)


def test_untraced_without_vmemmap_symbol(env):
    proc = make_proc(env["tmp"] / "proc2", vmemmap=False)
    res = record(_opts(env, KernelLikeTracefs(env["t"]), proc_root=proc, untraced=True))
    assert all("vmemmap" not in p["definition"] for p in res.manifest["kprobes"])
    assert_restored(env)


def test_untraced_without_kprobe_events(tmp_path):
    t = make_tracefs(tmp_path / "t", kprobes=False)
    res = record(RecordOptions(output=tmp_path / "out", duration=0.05, untraced=True, tracefs=KernelLikeTracefs(t),
                               proc_root=make_proc(tmp_path / "p"), probe_seconds=0.05))
    assert res.manifest["kprobes"] == [] and any("kprobe_events" in n for n in res.notes)


def test_stale_kprobes_refused_then_forced(env):
    fs = KernelLikeTracefs(env["t"])
    fs.write("kprobe_events", "p:pagereplay/isolate_free_page __isolate_free_page", append=True)
    env["before"] = tree_state(env["t"])
    with pytest.raises(CaptureError, match="left from an earlier capture"):
        record(_opts(env, fs))
    assert tree_state(env["t"]) == env["before"]
    res = record(_opts(env, fs, force=True, untraced=True))
    assert any("stale" in n for n in res.notes)
    assert fs.kprobe_events() == []


def test_active_tracer_refused(tmp_path):
    t = make_tracefs(tmp_path / "t", tracer="function")
    before = tree_state(t)
    with pytest.raises(CaptureError, match="tracer 'function' is active"):
        record(RecordOptions(output=tmp_path / "out", tracefs=KernelLikeTracefs(t), proc_root=make_proc(tmp_path / "p")))
    assert tree_state(t) == before


def test_other_events_enabled_are_noted(tmp_path):
    t = make_tracefs(tmp_path / "t")
    (t / "events" / "sched" / "sched_switch").mkdir(parents=True)
    (t / "events" / "sched" / "sched_switch" / "enable").write_text("1\n")
    (t / "set_event").write_text("sched:sched_switch\n")
    before = tree_state(t)
    res = record(RecordOptions(output=tmp_path / "out", duration=0.05, tracefs=KernelLikeTracefs(t),
                               proc_root=make_proc(tmp_path / "p"), probe_seconds=0.05))
    assert res.manifest["other_events_enabled"] == ["sched:sched_switch"]
    assert tree_state(t) == before


def test_overruns_counted_per_cpu(env):
    fs = KernelLikeTracefs(env["t"], lost={1: 1234})
    res = record(_opts(env, fs))
    assert res.manifest["overruns"] == {"total": 1234, "per_cpu": {"0": 0, "1": 1234}}
    assert any("lost 1,234 events" in n and "CPU 1" in n for n in res.notes)
    folder = read_capture_folder(env["out"])
    assert folder.overruns == 1234 and dict(folder.overruns_per_cpu) == {0: 0, 1: 1234}
    assert_restored(env)


def test_stream_mode_reads_trace_pipe(env):
    fs = KernelLikeTracefs(env["t"])
    res = record(_opts(env, fs, stream=True, compress=False))
    assert res.manifest["mode"] == "stream" and res.manifest["trace_compression"] == "none"
    assert (env["out"] / "trace.txt").read_bytes() == fs.trace_text
    assert read_capture_folder(env["out"]).trace.name == "trace.txt"
    assert_restored(env)


def test_size_buffers_rules():
    mb = 1024
    # a duration that fits: rate x duration x headroom, at least the floor
    mode, kb, src, d = size_buffers(rate_bytes_per_s=1e6, duration=60, ncpus=4, mem_avail_kb=8 * mb * mb)
    assert mode == "snapshot" and src == "rate-probe" and kb == pytest.approx(1e6 * 60 * 2 / 1024, abs=4)
    assert size_buffers(rate_bytes_per_s=10, duration=5, ncpus=2, mem_avail_kb=mb * mb)[1:3] == (FLOOR_KB, "floor")
    # does not fit under 40% of MemAvailable: stream, with a buffer for STREAM_SECONDS under the cap
    mode, kb, _, d = size_buffers(rate_bytes_per_s=50e6, duration=600, ncpus=2, mem_avail_kb=2 * mb * mb)
    assert mode == "stream" and kb <= d["cap_kb_per_cpu"]
    # no duration (a command, or until SIGINT): stream
    assert size_buffers(rate_bytes_per_s=1e3, duration=None, ncpus=2, mem_avail_kb=mb * mb)[0] == "stream"
    # --buffer-mb wins
    assert size_buffers(rate_bytes_per_s=1e9, duration=None, ncpus=2, mem_avail_kb=1, buffer_mb=64)[:3] == (
        "snapshot", 64 * 1024, "--buffer-mb")
