"""What one decode step's token choice costs for sampled rows, by sampling mode and path, on the default model.

    python benchmarks/bench_sampling.py [--dtype float32] [--rows 1 4 10 32] [--repeat 5]

The final hidden states are real ones (the model run over a few paragraphs written for this script), so the
int8 head's candidate sets are the sizes decoding meets. Per step and number of rows, in one process:

* ``full head + multinomial``: float32 logits for the whole vocabulary, then softmax and one multinomial draw
  per row (``sampling.sample``): how pure-temperature rows were sampled before the race, and how top-p rows without
  ``top_k`` still are;
* ``race, full head``: the Gumbel-max race on the full head (the path before the int8 head is built);
* ``race, int8 head``: the race through the bounded int8 scan plus exact rescoring (what pure temperature does
  now);
* ``top-k 40, int8 head``: self-consistency's default, for reference.

Also checks, on every measured batch, that the two race paths drew the same tokens from the same generators.
"""

from __future__ import annotations

import argparse
import time

TEXT = (
    "The ferry left the harbour at seven, an hour late because the tide had turned early. Most of the passengers "
    "stayed below, but a boy with a red scarf counted the gulls that followed the wake: eleven, then fourteen.\n"
    "def tally(items):\n    total = 0\n    for price, count in items:\n        total += price * count\n"
    "    return total\n"
    "Question: A shop sells pencils at 3 for 45 cents. How much do 12 pencils cost?\n"
    "Thought: 12 pencils are 4 groups of 3, so 4 * 45 = 180 cents.\nAction: Finish[$1.80]\n"
    "The glacier has retreated nearly two kilometres since the first survey in 1898, leaving a lake where the "
    "ice once met the valley floor."
)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dtype", default="float32", choices=["float32", "auto", "bfloat16"])
    ap.add_argument("--rows", type=int, nargs="+", default=[1, 4, 10, 32])
    ap.add_argument("--repeat", type=int, default=5, help="timed steps per figure (after one warm-up)")
    ap.add_argument("--temperature", type=float, default=0.7)
    args = ap.parse_args(argv)

    from types import SimpleNamespace

    import torch

    from agentkit.engine import TransformersLLM
    from agentkit.engine.sampling import TokenChooser, sample
    from agentkit.llm import GenerationConfig

    llm = TransformersLLM(dtype=args.dtype)
    llm.wait_until_ready()
    with torch.inference_mode():
        ids = torch.tensor([llm.encode(TEXT)])
        states = llm._base(input_ids=ids).last_hidden_state[0, 8:]  # past the first tokens' attention sinks
    print(
        f"model {llm.name}  dtype={llm.dtype}  threads={torch.get_num_threads()}  "
        f"{len(states)} real final hidden states  int8 head proven: "
        f"{bool(llm.chooser.bounded and llm.chooser.bounded.proven)}"
    )
    race_cfg = GenerationConfig(do_sample=True, temperature=args.temperature)
    top_k_cfg = GenerationConfig(do_sample=True, temperature=args.temperature, top_k=40)

    fast = llm.chooser
    full = TokenChooser(fast.head)  # the same head without the int8 copy

    def rows(n: int, cfg: GenerationConfig, seed: int) -> list[SimpleNamespace]:
        return [
            SimpleNamespace(config=cfg, gen=torch.Generator().manual_seed(seed + i), constraint=None) for i in range(n)
        ]

    def old_way(hidden: torch.Tensor, rs: list[SimpleNamespace]) -> list[int]:
        logits = fast.head.logits(hidden)
        return [int(sample(logits[j], r.config, r.gen)) for j, r in enumerate(rs)]

    def timed(fn, hidden: torch.Tensor, cfg: GenerationConfig) -> tuple[float, list[list[int]]]:
        rs = rows(len(hidden), cfg, 0)
        fn(hidden, rs)  # warm-up
        rs = rows(len(hidden), cfg, 1)
        drawn, t = [], time.perf_counter()
        for _ in range(args.repeat):
            drawn.append(fn(hidden, rs))
        return (time.perf_counter() - t) / args.repeat * 1e3, drawn

    print(f"\nms per decode step for n sampled rows, T={args.temperature} (each figure the mean of {args.repeat})")
    print(
        f"{'rows':>5}  {'full head + multinomial':>24}  {'race, full head':>16}  {'race, int8 head':>16}  "
        f"{'top-k 40, int8 head':>20}  {'race speed-up':>13}"
    )
    with torch.inference_mode():
        for n in args.rows:
            hidden = states[torch.arange(n) % len(states)].contiguous()
            old_ms, _ = timed(old_way, hidden, race_cfg)
            full_ms, full_drawn = timed(lambda h, rs: full.choose(h, rs).tolist(), hidden, race_cfg)
            fast_ms, fast_drawn = timed(lambda h, rs: fast.choose(h, rs).tolist(), hidden, race_cfg)
            topk_ms, _ = timed(lambda h, rs: fast.choose(h, rs).tolist(), hidden, top_k_cfg)
            same = "same draws" if fast_drawn == full_drawn else "DRAWS DIFFER"
            print(
                f"{n:>5}  {old_ms:>24.1f}  {full_ms:>16.1f}  {fast_ms:>16.1f}  {topk_ms:>20.1f}  "
                f"{old_ms / fast_ms:>12.1f}x  ({same})"
            )


if __name__ == "__main__":
    main()
