"""TOML configuration and --param overrides: values, and errors that name the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from parsers.synthetic.config import SynthConfigError, load_config, parse_param_overrides, parse_size
from parsers.synthetic.requests import RequestGenerator
from parsers.synthetic.workloads import ChurnParams


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "w.toml"
    p.write_text(text)
    return p


def test_named_workload_machine_and_params(tmp_path: Path) -> None:
    p = _write(tmp_path, 'workload = "churn"\nseed = 9\ncpus = 8\nmemory = "16G"\nevents = 1234\n[params]\nrate_per_cpu = 100\n[emit]\nbatch = 31\n')
    c = load_config(p)
    assert c.machine.cpus == 8 and c.machine.memory == 16 << 30 and c.machine.seed == 9 and c.machine.events == 1234
    assert isinstance(c.params, ChurnParams) and c.params.rate_per_cpu == 100.0
    assert c.emit.batch == 31
    # the command line wins over the file
    c = load_config(p, overrides={"rate_per_cpu": 7}, machine={"cpus": 2, "seed": None})
    assert c.params.rate_per_cpu == 7.0 and c.machine.cpus == 2 and c.machine.seed == 9
    assert c.parameters()["params"]["rate_per_cpu"] == 7.0


def test_mix_and_custom(tmp_path: Path) -> None:
    p = _write(
        tmp_path,
        'workload = "mix"\nevents = 2000\n[[mix]]\nworkload = "churn"\nweight = 3\n'
        '[[mix]]\nworkload = "page-cache"\nweight = 1\nparams = { window = 8 }\n',
    )
    c = load_config(p)
    assert [n for n, _, _ in c.mix] == ["churn", "page-cache"] and c.mix[1][2].window == 8.0
    assert sum(b.num_rows for b in RequestGenerator(c.build(), c.machine)) > 2000
    p = _write(
        tmp_path,
        'workload = "custom"\nevents = 500\n[[phase]]\nname = "s"\nrate_per_cpu = 500\n'
        '[[phase.stream]]\nname = "anon"\norders = { "0" = 0.9, "9" = 0.1 }\nlifetime = { median_us = 50, sigma = 1.0 }\n'
        'cpus = [0, 1]\n',
    )
    c = load_config(p)
    s = c.phases[0].streams[0]
    assert s.orders == {0: 0.9, 9: 0.1} and s.lifetime.median_us == 50.0 and s.cpus == (0, 1)
    cpus = {v for b in RequestGenerator(c.build(), c.machine) for v in b.column("cpu").to_pylist()}
    assert cpus <= {0, 1}


@pytest.mark.parametrize(
    "text,match",
    [
        ('workload = "nope"\n', r"w\.toml: workload 'nope' unknown"),
        ("bogus = 1\n", r"w\.toml: unknown key 'bogus'"),
        ('[params]\nrate_per_cpu = "fast"\n', r"w\.toml: \[params\]\.rate_per_cpu: expected a number"),
        ("[params]\nwhat = 1\n", r"w\.toml: \[params\]: unknown key 'what'"),
        ('memory = "lots"\n', r"w\.toml: memory: expected a size"),
        ("cpus = 0\n", r"w\.toml: cpus must be >= 1"),
        ('[emit]\nbatch = "x"\n', r"w\.toml: \[emit\]\.batch: expected an integer"),
        ('workload = "mix"\n', r"w\.toml: workload 'mix' needs \[\[mix\]\]"),
        ('workload = "mix"\n[[mix]]\nworkload = "boot"\n', r"w\.toml: mix\[0\]\.workload: 'boot' is not a steady"),
        ('workload = "custom"\n[[phase]]\nname = "x"\n', r"w\.toml: phase\[0\]: needs at least one"),
        ('workload = "custom"\n[[phase]]\n[[phase.stream]]\norders = { "x" = 1 }\n', r"phase\[0\]\.stream\[0\]\.orders\.x"),
        ('workload = "custom"\n[[phase]]\n[[phase.stream]]\nlifetime = { median = 1 }\n', r"stream\[0\]\.lifetime: unknown key 'median'"),
        ("seed = [\n", r"w\.toml: not valid TOML"),
    ],
)
def test_errors_name_file_and_key(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(SynthConfigError, match=match):
        load_config(_write(tmp_path, text))


def test_missing_file_and_overrides() -> None:
    with pytest.raises(SynthConfigError, match="nowhere.toml: no such file"):
        load_config("nowhere.toml")
    assert parse_param_overrides(["a=1", "b=0.5", "c=true", "d=hello", "e=[1, 2]"]) == {
        "a": 1, "b": 0.5, "c": True, "d": "hello", "e": [1, 2]}  # fmt: skip
    with pytest.raises(SynthConfigError, match="--param 'x': expected key=value"):
        parse_param_overrides(["x"])
    assert parse_size("4G") == 4 << 30 and parse_size("512M") == 512 << 20 and parse_size("1TiB") == 1 << 40
    with pytest.raises(SynthConfigError, match="--param"):
        load_config(None, workload="mix", overrides={"a": 1})
