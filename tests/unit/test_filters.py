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
