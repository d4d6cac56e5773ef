"""Per-block string tables of the scanner (comm, gfp text, names of other events).

An :class:`InternTable` is an open-addressing hash table (FNV-1a, linear probing, bytes
verified) over strings of the block itself: an entry is a (start, length) span of the block, and
its id is its order of first appearance.  The caller maps the ids of each block to global ids.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from .bytes import same
from .compile import kernel

#: ``slot``: entry id per slot (-1 empty); ``hash``: that entry's hash (read only where slot >= 0);
#: ``start``/``length``: the entries' spans; ``state``: see ``N``, ``SIZE``, ``LAST_*``
InternTable = namedtuple("InternTable", ("slot", "hash", "start", "length", "state"))

# state: entries, slots in use (a power of two), and the string looked up last with its id
N, SIZE, LAST_START, LAST_LEN, LAST_ID = range(5)

#: slots in use at first: filling tables sized for every line of a block cost more than the
#: interning itself, so a table starts small and doubles (and rehashes) when half full
FIRST_SIZE = 1024

_FNV_OFF = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


@kernel()
def new_table(cap):
    """An empty table with room for ``cap`` entries."""
    slots = 16
    while slots < 2 * cap + 2:
        slots *= 2
    size = min(slots, FIRST_SIZE)
    slot = np.empty(slots, np.int64)
    slot[:size] = -1
    state = np.zeros(5, np.int64)
    state[SIZE] = size
    state[LAST_LEN] = -1
    return InternTable(
        slot, np.empty(slots, np.uint64), np.empty(cap + 1, np.int64), np.empty(cap + 1, np.int64), state
    )


@kernel(_nrt=False)
def _fnv(buf, s, e):
    h = _FNV_OFF
    for i in range(s, e):
        h ^= np.uint64(buf[i])
        h *= _FNV_PRIME
    return h


@kernel(_nrt=False)
def _rehash(buf, t):
    """Re-insert every entry into the first ``state[SIZE]`` slots (ids unchanged)."""
    size = t.state[SIZE]
    t.slot[:size] = -1
    mask = size - 1
    for k in range(t.state[N]):
        h = _fnv(buf, t.start[k], t.start[k] + t.length[k])
        i = np.int64(h & np.uint64(mask))
        while t.slot[i] >= 0:
            i = (i + 1) & mask
        t.slot[i] = k
        t.hash[i] = h


@kernel(inline="always")
def intern(buf, s, e, nb, t):
    """Id of the string buf[s:e] of buf[:nb] in table ``t`` (a new id if it is not there yet)."""
    st = t.state
    if 2 * st[N] + 2 > st[SIZE]:
        st[SIZE] *= 2
        _rehash(buf, t)
    h = _fnv(buf, s, e)
    mask = st[SIZE] - 1
    i = np.int64(h & np.uint64(mask))
    n = e - s
    while True:
        sid = t.slot[i]
        if sid < 0:
            k = st[N]
            st[N] = k + 1
            t.slot[i] = k
            t.hash[i] = h
            t.start[k] = s
            t.length[k] = n
            return k
        if t.hash[i] == h and t.length[sid] == n and same(buf, t.start[sid], s, n, nb):
            return sid
        i = (i + 1) & mask


@kernel(inline="always")
def intern_repeated(buf, s, e, nb, t):
    """:func:`intern`, comparing with the string looked up last first (consecutive lines mostly
    share their comm and gfp text)."""
    st = t.state
    n = e - s
    if n == st[LAST_LEN] and same(buf, s, st[LAST_START], n, nb):
        return st[LAST_ID]
    k = intern(buf, s, e, nb, t)
    st[LAST_START] = s
    st[LAST_LEN] = n
    st[LAST_ID] = k
    return k
