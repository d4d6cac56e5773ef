"""Locks and CPUs in virtual time: every lock request of a replay served one holder at a time.

Each traced CPU (and the background acceptor, one more "CPU") runs a list of *items* in trace
order:

- a **section** (``IT_SECTION``): a ``zone->lock`` critical section the trace shows it taking
  (``rmqueue_bulk``, ``free_pcppages_bulk``, ``rmqueue_buddy``, ``free_one_page``, a fallback
  steal): request the lock at the section's first event, hold it for the section's hold time;
- a **program** (``IT_PROGRAM``): what a policy makes the CPU do at one kernel call site
  (``replay.acceptance``): a short list of *steps*: take a lock (``OP_ACQ``), run for some time
  holding what it holds (``OP_WORK``: a firmware call, a bitmap scan), release (``OP_REL``),
  and the ``accepting_list`` of 6.6+ ``accept_memory()`` (``OP_RANGE_WAIT`` spins until no
  range in flight overlaps its own, ``OP_RANGE_ADD`` / ``OP_RANGE_DEL`` register it).

An item starts at its event's trace time plus the CPU's *delay*: what the policy has added to
that CPU so far (its waits and its work).  A CPU that waits is delayed, and so is everything
it does afterwards.  Lock requests are served in virtual-time order (queued spinlocks are FIFO,
``kernel/locking/qspinlock.c``): a discrete-event loop pops the earliest pending action of any
CPU from a small heap keyed on (time, kind, id), as SimPy's scheduler keys its queue on (time,
priority, sequence), so ties are broken the same way every run.  Releases at a time come before
requests at that time.

A section's lock is released ``hold`` after it was granted, plus whatever its CPU was delayed
by inside it (a firmware call under ``zone->lock``, a wait for the global accept lock while
holding it): the CPU carries on with its next events meanwhile, and the lock stays held, so the
other CPUs of the zone queue behind it; a wait for the global lock inside a section chains the
zone's CPUs behind another node's acceptor.  A program that takes a lock its own CPU still
holds from an earlier, already left section ends that section there (the trace shows the CPU
past it); one that takes the lock of the section it runs inside nests (no wait).

Only time is re-ordered: the model's state changed in trace order before this runs, and what a
program does was decided there.  Everything is recorded: per section its request time, wait,
hold and what it waited behind; per program lock hold the same (``lr_*``); per item the delay
it added to its CPU.  ``check_exclusion`` verifies that no two holds of one lock overlap.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from replay.jit import kernel, kernel_entry

# item kinds
IT_SECTION = 0
IT_PROGRAM = 1

# program steps (a: lock id or first unit, b: flags or end unit, d: ns)
OP_ACQ = 1  # spin_lock(a)
OP_REL = 2  # spin_unlock(a)
OP_WORK = 3  # run for d ns
OP_RANGE_WAIT = 4  # accept_memory(): retry until no accepting_list range overlaps [a, b)
OP_RANGE_ADD = 5  # list_add(&range.list, &accepting_list)
OP_RANGE_DEL = 6  # list_del(&range.list)

# what a record waited behind (``*_blocker_kind``)
BK_NONE = 0
BK_SECTION = 1  # a section (its id)
BK_PROGRAM = 2  # a program's lock hold (its lock record)
BK_RANGE = 3  # another CPU's accepting_list range (the program item that registered it)

# heap entry kinds (releases first at equal times)
_H_RELEASE = 0
_H_CPU = 1

INT64_MAX = 9223372036854775807

#: the items of a replay, grouped by CPU (``cpu_start[c]:cpu_start[c + 1]``), in trace order
Items = namedtuple("Items", ["cpu", "k", "ts", "kind", "sec", "lock", "hold", "s0", "s1", "cpu_start"])
#: the steps of the programs (``Items.s0:s1``)
Steps = namedtuple("Steps", ["op", "a", "b", "d"])
#: what the schedule gives: per section, per item, per program lock hold (``lr_*``, ``lr_n``)
Schedule = namedtuple("Schedule", [
    "sec_req", "sec_wait", "sec_hold", "sec_grant", "sec_bkind", "sec_bid", "sec_bcpu",
    "it_start", "it_added", "it_wait",
    "lr_item", "lr_lock", "lr_cpu", "lr_req", "lr_wait", "lr_hold", "lr_bkind", "lr_bid", "lr_bcpu", "lr_n",
    "delay", "nested", "early",
])


def new_schedule(n_sections: int, n_items: int, n_lock_records: int, n_cpus: int) -> Schedule:
    """Output arrays for ``schedule`` (``n_lock_records``: the programs' ``OP_ACQ`` and
    ``OP_RANGE_WAIT`` steps at most)."""
    ns, ni, nl = max(n_sections, 1), max(n_items, 1), max(n_lock_records, 1)
    return Schedule(
        sec_req=np.zeros(ns, np.int64), sec_wait=np.zeros(ns, np.int64), sec_hold=np.zeros(ns, np.int64),
        sec_grant=np.zeros(ns, np.int64), sec_bkind=np.zeros(ns, np.int8), sec_bid=np.full(ns, -1, np.int64),
        sec_bcpu=np.full(ns, -1, np.int32),
        it_start=np.zeros(ni, np.int64), it_added=np.zeros(ni, np.int64), it_wait=np.zeros(ni, np.int64),
        lr_item=np.zeros(nl, np.int64), lr_lock=np.zeros(nl, np.int32), lr_cpu=np.zeros(nl, np.int32),
        lr_req=np.zeros(nl, np.int64), lr_wait=np.zeros(nl, np.int64), lr_hold=np.zeros(nl, np.int64),
        lr_bkind=np.zeros(nl, np.int8), lr_bid=np.full(nl, -1, np.int64), lr_bcpu=np.full(nl, -1, np.int32),
        lr_n=np.zeros(1, np.int64), delay=np.zeros(max(n_cpus, 1), np.int64), nested=np.zeros(1, np.int64),
        early=np.zeros(1, np.int64))


# ------------------------------------------------------------------ the heap
@kernel(nrt=False)
def _heap_less(ht: np.ndarray, hk: np.ndarray, i: int, j: int) -> bool:
    return ht[i] < ht[j] or (ht[i] == ht[j] and hk[i] < hk[j])


@kernel(nrt=False)
def _heap_swap(ht: np.ndarray, hk: np.ndarray, i: int, j: int) -> None:
    t, k = ht[i], hk[i]
    ht[i], hk[i] = ht[j], hk[j]
    ht[j], hk[j] = t, k


@kernel(nrt=False)
def _heap_push(ht: np.ndarray, hk: np.ndarray, hn: np.ndarray, t: int, key: int) -> None:
    i = hn[0]
    hn[0] = i + 1
    ht[i] = t
    hk[i] = key
    while i > 0:
        p = (i - 1) >> 1
        if _heap_less(ht, hk, i, p):
            _heap_swap(ht, hk, i, p)
            i = p
        else:
            break


@kernel(nrt=False)
def _heap_pop(ht: np.ndarray, hk: np.ndarray, hn: np.ndarray) -> None:
    n = hn[0] - 1
    hn[0] = n
    ht[0], hk[0] = ht[n], hk[n]
    i = 0
    while True:
        lo = 2 * i + 1
        if lo >= n:
            break
        m = lo
        if lo + 1 < n and _heap_less(ht, hk, lo + 1, lo):
            m = lo + 1
        if _heap_less(ht, hk, m, i):
            _heap_swap(ht, hk, m, i)
            i = m
        else:
            break


# ------------------------------------------------------------------ the schedule
#: per-CPU state slots (``cs``)
_C_POS = 0  # next item
_C_STEP = 1  # next step of the program being run (-1: none)
_C_DELAY = 2
_C_CLOCK = 3  # virtual time the CPU has reached
_C_OPEN_SEC = 4  # the section whose events it is in (-1: none)
_C_OPEN_LOCK = 5
_C_OPEN_DELAY = 6  # its delay when that section was granted
_C_WAIT_LOCK = 7  # lock it is queued on (-1: none)
_C_WAIT_SINCE = 8
_C_WAIT_REC = 9  # the record being waited for: section id, or lock record
_C_NEXT = 10  # next CPU in the lock's queue
_C_WAIT_RANGE = 11  # CPU whose accepting_list range it spins on (-1: none)
_C_RANGE0 = 12  # its own range in flight [r0, r1) (r1 <= r0: none)
_C_RANGE1 = 13
_C_RANGE_ITEM = 14
_C_NEST = 15  # nested acquisitions of the open section's lock by its programs
_C_STATE = 16  # 0 runnable, 1 waiting, 2 done
_C_OPEN_HOLD = 17  # the open section's hold
_C_SPIN_REC = 18  # the lock record of the accepting_list spin in progress (-1: none)
_C_LEN = 19

#: per-lock state slots (``ls``)
_L_HOLDER = 0  # CPU holding it (-1: free)
_L_GRANT = 1
_L_BKIND = 2  # the hold: section or program lock record
_L_BID = 3
_L_QHEAD = 4
_L_QTAIL = 5
_L_TIMED = 6  # a section's release is pending in the heap at this time (-1: none)
_L_LAST_RELEASE = 7
_L_LEN = 8


@kernel(nrt=False)
def _grant(ls: np.ndarray, L: int, c: int, t: int, bkind: int, bid: int) -> None:
    ls[L, _L_HOLDER] = c
    ls[L, _L_GRANT] = t
    ls[L, _L_BKIND] = bkind
    ls[L, _L_BID] = bid
    ls[L, _L_TIMED] = -1


@kernel(nrt=False)
def _record_section_grant(it: Items, sc: Schedule, cs: np.ndarray, c: int, t: int) -> None:
    """Section item ``cs[c, _C_POS]`` of CPU ``c`` granted at ``t``."""
    i = cs[c, _C_POS]
    s = it.sec[i]
    req = cs[c, _C_WAIT_SINCE]
    w = t - req
    sc.sec_grant[s] = t
    sc.sec_wait[s] = w
    cs[c, _C_DELAY] += w
    sc.it_added[i] += w
    sc.it_wait[i] += w
    cs[c, _C_CLOCK] = t
    cs[c, _C_OPEN_SEC] = s
    cs[c, _C_OPEN_LOCK] = it.lock[i]
    cs[c, _C_OPEN_DELAY] = cs[c, _C_DELAY]
    cs[c, _C_OPEN_HOLD] = it.hold[i]
    cs[c, _C_NEST] = 0


@kernel(nrt=False)
def _record_program_grant(sc: Schedule, cs: np.ndarray, c: int, t: int) -> None:
    """The lock record cs[c, _C_WAIT_REC] of CPU ``c``'s program granted at ``t``."""
    r = cs[c, _C_WAIT_REC]
    w = t - sc.lr_req[r]
    sc.lr_wait[r] = w
    cs[c, _C_DELAY] += w
    cs[c, _C_CLOCK] = t
    i = cs[c, _C_POS]
    sc.it_added[i] += w
    sc.it_wait[i] += w
    cs[c, _C_WAIT_REC] = -1


@kernel(nrt=False)
def _release(it: Items, sc: Schedule, cs: np.ndarray, ls: np.ndarray, ht: np.ndarray, hk: np.ndarray,
             hn: np.ndarray, L: int, t: int, ncpu: int) -> None:
    """Lock ``L`` released at ``t``: the hold recorded, the head of its queue granted (it runs on at ``t``)."""
    holder = ls[L, _L_HOLDER]
    bkind = ls[L, _L_BKIND]
    bid = ls[L, _L_BID]
    if bkind == BK_SECTION:
        sc.sec_hold[bid] = t - ls[L, _L_GRANT]
    elif bkind == BK_PROGRAM:
        sc.lr_hold[bid] = t - ls[L, _L_GRANT]
    ls[L, _L_HOLDER] = -1
    ls[L, _L_TIMED] = -1
    ls[L, _L_LAST_RELEASE] = t
    w = ls[L, _L_QHEAD]
    if w < 0:
        return
    nxt = cs[w, _C_NEXT]
    ls[L, _L_QHEAD] = nxt
    if nxt < 0:
        ls[L, _L_QTAIL] = -1
    cs[w, _C_NEXT] = -1
    cs[w, _C_WAIT_LOCK] = -1
    cs[w, _C_STATE] = 0
    if cs[w, _C_STEP] < 0:  # a section's request
        i = cs[w, _C_POS]
        s = it.sec[i]
        sc.sec_bkind[s] = bkind
        sc.sec_bid[s] = bid
        sc.sec_bcpu[s] = holder
        _grant(ls, L, w, t, BK_SECTION, s)
        _record_section_grant(it, sc, cs, w, t)
        _after_section_grant(it, sc, cs, ls, ht, hk, hn, w, ncpu)
    else:
        r = cs[w, _C_WAIT_REC]
        sc.lr_bkind[r] = bkind
        sc.lr_bid[r] = bid
        sc.lr_bcpu[r] = holder
        _grant(ls, L, w, t, BK_PROGRAM, r)
        _record_program_grant(sc, cs, w, t)
        cs[w, _C_STEP] += 1
    _heap_push(ht, hk, hn, cs[w, _C_CLOCK], _H_CPU * (ncpu + 1 + ls.shape[0]) + w)


@kernel(nrt=False)
def _schedule_section_release(it: Items, sc: Schedule, cs: np.ndarray, ls: np.ndarray, ht: np.ndarray,
                              hk: np.ndarray, hn: np.ndarray, c: int, ncpu: int) -> None:
    """CPU ``c`` has left its open section: its lock is released ``hold`` after the grant plus
    what the CPU was delayed by inside it (and not before the CPU's last action in it)."""
    s = cs[c, _C_OPEN_SEC]
    L = cs[c, _C_OPEN_LOCK]
    cs[c, _C_OPEN_SEC] = -1
    cs[c, _C_OPEN_LOCK] = -1
    if s < 0 or ls[L, _L_HOLDER] != c or ls[L, _L_BKIND] != BK_SECTION or ls[L, _L_BID] != s:
        return  # (ended early by the CPU's own later request)
    inside = cs[c, _C_DELAY] - cs[c, _C_OPEN_DELAY]
    rel = sc.sec_grant[s] + cs[c, _C_OPEN_HOLD] + inside
    if rel < cs[c, _C_CLOCK]:
        rel = cs[c, _C_CLOCK]
    ls[L, _L_TIMED] = rel
    _heap_push(ht, hk, hn, rel, _H_RELEASE * (ncpu + 1 + ls.shape[0]) + L)


@kernel(nrt=False)
def _after_section_grant(it: Items, sc: Schedule, cs: np.ndarray, ls: np.ndarray, ht: np.ndarray, hk: np.ndarray,
                         hn: np.ndarray, c: int, ncpu: int) -> None:
    """The section item is done (granted): move on; release at once when no item of the CPU runs
    inside the section."""
    cs[c, _C_POS] += 1
    i = cs[c, _C_POS]
    s = cs[c, _C_OPEN_SEC]
    if i >= it.cpu_start[c + 1] or it.kind[i] != IT_PROGRAM or it.sec[i] != s:
        _schedule_section_release(it, sc, cs, ls, ht, hk, hn, c, ncpu)


@kernel(nrt=False)
def _overlapping_range(cs: np.ndarray, c: int, a: int, b: int, ncpu: int) -> int:
    """A CPU other than ``c`` with an accepting_list range overlapping [a, b) (-1: none)."""
    for d in range(ncpu):
        if d != c and cs[d, _C_RANGE1] > cs[d, _C_RANGE0] and cs[d, _C_RANGE0] < b and a < cs[d, _C_RANGE1]:
            return d
    return -1


@kernel(nrt=False)
def _wake_range_waiters(cs: np.ndarray, ht: np.ndarray, hk: np.ndarray, hn: np.ndarray, c: int, t: int,
                        ncpu: int, nlocks: int) -> None:
    """CPU ``c``'s range left accepting_list at ``t``: the CPUs spinning on it look again then."""
    for d in range(ncpu):
        if cs[d, _C_WAIT_RANGE] == c:
            cs[d, _C_WAIT_RANGE] = -1
            cs[d, _C_STATE] = 0
            cs[d, _C_CLOCK] = t
            _heap_push(ht, hk, hn, t, _H_CPU * (ncpu + 1 + nlocks) + d)


@kernel(nrt=False)
def _run_step(it: Items, sp: Steps, sc: Schedule, cs: np.ndarray, ls: np.ndarray, ht: np.ndarray, hk: np.ndarray,
              hn: np.ndarray, c: int, ncpu: int) -> bool:
    """One step of CPU ``c``'s program at its clock; False when the CPU must wait (queued or spinning)."""
    nl = ls.shape[0]
    j = cs[c, _C_STEP]
    op = sp.op[j]
    t = cs[c, _C_CLOCK]
    i = cs[c, _C_POS]
    if op == OP_WORK:
        d = sp.d[j]
        cs[c, _C_CLOCK] = t + d
        cs[c, _C_DELAY] += d
        sc.it_added[i] += d
    elif op == OP_ACQ:
        L = int(sp.a[j])
        if cs[c, _C_OPEN_SEC] >= 0 and cs[c, _C_OPEN_LOCK] == L:
            cs[c, _C_NEST] += 1  # the section it runs inside holds it already
            sc.nested[0] += 1
        else:
            if ls[L, _L_HOLDER] == c and ls[L, _L_BKIND] == BK_SECTION:
                _release(it, sc, cs, ls, ht, hk, hn, L, t, ncpu)  # an earlier section, left: it ends here
                sc.early[0] += 1
            r = sc.lr_n[0]
            sc.lr_n[0] = r + 1
            sc.lr_item[r] = i
            sc.lr_lock[r] = L
            sc.lr_cpu[r] = c
            sc.lr_req[r] = t
            sc.lr_wait[r] = 0
            sc.lr_hold[r] = 0
            if ls[L, _L_HOLDER] < 0 and ls[L, _L_QHEAD] < 0:
                _grant(ls, L, c, t, BK_PROGRAM, r)
            else:
                cs[c, _C_WAIT_LOCK] = L
                cs[c, _C_WAIT_REC] = r
                cs[c, _C_WAIT_SINCE] = t
                cs[c, _C_STATE] = 1
                tail = ls[L, _L_QTAIL]
                if tail < 0:
                    ls[L, _L_QHEAD] = c
                else:
                    cs[tail, _C_NEXT] = c
                ls[L, _L_QTAIL] = c
                return False
    elif op == OP_REL:
        L = int(sp.a[j])
        if cs[c, _C_OPEN_SEC] >= 0 and cs[c, _C_OPEN_LOCK] == L and cs[c, _C_NEST] > 0:
            cs[c, _C_NEST] -= 1
        elif ls[L, _L_HOLDER] == c:
            _release(it, sc, cs, ls, ht, hk, hn, L, t, ncpu)
    elif op == OP_RANGE_WAIT:
        d = _overlapping_range(cs, c, int(sp.a[j]), int(sp.b[j]), ncpu)
        r = cs[c, _C_SPIN_REC]
        if d >= 0:
            if r < 0:  # the first look: a record for the whole spin
                r = sc.lr_n[0]
                sc.lr_n[0] = r + 1
                sc.lr_item[r] = i
                sc.lr_lock[r] = -1
                sc.lr_cpu[r] = c
                sc.lr_req[r] = t
                sc.lr_wait[r] = 0
                sc.lr_hold[r] = 0
                sc.lr_bkind[r] = BK_RANGE
                sc.lr_bid[r] = cs[d, _C_RANGE_ITEM]
                sc.lr_bcpu[r] = d
                cs[c, _C_SPIN_REC] = r
            cs[c, _C_WAIT_RANGE] = d
            cs[c, _C_WAIT_SINCE] = t
            cs[c, _C_STATE] = 1
            return False  # (woken when that range is deleted; the step runs again then)
        cs[c, _C_SPIN_REC] = -1
    elif op == OP_RANGE_ADD:
        cs[c, _C_RANGE0] = sp.a[j]
        cs[c, _C_RANGE1] = sp.b[j]
        cs[c, _C_RANGE_ITEM] = i
    elif op == OP_RANGE_DEL:
        cs[c, _C_RANGE0] = 0
        cs[c, _C_RANGE1] = 0
        _wake_range_waiters(cs, ht, hk, hn, c, t, ncpu, nl)
    cs[c, _C_STEP] = j + 1
    return True


@kernel(nrt=False)
def _spin_done(sc: Schedule, cs: np.ndarray, c: int) -> None:
    """CPU ``c`` looks at accepting_list again after spinning: the time spun is its wait."""
    r = cs[c, _C_SPIN_REC]
    w = cs[c, _C_CLOCK] - cs[c, _C_WAIT_SINCE]
    sc.lr_wait[r] += w
    cs[c, _C_DELAY] += w
    sc.it_added[cs[c, _C_POS]] += w
    sc.it_wait[cs[c, _C_POS]] += w


@kernel(nrt=False)
def _start_item(it: Items, sc: Schedule, cs: np.ndarray, ls: np.ndarray, ht: np.ndarray, hk: np.ndarray,
                hn: np.ndarray, c: int, ncpu: int) -> bool:
    """Begin CPU ``c``'s next item at its clock; False when it waits for the section's lock."""
    i = cs[c, _C_POS]
    t = cs[c, _C_CLOCK]
    sc.it_start[i] = t
    if it.kind[i] == IT_PROGRAM:
        cs[c, _C_STEP] = it.s0[i]
        return True
    s = it.sec[i]
    L = it.lock[i]
    sc.sec_req[s] = t
    cs[c, _C_WAIT_SINCE] = t
    if ls[L, _L_HOLDER] == c and ls[L, _L_BKIND] == BK_SECTION:
        _release(it, sc, cs, ls, ht, hk, hn, L, t, ncpu)  # its own previous section, left: it ends here
        sc.early[0] += 1
    if ls[L, _L_HOLDER] < 0 and ls[L, _L_QHEAD] < 0:
        _grant(ls, L, c, t, BK_SECTION, s)
        _record_section_grant(it, sc, cs, c, t)
        _after_section_grant(it, sc, cs, ls, ht, hk, hn, c, ncpu)
        return True
    cs[c, _C_WAIT_LOCK] = L
    cs[c, _C_STATE] = 1
    tail = ls[L, _L_QTAIL]
    if tail < 0:
        ls[L, _L_QHEAD] = c
    else:
        cs[tail, _C_NEXT] = c
    ls[L, _L_QTAIL] = c
    return False


@kernel(nrt=False)
def _finish_program(it: Items, sc: Schedule, cs: np.ndarray, ls: np.ndarray, ht: np.ndarray, hk: np.ndarray,
                    hn: np.ndarray, c: int, ncpu: int) -> None:
    """CPU ``c``'s program is done: on to the next item (leaving the open section when that one
    is not inside it)."""
    cs[c, _C_STEP] = -1
    cs[c, _C_POS] += 1
    if cs[c, _C_OPEN_SEC] >= 0:
        i = cs[c, _C_POS]
        if i >= it.cpu_start[c + 1] or it.kind[i] != IT_PROGRAM or it.sec[i] != cs[c, _C_OPEN_SEC]:
            _schedule_section_release(it, sc, cs, ls, ht, hk, hn, c, ncpu)


@kernel_entry(nrt=False)
def schedule(it: Items, sp: Steps, sc: Schedule, n_locks: int, cs: np.ndarray, ls: np.ndarray, ht: np.ndarray,
             hk: np.ndarray, hn: np.ndarray) -> int:
    """Serve every item of every CPU in virtual-time order (module docstring); returns the CPUs
    still waiting at the end (0 unless a program never releases what another waits for).

    ``cs`` (CPUs x ``_C_LEN``), ``ls`` (``n_locks`` x ``_L_LEN``) and the heap (``ht``, ``hk``:
    CPUs + locks entries; ``hn``: 1) are scratch arrays the caller provides (``new_scratch``).
    """
    ncpu = it.cpu_start.shape[0] - 1
    nl = n_locks
    span = ncpu + 1 + nl
    for c in range(ncpu):
        cs[c, _C_POS] = it.cpu_start[c]
        cs[c, _C_STEP] = -1
        cs[c, _C_DELAY] = 0
        cs[c, _C_OPEN_SEC] = -1
        cs[c, _C_OPEN_LOCK] = -1
        cs[c, _C_WAIT_LOCK] = -1
        cs[c, _C_WAIT_REC] = -1
        cs[c, _C_NEXT] = -1
        cs[c, _C_WAIT_RANGE] = -1
        cs[c, _C_RANGE0] = 0
        cs[c, _C_RANGE1] = 0
        cs[c, _C_SPIN_REC] = -1
        cs[c, _C_STATE] = 2
        if cs[c, _C_POS] < it.cpu_start[c + 1]:
            cs[c, _C_STATE] = 0
            cs[c, _C_CLOCK] = it.ts[cs[c, _C_POS]]
            _heap_push(ht, hk, hn, cs[c, _C_CLOCK], _H_CPU * span + c)
    for L in range(nl):
        ls[L, _L_HOLDER] = -1
        ls[L, _L_QHEAD] = -1
        ls[L, _L_QTAIL] = -1
        ls[L, _L_TIMED] = -1
        ls[L, _L_LAST_RELEASE] = -1
    while hn[0] > 0:
        t = ht[0]
        key = hk[0]
        _heap_pop(ht, hk, hn)
        kind = key // span
        x = key % span
        if kind == _H_RELEASE:
            if ls[x, _L_TIMED] == t:  # (not ended early meanwhile)
                _release(it, sc, cs, ls, ht, hk, hn, x, t, ncpu)
            continue
        c = x
        if cs[c, _C_STATE] != 0:
            continue
        if cs[c, _C_SPIN_REC] >= 0:  # woken from an accepting_list spin
            cs[c, _C_CLOCK] = t
            _spin_done(sc, cs, c)
        # run CPU c until it waits, finishes, or its next action lies after another pending one
        while True:
            if cs[c, _C_STEP] >= 0:
                j = cs[c, _C_STEP]
                if j >= it.s1[cs[c, _C_POS]]:
                    _finish_program(it, sc, cs, ls, ht, hk, hn, c, ncpu)
                    continue
                if not _run_step(it, sp, sc, cs, ls, ht, hk, hn, c, ncpu):
                    break
            else:
                i = cs[c, _C_POS]
                if i >= it.cpu_start[c + 1]:
                    cs[c, _C_STATE] = 2
                    sc.delay[c] = cs[c, _C_DELAY]
                    break
                start = it.ts[i] + cs[c, _C_DELAY]
                if start < cs[c, _C_CLOCK]:
                    start = cs[c, _C_CLOCK]
                cs[c, _C_CLOCK] = start
                if hn[0] > 0 and (ht[0] < start or (ht[0] == start and hk[0] < _H_CPU * span + c)):
                    _heap_push(ht, hk, hn, start, _H_CPU * span + c)
                    break
                if not _start_item(it, sc, cs, ls, ht, hk, hn, c, ncpu):
                    break
                continue
            # a step ran: go on unless another CPU's action comes first
            if hn[0] > 0 and (ht[0] < cs[c, _C_CLOCK] or (ht[0] == cs[c, _C_CLOCK] and hk[0] < _H_CPU * span + c)):
                _heap_push(ht, hk, hn, cs[c, _C_CLOCK], _H_CPU * span + c)
                break
    waiting = 0
    for c in range(ncpu):
        if cs[c, _C_STATE] == 1:
            waiting += 1
        sc.delay[c] = cs[c, _C_DELAY]
    return waiting


def new_scratch(n_cpus: int, n_locks: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The scratch arrays of ``schedule``."""
    cap = 2 * (n_cpus + n_locks) + 8
    return (np.zeros((max(n_cpus, 1), _C_LEN), np.int64), np.zeros((max(n_locks, 1), _L_LEN), np.int64),
            np.zeros(cap, np.int64), np.zeros(cap, np.int64), np.zeros(1, np.int64))


def run_schedule(it: Items, sp: Steps, n_sections: int, n_locks: int) -> tuple[Schedule, int]:
    """``schedule`` with fresh output and scratch arrays; (the schedule, CPUs left waiting)."""
    ncpu = len(it.cpu_start) - 1
    n_rec = int(np.count_nonzero((sp.op == OP_ACQ) | (sp.op == OP_RANGE_WAIT))) if len(sp.op) else 0
    sc = new_schedule(n_sections, len(it.k), n_rec + 1, ncpu)
    cs, ls, ht, hk, hn = new_scratch(ncpu, n_locks)
    waiting = schedule(it, sp, sc, n_locks, cs, ls, ht, hk, hn)
    return sc, int(waiting)


def check_exclusion(lock: np.ndarray, grant: np.ndarray, hold: np.ndarray) -> int:
    """Overlapping holds of one lock among the given holds (lock id, grant time, hold): the pairs
    of consecutive holds of a lock where the later is granted before the earlier is released.
    A hold of 0 ns is an empty interval (granted and released at one instant): it overlaps nothing."""
    held = hold > 0
    lock, grant, hold = lock[held], grant[held], hold[held]
    if len(lock) == 0:
        return 0
    order = np.lexsort((grant, lock))
    lk, g, h = lock[order], grant[order], hold[order]
    same = lk[1:] == lk[:-1]
    return int(np.count_nonzero(same & (g[1:] < g[:-1] + h[:-1])))
