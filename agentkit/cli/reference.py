"""docs/cli.md, generated: every command's ``--help`` as Markdown, plus the chat loop's slash commands.

``cli_reference()`` renders it (``agentkit cli-reference > docs/cli.md``); a test checks that the file and the
``--help`` output match, so the docs never drift.

Deliberately not here: any hand-written reference text beyond the examples at the top.
"""

from __future__ import annotations

import click

EXAMPLES = """
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

The commands share their options: `--model`, `--method`, `--shots`, `--max-tokens`, `--temperature`, `--seed`,
`-k`, `--answer`, `--corpus`, `--prompt-format`, `--constrain`, `--dtype` and `--templates` mean the same
in `run`, `chat` and `bench`, and `default` stands for a method's own default wherever it has one.

Errors a user can cause (a bad option, a missing file, a bad model, too many shots) end as one line
`Error: ...` on stderr with exit status 1; `agentkit --debug ...` or `AGENTKIT_DEBUG=1` shows the traceback
instead. Anything else is a bug in agentkit and shows its traceback.
"""


def cli_reference() -> str:
    """Markdown reference of every (visible) command, from the commands' own ``--help``."""
    from agentkit.cli import main

    parts = [
        "# agentkit command line",
        "",
        "<!-- Generated from the commands' --help by `agentkit cli-reference > docs/cli.md`; do not edit by hand."
        " tests/test_cli_docs.py fails when this file and the --help output differ. -->",
        "",
        *EXAMPLES.strip("\n").splitlines(),
        "",
    ]

    def section(command: click.Command, path: list[str], parent: click.Context | None) -> None:
        settings = {**command.context_settings, "terminal_width": 100, "max_content_width": 100}
        ctx = click.Context(command, info_name=path[-1], parent=parent, **settings)
        title = " ".join(path)
        parts.extend([f"## `{title}`", "", "```text", ctx.get_help().rstrip(), "```", ""])
        if title == "agentkit chat":
            parts.extend(chat_commands())
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                if sub is not None and not sub.hidden:
                    section(sub, [*path, name], ctx)

    section(main, ["agentkit"], None)
    return "\n".join(parts).rstrip() + "\n"


def chat_commands() -> list[str]:
    """The table of the chat loop's slash commands, from the loop's own command list."""
    from agentkit.cli.chat import ChatSession
    from agentkit.llm import ScriptedLLM

    session = ChatSession(llm=ScriptedLLM([]), model_spec="default")
    lines = [
        "Inside `agentkit chat`, lines that start with `/` are commands:",
        "",
        "| command | what it does |",
        "| --- | --- |",
    ]
    seen = set()
    for command in session.commands.values():
        if command.usage not in seen:
            seen.add(command.usage)
            lines.append(f"| `{command.usage}` | {command.help} |")
    lines += ["", "Ctrl-C stops the current generation and keeps the loop; Ctrl-D (end of input) leaves it.", ""]
    return lines


@click.command("cli-reference", hidden=True)
def cli_reference_command() -> None:
    """Print the Markdown reference of every command (docs/cli.md)."""
    click.echo(cli_reference(), nl=False)
