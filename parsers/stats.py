"""`pagereplay info`: what ``perf kmem --page`` and the kernel's Perl script report, plus zone->lock sections.

Everything here is vectorised polars over the canonical event table
(:mod:`parsers.schema`): no Python loop runs per event, so a 5M-event table is
summarised in seconds.  The result of :func:`info_summary` is a plain
JSON-serialisable dict (layout in the docstring of :func:`info_summary`);
rendering lives in ``replay/report/console.py``.

Models reproduced
-----------------
* ``tools/perf/builtin-kmem.c``: ``evsel__process_page_alloc_event()`` /
  ``evsel__process_page_free_event()`` / ``print_page_summary()``.  Allocations
  go into a live map keyed by pfn (``page_live_tree``); an ``mm_page_free``
  whose pfn has no live entry is *free-only* (``nr_page_nomatch``), otherwise
  the entry is erased and the free is *alloc+freed*.  A second allocation of a
  pfn that is still live reuses the same entry, so one free matches it.
  perf's own arithmetic is kept: alloc+freed = frees - free-only (sized with the
  *free's* order), alloc-only = allocation requests - alloc+freed (failed
  requests included, as perf does), allocation failures counted separately.
  ``mm_page_free_batched`` is not used by perf.
* ``Documentation/trace/postprocess/trace-pagealloc-postprocess.pl``: per
  ``comm-pid`` counters; a run of consecutive ``mm_page_pcpu_drain`` (resp.
  ``mm_page_alloc_zone_locked``) events *in that process's own event stream*
  counts as one "PCPU drain" (resp. "PCPU refill"); extfrag "Fragment Causing"
  is ``fragmenting``, "Severe"/"Moderate" split fragmenting events at
  ``fallback_order <= 3``, "MigType Changed" is ``change_ownership``.  The Perl
  "Pages allocd"-style columns count *events*; we keep them as event counts
  (``alloc_events`` ...) and add ``pages_allocd`` (sum of 2^order of successful
  allocations), which is the ranking key.
* zone->lock sections, per CPU, in that CPU's ring-buffer
  order ``(cpu, ts_ns, seq)``: ``rmqueue_bulk()`` (pcp refill) = a maximal run of
  ``mm_page_alloc_zone_locked`` with ``percpu_refill`` true; ``rmqueue_buddy()``
  (non-pcp) = one ``mm_page_alloc_zone_locked`` with ``percpu_refill`` false;
  ``free_pcppages_bulk()`` (drain) = a maximal run of ``mm_page_pcpu_drain``.
  zone->lock is taken with irqs off, so nothing else on that CPU can emit an
  event inside a section: any other event on the CPU ends the run.  One
  exception by default: ``mm_page_alloc_extfrag`` is emitted by
  ``__rmqueue_fallback()`` *inside* the same zone->lock section (between two
  refill events when ``rmqueue_bulk()`` has to steal), so it neither ends nor
  counts in a burst (``extfrag_splits=True`` gives the literal rule).
  Known blind spots: two sections on one CPU with no event between them (the
  bulk allocator ``alloc_pages_bulk()`` emits no ``mm_page_alloc`` per page;
  ``drain_all_pages()`` walking several zones) merge into one burst.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import polars as pl
import pyarrow as pa

from parsers.schema import (
    ALL_EVENT_NAMES,
    EVENT_NAMES,
    LOCK_FLAG_BITS,
    METADATA_PREFIX,
    SORT_KEYS,
    Event,
    LockEvent,
    Migratetype,
    UntracedEvent,
    lock_flags_text,
)

PAGE_SIZE = 4096
#: ``enum migratetype`` names for codes 0..5 (v4.4+ numbering, CONFIG_CMA).
MIGRATETYPE_NAMES: dict[int, str] = {m.value: m.name for m in Migratetype}
#: Burst kinds, in report order, with the kernel function each one models.
BURST_KINDS: dict[str, str] = {
    "pcp_refill": "rmqueue_bulk(): run of mm_page_alloc_zone_locked percpu_refill=1",
    "buddy_alloc": "rmqueue_buddy(): single mm_page_alloc_zone_locked percpu_refill=0",
    "pcp_drain": "free_pcppages_bulk(): run of mm_page_pcpu_drain",
}
_KIND_CODE = {"pcp_refill": 1, "buddy_alloc": 2, "pcp_drain": 3}
_KIND_NAME = {v: k for k, v in _KIND_CODE.items()}
QUANTILES: tuple[tuple[str, float], ...] = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))
#: Perl-script fallback-order threshold: severe if fallback_order <= 3.
EXTFRAG_SEVERE_MAX_ORDER = 3

_NEEDED = (
    "ts_ns", "cpu", "pid", "comm", "event", "pfn", "order", "migratetype", "gfp_flags",
    "percpu_refill", "failed", "fallback_order", "fallback_migratetype", "fragmenting",
    "change_ownership", "seq",
)  # fmt: skip

_ALLOC = int(Event.MM_PAGE_ALLOC)
_ZONE_LOCKED = int(Event.MM_PAGE_ALLOC_ZONE_LOCKED)
_FREE = int(Event.MM_PAGE_FREE)
_BATCHED = int(Event.MM_PAGE_FREE_BATCHED)
_DRAIN = int(Event.MM_PAGE_PCPU_DRAIN)
_EXTFRAG = int(Event.MM_PAGE_ALLOC_EXTFRAG)

TableLike = pa.Table | pl.DataFrame | pl.LazyFrame

# --- input -------------------------------------------------------------------


def _pages() -> pl.Expr:
    """2^order as Int64 (the number of base pages of the block)."""
    return pl.lit(2, pl.Int64).pow(pl.col("order").cast(pl.Int64))


def _prepare(lf: pl.LazyFrame) -> pl.LazyFrame:
    """Keep the kmem events and the columns the summary needs; replace the event name by its
    ``Event`` code in ``ev`` (the other kinds of the table: :func:`other_kinds_summary`)."""
    ev = pl.col("event").cast(pl.Enum(list(ALL_EVENT_NAMES))).to_physical().cast(pl.Int8)
    lf = lf.select(
        *[pl.col(c) for c in _NEEDED if c != "event"],
        ev.alias("ev"),
    ).filter(pl.col("ev") < len(EVENT_NAMES)).with_columns(_pages().alias("pages"))
    return _ensure_sorted(lf)


def _as_lazy(table: TableLike) -> tuple[pl.LazyFrame, dict[str, str]]:
    """(prepared LazyFrame, pagereplay.* metadata without prefix)."""
    meta: dict[str, str] = {}
    if isinstance(table, pa.Table):
        raw = table.schema.metadata or {}
        meta = {k.decode(): v.decode() for k, v in raw.items()}
        lf = pl.from_arrow(table.select([c for c in _NEEDED if c in table.column_names])).lazy()
    elif isinstance(table, pl.DataFrame):
        lf = table.lazy()
    elif isinstance(table, pl.LazyFrame):
        lf = table
    else:
        raise TypeError(f"expected a pyarrow Table or polars frame, got {type(table).__name__}")
    meta = {k[len(METADATA_PREFIX):]: v for k, v in meta.items() if k.startswith(METADATA_PREFIX)}
    return _prepare(lf), meta


def _proc_key() -> pl.Expr:
    """One Int64 per (comm, pid): the Perl script's ``comm-pid`` key, cheap to sort and group on."""
    comm = pl.col("comm").cast(pl.Categorical).to_physical().cast(pl.Int64)
    return comm * (1 << 32) + (pl.col("pid").cast(pl.Int64) + (1 << 31))


def _canonically_sorted(lf: pl.LazyFrame) -> bool:
    """True if rows are in the canonical (ts_ns, cpu, seq) order (one cheap pass over 3 columns)."""
    d_ts, d_cpu, d_seq = (pl.col(c).cast(pl.Int64).diff() for c in SORT_KEYS)
    ok = (d_ts > 0) | ((d_ts == 0) & ((d_cpu > 0) | ((d_cpu == 0) & (d_seq > 0))))
    return bool(lf.select(ok.fill_null(True).all()).collect().item())


def _ensure_sorted(lf: pl.LazyFrame) -> pl.LazyFrame:
    """Every ordered step below uses stable single-key sorts that rely on the canonical order."""
    if _canonically_sorted(lf):
        return lf
    # Not canonical (a hand-built table, say): sort once, eagerly, rather than once per query.
    return lf.sort(list(SORT_KEYS)).collect().lazy()


# --- zone->lock sections -------------------------------------------------------


def _lock_bursts_lazy(lf: pl.LazyFrame, *, extfrag_splits: bool = False) -> pl.LazyFrame:
    """One row per zone->lock section, from a prepared frame (see module docstring)."""
    if not extfrag_splits:
        lf = lf.filter(pl.col("ev") != _EXTFRAG)
    refill = pl.col("percpu_refill").fill_null(pl.col("order") == 0)  # pre-5.19 meaning: order == 0
    kind = (
        pl.when(pl.col("ev") == _ZONE_LOCKED)
        .then(pl.when(refill).then(pl.lit(1, pl.Int8)).otherwise(pl.lit(2, pl.Int8)))
        .when(pl.col("ev") == _DRAIN)
        .then(pl.lit(3, pl.Int8))
        .otherwise(pl.lit(0, pl.Int8))
    )
    new_run = (
        (pl.col("kind") != pl.col("kind").shift(1)).fill_null(True)
        | (pl.col("cpu") != pl.col("cpu").shift(1)).fill_null(True)
        | (pl.col("kind") == _KIND_CODE["buddy_alloc"])
    )
    return (
        lf.select("cpu", "ts_ns", "seq", "ev", "order", "percpu_refill", "comm", "pages")
        .with_columns(kind.alias("kind"))
        # The CPU's own ring-buffer order (cpu, ts_ns, seq): a stable sort on cpu of the
        # canonically sorted table (ts_ns, cpu, seq); one int key sorts ~5x faster.
        .sort("cpu", maintain_order=True)
        .with_columns(new_run.cum_sum().alias("run"))
        .filter(pl.col("kind") > 0)
        .group_by("run")
        .agg(
            pl.col("kind").first(),
            pl.col("cpu").first(),
            pl.col("ts_ns").first().alias("start_ts_ns"),
            pl.col("ts_ns").last().alias("end_ts_ns"),
            pl.len().cast(pl.Int64).alias("events"),
            pl.col("pages").sum().alias("pages"),
            pl.col("comm").first().cast(pl.String),
            pl.col("seq").first().alias("first_seq"),
        )
        .sort(["start_ts_ns", "cpu", "first_seq"])
        .select(
            pl.col("kind").replace_strict(_KIND_NAME, return_dtype=pl.String),
            "cpu",
            "start_ts_ns",
            "end_ts_ns",
            (pl.col("end_ts_ns") - pl.col("start_ts_ns")).alias("duration_ns"),
            "events",
            "pages",
            "comm",
            "first_seq",
        )
    )


def lock_bursts(table: TableLike | str | os.PathLike[str], *, extfrag_splits: bool = False) -> pl.DataFrame:
    """zone->lock sections reconstructed per CPU: one row per burst.

    Columns: ``kind`` (``pcp_refill`` / ``buddy_alloc`` / ``pcp_drain``, see
    :data:`BURST_KINDS`), ``cpu``, ``start_ts_ns``, ``end_ts_ns``, ``duration_ns``,
    ``events``, ``pages`` (sum of 2^order), ``comm`` (of the first event),
    ``first_seq``; sorted by (start_ts_ns, cpu, first_seq).  Accepts a Parquet path.
    """
    if isinstance(table, (str, os.PathLike)):
        lf = _prepare(pl.scan_parquet(table))
    else:
        lf, _ = _as_lazy(table)
    return _lock_bursts_lazy(lf, extfrag_splits=extfrag_splits).collect()


# --- helpers for the summary ---------------------------------------------------


def _dist(col: str) -> list[pl.Expr]:
    """mean / p50 / p90 / p99 / max of ``col`` (linear interpolation, numpy's default)."""
    out = [pl.col(col).mean().alias(f"{col}:mean")]
    out += [pl.col(col).quantile(q, interpolation="linear").alias(f"{col}:{n}") for n, q in QUANTILES]
    out.append(pl.col(col).max().alias(f"{col}:max"))
    return out


def _dist_dict(row: dict[str, Any] | None, col: str) -> dict[str, float | int | None]:
    keys = ["mean", *[n for n, _ in QUANTILES], "max"]
    if row is None:
        return {k: None for k in keys}
    return {k: _num(row[f"{col}:{k}"]) for k in keys}


def _num(v: Any) -> Any:
    """Round float noise off means and quantiles (6 decimals); ints pass through."""
    if isinstance(v, float):
        return round(v, 6)
    return v


def _sized(requests: int, pages: int, page_size: int) -> dict[str, int]:
    return {"requests": int(requests), "pages": int(pages), "bytes": int(pages) * page_size}


def _mt_name(code: int | None) -> str:
    if code is None:
        return "UNKNOWN"
    return MIGRATETYPE_NAMES.get(int(code), f"UNKNOWN({int(code)})")


# --- the summary -----------------------------------------------------------------


def _queries(lf: pl.LazyFrame, *, extfrag_splits: bool) -> dict[str, pl.LazyFrame]:
    """Every aggregation of the summary as a lazy query; they are collected together."""
    q: dict[str, pl.LazyFrame] = {
        "events": lf.group_by("ev").agg(pl.len().alias("n")),
        "span": lf.select(pl.col("ts_ns").min().alias("first"), pl.col("ts_ns").max().alias("last"), pl.len().alias("n")),
        **_alloc_queries(lf),
        **_perf_kmem_queries(lf),
        **_proc_queries(lf.with_columns(_proc_key().alias("proc"))),
        **_extfrag_queries(lf),
        "per_cpu": lf.group_by("cpu", "ev").agg(pl.len().alias("n")),
    }
    bursts = _lock_bursts_lazy(lf, extfrag_splits=extfrag_splits)
    q["bursts"] = bursts.group_by("kind").agg(
        pl.len().alias("bursts"),
        pl.col("events").sum().alias("total_events"),
        pl.col("pages").sum().alias("total_pages"),
        pl.col("duration_ns").sum().alias("total_duration_ns"),
        *_dist("pages"),
        *_dist("events"),
        *_dist("duration_ns"),
    )
    return q


def _alloc_queries(lf: pl.LazyFrame) -> dict[str, pl.LazyFrame]:
    """Allocations by order, by gfp text and by (order, migratetype); failed ones by gfp text."""
    alloc = lf.filter(pl.col("ev") == _ALLOC)
    return {
        "alloc_by_order": alloc.group_by("order").agg(
            pl.len().alias("requests"),
            pl.col("pages").sum().alias("pages"),
            pl.col("failed").sum().alias("failed"),
            pl.col("pages").filter(pl.col("failed")).sum().alias("failed_pages"),
        ),
        "failed_by_gfp": (
            alloc.filter(pl.col("failed"))
            .group_by(pl.col("gfp_flags").cast(pl.String))
            .agg(pl.len().alias("requests"), pl.col("pages").sum().alias("pages"))
        ),
        "order_mt": (
            alloc.filter(~pl.col("failed"))
            .group_by("order", "migratetype")
            .agg(pl.len().alias("n"), pl.col("pages").sum().alias("pages"))
        ),
        "gfp": alloc.group_by(pl.col("gfp_flags").cast(pl.String)).agg(
            pl.len().alias("requests"),
            pl.col("pages").sum().alias("pages"),
            pl.col("failed").sum().alias("failed"),
        ),
    }


def _perf_kmem_queries(lf: pl.LazyFrame) -> dict[str, pl.LazyFrame]:
    """Frees, and perf kmem's matching of frees to live allocations."""
    ev = pl.col("ev")
    # perf kmem's page_live_tree, vectorised: after an alloc the pfn is live, after a
    # free it is not (matched: erased; unmatched: was not live), so a free matches
    # iff the previous alloc-or-free event of the same pfn is a successful alloc.
    # mm_page_free_batched rides along to measure how often it repeats an mm_page_free.
    pfn_events = (
        lf.filter(((ev == _ALLOC) & ~pl.col("failed")) | ev.is_in([_FREE, _BATCHED]))
        .select("pfn", "ev", "pages")
        .sort("pfn", maintain_order=True)  # stable: trace order within a pfn
    )
    same_pfn = (pl.col("pfn").shift(1) == pl.col("pfn")).fill_null(False)
    live = (
        pfn_events.filter(ev != _BATCHED)
        .with_columns(((ev == _FREE) & (ev.shift(1) == _ALLOC).fill_null(False) & same_pfn).alias("matched"))
        .filter(ev == _FREE)
    )
    return {
        "frees": lf.filter(ev.is_in([_FREE, _BATCHED])).group_by("ev").agg(
            pl.len().alias("n"), pl.col("pages").sum().alias("pages")
        ),
        "perf_match": live.select(
            pl.col("matched").sum().alias("matched"),
            pl.col("pages").filter(pl.col("matched")).sum().alias("matched_pages"),
            (~pl.col("matched")).sum().alias("nomatch"),
            pl.col("pages").filter(~pl.col("matched")).sum().alias("nomatch_pages"),
        ),
        "batched_after_free": (
            pfn_events.with_columns(((ev.shift(1) == _FREE).fill_null(False) & same_pfn).alias("after_free"))
            .filter(ev == _BATCHED)
            .select(pl.col("after_free").sum().alias("n"))
        ),
    }


def _proc_queries(lf: pl.LazyFrame) -> dict[str, pl.LazyFrame]:
    """trace-pagealloc-postprocess.pl per comm-pid (``proc``).

    Plain counters need no order (one (proc, ev) group-by, reshaped in _proc_table); the
    drain/refill runs are found on a narrow copy sorted into each process's own event order (the
    order the script reads).
    """
    ev = pl.col("ev")
    frag = pl.col("fragmenting").fill_null(False)
    same_proc = pl.col("proc") == pl.col("proc").shift(1)
    prev_ev = pl.when(same_proc.fill_null(False)).then(ev.shift(1))
    return {
        "proc_ev": lf.group_by("proc", "ev").agg(
            pl.col("comm").first().cast(pl.String),
            pl.col("pid").first(),
            pl.len().alias("n"),
            pl.col("pages").filter(~pl.col("failed")).sum().alias("pages"),
        ),
        "proc_extfrag": (
            lf.filter(ev == _EXTFRAG)
            .group_by("proc")
            .agg(
                frag.sum().alias("extfrag_causing"),
                pl.col("change_ownership").fill_null(False).sum().alias("extfrag_migtype_changed"),
                (frag & (pl.col("fallback_order") <= EXTFRAG_SEVERE_MAX_ORDER)).sum().alias("extfrag_severe"),
                (frag & (pl.col("fallback_order") > EXTFRAG_SEVERE_MAX_ORDER)).sum().alias("extfrag_moderate"),
            )
        ),
        "proc_runs": (
            lf.select("proc", "ev")
            .sort("proc", maintain_order=True)  # stable: each process's events in trace order
            .select(
                "proc",
                ((ev == _DRAIN) & (prev_ev != _DRAIN).fill_null(True)).alias("drain_start"),
                ((ev == _ZONE_LOCKED) & (prev_ev != _ZONE_LOCKED).fill_null(True)).alias("refill_start"),
            )
            .filter(pl.col("drain_start") | pl.col("refill_start"))
            .group_by("proc")
            .agg(
                pl.col("drain_start").sum().alias("pcpu_drains"),
                pl.col("refill_start").sum().alias("pcpu_refills"),
            )
        ),
    }


def _extfrag_queries(lf: pl.LazyFrame) -> dict[str, pl.LazyFrame]:
    """mm_page_alloc_extfrag: totals, by migratetype pair, by fallback order."""
    xf = lf.filter(pl.col("ev") == _EXTFRAG)
    frag = pl.col("fragmenting").fill_null(False)
    return {
        "extfrag": xf.select(
            pl.len().alias("events"),
            frag.sum().alias("fragmenting"),
            pl.col("change_ownership").fill_null(False).sum().alias("change_ownership"),
            (frag & (pl.col("fallback_order") <= EXTFRAG_SEVERE_MAX_ORDER)).sum().alias("severe"),
            (frag & (pl.col("fallback_order") > EXTFRAG_SEVERE_MAX_ORDER)).sum().alias("moderate"),
        ),
        "extfrag_mt": xf.group_by("migratetype", "fallback_migratetype").agg(pl.len().alias("events")),
        "extfrag_order": xf.group_by("fallback_order").agg(pl.len().alias("events")),
    }


#: Perl-script report columns (and our ranking key) per comm-pid, in report order.
PROC_COLUMNS: tuple[str, ...] = (
    "pages_allocd", "alloc_events", "allocd_under_lock", "freed_direct", "freed_batched",
    "pcpu_drain_pages", "pcpu_drains", "pcpu_refills", "extfrag_fallback", "extfrag_causing",
    "extfrag_migtype_changed", "extfrag_severe", "extfrag_moderate", "pages_freed",
)  # fmt: skip
_PROC_EVENT_COLUMN = {
    _ALLOC: "alloc_events", _ZONE_LOCKED: "allocd_under_lock", _FREE: "freed_direct",
    _BATCHED: "freed_batched", _DRAIN: "pcpu_drain_pages", _EXTFRAG: "extfrag_fallback",
}  # fmt: skip


def _proc_table(proc_ev: pl.DataFrame, extfrag: pl.DataFrame, runs: pl.DataFrame) -> pl.DataFrame:
    """One row per comm-pid with :data:`PROC_COLUMNS`, from the (proc, ev) counts."""
    ev = pl.col("ev")
    counts = [pl.col("n").filter(ev == code).sum().alias(name) for code, name in _PROC_EVENT_COLUMN.items()]
    return (
        proc_ev.group_by("proc")
        .agg(
            pl.col("comm").first(),
            pl.col("pid").first(),
            pl.col("pages").filter(ev == _ALLOC).sum().alias("pages_allocd"),
            pl.col("pages").filter(ev == _FREE).sum().alias("pages_freed"),
            *counts,
        )
        .join(extfrag, on="proc", how="left")
        .join(runs, on="proc", how="left")
        .select("comm", "pid", *[pl.col(c).fill_null(0).cast(pl.Int64) for c in PROC_COLUMNS])
    )


def _summarise(
    lf: pl.LazyFrame, meta: dict[str, str], *, top: int, page_size: int, extfrag_splits: bool
) -> dict[str, Any]:
    queries = _queries(lf, extfrag_splits=extfrag_splits)
    names = list(queries)
    frames = dict(zip(names, pl.collect_all([queries[n] for n in names])))
    by_order = frames["alloc_by_order"].sort("order").to_dicts()
    alloc = _Totals(
        requests=sum(r["requests"] for r in by_order),
        pages=sum(r["pages"] for r in by_order),
        failed=sum(r["failed"] for r in by_order),
        failed_pages=sum(r["failed_pages"] or 0 for r in by_order),
    )
    fr = {r["ev"]: r for r in frames["frees"].to_dicts()}
    free_n = int(fr[_FREE]["n"]) if _FREE in fr else 0
    free_pages = int(fr[_FREE]["pages"]) if _FREE in fr else 0
    return {
        "format": "pagereplay.info/1",
        "page_size": page_size,
        "timestamp_unit": meta.get("timestamp_unit"),
        "time": _time(frames["span"].row(0, named=True)),
        "events": _event_counts(frames["events"]),
        "allocations": {
            **_sized(alloc.requests, alloc.pages, page_size),
            "succeeded": _sized(alloc.requests - alloc.failed, alloc.pages - alloc.failed_pages, page_size),
            "by_order": [{k: int(r[k]) for k in ("order", "requests", "pages", "failed")} for r in by_order],
        },
        "frees": {
            **_sized(free_n, free_pages, page_size),
            "batched": int(fr[_BATCHED]["n"]) if _BATCHED in fr else 0,
            "batched_after_free": int(frames["batched_after_free"].item(0, 0) or 0),
            "note": "on 6.1 every mm_page_free_batched is a second record of a page already freed by "
            "mm_page_free (free_unref_page_list()), not another free; batched_after_free counts those "
            "whose previous event on the pfn is an mm_page_free",
        },
        "perf_kmem": _perf_kmem(frames["perf_match"].row(0, named=True), alloc, free_n, free_pages, page_size),
        "failed": {
            **_sized(alloc.failed, alloc.failed_pages, page_size),
            "by_order": [
                {"order": int(r["order"]), "requests": int(r["failed"]), "pages": int(r["failed_pages"] or 0)}
                for r in by_order
                if r["failed"]
            ],
            "by_gfp": frames["failed_by_gfp"].sort(["requests", "gfp_flags"], descending=[True, False]).to_dicts(),
        },
        "order_migratetype": _order_migratetype(frames["order_mt"].to_dicts()),
        "top_comms": _top_comms(_proc_table(frames["proc_ev"], frames["proc_extfrag"], frames["proc_runs"]), top),
        "gfp": _gfp(frames["gfp"], top),
        "extfrag": _extfrag(frames["extfrag"].row(0, named=True), frames["extfrag_mt"], frames["extfrag_order"]),
        "per_cpu": _per_cpu(frames["per_cpu"].to_dicts()),
        "lock_sections": _lock_sections(frames["bursts"].to_dicts(), extfrag_splits),
    }


@dataclass(frozen=True)
class _Totals:
    """Allocation requests (failed ones included, as perf counts them) and their pages."""

    requests: int
    pages: int
    failed: int
    failed_pages: int


def _event_counts(events: pl.DataFrame) -> dict[str, int]:
    counts = {r["ev"]: int(r["n"]) for r in events.to_dicts()}
    return {name: counts.get(int(code), 0) for name, code in ((e.tracepoint, e.value) for e in Event)}


def _time(span: dict[str, Any]) -> dict[str, Any]:
    first, last = span["first"], span["last"]
    return {
        "events": int(span["n"]),
        "first_ts_ns": first,
        "last_ts_ns": last,
        "span_ns": (last - first) if first is not None else None,
    }


def _perf_kmem(pm: dict[str, Any], alloc: _Totals, free_n: int, free_pages: int, page_size: int) -> dict[str, Any]:
    """perf kmem's SUMMARY lines (``print_page_summary()``)."""
    matched, matched_pages = int(pm["matched"] or 0), int(pm["matched_pages"] or 0)
    nomatch, nomatch_pages = int(pm["nomatch"] or 0), int(pm["nomatch_pages"] or 0)
    return {
        "allocation_requests": _sized(alloc.requests, alloc.pages, page_size),
        "free_requests": _sized(free_n, free_pages, page_size),
        "alloc_freed": _sized(matched, matched_pages, page_size),
        "alloc_only": _sized(alloc.requests - matched, alloc.pages - matched_pages, page_size),
        "free_only": _sized(nomatch, nomatch_pages, page_size),
        "allocation_failures": _sized(alloc.failed, alloc.failed_pages, page_size),
    }


def _order_migratetype(om: list[dict[str, Any]]) -> dict[str, Any]:
    """perf kmem's order x migratetype matrix of successful allocations."""
    mt_cols = [m.name for m in Migratetype]
    mt_cols += sorted({_mt_name(r["migratetype"]) for r in om} - set(mt_cols))
    rows: dict[int, dict[str, Any]] = {}
    for r in om:
        row = rows.setdefault(int(r["order"]), {"order": int(r["order"]), **{c: 0 for c in mt_cols}, "total": 0, "pages": 0})
        row[_mt_name(r["migratetype"])] += int(r["n"])
        row["total"] += int(r["n"])
        row["pages"] += int(r["pages"])
    return {"migratetypes": mt_cols, "rows": [rows[o] for o in sorted(rows)]}


def _top_comms(procs: pl.DataFrame, top: int) -> dict[str, Any]:
    rank = ["pages_allocd", "alloc_events", "allocd_under_lock"]
    top_pids = procs.sort([*rank, "comm", "pid"], descending=[True, True, True, False, False]).head(top)
    by_comm = (
        procs.drop("pid")
        .group_by("comm")
        .agg(pl.len().cast(pl.Int64).alias("pids"), pl.all().sum())
        .sort([*rank, "comm"], descending=[True, True, True, False])
    )
    return {
        "processes": procs.height,
        "comms": by_comm.height,
        "by_comm": by_comm.head(top).to_dicts(),
        "by_comm_pid": top_pids.to_dicts(),
    }


def _gfp(g: pl.DataFrame, top: int) -> dict[str, Any]:
    return {
        "distinct": g.height,
        "by_requests": g.sort(["requests", "pages", "gfp_flags"], descending=[True, True, False]).head(top).to_dicts(),
        "by_pages": g.sort(["pages", "requests", "gfp_flags"], descending=[True, True, False]).head(top).to_dicts(),
    }


def _extfrag(x: dict[str, Any], by_mt: pl.DataFrame, by_order: pl.DataFrame) -> dict[str, Any]:
    extfrag: dict[str, Any] = {k: int(v or 0) for k, v in x.items()}
    extfrag["by_migratetype"] = [
        {"alloc_migratetype": _mt_name(r["migratetype"]), "fallback_migratetype": _mt_name(r["fallback_migratetype"]),
         "events": int(r["events"])}
        for r in by_mt.sort("events", "migratetype", "fallback_migratetype", descending=[True, False, False]).to_dicts()
    ]  # fmt: skip
    extfrag["by_fallback_order"] = [
        {"fallback_order": r["fallback_order"], "events": int(r["events"])} for r in by_order.sort("fallback_order").to_dicts()
    ]
    return extfrag


def _per_cpu(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    per_cpu: dict[int, dict[str, Any]] = {}
    for r in rows:
        row = per_cpu.setdefault(int(r["cpu"]), {"cpu": int(r["cpu"]), "events": 0, **{n: 0 for n in EVENT_NAMES}})
        row[EVENT_NAMES[r["ev"]]] += int(r["n"])
        row["events"] += int(r["n"])
    return [per_cpu[c] for c in sorted(per_cpu)]


def _lock_sections(rows: list[dict[str, Any]], extfrag_splits: bool) -> dict[str, Any]:
    b = {r["kind"]: r for r in rows}
    out: dict[str, Any] = {}
    for kind, model in BURST_KINDS.items():
        r = b.get(kind)
        out[kind] = {
            "models": model,
            "bursts": int(r["bursts"]) if r else 0,
            "events": int(r["total_events"]) if r else 0,
            "pages": int(r["total_pages"]) if r else 0,
            "duration_ns_total": int(r["total_duration_ns"]) if r else 0,
            "pages_per_burst": _dist_dict(r, "pages"),
            "events_per_burst": _dist_dict(r, "events"),
            "duration_ns": _dist_dict(r, "duration_ns"),
        }
    out["extfrag_splits"] = extfrag_splits
    out["quantiles"] = "linear interpolation (numpy default)"
    return out


def info_summary(
    table: TableLike | str | os.PathLike[str],
    *,
    top: int = 10,
    page_size: int = PAGE_SIZE,
    extfrag_splits: bool = False,
    metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Summarise a canonical event table (or a Parquet path); returns a JSON-serialisable dict.

    Layout (every count an int; ``{requests, pages, bytes}`` is a "sized" dict):

    - ``format`` ("pagereplay.info/1"), ``page_size``, ``timestamp_unit`` ("ns"/"counter"/None)
    - ``time``: ``events``, ``first_ts_ns``, ``last_ts_ns``, ``span_ns``
    - ``events``: {tracepoint name: count} for all six kmem events
    - ``allocations``: sized (every mm_page_alloc, failed included, as perf counts them),
      ``succeeded`` (sized), ``by_order`` [{order, requests, pages, failed}]
    - ``frees``: sized (mm_page_free), ``batched``, ``batched_after_free``, ``note``
    - ``perf_kmem``: sized ``allocation_requests``, ``free_requests``, ``alloc_freed``,
      ``alloc_only``, ``free_only``, ``allocation_failures`` (perf's SUMMARY lines)
    - ``failed``: sized, ``by_order`` [{order, requests, pages}], ``by_gfp`` [{gfp_flags, requests, pages}]
    - ``order_migratetype``: ``migratetypes`` (column names), ``rows``
      [{order, <migratetype>: requests..., total, pages}] (successful allocations)
    - ``top_comms``: ``processes``, ``comms``, ``by_comm`` [{comm, pids, <PROC_COLUMNS>}],
      ``by_comm_pid`` [{comm, pid, <PROC_COLUMNS>}], ranked by pages_allocd
    - ``gfp``: ``distinct``, ``by_requests`` / ``by_pages`` [{gfp_flags, requests, pages, failed}]
    - ``extfrag``: ``events``, ``fragmenting``, ``change_ownership``, ``severe``, ``moderate``,
      ``by_migratetype`` [{alloc_migratetype, fallback_migratetype, events}],
      ``by_fallback_order`` [{fallback_order, events}]
    - ``per_cpu``: [{cpu, events, <tracepoint>: count...}]
    - ``lock_sections``: ``pcp_refill`` / ``buddy_alloc`` / ``pcp_drain`` each {models, bursts,
      events, pages, duration_ns_total, pages_per_burst, events_per_burst, duration_ns} where
      the last three are {mean, p50, p90, p99, max} (None when there is no burst);
      ``extfrag_splits``, ``quantiles``

    ``top`` limits the ranked lists; ``metadata`` (pagereplay.* keys, prefix optional)
    supplies the timestamp unit when the input does not carry it.  A table with lock contention
    or untraced rows also gets ``lock_contention`` / ``untraced`` (:func:`other_kinds_summary`).
    """
    if isinstance(table, (str, os.PathLike)):
        lf, meta = _prepare(pl.scan_parquet(table)), _parquet_metadata(table)
    else:
        lf, meta = _as_lazy(table)
    if metadata:
        meta.update({k.removeprefix(METADATA_PREFIX): v for k, v in metadata.items()})
    out = _summarise(lf, meta, top=top, page_size=page_size, extfrag_splits=extfrag_splits)
    if isinstance(table, (pa.Table, str, os.PathLike)):
        out.update(other_kinds_summary(table))  # lock_contention, untraced: only when the table has them
    return out


def other_kinds_summary(table: pa.Table | str | os.PathLike[str]) -> dict[str, Any]:
    """The rows beyond the kmem events: ``lock_contention`` {begin, end, locks (distinct addresses),
    by_flags {kernel-printed flags: contention_begin count}} and ``untraced`` {kprobe event: count};
    each key only when the table has such rows (a kmem-only table gives {})."""
    want = ["event", "lock_addr", "lock_flags"]
    if isinstance(table, pa.Table):
        have = [c for c in want if c in table.column_names]
        lf = pl.from_arrow(table.select(have)).lazy()
    else:
        lf = pl.scan_parquet(table)
        have = [c for c in want if c in lf.collect_schema().names()]
        lf = lf.select(have)
    if "lock_addr" not in have:  # a schema-1 table: kmem events only
        return {}
    ev = pl.col("event").cast(pl.Enum(list(ALL_EVENT_NAMES))).to_physical().cast(pl.Int16)
    rows = (lf.with_columns(ev.alias("ev")).filter(pl.col("ev") >= len(EVENT_NAMES))
            .group_by("ev", "lock_flags").agg(pl.len().alias("n"), pl.col("lock_addr").unique().alias("locks"))
            .collect())
    out: dict[str, Any] = {}
    if rows.height == 0:
        return out
    begin, end = int(LockEvent.CONTENTION_BEGIN), int(LockEvent.CONTENTION_END)
    lock = rows.filter(pl.col("ev").is_in([begin, end]))
    if lock.height:
        by_flags: dict[str, int] = {}
        for r in lock.filter(pl.col("ev") == begin).sort("lock_flags", nulls_last=True).iter_rows(named=True):
            k = lock_flags_text(int(r["lock_flags"])) if r["lock_flags"] is not None else "?"
            by_flags[k or "(none)"] = by_flags.get(k or "(none)", 0) + int(r["n"])
        locks = {a for r in lock.iter_rows(named=True) for a in r["locks"] if a is not None}
        out["lock_contention"] = {
            "begin": int(lock.filter(pl.col("ev") == begin)["n"].sum()),
            "end": int(lock.filter(pl.col("ev") == end)["n"].sum()),
            "locks": len(locks), "by_flags": by_flags, "flag_bits": dict(LOCK_FLAG_BITS),
        }
    unt = rows.filter(pl.col("ev") >= int(min(UntracedEvent))).group_by("ev").agg(pl.col("n").sum()).sort("ev")
    if unt.height:
        out["untraced"] = {ALL_EVENT_NAMES[int(r["ev"])]: int(r["n"]) for r in unt.iter_rows(named=True)}
    return out


def info_summary_from_parquet(
    path: str | os.PathLike[str], *, top: int = 10, page_size: int = PAGE_SIZE, extfrag_splits: bool = False
) -> dict[str, Any]:
    """:func:`info_summary` of a Parquet file written by ``pagereplay parse``, scanned lazily."""
    return info_summary(path, top=top, page_size=page_size, extfrag_splits=extfrag_splits)


def _parquet_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    import pyarrow.parquet as pq

    raw = pq.read_schema(path).metadata or {}
    return {
        k.decode().removeprefix(METADATA_PREFIX): v.decode()
        for k, v in raw.items()
        if k.decode().startswith(METADATA_PREFIX)
    }
