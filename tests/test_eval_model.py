"""The harness on the real default model: batched results equal one-at-a-time results in float32. Slow: ``-m model``.

This is the promise that makes batching safe for measurement: the shared batches, continuous batching and
prefix-KV reuse change how fast a benchmark runs, never what it records.
"""

from __future__ import annotations

import pytest

from agentkit.eval import run_benchmark
from agentkit.eval.runner import TIMING

pytestmark = [pytest.mark.model, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def llm():
    from agentkit.engine import TransformersLLM

    return TransformersLLM(dtype="float32")


def records(result) -> dict[str, list[dict]]:
    return {
        name: [{k: v for k, v in r.items() if k != TIMING} for r in m.records] for name, m in result.methods.items()
    }


@pytest.mark.parametrize(
    "dataset, methods, limit",
    [("gsm8k-sample", ["cot", "pal"], 6), ("wiki-sample", ["react"], 4)],
)
def test_batched_run_records_what_batch_size_one_records(llm, dataset, methods, limit):
    batched = run_benchmark(dataset, methods, llm, limit=limit, batch_size=32)
    alone = run_benchmark(dataset, methods, llm, limit=limit, batch_size=1)
    assert records(batched) == records(alone)
    assert all(len(m.records) == limit for m in batched.methods.values())
    assert any(r["completions"] and r["completions"][0].strip() for m in batched.methods.values() for r in m.records)
