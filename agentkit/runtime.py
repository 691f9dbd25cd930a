"""Episodes, and the loop that runs many of them side by side on one model.

An *episode* is a generator: the strategy's logic written straight down, with a ``yield`` wherever it needs
something from outside.

- ``yield Generate(prompt, config)`` asks the model (text or a ``Chat``) and receives a ``Completion``; a ``Chat``
  with ``tools`` goes to a model that writes its calls as text through ``agentkit.toolcalls`` (its template
  renders the tools, the calls are read back into ``Completion.tool_calls``), so it batches like any text prompt;
- ``yield Call(fn, *args)`` runs a tool (a search, a sandboxed program) on a worker thread and receives its
  return value; an exception it raises is thrown back into the episode;
- ``yield Event(kind, text)`` reports progress to a live view and receives ``None``;
- ``yield [request, ...]`` runs several of the above at once and receives a list of their results (if one of
  its tools fails, that exception is thrown instead and the other answers are dropped).

The episode's ``return`` value is its ``Result``. Because episodes only *ask*, one runner can drive hundreds
of them together: whenever episodes wait on the model, their prompts go to the engine as one batch, whatever
step each is at, and a slow tool call holds up only its own episode. ``run_episode`` drives a single episode
through the same loop, streaming the model's text piece by piece when asked to.

Every request passes through the loop, so the loop is where an episode is measured and held to account:

- ``budget=Budget(...)`` limits each episode's input and output tokens, model calls, tool calls and wall-clock
  seconds (the limits of Inspect and PydanticAI). An episode that would go over one is closed and ends as a
  recorded failure naming the budget (``failure="budget_model_calls"``...), never as an exception;
- ``cache=`` (an ``agentkit.cache.CallCache``) answers a greedy or seeded call it has seen from disk: the
  request never reaches the session, and a miss is stored when its completion arrives;
- ``trace=`` (see ``agentkit.tracing``) records an OpenTelemetry span per episode, per model call (from the
  moment the episode asks to its last token, in whatever batch it ran) and per tool call, each with an explicit
  parent, never the thread's current span;
- ``usage=Usage()`` adds up the run's calls and tokens; each Result carries its own ``model_calls`` and
  ``tool_calls``.

Deliberately not here: retries or timeouts of tools (tools own those), cancelling a model call already in a
batch when its episode stops (its answer is dropped), and any model-specific code.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from agentkit import toolcalls
from agentkit.llm import LLM, BatchSession, Chat, Completion, GenerationConfig, Prompt, StreamingSession
from agentkit.result import Result

if TYPE_CHECKING:
    from agentkit.cache import CallCache
    from agentkit.tracing import Tracing


@dataclass(frozen=True)
class Generate:
    """Ask the model to continue ``prompt``.

    A ``Chat`` with ``tools`` is a tool-calling prompt: for a model without ``native_tools`` the loop sends it as
    ``agentkit.toolcalls.lower`` writes it (``tool_format``: the call format by name, None: the one the chat
    template shows; ``constrain_calls``: with the call constraint) and reads the calls with ``lift``.
    """

    prompt: Prompt
    config: GenerationConfig
    tool_format: str | None = None
    constrain_calls: bool = True


@dataclass(frozen=True)
class Call:
    """Run ``fn(*args, **kwargs)`` off the model loop."""

    fn: Callable[..., Any]
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)

    def __init__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any):
        object.__setattr__(self, "fn", fn)
        object.__setattr__(self, "args", args)
        object.__setattr__(self, "kwargs", kwargs)


@dataclass(frozen=True)
class Event:
    """Progress for a live view: ``kind`` is e.g. thought, action, observation, program, execution, answer."""

    kind: str
    text: str = ""
    data: dict = field(default_factory=dict)


Request = Generate | Call | Event
Episode = Generator[Request | list[Request], Any, Result]
EventHandler = Callable[[Event], None]


class Budget(BaseModel):
    """Limits on one episode; ``None`` is no limit. Tokens are the model's own counts, summed over the episode.

    A model or tool call that would go over its limit is not made; token limits are checked as each completion
    arrives (the call that crosses one has been paid for, as in PydanticAI's ``UsageLimits``); ``seconds`` is
    wall-clock time from the episode's first step, checked while it waits too.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_tokens: int | None = Field(None, ge=1, description="prompt tokens over all the episode's model calls")
    output_tokens: int | None = Field(None, ge=1, description="generated tokens over all its model calls")
    model_calls: int | None = Field(None, ge=1, description="model calls (each sample of a list counts)")
    tool_calls: int | None = Field(None, ge=1, description="tool calls, sandboxed programs included")
    seconds: float | None = Field(None, gt=0, description="wall-clock seconds from the episode's first step")

    @property
    def limited(self) -> bool:
        return any(v is not None for v in self.model_dump().values())


@dataclass
class Usage:
    """Calls and tokens: of one episode while it runs, or added up over a run (``run_episodes(usage=...)``)."""

    episodes: int = 0
    model_calls: int = 0
    tool_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_hits: int = 0  # model calls answered by the cache (counted in model_calls too)

    def add(self, other: Usage) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(frozen=True)
class EpisodeInfo:
    """What the caller knows about an episode: ``agent`` (the method) names its span and a budget failure's
    Result, ``question`` goes into that Result, ``parent`` is the trace context its span joins."""

    agent: str = ""
    question: str = ""
    parent: Any = None


def _timed(episode: Episode) -> Episode:
    """Wrap an episode so its Result (which it must return) carries the wall time from first step to end."""
    start = time.perf_counter()
    result = yield from episode
    if not isinstance(result, Result):
        raise TypeError(f"an episode returned {type(result).__name__}; episodes must return a Result")
    if not result.duration:
        result.duration = time.perf_counter() - start
    return result


@dataclass(frozen=True)
class _Options:
    """The loop's optional duties (see the module docstring); the defaults cost nothing."""

    budget: Budget | None = None  # limits that end an episode as a recorded failure
    cache: CallCache | None = None  # completions answered without the model
    # what the loop reports
    tracing: Tracing | None = None
    usage: Usage | None = None
    info: Callable[[int], EpisodeInfo] | None = None
    on_cached: Callable[[str], None] | None = None  # streaming: a cached completion's text, in one piece

    @classmethod
    def of(
        cls,
        budget: Budget | None,
        cache: CallCache | None,
        trace: Any,
        usage: Usage | None,
        info: Callable[[int], EpisodeInfo] | None,
        on_cached: Callable[[str], None] | None = None,
    ) -> _Options:
        from agentkit.tracing import tracing_for  # imports OpenTelemetry only when tracing is on

        return cls(
            budget if budget is not None and budget.limited else None, cache, tracing_for(trace), usage, info, on_cached
        )


def run_episode(
    llm: LLM,
    episode: Episode,
    *,
    on_event: EventHandler | None = None,
    on_token: Callable[[str], None] | None = None,
    budget: Budget | None = None,
    cache: CallCache | None = None,
    trace: Any = None,
    usage: Usage | None = None,
    info: EpisodeInfo | None = None,
) -> Result:
    """Run one episode to the end. With ``on_token``, model output is streamed piece by piece.

    ``budget``, ``cache``, ``trace`` and ``usage`` are those of ``run_episodes``; ``info`` describes the episode.
    """
    session = llm.session() if on_token is None else StreamingSession(llm, on_token)
    events = None if on_event is None else lambda _index, event: on_event(event)
    options = _Options.of(budget, cache, trace, usage, None if info is None else lambda _index: info, on_token)
    return _drive(
        llm, session, [episode], max_active=1, tool_workers=4, on_result=None, on_event=events, options=options
    )[0]


def run_episodes(
    llm: LLM,
    episodes: Iterable[Episode],
    *,
    batch_size: int = 32,
    max_active: int | None = None,
    tool_workers: int = 4,
    on_result: Callable[[int, Result], None] | None = None,
    on_event: Callable[[int, Event], None] | None = None,
    budget: Budget | None = None,
    cache: CallCache | None = None,
    trace: Any = None,
    usage: Usage | None = None,
    info: Callable[[int], EpisodeInfo] | None = None,
) -> list[Result]:
    """Run many episodes side by side and return their Results in input order.

    Episodes are pulled from ``episodes`` lazily, keeping up to ``max_active`` alive (default twice the batch
    size, so the engine always has waiting rows to fill a slot as soon as one frees up). ``on_result(index,
    result)`` is called as each episode finishes, in finishing order: the harness writes its record there.
    An exception raised by an episode (a bug, not a model mistake) stops the run and propagates; results
    already handed to ``on_result`` stay handed.

    ``budget`` limits every episode; ``cache`` answers repeated greedy and seeded calls; ``trace`` (``True``, an
    OTLP endpoint URL, a ``TracerProvider`` or an ``agentkit.tracing.Tracing``) records spans; ``usage`` adds up
    the run's calls and tokens; ``info(index)`` describes an episode as it starts (see ``EpisodeInfo``).
    """
    return _drive(
        llm,
        llm.session(batch_size),
        episodes,
        max_active=max_active or 2 * batch_size,
        tool_workers=tool_workers,
        on_result=on_result,
        on_event=on_event,
        options=_Options.of(budget, cache, trace, usage, info),
    )


class _Slot:
    """One running episode: what it asked for last and the answers that have come back so far."""

    __slots__ = (
        "index",
        "episode",
        "turn",
        "requests",
        "answers",
        "waiting",
        "is_list",
        "usage",
        "started",
        "info",
        "span",
        "first_prompt",
        "texts",
    )

    def __init__(self, index: int, episode: Episode):
        self.index = index
        self.episode = _timed(episode)
        self.turn = 0  # counts the episode's requests; an answer to an earlier turn is stale
        self.requests: list[Request] = []
        self.answers: list[Any] = []
        self.waiting = 0
        self.is_list = False
        self.usage = Usage(episodes=1)
        self.started = time.perf_counter()
        self.info: EpisodeInfo | None = None
        self.span: Any = None  # the episode's span when tracing
        self.first_prompt: Prompt | None = None
        self.texts: list[str] = []  # completions so far, for the Result of an episode a budget stops

    def resume(self, value: Any = None, error: Exception | None = None) -> Result | None:
        """Send ``value`` into the episode (or throw ``error`` into it) and take its next request.

        Returns the episode's Result when it ends instead.
        """
        try:
            request = self.episode.send(value) if error is None else self.episode.throw(error)
        except StopIteration as stop:
            return stop.value
        self.turn += 1
        self.is_list = isinstance(request, list)
        self.requests = request if self.is_list else [request]
        self.answers = [None] * len(self.requests)
        self.waiting = len(self.requests)
        return None

    def answer(self, position: int, value: Any) -> bool:
        """Record the answer to one request; True when the episode has everything it asked for."""
        self.answers[position] = value
        self.waiting -= 1
        return self.waiting == 0

    @property
    def reply(self) -> Any:
        return self.answers if self.is_list else self.answers[0]

    def took(self, completion: Completion) -> None:
        """Count a completion the episode received."""
        self.usage.input_tokens += completion.prompt_tokens
        self.usage.output_tokens += completion.completion_tokens
        self.texts.append(completion.text)

    def over(self, budget: Budget, now: float, asking: bool = False) -> tuple[str, str] | None:
        """(failure kind, detail) when the episode has gone over ``budget``, or, ``asking``, when the requests it
        has just made would take it over."""
        usage = self.usage
        calls = sum(isinstance(r, Generate) for r in self.requests) if asking else 0
        tools = sum(isinstance(r, Call) for r in self.requests) if asking else 0
        for name, used, what in (
            ("model_calls", usage.model_calls + calls, "model calls"),
            ("tool_calls", usage.tool_calls + tools, "tool calls"),
            ("input_tokens", usage.input_tokens, "input tokens"),
            ("output_tokens", usage.output_tokens, "output tokens"),
        ):
            limit = getattr(budget, name)
            if limit is not None and used > limit:
                return f"budget_{name}", f"the episode needed {used} {what}; its budget is {limit}"
        if budget.seconds is not None and now - self.started > budget.seconds:
            return "budget_seconds", f"the episode ran {now - self.started:.1f} s; its budget is {budget.seconds:g} s"
        return None

    def stopped(self, failure: str, error: str, llm: LLM) -> Result:
        """Close the episode and make the Result of its stopping at a budget."""
        self.episode.close()
        info = self.info or EpisodeInfo()
        return Result(
            method=info.agent,
            question=info.question,
            failure=failure,
            error=error,
            prompt=llm.render(self.first_prompt) if self.first_prompt is not None else "",
            completions=self.texts,
            prompt_tokens=self.usage.input_tokens,
            completion_tokens=self.usage.output_tokens,
            duration=time.perf_counter() - self.started,
        )


def _drive(
    llm: LLM,
    session: BatchSession,
    episodes: Iterable[Episode],
    *,
    max_active: int,
    tool_workers: int,
    on_result: Callable[[int, Result], None] | None,
    on_event: Callable[[int, Event], None] | None,
    options: _Options,
) -> list[Result]:
    """The one loop: keep up to ``max_active`` episodes alive, their prompts in ``session``, their tools on a pool."""
    source: Iterator[tuple[int, Episode]] = iter(enumerate(episodes))
    results: dict[int, Result] = {}
    slots: dict[int, _Slot] = {}
    model_queue: deque[tuple[tuple[int, int, int], Generate]] = deque()  # waiting for a free engine slot
    futures: dict[Future, tuple[int, int, int]] = {}  # a key is (episode, turn, position in the request)
    pool = ThreadPoolExecutor(max_workers=tool_workers, thread_name_prefix="agentkit-tool")
    budget, cache, tracing = options.budget, options.cache, options.tracing
    cached: deque[tuple[tuple[int, int, int], Completion]] = deque()  # cache hits, answered by the loop
    to_store: dict[tuple[int, int, int], str] = {}  # a request's cache key, stored when its completion arrives
    spans: dict[tuple[int, int, int], Any] = {}  # a request's open span when tracing
    unstarted: set[tuple[int, int, int]] = set()  # handed to the session, no token yet (first-token timing)
    first_token: dict[tuple[int, int, int], float] = {}
    timed_tokens = tracing is not None and getattr(session, "token_steps", False)
    headers = getattr(session, "trace_headers", None) if tracing is not None else None
    lifts: dict[tuple[int, int, int], Generate] = {}  # tool-calling chats sent as text, their calls read on return

    def finish(slot: _Slot, result: Result) -> None:
        del slots[slot.index]
        result.model_calls, result.tool_calls = slot.usage.model_calls, slot.usage.tool_calls
        if options.usage is not None:
            options.usage.add(slot.usage)
        if tracing is not None:
            tracing.episode_ended(slot.span, result, slot.usage)
        results[slot.index] = result
        if on_result is not None:
            on_result(slot.index, result)

    def resume(slot: _Slot, value: Any = None, error: Exception | None = None) -> None:
        """Resume the episode and file what it asks for next; events are answered at once."""
        while True:
            result = slot.resume(value, error)
            if result is not None:
                finish(slot, result)
                return
            if budget is not None and (over := slot.over(budget, time.perf_counter(), asking=True)) is not None:
                finish(slot, slot.stopped(*over, llm))
                return
            for position, request in enumerate(slot.requests):
                key = (slot.index, slot.turn, position)
                if isinstance(request, Generate):
                    slot.usage.model_calls += 1
                    if isinstance(request.prompt, Chat) and request.prompt.tools and not llm.native_tools:
                        lifts[key], request = request, _lowered(llm, request)
                    if slot.first_prompt is None:
                        slot.first_prompt = request.prompt
                    if tracing is not None:
                        spans[key] = tracing.model_started(slot.span, llm, request)
                    hit = None
                    if cache is not None:
                        cache_key = cache.key(llm, request.prompt, request.config)
                        if cache_key is not None and (hit := cache.get(cache_key)) is None:
                            to_store[key] = cache_key
                    if hit is not None:
                        slot.usage.cache_hits += 1
                        cached.append((key, hit))
                    else:
                        model_queue.append((key, request))
                elif isinstance(request, Call):
                    slot.usage.tool_calls += 1
                    if tracing is not None:
                        spans[key] = tracing.tool_started(slot.span, request)
                    futures[pool.submit(request.fn, *request.args, **request.kwargs)] = key
                elif isinstance(request, Event):
                    if on_event is not None:
                        on_event(slot.index, request)
                    slot.answer(position, None)
                else:
                    raise TypeError(f"an episode yielded {request!r}; expected Generate, Call, Event or a list")
            if slot.waiting:
                return
            value, error = slot.reply, None  # only events: resume at once

    def deliver(key: tuple[int, int, int], value: Any = None, error: Exception | None = None) -> None:
        index, turn, position = key
        slot = slots.get(index)
        if slot is None or slot.turn != turn:
            return  # the episode stopped waiting for this (another tool of the same request failed, a budget)
        if isinstance(value, Completion):
            slot.took(value)
            if budget is not None and (over := slot.over(budget, time.perf_counter())) is not None:
                finish(slot, slot.stopped(*over, llm))
                return
        if error is not None:
            resume(slot, error=error)  # a failing tool is thrown into the episode that asked
        elif slot.answer(position, value):
            resume(slot, slot.reply)

    def completed(key: tuple[int, int, int], completion: Completion, hit: bool = False) -> None:
        """A model call's answer: store it, close its span, hand it to the episode."""
        cache_key = to_store.pop(key, None)
        if cache_key is not None:
            cache.put(cache_key, completion)  # type: ignore[union-attr]
        if tracing is not None:
            slot, first = slots.get(key[0]), first_token.pop(key, None)
            if slot is None or slot.turn != key[1]:
                tracing.dropped(spans.pop(key))  # its episode no longer waits for it
            else:
                tracing.model_ended(spans.pop(key), completion, first, cached=hit)
        if hit and options.on_cached is not None and completion.text:
            options.on_cached(completion.text)
        asked = lifts.pop(key, None)
        if asked is not None:
            completion = toolcalls.lift(llm, asked.prompt, completion, format=asked.tool_format)  # type: ignore[arg-type]
        deliver(key, completion)

    try:
        while True:
            while len(slots) < max_active and (item := next(source, None)) is not None:
                slot = slots[item[0]] = _Slot(*item)
                if options.info is not None:
                    slot.info = options.info(item[0])
                if tracing is not None:
                    slot.span = tracing.episode_started(slot.info)
                resume(slot)
            while cached:
                completed(*cached.popleft(), hit=True)
            if not slots:
                break
            while model_queue and session.free_slots > 0:  # hand waiting prompts to the engine while it has room
                key, gen = model_queue.popleft()
                if key[0] not in slots:  # its episode was stopped by a budget
                    to_store.pop(key, None)
                    if tracing is not None:
                        tracing.dropped(spans.pop(key))
                    continue
                session.add(key, gen.prompt, gen.config)
                if tracing is not None:
                    if timed_tokens:
                        unstarted.add(key)
                    if headers is not None:  # a server joins the model call's trace (ServerSession sends it)
                        headers[key] = tracing.headers(spans[key])
            if session.pending:
                done = session.step()
                if timed_tokens:  # each step decodes one token per row: the first step after add gave the first
                    now = time.perf_counter()
                    first_token.update((key, now) for key in unstarted)
                    unstarted.clear()
                for key, completion in done:
                    completed(key, completion)
            elif futures:  # only tools are running: wait for the first (or the first episode's deadline)
                deadline = None
                if budget is not None and budget.seconds is not None:
                    deadline = max(0.0, min(s.started for s in slots.values()) + budget.seconds - time.perf_counter())
                wait(futures, timeout=deadline, return_when=FIRST_COMPLETED)
            for future in [f for f in futures if f.done()]:
                key = futures.pop(future)
                error = future.exception()
                if tracing is not None:
                    tracing.tool_ended(spans.pop(key), None if error is not None else future.result(), error)
                if error is None:
                    deliver(key, future.result())
                elif isinstance(error, Exception):
                    deliver(key, error=error)
                else:
                    raise error  # SystemExit and the like are not a tool's answer
            if budget is not None and budget.seconds is not None:  # episodes waiting on a slow call run out too
                now = time.perf_counter()
                for slot in list(slots.values()):
                    if (over := slot.over(budget, now)) is not None and over[0] == "budget_seconds":
                        finish(slot, slot.stopped(*over, llm))
            if slots and not (session.pending or futures or model_queue or cached):
                raise RuntimeError("episodes are waiting but nothing is running: this is a bug in agentkit")
    finally:
        session.close()
        pool.shutdown(wait=False, cancel_futures=True)
        if tracing is not None:
            for span in spans.values():  # calls of stopped episodes still in flight, or an error ended the run
                tracing.dropped(span)
            for slot in slots.values():
                tracing.dropped(slot.span)
    return [results[i] for i in range(len(results))]


def _lowered(llm: LLM, request: Generate) -> Generate:
    """A tool-calling chat as the text (and the call constraint) a model that writes its calls as text is sent."""
    text, config = toolcalls.lower(
        llm, request.prompt, request.config, format=request.tool_format, constrain=request.constrain_calls
    )
    return Generate(text, config)


def gather(parts: list[Generator[Any, Any, Any]]) -> Generator[list[Request], list[Any], list[Any]]:
    """Run several sub-episodes concurrently inside one episode; returns their return values in order.

    Each round, every unfinished part's next request goes out in one list, so k sampled programs of
    self-consistency are executed together rather than one after another. Parts yield single requests.
    """
    values: list[Any] = [None] * len(parts)
    pending: dict[int, Any] = {}
    for i, part in enumerate(parts):
        try:
            pending[i] = part.send(None)
        except StopIteration as stop:
            values[i] = stop.value
    while pending:
        order = list(pending)
        answers = yield [pending[i] for i in order]
        pending = {}
        for i, answer in zip(order, answers, strict=True):
            try:
                pending[i] = parts[i].send(answer)
            except StopIteration as stop:
                values[i] = stop.value
    return values
