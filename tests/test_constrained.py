"""Constrained replies (``constrain=True``, ``--constrain``): the constraint each strategy derives accepts what its
reader parses and nothing it does not, reaches the model on every call, and is part of a benchmark's config."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Literal

import pytest
from click.testing import CliRunner

from agentkit import PAL, CoT, Direct, ReAct, ScriptedLLM, SelfConsistency, tool
from agentkit.answers import extract_first_numeric, extract_numeric_answer, extract_text_answer, parse_number
from agentkit.cli import main
from agentkit.cli.chat import ChatSession
from agentkit.errors import UsageError
from agentkit.eval import BenchmarkError, run_benchmark
from agentkit.eval.config import BenchmarkConfig
from agentkit.grammar import _matcher, longest_conforming, matches
from agentkit.llm import Constraint, GenerationConfig, cut_at_stop, refuse_constraint
from agentkit.strategies import Settings, build_strategy, load_strategy
from agentkit.strategies.constraints import either, tool_call
from agentkit.strategies.pal import extract_code
from agentkit.strategies.react import parse_action, parse_step
from tests.test_chat_format import GEMMA, instruct
from tests.test_eval_runner import GOLD, any_reply


class Conforming(ScriptedLLM):
    """A scripted model more lenient than ``ScriptedLLM``: each reply (up to its stop string) is cut to its longest
    prefix the constraint accepts, even where no constrained model could have stopped (an empty reply), so a test
    can script a malformed reply and see what the strategy makes of the cut. ``constraints`` records them all."""

    def generate(self, prompts, config=None):
        config = config or GenerationConfig()
        if config.constraint is None:
            return super().generate(prompts, config)
        self.constraints += [config.constraint] * len(prompts)
        free = config.model_copy(update={"constraint": None})
        texts = [self.render(prompt) for prompt in prompts]
        kept = [longest_conforming(config.constraint, cut_at_stop(self._reply_for(t), config.stop)[0]) for t in texts]
        return [self._complete(t, k, free) for t, k in zip(texts, kept, strict=True)]


def sent(strategy, config: GenerationConfig | None = None) -> Constraint:
    """The constraint ``strategy`` (a single-call one) sends with ``config`` (default: its own)."""
    return strategy.config_for_format(config or strategy.config).constraint


def walk(constraint: Constraint, rng: random.Random, pieces: list[str], endings: list[str]) -> str | None:
    """A random text the constraint accepts, or None: random ``pieces`` and then one of the ``endings`` are written
    byte by byte, each byte the constraint rejects replaced by a random one it allows; the walk stops at a random
    accepting point."""
    matcher, out = _matcher(constraint), bytearray()
    plan = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 12))) + rng.choice(endings)
    for byte in plan.encode():
        if matcher.is_accepting() and rng.random() < 0.1:
            break
        mask = matcher.compute_bitmask()
        allowed = [b for b in range(128) if mask[b // 8] >> (b % 8) & 1]
        if not allowed:
            break
        byte = byte if byte in allowed else rng.choice(allowed)
        assert matcher.try_consume_tokens([byte]) == 1
        out.append(byte)
    return out.decode("utf-8") if matcher.is_accepting() else None


# ------------------------------------------------------------------------------------------ off changes nothing
METHODS = ["direct", "cot", "cot-sc", "pal", "pal-sc", "react", "react-cot-sc"]
WIKI_QUESTION = "Which Italian artist painted the Mona Lisa?"
MATH_QUESTION = next(iter(GOLD))


def replies_for(method: str):
    def reply(prompt: str) -> str:
        if not method.startswith("react"):
            return any_reply(prompt)
        if "Observation 1:" in prompt:
            return " Done.\nAction 2: Finish[Leonardo]"
        return " I search.\nAction 1: Search[Mona Lisa]"

    return reply


def question_for(method: str) -> str:
    return WIKI_QUESTION if method.startswith("react") else MATH_QUESTION


@pytest.mark.parametrize("method", METHODS)
def test_unconstrained_runs_send_no_constraint_and_give_what_they_gave(method):
    plain = load_strategy(method, ScriptedLLM(replies_for(method)), max_steps=2, k=2)(question_for(method))
    model = Conforming(replies_for(method))
    off = load_strategy(method, model, max_steps=2, k=2, constrain=False)(question_for(method))
    assert model.constraints and set(model.constraints) == {None}
    fields = {"answer", "failure", "prompt", "completions", "votes"}
    assert off.model_dump(include=fields) == plain.model_dump(include=fields)


@pytest.mark.parametrize("method", METHODS)
def test_constrained_runs_send_a_constraint_with_every_generation(method):
    model = Conforming(replies_for(method))
    result = load_strategy(method, model, max_steps=2, k=2, constrain=True)(question_for(method))
    assert model.constraints and None not in model.constraints
    assert result.ok


@pytest.mark.parametrize("method", METHODS)
def test_constrained_runs_in_chat_form_send_the_constraints_of_the_stops_sent(method):
    def reply(prompt: str) -> str:
        if method.startswith("react"):
            return replies_for(method)(prompt)
        gold = next(a for q, a in GOLD.items() if q in prompt.rsplit("Question:", 1)[1])
        if "def solution()" in prompt:
            return f"\ndef solution():\n    return {gold}\n```"
        return f"So. The answer is {gold}.\n\nI hope that helps." if "step by step" in prompt else f"{gold}\nOK"

    model = Conforming(reply, chat_template=GEMMA, special_tokens={"bos_token": "<BOS>"})
    result = load_strategy(method, model, max_steps=2, k=2, constrain=True)(question_for(method))
    assert model.prompts[0].startswith("<BOS><start_of_turn>user") and result.ok
    assert None not in model.constraints
    if method.startswith("cot"):  # "\n\n" is no stop in chat form: the answer line must be the end of the reply
        assert all("\\n\\n" not in c.lark for c in model.constraints)
        assert result.completions[0] == "So. The answer is " + result.answer + "."


def test_a_model_that_cannot_honour_constraints_says_so_in_one_line():
    class Plain(ScriptedLLM):  # a backend without constraint support refuses, as every such backend must
        def generate(self, prompts, config=None):
            refuse_constraint(f"model {self.name}", (config or GenerationConfig()).constraint)
            return super().generate(prompts, config)

    with pytest.raises(UsageError, match="^model scripted cannot honour a lark constraint; .*$"):
        load_strategy("cot", Plain(["The answer is 3."]), constrain=True)("q")


def test_chat_mode_has_nothing_to_constrain():
    model = Conforming(["Hello there."])
    result = load_strategy("chat", model, constrain=True)("hi")
    assert result.answer == "Hello there." and model.constraints == [None]


def test_a_constraint_of_ones_own_and_constrain_do_not_mix():
    own = GenerationConfig(constraint=Constraint(regex="[0-9]+"))
    with pytest.raises(UsageError, match="drop config.constraint"):
        Direct(ScriptedLLM([]), config=own, constrain=True)
    assert sent(Direct(ScriptedLLM([]), config=own)) == own.constraint  # sent as it is without constrain


# ------------------------------------------------------------------------------ malformed replies, constrained
def test_pal_keeps_the_program_and_drops_the_prose_after_it():
    reply = "\ndef solution():\n    return 6 * 7\nThis program multiplies the numbers.\n"
    assert PAL(ScriptedLLM([reply]))("q").failure == "sandbox_error"  # the prose is a syntax error
    result = PAL(Conforming([reply]), constrain=True)("q")
    assert result.answer == "42" and result.program == "def solution():\n    return 6 * 7"


def test_self_consistency_samples_are_each_constrained():
    replies = [" So 4. The answer is 4.", " I am not sure, maybe 6.", " The answer is 5 or 6.", " The answer is 4"]
    assert SelfConsistency(CoT(ScriptedLLM(replies)), k=4)("q").votes == {"4": 2, "6": 1, "5": 1}
    model = Conforming(replies)
    result = SelfConsistency(CoT(model, constrain=True), k=4)("q")
    assert result.votes == {"4": 2, "5": 1} and result.samples[1].failure == "no_answer"
    assert len(model.constraints) == 4 and len(set(model.constraints)) == 1 and None not in model.constraints


def test_direct_answers_are_the_answer_alone():
    result = Direct(Conforming([" 18 apples, because 6 times 3 is 18"]), constrain=True)("q")
    assert result.answer == "18" and result.completions == [" 18"]
    result = Direct(Conforming([" Paris, I think.\nQuestion: next"]), answer="text", constrain=True)("q")
    assert result.answer == "Paris, I think" and result.completions == [" Paris, I think."]


def test_react_steps_and_reasks_are_constrained_to_the_episode_tools():
    model = Conforming(
        [
            " I should look it up.\nAction 1: Search[Mona Lisa]",
            " Leonardo painted it.\nAction 2: Finish[Leonardo da Vinci]",
        ]
    )
    result = ReAct(model, constrain=True)("Which Italian artist painted the Mona Lisa?")
    assert result.answer == "Leonardo da Vinci" and [s.status for s in result.trajectory.steps] == ["ok", "finish"]
    assert [c.lark.count("Action 1:") for c in model.constraints] == [1, 0]
    assert "Action 2:" in model.constraints[1].lark
    # a step that never gets to an action is re-asked, and the re-ask's reply is held to the action alone
    model = Conforming([" I am not sure what to do", " Finish[Leonardo] because he painted it"])
    result = ReAct(model, constrain=True)("q")
    step = result.trajectory.steps[0]
    assert step.reasked and step.status == "finish" and result.answer == "Leonardo"
    assert "Action 1:" not in model.constraints[1].lark and "\\n" in model.constraints[1].lark


# ------------------------------------------------------------------------ the constraints accept what is read
NUMBERS = ["18", "-2", "1,234", "1,234.5", "0.25", "$126", "-$3.50", "1000000"]


def exemplars(name: str) -> list[dict]:
    path = Path(__file__).parents[1] / "prompts" / "exemplars" / f"{name}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("form", ["text", "chat"])
def test_every_exemplar_is_a_reply_the_constraint_accepts(form):
    llm = instruct() if form == "chat" else ScriptedLLM([])
    for ex in exemplars("math"):
        assert matches(sent(Direct(llm, constrain=True)), " " + ex["answer"])
        assert matches(sent(CoT(llm, constrain=True)), " " + ex["rationale"])
        assert matches(sent(PAL(llm, constrain=True)), "\n" + ex["program"] + "\n")
    for ex in exemplars("wiki"):
        assert matches(sent(Direct(llm, answer="text", constrain=True)), " " + ex["answer"])
        assert matches(sent(CoT(llm, answer="text", constrain=True)), " " + ex["rationale"])
    react = ReAct(llm, constrain=True)
    calls = either(tool_call(t) for t in react.episode_tools())
    for ex in exemplars("react"):
        for n, step in enumerate(ex["steps"], 1):
            text = f" {step['thought']}\nAction {n}: {step['action']}"
            assert matches(react.action_constraint(react.config, calls, n), text)
            assert matches(react.action_constraint(react.reask_config, calls), " " + step["action"])


@pytest.mark.parametrize("number", NUMBERS)
def test_numeric_answers_are_read_as_the_number_written(number):
    value = parse_number(number)
    direct, cot = sent(Direct(ScriptedLLM([]), constrain=True)), sent(CoT(ScriptedLLM([]), constrain=True))
    for text in [f" {number}", f"{number}\nQuestion: next"]:
        assert matches(direct, text) and parse_number(extract_first_numeric(text)) == value
    for text in [f" 2 + 2 is 4. The answer is {number}.", f" The answer is {number}", f" x\nThe answer is {number}."]:
        assert matches(cot, text) and parse_number(extract_numeric_answer(text)) == value


@pytest.mark.parametrize("text", [" about 18", " 18 apples", " eighteen", "", " 18 19", "18.", " 1,23"])
def test_direct_numbers_reject_anything_but_a_number(text):
    assert not matches(sent(Direct(ScriptedLLM([]), constrain=True)), text)


@pytest.mark.parametrize(
    "text",
    [
        " 2 + 2 = 4.",  # no final answer
        " The answer is four.",
        " The answer is 4 apples.",
        " So 4.\n\nThe answer is 4.",  # a stop string before the answer: the reply would end there
        " The answer is 4.\nQuestion: next",  # a stop, then what follows it: fine
        " 2 + 2 = 4, so the final answer is: 4",
        " The answer is 3, no, 4. So the answer is 4.",
    ],
)
def test_cot_numbers_need_the_final_line(text):
    accepted = matches(sent(CoT(ScriptedLLM([]), constrain=True)), text)
    assert accepted is (text.endswith(("next", "4", "is 4.")) and "\n\n" not in text)
    if accepted:
        assert extract_numeric_answer(text) == "4"


def test_cot_text_answers_hold_no_second_answer():
    cot = sent(CoT(ScriptedLLM([]), answer="text", constrain=True))
    for good, read in [
        (" It is in Paris. The answer is Paris.", "Paris"),
        (" The answer is Paris, or the answer is Rome.", "Rome"),
        (" The final answer is: Leonardo da Vinci", "Leonardo da Vinci"),
    ]:
        assert matches(cot, good) and extract_text_answer(good) == read
    for bad in [" The answer is Rome, the answer: Paris.", ' The answer is "Paris".', " The answer is .", " Paris."]:
        assert not matches(cot, bad)


@pytest.mark.parametrize("form", ["text", "chat"])
def test_the_constraint_follows_the_stops_sent_in_each_form(form):
    cot = CoT(instruct() if form == "chat" else ScriptedLLM([]), constrain=True)
    reasoning_in_paragraphs = " 2 + 2 = 4.\n\nSo the sum is 4. The answer is 4."
    assert matches(sent(cot), reasoning_in_paragraphs) is (form == "chat")  # "\n\n" stops text form only


@pytest.mark.parametrize(
    "program",
    [
        "\ndef solution():\n    return 1\n",
        "def solution():\n    x = 2\n\n    if x:\n        return x\n    return 0",
        "\ndef solution():\n    return(3)\n```\nmore",
    ],
)
def test_pal_programs_of_the_skeleton_are_accepted_and_run_as_written(program):
    assert matches(sent(PAL(ScriptedLLM([]), constrain=True)), program)
    code = extract_code(cut_at_stop(program, PAL.default_config.stop)[0])
    compile(code, "solution", "exec")
    assert code.startswith("def solution():\n")


@pytest.mark.parametrize(
    "program",
    [
        "\nx = 1\ndef solution():\n    return x\n",  # code before the function
        "\ndef solution():\n    x = 1\n",  # no return
        "\ndef solution():\nreturn 1\n",  # not indented
        "\ndef solution():\n    return 1\nprint(solution())\n",  # code after the function
        "\ndef answer():\n    return 1\n",
    ],
)
def test_pal_rejects_other_shapes(program):
    assert not matches(sent(PAL(ScriptedLLM([]), constrain=True)), program)


# ------------------------------------------------------------------------------------------ ReAct's actions
@tool
def distance(origin: str, destination: str, unit: Literal["km", "mi"] = "km") -> str:
    """Returns the distance between two cities."""
    return "1 km"


@tool
def scale(value: float, times: int, exact: bool | None = None, places: int = 2) -> str:
    """Scales a value."""
    return str(value * times)


@tool
def shout(word: str = "hey", times: int = 1) -> str:
    """Shouts a word."""
    return word * times


@tool
def today() -> str:
    """Returns today's date."""
    return "today"


def agent() -> tuple[ReAct, list, str]:
    react = ReAct(ScriptedLLM([]), tools=[distance, scale, shout, today], constrain=True)
    tools = react.episode_tools()
    return react, tools, either(tool_call(t) for t in tools)


WELL_FORMED = [
    "Search[Mount Kilimanjaro]",
    "Lookup[population]",
    "Finish[26 June 2016]",
    "Finish[1,550 km]",
    "distance[Paris, Rome]",
    "distance[Paris,Rome, mi]",
    "distance[Paris, Rome, KM]",
    "scale[2.5, 3]",
    "scale[-1, 2, true]",
    "scale[.5, 10, none]",
    "scale[1e3, 1, No]",
    "scale[1, 2, , 3]",
    "scale[1, 2, yes, 3]",
    "today[]",
    "shout[]",
    "shout[now]",
    "shout[now, 2]",
    "shout[, 2]",
]
MALFORMED = [
    "Search[]",
    "Finish[ ]",
    'Finish[""]',
    "search[x]",
    "Google[x]",
    "Search(x)",
    "Search[x",
    "Search[a[b]]",
    "distance[Paris]",
    "distance[Paris, Rome, miles]",
    "scale[two, 3]",
    "scale[1.5, 2.5]",
    "today[now]",
    "Lookup[observation: x]",
    "scale[1, 2, 3]",
    "shout[2, x]",
]


@pytest.mark.parametrize("action", WELL_FORMED)
def test_well_formed_actions_are_accepted_and_parse_as_written(action):
    react, tools, calls = agent()
    by_name = {t.name: t for t in tools}
    for text in [f" I think.\nAction 3: {action}", f" I think. Action 3: {action}\nObservation 3: x"]:
        assert matches(react.action_constraint(react.config, calls, 3), text)
        parsed = parse_step(text)
        assert parsed.ok and f"{parsed.name}[{parsed.argument}]" == action
        by_name[parsed.name].convert(parsed.argument)  # the tool reads its arguments
    assert matches(react.action_constraint(react.reask_config, calls), " " + action)
    assert parse_action(" " + action).ok


@pytest.mark.parametrize("action", MALFORMED)
def test_malformed_actions_are_rejected(action):
    react, _tools, calls = agent()
    assert not matches(react.action_constraint(react.config, calls, 3), f" I think.\nAction 3: {action}")
    assert not matches(react.action_constraint(react.reask_config, calls), " " + action)


@pytest.mark.parametrize(
    "text",
    [
        " I think.\nAction 2: Search[x]",  # another step's label
        " I will act: Search[x].\nAction 3: Search[x]",  # a call inside the thought would be read first
        " The observation: nothing.\nAction 3: Search[x]",  # the parser would end the step at the label
        " Hmm.\nQuestion: what?\nAction 3: Search[x]",
        " Only a thought.",
    ],
)
def test_thoughts_cannot_hold_what_would_change_the_parse(text):
    react, _tools, calls = agent()
    assert not matches(react.action_constraint(react.config, calls, 3), text)


STEP_PIECES = [
    "I think",
    " act",
    ":",
    "[",
    "]",
    " Observation",
    "observation 2:",
    "\n",
    "Question:",
    "Action 3:",
    "Action 2: ",
    " Search[",
    "Finish[",
    "x",
    ",",
    " scale[1, 2]",
    '"',
    "today[]",
    "distance[a, b]",
]


def test_every_sampled_step_parses_to_one_of_the_tools():
    react, tools, calls = agent()
    by_name = {t.name: t for t in tools}
    rng = random.Random(7)
    actions = [*WELL_FORMED, *MALFORMED]
    for config, n, label in [(react.config, 3, "\nAction 3: "), (react.reask_config, None, " ")]:
        constraint = react.action_constraint(config, calls, n)
        texts = [
            walk(constraint, rng, STEP_PIECES, [label + a + rng.choice(["", "\nObservation 3"]) for a in actions])
            for _ in range(120)
        ]
        texts = [t for t in texts if t is not None]
        assert len(set(texts)) > 60 and len({parse_step(t).name for t in texts}) == len(tools)
        for text in texts:
            parsed = (parse_step if n else parse_action)(text)
            assert parsed.ok and parsed.name in by_name, text
            assert not (by_name[parsed.name].terminal and not parsed.argument), text
            by_name[parsed.name].convert(parsed.argument)


def test_every_sampled_answer_and_program_is_read():
    rng = random.Random(3)
    cot, pal = sent(CoT(ScriptedLLM([]), constrain=True)), sent(PAL(ScriptedLLM([]), constrain=True))
    numbers = [
        t
        for t in (
            walk(
                cot,
                rng,
                ["2 + 2 ", "is 4. ", "\n", "The answer is ", "12", ",345", ".", "$", "-"],
                ["The answer is 7."],
            )
            for _ in range(100)
        )
        if t is not None
    ]
    programs = [
        t
        for t in (
            walk(pal, rng, ["\n", "    ", "x = 1", "return ", "(", "def solution():", "```", "q"], ["\n    return 1\n"])
            for _ in range(100)
        )
        if t is not None
    ]
    assert len(numbers) > 50 and len(programs) > 50
    for text in numbers:
        last = list(re.finditer(r"(?i)the (final )?answer is", text))[-1]
        assert extract_numeric_answer(text) == extract_numeric_answer(text[last.end() :]), text
    for text in programs:
        code = extract_code(cut_at_stop(text, PAL.default_config.stop)[0])
        assert code.startswith("def solution():\n") and code.splitlines()[-1].lstrip().startswith("return"), text


# ------------------------------------------------------------------------------------ settings, CLI, benchmark
def test_settings_and_the_command_line_turn_it_on(tmp_path):
    model = Conforming(["The answer is 3."])
    strategy = build_strategy("cot-sc", model, Settings(constrain=True))
    assert strategy.constrain and strategy.base.constrain
    (tmp_path / "replies.json").write_text(json.dumps(["The answer is 3. And more", "The answer is 3. And more"]))
    for flag, said in ((["--constrain"], False), ([], True)):  # the scripted model honours the constraint
        result = CliRunner().invoke(
            main, ["run", "q", "-m", "cot", *flag, "--model", f"scripted:{tmp_path / 'replies.json'}"]
        )
        assert result.exit_code == 0 and "Answer: 3" in result.output, result.output
        assert ("And more" in result.output) is said, result.output


def test_the_chat_loop_switches_constraining():
    session = ChatSession(llm=Conforming(["The answer is 3."]), model_spec="scripted", mode="cot")
    session.handle("/constrain on")
    assert session.settings.constrain
    session.handle("What is 1 + 2?")
    assert session.last.answer == "3" and session.llm.constraints[0] is not None
    session.handle("/constrain off")
    assert not session.settings.constrain


def test_the_benchmark_records_the_flag_and_refuses_to_resume_with_another(tmp_path):
    out = tmp_path / "run"
    result = run_benchmark(
        "gsm8k-sample", ["cot", "pal"], Conforming(any_reply), output_dir=out, limit=2, constrain=True
    )
    assert json.loads((out / "config.json").read_text())["constrain"] is True
    assert result.accuracies == {"cot": 1.0, "pal": 1.0}
    with pytest.raises(BenchmarkError, match=r"different config \(constrain: True -> None\)"):
        run_benchmark("gsm8k-sample", "cot", Conforming(any_reply), output_dir=out, limit=2)
    plain = tmp_path / "plain"
    run_benchmark("gsm8k-sample", "cot", Conforming(any_reply), output_dir=plain, limit=2)
    assert "constrain" not in json.loads((plain / "config.json").read_text())  # older runs still resume
    with pytest.raises(BenchmarkError, match=r"constrain: None -> True"):
        run_benchmark("gsm8k-sample", "cot", Conforming(any_reply), output_dir=plain, limit=2, constrain=True)
    assert BenchmarkConfig.from_settings(Settings(constrain=True), dataset="gsm8k-sample").constrain


def test_a_custom_strategy_factory_builds_its_own_constraints():
    with pytest.raises(UsageError, match="strategy_factory"):
        run_benchmark(
            "gsm8k-sample", "cot", Conforming(any_reply), limit=1, constrain=True, strategy_factory=load_strategy
        )


# -------------------------------------------------------------------------------------- benchmarks/bench_constrained
def bench_module():
    import importlib.util

    path = Path(__file__).parents[1] / "benchmarks" / "bench_constrained.py"
    spec = importlib.util.spec_from_file_location("bench_constrained", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_constrained_benchmark_counts_format_failures_and_compares_the_arms():
    def reply(prompt: str) -> str:
        if "Thought 1:" in prompt or "Observation" in prompt:  # ReAct: an action only after a re-ask, unconstrained
            return " Finish[Leonardo da Vinci]" if prompt.endswith("Action 1:") else " I know it.\nAction 1: finish"
        if "def solution()" in prompt:
            return any_reply(prompt).replace("```", "This returns the answer.\n```")  # prose after the program
        return any_reply(prompt)

    bench = bench_module()
    rows = bench.measure(Conforming(reply), ["cot", "pal", "react"], limit=3)
    by = {row["method"]: row for row in rows}
    assert by["pal"]["off"]["counts"]["syntax"] == 3 and by["pal"]["off"]["accuracy"] == 0
    assert by["pal"]["on"]["counts"]["syntax"] == 0 and by["pal"]["on"]["accuracy"] == 1
    assert by["pal"]["comparison"].only_a == 3 and by["pal"]["comparison"].p_value == 0.25
    assert by["cot"]["off"]["counts"] == by["cot"]["on"]["counts"] == {"replies": 3}
    assert by["react"]["dataset"] == "wiki-sample" and by["react"]["off"]["counts"]["format"] == 0
    steps = [r["trajectory"]["steps"][0] for r in by["react"]["off"]["records"]]
    assert all(s["reasked"] and s["status"] == "finish" for s in steps)
    table = bench.table(rows)
    assert "pal on gsm8k-sample: constrained - unconstrained = +100.0%" in table and "McNemar p = 0.25" in table
    counts = bench.reply_failures("pal", {"failure": "length"}) + bench.reply_failures("pal", {"failure": "no_answer"})
    assert counts == {"replies": 2, "cut": 1, "format": 1}
