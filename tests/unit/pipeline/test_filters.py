from __future__ import annotations

import random
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from smartrec.domain import CatalogItem
from smartrec.errors import ValidationFailed
from smartrec.pipeline import filters
from smartrec.pipeline.filters import ItemFilter, parse_filter

MS_2020 = int(datetime(2020, 1, 1, tzinfo=UTC).timestamp() * 1000)


def item(
    item_id: str = "i1",
    title: str | None = "Heat",
    categories: list[str] | None = None,
    attributes: dict[str, Any] | None = None,
    available: bool = True,
    published_at: int | None = None,
) -> CatalogItem:
    return CatalogItem(
        item_id=item_id,
        title=title,
        categories=["Crime", "Drama"] if categories is None else categories,
        attributes={"release_year": 1995, "rating": 8.3} if attributes is None else attributes,
        available=available,
        placeholder=False,
        published_at=published_at,
    )


@pytest.fixture(autouse=True)
def _fresh_parse_cache() -> None:
    # Every test parses and compiles its filters itself, never reusing a compiled filter that
    # an earlier test (or a process this one was forked from, as mutation testing does) left
    # in the cache by text (the cache is tested by test_compiled_filters_are_cached_by_text).
    filters._parse_cached.cache_clear()


HEAT = item()
BARE = item("i2", title=None, categories=[], attributes={}, available=False)


def matches(text: str, it: CatalogItem = HEAT) -> bool:
    result = parse_filter(text).matches(it)
    assert isinstance(result, bool)
    return result


def error(text: Any) -> str:
    with pytest.raises(ValidationFailed) as info:
        parse_filter(text)
    assert info.value.field == "filter"
    assert info.value.status == 422
    message = str(info.value)
    assert message.startswith("filter: ")
    return message


# --- the issue's example and the public API ---------------------------------------------------


def test_issue_example() -> None:
    text = 'category in ["Comedy","Drama"] and attributes.release_year >= 1990'
    f = parse_filter(text)
    assert isinstance(f, ItemFilter)
    assert f.text == text
    assert f.fields == {"categories", "attributes.release_year"}
    assert f.matches(HEAT)
    assert not f.matches(item(attributes={"release_year": 1989}))
    assert not f.matches(item(categories=["Horror"]))
    assert not f.matches(BARE)


def test_mask_is_bool_and_none_never_matches() -> None:
    f = parse_filter('category == "Drama"')
    mask = f.mask([HEAT, None, BARE, item(categories=["Drama"])])
    assert mask.dtype == np.bool_
    np.testing.assert_array_equal(mask, [True, False, False, True])
    assert f.mask([]).shape == (0,)


def test_compiled_filters_are_cached_by_text() -> None:
    text = 'title == "Heat" and available == true'
    assert parse_filter(text) is parse_filter(text)
    assert parse_filter(text) is not parse_filter(text + " ")


def test_module_never_evaluates_python() -> None:
    source = Path(filters.__file__).read_text()
    assert not re.search(r"(?<![\w.])(eval|exec|compile)\(|literal_eval|import ast", source)


# --- operators and fields ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('item_id == "i1"', True),
        ('item_id = "i1"', True),
        ('item_id != "i1"', False),
        ("item_id == 'i2'", False),
        ('title == "Heat"', True),
        ('title < "Hf"', True),
        ('title >= "Heat"', True),
        ('title > "Heat"', False),
        ('title <= "Hea"', False),
        ("available == true", True),
        ("available != false", True),
        ("available == 1", False),  # bool is not a number
        ("attributes.release_year == 1995", True),
        ("attributes.release_year == 1995.0", True),
        ("attributes.release_year != 1995", False),
        ("attributes.release_year < 1996", True),
        ("attributes.release_year <= 1995", True),
        ("attributes.release_year > 1995", False),
        ("attributes.release_year >= 1995", True),
        ("attributes.rating > 8.25", True),
        ("attributes.rating < 8.3e0", False),
        ("attributes.rating > -1", True),
        ("attributes.rating > -.5", True),
        ("attributes.rating < 1E1", True),
        ('attributes.release_year == "1995"', False),  # type mismatch
        ('attributes.release_year < "2000"', False),
        ("attributes.release_year in [1990, 1995, 2000]", True),
        ("attributes.release_year in [1990, 2000]", False),
        ("attributes.release_year not in [1990, 2000]", True),
        ("attributes.release_year not in [1995]", False),
        ('category == "Drama"', True),
        ('categories == "Crime"', True),
        ('category == "Comedy"', False),
        ('category != "Drama"', False),
        ('category in ["Comedy", "Crime"]', True),
        ('category in ["Comedy"]', False),
        ('category not in ["Comedy"]', True),
        ('category not in ["Drama"]', False),
        ('category < "D"', True),  # "Crime" < "D"
        ("category in []", False),
        ("category not in []", True),
    ],
)
def test_operators(text: str, expected: bool) -> None:
    assert matches(text) is expected


def test_keywords_are_case_insensitive() -> None:
    assert matches('NOT category == "X" AnD title == "Heat" Or available == FALSE')
    assert matches('category NOT IN ["X"] and available == True')
    assert matches("attributes.missing == NULL")


def test_precedence_not_over_and_over_or() -> None:
    # or binds loosest: true or (false and false)
    assert matches('title == "Heat" or title == "x" and title == "y"')
    # not binds tightest: (not true) and true -> false
    assert not matches('not title == "Heat" and available == true')
    assert matches('not (title == "Heat" and available == false)')
    assert not matches('(title == "Heat" or title == "x") and title == "y"')
    assert matches("not not available == true")
    assert matches("((available == true))")


def test_published_at_numbers_and_iso_dates() -> None:
    new = item(published_at=MS_2020 + 1)
    assert matches('published_at > "2020-01-01"', new)
    assert matches('published_at >= "2020-01-01T00:00:00.001Z"', new)
    assert not matches('published_at > "2020-01-01T00:00:00.001+00:00"', new)
    assert matches('published_at < "2020-01-01T01:00:00+01:00"', new) is False
    assert matches('published_at < "2020-01-01T00:00:01"', new)  # naive means UTC
    assert matches(f"published_at == {MS_2020 + 1}", new)
    assert matches('published_at in ["2019-01-01", "2020-01-01T00:00:00.001Z"]', new)
    assert matches('published_at > "2019-12-31" and published_at < "2020-01-02"', new)
    # a missing date is neither before nor after anything
    assert not matches('published_at < "2100-01-01"')
    assert not matches('published_at > "1900-01-01"')
    assert matches("published_at == null")
    assert matches('published_at != "2020-01-01"')


@pytest.mark.parametrize(
    "text", ['published_at > "yesterday"', 'published_at in ["2020-13-01"]', "published_at > true"]
)
def test_bad_dates_are_parse_errors(text: str) -> None:
    assert "published_at" in error(text)


def test_missing_values_and_type_mismatch() -> None:
    for text in [
        "attributes.nope == 1",
        "attributes.nope in [1, 2]",
        "attributes.nope < 1",
        "attributes.nope >= 1",
        'attributes.nope > ""',
        "attributes.release_year.deeper == 1",
        'title == "Heat"',
        'title < "z"',
        'category == "Drama"',
        "category < 1",
    ]:
        assert not matches(text, BARE if text.startswith(("title", "category")) else HEAT), text
    # != and not in are the exact negations, so they hold for missing values
    assert matches("attributes.nope != 1")
    assert matches("attributes.nope not in [1]")
    assert matches('title != "Heat"', BARE)
    # null matches missing, None and an empty list
    assert matches("attributes.nope == null")
    assert matches("title == null", BARE)
    assert matches("category == null", BARE)
    assert matches("category in [null]", BARE)
    assert not matches("title == null")
    assert matches("title != null")
    assert matches("attributes.none == null", item(attributes={"none": None}))


def test_nested_attributes() -> None:
    it = item(attributes={"a": {"b": {"c-d": 3}, "x": 1}, "flat.key": 1, "n_2": "v"})
    assert matches("attributes.a.b.c-d == 3", it)
    assert matches("attributes.a.x == 1", it)
    assert not matches("attributes.a.x.y == 1", it)  # 1 is not a dict
    assert not matches("attributes.flat.key == 1", it)  # dots always mean nesting
    assert matches("attributes.n_2 == 'v'", it)
    assert parse_filter("attributes.a.b.c-d == 3").fields == {"attributes.a.b.c-d"}


def test_list_valued_attributes_use_any_semantics() -> None:
    it = item(attributes={"tags": ["a", "b", 3, True], "empty": [], "objs": [{"k": 1}]})
    assert matches('attributes.tags == "a"', it)
    assert matches("attributes.tags == 3", it)
    assert matches("attributes.tags == true", it)
    assert not matches("attributes.tags == 1", it)  # True is not 1
    assert matches('attributes.tags in ["z", "b"]', it)
    assert not matches('attributes.tags in ["z"]', it)
    assert matches('attributes.tags not in ["z"]', it)
    assert matches("attributes.tags > 2", it)
    assert matches('attributes.tags != "a"', it) is False
    assert not matches('attributes.empty == "a"', it)
    assert matches("attributes.empty == null", it)
    assert not matches("attributes.objs == 1", it)
    assert not matches("attributes.objs < 1", it)


def test_odd_stored_values_never_raise() -> None:
    it = item(
        attributes={
            "nan": float("nan"),
            "dict": {"a": 1},
            "np": np.int64(7),
            "npbool": np.bool_(True),
            "big": 10**400,
        }
    )
    assert not matches("attributes.nan == 1", it)
    assert not matches("attributes.nan < 1", it)
    assert matches("attributes.nan != 1", it)
    assert not matches("attributes.dict == 1", it)
    assert not matches('attributes.dict < "a"', it)
    assert matches("attributes.np == 7 and attributes.np > 6.5", it)
    assert matches("attributes.np in [7]", it)
    assert matches("attributes.npbool == true", it)
    assert not matches("attributes.npbool == 1", it)
    assert matches("attributes.big > 1e300", it)


def test_strings_escapes_and_unicode() -> None:
    it = item(title="He said \"hi\"\n\tand 'left' \\ é 🎬")
    assert matches(r"""title == "He said \"hi\"\n\tand 'left' \\ \u00e9 \ud83c\udfac" """, it)
    assert matches(r"""title == 'He said "hi"\n\tand \'left\' \\ é 🎬'""", it)
    assert matches('title == "Amélie"', item(title="Amélie"))
    assert matches('category == "ドラマ"', item(categories=["ドラマ"]))
    assert matches("attributes.année == 2001", item(attributes={"année": 2001}))


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("attributes.release_year >=", "expected a value after '>=' at position 27"),
        ("attributes.release_year >= ", "expected a value after '>=' at position 28"),
        ("", "at position 1, got end of input"),
        ("   ", "at position 4, got end of input"),
        ('title == "abc', 'expected a closing " for the string opened at position 10'),
        ("title == 'abc", "expected a closing ' for the string opened at position 10"),
        ('title == "a\\', "expected an escape"),
        ('title == "\\x41"', "expected an escape"),
        ('title == "\\u12"', "expected 4 hex digits after '\\u' at position 13"),
        ('title == "\\udc00"', "surrogate"),
        ('title == "\\ud800x"', "surrogate"),
        ('title == "\\u0000"', "control characters"),
        ("foo == 1", "expected a known field"),
        ("attributes == 1", "got unknown field 'attributes'"),
        ("Title == 1", "unknown field 'Title'"),
        ("attributes. == 1", "expected a name after '.' at position 12"),
        ("title", "expected an operator"),
        ("title 1", "expected an operator (==, !=, <, <=, >, >=, in, not in) after 'title'"),
        ("title not == 1", "expected 'in' after 'not' at position 11"),
        ("title in 1", "expected '[' after 'in' at position 10"),
        ('title in ["a" "b"]', "expected ',' or ']' in the list at position 15"),
        ('title in ["a",]', "expected a value after ',' at position 15"),
        ('title in ["a"', "expected ',' or ']'"),
        ("title in [[1]]", "expected a single value after '[' (lists do not nest)"),
        ("title == [1]", "lists go with 'in'"),
        ("title < null", "expected a number or string after '<' at position 9"),
        ("title >= true", "expected a number or string after '>='"),
        ("title == title", "expected a value after '=='"),
        ("title ! = 1", "expected '=' after '!' at position 8"),
        ("title == 1 title", "expected 'and', 'or' or the end of the filter at position 12"),
        ("title == 1)", "expected no ')' without a matching '(' at position 11"),
        ("(title == 1", "expected ')' (for the '(' at 1) at position 12"),
        ("(title == 1 title", "expected 'and', 'or' or ')'"),
        ("title == 1 and", "after 'and' at position 15, got end of input"),
        ("or title == 1", "expected a field name, 'not' or '(' at position 1, got 'or'"),
        ("not", "after 'not' at position 4"),
        ("()", "at position 2, got ')'"),
        ("title == -", "at position 10, got '-'"),
        ("title == +1", "at position 10, got '+'"),
        ("title == 1.2.3", "expected a number at position 10"),
        ("title == 0x10", "expected a number at position 10"),
        ("title == 1e", "expected digits in the exponent"),
        ("title == 1e999", "expected a finite number at position 10, got '1e999'"),
        ("title == -1e999", "expected a finite number"),
        ("title == " + "9" * 400, "expected a finite number"),
        ("title == nan", "expected a value after '=='"),
        ("title == inf", "expected a value after '=='"),
        ("title == Infinity", "expected a value after '=='"),
        ('title == "a" && available == true', "at position 14, got '&'"),
        ("title == “Heat”", "got '“'"),
    ],
)
def test_error_messages_say_what_and_where(text: str, expected: str) -> None:
    assert expected in error(text)


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('x')",
        "1; DROP TABLE items",
        "title == 'x'; DROP TABLE items",
        "title == 'x' -- comment",
        "' or '1'='1",
        "title == ${jndi:ldap://x}",
        "title == {{7*7}}",
        "lambda: 0",
        "title.__class__ == 1",
        "attributes.__class__.__mro__ == 1 or ()",
        "[]",
        "==",
        "in",
        "not in",
        "and",
        ">=",
        "(",
        ")",
        "[",
        '"',
        "'",
        "\\",
        ",",
        "title == 'a' and",
        "title == 'a' or or title == 'b'",
    ],
)
def test_hostile_text_is_a_validation_error(text: str) -> None:
    error(text)


def test_control_characters_are_rejected() -> None:
    assert "expected no control characters at position 6, got U+0000" in error("title\x00 == 'a'")
    for ch in ["\x00", "\x07", "\x1b", "\x7f", "\x85", "\ud800"]:
        assert "control characters" in error(f'title == "a{ch}"')
    # tab, newline and carriage return are whitespace
    assert matches('title\t==\n"Heat"\r')


def test_size_limits() -> None:
    assert "expected at most 4096 characters at position 4097" in error("x" * 4097)
    assert "at most 4096 characters" in error('title == "' + "a" * 1_000_000 + '"')
    assert "at most 4096 characters" in error("(" * 10_000 + "title == 1" + ")" * 10_000)
    # nesting: 32 levels are fine, 33 are not (parentheses and `not` both count)
    assert matches("(" * 32 + 'title == "Heat"' + ")" * 32)
    assert "expected at most 32 levels of nesting at position 33" in error(
        "(" * 33 + "title == 1" + ")" * 33
    )
    assert "levels of nesting" in error("not " * 33 + "title == 1")
    assert "levels of nesting" in error("(" * 2000)
    assert "levels of nesting" in error("(not " * 800)
    # list elements
    assert matches("attributes.release_year in [" + ",".join(["1"] * 1000) + "]") is False
    assert "expected at most 1000 list elements" in error(
        "attributes.x in [" + ",".join(["1"] * 1001) + "]"
    )
    # comparisons
    assert matches(" or ".join(["item_id!=1"] * 256))
    assert "expected at most 256 comparisons at position 3585" in error(
        " or ".join(["item_id!=1"] * 257)
    )


def test_non_string_input() -> None:
    assert "expected a string" in error(None)
    assert "expected a string" in error(b"title == 1")


def test_no_match_time_errors_on_any_item_shape() -> None:
    f = parse_filter(
        'title < "m" or attributes.a.b >= 2 or category in ["x", 1, null] '
        "or published_at > 5 or attributes.t != false"
    )
    weird = [
        item(title=None),
        item(attributes={"a": None}),
        item(attributes={"a": [1, 2]}),
        item(attributes={"a": {"b": [None, {}, [3]]}}),
        item(attributes={"t": [[], {}]}),
        BARE,
    ]
    assert f.mask(weird).dtype == np.bool_


# --- exact messages: what a client sees in the problem's detail (field "filter") ---------------

KNOWN = "item_id, title, category (or categories), available, published_at, attributes.NAME"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "title ! = 1", "filter: expected '=' after '!' at position 8, got ' '", id="bang_space"
        ),
        pytest.param(
            "title !",
            "filter: expected '=' after '!' at position 8, got end of input",
            id="bang_end",
        ),
        pytest.param(
            "title !< 1", "filter: expected '=' after '!' at position 8, got '<'", id="bang_other"
        ),
        pytest.param(
            "title == 1 @",
            "filter: expected a field name, value, operator or parenthesis at position 12, got '@'",
            id="odd_char",
        ),
        pytest.param(
            "title == .x",
            "filter: expected a field name, value, operator or parenthesis at position 10, got '.'",
            id="dot_start",
        ),
        pytest.param(
            "title == -",
            "filter: expected a field name, value, operator or parenthesis at position 10, got '-'",
            id="minus_alone",
        ),
        pytest.param(
            "title == -.",
            "filter: expected a field name, value, operator or parenthesis at position 10, got '-'",
            id="minus_dot",
        ),
        pytest.param(
            "title == -.x",
            "filter: expected a field name, value, operator or parenthesis at position 10, got '-'",
            id="minus_dot_x",
        ),
        pytest.param(
            "title == +1",
            "filter: expected a field name, value, operator or parenthesis at position 10, got '+'",
            id="plus",
        ),
        pytest.param(
            "title => 1",
            "filter: expected a value after '=' at position 8, got '>'",
            id="eq_then_gt",
        ),
        pytest.param(
            "title < = 1",
            "filter: expected a value after '<' at position 9, got '='",
            id="lt_then_eq_text",
        ),
        pytest.param(
            "title == 1 andavailable == true",
            "filter: expected 'and', 'or' or the end of the filter at position 12, got "
            "'andavailable'",
            id="name_prefix_and",
        ),
        pytest.param(
            "nottitle == 1",
            "filter: expected a known field (item_id, title, category (or categories), available, "
            "published_at, attributes.NAME) at position 1, got unknown field 'nottitle'",
            id="name_prefix_not",
        ),
        pytest.param(
            "title inx [1]",
            "filter: expected an operator (==, !=, <, <=, >, >=, in, not in) after 'title' at "
            "position 7, got 'inx'",
            id="name_prefix_in",
        ),
        pytest.param(
            "_x == 1",
            "filter: expected a known field (item_id, title, category (or categories), available, "
            "published_at, attributes.NAME) at position 1, got unknown field '_x'",
            id="underscore_name",
        ),
        pytest.param(
            'title == "abc',
            'filter: expected a closing " for the string opened at position 10, got end of input',
            id="unclosed_dq",
        ),
        pytest.param(
            "title == 'abc",
            "filter: expected a closing ' for the string opened at position 10, got end of input",
            id="unclosed_sq",
        ),
        pytest.param(
            'title == "a\\"',
            'filter: expected a closing " for the string opened at position 10, got end of input',
            id="unclosed_after_escape",
        ),
        pytest.param(
            'title == "a\\',
            "filter: expected an escape (\\\" \\' \\\\ \\n \\t \\uXXXX) at position 12, got end "
            "of input",
            id="escape_end",
        ),
        pytest.param(
            'title == "\\x41"',
            "filter: expected an escape (\\\" \\' \\\\ \\n \\t \\uXXXX) at position 11, got "
            "'\\\\x'",
            id="escape_x",
        ),
        pytest.param(
            'title == "\\N"',
            "filter: expected an escape (\\\" \\' \\\\ \\n \\t \\uXXXX) at position 11, got "
            "'\\\\N'",
            id="escape_upper_n",
        ),
        pytest.param(
            'title == "abcdefghijklmnopqrstuvwxyz" title',
            "filter: expected 'and', 'or' or the end of the filter at position 39, got 'title'",
            id="long_string_got",
        ),
        pytest.param(
            'title == "\\u12"',
            "filter: expected 4 hex digits after '\\u' at position 13, got '12\"'",
            id="hex_short",
        ),
        pytest.param(
            'title == "\\u1',
            "filter: expected 4 hex digits after '\\u' at position 13, got '1'",
            id="hex_short_end",
        ),
        pytest.param(
            'title == "\\u12g4"',
            "filter: expected 4 hex digits after '\\u' at position 13, got '12g4'",
            id="hex_bad",
        ),
        pytest.param(
            'title == "\\uzzzzzzzzzz"',
            "filter: expected 4 hex digits after '\\u' at position 13, got 'zzzz'",
            id="hex_long_shorten",
        ),
        pytest.param(
            'title == "\\udc00"',
            "filter: expected a high surrogate before a low one in '\\u' escapes at position 11",
            id="lone_low",
        ),
        pytest.param(
            'title == "ab\\udfff"',
            "filter: expected a high surrogate before a low one in '\\u' escapes at position 13",
            id="lone_low_top",
        ),
        pytest.param(
            'title == "\\ud800x"',
            "filter: expected a low surrogate escape '\\uDC00'-'\\uDFFF' at position 17",
            id="high_then_char",
        ),
        pytest.param(
            'title == "\\ud800',
            "filter: expected a low surrogate escape '\\uDC00'-'\\uDFFF' at position 17",
            id="high_then_end",
        ),
        pytest.param(
            'title == "\\ud800\\n"',
            "filter: expected a low surrogate escape '\\uDC00'-'\\uDFFF' at position 17",
            id="high_then_backslash_n",
        ),
        pytest.param(
            'title == "\\ud800\\u0041"',
            "filter: expected a low surrogate escape '\\uDC00'-'\\uDFFF' at position 17",
            id="high_then_nonlow",
        ),
        pytest.param(
            'title == "\\udbff\\udbff"',
            "filter: expected a low surrogate escape '\\uDC00'-'\\uDFFF' at position 17",
            id="high_then_high",
        ),
        pytest.param(
            'title == "\\ud800\\ue000"',
            "filter: expected a low surrogate escape '\\uDC00'-'\\uDFFF' at position 17",
            id="high_then_e000",
        ),
        pytest.param(
            'title == "\\ud800\\uzz00"',
            "filter: expected 4 hex digits after '\\u' at position 19, got 'zz00'",
            id="high_then_badhex",
        ),
        pytest.param(
            'title == "\\u0000"',
            "filter: expected no control characters in '\\u' escapes at position 11",
            id="ctl_0000",
        ),
        pytest.param(
            'title == "a\\u001F"',
            "filter: expected no control characters in '\\u' escapes at position 12",
            id="ctl_001f",
        ),
        pytest.param(
            'title == "\\u007f"',
            "filter: expected no control characters in '\\u' escapes at position 11",
            id="ctl_007f",
        ),
        pytest.param(
            'title == "\\u009f"',
            "filter: expected no control characters in '\\u' escapes at position 11",
            id="ctl_009f",
        ),
        pytest.param(
            'title == "\\u0008"',
            "filter: expected no control characters in '\\u' escapes at position 11",
            id="ctl_0008",
        ),
        pytest.param(
            "title == 1e",
            "filter: expected digits in the exponent at position 12, got '1e'",
            id="exp_end",
        ),
        pytest.param(
            "title == 1e+",
            "filter: expected digits in the exponent at position 13, got '1e+'",
            id="exp_sign_end",
        ),
        pytest.param(
            "title == 1ex",
            "filter: expected digits in the exponent at position 12, got '1ex'",
            id="exp_letter",
        ),
        pytest.param(
            "title == 2E-x",
            "filter: expected digits in the exponent at position 13, got '2E-x'",
            id="exp_minus_letter",
        ),
        pytest.param(
            "title == 1a", "filter: expected a number at position 10, got '1a'", id="num_letter"
        ),
        pytest.param(
            "title == 1.2.3",
            "filter: expected a number at position 10, got '1.2.'",
            id="num_two_dots",
        ),
        pytest.param(
            "title == 1_000",
            "filter: expected a number at position 10, got '1_'",
            id="num_underscore",
        ),
        pytest.param(
            "title == 1-2", "filter: expected a number at position 10, got '1-'", id="num_dash"
        ),
        pytest.param(
            "title == 0x10", "filter: expected a number at position 10, got '0x'", id="num_hex"
        ),
        pytest.param(
            "title == 1234567890123456789012345x",
            "filter: expected a number at position 10, got '123456789012345678901...'",
            id="num_long_letter",
        ),
        pytest.param(
            "title == 1e5.0",
            "filter: expected a number at position 10, got '1e5.'",
            id="num_exp_dot",
        ),
        pytest.param(
            "title == 1e999",
            "filter: expected a finite number at position 10, got '1e999'",
            id="inf_pos",
        ),
        pytest.param(
            "title == -1e999",
            "filter: expected a finite number at position 10, got '-1e999'",
            id="inf_neg",
        ),
        pytest.param(
            "attributes.a..b == 1",
            "filter: expected a name after '.' at position 14, got '.'",
            id="dot_dot",
        ),
        pytest.param(
            "attributes.",
            "filter: expected a name after '.' at position 12, got end of input",
            id="dot_end",
        ),
        pytest.param(
            "attributes. == 1",
            "filter: expected a name after '.' at position 12, got ' '",
            id="dot_space",
        ),
        pytest.param(
            "foo == 1",
            "filter: expected a known field (item_id, title, category (or categories), available, "
            "published_at, attributes.NAME) at position 1, got unknown field 'foo'",
            id="unknown",
        ),
        pytest.param(
            "aaaaaaaaaaaaaaaaaaaaaaaa == 1",
            "filter: expected a known field (item_id, title, category (or categories), available, "
            "published_at, attributes.NAME) at position 1, got unknown field "
            "'aaaaaaaaaaaaaaaaaaaaaaaa'",
            id="unknown_24",
        ),
        pytest.param(
            "aaaaaaaaaaaaaaaaaaaaaaaaa == 1",
            "filter: expected a known field (item_id, title, category (or categories), available, "
            "published_at, attributes.NAME) at position 1, got unknown field "
            "'aaaaaaaaaaaaaaaaaaaaa...'",
            id="unknown_25",
        ),
        pytest.param(
            "Title == 1",
            "filter: expected a known field (item_id, title, category (or categories), available, "
            "published_at, attributes.NAME) at position 1, got unknown field 'Title'",
            id="unknown_case",
        ),
        pytest.param(
            "attributes == 1",
            "filter: expected a known field (item_id, title, category (or categories), available, "
            "published_at, attributes.NAME) at position 1, got unknown field 'attributes'",
            id="attributes_bare",
        ),
        pytest.param(
            "category.x == 1",
            "filter: expected a known field (item_id, title, category (or categories), available, "
            "published_at, attributes.NAME) at position 1, got unknown field 'category.x'",
            id="category_dot",
        ),
        pytest.param(
            "   ",
            "filter: expected a field name, 'not' or '(' at position 4, got end of input",
            id="spaces",
        ),
        pytest.param(
            "title == 1 and",
            "filter: expected a field name, 'not' or '(' after 'and' at position 15, got end of "
            "input",
            id="and_end",
        ),
        pytest.param(
            "or title == 1",
            "filter: expected a field name, 'not' or '(' at position 1, got 'or'",
            id="or_start",
        ),
        pytest.param(
            "not",
            "filter: expected a field name, 'not' or '(' after 'not' at position 4, got end of "
            "input",
            id="not_only",
        ),
        pytest.param(
            "NOT",
            "filter: expected a field name, 'not' or '(' after 'NOT' at position 4, got end of "
            "input",
            id="NOT_only",
        ),
        pytest.param(
            "()",
            "filter: expected a field name, 'not' or '(' after '(' at position 2, got ')'",
            id="paren_empty",
        ),
        pytest.param(
            ")",
            "filter: expected a field name, 'not' or '(' at position 1, got ')'",
            id="close_only",
        ),
        pytest.param(
            "(title == 1",
            "filter: expected ')' (for the '(' at 1) at position 12, got end of input",
            id="unclosed_paren",
        ),
        pytest.param(
            "(title == 1 title",
            "filter: expected 'and', 'or' or ')' (for the '(' at 1) at position 13, got 'title'",
            id="unclosed_paren_other",
        ),
        pytest.param(
            "((title == 1) title",
            "filter: expected 'and', 'or' or ')' (for the '(' at 1) at position 15, got 'title'",
            id="inner_paren",
        ),
        pytest.param(
            "(x == 1 or (title == 1)",
            "filter: expected a known field (item_id, title, category (or categories), available, "
            "published_at, attributes.NAME) at position 2, got unknown field 'x'",
            id="inner_unclosed",
        ),
        pytest.param(
            "title == 1)",
            "filter: expected no ')' without a matching '(' at position 11, got ')'",
            id="extra_close",
        ),
        pytest.param(
            "title == 1 title",
            "filter: expected 'and', 'or' or the end of the filter at position 12, got 'title'",
            id="trailing",
        ),
        pytest.param(
            "title == 1 2",
            "filter: expected 'and', 'or' or the end of the filter at position 12, got '2'",
            id="trailing_num",
        ),
        pytest.param(
            "title",
            "filter: expected an operator (==, !=, <, <=, >, >=, in, not in) after 'title' at "
            "position 6, got end of input",
            id="no_op",
        ),
        pytest.param(
            "title 1",
            "filter: expected an operator (==, !=, <, <=, >, >=, in, not in) after 'title' at "
            "position 7, got '1'",
            id="no_op_num",
        ),
        pytest.param(
            "title and",
            "filter: expected an operator (==, !=, <, <=, >, >=, in, not in) after 'title' at "
            "position 7, got 'and'",
            id="no_op_kw",
        ),
        pytest.param(
            "title not == 1",
            "filter: expected 'in' after 'not' at position 11, got '=='",
            id="not_eq",
        ),
        pytest.param(
            "title not",
            "filter: expected 'in' after 'not' at position 10, got end of input",
            id="not_end",
        ),
        pytest.param(
            "title in 1", "filter: expected '[' after 'in' at position 10, got '1'", id="in_no_list"
        ),
        pytest.param(
            "title in",
            "filter: expected '[' after 'in' at position 9, got end of input",
            id="in_end",
        ),
        pytest.param(
            'title in ["a" "b"]',
            "filter: expected ',' or ']' in the list at position 15, got '\"b\"'",
            id="list_no_comma",
        ),
        pytest.param(
            'title in ["a",]',
            "filter: expected a value after ',' at position 15, got ']'",
            id="list_trailing_comma",
        ),
        pytest.param(
            'title in ["a"',
            "filter: expected ',' or ']' in the list at position 14, got end of input",
            id="list_unclosed",
        ),
        pytest.param(
            "title in [[1]]",
            "filter: expected a single value after '[' (lists do not nest) at position 11",
            id="list_nested_first",
        ),
        pytest.param(
            "title in [1, [2]]",
            "filter: expected a single value after ',' (lists do not nest) at position 14",
            id="list_nested_later",
        ),
        pytest.param(
            "title == [1]",
            "filter: expected a single value after '==' (lists go with 'in') at position 10",
            id="list_value",
        ),
        pytest.param(
            "title < [1]",
            "filter: expected a single value after '<' (lists go with 'in') at position 9",
            id="list_value_lt",
        ),
        pytest.param(
            "title < null",
            "filter: expected a number or string after '<' at position 9, got 'null'",
            id="lt_null",
        ),
        pytest.param(
            "title >= TRUE",
            "filter: expected a number or string after '>=' at position 10, got 'TRUE'",
            id="ge_true",
        ),
        pytest.param(
            "title > false",
            "filter: expected a number or string after '>' at position 9, got 'false'",
            id="gt_false",
        ),
        pytest.param(
            "title == title",
            "filter: expected a value after '==' at position 10, got 'title'",
            id="value_name",
        ),
        pytest.param(
            "title == ==",
            "filter: expected a value after '==' at position 10, got '=='",
            id="value_op",
        ),
        pytest.param(
            "title ==",
            "filter: expected a value after '==' at position 9, got end of input",
            id="value_end",
        ),
        pytest.param(
            "title >= ",
            "filter: expected a value after '>=' at position 10, got end of input",
            id="value_end_sp",
        ),
        pytest.param(
            "title == and",
            "filter: expected a value after '==' at position 10, got 'and'",
            id="value_kw",
        ),
        pytest.param(
            "title in [in]",
            "filter: expected a value after '[' at position 11, got 'in'",
            id="value_in",
        ),
        pytest.param(
            "title = = 1", "filter: expected a value after '=' at position 9, got '='", id="eq_text"
        ),
        pytest.param(
            "title == nan",
            "filter: expected a value after '==' at position 10, got 'nan'",
            id="nan",
        ),
        pytest.param(
            'published_at > "yesterday"',
            "filter: expected an ISO 8601 date or datetime for published_at at position 16, got "
            "'yesterday'",
            id="date_bad",
        ),
        pytest.param(
            'published_at in [1, "2020-13-01"]',
            "filter: expected an ISO 8601 date or datetime for published_at at position 21, got "
            "'2020-13-01'",
            id="date_month",
        ),
        pytest.param(
            "published_at > true",
            "filter: expected a number, ISO 8601 string or null for published_at at position 16",
            id="date_bool",
        ),
        pytest.param(
            "published_at == false",
            "filter: expected a number, ISO 8601 string or null for published_at at position 17",
            id="date_bool_eq",
        ),
        pytest.param(
            "published_at in [null, true]",
            "filter: expected a number, ISO 8601 string or null for published_at at position 24",
            id="date_bool_list",
        ),
        pytest.param(
            'published_at > "not a date at all, clearly"',
            "filter: expected an ISO 8601 date or datetime for published_at at position 16, got "
            "'not a date at all, cl...'",
            id="date_long",
        ),
        pytest.param(
            "(((((((((((((((((((((((((((((((((title == 1)))))))))))))))))))))))))))))))))",
            "filter: expected at most 32 levels of nesting at position 33",
            id="nest33",
        ),
        pytest.param(
            "title\x00 == 'a'",
            "filter: expected no control characters at position 6, got U+0000",
            id="ctl",
        ),
        pytest.param(
            "title == 'a\x85'",
            "filter: expected no control characters at position 12, got U+0085",
            id="ctl_85",
        ),
        pytest.param(
            "ab\ud800",
            "filter: expected no control characters at position 3, got U+D800",
            id="ctl_sur",
        ),
        pytest.param(
            "a\x7f\x01",
            "filter: expected no control characters at position 2, got U+007F",
            id="ctl_first",
        ),
        pytest.param(
            "",
            "filter: expected a field name, 'not' or '(' at position 1, got end of input",
            id="empty",
        ),
        pytest.param(
            "title == " + "9" * 400,
            "filter: expected a finite number at position 10, got '999999999999999999999...'",
            id="int_too_big_for_a_float",
        ),
        pytest.param(
            "title == 1" + "0" * 400 + ".0",
            "filter: expected a finite number at position 10, got '100000000000000000000...'",
            id="float_overflow",
        ),
        pytest.param(
            "x" * 4097,
            "filter: expected at most 4096 characters at position 4097, got 4097 characters",
            id="too_long",
        ),
        pytest.param(
            "not " * 33 + "title == 1",
            "filter: expected at most 32 levels of nesting at position 129",
            id="not33",
        ),
        pytest.param(
            "attributes.x in [" + ",".join(["1"] * 1001) + "]",
            "filter: expected at most 1000 list elements at position 2018",
            id="list1001",
        ),
        pytest.param(
            " or ".join(["item_id!=1"] * 257),
            "filter: expected at most 256 comparisons at position 3585",
            id="cmp257",
        ),
    ],
)
def test_exact_error_message(text: str, expected: str) -> None:
    assert error(text) == expected


def test_non_string_message_is_exact() -> None:
    assert error(None) == "filter: expected a string"
    assert error(["title == 1"]) == "filter: expected a string"


# --- literals ---------------------------------------------------------------------------------


def attr(value: Any) -> CatalogItem:
    return item(attributes={"x": value})


@pytest.mark.parametrize(
    ("literal", "stored", "expected"),
    [
        pytest.param("1e3", 1000, True, id="exp"),
        pytest.param("1E3", 1000, True, id="exp_upper"),
        pytest.param("1e+3", 1000, True, id="exp_plus"),
        pytest.param("1e-3", 0.001, True, id="exp_minus"),
        pytest.param("2.5E-1", 0.25, True, id="frac_exp"),
        pytest.param("1.e1", 10, True, id="dot_then_exp"),
        pytest.param("1.", 1, True, id="trailing_dot"),
        pytest.param(".5", 0.5, True, id="leading_dot"),
        pytest.param("-.5", -0.5, True, id="minus_leading_dot"),
        pytest.param("-5", -5, True, id="negative_int"),
        pytest.param("-5", 5, False, id="sign_kept"),
        pytest.param("-0", 0, True, id="minus_zero"),
        pytest.param("007", 7, True, id="leading_zeros"),
        pytest.param("0.50", 0.5, True, id="trailing_zeros"),
        pytest.param("12345678901234567890", 12345678901234567890, True, id="big_int_exact"),
        pytest.param("12345678901234567890", 12345678901234567891, False, id="big_int_not_float"),
        pytest.param("1e3", 1001, False, id="exp_value"),
        pytest.param("10", 1, False, id="all_digits_read"),
        pytest.param("1.25", 1.25, True, id="all_decimals_read"),
        pytest.param("1e10", 10**10, True, id="all_exp_digits_read"),
        pytest.param('"1"', 1, False, id="string_is_not_number"),
        pytest.param("1", "1", False, id="number_is_not_string"),
        pytest.param("1", True, False, id="bool_is_not_one"),
        pytest.param("0", False, False, id="bool_is_not_zero"),
        pytest.param("true", 1, False, id="one_is_not_true"),
        pytest.param("false", 0, False, id="zero_is_not_false"),
        pytest.param("false", False, True, id="false"),
        pytest.param("true", np.bool_(True), True, id="numpy_bool"),
        pytest.param("1", np.bool_(True), False, id="numpy_bool_not_one"),
        pytest.param("7", np.int64(7), True, id="numpy_int"),
        pytest.param("0.5", np.float64(0.5), True, id="numpy_float"),
        pytest.param("1", 1.0, True, id="int_equals_float"),
        pytest.param("null", None, True, id="null_none"),
        pytest.param("null", [], True, id="null_empty_list"),
        pytest.param("null", [None], True, id="null_in_list"),
        pytest.param("null", [1], False, id="null_nonempty_list"),
        pytest.param("null", 0, False, id="null_zero"),
        pytest.param("null", "", False, id="null_empty_string"),
        pytest.param("null", False, False, id="null_false"),
        pytest.param("null", {}, False, id="null_empty_dict"),
        pytest.param("1", [], False, id="number_empty_list"),
        pytest.param('"a"', [], False, id="string_empty_list"),
        pytest.param("false", [], False, id="false_empty_list"),
        pytest.param('"a"', ["b", "a"], True, id="any_element"),
        pytest.param("1", [[1]], False, id="lists_do_not_flatten"),
        pytest.param("1", (1, 2), True, id="tuple_any_element"),
        pytest.param("1", {"a": 1}, False, id="dict"),
    ],
)
def test_equality_literal(literal: str, stored: Any, expected: bool) -> None:
    assert matches(f"attributes.x == {literal}", attr(stored)) is expected
    assert matches(f"attributes.x != {literal}", attr(stored)) is not expected
    assert matches(f"attributes.x in [{literal}]", attr(stored)) is expected
    assert matches(f"attributes.x not in [{literal}]", attr(stored)) is not expected


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        pytest.param(r'"\""', '"', id="dq"),
        pytest.param(r"'\''", "'", id="sq"),
        pytest.param(r"'\"'", '"', id="dq_in_sq"),
        pytest.param(r'"\'"', "'", id="sq_in_dq"),
        pytest.param('"it\'s"', "it's", id="other_quote_plain"),
        pytest.param(r'"\\"', "\\", id="backslash"),
        pytest.param(r'"\\n"', "\\n", id="backslash_then_n"),
        pytest.param(r'"a\nb"', "a\nb", id="newline"),
        pytest.param(r'"a\tb"', "a\tb", id="tab"),
        pytest.param(r'"\u00e9"', "é", id="u_lower"),
        pytest.param(r'"\u00E9x"', "éx", id="u_upper_then_char"),
        pytest.param(r'"\u0041\u0042"', "AB", id="u_twice"),
        pytest.param(r'"\u0009"', "\t", id="u_tab_allowed"),
        pytest.param(r'"\u000a"', "\n", id="u_newline_allowed"),
        pytest.param(r'"\u00a0"', "\xa0", id="u_after_c1"),
        pytest.param(r'"\u0020"', " ", id="u_space"),
        pytest.param(r'"\u007e"', "~", id="u_before_del"),
        pytest.param(r'"\ud7ff"', "\ud7ff", id="u_before_surrogates"),
        pytest.param(r'"\ue000"', "\ue000", id="u_after_surrogates"),
        pytest.param(r'"\uffff"', "\uffff", id="u_max"),
        pytest.param(r'"\ud83c\udfac"', "🎬", id="pair"),
        pytest.param(r'"\ud83c\udfacX"', "🎬X", id="pair_then_char"),
        pytest.param(r'"\ud800\udc00"', "\U00010000", id="pair_min"),
        pytest.param(r'"\udbff\udfff"', "\U0010ffff", id="pair_max"),
        pytest.param(r'"\ud801\udc37"', "\U00010437", id="pair_mid"),
        pytest.param(r'"\udbff\udc00"', "\U0010fc00", id="pair_high_max_low_min"),
        pytest.param(r'"\ud800\udfff"', "\U000103ff", id="pair_high_min_low_max"),
        pytest.param('""', "", id="empty"),
        pytest.param("''", "", id="empty_single"),
        pytest.param('"a b"', "a b", id="inner_space"),
        pytest.param('"and"', "and", id="keyword_inside"),
    ],
)
def test_string_literal(literal: str, value: str) -> None:
    assert matches(f"title == {literal}", item(title=value))
    assert not matches(f"title == {literal}", item(title=value + "_"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param('title=="Heat"', True, id="eq_tight"),
        pytest.param('title="Heat"', True, id="single_eq_tight"),
        pytest.param('title!="Heat"', False, id="ne_tight"),
        pytest.param('title<"Hf"', True, id="lt_tight"),
        pytest.param('title<"Heat"', False, id="lt_strict"),
        pytest.param('title<="Heat"', True, id="le_tight"),
        pytest.param('title>"Hea"', True, id="gt_tight"),
        pytest.param('title>"Heat"', False, id="gt_strict"),
        pytest.param('title>="Heat"', True, id="ge_tight"),
        pytest.param('title>="Hf"', False, id="ge_false"),
        pytest.param('title in["Heat"]', True, id="in_tight"),
        pytest.param('title not in["Heat"]', False, id="not_in_tight"),
        pytest.param('(title=="Heat")and(available==true)', True, id="parens_tight"),
        pytest.param('\ttitle\n==\r"Heat"\r\n', True, id="all_whitespace"),
        pytest.param('title == "Heat" Or title == "x"', True, id="or_mixed_case"),
        pytest.param('title In ["Heat"]', True, id="in_mixed_case"),
        pytest.param('title == "Heat" and available == True', True, id="true_mixed_case"),
        pytest.param("attributes.rating>-1", True, id="negative_tight"),
        pytest.param("attributes.rating>8", True, id="number_then_nothing"),
        pytest.param("attributes.release_year==1995", True, id="number_eq_tight"),
        pytest.param("attributes.release_year in [1995,1996]", True, id="list_tight"),
        pytest.param("attributes.release_year in [1990 , 1995 ]", True, id="list_spaced"),
        pytest.param("attributes.release_year in [1990, 2000]", False, id="list_none"),
        pytest.param("attributes.release_year == 1995)", None, id="close"),
    ],
)
def test_tokenizer_edges(text: str, expected: bool | None) -> None:
    if expected is None:
        error(text)
    else:
        assert matches(text) is expected


@pytest.mark.parametrize(
    ("name", "attributes", "expected"),
    [
        pytest.param("andy", {"andy": 1}, True, id="and_prefix"),
        pytest.param("order", {"order": 1}, True, id="or_prefix"),
        pytest.param("note", {"note": 1}, True, id="not_prefix"),
        pytest.param("index", {"index": 1}, True, id="in_prefix"),
        pytest.param("nullable", {"nullable": 1}, True, id="null_prefix"),
        pytest.param("a-b", {"a-b": 1}, True, id="dash"),
        pytest.param("a_b", {"a_b": 1}, True, id="underscore"),
        pytest.param("_a", {"_a": 1}, True, id="leading_underscore"),
        pytest.param("a1", {"a1": 1}, True, id="digit"),
        pytest.param("1a", {"1a": 1}, True, id="leading_digit_segment"),
        pytest.param("a.b", {"a": {"b": 1}}, True, id="nested"),
        pytest.param("a.b.c", {"a": {"b": {"c": 1}}}, True, id="nested_deep"),
        pytest.param("a.b.c", {"a": {"b": 1}}, False, id="nested_not_dict"),
        pytest.param("a.b", {"a": [{"b": 1}]}, False, id="nested_list_is_not_dict"),
        pytest.param("a.b", {"a.b": 1}, False, id="dots_mean_nesting"),
        pytest.param("a.b", {"b": 1}, False, id="nested_wrong_parent"),
        pytest.param("a.b", {"a": {"c": 1}}, False, id="nested_missing"),
        pytest.param("a", {"A": 1}, False, id="case_sensitive"),
        pytest.param("and", {"and": 1}, True, id="keyword_as_attribute"),
    ],
)
def test_attribute_names(name: str, attributes: dict[str, Any], expected: bool) -> None:
    it = item(attributes=attributes)
    assert matches(f"attributes.{name} == 1", it) is expected
    assert matches(f"attributes.{name} == null", it) is not expected
    assert parse_filter(f"attributes.{name} == 1").fields == {f"attributes.{name}"}


def test_attributes_that_are_not_a_dict_are_missing() -> None:
    for attributes in (None, [1], "x"):
        it = item(attributes={})
        object.__setattr__(it, "attributes", attributes)
        assert not matches("attributes.x == 1", it)
        assert matches("attributes.x == null", it)
        assert not matches("attributes.x.y == 1", it)
        assert matches("attributes.x.y == null", it)


# --- ordering ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "below", "equal", "above"),
    [
        ("<", True, False, False),
        ("<=", True, True, False),
        (">", False, False, True),
        (">=", False, True, True),
    ],
)
def test_ordered_comparisons(op: str, below: bool, equal: bool, above: bool) -> None:
    for stored, expected in ((4, below), (5, equal), (6, above), (5.0, equal), (4.5, below)):
        assert matches(f"attributes.x {op} 5", attr(stored)) is expected, stored
        assert matches(f"attributes.x {op} 5.0", attr(stored)) is expected, stored
        assert matches(f"attributes.x {op} 5", attr([stored])) is expected, stored
        assert matches(f"attributes.x {op} 5", attr([None, stored])) is expected, stored
    for stored, expected in (("b", below), ("c", equal), ("d", above), ("cc", above), ("C", below)):
        assert matches(f'attributes.x {op} "c"', attr(stored)) is expected, stored
    # other types, missing values and empty lists never order
    for stored in (None, True, False, "5", [], {}, [None], np.bool_(False)):
        assert not matches(f"attributes.x {op} 5", attr(stored)), stored
    for stored in (None, 5, True, [], {}):
        assert not matches(f'attributes.x {op} "c"', attr(stored)), stored
    assert not matches(f"attributes.nope {op} 5")
    assert not matches(f'attributes.nope {op} ""')


def test_exotic_numbers_order_or_never_match() -> None:
    from decimal import Decimal
    from fractions import Fraction

    class Unorderable(float):
        """A real number whose comparisons raise, as some number types' do."""

        def _raise(self, other: object) -> bool:
            raise ArithmeticError

        __lt__ = __le__ = __gt__ = __ge__ = _raise

    assert matches("attributes.x < 1", attr(Fraction(1, 2)))
    assert matches("attributes.x == 0.5", attr(Fraction(1, 2)))
    assert matches("attributes.x >= 0.5", attr(np.float32(0.5)))
    # Decimal is not a numbers.Real: like any other type, it never matches a number
    assert not matches("attributes.x >= 0.5", attr(Decimal("0.5")))
    assert not matches("attributes.x == 0.5", attr(Decimal("0.5")))
    for op in ("<", "<=", ">", ">="):
        assert not matches(f"attributes.x {op} 1", attr(float("nan")))
        assert not matches(f"attributes.x {op} 1", attr(1 + 2j))
        assert not matches(f"attributes.x {op} 1", attr(Unorderable(0.5)))
        assert matches(f"attributes.x {op} 1 or attributes.x == 0.5", attr(Unorderable(0.5)))


# --- null, in and negation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "stored", "expected"),
    [
        pytest.param("attributes.x == null", "MISSING", True, id="eq_null_missing"),
        pytest.param("attributes.x != null", "MISSING", False, id="ne_null_missing"),
        pytest.param("attributes.x != null", [], False, id="ne_null_empty"),
        pytest.param("attributes.x != null", [1], True, id="ne_null_list"),
        pytest.param("attributes.x != 1", [], True, id="ne_empty_list"),
        pytest.param("attributes.x != 1", [2, 1], False, id="ne_any_element"),
        pytest.param("attributes.x != 1", [2, 3], True, id="ne_no_element"),
        pytest.param("attributes.x in [null]", "MISSING", True, id="in_null_missing"),
        pytest.param("attributes.x in [null]", [], True, id="in_null_empty"),
        pytest.param("attributes.x in [1, null]", [], True, id="in_null_later_empty"),
        pytest.param("attributes.x in [1]", [], False, id="in_empty"),
        pytest.param("attributes.x in []", [], False, id="in_nothing_empty"),
        pytest.param("attributes.x in []", "MISSING", False, id="in_nothing_missing"),
        pytest.param("attributes.x in []", None, False, id="in_nothing_none"),
        pytest.param("attributes.x not in []", None, True, id="not_in_nothing"),
        pytest.param("attributes.x not in [null]", [], False, id="not_in_null_empty"),
        pytest.param("attributes.x not in [null]", 0, True, id="not_in_null_zero"),
        pytest.param("attributes.x in [null]", {"a": 1}, False, id="in_null_dict"),
        pytest.param("attributes.x in [1, 2]", 2, True, id="in_second"),
        pytest.param("attributes.x in [1, 2]", [3, 2], True, id="in_any_element"),
        pytest.param("attributes.x in [1, 2]", [3, 4], False, id="in_no_element"),
        pytest.param('attributes.x in ["a", 1, true]', 1, True, id="in_mixed_num"),
        pytest.param('attributes.x in ["a", 1, true]', True, True, id="in_mixed_bool"),
        pytest.param("attributes.x in [1, false]", 0, False, id="in_zero_not_false"),
        pytest.param("attributes.x in [true]", 1, False, id="in_one_not_true"),
        pytest.param('attributes.x in ["1"]', 1, False, id="in_string_not_number"),
        pytest.param("attributes.x in [1.5]", 1.5, True, id="in_float"),
        pytest.param("attributes.x == 1", None, False, id="eq_none"),
        pytest.param('attributes.x == "a"', ["a"], True, id="eq_str_list"),
        pytest.param('attributes.x == "a"', "A", False, id="eq_case"),
        pytest.param('attributes.x == "a"', ("b", "a"), True, id="eq_tuple"),
    ],
)
def test_null_in_and_negation(text: str, stored: Any, expected: bool) -> None:
    it = item(attributes={} if stored == "MISSING" else {"x": stored})
    assert matches(text, it) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param('category == "Drama"', True, id="category_any"),
        pytest.param('category != "Drama"', False, id="category_none_is"),
        pytest.param('category != "Horror"', True, id="category_ne"),
        pytest.param('category < "Cz"', True, id="category_lt_any"),
        pytest.param('category > "Drama"', False, id="category_gt_none"),
        pytest.param('category >= "Drama"', True, id="category_ge"),
        pytest.param("category == null", False, id="category_not_null"),
        pytest.param("category != null", True, id="category_ne_null"),
        pytest.param("category == 1", False, id="category_number"),
        pytest.param('categories in ["x", "Crime"]', True, id="categories_in"),
        pytest.param('item_id < "i2"', True, id="item_id_lt"),
        pytest.param('item_id in ["i1"]', True, id="item_id_in"),
        pytest.param("available == false", False, id="available_false"),
        pytest.param("available in [true]", True, id="available_in"),
        pytest.param("available != null", True, id="available_not_null"),
    ],
)
def test_plain_fields(text: str, expected: bool) -> None:
    assert matches(text) is expected


def test_fields_are_the_canonical_names_used() -> None:
    f = parse_filter(
        'category == "a" or not categories in ["b"] and published_at > 1 '
        'and (attributes.a.b == 1 or item_id == "x") and title != "t" and available == true'
    )
    assert f.fields == {
        "categories",
        "published_at",
        "attributes.a.b",
        "item_id",
        "title",
        "available",
    }
    assert parse_filter('title == "x"').fields == {"title"}
    assert repr(parse_filter('title == "x"')) == "ItemFilter('title == \"x\"')"


# --- boolean structure ---------------------------------------------------------------------------

T, F = 'title == "Heat"', 'title == "x"'


@pytest.mark.parametrize(
    "parts",
    [
        (True, True), (True, False), (False, True), (False, False),
        (True, True, True), (True, True, False), (False, True, True), (True, False, True),
        (False, False, False), (False, False, True), (True, False, False), (False, True, False),
        (True, True, True, True), (True, True, True, False), (False, False, False, True),
    ],
)  # fmt: skip
def test_and_or_truth_tables(parts: tuple[bool, ...]) -> None:
    terms = [T if p else F for p in parts]
    assert matches(" and ".join(terms)) is all(parts)
    assert matches(" or ".join(terms)) is any(parts)
    assert matches(" and ".join(f"not {t}" for t in terms)) is not any(parts)
    assert matches("not (" + " or ".join(terms) + ")") is not any(parts)


def test_nesting_depth_is_given_back() -> None:
    # siblings do not add up: each closed '(' and each finished 'not' gives its level back
    assert matches(" and ".join(["(" * 20 + T + ")" * 20] * 4))
    assert matches(" and ".join(["not " * 21 + F] * 4))
    assert matches(" and ".join([f"not ({F} or not {T})"] * 40))
    assert matches("not " * 32 + T) is True
    assert matches("not " * 31 + T) is False
    assert matches("(" * 16 + "not " * 16 + T + ")" * 16)
    assert "levels of nesting" in error("(" * 16 + "not " * 17 + T + ")" * 16)


def test_limits_are_inclusive() -> None:
    assert matches("attributes.x in [" + ",".join(["2"] * 999) + ", 1]", attr(1))
    assert matches("attributes.x in [" + ",".join(str(i) for i in range(1000)) + "]", attr(999))
    assert matches(" or ".join(["item_id=='x'"] * 255 + ["item_id=='i1'"]))
    padded = 'title == "Heat"' + " " * (4096 - 15)
    assert len(padded) == 4096 and matches(padded)


def test_dates_to_epoch_ms() -> None:
    for text, ms in [
        ('"2020-01-01"', MS_2020),
        ('"2020-01-01T00:00:00"', MS_2020),
        ('"2020-01-01T00:00:00Z"', MS_2020),
        ('"2020-01-01T01:00:00+01:00"', MS_2020),
        ('"2020-01-01T00:00:00.001Z"', MS_2020 + 1),
        ('"2020-01-01T00:00:00.0009Z"', MS_2020),
        ('"1969-12-31T23:59:59.9995Z"', -1),
        ('"1970-01-01"', 0),
        (str(MS_2020), MS_2020),
    ]:
        assert matches(f"published_at == {text}", item(published_at=ms)), text
        assert not matches(f"published_at == {text}", item(published_at=ms + 1)), text
    assert matches('published_at in ["1970-01-01", 5]', item(published_at=5))
    assert matches("published_at == null", item(published_at=None))
    assert matches("published_at in [null]", item(published_at=None))
    assert not matches('published_at == "1970-01-01"', item(published_at=None))


# --- fuzzing ----------------------------------------------------------------------------------

VALID = [
    'category in ["Comedy","Drama"] and attributes.release_year >= 1990',
    "not (title == \"Heat\" or title != 'x') and available == true",
    'published_at >= "2020-01-01T00:00:00Z" or published_at == null',
    "attributes.a.b-c not in [1, 2.5, -3e2, true, null, 'x']",
    'item_id in [] or categories < "M"',
]
TOKENS = [
    "title", "category", "categories", "item_id", "available", "published_at",
    "attributes.a", "attributes.a.b", "attributes.", "attributes", "and", "or", "not",
    "in", "AND", "Not", "true", "false", "null", "==", "=", "!=", "<", "<=", ">", ">=",
    "!", "(", ")", "[", "]", ",", '"x"', "'y'", '"', "'", "\\", '"\\u00e9"', '"\\ud83c"',
    "1", "-2.5", "1e3", "1e999", ".5", "-", "+", "0x1", "nan", "inf", " ", " ", " ", "\t",
    "\n", "\x00", "\x1f", "é", "🎬", "\ud800", ";", "__import__", ".", "$", "{", "}",
    "'2020-01-01'",
]  # fmt: skip
JUNK = "abc()[],.=!<>\"'\\ -+e01_\x00\x7f\u2028\ud800é🎬;"


def check_anything(text: str) -> None:
    try:
        f = parse_filter(text)
    except ValidationFailed as exc:
        assert exc.field == "filter"
        assert str(exc).startswith("filter: ")
        assert exc.__cause__ is None, "an internal error was caught by the safety net"
        return
    for it in (HEAT, BARE, item(attributes={"a": {"b": [1, "x"]}, "a.b-c": None})):
        assert isinstance(f.matches(it), bool)
    assert f.mask([HEAT, None]).dtype == np.bool_


def test_fuzz_random_token_soup() -> None:
    rng = random.Random(20240601)
    for _ in range(3000):
        if rng.random() < 0.6:
            text = " ".join(rng.choice(TOKENS) for _ in range(rng.randint(0, 12)))
        else:
            text = "".join(rng.choice(JUNK) for _ in range(rng.randint(0, 40)))
        check_anything(text)


def test_fuzz_mutations_of_valid_expressions() -> None:
    rng = random.Random(7)
    for text in VALID:
        check_anything(text)
        parse_filter(text)  # the seeds themselves are valid
    for _ in range(3000):
        chars = list(rng.choice(VALID))
        for _ in range(rng.randint(1, 4)):
            kind = rng.randrange(4)
            at = rng.randrange(len(chars) + 1)
            if kind == 0 and chars:
                del chars[min(at, len(chars) - 1)]
            elif kind == 1:
                chars.insert(at, rng.choice(JUNK))
            elif kind == 2:
                chars.insert(at, " " + rng.choice(TOKENS) + " ")
            elif chars:
                cut = rng.randrange(len(chars))
                chars = chars[:cut] if rng.random() < 0.5 else chars[cut:]
        check_anything("".join(chars))


def test_fuzz_deep_and_long_structures() -> None:
    rng = random.Random(3)
    for _ in range(200):
        depth = rng.randint(0, 200)
        opener = rng.choice(["(", "not ", "( not ", "NOT("])
        text = opener * depth + "available == true" + ")" * rng.randint(0, depth)
        check_anything(text)
        check_anything("title in [" + "[" * depth)
        check_anything(" and ".join(["title == 1"] * depth))


DEEP_NOT = "(" * 30 + f"not {T} and " + "(((" + T + ")))" + ")" * 30
DEEP_PAREN = "(" * 30 + f"({T}) and " + "(((" + T + ")))" + ")" * 30


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "title == 1eX5",
            "filter: expected digits in the exponent at position 12, got '1eX'",
            id="exp_letter_then_digit",
        ),
        pytest.param(
            "title == 1exy",
            "filter: expected digits in the exponent at position 12, got '1ex'",
            id="exp_letter_shows_one_char",
        ),
        pytest.param(
            "title == 1X5",
            "filter: expected a number at position 10, got '1X'",
            id="X_is_no_exponent",
        ),
        pytest.param(
            "attributes.a.b",
            "filter: expected an operator (==, !=, <, <=, >, >=, in, not in) "
            "after 'attributes.a.b' at position 15, got end of input",
            id="dotted_name_at_end",
        ),
        pytest.param(
            "title == 1 and attributes.a",
            "filter: expected an operator (==, !=, <, <=, >, >=, in, not in) "
            "after 'attributes.a' at position 28, got end of input",
            id="name_at_end",
        ),
        pytest.param(
            "attributes.!",
            "filter: expected a name after '.' at position 12, got '!'",
            id="dot_bang",
        ),
        pytest.param(
            "attributes.a.(",
            "filter: expected a name after '.' at position 14, got '('",
            id="dot_paren_at_end",
        ),
        pytest.param(
            "Xy == 1",
            f"filter: expected a known field ({KNOWN}) at position 1, got unknown field 'Xy'",
            id="name_starting_with_X",
        ),
        pytest.param(
            "X1 == 1",
            f"filter: expected a known field ({KNOWN}) at position 1, got unknown field 'X1'",
            id="name_X_then_digit",
        ),
        pytest.param(
            "title !a", "filter: expected '=' after '!' at position 8, got 'a'", id="bang_last_char"
        ),
        # a finished 'not' or '(' gives back exactly its one level: 30 + 3 more is too deep
        pytest.param(
            DEEP_NOT, "filter: expected at most 32 levels of nesting at position 57", id="deep_not"
        ),
        pytest.param(
            DEEP_PAREN,
            "filter: expected at most 32 levels of nesting at position 55",
            id="deep_paren",
        ),
    ],
)
def test_exact_error_message_more(text: str, expected: str) -> None:
    assert error(text) == expected


def test_depth_after_a_finished_group_is_the_enclosing_one() -> None:
    # one level less than DEEP_NOT and DEEP_PAREN: 29 + 3 levels are fine
    assert matches(DEEP_NOT[1:-1]) is False
    assert matches(DEEP_PAREN[1:-1])


@pytest.mark.parametrize("op", ["=", "=="])
def test_single_equals_is_equality(op: str) -> None:
    assert matches(f"attributes.x {op} null", attr([]))
    assert not matches(f"attributes.x {op} 1", attr([]))
    assert matches(f"attributes.x {op} 1", attr([2, 1]))
    assert not matches(f"attributes.x {op} null", attr([1]))


def test_an_internal_error_still_reads_as_a_validation_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(text: str) -> list[Any]:
        raise RuntimeError("a bug")

    monkeypatch.setattr(filters, "_tokenize", broken)
    with pytest.raises(ValidationFailed) as info:
        parse_filter("title == 'safety net'")
    assert str(info.value) == "filter: could not be parsed (RuntimeError)"
    assert info.value.field == "filter"
    assert isinstance(info.value.__cause__, RuntimeError)
