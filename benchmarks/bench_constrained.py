"""What constraining the replies (``--constrain``) does to format failures, accuracy and decoding speed.

    python benchmarks/bench_constrained.py [--methods direct cot pal react] [--limit N] [--dtype float32]
                                           [--model SPEC] [--batch-size 16]

Each method answers the same questions twice on one model, without and then with its constraint (docs/structured.md):
the numeric methods on the shipped GSM8K-style sample (``gsm8k-sample``), the ReAct methods on the shipped wiki
sample (``wiki-sample``, offline corpus). Per method and arm it prints

* format failures: replies the strategy could not read (direct and CoT: no answer; PAL: no program; ReAct:
  actions that did not parse or named no tool, re-asks included), with the self-consistency methods' samples
  counted one by one; a reply that max tokens cut is counted apart (``cut``), not as a format failure; PAL's
  programs that did not compile are counted apart too (the constraint is a skeleton, not Python's grammar);
* accuracy, and for the pair the paired difference with its 95% interval and the exact McNemar p-value, both
  from ``agentkit.eval.compare.compare`` (the numbers ``agentkit compare`` prints);
* the decoding time per generated token and per decode step with and without, and their ratio (the mask's
  cost): from the engine's own counters (``stats``: decode seconds, tokens and steps, prefill excluded, so the
  prefix cache the second arm finds warm does not count); for another model, the wall time of its generation
  steps per generated token.

The runs are greedy and in float32 by default, so the two arms differ only by the constraint. It needs a model
that honours constraints (the embedded engine once it does, ``agentkit serve``, a server that takes them);
others refuse the constrained arm in one line.
"""

from __future__ import annotations

import argparse
import math
import time
from collections import Counter
from typing import Any

DATASETS = {"react": "wiki-sample", "react-cot-sc": "wiki-sample"}  # every other method: gsm8k-sample
DEFAULT_METHODS = ["direct", "cot", "pal", "react"]
COLUMNS = ("replies", "format", "cut", "syntax")


def reply_failures(method: str, record: dict[str, Any]) -> Counter:
    """How many replies a record holds, how many the strategy could not read, how many max tokens cut."""
    counts: Counter = Counter()
    trajectory = record.get("trajectory")
    if trajectory:
        for step in trajectory["steps"]:
            counts["replies"] += 1
            if step["status"] in ("malformed", "unknown_tool"):
                counts["cut" if step.get("cut") else "format"] += 1
    samples = record.get("samples")
    for sample in samples if samples else [] if trajectory else [record]:
        counts["replies"] += 1
        failure = sample.get("failure")
        if failure in ("length", "no_answer", "parse_failure"):
            counts["cut" if failure == "length" else "format"] += 1
        elif failure == "sandbox_error" and "SyntaxError" in str(sample.get("error")):
            counts["syntax"] += 1
    return counts


def timed(llm: Any) -> dict[str, float]:
    """The model's decoding counters, read now: the engine's own, or the wall time of its session steps (which
    this function starts counting on a model without them)."""
    stats = getattr(llm, "stats", None)
    if stats is not None and hasattr(stats, "decode_s"):  # the engine's EngineStats
        return {"seconds": stats.decode_s, "tokens": stats.decode_tokens, "steps": stats.decode_steps}
    if not hasattr(llm, "_bench_seconds"):
        llm._bench_seconds = 0.0
        make_session = llm.session

        def session(*args: Any, **kwargs: Any) -> Any:
            session = make_session(*args, **kwargs)
            step = session.step

            def timed_step() -> Any:
                started = time.perf_counter()
                try:
                    return step()
                finally:
                    llm._bench_seconds += time.perf_counter() - started

            session.step = timed_step
            return session

        llm.session = session
    return {"seconds": llm._bench_seconds, "tokens": 0.0, "steps": 0.0}


def run_arm(llm: Any, method: str, *, constrain: bool, limit: int | None, batch_size: int) -> dict[str, Any]:
    """One method over its dataset, constrained or not: its records, reply counts and decoding time."""
    from agentkit.eval import run_benchmark

    before = timed(llm)
    result = run_benchmark(
        DATASETS.get(method, "gsm8k-sample"), method, llm, limit=limit, batch_size=batch_size, constrain=constrain
    )
    after = timed(llm)
    records = result.methods[method].records
    counts = sum((reply_failures(method, r) for r in records), Counter())
    tokens = after["tokens"] - before["tokens"] or sum(r["completion_tokens"] for r in records)
    seconds = after["seconds"] - before["seconds"]
    return {
        "records": records,
        "accuracy": result.methods[method].accuracy,
        "counts": counts,
        "per_token_ms": 1e3 * seconds / tokens if tokens else float("nan"),
        "per_step_ms": 1e3 * seconds / (after["steps"] - before["steps"])
        if after["steps"] > before["steps"]
        else float("nan"),
    }


def measure(llm: Any, methods: list[str], *, limit: int | None = None, batch_size: int = 16) -> list[dict[str, Any]]:
    """Both arms of every method, and their paired comparison (constrained as A)."""
    from agentkit.eval.compare import compare

    rows = []
    for method in methods:
        off = run_arm(llm, method, constrain=False, limit=limit, batch_size=batch_size)
        on = run_arm(llm, method, constrain=True, limit=limit, batch_size=batch_size)
        paired = compare(on["records"], off["records"], a=f"{method} constrained", b=f"{method} unconstrained")
        rows.append(
            {
                "method": method,
                "dataset": DATASETS.get(method, "gsm8k-sample"),
                "off": off,
                "on": on,
                "comparison": paired,
            }
        )
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """The figures, one line per method and arm, then each pair's comparison and the mask's cost."""
    lines = [
        f"{'method':<14} {'arm':<5} {'n':>4} {'accuracy':>8} {'replies':>7} {'format':>6} {'cut':>4} "
        f"{'syntax':>6} {'ms/token':>9} {'ms/step':>8}"
    ]
    for row in rows:
        for arm in ("off", "on"):
            r = row[arm]
            c = r["counts"]
            lines.append(
                f"{row['method']:<14} {arm:<5} {len(r['records']):>4} {r['accuracy']:>8.1%} "
                + " ".join(f"{c[k]:>{max(len(k), 4)}}" for k in COLUMNS)
                + f" {_ms(r['per_token_ms']):>9} {_ms(r['per_step_ms']):>8}"
            )
    lines.append("")
    for row in rows:
        c, on, off = row["comparison"], row["on"], row["off"]
        lo, hi = c.ci95
        ratio = on["per_token_ms"] / off["per_token_ms"] if off["per_token_ms"] else float("nan")
        lines.append(
            f"{row['method']} on {row['dataset']}: constrained - unconstrained = {c.difference:+.1%} "
            f"[{lo:+.1%}, {hi:+.1%}], McNemar p = {c.p_value:.3g} (n = {c.n}, {c.only_a} only constrained "
            f"right, {c.only_b} only unconstrained right); time per generated token x{ratio:.3f}"
        )
    return "\n".join(lines)


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", nargs="+", default=DEFAULT_METHODS)
    ap.add_argument("--limit", type=int, default=None, help="the first N questions of each dataset (default: all)")
    ap.add_argument("--model", default=None, help="a model spec as for --model (default: the embedded model)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "auto", "bfloat16"])
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args(argv)

    from agentkit.errors import UsageError
    from agentkit.models import load_model
    from agentkit.strategies import get_method

    try:
        for method in args.methods:
            get_method(method)  # an unknown name fails before the model loads
    except UsageError as exc:
        ap.error(str(exc))
    llm = load_model(args.model, dtype=args.dtype)
    if hasattr(llm, "wait_until_ready"):
        llm.wait_until_ready()
    print(
        f"model {llm.name}  dtype={getattr(llm, 'dtype', args.dtype)}  batch {args.batch_size}  "
        f"limit {args.limit or 'all'}  greedy"
    )
    print(table(measure(llm, args.methods, limit=args.limit, batch_size=args.batch_size)))


if __name__ == "__main__":
    main()
