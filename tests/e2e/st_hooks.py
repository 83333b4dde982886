"""Schemathesis hooks: the named formats of the OpenAPI document (``smartrec-filter``, the filter
language; ``smartrec-page-token``, the server's page tokens), so that generated values are ones
the server must accept.

The filter language is not a regular language (nesting), so the OpenAPI document names it as a
format instead of a pattern; this strategy follows the grammar in ``pipeline/filters.py``.
"""

from __future__ import annotations

import json
import time

import schemathesis
from hypothesis import strategies as st

from smartrec.pipeline.rules import PageState

FIELDS = ["item_id", "title", "category", "categories", "available"]
OPS = ["==", "=", "!=", "<", "<=", ">", ">="]

_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)
_field = st.one_of(st.sampled_from(FIELDS), _names.map(lambda n: f"attributes.{n}"))
_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"]), max_size=12)
_ordered = st.one_of(
    _text.map(json.dumps),
    st.integers(-(10**6), 10**6).map(str),
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(repr),
)
_value = st.one_of(_ordered, st.sampled_from(["true", "false", "null"]))
#: ``published_at`` compares with epoch milliseconds or an ISO 8601 date.
_published = st.tuples(
    st.just("published_at"),
    st.sampled_from(OPS),
    st.one_of(
        st.integers(0, 2**41).map(str),
        st.dates().map(lambda d: json.dumps(d.isoformat())),
    ),
).map(" ".join)
_comparison = st.one_of(
    _published,
    # Order comparisons take numbers and strings; equality takes any literal.
    st.tuples(_field, st.sampled_from(["<", "<=", ">", ">="]), _ordered).map(" ".join),
    st.tuples(_field, st.sampled_from(["==", "=", "!="]), _value).map(" ".join),
    st.tuples(_field, st.sampled_from(["in", "not in"]), st.lists(_value, max_size=4)).map(
        lambda t: f"{t[0]} {t[1]} [{', '.join(t[2])}]"
    ),
)
_expr = st.recursive(
    _comparison,
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["and", "or", "AND", "Or"]), inner).map(" ".join),
        inner.map(lambda e: f"not {e}"),
        inner.map(lambda e: f"({e})"),
    ),
    max_leaves=6,
)

schemathesis.openapi.format("smartrec-filter", _expr)
# Page tokens are the server's own encoding of the items shown so far (with a checksum).
schemathesis.openapi.format(
    "smartrec-page-token",
    st.frozensets(st.integers(0, 2**32 - 1), min_size=1, max_size=200).map(
        lambda shown: PageState(shown).encode()
    ),
)


@schemathesis.hook
def map_body(ctx: schemathesis.HookContext, body: object) -> object:
    """The one rule the document cannot state: an event may be at most a day ahead of the
    server's clock (SMARTREC_MAX_FUTURE_SKEW_S), so generated events are dated in the past."""
    if ctx.operation is None or ctx.operation.path != "/v1/events" or not isinstance(body, dict):
        return body
    events = body.get("events")
    for event in events if isinstance(events, list) else []:
        if isinstance(event, dict) and _future(event.get("timestamp")):
            event["timestamp"] = 1_700_000_000
    return body


def _future(value: object) -> bool:
    from smartrec.schemas import to_epoch_ms

    try:
        ms = to_epoch_ms(value)
    except (ValueError, TypeError):
        return False
    return ms is not None and ms > (time.time() + 86_400) * 1000
