"""A degenerate zone->lock calibration (too few bursts, every burst the same length, a slope <= 0)
falls back to DEFAULT_CALIBRATION's figure, says so in ``source``, and warns about nothing."""

from __future__ import annotations

import warnings

import numpy as np

from parsers.schema import Event
from replay.model.sections import DEFAULT_CALIBRATION, calibrate_events

ZL, DRAIN = int(Event.MM_PAGE_ALLOC_ZONE_LOCKED), int(Event.MM_PAGE_PCPU_DRAIN)


def _bursts(lengths: list[int], step_ns: list[int], kind: int = ZL) -> tuple[np.ndarray, ...]:
    """Bursts on CPU 0, 1 ms apart (so each is its own run), events ``step_ns`` apart within one."""
    ev, ts = [], []
    t = 0
    for n, step in zip(lengths, step_ns, strict=True):
        for i in range(n):
            ev.append(kind)
            ts.append(t + i * step)
        t += 1_000_000
    n = len(ev)
    return (np.array(ev, np.int8), np.array(ts, np.int64), np.zeros(n, np.int32),
            np.ones(n, np.int8) if kind == ZL else np.full(n, -1, np.int8))


def _calibrate(*arrays: np.ndarray):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # np.polyfit's RankWarning must not happen
        return calibrate_events(*arrays)


def test_bursts_of_one_length_fall_back_to_the_default() -> None:
    cal = _calibrate(*_bursts([4, 4, 4, 4, 4], [900, 1100, 1000, 950, 1050]))
    assert cal.refill_per_block_ns == DEFAULT_CALIBRATION.refill_per_block_ns
    assert cal.refill_base_ns == DEFAULT_CALIBRATION.refill_base_ns
    assert cal.refill_bursts == 5
    assert "default refill (all 5 bursts have 4 events: no slope)" in cal.source
    assert "default drain (0 bursts of 2+ events, 3 needed)" in cal.source


def test_a_real_slope_is_fitted_and_named_trace() -> None:
    cal = _calibrate(*_bursts([2, 3, 4, 5], [1000, 1000, 1000, 1000]))
    assert abs(cal.refill_per_block_ns - 1000.0) < 1e-6  # spans 1000, 2000, 3000, 4000 ns
    assert cal.source.startswith("trace; default drain")  # only the drain fell back
    assert "refill" not in cal.source


def test_a_negative_slope_falls_back() -> None:
    # longer bursts with shorter spans: the fit's slope is negative, the default is used
    cal = _calibrate(*_bursts([2, 3, 4, 5], [4000, 1000, 500, 200], kind=DRAIN))
    assert cal.drain_per_block_ns == DEFAULT_CALIBRATION.drain_per_block_ns
    assert "default drain (fitted slope" in cal.source
