"""The scanner's shortcuts (header template, key cache, eight-byte searches) and the early sha256.

Each shortcut must give exactly what the plain byte-by-byte grammar gives; the
plain-Python scanner (``PAGEREPLAY_JIT=0``) has none of the word tricks, so
it is the reference here.  Small blocks put many lines at the very end of a
block, where the eight-byte searches must not run past the line.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys

import pyarrow.parquet as pq

from parsers.api import parse_files, parse_to_parquet, read_metadata
from parsers.inputs import LineBlocks, RawHasher, start_hashers

_GFPS = ("GFP_KERNEL", "GFP_HIGHUSER_MOVABLE|__GFP_COMP", "GFP_NOWAIT|__GFP_NOWARN|__GFP_NORETRY|__GFP_COMP|__GFP_RECLAIMABLE")


def _tricky_trace(n: int, seed: int = 7) -> str:
    """Lines that share a header prefix but differ right after it, keys in odd orders, and so on."""
    rnd = random.Random(seed)
    comms = ["rm-842", "x-1", "kworker/u8:2-36", "a b-77", "[x] y-5", "<idle>-0", "dd-12345678"]
    out = ["# tracer: nop", "#"]
    ts = 10_000_000
    for i in range(n):
        ts += rnd.choice((0, 0, 1, 7, 130))
        comm = rnd.choice(comms)
        cpu = rnd.choice((0, 0, 1, 3))
        flags = rnd.choice((".....", "d..1.", "", "dNs2."))
        secs, us = divmod(ts, 1_000_000)
        stamp = f"{secs}.{us:06d}:" if rnd.random() > 0.02 else rnd.choice((f"{secs}.{us:06d}", f"{secs}:", "1.2.3:", f"{secs}.{us:09d}:"))
        pad = " " * rnd.choice((1, 2, 4))
        head = f"{comm:>16} [{cpu:03d}] {flags}{pad}{stamp} "
        kind = rnd.random()
        pfn = rnd.choice((f"0x{rnd.randrange(1, 1 << 24):x}", str(rnd.randrange(1, 1 << 20)), "0x0", "-1", "0xzz"))
        gfp = rnd.choice(_GFPS)
        if kind < 0.35:
            keys = [f"page={rnd.randrange(1 << 32):016x}", f"pfn={pfn}", f"order={rnd.randrange(11)}",
                    f"migratetype={rnd.randrange(4)}", f"gfp_flags={gfp}"]
            if rnd.random() < 0.1:
                rnd.shuffle(keys)
            if rnd.random() < 0.05:
                keys.insert(rnd.randrange(len(keys)), rnd.choice(("x=1", "=3", "alloc_order=2", "cpu=1")))
            line = head + "mm_page_alloc: " + " ".join(keys)
        elif kind < 0.6:
            line = head + f"mm_page_free: page={rnd.randrange(1 << 32):016x} pfn={pfn} order={rnd.randrange(3)}"
        elif kind < 0.75:
            line = head + f"mm_page_alloc_zone_locked: page=0 pfn={pfn} order=0 migratetype=1 percpu_refill={rnd.randrange(2)}"
        elif kind < 0.85:
            line = head + f"mm_page_pcpu_drain: page=0 pfn={pfn} order=0 migratetype={rnd.randrange(3)}"
        elif kind < 0.9:
            line = head + (f"mm_page_alloc_extfrag: page=0 pfn={pfn} alloc_order=0 fallback_order=3 alloc_migratetype=1 "
                           f"fallback_migratetype=0 fragmenting=1 change_ownership=0")
        elif kind < 0.95:
            line = head + rnd.choice(("sched_switch: prev_comm=a", "kmem:mm_page_free: page=0 pfn=0x5 order=0",
                                      "mm_page_free:", "<stack trace>", "mm_page_free: pfn"))
        else:
            line = rnd.choice(("", "   ", "# comment", "CPU:3 [LOST 12 EVENTS]", head, "garbage"))
        if rnd.random() < 0.03:
            line += "\r"
        out.append(line)
    return "\n".join(out)  # no final newline


def test_scanner_shortcuts_match_the_plain_python_scanner(tmp_path):
    src = tmp_path / "t.txt"
    src.write_text(_tricky_trace(3000))
    outs = {}
    for bs in (97, 4096, 1 << 20):
        code = (
            "import sys, json; from parsers.api import parse_to_parquet;"
            f"a = parse_to_parquet([{str(src)!r}], sys.argv[1], block_size={bs});"
            "open(sys.argv[2], 'w').write(json.dumps(a, sort_keys=True))"
        )
        env = dict(os.environ, PAGEREPLAY_JIT="0")
        py_pq, py_acc = tmp_path / f"py{bs}.parquet", tmp_path / f"py{bs}.json"
        subprocess.run([sys.executable, "-c", code, str(py_pq), str(py_acc)], check=True, env=env)
        jit_pq = tmp_path / f"jit{bs}.parquet"
        acc = parse_to_parquet([src], jit_pq, block_size=bs)
        assert json.loads(py_acc.read_text()) == json.loads(json.dumps(acc, sort_keys=True)), bs
        assert pq.read_table(py_pq).equals(pq.read_table(jit_pq)), bs
        outs[bs] = pq.read_table(jit_pq).to_pylist()
        assert acc["lines_malformed"] > 0 and acc["lines_parsed"] > 1000
    assert outs[97] == outs[1 << 20]  # (the dictionaries of the row groups differ with the block size)


def test_last_value_of_a_block_stops_at_the_newline():
    """A value that ends a block ends at its line's end (eight-byte searches stop there)."""
    for width in range(1, 20):
        comm = "c" * width
        line = f"{comm}-1 [000] 1.000000: mm_page_alloc: page=0 pfn=0x1 order=0 migratetype=1 gfp_flags=GFP_KERNEL\n"
        for text in (line, line * 3, line.rstrip("\n")):
            r = parse_files([text.encode()], block_size=len(line))
            t = r.table.to_pylist()
            assert [row["gfp_flags"] for row in t] == ["GFP_KERNEL"] * len(t), (width, text)
            assert all(row["comm"] == comm for row in t)


def test_early_hash_equals_the_file_digest(tmp_path):
    src = tmp_path / "t.txt"
    src.write_text(_tricky_trace(500))
    hashers = start_hashers([str(src), "-", b"bytes", str(tmp_path / "missing.txt"), str(tmp_path)])
    assert list(hashers) == [str(src)]
    out = tmp_path / "o.parquet"
    parse_to_parquet([src], out, hashers=hashers)
    want = hashlib.sha256(src.read_bytes()).hexdigest()
    assert json.loads(read_metadata(out)["pagereplay.inputs"])[0]["sha256"] == want


def test_hasher_hashes_again_when_the_file_changed(tmp_path):
    src = tmp_path / "t.txt"
    src.write_bytes(b"a" * 1000)
    h = RawHasher(src)
    h._thread.join()
    with open(src, "ab") as f:  # grew after the hash thread read it: the parser read 1500 bytes
        f.write(b"b" * 500)
    assert h.hexdigest(1500) == hashlib.sha256(b"a" * 1000 + b"b" * 500).hexdigest()
    assert h.hexdigest(1000) == hashlib.sha256(b"a" * 1000).hexdigest()


def test_line_blocks_reuse_released_buffers(tmp_path):
    src = tmp_path / "t.txt"
    text = "".join(f"line {i} {'x' * (i % 37)}\n" for i in range(2000))
    src.write_text(text)
    reader = LineBlocks(str(src), block_size=1000, hasher=RawHasher(src))
    seen, ids = [], set()
    for buf, n in reader.blocks():
        seen.append(bytes(buf[:n]))
        ids.add(id(buf))
        reader.release(buf)
    reader.close()
    assert b"".join(seen).decode() == text
    assert all(b.endswith(b"\n") for b in seen)
    assert len(ids) <= 2  # the same buffer again and again (a file being hashed on its own thread)
    assert reader.info.sha256 == hashlib.sha256(text.encode()).hexdigest()
