"""The irq-info column: every character kernel/trace/trace_output.c:trace_print_lat_fmt prints
(6.1 .. 7.3: docs/kernel-profiles.md section 3), in each position, in ftrace and trace-cmd text."""

from __future__ import annotations

import itertools

import pytest

from parsers.api import parse_text

#: per position: irqs-off/BH, need-resched (lazy letters from v6.13), hardirq/softirq/NMI,
#: preempt depth, migrate-disable
POSITIONS = ("DdbX.", "NnpBLbl.", "ZzHhs.", ".123456789abcdef", ".123456789abcdef")

FTRACE = "          init-1       [000] {f}     1.097118: mm_page_free: page=00000000a3f1c2d4 pfn=0x1011fe order=1"
TRACECMD = (
    "            init-1     [000] {f}     1.097118: mm_page_free:         page=0xffffea0004047f80 pfn=0x1011fe order=1"
)


def _columns() -> list[str]:
    """Each character of each position once (the others '.'), and a few full combinations."""
    cols = []
    for i, chars in enumerate(POSITIONS):
        for c in chars:
            cols.append("." * i + c + "." * (4 - i))
    cols += ["".join(t) for t in itertools.islice(itertools.product(*POSITIONS), 0, None, 997)]
    return cols


@pytest.mark.parametrize("template, fmt", [(FTRACE, "ftrace"), (TRACECMD, "trace-cmd")])
def test_every_flag_character_parses(template, fmt):
    cols = _columns()
    text = "\n".join(template.format(f=c) for c in cols) + "\n"
    r = parse_text(text, fmt)
    acc = r.accounting
    assert acc["lines_malformed"] == 0, acc["malformed_examples"]
    assert acc["lines_parsed"] == len(cols)
    rows = r.table.select(["pid", "cpu", "pfn", "order"]).to_pylist()
    assert all(x == {"pid": 1, "cpu": 0, "pfn": 0x1011FE, "order": 1} for x in rows)


def test_lazy_preemption_lines_of_6_18():
    # as printed by 6.18.15 (PREEMPT_LAZY): lazy need-resched in the second position
    lines = [
        "          init-1       [000] .l...     1.097118: mm_page_alloc: page=000000001a2b3c4d pfn=0x10a000 order=0 migratetype=0 gfp_flags=GFP_KERNEL",
        "   kworker/u8:0-11      [002] dNl2.     2.000001: mm_page_free: page=000000001a2b3c4d pfn=0x10a000 order=0",
        "     systemd-1       [001] bBs1.     2.000002: mm_page_free: page=000000001a2b3c4d pfn=0x10a001 order=0",
        "     systemd-1       [001] DLZf9     2.000003: mm_page_free: page=000000001a2b3c4d pfn=0x10a002 order=0",
    ]
    r = parse_text("\n".join(lines) + "\n")
    assert r.accounting["lines_parsed"] == 4 and r.accounting["lines_malformed"] == 0


def test_a_non_flag_character_is_still_not_a_flags_column():
    # 'q' is printed by no kernel: that line has no header the grammar accepts (it is malformed)
    good = FTRACE.format(f=".....")
    r = parse_text(good + "\n" + FTRACE.format(f=".q...") + "\n", "ftrace")
    assert r.accounting["lines_parsed"] == 1 and r.accounting["lines_malformed"] == 1
