"""agentkit.answers: the extraction traps other harnesses fall into, as test cases."""

from __future__ import annotations

import pytest

from agentkit.answers import (
    canonical_number,
    extract_first_numeric,
    extract_numeric_answer,
    extract_text_answer,
    normalize_answer,
    numbers_in,
    parse_number,
)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("The answer is 18", 18.0),
        ("$18", 18.0),
        ("18.0", 18.0),
        ("$29.00", 29.0),
        ("-7", -7.0),
        ("−7", -7.0),
        ("$-5", -5.0),
        ("-$5", -5.0),
        ("1,234", 1234.0),
        ("$1,234.56.", 1234.56),
        ("3/4", 0.75),
        (".5", 0.5),
        ("-.5", -0.5),
        ("10%", 10.0),
        ("x-7", 7.0),  # a hyphen inside a word is not a minus sign
        ("no number", None),
    ],
)
def test_parse_number(text, value):
    assert parse_number(text) == value


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("The answer is 18", "18"),  # no period: must not become "1"
        ("The answer is 18.", "18"),
        ("He is 12 years old. The answer is 36", "36"),
        ("The answer is $1,234.56.", "1234.56"),
        ("3 - 5 = -2", "-2"),
        ("the answer is: 42", "42"),
        ("Therefore, the answer is 8", "8"),
        ("#### 99", "99"),
        ("She had 5, then 7, then 11 apples", "11"),
        ("nothing here", None),
    ],
)
def test_extract_numeric_answer(text, answer):
    assert extract_numeric_answer(text) == answer


def test_first_numeric_and_canonical_forms():
    assert extract_first_numeric("18 apples. Question: 3 pears") == "18"
    assert canonical_number(18.0) == "18"
    assert canonical_number(-0.5) == "-0.5"
    assert canonical_number(1 / 3) == "0.333333"
    assert normalize_answer("$18.00") == normalize_answer("18") == "18"
    assert normalize_answer("  Paris. ") == "paris"
    assert normalize_answer(None) is None
    assert numbers_in("1, 2 and -3") == [1.0, 2.0, -3.0]


@pytest.mark.parametrize(
    "text, answer",
    [
        (" Cusco was the Inca capital. The answer is Peru.", "Peru"),
        (" The answer is St. Petersburg. It lies on the Neva.", "St. Petersburg"),
        (' So the answer is "Lake Superior".\nQuestion: next', "Lake Superior"),
        (" It measures 1,550 km. The answer is 1,550 km.", "1,550 km"),
        (" The answer is 2.5 metres.", "2.5 metres"),
        (" I am not sure.", None),
        (" The answer is .", None),
    ],
)
def test_extract_text_answer(text, answer):
    assert extract_text_answer(text) == answer


def test_extract_text_answer_unmarked_takes_the_first_line():
    assert extract_text_answer(" Indian Ocean.\nQuestion: next", marked=False) == "Indian Ocean"
    assert extract_text_answer("   \n", marked=False) is None
