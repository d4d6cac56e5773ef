"""The speed machinery (replay.pipeline.schedule): what it promises besides equal results."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import pytest

from replay.events.arrays import event_arrays
from replay.model.layout_x86 import infer_layout
from replay.pipeline.schedule import PrefaultedBuffers, prefault_outputs, tiny_table
from replay.policy.prepare import prepare


def _tiny_prep():
    table = tiny_table(6656)
    layout = infer_layout((1 << 14) - (1 << 12), (1 << 14) + (1 << 13), nr_cpus=2)
    return prepare(table, layout, mode="exact", events=event_arrays(table, with_gfp=False))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
def test_followers_yield_the_cpu_to_the_baseline() -> None:
    """A follower thread lowers its own priority only (the baseline and the main thread keep theirs)."""
    import os
    import threading

    from replay.pipeline.schedule import FOLLOWER_NICE, _yield_to_baseline

    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    seen: list[int] = []

    def follower() -> None:
        old = _yield_to_baseline()
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        assert old == (mine if mine < FOLLOWER_NICE else None)

    t = threading.Thread(target=follower)
    t.start()
    t.join()
    assert seen == [max(mine, FOLLOWER_NICE)]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
def test_a_follower_takes_its_priority_back_where_allowed() -> None:
    """``_stop_yielding``: the nice value ``_yield_to_baseline`` took is given back where the system
    allows raising a priority (root, RLIMIT_NICE), else the thread stays lowered; never raises."""
    import os
    import resource
    import threading

    from replay.pipeline.schedule import FOLLOWER_NICE, _stop_yielding, _yield_to_baseline

    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    allowed = os.geteuid() == 0 or 20 - resource.getrlimit(resource.RLIMIT_NICE)[0] <= mine
    seen: list[int] = []

    def follower() -> None:
        _stop_yielding(_yield_to_baseline())
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    t = threading.Thread(target=follower)
    t.start()
    t.join()
    assert seen == [mine if allowed or mine >= FOLLOWER_NICE else FOLLOWER_NICE]


def test_the_baseline_state_copy_is_the_initial_state_once() -> None:
    """``PrefaultedBuffers.copy_from``: the first ``state_copy`` is the copy made on the side thread,
    equal to the initial state and sharing no array with it; later ones are fresh copies."""
    prep = _tiny_prep()
    buf = PrefaultedBuffers()
    buf.copy_from(prep.state)
    first, second = buf.state_copy(prep.state), buf.state_copy(prep.state)
    for a, b, c in zip(prep.state, first, second):
        assert np.array_equal(a, b) and np.array_equal(a, c)
        assert not np.shares_memory(a, b) and not np.shares_memory(a, c) and not np.shares_memory(b, c)


def test_prefaulted_outputs_are_taken_once_and_match_fresh_ones() -> None:
    """``prefault_outputs``: -1 sections and zones, 0 free-page deltas, for one recording baseline
    only; arrays of another length are not used."""
    n = len(_tiny_prep().events)
    buf = PrefaultedBuffers()
    buf.give_outputs(prefault_outputs(n + 1))  # wrong length: not used
    assert buf.recording_outputs(n) is None
    made = prefault_outputs(n)
    assert (made["out_sec"] == -1).all() and (made["out_zone"] == -1).all() and (made["dfree"] == 0).all()
    buf.give_outputs(made)
    assert buf.recording_outputs(n) is made and buf.recording_outputs(n) is None


def _enter_in_threads(gate, order: list[int], hold: float = 0.02) -> tuple[list[int], int]:
    """Runs ``order`` (each in its own thread, started in that order) through ``gate``; the order
    they got in, and the most inside at once."""
    import threading
    import time

    entered: list[int] = []
    inside = [0, 0]  # now, most
    lock = threading.Lock()

    def run(i: int) -> None:
        gate.enter(i)
        with lock:
            entered.append(i)
            inside[0] += 1
            inside[1] = max(inside[1], inside[0])
        time.sleep(hold)
        with lock:
            inside[0] -= 1
        gate.done(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in order]
    for t in threads:
        t.start()
        time.sleep(0.005)
    for t in threads:
        t.join(10)
        assert not t.is_alive(), "the gate let a run wait forever"
    return entered, inside[1]


def test_finish_gate_admits_runs_in_order_within_the_memory_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sections that fill the budget once: one run at a time, in policy order, whatever order the
    runs arrive in; twice as many fit: two at a time, still in order."""
    from replay.pipeline import schedule as S

    per = S.FINISH_BUDGET_BYTES // S.FINISH_BYTES_PER_SECTION
    entered, most = _enter_in_threads(S.FinishGate(5, lambda: per), [4, 2, 3, 0, 1])
    assert entered == [0, 1, 2, 3, 4] and most == 1
    assert S.FinishGate(5, lambda: per // 2).capacity() == 2
    entered, most = _enter_in_threads(S.FinishGate(5, lambda: per // 2), [4, 3, 2, 1, 0], hold=0.1)
    assert entered == [0, 1, 2, 3, 4] and most == 2


def test_finish_gate_is_open_when_every_run_fits_and_a_failed_run_blocks_nobody() -> None:
    """Few sections (a well-formed trace): no order is kept, nobody waits; a run that fails before
    entering (``done`` only) lets the next one in."""
    from replay.pipeline import schedule as S

    entered, most = _enter_in_threads(S.FinishGate(4, lambda: 10), [3, 2, 1, 0], hold=0.2)
    assert entered == [3, 2, 1, 0] and most == 4
    gate = S.FinishGate(3, lambda: 1 << 40)
    gate.done(1)  # failed before its end
    gate.enter(0)
    gate.done(0)
    entered, _ = _enter_in_threads(gate, [2])
    assert entered == [2]


def test_threads_bounded_by_memory_equal_one_after_the_other(monkeypatch: pytest.MonkeyPatch) -> None:
    """``run_policies`` with a budget that lets one run end at a time (the runs wait for each other
    in policy order): the tables of the same policies replayed one after the other."""
    from replay.pipeline import schedule as S
    from replay.results.tables import policy_tables
    from tests.helpers.replay import every_preset_on_a_generated_trace

    table, prep, pols, ctx, cost = every_preset_on_a_generated_trace()
    seen: list[int] = []
    enter = S.FinishGate.enter

    def spy(self: Any, i: int) -> None:
        assert self.capacity() == 1
        enter(self, i)
        seen.append(i)

    monkeypatch.setattr(S, "FINISH_BUDGET_BYTES", 1)
    monkeypatch.setattr(S.FinishGate, "enter", spy)
    _, bounded, _ = S.run_policies(prep, pols, cost, lambda run: policy_tables(prep, run, ctx), workers=2)
    assert seen == list(range(len(pols)))
    _, serial, _ = S.run_policies(prep, pols, cost, lambda run: policy_tables(prep, run, ctx), workers=1)
    assert [row for _, row in bounded] == [row for _, row in serial]
    for (ta, _), (tb, _) in zip(bounded, serial):
        assert set(ta) == set(tb) and all(ta[k].equals(tb[k]) for k in ta)



def test_the_cli_sets_up_the_process_before_numpy_and_arrow() -> None:
    """``replay.cli.main`` runs ``configure_process`` first; importing the CLI and the schedule
    imports neither NumPy nor Arrow, so the environment settings are in place when they load
    (NumPy's huge-page advice and Arrow's pool are read at import)."""
    import os
    import subprocess

    code = (
        "import gc, os, sys\n"
        "import replay.cli\n"
        "from replay.pipeline.schedule import configure_process\n"
        "assert 'numpy' not in sys.modules and 'pyarrow' not in sys.modules, sorted(sys.modules)\n"
        "configure_process()\n"
        "import numpy, pyarrow\n"
        "print(os.environ['NUMPY_MADVISE_HUGEPAGE'], os.environ['ARROW_DEFAULT_MEMORY_POOL'],\n"
        "      os.environ['OPENBLAS_NUM_THREADS'], gc.get_threshold()[0],\n"
        "      pyarrow.default_memory_pool().backend_name)\n"
    )
    env = {k: v for k, v in os.environ.items()
           if k not in ("NUMPY_MADVISE_HUGEPAGE", "ARROW_DEFAULT_MEMORY_POOL", "OPENBLAS_NUM_THREADS")}
    env["OPENBLAS_NUM_THREADS"] = "2"  # a value already set wins
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["0", "system", "2", "100000", "system"]
