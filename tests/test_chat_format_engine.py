"""Chat prompts through the real engine, on a tiny instruct-style model built here: random weights, a byte-level
tokenizer with Gemma-style turn tokens and a chat template, saved and loaded like any model directory.

Every method runs in chat form (the prompts and records are asserted, not the answers: the weights are random),
prefix reuse still hits on the shared system + exemplar turns, our ``render_chat`` renders exactly what
transformers' ``apply_chat_template`` does, and the CLI shows and uses the prompt format.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from agentkit.llm import Chat, GenerationConfig, Message, render_chat
from agentkit.strategies import METHODS, load_strategy

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from test_chat_format import CHAT_TEMPLATES, GEMMA, short_exemplars  # noqa: E402  (tests/ is on the path)

SPECIALS = ["<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>"]


def hf_tokenizer(chat_template: str):
    """A transformers tokenizer: one token per byte, the special tokens above, BOS added on encode (as Gemma's)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    vocab = {token: i for i, token in enumerate(SPECIALS)}
    for ch in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[ch] = len(vocab)
    raw = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    raw.decoder = decoders.ByteLevel()
    raw.add_special_tokens(SPECIALS)
    raw.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 2)])
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=raw, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", chat_template=chat_template
    )


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    tokenizer = hf_tokenizer(GEMMA)
    config = transformers.Gemma3TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=16,
        sliding_window=64,
        layer_types=["sliding_attention", "full_attention"],
        max_position_embeddings=8192,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
    )
    path = tmp_path_factory.mktemp("tiny-instruct")
    transformers.Gemma3ForCausalLM(config).float().save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def llm(model_dir):
    from agentkit.engine import TransformersLLM

    return TransformersLLM(str(model_dir), dtype="float32", max_batch_size=8, log=lambda _msg: None)


@pytest.fixture
def sent(llm, monkeypatch):
    """Every prompt text the engine tokenizes, in order."""
    texts: list[str] = []
    encode = llm.encode

    def recording(text: str) -> list[int]:
        texts.append(text)
        return encode(text)

    monkeypatch.setattr(llm, "encode", recording)
    return texts


def test_the_engine_renders_with_the_tokenizer_template_and_feeds_one_bos(llm):
    assert llm.chat_template == GEMMA and llm.special_tokens["bos_token"] == "<bos>"
    chat = Chat(messages=(Message(role="system", content="Be brief."), Message(role="user", content="Hi?")))
    text = llm.render(chat)
    assert text == "<bos><start_of_turn>user\nBe brief.\n\nHi?<end_of_turn>\n<start_of_turn>model\n"
    assert text == render_chat(GEMMA, chat, bos_token="<bos>")
    ids = llm.encode(text)
    assert ids[:2] == [2, 3]  # <bos> written by the template, not a second one by the tokenizer
    assert llm.encode("plain text")[0] == 2 and llm.encode("plain text")[1] != 2  # text still gets its one BOS
    completion = llm.generate([chat], GenerationConfig(max_new_tokens=3))[0]
    assert completion.prompt_tokens == len(ids)


@pytest.mark.parametrize("name", sorted(CHAT_TEMPLATES))
def test_render_chat_renders_what_transformers_apply_chat_template_does(name):
    template = CHAT_TEMPLATES[name]
    hf = hf_tokenizer(template)
    chats = [
        [("system", "Rules."), ("user", "Question: 1 + 1?"), ("assistant", "2"), ("user", "Question: 2 + 2?")],
        [("user", "Question: 2 + 2?"), ("assistant", "```python")],  # PAL's cue
        [("user", "Q?"), ("assistant", "```python\n")],  # a trailing newline: kept only where not trimmed
        [("system", "Rules."), ("user", "Q?"), ("assistant", "Thought 1: x\nAction 1: Search[y]\nThought 2:")],
    ]
    for turns in chats:
        chat = Chat(messages=tuple(Message(role=r, content=c) for r, c in turns))
        expected = hf.apply_chat_template(
            [m.model_dump() for m in chat.messages],
            tokenize=False,
            add_generation_prompt=not chat.continues,
            continue_final_message=chat.continues,
        )
        assert render_chat(template, chat, bos_token="<bos>", eos_token="<eos>") == expected


def test_render_chat_renders_tools_calls_and_results_as_transformers_does():
    from test_toolcalls import CALLS, HERMES, chat

    asked = chat()
    history = asked.model_copy(
        update={
            "messages": (
                *asked.messages,
                Message(role="assistant", content="Looking.", tool_calls=tuple(CALLS)),
                *(Message(role="tool", content="found", tool_call_id=c.id, name=c.name) for c in CALLS),
            )
        }
    )
    hf = hf_tokenizer(HERMES)
    for sent in (asked, history):
        expected = hf.apply_chat_template(
            [m.as_dict() for m in sent.messages], tools=list(sent.tools), tokenize=False, add_generation_prompt=True
        )
        assert render_chat(HERMES, sent) == expected
        assert '"name": "Search"' in expected


def test_the_engine_gives_the_tokenizers_template_the_tools(llm, monkeypatch):
    from test_toolcalls import HERMES, chat

    monkeypatch.setattr(llm._chat_tokenizer, "chat_template", HERMES)
    assert llm.render(chat()) == render_chat(HERMES, chat())
    assert '"name": "Add"' in llm.render(chat())


def test_the_tool_agent_through_the_engine_under_its_constraint(llm):
    """Random weights write anything; constrained, a call the model opens parses unless max_new_tokens cut it."""
    from agentkit.strategies.tools import ToolAgent
    from agentkit.tools.wikipedia import OfflineCorpus

    corpus = OfflineCorpus.from_records([{"title": "Fooville", "text": "Fooville is a town. It has a tower."}])
    agent = ToolAgent(llm, corpus=corpus, max_steps=2, constrain=True, config=GenerationConfig(max_new_tokens=48))
    results = agent.batch(["Where is Fooville?", "What does Fooville have?"])
    for result in results:
        assert result.trajectory.steps
        for step in result.trajectory.steps:
            if step.status == "malformed" and "call 1" in (step.error or ""):
                assert step.cut, step.error  # a call that does not parse was cut short


@pytest.fixture(scope="module")
def templates(tmp_path_factory):
    return short_exemplars(tmp_path_factory.mktemp("exemplars"))


def strategy_for(method: str, llm, templates):
    from agentkit.tools.wikipedia import OfflineCorpus

    options = {}
    if method.startswith("react") or method == "tools":
        corpus = OfflineCorpus.from_records([{"title": "Fooville", "text": "Fooville is a town. It has a tower."}])
        options = {"corpus": corpus, "max_steps": 2}
    return load_strategy(
        method, llm, shots=1, k=2, prompt_format="chat", config={"max_new_tokens": 6}, templates=templates, **options
    )


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_runs_in_chat_form_through_the_engine(llm, sent, templates, method):
    strategy = strategy_for(method, llm, templates)
    result = strategy("Where is Fooville?")
    assert result.method == method and result.completions
    first = sent[0]
    assert result.prompt == first  # the record keeps the exact text sent
    assert first.startswith("<bos><start_of_turn>user\n")  # the instructions open the first user turn
    exemplars = 0 if method == "tools" else 1  # the tool agent has none
    assert first.count("<start_of_turn>model\n") == exemplars + 1  # the exemplar's reply, then the question's
    reply = first.rsplit("<start_of_turn>model\n", 1)[1]
    assert "<end_of_turn>" not in reply  # the model writes (or continues) the last assistant turn
    assert reply == {"pal": "```python", "react": "Thought 1:"}.get(method.split("-")[0], "")
    if method.startswith("react"):
        react_prompts = [t for t in sent if "Thought 1:" in t]
        assert len(react_prompts) >= 2  # at least one step, then its re-ask or the next step
        for before, after in zip(react_prompts, react_prompts[1:]):
            assert after.startswith(before)  # one assistant turn, extended step by step
        assert result.trajectory.steps and len(result.trajectory.steps) <= 2


def test_prefix_reuse_hits_on_the_shared_system_and_exemplar_turns(llm):
    questions = [f"What is {n} plus {n}?" for n in range(8)]
    rates = {}
    for prompt_format in ("text", "chat"):
        cot = load_strategy("cot", llm, shots=4, prompt_format=prompt_format, config={"max_new_tokens": 2})
        text = llm.render(cot.prompt(questions[0]))
        shared = llm.encode(text[: text.index("Question: What is 0")])  # instructions and exemplars
        llm.prefix_cache.clear()
        hits, lookups = llm.prefix_cache.hits, llm.prefix_cache.lookups
        cot.batch(questions, batch_size=4)
        hits, lookups = llm.prefix_cache.hits - hits, llm.prefix_cache.lookups - lookups
        rates[prompt_format] = hits / lookups
        print(
            f"{prompt_format} form, 4-shot CoT, {len(questions)} questions in batches of 4: {hits} of {lookups} "
            f"prompt tokens from the prefix cache ({hits / lookups:.0%}; shared prefix {len(shared)} tokens)"
        )
        block = llm.prefix_cache.block
        assert hits >= (len(questions) - 1) * (len(shared) // block) * block  # every row after the first
    assert rates["chat"] > rates["text"] - 0.02


def run_cli(*args: str):
    from agentkit.cli import main

    return CliRunner().invoke(main, list(args))


def test_ls_shows_the_prompt_format_and_run_sends_chat(model_dir):
    shown = run_cli("ls", "--model", str(model_dir))
    assert shown.exit_code == 0, shown.output
    assert "prompt format: chat" in shown.output and "<start_of_turn>user\\nINSTRUCTIONS" in shown.output
    command = ("run", "What is 2 plus 2?", "--method", "direct", "--model", str(model_dir), "--json")
    command += ("--max-tokens", "3", "--shots", "1")
    ran = run_cli(
        *command,
        "--dtype",
        "float32",
    )
    assert ran.exit_code == 0, ran.output
    record = json.loads(ran.stdout[ran.stdout.index("{") :])
    assert record["prompt"].startswith("<bos><start_of_turn>user\nAnswer each question with a number.\n\n")
    as_text = run_cli(
        *command,
        "--prompt-format",
        "text",
        "--dtype",
        "float32",
    )
    assert json.loads(as_text.stdout[as_text.stdout.index("{") :])["prompt"].startswith("Answer each question")
