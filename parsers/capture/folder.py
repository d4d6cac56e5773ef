"""Reading a capture folder: the trace in it, its snapshots, the kernel it came from, its overruns.

A capture folder is what ``pagereplay record`` (or its ``--script``) writes, and also the layout
of the shared reference captures: a trace file, ``proc_before/`` and ``proc_after/`` (boot
traces: ``proc_after_boot/``) with zoneinfo/buddyinfo/pagetypeinfo/meminfo/vmstat,
``uname.txt``, ``version.txt``, ``per_cpu_stats.txt``, ``trace_clock.txt``, ``formats/`` and,
for ours, ``manifest.json``.

The trace file is chosen in this order (the first that exists; ``manifest.json``'s
``files.trace`` wins when it names a file that exists):

1. ``trace.txt.zst``, ``trace.txt``, ``trace.txt.gz``        tracefs ``trace``/``trace_pipe`` text
2. ``trace-cmd-report.txt.zst``, ``trace-cmd-report.txt``    ``trace-cmd report`` text
3. ``perf-script.txt.zst``, ``perf-script.txt``              ``perf script`` text
4. ``trace.dat.zst``, ``trace.dat``                          trace-cmd binary (``binary=True``)
5. ``perf.data.zst``, ``perf.data``                          perf binary (``binary=True``)

Text comes first (the reference folders keep the text their binary twin printed); a folder with
only a binary trace is read by the binary readers (``binary=True``).

``pagereplay parse|info|replay DIR`` read a folder through :func:`folder_metadata` (what goes into
the parsed table's metadata) and the CLI's snapshot defaults (``proc_before``/``proc_after``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .errors import CaptureFolderError
from .tracefs import lost_events, parse_cpu_stats, parse_trace_clock

#: (file name, format, binary) in order of preference
TRACE_CANDIDATES: tuple[tuple[str, str, bool], ...] = (
    ("trace.txt.zst", "ftrace", False),
    ("trace.txt", "ftrace", False),
    ("trace.txt.gz", "ftrace", False),
    ("trace-cmd-report.txt.zst", "trace-cmd", False),
    ("trace-cmd-report.txt", "trace-cmd", False),
    ("perf-script.txt.zst", "perf", False),
    ("perf-script.txt", "perf", False),
    ("trace.dat.zst", "trace-cmd-binary", True),
    ("trace.dat", "trace-cmd-binary", True),
    ("perf.data.zst", "perf-binary", True),
    ("perf.data", "perf-binary", True),
)
SNAPSHOT_FILES = ("zoneinfo", "buddyinfo", "pagetypeinfo", "meminfo", "vmstat")
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class CaptureFolder:
    """What one capture folder holds (paths are absolute; ``None`` where the folder lacks it)."""

    path: Path
    trace: Path
    trace_format: str                  # ftrace | trace-cmd | perf | trace-cmd-binary | perf-binary
    binary: bool                       # the trace is trace.dat / perf.data: the parser needs text
    other_traces: tuple[Path, ...]     # further trace files present, in order of preference
    proc_before: Path | None
    proc_after: Path | None
    after_is_boot: bool                # proc_after is proc_after_boot/ (a boot trace has no "before")
    kernel_release: str | None         # `uname -r`, e.g. 6.1.0-57-amd64
    kernel_version: str | None         # upstream version when it can be told, e.g. 6.1.192
    overruns: int | None               # events lost in the ring buffers (None: not recorded)
    overruns_per_cpu: tuple[tuple[int, int], ...]
    trace_clock: str | None
    nr_cpus: int | None
    manifest: Mapping[str, Any] | None = field(default=None, compare=False, hash=False)

    @property
    def has_snapshots(self) -> bool:
        return self.proc_before is not None or self.proc_after is not None

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path), "trace": str(self.trace), "trace_format": self.trace_format,
            "binary": self.binary, "other_traces": [str(p) for p in self.other_traces],
            "proc_before": str(self.proc_before) if self.proc_before else None,
            "proc_after": str(self.proc_after) if self.proc_after else None,
            "after_is_boot": self.after_is_boot, "kernel_release": self.kernel_release,
            "kernel_version": self.kernel_version, "overruns": self.overruns,
            "overruns_per_cpu": dict(self.overruns_per_cpu), "trace_clock": self.trace_clock,
            "nr_cpus": self.nr_cpus,
        }


def _read(p: Path) -> str | None:
    try:
        return p.read_text(errors="replace")
    except OSError:
        return None


def release_from_uname(text: str) -> str | None:
    """``uname -a`` (``Linux host 6.1.0-57-amd64 #1 SMP ...``) or ``uname -r`` text -> the release."""
    f = text.split()
    if len(f) >= 3 and f[0] == "Linux":
        return f[2]
    if len(f) == 1 and re.match(r"\d+\.\d+", f[0]):
        return f[0]
    return None


def release_from_proc_version(text: str) -> str | None:
    """``Linux version 6.1.0-57-amd64 (...)`` -> ``6.1.0-57-amd64``."""
    m = re.match(r"\s*Linux version (\S+)", text)
    return m.group(1) if m else None


def upstream_version(proc_version: str | None, release: str | None) -> str | None:
    """The upstream kernel version: Debian prints it after the build number at the end of
    /proc/version (``... #1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3 (2025-..)``; the compiler's
    ``(Debian 12.2.0-14)`` before it is not it); otherwise the leading ``X.Y[.Z]`` of the release."""
    if proc_version and "#" in proc_version:
        m = re.search(r"\b(?:Debian|Ubuntu)\s+(\d+\.\d+(?:\.\d+)?)", proc_version.rsplit("#", 1)[1])
        if m:
            return m.group(1)
    if release:
        m = re.match(r"(\d+\.\d+(?:\.\d+)?)", release)
        if m:
            v = m.group(1)
            # Debian's ABI releases (6.1.0-57) carry a .0 that is not the upstream patch level
            if proc_version and "Debian" in proc_version and v.endswith(".0"):
                return v[:-2]
            return v
    return None


def parse_per_cpu_stats(text: str) -> dict[int, dict[str, float | int]]:
    """``per_cpu_stats.txt`` (``== .../per_cpu/cpuN`` headers, each followed by that CPU's stats)."""
    out: dict[int, dict[str, float | int]] = {}
    cpu: int | None = None
    buf: list[str] = []

    def flush() -> None:
        if cpu is not None:
            out[cpu] = parse_cpu_stats("\n".join(buf))

    for line in text.splitlines():
        m = re.match(r"^==\s*\S*?cpu(\d+)\s*$", line.strip())
        if m:
            flush()
            cpu, buf = int(m.group(1)), []
        elif cpu is not None:
            buf.append(line)
    flush()
    return out


def _snapshot_dir(p: Path) -> Path | None:
    return p if p.is_dir() and any((p / f).is_file() for f in SNAPSHOT_FILES) else None


def read_manifest(folder: Path) -> dict[str, Any] | None:
    p = folder / MANIFEST
    if not p.exists():
        return None
    try:
        m = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise CaptureFolderError(f"{p}: unreadable manifest ({e})") from None
    if not isinstance(m, dict):
        raise CaptureFolderError(f"{p}: unreadable manifest (not a JSON object)")
    return m


def read_capture_folder(path: str | Path) -> CaptureFolder:
    """Describe the capture folder ``path``; raise ``CaptureFolderError`` if it holds no trace."""
    d = Path(path)
    if not d.is_dir():
        raise CaptureFolderError(f"{d}: not a folder")
    d = d.resolve()
    manifest = read_manifest(d)
    found = [(d / n, fmt, binary) for n, fmt, binary in TRACE_CANDIDATES if (d / n).is_file()]
    if manifest:
        named = (manifest.get("files") or {}).get("trace")
        if named and (d / named).is_file():
            fmt, binary = next(((f, b) for n, f, b in TRACE_CANDIDATES if n == named), ("ftrace", False))
            found = [(d / named, fmt, binary)] + [x for x in found if x[0] != d / named]
    if not found:
        names = ", ".join(n for n, _, _ in TRACE_CANDIDATES[:7])
        raise CaptureFolderError(f"{d}: no trace file in this folder (looked for {names}, ...)")
    trace, fmt, binary = found[0]

    before = _snapshot_dir(d / "proc_before")
    after = _snapshot_dir(d / "proc_after")
    boot = False
    if after is None and _snapshot_dir(d / "proc_after_boot") is not None:
        after, boot = d / "proc_after_boot", True

    m = manifest or {}
    proc_version = _read(d / "version.txt")
    release = m.get("kernel_release") or None
    if not release:
        u = _read(d / "uname.txt")
        release = release_from_uname(u) if u else None
    if not release and proc_version:
        release = release_from_proc_version(proc_version)
    version = m.get("kernel_version") or upstream_version(proc_version or m.get("proc_version"), release)

    per_cpu: dict[int, int] = {}
    total: int | None = None
    if isinstance(m.get("overruns"), Mapping):
        pc = m["overruns"].get("per_cpu") or {}
        per_cpu = {int(k): int(v) for k, v in pc.items()}
        total = int(m["overruns"].get("total", sum(per_cpu.values())))
    else:
        st = _read(d / "per_cpu_stats.txt")
        if st:
            stats = parse_per_cpu_stats(st)
            if stats:
                per_cpu = {c: lost_events(s) for c, s in stats.items()}
                total = sum(per_cpu.values())

    clock = m.get("trace_clock") or None
    if not clock:
        tc = _read(d / "trace_clock.txt")
        if tc:
            clock = parse_trace_clock(tc)[0]
    nr_cpus = m.get("nr_cpus")
    if nr_cpus is None:
        ci = _read(d / "cpuinfo.txt")
        if ci:
            nr_cpus = sum(1 for ln in ci.splitlines() if re.match(r"processor\s*:", ln)) or None
    return CaptureFolder(
        path=d, trace=trace, trace_format=fmt, binary=binary, other_traces=tuple(p for p, _, _ in found[1:]),
        proc_before=before, proc_after=after, after_is_boot=boot, kernel_release=release,
        kernel_version=version, overruns=total, overruns_per_cpu=tuple(sorted(per_cpu.items())),
        trace_clock=clock, nr_cpus=int(nr_cpus) if nr_cpus is not None else None,
        manifest=MappingProxyType(manifest) if manifest is not None else None,
    )


#: the parsed table's metadata keys a capture folder sets (``pagereplay.`` prefixed): the running
#: kernel as ``uname -r`` printed it (``6.18.15+deb13-amd64``: what picks the kernel profile), its
#: upstream version (``6.18.15``) and the folder's description (``CaptureFolder.as_dict``: snapshots,
#: overruns per CPU, trace clock)
META_KERNEL_RELEASE = "kernel_release"
META_KERNEL_UPSTREAM = "kernel_upstream_version"
META_CAPTURE = "capture"


def folder_metadata(folders: list[CaptureFolder]) -> dict[str, str]:
    """The metadata (keys without the ``pagereplay.`` prefix) of a parse whose inputs came from
    ``folders`` (empty: none); several folders' values are joined by commas."""
    if not folders:
        return {}

    def join(vals: list[str | None]) -> str:
        return ",".join(dict.fromkeys(v for v in vals if v))

    return {
        META_KERNEL_RELEASE: join([f.kernel_release for f in folders]),
        META_KERNEL_UPSTREAM: join([f.kernel_version for f in folders]),
        META_CAPTURE: json.dumps([f.as_dict() for f in folders], sort_keys=True),
    }


def capture_info(md: Mapping[str, str]) -> dict[str, Any] | None:
    """From a parsed table's metadata (``pagereplay.`` keys): the capture folders it came from, the
    kernel, and the ring-buffer overruns (total, per CPU; ``None``: not recorded); ``None`` when the
    table was not parsed from a capture folder."""
    raw = md.get("pagereplay." + META_CAPTURE)
    if not raw:
        return None
    try:
        caps = json.loads(raw)
    except ValueError:
        return None
    per_cpu: dict[str, int] = {}
    for c in caps:
        for k, v in (c.get("overruns_per_cpu") or {}).items():
            per_cpu[k] = per_cpu.get(k, 0) + int(v)
    known = [int(c["overruns"]) for c in caps if c.get("overruns") is not None]
    return {"folders": [c.get("path") for c in caps],
            "kernel_release": md.get("pagereplay." + META_KERNEL_RELEASE, ""),
            "kernel_upstream_version": md.get("pagereplay." + META_KERNEL_UPSTREAM, ""),
            "overruns": sum(known) if known else None, "overruns_per_cpu": per_cpu}


def is_capture_folder(path: str | Path) -> bool:
    """A folder holding one of the trace files of ``TRACE_CANDIDATES``."""
    d = Path(path)
    return d.is_dir() and any((d / n).is_file() for n, _, _ in TRACE_CANDIDATES)


__all__ = [
    "META_CAPTURE", "META_KERNEL_RELEASE", "META_KERNEL_UPSTREAM", "TRACE_CANDIDATES", "CaptureFolder",
    "capture_info", "folder_metadata", "is_capture_folder", "read_capture_folder", "upstream_version",
]  # fmt: skip
