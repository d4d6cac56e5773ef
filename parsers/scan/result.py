"""What one scanned block gives back: :class:`ScanResult` and its parts.

The compiled scan returns these as plain tuples (a compiled module cannot build a Python
namedtuple without importing numba), in the field order defined here; :func:`from_kernel` names
them.  Arrays have room for every line of the block: the first ``n`` (``n_events``) rows are used.
"""

from __future__ import annotations

from collections import namedtuple
from typing import Any

#: the fields of each event line, one array per field (-1: not printed; ``comm`` and ``gfp``: ids in
#: the block's tables, ``event``: the ``Event`` code, ``line``: 0-based line number in the block)
EventColumns = namedtuple(
    "EventColumns",
    (
        "ts", "cpu", "pid", "tgid", "comm", "event", "pfn", "order", "migratetype", "gfp", "percpu_refill",
        "fallback_order", "pageblock_order", "fallback_migratetype", "fragmenting", "change_ownership", "cold", "line",
    ),
)  # fmt: skip
#: lines the header grammar does not recognise (LOST markers, trace-cmd headers, garbage), for
#: Python to classify: line number and byte span in the block
LineSpans = namedtuple("LineSpans", ("n", "line", "start", "end"))
#: event lines whose payload does not parse: line number, ``codes.MALFORMED_*`` reason and byte span
#: (to the newline: a carriage return is kept)
MalformedLines = namedtuple("MalformedLines", ("n", "line", "reason", "start", "end"))
#: the strings of one of the block's tables, by id: byte spans of the block
Strings = namedtuple("Strings", ("n", "start", "length"))
#: other events by name (byte spans of the block), with how many lines each
OtherEvents = namedtuple("OtherEvents", ("n", "start", "length", "count"))
#: the fields beyond kmem of the lock contention and untraced kprobe rows (``probes``): the event
#: row they belong to, ``probes.HAVE_*`` bits of the fields present, lock address (uint64 bits),
#: lock flags, ret, nr_pages
ExtraFields = namedtuple("ExtraFields", ("n", "row", "have", "lock_addr", "lock_flags", "ret", "nr_pages"))
#: ``counts``: the ``codes.LINES_*`` counters; ``lines``: lines in the block; ``comms``, ``gfps``:
#: the tables the ``comm`` and ``gfp`` columns index
ScanResult = namedtuple(
    "ScanResult",
    ("n_events", "events", "counts", "lines", "unrecognised", "malformed", "comms", "gfps", "others", "extras"),
)


def from_kernel(raw: tuple[Any, ...]) -> ScanResult:
    """The kernel's plain tuples, named."""
    r = ScanResult._make(raw)
    return r._replace(
        events=EventColumns._make(r.events),
        unrecognised=LineSpans._make(r.unrecognised),
        malformed=MalformedLines._make(r.malformed),
        comms=Strings._make(r.comms),
        gfps=Strings._make(r.gfps),
        others=OtherEvents._make(r.others),
        extras=ExtraFields._make(r.extras),
    )
