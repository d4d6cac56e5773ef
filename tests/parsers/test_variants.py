"""Header-variant corpus: every line layout of spec section 3 and every kmem era of kernel-notes 4.1."""

from __future__ import annotations

import pytest

from parsers.api import parse_text
from parsers.schema import GFP_NAMES

MODERN_TRACE = """\
# tracer: nop
#
# entries-in-buffer/entries-written: 4/4   #P:8
#
#                                _-----=> irqs-off/BH-disabled
#                               / _----=> need-resched
#                              | / _---=> hardirq/softirq
#                              || / _--=> preempt-depth
#                              ||| / _-=> migrate-disable
#                              |||| /     delay
#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION
#              | |         |   |||||     |         |
            bash-1977    [003] d..1.  5023.412345: mm_page_alloc_zone_locked: page=ffffea0004a3c000 pfn=0x128f00 order=0 migratetype=1 percpu_refill=1
            bash-1977    [003] .....  5023.412350: mm_page_alloc: page=ffffea0004a3c000 pfn=0x128f00 order=0 migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE|__GFP_ZERO
     kworker/3:1-210     [003] d..2.  5023.500001: mm_page_pcpu_drain: page=ffffea0004a3c040 pfn=0x128f01 order=0 migratetype=1
            bash-1977    [003] .....  5023.600000: mm_page_alloc: page=0000000000000000 pfn=0x0 order=9 migratetype=1 gfp_flags=GFP_KERNEL|__GFP_NOWARN|__GFP_NORETRY
"""


def one(line: str, fmt: str | None = None) -> dict:
    r = parse_text(line + "\n", fmt)
    acc = r.accounting
    assert acc["lines_parsed"] == 1, acc
    assert acc["lines_total"] == acc["lines_parsed"] + acc["lines_comment"] + acc["lines_other_event"] + acc["lines_malformed"]
    return r.table.to_pylist()[0]


def test_modern_trace_file_with_header():
    r = parse_text(MODERN_TRACE)
    acc = r.accounting
    assert acc["lines_total"] == 16
    assert acc["lines_comment"] == 12
    assert acc["lines_parsed"] == 4
    assert acc["lines_malformed"] == 0
    assert acc["files"][0]["format"] == "ftrace"
    rows = r.table.to_pylist()
    assert [x["event"] for x in rows] == ["mm_page_alloc_zone_locked", "mm_page_alloc", "mm_page_pcpu_drain", "mm_page_alloc"]
    assert rows[0]["ts_ns"] == 5023_412345_000
    assert rows[0]["pfn"] == 0x128F00 and rows[0]["percpu_refill"] is True and rows[0]["migratetype"] == 1
    assert rows[1]["gfp_flags"] == "GFP_HIGHUSER_MOVABLE|__GFP_ZERO"
    assert rows[1]["gfp_mask"] == GFP_NAMES["GFP_HIGHUSER_MOVABLE"] | GFP_NAMES["__GFP_ZERO"]
    assert rows[2]["comm"] == "kworker/3:1" and rows[2]["pid"] == 210
    # failed allocation: pfn 0x0 with a NULL page
    assert rows[3]["failed"] is True and rows[3]["pfn"] is None and rows[3]["order"] == 9
    assert acc["failed_allocations"] == 1
    assert [x["line"] for x in rows] == [13, 14, 15, 16]
    assert r.metadata["pagereplay.kmem_era"].startswith(">=5.14")


@pytest.mark.parametrize(
    "line, comm, pid, tgid, cpu",
    [
        # 5-char flags with digits (>= 5.13 migrate-disable column)
        ("          <idle>-0       [000] dNh2.     0.543656: mm_page_free: page=0000000012345678 pfn=0x1011fe order=1", "<idle>", 0, None, 0),
        # 4-char flags, 5-wide pid (pre-5.13)
        ("            bash-1977  [003] d..1  5023.412345: mm_page_free: page=00000000a3f1c2d4 pfn=1216256 order=0", "bash", 1977, None, 3),
        # no flags column (irq-info off, trace-cmd report)
        ("              sh-1760  [002]   406.601635: mm_page_free:         page=0xffffffff8891dd82 pfn=0x108652 order=1", "sh", 1760, None, 2),
        # record-tgid column
        ("            bash-1977    (   1970) [003] d..1.  5023.412345: mm_page_free: page=0 pfn=0x10 order=0", "bash", 1977, 1970, 3),
        ("     kworker/0:1-7       (-------) [000] d..1.  5023.412345: mm_page_free: page=0 pfn=0x10 order=0", "kworker/0:1", 7, None, 0),
        # comms with spaces, dashes, colons, slashes and <...>
        ("  Web Content-12345   [001] .....   100.000001: mm_page_free: page=0 pfn=0x10 order=0", "Web Content", 12345, None, 1),
        ("     gdm-wayland-ses-880  [001] .....   100.000001: mm_page_free: page=0 pfn=0x10 order=0", "gdm-wayland-ses", 880, None, 1),
        ("           <...>-4242  [012] .....   100.000001: mm_page_free: page=0 pfn=0x10 order=0", "<...>", 4242, None, 12),
        ("  kworker/u16:3-1234    [007] d.s3.   100.000001: mm_page_free: page=0 pfn=0x10 order=0", "kworker/u16:3", 1234, None, 7),
        ("  a [1] b-99    [002] .....   100.000001: mm_page_free: page=0 pfn=0x10 order=0", "a [1] b", 99, None, 2),
        # perf script: "comm tid [cpu]" and "comm pid/tid [cpu]"
        ("            perf  1897 [003]   414.048125:              kmem:mm_page_free: page=0x12f540 pfn=0x12f540 order=0", "perf", 1897, None, 3),
        ("       perf-exec  1898/1899 [002]   414.053189:   kmem:mm_page_free: page=0x11ee7e pfn=0x11ee7e order=1", "perf-exec", 1899, None, 2),
        ("  Web Content  4242 [001]   414.053189:   kmem:mm_page_free: page=0x11ee7e pfn=0x11ee7e order=1", "Web Content", 4242, None, 1),
    ],
)
def test_line_prefix_variants(line, comm, pid, tgid, cpu):
    row = one(line)
    assert row["comm"] == comm
    assert row["pid"] == pid
    assert row["tgid"] == tgid
    assert row["cpu"] == cpu
    assert row["event"] == "mm_page_free"


@pytest.mark.parametrize(
    "ts_text, ns",
    [("0.543656", 543_656_000), ("5023.412345", 5_023_412_345_000), ("406.601635123", 406_601_635_123), ("12.5", 12_500_000_000)],
)
def test_timestamps_are_integer_ns(ts_text, ns):
    row = one(f"  x-1 [000] ..... {ts_text}: mm_page_free: page=0 pfn=0x10 order=0")
    assert row["ts_ns"] == ns


def test_counter_clock_timestamps():
    r = parse_text("  x-1 [000] ..... 123456789012: mm_page_free: page=0 pfn=0x10 order=0\n")
    assert r.table.column("ts_ns").to_pylist() == [123456789012]
    assert r.metadata["pagereplay.timestamp_unit"] == "counter"


# --- kmem formats by era (kernel-notes 4.1) ---------------------------------------------------
ERA_A = """\
    bash-1 [000] .... 1.000001: mm_page_alloc: page=ffffea0000400000 pfn=16384 order=0 migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE
    bash-1 [000] .... 1.000002: mm_page_alloc_zone_locked: page=ffffea0000400040 pfn=16385 order=0 migratetype=1 percpu_refill=1
    bash-1 [000] .... 1.000003: mm_page_free_direct: page=ffffea0000400000 pfn=16384 order=0
    bash-1 [000] .... 1.000004: mm_pagevec_free: page=ffffea0000400040 pfn=16385 order=0 cold=1
    bash-1 [000] .... 1.000005: mm_page_pcpu_drain: page=ffffea0000400080 pfn=16386 order=0 migratetype=1
    bash-1 [000] .... 1.000006: mm_page_alloc: page=(null) pfn=0 order=3 migratetype=0 gfp_flags=GFP_KERNEL
    bash-1 [000] .... 1.000007: mm_page_alloc_extfrag: page=ffffea0000400000 pfn=16384 alloc_order=0 fallback_order=9 pageblock_order=9 alloc_migratetype=0 fallback_migratetype=1 fragmenting=0 change_ownership=0
"""


def test_era_a_decimal_pfn_old_names_and_cold():
    r = parse_text(ERA_A)
    rows = r.table.to_pylist()
    assert r.accounting["lines_parsed"] == 7
    assert [x["event"] for x in rows] == [
        "mm_page_alloc",
        "mm_page_alloc_zone_locked",
        "mm_page_free",
        "mm_page_free_batched",
        "mm_page_pcpu_drain",
        "mm_page_alloc",
        "mm_page_alloc_extfrag",
    ]
    assert rows[0]["pfn"] == 16384
    assert rows[3]["cold"] is True and rows[3]["order"] == 0
    assert rows[5]["failed"] is True and rows[5]["pfn"] is None
    ext = rows[6]
    assert (ext["order"], ext["fallback_order"], ext["pageblock_order"]) == (0, 9, 9)
    assert (ext["migratetype"], ext["fallback_migratetype"], ext["fragmenting"], ext["change_ownership"]) == (0, 1, False, False)
    assert r.metadata["pagereplay.kmem_era"].startswith("<5.14")


def test_era_b_free_batched_without_cold_and_era_c_hex():
    b = one("    bash-1 [000] .... 1.000004: mm_page_free_batched: page=ffffea0000400040 pfn=16385 order=0")
    assert b["pfn"] == 16385 and b["cold"] is None
    c = one("    bash-1 [000] ..... 1.000004: mm_page_free_batched: page=ffffea0000400040 pfn=0x4001 order=0")
    assert c["pfn"] == 0x4001


def test_zone_locked_without_percpu_refill_field():
    # early era B kernels printed percpu_refill; be lenient when absent (not required by any grammar)
    row = one("    bash-1 [000] .... 1.0: mm_page_alloc_zone_locked: page=x pfn=0x10 order=3 migratetype=0")
    assert row["percpu_refill"] is None and row["order"] == 3


@pytest.mark.parametrize(
    "payload",
    [
        "page=(null) pfn=0 order=0 migratetype=0 gfp_flags=GFP_ATOMIC",
        "page=0000000000000000 pfn=0x0 order=0 migratetype=0 gfp_flags=GFP_ATOMIC",
        "page=00000000d0c1c2ab pfn=0x0 order=0 migratetype=0 gfp_flags=GFP_ATOMIC",
        "page=0xffffffffffffffff pfn=0xffffffffffffffff order=0 migratetype=0 gfp_flags=GFP_ATOMIC",
        "page=0xffffffffffffffff pfn=18446744073709551615 order=0 migratetype=0 gfp_flags=GFP_ATOMIC",
    ],
)
def test_failed_allocations(payload):
    row = one(f"  x-1 [000] ..... 1.0: mm_page_alloc: {payload}")
    assert row["failed"] is True and row["pfn"] is None


def test_gfp_unknown_token_keeps_text_and_nulls_mask():
    row = one("  x-1 [000] ..... 1.0: mm_page_alloc: page=0 pfn=0x10 order=0 migratetype=0 gfp_flags=GFP_KERNEL|__GFP_BRAND_NEW")
    assert row["gfp_flags"] == "GFP_KERNEL|__GFP_BRAND_NEW" and row["gfp_mask"] is None
    row = one("  x-1 [000] ..... 1.0: mm_page_alloc: page=0 pfn=0x10 order=0 migratetype=0 gfp_flags=none")
    assert row["gfp_mask"] == 0
    row = one("  x-1 [000] ..... 1.0: mm_page_alloc: page=0 pfn=0x10 order=0 migratetype=0 gfp_flags=GFP_KERNEL|0x10000000")
    assert row["gfp_mask"] == GFP_NAMES["GFP_KERNEL"] | 0x10000000


def test_trace_cmd_report_header_and_print_events():
    text = (
        "cpus=4\n"
        "version = 7\n"
        "              sh-1760  [002]   406.601635: mm_page_alloc:        page=0xffffffff8891dd82 pfn=0x108652 order=1 migratetype=0 gfp_flags=GFP_KERNEL_ACCOUNT|__GFP_ZERO\n"
        "              sh-1760  [002]   406.601700: print:                tracing_mark_write: phase 2\n"
    )
    r = parse_text(text)
    acc = r.accounting
    assert acc["files"][0]["format"] == "trace-cmd"
    assert acc["lines_parsed"] == 1 and acc["lines_comment"] == 2 and acc["other_events"] == {"print": 1}


def test_perf_format_detected():
    text = "            perf  1897 [003]   414.048125:             kmem:mm_page_alloc: page=0x12f540 pfn=0x12f540 order=0 migratetype=0 gfp_flags=GFP_HIGHUSER|__GFP_ACCOUNT\n"
    r = parse_text(text)
    assert r.accounting["files"][0]["format"] == "perf"
    assert r.table.column("pfn").to_pylist() == [0x12F540]


def test_format_override_enforces_grammar():
    perf_line = "            perf  1897 [003]   414.048125:   kmem:mm_page_free: page=0x1 pfn=0x1 order=0\n"
    ftrace_line = "            bash-1977    [003] d..1.  5023.412345: mm_page_free: page=0 pfn=0x10 order=0\n"
    r = parse_text(perf_line + ftrace_line, "perf")
    assert r.accounting["lines_parsed"] == 1 and r.accounting["lines_malformed"] == 1
    r = parse_text(perf_line + ftrace_line, "ftrace")
    assert r.accounting["lines_parsed"] == 1 and r.accounting["lines_malformed"] == 1


def test_stacktrace_and_callchain_lines_are_other_events():
    text = (
        "            bash-1977    [003] d..1.  5023.412345: mm_page_free: page=0 pfn=0x10 order=0\n"
        "            bash-1977    [003] d..1.  5023.412346: <stack trace>\n"
        " => free_unref_page+0x1a/0x40\n"
        " => __folio_put+0x30/0x40\n"
    )
    acc = parse_text(text).accounting
    assert acc["lines_parsed"] == 1
    assert acc["other_events"] == {"<stack trace>": 1, "stacktrace": 2}
    assert acc["lines_malformed"] == 0


def test_crlf_line_endings():
    r = parse_text(MODERN_TRACE.replace("\n", "\r\n"))
    assert r.accounting["lines_parsed"] == 4 and r.accounting["lines_malformed"] == 0
    assert r.table.column("gfp_flags").to_pylist()[1] == "GFP_HIGHUSER_MOVABLE|__GFP_ZERO"


def test_libtraceevent_fragmenting_quirk_is_recomputed():
    # trace-cmd report / perf script print fragmenting=<fallback_order> (kernel-notes 4.5; peer-bench item 6)
    line = (
        "              dd-1862  [000]   407.182492: mm_page_alloc_extfrag: page=0xffffffff8891cf30 pfn=0x107800 "
        "alloc_order=0 fallback_order=10 pageblock_order=9 alloc_migratetype=1 fallback_migratetype=0 fragmenting=10 change_ownership=1"
    )
    r = parse_text(line + "\n")
    row = r.table.to_pylist()[0]
    assert row["fragmenting"] is False and row["change_ownership"] is True
    assert any("fragmenting" in w for w in r.accounting["warnings"])
    ok = line.replace("fallback_order=10", "fallback_order=3").replace("fragmenting=10", "fragmenting=1")
    r = parse_text(ok + "\n")
    assert r.table.to_pylist()[0]["fragmenting"] is True and r.accounting["warnings"] == []
