"""Pull numeric answers out of model text and put them in one canonical form.

Used by the strategies (to extract an answer), by self-consistency (so ``18``, ``18.0`` and ``$18`` are one
vote) and by the benchmark's scoring. The traps other harnesses fall into are the test cases here: "The answer
is 18" without a period, ``$18``, ``18.0`` vs ``18``, ``$29.00`` vs ``29``, dropped minus signs, ``1,234``.

Text answers (questions about the world rather than arithmetic) come out of the same "The answer is ..." phrase
with :func:`extract_text_answer`.

Deliberately not here: units conversion, words for numbers ("eighteen"), or algebraic expressions.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

# A number as people write it in answers: optional sign, optional currency, digits with thousands separators,
# decimals, an optional simple fraction, optional percent. The sign may sit before or after the currency.
_NUMBER = re.compile(
    r"""
    (?<![\w.])                               # not inside a word or after a decimal point
    (?P<sign>[-−–]?)\s?                       # ASCII minus, unicode minus, en dash
    (?P<cur>[$€£¥₹])?\s?
    (?P<sign2>[-−–]?)
    (?P<num>
        \d{1,3}(?:,\d{3})+(?:\.\d+)?          # 1,234 or 1,234.56
      | \d+(?:\.\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?  # 1234, 12.5, 3/4
      | \.\d+                                 # .5
    )
    (?P<pct>\s?%)?
    """,
    re.VERBOSE,
)

_ANSWER_IS = re.compile(
    r"(?:the\s+(?:final\s+)?answer\s+is|answer\s*[:=]|####|therefore,?\s+the\s+answer\s+is)\s*[:\s]*",
    re.IGNORECASE,
)


def parse_number(text: str) -> float | None:
    """The value of the first number in ``text`` (``"$1,234.50"`` -> 1234.5), or None."""
    match = _NUMBER.search(text)
    return _value(match) if match else None


def _value(match: re.Match) -> float | None:
    num = match.group("num").replace(",", "").replace(" ", "")
    try:
        value = float(Fraction(num)) if "/" in num else float(num)
    except (ValueError, ZeroDivisionError):
        return None
    if match.group("sign") or match.group("sign2"):
        value = -value
    return value


def canonical_number(value: float) -> str:
    """One spelling per value: integers without a decimal point, others with up to 6 significant decimals."""
    if math.isnan(value) or math.isinf(value):
        return str(value)
    rounded = round(value)
    if abs(value - rounded) < 1e-9 * max(1.0, abs(value)):
        return str(int(rounded))
    return f"{value:.6f}".rstrip("0").rstrip(".")


def normalize_answer(text: str | None) -> str | None:
    """Canonical form for comparing and voting: the number when there is one, else lower-cased stripped text."""
    if text is None:
        return None
    value = parse_number(text)
    if value is not None:
        return canonical_number(value)
    cleaned = re.sub(r"\s+", " ", text).strip().strip(".").lower()
    return cleaned or None


def numbers_in(text: str) -> list[float]:
    """Every number in ``text``, in order."""
    return [v for v in (_value(m) for m in _NUMBER.finditer(text)) if v is not None]


def extract_numeric_answer(text: str) -> str | None:
    """The final numeric answer of a chain-of-thought: after the last "the answer is", else the last number.

    Returns the canonical spelling (see ``canonical_number``), or None when the text holds no number.
    """
    marks = list(_ANSWER_IS.finditer(text))
    if marks:
        after = text[marks[-1].end():]
        value = parse_number(after[:80])
        if value is not None:
            return canonical_number(value)
    values = numbers_in(text)
    return canonical_number(values[-1]) if values else None


def extract_first_numeric(text: str) -> str | None:
    """The first number of a direct answer ("18 apples. Question: ..." -> "18")."""
    value = parse_number(text)
    return canonical_number(value) if value is not None else None


_TEXT_END = re.compile(r"\n|(?<!\b[A-Z])(?<!\b(?:St|Dr|Mr|Ms|Jr|Sr|vs))\.(?:\s|$)")


def extract_text_answer(text: str, *, marked: bool = True) -> str | None:
    """A short text answer: what follows the last "the answer is" (``marked``), or the first line of a direct
    answer (``marked=False``), up to the end of its sentence, without quotes or a trailing period.

    Returns None when there is no marker (``marked``) or nothing is left.
    """
    if marked:
        marks = list(_ANSWER_IS.finditer(text))
        if not marks:
            return None
        text = text[marks[-1].end():]
    text = text.lstrip()
    end = _TEXT_END.search(text)
    answer = (text[: end.start()] if end else text).strip().strip("\"'*").rstrip(".").strip()
    return answer or None
