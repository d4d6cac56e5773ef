"""Line accounting: every input line is parsed, a header/comment, another event, or malformed.

    lines_total == lines_parsed + lines_comment + lines_other_event + lines_malformed

``lines_comment`` counts ``#`` comments, blank lines, trace-cmd header lines
and ``[LOST N EVENTS]`` markers (each also listed with its position, because
replay must know where the trace has holes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from .scan.codes import (
    LINES_BLANK,
    LINES_COMMENT,
    LINES_EVENT,
    LINES_PFN_DEC,
    LINES_PFN_HEX,
    LINES_TS_COUNTER,
    LINES_TS_DECIMAL,
    N_LINE_COUNTERS,
)  # fmt: skip
from .schema import ALL_EVENT_NAMES, EVENT_NAMES

# parsers/binary/table.py reads the scanner's counter indices as ``accounting._scan.C_*``; these
# names keep it working until it imports them from ``parsers.scan.codes`` (then remove them)
_scan = SimpleNamespace(
    C_TS_COUNTER=LINES_TS_COUNTER, C_TS_DECIMAL=LINES_TS_DECIMAL, C_PFN_HEX=LINES_PFN_HEX, C_PFN_DEC=LINES_PFN_DEC
)


@dataclass
class FileAccounting:
    name: str
    max_examples: int = 5
    format: str | None = None
    compression: str = "none"
    sha256: str = ""
    raw_bytes: int = 0
    text_bytes: int = 0
    truncated: bool = False
    lines_total: int = 0
    lines_parsed: int = 0
    lines_comment_hash: int = 0
    lines_blank: int = 0
    lines_header: int = 0
    lines_lost_marker: int = 0
    lines_malformed: int = 0
    events: dict[str, int] = field(default_factory=lambda: {n: 0 for n in EVENT_NAMES})
    other_events: dict[str, int] = field(default_factory=dict)
    malformed_reasons: dict[str, int] = field(default_factory=dict)
    malformed_examples: list[dict[str, Any]] = field(default_factory=list)
    lost_markers: list[dict[str, int]] = field(default_factory=list)
    out_of_order_events: int = 0
    out_of_order_examples: list[dict[str, int]] = field(default_factory=list)
    failed_allocs: int = 0
    fragmenting_recomputed: int = 0
    warnings: list[str] = field(default_factory=list)
    counters: list[int] = field(default_factory=lambda: [0] * N_LINE_COUNTERS)

    def add_counts(self, counts, nlines: int) -> None:
        self.lines_total += int(nlines)
        self.lines_parsed += int(counts[LINES_EVENT])
        self.lines_comment_hash += int(counts[LINES_COMMENT])
        self.lines_blank += int(counts[LINES_BLANK])
        for i in range(N_LINE_COUNTERS):
            self.counters[i] += int(counts[i])

    def malformed(self, reason: str, line: int, text: bytes) -> None:
        self.lines_malformed += 1
        self.malformed_reasons[reason] = self.malformed_reasons.get(reason, 0) + 1
        if len(self.malformed_examples) < self.max_examples:
            shown = text[:160].decode("utf-8", "backslashreplace")
            self.malformed_examples.append({"file": self.name, "line": line, "reason": reason, "text": shown})

    def out_of_order(self, n: int, examples: list[tuple[int, int]]) -> None:
        self.out_of_order_events += n
        for line, cpu in examples:
            if len(self.out_of_order_examples) < self.max_examples:
                self.out_of_order_examples.append({"file": self.name, "line": line, "cpu": cpu})

    def _frag_warning(self) -> list[str]:
        if not self.fragmenting_recomputed:
            return []
        return [
            f"{self.name}: {self.fragmenting_recomputed} mm_page_alloc_extfrag line(s) print a fragmenting= value other "
            "than fallback_order < pageblock_order (libtraceevent cannot evaluate pageblock_order); recomputed as the kernel does"
        ]

    @property
    def lines_comment(self) -> int:
        return self.lines_comment_hash + self.lines_blank + self.lines_header + self.lines_lost_marker

    @property
    def lines_other_event(self) -> int:
        return sum(self.other_events.values())

    def seen_summary(self) -> str:
        if not self.other_events:
            return ""
        top = sorted(self.other_events.items(), key=lambda kv: (-kv[1], kv[0]))[:8]
        return ", ".join(f"{k} ({v})" for k, v in top)

    def first_malformed_line(self) -> str:
        if not self.malformed_examples:
            return "(none)"
        ex = self.malformed_examples[0]
        return f"{ex['line']}: {ex['text'][:80]!r}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.name,
            "format": self.format,
            "compression": self.compression,
            "sha256": self.sha256,
            "bytes": self.raw_bytes,
            "lines_total": self.lines_total,
            "lines_parsed": self.lines_parsed,
            "lines_comment": self.lines_comment,
            "lines_other_event": self.lines_other_event,
            "lines_malformed": self.lines_malformed,
            "comment_breakdown": {
                "comment": self.lines_comment_hash,
                "blank": self.lines_blank,
                "header": self.lines_header,
                "lost_marker": self.lines_lost_marker,
            },
            "events": dict(self.events),
            "other_events": dict(sorted(self.other_events.items())),
            "malformed_reasons": dict(sorted(self.malformed_reasons.items())),
            "malformed_examples": list(self.malformed_examples),
            "lost_markers": list(self.lost_markers),
            "lost_events": sum(m["events"] for m in self.lost_markers),
            "out_of_order_events": self.out_of_order_events,
            "out_of_order_examples": list(self.out_of_order_examples),
            "failed_allocations": self.failed_allocs,
            "truncated": self.truncated,
            "warnings": list(self.warnings) + self._frag_warning(),
        }


@dataclass
class Accounting:
    """Accounting over all input files of one parse."""

    max_examples: int = 5
    files: list[FileAccounting] = field(default_factory=list)

    def _sum(self, attr: str) -> int:
        return sum(getattr(f, attr) for f in self.files)

    @property
    def lines_total(self) -> int:
        return self._sum("lines_total")

    @property
    def lines_parsed(self) -> int:
        return self._sum("lines_parsed")

    @property
    def lines_comment(self) -> int:
        return self._sum("lines_comment")

    @property
    def lines_other_event(self) -> int:
        return self._sum("lines_other_event")

    @property
    def lines_malformed(self) -> int:
        return self._sum("lines_malformed")

    def malformed_examples(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for f in self.files:
            out.extend(f.malformed_examples)
        return out[: self.max_examples]

    def lost_markers(self) -> list[dict[str, Any]]:
        return [{"file": f.name, **m} for f in self.files for m in f.lost_markers]

    def kmem_era(self) -> str:
        hex_pfn = sum(f.counters[LINES_PFN_HEX] for f in self.files)
        dec_pfn = sum(f.counters[LINES_PFN_DEC] for f in self.files)
        if hex_pfn and not dec_pfn:
            return ">=5.14 (hex pfn)"
        if dec_pfn and not hex_pfn:
            return "<5.14 (decimal pfn)"
        if dec_pfn and hex_pfn:
            return "mixed (decimal and hex pfn)"
        return "unknown"

    def timestamp_unit(self) -> str:
        dec = sum(f.counters[LINES_TS_DECIMAL] for f in self.files)
        cnt = sum(f.counters[LINES_TS_COUNTER] for f in self.files)
        if cnt and not dec:
            return "counter"
        if cnt and dec:
            return "mixed"
        return "ns"

    def as_dict(self) -> dict[str, Any]:
        # the six kmem events always, then the other kinds of the table (lock contention, untraced) seen
        names = list(EVENT_NAMES) + [n for n in ALL_EVENT_NAMES[len(EVENT_NAMES):] if any(n in f.events for f in self.files)]
        events = {n: sum(f.events.get(n, 0) for f in self.files) for n in names}
        other: dict[str, int] = {}
        reasons: dict[str, int] = {}
        for f in self.files:
            for k, v in f.other_events.items():
                other[k] = other.get(k, 0) + v
            for k, v in f.malformed_reasons.items():
                reasons[k] = reasons.get(k, 0) + v
        lost = self.lost_markers()
        return {
            "lines_total": self.lines_total,
            "lines_parsed": self.lines_parsed,
            "lines_comment": self.lines_comment,
            "lines_other_event": self.lines_other_event,
            "lines_malformed": self.lines_malformed,
            "events": events,
            "events_total": sum(events.values()),
            "other_events": dict(sorted(other.items())),
            "malformed_reasons": dict(sorted(reasons.items())),
            "malformed_examples": self.malformed_examples(),
            "lost_events": sum(m["events"] for m in lost),
            "lost_markers": lost,
            "out_of_order_events": sum(f.out_of_order_events for f in self.files),
            "failed_allocations": sum(f.failed_allocs for f in self.files),
            "timestamp_unit": self.timestamp_unit(),
            "kmem_era": self.kmem_era(),
            "warnings": [w for f in self.files for w in f.as_dict()["warnings"]],
            "files": [f.as_dict() for f in self.files],
        }
