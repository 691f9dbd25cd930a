"""The ``agentkit`` command: ``chat`` (interactive loop), ``run`` (one question), ``ls`` (what ships), ``bench``.

``main`` is a click group whose ``invoke`` turns every library error a user can cause (a ``ValueError`` such as
``PromptError``, ``ModelLoadError`` or ``UnknownMethod``; a missing file; a model that ran out of script) into
one red line ``Error: ...`` and exit status 1. ``--debug`` or ``AGENTKIT_DEBUG=1`` shows the traceback instead.

``agentkit run`` answers one question from the shell, streaming the work (tokens, steps) and then the answer; with
``--json`` it prints only the full ``Result`` as JSON on stdout (anything the model loader prints goes to stderr).
A model that fails to answer is data, not an error: the exit status is still 0.

``cli_reference()`` renders every command's ``--help`` as Markdown; docs/cli.md is generated from it
(``agentkit cli-reference > docs/cli.md``) and a test checks the two match, so the docs never drift.

Deliberately not here: the chat loop itself (``agentkit.chat``), benchmark logic (``agentkit.eval``), and any
model code (``agentkit.models``).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from agentkit import __version__
from agentkit.chat import CHAT_MODE, MODES, Display, Settings, chat, one_line, result_data, stdout_is_tty
from agentkit.cli_options import (
    answer_option,
    dtype_option,
    max_tokens_option,
    model_option,
    prompt_format_option,
    shots_option,
    templates_option,
)
from agentkit.cli_report import compare, report

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
# Errors a user can cause: shown as one line. Anything else is a bug and keeps its traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, RuntimeError)


def debug_enabled(ctx: click.Context | None = None) -> bool:
    if os.environ.get("AGENTKIT_DEBUG", "").strip() not in ("", "0"):
        return True
    root = ctx.find_root() if ctx is not None else None
    return bool(root is not None and isinstance(root.obj, dict) and root.obj.get("debug"))


class AgentkitGroup(click.Group):
    """A click group that reports library errors as one line instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Abort, click.exceptions.Exit):
            raise
        except USER_ERRORS as exc:
            if debug_enabled(ctx):
                raise
            click.secho(f"Error: {one_line(exc)}", fg="red", err=True)
            ctx.exit(1)


@click.group(cls=AgentkitGroup, context_settings=CONTEXT)
@click.version_option(__version__, "--version", "-V", prog_name="agentkit")
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors (or set AGENTKIT_DEBUG=1).")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Build and run reasoning-and-acting agents (direct, CoT, PAL, ReAct, self-consistency) on a local model.

    The default model is the embedded Gemma 3 270M; pass --model scripted:FILE to try things without weights.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug or debug_enabled()


main.add_command(chat)


# ------------------------------------------------------------------------------------------------ run
@main.command("run", context_settings=CONTEXT, short_help="Answer one question with one method.")
@click.argument("question")
@click.option("--method", "-m", type=click.Choice(list(MODES)), default="cot", show_default=True,
              help="How to answer (see `agentkit ls`); chat = a plain chat reply.")
@model_option
@shots_option
@max_tokens_option
@click.option("--temperature", type=click.FloatRange(0, 5), default=0.0, show_default=True,
              help="Sampling temperature; 0 = greedy (self-consistency samples at 0.7 unless set).")
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Seed for sampling (reproducible runs).")
@click.option("--k", "-k", type=click.IntRange(min=1), default=None, help="Samples for the -sc methods (default 5).")
@answer_option
@prompt_format_option
@dtype_option
@templates_option
@click.option("--json", "as_json", is_flag=True, help="Print only the full Result as JSON (no streaming).")
def run(question, method, model_spec, shots, max_tokens, temperature, seed, k, answer, prompt_format, dtype,
        templates_dir, as_json):
    """Answer one QUESTION with one method, streaming the work, then the answer.

    The exit status is 0 whenever the method ran, even if the model gave no answer (that is shown);
    bad input (an unknown model, a missing template directory, too many shots) is one error line.
    """
    from agentkit.chat import build_strategy, run_streamed
    from agentkit.models import load_model
    from agentkit.prompting import Templates

    if not question.strip():
        raise click.BadParameter("the question is empty", param_hint="QUESTION")
    templates = Templates(templates_dir) if templates_dir else None
    settings = Settings(mode=method, shots=shots, temperature=temperature, max_tokens=max_tokens, seed=seed, k=k,
                        answer=answer, prompt_format=prompt_format)
    if as_json:
        with contextlib.redirect_stdout(sys.stderr):  # loader messages must not break the JSON
            llm = load_model(model_spec, dtype=dtype)
            strategy = build_strategy(method, llm, settings, templates=templates)
            result = run_streamed(llm, strategy, question, None)
        click.echo(json.dumps(result_data(result), indent=2, ensure_ascii=False))
        return
    color = stdout_is_tty()
    display = Display(color=color, terminal=sys.stdout.isatty())
    llm = load_model(model_spec, dtype=dtype)
    strategy = build_strategy(method, llm, settings, templates=templates)
    try:
        result = run_streamed(llm, strategy, question, display)
    except KeyboardInterrupt:
        display.interrupted()
        sys.exit(130)
    if method == CHAT_MODE and result.answer is not None:
        display.newline()
        display.write("Answer: ", fg="green", bold=True)
        display.end_line(result.answer, bold=True)
    else:
        display.result(result, show_stats=color)


# ------------------------------------------------------------------------------------------------ ls
@main.command("ls", context_settings=CONTEXT, short_help="List methods, templates, exemplars, datasets.")
@click.option("--templates", "templates_dir", type=click.Path(file_okay=False), default=None,
              help="Also list the templates and exemplar sets in this directory.")
@click.option("--model", "model_spec", metavar="SPEC", default=None,
              help="Also load this model and show its prompt format (chat template or plain text).")
def ls(templates_dir, model_spec):
    """List the methods, prompt templates, exemplar sets and sample datasets (and a model's prompt format)."""
    from agentkit.prompting import Templates

    templates = Templates(templates_dir)

    def heading(text: str) -> None:
        click.secho(text, bold=True)

    heading("Methods (agentkit run --method, agentkit chat /mode):")
    width = max(map(len, MODES))
    for name, description in MODES.items():
        click.echo(f"  {name:<{width}}  {description}")
    heading("\nTemplates:")
    click.echo("  " + ", ".join(templates.names()))
    heading("\nExemplar sets:")
    for name in templates.exemplar_sets():
        try:
            count = f"{templates.count(name)} exemplars"
        except ValueError as exc:
            count = f"unreadable: {one_line(exc)}"
        click.echo(f"  {name:<{width}}  {count}")
    heading("\nSample datasets (agentkit bench --dataset NAME):")
    for name, path in sample_datasets().items():
        lines = sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
        click.echo(f"  {name:<{width}}  {lines} questions ({path.name})")
    if model_spec is not None:
        from agentkit.models import load_model
        from agentkit.prompting import describe_prompt_format

        heading(f"\nModel {model_spec}:")
        for line in describe_prompt_format(load_model(model_spec)):
            click.echo(f"  {line}")


def sample_datasets() -> dict[str, Path]:
    """Shipped sample sets: name -> file (the bench's own table when it is available)."""
    from agentkit.prompting import builtin_dir

    try:
        from agentkit.eval.datasets import SHIPPED
    except ImportError:
        SHIPPED = {"gsm8k-sample": "gsm8k_sample.jsonl", "wiki-sample": "wiki_qa_sample.jsonl"}
    data = builtin_dir() / "data"
    return {name: data / file for name, file in SHIPPED.items() if (data / file).is_file()}


# ------------------------------------------------------------------------------------------------ bench
def _register_bench() -> None:
    try:
        from agentkit.eval.cli import bench
    except ImportError as exc:  # the benchmark's dependencies are broken: say so when it is used
        reason = one_line(exc)

        @main.command("bench", context_settings=CONTEXT)
        def bench() -> None:
            """Benchmark methods on a dataset (unavailable in this installation)."""
            raise click.ClickException(f"agentkit bench is unavailable: {reason}")

        return
    main.add_command(bench, "bench")


_register_bench()
main.add_command(report)  # agentkit/cli_report.py
main.add_command(compare)


# ------------------------------------------------------------------------------------------------ docs
def cli_reference() -> str:
    """Markdown reference of every (visible) command, from the commands' own ``--help``."""
    parts = [
        "# agentkit command line",
        "",
        "<!-- Generated from the commands' --help by `agentkit cli-reference > docs/cli.md`; do not edit by hand."
        " tests/test_cli_docs.py fails when this file and the --help output differ. -->",
        "",
        *_EXAMPLES.strip("\n").splitlines(),
        "",
    ]

    def section(command: click.Command, path: list[str], parent: click.Context | None) -> None:
        settings = {**command.context_settings, "terminal_width": 100, "max_content_width": 100}
        ctx = click.Context(command, info_name=path[-1], parent=parent, **settings)
        title = " ".join(path)
        parts.extend([f"## `{title}`", "", "```text", ctx.get_help().rstrip(), "```", ""])
        if title == "agentkit chat":
            parts.extend(_chat_commands())
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                if sub is not None and not sub.hidden:
                    section(sub, [*path, name], ctx)

    section(main, ["agentkit"], None)
    return "\n".join(parts).rstrip() + "\n"


_EXAMPLES = """
Try everything without model weights through a scripted model: a JSON file with the replies the "model" gives,
in order (or an object mapping a question substring to its reply).

```sh
printf '%s' '["6 times 7 is 42.", "def solution():\\n    return 6 * 7\\n"]' > replies.json
printf 'What is 6 times 7?\\n/mode pal\\nWhat is 6 times 7?\\n/quit\\n' | agentkit chat --model scripted:replies.json
printf '%s' '["def solution():\\n    return 6 * 7\\n"]' > program.json
agentkit run "What is 6 times 7?" --method pal --model scripted:program.json --json
agentkit run "What is 6 times 7?" --method cot --max-tokens 64      # the embedded Gemma 3 270M
agentkit ls
```

Errors a user can cause (a missing file, a bad model, too many shots) end as one line `Error: ...` with exit
status 1; `agentkit --debug ...` or `AGENTKIT_DEBUG=1` shows the traceback instead.
"""


def _chat_commands() -> list[str]:
    """The table of the chat loop's slash commands, from the loop's own command list."""
    from agentkit.chat import ChatSession
    from agentkit.llm import ScriptedLLM

    session = ChatSession(llm=ScriptedLLM([]), model_spec="default")
    lines = ["Inside `agentkit chat`, lines that start with `/` are commands:", "", "| command | what it does |",
             "| --- | --- |"]
    seen = set()
    for command in session.commands.values():
        if command.usage not in seen:
            seen.add(command.usage)
            lines.append(f"| `{command.usage}` | {command.help} |")
    lines += ["", "Ctrl-C stops the current generation and keeps the loop; Ctrl-D (end of input) leaves it.", ""]
    return lines


@main.command("cli-reference", hidden=True, context_settings=CONTEXT)
def cli_reference_command() -> None:
    """Print the Markdown reference of every command (docs/cli.md)."""
    click.echo(cli_reference(), nl=False)


if __name__ == "__main__":  # pragma: no cover
    main()
