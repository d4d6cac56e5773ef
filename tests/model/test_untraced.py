"""Exact replay of the ``record --untraced`` kprobe rows (replay/model/untraced.py).

Small hand-written traces in tracefs ``trace`` text with kprobe lines (the format of
parsers/capture/untraced.py's docstring), parsed by the real parser and stepped one row at a time
through ``engine.exact_chunk`` on a hand-built buddy state, checking the free lists, the merges,
the pages' states and the invariants (pages conserved) after each row; then a real capture
(sample_traces/debian12-6.1-untraced-compaction) through ``pagereplay replay``'s pipeline.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from parsers.api import parse_text
from replay.events.arrays import FL_FREE_CORE, event_arrays, trace_of
from replay.model.anomalies import A_FREE_OF_FREE, A_ZL_INSIDE_FREE, N_KINDS
from replay.model.buddy import add_to_free_list
from replay.model.engine import exact_chunk
from replay.model.exact import set_allocated
from replay.model.invariants import check_invariants
from replay.model.profiles import PROFILES
from replay.model.replayed import new_replayed
from replay.model.sections import new_sections
from replay.model.state import MIGRATE_MOVABLE, MIGRATE_UNMOVABLE, PG_ALLOC, PG_BUDDY, PG_PCP, fa_list, new_state
from replay.model.untraced import (FL_KEPT, FL_UX_PAIRED, FL_UX_REFUSED, mark_untraced, take_off_buddy,
                                   untraced_summary, without_untraced)

VM = 0xFFFFEA0000000000
REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "sample_traces" / "debian12-6.1-untraced-compaction"
N = 4096  # one Normal zone [0, 4096): four order-10 blocks


def _page(pfn: int) -> str:
    return f"page={VM + pfn * 64:#x}"


def kp(name: str, pfn: int, *args: str, t: float, cpu: int = 0) -> str:
    """An entry kprobe line of ours (``name: (symbol+0x0/0x2b0) page=.. args vmemmap=..``)."""
    sym = {"isolate_free_page": "__isolate_free_page", "putback_isolated_page": "__putback_isolated_page",
           "free_pages_core": "__free_pages_core", "compaction_free": "compaction_free"}.get(name, name)
    page = _page(pfn).replace("page=", "folio=") if name == "compaction_free" else _page(pfn)
    return f"              sh-451     [{cpu:03d}] d..1. {t:12.6f}: {name}: ({sym}+0x0/0x2b0) " + " ".join(
        [page, *args, f"vmemmap={VM:#x}"])


def ret(name: str, value: int, *, t: float, cpu: int = 0) -> str:
    sym = {"isolate_free_page": "__isolate_free_page"}.get(name, name)
    return (f"              sh-451     [{cpu:03d}] d..1. {t:12.6f}: {name}_ret: (caller+0x261/0x410 <- {sym}) "
            f"ret={value}")


def free(pfn: int, order: int, *, t: float, cpu: int = 0) -> str:
    return f"              sh-451     [{cpu:03d}] ..... {t:12.6f}: mm_page_free: page=0000000000000000 pfn={pfn:#x} order={order}"


class Stepper:
    """A parsed trace, its event arrays (with the kprobe marks of ``profile``) and a model state of
    one Normal zone whose free blocks the test places; ``step()`` applies the next row."""

    def __init__(self, lines: list[str], profile: str = "6.1") -> None:
        t = parse_text("\n".join(lines) + "\n").table
        self.ea = event_arrays(t, with_gfp=False)
        self.kp = PROFILES[profile].params()
        self.deferred0 = self.ea.deferred.copy()
        mark_untraced(self.ea, self.kp)
        self.ea.first = np.zeros(0, np.int64)
        self.st = new_state(np.array([0]), np.array([N]), 2, profile_params=self.kp)
        n = len(self.ea)
        self.S = new_sections(n, 2)
        self.out = new_replayed(n, self.ea.pfn, N_KINDS)
        self.anom, self.acount = self.out.anom, self.out.acount
        self.k = 0

    def all_free(self) -> None:
        for h in range(0, N, 1024):
            add_to_free_list(self.st, h, 0, 10, MIGRATE_MOVABLE, False)

    def step(self) -> int:
        ea = self.ea
        exact_chunk(self.st, self.S, trace_of(ea), self.out, self.k, self.k + 1)
        self.k += 1
        rep = check_invariants(self.st)
        assert rep["ok"], rep  # lists consistent, pages conserved (free + pcp + allocated = present)
        return int(self.anom[self.k - 1])

    def free_blocks(self) -> set[tuple[int, int]]:
        heads = np.flatnonzero(self.st.pg_state == PG_BUDDY)
        return {(int(h), int(self.st.pg_order[h])) for h in heads}


def _held(st, i: int, o: int) -> None:
    """Block ``i`` of order ``o`` leaves the free block holding it (the rest stays free)."""
    assert take_off_buddy(st, i, 0, o, False, -1) in (0, A_ZL_INSIDE_FREE)
    set_allocated(st, i, 0, o, MIGRATE_MOVABLE, PG_ALLOC)


def test_isolate_split_page_and_the_targets_freed():
    """6.1 compaction: __isolate_free_page of a free order-2 block (ret=4), split_map_pages'
    split_page, the four order-0 targets freed later: every row agrees with the model; without
    the kprobe rows the first free is a free_of_free."""
    s = Stepper([kp("isolate_free_page", 0x100, "order=2", t=1.0), ret("isolate_free_page", 4, t=1.000001),
                 kp("split_page", 0x100, "order=2", t=1.1)] + [free(0x100 + j, 0, t=2.0 + j) for j in range(4)])
    s.all_free()
    _held(s.st, 0x104, 2)  # its buddy allocated: 0x100 is a free order-2 block
    assert (0x100, 2) in s.free_blocks()
    assert s.ea.deferred[0] & FL_UX_PAIRED and not s.ea.deferred[0] & FL_UX_REFUSED
    free0 = int(s.st.z_nr_free[0])
    assert s.step() == 0  # the entry: del_page_from_free_list, held by the compactor
    assert (0x100, 2) not in s.free_blocks() and s.st.pg_state[0x100] == PG_ALLOC and s.st.pg_order[0x100] == 2
    assert s.st.z_nr_free[0] == free0 - 4 and s.st.l_len[fa_list(s.st, 0, 2, MIGRATE_MOVABLE)] == 0
    assert s.step() == 0  # the return row: nothing more
    assert s.step() == 0  # split_page: four order-0 allocations
    assert [int(s.st.pg_state[0x100 + j]) for j in range(4)] == [PG_ALLOC] * 4
    assert [int(s.st.pg_order[0x100 + j]) for j in range(4)] == [0] * 4
    for j in range(4):
        assert s.step() == 0  # each target freed to this CPU's pcp list
        assert s.st.pg_state[0x100 + j] == PG_PCP
    assert s.st.z_nr_free[0] == free0 - 4 and s.st.z_nr_pcp[0] == 4
    # the same rows as exact replay had them before: the free of a block it holds free
    w = Stepper([kp("isolate_free_page", 0x100, "order=2", t=1.0), ret("isolate_free_page", 4, t=1.000001),
                 kp("split_page", 0x100, "order=2", t=1.1), free(0x100, 0, t=2.0)])
    w.ea = without_untraced(w.ea, w.deferred0)
    w.all_free()
    _held(w.st, 0x104, 2)
    assert [w.step() for _ in range(4)] == [0, 0, 0, A_FREE_OF_FREE]


def test_failed_return_leaves_the_block_free():
    """ret=0 (the watermark check refused): the entry row changes nothing, and says so."""
    s = Stepper([kp("isolate_free_page", 0x200, "order=9", t=1.0), ret("isolate_free_page", 0, t=1.000001)])
    s.all_free()
    before = s.free_blocks()
    assert s.ea.deferred[0] & FL_UX_REFUSED
    assert s.step() == 0 and s.step() == 0
    assert s.free_blocks() == before and s.st.z_nr_free[0] == N
    rep = untraced_summary(s.ea.ev, s.ea.deferred, s.anom, s.acount, s.acount)
    assert rep["events"]["isolate_free_page"] == {"rows": 1, "applied": 0, "refused": 1, "without_return": 0,
                                                 "contradicted": 0}
    assert rep["events"]["isolate_free_page_ret"]["paired_with"] == "isolate_free_page"


def test_putback_merges_to_the_tail():
    """Page reporting: __isolate_free_page of an order-4 block, its buddy freed meanwhile (no merge:
    the block is isolated), __putback_isolated_page: __free_one_page merges all the way to order
    10, at the tail of the list (FPI_TO_TAIL)."""
    s = Stepper([kp("isolate_free_page", 0x100, "order=4", t=1.0), ret("isolate_free_page", 16, t=1.000001),
                 free(0x110, 4, t=2.0), kp("putback_isolated_page", 0x100, "order=4", "mt=1", t=3.0)])
    s.all_free()
    _held(s.st, 0x110, 4)
    assert [s.step() for _ in range(2)] == [0, 0]
    assert s.st.pg_state[0x100] == PG_ALLOC
    assert s.step() == 0  # order 4 > costly: straight to the buddy, its buddy 0x100 is held
    assert (0x110, 4) in s.free_blocks() and s.st.z_nr_free[0] == N - 16
    merges = int(s.st.ctr[0])
    assert s.step() == 0
    assert s.free_blocks() == {(0, 10), (1024, 10), (2048, 10), (3072, 10)} and s.st.z_nr_free[0] == N
    assert s.st.ctr[0] - merges == 6  # orders 4 -> 10
    assert s.st.l_tail[fa_list(s.st, 0, 10, MIGRATE_MOVABLE)] == 0


def test_take_page_off_buddy_breaks_down_and_put_back_merges():
    """memory-failure: take_page_off_buddy of pfn 0x105 in a free order-10 block keeps that page
    and frees the rest (break_down_buddy_pages); put_page_back_buddy (ret true) merges it back;
    a second put_page_back_buddy whose ret is false changes nothing."""
    s = Stepper([kp("take_page_off_buddy", 0x105, t=1.0), ret("take_page_off_buddy", 1, t=1.000001),
                 kp("put_page_back_buddy", 0x105, t=2.0), ret("put_page_back_buddy", 1, t=2.000001),
                 kp("put_page_back_buddy", 0x105, t=3.0), ret("put_page_back_buddy", 0, t=3.000001)])
    s.all_free()
    assert s.step() == 0 and s.step() == 0
    assert s.st.pg_state[0x105] == PG_ALLOC and s.st.z_nr_free[0] == N - 1
    assert {(0x104, 0), (0x106, 1), (0x100, 2), (0x108, 3), (0x110, 4), (0x120, 5), (0x140, 6), (0x180, 7),
            (0x000, 8), (0x200, 9)} <= s.free_blocks()
    assert s.step() == 0 and s.step() == 0
    assert s.free_blocks() == {(0, 10), (1024, 10), (2048, 10), (3072, 10)}
    assert s.ea.deferred[4] & FL_UX_REFUSED
    assert s.step() == 0 and s.step() == 0 and s.st.z_nr_free[0] == N


def test_free_pages_core_brings_memory_in_at_the_tail():
    """__free_pages_core of an order-9 block the model never saw (a hole): the mm_page_free after
    it goes straight to the buddy tail (FPI_TO_TAIL), merging with its free buddy; no anomaly."""
    s = Stepper([kp("free_pages_core", 0x200, "order=9", t=1.0), free(0x200, 9, t=1.000002)])
    add_to_free_list(s.st, 0, 0, 9, MIGRATE_MOVABLE, False)
    for h in range(1024, N, 1024):
        add_to_free_list(s.st, h, 0, 10, MIGRATE_MOVABLE, False)
    s.st.z_present[0] = N - 512  # pfns 0x200-0x3ff: not present in the model yet
    assert s.ea.deferred[1] & FL_FREE_CORE
    assert s.step() == 0
    assert s.st.pg_state[0x200] == PG_ALLOC and s.st.z_present[0] == N
    assert s.step() == 0
    assert s.free_blocks() == {(0, 10), (1024, 10), (2048, 10), (3072, 10)}
    assert s.st.l_tail[fa_list(s.st, 0, 10, MIGRATE_MOVABLE)] == 0


@pytest.mark.parametrize("profile", ["6.1", "6.12"])
def test_compaction_free_keeps_the_page_from_6_9(profile):
    """6.12 compaction_free: free_pages_prepare traces mm_page_free, then the target goes back on
    cc->freepages: the page stays held.  6.1 traces no free there: the same free (were it in the
    trace) goes to the pcp list."""
    s = Stepper([kp("compaction_free", 0x300, t=1.0), free(0x300, 0, t=1.000001)], profile)
    s.all_free()
    _held(s.st, 0x300, 0)
    kept = profile == "6.12"
    assert bool(s.ea.deferred[1] & FL_KEPT) == kept
    assert s.step() == 0 and s.step() == 0
    assert s.st.pg_state[0x300] == (PG_ALLOC if kept else PG_PCP)


def test_split_large_buddy_moves_a_pcp_free_to_the_buddy():
    """6.12 split_large_buddy after a free the model put on the pcp list (the kernel freed it
    straight to the buddy): the page leaves the pcp list and merges."""
    lines = [free(0x300, 0, t=1.0),
             f"              sh-451     [000] d..1.     1.000001: split_large_buddy: (split_large_buddy+0x4/0x150) "
             f"page={VM + 0x300 * 64:#x} order=0 vmemmap={VM:#x}"]
    s = Stepper(lines, "6.12")
    s.all_free()
    _held(s.st, 0x300, 0)
    assert s.step() == 0 and s.st.pg_state[0x300] == PG_PCP
    assert s.step() == 0
    assert s.free_blocks() == {(0, 10), (1024, 10), (2048, 10), (3072, 10)} and s.st.z_nr_pcp[0] == 0


@pytest.mark.parametrize("profile", ["6.1", "6.12"])
def test_isolate_half_a_pageblock_retypes_it(profile):
    """__isolate_free_page of order >= pageblock_order - 1 makes the pageblock MOVABLE: 6.1 with
    set_pageblock_migratetype (the other half stays on its list), 6.12 with move_freepages_block
    (the other half moves to the MOVABLE list)."""
    s = Stepper([kp("isolate_free_page", 0x400, "order=8", t=1.0), ret("isolate_free_page", 256, t=1.000001)],
                profile)
    for h in range(0, N, 1024):
        if h != 0x400:
            add_to_free_list(s.st, h, 0, 10, MIGRATE_MOVABLE, False)
    # 0x400-0x5ff: one UNMOVABLE pageblock of two free order-8 halves; 0x600-0x7ff a MOVABLE one
    s.st.pb_mt[0x400 >> 9] = MIGRATE_UNMOVABLE
    add_to_free_list(s.st, 0x400, 0, 8, MIGRATE_UNMOVABLE, False)
    add_to_free_list(s.st, 0x500, 0, 8, MIGRATE_UNMOVABLE, False)
    add_to_free_list(s.st, 0x600, 0, 9, MIGRATE_MOVABLE, False)
    assert s.step() == 0
    assert s.st.pb_mt[0x400 >> 9] == MIGRATE_MOVABLE and s.st.pg_state[0x400] == PG_ALLOC
    assert s.st.pg_mt[0x500] == (MIGRATE_MOVABLE if profile == "6.12" else MIGRATE_UNMOVABLE)


def test_sample_capture_replays_its_kprobe_rows(tmp_path):
    """The bundled slice of a real --untraced capture (Debian 6.1 in qemu, compaction during the
    e2e workload): pagereplay replay applies every isolate_free_page and split_page row, each agreeing
    with the model, and names only the contention rows as not replayed."""
    from replay.pipeline.job import run_replay

    s = run_replay(SAMPLE, "exact", tmp_path / "res", snapshot=SAMPLE / "proc_before", workers=1)
    k = s["kprobes"]
    ev = k["events"]
    assert ev["isolate_free_page"]["rows"] == ev["isolate_free_page"]["applied"] == 230
    assert ev["split_page"]["rows"] == ev["split_page"]["applied"] == 193
    assert ev["isolate_free_page"]["refused"] == 0 and ev["isolate_free_page"]["without_return"] == 0
    assert all(d.get("contradicted", 0) == 0 for d in ev.values()), ev
    assert k["rows_applied"] == 423 and not k["anomalies_added"]
    assert s["events_not_replayed"] == {"contention_begin": 3, "contention_end": 3}
    assert s["invariants_ok"] is True and s["unexplained_anomalies"] == 0
