"""The benchmark harness: datasets, scoring, a run's configuration, a resumable runner, reports (results.md,
results.html) and paired comparisons (``agentkit compare``).

    from agentkit.eval import run_benchmark
    result = run_benchmark(dataset="gsm8k-sample", method=["cot", "pal"], llm=llm, output_dir="runs/demo")
    result.accuracies  # {"cot": 0.41, "pal": 0.55}

The ``agentkit bench`` command is a thin layer over this package, in ``agentkit.cli.bench``.

See docs/benchmark.md. Importing this package is cheap: no model, matplotlib or rouge-score is loaded.
"""

from __future__ import annotations

from agentkit.eval.config import BenchmarkConfig
from agentkit.eval.datasets import DatasetError, Example, load_dataset
from agentkit.eval.runner import BenchmarkError, BenchmarkResult, MethodResult, Prepared, prepare, run_benchmark
from agentkit.eval.scoring import score_answer, wilson_interval

__all__ = [
    "BenchmarkConfig",
    "BenchmarkError",
    "BenchmarkResult",
    "DatasetError",
    "Example",
    "MethodResult",
    "Prepared",
    "load_dataset",
    "prepare",
    "run_benchmark",
    "score_answer",
    "wilson_interval",
]
