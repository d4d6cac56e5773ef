"""Reading capture folders: every shared reference folder as it is, and the preference rules."""

from __future__ import annotations

import json
import re

import pytest

from parsers.capture.errors import CaptureFolderError
from parsers.capture.folder import TRACE_CANDIDATES, is_capture_folder, read_capture_folder, upstream_version
from tests.conftest import shared_traces

_SHARED = shared_traces()
SHARED_FOLDERS = sorted(p.name for p in _SHARED.iterdir() if p.is_dir()) if _SHARED else []


@pytest.mark.parametrize("name", SHARED_FOLDERS)
def test_shared_folders_read_as_they_are(traces_dir, name):
    d = traces_dir / name
    f = read_capture_folder(d)
    kind = name.rsplit("-", 1)[1]
    want = {"perf": ("perf-script.txt.zst", "perf"), "tracecmd": ("trace-cmd-report.txt.zst", "trace-cmd")}.get(
        kind, ("trace.txt.zst", "ftrace"))
    assert (f.trace.name, f.trace_format, f.binary) == (*want, False)
    if kind in ("perf", "tracecmd"):
        assert {p.name for p in f.other_traces} == {"perf.data.zst" if kind == "perf" else "trace.dat.zst"}
        assert f.overruns is None  # no per_cpu_stats.txt beside perf/trace-cmd captures
    else:
        assert f.overruns == 0 and len(f.overruns_per_cpu) == 4
    if kind == "boot":
        assert f.proc_before is None and f.proc_after == d / "proc_after_boot" and f.after_is_boot
    else:
        assert f.proc_before == d / "proc_before" and f.proc_after == d / "proc_after" and not f.after_is_boot
    assert f.kernel_release == (d / "uname.txt").read_text().split()[2]
    series = re.search(r"-(6\.\d+)-", name).group(1)
    assert f.kernel_version.startswith(series + ".")
    assert f.trace_clock == "global" and f.nr_cpus == 4 and f.manifest is None
    assert is_capture_folder(d)
    json.dumps(f.as_dict())


def test_all_shared_folders_present(traces_dir):
    assert len(SHARED_FOLDERS) >= 20


def _touch(d, *names):
    for n in names:
        p = d / n
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")


def test_preference_order(tmp_path):
    names = [n for n, _, _ in TRACE_CANDIDATES]
    _touch(tmp_path, *names)
    for n in names:
        f = read_capture_folder(tmp_path)
        assert f.trace.name == n
        assert [p.name for p in f.other_traces] == names[names.index(n) + 1:]
        (tmp_path / n).unlink()
    with pytest.raises(CaptureFolderError, match="no trace file"):
        read_capture_folder(tmp_path)


def test_binary_only_and_manifest_choice(tmp_path):
    _touch(tmp_path, "perf.data")
    f = read_capture_folder(tmp_path)
    assert f.binary and f.trace_format == "perf-binary"
    _touch(tmp_path, "trace.txt", "trace.txt.zst")
    (tmp_path / "manifest.json").write_text(json.dumps({
        "files": {"trace": "trace.txt"}, "kernel_release": "6.12.1-x", "kernel_version": "6.12.1",
        "overruns": {"total": 7, "per_cpu": {"0": 3, "1": 4}}, "trace_clock": "mono", "nr_cpus": 2}))
    f = read_capture_folder(tmp_path)
    assert f.trace.name == "trace.txt" and f.trace_format == "ftrace"
    assert (f.kernel_release, f.kernel_version, f.overruns, f.overruns_per_cpu) == ("6.12.1-x", "6.12.1", 7, ((0, 3), (1, 4)))
    assert f.trace_clock == "mono" and f.nr_cpus == 2 and f.manifest["nr_cpus"] == 2


def test_snapshots_and_stats(tmp_path):
    _touch(tmp_path, "trace.txt", "proc_before/zoneinfo", "proc_after/zoneinfo", "proc_after/buddyinfo")
    (tmp_path / "empty_dir").mkdir()
    (tmp_path / "per_cpu_stats.txt").write_text(
        "== /sys/kernel/tracing/per_cpu/cpu0\nentries: 5\noverrun: 2\ncommit overrun: 0\ndropped events: 1\n"
        "== /sys/kernel/tracing/per_cpu/cpu1\nentries: 5\noverrun: 0\ncommit overrun: 0\ndropped events: 0\n")
    (tmp_path / "version.txt").write_text("Linux version 6.12.117+deb12-amd64 (debian-kernel@lists.debian.org) "
                                          "(x86_64-linux-gnu-gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0) #1 SMP "
                                          "PREEMPT_DYNAMIC Debian 6.12.117-1~deb12u1 (2025-11-14)\n")
    f = read_capture_folder(tmp_path)
    assert f.proc_before.name == "proc_before" and f.proc_after.name == "proc_after"
    assert f.overruns == 3 and f.overruns_per_cpu == ((0, 3), (1, 0))
    assert f.kernel_release == "6.12.117+deb12-amd64" and f.kernel_version == "6.12.117"


def test_errors(tmp_path):
    with pytest.raises(CaptureFolderError, match="not a folder"):
        read_capture_folder(tmp_path / "missing")
    _touch(tmp_path, "trace.txt")
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(CaptureFolderError, match="unreadable manifest"):
        read_capture_folder(tmp_path)


@pytest.mark.parametrize("version, release, want", [
    ("Linux version 6.1.0-57-amd64 (debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0, "
     "GNU ld (GNU Binutils for Debian) 2.40) #1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3 (2025-12-01)",
     "6.1.0-57-amd64", "6.1.192"),
    ("Linux version 5.15.0-91-generic (buildd@lcy02) (gcc (Ubuntu 11.4.0-1ubuntu1~22.04) 11.4.0) #101-Ubuntu SMP",
     "5.15.0-91-generic", "5.15.0"),
    (None, "6.8.12-arch1-1", "6.8.12"),
    ("Linux version 6.1.0-57-amd64 (x) #1 SMP Debian", "6.1.0-57-amd64", "6.1"),
    (None, None, None),
])
def test_upstream_version(version, release, want):
    assert upstream_version(version, release) == want
