"""Binary readers on synthetic files: the cases the real captures do not contain.

The byte builders below write trace.dat (v6 and v7, none/zlib/zstd sections, little- and
big-endian, 64- and 32-bit kernels) and perf.data (file and pipe mode, COMPRESSED records)
from the format descriptions (``parsers/binary/*.py`` docstrings), with tracepoint format
files in the kernel's own syntax.  Each test states the expected rows, so the readers are
checked against what was written, not against themselves; every file is also read with the
numpy implementations only (``parsers.binary.COMPILED = False``) and the two tables compared.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import zstandard

from parsers import binary
from parsers.api import parse_files
from parsers.errors import PagereplayError, TraceFormatError, TraceInputError

# --------------------------------------------------------------------------- format files
COMMON = (
    "\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"
    "\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n"
    "\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n"
    "\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n"
)
GFP = (
    '(REC->gfp_flags) ? __print_flags(REC->gfp_flags, "|", '
    '{( unsigned long)(((( gfp_t)(0x400u|0x800u)) | (( gfp_t)0x40u) | (( gfp_t)0x80u)) | (( gfp_t)0x400000u)), "GFP_KERNEL_ACCOUNT"}, '
    '{( unsigned long)((( gfp_t)(0x400u|0x800u)) | (( gfp_t)0x40u) | (( gfp_t)0x80u)), "GFP_KERNEL"}, '
    '{( unsigned long)(( gfp_t)0x100u), "__GFP_ZERO"}, {( unsigned long)(( gfp_t)0x8u), "__GFP_MOVABLE"}) : "none"'
)
PAGE = "(((struct page *)vmemmap_base) + (REC->pfn))"
PB = "(((unsigned int)((21 - 12))) < ((unsigned int)(11 - 1)) ? ((unsigned int)((21 - 12))) : ((unsigned int)(11 - 1)))"


@dataclass
class Fmt:
    system: str
    name: str
    id: int
    fields: list[tuple[str, str, int, int, int]]  # (name, C declaration, offset, size, signed)
    print_fmt: str

    def text(self) -> str:
        body = "".join(f"\tfield:{decl};\toffset:{o};\tsize:{s};\tsigned:{sg};\n" for _, decl, o, s, sg in self.fields)
        return f"name: {self.name}\nID: {self.id}\nformat:\n{COMMON}{body}\nprint fmt: {self.print_fmt}\n"

    @property
    def size(self) -> int:
        return max([8] + [o + s for _, _, o, s, _ in self.fields])

    def payload(self, pid: int, le: bool = True, **vals: int) -> bytes:
        """The raw record: common header then the fields (padded to 4 bytes)."""
        b = bytearray(self.size + (-self.size) % 4)
        bo = "<" if le else ">"
        struct.pack_into(bo + "HBBi", b, 0, self.id, 0, 0, pid)
        for nm, _decl, o, s, sg in self.fields:
            if nm in vals:
                v = vals[nm]
                code = {1: "b", 2: "h", 4: "i", 8: "q"}[s]
                struct.pack_into(bo + (code if sg or v < 0 else code.upper()), b, o, v)
        return bytes(b)


def kmem_61(base: int = 544) -> dict[str, Fmt]:
    """The six kmem events with Linux 6.1's layouts and print fmts (ids from ``base``)."""
    ul = "unsigned long"
    return {
        "mm_page_alloc_extfrag": Fmt("kmem", "mm_page_alloc_extfrag", base, [
            ("pfn", f"{ul} pfn", 8, 8, 0), ("alloc_order", "int alloc_order", 16, 4, 1),
            ("fallback_order", "int fallback_order", 20, 4, 1), ("alloc_migratetype", "int alloc_migratetype", 24, 4, 1),
            ("fallback_migratetype", "int fallback_migratetype", 28, 4, 1), ("change_ownership", "int change_ownership", 32, 4, 1)],
            '"page=%p pfn=0x%lx alloc_order=%d fallback_order=%d pageblock_order=%d alloc_migratetype=%d '
            'fallback_migratetype=%d fragmenting=%d change_ownership=%d", ' + PAGE + ", REC->pfn, REC->alloc_order, "
            "REC->fallback_order, " + PB + ", REC->alloc_migratetype, REC->fallback_migratetype, REC->fallback_order < "
            + PB + ", REC->change_ownership"),
        "mm_page_pcpu_drain": Fmt("kmem", "mm_page_pcpu_drain", base + 1, [
            ("pfn", f"{ul} pfn", 8, 8, 0), ("order", "unsigned int order", 16, 4, 0), ("migratetype", "int migratetype", 20, 4, 1)],
            '"page=%p pfn=0x%lx order=%d migratetype=%d", ' + PAGE + ", REC->pfn, REC->order, REC->migratetype"),
        "mm_page_alloc_zone_locked": Fmt("kmem", "mm_page_alloc_zone_locked", base + 2, [
            ("pfn", f"{ul} pfn", 8, 8, 0), ("order", "unsigned int order", 16, 4, 0), ("migratetype", "int migratetype", 20, 4, 1),
            ("percpu_refill", "int percpu_refill", 24, 4, 1)],
            '"page=%p pfn=0x%lx order=%u migratetype=%d percpu_refill=%d", REC->pfn != -1UL ? ' + PAGE
            + " : ((void *)0), REC->pfn != -1UL ? REC->pfn : 0, REC->order, REC->migratetype, REC->percpu_refill"),
        "mm_page_alloc": Fmt("kmem", "mm_page_alloc", base + 3, [
            ("pfn", f"{ul} pfn", 8, 8, 0), ("order", "unsigned int order", 16, 4, 0), ("gfp_flags", f"{ul} gfp_flags", 24, 8, 0),
            ("migratetype", "int migratetype", 32, 4, 1)],
            '"page=%p pfn=0x%lx order=%d migratetype=%d gfp_flags=%s", REC->pfn != -1UL ? ' + PAGE
            + " : ((void *)0), REC->pfn != -1UL ? REC->pfn : 0, REC->order, REC->migratetype, " + GFP),
        "mm_page_free_batched": Fmt("kmem", "mm_page_free_batched", base + 4, [("pfn", f"{ul} pfn", 8, 8, 0)],
                                    '"page=%p pfn=0x%lx order=0", ' + PAGE + ", REC->pfn"),
        "mm_page_free": Fmt("kmem", "mm_page_free", base + 5, [("pfn", f"{ul} pfn", 8, 8, 0), ("order", "unsigned int order", 16, 4, 0)],
                            '"page=%p pfn=0x%lx order=%d", ' + PAGE + ", REC->pfn, REC->order"),
    }


PRINT = Fmt("ftrace", "print", 5, [("ip", "unsigned long ip", 8, 8, 0), ("buf", "char buf[]", 16, 0, 1)], '"%ps: %s", (void *)REC->ip, REC->buf')
KMALLOC = Fmt("kmem", "kmalloc", 600, [("bytes_req", "size_t bytes_req", 8, 8, 0)], '"bytes_req=%zu", REC->bytes_req')
# another kernel's layout: the fields in another order and size (only the format says where they are)
ALLOC_OTHER = Fmt("kmem", "mm_page_alloc", 1234, [
    ("order", "unsigned int order", 8, 4, 0), ("migratetype", "int migratetype", 12, 4, 1),
    ("gfp_flags", "unsigned int gfp_flags", 16, 4, 0), ("pfn", "unsigned long pfn", 24, 8, 0)],
    '"page=%p pfn=0x%lx order=%d migratetype=%d gfp_flags=%s", REC->pfn != -1UL ? ' + PAGE
    + " : ((void *)0), REC->pfn != -1UL ? REC->pfn : 0, REC->order, REC->migratetype, " + GFP)

HEADER_PAGE_64 = (
    "\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n\tfield: local_t commit;\toffset:8;\tsize:8;\tsigned:1;\n"
    "\tfield: int overwrite;\toffset:8;\tsize:1;\tsigned:1;\n\tfield: char data;\toffset:16;\tsize:4080;\tsigned:0;\n"
)
HEADER_PAGE_32 = (
    "\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n\tfield: local_t commit;\toffset:8;\tsize:4;\tsigned:1;\n"
    "\tfield: int overwrite;\toffset:8;\tsize:1;\tsigned:1;\n\tfield: char data;\toffset:12;\tsize:4084;\tsigned:0;\n"
)
HEADER_EVENT = "# compressed entry header\n\ttype_len    :    5 bits\n\ttime_delta  :   27 bits\n\tarray       :   32 bits\n"


# --------------------------------------------------------------------------- ring-buffer pages
@dataclass
class Rec:
    kind: str  # data, data0 (type_len 0), pad, ext, abs, null
    delta: int = 0
    payload: bytes = b""
    value: int = 0  # ext: the total increment; abs: the time stamp; pad: bytes


def page(ts: int, recs: list[Rec], *, le: bool = True, long_size: int = 8, page_size: int = 4096,
         lost: int | None = None, lost_stored: bool = True) -> bytes:
    bo = "<" if le else ">"

    def word(tl: int, delta: int) -> bytes:
        return struct.pack(bo + "I", (tl | (delta << 5)) if le else ((tl << 27) | delta))

    body = bytearray()
    for r in recs:
        if r.kind == "data":
            assert len(r.payload) % 4 == 0 and len(r.payload) <= 112
            body += word(len(r.payload) // 4, r.delta) + r.payload
        elif r.kind == "data0":
            body += word(0, r.delta) + struct.pack(bo + "I", len(r.payload) + 4) + r.payload
        elif r.kind == "pad":
            body += word(29, r.delta) + struct.pack(bo + "I", r.value) + bytes(r.value - 4)
        elif r.kind == "ext":
            body += word(30, r.value & ((1 << 27) - 1)) + struct.pack(bo + "I", r.value >> 27)
        elif r.kind == "abs":
            body += word(31, r.value & ((1 << 27) - 1)) + struct.pack(bo + "I", r.value >> 27)
        elif r.kind == "null":
            body += word(29, 0) + struct.pack(bo + "I", 0)
    commit = len(body)
    if recs and recs[-1].kind == "null":
        commit = len(body)  # the null padding is inside the committed data
    extra = b""
    if lost is not None:
        commit |= 1 << 31
        if lost_stored:
            commit |= 1 << 30
            extra = struct.pack(bo + ("q" if long_size == 8 else "i"), lost)
    out = struct.pack(bo + "Q", ts) + struct.pack(bo + ("q" if long_size == 8 else "i"), commit) + bytes(body) + extra
    assert len(out) <= page_size
    return out + bytes(page_size - len(out))


# --------------------------------------------------------------------------- trace.dat
def _blocks(formats: list[Fmt], le: bool, long_size: int, cmdlines: str) -> dict[str, bytes]:
    bo = "<" if le else ">"
    hp = (HEADER_PAGE_64 if long_size == 8 else HEADER_PAGE_32).encode()
    he = HEADER_EVENT.encode()
    header = b"header_page\0" + struct.pack(bo + "Q", len(hp)) + hp + b"header_event\0" + struct.pack(bo + "Q", len(he)) + he
    ftrace = [f for f in formats if f.system == "ftrace"]
    fb = struct.pack(bo + "I", len(ftrace)) + b"".join(struct.pack(bo + "Q", len(t)) + t for t in (f.text().encode() for f in ftrace))
    systems: dict[str, list[Fmt]] = {}
    for f in formats:
        if f.system != "ftrace":
            systems.setdefault(f.system, []).append(f)
    eb = struct.pack(bo + "I", len(systems))
    for sysname, fs in systems.items():
        eb += sysname.encode() + b"\0" + struct.pack(bo + "I", len(fs))
        eb += b"".join(struct.pack(bo + "Q", len(t)) + t for t in (f.text().encode() for f in fs))
    cl = cmdlines.encode()
    return {"header": header, "ftrace": fb, "events": eb, "kallsyms": struct.pack(bo + "I", 0),
            "printk": struct.pack(bo + "I", 0), "cmdlines": struct.pack(bo + "Q", len(cl)) + cl}


def _opt(bo: str, oid: int, data: bytes) -> bytes:
    return struct.pack(bo + "HI", oid, len(data)) + data


def _compress(kind: str, data: bytes) -> bytes:
    if kind == "zstd":
        return zstandard.ZstdCompressor(write_content_size=False).compress(data)  # as trace-cmd writes them
    return zlib.compress(data)


def tracedat_v7(cpus: dict[int, list[bytes]], formats: list[Fmt], *, comp: str = "zstd", le: bool = True,
                long_size: int = 8, page_size: int = 4096, cmdlines: str = "", uname: str = "Linux host 6.1.0-test x86_64",
                clock: str = "local [global] counter", cpustat: dict[int, str] | None = None, chunk_pages: int = 2,
                extra_opts: bytes = b"") -> bytes:
    bo = "<" if le else ">"
    blocks = _blocks(formats, le, long_size, cmdlines)
    compressed = comp != "none"
    out = bytearray(b"\x17\x08Dtracing" + b"7\0" + bytes([0 if le else 1, 8]) + struct.pack(bo + "I", page_size))
    out += comp.encode() + b"\0" + b"1.0\0"
    opt_at = len(out)
    out += bytes(8)  # first options offset, patched below

    def section(sid: int, body: bytes, compress: bool = True) -> int:
        at = len(out)
        if compress and compressed:
            z = _compress(comp, body)
            body = struct.pack(bo + "II", len(z), len(body)) + z
            flags = 1
        else:
            flags = 0
        out.extend(struct.pack(bo + "HHIQ", sid, flags, 0, len(body)) + body)
        return at

    loc = {16: section(16, blocks["header"]), 17: section(17, blocks["ftrace"]), 18: section(18, blocks["events"]),
           21: section(21, blocks["cmdlines"])}
    opts = b"".join(_opt(bo, k, struct.pack(bo + "Q", v)) for k, v in loc.items())
    opts += _opt(bo, 5, uname.encode() + b"\0") + _opt(bo, 4, clock.encode() + b"\0")
    for c, text in (cpustat or {}).items():
        opts += _opt(bo, 2, f"CPU: {c}\n{text}".encode() + b"\0")
    opts += extra_opts
    first_opts = len(out)
    struct.pack_into(bo + "Q", out, opt_at, first_opts)
    done1 = len(out) + 16 + len(opts) + 6  # where the DONE option's data will be
    section(0, opts + _opt(bo, 0, bytes(8)), compress=False)
    # the buffer section: header, padding to a page, then each CPU's data
    buf_sec = len(out)
    out.extend(struct.pack(bo + "HHIQ", 3, 1 if compressed else 0, 0, 0))
    out.extend(bytes((-len(out)) % page_size))
    table = []
    for c, pages in sorted(cpus.items()):
        at = len(out)
        raw = b"".join(pages)
        if compressed:
            chunks = [raw[i : i + chunk_pages * page_size] for i in range(0, len(raw), chunk_pages * page_size)]
            blob = struct.pack(bo + "I", len(chunks))
            for ch in chunks:
                z = _compress(comp, ch)
                blob += struct.pack(bo + "II", len(z), len(ch)) + z
            size = len(blob) - 4  # trace-cmd records 4 bytes less than it wrote
        else:
            blob = raw
            size = len(raw)
        out.extend(blob)
        out.extend(bytes((-len(out)) % page_size))
        table.append((c, at, size))
    struct.pack_into(bo + "Q", out, buf_sec + 8, len(out) - buf_sec - 16)
    second = len(out)
    struct.pack_into(bo + "Q", out, done1, second)
    bopt = struct.pack(bo + "Q", buf_sec) + b"\0" + clock.split("[")[-1].split("]")[0].encode() + b"\0"
    bopt += struct.pack(bo + "II", page_size, len(table))
    bopt += b"".join(struct.pack(bo + "IQQ", c, at, size) for c, at, size in table)
    section(0, _opt(bo, 3, bopt) + _opt(bo, 0, bytes(8)), compress=False)
    return bytes(out)


def tracedat_v6(cpus: dict[int, list[bytes]], formats: list[Fmt], *, le: bool = True, long_size: int = 8,
                page_size: int = 4096, cmdlines: str = "", uname: str = "Linux host 5.10.0-v6 x86_64",
                clock: str | None = "[global]") -> bytes:
    bo = "<" if le else ">"
    b = _blocks(formats, le, long_size, cmdlines)
    ncpu = max(cpus) + 1 if cpus else 0
    head = bytearray(b"\x17\x08Dtracing" + b"6\0" + bytes([0 if le else 1, 8]) + struct.pack(bo + "I", page_size))
    for k in ("header", "ftrace", "events", "kallsyms", "printk", "cmdlines"):
        head += b[k]
    head += struct.pack(bo + "I", ncpu)
    head += b"options  \0" + _opt(bo, 5, uname.encode() + b"\0")
    if clock is not None:
        head += _opt(bo, 4, b"")  # v6: the clock text follows the CPU table
    head += struct.pack(bo + "H", 0)
    head += b"flyrecord\0"
    table_at = len(head)
    head += bytes(16 * ncpu)
    if clock is not None:
        head += struct.pack(bo + "Q", len(clock)) + clock.encode()
    head += bytes((-len(head)) % page_size)
    data = bytearray()
    for c in range(ncpu):
        pages = cpus.get(c, [])
        off = len(head) + len(data)
        raw = b"".join(pages)
        data += raw
        struct.pack_into(bo + "QQ", head, table_at + 16 * c, off if raw else 0, len(raw))
    return bytes(head + data)


# --------------------------------------------------------------------------- perf.data
S_IP, S_TID, S_TIME, S_ADDR, S_READ, S_CALLCHAIN, S_ID, S_CPU, S_PERIOD, S_STREAM_ID, S_RAW, S_IDENT = (
    1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 65536)
SAMPLE_ID_ALL = 1 << 18


@dataclass
class Attr:
    type: int
    config: int
    sample_type: int
    ids: list[int]
    read_format: int = 0
    flags: int = SAMPLE_ID_ALL

    def pack(self, bo: str, size: int = 128) -> bytes:
        b = bytearray(size)
        struct.pack_into(bo + "IIQQQQQ", b, 0, self.type, size, self.config, 1, self.sample_type, self.read_format, self.flags)
        return bytes(b)


def _hdr(bo: str, typ: int, misc: int, size: int) -> bytes:
    return struct.pack(bo + "IHH", typ, misc, size)


def trailer(bo: str, a: Attr, pid: int, tid: int, time: int, cpu: int, ident: int) -> bytes:
    st = a.sample_type
    out = b""
    if st & S_TID:
        out += struct.pack(bo + "ii", pid, tid)
    if st & S_TIME:
        out += struct.pack(bo + "Q", time)
    if st & S_ID:
        out += struct.pack(bo + "Q", ident)
    if st & S_STREAM_ID:
        out += struct.pack(bo + "Q", ident)
    if st & S_CPU:
        out += struct.pack(bo + "II", cpu, 0)
    if st & S_IDENT:
        out += struct.pack(bo + "Q", ident)
    return out


def sample(bo: str, a: Attr, *, ident: int, pid: int, tid: int, time: int, cpu: int, raw: bytes,
           read: list[int] | None = None, callchain: list[int] | None = None) -> bytes:
    st = a.sample_type
    b = b""
    if st & S_IDENT:
        b += struct.pack(bo + "Q", ident)
    if st & S_IP:
        b += struct.pack(bo + "Q", 0xFFFFFFFF81000000)
    if st & S_TID:
        b += struct.pack(bo + "ii", pid, tid)
    if st & S_TIME:
        b += struct.pack(bo + "Q", time)
    if st & S_ADDR:
        b += struct.pack(bo + "Q", 0)
    if st & S_ID:
        b += struct.pack(bo + "Q", ident)
    if st & S_STREAM_ID:
        b += struct.pack(bo + "Q", ident)
    if st & S_CPU:
        b += struct.pack(bo + "II", cpu, 0)
    if st & S_PERIOD:
        b += struct.pack(bo + "Q", 1)
    if st & S_READ:
        b += b"".join(struct.pack(bo + "Q", v) for v in (read or []))
    if st & S_CALLCHAIN:
        cc = callchain or []
        b += struct.pack(bo + "Q", len(cc)) + b"".join(struct.pack(bo + "Q", x) for x in cc)
    if st & S_RAW:
        padded = raw + bytes((-(len(raw) + 4)) % 8)
        b += struct.pack(bo + "I", len(padded)) + padded
    b += bytes((-len(b)) % 8)
    return _hdr(bo, 9, 1, 8 + len(b)) + b


def comm(bo: str, a: Attr, pid: int, tid: int, name: str, time: int, cpu: int = 0, ident: int = 0, exec_: bool = False) -> bytes:
    s = name.encode() + b"\0"
    s += bytes((-len(s)) % 8)
    body = struct.pack(bo + "ii", pid, tid) + s + trailer(bo, a, pid, tid, time, cpu, ident)
    return _hdr(bo, 3, 0x2000 if exec_ else 0, 8 + len(body)) + body


def fork(bo: str, a: Attr, pid: int, ppid: int, tid: int, ptid: int, time: int, cpu: int = 0, ident: int = 0) -> bytes:
    body = struct.pack(bo + "iiiiQ", pid, ppid, tid, ptid, time) + trailer(bo, a, pid, tid, time, cpu, ident)
    return _hdr(bo, 7, 0, 8 + len(body)) + body


def lost(bo: str, a: Attr, n: int, time: int, cpu: int, ident: int = 0) -> bytes:
    body = struct.pack(bo + "QQ", ident, n) + trailer(bo, a, -1, -1, time, cpu, ident)
    return _hdr(bo, 2, 0, 8 + len(body)) + body


def lost_samples(bo: str, a: Attr, n: int, time: int, cpu: int, ident: int = 0) -> bytes:
    body = struct.pack(bo + "Q", n) + trailer(bo, a, -1, -1, time, cpu, ident)
    return _hdr(bo, 13, 0, 8 + len(body)) + body


def tracing_data(formats: list[Fmt], le: bool = True, cmdlines: str = "") -> bytes:
    b = _blocks(formats, le, 8, cmdlines)
    bo = "<" if le else ">"
    return (b"\x17\x08Dtracing" + b"0.6\0" + bytes([0 if le else 1, 8]) + struct.pack(bo + "I", 4096)
            + b["header"] + b["ftrace"] + b["events"] + b["kallsyms"] + b["printk"] + b["cmdlines"])


def _string_feature(bo: str, s: str) -> bytes:
    d = s.encode() + b"\0"
    d += bytes((-len(d)) % 8)
    return struct.pack(bo + "I", len(d)) + d


def perfdata(attrs: list[Attr], records: list[bytes], formats: list[Fmt] | None, *, le: bool = True,
             osrelease: str = "6.1.0-perf-test", pipe: bool = False) -> bytes:
    bo = "<" if le else ">"
    magic = b"PERFILE2" if le else b"2ELIFREP"
    td = tracing_data(formats, le) if formats is not None else None
    if pipe:
        out = bytearray(magic + struct.pack(bo + "Q", 16))
        for a in attrs:
            body = a.pack(bo) + b"".join(struct.pack(bo + "Q", i) for i in a.ids)
            out += _hdr(bo, 64, 0, 8 + len(body)) + body
        feat = struct.pack(bo + "Q", 4) + _string_feature(bo, osrelease)
        out += _hdr(bo, 80, 0, 8 + len(feat)) + feat
        if td is not None:
            padded = td + bytes((-len(td)) % 8)
            out += _hdr(bo, 66, 0, 12) + struct.pack(bo + "I", len(padded)) + padded
        out += b"".join(records)
        return bytes(out)
    attr_size = 128 + 16
    ids_blob = b""
    id_offs = []
    base = 104
    for a in attrs:
        id_offs.append((base + len(ids_blob), 8 * len(a.ids)))
        ids_blob += b"".join(struct.pack(bo + "Q", i) for i in a.ids)
    attrs_off = base + len(ids_blob)
    attrs_blob = b"".join(a.pack(bo) + struct.pack(bo + "QQ", *id_offs[k]) for k, a in enumerate(attrs))
    data_off = attrs_off + len(attrs_blob)
    data = b"".join(records)
    feats = []
    bits = 0
    if td is not None:
        feats.append(td)
        bits |= 1 << 1
    feats.append(_string_feature(bo, osrelease))
    bits |= 1 << 4
    table_off = data_off + len(data)
    sec_off = table_off + 16 * len(feats)
    table = b""
    secs = b""
    for f in feats:
        table += struct.pack(bo + "QQ", sec_off + len(secs), len(f))
        secs += f
    header = magic + struct.pack(bo + "QQQQQQQQ", 104, attr_size, attrs_off, len(attrs_blob), data_off, len(data), 0, 0)
    header += struct.pack(bo + "QQQQ", bits, 0, 0, 0)
    return header + ids_blob + attrs_blob + data + table + secs


def compressed_records(bo: str, records: list[bytes], split: int, kind: int = 81) -> list[bytes]:
    """``records`` as two COMPRESSED(2) records carrying one zstd stream."""
    c = zstandard.ZstdCompressor().compressobj()
    one = c.compress(b"".join(records[:split])) + c.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
    two = c.compress(b"".join(records[split:])) + c.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH)
    out = []
    for z in (one, two):
        if kind == 81:
            out.append(_hdr(bo, 81, 0, 8 + len(z)) + z)  # (not padded: the records after it are not 8-aligned)
        else:
            pad = (-len(z)) % 8
            out.append(_hdr(bo, 83, 0, 16 + len(z) + pad) + struct.pack(bo + "Q", len(z)) + z + bytes(pad))
    return out


# --------------------------------------------------------------------------- reading
def rows(table: pa.Table, *cols: str) -> list[tuple]:
    d = table.select(list(cols)).to_pydict()
    return list(zip(*(d[c] for c in cols)))


def parse_both(tmp_path: Path, data: bytes, name: str = "t.dat", monkeypatch=None):
    """Parse with the compiled kernels and with numpy only; assert the tables agree; return the first."""
    p = tmp_path / name
    p.write_bytes(data)
    res = parse_files([p])
    old = binary.COMPILED
    binary.COMPILED = False
    try:
        res2 = parse_files([p])
    finally:
        binary.COMPILED = old
    assert res.table.equals(res2.table), "compiled and numpy readers disagree"
    assert res.accounting == res2.accounting
    return res


def acc_file(res) -> dict:
    return res.accounting["files"][0]


# --------------------------------------------------------------------------- trace.dat tests
F = kmem_61()
FMTS = [*F.values(), PRINT, KMALLOC]


def alloc(pid: int, pfn: int, order: int, gfp: int, mt: int, le: bool = True) -> bytes:
    return F["mm_page_alloc"].payload(pid, le, pfn=pfn, order=order, gfp_flags=gfp, migratetype=mt)


def free(pid: int, pfn: int, order: int, le: bool = True) -> bytes:
    return F["mm_page_free"].payload(pid, le, pfn=pfn, order=order)


def two_cpu_trace(le: bool = True, long_size: int = 8) -> dict[int, list[bytes]]:
    """cpu0: 3 allocs (one failed) and a time extend; cpu1: frees, one tied in time with cpu0's."""
    p0 = page(1_000_000_000, [
        Rec("data", 5, alloc(101, 0x1000, 0, 0x400DC0, 0, le)),
        Rec("data", 10, alloc(102, -1, 2, 0xCC0, 1, le)),  # failed: pfn -1UL
        Rec("ext", value=(1 << 27) + 7),  # +134217735 ns
        Rec("data", 3, alloc(0, 0x2000, 1, 0, 2, le)),  # gfp 0: "none"; pid 0: <idle>
    ], le=le, long_size=long_size)
    p1 = page(1_000_000_010, [
        Rec("data", 5, free(103, 0x1000, 0, le)),  # ts 1_000_000_015: tied with cpu0's first record
        Rec("data", 1, F["mm_page_free_batched"].payload(103, le, pfn=0x3000)),
    ], le=le, long_size=long_size)
    return {0: [p0], 1: [p1]}


EXPECT_TWO_CPU = [
    # (ts_ns, cpu, pid, comm, event, pfn, order, migratetype, gfp_flags, gfp_mask, failed)
    (1_000_000_005, 0, 101, "alpha", "mm_page_alloc", 0x1000, 0, 0, "GFP_KERNEL_ACCOUNT|__GFP_ZERO", 0x400DC0, False),
    (1_000_000_015, 0, 102, "<...>", "mm_page_alloc", None, 2, 1, "GFP_KERNEL", 0xCC0, True),
    (1_000_000_015, 1, 103, "gamma", "mm_page_free", 0x1000, 0, None, None, None, False),
    (1_000_000_016, 1, 103, "gamma", "mm_page_free_batched", 0x3000, 0, None, None, None, False),
    (1_000_000_015 + (1 << 27) + 7 + 3, 0, 0, "<idle>", "mm_page_alloc", 0x2000, 1, 2, "none", 0, False),
]
COLS = ("ts_ns", "cpu", "pid", "comm", "event", "pfn", "order", "migratetype", "gfp_flags", "gfp_mask", "failed")
CMDLINES = "101 alpha\n103 gamma\n"


@pytest.mark.parametrize("comp", ["zstd", "zlib", "none"])
def test_tracedat_v7_compressions(tmp_path, comp):
    data = tracedat_v7(two_cpu_trace(), FMTS, comp=comp, cmdlines=CMDLINES)
    res = parse_both(tmp_path, data)
    assert rows(res.table, *COLS) == EXPECT_TWO_CPU
    # line = 1-based record ordinal in the file (cpu0's records first), seq = input order of the events
    assert rows(res.table, "line") == [(1,), (2,), (4,), (5,), (3,)]
    assert sorted(r[0] for r in rows(res.table, "seq")) == [0, 1, 2, 3, 4]
    f = acc_file(res)
    assert f["format"] == "trace.dat" and f["unit"] == "records"
    assert f["lines_total"] == f["lines_parsed"] + f["lines_other_event"] + f["lines_malformed"] == 5
    assert f["binary"]["ring_buffer"]["time_extend"] == 1
    assert f["binary"]["compression"] == comp and f["binary"]["file_version"] == 7
    assert res.accounting["failed_allocations"] == 1
    md = res.metadata
    assert md["pagereplay.format"] == "trace.dat"
    assert md["pagereplay.kernel_version"] == "6.1.0-test"
    assert md["pagereplay.timestamp_unit"] == "ns"
    assert md["pagereplay.kmem_era"] == ">=5.14 (hex pfn)"


def test_tracedat_v6_layout_with_trace_clock(tmp_path):
    data = tracedat_v6(two_cpu_trace(), FMTS, cmdlines=CMDLINES)
    res = parse_both(tmp_path, data)
    assert rows(res.table, *COLS) == EXPECT_TWO_CPU
    f = acc_file(res)
    assert f["binary"]["file_version"] == 6 and f["binary"]["trace_clock"] == "global"
    assert res.metadata["pagereplay.kernel_version"] == "5.10.0-v6"


@pytest.mark.parametrize("le,long_size", [(False, 8), (True, 4), (False, 4)])
def test_tracedat_big_endian_and_32bit_kernels(tmp_path, le, long_size):
    data = tracedat_v7(two_cpu_trace(le, long_size), FMTS, comp="zstd", cmdlines=CMDLINES, le=le, long_size=long_size)
    res = parse_both(tmp_path, data)
    assert rows(res.table, *COLS) == EXPECT_TWO_CPU


def test_type_len_0_padding_absolute_stamps(tmp_path):
    big = F["mm_page_alloc"].payload(7, pfn=0x42, order=3, gfp_flags=0x100, migratetype=1)
    p = page(5_000, [
        Rec("data0", 10, big),  # a type_len 0 record (as arches forcing 8-byte alignment write)
        Rec("pad", 20, value=24),  # a discarded event: its delta counts (as libtraceevent does)
        Rec("data", 1, free(7, 0x42, 3)),  # ts 5031
        Rec("abs", value=9_000_000),  # absolute time stamp
        Rec("data", 4, free(7, 0x43, 0)),  # ts 9000004
        Rec("null"),  # rest of the page empty
    ])
    p2 = page(9_100_000, [Rec("data", 0, free(7, 0x44, 0))])
    res = parse_both(tmp_path, tracedat_v7({0: [p, p2]}, FMTS, comp="none"))
    assert rows(res.table, "ts_ns", "event", "pfn", "order", "gfp_flags") == [
        (5_010, "mm_page_alloc", 0x42, 3, "__GFP_ZERO"),
        (5_031, "mm_page_free", 0x42, 3, None),
        (9_000_004, "mm_page_free", 0x43, 0, None),
        (9_100_000, "mm_page_free", 0x44, 0, None),
    ]
    rb = acc_file(res)["binary"]["ring_buffer"]
    assert rb["padding"] == 1 and rb["time_stamp"] == 1 and rb["pages"] == 2


def test_lost_events_from_page_flags(tmp_path):
    pages = [
        page(100, [Rec("data", 1, free(1, 0x10, 0))]),
        page(200, [Rec("data", 1, free(1, 0x11, 0))], lost=37),  # 37 events lost before this page
        page(300, [Rec("data", 1, free(1, 0x12, 0))], lost=5, lost_stored=False),  # lost, count unknown
    ]
    res = parse_both(tmp_path, tracedat_v7({2: pages}, FMTS, comp="zstd",
                                           cpustat={2: "entries: 3\noverrun: 50\ndropped events: 0\n"}))
    f = acc_file(res)
    assert f["lost_markers"] == [
        {"line": 2, "cpu": 2, "events": 37, "next_seq": 1},
        {"line": 3, "cpu": 2, "events": 0, "next_seq": 2},
    ]
    assert res.accounting["lost_events"] == 37
    assert f["binary"]["lost_markers_count_unknown"] == 1
    assert f["binary"]["cpu_stats"]["2"]["overrun"] == 50
    assert any("50 events overrun or dropped" in w for w in f["warnings"])
    assert res.metadata["pagereplay.lost_events"].count('"events": 37') == 1


def test_other_events_extfrag_and_zone_locked(tmp_path):
    ef = F["mm_page_alloc_extfrag"].payload(9, pfn=0x107800, alloc_order=0, fallback_order=10, alloc_migratetype=1,
                                            fallback_migratetype=0, change_ownership=1)
    ef2 = F["mm_page_alloc_extfrag"].payload(9, pfn=0x107900, alloc_order=1, fallback_order=3, alloc_migratetype=1,
                                             fallback_migratetype=2, change_ownership=0)
    zl = F["mm_page_alloc_zone_locked"].payload(9, pfn=0x500, order=0, migratetype=1, percpu_refill=1)
    pr = PRINT.payload(9, ip=0) + b"workload: begin\n\0\0\0\0"
    km = KMALLOC.payload(9, bytes_req=64)
    unknown = struct.pack("<HBBi", 777, 0, 0, 9) + bytes(8)
    p = page(10, [Rec("data", 1, ef), Rec("data", 1, ef2), Rec("data", 1, zl), Rec("data", 1, pr), Rec("data", 1, km),
                  Rec("data", 1, unknown)])
    res = parse_both(tmp_path, tracedat_v7({0: [p]}, FMTS, comp="zlib"))
    assert rows(res.table, "event", "order", "migratetype", "fallback_order", "pageblock_order", "fallback_migratetype",
                "fragmenting", "change_ownership", "percpu_refill") == [
        ("mm_page_alloc_extfrag", 0, 1, 10, 9, 0, False, True, None),
        ("mm_page_alloc_extfrag", 1, 1, 3, 9, 2, True, False, None),
        ("mm_page_alloc_zone_locked", 0, 1, None, None, None, None, None, True),
    ]
    f = acc_file(res)
    assert f["other_events"] == {"kmalloc": 1, "print": 1}
    assert f["malformed_reasons"] == {"unknown event id 777": 1}
    assert f["malformed_examples"][0]["line"] == 6
    assert f["lines_total"] == 6 == f["lines_parsed"] + f["lines_other_event"] + f["lines_malformed"]


def test_another_kernels_field_layout(tmp_path):
    """Offsets, sizes and ids come from the file's formats: a reordered mm_page_alloc decodes the same."""
    fmts = [ALLOC_OTHER, F["mm_page_free"], PRINT]
    a = ALLOC_OTHER.payload(5, order=2, migratetype=1, gfp_flags=0x400DC0, pfn=0xABCDE)
    p = page(1, [Rec("data", 1, a), Rec("data", 1, free(5, 0xABCDE, 2))])
    res = parse_both(tmp_path, tracedat_v7({0: [p]}, fmts, comp="zstd"))
    assert rows(res.table, "event", "pfn", "order", "migratetype", "gfp_flags", "gfp_mask") == [
        ("mm_page_alloc", 0xABCDE, 2, 1, "GFP_KERNEL_ACCOUNT|__GFP_ZERO", 0x400DC0),
        ("mm_page_free", 0xABCDE, 2, None, None, None),
    ]


def test_gfp_text_rebuilt_as_show_gfp_flags(tmp_path):
    vals = [0x400DC0, 0xCC0, 0x108, 0x1000108, 0]
    p = page(1, [Rec("data", 1, alloc(1, 0x10 + i, 0, g, 0)) for i, g in enumerate(vals)])
    res = parse_both(tmp_path, tracedat_v7({0: [p]}, FMTS, comp="none"))
    assert [r[0] for r in rows(res.table, "gfp_flags")] == [
        "GFP_KERNEL_ACCOUNT|__GFP_ZERO", "GFP_KERNEL", "__GFP_ZERO|__GFP_MOVABLE", "__GFP_ZERO|__GFP_MOVABLE|0x1000000", "none"]


def test_no_kmem_events_is_an_error(tmp_path):
    p = page(1, [Rec("data", 1, PRINT.payload(1, ip=0) + b"x\0\0\0")])
    path = tmp_path / "nokmem.dat"
    path.write_bytes(tracedat_v7({0: [p]}, FMTS, comp="none"))
    with pytest.raises(TraceFormatError, match=r"nokmem\.dat: no page-allocator .*saw print \(1\).*event formats at byte 0x"):
        parse_files([path])


# --------------------------------------------------------------------------- perf.data tests
BO = "<"
TP = S_IDENT | S_IP | S_TID | S_TIME | S_CPU | S_PERIOD | S_RAW  # what perf record -e tracepoint writes (0x10587)
DUMMY = Attr(1, 9, S_IDENT | S_IP | S_TID | S_TIME | S_CPU, [90, 91])


def perf_attrs(st: int = TP, read_format: int = 0) -> list[Attr]:
    return [Attr(2, F["mm_page_alloc"].id, st, [11, 12], read_format), Attr(2, F["mm_page_free"].id, st, [13, 14], read_format),
            DUMMY]


def perf_records(attrs: list[Attr], read=None, callchain=None) -> list[bytes]:
    aa, af, dm = attrs
    s = lambda a, ident, pid, tid, t, cpu, raw: sample(BO, a, ident=ident, pid=pid, tid=tid, time=t, cpu=cpu, raw=raw,
                                                       read=read, callchain=callchain)
    return [
        comm(BO, dm, 500, 500, "sh", 0, ident=90),  # synthesized at time 0
        comm(BO, dm, 500, 501, "worker", 0, ident=90),
        s(aa, 11, 500, 500, 1_000, 0, alloc(500, 0x100, 0, 0xCC0, 0)),
        s(af, 14, 500, 501, 1_500, 1, free(501, 0x100, 0)),
        comm(BO, dm, 500, 500, "dd", 2_000, ident=91, exec_=True),  # exec at 2000
        s(aa, 12, 500, 500, 2_000, 1, alloc(500, 0x101, 0, 0xCC0, 0)),  # same time, after the COMM in the file: "dd"
        fork(BO, dm, 600, 500, 600, 500, 2_500, ident=90),  # child inherits "dd"
        s(aa, 11, 600, 600, 3_000, 0, alloc(600, 0x102, 1, 0x400DC0, 1)),
        lost(BO, dm, 7, 3_100, 1, ident=91),
        s(af, 13, 700, 700, 2_900, 0, free(700, 0x102, 1)),  # out of file order in time; tid never named
        lost_samples(BO, dm, 2, 3_200, 0, ident=90),
        s(af, 14, 0, 0, 3_300, 1, free(0, 0x103, 0)),  # pid 0: swapper
    ]


EXPECT_PERF = [  # (ts, cpu, pid, tgid, comm, event, pfn)
    (1_000, 0, 500, 500, "sh", "mm_page_alloc", 0x100),
    (1_500, 1, 501, 500, "worker", "mm_page_free", 0x100),
    (2_000, 1, 500, 500, "dd", "mm_page_alloc", 0x101),
    (2_900, 0, 700, 700, ":700", "mm_page_free", 0x102),
    (3_000, 0, 600, 600, "dd", "mm_page_alloc", 0x102),
    (3_300, 1, 0, 0, "swapper", "mm_page_free", 0x103),
]
PCOLS = ("ts_ns", "cpu", "pid", "tgid", "comm", "event", "pfn")


def test_perfdata_file_mode(tmp_path):
    attrs = perf_attrs()
    res = parse_both(tmp_path, perfdata(attrs, perf_records(attrs), [*F.values(), PRINT]), "perf.data")
    assert rows(res.table, *PCOLS) == EXPECT_PERF
    assert rows(res.table, "line") == [(1,), (2,), (3,), (5,), (4,), (6,)]  # the sample's ordinal in the file
    f = acc_file(res)
    assert f["format"] == "perf.data" and f["lines_total"] == 6 == f["lines_parsed"]
    assert [(m["line"], m["cpu"], m["events"]) for m in f["lost_markers"]] == [(5, 1, 7), (6, 0, 2)]
    assert res.accounting["lost_events"] == 9
    assert f["binary"]["records"]["COMM"] == 3 and f["binary"]["records"]["FORK"] == 1
    assert res.metadata["pagereplay.kernel_version"] == "6.1.0-perf-test"
    assert res.metadata["pagereplay.format"] == "perf.data"


@pytest.mark.parametrize("read_format,read,callchain", [
    (4 | 16, [5, 99, 0], None),  # READ: value, id, lost
    (8 | 4 | 1, [2, 10, 1, 11, 2, 12], [0xFFFF1, 0xFFFF2, 0xFFFF3]),  # READ group of 2 (+enabled), CALLCHAIN of 3
    (0, None, []),  # an empty CALLCHAIN
])
def test_perf_read_and_callchain_sample_bits(tmp_path, read_format, read, callchain):
    st = TP | (S_READ if read is not None else 0) | (S_CALLCHAIN if callchain is not None else 0)
    attrs = perf_attrs(st, read_format)
    res = parse_both(tmp_path, perfdata(attrs, perf_records(attrs, read, callchain), [*F.values()]), "perf.data")
    assert rows(res.table, *PCOLS) == EXPECT_PERF


def test_perf_pipe_mode(tmp_path):
    attrs = perf_attrs()
    res = parse_both(tmp_path, perfdata(attrs, perf_records(attrs), [*F.values()], pipe=True), "pipe.data")
    assert rows(res.table, *PCOLS) == EXPECT_PERF
    assert acc_file(res)["binary"]["pipe_mode"] is True
    assert res.metadata["pagereplay.kernel_version"] == "6.1.0-perf-test"


@pytest.mark.parametrize("kind", [81, 83])
def test_perf_compressed_records(tmp_path, kind):
    attrs = perf_attrs()
    recs = perf_records(attrs)
    data = perfdata(attrs, recs[:2] + compressed_records(BO, recs[2:], 4, kind), [*F.values()])
    res = parse_both(tmp_path, data, "z.data")
    assert rows(res.table, *PCOLS) == EXPECT_PERF
    assert acc_file(res)["binary"]["compressed_records"] == 2


def test_perf_without_tracing_data(tmp_path):
    attrs = perf_attrs()
    p = tmp_path / "cycles.data"
    p.write_bytes(perfdata(attrs, perf_records(attrs), None))
    with pytest.raises(TraceFormatError, match=r"cycles\.data: at byte 0x48 no tracing data"):
        parse_files([p])


def test_perf_samples_without_raw_are_other_events(tmp_path):
    attrs = perf_attrs()
    cyc = Attr(0, 0, S_IDENT | S_IP | S_TID | S_TIME | S_CPU | S_PERIOD, [77])
    recs = perf_records(attrs) + [sample(BO, cyc, ident=77, pid=1, tid=1, time=4_000, cpu=0, raw=b"")]
    res = parse_both(tmp_path, perfdata([*attrs, cyc], recs, [*F.values()]), "mixed.data")
    assert rows(res.table, *PCOLS) == EXPECT_PERF
    f = acc_file(res)
    assert f["other_events"] == {"type 0 config 0": 1}
    assert f["lines_total"] == 7


# --------------------------------------------------------------------------- compressed inputs, detection
def test_zst_and_gz_wrapped_binaries_reach_the_binary_reader(tmp_path):
    data = tracedat_v7(two_cpu_trace(), FMTS, comp="zstd", cmdlines=CMDLINES)
    for name, blob, comp in (("t.dat.zst", zstandard.ZstdCompressor().compress(data), "zstd"),
                             ("t.dat.gz", __import__("gzip").compress(data), "gzip")):
        p = tmp_path / name
        p.write_bytes(blob)
        assert binary.sniff(p) == "trace.dat"
        res = parse_files([p])
        assert rows(res.table, *COLS) == EXPECT_TWO_CPU
        f = acc_file(res)
        assert f["compression"] == comp and f["bytes"] == len(blob)
        assert f["sha256"] == __import__("hashlib").sha256(blob).hexdigest()


def test_binary_and_text_inputs_mix(tmp_path):
    p = tmp_path / "t.dat"
    p.write_bytes(tracedat_v7(two_cpu_trace(), FMTS, comp="none", cmdlines=CMDLINES))
    txt = tmp_path / "t.txt"
    txt.write_text("           <...>-7     [003] .....     2.000000: mm_page_free: page=0x0 pfn=0x77 order=0\n")
    res = parse_files([p, txt])
    assert res.table.num_rows == 6
    assert [f["format"] for f in res.accounting["files"]] == ["trace.dat", "ftrace"]
    seq = [r[0] for r in rows(res.table, "seq")]
    assert sorted(seq) == list(range(6))
    assert res.metadata["pagereplay.gfp_bit_table"].startswith("mixed")


# --------------------------------------------------------------------------- bad input
def _expect_error(path: Path, data: bytes, pattern: str = r"byte 0x[0-9a-f]+"):
    path.write_bytes(data)
    with pytest.raises((TraceFormatError, TraceInputError)) as ei:
        parse_files([path])
    msg = str(ei.value)
    assert "\n" not in msg and path.name in msg
    assert __import__("re").search(pattern, msg), msg
    return msg


def test_truncated_tracedat(tmp_path):
    data = tracedat_v7(two_cpu_trace(), FMTS, comp="zstd", cmdlines=CMDLINES)
    for cut in (12, 40, 200, len(data) // 2, len(data) - 100):
        _expect_error(tmp_path / f"cut{cut}.dat", data[:cut])


def test_unknown_version_and_bad_sections(tmp_path):
    data = tracedat_v7(two_cpu_trace(), FMTS, comp="zstd", cmdlines=CMDLINES)
    msg = _expect_error(tmp_path / "v9.dat", data[:10] + b"9" + data[11:], r"version 9")
    assert "at byte 0xa" in msg
    # a section claiming far more bytes than the file has: refused before any allocation
    first = data.index(b"\x10\x00\x01\x00")  # section id 16, flags 1
    bad = bytearray(data)
    struct.pack_into("<Q", bad, first + 8, 1 << 60)
    _expect_error(tmp_path / "huge.dat", bytes(bad), rf"at byte {first:#x} section 16 claims")
    # a corrupt compressed frame
    bad = bytearray(data)
    bad[first + 30 : first + 40] = b"\xff" * 10
    _expect_error(tmp_path / "zbad.dat", bytes(bad))


def test_truncated_and_corrupt_perfdata(tmp_path):
    attrs = perf_attrs()
    data = perfdata(attrs, perf_records(attrs), [*F.values()])
    for cut in (20, 100, 700, len(data) - 40):
        _expect_error(tmp_path / f"cut{cut}.data", data[:cut])
    # a record of size 0 in the middle of the data
    bad = bytearray(data)
    d_off = struct.unpack_from("<Q", data, 40)[0]
    struct.pack_into("<H", bad, d_off + 6, 0)
    _expect_error(tmp_path / "size0.data", bytes(bad), r"byte 0x[0-9a-f]+ corrupt record")


def test_truncated_compressed_wrapper(tmp_path):
    rng = np.random.default_rng(1)
    pages = [page(1000 * i, [Rec("data", 1, free(1, int(x), 0)) for x in rng.integers(0, 1 << 40, 150)]) for i in range(100)]
    blob = zstandard.ZstdCompressor().compress(tracedat_v7({0: pages}, FMTS, comp="none"))
    p = tmp_path / "cut.dat.zst"
    p.write_bytes(blob[: len(blob) * 6 // 10])  # (the first zstd blocks are whole: the magic is seen)
    with pytest.raises(TraceInputError, match=r"cut\.dat\.zst: zstd stream ends early .*byte 0x"):
        parse_files([p])


def test_random_corruption_never_escapes_as_a_traceback(tmp_path):
    """Flipped bytes anywhere: a parse or a one-line error of ours, never another exception or a hang."""
    rng = np.random.default_rng(18)
    samples = [
        ("t.dat", tracedat_v7(two_cpu_trace(), FMTS, comp="none", cmdlines=CMDLINES)),
        ("z.dat", tracedat_v7(two_cpu_trace(), FMTS, comp="zstd", cmdlines=CMDLINES)),
        ("p.data", perfdata(perf_attrs(), perf_records(perf_attrs()), [*F.values()])),
    ]
    for name, data in samples:
        for k in range(60):
            bad = bytearray(data)
            for pos in rng.integers(0, len(bad), size=int(rng.integers(1, 6))):
                bad[pos] = int(rng.integers(0, 256))
            p = tmp_path / f"{k}-{name}"
            p.write_bytes(bytes(bad))
            for compiled in (True, False):
                binary.COMPILED = compiled
                try:
                    parse_files([p])
                except PagereplayError as e:
                    assert "\n" not in str(e)
                finally:
                    binary.COMPILED = True
