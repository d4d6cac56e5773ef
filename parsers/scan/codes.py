"""The scanner's numbers: line formats, line counters, malformed reasons, payload keys, word tables.

Plain constants and NumPy tables (no numba): the compiled kernels read them as compile-time
constants, the Python side (accounting, format detection) reads the same names.
"""

from __future__ import annotations

import numpy as np

from ..ranges import MAX_PAGE_ORDER, MIGRATE_TYPES, NR_CPUS_MAX, PID_MAX_LIMIT, TS_MAX_SECONDS
from ..schema import EVENT_ALIASES, EVENT_BY_NAME

# line formats the caller can enforce
FMT_AUTO = 0
FMT_FTRACE = 1  # also trace-cmd report: same line grammar
FMT_PERF = 2

# line counters (index into the counts array of a block)
LINES_EVENT = 0  # a kmem page-allocator event
LINES_COMMENT = 1
LINES_BLANK = 2
LINES_OTHER_EVENT = 3  # another event (its name is interned)
LINES_UNRECOGNISED = 4  # handed back to Python (LOST markers, trace-cmd headers, garbage)
LINES_MALFORMED = 5  # header recognised, payload not
LINES_DASH = 6  # "comm-pid": ftrace, trace-cmd report
LINES_SPACE = 7  # "comm pid": perf script
LINES_SYS_PREFIX = 8  # "kmem:mm_page_alloc" (perf)
LINES_FLAGS = 9  # an irq-info flags column
LINES_TS_DECIMAL = 10  # "secs.frac"
LINES_TS_COUNTER = 11  # a raw counter clock
LINES_PFN_HEX = 12
LINES_PFN_DEC = 13
LINES_TGID = 14  # a "(tgid)" column
LINES_TS_6 = 15  # six decimals (us)
LINES_TS_9 = 16  # nine decimals (ns)
N_LINE_COUNTERS = 20

# why an event line is malformed (header recognised, payload not)
MALFORMED_MISSING_FIELD = 1
MALFORMED_BAD_VALUE = 2
# a value outside its range (parsers/ranges.py), per field: stored, it would not be what the text says
MALFORMED_RANGE_ORDER = 3
MALFORMED_RANGE_MT = 4
MALFORMED_RANGE_BOOL = 5
MALFORMED_RANGE_PID = 6
MALFORMED_RANGE_CPU = 7
MALFORMED_RANGE_TS = 8
MALFORMED_REASONS = {
    MALFORMED_MISSING_FIELD: "missing field",
    MALFORMED_BAD_VALUE: "bad field value",
    MALFORMED_RANGE_ORDER: f"order out of range (0..{MAX_PAGE_ORDER}, MAX_PAGE_ORDER)",
    MALFORMED_RANGE_MT: f"migratetype out of range (0..{MIGRATE_TYPES - 1}, MIGRATE_TYPES {MIGRATE_TYPES})",
    MALFORMED_RANGE_BOOL: "flag out of range (0 or 1)",
    MALFORMED_RANGE_PID: f"pid/tgid out of range (0..{PID_MAX_LIMIT}, PID_MAX_LIMIT)",
    MALFORMED_RANGE_CPU: f"cpu out of range (0..{NR_CPUS_MAX - 1}, NR_CPUS)",
    MALFORMED_RANGE_TS: f"timestamp out of range (at most {TS_MAX_SECONDS} s in int64 ns)",
}

# payload keys, in the order of KEY_NAMES
KEY_NAMES = (
    "page",
    "pfn",
    "order",
    "migratetype",
    "gfp_flags",
    "percpu_refill",
    "alloc_order",
    "fallback_order",
    "pageblock_order",
    "alloc_migratetype",
    "fallback_migratetype",
    "fragmenting",
    "change_ownership",
    "cold",
    "cpu",
)
(
    KEY_PAGE, KEY_PFN, KEY_ORDER, KEY_MT, KEY_GFP, KEY_PCP, KEY_AORDER, KEY_FORDER, KEY_PBORDER, KEY_AMT, KEY_FMT,
    KEY_FRAG, KEY_CHOWN, KEY_COLD, KEY_CPU,
) = range(len(KEY_NAMES))  # fmt: skip

# field-present bits, for the per-event required-field check
HAS_PFN = 1 << 0
HAS_ORDER = 1 << 1
HAS_MT = 1 << 2
HAS_GFP = 1 << 3
HAS_PCP = 1 << 4
HAS_FORDER = 1 << 5
HAS_FMT = 1 << 6

#: fields each event must carry (kmem.h TP_printk of every era); a line missing one is malformed
REQUIRED = np.array(
    [
        HAS_PFN | HAS_ORDER | HAS_MT | HAS_GFP,  # mm_page_alloc
        HAS_PFN | HAS_ORDER | HAS_MT,  # mm_page_alloc_zone_locked (percpu_refill optional: absent in no era, but tolerate)
        HAS_PFN | HAS_ORDER,  # mm_page_free
        HAS_PFN,  # mm_page_free_batched (order=0 printed from 4.15 on; cold=%d before)
        HAS_PFN | HAS_ORDER | HAS_MT,  # mm_page_pcpu_drain
        HAS_PFN | HAS_ORDER | HAS_MT | HAS_FORDER | HAS_FMT,  # mm_page_alloc_extfrag
    ],
    dtype=np.int64,
)


def _pack(words: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bytes, offsets, lengths) of a word list, for ``bytes.match``."""
    raw = [w.encode() for w in words]
    off = np.zeros(len(raw), np.int64)
    pos = 0
    for i, r in enumerate(raw):
        off[i] = pos
        pos += len(r)
    return (
        np.frombuffer(b"".join(raw), dtype=np.uint8).copy(),
        off,
        np.array([len(r) for r in raw], np.int64),
    )


KEY_BYTES, KEY_OFF, KEY_LEN = _pack(KEY_NAMES)
_EVENT_TEXT = tuple(EVENT_BY_NAME) + tuple(EVENT_ALIASES)
EV_BYTES, EV_OFF, EV_LEN = _pack(_EVENT_TEXT)
#: the ``Event`` code of each name of ``EV_BYTES`` (today's names, then the pre-3.3 aliases)
EV_CODE = np.array([int(v) for v in EVENT_BY_NAME.values()] + [int(v) for v in EVENT_ALIASES.values()], np.int64)
