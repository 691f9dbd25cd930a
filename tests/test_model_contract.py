"""The model contract: what every backend promises, checked against each one of them.

Strategies, the runtime, the harness and the REPL rely on exactly this (see ``agentkit.llm``): one completion per
prompt in order; stop strings cut exactly; ``finish_reason`` "stop" when the text ended of its own accord and
"length" when ``max_new_tokens`` cut it; streamed pieces that join to the text, the stream returning the
``Completion``; token counts; seeds; sessions; ``render`` leaving text as it is; constraints (a regex, a JSON
schema, a Lark grammar, each with and without a free prefix ``after``): a constrained completion matches
(``agentkit.grammar.matches``) or was cut by ``max_new_tokens``, and a kind a backend cannot honour is refused
at once with a one-line ``UsageError`` naming the backend and the kind.

A backend joins with one line in ``BACKENDS``: a name, a factory (a context manager that yields the model, so a
server can be started and stopped around the tests), and what it cannot do (``samples=False``: sampling does
not vary the text, as with a fake that replays; ``seeds=False``: a seed does not reproduce a sample, as with a
server that takes none; ``constraints``: the constraint kinds it honours, none by default). The checks are
written against each backend's own greedy output (a stop string is taken from text the backend has just
produced), so they need no knowledge of its weights; they do need greedy decoding to be deterministic.

The engine runs on a tiny random Gemma 3 with a small trained BPE tokenizer (``tests/tiny_engine.py``), so the
whole contract takes seconds.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

import pytest
from streams import drain
from tiny_engine import one_torch_thread, tiny_engine

from agentkit import grammar
from agentkit.errors import UsageError
from agentkit.llm import LLM, Chat, Completion, Constraint, ConstraintKind, GenerationConfig, Message, ScriptedLLM
from agentkit.models import SlowScriptedLLM
from agentkit.result import Result
from agentkit.runtime import Generate, run_episode
from agentkit.strategies.cot import CoT


# ------------------------------------------------------------------------------------------------ the backends
@dataclass(frozen=True)
class Backend:
    """A model backend under the contract, and what it cannot do."""

    name: str
    make: Callable[[], AbstractContextManager[LLM]]  # a context: a backend may need a server started and stopped
    samples: bool = True  # do_sample draws different texts under different seeds
    seeds: bool = True  # the same seed draws the same text again
    constraints: tuple[ConstraintKind, ...] = ()  # the constraint kinds it honours; it refuses the others


_PIECES = [" the", " fox", " jumps", ",", " over", " 42", ".", "\n", " Observation", ":", " Thought", " x", "y", " é"]


def babble(prompt: str) -> str:
    """A scripted reply: sixty pseudo-random pieces, the same ones for the same prompt; a prompt that asks for
    JSON gets a JSON object first (or after ``Answer: ``), then the pieces."""
    words = "".join(random.Random(prompt).choices(_PIECES, k=60))
    if prompt.endswith("JSON:"):
        reply = json.dumps({"a": len(prompt), "b": words[:12]}, ensure_ascii=False) + words
        return words[:20] + "Answer: " + reply if "Answer" in prompt else reply
    return words


@contextmanager
def scripted() -> Iterator[LLM]:
    yield ScriptedLLM(babble)


@contextmanager
def slow_scripted() -> Iterator[LLM]:
    yield SlowScriptedLLM(babble, delay=1e-4)


@contextmanager
def engine() -> Iterator[LLM]:
    with one_torch_thread():
        yield tiny_engine(bpe=True, max_batch_size=3)


@contextmanager
def served_engine() -> Iterator[LLM]:
    """The engine behind ``agentkit serve`` on a loopback port, driven over HTTP by ``ServerLLM``."""
    from agentkit.serving import ServerLLM
    from agentkit.serving.app import running

    with engine() as model, running(model) as url:
        yield ServerLLM(url)


@contextmanager
def served_scripted() -> Iterator[LLM]:
    """The scripted model behind ``agentkit serve``: constraints pass through the server's own dialect."""
    from agentkit.serving import ServerLLM
    from agentkit.serving.app import running

    with running(ScriptedLLM(babble)) as url:
        yield ServerLLM(url)


ALL_KINDS: tuple[ConstraintKind, ...] = ("regex", "json_schema", "lark")
BACKENDS = [
    Backend("scripted", scripted, samples=False, constraints=ALL_KINDS),
    Backend("slow-scripted", slow_scripted, samples=False, constraints=ALL_KINDS),
    Backend("engine", engine, constraints=ALL_KINDS),
    Backend("served-engine", served_engine, constraints=ALL_KINDS),
    Backend("served-scripted", served_scripted, samples=False, constraints=ALL_KINDS),
]


@pytest.fixture(scope="module", params=BACKENDS, ids=lambda backend: backend.name)
def backend(request) -> Backend:
    return request.param


@pytest.fixture(scope="module")
def llm(backend: Backend) -> Iterator[LLM]:
    with backend.make() as model:
        yield model


# ------------------------------------------------------------------------------------------------ helpers
PROMPTS = [  # mixed lengths, so batched rows start and finish at different steps
    "The quick brown fox",
    "ab",
    "Question: what is six times seven?\nAnswer:",
    "x" * 70,
    "the answer is",
]
GREEDY = GenerationConfig(max_new_tokens=24)


def checked(completion: Completion, config: GenerationConfig) -> Completion:
    """What holds for every completion."""
    assert completion.finish_reason in ("stop", "length")
    assert not any(stop in completion.text for stop in config.stop)
    assert completion.prompt_tokens >= 1
    assert 0 <= completion.completion_tokens <= config.max_new_tokens
    if completion.finish_reason == "length":
        assert completion.completion_tokens == config.max_new_tokens
    return completion


def generate(llm: LLM, prompt: str, config: GenerationConfig = GREEDY) -> Completion:
    (completion,) = llm.generate([prompt], config)
    return checked(completion, config)


def stops_in(text: str) -> list[str]:
    """Stop strings that occur in ``text``: one to four characters from several places in it, so that with a
    multi-character tokenizer some start or end inside a token and some span tokens."""
    spots = sorted({len(text) * k // 5 for k in range(1, 5)})
    return [text[i : i + n] for i in spots for n in (1, 4) if text[i : i + n]]


def with_stop(*stops: str, max_new_tokens: int = GREEDY.max_new_tokens) -> GenerationConfig:
    return GenerationConfig(max_new_tokens=max_new_tokens, stop=list(stops))


def sampled(seed: int | None) -> GenerationConfig:
    return GenerationConfig(max_new_tokens=12, do_sample=True, temperature=1.5, top_k=50, top_p=0.95, seed=seed)


# ------------------------------------------------------------------------------------------------ the contract
def test_one_completion_per_prompt_in_order(llm):
    alone = [generate(llm, p) for p in PROMPTS]
    assert len({c.text for c in alone}) == len(PROMPTS)  # distinct, so a mix-up would show
    assert llm.generate(PROMPTS, GREEDY) == alone
    assert llm.generate(PROMPTS[::-1], GREEDY) == alone[::-1]
    assert llm.generate([PROMPTS[1], PROMPTS[1]], GREEDY) == [alone[1], alone[1]]
    assert llm.generate([], GREEDY) == []


def test_a_stop_string_is_cut_exactly_wherever_it_falls(llm):
    for prompt in PROMPTS[:3]:
        free = generate(llm, prompt).text
        assert len(free) >= 8, f"{prompt!r}: too little text to take stop strings from"
        for stop in stops_in(free):
            got = generate(llm, prompt, with_stop(stop))
            assert (got.text, got.finish_reason) == (free[: free.find(stop)], "stop"), f"stop {stop!r}"


def test_the_earliest_of_several_stops_wins(llm):
    free = generate(llm, PROMPTS[0]).text
    late, early = free[len(free) // 2 :][:3], free[len(free) // 4 :][:2]
    cut = min(free.find(late), free.find(early))
    for stops in ([late, early], [early, late], [late, "\x00never", early]):
        got = generate(llm, PROMPTS[0], with_stop(*stops))
        assert (got.text, got.finish_reason) == (free[:cut], "stop")


def test_a_stop_at_the_very_start_gives_empty_text(llm):
    free = generate(llm, PROMPTS[2]).text
    got = generate(llm, PROMPTS[2], with_stop(free[:3]))
    assert (got.text, got.finish_reason) == ("", "stop")
    pieces, streamed = drain(llm.stream(PROMPTS[2], with_stop(free[:3])))
    assert pieces == [] and streamed == got


def test_a_stop_that_never_occurs_changes_nothing(llm):
    free = generate(llm, PROMPTS[0])
    assert generate(llm, PROMPTS[0], with_stop("\x00never", free.text[-2:] + "\x00")) == free


def test_finish_reason_is_length_when_max_new_tokens_cuts_the_text(llm):
    for prompt in PROMPTS:
        whole = generate(llm, prompt)
        if whole.completion_tokens <= 3:
            continue  # the text ended by itself within 3 tokens: nothing to cut
        cut = generate(llm, prompt, GenerationConfig(max_new_tokens=3))
        assert (cut.finish_reason, cut.completion_tokens) == ("length", 3)
        assert whole.text.startswith(cut.text.rstrip("\ufffd"))  # a cut text may end in half a character
        return
    pytest.fail("no prompt generated more than 3 tokens")


def test_a_stop_on_the_last_allowed_token_is_a_stop(llm):
    free = generate(llm, PROMPTS[0]).text
    stop = free[len(free) // 2 :][:2]
    stopped = generate(llm, PROMPTS[0], with_stop(stop))
    tight = generate(llm, PROMPTS[0], with_stop(stop, max_new_tokens=max(1, stopped.completion_tokens)))
    assert tight == stopped and tight.finish_reason == "stop"


@pytest.mark.parametrize("case", ["free", "stop", "held back", "length"])
def test_stream_pieces_join_to_the_text_and_the_stream_returns_the_completion(llm, case):
    free = generate(llm, PROMPTS[2]).text
    unfinished = free[len(free) // 3 :][:2] + "\x00never"  # its start occurs: held back, then shown after all
    assert unfinished not in free
    config = {
        "free": GREEDY,
        "stop": with_stop(free[len(free) // 2 :][:3]),
        "held back": with_stop(unfinished),
        "length": GenerationConfig(max_new_tokens=3),
    }[case]
    expected = generate(llm, PROMPTS[2], config)
    pieces, streamed = drain(llm.stream(PROMPTS[2], config))
    assert isinstance(streamed, Completion), "a stream must return its Completion"
    assert streamed == expected  # text, finish_reason and token counts
    assert "".join(pieces) == expected.text
    assert all(pieces), "every piece is some text"


def test_a_stream_closed_early_leaves_the_model_as_it_was(llm):
    expected = generate(llm, PROMPTS[0])
    stream = llm.stream(PROMPTS[0], GREEDY)
    next(stream)
    stream.close()  # the consumer stopped (Ctrl-C)
    assert generate(llm, PROMPTS[0]) == expected
    assert drain(llm.stream(PROMPTS[0], GREEDY))[1] == expected


def test_token_counts(llm):
    short, longer = generate(llm, PROMPTS[0]), generate(llm, PROMPTS[0] + " and a few more words after it")
    assert 1 <= short.prompt_tokens < longer.prompt_tokens
    assert short.completion_tokens >= 1 or short.text == ""
    for n in (1, 2, 5):
        generate(llm, PROMPTS[3], GenerationConfig(max_new_tokens=n))  # checked: completion_tokens <= n


def test_greedy_decoding_ignores_the_seed(llm):
    for prompt in PROMPTS[:3]:
        plain = generate(llm, prompt)
        assert generate(llm, prompt, GREEDY.model_copy(update={"seed": 1})) == plain
        assert generate(llm, prompt, GREEDY.model_copy(update={"seed": 2})) == plain


def test_the_same_seed_draws_the_same_sample(llm, backend):
    if not backend.seeds:
        pytest.skip(f"{backend.name} takes no seed")
    config = sampled(seed=7)
    first = generate(llm, PROMPTS[0], config)
    assert generate(llm, PROMPTS[0], config) == first
    assert drain(llm.stream(PROMPTS[0], config))[1] == first  # a stream draws it too ...
    assert run_session(llm, [("k", PROMPTS[0], config)]) == [("k", first)]  # ... and a session


def test_different_seeds_draw_different_samples(llm, backend):
    if not backend.samples:
        pytest.skip(f"{backend.name} does not sample")
    texts = {generate(llm, PROMPTS[0], sampled(seed)).text for seed in range(4)}
    assert len(texts) > 1


def test_a_session_serves_each_request_once_as_generate_would(llm):
    free = generate(llm, PROMPTS[0]).text
    configs = [GREEDY, with_stop(free[len(free) // 2 :][:2], max_new_tokens=16), GenerationConfig(max_new_tokens=2)]
    requests = [(f"{i}/{j}", p, c) for i, p in enumerate(PROMPTS) for j, c in enumerate(configs)]
    done = run_session(llm, requests, max_batch_size=4)
    keys = [key for key, _ in done]
    assert sorted(keys) == sorted(key for key, _, _ in requests)  # each key exactly once
    config = {key: c for key, _, c in requests}
    assert {key: checked(c, config[key]) for key, c in done} == {key: generate(llm, p, c) for key, p, c in requests}


def run_session(llm: LLM, requests: list[tuple[str, str, GenerationConfig]], max_batch_size: int = 32) -> list:
    """Feed ``requests`` to a session as it has room, step it until all are done; the (key, Completion) pairs."""
    session = llm.session(max_batch_size)
    queue, done = list(requests), []
    for _ in range(10_000):
        while queue and session.free_slots > 0:
            session.add(*queue.pop(0))
        assert session.pending <= max_batch_size
        if not session.pending:
            break
        done += session.step()
    session.close()
    assert not queue, "the session stopped taking requests"
    return done


def test_render_leaves_text_as_it_is(llm):
    for prompt in PROMPTS:
        assert llm.render(prompt) == prompt
    chat = Chat(messages=(Message(role="system", content="Be brief."), Message(role="user", content="6 times 7?")))
    try:
        rendered = llm.render(chat)
    except UsageError as exc:  # a model without a chat template says so
        assert llm.chat_template is None and "chat template" in str(exc)
    else:  # the text the model sees (or, from a server, the messages it is sent) shows every message
        assert "Be brief." in rendered and "6 times 7?" in rendered


# ------------------------------------------------------------------------------------------------ through the runtime
def test_a_streamed_episode_receives_the_completion_generate_gives(llm):
    config = GenerationConfig(max_new_tokens=3)
    expected = generate(llm, PROMPTS[0], config)
    received, pieces = [], []

    def episode():
        completion = yield Generate(PROMPTS[0], config)
        received.append(completion)
        return Result(method="t", question="q")

    run_episode(llm, episode(), on_token=pieces.append)
    assert received == [expected] and expected.finish_reason == "length"
    assert "".join(pieces) == expected.text


def test_a_streamed_run_cut_off_by_the_token_limit_reports_length(llm):
    # The runtime once invented finish_reason="stop" for a stream, so this said "no_answer".
    cot = CoT(llm, shots=0, answer="text", config=GenerationConfig(max_new_tokens=3))
    question = "What is the capital of France?"
    quiet = cot(question)
    streamed = cot(question, on_token=lambda piece: None)
    assert (streamed.failure, quiet.failure) == ("length", "length")
    assert streamed.completions == quiet.completions
    assert (streamed.prompt_tokens, streamed.completion_tokens) == (quiet.prompt_tokens, quiet.completion_tokens)


# ------------------------------------------------------------------------------------------------ constraints
_OBJECT = {
    "type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"type": "string"}},
    "required": ["a", "b"],
    "additionalProperties": False,
}
_WORDS_LARK = 'start: (WORD | COMMA)*\nWORD: / [a-z]+/\nCOMMA: ","\n'
CONSTRAINTS = {
    "regex": Constraint(regex=r"( [a-z]+|,)*"),
    "regex after": Constraint(regex=r"( [a-z]+|,)*", after=" Thought"),
    "json_schema": Constraint(json_schema=_OBJECT),
    "json_schema after": Constraint(json_schema=_OBJECT, after="Answer: "),
    "lark": Constraint(lark=_WORDS_LARK),
    "lark after": Constraint(lark=_WORDS_LARK, after=" Thought"),
}
JSON_PROMPTS = [
    "Reply in JSON:",
    "Question: what is six times seven? Reply in JSON:",
    "Think first, then give the Answer in JSON:",
]  # babble replies to these in JSON


def constrained(name: str, backend: Backend) -> tuple[GenerationConfig, list[str]]:
    """The config that carries constraint ``name``, and prompts to try it on (a scripted reply must conform)."""
    constraint = CONSTRAINTS[name]
    if constraint.kind not in backend.constraints:
        pytest.skip(f"{backend.name} does not honour {constraint.kind} constraints")
    if constraint.kind == "json_schema":
        return GenerationConfig(max_new_tokens=24, constraint=constraint), JSON_PROMPTS[: 3 if constraint.after else 2]
    prompts = [*PROMPTS[:3], JSON_PROMPTS[-1]]
    return GenerationConfig(max_new_tokens=24, constraint=constraint), prompts


def conforming(completion: Completion, config: GenerationConfig) -> Completion:
    """A constrained completion matches its constraint, or was cut by max_new_tokens while it still could."""
    checked(completion, config)
    assert config.constraint is not None
    if completion.finish_reason == "length":  # a cut text may end in half a character
        assert grammar.is_prefix(config.constraint, completion.text.rstrip("\ufffd")), completion.text
    else:
        assert grammar.matches(config.constraint, completion.text), completion.text
    return completion


@pytest.mark.parametrize("name", CONSTRAINTS)
def test_a_constrained_completion_matches_or_is_cut_by_length(llm, backend, name):
    config, prompts = constrained(name, backend)
    alone = [conforming(c, config) for p in prompts for c in llm.generate([p], config)]
    assert llm.generate(prompts, config) == alone  # batched rows each keep their own matcher
    pieces, streamed = drain(llm.stream(prompts[-1], config))
    assert streamed == alone[-1] and "".join(pieces) == streamed.text
    short = GenerationConfig(max_new_tokens=2, constraint=config.constraint)
    for prompt in prompts:
        conforming(generate(llm, prompt, short), short)


@pytest.mark.parametrize("name", ["regex after", "json_schema", "lark"])
def test_a_stop_string_keeps_its_exact_place_under_a_constraint(llm, backend, name):
    config, prompts = constrained(name, backend)
    cut = 0
    for prompt in prompts:
        free = generate(llm, prompt, config).text
        if len(free) < 6:
            continue
        stop = free[len(free) // 2 :][:2]
        got = generate(llm, prompt, config.model_copy(update={"stop": [stop]}))
        assert (got.text, got.finish_reason) == (free[: free.find(stop)], "stop"), f"stop {stop!r}"
        cut += 1
    if not cut:
        pytest.skip(f"{backend.name}: no constrained text long enough to take a stop string from")


def test_a_constraint_kind_the_backend_cannot_honour_is_refused_at_once_in_one_line(llm, backend):
    refused = [c for c in CONSTRAINTS.values() if c.kind not in backend.constraints]
    if not refused:
        pytest.skip(f"{backend.name} honours every constraint kind")
    for constraint in refused:
        config = GenerationConfig(max_new_tokens=4, constraint=constraint)
        for attempt in (
            lambda: llm.generate([PROMPTS[0]], config),
            lambda: next(llm.stream(PROMPTS[0], config)),
            lambda: run_session(llm, [("k", PROMPTS[0], config)]),
        ):
            with pytest.raises(UsageError) as refusal:
                attempt()
            message = str(refusal.value)
            assert "\n" not in message and constraint.kind in message and llm.name in message, message
    assert generate(llm, PROMPTS[0]).finish_reason in ("stop", "length")  # and the backend still serves
