"""Time order of a block's events: the per-CPU check (input order) and the sort by (ts, cpu).

A CPU's events reach the trace in its ring buffer's order, so its timestamps never go back; a
trace made of per-CPU dumps or merged by a tool is nearly sorted by (ts, cpu) as a whole.
"""

from __future__ import annotations

from .compile import kernel


@kernel()
def per_cpu_order_check(cpu, ts, last_ts, bad_idx):
    """Count events whose timestamp is below the previous one of the same CPU (input order).

    ``last_ts`` carries state across blocks (indexed by cpu, -1 = none yet);
    the first ``bad_idx.shape[0]`` offending positions are written to
    ``bad_idx``.  Returns the number of offending events.
    """
    nbad = 0
    for i in range(cpu.shape[0]):
        c = cpu[i]
        if ts[i] < last_ts[c]:
            if nbad < bad_idx.shape[0]:
                bad_idx[nbad] = i
            nbad += 1
        last_ts[c] = ts[i]
    return nbad


@kernel()
def sort_order(ts, cpu, idx):
    """Stable argsort by (ts, cpu) for nearly sorted input, written into ``idx``.

    Insertion sort: O(n + inversions); gives up (returns 2) past 32 inversions
    per element so the caller can use a real sort.  Returns 0 when the input
    was already in order (``idx`` untouched), 1 when ``idx`` holds the order.
    """
    n = ts.shape[0]
    in_order = True
    for i in range(1, n):
        if ts[i] < ts[i - 1] or (ts[i] == ts[i - 1] and cpu[i] < cpu[i - 1]):
            in_order = False
            break
    if in_order:
        return 0
    for i in range(n):
        idx[i] = i
    inversions = 0
    for i in range(1, n):
        j = i
        k = idx[i]
        while j > 0:
            p = idx[j - 1]
            if ts[p] > ts[k] or (ts[p] == ts[k] and cpu[p] > cpu[k]):
                idx[j] = p
                j -= 1
                inversions += 1
            else:
                break
        idx[j] = k
        if inversions > 32 * n:
            return 2
    return 1
