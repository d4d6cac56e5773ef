"""The sweep's progress display: a bar with the ETA on a terminal, a line every tenth otherwise."""

from __future__ import annotations

import sys
import time
from typing import Any

__all__ = ["SweepProgress"]


class SweepProgress:
    """Points done out of the grid, the failures so far, points/s and the time left.

    ``enabled``: None shows a bar on a terminal and plain lines elsewhere; False shows nothing."""

    def __init__(self, total: int, already: int, *, enabled: bool | None = None, stream: Any = None) -> None:
        self.total, self.already = total, already
        self.done = 0
        self.failed = 0
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled is not False
        self._bar: Any = None
        self._task: Any = None
        self._t0 = time.perf_counter()
        self._next_line = 0.1
        if self.enabled and enabled is None and getattr(self.stream, "isatty", lambda: False)():
            self._start_bar()

    def _start_bar(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._bar = Progress(TextColumn("[progress.description]{task.description}"), BarColumn(),
                             MofNCompleteColumn(), TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                             TextColumn("ETA"), TimeRemainingColumn(),
                             console=Console(file=self.stream, stderr=self.stream is sys.stderr), transient=False)
        self._task = self._bar.add_task(self._describe(), total=self.total, completed=self.already, rate="")
        self._bar.start()

    def _describe(self) -> str:
        return "sweep" + (f" ([red]{self.failed} failed[/])" if self.failed else "")

    @property
    def rate(self) -> float:
        """Points per second in this run."""
        dt = time.perf_counter() - self._t0
        return self.done / dt if dt > 0 else 0.0

    def advance(self, ok: bool) -> None:
        self.done += 1
        self.failed += 0 if ok else 1
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(self._task, advance=1, description=self._describe(), rate=f"{self.rate:.1f} points/s")
            return
        todo = self.total - self.already
        frac = self.done / todo if todo else 1.0
        if frac >= self._next_line or self.done == todo:
            self._next_line = (int(frac * 10) + 1) / 10
            left = (todo - self.done) / self.rate if self.rate > 0 else 0.0
            print(f"sweep: {self.already + self.done}/{self.total} points, {self.failed} failed, "
                  f"{self.rate:.1f} points/s, ETA {left:.0f} s", file=self.stream, flush=True)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
