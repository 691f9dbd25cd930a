"""Speed of agentkit's PAL sandbox, before and after a change, measured in the same run.

    python benchmarks/bench_sandbox.py [--n 1000] [--rounds 3] [--workers N] [--before main]

"before" is the sandbox as it is at a git revision (default ``main``), checked out into a temporary directory and
imported from there; "after" is the working tree. The two are measured in alternating rounds, so both see the
same machine load, and every figure is printed as a range over the rounds. Programs are small PAL-style
``def solution():`` programs, each with different constants. For each design:

* ``run_many`` programs/s over all workers (how PAL batches programs),
* ``run`` programs/s, one program at a time, back to back,
* single-program latency after an idle pause (how one PAL episode meets the sandbox): median and 90th percentile,
* CPU milliseconds per program, summed over the parent and every sandbox process (from ``getrusage`` once they
  are reaped; start-up is measured separately and subtracted). It depends less on how busy the machine is than
  wall-clock rates do, and ``cores / CPU per program`` is the throughput the design can reach on idle cores.

For scale it also prints what one ``fork()`` + ``_exit()`` of a bare Python process costs on this machine: the
floor under any design that gives every program a process of its own.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agentkit.tools.sandbox import Sandbox

ROOT = Path(__file__).resolve().parent.parent
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


def load_before(rev: str, tmp: Path):
    """The Sandbox class of ``tools/sandbox.py`` at git revision ``rev``, or None when git can't provide it."""
    try:
        for name in ("sandbox.py", "_sandbox_worker.py"):
            text = subprocess.run(
                ["git", "show", f"{rev}:tools/{name}"], cwd=ROOT, check=True, capture_output=True, text=True
            ).stdout
            (tmp / name).write_text(text)
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"(no 'before' measurement: git show {rev} failed: {e})")
        return None
    spec = importlib.util.spec_from_file_location("sandbox_before", tmp / "sandbox.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves the model's annotations through it
    spec.loader.exec_module(module)
    return module.Sandbox


def cpu_seconds() -> float:
    """CPU time of this process plus every reaped descendant (sandbox processes count once they are reaped)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def measure(cls, n: int, workers: int | None, offset: int) -> dict:
    c0 = cpu_seconds()
    with cls(workers=workers) as sb:  # start-up alone, to subtract from the CPU figure
        pass
    startup_cpu = cpu_seconds() - c0

    out = {}
    c0 = cpu_seconds()
    with cls(workers=workers) as sb:
        sb.run_many(programs(4 * sb.workers, offset=offset + 10**6))  # warm-up
        srcs = programs(n, offset=offset)
        t0 = time.perf_counter()
        results = sb.run_many(srcs)
        out["run_many/s"] = n / (time.perf_counter() - t0)
        assert all(r.ok for r in results), [r.error for r in results if not r.ok][:3]
        assert all(r.value == expected(s) for r, s in zip(results[:50], srcs[:50]))
    out["CPU ms/program"] = (cpu_seconds() - c0 - startup_cpu) / (n + 4 * sb.workers) * 1000

    with cls(workers=workers) as sb:
        sb.run_many(programs(4 * sb.workers, offset=offset + 2 * 10**6))
        srcs = programs(n // 2, offset=offset + n)
        t0 = time.perf_counter()
        for s in srcs:
            assert sb.run(s).ok
        out["run one at a time/s"] = len(srcs) / (time.perf_counter() - t0)

        latencies = []
        for s in programs(60, offset=offset + 2 * n):
            time.sleep(0.02)  # idle, as between two completions of a model
            t0 = time.perf_counter()
            assert sb.run(s).ok
            latencies.append((time.perf_counter() - t0) * 1000)
        latencies.sort()
        out["latency median ms"] = statistics.median(latencies)
        out["latency p90 ms"] = latencies[int(0.9 * len(latencies))]
    return out


FORK_FLOOR = """
import os, resource
n = 200
for _ in range(n):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
print((own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime) / n * 1000)
"""


def fork_floor_ms() -> float:
    """CPU ms of one fork + exit of a bare Python process on this machine: the floor of a process per program."""
    out = subprocess.run([sys.executable, "-I", "-S", "-c", FORK_FLOOR], check=True, capture_output=True, text=True)
    return float(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000, help="programs per run_many measurement")
    ap.add_argument("--rounds", type=int, default=3, help="alternating before/after rounds")
    ap.add_argument("--workers", type=int, default=None, help="sandbox workers (default: CPU count)")
    ap.add_argument("--before", default="main", help="git revision of the 'before' sandbox ('' to skip)")
    args = ap.parse_args()

    print(f"CPU cores: {os.cpu_count()}, Python {sys.version.split()[0]}, load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        designs = {"after": Sandbox}
        before = load_before(args.before, Path(tmp)) if args.before else None
        if before is not None:
            designs = {f"before ({args.before})": before, "after": Sandbox}
        figures: dict[str, dict[str, list[float]]] = {name: {} for name in designs}
        for r in range(args.rounds):
            for name, cls in designs.items():
                for key, value in measure(cls, args.n, args.workers, offset=r * 10 * args.n).items():
                    figures[name].setdefault(key, []).append(value)
            print(f"round {r + 1}/{args.rounds} done, load average {os.getloadavg()[0]:.1f}")

    print()
    keys = list(next(iter(figures.values())))
    print(f"{'':30}" + "".join(f"{name:>28}" for name in figures))
    for key in keys:
        cells = []
        for name in figures:
            xs = figures[name][key]
            cells.append(f"{min(xs):10.2f} - {max(xs):<10.2f}" if len(xs) > 1 else f"{xs[0]:10.2f}")
        print(f"{key:30}" + "".join(f"{c:>28}" for c in cells))
    print(f"{'(machine) bare fork + exit CPU ms':30}{fork_floor_ms():>28.2f}")
    after = figures["after"]
    cores = args.workers or min(8, os.cpu_count() or 1)
    capacity = cores * 1000 / min(after["CPU ms/program"])
    print()
    print(
        f"after: best run_many {max(after['run_many/s']):.0f} programs/s on this (shared) machine; "
        f"CPU-bound capacity on {cores} idle cores: {capacity:.0f} programs/s"
    )
    print(
        "requirement >= 300 programs/s through run_many:",
        "PASS"
        if max(after["run_many/s"]) >= 300
        else "not reached on this machine now" + (" (capacity suffices)" if capacity >= 300 else ""),
    )


if __name__ == "__main__":
    main()
