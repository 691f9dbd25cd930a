"""What one decode step costs at the shapes the engine runs, for the figures behind its design choices.

    python benchmarks/bench_decode_shapes.py [--rows 1 4 8 12 16] [--tokens 1 2 4 8] [--context 1300]

Two tables, every figure measured in this process:

1. **Linear layers**: one 640 x 2048 float32 layer (Gemma 3 270M's MLP shape), MKL's ``F.linear`` on the plain
   weight against oneDNN on a weight packed once (:mod:`agentkit.engine.packed`), for 1 to 512 rows. 40 layers'
   worth of distinct weights are cycled, so each call streams its weight from memory as a decode step does.
2. **A decode step of the embedded model in float32** (packed linears, as the engine loads it): the decoder
   forward for ``rows`` rows of ``context`` cached tokens, each feeding ``tokens`` new tokens, and the LM head's
   greedy token choice on every fed position. One row of several tokens is what a lone row's prompt-lookup step
   costs; several rows of several tokens is what speculating for a batch would cost (``_Batcher._speculate``).

Run with ``MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2`` to hold MKL, oneDNN
and ATen to AVX2 (fbgemm's int8 head cannot be held back).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def best_of(f, reps: int) -> float:
    """Median seconds of ``reps`` calls after one warm-up call."""
    f()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def linears(row_counts: list[int]) -> None:
    import torch

    from agentkit.engine.packed import PackedLinear, linear_holding

    layers = 40
    gen = torch.Generator().manual_seed(0)
    plain = [linear_holding(torch.randn(2048, 640, generator=gen)) for _ in range(layers)]
    packed = [PackedLinear(lin) for lin in plain]
    print("\n1. one 640 x 2048 float32 layer, weight streamed from memory (us per layer call)")
    print(f"{'rows':>6} {'MKL F.linear':>14} {'oneDNN packed':>14} {'ratio':>7}")
    with torch.inference_mode():
        for m in row_counts:
            x = torch.randn(m, 640, generator=gen)
            a = best_of(lambda: [lin(x) for lin in plain], 5) / layers * 1e6
            b = best_of(lambda: [lin(x) for lin in packed], 5) / layers * 1e6
            print(f"{m:>6} {a:>14.1f} {b:>14.1f} {a / b:>6.2f}x")


def decode_steps(row_counts: list[int], token_counts: list[int], context: int) -> None:
    import torch

    from agentkit.engine import TransformersLLM
    from agentkit.engine.kv import KVStore

    llm = TransformersLLM(None, dtype="float32", prefix_cache_mb=0)
    llm.wait_until_ready()
    gen = torch.Generator().manual_seed(0)
    # realistic final hidden states for the head (random ones give it unrepresentative candidate sets)
    ids = llm.tokenizer.encode((ROOT / "README.md").read_text()[:8000], add_special_tokens=True)[:600]
    with torch.inference_mode():
        states = llm._base(input_ids=torch.tensor([ids])).last_hidden_state[0]
    print(
        f"\n2. one decode step of {llm.name} in float32 ({llm.packed_linears} linears packed), "
        f"{context} cached tokens a row (ms)"
    )
    print(f"{'rows':>5} {'tokens':>7} {'forward':>9} {'LM head':>9} {'total':>8} {'ms per fed token':>17}")
    with torch.inference_mode():
        for r in row_counts:
            store = KVStore(llm._shape, r, context + max(token_counts), torch.float32, "cpu")
            store.k.normal_(generator=gen)
            store.v.normal_(generator=gen)
            store.n, store.t = r, context
            store.start[:r] = [0] * r
            for m in token_counts:
                fed = torch.randint(100, 50000, (r, m), generator=gen)
                hidden = states[torch.arange(r * m) % len(states)]
                fwd = best_of(lambda: store.forward(llm._base, fed, slice(0, r), context, every_position=True), 5)
                head = best_of(lambda: llm.chooser.greedy(hidden), 5)
                total = (fwd + head) * 1e3
                print(f"{r:>5} {m:>7} {fwd * 1e3:>9.1f} {head * 1e3:>9.1f} {total:>8.1f} {total / (r * m):>17.2f}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[1, 4, 8, 12, 16])
    ap.add_argument("--tokens", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--linear-rows", type=int, nargs="+", default=[1, 2, 4, 16, 64, 128, 512])
    ap.add_argument("--context", type=int, default=1300, help="cached tokens per row (ReAct prompts: ~1,300-2,500)")
    args = ap.parse_args(argv)
    linears(args.linear_rows)
    decode_steps(args.rows, args.tokens, args.context)


if __name__ == "__main__":
    main()
