"""The text formats pagereplay reads, how each is recognised, and the lines the scanner hands back.

==========  =====================================================================
format      what produces it
==========  =====================================================================
ftrace      tracefs ``trace`` (header comments) and ``trace_pipe`` (no header):
            ``comm-pid [(tgid)] [cpu] [flags] secs.usecs: event: fields``
trace-cmd   ``trace-cmd report``: a ``cpus=N`` (and ``version = N``) header, then
            the ftrace line grammar, usually without the flags column
perf        ``perf script``: ``comm pid[/tid] [cpu] secs.usecs: sys:event: fields``
==========  =====================================================================

The compiled scanner (``parsers.scan``) does the per-line work; this module decides
the format of a file and classifies the few lines the scanner cannot place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .scan.codes import FMT_AUTO, FMT_FTRACE, FMT_PERF, LINES_DASH, LINES_SPACE

FORMATS = ("ftrace", "trace-cmd", "perf")
FORMAT_CODE = {None: FMT_AUTO, "ftrace": FMT_FTRACE, "trace-cmd": FMT_FTRACE, "perf": FMT_PERF}

# lines outside the event grammar that are expected, by kind
_LOST = re.compile(rb"^\s*CPU:\s*(\d+)\s+\[LOST\s+(\d+)\s+EVENTS\]\s*$")
_TC_HEADER = re.compile(
    rb"^\s*(cpus=\d+|version\s*=\s*\S+|CPU\s*\d+ is empty|CPU\d+ data recorded at offset=.*|\d+ bytes in size.*"
    rb"|trace-cmd: .*|TRACE_CLOCK=.*)\s*$"
)
_STACK = re.compile(rb"^\s*=> \S")  # ftrace stacktrace option: "=> func+0x1a/0x40"
_PERF_CALLCHAIN = re.compile(rb"^\s+[0-9a-f]{6,16} \S")  # perf script -g: "\t ffffffff8123 func+0x..."


@dataclass
class LineClass:
    kind: str  # "lost", "header", "other", "malformed"
    detail: str  # lost: cpu; header: the header; other: pseudo-event name; malformed: reason
    lost_cpu: int = -1
    lost_count: int = 0


def classify_unrecognised(line: bytes) -> LineClass:
    """Classify a line the compiled event grammar did not match."""
    m = _LOST.match(line)
    if m:
        return LineClass("lost", "lost", int(m.group(1)), int(m.group(2)))
    if _TC_HEADER.match(line):
        return LineClass("header", "trace-cmd header")
    if _STACK.match(line):
        return LineClass("other", "stacktrace")
    if _PERF_CALLCHAIN.match(line):
        return LineClass("other", "callchain")
    if b"\x00" in line or _mostly_binary(line):
        return LineClass("malformed", "binary data")
    return LineClass("malformed", "unrecognised line")


def _mostly_binary(line: bytes) -> bool:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return True
    bad = sum(1 for ch in text if ord(ch) < 32 and ch not in "\t\r")
    return bad > 0


def detect_format(counts, head: bytes) -> str | None:
    """Name the format of a file from its first bytes and the scanner's counters over its first block.

    Returns ``None`` when nothing in the block looks like an event line.
    """
    first = head.lstrip()[:64]
    if first.startswith((b"cpus=", b"version =", b"version=")) or b"\ncpus=" in head[:4096]:
        return "trace-cmd"
    if counts[LINES_SPACE] > counts[LINES_DASH]:
        return "perf"
    if counts[LINES_DASH] > 0 or first.startswith(b"# tracer:"):
        return "ftrace"
    return None
