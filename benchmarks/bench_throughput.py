"""Throughput of agentkit's engine against a plain one-prompt-at-a-time ``transformers`` ``generate`` loop.

    python benchmarks/bench_throughput.py --n 32 --baseline-n 8 --dtype auto --batch-size 32

Both run in this process on the same weights: (a) the baseline loop, one prompt at a time through
``model.generate`` (greedy, stop strings honoured by a stopping criterion, KV cache on); (b) agentkit's continuous
batching ``session()`` with prefix-KV reuse. Prints seconds/question for each, the speed-up, peak RSS, and how many
extracted answers (and full texts) agree. The baseline may run on the first ``--baseline-n`` prompts only: its
s/question is then measured on that subset and the full-run time is labelled as an extrapolation.

A workload is a function ``(args) -> Workload`` in ``WORKLOADS``; teammates add ReAct / PAL-SC ones there.
Questions: ``--dataset`` JSONL (fields question, answer), else ``prompts/data/gsm8k_sample.jsonl`` if present,
else the inline ``QUESTIONS`` below (written for this benchmark; not from any public dataset).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agentkit.llm import GenerationConfig, cut_at_stop  # noqa: E402

# -- the CoT workload --------------------------------------------------------------------------------------------

FEW_SHOT = [
    (
        "A farmer has 4 fields with 23 cows in each field. He sells 17 cows. How many cows does he have left?",
        "He starts with 4 * 23 = 92 cows. After selling 17 he has 92 - 17 = 75 cows. The answer is 75.",
    ),
    (
        "Lena reads 12 pages every evening. How many pages does she read in 3 weeks?",
        "3 weeks is 3 * 7 = 21 evenings. She reads 21 * 12 = 252 pages. The answer is 252.",
    ),
    (
        "A box of 8 markers costs $6. How much do 5 boxes cost, and how many markers is that? Give the cost.",
        "5 boxes cost 5 * 6 = $30 and hold 5 * 8 = 40 markers. The cost is $30. The answer is 30.",
    ),
    (
        "A train leaves at 9:40 and the trip takes 2 hours and 35 minutes. How many minutes past noon does it arrive?",
        "9:40 plus 2 hours is 11:40, plus 35 minutes is 12:15. That is 15 minutes past noon. The answer is 15.",
    ),
]

QUESTIONS = [  # (question, answer): written for this benchmark
    ("Sam has 14 marbles and wins 9 more. He then gives 5 to his sister. How many marbles does Sam have?", 18),
    ("A shop sells pencils at 3 for $1. How many dollars do 27 pencils cost?", 9),
    ("There are 6 rows of chairs with 15 chairs in each row. 11 chairs are empty. How many are taken?", 79),
    ("Nina saves $8 a week. How many weeks does she need to save $96?", 12),
    ("A baker makes 144 rolls and packs them in bags of 12. How many bags does he fill?", 12),
    ("Tom is 7 years old. His father is 5 times as old. How old is his father?", 35),
    ("A car uses 6 liters of fuel per 100 km. How many liters does it use for 350 km?", 21),
    ("Each of 9 students brings 4 apples. They eat 13. How many apples are left?", 23),
    ("A rope is 50 meters long. It is cut into pieces of 4 meters. How many full pieces are there?", 12),
    ("Mia buys 3 books at $12 each and pays with a $50 bill. How much change does she get?", 14),
    ("A garden has 8 rows of 12 tulips. Half of them are red. How many red tulips are there?", 48),
    ("A cyclist rides 18 km per hour for 3 hours and then 12 km more. How far does she ride in total?", 66),
    ("A class has 32 students. 3 out of every 8 walk to school. How many students walk?", 12),
    ("Ben had 200 stickers. He gave 45 to Ana and 38 to Leo. How many stickers does he have now?", 117),
    ("A movie starts at 7:15 pm and lasts 135 minutes. At what minute past 9 pm does it end?", 30),
    ("Eggs come in cartons of 6. A cook needs 40 eggs. How many cartons must she buy?", 7),
    ("A tank holds 250 liters and is 40% full. How many liters are in it?", 100),
    ("Jack runs 5 laps of a 400 meter track each day. How many meters does he run in 6 days?", 12000),
    ("A ticket costs $15 for adults and $9 for children. What do 2 adults and 3 children pay?", 57),
    ("A printer prints 24 pages per minute. How many minutes does it need for 360 pages?", 15),
    ("Olga has 3 times as many coins as Pete. Pete has 17 coins. How many coins do they have together?", 68),
    ("A pizza is cut into 8 slices. 5 friends each eat 3 slices. How many pizzas did they need at least?", 2),
    ("A farmer collects 38 eggs a day. How many eggs does he collect in a 30-day month?", 1140),
    ("A jacket costs $80 and is on sale for 25% off. What is the sale price in dollars?", 60),
    ("A library had 1250 books. It bought 340 and gave away 190. How many books does it have?", 1400),
    ("A bus carries 42 people. How many buses are needed for 300 people?", 8),
    ("Kim works 7 hours a day at $13 per hour. How much does she earn in 5 days?", 455),
    ("A square field has a side of 45 meters. What is its perimeter in meters?", 180),
    ("There are 96 cookies shared equally among 8 children. Each child eats 5. How many are left per child?", 7),
    ("A water bottle holds 750 ml. How many ml are in 6 bottles?", 4500),
    ("Ali scored 78, 85 and 92 on three tests. What is the total of his scores?", 255),
    ("A store had 60 shirts and sold two thirds of them. How many shirts are left?", 20),
    ("A plant grows 3 cm each week. It is 14 cm tall now. How tall will it be in 8 weeks?", 38),
    ("A family drives 420 km in 6 hours. What is their average speed in km per hour?", 70),
    ("Each box holds 24 cans. A shop receives 15 boxes and sells 200 cans. How many cans are left?", 160),
    ("A bag has 5 red, 7 blue and 12 green balls. How many balls are not green?", 12),
]

STOP = ["\n\nQuestion:", "\nQuestion:"]
ANSWER_RE = re.compile(r"answer is\s*\$?\s*(-?[\d,]*\.?\d+)", re.IGNORECASE)


def few_shot_prefix() -> str:
    return "".join(f"Question: {q}\nAnswer: {a}\n\n" for q, a in FEW_SHOT)


def extract_answer(text: str) -> str | None:
    m = ANSWER_RE.search(text)
    if not m:
        return None
    value = m.group(1).replace(",", "")
    return value[:-2] if value.endswith(".0") else value


def load_questions(path: str | None) -> list[tuple[str, str]]:
    candidate = Path(path) if path else ROOT / "prompts" / "data" / "gsm8k_sample.jsonl"
    if candidate.is_file():
        rows = [json.loads(line) for line in candidate.read_text().splitlines() if line.strip()]
        out = []
        for r in rows:
            ans = str(r["answer"])
            ans = ans.split("####")[-1].strip() if "####" in ans else ans.strip()
            out.append((r["question"], ans.replace(",", "")))
        return out
    if path:
        raise SystemExit(f"--dataset {path}: no such file")
    return [(q, str(a)) for q, a in QUESTIONS]


@dataclass
class Workload:
    """Prompts for agentkit, the same for the baseline, and how to score a completion."""

    name: str
    prompts: list[str]
    config: GenerationConfig
    baseline: Callable[[object, list[str], GenerationConfig, bool], list[str]]
    extract: Callable[[str], str | None] = extract_answer
    gold: list[str] = field(default_factory=list)
    source: str = ""


def cot_workload(args: argparse.Namespace) -> Workload:
    questions = load_questions(args.dataset)
    while len(questions) < args.n:  # cycle if the file is short (repeats are labelled below)
        questions = questions + questions
    questions = questions[: args.n]
    prefix = few_shot_prefix()
    return Workload(
        name="cot-gsm",
        prompts=[f"{prefix}Question: {q}\nAnswer:" for q, _ in questions],
        config=GenerationConfig(max_new_tokens=args.max_new_tokens, stop=STOP),
        baseline=plain_generate_loop,
        gold=[a for _, a in questions],
        source=args.dataset or ("prompts/data/gsm8k_sample.jsonl" if (ROOT / "prompts/data/gsm8k_sample.jsonl").is_file()
                                else "inline QUESTIONS"),
    )


WORKLOADS: dict[str, Callable[[argparse.Namespace], Workload]] = {"cot": cot_workload}

# -- the two runners ---------------------------------------------------------------------------------------------


def plain_generate_loop(llm, prompts: list[str], config: GenerationConfig, honour_stop: bool = True) -> list[str]:
    """The baseline: one prompt at a time through ``model.generate``, greedy. With ``honour_stop`` a stopping
    criterion ends generation at a stop string; without, it runs to EOS or ``max_new_tokens`` (the literal plain
    loop). Either way the text is cut at the first stop string afterwards."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class StopOnText(StoppingCriteria):
        def __init__(self, start: int):
            self.start = start

        def __call__(self, input_ids, scores, **kwargs):
            text = llm.tokenizer.decode(input_ids[0, self.start :].tolist())
            return torch.tensor([any(s in text for s in config.stop)])

    out = []
    for prompt in prompts:
        ids = torch.tensor([llm.encode(prompt)], device=llm.device)
        with torch.no_grad():
            gen = llm.model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=config.max_new_tokens,
                do_sample=False,
                stopping_criteria=StoppingCriteriaList([StopOnText(ids.shape[1])]) if config.stop and honour_stop else None,
            )
        out.append(cut_at_stop(llm.tokenizer.decode(gen[0, ids.shape[1] :].tolist()), config.stop)[0])
    return out


def agentkit_session(llm, prompts: list[str], config: GenerationConfig, batch_size: int) -> list[str]:
    session = llm.session(max_batch_size=batch_size)
    results: dict[int, str] = {}
    queue = list(enumerate(prompts))
    while queue or session.pending:
        while queue and session.free_slots:
            i, p = queue.pop(0)
            session.add(i, p, config)
        for key, completion in session.step():
            results[key] = completion.text
    session.close()
    return [results[i] for i in range(len(prompts))]


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # Linux: KiB


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workload", choices=sorted(WORKLOADS), default="cot")
    ap.add_argument("--n", type=int, default=32, help="questions for agentkit")
    ap.add_argument("--baseline-n", type=int, default=8, help="questions for the baseline (first ones); 0 = skip")
    ap.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float32"])
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=160)
    ap.add_argument("--dataset", default=None, help="JSONL with question/answer fields")
    ap.add_argument("--model", default=None, help="model id / dir / .gguf (default: embedded Gemma 3 270M)")
    ap.add_argument("--no-prefix-cache", action="store_true")
    ap.add_argument("--profile", action="store_true", help="torch profiler table for the agentkit run")
    ap.add_argument("--baseline-stop", choices=["stop", "nostop", "both"], default="both",
                    help="baseline with a stop-string criterion, without (plain), or both")
    args = ap.parse_args(argv)

    from agentkit.engine import TransformersLLM

    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    llm = TransformersLLM(args.model, dtype=args.dtype, prefix_cache_mb=0 if args.no_prefix_cache else 512)
    t_loaded = time.perf_counter() - t0
    llm.wait_until_ready()  # the int8 LM-head shortlist is built in the background; don't time that
    print(f"model {llm.name}  dtype={llm.dtype}  device={llm.device}  load {t_loaded:.1f}s "
          f"(+{time.perf_counter() - t0 - t_loaded:.1f}s background set-up)  "
          f"threads={__import__('torch').get_num_threads()}  loadavg(1m) before={load:.1f}")
    wl = WORKLOADS[args.workload](args)
    n_unique = len(set(wl.prompts))
    print(f"workload {wl.name}: {len(wl.prompts)} prompts ({n_unique} distinct) from {wl.source}, "
          f"~{sum(len(llm.encode(p)) for p in wl.prompts) // len(wl.prompts)} prompt tokens each, "
          f"max_new_tokens={wl.config.max_new_tokens}")

    stats0 = dict(llm.stats)
    t = time.perf_counter()
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            ours = agentkit_session(llm, wl.prompts, wl.config, args.batch_size)
    else:
        ours = agentkit_session(llm, wl.prompts, wl.config, args.batch_size)
    ours_s = time.perf_counter() - t
    rss_engine = peak_rss_gb()
    st = {k: llm.stats[k] - stats0[k] for k in stats0}
    print(f"\n(b) agentkit session, batch {args.batch_size}: {ours_s:.1f}s total, "
          f"{ours_s / len(wl.prompts):.2f} s/question, {st['decode_tokens'] / ours_s:.1f} generated tok/s, "
          f"peak RSS {rss_engine:.2f} GB")
    print(f"    prefill {st['prefill_tokens']} of {st['prompt_tokens']} prompt tokens "
          f"({1 - st['prefill_tokens'] / max(1, st['prompt_tokens']):.0%} served by the prefix cache); "
          f"{st['decode_steps']} decode steps, mean batch {st['decode_tokens'] / max(1, st['decode_steps']):.1f}")
    print(f"    time: admission+prefill {st['prefill_s']:.1f}s, decode {st['decode_s']:.1f}s, "
          f"other {ours_s - st['prefill_s'] - st['decode_s']:.1f}s")
    if args.profile:
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))

    def score(texts: list[str]) -> int:
        return sum(wl.extract(x) == g for x, g in zip(texts, wl.gold, strict=False))

    print(f"    accuracy vs gold: {score(ours)}/{len(ours)}")
    if args.baseline_n <= 0:
        return
    k = min(args.baseline_n, len(wl.prompts))
    modes = {"stop": [True], "nostop": [False], "both": [True, False]}[args.baseline_stop]
    ours_per_q = ours_s / len(wl.prompts)
    for honour in modes:
        t = time.perf_counter()
        base = wl.baseline(llm, wl.prompts[:k], wl.config, honour)
        base_s = time.perf_counter() - t
        per_q = base_s / k
        label = "stopping at stop strings" if honour else "no stop criterion: runs to EOS/max_new_tokens, cut after"
        subset = f"measured on the first {k} of {len(wl.prompts)} prompts" if k < len(wl.prompts) else "all prompts"
        print(f"\n(a) plain transformers generate loop, one prompt at a time, {label}: {base_s:.1f}s for {k} "
              f"prompts, {per_q:.2f} s/question ({subset})")
        if k < len(wl.prompts):
            print(f"    extrapolated to all {len(wl.prompts)}: ~{per_q * len(wl.prompts):.0f}s (EXTRAPOLATION)")
        agree = sum(wl.extract(a) == wl.extract(b) for a, b in zip(base, ours[:k], strict=False))
        same_text = sum(a == b for a, b in zip(base, ours[:k], strict=False))
        print(f"    accuracy vs gold on that subset: {score(base)}/{k}; answers agree with agentkit on {agree}/{k}, "
              f"identical texts {same_text}/{k} (dtype {llm.dtype})")
        print(f"    speed-up of agentkit: {per_q / ours_per_q:.1f}x  (s/question {per_q:.2f} -> {ours_per_q:.2f})")
    print(f"\npeak RSS (whole process) {peak_rss_gb():.2f} GB; loadavg(1m) after={os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
