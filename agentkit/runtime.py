"""Episodes, and the loop that runs many of them side by side on one model.

An *episode* is a generator: the strategy's logic written straight down, with a ``yield`` wherever it needs
something from outside.

- ``yield Generate(prompt, config)`` asks the model (text or a ``Chat``) and receives a ``Completion``;
- ``yield Call(fn, *args)`` runs a tool (a search, a sandboxed program) on a worker thread and receives its
  return value; an exception it raises is thrown back into the episode;
- ``yield Event(kind, text)`` reports progress to a live view and receives ``None``;
- ``yield [request, ...]`` runs several of the above at once and receives a list of their results (if one of
  its tools fails, that exception is thrown instead and the other answers are dropped).

The episode's ``return`` value is its ``Result``. Because episodes only *ask*, one runner can drive hundreds
of them together: whenever episodes wait on the model, their prompts go to the engine as one batch, whatever
step each is at, and a slow tool call holds up only its own episode. ``run_episode`` drives a single episode
through the same loop, streaming the model's text piece by piece when asked to.

Deliberately not here: retries, caching or timeouts of tools (tools own those), and any model-specific code.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from agentkit.llm import LLM, BatchSession, GenerationConfig, Prompt, StreamingSession
from agentkit.result import Result


@dataclass(frozen=True)
class Generate:
    """Ask the model to continue ``prompt``."""

    prompt: Prompt
    config: GenerationConfig


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


def _timed(episode: Episode) -> Episode:
    """Wrap an episode so its Result (which it must return) carries the wall time from first step to end."""
    start = time.perf_counter()
    result = yield from episode
    if not isinstance(result, Result):
        raise TypeError(f"an episode returned {type(result).__name__}; episodes must return a Result")
    if not result.duration:
        result.duration = time.perf_counter() - start
    return result


def run_episode(
    llm: LLM,
    episode: Episode,
    *,
    on_event: EventHandler | None = None,
    on_token: Callable[[str], None] | None = None,
) -> Result:
    """Run one episode to the end. With ``on_token``, model output is streamed piece by piece."""
    session = llm.session() if on_token is None else StreamingSession(llm, on_token)
    events = None if on_event is None else lambda _index, event: on_event(event)
    return _drive(session, [episode], max_active=1, tool_workers=4, on_result=None, on_event=events)[0]


def run_episodes(
    llm: LLM,
    episodes: Iterable[Episode],
    *,
    batch_size: int = 32,
    max_active: int | None = None,
    tool_workers: int = 4,
    on_result: Callable[[int, Result], None] | None = None,
    on_event: Callable[[int, Event], None] | None = None,
) -> list[Result]:
    """Run many episodes side by side and return their Results in input order.

    Episodes are pulled from ``episodes`` lazily, keeping up to ``max_active`` alive (default twice the batch
    size, so the engine always has waiting rows to fill a slot as soon as one frees up). ``on_result(index,
    result)`` is called as each episode finishes, in finishing order: the harness writes its record there.
    An exception raised by an episode (a bug, not a model mistake) stops the run and propagates; results
    already handed to ``on_result`` stay handed.
    """
    return _drive(
        llm.session(batch_size),
        episodes,
        max_active=max_active or 2 * batch_size,
        tool_workers=tool_workers,
        on_result=on_result,
        on_event=on_event,
    )


class _Slot:
    """One running episode: what it asked for last and the answers that have come back so far."""

    __slots__ = ("index", "episode", "turn", "requests", "answers", "waiting", "is_list")

    def __init__(self, index: int, episode: Episode):
        self.index = index
        self.episode = _timed(episode)
        self.turn = 0  # counts the episode's requests; an answer to an earlier turn is stale
        self.requests: list[Request] = []
        self.answers: list[Any] = []
        self.waiting = 0
        self.is_list = False

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


def _drive(
    session: BatchSession,
    episodes: Iterable[Episode],
    *,
    max_active: int,
    tool_workers: int,
    on_result: Callable[[int, Result], None] | None,
    on_event: Callable[[int, Event], None] | None,
) -> list[Result]:
    """The one loop: keep up to ``max_active`` episodes alive, their prompts in ``session``, their tools on a pool."""
    source: Iterator[tuple[int, Episode]] = iter(enumerate(episodes))
    results: dict[int, Result] = {}
    slots: dict[int, _Slot] = {}
    model_queue: deque[tuple[tuple[int, int, int], Generate]] = deque()  # waiting for a free engine slot
    futures: dict[Future, tuple[int, int, int]] = {}  # a key is (episode, turn, position in the request)
    pool = ThreadPoolExecutor(max_workers=tool_workers, thread_name_prefix="agentkit-tool")

    def resume(slot: _Slot, value: Any = None, error: Exception | None = None) -> None:
        """Resume the episode and file what it asks for next; events are answered at once."""
        while True:
            result = slot.resume(value, error)
            if result is not None:
                del slots[slot.index]
                results[slot.index] = result
                if on_result is not None:
                    on_result(slot.index, result)
                return
            for position, request in enumerate(slot.requests):
                key = (slot.index, slot.turn, position)
                if isinstance(request, Generate):
                    model_queue.append((key, request))
                elif isinstance(request, Call):
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
            return  # the episode stopped waiting for this (another tool of the same request failed)
        if error is not None:
            resume(slot, error=error)  # a failing tool is thrown into the episode that asked
        elif slot.answer(position, value):
            resume(slot, slot.reply)

    try:
        while True:
            while len(slots) < max_active and (item := next(source, None)) is not None:
                slot = slots[item[0]] = _Slot(*item)
                resume(slot)
            if not slots:
                break
            while model_queue and session.free_slots > 0:  # hand waiting prompts to the engine while it has room
                key, gen = model_queue.popleft()
                session.add(key, gen.prompt, gen.config)
            if session.pending:
                for key, completion in session.step():
                    deliver(key, completion)
            elif futures:
                wait(futures, return_when=FIRST_COMPLETED)  # only tools are running: wait for the first
            for future in [f for f in futures if f.done()]:
                key = futures.pop(future)
                error = future.exception()
                if error is None:
                    deliver(key, future.result())
                elif isinstance(error, Exception):
                    deliver(key, error=error)
                else:
                    raise error  # SystemExit and the like are not a tool's answer
            if slots and not (session.pending or futures or model_queue):
                raise RuntimeError("episodes are waiting but nothing is running: this is a bug in agentkit")
    finally:
        session.close()
        pool.shutdown(wait=False, cancel_futures=True)
    return [results[i] for i in range(len(results))]


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
