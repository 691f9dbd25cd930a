"""End to end on the real default model: ``agentkit serve`` in float32 on a loopback port, CoT and ReAct benchmarks
through ``ServerLLM`` record exactly what the in-process engine records, and ``agentkit chat`` streams from it.
Slow: ``-m model``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx
import pytest
from click.testing import CliRunner

from agentkit.cli import main
from agentkit.eval import run_benchmark
from agentkit.eval.runner import TIMING
from agentkit.serving import ServerLLM

pytestmark = [pytest.mark.model, pytest.mark.timeout(2400)]


@pytest.fixture(scope="module")
def server_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "agentkit.cli", "serve", "--dtype", "float32", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 600
        while True:
            if process.poll() is not None:
                pytest.fail(f"agentkit serve exited with {process.returncode}: {process.stderr.read()[-2000:]}")
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "agentkit serve did not become ready in 10 minutes"
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def local():
    from agentkit.engine import TransformersLLM

    return TransformersLLM(dtype="float32")


def records(result) -> list[dict]:
    return [{k: v for k, v in r.items() if k != TIMING} for m in result.methods.values() for r in m.records]


@pytest.mark.parametrize("dataset, method", [("gsm8k-sample", "cot"), ("wiki-sample", "react")])
def test_a_benchmark_through_agentkit_serve_records_what_the_engine_records_in_process(
    server_url, local, dataset, method
):
    remote = ServerLLM(server_url)
    assert remote.name == local.name
    served = run_benchmark(dataset, method, remote, limit=4, batch_size=8)
    in_process = run_benchmark(dataset, method, local, limit=4, batch_size=8)
    assert records(served) == records(in_process)
    assert any(r["completions"] and r["completions"][0].strip() for r in records(served))
    assert all(r["prompt_tokens"] > 0 and r["completion_tokens"] > 0 for r in records(served))


def test_agentkit_chat_streams_from_agentkit_serve(server_url):
    result = CliRunner().invoke(main, ["chat", "--model", server_url, "--method", "cot", "--max-tokens", "48"],
                                input="What is 2 plus 3?\n/quit\n")
    assert result.exit_code == 0, result.output
    assert "Error" not in result.output and len(result.output.strip()) > 40
