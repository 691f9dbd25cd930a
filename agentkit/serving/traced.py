"""Server-side spans for ``agentkit serve --trace``: one span per completion request, joined to the client's trace.

``instrument(app, tracing, model_name)`` adds an HTTP middleware to the app: a request to ``/v1/completions``
or ``/v1/chat/completions`` gets a ``SERVER`` span named ``{text_completion|chat} {model}`` (the GenAI
conventions' inference span, see ``agentkit.tracing``) whose parent is the W3C ``traceparent`` the client sent
(``ServerLLM`` sends its model call's), so a benchmark's trace shows the server's work under each call. The span
lasts until the last byte of the response, a stream's included; it records the status code and, from a JSON
response, the token usage and finish reasons.

Deliberately not here: spans of the engine's batches (they serve many requests), and request contents.
"""

from __future__ import annotations

import json
from typing import Any

PATHS = {"/v1/completions": "text_completion", "/v1/chat/completions": "chat"}


def instrument(app: Any, tracing: Any, model_name: str) -> None:
    """Trace every completion request ``app`` serves (see the module docstring)."""
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    propagator = TraceContextTextMapPropagator()

    @app.middleware("http")
    async def trace_request(request: Any, call_next: Any) -> Any:
        operation = PATHS.get(request.url.path)
        if operation is None or request.method != "POST":
            return await call_next(request)
        parent = propagator.extract(dict(request.headers))
        attributes = {
            "gen_ai.operation.name": operation,
            "gen_ai.provider.name": "agentkit",
            "gen_ai.request.model": model_name,
            "http.request.method": "POST",
            "url.path": request.url.path,
        }
        if request.url.port is not None:
            attributes.update({"server.address": request.url.hostname or "", "server.port": request.url.port})
        span = tracing.start(f"{operation} {model_name}", parent, attributes, tracing.trace.SpanKind.SERVER)
        try:
            response = await call_next(request)
        except BaseException as exc:
            span.set_attribute("error.type", type(exc).__qualname__)
            span.end()
            raise
        span.set_attribute("http.response.status_code", response.status_code)
        if response.status_code >= 400:
            span.set_attribute("error.type", str(response.status_code))
        body = response.body_iterator
        streamed = "json" not in (response.headers.get("content-type") or "")

        async def finishing() -> Any:
            chunks = []
            try:
                async for chunk in body:
                    if not streamed:
                        chunks.append(chunk)
                    yield chunk
            finally:
                if chunks:
                    _usage(span, b"".join(c if isinstance(c, bytes) else c.encode() for c in chunks))
                span.end()

        response.body_iterator = finishing()
        return response


def _usage(span: Any, body: bytes) -> None:
    """Token usage and finish reasons from an OpenAI-style JSON response."""
    try:
        data = json.loads(body)
    except ValueError:
        return
    usage = data.get("usage") or {}
    if "prompt_tokens" in usage:
        span.set_attribute("gen_ai.usage.input_tokens", int(usage["prompt_tokens"]))
    if "completion_tokens" in usage:
        span.set_attribute("gen_ai.usage.output_tokens", int(usage["completion_tokens"]))
    reasons = [c.get("finish_reason") for c in data.get("choices") or [] if c.get("finish_reason")]
    if reasons:
        span.set_attribute("gen_ai.response.finish_reasons", reasons)
