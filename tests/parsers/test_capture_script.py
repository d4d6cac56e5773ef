"""``record --script``: a POSIX sh script that busybox runs; the same folder layout; restores on exit.

The script is checked with ``busybox sh -n`` and run under busybox (with only busybox's applets on
PATH) against a fake tracefs tree.  Plain files cannot act like tracefs on their own, so a small
thread plays the kernel's part for the files whose meaning matters (trace_clock brackets,
buffer_size_kb per CPU, a trace recorded while tracing_on is 1); kprobe event folders are
created beforehand and the run is forced over them (PAGEREPLAY_FORCE=1).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from parsers.capture import read_capture_folder
from parsers.capture.record import KMEM_EVENTS, RecordOptions
from parsers.capture.script import generate_script
from tests.parsers.fake_tracefs import CLOCKS, make_proc, make_tracefs, sample_trace_text, tree_state

BUSYBOX = shutil.which("busybox")


@pytest.fixture(scope="module")
def busybox() -> str:
    global BUSYBOX
    if BUSYBOX is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y", "-q", "--no-install-recommends",
                        "busybox-static"], capture_output=True, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"),
                       timeout=900)
        BUSYBOX = shutil.which("busybox")
    if BUSYBOX is None:
        if os.environ.get("CI"):
            pytest.fail("busybox is not installed (apt-get install busybox-static)")
        pytest.skip("busybox is not installed (apt-get install busybox-static)")
    return BUSYBOX


@pytest.fixture(scope="module")
def bb_path(busybox, tmp_path_factory) -> str:
    """A PATH with busybox's applets only (no zstd, no GNU tools)."""
    d = tmp_path_factory.mktemp("bbbin")
    for a in subprocess.run([busybox, "--list"], capture_output=True, text=True).stdout.split():
        (d / a).symlink_to(busybox)
    return str(d)


OPTION_SETS = [
    dict(),
    dict(duration=10, buffer_mb=64),
    dict(duration=2.5, contention=True, untraced=True, command=["sh", "-c", "echo 'it''s' \"$HOME\"; exit 2"]),
    dict(stream=True, untraced=True, force=True),
    dict(stream=False, compress=False, command=["dd", "if=/dev/zero", "of=/dev/null", "count=1"]),
]


@pytest.mark.parametrize("kw", OPTION_SETS)
def test_script_syntax_busybox_and_posix(busybox, tmp_path, kw):
    text = generate_script(RecordOptions(output=tmp_path / "out dir", **kw))
    p = tmp_path / "capture.sh"
    p.write_text(text)
    r = subprocess.run([busybox, "sh", "-n", str(p)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    if shutil.which("dash"):
        r = subprocess.run(["dash", "-n", str(p)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    body = "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#"))
    assert re.search(r"^function\s", body, re.MULTILINE) is None  # (awk's "function" is indented)
    for bashism in ("[[ ", "local ", "<<<", "$'", "declare ", "source ", "${!", "&>", "$RANDOM",
                    "pipefail", "echo -e", "let "):
        assert bashism not in body, bashism
    assert re.search(r"\[ [^]\n]*== ", body) is None  # test(1) knows = only
    assert re.search(r"\w=\(", body) is None  # no arrays
    assert text.startswith("#!/bin/sh\n")


class FakeKernel(threading.Thread):
    """Plays the kernel's part for a plain fake tree while the script runs: buffer_size_kb per CPU, and a
    trace recorded while tracing_on is 1.  (trace_clock keeps the name written: re-writing it here
    would race with the script's own restore.)"""

    def __init__(self, root: Path, trace: bytes) -> None:
        super().__init__(daemon=True)
        self.root, self.trace = root, trace
        self.halt = threading.Event()
        self.tracing_seen = threading.Event()

    def run(self) -> None:
        t = self.root
        self.last_on = "1"
        self.buffer_writes = 0
        self.last_b = (t / "buffer_size_kb").read_text().strip()
        while not self.halt.is_set():
            self._pass()
            time.sleep(0.003)
        self._pass()  # the writes made just before the script exited

    def _pass(self) -> None:
        t = self.root
        b = (t / "buffer_size_kb").read_text().strip()
        if b and b != self.last_b:
            self.buffer_writes += 1
            self.last_b = b
            for cpu in (t / "per_cpu").iterdir():
                (cpu / "buffer_size_kb").write_text(b + "\n")
        on = (t / "tracing_on").read_text().strip()
        if on == "1" and self.last_on != "1":
            (t / "trace").write_bytes(self.trace)
            if self.buffer_writes:
                self.tracing_seen.set()
        self.last_on = on


def _setup(tmp_path, events=("isolate_free_page", "isolate_free_page_ret")):
    t = make_tracefs(tmp_path / "tracefs")
    p = make_proc(tmp_path / "proc")
    for ev in events:
        e = t / "events" / "pagereplay" / ev
        e.mkdir(parents=True)
        (e / "enable").write_text("0\n")
        (e / "format").write_text(f"name: {ev}\n")
    return t, p


def _run_script(tmp_path, t, p, opts: RecordOptions, path: str, *, extra_env=None, signal_when_tracing=None,
                timeout=60, kernel=True):
    script = tmp_path / "capture.sh"
    script.write_text(generate_script(opts))
    env = {"PATH": path, "PAGEREPLAY_TRACEFS": str(t), "PAGEREPLAY_PROC": str(p), "PAGEREPLAY_FORCE": "1",
           "HOME": str(tmp_path)}
    env.update(extra_env or {})
    k = FakeKernel(t, sample_trace_text())
    if kernel:
        k.start()
    try:
        proc = subprocess.Popen([BUSYBOX, "sh", str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, cwd=tmp_path)
        if signal_when_tracing is not None:
            assert k.tracing_seen.wait(30), "tracing never started"
            time.sleep(0.3)
            proc.send_signal(signal_when_tracing)
        out, err = proc.communicate(timeout=timeout)
    finally:
        k.halt.set()
        if kernel:
            k.join()
    return proc.returncode, out, err


def _assert_restored(t: Path, before: dict[str, str]) -> None:
    after = tree_state(t)
    diff = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    # plain files: kprobe_events keeps the appended lines, trace_clock the name written back
    assert diff <= {"kprobe_events", "trace_clock"}, diff
    assert (t / "trace_clock").read_text().strip() in ("local", CLOCKS)
    lines = (t / "kprobe_events").read_text().splitlines()
    for i, ln in enumerate(lines):
        if ln[:2] in ("p:", "r:"):
            ev = ln.split()[0][2:]
            assert f"-:{ev}" in lines[i + 1:], f"{ev} defined and never removed"


def test_script_runs_under_busybox_snapshot_mode(busybox, bb_path, tmp_path):
    t, p = _setup(tmp_path)
    before = tree_state(t)
    out = tmp_path / "cap"
    rc, _, err = _run_script(tmp_path, t, p, RecordOptions(output=out, duration=1, untraced=True, contention=True,
                                                           command=["sh", "-c", "sleep 1; exit 3"]), bb_path)
    assert rc == 0, err
    assert "wrote" in err.splitlines()[-1]
    _assert_restored(t, before)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    m = json.loads((out / "manifest.json").read_text())
    assert m["capture_method"] == "sh" and m["mode"] == "snapshot" and m["trace_clock"] == "global"
    assert m["trace_clock_original"] == "local" and (out / "trace_clock.txt").read_text().strip() == "global"
    assert m["trace_compression"] == "none" and m["files"]["trace"] == "trace.txt"  # busybox has no zstd
    assert m["events"][:6] == [f"kmem:{e}" for e in KMEM_EVENTS] and "lock:contention_end" in m["events"]
    assert {k["symbol"] for k in m["kprobes"]} == {"__isolate_free_page"}
    assert m["command"] == ["sh", "-c", "sleep 1; exit 3"] and m["command_exit"] == {"status": 3, "signal": None}
    assert m["kernel_release"] == "6.1.0-57-amd64" and m["kernel_version"] == "6.1.192" and m["nr_cpus"] == 2
    assert m["overruns"] == {"total": 0, "per_cpu": {"0": 0, "1": 0}} and m["interrupted"] is False
    assert m["buffer_size_kb_original"] == {"0": 1408, "1": 1408} and m["buffer_size_kb"] >= 16384
    assert "proc_before/zoneinfo" in m["files"]["all"]
    assert m["restore_problems"] == [] and m["duration_s"] == 0.0  # (from /proc/uptime, which stands still here)
    assert m["cpu_stats"] == {"0": {"entries": 0, "overrun": 0, "commit_overrun": 0, "bytes": 0, "oldest_event_ts": 7.830146,
                                    "now_ts": 8.434767, "dropped_events": 0, "read_events": 0}} | {"1": m["cpu_stats"]["0"]}
    # the manifest has the Python capture's keys (tests/parsers/test_capture_record.py writes one)
    from parsers.capture.record import record
    from tests.parsers.fake_tracefs import KernelLikeTracefs

    t2 = make_tracefs(tmp_path / "tracefs2")
    py = record(RecordOptions(output=tmp_path / "py", duration=0.05, tracefs=KernelLikeTracefs(t2), proc_root=p,
                              probe_seconds=0.05, untraced=True, contention=True)).manifest
    from parsers.capture.manifest import MANIFEST_KEYS

    assert set(m) == set(py) == set(MANIFEST_KEYS) and m["capture_method"] == "sh" and py["capture_method"] == "python"
    # the same layout as the Python capture, read by the same reader
    f = read_capture_folder(out)
    assert f.trace == out / "trace.txt" and f.proc_before and f.proc_after and f.overruns == 0
    assert f.kernel_version == "6.1.192" and f.trace_clock == "global"
    for name in ("uname.txt", "version.txt", "cmdline.txt", "cpuinfo.txt", "iomem.txt", "trace_clock.txt",
                 "per_cpu_stats.txt", "kprobe_events.txt", "formats/mm_page_alloc.format", "formats/header_page"):
        assert (out / name).is_file(), name
    assert (out / "trace.txt").read_bytes() == sample_trace_text()
    assert (out / "uname.txt").read_text().split()[2] == "6.1.0-57-amd64"


def test_script_compresses_with_zstd_when_present(busybox, bb_path, tmp_path):
    zstd = shutil.which("zstd")
    if zstd is None:
        pytest.skip("no zstd on this machine")
    t, p = _setup(tmp_path)
    (Path(bb_path) / "zstd").unlink(missing_ok=True)
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "zstd").symlink_to(zstd)
    out = tmp_path / "cap"
    rc, _, err = _run_script(tmp_path, t, p, RecordOptions(output=out, buffer_mb=16, duration=1),
                             f"{extra}:{bb_path}")
    assert rc == 0, err
    f = read_capture_folder(out)
    assert f.trace.name == "trace.txt.zst"
    from parsers.api import parse_files

    acc = parse_files([f.trace]).accounting
    assert acc["lines_malformed"] == 0 and acc["events_total"] > 20000


def test_script_sigint_completes_sigterm_aborts(busybox, bb_path, tmp_path):
    t, p = _setup(tmp_path)
    before = tree_state(t)
    out = tmp_path / "cap"
    rc, _, err = _run_script(tmp_path, t, p, RecordOptions(output=out, buffer_mb=16, duration=60), bb_path,
                             signal_when_tracing=signal.SIGINT, timeout=30)
    assert rc == 0, err
    assert json.loads((out / "manifest.json").read_text())["interrupted"] is True
    _assert_restored(t, before)

    out2 = tmp_path / "cap2"
    rc, _, err = _run_script(tmp_path, t, p, RecordOptions(output=out2, buffer_mb=16, untraced=True,
                                                           command=["sleep", "60"]), bb_path,
                             signal_when_tracing=signal.SIGTERM, timeout=30)
    assert rc != 0 and "aborted by SIGTERM" in err
    assert not out2.exists()
    _assert_restored(t, before)
    assert sorted(x.name for x in tmp_path.iterdir() if x.name.startswith(".")) == []


def test_script_refusals(busybox, bb_path, tmp_path):
    t, p = _setup(tmp_path)
    before = tree_state(t)
    out = tmp_path / "cap"
    out.mkdir()
    (out / "old").write_text("x")
    rc, _, err = _run_script(tmp_path, t, p, RecordOptions(output=out, duration=1), bb_path,
                             extra_env={"PAGEREPLAY_FORCE": "0"})
    assert rc == 1 and "exists and is not empty" in err and len(err.strip().splitlines()) == 1
    assert tree_state(t) == before
    # stale kprobe folders without force
    rc, _, err = _run_script(tmp_path, t, p, RecordOptions(output=tmp_path / "o2", duration=1), bb_path,
                             extra_env={"PAGEREPLAY_FORCE": "0"})
    assert rc == 1 and "left from an earlier capture" in err
    # not root: an `id` that says 1000 (busybox sh runs its own applets first: use dash for this one)
    if shutil.which("dash"):
        fake = tmp_path / "fakeid"
        fake.mkdir()
        (fake / "id").write_text("#!/bin/sh\necho 1000\n")
        (fake / "id").chmod(0o755)
        script = tmp_path / "capture-o3.sh"
        script.write_text(generate_script(RecordOptions(output=tmp_path / "o3", duration=1)))
        r = subprocess.run([shutil.which("dash"), str(script)], capture_output=True, text=True, timeout=30,
                           env={"PATH": f"{fake}:{bb_path}", "PAGEREPLAY_TRACEFS": str(t), "PAGEREPLAY_PROC": str(p)})
        assert r.returncode == 1 and "must run as root" in r.stderr
    # no tracefs
    rc, _, err = _run_script(tmp_path, t, p, RecordOptions(output=tmp_path / "o4", duration=1), bb_path,
                             extra_env={"PAGEREPLAY_TRACEFS": str(tmp_path / "nothing")})
    assert rc == 1 and "no tracefs" in err
    # a required event missing
    shutil.rmtree(t / "events" / "kmem" / "mm_page_alloc")
    before = tree_state(t)
    rc, _, err = _run_script(tmp_path, t, p, RecordOptions(output=tmp_path / "o5", duration=1), bb_path)
    assert rc == 1 and "kmem:mm_page_alloc is not available" in err
    _assert_restored(t, before)
    assert not any((tmp_path / n).exists() for n in ("o2", "o3", "o4", "o5"))
    assert sorted(x.name for x in tmp_path.iterdir() if x.name.startswith(".")) == []


def test_script_counts_overruns_per_cpu_and_keeps_a_killed_command(busybox, bb_path, tmp_path):
    """Lost events (overrun + commit overrun + dropped) per CPU from per_cpu/cpuN/stats, in the
    manifest and a note naming the worst CPU; a command killed by SIGKILL ends the capture normally."""
    t, p = _setup(tmp_path)
    (t / "per_cpu" / "cpu1" / "stats").write_text(
        "entries: 100\noverrun: 4000\ncommit overrun: 21\nbytes: 4000\noldest event ts: 7.8\nnow ts: 8.4\n"
        "dropped events: 300\nread events: 0\n")
    before = tree_state(t)
    out = tmp_path / "cap"
    rc, _, err = _run_script(tmp_path, t, p, RecordOptions(output=out, buffer_mb=16, command=["sh", "-c", "kill -9 $$"]),
                             bb_path)
    assert rc == 0, err
    m = json.loads((out / "manifest.json").read_text())
    assert m["overruns"] == {"total": 4321, "per_cpu": {"0": 0, "1": 4321}}
    assert "ring buffer lost 4321 events (most on CPU 1: 4321)" in err
    assert m["command_exit"] == {"status": None, "signal": 9} and any("killed by signal 9" in n for n in m["notes"])
    f = read_capture_folder(out)
    assert f.overruns == 4321 and dict(f.overruns_per_cpu) == {0: 0, 1: 4321}
    _assert_restored(t, before)


def test_script_names_lockdown_when_tracefs_refuses(busybox, bb_path, tmp_path):
    """Under lockdown=confidentiality every tracefs open fails: one line naming the lockdown, nothing written."""
    t, p = _setup(tmp_path)
    (t / "tracing_on").unlink()
    (t / "tracing_on").mkdir()  # (as root a plain file cannot refuse a read: a folder does)
    lock = tmp_path / "lockdown"
    lock.write_text("none integrity [confidentiality]\n")
    out = tmp_path / "cap"
    rc, _, err = _run_script(tmp_path, t, p, RecordOptions(output=out, duration=1), bb_path,
                             extra_env={"PAGEREPLAY_LOCKDOWN": str(lock)}, kernel=False)
    assert rc == 1 and len(err.strip().splitlines()) == 1, err
    assert f"kernel lockdown is 'confidentiality' ({lock})" in err
    lock.write_text("none [integrity] confidentiality\n")
    rc, _, err = _run_script(tmp_path, t, p, RecordOptions(output=out, duration=1), bb_path,
                             extra_env={"PAGEREPLAY_LOCKDOWN": str(lock)}, kernel=False)
    assert rc == 1 and err.strip() == f"pagereplay: error: cannot read {t}/tracing_on", err
    assert not out.exists() and not [x for x in tmp_path.iterdir() if x.name.startswith(".")]
