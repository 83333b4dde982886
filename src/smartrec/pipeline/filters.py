"""A small, safe filter language for catalog items, given per request as ``?filter=...``.

Example::

    category in ["Comedy", "Drama"] and attributes.release_year >= 1990

The text comes from anyone who can call the API, so it is never handed to ``eval`` or any
Python parser: a hand-written tokenizer and recursive-descent parser build a small AST that is
compiled into plain closures once, and cached by text.

Grammar (keywords are case-insensitive, precedence ``not`` > ``and`` > ``or``)::

    expr       := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | "(" expr ")" | comparison
    comparison := FIELD ("==" | "=" | "!=" | "<" | "<=" | ">" | ">=") VALUE
                | FIELD ["not"] "in" "[" [VALUE ("," VALUE)*] "]"
    VALUE      := STRING | NUMBER | "true" | "false" | "null"
    FIELD      := item_id | title | category | categories | available | published_at
                | attributes.NAME(.NAME)*

Strings take double or single quotes and the escapes ``\\" \\' \\\\ \\n \\t \\uXXXX``. Numbers
are JSON-like (``-1``, ``2.5``, ``1e3``) and must be finite. ``published_at`` (epoch ms) also
takes ISO 8601 date or datetime strings, converted when parsing (naive times are UTC).

Matching semantics, chosen so that matching never raises:

* A value that is missing (absent attribute, ``None``) or of another type than the literal
  makes ``==``, ``in`` and ``<``/``<=``/``>``/``>=`` false. ``bool`` is not a number, so
  ``attributes.x == 1`` is false for ``true``. Strings order by code point.
* ``null`` is the exception: ``field == null`` is true exactly when the value is missing,
  ``None`` or an empty list.
* ``!=`` is exactly ``not ==`` and ``not in`` exactly ``not (... in ...)``, so both are true
  for missing values.
* Multi-valued fields (``category`` and attributes holding a list) match when any element
  does: ``category == "X"`` means X is one of the categories, ``category in [...]`` that one of
  them is in the list.
* ``attributes.a.b`` looks ``b`` up inside the dict ``attributes["a"]``; anything else on the
  way makes the value missing.

Limits against hostile input: 4096 characters, 32 levels of nesting (parentheses and ``not``),
1000 elements per list, 256 comparisons; control characters are refused. Every failure is a
``ValidationFailed`` (``field="filter"``) naming what was expected and the 1-based position.
"""

from __future__ import annotations

import functools
import math
import numbers
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import numpy as np

from smartrec.domain import CatalogItem
from smartrec.errors import ValidationFailed

__all__ = [
    "MAX_COMPARISONS",
    "MAX_DEPTH",
    "MAX_LENGTH",
    "MAX_LIST",
    "ItemFilter",
    "parse_filter",
]

MAX_LENGTH: Final = 4096
MAX_DEPTH: Final = 32
MAX_LIST: Final = 1000
MAX_COMPARISONS: Final = 256

Scalar = str | int | float | bool | None
Predicate = Callable[[CatalogItem], bool]
Getter = Callable[[CatalogItem], Any]


class _Missing:
    """Stands for an absent value, so that it cannot be mistaken for a stored ``None``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


_MISSING: Final = _Missing()

# C0/C1 controls except tab, newline and carriage return, and lone surrogates (which would
# break encoding the problem response later).
_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_WHITESPACE: Final = " \t\n\r"
_KEYWORDS: Final = frozenset({"and", "or", "not", "in", "true", "false", "null"})
_ESCAPES: Final = {'"': '"', "'": "'", "\\": "\\", "n": "\n", "t": "\t"}
_HEX: Final = frozenset("0123456789abcdefABCDEF")
_DIGITS: Final = frozenset("0123456789")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ORDERED: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_KNOWN_FIELDS: Final = (
    "item_id, title, category (or categories), available, published_at, attributes.NAME"
)


def _fail(what: str, pos: int, got: str | None = None) -> ValidationFailed:
    """One message shape for every failure: what was expected, where (1-based), what came."""
    message = f"filter: {what} at position {pos + 1}"
    if got is not None:
        message += f", got {got}"
    return ValidationFailed(message, field="filter")


def _shorten(text: str, limit: int = 24) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- tokenizer ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # name, kw, str, num, op, ( ) [ ] , end
    value: Any
    pos: int
    text: str

    def describe(self) -> str:
        if self.kind == "end":
            return "end of input"
        return repr(_shorten(self.text))


def _is_name_char(ch: str) -> bool:
    return ch.isalnum() or ch in "_-"


def _starts_number(text: str, i: int) -> bool:
    ch, nxt = text[i], text[i + 1 : i + 2]
    if ch == "-" and nxt == ".":
        return text[i + 2 : i + 3] in _DIGITS
    return ch in _DIGITS or (ch in "-." and nxt in _DIGITS)


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in _WHITESPACE:
            i += 1
        elif ch in "()[],":
            tokens.append(_Token(ch, ch, i, ch))
            i += 1
        elif ch in "=!<>":
            two = text[i : i + 2]
            if two in ("==", "!=", "<=", ">="):
                tokens.append(_Token("op", two, i, two))
                i += 2
            elif ch == "!":
                got = repr(text[i + 1]) if i + 1 < n else "end of input"
                raise _fail("expected '=' after '!'", i + 1, got)
            else:
                tokens.append(_Token("op", "==" if ch == "=" else ch, i, ch))
                i += 1
        elif ch in "\"'":
            token, i = _read_string(text, i)
            tokens.append(token)
        elif _starts_number(text, i):
            token, i = _read_number(text, i)
            tokens.append(token)
        elif ch.isalpha() or ch == "_":
            token, i = _read_name(text, i)
            tokens.append(token)
        else:
            raise _fail("expected a field name, value, operator or parenthesis", i, repr(ch))
    tokens.append(_Token("end", None, n, ""))
    return tokens


def _read_string(text: str, start: int) -> tuple[_Token, int]:
    quote = text[start]
    out: list[str] = []
    i, n = start + 1, len(text)
    while True:
        if i >= n:
            raise _fail(f"expected a closing {quote} for the string opened", start, "end of input")
        ch = text[i]
        if ch == quote:
            break
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        esc = text[i + 1 : i + 2]
        if esc in _ESCAPES:
            out.append(_ESCAPES[esc])
            i += 2
        elif esc == "u":
            code, i = _read_unicode_escape(text, i)
            out.append(code)
        else:
            got = "end of input" if not esc else repr("\\" + esc)
            raise _fail("expected an escape (\\\" \\' \\\\ \\n \\t \\uXXXX)", i, got)
    end = i + 1
    return _Token("str", "".join(out), start, text[start:end]), end


def _read_hex4(text: str, i: int) -> int:
    """Read the 4 hex digits of a ``\\uXXXX`` escape starting at ``text[i]`` (the backslash)."""
    digits = text[i + 2 : i + 6]
    if len(digits) != 4 or not all(c in _HEX for c in digits):
        raise _fail("expected 4 hex digits after '\\u'", i + 2, repr(_shorten(digits, 8)))
    return int(digits, 16)


def _read_unicode_escape(text: str, i: int) -> tuple[str, int]:
    code = _read_hex4(text, i)
    if 0xDC00 <= code <= 0xDFFF:
        raise _fail("expected a high surrogate before a low one in '\\u' escapes", i)
    if 0xD800 <= code <= 0xDBFF:  # JSON-style surrogate pair
        if text[i + 6 : i + 8] != "\\u":
            raise _fail("expected a low surrogate escape '\\uDC00'-'\\uDFFF'", i + 6)
        low = _read_hex4(text, i + 6)
        if not 0xDC00 <= low <= 0xDFFF:
            raise _fail("expected a low surrogate escape '\\uDC00'-'\\uDFFF'", i + 6)
        return chr(0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)), i + 12
    if _FORBIDDEN.match(chr(code)):
        raise _fail("expected no control characters in '\\u' escapes", i)
    return chr(code), i + 6


def _read_number(text: str, start: int) -> tuple[_Token, int]:
    i, n = start, len(text)
    if text[i] == "-":
        i += 1
    while i < n and text[i] in _DIGITS:
        i += 1
    is_float = False
    if i < n and text[i] == ".":
        is_float = True
        i += 1
        while i < n and text[i] in _DIGITS:
            i += 1
    if i < n and text[i] in "eE":
        is_float = True
        i += 1
        if i < n and text[i] in "+-":
            i += 1
        if i >= n or text[i] not in _DIGITS:
            raise _fail("expected digits in the exponent", i, repr(text[start : i + 1]))
        while i < n and text[i] in _DIGITS:
            i += 1
    raw = text[start:i]
    if i < n and (_is_name_char(text[i]) or text[i] == "."):
        raise _fail("expected a number", start, repr(_shorten(raw + text[i])))
    value: int | float
    try:
        value = float(raw) if is_float else int(raw)
        finite = math.isfinite(float(value))
    except (ValueError, OverflowError):
        finite = False
    if not finite:
        raise _fail("expected a finite number", start, repr(_shorten(raw)))
    return _Token("num", value, start, raw), i


def _read_name(text: str, start: int) -> tuple[_Token, int]:
    i, n = start + 1, len(text)
    while i < n and _is_name_char(text[i]):
        i += 1
    while i < n and text[i] == ".":
        if i + 1 >= n or not _is_name_char(text[i + 1]):
            got = "end of input" if i + 1 >= n else repr(text[i + 1])
            raise _fail("expected a name after '.'", i + 1, got)
        i += 1
        while i < n and _is_name_char(text[i]):
            i += 1
    raw = text[start:i]
    if raw.lower() in _KEYWORDS:
        return _Token("kw", raw.lower(), start, raw), i
    return _Token("name", raw, start, raw), i


# --- AST ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Field:
    name: str  # canonical: "categories", "attributes.a.b", ...
    getter: Getter
    is_time: bool = False


@dataclass(frozen=True, slots=True)
class _Or:
    parts: tuple[_Node, ...]


@dataclass(frozen=True, slots=True)
class _And:
    parts: tuple[_Node, ...]


@dataclass(frozen=True, slots=True)
class _Not:
    child: _Node


@dataclass(frozen=True, slots=True)
class _Compare:
    field: _Field
    op: str  # == != < <= > >=
    value: Scalar


@dataclass(frozen=True, slots=True)
class _In:
    field: _Field
    values: tuple[Scalar, ...]
    negated: bool


_Node = _Or | _And | _Not | _Compare | _In


def _attribute_getter(path: tuple[str, ...]) -> Getter:
    if len(path) == 1:
        key = path[0]

        def get_one(item: CatalogItem) -> Any:
            attrs = item.attributes
            return attrs.get(key, _MISSING) if isinstance(attrs, dict) else _MISSING

        return get_one

    def get_path(item: CatalogItem) -> Any:
        value: Any = item.attributes
        for key in path:
            if not isinstance(value, dict):
                return _MISSING
            value = value.get(key, _MISSING)
        return value

    return get_path


_PLAIN_FIELDS: Final[dict[str, _Field]] = {
    "item_id": _Field("item_id", lambda item: item.item_id),
    "title": _Field("title", lambda item: item.title),
    "category": _Field("categories", lambda item: item.categories),
    "categories": _Field("categories", lambda item: item.categories),
    "available": _Field("available", lambda item: item.available),
    "published_at": _Field("published_at", lambda item: item.published_at, is_time=True),
}


def _iso_to_ms(value: str, pos: int) -> int:
    try:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return (moment - _EPOCH) // timedelta(milliseconds=1)
    except (ValueError, OverflowError, TypeError):
        raise _fail(
            "expected an ISO 8601 date or datetime for published_at", pos, repr(_shorten(value))
        ) from None


# --- parser -------------------------------------------------------------------------------


class _Parser:
    """Recursive descent over the token list; depth is bounded so recursion is too."""

    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.i = 0
        self.depth = 0
        self.comparisons = 0
        self.fields: set[str] = set()

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def advance(self) -> _Token:
        token = self.tokens[self.i]
        if token.kind != "end":
            self.i += 1
        return token

    def is_kw(self, word: str) -> bool:
        token = self.peek()
        return token.kind == "kw" and token.value == word

    def parse(self) -> _Node:
        node = self.parse_or()
        token = self.peek()
        if token.kind != "end":
            what = "expected 'and', 'or' or the end of the filter"
            if token.kind == ")":
                what = "expected no ')' without a matching '('"
            raise _fail(what, token.pos, token.describe())
        return node

    def parse_or(self) -> _Node:
        parts = [self.parse_and()]
        while self.is_kw("or"):
            self.advance()
            parts.append(self.parse_and())
        return parts[0] if len(parts) == 1 else _Or(tuple(parts))

    def parse_and(self) -> _Node:
        parts = [self.parse_not()]
        while self.is_kw("and"):
            self.advance()
            parts.append(self.parse_not())
        return parts[0] if len(parts) == 1 else _And(tuple(parts))

    def enter(self, token: _Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _fail(f"expected at most {MAX_DEPTH} levels of nesting", token.pos)

    def parse_not(self) -> _Node:
        token = self.peek()
        if self.is_kw("not"):
            self.enter(token)
            self.advance()
            node: _Node = _Not(self.parse_not())
            self.depth -= 1
            return node
        if token.kind == "(":
            self.enter(token)
            self.advance()
            node = self.parse_or()
            close = self.peek()
            if close.kind != ")":
                what = f"expected ')' (for the '(' at {token.pos + 1})"
                if close.kind != "end":
                    what = f"expected 'and', 'or' or ')' (for the '(' at {token.pos + 1})"
                raise _fail(what, close.pos, close.describe())
            self.advance()
            self.depth -= 1
            return node
        if token.kind == "name":
            return self.parse_comparison()
        after = self.tokens[self.i - 1].text if self.i else ""
        where = f" after {after!r}" if after else ""
        raise _fail(f"expected a field name, 'not' or '('{where}", token.pos, token.describe())

    def parse_field(self) -> _Field:
        token = self.advance()
        name: str = token.value
        if name in _PLAIN_FIELDS:
            field = _PLAIN_FIELDS[name]
        elif name.startswith("attributes."):
            path = tuple(name.split(".")[1:])
            field = _Field(name, _attribute_getter(path))
        else:
            raise _fail(
                f"expected a known field ({_KNOWN_FIELDS})",
                token.pos,
                f"unknown field {_shorten(name)!r}",
            )
        self.fields.add(field.name)
        return field

    def parse_comparison(self) -> _Node:
        start = self.peek()
        field = self.parse_field()
        self.comparisons += 1
        if self.comparisons > MAX_COMPARISONS:
            raise _fail(f"expected at most {MAX_COMPARISONS} comparisons", start.pos)
        token = self.peek()
        if token.kind == "op":
            self.advance()
            value = self.parse_value(token, field)
            if token.value in _ORDERED and (value is None or isinstance(value, bool)):
                raise _fail(
                    f"expected a number or string after {token.text!r}",
                    self.tokens[self.i - 1].pos,
                    self.tokens[self.i - 1].describe(),
                )
            return _Compare(field, token.value, value)
        negated = False
        if self.is_kw("not"):
            self.advance()
            negated = True
            if not self.is_kw("in"):
                after = self.peek()
                raise _fail("expected 'in' after 'not'", after.pos, after.describe())
        if self.is_kw("in"):
            in_token = self.advance()
            return _In(field, self.parse_list(in_token, field), negated)
        raise _fail(
            f"expected an operator (==, !=, <, <=, >, >=, in, not in) after {start.text!r}",
            token.pos,
            token.describe(),
        )

    def parse_value(self, after: _Token, field: _Field) -> Scalar:
        token = self.advance()
        value: Scalar
        if token.kind in ("str", "num"):
            value = token.value
        elif token.kind == "kw" and token.value in ("true", "false", "null"):
            value = {"true": True, "false": False, "null": None}[token.value]
        elif token.kind == "[":
            hint = "lists do not nest" if after.kind in ("[", ",") else "lists go with 'in'"
            raise _fail(f"expected a single value after {after.text!r} ({hint})", token.pos)
        else:
            raise _fail(f"expected a value after {after.text!r}", token.pos, token.describe())
        if field.is_time:
            if isinstance(value, bool):
                raise _fail(
                    "expected a number, ISO 8601 string or null for published_at", token.pos
                )
            if isinstance(value, str):
                value = _iso_to_ms(value, token.pos)
        return value

    def parse_list(self, in_token: _Token, field: _Field) -> tuple[Scalar, ...]:
        token = self.advance()
        if token.kind != "[":
            raise _fail("expected '[' after 'in'", token.pos, token.describe())
        values: list[Scalar] = []
        if self.peek().kind == "]":
            self.advance()
            return ()
        after = token
        while True:
            if len(values) >= MAX_LIST:
                raise _fail(f"expected at most {MAX_LIST} list elements", self.peek().pos)
            values.append(self.parse_value(after, field))
            after = self.advance()
            if after.kind == "]":
                return tuple(values)
            if after.kind != ",":
                raise _fail("expected ',' or ']' in the list", after.pos, after.describe())


# --- compiler -----------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    kind = type(value)
    if kind is int or kind is float:
        return True
    if kind is bool or isinstance(value, np.bool_):
        return False
    return isinstance(value, numbers.Real)


def _key(value: Any) -> tuple[str, Any] | None:
    """A hashable key that keeps types apart (``True`` != ``1``); None when incomparable."""
    if value is None or value is _MISSING:
        return ("null", None)
    if isinstance(value, str):
        return ("str", value)
    if isinstance(value, bool | np.bool_):
        return ("bool", bool(value))
    if _is_number(value):
        return ("num", value)
    return None


_NULL_KEY: Final = ("null", None)


def _scalar_test(op: str, value: Scalar) -> Callable[[Any], bool]:
    """A test on one (non-list) stored value."""
    if op in _ORDERED:
        compare = _ORDERED[op]
        if isinstance(value, str):
            return lambda v: isinstance(v, str) and compare(v, value)

        def numeric(v: Any) -> bool:
            try:
                return _is_number(v) and bool(compare(v, value))
            except (TypeError, ValueError, ArithmeticError):  # exotic number types
                return False

        return numeric
    target = _key(value)
    if isinstance(value, str):
        return lambda v: isinstance(v, str) and v == value
    if target == _NULL_KEY:
        return lambda v: v is None or v is _MISSING
    return lambda v: _key(v) == target


def _lift(field: _Field, test: Callable[[Any], bool], empty: bool) -> Predicate:
    """Apply ``test`` to the field, with "any element" semantics for list values."""
    get = field.getter

    def predicate(item: CatalogItem) -> bool:
        value = get(item)
        if isinstance(value, list | tuple):
            if not value:
                return empty
            return any(test(v) for v in value)
        return test(value)

    return predicate


def _negate(inner: Predicate) -> Predicate:
    return lambda item: not inner(item)


def _all(parts: list[Predicate]) -> Predicate:
    if len(parts) == 2:
        first, second = parts
        return lambda item: first(item) and second(item)

    def conjunction(item: CatalogItem) -> bool:
        return all(part(item) for part in parts)

    return conjunction


def _any(parts: list[Predicate]) -> Predicate:
    if len(parts) == 2:
        first, second = parts
        return lambda item: first(item) or second(item)

    def disjunction(item: CatalogItem) -> bool:
        return any(part(item) for part in parts)

    return disjunction


def _compile(node: _Node) -> Predicate:
    if isinstance(node, _Or):
        return _any([_compile(part) for part in node.parts])
    if isinstance(node, _And):
        return _all([_compile(part) for part in node.parts])
    if isinstance(node, _Not):
        return _negate(_compile(node.child))
    if isinstance(node, _Compare):
        op = "==" if node.op == "!=" else node.op
        test = _scalar_test(op, node.value)
        predicate = _lift(node.field, test, empty=op == "==" and node.value is None)
        return _negate(predicate) if node.op == "!=" else predicate
    keys = {_key(value) for value in node.values}

    def in_test(v: Any) -> bool:
        return _key(v) in keys

    predicate = _lift(node.field, in_test, empty=_NULL_KEY in keys)
    return _negate(predicate) if node.negated else predicate


# --- public API ---------------------------------------------------------------------------


class ItemFilter:
    """A compiled filter; cheap to call, safe to share between requests."""

    __slots__ = ("_predicate", "fields", "text")

    def __init__(self, text: str, predicate: Predicate, fields: frozenset[str]) -> None:
        self.text = text
        self.fields = fields
        self._predicate = predicate

    def matches(self, item: CatalogItem) -> bool:
        return bool(self._predicate(item))

    def mask(self, items: Sequence[CatalogItem | None]) -> np.ndarray:
        """Boolean mask over candidates; ``None`` (an unknown item) never matches."""
        predicate = self._predicate
        return np.fromiter(
            (item is not None and bool(predicate(item)) for item in items),
            dtype=bool,
            count=len(items),
        )

    def __repr__(self) -> str:
        return f"ItemFilter({self.text!r})"


@functools.lru_cache(maxsize=1024)
def _parse_cached(text: str) -> ItemFilter:
    bad = _FORBIDDEN.search(text)
    if bad:
        raise _fail("expected no control characters", bad.start(), f"U+{ord(bad.group()):04X}")
    parser = _Parser(_tokenize(text))
    node = parser.parse()
    return ItemFilter(text, _compile(node), frozenset(parser.fields))


def parse_filter(text: str) -> ItemFilter:
    """Parse and compile ``text``; raises ``ValidationFailed`` (field ``filter``) on any error."""
    if not isinstance(text, str):
        raise ValidationFailed("filter: expected a string", field="filter")
    if len(text) > MAX_LENGTH:
        raise _fail(
            f"expected at most {MAX_LENGTH} characters", MAX_LENGTH, f"{len(text)} characters"
        )
    try:
        return _parse_cached(text)
    except ValidationFailed:
        raise
    except Exception as exc:  # a bug here must still read as a 422, never a 500
        raise ValidationFailed(
            f"filter: could not be parsed ({type(exc).__name__})", field="filter"
        ) from exc
