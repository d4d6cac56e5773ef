"""Policies and cost presets as data: the presets, TOML loading, errors, and the two CLI commands."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from parsers.errors import PagereplayError
from parsers.units import parse_size
from replay.cli.policies import register
from replay.acceptance.costs import COST_PRESETS, CostConfigError, all_costs, get_costs, load_costs
from replay.acceptance.policies import (PRESETS, PV_TRIGGER, TRIGGERS, AcceptancePolicy, PolicyConfigError, Trigger,
                                        all_policies, load_policies, policy_vector)

SPEC_IDS = ["none", "firmware-eager", "kernel-eager", "v1-buddy-global-lock", "v1-buddy-atomic-bitmap",
            "post-alloc", "list-6.5", "list-6.6", "list-promo", "background"]


def test_ten_presets_of_spec_section_6_with_kernel_references():
    assert list(PRESETS) == SPEC_IDS
    for p in PRESETS.values():
        assert p.kernel_ref and p.kernel_version and p.history_ref, p.name
    assert [PRESETS[n].history_ref.split()[0] for n in SPEC_IDS[1:]] == \
        ["P0", "P1", "P2", "P2", "P3", "P4", "P4", "P5", "P6"]


def test_presets_are_distinct_points_of_the_design_space():
    keys = [tuple(tuple(v) if isinstance(v, list) else v for k, v in p.as_dict().items()
                  if k not in ("name", "description", "kernel_ref", "kernel_version", "history_ref", "source"))
            for p in PRESETS.values()]
    assert len(set(keys)) == len(keys)


def test_preset_fields_follow_the_history():
    assert PRESETS["list-6.5"].held_during_call == ("global_lock", "irqs_off")
    assert PRESETS["list-6.6"].held_during_call == ("irqs_off",)
    assert PRESETS["list-6.6"].collision == "spin_retry" and PRESETS["list-6.5"].collision == "none"
    assert "zone_lock" in PRESETS["v1-buddy-global-lock"].held_during_call
    assert PRESETS["v1-buddy-atomic-bitmap"].bitmap_locking == "atomic_bits"
    assert PRESETS["post-alloc"].bitmap_locking == "lockless_test"
    assert PRESETS["list-promo"].accept_target == "promo" and PRESETS["list-6.6"].accept_target == "high"
    assert PRESETS["list-promo"].one_block_when_wmark_zero and not PRESETS["list-6.6"].one_block_when_wmark_zero
    assert PRESETS["list-6.5"].unaccepted_unusable and not PRESETS["list-promo"].unaccepted_unusable
    assert not PRESETS["v1-buddy-global-lock"].guard_unit and PRESETS["list-6.5"].guard_unit


def test_cost_presets_every_figure_has_a_source():
    assert {"tdx-2m", "tdx-4k", "snp-2m", "snp-4k"} <= set(COST_PRESETS)
    for c in COST_PRESETS.values():
        relevant = ["cpu_ghz", "zero_gib_s", "accept_ceiling_gib_s", "list_op_ns", "bitmap_op_ns"]
        if c.platform == "tdx":
            relevant += ["tdcall_cycles", "tdx_exit_4k_ns", "tdx_exit_2m_ns", "tdx_fail_cycles", "mapgpa_ns"]
        else:
            relevant += ["psc_vmgexit_ns", "psc_max_entries", "psc_host_4k_ns", "psc_host_2m_ns",
                         "pvalidate_4k_cycles", "pvalidate_2m_cycles", "pvalidate_fail_cycles", "evict_4k_ns"]
        for k in relevant:
            src = c.sources.get(k, "")
            assert src.startswith(("estimate", "fitted", "kernel", "from ")), (c.name, k, src)


def test_trigger_labels_and_vector_ints_come_from_one_declaration():
    assert TRIGGERS == tuple(t.label for t in Trigger)
    for p in PRESETS.values():
        assert policy_vector(p)[PV_TRIGGER] == Trigger.of(p.trigger) == p.trigger_id
    assert {p.name for p in PRESETS.values() if p.lists_blocks} == {"list-6.5", "list-6.6", "list-promo", "background"}
    assert {p.name for p in PRESETS.values() if not p.acts_at_runtime} == {"none", "firmware-eager", "kernel-eager"}


def test_parse_size():
    assert parse_size("2M") == 2 << 20 and parse_size("4KiB") == 4096 and parse_size(8192) == 8192
    assert parse_size(" 1 g ") == 1 << 30 and parse_size("3MB") == 3 << 20
    with pytest.raises(PolicyConfigError, match=r'^unit_bytes: expected a size \(bytes or e.g. "2M", "4K"\)'):
        parse_size("two megs", where="unit_bytes", error=PolicyConfigError)
    for bad in (True, "1.5G", "2P", None):
        with pytest.raises(ValueError, match="^<value>: expected a size"):
            parse_size(bad)


# ------------------------------------------------------------------ policy TOML
def write(tmp_path, text, name="p.toml"):
    f = tmp_path / name
    f.write_text(text)
    return f


def test_user_policy_from_toml(tmp_path):
    f = write(tmp_path, """
[policy.promo-8m]
base = "list-promo"
description = "promo with 8 MiB units"
unit_bytes = "8M"

[policy.my-eager]
trigger = "kernel_boot"
accept_scope = "all"
init_threads = 4
""")
    pols = load_policies(f)
    assert pols["promo-8m"].unit_bytes == 8 << 20 and pols["promo-8m"].accept_target == "promo"
    assert pols["promo-8m"].source == str(f)
    assert "list-promo" in pols["promo-8m"].history_ref
    assert pols["my-eager"].init_threads == 4
    assert set(all_policies([f])) == set(PRESETS) | {"promo-8m", "my-eager"}
    assert all_policies([f])["my-eager"].trigger == "kernel_boot"


@pytest.mark.parametrize("body, words", [
    ('[policy.x]\nbase = "list-promo"\ntrigger = "sometimes"\n',
     ["[policy.x]", "'trigger'", "'sometimes'", "every_zone_visit", "on_buddy_alloc"]),
    ('[policy.x]\nbase = "list-promo"\nheld_during_call = ["zone_lock", "rcu"]\n',
     ["'held_during_call'", "'rcu'", "zone_lock, global_lock, irqs_off"]),
    ('[policy.x]\nbase = "list-promo"\nunit_bytes = "3M"\n', ["'unit_bytes'", "power of two"]),
    ('[policy.x]\nbase = "list-promo"\nunit_bytes = "lots"\n', ["'unit_bytes'", "\"2M\""]),
    ('[policy.x]\nbase = "list-promo"\ncolour = "red"\n', ["unknown key 'colour'", "bitmap_locking"]),
    ('[policy.x]\nbase = "list-9.9"\n', ["'base'", "'list-9.9'", "list-promo"]),
    ('[policy.x]\ndescription = "no trigger"\n', ["'trigger' is required", "kernel_boot"]),
    ('[policy.x]\nbase = "list-promo"\naccept_target = "none"\n', ["'accept_target'", "promo"]),
    ('[policy.x]\nbase = "list-6.6"\nheld_during_call = ["zone_lock"]\n', ["zone_lock", "on_buddy_alloc"]),
    ('[policy.x]\nbase = "background"\nbackground_cpu_budget = 2.5\n', ["'background_cpu_budget'", "0 .. 1"]),
    ('[policy.x]\nbase = "list-promo"\nguard_unit = "yes"\n', ["'guard_unit'", "true or false"]),
    ('[policy.x]\nbase = "list-promo"\ninit_threads = 1.5\n', ["'init_threads'", "integer"]),
    ('[policies.x]\nbase = "list-promo"\n', ["unknown top-level", "policies", "[policy.NAME]"]),
    ('[policy.x\n', ["not valid TOML"]),
])
def test_policy_toml_errors_name_file_key_and_allowed_values(tmp_path, body, words):
    f = write(tmp_path, body)
    with pytest.raises(PolicyConfigError) as e:
        load_policies(f)
    msg = str(e.value)
    assert str(f) in msg
    for w in words:
        assert w in msg, (w, msg)
    assert isinstance(e.value, PagereplayError)


def test_policy_missing_file(tmp_path):
    with pytest.raises(PolicyConfigError, match="not found"):
        load_policies(tmp_path / "nope.toml")


def test_policy_dataclass_validates_directly():
    with pytest.raises(PolicyConfigError, match="'bitmap_locking'"):
        AcceptancePolicy(name="x", description="", trigger="post_alloc", accept_scope="covering_units",
                         bitmap_locking="rwlock")


# ------------------------------------------------------------------ cost TOML
def test_cost_overrides_from_toml(tmp_path):
    f = write(tmp_path, """
[costs.my-tdx]
base = "tdx-4k"
cpu_ghz = 3.0
[costs.my-tdx.sources]
cpu_ghz = "lscpu on host X"

[costs.snp-4k]
evict_cache = false
psc_vmgexit_ns = 1500
""", "c.toml")
    got = load_costs(f)
    assert got["my-tdx"].cpu_ghz == 3.0 and got["my-tdx"].sources["cpu_ghz"] == "lscpu on host X"
    assert got["my-tdx"].tdx_exit_4k_ns == COST_PRESETS["tdx-4k"].tdx_exit_4k_ns
    assert got["snp-4k"].psc_vmgexit_ns == 1500.0
    assert got["snp-4k"].sources["psc_vmgexit_ns"] == f"override from {f}"
    assert not got["snp-4k"].evict_cache
    assert all_costs([f])["snp-4k"].psc_vmgexit_ns == 1500.0
    assert COST_PRESETS["snp-4k"].psc_vmgexit_ns != 1500.0  # presets untouched
    assert get_costs(str(f)).name == "my-tdx"


@pytest.mark.parametrize("body, words", [
    ('[costs.x]\ncpu_ghz = 2.0\n', ["'base' is required", "tdx-4k"]),
    ('[costs.x]\nbase = "tdx-1g"\n', ["'base'", "'tdx-1g'", "snp-2m"]),
    ('[costs.x]\nbase = "tdx-4k"\ntdcall_cycles = -5\n', ["'tdcall_cycles'", ">= 0"]),
    ('[costs.x]\nbase = "tdx-4k"\ntdcall_cycles = "fast"\n', ["'tdcall_cycles'", "a number"]),
    ('[costs.x]\nbase = "tdx-4k"\nplatform = "sev"\n', ["'platform'", "tdx, snp"]),
    ('[costs.x]\nbase = "tdx-4k"\nhost_backing = "1G"\n', ["'host_backing'", "4K, 2M"]),
    ('[costs.x]\nbase = "snp-4k"\npsc_max_entries = 300\n', ["'psc_max_entries'", "1..253"]),
    ('[costs.x]\nbase = "tdx-4k"\nwarp = 9\n', ["unknown key 'warp'", "tdcall_cycles"]),
    ('[costs.x]\nbase = "tdx-4k"\ncpu_ghz = 0\n', ["'cpu_ghz'", "> 0"]),
    ('[cost.x]\nbase = "tdx-4k"\n', ["unknown top-level", "[costs.NAME]"]),
])
def test_cost_toml_errors(tmp_path, body, words):
    f = write(tmp_path, body, "c.toml")
    with pytest.raises(CostConfigError) as e:
        load_costs(f)
    msg = str(e.value)
    assert str(f) in msg
    for w in words:
        assert w in msg, (w, msg)


def test_unknown_cost_preset():
    with pytest.raises(CostConfigError, match="tdx-4k, tdx-2m, snp-4k, snp-2m"):
        get_costs("sgx")


# ------------------------------------------------------------------ CLI
@pytest.fixture()
def app():
    a = typer.Typer()

    @a.callback()
    def _cb() -> None:
        pass

    register(a)
    return a


def test_cli_policies_json(app, tmp_path):
    f = write(tmp_path, '[policy.mine]\nbase = "list-6.6"\ncollision = "none"\n')
    r = CliRunner().invoke(app, ["policies", "--json", "--file", str(f)])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert [p["name"] for p in rows] == SPEC_IDS + ["mine"]
    assert rows[-1]["collision"] == "none" and rows[-1]["source"] == str(f)


def test_cli_policies_table(app):
    r = CliRunner().invoke(app, ["policies"])
    assert r.exit_code == 0
    for n in SPEC_IDS:
        assert n in r.stdout
    assert "del_page_from_free_list" in r.stdout and "cond_accept_memory" in r.stdout


def test_cli_costs(app):
    r = CliRunner().invoke(app, ["costs", "--json"])
    assert r.exit_code == 0
    rows = {c["name"]: c for c in json.loads(r.stdout)}
    assert set(rows) == set(COST_PRESETS)
    assert rows["tdx-4k"]["derived"]["unit_2m_calls"] == 513
    assert "fitted" in rows["tdx-4k"]["sources"]["tdx_exit_4k_ns"]
    r = CliRunner().invoke(app, ["costs"])
    assert r.exit_code == 0 and "fitted: Kirill 2024" in r.stdout and "snp-2m" in r.stdout


def test_cli_bad_file_is_one_line_error(app, tmp_path):
    f = write(tmp_path, '[policy.x]\nbase = "list-promo"\ntrigger = "never"\n')
    r = CliRunner().invoke(app, ["policies", "--file", str(f)])
    assert r.exit_code == 1
    assert "trigger" in r.output and "Traceback" not in r.output
    f2 = write(tmp_path, '[costs.x]\nbase = "nope"\n', "c.toml")
    r = CliRunner().invoke(app, ["costs", "--file", str(f2)])
    assert r.exit_code == 1 and "'base'" in r.output
