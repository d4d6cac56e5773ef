"""perf.data's side band: COMM / FORK / LOST / LOST_SAMPLES records (few, decoded one by one), and
each sample's comm as ``perf script`` shows it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from . import aot
from .perfformat import (
    R_COMM,
    R_FORK,
    R_LOST,
    R_LOST_SAMPLES,
    R_SAMPLE,
    S_CPU,
    S_ID,
    S_IDENTIFIER,
    S_STREAM_ID,
    S_TID,
    S_TIME,
    Attr,
    PerfData,
)


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


def resolve_comms(sb: SideBand, s_ts: np.ndarray, s_rec: np.ndarray, s_tid: np.ndarray,
                  compiled: bool = True) -> tuple[np.ndarray, list[str]]:
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
        k = aot.get() if compiled else None
        if k is not None:
            ekey = et * (E + 1) + np.arange(E, dtype=np.int64)
            o = np.argsort(ekey, kind="stable")
            out = k.comm_of(aot.ro(s_ts, np.int64), aot.ro(s_rec, np.int64), aot.ro(s_tid, np.int32), aot.ro(ekey_t),
                            aot.ro(ekey_r), aot.ro(ekey[o]), aot.ro(ec[o]), E + 1)
        else:
            _comm_numpy(out, s_ts, s_rec, s_tid, et, ec, ekey_t, ekey_r)
    miss = np.flatnonzero(out < 0)
    if miss.size:
        mt = s_tid[miss]
        ut, inv = np.unique(mt, return_inverse=True)
        sids = np.array([sid("swapper" if t == 0 else f":{int(t)}") for t in ut.tolist()], np.int32)
        out[miss] = sids[inv]
    return out, names


def _comm_numpy(out: np.ndarray, s_ts, s_rec, s_tid, et, ec, ekey_t, ekey_r) -> None:
    """What ``kernels.comm_of`` computes, with numpy, into ``out`` (-1 where no event names the thread)."""
    E = len(et)
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
