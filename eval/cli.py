"""``agentkit bench``: benchmark one or more methods on a dataset from the command line.

The command is a plain click command (``bench``) that the main ``agentkit`` group registers. It loads the
model through ``agentkit.models.load_model`` (lazily, so ``--help`` is instant), runs
``agentkit.eval.run_benchmark`` with a progress bar, and prints the comparison table and the paths of the
report files. Every error a user can cause (a missing file, a bad line, a config clash, an unknown model)
ends as one readable line; Ctrl-C leaves the finished examples on disk and says how to resume.

Deliberately not here: any benchmark logic (see ``agentkit.eval.runner``).
"""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path
from typing import Any

import click

from agentkit.cli_options import prompt_format_option

# Kept in step with agentkit.strategies.METHODS (a test checks); listed here so --help needs no imports.
METHOD_NAMES = ("direct", "cot", "cot-sc", "pal", "pal-sc", "react", "react-cot-sc")
DEFAULT_METHODS = ("direct", "cot", "pal")


def _slug(text: str) -> str:
    text = Path(text).stem if ("/" in text or text.endswith((".jsonl", ".json", ".gguf"))) else text
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:40] or "run"


def default_output_dir(dataset: str, model: str | None, shots: int) -> Path:
    """``runs/bench-<dataset>-<model>-<k>shot``: one directory per distinct setup, so reruns resume."""
    return Path("runs") / f"bench-{_slug(dataset)}-{_slug(model or 'default')}-{shots}shot"


def _load_model(spec: str | None, dtype: str | None) -> Any:
    try:
        from agentkit.models import load_model
    except ImportError as exc:
        raise click.ClickException(f"cannot load models: agentkit.models is unavailable ({exc})") from None
    kwargs: dict[str, Any] = {}
    if dtype is not None:
        try:
            accepts = "dtype" in inspect.signature(load_model).parameters or any(
                p.kind is p.VAR_KEYWORD for p in inspect.signature(load_model).parameters.values()
            )
        except (TypeError, ValueError):
            accepts = True
        if not accepts:
            raise click.ClickException("--dtype is not supported by this agentkit.models.load_model")
        kwargs["dtype"] = dtype
    try:
        return load_model(spec, **kwargs)
    except click.ClickException:
        raise
    except (OSError, ValueError, RuntimeError, ImportError, KeyError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise click.ClickException(f"cannot load model {spec or '(default)'!r}: {message}") from None


@click.command("bench", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--dataset", "-d", required=True, metavar="PATH|NAME",
              help="A GSM8K / PAL (input,target) / HotpotQA-style JSON or JSONL file, a shipped sample "
                   "(gsm8k-sample, wiki-sample) or a Hugging Face name (needs the 'datasets' library).")
@click.option("--method", "-m", "methods", multiple=True, type=click.Choice(METHOD_NAMES),
              help="Method to run; repeat to compare several. Default: direct, cot and pal.")
@click.option("--shots", type=click.IntRange(min=0), default=4, show_default=True,
              help="Number of worked examples in each prompt (0 = zero-shot).")
@click.option("--model", default=None, metavar="SPEC",
              help="Model: a Hugging Face id, a local directory, a .gguf file or scripted:FILE. "
                   "Default: the bundled small model.")
@click.option("--limit", "-n", type=click.IntRange(min=0), default=None,
              help="Use only the first N examples (can grow on a later resumed run).")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True,
              help="Episodes decoded together by the engine.")
@click.option("--output-dir", "-o", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where samples and reports go; rerunning with the same directory resumes. "
                   "Default: runs/bench-<dataset>-<model>-<shots>shot.")
@click.option("--overwrite", is_flag=True, help="Delete an earlier run in --output-dir instead of resuming it.")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=None,
              help="Token limit per generation (default: each method's own).")
@click.option("--temperature", type=click.FloatRange(min=0), default=None,
              help="0 = greedy (default for single-answer methods); > 0 samples. For cot-sc/pal-sc/"
                   "react-cot-sc it sets the sampling temperature of the votes (default 0.7).")
@click.option("--samples", "-k", "k", type=click.IntRange(min=1), default=None,
              help="Votes per question for the self-consistency methods (default 5).")
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Seed for sampling (reproducible runs).")
@click.option("--dtype", type=click.Choice(["auto", "float32", "bfloat16", "float16"]), default=None,
              help="Weights dtype for Transformers models (default: the engine's choice).")
@click.option("--field", "fields", multiple=True, metavar="TARGET=SOURCE",
              help="Map a JSONL field, e.g. --field question=q --field answer=a (also id=...).")
@click.option("--rel-tol", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Relative tolerance for gold answers that are not whole numbers (whole numbers match exactly).")
@click.option("--abs-tol", type=click.FloatRange(min=0), default=1e-4, show_default=True,
              help="Absolute tolerance for gold answers that are not whole numbers (whole numbers match exactly).")
@prompt_format_option
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def bench(
    dataset: str,
    methods: tuple[str, ...],
    shots: int,
    model: str | None,
    limit: int | None,
    batch_size: int,
    output_dir: Path | None,
    overwrite: bool,
    max_new_tokens: int | None,
    temperature: float | None,
    k: int | None,
    seed: int | None,
    dtype: str | None,
    fields: tuple[str, ...],
    rel_tol: float,
    abs_tol: float,
    prompt_format: str,
    quiet: bool,
) -> None:
    """Benchmark methods on a dataset and compare them.

    Every finished example is saved at once to OUTPUT_DIR/<method>/samples.jsonl; rerun the same command
    after an interruption to continue where it stopped. At the end OUTPUT_DIR holds results.json,
    results.md, results.png and results.html (every example and trajectory; `agentkit report` rebuilds it).

    \b
    Example:
      agentkit bench --dataset gsm8k-sample --method direct --method cot --method pal --shots 4
    """
    from agentkit.eval.datasets import DatasetError, load_dataset, parse_field_mapping, repeats
    from agentkit.eval.runner import BenchmarkError, run_benchmark

    methods = methods or DEFAULT_METHODS
    out = output_dir or default_output_dir(dataset, model, shots)
    try:
        mapping = parse_field_mapping(fields)
        examples = load_dataset(dataset, fields=mapping)  # fail fast, before loading any model
    except DatasetError as exc:
        raise click.ClickException(str(exc)) from None
    found = repeats(examples)
    if found.questions or found.ids:
        click.echo(f"dataset: {len(examples)} examples; {found}", err=True)
    del examples

    config: dict[str, Any] = {}
    if max_new_tokens is not None:
        config["max_new_tokens"] = max_new_tokens
    if temperature is not None:
        config.update({"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False})
    if seed is not None:
        config["seed"] = seed
    options: dict[str, Any] = {}
    if k is not None:
        options["k"] = k
    if temperature is not None and temperature > 0:
        options["temperature"] = temperature

    llm = _load_model(model, dtype)
    click.echo(f"benchmark: {dataset} · {', '.join(methods)} · {shots}-shot · model {getattr(llm, 'name', llm)}"
               f" · output {out}", err=True)
    try:
        result = run_benchmark(
            dataset, list(methods), llm, shots=shots, output_dir=out, limit=limit, batch_size=batch_size,
            config=config or None, fields=mapping, method_options=options, rel_tol=rel_tol, abs_tol=abs_tol,
            overwrite=overwrite, progress=not quiet, prompt_format=prompt_format,
        )
    except (DatasetError, BenchmarkError) as exc:
        raise click.ClickException(str(exc)) from None
    except (ValueError, RuntimeError, OSError) as exc:  # a bad strategy option, a model out of script, a full disk
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise click.ClickException(f"{message} (finished examples are saved in {out})") from None
    except KeyboardInterrupt:
        click.echo(f"\ninterrupted: finished examples are saved in {out}; rerun the same command to resume",
                   err=True)
        sys.exit(130)
    click.echo(result.table)
    click.echo(f"\nwall time of this run: {result.wall_seconds:.0f} s (latency is each example's own start-to-finish "
               f"time; examples share the model's batches, so latencies overlap)")
    click.echo(f"\nresults: {result.files['results_json']}\nreport:  {result.files['results_md']}\n"
               f"chart:   {result.files['chart']}\nbrowse:  {result.files['results_html']}")


main = bench  # `python -m agentkit.eval.cli ...` runs the command on its own

if __name__ == "__main__":  # pragma: no cover
    bench()
