"""Direct, chain-of-thought, PAL and self-consistency, driven by scripted models."""

import pytest

from agentkit import PAL, CoT, Direct, ScriptedLLM, SelfConsistency
from agentkit.strategies import UnknownMethod, load_strategy
from agentkit.strategies.pal import extract_code, numeric_value

PROGRAM = "def solution():\n    apples = 6\n    return apples * 7\n"


def test_direct_takes_the_first_number_and_records_the_prompt():
    llm = ScriptedLLM([" $1,250.00 in total\nQuestion: next"])
    result = Direct(llm, shots=3)("How much?")
    assert result.answer == "1250" and result.failure is None
    assert result.prompt.count("Question:") == 4 and result.prompt.endswith("Question: How much?\nAnswer:")
    assert result.completions == [" $1,250.00 in total"]  # cut at the stop string


def test_cot_extracts_after_the_answer_is_not_the_last_number():
    llm = ScriptedLLM([" 3 boxes of 4 is 12. The answer is 12. I checked it with 2 methods."])
    assert CoT(llm)("q").answer == "12"


def test_cot_zero_shot_uses_the_step_by_step_cue():
    llm = ScriptedLLM([" 2 + 2 = 4, then minus 5 gives -1."])
    result = CoT(llm, shots=0)("q")
    assert result.prompt.endswith("Let's think step by step.")
    assert result.answer == "-1"


@pytest.mark.parametrize("text, reason", [(" I do not know.", "no_answer"), (" and then", "no_answer")])
def test_no_number_is_recorded_not_raised(text, reason):
    result = CoT(ScriptedLLM([text]))("q")
    assert result.answer is None and result.failure == reason


def test_cut_off_generation_is_recorded_as_length():
    words = " ".join(["more"] * 50)
    result = CoT(ScriptedLLM([words]), config=CoT.default_config.model_copy(update={"max_new_tokens": 5}))("q")
    assert result.failure == "length"


@pytest.mark.parametrize(
    "completion, expected",
    [
        ("\n" + PROGRAM + "```\nQuestion: next", PROGRAM.strip("\n")),
        ("```python\n" + PROGRAM + "```\ntrailing", PROGRAM.strip("\n")),
        ("```\n" + PROGRAM, PROGRAM.strip("\n")),
        ("    def solution():\n        return 1\n", "def solution():\n    return 1"),
        (PROGRAM + "\nQuestion: another one", PROGRAM.strip("\n")),
    ],
)
def test_extract_code_handles_fenced_bare_and_separators(completion, expected):
    assert extract_code(completion) == expected


@pytest.mark.parametrize(
    "value, expected",
    [
        (42, "42"),
        (42.0, "42"),
        (2.5, "2.5"),
        ("$18", "18"),
        (True, None),
        ([1], None),
        (None, None),
        # exact at any size: no float rounding, no OverflowError, and the sandbox's exact texts read exactly
        (10**400, "1" + "0" * 400),
        (2**53 + 1, "9007199254740993"),
        ("1E+400", "1" + "0" * 400),
        ("-12/4", "-3"),
        ("1/4", "0.25"),
        ("1/" + "1" + "0" * 400, "0." + "0" * 399 + "1"),
        (float("inf"), None),
        # beyond MAX_DIGITS digits: unreadable, not read as its mantissa; a float's own digits, not six decimals
        ("1E+10000", None),
        ("-2.5E-10000", None),
        ("1" * 5000, None),
        (1e-7, "0.0000001"),
        (0.1 + 0.2, "0.3"),
    ],
)
def test_numeric_value(value, expected):
    assert numeric_value(value) == expected


class FakeSandbox:
    """Runs nothing; returns what the test says (the real sandbox is tested in test_sandbox*.py)."""

    def __init__(self, value=None, error=None):
        self.value, self.error, self.sources = value, error, []

    def run(self, source):
        from agentkit.tools.sandbox import ExecResult

        self.sources.append(source)
        kind = "ok" if self.error is None else "exception"
        return ExecResult(ok=self.error is None, value=self.value, error=self.error, kind=kind)


def test_pal_runs_the_extracted_program():
    sandbox = FakeSandbox(value=42)
    result = PAL(ScriptedLLM(["\n" + PROGRAM + "```"]), sandbox=sandbox)("q")
    assert sandbox.sources == [PROGRAM.strip("\n")]
    assert result.answer == "42" and result.program == PROGRAM.strip("\n")


@pytest.mark.parametrize(
    "sandbox, error, failure",
    [
        (FakeSandbox(error="ZeroDivisionError: division by zero"), "ZeroDivisionError", "sandbox_error"),
        (FakeSandbox(value="many"), "not a number", "unreadable_result"),
    ],
)
def test_pal_failures_are_recorded_with_code_and_error(sandbox, error, failure):
    result = PAL(ScriptedLLM([PROGRAM]), sandbox=sandbox)("q")
    assert result.answer is None and result.failure == failure
    assert error in result.error and result.program


@pytest.mark.parametrize(
    "value",
    [
        "1" * 5000,  # what the sandbox returns for an integral Decimal of thousands of digits
        "1" + "0" * 5000 + "/3",  # ... and for Fraction(10**5000, 3)
        "1E+10000",
        "-2.5E-10000",
        10**5000,
        "many",
        [1, 2],
    ],
    ids=lambda v: f"{type(v).__name__}-{len(str(v)) if not isinstance(v, int) else v.bit_length()}",
)
def test_a_result_that_is_not_a_readable_number_is_a_recorded_failure_of_its_own(value):
    result = PAL(ScriptedLLM(["\n" + PROGRAM + "```"]), sandbox=FakeSandbox(value=value))("q")
    assert result.answer is None and result.failure == "unreadable_result", result.error
    assert "not a number" in result.error and len(result.error) < 300 and result.program


def test_a_result_beyond_float_range_stays_exact():
    result = PAL(ScriptedLLM(["\n" + PROGRAM + "```"]), sandbox=FakeSandbox(value="1" + "0" * 400 + "/3"))("q")
    assert result.answer == "1" + "0" * 400 + "/3"


def test_a_program_cut_by_the_token_limit_is_a_truncation_not_a_sandbox_error():
    config = PAL.default_config.model_copy(update={"max_new_tokens": 6})
    llm = ScriptedLLM(["\ndef solution():\n    total = 3 + 4 + 5 + 6 + 7\n    return total\n```"])
    result = PAL(llm, config=config)("q")  # the real sandbox: the cut program fails
    assert result.failure == "length" and "max_new_tokens" in result.error and result.program
    assert result.execution["ok"] is False


def test_self_consistency_counts_different_small_numbers_as_different_votes():
    from agentkit.tools.sandbox import ExecResult

    class Sandbox(FakeSandbox):  # each sample's program returns what its source says
        def run(self, source):
            return ExecResult(ok=True, value=float(source.rsplit(" ", 1)[1]), kind="ok")

    programs = [f"\ndef solution():\n    return {v}\n```" for v in ("1e-7", "0", "0", "1e-7", "1e-7")]
    sc = SelfConsistency(PAL(ScriptedLLM(programs), sandbox=Sandbox()), k=5)
    result = sc("q")
    assert result.votes == {"0.0000001": 3, "0": 2} and result.answer == "0.0000001"


def test_pal_with_no_code_is_a_recorded_failure():
    result = PAL(ScriptedLLM(["```"]), sandbox=FakeSandbox(value=1))("q")
    assert result.failure == "no_answer" and result.answer is None


def test_pal_with_the_real_sandbox():
    result = PAL(ScriptedLLM(["\n" + PROGRAM + "```"]))("How many?")
    assert result.answer == "42", result.error
    assert result.execution["ok"] is True


def test_self_consistency_votes_on_normalized_answers_with_distinct_seeds():
    llm = ScriptedLLM(["The answer is 18.", "The answer is $18.00", "The answer is 20.", "nothing", "18.0"])
    sc = SelfConsistency(CoT(llm), k=5)
    result = sc("q")
    assert result.answer == "18" and result.votes == {"18": 3, "20": 1}
    assert len(result.samples) == 5 and result.samples[3].failure == "no_answer"
    assert len({c.seed for c in sc.sample_configs}) == 5
    assert all(c.do_sample for c in sc.sample_configs)
    assert len(set(llm.prompts)) == 1  # one prompt, k samples


def test_self_consistency_breaks_ties_by_first_appearance():
    replies = ["The answer is 7.", "The answer is 3.", "The answer is 3.", "The answer is 7."]
    result = SelfConsistency(CoT(ScriptedLLM(replies)), k=4)("q")
    assert result.answer == "7"


def test_self_consistency_with_no_answers_records_the_failure():
    result = SelfConsistency(CoT(ScriptedLLM(["none"] * 3)), k=3)("q")
    assert result.answer is None and result.failure == "no_answer"


def test_pal_sc_runs_every_sampled_program():
    sandbox = FakeSandbox(value=5)
    sc = load_strategy("pal-sc", ScriptedLLM([PROGRAM] * 3), k=3, sandbox=sandbox)
    result = sc("q")
    assert result.answer == "5" and len(sandbox.sources) == 3 and result.votes == {"5": 3}


def test_batch_answers_many_questions_in_order():
    llm = ScriptedLLM(lambda p: " The answer is " + p.rsplit("Question: ", 1)[1].split("?")[0] + ".")
    results = CoT(llm).batch([f"{i}?" for i in range(10)], batch_size=4)
    assert [r.answer for r in results] == [str(i) for i in range(10)]


def test_load_strategy_overlays_settings_and_rejects_unknown_names():
    s = load_strategy("cot", ScriptedLLM([]), config={"max_new_tokens": 64})
    assert s.config.max_new_tokens == 64 and s.config.stop == CoT.default_config.stop
    with pytest.raises(UnknownMethod, match="unknown method 'magic'.*cot-sc"):
        load_strategy("magic")


def test_text_answers_for_direct_and_cot():
    cot = CoT(ScriptedLLM([" It stands in Tanzania. The answer is Indian Ocean."]), answer="text", shots=2)
    result = cot("Which ocean?")
    assert result.answer == "Indian Ocean"
    assert "Mount Kilimanjaro" in result.prompt and "short answer" in result.prompt
    direct = Direct(ScriptedLLM([" Gustave Eiffel.\nQuestion: more"]), answer="text")
    assert direct("Who?").answer == "Gustave Eiffel"
    assert CoT(ScriptedLLM([" I think it is Peru."]), answer="text")("q").failure == "no_answer"
    with pytest.raises(ValueError, match="answer must be one of"):
        CoT(ScriptedLLM([]), answer="words")


def test_react_cot_sc_falls_back_to_text_cot():
    strategy = load_strategy("react-cot-sc", ScriptedLLM([]), k=3)
    assert strategy.fallback.base.answer == "text" and strategy.fallback.k == 3
    assert load_strategy("cot", ScriptedLLM([])).answer == "number"
    assert load_strategy("cot-sc", ScriptedLLM([]), answer="text").base.exemplar_set == "wiki"


def test_a_single_call_strategy_may_interpret_plainly_or_as_an_episode():
    from agentkit.runtime import Event
    from agentkit.strategies.base import Interpretation, SingleCall

    class Shout(SingleCall):
        name = template = "direct"

        def interpret(self, completion):
            return Interpretation(answer=completion.text.strip().upper())

    class ShoutAloud(Shout):
        def interpret(self, completion):
            yield Event("thought", "shouting")
            return Interpretation(answer=completion.text.strip().upper())

    events = []
    assert Shout(ScriptedLLM([" hi"]))("q").answer == "HI"
    result = ShoutAloud(ScriptedLLM([" hi"]))("q", on_event=events.append)
    assert result.answer == "HI" and [e.kind for e in events] == ["thought", "answer"]
    sc = SelfConsistency(Shout(ScriptedLLM([" a", " b", " a"]), answer="text"), k=3)("q")
    assert sc.answer == "A" and sc.votes == {"a": 2, "b": 1} and len(sc.samples) == 3
