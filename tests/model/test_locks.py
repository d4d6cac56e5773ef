"""The lock schedule (replay.model.locks) on small hand-made item lists, against hand computation."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as hs

from replay.model.locks import (BK_NONE, BK_PROGRAM, BK_RANGE, BK_SECTION, IT_PROGRAM, IT_SECTION, OP_ACQ, OP_RANGE_ADD,
                                OP_RANGE_DEL, OP_RANGE_WAIT, OP_REL, OP_WORK, Items, Steps, check_exclusion,
                                run_schedule)

G = 9  # the global accept lock's id in these scenarios (zone locks 0, 1)


def build(cpus: int, items: list[dict[str, Any]]) -> tuple[Items, Steps, int]:
    """Items (dicts: cpu, ts, and sec+lock+hold for a section or steps for a program) in the
    order given per CPU; returns (items, steps, sections)."""
    rows = sorted(enumerate(items), key=lambda p: (p[1]["cpu"], p[0]))
    op, a, b, d = [], [], [], []
    cols: dict[str, list[int]] = {k: [] for k in ("cpu", "k", "ts", "kind", "sec", "lock", "hold", "s0", "s1")}
    for k, (_, x) in enumerate(rows):
        cols["cpu"].append(x["cpu"])
        cols["k"].append(k)
        cols["ts"].append(x["ts"])
        if "steps" in x:
            cols["kind"].append(IT_PROGRAM)
            cols["sec"].append(x.get("inside", -1))
            cols["lock"].append(-1)
            cols["hold"].append(0)
            cols["s0"].append(len(op))
            for s in x["steps"]:
                op.append(s[0])
                a.append(s[1] if len(s) > 1 else 0)
                b.append(s[2] if len(s) > 2 else 0)
                d.append(s[3] if len(s) > 3 else 0)
            cols["s1"].append(len(op))
        else:
            cols["kind"].append(IT_SECTION)
            cols["sec"].append(x["sec"])
            cols["lock"].append(x["lock"])
            cols["hold"].append(x["hold"])
            cols["s0"].append(0)
            cols["s1"].append(0)
    cpu = np.array(cols["cpu"], np.int32)
    start = np.searchsorted(cpu, np.arange(cpus + 1)).astype(np.int64)
    it = Items(cpu=cpu, k=np.array(cols["k"], np.int64), ts=np.array(cols["ts"], np.int64),
               kind=np.array(cols["kind"], np.int8), sec=np.array(cols["sec"], np.int64),
               lock=np.array(cols["lock"], np.int32), hold=np.array(cols["hold"], np.int64),
               s0=np.array(cols["s0"], np.int64), s1=np.array(cols["s1"], np.int64), cpu_start=start)
    sp = Steps(op=np.array(op, np.int8), a=np.array(a, np.int64), b=np.array(b, np.int64), d=np.array(d, np.int64))
    return it, sp, sum(1 for x in items if "steps" not in x)


def work(ns: int) -> tuple[int, int, int, int]:
    return (OP_WORK, 0, 0, ns)


def accept_under_global_lock(fw: int) -> list[tuple[int, ...]]:
    """v1 / 6.5 ``accept_memory()``: the global lock held across the firmware call."""
    return [(OP_ACQ, G), work(fw), (OP_REL, G)]


def accept_accepting_list(u0: int, u1: int, fw: int) -> list[tuple[int, ...]]:
    """6.6+ ``accept_memory()``: register [u0, u1) on accepting_list, the call outside the lock."""
    return [(OP_RANGE_WAIT, u0, u1), (OP_ACQ, G), (OP_RANGE_ADD, u0, u1), (OP_REL, G), work(fw), (OP_ACQ, G),
            (OP_RANGE_DEL,), (OP_REL, G)]


def test_sections_far_apart_never_wait() -> None:
    it, sp, ns = build(2, [{"cpu": 0, "ts": 0, "sec": 0, "lock": 0, "hold": 100},
                           {"cpu": 1, "ts": 200, "sec": 1, "lock": 0, "hold": 50}])
    sc, waiting = run_schedule(it, sp, ns, 10)
    assert waiting == 0
    assert sc.sec_wait.tolist() == [0, 0] and sc.sec_hold.tolist() == [100, 50]
    assert sc.sec_bkind.tolist() == [BK_NONE, BK_NONE] and sc.delay.tolist() == [0, 0]


def test_firmware_under_zone_lock_blocks_every_cpu_of_the_zone() -> None:
    """v1: CPU 0 accepts (1 us of firmware) inside its rmqueue section; CPUs 1 and 2 ask for the
    same zone->lock at 50 and 60 ns and queue FIFO behind it."""
    it, sp, ns = build(3, [
        {"cpu": 0, "ts": 0, "sec": 0, "lock": 0, "hold": 100},
        {"cpu": 0, "ts": 10, "steps": accept_under_global_lock(1000), "inside": 0},
        {"cpu": 1, "ts": 50, "sec": 1, "lock": 0, "hold": 100},
        {"cpu": 2, "ts": 60, "sec": 2, "lock": 0, "hold": 100},
    ])
    sc, waiting = run_schedule(it, sp, ns, 10)
    assert waiting == 0
    # CPU 0: granted at 0, global lock 10..1010, zone->lock held 100 + 1000
    assert sc.sec_grant.tolist() == [0, 1100, 1200]
    assert sc.sec_wait.tolist() == [0, 1050, 1140]
    assert sc.sec_hold.tolist() == [1100, 100, 100]
    assert sc.sec_bcpu.tolist() == [-1, 0, 1] and sc.sec_bkind.tolist() == [BK_NONE, BK_SECTION, BK_SECTION]
    assert sc.delay.tolist() == [1000, 1050, 1140]
    n = int(sc.lr_n[0])
    assert n == 1 and sc.lr_lock[0] == G and sc.lr_req[0] == 10 and sc.lr_hold[0] == 1000 and sc.lr_wait[0] == 0
    assert sc.it_added.tolist() == [0, 1000, 1050, 1140]


def test_two_nodes_chain_behind_the_global_lock() -> None:
    """CPU 0 (node 0) holds the global lock across a firmware call inside its zone->lock; CPU 1
    (node 1) asks for it while holding node 1's zone->lock; CPU 2 (node 1) then waits for node
    1's zone->lock behind CPU 1.  With atomic bitmap updates (no global lock) the chain is gone."""
    items = [
        {"cpu": 0, "ts": 0, "sec": 0, "lock": 0, "hold": 100},
        {"cpu": 0, "ts": 10, "steps": accept_under_global_lock(1000), "inside": 0},
        {"cpu": 1, "ts": 20, "sec": 1, "lock": 1, "hold": 100},
        {"cpu": 1, "ts": 30, "steps": accept_under_global_lock(500), "inside": 1},
        {"cpu": 2, "ts": 40, "sec": 2, "lock": 1, "hold": 100},
    ]
    sc, _ = run_schedule(*build(3, items)[:2], 3, 10)
    # CPU 1 waits 10 -> 1010 for the global lock (held by CPU 0), works until 1510; node 1's
    # zone->lock is released at 20 + 100 + 980 + 500 = 1600, when CPU 2 gets it
    assert sc.lr_wait[:2].tolist() == [0, 980] and sc.lr_bcpu[1] == 0 and sc.lr_bkind[1] == BK_PROGRAM
    assert sc.sec_grant.tolist() == [0, 20, 1600] and sc.sec_wait.tolist() == [0, 0, 1560]
    assert sc.sec_bcpu[2] == 1 and sc.sec_hold[1] == 1580
    atomic = [dict(x, steps=[work(x["steps"][1][3])]) if "steps" in x else x for x in items]
    sc2, _ = run_schedule(*build(3, atomic)[:2], 3, 10)
    assert int(sc2.lr_n[0]) == 0  # no global lock at all
    assert sc2.sec_wait.tolist() == [0, 0, 580]  # 20 + 100 + 500 - 40


def test_accepting_list_guard_unit_collides_only_for_adjacent_blocks() -> None:
    """6.6+: CPU 0 accepts block units [0, 2) plus the guard unit 2; CPU 1's block [2, 4) (+ guard
    4) overlaps at unit 2 and spins until CPU 0's range is deleted; a disjoint block does not."""
    def trace(u: int) -> list[dict[str, Any]]:
        return [{"cpu": 0, "ts": 0, "steps": accept_accepting_list(0, 3, 1000)},
                {"cpu": 1, "ts": 100, "steps": accept_accepting_list(u, u + 3, 1000)}]

    sc, waiting = run_schedule(*build(2, trace(2))[:2], 0, 10)
    assert waiting == 0
    spins = [r for r in range(int(sc.lr_n[0])) if sc.lr_bkind[r] == BK_RANGE]
    assert len(spins) == 1 and sc.lr_cpu[spins[0]] == 1 and sc.lr_wait[spins[0]] == 900
    assert sc.delay.tolist() == [1000, 1900]
    sc, _ = run_schedule(*build(2, trace(4))[:2], 0, 10)
    assert all(sc.lr_bkind[r] != BK_RANGE for r in range(int(sc.lr_n[0])))
    assert sc.delay.tolist() == [1000, 1000]


def test_a_cpu_that_waits_is_delayed_afterwards() -> None:
    """CPU 1 waits 950 ns for the zone->lock at 50; its later section at 500 (trace time) starts
    at 500 + 950 and waits for nobody."""
    it, sp, ns = build(2, [
        {"cpu": 0, "ts": 0, "sec": 0, "lock": 0, "hold": 1000},
        {"cpu": 1, "ts": 50, "sec": 1, "lock": 0, "hold": 10},
        {"cpu": 1, "ts": 500, "sec": 2, "lock": 1, "hold": 10},
    ])
    sc, _ = run_schedule(it, sp, ns, 10)
    assert sc.sec_wait.tolist() == [0, 950, 0] and sc.sec_req.tolist() == [0, 50, 1450]


SECTIONS = hs.lists(hs.tuples(hs.integers(0, 3), hs.integers(0, 2_000), hs.integers(0, 1), hs.integers(1, 500),
                              hs.integers(0, 3_000)), min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(SECTIONS)
def test_one_holder_at_a_time_and_no_negative_wait(secs: list[tuple[int, int, int, int, int]]) -> None:
    """Random sections (some with firmware under the lock taken through the global lock): the
    holds of each lock never overlap, no wait is negative, every CPU finishes."""
    secs = sorted(secs, key=lambda s: (s[0], s[1]))
    items: list[dict[str, Any]] = []
    for i, (c, t, lock, hold, fw) in enumerate(secs):
        items.append({"cpu": c, "ts": t, "sec": i, "lock": lock, "hold": hold})
        if fw:
            items.append({"cpu": c, "ts": t, "steps": accept_under_global_lock(fw), "inside": i})
    it, sp, ns = build(4, items)
    sc, waiting = run_schedule(it, sp, ns, 10)
    assert waiting == 0
    assert (sc.sec_wait[:ns] >= 0).all() and (sc.sec_hold[:ns] >= 0).all()
    n = int(sc.lr_n[0])
    assert (sc.lr_wait[:n] >= 0).all()
    locks = np.concatenate([it.lock[it.kind == IT_SECTION][np.argsort(it.sec[it.kind == IT_SECTION])],
                            sc.lr_lock[:n]])
    grant = np.concatenate([sc.sec_grant[:ns], sc.lr_req[:n] + sc.lr_wait[:n]])
    hold = np.concatenate([sc.sec_hold[:ns], sc.lr_hold[:n]])
    assert check_exclusion(locks, grant, hold) == 0
