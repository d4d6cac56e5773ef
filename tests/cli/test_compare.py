"""``pagereplay compare RESULTS_A RESULTS_B``: two real results folders (one trace, two cost presets)
side by side with the deltas B - A; the one-folder form (policies against ``none``) still works."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tests.conftest import SAMPLES

SMALL = SAMPLES / "debian12-6.1-small"
runner = CliRunner()


def _cli(*args: object):  # type: ignore[no-untyped-def]
    from replay.cli import app

    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("cmp")
    out = []
    for costs in ("tdx-4k", "snp-2m"):
        res = root / costs
        r = _cli("replay", SMALL / "trace.txt.zst", "--snapshot", SMALL / "proc_before", "--policy", "list-promo",
                 "--policy", "v1-buddy-global-lock", "--costs", costs, "-o", res, "--json")
        assert r.exit_code == 0, r.output
        out.append(res)
    return out[0], out[1]


def _summary(res: Path) -> dict[str, dict]:
    return {r["policy"]: r for r in pq.read_table(res / "summary.parquet").to_pylist()}


def test_compare_two_folders_json(two: tuple[Path, Path]) -> None:
    a, b = two
    r = _cli("compare", a, b, "--json")
    assert r.exit_code == 0, r.output
    cmp = json.loads(r.stdout)
    assert cmp["policies"] == ["none", "list-promo", "v1-buddy-global-lock"]
    assert cmp["only_a"] == [] and cmp["only_b"] == []
    assert cmp["differs"] == ["cost_preset"]  # same trace, mode and tool
    assert cmp["a"]["cost_preset"] == "tdx-4k" and cmp["b"]["cost_preset"] == "snp-2m"
    assert cmp["a"]["input_name"] == "trace.txt.zst"  # a file name, not a path of this machine
    sa, sb = _summary(a), _summary(b)
    for pol in cmp["policies"]:
        for k, v in cmp["rows"][pol].items():
            assert v == {"a": sa[pol][k], "b": sb[pol][k], "delta": sb[pol][k] - sa[pol][k]}, (pol, k)
    # the two platforms really differ on the firmware time of an accepting policy
    assert cmp["rows"]["list-promo"]["firmware_ns"]["delta"] != 0


def test_compare_two_folders_table(two: tuple[Path, Path]) -> None:
    a, b = two
    r = _cli("compare", a, b)
    assert r.exit_code == 0, r.output
    assert "A = tdx-4k:" in r.stdout and "B = snp-2m:" in r.stdout and "differ in: cost preset" in r.stdout
    assert "B - A" in r.stdout and "list-promo" in r.stdout and "firmware_ns" in r.stdout
    assert "not shown; --json has every row" in r.stdout  # none's firmware rows are 0 in both


def test_compare_with_itself_has_zero_deltas(two: tuple[Path, Path]) -> None:
    a, _ = two
    cmp = json.loads(_cli("compare", a, a, "--json").stdout)
    assert cmp["differs"] == []
    assert all(v["delta"] == 0 for rows in cmp["rows"].values() for v in rows.values())


def test_compare_one_folder_still_against_none(two: tuple[Path, Path]) -> None:
    a, _ = two
    r = _cli("compare", a, "--json")
    assert r.exit_code == 0, r.output
    cmp = json.loads(r.stdout)
    assert cmp["reference"] == "none"
    s = _summary(a)
    assert cmp["deltas"]["list-promo"]["firmware_ns"] == s["list-promo"]["firmware_ns"] - s["none"]["firmware_ns"]


def test_compare_bad_arguments(two: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = two
    r = _cli("compare", a, b, a)
    assert r.exit_code == 2 and "one or two results folders" in r.output
    r = _cli("compare", a, tmp_path / "nope")
    assert r.exit_code == 1 and "nope" in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1
