"""``agentkit bench``: benchmark one or more methods on a dataset from the command line.

The options become one ``agentkit.eval.BenchmarkConfig`` (the method settings through the same ``Settings`` as
``run`` and ``chat``); ``agentkit.eval.runner.prepare`` checks it (the dataset, the shots, the output directory)
before the model loads, and nothing is written before every setting has been checked. ``run_benchmark`` then
runs with a progress bar, and the command prints the comparison table and the paths of the report files.
Ctrl-C leaves the finished examples on disk and says how to resume; a rerun says how many examples were already
done.

Deliberately not here: any benchmark logic (``agentkit.eval``).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click

from agentkit.cli.display import one_line
from agentkit.cli.options import episode_options, method_option, model_option, open_mcp_tools, pop_episode_options
from agentkit.errors import BenchmarkError, MCPServerError, ServerError, ServerSeedCrash
from agentkit.eval.config import DEFAULT_METHODS, BenchmarkConfig


def _slug(text: str) -> str:
    text = Path(text).stem if ("/" in text or text.endswith((".jsonl", ".json", ".gguf"))) else text
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:40] or "run"


def default_output_dir(dataset: str, model: str | None, shots: int) -> Path:
    """``runs/bench-<dataset>-<model>-<k>shot``: one directory per distinct setup, so reruns resume."""
    return Path("runs") / f"bench-{_slug(dataset)}-{_slug(model or 'default')}-{shots}shot"


def ray_options(command):
    """``--ray [ADDRESS]`` and ``--workers N``: run the episodes on Ray workers (``agentkit.eval.distributed``)."""
    command = click.option(
        "--workers",
        type=click.IntRange(min=1),
        default=None,
        help="Ray workers to start (with --ray; default: one per node).",
    )(command)
    return click.option(
        "--ray",
        "ray_address",
        is_flag=False,
        flag_value="",
        default=None,
        metavar="[ADDRESS]",
        help="Run on Ray workers, each loading its own model: the cluster at ADDRESS (auto, "
        "HOST:6379, ray://HOST:10001), or without ADDRESS this machine's cluster or a new "
        "local one. Needs agentkit[ray]; see docs/distributed.md.",
    )(command)


def tolerance_option(flag: str, default: float, which: str):
    """``--rel-tol`` or ``--abs-tol``: how far a gold answer that is not a whole number may be from the answer."""
    return click.option(
        flag,
        type=click.FloatRange(min=0),
        default=default,
        show_default=True,
        help=f"{which} tolerance for gold answers that are not whole numbers (whole numbers match exactly).",
    )


def saved_examples(out: Path) -> int:
    """How many finished examples the run in ``out`` holds (lines of its samples files)."""
    from agentkit.eval.runner import SAMPLES

    return sum(path.read_bytes().count(b"\n") for path in out.glob(f"*/{SAMPLES}"))


@click.command("bench", short_help="Benchmark methods on a dataset and compare them.")
@click.option(
    "--dataset",
    "-d",
    required=True,
    metavar="PATH|NAME",
    help="A GSM8K / PAL (input,target) / HotpotQA-style JSON or JSONL file, a shipped sample "
    "(gsm8k-sample, wiki-sample) or a Hugging Face name (needs the 'datasets' library).",
)
@method_option(
    multiple=True, help="Method to run; repeat to compare several (each once). Default: direct, cot and pal."
)
@model_option
@episode_options(
    click.option(
        "--limit",
        "-n",
        type=click.IntRange(min=1),
        default=None,
        help="Use only the first N examples (can grow on a later resumed run).",
    ),
    click.option(
        "--batch-size",
        type=click.IntRange(min=1),
        default=16,
        show_default=True,
        help="Episodes decoded together by the engine.",
    ),
    click.option(
        "--output-dir",
        "-o",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Where samples and reports go; rerunning with the same directory resumes. "
        "Default: runs/bench-<dataset>-<model>-<shots>shot.",
    ),
    click.option("--overwrite", is_flag=True, help="Delete an earlier run in --output-dir instead of resuming it."),
    click.option(
        "--field",
        "fields",
        multiple=True,
        metavar="TARGET=SOURCE",
        help="Map a JSONL field, e.g. --field question=q --field answer=a (also id=...).",
    ),
    tolerance_option("--rel-tol", 0.0, "Relative"),
    tolerance_option("--abs-tol", 1e-4, "Absolute"),
    click.option("--quiet", "-q", is_flag=True, help="No progress bar."),
    ray_options,
)
def bench(
    dataset,
    methods,
    model_spec,
    dtype,
    templates_dir,
    limit,
    batch_size,
    output_dir,
    overwrite,
    fields,
    rel_tol,
    abs_tol,
    quiet,
    ray_address,
    workers,
    mcp_specs,
    **kwargs,
) -> None:
    """Benchmark methods on a dataset and compare them.

    Every finished example is saved at once to OUTPUT_DIR/<method>/samples.jsonl; rerun the same command
    after an interruption to continue where it stopped. At the end OUTPUT_DIR holds results.json,
    results.md, results.png and results.html (every example and trajectory; `agentkit report` rebuilds it).

    \b
    Example:
      agentkit bench --dataset gsm8k-sample --method direct --method cot --method pal --shots 4
    """
    from agentkit.eval import runner
    from agentkit.models import load_model

    if workers is not None and ray_address is None:
        raise click.UsageError("--workers starts Ray workers: add --ray (and an ADDRESS to use a cluster)")
    settings, options = pop_episode_options(kwargs)
    shots = 4 if settings.shots is None else settings.shots
    out = output_dir or default_output_dir(dataset, model_spec, shots)
    if mcp_specs and ray_address is not None:
        raise click.UsageError("--mcp tools run in this process: drop --ray (or --mcp)")
    config = BenchmarkConfig.from_settings(
        settings,
        dataset=dataset,
        methods=list(methods or DEFAULT_METHODS),
        shots=shots,
        limit=limit,
        batch_size=batch_size,
        output_dir=out,
        overwrite=overwrite,
        fields=list(fields),
        templates=templates_dir,
        rel_tol=rel_tol,
        abs_tol=abs_tol,
        budget=options.pop("budget"),
    )
    tools = open_mcp_tools(mcp_specs, tuple(config.methods))
    if tools:  # in the run's config.json too (their names and schemas), so a resumed run uses the same tools
        config.method_options["tools"] = tools
    prepared = runner.prepare(config)  # every check that needs no model, before loading one
    config, found = prepared.config, prepared.repeats
    if found.questions or found.ids:
        click.echo(f"dataset: {prepared.size} examples; {found}", err=True)

    executor = llm = None
    if ray_address is not None:
        from agentkit.eval.distributed import RayExecutor

        executor = RayExecutor(model_spec, workers=workers, address=ray_address or None, dtype=dtype)
        where = f"model {model_spec or 'default'} on Ray ({ray_address or 'local'})"
    else:
        llm = load_model(model_spec, dtype=dtype)
        where = f"model {llm.name}"
    click.echo(f"benchmark: {dataset} · {', '.join(config.methods)} · {shots}-shot · {where} · output {out}", err=True)
    try:
        result = runner.run_benchmark(
            prepared,
            llm=llm,
            executor=executor,
            progress=not quiet,
            notify=lambda note: click.echo(note, err=True),
            **options,
        )
    except KeyboardInterrupt:
        click.echo(
            f"\ninterrupted: {saved_examples(out)} finished examples are saved in {out}; "
            f"rerun the same command to resume",
            err=True,
        )
        sys.exit(130)
    except (ServerError, MCPServerError, OSError) as exc:  # a server, a tool server or the disk: once back, it resumes
        saved = saved_examples(out) if out.is_dir() else 0
        if not saved:
            raise
        again = "rerun the same command"
        if isinstance(exc, ServerSeedCrash):  # the same command would crash the server again
            again = "rerun with ?seed=off in the model spec"
        raise BenchmarkError(
            f"{one_line(exc)} ({saved} finished examples are saved in {out}; {again} to resume)"
        ) from exc
    finally:
        if executor is not None:
            executor.close()
    click.echo(result.table)
    click.echo(
        f"\nwall time of this run: {result.wall_seconds:.0f} s (latency is each example's own start-to-finish "
        f"time; examples share the model's batches, so latencies overlap)"
    )
    if result.usage is not None and result.usage.episodes:
        usage = result.usage
        cached = f" ({usage.cache_hits} from the cache)" if options["cache"] is not None else ""
        click.echo(
            f"this run: {usage.episodes} episodes, {usage.model_calls} model calls{cached}, "
            f"{usage.tool_calls} tool calls, {usage.input_tokens:,} tokens in, {usage.output_tokens:,} out"
        )
    click.echo(
        f"\nresults: {result.files['results_json']}\nreport:  {result.files['results_md']}\n"
        f"chart:   {result.files['chart']}\nbrowse:  {result.files['results_html']}"
    )
