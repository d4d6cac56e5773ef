"""The range of every stored event field, per kernel: a value outside it makes its line malformed.

Declared once here: the text scanner (``parsers.scan``) reads these as compile-time constants,
and a Parquet table given as input is checked against the same bounds (:func:`check_table`),
so every value pagereplay stores is the value its input says, or the input is refused.

The bounds are the same in every kernel pagereplay models (x86-64, Linux 6.1 to 7.3):

- ``order`` and the extfrag orders: 0..MAX_PAGE_ORDER = 10.  6.1 counts orders with
  ``MAX_ORDER`` = 11 (``include/linux/mmzone.h``, orders 0..10); 6.4 (23baf831a32c) made
  ``MAX_ORDER`` inclusive (10) and 6.8 renamed it ``MAX_PAGE_ORDER``; x86 never sets
  ``ARCH_FORCE_MAX_ORDER``.
- ``migratetype`` and the extfrag migratetypes: 0..MIGRATE_TYPES - 1 = 5 (``enum migratetype``:
  UNMOVABLE, MOVABLE, RECLAIMABLE, HIGHATOMIC, CMA, ISOLATE with CONFIG_CMA and
  CONFIG_MEMORY_ISOLATION, as Debian builds them).
- ``percpu_refill``, ``cold``, ``change_ownership``: the tracepoints print a bool (0 or 1);
  ``fragmenting`` is a bool too in tracefs, but trace-cmd and perf print the fallback order in
  its place (the parser recomputes it), so it takes the order range.
- ``pid``/``tgid``: 0..PID_MAX_LIMIT = 4194304 (``include/linux/threads.h``, 64-bit).
- ``cpu``: 0..NR_CPUS - 1 with NR_CPUS at most 8192 (``arch/x86/Kconfig`` NR_CPUS_RANGE_END
  with MAXSMP).
- ``ts_ns``: >= 0 and within int64 nanoseconds (292 years of uptime).
- ``pfn``: >= 0 (null for a failed allocation).  A pfn beyond the physical address space
  (:data:`PFN_LIMIT`) is stored as printed: the replay counts it as an anomaly.

``order`` is -1 (unknown) on the rows that are not kmem events: lock contention rows and the
untraced kprobe rows whose order the probe did not fetch (``parsers.schema.LockEvent``,
``UntracedEvent``); on a kmem row it must be in range.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

MAX_PAGE_ORDER = 10
MIGRATE_TYPES = 6
PID_MAX_LIMIT = 4 * 1024 * 1024
NR_CPUS_MAX = 8192
#: no x86-64 page lies at or above this pfn: MAX_PHYSMEM_BITS 52 (5-level paging) - PAGE_SHIFT
PFN_LIMIT = 1 << (52 - 12)
TS_MAX_SECONDS = (2**63 - 1) // 1_000_000_000 - 1  # seconds whose ns (with 9 decimals) fit int64

#: column -> (lowest, highest, what the bound is), for the Parquet input check
FIELD_RANGES: dict[str, tuple[int, int, str]] = {
    "ts_ns": (0, 2**63 - 1, "int64 nanoseconds"),
    "cpu": (0, NR_CPUS_MAX - 1, f"NR_CPUS <= {NR_CPUS_MAX}"),
    "pid": (0, PID_MAX_LIMIT, f"PID_MAX_LIMIT {PID_MAX_LIMIT}"),
    "tgid": (0, PID_MAX_LIMIT, f"PID_MAX_LIMIT {PID_MAX_LIMIT}"),
    "pfn": (0, 2**63 - 1, "int64"),
    "order": (0, MAX_PAGE_ORDER, f"MAX_PAGE_ORDER {MAX_PAGE_ORDER}"),
    "migratetype": (0, MIGRATE_TYPES - 1, f"MIGRATE_TYPES {MIGRATE_TYPES}"),
    "fallback_order": (0, MAX_PAGE_ORDER, f"MAX_PAGE_ORDER {MAX_PAGE_ORDER}"),
    "alloc_order": (0, MAX_PAGE_ORDER, f"MAX_PAGE_ORDER {MAX_PAGE_ORDER}"),
    "pageblock_order": (0, MAX_PAGE_ORDER, f"MAX_PAGE_ORDER {MAX_PAGE_ORDER}"),
    "fallback_migratetype": (0, MIGRATE_TYPES - 1, f"MIGRATE_TYPES {MIGRATE_TYPES}"),
    "alloc_migratetype": (0, MIGRATE_TYPES - 1, f"MIGRATE_TYPES {MIGRATE_TYPES}"),
}


#: the value ``order`` holds on a row that is not a kmem event when the order is not known
ORDER_UNKNOWN = -1


def out_of_range(table: Any, kmem_events: Collection[str]) -> tuple[str, int, int, str, int] | None:
    """The first column of ``table`` (a pyarrow Table) holding a value outside its range:
    ``(column, lowest, highest, bound, bad value)``, or None when every value is in range.
    ``kmem_events``: the event names whose rows must hold a known ``order`` (the others may
    hold :data:`ORDER_UNKNOWN`: ``parsers.schema.EVENT_NAMES``); empty: every row must."""
    import pyarrow.compute as pc

    for name, (lo, hi, why) in FIELD_RANGES.items():
        if name not in table.column_names:
            continue
        col = table.column(name)
        if col.null_count == len(col) or not (col.type.id in _INT_TYPE_IDS):
            continue
        if name == "order":
            col = _kmem_orders(table, kmem_events)
            if len(col) == 0:
                continue
        mm = pc.min_max(col)
        mn, mx = mm["min"].as_py(), mm["max"].as_py()
        if mn is not None and mn < lo:
            return name, lo, hi, why, int(mn)
        if mx is not None and mx > hi:
            return name, lo, hi, why, int(mx)
    return None


def _kmem_orders(table: Any, kmem_events: Collection[str]) -> Any:
    """``order`` of the kmem rows, and of the other rows the values other than
    :data:`ORDER_UNKNOWN` (no ``kmem_events`` or no ``event`` column: every row)."""
    import pyarrow.compute as pc

    order = table.column("order")
    if not kmem_events or "event" not in table.column_names:
        return order
    ev = table.column("event")
    names = pc.cast(ev, "string") if not _is_string(ev.type) else ev
    other = pc.invert(pc.is_in(names, value_set=_string_array(kmem_events)))
    keep = pc.invert(pc.and_(pc.fill_null(other, False), pc.equal(order, ORDER_UNKNOWN)))
    return pc.filter(order, pc.fill_null(keep, True))


def _is_string(t: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_string(t) or pa.types.is_large_string(t))


def _string_array(values: Any) -> Any:
    import pyarrow as pa

    return pa.array(list(values), pa.string())


def check_parquet(path: Any, error: type[Exception], kmem_events: Collection[str]) -> None:
    """Raise ``error`` naming the file, column, value and range when the Parquet event table at
    ``path`` holds a value outside :data:`FIELD_RANGES` (``kmem_events``: as :func:`out_of_range`).

    Reads the row groups' min/max statistics (no data); a column chunk without statistics (a
    foreign writer) is read and checked whole.
    """
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    md = pf.metadata
    names = [md.schema.column(j).path for j in range(md.num_columns)]
    unknown: set[str] = set()
    for rg in range(md.num_row_groups):
        g = md.row_group(rg)
        for j, name in enumerate(names):
            if name not in FIELD_RANGES or name in unknown:
                continue
            st = g.column(j).statistics
            if st is None or not st.has_min_max or not isinstance(st.min, int) \
                    or (name == "order" and st.min == ORDER_UNKNOWN and kmem_events):  # -1 is allowed on rows of other kinds
                unknown.add(name)
                continue
            _check_value(path, name, int(st.min), int(st.max), error)
    if unknown:
        extra = ["event"] if "order" in unknown and "event" in names else []
        check_table(pf.read(columns=sorted(unknown) + extra), str(path), error, kmem_events)


def _check_value(path: Any, name: str, mn: int, mx: int, error: type[Exception]) -> None:
    lo, hi, why = FIELD_RANGES[name]
    for v in (mn, mx):
        if not lo <= v <= hi:
            raise error(f"{path}: column '{name}' holds {v}, outside {lo}..{hi} ({why})")


def _int_type_ids() -> frozenset[int]:
    import pyarrow as pa

    return frozenset(t.id for t in (pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint16(),
                                    pa.uint32(), pa.uint64()))


_INT_TYPE_IDS: frozenset[int] = frozenset()


def check_table(table: Any, name: str, error: type[Exception], kmem_events: Collection[str]) -> None:
    """Raise ``error`` naming ``name``, the column, the bad value and the range when ``table``
    holds a value outside :data:`FIELD_RANGES` (``kmem_events``: as :func:`out_of_range`)."""
    global _INT_TYPE_IDS
    if not _INT_TYPE_IDS:
        _INT_TYPE_IDS = _int_type_ids()
    bad = out_of_range(table, kmem_events)
    if bad is not None:
        col, lo, hi, why, v = bad
        raise error(f"{name}: column '{col}' holds {v}, outside {lo}..{hi} ({why})")


__all__ = ["FIELD_RANGES", "MAX_PAGE_ORDER", "MIGRATE_TYPES", "NR_CPUS_MAX", "ORDER_UNKNOWN", "PFN_LIMIT", "PID_MAX_LIMIT",
           "TS_MAX_SECONDS", "check_parquet", "check_table", "out_of_range"]
