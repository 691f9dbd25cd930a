"""A run's report files, written at the end of every run and rebuilt from the samples alone.

``write_reports(run_dir, config, methods)`` writes, beside ``results.json``:

* ``results.md`` — the comparison table (accuracy with its 95% Wilson interval, failures, tokens, time), the
  run's totals (tokens in and out, model and tool calls, summed latency), the chart, and the paired comparison
  of every pair of methods (``agentkit.eval.compare``);
* ``results.png`` — accuracy bars with interval whiskers (matplotlib, Agg backend);
* ``results.html`` — one self-contained page to browse every example (``agentkit.eval.report_html``).

They are a pure function of the run's config and its records (nothing from the clock), so ``agentkit report
RUN_DIR`` — ``read_run`` then ``write_reports`` — rebuilds exactly what the run wrote, from
``config.json``, ``results.json`` (which methods and ``--limit`` the last command used) and each
``<method>/samples.jsonl``.

Deliberately not here: running or re-scoring anything (the records' verdicts are used as they are), and
``results.json``, whose provenance (versions, git commit, wall time) only the run itself knows.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentkit.errors import UsageError
from agentkit.eval.compare import Comparison, pairwise
from agentkit.eval.report_html import page_data, render_html
from agentkit.eval.scoring import bleu, rouge, wilson_interval
from agentkit.result import TRUNCATED, failure_label

__all__ = [
    "Run",
    "read_run",
    "write_reports",
    "summarize",
    "summary_rows",
    "markdown_table",
    "comparisons_table",
    "write_chart",
    "atomic_write",
    "run_totals",
    "TIMING",
]

SAMPLES = "samples.jsonl"
TIMING = "timing"


# --- summaries -----------------------------------------------------------------------------------------------------


def summarize(method: str, records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Accuracy with a 95% Wilson interval, failure rates, tokens and time for one method."""
    n = len(records)
    correct = sum(bool(r["correct"]) for r in records)
    failures = Counter(r["failure"] for r in records if r.get("failure"))
    answered = sum(r.get("answer") is not None for r in records)
    prompt_tokens = sum(int(r.get("prompt_tokens") or 0) for r in records)
    completion_tokens = sum(int(r.get("completion_tokens") or 0) for r in records)
    model_calls = sum(int(r.get("model_calls") or 0) for r in records)  # absent in runs older than the field
    tool_calls = sum(int(r.get("tool_calls") or 0) for r in records)
    seconds = sum(float((r.get(TIMING) or {}).get("duration") or 0.0) for r in records)
    lo, hi = wilson_interval(correct, n)
    summary: dict[str, Any] = {
        "method": method,
        "n": n,
        "correct": correct,
        "accuracy": correct / n if n else 0.0,
        "ci95": [lo, hi],
        "answered": answered,
        "failures": dict(sorted(failures.items())),
        "failure_rate": sum(failures.values()) / n if n else 0.0,
        "failure_rates": {k: v / n for k, v in sorted(failures.items())},
        "truncated": failures.get(TRUNCATED, 0),  # failed because the token limit cut the answer or program off
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "tokens_per_example": (prompt_tokens + completion_tokens) / n if n else 0.0,
        "model_calls": model_calls,
        "tool_calls": tool_calls,
        "seconds": round(seconds, 3),  # sum of per-example latencies (they overlap when batched)
        "seconds_per_example": round(seconds / n, 4) if n else 0.0,
    }
    if any(r.get("kind") == "text" for r in records):
        text = list(records)  # numeric golds among them score EM = F1 = correct
        summary["exact_match"] = sum(r["exact_match"] for r in text) / len(text)
        summary["f1"] = sum(r["f1"] for r in text) / len(text)
        preds = [r.get("answer") or "" for r in text]
        golds = [r["gold"] for r in text]
        rouges = [rouge(p, g) for p, g in zip(preds, golds, strict=True)]
        for key in ("rouge1", "rouge2", "rougeL"):
            summary[key] = sum(s[key] for s in rouges) / len(rouges)
        summary["bleu"] = bleu(preds, golds)
    return summary


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def summary_rows(summaries: Sequence[Mapping[str, Any]], *, by_kind: bool = False) -> tuple[list[str], list[list[str]]]:
    """The comparison table as text cells: (header, rows). Truncations (answers the token limit cut off) are
    counted apart from the other failures. ``by_kind`` lists every failure kind with its count (the HTML report)
    instead of the other failures' rate and their most common kind (the terminal and results.md)."""
    text = any("f1" in s for s in summaries)
    failure_head = ["failures by kind"] if by_kind else ["truncated", "other failures", "top failure"]
    head = ["method", "n", "accuracy", "95% CI", *failure_head, "tokens/ex", "latency s/ex"]
    if text:
        head[4:4] = ["F1", "ROUGE-L"]
    rows = []
    for s in summaries:
        others = {kind: count for kind, count in s["failures"].items() if kind != TRUNCATED}
        if by_kind:
            failures = [", ".join(f"{failure_label(kind)} {count}" for kind, count in s["failures"].items()) or "none"]
        else:
            top = max(others.items(), key=lambda kv: (kv[1], kv[0]))[0] if others else "-"
            n = s["n"] or 1
            failures = [_pct(s["failures"].get(TRUNCATED, 0) / n), _pct(sum(others.values()) / n), top]
        row = [
            s["method"],
            str(s["n"]),
            _pct(s["accuracy"]),
            f"{_pct(s['ci95'][0])}–{_pct(s['ci95'][1])}",
            *failures,
            f"{s['tokens_per_example']:.0f}",
            f"{s['seconds_per_example']:.2f}",
        ]
        if text:
            row[4:4] = [f"{s.get('f1', 0.0):.3f}", f"{s.get('rougeL', 0.0):.3f}"]
        rows.append(row)
    return head, rows


def run_totals(summaries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The run's totals over its methods: examples, tokens in and out, model and tool calls, summed latency."""
    totals: dict[str, Any] = {
        key: sum(s.get(key, 0) for s in summaries)
        for key in ("n", "prompt_tokens", "completion_tokens", "model_calls", "tool_calls")
    }
    totals["seconds"] = round(sum(s.get("seconds", 0.0) for s in summaries), 3)
    return totals


def totals_line(summaries: Sequence[Mapping[str, Any]]) -> str:
    """The run's totals as one line of text."""
    t = run_totals(summaries)
    return (
        f"Totals: {t['n']} episodes · {t['prompt_tokens']:,} tokens in, {t['completion_tokens']:,} out · "
        f"{t['model_calls']:,} model calls · {t['tool_calls']:,} tool calls · {t['seconds']:.1f} s of "
        f"episode latency (summed; batched episodes overlap)"
    )


def markdown_table(summaries: Sequence[Mapping[str, Any]]) -> str:
    """A Markdown table comparing methods (also printed at the end of a CLI run)."""
    head, rows = summary_rows(summaries)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def write_chart(path: Path, summaries: Sequence[Mapping[str, Any]], title: str) -> Path:
    """Accuracy bars with 95% interval whiskers (matplotlib, Agg backend: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [s["method"] for s in summaries]
    acc = [100 * s["accuracy"] for s in summaries]
    lower = [100 * (s["accuracy"] - s["ci95"][0]) for s in summaries]
    upper = [100 * (s["ci95"][1] - s["accuracy"]) for s in summaries]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.3 * len(names) + 2), 4))
    bars = ax.bar(names, acc, yerr=[lower, upper], capsize=6, color="#4C72B0", edgecolor="black")
    for bar, value, top in zip(bars, acc, upper, strict=True):
        ax.annotate(
            f"{value:.1f}%",
            (bar.get_x() + bar.get_width() / 2, min(value + top + 1.5, 97)),
            ha="left",
            va="bottom",
            xytext=(4, 0),
            textcoords="offset points",
            fontsize=9,
        )
    ax.set_ylim(0, 100)
    ax.set_ylabel("accuracy (%) with 95% Wilson interval")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path`` and rename it over ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# --- reading a run directory ---------------------------------------------------------------------------------------


@dataclass
class Run:
    """What a run directory holds: its config, the last command's results.json, and each method's records."""

    run_dir: Path
    config: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    methods: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def report_config(self) -> dict[str, Any]:
        """The config the report is titled from: results.json's (methods, limit) over config.json's."""
        return {**self.config, **(self.results.get("config") or {})}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: unreadable ({exc}); is this a run directory of agentkit bench?") from None
    return data if isinstance(data, dict) else {}


def parse_record(line: str | bytes) -> dict[str, Any] | None:
    """One line of samples.jsonl as a record, or None where it is not one (torn by a kill, not JSON, no id)."""
    try:
        record = json.loads(line)
        record["id"]
    except (ValueError, KeyError, TypeError):
        return None
    return record


def numbered_records(lines: Sequence[str | bytes]) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """The number (from 1) and record (:func:`parse_record`) of each line of samples.jsonl that is not blank."""
    for lineno, line in enumerate(lines, 1):
        if line.strip():
            yield lineno, parse_record(line)


def read_records(path: Path) -> list[dict[str, Any]]:
    """The records of one samples.jsonl in dataset order, read only: a torn last line is skipped, not repaired
    as ``runner.SampleStore.load`` does, because a report may be made while the run is still appending."""
    lines = path.read_text(encoding="utf-8").split("\n")  # not splitlines(): U+2028 may sit inside a record
    while lines and not lines[-1].strip():
        lines.pop()
    records: dict[str, dict[str, Any]] = {}
    for lineno, record in numbered_records(lines):
        if record is None:
            if lineno == len(lines):
                continue  # the trace of a kill mid-write; the next resumed run redoes that example
            raise UsageError(
                f"{path}:{lineno}: unreadable record; delete that line (the benchmark's next resume "
                f"runs its example again), or rerun into a new --output-dir"
            )
        records.setdefault(record["id"], record)
    return sorted(records.values(), key=lambda r: r.get("index", 0))


def read_run(run_dir: str | Path) -> Run:
    """Read a run directory: the methods of the last command (all methods when results.json is missing),
    restricted to its ``--limit``."""
    run_dir = Path(run_dir).expanduser()
    if not run_dir.is_dir():
        raise UsageError(f"{str(run_dir)!r}: no such run directory")
    run = Run(run_dir=run_dir)
    if (run_dir / "config.json").is_file():
        run.config = _read_json(run_dir / "config.json")
    if (run_dir / "results.json").is_file():
        run.results = _read_json(run_dir / "results.json")
    present = sorted(p.parent.name for p in run_dir.glob(f"*/{SAMPLES}"))
    listed = (run.results.get("config") or {}).get("methods") or []
    names = [m for m in listed if m in present] or present
    if not names:
        raise UsageError(f"{run_dir}: no <method>/{SAMPLES} here; pass the --output-dir of an agentkit bench run")
    limit = run.report_config.get("limit")
    for name in names:
        records = read_records(run_dir / name / SAMPLES)
        if limit is not None:
            records = [r for r in records if r.get("index", 0) < limit]
        run.methods[name] = records
    return run


# --- writing the reports -------------------------------------------------------------------------------------------


def comparisons_table(comparisons: Sequence[Comparison]) -> str:
    """Markdown: every pair of methods, paired on their common questions."""
    head = ["A", "B", "n", "both right", "only A", "only B", "both wrong", "A − B", "95% CI", "McNemar p"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for c in comparisons:
        row = [
            c.a,
            c.b,
            str(c.n),
            str(c.both),
            str(c.only_a),
            str(c.only_b),
            str(c.neither),
            f"{100 * c.difference:+.1f}",
            f"{100 * c.ci95[0]:+.1f} to {100 * c.ci95[1]:+.1f}",
            f"{c.p_value:.3g}",
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def write_reports(
    run_dir: Path,
    config: Mapping[str, Any],
    methods: Mapping[str, Sequence[Mapping[str, Any]]],
) -> dict[str, Path]:
    """Write results.md, results.png and results.html for ``methods`` (name -> records in dataset order)."""
    summaries = [summarize(name, records) for name, records in methods.items()]
    comparisons = pairwise(methods)
    n = len({r["id"] for records in methods.values() for r in records})
    dataset, model, shots = config.get("dataset", "?"), config.get("model", "?"), config.get("shots", "?")
    data = page_data(methods, comparisons)
    repeats = sum("repeat_of" in q for q in data["questions"])
    files = {
        "results_md": run_dir / "results.md",
        "chart": run_dir / "results.png",
        "results_html": run_dir / "results.html",
    }
    write_chart(files["chart"], summaries, f"{dataset} · {model} · {shots}-shot · n={n}")
    md = [
        f"# Benchmark: {dataset}",
        "",
        f"Model: `{model}` · shots: {shots} · prompt format: {config.get('prompt_format', 'text')} · examples: {n}"
        + (f" ({repeats} repeat an earlier question; each is scored on its own)" if repeats else ""),
        "",
        markdown_table(summaries),
        "",
        totals_line(summaries),
        "",
        "![accuracy by method](results.png)",
        "",
    ]
    if comparisons:
        md += [
            "## Paired comparisons",
            "",
            "Each pair on the questions both answered: accuracy difference A − B in points with a 95% "
            "Newcombe interval for paired data, and the exact McNemar test's two-sided p-value.",
            "",
            comparisons_table(comparisons),
            "",
        ]
    md += ["Browse every example and its trajectory in [results.html](results.html).", ""]
    atomic_write(files["results_md"], "\n".join(md))
    page = render_html(
        config=config,
        data=data,
        table=summary_rows(summaries, by_kind=True),
        comparisons=comparisons,
        chart_png=files["chart"].read_bytes(),
    )
    atomic_write(files["results_html"], page)
    return files
