"""Text renderer: kernel text per format x era, and the round trip render -> parse -> same table."""

from __future__ import annotations

import gzip
import io
import re
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
import zstandard

from parsers.api import parse_files, parse_text
from parsers.synthetic.emit import emit
from parsers.synthetic.render import ERAS, FORMATS, RenderOptions, as_rendered, render, render_text
from parsers.synthetic.workloads import Machine, generate
from tests.helpers.events import make_events

SAMPLES = Path(__file__).resolve().parents[2] / "sample_traces"
SKIP_COLS = {"source_file", "line"}


def _rows() -> list[dict]:
    """Every event kind, failed allocation, odd comms, wide pids, high CPU numbers."""
    return [
        dict(ts_ns=10_091_927_000, cpu=1, pid=1, tgid=1, comm="init", event="mm_page_alloc", pfn=0x13707C, order=0,
             migratetype=0, gfp_flags="GFP_KERNEL|__GFP_NOWARN|__GFP_NORETRY"),
        dict(ts_ns=10_091_928_000, cpu=1, pid=1, tgid=1, comm="init", event="mm_page_alloc_zone_locked", pfn=0x13707D,
             order=0, migratetype=1, percpu_refill=True),
        dict(ts_ns=10_091_928_000, cpu=1, pid=1, tgid=1, comm="init", event="mm_page_alloc_zone_locked", pfn=0x13707E,
             order=2, migratetype=1, percpu_refill=True),
        dict(ts_ns=10_091_929_000, cpu=3, pid=1977, tgid=1970, comm="kworker/3:1", event="mm_page_pcpu_drain",
             pfn=0x13707E, order=0, migratetype=1),
        dict(ts_ns=10_091_930_000, cpu=2, pid=4194304, tgid=4194300, comm="Web Content", event="mm_page_free",
             pfn=0x13707F, order=2),
        dict(ts_ns=10_091_931_000, cpu=2, pid=12, tgid=None, comm="<idle>", event="mm_page_free_batched", pfn=0x13707F,
             order=0, cold=True),
        dict(ts_ns=10_091_932_000, cpu=0, pid=12, tgid=12, comm="a-b:c/d", event="mm_page_alloc", pfn=None, failed=True,
             order=9, migratetype=1, gfp_flags="GFP_TRANSHUGE"),
        dict(ts_ns=10_091_933_000, cpu=0, pid=12, tgid=12, comm="bash", event="mm_page_alloc_extfrag", pfn=0x137400,
             order=0, migratetype=0, fallback_order=10, pageblock_order=9, fallback_migratetype=1, fragmenting=False,
             change_ownership=True),
        dict(ts_ns=10_091_933_000, cpu=0, pid=12, tgid=12, comm="bash", event="mm_page_alloc_extfrag", pfn=0x137800,
             order=1, migratetype=0, fallback_order=3, pageblock_order=9, fallback_migratetype=0, fragmenting=True,
             change_ownership=False),
        dict(ts_ns=123_456_000_001_000, cpu=127, pid=0, tgid=0, comm="swapper/127", event="mm_page_alloc", pfn=1,
             order=3, migratetype=2, gfp_flags="none"),
    ]  # fmt: skip


def _same(got: pa.Table, want: pa.Table) -> list[str]:
    bad = []
    assert got.num_rows == want.num_rows, (got.num_rows, want.num_rows)
    for name in want.column_names:
        if name in SKIP_COLS:
            continue
        a, b = got.column(name).to_pylist(), want.column(name).to_pylist()
        if a != b:
            diffs = [(i, x, y) for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
            bad.append(f"{name}: {diffs[:3]}")
    return bad


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_every_event_kind(fmt: str, era: str) -> None:
    t = make_events(_rows())
    opts = RenderOptions(fmt=fmt, era=era)
    text = render_text(t, opts=opts)
    res = parse_text(text, strict=True)
    assert res.accounting["lines_malformed"] == 0
    assert _same(res.table, as_rendered(t, opts)) == []
    assert res.metadata["pagereplay.format"] == fmt


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_synthetic_workload_lossless(fmt: str, era: str, tmp_path: Path) -> None:
    """A synthetic (microsecond-aligned, era-D) table survives every format x era except what the era computes."""
    m = Machine(events=3000, seed=7, cpus=3)
    table = pa.Table.from_batches(list(emit(generate("churn", None, m), m)))
    opts = RenderOptions(fmt=fmt, era=era, chunk_rows=1000)  # several compiled passes
    path = tmp_path / "t.txt"
    render(table, path, opts)
    res = parse_files([path], strict=True)
    want = as_rendered(table, opts)
    assert _same(res.table, want) == []
    if era == "D":  # nothing of a synthetic table is lost in the newest era but tgid
        assert _same(res.table, table.set_column(3, "tgid", pa.nulls(table.num_rows, pa.int32()))) == []


def test_options_tgid_no_irq_info_pipe_legacy_names() -> None:
    t = make_events(_rows())
    for opts in (
        RenderOptions(record_tgid=True),
        RenderOptions(era="B", record_tgid=True, irq_info=False),
        RenderOptions(era="C", header=False),
        RenderOptions(era="A", legacy_names=True),
    ):
        res = parse_text(render_text(t, opts=opts), strict=True)
        assert _same(res.table, as_rendered(t, opts)) == [], opts
    text = render_text(t, era="A", legacy_names=True)
    assert "mm_page_free_direct:" in text and "mm_pagevec_free:" in text and "cold=1" in text
    assert "(   1970) " in render_text(t, record_tgid=True) and "(-------)" in render_text(t, record_tgid=True)


def test_era_specific_text() -> None:
    t = make_events(_rows())
    a, b, c, d = (render_text(t, era=e) for e in ERAS)
    assert "pfn=1273980 " in a and "pfn=1273980 " in b and "pfn=0x13707c " in c
    assert "page=(null) pfn=0 order=9" in a and "page=(null) pfn=0 order=9" in b
    assert "page=0000000000000000 pfn=0x0 order=9" in d
    assert "page=ffffea0004dc1f00" in a  # raw struct page * in era A
    # percpu_refill printed as order == 0 before 5.19, as recorded from 5.19
    assert "order=2 migratetype=1 percpu_refill=0" in c and "order=2 migratetype=1 percpu_refill=1" in d
    # 4-char flags and -%-5d before ~5.13, 5 chars and -%-7d after
    assert re.search(r"^            init-1     \[001\] \.\.\.\.  +10\.091927: mm_page_alloc: ", a, re.M)
    assert re.search(r"^            init-1       \[001\] \.\.\.\.\. +10\.091927: mm_page_alloc: ", d, re.M)
    perf = render_text(t, fmt="perf")
    assert "            init     1 [001]    10.091927:             kmem:mm_page_alloc: page=0x13707c pfn=0x13707c" in perf
    tc = render_text(t, fmt="trace-cmd")
    assert tc.startswith("cpus=128\n")
    assert "mm_page_alloc:        page=0xffffffff8894c7ac pfn=0x13707c" in tc


def _norm(line: str, fmt: str) -> str:
    if fmt == "ftrace":
        line = re.sub(r"page=\S+", "page=X", line)  # hashed pointers
        line = re.sub(r"(\[\d{3}\]) \S{5} ", r"\1 FLAGS ", line)  # the table does not carry irq flags
    return line


@pytest.mark.parametrize(
    "fmt,path",
    [
        ("perf", SAMPLES / "debian12-6.1-perf-head20k.txt.zst"),
        ("trace-cmd", SAMPLES / "debian12-6.1-tracecmd-head20k.txt.gz"),
        ("ftrace", SAMPLES / "debian12-6.1-boot-head3k.txt"),
    ],
)
def test_real_traces_render_back_byte_for_byte(fmt: str, path: Path) -> None:
    """Parse a real 6.1 capture and render it again: the same lines (as multisets; equal timestamps may reorder)."""
    raw = path.read_bytes()
    if path.suffix == ".zst":
        raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw)).read()
    elif path.suffix == ".gz":
        raw = gzip.decompress(raw)
    original = raw.decode().splitlines()
    table = parse_text(raw).table
    out = render_text(table, fmt=fmt, era="D").splitlines()
    events = lambda ls: sorted(_norm(x, fmt) for x in ls if not x.startswith(("#", "cpus=")) and ": mm_page" in x or "kmem:" in x)  # noqa: E731
    assert events(out) == events(original)


# printable ASCII without spaces; a leading '#' would make the line a comment (tracefs has the same ambiguity)
_COMMS = st.text(alphabet=st.characters(codec="ascii", min_codepoint=33, max_codepoint=126), min_size=1, max_size=15).filter(
    lambda c: not c.startswith("#")
)


@st.composite
def _event_rows(draw) -> list[dict]:
    rows = []
    for i in range(draw(st.integers(1, 25))):
        ev = draw(st.sampled_from(["mm_page_alloc", "mm_page_alloc_zone_locked", "mm_page_free", "mm_page_free_batched",
                                   "mm_page_pcpu_drain", "mm_page_alloc_extfrag"]))  # fmt: skip
        order = 0 if ev == "mm_page_free_batched" else draw(st.integers(0, 10))
        r = dict(ts_ns=draw(st.integers(0, 10**14)) // 1000 * 1000, cpu=draw(st.integers(0, 300)),
                 pid=draw(st.integers(0, 4194304)), comm=draw(_COMMS), event=ev, order=order,
                 pfn=draw(st.integers(1, 2**40)), seq=i, line=i + 1)  # fmt: skip
        if ev in ("mm_page_alloc", "mm_page_alloc_zone_locked", "mm_page_pcpu_drain", "mm_page_alloc_extfrag"):
            r["migratetype"] = draw(st.integers(0, 5))
        if ev == "mm_page_alloc":
            r["gfp_flags"] = draw(st.sampled_from(["GFP_KERNEL", "GFP_HIGHUSER_MOVABLE|__GFP_ZERO", "none", "__GFP_IO|0x4000000"]))
            if draw(st.booleans()):
                r["pfn"], r["failed"] = None, True
        if ev == "mm_page_alloc_zone_locked":
            r["percpu_refill"] = draw(st.booleans())
        if ev == "mm_page_free_batched":
            r["cold"] = draw(st.booleans())
        if ev == "mm_page_alloc_extfrag":
            r.update(fallback_order=draw(st.integers(0, 10)), pageblock_order=9, fallback_migratetype=draw(st.integers(0, 5)),
                     change_ownership=draw(st.booleans()))  # fmt: skip
        rows.append(r)
    return rows


@settings(max_examples=60, deadline=None)
@given(rows=_event_rows(), fmt=st.sampled_from(FORMATS), era=st.sampled_from(ERAS), tgid=st.booleans(), irq=st.booleans())
def test_property_round_trip(rows: list[dict], fmt: str, era: str, tgid: bool, irq: bool) -> None:
    t = make_events(rows)
    opts = RenderOptions(fmt=fmt, era=era, record_tgid=tgid, irq_info=irq, header=bool(len(rows) % 2))
    res = parse_text(render_text(t, opts=opts), strict=True)
    assert _same(res.table, as_rendered(t, opts)) == []
