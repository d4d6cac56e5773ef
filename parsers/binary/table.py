"""Binary records -> the canonical event table, filled exactly as the text parsers fill it.

Each kmem record is decoded through its event's print fmt (``tpformat``): a column takes the
value the text would show for the same ``key=`` (``order`` or ``alloc_order``, ``migratetype``
or ``alloc_migratetype``, ``percpu_refill``, ``fallback_order``, ``pageblock_order``,
``fallback_migratetype``, ``fragmenting``, ``change_ownership``, ``cold``, ``pfn``, the
``gfp_flags`` text), so what follows is the text parser's logic over those values: a
``mm_page_alloc`` whose pfn shows as 0 (or -1) is a failed allocation with a null pfn,
``fragmenting`` is ``fallback_order < pageblock_order`` when both are known, a key the event
does not print is null (``order`` 0), values outside int8 are malformed.  What the binary adds:
full-precision timestamps, ``gfp_mask`` as recorded (the raw ``gfp_flags`` field, in the traced
kernel's own bit layout) and, for perf, ``tgid``.

``line`` is the 1-based ordinal of the record in the file (trace.dat: data records of the
ring buffer, CPU sections in CPU order; perf.data: PERF_RECORD_SAMPLE records in file order)
and ``seq`` the input order of the parsed events, so (ts_ns, cpu, seq) orders them as the text
path does: at equal timestamps the lower CPU first, then the ring buffer's own order.

Accounting is per record instead of per line: ``lines_total`` counts the event records,
``lines_parsed`` the kmem events decoded, ``lines_other_event`` the other events (by name) and
``lines_malformed`` records that could not be decoded (unknown event id, cut short, out of
range); ``lines_comment`` is 0, so parsed + other + malformed = total.  The file's entry adds a
``binary`` dict with what only a binary knows (record kinds, lost events per CPU, clock, kernel
version...).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from ..accounting import FileAccounting
from ..arrow_columns import _bool_column, _column, _nulls
from ..errors import TraceFormatError
from ..scan.codes import LINES_PFN_DEC, LINES_PFN_HEX, LINES_TS_COUNTER, LINES_TS_DECIMAL
from ..schema import EVENT_ALIASES, EVENT_BY_NAME, EVENT_NAMES, event_dictionary
from . import aot
from .kernels import PlanArrays
from .tpformat import Evaluator, EventFormat, Field, Unevaluable, parse_expr

_EVENT_DICT = event_dictionary()
PIECE_ROWS = 1 << 16  # rows per yielded piece (one Parquet row group each, as the text path's blocks)


class BinaryFileAccounting(FileAccounting):
    """A file's accounting, with the binary-only facts under ``binary``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.binary: dict[str, Any] = {}

    def as_dict(self) -> dict[str, Any]:
        d = super().as_dict()
        d["unit"] = "records"
        d["binary"] = self.binary
        return d


# ------------------------------------------------------------------------------------ field reads
def read_field(buf: np.ndarray, pos: np.ndarray, size: int, signed: bool, le: bool, compiled: bool = True) -> np.ndarray:
    """The ``size``-byte integers at byte offsets ``pos``, sign- or zero-extended to int64."""
    if size not in (1, 2, 4, 8):
        raise Unevaluable(f"field of {size} bytes")
    n = len(pos)
    if n == 0:
        return np.zeros(0, np.int64)
    k = aot.get() if compiled and n > 64 else None
    if k is not None:
        if int(pos.min()) < 0 or int(pos.max()) + size > len(buf):
            raise IndexError("field outside the buffer")
        return k.gather(aot.ro(buf), aot.ro(pos, np.int64), size, signed, le)
    if size == 1:
        v = buf.take(pos)
        return v.view(np.int8).astype(np.int64) if signed else v.astype(np.int64)
    bo = "<" if le else ">"
    if not np.any(pos & (size - 1)):
        view = np.frombuffer(buf.data, dtype=f"{bo}{'i' if signed else 'u'}{size}", count=len(buf) // size)
        v = view.take(pos // size)  # (in the file's byte order: astype converts, view would not)
        return v.astype(np.uint64).view(np.int64) if size == 8 and not signed else v.astype(np.int64)
    if size == 8 and not np.any(pos & 3):
        w = np.frombuffer(buf.data, dtype=f"{bo}u4", count=len(buf) // 4)
        i = pos >> 2
        lo = w.take(i).astype(np.uint64)
        hi = w.take(i + 1).astype(np.uint64)
        if not le:
            lo, hi = hi, lo
        return (lo | (hi << np.uint64(32))).view(np.int64)
    out = np.zeros(n, np.uint64)
    for j in range(size):
        out |= buf.take(pos + j).astype(np.uint64) << np.uint64(8 * j if le else 8 * (size - 1 - j))
    if signed and size < 8:
        bits = 8 * size
        sv = out.view(np.int64)
        return np.where(sv >= (1 << (bits - 1)), sv - (1 << bits), sv)
    return out.view(np.int64)


# ------------------------------------------------------------------------------------ decoders
_NUM_KEYS = {  # canonical column -> printed keys, as the text scanner reads them
    "pfn": ("pfn",),
    "order": ("order", "alloc_order"),
    "mt": ("migratetype", "alloc_migratetype"),
    "pcp": ("percpu_refill",),
    "forder": ("fallback_order",),
    "pborder": ("pageblock_order",),
    "fmt": ("fallback_migratetype",),
    "frag": ("fragmenting",),
    "chown": ("change_ownership",),
    "cold": ("cold",),
}
_REQUIRED = {  # what each event must print (the text scanner's REQUIRED table)
    "mm_page_alloc": ("pfn", "order", "mt", "gfp"),
    "mm_page_alloc_zone_locked": ("pfn", "order", "mt"),
    "mm_page_free": ("pfn", "order"),
    "mm_page_free_batched": ("pfn",),
    "mm_page_pcpu_drain": ("pfn", "order", "mt"),
    "mm_page_alloc_extfrag": ("pfn", "order", "mt", "forder", "fmt"),
}
_INT8_COLS = ("order", "mt", "pcp", "forder", "pborder", "fmt", "frag", "chown", "cold")
_MINUS1: list[np.ndarray] = []


def _minus1(m: int) -> np.ndarray:
    """A read-only array of -1 (the column of a key no event of the piece prints)."""
    if not _MINUS1 or len(_MINUS1[0]) < m:
        a = np.full(max(m, 1 << 16), -1, np.int64)
        a.flags.writeable = False
        _MINUS1[:] = [a]
    return _MINUS1[0][:m]


_COL_NAMES = {"mt": "migratetype", "gfp": "gfp_flags", "forder": "fallback_order", "fmt": "fallback_migratetype"}


def _fields_of(e, out: set[str]) -> None:
    if isinstance(e, tuple):
        if e and e[0] == "field":
            out.add(e[1])
        for x in e[1:]:
            if isinstance(x, (tuple, list)):
                _fields_of(x, out)
    elif isinstance(e, list):
        for x in e:
            _fields_of(x, out)


class _EventDecoder:
    """How one kmem event's columns come from its raw fields: the print fmt argument of each
    printed key, over the fields it reads (``used``, in the order of the plan's columns)."""

    def __init__(self, fmt: EventFormat, long_size: int) -> None:
        self.fmt = fmt
        self.long_size = long_size
        keys = fmt.printed_keys()
        self.plan: dict[str, Any] = {}
        self.problem: str | None = None
        self.hex_pfn = False
        for col, names in _NUM_KEYS.items():
            for nm in names:
                k = keys.get(nm)
                if k is None:
                    continue
                if k.arg is None:  # a literal ("order=0"); neither: a print fmt short of arguments
                    try:
                        self.plan[col] = ("const", int(k.literal or "", 0))
                    except ValueError:
                        continue
                else:
                    try:
                        self.plan[col] = ("expr", parse_expr(k.arg))
                    except Unevaluable as e:
                        self.plan[col] = ("bad", str(e))
                if col == "pfn":
                    self.hex_pfn = k.hex
                break
        gk = keys.get("gfp_flags")
        if gk is not None and gk.arg is not None:
            try:
                self.plan["gfp"] = ("text", parse_expr(gk.arg))
            except Unevaluable as e:
                self.plan["gfp"] = ("bad", str(e))
        need = _REQUIRED.get(fmt.name if fmt.name in _REQUIRED else _alias(fmt.name), ())
        missing = [c for c in need if c not in self.plan or self.plan[c][0] == "bad"]
        if missing:
            self.problem = f"the {fmt.name} format (ID {fmt.id}) prints no usable " + ", ".join(
                _COL_NAMES.get(m, m) for m in missing)
        used: set[str] = set()
        for v in self.plan.values():
            if v[0] in ("expr", "text"):
                _fields_of(v[1], used)
        if "gfp" in self.plan and "gfp_flags" in fmt.fields:
            used.add("gfp_flags")  # gfp_mask: the raw field
        bad_fields = [f for f in sorted(used) if f not in fmt.fields or fmt.fields[f].dynamic
                      or fmt.fields[f].array is not None or fmt.fields[f].size not in (1, 2, 4, 8)]
        if bad_fields and self.problem is None:
            self.problem = f"the {fmt.name} print fmt reads REC->{bad_fields[0]}, which the format does not hold as a number"
        self.used: list[Field] = [fmt.fields[f] for f in sorted(used) if f not in bad_fields]
        self.col_of = {f.name: j for j, f in enumerate(self.used)}
        self.need_bytes = max((f.end for f in self.used), default=0)

    def getter(self, vals: np.ndarray, rows: np.ndarray):
        """``REC->name`` of the records ``rows`` (indices into ``vals``' columns)."""
        cache: dict[str, np.ndarray] = {}

        def get(name: str) -> np.ndarray:
            v = cache.get(name)
            if v is None:
                j = self.col_of.get(name)
                if j is None:
                    raise Unevaluable(f"REC->{name}")
                v = cache[name] = vals[j].take(rows)
            return v

        return get

    def decode(self, vals: np.ndarray, rows: np.ndarray) -> dict[str, np.ndarray]:
        """The numeric columns of ``rows`` (int64; the raw gfp field as ``gfp_raw``)."""
        get = self.getter(vals, rows)
        ev = Evaluator(get, self.long_size)
        n = len(rows)
        out: dict[str, np.ndarray] = {}
        for col, (kind, arg) in self.plan.items():
            if kind == "const":
                out[col] = np.full(n, arg, np.int64)
            elif kind == "expr":
                v = ev.num(arg)  # (evaluable: ``check`` ran first)
                out[col] = v if isinstance(v, np.ndarray) else np.full(n, int(v), np.int64)
        if "gfp" in self.plan and "gfp_flags" in self.col_of:
            out["gfp_raw"] = get("gfp_flags")
        return out

    def check(self, vals: np.ndarray, rows: np.ndarray) -> str | None:
        """Why the print fmt cannot be evaluated (on one record), or None."""
        try:
            self.decode(vals, rows[:1])
            if "gfp" in self.plan:
                res = self.gfp_texts(vals, rows[:1])
                if isinstance(res[0], str):
                    return res[1]
        except Unevaluable as e:
            return str(e)
        return None

    def gfp_texts(self, vals: np.ndarray, rows: np.ndarray):
        """(codes, texts) of the gfp_flags text, evaluated once per distinct input, or ("bad", why)."""
        expr = self.plan["gfp"][1]
        get = self.getter(vals, rows)
        names: set[str] = set()
        _fields_of(expr, names)
        names_l = sorted(names)
        n = len(rows)
        try:
            cols = [get(nm) for nm in names_l]
        except Unevaluable as e:
            return ("bad", str(e))
        env: dict[str, int] = {}
        ev = Evaluator(lambda nm: env[nm], self.long_size)
        if not cols:
            try:
                return (np.zeros(n, np.int64), [ev.text(expr)])
            except (Unevaluable, KeyError) as e:
                return ("bad", str(e))
        if len(cols) == 1:
            uniq, inv = np.unique(cols[0], return_inverse=True)
            keys = [(int(u),) for u in uniq.tolist()]
        else:
            uniq2, inv = np.unique(np.stack(cols, axis=1), axis=0, return_inverse=True)
            keys = [tuple(int(x) for x in r) for r in uniq2.tolist()]
        texts = []
        for r in keys:
            env.clear()
            env.update(zip(names_l, r))
            try:
                texts.append(ev.text(expr))
            except (Unevaluable, KeyError) as e:
                return ("bad", str(e))
        return (inv.reshape(-1).astype(np.int64), texts)


def _alias(name: str) -> str:
    ev = EVENT_ALIASES.get(name)
    return ev.tracepoint if ev is not None else name


def kmem_code(fmt: EventFormat) -> int | None:
    """The Event code of a kmem page-allocator format, or None."""
    if fmt.system not in ("kmem", ""):
        return None
    ev = EVENT_BY_NAME.get(fmt.name)
    if ev is None:  # (not "or": MM_PAGE_ALLOC is 0)
        ev = EVENT_ALIASES.get(fmt.name)
    return int(ev) if ev is not None else None


class Plan:
    """What to read from each record: the event header, and each kmem event's raw fields.

    ``hdr`` = (common_type offset, size, common_pid offset, size); per decoded event id, a row of
    ``plan`` lists its fields ``(offset, size, signed)`` in the order of its decoder's columns.
    The readers fill ``vals[j, i]`` with field j of record i (``kernels._decode`` or
    ``decode_numpy``).
    """

    def __init__(self, formats: dict[int, EventFormat], long_size: int) -> None:
        self.formats = formats
        ct = next((f.fields["common_type"] for f in formats.values() if "common_type" in f.fields), None)
        cp = next((f.fields["common_pid"] for f in formats.values() if "common_pid" in f.fields), None)
        self.cp_signed = cp.signed if cp is not None else True
        self.hdr = np.array([ct.offset if ct else 0, ct.size if ct else 2, cp.offset if cp else 4, cp.size if cp else 4],
                            np.int64)
        self.decoders: dict[int, _EventDecoder] = {}
        self.problems: dict[int, str] = {}
        for eid, fmt in formats.items():
            if kmem_code(fmt) is None or not 0 <= eid < (1 << 16):
                continue
            dec = _EventDecoder(fmt, long_size)
            if dec.problem is not None:
                self.problems[eid] = dec.problem
            else:
                self.decoders[eid] = dec
        ids = sorted(self.decoders)
        nf = max((len(self.decoders[i].used) for i in ids), default=0)
        self.nf = max(nf, 1)
        self.id2plan = np.full((ids[-1] + 1) if ids else 1, -1, np.int64)
        self.plan = np.zeros((max(len(ids), 1), self.nf, 3), np.int64)
        self.plan_nf = np.zeros(max(len(ids), 1), np.int64)
        self.plan_need = np.zeros(max(len(ids), 1), np.int64)
        for pi, eid in enumerate(ids):
            dec = self.decoders[eid]
            self.id2plan[eid] = pi
            self.plan_nf[pi] = len(dec.used)
            self.plan_need[pi] = dec.need_bytes
            for j, f in enumerate(dec.used):
                self.plan[pi, j] = (f.offset, f.size, int(f.signed))

    def args(self) -> PlanArrays:
        """The plan as the compiled kernels take it (``kernels.PlanArrays``, read-only arrays)."""
        return PlanArrays(*(aot.ro(a, np.int64) for a in (self.hdr, self.id2plan, self.plan, self.plan_nf,
                                                             self.plan_need)))


def decode_numpy(buf: np.ndarray, pos: np.ndarray, length: np.ndarray, le: bool, plan: Plan, compiled: bool = False):
    """What ``kernels.decode`` computes, with numpy: (evid, cpid, st, vals)."""
    n = len(pos)
    ct_off, ct_size, cp_off, cp_size = (int(x) for x in plan.hdr)
    evid = np.full(n, -1, np.int64)
    cpid = np.zeros(n, np.int64)
    st = np.full(n, 2, np.int8)
    st[pos == -2] = 3
    vals = np.zeros((plan.nf, n), np.int64)
    has = (pos >= 0) & (length >= ct_off + ct_size) & (length >= cp_off + cp_size)
    hidx = np.flatnonzero(has)
    if hidx.size:
        p = pos.take(hidx)
        evid[hidx] = read_field(buf, p + ct_off, ct_size, False, le, compiled)
        cpid[hidx] = read_field(buf, p + cp_off, cp_size, plan.cp_signed, le, compiled)
        st[hidx] = 0
    for eid, dec in plan.decoders.items():
        rows = hidx[evid.take(hidx) == eid]
        if not rows.size:
            continue
        short = length.take(rows) < dec.need_bytes
        if short.any():
            st[rows[short]] = 1
            rows = rows[~short]
        p = pos.take(rows)
        for j, f in enumerate(dec.used):
            vals[j, rows] = read_field(buf, p + f.offset, f.size, f.signed, le, compiled)
    return evid, cpid, st, vals


# ------------------------------------------------------------------------------------ records
@dataclass
class Records:
    """Event records of one binary file, in file order, decoded along the ``plan``."""

    kind: str  # "trace.dat" or "perf.data"
    buf: np.ndarray  # uint8: where the payloads are (for the examples of malformed records)
    pos: np.ndarray  # int64 payload offsets (-1: none, -2: a sample without raw data)
    length: np.ndarray  # int64 payload bytes
    ts: np.ndarray  # int64
    cpu: np.ndarray  # int32
    ordinal: np.ndarray  # int64, 1-based: the ``line`` column
    plan: Plan
    evid: np.ndarray  # event id (common_type); -1 when unreadable
    cpid: np.ndarray  # common_pid
    st: np.ndarray  # int8: 0 decoded, 1 shorter than its fields, 2 no event header, 3 no raw data
    vals: np.ndarray  # (F, n) raw fields along the plan
    pid: np.ndarray | None = None  # None: common_pid
    tgid: np.ndarray | None = None
    comm_ids: np.ndarray | None = None  # per record, into comm_names
    comm_names: list[str] | None = None
    cmdlines: dict[int, str] | None = None  # trace.dat: pid -> comm
    lost: list[tuple[int, int, int]] = field(default_factory=list)  # (index of the next record, cpu, count)
    malformed: list[tuple[int, str, str]] = field(default_factory=list)  # (line, reason, detail): found by the reader
    timestamp_unit: str = "ns"
    long_size: int = 8
    info: dict[str, Any] = field(default_factory=dict)  # binary-only facts for the accounting


# ------------------------------------------------------------------------------------ the table
def _intern_strings(interner, strings: list[str]) -> np.ndarray:
    """Global ids of ``strings`` in a parser interner (``_Interner.remap`` over a joined buffer)."""
    if not strings:
        return np.zeros(0, np.int32)
    enc = [s.encode("utf-8", "surrogateescape") for s in strings]
    buf = b"".join(enc)
    lens = np.array([len(e) for e in enc], np.int64)
    starts = np.cumsum(lens) - lens
    return interner.remap(buf, len(enc), starts, lens)[: len(enc)]


def build(parser, recs: Records, fa: BinaryFileAccounting, file_id: int, name: str) -> Iterator[pa.RecordBatch]:
    """Fill the accounting and yield the file's rows as sorted record batches.

    The canonical order is computed first, from the few per-record arrays it needs; the
    columns are then evaluated piece by piece in that order, so each piece can be encoded (by
    the Parquet writer's thread) while the next one is evaluated.
    """
    n = len(recs.pos)
    fa.lines_total += n
    plan = recs.plan
    evid = recs.evid
    for nm, c in recs.info.get("other_events", {}).items():
        fa.other_events[nm] = fa.other_events.get(nm, 0) + int(c)
    rec_code, code_of, mal_rows, problems, seen_kmem = _classify(fa, recs)
    decoders = plan.decoders
    for rows, reason in mal_rows:
        _malformed(fa, recs, rows, reason)
    for line, reason, detail in recs.malformed:  # found by the reader (corrupt pages...): not in ``pos``
        fa.lines_malformed += 1
        fa.lines_total += 1
        fa.malformed_reasons[reason] = fa.malformed_reasons.get(reason, 0) + 1
        if len(fa.malformed_examples) < fa.max_examples:
            fa.malformed_examples.append({"file": fa.name, "line": int(line), "reason": reason, "text": detail})
    parsed = np.flatnonzero(rec_code >= 0)
    npar = len(parsed)
    if npar == 0:
        _no_events(fa, recs, name, n, seen_kmem, problems)
    # --- the canonical order of the parsed records: (ts, cpu, file order)
    every = npar == n  # (the usual case: every record is a kmem event)
    ts_f = recs.ts if every else recs.ts.take(parsed)
    cpu_f = (recs.cpu if every else recs.cpu.take(parsed)).astype(np.int32, copy=False)
    lines_f = recs.ordinal if every else recs.ordinal.take(parsed)
    _order_check(fa, ts_f, cpu_f, lines_f)
    perm = _sort_order(ts_f, cpu_f)
    rows_s = perm if every else parsed.take(perm)  # record index of each output row
    seq0 = parser._seq
    parser._seq += npar
    seq_s = seq0 + perm.astype(np.int64)
    _lost(fa, recs, parsed, seq0)
    ts_s = ts_f.take(perm)
    cpu_s = cpu_f.take(perm)
    lines_s = lines_f.take(perm)
    code_s = rec_code.take(rows_s)
    evid_s = evid.take(rows_s)
    pid_s = (recs.pid if recs.pid is not None else recs.cpid).take(rows_s).astype(np.int32)
    comm_s = _comms(parser, recs, rows_s, pid_s)
    tgid_s = recs.tgid.take(rows_s).astype(np.int32) if recs.tgid is not None else None
    present = [eid for eid in decoders if eid < len(code_of) and code_of[eid] >= 0]
    sel_of = {eid: np.flatnonzero(evid_s == eid) for eid in present}
    gfp_s = _gfp_ids(parser, decoders, present, sel_of, recs, rows_s, name, npar)
    counts = np.bincount(code_s.astype(np.int64), minlength=len(EVENT_NAMES))
    for c, k in enumerate(counts.tolist()):
        fa.events[EVENT_NAMES[c]] += int(k)
    fa.lines_parsed += npar
    fa.counters[LINES_TS_COUNTER if recs.timestamp_unit == "counter" else LINES_TS_DECIMAL] += npar
    for eid in present:
        fa.counters[LINES_PFN_HEX if decoders[eid].hex_pfn else LINES_PFN_DEC] += len(sel_of[eid])
    dicts = (parser.comms.dictionary(), parser.gfps.dictionary(), parser.files.dictionary())
    cols_s = (ts_s, cpu_s, pid_s, comm_s, lines_s, seq_s)
    dropped = 0
    for a in range(0, npar, PIECE_ROWS):
        b = min(npar, a + PIECE_ROWS)
        m = b - a
        cols = _decode_piece(decoders, present, evid_s[a:b], rows_s[a:b], recs.vals, m)
        keep = cols.pop("_keep")
        pcode = code_s[a:b]
        pfn = cols["pfn"]
        failed = (pcode == 0) & (pfn <= 0)
        nfailed = int(np.count_nonzero(failed))
        if nfailed:
            pfn = np.where(failed, -1, pfn)
        forder, pborder, frag = cols["forder"], cols["pborder"], cols["frag"]
        known = (forder >= 0) & (pborder >= 0)
        if known.any():
            want = np.where(known, (forder < pborder).astype(np.int64), frag)
            fa.fragmenting_recomputed += int(np.count_nonzero((want != frag) & known))
            frag = want
        fa.failed_allocs += nfailed
        arrays = _piece_arrays(cols, a, b, pcode, pfn, failed, forder, pborder, frag, gfp_s, cols_s, tgid_s, file_id, dicts)
        batch = pa.RecordBatch.from_arrays(arrays, schema=parser.schema)
        if keep is not None:  # values outside int8: malformed, as in the text (rare)
            bad = np.flatnonzero(~keep)
            _malformed(fa, recs, rows_s[a:b][bad], "bad field value")
            fa.lines_parsed -= len(bad)
            for c in pcode[bad].tolist():
                fa.events[EVENT_NAMES[c]] -= 1
            fa.failed_allocs -= int(np.count_nonzero(failed[bad]))
            dropped += len(bad)
            batch = batch.filter(pa.array(keep))
            if batch.num_rows == 0:
                continue
        yield batch
    if dropped and fa.lines_parsed == 0:
        _no_events(fa, recs, name, n, seen_kmem, problems)


def _classify(fa: BinaryFileAccounting, recs: Records):
    """What each record is: (its Event code or -1, the code of each event id, the malformed rows
    with their reasons, the kmem formats that cannot be evaluated, whether any kmem event was
    seen); other events are counted in ``fa``."""
    n = len(recs.pos)
    plan = recs.plan
    formats = plan.formats
    evid, st = recs.evid, recs.st
    mal_rows: list[tuple[np.ndarray, str]] = []
    if n and int(st.max()) > 0:
        bad_hdr = np.flatnonzero(st == 2)
        if bad_hdr.size:
            mal_rows.append((bad_hdr, recs.info.get("short_reason", "record too short for an event header")))
    neg = np.flatnonzero((st == 0) & (evid < 0)) if n else np.zeros(0, np.int64)
    if neg.size:  # (an event id that does not fit the id column: corrupt)
        mal_rows.append((neg, "unknown event id"))
    # --- what each event id is: a kmem event, another event, or unknown
    valid = evid >= 0
    ids = np.flatnonzero(np.bincount(evid[valid])) if n and valid.any() else np.zeros(0, np.int64)
    code_of = np.full(int(ids.max()) + 1 if ids.size else 1, -1, np.int8)
    problems: list[str] = []
    seen_kmem = False
    decoders = plan.decoders
    for eid in ids.tolist():
        fmt = formats.get(eid)
        if fmt is None:
            mal_rows.append((np.flatnonzero(evid == eid), f"unknown event id {eid}"))
            continue
        code = kmem_code(fmt)
        if code is None:
            fa.other_events[fmt.name] = fa.other_events.get(fmt.name, 0) + int(np.count_nonzero(evid == eid))
            continue
        seen_kmem = True
        rows_e = np.flatnonzero(evid == eid)
        dec = decoders.get(eid)
        why = plan.problems.get(eid)
        if dec is not None:
            ok_e = rows_e[st.take(rows_e) == 0]
            if ok_e.size:
                w = dec.check(recs.vals, ok_e[:1])
                why = None if w is None else f"{fmt.name}: cannot evaluate its print fmt ({w})"
        if why is not None:
            problems.append(why)
            mal_rows.append((rows_e, "missing field"))
            continue
        code_of[eid] = code
    rec_code = np.where(valid, code_of[np.maximum(evid, 0)], -1).astype(np.int8) if n else np.zeros(0, np.int8)
    short = np.flatnonzero((st == 1) & (rec_code >= 0))
    if short.size:
        mal_rows.append((short, "record shorter than its format"))
        rec_code[short] = -1
    return rec_code, code_of, mal_rows, problems, seen_kmem


def _gfp_ids(parser, decoders, present: list[int], sel_of: dict, recs: Records, rows_s: np.ndarray, name: str,
             npar: int) -> np.ndarray:
    """The global gfp_flags text id of each output row (-1: none), each text rebuilt once per
    distinct raw value over the whole file."""
    # gfp text: evaluated once per distinct input over the whole file
    gfp_s = np.full(npar, -1, np.int32)
    gtexts: list[str] = []
    gids_of: dict[str, int] = {}
    for eid in present:
        dec = decoders[eid]
        sel = sel_of[eid]
        if "gfp" not in dec.plan or not sel.size:
            continue
        res = dec.gfp_texts(recs.vals, rows_s.take(sel))
        if isinstance(res[0], str):
            raise TraceFormatError(f"{name}: {dec.fmt.name}: cannot rebuild the gfp_flags text ({res[1]})")
        codes, texts = res
        local = np.array([gids_of.setdefault(t, len(gids_of)) for t in texts], np.int64)
        for t in texts:
            if len(gtexts) < len(gids_of):
                gtexts.append(t)
        gfp_s[sel] = local.take(codes)
    if gtexts:
        gglob = _intern_strings(parser.gfps, gtexts)
        has_g = gfp_s >= 0
        gfp_s = np.where(has_g, gglob.take(np.maximum(gfp_s, 0)), -1).astype(np.int32)
    return gfp_s


def _piece_arrays(cols: dict, a: int, b: int, pcode, pfn, failed, forder, pborder, frag, gfp_s, cols_s, tgid_s, file_id: int,
                  dicts) -> list[pa.Array]:
    """The Arrow columns of output rows [a, b) (``cols``: the piece's decoded numeric columns;
    ``cols_s``: the whole file's sorted ts, cpu, pid, comm, line and seq)."""
    g = gfp_s[a:b]
    ts_s, cpu_s, pid_s, comm_s, lines_s, seq_s = cols_s
    comm_dict, gfp_dict, files_dict = dicts
    m = b - a
    return [
        _plain(ts_s[a:b], pa.int64()),
        _plain(cpu_s[a:b], pa.int32()),
        _plain(pid_s[a:b], pa.int32()),
        _nulls(m, pa.int32()) if tgid_s is None else _plain(tgid_s[a:b], pa.int32()),
        pa.DictionaryArray.from_arrays(_plain(comm_s[a:b], pa.int32()), comm_dict, safe=False),
        pa.DictionaryArray.from_arrays(_plain(pcode, pa.int8()), _EVENT_DICT, safe=False),
        _nint(pfn, pa.int64()),
        _plain(cols["order"].astype(np.int8), pa.int8()),
        _nint(cols["mt"], pa.int8()),
        pa.DictionaryArray.from_arrays(_col(g, pa.int32(), g < 0), gfp_dict, safe=False),
        _col(cols["gfp_raw"].view(np.uint64), pa.uint64(), ~cols["gfp_has"]),
        _nbool(cols["pcp"]),
        _bool_column(failed),
        _nint(forder, pa.int8()),
        _nint(pborder, pa.int8()),
        _nint(cols["fmt"], pa.int8()),
        _nbool(frag),
        _nbool(cols["chown"]),
        _nbool(cols["cold"]),
        pa.DictionaryArray.from_arrays(_plain(np.full(m, file_id, np.int16), pa.int16()), files_dict, safe=False),
        _plain(lines_s[a:b], pa.int64()),
        _plain(seq_s[a:b], pa.int64()),
    ]


def _decode_piece(decoders, present, evid_p: np.ndarray, rows_p: np.ndarray, vals: np.ndarray, m: int) -> dict[str, Any]:
    """The numeric columns of one piece (rows in canonical order), -1 where an event prints no such key."""
    used = {c for eid in present for c in decoders[eid].plan}
    minus1 = _minus1(m)
    out: dict[str, Any] = {c: (np.full(m, -1, np.int64) if c in used else minus1) for c in _NUM_KEYS if c != "order"}
    out["order"] = np.zeros(m, np.int64)
    out["gfp_raw"] = np.zeros(m, np.int64)
    out["gfp_has"] = np.zeros(m, bool)
    keep = None
    for eid in present:
        sel = np.flatnonzero(evid_p == eid)
        if not sel.size:
            continue
        res = decoders[eid].decode(vals, rows_p.take(sel))
        bad = None
        for c, v in res.items():
            if c in _INT8_COLS:
                r = (v < -128) | (v > 127)
                if r.any():
                    bad = r if bad is None else (bad | r)
            out[c][sel] = v
        if "gfp_raw" in res:
            out["gfp_has"][sel] = True
        if bad is not None:
            if keep is None:
                keep = np.ones(m, bool)
            keep[sel[bad]] = False
    out["_keep"] = keep
    return out


def _malformed(fa: FileAccounting, recs: Records, rows: np.ndarray, reason: str) -> None:
    if len(rows) == 0:
        return
    fa.lines_malformed += len(rows)
    fa.malformed_reasons[reason] = fa.malformed_reasons.get(reason, 0) + len(rows)
    for r in rows[: max(0, fa.max_examples - len(fa.malformed_examples))].tolist():
        fa.malformed_examples.append(_example(recs, r, reason, fa.name))


def _no_events(fa: FileAccounting, recs: Records, name: str, n: int, seen_kmem: bool, problems: list[str]) -> None:
    formats = recs.plan.formats
    if fa.lines_malformed and seen_kmem:
        detail = f" ({problems[0]})" if problems else ""
        ex = fa.malformed_examples[0] if fa.malformed_examples else {"line": "?", "reason": ""}
        raise TraceFormatError(
            f"{name}: no valid page-allocator event: {fa.lines_malformed} record(s) malformed{detail}; "
            f"first at record {ex['line']} ({ex['reason']})"
        )
    seen = fa.seen_summary()
    where = recs.info.get("formats_offset")
    at = f" at byte {where:#x}" if isinstance(where, int) else ""
    kinds = ", ".join(sorted({f.name for f in formats.values() if kmem_code(f) is not None}))
    raise TraceFormatError(
        f"{name}: no page-allocator (kmem mm_page_*) events in {n} record(s)"
        + (f"; saw {seen}" if seen else "")
        + (f" (the event formats{at} define {kinds})" if kinds else f" (the event formats{at} define no kmem mm_page_* event)")
    )


def _nint(a: np.ndarray, typ) -> pa.Array:
    mask = a == -1
    if mask.all():
        return _nulls(len(a), typ)
    return _col(a.astype(_NP[typ]), typ, mask)


def _plain(values: np.ndarray, typ: pa.DataType) -> pa.Array:
    """``values`` (no nulls) as an Arrow array of ``typ``, wrapping its buffer when the dtype is
    the type's (``pa.array`` on a numpy array first imports numpy.ma, ~11 ms, to rule out a
    masked array)."""
    if values.dtype == _NP_OF.get(typ) and values.flags.c_contiguous:
        return pa.Array.from_buffers(typ, len(values), [None, pa.py_buffer(values)], null_count=0)
    return pa.array(values, typ)


def _col(values: np.ndarray, typ: pa.DataType, null: np.ndarray) -> pa.Array:
    """``values`` as an Arrow array of ``typ``, null where ``null``."""
    return _column(values, typ, null) if null.any() else _plain(values, typ)


def _nbool(a: np.ndarray) -> pa.Array:
    mask = a == -1
    if mask.all():
        return _nulls(len(a), pa.bool_())
    return _bool_column(a == 1, mask if mask.any() else None)


_NP = {pa.int64(): np.int64, pa.int8(): np.int8, pa.int32(): np.int32}
# (spelled out: pa.DataType.to_pandas_dtype imports pyarrow's pandas shim, ~7 ms)
_NP_OF = {pa.int8(): np.dtype(np.int8), pa.int16(): np.dtype(np.int16), pa.int32(): np.dtype(np.int32),
          pa.int64(): np.dtype(np.int64), pa.uint64(): np.dtype(np.uint64)}


def _example(recs: Records, r: int, reason: str, name: str) -> dict[str, Any]:
    p = int(recs.pos[r]) if r < len(recs.pos) else -1
    head = ""
    if p >= 0:
        head = bytes(recs.buf[p : p + min(int(recs.length[r]), 16)]).hex(" ")
    return {"file": name, "line": int(recs.ordinal[r]), "reason": reason, "text": f"cpu {int(recs.cpu[r])}: {head}"}


def _comms(parser, recs: Records, rows: np.ndarray, pid: np.ndarray) -> np.ndarray:
    """Global comm ids of the output rows."""
    if recs.comm_ids is not None and recs.comm_names is not None:
        gids = _intern_strings(parser.comms, recs.comm_names)
        return gids.take(recs.comm_ids.take(rows))
    # trace.dat: the saved cmdlines, as trace-cmd report shows them (<idle> for 0, <...> unknown)
    cl = recs.cmdlines or {}
    if len(pid) == 0:
        return np.zeros(0, np.int32)
    lo, hi = int(pid.min()), int(pid.max())
    if lo >= 0 and hi < (1 << 23):
        present = np.flatnonzero(np.bincount(pid, minlength=hi + 1))
        names = [("<idle>" if p == 0 else cl.get(p, "<...>")) for p in present.tolist()]
        gids = _intern_strings(parser.comms, names)
        lut = np.zeros(hi + 1, np.int32)
        lut[present] = gids
        return lut.take(pid)
    uniq, inv = np.unique(pid, return_inverse=True)
    names = [("<idle>" if p == 0 else cl.get(int(p), "<...>")) for p in uniq.tolist()]
    gids = _intern_strings(parser.comms, names)
    return gids.take(inv.reshape(-1))


def _sort_order(ts: np.ndarray, cpu: np.ndarray) -> np.ndarray:
    """The permutation sorting (ts, cpu, file order): a stable sort by ts (fast on the long sorted
    runs binaries hold), then the runs of equal timestamps whose CPUs are not ascending re-sorted."""
    perm = np.argsort(ts, kind="stable")
    t = ts.take(perm)
    c = cpu.take(perm)
    bad = np.flatnonzero((t[1:] == t[:-1]) & (c[1:] < c[:-1]))
    if bad.size == 0:
        return perm
    if bad.size > 4096:
        return np.lexsort((np.arange(len(ts)), cpu, ts))
    for i in bad.tolist():  # each: a run of equal stamps around i; sort it by (cpu, file order)
        lo = int(np.searchsorted(t, t[i], side="left"))
        hi = int(np.searchsorted(t, t[i], side="right"))
        seg = perm[lo:hi]
        perm[lo:hi] = seg[np.lexsort((seg, cpu.take(seg)))]
        c[lo:hi] = cpu.take(perm[lo:hi])
    return perm


def _order_check(fa: FileAccounting, ts: np.ndarray, cpu: np.ndarray, lines: np.ndarray) -> None:
    """Timestamps going back within a CPU, in file order (as the text path counts them)."""
    if len(cpu) == 0:
        return
    if np.all(cpu[1:] >= cpu[:-1]):  # trace.dat: one CPU after the other
        by_cpu = None
        t, c = ts, cpu
    else:
        key = cpu.astype(np.uint16) if int(cpu.min()) >= 0 and int(cpu.max()) < 65536 else cpu
        by_cpu = np.argsort(key, kind="stable")  # (radix sort for 16-bit keys)
        t, c = ts.take(by_cpu), cpu.take(by_cpu)
    back = np.flatnonzero((t[1:] < t[:-1]) & (c[1:] == c[:-1])) + 1
    if back.size:
        j = back[: fa.max_examples] if by_cpu is None else by_cpu[back[: fa.max_examples]]
        fa.out_of_order(int(back.size), [(int(lines[k]), int(cpu[k])) for k in j.tolist()])


def _lost(fa: FileAccounting, recs: Records, parsed: np.ndarray, seq0: int) -> None:
    for ridx, cpu, count in recs.lost:
        nxt = int(np.searchsorted(parsed, ridx))
        line = int(recs.ordinal[ridx]) if ridx < len(recs.ordinal) else int(recs.ordinal[-1]) + 1 if len(recs.ordinal) else 1
        fa.lost_markers.append({"line": line, "cpu": int(cpu), "events": int(max(count, 0)), "next_seq": seq0 + nxt})
