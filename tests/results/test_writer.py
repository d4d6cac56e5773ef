"""replay/results/writer.py: per-policy parts streamed in any order give the same bytes as the
whole tables written at once; a failure leaves no partial file and no summary."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from replay.results import writer as W
from replay.results.folder import POLICY_RESULT_FILES

POLICIES = ["none", "list-6.6", "v1-buddy-global-lock"]


def _part(i: int, n: int, seed: int) -> pa.Table:
    """A results-like table: the policy as a dictionary column, 64-bit and small integers, a string."""
    rng = np.random.default_rng(seed)
    policy = pa.DictionaryArray.from_arrays(pa.array(np.full(n, i, np.int8)), pa.array(POLICIES))
    comm = pa.array(rng.choice(["bash", "kworker/0:1", "systemd"], n)).dictionary_encode()
    return pa.table({"policy": policy, "seq": pa.array(np.arange(n, dtype=np.int64) + seed),
                     "ns": pa.array(rng.integers(0, 1 << 40, n)), "cpu": pa.array(rng.integers(0, 4, n).astype(np.int16)),
                     "comm": comm})


def _digests(d: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir())}


@pytest.mark.parametrize("sizes", [(2500, 1, 3100), (0, 0, 0), (1000, 1000, 0), (999, 2, 3)])
def test_streamed_out_of_order_equals_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            sizes: tuple[int, int, int]) -> None:
    from replay.results.tables import write_policy_results

    monkeypatch.setattr(W, "ROW_GROUP", 1000)  # several row groups, some crossing policies
    parts = [{n: _part(i, sizes[i] + (7 if n == "events" else 0), 10 * i + k) for k, n in enumerate(W.STREAMED)}
             for i in range(3)]
    small = {n: _part(0, 3, 99) for n in POLICY_RESULT_FILES if n not in W.STREAMED}
    md = {"tool_version": "test", "mode": "exact"}
    whole = {n: pa.concat_tables([p[n] for p in parts]) for n in W.STREAMED}
    write_policy_results(tmp_path / "whole", {**whole, **small}, md)
    with W.ResultsWriter(tmp_path / "streamed", POLICIES, md) as w:
        left = {}
        for i in (2, 0, 1):  # the last policy first: it waits for the two before it
            left[i] = w.offer(POLICIES[i], parts[i])
            assert all(t.num_rows == 0 for t in left[i].values())
        w.finish([(left[i], {"policy": POLICIES[i]}) for i in range(3)], small)
    assert _digests(tmp_path / "streamed") == _digests(tmp_path / "whole")
    assert sorted(_digests(tmp_path / "whole")) == sorted(f"{n}.parquet" for n in POLICY_RESULT_FILES)


def test_failure_leaves_no_partial_and_no_summary(tmp_path: Path) -> None:
    d = tmp_path / "res"
    d.mkdir()
    (d / "summary.parquet").write_bytes(b"an earlier run")
    with pytest.raises(RuntimeError, match="never offered"), W.ResultsWriter(d, POLICIES, {}) as w:
        w.offer("none", {n: _part(0, 5, 1) for n in W.STREAMED})
        w.finish([], {})
    assert list(d.iterdir()) == []


def test_a_table_written_ahead_equals_one_written_at_the_end(tmp_path: Path) -> None:
    """``write_now`` (the anomalies, written while the policies still run) gives the bytes ``finish``
    would have written, and ``finish`` then needs no table of that name."""
    parts = [{n: _part(i, 50 + i, 10 * i + k) for k, n in enumerate(W.STREAMED)} for i in range(3)]
    small = {n: _part(0, 3 + k, 99 + k) for k, n in enumerate(POLICY_RESULT_FILES) if n not in W.STREAMED}
    md = {"tool_version": "test"}
    folders = []
    for ahead in (False, True):
        d = tmp_path / f"ahead-{ahead}"
        with W.ResultsWriter(d, POLICIES, md) as w:
            if ahead:
                w.write_now("anomalies", small["anomalies"])
                assert (d / ".anomalies.parquet.partial").exists() and not (d / "anomalies.parquet").exists()
            left = [w.offer(POLICIES[i], parts[i]) for i in range(3)]
            others = {n: t for n, t in small.items() if not (ahead and n == "anomalies")}
            w.finish([(left[i], {"policy": POLICIES[i]}) for i in range(3)], others)
        folders.append(_digests(d))
    assert folders[0] == folders[1]
    assert "anomalies.parquet" in folders[1] and not any(n.endswith(".partial") for n in folders[1])
