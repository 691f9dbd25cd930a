"""``agentkit run``, ``agentkit ls``, the group (--version, --help, bench) and one-line errors at the CLI edge."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from agentkit import __version__
from agentkit.cli import main
from agentkit.strategies import METHODS

PROGRAM = "def solution():\n    return 6 * 7\n"
REACT_FINISH = " I know this one: six sevens are 42.\nAction 1: Finish[42]"
QUESTION = "What is 6 times 7?"

# method -> (scripted replies, expected answer: a JSON number where the method answers numbers)
SCRIPTS = {
    "chat": (["6 times 7 is 42."], "6 times 7 is 42."),
    "direct": ([" 42"], 42),
    "cot": ([" Six sevens are 42. The answer is 42."], 42),
    "cot-sc": ([" The answer is 42."] * 5, 42),
    "pal": ([PROGRAM], 42),
    "pal-sc": ([PROGRAM] * 5, 42),
    "react": ([REACT_FINISH], "42"),
    "react-cot-sc": ([REACT_FINISH], "42"),
}


def script(tmp_path, replies):
    path = tmp_path / "replies.json"
    path.write_text(json.dumps(replies), encoding="utf-8")
    return f"scripted:{path}"


def invoke(*args, input=None):
    return CliRunner().invoke(main, list(args), input=input)


def test_every_method_has_a_script():
    assert set(SCRIPTS) == {"chat", *METHODS} - {"tools"}  # tools needs a chat model: tests/test_tool_agent.py


@pytest.mark.parametrize("method", list(SCRIPTS))
def test_run_json_prints_only_the_full_result(tmp_path, method):
    replies, answer = SCRIPTS[method]
    result = CliRunner().invoke(
        main, ["run", QUESTION, "--method", method, "--model", script(tmp_path, replies), "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # stdout is JSON and nothing else
    assert data["answer"] == answer and data["failure"] is None
    assert data["question"] == QUESTION and data["method"] == method
    assert data["duration"] > 0 and data["prompt"]
    if method.startswith("pal"):
        program = data["program"] if method == "pal" else data["samples"][0]["program"]
        assert program == PROGRAM.strip()
    if method.startswith("react"):
        assert data["trajectory"]["steps"][0]["action"] == "Finish"
    if method.endswith("-sc") and method != "react-cot-sc":
        assert data["votes"] == {"42": 5}


def test_run_streams_the_work_then_the_answer(tmp_path):
    result = invoke("run", QUESTION, "--method", "pal", "--model", script(tmp_path, [PROGRAM]))
    assert result.exit_code == 0
    assert result.output.splitlines() == ["Program:", "def solution():", "    return 6 * 7", "Result: 42", "Answer: 42"]


def test_run_answer_text_reads_a_phrase_with_the_wiki_exemplars(tmp_path):
    model = script(tmp_path, [" The tower is named after its engineer. The answer is Gustave Eiffel."])
    data = json.loads(
        invoke(
            "run", "After whom is the Eiffel Tower named?", "-m", "cot", "--answer", "text", "--model", model, "--json"
        ).stdout
    )
    assert data["answer"] == "Gustave Eiffel"
    assert "Mount Kilimanjaro" in data["prompt"]  # the encyclopedic exemplars, not the word problems
    bad = invoke("run", QUESTION, "--answer", "words", "--model", model)
    assert bad.exit_code == 1 and "'words' is not one of 'number', 'text'" in bad.output


def test_run_options_reach_the_strategy(tmp_path):
    model = script(tmp_path, [" one two three four. The answer is 5."] * 3)
    result = invoke(
        "run",
        QUESTION,
        "-m",
        "cot-sc",
        "--model",
        model,
        "--json",
        "--shots",
        "1",
        "--samples",
        "3",
        "--max-tokens",
        "4",
        "--temperature",
        "0.9",
        "--seed",
        "7",
    )
    data = json.loads(result.stdout)
    assert data["prompt"].count("Question:") == 2  # one exemplar and the question
    assert len(data["samples"]) == 3
    assert all(s["completions"] == [" one two three four"] for s in data["samples"])  # cut at 4 tokens
    assert data["failure"] == "length" and data["answer"] is None


def test_a_model_that_fails_to_answer_is_data_not_an_error(tmp_path):
    model = script(tmp_path, ["def solution():\n    return 1 / 0\n"])
    result = invoke("run", QUESTION, "--method", "pal", "--model", model)
    assert result.exit_code == 0
    assert "Program error: ZeroDivisionError" in result.output
    assert result.output.splitlines()[-1].startswith("Answer: (none; sandbox_error: ZeroDivisionError")
    model = script(tmp_path, [" I am not sure."])
    result = invoke("run", QUESTION, "--method", "cot", "--model", model, "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["failure"] == "no_answer"


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", QUESTION, "--model", "scripted:/no/such.json"], "Error: scripted model file /no/such.json not found"),
        (["run", QUESTION, "--model", "scripted:{bad}"], "Error: scripted model file {bad}: invalid JSON"),
        (["run", QUESTION, "--model", "scripted:{ok}", "--shots", "99"], "Error: exemplar set 'math' has 8 exemplars"),
        (
            ["run", QUESTION, "--model", "scripted:{ok}", "--templates", "/no/such/dir"],
            "Error: template directory /no/such/dir does not exist",
        ),
        (["run", QUESTION, "--model", "scripted:{empty}"], "Error: ScriptedLLM ran out of replies"),
        (["ls", "--templates", "/no/such/dir"], "Error: template directory /no/such/dir does not exist"),
    ],
)
def test_bad_input_is_one_red_line_not_a_traceback(tmp_path, args, message):
    (tmp_path / "bad.json").write_text("[unclosed")
    (tmp_path / "ok.json").write_text('[" The answer is 1."]')
    (tmp_path / "empty.json").write_text("[]")
    args = [a.format(bad=tmp_path / "bad.json", ok=tmp_path / "ok.json", empty=tmp_path / "empty.json") for a in args]
    message = message.format(bad=tmp_path / "bad.json")
    result = invoke(*args)
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr
    assert "Traceback" not in result.output


def test_a_sandbox_that_cannot_start_is_one_error_line(tmp_path, monkeypatch):
    from agentkit.strategies import pal
    from agentkit.tools import sandbox

    broken = tmp_path / "broken_worker.py"
    broken.write_text("raise SystemExit(3)\n")
    monkeypatch.setattr(sandbox, "_WORKER_SCRIPT", broken)
    monkeypatch.setattr(pal, "_shared", None)  # the process's warm sandbox, if an earlier test started it
    result = invoke("run", QUESTION, "--method", "pal", "--model", script(tmp_path, [PROGRAM]))
    assert result.exit_code == 1 and "Traceback" not in result.output
    (line,) = result.stderr.splitlines()  # after the program, shown as it was written
    assert line.startswith("Error: ") and "sandbox template" in line, result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", QUESTION, "--method", "magic"], "Invalid value for '--method' / '-m': 'magic' is not one of"),
        (["run", "  "], "Invalid value for QUESTION: the question is empty"),
        (["run", QUESTION, "--shots", "-1"], "Invalid value for '--shots'"),
        (["run", QUESTION, "--temperature", "hot"], "Invalid value for '--temperature'"),
        (["frobnicate"], "No such command 'frobnicate'"),
    ],
)
def test_usage_errors_are_one_line_with_exit_1(args, message):
    result = invoke(*args)
    assert result.exit_code == 1
    assert message in result.output
    (line,) = result.stderr.splitlines()  # one line, as docs/cli.md says
    assert line.startswith("Error: ") and line.endswith("--help')") and result.stdout == ""


def test_debug_shows_the_traceback(tmp_path):
    result = invoke("--debug", "run", QUESTION, "--model", "scripted:/no/such.json")
    assert result.exit_code == 1 and isinstance(result.exception, ValueError)  # raised, not turned into a line
    env = {**os.environ, "AGENTKIT_DEBUG": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "agentkit.cli", "run", QUESTION, "--model", "scripted:/no/such.json"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 1 and "Traceback (most recent call last)" in proc.stderr
    assert "ModelSpecError" in proc.stderr


def test_ls_lists_methods_templates_exemplars_and_datasets():
    result = invoke("ls")
    assert result.exit_code == 0
    out = result.output
    for method, description in METHODS.items():
        assert f"  {method} " in out and description in out
    assert "  chat " in out
    templates = out.split("Templates:\n", 1)[1].splitlines()[0]
    for name in ("chat", "cot", "direct", "pal", "react"):
        assert name in templates.split(", ") or f" {name}" in templates
    assert "  math " in out and "exemplars" in out
    assert "  gsm8k-sample " in out and "  wiki-sample " in out


def test_ls_with_a_user_template_directory(tmp_path):
    (tmp_path / "mine.jinja").write_text("{{ question }}")
    (tmp_path / "geo.jsonl").write_text('{"question": "q", "answer": "a"}\n')
    out = invoke("ls", "--templates", str(tmp_path)).output
    assert "mine" in out.split("Templates:\n", 1)[1].splitlines()[0]
    assert "  geo " in out and "1 exemplars" in out


def test_version_help_and_bench_are_there():
    assert invoke("--version").output.strip() == f"agentkit, version {__version__}"
    help_text = invoke("--help").output
    for command in ("chat", "run", "ls", "bench"):
        assert f"  {command} " in help_text
    bench = invoke("bench", "--help")
    assert bench.exit_code == 0 and "--dataset" in bench.output


def test_the_console_script_runs(tmp_path):
    exe = Path(sys.executable).with_name("agentkit")
    if not exe.exists():
        pytest.skip("the agentkit console script is not installed next to this Python")
    proc = subprocess.run(
        [str(exe), "run", QUESTION, "-m", "pal", "--model", script(tmp_path, [PROGRAM])], capture_output=True, text=True
    )
    assert proc.returncode == 0 and proc.stdout.splitlines()[-1] == "Answer: 42"
    assert "\x1b[" not in proc.stdout  # no colours when piped


# ------------------------------------------------------------------------------------------------ one layer, one set
def test_every_command_offers_the_shared_options_under_the_same_names():
    from agentkit.cli import main
    from agentkit.models import DTYPES

    commands = {name: main.commands[name] for name in ("run", "chat", "bench")}
    shared = [
        "model_spec",
        "method",
        "shots",
        "max_tokens",
        "temperature",
        "seed",
        "k",
        "answer",
        "corpus",
        "dtype",
        "templates_dir",
    ]
    for name in shared:
        found = {}
        for command_name, command in commands.items():
            (param,) = [p for p in command.params if p.name in (name, name + "s")]
            choices = getattr(param.type, "choices", None)
            found[command_name] = (tuple(param.opts), param.type.name, tuple(choices) if choices else None)
        opts = {opts for opts, _, _ in found.values()}
        assert len(opts) == 1, (name, found)  # the same flag everywhere
        if name != "method":  # bench offers the methods it can score (not chat)
            assert len(set(found.values())) == 1, (name, found)
    (dtype,) = [p for p in commands["bench"].params if p.name == "dtype"]
    assert tuple(dtype.type.choices) == DTYPES and "float16" not in DTYPES


def test_each_setting_has_the_name_the_library_takes_it_by():
    from agentkit.cli.options import SETTING_OPTIONS
    from agentkit.strategies import Settings

    for name in Settings.model_fields:  # --k for k, --max-tokens for max_tokens: the field's own name
        (param,) = [p for p in main.commands["run"].params if p.name == name]
        assert "--" + name.replace("_", "-") in param.opts, (name, param.opts)
    assert set(SETTING_OPTIONS) == set(Settings.model_fields)
    assert Settings(k=3, corpus="live").method_options() == {"k": 3, "corpus": "live"}  # load_strategy's names
    assert Settings(wiki="live").corpus == "live"  # the older name still works


def test_the_dtype_choices_are_exactly_what_the_engine_accepts():
    from agentkit.engine.loading import resolve_dtype
    from agentkit.models import DTYPES

    for dtype in DTYPES:
        assert resolve_dtype(dtype, "cpu") in ("bfloat16", "float32")
    with pytest.raises(ValueError):
        resolve_dtype("float16", "cpu")


@pytest.mark.parametrize(
    "args",
    [
        ["--shots", "default"],
        ["--max-tokens", "default"],
        ["--answer", "default"],
        ["--corpus", "default"],
        ["--wiki", "default"],
        ["-k", "default"],
        ["--samples", "default"],
    ],
)
def test_default_is_accepted_wherever_a_setting_has_one(tmp_path, args):
    result = invoke("run", QUESTION, "-m", "pal", "--model", script(tmp_path, [PROGRAM]), "--json", *args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["answer"] == 42


def test_an_error_in_a_streamed_run_starts_on_its_own_line_with_cli_advice(tmp_path):
    model = script(tmp_path, [" I should search.\nAction 1: Search[Mount Kilimanjaro]"])
    result = invoke("run", "Where is Mount Kilimanjaro?", "-m", "react", "--model", model)
    assert result.exit_code == 1
    assert result.stdout.endswith("Thought 2:\n")  # the streamed work, its line ended before the error
    (line,) = result.stderr.splitlines()
    assert line.startswith("Error: ScriptedLLM ran out of replies: prompt #2 arrived but ")
    assert line.endswith("holds 1; add replies to that file") and "callable" not in line


def test_run_json_answer_is_text_where_the_method_answers_text(tmp_path):
    model = script(tmp_path, [" 42"])
    data = json.loads(invoke("run", QUESTION, "-m", "direct", "--answer", "text", "--model", model, "--json").stdout)
    assert data["answer"] == "42"  # a text answer stays a string, even when it looks like a number


def test_wiki_live_reaches_react(tmp_path, monkeypatch):
    import agentkit.tools.wikipedia as wikipedia

    made = []

    class FakeLive(wikipedia.OfflineCorpus):
        def __init__(self):
            made.append("live")
            super().__init__(wikipedia.default_corpus_path())

    monkeypatch.setattr(wikipedia, "LiveWikipedia", FakeLive)
    result = invoke(
        "run",
        "Where is Mount Kilimanjaro?",
        "-m",
        "react",
        "--wiki",
        "live",
        "--model",
        script(tmp_path, [REACT_FINISH.replace("42", "Tanzania")]),
        "--json",
    )
    assert result.exit_code == 0, result.output
    assert made == ["live"] and json.loads(result.stdout)["answer"] == "Tanzania"


def test_a_bug_keeps_its_traceback(tmp_path, monkeypatch):
    """Only agentkit's own errors and OSError become one line; a RuntimeError from a bug is not swallowed."""
    import agentkit.cli.run

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in agentkit")

    monkeypatch.setattr(agentkit.cli.run, "build_strategy", broken)
    result = invoke("run", QUESTION, "--model", script(tmp_path, [" 1"]))
    assert isinstance(result.exception, RuntimeError) and "Error:" not in result.output


def test_agentkit_alone_prints_its_help():
    result = invoke()
    assert result.exit_code == 0 and result.stdout.startswith("Usage: ") and "Commands:" in result.stdout
