"""``agentkit mcp``: serve agentkit's own tools to any MCP client (the sandbox as ``run_python``, Wikipedia
``Search``/``Lookup``), over stdio or streamable HTTP.

Deliberately not here: the server itself (``agentkit.tools.mcp``) and the client half (``--mcp`` on run, chat and
bench; ``agentkit.cli.options``).
"""

from __future__ import annotations

import click

from agentkit.tools.mcp import SERVED_TOOLS


@click.command("mcp", short_help="Serve agentkit's tools (Python sandbox, Wikipedia) over MCP.")
@click.option(
    "--transport",
    type=click.Choice(["stdio", "http"]),
    default="stdio",
    show_default=True,
    help="stdio: speak MCP on standard input and output (an MCP client starts this command); http: "
    "streamable HTTP at http://HOST:PORT/mcp.",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind (http); the default takes connections from this machine only.",
)
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="Port (http).")
@click.option(
    "--tool",
    "tools",
    type=click.Choice(SERVED_TOOLS),
    multiple=True,
    help="Serve only this tool; repeat for several (default: all of them).",
)
@click.option(
    "--wiki",
    default="offline",
    show_default=True,
    metavar="offline|live|PATH",
    help="Wikipedia for Search/Lookup: the shipped offline corpus, the live site, or a JSONL corpus.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=5.0,
    show_default=True,
    help="Seconds each run_python program may run.",
)
def mcp(transport, host, port, tools, wiki, timeout) -> None:
    """Serve agentkit's tools over MCP: run_python (the hardened sandbox PAL runs programs in, returning ok, value,
    stdout, error and kind as PAL sees them), Search and Lookup (Wikipedia, the offline corpus by default).

    With --transport stdio (the default) an MCP client starts this command, e.g. agentkit run --mcp
    "agentkit mcp"; with --transport http it serves until Ctrl-C.
    """
    from agentkit.tools.mcp import serve

    if transport == "http":
        click.echo(f"agentkit mcp: http://{host}:{port}/mcp (Ctrl-C stops)", err=True)
    serve(transport, host=host, port=port, timeout=timeout, corpus=wiki, tools=tools or None)
