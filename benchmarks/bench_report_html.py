"""How results.html holds up on a full GSM8K-size run: page size, build time, and time to use it in Chromium.

    python benchmarks/bench_report_html.py [--questions 1319] [--k 5] [--chromium /usr/bin/chromium]

Builds synthetic records shaped like a real run's (direct, cot, pal, pal-sc with k samples: completions,
programs, sandbox results, votes), renders the page, then opens it in headless Chromium (Playwright, the system
browser) and prints: page size, Python render time, load-to-first-list time, and the time one filter and one
search take to update the list. The rows in the DOM are counted too, to show the list stays virtual.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from agentkit.eval.compare import pairwise
from agentkit.eval.report import summarize, summary_rows
from agentkit.eval.report_html import page_data, render_html

RATIONALE = (
    "She buys {a} packs of {b} pens, so she has {a} * {b} = {c} pens. She gives away {d}, "
    "which leaves {c} - {d} = {e} pens. Then she splits them between 2 friends. "
) * 2
PROGRAM = (
    "def solution():\n    packs = {a}\n    pens_per_pack = {b}\n    given = {d}\n"
    "    total = packs * pens_per_pack\n    left = total - given\n    result = left\n    return result\n"
)


def records(n: int, k: int) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {m: [] for m in ("direct", "cot", "pal", "pal-sc")}
    for i in range(n):
        a, b, d = 3 + i % 7, 4 + i % 5, i % 9
        c, e = a * b, a * b - d
        base = {
            "id": f"line-{i + 1}",
            "index": i,
            "question": f"Question {i}: Ann buys {a} packs of {b} pens "
            "and gives away some. How many pens does she have left? " * 2,
            "gold": str(e),
            "prompt_tokens": 700,
            "completion_tokens": 120,
            "timing": {"duration": 2.0},
        }
        program = PROGRAM.format(a=a, b=b, d=d)
        execution = {"ok": True, "value": e, "stdout": ""}
        sample = {"answer": str(e), "completions": [program], "program": program, "execution": execution}
        right = i % 3 != 0
        out["direct"].append({**base, "answer": str(e + (not right)), "correct": right, "completions": [f" {e}"]})
        out["cot"].append(
            {**base, "answer": str(e), "correct": True, "completions": [RATIONALE.format(a=a, b=b, c=c, d=d, e=e)]}
        )
        out["pal"].append(
            {
                **base,
                "answer": str(e),
                "correct": True,
                "completions": [program],
                "program": program,
                "execution": execution,
            }
        )
        out["pal-sc"].append(
            {
                **base,
                "answer": str(e),
                "correct": True,
                "votes": {str(e): k},
                "completions": [program] * k,
                "samples": [sample] * k,
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=1319)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    args = parser.parse_args()
    methods = records(args.questions, args.k)

    started = time.perf_counter()
    comparisons = pairwise(methods)
    page = render_html(
        config={"dataset": "gsm8k", "model": "synthetic", "shots": 4},
        data=page_data(methods, comparisons),
        table=summary_rows([summarize(m, r) for m, r in methods.items()], by_kind=True),
        comparisons=comparisons,
    )
    render_s = time.perf_counter() - started
    print(f"{args.questions} questions x {len(methods)} methods (pal-sc k={args.k})")
    print(f"page size: {len(page.encode()) / 1e6:.1f} MB; Python render: {render_s:.2f} s")
    if not args.chromium:
        print("no Chromium found: skipping the browser figures")
        return

    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        path = Path(tmp) / "results.html"
        path.write_text(page, encoding="utf-8")
        browser = p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
        tab = browser.new_page(viewport={"width": 1400, "height": 1000})
        started = time.perf_counter()
        tab.goto(path.as_uri())
        tab.wait_for_selector(".row")
        load_s = time.perf_counter() - started
        rows = tab.locator(".row").count()

        def timed(script: str) -> float:
            """Milliseconds the page takes to apply a change (measured inside the page)."""
            return tab.evaluate(f"() => {{ const t0 = performance.now(); {script}; return performance.now() - t0; }}")

        n = args.questions
        filter_ms = timed(
            "const s = document.getElementById('outcome'); s.selectedIndex = 2; s.dispatchEvent(new Event('change'))"
        )
        filtered = tab.text_content("#count")
        search_ms = timed(
            "const s = document.getElementById('search'); s.value = 'Question 1317:'; "
            "s.dispatchEvent(new Event('input'))"
        )
        searched = tab.text_content("#count")
        browser.close()
    print(
        f"Chromium: load to first rows {load_s:.2f} s ({rows} rows in the DOM for {n} questions); "
        f"filter 'wrong answer' {filter_ms:.0f} ms ({filtered}); search {search_ms:.0f} ms ({searched})"
    )


if __name__ == "__main__":
    main()
