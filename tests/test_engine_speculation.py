"""Speculation (``agentkit.engine.lookup`` and ``_Batcher._speculate``): a greedy row decoding alone verifies
prompt-lookup drafts and gives exactly the plain greedy output, and leaves the KV as plain decoding does."""

from __future__ import annotations

import pytest
from tiny_engine import PROMPTS, ByteTokenizer, reference, tiny_engine

from agentkit.llm import GenerationConfig


@pytest.fixture(scope="module")
def tiny():
    pytest.importorskip("torch")
    return tiny_engine()  # a random Gemma 3 (tests/tiny_engine.py) with the byte tokenizer


def test_prompt_lookup_drafts_the_continuation_of_the_latest_longest_match():
    from agentkit.engine.lookup import PromptLookup

    seq = PromptLookup([5, 6, 7, 1, 2, 8, 9, 1, 2])
    assert seq.draft(2) == [8, 9]  # (1, 2) last occurred before 8 9, not before 7
    seq.extend([3])
    assert seq.draft(3) == []  # (2, 3), (3): never seen before
    seq = PromptLookup([4, 1, 2, 3, 9, 2, 3, 7, 1, 2, 3])
    assert seq.draft(1) == [9]  # the 3-gram (1, 2, 3) beats the later 2-gram (2, 3)
    loop = PromptLookup([7, 8, 9, 7, 8])
    assert loop.draft(6) == [9, 7, 8, 9, 7, 8]  # a copy that reaches the present repeats the loop
    assert loop.draft(0) == [] and PromptLookup([]).draft(3) == []


def test_a_row_alone_verifies_drafts_and_gives_exactly_the_plain_greedy_output(tiny):
    plain = tiny_engine(prompt_lookup=0)
    prompts = [*PROMPTS, "abcabcabcabcabc", "1 2 3 1 2 3 1 2 3"]
    before = tiny.stats.copy()
    for n, stop in ((60, []), (9, []), (40, ["\x1a\x1a"]), (40, ["XX"])):
        cfg = GenerationConfig(max_new_tokens=n, stop=stop)
        for prompt in prompts:
            got, want = tiny.generate([prompt], cfg)[0], plain.generate([prompt], cfg)[0]
            assert (got.text, got.finish_reason, got.completion_tokens) == (
                want.text,
                want.finish_reason,
                want.completion_tokens,
            )
            if not stop:
                assert got.text == tiny.tokenizer.decode(reference(tiny, prompt, n))
    spent = tiny.stats - before
    # measured 142 of 470 drafted tokens accepted, 312 steps for 454 tokens; margins for other CPUs' rounding
    assert spent.accepted_tokens > 0.1 * spent.drafted_tokens > 0
    assert spent.decode_steps < 0.9 * spent.decode_tokens  # fewer steps than tokens
    assert plain.stats.drafted_tokens == 0


def test_speculation_leaves_the_kv_as_plain_decoding_does(tiny):
    """A finished row's prompt + completion KV goes to the prefix cache (a ReAct follow-up reuses it): after a
    speculating row it must hold what plain decoding leaves, block for block."""
    import torch

    from agentkit.engine.transformers_llm import _Batcher

    plain = tiny_engine(prompt_lookup=0)
    cfg = GenerationConfig(max_new_tokens=40)
    seqs, blocks = [], []
    for llm in (tiny, plain):
        llm.prefix_cache.clear()
        before = llm.stats.accepted_tokens
        batcher = _Batcher(llm, 1)
        row = llm._row(0, "abcabcabcabcabcabcabcabcabcabcabcab", cfg, None)
        batcher.add(row)
        while not batcher.step():
            pass
        seq = row.ids + row.generated[:-1]  # what the finished row stored
        seqs.append(seq)
        blocks.append(llm.prefix_cache.lookup(seq, len(seq)))
        assert len(blocks[-1]) == len(seq) // llm.prefix_cache.block  # the completion's blocks included
        assert (llm.stats.accepted_tokens > before) == (llm is tiny)
    assert seqs[0] == seqs[1] and len(seqs[0]) > len(row.ids) + 16
    for (k1, v1), (k2, v2) in zip(*blocks, strict=True):
        assert torch.allclose(k1, k2, atol=1e-5) and torch.allclose(v1, v2, atol=1e-5)


def test_prompt_lookup_must_not_be_negative():
    from tiny_engine import tiny_gemma

    from agentkit.engine.transformers_llm import TransformersLLM

    with pytest.raises(ValueError, match="prompt_lookup must be >= 0"):
        TransformersLLM.from_model(tiny_gemma(), ByteTokenizer(), prompt_lookup=-1)
