"""Paired comparison: exact McNemar, Newcombe's paired interval, pairing by id, and `agentkit compare`."""

from __future__ import annotations

import json
import shutil
from fractions import Fraction

import pytest
from click.testing import CliRunner

from agentkit.cli import main
from agentkit.errors import UsageError
from agentkit.eval.compare import compare, format_comparison, mcnemar_exact, paired_interval, pairwise


def records(outcomes, prefix="q"):
    """Records with ids q0, q1, ... and ``correct`` from a string of 1s and 0s."""
    return [
        {"id": f"{prefix}{i}", "index": i, "question": f"question {i}", "correct": c == "1"}
        for i, c in enumerate(outcomes)
    ]


# A fixed case of 10 questions:  both right 3, only A 4, only B 1, both wrong 2.
A = "1111111000"
B = "1110000100"


def test_mcnemar_exact_against_hand_computed_values():
    # 4 vs 1 discordant: 2 * P(X <= 1), X ~ Bin(5, 1/2) = 2 * (1 + 5) / 32 = 0.375
    assert mcnemar_exact(4, 1) == 0.375
    # 1 vs 6: 2 * (C(7,0) + C(7,1)) / 2**7 = 16 / 128
    assert mcnemar_exact(1, 6) == 0.125 == mcnemar_exact(6, 1)
    # 6 vs 16 (Fagerland et al.'s Cavo example): 2 * sum(C(22, i), i <= 6) / 2**22 = 2 * 110056 / 4194304
    assert mcnemar_exact(6, 16) == float(Fraction(2 * 110056, 2**22))
    assert mcnemar_exact(6, 16) == pytest.approx(0.0525, abs=1e-4)
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(5, 5) == 1.0  # 2 * P(X <= 5) > 1 is capped
    assert mcnemar_exact(0, 10) == pytest.approx(2 / 1024)
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 2)


def test_newcombe_interval_against_a_hand_computed_case():
    # p_A = 7/10, p_B = 4/10, difference 0.3.
    # Wilson 95%: 7/10 -> (0.396778, 0.892209); 4/10 -> (0.168180, 0.687326).
    # phi: AD - BC = 3*2 - 4*1 = 2, within [0, n/2 = 5], so phi = 0 and the limits are square-and-add:
    # lower = 0.3 - sqrt((0.7 - 0.396778)^2 + (0.687326 - 0.4)^2) = 0.3 - 0.417732 = -0.117732
    # upper = 0.3 + sqrt((0.892209 - 0.7)^2 + (0.4 - 0.168180)^2) = 0.3 + 0.301139 = 0.601139
    lo, hi = paired_interval(3, 4, 1, 2)
    assert lo == pytest.approx(-0.117732, abs=2e-6) and hi == pytest.approx(0.601139, abs=2e-6)


def test_newcombe_interval_against_a_published_case():
    # Fagerland, Lydersen & Laake, Statistical Analysis of Contingency Tables (2017), ch. 8, Cavo et al. (2012):
    # table (59, 6 / 16, 80): estimate -0.0621, Newcombe square-and-add 95% CI -0.1186 to -0.0046 (phi != 0 here).
    lo, hi = paired_interval(59, 6, 16, 80)
    assert lo == pytest.approx(-0.1186, abs=1e-4) and hi == pytest.approx(-0.0046, abs=1e-4)
    assert paired_interval(0, 0, 0, 0) == (0.0, 0.0)
    lo, hi = paired_interval(0, 0, 10, 0)  # every question only B: the interval stays inside [-1, 1]
    assert -1.0 <= lo < hi < 0


def test_compare_pairs_records_by_id():
    c = compare(records(A), records(B)[::-1], a="cot", b="pal")  # order does not matter, ids do
    assert (c.n, c.both, c.only_a, c.only_b, c.neither) == (10, 3, 4, 1, 2)
    assert (c.accuracy_a, c.accuracy_b, c.difference) == (0.7, 0.4, pytest.approx(0.3))
    assert c.p_value == 0.375
    assert c.ci95 == pytest.approx((-0.117732, 0.601139), abs=2e-6)
    data = c.to_dict()
    assert data["ci95"] == list(c.ci95) and "Newcombe" in data["ci_method"] and "McNemar" in data["test"]


def test_failures_are_counted_by_kind_with_truncations_named():
    kinds = [None] * 4 + ["length"] * 3 + ["sandbox_error"] * 2 + [None]
    failed = [dict(r, failure=f) for r, f in zip(records(B), kinds, strict=True)]
    c = compare(records(A), failed, a="cot", b="pal")
    assert (c.failures_a, c.failures_b) == ({}, {"length": 3, "sandbox_error": 2})
    assert c.to_dict()["failures_b"] == {"length": 3, "sandbox_error": 2}
    assert "B failed on 5: truncated 3, sandbox_error 2" in format_comparison(c).splitlines()
    assert "A failed" not in format_comparison(c)


def test_only_common_questions_are_paired():
    c = compare(records(A + "1"), records(B), a="A", b="B")
    assert (c.n, c.unpaired_a, c.unpaired_b) == (10, 1, 0)


def test_different_questions_under_the_same_ids_are_refused():
    other = [dict(r, question="something else") for r in records(B)]
    with pytest.raises(UsageError, match="not on the same questions: id 'q0'"):
        compare(records(A), other)
    with pytest.raises(UsageError, match="no question in common"):
        compare(records(A), records(B, prefix="x"))


def test_pairwise_covers_every_pair_in_order():
    pairs = pairwise({"direct": records(A), "cot": records(B), "pal": records(A)})
    assert [(c.a, c.b) for c in pairs] == [("direct", "cot"), ("direct", "pal"), ("cot", "pal")]
    assert pairs[1].only_a == pairs[1].only_b == 0 and pairs[1].p_value == 1.0


# --- the command ----------------------------------------------------------------------------------------------------


def test_compare_command_prints_the_table_and_json(report_run):
    runner = CliRunner()
    result = runner.invoke(main, ["compare", f"{report_run}:cot", f"{report_run}:pal"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("A  ") and lines[0].endswith(":cot  6/8 right (75.0%)")
    assert "A right          4        2" in result.output and "A wrong          1        1" in result.output
    assert "95% CI -29.1 to +49.1" in result.output and "p = 1" in result.output
    as_json = json.loads(runner.invoke(main, ["compare", f"{report_run}/cot", f"{report_run}:pal", "--json"]).output)
    assert (as_json["both"], as_json["only_a"], as_json["only_b"], as_json["neither"]) == (4, 2, 1, 1)
    assert as_json["a"].endswith(":cot") and as_json["p_value"] == 1.0


def test_compare_command_across_two_runs(report_run, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(report_run, other)
    result = CliRunner().invoke(main, ["compare", f"{report_run}:react", f"{other}:react", "--json"])
    data = json.loads(result.output)
    assert data["only_a"] == data["only_b"] == 0 and data["p_value"] == 1.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{run}", "{run}:cot"], "holds 5 methods (direct, cot, pal, pal-sc, react); name one as"),
        (["{run}:nope", "{run}:cot"], "no method 'nope'"),
        (["{run}/missing", "{run}:cot"], "no such run directory"),
    ],
)
def test_compare_command_errors_are_one_line(report_run, args, message):
    result = CliRunner().invoke(main, ["compare", *(a.format(run=report_run) for a in args)])
    assert result.exit_code == 1
    assert message in result.output and len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("a", "b", "says"),
    [
        # 5 questions only A got right, none only B, 15 both, 20 neither: p = 2/32 = 0.0625, CI about +1 to +23.
        ("1" * 5 + "1" * 15 + "0" * 20, "0" * 5 + "1" * 15 + "0" * 20, "Borderline: the 95% interval excludes zero"),
        ("1" * 12 + "0" * 28, "0" * 12 + "0" * 28, "A is better"),  # p = 2/4096, CI far above zero
        (A, B, "may well be chance"),  # p = 0.375, CI -29 to +57
    ],
)
def test_the_verdict_agrees_with_the_interval_and_the_test_it_prints(a, b, says):
    from agentkit.eval.compare import format_comparison

    c = compare(records(a), records(b))
    text = format_comparison(c)
    assert says in text.splitlines()[-1]
    excludes_zero = c.ci95[0] > 0 or c.ci95[1] < 0
    if excludes_zero != (c.p_value < 0.05):
        assert c.p_value == 0.0625 and "chance" not in text and "exact on the 5 questions that differ" in text
