"""End to end on the real traces in ../shared/traces, checked against independent counts."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import zstandard

from parsers.api import parse_to_parquet
from parsers.schema import EVENT_NAMES

TRACES = {
    "debian12-6.1-boot": "trace.txt.zst",
    "debian12-6.1-small": "trace.txt.zst",
    "debian12-6.1-medium": "trace.txt.zst",
    "debian12-6.1-large": "trace.txt.zst",
    "debian12-6.1-tracecmd": "trace-cmd-report.txt.zst",
    "debian12-6.1-perf": "perf-script.txt.zst",
}
FORMAT = {"debian12-6.1-tracecmd": "trace-cmd", "debian12-6.1-perf": "perf"}

# an independent, deliberately different count: a plain regex over each decompressed line
_EVENT_RE = re.compile(rb"\]\s+(?:\S+\s+)?\d+\.\d+:\s+(?:kmem:)?(mm_page_\w+):")
_CPU_RE = re.compile(rb"\[(\d{3})\]")


def independent_counts(path: Path) -> tuple[Counter, Counter, int]:
    events: Counter = Counter()
    cpus: Counter = Counter()
    lines = 0
    with open(path, "rb") as f:
        reader = zstandard.ZstdDecompressor().stream_reader(f)
        carry = b""
        while True:
            chunk = reader.read(1 << 24)
            if not chunk:
                break
            buf = carry + chunk
            cut = buf.rfind(b"\n") + 1
            carry = buf[cut:]
            for line in buf[:cut].splitlines():
                lines += 1
                m = _EVENT_RE.search(line)
                if m:
                    events[m.group(1).decode()] += 1
                    cpus[int(_CPU_RE.search(line).group(1))] += 1
        if carry:
            lines += 1
    return events, cpus, lines


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TRACES))
def test_real_trace_end_to_end(name, traces_dir, tmp_path):
    path = traces_dir / name / TRACES[name]
    out = tmp_path / "events.parquet"
    acc = parse_to_parquet([path], out)
    verify = json.loads((traces_dir / name / "verify.json").read_text())
    events, cpus, lines = independent_counts(path)
    # nothing lost: every line accounted for, no malformed line in a real trace
    assert acc["lines_total"] == lines == verify["total_lines"]
    assert acc["lines_total"] == acc["lines_parsed"] + acc["lines_comment"] + acc["lines_other_event"] + acc["lines_malformed"]
    assert acc["lines_malformed"] == 0, acc["malformed_examples"]
    # per-event counts against the regex count and against the capture's own verify.json
    for ev in EVENT_NAMES:
        assert acc["events"][ev] == events[ev] == verify["per_event"].get(ev, 0), ev
    assert acc["files"][0]["format"] == FORMAT.get(name, "ftrace")
    assert acc["lost_events"] == verify["lost_events_total"] == 0
    assert acc["out_of_order_events"] == sum(verify["per_cpu_monotonic_violations"].values())
    t = pq.read_table(out, columns=["ts_ns", "cpu", "seq", "pfn", "comm"])
    assert len(t) == acc["lines_parsed"]
    assert dict(Counter(t.column("cpu").to_pylist())) == dict(cpus)
    # globally sorted by (ts, cpu, seq)
    ts, cpu, seq = (t.column(c).to_numpy() for c in ("ts_ns", "cpu", "seq"))
    order = np.lexsort((seq, cpu, ts))
    assert (order == np.arange(len(t))).all()
    # timestamps are the printed microseconds, exactly
    lo, hi = verify["time_range"]
    assert round(lo * 1e6) * 1000 <= ts.min() and ts.max() <= round(hi * 1e6) * 1000
    assert (ts % 1000 == 0).all()
    # comms are intact (no "1-55" for kworker/2:1-55, no "-0" for <idle>-0)
    comms = set(t.column("comm").to_pylist())
    assert not any(c.startswith("-") or c == "" for c in comms)
    if name != "debian12-6.1-perf":
        assert any(c.startswith("kworker/") for c in comms)
