"""The speed machinery (replay.pipeline.schedule): what it promises besides equal results."""

from __future__ import annotations

import sys

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
        _yield_to_baseline()
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    t = threading.Thread(target=follower)
    t.start()
    t.join()
    assert seen == [max(mine, FOLLOWER_NICE)]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine


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
