"""Shared fixtures: a small benchmark run with every kind of trajectory and hostile text, for the report tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

# Our own questions (gold in the second field). Line 2 repeats line 1, as ASDiv does; some carry markup that a
# report must show as text.
REPORT_QUESTIONS = [
    ("A baker makes 12 loaves an hour for 5 hours. How many loaves does she make?", "60"),
    ("A baker makes 12 loaves an hour for 5 hours. How many loaves does she make?", "60"),
    ("<script>window.__xss = 'question'</script> Tom has 3 pens and buys 2 more. How many pens?", "5"),
    (
        "A tank holds 1,450,000 litres and leaks none. How many litres are in it?\u2028(</script><b>bold?</b>)",
        "1450000",
    ),
    ("Mia owes $45 and pays nothing back. What is her balance in dollars?", "-45"),
    ("A rope of 7.5 m is cut in half. How long is each piece in metres?", "3.75"),
    ("Sam reads 20 pages a day for 7 days. How many pages does he read?", "140"),
    ("There are 9 birds and 4 fly away. How many are left?", "5"),
]


def _question_of(prompt: str) -> str:
    return prompt.rsplit("Question:", 1)[1].split("\n", 1)[0].strip()


def report_reply(prompt: str) -> str:
    """A scripted model with right answers, wrong ones, failures of each kind, and markup in its output."""
    question = _question_of(prompt)
    i = next(k for k, (q, _) in enumerate(REPORT_QUESTIONS) if question.startswith(q[:40]))
    gold = REPORT_QUESTIONS[i][1]
    if "def solution()" in prompt:  # PAL (and PAL-SC's samples)
        if i == 4:
            return "def solution():\n    owed = 45\n    return owed / 0\n```"
        if i == 2:
            return f"def solution():\n    print('<script>window.__xss = \"stdout\"</script>')\n    return {gold}\n```"
        wrong = i in (5, 6)
        return f"def solution():\n    result = {gold}{' + 1' if wrong else ''}\n    return result\n```"
    if "Thought 1" in prompt or "Action 1" in prompt:  # ReAct
        episode = prompt.rsplit("Question:", 1)[1]
        if i == 7:
            return " I will just look.\nAction: Search[Nothing Such Exists]"
        if "Observation 1" not in episode:
            return " <script>window.__xss = 'thought'</script> Let me look.\nAction 1: Search[Paris]"
        return f" Found it.\nAction 2: Finish[{gold}]"
    if "step by step" in prompt:  # chain-of-thought
        if i == 3:
            return " The tank leaks none, so it keeps its water. The answer is 1,450,001."
        if i == 6:
            return " I am not sure about this one."
        return f" Working it out step by step gives {gold}. The answer is {gold}."
    return f" {gold if i % 3 else float(gold) + 1}"  # direct: wrong on every third question


def build_report_run(out: Path, methods=("direct", "cot", "pal", "pal-sc", "react")) -> Path:
    """Run ``methods`` with the scripted model over REPORT_QUESTIONS into ``out`` and return ``out``."""
    from agentkit.eval import run_benchmark
    from agentkit.llm import ScriptedLLM

    data = out.parent / f"{out.name}-questions.jsonl"
    data.write_text(
        "".join(json.dumps({"question": q, "answer": f"#### {a}"}) + "\n" for q, a in REPORT_QUESTIONS),
        encoding="utf-8",
    )
    run_benchmark(
        data,
        list(methods),
        ScriptedLLM(report_reply),
        output_dir=out,
        method_options={"k": 3},
        generation={"max_new_tokens": 96},
    )
    return out


@pytest.fixture(scope="session")
def report_run(tmp_path_factory) -> Path:
    """A finished run directory with direct, cot, pal, pal-sc and react over REPORT_QUESTIONS."""
    return build_report_run(tmp_path_factory.mktemp("report") / "run")
