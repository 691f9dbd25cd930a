"""OpenTelemetry traces of episodes, model calls and tool calls, in the GenAI semantic conventions.

``Tracing`` turns what the episode runner (``agentkit.runtime``) sees into spans named and attributed as the
OpenTelemetry GenAI semantic conventions say (v1.38.0, status Development: the latest experimental version,
what ``OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental`` asks instrumentations for), so Phoenix,
Langfuse, Jaeger or MLflow show them as agent runs:

- ``invoke_agent {method}`` per episode (``gen_ai.operation.name``, ``gen_ai.agent.name``, the episode's token
  usage and calls, ``agentkit.failure`` when the strategy recorded one);
- ``{chat|text_completion} {model}`` per model call: ``chat`` for a ``Chat`` prompt, ``text_completion`` for
  text; the request's model and parameters (``gen_ai.request.max_tokens``, ``.temperature``, ``.top_p``,
  ``.top_k``, ``.seed``, ``.stop_sequences``), ``gen_ai.usage.input_tokens`` / ``.output_tokens``,
  ``gen_ai.response.finish_reasons`` and, where the session decodes a token per step (the engine), the time to
  the first token (``gen_ai.response.time_to_first_chunk``, seconds). The span runs from the moment the episode
  asks to its last token, whichever batch the request shared;
- ``execute_tool {tool}`` per tool call (a ReAct action, a PAL program in the sandbox);
- benchmark runs add a root span per example (``agentkit.eval.runner``) whose score is a
  ``gen_ai.evaluation.result`` event (``evaluation_event``).

Each span also carries the few OpenInference attributes (``openinference.span.kind``, ``llm.model_name``,
``llm.token_count.*``, ``tool.name``) that Arize Phoenix groups spans by. Every span is started with an explicit
parent; nothing here reads or sets the thread's current span, because one
thread drives many episodes at once. Message contents (prompts, completions, tool arguments and results) are
recorded only with ``content=True`` or ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``, as
``gen_ai.input.messages`` / ``gen_ai.output.messages`` / ``gen_ai.tool.call.arguments`` / ``.result``.

``tracing_for(trace)`` is how the library's ``trace=`` arguments become a ``Tracing``: ``None`` means off
unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set, ``True`` exports over
OTLP/HTTP to what those variables say (default ``http://localhost:4318``), a URL exports there, a
``TracerProvider`` is used as it is. OpenTelemetry (the ``otel`` extra) is imported only when tracing is on.

Deliberately not here: metrics and log events of the conventions, and spans of the engine's own batches (a
batch serves many episodes; a span belongs to one).
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

from agentkit.errors import UsageError

SEMCONV_VERSION = "1.38.0"
SCHEMA_URL = f"https://opentelemetry.io/schemas/{SEMCONV_VERSION}"
CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
ENDPOINT_ENVS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
INSTALL_HINT = "tracing needs OpenTelemetry: pip install 'agentkit[otel]'"

_providers: dict[str, Any] = {}  # one OTLP provider per endpoint in a process
_lock = threading.Lock()


def _otel():
    try:
        from opentelemetry import trace
    except ImportError:
        raise UsageError(INSTALL_HINT) from None
    return trace


def env_endpoint() -> str | None:
    """The OTLP endpoint the standard environment variables name, if any."""
    return next((os.environ[v] for v in ENDPOINT_ENVS if os.environ.get(v, "").strip()), None)


def otlp_provider(endpoint: str | None = None) -> Any:
    """A ``TracerProvider`` that batches spans to an OTLP/HTTP receiver: ``endpoint`` (a base URL such as
    ``http://localhost:6006``; ``/v1/traces`` is added) or what the ``OTEL_EXPORTER_OTLP_*`` variables say.

    One provider per endpoint is made in a process; what it still holds is sent at exit (or ``.force_flush()``).
    """
    _otel()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    where = endpoint or ""
    with _lock:
        if where not in _providers:
            url = None if endpoint is None else endpoint.rstrip("/")
            if url is not None and not url.endswith("/v1/traces"):
                url += "/v1/traces"
            resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or "agentkit"})
            provider = TracerProvider(resource=resource)
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url)))
            _providers[where] = provider
        return _providers[where]


def tracing_for(trace: Any, *, content: bool | None = None) -> Tracing | None:
    """The ``Tracing`` that a ``trace=`` argument asks for (see the module docstring), or None: off."""
    if trace is None or trace is False:
        endpoint = env_endpoint()
        return None if endpoint is None else Tracing(otlp_provider(None), content=content)
    if isinstance(trace, Tracing):
        return trace
    if trace is True:
        return Tracing(otlp_provider(None), content=content)
    if isinstance(trace, str):
        if not trace.startswith(("http://", "https://")):
            raise UsageError(f"--trace {trace}: give an OTLP/HTTP endpoint URL such as http://localhost:4318")
        return Tracing(otlp_provider(trace), content=content)
    if hasattr(trace, "get_tracer"):
        return Tracing(trace, content=content)
    raise UsageError(f"trace={trace!r}: pass True, an OTLP endpoint URL, a TracerProvider or a Tracing")


def _provider_name(llm: Any) -> str:
    """``gen_ai.provider.name``: the conventions' best-knowledge provider of the model behind ``llm``."""
    kind = type(getattr(llm, "inner", llm)).__name__
    if kind == "ServerLLM":
        return "openai"  # an OpenAI-compatible API (vLLM, SGLang, llama.cpp, agentkit serve)
    return "agentkit"  # in process: the transformers engine or a scripted model


def tool_name(fn: Any) -> str:
    """The name a tool call's span gets: the tool's ``name`` (ReAct), the class of a bound method (``sandbox``
    for PAL's program), else the function's name."""
    owner = getattr(fn, "__self__", None)
    name = getattr(owner, "name", None)
    if isinstance(name, str) and name:
        return name
    if owner is not None and not isinstance(owner, type):
        return type(owner).__name__.lower()
    return getattr(fn, "__name__", None) or type(fn).__name__


def _messages(prompt: Any) -> str:
    """A prompt as ``gen_ai.input.messages`` (role + text parts), JSON-encoded."""
    if isinstance(prompt, str):
        messages = [{"role": "user", "parts": [{"type": "text", "content": prompt}]}]
    else:
        messages = [{"role": m.role, "parts": [{"type": "text", "content": m.content}]} for m in prompt.messages]
    return json.dumps(messages, ensure_ascii=False)


class _ModelCall:
    """A model call's open span and when the episode asked (``perf_counter``), for the time to first token."""

    __slots__ = ("span", "asked")

    def __init__(self, span: Any, asked: float):
        self.span, self.asked = span, asked


class Tracing:
    """Spans for the episode runner; ``provider`` is an OpenTelemetry ``TracerProvider`` (``None``: the global one).

    ``content``: record message contents (default: ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``).
    """

    def __init__(self, provider: Any = None, *, content: bool | None = None):
        trace = _otel()
        from agentkit import __version__

        self.trace = trace
        provider = provider if provider is not None else trace.get_tracer_provider()
        self.provider = provider
        self.tracer = provider.get_tracer("agentkit", __version__, schema_url=SCHEMA_URL)
        if content is None:
            content = os.environ.get(CONTENT_ENV, "").strip().lower() in ("1", "true", "yes")
        self.content = content

    # -- the runner's hooks --------------------------------------------------------------------------------------

    def start(self, name: str, parent: Any, attributes: dict[str, Any], kind: Any = None) -> Any:
        """A span under ``parent``: a span, a context (e.g. one extracted from a ``traceparent`` header), or
        None for the root of a new trace; never the thread's current span."""
        if parent is None:
            from opentelemetry.context import Context

            context = Context()
        elif hasattr(parent, "get_span_context"):
            context = self.trace.set_span_in_context(parent)
        else:
            context = parent
        return self.tracer.start_span(
            name, context=context, kind=kind or self.trace.SpanKind.INTERNAL, attributes=attributes
        )

    def episode_started(self, info: Any) -> Any:
        agent = getattr(info, "agent", "") or ""
        attributes = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.provider.name": "agentkit",
            "openinference.span.kind": "AGENT",
        }
        if agent:
            attributes["gen_ai.agent.name"] = agent
        return self.start(f"invoke_agent {agent}".strip(), getattr(info, "parent", None), attributes)

    def episode_ended(self, span: Any, result: Any, usage: Any) -> None:
        if not span.is_recording():
            span.end()
            return
        if result.method and "gen_ai.agent.name" not in (getattr(span, "attributes", None) or {}):
            span.update_name(f"invoke_agent {result.method}")
            span.set_attribute("gen_ai.agent.name", result.method)
        span.set_attributes(
            {
                "gen_ai.usage.input_tokens": usage.input_tokens,
                "gen_ai.usage.output_tokens": usage.output_tokens,
                "agentkit.model_calls": usage.model_calls,
                "agentkit.tool_calls": usage.tool_calls,
                "agentkit.cache_hits": usage.cache_hits,
            }
        )
        if result.failure:
            span.set_attribute("agentkit.failure", result.failure)
            if result.failure.startswith("budget_"):
                span.set_attribute("error.type", result.failure)
                span.set_status(self.trace.Status(self.trace.StatusCode.ERROR, result.error or result.failure))
        if self.content:
            span.set_attribute("input.value", result.question)
            if result.answer is not None:
                span.set_attribute("output.value", result.answer)
        span.end()

    def model_started(self, episode_span: Any, llm: Any, request: Any) -> Any:
        config = request.config
        model = getattr(llm, "name", None) or type(llm).__name__
        operation = "text_completion" if isinstance(request.prompt, str) else "chat"
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "gen_ai.provider.name": _provider_name(llm),
            "gen_ai.request.model": model,
            "gen_ai.request.max_tokens": config.max_new_tokens,
            "gen_ai.request.temperature": config.temperature if config.do_sample else 0.0,
            "openinference.span.kind": "LLM",
            "llm.model_name": model,
        }
        if config.do_sample:
            attributes["gen_ai.request.top_p"] = config.top_p
            if config.top_k is not None:
                attributes["gen_ai.request.top_k"] = float(config.top_k)
            if config.seed is not None:
                attributes["gen_ai.request.seed"] = config.seed
        if config.stop:
            attributes["gen_ai.request.stop_sequences"] = list(config.stop)
        if config.constraint is not None:
            attributes["gen_ai.output.type"] = "json" if config.constraint.kind == "json_schema" else "text"
            attributes["agentkit.constraint"] = config.constraint.kind
        if self.content:
            attributes["gen_ai.input.messages"] = attributes["input.value"] = _messages(request.prompt)
        server = _provider_name(llm) == "openai"
        kind = self.trace.SpanKind.CLIENT if server else self.trace.SpanKind.INTERNAL
        return _ModelCall(self.start(f"{operation} {model}", episode_span, attributes, kind), time.perf_counter())

    def model_ended(
        self, call: _ModelCall, completion: Any, first_token: float | None, *, cached: bool = False
    ) -> None:
        span = call.span
        if span.is_recording():
            attributes: dict[str, Any] = {
                "gen_ai.response.finish_reasons": [completion.finish_reason],
                "gen_ai.usage.input_tokens": completion.prompt_tokens,
                "gen_ai.usage.output_tokens": completion.completion_tokens,
                "llm.token_count.prompt": completion.prompt_tokens,
                "llm.token_count.completion": completion.completion_tokens,
            }
            if first_token is not None:
                attributes["gen_ai.response.time_to_first_chunk"] = round(first_token - call.asked, 6)
            if cached:
                attributes["agentkit.cache_hit"] = True
            if self.content:
                attributes["output.value"] = completion.text
                attributes["gen_ai.output.messages"] = json.dumps(
                    [
                        {
                            "role": "assistant",
                            "parts": [{"type": "text", "content": completion.text}],
                            "finish_reason": completion.finish_reason,
                        }
                    ],
                    ensure_ascii=False,
                )
            span.set_attributes(attributes)
        span.end()

    def headers(self, call: _ModelCall) -> dict[str, str]:
        """The W3C ``traceparent`` (and ``tracestate``) that makes a server's spans children of this model call."""
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        carrier: dict[str, str] = {}
        TraceContextTextMapPropagator().inject(carrier, context=self.trace.set_span_in_context(call.span))
        return carrier

    def tool_started(self, episode_span: Any, call: Any) -> Any:
        name = tool_name(call.fn)
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": name,
            "gen_ai.tool.type": "function",
            "openinference.span.kind": "TOOL",
            "tool.name": name,
        }
        if self.content:
            attributes["gen_ai.tool.call.arguments"] = json.dumps(
                {"args": [repr(a) for a in call.args], "kwargs": {k: repr(v) for k, v in call.kwargs.items()}}
            )
        return self.start(f"execute_tool {name}", episode_span, attributes)

    def tool_ended(self, span: Any, value: Any, error: BaseException | None) -> None:
        if span.is_recording():
            if error is not None:
                span.set_attribute("error.type", type(error).__qualname__)
                span.set_status(self.trace.Status(self.trace.StatusCode.ERROR, str(error)[:300]))
            elif self.content:
                span.set_attribute("gen_ai.tool.call.result", str(value)[:10_000])
        span.end()

    def dropped(self, span: Any) -> None:
        """End a span whose episode stopped waiting for it (a budget, or the run ended with an error)."""
        if span is None:
            return
        span = getattr(span, "span", span)
        if span.is_recording():
            span.set_attribute("agentkit.dropped", True)
        span.end()

    # -- benchmark runs --------------------------------------------------------------------------------------------

    def example_started(self, example_id: str, method: str, run_dir: str | None, index: int) -> Any:
        """The root span of one example of a benchmark run."""
        attributes = {
            "agentkit.example.id": example_id,
            "agentkit.example.index": index,
            "agentkit.method": method,
            "gen_ai.agent.name": method,
            "openinference.span.kind": "CHAIN",
        }
        if run_dir is not None:
            attributes["agentkit.run_dir"] = run_dir
        return self.start(f"example {example_id} {method}", None, attributes)

    def example_ended(self, span: Any, record: dict[str, Any]) -> None:
        """Score the example: a ``gen_ai.evaluation.result`` event on its root span, which ends."""
        span.add_event("gen_ai.evaluation.result", evaluation_attributes(record))
        if record.get("failure"):
            span.set_attribute("agentkit.failure", record["failure"])
        if self.content:  # what Phoenix's trace list shows for a trace: its root's input and output
            span.set_attribute("input.value", str(record.get("question") or ""))
            if record.get("answer") is not None:
                span.set_attribute("output.value", str(record["answer"]))
        span.end()


def evaluation_attributes(record: dict[str, Any]) -> dict[str, Any]:
    """The ``gen_ai.evaluation.result`` event's attributes for a scored benchmark record."""
    attributes: dict[str, Any] = {
        "gen_ai.evaluation.name": "correct",
        "gen_ai.evaluation.score.value": 1.0 if record.get("correct") else 0.0,
        "gen_ai.evaluation.score.label": "correct" if record.get("correct") else "incorrect",
    }
    if record.get("kind") == "text" and record.get("f1") is not None:
        attributes["agentkit.evaluation.f1"] = float(record["f1"])
    if record.get("failure"):
        attributes["gen_ai.evaluation.explanation"] = f"{record['failure']}: {record.get('error') or ''}"[:500]
    return attributes
