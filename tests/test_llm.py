"""The model interface and the scripted model users test their agents with."""

import pytest
from pydantic import ValidationError
from streams import drain

from agentkit.errors import UsageError
from agentkit.llm import Constraint, GenerationConfig, ScriptedLLM, ScriptError, cut_at_stop, partial_stop_suffix


@pytest.mark.parametrize(
    "field, value",
    [
        ("temperature", -0.5),
        ("temperature", 0),
        ("top_p", 0),
        ("top_p", 1.5),
        ("max_new_tokens", 0),
        ("top_k", 0),
        ("seed", -1),
        ("stop", [""]),
        ("bogus", 1),
    ],
)
def test_impossible_settings_name_the_field(field, value):
    with pytest.raises(ValidationError) as info:
        GenerationConfig(**{field: value})
    assert field in str(info.value)


def test_config_key_groups_equal_settings():
    assert GenerationConfig(stop=["\n"]).key() == GenerationConfig(stop=["\n"]).key()
    assert GenerationConfig(stop=["\n"]).key() != GenerationConfig(stop=["\n"], seed=1).key()


@pytest.mark.parametrize(
    "text, stop, expected",
    [
        ("abc\ndef", ["\n"], ("abc", True)),
        ("abc", ["\n"], ("abc", False)),
        ("x Obs y Observation", ["Observation", "Obs"], ("x ", True)),
        ("", ["a"], ("", False)),
    ],
)
def test_cut_at_stop_cuts_before_the_earliest_stop(text, stop, expected):
    assert cut_at_stop(text, stop) == expected


def test_partial_stop_suffix_holds_back_a_possible_stop_start():
    assert partial_stop_suffix("Thought: x\nObs", ["\nObservation"]) == 4
    assert partial_stop_suffix("Thought: x", ["\nObservation"]) == 0
    assert partial_stop_suffix("abc\n", ["\nQ:", "\n\n"]) == 1


def test_scripted_replies_in_order_with_exact_stops_and_finish_reasons():
    llm = ScriptedLLM(["one two\nthree", "a b c d e f", "done"])
    out = llm.generate(["p1", "p2", "p3"], GenerationConfig(max_new_tokens=3, stop=["\n"]))
    assert [c.text for c in out] == ["one two", "a b c", "done"]
    assert [c.finish_reason for c in out] == ["stop", "length", "stop"]
    assert out[1].completion_tokens == 3
    assert llm.prompts == ["p1", "p2", "p3"]
    assert llm.remaining == 0


def test_scripted_running_out_says_how_many_prompts_arrived():
    llm = ScriptedLLM(["only"])
    llm.generate(["a"])
    with pytest.raises(ScriptError, match="prompt #2 arrived but only 1 replies"):
        llm.generate(["b"])


def test_scripted_callable_and_stream_return_the_completion():
    llm = ScriptedLLM(lambda p: p.upper() + "\nSTOP")
    pieces, final = drain(llm.stream("hi there", GenerationConfig(stop=["\n"])))
    assert "".join(pieces) == "HI THERE" == final.text
    assert final.finish_reason == "stop"


def test_default_session_batches_by_config():
    calls = []

    class Recording(ScriptedLLM):
        def generate(self, prompts, config=None):
            calls.append((tuple(prompts), config.max_new_tokens))
            return super().generate(prompts, config)

    llm = Recording(lambda p: "x")
    session = llm.session(8)
    a, b = GenerationConfig(max_new_tokens=5), GenerationConfig(max_new_tokens=6)
    for i, cfg in enumerate([a, b, a]):
        session.add(i, f"p{i}", cfg)
    done = dict(session.step())
    assert sorted(done) == [0, 1, 2]
    assert sorted(calls) == [(("p0", "p2"), 5), (("p1",), 6)]


ACTION = Constraint(regex=r" (Search|Lookup|Finish)\[[^\]\n]*\]", after="Action 1:")


def test_a_constrained_scripted_model_says_as_much_of_its_reply_as_the_grammar_allows():
    llm = ScriptedLLM(lambda p: "I should look.\nAction 1: Search[Paris] and then\nObservation 1: made up")
    [done] = llm.generate(["q"], GenerationConfig(constraint=ACTION))
    assert (done.text, done.finish_reason) == ("I should look.\nAction 1: Search[Paris]", "stop")
    [cut] = llm.generate(["q"], GenerationConfig(constraint=ACTION, max_new_tokens=8))
    assert (cut.text, cut.finish_reason) == ("I should look.\nAction 1: Search", "length")
    [stopped] = llm.generate(["q"], GenerationConfig(constraint=ACTION, stop=["[P"]))
    assert (stopped.text, stopped.finish_reason) == ("I should look.\nAction 1: Search", "stop")
    free = ScriptedLLM(["just thinking"]).generate(["q"], GenerationConfig(constraint=ACTION))
    assert free[0].text == "just thinking"  # the literal never came: free text conforms
    assert llm.constraints == [ACTION, ACTION, ACTION] and llm.prompts == ["q", "q", "q"]


def test_a_reply_no_constrained_model_could_give_is_a_script_error_naming_the_kind():
    llm = ScriptedLLM(lambda p: '{"a": 1')  # a JSON object that never closes
    schema = Constraint(json_schema={"type": "object"})
    with pytest.raises(ScriptError, match="no prefix of its reply .* conforms to the json_schema constraint"):
        llm.generate(["q"], GenerationConfig(constraint=schema))
    [cut] = llm.generate(["q"], GenerationConfig(constraint=schema, max_new_tokens=2))  # cut while it still could
    assert (cut.text, cut.finish_reason) == ('{"', "length")
    with pytest.raises(UsageError, match="regex constraint does not compile"):
        llm.generate(["q"], GenerationConfig(constraint=Constraint(regex="((")))
