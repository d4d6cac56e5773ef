"""The compiled ring-buffer scan (``kernels.rb_count`` + ``rb_scan_into``) split across threads:
the page ranges it hands out must give exactly the one-pass result, the numpy walk's."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from parsers.binary import aot, ringbuf, tracedat
from parsers.binary.table import Plan

from .test_binary_synthetic import FMTS, Rec, alloc, free, page, tracedat_v7


def _pages() -> dict[int, list[bytes]]:
    """Two CPUs of several pages: data, time extends, padding, lost markers and two corrupt pages."""
    p = [page(1000 * i, [Rec("data", 1, free(1, 0x10 + i, 0)), Rec("ext", value=(1 << 27) + i),
                         Rec("data", 2, alloc(2, 0x100 + i, 1, 0xCC0, 1)), Rec("pad", 1, value=8)],
              lost=(3 * i if i % 3 == 1 else None)) for i in range(12)]
    bad_commit = bytearray(page(5_000, [Rec("data", 1, free(1, 0x99, 0))]))
    bad_commit[8:16] = struct.pack("<q", 5000)  # commit larger than the page
    bad_header = bytearray(page(6_000, [Rec("data", 1, free(1, 0x98, 0)), Rec("data0", 1, free(1, 0x97, 0))]))
    at = 16 + 4 + len(free(1, 0x98, 0))  # the type_len 0 record: its length word says 1
    bad_header[at + 4 : at + 8] = struct.pack("<I", 1)
    return {0: p[:7] + [bytes(bad_commit)], 1: [bytes(bad_header)] + p[7:]}


@pytest.mark.parametrize("parallel_min", [1, 1 << 30])
def test_threaded_page_ranges_equal_the_numpy_walk(monkeypatch, parallel_min):
    if aot.get() is None:
        pytest.skip("the compiled kernels are not built here")
    monkeypatch.setattr(ringbuf, "PARALLEL_MIN", parallel_min)  # 1: two ranges even for these few records
    td = tracedat.read_tracedat(tracedat_v7(_pages(), FMTS, comp="zstd"), "t.dat")
    plan = Plan(td.formats, td.headers.long_size)
    a = tracedat.scan(td, plan, compiled=True)
    b = tracedat.scan(td, plan, compiled=False)
    assert len(a.pos) == len(b.pos) == 2 * 12 + 1  # the bad-header page keeps its first record
    for f in ("pos", "length", "ts", "page", "page_first", "page_lost"):
        assert np.array_equal(getattr(a, f), getattr(b, f)), f
    assert a.counts == b.counts and a.counts["time_extend"] == 12 and a.counts["padding"] == 12
    assert a.bad_pages == b.bad_pages == [(7, ringbuf.BAD_COMMIT, 0), (8, ringbuf.BAD_HEADER, 16 + 4 + len(free(1, 0x98, 0)))]
    assert int(np.count_nonzero(a.page_lost >= 0)) == 4
