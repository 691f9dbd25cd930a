"""``agentkit serve``: any agentkit model behind an OpenAI-compatible HTTP API (FastAPI + uvicorn).

Endpoints: ``GET /v1/models``, ``POST /v1/completions`` (a prompt or a list of prompts, ``n``, ``seed``, ``stop``,
``max_tokens``, ``temperature``, ``top_p``, ``top_k``, SSE ``stream``) and ``POST /v1/chat/completions`` (messages
rendered with the model's chat template, ``continue_final_message``/``add_generation_prompt``).

One engine thread owns the model: it keeps one ``llm.session()`` that every request's rows join, so concurrent
clients share the in-process engine's continuous batches (and its prefix cache), and it advances streamed
requests between the session's steps. The web handlers only queue work for it and await the results.

Sampling follows the OpenAI API: ``temperature`` 0 is greedy, anything else samples (the default is 1). The ``n``
samples of a prompt get seeds ``seed``, ``seed + 1``, ..., so ``n = 5, seed = s`` returns exactly what five
requests with seeds s..s+4 return, as agentkit's self-consistency asks for them in-process. Each choice also
carries its own ``usage`` (an agentkit extension; see ``agentkit.serving.protocol``).

A request the server cannot take (a bad or unknown field, a prompt plus ``max_tokens`` beyond the model's context,
an unknown model, a chat for a model without a chat template) is answered with OpenAI's JSON error shape
(``{"error": {"message", "type", "param", "code"}}``) and status 400 (401 without the API key, 404 for an unknown
model or path); so is a model failure (500, logged with its traceback). Every request is logged (``agentkit.serving``
at INFO: client, method, path, status, milliseconds). With ``api_key`` every request needs ``Authorization: Bearer
KEY``.

Constraints: a request may carry one, in any of the fields ``agentkit.serving.protocol`` lists (OpenAI's
``response_format``, vLLM's ``structured_outputs`` and ``guided_*``, llama.cpp's ``grammar`` / ``json_schema``,
agentkit's ``constraint``); it becomes ``GenerationConfig.constraint`` and the model behind the server enforces it.
One that does not compile, or that the model cannot honour, is a 400 whose ``param`` names the field
(``constraint`` for the model's refusal), in a stream too (as its error event).

Tool calls: a chat request's ``tools``, ``tool_choice`` and ``parallel_tool_calls`` go through
``agentkit.toolcalls.lower`` (the tools rendered by the model's chat template, and the grammar that makes a call
parse against its function's schema as the model's constraint) and the reply through ``lift``; the response has
OpenAI's ``message.tool_calls`` (arguments as JSON text) and ``finish_reason`` ``"tool_calls"``. A stream sends the
text before the calls as content deltas, then each call as ``tool_calls`` deltas (index, id and name, then its
arguments). A model that makes tool calls itself (``native_tools``) gets the chat as it came.

Deliberately not here: TLS, rate limiting and multi-model routing (put a proxy in front), logprobs, cancelling a
non-streamed request whose client went away (its rows finish in the batch).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import queue
import re
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException

from agentkit import grammar
from agentkit.errors import UsageError
from agentkit.llm import (
    LLM,
    Chat,
    Completion,
    Constraint,
    ConstraintRefused,
    GenerationConfig,
    Message,
    Prompt,
    ToolCall,
    partial_stop_suffix,
)
from agentkit.serving.protocol import (
    CONSTRAINT_FIELDS,
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionChoice,
    CompletionChunk,
    CompletionRequest,
    CompletionResponse,
    Delta,
    ErrorBody,
    ErrorResponse,
    FunctionCall,
    FunctionDelta,
    ModelCard,
    ModelList,
    ToolCallDelta,
    ToolCallItem,
    Usage,
)

log = logging.getLogger("agentkit.serving")


class BadRequest(Exception):
    """A request the server refuses (or, with status 500, could not serve); becomes an OpenAI-style JSON error."""

    def __init__(self, message: str, status: int = 400, param: str | None = None):
        super().__init__(message)
        self.status = status
        self.param = param


@dataclass
class _Stream:
    """A streamed request: the engine thread pushes pieces, then the final Completion (or an exception)."""

    prompt: Prompt
    config: GenerationConfig
    loop: asyncio.AbstractEventLoop
    out: asyncio.Queue
    cancelled: threading.Event = field(default_factory=threading.Event)
    gen: Generator[str, None, Any] | None = None

    def put(self, item: Any) -> None:
        self.loop.call_soon_threadsafe(self.out.put_nowait, item)


class EngineLoop:
    """The one thread that touches the model: a shared session for plain requests, interleaved streams."""

    def __init__(self, llm: LLM, max_batch_size: int = 32):
        self.llm = llm
        self.max_batch_size = max_batch_size
        self._inbox: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="agentkit-serve-engine", daemon=True)
        self._stopped = threading.Event()
        self._thread.start()

    def submit(self, prompt: Prompt, config: GenerationConfig) -> Future:
        future: Future = Future()
        self._inbox.put(("generate", prompt, config, future))
        return future

    def stream(self, stream: _Stream) -> None:
        self._inbox.put(("stream", stream))

    def stop(self) -> None:
        self._stopped.set()
        self._inbox.put(("stop",))
        self._thread.join(timeout=10)

    def _run(self) -> None:
        session = self.llm.session(self.max_batch_size)
        waiting: list[tuple[Prompt, GenerationConfig, Future]] = []
        futures: dict[int, Future] = {}
        streams: list[_Stream] = []
        ids = iter(range(1 << 62))
        used = False  # the session has taken rows since it was made
        try:
            while not self._stopped.is_set():
                idle = not waiting and not session.pending and not streams
                try:
                    item = self._inbox.get(timeout=0.5) if idle else self._inbox.get_nowait()
                except queue.Empty:
                    item = None
                while item is not None:
                    if item[0] == "stop":
                        return
                    if item[0] == "generate":
                        waiting.append(item[1:])
                    else:
                        streams.append(item[1])
                    try:
                        item = self._inbox.get_nowait()
                    except queue.Empty:
                        item = None
                while waiting and session.free_slots > 0:
                    prompt, config, future = waiting.pop(0)
                    if not future.set_running_or_notify_cancel():
                        continue  # its client went away before the request reached the engine
                    key = next(ids)
                    try:
                        session.add(key, prompt, config)
                    except Exception as exc:  # noqa: BLE001 - a prompt the model refuses (e.g. empty)
                        future.set_exception(exc)
                        continue
                    futures[key] = future
                    used = True
                if session.pending:
                    try:
                        finished = session.step()
                    except Exception as exc:  # noqa: BLE001 - fail the batch's requests, keep serving
                        for future in futures.values():
                            future.set_exception(exc)
                        futures.clear()
                        session.close()
                        session = self.llm.session(self.max_batch_size)
                        finished = []
                    for key, completion in finished:
                        futures.pop(key).set_result(completion)
                for stream in list(streams):
                    if not self._advance(stream):
                        streams.remove(stream)
                if used and not waiting and not session.pending:
                    # Idle: a fresh session, so the server does not keep the KV buffers of its longest request.
                    session.close()
                    session, used = self.llm.session(self.max_batch_size), False
        finally:
            session.close()
            for stream in streams:
                if stream.gen is not None:
                    stream.gen.close()

    def _advance(self, stream: _Stream) -> bool:
        """Produce the stream's next piece; False once it is over (finished, failed or abandoned)."""
        try:
            if stream.cancelled.is_set():
                if stream.gen is not None:
                    stream.gen.close()
                return False
            if stream.gen is None:
                stream.gen = self.llm.stream(stream.prompt, stream.config)
            piece = next(stream.gen)
        except StopIteration as stop:
            stream.put(
                stop.value
                if isinstance(stop.value, Completion)
                else TypeError(
                    f"{self.llm!r}.stream returned {stop.value!r}; a model's stream must return its Completion"
                )
            )
            return False
        except Exception as exc:  # noqa: BLE001 - reported to the client as an error event
            stream.put(exc)
            return False
        stream.put(piece)
        return True


def create_app(
    llm: LLM, *, model_name: str | None = None, max_batch_size: int = 32, api_key: str | None = None, trace: Any = None
) -> FastAPI:
    """The FastAPI app serving ``llm`` under ``model_name`` (default: the model's own name); with ``api_key``,
    only to clients that send it as a bearer token. ``trace`` (see ``agentkit.tracing.tracing_for``) gives every
    completion request a server span (``agentkit.serving.traced``)."""
    name = model_name or llm.name
    engine: dict[str, EngineLoop] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        loop()
        yield
        engine.pop("loop").stop()

    app = FastAPI(title="agentkit", summary=f"agentkit serving {name} (OpenAI-compatible)", lifespan=lifespan)
    from agentkit.tracing import tracing_for

    tracing = tracing_for(trace)
    if tracing is not None:
        from agentkit.serving.traced import instrument

        instrument(app, tracing, name)
    app.add_middleware(_Gate, api_key=api_key)  # added last, so outermost: a refused key gets no span

    def loop() -> EngineLoop:
        if "loop" not in engine:  # an app used without its lifespan (e.g. some test clients)
            engine["loop"] = EngineLoop(llm, max_batch_size)
        return engine["loop"]

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _invalid_request(exc)

    @app.exception_handler(BadRequest)
    async def _bad(_: Request, exc: BadRequest) -> JSONResponse:
        return _error(str(exc), exc.status, exc.param)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:  # no such path, or wrong method
        return _error(f"{request.method} {request.url.path}: {exc.detail}", exc.status_code)

    @app.exception_handler(Exception)
    async def _crash(_: Request, exc: Exception) -> JSONResponse:  # a bug: the server logs its traceback too
        return _error(" ".join(f"internal error: {type(exc).__name__}: {exc}".split()), 500)

    @app.get("/v1/models")
    async def models() -> ModelList:
        return ModelList(data=[ModelCard(id=name)])

    @app.post("/v1/completions", response_model=None)
    async def completions(request: CompletionRequest) -> CompletionResponse | StreamingResponse:
        _check_model(request.model, name)
        config = _config(request, request.max_tokens)
        prompts = [request.prompt] if isinstance(request.prompt, str) else request.prompt
        for prompt in prompts:
            _check_context(llm, prompt, config.max_new_tokens)
        if request.stream:
            if len(prompts) != 1 or request.n != 1:
                raise BadRequest("stream: agentkit serve streams one prompt with n=1", param="stream")
            return _sse(_stream_events(loop(), prompts[0], config, name, chat=False, usage=_usage_wanted(request)))
        completions = await _generate(loop(), prompts, config, request.n)
        choices = [
            CompletionChoice(index=i, text=c.text, finish_reason=c.finish_reason, usage=_usage(c))
            for i, c in enumerate(completions)
        ]
        return CompletionResponse(model=name, choices=choices, usage=_total(completions, request.n))

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(request: ChatCompletionRequest) -> ChatCompletionResponse | StreamingResponse:
        _check_model(request.model, name)
        chat = _chat(request)
        config = _config(request, request.max_completion_tokens or request.max_tokens)
        prompt, config, lift = _lower(llm, chat, config, request)
        _check_context(llm, prompt, config.max_new_tokens)
        if request.stream:
            if request.n != 1:
                raise BadRequest("stream: agentkit serve streams with n=1", param="stream")
            events = _stream_events(loop(), prompt, config, name, chat=True, usage=_usage_wanted(request), lift=lift)
            return _sse(events)
        completions = await _generate(loop(), [prompt], config, request.n)
        completions = [lift(c) for c in completions] if lift is not None else completions
        choices = [
            ChatChoice(
                index=i,
                message=AssistantMessage(
                    content=c.text if c.text or not c.tool_calls else None, tool_calls=_call_items(c) or None
                ),
                finish_reason=_finish(c),
                usage=_usage(c),
            )
            for i, c in enumerate(completions)
        ]
        return ChatCompletionResponse(model=name, choices=choices, usage=_total(completions, request.n))

    return app


def _error(message: str, status: int, param: str | None = None) -> JSONResponse:
    kind = {401: "authentication_error", 404: "not_found_error"}.get(status, "invalid_request_error")
    body = ErrorResponse(
        error=ErrorBody(message=message, type="server_error" if status >= 500 else kind, param=param, code=status)
    )
    return JSONResponse(body.model_dump(), status_code=status)


def _invalid_request(exc: RequestValidationError) -> JSONResponse:
    """The first validation error as one line naming the field: a bad value, an unknown field, or a body that is
    not JSON."""
    first = exc.errors()[0] if exc.errors() else {}
    kind = first.get("type", "")
    if kind == "json_invalid":
        return _error(f"the request body is not valid JSON ({first.get('msg', 'decode error')})", 400)
    where = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
    what = str(first.get("msg", exc)).removeprefix("Value error, ")
    if kind == "extra_forbidden":
        what = "unknown field; agentkit serve does not take it (docs/serving.md lists the fields it takes)"
    return _error(f"{where}: {what}" if where else what, 400, where)


class _Gate:
    """ASGI middleware: the API-key check (when there is a key), then one access-log line per request."""

    def __init__(self, app: Any, api_key: str | None = None):
        self.app = app
        self.expected = f"Bearer {api_key}".encode() if api_key else None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), [500]

        async def sending(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            given = dict(scope.get("headers") or ()).get(b"authorization", b"")
            if self.expected is not None and not hmac.compare_digest(given, self.expected):
                refusal = _error(
                    "a valid API key is needed: send it as 'Authorization: Bearer KEY' (agentkit "
                    "clients take it from $AGENTKIT_API_KEY or $OPENAI_API_KEY)",
                    401,
                )
                await refusal(scope, receive, sending)
            else:
                await self.app(scope, receive, sending)
        finally:
            client = scope.get("client")
            where = f"{client[0]}:{client[1]}" if client else "-"
            log.info(
                '%s "%s %s" %d %.0f ms',
                where,
                scope["method"],
                scope["path"],
                status[0],
                1000 * (time.perf_counter() - start),
            )


def _check_model(requested: str | None, name: str) -> None:
    if requested and requested != name:
        raise BadRequest(f"The model `{requested}` does not exist; this server serves `{name}`", 404, "model")


def _config(request: CompletionRequest | ChatCompletionRequest, max_tokens: int | None) -> GenerationConfig:
    sample = request.temperature > 0
    try:
        return GenerationConfig(
            max_new_tokens=max_tokens or 256,
            do_sample=sample,
            temperature=request.temperature if sample else 1.0,
            top_p=request.top_p,
            top_k=request.top_k,
            seed=request.seed,
            stop=request.stop or [],
            constraint=_constraint(request),
        )
    except ValueError as exc:
        raise BadRequest(" ".join(str(exc).split())) from None


def _prompt_tokens(llm: LLM, prompt: str) -> int:
    encode = getattr(llm, "encode", None)  # the engine's own count, BOS included; else the model's estimate
    return len(encode(prompt)) if callable(encode) else llm.count_tokens(prompt)


def _check_context(llm: LLM, prompt: Prompt, max_tokens: int) -> None:
    """A 400 for a prompt plus ``max_tokens`` beyond the model's context (``context_length``), as vLLM answers."""
    limit = getattr(llm, "context_length", None)
    if not limit:
        return
    used = _prompt_tokens(llm, prompt if isinstance(prompt, str) else llm.render(prompt))
    if used + max_tokens > limit:
        fix = f"ask for at most {limit - used}" if used < limit else "shorten the prompt"
        raise BadRequest(
            f"max_tokens {max_tokens} is too large: this model's context is {limit} tokens and the "
            f"prompt has {used} ({max_tokens} > {limit} - {used}); {fix}",
            param="max_tokens",
        )


def _constraint(request: CompletionRequest | ChatCompletionRequest) -> Constraint | None:
    """The request's constraint from whichever server's field carries it; a 400 naming the field when there are
    several, or the one given is malformed or does not compile."""
    given = [f for f in CONSTRAINT_FIELDS if getattr(request, f) is not None]
    if request.response_format is not None and request.response_format.type == "text":
        given.remove("response_format")  # OpenAI's default: no constraint
    if len(given) > 1:
        raise BadRequest(f"{' and '.join(given)}: a request takes one constraint", param=given[1])
    if not given:
        return None
    try:
        constraint = _constraint_of(given[0], getattr(request, given[0]))
        grammar.grammar(constraint)
    except ValueError as exc:  # pydantic's ValidationError and agentkit's UsageError included
        raise BadRequest(f"{given[0]}: {' '.join(str(exc).split())}", param=given[0]) from None
    return constraint


def _constraint_of(field: str, value: Any) -> Constraint:
    """The ``Constraint`` that ``value``, the request's ``field``, asks for."""
    if field == "constraint":
        return value
    if field == "response_format":
        if value.type == "json_object":
            return Constraint(json_schema={"type": "object"})
        if value.json_schema is None:
            raise ValueError("type json_schema needs a json_schema object with the schema")
        return Constraint(json_schema=value.json_schema.schema_)
    if field == "structured_outputs":
        given = {k: v for k, v in value.model_dump(exclude_none=True).items() if v is not False}
        if len(given) != 1:
            raise ValueError("give exactly one of regex, json, grammar, choice, json_object")
        ((key, value),) = given.items()
        field = {
            "regex": "guided_regex",
            "json_": "guided_json",
            "grammar": "guided_grammar",
            "choice": "guided_choice",
            "json_object": "json_object",
        }[key]
    if field == "json_object":
        return Constraint(json_schema={"type": "object"})
    if field == "guided_regex":
        return Constraint(regex=value)
    if field == "guided_choice":
        return Constraint(regex="|".join(f"({grammar.regex_literal(choice)})" for choice in value))
    if field in ("guided_json", "json_schema"):
        return Constraint(json_schema=json.loads(value) if isinstance(value, str) else value)
    from llguidance.gbnf_to_lark import any_to_lark  # GBNF (llama.cpp, xgrammar) to Lark; Lark stays

    try:
        return Constraint(lark=any_to_lark(value))
    except Exception as exc:  # noqa: BLE001 - the converter raises its own error types
        raise ValueError(f"not a Lark or GBNF grammar ({exc})") from None


def _chat(request: ChatCompletionRequest) -> Chat:
    """The request's conversation and tools as an ``agentkit.llm.Chat``; a call whose arguments are not a JSON
    object is a 400 naming it."""
    messages = []
    for i, m in enumerate(request.messages):
        calls = []
        for j, call in enumerate(m.tool_calls or []):
            try:
                arguments = json.loads(call.function.arguments or "{}")
            except ValueError:
                arguments = None
            if not isinstance(arguments, dict):
                where = f"messages.{i}.tool_calls.{j}.function.arguments"
                raise BadRequest(f"{where}: not a JSON object ({call.function.arguments[:40]!r})", param=where)
            calls.append(ToolCall(id=call.id, name=call.function.name, arguments=arguments))
        messages.append(
            Message(role=m.role, content=m.text(), tool_calls=tuple(calls), tool_call_id=m.tool_call_id, name=m.name)
        )
    return Chat(
        messages=tuple(messages),
        tools=tuple(t.model_dump(exclude_none=True) for t in request.tools or ()),
        tool_choice=request.tool_choice_name,
        parallel_tool_calls=request.parallel_tool_calls,
    )


def _lower(
    llm: LLM, chat: Chat, config: GenerationConfig, request: ChatCompletionRequest
) -> tuple[Prompt, GenerationConfig, Callable[[Completion], Completion] | None]:
    """What the model is given for ``chat`` and how its completions are read: the rendered text as it is, or,
    with tools, ``toolcalls.lower``'s prompt and constraint and ``lift`` (a model with its own tool calls gets the
    chat itself)."""
    _check_turns(request, chat)
    if not chat.tools:
        return _render(llm, chat), config, None
    if llm.native_tools:
        return chat, config, None
    if config.constraint is not None:
        given = next(f for f in CONSTRAINT_FIELDS if getattr(request, f) is not None)
        raise BadRequest(f"tools and {given}: a request takes tools or a constraint, not both", param=given)
    from agentkit import toolcalls

    try:
        prompt, config = toolcalls.lower(llm, chat, config)
    except ValueError as exc:  # the chat template's refusal (or none at all), as without tools
        raise BadRequest(" ".join(str(exc).split()), param="messages") from None
    return prompt, config, lambda c: toolcalls.lift(llm, chat, c)


def _call_items(completion: Completion) -> list[ToolCallItem]:
    """A completion's calls as OpenAI sends them: arguments as JSON text, and ids unique beyond the reply."""
    return [
        ToolCallItem(
            id=_call_id(call),
            function=FunctionCall(name=call.name, arguments=json.dumps(call.arguments, ensure_ascii=False)),
        )
        for call in completion.tool_calls
    ]


def _finish(completion: Completion) -> str:
    """OpenAI's finish reason: ``length`` where the token limit cut the reply (a call it cut is lost), else
    ``tool_calls`` for a reply with calls."""
    return "tool_calls" if completion.tool_calls and completion.finish_reason == "stop" else completion.finish_reason


def _call_id(call: ToolCall) -> str:
    """The model's own id for a call where it wrote one; else a fresh one (a reply's ``call_0`` numbering would
    repeat in every turn of a conversation)."""
    return f"call_{uuid.uuid4().hex[:24]}" if re.fullmatch(r"call_\d+", call.id) else call.id


def _check_turns(request: ChatCompletionRequest, chat: Chat) -> None:
    last = chat.messages[-1].role
    if request.continue_final_message and last != "assistant":
        raise BadRequest("continue_final_message needs the last message to be the assistant's", param="messages")
    if request.continue_final_message and request.add_generation_prompt:
        raise BadRequest(
            "continue_final_message and add_generation_prompt cannot both be true", param="add_generation_prompt"
        )
    if last == "assistant" and not request.continue_final_message:
        raise BadRequest(
            "the last message is the assistant's: pass continue_final_message=true and "
            "add_generation_prompt=false to continue it",
            param="messages",
        )


def _render(llm: LLM, chat: Chat) -> str:
    try:
        return llm.render(chat)
    except ValueError as exc:
        raise BadRequest(" ".join(str(exc).split()), param="messages") from None


async def _generate(engine: EngineLoop, prompts: list[Prompt], config: GenerationConfig, n: int) -> list[Completion]:
    """Every prompt's ``n`` samples (seeds ``seed + j``), in the order OpenAI numbers choices."""
    futures = []
    for prompt in prompts:
        for j in range(n):
            sample = config if j == 0 or config.seed is None else config.model_copy(update={"seed": config.seed + j})
            futures.append(asyncio.wrap_future(engine.submit(prompt, sample)))
    try:
        return list(await asyncio.gather(*futures))
    except ConstraintRefused as exc:
        raise BadRequest(" ".join(str(exc).split()), param="constraint") from None
    except ValueError as exc:
        raise BadRequest(" ".join(str(exc).split()), param="prompt") from None
    except Exception as exc:  # noqa: BLE001 - the model failed, not the request: a 500 clients retry
        log.error("the model failed on a request: %s: %s", type(exc).__name__, exc, exc_info=exc)
        raise BadRequest(" ".join(f"{type(exc).__name__}: {exc}".split()), 500) from exc


def _usage(c: Completion) -> Usage:
    return Usage.of(c.prompt_tokens, c.completion_tokens)


def _total(completions: list[Completion], n: int) -> Usage:
    # A prompt counts once however many samples it has (as vLLM counts it).
    return Usage.of(sum(c.prompt_tokens for c in completions[::n]), sum(c.completion_tokens for c in completions))


def _usage_wanted(request: CompletionRequest | ChatCompletionRequest) -> bool:
    return bool(request.stream_options and request.stream_options.include_usage)


def _sse(events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


async def _stream_events(
    engine: EngineLoop,
    prompt: Prompt,
    config: GenerationConfig,
    name: str,
    *,
    chat: bool,
    usage: bool,
    lift: Callable[[Completion], Completion] | None = None,
) -> AsyncIterator[str]:
    """The SSE events of one streamed completion, ending with ``data: [DONE]``. With ``lift`` (a chat with
    tools), the text up to where a call opens streams as content and the calls follow as ``tool_calls`` deltas."""
    stream = _Stream(prompt, config, asyncio.get_running_loop(), asyncio.Queue())
    engine.stream(stream)
    ident = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
    text, sent = "", 0
    constraint = config.constraint if lift is not None else None
    call_opens = constraint.after if constraint is not None else None  # the literal that opens a call

    def event(
        piece: str | None,
        finish: str | None = None,
        totals: Usage | None = None,
        calls: list[ToolCallDelta] | None = None,
    ) -> str:
        if chat:
            delta = Delta(content=piece, tool_calls=calls)
            choices = [] if totals else [ChatChunkChoice(delta=delta, finish_reason=finish)]
            chunk: Any = ChatCompletionChunk(id=ident, model=name, choices=choices, usage=totals)
        else:
            choices = [] if totals else [CompletionChoice(index=0, text=piece or "", finish_reason=finish)]
            chunk = CompletionChunk(id=ident, model=name, choices=choices, usage=totals)
        return f"data: {chunk.model_dump_json(exclude_none=chat)}\n\n"

    try:
        if chat:  # OpenAI opens a chat stream with the assistant's role
            opening = ChatCompletionChunk(
                id=ident, model=name, choices=[ChatChunkChoice(delta=Delta(role="assistant"))]
            )
            yield f"data: {opening.model_dump_json(exclude_none=True)}\n\n"
        while True:
            item = await stream.out.get()
            if isinstance(item, Exception):
                if not isinstance(item, ConstraintRefused):
                    log.error("the model failed on a stream: %s: %s", type(item).__name__, item, exc_info=item)
                yield f"data: {_stream_error(item).model_dump_json()}\n\n"
                return
            if isinstance(item, Completion):
                if lift is not None:
                    item = lift(item)
                    if item.text.startswith(text[:sent]) and len(item.text) > sent:
                        yield event(item.text[sent:])  # the text held back, now known not to be a call
                for i, call in enumerate(_call_items(item)):  # each call: its id and name, then its arguments
                    named = FunctionDelta(name=call.function.name, arguments="")
                    yield event(None, calls=[ToolCallDelta(index=i, id=call.id, type="function", function=named)])
                    arguments = FunctionDelta(arguments=call.function.arguments)
                    yield event(None, calls=[ToolCallDelta(index=i, function=arguments)])
                yield event("" if not chat else None, _finish(item))
                if usage:
                    yield event(None, totals=_usage(item))
                yield "data: [DONE]\n\n"
                return
            if lift is None:
                yield event(item)
                continue
            text += item  # with tools: hold back what may be (or is) a call
            shown = "" if constraint is not None and call_opens is None else text  # a call from the first token
            if call_opens is not None:
                shown = shown.split(call_opens, 1)[0]
                shown = shown[: len(shown) - partial_stop_suffix(shown, [call_opens])].rstrip()
            if len(shown) > sent:
                yield event(shown[sent:])
                sent = len(shown)
    finally:
        stream.cancelled.set()  # the client went away, or the stream is over: the engine drops it


def _stream_error(exc: Exception) -> ErrorResponse:
    """A stream's error event: the model's refusal of a constraint is the client's error (400), the rest the
    server's."""
    message = " ".join(str(exc).split())
    if isinstance(exc, ConstraintRefused):
        return ErrorResponse(error=ErrorBody(message=message, param="constraint", code=400))
    return ErrorResponse(error=ErrorBody(message=message, type="server_error"))


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (``port=0``: a free one), not yet listening: bound before a model loads, so a
    busy port fails at once, and connections are refused (not left waiting) until the server is up."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: past TIME_WAIT, not a listener
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UsageError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc} (choose another port, or port 0 for a free one)"
        ) from None
    return sock


def base_url(sock: socket.socket) -> str:
    """``http://HOST:PORT/v1`` for a bound socket: the port it really got."""
    host, port = sock.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/v1"


def is_loopback(host: str) -> bool:
    """Whether ``host`` takes connections from this machine only (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def _server(llm: LLM, sock: socket.socket, log_level: str, options: dict[str, Any]) -> Any:
    import uvicorn

    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(
        create_app(llm, **options),
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=5,
    )  # in-flight requests get 5 s on Ctrl-C or SIGTERM
    return uvicorn.Server(config)


@contextlib.contextmanager
def running(llm: LLM, *, host: str = "127.0.0.1", port: int = 0, **options: Any) -> Iterator[str]:
    """Serve ``llm`` on a background thread for the block (``port=0``: a free one); yields the base URL.

    For tests and notebooks: ``with running(llm) as url: ServerLLM(url)``. ``options`` go to ``create_app``.
    """
    sock = bind(host, port)
    server = _server(llm, sock, "warning", options)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="agentkit-serve", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise OSError(f"agentkit serve could not start on {base_url(sock)}")
        time.sleep(0.01)
    try:
        yield base_url(sock)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


def serve(
    llm: LLM,
    sock: socket.socket | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    model_name: str | None = None,
    max_batch_size: int = 32,
    api_key: str | None = None,
    log_level: str = "warning",
    trace: Any = None,
) -> None:
    """Serve ``llm`` on ``sock`` (from ``bind``; default: bind ``host:port``) until interrupted (Ctrl-C);
    ``log_level`` is uvicorn's own, ``trace`` as in ``create_app``."""
    sock = sock or bind(host, port)
    options = dict(model_name=model_name, max_batch_size=max_batch_size, api_key=api_key, trace=trace)
    _server(llm, sock, log_level, options).run(sockets=[sock])


__all__ = ["BadRequest", "EngineLoop", "base_url", "bind", "create_app", "is_loopback", "running", "serve"]
