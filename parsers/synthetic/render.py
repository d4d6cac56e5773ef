"""Canonical event table -> the text a kernel (and its tools) would print.

Formats (``--format``)
----------------------
``ftrace``
    tracefs ``trace`` (with its ``#`` header) or ``trace_pipe`` (``header=False``); the line
    prefix of ``trace_print_context()`` (kernel/trace/trace_output.c)::

        "%16s-%-7d " [ "(%7d) " ] "[%03d] " [flags] " %5lu.%06lu: " event ": " TP_printk

    Eras A/B print ``-%-5d``/``(%5d)`` and a 4-character irq-info column, C/D ``-%-7d``/``(%7d)``
    and 5 characters (migrate-disable).  The flags are the ones the captured 6.1 traces show most
    for each event (``.....`` for alloc/free, ``...2.`` for free_batched, ``d..3.`` for the
    events fired under zone->lock).
``trace-cmd``
    ``trace-cmd report``: a ``cpus=N`` header, then ``"%16s-%-5d [%03d] %5lu.%06lu: "``, the event
    name with its colon left-justified in 21 columns, a space, the fields (as in the captured
    6.1 report).
``perf``
    ``perf script``: ``"%16s %5d [%03d] %5lu.%06lu: %*s: "`` with the ``sys:event`` name
    right-aligned to the longest recorded name (30, ``kmem:mm_page_alloc_zone_locked``).

Fields of the perf/trace-cmd lines are libtraceevent's rendering of the event's ``print fmt``:
``page=`` is not a ``struct page`` address there.  perf prints the pfn in hex;
the 6.1 trace-cmd capture prints ``vmemmap_base``'s *symbol address* plus the pfn (we reproduce
that constant); both print ``fragmenting=10`` for the 6.1-era min() expression of
``pageblock_order`` (observed in the captured traces), which the parser recomputes as
``fallback_order < pageblock_order``.

Kernel eras (``--kernel-era``)
------------------------------
What ``include/trace/events/kmem.h`` records and prints, release by release:

=====  ===========  =================================================================
era    kernels      what changes in the text
=====  ===========  =================================================================
A      < 4.1        ``struct page *`` recorded; ``%p`` raw (vmemmap address); decimal pfn;
                    ``percpu_refill`` = order==0; ``mm_page_free_batched`` has ``cold=``;
                    ``change_ownership`` = alloc_mt == fallback_mt; ``legacy_names`` gives
                    the pre-3.3 names (``mm_page_free_direct``, ``mm_pagevec_free``)
B      4.1-5.13     pfn recorded; hashed ``%p``; decimal pfn; percpu_refill = order==0
C      5.14-5.18    ``pfn=0x%lx``; percpu_refill = order==0
D      >= 5.19      hex pfn; ``percpu_refill`` is the recorded argument
=====  ===========  =================================================================

Failed allocations (null pfn or ``failed``): ``page=(null) pfn=0`` in A/B, ``page=0000000000000000
pfn=0x0`` in C/D, ``page=0x0`` in perf/trace-cmd.

What cannot survive a round trip (see :func:`as_rendered`): sub-microsecond time, ``tgid`` unless
``record_tgid``, the fields an era computes instead of recording, and the provenance columns
``source_file``/``line``.

Speed: each chunk of rows is written by one compiled pass (numba) into a byte buffer -- no Python
per event.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import io
import os
from collections import namedtuple
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..schema import EVENT_ALIASES, EVENT_BY_NAME, EVENT_NAMES, Event, arrow_schema, decode_gfp

try:
    from numba import njit
except ImportError:  # pragma: no cover
    def njit(*a, **k):  # type: ignore[no-redef]
        return (lambda f: f) if not (a and callable(a[0])) else a[0]

FORMATS = ("ftrace", "trace-cmd", "perf")
ERAS = ("A", "B", "C", "D")
ERA_KERNELS = {"A": "< 4.1", "B": "4.1-5.13", "C": "5.14-5.18", "D": ">= 5.19"}
_FMT_CODE = {"ftrace": 0, "trace-cmd": 1, "perf": 2}
_ERA_CODE = {e: i for i, e in enumerate(ERAS)}

#: irq-info flags per event (most frequent in the captured 6.1 trace), 5-character form
EVENT_FLAGS: dict[Event, str] = {
    Event.MM_PAGE_ALLOC: ".....",
    Event.MM_PAGE_ALLOC_ZONE_LOCKED: "d..3.",
    Event.MM_PAGE_FREE: ".....",
    Event.MM_PAGE_FREE_BATCHED: "...2.",
    Event.MM_PAGE_PCPU_DRAIN: "d..3.",
    Event.MM_PAGE_ALLOC_EXTFRAG: "d..3.",
}
#: libtraceevent in the 6.1 trace-cmd capture prints ``(struct page *)vmemmap_base + pfn`` as the
#: *address of the symbol* plus the pfn: this constant is that kernel's symbol address.
TRACE_CMD_VMEMMAP_SYMBOL = 0xFFFFFFFF88815730
PERF_EVENT_WIDTH = max(len("kmem:" + n) for n in EVENT_NAMES)
_LEGACY_NAMES = {v: k for k, v in EVENT_ALIASES.items()}


@dataclass(frozen=True)
class RenderOptions:
    """How to render.

    fmt: ``ftrace`` | ``trace-cmd`` | ``perf``.
    era: kernel era ``A`` | ``B`` | ``C`` | ``D`` (module docstring).
    header: ftrace: write the ``trace`` file header (False = ``trace_pipe``); trace-cmd: ``cpus=N``.
    irq_info: ftrace: print the irq-info flags column (tracefs option ``irq-info``, on by default).
    record_tgid: ftrace: print the ``(tgid)`` column (option ``record-tgid``).
    legacy_names: era A: pre-3.3 names ``mm_page_free_direct`` / ``mm_pagevec_free``.
    nr_cpus: ``#P:`` / ``cpus=`` in the header (default: highest cpu + 1).
    chunk_rows: rows per batch taken from the table.
    workers: threads rendering pieces of a batch in parallel (output order is kept).
    """

    fmt: str = "ftrace"
    era: str = "D"
    header: bool = True
    irq_info: bool = True
    record_tgid: bool = False
    legacy_names: bool = False
    nr_cpus: int | None = None
    chunk_rows: int = 1 << 20
    workers: int = 2

    def __post_init__(self) -> None:
        if self.fmt not in FORMATS:
            raise ValueError(f"unknown format {self.fmt!r} (known: {', '.join(FORMATS)})")
        if self.era not in ERAS:
            raise ValueError(f"unknown kernel era {self.era!r} (known: {', '.join(ERAS)})")
        if self.legacy_names and self.era != "A":
            raise ValueError("legacy_names (mm_page_free_direct, mm_pagevec_free) exist only in era A")


# ----------------------------------------------------------------------------- compiled writer
@njit(cache=True, nogil=True, inline="always")
def _put(out, p, src, s, n):
    for j in range(n):
        out[p + j] = src[s + j]
    return p + n


@njit(cache=True, nogil=True, inline="always")
def _spaces(out, p, n):
    for j in range(n):
        out[p + j] = 32
    return p + max(n, 0)


@njit(cache=True, nogil=True, inline="always")
def _ndigits(v):
    # comparisons, not divisions (this runs for every number of every line)
    n = 1
    t = 10
    while v >= t and n < 19:
        n += 1
        t *= 10
    return n


_TEN = np.uint64(10)
_ZERO = np.uint64(0)


@njit(cache=True, nogil=True, inline="always")
def _put_uint(out, p, v, width, zero):
    """``%{0}{width}lu`` of a non-negative v (right-aligned)."""
    n = _ndigits(v)
    fill = 48 if zero else 32
    for j in range(width - n):
        out[p] = fill
        p += 1
    q = p + n - 1
    u = np.uint64(v)  # unsigned: divisions by 10 without the floor-division sign fix-ups
    while True:
        d = u % _TEN
        out[q] = 48 + np.int64(d)
        u = u // _TEN
        q -= 1
        if u == _ZERO:
            break
    return p + n


@njit(cache=True, nogil=True, inline="always")
def _put_int(out, p, v):
    """``%d``."""
    if v < 0:
        out[p] = 45
        p += 1
        v = -v
    return _put_uint(out, p, v, 0, False)


@njit(cache=True, nogil=True, inline="always")
def _put_int_left(out, p, v, width):
    """``%-{width}d``."""
    s = p
    p = _put_int(out, p, v)
    return _spaces(out, p, width - (p - s))


@njit(cache=True, nogil=True, inline="always")
def _put_int_right(out, p, v, width):
    """``%{width}d``."""
    n = _ndigits(abs(v)) + (1 if v < 0 else 0)
    p = _spaces(out, p, width - n)
    return _put_int(out, p, v)


@njit(cache=True, nogil=True, inline="always")
def _put_hex(out, p, v, width):
    """``%0{width}lx`` of a non-negative v < 2^63."""
    n = 1
    t = v >> 4
    while t:
        n += 1
        t >>= 4
    for j in range(width - n):
        out[p] = 48
        p += 1
    q = p + n - 1
    for j in range(n):
        d = v & 15
        out[q - j] = 48 + d if d < 10 else 87 + d
        v >>= 4
    return p + n


@njit(cache=True, nogil=True, inline="always")
def _hash_ptr(pfn):
    # stands in for the kernel's siphash of %p (4.15+): stable, 32 bits, looks like real output
    x = pfn & 0x7FFFFFFF
    return ((x * 2654435761) + (pfn >> 31) * 40503 + 0x2545F491) & 0xFFFFFFFF


# literal pieces of the lines, by index (a Texts.lits table)
_LIT_TEXT = (
    " page=", " pfn=", " order=", " migratetype=", " gfp_flags=", " percpu_refill=", " cold=", " alloc_order=",
    " fallback_order=", " pageblock_order=", " alloc_migratetype=", " fallback_migratetype=", " fragmenting=",
    " change_ownership=", "(null)", "0000000000000000", "0x", "ffffea", "00000000",
)  # fmt: skip
(
    L_PAGE, L_PFN, L_ORDER, L_MT, L_GFP, L_PCP, L_COLD, L_AORDER, L_FORDER, L_PBORDER, L_AMT, L_FMT, L_FRAG, L_CHOWN,
    L_NULL, L_NULL_PTR, L_0X, L_VMEMMAP, L_HASH_HIGH,
) = range(len(_LIT_TEXT))  # fmt: skip

#: one batch of the canonical table as int64 arrays, nulls filled (``_Renderer.batch``); ``comm`` and
#: ``gfp`` index the batch's string tables (gfp -1: none), ``ev`` is the ``Event`` code
Rows = namedtuple(
    "Rows",
    ("ts", "cpu", "pid", "tgid", "comm", "ev", "pfn", "order", "mt", "gfp", "pcp", "failed", "forder", "pborder",
     "fmt_mt", "chown", "cold"),
)  # fmt: skip
#: strings by index: their bytes one after the other, offsets and lengths (``_string_table``)
Strings = namedtuple("Strings", ("bytes", "off", "len"))
#: the string tables a batch is written with: comms and gfp texts of the batch, event names and
#: flags columns per ``Event`` code, and the literal pieces (``L_*``)
Texts = namedtuple("Texts", ("comm", "gfp", "names", "flags", "lits"))
#: format and era codes, the irq-info and tgid columns, the width of pids and of perf's event names
Style = namedtuple("Style", ("fmt", "era", "irq_info", "record_tgid", "pid_w", "name_w"))

_FTRACE, _TRACE_CMD, _PERF = 0, 1, 2  # Style.fmt
_ERA_A, _ERA_B, _ERA_C, _ERA_D = 0, 1, 2, 3  # Style.era
_ALLOC = int(Event.MM_PAGE_ALLOC)
_ZONE_LOCKED = int(Event.MM_PAGE_ALLOC_ZONE_LOCKED)
_FREE = int(Event.MM_PAGE_FREE)
_BATCHED = int(Event.MM_PAGE_FREE_BATCHED)
_EXTFRAG = int(Event.MM_PAGE_ALLOC_EXTFRAG)


@njit(cache=True, nogil=True, inline="always")
def _str(out, p, tab, k):
    """String ``k`` of table ``tab``."""
    return _put(out, p, tab.bytes, tab.off[k], tab.len[k])


@njit(cache=True, nogil=True, inline="always")
def _page_field(out, p, st, pfn, failed, lits):
    """``page=`` value (after the literal ``page=``)."""
    if failed:
        if st.fmt != _FTRACE:
            p = _str(out, p, lits, L_0X)
            out[p] = 48
            return p + 1
        if st.era <= _ERA_B:
            return _str(out, p, lits, L_NULL)
        return _str(out, p, lits, L_NULL_PTR)
    if st.era == _ERA_A:  # struct page * in the record: the raw vmemmap address
        if st.fmt != _FTRACE:
            p = _str(out, p, lits, L_0X)
        p = _str(out, p, lits, L_VMEMMAP)
        return _put_hex(out, p, pfn * 64, 10)
    if st.fmt == _FTRACE:  # hashed %p
        p = _str(out, p, lits, L_HASH_HIGH)
        return _put_hex(out, p, _hash_ptr(pfn), 8)
    p = _str(out, p, lits, L_0X)
    if st.fmt == _TRACE_CMD and st.era >= _ERA_C:
        low = 0x88815730 + pfn
        hi = (0xFFFFFFFF + (low >> 32)) & 0xFFFFFFFF
        p = _put_hex(out, p, hi, 8)
        return _put_hex(out, p, low & 0xFFFFFFFF, 8)
    return _put_hex(out, p, pfn, 0)


@njit(cache=True, nogil=True, inline="always")
def _pfn_field(out, p, era, pfn, failed, lits):
    v = 0 if failed else pfn
    if era >= _ERA_C:
        p = _str(out, p, lits, L_0X)
        return _put_hex(out, p, v, 0)
    return _put_uint(out, p, v, 0, False)


@njit(cache=True, nogil=True, inline="always")
def _prefix(out, p, st, r, tx, i):
    """The line prefix of row ``i`` up to and including the event name and its colon."""
    c = r.comm[i]
    e = r.ev[i]
    p = _spaces(out, p, 16 - tx.comm.len[c])
    p = _str(out, p, tx.comm, c)
    if st.fmt == _PERF:
        out[p] = 32
        p += 1
        p = _put_int_right(out, p, r.pid[i], 5)
    else:
        out[p] = 45
        p += 1
        p = _put_int_left(out, p, r.pid[i], st.pid_w)
        if st.fmt == _FTRACE and st.record_tgid:
            out[p] = 32
            out[p + 1] = 40
            p += 2
            if r.tgid[i] < 0:
                for j in range(st.pid_w):
                    out[p] = 45
                    p += 1
            else:
                p = _put_int_right(out, p, r.tgid[i], st.pid_w)
            out[p] = 41
            p += 1
    out[p] = 32
    out[p + 1] = 91
    p += 2
    p = _put_uint(out, p, r.cpu[i], 3, True)
    out[p] = 93
    p += 1
    if st.fmt == _FTRACE:
        out[p] = 32
        p += 1
        if st.irq_info:
            p = _str(out, p, tx.flags, e)
    out[p] = 32
    p += 1
    t = r.ts[i]
    p = _put_uint(out, p, t // 1000000000, 5, False)
    out[p] = 46
    p += 1
    p = _put_uint(out, p, (t % 1000000000) // 1000, 6, True)
    out[p] = 58
    out[p + 1] = 32
    p += 2
    if st.fmt == _PERF:
        p = _spaces(out, p, st.name_w - tx.names.len[e])
    p = _str(out, p, tx.names, e)
    out[p] = 58
    p += 1
    if st.fmt == _TRACE_CMD:
        p = _spaces(out, p, 20 - tx.names.len[e])
    return p


@njit(cache=True, nogil=True, inline="always")
def _fields(out, p, st, r, tx, i):
    """The ``TP_printk`` fields of row ``i``."""
    e = r.ev[i]
    lits = tx.lits
    fail = r.failed[i] != 0 or r.pfn[i] < 0
    f = max(r.pfn[i], 0)
    p = _str(out, p, lits, L_PAGE)
    p = _page_field(out, p, st, f, fail, lits)
    p = _str(out, p, lits, L_PFN)
    p = _pfn_field(out, p, st.era, f, fail, lits)
    if e == _EXTFRAG:
        p = _str(out, p, lits, L_AORDER)
        p = _put_int(out, p, r.order[i])
        p = _str(out, p, lits, L_FORDER)
        p = _put_int(out, p, r.forder[i])
        p = _str(out, p, lits, L_PBORDER)
        p = _put_int(out, p, r.pborder[i])
        p = _str(out, p, lits, L_AMT)
        p = _put_int(out, p, r.mt[i])
        p = _str(out, p, lits, L_FMT)
        p = _put_int(out, p, r.fmt_mt[i])
        p = _str(out, p, lits, L_FRAG)
        if st.fmt != _FTRACE and st.era == _ERA_D:
            p = _put_int(out, p, 10 if r.forder[i] >= 1 else 9)
        else:
            p = _put_int(out, p, 1 if r.forder[i] < r.pborder[i] else 0)
        p = _str(out, p, lits, L_CHOWN)
        if st.era == _ERA_A:
            return _put_int(out, p, 1 if r.mt[i] == r.fmt_mt[i] else 0)
        return _put_int(out, p, r.chown[i])
    p = _str(out, p, lits, L_ORDER)
    p = _put_int(out, p, 0 if e == _BATCHED else r.order[i])
    if e == _BATCHED:
        if st.era == _ERA_A:
            p = _str(out, p, lits, L_COLD)
            p = _put_int(out, p, r.cold[i])
        return p
    if e == _FREE:
        return p
    p = _str(out, p, lits, L_MT)  # alloc, zone_locked, drain
    p = _put_int(out, p, r.mt[i])
    if e == _ALLOC:
        p = _str(out, p, lits, L_GFP)
        g = r.gfp[i]
        if g >= 0:
            return _str(out, p, tx.gfp, g)
        out[p] = 110  # "none"
        out[p + 1] = 111
        out[p + 2] = 110
        out[p + 3] = 101
        return p + 4
    if e == _ZONE_LOCKED:
        p = _str(out, p, lits, L_PCP)
        return _put_int(out, p, (1 if r.order[i] == 0 else 0) if st.era <= _ERA_C else r.pcp[i])
    return p


@njit(cache=True, nogil=True, _nrt=False)
def write_lines(out, st, rows, texts, start, stop):
    """Write rows [start, stop) into ``out`` in style ``st``; returns (rows written, bytes written).

    Stops early when fewer than 512 bytes + the row's strings are left.  (Compiled without numba's
    reference counting: every read of an array out of ``rows`` or ``texts`` would otherwise count.)
    """
    p = 0
    cap = out.shape[0]
    i = start
    while i < stop:
        g = rows.gfp[i]
        need = 512 + texts.comm.len[rows.comm[i]] + (texts.gfp.len[g] if g >= 0 else 0)
        if p + need > cap:
            break
        p = _prefix(out, p, st, rows, texts, i)
        p = _fields(out, p, st, rows, texts, i)
        out[p] = 10
        p += 1
        i += 1
    return i, p


# ----------------------------------------------------------------------------- Python side
def _string_table(strings: list[str] | tuple[str, ...]) -> Strings:
    raw = [s.encode() for s in strings]
    lens = np.array([len(r) for r in raw] or [0], np.int64)
    offs = np.zeros_like(lens)
    if len(raw) > 1:
        offs[1:] = np.cumsum(lens[:-1])
    buf = np.frombuffer(b"".join(raw) + b"\0", np.uint8).copy()
    return Strings(buf, offs, lens)


_LITS = _string_table(_LIT_TEXT)


def _event_names(opts: RenderOptions) -> list[str]:
    names = []
    for e in Event:
        n = e.tracepoint
        if opts.legacy_names and e in _LEGACY_NAMES:
            n = _LEGACY_NAMES[e]
        names.append("kmem:" + n if opts.fmt == "perf" else n)
    return names


def _flags(opts: RenderOptions) -> list[str]:
    w = 5 if opts.era in ("C", "D") else 4
    return [EVENT_FLAGS[e][:w] for e in Event]


_EVENT_CODE_BY_NAME = {**{k: int(v) for k, v in EVENT_BY_NAME.items()}, **{k: int(v) for k, v in EVENT_ALIASES.items()}}


def _dict_column(col: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, list[str]]:
    """(int32 indices with -1 for null, dictionary strings) of a string or dictionary column."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if not pa.types.is_dictionary(col.type):
        col = col.dictionary_encode()
    idx = col.indices.to_numpy(zero_copy_only=False) if col.null_count == 0 else pc.fill_null(col.indices, -1).to_numpy()
    return idx.astype(np.int32), col.dictionary.to_pylist()


def _int(col, fill: int, dtype=np.int64) -> np.ndarray:
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if pa.types.is_boolean(col.type):
        col = col.cast(pa.int8())
    if col.null_count:
        col = pc.fill_null(col, fill)
    return np.asarray(col.to_numpy(zero_copy_only=False)).astype(dtype, copy=False)


def _rows(rb: pa.RecordBatch | pa.Table) -> tuple[Rows, list[str], list[str]]:
    """The columns of a batch the writer reads, and the batch's comm and gfp dictionaries."""
    comm_idx, comm_dict = _dict_column(rb.column("comm"))
    gfp_idx, gfp_dict = _dict_column(rb.column("gfp_flags"))
    ev_idx, ev_dict = _dict_column(rb.column("event"))
    try:
        ev_map = np.array([_EVENT_CODE_BY_NAME[s] for s in ev_dict] or [0], np.int64)
    except KeyError as exc:
        raise ValueError(f"unknown event {exc.args[0]!r} in the table") from None
    ts = _int(rb.column("ts_ns"), 0)
    if (ts < 0).any():
        raise ValueError("negative timestamps cannot be printed as %5lu.%06lu")
    rows = Rows(
        ts=ts,
        cpu=_int(rb.column("cpu"), 0),
        pid=_int(rb.column("pid"), 0),
        tgid=_int(rb.column("tgid"), -1),
        comm=comm_idx.astype(np.int64),
        ev=ev_map[ev_idx],
        pfn=_int(rb.column("pfn"), -1),
        order=_int(rb.column("order"), 0),
        mt=_int(rb.column("migratetype"), 0),
        gfp=gfp_idx.astype(np.int64),
        pcp=_int(rb.column("percpu_refill"), 0),
        failed=_int(rb.column("failed"), 0),
        forder=_int(rb.column("fallback_order"), 0),
        pborder=_int(rb.column("pageblock_order"), 9),
        fmt_mt=_int(rb.column("fallback_migratetype"), 0),
        chown=_int(rb.column("change_ownership"), 0),
        cold=_int(rb.column("cold"), 0),
    )
    return rows, comm_dict, gfp_dict


class _Renderer:
    def __init__(self, opts: RenderOptions) -> None:
        self.opts = opts
        self.names = _string_table(_event_names(opts))
        self.flags = _string_table(_flags(opts))
        pid_w = 7 if (opts.fmt == "ftrace" and opts.era in ("C", "D")) else 5
        self.style = Style(_FMT_CODE[opts.fmt], _ERA_CODE[opts.era], opts.irq_info, opts.record_tgid, pid_w,
                           PERF_EVENT_WIDTH)  # fmt: skip
        self.workers = max(1, opts.workers)
        self._free: list[np.ndarray] = []  # render buffers (list.pop/append are atomic)

    def batch(self, rb: pa.RecordBatch | pa.Table, sink: BinaryIO) -> int:
        """Write the lines of ``rb`` to ``sink``; returns the bytes written."""
        n = rb.num_rows
        if n == 0:
            return 0
        rows, comm_dict, gfp_dict = _rows(rb)
        texts = Texts(_string_table(comm_dict), _string_table(gfp_dict), self.names, self.flags, _LITS)
        maxstr = int(texts.comm.len.max(initial=0)) + int(texts.gfp.len.max(initial=0)) + 512
        step = 1 << 15
        size = step * 160 + maxstr

        def piece(lo: int, hi: int) -> list[tuple[np.ndarray, int]]:
            # the compiled writer releases the GIL: pieces render in parallel, in order on output;
            # buffers come from a free list and go back once written (no copies, no page faults)
            out = []
            i = lo
            while i < hi:
                try:
                    buf = self._free.pop()
                except IndexError:
                    buf = np.empty(size, np.uint8)
                if buf.shape[0] < size:
                    buf = np.empty(size, np.uint8)
                j, nbytes = write_lines(buf, self.style, rows, texts, i, hi)
                if j == i:
                    raise RuntimeError("render buffer too small for one line")
                out.append((buf, nbytes))
                i = j
            return out

        def drain(parts: list[tuple[np.ndarray, int]]) -> int:
            k = 0
            for buf, nbytes in parts:
                sink.write(memoryview(buf)[:nbytes])
                k += nbytes
                self._free.append(buf)
            return k

        ranges = [(lo, min(n, lo + step)) for lo in range(0, n, step)]
        total = 0
        if self.workers <= 1 or len(ranges) == 1:
            for lo, hi in ranges:
                total += drain(piece(lo, hi))
            return total
        pending: collections.deque = collections.deque()
        with cf.ThreadPoolExecutor(self.workers) as pool:
            for lo, hi in ranges:
                pending.append(pool.submit(piece, lo, hi))
                while len(pending) > 2 * self.workers:
                    total += drain(pending.popleft().result())
            while pending:
                total += drain(pending.popleft().result())
        return total

    def header(self, n_events: int, nr_cpus: int) -> str:
        o = self.opts
        if o.fmt == "trace-cmd":
            return f"cpus={nr_cpus}\n" if o.header else ""
        if o.fmt != "ftrace" or not o.header:
            return ""
        h = ["# tracer: nop", "#", f"# entries-in-buffer/entries-written: {n_events}/{n_events}   #P:{nr_cpus}", "#"]
        tg = " (TGID)  " if o.record_tgid else ""
        if not o.irq_info:
            if o.era in ("C", "D"):
                h += [f"#           TASK-PID    {tg} CPU#     TIMESTAMP  FUNCTION", f"#              | |      {' ' * len(tg)}   |         |         |"]
            else:
                h += [f"#           TASK-PID  {tg} CPU#      TIMESTAMP  FUNCTION", f"#              | |    {' ' * len(tg)}   |          |         |"]
        elif o.era in ("C", "D"):
            pad = " " * len(tg)
            h += [
                f"#                          {pad}      _-----=> irqs-off/BH-disabled",
                f"#                          {pad}     / _----=> need-resched",
                f"#                          {pad}    | / _---=> hardirq/softirq",
                f"#                          {pad}    || / _--=> preempt-depth",
                f"#                          {pad}    ||| / _-=> migrate-disable",
                f"#                          {pad}    |||| /     delay",
                f"#           TASK-PID    {tg} CPU#  |||||  TIMESTAMP  FUNCTION",
                f"#              | |      {pad}   |   |||||     |         |",
            ]
        else:
            pad = " " * len(tg)
            h += [
                f"#                        {pad}      _-----=> irqs-off",
                f"#                        {pad}     / _----=> need-resched",
                f"#                        {pad}    | / _---=> hardirq/softirq",
                f"#                        {pad}    || / _--=> preempt-depth",
                f"#                        {pad}    ||| /     delay",
                f"#           TASK-PID  {tg} CPU#  ||||    TIMESTAMP  FUNCTION",
                f"#              | |    {pad}   |   ||||       |         |",
            ]
        return "\n".join(h) + "\n"


def _batches(source: pa.Table | pa.RecordBatch | Iterable[pa.RecordBatch], chunk_rows: int) -> Iterator[pa.RecordBatch]:
    if isinstance(source, pa.RecordBatch):
        source = pa.Table.from_batches([source])
    if isinstance(source, pa.Table):
        yield from source.to_batches(max_chunksize=chunk_rows)
        return
    for b in source:
        if isinstance(b, pa.Table):
            yield from b.to_batches(max_chunksize=chunk_rows)
        else:
            yield b


def render(
    source: pa.Table | pa.RecordBatch | Iterable[pa.RecordBatch],
    sink: BinaryIO | str | os.PathLike[str],
    opts: RenderOptions | None = None,
    *,
    n_events: int | None = None,
    nr_cpus: int | None = None,
    **kw,
) -> int:
    """Render a canonical table (or a stream of record batches) as text into ``sink``; returns bytes written.

    ``sink`` is a binary file object or a path.  For a stream of batches the ftrace ``trace``
    header needs ``n_events`` and ``nr_cpus`` up front (a table provides them).  Extra keyword
    arguments build :class:`RenderOptions`.
    """
    opts = opts or RenderOptions(**kw)
    if isinstance(source, (pa.Table, pa.RecordBatch)):
        n_events = source.num_rows if n_events is None else n_events
        if nr_cpus is None and opts.nr_cpus is None and source.num_rows:
            nr_cpus = int(pc.max(source.column("cpu")).as_py()) + 1
    nr_cpus = opts.nr_cpus or nr_cpus or 1
    r = _Renderer(opts)
    if isinstance(sink, (str, os.PathLike)):
        with open(sink, "wb") as f:
            return render(source, f, opts, n_events=n_events, nr_cpus=nr_cpus)
    head = r.header(n_events if n_events is not None else 0, nr_cpus)
    if head and opts.fmt == "ftrace" and n_events is None:
        raise ValueError("the ftrace `trace` header needs n_events (or render a table, or header=False)")
    total = 0
    if head:
        b = head.encode()
        sink.write(b)
        total += len(b)
    for rb in _batches(source, opts.chunk_rows):
        total += r.batch(rb, sink)
    return total


def render_text(table: pa.Table, **kw) -> str:
    """The whole rendering as one string (tests, small tables)."""
    bio = io.BytesIO()
    render(table, bio, **kw)
    return bio.getvalue().decode()


# ----------------------------------------------------------------------------- round trip
def as_rendered(table: pa.Table, opts: RenderOptions | None = None, **kw) -> pa.Table:
    """The table ``parse(render(table, opts))`` gives back, column for column.

    Applies what the text cannot carry or what the era computes instead of recording:
    timestamps truncated to microseconds, ``tgid`` null unless ftrace ``record_tgid``,
    ``percpu_refill`` = order==0 before era D, ``cold`` only in era A (0 when null),
    ``change_ownership`` = alloc_mt == fallback_mt in era A, ``fragmenting`` as the kernel defines it, failed
    allocations with a null pfn, ``gfp_mask`` decoded from the text, and fields an event does
    not print set to null, ``seq`` the row position.  ``source_file``/``line`` are left as they
    are: compare without them.  (A comm starting with ``#`` would read back as a comment line.)
    """
    import polars as pl

    opts = opts or RenderOptions(**kw)
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    ev = pl.col("event").cast(pl.String)
    is_ = lambda e: ev == e.tracepoint  # noqa: E731
    alloc, zl, free, bat, drain, xf = (is_(e) for e in Event)
    ev_out = ev  # legacy names (mm_page_free_direct, mm_pagevec_free) parse back to today's
    failed = alloc & (pl.col("failed") | pl.col("pfn").is_null() | (pl.col("pfn") <= 0))
    has_mt = alloc | zl | drain | xf
    era = opts.era
    pcp = (
        pl.when(zl).then(pl.col("order") == 0 if era != "D" else pl.col("percpu_refill").fill_null(False)).otherwise(None)
    )
    # the kernel's definition; the parser recomputes it where libtraceevent printed 10 (era D perf/trace-cmd)
    frag = pl.when(xf).then(pl.col("fallback_order") < pl.col("pageblock_order").fill_null(9))
    chown = pl.when(xf).then(
        (pl.col("migratetype") == pl.col("fallback_migratetype")) if era == "A" else pl.col("change_ownership").fill_null(False)
    )
    out = df.with_columns(
        ((pl.col("ts_ns") // 1000) * 1000).alias("ts_ns"),
        (pl.col("tgid") if (opts.fmt == "ftrace" and opts.record_tgid) else pl.lit(None, pl.Int32)).alias("tgid"),
        ev_out.alias("event"),
        pl.when(failed).then(None).otherwise(pl.col("pfn").fill_null(0)).alias("pfn"),
        pl.when(bat).then(0).otherwise(pl.col("order")).cast(pl.Int8).alias("order"),
        pl.when(has_mt).then(pl.col("migratetype").fill_null(0)).otherwise(None).cast(pl.Int8).alias("migratetype"),
        pl.when(alloc).then(pl.col("gfp_flags").cast(pl.String).fill_null("none")).otherwise(None).alias("gfp_flags"),
        pcp.alias("percpu_refill"),
        failed.alias("failed"),
        pl.when(xf).then(pl.col("fallback_order").fill_null(0)).cast(pl.Int8).alias("fallback_order"),
        pl.when(xf).then(pl.col("pageblock_order").fill_null(9)).cast(pl.Int8).alias("pageblock_order"),
        pl.when(xf).then(pl.col("fallback_migratetype").fill_null(0)).cast(pl.Int8).alias("fallback_migratetype"),
        frag.alias("fragmenting"),
        chown.alias("change_ownership"),
        pl.when(bat & pl.lit(era == "A")).then(pl.col("cold").fill_null(False)).otherwise(None).alias("cold"),
        pl.int_range(pl.len(), dtype=pl.Int64).alias("seq"),  # the parser numbers lines in output order
    )
    gfps = out.get_column("gfp_flags")
    masks = {s: decode_gfp(s) for s in gfps.unique().drop_nulls().to_list()}
    out = out.with_columns(pl.col("gfp_flags").replace_strict(masks, default=None, return_dtype=pl.UInt64).alias("gfp_mask"))
    res = out.to_arrow()
    cols = []
    schema = arrow_schema()
    for f in schema:
        c = res.column(f.name)
        if pa.types.is_dictionary(f.type):
            c = pc.cast(c, pa.string()).dictionary_encode()
            c = c.cast(f.type) if not isinstance(c, pa.ChunkedArray) else pa.chunked_array([x.cast(f.type) for x in c.chunks], f.type)
        else:
            c = c.cast(f.type)
        cols.append(c)
    return pa.Table.from_arrays(cols, schema=schema)


__all__ = ["ERAS", "ERA_KERNELS", "FORMATS", "RenderOptions", "as_rendered", "render", "render_text"]
