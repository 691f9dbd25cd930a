"""The same benchmark in one process and on 1, 2, ... Ray workers: seconds, speed-up, and whether records agree.

    python benchmarks/bench_ray.py                        # 16 CoT questions, in-process, then 1 and 2 workers
    python benchmarks/bench_ray.py --workers 1 2 4 --address auto --n 44   # on a running cluster

Every run is ``run_benchmark`` over the first ``--n`` questions of ``--dataset`` with ``--method`` (greedy,
``--max-new-tokens`` new tokens) and the default model (``--model`` for another). The in-process run is the
baseline; each Ray run starts its workers and waits until every one has loaded its model before the clock
starts, so the figures compare running, not loading (the load times are printed beside them). Without
``--address`` a local Ray instance with this machine's cores is started. Records are compared without their
timing fields: in float32 (``--dtype float32``) they must be identical; in the default dtype they may differ in a
few tokens, because batches of different composition round differently.

Read the speed-up against the cores: a Ray worker gets ``cores / workers`` torch threads of its node, so two
workers on one machine split the cores the single engine already uses, and gain only what one engine leaves
idle. Workers on added machines add their cores.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agentkit.eval import run_benchmark  # noqa: E402
from agentkit.eval.runner import TIMING  # noqa: E402


def strip(result) -> list[dict]:
    return [{k: v for k, v in r.items() if k != TIMING} for r in result.records]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--address", default=None, help="a Ray cluster (default: start a local one)")
    parser.add_argument("--dataset", default="gsm8k-sample")
    parser.add_argument("--method", default="cot")
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=160)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--model", default=None)
    parser.add_argument("--dtype", default=None)
    parser.add_argument(
        "--cpus-per-worker",
        type=float,
        default=None,
        help="CPUs (and torch threads) per worker; default: an equal share of a node",
    )
    parser.add_argument("--no-local", action="store_true", help="skip the in-process baseline")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run the worker counts this many times, alternating (a shared machine is noisy); the median is reported",
    )
    args = parser.parse_args()

    import ray

    from agentkit.eval.distributed import RayExecutor
    from agentkit.models import load_model

    common = {"limit": args.n, "batch_size": args.batch_size, "generation": {"max_new_tokens": args.max_new_tokens}}
    dtype = {"dtype": args.dtype} if args.dtype else {}
    rows = []  # (label, load s, run s, records)
    if not args.no_local:
        started = time.perf_counter()
        llm = load_model(args.model, **dtype)
        loaded = time.perf_counter() - started
        result = run_benchmark(args.dataset, args.method, llm, **common)
        rows.append(("in-process", loaded, result.wall_seconds, strip(result)))
        del llm

    if args.address:
        ray.init(address=args.address, include_dashboard=False, logging_level=logging.WARNING)
    else:
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, logging_level=logging.WARNING)
    cores = int(sum(n["Resources"].get("CPU", 0) for n in ray.nodes() if n["Alive"]))
    runs: dict[int, list[tuple[float, float, list[dict]]]] = {w: [] for w in args.workers}
    threads: dict[int, list] = {}
    try:
        for _ in range(args.repeat):
            for workers in args.workers:
                started = time.perf_counter()
                with RayExecutor(
                    args.model, workers=workers, dtype=args.dtype, cpus_per_worker=args.cpus_per_worker
                ).ready() as executor:
                    loaded = time.perf_counter() - started
                    result = run_benchmark(args.dataset, args.method, executor=executor, **common)
                    threads[workers] = executor.torch_threads()
                runs[workers].append((loaded, result.wall_seconds, strip(result)))
                print(f"{workers} worker(s): {result.wall_seconds:.1f} s", file=sys.stderr)
    finally:
        ray.shutdown()

    for workers, done in runs.items():
        seconds = statistics.median(r[1] for r in done)
        label = f"ray, {workers} worker(s), torch threads {threads[workers]}"
        if args.repeat > 1:
            label += f" (median of {', '.join(f'{r[1]:.0f}' for r in done)})"
        rows.append((label, statistics.median(r[0] for r in done), seconds, done[-1][2]))
    print(
        f"\n{args.method} on {args.n} questions of {args.dataset}, {args.max_new_tokens} new tokens, "
        f"batch size {args.batch_size}, dtype {args.dtype or 'default'}; Ray cluster: {cores} CPUs"
    )
    base = rows[0]
    print(
        f"{'run':<66} {'load s':>7} {'run s':>7} {'s/question':>10} {'speed-up':>8} {'new tokens':>10}  "
        f"records as {base[0]}"
    )
    for label, loaded, seconds, records in rows:
        tokens = sum(r["completion_tokens"] or 0 for r in records)
        differ = sum(a != b for a, b in zip(records, base[3], strict=True))
        print(
            f"{label:<66} {loaded:7.1f} {seconds:7.1f} {seconds / args.n:10.2f} {base[2] / seconds:7.2f}x "
            f"{tokens:10d}  {'same' if not differ else f'{differ} of {len(records)} differ'}"
        )
    one = next((r for r in rows if r[0].startswith("ray, 1 ")), None)
    for label, _, seconds, _ in rows:
        if one and label.startswith("ray, ") and label != one[0]:
            print(f"{label.split(',')[1].strip()} vs 1 worker: {one[2] / seconds:.2f}x")


if __name__ == "__main__":
    main()
