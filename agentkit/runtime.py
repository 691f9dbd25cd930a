"""Episodes, and the loop that runs many of them side by side on one model.

An *episode* is a generator: the strategy's logic written straight down, with a ``yield`` wherever it needs
something from outside.

- ``yield Generate(prompt, config)`` asks the model (text or a ``Chat``) and receives a ``Completion``;
- ``yield Call(fn, *args)`` runs a tool (a search, a sandboxed program) on a worker thread and receives its
  return value; an exception it raises is thrown back into the episode;
- ``yield Event(kind, text)`` reports progress to a live view and receives ``None``;
- ``yield [request, ...]`` runs several of the above at once and receives a list of their results.

The episode's ``return`` value is its ``Result``. Because episodes only *ask*, one runner can drive hundreds
of them together: whenever episodes wait on the model, their prompts go to the engine as one batch, whatever
step each is at, and a slow tool call holds up only its own episode. ``run_episode`` drives one episode with
streaming instead.

Deliberately not here: retries, caching or timeouts of tools (tools own those), and any model-specific code.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from agentkit.llm import LLM, Completion, GenerationConfig, Prompt
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
    """Wrap an episode so its Result carries the wall time from first step to end."""
    start = time.perf_counter()
    result = yield from episode
    if isinstance(result, Result) and not result.duration:
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
    episode = _timed(episode)
    send: Any = None
    error: Exception | None = None
    while True:
        try:
            request = episode.send(send) if error is None else episode.throw(error)
        except StopIteration as stop:
            return _check_result(stop.value)
        error = None
        try:
            if isinstance(request, list):
                send = [_serve_one(llm, r, on_event, on_token) for r in request]
            else:
                send = _serve_one(llm, request, on_event, on_token)
        except Exception as exc:  # noqa: BLE001 - a failing tool is thrown back into the episode that asked
            if not _is_tool_request(request):
                raise
            send, error = None, exc


def _is_tool_request(request: Request | list[Request]) -> bool:
    requests = request if isinstance(request, list) else [request]
    return any(isinstance(r, Call) for r in requests)


def _serve_one(llm: LLM, request: Request, on_event, on_token) -> Any:
    if isinstance(request, Generate):
        if on_token is None:
            return llm.generate([request.prompt], request.config)[0]
        stream = llm.stream(request.prompt, request.config)
        pieces = []
        while True:
            try:
                piece = next(stream)
            except StopIteration as stop:
                final = stop.value  # a model's stream returns its Completion when it ends
                break
            pieces.append(piece)
            on_token(piece)
        if isinstance(final, Completion):
            return final
        text = "".join(pieces)
        return Completion(
            text=text,
            finish_reason="stop",
            prompt_tokens=llm.count_tokens(llm.render(request.prompt)),
            completion_tokens=llm.count_tokens(text),
        )
    if isinstance(request, Call):
        return request.fn(*request.args, **request.kwargs)
    if isinstance(request, Event):
        if on_event is not None:
            on_event(request)
        return None
    raise TypeError(f"an episode yielded {request!r}; expected Generate, Call, Event or a list of them")


def _check_result(value: Any) -> Result:
    if not isinstance(value, Result):
        raise TypeError(f"an episode returned {type(value).__name__}; episodes must return a Result")
    return value


class _Slot:
    """One running episode and what it is waiting for."""

    __slots__ = ("index", "episode", "waiting", "results", "is_list")

    def __init__(self, index: int, episode: Episode):
        self.index = index
        self.episode = episode
        self.waiting = 0  # outstanding requests
        self.results: list[Any] = []
        self.is_list = False


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
    max_active = max_active or 2 * batch_size
    source: Iterator[tuple[int, Episode]] = iter(enumerate(episodes))
    results: dict[int, Result] = {}
    slots: dict[int, _Slot] = {}
    model_queue: list[tuple[tuple[int, int], Generate]] = []  # waiting for a free engine slot
    futures: dict[Future, tuple[int, int]] = {}
    session = llm.session(batch_size)
    pool = ThreadPoolExecutor(max_workers=tool_workers, thread_name_prefix="agentkit-tool")
    exhausted = False

    def advance(slot: _Slot, value: Any) -> None:
        """Send ``value`` into the episode and file whatever it asks for next."""
        while True:
            try:
                request = slot.episode.send(value)
            except StopIteration as stop:
                result = _check_result(stop.value)
                del slots[slot.index]
                results[slot.index] = result
                if on_result is not None:
                    on_result(slot.index, result)
                return
            requests = request if isinstance(request, list) else [request]
            slot.is_list = isinstance(request, list)
            slot.results = [None] * len(requests)
            slot.waiting = 0
            for position, item in enumerate(requests):
                if isinstance(item, Event):
                    if on_event is not None:
                        on_event(slot.index, item)
                elif isinstance(item, Generate):
                    model_queue.append(((slot.index, position), item))
                    slot.waiting += 1
                elif isinstance(item, Call):
                    futures[pool.submit(item.fn, *item.args, **item.kwargs)] = (slot.index, position)
                    slot.waiting += 1
                else:
                    raise TypeError(f"an episode yielded {item!r}; expected Generate, Call, Event or a list")
            if slot.waiting:
                return
            value = slot.results if slot.is_list else None  # only events: resume at once

    def deliver(key: tuple[int, int], value: Any) -> None:
        slot = slots[key[0]]
        slot.results[key[1]] = value
        slot.waiting -= 1
        if slot.waiting == 0:
            advance(slot, slot.results if slot.is_list else slot.results[0])

    try:
        while True:
            while not exhausted and len(slots) < max_active:
                try:
                    index, episode = next(source)
                except StopIteration:
                    exhausted = True
                    break
                slot = slots[index] = _Slot(index, _timed(episode))
                advance(slot, None)
            if not slots and exhausted:
                break
            # Hand waiting prompts to the engine while it has room.
            while model_queue and session.free_slots > 0:
                key, gen = model_queue.pop(0)
                session.add(key, gen.prompt, gen.config)
            if session.pending:
                for key, completion in session.step():
                    deliver(key, completion)
            elif futures:
                # Only tools are running: wait for the first to finish.
                next(_as_completed_one(futures))
            for future in [f for f in futures if f.done()]:
                key = futures.pop(future)
                try:
                    value = future.result()
                except Exception as exc:  # noqa: BLE001 - thrown back into the episode that asked
                    slot = slots[key[0]]
                    slot.waiting = 0
                    _throw(slot, exc, advance)
                    continue
                deliver(key, value)
            if not session.pending and not futures and not model_queue and slots:
                raise RuntimeError("episodes are waiting but nothing is running: this is a bug in agentkit")
    finally:
        session.close()
        pool.shutdown(wait=False, cancel_futures=True)
    return [results[i] for i in range(len(results))]


def _as_completed_one(futures: dict[Future, Any]) -> Iterator[Future]:
    from concurrent.futures import FIRST_COMPLETED, wait

    done, _ = wait(list(futures), return_when=FIRST_COMPLETED)
    yield from itertools.islice(done, 1)


def _throw(slot: _Slot, exc: BaseException, advance: Callable[[_Slot, Any], None]) -> None:
    """Throw a tool's exception into the episode; if the episode handles it, carry on from its next request."""

    episode = slot.episode

    def rethrow() -> Episode:
        # A tiny trampoline: the first send(None) throws into the real episode, then delegates to it.
        try:
            request = episode.throw(exc)
        except StopIteration as stop:
            return stop.value
        value = yield request
        result = yield from _resume(episode, value)
        return result

    slot.episode = rethrow()
    advance(slot, None)


def _resume(episode: Episode, value: Any) -> Episode:
    while True:
        try:
            request = episode.send(value)
        except StopIteration as stop:
            return stop.value
        value = yield request


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
