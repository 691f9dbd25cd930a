"""Benchmarks on Ray workers with scripted models: same records as one process, killed workers, killed drivers.

One local Ray instance (2 CPUs, no dashboard) serves the whole module: starting Ray takes seconds.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray
from click.testing import CliRunner

from agentkit.errors import BenchmarkError
from agentkit.eval import run_benchmark
from agentkit.eval.datasets import load_dataset
from agentkit.eval.distributed import RayExecutor, cpus_per_worker
from agentkit.eval.runner import TIMING, LocalExecutor
from agentkit.llm import ScriptError
from agentkit.models import ModelSpecError, load_model

EXAMPLES = load_dataset("gsm8k-sample")
N = len(EXAMPLES)


@pytest.fixture(scope="module")
def cluster():
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def script(tmp_path_factory) -> Path:
    """Answers for cot and direct by question: right for two questions in three, wrong for the third."""
    table = {}
    for i, e in enumerate(EXAMPLES):
        answer = e.answer if i % 3 else f"{float(e.answer) + 1:g}"
        table[e.question] = f"Let us think step by step. The answer is {answer}."
    path = tmp_path_factory.mktemp("script") / "replies.json"
    path.write_text(json.dumps(table))
    return path


def samples(out: Path, method: str = "cot") -> list[dict]:
    return [json.loads(line) for line in (out / method / "samples.jsonl").read_text().splitlines()]


def strip(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != TIMING} for r in records]


@pytest.fixture(scope="module")
def reference(script, tmp_path_factory):
    """The single-process run every Ray run must match."""
    out = tmp_path_factory.mktemp("reference")
    result = run_benchmark(
        "gsm8k-sample", ["cot", "direct"], load_model(f"scripted:{script}"), output_dir=out, batch_size=4
    )
    return {"cot": strip(samples(out, "cot")), "direct": strip(samples(out, "direct")), "accuracy": result.accuracies}


def test_importing_the_harness_or_running_locally_never_imports_ray(script, tmp_path):
    code = (
        "import sys\n"
        "import agentkit.eval, agentkit.eval.runner, agentkit.cli, agentkit.cli.bench\n"
        "from agentkit.models import load_model\n"
        f"agentkit.eval.run_benchmark('gsm8k-sample', 'cot', load_model('scripted:{script}'), limit=3,"
        f" output_dir={str(tmp_path / 'o')!r})\n"
        "assert 'ray' not in sys.modules, 'ray was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_two_workers_record_what_one_process_records(cluster, script, reference, tmp_path):
    out = tmp_path / "ray"
    with RayExecutor(f"scripted:{script}", workers=2, shard_size=5) as executor:
        result = run_benchmark("gsm8k-sample", ["cot", "direct"], executor=executor, output_dir=out, batch_size=4)
        assert executor.describe() == {"backend": "ray", "workers": 2, "cpus_per_worker": 1.0}
    assert strip(samples(out, "cot")) == reference["cot"]
    assert strip(samples(out, "direct")) == reference["direct"]
    assert result.accuracies == reference["accuracy"]
    config = json.loads((out / "config.json").read_text())
    assert config["execution"]["workers"] == 2 and config["model"] == f"scripted:{script.name}"
    assert json.loads((out / "results.json").read_text())["config"]["execution"]["backend"] == "ray"


def test_a_killed_worker_loses_nothing_and_is_replaced(cluster, script, reference, tmp_path, caplog):
    out = tmp_path / "killed-worker"
    executor = RayExecutor(f"scripted:{script}?delay=0.004", workers=2, shard_size=8)
    killed = []

    def kill_one(record):
        busy = [p for p in executor._places if p.state == "busy"]
        if not killed and len(samples(out)) >= 6 and busy:
            killed.append(busy[0])
            ray.kill(busy[0].actor)

    with executor, caplog.at_level(logging.WARNING, logger="agentkit.eval.distributed"):
        result = run_benchmark(
            "gsm8k-sample", "cot", executor=executor, output_dir=out, batch_size=4, on_record=kill_one
        )
    assert killed and killed[0].restarts == 1
    assert "died" in caplog.text and "go back to the queue" in caplog.text
    records = samples(out)
    assert len(records) == N and len({r["id"] for r in records}) == N
    assert strip(records) == reference["cot"]
    assert result.accuracy == reference["accuracy"]["cot"]


def test_an_example_whose_worker_keeps_dying_is_set_aside_then_retried_by_a_rerun(cluster, script, reference, tmp_path):
    out = tmp_path / "attempts"
    executor = RayExecutor(f"scripted:{script}?delay=0.004", workers=2, shard_size=8, max_attempts=1)
    killed = []

    def kill_one(record):
        busy = [p for p in executor._places if p.state == "busy"]
        if not killed and busy:
            killed.append(len(busy[0].shard) - len(busy[0].received))
            ray.kill(busy[0].actor)

    with executor, pytest.raises(BenchmarkError, match=r"example\(s\) \(first: cot .*died 1 times.*rerun"):
        run_benchmark("gsm8k-sample", "cot", executor=executor, output_dir=out, batch_size=4, on_record=kill_one)
    records = samples(out)
    assert 0 < N - len(records) <= killed[0]  # only the dead worker's unfinished examples are missing
    assert len({r["id"] for r in records}) == len(records)
    # The same command resumes, here without Ray, and ends with the single-process records.
    run_benchmark("gsm8k-sample", "cot", load_model(f"scripted:{script}"), output_dir=out, batch_size=4)
    assert strip(samples(out)) == reference["cot"]


def test_a_killed_driver_resumes_with_another_worker_count(cluster, script, reference, tmp_path):
    """SIGKILL a `bench --ray` process midway; rerunning with one worker finishes without duplicates."""
    out = tmp_path / "killed-driver"
    command = [
        sys.executable,
        "-m",
        "agentkit.cli",
        "bench",
        "-d",
        "gsm8k-sample",
        "-m",
        "cot",
        "--model",
        f"scripted:{script}?delay=0.03",
        "--batch-size",
        "2",
        "-o",
        str(out),
        "-q",
        "--ray",
        cluster,
        "--workers",
        "2",
    ]
    proc = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    path = out / "cot" / "samples.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if path.exists() and len(path.read_text().splitlines()) >= 5:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    partial = samples(out)
    assert 5 <= len(partial) < N and len({r["id"] for r in partial}) == len(partial)

    with RayExecutor(f"scripted:{script}", workers=1) as executor:
        result = run_benchmark("gsm8k-sample", "cot", executor=executor, output_dir=out, batch_size=4)
    assert result.methods["cot"].summary["ran_now"] == N - len(partial)
    assert strip(samples(out)) == reference["cot"]
    assert json.loads((out / "config.json").read_text())["execution"]["workers"] == 1


def test_a_model_the_workers_cannot_load_is_one_clear_error(cluster, tmp_path):
    with RayExecutor(f"scripted:{tmp_path / 'missing.json'}", workers=1) as executor:
        with pytest.raises(ModelSpecError, match="missing.json not found"):
            run_benchmark("gsm8k-sample", "cot", executor=executor, output_dir=tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_an_error_in_a_worker_reaches_the_driver_as_itself(cluster, tmp_path):
    script = tmp_path / "partial.json"
    script.write_text(json.dumps({EXAMPLES[0].question: "The answer is 1."}))
    with RayExecutor(f"scripted:{script}", workers=1) as executor:
        with pytest.raises(ScriptError, match="has no reply for this prompt"):
            run_benchmark("gsm8k-sample", "cot", executor=executor, output_dir=tmp_path / "o", limit=4)


def test_the_executor_is_a_run_time_hook_not_part_of_the_config(script, tmp_path):
    from agentkit.eval.config import BenchmarkConfig

    assert "executor" not in BenchmarkConfig.model_fields
    config = BenchmarkConfig.of(dataset="gsm8k-sample", methods="cot", limit=2, output_dir=tmp_path / "o")
    result = run_benchmark(config, executor=LocalExecutor(load_model(f"scripted:{script}")))
    assert result.config["execution"] == {"backend": "local", "workers": 1}
    assert "execution" not in config.identity(model="m", fingerprint="f", method_options={})


def test_cli_ray_options(monkeypatch, script, tmp_path):
    import agentkit.eval.distributed
    from agentkit.cli.bench import bench

    made = []

    class FakeRay(LocalExecutor):
        def __init__(self, model, **options):
            super().__init__(load_model(model))
            made.append((model, options))

        def close(self):
            made.append("closed")

    monkeypatch.setattr(agentkit.eval.distributed, "RayExecutor", FakeRay)
    args = ["-d", "gsm8k-sample", "-m", "cot", "--model", f"scripted:{script}", "-n", "3", "-q"]
    result = CliRunner().invoke(bench, [*args, "-o", str(tmp_path / "a"), "--ray", "--workers", "3"])
    assert result.exit_code == 0, result.output
    assert made == [(f"scripted:{script}", {"workers": 3, "address": None, "dtype": "auto"}), "closed"]
    made.clear()
    result = CliRunner().invoke(bench, [*args, "-o", str(tmp_path / "b"), "--ray", "10.0.0.1:6379"])
    assert result.exit_code == 0 and made[0][1]["address"] == "10.0.0.1:6379"
    result = CliRunner().invoke(bench, [*args, "--workers", "2"])
    assert result.exit_code == 2 and "--workers starts Ray workers: add --ray" in result.output


@pytest.mark.parametrize(
    "nodes, workers, share",
    [([2], 1, 2), ([2], 2, 1), ([8, 4], 2, 4), ([8, 4], 3, 4), ([8, 8], 4, 4), ([2], 4, 0.5), ([16], 3, 5.3333)],
)
def test_each_worker_gets_its_share_of_a_node(nodes, workers, share):
    assert cpus_per_worker(nodes, workers) == share
    assert sum(int(n / share + 1e-9) for n in nodes) >= workers


def test_a_cluster_without_cpus_is_a_clear_error():
    with pytest.raises(BenchmarkError, match="no CPUs"):
        cpus_per_worker([0], 2)
