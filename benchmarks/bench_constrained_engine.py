"""What a grammar constraint costs the engine per decode step: a ReAct-like batch with and without one.

    python benchmarks/bench_constrained_engine.py [--rows 16] [--max-new-tokens 64] [--repeat 3]

The batch is the first step of ReAct (4-shot prompt, ``Thought 1:``) for the first ``--rows`` questions of the
wiki sample, greedy, with ReAct's stop strings, on the default model in float32, run three ways: free; with the
action-line constraint ``Constraint(regex=" (Search|Lookup|Finish)\\[[^\\]\\n]+\\]", after="Action 1:")``,
which the model's steps mostly satisfy already; and with ``Finish`` as the only action, which it does not (each
row's choice is rejected, its mask computed, and the rest of the tool name forced). The three alternate
``--repeat`` times in one process, after a warm-up that builds the llguidance vocabulary. Printed per kind:
decode steps, ms per decode step (the engine's ``decode_s / decode_steps``, the fastest run, as the machine is
shared) and its ratio to the free run's; for the constrained kinds the time inside the row matchers' calls
(``allows``, ``take``, ``forced``, ``mask``, ``stopped``: timed here by wrapping them) per step and as a share of the
same run's decode time, masks computed and forced tokens. Also how many constrained texts equal the free ones.
"""

from __future__ import annotations

import argparse
import functools
import time

ACTION = r" (Search|Lookup|Finish)\[[^\]\n]+\]"
FINISH = r" Finish\[[^\]\n]+\]"  # the model would Search first: every row is masked, then forced ("inish[")


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
    print(
        f"model {llm.name}  dtype={llm.dtype}  threads={torch.get_num_threads()}  rows={args.rows}  "
        f"max_new_tokens={args.max_new_tokens}  prompt tokens/row ~{len(llm.encode(llm.render(prompts[0])))}"
    )

    t = time.perf_counter()
    llm.generate(prompts[:2], cfg)  # warm-up: the llguidance vocabulary, the grammar, the prefix cache
    print(f"warm-up (llguidance vocabulary + grammar + prompts' prefill): {time.perf_counter() - t:.1f}s")

    kinds = {
        "free": free_cfg,
        "action": cfg,
        "finish-only": cfg.model_copy(update={"constraint": Constraint(regex=FINISH, after="Action 1:")}),
    }
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in kinds}
    outputs = {}
    for _ in range(args.repeat):
        for kind, c in kinds.items():
            spent.update(s=0.0, masks=0)
            before = llm.stats.copy()
            outputs[kind] = llm.generate(prompts, c)
            used = llm.stats - before
            runs[kind].append(
                {
                    "ms": 1e3 * used.decode_s / used.decode_steps,
                    "steps": used.decode_steps,
                    "matcher": 1e3 * spent["s"] / used.decode_steps,
                    "share": spent["s"] / used.decode_s,
                    "masks": spent["masks"],
                    "forced": used.forced_tokens,
                }
            )

    free_ms = min(r["ms"] for r in runs["free"])
    print(
        f"\nms per decode step: the fastest of {args.repeat} runs (the machine is shared); matcher: time inside the "
        "row matchers' calls, per step and as a share of the same run's decode time (the largest share)"
    )
    for kind, rs in runs.items():
        ms = min(r["ms"] for r in rs)
        line = f"{kind:12s} {rs[0]['steps']:4.0f} steps  {ms:6.1f} ms/step  ratio {ms / free_ms:.3f}"
        if kind != "free":
            line += (
                f"  matcher {min(r['matcher'] for r in rs):.2f} ms/step, {max(r['share'] for r in rs):.1%} of "
                f"the step (goal <= 5%)  masks {rs[0]['masks']:.0f}  forced tokens {rs[0]['forced']:.0f}"
            )
        print(line)
    same = sum(a.text == b.text for a, b in zip(outputs["free"], outputs["action"], strict=True))
    ok = sum(grammar.matches(constraint, c.text) and "Action 1:" in c.text for c in outputs["free"])
    print(
        f"texts: {ok}/{args.rows} unconstrained steps already had a conforming action; "
        f"{same}/{args.rows} action-constrained texts equal the unconstrained ones"
    )
    print("every run:", {k: [(round(r["ms"], 1), round(r["matcher"], 2)) for r in rs] for k, rs in runs.items()})


if __name__ == "__main__":
    main()
