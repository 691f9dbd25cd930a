"""``agentkit bench``: options, one-line errors, and a real process killed midway then resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from agentkit.cli import main
from agentkit.cli.bench import bench, default_output_dir
from agentkit.eval.datasets import load_dataset
from agentkit.eval.runner import TIMING

EXAMPLES = load_dataset("gsm8k-sample")


def gold_script(tmp_path: Path, name="gold.json", delta=0) -> Path:
    """A scripted-model file answering every sample question (CoT style) with its gold (+ delta)."""
    table = {e.question: f"Step by step. The answer is {float(e.answer) + delta:g}." for e in EXAMPLES}
    path = tmp_path / name
    path.write_text(json.dumps(table))
    return path


def invoke(*args: str, catch_exceptions=False):
    return CliRunner().invoke(main, ["bench", *args], catch_exceptions=catch_exceptions, prog_name="agentkit")


def bench_gold(tmp_path: Path, *args: str, catch_exceptions=False):
    """``agentkit bench -d gsm8k-sample ARGS`` on a scripted model that gives the gold answers."""
    script = f"scripted:{gold_script(tmp_path)}"
    return invoke("-d", "gsm8k-sample", "--model", script, *args, catch_exceptions=catch_exceptions)


def bench_cot(tmp_path: Path, out: Path, *extra: str):
    """``agentkit bench`` of CoT on the first two sample questions (gold answers scripted) into ``out``."""
    return bench_gold(tmp_path, "-m", "cot", "-n", "2", "-o", str(out), "-q", *extra)


def strip(lines):
    return [{k: v for k, v in json.loads(line).items() if k != TIMING} for line in lines]


def test_help_explains_every_option():
    result = invoke("--help")
    assert result.exit_code == 0
    for option in (
        "--dataset",
        "--method",
        "--shots",
        "--model",
        "--limit",
        "--batch-size",
        "--output-dir",
        "--max-tokens",
        "--temperature",
        "--seed",
        "--dtype",
        "--field",
        "--overwrite",
    ):
        assert option in result.output
    assert "gsm8k-sample" in result.output and "resume" in result.output.lower()


def test_method_names_match_the_strategies():
    from agentkit.strategies import METHODS

    (method,) = [p for p in bench.params if p.name == "methods"]
    assert set(method.type.choices) == set(METHODS)


def test_bench_runs_and_prints_table_and_chart(tmp_path):
    out = tmp_path / "out"
    result = invoke(
        "--dataset",
        "gsm8k-sample",
        "--method",
        "cot",
        "--model",
        f"scripted:{gold_script(tmp_path)}",
        "--limit",
        "10",
        "--output-dir",
        str(out),
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    assert "| cot | 10 | 100.0% |" in result.output
    assert f"chart:   {out / 'results.png'}" in result.output
    assert (out / "results.png").exists() and (out / "cot" / "samples.jsonl").exists()


def test_generation_options_reach_the_run_config(tmp_path):
    out = tmp_path / "out"
    result = bench_cot(
        tmp_path,
        out,
        "--max-tokens",
        "64",
        "--seed",
        "3",
        "--temperature",
        "0",
        "--shots",
        "2",
    )
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["generation"] == {"max_new_tokens": 64, "do_sample": False, "seed": 3}
    assert config["shots"] == 2


def test_errors_are_one_readable_line(tmp_path):
    bad = tmp_path / "data.jsonl"
    bad.write_text('{"question": "a?", "answer": "#### 1"}\n{"question": "b?"}\n')
    result = invoke("--dataset", str(bad), "--model", "scripted:x.json")
    assert result.exit_code == 1
    assert result.output.strip() == "Error: data.jsonl:2: missing field 'answer'"

    result = invoke(
        "--dataset",
        "gsm8k-sample",
        "--model",
        str(tmp_path / "nope.json").replace(str(tmp_path), "scripted:" + str(tmp_path)),
    )
    assert result.exit_code == 1 and "Error: scripted model file" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1

    result = invoke("--dataset", "gsm8k-sample", "--method", "tot")
    assert result.exit_code == 1 and "'tot' is not one of" in result.output


def test_config_clash_is_one_line(tmp_path):
    script = f"scripted:{gold_script(tmp_path)}"
    out = str(tmp_path / "out")
    assert invoke("-d", "gsm8k-sample", "-m", "cot", "--model", script, "-n", "2", "-o", out, "-q").exit_code == 0
    result = invoke("-d", "gsm8k-sample", "-m", "cot", "--model", script, "-n", "2", "-o", out, "-q", "--shots", "1")
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()  # found before the model loads: no banner, one error line
    assert line.startswith("Error: ") and "different config (shots: 4 -> 1)" in line and "--overwrite" in line
    assert "rerun the same command" not in line  # it would clash again
    result = invoke(
        "-d", "gsm8k-sample", "-m", "cot", "--model", script, "-n", "2", "-o", out, "-q", "--shots", "1", "--overwrite"
    )
    assert result.exit_code == 0, result.output


def test_a_damaged_line_names_a_step_that_repairs_the_run(tmp_path):
    script = f"scripted:{gold_script(tmp_path)}"
    out = tmp_path / "out"
    assert invoke("-d", "gsm8k-sample", "-m", "cot", "--model", script, "-n", "3", "-o", str(out), "-q").exit_code == 0
    samples = out / "cot" / "samples.jsonl"
    lines = samples.read_text().splitlines()
    samples.write_text("\n".join([lines[0], "{damaged", lines[2]]) + "\n")
    report = CliRunner().invoke(main, ["report", str(out)])
    assert report.exit_code == 1 and "samples.jsonl:2: unreadable record; delete that line" in report.output
    samples.write_text("\n".join([lines[0], lines[2]]) + "\n")  # what the message says to do
    rerun = invoke("-d", "gsm8k-sample", "-m", "cot", "--model", script, "-n", "3", "-o", str(out), "-q")
    assert rerun.exit_code == 0, rerun.output
    assert sorted(samples.read_text().splitlines()) != sorted(lines[:1] + lines[2:])  # the example ran again
    assert len(samples.read_text().splitlines()) == 3
    assert CliRunner().invoke(main, ["report", str(out)]).exit_code == 0


def test_a_clash_with_the_model_is_found_once_it_loads(tmp_path):
    out = str(tmp_path / "out")
    first, other = f"scripted:{gold_script(tmp_path)}", f"scripted:{gold_script(tmp_path, 'other.json')}"
    assert invoke("-d", "gsm8k-sample", "-m", "cot", "--model", first, "-n", "2", "-o", out, "-q").exit_code == 0
    result = invoke("-d", "gsm8k-sample", "-m", "cot", "--model", other, "-n", "2", "-o", out, "-q")
    assert result.exit_code == 1
    banner, line = result.output.strip().splitlines()
    assert banner.startswith("benchmark: gsm8k-sample") and line.startswith("Error: ") and "model:" in line


def test_bench_parses_its_dataset_once(monkeypatch, tmp_path):
    from agentkit.eval import datasets

    parsed = []
    read = datasets._read_file
    monkeypatch.setattr(datasets, "_read_file", lambda *args: parsed.append(args[0]) or read(*args))
    result = bench_gold(tmp_path, "-m", "cot", "-m", "direct", "-n", "2", "-o", str(tmp_path / "out"), "-q")
    assert result.exit_code == 0, result.output
    assert parsed == [datasets.shipped_path("gsm8k-sample")]


def test_default_output_dir_is_per_setup():
    assert default_output_dir("gsm8k-sample", None, 4) == Path("runs/bench-gsm8k-sample-default-4shot")
    assert default_output_dir("data/my set.jsonl", "scripted:/tmp/r.json", 0).name == "bench-my-set-r-0shot"


def test_dtype_is_passed_to_the_model_loader(monkeypatch, tmp_path):
    seen = {}

    def fake_load_model(spec, *, dtype="auto", device="auto"):
        seen.update(spec=spec, dtype=dtype)
        raise ModelLoadError("no weights here")

    import agentkit.models
    from agentkit.engine.loading import ModelLoadError

    monkeypatch.setattr(agentkit.models, "load_model", fake_load_model)
    result = invoke("-d", "gsm8k-sample", "--model", "some/model", "--dtype", "float32")
    assert seen == {"spec": "some/model", "dtype": "float32"}
    assert result.output.strip() == "Error: no weights here"


def test_ctrl_c_says_how_to_resume(monkeypatch, tmp_path):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("agentkit.eval.runner.run_benchmark", interrupted)
    result = bench_gold(tmp_path, "-o", str(tmp_path / "o"), catch_exceptions=True)
    assert result.exit_code == 130 and "rerun the same command to resume" in result.output


def test_killed_process_resumes_to_the_same_results(tmp_path):
    """SIGKILL a real `bench` process midway; rerunning finishes without losing or repeating an example."""
    script = gold_script(tmp_path)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def command(out: Path, delay: float) -> list[str]:
        return [
            sys.executable,
            "-m",
            "agentkit.cli",
            "bench",
            "--dataset",
            "gsm8k-sample",
            "--method",
            "cot",
            "--model",
            f"scripted:{script}?delay={delay}",
            "--batch-size",
            "2",
            "--output-dir",
            str(out),
            "-q",
        ]

    reference = tmp_path / "reference"
    subprocess.run(command(reference, 0), check=True, env=env, capture_output=True, timeout=120)

    out = tmp_path / "killed"
    samples = out / "cot" / "samples.jsonl"
    proc = subprocess.Popen(command(out, 0.01), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if samples.exists() and samples.read_bytes().count(b"\n") >= 6:
                break
            time.sleep(0.02)
        else:
            pytest.fail("the benchmark process wrote nothing in time")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    partial = samples.read_bytes().count(b"\n")
    assert 6 <= partial < len(EXAMPLES), "killed midway"

    done = subprocess.run(command(out, 0), env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "| cot | 44 | 100.0% |" in done.stdout
    final = (samples).read_text().splitlines()
    assert strip(final) == strip((reference / "cot" / "samples.jsonl").read_text().splitlines())
    assert len({json.loads(line)["id"] for line in final}) == len(final) == len(EXAMPLES)
    ref_report = json.loads((reference / "results.json").read_text())["methods"]["cot"]
    report = json.loads((out / "results.json").read_text())["methods"]["cot"]
    assert {k: report[k] for k in ("n", "correct", "accuracy", "ci95", "failures")} == {
        k: ref_report[k] for k in ("n", "correct", "accuracy", "ci95", "failures")
    }


def test_too_many_shots_is_one_line(tmp_path):
    result = bench_gold(tmp_path, "-m", "cot", "--shots", "50", "-q", "-o", str(tmp_path / "o"))
    assert result.exit_code == 1
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: ") and "50 shots" in last and "Traceback" not in result.output


def test_bench_says_how_many_questions_repeat_and_where_the_page_is(tmp_path):
    rows = [{"input": e.question, "target": float(e.answer)} for e in EXAMPLES[:3]]
    data = tmp_path / "asdiv.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in [rows[0], rows[0], rows[1], rows[2], rows[2]]))
    out = tmp_path / "out"
    result = invoke(
        "--dataset",
        str(data),
        "--method",
        "cot",
        "--model",
        f"scripted:{gold_script(tmp_path)}",
        "--output-dir",
        str(out),
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    assert "dataset: 5 examples; 2 repeat an earlier question (each line is scored as its own example)" in result.output
    assert "| cot | 5 | 100.0% |" in result.output
    assert f"browse:  {out / 'results.html'}" in result.output and (out / "results.html").is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--limit", "0"], "Invalid value for '--limit' / '-n': 0 is not in the range x>=1"),
        (["-m", "cot", "-m", "cot"], "method 'cot' is given more than once"),
        (["--dtype", "float16"], "'float16' is not one of 'auto', 'bfloat16', 'float32'"),
        (["--shots", "50"], "exemplar set 'math' has 8 exemplars but 50 shots were asked for"),
        (["-m", "chat"], "'chat' is not one of"),
    ],
)
def test_bad_settings_are_one_line_before_anything_is_written(tmp_path, args, message):
    out = tmp_path / "o"
    result = bench_gold(tmp_path, "-o", str(out), "-q", *args, catch_exceptions=True)
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert line.startswith("Error: ") and message in line and "saved" not in line
    assert not out.exists()


def test_an_output_dir_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    result = invoke("-d", "gsm8k-sample", "-o", str(tmp_path / "file"), catch_exceptions=True)
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: Invalid value for '--output-dir' / '-o': Directory '{tmp_path / 'file'}' is a file "
        "(see 'agentkit bench --help')"
    ]


def test_a_resumed_run_says_how_many_examples_were_done(tmp_path):
    script, out = f"scripted:{gold_script(tmp_path)}", str(tmp_path / "out")
    assert invoke("-d", "gsm8k-sample", "-m", "cot", "--model", script, "-n", "3", "-o", out, "-q").exit_code == 0
    result = invoke("-d", "gsm8k-sample", "-m", "cot", "-m", "direct", "--model", script, "-n", "5", "-o", out, "-q")
    assert result.exit_code == 0, result.output
    assert f"resuming the run in {out}: 3 of 10 examples already done (cot 3, direct 0)" in result.output


def test_bench_takes_your_templates_and_records_them(tmp_path):
    templates = tmp_path / "mine"
    templates.mkdir()
    (templates / "cot.jinja").write_text("MY COT\nQuestion: {{ question }}\nAnswer:")
    out = tmp_path / "out"
    result = bench_cot(
        tmp_path,
        out,
        "--templates",
        str(templates),
    )
    assert result.exit_code == 0, result.output
    record = json.loads((out / "cot" / "samples.jsonl").read_text().splitlines()[0])
    assert record["prompt"].startswith("MY COT\nQuestion: ")
    assert json.loads((out / "config.json").read_text())["templates"] == str(templates)


def test_the_wiki_setting_reaches_the_config(tmp_path):
    out = tmp_path / "out"
    replies = tmp_path / "r.json"
    replies.write_text(json.dumps({"*": " I know it.\nAction 1: Finish[Tanzania]"}))
    result = invoke(
        "-d",
        "wiki-sample",
        "-m",
        "react",
        "--model",
        f"scripted:{replies}",
        "-n",
        "1",
        "-o",
        str(out),
        "-q",
        "--wiki",
        "offline",
    )
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["method_options"]["corpus"] == "offline"
