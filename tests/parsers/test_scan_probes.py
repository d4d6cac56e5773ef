"""Lock contention and untraced kprobe lines as rows of the canonical table (parsers/scan/probes.py)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from parsers.api import parse_text
from parsers.capture.untraced import PROBES, STRUCT_PAGE_SIZE, parse_untraced
from parsers.schema import (
    ALL_COLUMN_NAMES,
    ALL_EVENT_BY_NAME,
    ALL_EVENT_NAMES,
    EVENT_NAMES,
    LOCK_FLAG_BITS,
    OPTIONAL_COLUMNS,
    LockEvent,
    UntracedEvent,
    check_schema,
    lock_flags_text,
)
from parsers.stats import info_summary, other_kinds_summary
from tests.conftest import require_trace_file

VM = 0xFF9E89F540000000  # a KASLR vmemmap_base, as the e2e guest printed it
KMEM = "          <idle>-0       [003] ..s1.     1.315431: mm_page_free: page=000000009549c8dd pfn=0x22b18 order=0\n"


def _line(payload: str, cpu: int = 0, ts: str = "18.353096", comm: str = "sh-375") -> str:
    return f"{comm:>16s} [{cpu:03d}] d..1. {ts:>12s}: {payload}\n"


def _rows(text: str) -> tuple[list[dict], dict]:
    res = parse_text(text)
    return res.table.to_pylist(), res.accounting


def test_event_kinds_declared_once_with_fixed_codes():
    assert ALL_EVENT_NAMES[: len(EVENT_NAMES)] == EVENT_NAMES  # the kmem codes are unchanged
    assert [ALL_EVENT_BY_NAME[e.tracepoint] for e in LockEvent] == [int(e) for e in LockEvent]
    assert [ALL_EVENT_BY_NAME[e.tracepoint] for e in UntracedEvent] == [int(e) for e in UntracedEvent]
    # one UntracedEvent per probe of `record --untraced`, in the same order
    assert [e.tracepoint for e in UntracedEvent] == [p.event for p in PROBES]
    assert ALL_COLUMN_NAMES[-len(OPTIONAL_COLUMNS):] == OPTIONAL_COLUMNS
    assert lock_flags_text(LOCK_FLAG_BITS["SPIN"] | LOCK_FLAG_BITS["MUTEX"]) == "SPIN|MUTEX"
    assert lock_flags_text(0x41) == "SPIN|0x40" and lock_flags_text(0) == ""


def _probe_payload(spec, pfn: int, order: int) -> str:
    """The payload `record --untraced`'s probe ``spec`` prints for a block (pfn, order)."""
    vals = {"page": f"{VM + STRUCT_PAGE_SIZE * pfn:#x}", "folio": f"{VM + STRUCT_PAGE_SIZE * pfn:#x}",
            "vmemmap": f"{VM:#x}", "order": str(order), "mt": "1", "split": "0x200", "nr": str(1 << order),
            "start": f"{pfn << 12:#x}", "end": f"{(pfn + (1 << order)) << 12:#x}", "start_pfn": str(pfn),
            "end_pfn": str(pfn + (1 << order)), "ret": "8"}
    args = " ".join(f"{n}={vals[n]}" for n, _ in spec.args)
    site = f"(caller+0x2b4/0x5a0 <- {spec.symbol})" if spec.kind == "r" else f"({spec.symbol}+0x4/0x200)"
    return f"{spec.event}: {site} {args}"


@pytest.mark.parametrize("spec", PROBES, ids=[p.event for p in PROBES])
def test_every_probe_agrees_with_the_reference_decoder(spec):
    payload = _probe_payload(spec, 0x40200, 9)
    want = parse_untraced(payload)
    rows, acc = _rows(KMEM + _line(payload))
    assert acc["lines_malformed"] == 0 and acc["lines_other_event"] == 0 and acc["lines_parsed"] == 2
    r = rows[1]
    assert r["event"] == spec.event and acc["events"][spec.event] == 1
    assert (r["pfn"] if r["pfn"] is not None else -1) == want.pfn
    assert r["order"] == want.order
    if spec.kind == "r":
        assert r["ret"] == 8 and r["pfn"] is None
    if spec.pfn_from in ("phys", "pfn") or any(n == "nr" for n, _ in spec.args):
        assert r["nr_pages"] == 512
    assert r["migratetype"] == (1 if any(n == "mt" for n, _ in spec.args) else None)
    assert r["lock_addr"] is None and r["lock_flags"] is None


@pytest.mark.parametrize("payload, want", [
    ("contention_begin: 00000000a4fc5a6a (flags=WRITE)", (0xA4FC5A6A, 4, None)),
    ("contention_begin: 00000000a4fc5a6a (flags=SPIN|MUTEX)", (0xA4FC5A6A, 33, None)),
    ("contention_begin: 00000000a4fc5a6a (flags=SPIN|0x40)", (0xA4FC5A6A, 0x41, None)),
    ("contention_begin: 00000000a4fc5a6a (flags=)", (0xA4FC5A6A, 0, None)),
    ("contention_begin: (____ptrval____) (flags=SPIN)", (None, 1, None)),  # before the hash key exists
    ("contention_begin: 0xffff8881003c8a40 (flags=SPIN)", (0xFFFF8881003C8A40, 1, None)),  # trace-cmd: raw
    ("contention_end: 00000000a4fc5a6a (ret=0)", (0xA4FC5A6A, None, 0)),
    ("contention_end: 00000000a4fc5a6a (ret=-4)", (0xA4FC5A6A, None, -4)),
])
def test_contention_lines(payload, want):
    rows, acc = _rows(KMEM + _line(payload))
    assert acc["lines_malformed"] == 0 and acc["lines_parsed"] == 2
    r = rows[1]
    assert (r["lock_addr"], r["lock_flags"], r["ret"]) == want
    assert r["pfn"] is None and r["order"] == -1 and r["nr_pages"] is None


@pytest.mark.parametrize("payload", [
    "contention_begin: 00000000a4fc5a6a (flags=SPIN|BOGUS)",
    "contention_begin: zz (flags=SPIN)",
    "contention_end: 00000000a4fc5a6a (ret=x)",
    "contention_end: 00000000a4fc5a6a",
    "isolate_free_page: page=0x1 order=3",  # no probe site
    "isolate_free_page: (__isolate_free_page+0x0/0x2b0) page=0xzz order=3",
    "isolate_free_page: (__isolate_free_page+0x0/0x2b0) page=0x1 order=300",
])
def test_bad_payloads_are_malformed_lines_named(payload):
    res = parse_text(KMEM + _line(payload), name="t.txt")
    acc = res.accounting
    assert acc["lines_parsed"] == 1 and acc["lines_malformed"] == 1
    assert acc["lines_total"] == acc["lines_parsed"] + acc["lines_comment"] + acc["lines_other_event"] + acc["lines_malformed"]
    ex = acc["malformed_examples"][0]
    assert ex["file"] == "t.txt" and ex["line"] == 2 and ex["reason"] == "bad field value"


def test_perf_script_prefix_and_order_by_time():
    text = ("       swapper     0 [003]     1.315431: kmem:mm_page_free: page=0x22b18 pfn=0x22b18 order=0\n"
            + "            sh   375 [000]    18.353097: pagereplay:isolate_free_page: (__isolate_free_page+0x0/0x2b0) "
              f"page={VM + 64 * 0x200:#x} order=9 vmemmap={VM:#x}\n"
            + "       busybox  1922 [002]    18.100000: lock:contention_begin: 0xffff8881003c8a40 (flags=SPIN)\n")
    res = parse_text(text, fmt="perf")
    rows = res.table.to_pylist()
    assert res.accounting["lines_malformed"] == 0, res.accounting["malformed_examples"]
    assert [r["event"] for r in rows] == ["mm_page_free", "contention_begin", "isolate_free_page"]  # by time
    assert rows[2]["pfn"] == 0x200 and rows[2]["order"] == 9 and rows[1]["lock_addr"] == 0xFFFF8881003C8A40


def test_kmem_only_table_is_schema_1_content():
    """A trace without these lines: the event dictionary is the six names, the new columns null."""
    res = parse_text(KMEM + _line("tracing_mark_write: hi"))
    t = res.table
    assert t.column("event").chunk(0).dictionary.to_pylist() == list(EVENT_NAMES)
    assert list(res.accounting["events"]) == list(EVENT_NAMES)
    for c in OPTIONAL_COLUMNS:
        assert t.column(c).null_count == len(t)
    assert res.accounting["other_events"] == {"tracing_mark_write": 1}
    assert check_schema(t.drop_columns(list(OPTIONAL_COLUMNS)).schema) == []  # a schema-1 file still reads
    assert other_kinds_summary(t) == {} and "lock_contention" not in info_summary(t)


def test_info_counts_per_lock_flags_and_untraced():
    payloads = ["contention_begin: 00000000000000aa (flags=SPIN)", "contention_end: 00000000000000aa (ret=0)",
                "contention_begin: 00000000000000bb (flags=SPIN|MUTEX)", "contention_begin: 00000000000000bb (flags=SPIN)",
                _probe_payload(PROBES[0], 0x200, 9), _probe_payload(PROBES[1], 0, 0)]
    text = KMEM + "".join(_line(p, ts=f"18.{i:06d}") for i, p in enumerate(payloads, 1))
    t = parse_text(text).table
    s = info_summary(t)
    assert s["events"]["mm_page_free"] == 1 and s["time"]["events"] == 1  # the kmem statistics: kmem rows only
    lc = s["lock_contention"]
    assert (lc["begin"], lc["end"], lc["locks"]) == (3, 1, 2)
    assert lc["by_flags"] == {"SPIN": 2, "SPIN|MUTEX": 1}
    assert s["untraced"] == {"isolate_free_page": 1, "isolate_free_page_ret": 1}


def test_real_contention_trace():
    """debian13-6.18-contention: every lock:contention_* line whose header the grammar reads is a row
    with its address (flags on begin, ret on end); no payload is malformed."""
    p = require_trace_file("debian13-6.18-contention/trace.txt.zst")
    text = _contention_lines(p)
    res = parse_text(text)
    acc, t = res.accounting, res.table
    # (lines the header grammar does not read yet are "unrecognised line"s: not this module's)
    assert set(acc["malformed_reasons"]) <= {"unrecognised line"}, acc["malformed_examples"]
    assert acc["lines_other_event"] == 0 and acc["lines_parsed"] + acc["lines_malformed"] == text.count(b"\n") == 172
    ev = t.column("event").to_pylist()
    begin = t.filter(pa.array([e == "contention_begin" for e in ev]))
    end = t.filter(pa.array([e == "contention_end" for e in ev]))
    assert len(begin) + len(end) == len(t) == acc["lines_parsed"] > 0
    assert begin.column("lock_addr").null_count == 0 and begin.column("lock_flags").null_count == 0
    assert end.column("ret").null_count == 0 and end.column("lock_flags").null_count == len(end)
    flags = {lock_flags_text(f) for f in begin.column("lock_flags").to_pylist()}
    assert flags <= {"SPIN", "READ", "WRITE", "SPIN|READ", "SPIN|WRITE", "SPIN|MUTEX", "MUTEX"}, flags


def _contention_lines(path) -> bytes:
    """The contention lines of a trace whose irq-info column the header grammar reads (other
    engineers' header work decides the rest; this test is about the payload)."""
    import zstandard

    out = []
    with zstandard.ZstdDecompressor().stream_reader(open(path, "rb")) as f:
        import io

        for line in io.BufferedReader(f):
            if b": contention_" in line:
                out.append(line)
    return b"".join(out)
