"""Tracepoint ``format`` files, their print fmt, and the metadata blocks every binary trace carries.

A binary record holds the raw fields of an event; ``trace-cmd report`` and ``perf script`` print
them through the event's *print fmt*, a C ``printf`` format plus one C expression per conversion
(``"pfn=0x%lx order=%d", REC->pfn != -1UL ? REC->pfn : 0, REC->order``).  Some values the text
shows exist only there: a failed allocation's ``pfn=0``, extfrag's ``pageblock_order`` (a
constant expression) and ``fragmenting``, the gfp flag names (``__print_flags`` with a table of
constant expressions).  So the binary readers do what the text parsers read: for each printed
``key=`` of an event they evaluate the print-fmt argument of that key over the raw fields
(vectorised with numpy) with the small C-expression evaluator below.  Field offsets, sizes and
signedness always come from the format the file carries, so other kernels' layouts just work.

The format syntax is the one tracefs writes (``events/<system>/<event>/format``), reimplemented
from its description; the flag rendering follows ``show_gfp_flags()`` as printed by
``__print_flags``: flags are tried in table order, each whose bits are all set is printed and its
bits cleared, and a remainder is printed as ``0x%x``.

The shared metadata blocks (header page/event, ftrace and event formats, kallsyms, printk,
saved cmdlines) have the same layout in trace.dat v6 and v7 (one block per section) and in
perf's ``HEADER_TRACING_DATA``; ``read_*`` below parse them from a ``Cursor``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .cursor import Cursor

# ---------------------------------------------------------------------------------------- fields
_FIELD = re.compile(
    r"field:\s*(?P<decl>[^;]*?)\s*;\s*offset:\s*(?P<off>\d+)\s*;\s*size:\s*(?P<size>\d+)\s*;(?:\s*signed:\s*(?P<signed>-?\d+)\s*;)?"
)
_DECL = re.compile(r"^(?P<type>.*?)(?P<name>[A-Za-z_]\w*)\s*(?:\[(?P<arr>[^\]]*)\])?\s*$")


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    offset: int
    size: int
    signed: bool
    array: int | None = None  # fixed array length ([N]); 0 for a flexible tail array ([])
    dynamic: bool = False  # __data_loc / __rel_loc

    @property
    def end(self) -> int:
        return self.offset + self.size


def parse_field_line(line: str) -> Field | None:
    m = _FIELD.search(line)
    if not m:
        return None
    decl = m.group("decl").strip()
    dynamic = decl.startswith(("__data_loc", "__rel_loc"))
    if dynamic:  # "__data_loc char[] name"
        decl = decl.split(None, 1)[1] if " " in decl else decl
        decl = decl.replace("[]", " ")
    d = _DECL.match(decl)
    if not d:
        return None
    arr = d.group("arr")
    array = None
    if arr is not None:
        array = int(arr) if arr.strip().isdigit() else 0
    signed = m.group("signed")
    typ = d.group("type").strip()
    return Field(
        name=d.group("name"),
        type=typ,
        offset=int(m.group("off")),
        size=int(m.group("size")),
        signed=(signed == "1") if signed is not None else not typ.startswith("unsigned"),
        array=array,
        dynamic=dynamic,
    )


# ---------------------------------------------------------------------------------------- formats
@dataclass
class EventFormat:
    system: str
    name: str
    id: int
    fields: dict[str, Field]
    common: tuple[str, ...]  # names of the common fields (before the blank line)
    print_fmt: str = ""  # the C format string (escapes decoded)
    print_args: list[str] = field(default_factory=list)
    _keys: dict[str, PrintedKey] | None = None

    @property
    def payload_size(self) -> int:
        """Bytes a record needs to hold every fixed field."""
        return max((f.end for f in self.fields.values() if not (f.array == 0 and f.size == 0)), default=0)

    def printed_keys(self) -> dict[str, PrintedKey]:
        """``key`` -> how the text shows ``key=...`` (the argument's expression or a literal)."""
        if self._keys is None:
            self._keys = _printed_keys(self.print_fmt, self.print_args)
        return self._keys


def parse_format(text: str, system: str = "") -> EventFormat:
    """Parse one ``format`` file.  Raises ``ValueError`` (the caller adds file and offset)."""
    name = ""
    eid = -1
    fields: dict[str, Field] = {}
    common: list[str] = []
    in_common = True
    pf = ""
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("name:"):
            name = s[5:].strip()
        elif s.startswith("ID:"):
            try:
                eid = int(s[3:].strip())
            except ValueError:
                raise ValueError(f"bad ID line {s[:60]!r}") from None
        elif s.startswith(("field:", "field ")):
            f = parse_field_line(s)
            if f is None:
                raise ValueError(f"bad field line {s[:80]!r}")
            fields[f.name] = f
            if in_common:
                common.append(f.name)
        elif s == "" and fields:
            in_common = False
        elif s.startswith("print fmt:"):
            pf = line.split("print fmt:", 1)[1].strip()
    if not name or eid < 0:
        raise ValueError("format without name: or ID:")
    fmt, args = split_print_fmt(pf) if pf else ("", [])
    return EventFormat(system, name, eid, fields, tuple(common), fmt, args)


def split_print_fmt(pf: str) -> tuple[str, list[str]]:
    """``"fmt", a, b`` -> (decoded fmt, [a, b]) (commas inside brackets or strings do not split)."""
    pf = pf.strip()
    if not pf.startswith('"'):
        return "", []
    i = 1
    out = []
    while i < len(pf) and pf[i] != '"':
        c = pf[i]
        if c == "\\" and i + 1 < len(pf):
            nxt = pf[i + 1]
            out.append({"n": "\n", "t": "\t", '"': '"', "\\": "\\"}.get(nxt, "\\" + nxt))
            i += 2
            continue
        out.append(c)
        i += 1
    fmt = "".join(out)
    rest = pf[i + 1 :].strip()
    args: list[str] = []
    if rest.startswith(","):
        args = _split_top(rest[1:])
    return fmt, args


def _split_top(s: str) -> list[str]:
    args, depth, cur, instr, i = [], 0, [], False, 0
    while i < len(s):
        c = s[i]
        if instr:
            cur.append(c)
            if c == "\\" and i + 1 < len(s):
                cur.append(s[i + 1])
                i += 1
            elif c == '"':
                instr = False
        elif c == '"':
            instr = True
            cur.append(c)
        elif c in "([{":
            depth += 1
            cur.append(c)
        elif c in ")]}":
            depth -= 1
            cur.append(c)
        elif c == "," and depth == 0:
            args.append("".join(cur).strip())
            cur = []
        else:
            cur.append(c)
        i += 1
    if "".join(cur).strip():
        args.append("".join(cur).strip())
    return args


# ---------------------------------------------------------------------------------------- printed keys
_CONV = re.compile(r"%(?P<flags>[-+ #0]*)(?P<width>\*|\d+)?(?:\.(?P<prec>\*|\d+))?(?P<len>hh|h|ll|l|L|z|j|t)?(?P<conv>[diouxXcspfeEgG%])")


@dataclass(frozen=True)
class PrintedKey:
    key: str
    conv: str  # printf conversion letter ('' for a literal)
    hex: bool  # printed in hex (%x or a 0x prefix)
    arg: str | None  # the C expression, or None for a literal value
    literal: str | None = None


def _printed_keys(fmt: str, args: list[str]) -> dict[str, PrintedKey]:
    keys: dict[str, PrintedKey] = {}
    ai = 0
    pos = 0
    for m in _CONV.finditer(fmt):
        if m.group("conv") == "%":
            continue
        # literal key=value tokens between the previous conversion and this one (not the token
        # this conversion completes, as in "pfn=0x%lx")
        seg = fmt[pos : m.start()]
        if seg and not seg[-1].isspace():
            seg = seg.rsplit(None, 1)[0] if len(seg.split()) > 1 else ""
        _literals(seg, keys)
        pos = m.end()
        for star in (m.group("width"), m.group("prec")):
            if star == "*":
                ai += 1
        arg = args[ai] if ai < len(args) else None
        ai += 1
        conv = m.group("conv")
        if conv == "p":  # %pS, %pK...: the extension letters belong to the conversion
            while pos < len(fmt) and fmt[pos].isalnum():
                pos += 1
        before = fmt[: m.start()]
        km = re.search(r"([A-Za-z_]\w*)=(0x|0X)?$", before)
        if km and km.group(1) not in keys:
            keys[km.group(1)] = PrintedKey(km.group(1), conv, conv in "xX" or bool(km.group(2)), arg)
    _literals(fmt[pos:], keys)
    return keys


def _literals(text: str, keys: dict[str, PrintedKey]) -> None:
    for tok in text.split():
        if "=" in tok:
            k, v = tok.split("=", 1)
            if v and re.fullmatch(r"[A-Za-z_]\w*", k) and k not in keys:
                keys[k] = PrintedKey(k, "", v.lower().startswith("0x"), None, v)


# ---------------------------------------------------------------------------------------- C expressions
class Unevaluable(Exception):
    """The expression uses something the evaluator does not know (a kernel symbol, a call...)."""


_TOKEN = re.compile(
    r"\s*(?:(?P<num>0[xX][0-9a-fA-F]+[uUlL]*|\d+[uUlL]*)|(?P<id>[A-Za-z_]\w*)|(?P<str>\"(?:[^\"\\]|\\.)*\")"
    r"|(?P<chr>'(?:[^'\\]|\\.)')|(?P<op>->|<<|>>|<=|>=|==|!=|&&|\|\||[-+*/%<>&|^~!?:(),{}\[\].]))"
)
_TYPE_WORDS = {
    "unsigned", "signed", "int", "long", "short", "char", "void", "struct", "const", "volatile", "bool", "_Bool",
    "u8", "u16", "u32", "u64", "s8", "s16", "s32", "s64", "__u8", "__u16", "__u32", "__u64", "__s8", "__s16",
    "__s32", "__s64", "size_t", "ssize_t", "gfp_t", "pid_t", "__bitwise", "enum", "union", "float", "double",
}


def _tokenize(s: str) -> list[tuple[str, str]]:
    out = []
    pos = 0
    s = s.rstrip()
    while pos < len(s):
        m = _TOKEN.match(s, pos)
        if not m or m.end() == pos:
            raise Unevaluable(f"cannot tokenize {s[pos:pos + 20]!r}")
        pos = m.end()
        kind = m.lastgroup
        out.append((kind, m.group(kind)))  # type: ignore[arg-type]
    return out


_BINARY = {
    "||": 1, "&&": 2, "|": 3, "^": 4, "&": 5, "==": 6, "!=": 6, "<": 7, ">": 7, "<=": 7, ">=": 7,
    "<<": 8, ">>": 8, "+": 9, "-": 9, "*": 10, "/": 10, "%": 10,
}


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _tokenize(text)
        self.i = 0

    def peek(self, k: int = 0) -> tuple[str, str] | None:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else None

    def take(self, val: str | None = None) -> tuple[str, str]:
        t = self.peek()
        if t is None or (val is not None and t[1] != val):
            raise Unevaluable(f"expected {val!r}, got {t!r}")
        self.i += 1
        return t

    def parse(self):
        e = self.expr()
        if self.peek() is not None:
            raise Unevaluable(f"trailing tokens {self.toks[self.i:self.i + 3]}")
        return e

    def expr(self):
        return self.ternary()

    def ternary(self):
        c = self.binary(1)
        t = self.peek()
        if t and t[1] == "?":
            self.take("?")
            a = self.expr()
            self.take(":")
            b = self.ternary()
            return ("tern", c, a, b)
        return c

    def binary(self, level: int):
        lhs = self.unary()
        while True:
            t = self.peek()
            if not t or t[0] != "op" or t[1] not in _BINARY or _BINARY[t[1]] < level:
                return lhs
            op = t[1]
            self.i += 1
            rhs = self.binary(_BINARY[op] + 1)
            lhs = ("bin", op, lhs, rhs)

    def _is_cast(self) -> bool:
        # "(" type-words [*]... ")" followed by something that starts an operand
        j = self.i + 1
        words = []
        while j < len(self.toks) and (self.toks[j][0] == "id" or self.toks[j][1] == "*"):
            words.append(self.toks[j][1])
            j += 1
        if not words or j >= len(self.toks) or self.toks[j][1] != ")":
            return False
        names = [w for w in words if w != "*"]
        if not names or names[0] == "REC":
            return False
        if "*" in words or any(w in _TYPE_WORDS or w.endswith("_t") for w in names):
            nxt = self.toks[j + 1] if j + 1 < len(self.toks) else None
            return nxt is not None and (nxt[0] in ("num", "id", "str", "chr") or nxt[1] in ("(", "-", "~", "!", "+"))
        return False

    def unary(self):
        t = self.peek()
        if t is None:
            raise Unevaluable("unexpected end")
        if t[1] in ("-", "~", "!", "+"):
            self.i += 1
            return ("un", t[1], self.unary())
        if t[1] == "(" and self._is_cast():
            self.take("(")
            words = []
            while self.peek()[1] != ")":  # type: ignore[index]
                words.append(self.take()[1])
            self.take(")")
            return ("cast", " ".join(words), self.unary())
        return self.postfix(self.primary())

    def postfix(self, e):
        while True:
            t = self.peek()
            if t and t[1] == "->":
                self.i += 1
                nm = self.take()[1]
                if e == ("id", "REC"):
                    e = ("field", nm)
                else:
                    e = ("member", e, nm)
            elif t and t[1] == ".":
                self.i += 1
                e = ("member", e, self.take()[1])
            elif t and t[1] == "[":
                self.i += 1
                idx = self.expr()
                self.take("]")
                e = ("index", e, idx)
            elif t and t[1] == "(" and e[0] == "id":
                self.i += 1
                args = []
                if self.peek() and self.peek()[1] != ")":  # type: ignore[index]
                    args.append(self.expr())
                    while self.peek() and self.peek()[1] == ",":  # type: ignore[index]
                        self.i += 1
                        args.append(self.expr())
                self.take(")")
                e = ("call", e[1], args)
            else:
                return e

    def primary(self):
        kind, val = self.take()
        if kind == "num":
            digits = val.rstrip("uUlL")
            suffix = val[len(digits):].lower()
            v = int(digits, 16) if digits.lower().startswith("0x") else (int(digits, 8) if digits.startswith("0") and len(digits) > 1 else int(digits))
            return ("num", v, "u" in suffix)
        if kind == "id":
            return ("id", val)
        if kind == "str":
            return ("str", bytes(val[1:-1], "utf-8").decode("unicode_escape"))
        if kind == "chr":
            return ("num", ord(bytes(val[1:-1], "utf-8").decode("unicode_escape")), False)
        if val == "(":
            e = self.expr()
            self.take(")")
            return e
        if val == "{":
            items = [self.expr()]
            while self.peek() and self.peek()[1] == ",":  # type: ignore[index]
                self.i += 1
                items.append(self.expr())
            self.take("}")
            return ("brace", items)
        raise Unevaluable(f"unexpected {val!r}")


def parse_expr(text: str):
    """The expression tree of one print-fmt argument (``Unevaluable`` if it cannot be parsed)."""
    try:
        return _Parser(text).parse()
    except (IndexError, TypeError, ValueError, UnicodeDecodeError) as e:
        raise Unevaluable(str(e)) from None


_M64 = (1 << 64) - 1


def _type_bits(typ: str, long_size: int) -> tuple[int, bool] | None:
    """(bits, signed) of a cast's type, or None for a no-op (unknown typedef)."""
    w = typ.replace("__bitwise", "").split()
    if "*" in typ:
        return long_size * 8, False
    unsigned = "unsigned" in w
    core = [x for x in w if x not in ("unsigned", "signed", "const", "volatile")]
    name = " ".join(core)
    table = {
        "char": 8, "short": 16, "short int": 16, "int": 32, "": 32, "long": long_size * 8, "long int": long_size * 8,
        "long long": 64, "long long int": 64, "bool": 1, "_Bool": 1,
        "u8": 8, "s8": 8, "__u8": 8, "__s8": 8, "u16": 16, "s16": 16, "__u16": 16, "__s16": 16,
        "u32": 32, "s32": 32, "__u32": 32, "__s32": 32, "u64": 64, "s64": 64, "__u64": 64, "__s64": 64,
        "gfp_t": 32, "pid_t": 32, "size_t": long_size * 8, "ssize_t": long_size * 8,
    }
    if name not in table:
        return None
    bits = table[name]
    if name.startswith(("u", "__u")) or name in ("gfp_t", "size_t"):
        unsigned = True
    return bits, not unsigned


def _wrap(v, bits: int, signed: bool):
    """``v`` cast to a ``bits``-bit integer, kept as an int64 (Python int or numpy array)."""
    if bits == 1:
        return (v != 0) * 1 if not isinstance(v, np.ndarray) else (v != 0).astype(np.int64)
    if bits >= 64:
        return _i64(v)
    mask = (1 << bits) - 1
    if isinstance(v, np.ndarray):
        u = v & np.int64(mask)
        if signed:
            u = np.where(u >= (1 << (bits - 1)), u - (1 << bits), u)
        return u
    u = int(v) & mask
    return u - (1 << bits) if signed and u >= (1 << (bits - 1)) else u


def _i64(v):
    if isinstance(v, np.ndarray):
        return v
    v = int(v) & _M64
    return v - (1 << 64) if v >= (1 << 63) else v


class Evaluator:
    """Evaluate print-fmt expressions over raw fields.

    ``fields(name)`` returns the values of ``REC->name`` (an int64 numpy array in vector mode, a
    Python int in scalar mode); values are int64 two's complement throughout (an unsigned long of
    all ones and ``-1UL`` are both -1), which is exact for ``==``/``!=`` and for every value below
    2**63.
    """

    def __init__(self, fields: Callable[[str], Any], long_size: int = 8) -> None:
        self.fields = fields
        self.long_size = long_size
        self._tables: dict[int, list[tuple[int, str]]] = {}  # flag tables, by the id of their entries

    def num(self, e):
        k = e[0]
        if k == "num":
            return _i64(e[1])
        if k == "field":
            return self.fields(e[1])
        if k == "cast":
            v = self.num(e[2])
            tb = _type_bits(e[1], self.long_size)
            return v if tb is None else _wrap(v, *tb)
        if k == "un":
            v = self.num(e[2])
            op = e[1]
            if op == "-":
                return _i64(-v) if not isinstance(v, np.ndarray) else -v
            if op == "+":
                return v
            if op == "~":
                return _i64(~v) if not isinstance(v, np.ndarray) else ~v
            return _bool(v == 0)
        if k == "bin":
            return self._bin(e[1], e[2], e[3])
        if k == "tern":
            c = self.num(e[1])
            if not isinstance(c, np.ndarray):
                return self.num(e[2]) if c != 0 else self.num(e[3])
            a, b = self.num(e[2]), self.num(e[3])
            return np.where(c != 0, a, b)
        raise Unevaluable(f"cannot evaluate {k} {e[1] if len(e) > 1 else ''}")

    def _bin(self, op: str, ea, eb):
        if op in ("&&", "||"):
            a = self.num(ea)
            b = self.num(eb)
            r = ((a != 0) & (b != 0)) if op == "&&" else ((a != 0) | (b != 0))
            return _bool(r)
        a = self.num(ea)
        b = self.num(eb)
        vec = isinstance(a, np.ndarray) or isinstance(b, np.ndarray)
        if op == "+":
            r = a + b
        elif op == "-":
            r = a - b
        elif op == "*":
            r = a * b
        elif op in ("/", "%"):
            if np.any(np.asarray(b) == 0):
                raise Unevaluable("division by zero")
            q = np.trunc(np.asarray(a) / np.asarray(b)).astype(np.int64) if vec else int(a / b) if abs(a) < 2**52 else abs(a) // abs(b) * (1 if (a >= 0) == (b >= 0) else -1)
            r = q if op == "/" else a - b * q
        elif op == "<<":
            r = (np.asarray(a, np.int64) << np.asarray(b, np.int64)) if vec else a << b
        elif op == ">>":
            r = (np.asarray(a, np.int64) >> np.asarray(b, np.int64)) if vec else a >> b
        elif op == "&":
            r = a & b
        elif op == "|":
            r = a | b
        elif op == "^":
            r = a ^ b
        else:
            r = _bool({"==": a == b, "!=": a != b, "<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[op])
            return r
        return r if vec else _i64(r)

    # ------------------------------------------------------------ strings (scalar mode)
    def text(self, e, conv: str = "s") -> str:
        """The text an expression prints (scalar mode), e.g. ``__print_flags``."""
        k = e[0]
        if k == "str":
            return e[1]
        if k == "tern":
            return self.text(e[2], conv) if self.num(e[1]) != 0 else self.text(e[3], conv)
        if k == "call" and e[1] == "__print_flags":
            val = int(self.num(e[2][0])) & _M64
            delim = self.text(e[2][1])
            return print_flags(val, delim, self._table(e[2], 2))
        if k == "call" and e[1] == "__print_symbolic":
            val = int(self.num(e[2][0]))
            for v, name in self._table(e[2], 1):
                if v == val:
                    return name
            return f"0x{val & _M64:x}"
        v = self.num(e)
        return f"{int(v) & _M64:x}" if conv in "xX" else str(int(v))

    def _table(self, args: list, start: int) -> list[tuple[int, str]]:
        t = self._tables.get(id(args))
        if t is None:
            t = self._tables[id(args)] = self.flag_table(args[start:])
        return t

    def flag_table(self, entries) -> list[tuple[int, str]]:
        out = []
        for it in entries:
            if it[0] == "brace" and len(it[1]) == 2 and it[1][1][0] != "str":
                try:  # the { 0, NULL } terminator newer kernels append
                    if self.num(it[1][1]) == 0:
                        continue
                except Unevaluable:
                    pass
            if it[0] != "brace" or len(it[1]) != 2 or it[1][1][0] != "str":
                raise Unevaluable("flag table entry is not {value, \"name\"}")
            v = self.num(it[1][0])
            if isinstance(v, np.ndarray):
                raise Unevaluable("flag value is not a constant")
            out.append((int(v) & _M64, it[1][1][1]))
        return out


def _bool(r):
    return r.astype(np.int64) if isinstance(r, np.ndarray) else int(bool(r))


def print_flags(val: int, delim: str, table: list[tuple[int, str]]) -> str:
    """``__print_flags``: names of the table entries whose bits are all set, in table order (each
    one's bits cleared once printed), then any remainder in hex."""
    parts = []
    for fv, name in table:
        if fv and (val & fv) == fv:
            parts.append(name)
            val &= ~fv
    if val:
        parts.append(f"0x{val:x}")
    return delim.join(parts)


def constant(expr_text: str, long_size: int = 8) -> int | None:
    """The value of a constant expression, or None if it is not one."""
    try:
        def nofield(name: str):
            raise Unevaluable(name)

        v = Evaluator(nofield, long_size).num(parse_expr(expr_text))
        return int(v)
    except Unevaluable:
        return None


# ---------------------------------------------------------------------------------------- metadata blocks
@dataclass
class Headers:
    """What ``header_page`` and ``header_event`` say about the ring buffer's layout."""

    page_ts_size: int = 8
    commit_offset: int = 8
    commit_size: int = 8  # the kernel's long
    data_offset: int = 16
    data_size: int = 4080
    header_page: str = ""
    header_event: str = ""

    @property
    def long_size(self) -> int:
        return self.commit_size


def parse_header_page(text: str) -> Headers:
    h = Headers(header_page=text)
    for line in text.splitlines():
        f = parse_field_line(line)
        if f is None:
            continue
        if f.name == "timestamp":
            h.page_ts_size = f.size
        elif f.name == "commit":
            h.commit_offset, h.commit_size = f.offset, f.size
        elif f.name == "data":
            h.data_offset, h.data_size = f.offset, f.size
    return h


MAX_TEXT = 1 << 30  # a metadata text block larger than this is a corrupt length


def read_header_info(c: Cursor) -> Headers:
    start = c.pos
    c.expect(b"header_page\0", "header_page tag")
    n = c.u64("header_page size")
    page = c.bytes(n, "header_page text").decode("utf-8", "replace")
    c.expect(b"header_event\0", "header_event tag")
    n = c.u64("header_event size")
    ev = c.bytes(n, "header_event text").decode("utf-8", "replace")
    h = parse_header_page(page)
    h.header_event = ev
    if h.commit_size not in (4, 8) or h.data_offset not in (h.commit_offset + h.commit_size, 16, 12):
        c.fail(f"header_page describes an unknown ring-buffer page (commit size {h.commit_size}, data at {h.data_offset})", start)
    return h


def _format_block(c: Cursor, system: str, formats: dict[int, EventFormat], what: str) -> None:
    at = c.pos
    n = c.u64(f"{what} format size")
    text = c.bytes(n, f"{what} format text").decode("utf-8", "replace")
    try:
        f = parse_format(text, system)
    except ValueError as e:
        c.fail(f"corrupt {what} format: {e}", at)
    formats[f.id] = f


def read_ftrace_formats(c: Cursor, formats: dict[int, EventFormat]) -> None:
    n = c.u32("ftrace format count")
    if n > c.left // 8:
        c.fail(f"corrupt ftrace format count {n}", c.pos - 4)
    for _ in range(n):
        _format_block(c, "ftrace", formats, "ftrace event")


def read_event_formats(c: Cursor, formats: dict[int, EventFormat]) -> None:
    nsys = c.u32("event system count")
    if nsys > c.left // 5:
        c.fail(f"corrupt event system count {nsys}", c.pos - 4)
    for _ in range(nsys):
        system = c.cstr("event system name")
        n = c.u32("event format count")
        if n > c.left // 8:
            c.fail(f"corrupt event format count {n}", c.pos - 4)
        for _ in range(n):
            _format_block(c, system, formats, f"{system} event")


def skip_u32_block(c: Cursor, what: str) -> None:
    n = c.u32(f"{what} size")
    c.skip(n, what)


def read_cmdlines(c: Cursor) -> dict[int, str]:
    n = c.u64("saved cmdlines size")
    text = c.bytes(n, "saved cmdlines").decode("utf-8", "backslashreplace")
    return parse_cmdlines(text)


def parse_cmdlines(text: str) -> dict[int, str]:
    out: dict[int, str] = {}
    for line in text.split("\n"):
        if not line:
            continue
        pid, _, comm = line.partition(" ")
        try:
            out[int(pid)] = comm
        except ValueError:
            continue
    return out


@dataclass
class TracingMeta:
    """The metadata blocks of one trace: ring-buffer headers, event formats, saved cmdlines."""

    headers: Headers
    formats: dict[int, EventFormat]
    cmdlines: dict[int, str]
    formats_offset: int | None = None  # file offset of the event formats (for messages)


def read_tracing_blocks(c: Cursor, *, cmdlines: bool = True) -> TracingMeta:
    """The v6 sequence: header info, ftrace formats, event formats, kallsyms, printk, [cmdlines]."""
    headers = read_header_info(c)
    formats: dict[int, EventFormat] = {}
    read_ftrace_formats(c, formats)
    at = c.pos
    read_event_formats(c, formats)
    skip_u32_block(c, "kallsyms")
    skip_u32_block(c, "printk formats")
    cl = read_cmdlines(c) if cmdlines else {}
    return TracingMeta(headers, formats, cl, at)
