"""Is a difference in accuracy real? A paired comparison of two methods, or of one method in two runs.

Both sides answered the same questions, so the right comparison is paired: each question lands in one cell of
a 2x2 agreement table (both right / only A right / only B right / both wrong). From it:

* **the accuracy difference** ``acc(A) - acc(B) = (only A - only B) / n`` with a 95% confidence interval by
  Newcombe's hybrid score method for paired data (Newcombe, 1998, "Improved confidence intervals for the
  difference between binomial proportions based on paired data", Statistics in Medicine 17:2635-2650, method 10;
  recommended by Fagerland, Lydersen & Laake, 2014, "Recommended tests and confidence intervals for paired
  binomial proportions", Statistics in Medicine 33:2850-2875). It combines the Wilson intervals of the two
  accuracies with their correlation, stays inside [-1, 1] and behaves at small n and near 0% or 100%, where
  the textbook Wald interval does not.
* **the exact McNemar test** (McNemar, 1947): under "no difference" each discordant question is equally likely
  to favour A or B, so the two-sided p-value is the binomial tail ``min(1, 2 * P(X <= min(b, c)))`` with
  ``X ~ Binomial(b + c, 1/2)``, computed exactly with integers (no normal approximation, no continuity
  correction).

``compare(records_a, records_b)`` pairs two lists of ``samples.jsonl`` records by id (questions present on
one side only are counted and left out); ``pairwise(methods)`` does every pair of a run's methods;
``compare_specs("runs/x:cot", "runs/y:cot")`` reads run directories; ``format_comparison`` is the terminal
text.

Deliberately not here: corrections for testing many pairs at once (the report shows every pair; a reader
comparing many should read the p-values with that in mind), unpaired tests, and any re-scoring.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from itertools import combinations
from pathlib import Path
from typing import Any

from agentkit.errors import UsageError
from agentkit.eval.scoring import wilson_interval
from agentkit.result import failure_label

__all__ = [
    "CI_METHOD",
    "TEST_METHOD",
    "Comparison",
    "compare",
    "compare_specs",
    "format_comparison",
    "mcnemar_exact",
    "paired_interval",
    "pairwise",
]

Z95 = 1.959963984540054
CI_METHOD = "Newcombe's hybrid score interval for paired data (1998, method 10)"
TEST_METHOD = "exact McNemar test (two-sided binomial test on the discordant pairs)"


@dataclass(frozen=True)
class Comparison:
    """A paired comparison of A and B on the questions both answered."""

    a: str  # labels, e.g. "runs/main:cot"
    b: str
    n: int  # questions answered by both
    both: int  # right in A and in B
    only_a: int  # right in A, wrong in B
    only_b: int
    neither: int
    accuracy_a: float
    accuracy_b: float
    difference: float  # accuracy_a - accuracy_b
    ci95: tuple[float, float]  # of the difference
    p_value: float  # exact McNemar, two-sided
    unpaired_a: int = 0  # questions only A answered (left out)
    unpaired_b: int = 0
    failures_a: dict[str, int] = field(default_factory=dict)  # A's failure kinds on the paired questions
    failures_b: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ci95"] = list(self.ci95)
        data["ci_method"] = CI_METHOD
        data["test"] = TEST_METHOD
        return data


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value: ``min(1, 2 * P(X <= min(b, c)))`` with ``X ~ Bin(b + c, 1/2)``."""
    if only_a < 0 or only_b < 0:
        raise ValueError(f"counts must be >= 0, got {only_a} and {only_b}")
    discordant = only_a + only_b
    if discordant == 0:
        return 1.0
    tail = sum(math.comb(discordant, i) for i in range(min(only_a, only_b) + 1))
    return float(min(Fraction(1), Fraction(2 * tail, 2**discordant)))


def paired_interval(both: int, only_a: int, only_b: int, neither: int, z: float = Z95) -> tuple[float, float]:
    """95% interval for ``acc(A) - acc(B)`` from the paired table (Newcombe 1998, method 10)."""
    n = both + only_a + only_b + neither
    if n == 0:
        return (0.0, 0.0)
    right_a, right_b = both + only_a, both + only_b
    p1, p2 = right_a / n, right_b / n
    l1, u1 = wilson_interval(right_a, n, z)
    l2, u2 = wilson_interval(right_b, n, z)
    # The correlation of the two accuracies, shrunk towards 0 as Newcombe prescribes: (AD - BC) is reduced by
    # n/2 when positive (and set to 0 when that crosses zero); zero when a margin is empty.
    margins = right_a * (n - right_a) * right_b * (n - right_b)
    cross = both * neither - only_a * only_b
    if margins == 0:
        phi = 0.0
    elif cross > n / 2:
        phi = (cross - n / 2) / math.sqrt(margins)
    elif cross >= 0:
        phi = 0.0
    else:
        phi = cross / math.sqrt(margins)
    d = p1 - p2
    below = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    above = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return (max(-1.0, d - below), min(1.0, d + above))


def compare(
    records_a: Sequence[Mapping[str, Any]],
    records_b: Sequence[Mapping[str, Any]],
    *,
    a: str = "A",
    b: str = "B",
) -> Comparison:
    """Pair two methods' records by id and compare them.

    Raises :class:`UsageError` when the two sides share no question, or when a shared id holds a different
    question (two different datasets whose ids happen to coincide, e.g. ``line-1``).
    """
    by_id_b = {r["id"]: r for r in records_b}
    paired = [(r, by_id_b[r["id"]]) for r in records_a if r["id"] in by_id_b]
    for ra, rb in paired:
        if ra.get("question") != rb.get("question"):
            raise UsageError(
                f"{a} and {b} are not on the same questions: id {ra['id']!r} is "
                f"{_short(ra.get('question'))!r} in {a} but {_short(rb.get('question'))!r} in {b}"
            )
    if not paired:
        raise UsageError(f"{a} and {b} have no question in common (compare runs on the same dataset)")
    cells = {(True, True): 0, (True, False): 0, (False, True): 0, (False, False): 0}
    for ra, rb in paired:
        cells[bool(ra["correct"]), bool(rb["correct"])] += 1
    both, only_a, only_b, neither = cells[True, True], cells[True, False], cells[False, True], cells[False, False]
    n = len(paired)
    return Comparison(
        a=a,
        b=b,
        n=n,
        both=both,
        only_a=only_a,
        only_b=only_b,
        neither=neither,
        accuracy_a=(both + only_a) / n,
        accuracy_b=(both + only_b) / n,
        difference=(only_a - only_b) / n,
        ci95=paired_interval(both, only_a, only_b, neither),
        p_value=mcnemar_exact(only_a, only_b),
        unpaired_a=len(records_a) - n,
        unpaired_b=len(records_b) - n,
        failures_a=_failures(ra for ra, _ in paired),
        failures_b=_failures(rb for _, rb in paired),
    )


def _failures(records: Any) -> dict[str, int]:
    return dict(sorted(Counter(r["failure"] for r in records if r.get("failure")).items()))


def pairwise(methods: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[Comparison]:
    """Every pair of a run's methods, in the run's order (A before B)."""
    return [
        compare(methods[x], methods[y], a=x, b=y)
        for x, y in combinations(methods, 2)
        if {r["id"] for r in methods[x]} & {r["id"] for r in methods[y]}
    ]


def _short(text: Any, width: int = 60) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


# --- run directories ----------------------------------------------------------------------------------------------


def parse_spec(spec: str) -> tuple[Path, str | None]:
    """``RUN_DIR[:METHOD]`` -> (run directory, method or None). A method's own directory works too."""
    left, sep, right = spec.rpartition(":")
    if sep and right and "/" not in right and Path(left).expanduser().is_dir():
        return Path(left).expanduser(), right
    path = Path(spec).expanduser()
    if (path / "samples.jsonl").is_file() and not (path / "config.json").is_file():
        return path.parent, path.name
    if not path.is_dir():
        raise UsageError(f"{spec!r}: no such run directory (expected RUN_DIR or RUN_DIR:METHOD)")
    return path, None


def load_side(spec: str) -> tuple[str, list[dict[str, Any]]]:
    """The label and records of one side of a comparison (``RUN_DIR[:METHOD]``)."""
    from agentkit.eval.report import read_run

    run_dir, method = parse_spec(spec)
    run = read_run(run_dir)
    if method is None:
        if len(run.methods) != 1:
            raise UsageError(
                f"{spec!r} holds {len(run.methods)} methods ({', '.join(run.methods)}); name one as {spec}:METHOD"
            )
        method = next(iter(run.methods))
    if method not in run.methods:
        raise UsageError(f"{spec!r}: no method {method!r} in {run_dir} (it has: {', '.join(run.methods) or 'none'})")
    return f"{run_dir}:{method}", run.methods[method]


def compare_specs(spec_a: str, spec_b: str) -> Comparison:
    """Compare ``RUN_DIR[:METHOD]`` with ``RUN_DIR[:METHOD]`` (two methods of one run, or two runs)."""
    label_a, records_a = load_side(spec_a)
    label_b, records_b = load_side(spec_b)
    return compare(records_a, records_b, a=label_a, b=label_b)


# --- text ----------------------------------------------------------------------------------------------------------


def _pts(x: float) -> str:
    return f"{100 * x:+.1f}"


def verdict(c: Comparison, alpha: float = 0.05) -> str:
    """One sentence a reader can act on, consistent with both the interval and the test printed above it."""
    discordant = c.only_a + c.only_b
    if discordant == 0:
        return "A and B are right on exactly the same questions: no evidence of any difference."
    better = "A" if c.only_a > c.only_b else "B"
    significant = c.p_value < alpha
    excludes_zero = c.ci95[0] > 0 or c.ci95[1] < 0
    if significant and excludes_zero:
        return f"{better} is better: a difference this large is unlikely to be chance (p < {alpha:g})."
    if not significant and not excludes_zero:
        return (
            f"Not significant at the {100 * alpha:g}% level: on these {c.n} questions the difference may well "
            f"be chance."
        )
    # The two disagree, which happens near the threshold: the interval is a score approximation over all n
    # questions, the test is exact on the discordant ones alone (and with few of them it cannot reach small p).
    interval = "excludes" if excludes_zero else "includes"
    test = "reaches" if significant else "does not reach"
    return (
        f"Borderline: the {100 * (1 - alpha):g}% interval {interval} zero but the exact test {test} "
        f"p < {alpha:g}; they disagree because the test is exact on the {discordant} questions that differ "
        f"and the interval approximates. {better} may be better; more questions would settle it."
    )


def format_comparison(c: Comparison) -> str:
    """The comparison as terminal text: labels, the agreement table, the difference and the test."""
    width = max(len(c.a), len(c.b))
    lines = [
        f"A  {c.a:<{width}}  {c.both + c.only_a}/{c.n} right ({100 * c.accuracy_a:.1f}%)",
        f"B  {c.b:<{width}}  {c.both + c.only_b}/{c.n} right ({100 * c.accuracy_b:.1f}%)",
    ]
    for side, failures in (("A", c.failures_a), ("B", c.failures_b)):
        if failures:  # truncations (the token limit) apart from the model's other failures
            kinds = sorted(failures.items(), key=lambda kv: (-kv[1], kv[0]))
            lines.append(
                f"{side} failed on {sum(failures.values())}: "
                + ", ".join(f"{failure_label(kind)} {count}" for kind, count in kinds)
            )
    if c.unpaired_a or c.unpaired_b:
        lines.append(
            f"paired on the {c.n} questions both answered ({c.unpaired_a} only in A, "
            f"{c.unpaired_b} only in B are left out)"
        )
    cell = max(7, len(str(c.n)))
    lines += [
        "",
        f"{'':<9}{'B right':>{cell + 2}}{'B wrong':>{cell + 2}}",
        f"{'A right':<9}{c.both:>{cell + 2}}{c.only_a:>{cell + 2}}",
        f"{'A wrong':<9}{c.only_b:>{cell + 2}}{c.neither:>{cell + 2}}",
        "",
        f"accuracy A - B: {_pts(c.difference)} points, 95% CI {_pts(c.ci95[0])} to {_pts(c.ci95[1])} (by {CI_METHOD})",
        f"exact McNemar test: {c.only_a} question{'' if c.only_a == 1 else 's'} only A got right, {c.only_b} "
        f"only B; two-sided p = {c.p_value:.4g}",
        verdict(c),
    ]
    return "\n".join(lines)
