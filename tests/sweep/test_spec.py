"""The sweep spec: TOML and command line in, a validated spec (or one-line errors) out."""

from __future__ import annotations

from pathlib import Path

import pytest

from replay.sweep.grid import expand_grid
from replay.sweep.spec import AXES, SweepSpecError, load_spec, parse_axis_option, spec_from_cli

G = 1 << 30


def _toml(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "sweep.toml"
    p.write_text(text)
    return p


def test_toml_lists_ranges_and_defaults(tmp_path: Path, tiny_traces: list[Path]) -> None:
    p = _toml(tmp_path, f"""
traces = ["{tiny_traces[0]}", "{tiny_traces[1].parent}/b*.parquet"]
policies = ["none", "list-promo"]
costs = ["tdx-4k", "snp-2m"]
[axes]
unit = ["2M", "4M"]
guest_size = {{ from = "16G", to = "64G", factor = 2 }}
background_budget = {{ from = 0.1, to = 0.5, step = 0.2 }}
vcpus = [1, 8]
host_backing = "2M"
""")
    s = load_spec(p)
    assert [t.name for t in s.traces] == ["alpha", "beta"]
    assert [x.name for x in s.policies] == ["none", "list-promo"]
    assert [c.name for c in s.costs] == ["tdx-4k", "snp-2m"]
    axes = dict(s.axes)
    assert axes["unit"] == (2 << 20, 4 << 20)
    assert axes["guest_size"] == (16 * G, 32 * G, 64 * G)
    assert axes["background_budget"] == (0.1, 0.3, 0.5)
    assert axes["vcpus"] == (1, 8) and axes["host_backing"] == ("2M",)
    assert [n for n, _ in s.axes] == [n for n in AXES if n in axes]  # the one fixed axis order
    assert s.mode == "exact" and s.tables == ("timeseries", "attribution_cpu", "firmware_calls")


def test_command_line_replaces_the_files_values(tmp_path: Path, tiny_traces: list[Path]) -> None:
    p = _toml(tmp_path, f'traces = ["{tiny_traces[0]}"]\npolicies = ["kernel-eager"]\n[axes]\nvcpus = [1, 2]\n')
    s = spec_from_cli([str(tiny_traces[1])], policies=["none,list-6.6", "post-alloc"], costs=["snp-4k"],
                      axes=["vcpus=4", "guest_size=traced,8G..32G*2"], spec_file=p)
    assert [t.name for t in s.traces] == ["beta"]
    assert [x.name for x in s.policies] == ["none", "list-6.6", "post-alloc"]
    assert [c.name for c in s.costs] == ["snp-4k"]
    assert dict(s.axes) == {"vcpus": (4,), "guest_size": (None, 8 * G, 16 * G, 32 * G)}


def test_default_policies_are_every_preset(tiny_traces: list[Path]) -> None:
    from replay.acceptance.policies import PRESET_ORDER

    s = spec_from_cli([str(tiny_traces[0])])
    assert tuple(p.name for p in s.policies) == PRESET_ORDER and [c.name for c in s.costs] == ["tdx-4k"]


@pytest.mark.parametrize(("text", "value"), [
    ("unit=2M..8M*2", (2 << 20, 4 << 20, 8 << 20)),
    ("background_budget=0.1..0.9+0.2", (0.1, 0.3, 0.5, 0.7, 0.9)),
    ("vcpus=1..4", (1, 2, 3, 4)),
    ("init_threads=0,1,4..16*2", (0, 1, 4, 8, 16)),
    ("background_rate=512M,1G", (float(512 << 20), float(G))),
    ("calls_per_unit=merged,per-4k", ("merged", "per-4k")),
    ("firmware_accepted=0,512M,4G", (0, 512 << 20, 4 * G)),
])
def test_axis_options(text: str, value: tuple) -> None:
    assert parse_axis_option(text)[1] == value


def test_explicit_points(tmp_path: Path, tiny_traces: list[Path]) -> None:
    p = _toml(tmp_path, f'traces = ["{tiny_traces[0]}"]\n[[point]]\nguest_size = "64G"\nvcpus = 8\n'
                        '[[point]]\nunit = "4M"\n')
    s = load_spec(p)
    assert s.points == ((("guest_size", 64 * G), ("vcpus", 8)), (("unit", 4 << 20),)) and s.axes == ()


@pytest.mark.parametrize(("body", "message"), [
    ('polices = ["none"]', "unknown key 'polices'; did you mean 'policies'?"),
    ('[axes]\nuint = ["2M"]', "unknown axis 'uint'; did you mean 'unit'?"),
    ('[axes]\nunit = ["3M"]', "key 'unit_bytes': 3145728 is not a power of two"),
    ('[axes]\nbackground_budget = [1.5]', "axis background_budget: 1.5; allowed: a number from 0 to 1"),
    ('[axes]\nbackground_budget = [nan]', "axis background_budget: nan"),
    ('[axes]\nbackground_rate = [inf]', "axis background_rate: inf"),
    ('[axes]\nguest_size = ["-4G"]', "axis guest_size: expected a size"),
    ('[axes]\nguest_size = [0]', "axis guest_size: 0; allowed: a size > 0"),
    ('[axes]\nvcpus = [0]', "axis vcpus: 0; allowed: an integer >= 1"),
    ('[axes]\ninit_threads = [1.5]', "axis init_threads: 1.5"),
    ('[axes]\nhost_backing = ["2m"]', "'2m' is not allowed; did you mean '2M'?"),
    ('[axes]\nvcpus = [1, 1]', "the value 1 is listed twice"),
    ('[axes]\nvcpus = {from = 8, to = 1, step = 1}', "runs backwards"),
    ('[axes]\nvcpus = {from = 1, to = 8, factor = 1}', "factor 1; allowed: a number > 1"),
    ('[axes]\nvcpus = {from = 1, to = 8, stride = 1}', "unknown range key 'stride'"),
    ('[axes]\nhost_backing = {from = "4K", to = "2M", factor = 2}', "a range needs a numeric axis"),
    ('tables = ["timeseries", "event"]', "unknown table 'event'; did you mean 'events'?"),
    ('mode = "fast"', "key 'mode': 'fast'; allowed: exact, simulate"),
    ('policies = ["list-promoo"]', "unknown policy 'list-promoo'; did you mean 'list-promo'?"),
    ('costs = ["tdx4k"]', "unknown cost preset 'tdx4k'; did you mean 'tdx-4k'?"),
    ('[axes]\nvcpus = [1]\n[[point]]\nvcpus = 2', "not both"),
])
def test_errors_are_one_line_with_the_key(tmp_path: Path, tiny_traces: list[Path], body: str, message: str) -> None:
    p = _toml(tmp_path, f'traces = ["{tiny_traces[0]}"]\n{body}\n')
    with pytest.raises(SweepSpecError) as e:
        expand_grid(load_spec(p))  # (the policy's and the preset's own checks run on the grid's points)
    text = str(e.value)
    assert message in text and "\n" not in text and str(p) in text


def test_cli_axis_errors() -> None:
    with pytest.raises(SweepSpecError, match="expected NAME=V1,V2"):
        parse_axis_option("vcpus")
    with pytest.raises(SweepSpecError, match=r"range '1G..2G' needs \+STEP or \*FACTOR"):
        parse_axis_option("guest_size=1G..2G")


def test_traces_capture_folders_files_and_names(tmp_path: Path, sample_capture: Path, tiny_traces: list[Path]) -> None:
    s = spec_from_cli([str(sample_capture), str(tiny_traces[0])])
    cap, tiny = s.traces
    assert cap.name == "debian12-6.1-small" and cap.snapshot == sample_capture.resolve() / "proc_before"
    assert cap.path.name == "trace.txt.zst" and tiny.name == "alpha" and tiny.snapshot is None
    # a capture folder's own trace file is that capture (its snapshots, its name)
    assert spec_from_cli([str(sample_capture / "trace.txt.zst")]).traces == (cap,)
    with pytest.raises(SweepSpecError, match="two traces are named 'alpha'"):
        spec_from_cli([str(tiny_traces[0]), str(tiny_traces[0])])
    with pytest.raises(SweepSpecError, match="matches no file"):
        spec_from_cli([str(tmp_path / "*.nothing")])
    with pytest.raises(SweepSpecError, match="no such file or folder"):
        spec_from_cli([str(tmp_path / "missing.parquet")])
