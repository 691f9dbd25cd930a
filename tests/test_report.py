"""The run's report files: results.md with paired comparisons, and a self-contained, escaped results.html that
`agentkit report` rebuilds from the samples alone."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from click.testing import CliRunner

from agentkit.cli import main
from agentkit.errors import UsageError
from agentkit.eval.report import read_run, summarize, summary_rows, write_reports
from agentkit.eval.report_html import json_for_script, page_data

REPORT_FILES = ("results.md", "results.png", "results.html")


def data_block(page: str) -> str:
    match = re.search(r"<script type=application/json id=data>(.*?)</script>", page, re.DOTALL)
    assert match, "no data block"
    return match.group(1)


def test_every_run_writes_the_html_report_beside_results_md(report_run):
    for name in (*REPORT_FILES, "results.json"):
        assert (report_run / name).is_file(), name
    md = (report_run / "results.md").read_text()
    assert "## Paired comparisons" in md and "| cot | pal | 8 | 4 | 2 | 1 | 1 | +12.5 |" in md
    assert "(1 repeat an earlier question; each is scored on its own)" in md
    assert "[results.html](results.html)" in md
    results = json.loads((report_run / "results.json").read_text())
    assert len(results["comparisons"]) == 10  # every pair of 5 methods
    assert results["repeats"] == {"questions": 1, "other_gold": 0, "ids": 0}


def test_the_page_is_self_contained_and_offline(report_run):
    page = (report_run / "results.html").read_text()
    assert "<img class=chart" in page and "data:image/png;base64," in page
    assert not re.search(r'(src|href)\s*=\s*["\']?(https?:|//)', page), "an external asset"
    assert "default-src 'none'" in page  # the CSP forbids any network access


def test_untrusted_text_cannot_escape_the_data_block(report_run):
    page = (report_run / "results.html").read_text()
    block = data_block(page)
    for raw in ("<", ">", "&", "\u2028", "\u2029"):
        assert raw not in block
    data = json.loads(block)  # the escapes are plain JSON escapes: the data comes back exactly
    questions = {q["id"]: q for q in data["questions"]}
    assert questions["line-3"]["question"].startswith("<script>window.__xss = 'question'</script>")
    assert "\u2028(</script><b>bold?</b>)" in questions["line-4"]["question"]
    assert "window.__xss" not in page.replace(block, "")  # the static part has no raw question text either
    assert questions["line-2"]["repeat_of"] == "line-1"


def test_truncations_are_counted_apart_from_the_other_failures():
    records = [
        {"id": f"q{i}", "question": "q", "correct": False, "failure": f}
        for i, f in enumerate(["length", "length", "sandbox_error", None])
    ]
    summary = summarize("pal", records)
    assert summary["truncated"] == 2 and summary["failures"] == {"length": 2, "sandbox_error": 1}
    head, rows = summary_rows([summary])
    row = dict(zip(head, rows[0], strict=True))
    assert (row["truncated"], row["other failures"], row["top failure"]) == ("50.0%", "25.0%", "sandbox_error")
    _, by_kind = summary_rows([summary], by_kind=True)
    assert "truncated 2, sandbox_error 1" in by_kind[0]
    data = page_data({"pal": records})
    assert data["failures"] == ["length", "sandbox_error"] and data["failure_labels"]["length"] == "truncated"


def test_json_for_script_round_trips():
    value = {"a": "</script><!-- & \u2028 \u2029 >"}
    text = json_for_script(value)
    assert json.loads(text) == value and "</" not in text and "\u2028" not in text


def test_page_data_keeps_trajectories_and_drops_prompts(report_run):
    run = read_run(report_run)
    data = page_data(run.methods)
    q = next(q for q in data["questions"] if q["id"] == "line-3")
    react = q["results"]["react"]["trajectory"]["steps"]
    assert react[0]["action"] == "Search" and react[0]["thought"].startswith("<script>")
    assert react[0]["observation"] and react[-1]["action"] == "Finish"
    pal = q["results"]["pal"]
    assert pal["program"].startswith("def solution():") and "<script>" in pal["execution"]["stdout"]
    assert pal["execution"]["ok"] is True and pal["execution"]["value"] == 5
    assert len(q["results"]["pal-sc"]["samples"]) == 3 and q["results"]["pal-sc"]["votes"] == {"5": 3}
    assert "Working it out" in q["results"]["cot"]["completions"][0]
    assert data["failures"] == ["forced_finish", "no_answer", "sandbox_error"]
    assert "prompt" not in json.dumps(data)


def test_report_rebuilds_the_same_files_from_the_samples_alone(report_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(report_run, copy)
    before = {name: (copy / name).read_bytes() for name in REPORT_FILES}
    for name in REPORT_FILES:
        (copy / name).unlink()
    result = CliRunner().invoke(main, ["report", str(copy)])
    assert result.exit_code == 0, result.output
    assert "8 examples × 5 methods (direct, cot, pal, pal-sc, react)" in result.output
    for name in REPORT_FILES:
        assert (copy / name).read_bytes() == before[name], name


def test_report_without_results_json_uses_every_method(report_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(report_run, copy)
    (copy / "results.json").unlink()
    shutil.rmtree(copy / "pal-sc")
    run = read_run(copy)
    assert list(run.methods) == ["cot", "direct", "pal", "react"]
    files = write_reports(copy, run.report_config, run.methods)
    assert "react" in files["results_html"].read_text()


def test_report_errors_are_one_line(tmp_path):
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 1 and "no <method>/samples.jsonl here" in result.output
    (tmp_path / "cot").mkdir()
    (tmp_path / "cot" / "samples.jsonl").write_text('{"id": "a", "index": 0}\nnot json\n{"id": "b", "index": 1}\n')
    with pytest.raises(UsageError, match=r"cot/samples\.jsonl:2: unreadable record"):
        read_run(tmp_path)
