"""``agentkit run``: answer one question from the shell with one method, streaming the work, then the answer.

With ``--json`` it prints only the full ``Result`` as JSON on stdout (anything the model loader prints goes to
stderr); the answer is a JSON number when the method answers numbers. A model that fails to answer is data, not
an error: the exit status is still 0. An error in the middle of a streamed episode starts on its own line.

Deliberately not here: the strategies, and how work is shown (``agentkit.cli.display``).
"""

from __future__ import annotations

import contextlib
import json
import sys

import click

from agentkit.cli.display import Display, run_streamed, stdout_is_tty
from agentkit.cli.options import episode_options, method_option, model_option, open_mcp_tools, pop_episode_options
from agentkit.records import jsonable, typed_answer
from agentkit.strategies import build_strategy, check_shots, get_method
from agentkit.strategies.chat import ChatStrategy


@click.command("run", short_help="Answer one question with one method.")
@click.argument("question")
@method_option(default="cot", help="How to answer (see `agentkit ls`); chat = a plain chat reply.")
@model_option
@episode_options(
    click.option("--json", "as_json", is_flag=True, help="Print only the full Result as JSON (no streaming).")
)
def run(question, method, model_spec, dtype, templates_dir, as_json, mcp_specs, **kwargs) -> None:
    """Answer one QUESTION with one method, streaming the work, then the answer.

    The exit status is 0 whenever the method ran, even if the model gave no answer (that is shown);
    bad input (an unknown model, a missing template directory, too many shots) is one error line.
    """
    from agentkit.models import load_model
    from agentkit.prompting import Templates

    if not question.strip():
        raise click.BadParameter("the question is empty", param_hint="QUESTION")
    settings, options = pop_episode_options(kwargs)
    templates = Templates(templates_dir) if templates_dir else None
    if settings.shots is not None:  # before loading a model
        check_shots(method, settings.shots, answer=settings.answer, templates=templates)
    tools = open_mcp_tools(mcp_specs, (method,))
    if as_json:
        with contextlib.redirect_stdout(sys.stderr):  # loader messages must not break the JSON
            llm = load_model(model_spec, dtype=dtype)
            strategy = build_strategy(method, llm, settings, templates=templates, tools=tools)
            result = run_streamed(llm, strategy, question, None, **options)
        data = jsonable(result)
        data["answer"] = typed_answer(result.answer, get_method(method).answer_kind(settings.answer))
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    color = stdout_is_tty()
    display = Display(color=color, terminal=sys.stdout.isatty())
    llm = load_model(model_spec, dtype=dtype)
    strategy = build_strategy(method, llm, settings, templates=templates, tools=tools)
    try:
        result = run_streamed(llm, strategy, question, display, **options)
    except KeyboardInterrupt:
        display.interrupted()
        sys.exit(130)
    except BaseException:
        display.newline()  # the error line must not be glued to the streamed text
        raise
    if isinstance(strategy, ChatStrategy) and result.answer is not None:
        display.newline()
        display.write("Answer: ", fg="green", bold=True)
        display.end_line(result.answer, bold=True)
    else:
        display.result(result, show_stats=color)
