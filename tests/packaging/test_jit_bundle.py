"""``replay.jit.seed_cache``: a wheel's compiled code goes into the user's cache once, only when it was
built from these kernel sources with this toolchain, and never over a file already there.  (The
real bundle, built with the wheel and loaded without compiling, is tests/packaging/test_wheel.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from replay import jit


def _bundle(d: Path, **manifest: object) -> Path:
    (d / "cache" / "numba" / "k" / "replay_model").mkdir(parents=True)
    (d / "cache" / "numba" / "k" / "replay_model" / "buddy.expand-1.py311.nbi").write_bytes(b"index")
    (d / "cache" / "aot").mkdir()
    (d / "cache" / "aot" / "_scan_aot.x.so").write_bytes(b"scanner")
    (d / "manifest.json").write_text(json.dumps(manifest))
    return d


@pytest.fixture
def user_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    c = tmp_path / "user-cache"
    monkeypatch.setenv("PAGEREPLAY_CACHE_DIR", str(c))
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setattr(jit, "_seeded", False)
    return c


def test_a_matching_bundle_is_copied_once_and_keeps_what_is_there(tmp_path: Path, user_cache: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    b = _bundle(tmp_path / "b1", id="b1", cache_key=jit.cache_key(), toolchain=jit._toolchain())
    monkeypatch.setattr(jit, "BUNDLE", b)
    (user_cache / "aot").mkdir(parents=True)
    (user_cache / "aot" / "_scan_aot.x.so").write_bytes(b"built here")
    assert jit.seed_cache() is True
    assert (user_cache / "numba" / "k" / "replay_model" / "buddy.expand-1.py311.nbi").read_bytes() == b"index"
    assert (user_cache / "aot" / "_scan_aot.x.so").read_bytes() == b"built here"
    assert (user_cache / ".seeded-b1").read_text() == "copied\n"
    assert not list(user_cache.rglob("*.tmp"))
    (user_cache / "numba" / "k" / "replay_model" / "buddy.expand-1.py311.nbi").unlink()
    monkeypatch.setattr(jit, "_seeded", False)
    assert jit.seed_cache() is False  # the marker: not copied again in a later process
    assert not (user_cache / "numba" / "k" / "replay_model" / "buddy.expand-1.py311.nbi").exists()


@pytest.mark.parametrize("stale", ["cache_key", "toolchain"])
def test_a_bundle_of_other_sources_or_toolchain_is_skipped(tmp_path: Path, user_cache: Path,
                                                           monkeypatch: pytest.MonkeyPatch, stale: str) -> None:
    m = {"id": "b2", "cache_key": jit.cache_key(), "toolchain": jit._toolchain()}
    m[stale] = "0123456789abcdef" if stale == "cache_key" else {**jit._toolchain(), "numba": "0.0.0"}
    monkeypatch.setattr(jit, "BUNDLE", _bundle(tmp_path / "b2", **m))
    assert jit.seed_cache() is False
    assert not (user_cache / "numba").exists() and not (user_cache / "aot").exists()
    assert (user_cache / ".seeded-b2").read_text().startswith("skipped")


def test_no_bundle_and_numba_cache_dir_leave_the_cache_alone(tmp_path: Path, user_cache: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jit, "BUNDLE", tmp_path / "none")
    assert jit.seed_cache() is False
    b = _bundle(tmp_path / "b3", id="b3", cache_key=jit.cache_key(), toolchain=jit._toolchain())
    monkeypatch.setattr(jit, "BUNDLE", b)
    monkeypatch.setattr(jit, "_seeded", False)
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "numba-own"))  # the user's own numba cache wins
    assert jit.seed_cache() is False
    assert not list(user_cache.glob(".seeded-*"))


def test_stale_key_folders_go_and_the_rest_stay(tmp_path: Path) -> None:
    """Key folders unused for STALE_KEY_DAYS go; the current key, recent keys, the scanner's
    folder and anything not named like a key stay, whatever their age."""
    import os

    root = tmp_path / "numba"
    now = 2_000_000_000.0
    old = now - (jit.STALE_KEY_DAYS + 1) * 86400
    recent = now - (jit.STALE_KEY_DAYS - 1) * 86400
    names = {"0123456789abcdef": old, "fedcba9876543210": recent, "aaaaaaaaaaaaaaaa": old,
             "scan": old, "not-a-key-folder": old}
    for name, mtime in names.items():
        (root / name / "replay_model").mkdir(parents=True)
        (root / name / "replay_model" / "x.nbi").write_bytes(b"i")
        os.utime(root / name, (mtime, mtime))
    (root / "bbbbbbbbbbbbbbbb").write_bytes(b"a file named like a key")
    os.utime(root / "bbbbbbbbbbbbbbbb", (old, old))
    assert jit.prune_stale_keys(root, "aaaaaaaaaaaaaaaa", now=now) == ["0123456789abcdef"]
    assert sorted(p.name for p in root.iterdir()) == [
        "aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb", "fedcba9876543210", "not-a-key-folder", "scan"]
    assert jit.prune_stale_keys(tmp_path / "missing", "x", now=now) == []
