"""The perf.data reader's modules at their boundaries: the header (``perfheader``), the record
walk (``perfwalk``), pipe mode and COMPRESSED records (``perfpipe``), the sample fields
(``perfsamples``) and the comms (``perfcomm``), each checked against what the synthetic
builders wrote or, on the real captures, against an independent sequential walk."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import zstandard

from parsers.binary import perfdata as P
from parsers.binary.perfcomm import SideBand, resolve_comms
from parsers.binary.perfformat import R_COMM, R_COMPRESSED, R_COMPRESSED2, R_SAMPLE, RECORD_NAMES
from parsers.binary.perfpipe import walk_all
from parsers.binary.perfsamples import samples
from parsers.binary.perfwalk import walk_records
from parsers.binary.table import Plan
from parsers.errors import TraceFormatError
from tests.conftest import require_trace_file

from .test_binary_synthetic import BO, F, compressed_records, perf_attrs, perf_records, perfdata


def _sequential_walk(buf: bytes) -> list[int]:
    """The records' offsets by the plain definition: each ``{u32 type, u16 misc, u16 size}`` header
    gives the size to the next one."""
    out, p = [], 0
    while p < len(buf):
        _typ, _misc, size = struct.unpack_from("<IHH", buf, p)
        assert size >= 8
        out.append(p)
        p += size
    return out


def _synthetic(pipe: bool = False, compressed: int = 0) -> P.PerfData:
    attrs = perf_attrs()
    recs = perf_records(attrs)
    if compressed:
        recs = recs[:2] + compressed_records(BO, recs[2:], 4, compressed)
    data = perfdata(attrs, recs, [*F.values()], pipe=pipe)
    return P.read_perfdata(data, "t.data")


def test_file_mode_header_attrs_and_features():
    pd = _synthetic()
    assert not pd.pipe and pd.le
    assert [a.ids for a in pd.attrs] == [[11, 12], [13, 14], [90, 91]]
    assert pd.kernel_version == "6.1.0-perf-test"
    assert pd.meta is not None and {f.name for f in pd.meta.formats.values()} >= {"mm_page_alloc", "mm_page_free"}
    assert pd.stream_base > 104 and not pd.walked  # records are walked by ``scan``


def test_pipe_mode_reads_its_header_records():
    pd = _synthetic(pipe=True)
    assert pd.pipe and pd.walked and pd.stream_base == 16
    assert [a.ids for a in pd.attrs] == [[11, 12], [13, 14], [90, 91]]
    assert pd.kernel_version == "6.1.0-perf-test"
    # the header records (an attr each, the osrelease feature, the tracing data) come before the kernel's
    assert pd.record_counts["HEADER_ATTR"] == 3 and pd.record_counts["HEADER_TRACING_DATA"] == 1
    assert pd.record_counts["SAMPLE"] == 6 and pd.record_counts["COMM"] == 3


@pytest.mark.parametrize("kind", [R_COMPRESSED, R_COMPRESSED2])
@pytest.mark.parametrize("compiled", [True, False])
def test_compressed_records_expand_to_the_plain_stream(kind, compiled):
    plain = _synthetic()
    walk_all(plain, compiled)
    pd = _synthetic(compressed=kind)
    walk_all(pd, compiled)
    assert pd.compressed_records == 2 and pd.stream_base == -1
    assert pd.rec_type.tolist() == plain.rec_type.tolist()
    assert bytes(pd.buf) == bytes(plain.buf)
    assert RECORD_NAMES[kind] not in pd.record_counts


def test_a_corrupt_compressed_record_names_its_offset():
    attrs = perf_attrs()
    recs = perf_records(attrs)
    z = zstandard.ZstdCompressor().compress(b"".join(recs[2:]))
    bad = bytearray(z)
    bad[len(bad) // 2] ^= 0xFF
    bad[4:8] = b"\xff\xff\xff\xff"
    rec = struct.pack("<IHH", R_COMPRESSED, 0, 8 + len(bad)) + bytes(bad)
    pd = P.read_perfdata(perfdata(attrs, recs[:2] + [rec], [*F.values()]), "bad.data")
    with pytest.raises(TraceFormatError, match=r"bad\.data: at byte 0x[0-9a-f]+ .*COMPRESSED"):
        walk_all(pd, False)


@pytest.mark.parametrize("compiled", [True, False])
def test_walk_of_the_real_capture_equals_the_sequential_walk(compiled):
    raw = zstandard.ZstdDecompressor().decompressobj().decompress(
        require_trace_file("debian12-6.1-perf/perf.data.zst").read_bytes())
    pd = P.read_perfdata(raw, "perf.data")
    stream = bytes(pd.buf)
    offs = walk_records(pd.buf, pd.le, pd.name, pd.stream_base, compiled)
    assert offs.tolist() == _sequential_walk(stream)


def test_samples_numpy_equal_the_compiled_scan_on_the_real_capture():
    raw = zstandard.ZstdDecompressor().decompressobj().decompress(
        require_trace_file("debian12-6.12-perf/perf.data.zst").read_bytes())
    a = P.read_perfdata(raw, "perf.data")
    plan = Plan(a.meta.formats, a.meta.headers.long_size)
    sc = P.scan(a, plan, compiled=True)
    b = P.read_perfdata(raw, "perf.data")
    walk_all(b, False)
    sn = samples(b, compiled=False)
    assert sc.n_samples == sn.n_samples == int(np.count_nonzero(b.rec_type == R_SAMPLE)) > 400_000
    for f in ("rec", "pos", "length", "ts", "cpu", "pid", "tid"):
        assert np.array_equal(getattr(sc, f), getattr(sn, f)), f
    assert a.record_counts == b.record_counts and a.record_counts["COMM"] == int(np.count_nonzero(b.rec_type == R_COMM))


@pytest.mark.parametrize("compiled", [True, False])
def test_resolve_comms_replays_comm_and_fork_in_time_then_file_order(compiled):
    # (time, record index, kind 0 comm / 1 fork, tid, comm or parent tid)
    sb = SideBand([(0, 0, 0, 10, "sh"), (50, 3, 0, 10, "dd"), (60, 5, 1, 11, "10"), (70, 7, 1, 12, "99")], [])
    s_ts = np.array([40, 50, 50, 65, 80, 80, 5], np.int64)
    s_rec = np.array([1, 2, 4, 6, 8, 9, 10], np.int64)
    s_tid = np.array([10, 10, 10, 11, 12, 0, 13], np.int32)
    ids, names = resolve_comms(sb, s_ts, s_rec, s_tid, compiled)
    got = [names[i] for i in ids.tolist()]
    # record 2 is before the COMM at record 3 (same time): still "sh"; record 4 after it: "dd";
    # the fork of 11 inherits "dd"; 12's parent 99 was never named; pid 0 is swapper
    assert got == ["sh", "sh", "dd", "dd", ":12", "swapper", ":13"]


def test_resolve_comms_compiled_equals_numpy_on_the_real_capture():
    raw = zstandard.ZstdDecompressor().decompressobj().decompress(
        require_trace_file("debian12-6.1-perf/perf.data.zst").read_bytes())
    pd = P.read_perfdata(raw, "perf.data")
    s = P.scan(pd, Plan(pd.meta.formats, pd.meta.headers.long_size))
    sb = P.side_band(pd, s.ts)
    a_ids, a_names = resolve_comms(sb, s.ts, s.rec, s.tid, True)
    b_ids, b_names = resolve_comms(sb, s.ts, s.rec, s.tid, False)
    assert a_names == b_names and len(a_names) > 50
    assert np.array_equal(a_ids, b_ids)
