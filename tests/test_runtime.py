"""Episodes as generators, and the runner that steps many of them together."""

import threading
import time

import pytest

from agentkit.errors import AgentkitError
from agentkit.llm import BatchSession, GenerationConfig, ScriptedLLM
from agentkit.result import Result
from agentkit.runtime import Call, Event, Generate, gather, run_episode, run_episodes

CFG = GenerationConfig(max_new_tokens=8)


def two_step(name):
    first = yield Generate(f"{name} step1", CFG)
    yield Event("thought", first.text)
    tool = yield Call(str.upper, first.text)
    second = yield Generate(f"{name} step2 {tool}", CFG)
    return Result(method="t", question=name, answer=second.text)


def test_single_episode_streams_tokens_and_events():
    llm = ScriptedLLM(lambda p: "echo " + p.split()[1])
    tokens, events = [], []
    result = run_episode(llm, two_step("a"), on_event=events.append, on_token=tokens.append)
    assert result.answer == "echo step2"
    assert "".join(tokens) == "echo step1echo step2"
    assert [e.kind for e in events] == ["thought"]
    assert result.duration > 0


class Recorder(ScriptedLLM):
    """Records the prompts of every ``generate`` call (one call is one batch)."""

    def __init__(self, replies):
        super().__init__(replies)
        self.batches = []

    def generate(self, prompts, config=None):
        self.batches.append(list(prompts))
        return super().generate(prompts, config)


def test_many_episodes_share_batches_whatever_step_they_are_at():
    llm = Recorder(lambda p: p.split()[0] + "-out")
    results = run_episodes(llm, (two_step(f"e{i}") for i in range(6)), batch_size=4)
    batches = llm.batches
    assert [r.question for r in results] == [f"e{i}" for i in range(6)]
    assert all(r.answer == f"e{i}-out" for i, r in enumerate(results))
    assert max(len(b) for b in batches) == 4  # never more than the batch size
    assert len(batches) < 12  # fewer engine calls than model requests
    mixed = [b for b in batches if any("step1" in p for p in b) and any("step2" in p for p in b)]
    assert mixed, "first and second steps of different episodes should share a batch"


def test_on_result_fires_as_each_episode_finishes_in_index_terms():
    seen = []
    llm = ScriptedLLM(lambda p: "x")
    run_episodes(llm, (two_step(str(i)) for i in range(5)), batch_size=2, on_result=lambda i, r: seen.append(i))
    assert sorted(seen) == list(range(5))


def test_a_slow_tool_does_not_hold_up_other_episodes():
    release = threading.Event()
    order = []

    def slow(x):
        release.wait(5)
        return x

    def slow_episode():
        yield Call(slow, 1)
        order.append("slow")
        return Result(method="t", question="slow")

    def fast_episode(i):
        yield Generate(f"q{i}", CFG)
        order.append(f"fast{i}")
        if i == 2:
            release.set()
        return Result(method="t", question=str(i))

    llm = ScriptedLLM(lambda p: "y")
    run_episodes(llm, [slow_episode(), fast_episode(0), fast_episode(1), fast_episode(2)], batch_size=1)
    assert order.index("slow") == 3


def test_a_tool_exception_is_thrown_into_the_episode():
    def fails():
        raise ValueError("boom")

    def episode():
        try:
            yield Call(fails)
        except ValueError as exc:
            return Result(method="t", question="q", error=str(exc))
        return Result(method="t", question="q")

    llm = ScriptedLLM([])
    assert run_episode(llm, episode()).error == "boom"
    assert run_episodes(llm, [episode()])[0].error == "boom"


def test_a_bug_in_an_episode_propagates():
    def broken():
        yield Generate("p", CFG)
        raise KeyError("bug")

    with pytest.raises(KeyError):
        run_episodes(ScriptedLLM(lambda p: ""), [broken()])


def test_an_episode_must_return_a_result():
    def bad():
        yield Generate("p", CFG)
        return "not a result"

    with pytest.raises(TypeError, match="must return a Result"):
        run_episode(ScriptedLLM(["x"]), bad())


def test_gather_runs_parts_concurrently():
    def part(n):
        a = yield Call(lambda: n)
        b = yield Call(lambda: n * 10)
        return a + b

    def episode():
        values = yield from gather([part(1), part(2), part(3)])
        return Result(method="t", question="g", answer=str(values))

    result = run_episodes(ScriptedLLM([]), [episode()])[0]
    assert result.answer == "[11, 22, 33]"


def test_run_episode_batches_the_prompts_of_one_request():
    def episode():
        completions = yield [Generate(f"p{i}", CFG) for i in range(3)]
        return Result(method="t", question="q", completions=[c.text for c in completions])

    llm = Recorder(lambda p: p + "!")
    result = run_episode(llm, episode())
    assert result.completions == ["p0!", "p1!", "p2!"] and llm.batches == [["p0", "p1", "p2"]]


def test_when_one_tool_of_a_request_fails_the_others_answers_are_dropped():
    late_done = threading.Event()

    def late():
        time.sleep(0.05)
        late_done.set()
        return "late"

    def fails():
        raise ValueError("boom")

    def after_late():
        late_done.wait(5)
        time.sleep(0.1)  # the late answer arrives first, while the episode waits for this one
        return "mine"

    def episode():
        try:
            yield [Call(late), Call(fails)]
        except ValueError:
            pass
        value = yield Call(after_late)
        return Result(method="t", question="q", answer=value)

    llm = ScriptedLLM([])
    assert run_episodes(llm, [episode()], tool_workers=3)[0].answer == "mine"
    late_done.clear()
    assert run_episode(llm, episode()).answer == "mine"


def test_a_stream_must_return_its_completion():
    class Forgetful(ScriptedLLM):
        def stream(self, prompt, config=None):
            yield "text"

    def episode():
        yield Generate("p", CFG)
        return Result(method="t", question="q")

    with pytest.raises(TypeError, match="a model's stream must return its Completion"):
        run_episode(Forgetful(["x"]), episode(), on_token=lambda piece: None)


def test_a_stuck_runner_is_a_bug_with_its_traceback_not_an_agentkit_error():
    class Dropping(BatchSession):
        def add(self, key, prompt, config):
            pass  # loses the request: the runner waits for nothing

    class Lossy(ScriptedLLM):
        def session(self, max_batch_size=32):
            return Dropping(self, max_batch_size)

    with pytest.raises(RuntimeError, match="this is a bug in agentkit") as info:
        run_episodes(Lossy(["x"]), [two_step("a")])
    assert not isinstance(info.value, AgentkitError)  # the CLI shows a traceback, not a one-line error
