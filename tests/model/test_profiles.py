"""Kernel profiles as data (replay/model/profiles.py): the switches per profile, the choice from
the option, the metadata and the trace, and the profile reaching the model state and summary."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from replay.model.profiles import (
    FALLBACK_CLAIM_STEAL,
    FALLBACK_V61,
    KP_FALLBACK,
    KP_ID,
    KP_MIGRATE_ISOLATE,
    KP_NR_PCP_LISTS,
    N_KP,
    PROFILES,
    heuristic_profile,
    pick_profile,
    profile_for_release,  # fmt: skip
    profile_name,
    profile_option,
)
from replay.model.state import new_state
from tests.conftest import require_trace_file


def test_releases_map_to_profiles():
    assert profile_for_release("6.1.0-56-amd64").name == "6.1"
    assert profile_for_release("6.12.117+deb12-amd64").name == "6.12"
    assert profile_for_release("6.18.15+deb13-amd64").name == "6.18"
    assert profile_for_release("7.3.4+deb13-amd64").name == "7.3"
    assert profile_for_release("5.15.0-91-generic").name == "6.1"  # the oldest modelled
    assert profile_for_release("no version") is None
    assert profile_option("6.12").name == "6.12"
    with pytest.raises(ValueError, match="profiles: 6.1, 6.12, 6.18, 7.3"):
        profile_option("latest")


def test_switches_per_profile():
    # docs/kernel-profiles.md section 1
    p61, p612, p73 = PROFILES["6.1"], PROFILES["6.12"], PROFILES["7.3"]
    assert p61.nr_pcp_lists == 14 and p61.fallback == FALLBACK_V61 and not p61.drain_mt_from_pageblock
    assert p612.fallback == FALLBACK_CLAIM_STEAL and p612.drain_mt_from_pageblock and p612.pcp_decay
    assert p73.migrate_isolate == 5 and PROFILES["6.18"].migrate_isolate == 4
    for name, p in PROFILES.items():
        kp = p.params()
        assert kp.dtype == np.int64 and kp.shape == (N_KP,)
        assert profile_name(kp) == name and kp[KP_ID] == list(PROFILES).index(name)
        assert kp[KP_NR_PCP_LISTS] == 14 and kp[KP_MIGRATE_ISOLATE] == p.migrate_isolate
        assert kp[KP_FALLBACK] == p.fallback


def test_pick_order_option_metadata_heuristic_default():
    md = {"pagereplay.kernel_release": "6.18.15+deb13-amd64", "pagereplay.kernel_version": "6.1.0-56-amd64"}
    assert pick_profile("6.12", md)[0].name == "6.12"
    assert pick_profile(None, md) == (PROFILES["6.18"], "kernel_release")
    assert pick_profile(None, {"pagereplay.kernel_version": "6.12.117+deb12-amd64"})[1] == "kernel_version"
    t = pa.table({"event": pa.array(["mm_page_alloc", "mm_page_free_batched"]).dictionary_encode(),
                  "order": pa.array([0, 2], pa.int8()),
                  "gfp_flags": pa.array(["GFP_KERNEL", None]).dictionary_encode()})
    assert pick_profile(None, {}, t) == (PROFILES["6.12"], "trace heuristic")
    assert pick_profile(None, {}, t.slice(0, 1)) == (PROFILES["6.1"], "default")
    assert heuristic_profile(["GFP_KERNEL|__GFP_NO_OBJ_EXT"], []) == "6.18"
    assert heuristic_profile(["GFP_ATOMIC|__GFP_ATOMIC"], [0]) == "6.1"


def test_state_carries_the_profile():
    st = new_state(np.array([0]), np.array([4096]), 2, profile_params=PROFILES["7.3"].params())
    assert profile_name(st.kp) == "7.3"
    assert profile_name(new_state(np.array([0]), np.array([4096]), 2).kp) == "6.1"


@pytest.mark.parametrize("folder, profile", [("debian12-6.12-small", "6.12"), ("debian13-6.18-small", "6.18")])
def test_replay_picks_the_profile_from_the_capture_folder(tmp_path, folder, profile):
    from replay.cli import app

    d = require_trace_file(folder)
    r = CliRunner().invoke(app, ["replay", str(d), "-o", str(tmp_path / "out"), "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["kernel_profile"] == profile and s["kernel_profile_source"] == "kernel_release"
    r = CliRunner().invoke(app, ["replay", str(d), "-o", str(tmp_path / "out2"), "--json", "--kernel", "6.1"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["kernel_profile"] == "6.1"


def test_bad_kernel_option_is_one_line(tmp_path):
    from replay.cli import app

    d = require_trace_file("debian12-6.1-small")
    r = CliRunner().invoke(app, ["replay", str(d), "-o", str(tmp_path / "o"), "--kernel", "newest"])
    assert r.exit_code != 0 and "Traceback" not in r.output and "--kernel" in r.output
