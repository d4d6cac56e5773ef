"""perf.data's PERF_RECORD_SAMPLE records -> the sample fields (time, cpu, pid/tid) and where each
sample's raw tracepoint data is, in ``sample_type`` bit order: by the compiled scan
(``kernels.perf_walk`` then ``kernels.perf_samples``, which also decodes the raw payloads, on two
threads) or with numpy (``samples``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from . import aot
from .cursor import fail
from .kernels import PlanArrays, SampleLayout, SampleRows
from .perfformat import (
    F_ENABLED,
    F_GROUP,
    F_ID,
    F_LOST,
    F_RUNNING,
    R_SAMPLE,
    RECORD_NAMES,
    S_ADDR,
    S_CALLCHAIN,
    S_CPU,
    S_ID,
    S_IDENTIFIER,
    S_IP,
    S_PERIOD,
    S_RAW,
    S_READ,
    S_STREAM_ID,
    S_TID,
    S_TIME,
    Attr,
    PerfData,
    id_pos,
    read_uint,
)
from .perfwalk import walk_compiled


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


def _attr_index(pd: PerfData, off: np.ndarray, compiled: bool) -> np.ndarray:
    """Which attr each sample (record at ``off``) belongs to, by its sample id; -1 for an id no
    attr declares."""
    attrs, buf, le, ns = pd.attrs, pd.buf, pd.le, len(off)
    ipos = id_pos(attrs[0].sample_type)
    if len(attrs) == 1 or ipos is None:
        if len(attrs) > 1 and len({a.sample_type for a in attrs}) > 1:
            fail(pd.name, None, "several events with different sample layouts and no sample id: cannot tell samples apart")
        return np.zeros(ns, np.int64)
    sid = read_uint(buf, np.minimum(off + 8 + ipos, len(buf) - 8), 8, le, compiled)
    id_list = np.array([i for a in attrs for i in a.ids], np.int64)
    id_attr = np.array([k for k, a in enumerate(attrs) for _ in a.ids], np.int64)
    o = np.argsort(id_list)
    id_sorted, attr_sorted = id_list[o], id_attr[o]
    j = np.searchsorted(id_sorted, sid)
    jc = np.minimum(j, max(len(id_sorted) - 1, 0))
    known = (len(id_sorted) > 0) & (id_sorted[jc] == sid) if len(id_sorted) else np.zeros(ns, bool)
    return np.where(known, attr_sorted[jc] if len(id_sorted) else 0, -1)


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
    aidx = _attr_index(pd, off, compiled)
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
            pid[rows] = read_uint(buf, p, 4, le, compiled).astype(np.int32)
            tid[rows] = read_uint(buf, p + 4, 4, le, compiled).astype(np.int32)
            p = p + 8
        if st & S_TIME:
            ts[rows] = read_uint(buf, p, 8, le, compiled)
            p = p + 8
        if st & S_ADDR:
            p = p + 8
        if st & S_ID:
            p = p + 8
        if st & S_STREAM_ID:
            p = p + 8
        if st & S_CPU:
            cpu[rows] = read_uint(buf, p, 4, le, compiled).astype(np.int32)
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
                nr = read_uint(buf, np.minimum(p, len(buf) - 8), 8, le, compiled)
                per = 8 * (1 + bool(rf & F_ID) + bool(rf & F_LOST))
                nr = np.where((nr < 0) | (nr > 1 << 16), 1 << 20, nr)  # corrupt: runs past the record below
                p = p + 8 + 8 * (bool(rf & F_ENABLED) + bool(rf & F_RUNNING)) + nr * per
            else:
                p = p + 8 * (1 + bool(rf & F_ENABLED) + bool(rf & F_RUNNING) + bool(rf & F_ID) + bool(rf & F_LOST))
        if st & S_CALLCHAIN:
            nr = read_uint(buf, np.minimum(p, len(buf) - 8), 8, le, compiled)
            nr = np.where((nr < 0) | (nr > 1 << 16), 1 << 20, nr)
            p = p + 8 + 8 * nr
        ok = p + 4 <= e
        rsz = np.zeros(rows.size, np.int64)
        if ok.any():
            rsz[ok] = read_uint(buf, p[ok], 4, le, compiled)
        ok &= p + 4 + rsz <= e
        if not ok.all():
            i = int(np.flatnonzero(~ok)[0])
            bad.append((int(rows[i]), f"{int((~ok).sum())} sample(s) of {a.name or a.config} whose raw data runs past the record"))
        pos[rows[ok]] = p[ok] + 4
        length[rows[ok]] = rsz[ok]
    return Samples(ordinal, sel, pos, length, ts, cpu, pid, tid, ns, no_raw, bad, no_raw_names)


def _layout_args(pd: PerfData) -> SampleLayout:
    attrs = pd.attrs
    ipos = id_pos(attrs[0].sample_type) if attrs else None
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
    return SampleLayout(idpos, aot.ro(id_sorted), aot.ro(id_attr), aot.ro(attr_st), aot.ro(attr_rf), aot.ro(attr_fix))


def _fixed_layout(a: Attr) -> list[int]:
    """[offset of {pid, tid}, time, cpu, raw size, smallest record] of a sample layout without
    variable parts (see ``kernels.perf_samples``); the last is 0 for the others."""
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


def check_attrs(pd: PerfData) -> None:
    if not pd.attrs:
        fail(pd.name, None, "no attrs: the samples cannot be decoded")
    for a in pd.attrs:
        if a.sample_type & S_RAW and not a.sample_type & S_TIME:
            fail(pd.name, None, f"event {a.name or a.config} samples carry no time (PERF_SAMPLE_TIME)")
        if a.sample_type & S_RAW and not a.sample_type & S_CPU:
            pd.warnings.append(f"{pd.name}: samples of {a.name or a.config} carry no cpu (PERF_SAMPLE_CPU); cpu 0 assumed")


PARALLEL_MIN = 1 << 16  # samples: fewer are decoded on one thread (a thread costs more than it saves)


def _decode_samples(k, buf: np.ndarray, s_off: np.ndarray, le: bool, lay: SampleLayout, pargs: PlanArrays,
                    out: SampleRows) -> None:
    """``kernels.perf_samples`` over every sample into ``out``: the two halves on two threads (the
    compiled code releases the GIL; the first touch of the output pages is shared out too)."""
    ns = len(s_off)
    if ns < PARALLEL_MIN:
        k.perf_samples(buf, s_off, 0, ns, le, lay, pargs, out)
        return
    mid = ns // 2
    failed: list[BaseException] = []

    def second() -> None:
        try:
            k.perf_samples(buf, s_off, mid, ns, le, lay, pargs, out)
        except BaseException as e:  # noqa: BLE001 - re-raised on the calling thread
            failed.append(e)

    t = threading.Thread(target=second, name="pagereplay-perf-samples")
    t.start()
    try:
        k.perf_samples(buf, s_off, 0, mid, le, lay, pargs, out)
    finally:
        t.join()
    if failed:
        raise failed[0]


def scan_compiled(k, pd: PerfData, plan) -> Samples:
    """The records walked, then the samples' fields and raw payloads decoded (``_decode_samples``)."""
    buf = aot.ro(pd.buf)
    lay = _layout_args(pd)
    pargs = plan.args()
    pd.rec_off, pd.rec_type, pd.rec_size = walk_compiled(k, pd.buf, pd.le, pd.name, pd.stream_base)
    nrec = len(pd.rec_off)
    tcount = np.bincount(pd.rec_type[(pd.rec_type >= 0) & (pd.rec_type < 256)], minlength=1) if nrec else np.zeros(1, np.int64)
    pd.record_counts = {RECORD_NAMES.get(t, f"type {t}"): int(c) for t, c in enumerate(tcount) if c}
    s_rec = np.flatnonzero(pd.rec_type == R_SAMPLE)
    out = aot.perf_outputs(len(s_rec), pargs.plan.shape[1])
    _decode_samples(k, buf, aot.ro(pd.rec_off.take(s_rec)), pd.le, lay, pargs, out)
    s_time, s_cpu, s_pid, s_tid, s_pos, s_len, s_attr, evid, cpid, st, vals = out
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
