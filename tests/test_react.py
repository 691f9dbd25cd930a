"""ReAct episodes driven by scripted models: search, lookup, finish, recovery from sloppy output, the step limit
and the CoT-SC fallback. Observations come from real tools over offline corpora."""

import json
from pathlib import Path

import httpx
import pytest

from agentkit import CoT, ReAct, ScriptedLLM, SelfConsistency, tool
from agentkit.prompting import Templates, default_templates
from agentkit.strategies import load_strategy
from agentkit.strategies.react import Trajectory
from agentkit.tools.wikipedia import LiveWikipedia, OfflineCorpus, WikiSession

RECORDS = [
    {
        "title": "Zorblatt Tower",
        "text": "Zorblatt Tower is a tower in Fooville. It was built in 1901 by Ada Quill. "
        "The tower is 120 m tall. Ada Quill also designed the Fooville bridge. The tower was painted red in 1950. "
        "A museum opened in the tower in 1980. The tower closed in 2001 for repairs.",
    },
    {"title": "Ada Quill", "text": "Ada Quill (1850 \u2013 1930) was an engineer. She was born in Barton."},
]
VALID = "Valid actions are Search[entity], Lookup[keyword], Finish[answer]."


@pytest.fixture(scope="module")
def corpus():
    return OfflineCorpus.from_records(RECORDS)


def react(replies, corpus, **kwargs):
    llm = ScriptedLLM(replies)
    kwargs.setdefault("shots", 1)
    return ReAct(llm, corpus=corpus, **kwargs), llm


# ---------------------------------------------------------------- the done-when check (default offline corpus)
def test_search_lookup_finish_over_the_default_corpus():
    agent, llm = react(
        [
            " I need to find when the exclusion zone was set up.\nAction 1: Search[Chernobyl disaster]"
            "\nObservation 1: (invented)",
            " The first sentences do not say. I will look up the zone.\nAction 2: Lookup[exclusion zone]",
            " Around 49,000 people were evacuated at first.\nAction 3: Finish[49,000]",
        ],
        corpus="offline",
    )
    result = agent("How many people were first evacuated from the Chernobyl exclusion zone?")
    assert result.answer == "49,000" and result.failure is None and result.method == "react"
    steps = result.trajectory.steps
    assert [(s.action, s.argument) for s in steps] == [
        ("Search", "Chernobyl disaster"),
        ("Lookup", "exclusion zone"),
        ("Finish", "49,000"),
    ]
    assert steps[0].observation == (
        "On 26 April 1986, reactor 4 of the Chernobyl Nuclear Power Plant, located near Pripyat, Ukraine, exploded. "
        "With dozens of direct casualties and thousands of health complications stemming from the disaster, it is "
        "one of only two nuclear accidents rated at the maximum severity on the International Nuclear Event Scale, "
        "the other being the 2011 Fukushima nuclear accident, which happened in Japan. The response involved more "
        "than 500,000 personnel and cost an estimated 18 billion rubles. It remains the worst nuclear disaster and "
        "the most expensive disaster in history, with an estimated cost of US$700 billion. The disaster occurred "
        "during a test to simulate the cooling of the reactor during a serious accident in blackout conditions."
    )
    assert steps[1].observation == (
        "(Result 1 / 1) The Soviet government established a 10 kilometres (6.2 mi) exclusion zone 36 hours after "
        "the accident, initially evacuating around 49,000 people."
    )
    assert steps[2].observation is None and steps[2].status == "finish"
    # The model saw the real observation, never its own invented one, and each prompt extends the last.
    assert "(invented)" not in llm.prompts[1]
    assert llm.prompts[1].endswith(
        "Action 1: Search[Chernobyl disaster]\nObservation 1: " + steps[0].observation + "\nThought 2:"
    )
    assert llm.prompts[2].endswith("Observation 2: " + steps[1].observation + "\nThought 3:")
    for before, completion, after in zip(llm.prompts, result.completions, llm.prompts[1:], strict=False):
        assert after.startswith(before + completion)
    assert result.prompt == llm.prompts[0] and result.prompt.endswith(
        "Question: How many people were first evacuated from the Chernobyl exclusion zone?\nThought 1:"
    )


# ---------------------------------------------------------------- scripted trajectories
def test_not_found_then_similar_then_found(corpus):
    agent, llm = react(
        [
            " Search the tower.\nAction 1: Search[Zorblat Towr]",
            " The similar title is Zorblatt Tower.\nAction 2: Search[Zorblatt Tower]",
            " It was built in 1901.\nAction 3: Finish[1901]",
        ],
        corpus,
    )
    result = agent("When was Zorblatt Tower built?")
    first, second, _ = result.trajectory.steps
    assert first.observation.startswith("Could not find Zorblat Towr. Similar: ['Zorblatt Tower'")
    assert second.observation.startswith("Zorblatt Tower is a tower in Fooville.")
    assert result.answer == "1901"


def test_lookup_across_several_results(corpus):
    agent, _ = react(
        [
            " Search.\nAction 1: Search[Zorblatt Tower]",
            " Look for the museum.\nAction 2: Lookup[tower]",
            " Next.\nAction 3: Lookup[tower]",
            " Next.\nAction 4: Lookup[TOWER]",
            " Next.\nAction 5: Lookup[tower]",
            " Next.\nAction 6: Lookup[tower]",
            " Next.\nAction 7: Lookup[tower]",
            " Done.\nAction 8: Finish[1980]",
        ],
        corpus,
        max_steps=8,
    )
    result = agent("When did the museum open?")
    observations = [s.observation for s in result.trajectory.steps[1:7]]
    assert observations == [
        "(Result 1 / 5) Zorblatt Tower is a tower in Fooville.",
        "(Result 2 / 5) The tower is 120 m tall.",
        "(Result 3 / 5) The tower was painted red in 1950.",
        "(Result 4 / 5) A museum opened in the tower in 1980.",
        "(Result 5 / 5) The tower closed in 2001 for repairs.",
        "No more results.",
    ]
    assert result.answer == "1980"


def test_missing_action_is_reasked_and_recovers(corpus):
    agent, llm = react(
        [
            " I should look for Ada Quill first.",
            " Search[Ada Quill]\nmore text",
            " Born in Barton.\nAction 2: Finish[Barton]",
        ],
        corpus,
    )
    result = agent("Where was Ada Quill born?")
    step = result.trajectory.steps[0]
    assert step.reasked and step.status == "ok" and (step.action, step.argument) == ("Search", "Ada Quill")
    assert llm.prompts[1] == llm.prompts[0] + " I should look for Ada Quill first.\nAction 1:"
    assert llm.prompts[2].endswith(
        "Thought 1: I should look for Ada Quill first.\nAction 1: Search[Ada Quill]\n"
        "Observation 1: Ada Quill (1850 \u2013 1930) was an engineer. She was born in Barton.\nThought 2:"
    )
    assert result.completions[1] == " Search[Ada Quill]"  # the re-ask stops at the end of the line
    assert result.answer == "Barton"


def test_malformed_action_is_reasked_with_only_the_thought_kept(corpus):
    agent, llm = react(
        [" Look her up.\nAction 1: search for Ada Quill", " Search[Ada Quill]", " Done.\nAction 2: Finish[Barton]"],
        corpus,
    )
    result = agent("Where was Ada Quill born?")
    assert llm.prompts[1] == llm.prompts[0] + " Look her up.\nAction 1:"
    assert result.trajectory.steps[0].reasked and result.answer == "Barton"


def test_failed_reask_gives_a_corrective_observation_and_the_episode_goes_on(corpus):
    agent, llm = react(
        [
            " Hmm.\nAction 1: Search(Ada Quill)",
            " look it up please",
            " Better.\nAction 2: Search[Ada Quill]",
            " Done.\nAction 3: Finish[Barton]",
        ],
        corpus,
    )
    result = agent("Where was Ada Quill born?")
    bad = result.trajectory.steps[0]
    assert bad.status == "malformed" and bad.reasked and bad.action is None
    assert bad.observation == (
        "Invalid action (use square brackets, not parentheses: 'Search(Ada Quill)'; after re-asking: "
        "not of the form Tool[argument]: 'look it up please'). " + VALID
    )
    assert llm.prompts[2].endswith(
        "Thought 1: Hmm.\nAction 1: look it up please\nObservation 1: " + bad.observation + "\nThought 2:"
    )
    assert result.answer == "Barton" and len(result.trajectory.steps) == 3


def test_without_reask_the_correction_comes_at_once(corpus):
    agent, llm = react([" No action here.", " Done.\nAction 2: Finish[x]"], corpus, reask=False)
    result = agent("q")
    assert result.trajectory.steps[0].observation == f"Invalid action (no action). {VALID}"
    assert len(llm.prompts) == 2 and result.answer == "x"


def test_unknown_tool_is_an_observation(corpus):
    agent, _ = react([" Use Google.\nAction 1: Google[Ada Quill]", " Fine.\nAction 2: Finish[Barton]"], corpus)
    result = agent("q")
    step = result.trajectory.steps[0]
    assert step.status == "unknown_tool" and step.action == "Google"
    assert step.observation == f"There is no action Google[...]. {VALID}"
    assert result.answer == "Barton"


def test_tool_names_match_any_case(corpus):
    agent, _ = react([" s\nAction 1: SEARCH[ada quill]", " f\nAction 2: finish[Barton]"], corpus)
    result = agent("q")
    assert [s.action for s in result.trajectory.steps] == ["Search", "Finish"]
    assert result.answer == "Barton"


def test_empty_finish_is_corrected(corpus):
    agent, _ = react([" I give up.\nAction 1: Finish[]", " Actually.\nAction 2: Finish[Barton]"], corpus)
    result = agent("q")
    assert result.trajectory.steps[0].observation == "Finish needs an answer inside the brackets: Finish[answer]."
    assert result.answer == "Barton"


def test_step_limit_is_a_recorded_forced_finish(corpus):
    agent, llm = react(lambda p: " Keep searching.\nAction: Search[Ada Quill]", corpus, max_steps=3)
    result = agent("q")
    assert result.answer is None and result.failure == "forced_finish"
    assert result.error == "no Finish[...] within 3 steps"
    assert result.trajectory.forced_finish and not result.trajectory.finished
    assert len(result.trajectory.steps) == 3 and len(llm.prompts) == 3
    assert result.completion_tokens == sum(s.completion_tokens for s in result.trajectory.steps) > 0
    assert result.prompt_tokens == sum(s.prompt_tokens for s in result.trajectory.steps) > 0


def test_fallback_to_cot_self_consistency(corpus):
    replies = [
        " Hmm.\nAction 1: Search[Ada Quill]",
        " Hmm.\nAction 2: Lookup[born]",
        " 40 + 2 = 42. The answer is 42.",
        " The answer is 41.",
        " So the answer is 42.",
    ]
    llm = ScriptedLLM(replies)
    fallback = SelfConsistency(CoT(llm, shots=1), k=3)
    agent = ReAct(llm, corpus=corpus, shots=1, max_steps=2, fallback=fallback)
    assert agent.name == "react-cot-sc"
    events = []
    result = agent("q", on_event=events.append)
    assert result.method == "react-cot-sc"
    assert result.answer == "42" and result.failure is None
    assert result.votes == {"42": 2, "41": 1}
    assert result.trajectory.forced_finish
    assert result.trajectory.fallback == {
        "method": "cot-sc",
        "answer": "42",
        "failure": None,
        "votes": {"42": 2, "41": 1},
    }
    assert result.trajectory.answer == "42"
    assert len(result.completions) == 2 + 3 and len(result.samples) == 3
    assert events[-1].kind == "answer" and events[-1].text == "42"
    assert "Question: q\nAnswer:" in llm.prompts[2]  # the CoT prompt, not the ReAct one


def test_fallback_is_not_used_when_react_finishes(corpus):
    llm = ScriptedLLM([" Done.\nAction 1: Finish[Barton]"])
    agent = ReAct(llm, corpus=corpus, shots=1, fallback=SelfConsistency(CoT(llm, shots=1), k=3))
    result = agent("q")
    assert result.answer == "Barton" and result.trajectory.fallback is None and len(llm.prompts) == 1


def test_fallback_without_an_answer_keeps_the_failure(corpus):
    llm = ScriptedLLM([" x\nAction 1: Lookup[a]", " no idea", " none", " nothing"])
    agent = ReAct(llm, corpus=corpus, shots=1, max_steps=1, fallback=SelfConsistency(CoT(llm, shots=1), k=3))
    result = agent("q")
    assert result.answer is None and result.failure == "no_answer"
    assert result.error.startswith("no Finish[...] within 1 steps; fallback cot-sc:")


# ---------------------------------------------------------------- custom tools
@tool
def population(city: str) -> str:
    """Returns the population of a city from our own table."""
    return {"fooville": "12,000"}.get(city.lower(), f"No data for {city}.")


@tool
def double(n: int) -> int:
    """Doubles a whole number."""
    return 2 * n


def test_custom_tools_are_listed_and_callable(corpus):
    agent, llm = react(
        [
            " Ask the table.\nAction 1: population[Fooville]",
            " Double it.\nAction 2: double[twelve]",
            " Use digits.\nAction 3: double[12000]",
            " Done.\nAction 4: Finish[24000]",
        ],
        corpus,
        tools=[population, double],
    )
    result = agent("Twice the population of Fooville?")
    assert "(3) population[city]: Returns the population of a city from our own table." in llm.prompts[0]
    assert "(4) double[n]: Doubles a whole number.\n(5) Finish[answer]:" in llm.prompts[0]
    assert [s.observation for s in result.trajectory.steps[:3]] == [
        "12,000",
        "double: n must be integer, got 'twelve'",
        "24000",
    ]
    assert result.answer == "24000"


def test_tools_only_agent_without_wikipedia():
    agent = ReAct(
        ScriptedLLM([" t\nAction 1: Search[x]", " t\nAction 2: double[2]", " t\nAction 3: Finish[4]"]),
        corpus=None,
        tools=[double],
        shots=0,
    )
    result = agent("q")
    assert (
        result.trajectory.steps[0].observation
        == "There is no action Search[...]. Valid actions are double[n], Finish[answer]."
    )
    assert result.trajectory.steps[1].observation == "4"
    assert "Search[entity]" not in result.prompt


def test_exemplars_match_the_tools(corpus, tmp_path):
    # without Wikipedia, the shipped exemplars (seven Search calls) would teach a tool the agent lacks
    llm = ScriptedLLM([" t\nAction 1: Finish[4]"] * 3)
    ReAct(llm, corpus=None, tools=[double])("q")  # the default 4 shots
    assert "Search[" not in llm.prompts[0] and "Here are some examples" not in llm.prompts[0]
    ReAct(llm, corpus=corpus, tools=[double])("q")  # with it, the shipped ones fit
    assert llm.prompts[1].count("Search[") >= 4
    # exemplars of one's own, in a templates directory's react.jsonl: only those calling these tools are shown
    own = [
        {
            "question": "What is twice 21?",
            "steps": [
                {"thought": "Double it.", "action": "double[21]", "observation": "42"},
                {"thought": "Done.", "action": "Finish[42]"},
            ],
        },
        {"question": "Where?", "steps": [{"thought": "Look.", "action": "Search[Rome]", "observation": "..."}]},
    ]
    (tmp_path / "react.jsonl").write_text("\n".join(json.dumps(ex) for ex in own))
    ReAct(llm, corpus=None, tools=[double], templates=Templates(tmp_path))("q")
    assert "Question: What is twice 21?\nThought 1: Double it.\nAction 1: double[21]" in llm.prompts[2]
    assert "Where?" not in llm.prompts[2]


def test_a_bug_in_a_tool_propagates(corpus):
    @tool
    def broken(x: str) -> str:
        """Always fails."""
        raise RuntimeError("bug in the tool")

    agent, _ = react([" t\nAction 1: broken[x]"], corpus, tools=[broken])
    with pytest.raises(RuntimeError, match="bug in the tool"):
        agent("q")


def test_bad_tool_lists_are_rejected(corpus):
    with pytest.raises(TypeError, match="decorate the function with @tool"):
        ReAct(ScriptedLLM([]), tools=[lambda x: x])
    with pytest.raises(ValueError, match="Search/Lookup/Finish"):
        ReAct(ScriptedLLM([]), tools=[tool(name="search")(population.fn)])
    with pytest.raises(ValueError, match="max_steps"):
        ReAct(ScriptedLLM([]), max_steps=0)


# ---------------------------------------------------------------- events, record, batching, registry
def test_events_for_the_repl(corpus):
    agent, _ = react([" Find her.\nAction 1: Search[Ada Quill]", " Done.\nAction 2: Finish[Barton]"], corpus)
    events = []
    agent("q", on_event=events.append)
    assert [(e.kind, e.data.get("step")) for e in events] == [
        ("thought", 1),
        ("action", 1),
        ("observation", 1),
        ("thought", 2),
        ("action", 2),
        ("answer", 2),
    ]
    assert events[1].text == "Search[Ada Quill]" and events[-1].text == "Barton"


def test_trajectory_exports_as_json(corpus):
    agent, _ = react([" Find her.\nAction 1: Search[Ada Quill]", " Done.\nAction 2: Finish[Barton]"], corpus)
    result = agent("q")
    exported = result.trajectory.model_dump_json()
    assert Trajectory.model_validate_json(exported) == result.trajectory
    record = json.loads(result.model_dump_json())
    step = record["trajectory"]["steps"][0]
    assert set(step) >= {
        "thought",
        "action",
        "argument",
        "observation",
        "raw",
        "tool_seconds",
        "prompt_tokens",
        "completion_tokens",
    }
    assert step["raw"] == " Find her.\nAction 1: Search[Ada Quill]" and step["tool_seconds"] >= 0
    assert "Action 1: Search[Ada Quill]\nObservation 1: Ada Quill" in result.trajectory.scratchpad()


def test_batched_episodes_keep_their_own_page(corpus):
    def reply(prompt):
        question = prompt.rsplit("Question: ", 1)[1]
        if question.startswith("A"):
            script = [" s\nAction 1: Search[Ada Quill]", " l\nAction 2: Lookup[born]", " f\nAction 3: Finish[Barton]"]
        else:
            script = [
                " l\nAction 1: Lookup[born]",
                " s\nAction 2: Search[Zorblatt Tower]",
                " f\nAction 3: Finish[1901]",
            ]
        return script[question.count("\nObservation ")]

    agent = ReAct(ScriptedLLM(reply), corpus=corpus, shots=0)
    results = agent.batch(["A: where was Ada born?", "B: when was the tower built?"] * 2, batch_size=4)
    assert [r.answer for r in results] == ["Barton", "1901", "Barton", "1901"]
    assert results[0].trajectory.steps[1].observation == "(Result 1 / 1) She was born in Barton."
    assert results[1].trajectory.steps[0].observation.startswith("There is no current page")


def test_load_strategy_builds_react_and_the_fallback(corpus):
    llm = ScriptedLLM([])
    plain = load_strategy("react", llm, shots=2, corpus=corpus, max_steps=4)
    assert isinstance(plain, ReAct) and plain.max_steps == 4 and plain.fallback is None
    combo = load_strategy("react-cot-sc", llm, k=3, corpus=corpus, config={"max_new_tokens": 64})
    assert combo.name == "react-cot-sc" and combo.fallback.k == 3
    assert combo.config.max_new_tokens == 64 and "\nObservation" in combo.config.stop


def test_stop_strings_end_the_step_before_an_observation(corpus):
    agent = ReAct(ScriptedLLM([]), corpus=corpus, max_steps=3)
    for stop in ["\nObservation", "Observation 1:", "Observation 3:", "\nQuestion:"]:
        assert stop in agent.config.stop
    assert agent.reask_config.stop[0] == "\n" and agent.reask_config.max_new_tokens <= 48


# ---------------------------------------------------------------- faults inside an episode
def test_live_backend_fault_is_an_observation_and_the_episode_goes_on():
    calls = []

    def down(request):
        calls.append(request)
        raise httpx.ConnectTimeout("no route")

    backend = LiveWikipedia(transport=httpx.MockTransport(down), cache_dir=False, max_retries=1, retry_wait=0)
    agent = ReAct(ScriptedLLM([" s\nAction 1: Search[Paris]", " f\nAction 2: Finish[Paris]"]), corpus=backend, shots=0)
    result = agent("q")
    assert result.trajectory.steps[0].observation == (
        "Search[Paris] failed: Wikipedia did not answer in time (timeout). Try again later."
    )
    assert result.answer == "Paris" and len(calls) == 2


# ---------------------------------------------------------------- the shipped exemplars
def test_exemplars_are_ours_and_consistent_with_the_offline_corpus():
    exemplars = default_templates().exemplars("react", 6)
    assert len(exemplars) >= 4
    corpus = OfflineCorpus.default()
    eval_set = Path(__file__).parents[1] / "prompts" / "data" / "wiki_qa_sample.jsonl"
    eval_questions = {json.loads(line)["question"] for line in eval_set.read_text(encoding="utf-8").splitlines()}
    for ex in exemplars:
        assert ex["question"] not in eval_questions
        session = WikiSession(corpus)
        *middle, last = ex["steps"]
        assert last["action"] == f"Finish[{ex['answer']}]" and "observation" not in last
        for step in middle:
            name, argument = step["action"][:-1].split("[", 1)
            tool = {"Search": session.search, "Lookup": session.lookup}[name]
            assert tool(argument) == step["observation"], step["action"]


def test_long_multiline_tool_output_becomes_one_bounded_line(corpus):
    @tool
    def dump(x: str) -> str:
        """Returns a lot of text."""
        return "line one\nline two\n" + "word " * 2000

    agent, llm = react([" t\nAction 1: dump[x]", " t\nAction 2: Finish[done]"], corpus, tools=[dump])
    result = agent("q")
    observation = result.trajectory.steps[0].observation
    assert observation.startswith("line one line two word") and "\n" not in observation
    assert len(observation) == ReAct.max_observation_chars and observation.endswith("\u2026")
    assert f"Observation 1: {observation}\nThought 2:" in llm.prompts[1]


def test_reask_text_is_recorded_separately(corpus):
    agent, _ = react([" Only a thought.", " Search[Ada Quill] extra", " f\nAction 2: Finish[Barton]"], corpus)
    step = agent("q").trajectory.steps[0]
    assert step.raw == " Only a thought." and step.reask_raw == " Search[Ada Quill] extra"
