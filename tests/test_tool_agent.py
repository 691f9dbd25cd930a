"""The tool agent (method ``tools``) driven by a scripted instruct model whose chat template renders tools: calls and
their results, parallel calls, corrections, re-asks, Finish, the step limit, constraints, batching and the CLI."""

from __future__ import annotations

import json
import threading

import pytest
from click.testing import CliRunner

from agentkit import tool
from agentkit.cli import main
from agentkit.errors import UsageError
from agentkit.llm import ScriptedLLM
from agentkit.strategies import load_strategy
from agentkit.strategies.tools import ToolAgent
from agentkit.tools.wikipedia import OfflineCorpus
from tests.test_toolcalls import CHATML, HERMES

CORPUS = OfflineCorpus.from_records(
    {
        "Ada Quill": "Ada Quill (1850 \u2013 1930) was an engineer. She was born in Barton.",
        "Zorblatt Tower": "Zorblatt Tower is a tower in Fooville. It was built in 1901 by Ada Quill.",
    }
)


def call(name: str, **arguments) -> str:
    return f"<tool_call>\n{json.dumps({'name': name, 'arguments': arguments})}\n</tool_call>"


def agent(replies, template=HERMES, **options) -> tuple[ToolAgent, ScriptedLLM]:
    llm = ScriptedLLM(replies, chat_template=template)
    return ToolAgent(llm, corpus=CORPUS, **options), llm


def test_search_then_finish_with_the_result_sent_back_as_a_tool_message():
    strategy, llm = agent(
        ["Who built it? " + call("Search", entity="Zorblatt Tower"), call("Finish", answer="Ada Quill")]
    )
    result = strategy("Who built Zorblatt Tower?")
    assert result.answer == "Ada Quill" and result.failure is None
    steps = result.trajectory.steps
    assert [(s.action, s.status) for s in steps] == [("Search", "ok"), ("Finish", "finish")]
    assert steps[0].thought == "Who built it?" and json.loads(steps[0].argument) == {"entity": "Zorblatt Tower"}
    assert steps[0].observation.startswith("Zorblatt Tower is a tower in Fooville.")
    assert '"name": "Search"' in llm.prompts[0] and '"name": "Finish"' in llm.prompts[0]  # the template's tools
    second = llm.prompts[1]
    assert 'Who built it?\n<tool_call>\n{"name": "Search", "arguments": {"entity": "Zorblatt Tower"}}' in second
    assert "<tool_response>\nZorblatt Tower is a tower in Fooville." in second
    assert result.prompt == llm.prompts[0] and result.model_calls == 2 and result.tool_calls == 1


def test_parallel_calls_run_side_by_side_and_each_gets_its_answer():
    started, both = [], threading.Barrier(2, timeout=10)

    @tool
    def wait(label: str) -> str:
        """Waits for the other call, then returns the label."""
        started.append(label)
        both.wait()  # only returns when the two calls run at once
        return f"done {label}"

    strategy, llm = agent(
        [call("wait", label="a") + "\n" + call("wait", label="b"), call("Finish", answer="ab")], tools=[wait]
    )
    result = strategy("q")
    assert result.answer == "ab" and sorted(started) == ["a", "b"]
    assert [s.observation for s in result.trajectory.steps[:2]] == ["done a", "done b"]
    assert llm.prompts[1].count("<tool_response>") == 2 and result.tool_calls == 2


def test_unknown_tools_and_bad_arguments_are_answered_and_the_episode_goes_on():
    @tool
    def double(n: int) -> str:
        """Doubles a number."""
        return str(2 * n)

    strategy, llm = agent(
        [call("Calculator", x=1) + call("double", n="many"), call("double", n=21), call("Finish", answer="42")],
        tools=[double],
    )
    result = strategy("q")
    unknown, bad, ok, finish = result.trajectory.steps
    assert (unknown.status, unknown.error) == ("unknown_tool", "unknown tool 'Calculator'")
    assert unknown.observation == "There is no tool Calculator. Call one of the tools: Search, Lookup, double, Finish."
    assert bad.status == "bad_arguments" and bad.observation.startswith("double: n: Input should be a valid integer")
    assert (ok.observation, finish.argument, result.answer) == ("42", "42", "42")


def test_a_reply_without_a_call_is_reasked_from_the_call_opener():
    strategy, llm = agent(["I should look it up.", '{"name": "Finish", "arguments": {"answer": "Barton"}}</tool_call>'])
    result = strategy("Where was Ada Quill born?")
    assert result.answer == "Barton"
    assert llm.prompts[1].endswith("<|im_start|>assistant\nI should look it up.\n<tool_call>")  # continued
    [step] = result.trajectory.steps
    assert step.reasked and step.status == "finish" and step.thought == "I should look it up."


def test_a_failed_reask_is_corrected_in_a_user_message():
    strategy, llm = agent(["I know it.", "Barton", "Barton.", "Still no call.", call("Finish", answer="Barton")])
    result = strategy("Where was Ada Quill born?")
    first, second, finish = result.trajectory.steps
    assert first.status == "malformed" and first.reasked
    reason = "no tool call; after re-asking: call 1: not JSON (Expecting value at character 1 of 'Barton')"
    assert first.error == reason
    assert first.observation == f"Invalid tool call ({reason}). Call one of the tools: Search, Lookup, Finish."
    assert f"<|im_start|>user\n{first.observation}<|im_end|>" in llm.prompts[2]
    assert second.status == "malformed" and result.answer == "Barton"


def test_a_call_that_does_not_parse_is_reasked_and_reported():
    strategy, _ = agent(
        ['<tool_call>\n{"name": "Search", "arguments": {"entity": "Ada Quill"\n</tool_call>', "no", "stop"],
        max_steps=1,
    )
    result = strategy("q")
    [step] = result.trajectory.steps
    assert step.status == "malformed" and step.error.startswith("call 1: not JSON")
    assert step.error.endswith("after re-asking: call 1: not JSON (Expecting value at character 1 of 'no')")
    assert result.failure == "forced_finish" and result.error == "no Finish call within 1 steps"


def test_without_reask_the_correction_comes_at_once_and_the_step_limit_ends_it():
    strategy, llm = agent(["Hmm.", "Hmm."], reask=False, max_steps=2)
    result = strategy("q")
    assert [s.status for s in result.trajectory.steps] == ["malformed", "malformed"]
    assert result.failure == "forced_finish" and result.trajectory.forced_finish and len(llm.prompts) == 2


def test_finish_ends_the_reply_and_the_calls_after_it_are_not_run():
    ran = []

    @tool
    def note(text: str) -> str:
        """Notes a text."""
        ran.append(text)
        return "noted"

    strategy, _ = agent([call("note", text="a") + call("Finish", answer="x") + call("note", text="b")], tools=[note])
    result = strategy("q")
    assert result.answer == "x" and ran == ["a"]
    assert [s.action for s in result.trajectory.steps] == ["note", "Finish"]


def test_an_empty_finish_is_answered_not_taken():
    strategy, _ = agent([call("Finish", answer=" "), call("Finish", answer="Barton")])
    result = strategy("q")
    assert result.trajectory.steps[0].observation == "Finish needs an answer." and result.answer == "Barton"


def test_constrained_calls_are_cut_where_they_end_and_fit_the_schema():
    strategy, llm = agent(
        ["Looking. " + call("Search", entity="Ada Quill") + " and then I will stop", call("Finish", answer="Barton")],
        constrain=True,
    )
    result = strategy("q")
    assert result.answer == "Barton"
    assert llm.constraints[0] is not None and llm.constraints[0].after == "<tool_call>"
    assert result.completions[0] == "Looking."  # the reply ended at its call: the rest was never generated


def test_one_call_a_reply_without_parallel_calls():
    strategy, llm = agent(
        [call("Search", entity="Ada Quill") + call("Search", entity="x"), call("Finish", answer="B")],
        parallel=False,
        constrain=True,
    )
    result = strategy("q")
    assert [s.action for s in result.trajectory.steps] == ["Search", "Finish"]


def test_a_template_without_tools_gets_them_in_the_system_message():
    strategy, llm = agent([call("Finish", answer="Barton")], template=CHATML)
    assert strategy("q").answer == "Barton"
    assert llm.prompts[0].startswith("<|im_start|>system\nAnswer the question by calling the tools.")
    assert "You can call these tools" in llm.prompts[0]


def test_a_format_by_name():
    llama = '{"name": "Finish", "parameters": {"answer": "Barton"}}'
    strategy, _ = agent([llama], template=CHATML, tool_format="llama3")
    assert strategy("q").answer == "Barton"


def test_many_episodes_share_batches():
    class Batches(ScriptedLLM):
        sizes: list[int] = []

        def generate(self, prompts, config=None):
            self.sizes.append(len(prompts))
            return super().generate(prompts, config)

    def reply(prompt: str) -> str:
        question = prompt.rsplit("Question: ", 1)[1].split("<|im_end|>", 1)[0]
        if "<tool_response>" not in prompt:
            return call("Search", entity=question)
        return call("Finish", answer=f"about {question}")

    llm = Batches(reply, chat_template=HERMES)
    questions = ["Ada Quill", "Zorblatt Tower", "Barton"]
    results = ToolAgent(llm, corpus=CORPUS).batch(questions)
    assert [r.answer for r in results] == [f"about {q}" for q in questions]
    assert max(llm.sizes) == 3  # the episodes' calls went to the model together


def test_a_model_without_a_chat_template_is_refused_in_one_line():
    with pytest.raises(UsageError, match="method tools needs a chat model: scripted has no chat template"):
        ToolAgent(ScriptedLLM([]))
    with pytest.raises(UsageError, match="unknown tool call format 'json'"):
        load_strategy("tools", ScriptedLLM([], chat_template=HERMES), tool_format="json")


def test_reacts_options_are_its_own_and_checked_there_but_not_the_fallback():
    strategy, _ = agent([], max_steps=2, sentences=1, reask=False)
    assert (strategy.max_steps, strategy.reask, strategy._react.sentences) == (2, False, 1)
    assert load_strategy("tools", ScriptedLLM([], chat_template=HERMES)).max_steps == 7  # ReAct's default
    with pytest.raises(ValueError, match="max_steps must be >= 1"):
        agent([], max_steps=0)
    with pytest.raises(TypeError, match="ToolAgent takes no fallback"):
        agent([], fallback=ToolAgent())
    with pytest.raises(TypeError, match="unexpected keyword argument 'steps'"):
        agent([], steps=3)


def test_the_registry_and_the_cli_run_it(tmp_path, monkeypatch):
    replies = [call("Search", entity="Ada Quill"), call("Finish", answer="Barton")]
    strategy = load_strategy("tools", ScriptedLLM(replies, chat_template=HERMES), max_steps=3)
    assert isinstance(strategy, ToolAgent) and strategy.max_steps == 3
    script = tmp_path / "replies.json"
    script.write_text(json.dumps(replies))
    refused = CliRunner().invoke(main, ["run", "q", "--method", "tools", "--model", f"scripted:{script}"])
    assert refused.exit_code == 1
    assert refused.output.strip() == (
        "Error: method tools needs a chat model: scripted:replies.json has no chat template; use an instruct model "
        "or a server (or method react, whose tool calls are text)"
    )
    monkeypatch.setattr("agentkit.models.load_model", lambda *a, **k: ScriptedLLM(replies, chat_template=HERMES))
    run = CliRunner().invoke(main, ["run", "Where was Ada Quill born?", "--method", "tools", "--json"])
    assert run.exit_code == 0, run.output
    record = json.loads(run.output)
    assert record["answer"] == "Barton" and record["trajectory"]["steps"][0]["action"] == "Search"
    shown = CliRunner().invoke(main, ["run", "Where was Ada Quill born?", "-m", "tools", "--tool-format", "plain"])
    assert shown.exit_code == 0, shown.output
    assert "Barton" in shown.output


def test_a_benchmark_of_the_tools_method_beside_react(tmp_path):
    from agentkit.eval import run_benchmark

    def reply(prompt: str) -> str:
        if "Thought 1:" in prompt:  # react, in chat form too
            return " I know it.\nAction 1: Finish[Leonardo da Vinci]"
        if "<tool_response>" not in prompt:
            return "Let me look. " + call("Search", entity="Mona Lisa")
        return call("Finish", answer="Leonardo da Vinci")

    out = run_benchmark(
        "wiki-sample", ["tools", "react"], ScriptedLLM(reply, chat_template=HERMES), output_dir=tmp_path, limit=2
    )
    tools = [json.loads(line) for line in (tmp_path / "tools" / "samples.jsonl").read_text().splitlines()]
    assert len(tools) == 2 and tools[0]["answer"] == "Leonardo da Vinci" and tools[0]["correct"]
    assert [s["action"] for s in tools[0]["trajectory"]["steps"]] == ["Search", "Finish"]
    assert out is not None and (tmp_path / "results.html").is_file()
