"""Ray workers on the real default model: two workers record what one process records (float32). Slow: ``-m model``.

Each worker loads its own copy of the model and runs its own shards, so their batches hold different examples
than the single process's; in float32 that must not change a single token.
"""

from __future__ import annotations

import logging

import pytest
import ray

from agentkit.eval import run_benchmark
from agentkit.eval.distributed import RayExecutor
from agentkit.eval.runner import TIMING

pytestmark = [pytest.mark.model, pytest.mark.timeout(900)]


def records(result) -> list[dict]:
    return [{k: v for k, v in r.items() if k != TIMING} for r in result.records]


def test_two_ray_workers_record_what_one_process_records(tmp_path):
    from agentkit.engine import TransformersLLM

    alone = run_benchmark("gsm8k-sample", "cot", TransformersLLM(dtype="float32"), limit=8, batch_size=8)
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    try:
        with RayExecutor(None, workers=2, dtype="float32") as executor:
            spread = run_benchmark(
                "gsm8k-sample", "cot", executor=executor, limit=8, batch_size=8, output_dir=tmp_path / "ray"
            )
            threads = executor.torch_threads()
    finally:
        ray.shutdown()
    assert threads == [1, 1]  # each worker has its share of the 2 cores
    assert records(spread) == records(alone)
    assert len(spread.records) == 8 and any(r["completions"][0].strip() for r in spread.records)
