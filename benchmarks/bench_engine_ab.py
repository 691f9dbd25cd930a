"""One engine feature on and off, interleaved in one process: the A/B figure a shared, noisy machine allows.

    python benchmarks/bench_engine_ab.py --workload cot --n 32 --dtype bfloat16 --feature matmul_attention
    python benchmarks/bench_engine_ab.py --workload react --n 30 --dtype bfloat16 --rounds 3

The model is loaded once; each round runs the workload (``bench_throughput.py``'s CoT / ReAct / PAL-SC, the same
episodes through ``run_episodes``) with the feature off, then on, in alternating order, so slow spells of a
shared machine fall on both sides. Prints every run's wall time and engine counters (prefill, decode, LM head),
the per-round on/off ratios and their median, and whether the two sides' texts agree.

Features: ``matmul_attention`` (``agentkit.engine.attention``, set on the loaded model between runs).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_throughput import WORKLOADS, run  # noqa: E402


def set_matmul_attention(llm, on: bool) -> None:
    from agentkit.engine import attention

    llm.model.set_attn_implementation(attention.install() if on else "sdpa")


FEATURES = {"matmul_attention": set_matmul_attention}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workload", choices=sorted(WORKLOADS), default="cot")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--dtype", default="bfloat16", choices=["auto", "bfloat16", "float32"])
    ap.add_argument("--feature", choices=sorted(FEATURES), default="matmul_attention")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    # what bench_throughput's workloads read from their arguments
    ap.add_argument("--max-new-tokens", type=int, default=None)
    ap.add_argument("--dataset", default=None)
    ap.add_argument("--sampling", choices=["top-k", "temperature"], default="top-k")
    args = ap.parse_args(argv)

    from agentkit.engine import TransformersLLM

    llm = TransformersLLM(dtype=args.dtype)
    llm.wait_until_ready()
    wl = WORKLOADS[args.workload](args)
    toggle = FEATURES[args.feature]
    print(f"model {llm.name} dtype={llm.dtype}; workload {wl.name}: {len(wl.questions)} questions; {args.feature}")
    times: dict[bool, list[float]] = {False: [], True: []}
    prefill: dict[bool, list[float]] = {False: [], True: []}
    texts: dict[bool, list] = {}
    toggle(llm, False)
    run(llm, wl, args.batch_size)  # warm-up (first-touch of buffers, allocator), not timed
    for r in range(args.rounds):
        for on in (False, True) if r % 2 == 0 else (True, False):
            toggle(llm, on)
            before = llm.stats.copy()
            t = time.perf_counter()
            results = run(llm, wl, args.batch_size)
            wall = time.perf_counter() - t
            st = llm.stats - before
            times[on].append(wall)
            prefill[on].append(st.prefill_s)
            texts[on] = [c for res in results for c in res.completions]
            print(
                f"round {r} {args.feature}={'on ' if on else 'off'}: {wall:6.2f}s  prefill {st.prefill_s:5.2f}s  "
                f"decode {st.decode_s:5.2f}s (head {st.head_s:4.2f}s, {st.decode_steps} steps)",
                flush=True,
            )
    ratios = sorted(b / a for a, b in zip(times[False], times[True], strict=True))
    pre = sorted(b / a for a, b in zip(prefill[False], prefill[True], strict=True))
    same = sum(a == b for a, b in zip(texts[False], texts[True], strict=False))
    print(
        f"\n{args.feature} on/off: per round {', '.join(f'{x:.3f}' for x in ratios)}; median "
        f"{statistics.median(ratios):.3f}; best on {min(times[True]):.2f}s vs best off {min(times[False]):.2f}s "
        f"({min(times[True]) / min(times[False]):.3f}); identical texts {same} "
        f"(of {len(texts[False])} off, {len(texts[True])} on)"
    )
    print(f"admission + prefill alone, on/off: per round {', '.join(f'{x:.3f}' for x in pre)}")


if __name__ == "__main__":
    main()
