"""The engine's KV: the prefix cache (``agentkit.engine.prefix_cache``) and the batch's KV store
(``agentkit.engine.kv``), checked on a tiny random Gemma 3 against transformers' own ``generate``."""

from __future__ import annotations

import pytest
from tiny_engine import PROMPTS, reference, tiny_engine

from agentkit.llm import GenerationConfig


@pytest.fixture(scope="module")
def tiny():
    pytest.importorskip("torch")
    return tiny_engine()  # a random Gemma 3 (tests/tiny_engine.py) with the byte tokenizer


# -- prefix cache ---------------------------------------------------------------------------------------------------


def test_prefix_cache_blocks_and_eviction():
    torch = pytest.importorskip("torch")
    from agentkit.engine.prefix_cache import PrefixCache

    def kv(n, fill):
        t = torch.full((2, 1, n, 4), float(fill))
        t[:, :, :, 0] = torch.arange(n, dtype=torch.float)
        return t, t.clone()

    block_bytes = 2 * 2 * 1 * 4 * 4 * 4  # k+v, layers, heads, block, dim, float32
    cache = PrefixCache(max_bytes=3 * block_bytes, block_size=4)
    a = list(range(10))
    cache.insert(a, *kv(10, 1))
    assert len(cache) == 2  # two full blocks; the tail of 2 is not cached
    b = a[:6] + [99, 98, 97, 96]
    found = cache.lookup(b, len(b) - 1)
    assert len(found) == 1  # only the first block agrees exactly
    assert torch.equal(found[0][0][:, :, :, 0], torch.arange(4, dtype=torch.float).expand(2, 1, 4))
    assert len(cache.lookup(a, 8)) == 2
    assert len(cache.lookup(a, 7)) == 1  # never more than the limit
    cache.insert([50 + i for i in range(8)], *kv(8, 2))
    assert cache.nbytes <= cache.max_bytes
    assert len(cache.lookup([50 + i for i in range(8)], 8)) == 2  # newest survives
    assert len(cache.lookup(a, 8)) < 2  # oldest tail block was evicted


def test_tiny_batch_equals_alone_and_prefix_cache_is_transparent(tiny):
    cfg = GenerationConfig(max_new_tokens=20)
    batch = [c.text for c in tiny.generate(PROMPTS, cfg)]
    alone = [tiny.generate([p], cfg)[0].text for p in PROMPTS]
    assert batch == alone
    hits_before = tiny.prefix_cache.hits
    again = [c.text for c in tiny.generate(PROMPTS, cfg)]
    assert tiny.prefix_cache.hits > hits_before  # shared prefixes were served from the cache
    assert again == batch


def test_copies_of_a_prompt_admitted_together_prefill_it_once(tiny):
    tiny.prefix_cache.clear()
    prompt = "Question: 12 + 30 = ?\\nAnswer: " * 3
    n = len(tiny.encode(prompt)) - 1
    cfg = GenerationConfig(max_new_tokens=4, do_sample=True, top_k=20, seed=0)
    before = tiny.stats.prefill_tokens
    tiny.generate([prompt] * 4, cfg)  # self-consistency: k copies join in one step
    computed = tiny.stats.prefill_tokens - before
    assert computed < n + 3 * tiny.prefix_cache.block  # the first copy computes the prompt, the others its tail


def test_without_the_prefix_cache_every_prompt_token_is_prefilled_and_the_texts_are_the_same(tiny):
    plain = tiny_engine(prefix_cache_mb=0)
    assert plain.prefix_cache is None
    cfg = GenerationConfig(max_new_tokens=12)
    for _ in range(2):  # the second round would hit a cache
        before = plain.stats.copy()
        texts = [c.text for c in plain.generate(PROMPTS, cfg)]
        spent = plain.stats - before
        assert spent.prefill_tokens == spent.prompt_tokens - len(PROMPTS)  # all but each row's last token
    assert texts == [c.text for c in tiny.generate(PROMPTS, cfg)]


# -- the KV store ---------------------------------------------------------------------------------------------------


def test_uninitialized_kv_memory_never_reaches_attention(tiny, monkeypatch):
    """The KV store allocates without zero-filling; masked columns still enter attention as 0 * value, so fill
    every fresh buffer with NaN: any unwritten column shown to a row would turn its output into garbage."""
    from agentkit.engine.kv import KVStore

    real_alloc = KVStore._alloc

    def nan_alloc(self, capacity):
        return tuple(t.fill_(float("nan")) for t in real_alloc(self, capacity))

    monkeypatch.setattr(KVStore, "_alloc", nan_alloc)
    cfg = GenerationConfig(max_new_tokens=12)
    session = tiny.session(max_batch_size=3)  # rows of different lengths join, leave and move between slots
    got = {}
    queue = list(enumerate(PROMPTS))
    while queue or session.pending:
        while queue and session.free_slots:
            i, p = queue.pop(0)
            session.add(i, p + "." * i, cfg)
        got.update(session.step())
    session.close()
    for i, p in enumerate(PROMPTS):
        assert got[i].text == tiny.tokenizer.decode(reference(tiny, p + "." * i, 12))
