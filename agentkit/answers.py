"""Pull numeric answers out of model text and put them in one canonical form: the one exact number reader.

Used by the strategies (to extract an answer, and PAL to read its program's value), by self-consistency (so
``18``, ``18.0`` and ``$18`` are one vote) and by the benchmark's scoring. The traps other harnesses fall into
are the test cases here: "The answer is 18" without a period, ``$18``, ``18.0`` vs ``18``, ``$29.00`` vs ``29``,
dropped minus signs, ``1,234``, ``12345678901234567`` (a float reads it as ...568), ``1e-7`` (not ``0``).

Numbers are read exactly, as a ``Fraction`` from the digits themselves, never through a float: the canonical
spelling is the integer's digits (``18``), the whole decimal expansion where it ends (``-0.375``, ``0.0000001``)
and ``p/q`` where it does not (``1/3``). A Python float (a PAL program's value) is read to the 15 significant
digits every float holds (C's ``DBL_DIG``), so ``0.1 + 0.2`` is ``0.3``; one holding a whole number below 2**53 is
that integer. A number whose exact spelling needs more than ``MAX_DIGITS`` digits (``1E+10000``) is *unreadable*:
None, as for text with no number, never rounded or cut short.

Text answers (questions about the world rather than arithmetic) come out of the same "The answer is ..." phrase
with :func:`extract_text_answer`.

Deliberately not here: units conversion, words for numbers ("eighteen"), or algebraic expressions.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from fractions import Fraction

# The most digits an exact spelling may have (Python itself refuses to turn an int of over 4,300 digits into text).
MAX_DIGITS = 4000
# Every float holds 15 significant decimal digits (DBL_DIG): its value is read to those, without binary noise.
FLOAT_DIGITS = 15

# A number as people write it in answers: optional sign, optional currency, digits with thousands separators,
# decimals, an optional exponent or simple fraction, optional percent. The sign may sit before or after the currency.
_NUMBER = re.compile(
    r"""
    (?<![\w.])                               # not inside a word or after a decimal point
    (?P<sign>[-−–]?)\s?                       # ASCII minus, unicode minus, en dash
    (?P<cur>[$€£¥₹])?\s?
    (?P<sign2>[-−–]?)
    (?P<num>
        \d{1,3}(?:,\d{3})+(?:\.\d+)?          # 1,234 or 1,234.56
      | \d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?  # 1234, 12.5, 2.5e-7, 1E+400, 3/4
      | \.\d+(?:[eE][-+]?\d+)?                # .5
    )
    (?P<pct>\s?%)?
    """,
    re.VERBOSE,
)
_DECIMAL = re.compile(r"(?P<whole>\d*)(?:\.(?P<frac>\d*))?(?:[eE](?P<exp>[-+]?\d+))?")

_ANSWER_IS = re.compile(
    r"(?:the\s+(?:final\s+)?answer\s+is|answer\s*[:=]|####|therefore,?\s+the\s+answer\s+is)\s*[:\s]*",
    re.IGNORECASE,
)
_ANSWER_REACH = 80  # the number after "the answer is" must start within this many characters


def parse_number(text: str) -> Fraction | None:
    """The exact value of the first number in ``text`` (``"$1,234.50"`` -> 2469/2), or None (no number, or an
    unreadable one)."""
    match = _NUMBER.search(text)
    return _read(match) if match else None


def exact_value(value: object) -> Fraction | None:
    """The exact number ``value`` stands for, or None when it is not a number that can be written exactly.

    ``int``, ``Fraction`` and finite ``Decimal`` values are exact; a ``float`` is read to ``FLOAT_DIGITS``
    significant digits (NaN and infinities are None); a ``str`` is its first number (:func:`parse_number`);
    ``bool`` and anything else are None.
    """
    if isinstance(value, str):
        return parse_number(value)
    if isinstance(value, bool):
        number = None
    elif isinstance(value, (int, Fraction)):
        number = Fraction(value)
    elif isinstance(value, float):
        number = _float(value)
    elif isinstance(value, Decimal) and value.is_finite():
        number = _decimal(str(value.copy_abs()))  # copy_abs: abs() would round to the context's precision
        number = -number if number is not None and value.is_signed() else number
    else:
        number = None
    return number if number is not None and _spelling(number) is not None else None


def canonical_number(value: object) -> str | None:
    """One spelling per value (``"18"``, ``"-0.375"``, ``"1/3"``) for anything :func:`exact_value` reads, else None."""
    number = exact_value(value)
    return None if number is None else _spelling(number)


def _read(match: re.Match) -> Fraction | None:
    num = match.group("num").replace(",", "").replace(" ", "")
    top, _, bottom = num.partition("/")
    value = _decimal(top)
    if bottom and value is not None:
        denominator = _decimal(bottom)
        value = value / denominator if denominator else None  # None: unreadable, or a zero denominator
    if value is None or _spelling(value) is None:
        return None
    return -value if match.group("sign") or match.group("sign2") else value


def _decimal(text: str) -> Fraction | None:
    """Unsigned digits with an optional point and exponent (``"2.5E-7"``), exactly; None when the exact spelling
    would need more than MAX_DIGITS digits (checked before any big power is made)."""
    match = _DECIMAL.fullmatch(text)
    if match is None:
        return None
    frac = match.group("frac") or ""
    digits = (match.group("whole") + frac).lstrip("0")
    exp = match.group("exp") or "0"
    if not digits:
        return Fraction(0)
    if len(exp.lstrip("+-")) > 6:
        return None
    shift = int(exp) - len(frac)
    if (len(digits) + shift if shift >= 0 else max(len(digits), -shift)) > MAX_DIGITS:
        return None
    return Fraction(int(digits) * 10**shift) if shift >= 0 else Fraction(int(digits), 10**-shift)


def _float(value: float) -> Fraction | None:
    if not math.isfinite(value):
        return None
    if value.is_integer() and abs(value) < 2**53:
        return Fraction(int(value))
    return Fraction(f"{value:.{FLOAT_DIGITS}g}")


def _digits(n: int) -> int:
    """An upper bound on the decimal digits of ``n`` (from its bit length: no conversion to text)."""
    return int(abs(n).bit_length() * 0.30103) + 1


def _spelling(value: Fraction) -> str | None:
    """``18``, ``-0.375``, ``1/3``; None when that needs more than MAX_DIGITS digits."""
    num, den = value.numerator, value.denominator
    if den == 1:
        return str(num) if _digits(num) <= MAX_DIGITS else None
    twos = (den & -den).bit_length() - 1
    rest, fives = den >> twos, 0
    while rest % 5 == 0 and fives <= MAX_DIGITS:
        rest, fives = rest // 5, fives + 1
    if rest != 1:  # the decimal expansion does not end
        return f"{num}/{den}" if _digits(num) + _digits(den) <= MAX_DIGITS else None
    places = max(twos, fives)
    scaled = abs(num) * (10**places // den)
    if max(_digits(scaled), places + 1) > MAX_DIGITS:
        return None
    whole, frac = divmod(scaled, 10**places)
    return f"{'-' if num < 0 else ''}{whole}.{frac:0{places}d}"


def normalize_answer(text: str | None) -> str | None:
    """Canonical form for comparing and voting: the number when there is one, else lower-cased stripped text."""
    if text is None:
        return None
    value = parse_number(text)
    if value is not None:
        return _spelling(value)
    cleaned = re.sub(r"\s+", " ", text).strip().strip(".").lower()
    return cleaned or None


def numbers_in(text: str) -> list[Fraction]:
    """Every readable number in ``text``, in order."""
    return [v for v in (_read(m) for m in _NUMBER.finditer(text)) if v is not None]


def final_number(text: str) -> re.Match | None:
    """Where a chain of thought states its answer: the number after the last "the answer is" (starting within
    80 characters of it), else the last number in the text; None when there is none."""
    marks = list(_ANSWER_IS.finditer(text))
    if marks:
        match = _NUMBER.search(text, marks[-1].end())
        if match is not None and match.start() - marks[-1].end() < _ANSWER_REACH:
            return match
    matches = list(_NUMBER.finditer(text))
    return matches[-1] if matches else None


def extract_numeric_answer(text: str) -> str | None:
    """The final numeric answer of a chain-of-thought (see :func:`final_number`), in its canonical spelling.

    None when the text holds no number, or when that number is unreadable (never an earlier number instead).
    """
    match = final_number(text)
    value = _read(match) if match is not None else None
    return None if value is None else _spelling(value)


def extract_first_numeric(text: str) -> str | None:
    """The first number of a direct answer ("18 apples. Question: ..." -> "18")."""
    value = parse_number(text)
    return _spelling(value) if value is not None else None


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
        text = text[marks[-1].end() :]
    text = text.lstrip()
    end = _TEXT_END.search(text)
    answer = (text[: end.start()] if end else text).strip().strip("\"'*").rstrip(".").strip()
    return answer or None
