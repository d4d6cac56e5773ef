"""The canonical page-allocator event table, declared once, as data.

Every parser produces it, the synthetic generator produces it, and the replay
engine consumes it.  Nothing else in the project spells out a column name,
a dtype or an event code: they all import them from here.

Order
-----
Rows are sorted by ``(ts_ns, cpu, seq)``.  ``seq`` is the position of the
event in the input (first file first, line order within a file), so the
tie-break at equal timestamps is: lower CPU number first, then input order.
Within one CPU this keeps the order in which the kernel wrote the events into
that CPU's ring buffer (the per-CPU buffers are the only order the kernel
guarantees; ``trace`` output merges them by timestamp and, at equal
timestamps, the merge order is arbitrary across CPUs, so sorting by cpu is as
good as any choice and is deterministic).

Timestamps
----------
``ts_ns`` is an integer: nanoseconds for ns-based trace clocks (``local``,
``global``, ``mono``, ``boot``...; printed as seconds with 6 or 9 decimals), or
the raw counter value for ``x86-tsc``/``counter`` clocks (printed without a
decimal point).  The Parquet metadata key ``pagereplay.timestamp_unit`` says
which (``ns`` or ``counter``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import pyarrow as pa

#: 2: the lock contention and untraced (kprobe) event kinds and the four columns after ``seq``
#: (absent in a version-1 file: read as all null)
SCHEMA_VERSION = "2"
METADATA_PREFIX = "pagereplay."


class Event(enum.IntEnum):
    """The six kmem page-allocator tracepoints (``include/trace/events/kmem.h``).

    The integer codes are part of the schema: the replay engine switches on them.
    """

    MM_PAGE_ALLOC = 0
    MM_PAGE_ALLOC_ZONE_LOCKED = 1
    MM_PAGE_FREE = 2
    MM_PAGE_FREE_BATCHED = 3
    MM_PAGE_PCPU_DRAIN = 4
    MM_PAGE_ALLOC_EXTFRAG = 5

    @property
    def tracepoint(self) -> str:
        return self.name.lower()


EVENT_NAMES: tuple[str, ...] = tuple(e.tracepoint for e in Event)
EVENT_BY_NAME: dict[str, Event] = {e.tracepoint: e for e in Event}
# Names used before v3.3 for the same tracepoints (kernel-notes 4.1, Era A).
EVENT_ALIASES: dict[str, Event] = {
    "mm_page_free_direct": Event.MM_PAGE_FREE,
    "mm_pagevec_free": Event.MM_PAGE_FREE_BATCHED,
}


class LockEvent(enum.IntEnum):
    """``lock:contention_begin`` / ``lock:contention_end`` (``include/trace/events/lock.h``, 5.19+):
    a task starts and stops waiting for a lock (``lock_addr``; begin: ``lock_flags``, end: ``ret``).

    Codes follow ``Event``'s; ``pfn`` is null and ``order`` -1 on these rows."""

    CONTENTION_BEGIN = 6
    CONTENTION_END = 7

    @property
    def tracepoint(self) -> str:
        return self.name.lower()


class UntracedEvent(enum.IntEnum):
    """The kprobe events of ``pagereplay record --untraced`` (group ``pagereplay``; one per probe of
    ``parsers/capture/untraced.py``, which says what each function does and how its line reads): the
    kernel paths that move pages with no kmem tracepoint.

    Entry probes on a page: ``pfn = (page - vmemmap_base) / sizeof(struct page)``, ``order`` as
    recorded (or the function's fixed order; -1 unknown).  Range probes (accept, offline): ``pfn`` the
    first page, ``nr_pages`` the length, ``order`` its log2 when a power of two, else -1.  Return
    probes (``*_RET``): ``pfn`` null, ``ret`` the return value, ``order`` 0 when the function did
    its work and -1 when it refused (``parsers.capture.untraced.parse_untraced``)."""

    ISOLATE_FREE_PAGE = 8
    ISOLATE_FREE_PAGE_RET = 9
    PUTBACK_ISOLATED_PAGE = 10
    TAKE_PAGE_OFF_BUDDY = 11
    TAKE_PAGE_OFF_BUDDY_RET = 12
    PUT_PAGE_BACK_BUDDY = 13
    PUT_PAGE_BACK_BUDDY_RET = 14
    SPLIT_FREE_PAGE = 15
    SPLIT_FREE_PAGE_RET = 16
    FREE_UNACCEPTED = 17
    FREE_UNACCEPTED_RET = 18
    TDX_ACCEPT_MEMORY = 19
    SNP_ACCEPT_MEMORY = 20
    OFFLINE_ISOLATED_PAGES = 21
    SPLIT_PAGE = 22
    FREE_PAGES_CORE = 23
    ACCEPT_PAGE = 24
    COMPACTION_FREE = 25
    SPLIT_LARGE_BUDDY = 26
    FREE_PREPARED_CONTIG_RANGE = 27

    @property
    def tracepoint(self) -> str:
        return self.name.lower()


#: every event kind of the table by code (``Event``, then ``LockEvent``, then ``UntracedEvent``);
#: ``EVENT_NAMES`` / ``EVENT_BY_NAME`` stay the six kmem events the model switches on
ALL_EVENT_NAMES: tuple[str, ...] = EVENT_NAMES + tuple(e.tracepoint for e in LockEvent) + tuple(
    e.tracepoint for e in UntracedEvent)
ALL_EVENT_BY_NAME: dict[str, int] = {n: i for i, n in enumerate(ALL_EVENT_NAMES)}
#: the ``lock_flags`` bits (``LCB_F_*``, include/trace/events/lock.h) and the names
#: ``__print_flags`` prints for them, joined by ``|``
LOCK_FLAG_BITS: dict[str, int] = {"SPIN": 1 << 0, "READ": 1 << 1, "WRITE": 1 << 2, "RT": 1 << 3, "PERCPU": 1 << 4,
                                  "MUTEX": 1 << 5}


def lock_flags_text(mask: int) -> str:
    """``lock_flags`` as the kernel prints it (``SPIN|MUTEX``; unknown bits as hex, none as '')."""
    names = [n for n, b in LOCK_FLAG_BITS.items() if mask & b]
    rest = mask & ~sum(LOCK_FLAG_BITS.values())
    return "|".join(names + ([f"{rest:#x}"] if rest else []))


class Migratetype(enum.IntEnum):
    """``enum migratetype`` as of v4.4+ (``include/linux/mmzone.h``).

    Older kernels (< 4.4) numbered RECLAIMABLE=1, MOVABLE=2; the table stores
    the raw number the kernel printed, so nothing is lost either way.
    CMA exists only with CONFIG_CMA, which shifts ISOLATE.
    """

    UNMOVABLE = 0
    MOVABLE = 1
    RECLAIMABLE = 2
    HIGHATOMIC = 3  # == MIGRATE_PCPTYPES
    CMA = 4
    ISOLATE = 5


MIGRATE_PCPTYPES = 3


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    nullable: bool
    doc: str


_DICT32 = pa.dictionary(pa.int32(), pa.string())

#: The canonical columns, in table order.
COLUMNS: tuple[Column, ...] = (
    Column("ts_ns", pa.int64(), False, "timestamp: ns (or raw counter, see metadata timestamp_unit)"),
    Column("cpu", pa.int32(), False, "CPU whose ring buffer recorded the event"),
    Column("pid", pa.int32(), False, "pid (tid) of the current task; 0 for <idle>"),
    Column("tgid", pa.int32(), True, "thread-group id when the trace records it (ftrace record-tgid)"),
    Column("comm", _DICT32, False, "task comm as printed (may contain spaces, '/', ':', '<...>')"),
    Column("event", pa.dictionary(pa.int8(), pa.string()), False, "tracepoint name; codes are Event"),
    Column("pfn", pa.int64(), True, "page frame number of the (head) page; null for a failed allocation"),
    Column("order", pa.int8(), False, "order (extfrag: alloc_order; free_batched: 0)"),
    Column("migratetype", pa.int8(), True, "migratetype (extfrag: alloc_migratetype)"),
    Column("gfp_flags", _DICT32, True, "gfp_flags text as printed by show_gfp_flags() (mm_page_alloc only)"),
    Column("gfp_mask", pa.uint64(), True, "gfp_flags decoded to a bit mask (the traced kernel's bit layout, parsers/gfp.py); null if a token is unknown"),
    Column("percpu_refill", pa.bool_(), True, "mm_page_alloc_zone_locked: the page went to a per-CPU list"),
    Column("failed", pa.bool_(), False, "mm_page_alloc that returned NULL (pfn printed as 0 or -1)"),
    Column("fallback_order", pa.int8(), True, "extfrag: order of the block stolen from"),
    Column("pageblock_order", pa.int8(), True, "extfrag: pageblock_order"),
    Column("fallback_migratetype", pa.int8(), True, "extfrag: migratetype stolen from"),
    Column("fragmenting", pa.bool_(), True, "extfrag: fallback_order < pageblock_order"),
    Column("change_ownership", pa.bool_(), True, "extfrag: the pageblock changed migratetype"),
    Column("cold", pa.bool_(), True, "pre-4.15 mm_page_free_batched cold flag"),
    Column("source_file", pa.dictionary(pa.int16(), pa.string()), False, "input file the line came from"),
    Column("line", pa.int64(), False, "1-based line number in source_file"),
    Column("seq", pa.int64(), False, "input order across all files (0-based); the final sort tie-break"),
)
#: the columns schema 2 added after ``seq``, for the lock contention and untraced (kprobe) rows (null
#: on kmem rows): the text parser writes them; a table without them (schema 1, the synthetic
#: generator, the binary readers) reads as all null
EXTRA_COLUMNS: tuple[Column, ...] = (
    Column("lock_addr", pa.uint64(), True, "contention_begin/end: the lock's address as printed (a hashed %p in tracefs)"),
    Column("lock_flags", pa.uint32(), True, "contention_begin: LCB_F_* bits (LOCK_FLAG_BITS: SPIN, READ, WRITE, RT, PERCPU, MUTEX)"),
    Column("ret", pa.int64(), True, "contention_end: ret; untraced *_ret kprobes: the function's return value"),
    Column("nr_pages", pa.int64(), True, "untraced range kprobes (accept, offline, free_prepared_contig_range): pages"),
)
OPTIONAL_COLUMNS: tuple[str, ...] = tuple(c.name for c in EXTRA_COLUMNS)
#: every column of a parsed table, in table order
ALL_COLUMNS: tuple[Column, ...] = COLUMNS + EXTRA_COLUMNS

COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in COLUMNS)
ALL_COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in ALL_COLUMNS)
SORT_KEYS: tuple[str, ...] = ("ts_ns", "cpu", "seq")


def arrow_schema(metadata: dict[str, str] | None = None, *, extra: bool = False) -> pa.Schema:
    """The Arrow schema of the canonical event table (``extra``: with ``EXTRA_COLUMNS``, as the
    text parser writes it)."""
    fields = [pa.field(c.name, c.type, nullable=c.nullable) for c in (ALL_COLUMNS if extra else COLUMNS)]
    md = None
    if metadata is not None:
        md = {k.encode(): v.encode() for k, v in metadata.items()}
    return pa.schema(fields, metadata=md)


def event_dictionary(n_codes: int = len(EVENT_NAMES)) -> pa.Array:
    """The fixed dictionary of the ``event`` column (index == event code), codes ``0..n_codes-1``:
    by default the six kmem events (a kmem-only table's dictionary, as in schema 1)."""
    return pa.array(list(ALL_EVENT_NAMES[:max(n_codes, len(EVENT_NAMES))]), pa.string())


def check_schema(schema: pa.Schema) -> list[str]:
    """Return a list of mismatches between ``schema`` and the canonical one (empty if fine)."""
    problems = []
    want = {c.name: c for c in ALL_COLUMNS}
    have = {f.name: f for f in schema}
    for name, col in want.items():
        if name not in have:
            if name not in OPTIONAL_COLUMNS:
                problems.append(f"missing column {name!r}")
            continue
        t = have[name].type
        if pa.types.is_dictionary(col.type):
            if not pa.types.is_dictionary(t) and not pa.types.is_string(t) and not pa.types.is_large_string(t):
                problems.append(f"column {name!r}: {t} is not a string/dictionary")
        elif t != col.type:
            problems.append(f"column {name!r}: {t} instead of {col.type}")
    return problems


# --- gfp flags ---------------------------------------------------------------
# The bit tables per kernel version live in parsers/gfp.py; these names are the 6.1 table's
# (what a text trace of an unknown kernel is decoded with).
from .gfp import DEFAULT_TABLE as GFP_BIT_TABLE_NAME
from .gfp import GFP_TABLES, decode_gfp  # noqa: F401

GFP_NAMES: dict[str, int] = dict(GFP_TABLES[GFP_BIT_TABLE_NAME])
