"""``pagereplay demo``'s replay: a trace beside its ``proc_before``/``proc_after`` snapshots (and the
capture's ``uname.txt``, for the kernel version), parsed and replayed under every policy preset
(``tdx-4k`` costs, exact mode)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from replay.pipeline.job import run_replay
from replay.pipeline.schedule import tiny_trace

#: a pfn of the sample guest's Normal zone, for the kernels' warm-up trace
_WARM_PFN = 0x108BC0


def demo_replay(trace: Path, results_dir: Path) -> dict[str, Any]:
    """Parse ``trace`` next to ``results_dir`` and replay it under every policy preset.

    After a wheel install the compiled code comes with it (``replay.jit.seed_cache``).  Otherwise
    a child process compiles the replay kernels while this one parses (numba's first compilation
    is most of a cold run); with a warm cache it only costs a second.
    """
    from parsers.api import parse_to_parquet
    from replay.jit import seed_cache

    seed_cache()  # a wheel's compiled kernels and scanner, before the parse looks for the scanner
    d = Path(trace).parent
    before, after = d / "proc_before", d / "proc_after"
    warm = start_warm_kernels(before, _WARM_PFN) if before.is_dir() else None
    parsed = Path(results_dir).parent / "events.parquet"
    parse_to_parquet([trace], parsed, kernel_version=uname_release(d / "uname.txt"))
    if warm is not None:
        warm.wait()
    return run_replay(parsed, "exact", Path(results_dir), snapshot=before if before.is_dir() else None,
                      end_snapshot=after if after.is_dir() else None, all_presets=True, costs="tdx-4k")


def uname_release(path: Path) -> str | None:
    """The kernel release (``uname -r``) from a capture's ``uname.txt`` (``uname -a`` output:
    ``Linux HOST RELEASE ...``), or None when there is none."""
    try:
        fields = path.read_text(encoding="utf-8", errors="replace").split()
    except OSError:
        return None
    return fields[2] if len(fields) > 2 and fields[0] == "Linux" else None


def warm_kernels(snapshot: str, pfn: int) -> None:
    """Compile (and cache on disk) the replay and policy kernels on a tiny trace (a child process
    of ``pagereplay demo``, so that on a fresh machine numba compiles the replay while the
    sample is parsed)."""
    with tempfile.TemporaryDirectory(prefix="pagereplay-warm-") as tmp:
        t = Path(tmp) / "warm.parquet"
        tiny_trace(t, pfn)
        run_replay(t, "exact", Path(tmp) / "results", snapshot=Path(snapshot), end_snapshot=Path(snapshot),
                   policies=["list-promo", "v1-buddy-global-lock", "post-alloc", "background", "kernel-eager"],
                   costs="tdx-4k", workers=1)


def start_warm_kernels(snapshot: Path, pfn: int) -> Any:
    """``warm_kernels`` in a child process (returns it; ``wait()`` for it)."""
    code = f"from replay.pipeline.demo import warm_kernels; warm_kernels({str(snapshot)!r}, {pfn})"
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
