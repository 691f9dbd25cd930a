"""The benchmark runner with scripted models: scores, resume after kills, reports, determinism."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from agentkit.errors import ConfigError
from agentkit.eval import BenchmarkError, run_benchmark
from agentkit.eval.datasets import load_dataset, shipped_path
from agentkit.eval.runner import TIMING, SampleStore
from agentkit.llm import ScriptedLLM
from agentkit.result import Result

GOLD = {e.question: e.answer for e in load_dataset("gsm8k-sample")}


def question_of(prompt: str) -> str:
    """The question a strategy's prompt ends with (the templates put it after the last 'Question:')."""
    return prompt.rsplit("Question:", 1)[1].split("\n", 1)[0].strip()


def cot_reply(answer_of=lambda gold: gold):
    def reply(prompt: str) -> str:
        return f"Let me work it out step by step. The answer is {answer_of(GOLD[question_of(prompt)])}."

    return reply


def pal_reply(prompt: str) -> str:
    return f"def solution():\n    result = {GOLD[question_of(prompt)]}\n    return result\n```"


def any_reply(prompt: str) -> str:
    """Right for whichever method asked: a program for PAL, a sentence for the others."""
    if "def solution()" in prompt:
        return pal_reply(prompt)
    gold = GOLD[question_of(prompt)]
    return f"The answer is {gold}." if "step by step" in prompt else f" {gold}"


class Killer:
    """A scripted model that raises ``exc`` when prompt number ``after + 1`` arrives."""

    def __init__(self, reply, after: int, exc: BaseException):
        self.reply, self.after, self.exc, self.calls = reply, after, exc, 0

    def __call__(self, prompt: str) -> str:
        self.calls += 1
        if self.calls > self.after:
            raise self.exc
        return self.reply(prompt)


def strip_timing(records):
    return [{k: v for k, v in r.items() if k != TIMING} for r in records]


def samples(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# --- scores -------------------------------------------------------------------------------------------------------


def test_gold_model_scores_100_percent_through_cot(tmp_path):
    result = run_benchmark("gsm8k-sample", "cot", ScriptedLLM(cot_reply()), output_dir=tmp_path / "run")
    assert result.accuracy == 1.0
    assert len(result.records) == 44
    assert all(r["correct"] and r["failure"] is None for r in result.records)
    assert result.methods["cot"].ci95[1] == 1.0


def test_gold_model_scores_100_percent_through_pal(tmp_path):
    result = run_benchmark("gsm8k-sample", "pal", ScriptedLLM(pal_reply), output_dir=tmp_path / "run")
    assert result.accuracy == 1.0, [(r["gold"], r["answer"], r["error"]) for r in result.records if not r["correct"]]
    record = result.records[0]
    assert record["program"].startswith("def solution():") and record["execution"] is not None


def test_off_by_one_program_scores_zero_through_pal(tmp_path):
    def reply(prompt):
        return f"def solution():\n    return {GOLD[question_of(prompt)]} + 1\n"

    result = run_benchmark("gsm8k-sample", "pal", ScriptedLLM(reply), limit=10)
    assert result.accuracy == 0.0


def test_off_by_one_model_scores_zero(tmp_path):
    llm = ScriptedLLM(cot_reply(lambda gold: float(gold) + 1))
    result = run_benchmark("gsm8k-sample", "cot", llm, output_dir=tmp_path / "run")
    assert result.accuracy == 0.0
    assert result.methods["cot"].summary["correct"] == 0
    assert all(r["answer"] is not None and not r["correct"] for r in result.records)


def dollars(gold: str) -> str:
    """``1234`` -> ``$1,234.00``, ``-1550`` -> ``-$1,550.00``, ``0.375`` -> ``$0.375``."""
    value = float(gold)
    digits = f"{abs(value):,.2f}" if round(value, 2) == value else f"{abs(value):,}"
    return ("-" if value < 0 else "") + "$" + digits


@pytest.mark.parametrize(
    "variant",
    [
        dollars,  # $1,234.00
        lambda g: f"{g}.",  # 1234.
        lambda g: f"{g} dollars",  # The answer is 1234 dollars
        lambda g: f"{float(g):.4f}",  # 18.0000
    ],
    ids=["currency", "trailing-period", "unit-word", "trailing-zeros"],
)
def test_formatting_variants_of_gold_count_through_cot(tmp_path, variant):
    result = run_benchmark("gsm8k-sample", "cot", ScriptedLLM(cot_reply(variant)))
    assert result.accuracy == 1.0, [(r["gold"], r["completions"]) for r in result.records if not r["correct"]]


def raw_answer_strategy(answer_of):
    """A strategy factory whose episodes return ``answer_of(question)`` verbatim as ``Result.answer``."""

    class Raw:
        def __init__(self, name):
            self.name = name

        def episode(self, question):
            yield from ()
            return Result(method=self.name, question=question, answer=answer_of(question))

    return lambda name, llm, **kw: Raw(name)


@pytest.mark.parametrize(
    "form",
    [
        dollars,
        lambda g: f"{g}.",
        lambda g: f"The answer is {g} dollars",
        lambda g: f"{float(g):.4f}",
        lambda g: f"{float(g):,}",
    ],
    ids=["currency", "trailing-period", "sentence-with-unit", "zeros", "thousands"],
)
def test_raw_answer_variants_are_scored_as_numbers(form):
    """The runner scores whatever Result.answer holds, however the strategy spelled it."""
    factory = raw_answer_strategy(lambda q: form(GOLD[q]))
    result = run_benchmark("gsm8k-sample", "direct", ScriptedLLM([]), strategy_factory=factory)
    assert [(r["gold"], r["answer"]) for r in result.records if not r["correct"]] == []


def test_rounded_answers_do_not_count():
    factory = raw_answer_strategy(lambda q: f"{float(GOLD[q]):.0f}")
    result = run_benchmark("gsm8k-sample", "direct", ScriptedLLM([]), strategy_factory=factory)
    wrong = {r["gold"] for r in result.records if not r["correct"]}
    assert wrong == {g for g in GOLD.values() if "." in g}  # 12.6 -> "13", 0.375 -> "0" are wrong


def test_failures_are_recorded_with_their_reason(tmp_path):
    llm = ScriptedLLM(lambda prompt: "I am not sure about this one")
    result = run_benchmark("gsm8k-sample", "cot", llm, limit=5, output_dir=tmp_path / "run")
    assert result.accuracy == 0.0
    assert {r["failure"] for r in result.records} == {"no_answer"}
    summary = json.loads((tmp_path / "run" / "results.json").read_text())["methods"]["cot"]
    assert summary["failures"] == {"no_answer": 5} and summary["failure_rate"] == 1.0


# --- resume -------------------------------------------------------------------------------------------------------


@pytest.fixture
def reference(tmp_path_factory):
    """An uninterrupted run of cot over the sample, to compare interrupted ones with."""
    out = tmp_path_factory.mktemp("reference")
    run_benchmark("gsm8k-sample", "cot", ScriptedLLM(cot_reply()), output_dir=out, batch_size=4)
    return strip_timing(samples(out / "cot" / "samples.jsonl"))


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), SystemExit(1)], ids=["KeyboardInterrupt", "SystemExit"])
def test_kill_midway_then_resume_matches_uninterrupted_run(tmp_path, reference, exc):
    out = tmp_path / "run"
    killer = Killer(cot_reply(), after=10, exc=exc)
    with pytest.raises(type(exc)):
        run_benchmark("gsm8k-sample", "cot", ScriptedLLM(killer), output_dir=out, batch_size=4)
    partial = samples(out / "cot" / "samples.jsonl")
    assert 0 < len(partial) < 44
    assert len({r["id"] for r in partial}) == len(partial)

    second = ScriptedLLM(cot_reply())
    result = run_benchmark("gsm8k-sample", "cot", second, output_dir=out, batch_size=4)
    assert len(second.prompts) == 44 - len(partial)  # finished examples are not asked again
    final = samples(out / "cot" / "samples.jsonl")
    assert strip_timing(final) == reference
    assert len(final) == 44 and len({r["id"] for r in final}) == 44
    assert result.accuracy == 1.0


def test_kill_twice_still_matches(tmp_path, reference):
    out = tmp_path / "run"
    for after in (6, 9):
        with pytest.raises(KeyboardInterrupt):
            run_benchmark(
                "gsm8k-sample",
                "cot",
                ScriptedLLM(Killer(cot_reply(), after, KeyboardInterrupt())),
                output_dir=out,
                batch_size=3,
            )
    assert len(samples(out / "cot" / "samples.jsonl")) == 6 + 9
    run_benchmark("gsm8k-sample", "cot", ScriptedLLM(cot_reply()), output_dir=out, batch_size=3)
    assert strip_timing(samples(out / "cot" / "samples.jsonl")) == reference


@pytest.mark.parametrize("damage", ["half-line", "no-newline-but-valid"])
def test_truncated_last_line_is_dropped_and_redone(tmp_path, reference, damage):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(
            "gsm8k-sample",
            "cot",
            ScriptedLLM(Killer(cot_reply(), 20, KeyboardInterrupt())),
            output_dir=out,
            batch_size=4,
        )
    path = out / "cot" / "samples.jsonl"
    data = path.read_bytes()
    last_start = data.rstrip(b"\n").rfind(b"\n") + 1
    last = data[last_start:]
    if damage == "half-line":
        path.write_bytes(data[: last_start + len(last) // 2])  # a kill in the middle of a write
    else:
        path.write_bytes(data.rstrip(b"\n"))  # the record made it but its newline did not
    lost_id = json.loads(last)["id"]
    kept = 19 if damage == "half-line" else 20

    second = ScriptedLLM(cot_reply())
    run_benchmark("gsm8k-sample", "cot", second, output_dir=out, batch_size=4)
    assert len(second.prompts) == 44 - kept
    asked = {question_of(p) for p in second.prompts}
    lost_question = next(q for q, e in ((e.question, e) for e in load_dataset("gsm8k-sample")) if e.id == lost_id)
    assert (lost_question in asked) is (damage == "half-line")
    final = samples(path)
    assert strip_timing(final) == reference
    assert len({r["id"] for r in final}) == 44


def test_sample_store_drops_only_a_torn_last_line(tmp_path):
    store = SampleStore(tmp_path)
    for i in range(3):
        store.append({"id": f"x{i}", "v": i})
    store.close()
    path = tmp_path / "samples.jsonl"
    path.write_bytes(path.read_bytes() + b'{"id": "x3", "v"')
    assert list(SampleStore(tmp_path).load()) == ["x0", "x1", "x2"]
    assert path.read_bytes().endswith(b'"v": 2}\n')  # rewritten cleanly
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], "{broken", *lines[1:]]) + "\n")
    with pytest.raises(BenchmarkError, match=r"samples\.jsonl:2: unreadable record"):
        SampleStore(tmp_path).load()


def test_resume_skips_everything_when_complete(tmp_path):
    out = tmp_path / "run"
    run_benchmark("gsm8k-sample", "cot", ScriptedLLM(cot_reply()), output_dir=out, limit=8)
    again = ScriptedLLM([])  # any prompt would raise: nothing may be asked
    result = run_benchmark("gsm8k-sample", "cot", again, output_dir=out, limit=8)
    assert again.prompts == [] and result.accuracy == 1.0


def test_growing_the_limit_reuses_finished_examples(tmp_path):
    out = tmp_path / "run"
    run_benchmark("gsm8k-sample", "cot", ScriptedLLM(cot_reply()), output_dir=out, limit=5)
    more = ScriptedLLM(cot_reply())
    result = run_benchmark("gsm8k-sample", "cot", more, output_dir=out, limit=12)
    assert len(more.prompts) == 7 and len(result.records) == 12
    # A smaller limit reports on fewer examples but keeps the others on disk.
    result = run_benchmark("gsm8k-sample", "cot", ScriptedLLM([]), output_dir=out, limit=3)
    assert len(result.records) == 3
    assert len(samples(out / "cot" / "samples.jsonl")) == 12


def test_a_different_config_is_refused_in_one_line(tmp_path):
    out = tmp_path / "run"
    run_benchmark("gsm8k-sample", "cot", ScriptedLLM(cot_reply()), output_dir=out, limit=3)
    with pytest.raises(BenchmarkError) as info:
        run_benchmark("gsm8k-sample", "cot", ScriptedLLM(cot_reply()), output_dir=out, limit=3, shots=2)
    message = str(info.value)
    assert "different config" in message and "shots: 4 -> 2" in message
    assert "--output-dir" in message and "--overwrite" in message and "\n" not in message
    with pytest.raises(BenchmarkError, match="model"):
        run_benchmark("gsm8k-sample", "cot", ScriptedLLM(cot_reply(), name="other"), output_dir=out, limit=3)
    fresh = ScriptedLLM(cot_reply())
    run_benchmark("gsm8k-sample", "cot", fresh, output_dir=out, limit=3, shots=2, overwrite=True)
    assert len(fresh.prompts) == 3
    assert json.loads((out / "config.json").read_text())["shots"] == 2


class Weighted(ScriptedLLM):
    """A scripted model that says what an engine model says about itself: its dtype and where its weights are."""

    def __init__(self, reply, dtype: str, weights: Path):
        super().__init__(reply)
        self.dtype = dtype
        self.model = SimpleNamespace(config=SimpleNamespace(_name_or_path=str(weights)))


def test_the_dtype_and_the_weights_are_the_runs_identity(tmp_path):
    weights, out = tmp_path / "weights", tmp_path / "run"
    weights.mkdir()
    (weights / "model.safetensors").write_bytes(b"\0" * 4096)
    run_benchmark("gsm8k-sample", "cot", Weighted(cot_reply(), "float32", weights), output_dir=out, limit=2)
    config = json.loads((out / "config.json").read_text())
    assert config["dtype"] == "float32" and config["model_identity"]["weights"].startswith("sha256:")
    assert json.loads((out / "results.json").read_text())["config"]["dtype"] == "float32"
    with pytest.raises(BenchmarkError) as info:  # resumed in another dtype: refused, not mixed
        run_benchmark("gsm8k-sample", "cot", Weighted(cot_reply(), "bfloat16", weights), output_dir=out, limit=3)
    message = str(info.value)
    assert "dtype: 'float32' -> 'bfloat16'" in message and "--dtype float32" in message and "\n" not in message
    (weights / "model.safetensors").write_bytes(b"\1" * 4096)  # other weights under the same name
    with pytest.raises(BenchmarkError, match="model_identity") as info:
        run_benchmark("gsm8k-sample", "cot", Weighted(cot_reply(), "float32", weights), output_dir=out, limit=3)
    assert "--dtype" not in str(info.value) and "--overwrite" in str(info.value)
    assert len(samples(out / "cot" / "samples.jsonl")) == 2


def test_a_server_model_is_identified_by_its_served_model_and_its_urls_say_where_it_ran():
    from agentkit.eval.runner import LocalExecutor, model_identity

    server = SimpleNamespace(replicas=[SimpleNamespace(url="http://127.0.0.1:8000/v1")], model="gemma")
    assert model_identity(server) == {"dtype": None, "served_model": "gemma"}  # a restarted server may move
    assert LocalExecutor(server).describe()["server"] == ["http://127.0.0.1:8000/v1"]


def test_a_resume_on_another_served_model_is_refused_but_a_moved_server_resumes(tmp_path):
    def served(model: str, port: int) -> ScriptedLLM:
        llm = ScriptedLLM(cot_reply())
        llm.model, llm.replicas = model, [SimpleNamespace(url=f"http://127.0.0.1:{port}/v1")]
        return llm

    out = tmp_path / "run"
    run_benchmark("gsm8k-sample", "cot", served("gemma", 8000), output_dir=out, limit=2)
    with pytest.raises(BenchmarkError, match="served_model"):
        run_benchmark("gsm8k-sample", "cot", served("qwen", 8000), output_dir=out, limit=3)
    result = run_benchmark("gsm8k-sample", "cot", served("gemma", 8001), output_dir=out, limit=3)
    assert result.methods["cot"].summary["ran_now"] == 1
    assert json.loads((out / "config.json").read_text())["execution"]["server"] == ["http://127.0.0.1:8001/v1"]


def test_records_keep_the_finish_reasons_and_truncation_is_its_own_kind(tmp_path):
    words = " ".join(["def solution():\n    x = 1"] + ["+ 1"] * 80)  # a program the token limit cuts
    result = run_benchmark(
        "gsm8k-sample",
        ["cot", "pal"],
        ScriptedLLM(lambda p: words if "solution" in p else cot_reply()(p)),
        limit=2,
        output_dir=tmp_path / "run",
        generation={"max_new_tokens": 40},
    )
    by_method = {m: r.records for m, r in result.methods.items()}
    assert [r["finish_reasons"] for r in by_method["cot"]] == [["stop"], ["stop"]]
    assert [(r["failure"], r["finish_reasons"]) for r in by_method["pal"]] == [("length", ["length"])] * 2
    summary = result.methods["pal"].summary
    assert summary["truncated"] == 2 and summary["failures"] == {"length": 2}


def test_overwrite_refuses_a_foreign_directory(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(BenchmarkError, match="refusing"):
        run_benchmark("gsm8k-sample", "cot", ScriptedLLM(cot_reply()), output_dir=tmp_path, overwrite=True)
    assert (tmp_path / "precious.txt").exists()


# --- reports and determinism --------------------------------------------------------------------------------------


def test_several_methods_make_a_comparison_with_reports(tmp_path):
    methods = ["direct", "cot", "pal"]
    out = tmp_path / "run"
    result = run_benchmark("gsm8k-sample", methods, ScriptedLLM(any_reply), output_dir=out, limit=12)
    assert set(result.accuracies) == set(methods)
    with pytest.raises(ValueError, match="accuracies"):
        _ = result.accuracy
    report = json.loads((out / "results.json").read_text())
    assert set(report["methods"]) == set(methods)
    for name in methods:
        summary = report["methods"][name]
        assert summary["n"] == 12 and summary["accuracy"] == 1.0
        lo, hi = summary["ci95"]
        assert 0.7 < lo < 1.0 and hi == 1.0
        assert summary["completion_tokens"] > 0 and "seconds" in summary
        assert (out / name / "samples.jsonl").exists()
    assert report["model"] == "scripted" and report["config"]["shots"] == 4
    assert "agentkit" in report["versions"] and "git_commit" in report
    table = (out / "results.md").read_text()
    assert all(f"| {name} | 12 | 100.0% |" in table for name in methods)
    png = (out / "results.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 2000
    assert result.files["chart"] == out / "results.png"


def test_text_dataset_reports_em_f1_rouge_bleu(tmp_path):
    golds = {e.question: e.answer for e in load_dataset("wiki-sample")}
    factory = raw_answer_strategy(lambda q: golds[q] if len(q) % 2 else "something else")
    result = run_benchmark("wiki-sample", "react", ScriptedLLM([]), output_dir=tmp_path, strategy_factory=factory)
    summary = result.methods["react"].summary
    expected = sum(len(q) % 2 for q in golds) / len(golds)
    assert summary["accuracy"] == pytest.approx(expected) and summary["exact_match"] == pytest.approx(expected)
    assert 0 < summary["f1"] < 1 and 0 < summary["rougeL"] < 1 and 0 < summary["bleu"] < 100
    assert "| F1 | ROUGE-L |" in (tmp_path / "results.md").read_text()


def test_greedy_runs_are_deterministic(tmp_path):
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        run_benchmark("gsm8k-sample", ["direct", "cot"], ScriptedLLM(any_reply), output_dir=out, batch_size=5)
        runs.append(out)
    for method in ("direct", "cot"):
        a, b = (samples(out / method / "samples.jsonl") for out in runs)
        assert strip_timing(a) == strip_timing(b)
        assert all(set(r[TIMING]) == {"duration"} for r in a)  # wall-clock kept apart

    def table_without_latency(out):
        rows = [line for line in (out / "results.md").read_text().splitlines() if line.startswith("|")]
        return [line.rsplit("|", 2)[0] for line in rows]

    assert table_without_latency(runs[0]) == table_without_latency(runs[1])
    assert len(table_without_latency(runs[0])) == 4 + 3  # header, rule, two methods; the pair's header, rule, row


def test_no_output_dir_touches_no_disk(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    seen = []
    result = run_benchmark("gsm8k-sample", "cot", ScriptedLLM(cot_reply()), limit=4, on_record=seen.append)
    assert result.accuracy == 1.0 and result.output_dir is None and result.files == {}
    assert [r["id"] for r in seen] == [r["id"] for r in result.records]
    assert list(tmp_path.iterdir()) == []


def test_examples_are_batched_not_one_at_a_time():
    sizes = []

    class Recording(ScriptedLLM):
        def generate(self, prompts, config=None):
            sizes.append(len(prompts))
            return super().generate(prompts, config)

    run_benchmark("gsm8k-sample", "cot", Recording(cot_reply()), limit=20, batch_size=8)
    assert max(sizes) == 8 and sum(sizes) == 20


def test_bad_arguments(tmp_path):
    with pytest.raises(BenchmarkError, match="needs an llm"):
        run_benchmark("gsm8k-sample", "cot", None)
    with pytest.raises(ConfigError, match="limit"):
        run_benchmark("gsm8k-sample", "cot", ScriptedLLM([]), limit=-1)
    with pytest.raises(ValueError, match="unknown method"):
        run_benchmark("gsm8k-sample", "chain", ScriptedLLM([]))


def test_config_with_objects_and_field_spellings_still_resumes(tmp_path):
    """Options holding objects (tools, sandboxes) must not make every rerun look like a new config."""

    def my_tool(x):  # repr has a memory address that differs between processes
        return x

    out = tmp_path / "run"
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({"q": e.question, "a": e.answer}) + "\n" for e in load_dataset("gsm8k-sample")))
    options = {"tools": [my_tool]}

    def factory(name, llm, **kw):
        assert kw["tools"] == [my_tool]
        return raw_answer_strategy(lambda q: GOLD[q])(name, llm)

    run_benchmark(
        path,
        "cot",
        ScriptedLLM([]),
        output_dir=out,
        limit=3,
        fields=["question=q", "answer=a"],
        method_options=options,
        strategy_factory=factory,
    )
    config = json.loads((out / "config.json").read_text())
    assert config["fields"] == {"question": "q", "answer": "a"} and "0x" not in json.dumps(config)
    result = run_benchmark(
        path,
        "cot",
        ScriptedLLM([]),
        output_dir=out,
        limit=3,
        fields={"answer": "a", "question": "q"},
        method_options=options,
        strategy_factory=factory,
    )
    assert result.accuracy == 1.0


def test_react_on_the_wiki_sample_records_trajectories(tmp_path):
    """A scripted ReAct model that searches the offline corpus, then finishes with the gold answer."""
    golds = {e.question: e.answer for e in load_dataset("wiki-sample")}
    rows = [json.loads(line) for line in shipped_path("wiki-sample").read_text().splitlines()]
    titles = {row["question"]: row["supporting_titles"][0] for row in rows}

    def reply(prompt: str) -> str:
        episode = prompt.rsplit("\nQuestion:", 1)[1]
        question = episode.split("\n", 1)[0].strip()
        if "Observation 1:" not in episode:
            return f" I should look up {titles[question]}.\nAction 1: Search[{titles[question]}]"
        return f" The page says it.\nAction 2: Finish[{golds[question]}]"

    out = tmp_path / "run"
    result = run_benchmark("wiki-sample", "react", ScriptedLLM(reply), output_dir=out, limit=6)
    assert result.accuracy == 1.0
    record = result.records[0]
    steps = record["trajectory"]["steps"]
    assert [s["action"] for s in steps] == ["Search", "Finish"]
    assert "Leonardo da Vinci" in steps[0]["observation"]
    assert "tool_seconds" not in steps[0] and "trajectory.steps.0.tool_seconds" in record[TIMING]
    assert result.methods["react"].summary["f1"] == 1.0


def test_text_datasets_get_text_answers_from_direct_cot_and_the_react_fallback(tmp_path):
    """On the wiki sample, direct and CoT answer in words with the wiki exemplars, and react-cot-sc's fallback
    votes on text answers when ReAct never finishes."""
    golds = {e.question: e.answer for e in load_dataset("wiki-sample")}

    def reply(prompt: str) -> str:
        question = prompt.rsplit("\nQuestion:", 1)[1].split("\n", 1)[0].strip()
        if "Thought 1:" in prompt:  # ReAct: search forever, so the step limit forces the fallback
            return " I keep looking.\nAction: Search[Nothing Such Exists]"
        if "Reason step by step" in prompt:
            assert "Indian Ocean" in prompt  # the wiki exemplars, not the math ones
            return f" I recall it. The answer is {golds[question]}."
        return f" {golds[question]}"

    methods = ["direct", "cot", "react-cot-sc"]
    result = run_benchmark(
        "wiki-sample", methods, ScriptedLLM(reply), output_dir=tmp_path, limit=4, method_options={"k": 3}
    )
    assert result.config["method_options"]["answer"] == "text"
    for name in methods:
        assert result.methods[name].summary["accuracy"] == 1.0, name
    fallback = result.methods["react-cot-sc"].records[0]["trajectory"]["fallback"]
    assert fallback["method"] == "cot-sc" and fallback["answer"] == golds[load_dataset("wiki-sample")[0].question]


def test_repeated_questions_run_and_resume_with_every_line_recorded_once(tmp_path):
    """A PAL-format file that repeats questions on consecutive lines (as ASDiv does): every line is an example."""
    sample = load_dataset("gsm8k-sample", limit=12)
    rows = []
    for e in sample:
        rows += [{"input": e.question, "target": float(e.answer)}] * (2 if len(rows) % 3 == 0 else 1)
    path = tmp_path / "repeats.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    n = len(rows)
    assert n > len(sample)

    reference = run_benchmark(path, "cot", ScriptedLLM(cot_reply()), output_dir=tmp_path / "ref", batch_size=3)
    assert reference.accuracy == 1.0 and len(reference.records) == n
    assert [r["id"] for r in reference.records] == [f"line-{i}" for i in range(1, n + 1)]
    report = json.loads((tmp_path / "ref" / "results.json").read_text())
    assert report["repeats"] == {"questions": n - len(sample), "other_gold": 0, "ids": 0}

    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(
            path, "cot", ScriptedLLM(Killer(cot_reply(), 7, KeyboardInterrupt())), output_dir=out, batch_size=3
        )
    done = len(samples(out / "cot" / "samples.jsonl"))
    assert 0 < done < n
    second = ScriptedLLM(cot_reply())
    run_benchmark(path, "cot", second, output_dir=out, batch_size=3)
    assert len(second.prompts) == n - done  # repeats already answered are not asked again, the others are
    final = samples(out / "cot" / "samples.jsonl")
    assert strip_timing(final) == strip_timing(samples(tmp_path / "ref" / "cot" / "samples.jsonl"))
    assert len({r["id"] for r in final}) == n


def test_prepare_finds_every_bad_setting_before_a_model_exists(tmp_path):
    from agentkit.errors import UsageError
    from agentkit.eval import prepare

    with pytest.raises(UsageError, match="exemplar set 'math' has 8 exemplars but 50 shots"):
        prepare("gsm8k-sample", "cot", shots=50)
    with pytest.raises(UsageError, match="interactive only"):
        prepare("gsm8k-sample", "chat")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(BenchmarkError, match="not empty and holds no config.json"):
        prepare("gsm8k-sample", "cot", output_dir=tmp_path / "busy", overwrite=True)
    out = tmp_path / "run"
    run_benchmark("gsm8k-sample", "cot", ScriptedLLM(cot_reply()), limit=2, output_dir=out)
    with pytest.raises(BenchmarkError, match=r"different config \(shots: 4 -> 2\)"):
        prepare("gsm8k-sample", "cot", shots=2, output_dir=out)
    assert (tmp_path / "busy" / "notes.txt").exists() and sorted(p.name for p in out.iterdir()) == sorted(
        ["config.json", "cot", "results.json", "results.md", "results.png", "results.html"]
    )


def test_a_prepared_benchmark_runs_as_prepared():
    from agentkit.errors import UsageError
    from agentkit.eval import prepare

    prepared = prepare("gsm8k-sample", "cot", limit=3)
    assert prepared.options["answer"] == "number" and len(prepared.examples) == 3 and prepared.size == 44
    result = run_benchmark(prepared, llm=ScriptedLLM(cot_reply()))
    assert result.accuracy == 1.0 and [r["id"] for r in result.records] == [e.id for e in prepared.examples]
    with pytest.raises(UsageError, match="pass them to prepare"):
        run_benchmark(prepared, llm=ScriptedLLM(cot_reply()), shots=2)
