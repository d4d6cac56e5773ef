"""tracefs: find or mount it, read and write its files, and undo every change made.

``Tracefs`` is a thin layer over a tracefs root directory (``/sys/kernel/tracing`` on a real
machine, a temporary tree in the tests).  ``Changes`` records each setting a capture changes,
with the value it had, and ``Changes.restore()`` puts them back in reverse order whatever
happened (an exception, a signal, a killed command): it never raises, it reports.

Kernel semantics that matter here (``kernel/trace/trace.c``):

- ``trace_clock`` reads ``local [global] counter ...`` (the selected clock in brackets) and is
  set by writing one name; changing it resets the ring buffer.
- ``buffer_size_kb`` is the per-CPU size; before the first use it reads ``7 (expanded: 1408)``
  (the buffer is still minimal and will grow to the expanded size).  Writing it resizes (and
  empties) every per-CPU buffer; ``per_cpu/cpuN/buffer_size_kb`` sizes one CPU and the top-level
  file then reads ``X``.
- opening ``trace`` with ``O_TRUNC`` empties the ring buffer.
- ``kprobe_events`` is appended to (``p:GROUP/EVENT SYMBOL ARGS``), and a probe is removed by
  appending ``-:GROUP/EVENT`` (only when disabled).
- ``per_cpu/cpuN/stats`` holds ``entries:``, ``overrun:``, ``commit overrun:``, ``bytes:``,
  ``oldest event ts:``, ``now ts:``, ``dropped events:``, ``read events:``.
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import TracefsError

#: where tracefs is found, in order (the debugfs path is the pre-4.1 location, still automounted)
TRACEFS_CANDIDATES = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")

#: clocks that are monotonic across CPUs, preferred first.  ``global`` is what the reference
#: captures used; ``mono``/``boot``/``mono_raw`` are ktime-based (monotonic across CPUs on one
#: clocksource); ``counter`` is an atomic counter (ordered, but not time: timestamps are counts).
CLOCK_PREFERENCE = ("global", "mono", "boot", "mono_raw", "counter")

_STATS_KEYS = {
    "entries": "entries",
    "overrun": "overrun",
    "commit overrun": "commit_overrun",
    "bytes": "bytes",
    "oldest event ts": "oldest_event_ts",
    "now ts": "now_ts",
    "dropped events": "dropped_events",
    "read events": "read_events",
}


#: the kernel lockdown state (security/lockdown): ``none integrity [confidentiality]``
LOCKDOWN_FILE = Path("/sys/kernel/security/lockdown")


def _why(e: OSError) -> str:
    """An OSError's reason; for EPERM under lockdown ``confidentiality`` (LOCKDOWN_TRACEFS and
    LOCKDOWN_KPROBES, security/lockdown/lockdown.c), that reason, since root alone cannot lift it."""
    why = e.strerror or str(e)
    if e.errno == errno.EPERM:
        try:
            mode, _ = parse_trace_clock(LOCKDOWN_FILE.read_text())
        except OSError:
            mode = None
        if mode == "confidentiality":
            why += f" (kernel lockdown is 'confidentiality' ({LOCKDOWN_FILE}): it forbids tracefs and kprobes)"
    return why


def is_tracefs_root(path: Path) -> bool:
    """A directory that looks like a tracefs mount (or instance): it has ``trace`` and ``events/``."""
    return (path / "trace").exists() and (path / "events").is_dir() and (path / "tracing_on").exists()


def parse_trace_clock(text: str) -> tuple[str | None, list[str]]:
    """``'local [global] counter'`` -> (``'global'``, ``['local', 'global', 'counter']``)."""
    current = None
    names = []
    for tok in text.split():
        if tok.startswith("[") and tok.endswith("]"):
            tok = tok[1:-1]
            current = tok
        names.append(tok)
    return current, names


def choose_clock(available: Iterable[str], preference: Iterable[str] = CLOCK_PREFERENCE) -> str | None:
    """The first clock of ``preference`` that the kernel offers (``None``: none of them)."""
    av = set(available)
    return next((c for c in preference if c in av), None)


def parse_buffer_size_kb(text: str) -> tuple[int | None, int | None]:
    """``'1408'`` -> (1408, None); ``'7 (expanded: 1408)'`` -> (7, 1408); ``'X'`` -> (None, None)."""
    m = re.match(r"\s*(\d+)(?:\s*\(expanded:\s*(\d+)\))?", text)
    if not m:
        return None, None
    return int(m.group(1)), int(m.group(2)) if m.group(2) else None


def parse_cpu_stats(text: str) -> dict[str, float | int]:
    """One ``per_cpu/cpuN/stats`` file -> ``{"entries": .., "overrun": .., "bytes": .., ...}``."""
    out: dict[str, float | int] = {}
    for line in text.splitlines():
        if ":" not in line:
            continue
        k, _, v = line.partition(":")
        key = _STATS_KEYS.get(k.strip())
        if key is None:
            continue
        v = v.strip()
        try:
            out[key] = float(v) if "." in v else int(v)
        except ValueError:
            continue
    return out


def lost_events(stats: dict[str, float | int]) -> int:
    """Events a per-CPU buffer lost: overwritten (``overrun``), dropped when full, commit overruns."""
    return int(stats.get("overrun", 0)) + int(stats.get("dropped_events", 0)) + int(stats.get("commit_overrun", 0))


class Tracefs:
    """File access to one tracefs root.  Every error is a one-line ``TracefsError`` naming the file."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"Tracefs({str(self.root)!r})"

    def path(self, rel: str) -> Path:
        return self.root / rel

    def exists(self, rel: str) -> bool:
        return self.path(rel).exists()

    def read(self, rel: str) -> str:
        try:
            return self.path(rel).read_text(errors="replace")
        except OSError as e:
            raise TracefsError(f"cannot read {self.path(rel)}: {_why(e)}") from None

    def read_bytes(self, rel: str) -> bytes:
        try:
            return self.path(rel).read_bytes()
        except OSError as e:
            raise TracefsError(f"cannot read {self.path(rel)}: {_why(e)}") from None

    def write(self, rel: str, value: str, *, append: bool = False) -> None:
        """Write ``value`` (plus a newline) the way ``echo value > file`` does (``>>`` with append)."""
        flags = os.O_WRONLY | (os.O_APPEND if append else os.O_TRUNC)
        data = (value if value.endswith("\n") else value + "\n").encode()
        try:
            fd = os.open(self.path(rel), flags)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        except OSError as e:
            raise TracefsError(f"cannot write {value.strip()!r} to {self.path(rel)}: {_why(e)}") from None

    def clear_trace(self) -> None:
        """Empty the ring buffer (open ``trace`` with O_TRUNC, as ``echo > trace`` does)."""
        try:
            os.close(os.open(self.path("trace"), os.O_WRONLY | os.O_TRUNC))
        except OSError as e:
            raise TracefsError(f"cannot clear {self.path('trace')}: {_why(e)}") from None

    # ------------------------------------------------------------------ what is there
    def event_rel(self, system: str, name: str) -> str:
        return f"events/{system}/{name}"

    def has_event(self, system: str, name: str) -> bool:
        return self.exists(f"events/{system}/{name}/enable")

    def cpus(self) -> list[int]:
        """CPUs with a per-CPU buffer (``per_cpu/cpuN``), ascending."""
        d = self.path("per_cpu")
        if not d.is_dir():
            return []
        return sorted(int(p.name[3:]) for p in d.iterdir() if re.fullmatch(r"cpu\d+", p.name))

    def clock(self) -> tuple[str | None, list[str]]:
        return parse_trace_clock(self.read("trace_clock"))

    def cpu_stats(self, cpu: int) -> dict[str, float | int]:
        return parse_cpu_stats(self.read(f"per_cpu/cpu{cpu}/stats"))

    def all_stats(self) -> dict[int, dict[str, float | int]]:
        return {c: self.cpu_stats(c) for c in self.cpus() if self.exists(f"per_cpu/cpu{c}/stats")}

    def stats_text(self) -> str:
        """All per-CPU stats in the reference layout (``== <dir>`` then the file), for per_cpu_stats.txt."""
        parts = []
        for c in self.cpus():
            rel = f"per_cpu/cpu{c}"
            if self.exists(f"{rel}/stats"):
                parts.append(f"== {self.path(rel)}\n{self.read(rel + '/stats').rstrip()}\n")
        return "".join(parts)

    def buffer_sizes_kb(self) -> dict[int, int]:
        """Per-CPU buffer size in KiB (the expanded size if the buffer was never used)."""
        out = {}
        for c in self.cpus():
            rel = f"per_cpu/cpu{c}/buffer_size_kb"
            if self.exists(rel):
                size, expanded = parse_buffer_size_kb(self.read(rel))
                if size is not None:
                    out[c] = expanded or size
        return out

    def kprobe_events(self) -> list[str]:
        if not self.exists("kprobe_events"):
            return []
        return [ln for ln in self.read("kprobe_events").splitlines() if ln.strip()]


# ---------------------------------------------------------------------- finding it
def _mount_points(mounts_file: Path) -> dict[str, str]:
    """mount point -> filesystem type, from /proc/mounts."""
    out = {}
    try:
        for line in mounts_file.read_text().splitlines():
            f = line.split()
            if len(f) >= 3:
                out[f[1].replace("\\040", " ")] = f[2]
    except OSError:
        pass
    return out


@dataclass
class FoundTracefs:
    tracefs: Tracefs
    mounted: Path | None = None  # the mount point we mounted (unmounted again at the end)
    how: str = "found"


def find_tracefs(root: str | os.PathLike[str] | None = None, *, mount: bool = True,
                 candidates: Iterable[str] = TRACEFS_CANDIDATES, mounts_file: str = "/proc/mounts",
                 run: Callable[[list[str]], int] | None = None) -> FoundTracefs:
    """The tracefs to use: ``root`` if given, else the first candidate that is a tracefs, else
    one we mount (``mount -t tracefs nodev /sys/kernel/tracing``; on kernels before 4.1, debugfs
    at /sys/kernel/debug).  Raises ``TracefsError`` with what to do when there is none."""
    if root is not None:
        r = Path(root)
        if not is_tracefs_root(r):
            raise TracefsError(f"{r}: not a tracefs (no trace, tracing_on and events/ in it)")
        return FoundTracefs(Tracefs(r))
    cands = [Path(c) for c in candidates]
    for c in cands:
        if is_tracefs_root(c):
            return FoundTracefs(Tracefs(c))
    if not mount:
        raise TracefsError("no tracefs found at " + " or ".join(map(str, cands)))
    run = run or (lambda argv: subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode)
    mounted = _mount_points(Path(mounts_file))
    tries = [(cands[0], ["mount", "-t", "tracefs", "nodev", str(cands[0])])]
    if len(cands) > 1:
        debugfs = cands[1].parent
        if str(debugfs) not in mounted:
            tries.append((cands[1], ["mount", "-t", "debugfs", "nodev", str(debugfs)]))
    for target, argv in tries:
        if not Path(argv[-1]).is_dir():
            continue
        if run(argv) == 0 and is_tracefs_root(target):
            return FoundTracefs(Tracefs(target), mounted=Path(argv[-1]), how="mounted")
    raise TracefsError(
        "no tracefs: mount it with `mount -t tracefs nodev /sys/kernel/tracing` "
        "(the kernel needs CONFIG_FTRACE and CONFIG_EVENT_TRACING)"
    )


def unmount(path: Path, run: Callable[[list[str]], int] | None = None) -> bool:
    run = run or (lambda argv: subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode)
    return run(["umount", str(path)]) == 0


# ---------------------------------------------------------------------- undoing changes
@dataclass
class _Change:
    kind: str          # "file", "buffer", "kprobe", "clock"
    rel: str
    original: str
    detail: dict = field(default_factory=dict)


class Changes:
    """Every tracefs setting a capture changed, with its original value; ``restore()`` undoes them.

    Changes are undone in reverse order (an enabled kprobe event is disabled before the probe is
    removed; the buffer is resized back after the events are off).  ``restore()`` never raises:
    it tries every change and returns the failures as one-line messages.
    """

    def __init__(self, fs: Tracefs) -> None:
        self.fs = fs
        self._log: list[_Change] = []
        self.restored = False

    def __len__(self) -> int:
        return len(self._log)

    @property
    def changed(self) -> list[str]:
        return [c.rel for c in self._log]

    def set(self, rel: str, value: str) -> str:
        """Write ``value`` to ``rel`` and remember what it held (returns the original)."""
        original = self.fs.read(rel).strip()
        if original != value.strip():
            self._log.append(_Change("file", rel, original))  # (logged first: see add_kprobe)
            self.fs.write(rel, value)
        return original

    def set_clock(self, name: str) -> str | None:
        current, _ = self.fs.clock()
        if current != name:
            self._log.append(_Change("clock", "trace_clock", current or "local"))
            self.fs.write("trace_clock", name)
        return current

    def set_buffer_kb(self, kb: int) -> dict[int, int]:
        """Resize every per-CPU buffer to ``kb`` KiB; remember each CPU's size."""
        before = self.fs.buffer_sizes_kb()
        top, expanded = parse_buffer_size_kb(self.fs.read("buffer_size_kb")) if self.fs.exists("buffer_size_kb") else (None, None)
        if before and all(v == kb for v in before.values()) and top == kb:
            return before
        self._log.append(_Change("buffer", "buffer_size_kb", str(expanded or top or ""), {"per_cpu": before}))
        self.fs.write("buffer_size_kb", str(kb))
        return before

    def add_kprobe(self, definition: str, group: str, event: str) -> None:
        """Append ``definition`` to kprobe_events; restore removes ``-:group/event``.

        Logged before the write (a signal between the two must not lose the probe); a refused
        definition (``TracefsError``) is taken off the log again."""
        entry = _Change("kprobe", "kprobe_events", "", {"group": group, "event": event})
        self._log.append(entry)
        try:
            self.fs.write("kprobe_events", definition, append=True)
        except BaseException:
            self._log.remove(entry)
            raise

    def restore(self) -> list[str]:
        problems: list[str] = []
        for ch in reversed(self._log):
            try:
                if ch.kind in ("file", "clock"):
                    self.fs.write(ch.rel, ch.original)
                elif ch.kind == "buffer":
                    per_cpu: dict[int, int] = ch.detail.get("per_cpu") or {}
                    sizes = set(per_cpu.values())
                    if len(sizes) > 1:  # the CPUs had different sizes: put each back
                        for cpu, kb in per_cpu.items():
                            self.fs.write(f"per_cpu/cpu{cpu}/buffer_size_kb", str(kb))
                    elif sizes or ch.original:
                        self.fs.write("buffer_size_kb", str(sizes.pop() if sizes else ch.original))
                elif ch.kind == "kprobe":
                    g, e = ch.detail["group"], ch.detail["event"]
                    en = f"events/{g}/{e}/enable"
                    if self.fs.exists(en) and self.fs.read(en).strip() not in ("0", ""):
                        self.fs.write(en, "0")
                    self.fs.write("kprobe_events", f"-:{g}/{e}", append=True)
            except Exception as e:  # noqa: BLE001 - keep restoring the others
                problems.append(f"could not restore {ch.rel}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
        self._log.clear()
        self.restored = True
        return problems

