"""perf ``perf.data`` (``PERFILE2``, file or pipe mode) -> tracepoint samples.

Layout (from ``tools/perf/Documentation/perf.data-file-format.txt`` and
``include/uapi/linux/perf_event.h``; all numbers in the writer's byte order, a byte-swapped magic
meaning the other one):

* file mode: a 104-byte header ``{magic, u64 size=104, u64 attr_size, attrs {offset, size},
  data {offset, size}, event_types {offset, size}, u64 features[4]}``; attrs are
  ``attr_size - 16`` bytes of ``perf_event_attr`` then ``{u64 ids_offset, u64 ids_size}``; the
  feature sections ``{u64 offset, u64 size}`` (one per set feature bit, in bit order) follow the
  data.  Feature 1, TRACING_DATA, holds a v6-style trace.dat header with the event formats.
* pipe mode: a 16-byte header, then records only: HEADER_ATTR (64), HEADER_TRACING_DATA (66,
  whose ``u32 size`` payload follows the 12-byte record), HEADER_FEATURE (80)...
* records ``{u32 type, u16 misc, u16 size}``; SAMPLE (9) fields in ``sample_type`` bit order
  (IDENTIFIER, IP, TID, TIME, ADDR, ID, STREAM_ID, CPU, PERIOD, READ, CALLCHAIN, RAW...);
  COMM (3), FORK (7), EXIT (4), LOST (2), LOST_SAMPLES (13) end with a ``sample_id`` trailer
  when ``sample_id_all`` is set; COMPRESSED (81) / COMPRESSED2 (83) carry pieces of one zstd
  stream of further records.

Records can only be found by walking their sizes.  The walk is vectorised: the data is cut into
a few thousand chunks, each chunk starts at a plausible record header, all chunks are walked
at once, and then each chunk's start is checked against where the previous (already verified)
chunk's walk ended; a chunk whose guess was wrong is walked again from the right place.  The
result is exactly the sequential walk (the first chunk starts at a known boundary), at numpy
speed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import aot
from .cursor import Cursor, fail
from .kernels import WALK_BAD_SIZE, WALK_CUT_HEADER, WALK_FULL, WALK_OK
from .tpformat import TracingMeta, read_tracing_blocks

MAGIC = b"PERFILE2"
MAGIC_SWAPPED = b"2ELIFREP"

# record types
R_MMAP, R_LOST, R_COMM, R_EXIT, R_THROTTLE, R_UNTHROTTLE, R_FORK, R_READ, R_SAMPLE = 1, 2, 3, 4, 5, 6, 7, 8, 9
R_LOST_SAMPLES = 13
R_HEADER_ATTR, R_HEADER_EVENT_TYPE, R_HEADER_TRACING_DATA, R_HEADER_BUILD_ID = 64, 65, 66, 67
R_FINISHED_ROUND, R_AUXTRACE, R_HEADER_FEATURE, R_COMPRESSED, R_FINISHED_INIT, R_COMPRESSED2 = 68, 71, 80, 81, 82, 83
RECORD_NAMES = {
    1: "MMAP", 2: "LOST", 3: "COMM", 4: "EXIT", 5: "THROTTLE", 6: "UNTHROTTLE", 7: "FORK", 8: "READ", 9: "SAMPLE",
    10: "MMAP2", 11: "AUX", 12: "ITRACE_START", 13: "LOST_SAMPLES", 14: "SWITCH", 15: "SWITCH_CPU_WIDE",
    16: "NAMESPACES", 17: "KSYMBOL", 18: "BPF_EVENT", 19: "CGROUP", 20: "TEXT_POKE", 21: "AUX_OUTPUT_HW_ID",
    64: "HEADER_ATTR", 65: "HEADER_EVENT_TYPE", 66: "HEADER_TRACING_DATA", 67: "HEADER_BUILD_ID",
    68: "FINISHED_ROUND", 69: "ID_INDEX", 70: "AUXTRACE_INFO", 71: "AUXTRACE", 72: "AUXTRACE_ERROR",
    73: "THREAD_MAP", 74: "CPU_MAP", 75: "STAT_CONFIG", 76: "STAT", 77: "STAT_ROUND", 78: "EVENT_UPDATE",
    79: "TIME_CONV", 80: "HEADER_FEATURE", 81: "COMPRESSED", 82: "FINISHED_INIT", 83: "COMPRESSED2",
}

# sample_type bits
S_IP, S_TID, S_TIME, S_ADDR, S_READ, S_CALLCHAIN, S_ID, S_CPU = 1 << 0, 1 << 1, 1 << 2, 1 << 3, 1 << 4, 1 << 5, 1 << 6, 1 << 7
S_PERIOD, S_STREAM_ID, S_RAW, S_IDENTIFIER = 1 << 8, 1 << 9, 1 << 10, 1 << 16
# read_format bits
F_ENABLED, F_RUNNING, F_ID, F_GROUP, F_LOST = 1, 2, 4, 8, 16
# feature bits
FEAT_TRACING_DATA, FEAT_HOSTNAME, FEAT_OSRELEASE, FEAT_VERSION, FEAT_ARCH, FEAT_NRCPUS = 1, 3, 4, 5, 6, 7
FEAT_CMDLINE, FEAT_EVENT_DESC, FEAT_CLOCKID, FEAT_COMPRESSED = 11, 12, 23, 27
ATTR_FLAG_SAMPLE_ID_ALL = 1 << 18
ATTR_FLAG_USE_CLOCKID = 1 << 25

MAX_FEATURE = 64 << 20  # a feature section claiming more is corrupt (TRACING_DATA is tens of KiB)


@dataclass
class Attr:
    type: int
    config: int
    sample_type: int
    read_format: int
    flags: int
    clockid: int
    ids: list[int]
    name: str = ""

    @property
    def sample_id_all(self) -> bool:
        return bool(self.flags & ATTR_FLAG_SAMPLE_ID_ALL)


@dataclass
class PerfData:
    name: str
    le: bool
    pipe: bool
    attrs: list[Attr]
    meta: TracingMeta | None
    features: dict[int, Any]
    buf: np.ndarray  # the record stream (the data section, or the decompressed stream)
    rec_off: np.ndarray  # int64 offsets of every record in ``buf``, in file order
    rec_type: np.ndarray
    rec_size: np.ndarray
    stream_base: int  # file offset of buf[0] (for messages; -1 when buf is decompressed data)
    walked: bool = False  # rec_* hold the records of the final (decompressed) stream
    kernel_version: str = ""
    record_counts: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    compressed_records: int = 0


# ------------------------------------------------------------------------------------ header
def _attr_from(buf, off: int, size: int, le: bool, name: str) -> Attr:
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


def read_perfdata(data, name: str) -> PerfData:
    head = bytes(data[:8])
    if head == MAGIC:
        le = True
    elif head == MAGIC_SWAPPED:
        le = False
    elif head == b"PERFFILE":
        fail(name, 0, "perf.data version 1 (PERFFILE) is not supported")
    else:
        fail(name, 0, "not a perf.data file (bad magic)")
    buf = np.frombuffer(data, np.uint8) if not isinstance(data, np.ndarray) else data
    c = Cursor(data, name, pos=8, le=le, what="perf.data header")
    hsize = c.u64("header size")
    if hsize == 16:
        return _read_pipe(data, buf, name, le)
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
        at = _attr_from(data, off, attr_size - 16, le, name)
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
            meta = _tracing_data(data, name, f_off, f_size, le)
        else:
            _feature(features, bit, data, f_off, f_size, le, name)
    if meta is None:
        fail(name, 72, "no tracing data (the HEADER_TRACING_DATA feature is absent): not a tracepoint recording, "
             "nothing to decode (record with `perf record -e kmem:mm_page_alloc ...`)")
    pd = PerfData(name, le, False, attrs, meta, features, buf[d_off : d_off + d_size], np.zeros(0, np.int64),
                  np.zeros(0, np.int64), np.zeros(0, np.int64), d_off, warnings=warnings)
    _names_from_event_desc(pd, data)
    pd.kernel_version = str(features.get(FEAT_OSRELEASE, ""))
    return pd  # the records are walked by ``scan`` (with the samples decoded in the same pass)


def _tracing_data(data, name: str, off: int, size: int, le_file: bool) -> TracingMeta:
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


def _feature(features: dict[int, Any], bit: int, data, off: int, size: int, le: bool, name: str) -> None:
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


def _names_from_event_desc(pd: PerfData, data) -> None:
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


# ------------------------------------------------------------------------------------ pipe mode
def _read_pipe(data, buf: np.ndarray, name: str, le: bool) -> PerfData:
    """Pipe mode: attrs, tracing data and features arrive as records before the kernel records."""
    pd = PerfData(name, le, True, [], None, {}, buf[16:], np.zeros(0, np.int64), np.zeros(0, np.int64),
                  np.zeros(0, np.int64), 16)
    _walk_all(pd)  # the attrs and the tracing data come as records
    bo = "<" if le else ">"
    for off, typ, size in zip(pd.rec_off.tolist(), pd.rec_type.tolist(), pd.rec_size.tolist()):
        if typ == R_HEADER_ATTR:
            fo = 16 + off
            asz = struct.unpack_from(bo + "I", data, fo + 8 + 4)[0]
            if asz < 64 or 8 + asz > size:
                fail(name, fo, f"corrupt HEADER_ATTR record (attr size {asz}, record {size})")
            at = _attr_from(data, fo + 8, asz, le, name)
            nids = (size - 8 - asz) // 8
            at.ids = list(struct.unpack_from(bo + f"{nids}Q", data, fo + 8 + asz))
            pd.attrs.append(at)
        elif typ == R_HEADER_TRACING_DATA:
            fo = 16 + off
            tsize = struct.unpack_from(bo + "I", data, fo + 8)[0]
            pd.meta = _tracing_data(data, name, fo + 12, tsize, le)
        elif typ == R_HEADER_FEATURE:
            fo = 16 + off
            feat = struct.unpack_from(bo + "Q", data, fo + 8)[0]
            _feature(pd.features, int(feat), data, fo + 16, size - 16, le, name)
    if pd.meta is None:
        fail(name, 16, "no tracing data (no HEADER_TRACING_DATA record): not a tracepoint recording, nothing to decode")
    if not pd.attrs:
        fail(name, 16, "no HEADER_ATTR record: the samples cannot be decoded")
    pd.kernel_version = str(pd.features.get(FEAT_OSRELEASE, ""))
    return pd


# ------------------------------------------------------------------------------------ the walk
def _extra(typ: int, buf, p: int, le: bool) -> int:
    """Bytes that follow a record outside its header size (AUXTRACE data, pipe tracing data)."""
    if typ == R_AUXTRACE:
        return struct.unpack_from("<Q" if le else ">Q", buf, p + 8)[0]
    if typ == R_HEADER_TRACING_DATA:
        return struct.unpack_from("<I" if le else ">I", buf, p + 8)[0]
    return 0


def _walk_seq(mv, p: int, stop: int, end: int, le: bool, name: str, base: int, out: list[int]) -> int:
    """Walk from the record boundary ``p`` until a record starts at or after ``stop``; return it."""
    hdr = struct.Struct("<IHH" if le else ">IHH")
    while p < stop:
        if p + 8 > end:
            fail(name, base + p if base >= 0 else None, f"record header cut short at the end of the data ({end - p} bytes left; truncated?)")
        typ, _misc, size = hdr.unpack_from(mv, p)
        if size < 8:
            fail(name, base + p if base >= 0 else None, f"corrupt record (type {typ}, size {size})")
        nxt = p + size
        if typ in (R_AUXTRACE, R_HEADER_TRACING_DATA):
            if nxt + 0 > end:
                fail(name, base + p if base >= 0 else None, f"{RECORD_NAMES[typ]} record cut short (truncated?)")
            nxt += _extra(typ, mv, p, le)
        if nxt > end:
            fail(name, base + p if base >= 0 else None, f"record (type {typ}, {nxt - p} bytes) runs past the end of the data (truncated?)")
        out.append(p)
        p = nxt
    return p


CHUNK_MIN = 1 << 12  # bytes: smaller data is walked sequentially (x4), chunks are at least this
CHUNKS = 4096
WINDOW = 64  # 8-byte words searched for a plausible header at the start of each chunk


def walk_records(buf: np.ndarray, le: bool, name: str, base: int, compiled: bool = True) -> np.ndarray:
    """Offsets of every record in ``buf`` (a record stream starting at a boundary)."""
    end = len(buf)
    k = aot.get() if compiled else None
    if k is not None:
        rbuf = aot.ro(buf)
        z = aot.ro(np.zeros(1, np.int64))
        hdr = aot.ro(np.array([0, 2, 4, 4], np.int64))
        plan0 = aot.ro(np.zeros((1, 1, 3), np.int64))
        out = []
        p = 0
        while True:
            cap = max(1024, min(SCAN_CAP, (end - p) // 8 + 1))
            r = k.perf_scan(rbuf, p, end, le, cap, False, -1, z, z, z, z, aot.ro(np.zeros((1, 5), np.int64)), hdr, z,
                            plan0, z, z)
            status, stop, n = int(r[0]), int(r[1]), int(r[2])
            out.append(r[4][:n])
            if status == WALK_FULL:
                p = stop
                continue
            if status != WALK_OK:
                at = base + stop if base >= 0 else None
                if status == WALK_CUT_HEADER:
                    fail(name, at, f"record header cut short at the end of the data ({end - stop} bytes left; truncated?)")
                typ = int(_u(buf, np.array([stop]), 4, le, False)[0])
                if status == WALK_BAD_SIZE:
                    fail(name, at, f"corrupt record (type {typ}, size {int(_u(buf, np.array([stop + 6]), 2, le, False)[0])})")
                fail(name, at, f"record (type {typ}) runs past the end of the data (truncated?)")
            break
        return out[0] if len(out) == 1 else np.concatenate(out)
    mv = memoryview(buf) if buf.flags.c_contiguous else memoryview(np.ascontiguousarray(buf))
    out: list[np.ndarray] = []
    p = 0
    while p < end:
        seg, stop = _walk_vector(buf, mv, p, end, le, name, base)
        out.append(seg)
        if stop is None:
            break
        # a record the vector walk does not follow (odd size, payload outside its size): step over it
        lst: list[int] = []
        p = _walk_seq(mv, stop, stop + 1, end, le, name, base, lst)
        out.append(np.asarray(lst, np.int64))
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def _hdr_fields(hv: np.ndarray, le: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(type, misc, size) of header words (u64 values of ``{u32 type, u16 misc, u16 size}``)."""
    if le:
        return ((hv & np.uint64(0xFFFFFFFF)).astype(np.int64), ((hv >> np.uint64(32)) & np.uint64(0xFFFF)).astype(np.int64),
                (hv >> np.uint64(48)).astype(np.int64))
    return ((hv >> np.uint64(32)).astype(np.int64), ((hv >> np.uint64(16)) & np.uint64(0xFFFF)).astype(np.int64),
            (hv & np.uint64(0xFFFF)).astype(np.int64))


def _vwalk(w: np.ndarray, entry: np.ndarray, bound: np.ndarray, nw: int, le: bool):
    """Walk chunk ``k`` from word ``entry[k]`` until a record starts at or after ``bound[k]``, all at once.

    Returns (steps, exit, special): ``steps`` a list of (chunks, word positions) per step,
    ``exit[k]`` the first word at or after the bound, ``special[k]`` the word of a record the
    word walk cannot follow (-1 if none).
    """
    K = len(entry)
    cur = entry.copy()
    act = np.flatnonzero(entry < bound)
    steps: list[tuple[np.ndarray, np.ndarray]] = []
    special = np.full(K, -1, np.int64)
    while act.size:
        pw = cur[act]
        tp, _misc, sz = _hdr_fields(w[pw], le)
        nx = pw + (sz >> 3)
        odd = (sz < 8) | ((sz & 7) != 0) | (tp == R_AUXTRACE) | (tp == R_HEADER_TRACING_DATA) | (nx > nw)
        if odd.any():
            special[act[odd]] = pw[odd]
            keep = ~odd
            act, pw, nx = act[keep], pw[keep], nx[keep]
        steps.append((act, pw))
        cur[act] = nx
        act = act[nx < bound[act]]
    return steps, cur, special


MAX_ROUNDS = 6


def _walk_vector(buf, mv, p0: int, end: int, le: bool, name: str, base: int) -> tuple[np.ndarray, int | None]:
    """Walk from ``p0`` while records are whole 8-byte words; returns (offsets, where it stopped or None)."""
    n = end - p0
    if n < CHUNK_MIN * 4:
        lst: list[int] = []
        return _seq_until_special(mv, p0, end, le, name, base, lst)
    nw = n // 8
    w = np.frombuffer(mv, dtype="<u8" if le else ">u8", count=nw, offset=p0)
    chunk = max(CHUNK_MIN // 8, nw // CHUNKS)
    K = (nw + chunk - 1) // chunk
    cstart = np.arange(K, dtype=np.int64) * chunk
    # each chunk (but the first) starts at its first plausible header: a known record type, no
    # unknown misc bits, a size that is whole words within the data, and the next records it
    # leads to (while inside the window) plausible too
    j = np.minimum(cstart[1:, None] + np.arange(WINDOW, dtype=np.int64)[None, :], nw - 1)
    typ, misc, size = _hdr_fields(w[j], le)
    plaus = (size >= 8) & ((size & 7) == 0) & (((typ >= 1) & (typ <= 31)) | ((typ >= 64) & (typ <= 90)))
    plaus &= ((misc & 0x0FF8) == 0) & (j + (size >> 3) <= nw)
    good = plaus.copy()
    rowi = np.arange(K - 1)[:, None]
    nxt = np.arange(WINDOW, dtype=np.int64)[None, :] + (size >> 3)
    for _ in range(3):
        inside = nxt < WINDOW
        nxt_c = np.minimum(nxt, WINDOW - 1)
        good &= ~inside | plaus[rowi, nxt_c]
        nxt = np.where(inside, nxt_c + (size[rowi, nxt_c] >> 3), nxt)
    has = good.any(axis=1)
    first = np.argmax(good, axis=1)
    spec = np.concatenate(([0], (cstart[1:] + first)[has]))
    K = len(spec)
    bound = np.concatenate((spec[1:], [nw]))
    entry = spec.copy()
    # round 0 walks every chunk from its guess; later rounds walk again the chunks whose guess
    # did not match where the previous chunk's walk ended.  Chunk k is verified when chunk k-1 is
    # and ended exactly at entry[k]; each round verifies at least one more chunk.
    owner = np.zeros(K, np.int64)  # which round's steps hold chunk k's final walk
    rounds: list[list[tuple[np.ndarray, np.ndarray]]] = []
    exit_ = np.zeros(K, np.int64)
    special = np.full(K, -1, np.int64)
    todo = np.arange(K)
    nvalid = 0
    while True:
        steps, ex, sp = _vwalk(w, entry[todo], bound[todo], nw, le)
        rid = len(rounds)
        rounds.append([(todo[a], pw) for a, pw in steps])
        owner[todo] = rid
        exit_[todo] = ex
        special[todo] = sp
        # extend the verified prefix
        ok_link = exit_[:-1] == entry[1:]
        bad_link = np.flatnonzero(~ok_link[nvalid:] | (special[nvalid:-1] >= 0)) + nvalid
        nvalid = int(bad_link[0]) + 1 if bad_link.size else K  # chunks [0, nvalid) are verified
        stop_chunk = next((k for k in range(nvalid) if special[k] >= 0), None)
        if stop_chunk is not None or nvalid >= K:
            last = stop_chunk if stop_chunk is not None else K - 1
            break
        if len(rounds) > MAX_ROUNDS:
            # guesses keep failing: finish sequentially from the verified prefix
            return _finish_seq(w, rounds, owner, entry, exit_, nvalid, nw, p0, mv, end, le, name, base)
        # walk again, from where their predecessors ended, the chunks after the verified prefix
        # whose guess did not match
        todo = np.flatnonzero(np.concatenate(([False], exit_[:-1] != entry[1:])))
        todo = todo[todo >= nvalid]
        entry[todo] = exit_[todo - 1]
    offs = p0 + 8 * _assemble(rounds, owner, last + 1)
    if special[last] >= 0:
        return offs, p0 + int(special[last]) * 8
    tail = p0 + int(exit_[last]) * 8
    if tail < end:
        lst2: list[int] = []
        o2, st2 = _seq_until_special(mv, tail, end, le, name, base, lst2)
        return np.concatenate((offs, o2)), st2
    return offs, None


def _assemble(rounds, owner: np.ndarray, nchunks: int) -> np.ndarray:
    """Word positions of chunks [0, nchunks) in order, each from the round that walked it last."""
    K = len(owner)
    parts_c, parts_p = [], []
    for rid, steps in enumerate(rounds):
        if not steps:
            continue
        mine = (owner == rid) & (np.arange(K) < nchunks)
        if not mine.any():
            continue
        allmine = bool(mine.all())
        cnt = np.zeros(K, np.int64)
        sel = []
        for a, pw in steps:
            if not allmine:
                m = mine[a]
                a, pw = a[m], pw[m]
            cnt[a] += 1
            sel.append((a, pw))
        start = np.cumsum(cnt) - cnt
        flat = np.empty(int(cnt.sum()), np.int64)
        for sidx, (a, pw) in enumerate(sel):
            flat[start[a] + sidx] = pw
        parts_c.append(np.repeat(np.arange(K), cnt))
        parts_p.append(flat)
    if not parts_p:
        return np.zeros(0, np.int64)
    if len(parts_p) == 1:
        return parts_p[0]
    chunk_of = np.concatenate(parts_c)
    flat = np.concatenate(parts_p)
    return flat[np.argsort(chunk_of, kind="stable")]


def _finish_seq(w, rounds, owner, entry, exit_, nvalid, nw, p0, mv, end, le, name, base):
    """The verified prefix from the vector walk, the rest walked sequentially."""
    words = _assemble(rounds, owner, nvalid)
    start = int(exit_[nvalid - 1]) if nvalid else 0
    lst: list[int] = []
    i, sp = _walk_words(w, start, nw, nw, le, lst)
    offs = p0 + 8 * np.concatenate((words, np.asarray(lst, np.int64)))
    if sp is not None:
        return offs, p0 + sp * 8
    tail = p0 + i * 8
    if tail < end:
        lst2: list[int] = []
        o2, st2 = _seq_until_special(mv, tail, end, le, name, base, lst2)
        return np.concatenate((offs, o2)), st2
    return offs, None


def _walk_words(w: np.ndarray, i: int, bound: int, nw: int, le: bool, out: list[int]):
    """Sequential walk in words from the true boundary ``i`` to ``bound``: (exit word, special or None)."""
    while i < bound:
        hv = int(w[i])
        if le:
            sz, tp = hv >> 48, hv & 0xFFFFFFFF
        else:
            sz, tp = hv & 0xFFFF, hv >> 32
        if sz < 8 or sz & 7 or tp in (R_AUXTRACE, R_HEADER_TRACING_DATA) or i + (sz >> 3) > nw:
            return i, i
        out.append(i)
        i += sz >> 3
    return i, None


def _seq_until_special(mv, p: int, end: int, le: bool, name: str, base: int, out: list[int]) -> tuple[np.ndarray, int | None]:
    hdr = struct.Struct("<IHH" if le else ">IHH")
    while p < end:
        if p + 8 > end:
            fail(name, base + p if base >= 0 else None, f"record header cut short at the end of the data ({end - p} bytes left; truncated?)")
        typ, _m, size = hdr.unpack_from(mv, p)
        if size < 8:
            fail(name, base + p if base >= 0 else None, f"corrupt record (type {typ}, size {size})")
        if typ in (R_AUXTRACE, R_HEADER_TRACING_DATA):
            return np.asarray(out, np.int64), p
        if p + size > end:
            fail(name, base + p if base >= 0 else None, f"record (type {typ}, {size} bytes) runs past the end of the data (truncated?)")
        out.append(p)
        p += size
    return np.asarray(out, np.int64), None


def _walk_all(pd: PerfData, compiled: bool = True) -> None:
    buf = pd.buf
    offs = walk_records(buf, pd.le, pd.name, pd.stream_base, compiled)
    _set_records(pd, offs, compiled)
    if np.any((pd.rec_type == R_COMPRESSED) | (pd.rec_type == R_COMPRESSED2)):
        _decompress_stream(pd, compiled)
    pd.walked = True


def _walk_fail(pd: PerfData, status: int, p: int, end: int) -> None:
    at = pd.stream_base + int(p) if pd.stream_base >= 0 else None
    if status == WALK_CUT_HEADER:
        fail(pd.name, at, f"record header cut short at the end of the data ({end - int(p)} bytes left; truncated?)")
    typ = int(_u(pd.buf, np.array([p]), 4, pd.le, False)[0])
    if status == WALK_BAD_SIZE:
        fail(pd.name, at, f"corrupt record (type {typ}, size {int(_u(pd.buf, np.array([p + 6]), 2, pd.le, False)[0])})")
    fail(pd.name, at, f"record (type {typ}) runs past the end of the data (truncated?)")


SCAN_CAP = 1 << 21  # records per call of the compiled walk (bounds its output arrays)


def _layout_args(pd: PerfData):
    attrs = pd.attrs
    ipos = _id_pos(attrs[0].sample_type) if attrs else None
    if len(attrs) <= 1 or ipos is None:
        if len(attrs) > 1 and len({a.sample_type for a in attrs if a.sample_type & S_RAW}) > 1:
            fail(pd.name, None, "several events with different sample layouts and no sample id: cannot tell samples apart")
        idpos = -1
    else:
        idpos = ipos
    pairs = sorted((i, k) for k, a in enumerate(attrs) for i in a.ids)
    if pairs and pairs[-1][0] < (1 << 16):  # perf's ids are small: a lookup table (kernels._attr_of)
        id_sorted = np.array([-1], np.int64)
        id_attr = np.full(pairs[-1][0] + 1, -1, np.int64)
        for i, k in pairs:
            id_attr[i] = k
    else:
        id_sorted = np.array([i for i, _ in pairs], np.uint64).view(np.int64) if pairs else np.zeros(1, np.int64)
        id_attr = np.array([k for _, k in pairs], np.int64) if pairs else np.zeros(1, np.int64)
    attr_st = np.array([a.sample_type for a in attrs] or [0], np.uint64).view(np.int64)
    attr_rf = np.array([a.read_format for a in attrs] or [0], np.uint64).view(np.int64)
    attr_fix = np.array([_fixed_layout(a) for a in attrs] or [[-1, -1, -1, -1, 0]], np.int64)
    return idpos, aot.ro(id_sorted), aot.ro(id_attr), aot.ro(attr_st), aot.ro(attr_rf), aot.ro(attr_fix)


def _fixed_layout(a: Attr) -> list[int]:
    """[offset of {pid, tid}, time, cpu, raw size, smallest record] of a sample layout without
    variable parts (see ``kernels.perf_scan``); the last is 0 for the others."""
    st = a.sample_type
    if st & S_CALLCHAIN or (st & S_READ and a.read_format & F_GROUP):
        return [-1, -1, -1, -1, 0]
    off = 8
    out = [-1, -1, -1, -1]
    for bit, slot in ((S_IDENTIFIER, None), (S_IP, None), (S_TID, 0), (S_TIME, 1), (S_ADDR, None), (S_ID, None),
                      (S_STREAM_ID, None), (S_CPU, 2), (S_PERIOD, None)):
        if st & bit:
            if slot is not None:
                out[slot] = off
            off += 8
    if st & S_READ:
        rf = a.read_format
        off += 8 * (1 + bool(rf & F_ENABLED) + bool(rf & F_RUNNING) + bool(rf & F_ID) + bool(rf & F_LOST))
    if st & S_RAW:
        out[3] = off
        off += 4
    return [*out, off]


def _check_attrs(pd: PerfData) -> None:
    if not pd.attrs:
        fail(pd.name, None, "no attrs: the samples cannot be decoded")
    for a in pd.attrs:
        if a.sample_type & S_RAW and not a.sample_type & S_TIME:
            fail(pd.name, None, f"event {a.name or a.config} samples carry no time (PERF_SAMPLE_TIME)")
        if a.sample_type & S_RAW and not a.sample_type & S_CPU:
            pd.warnings.append(f"{pd.name}: samples of {a.name or a.config} carry no cpu (PERF_SAMPLE_CPU); cpu 0 assumed")


def scan(pd: PerfData, plan, compiled: bool = True) -> Samples:
    """Walk the records and decode the samples (and their raw tracepoint payloads, along ``plan``)."""
    _check_attrs(pd)
    k = aot.get() if compiled else None
    if k is None:
        if not pd.walked:
            _walk_all(pd, False)
        s = samples(pd, compiled=False)
        from .table import decode_numpy

        s.decoded = decode_numpy(pd.buf, s.pos, s.length, pd.le, plan)
        return s
    if not pd.walked:
        s = _scan_compiled(k, pd, plan)
        if not np.any((pd.rec_type == R_COMPRESSED) | (pd.rec_type == R_COMPRESSED2)):
            pd.walked = True
            return s
        _decompress_stream(pd, True)
        pd.walked = True
    return _scan_compiled(k, pd, plan)


def _scan_compiled(k, pd: PerfData, plan) -> Samples:
    buf = aot.ro(pd.buf)
    end = len(buf)
    lay = _layout_args(pd)
    pargs = plan.args()
    p = 0
    recs: list[tuple[np.ndarray, ...]] = []
    smp: list[tuple[np.ndarray, ...]] = []
    nrec = 0
    while True:
        cap = max(1024, min(SCAN_CAP, (end - p) // 8 + 1))
        r = k.perf_scan(buf, p, end, pd.le, cap, True, *lay, *pargs)
        (status, stop, n, ns, rec_off, rec_type, rec_size, s_rec, s_time, s_cpu, s_pid, s_tid, s_pos, s_len,
         s_attr, evid, cpid, st, vals) = r
        recs.append((rec_off[:n], rec_type[:n], rec_size[:n]))
        smp.append((s_rec[:ns] + nrec, s_time[:ns], s_cpu[:ns], s_pid[:ns], s_tid[:ns], s_pos[:ns], s_len[:ns],
                    s_attr[:ns], evid[:ns], cpid[:ns], st[:ns], vals[:, :ns]))
        nrec += n
        if status == WALK_FULL:
            p = int(stop)
            continue
        if status != WALK_OK:
            _walk_fail(pd, int(status), int(stop), end)
        break

    def cat(parts, i):
        return parts[0][i] if len(parts) == 1 else np.concatenate([x[i] for x in parts])

    pd.rec_off, pd.rec_type, pd.rec_size = cat(recs, 0), cat(recs, 1), cat(recs, 2)
    tcount = np.bincount(pd.rec_type[(pd.rec_type >= 0) & (pd.rec_type < 256)], minlength=1) if nrec else np.zeros(1, np.int64)
    pd.record_counts = {RECORD_NAMES.get(t, f"type {t}"): int(c) for t, c in enumerate(tcount) if c}
    s_rec, s_time, s_cpu, s_pid, s_tid, s_pos, s_len, s_attr, evid, cpid, st = (cat(smp, i) for i in range(11))
    vals = smp[0][11] if len(smp) == 1 else np.concatenate([x[11] for x in smp], axis=1)
    ns = len(s_rec)
    bad: list[tuple[int, str]] = []
    nb = np.flatnonzero(st == 2)
    if nb.size:
        unknown = nb[s_attr.take(nb) < 0]
        if unknown.size:
            bad.append((int(unknown[0]), f"{unknown.size} sample(s) with an id no attr declares"))
        cut = nb[s_attr.take(nb) >= 0]
        if cut.size:
            a = pd.attrs[int(s_attr[cut[0]])]
            bad.append((int(cut[0]), f"{cut.size} sample(s) of {a.name or a.config} whose raw data runs past the record"))
    no_raw_names: dict[str, int] = {}
    nr = np.flatnonzero(st == 3)
    if nr.size:
        for ai, c in zip(*np.unique(s_attr.take(nr), return_counts=True)):
            a = pd.attrs[int(ai)]
            nm = a.name or f"type {a.type} config {a.config}"
            no_raw_names[nm] = no_raw_names.get(nm, 0) + int(c)
    return Samples(np.arange(1, ns + 1, dtype=np.int64), s_rec, s_pos, s_len, s_time, s_cpu.astype(np.int32),
                   s_pid.astype(np.int32), s_tid.astype(np.int32), ns, int(nr.size), bad, no_raw_names,
                   (evid, cpid, st, vals))


def _set_records(pd: PerfData, offs: np.ndarray, compiled: bool = True) -> None:
    buf = pd.buf
    pd.rec_off = offs
    if len(offs):
        hv = _u(buf, offs, 8, pd.le, compiled).view(np.uint64)
        tp, _misc, sz = _hdr_fields(hv, pd.le)
        pd.rec_type, pd.rec_size = tp, sz
    else:
        pd.rec_type = pd.rec_size = np.zeros(0, np.int64)
    tcount = np.bincount(pd.rec_type[pd.rec_type < 256], minlength=1) if len(offs) else np.zeros(1, np.int64)
    pd.record_counts = {RECORD_NAMES.get(t, f"type {t}"): int(c) for t, c in enumerate(tcount) if c}


def _decompress_stream(pd: PerfData, compiled: bool = True) -> None:
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
    _set_records(pd, offs, compiled)
    if np.any((pd.rec_type == R_COMPRESSED) | (pd.rec_type == R_COMPRESSED2)):
        fail(pd.name, None, "compressed records inside compressed records")


# ------------------------------------------------------------------------------------ samples
@dataclass
class Samples:
    """Tracepoint samples in file order."""

    ordinal: np.ndarray  # 1-based ordinal among the SAMPLE records
    rec: np.ndarray  # index into the record list
    pos: np.ndarray  # payload (raw tracepoint record) offset in ``buf``
    length: np.ndarray  # raw size
    ts: np.ndarray
    cpu: np.ndarray
    pid: np.ndarray  # sample pid (the process: tgid)
    tid: np.ndarray
    n_samples: int = 0
    no_raw: int = 0  # samples of attrs without PERF_SAMPLE_RAW (other events; pos -2)
    bad: list[tuple[int, str]] = field(default_factory=list)
    no_raw_names: dict[str, int] = field(default_factory=dict)
    decoded: tuple | None = None  # (evid, cpid, st, vals) of the raw payloads, when the compiled scan read them


def _u(buf: np.ndarray, pos: np.ndarray, size: int, le: bool, compiled: bool = True) -> np.ndarray:
    """Unsigned ``size``-byte integers at byte offsets ``pos`` of ``buf``, as int64 (the compiled
    gather; else a typed view when every offset is aligned, byte by byte otherwise)."""
    k = aot.get() if compiled and len(pos) > 64 else None
    if k is not None:
        if int(pos.min()) < 0 or int(pos.max()) + size > len(buf):
            raise IndexError("field outside the buffer")
        return k.gather(aot.ro(buf), aot.ro(pos, np.int64), size, False, le)
    if size in (4, 8) and len(pos) and not np.any(pos & (size - 1)):
        n = len(buf) // size
        v = np.frombuffer(buf.data if buf.flags.c_contiguous else np.ascontiguousarray(buf).data,
                          dtype=("<u" if le else ">u") + str(size), count=n)
        return v[pos // size].astype(np.int64) if size == 4 else v[pos // size].astype(np.uint64).view(np.int64)
    out = np.zeros(pos.shape, np.uint64)
    for i in range(size):
        out |= buf[pos + i].astype(np.uint64) << np.uint64(8 * i if le else 8 * (size - 1 - i))
    return out.view(np.int64)


def _id_pos(st: int) -> int | None:
    """Byte offset (after the header) of the sample id, as perf computes it."""
    if st & S_IDENTIFIER:
        return 0
    if not st & S_ID:
        return None
    pos = 0
    for bit in (S_IP, S_TID, S_TIME, S_ADDR):
        if st & bit:
            pos += 8
    return pos


def samples(pd: PerfData, compiled: bool = True) -> Samples:
    """The sample fields with numpy (``scan`` uses the compiled kernel when it can)."""
    buf, le = pd.buf, pd.le
    sel = np.flatnonzero(pd.rec_type == R_SAMPLE)
    ns = len(sel)
    off = pd.rec_off[sel]
    size = pd.rec_size[sel]
    end = off + size
    ordinal = np.arange(1, ns + 1, dtype=np.int64)
    attrs = pd.attrs
    if not attrs:
        fail(pd.name, None, "no attrs: the samples cannot be decoded")
    # which attr each sample belongs to
    ipos = _id_pos(attrs[0].sample_type)
    if len(attrs) == 1 or ipos is None:
        aidx = np.zeros(ns, np.int64)
        if len(attrs) > 1 and len({a.sample_type for a in attrs}) > 1:
            fail(pd.name, None, "several events with different sample layouts and no sample id: cannot tell samples apart")
    else:
        sid = _u(buf, np.minimum(off + 8 + ipos, len(buf) - 8), 8, le, compiled)
        id_list = np.array([i for a in attrs for i in a.ids], np.int64)
        id_attr = np.array([k for k, a in enumerate(attrs) for _ in a.ids], np.int64)
        o = np.argsort(id_list)
        id_sorted, attr_sorted = id_list[o], id_attr[o]
        j = np.searchsorted(id_sorted, sid)
        jc = np.minimum(j, max(len(id_sorted) - 1, 0))
        known = (len(id_sorted) > 0) & (id_sorted[jc] == sid) if len(id_sorted) else np.zeros(ns, bool)
        aidx = np.where(known, attr_sorted[jc] if len(id_sorted) else 0, -1)
    pos = np.full(ns, -1, np.int64)
    length = np.zeros(ns, np.int64)
    ts = np.zeros(ns, np.int64)
    cpu = np.zeros(ns, np.int32)
    pid = np.full(ns, -1, np.int32)
    tid = np.full(ns, -1, np.int32)
    bad: list[tuple[int, str]] = []
    unknown = np.flatnonzero(aidx < 0)
    if unknown.size:
        bad.append((int(unknown[0]), f"{unknown.size} sample(s) with an id no attr declares"))
    no_raw = 0
    no_raw_names: dict[str, int] = {}
    for k, a in enumerate(attrs):
        rows = np.flatnonzero(aidx == k)
        if rows.size == 0:
            continue
        st = a.sample_type
        p = off[rows] + 8
        e = end[rows]
        if st & S_IDENTIFIER:
            p = p + 8
        if st & S_IP:
            p = p + 8
        fixed = 8 * sum(bool(st & b) for b in (S_TID, S_TIME, S_ADDR, S_ID, S_STREAM_ID, S_CPU))
        short = p + fixed > e
        if short.any():  # records too short for their fixed fields: malformed (pos -1)
            keep = ~short
            rows, p, e = rows[keep], p[keep], e[keep]
        if st & S_TID:
            pid[rows] = _u(buf, p, 4, le, compiled).astype(np.int32)
            tid[rows] = _u(buf, p + 4, 4, le, compiled).astype(np.int32)
            p = p + 8
        if st & S_TIME:
            ts[rows] = _u(buf, p, 8, le, compiled)
            p = p + 8
        if st & S_ADDR:
            p = p + 8
        if st & S_ID:
            p = p + 8
        if st & S_STREAM_ID:
            p = p + 8
        if st & S_CPU:
            cpu[rows] = _u(buf, p, 4, le, compiled).astype(np.int32)
            p = p + 8
        if not st & S_RAW:
            no_raw += rows.size
            pos[rows] = -2
            nm = a.name or f"type {a.type} config {a.config}"
            no_raw_names[nm] = no_raw_names.get(nm, 0) + int(rows.size)
            continue
        if st & S_PERIOD:
            p = p + 8
        if st & S_READ:
            rf = a.read_format
            if rf & F_GROUP:
                nr = _u(buf, np.minimum(p, len(buf) - 8), 8, le, compiled)
                per = 8 * (1 + bool(rf & F_ID) + bool(rf & F_LOST))
                nr = np.where((nr < 0) | (nr > 1 << 16), 1 << 20, nr)  # corrupt: runs past the record below
                p = p + 8 + 8 * (bool(rf & F_ENABLED) + bool(rf & F_RUNNING)) + nr * per
            else:
                p = p + 8 * (1 + bool(rf & F_ENABLED) + bool(rf & F_RUNNING) + bool(rf & F_ID) + bool(rf & F_LOST))
        if st & S_CALLCHAIN:
            nr = _u(buf, np.minimum(p, len(buf) - 8), 8, le, compiled)
            nr = np.where((nr < 0) | (nr > 1 << 16), 1 << 20, nr)
            p = p + 8 + 8 * nr
        ok = p + 4 <= e
        rsz = np.zeros(rows.size, np.int64)
        if ok.any():
            rsz[ok] = _u(buf, p[ok], 4, le, compiled)
        ok &= p + 4 + rsz <= e
        if not ok.all():
            i = int(np.flatnonzero(~ok)[0])
            bad.append((int(rows[i]), f"{int((~ok).sum())} sample(s) of {a.name or a.config} whose raw data runs past the record"))
        pos[rows[ok]] = p[ok] + 4
        length[rows[ok]] = rsz[ok]
    return Samples(ordinal, sel, pos, length, ts, cpu, pid, tid, ns, no_raw, bad, no_raw_names)


# ------------------------------------------------------------------------------------ side band
def _trailer(a: Attr) -> tuple[int, int | None, int | None, int | None]:
    """(trailer size, offset from the end of TID, TIME, CPU) of the sample_id trailer."""
    if not a.sample_id_all:
        return 0, None, None, None
    st = a.sample_type
    fields = [(S_TID, "tid"), (S_TIME, "time"), (S_ID, "id"), (S_STREAM_ID, "sid"), (S_CPU, "cpu"), (S_IDENTIFIER, "ident")]
    present = [nm for bit, nm in fields if st & bit]
    size = 8 * len(present)
    def from_end(nm: str) -> int | None:
        if nm not in present:
            return None
        return size - 8 * present.index(nm)
    return size, from_end("tid"), from_end("time"), from_end("cpu")


@dataclass
class SideBand:
    comm_events: list[tuple[int, int, int, int, str]]  # (time, record index, kind 0 comm / 1 fork, tid, comm or ptid as str)
    lost: list[tuple[int, int, int]]  # (record index, cpu, count)


def side_band(pd: PerfData, sample_ts_by_rec: np.ndarray | None = None) -> SideBand:
    """COMM / FORK / LOST records (few) with their times, decoded one by one."""
    bo = "<" if pd.le else ">"
    mv = memoryview(pd.buf)
    sel = np.flatnonzero(np.isin(pd.rec_type, (R_COMM, R_FORK, R_LOST, R_LOST_SAMPLES)))
    # the attr of a side-band record: by the IDENTIFIER at its end, else the first attr
    by_id = {i: a for a in pd.attrs for i in a.ids}
    a0 = pd.attrs[0] if pd.attrs else None
    comm_events = []
    lost = []
    # time of records without a trailer: that of the sample before them in file order
    samp = np.flatnonzero(pd.rec_type == R_SAMPLE)
    for ri in sel.tolist():
        off = int(pd.rec_off[ri])
        typ = int(pd.rec_type[ri])
        size = int(pd.rec_size[ri])
        a = a0
        if a0 is not None and a0.sample_id_all and a0.sample_type & S_IDENTIFIER and size >= 16:
            ident = struct.unpack_from(bo + "Q", mv, off + size - 8)[0]
            a = by_id.get(ident, a0)
        tsz, _t_tid, t_time, t_cpu = _trailer(a) if a is not None else (0, None, None, None)
        body_end = off + size - tsz
        time = None
        if t_time is not None and size >= tsz + 8:
            time = struct.unpack_from(bo + "Q", mv, off + size - t_time)[0]
        cpu = -1
        if t_cpu is not None and size >= tsz + 8:
            cpu = struct.unpack_from(bo + "I", mv, off + size - t_cpu)[0]
        if time is None:
            k = int(np.searchsorted(samp, ri)) - 1
            time = int(sample_ts_by_rec[k]) if (sample_ts_by_rec is not None and k >= 0) else 0
        if typ == R_COMM and body_end >= off + 16:
            _pid, tid = struct.unpack_from(bo + "II", mv, off + 8)
            comm = bytes(mv[off + 16 : body_end]).split(b"\0", 1)[0].decode("utf-8", "backslashreplace")
            comm_events.append((int(time), ri, 0, int(tid), comm))
        elif typ == R_FORK and body_end >= off + 32:
            _pid, _ppid, tid, ptid = struct.unpack_from(bo + "IIII", mv, off + 8)
            ftime = struct.unpack_from(bo + "Q", mv, off + 24)[0]
            comm_events.append((int(time if t_time is not None else ftime), ri, 1, int(tid), str(int(ptid))))
        elif typ == R_LOST and body_end >= off + 24:
            _id, n = struct.unpack_from(bo + "QQ", mv, off + 8)
            lost.append((ri, cpu, int(n)))
        elif typ == R_LOST_SAMPLES and body_end >= off + 16:
            (n,) = struct.unpack_from(bo + "Q", mv, off + 8)
            lost.append((ri, cpu, int(n)))
    return SideBand(comm_events, lost)


def resolve_comms(sb: SideBand, s_ts: np.ndarray, s_rec: np.ndarray, s_tid: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Each sample's comm as ``perf script`` shows it: the thread's comm when the sample is processed.

    Events are replayed in (time, file position) order: COMM sets ``comm[tid]``; FORK gives the
    child its parent's comm when the parent has one.  A sample takes the last comm set for its
    thread before it in that order; a thread never named shows as ``:<tid>``; pid 0 is
    ``swapper``.
    """
    names: list[str] = []
    ids: dict[str, int] = {}

    def sid(s: str) -> int:
        i = ids.get(s)
        if i is None:
            i = ids[s] = len(names)
            names.append(s)
        return i

    evs = sorted(sb.comm_events, key=lambda e: (e[0], e[1]))
    cur: dict[int, int] = {}
    ev_tid, ev_comm, ev_time, ev_rec = [], [], [], []
    for time, ri, kind, tid, arg in evs:
        if kind == 0:
            c = sid(arg)
        else:
            parent = cur.get(int(arg))
            if parent is None:
                continue
            c = parent
        cur[tid] = c
        ev_tid.append(tid)
        ev_comm.append(c)
        ev_time.append(time)
        ev_rec.append(ri)
    n = len(s_ts)
    out = np.full(n, -1, np.int32)
    if ev_tid:
        E = len(ev_tid)
        et = np.array(ev_tid, np.int64)
        ec = np.array(ev_comm, np.int32)
        # events in replay order: e = 0..E-1; samples see the events before them in that order
        ekey_t = np.array(ev_time, np.int64)
        ekey_r = np.array(ev_rec, np.int64)
        # number of events ordered before each sample: (time, rec) lexicographic
        j = np.searchsorted(ekey_t, s_ts, side="left")  # events strictly earlier in time
        j2 = np.searchsorted(ekey_t, s_ts, side="right")
        tie = j2 > j
        if tie.any():
            # same time: the events whose record comes before the sample's in the file
            for i in np.flatnonzero(tie).tolist():
                lo, hi = int(j[i]), int(j2[i])
                j[i] = lo + int(np.searchsorted(ekey_r[lo:hi], s_rec[i]))
        # last event e < j for the sample's tid: key tid * (E + 1) + e
        ekey = et * (E + 1) + np.arange(E, dtype=np.int64)
        o = np.argsort(ekey, kind="stable")
        ks = ekey[o]
        skey = s_tid.astype(np.int64) * (E + 1) + (j - 1)
        k = np.searchsorted(ks, skey, side="right") - 1
        kc = np.maximum(k, 0)
        hit = (k >= 0) & ((ks[kc] // (E + 1)) == s_tid) & (j > 0)
        # (ks[kc] // (E+1) == tid and e <= j-1 by construction of the search)
        out[hit] = ec[o[kc[hit]]]
    miss = np.flatnonzero(out < 0)
    if miss.size:
        mt = s_tid[miss]
        ut, inv = np.unique(mt, return_inverse=True)
        sids = np.array([sid("swapper" if t == 0 else f":{int(t)}") for t in ut.tolist()], np.int32)
        out[miss] = sids[inv]
    return out, names
