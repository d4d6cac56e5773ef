"""Small pieces of replay.results.tables checked against plain reference code."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as hs

from replay.results.tables import _nearest_sparse


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


def test_chunked_column_reads_rows_as_the_contiguous_column() -> None:
    """``columns.ChunkedColumn`` (``seq`` left in its row-group chunks) gives, at any rows and as a
    whole, what the contiguous copy gives, nulls included."""
    import pyarrow as pa

    from replay.events.columns import ChunkedColumn, column_values

    rng = np.random.default_rng(7)
    parts = [rng.integers(0, 1 << 40, size=s) for s in (5, 1, 17, 0, 9)]
    chunks = [pa.array(p, pa.int64()) for p in parts] + [pa.array([3, None, 5], pa.int64())]
    col = pa.chunked_array(chunks, pa.int64())
    flat = column_values(pa.table({"seq": col}), "seq", np.int64, 0)
    lazy = ChunkedColumn(col, np.int64, 0)
    assert len(lazy) == len(flat) == 35
    rows = rng.integers(0, len(flat), size=50)
    assert np.array_equal(lazy[rows], flat[rows])
    assert np.array_equal(lazy[np.zeros(0, np.int64)], flat[:0])
    assert np.array_equal(np.asarray(lazy), flat) and np.asarray(lazy)[33] == 0


def test_repeated_zone_names_make_one_dictionary_entry_and_the_same_file(tmp_path) -> None:
    """Two nodes' zones share names ("Normal"): the dictionary holds each name once, the values
    are the names the codes stood for, and the Parquet file is the same bytes every time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from replay.results.tables import _dict, _dict_codes

    names = ["DMA", "DMA32", "Normal", "Normal"]
    a = _dict_codes(np.array([0, 1, 2, 3, 3], np.int32), names)
    assert a.dictionary.to_pylist() == ["DMA", "DMA32", "Normal"]
    assert a.to_pylist() == ["DMA", "DMA32", "Normal", "Normal", "Normal"]
    b = _dict(["Normal", "DMA"], names)
    assert b.dictionary.to_pylist() == ["DMA", "DMA32", "Normal"] and b.to_pylist() == ["Normal", "DMA"]
    blobs = set()
    for i in range(5):
        p = tmp_path / f"z{i}.parquet"
        pq.write_table(pa.table({"zone": a}), p, compression="zstd")
        blobs.add(p.read_bytes())
    assert len(blobs) == 1
