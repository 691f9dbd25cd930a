"""What a grammar constraint costs the engine per decode step: a ReAct-like batch with and without one.

    python benchmarks/bench_constrained_engine.py [--rows 16] [--max-new-tokens 64] [--repeat 3]

The batch is the first step of ReAct (4-shot prompt, ``Thought 1:``) for the first ``--rows`` questions of the
wiki sample, greedy, with ReAct's stop strings, on the default model in float32; the constrained run adds the
action-line constraint ``Constraint(regex=" (Search|Lookup|Finish)\\[[^\\]\\n]+\\]", after="Action 1:")``. The two
runs alternate ``--repeat`` times in one process (the first constrained run, which builds the llguidance
vocabulary and compiles the grammar, is a warm-up and is not timed). Printed per run kind: decode steps, ms per
decode step (the engine's ``decode_s / decode_steps``), and for the constrained run the time spent inside the
row matchers' calls (``allows``, ``take``, ``forced``, ``mask``, ``stopped``: timed here by wrapping them) per decode step, as a
share of the unconstrained step. Also how many constrained texts equal the unconstrained ones, and how many
unconstrained texts already conformed.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

ACTION = r" (Search|Lookup|Finish)\[[^\]\n]+\]"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3, help="timed runs of each kind (alternating)")
    args = ap.parse_args(argv)

    import torch

    from agentkit import grammar
    from agentkit.engine import TransformersLLM
    from agentkit.engine.constrain import RowMatcher
    from agentkit.eval.datasets import load_dataset
    from agentkit.llm import Constraint, extend
    from agentkit.strategies.react import ReAct

    spent = {"s": 0.0, "masks": 0}

    def timed(fn):
        @functools.wraps(fn)
        def wrapper(*a, **kw):
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                spent["s"] += time.perf_counter() - t
        return wrapper

    for name in ("allows", "take", "forced", "mask"):
        setattr(RowMatcher, name, timed(getattr(RowMatcher, name)))
    RowMatcher.stopped = property(timed(RowMatcher.stopped.fget))
    counted_mask = RowMatcher.mask

    def mask(self):
        spent["masks"] += 1
        return counted_mask(self)

    RowMatcher.mask = mask

    llm = TransformersLLM(dtype="float32")
    llm.wait_until_ready()
    react = ReAct(llm, shots=4)
    examples = load_dataset("wiki-sample")
    questions = [examples[i % len(examples)].question for i in range(args.rows)]
    prompts = [extend(react.prompt(q), "Thought 1:") for q in questions]
    constraint = Constraint(regex=ACTION, after="Action 1:")
    free_cfg = react.config.model_copy(update={"max_new_tokens": args.max_new_tokens})
    cfg = free_cfg.model_copy(update={"constraint": constraint})
    print(f"model {llm.name}  dtype={llm.dtype}  threads={torch.get_num_threads()}  rows={args.rows}  "
          f"max_new_tokens={args.max_new_tokens}  prompt tokens/row ~{len(llm.encode(llm.render(prompts[0])))}")

    t = time.perf_counter()
    llm.generate(prompts[:2], cfg)  # warm-up: the llguidance vocabulary, the grammar, the prefix cache
    print(f"warm-up (llguidance vocabulary + grammar + prompts' prefill): {time.perf_counter() - t:.1f}s")

    figures: dict[str, list[tuple[float, int, float, int, int]]] = {"free": [], "constrained": []}
    outputs = {}
    for _ in range(args.repeat):
        for kind, c in (("free", free_cfg), ("constrained", cfg)):
            spent.update(s=0.0, masks=0)
            before = llm.stats.copy()
            outputs[kind] = llm.generate(prompts, c)
            used = llm.stats - before
            figures[kind].append((1e3 * used.decode_s / used.decode_steps, used.decode_steps, 1e3 * spent["s"],
                                  spent["masks"], used.forced_tokens))

    def median(kind: str, i: int) -> float:
        return statistics.median(f[i] for f in figures[kind])

    free_ms, ms = median("free", 0), median("constrained", 0)
    steps = median("constrained", 1)
    matcher_ms = median("constrained", 2) / steps
    print(f"\nunconstrained: {median('free', 1):.0f} decode steps, {free_ms:.1f} ms/step")
    print(f"constrained:   {steps:.0f} decode steps, {ms:.1f} ms/step (ratio {ms / free_ms:.3f}); "
          f"{median('constrained', 3):.0f} masks computed, {median('constrained', 4):.0f} forced tokens")
    print(f"matcher calls: {matcher_ms:.2f} ms per decode step = {matcher_ms / free_ms:.1%} of an unconstrained step "
          f"(goal <= 5%)")
    same = sum(a.text == b.text for a, b in zip(outputs["free"], outputs["constrained"], strict=True))
    ok = sum(grammar.matches(constraint, c.text) and "Action 1:" in c.text for c in outputs["free"])
    print(f"texts: {ok}/{args.rows} unconstrained steps already had a conforming action; "
          f"{same}/{args.rows} constrained texts equal the unconstrained ones")
    print("runs (ms/step, steps, matcher ms, masks, forced):", {k: [tuple(round(x, 1) for x in f) for f in v]
                                                               for k, v in figures.items()})


if __name__ == "__main__":
    main()
