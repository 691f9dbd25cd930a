"""What ``torch.compile`` (inductor, CPU) would buy the engine's decode step, and what compiling costs.

    python benchmarks/bench_compile.py [--dtype bfloat16] [--rows 16] [--context 600]

Builds the engine's KV store for ``rows`` rows of ``context`` cached tokens and times one decode forward
(``KVStore.forward`` over the decoder stack, no LM head) eagerly and through ``torch.compile(dynamic=True)`` of
the decoder stack: the first compiled call (the compile), the steady state, then a second shape (more rows, a
longer span: what every other step of a real run looks like) to show whether it recompiles. float32 runs with
packed linears off (oneDNN's opaque packed weights cannot be traced), so its eager figure is MKL's.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_decode_shapes import best_of  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    ap.add_argument("--rows", type=int, default=16)
    ap.add_argument("--context", type=int, default=600)
    args = ap.parse_args(argv)

    import torch

    from agentkit.engine import TransformersLLM
    from agentkit.engine.kv import KVStore

    llm = TransformersLLM(None, dtype=args.dtype, prefix_cache_mb=0, packed_linears=False, fast_lm_head=False)
    dtype = llm.torch_dtype
    gen = torch.Generator().manual_seed(0)
    r, c = args.rows, args.context
    store = KVStore(llm._shape, r + 4, c + 200, dtype, "cpu")
    store.k.normal_(generator=gen)
    store.v.normal_(generator=gen)

    def step(base, rows: int, span: int) -> None:
        store.n, store.t = rows, c
        store.start[:rows] = [c - span + (i % 7) for i in range(rows)]
        fed = torch.randint(100, 50000, (rows, 1), generator=gen)
        store.forward(base, fed, slice(0, rows), c)

    compiled = torch.compile(llm._base, dynamic=True)
    with torch.inference_mode():
        eager = best_of(lambda: step(llm._base, r, c), 10)
        t0 = time.perf_counter()
        step(compiled, r, c)
        first = time.perf_counter() - t0
        steady = best_of(lambda: step(compiled, r, c), 10)
        t0 = time.perf_counter()
        step(compiled, r + 3, c - 37)
        second_shape = time.perf_counter() - t0
        steady2 = best_of(lambda: step(compiled, r + 3, c - 37), 10)
        eager2 = best_of(lambda: step(llm._base, r + 3, c - 37), 10)
    print(
        f"{llm.name} {args.dtype}, decode forward of {r} rows x {c} cached tokens: eager {eager * 1e3:.1f} ms, "
        f"compiled {steady * 1e3:.1f} ms ({eager / steady:.2f}x); first compiled call (compile) {first:.1f} s; "
        f"a new shape ({r + 3} rows, span {c - 37}): first call {second_shape:.1f} s, then {steady2 * 1e3:.1f} ms "
        f"against eager {eager2 * 1e3:.1f} ms ({eager2 / steady2:.2f}x)"
    )


if __name__ == "__main__":
    main()
