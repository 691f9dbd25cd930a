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
        [
            sys.executable,
            "-m",
            "agentkit.cli",
            "serve",
            "--dtype",
            "float32",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],  # no access log: nothing reads the pipe until the end
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
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
    result = CliRunner().invoke(
        main,
        ["chat", "--model", server_url, "--method", "cot", "--max-tokens", "48"],
        input="What is 2 plus 3?\n/quit\n",
    )
    assert result.exit_code == 0, result.output
    assert "Error" not in result.output and len(result.output.strip()) > 40


def test_the_real_models_context_bounds_max_tokens_in_the_server_the_engine_and_the_cli(server_url, local):
    from agentkit.errors import UsageError
    from agentkit.llm import GenerationConfig

    assert local.context_length == 32768  # Gemma 3 270M's max_position_embeddings
    for max_tokens in (40_000, 100_000_000):
        response = httpx.post(f"{server_url}/completions", json={"prompt": "Hi", "max_tokens": max_tokens}, timeout=60)
        assert response.status_code == 400, response.text
        assert "this model's context is 32768 tokens" in response.json()["error"]["message"]
    with pytest.raises(UsageError, match="exceed the model's context of 32768 tokens"):
        local.generate(["Hi"], GenerationConfig(max_new_tokens=100_000_000))
    result = CliRunner().invoke(main, ["run", "What is 2 + 3?", "--dtype", "float32", "--max-tokens", "100000000"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].startswith("Error: engine ")
    assert "exceed the model's context of 32768 tokens" in result.output and "Traceback" not in result.output
