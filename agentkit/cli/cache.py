"""``agentkit cache info|clear``: look after the model-call cache that ``--cache`` uses (``agentkit.cache``).

Deliberately not here: the cache itself.
"""

from __future__ import annotations

import click

from agentkit.cli.options import directory_option

dir_option = directory_option("--dir", "directory", "The cache directory (default: the one --cache uses without DIR).")


@click.group("cache", short_help="Show or clear the model-call cache.")
def cache() -> None:
    """Show or clear the model-call cache that run, chat and bench use with --cache."""


@cache.command("info", short_help="Where the cache is and how much it holds.")
@dir_option
def info(directory) -> None:
    """Print where the cache is, how many completions it holds and their size."""
    from agentkit.cache import CallCache

    facts = CallCache(directory).info()
    click.echo(
        f"cache: {facts['path']}\nentries: {facts['entries']:,} completions, {facts['bytes'] / 2**20:.1f} MiB "
        f"(files {facts['file_bytes'] / 2**20:.1f} MiB; bound {facts['max_bytes'] / 2**20:.0f} MiB)"
    )


@cache.command("clear", short_help="Delete every cached completion.")
@dir_option
def clear(directory) -> None:
    """Delete every completion in the cache."""
    from agentkit.cache import CallCache

    store = CallCache(directory)
    click.echo(f"cleared {store.clear():,} completions from {store.path}")
