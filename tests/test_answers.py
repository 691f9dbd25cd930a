"""agentkit.answers: the extraction traps other harnesses fall into, as test cases."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest

from agentkit.answers import (
    MAX_DIGITS,
    canonical_number,
    exact_value,
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
        ("$1,234.56.", Fraction("1234.56")),
        ("3/4", 0.75),
        (".5", 0.5),
        ("-.5", -0.5),
        ("2.5e-7", Fraction(25, 10**8)),
        ("1E+400", 10**400),
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
    assert canonical_number(1 / 3) == "0.333333333333333"  # a float's 15 digits
    assert canonical_number(Fraction(1, 3)) == "1/3"
    assert normalize_answer("$18.00") == normalize_answer("18") == "18"
    assert normalize_answer("  Paris. ") == "paris"
    assert normalize_answer(None) is None
    assert numbers_in("1, 2 and -3") == [1.0, 2.0, -3.0]


def test_numbers_are_read_exactly_not_through_a_float():
    # a correct CoT answer a float would read as ...568
    assert extract_numeric_answer("So the answer is 12345678901234567.") == "12345678901234567"
    assert extract_first_numeric("9007199254740993 apples") == "9007199254740993"
    # a float is read to the 15 digits it holds: binary noise goes, small values stay (1e-7 is not 0)
    assert canonical_number(0.1 + 0.2) == "0.3" and canonical_number(3.0000000000000004) == "3"
    assert canonical_number(1e-7) == "0.0000001" and normalize_answer("1e-7") == "0.0000001"
    assert canonical_number(1234567890123456.0) == "1234567890123456"  # a whole float below 2**53 is exact
    assert canonical_number(Decimal("-2.5E-10")) == "-0.00000000025"
    assert canonical_number(float("nan")) is None and canonical_number(True) is None


@pytest.mark.parametrize(
    "value",
    [
        "1E+10000",
        "-2.5E-10000",
        Decimal("1E+10000"),
        Decimal("-2.5E-10000"),
        10**5000,
        "1" * 5000,
        "1e99999999999",
    ],
    ids=lambda v: f"{type(v).__name__}-{len(str(v)) if not isinstance(v, int) else v.bit_length()}",
)
def test_a_number_too_long_to_write_exactly_is_unreadable_not_rounded(value):
    assert exact_value(value) is None and canonical_number(value) is None


def test_long_exact_numbers_are_kept_whole():
    assert canonical_number(Fraction(10**400, 3)) == "1" + "0" * 400 + "/3"
    assert canonical_number("1E+400") == "1" + "0" * 400
    assert canonical_number(-(10 ** (MAX_DIGITS - 1))) == "-1" + "0" * (MAX_DIGITS - 1)
    digits = "7" * 200  # longer than the 80 characters "the answer is" may be followed by: read whole, not cut
    assert extract_numeric_answer(f"The answer is {digits}.") == digits
    # the number after "the answer is" is unreadable: no answer, rather than an earlier number
    assert extract_numeric_answer("First 12, so the answer is " + "9" * 5000) is None


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
