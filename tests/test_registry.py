"""The one registry of methods, the shared Settings, BenchmarkConfig and the one record converter."""

from __future__ import annotations

import json

import pytest

from agentkit.errors import BenchmarkError, UsageError
from agentkit.eval import BenchmarkConfig, run_benchmark
from agentkit.eval.datasets import load_dataset
from agentkit.llm import GenerationConfig, ScriptedLLM, ScriptError
from agentkit.prompting import PromptError, Templates
from agentkit.records import jsonable, typed_answer
from agentkit.strategies import (
    METHODS,
    REGISTRY,
    Settings,
    UnknownMethod,
    build_strategy,
    check_shots,
    get_method,
    load_strategy,
    register_method,
    unregister_method,
)
from agentkit.strategies.base import Interpretation, SingleCall, Strategy, no_answer


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_method_builds_a_strategy_of_its_name(name):
    llm = ScriptedLLM([], chat_template="{{ messages }}" if name == "tools" else None)  # tools needs a chat model
    strategy = load_strategy(name, llm, shots=1)
    assert isinstance(strategy, Strategy) and strategy.name == name
    method = REGISTRY[name]
    assert method.answer_kind() in method.answers and method.description


def test_methods_are_the_scored_part_of_the_registry():
    assert list(METHODS) == [name for name, m in REGISTRY.items() if m.scored]
    assert "chat" in REGISTRY and "chat" not in METHODS


def test_options_go_to_the_methods_that_take_them():
    llm = ScriptedLLM([])
    shared = dict(k=3, corpus="offline", answer="text")  # one set of options for a benchmark of several methods
    assert load_strategy("cot", llm, **shared).answer == "text"
    assert load_strategy("cot-sc", llm, **shared).k == 3
    assert load_strategy("react", llm, **shared).corpus == "offline"
    with pytest.raises(UsageError, match="unknown option 'tols'"):
        load_strategy("react", llm, tols=[])
    with pytest.raises(UnknownMethod, match="choose one of: chat, direct"):
        load_strategy("tot", llm)


def test_check_shots_names_the_exemplar_set_for_each_method():
    check_shots("cot", 8)
    with pytest.raises(PromptError, match="exemplar set 'math' has 8 exemplars but 9"):
        check_shots("pal-sc", 9)
    with pytest.raises(PromptError, match="exemplar set 'wiki'"):
        check_shots("cot", 99, answer="text")
    check_shots("chat", 99)  # chat takes no exemplars


def test_settings_mean_the_same_for_every_method():
    settings = Settings(shots=2, max_tokens=10, temperature=0.5, seed=3, k=4, answer="text", corpus="live")
    assert settings.generation() == {"max_new_tokens": 10, "do_sample": True, "temperature": 0.5, "seed": 3}
    assert settings.method_options() == {"k": 4, "temperature": 0.5, "answer": "text", "corpus": "live"}
    assert Settings(temperature=0).generation() == {"do_sample": False}
    assert Settings().generation() == {} and Settings().method_options() == {}
    react = build_strategy("react-cot-sc", ScriptedLLM([]), settings)
    assert react.corpus == "live" and react.fallback.k == 4 and react.fallback.base.answer == "text"
    with pytest.raises(ValueError):
        Settings(shots=-1)


def test_a_scripted_model_out_of_replies_is_a_usage_error():
    with pytest.raises(ScriptError, match="ran out of replies") as info:
        ScriptedLLM([]).generate(["hello"])
    assert isinstance(info.value, UsageError)


def test_an_undefined_template_variable_names_what_the_template_receives(tmp_path):
    (tmp_path / "mine.jinja").write_text("{{ question }} {{ context }}")
    with pytest.raises(PromptError) as info:
        Templates(tmp_path).render("mine", question="q", exemplars=[])
    assert "'context' is undefined; the variables it receives are: exemplars, question" in str(info.value)


def test_a_duplicated_question_is_named_by_its_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(
        '{"question": "a?", "answer": "1"}\n{"question": "b?", "answer": "2"}\n{"question": "a?", "answer": "1"}\n'
    )
    examples = load_dataset(path)  # every line its own example (issue 14), named by the line the user wrote
    assert [(e.id, e.source) for e in examples] == [
        ("line-1", "d.jsonl:1"),
        ("line-2", "d.jsonl:2"),
        ("line-3", "d.jsonl:3"),
    ]
    assert examples[2].meta["repeat_of"] == "line-1"


# ------------------------------------------------------------------------------------------------ BenchmarkConfig
def gold_llm():
    gold = {e.question: f" The answer is {e.answer}." for e in load_dataset("gsm8k-sample")}
    return ScriptedLLM(lambda prompt: next(r for q, r in gold.items() if prompt.endswith(f"Question: {q}\nAnswer:")))


def test_run_benchmark_takes_a_config_and_writes_its_identity(tmp_path):
    config = BenchmarkConfig(
        dataset="gsm8k-sample", methods=["cot"], limit=3, output_dir=tmp_path / "out", generation={"max_new_tokens": 64}
    )
    result = run_benchmark(config, llm=gold_llm())
    assert result.accuracy == 1.0 and len(result.records) == 3
    written = json.loads((tmp_path / "out" / "config.json").read_text())
    assert written["generation"] == {"max_new_tokens": 64} and written["shots"] == 4
    assert written == {k: v for k, v in result.config.items() if k not in ("methods", "limit")}
    # the keyword form is the same run: it resumes without asking the model anything
    again = run_benchmark(
        "gsm8k-sample", "cot", ScriptedLLM([]), limit=3, output_dir=tmp_path / "out", generation={"max_new_tokens": 64}
    )
    assert again.accuracy == 1.0


@pytest.mark.parametrize(
    "values, message",
    [
        ({"limit": 0}, "benchmark limit: Input should be greater than or equal to 1"),
        ({"methods": ["cot", "pal", "cot"]}, "benchmark methods: method 'cot' is given more than once"),
        ({"shot": 2}, "benchmark shot: unknown setting; the settings are: dataset, methods, shots"),
        ({"methods": []}, "benchmark methods: List should have at least 1 item"),
    ],
)
def test_a_bad_setting_is_one_error_naming_it(values, message):
    with pytest.raises(UsageError) as info:
        BenchmarkConfig.of(dataset="gsm8k-sample", **values)
    assert str(info.value).startswith(message)


def test_from_settings_uses_the_commands_settings():
    config = BenchmarkConfig.from_settings(Settings(shots=2, temperature=0.9, k=7), dataset="gsm8k-sample")
    assert config.shots == 2 and config.generation == {"do_sample": True, "temperature": 0.9}
    assert config.method_options == {"k": 7, "temperature": 0.9}


def test_too_many_shots_are_refused_before_the_output_dir_is_made(tmp_path):
    with pytest.raises(PromptError, match="50 shots"):
        run_benchmark("gsm8k-sample", "cot", ScriptedLLM([]), shots=50, output_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------------ records
def test_one_converter_for_results_with_and_without_timing():
    result = load_strategy("pal", ScriptedLLM(["def solution():\n    return 6 * 7\n"]))("6 times 7?")
    data = jsonable(result)
    assert data["execution"]["value"] == 42 and data["duration"] > 0 and json.dumps(data)
    timing: dict[str, float] = {}
    stable = jsonable(result, timing)
    assert "duration" not in stable and "duration" not in stable["execution"]
    assert set(timing) >= {"duration", "execution.duration"}


@pytest.mark.parametrize(
    "answer, kind, expected",
    [
        ("42", "number", 42),
        ("-0.5", "number", -0.5),
        ("42", "text", "42"),
        (None, "number", None),
        ("Paris", "number", "Paris"),
        ("1e400", "number", "1e400"),
        ("12345678901234567", "number", 12345678901234567),
        ("0.0000001", "number", 1e-7),
        ("1/3", "number", "1/3"),
    ],
)
def test_typed_answer(answer, kind, expected):
    value = typed_answer(answer, kind)
    assert value == expected and type(value) is type(expected)


def test_the_registry_defaults_are_the_strategies_own():
    import inspect

    from agentkit.strategies.self_consistency import SelfConsistency

    sc = inspect.signature(SelfConsistency).parameters
    shots = inspect.signature(Strategy.__init__).parameters["shots"].default
    for method in REGISTRY.values():
        if "k" in method.options:
            assert method.defaults["k"] == sc["k"].default
            assert method.defaults["temperature"] == sc["temperature"].default
        if method.exemplar_sets(method.answer_kind()):
            assert method.defaults["shots"] == shots


def test_every_setting_has_one_command_line_option():
    from agentkit.cli.options import SETTING_OPTIONS

    assert list(SETTING_OPTIONS) == list(Settings.model_fields)


# --- a strategy of your own, registered in one call ----------------------------------------------------------------
class Shout(SingleCall):
    """A strategy written in this file: the direct prompt, with the answer read as the reply's last word."""

    name = "shout"
    template = "direct"
    default_config = GenerationConfig(max_new_tokens=16, stop=["\n"])

    def __init__(self, llm=None, *, suffix: str = "", **kwargs):
        super().__init__(llm, **kwargs)
        self.suffix = suffix

    def interpret(self, completion):
        words = completion.text.split()
        return Interpretation(answer=words[-1] + self.suffix) if words else no_answer(completion, "answer")


@pytest.fixture
def shout():
    method = register_method("shout", Shout, description="the reply's last word", options=("suffix",))
    yield method
    unregister_method("shout")


def test_a_registered_strategy_runs_through_agentkit_bench_and_is_listed(shout, tmp_path):
    from click.testing import CliRunner

    from agentkit.cli import main
    from agentkit.eval.datasets import load_dataset

    replies = tmp_path / "r.json"
    replies.write_text(json.dumps({e.question: f" it is {e.answer}" for e in load_dataset("gsm8k-sample")}))
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main,
        [
            "bench",
            "-d",
            "gsm8k-sample",
            "-m",
            "shout",
            "-m",
            "direct",
            "-n",
            "3",
            "--model",
            f"scripted:{replies}",
            "-o",
            str(out),
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "| shout" in result.output and len((out / "shout" / "samples.jsonl").read_text().splitlines()) == 3
    assert json.loads((out / "results.json").read_text())["methods"]["shout"]["accuracy"] == 1.0
    listed = CliRunner().invoke(main, ["ls"])
    assert "shout" in listed.output and "the reply's last word" in listed.output
    from agentkit.runtime import run_episode

    llm = ScriptedLLM([" so 7"])
    assert run_episode(llm, load_strategy("shout", llm, suffix="!").episode("Q")).answer == "7!"
    assert shout.defaults == {"suffix": "", "shots": 4} and "shout" in METHODS  # read from its constructor


def test_a_registered_strategy_answers_in_chat_and_run(shout, tmp_path):
    from click.testing import CliRunner

    from agentkit.cli import main

    replies = tmp_path / "r.json"
    replies.write_text('[" it is 42"]')
    result = CliRunner().invoke(main, ["run", "What is 6 times 7?", "-m", "shout", "--model", f"scripted:{replies}"])
    assert result.exit_code == 0 and result.output.splitlines()[-1] == "Answer: 42", result.output


def test_register_method_as_a_decorator_and_twice(tmp_path):
    @register_method("shout2", description="the same, by decorator", exemplar_sets=lambda answer: ())
    class Shout2(Shout):
        pass

    try:
        assert get_method("shout2").build is not None and isinstance(load_strategy("shout2"), Shout2)
        check_shots("shout2", 99)  # draws on no exemplar set: any number of shots
        with pytest.raises(UsageError, match="'shout2' is registered already"):
            register_method("shout2", Shout2, description="again")
    finally:
        unregister_method("shout2")
    assert "shout2" not in REGISTRY


def test_a_scorer_scores_answers_that_are_neither_numbers_nor_short_texts(tmp_path):
    from agentkit.eval import Example, run_benchmark

    data = [
        Example(id="a", question="Spell cat backwards", answer="tac"),
        Example(id="b", question="Spell dog backwards", answer="god"),
    ]
    llm = ScriptedLLM(lambda prompt: " T-A-C" if "cat" in prompt.rsplit("Question:", 1)[1] else " d o g")

    def letters(answer, example):  # the same letters in order, whatever separates them
        return "".join(ch for ch in (answer or "").lower() if ch.isalpha()) == example.answer

    result = run_benchmark(
        data, "direct", llm, scorer=letters, output_dir=tmp_path / "o", method_options={"answer": "text"}
    )
    assert [r["correct"] for r in result.records] == [True, False] and result.records[0]["kind"] == "custom"
    assert json.loads((tmp_path / "o" / "config.json").read_text())["scorer"].endswith("letters")
    with pytest.raises(BenchmarkError, match="scorer"):  # resumed with agentkit's own scoring: another run
        run_benchmark(data, "direct", llm, output_dir=tmp_path / "o", method_options={"answer": "text"})
