"""``agentkit serve``: serve a model over an OpenAI-compatible HTTP API.

The port is bound before the model loads (a busy port is one error line at once, not after the load), and the
address printed is the one bound (``--port 0`` prints the free port it got). Requests are logged on stderr, one
line each (``--log-level warning`` keeps only failures, which come with their tracebacks). A host other than
loopback without ``--api-key`` gets a warning: anyone who can reach it can use the model.

Deliberately not here: the server itself (``agentkit.serving.app``) and model loading (``agentkit.models``).
"""

from __future__ import annotations

import logging

import click

from agentkit.cli.display import show_log
from agentkit.cli.options import DTYPES, model_option, pop_tracing, trace_options

API_KEY_VARIABLE = "AGENTKIT_API_KEY"


@click.command("serve", short_help="Serve a model over an OpenAI-compatible HTTP API.")
@model_option
@click.option(
    "--dtype",
    type=click.Choice(DTYPES),
    default=None,
    help="Weights dtype for a real model. Default: float32 on a CPU, where a greedy reply then does not "
    "depend on what other clients send (see docs/serving.md); auto (bfloat16) on a GPU.",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind; the default takes connections from this machine only.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    help="Port to listen on (0: a free one, printed at start).",
)
@click.option(
    "--served-model-name",
    default=None,
    metavar="NAME",
    help="The model's name in the API (default: the model's own name).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="Requests decoded together; concurrent clients share these batches.",
)
@click.option(
    "--api-key",
    envvar=API_KEY_VARIABLE,
    default=None,
    metavar="KEY",
    show_envvar=True,
    help="Answer only requests with 'Authorization: Bearer KEY' (agentkit and OpenAI clients send "
    "$AGENTKIT_API_KEY or $OPENAI_API_KEY).",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
    help="info logs every request; warning only failures.",
)
@trace_options
def serve(model_spec, dtype, host, port, served_model_name, batch_size, api_key, log_level, **kwargs):
    """Serve a model (the embedded default unless --model) at http://HOST:PORT/v1.

    Endpoints: /v1/models, /v1/completions and /v1/chat/completions, with SSE streaming, stop strings, n and
    seed; any OpenAI client can use them. Stop with Ctrl-C.
    """
    from agentkit.models import load_model
    from agentkit.serving.app import base_url, bind, is_loopback
    from agentkit.serving.app import serve as run_server

    tracing = pop_tracing(kwargs)
    sock = bind(host, port)  # before the model loads: a busy port fails now
    try:
        if not is_loopback(host) and not api_key:
            click.secho(
                f"warning: --host {host} takes connections from other machines and there is no API key: "
                f"anyone who can reach this port can use the model (set --api-key or ${API_KEY_VARIABLE})",
                fg="yellow",
                err=True,
            )
        show_log(logging.getLevelName(log_level.upper()), "agentkit.serving")
        llm = load_model(model_spec, dtype=dtype or _serving_dtype())
        name = served_model_name or llm.name
        click.echo(f"agentkit serve: {name} at {base_url(sock)} (Ctrl-C stops)", err=True)
        run_server(
            llm,
            sock,
            model_name=name,
            max_batch_size=batch_size,
            api_key=api_key,
            log_level="debug" if log_level == "debug" else "warning",
            trace=tracing,
        )
    finally:
        sock.close()


def _serving_dtype() -> str:
    """float32 on a CPU: bf16 rounding differs between batch shapes, so a client's greedy text would depend on
    the other clients' requests; float32 costs ~10% there (docs/engine.md). On a GPU, auto (bfloat16)."""
    from agentkit.engine.loading import resolve_device

    return "float32" if resolve_device("auto") == "cpu" else "auto"
