"""Decide whether a predicted answer matches the gold one, and summarise a run with confidence intervals.

* **Numeric golds** (GSM8K-style; Cobbe et al., 2021): both sides are reduced to an exact number (a
  ``Fraction``, never a float) — currency signs, thousands separators, a trailing period, ``18.0``, unicode
  minus signs, simple fractions (``3/4``), a percent sign and units after the number are all tolerated. The
  reader is ``agentkit.answers``'s, the one the strategies extract with, and a prediction that is a whole
  sentence ("The answer is 18 dollars") is reduced through the same extraction. A **whole-number gold matches
  only exactly that number**: 1,450,001 is not 1,450,000, however large the numbers. Only a gold that is not
  a whole number (``143.94``, ``0.375``) allows a tolerance: ``|prediction - gold| <= max(abs_tol, rel_tol *
  |gold|)``, by default ``abs_tol = 1e-4`` and ``rel_tol = 0`` (a relative tolerance on large amounts would
  accept a wrong cent: 12,345.68 for 12,345.67).
* **Text golds** (HotpotQA-style): exact match and token F1 after SQuAD normalisation (lower case, no
  punctuation, no articles, single spaces). ``correct`` is exact match against any accepted answer.
* **Free-text references**: ROUGE-1/2/L (``rouge-score``) and corpus BLEU (``sacrebleu``), imported lazily.
* **Intervals**: a Wilson score interval for accuracy (good at small n and at 0% / 100%).

Deliberately not here: answer extraction from raw completions (the strategies fill ``Result.answer``), unit
conversion, number words ("eighteen") and LLM-as-judge grading.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from agentkit.answers import _NUMBER, _read, canonical_number, final_number

__all__ = [
    "DEFAULT_REL_TOL",
    "DEFAULT_ABS_TOL",
    "Score",
    "to_number",
    "exact_number",
    "is_numeric_answer",
    "numbers_match",
    "squad_normalize",
    "exact_match",
    "token_f1",
    "score_answer",
    "rouge",
    "bleu",
    "wilson_interval",
]

# Tolerances for golds that are not whole numbers (whole-number golds match exactly, whatever these say).
DEFAULT_REL_TOL = 0.0
DEFAULT_ABS_TOL = 1e-4

# What may surround a number in a gold answer for the gold to still count as "a number": currency words and
# common units. Anything else ("24 November 1859", "Route 66") makes the gold a text answer.
_UNIT_WORDS = re.compile(
    r"^(?:[a-z]{0,3}\$|us\$|usd|dollars?|cents?|euros?|pounds?|yen|rupees?|percent|per\s*cent|%|"
    r"[a-z]{1,12}s?|[a-z]{1,12}\s[a-z]{1,12}s?)?$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Score:
    """How one prediction compares with the gold answer."""

    correct: bool
    kind: str  # "numeric" or "text"
    prediction: str | None  # normalised prediction (canonical number or SQuAD-normalised text)
    gold: str  # normalised gold
    exact_match: float
    f1: float


def exact_number(text: str | None) -> Fraction | None:
    """The exact value a (possibly wordy) answer stands for, or None.

    A bare number (``"$1,234.00"``, ``"1234."``, ``"-7"``, ``"3/4"``, ``"12 apples"``) is read directly; a
    sentence goes through the strategies' extraction (after the last "the answer is", else the last number).
    The value is a ``Fraction`` read from the digits themselves by ``agentkit.answers`` (the reader the
    strategies use), so no float rounding can make two different numbers equal; a number too long to write
    exactly is None.
    """
    if text is None or not text.strip():
        return None
    text = text.strip()
    match = _NUMBER.search(text) if is_numeric_answer(text) else final_number(text)
    return _read(match) if match is not None else None


def to_number(text: str | None) -> float | None:
    """:func:`exact_number` as the nearest float (``"$1,234.50"`` -> 1234.5), or None (also beyond float range)."""
    value = exact_number(text)
    try:
        return None if value is None else float(value)
    except OverflowError:
        return None


def is_numeric_answer(text: str) -> bool:
    """True when ``text`` is one number, optionally with currency, percent, a period or a unit word."""
    text = text.strip().rstrip(".").strip()
    match = _NUMBER.search(text)
    if match is None:
        return False
    before, after = text[: match.start()].strip(), text[match.end() :].strip().rstrip(".")
    if before and before.lower() not in ("$", "us$", "usd", "€", "£", "¥", "₹", "approximately", "about"):
        return False
    return not after or bool(_UNIT_WORDS.match(after))


def numbers_match(
    prediction: float | Fraction,
    gold: float | Fraction,
    *,
    rel_tol: float = DEFAULT_REL_TOL,
    abs_tol: float = DEFAULT_ABS_TOL,
) -> bool:
    """Does ``prediction`` match ``gold``? Exactly when the gold is a whole number; otherwise within
    ``max(abs_tol, rel_tol * |gold|)``. NaN and infinities never match."""
    if any(isinstance(x, float) and not math.isfinite(x) for x in (prediction, gold)):
        return False
    pred, ref = Fraction(prediction), Fraction(gold)
    if ref.denominator == 1:
        return pred == ref
    tolerance = max(Fraction(repr(float(abs_tol))), Fraction(repr(float(rel_tol))) * abs(ref))
    return abs(pred - ref) <= tolerance


# --- text (SQuAD v1.1 evaluation script semantics) ---------------------------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)


def squad_normalize(text: str) -> str:
    """Lower-case, drop punctuation and the articles a/an/the, collapse whitespace (SQuAD's rules)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, gold: str) -> float:
    return float(squad_normalize(prediction) == squad_normalize(gold))


def token_f1(prediction: str, gold: str) -> float:
    pred_tokens = squad_normalize(prediction).split()
    gold_tokens = squad_normalize(gold).split()
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    common = Counter(pred_tokens) & Counter(gold_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


# --- one prediction -------------------------------------------------------------------------------------------


def score_answer(
    prediction: str | None,
    gold: str,
    *,
    golds: Sequence[str] | None = None,
    rel_tol: float = DEFAULT_REL_TOL,
    abs_tol: float = DEFAULT_ABS_TOL,
) -> Score:
    """Score ``prediction`` against ``gold`` (and any other accepted answers in ``golds``).

    Numeric when the gold is a number (see :func:`is_numeric_answer`), text otherwise. A missing prediction
    (``None``) is simply wrong. Numbers follow :func:`numbers_match`: exact for a whole-number gold, within
    the tolerances otherwise.
    """
    accepted = [gold, *(g for g in (golds or []) if g != gold)]
    if is_numeric_answer(gold):
        gold_value = exact_number(gold)
        pred_value = exact_number(prediction)
        correct = (
            gold_value is not None
            and pred_value is not None
            and any(
                numbers_match(pred_value, v, rel_tol=rel_tol, abs_tol=abs_tol)
                for v in (exact_number(g) for g in accepted if is_numeric_answer(g))
                if v is not None
            )
        )
        return Score(
            correct=correct,
            kind="numeric",
            prediction=canonical_number(pred_value),
            gold=canonical_number(gold_value) if gold_value is not None else gold,
            exact_match=float(correct),
            f1=float(correct),
        )
    if prediction is None:
        return Score(False, "text", None, squad_normalize(gold), 0.0, 0.0)
    em = max(exact_match(prediction, g) for g in accepted)
    f1 = max(token_f1(prediction, g) for g in accepted)
    return Score(
        correct=em == 1.0,
        kind="text",
        prediction=squad_normalize(prediction),
        gold=squad_normalize(gold),
        exact_match=em,
        f1=f1,
    )


# --- free-text metrics ------------------------------------------------------------------------------------------


def rouge(prediction: str, reference: str) -> dict[str, float]:
    """ROUGE-1, ROUGE-2 and ROUGE-L F-measures (``rouge-score``, with stemming)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    scores = scorer.score(reference, prediction)
    return {name: s.fmeasure for name, s in scores.items()}


def bleu(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU (``sacrebleu``, 0-100) of predictions against one reference each."""
    import sacrebleu

    if len(predictions) != len(references):
        raise ValueError(f"bleu: {len(predictions)} predictions but {len(references)} references")
    return float(sacrebleu.corpus_bleu(list(predictions), [list(references)]).score)


# --- intervals ---------------------------------------------------------------------------------------------------


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """95% Wilson score interval for a proportion (``(0, 0)`` when n is 0)."""
    if n <= 0:
        return (0.0, 0.0)
    if not 0 <= successes <= n:
        raise ValueError(f"successes={successes} must be within 0..n={n}")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return (lo, hi)
