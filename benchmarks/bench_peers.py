"""agentkit's benchmark workloads in-process and through model servers that are already running, side by side.

    python benchmarks/bench_peers.py --peer vllm=http://127.0.0.1:8001/v1 --peer serve=http://127.0.0.1:8002/v1
    python benchmarks/bench_peers.py --dtype bfloat16 --peer "vllm-bf16=http://127.0.0.1:8003/v1?seed=off"
    python benchmarks/bench_peers.py --workload cot --cot-n 8 --peer llama.cpp=http://127.0.0.1:8080/v1

Three workloads, each exactly what ``agentkit bench`` runs (``run_benchmark``: the same prompts, tools, sandbox
and scoring; the equivalent command is printed): ``cot`` (4-shot chain-of-thought, greedy, on a GSM8K-format
set), ``react`` (ReAct over the offline Wikipedia corpus, greedy, on the wiki sample) and ``pal-sc`` (PAL with
self-consistency, k = 5 sampled programs run in the sandbox). Each runs once on the model loaded in this process
(``--model``, ``--dtype``) and once through every ``--peer NAME=SPEC`` (a spec as ``--model`` takes it: vLLM,
llama-server, ``agentkit serve``...); the episodes, tools and sandbox stay in this process, only the model calls
go to the server. Nothing is started here: start the servers first, serving the same model (for vLLM's CPU
server, see docs/serving.md). Every backend first runs each workload on its first ``--warm-up`` questions,
untimed (shapes a backend compiles or tunes on first use); backends take turns within each workload, and with
``--rounds R`` each runs R times and its fastest run counts.

Prints per workload and backend: the wall time of the run, the generated tokens (as the backend reports them)
per second, the wall time as a multiple of the in-process run's, and how many answers and model texts agree
with the in-process run; at the end, the in-process wall time as a share of each peer's. In float32 the greedy
workloads' texts must be identical on every backend: the first record that differs is named, and the script
exits with status 1. Sampled texts (pal-sc) agree only where the server draws the same random numbers (``agentkit
serve`` does; vLLM does not, and vLLM's CPU backend needs ``?seed=off``, which draws unseeded samples).
A peer that fails is reported with its error and skipped for the remaining workloads.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agentkit.errors import AgentkitError  # noqa: E402
from agentkit.llm import LLM, GenerationConfig  # noqa: E402

IN_PROCESS = "in-process"


@dataclass
class Workload:
    """One ``agentkit bench`` run: a method over the first ``n`` examples of a dataset."""

    name: str
    method: str
    dataset: str
    n: int
    sampled: bool = False
    options: dict[str, Any] | None = None

    def command(self, args: argparse.Namespace) -> str:
        k = f" --k {self.options['k']}" if self.options else ""
        return (
            f"agentkit bench -d {self.dataset} -m {self.method} -n {self.n} --shots {args.shots} "
            f"--batch-size {args.batch_size}{k} --model SPEC (in-process: --dtype {args.dtype})"
        )


@dataclass
class Run:
    """One backend's run of one workload."""

    seconds: float
    tokens: int
    records: list[dict[str, Any]]


def workloads(args: argparse.Namespace) -> list[Workload]:
    every = {
        "cot": Workload("cot (4-shot, greedy)", "cot", args.math_dataset, args.cot_n),
        "react": Workload("react (4-shot, offline Wikipedia, greedy)", "react", args.wiki_dataset, args.react_n),
        "pal-sc": Workload(
            f"pal-sc (4-shot, k={args.k}, sampled)", "pal-sc", args.math_dataset, args.pal_sc_n, True, {"k": args.k}
        ),
    }
    return [every[name] for name in args.workload or every]


def run(llm: LLM, wl: Workload, args: argparse.Namespace) -> Run:
    from agentkit.eval.runner import run_benchmark

    result = run_benchmark(
        wl.dataset,
        wl.method,
        llm,
        shots=args.shots,
        limit=wl.n,
        batch_size=args.batch_size,
        method_options=wl.options or {},
    )
    return Run(result.wall_seconds, result.usage.output_tokens, result.records)


def first_difference(base: list[dict], other: list[dict], name: str) -> str | None:
    """Where ``other``'s model texts first differ from the in-process run's: the record, the call, the text."""
    for a, b in zip(base, other, strict=True):
        if a["completions"] == b["completions"]:
            continue
        where = f"{a['method']} record {a['index']} (id {a['id']})"
        for call, (x, y) in enumerate(zip(a["completions"], b["completions"], strict=False)):
            if x != y:
                at = next((i for i, (p, q) in enumerate(zip(x, y, strict=False)) if p != q), min(len(x), len(y)))
                start = max(0, at - 30)
                return (
                    f"{where}, model call {call + 1}, from character {at}: {IN_PROCESS} {x[start : at + 30]!r} "
                    f"vs {name} {y[start : at + 30]!r}"
                )
        return f"{where}: {len(a['completions'])} model calls {IN_PROCESS}, {len(b['completions'])} on {name}"
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--peer",
        action="append",
        default=[],
        metavar="NAME=SPEC",
        help="a running server to measure, e.g. vllm=http://127.0.0.1:8001/v1 (repeatable; a spec as --model "
        "takes it, options included: ?seed=off for vLLM's CPU server)",
    )
    ap.add_argument("--workload", action="append", choices=["cot", "react", "pal-sc"], help="default: all three")
    ap.add_argument(
        "--dtype",
        default="float32",
        choices=["auto", "bfloat16", "float32"],
        help="the in-process model's (float32: greedy texts must be identical to float32 peers')",
    )
    ap.add_argument("--model", default=None, help="the in-process model (default: the embedded one)")
    ap.add_argument("--math-dataset", default="gsm8k-sample", help="cot's and pal-sc's questions (GSM8K format)")
    ap.add_argument("--wiki-dataset", default="wiki-sample", help="react's questions")
    ap.add_argument("--cot-n", type=int, default=32)
    ap.add_argument("--react-n", type=int, default=30)
    ap.add_argument("--pal-sc-n", type=int, default=16)
    ap.add_argument("--k", type=int, default=5, help="pal-sc's samples per question")
    ap.add_argument("--shots", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=32, help="episodes in flight, on every backend")
    ap.add_argument("--rounds", type=int, default=1, help="runs per backend and workload; the fastest counts")
    ap.add_argument(
        "--warm-up", type=int, default=2, metavar="N", help="an untimed run of each workload's first N questions first"
    )
    args = ap.parse_args(argv)

    from agentkit.models import load_model
    from agentkit.strategies.pal import shared_sandbox
    from agentkit.tools.wikipedia import OfflineCorpus

    print(f"loadavg(1m) before: {os.getloadavg()[0]:.1f}")
    backends: dict[str, LLM] = {}
    for item in args.peer:
        name, _, spec = item.partition("=")
        if not name or not spec or name == IN_PROCESS:
            ap.error(f"--peer {item!r}: give NAME=SPEC, e.g. vllm=http://127.0.0.1:8001/v1")
        backends[name] = load_model(spec)
    local = load_model(args.model, dtype=args.dtype)
    getattr(local, "wait_until_ready", lambda: None)()  # background set-up (the engine's LM-head shortlist)
    backends = {IN_PROCESS: local, **backends}
    shared_sandbox().run("answer = 1")  # the sandbox's workers and the corpus, loaded outside the timed runs
    OfflineCorpus.default()
    for name, llm in backends.items():
        llm.generate(["Warm-up:"], GenerationConfig(max_new_tokens=4))
        what = f"{llm.name}, dtype {getattr(llm, 'dtype', '?')}"
        if hasattr(llm, "urls"):
            what = f"{llm.name} at {', '.join(llm.urls)} ({llm.dialect}; seeds {'sent' if llm.send_seeds else 'off'})"
        print(f"{name:>14}: {what}")

    exact = args.dtype == "float32"
    failed: dict[str, str] = {}
    shares: dict[str, list[str]] = {name: [] for name in backends if name != IN_PROCESS}
    identical = True
    for wl in workloads(args):
        best: dict[str, Run] = {}
        warm_up = replace(wl, n=min(args.warm_up, wl.n))
        for round_ in range(-1 if warm_up.n else 0, args.rounds):
            for name, llm in backends.items():
                if name in failed:
                    continue
                try:
                    measured = run(llm, wl if round_ >= 0 else warm_up, args)
                except AgentkitError as exc:
                    if name == IN_PROCESS:
                        raise
                    failed[name] = f"failed on {wl.method}{' (warm-up)' if round_ < 0 else ''}: {exc}"
                    continue
                if round_ >= 0 and (name not in best or measured.seconds < best[name].seconds):
                    best[name] = measured
        base = best[IN_PROCESS]
        print(
            f"\n{wl.name}: {len(base.records)} questions from {wl.dataset}, batch {args.batch_size}, "
            f"in-process {args.dtype}, best of {args.rounds}"
        )
        print(f"    {wl.command(args)}")
        print(
            f"{'backend':>14}  {'wall s':>7}  {'tokens':>7}  {'tok/s':>6}  {'x in-process':>12}  "
            f"{'answers agree':>13}  {'texts agree':>11}"
        )
        differences = []
        for name in backends:
            if name not in best:
                print(f"{name:>14}  {failed[name]}")
                continue
            got = best[name]
            n = len(got.records)
            answers = sum(a["answer"] == b["answer"] for a, b in zip(base.records, got.records, strict=True))
            texts = sum(a["completions"] == b["completions"] for a, b in zip(base.records, got.records, strict=True))
            print(
                f"{name:>14}  {got.seconds:>7.1f}  {got.tokens:>7}  {got.tokens / got.seconds:>6.1f}  "
                f"{got.seconds / base.seconds:>11.2f}x  {f'{answers}/{n}':>13}  {f'{texts}/{n}':>11}"
            )
            if name != IN_PROCESS:
                shares[name].append(f"{wl.method} {base.seconds / got.seconds:.2f}")
                difference = first_difference(base.records, got.records, name)
                if difference is not None:
                    differences.append(difference)
        if wl.sampled:
            print("    sampled: texts agree only on a server that draws the same random numbers (agentkit serve)")
        elif exact:
            for difference in differences:
                identical = False
                print(f"    NOT IDENTICAL in float32: first difference at {difference}")
            if not differences:
                print("    float32 greedy texts identical on every backend")
    print(f"\nin-process wall time / each peer's (below 1: the in-process engine is faster), {args.dtype}:")
    for name, ratios in shares.items():
        print(f"{name:>14}: {', '.join(ratios) or '-'}" + (f"  ({failed[name]})" if name in failed else ""))
    print(f"loadavg(1m) after: {os.getloadavg()[0]:.1f}")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
