"""Prefix reuse in the chat prompt format against the text format, on a real tokenizer.

    python benchmarks/bench_chat_prefix.py --n 8 --methods cot,pal,react

The embedded default model (Gemma 3 270M base) has no chat template. For this measurement a copy of it gets one,
the Gemma-style template of the chat-format tests (tests/fixtures/chat_templates/gemma.jinja; the weights are
linked, not copied). Every method then runs its questions twice, once per prompt format, through the engine in
batches. The script prints, per method and format:

- how many prompt tokens the prefix cache served;
- how long the shared system + exemplar prefix is.

Timings are left out on purpose: the two formats generate different texts, so their times compare the texts,
not the prompts (bench_throughput.py measures speed).

Prefix reuse is a property of the prompt and the tokenizer, so a base model serves to measure it. Its answers in
the chat format mean nothing (it was not tuned on chats), so accuracy is not reported.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agentkit.strategies import load_strategy  # noqa: E402

# The Gemma-style chat template the chat-format tests render every strategy through.
GEMMA_STYLE = ROOT / "tests" / "fixtures" / "chat_templates" / "gemma.jinja"


def with_chat_template(source: Path, target: Path) -> Path:
    """A model directory like ``source`` (weights linked) whose tokenizer has the Gemma-style template."""
    for item in source.iterdir():
        if item.suffix == ".safetensors":
            (target / item.name).symlink_to(item)
        elif item.is_file():
            shutil.copy(item, target / item.name)
    shutil.copy(GEMMA_STYLE, target / "chat_template.jinja")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=8, help="questions per method and format")
    parser.add_argument("--methods", default="cot,pal,react", help="comma-separated methods")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()

    from agentkit.engine import TransformersLLM
    from agentkit.engine.loading import _dequantized_gguf, cache_dir, default_gguf
    from agentkit.eval.datasets import load_dataset

    cache = cache_dir()
    source = _dequantized_gguf(default_gguf(cache), cache, print)
    with tempfile.TemporaryDirectory() as tmp:
        llm = TransformersLLM(str(with_chat_template(source, Path(tmp))))
        print(
            f"model: {source.name} with a Gemma-style chat template; {args.n} questions per method, batches of "
            f"{args.batch_size}, at most {args.max_new_tokens} new tokens"
        )
        print(f"{'method':<8} {'format':<6} {'prompt tokens from the prefix cache':>36} {'shared prefix':>14}")
        for method in args.methods.split(","):
            dataset = "wiki-sample" if method.startswith("react") else "gsm8k-sample"
            questions = [ex.question for ex in load_dataset(dataset)][: args.n]
            for prompt_format in ("text", "chat"):
                strategy = load_strategy(
                    method, llm, prompt_format=prompt_format, config={"max_new_tokens": args.max_new_tokens}
                )
                prompt = llm.render(strategy.prompt(questions[0]))
                shared = len(llm.encode(prompt[: prompt.rindex(questions[0])]))
                llm.prefix_cache.clear()
                hits, lookups = llm.prefix_cache.hits, llm.prefix_cache.lookups
                strategy.batch(questions, batch_size=args.batch_size)
                hits, lookups = llm.prefix_cache.hits - hits, llm.prefix_cache.lookups - lookups
                served = f"{hits} of {lookups} ({hits / lookups:.0%})"
                print(f"{method:<8} {prompt_format:<6} {served:>36} {shared:>14}", flush=True)


if __name__ == "__main__":
    main()
