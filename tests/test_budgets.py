"""Per-episode budgets in batched runs: each limit ends the episodes that go over it as a recorded failure naming
the budget, while the others finish; run-level totals reach results.json and results.md."""

from __future__ import annotations

import json
import threading

import pytest
from pydantic import ValidationError

from agentkit.errors import BenchmarkError
from agentkit.eval import run_benchmark
from agentkit.llm import GenerationConfig, ScriptedLLM
from agentkit.result import FAILURES, Result
from agentkit.runtime import Budget, Call, Generate, Usage, run_episodes

CFG = GenerationConfig(max_new_tokens=16)


def steps(name: str, calls: int, tools: int = 0):
    """An episode of ``calls`` model calls, each followed by ``tools`` tool calls."""
    texts = []
    for step in range(calls):
        completion = yield Generate(f"{name} step {step}", CFG)
        texts.append(completion.text)
        for _ in range(tools):
            yield Call(str.upper, completion.text)
    return Result(method="steps", question=name, answer=" ".join(texts))


def run(budget: Budget, episodes, reply=lambda prompt: "one two three", **options):
    usage = Usage()
    results = run_episodes(ScriptedLLM(reply), episodes, batch_size=4, budget=budget, usage=usage, **options)
    return results, usage


def test_model_calls_stop_the_episodes_that_ask_for_more():
    results, usage = run(Budget(model_calls=2), [steps(f"e{i}", calls=1 + i % 4) for i in range(8)])
    for i, result in enumerate(results):
        if 1 + i % 4 <= 2:
            assert result.ok and result.model_calls == 1 + i % 4
        else:
            assert result.failure == "budget_model_calls" and result.answer is None
            assert "needed 3 model calls; its budget is 2" in result.error
            assert result.model_calls == 2 and len(result.completions) == 2  # what it had before it stopped
            assert result.completion_tokens == 6
    assert usage.episodes == 8 and usage.model_calls == sum(r.model_calls for r in results)


def test_tool_calls_count_every_call():
    results, _ = run(Budget(tool_calls=3), [steps(f"e{i}", calls=2, tools=1 + i % 2) for i in range(6)])
    assert [r.failure for r in results] == [None, "budget_tool_calls"] * 3
    assert [r.tool_calls for r in results] == [2, 3] * 3  # the stopped ones made three of their four


def test_input_and_output_tokens_are_checked_as_each_completion_arrives():
    # each prompt is 3 tokens ("eN step K"), each completion 3 ("one two three")
    results, _ = run(Budget(input_tokens=7), [steps(f"e{i}", calls=1 + i % 3) for i in range(6)])
    assert [r.failure for r in results] == [None, None, "budget_input_tokens"] * 2
    assert results[2].prompt_tokens == 9 and results[2].model_calls == 3
    results, _ = run(Budget(output_tokens=4), [steps(f"e{i}", calls=1 + i % 2) for i in range(6)])
    assert [r.failure for r in results] == [None, "budget_output_tokens"] * 3
    assert "needed 6 output tokens; its budget is 4" in results[1].error


def test_seconds_stop_an_episode_while_it_waits_and_the_others_go_on():
    release = threading.Event()

    def slow(text):
        release.wait(30)
        return text

    def waits():
        yield Call(slow, "x")
        return Result(method="slow", question="q", answer="late")

    try:
        results, _ = run(Budget(seconds=0.2), [waits(), *(steps(f"e{i}", calls=2) for i in range(4))])
    finally:
        release.set()
    assert results[0].failure == "budget_seconds" and "its budget is 0.2 s" in results[0].error
    assert all(r.ok for r in results[1:])


def test_a_list_request_counts_each_of_its_calls():
    def sampled():
        completions = yield [Generate("q", CFG.model_copy(update={"do_sample": True, "seed": s})) for s in range(5)]
        return Result(method="sc", question="q", answer=completions[0].text)

    results, _ = run(Budget(model_calls=4), [sampled(), steps("e", calls=1)])
    assert results[0].failure == "budget_model_calls" and results[0].model_calls == 0
    assert results[1].ok


def test_budgets_are_validated_and_every_failure_kind_is_described():
    with pytest.raises(ValidationError):
        Budget(model_calls=0)
    with pytest.raises(ValidationError):
        Budget(tokens=5)
    assert not Budget().limited and Budget(seconds=1).limited
    for name in Budget.model_fields:
        assert f"budget_{name}" in FAILURES


def test_a_benchmark_records_budget_failures_and_the_run_totals(tmp_path):
    from tests.test_eval_runner import GOLD, pal_reply, question_of

    def reply(prompt: str) -> str:  # a program of 11 tokens for PAL, 25 words of reasoning for CoT
        if "def solution()" in prompt:
            return pal_reply(prompt)
        return "Let me " + "think " * 20 + f"so the answer is {GOLD[question_of(prompt)]}."

    def bench(**settings):
        return run_benchmark("gsm8k-sample", ["cot", "pal"], ScriptedLLM(reply), output_dir=out, limit=5, **settings)

    out = tmp_path / "run"
    result = bench(budget=Budget(tool_calls=1, output_tokens=16))
    cot, pal = result.methods["cot"].records, result.methods["pal"].records
    assert {r["failure"] for r in cot} == {"budget_output_tokens"}
    assert all(r["failure"] is None and r["tool_calls"] == 1 for r in pal)
    saved = json.loads((out / "results.json").read_text())
    assert saved["config"]["budget"] == {"tool_calls": 1, "output_tokens": 16}
    totals = saved["totals"]
    assert totals["n"] == 10 and totals["model_calls"] == 10 and totals["tool_calls"] == 5
    assert totals["completion_tokens"] == sum(r["completion_tokens"] for r in cot + pal)
    assert saved["this_invocation"]["model_calls"] == 10 and saved["this_invocation"]["episodes"] == 10
    assert saved["methods"]["cot"]["failures"] == {"budget_output_tokens": 5}
    assert "Totals: 10 episodes" in (out / "results.md").read_text()
    again = bench(budget=Budget(tool_calls=1, output_tokens=16))
    assert again.records == result.records and again.usage.episodes == 0  # resumed: nothing ran
    with pytest.raises(BenchmarkError, match="budget"):  # a run under another budget is another run
        bench(budget=Budget(tool_calls=2))


def test_a_strategy_takes_a_budget_and_its_failure_names_the_method_and_question():
    from agentkit.strategies import load_strategy

    cot = load_strategy("cot", ScriptedLLM(lambda prompt: "Three plus four is 7. The answer is 7."))
    result = cot("What is 3 + 4?", budget=Budget(output_tokens=5))
    assert (result.method, result.question, result.failure) == ("cot", "What is 3 + 4?", "budget_output_tokens")
    assert "What is 3 + 4?" in result.prompt and result.completions  # the prompt sent, the completion it got
    first, second = cot.batch(["What is 3 + 4?", "What is 1 + 6?"], budget=Budget(model_calls=1))
    assert first.ok and second.ok and first.model_calls == second.model_calls == 1
