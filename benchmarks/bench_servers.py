"""agentkit's workloads in-process and through ``ServerLLM`` against model servers, side by side.

    python benchmarks/bench_servers.py --workload cot --n 16
    python benchmarks/bench_servers.py --workload all --n 8 --rounds 2
    python benchmarks/bench_servers.py --workload cot --n 32 --server vllm=http://127.0.0.1:8001/v1 \\
        --server llama.cpp=http://127.0.0.1:8080/v1

The workloads are ``bench_throughput.py``'s: ``cot`` (4-shot chain-of-thought, greedy), ``react`` (ReAct over the
offline Wikipedia corpus, greedy) and ``pal-sc`` (PAL with self-consistency, k = 5 sampled programs). Each runs
the same episodes through ``run_episodes``, once on the in-process engine and once per server through
``ServerLLM`` (the episode code, tools and sandbox stay in this process; only the model calls go over HTTP).

The script starts ``agentkit serve`` itself (same model, dtype and batch size, on a free loopback port; skip it
with ``--no-serve``) and stops it at the end; other servers are given by URL and must serve the same model for
the answers to be comparable. Every backend gets one small warm-up request before it is timed. With ``--rounds
R`` the backends run R times in turn and the fastest time of each counts (the machine may be shared).

Prints s/question per backend, its ratio to the in-process engine, and how many answers (and model texts) agree
with the in-process run. Sampled workloads (pal-sc) agree only where the server draws the same random numbers
(``agentkit serve`` does; vLLM and llama.cpp do not).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_throughput import WORKLOADS, Workload  # noqa: E402

from agentkit.llm import LLM, GenerationConfig  # noqa: E402
from agentkit.runtime import run_episodes  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_serve(args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    """``agentkit serve`` on a free loopback port; returns once ``/v1/models`` answers."""
    import httpx

    port = free_port()
    command = [
        sys.executable,
        "-m",
        "agentkit.cli",
        "serve",
        "--dtype",
        args.dtype,
        "--port",
        str(port),
        "--batch-size",
        str(args.batch_size),
    ]
    if args.model:
        command += ["--model", args.model]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 900
    while True:
        if process.poll() is not None:
            raise SystemExit(f"agentkit serve exited with status {process.returncode}")
        try:
            if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            process.terminate()
            raise SystemExit("agentkit serve did not answer within 15 minutes")
        time.sleep(0.5)


def timed(llm: LLM, wl: Workload, batch_size: int) -> tuple[float, list]:
    strategy = wl.make(llm)
    start = time.perf_counter()
    results = run_episodes(llm, (strategy.episode(q) for q in wl.questions), batch_size=batch_size)
    return time.perf_counter() - start, results


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workload", choices=[*sorted(WORKLOADS), "all"], default="cot")
    ap.add_argument("--n", type=int, default=16, help="questions per workload")
    ap.add_argument(
        "--dtype",
        default="float32",
        choices=["auto", "bfloat16", "float32"],
        help="in-process and agentkit serve (float32: their texts should be identical)",
    )
    ap.add_argument("--batch-size", type=int, default=32, help="episodes in flight (and agentkit serve's batch)")
    ap.add_argument("--max-new-tokens", type=int, default=None, help="override the strategy's default")
    ap.add_argument("--dataset", default=None, help="dataset path or shipped name (default: the workload's)")
    ap.add_argument("--model", default=None, help="model for in-process and agentkit serve (default: embedded)")
    ap.add_argument(
        "--server",
        action="append",
        default=[],
        metavar="NAME=URL",
        help="another server to measure, e.g. vllm=http://127.0.0.1:8001/v1 (repeatable; a server "
        "spec as --model takes it)",
    )
    ap.add_argument("--no-serve", action="store_true", help="do not start agentkit serve")
    ap.add_argument("--rounds", type=int, default=1, help="run every backend this many times; the best counts")
    args = ap.parse_args(argv)

    from agentkit.engine import TransformersLLM
    from agentkit.models import load_model

    print(f"loadavg(1m) before: {os.getloadavg()[0]:.1f}")
    backends: dict[str, LLM] = {}
    serve_process = None
    try:
        if not args.no_serve:
            serve_process, serve_url = start_serve(args)
        local = TransformersLLM(args.model, dtype=args.dtype)
        local.wait_until_ready()
        backends["in-process"] = local
        if serve_process is not None:
            backends["agentkit serve"] = load_model(serve_url)
        for item in args.server:
            name, _, url = item.partition("=")
            backends[name] = load_model(url)
        for name, llm in backends.items():
            llm.generate(["Warm-up:"], GenerationConfig(max_new_tokens=4))
            print(f"{name:>16}: {llm!r}")

        workloads = sorted(WORKLOADS) if args.workload == "all" else [args.workload]
        for workload in workloads:
            wl = WORKLOADS[workload](args)
            n = len(wl.questions)
            best: dict[str, float] = {}
            results: dict[str, list] = {}
            for _ in range(args.rounds):
                for name, llm in backends.items():
                    seconds, out = timed(llm, wl, args.batch_size)
                    if seconds < best.get(name, float("inf")):
                        best[name], results[name] = seconds, out
            print(
                f"\n{wl.name}: {n} questions from {wl.source}, batch {args.batch_size}, dtype {args.dtype}, "
                f"best of {args.rounds}"
            )
            print(
                f"{'backend':>16}  {'s/question':>10}  {'vs in-process':>13}  {'answers agree':>13}  "
                f"{'texts agree':>11}"
            )
            base = results["in-process"]
            for name, seconds in best.items():
                agree = sum(a.answer == b.answer for a, b in zip(results[name], base, strict=True))
                same = sum(a.completions == b.completions for a, b in zip(results[name], base, strict=True))
                print(
                    f"{name:>16}  {seconds / n:>10.2f}  {seconds / best['in-process']:>12.2f}x  "
                    f"{f'{agree}/{n}':>13}  {f'{same}/{n}':>11}"
                )
    finally:
        if serve_process is not None:
            serve_process.terminate()
            serve_process.wait(timeout=60)
    print(f"\nloadavg(1m) after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
