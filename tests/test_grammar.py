"""Constraints compiled by llguidance and matched against text (agentkit.grammar)."""

import random

import pytest

from agentkit import grammar
from agentkit.errors import UsageError
from agentkit.llm import Constraint, GenerationConfig

ACTION = Constraint(regex=r" (Search|Lookup|Finish)\[[^\]\n]*\]", after="Action 1:")
NUMBER = Constraint(regex=r"-?[0-9]+")
OBJECT = Constraint(
    json_schema={
        "type": "object",
        "properties": {"a": {"type": "integer"}},
        "required": ["a"],
        "additionalProperties": False,
    }
)


def test_a_constraint_takes_exactly_one_form():
    with pytest.raises(ValueError, match="exactly one of regex, json_schema, lark"):
        Constraint()
    with pytest.raises(ValueError, match="exactly one"):
        Constraint(regex="a", lark="start: 'a'")
    assert Constraint(lark='start: "a"').kind == "lark"
    assert GenerationConfig(constraint=NUMBER).constraint == NUMBER


def test_text_after_the_literal_must_match_and_text_without_it_is_free():
    assert grammar.matches(ACTION, "I should look.\nAction 1: Search[Paris]")
    assert not grammar.matches(ACTION, "I should look.\nAction 1: Search Paris")
    assert grammar.matches(ACTION, "no action yet")
    assert grammar.constrained_part(ACTION, "a\nAction 1: Finish[3]") == " Finish[3]"
    assert grammar.constrained_part(ACTION, "a") is None


def test_json_schema_and_prefixes():
    assert grammar.matches(OBJECT, '{"a": 3}')
    assert not grammar.matches(OBJECT, '{"a": "x"}')
    assert grammar.is_prefix(OBJECT, '{"a": ')
    assert not grammar.matches(OBJECT, '{"a": ')
    assert not grammar.is_prefix(OBJECT, '["a"')


def test_longest_conforming_cuts_where_the_grammar_would_have_stopped():
    assert grammar.longest_conforming(NUMBER, "42 apples") == "42"
    assert grammar.longest_conforming(NUMBER, "apples") == ""
    assert grammar.longest_conforming(ACTION, "x\nAction 1: Search[Paris] and more") == "x\nAction 1: Search[Paris]"


@pytest.mark.parametrize(
    ("constraint", "kind"), [(Constraint(regex="(("), "regex"), (Constraint(lark="start: foo"), "lark")]
)
def test_a_grammar_that_does_not_compile_is_one_line_naming_its_kind(constraint, kind):
    with pytest.raises(UsageError, match=f"^{kind} constraint does not compile: .*; fix the {kind}$") as e:
        grammar.grammar(constraint)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "constraint",
    [
        ACTION,
        NUMBER,
        OBJECT,
        Constraint(json_schema={"type": "integer"}, after="Answer: "),
        Constraint(regex=r"b+|a/c", after="aa"),  # a literal that overlaps itself, a slash in the regex
        Constraint(lark='start: "{" NUM "}"\nNUM: /[0-9]{1,3}/\n'),
        Constraint(lark='start: "{" NUM "}"\nNUM: /[0-9]{1,3}/\n', after="=> "),
    ],
)
def test_as_lark_accepts_exactly_what_the_constraint_does(constraint):
    lark = Constraint(lark=grammar.as_lark(constraint))
    pieces = [
        "a",
        "b",
        "/",
        "c",
        "x\n",
        "Action 1:",
        " Search[p]",
        "]",
        "1",
        "-",
        "{",
        "}",
        '{"a": 3}',
        "aa",
        "Answer: ",
        "=> ",
        " ",
    ]
    rng = random.Random(0)
    texts = ["".join(rng.choices(pieces, k=rng.randint(0, 5))) for _ in range(100)] + [
        "1",
        "-1",
        '{"a": 3}',
        "x\nAction 1: Search[p]",
        "aab",
        "aaab",
        "Answer: 1",
        "=> {1}",
        "{1}",
        "aaa/c",
    ]
    assert [grammar.matches(lark, t) for t in texts] == [grammar.matches(constraint, t) for t in texts]
    assert [grammar.is_prefix(lark, t) for t in texts] == [grammar.is_prefix(constraint, t) for t in texts]
    assert any(grammar.matches(constraint, t) for t in texts) and not all(grammar.matches(constraint, t) for t in texts)


def test_longest_viable_is_where_the_grammar_first_rejects():
    assert grammar.longest_viable(OBJECT, '{"a": 3, "b"') == '{"a": 3'
    assert grammar.longest_viable(ACTION, "x\nAction 1: Sear ch") == "x\nAction 1: Sear"
    assert grammar.longest_viable(ACTION, "no literal") == "no literal"
    assert grammar.regex_literal("a.b(c)") == r"a\.b\(c\)" and grammar.matches(Constraint(regex=r"a\.b\(c\)"), "a.b(c)")
