"""The model interface every strategy, the harness and the REPL talk to.

A model is anything with ``generate(prompts, config) -> list[Completion]`` (batch first, one completion per
prompt, in order) and ``stream(prompt, config)`` (text pieces for one prompt, then the ``Completion`` as the
generator's return value). A prompt is text, or a ``Chat`` that the model renders with its chat template
(``LLM.render``; ``render_chat`` renders as transformers does). Every backend is held to the same contract by
``tests/test_model_contract.py``: exact stops, ``finish_reason``, token counts, seeds, sessions. Models may also
offer a ``session()``: a continuous-batching queue that episodes feed one request at a time and that hands back
each completion as soon as its row finishes. The base class provides a plain session on top of ``generate`` so
every model, the scripted one included, works with the episode runner.

``ScriptedLLM`` ships here, not only in tests: it replays replies and honours ``stop``, ``max_new_tokens`` and
constraints the way a real model does, so users can test their own agents without weights.

Not here: anything that imports torch. The transformers backend lives in ``agentkit.engine``.
"""

from __future__ import annotations

import functools
import json
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Hashable, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agentkit.errors import ConstraintRefused, ScriptError, UsageError

FinishReason = Literal["stop", "length"]


ConstraintKind = Literal["regex", "json_schema", "lark"]


class Constraint(BaseModel):
    """What a completion must match: exactly one of a regular expression, a JSON schema or a Lark grammar.

    The grammar syntax is llguidance's (https://github.com/guidance-ai/llguidance): ``regex`` in Rust ``regex``
    syntax (no lookarounds) matched against the whole constrained text, ``json_schema`` a JSON Schema object,
    ``lark`` a Lark grammar (llguidance's variant: ``%json {...}`` inlines a schema).

    ``after``: the completion is free text until it first contains this literal; the constraint applies to what
    follows it (a ReAct step thinks freely, then its ``Action N:`` line is constrained). A completion that ends
    (a stop string, end of sequence) before the literal appears is free text. Without ``after`` the constraint
    applies from the first generated token.

    A constrained completion matches the constraint (what follows ``after``) in full, or ends with
    ``finish_reason="length"`` when ``max_new_tokens`` cut it. A backend that cannot honour a constraint raises a
    ``UsageError`` naming itself and the constraint's kind; none ignores one.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    regex: str | None = Field(None, description="a regular expression the constrained text matches in full")
    json_schema: dict[str, Any] | None = Field(None, description="a JSON Schema the constrained text is JSON of")
    lark: str | None = Field(None, description="a Lark grammar (llguidance syntax) the constrained text parses by")
    after: str | None = Field(None, min_length=1, description="free text until this literal; constrained after it")

    @model_validator(mode="after")
    def _check_one(self) -> Constraint:
        given = [k for k in ("regex", "json_schema", "lark") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"a constraint takes exactly one of regex, json_schema, lark (given: {given or 'none'})")
        return self

    @property
    def kind(self) -> ConstraintKind:
        """Which of the three forms this constraint is."""
        return "regex" if self.regex is not None else "json_schema" if self.json_schema is not None else "lark"


def refuse_constraint(backend: str, constraint: Constraint | None) -> None:
    """Raise the one-line ``ConstraintRefused`` of a backend that cannot honour ``constraint`` (nothing if None)."""
    if constraint is not None:
        raise ConstraintRefused(
            f"{backend} cannot honour a {constraint.kind} constraint; drop the constraint (--constrain) or use a "
            "backend that supports it"
        )


class GenerationConfig(BaseModel):
    """How to decode. Greedy unless ``do_sample``; ``stop`` strings end a row exactly before they start."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_new_tokens: int = Field(256, ge=1, description="upper bound on generated tokens per row")
    do_sample: bool = Field(False, description="sample instead of greedy argmax")
    temperature: float = Field(1.0, gt=0, description="softmax temperature when sampling")
    top_k: int | None = Field(None, ge=1, description="keep only the k most likely tokens when sampling")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling mass, in (0, 1]")
    seed: int | None = Field(None, ge=0, description="makes sampling reproducible; greedy decoding ignores it")
    stop: list[str] = Field(default_factory=list, description="strings that end generation; never returned")
    constraint: Constraint | None = Field(None, description="what the completion must match (see Constraint)")

    @model_validator(mode="after")
    def _check_stop(self) -> GenerationConfig:
        if any(s == "" for s in self.stop):
            raise ValueError("stop: empty strings are not allowed (they would stop before the first token)")
        return self

    def key(self) -> str:
        """A hashable identity for grouping requests that can share one batch."""
        return self.model_dump_json()


class ToolCall(BaseModel):
    """One native tool call: the function's name and its arguments, a JSON object already parsed.

    ``id`` pairs the call with the ``tool`` message that answers it (OpenAI's ``tool_call_id``); a backend whose
    model writes no ids numbers the calls ``call_0``, ``call_1``, ... within a reply.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class Message(BaseModel):
    """One turn of a conversation.

    An assistant turn may carry ``tool_calls`` (its ``content`` is then what it said before them, often empty); a
    ``tool`` turn answers one call: its ``content`` is the tool's result, ``tool_call_id`` the call's id and
    ``name`` the tool's name (chat templates differ in which of the two they show).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Literal["system", "user", "assistant", "tool"]
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None

    def as_dict(self, *, json_arguments: bool = False) -> dict[str, Any]:
        """The message as chat templates and the OpenAI API take it: ``role`` and ``content``, and only the tool
        fields it uses. Calls are ``{"id", "type": "function", "function": {"name", "arguments"}}`` with the
        arguments an object (what Hugging Face chat templates read) or, ``json_arguments``, a JSON string (the
        OpenAI wire form)."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {
                        "name": call.name,
                        "arguments": json.dumps(call.arguments, ensure_ascii=False)
                        if json_arguments
                        else call.arguments,
                    },
                }
                for call in self.tool_calls
            ]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            out["name"] = self.name
        return out


# How a model may use the tools of a ``Chat``: ``auto`` (it decides), ``required`` (at least one call), ``none``
# (no call), or the name of the one function it must call.
ToolChoice = str


class Chat(BaseModel):
    """A prompt in chat form, for models with a chat template (instruct models).

    When the last message is the assistant's, the model *continues* that message (no end-of-turn after it):
    that is how ReAct extends one assistant turn across its steps. Otherwise the model starts a new assistant
    turn. A model turns a ``Chat`` into the text it sees with ``LLM.render``.

    ``tools`` makes it a tool-calling prompt: the reply's ``Completion.tool_calls`` holds the calls the model made
    (see ``agentkit.toolcalls`` for how a model without native calls is prompted and constrained to make them).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    messages: tuple[Message, ...] = Field(min_length=1)
    tools: tuple[dict[str, Any], ...] = Field(
        (), description="functions the model may call: OpenAI-style {'type': 'function', 'function': {...}} records"
    )
    tool_choice: ToolChoice = Field("auto", description="auto, required, none, or the name of a function to call")
    parallel_tool_calls: bool = Field(True, description="whether one reply may carry more than one call")

    @property
    def continues(self) -> bool:
        """True when the model continues the last (assistant) message instead of starting a new turn."""
        return self.messages[-1].role == "assistant"

    def extend(self, text: str) -> Chat:
        """This chat with ``text`` added to the assistant's reply: the last message if it is the assistant's,
        else a new assistant message (which the model then continues)."""
        if self.continues:
            last = self.messages[-1]
            messages = (*self.messages[:-1], last.model_copy(update={"content": last.content + text}))
        else:
            messages = (*self.messages, Message(role="assistant", content=text))
        return self.model_copy(update={"messages": messages})  # the tools stay

    def without_system(self) -> Chat:
        """The chat with its system message put at the head of the first user turn, for chat templates that
        have no system role (they raise an error on one)."""
        system = [m.content for m in self.messages if m.role == "system"]
        rest = [m for m in self.messages if m.role != "system"]
        if not system or not rest or rest[0].role != "user":
            return self
        first = Message(role="user", content="\n\n".join([*system, rest[0].content]))
        return self.model_copy(update={"messages": (first, *rest[1:])})


# What a model is asked to continue: plain text (sent as it is) or a conversation.
Prompt = str | Chat


def extend(prompt: Prompt, text: str) -> Prompt:
    """``prompt`` followed by ``text``: appended to plain text, added to the assistant's reply in a ``Chat``."""
    return prompt + text if isinstance(prompt, str) else prompt.extend(text)


class Completion(BaseModel):
    """One generated continuation.

    ``text`` ends right before the earliest stop string and never contains any part of it. ``finish_reason`` is
    ``"stop"`` when the text ended of its own accord (a stop string, or the model's end-of-sequence token) and
    ``"length"`` when ``max_new_tokens`` cut it off; then ``completion_tokens == max_new_tokens``. Token counts
    are the model's own (``prompt_tokens`` includes special tokens such as BOS where the model adds them).
    For a ``Chat`` with ``tools``, ``tool_calls`` holds the calls the reply made and ``text`` what it said besides
    them; ``finish_reason`` stays ``"stop"`` (a server's ``"tool_calls"`` reads as ``"stop"``). Where the model
    wrote its calls as text (``agentkit.toolcalls.lift``), ``tool_call_errors`` says why any call it opened could
    not be read (the model's mistake, as data).
    """

    text: str
    finish_reason: FinishReason
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_call_errors: list[str] = Field(default_factory=list)


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Cut ``text`` right before the earliest occurrence of any stop string. Returns (text, stopped)."""
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def partial_stop_suffix(text: str, stop: Sequence[str]) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of some stop string.

    A streamer must hold those characters back: they may turn out to be the start of a stop string.
    """
    best = 0
    for s in stop:
        for n in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:n]):
                best = n
                break
    return best


class BatchSession:
    """A queue of generation requests; ``step()`` advances them and returns the ones that finished.

    This default runs every queued request through ``llm.generate`` in one go (grouped by config), which is
    right for models that cannot add rows mid-batch. Engines with continuous batching override it so finished
    rows leave and new requests join between decoding steps.
    """

    def __init__(self, llm: LLM, max_batch_size: int = 32):
        self.llm = llm
        self.max_batch_size = max_batch_size
        self._queue: list[tuple[Hashable, Prompt, GenerationConfig]] = []

    @property
    def free_slots(self) -> int:
        return max(0, self.max_batch_size - len(self._queue))

    @property
    def pending(self) -> int:
        return len(self._queue)

    def add(self, key: Hashable, prompt: Prompt, config: GenerationConfig) -> None:
        self._queue.append((key, prompt, config))

    def step(self) -> list[tuple[Hashable, Completion]]:
        queue, self._queue = self._queue, []
        groups: dict[str, list[tuple[Hashable, Prompt, GenerationConfig]]] = {}
        for item in queue:
            groups.setdefault(item[2].key(), []).append(item)
        done: list[tuple[Hashable, Completion]] = []
        for items in groups.values():
            completions = self.llm.generate([p for _, p, _ in items], items[0][2])
            done.extend((k, c) for (k, _, _), c in zip(items, completions, strict=True))
        return done

    def close(self) -> None:
        self._queue.clear()


class StreamingSession(BatchSession):
    """A session that serves one request at a time through ``llm.stream``, handing each piece to ``on_piece``.

    With it, the episode runner streams a single episode (the REPL, ``agentkit run``) by the same loop that
    batches many.
    """

    def __init__(self, llm: LLM, on_piece: Callable[[str], None]):
        super().__init__(llm, max_batch_size=1)
        self.on_piece = on_piece

    def step(self) -> list[tuple[Hashable, Completion]]:
        if not self._queue:
            return []
        key, prompt, config = self._queue.pop(0)
        stream = self.llm.stream(prompt, config)
        try:
            while True:
                try:
                    piece = next(stream)
                except StopIteration as end:
                    completion = end.value
                    break
                self.on_piece(piece)
        finally:
            stream.close()  # an interrupted consumer (Ctrl-C in on_piece) lets the model clean up
        if not isinstance(completion, Completion):
            raise TypeError(f"{self.llm!r}.stream returned {completion!r}; a model's stream must return its Completion")
        return [(key, completion)]


class LLM(ABC):
    """Base class for models. Subclasses implement ``generate``; ``stream`` and ``session`` have defaults.

    Every method that takes a prompt takes a ``Prompt``: text, or a ``Chat`` that the model turns into text with
    ``render`` (a backend that speaks chat messages itself, such as a server's chat endpoint, may send it as is).
    """

    name: str = "llm"
    chat_template: str | None = None  # a Hugging Face-style Jinja chat template; None: the model takes text only
    special_tokens: dict[str, str] = {}  # e.g. bos_token, eos_token: variables the chat template may use
    # True: a Chat's tools are sent as they are and the backend fills Completion.tool_calls itself (a server with
    # native tool calls); False: the episode runner lowers the chat to text and reads the calls (agentkit.toolcalls)
    native_tools: bool = False

    @abstractmethod
    def generate(self, prompts: list[Prompt], config: GenerationConfig | None = None) -> list[Completion]:
        """One completion per prompt, in order."""

    def stream(self, prompt: Prompt, config: GenerationConfig | None = None) -> Generator[str, None, Completion]:
        """Yield the completion of one prompt in pieces, then return the whole ``Completion``.

        The pieces joined are exactly ``Completion.text``: text that might begin a stop string is held back
        until it is known not to. Every backend returns the ``Completion`` (``finish_reason`` and token counts
        included): callers take it from ``StopIteration.value`` or ``completion = yield from llm.stream(...)``.
        The default generates the whole text and yields it in one piece.
        """
        completion = self.generate([prompt], config)[0]
        if completion.text:
            yield completion.text
        return completion

    def session(self, max_batch_size: int = 32) -> BatchSession:
        """A request queue for the episode runner (see ``agentkit.runtime``)."""
        return BatchSession(self, max_batch_size)

    @property
    def takes_chat(self) -> bool:
        """Whether ``Chat`` prompts can be sent: the model has a chat template here, or a server renders them."""
        return bool(self.chat_template)

    def render(self, prompt: Prompt) -> str:
        """The exact text the model sees for ``prompt``: text as it is, a ``Chat`` through the chat template."""
        if isinstance(prompt, str):
            return prompt
        if not self.chat_template:
            raise UsageError(
                f"model {self.name} has no chat template; use the text prompt format (--prompt-format text)"
            )
        from jinja2.exceptions import TemplateError

        try:
            return self.apply_chat_template(prompt)
        except TemplateError:
            folded = prompt.without_system()
            if folded is prompt:
                raise
            return self.apply_chat_template(folded)  # a template without a system role (Gemma 2, Mistral)

    def apply_chat_template(self, chat: Chat) -> str:
        """Render ``chat`` with this model's chat template; backends with their own renderer override this."""
        assert self.chat_template is not None
        return render_chat(self.chat_template, chat, **self.special_tokens)

    def count_tokens(self, text: str) -> int:
        """Token count used for bookkeeping; the default is a whitespace-and-punctuation estimate."""
        return len(_TOKEN_ESTIMATE.findall(text))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def render_chat(template: str, chat: Chat, **special_tokens: str) -> str:
    """Render ``chat`` with a Hugging Face-style chat template, as transformers' ``apply_chat_template`` does.

    A new assistant turn gets the generation prompt (``add_generation_prompt``). A chat whose last message is the
    assistant's is rendered with a marker after that message and cut at the marker, so the model continues the
    message (transformers' ``continue_final_message``); where the template trims the message, so is the cut.
    The chat's ``tools`` go to the template as ``tools`` (a list of dicts, or None), as transformers passes them.
    """
    messages = [m.as_dict() for m in chat.messages]
    if chat.continues:
        messages[-1]["content"] += _CONTINUE_MARK
    text = (
        _chat_environment()
        .from_string(template)
        .render(
            messages=messages,
            tools=[dict(t) for t in chat.tools] or None,
            add_generation_prompt=not chat.continues,
            **special_tokens,
        )
    )
    if not chat.continues:
        return text
    at = text.rfind(_CONTINUE_MARK.strip())
    if at < 0:
        raise UsageError("the chat template does not show the assistant's last message; it cannot be continued")
    return text[:at] if text.startswith(_CONTINUE_MARK, at) else text[:at].rstrip()


_CONTINUE_MARK = "\x00AGENTKIT_CONTINUE\x00 "


@functools.cache
def _chat_environment():
    import json
    from datetime import datetime

    from jinja2.exceptions import TemplateError
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)  # Llama 3.1-style date lines
    env.filters["tojson"] = lambda x, indent=None: json.dumps(x, ensure_ascii=False, indent=indent)
    return env


_TOKEN_ESTIMATE = re.compile(r"\w+|[^\w\s]")


class ScriptedLLM(LLM):
    """A fake model that returns scripted replies and records every prompt.

    ``replies`` is either a list (served in order, one per prompt; running out is an error that says how many
    prompts arrived) or a callable ``prompt -> reply``. Each reply is then treated like raw model output: cut
    before the first stop string (``finish_reason="stop"``) and truncated to ``max_new_tokens`` tokens
    (``finish_reason="length"``), with tokens counted by a simple word-and-punctuation tokenizer.
    With a ``chat_template`` (and the ``special_tokens`` it uses) it plays an instruct model: ``Chat`` prompts are
    rendered through the template, and ``prompts`` records the rendered text.

    A constraint (``GenerationConfig.constraint``, any kind) is honoured as a constrained model would: the reply is
    what the model wanted to say, and it says as much of it as the grammar allows. The reply is first cut to its
    longest conforming prefix (``agentkit.grammar.longest_conforming``: the model ends there, "stop"), then stop
    strings and ``max_new_tokens`` apply as usual. A reply with no conforming prefix is said up to where the
    grammar rejects it, which is only a completion if a stop string or ``max_new_tokens`` ends it there;
    otherwise no constrained model could have given it and it is a ``ScriptError`` naming the constraint's kind
    (script a reply that conforms). ``constraints`` records each prompt's constraint (or None) beside
    ``prompts``, so a test can check what an agent asked for.
    """

    name = "scripted"

    def __init__(
        self,
        replies: Sequence[str] | Callable[[str], str],
        *,
        name: str = "scripted",
        chat_template: str | None = None,
        special_tokens: dict[str, str] | None = None,
    ):
        self.name = name
        self.chat_template = chat_template
        self.special_tokens = dict(special_tokens or {})
        self._replies = replies if callable(replies) else list(replies)
        self._next = 0
        self._lock = threading.RLock()
        self.prompts: list[str] = []
        self.constraints: list[Constraint | None] = []

    def _reply_for(self, prompt: str) -> str:
        with self._lock:
            self.prompts.append(prompt)
            if callable(self._replies):
                return self._replies(prompt)
            if self._next >= len(self._replies):
                raise ScriptError(
                    f"ScriptedLLM ran out of replies: prompt #{self._next + 1} arrived but only "
                    f"{len(self._replies)} replies were scripted; add replies or pass a callable"
                )
            reply = self._replies[self._next]
            self._next += 1
            return reply

    def generate(self, prompts: list[Prompt], config: GenerationConfig | None = None) -> list[Completion]:
        config = config or GenerationConfig()
        texts = [self.render(prompt) for prompt in prompts]
        if config.constraint is not None:
            from agentkit import grammar

            grammar.grammar(config.constraint)  # a constraint that does not compile is refused before any reply
        completions = []
        for text in texts:
            with self._lock:  # re-entered by _reply_for: the two records stay aligned across threads
                self.constraints.append(config.constraint)
                reply = self._reply_for(text)
            completions.append(self._complete(text, reply, config))
        return completions

    def _complete(self, prompt: str, reply: str, config: GenerationConfig) -> Completion:
        constraint, scripted = config.constraint, reply
        if constraint is not None:
            from agentkit import grammar

            conforming = grammar.longest_conforming(constraint, reply)
            reply = conforming if grammar.matches(constraint, conforming) else grammar.longest_viable(constraint, reply)
        text, stopped = cut_at_stop(reply, config.stop)
        tokens = list(_TOKEN_ESTIMATE.finditer(text))
        finish: FinishReason = "stop" if stopped else "length"
        cut = len(tokens) > config.max_new_tokens
        if cut:
            text, finish = text[: tokens[config.max_new_tokens - 1].end()], "length"
        elif not stopped:
            # A real model that ends its reply (end-of-sequence) stops of its own accord.
            finish = "stop"
        if constraint is not None and not (stopped or cut) and not grammar.matches(constraint, text):
            raise ScriptError(
                f"scripted model {self.name}: no prefix of its reply {scripted[:40]!r} conforms to the "
                f"{constraint.kind} constraint; script a reply that a model so constrained could give"
            )
        return Completion(
            text=text,
            finish_reason=finish,
            prompt_tokens=self.count_tokens(prompt),
            completion_tokens=min(len(tokens), config.max_new_tokens),
        )

    def stream(self, prompt: Prompt, config: GenerationConfig | None = None) -> Generator[str, None, Completion]:
        completion = self.generate([prompt], config)[0]
        yield from re.findall(r"\s*\S+|\s+", completion.text)
        return completion

    @property
    def remaining(self) -> int | None:
        """Replies not yet served (``None`` for a callable script)."""
        return None if callable(self._replies) else len(self._replies) - self._next
