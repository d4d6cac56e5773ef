"""Reading the ``[KEY.NAME]`` tables of a user TOML file (policies, cost presets), with one-line errors."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any


def read_named_tables(path: str | Path, key: str, error: type[Exception], *, file_kind: str, item: str
                      ) -> tuple[Path, dict[str, Any]]:
    """``(path, {NAME: table})`` from a TOML file made of ``[key.NAME]`` tables.

    Every problem (missing or unreadable file, bad TOML, other top-level keys, no table)
    raises ``error`` with a message naming the file and what is allowed.
    """
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{p}: {file_kind} file not found") from None
    except tomllib.TOMLDecodeError as e:
        raise error(f"{p}: not valid TOML: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise error(f"{p}: cannot read: {e}") from None
    extra = set(raw) - {key}
    if extra:
        raise error(f"{p}: unknown top-level key(s) {sorted(extra)}; allowed: {key} "
                    f"(write each {item} as [{key}.NAME])")
    tables = raw.get(key)
    if not isinstance(tables, dict) or not tables:
        raise error(f"{p}: no [{key}.NAME] tables found")
    return p, tables
