"""perf.data pipe mode (attrs, tracing data and features arrive as records before the kernel's)
and PERF_RECORD_COMPRESSED / COMPRESSED2 (pieces of one zstd stream of further records,
expanded in place before the samples are read).
"""

from __future__ import annotations

import struct

import numpy as np

from .cursor import fail
from .perfformat import (
    FEAT_OSRELEASE,
    R_COMPRESSED,
    R_COMPRESSED2,
    R_HEADER_ATTR,
    R_HEADER_FEATURE,
    R_HEADER_TRACING_DATA,
    PerfData,
)
from .perfheader import attr_from, feature, tracing_data
from .perfwalk import set_records, walk_records


def read_pipe(data, buf: np.ndarray, name: str, le: bool) -> PerfData:
    """Pipe mode: attrs, tracing data and features arrive as records before the kernel records."""
    pd = PerfData(name, le, True, [], None, {}, buf[16:], np.zeros(0, np.int64), np.zeros(0, np.int64),
                  np.zeros(0, np.int64), 16)
    walk_all(pd)  # the attrs and the tracing data come as records
    bo = "<" if le else ">"
    for off, typ, size in zip(pd.rec_off.tolist(), pd.rec_type.tolist(), pd.rec_size.tolist()):
        if typ == R_HEADER_ATTR:
            fo = 16 + off
            asz = struct.unpack_from(bo + "I", data, fo + 8 + 4)[0]
            if asz < 64 or 8 + asz > size:
                fail(name, fo, f"corrupt HEADER_ATTR record (attr size {asz}, record {size})")
            at = attr_from(data, fo + 8, asz, le, name)
            nids = (size - 8 - asz) // 8
            at.ids = list(struct.unpack_from(bo + f"{nids}Q", data, fo + 8 + asz))
            pd.attrs.append(at)
        elif typ == R_HEADER_TRACING_DATA:
            fo = 16 + off
            tsize = struct.unpack_from(bo + "I", data, fo + 8)[0]
            pd.meta = tracing_data(data, name, fo + 12, tsize, le)
        elif typ == R_HEADER_FEATURE:
            fo = 16 + off
            feat = struct.unpack_from(bo + "Q", data, fo + 8)[0]
            feature(pd.features, int(feat), data, fo + 16, size - 16, le, name)
    if pd.meta is None:
        fail(name, 16, "no tracing data (no HEADER_TRACING_DATA record): not a tracepoint recording, nothing to decode")
    if not pd.attrs:
        fail(name, 16, "no HEADER_ATTR record: the samples cannot be decoded")
    pd.kernel_version = str(pd.features.get(FEAT_OSRELEASE, ""))
    return pd


def walk_all(pd: PerfData, compiled: bool = True) -> None:
    buf = pd.buf
    offs = walk_records(buf, pd.le, pd.name, pd.stream_base, compiled)
    set_records(pd, offs, compiled)
    if np.any((pd.rec_type == R_COMPRESSED) | (pd.rec_type == R_COMPRESSED2)):
        decompress_stream(pd, compiled)
    pd.walked = True


def decompress_stream(pd: PerfData, compiled: bool = True) -> None:
    """Expand COMPRESSED/COMPRESSED2 records in place: one zstd stream across all of them."""
    import zstandard

    bo = "<" if pd.le else ">"
    mv = memoryview(pd.buf)
    parts: list[bytes] = []
    d = zstandard.ZstdDecompressor().decompressobj()
    run_start = None
    ncomp = 0
    for off, typ, size in zip(pd.rec_off.tolist(), pd.rec_type.tolist(), pd.rec_size.tolist()):
        if typ in (R_COMPRESSED, R_COMPRESSED2):
            if run_start is not None:
                parts.append(bytes(mv[run_start:off]))
                run_start = None
            if typ == R_COMPRESSED2:
                dsize = struct.unpack_from(bo + "Q", mv, off + 8)[0]
                if 16 + dsize > size:
                    fail(pd.name, pd.stream_base + off, f"corrupt COMPRESSED2 record (data size {dsize}, record {size})")
                payload = mv[off + 16 : off + 16 + dsize]
            else:
                payload = mv[off + 8 : off + size]
            try:
                out = d.decompress(bytes(payload))
                while d.eof and d.unused_data:
                    rest = d.unused_data
                    d = zstandard.ZstdDecompressor().decompressobj()
                    out += d.decompress(rest)
                if d.eof:
                    d = zstandard.ZstdDecompressor().decompressobj()
            except zstandard.ZstdError as e:
                fail(pd.name, pd.stream_base + off, f"corrupt PERF_RECORD_COMPRESSED data: {e}")
            parts.append(out)
            ncomp += 1
        elif run_start is None:
            run_start = off
    if run_start is not None:
        parts.append(bytes(mv[run_start:]))
    stream = np.frombuffer(b"".join(parts), np.uint8)
    pd.buf = stream
    pd.stream_base = -1
    pd.compressed_records = ncomp
    offs = walk_records(stream, pd.le, pd.name + " (decompressed records)", -1, compiled)
    set_records(pd, offs, compiled)
    if np.any((pd.rec_type == R_COMPRESSED) | (pd.rec_type == R_COMPRESSED2)):
        fail(pd.name, None, "compressed records inside compressed records")
