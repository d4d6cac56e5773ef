"""``manifest.json``: what a capture folder holds and how it was taken.

Written last (just before the folder is renamed into place), by ``record`` and by the generated
``sh`` script alike.  Keys (``MANIFEST_KEYS``; a reader must ignore keys it does not know):

- ``manifest_version`` (1), ``tool`` ("pagereplay"), ``tool_version``, ``capture_method``
  ("python" or "sh");
- ``kernel_release`` (``uname -r``), ``kernel_version`` (upstream, when /proc/version tells it),
  ``machine``, ``nr_cpus``;
- ``tracefs`` (its path), ``tracefs_mounted`` (mounted by the capture and unmounted after);
- ``trace_clock`` (the clock used), ``trace_clock_original``, ``trace_clock_available``;
- ``mode`` ("snapshot": the ring buffer read after the run; "stream": ``trace_pipe`` copied
  to disk while tracing), ``buffer_size_kb`` (per CPU), ``buffer_size_kb_original`` (per CPU),
  ``buffer_source`` ("--buffer-mb", "rate-probe", "floor"), ``rate_probe`` ({seconds,
  events_per_s, bytes_per_s_max_cpu, mem_available_kb, need_kb_per_cpu, cap_kb_per_cpu});
- ``events`` (``system:name`` enabled), ``events_missing``, ``other_events_enabled`` (enabled by
  someone else: they are in the trace too), ``contention`` (requested) ;
- ``kprobes`` ([{event, symbol, definition}]), ``kprobes_missing`` ([one-line notes]);
- ``overruns`` ({total, per_cpu: {cpu: lost}}, lost = overrun + dropped events + commit
  overrun of ``per_cpu/cpuN/stats``), ``cpu_stats`` (the raw numbers per CPU);
- ``start_time``/``stop_time`` (UTC ISO 8601), ``start_uptime_s``/``stop_uptime_s``,
  ``duration_s``;
- ``command`` (argv or null), ``command_exit`` ({status, signal} or null), ``interrupted``
  (stopped by SIGINT);
- ``files`` ({trace: name, proc_before, proc_after, ...} and ``all``: [relative paths]),
  ``trace_bytes``, ``trace_compression`` ("zstd" or "none");
- ``struct_page_size`` (64) for the ``--untraced`` page probes; ``restore_problems`` (settings that
  could not be put back); ``notes`` (warnings, one line each).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..version import tool_version

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1

MANIFEST_KEYS = (
    "manifest_version", "tool", "tool_version", "capture_method", "kernel_release", "kernel_version",
    "machine", "nr_cpus", "tracefs", "tracefs_mounted", "trace_clock", "trace_clock_original",
    "trace_clock_available", "mode", "buffer_size_kb", "buffer_size_kb_original", "buffer_source",
    "rate_probe", "events", "events_missing", "other_events_enabled", "contention", "kprobes",
    "kprobes_missing", "overruns", "cpu_stats", "start_time", "stop_time", "start_uptime_s",
    "stop_uptime_s", "duration_s", "command", "command_exit", "interrupted", "files", "trace_bytes",
    "trace_compression", "struct_page_size", "restore_problems", "notes",
)


def list_files(folder: Path) -> list[str]:
    """Every file under ``folder``, relative, sorted (the manifest itself excluded)."""
    out = []
    for dirpath, _dirs, files in os.walk(folder):
        for f in files:
            rel = os.path.relpath(os.path.join(dirpath, f), folder)
            if rel != MANIFEST_NAME:
                out.append(rel)
    return sorted(out)


def write_manifest(folder: Path, data: dict[str, Any]) -> Path:
    """Write ``manifest.json`` (keys in ``MANIFEST_KEYS`` order, then any others)."""
    ordered = {k: data[k] for k in MANIFEST_KEYS if k in data}
    ordered.update({k: v for k, v in data.items() if k not in ordered})
    p = folder / MANIFEST_NAME
    tmp = folder / (MANIFEST_NAME + ".tmp")
    tmp.write_text(json.dumps(ordered, indent=1, default=str) + "\n")
    os.replace(tmp, p)
    return p


def read_manifest(folder: Path) -> dict[str, Any]:
    return json.loads((Path(folder) / MANIFEST_NAME).read_text())


__all__ = ["MANIFEST_KEYS", "MANIFEST_NAME", "MANIFEST_VERSION", "list_files", "read_manifest", "tool_version",
           "write_manifest"]
