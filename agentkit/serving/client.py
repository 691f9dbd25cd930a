"""``ServerLLM``: agentkit's model interface over OpenAI-compatible servers (vLLM, SGLang, llama.cpp, Ollama, and
``agentkit serve``), one or several replicas.

- Text prompts go to ``/v1/completions``, ``Chat`` prompts to ``/v1/chat/completions`` as messages (a chat whose
  last message is the assistant's is continued: ``continue_final_message``, as vLLM and SGLang take it). A
  chat-only server refuses text prompts with an error that says so: a few-shot text prompt sent as a user message
  would be a different experiment.
- Stop strings are exact on every server: at most four go to the server (vLLM and OpenAI refuse more), all of
  them are cut client-side, and ``finish_reason`` says what ended the text as agentkit sees it.
- Constraints (``GenerationConfig.constraint``) go in the server's own fields: its dialect (``DIALECTS``) is set
  in the spec or detected once, at the first constrained request, from ``/v1/models``' ``owned_by`` and probes of
  ``/props`` (llama.cpp), ``/api/version`` (Ollama) and ``/version`` (vLLM, whose version picks
  ``structured_outputs`` or ``guided_*``). A kind, or an ``after``, that the dialect cannot carry is a one-line
  ``UsageError`` before anything is sent; ``after`` travels as a Lark grammar with the free prefix in it
  (``agentkit.grammar.as_lark``) where the server takes llguidance's Lark. Every constrained completion is
  checked on arrival: one that does not conform (a server that ignored the field) is a ``ServerError``, never
  handed on as if it did.
- Tool calls: a ``Chat`` with ``tools`` goes with OpenAI's ``tools`` / ``tool_choice`` / ``parallel_tool_calls``, and
  the reply's ``tool_calls`` (streamed deltas assembled) become ``Completion.tool_calls``; a call whose arguments
  are not a JSON object is a ``tool_call_errors`` entry, the model's mistake as data. Whether the server does native
  tool calls is decided once, by the replies: a refusal of the tools (vLLM without ``--enable-auto-tool-choice``,
  llama.cpp without ``--jinja``, SGLang without ``--tool-call-parser``, an Ollama model without tool support), a
  required call answered without one, or calls passed on as text mean it does not, and from then on the chat is
  sent *prompted*: the tools described in the system message and earlier calls and results written as text
  (``agentkit.toolcalls``' ``plain`` format, Hermes-style ``<tool_call>`` calls), with the call grammar as the
  constraint where the dialect carries one, and the calls read from the reply. Tools are never dropped; the
  decision is one log line (a fallback a WARNING, naming the server's reason). ``tool_calls`` in the spec sets it.
- ``session()`` keeps up to ``max_concurrency`` requests in flight on worker threads and hands each completion
  back as soon as it arrives, so episodes interleave the way they do on the in-process engine. Samples of one
  prompt that differ only by consecutive seeds (self-consistency) share one request with ``n``; a server that
  ignores or refuses ``n`` or prompt lists is noticed once and then sent separate requests.
- Replicas: each request goes to the replica with the fewest requests in flight. A connection error, timeout,
  429 (after its ``Retry-After``) or 5xx takes that replica out for a backoff that doubles while it keeps
  failing (capped), and the request is retried on the others; a request gives up after ``retries`` retries with
  a ``ServerError`` naming the URL, the model and the last failure. A 4xx is not retried: it is a ``ServerError``
  with the server's own message. Each failure that takes a replica out is logged as it happens (logger
  ``agentkit.serving.client``, WARNING: the replica, the failure, which try of how many, when the next one goes),
  so a run against a dead server says so at once instead of waiting silently through its retries.
- Seeds: a sampled request carries its seed, so a run's samples are reproducible where the server honours
  seeds. vLLM's CPU backend (0.32) dies on seeded samples whose prompt is prefilled in chunks (its log: "CPU
  Generator does not use offset"); a seeded sampled request that fails that way (an HTTP 500 with that text or
  with vLLM's "EngineCore encountered an issue", or a vLLM server that closes the connection and no longer
  answers) is a ``ServerSeedCrash`` at once, not a retry that would kill the next replica. ``send_seeds=False``
  (``?seed=off`` in the spec) sends sampled requests without a seed: the server draws its own random numbers, so
  those samples differ on every run (and are never cached).

Deliberately not here: parsing model specs (``agentkit.models``), logprobs, the legacy ``functions`` /
``function_call`` fields, and tokenizing. Token counts come from the server's ``usage``; where a server gives only
a request's total for several completions, the total is shared out by text length.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable, Generator, Hashable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import httpx

from agentkit import grammar, toolcalls
from agentkit.errors import (
    ServerConstraintRefused,
    ServerError,
    ServerRefused,
    ServerSeedCrash,
    UnknownServedModel,
    UsageError,
)
from agentkit.llm import (
    LLM,
    BatchSession,
    Chat,
    Completion,
    Constraint,
    FinishReason,
    GenerationConfig,
    Message,
    Prompt,
    ToolCall,
    cut_at_stop,
    partial_stop_suffix,
)
from agentkit.serving.protocol import CONSTRAINT_FIELDS, TOOL_CHOICES, TOOL_FIELDS

MAX_SERVER_STOPS = 4  # vLLM and OpenAI refuse more stop strings with HTTP 400
API_KEY_VARIABLES = ("AGENTKIT_API_KEY", "OPENAI_API_KEY")
# How each server takes a constraint: agentkit serve its own ``constraint``; vLLM >= 0.10.2 ``structured_outputs``;
# older vLLM ``guided_*``; SGLang ``regex`` / ``json_schema``; llama.cpp ``grammar`` / ``json_schema``; Ollama and
# OpenAI a JSON schema in ``response_format`` on chat completions only.
DIALECTS = ("agentkit", "vllm", "vllm-guided", "sglang", "llama.cpp", "ollama", "openai")
OWNERS = {
    "agentkit": "agentkit",
    "vllm": "vllm",
    "sglang": "sglang",
    "llamacpp": "llama.cpp",
    "ollama": "ollama",
    "library": "ollama",
}  # /v1/models' owned_by -> dialect
CONSTRAINT_PARAMS = {*CONSTRAINT_FIELDS, "regex"}  # a 400 naming one refused the constraint (SGLang: regex)
# How a server takes a chat's tools: in OpenAI's ``tools`` fields (it parses the calls), or prompted (agentkit puts
# them in the messages in the model's call syntax and parses the reply); by default detected at the first request.
TOOL_MODES = ("native", "prompted")
PROMPTED_FORMAT = "plain"  # toolcalls' format for a template that renders no tools: Hermes-style calls
_PROBE_TOOL = {"type": "function", "function": {"name": "probe", "parameters": {"type": "object", "properties": {}}}}
# What servers say when they cannot take tools: vLLM without --enable-auto-tool-choice (HTTP 400 on "auto"),
# llama.cpp without --jinja and SGLang without --tool-call-parser (a 500 in older builds), Ollama for a model whose
# template has no tools.
TOOLS_REFUSED = re.compile(
    r"enable-auto-tool-choice|tool[-_]call[-_]parser|--jinja|does not support tools|tools? (are |is )?not supported",
    re.I,
)
SEED_CRASH = "CPU Generator does not use offset"  # vLLM CPU 0.32's error on a seeded sample prefilled in chunks
ENGINE_DEAD = "EngineCore encountered an issue"  # vLLM's 500 for every request in flight when its engine died
UNSEEDED_COST = (
    "the server draws its own random numbers, so sampled completions differ on every run and cannot be reproduced; "
    "greedy ones are unaffected"
)
log = logging.getLogger("agentkit.serving.client")


@dataclass
class Replica:
    """One base URL and what the client knows about its health."""

    url: str
    in_flight: int = 0
    down_until: float = 0.0  # monotonic time before which no request is sent here
    failures: int = 0  # consecutive failed probes; the backoff doubles with each
    last_error: str = ""


class _Refused(Exception):
    """A stream's error event that refuses the request (a 4xx in the event's ``code``)."""

    def __init__(self, message: str, status: int, param: str | None):
        super().__init__(message)
        self.status = status
        self.param = param


class _Transient(Exception):
    """A failure worth retrying elsewhere or later (connection, timeout, 429, 5xx)."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class _Cancelled(Exception):
    """The session that asked was closed while the request waited to be retried."""


@dataclass
class _Link:
    """The connections a request goes over, and the flag that abandons it (its session was closed)."""

    client: httpx.Client
    cancel: threading.Event | None = None

    @property
    def cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()


@dataclass
class _Job:
    """One request to send: a prompt with ``n`` samples (consecutive seeds) for the given keys."""

    keys: list[Hashable]
    prompt: Prompt
    config: GenerationConfig


class ServerLLM(LLM):
    """A model served over an OpenAI-compatible HTTP API by one or several replicas.

        ``urls``: base URLs that end in ``/v1`` (``http://localhost:8000/v1``). ``model``: the served model's name;
        optional when the servers serve exactly one. ``api_key``: sent as a bearer token; by default taken from
        ``$AGENTKIT_API_KEY`` or ``$OPENAI_API_KEY``. ``timeout``: seconds to wait for a response (or for the next
        piece of a stream). ``retries``: retries of one request before it gives up; ``backoff``/``max_backoff``:
        the first and the largest wait before retrying a failed replica. ``dialect``: how the server takes
        constraints (one of ``DIALECTS``); by default detected at the first constrained request. ``tool_calls``: how it
        takes a chat's tools (one of ``TOOL_MODES``); by default detected at the first request with tools.
    )
        constraints (one of ``DIALECTS``); by default detected at the first constrained request. ``send_seeds``:
        False sends sampled requests without their seed (for vLLM's CPU backend, which dies on seeded samples).
    """

    native_tools = True  # a chat's tools come back as Completion.tool_calls from here, natively or prompted

    def __init__(
        self,
        urls: str | Sequence[str],
        *,
        model: str | None = None,
        api_key: str | None = None,
        max_concurrency: int = 64,
        timeout: float = 300.0,
        retries: int = 6,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        dialect: str | None = None,
        tool_calls: str | None = None,
        send_seeds: bool = True,
        transport: httpx.BaseTransport | None = None,
    ):
        urls = [urls] if isinstance(urls, str) else list(urls)
        if not urls:
            raise UsageError("ServerLLM needs at least one base URL, e.g. http://localhost:8000/v1")
        if max_concurrency < 1 or retries < 0 or timeout <= 0:
            raise UsageError("ServerLLM: max_concurrency must be >= 1, retries >= 0 and timeout > 0")
        if dialect is not None and dialect not in DIALECTS:
            raise UsageError(f"ServerLLM: unknown dialect {dialect!r}; dialects are {', '.join(DIALECTS)}")
        if tool_calls is not None and tool_calls not in TOOL_MODES:
            raise UsageError(f"ServerLLM: tool_calls must be one of {', '.join(TOOL_MODES)}, not {tool_calls!r}")
        self._dialect = dialect
        self._tool_mode, self._tool_mode_given = tool_calls, tool_calls is not None
        self.send_seeds = send_seeds
        self._dialect_lock = threading.Lock()
        self.replicas = [Replica(u.rstrip("/")) for u in urls]
        self.max_concurrency = max_concurrency
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        if api_key is None:
            api_key = next((os.environ[v] for v in API_KEY_VARIABLES if os.environ.get(v)), None)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client_options = dict(
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)),
            limits=httpx.Limits(max_connections=max_concurrency + 8, max_keepalive_connections=max_concurrency),
            transport=transport,
        )
        self._client = self._new_client()
        self._lock = threading.Lock()
        self._replica_free = threading.Condition(self._lock)
        self.model = model or "?"  # for the messages of the first request
        served = self.served_models()
        self.model = self._choose(model, served)
        self.name = self.model
        self._owner = served.get(self.model, "")
        # agentkit serve takes any number of stop strings; other servers get at most four.
        self.max_stops = None if self._owner == "agentkit" else MAX_SERVER_STOPS
        self.accepts_prompt_lists = True  # set False when a server refuses (or ignores) a list of prompts
        self.accepts_n = True  # set False when a server refuses (or ignores) n > 1

    def _new_client(self) -> httpx.Client:
        return httpx.Client(**self._client_options)  # type: ignore[arg-type]

    @property
    def urls(self) -> list[str]:
        return [r.url for r in self.replicas]

    # -- the model interface ----------------------------------------------------------------------------------

    def generate(self, prompts: Sequence[Prompt], config: GenerationConfig | None = None) -> list[Completion]:
        """One completion per prompt, in order. Sampled prompts get seeds ``seed + i``, as on the engine."""
        config = config or GenerationConfig()
        prompts = list(prompts)
        if not prompts:
            return []
        if (
            len(prompts) > 1
            and self.accepts_prompt_lists
            and all(isinstance(p, str) for p in prompts)
            and not (config.do_sample and config.seed is not None)
        ):
            completions = self._prompt_list(prompts, config)  # type: ignore[arg-type]
            if completions is not None:
                return completions
        session = ServerSession(self, len(prompts), own_connections=False)
        try:
            for i, prompt in enumerate(prompts):
                seeded = config.do_sample and config.seed is not None and len(prompts) > 1
                session.add(i, prompt, config.model_copy(update={"seed": config.seed + i}) if seeded else config)
            out: dict[Hashable, Completion] = {}
            while session.pending:
                out.update(session.step())
        finally:
            session.close()
        return [out[i] for i in range(len(prompts))]

    def stream(self, prompt: Prompt, config: GenerationConfig | None = None) -> Generator[str, None, Completion]:
        """Stream one completion over SSE; text that may begin a stop string is held back until it cannot. A chat
        with tools streams what the model says besides its calls; the calls are in the returned ``Completion``."""
        config = config or GenerationConfig()
        if isinstance(prompt, Chat) and prompt.tools:
            return (yield from self._tool_stream(prompt, config))
        completion, _ = yield from self._stream(prompt, config)
        return completion

    def _stream(
        self, prompt: Prompt, config: GenerationConfig, *, hold: str | None = None
    ) -> Generator[str, None, tuple[Completion, str]]:
        """The stream of one request: the ``Completion`` (with the calls its deltas carried) and the text yielded.
        ``hold``: a prompted call's opening; from there on it is the call, not text to show, and the caller shows
        the rest of the text once the calls are read."""
        path, body = self._body(prompt, config)
        body.update(stream=True, stream_options={"include_usage": True})
        chat = isinstance(prompt, Chat)
        text, sent, finish, usage, calls = "", 0, None, None, {}
        ends = [*config.stop, *([hold] if hold is not None else [])]
        events = self._events(path, body)
        try:
            for event in events:
                usage = event.get("usage") or usage
                for choice in event.get("choices") or []:
                    delta = choice.get("delta") or {}
                    text += (delta.get("content") if chat else choice.get("text")) or ""
                    _add_call_deltas(calls, delta.get("tool_calls"))
                    finish = choice.get("finish_reason") or finish
                cut, stopped = cut_at_stop(text, config.stop)
                if stopped:  # found client-side: end here (closing the stream stops the server's work)
                    text, finish = cut, "stop"
                    break
                shown = cut_at_stop(text, ends)[0]
                safe = len(shown) - partial_stop_suffix(shown, ends)
                if hold is not None:
                    safe = len(shown[:safe].rstrip())  # the space before a call is not the reply's
                if safe > sent:
                    yield text[sent:safe]
                    sent = safe
        finally:
            events.close()
        if hold is None and len(text) > sent:
            yield text[sent:]
            sent = len(text)
        completion = self._completion(text, finish, config, usage, prompt, [_call(c, i) for i, c in calls.items()])
        return completion, text[:sent]

    def session(self, max_batch_size: int = 32) -> ServerSession:
        return ServerSession(self, max_batch_size)

    takes_chat = True  # the server renders chat prompts with its own template (``--prompt-format chat``)

    def render(self, prompt: Prompt) -> str:
        """A text prompt as it is; a ``Chat`` as the JSON messages (and tools) sent: the server's template is not
        visible."""
        if isinstance(prompt, str):
            return prompt
        if prompt.tools and self._tool_mode == "prompted":
            prompt = toolcalls.FORMATS[PROMPTED_FORMAT].prepare(prompt)  # the messages a prompted server gets
        return json.dumps(self._chat_fields(prompt), ensure_ascii=False)

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:
        return f"ServerLLM({self.model!r}, urls={self.urls!r})"

    # -- served models ----------------------------------------------------------------------------------------

    def served_models(self) -> dict[str, str]:
        """``/v1/models`` of the first replica that answers: model id -> owner."""
        try:
            data = self._send("GET", "/models", None, retries=min(self.retries, 2))
        except ServerRefused as exc:
            if exc.status == 404:
                return {}  # the server does not list its models; the spec must name one
            raise
        return {str(m.get("id")): str(m.get("owned_by", "")) for m in data.get("data") or []}

    def _choose(self, model: str | None, served: dict[str, str]) -> str:
        where = ", ".join(self.urls)
        if model is not None:
            if served and model not in served:
                raise UnknownServedModel(
                    f"model {model!r} is not served at {where}; it serves: {', '.join(served)} "
                    f"(name one with ?model=NAME)"
                )
            return model
        if len(served) == 1:
            return next(iter(served))
        if not served:
            raise UnknownServedModel(f"{where} does not list its models; name one with ?model=NAME")
        raise UnknownServedModel(f"{where} serves several models ({', '.join(served)}); name one with ?model=NAME")

    # -- constraints ------------------------------------------------------------------------------------------

    @property
    def dialect(self) -> str:
        """How the server takes constraints (one of ``DIALECTS``): set, or detected once and then kept."""
        with self._dialect_lock:
            if self._dialect is None:
                self._dialect = self._detect_dialect()
            return self._dialect

    def _detect_dialect(self) -> str:
        """From ``owned_by``, else from the first probe that answers; a server like none of them is OpenAI."""
        if self._owner in OWNERS:
            dialect = OWNERS[self._owner]
            return _vllm_dialect(self._probe("/version")) if dialect == "vllm" else dialect
        if self._probe("/props") is not None:
            return "llama.cpp"
        if self._probe("/api/version") is not None:
            return "ollama"
        version = self._probe("/version")
        return _vllm_dialect(version) if version is not None else "openai"

    def _probe(self, path: str) -> dict | None:
        """``GET path`` at the first replica's root (its URL without ``/v1``): the JSON object, or None."""
        root = self.urls[0].removesuffix("/v1")
        try:
            response = self._client.get(root + path, timeout=min(10.0, self.timeout))
            data = response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _constraint_fields(self, constraint: Constraint, *, chat: bool) -> dict[str, Any]:
        """The request fields that carry ``constraint`` in this server's dialect; a ``UsageError`` where the
        dialect cannot carry it (nothing is sent, nothing is dropped)."""
        grammar.grammar(constraint)  # a constraint that does not compile is the user's error, said here
        dialect, kind, plain = self.dialect, constraint.kind, constraint.after is None
        schema = constraint.json_schema
        if dialect == "agentkit":
            return {"constraint": constraint.model_dump(exclude_none=True)}
        if dialect in ("vllm", "vllm-guided"):
            if plain and kind == "regex":
                key, value = "regex", constraint.regex
            elif plain and kind == "json_schema":
                key, value = "json", schema
            else:
                key, value = "grammar", grammar.as_lark(constraint)
            return {"structured_outputs": {key: value}} if dialect == "vllm" else {f"guided_{key}": value}
        if dialect == "llama.cpp":
            if plain and kind == "json_schema":
                return {"json_schema": schema}
            lark = grammar.as_lark(constraint)
            return {"grammar": lark if lark.lstrip().startswith("%llguidance") else "%llguidance {}\n" + lark}
        if dialect == "sglang" and plain and kind != "lark":
            return {"regex": constraint.regex} if kind == "regex" else {"json_schema": json.dumps(schema)}
        if dialect in ("ollama", "openai") and plain and kind == "json_schema" and chat:
            return {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "agentkit", "schema": schema, "strict": True},
                }
            }
        what = f"{kind} constraint" + ("" if plain else f" with a free prefix (after={constraint.after!r})")
        why = {
            "sglang": "SGLang takes a regex or a JSON schema without a free prefix",
            "ollama": "Ollama takes a JSON schema without a free prefix, on chat prompts only",
            "openai": "the OpenAI API takes a JSON schema without a free prefix, on chat prompts only",
        }[dialect]
        raise UsageError(
            f"server {', '.join(self.urls)} model {self.model} ({dialect}) cannot take a {what}: {why}; drop the "
            "constraint, or set dialect= in the spec if the server is another"
        )

    def _check_conforms(self, text: str, config: GenerationConfig) -> None:
        """A completion that ended of its own accord matches its constraint (a stop string may have cut it: then
        it is at least a prefix that could); otherwise the server did not apply the constraint."""
        constraint = config.constraint
        assert constraint is not None
        check = grammar.is_prefix if config.stop else grammar.matches
        if check(constraint, text) or check(constraint, text.rstrip()):  # a server may allow trailing space
            return
        raise ServerError(
            f"{self.urls[0]} model {self.model} ({self.dialect}) returned text that does not match its "
            f"{constraint.kind} constraint ({text[:40]!r}): the server ignored the constraint or is another "
            "kind of server; set dialect= in the spec"
        )

    # -- tool calls -------------------------------------------------------------------------------------------

    @property
    def tool_mode(self) -> str | None:
        """How the server takes tools (one of ``TOOL_MODES``): set, or decided by a reply; None while undecided."""
        return self._tool_mode

    def _decide_tools(self, mode: str, why: str, *, overrule: bool = False) -> None:
        """Settle how tools go to this server, once, and say so in one line (a fallback is a warning); a refusal
        (``overrule``) settles it even after native calls (a server may make a forced call and refuse ``auto``)."""
        with self._dialect_lock:
            if self._tool_mode == mode or (self._tool_mode is not None and not overrule):
                return
            self._tool_mode = mode
        where = f"{', '.join(self.urls)} (model {self.model})"
        if mode == "native":
            log.info("%s: native tool calls (%s)", where, why)
            return
        how = self._prompted_how()
        log.warning("%s: no native tool calls (%s); tools go in the prompt as %s", where, why, how)

    def _tool_reply(
        self, chat: Chat, config: GenerationConfig, link: _Link | None, headers: dict[str, str] | None
    ) -> Completion:
        """One reply to a chat with tools: natively unless the server is known not to (or refuses) take them."""
        if self._tool_mode != "prompted":
            path, body = self._body(chat, config)
            try:
                data = self._send("POST", path, body, link=link, headers=headers)
            except ServerRefused as exc:
                self._refused_tools(exc)
            else:
                completion = self._choices(data, _Job([0], chat, config), expected=1)[0]
                judged = self._judge(chat, completion)
                if judged is not None:
                    return judged
        prompt, sent, _ = self._prompted(chat, config)
        data = self._send("POST", "/chat/completions", self._body(prompt, sent)[1], link=link, headers=headers)
        completion = self._choices(data, _Job([0], prompt, sent), expected=1)[0]
        return toolcalls.lift(self, chat, completion, format=PROMPTED_FORMAT)

    def _tool_stream(self, chat: Chat, config: GenerationConfig) -> Generator[str, None, Completion]:
        """``stream`` for a chat with tools: the text streams, the calls come in the returned ``Completion``."""
        if self._tool_mode != "prompted":
            try:
                completion, shown = yield from self._stream(chat, config)
            except ServerRefused as exc:
                self._refused_tools(exc)  # refused before the first event: nothing was shown
            else:
                judged = self._judge(chat, completion)
                if judged is not None or shown:
                    return judged or completion
        prompt, sent, opening = self._prompted(chat, config)
        completion, shown = yield from self._stream(prompt, sent, hold=opening)
        lifted = toolcalls.lift(self, chat, completion, format=PROMPTED_FORMAT)
        rest = lifted.text[len(shown) :] if lifted.text.startswith(shown) else ""
        if rest:
            yield rest
        return lifted.model_copy(update={"text": shown + rest})

    def _refused_tools(self, exc: ServerRefused) -> None:
        """A refused native request: a server that cannot take tools is answered prompted; anything else raises."""
        said = str(exc).split(": HTTP ", 1)[-1]
        if self._tool_mode_given or not (TOOLS_REFUSED.search(said) or exc.param in TOOL_FIELDS):
            raise exc
        self._decide_tools("prompted", f"HTTP {_one_line(said, 160)}", overrule=True)

    def _judge(self, chat: Chat, completion: Completion) -> Completion | None:
        """What a native reply says of the server: calls (it does tool calls); no call where one was required (it
        ignored the tools: None, ask again prompted); calls in the text (it does not parse them: lifted here)."""
        if completion.tool_calls or completion.tool_call_errors:
            self._decide_tools("native", "the server returned tool_calls")
            return completion
        if self._tool_mode_given or chat.tool_choice == "none":
            return completion
        if chat.tool_choice != "auto":
            self._decide_tools("prompted", f"tool_choice {chat.tool_choice!r} was answered without a call")
            return None
        for fmt in toolcalls.FORMATS.values():  # the model's own syntax, which a server without a parser passes on
            lifted = toolcalls.lift(self, chat, completion, format=fmt.name)
            if lifted.tool_calls:
                self._decide_tools("prompted", f"its calls came back as {fmt.name} text: the server parses none")
                return lifted
        return completion

    def _prompted(self, chat: Chat, config: GenerationConfig) -> tuple[Chat, GenerationConfig, str]:
        """A chat with tools as a server without native tool calls is sent it: the tools described in the system
        message and earlier calls and results written as text (``toolcalls`` format ``plain``, Hermes-style calls),
        with the call grammar as the constraint where the dialect carries it. Also the text that opens a call."""
        if config.constraint is not None:
            raise UsageError("a tool-calling chat is constrained by its tools' schemas: drop config.constraint")
        fmt = toolcalls.FORMATS[PROMPTED_FORMAT]
        prompt = fmt.prepare(chat)
        constraint = fmt.constraint(chat, opened=toolcalls.reopened(chat, fmt))
        if constraint is None or not self._carries(constraint):
            return prompt, config, fmt.opener
        return prompt, config.model_copy(update={"constraint": constraint}), constraint.after or ""

    def _carries(self, constraint: Constraint) -> bool:
        try:
            self._constraint_fields(constraint, chat=True)
        except UsageError:
            return False
        return True

    def _prompted_how(self) -> str:
        fmt = toolcalls.FORMATS[PROMPTED_FORMAT]
        probe = Chat(messages=(Message(role="user", content="?"),), tools=(_PROBE_TOOL,))
        if self._carries(fmt.constraint(probe)):  # type: ignore[arg-type]
            return f"{fmt.opener} calls, constrained to the tools' schemas ({self.dialect})"
        return f"{fmt.opener} calls, unconstrained: the {self.dialect} dialect carries no call grammar"

    # -- requests ---------------------------------------------------------------------------------------------

    def _chat_fields(self, chat: Chat) -> dict[str, Any]:
        fields: dict[str, Any] = {"messages": [m.as_dict(json_arguments=True) for m in chat.messages]}
        if chat.continues:
            fields.update(continue_final_message=True, add_generation_prompt=False)
        if chat.tools:
            choice = chat.tool_choice
            fields.update(
                tools=list(chat.tools),
                tool_choice=choice if choice in TOOL_CHOICES else {"type": "function", "function": {"name": choice}},
                parallel_tool_calls=chat.parallel_tool_calls,
            )
        return fields

    def _body(self, prompt: Prompt | list[str], config: GenerationConfig, n: int = 1) -> tuple[str, dict[str, Any]]:
        """The endpoint and JSON body for ``prompt`` (a text, a list of texts or a chat)."""
        body: dict[str, Any] = {"model": self.model, "max_tokens": config.max_new_tokens}
        if config.constraint is not None:
            body.update(self._constraint_fields(config.constraint, chat=isinstance(prompt, Chat)))
        if config.do_sample:
            body.update(temperature=config.temperature, top_p=config.top_p)
            if config.top_k is not None:
                body["top_k"] = config.top_k  # vLLM, SGLang and llama.cpp take it beside OpenAI's fields
            if config.seed is not None and self.send_seeds:
                body["seed"] = config.seed
        else:
            body["temperature"] = 0.0  # greedy on every OpenAI-compatible server
        stops = config.stop if self.max_stops is None else config.stop[: self.max_stops]
        if stops:
            body["stop"] = list(stops)
        if n > 1:
            body["n"] = n
        if isinstance(prompt, Chat):
            return "/chat/completions", {**body, **self._chat_fields(prompt)}
        return "/completions", {**body, "prompt": prompt}

    def _completion(
        self,
        text: str,
        finish: str | None,
        config: GenerationConfig,
        usage: dict | None,
        prompt: Prompt | None,
        tool_calls: Sequence[ToolCall | str] = (),
    ) -> Completion:
        """The ``Completion`` agentkit sees: cut at every stop string, with the finish reason that follows (a
        server's ``"tool_calls"`` is ``"stop"``)."""
        text, stopped = cut_at_stop(text, config.stop)
        # "length" only when the token limit ended it and no stop text did; the server's own EOS is "stop".
        reason: FinishReason = "length" if finish == "length" and not stopped else "stop"
        if config.constraint is not None and reason == "stop":
            self._check_conforms(text, config)
        usage = usage or {}
        prompt_tokens = usage.get("prompt_tokens")
        if prompt_tokens is None:
            prompt_tokens = self.count_tokens(self.render(prompt)) if prompt is not None else 0
        completion_tokens = usage.get("completion_tokens")
        if completion_tokens is None:
            completion_tokens = self.count_tokens(text)
        return Completion(
            text=text,
            finish_reason=reason,
            prompt_tokens=int(prompt_tokens),
            completion_tokens=int(completion_tokens),
            tool_calls=[c for c in tool_calls if isinstance(c, ToolCall)],
            tool_call_errors=[c for c in tool_calls if isinstance(c, str)],
        )

    def _run(
        self, job: _Job, link: _Link | None = None, headers: dict[str, str] | None = None
    ) -> list[tuple[Hashable, Completion]]:
        """Send one job (``n`` = its number of keys) and return a completion per key; ``headers`` (a trace's
        ``traceparent``) go with every request."""
        n = len(job.keys)
        if n > 1 and self.accepts_n and not _has_tools(job.prompt):
            path, body = self._body(job.prompt, job.config, n=n)
            try:
                data = self._send("POST", path, body, link=link, headers=headers)
            except ServerRefused:
                self.accepts_n = False  # refused: fall back to one request per sample
                data = None
            if data is not None:
                completions = self._choices(data, job, expected=n)
                if len(completions) < n:
                    self.accepts_n = False  # the server ignored n: ask for the missing samples one by one
                done = list(zip(job.keys, completions, strict=False))
                rest = [_Job([k], job.prompt, self._sample_config(job.config, i)) for i, k in enumerate(job.keys)]
                for single in rest[len(done) :]:
                    done.extend(self._run(single, link, headers))
                return done
        out: list[tuple[Hashable, Completion]] = []
        for i, key in enumerate(job.keys):
            config = self._sample_config(job.config, i)
            if _has_tools(job.prompt):
                out.append((key, self._tool_reply(job.prompt, config, link, headers)))  # type: ignore[arg-type]
                continue
            path, body = self._body(job.prompt, config)
            data = self._send("POST", path, body, link=link, headers=headers)
            out.append((key, self._choices(data, _Job([key], job.prompt, config), expected=1)[0]))
        return out

    @staticmethod
    def _sample_config(config: GenerationConfig, i: int) -> GenerationConfig:
        if i == 0 or config.seed is None:
            return config
        return config.model_copy(update={"seed": config.seed + i})

    def _choices(self, data: dict, job: _Job, expected: int) -> list[Completion]:
        """Completions from a response's choices, in ``index`` order (servers may send them in any order)."""
        choices = sorted(data.get("choices") or [], key=lambda c: c.get("index", 0))
        if not choices:
            raise ServerError(f"{self.urls[0]}: the response for model {self.model} has no choices")
        chat = isinstance(job.prompt, Chat)
        texts = [((c.get("message") or {}).get("content") if chat else c.get("text")) or "" for c in choices]
        shared = _share(data.get("usage"), texts, self.count_tokens, prompts=1)
        calls = [
            [_call(call, i) for i, call in enumerate((c.get("message") or {}).get("tool_calls") or [])] for c in choices
        ]
        return [
            self._completion(t, c.get("finish_reason"), job.config, c.get("usage") or u, job.prompt, k)
            for t, c, u, k in zip(texts[:expected], choices, shared, calls, strict=False)
        ]

    def _prompt_list(self, prompts: list[str], config: GenerationConfig) -> list[Completion] | None:
        """All prompts in one ``/v1/completions`` request; None when the server refuses or ignores the list."""
        path, body = self._body(prompts, config)
        try:
            data = self._send("POST", path, body)
        except ServerRefused:
            self.accepts_prompt_lists = False
            return None
        choices = sorted(data.get("choices") or [], key=lambda c: c.get("index", 0))
        if [c.get("index") for c in choices] != list(range(len(prompts))):
            self.accepts_prompt_lists = False  # e.g. only the first prompt was answered
            return None
        texts = [c.get("text") or "" for c in choices]
        shared = _share(data.get("usage"), texts, self.count_tokens, prompts=len(prompts))
        return [
            self._completion(t, c.get("finish_reason"), config, c.get("usage") or u, p)
            for t, c, u, p in zip(texts, choices, shared, prompts, strict=True)
        ]

    # -- transport: replicas, retries, errors -----------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        body: dict | None,
        *,
        retries: int | None = None,
        link: _Link | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict:
        """One JSON request with replica choice and bounded retries; the parsed response body."""
        retries = self.retries if retries is None else retries
        link = link or _Link(self._client)
        attempt = 0
        while True:
            replica = self._acquire(link)
            try:
                response = link.client.request(method, replica.url + path, json=body, headers=headers)
                self._check(response, replica, path)
                data = response.json()
            except (httpx.TransportError, _Transient, ValueError, RuntimeError) as exc:
                if link.cancelled:
                    raise _Cancelled() from None  # the session closed its connections under this request
                if isinstance(exc, RuntimeError) and not isinstance(exc, _Transient):
                    raise
                failure = _failure(exc)
                retry_after = exc.retry_after if isinstance(exc, _Transient) else None
                out_for = self._release(replica, failure, retry_after)
                crash = self._seed_crash(replica, path, body, exc, failure)
                if crash is not None:
                    raise crash from None
            else:
                self._release(replica)
                return data
            finally:
                with self._lock:
                    replica.in_flight -= 1
                    self._replica_free.notify_all()
            attempt += 1
            if attempt > retries:
                raise ServerError(
                    f"{replica.url}{path} (model {self.model}): {failure}; gave up after {attempt} attempts"
                    + (f" on {len(self.replicas)} replicas" if len(self.replicas) > 1 else "")
                )
            if out_for is not None:
                self._note_retry(replica, path, failure, attempt, retries + 1)

    def _events(self, path: str, body: dict) -> Generator[dict, None, None]:
        """The JSON events of an SSE response; retried like ``_send`` until the first event arrives."""
        attempt = 0
        while True:
            replica = self._acquire(_Link(self._client))
            received = False
            try:
                with self._client.stream("POST", replica.url + path, json=body) as response:
                    self._check(response, replica, path)
                    finished = False
                    for event in _sse(response.iter_lines()):
                        if event is None:
                            finished = True
                            break
                        received = True
                        finished = finished or any(c.get("finish_reason") for c in event.get("choices") or [])
                        yield event
                    if not finished:
                        raise httpx.RemoteProtocolError("the stream ended before the completion was finished")
                self._release(replica)
                return
            except _Refused as exc:
                self._release(replica)
                raise self._refused(replica, path, exc.status, str(exc), exc.param) from None
            except (httpx.TransportError, _Transient, ValueError) as exc:
                failure = _failure(exc)
                out_for = self._release(replica, failure, exc.retry_after if isinstance(exc, _Transient) else None)
                crash = self._seed_crash(replica, path, body, exc, failure)
                if crash is not None:
                    raise crash from None
                if received:
                    raise ServerError(
                        f"{replica.url}{path} (model {self.model}): stream cut mid-way: {failure}"
                    ) from None
            finally:
                with self._lock:
                    replica.in_flight -= 1
                    self._replica_free.notify_all()
            attempt += 1
            if attempt > self.retries:
                raise ServerError(
                    f"{replica.url}{path} (model {self.model}): {failure}; gave up after {attempt} attempts"
                )
            if out_for is not None:
                self._note_retry(replica, path, failure, attempt, self.retries + 1)

    def _seed_crash(
        self, replica: Replica, path: str, body: dict | None, exc: BaseException, failure: str
    ) -> ServerSeedCrash | None:
        """The error for a server that died on this seeded sampled request (vLLM's CPU backend does), else None:
        an HTTP 500 with vLLM CPU's own error or with vLLM's dead-engine message, or a vLLM server that lost the
        connection and no longer answers."""
        if not body or body.get("seed") is None:
            return None  # only sampled requests carry a seed
        vllm = self._owner == "vllm" or self._dialect in ("vllm", "vllm-guided")
        if SEED_CRASH in str(exc) or (vllm and isinstance(exc, _Transient) and ENGINE_DEAD in str(exc)):
            how = f"failed ({failure})"
        elif (
            vllm
            and isinstance(exc, httpx.TransportError)
            and not isinstance(exc, httpx.TimeoutException)
            and not self._answers(replica)
        ):
            how = f"went away ({failure})"
        else:
            return None
        return ServerSeedCrash(
            f"{replica.url}{path} (model {self.model}): the server {how} on a seeded sampled request: vLLM's CPU "
            f"backend (0.32) dies on seeded samples whose prompt is prefilled in chunks ({SEED_CRASH!r} in its log); "
            f"restart it and add ?seed=off to the model spec to send sampled requests without a seed ({UNSEEDED_COST})"
        )

    def _answers(self, replica: Replica) -> bool:
        """Whether ``replica`` still answers at all (any HTTP status)."""
        try:
            self._client.get(replica.url + "/models", timeout=min(5.0, self.timeout))
        except httpx.HTTPError:
            return False
        return True

    def _check(self, response: httpx.Response, replica: Replica, path: str) -> None:
        status = response.status_code
        if status < 400:
            return
        response.read()
        message = _server_message(response)
        if (status == 429 or status >= 500) and not (status == 500 and TOOLS_REFUSED.search(message)):
            raise _Transient(f"HTTP {status}: {message}", _retry_after(response))
        hint = ""
        if status in (404, 405) and path == "/completions":
            hint = "; a chat-only server takes chat prompts only (/v1/chat/completions)"
        elif status == 500:  # a server that fails on tools instead of refusing them
            hint = "; the server cannot take tools (docs/serving.md, Tool calls)"
        elif status in (401, 403):
            hint = (
                "; give the server's API key in $AGENTKIT_API_KEY or $OPENAI_API_KEY (or ?api_key_env=VAR)"
                if not self._client_options["headers"]
                else "; the API key sent is not the server's"
            )
        self._release(replica)
        raise self._refused(replica, path, status, message + hint, _error_param(response))

    def _refused(self, replica: Replica, path: str, status: int, message: str, param: str | None) -> ServerRefused:
        """The error for a refused request; a refused constraint is also a ``UsageError``, as in-process."""
        text = f"{replica.url}{path} refused model {self.model}: HTTP {status}: {message}"
        if status == 400 and param in CONSTRAINT_PARAMS:
            return ServerConstraintRefused(text, status, param)
        return ServerRefused(text, status, param)

    def _acquire(self, link: _Link) -> Replica:
        """The live replica with the fewest requests in flight; waits while every replica is out."""
        with self._lock:
            while True:
                if link.cancelled:
                    raise _Cancelled()
                now = time.monotonic()
                live = [r for r in self.replicas if r.down_until <= now]
                if live:
                    replica = min(live, key=lambda r: r.in_flight)
                    replica.in_flight += 1
                    return replica
                wake = min(r.down_until for r in self.replicas) - now
                self._replica_free.wait(timeout=min(max(wake, 0.001), 0.25))

    def _release(self, replica: Replica, failure: str | None = None, retry_after: float | None = None) -> float | None:
        """Record how a request on ``replica`` went; a failure takes it out for a (doubling) backoff, whose length
        is returned (None when the replica was fine or already out)."""
        with self._lock:
            if failure is None:
                replica.failures, replica.last_error = 0, ""
                return None
            replica.last_error = failure
            now = time.monotonic()
            if replica.down_until > now:
                return None  # already out: requests that were in flight when it failed do not extend the backoff
            delay = min(self.max_backoff, self.backoff * 2**replica.failures) * random.uniform(0.8, 1.0)
            if retry_after is not None:
                delay = max(delay, min(retry_after, 60.0))
            replica.failures += 1
            replica.down_until = now + delay
            return delay

    def _note_retry(self, replica: Replica, path: str, failure: str, tries: int, most: int) -> None:
        """Log a failure that took ``replica`` out: which replica, which try of how many, when the next goes."""
        with self._lock:
            wait = max(0.0, min(r.down_until for r in self.replicas) - time.monotonic())
        where = replica.url + path
        if len(self.replicas) > 1:
            where += f" (replica {self.replicas.index(replica) + 1} of {len(self.replicas)})"
        when = f"next try in {wait:.1f} s" if wait > 0 else "next try now, on another replica"
        log.warning("%s (model %s): %s; try %d of %d failed, %s", where, self.model, failure, tries, most, when)


class ServerSession(BatchSession):
    """Requests in flight on worker threads; ``step()`` returns whatever has come back.

    Up to ``max_batch_size`` (at most the model's ``max_concurrency``) requests are in flight. ``step()`` waits a
    moment for the next response and returns early when none has arrived, so the episode runner can hand a
    finished tool call's next prompt to the server at once.
    """

    POLL = 0.02  # seconds step() waits for a response before returning to the runner

    def __init__(self, llm: ServerLLM, max_batch_size: int = 32, *, own_connections: bool = True):
        self.llm = llm
        self.max_batch_size = max(1, min(max_batch_size, llm.max_concurrency))
        # A run's session has its own connections: closing it (an error, Ctrl-C) aborts what is still in flight
        # at once instead of leaving worker threads to wait out their timeouts.
        self._link = _Link(llm._new_client() if own_connections else llm._client, threading.Event())
        self._own_connections = own_connections
        self._queue: list[tuple[Hashable, Prompt, GenerationConfig]] = []
        self._running: dict[Future, int] = {}  # future -> number of requests it answers
        self._pool = ThreadPoolExecutor(self.max_batch_size, thread_name_prefix="agentkit-server")
        self._error: BaseException | None = None
        self.trace_headers: dict[Hashable, dict[str, str]] = {}  # key -> its model call's traceparent (runtime)

    @property
    def free_slots(self) -> int:
        return max(0, self.max_batch_size - self.pending)

    @property
    def pending(self) -> int:
        # A stashed error counts as pending so that the runner calls step() again, which raises it.
        return sum(self._running.values()) + len(self._queue) + (self._error is not None)

    def add(self, key: Hashable, prompt: Prompt, config: GenerationConfig) -> None:  # type: ignore[override]
        self._queue.append((key, prompt, config))

    def step(self) -> list[tuple[Hashable, Completion]]:
        if self._error is not None:
            raise self._error
        for job in _jobs(self._queue, self.llm.accepts_n):
            headers = self.trace_headers.pop(job.keys[0], None)
            for key in job.keys[1:]:
                self.trace_headers.pop(key, None)
            self._running[self._pool.submit(self.llm._run, job, self._link, headers)] = len(job.keys)
        self._queue = []
        done, _ = wait(list(self._running), timeout=self.POLL, return_when=FIRST_COMPLETED)
        out: list[tuple[Hashable, Completion]] = []
        for future in done:
            del self._running[future]
            try:
                out.extend(future.result())
            except BaseException as exc:  # noqa: BLE001 - raised below, after handing back what did finish
                self._error = self._error or exc
        if self._error is not None and not out:
            raise self._error
        return out

    def close(self) -> None:
        self._link.cancel.set()  # type: ignore[union-attr]
        self._queue.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._own_connections:
            self._link.client.close()


def _jobs(queue: list[tuple[Hashable, Prompt, GenerationConfig]], use_n: bool) -> list[_Job]:
    """Group the queue into requests: samples of one prompt with consecutive seeds share one (``n``)."""
    jobs: list[_Job] = []
    open_groups: dict[tuple[str, str], _Job] = {}
    for key, prompt, config in queue:
        if use_n and config.do_sample:
            group_key = (
                prompt if isinstance(prompt, str) else prompt.model_dump_json(),
                config.model_copy(update={"seed": None}).key(),
            )
            job = open_groups.get(group_key)
            if job is not None and (
                (config.seed is None and job.config.seed is None)
                or (
                    config.seed is not None
                    and job.config.seed is not None
                    and config.seed == job.config.seed + len(job.keys)
                )
            ):
                job.keys.append(key)
                continue
            job = open_groups[group_key] = _Job([key], prompt, config)
            jobs.append(job)
        else:
            jobs.append(_Job([key], prompt, config))
    return jobs


def _has_tools(prompt: Prompt) -> bool:
    return isinstance(prompt, Chat) and bool(prompt.tools)


def _call(raw: Any, i: int) -> ToolCall | str:
    """A call from a response (``{"id", "type", "function": {"name", "arguments"}}``, the arguments JSON text or,
    from some servers, an object already); the ``i``-th of its reply, numbered ``call_i`` when it has no id. A call
    whose arguments are not a JSON object is the model's mistake: what is wrong with it, as text."""
    function = raw.get("function") if isinstance(raw, dict) else None
    function = function if isinstance(function, dict) else {}
    ident = (raw.get("id") if isinstance(raw, dict) else None) or f"call_{i}"
    arguments = raw_arguments = function.get("arguments")
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            pass
    name = str(function.get("name") or "")
    if not isinstance(arguments, dict):
        return f"call {i + 1}: {name or '?'}: the arguments are not a JSON object ({str(raw_arguments)[:40]!r})"
    return ToolCall(id=str(ident), name=name, arguments=arguments)


def _add_call_deltas(calls: dict[int, dict], deltas: Any) -> None:
    """Fold a stream's ``tool_calls`` deltas into ``calls`` (index -> call): the id, type and name come once, the
    arguments in pieces to be joined."""
    for position, delta in enumerate(deltas or []):
        if not isinstance(delta, dict):
            continue
        call = calls.setdefault(int(delta.get("index", position)), {"function": {"name": "", "arguments": ""}})
        call["id"] = call.get("id") or delta.get("id")
        function, piece = call["function"], delta.get("function") or {}
        function["name"] = function["name"] or piece.get("name") or ""
        arguments = piece.get("arguments")
        if isinstance(arguments, dict):  # a server that sends the whole call at once, arguments as an object
            function["arguments"] = arguments
        elif isinstance(arguments, str) and isinstance(function["arguments"], str):
            function["arguments"] += arguments


def _vllm_dialect(version: dict | None) -> str:
    """vLLM takes ``structured_outputs`` from 0.10.2 on (and ignores the ``guided_*`` it dropped in 0.12)."""
    numbers = [int(n) for n in str((version or {}).get("version", "")).split("+")[0].split(".")[:3] if n.isdigit()]
    return "vllm-guided" if numbers and tuple(numbers) < (0, 10, 2) else "vllm"


def _share(usage: dict | None, texts: list[str], count: Callable[[str], int], prompts: int) -> list[dict | None]:
    """A request's total usage shared out over its choices (by text length), for servers without per-choice usage."""
    if not usage or len(texts) == 1:
        return [usage] * len(texts)
    weights = [max(1, count(t)) for t in texts]
    total = int(usage.get("completion_tokens") or 0)
    shares = [total * w // sum(weights) for w in weights]
    shares[-1] += total - sum(shares)
    prompt_tokens = int(usage.get("prompt_tokens") or 0) // max(1, prompts)
    return [{"prompt_tokens": prompt_tokens, "completion_tokens": s} for s in shares]


def _sse(lines: Iterator[str]) -> Iterator[dict | None]:
    """Server-sent events as JSON objects; ``None`` for the closing ``[DONE]``."""
    for line in lines:
        if not line.startswith("data:"):
            continue  # blank separators, comments (": ping"), "event:" lines
        payload = line[len("data:") :].strip()
        if payload == "[DONE]":
            yield None
            return
        if payload:
            event = json.loads(payload)
            if isinstance(event, dict) and "error" in event:
                error = event["error"] if isinstance(event["error"], dict) else {}
                if isinstance(error.get("code"), int) and 400 <= error["code"] < 500 and error["code"] != 429:
                    raise _Refused(f"error event: {_message_of(event)}", error["code"], error.get("param"))
                raise _Transient(f"error event: {_message_of(event)}")
            yield event


def _server_message(response: httpx.Response) -> str:
    try:
        return _message_of(response.json())
    except ValueError:
        return _one_line(response.text) or response.reason_phrase


def _error_param(response: httpx.Response) -> str | None:
    """The ``param`` of an OpenAI-shaped error body, if any."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return None
    return error.get("param") if isinstance(error, dict) else None


def _message_of(data: Any) -> str:
    """The server's own message from OpenAI's, FastAPI's or another server's error body."""
    if isinstance(data, dict):
        for field in ("error", "detail", "message"):
            if field in data:
                return _message_of(data[field])
        return _one_line(json.dumps(data))
    if isinstance(data, list):
        return "; ".join(_message_of(d) for d in data[:3])
    return _one_line(str(data))


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: rare from model servers; the backoff applies


def _failure(exc: BaseException) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect ({_one_line(str(exc)) or 'connection refused'})"
    if isinstance(exc, ValueError):
        return f"unreadable response ({_one_line(str(exc))})"
    return _one_line(str(exc)) or type(exc).__name__
