"""One engine feature on and off, interleaved in one process: the A/B figure a shared, noisy machine allows.

    python benchmarks/bench_engine_ab.py --workload cot --n 32 --dtype bfloat16 --feature matmul_attention
    python benchmarks/bench_engine_ab.py --workload react --n 30 --dtype bfloat16 --rounds 3
    python benchmarks/bench_engine_ab.py --forwards --dtype bfloat16

The model is loaded once; each round runs the workload (``bench_throughput.py``'s CoT / ReAct / PAL-SC, the same
episodes through ``run_episodes``) with the feature off, then on, in alternating order, so slow spells of a
shared machine fall on both sides. Prints every run's wall time and engine counters (prefill, decode, LM head),
the per-round on/off ratios and their median, and whether the two sides' texts agree. ``--forwards`` times single
prefill forwards of the decoder stack instead (``KVStore.forward`` at shapes ReAct's and CoT's prefill chunks
have), off and on alternating, 6 times each: whole runs swing too much on a shared machine to resolve a change
that only touches prefill.

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
FORWARD_SHAPES = [(5, 153, 664), (15, 35, 546), (2, 112, 623), (1, 512, 1023), (1, 512, 1500)]  # rows, tokens, span


def forwards(llm, toggle, name: str) -> None:
    """Median time of one prefill forward per shape, the feature off and on alternating."""
    import torch

    from agentkit.engine.kv import KVStore

    gen = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        for rows, m, span in FORWARD_SHAPES:
            col = span + 50
            store = KVStore(llm._shape, rows, col + m + 10, llm.torch_dtype, llm.device)
            store.k.normal_(generator=gen)
            store.v.normal_(generator=gen)
            store.n, store.t = rows, col
            store.start[:rows] = [col - span + i % 7 for i in range(rows)]
            fed = torch.randint(100, 50000, (rows, m), generator=gen)
            times: dict[bool, list[float]] = {False: [], True: []}
            for r in range(7):
                for on in (False, True) if r % 2 == 0 else (True, False):
                    toggle(llm, on)
                    t = time.perf_counter()
                    store.forward(llm._base, fed, slice(0, rows), col)
                    times[on].append(time.perf_counter() - t)
            off, on_ = (statistics.median(times[x][1:]) for x in (False, True))  # the first of each: warm-up
            print(
                f"prefill forward, {rows} rows x {m} tokens over a {span}-column span: {name} off {off * 1e3:.1f} ms, "
                f"on {on_ * 1e3:.1f} ms ({off / on_:.2f}x)",
                flush=True,
            )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workload", choices=sorted(WORKLOADS), default="cot")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--dtype", default="bfloat16", choices=["auto", "bfloat16", "float32"])
    ap.add_argument("--feature", choices=sorted(FEATURES), default="matmul_attention")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--forwards", action="store_true", help="time single prefill forwards, not whole runs")
    # what bench_throughput's workloads read from their arguments
    ap.add_argument("--max-new-tokens", type=int, default=None)
    ap.add_argument("--dataset", default=None)
    ap.add_argument("--sampling", choices=["top-k", "temperature"], default="top-k")
    args = ap.parse_args(argv)

    from agentkit.engine import TransformersLLM

    llm = TransformersLLM(dtype=args.dtype)
    llm.wait_until_ready()
    toggle = FEATURES[args.feature]
    if args.forwards:
        print(f"model {llm.name} dtype={llm.dtype}; {args.feature}")
        forwards(llm, toggle, args.feature)
        return
    wl = WORKLOADS[args.workload](args)
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
