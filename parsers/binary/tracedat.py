"""trace-cmd ``trace.dat`` (file versions 6 and 7) -> ring-buffer records.

Layouts (from trace-cmd's ``trace-cmd.dat.v6/v7`` format descriptions):

* initial header: ``17 08 44 "tracing"``, version cstr, endian u8 (0 LE), user long size u8,
  page size u32; v7 adds the compression name and version cstrs and the u64 offset of the first
  OPTIONS section.
* v7: sections ``{u16 id, u16 flags (bit 0: compressed), u32 string id, u64 size}``; a
  compressed section body is ``{u32 csize, u32 usize, frame}`` (zstd frames carry no content
  size: the size is taken from usize).  OPTIONS sections chain through their DONE option; the
  location options (16-21) give the metadata sections' offsets, and each BUFFER option an
  instance's per-CPU data: ``{u64 section offset, cstr instance, cstr clock, u32 page size,
  u32 ncpus, ncpus x {u32 cpu, u64 offset, u64 size}}``.  Compressed CPU data is
  ``u32 nchunks`` then ``{u32 zsize, u32 usize, frame}`` chunks (usize is whole pages; the
  recorded size is not used: it was seen 4 bytes short).
* v6: the metadata blocks in sequence, ``u32 cpus``, optionally ``"options  \\0"`` and options
  ending in a bare u16 0, then ``"flyrecord\\0"`` and ``cpus x {u64 offset, u64 size}`` (plus the
  trace clock text when a TRACECLOCK option was given), then the page-aligned CPU data.

The records themselves are decoded by ``ringbuf.scan_pages``.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .cursor import Cursor, fail
from .ringbuf import PageScan, scan_pages
from .tpformat import (
    EventFormat,
    Headers,
    TracingMeta,
    parse_cmdlines,
    read_cmdlines,
    read_event_formats,
    read_ftrace_formats,
    read_header_info,
    read_tracing_blocks,
    skip_u32_block,
)

MAGIC = b"\x17\x08Dtracing"

# v7 section / option ids
OPT_DONE, OPT_DATE, OPT_CPUSTAT, OPT_BUFFER, OPT_TRACECLOCK, OPT_UNAME = 0, 1, 2, 3, 4, 5
OPT_OFFSET, OPT_CPUCOUNT, OPT_VERSION, OPT_TRACEID, OPT_TIME_SHIFT, OPT_GUEST, OPT_TSC2NSEC = 7, 8, 9, 11, 12, 13, 14
SEC_STRINGS, SEC_HEADER_INFO, SEC_FTRACE, SEC_EVENTS, SEC_KALLSYMS, SEC_PRINTK, SEC_CMDLINES = 15, 16, 17, 18, 19, 20, 21
SEC_BUFFER_TEXT = 22
_LOCATION_OPTS = {SEC_HEADER_INFO, SEC_FTRACE, SEC_EVENTS, SEC_KALLSYMS, SEC_PRINTK, SEC_CMDLINES, 23, 25}

MAX_CHUNK = 256 << 20  # a compressed chunk or section claiming more is corrupt
MAX_RATIO = 1 << 15  # zstd's own bound on the expansion of a frame is about this

COUNTER_CLOCKS = {"counter", "x86-tsc"}  # raw counts unless TSC2NSEC converts them


@dataclass
class CpuData:
    instance: str
    cpu: int
    offset: int  # file offset of the CPU's data
    size: int
    buf: np.ndarray | None = None  # the pages (decompressed), uint8
    base: int = 0  # offset of this CPU's pages in ``buf``
    npages: int = 0
    chunk_offsets: list[int] = field(default_factory=list)  # file offset of each page (compressed: its chunk)
    # compressed (v7): the chunks (frame, uncompressed size, file offset), decompressed by ``_finish``
    chunks: list[tuple[Any, int, int]] | None = None
    dec: Any = None  # (their ``_Decompressor``)


@dataclass
class TraceDat:
    name: str
    version: int
    le: bool
    page_size: int
    compression: str
    meta: TracingMeta
    options: dict[str, Any]
    cpus: list[CpuData]
    clock: str = ""
    kernel_version: str = ""
    ts_offset: int = 0
    tsc2nsec: tuple[int, int, int] | None = None
    buf: np.ndarray | None = None  # all pages of all CPUs
    page_starts: np.ndarray | None = None
    page_cpu: np.ndarray | None = None
    page_file_offset: np.ndarray | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def headers(self) -> Headers:
        return self.meta.headers

    @property
    def formats(self) -> dict[int, EventFormat]:
        return self.meta.formats

    @property
    def timestamp_unit(self) -> str:
        return "counter" if self.clock in COUNTER_CLOCKS and self.tsc2nsec is None else "ns"


class _Decompressor:
    def __init__(self, kind: str, name: str) -> None:
        self.kind = kind
        self.name = name
        if kind == "zstd":
            import zstandard

            self._z = zstandard.ZstdDecompressor()
            self._err: tuple[type[BaseException], ...] = (zstandard.ZstdError,)
        elif kind == "zlib":
            self._err = (zlib.error,)
        elif kind != "none":
            fail(name, None, f"unknown compression {kind!r} (known: none, zlib, zstd)")

    def check(self, frame, usize: int, offset: int, what: str) -> None:
        """A size no chunk of a trace-cmd file can have is corruption (before allocating it)."""
        if usize > MAX_CHUNK or usize > MAX_RATIO * max(len(frame), 1) + 4096:
            fail(self.name, offset, f"corrupt {what}: uncompressed size {usize} for {len(frame)} compressed bytes")

    def __call__(self, frame, usize: int, offset: int, what: str) -> bytes:
        self.check(frame, usize, offset, what)
        try:
            if self.kind == "zstd":
                out = self._z.decompress(frame, max_output_size=usize) if usize else b""
            else:
                d = zlib.decompressobj()
                out = d.decompress(frame, usize)
        except self._err as e:
            fail(self.name, offset, f"corrupt {what}: {self.kind}: {e}")
        except MemoryError:
            fail(self.name, offset, f"corrupt {what}: uncompressed size {usize}")
        if len(out) != usize:
            fail(self.name, offset, f"corrupt {what}: {len(out)} bytes uncompressed, the header says {usize}")
        return out


def _cstr_opt(data: bytes) -> str:
    return data.split(b"\0", 1)[0].decode("utf-8", "backslashreplace")


def _selected_clock(text: str) -> str:
    """``local [global] counter`` -> ``global`` (a bare name is itself)."""
    text = text.strip()
    if "[" in text and "]" in text:
        return text[text.index("[") + 1 : text.index("]")].strip()
    return text.split()[0] if text.split() else ""


def _cpustat(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for line in text.splitlines():
        k, sep, v = line.partition(":")
        if not sep:
            continue
        k = k.strip().replace(" ", "_")
        v = v.strip()
        try:
            out[k] = int(v)
        except ValueError:
            try:
                out[k] = float(v)
            except ValueError:
                out[k] = v
    return out


# ------------------------------------------------------------------------------------ the reader
def read_tracedat(data, name: str) -> TraceDat:
    """Parse a whole trace.dat held in memory (``bytes``/``mmap``/uint8 array)."""
    c = Cursor(data, name, what="trace.dat header")
    if c.left < 10 or bytes(data[:10]) != MAGIC:
        fail(name, 0, "not a trace.dat file (bad magic)")
    c.pos = 10
    ver_s = c.cstr("file version", 16)
    try:
        version = int(ver_s)
    except ValueError:
        c.fail(f"unknown trace.dat version {ver_s!r}", 10)
    if version not in (6, 7):
        fail(name, 10, f"unsupported trace.dat file version {version} (supported: 6, 7)")
    endian = c.u8("endian byte")
    if endian not in (0, 1):
        c.fail(f"bad endian byte {endian}", c.pos - 1)
    c.le = endian == 0
    c.u8("long size")
    page_size = c.u32("page size")
    if page_size < 64 or page_size > (1 << 24) or page_size & (page_size - 1):
        c.fail(f"implausible page size {page_size}", c.pos - 4)
    if version == 7:
        comp = c.cstr("compression name", 64)
        c.cstr("compression version", 64)
        opt_off = c.u64("options offset")
        td = _read_v7(data, name, c, page_size, comp or "none", opt_off)
    else:
        td = _read_v6(data, name, c, page_size)
    _finish(td, data)
    return td


def _section_header(data, name: str, off: int, le: bool) -> tuple[int, int, int, int]:
    c = Cursor(data, name, pos=off, le=le, what="section header")
    sid = c.u16("section id")
    flags = c.u16("section flags")
    strid = c.u32("section string id")
    size = c.u64("section size")
    if size > c.left:
        fail(name, off, f"section {sid} claims {size} bytes, the file has {c.left} left (truncated?)")
    return sid, flags, strid, size


def _section_body(data, name: str, off: int, le: bool, dec: _Decompressor, want: int | None, what: str) -> Cursor:
    """A cursor over a v7 section's (decompressed) body."""
    sid, flags, _strid, size = _section_header(data, name, off, le)
    if want is not None and sid != want:
        fail(name, off, f"expected {what} section (id {want}), found section id {sid}")
    body = off + 16
    if flags & 1:
        c = Cursor(data, name, pos=body, end=body + size, le=le, what=what)
        csize = c.u32(f"{what} compressed size")
        usize = c.u32(f"{what} uncompressed size")
        frame = c.view(csize, f"{what} compressed data")
        raw = dec(frame, usize, body, f"{what} section")
        return Cursor(raw, name, le=le, base=off, what=what)
    return Cursor(data, name, pos=body, end=body + size, le=le, what=what)


def _check_tail(data, name: str, first_section: int, le: bool) -> None:
    """Walk the v7 sections, which trace-cmd writes back to back to the end of the file: a file cut
    inside the last ones (the section-name strings come last, and no option points at them) fails
    here, naming the section's offset.  A section id outside trace-cmd's (0-25) ends the walk
    without a verdict (another writer's layout)."""
    p = first_section
    while p + 16 <= len(data):
        sid = int.from_bytes(bytes(data[p : p + 2]), "little" if le else "big")
        if sid > 25:
            return
        p += 16 + _section_header(data, name, p, le)[3]
    if p != len(data):
        fail(name, p, f"section header cut short: {len(data) - p} of 16 bytes (truncated?)")


def _read_v7(data, name: str, c: Cursor, page_size: int, comp: str, opt_off: int) -> TraceDat:
    le = c.le
    dec = _Decompressor(comp, name)
    first_section = c.pos
    locations: dict[int, int] = {}
    options: dict[str, Any] = {"cpustat": {}}
    buffers: list[tuple[int, bytes]] = []
    seen: set[int] = set()
    off = opt_off
    nsections = 0
    while off:
        if off in seen or nsections > 4096:
            fail(name, off, "options sections form a loop")
        seen.add(off)
        nsections += 1
        if off < first_section or off + 16 > len(data):
            fail(name, off, "options section offset outside the file (truncated?)")
        oc = _section_body(data, name, off, le, dec, 0, "options")
        nxt = 0
        while True:
            at = oc.pos
            if oc.left == 0:
                break  # no DONE: the section simply ends
            oid = oc.u16("option id")
            osz = oc.u32("option size")
            od = oc.bytes(osz, f"option {oid} data")
            if oid == OPT_DONE:
                nxt = int.from_bytes(od[:8], "little" if le else "big") if len(od) >= 8 else 0
                break
            if oid in _LOCATION_OPTS and len(od) >= 8:
                locations[oid] = int.from_bytes(od[:8], "little" if le else "big")
            elif oid == OPT_BUFFER:
                buffers.append((oc.file_offset(at), od))
            elif oid == SEC_BUFFER_TEXT:
                fail(name, oc.file_offset(at), "latency-format trace.dat (the data is text): run `trace-cmd report` and parse its text")
            else:
                _option(options, oid, od, le)
        off = nxt
    # metadata sections: by the location options, else by walking the sections in order
    if SEC_HEADER_INFO not in locations or SEC_EVENTS not in locations:
        p = first_section
        while p + 16 <= len(data):
            sid, _fl, _sd, size = _section_header(data, name, p, le)
            if sid in (SEC_HEADER_INFO, SEC_FTRACE, SEC_EVENTS, SEC_CMDLINES):
                locations.setdefault(sid, p)
            p += 16 + size
    if SEC_HEADER_INFO not in locations:
        fail(name, first_section, "no header info section (header_page/header_event)")
    if SEC_EVENTS not in locations:
        fail(name, first_section, "no event formats section: no events to decode")
    hdr = read_header_info(_section_body(data, name, locations[SEC_HEADER_INFO], le, dec, SEC_HEADER_INFO, "header info"))
    formats: dict[int, EventFormat] = {}
    if SEC_FTRACE in locations:
        read_ftrace_formats(_section_body(data, name, locations[SEC_FTRACE], le, dec, SEC_FTRACE, "ftrace formats"), formats)
    read_event_formats(_section_body(data, name, locations[SEC_EVENTS], le, dec, SEC_EVENTS, "event formats"), formats)
    cmdlines: dict[int, str] = {}
    if SEC_CMDLINES in locations:
        cmdlines = read_cmdlines(_section_body(data, name, locations[SEC_CMDLINES], le, dec, SEC_CMDLINES, "saved cmdlines"))
    _check_tail(data, name, first_section, le)
    meta = TracingMeta(hdr, formats, cmdlines, locations[SEC_EVENTS])
    td = TraceDat(name, 7, le, page_size, comp, meta, options, [])
    if not buffers:
        fail(name, opt_off, "no BUFFER option: the file holds no trace data")
    for at, od in buffers:
        _buffer_v7(td, data, at, od, dec)
    return td


def _option(options: dict[str, Any], oid: int, od: bytes, le: bool) -> None:
    order = "little" if le else "big"
    if oid == OPT_DATE:
        options["date"] = _cstr_opt(od)
    elif oid == OPT_CPUSTAT:
        st = _cpustat(_cstr_opt(od))
        cpu = st.get("CPU")
        if isinstance(cpu, int):
            options["cpustat"][cpu] = st
    elif oid == OPT_TRACECLOCK:
        if od:
            options["trace_clock"] = _cstr_opt(od)
    elif oid == OPT_UNAME:
        options["uname"] = _cstr_opt(od)
    elif oid == OPT_OFFSET:
        options["offset"] = _cstr_opt(od)
    elif oid == OPT_CPUCOUNT and len(od) >= 4:
        options["cpucount"] = int.from_bytes(od[:4], order)
    elif oid == OPT_VERSION:
        options["tracecmd_version"] = _cstr_opt(od)
    elif oid == OPT_TRACEID and len(od) >= 8:
        options["trace_id"] = int.from_bytes(od[:8], order)
    elif oid == OPT_TSC2NSEC and len(od) >= 16:
        options["tsc2nsec"] = (int.from_bytes(od[:4], order), int.from_bytes(od[4:8], order), int.from_bytes(od[8:16], order))
    elif oid in (OPT_TIME_SHIFT, OPT_GUEST):
        options.setdefault("ignored", []).append("TIME_SHIFT" if oid == OPT_TIME_SHIFT else "GUEST")


def _buffer_v7(td: TraceDat, data, at: int, od: bytes, dec: _Decompressor) -> None:
    name, le = td.name, td.le
    bc = Cursor(od, name, le=le, base=at, what="BUFFER option")
    sec_off = bc.u64("buffer section offset")
    instance = bc.cstr("instance name")
    clock = bc.cstr("trace clock")
    page_size = bc.u32("sub-buffer size")
    ncpu = bc.u32("cpu count")
    if ncpu > bc.left // 20:
        bc.fail(f"corrupt cpu count {ncpu}")
    if page_size < 64 or page_size > (1 << 24):
        bc.fail(f"implausible sub-buffer size {page_size}")
    if td.page_size != page_size and td.cpus:
        bc.fail(f"instances with different sub-buffer sizes ({td.page_size}, {page_size}) are not supported")
    td.page_size = page_size
    if not td.clock or instance == "":
        td.clock = clock
    sid, flags, _s, _size = _section_header(data, name, sec_off, le)
    if sid != OPT_BUFFER:
        fail(name, sec_off, f"BUFFER option points at section id {sid}, not a flyrecord buffer")
    for _ in range(ncpu):
        cpu = bc.u32("cpu id")
        off = bc.u64("cpu data offset")
        size = bc.u64("cpu data size")
        cd = CpuData(instance, cpu, off, size)
        if flags & 1:
            _load_chunks(td, data, cd, dec)
        else:
            _load_plain(td, data, cd)
        td.cpus.append(cd)


def _load_plain(td: TraceDat, data, cd: CpuData) -> None:
    if cd.offset + cd.size > len(data):
        fail(td.name, cd.offset, f"cpu {cd.cpu} data ({cd.size} bytes) runs past the end of the file (truncated?)")
    npages = cd.size // td.page_size
    if cd.size % td.page_size:
        td.warnings.append(f"{td.name}: cpu {cd.cpu} data size {cd.size} is not whole pages; the partial page is ignored")
    cd.buf = None  # pages are read in place
    cd.base = cd.offset
    cd.npages = npages


def _load_chunks(td: TraceDat, data, cd: CpuData, dec: _Decompressor) -> None:
    name = td.name
    c = Cursor(data, name, pos=cd.offset, le=td.le, what=f"cpu {cd.cpu} data")
    if cd.offset >= len(data):
        fail(name, cd.offset, f"cpu {cd.cpu} data offset is past the end of the file (truncated?)")
    nchunks = c.u32("chunk count")
    if nchunks > c.left // 8:
        c.fail(f"corrupt chunk count {nchunks}", cd.offset)
    chunks: list[tuple[Any, int, int]] = []
    offs: list[int] = []
    for _ in range(nchunks):
        at = c.pos
        zsize = c.u32("chunk compressed size")
        usize = c.u32("chunk uncompressed size")
        frame = c.view(zsize, "compressed chunk")
        dec.check(frame, usize, at, f"cpu {cd.cpu} chunk")
        if usize % td.page_size:
            fail(name, at, f"corrupt cpu {cd.cpu} chunk: {usize} bytes is not whole pages of {td.page_size}")
        chunks.append((frame, usize, at))
        offs.extend([at] * (usize // td.page_size))
    # (decompressed by ``_finish``, each chunk straight into its place in the one page buffer: joining
    # the chunks per CPU, then the CPUs, wrote and faulted in the 13 MB of pages three times)
    cd.chunks = chunks
    cd.dec = dec
    cd.npages = len(offs)
    cd.chunk_offsets = offs


def _read_v6(data, name: str, c: Cursor, page_size: int) -> TraceDat:
    le = c.le
    c.what = "metadata"
    meta = read_tracing_blocks(c, cmdlines=True)
    c.what = "trace.dat header"
    ncpu = c.u32("cpu count")
    if ncpu > 1 << 16:
        c.fail(f"corrupt cpu count {ncpu}", c.pos - 4)
    options: dict[str, Any] = {"cpustat": {}}
    buffers: list[tuple[int, str]] = []
    tag = c.bytes(10, "options/flyrecord tag")
    had_clock = False
    if tag == b"options  \0":
        while True:
            at = c.pos
            oid = c.u16("option id")
            if oid == 0:
                break
            osz = c.u32("option size")
            od = c.bytes(osz, f"option {oid} data")
            if oid == OPT_BUFFER:
                oc = Cursor(od, name, le=le, base=at, what="BUFFER option")
                boff = oc.u64("buffer offset")
                buffers.append((boff, oc.cstr("instance name")))
            elif oid == OPT_TRACECLOCK:
                had_clock = True
            elif oid == SEC_BUFFER_TEXT:
                fail(name, at, "latency-format trace.dat: run `trace-cmd report` and parse its text")
            else:
                _option(options, oid, od, le)
        tag = c.bytes(10, "flyrecord tag")
    if tag == b"latency  \0":
        fail(name, c.pos - 10, "latency-format trace.dat (the data is text): run `trace-cmd report` and parse its text")
    if tag != b"flyrecord\0":
        c.fail(f"expected 'flyrecord', found {tag!r}", c.pos - 10)
    td = TraceDat(name, 6, le, page_size, "none", meta, options, [])
    td.cpus.extend(_cpu_table(c, "", ncpu))
    if had_clock:
        n = c.u64("trace clock size")
        text = c.bytes(n, "trace clock text").decode("utf-8", "replace")
        options["trace_clock"] = text
    for boff, inst in buffers:
        bc = Cursor(data, name, pos=boff, le=le, what=f"instance {inst!r}")
        if bc.left >= 10 and bytes(data[boff : boff + 10]) == b"flyrecord\0":
            bc.pos += 10
        td.cpus.extend(_cpu_table(bc, inst, ncpu))
    for cd in td.cpus:
        _load_plain(td, data, cd)
    td.clock = _selected_clock(options.get("trace_clock", "")) or "local"
    return td


def _cpu_table(c: Cursor, instance: str, ncpu: int) -> list[CpuData]:
    out = []
    for cpu in range(ncpu):
        off = c.u64("cpu data offset")
        size = c.u64("cpu data size")
        if size:
            out.append(CpuData(instance, cpu, off, size))
    return out


def _finish(td: TraceDat, data) -> None:
    """Clock, offsets, kernel version; one page list over all CPUs (decompressed or in place)."""
    o = td.options
    if not td.clock:
        td.clock = _selected_clock(o.get("trace_clock", "")) or "local"
    uname = o.get("uname", "")
    parts = uname.split()
    td.kernel_version = parts[2] if len(parts) >= 3 else ""
    off = 0
    for key, mult in (("offset", 1), ("date", 1000)):
        if key in o:
            try:
                off += int(o[key], 0) * mult
            except ValueError:
                td.warnings.append(f"{td.name}: unreadable {key.upper()} option {o[key]!r}; not applied")
    td.ts_offset = off
    td.tsc2nsec = o.get("tsc2nsec")
    # one buffer for the scanner: decompressed CPUs are concatenated; in-place pages stay in the file
    ps = td.page_size
    cpus = sorted(td.cpus, key=lambda cd: (cd.cpu, cd.instance))
    td.cpus = cpus
    if all(cd.chunks is None for cd in cpus):
        buf = np.frombuffer(data, np.uint8) if not isinstance(data, np.ndarray) else data
        starts = [np.arange(cd.npages, dtype=np.int64) * ps + cd.offset for cd in cpus]
        fo = starts
    else:
        buf, starts, fo = _gather_pages(cpus, data, ps)
    td.buf = buf
    td.page_starts = np.concatenate(starts) if starts else np.zeros(0, np.int64)
    td.page_cpu = np.concatenate([np.full(cd.npages, cd.cpu, np.int32) for cd in cpus]) if cpus else np.zeros(0, np.int32)
    td.page_file_offset = np.concatenate(fo) if fo else np.zeros(0, np.int64)


def _gather_pages(cpus: list[CpuData], data, ps: int) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """One buffer of every CPU's pages, in ``cpus`` order: compressed chunks decompressed into
    place, in-place pages copied; (buffer, page starts, page file offsets) per CPU."""
    buf = np.empty(sum(cd.npages for cd in cpus) * ps, np.uint8)
    starts, fo = [], []
    base = 0
    for cd in cpus:
        n = cd.npages * ps
        if cd.chunks is None:
            buf[base : base + n] = np.frombuffer(data, np.uint8)[cd.offset : cd.offset + n]
            cd.chunk_offsets = list(range(cd.offset, cd.offset + n, ps))
        else:
            pos = base
            for frame, usize, at in cd.chunks:
                buf[pos : pos + usize] = np.frombuffer(cd.dec(frame, usize, at, f"cpu {cd.cpu} chunk"), np.uint8)
                pos += usize
        cd.buf = buf[base : base + n]
        starts.append(base + np.arange(cd.npages, dtype=np.int64) * ps)
        fo.append(np.asarray(cd.chunk_offsets, np.int64))
        base += n
    return buf, starts, fo


def scan(td: TraceDat, plan=None, compiled: bool = True) -> PageScan:
    """The data records of all pages (decoded along ``plan`` when the compiled scan runs)."""
    assert td.buf is not None and td.page_starts is not None
    return scan_pages(td.buf, td.page_starts, td.page_size, td.headers, td.le, compiled,
                      plan.args() if plan is not None else None)


def ns_timestamps(td: TraceDat, raw: np.ndarray) -> np.ndarray:
    """Raw ring-buffer stamps -> what ``trace-cmd report`` shows (TSC2NSEC, then the offsets)."""
    ts = raw
    if td.tsc2nsec is not None:
        mult, shift, _off = td.tsc2nsec
        u = raw.view(np.uint64)
        hi = u >> np.uint64(32)
        lo = u & np.uint64(0xFFFFFFFF)
        m = np.uint64(mult)
        sh = np.uint64(shift)
        # mul_u64_u32_shr with a 96-bit intermediate: (hi * m) << (32 - shift) + (lo * m) >> shift
        part_lo = (lo * m) >> sh
        part_hi = (hi * m) << np.uint64(32 - shift) if shift <= 32 else (hi * m) >> np.uint64(shift - 32)
        ts = (part_hi + part_lo).view(np.int64)
    if td.ts_offset:
        ts = ts + np.int64(td.ts_offset)
    return ts


__all__ = ["MAGIC", "TraceDat", "ns_timestamps", "parse_cmdlines", "read_tracedat", "scan", "skip_u32_block"]
