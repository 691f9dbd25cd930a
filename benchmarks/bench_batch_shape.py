"""Does a greedy reply depend on what else is in the batch? Each prompt alone vs all of them together, per dtype.

    python benchmarks/bench_batch_shape.py [--n 8] [--tokens 96] [--dtypes bfloat16 float32]

On ``agentkit serve`` the rows decoded together are whatever the clients sent at that moment, so a dtype whose
rounding depends on the batch shape makes one client's greedy text depend on the others'. The script decodes the
first ``n`` GSM8K sample questions (a zero-shot CoT prompt) in one batch and then one at a time, on the default
model, and prints how many texts agree, with the time each dtype took for both passes (prompt lookup off, so both
passes decode the same way).
"""

from __future__ import annotations

import argparse
import time


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=8, help="questions")
    ap.add_argument("--tokens", type=int, default=96, help="max new tokens per reply")
    ap.add_argument("--dtypes", nargs="+", default=["bfloat16", "float32"], choices=["bfloat16", "float32"])
    args = ap.parse_args(argv)

    from agentkit.engine import TransformersLLM
    from agentkit.eval.datasets import load_dataset
    from agentkit.llm import GenerationConfig

    questions = [e.question for e in load_dataset("gsm8k-sample")][: args.n]
    prompts = [f"Question: {q}\nAnswer: Let's think step by step." for q in questions]
    config = GenerationConfig(max_new_tokens=args.tokens, stop=["\nQuestion:"])
    for dtype in args.dtypes:
        llm = TransformersLLM(dtype=dtype, prompt_lookup=0)
        llm.wait_until_ready()
        start = time.perf_counter()
        together = [c.text for c in llm.generate(prompts, config)]
        alone = [llm.generate([p], config)[0].text for p in prompts]
        agree = sum(a == b for a, b in zip(alone, together, strict=True))
        print(
            f"{dtype:>8}: {agree}/{len(prompts)} texts agree alone vs batched "
            f"({time.perf_counter() - start:.0f} s for both passes)",
            flush=True,
        )


if __name__ == "__main__":
    main()
