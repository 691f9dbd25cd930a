"""The ``agentkit`` command: a thin layer over the library, one module per command.

``chat`` (interactive loop, ``chat.py``), ``run`` (one question, ``run.py``), ``bench`` (a benchmark,
``bench.py``), ``report`` (rebuild a run's reports, ``report.py``), ``compare`` (is a difference between runs
real, ``report.py``), ``serve`` (an OpenAI-style server over a model, ``serve.py``), ``ls`` (what ships,
``ls.py``), ``cache`` (the model-call cache, ``cache.py``), ``mcp`` (agentkit's tools over MCP, ``mcp.py``) and
the hidden ``cli-reference`` (docs/cli.md, ``reference.py``).
The options they share are defined once in ``options.py``; how work is shown is ``display.py``.

This package is the error edge. ``main`` turns every error of agentkit's family (``agentkit.errors``:
``AgentkitError``, e.g. ``PromptError``, ``ModelLoadError``, ``UnknownMethod``, a scripted model out of replies),
every ``OSError`` and every usage error of click (a bad option value, an unknown command) into one red line
``Error: ...`` on stderr with exit status 1. Anything else is a bug in agentkit and keeps its traceback;
``--debug`` or ``AGENTKIT_DEBUG=1`` shows the traceback for the family's errors too.

Imports run one way: this package imports the library; nothing in the library imports it (a test checks).

Deliberately not here: any logic a Python user would want too (strategies, settings, records, benchmark
configuration all live in the library).
"""

from __future__ import annotations

from typing import Any

import click

from agentkit import __version__
from agentkit.cli import bench, cache, chat, ls, mcp, reference, report, run, serve  # each module holds its command(s)
from agentkit.cli.display import debug_enabled, one_line, show_log
from agentkit.cli.reference import cli_reference
from agentkit.errors import AgentkitError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
# Errors shown as one line. Anything else is a bug and keeps its traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (AgentkitError, OSError)


class OneLineError(click.ClickException):
    """A click usage error, shown like every other user error: one red line, exit status 1."""

    def show(self, file: Any = None) -> None:
        click.secho(f"Error: {self.format_message()}", fg="red", err=True)


def _usage_line(exc: click.UsageError) -> OneLineError:
    message = " ".join(exc.format_message().split()).rstrip(".")
    if exc.ctx is not None:
        message += f" (see '{exc.ctx.command_path} --help')"
    return OneLineError(message)


def _shows_help(exc: click.UsageError) -> bool:
    """A group called without a command prints its help (click's NoArgsIsHelpError): leave that to click."""
    return type(exc).__name__ == "NoArgsIsHelpError"


class AgentkitGroup(click.Group):
    """A click group whose commands' errors end as one line (see the module docstring)."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            if _shows_help(exc):
                raise
            raise _usage_line(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            if _shows_help(exc):
                raise
            raise _usage_line(exc) from None
        except (click.exceptions.ClickException, click.exceptions.Abort, click.exceptions.Exit):
            raise
        except USER_ERRORS as exc:
            if debug_enabled(ctx) or isinstance(exc, BrokenPipeError):  # click quietly ends a closed pipe
                raise
            click.secho(f"Error: {one_line(exc)}", fg="red", err=True)
            ctx.exit(1)


@click.group(cls=AgentkitGroup, context_settings=CONTEXT, invoke_without_command=True)
@click.version_option(__version__, "--version", "-V", prog_name="agentkit")
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors (or set AGENTKIT_DEBUG=1).")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Build and run reasoning-and-acting agents (direct, CoT, PAL, ReAct, self-consistency) on a local model.

    The default model is the embedded Gemma 3 270M; pass --model scripted:FILE to try things without weights.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug or debug_enabled()
    show_log()  # the library's warnings (a server's retries) as lines on stderr
    if ctx.invoked_subcommand is None:  # plain `agentkit`: the help, on stdout, and no error
        click.echo(ctx.get_help())


for command in (
    bench.bench,
    chat.chat,
    ls.ls,
    run.run,
    report.report,
    report.compare,
    serve.serve,
    cache.cache,
    mcp.mcp,
    reference.cli_reference_command,
):
    command.context_settings = {**CONTEXT, **command.context_settings}
    main.add_command(command)

__all__ = ["main", "cli_reference"]
