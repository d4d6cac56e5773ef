#!/usr/bin/env python3
"""Benchmark ``pagereplay parse`` against an awk field extraction on the same ftrace text.

    python benchmarks/parse_bench.py [--lines N] [--big-gb G] [--keep DIR] [--json-out FILE]

1. Generates a synthetic trace of ``--lines`` kmem events (default 5,000,000) in
   the tracefs ``trace`` format of Linux 6.1 (the format of
   ``../shared/traces/debian12-6.1-medium/trace.txt.zst``: the ``# tracer: nop``
   header, ``comm-pid [cpu] flags secs.usecs: event: payload`` with the 5-char
   irqs-off/need-resched/hardirq-softirq/preempt-depth/migrate-disable column,
   hex pfns, hashed ``%p`` page pointers).  Event mix, run lengths, flags,
   (order, migratetype, gfp_flags) combinations and comms follow what that real
   capture holds (see ``_VARIANTS`` / ``_TASKS``).  Generation is vectorised
   (numpy for the model, polars string kernels for the text) and not timed.
2. Times, in the same run and on the same file, alternating, ``--runs`` times each:
   (a) ``pagereplay parse FILE -o out.parquet --json`` end to end as a subprocess;
   (b) the peer-bench awk floor ``mawk -f extract.awk FILE > out.tsv``
       (``/work/shared/docs/peer-bench.md``, section "scripts/extract.awk").
   Reports the median wall time, lines/s, peak RSS (``/usr/bin/time -v``, or
   ``getrusage(RUSAGE_CHILDREN)`` in a fresh child when GNU time is missing),
   the speed ratio pagereplay/awk, and checks that the per-event counts of
   pagereplay, of the awk TSV and of the generator agree.
3. With ``--big-gb G``: writes a >= G GiB input by repeating the generated
   trace with timestamps shifted past the previous copy (streamed to disk block
   by block, never held in memory), and reports pagereplay's peak RSS and
   lines/s on it (and one awk run for scale, unless ``--no-big-awk``).

Everything generated goes to a scratch directory that is deleted at the end,
unless ``--keep DIR`` is given (then the files are written to and left in DIR).
Speed targets (issue 2): pagereplay >= 4x the awk floor; peak RSS < 1 GiB
whatever the input size.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

EVENTS = (
    "mm_page_alloc",
    "mm_page_alloc_zone_locked",
    "mm_page_free",
    "mm_page_free_batched",
    "mm_page_pcpu_drain",
    "mm_page_alloc_extfrag",
)
E_ALLOC, E_ZONE_LOCKED, E_FREE, E_FREE_BATCHED, E_PCPU_DRAIN, E_EXTFRAG = range(6)

# peer-bench.md, "scripts/extract.awk (floor reference)", verbatim
EXTRACT_AWK = r"""# floor reference: event, cpu, timestamp, pfn, order for the six kmem events (TSV on stdout)
!/^#/ && NF {
    for (i = 2; i <= NF; i++) if ($i ~ /^[0-9]+\.[0-9]+:$/) break
    ev = $(i + 1); sub(/:$/, "", ev)
    if (ev !~ /^mm_page_/) next
    c = $(i - 1); if (c !~ /^\[/) c = $(i - 2); gsub(/[][]/, "", c)
    ts = substr($i, 1, length($i) - 1)
    pfn = ""; ord = ""
    for (k = i + 2; k <= NF; k++) {
        if (substr($k, 1, 4) == "pfn=") pfn = substr($k, 5)
        else if (substr($k, 1, 6) == "order=") ord = substr($k, 7)
        else if (substr($k, 1, 12) == "alloc_order=") ord = substr($k, 13)
    }
    print ev "\t" c "\t" ts "\t" pfn "\t" ord
}
"""

# ----------------------------------------------------------------------------- trace model
# Figures taken from debian12-6.1-medium (1,600,410 lines, Linux 6.1, 4 vCPUs).
# Share of lines per event and mean length of a run of the same event on one CPU.
_EVENT_SHARE = {
    E_ALLOC: 327_931,
    E_ZONE_LOCKED: 300_942,  # rmqueue_bulk() refill bursts under zone->lock
    E_FREE: 339_264,
    E_FREE_BATCHED: 321_193,  # free_unref_page_list()
    E_PCPU_DRAIN: 311_003,  # free_pcppages_bulk() bursts
    E_EXTFRAG: 63,
}
_RUN_MEAN = {
    E_ALLOC: 24.7, E_ZONE_LOCKED: 36.9, E_FREE: 14.9, E_FREE_BATCHED: 15.4, E_PCPU_DRAIN: 100.6, E_EXTFRAG: 1.0,
}
# mean gap in µs between consecutive lines of one run (zone_locked bursts mostly share a timestamp)
_INTRA_US = {E_ALLOC: 6.0, E_ZONE_LOCKED: 0.15, E_FREE: 3.0, E_FREE_BATCHED: 1.5, E_PCPU_DRAIN: 3.0, E_EXTFRAG: 0.0}
_GAP_US = 250.0  # mean gap between runs: ~14 µs per line overall, as in the capture

_GFP_EXT = (
    " fallback_order={fo} pageblock_order=9 alloc_migratetype={am} fallback_migratetype=1"
    " fragmenting=0 change_ownership=1"
)
# (event, order, text after "pfn=0x..." up to the end of the line, weight within the event)
_VARIANTS: list[tuple[int, int, str, int]] = [
    *[
        (E_ALLOC, o, f" order={o} migratetype={m} gfp_flags={g}", w)
        for o, m, g, w in (
            (0, 1, "GFP_HIGHUSER_MOVABLE|__GFP_COMP", 141_459),
            (0, 1, "GFP_HIGHUSER_MOVABLE|__GFP_COMP|__GFP_ZERO", 66_481),
            (0, 0, "GFP_NOFS|__GFP_NOWARN|__GFP_NORETRY|__GFP_COMP|__GFP_HARDWALL", 51_685),
            (0, 0, "GFP_USER|__GFP_COMP|__GFP_WRITE", 51_200),
            (0, 0, "GFP_KERNEL_ACCOUNT|__GFP_ZERO", 10_655),
            (0, 0, "GFP_NOWAIT|__GFP_NOWARN|__GFP_NORETRY|__GFP_NOMEMALLOC", 2_128),
            (0, 2, "GFP_NOFS|__GFP_NOWARN|__GFP_NORETRY|__GFP_RECLAIMABLE", 1_308),
            (0, 0, "GFP_NOWAIT|__GFP_NOWARN", 1_144),
            (1, 0, "GFP_KERNEL_ACCOUNT|__GFP_ZERO", 1_050),
            (0, 0, "GFP_HIGHUSER|__GFP_ACCOUNT", 458),
            (0, 0, "GFP_KERNEL|__GFP_NOWARN|__GFP_NORETRY", 112),
            (2, 2, "GFP_NOWAIT|__GFP_NOWARN|__GFP_NORETRY|__GFP_COMP|__GFP_RECLAIMABLE", 108),
            (9, 1, "GFP_TRANSHUGE_LIGHT|__GFP_NORETRY|__GFP_THISNODE", 100),
            (3, 0, "__GFP_IO|__GFP_FS|__GFP_NOWARN|__GFP_NORETRY|__GFP_COMP|__GFP_NOMEMALLOC", 11),
            (9, 1, "GFP_TRANSHUGE", 8),
            (0, 0, "GFP_KERNEL|__GFP_ZERO", 7),
            (3, 0, "GFP_ATOMIC|__GFP_NOWARN|__GFP_NORETRY|__GFP_COMP|__GFP_NOMEMALLOC", 3),
        )
    ],
    *[
        (E_ZONE_LOCKED, o, f" order={o} migratetype={m} percpu_refill=1", w)
        for o, m, w in (
            (0, 1, 190_575), (0, 0, 108_025), (0, 2, 1_386), (1, 0, 558),
            (2, 2, 210), (9, 1, 108), (2, 0, 45), (3, 0, 35),
        )
    ],
    *[(E_FREE, o, f" order={o}", w) for o, w in ((0, 338_015), (1, 1_050), (9, 108), (2, 88), (3, 3))],
    (E_FREE_BATCHED, 0, " order=0", 1),
    *[
        (E_PCPU_DRAIN, o, f" order={o} migratetype={m}", w)
        for o, m, w in (
            (0, 1, 203_218), (0, 0, 105_360), (0, 2, 1_502), (1, 0, 597),
            (2, 2, 155), (9, 1, 108), (2, 0, 45), (3, 0, 17),
        )
    ],
    (E_EXTFRAG, 0, " alloc_order=0" + _GFP_EXT.format(fo=10, am=0), 46),
    (E_EXTFRAG, 0, " alloc_order=0" + _GFP_EXT.format(fo=9, am=0), 15),
    (E_EXTFRAG, 2, " alloc_order=2" + _GFP_EXT.format(fo=10, am=2), 1),
]

# irqs-off / need-resched / hardirq-softirq / preempt-depth / migrate-disable, per event
_FLAGS = {
    E_ALLOC: ((".....", 326_544), ("...1.", 1_142), (".N...", 133), ("d..1.", 108)),
    E_ZONE_LOCKED: (("d..3.", 300_154), ("d..4.", 699), ("dN.3.", 63), ("dn.3.", 26)),
    E_FREE: (
        (".....", 330_723), (".N...", 2_403), (".N.1.", 2_275), ("..s..", 1_807), ("...1.", 1_611), ("..s1.", 325),
    ),
    E_FREE_BATCHED: (("...2.", 314_117), (".N.2.", 3_661), (".N.3.", 2_277), ("...3.", 1_094)),
    E_PCPU_DRAIN: (
        ("d..3.", 278_974), ("d..4.", 13_813), ("dN.3.", 6_153), ("d.s3.", 5_942), ("d.s4.", 5_005), ("dN.4.", 756),
    ),
    E_EXTFRAG: (("d..3.", 62), ("d..4.", 1)),
}

# (comm, pid, home cpu or -1 for any, lines in the capture); kworker/N:M and ksoftirqd/N stay on CPU N
_TASKS: tuple[tuple[str, int, int, int], ...] = (
    ("rm", 617, 3, 299_744), ("dd", 627, 1, 263_372), ("dd", 630, 3, 184_911), ("rm", 842, 0, 92_599),
    ("dd", 629, 0, 74_425), ("awk", 623, 3, 71_143), ("awk", 625, 1, 71_028), ("awk", 624, 2, 69_331),
    ("awk", 626, 0, 62_032), ("dd", 615, 2, 52_579), ("dd", 616, 1, 52_378), ("dd", 613, 0, 52_250),
    ("dd", 614, 3, 48_995), ("dd", 642, 2, 31_691), ("dd", 644, 1, 31_221), ("init", 1, 1, 28_967),
    ("sort", 632, 2, 10_612), ("khugepaged", 46, -1, 10_364), ("dd", 620, 3, 4_951), ("init", 638, 0, 4_260),
    ("ksoftirqd/3", 31, 3, 4_201), ("busybox", 424, 2, 1_483), ("busybox", 593, 1, 1_430), ("gzip", 635, 0, 1_384),
    ("umount", 843, 1, 1_357), ("<idle>", 0, -1, 1_222), ("md5sum", 633, 3, 882), ("kworker/3:1", 54, 3, 744),
    ("gunzip", 636, 2, 714), ("ksoftirqd/1", 21, 1, 564), ("kworker/2:1", 55, 2, 535), ("wc", 637, 0, 419),
    ("kworker/1:2", 58, 1, 368), ("mount", 377, 0, 365), ("kworker/0:0", 7, 0, 348), ("seq", 701, 2, 192),
    ("sync", 839, 3, 52),
)
NCPU = 4
PFN_LO, PFN_HI = 0xBF000, 0x140000  # the movable/normal range the capture's pfns fall in
T0_US = 10_091_927  # first timestamp of the capture (10.091927 s)


def _header(n_entries: int) -> str:
    return (
        "# tracer: nop\n#\n"
        f"# entries-in-buffer/entries-written: {n_entries}/{n_entries}   #P:{NCPU}\n"
        "#\n"
        "#                                _-----=> irqs-off/BH-disabled\n"
        "#                               / _----=> need-resched\n"
        "#                              | / _---=> hardirq/softirq\n"
        "#                              || / _--=> preempt-depth\n"
        "#                              ||| / _-=> migrate-disable\n"
        "#                              |||| /     delay\n"
        "#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION\n"
        "#              | |         |   |||||     |         |\n"
    )


def _mark(ts_us: int, text: str) -> str:
    # tracing_mark_write from `echo ... > trace_marker`, as the capture has at its ends
    ts = f"{ts_us // 1_000_000:5d}.{ts_us % 1_000_000:06d}"
    return f"{'init':>16}-{1:<7} [{1:03d}] ..... {ts}: tracing_mark_write: {text}\n"


@dataclass
class Block:
    """Model columns of one block of event lines (no text yet)."""

    ts_us: np.ndarray  # int64, non-decreasing
    prefix: np.ndarray  # int32 index into the (task, cpu, flags) prefix table
    event: np.ndarray  # int8
    pfn: np.ndarray  # int64
    variant: np.ndarray  # int16 index into _VARIANTS


class TraceModel:
    """Vectorised generator of realistic kmem event lines (runs of one event by one task on one CPU)."""

    def __init__(self, seed: int = 1) -> None:
        self.seed = seed
        ev_w = np.array([_EVENT_SHARE[e] for e in range(6)], float)
        run_mean = np.array([_RUN_MEAN[e] for e in range(6)])
        self.run_mean = run_mean
        self.run_p = ev_w / run_mean / (ev_w / run_mean).sum()  # runs per event so that lines follow ev_w
        self.intra = np.array([_INTRA_US[e] for e in range(6)])
        # variants, grouped by event
        self.var_by_ev = [np.array([i for i, v in enumerate(_VARIANTS) if v[0] == e]) for e in range(6)]
        self.var_p = []
        for e in range(6):
            w = np.array([_VARIANTS[i][3] for i in self.var_by_ev[e]], float)
            self.var_p.append(w / w.sum())
        self.var_order = np.array([v[1] for v in _VARIANTS], np.int64)
        # flags per event
        self.flag_names = sorted({f for fl in _FLAGS.values() for f, _ in fl})
        fidx = {f: i for i, f in enumerate(self.flag_names)}
        self.flags_by_ev = [np.array([fidx[f] for f, _ in _FLAGS[e]]) for e in range(6)]
        self.flags_p = []
        for e in range(6):
            w = np.array([n for _, n in _FLAGS[e]], float)
            self.flags_p.append(w / w.sum())
        w = np.array([t[3] for t in _TASKS], float)
        self.task_p = w / w.sum()
        self.flag_index = fidx
        self.task_softirq = np.array([c == "<idle>" or c.startswith("ksoftirqd/") for c, *_ in _TASKS])
        self.user_tasks = np.flatnonzero(~self.task_softirq)
        self.user_p = w[self.user_tasks] / w[self.user_tasks].sum()
        self.task_pinned = np.array(["/" in c for c, *_ in _TASKS])
        self.task_home = np.array([t[2] for t in _TASKS])

    # --------------------------------------------------------------- tables
    def prefix_table(self) -> list[str]:
        """``"%16s-%-7d [%03d] FLAGS "`` for every (task, cpu, flags).

        As print_trace_header()/trace_print_context() lay it out (kernel/trace/trace_output.c).
        """
        out = []
        for comm, pid, _, _ in _TASKS:
            for cpu in range(NCPU):
                for f in self.flag_names:
                    out.append(f"{comm:>16}-{pid:<7} [{cpu:03d}] {f} ")
        return out

    def prefix_index(self, task: np.ndarray, cpu: np.ndarray, flag: np.ndarray) -> np.ndarray:
        nf = len(self.flag_names)
        return ((task * NCPU + cpu) * nf + flag).astype(np.int32)

    # --------------------------------------------------------------- blocks
    def blocks(self, n_lines: int, block_lines: int, t0_us: int) -> Iterator[Block]:
        """Blocks totalling ``n_lines`` event lines, timestamps starting after ``t0_us``."""
        t = t0_us
        done = 0
        i = 0
        while done < n_lines:
            n = min(block_lines, n_lines - done)
            b = self._block(np.random.default_rng([self.seed, i]), n, t)
            t = int(b.ts_us[-1])
            done += n
            i += 1
            yield b

    def _block(self, rng: np.random.Generator, n: int, t0: int) -> Block:
        # runs: enough to cover n lines, then cut to exactly n
        n_runs = int(n / float((self.run_p * self.run_mean).sum()) * 1.2) + 16
        r_ev = rng.choice(6, size=n_runs, p=self.run_p)
        r_len = np.where(r_ev == E_EXTFRAG, 1, rng.geometric(1.0 / self.run_mean[r_ev]))
        ends = np.cumsum(r_len)
        n_runs = int(np.searchsorted(ends, n)) + 1
        r_ev, r_len = r_ev[:n_runs], r_len[:n_runs].copy()
        r_len[-1] -= int(ends[n_runs - 1]) - n
        # per-run attributes: task, cpu, variant (order/mt/gfp), flags, base pfn
        r_task = rng.choice(len(_TASKS), size=n_runs, p=self.task_p)
        # <idle> and ksoftirqd only free pages (RCU callbacks, softirq): their other runs go to a user task
        wrong = self.task_softirq[r_task] & (r_ev != E_FREE) & (r_ev != E_PCPU_DRAIN)
        if wrong.any():
            r_task[wrong] = rng.choice(self.user_tasks, size=int(wrong.sum()), p=self.user_p)
        soft = self.task_softirq[r_task]
        # tasks mostly run on their home CPU; per-CPU kthreads (kworker/N:M, ksoftirqd/N) never migrate
        home = self.task_home[r_task]
        r_cpu = np.where((home >= 0) & (rng.random(n_runs) < 0.85), home, rng.integers(0, NCPU, n_runs))
        r_cpu = np.where(self.task_pinned[r_task], home, r_cpu)
        r_var = np.empty(n_runs, np.int64)
        r_flag = np.empty(n_runs, np.int64)
        for e in range(6):
            m = r_ev == e
            k = int(m.sum())
            if k:
                r_var[m] = rng.choice(self.var_by_ev[e], size=k, p=self.var_p[e])
                r_flag[m] = rng.choice(self.flags_by_ev[e], size=k, p=self.flags_p[e])
        r_flag = np.where(soft & (r_ev == E_FREE), self.flag_index["..s1."], r_flag)
        r_flag = np.where(soft & (r_ev == E_PCPU_DRAIN), self.flag_index["d.s4."], r_flag)
        r_order = self.var_order[r_var]
        r_base = rng.integers(PFN_LO, PFN_HI, n_runs)
        # lines
        ev = np.repeat(r_ev, r_len).astype(np.int8)
        run_of_line = np.repeat(np.arange(n_runs), r_len)
        first = np.cumsum(r_len) - r_len
        pos = np.arange(n) - np.repeat(first, r_len)  # index within the run
        order = np.repeat(r_order, r_len)
        # pages of a run are mostly neighbours (pcp lists and the buddy hand them out in order); 10% jump
        jump = rng.random(n) < 0.10
        pfn = np.repeat(r_base, r_len) + (pos << order)
        pfn = np.where(jump, rng.integers(PFN_LO, PFN_HI, n), pfn)
        pfn = PFN_LO + (pfn - PFN_LO) % (PFN_HI - PFN_LO)
        pfn = pfn & ~((np.int64(1) << order) - 1)
        # time: a gap before each run, small steps inside it
        step = rng.exponential(1.0, n) * self.intra[ev]
        step[first] = rng.exponential(_GAP_US, n_runs)
        ts = t0 + 1 + np.cumsum(np.rint(step).astype(np.int64))
        prefix = self.prefix_index(r_task[run_of_line], r_cpu[run_of_line], r_flag[run_of_line])
        return Block(ts, prefix, ev, pfn, np.repeat(r_var, r_len).astype(np.int16))


class Renderer:
    """Turns model blocks into text with polars string kernels (no per-line Python)."""

    def __init__(self, model: TraceModel) -> None:
        self.prefix = pl.Series("prefix", model.prefix_table(), pl.String)
        self.event = pl.Series("event", [f"{e}: page=" for e in EVENTS], pl.String)
        self.variant = pl.Series("variant", [v[2] for v in _VARIANTS], pl.String)
        pfns = np.arange(PFN_LO, PFN_HI, dtype=np.uint64)
        self.pfn_hex = pl.Series("pfn", [format(p, "x") for p in pfns.tolist()], pl.String)
        # %p prints a per-boot siphash of the struct page pointer, 32 bits zero-extended to 16 hex digits;
        # the same pfn always gets the same value
        h = ((pfns * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(32)) & np.uint64(0xFFFFFFFF)
        self.page_hex = pl.Series("page", [format(x, "016x") for x in h.tolist()], pl.String)

    def render(self, b: Block, shift_us: int = 0) -> pl.DataFrame:
        ts = b.ts_us + shift_us
        pidx = b.pfn - PFN_LO
        df = pl.DataFrame(
            {
                "p": self.prefix.gather(b.prefix),
                "s": ts // 1_000_000,
                "u": ts % 1_000_000,
                "e": self.event.gather(b.event.astype(np.int64)),
                "g": self.page_hex.gather(pidx),
                "f": self.pfn_hex.gather(pidx),
                "v": self.variant.gather(b.variant.astype(np.int64)),
            }
        )
        return df.select(
            pl.concat_str(
                [
                    pl.col("p"),
                    pl.col("s").cast(pl.String).str.pad_start(5),
                    pl.lit("."),
                    pl.col("u").cast(pl.String).str.zfill(6),
                    pl.lit(": "),
                    pl.col("e"),
                    pl.col("g"),
                    pl.lit(" pfn=0x"),
                    pl.col("f"),
                    pl.col("v"),
                ]
            ).alias("line")
        )


@dataclass
class Generated:
    path: Path
    lines_total: int
    bytes: int
    events: dict[str, int] | None  # None: an existing trace, no ground truth
    seconds: float


def generate(path: Path, n_events: int, *, repeats: int = 1, target_bytes: int = 0, seed: int = 1,
             block_lines: int = 1_000_000) -> Generated:
    """Write the trace; with ``repeats`` > 1 or ``target_bytes`` the event section is repeated,
    each copy shifted to start 1 s after the previous one ended, until both are reached."""
    t_start = time.perf_counter()
    model = TraceModel(seed)
    rend = Renderer(model)
    counts = np.zeros(6, np.int64)
    n_written = 0
    with open(path, "wb", buffering=1 << 20) as f:
        # entries-in-buffer is a header detail only; written with the first copy's count
        f.write(_header(n_events + 2).encode())
        f.write(_mark(T0_US, "workload: bench-begin").encode())
        shift = 0
        rep = 0
        last = T0_US
        while True:
            span_end = T0_US
            for b in model.blocks(n_events, block_lines, T0_US):
                rend.render(b, shift).write_csv(f, include_header=False, quote_style="never")
                counts += np.bincount(b.event, minlength=6)
                n_written += len(b.ts_us)
                span_end = int(b.ts_us[-1])
            last = span_end + shift
            rep += 1
            if rep >= repeats and f.tell() >= target_bytes:
                break
            shift = last + 1_000_000 - T0_US  # next copy starts 1 s after this one ended
        f.write(_mark(last + 5, "workload: bench-end").encode())
        size = f.tell()
    return Generated(path, n_written + 12 + 2, size, dict(zip(EVENTS, counts.tolist())), time.perf_counter() - t_start)


# ----------------------------------------------------------------------------- measuring
GNU_TIME = "/usr/bin/time"
_RUSAGE_CHILD = r"""
import json, resource, shutil, subprocess, sys
cmd, out = json.loads(sys.argv[1]), sys.argv[2]
cmd[0] = shutil.which(cmd[0]) or cmd[0]
with open(out, "wb") as f:
    rc = subprocess.run(cmd, stdout=f, close_fds=False).returncode  # posix_spawn where it can
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"rc": rc, "maxrss_kb": ru.ru_maxrss, "cpu_s": ru.ru_utime + ru.ru_stime}))
"""


@dataclass
class Run:
    wall_s: float
    rss_mib: float
    rc: int
    stderr: str
    cpu_s: float = float("nan")  # user + system CPU seconds (GNU time only)


def measure(cmd: list[str], stdout_path: Path) -> Run:
    """Run ``cmd`` with stdout to a file; wall time and peak RSS of the process."""
    have_time = os.path.exists(GNU_TIME) and os.access(GNU_TIME, os.X_OK)
    t0 = time.perf_counter()
    if have_time:
        with open(stdout_path, "wb") as f:
            p = subprocess.run([GNU_TIME, "-v", *cmd], stdout=f, stderr=subprocess.PIPE, text=True)
        wall = time.perf_counter() - t0
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
        rss = int(m.group(1)) / 1024 if m else float("nan")
        # time -v appends its report to the command's stderr; keep only the command's part
        err = p.stderr.split("\tCommand being timed:")[0]
        rc = p.returncode
        if "Command exited with non-zero status" in p.stderr:
            m_rc = re.search(r"Command exited with non-zero status (\d+)", p.stderr)
            rc = int(m_rc.group(1)) if m_rc else rc
        ut = re.search(r"User time \(seconds\): ([\d.]+)", p.stderr)
        st = re.search(r"System time \(seconds\): ([\d.]+)", p.stderr)
        cpu = float(ut.group(1)) + float(st.group(1)) if ut and st else float("nan")
        return Run(wall, rss, rc, err, cpu)
    # a fresh child whose only child is cmd, so RUSAGE_CHILDREN is cmd's peak alone
    p = subprocess.run([sys.executable, "-c", _RUSAGE_CHILD, json.dumps(cmd), str(stdout_path)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    info = json.loads(p.stdout.strip().splitlines()[-1])
    # note: the child starts as a vfork of this small interpreter, so ~12 MiB is a floor for tiny commands
    return Run(wall, info["maxrss_kb"] / 1024, info["rc"], p.stderr, info["cpu_s"])


def awk_counts(tsv: Path) -> dict[str, int]:
    df = (
        pl.scan_csv(tsv, separator="\t", has_header=False, quote_char=None,
                    schema=dict.fromkeys(("event", "cpu", "ts", "pfn", "order"), pl.String))
        .group_by("event")
        .len()
        .collect()
    )
    got = dict(zip(df["event"].to_list(), df["len"].to_list()))
    return {e: int(got.get(e, 0)) for e in EVENTS} | {k: int(v) for k, v in got.items() if k not in EVENTS}


def pagereplay_counts(json_path: Path) -> tuple[dict[str, int], dict]:
    acc = json.loads(json_path.read_text())
    return {e: int(acc["events"].get(e, 0)) for e in EVENTS}, acc


def find_pagereplay() -> str:
    cand = Path(sys.executable).parent / "pagereplay"
    if cand.exists():
        return str(cand)
    found = shutil.which("pagereplay")
    if not found:
        sys.exit("pagereplay console script not found: install the project (pip install -e .) or pass --pagereplay")
    return found


def _count_lines(path: Path) -> int:
    n = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 24):
            n += block.count(b"\n")
    return n


def _report_run(label: str, i: int, runs: int, tool: str, r: Run) -> None:
    print(f"  [{label}] run {i + 1}/{runs} {tool + ':':12s} {r.wall_s:7.2f} s wall {r.cpu_s:7.2f} s cpu "
          f"{r.rss_mib:7.0f} MiB  rc {r.rc}", flush=True)


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def bench_file(
    label: str, gen: Generated, work: Path, pagereplay: str, awk: str, runs: int, *, do_awk: bool = True
) -> dict:
    awk_script = work / "extract.awk"
    awk_script.write_text(EXTRACT_AWK)
    out_pq = work / f"{label}.parquet"
    out_json = work / f"{label}.pagereplay.json"
    out_tsv = work / f"{label}.awk.tsv"
    pr_runs: list[Run] = []
    awk_runs: list[Run] = []
    loads = []
    for i in range(runs):
        loads.append(os.getloadavg()[0])
        r = measure([pagereplay, "parse", str(gen.path), "-o", str(out_pq), "--json"], out_json)
        _report_run(label, i, runs, "pagereplay", r)
        if r.rc != 0:
            print(r.stderr[-2000:], file=sys.stderr)
            raise SystemExit(f"pagereplay parse failed (exit {r.rc})")
        pr_runs.append(r)
        if do_awk:
            r = measure([awk, "-f", str(awk_script), str(gen.path)], out_tsv)
            _report_run(label, i, runs, "awk", r)
            if r.rc != 0:
                raise SystemExit(f"awk failed (exit {r.rc}): {r.stderr[-500:]}")
            awk_runs.append(r)
    loads.append(os.getloadavg()[0])
    pr_ev, acc = pagereplay_counts(out_json)
    res: dict = {
        "label": label,
        "input": {
            "path": str(gen.path),
            "bytes": gen.bytes,
            "gib": round(gen.bytes / 2**30, 3),
            "lines": gen.lines_total,
            "generated_events": gen.events,
            "generate_s": round(gen.seconds, 1),
        },
        "runs": runs,
        "load_avg_1min_during": [round(x, 2) for x in loads],
        "pagereplay": {
            "cmd": f"pagereplay parse {gen.path.name} -o {out_pq.name} --json",
            "wall_s_runs": [round(r.wall_s, 3) for r in pr_runs],
            "wall_s_median": round(_median([r.wall_s for r in pr_runs]), 3),
            "cpu_s_median": round(_median([r.cpu_s for r in pr_runs]), 3),
            "peak_rss_mib_runs": [round(r.rss_mib, 1) for r in pr_runs],
            "peak_rss_mib_max": round(max(r.rss_mib for r in pr_runs), 1),
            "events": pr_ev,
            "lines_total": acc["lines_total"],
            "accounting_identity_holds": acc["lines_total"]
            == acc["lines_parsed"] + acc["lines_comment"] + acc["lines_other_event"] + acc["lines_malformed"],
            "lines_malformed": acc["lines_malformed"],
            "parquet_bytes": out_pq.stat().st_size if out_pq.exists() else None,
        },
    }
    pr = res["pagereplay"]
    pr["lines_per_s"] = round(gen.lines_total / pr["wall_s_median"])
    pr["peak_rss_under_1gib"] = pr["peak_rss_mib_max"] < 1024
    checks = {
        "pagereplay_lines_total_equals_file": acc["lines_total"] == gen.lines_total,
        "pagereplay_no_malformed_or_out_of_order": acc["lines_malformed"] == 0 and acc["out_of_order_events"] == 0,
    }
    if gen.events is not None:
        checks["pagereplay_counts_equal_generated"] = pr_ev == gen.events
    if do_awk:
        aw_ev = awk_counts(out_tsv)
        res["awk"] = {
            "cmd": f"{Path(awk).name} -f extract.awk {gen.path.name} > {out_tsv.name}",
            "wall_s_runs": [round(r.wall_s, 3) for r in awk_runs],
            "wall_s_median": round(_median([r.wall_s for r in awk_runs]), 3),
            "cpu_s_median": round(_median([r.cpu_s for r in awk_runs]), 3),
            "peak_rss_mib_runs": [round(r.rss_mib, 1) for r in awk_runs],
            "peak_rss_mib_max": round(max(r.rss_mib for r in awk_runs), 1),
            "events": aw_ev,
        }
        res["awk"]["lines_per_s"] = round(gen.lines_total / res["awk"]["wall_s_median"])
        res["speed_ratio_pagereplay_over_awk"] = round(res["awk"]["wall_s_median"] / pr["wall_s_median"], 2)
        res["speed_ratio_target_met"] = res["speed_ratio_pagereplay_over_awk"] >= 4.0
        # CPU seconds are less sensitive to other load on the machine than wall time (but do not
        # credit pagereplay for using more than one core)
        res["cpu_time_ratio_awk_over_pagereplay"] = round(res["awk"]["cpu_s_median"] / pr["cpu_s_median"], 2)
        checks["pagereplay_counts_equal_awk"] = pr_ev == {e: aw_ev.get(e, 0) for e in EVENTS}
    res["checks"] = checks
    return res


def floor_wc(path: Path, runs: int) -> float:
    ws = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(["wc", "-l", str(path)], stdout=subprocess.DEVNULL, check=True)
        ws.append(time.perf_counter() - t0)
    return _median(ws)


# ----------------------------------------------------------------------------- report
def _verdict(counts: dict, generated: dict | None, r: dict) -> str:
    if generated is not None:
        return "ok" if counts == generated else "MISMATCH"
    # an existing trace: no ground truth, so compare the two tools
    return "agree" if r["checks"].get("pagereplay_counts_equal_awk") else "DISAGREE"


def print_table(results: dict) -> None:
    rows = []
    for r in results["benchmarks"]:
        inp = r["input"]
        what = f"{r['label']}: {inp['lines']:,} lines, {inp['bytes'] / 2**30:.2f} GiB"
        pr = r["pagereplay"]
        rows.append((what, "pagereplay parse", f"{pr['wall_s_median']:.2f}", f"{pr['lines_per_s'] / 1e6:.3f} M",
                     f"{pr['peak_rss_mib_max']:.0f}", _verdict(pr["events"], inp["generated_events"], r)))
        if "awk" in r:
            aw = r["awk"]
            rows.append(("", "mawk extract.awk", f"{aw['wall_s_median']:.2f}", f"{aw['lines_per_s'] / 1e6:.3f} M",
                         f"{aw['peak_rss_mib_max']:.0f}",
                         _verdict({e: aw["events"].get(e, 0) for e in EVENTS}, inp["generated_events"], r)))
            rows.append(("", "ratio pagereplay/awk", f"{r['speed_ratio_pagereplay_over_awk']:.2f}x",
                         "target >= 4x: " + ("met" if r["speed_ratio_target_met"] else "NOT met"), "", ""))
            rows.append(("", "CPU-s ratio awk/pagereplay", f"{r['cpu_time_ratio_awk_over_pagereplay']:.2f}x",
                         f"CPU s: {aw['cpu_s_median']:.2f} vs {pr['cpu_s_median']:.2f}", "", ""))
        rows.append(("", "peak RSS target < 1 GiB", "", "met" if pr["peak_rss_under_1gib"] else "NOT met", "", ""))
    head = ("input", "tool", "median wall s", "lines/s", "peak RSS MiB", "event counts")
    widths = [max(len(str(x[i])) for x in [head, *rows]) for i in range(len(head))]
    line = "  ".join("-" * w for w in widths)
    print()
    print("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    print(line)
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
    print(line)
    for r in results["benchmarks"]:
        print(f"{r['label']}: runs={r['runs']}, 1-min load average during: {r['load_avg_1min_during']}; checks: "
              + ", ".join(f"{k}={v}" for k, v in r["checks"].items()))
        ev = r["pagereplay"]["events"]
        print("  per-event counts (pagereplay): " + ", ".join(f"{k} {v:,}" for k, v in ev.items()))
    if "pagereplay_fixed_cost_20k_lines" in results:
        fc = results["pagereplay_fixed_cost_20k_lines"]["wall_s_median"]
        print(f"pagereplay fixed cost (20,000-line file): {fc:.2f} s")
    if "wc_l_floor_s" in results:
        print(f"I/O floor `wc -l` on the {results['benchmarks'][0]['label']} input: {results['wc_l_floor_s']:.2f} s")


def _sources_digest() -> str:
    """sha256 over parsers/*.py and replay/cli/__init__.py: which code the figures belong to."""
    import hashlib

    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for f in sorted([*root.glob("parsers/*.py"), root / "replay" / "cli.py"]):
        if f.is_file():
            h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--lines", type=int, default=5_000_000, help="event lines in the generated trace (default 5M)")
    ap.add_argument("--big-gb", type=float, default=0.0, help="also build an input of at least this many GiB, parse it")
    ap.add_argument("--keep", type=Path, default=None, help="write the generated files here and keep them")
    ap.add_argument("--json-out", type=Path, default=None, help="write the figures as JSON to this file")
    ap.add_argument("--runs", type=int, default=3, help="timed runs of each tool on the main input (median reported)")
    ap.add_argument("--big-runs", type=int, default=1, help="timed runs on the big input")
    ap.add_argument("--no-big-awk", action="store_true", help="do not run awk on the big input")
    ap.add_argument("--also", type=Path, action="append", default=[],
                    help="also time both tools on this existing plain-text trace (e.g. a real capture); repeatable")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--pagereplay", default=None, help="path of the pagereplay console script")
    ap.add_argument("--awk", default=shutil.which("mawk") or shutil.which("awk") or "awk", help="awk (default mawk)")
    ap.add_argument("--workdir", type=Path, default=None, help="scratch directory (default: a new one in $TMPDIR)")
    args = ap.parse_args(argv)

    pagereplay = args.pagereplay or find_pagereplay()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        work = args.keep
    else:
        work = Path(tempfile.mkdtemp(prefix="pagereplay-bench-", dir=args.workdir))
    results: dict = {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "host": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                 "awk": args.awk, "time": GNU_TIME if os.path.exists(GNU_TIME) else "getrusage(RUSAGE_CHILDREN)"},
        "parser_sources_sha256": _sources_digest(),
        "benchmarks": [],
    }
    try:
        # compile/cache the numba scanner first, so the timed runs measure parsing, not JIT compilation
        warm = work / "warmup.txt"
        generate(warm, 20_000, seed=args.seed + 99)
        warm_cmd = [pagereplay, "parse", str(warm), "-o", str(work / "warmup.parquet"), "--json"]
        subprocess.run(warm_cmd, stdout=subprocess.DEVNULL, check=True)
        # fixed cost per invocation (interpreter, imports, loading the cached scanner) on a 20k-line file
        fixed = [measure(warm_cmd, work / "warmup.json") for _ in range(3)]
        results["pagereplay_fixed_cost_20k_lines"] = {
            "wall_s_median": round(_median([r.wall_s for r in fixed]), 3),
            "peak_rss_mib_max": round(max(r.rss_mib for r in fixed), 1),
        }
        print(f"pagereplay on a 20,000-line file (fixed cost): {_median([r.wall_s for r in fixed]):.2f} s", flush=True)
        for p in (warm, work / "warmup.parquet", work / "warmup.json"):
            p.unlink(missing_ok=True)

        main_trace = work / f"trace-{args.lines // 1000}k.txt"
        print(f"generating {args.lines:,} event lines -> {main_trace}", flush=True)
        gen = generate(main_trace, args.lines, seed=args.seed)
        print(f"  {gen.lines_total:,} lines, {gen.bytes / 2**20:.0f} MiB in {gen.seconds:.1f} s", flush=True)
        results["benchmarks"].append(bench_file("main", gen, work, pagereplay, args.awk, args.runs))
        results["wc_l_floor_s"] = round(floor_wc(main_trace, 3), 3)
        if not args.keep:
            for suffix in (".parquet", ".awk.tsv"):
                (work / f"main{suffix}").unlink(missing_ok=True)

        for i, ext in enumerate(args.also):
            n = _count_lines(ext)
            g = Generated(ext, n, ext.stat().st_size, None, 0.0)
            print(f"existing trace {ext}: {n:,} lines", flush=True)
            results["benchmarks"].append(bench_file(f"also{i + 1}", g, work, pagereplay, args.awk, args.runs))
            for suffix in (".parquet", ".awk.tsv"):
                (work / f"also{i + 1}{suffix}").unlink(missing_ok=True)

        if args.big_gb > 0:
            big = work / f"trace-big-{args.big_gb:g}gib.txt"
            target = int(args.big_gb * 2**30)
            free = shutil.disk_usage(work).free
            need = int(target * 1.6)  # text + parquet + awk TSV
            if free < need:
                raise SystemExit(
                    f"{work}: {free / 2**30:.1f} GiB free, need about {need / 2**30:.1f} GiB "
                    f"for --big-gb {args.big_gb:g}"
                )
            print(f"generating >= {args.big_gb:g} GiB: the {args.lines:,}-event trace repeated, "
                  f"timestamps shifted -> {big}", flush=True)
            bg = generate(big, args.lines, target_bytes=target, seed=args.seed)
            print(f"  {bg.lines_total:,} lines, {bg.bytes / 2**30:.2f} GiB in {bg.seconds:.1f} s", flush=True)
            results["benchmarks"].append(
                bench_file("big", bg, work, pagereplay, args.awk, args.big_runs, do_awk=not args.no_big_awk))
            if not args.keep:
                for p in (big, work / "big.parquet", work / "big.awk.tsv"):
                    p.unlink(missing_ok=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    print_table(results)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(results, indent=1) + "\n")
        print(f"figures written to {args.json_out}")
    ok = all(all(r["checks"].values()) for r in results["benchmarks"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
