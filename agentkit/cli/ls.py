"""``agentkit ls``: what ships — the methods (from the one registry), templates, exemplar sets, sample datasets.

With ``--model SPEC`` it also loads that model and shows which prompt format it gets (see
docs/chat-templates.md). Deliberately not here: anything else that loads a model.
"""

from __future__ import annotations

import click

from agentkit.cli.display import one_line
from agentkit.errors import AgentkitError
from agentkit.eval.datasets import shipped_datasets
from agentkit.strategies import REGISTRY


@click.command("ls", short_help="List methods, templates, exemplars, datasets.")
@click.option(
    "--templates",
    "templates_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Also list the templates and exemplar sets in this directory.",
)
@click.option(
    "--model",
    "model_spec",
    metavar="SPEC",
    default=None,
    help="Also load this model and show its prompt format (chat template or plain text).",
)
def ls(templates_dir, model_spec) -> None:
    """List the methods, prompt templates, exemplar sets and sample datasets (and a model's prompt format)."""
    from agentkit.prompting import Templates

    templates = Templates(templates_dir)

    def heading(text: str) -> None:
        click.secho(text, bold=True)

    heading("Methods (agentkit run --method, agentkit bench --method, agentkit chat /mode):")
    width = max(map(len, REGISTRY))
    for method in REGISTRY.values():
        note = "" if method.scored else "  [chat only]"
        click.echo(f"  {method.name:<{width}}  {method.description}{note}")
    heading("\nTemplates:")
    click.echo("  " + ", ".join(templates.names()))
    heading("\nExemplar sets:")
    for name in templates.exemplar_sets():
        try:
            count = f"{templates.count(name)} exemplars"
        except AgentkitError as exc:
            count = f"unreadable: {one_line(exc)}"
        click.echo(f"  {name:<{width}}  {count}")
    heading("\nSample datasets (agentkit bench --dataset NAME):")
    for name, path in shipped_datasets().items():
        lines = sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
        click.echo(f"  {name:<{width}}  {lines} questions ({path.name})")
    if model_spec is not None:
        from agentkit.models import load_model
        from agentkit.prompting import describe_prompt_format

        heading(f"\nModel {model_spec}:")
        for line in describe_prompt_format(load_model(model_spec)):
            click.echo(f"  {line}")
