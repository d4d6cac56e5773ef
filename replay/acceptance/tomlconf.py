"""Reading the ``[KEY.NAME]`` tables of a user TOML file (policies, cost presets), with one-line errors."""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def read_toml(p: Path, error: type[Exception], *, file_kind: str) -> dict[str, Any]:
    """The TOML document at ``p``; a missing, unreadable or invalid file raises ``error`` naming it."""
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{p}: {file_kind} file not found") from None
    except tomllib.TOMLDecodeError as e:
        raise error(f"{p}: not valid TOML: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise error(f"{p}: cannot read: {e}") from None


def read_named_tables(path: str | Path, key: str, error: type[Exception], *, file_kind: str, item: str
                      ) -> tuple[Path, dict[str, Any]]:
    """``(path, {NAME: table})`` from a TOML file made of ``[key.NAME]`` tables.

    Every problem (missing or unreadable file, bad TOML, other top-level keys, no table)
    raises ``error`` with a message naming the file and what is allowed.
    """
    p = Path(path)
    raw = read_toml(p, error, file_kind=file_kind)
    extra = set(raw) - {key}
    if extra:
        raise error(f"{p}: unknown top-level key(s) {sorted(extra)}; allowed: {key} "
                    f"(write each {item} as [{key}.NAME])")
    tables = raw.get(key)
    if not isinstance(tables, dict) or not tables:
        raise error(f"{p}: no [{key}.NAME] tables found")
    return p, tables


def did_you_mean(key: str, allowed: Iterable[str]) -> str:
    """``" (did you mean 'KEY'?)"`` for the allowed key closest to a mistyped ``key``, else ``""``."""
    import difflib

    close = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def unknown_key(where: str, key: str, allowed: Iterable[str], error: type[Exception]) -> Exception:
    """The error for a key a ``[KEY.NAME]`` table does not know: the closest allowed key, then all."""
    allowed = list(allowed)
    return error(f"{where}: unknown key '{key}'{did_you_mean(key, allowed)}; allowed: {', '.join(allowed)}")


def check_number(where: str, key: str, v: Any, error: type[Exception], *, minimum: float = 0.0,
                 maximum: float = float("inf"), what: str = "a finite number") -> float:
    """``v`` as a float if it is a finite number (not a bool) in ``[minimum, maximum]``; else ``error``
    naming the table, the key and what is allowed (NaN and inf never pass)."""
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and minimum <= v <= maximum
    if not ok:
        hi = "" if maximum == float("inf") else f" and <= {maximum:g}"
        lo = f"> 0 (at least {minimum:g})" if minimum > 0 else f">= {minimum:g}"
        raise error(f"{where} key '{key}': {v!r}; allowed: {what} {lo}{hi}")
    return float(v)
