"""perf.data in file mode: the header, the attrs and their id lists, the feature sections (the
event formats from HEADER_TRACING_DATA, the hostname / osrelease / version / arch / cmdline
strings, EVENT_DESC's event names).  Also what pipe mode carries in its header records
(``attr_from``, ``tracing_data``, ``feature``).
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from .cursor import Cursor, fail
from .perfformat import (
    FEAT_ARCH,
    FEAT_CLOCKID,
    FEAT_CMDLINE,
    FEAT_COMPRESSED,
    FEAT_EVENT_DESC,
    FEAT_HOSTNAME,
    FEAT_NRCPUS,
    FEAT_OSRELEASE,
    FEAT_TRACING_DATA,
    FEAT_VERSION,
    MAX_FEATURE,
    Attr,
    PerfData,
)
from .tpformat import TracingMeta, read_tracing_blocks


def attr_from(buf, off: int, size: int, le: bool, name: str) -> Attr:
    c = Cursor(buf, name, pos=off, end=off + size, le=le, what="perf_event_attr")
    typ = c.u32("attr type")
    c.u32("attr size")
    config = c.u64("attr config")
    c.u64("sample period")
    sample_type = c.u64("sample_type")
    read_format = c.u64("read_format")
    flags = c.u64("attr flags")
    clockid = 0
    if size >= 96:
        c.pos = off + 92
        clockid = c.i32("clockid")
    return Attr(typ, config, sample_type, read_format, flags, clockid, [])


def read_file_mode(data, buf: np.ndarray, name: str, le: bool, c: Cursor, hsize: int) -> PerfData:
    """File mode: the 104-byte header (``c`` just past its size), the attrs with their ids, the
    feature sections (TRACING_DATA: the event formats); the records are walked later."""
    if hsize < 104:
        c.fail(f"unknown perf.data header size {hsize}", 8)
    attr_size = c.u64("attr size")
    a_off, a_size = c.u64("attrs offset"), c.u64("attrs size")
    d_off, d_size = c.u64("data offset"), c.u64("data size")
    c.u64("event types offset")
    c.u64("event types size")
    feat_words = [c.u64("feature bitmap") for _ in range(4)]
    n = len(data)
    if d_off > n:
        fail(name, 40, f"data section offset {d_off} is past the end of the file ({n} bytes; truncated?)")
    warnings: list[str] = []
    if d_off + d_size > n:
        fail(name, 48, f"data section ({d_size} bytes at {d_off}) runs past the end of the file ({n} bytes; truncated?)")
    if d_size == 0 and n > d_off:
        warnings.append(f"{name}: the header gives no data size (perf record did not finish?); reading to the end of the file")
        d_size = n - d_off
    if attr_size < 72 or attr_size > 4096:
        fail(name, 16, f"implausible attr size {attr_size}")
    if a_off + a_size > n or a_size % attr_size:
        fail(name, 24, f"corrupt attrs section ({a_size} bytes at {a_off})")
    attrs = []
    for i in range(a_size // attr_size):
        off = a_off + i * attr_size
        at = attr_from(data, off, attr_size - 16, le, name)
        ic = Cursor(data, name, pos=off + attr_size - 16, le=le, what="attr ids")
        ids_off, ids_size = ic.u64("ids offset"), ic.u64("ids size")
        if ids_off + ids_size > n or ids_size % 8 or ids_size > (1 << 24):
            fail(name, off + attr_size - 16, f"corrupt attr id list ({ids_size} bytes at {ids_off})")
        at.ids = list(struct.unpack_from(("<" if le else ">") + f"{ids_size // 8}Q", data, ids_off))
        attrs.append(at)
    # features
    features: dict[int, Any] = {}
    bits = [b for w, word in enumerate(feat_words) for b in range(64) if word >> b & 1 for b in [w * 64 + b]]
    fc = Cursor(data, name, pos=d_off + d_size, le=le, what="feature table")
    meta = None
    for bit in bits:
        at = fc.pos
        if fc.left < 16:
            fail(name, at, "feature table cut short (truncated?)")
        f_off, f_size = fc.u64("feature offset"), fc.u64("feature size")
        if f_off + f_size > n or f_size > MAX_FEATURE:
            fail(name, at, f"corrupt feature {bit} section ({f_size} bytes at {f_off})")
        if bit == FEAT_TRACING_DATA:
            meta = tracing_data(data, name, f_off, f_size, le)
        else:
            feature(features, bit, data, f_off, f_size, le, name)
    if meta is None:
        fail(name, 72, "no tracing data (the HEADER_TRACING_DATA feature is absent): not a tracepoint recording, "
             "nothing to decode (record with `perf record -e kmem:mm_page_alloc ...`)")
    pd = PerfData(name, le, False, attrs, meta, features, buf[d_off : d_off + d_size], np.zeros(0, np.int64),
                  np.zeros(0, np.int64), np.zeros(0, np.int64), d_off, warnings=warnings)
    names_from_event_desc(pd, data)
    pd.kernel_version = str(features.get(FEAT_OSRELEASE, ""))
    return pd  # the records are walked by ``scan`` (with the samples decoded in the same pass)

def tracing_data(data, name: str, off: int, size: int, le_file: bool) -> TracingMeta:
    c = Cursor(data, name, pos=off, end=off + size, le=le_file, what="tracing data")
    if c.left < 10 or bytes(data[off : off + 10]) != b"\x17\x08Dtracing":
        c.fail("tracing data does not start with the tracing magic")
    c.pos += 10
    ver = c.cstr("tracing data version", 16)
    endian = c.u8("tracing data endian")
    c.le = endian == 0
    c.u8("long size")
    c.u32("page size")
    try:
        vnum = float(ver)
    except ValueError:
        c.fail(f"unknown tracing data version {ver!r}")
    return read_tracing_blocks(c, cmdlines=vnum >= 0.6)


def _string(data, off: int, end: int, le: bool, name: str, what: str) -> str:
    c = Cursor(data, name, pos=off, end=end, le=le, what=what)
    n = c.u32(f"{what} length")
    s = c.bytes(n, what)
    return s.split(b"\0", 1)[0].decode("utf-8", "backslashreplace")


def feature(features: dict[int, Any], bit: int, data, off: int, size: int, le: bool, name: str) -> None:
    try:
        if bit in (FEAT_HOSTNAME, FEAT_OSRELEASE, FEAT_VERSION, FEAT_ARCH):
            features[bit] = _string(data, off, off + size, le, name, f"feature {bit}")
        elif bit == FEAT_NRCPUS and size >= 8:
            features[bit] = struct.unpack_from(("<" if le else ">") + "II", data, off)
        elif bit == FEAT_CMDLINE:
            c = Cursor(data, name, pos=off, end=off + size, le=le, what="cmdline feature")
            nr = c.u32("cmdline count")
            parts = []
            for _ in range(min(nr, 4096)):
                ln = c.u32("cmdline arg length")
                parts.append(c.bytes(ln, "cmdline arg").split(b"\0", 1)[0].decode("utf-8", "backslashreplace"))
            features[bit] = " ".join(parts)
        elif bit == FEAT_EVENT_DESC:
            features[bit] = (off, size)
        elif bit == FEAT_CLOCKID and size >= 8:
            features[bit] = struct.unpack_from(("<" if le else ">") + "Q", data, off)[0]
        elif bit == FEAT_COMPRESSED and size >= 20:
            features[bit] = struct.unpack_from(("<" if le else ">") + "IIIII", data, off)
    except Exception:  # noqa: BLE001 - a damaged optional feature is not worth failing the file for
        features.setdefault("damaged", []).append(bit)


def names_from_event_desc(pd: PerfData, data) -> None:
    ed = pd.features.get(FEAT_EVENT_DESC)
    if not ed:
        return
    off, size = ed
    try:
        c = Cursor(data, pd.name, pos=off, end=off + size, le=pd.le, what="event desc")
        nr = c.u32("event count")
        asz = c.u32("attr size")
        by_ids = {i: a for a in pd.attrs for i in a.ids}
        for _ in range(min(nr, 1 << 16)):
            c.skip(asz, "attr")
            nids = c.u32("id count")
            nm = c.u32("name length")
            s = c.bytes(nm, "event name").split(b"\0", 1)[0].decode("utf-8", "backslashreplace")
            ids = [c.u64("id") for _ in range(min(nids, 1 << 16))]
            for i in ids:
                if i in by_ids:
                    by_ids[i].name = s
    except Exception:  # noqa: BLE001 - the names are only for messages
        return
