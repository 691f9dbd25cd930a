"""End-to-end tests of TransformersLLM on the real default model (Gemma 3 270M base). Slow: ``-m model``.

The model is loaded once per module, in float32 so greedy results are comparable across batch shapes.
"""

from __future__ import annotations

import pytest

from agentkit.llm import GenerationConfig

pytestmark = pytest.mark.model

PROMPTS = [
    "The capital of France is",
    "Question: Tom has 3 apples and buys 2 more. How many apples does he have?\nAnswer:",
    "def add(a, b):\n",
]


@pytest.fixture(scope="module")
def llm():
    from agentkit.engine import TransformersLLM

    return TransformersLLM(dtype="float32")


def test_three_prompts_stop_at_newline(llm):
    cfg = GenerationConfig(max_new_tokens=40, stop=["\n"])
    out = llm.generate(PROMPTS, cfg)
    assert len(out) == 3
    for prompt, c in zip(PROMPTS, out, strict=True):
        assert "\n" not in c.text
        assert c.finish_reason in ("stop", "length")
        assert c.prompt_tokens == len(llm.encode(prompt))
        assert 1 <= c.completion_tokens <= 40
        if c.finish_reason == "length":
            assert c.completion_tokens == 40
    # The same prompts without the stop string: each stopped completion is a prefix cut right before "\n".
    free = llm.generate(PROMPTS, GenerationConfig(max_new_tokens=40))
    for c, f in zip(out, free, strict=True):
        assert f.text.startswith(c.text)
        if c.finish_reason == "stop" and c.completion_tokens < 40:
            assert f.text[len(c.text) :].startswith("\n") or f.finish_reason == "stop"


def test_matches_plain_transformers_generate(llm):
    import torch

    cfg = GenerationConfig(max_new_tokens=30)
    out = llm.generate(PROMPTS, cfg)
    for prompt, c in zip(PROMPTS, out, strict=True):
        ids = torch.tensor([llm.encode(prompt)])
        with torch.no_grad():
            ref = llm.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=30, do_sample=False)
        assert c.text == llm.tokenizer.decode(ref[0, ids.shape[1] :].tolist())


def test_greedy_alone_equals_in_batch_fp32(llm):
    cfg = GenerationConfig(max_new_tokens=30)
    batch = llm.generate(PROMPTS, cfg)
    for prompt, c in zip(PROMPTS, batch, strict=True):
        assert llm.generate([prompt], cfg)[0].text == c.text


def test_greedy_is_deterministic(llm):
    cfg = GenerationConfig(max_new_tokens=25)
    assert [c.text for c in llm.generate(PROMPTS, cfg)] == [c.text for c in llm.generate(PROMPTS, cfg)]


def test_sampling_reproducible_with_seed(llm):
    cfg = GenerationConfig(max_new_tokens=25, do_sample=True, temperature=1.0, top_p=0.95, seed=123)
    a = llm.generate([PROMPTS[0]], cfg)[0].text
    assert llm.generate([PROMPTS[0]], cfg)[0].text == a
    assert llm.generate([PROMPTS[0], PROMPTS[1]], cfg)[0].text == a
    other = {llm.generate([PROMPTS[0]], cfg.model_copy(update={"seed": s}))[0].text for s in range(124, 128)}
    assert len(other | {a}) > 1


def test_stream_equals_generate(llm):
    cfg = GenerationConfig(max_new_tokens=40, stop=["\n"])
    for prompt in PROMPTS:
        pieces = list(llm.stream(prompt, cfg))
        assert "".join(pieces) == llm.generate([prompt], cfg)[0].text


def test_session_equals_generate(llm):
    cfg = GenerationConfig(max_new_tokens=30, stop=["\n\n"])
    expected = llm.generate(PROMPTS, cfg)
    session = llm.session(max_batch_size=2)
    pending = list(enumerate(PROMPTS))
    got = {}
    while pending or session.pending:
        while pending and session.free_slots:
            i, p = pending.pop(0)
            session.add(i, p, cfg)
        got.update(session.step())
    session.close()
    assert [got[i] for i in range(len(PROMPTS))] == expected


def test_default_model_is_cached_and_named(llm):
    assert "gemma-3-270m" in llm.name
    assert any((llm.cache_dir / "models").glob("*/model.safetensors"))


def test_process_exits_cleanly_right_after_load():
    import subprocess
    import sys

    code = "from agentkit.engine import TransformersLLM; TransformersLLM(dtype='float32')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-500:]


@pytest.mark.parametrize(
    "sampling",
    [
        {"temperature": 0.7, "top_k": 40, "top_p": 0.95, "seed": 5},  # the scan shortlists the exact top-k
        {"temperature": 0.8, "seed": 11},  # pure temperature: the scan proves which tokens can win the Gumbel race
    ],
    ids=["top-k", "pure-temperature"],
)
def test_sampling_through_the_bounded_int8_head_equals_the_full_head(llm, sampling):
    """The int8 scan only shortlists; exact logits decide, so the draws are the full head's, token for token."""
    from agentkit.engine import TransformersLLM

    llm.wait_until_ready()
    assert llm.chooser.bounded is not None
    cfg = GenerationConfig(max_new_tokens=20, do_sample=True, **sampling)
    fast = [c.text for c in llm.generate(PROMPTS, cfg)]
    exact = TransformersLLM.from_model(llm.model, llm.tokenizer, fast_lm_head=False)  # the same weights
    full = [c.text for c in exact.generate(PROMPTS, cfg)]
    assert exact.chooser.bounded is None
    assert fast == full
    assert fast != [c.text for c in llm.generate(PROMPTS, cfg.model_copy(update={"seed": cfg.seed + 1}))]
