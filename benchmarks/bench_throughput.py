"""Throughput of agentkit against the one-prompt-at-a-time way other frameworks drive a local model.

    python benchmarks/bench_throughput.py --workload cot --n 32 --baseline-n 8
    python benchmarks/bench_throughput.py --workload react --n 16 --baseline-n 4
    python benchmarks/bench_throughput.py --workload pal-sc --n 8 --baseline-n 2 [--sampling temperature]
    python benchmarks/bench_throughput.py --workload cot --n 8 --baseline-n 0 --trace-overhead 3

Each workload is one of agentkit's own strategies over a question set: ``cot`` (4-shot chain-of-thought on
GSM8K-style questions, greedy, 160 new tokens), ``react`` (ReAct over the offline Wikipedia corpus, greedy) and
``pal-sc`` (PAL with self-consistency, k = 5 sampled programs run in the sandbox). Both sides run in this
process on the same weights and the same episode code; only the model calls differ:

(a) **sequential**: one episode at a time, every prompt through ``transformers``' ``model.generate`` alone
    (KV cache on; with ``--baseline-stop stop`` a stopping criterion ends it at a stop string, with ``nostop``
    it runs to EOS/``max_new_tokens`` and the text is cut afterwards: the literal plain loop);
(b) **agentkit**: ``run_episodes`` — all episodes side by side, their prompts in shared continuous batches with
    prefix-KV reuse.

Prints seconds/question for each, the speed-up, peak RSS, and how many answers (and texts) agree.
``--trace-overhead R`` also runs (b) R more times with OpenTelemetry tracing off and on (spans to the SDK's
in-memory exporter), alternating, and prints the median of each and their ratio (agentkit.tracing), and the
time the runner spent inside tracing itself: on a busy machine the latter resolves what the ratio cannot. The baseline
may run on the first ``--baseline-n`` questions only: its s/question is measured on that subset and the
full-run time is labelled as an extrapolation. Questions come from the shipped sample sets (our own writing) or
``--dataset``.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agentkit.llm import LLM, Completion, GenerationConfig, cut_at_stop  # noqa: E402
from agentkit.runtime import run_episodes  # noqa: E402


@dataclass
class Workload:
    """A strategy factory and the questions it answers."""

    name: str
    make: Callable[[LLM], object]  # llm -> Strategy
    questions: list[str]
    gold: list[str]
    source: str
    sampled: bool = False  # answers of sampled runs are not expected to match across engines


def _questions(args: argparse.Namespace, default: str) -> tuple[list[str], list[str], str]:
    from agentkit.eval.datasets import load_dataset

    examples = load_dataset(args.dataset or default)
    while len(examples) < args.n:  # cycle a short file (the distinct count is printed)
        examples = examples + examples
    examples = examples[: args.n]
    return [e.question for e in examples], [e.answer for e in examples], args.dataset or default


def cot_workload(args: argparse.Namespace) -> Workload:
    from agentkit.strategies.cot import CoT

    config = CoT.default_config.model_copy(update={"max_new_tokens": args.max_new_tokens or 160})
    questions, gold, source = _questions(args, "gsm8k-sample")
    return Workload("cot (4-shot, greedy)", lambda llm: CoT(llm, shots=4, config=config), questions, gold, source)


def react_workload(args: argparse.Namespace) -> Workload:
    from agentkit.strategies.react import ReAct
    from agentkit.tools.wikipedia import make_backend

    update = {"max_new_tokens": args.max_new_tokens} if args.max_new_tokens else {}
    config = ReAct.default_config.model_copy(update=update)
    corpus = make_backend("offline")  # loaded once, here, outside the timed runs
    questions, gold, source = _questions(args, "wiki-sample")
    return Workload(
        "react (4-shot, offline corpus, greedy)",
        lambda llm: ReAct(llm, shots=4, config=config, corpus=corpus),
        questions,
        gold,
        source,
    )


def pal_sc_workload(args: argparse.Namespace) -> Workload:
    from agentkit.strategies.pal import PAL, shared_sandbox
    from agentkit.strategies.self_consistency import SelfConsistency

    shared_sandbox().run("answer = 1")  # warm workers before timing
    update = {"max_new_tokens": args.max_new_tokens} if args.max_new_tokens else {}
    config = PAL.default_config.model_copy(update=update)
    questions, gold, source = _questions(args, "gsm8k-sample")
    # the strategy's default samples (top_k 40, top_p 0.95), or pure temperature (the engine's Gumbel race)
    sampling = {} if args.sampling == "top-k" else {"top_k": None, "top_p": 1.0}
    return Workload(
        f"pal-sc (4-shot, k=5, T=0.7, {'top-k 40, top-p 0.95' if not sampling else 'pure temperature'})",
        lambda llm: SelfConsistency(PAL(llm, shots=4, config=config), k=5, seed=0, **sampling),
        questions,
        gold,
        source,
        sampled=True,
    )


WORKLOADS: dict[str, Callable[[argparse.Namespace], Workload]] = {
    "cot": cot_workload,
    "react": react_workload,
    "pal-sc": pal_sc_workload,
}


# -- the sequential baseline -------------------------------------------------------------------------------------


class PlainLoopLLM(LLM):
    """The way other frameworks call a local model: each prompt alone through ``model.generate``.

    Uses the engine's tokenizer and the same weights (``model``: by default a plain copy loaded as transformers
    loads it, since the engine packs its own copy's linears for oneDNN), none of its batching or caching.
    Sampling seeds the global torch generator with the row's ``seed``.
    """

    def __init__(self, engine, honour_stop: bool = True, model=None):
        self.engine = engine
        self.model = engine.model if model is None else model
        self.honour_stop = honour_stop
        self.name = f"plain-loop({engine.name})"
        self.prompts = 0

    def generate(self, prompts: list[str], config: GenerationConfig | None = None) -> list[Completion]:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        config = config or GenerationConfig()
        tokenizer, model = self.engine.tokenizer, self.model

        class StopOnText(StoppingCriteria):
            def __init__(self, start: int):
                self.start = start

            def __call__(self, input_ids, scores, **kwargs):
                text = tokenizer.decode(input_ids[0, self.start :].tolist())
                return torch.tensor([any(s in text for s in config.stop)])

        out = []
        for prompt in prompts:
            self.prompts += 1
            ids = torch.tensor([self.engine.encode(prompt)], device=self.engine.device)
            sampling = {}
            if config.do_sample:
                torch.manual_seed(config.seed or 0)
                sampling = dict(temperature=config.temperature, top_p=config.top_p, top_k=config.top_k or 0)
            stopping = StoppingCriteriaList([StopOnText(ids.shape[1])]) if config.stop and self.honour_stop else None
            with torch.no_grad():
                gen = model.generate(
                    ids,
                    attention_mask=torch.ones_like(ids),
                    max_new_tokens=config.max_new_tokens,
                    do_sample=bool(sampling),
                    stopping_criteria=stopping,
                    **sampling,
                )
            new = gen[0, ids.shape[1] :].tolist()
            text, stopped = cut_at_stop(tokenizer.decode(new), config.stop)  # skips special tokens
            eos = bool(new) and new[-1] in self.engine.eos_ids
            out.append(
                Completion(
                    text=text,
                    finish_reason="stop" if stopped or eos else "length",
                    prompt_tokens=ids.shape[1],
                    completion_tokens=len(new),
                )
            )
        return out


def run(llm: LLM, wl: Workload, batch_size: int, sequential: bool = False, trace=None) -> list:
    strategy = wl.make(llm)
    episodes = (strategy.episode(q) for q in wl.questions)
    if sequential:
        return run_episodes(llm, episodes, batch_size=1, max_active=1)
    return run_episodes(llm, episodes, batch_size=batch_size, trace=trace)


def trace_overhead(llm: LLM, wl: Workload, batch_size: int, rounds: int) -> None:
    """Time ``run`` with tracing off and on (in-memory exporter), alternating; print medians and their ratio."""
    import statistics

    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from agentkit.tracing import Tracing

    class Timed(Tracing):
        """Tracing that also adds up the time the runner spends in it (span export included)."""

        spent = 0.0

    def timed(method):
        def run_timed(self, *args, **kwargs):
            t = time.perf_counter()
            try:
                return method(self, *args, **kwargs)
            finally:
                Timed.spent += time.perf_counter() - t

        return run_timed

    for name in (
        "episode_started",
        "episode_ended",
        "model_started",
        "model_ended",
        "tool_started",
        "tool_ended",
        "dropped",
    ):
        setattr(Timed, name, timed(getattr(Tracing, name)))

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = Timed(provider)
    times: dict[str, list[float]] = {"off": [], "on": []}
    texts: dict[str, list[str]] = {}
    for _ in range(rounds):
        for mode in ("off", "on"):
            exporter.clear()
            t = time.perf_counter()
            results = run(llm, wl, batch_size, trace=tracing if mode == "on" else None)
            times[mode].append(time.perf_counter() - t)
            texts[mode] = [c for r in results for c in r.completions]
    spans = len(exporter.get_finished_spans())
    off, on = statistics.median(times["off"]), statistics.median(times["on"])
    pairs = sorted(b / a for a, b in zip(times["off"], times["on"], strict=True))
    print(
        f"\ntracing overhead, {rounds} rounds alternating ({spans} spans per traced run): median off {off:.2f}s, "
        f"on {on:.2f}s, on/off = {on / off:.3f}; best off {min(times['off']):.2f}s, on {min(times['on']):.2f}s, "
        f"on/off = {min(times['on']) / min(times['off']):.3f}; "
        f"per-round on/off {', '.join(f'{r:.3f}' for r in pairs)}"
        f" (median {statistics.median(pairs):.3f}); same texts: {texts['off'] == texts['on']}"
    )
    inside = Timed.spent / rounds
    print(
        f"time inside tracing (spans made, ended and exported, on the runner's thread): {1000 * inside:.1f} ms "
        f"per traced run = {100 * inside / on:.3f}% of its median time"
    )


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # Linux: KiB


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workload", choices=sorted(WORKLOADS), default="cot")
    ap.add_argument("--n", type=int, default=32, help="questions for agentkit")
    ap.add_argument("--baseline-n", type=int, default=8, help="questions for the baseline (first ones); 0 = skip")
    ap.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float32"])
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=None, help="override the strategy's default")
    ap.add_argument("--dataset", default=None, help="dataset path or shipped name (default: the workload's)")
    ap.add_argument("--model", default=None, help="model id / dir / .gguf (default: embedded Gemma 3 270M)")
    ap.add_argument("--no-prefix-cache", action="store_true")
    ap.add_argument(
        "--baseline-weights",
        choices=["plain", "engine"],
        default="plain",
        help="baseline on a plain transformers copy of the model (default) or on the engine's own "
        "(oneDNN-packed linears in float32 on CPU)",
    )
    ap.add_argument(
        "--prompt-lookup",
        type=int,
        default=None,
        help="most tokens a row decoding alone drafts per step (0 = off; default: the engine's)",
    )
    ap.add_argument(
        "--engine",
        nargs="+",
        default=[],
        metavar="FIELD=VALUE",
        help="EngineConfig switches, e.g. fast_lm_head=false gumbel_race=false (to bisect by feature)",
    )
    ap.add_argument(
        "--sampling",
        choices=["top-k", "temperature"],
        default="top-k",
        help="pal-sc's samples: self-consistency's default (top_k 40, top_p 0.95) or pure temperature "
        "(no top_k, top_p 1)",
    )
    ap.add_argument("--profile", action="store_true", help="torch profiler table for the agentkit run")
    ap.add_argument(
        "--trace-overhead",
        type=int,
        default=0,
        metavar="R",
        help="then R rounds of (b) with tracing off and on (needs agentkit[otel])",
    )
    ap.add_argument(
        "--baseline-stop",
        choices=["stop", "nostop", "both"],
        default=None,
        help="baseline with a stop-string criterion, without (the literal plain loop), or both "
        "(default: both for cot, stop for the agent workloads)",
    )
    args = ap.parse_args(argv)

    import torch

    from agentkit.engine import EngineConfig, TransformersLLM

    knobs = dict(kv.split("=", 1) for kv in args.engine)
    if args.no_prefix_cache:
        knobs["prefix_cache_mb"] = 0
    if args.prompt_lookup is not None:
        knobs["prompt_lookup"] = args.prompt_lookup
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    llm = TransformersLLM(args.model, dtype=args.dtype, config=EngineConfig.model_validate(knobs))
    t_loaded = time.perf_counter() - t0
    llm.wait_until_ready()  # the int8 LM-head shortlist is built in the background; don't time that
    print(
        f"model {llm.name}  dtype={llm.dtype}  device={llm.device}  load {t_loaded:.1f}s "
        f"(+{time.perf_counter() - t0 - t_loaded:.1f}s background set-up)  "
        f"threads={torch.get_num_threads()}  loadavg(1m) before={load:.1f}"
    )
    wl = WORKLOADS[args.workload](args)
    n = len(wl.questions)
    print(f"workload {wl.name}: {n} questions ({len(set(wl.questions))} distinct) from {wl.source}")

    stats0 = llm.stats.copy()
    t = time.perf_counter()
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            ours = run(llm, wl, args.batch_size)
    else:
        ours = run(llm, wl, args.batch_size)
    ours_s = time.perf_counter() - t
    rss_engine = peak_rss_gb()
    st = llm.stats - stats0
    calls = sum(len(r.completions) for r in ours)
    print(
        f"\n(b) agentkit run_episodes, batch {args.batch_size}: {ours_s:.1f}s total, "
        f"{ours_s / n:.2f} s/question, {st.decode_tokens / ours_s:.1f} generated tok/s, "
        f"peak RSS {rss_engine:.2f} GB"
    )
    print(
        f"    prefill {st.prefill_tokens} of {st.prompt_tokens} prompt tokens "
        f"({1 - st.prefill_tokens / max(1, st.prompt_tokens):.0%} served by the prefix cache); "
        f"{st.decode_steps} decode steps, mean batch {st.decode_rows / max(1, st.decode_steps):.1f} rows"
        f"; {calls} model calls; {st.accepted_tokens} of {st.drafted_tokens} drafted tokens accepted"
    )
    print(
        f"    time: admission+prefill {st.prefill_s:.1f}s, decode {st.decode_s:.1f}s "
        f"(of which LM head and token choice {st.head_s:.1f}s, "
        f"{1000 * st.decode_s / max(1, st.decode_steps):.0f} ms/step), "
        f"other (tools, sandbox, bookkeeping) {ours_s - st.prefill_s - st.decode_s:.1f}s"
    )
    if args.profile:
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))

    from agentkit.eval.scoring import score_answer

    def correct(results: list) -> int:
        return sum(score_answer(r.answer, g).correct for r, g in zip(results, wl.gold, strict=False))

    print(
        f"    accuracy vs gold: {correct(ours)}/{n}; failures: "
        f"{dict(__import__('collections').Counter(r.failure for r in ours if r.failure))}"
    )
    if args.trace_overhead:
        trace_overhead(llm, wl, args.batch_size, args.trace_overhead)
    if args.baseline_n <= 0:
        return
    k = min(args.baseline_n, n)
    default_modes = "both" if args.workload == "cot" else "stop"
    modes = {"stop": [True], "nostop": [False], "both": [True, False]}[args.baseline_stop or default_modes]
    ours_per_q = ours_s / n
    subset = Workload(wl.name, wl.make, wl.questions[:k], wl.gold[:k], wl.source, wl.sampled)
    weights = None
    if args.baseline_weights == "plain" and llm.packed_linears:
        from agentkit.engine.loading import load_model

        weights = load_model(args.model, dtype=llm.dtype, device=llm.device, cache=llm.cache_dir, log=lambda msg: None)[
            0
        ].eval()
    print(
        f"\nbaseline weights: {'a plain transformers copy' if weights is not None else 'the engine model'}"
        f" ({llm.packed_linears} of the engine's linears oneDNN-packed)"
    )
    for honour in modes:
        plain = PlainLoopLLM(llm, honour_stop=honour, model=weights)
        t = time.perf_counter()
        base = run(plain, subset, 1, sequential=True)
        base_s = time.perf_counter() - t
        per_q = base_s / k
        label = "stopping at stop strings" if honour else "no stop criterion: runs to EOS/max_new_tokens, cut after"
        where = f"measured on the first {k} of {n} questions" if k < n else "all questions"
        print(
            f"\n(a) sequential: one episode at a time, each prompt alone through model.generate, {label}: "
            f"{base_s:.1f}s for {k} questions ({plain.prompts} model calls), {per_q:.2f} s/question ({where})"
        )
        if k < n:
            print(f"    extrapolated to all {n}: ~{per_q * n:.0f}s (EXTRAPOLATION)")
        agree = sum(a.answer == b.answer for a, b in zip(base, ours[:k], strict=False))
        same = sum(a.completions == b.completions for a, b in zip(base, ours[:k], strict=False))
        note = " (sampled: different random streams, agreement not expected)" if wl.sampled else ""
        print(
            f"    accuracy vs gold on that subset: {correct(base)}/{k}; answers agree with agentkit on "
            f"{agree}/{k}, identical model texts {same}/{k} (dtype {llm.dtype}){note}"
        )
        print(f"    speed-up of agentkit: {per_q / ours_per_q:.1f}x  (s/question {per_q:.2f} -> {ours_per_q:.2f})")
    print(f"\npeak RSS (whole process) {peak_rss_gb():.2f} GB; loadavg(1m) after={os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
