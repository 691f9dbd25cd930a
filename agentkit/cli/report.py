"""``agentkit report RUN_DIR`` and ``agentkit compare A[:METHOD] B[:METHOD]``: thin click layers over the harness.

``report`` rebuilds a run's results.md, results.png and results.html from its samples (``agentkit.eval.report``);
``compare`` prints the paired comparison of two methods or two runs (``agentkit.eval.compare``), as text or JSON.

Deliberately not here: any logic (the library modules above have it all).
"""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("report", short_help="Rebuild a run's results.md, chart and results.html.")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
def report(run_dir: Path) -> None:
    """Rebuild RUN_DIR's results.md, results.png and results.html from its samples alone.

    RUN_DIR is the --output-dir of an `agentkit bench` run. results.html is one offline page: the table, the
    chart, every pair of methods compared, and every example with each method's whole trajectory.
    """
    from agentkit.eval.report import read_run, write_reports

    run = read_run(run_dir)
    files = write_reports(run.run_dir, run.report_config, run.methods)
    n = len({r["id"] for records in run.methods.values() for r in records})
    click.echo(f"{n} examples × {len(run.methods)} methods ({', '.join(run.methods)})")
    for path in files.values():
        click.echo(f"wrote {path}")


@click.command("compare", short_help="Is the difference real? Paired comparison of two runs.")
@click.argument("a", metavar="A[:METHOD]")
@click.argument("b", metavar="B[:METHOD]")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
def compare(a: str, b: str, as_json: bool) -> None:
    """Compare two methods of one run (runs/x:cot runs/x:pal) or one method in two runs (runs/x:cot runs/y:cot).

    Questions are paired by id. Prints the agreement table (both right / only A / only B / both wrong), the
    accuracy difference with a 95% paired interval (Newcombe 1998) and the exact McNemar test. METHOD may be
    left out when the run has only one.
    """
    from agentkit.eval.compare import compare_specs, format_comparison

    result = compare_specs(a, b)
    click.echo(json.dumps(result.to_dict(), indent=2, ensure_ascii=False) if as_json else format_comparison(result))
