"""The ReAct step parser: the variants a sloppy model writes are read, everything else is rejected with a reason;
and garbage never makes an episode raise."""

import random
import string

import pytest

from agentkit import ReAct, ScriptedLLM
from agentkit.strategies.react import parse_action, parse_step
from agentkit.tools.wikipedia import OfflineCorpus

# (completion after "Thought n:", expected (name, argument), expected thought)
ACCEPTED = [
    (" I need X.\nAction 1: Search[Albert Einstein]", ("Search", "Albert Einstein"), "I need X."),
    (" I need X.\nAction 3: Search[Paris]", ("Search", "Paris"), "I need X."),  # wrong step number
    (" I need X.\nAction: Search[Paris]", ("Search", "Paris"), "I need X."),  # no step number
    (" I need X.\naction 1: search[Paris]", ("search", "Paris"), "I need X."),  # lower case
    (" I need X.\nACTION 1: SEARCH[Paris]", ("SEARCH", "Paris"), "I need X."),
    (" I need X.\nAct 1: Lookup[born]", ("Lookup", "born"), "I need X."),  # Act for Action
    (" I need X.\nAct: Lookup[born]", ("Lookup", "born"), "I need X."),
    (" I need X. Action 1: Search[Paris]", ("Search", "Paris"), "I need X."),  # on the thought's line
    (" I need X.\n  Action  1 :  Search [ Paris ]  ", ("Search", "Paris"), "I need X."),  # extra spaces
    (" I need X.\nAction 1: Search[Paris] because it is the capital", ("Search", "Paris"), "I need X."),
    (" I need X.\nAction 1: Search[Paris]\nThought 2: then more", ("Search", "Paris"), "I need X."),
    (" I need X.\nAction 1: Search[Paris", ("Search", "Paris"), "I need X."),  # missing ] at the very end
    (" I need X.\nAction 1: Search[Paris  \n", ("Search", "Paris"), "I need X."),
    (' I need X.\nAction 1: Search["Paris"]', ("Search", "Paris"), "I need X."),  # quotes
    (" I need X.\nAction 1: Search['Paris']", ("Search", "Paris"), "I need X."),
    (" I need X.\nAction 1: Search[\u201cParis\u201d]", ("Search", "Paris"), "I need X."),
    (" I need X.\nAction 1: Finish[]", ("Finish", ""), "I need X."),  # empty argument is the tool's business
    (" I need X.\nAction 1: Finish[[1, 2]]", ("Finish", "[1, 2]"), "I need X."),  # nested brackets
    (" Done.\nAction 4. Finish[26 June 2016]", ("Finish", "26 June 2016"), "Done."),
    (" Done.\nAction 4 - Finish[yes]", ("Finish", "yes"), "Done."),
    (" Done.\nAction 4\uff1a Finish[yes]", ("Finish", "yes"), "Done."),  # full-width colon
    ("Action 1: Search[Paris]", ("Search", "Paris"), ""),  # no thought at all
    ("Search[Paris]", ("Search", "Paris"), ""),  # a bare call
    (" I will search.\nSearch[Paris]", ("Search", "Paris"), "I will search."),  # bare call on its own line
    (" Thought 1: I need X.\nAction 1: Search[Paris]", ("Search", "Paris"), "I need X."),  # repeated label
    (" I need X.\nAction 1: Search[Paris]\nObservation 1: Paris is...", ("Search", "Paris"), "I need X."),
    (" I need X.\nAction 1: Search[Paris] Observation 1: Paris is", ("Search", "Paris"), "I need X."),
    (" The act of war.\nAction 2: Search[War]", ("Search", "War"), "The act of war."),  # "act" in a thought
    (" I need X.\nAction 1: population[Rome, Italy]", ("population", "Rome, Italy"), "I need X."),
    (" Think\n\n\nAction 7: Lookup[ the 1921 prize ]", ("Lookup", "the 1921 prize"), "Think"),
    (" I need X.\nAction 1:\nSearch[Paris]", ("Search", "Paris"), "I need X."),  # the call on the next line
    # a label without a call does not hide a later action
    (" I must act. Then I search.\nAction 1: Search[Paris]", ("Search", "Paris"), "I must act. Then I search."),
    (" Action 1 failed before.\nAction 2: Lookup[born]", ("Lookup", "born"), "Action 1 failed before."),
    (" Act: now.\nSearch[Paris]", ("Search", "Paris"), "Act: now."),
]


@pytest.mark.parametrize("text, call, thought", ACCEPTED)
def test_accepted_variants(text, call, thought):
    parsed = parse_step(text)
    assert parsed.ok, parsed.error
    assert (parsed.name, parsed.argument) == call
    assert parsed.thought == thought


# (completion, a fragment of the reason)
REJECTED = [
    ("", "no action"),
    ("   \n  ", "no action"),
    (" I am thinking about Paris.", "no action"),
    (" I need X.\nThought 2: still thinking", "no action"),
    (" I need X.\nAction 1: search for Paris", "not of the form Tool[argument]"),
    (" I need X.\nAction 1: Search(Paris)", "use square brackets"),
    (" I need X.\nAction 1: Search Paris", "not of the form"),
    (" I need X.\nAction 1:", "empty action"),
    (" I need X.\nAction 1: [Paris]", "not of the form"),
    (" I need X.\nAction 1: Search Paris]", "not of the form"),
    (" I need X.\nAction 1: Search[Paris\nThought 2: more", "missing ']'"),
    (" I need X.\nAction 1: 42", "not of the form"),
    (" I need X.\nAction 1: Search{Paris}", "not of the form"),
    (" I need X.\nAction 1: <Search>Paris</Search>", "not of the form"),
    (' I need X.\nAction 1: "Search[Paris]"', "not of the form"),
    (" Observation 1: Paris is the capital.", "no action"),  # an invented observation is cut off
    ("\nQuestion: What is next?\nAction 1: Search[Next]", "no action"),  # the next question is cut off
    (" I need X.\nAction 1: Search - Paris", "not of the form"),
    (" I need X.\nAction 1: Search: Paris", "not of the form"),
    (" I'll use search [Paris] later.", "no action"),  # a call inside prose is not an action
    ("\u4f60\u597d\uff0c\u4e16\u754c", "no action"),
    ("\n\n\n", "no action"),
    (" Paris.", "no action"),
    (" I need X.\nAction 1: the answer is Paris", "not of the form"),
    (" I need X.\nAction 1: Finish(Paris)", "use square brackets"),
    (" I need X.\nAction 1: Finish: Paris", "not of the form"),
    (" I need X.\nAction 1: 'Paris'", "not of the form"),
    (" I need X.\nAction 1: *Search[Paris]*", "not of the form"),
    (" I need X.\nAction 1: - Search[Paris]", "not of the form"),
    (" I need X.\nAction 1 Search Paris", "not of the form"),
    (" I need X.\nAction 1: Search[Paris\nAction 2: Search[Rome]", "missing ']'"),
    (" I need X.\nAction 1: Search]Paris[", "not of the form"),
    (" I need X.\nAction 1: ```Search[Paris]```", "not of the form"),
    (" Observation 1: Search[Paris]", "no action"),
]


@pytest.mark.parametrize("text, reason", REJECTED)
def test_rejected_outputs(text, reason):
    parsed = parse_step(text)
    assert not parsed.ok
    assert reason in parsed.error


def test_parse_step_reports_where_the_action_is():
    text = " I need X.\nAction 1: Search[Paris] trailing words"
    parsed = parse_step(text)
    assert text[: parsed.start] == " I need X.\n"
    assert text[: parsed.end] == " I need X.\nAction 1: Search[Paris]"


@pytest.mark.parametrize(
    "text, call",
    [
        (" Search[Paris]", ("Search", "Paris")),
        (" Finish[42] and done", ("Finish", "42")),
        ("Action 2: Lookup[x]", ("Lookup", "x")),
        (" lookup['born'", ("lookup", "born")),
    ],
)
def test_parse_action_reads_a_reasked_action(text, call):
    parsed = parse_action(text)
    assert (parsed.name, parsed.argument) == call


@pytest.mark.parametrize("text", [" I think so", "", " Search(Paris)"])
def test_parse_action_rejects(text):
    assert not parse_action(text).ok


# ---------------------------------------------------------------- garbage never makes the agent raise
def _garbage(rng: random.Random) -> str:
    pieces = [
        "Action",
        "Act 2:",
        "Action 1:",
        "Search[",
        "]",
        "[",
        "Lookup",
        "Finish[",
        "Observation",
        "Thought 3:",
        "\n",
        " ",
        "Question:",
        "Search(",
        '"',
        "'",
        "\u00e9",
        "\U0001f600",
        "Finish[]",
        "Nope[x]",
        ":",
        "1",
    ]
    out = []
    for _ in range(rng.randint(0, 25)):
        out.append(
            rng.choice(pieces) if rng.random() < 0.6 else "".join(rng.choices(string.printable, k=rng.randint(1, 8)))
        )
    return "".join(out)


@pytest.fixture(scope="module")
def tiny_corpus():
    return OfflineCorpus.from_records([{"title": "Paris", "text": "Paris is the capital of France. It is big."}])


@pytest.mark.parametrize("seed", range(12))
def test_random_completions_never_raise(seed, tiny_corpus):
    rng = random.Random(seed)
    llm = ScriptedLLM(lambda prompt: _garbage(rng))
    result = ReAct(llm, corpus=tiny_corpus, max_steps=5, shots=1)("What is the capital of France?")
    trajectory = result.trajectory
    assert len(trajectory.steps) <= 5
    if result.answer is None:
        assert result.failure == "forced_finish" and trajectory.forced_finish
        assert len(trajectory.steps) == 5
    else:
        assert trajectory.finished and trajectory.steps[-1].status == "finish"
    for step in trajectory.steps[:-1] if trajectory.finished else trajectory.steps:
        assert step.observation  # every non-final step answered: a tool result or a correction
        if step.status in ("malformed", "unknown_tool"):
            assert "Valid actions are Search[entity], Lookup[keyword], Finish[answer]." in step.observation


def test_parse_step_never_raises_on_random_text():
    rng = random.Random(1234)
    for _ in range(2000):
        text = _garbage(rng)
        parsed = parse_step(text)
        assert parsed.ok or parsed.error
        assert 0 <= parsed.start <= parsed.end <= len(text)


def test_malformed_action_spans_its_whole_line():
    text = " I need X.\nAction 1: search for Paris\nmore words"
    parsed = parse_step(text)
    assert text[parsed.start : parsed.end] == "Action 1: search for Paris"
