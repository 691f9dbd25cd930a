"""Scoring rules: numeric normalisation with tolerance, SQuAD EM/F1, ROUGE/BLEU, Wilson intervals."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from agentkit.eval.scoring import (
    bleu,
    exact_match,
    exact_number,
    is_numeric_answer,
    numbers_match,
    rouge,
    score_answer,
    squad_normalize,
    to_number,
    token_f1,
    wilson_interval,
)

# (prediction, gold, correct): the pitfalls other harnesses fall into are the first rows.
NUMERIC_CASES = [
    ("The answer is 18", "18", True),  # no trailing period: must not become "1"
    ("The answer is 18.", "18", True),
    ("$18", "18", True),
    ("18.0", "18", True),
    ("$29.00", "29", True),
    ("-7", "-7", True),
    ("−7", "-7", True),  # unicode minus
    ("The answer is -3.", "-3", True),
    ("7", "-7", False),  # a dropped minus sign is wrong
    ("$1,234.00", "1234", True),
    ("1234.", "1234", True),
    ("The answer is 1234 dollars", "1234", True),
    ("1,234", "1234", True),
    ("1234", "1,234", True),
    ("12,480", "12480", True),
    ("3/4", "0.75", True),
    ("0.75", "3/4", True),
    ("50%", "50", True),
    ("12 apples", "12", True),
    ("6 buses.", "6", True),
    (".375", "0.375", True),
    ("0.375", "0.375", True),
    ("$ 1,650", "1650", True),
    ("1,650 dollars.", "1650", True),
    ("answer: 44.80", "44.8", True),
    ("So she has $-45", "-45", True),
    ("-$45", "-45", True),
    ("143.94", "143.94", True),
    ("143.9", "143.94", False),
    ("18.00001", "18", False),  # a whole-number gold matches only exactly
    ("18.001", "18", False),
    ("1000000.5", "1000000", False),
    ("1000002", "1000000", False),
    ("The answer is 19", "18", False),
    ("19", "18", False),
    ("First 12, then 30, so the answer is 42.", "42", True),
    ("She has 5 apples and buys 3 more, 8 in all", "8", True),  # last number without a marker
    ("I don't know", "18", False),
    ("", "18", False),
    (None, "18", False),
    ("eighteen", "18", False),  # number words are deliberately not read
    ("The answer is 1,234,567", "1234567", True),
    ("-0.5", "-1/2", True),
    ("$2,400", "2400", True),
    ("0", "0", True),
]


@pytest.mark.parametrize(("prediction", "gold", "correct"), NUMERIC_CASES)
def test_numeric_scoring(prediction, gold, correct):
    score = score_answer(prediction, gold)
    assert score.kind == "numeric"
    assert score.correct is correct


TEXT_CASES = [
    ("Vistula", "Vistula", True),
    ("the Vistula.", "Vistula", True),
    ("VISTULA", "vistula", True),
    ("Brasília", "Brasília", True),
    ("Brasilia", "Brasília", False),  # accents are kept, as in SQuAD
    ("Leonardo", "Leonardo da Vinci", False),
    ("24 November 1859", "24 November 1859", True),
    ("24 November", "24 November 1859", False),
    ("over 14 million", "over 14 million", True),
    (None, "Kathmandu", False),
]


@pytest.mark.parametrize(("prediction", "gold", "correct"), TEXT_CASES)
def test_text_scoring(prediction, gold, correct):
    score = score_answer(prediction, gold)
    assert score.kind == "text"
    assert score.correct is correct


def test_numeric_and_text_golds_are_told_apart():
    assert is_numeric_answer("18")
    assert is_numeric_answer("$1,234.00")
    assert is_numeric_answer("8,848.86 m")
    assert is_numeric_answer("-7 degrees")
    assert not is_numeric_answer("24 November 1859")
    assert not is_numeric_answer("over 14 million")
    assert not is_numeric_answer("Kathmandu")


# The regression cases of issue 14: whole-number golds match exactly, in every spelling the scorer accepts.
EXACT_CASES = [
    # large whole numbers: 1e-6 relative tolerance used to accept these off-by-ones
    ("1,450,001", "1450000", False),
    ("1450001", "1450000", False),
    ("1449999", "1450000", False),
    ("The answer is 1,450,001.", "1450000", False),
    ("$1,450,001.00", "1450000", False),
    ("1450000.5", "1450000", False),
    ("1,450,000", "1450000", True),
    ("$1,450,000.00", "1450000", True),
    ("1450000.0", "1450000", True),
    ("The answer is 1,450,000 dollars.", "1450000", True),
    ("9007199254740993", "9007199254740992", False),  # 2**53 + 1: equal as floats, not as numbers
    ("123456789012345678", "123456789012345678", True),
    # negatives
    ("-1,450,001", "-1450000", False),
    ("-$1,450,000", "-1450000", True),
    ("−1450000", "-1450000", True),
    ("1450000", "-1450000", False),
    ("-0", "0", True),
    # decimals: a tolerance of 1e-4 (absolute), only because the gold is not whole
    ("143.94", "143.94", True),
    ("143.9400", "143.94", True),
    ("143.94005", "143.94", True),
    ("143.9402", "143.94", False),
    ("143.95", "143.94", False),
    ("12,345.68", "12345.67", False),  # a relative tolerance would have accepted the wrong cent
    ("0.3333", "1/3", True),  # within 1e-4 of a gold that is not whole
    ("0.333", "1/3", False),
    ("1/3", "1/3", True),
    ("12.5", "12.50", True),
    ("12.6", "13", False),
    ("13", "12.6", False),
    # percentages
    ("45%", "45", True),
    ("45 percent", "45", True),
    ("46%", "45", False),
    ("The answer is 12.5%.", "12.5", True),
    ("45", "45%", True),
    # money formats
    ("$2,400.00", "2400", True),
    ("$2,400.01", "2400", False),
    ("USD 2400", "2400", True),
    ("2400 dollars", "$2,400", True),
    ("€2.400", "2400", False),  # a European thousands dot is a decimal point here: 2.4
    ("$0.50", "0.5", True),
    ("50 cents", "0.5", False),  # units are not converted
]


@pytest.mark.parametrize(("prediction", "gold", "correct"), EXACT_CASES)
def test_whole_number_golds_match_exactly(prediction, gold, correct):
    score = score_answer(prediction, gold)
    assert score.kind == "numeric"
    assert score.correct is correct, score


def test_tolerances_apply_only_to_golds_that_are_not_whole():
    assert not score_answer("18.001", "18", abs_tol=0.01).correct  # whole gold: tolerance ignored
    assert not score_answer("101", "100", rel_tol=0.02).correct
    assert score_answer("0.751", "0.75", abs_tol=0.01).correct
    assert not score_answer("0.751", "0.75").correct
    assert score_answer("100.5", "100.4", rel_tol=0.01).correct
    assert not score_answer("100.5", "100.4").correct
    assert score_answer("0.333", "1/3", abs_tol=1e-3).correct
    assert not numbers_match(float("nan"), float("nan"))
    assert not numbers_match(float("inf"), 5)
    assert numbers_match(Fraction(1, 3), Fraction(1, 3))


def test_exact_number_reads_the_digits_not_a_float():
    assert exact_number("$1,234.50") == Fraction(2469, 2)
    assert exact_number("9007199254740993") == 2**53 + 1
    assert exact_number("The answer is -3/4 of a cake.") == Fraction(-3, 4)
    assert exact_number("First 12, then 30, so 42") == 42
    assert exact_number("no digits") is None and exact_number(None) is None and exact_number("  ") is None
    assert score_answer("0.1", "0.1").prediction == "0.1"
    assert score_answer("1/3", "1/3").prediction == "1/3"  # exact, not six decimals
    assert score_answer("-12.50", "-12.5").prediction == "-12.5"
    assert score_answer("1,450,000.0", "1450000").prediction == "1450000"


def test_scoring_reads_numbers_as_the_strategies_do():
    # a whole-number answer longer than a float's 17 digits is scored on its own digits
    assert score_answer("The answer is 12345678901234567.", "12345678901234567").correct
    assert not score_answer("The answer is 12345678901234568.", "12345678901234567").correct
    assert score_answer("2.5e-7", "0.00000025").correct and exact_number("1E+400") == 10**400
    # a number too long to write exactly is no answer (not its first digits, not an earlier number)
    assert exact_number("The answer is " + "9" * 5000) is None and exact_number("-2.5E-10000") is None
    assert to_number("1e400") is None


def test_other_accepted_answers_count():
    assert score_answer("Pierre", "Pierre Curie", golds=["Pierre Curie", "Pierre"]).correct
    assert score_answer("20", "18", golds=["18", "20"]).correct


def test_to_number():
    assert to_number("$1,234.50") == 1234.5
    assert to_number("The answer is -12.") == -12
    assert to_number("no digits") is None
    assert to_number(None) is None


def test_squad_normalisation_and_f1():
    assert squad_normalize("The  Museum of Modern Art!") == "museum of modern art"
    assert exact_match("an apple", "Apple") == 1.0
    assert token_f1("Museum of Modern Art", "the Museum of Modern Art") == 1.0
    assert token_f1("Museum of Art", "Museum of Modern Art") == pytest.approx(2 * (1.0 * 0.75) / 1.75)
    assert token_f1("Paris", "London") == 0.0
    assert token_f1("", "") == 1.0


def test_rouge_and_bleu():
    same = rouge("the cat sat on the mat", "the cat sat on the mat")
    assert same["rouge1"] == pytest.approx(1.0) and same["rougeL"] == pytest.approx(1.0)
    partial = rouge("the cat sat", "the cat sat on the mat")
    assert 0 < partial["rouge2"] < 1
    assert rouge("dog", "cat")["rouge1"] == 0.0
    assert bleu(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(100.0)
    assert bleu(["completely different words here"], ["the cat sat on the mat"]) < 10
    with pytest.raises(ValueError):
        bleu(["a"], ["a", "b"])


def test_wilson_interval():
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and 0.25 < hi < 0.35  # 0/10 still leaves real doubt
    lo, hi = wilson_interval(10, 10)
    assert hi == 1.0 and 0.65 < lo < 0.75
    lo, hi = wilson_interval(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-3) and hi == pytest.approx(0.5962, abs=1e-3)
    assert wilson_interval(0, 0) == (0.0, 0.0)
    with pytest.raises(ValueError):
        wilson_interval(11, 10)
    assert all(not math.isnan(x) for x in wilson_interval(3, 7))
