"""``pagereplay record``: wiring only (the capture is ``parsers.capture``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from replay.cli.errors import fail, friendly_errors

DEFAULT_SCRIPT_OUTPUT = Path("pagereplay-capture")


def register(app: typer.Typer) -> None:
    """Add ``record`` to ``app``."""

    @app.command("record")
    @friendly_errors
    def record_cmd(
        command: Annotated[Optional[list[str]], typer.Argument(
            help="Command to trace, after `--` (default: wait --duration seconds, or until Ctrl-C).")] = None,
        output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Capture folder to write (must not exist or be empty).")] = None,
        duration: Annotated[Optional[float], typer.Option("--duration", help="Seconds to trace; with a COMMAND, its expected length (sizes the buffers).")] = None,
        buffer_mb: Annotated[Optional[int], typer.Option("--buffer-mb", help="Per-CPU ring buffer in MiB (default: from a 1 s rate probe x --duration, capped by free memory).")] = None,
        contention: Annotated[bool, typer.Option("--contention", help="Also record lock:contention_begin/end (5.19+).")] = False,
        untraced: Annotated[bool, typer.Option("--untraced", help="Add kprobes on the page movements no kmem event shows (__isolate_free_page, ...; x86-64).")] = False,
        script: Annotated[bool, typer.Option("--script", help="Print the same capture as a POSIX sh script (busybox is enough) instead of running it.")] = False,
        force: Annotated[bool, typer.Option("--force", help="Replace a non-empty output folder (and remove stale pagereplay kprobes).")] = False,
        stream: Annotated[Optional[bool], typer.Option("--stream/--no-stream", help="Force streaming trace_pipe to disk, or reading the buffer at the end (default: decided by the size estimate).")] = None,
        compress: Annotated[bool, typer.Option("--compress/--no-compress", help="zstd-compress the trace (trace.txt.zst).")] = True,
        tracefs: Annotated[Optional[Path], typer.Option("--tracefs", help="tracefs mount to use (default: /sys/kernel/tracing, /sys/kernel/debug/tracing, or mount one).")] = None,
    ) -> None:
        """Capture a page-allocator trace and its /proc snapshots on this machine (run as root)."""
        from parsers.capture.errors import CaptureAborted
        from parsers.capture.record import RecordOptions, record

        if duration is not None and not 0 < duration < float("inf"):  # (NaN fails this too)
            raise fail(f"--duration must be positive (a finite number of seconds), got {duration}", 2)
        if buffer_mb is not None and buffer_mb <= 0:
            raise fail("--buffer-mb must be positive", 2)
        if output is None and not script:
            raise fail("give the capture folder with -o DIR", 2)
        opts = RecordOptions(output=output or DEFAULT_SCRIPT_OUTPUT, duration=duration, buffer_mb=buffer_mb,
                             contention=contention, untraced=untraced, command=list(command) if command else None,
                             force=force, stream=stream, compress=compress, tracefs_root=tracefs,
                             on_note=lambda m: print(f"note: {m}", file=sys.stderr, flush=True))
        if script:
            from parsers.capture.script import generate_script

            sys.stdout.write(generate_script(opts))
            return
        try:
            res = record(opts)
        except CaptureAborted as e:
            raise fail(str(e), 128 + (e.signum or 2)) from None
        _print_result(res.manifest, res.path)


def _print_result(m: dict[str, Any], path: Path) -> None:
    trace = m["files"]["trace"]
    size = (Path(path) / trace).stat().st_size
    lost = m["overruns"]["total"]
    line = (f"wrote {path}: {trace} ({size / 1e6:.1f} MB, {m['trace_bytes'] / 1e6:.1f} MB of text); clock "
            f"{m['trace_clock']}; {m['mode']} mode, {m['buffer_size_kb'] // 1024} MiB per CPU; "
            f"{len(m['events'])} events enabled; lost events: {lost:,}")
    ce = m.get("command_exit")
    if ce:
        line += f"; command exit {ce['status']}" if ce["status"] is not None else f"; command killed by signal {ce['signal']}"
    if m.get("interrupted"):
        line += " (stopped by Ctrl-C)"
    print(line)


__all__ = ["register"]
