"""Small pieces of replay.policy_results checked against plain reference code."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as hs

from replay.policy_results import _nearest_sparse


def _nearest(x: np.ndarray, q: float) -> int:
    """Nearest rank over the whole array (what the summary's percentiles mean)."""
    if len(x) == 0:
        return 0
    s = np.sort(x)
    return int(s[int(round(q * (len(s) - 1)))])


@settings(max_examples=300, deadline=None)
@given(hs.lists(hs.integers(-5, 50).filter(lambda v: v != 0), max_size=40), hs.integers(0, 60),
       hs.sampled_from([0.0, 0.5, 0.9, 0.99, 0.999, 1.0]))
def test_percentile_without_the_zeros_equals_the_full_array(nz: list[int], zeros: int, q: float) -> None:
    nz_sorted = np.sort(np.array(nz, np.int64))
    full = np.concatenate([np.zeros(zeros, np.int64), nz_sorted])
    assert _nearest_sparse(nz_sorted, zeros, q) == _nearest(full, q)
