"""What tracing adds to each model call of the episode runner, with no model time to hide it.

    python benchmarks/bench_tracing.py [--episodes 3000] [--rounds 5]

Runs ``--episodes`` two-call episodes through a scripted model (which answers at once) with tracing off and on
(spans to the OpenTelemetry SDK's in-memory exporter through a ``SimpleSpanProcessor``, the costliest way:
each span is exported as it ends), rounds alternating, and prints the best time of each as microseconds per
model call and their difference. A real model call takes milliseconds to seconds, so this difference over a
model call's time is tracing's overhead; ``bench_throughput.py --trace-overhead`` measures it end to end.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agentkit.llm import GenerationConfig, ScriptedLLM  # noqa: E402
from agentkit.result import Result  # noqa: E402
from agentkit.runtime import Generate, run_episodes  # noqa: E402

CONFIG = GenerationConfig(max_new_tokens=8)


def episode(i: int):
    yield Generate(f"q{i} first", CONFIG)
    second = yield Generate(f"q{i} second", CONFIG)
    return Result(method="probe", question=str(i), answer=second.text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--episodes", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from agentkit.tracing import Tracing

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = Tracing(provider)
    best = {"off": float("inf"), "on": float("inf")}
    for _ in range(args.rounds):
        for mode in best:
            exporter.clear()
            llm = ScriptedLLM(lambda prompt: "x y z")
            t = time.perf_counter()
            run_episodes(
                llm, (episode(i) for i in range(args.episodes)), batch_size=32, trace=tracing if mode == "on" else None
            )
            best[mode] = min(best[mode], time.perf_counter() - t)
    calls = 2 * args.episodes
    spans = len(exporter.get_finished_spans())
    off, on = (1e6 * best[m] / calls for m in ("off", "on"))
    print(
        f"{calls} model calls, best of {args.rounds}: tracing off {off:.1f} us/call, on {on:.1f} us/call "
        f"({spans / calls:.1f} spans per call); tracing adds {on - off:.1f} us per model call"
    )


if __name__ == "__main__":
    main()
