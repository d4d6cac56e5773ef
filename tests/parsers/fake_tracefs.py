"""A fake tracefs (and /proc) for the capture tests: a temporary tree with the files the kernel
provides, and ``KernelLikeTracefs``, which gives the writes the kernel's semantics (the bracketed
``trace_clock``, per-CPU ``buffer_size_kb``, ``kprobe_events`` creating and removing event
folders, ``set_event`` following the ``enable`` files, ``tracing_on`` 1 -> 0 "recording" a canned
trace into ``trace`` and ``trace_pipe`` and the per-CPU stats).

``plain=True`` trees are plain files only (for the generated sh script, which writes with ``echo``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from parsers.capture.errors import TracefsError
from parsers.capture.record import KMEM_EVENTS
from parsers.capture.tracefs import Tracefs

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample_traces" / "debian12-6.1-small"
CLOCKS = "[local] global counter uptime perf mono mono_raw boot x86-tsc"

FORMAT = """name: {name}
ID: {id}
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:unsigned long pfn;\toffset:8;\tsize:8;\tsigned:0;
\tfield:unsigned int order;\toffset:16;\tsize:4;\tsigned:0;

print fmt: "page=%p pfn=0x%lx order=%d", REC->pfn, REC->pfn, REC->order
"""

KPROBE_TRACE = (
    "            init-1       [001] d..2.     7.900000: isolate_free_page: (__isolate_free_page+0x0/0x1e0) "
    "page=0xffffea0000423000 order=3 vmemmap=0xffffea0000000000\n"
    "            init-1       [001] d..2.     7.900001: isolate_free_page_ret: "
    "(isolate_freepages_block+0x2b4/0x5a0 <- __isolate_free_page) ret=8\n"
)

STATS = """entries: {entries}
overrun: {overrun}
commit overrun: 0
bytes: {bytes}
oldest event ts:     7.830146
now ts:     8.434767
dropped events: {dropped}
read events: 0
"""


def sample_trace_text() -> bytes:
    import zstandard

    return zstandard.ZstdDecompressor().stream_reader(open(SAMPLE / "trace.txt.zst", "rb")).read()


def make_tracefs(root: Path, *, cpus: int = 2, clocks: str = CLOCKS, kmem: tuple[str, ...] = KMEM_EVENTS,
                 lock: bool = True, kprobes: bool = True, buffer_kb: str = "1408",
                 tracer: str = "nop", set_event: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "trace").write_text("# tracer: nop\n#\n")
    (root / "trace_pipe").write_text("")
    (root / "tracing_on").write_text("1\n")
    (root / "trace_clock").write_text(clocks + "\n")
    (root / "buffer_size_kb").write_text(buffer_kb + "\n")
    (root / "current_tracer").write_text(tracer + "\n")
    (root / "set_event").write_text(set_event)
    (root / "trace_options").write_text("print-parent\nnosym-offset\nirq-info\nnorecord-tgid\noverwrite\n")
    (root / "trace_marker").write_text("")
    if kprobes:
        (root / "kprobe_events").write_text("")
    ev = root / "events"
    ev.mkdir(exist_ok=True)
    (ev / "header_page").write_text("\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n")
    (ev / "header_event").write_text("# compressed entry header\n\ttype_len    :    5 bits\n")
    for i, name in enumerate(kmem):
        d = ev / "kmem" / name
        d.mkdir(parents=True, exist_ok=True)
        (d / "enable").write_text("0\n")
        (d / "format").write_text(FORMAT.format(name=name, id=540 + i))
    if lock:
        for i, name in enumerate(("contention_begin", "contention_end")):
            d = ev / "lock" / name
            d.mkdir(parents=True, exist_ok=True)
            (d / "enable").write_text("0\n")
            (d / "format").write_text(FORMAT.format(name=name, id=600 + i))
    exp = buffer_kb.split()[-1].rstrip(")") if "expanded" in buffer_kb else buffer_kb
    for c in range(cpus):
        d = root / "per_cpu" / f"cpu{c}"
        d.mkdir(parents=True, exist_ok=True)
        (d / "stats").write_text(STATS.format(entries=0, overrun=0, bytes=0, dropped=0))
        (d / "buffer_size_kb").write_text(exp + "\n")
    return root


def make_proc(root: Path, *, cpus: int = 2, kallsyms: tuple[str, ...] = ("__isolate_free_page", "__putback_isolated_page",
              "take_page_off_buddy", "put_page_back_buddy", "split_free_page"), vmemmap: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for f in ("zoneinfo", "buddyinfo", "pagetypeinfo", "meminfo", "vmstat"):
        (root / f).write_bytes((SAMPLE / "proc_before" / f).read_bytes())
    (root / "version").write_text("Linux version 6.1.0-57-amd64 (debian-kernel@lists.debian.org) (gcc-12 (Debian "
                                  "12.2.0-14+deb12u1) 12.2.0, GNU ld (GNU Binutils for Debian) 2.40) #1 SMP "
                                  "PREEMPT_DYNAMIC Debian 6.1.192-3 (2025-12-01)\n")
    (root / "cmdline").write_text("console=ttyS0 trace_clock=global\n")
    (root / "cpuinfo").write_text("".join(f"processor\t: {c}\nmodel name\t: QEMU\n\n" for c in range(cpus)))
    (root / "iomem").write_text("00000000-00000fff : Reserved\n00100000-3ffdffff : System RAM\n")
    (root / "uptime").write_text("12.34 20.00\n")
    k = root / "sys" / "kernel"
    k.mkdir(parents=True, exist_ok=True)
    (k / "ostype").write_text("Linux\n")
    (k / "hostname").write_text("guest\n")
    (k / "osrelease").write_text("6.1.0-57-amd64\n")
    (k / "version").write_text("#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3 (2025-12-01)\n")
    lines = [f"ffffffff8120{i:04x} T {s}\n" for i, s in enumerate(kallsyms)]
    lines.append("ffffffff81ff0000 t __isolate_free_page.cold\n")
    if vmemmap:
        lines.append("ffffffff82a0b0c8 D vmemmap_base\n")
    (root / "kallsyms").write_text("".join(lines))
    return root


def tree_state(root: Path, *, skip: tuple[str, ...] = ("trace", "trace_pipe")) -> dict[str, str]:
    """Every file under ``root`` -> sha256 of its content (the kernel-owned data files skipped)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_file() and rel not in skip and not rel.endswith("/stats"):
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()[:16]
        elif p.is_dir():
            out[rel + "/"] = "dir"
    return out


class KernelLikeTracefs(Tracefs):
    """``Tracefs`` over a fake tree, with the kernel's meaning for the writes a capture makes."""

    def __init__(self, root: Path, *, trace_text: bytes | None = None, lost: dict[int, int] | None = None,
                 refuse_vmemmap: bool = False, symbols: set[str] | None = None,
                 on_tracing_on: object = None) -> None:
        super().__init__(root)
        self.trace_text = sample_trace_text() + KPROBE_TRACE.encode() if trace_text is None else trace_text
        self.lost = lost or {}
        self.refuse_vmemmap = refuse_vmemmap
        self.symbols = symbols
        self.writes: list[tuple[str, str]] = []
        self.on_tracing_on = on_tracing_on  # callable(value) run after each tracing_on write

    # the kernel's view of set_event: every enabled event, as system:name
    def _sync_set_event(self) -> None:
        lines = []
        for en in sorted(self.path("events").glob("*/*/enable")):
            if en.read_text().strip() == "1":
                lines.append(f"{en.parent.parent.name}:{en.parent.name}\n")
        self.path("set_event").write_text("".join(lines))

    def write(self, rel: str, value: str, *, append: bool = False) -> None:
        v = value.strip()
        self.writes.append((rel, v))
        if rel == "trace_clock":
            names = [n.strip("[]") for n in self.read(rel).split()]
            if v not in names:
                raise TracefsError(f"cannot write {v!r} to {self.path(rel)}: Invalid argument")
            self.path(rel).write_text(" ".join(f"[{n}]" if n == v else n for n in names) + "\n")
            self.path("trace").write_text("")
            return
        if rel == "buffer_size_kb":
            if not v.isdigit():
                raise TracefsError(f"cannot write {v!r} to {self.path(rel)}: Invalid argument")
            super().write(rel, v)
            for c in self.cpus():
                super().write(f"per_cpu/cpu{c}/buffer_size_kb", v)
            return
        if rel.startswith("per_cpu/") and rel.endswith("buffer_size_kb"):
            super().write(rel, v)
            sizes = set(self.buffer_sizes_kb().values())
            super().write("buffer_size_kb", str(sizes.pop()) if len(sizes) == 1 else "X")
            return
        if rel == "kprobe_events":
            self._kprobe(v)
            return
        if rel.endswith("/enable"):
            if v not in ("0", "1"):
                raise TracefsError(f"cannot write {v!r} to {self.path(rel)}: Invalid argument")
            super().write(rel, v)
            self._sync_set_event()
            return
        if rel == "tracing_on":
            super().write(rel, v)
            if v == "1":
                self._record()
            if callable(self.on_tracing_on):
                self.on_tracing_on(v)
            return
        super().write(rel, value, append=append)

    def _kprobe(self, line: str) -> None:
        current = self.kprobe_events()
        if line.startswith("-:"):
            g, e = line[2:].split("/")
            d = self.path(f"events/{g}/{e}")
            if not d.is_dir():
                raise TracefsError(f"cannot write {line!r} to {self.path('kprobe_events')}: No such file or directory")
            if (d / "enable").read_text().strip() == "1":
                raise TracefsError(f"cannot write {line!r} to {self.path('kprobe_events')}: Device or resource busy")
            for f in d.iterdir():
                f.unlink()
            d.rmdir()
            if not any(d.parent.iterdir()):
                d.parent.rmdir()
            keep = [ln for ln in current if not ln.split()[0].endswith(f":{g}/{e}")]
            self.path("kprobe_events").write_text("".join(ln + "\n" for ln in keep))
            return
        head, sym, *args = line.split()
        g, e = head.split(":", 1)[1].split("/")
        if self.symbols is not None and sym not in self.symbols:
            raise TracefsError(f"cannot write {line!r} to {self.path('kprobe_events')}: No such file or directory")
        if self.refuse_vmemmap and any("@vmemmap_base" in a for a in args):
            raise TracefsError(f"cannot write {line!r} to {self.path('kprobe_events')}: Invalid argument")
        d = self.path(f"events/{g}/{e}")
        if d.exists():
            raise TracefsError(f"cannot write {line!r} to {self.path('kprobe_events')}: File exists")
        d.mkdir(parents=True)
        (d / "enable").write_text("0\n")
        (d / "format").write_text(FORMAT.format(name=e, id=2000 + len(current)))
        self.path("kprobe_events").write_text("".join(ln + "\n" for ln in current + [line]))

    def clear_trace(self) -> None:
        self.path("trace").write_text("")
        self.path("trace_pipe").write_text("")
        for c in self.cpus():
            self.path(f"per_cpu/cpu{c}/stats").write_text(STATS.format(entries=0, overrun=0, bytes=0, dropped=0))

    def _record(self) -> None:
        """tracing_on=1: the canned trace "happens" (into trace and trace_pipe, counted in the stats)."""
        self.path("trace").write_bytes(self.trace_text)
        self.path("trace_pipe").write_bytes(self.trace_text)
        n = self.trace_text.count(b"\n")
        for c in self.cpus():
            lost = self.lost.get(c, 0)
            self.path(f"per_cpu/cpu{c}/stats").write_text(
                STATS.format(entries=n // max(len(self.cpus()), 1), overrun=lost, bytes=40 * n, dropped=0))
