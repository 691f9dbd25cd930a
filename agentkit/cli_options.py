"""Command-line options that ``agentkit run`` and ``agentkit chat`` share: one definition, one help text."""

from __future__ import annotations

import click

from agentkit.prompting import PROMPT_FORMATS
from agentkit.strategies.base import ANSWER_KINDS

model_option = click.option(
    "--model", "model_spec", metavar="SPEC", default=None,
    help="default (embedded Gemma 3 270M), scripted:FILE[?delay=S], a Hugging Face id, a directory or a .gguf file.",
)
shots_option = click.option(
    "--shots", type=click.IntRange(min=0), default=None, help="Few-shot exemplars (default: the method's)."
)
max_tokens_option = click.option(
    "--max-tokens", type=click.IntRange(min=1), default=None, help="Token limit per generation (default: the method's)."
)
answer_option = click.option(
    "--answer", type=click.Choice(ANSWER_KINDS), default=None,
    help="What direct and cot answer: a number (word problems; the default) or a short text (questions about the "
         "world).",
)
dtype_option = click.option(
    "--dtype", type=click.Choice(["auto", "bfloat16", "float32"]), default="auto", show_default=True,
    help="Weights dtype for a real model.",
)
templates_option = click.option(
    "--templates", "templates_dir", type=click.Path(file_okay=False), default=None,
    help="Directory of your own templates/exemplars, searched before the shipped ones.",
)
prompt_format_option = click.option(
    "--prompt-format", type=click.Choice(PROMPT_FORMATS), default="auto", show_default=True,
    help="How prompts reach the model: chat = through its chat template (instructions as the system message, "
         "exemplars as turns); text = one plain prompt; auto = chat when the model has a chat template.",
)
