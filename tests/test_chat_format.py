"""Chat prompts for instruct models, without weights: the scripted model plays an instruct model by rendering
``Chat`` prompts through a chat template.

Golden tests render every strategy in chat form through chat templates written for them in the style of Llama 3,
Qwen (ChatML) and Gemma (tests/fixtures/chat_templates/) and assert the exact text; the text form is checked byte
for byte against the renderings stored before the chat form existed (tests/fixtures/text_prompts.json). Then:
which form a model gets, ReAct's one growing assistant turn, templates without a system role, and the prompt
format on the commands and in a benchmark's config.json. tests/test_chat_format_engine.py runs a tiny real model.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from agentkit import PAL, CoT, Direct, ReAct, ScriptedLLM, SelfConsistency, tool
from agentkit.cli import main
from agentkit.eval import run_benchmark
from agentkit.llm import Chat, Message
from agentkit.prompting import PromptError, Templates, resolve_prompt_format
from agentkit.strategies import METHODS, load_strategy
from agentkit.tools.wikipedia import OfflineCorpus

FIXTURE = Path(__file__).parent / "fixtures" / "text_prompts.json"

# Chat templates written for these tests in the style of three model families (bench_chat_prefix.py uses the
# Gemma one too).
CHAT_TEMPLATES = {
    name: (FIXTURE.parent / "chat_templates" / f"{name}.jinja").read_text(encoding="utf-8")
    for name in ("llama3", "chatml", "gemma")
}
CHATML, GEMMA = CHAT_TEMPLATES["chatml"], CHAT_TEMPLATES["gemma"]

# Short exemplars, so the golden text stays readable; the templates are the shipped ones.
EXEMPLARS = {
    "math": {
        "question": "Tom has 2 apples and buys 3 more. How many apples does he have?",
        "rationale": "He has 2 + 3 = 5 apples. The answer is 5.",
        "answer": "5",
        "program": "def solution():\n    return 2 + 3",
    },
    "react": {
        "question": "Where is Zorblatt Tower?",
        "steps": [
            {
                "thought": "I should search it.",
                "action": "Search[Zorblatt Tower]",
                "observation": "Zorblatt Tower is a tower in Fooville.",
            },
            {"thought": "It is in Fooville.", "action": "Finish[Fooville]"},
        ],
    },
}
CORPUS = [{"title": "Zorblatt Tower", "text": "Zorblatt Tower is a tower in Fooville. It was built in 1901."}]


def short_exemplars(directory: Path) -> Templates:
    """The shipped templates with the short exemplars above."""
    (directory / "exemplars").mkdir()
    for name, record in EXEMPLARS.items():
        (directory / "exemplars" / f"{name}.jsonl").write_text(json.dumps(record) + "\n")
    return Templates(directory)


@pytest.fixture
def templates(tmp_path):
    return short_exemplars(tmp_path)


def instruct(replies=(), template=GEMMA) -> ScriptedLLM:
    return ScriptedLLM(
        list(replies) if not callable(replies) else replies,
        name="instruct",
        chat_template=template,
        special_tokens={"bos_token": "<BOS>"},
    )


# The exact text each strategy sends in chat form (1-shot; CoT also 0-shot) through each template.
GOLDEN = {
    "llama3": {
        "direct": (
            "<BOS><|start_header_id|>system<|end_header_id|>\n"
            "\n"
            "Answer each question with a number.<|eot_id|><|start_header_id|>user<|end_header_id|>\n"
            "\n"
            "Question: Tom has 2 apples and buys 3 more. How many apples does he "
            "have?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
            "\n"
            "5<|eot_id|><|start_header_id|>user<|end_header_id|>\n"
            "\n"
            "Question: What is 4 + 4?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
            "\n"
        ),
        "cot": (
            "<BOS><|start_header_id|>system<|end_header_id|>\n"
            "\n"
            'Answer each question. Reason step by step, then end with "The answer is" and the '
            "number.<|eot_id|><|start_header_id|>user<|end_header_id|>\n"
            "\n"
            "Question: Tom has 2 apples and buys 3 more. How many apples does he "
            "have?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
            "\n"
            "He has 2 + 3 = 5 apples. The answer is 5.<|eot_id|><|start_header_id|>user<|end_header_id|>\n"
            "\n"
            "Question: What is 4 + 4?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
            "\n"
        ),
        "cot-0": (
            "<BOS><|start_header_id|>system<|end_header_id|>\n"
            "\n"
            'Answer each question. Reason step by step, then end with "The answer is" and the '
            "number.<|eot_id|><|start_header_id|>user<|end_header_id|>\n"
            "\n"
            "Question: What is 4 + 4?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
            "\n"
            "Let's think step by step."
        ),
        "pal": (
            "<BOS><|start_header_id|>system<|end_header_id|>\n"
            "\n"
            "Answer each question by writing a Python function solution() that computes and returns the "
            "answer.<|eot_id|><|start_header_id|>user<|end_header_id|>\n"
            "\n"
            "Question: Tom has 2 apples and buys 3 more. How many apples does he "
            "have?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
            "\n"
            "```python\n"
            "def solution():\n"
            "    return 2 + 3\n"
            "```<|eot_id|><|start_header_id|>user<|end_header_id|>\n"
            "\n"
            "Question: What is 4 + 4?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
            "\n"
            "```python"
        ),
        "react": (
            "<BOS><|start_header_id|>system<|end_header_id|>\n"
            "\n"
            "Answer the question by writing Thought, Action and Observation steps in turn. In a Thought, reason "
            "about what you know so far and what to do next. An Action must be exactly one of:\n"
            "(1) Search[entity]: Searches the exact entity on Wikipedia and returns the first sentences of its page "
            "if it exists; otherwise it returns similar entities to search.\n"
            "(2) Lookup[keyword]: Returns the next sentence containing the keyword in the current page.\n"
            "(3) Finish[answer]: Returns the answer and finishes the "
            "task.<|eot_id|><|start_header_id|>user<|end_header_id|>\n"
            "\n"
            "Question: Where is Zorblatt Tower?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
            "\n"
            "Thought 1: I should search it.\n"
            "Action 1: Search[Zorblatt Tower]\n"
            "Observation 1: Zorblatt Tower is a tower in Fooville.\n"
            "Thought 2: It is in Fooville.\n"
            "Action 2: Finish[Fooville]<|eot_id|><|start_header_id|>user<|end_header_id|>\n"
            "\n"
            "Question: Where is Zorblatt Tower?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
            "\n"
            "Thought 1: I should search it.\n"
            "Action 1: Search[Zorblatt Tower]\n"
            "Observation 1: Zorblatt Tower is a tower in Fooville. It was built in 1901.\n"
            "Thought 2:"
        ),
    },
    "chatml": {
        "direct": (
            "<|im_start|>system\n"
            "Answer each question with a number.<|im_end|>\n"
            "<|im_start|>user\n"
            "Question: Tom has 2 apples and buys 3 more. How many apples does he have?<|im_end|>\n"
            "<|im_start|>assistant\n"
            "5<|im_end|>\n"
            "<|im_start|>user\n"
            "Question: What is 4 + 4?<|im_end|>\n"
            "<|im_start|>assistant\n"
        ),
        "cot": (
            "<|im_start|>system\n"
            'Answer each question. Reason step by step, then end with "The answer is" and the number.<|im_end|>\n'
            "<|im_start|>user\n"
            "Question: Tom has 2 apples and buys 3 more. How many apples does he have?<|im_end|>\n"
            "<|im_start|>assistant\n"
            "He has 2 + 3 = 5 apples. The answer is 5.<|im_end|>\n"
            "<|im_start|>user\n"
            "Question: What is 4 + 4?<|im_end|>\n"
            "<|im_start|>assistant\n"
        ),
        "cot-0": (
            "<|im_start|>system\n"
            'Answer each question. Reason step by step, then end with "The answer is" and the number.<|im_end|>\n'
            "<|im_start|>user\n"
            "Question: What is 4 + 4?<|im_end|>\n"
            "<|im_start|>assistant\n"
            "Let's think step by step."
        ),
        "pal": (
            "<|im_start|>system\n"
            "Answer each question by writing a Python function solution() that computes and returns the "
            "answer.<|im_end|>\n"
            "<|im_start|>user\n"
            "Question: Tom has 2 apples and buys 3 more. How many apples does he have?<|im_end|>\n"
            "<|im_start|>assistant\n"
            "```python\n"
            "def solution():\n"
            "    return 2 + 3\n"
            "```<|im_end|>\n"
            "<|im_start|>user\n"
            "Question: What is 4 + 4?<|im_end|>\n"
            "<|im_start|>assistant\n"
            "```python"
        ),
        "react": (
            "<|im_start|>system\n"
            "Answer the question by writing Thought, Action and Observation steps in turn. In a Thought, reason "
            "about what you know so far and what to do next. An Action must be exactly one of:\n"
            "(1) Search[entity]: Searches the exact entity on Wikipedia and returns the first sentences of its page "
            "if it exists; otherwise it returns similar entities to search.\n"
            "(2) Lookup[keyword]: Returns the next sentence containing the keyword in the current page.\n"
            "(3) Finish[answer]: Returns the answer and finishes the task.<|im_end|>\n"
            "<|im_start|>user\n"
            "Question: Where is Zorblatt Tower?<|im_end|>\n"
            "<|im_start|>assistant\n"
            "Thought 1: I should search it.\n"
            "Action 1: Search[Zorblatt Tower]\n"
            "Observation 1: Zorblatt Tower is a tower in Fooville.\n"
            "Thought 2: It is in Fooville.\n"
            "Action 2: Finish[Fooville]<|im_end|>\n"
            "<|im_start|>user\n"
            "Question: Where is Zorblatt Tower?<|im_end|>\n"
            "<|im_start|>assistant\n"
            "Thought 1: I should search it.\n"
            "Action 1: Search[Zorblatt Tower]\n"
            "Observation 1: Zorblatt Tower is a tower in Fooville. It was built in 1901.\n"
            "Thought 2:"
        ),
    },
    "gemma": {
        "direct": (
            "<BOS><start_of_turn>user\n"
            "Answer each question with a number.\n"
            "\n"
            "Question: Tom has 2 apples and buys 3 more. How many apples does he have?<end_of_turn>\n"
            "<start_of_turn>model\n"
            "5<end_of_turn>\n"
            "<start_of_turn>user\n"
            "Question: What is 4 + 4?<end_of_turn>\n"
            "<start_of_turn>model\n"
        ),
        "cot": (
            "<BOS><start_of_turn>user\n"
            'Answer each question. Reason step by step, then end with "The answer is" and the number.\n'
            "\n"
            "Question: Tom has 2 apples and buys 3 more. How many apples does he have?<end_of_turn>\n"
            "<start_of_turn>model\n"
            "He has 2 + 3 = 5 apples. The answer is 5.<end_of_turn>\n"
            "<start_of_turn>user\n"
            "Question: What is 4 + 4?<end_of_turn>\n"
            "<start_of_turn>model\n"
        ),
        "cot-0": (
            "<BOS><start_of_turn>user\n"
            'Answer each question. Reason step by step, then end with "The answer is" and the number.\n'
            "\n"
            "Question: What is 4 + 4?<end_of_turn>\n"
            "<start_of_turn>model\n"
            "Let's think step by step."
        ),
        "pal": (
            "<BOS><start_of_turn>user\n"
            "Answer each question by writing a Python function solution() that computes and returns the answer.\n"
            "\n"
            "Question: Tom has 2 apples and buys 3 more. How many apples does he have?<end_of_turn>\n"
            "<start_of_turn>model\n"
            "```python\n"
            "def solution():\n"
            "    return 2 + 3\n"
            "```<end_of_turn>\n"
            "<start_of_turn>user\n"
            "Question: What is 4 + 4?<end_of_turn>\n"
            "<start_of_turn>model\n"
            "```python"
        ),
        "react": (
            "<BOS><start_of_turn>user\n"
            "Answer the question by writing Thought, Action and Observation steps in turn. In a Thought, reason "
            "about what you know so far and what to do next. An Action must be exactly one of:\n"
            "(1) Search[entity]: Searches the exact entity on Wikipedia and returns the first sentences of its page "
            "if it exists; otherwise it returns similar entities to search.\n"
            "(2) Lookup[keyword]: Returns the next sentence containing the keyword in the current page.\n"
            "(3) Finish[answer]: Returns the answer and finishes the task.\n"
            "\n"
            "Question: Where is Zorblatt Tower?<end_of_turn>\n"
            "<start_of_turn>model\n"
            "Thought 1: I should search it.\n"
            "Action 1: Search[Zorblatt Tower]\n"
            "Observation 1: Zorblatt Tower is a tower in Fooville.\n"
            "Thought 2: It is in Fooville.\n"
            "Action 2: Finish[Fooville]<end_of_turn>\n"
            "<start_of_turn>user\n"
            "Question: Where is Zorblatt Tower?<end_of_turn>\n"
            "<start_of_turn>model\n"
            "Thought 1: I should search it.\n"
            "Action 1: Search[Zorblatt Tower]\n"
            "Observation 1: Zorblatt Tower is a tower in Fooville. It was built in 1901.\n"
            "Thought 2:"
        ),
    },
}


@pytest.mark.parametrize("style", list(CHAT_TEMPLATES))
def test_every_strategy_renders_in_chat_form_exactly(style, templates):
    expected = GOLDEN[style]
    llm = instruct(lambda _prompt: "The answer is 8.", CHAT_TEMPLATES[style])
    question = "What is 4 + 4?"
    for strategy, key in [
        (Direct(llm, shots=1, templates=templates), "direct"),
        (CoT(llm, shots=1, templates=templates), "cot"),
        (CoT(llm, shots=0, templates=templates), "cot-0"),
        (PAL(llm, shots=1, templates=templates), "pal"),
        (SelfConsistency(CoT(llm, shots=1, templates=templates), k=2), "cot"),
        (SelfConsistency(CoT(llm, shots=0, templates=templates), k=2), "cot-0"),
        (SelfConsistency(PAL(llm, shots=1, templates=templates), k=2), "pal"),
    ]:
        llm.prompts.clear()
        result = strategy(question)
        assert llm.prompts and set(llm.prompts) == {expected[key]}, (strategy.name, key)
        assert result.prompt == expected[key]  # the record holds the exact text sent

    replies = [" I should search it.\nAction 1: Search[Zorblatt Tower]", " Done.\nAction 2: Finish[Fooville]"]
    react_llm = instruct(replies, CHAT_TEMPLATES[style])
    result = ReAct(react_llm, shots=1, templates=templates, corpus=OfflineCorpus.from_records(CORPUS))(
        "Where is Zorblatt Tower?"
    )
    first, second = react_llm.prompts
    assert second == expected["react"]
    assert result.prompt == first and second.startswith(first) and first.endswith("Thought 1:")
    assert result.answer == "Fooville"


def test_the_text_form_is_unchanged_byte_for_byte():
    stored = json.loads(FIXTURE.read_text(encoding="utf-8"))
    assert text_prompts() == stored


def text_prompts() -> dict[str, str]:
    """Every strategy's text-form prompts over the shipped templates and exemplars (the golden file's cases)."""
    records = [
        {
            "title": "Zorblatt Tower",
            "text": "Zorblatt Tower is a tower in Fooville. It was built in 1901 by Ada Quill. "
            "The tower is 120 m tall.",
        },
        {"title": "Ada Quill", "text": "Ada Quill (1850 \u2013 1930) was an engineer. She was born in Barton."},
    ]
    question, wiki_question = "A shop sells 3 pens for $4. How much do 12 pens cost?", "Who built Zorblatt Tower?"

    @tool
    def calculator(expression: str) -> str:
        """Evaluates an arithmetic expression.

        Args:
            expression: the expression, e.g. 2 + 3 * 4
        """
        return "0"

    out = {}
    llm = ScriptedLLM([])
    for cls in (Direct, CoT):
        for answer, most in (("number", 8), ("text", 6)):
            for shots in range(most + 1):
                strategy = cls(llm, shots=shots, answer=answer)
                out[f"{cls.name}-{answer}-{shots}"] = strategy.prompt(question if answer == "number" else wiki_question)
    for shots in range(9):
        out[f"pal-{shots}"] = PAL(llm, shots=shots).prompt(question)
    corpus = OfflineCorpus.from_records(records)
    for shots in range(7):
        out[f"react-{shots}"] = ReAct(llm, shots=shots, corpus=corpus).prompt(wiki_question)
    out["react-tools-2"] = ReAct(llm, shots=2, corpus=corpus, tools=[calculator]).prompt(wiki_question)
    out["react-nocorpus-1"] = ReAct(llm, shots=1, corpus=None, tools=[calculator]).prompt(wiki_question)
    scripted = ScriptedLLM(REACT_REPLIES)  # a search, a re-ask, an unknown tool, a failed re-ask, a finish
    ReAct(scripted, shots=1, corpus=corpus)(wiki_question)
    out.update({f"react-episode-{i}": p for i, p in enumerate(scripted.prompts)})
    sc = ScriptedLLM(["The answer is 16."] * 3)
    SelfConsistency(CoT(sc, shots=2), k=3)(question)
    out["cot-sc-2"] = sc.prompts[0]
    return out


REACT_REPLIES = [
    " I need to find the tower.\nAction 1: Search[Zorblatt Tower]\nObservation 1: made up",
    " Look it up. I will search",
    " Lookup[built]",
    " Try a tool.\nAction 3: Fly[Moon]",
    " Hmm.",
    " nothing here",
    " It was Ada Quill.\nAction 5: Finish[Ada Quill]",
]


class Recording(ScriptedLLM):
    """Also records the generation settings of every call."""

    def generate(self, prompts, config=None):
        self.configs = [*getattr(self, "configs", []), config]
        return super().generate(prompts, config)


def test_react_in_chat_form_extends_one_assistant_turn_with_the_same_loop():
    corpus = OfflineCorpus.from_records(CORPUS)
    text_llm, chat_llm = Recording(REACT_REPLIES), Recording(REACT_REPLIES, chat_template=CHATML)
    as_text = ReAct(text_llm, shots=1, corpus=corpus)("Who built Zorblatt Tower?")
    as_chat = ReAct(chat_llm, shots=1, corpus=corpus)("Who built Zorblatt Tower?")

    def steps(result):  # prompt sizes differ between the forms, of course
        return [s.model_dump(exclude={"tool_seconds", "prompt_tokens"}) for s in result.trajectory.steps]

    assert steps(as_chat) == steps(as_text) and as_chat.answer == "Ada Quill"
    assert [s.status for s in as_chat.trajectory.steps] == ["ok", "ok", "unknown_tool", "malformed", "finish"]
    assert chat_llm.configs == text_llm.configs  # the same stop strings and limits, re-asks included
    head = as_chat.prompt.removesuffix("Thought 1:")
    assert head.endswith("<|im_start|>user\nQuestion: Who built Zorblatt Tower?<|im_end|>\n<|im_start|>assistant\n")
    text_head = as_text.prompt.removesuffix("Thought 1:")
    for text_prompt, chat_prompt in zip(text_llm.prompts, chat_llm.prompts, strict=True):
        # one assistant message, extended: the same scratchpad as the text form, after the chat head
        assert chat_prompt.startswith(head) and "<|im_end|>" not in chat_prompt[len(head) :]
        assert chat_prompt[len(head) :] == text_prompt[len(text_head) :]
    assert "\nAction 2:" in chat_llm.prompts[2][len(head) :]  # the re-ask writes "Action n:" into the same turn


def test_which_form_a_model_gets():
    base, chat_model = ScriptedLLM([], name="base-model"), instruct()
    assert resolve_prompt_format("auto", base) == "text" and resolve_prompt_format("auto", chat_model) == "chat"
    assert resolve_prompt_format("text", chat_model) == "text" and resolve_prompt_format("chat", chat_model) == "chat"
    with pytest.raises(PromptError, match="model base-model has no chat template.*--prompt-format text"):
        resolve_prompt_format("chat", base)
    with pytest.raises(PromptError, match="one of auto, text, chat; got 'json'"):
        resolve_prompt_format("json", chat_model)
    with pytest.raises(PromptError, match="base-model"):  # refused when the strategy is made, before any run
        load_strategy("react", base, prompt_format="chat")
    assert isinstance(load_strategy("cot-sc", chat_model, prompt_format="text").base.prompt("q"), str)
    assert isinstance(load_strategy("pal-sc", chat_model).base.prompt("q"), Chat)


def test_every_method_in_chat_form_records_the_text_it_sent():
    llm = instruct(lambda _prompt: " It is 8.\nAction 1: Finish[8]\nThe answer is 8.")
    for method in METHODS:
        llm.prompts.clear()
        result = load_strategy(method, llm, shots=1, k=2)(f"What is 4 + 4? ({method})")
        assert result.prompt == llm.prompts[0] and result.prompt.startswith("<BOS><start_of_turn>user\n")


def test_cot_in_chat_form_leaves_the_end_of_an_answer_to_the_end_of_turn():
    text, chat = CoT(ScriptedLLM([])), CoT(instruct())
    assert "\n\n" in text.config_for_format(text.config).stop
    assert chat.config_for_format(chat.config).stop == ["\nQuestion:"]  # an instruct model may write paragraphs
    llm = Recording(["Step one.\n\nStep two. The answer is 8."] * 2, chat_template=CHATML)
    assert CoT(llm, shots=0)("What is 4 + 4?").answer == "8"
    assert SelfConsistency(CoT(llm, shots=0), k=1)("What is 4 + 4?").answer == "8"
    assert all("\n\n" not in config.stop for config in llm.configs)


def test_a_template_without_a_system_role_gets_the_instructions_in_the_first_user_turn():
    strict = (
        "{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('System role not supported') }}"
        "{% endif %}[{{ m.role }}]{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}"
    )
    llm = instruct(["8"], strict)
    result = Direct(llm, shots=0)("What is 4 + 4?")
    assert result.prompt == "[user]Answer each question with a number.\n\nQuestion: What is 4 + 4?\n[assistant]"
    assert llm.render(Chat(messages=(Message(role="user", content="hi"),))) == "[user]hi\n[assistant]"


def test_a_user_template_without_chat_parts_is_refused_in_chat_form(tmp_path):
    (tmp_path / "cot.jinja").write_text("{{ question }}\nAnswer:")
    own = Templates(tmp_path)
    assert CoT(ScriptedLLM([]), templates=own, shots=0).prompt("q") == "q\nAnswer:"  # text form: as before
    with pytest.raises(
        PromptError,
        match=r"template 'cot' .* no chat form: define the macros instructions\(\), "
        r"ask\(\), reply\(\).*--prompt-format text",
    ):
        CoT(instruct(), templates=own, shots=0).prompt("q")


def test_the_benchmark_records_the_prompt_format_sent(tmp_path):
    llm = instruct(lambda _prompt: "8")
    result = run_benchmark("gsm8k-sample", "direct", llm, output_dir=tmp_path / "chat", limit=2, shots=1)
    assert json.loads((tmp_path / "chat" / "config.json").read_text())["prompt_format"] == "chat"
    assert result.config["prompt_format"] == "chat" and llm.prompts[0].startswith("<BOS><start_of_turn>user")
    assert "prompt format: chat" in (tmp_path / "chat" / "results.md").read_text()
    with pytest.raises(Exception, match="different config.*prompt_format: 'chat' -> 'text'"):
        run_benchmark(
            "gsm8k-sample", "direct", llm, output_dir=tmp_path / "chat", limit=2, shots=1, prompt_format="text"
        )
    with pytest.raises(PromptError, match="has no chat template"):
        run_benchmark("gsm8k-sample", "direct", ScriptedLLM([]), output_dir=tmp_path / "refused", prompt_format="chat")
    assert not (tmp_path / "refused").exists()  # refused before anything was written
    old = tmp_path / "old"  # a run from before the field: it sent text, and resumes as text
    run_benchmark("gsm8k-sample", "direct", ScriptedLLM(["8"] * 2), output_dir=old, limit=1)
    config = json.loads((old / "config.json").read_text())
    del config["prompt_format"]
    (old / "config.json").write_text(json.dumps(config))
    run_benchmark("gsm8k-sample", "direct", ScriptedLLM(["8"]), output_dir=old, limit=2)


def test_the_commands_take_prompt_format(tmp_path):
    replies = tmp_path / "replies.json"
    replies.write_text('["The answer is 8."]')
    refused = CliRunner().invoke(
        main, ["run", "What is 4 + 4?", "--model", f"scripted:{replies}", "--prompt-format", "chat"]
    )
    assert refused.exit_code == 1
    assert f"model scripted:{replies.name} has no chat template" in refused.output
    shown = CliRunner().invoke(main, ["ls", "--model", f"scripted:{replies}"])
    assert shown.exit_code == 0
    assert "prompt format: text (model scripted:replies.json has no chat template" in shown.output
    bench = CliRunner().invoke(
        main,
        [
            "bench",
            "--dataset",
            "gsm8k-sample",
            "--method",
            "direct",
            "--limit",
            "1",
            "--model",
            f"scripted:{replies}",
            "--prompt-format",
            "text",
            "-q",
            "--output-dir",
            str(tmp_path / "run"),
        ],
    )
    assert bench.exit_code == 0, bench.output
    assert json.loads((tmp_path / "run" / "config.json").read_text())["prompt_format"] == "text"
    chat = CliRunner().invoke(main, ["chat", "--model", f"scripted:{replies}", "--prompt-format", "chat"], input="hi\n")
    assert "has no chat template" in chat.output


if __name__ == "__main__" and sys.argv[1:] == ["--write-golden"]:
    # Only after a deliberate change of the text form: rewrite the stored renderings, then review the diff.
    FIXTURE.write_text(json.dumps(text_prompts(), indent=1, ensure_ascii=False), encoding="utf-8")
