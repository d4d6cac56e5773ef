"""Finding perf.data's records: they can only be found by walking their sizes.

The compiled walk (``kernels.perf_walk``) is used when it is built.  The numpy
walk is vectorised: the data is cut into a few thousand chunks, each chunk starts at a plausible
record header, all chunks are walked at once, and then each chunk's start is checked against
where the previous (already verified) chunk's walk ended; a chunk whose guess was wrong is
walked again from the right place.  The result is exactly the sequential walk (the first chunk
starts at a known boundary), at numpy speed.  Records the word walk cannot follow (AUXTRACE and
pipe-mode HEADER_TRACING_DATA, whose data follows the record; sizes not a multiple of 8) are
stepped over one by one.
"""

from __future__ import annotations

import struct

import numpy as np

from . import aot
from .cursor import fail
from .kernels import WALK_BAD_SIZE, WALK_CUT_HEADER, WALK_FULL, WALK_OK
from .perfformat import R_AUXTRACE, R_HEADER_TRACING_DATA, RECORD_NAMES, PerfData, header_fields, read_uint


def _extra(typ: int, buf, p: int, le: bool) -> int:
    """Bytes that follow a record outside its header size (AUXTRACE data, pipe tracing data)."""
    if typ == R_AUXTRACE:
        return struct.unpack_from("<Q" if le else ">Q", buf, p + 8)[0]
    if typ == R_HEADER_TRACING_DATA:
        return struct.unpack_from("<I" if le else ">I", buf, p + 8)[0]
    return 0


def _record_header(hdr: struct.Struct, mv, p: int, end: int, name: str, base: int) -> tuple[int, int]:
    """(type, size) of the record header at ``p``; a header cut short or a size below the header's
    8 bytes fails naming the file offset (``base + p``; ``base`` < 0: no offset to name)."""
    if p + 8 > end:
        fail(name, base + p if base >= 0 else None, f"record header cut short at the end of the data ({end - p} bytes left; truncated?)")
    typ, _misc, size = hdr.unpack_from(mv, p)
    if size < 8:
        fail(name, base + p if base >= 0 else None, f"corrupt record (type {typ}, size {size})")
    return typ, size


def _walk_seq(mv, p: int, stop: int, end: int, le: bool, name: str, base: int, out: list[int]) -> int:
    """Walk from the record boundary ``p`` until a record starts at or after ``stop``; return it."""
    hdr = struct.Struct("<IHH" if le else ">IHH")
    while p < stop:
        typ, size = _record_header(hdr, mv, p, end, name, base)
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
SCAN_CAP = 1 << 21  # records per call of the compiled walk (bounds its output arrays)


def walk_compiled(k, buf: np.ndarray, le: bool, name: str, base: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(offset, type, size) of every record in ``buf``, by the compiled walk (``SCAN_CAP`` records
    per call); a record that cannot be is an error naming its file offset (``base`` + its
    offset, when ``buf`` is the file's)."""
    rbuf = aot.ro(buf)
    end = len(buf)
    p = 0
    recs: list[tuple[np.ndarray, ...]] = []
    while True:
        cap = max(1024, min(SCAN_CAP, (end - p) // 8 + 1))
        status, stop, n, rec_off, rec_type, rec_size = k.perf_walk(rbuf, p, end, le, cap)
        recs.append((rec_off[:n], rec_type[:n], rec_size[:n]))
        if status == WALK_FULL:
            p = int(stop)
            continue
        if status != WALK_OK:
            _walk_fail(buf, le, name, base, int(status), int(stop), end)
        break
    if len(recs) == 1:
        return recs[0]
    return np.concatenate([r[0] for r in recs]), np.concatenate([r[1] for r in recs]), np.concatenate([r[2] for r in recs])


def walk_records(buf: np.ndarray, le: bool, name: str, base: int, compiled: bool = True) -> np.ndarray:
    """Offsets of every record in ``buf`` (a record stream starting at a boundary)."""
    end = len(buf)
    k = aot.get() if compiled else None
    if k is not None:
        return walk_compiled(k, buf, le, name, base)[0]
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
        tp, _misc, sz = header_fields(w[pw], le)
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
    typ, misc, size = header_fields(w[j], le)
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
        typ, size = _record_header(hdr, mv, p, end, name, base)
        if typ in (R_AUXTRACE, R_HEADER_TRACING_DATA):
            return np.asarray(out, np.int64), p
        if p + size > end:
            fail(name, base + p if base >= 0 else None, f"record (type {typ}, {size} bytes) runs past the end of the data (truncated?)")
        out.append(p)
        p += size
    return np.asarray(out, np.int64), None


def set_records(pd: PerfData, offs: np.ndarray, compiled: bool = True) -> None:
    buf = pd.buf
    pd.rec_off = offs
    if len(offs):
        hv = read_uint(buf, offs, 8, pd.le, compiled).view(np.uint64)
        tp, _misc, sz = header_fields(hv, pd.le)
        pd.rec_type, pd.rec_size = tp, sz
    else:
        pd.rec_type = pd.rec_size = np.zeros(0, np.int64)
    tcount = np.bincount(pd.rec_type[pd.rec_type < 256], minlength=1) if len(offs) else np.zeros(1, np.int64)
    pd.record_counts = {RECORD_NAMES.get(t, f"type {t}"): int(c) for t, c in enumerate(tcount) if c}


def _walk_fail(buf: np.ndarray, le: bool, name: str, base: int, status: int, p: int, end: int) -> None:
    at = base + int(p) if base >= 0 else None
    if status == WALK_CUT_HEADER:
        fail(name, at, f"record header cut short at the end of the data ({end - int(p)} bytes left; truncated?)")
    typ = int(read_uint(buf, np.array([p]), 4, le, False)[0])
    if status == WALK_BAD_SIZE:
        fail(name, at, f"corrupt record (type {typ}, size {int(read_uint(buf, np.array([p + 6]), 2, le, False)[0])})")
    fail(name, at, f"record (type {typ}) runs past the end of the data (truncated?)")
