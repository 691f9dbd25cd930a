"""``agentkit serve``: serve a model over an OpenAI-compatible HTTP API.

Deliberately not here: the server itself (``agentkit.serving.app``) and model loading (``agentkit.models``).
"""

from __future__ import annotations

import click

from agentkit.cli.options import dtype_option, model_option, pop_tracing, trace_options


@click.command("serve", short_help="Serve a model over an OpenAI-compatible HTTP API.")
@model_option
@dtype_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; the default takes connections from this machine only.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port to listen on.")
@click.option("--served-model-name", default=None, metavar="NAME",
              help="The model's name in the API (default: the model's own name).")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
              help="Requests decoded together; concurrent clients share these batches.")
@trace_options
def serve(model_spec, dtype, host, port, served_model_name, batch_size, **kwargs):
    """Serve a model (the embedded default unless --model) at http://HOST:PORT/v1.

    Endpoints: /v1/models, /v1/completions and /v1/chat/completions, with SSE streaming, stop strings, n and
    seed; any OpenAI client can use them. Stop with Ctrl-C.
    """
    from agentkit.models import load_model
    from agentkit.serving.app import serve as run_server

    tracing = pop_tracing(kwargs)
    llm = load_model(model_spec, dtype=dtype)
    name = served_model_name or llm.name
    click.echo(f"agentkit serve: {name} at http://{host}:{port}/v1 (Ctrl-C stops)", err=True)
    run_server(llm, host=host, port=port, model_name=name, max_batch_size=batch_size, trace=tracing)
