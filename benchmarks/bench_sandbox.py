"""Throughput of agentkit's PAL sandbox: warm workers versus a fresh process per program, in one run.

    python benchmarks/bench_sandbox.py [--n 2000] [--baseline-n 40] [--workers N]

Programs are small PAL-style ``def solution():`` programs, each with different constants (so the worker's
compiled-code cache never helps). Prints programs/second for:

* ``run_many`` over all warm workers (the way the PAL strategy batches programs),
* ``run`` one program at a time on the same warm pool,
* baseline A: a fresh sandbox worker for every program (``max_runs_per_worker=1``: same isolation, no warm pool),
* baseline B: a fresh ``python -I -c`` process per program (no sandbox at all, only process start-up),
* reference: plain in-process ``exec`` (no isolation whatsoever; what the PAL paper's runtime does).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from agentkit.tools.sandbox import Sandbox

TEMPLATE = '''\
def solution():
    """A baker made {a} cookies and sold {b} of them at ${p} each. How much money did he make?"""
    cookies_made = {a}
    cookies_sold = {b}
    price = {p}
    money = cookies_sold * price
    leftover = cookies_made - cookies_sold
    result = money + 0 * leftover
    return result
'''


def programs(n: int, offset: int = 0) -> list[str]:
    return [TEMPLATE.format(a=100 + i + offset, b=50 + (i + offset) % 40, p=1.25 + (i % 7)) for i in range(n)]


def expected(src: str) -> float:
    ns: dict = {}
    exec(src, ns)  # trusted: our own template
    return ns["solution"]()


def rate(label: str, n: int, seconds: float) -> tuple[str, float]:
    per_s = n / seconds
    print(f"{label:<58} {n:>6} programs {seconds:8.3f} s {per_s:10.1f} programs/s")
    return label, per_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="programs for the warm-pool measurements")
    ap.add_argument("--baseline-n", type=int, default=40, help="programs for the fresh-process baselines")
    ap.add_argument("--workers", type=int, default=None, help="worker processes (default: CPU count)")
    args = ap.parse_args()

    print(f"CPU cores: {os.cpu_count()}, Python {sys.version.split()[0]}")
    results = []

    t0 = time.perf_counter()
    sb = Sandbox(workers=args.workers)
    print(f"pool start-up: {sb.workers} workers in {time.perf_counter() - t0:.3f} s; layers: {sb.layers}")
    with sb:
        sb.run_many(programs(4 * sb.workers, offset=10**6))  # warm-up
        srcs = programs(args.n)
        t0 = time.perf_counter()
        out = sb.run_many(srcs)
        results.append(rate(f"warm pool, run_many ({sb.workers} workers)", args.n, time.perf_counter() - t0))
        assert all(r.ok for r in out), [r.error for r in out if not r.ok][:3]
        assert all(r.value == expected(s) for r, s in zip(out[:50], srcs[:50]))

        srcs = programs(args.n // 2, offset=args.n)
        t0 = time.perf_counter()
        for s in srcs:
            assert sb.run(s).ok
        results.append(rate("warm pool, run one at a time", len(srcs), time.perf_counter() - t0))

    with Sandbox(workers=1, max_runs_per_worker=1) as cold:
        srcs = programs(args.baseline_n, offset=3 * args.n)
        t0 = time.perf_counter()
        for s in srcs:
            assert cold.run(s).ok
        results.append(rate("baseline A: fresh sandbox worker per program", len(srcs), time.perf_counter() - t0))

    srcs = programs(args.baseline_n, offset=4 * args.n)
    t0 = time.perf_counter()
    for s in srcs:
        subprocess.run([sys.executable, "-I", "-c", s + "\nprint(solution())\n"], check=True,
                       capture_output=True, timeout=30)
    results.append(rate("baseline B: fresh `python -I -c` per program (no sandbox)", len(srcs),
                        time.perf_counter() - t0))

    srcs = programs(args.n, offset=5 * args.n)
    t0 = time.perf_counter()
    for s in srcs:
        ns: dict = {}
        exec(compile(s, "<p>", "exec"), ns)
        ns["solution"]()
    results.append(rate("reference: in-process exec (NO isolation)", len(srcs), time.perf_counter() - t0))

    warm = results[0][1]
    print()
    print(f"warm pool is {warm / results[2][1]:.0f}x a fresh sandbox worker per program and "
          f"{warm / results[3][1]:.0f}x a bare fresh interpreter per program")
    print("requirement >= 200 programs/s:", "PASS" if warm >= 200 else "FAIL")


if __name__ == "__main__":
    main()
