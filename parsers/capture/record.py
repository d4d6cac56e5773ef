"""``pagereplay record``: capture a complete page-allocator trace and its /proc snapshots.

Run as root on the machine to trace.  In order: find (or mount) tracefs; refuse to disturb a
tracer that is running; enable the six kmem page events (plus ``lock:contention_*`` with
``contention``, plus the ``untraced`` kprobes); pick a trace clock monotonic across CPUs; size
the per-CPU ring buffers (``buffer_mb``, or a ~1 s rate probe times the expected duration, capped
by free memory; when that cannot fit, ``trace_pipe`` is streamed to disk instead); snapshot
/proc just before tracing starts and just after it stops; run the command (or wait
``duration``, or until SIGINT); write the trace (zstd), the per-CPU stats, the static facts and
``manifest.json``.

Every tracefs setting changed is restored (``tracefs.Changes``) on every way out: success, an
exception, SIGINT/SIGTERM/SIGHUP, a command that was killed.  The folder is written under a
temporary name beside the output and renamed only when complete, so an interrupted capture never
looks whole; an aborted one leaves nothing.

A first SIGINT while tracing is the normal way to end an open-ended capture (the capture is
completed, ``interrupted: true``); a SIGINT before tracing started or while the capture is being
written, a second SIGINT, SIGTERM and SIGHUP abort it.
"""

from __future__ import annotations

import math
import os
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from . import untraced as _untraced
from .errors import CaptureAborted, CaptureError, MissingEventError, NotRootError, TracefsError
from .folder import SNAPSHOT_FILES
from .manifest import MANIFEST_VERSION, list_files, tool_version, write_manifest
from .tracefs import Changes, FoundTracefs, Tracefs, choose_clock, find_tracefs, lost_events, unmount

KMEM_EVENTS = ("mm_page_alloc", "mm_page_alloc_zone_locked", "mm_page_free", "mm_page_free_batched",
               "mm_page_pcpu_drain", "mm_page_alloc_extfrag")
#: without these two a trace cannot be replayed; the other four are recorded where they exist
REQUIRED_KMEM = ("mm_page_alloc", "mm_page_free")
CONTENTION_EVENTS = ("contention_begin", "contention_end")

FLOOR_KB = 16 * 1024          # smallest per-CPU buffer chosen by the rate probe (16 MiB)
MEM_FRACTION = 0.4            # all ring buffers together stay under this share of MemAvailable
HEADROOM = 2.0                # probe rate x duration x HEADROOM (bursts, the command's own activity)
STREAM_SECONDS = 8.0          # in stream mode, the buffer holds this many seconds at the probed rate
COMMAND_GRACE_S = 2.0         # after SIGINT, the command's time to exit on its own before SIGTERM
COPY_CHUNK = 1 << 20


@dataclass
class RecordOptions:
    output: Path
    duration: float | None = None          # seconds to trace (without a command); expected length with one
    buffer_mb: int | None = None           # per-CPU ring buffer (MiB); None: from the rate probe
    contention: bool = False
    untraced: bool = False
    command: list[str] | None = None
    force: bool = False
    stream: bool | None = None             # True/False force stream/snapshot mode; None: decide
    compress: bool = True                  # trace.txt.zst (zstd) or trace.txt
    tracefs_root: Path | None = None       # None: find or mount it
    tracefs: Tracefs | None = None         # an already opened tracefs (wins over tracefs_root; tests)
    proc_root: Path = Path("/proc")
    mount: bool = True
    require_root: bool = True
    probe_seconds: float = 1.0
    install_signal_handlers: bool = True
    on_note: Callable[[str], None] | None = None


@dataclass
class RecordResult:
    path: Path
    manifest: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _uptime(proc_root: Path) -> float | None:
    try:
        return float((proc_root / "uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def uname_text(proc_root: Path) -> tuple[str, str, str]:
    """(``uname -a`` line, release, machine): from ``proc_root/sys/kernel/*`` where present
    (so a fake /proc is honoured), else ``os.uname()``."""
    u = os.uname()

    def k(name: str, default: str) -> str:
        try:
            return (proc_root / "sys" / "kernel" / name).read_text().strip() or default
        except OSError:
            return default

    sysname, node, rel, ver = k("ostype", u.sysname), k("hostname", u.nodename), k("osrelease", u.release), k("version", u.version)
    machine = u.machine
    return f"{sysname} {node} {rel} {ver} {machine} GNU/Linux", rel, machine


def mem_available_kb(proc_root: Path) -> int | None:
    try:
        text = (proc_root / "meminfo").read_text()
    except OSError:
        return None
    vals = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 2 and f[1].isdigit():
            vals[f[0].rstrip(":")] = int(f[1])
    return vals.get("MemAvailable", vals.get("MemFree"))


def snapshot_proc(proc_root: Path, dest: Path) -> list[str]:
    """Copy /proc/{zoneinfo,buddyinfo,pagetypeinfo,meminfo,vmstat} into ``dest``; return what was missing."""
    dest.mkdir(parents=True, exist_ok=True)
    missing = []
    for f in SNAPSHOT_FILES:
        try:
            (dest / f).write_bytes((proc_root / f).read_bytes())
        except OSError:
            missing.append(f)
    return missing


def size_buffers(*, rate_bytes_per_s: float, duration: float | None, ncpus: int, mem_avail_kb: int | None,
                 buffer_mb: int | None = None) -> tuple[str, int, str, dict[str, Any]]:
    """(mode, per-CPU KiB, source, details): the sizing rule of ``record`` (and of the script).

    - ``buffer_mb`` given: that size, snapshot mode;
    - a duration: need = rate x duration x HEADROOM (at least FLOOR_KB); snapshot mode when it fits
      under cap = MemAvailable x MEM_FRACTION / ncpus, else stream mode;
    - no duration (a command, or until SIGINT): stream mode;
    - the stream-mode buffer holds STREAM_SECONDS at the probed rate (at least FLOOR_KB), under the cap.
    """
    cap = int(mem_avail_kb * MEM_FRACTION / max(ncpus, 1)) if mem_avail_kb else None
    details: dict[str, Any] = {"cap_kb_per_cpu": cap}
    if buffer_mb is not None:
        return "snapshot", int(buffer_mb) * 1024, "--buffer-mb", details
    need = None
    if duration is not None:
        need = max(FLOOR_KB, math.ceil(rate_bytes_per_s * duration * HEADROOM / 1024))
        details["need_kb_per_cpu"] = need
        if cap is None or need <= cap:
            return "snapshot", _round4(need), "rate-probe" if need > FLOOR_KB else "floor", details
    kb = max(FLOOR_KB, math.ceil(rate_bytes_per_s * STREAM_SECONDS / 1024))
    if cap is not None:
        kb = max(min(kb, cap), 1024)
    return "stream", _round4(kb), "rate-probe" if kb > FLOOR_KB else "floor", details


def _round4(kb: int) -> int:
    return (kb + 3) // 4 * 4


# ---------------------------------------------------------------------- output writers
class _TraceWriter:
    """Plain or zstd-compressed trace file; counts the text bytes written."""

    def __init__(self, path: Path, compress: bool) -> None:
        self.path = path
        self.compress = compress
        self.raw: BinaryIO = open(path, "wb")
        self.text_bytes = 0
        if compress:
            import zstandard

            self._w = zstandard.ZstdCompressor(level=3).stream_writer(self.raw, closefd=False)
        else:
            self._w = self.raw

    def write(self, data: bytes) -> None:
        self._w.write(data)
        self.text_bytes += len(data)

    def close(self) -> None:
        if self.compress:
            self._w.close()
        self.raw.close()


class _Streamer(threading.Thread):
    """Copies ``trace_pipe`` to the writer while tracing runs (non-blocking reads + select)."""

    def __init__(self, pipe: Path, writer: _TraceWriter) -> None:
        super().__init__(name="pagereplay-trace-pipe", daemon=True)
        self.pipe = pipe
        self.writer = writer
        self.draining = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            fd = os.open(self.pipe, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as e:
            self.error = e
            return
        try:
            while True:
                r, _, _ = select.select([fd], [], [], 0.2)
                data = b""
                if r:
                    try:
                        data = os.read(fd, COPY_CHUNK)
                    except BlockingIOError:
                        data = b""
                if data:
                    self.writer.write(data)
                    continue
                if self.draining.is_set():
                    break
                if r:  # a regular file at EOF (tests) is always "readable": don't spin
                    time.sleep(0.05)
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            self.error = e
        finally:
            os.close(fd)

    def finish(self) -> None:
        self.draining.set()
        self.join()
        if self.error is not None:
            raise TracefsError(f"reading {self.pipe} failed: {self.error}")


# ---------------------------------------------------------------------- signals
class _Signals:
    """SIGINT while tracing stops the capture (completed); any other SIGINT, SIGTERM and SIGHUP abort."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self, install: bool) -> None:
        self.phase = "setup"   # setup | tracing | finishing
        self.stop = threading.Event()
        self.interrupted = False
        self._old: dict[int, Any] = {}
        self.install = install and threading.current_thread() is threading.main_thread()

    def __enter__(self) -> _Signals:
        if self.install:
            for s in self.SIGNALS:
                self._old[s] = signal.signal(s, self._handler)
        return self

    def _handler(self, signum: int, _frame: Any) -> None:
        if signum == signal.SIGINT and self.phase == "tracing" and not self.stop.is_set():
            self.interrupted = True
            self.stop.set()
            return
        name = signal.Signals(signum).name
        raise CaptureAborted(f"capture aborted by {name}: tracing settings restored, nothing written", signum)

    def quiet(self) -> None:
        """Ignore the signals from here on (while restoring)."""
        if self.install:
            for s in self.SIGNALS:
                signal.signal(s, signal.SIG_IGN)

    def __exit__(self, *exc: object) -> None:
        if self.install:
            for s, h in self._old.items():
                signal.signal(s, h)


# ---------------------------------------------------------------------- the capture
class _Capture:
    def __init__(self, opts: RecordOptions) -> None:
        self.o = opts
        self.notes: list[str] = []
        self.proc = Path(opts.proc_root)
        self.m: dict[str, Any] = {}
        self.child: subprocess.Popen[bytes] | None = None

    def note(self, msg: str) -> None:
        self.notes.append(msg)
        if self.o.on_note:
            self.o.on_note(msg)

    # -------------------------------------------------------------- checks
    def check_output(self) -> Path:
        out = Path(self.o.output)
        if out.exists() and not out.is_dir():
            raise CaptureError(f"{out}: exists and is not a folder")
        if out.is_dir() and any(out.iterdir()) and not self.o.force:
            raise CaptureError(f"{out}: exists and is not empty (use --force to replace it)")
        out.parent.mkdir(parents=True, exist_ok=True)
        return out

    def check_tracefs(self, fs: Tracefs) -> None:
        if fs.exists("current_tracer"):
            tracer = fs.read("current_tracer").strip()
            if tracer not in ("nop", ""):
                raise CaptureError(f"tracer {tracer!r} is active in {fs.root} (current_tracer): another tracing "
                                   "session is running; stop it (echo nop > current_tracer) and retry")
        stale = sorted(p.name for p in fs.path(f"events/{_untraced.GROUP}").glob("*") if p.is_dir())
        if stale:
            if not self.o.force:
                raise CaptureError(f"kprobes {_untraced.GROUP}/{stale[0]} ... are left from an earlier capture: "
                                   f"remove them (echo '-:{_untraced.GROUP}/{stale[0]}' >> {fs.path('kprobe_events')}) "
                                   "or give --force")
            for e in stale:
                en = f"events/{_untraced.GROUP}/{e}/enable"
                if fs.exists(en):
                    fs.write(en, "0")
                fs.write("kprobe_events", f"-:{_untraced.GROUP}/{e}", append=True)
            self.note(f"removed {len(stale)} stale {_untraced.GROUP} kprobes (--force)")

    # -------------------------------------------------------------- static facts
    def write_static(self, fs: Tracefs, d: Path) -> None:
        line, rel, machine = uname_text(self.proc)
        (d / "uname.txt").write_text(line + "\n")
        self.m.update(kernel_release=rel, machine=machine)
        for src, name in (("version", "version.txt"), ("cmdline", "cmdline.txt"), ("cpuinfo", "cpuinfo.txt"),
                          ("iomem", "iomem.txt")):
            try:
                (d / name).write_bytes((self.proc / src).read_bytes())
            except OSError:
                self.note(f"{self.proc / src} not readable: {name} not saved")
        from .folder import upstream_version

        pv = (d / "version.txt").read_text(errors="replace") if (d / "version.txt").exists() else None
        self.m["kernel_version"] = upstream_version(pv, rel)
        ci = (d / "cpuinfo.txt").read_text(errors="replace") if (d / "cpuinfo.txt").exists() else ""
        n = sum(1 for ln in ci.splitlines() if ln.startswith("processor"))
        self.m["nr_cpus"] = n or len(fs.cpus()) or os.cpu_count()
        if fs.exists("trace_options"):
            (d / "trace_options.txt").write_text(fs.read("trace_options"))

    def save_formats(self, fs: Tracefs, d: Path, events: list[tuple[str, str]]) -> None:
        fd = d / "formats"
        fd.mkdir(exist_ok=True)
        for name in ("header_page", "header_event"):
            if fs.exists(f"events/{name}"):
                (fd / name).write_text(fs.read(f"events/{name}"))
        kmem = fs.path("events/kmem")
        names = {("kmem", p.name) for p in kmem.iterdir() if p.is_dir()} if kmem.is_dir() else set()
        for system, name in sorted(names | set(events)):
            rel = f"events/{system}/{name}/format"
            if fs.exists(rel):
                (fd / f"{name}.format").write_text(fs.read(rel))

    # -------------------------------------------------------------- events
    def enable_events(self, fs: Tracefs, ch: Changes) -> list[tuple[str, str]]:
        missing = [e for e in KMEM_EVENTS if not fs.has_event("kmem", e)]
        req = [e for e in REQUIRED_KMEM if e in missing]
        if req:
            raise MissingEventError(f"event kmem:{req[0]} is not available in {fs.root}/events/kmem "
                                    "(kernel without the kmem tracepoints?)")
        for e in missing:
            self.note(f"event kmem:{e} not in this kernel: recorded without it")
        events = [("kmem", e) for e in KMEM_EVENTS if e not in missing]
        self.m["events_missing"] = [f"kmem:{e}" for e in missing]
        if self.o.contention:
            if all(fs.has_event("lock", e) for e in CONTENTION_EVENTS):
                events += [("lock", e) for e in CONTENTION_EVENTS]
            else:
                self.note("--contention: lock:contention_begin/end not in this kernel (5.19+): continuing without")
                self.m["events_missing"] += [f"lock:{e}" for e in CONTENTION_EVENTS]
        for system, name in events:
            ch.set(f"events/{system}/{name}/enable", "1")
        return events

    def add_kprobes(self, fs: Tracefs, ch: Changes) -> list[tuple[str, str]]:
        if not fs.exists("kprobe_events"):
            self.note("--untraced: no kprobe_events in tracefs (CONFIG_KPROBE_EVENTS off): no kprobes")
            self.m.update(kprobes=[], kprobes_missing=["no kprobe_events"])
            return []
        ks, ff = _untraced.read_symbols(self.proc, fs.root)
        probes, notes = _untraced.plan_probes(ks, ff, machine=os.uname().machine)
        for n in notes:
            self.note(n)
        self.m["kprobes_missing"] = list(notes)
        added: list[dict[str, str]] = []
        failed_symbols: set[str] = set()
        for p in probes:
            if p.symbol in failed_symbols:
                continue
            defs = [p.definition()]
            if any(n == "vmemmap" for n, _ in p.args):
                defs.append(_untraced._with_fixed_vmemmap(p).definition())
            for i, d in enumerate(defs):
                try:
                    ch.add_kprobe(d, _untraced.GROUP, p.event)
                except TracefsError as e:
                    if i + 1 < len(defs):
                        continue
                    failed_symbols.add(p.symbol)
                    msg = f"--untraced: kprobe on {p.symbol} refused by the kernel ({str(e).split(': ')[-1]}): not probed"
                    self.note(msg)
                    self.m["kprobes_missing"].append(msg)
                    break
                if i:
                    self.note(f"--untraced: {p.symbol}: @vmemmap_base not accepted; probed without vmemmap=")
                added.append({"event": p.full_name, "symbol": p.symbol, "definition": d})
                break
        events = []
        for a in added:
            g, e = a["event"].split("/")
            if fs.exists(f"events/{g}/{e}/enable"):
                ch.set(f"events/{g}/{e}/enable", "1")
                events.append((g, e))
            else:
                self.note(f"--untraced: {a['event']} defined but has no enable file: not recorded")
        self.m["kprobes"] = [a for a in added if tuple(a["event"].split("/")) in set(events)]
        if not any(p["symbol"] == _untraced.REQUIRED_SYMBOL for p in self.m["kprobes"]):
            self.note(f"--untraced: {_untraced.REQUIRED_SYMBOL} could not be probed: compaction's free scanner "
                      "stays untraced")
        return events

    # -------------------------------------------------------------- sizing
    def rate_probe(self, fs: Tracefs, sig: _Signals) -> dict[str, Any]:
        fs.clear_trace()
        t0 = time.monotonic()
        fs.write("tracing_on", "1")
        try:
            sig.stop.wait(self.o.probe_seconds)  # (not a stop request yet: phase is "setup")
        finally:
            fs.write("tracing_on", "0")
        secs = max(time.monotonic() - t0, 1e-3)
        stats = fs.all_stats()
        max_rate = 0.0
        events = 0
        for s in stats.values():
            ent, ovr, b = int(s.get("entries", 0)), lost_events(s), float(s.get("bytes", 0))
            total_b = b * (ent + ovr) / ent if ent and ovr else b
            max_rate = max(max_rate, total_b / secs)
            events += ent + ovr
        fs.clear_trace()
        return {"seconds": round(secs, 3), "events_per_s": round(events / secs, 1),
                "bytes_per_s_max_cpu": round(max_rate, 1)}

    # -------------------------------------------------------------- running
    def run_workload(self, sig: _Signals) -> None:
        cmd = self.o.command
        if cmd:
            try:
                self.child = subprocess.Popen(cmd)
            except OSError as e:
                raise CaptureError(f"cannot run {cmd[0]!r}: {e.strerror or e}") from None
            while self.child.poll() is None:
                if sig.stop.wait(0.2):
                    try:
                        self.child.wait(COMMAND_GRACE_S)
                    except subprocess.TimeoutExpired:
                        self._end_child()
                    break
            rc = self.child.wait()
            self.m["command_exit"] = {"status": rc if rc >= 0 else None, "signal": -rc if rc < 0 else None}
            if rc < 0:
                self.note(f"command killed by {signal.Signals(-rc).name}: capture kept")
            self.child = None
        elif self.o.duration is not None:
            sig.stop.wait(self.o.duration)
        else:
            while not sig.stop.wait(0.5):
                pass

    def _end_child(self) -> None:
        c = self.child
        if c is None or c.poll() is not None:
            return
        c.terminate()
        try:
            c.wait(5)
        except subprocess.TimeoutExpired:
            c.kill()
            c.wait()

    # -------------------------------------------------------------- main
    def run(self) -> RecordResult:
        o = self.o
        if o.require_root and os.geteuid() != 0:
            raise NotRootError("pagereplay record must run as root (tracefs, /proc/kallsyms and "
                               "/proc/pagetypeinfo need it): try sudo")
        out = self.check_output()
        found = FoundTracefs(o.tracefs) if o.tracefs is not None else find_tracefs(o.tracefs_root, mount=o.mount)
        fs = found.tracefs
        if found.mounted:
            self.note(f"mounted tracefs at {found.mounted} (unmounted at the end)")
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
        ch = Changes(fs)
        done = False
        with _Signals(o.install_signal_handlers) as sig:
            try:
                result = self._capture(fs, ch, sig, tmp, out, found.mounted)
                done = True
                return result
            finally:
                sig.quiet()
                if self.child is not None:
                    self._end_child()
                if not ch.restored:
                    for p in ch.restore():
                        self.note(p)
                if found.mounted:
                    unmount(found.mounted)
                if not done:
                    shutil.rmtree(tmp, ignore_errors=True)

    def _capture(self, fs: Tracefs, ch: Changes, sig: _Signals, tmp: Path, out: Path,
                 mounted: Path | None) -> RecordResult:
        o, m = self.o, self.m
        self.check_tracefs(fs)
        m.update(manifest_version=MANIFEST_VERSION, tool="pagereplay", tool_version=tool_version(),
                 capture_method="python", tracefs=str(fs.root), tracefs_mounted=bool(mounted))
        self.write_static(fs, tmp)
        before_set = [ln.strip() for ln in fs.read("set_event").splitlines() if ln.strip()] if fs.exists("set_event") else []
        self.set_clock(fs, ch)
        events = self.choose_events(fs, ch, before_set)
        self.save_formats(fs, tmp, events)
        mode = self.size_ring_buffers(fs, ch, sig)
        fs.clear_trace()
        self.write_settings(fs, tmp)
        trace_name = "trace.txt.zst" if o.compress else "trace.txt"
        text_bytes, stats = self.trace(fs, sig, tmp / trace_name, mode)
        self.record_overruns(stats)
        m.update(trace_bytes=text_bytes, trace_compression="zstd" if o.compress else "none",
                 struct_page_size=_untraced.STRUCT_PAGE_SIZE)
        if "command_exit" not in m:
            m["command_exit"] = None

        # put tracing back before declaring the folder complete
        problems = ch.restore()
        for p in problems:
            self.note(p)
        m["restore_problems"] = problems
        m["files"] = {"trace": trace_name, "proc_before": "proc_before", "proc_after": "proc_after",
                      "per_cpu_stats": "per_cpu_stats.txt", "formats": "formats", "all": list_files(tmp)}
        m["notes"] = list(self.notes)
        write_manifest(tmp, m)
        _install(tmp, out, self.o.force)
        return RecordResult(out, m, list(self.notes))

    # -------------------------------------------------------------- the steps of _capture
    def set_clock(self, fs: Tracefs, ch: Changes) -> None:
        """Pick a trace clock monotonic across CPUs (changing it empties the buffer: done before
        anything is recorded); tracing is switched off first."""
        m = self.m
        cur, avail = fs.clock()
        clock = choose_clock(avail)
        m.update(trace_clock_original=cur, trace_clock_available=avail)
        if clock is None:
            clock = cur
            self.note(f"no trace clock monotonic across CPUs among {' '.join(avail)}: keeping {cur!r}")
        ch.set("tracing_on", "0")
        if clock and clock != cur:
            ch.set_clock(clock)
        m["trace_clock"] = clock

    def choose_events(self, fs: Tracefs, ch: Changes, before_set: list[str]) -> list[tuple[str, str]]:
        """Enable the kmem events (and the lock / kprobe ones asked for); note the events someone
        else enabled (``before_set``: they are recorded too)."""
        o, m = self.o, self.m
        events = self.enable_events(fs, ch)
        if o.untraced:
            events += self.add_kprobes(fs, ch)
        else:
            m.update(kprobes=[], kprobes_missing=[])
        ours = {f"{s}:{e}" for s, e in events}
        others = [e for e in before_set if e not in ours]
        m["other_events_enabled"] = others
        if others:
            self.note(f"{len(others)} other events are enabled ({others[0]}...): they are recorded too")
        m["events"] = [f"{s}:{e}" for s, e in events]
        m["contention"] = o.contention
        return events

    def size_ring_buffers(self, fs: Tracefs, ch: Changes, sig: _Signals) -> str:
        """Size the per-CPU ring buffers (``size_buffers``: ``--buffer-mb``, else the rate probe);
        returns the mode, "snapshot" or "stream"."""
        o, m = self.o, self.m
        m["buffer_size_kb_original"] = fs.buffer_sizes_kb()
        ncpus = len(fs.cpus()) or int(m.get("nr_cpus") or 1)
        probe: dict[str, Any] = {}
        if o.buffer_mb is None:
            probe = self.rate_probe(fs, sig)
        avail_kb = mem_available_kb(self.proc)
        mode, kb, source, details = size_buffers(rate_bytes_per_s=probe.get("bytes_per_s_max_cpu", 0.0),
                                                 duration=o.duration, ncpus=ncpus, mem_avail_kb=avail_kb,
                                                 buffer_mb=o.buffer_mb)
        if o.stream is not None:
            mode = "stream" if o.stream else "snapshot"
        cap = details.get("cap_kb_per_cpu")
        if o.buffer_mb is not None and cap is not None and kb > cap:
            self.note(f"--buffer-mb {o.buffer_mb} x {ncpus} CPUs is over {MEM_FRACTION:.0%} of MemAvailable")
        probe.update(details, mem_available_kb=avail_kb)
        m.update(mode=mode, buffer_size_kb=kb, buffer_source=source, rate_probe=probe or None)
        ch.set_buffer_kb(kb)
        return mode

    def write_settings(self, fs: Tracefs, d: Path) -> None:
        """The tracing settings in force: clock, enabled events, kprobe definitions."""
        (d / "trace_clock.txt").write_text(fs.read("trace_clock"))
        if fs.exists("set_event"):
            (d / "set_event.txt").write_text(fs.read("set_event"))
        if self.m.get("kprobes"):
            (d / "kprobe_events.txt").write_text("".join(p["definition"] + "\n" for p in self.m["kprobes"]))

    def trace(self, fs: Tracefs, sig: _Signals, trace_path: Path, mode: str) -> tuple[int, dict[int, dict[str, Any]]]:
        """Snapshot /proc, trace while the workload runs, snapshot again and write the trace
        (streamed from ``trace_pipe`` while tracing, or the ring buffer read after); returns the
        text bytes written and the per-CPU ring-buffer stats."""
        o, m, d = self.o, self.m, trace_path.parent
        writer = _TraceWriter(trace_path, o.compress)
        streamer = None
        try:
            missing = snapshot_proc(self.proc, d / "proc_before")
            if missing:
                self.note(f"/proc/{', /proc/'.join(missing)} not readable: not in the snapshots")
            if mode == "stream":
                streamer = _Streamer(fs.path("trace_pipe"), writer)
                streamer.start()
            m.update(start_time=_now_iso(), start_uptime_s=_uptime(self.proc), command=o.command)
            t0 = time.monotonic()
            sig.phase = "tracing"
            fs.write("tracing_on", "1")
            try:
                self.run_workload(sig)
            finally:
                fs.write("tracing_on", "0")
                sig.phase = "finishing"
            m.update(stop_time=_now_iso(), stop_uptime_s=_uptime(self.proc),
                     duration_s=round(time.monotonic() - t0, 3), interrupted=sig.interrupted)
            snapshot_proc(self.proc, d / "proc_after")
            stats = fs.all_stats()
            (d / "per_cpu_stats.txt").write_text(fs.stats_text())
            if streamer is not None:
                streamer.finish()
                streamer = None
            else:
                with open(fs.path("trace"), "rb") as src:
                    while chunk := src.read(COPY_CHUNK):
                        writer.write(chunk)
        finally:
            if streamer is not None:
                streamer.draining.set()
                streamer.join(5)
            writer.close()
        return writer.text_bytes, stats

    def record_overruns(self, stats: dict[int, dict[str, Any]]) -> None:
        """The events each CPU's ring buffer lost (overruns, drops), into the manifest and a note."""
        m = self.m
        per_cpu = {str(c): lost_events(s) for c, s in stats.items()}
        total = sum(per_cpu.values())
        m["overruns"] = {"total": total, "per_cpu": per_cpu}
        m["cpu_stats"] = {str(c): s for c, s in stats.items()}
        if total:
            worst = max(per_cpu, key=lambda c: per_cpu[c])
            self.note(f"ring buffer lost {total:,} events (most on CPU {worst}: {per_cpu[worst]:,}); the capture is "
                      "usable, the replay treats the gap as a hole (a larger --buffer-mb avoids it)")


def _install(tmp: Path, out: Path, force: bool) -> None:
    """Rename the completed temporary folder to ``out`` (replacing it with ``force``)."""
    old = None
    if out.exists() and any(out.iterdir()):
        if not force:  # appeared while we were tracing
            raise CaptureError(f"{out}: appeared while tracing and is not empty (use --force)")
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.rename(out, old / "x")
    elif out.exists():
        out.rmdir()
    os.rename(tmp, out)
    os.chmod(out, 0o755)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def record(opts: RecordOptions) -> RecordResult:
    """Capture a trace into ``opts.output`` (see the module docstring)."""
    return _Capture(opts).run()


__all__ = ["CONTENTION_EVENTS", "KMEM_EVENTS", "RecordOptions", "RecordResult", "record", "size_buffers"]
