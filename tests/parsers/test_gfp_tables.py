"""The gfp bit tables per kernel version (parsers/gfp.py), and the text path's masks against the
raw gfp_t the binary twins recorded (trace.dat, perf.data of 6.1.192 and 6.12.117)."""

from __future__ import annotations

import pytest

from parsers.api import parse_files
from parsers.gfp import GFP_TABLES, decode_gfp, release_version, table_for_release
from tests.conftest import require_trace_file


def test_release_versions_and_tables():
    assert release_version("6.12.117+deb12-amd64") == (6, 12, 117)
    assert release_version("6.1.0-56-amd64") == (6, 1, 0)
    assert release_version("7.3.4+deb13-amd64") == (7, 3, 4)
    assert release_version("") is None and release_version("unknown") is None
    assert table_for_release("6.1.0-56-amd64") == "linux-6.1"
    assert table_for_release("6.12.117+deb12-amd64") == "linux-6.12"
    assert table_for_release("6.18.15+deb13-amd64") == "linux-6.12"
    assert table_for_release("7.3.4+deb13-amd64") == "linux-7.3"
    assert table_for_release(None) == "linux-6.1"


def test_masks_that_differ_between_versions():
    # include/linux/gfp_types.h: __GFP_ATOMIC (6.1 only) is in GFP_ATOMIC; GFP_NOWAIT has
    # __GFP_NOWARN in 6.12.117; no x86-64 build has the KASAN bits in GFP_HIGHUSER_MOVABLE
    assert decode_gfp("GFP_ATOMIC", "linux-6.1") == 0xA20
    assert decode_gfp("GFP_ATOMIC", "linux-6.12") == 0x820
    assert decode_gfp("GFP_NOWAIT", "linux-6.1") == 0x800
    assert decode_gfp("GFP_NOWAIT", "linux-6.12") == 0x2800
    for t in GFP_TABLES:
        assert decode_gfp("GFP_HIGHUSER_MOVABLE", t) == 0x100CCA
        assert decode_gfp("GFP_TRANSHUGE", t) == 0x1C24CA
        assert decode_gfp("GFP_KERNEL_ACCOUNT|__GFP_ZERO", t) == 0x400DC0
    assert decode_gfp("__GFP_ATOMIC", "linux-6.12") is None  # no such name after v6.4
    assert decode_gfp("GFP_KERNEL|__GFP_NO_OBJ_EXT", "linux-6.12") == 0x1000CC0
    assert decode_gfp("GFP_KERNEL|__GFP_NO_OBJ_EXT", "linux-7.3") is None
    assert decode_gfp("GFP_KERNEL|0x1000000", "linux-6.12") == 0x1000CC0


PAIRS = {
    "debian12-6.1-tracecmd": ("trace.dat.zst", "trace-cmd-report.txt.zst"),
    "debian12-6.12-tracecmd": ("trace.dat.zst", "trace-cmd-report.txt.zst"),
    "debian12-6.1-perf": ("perf.data.zst", "perf-script.txt.zst"),
    "debian12-6.12-perf": ("perf.data.zst", "perf-script.txt.zst"),
}


def _masks(table) -> dict[str, int]:
    g = table.select(["gfp_flags", "gfp_mask"]).to_pydict()
    return {t: m for t, m in zip(g["gfp_flags"], g["gfp_mask"]) if t is not None}


@pytest.mark.parametrize("folder", sorted(PAIRS))
def test_text_masks_equal_the_binary_twins(folder):
    d = require_trace_file(folder)
    b, t = PAIRS[folder]
    release = (d / "uname.txt").read_text().split()[2]  # uname -a: Linux <host> <release> ...
    binary = _masks(parse_files([d / b]).table)
    text = parse_files([d / t], kernel_version=release)
    assert text.metadata["pagereplay.gfp_bit_table"] == table_for_release(release)
    got = _masks(text.table)
    assert set(got) == set(binary)
    assert {k: hex(v) for k, v in got.items()} == {k: hex(v) for k, v in binary.items()}
