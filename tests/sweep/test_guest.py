"""Guest shapes: the traced memory inside a larger guest whose rest is never touched (docs/sweep.md)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from replay.sweep.grid import Point, expand_grid
from replay.sweep.guest import GuestShapeError, guest_boot, guest_shape, traced_bytes
from replay.sweep.point import PreparedTrace, prepare_trace, run_point
from replay.sweep.spec import spec_from_cli

G = 1 << 30
POLICIES = "none,firmware-eager,kernel-eager,list-promo,post-alloc"


@pytest.fixture(scope="module")
def sample(sample_capture: Path) -> tuple[PreparedTrace, dict[tuple[str, int | None, int | None], Point]]:
    """The sample capture prepared once, and its points by (policy, guest size, vCPUs)."""
    spec = spec_from_cli([str(sample_capture)], policies=[POLICIES], axes=["guest_size=traced,16G,64G",
                                                                           "vcpus=2"])
    points = expand_grid(spec)
    pt = prepare_trace(spec.traces[0], "sha", [p.name for p in spec.policies], "exact")
    return pt, {(p.policy.name, p.guest_bytes, p.vcpus): p for p in points}


def test_the_extra_memory_is_a_node_beyond_the_trace(sample) -> None:
    pt, _ = sample
    traced = pt.prep.layout
    shape = guest_shape(traced, 64 * G, 2)
    extra = shape.layout.zones[[z.node for z in shape.layout.zones].index(1)]
    assert extra.name == "Normal" and extra.zone_start_pfn >= max(z.zone_end_pfn for z in traced.zones)
    assert extra.zone_start_pfn * 4096 >= 4 * G and extra.zone_start_pfn % (G // 4096) == 0
    assert shape.present_bytes == traced_bytes(traced) + shape.extra_bytes
    assert 64 * G - shape.present_bytes < 4 << 20  # whole MAX_PAGE_ORDER blocks
    assert extra.present - extra.managed == shape.memmap_pages == shape.extra_pages * 64 // 4096
    assert shape.layout.nr_cpus == 2 and traced.nr_cpus == 4
    assert guest_shape(traced, None, None).is_traced
    with pytest.raises(GuestShapeError, match="smaller than the traced guest's RAM"):
        guest_shape(traced, 2 * G, None)


@pytest.mark.parametrize("policy", ["firmware-eager", "kernel-eager", "list-promo", "post-alloc"])
def test_the_traced_shape_costs_what_the_replay_charged(sample, policy: str) -> None:
    """The whole-guest boot cost of the traced shape is the replay's own (one cost model)."""
    from replay.sweep.point import _replay

    pt, pts = sample
    p = pts[policy, None, 2]
    run, _ = _replay(pt, p)
    shape = guest_shape(pt.prep.layout, None, pt.prep.layout.nr_cpus)
    assert shape.is_traced
    # the same guest seen as a shape of its own (one vCPU less, then back): guest_boot's path
    same = guest_boot(guest_shape(pt.prep.layout, traced_bytes(pt.prep.layout), 4), p.policy, p.costs,
                      p.firmware_accepted_bytes)
    assert same.boot["boot_accept_ns"] == pytest.approx(run.boot["boot_accept_ns"], rel=1e-12)
    assert same.boot["accepted_bytes"] == run.boot["accepted_bytes"] and same.extra_unaccepted_bytes == 0


@pytest.mark.parametrize("policy", ["firmware-eager", "kernel-eager"])
def test_a_bigger_guest_raises_eager_boot_cost_in_proportion(sample, policy: str) -> None:
    pt, pts = sample
    rows = {g: run_point(pt, pts[policy, g, 2]).row for g in (None, 16 * G, 64 * G)}
    base = rows[None]["boot_accept_ns"]
    d16, d64 = rows[16 * G]["boot_accept_ns"] - base, rows[64 * G]["boot_accept_ns"] - base
    e16, e64 = rows[16 * G]["extra_bytes"], rows[64 * G]["extra_bytes"]
    assert d16 > 0 and d64 / d16 == pytest.approx(e64 / e16, rel=0.01)
    assert rows[64 * G]["boot_accepted_bytes"] - rows[None]["boot_accepted_bytes"] == e64
    assert all(r["extra_unaccepted_bytes"] == 0 and r["unaccepted_bytes_end"] == 0 for r in rows.values())


def _same_tables(a: dict[str, pa.Table], b: dict[str, pa.Table], but: tuple[str, ...]) -> None:
    for name, table in a.items():
        if name not in but:
            assert table.equals(b[name]), name


def test_a_bigger_guest_leaves_the_replay_of_the_trace_unchanged(sample) -> None:
    pt, pts = sample
    small, big = run_point(pt, pts["none", None, 2]), run_point(pt, pts["none", 64 * G, 2])
    _same_tables(small.tables, big.tables, but=("timeseries",))
    ts_s, ts_b = small.tables["timeseries"], big.tables["timeseries"]
    assert ts_s.drop_columns(["accepted_bytes"]).equals(ts_b.drop_columns(["accepted_bytes"]))
    extra = big.row["extra_bytes"]
    assert [b - s for s, b in zip(ts_s.column("accepted_bytes").to_pylist(),
                                  ts_b.column("accepted_bytes").to_pylist())] == [extra] * ts_s.num_rows
    guest_cols = {"guest_size_bytes", "guest_present_bytes", "extra_bytes"}
    assert {k: v for k, v in small.row.items() if k not in guest_cols} == \
        {k: v for k, v in big.row.items() if k not in guest_cols}


def test_list_policies_keep_the_extra_memory_unaccepted(sample) -> None:
    pt, pts = sample
    small, big = run_point(pt, pts["list-promo", None, 2]), run_point(pt, pts["list-promo", 64 * G, 2])
    # the traced events replay the same (the boot-time firmware rows aside: the memmap of the extra memory)
    _same_tables(small.tables, big.tables, but=("timeseries", "firmware_calls"))
    for k in ("accepted_bytes", "firmware_ns", "added_ns", "alloc_added_p99_ns", "zone_lock_wait_ns"):
        assert small.row[k] == big.row[k], k
    shape = guest_shape(pt.prep.layout, 64 * G, 2)
    # all of it but its memmap (and the guard unit the traced zone's top memblock reaches into)
    assert shape.extra_bytes - shape.memmap_pages * 4096 - big.row["extra_unaccepted_bytes"] in (0, 2 << 20)
    su, bu = (t.tables["timeseries"].column("unaccepted_bytes").to_pylist() for t in (small, big))
    assert [b - s for s, b in zip(su, bu)] == [big.row["extra_unaccepted_bytes"]] * len(su)
    assert big.row["unaccepted_bytes_end"] == small.row["unaccepted_bytes_end"] + big.row["extra_unaccepted_bytes"]
    # boot pays only the extra memory's memmap (accepted by memblock)
    memmap_accept = big.row["boot_accepted_bytes"] - small.row["boot_accepted_bytes"]
    assert memmap_accept == shape.extra_bytes - big.row["extra_unaccepted_bytes"]
    eager = run_point(pt, pts["kernel-eager", 64 * G, 2]).row["boot_accept_ns"] - \
        run_point(pt, pts["kernel-eager", None, 2]).row["boot_accept_ns"]
    assert 0 < big.row["boot_accept_ns"] - small.row["boot_accept_ns"] < eager / 10
