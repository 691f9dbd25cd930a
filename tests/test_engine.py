"""Fast tests for agentkit.engine: no downloaded weights.

The decode loop is checked end to end on a tiny random-weight Gemma 3 (sliding-window and full layers, window
shorter than the prompts) with a byte-level tokenizer, against transformers' own ``generate``.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from agentkit.engine import loading
from agentkit.engine.loading import ModelLoadError, cache_dir, resolve_dtype
from agentkit.engine.text import RowText
from agentkit.llm import GenerationConfig
from tiny_engine import ByteTokenizer, tiny_engine


class ChunkTokenizer(ByteTokenizer):
    """Decodes id sequences of arbitrary multi-character 'tokens' (for RowText tests)."""

    def __init__(self, pieces: list[str]):
        self.pieces = pieces

    def decode(self, ids: list[int]) -> str:
        return "".join(self.pieces[i] for i in ids)


def feed(pieces: list[str], stop: list[str]) -> tuple[RowText, list[str], int]:
    tok = ChunkTokenizer(pieces)
    row = RowText(tok.decode, stop)
    shown = []
    used = 0
    for i in range(len(pieces)):
        used += 1
        done = row.push(i)
        shown.append(row.stream_delta(final=done))
        if done:
            break
    else:
        row.flush()
        shown.append(row.stream_delta(final=True))
    return row, shown, used


# -- stop strings and streaming holdback -----------------------------------------------------------------------


def test_stop_string_spanning_tokens_is_cut_exactly():
    row, shown, used = feed(["The answer", " is 4.\n", "\nQues", "tion: next", " more"], ["\n\nQuestion:"])
    assert row.stopped
    assert row.text == "The answer is 4."
    assert "".join(shown) == row.text
    assert used == 4  # stopped as soon as the stop string was complete


def test_stop_string_ending_mid_token():
    row, shown, _ = feed(["abc", "dXYZe", "fgh"], ["XY"])
    assert row.stopped and row.text == "abcd"
    assert "".join(shown) == "abcd"


def test_earliest_of_several_stops_wins():
    row, _, _ = feed(["one ", "two three"], ["three", "two"])
    assert row.text == "one "


def test_streaming_holds_back_possible_stop_prefix():
    row, shown, _ = feed(["Hello\n", "\nQ", "uiet please"], ["\n\nQuestion:"])
    assert not row.stopped
    assert shown[0] == "Hello"  # "\n" may start the stop string: held back
    assert shown[1] == ""  # "\n\nQ" still may
    assert "".join(shown) == "Hello\n\nQuiet please" == row.text


def test_no_stop_text_returned_whole():
    row, shown, _ = feed(["a", "b", "c"], [])
    assert row.text == "abc" and "".join(shown) == "abc" and not row.stopped


def test_multibyte_character_waits_for_all_bytes():
    tok = ByteTokenizer()
    ids = tok.encode("é!", add_special_tokens=False)  # é is two bytes
    row = RowText(tok.decode, [])
    row.push(ids[0])
    assert row.text == ""  # half a character is never shown
    row.push(ids[1])
    assert row.text == "é"
    row.push(ids[2])
    assert row.text == "é!"


def test_prompt_context_keeps_leading_space():
    pieces = ["Answer", ":", " 42"]
    row = RowText(ChunkTokenizer(pieces).decode, [], prompt_ids=[0, 1])
    row.push(2)
    assert row.text == " 42"


# -- configuration -----------------------------------------------------------------------------------------------


def test_dtype_resolution(monkeypatch):
    assert resolve_dtype("float32", "cpu") == "float32"
    assert resolve_dtype("bfloat16", "cpu") == "bfloat16"
    assert resolve_dtype("auto", "cuda") == "bfloat16"
    monkeypatch.setattr(loading, "cpu_supports_bf16", lambda: True)
    assert resolve_dtype("auto", "cpu") == "bfloat16"
    monkeypatch.setattr(loading, "cpu_supports_bf16", lambda: False)
    assert resolve_dtype("auto", "cpu") == "float32"
    with pytest.raises(ValueError, match="dtype"):
        resolve_dtype("float16", "cpu")


def test_cache_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("AGENTKIT_CACHE", str(tmp_path / "env"))
    assert cache_dir() == tmp_path / "env"
    assert cache_dir(tmp_path / "explicit") == tmp_path / "explicit"
    monkeypatch.delenv("AGENTKIT_CACHE")
    default = cache_dir()
    assert default.name == "agentkit" and "cache" in str(default).lower()


def test_fingerprint_distinguishes_files(tmp_path):
    a, b = tmp_path / "a.gguf", tmp_path / "b.gguf"
    a.write_bytes(b"x" * 5000)
    b.write_bytes(b"x" * 4999 + b"y")
    assert loading.file_fingerprint(a) != loading.file_fingerprint(b)
    assert loading.file_fingerprint(a) == loading.file_fingerprint(a)


def test_import_agentkit_engine_does_not_import_torch():
    code = "import sys, agentkit, agentkit.engine; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- load errors ---------------------------------------------------------------------------------------------


def _one_line_error(spec, tmp_path) -> str:
    with pytest.raises(ModelLoadError) as info:
        loading.load_model(spec, dtype="float32", device="cpu", cache=tmp_path / "cache")
    msg = str(info.value)
    assert "\n" not in msg
    assert isinstance(info.value, ValueError)
    return msg


def test_missing_gguf_path(tmp_path):
    msg = _one_line_error(str(tmp_path / "nope.gguf"), tmp_path)
    assert "nope.gguf" in msg and "does not exist" in msg


def test_missing_local_directory(tmp_path):
    msg = _one_line_error(str(tmp_path / "missing" / "model"), tmp_path)
    assert "does not exist" in msg


def test_directory_without_config(tmp_path):
    (tmp_path / "empty").mkdir()
    msg = _one_line_error(str(tmp_path / "empty"), tmp_path)
    assert "config.json" in msg


def test_unknown_hub_id_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    msg = _one_line_error("agentkit-test/no-such-model", tmp_path)
    assert "agentkit-test/no-such-model" in msg and "offline" in msg and "local directory or GGUF path" in msg


# -- prefix cache ------------------------------------------------------------------------------------------------


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


# -- the decode loop on a tiny random Gemma 3 ------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    pytest.importorskip("torch")
    return tiny_engine()  # a random Gemma 3 (tests/tiny_engine.py) with the byte tokenizer


PROMPTS = [
    "The quick brown fox jumps over the lazy dog, twice.",
    "ab",
    "Question: 12 + 30 = ?\nAnswer: ",
    "Question: 12 + 30 = ?\nAnswer: It is",
    "x" * 70,
    "Question: 12 + 30 = ?\nAnswer: It is 42.",
]


def reference(llm, prompt: str, n: int) -> list[int]:
    import torch

    ids = torch.tensor([llm.encode(prompt)])
    with torch.no_grad():
        out = llm.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False)
    gen = out[0, ids.shape[1] :].tolist()
    if 1 in gen:
        gen = gen[: gen.index(1)]
    return gen


def test_tiny_greedy_matches_transformers_generate(tiny):
    cfg = GenerationConfig(max_new_tokens=24)
    got = tiny.generate(PROMPTS, cfg)  # 6 prompts through 4 slots: rows join and leave mid-flight
    for prompt, completion in zip(PROMPTS, got, strict=True):
        ref = tiny.tokenizer.decode(reference(tiny, prompt, 24))
        assert completion.text == ref
        assert completion.prompt_tokens == len(tiny.encode(prompt))
        assert 1 <= completion.completion_tokens <= 24


def test_tiny_batch_equals_alone_and_prefix_cache_is_transparent(tiny):
    cfg = GenerationConfig(max_new_tokens=20)
    batch = [c.text for c in tiny.generate(PROMPTS, cfg)]
    alone = [tiny.generate([p], cfg)[0].text for p in PROMPTS]
    assert batch == alone
    hits_before = tiny.prefix_cache.hits
    again = [c.text for c in tiny.generate(PROMPTS, cfg)]
    assert tiny.prefix_cache.hits > hits_before  # shared prefixes were served from the cache
    assert again == batch


def test_tiny_session_joins_rows_midflight(tiny):
    cfg_short = GenerationConfig(max_new_tokens=3)
    cfg_long = GenerationConfig(max_new_tokens=20)
    expected = {i: tiny.generate([p], cfg_long if i % 2 else cfg_short)[0] for i, p in enumerate(PROMPTS)}
    session = tiny.session(max_batch_size=2)
    queue = list(enumerate(PROMPTS))
    results = {}
    steps = 0
    while queue or session.pending:
        while queue and session.free_slots:
            i, p = queue.pop(0)
            session.add(i, p, cfg_long if i % 2 else cfg_short)
        for key, completion in session.step():
            results[key] = completion
        steps += 1
    session.close()
    assert results == expected
    assert steps < sum(c.completion_tokens for c in expected.values())  # rows really shared steps


def test_tiny_stop_and_finish_reasons(tiny):
    free = tiny.generate(PROMPTS[:3], GenerationConfig(max_new_tokens=30))
    for prompt, c in zip(PROMPTS[:3], free, strict=True):
        if len(c.text) < 3:
            continue
        stop = c.text[1:3]  # a stop string that surely occurs (possibly spanning tokens)
        got = tiny.generate([prompt], GenerationConfig(max_new_tokens=30, stop=[stop]))[0]
        assert got.finish_reason == "stop"
        assert got.text == c.text[: c.text.find(stop)]
        assert stop not in got.text
    limited = tiny.generate([PROMPTS[0]], GenerationConfig(max_new_tokens=2))[0]
    assert limited.completion_tokens <= 2
    assert limited.finish_reason == ("length" if limited.completion_tokens == 2 else "stop")


def test_tiny_stream_equals_generate_and_can_be_abandoned(tiny):
    cfg = GenerationConfig(max_new_tokens=25, stop=["e t"])
    full = tiny.generate([PROMPTS[0]], cfg)[0].text
    assert "".join(tiny.stream(PROMPTS[0], cfg)) == full
    it = tiny.stream(PROMPTS[0], GenerationConfig(max_new_tokens=25))
    next(it, None)
    it.close()  # consumer stopped early (e.g. Ctrl-C)
    assert tiny.generate([PROMPTS[0]], cfg)[0].text == full


def test_tiny_sampling_is_seeded_per_row(tiny):
    cfg = GenerationConfig(max_new_tokens=15, do_sample=True, temperature=1.5, top_k=50, top_p=0.95, seed=7)
    a = tiny.generate([PROMPTS[0]], cfg)[0].text
    b = tiny.generate([PROMPTS[0], PROMPTS[1], PROMPTS[2]], cfg)[0].text
    assert a == b  # does not depend on the rest of the batch
    many = tiny.generate([PROMPTS[0]] * 4, cfg)  # seeds 7..10: different samples
    assert len({c.text for c in many}) > 1
    assert many[0].text == a


def test_count_tokens(tiny):
    assert tiny.count_tokens("héllo") == 6


def test_int8_head_shortlist_gives_exact_argmax(tiny):
    import torch

    tiny._build_qhead()  # normally built in the background
    assert tiny._qhead is not None
    hidden = torch.randn(64, tiny.model.config.hidden_size) * 3
    assert torch.equal(tiny._greedy(hidden), tiny._logits(hidden).argmax(dim=-1))
    texts = [c.text for c in tiny.generate(PROMPTS[:3], GenerationConfig(max_new_tokens=16))]
    assert texts == [tiny.tokenizer.decode(reference(tiny, p, 16)) for p in PROMPTS[:3]]


def test_tiny_llama_without_layer_types_matches_transformers():
    torch = pytest.importorskip("torch")
    from transformers import LlamaConfig, LlamaForCausalLM

    from agentkit.engine.transformers_llm import TransformersLLM

    torch.manual_seed(1)
    cfg = LlamaConfig(
        vocab_size=259, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, pad_token_id=0, eos_token_id=1, bos_token_id=2,
    )
    llm = TransformersLLM.from_model(LlamaForCausalLM(cfg).float().eval(), ByteTokenizer(), max_batch_size=3)
    got = llm.generate(PROMPTS, GenerationConfig(max_new_tokens=12))
    assert [c.text for c in got] == [llm.tokenizer.decode(reference(llm, p, 12)) for p in PROMPTS]


def test_raw_tokenizer_has_no_hf_tokenizer_without_chat_template(tmp_path):
    (tmp_path / "tokenizer_config.json").write_text('{"bos_token": "<bos>"}')
    tok = loading.Tokenizer(raw=object(), source=str(tmp_path))
    assert tok.hf is None  # nothing to load: no chat template in the directory


def test_sample_keeps_exactly_the_top_k_and_top_p_sets():
    import torch

    from agentkit.engine.transformers_llm import _sample

    logits = torch.tensor([0.0, 5.0, 1.0, 4.0, 2.0, 3.0])  # best first: ids 1, 3, 5, 4, 2, 0
    gen = torch.Generator().manual_seed(0)

    def drawn(**settings) -> set[int]:
        cfg = GenerationConfig(do_sample=True, **settings)
        return {int(_sample(logits, cfg, gen)) for _ in range(400)}

    assert drawn(top_k=3, top_p=1.0) == {1, 3, 5}
    assert drawn(top_k=None, top_p=0.5) == {1}  # id 1 alone holds ~64% of the mass
    assert drawn(top_k=None, top_p=0.9) == {1, 3, 5}  # 64% + 24% < 90%, + 9% reaches it
    assert drawn(top_k=2, top_p=0.99) == {1, 3}
    assert drawn(top_k=None, top_p=1.0, temperature=5.0) == set(range(6))


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


def test_bounded_int8_head_candidates_provably_hold_the_exact_top_k(tiny):
    import torch

    tiny._build_qhead()
    head = tiny._qhead
    torch.manual_seed(3)
    hidden = torch.randn(48, tiny.model.config.hidden_size) * 3
    hidden[:, 5] *= 15  # an outlier dimension, as in real final hidden states
    exact = tiny._logits(hidden)
    for k in (1, 5, 40):
        cands = head.candidates(hidden, k)
        truth = exact.topk(k, dim=-1).indices
        sizes = []
        for row, cand in enumerate(cands):
            assert cand is not None
            assert set(truth[row].tolist()) <= set(cand.tolist())
            sizes.append(len(cand))
        assert sum(sizes) / len(sizes) < exact.shape[1]  # the scan does prune
    assert head.candidates(hidden[:2], exact.shape[1]) == [None, None]  # k >= vocabulary: the full head


def test_bounded_head_rows_do_not_coarsen_each_other(tiny):
    """fbgemm quantizes a whole activation tensor with one scale: without per-row scaling, one row with large
    values would widen every other row's bound. Each row's candidates are the same alone as beside it."""
    import torch

    tiny._build_qhead()
    head = tiny._qhead
    torch.manual_seed(6)
    hidden = torch.randn(20, tiny.model.config.hidden_size) * 3  # 20 rows: more than one int8 GEMM chunk
    hidden[3] *= 40
    exact = tiny._logits(hidden)
    for k in (1, 40):
        together = head.candidates(hidden, k)
        for row in range(len(hidden)):
            alone = head.candidates(hidden[row : row + 1], k)[0]
            assert torch.equal(together[row], alone)
            assert set(exact[row].topk(k).indices.tolist()) <= set(alone.tolist())


def _draws(tiny, hidden, configs: list[GenerationConfig], use_int8: bool, steps: int = 50) -> list[list[int]]:
    """``steps`` tokens for one row per config (row i seeded with i), with or without the int8 head."""
    import torch

    from agentkit.engine.transformers_llm import _Row

    saved = tiny._qhead
    tiny._qhead = saved if use_int8 else None
    rows = [_Row(i, [2], c, None, torch.Generator().manual_seed(i)) for i, c in enumerate(configs)]
    try:
        return [tiny._next_tokens(hidden, rows).tolist() for _ in range(steps)]
    finally:
        tiny._qhead = saved


def test_sampling_with_top_k_draws_exactly_as_the_full_head(tiny):
    """Same generator state, same exact top-k logits: the shortlist path draws the very same tokens."""
    import torch

    tiny._build_qhead()
    torch.manual_seed(4)
    hidden = torch.randn(6, tiny.model.config.hidden_size) * 3
    configs = [GenerationConfig(do_sample=True, temperature=t, top_k=k, top_p=p)
               for t, k, p in [(0.7, 40, 0.95), (1.0, 5, 1.0), (1.5, 100, 0.9), (0.5, 1, 1.0), (1.0, 258, 1.0),
                               (0.7, 40, 0.95)]]

    assert _draws(tiny, hidden, configs, use_int8=True) == _draws(tiny, hidden, configs, use_int8=False)


def test_pure_temperature_sampling_races_through_the_int8_head_to_the_full_heads_draws(tiny, monkeypatch):
    """Rows without top_k and top_p: the Gumbel race's winner, found by the bounded scan plus exact rescoring, is
    the full head's, draw for draw from the same generators; and the scan, not the full head, found it."""
    import torch

    tiny._build_qhead()
    torch.manual_seed(6)
    hidden = torch.randn(6, tiny.model.config.hidden_size) * 3
    configs = [GenerationConfig(do_sample=True, temperature=t) for t in (0.3, 0.7, 1.0, 1.5, 3.0)]
    configs.append(GenerationConfig(do_sample=True, temperature=0.7, top_k=40))  # a top-k row in the same batch
    full_rows = []
    logits = tiny._logits

    def counting(h):
        full_rows.append(len(h))
        return logits(h)

    monkeypatch.setattr(tiny, "_logits", counting)

    fast = _draws(tiny, hidden, configs, use_int8=True)
    assert sum(full_rows) <= 5  # of 300 draws: the scan proved (nearly) every winner
    assert fast == _draws(tiny, hidden, configs, use_int8=False)
    assert len({tuple(step[:5]) for step in fast}) > 10  # they are samples, not one repeated argmax


def test_pure_temperature_draws_follow_the_softmax_at_that_temperature(tiny):
    """The race samples softmax(logits / T): frequencies of the likely tokens over 6,000 draws (300 rows x 20
    steps, each row its own generator) within 4.5 standard errors of the exact probabilities."""
    import torch

    from agentkit.engine.transformers_llm import _Row

    tiny._build_qhead()
    torch.manual_seed(8)
    h = torch.randn(1, tiny.model.config.hidden_size) * 20  # 7 tokens over 2% at T 0.5, 12 at T 2
    for temperature in (0.5, 2.0):
        cfg = GenerationConfig(do_sample=True, temperature=temperature)
        rows = [_Row(i, [2], cfg, None, torch.Generator().manual_seed(1000 + i)) for i in range(300)]
        hidden = h.expand(len(rows), -1).contiguous()
        drawn = torch.cat([tiny._next_tokens(hidden, rows) for _ in range(20)])
        p = (tiny._logits(h)[0] / temperature).softmax(-1)
        freq = torch.bincount(drawn, minlength=len(p)).double() / len(drawn)
        likely = (p > 0.02).nonzero()[:, 0]
        assert len(likely) >= 3
        err = 4.5 * (p[likely] * (1 - p[likely]) / len(drawn)).sqrt()
        assert ((freq[likely] - p[likely]).abs() <= err).all(), (temperature, freq[likely], p[likely])


def test_copies_of_a_prompt_admitted_together_prefill_it_once(tiny):
    tiny.prefix_cache.clear()
    prompt = "Question: 12 + 30 = ?\\nAnswer: " * 3
    n = len(tiny.encode(prompt)) - 1
    cfg = GenerationConfig(max_new_tokens=4, do_sample=True, top_k=20, seed=0)
    before = tiny.stats["prefill_tokens"]
    tiny.generate([prompt] * 4, cfg)  # self-consistency: k copies join in one step
    computed = tiny.stats["prefill_tokens"] - before
    assert computed < n + 3 * tiny.prefix_cache.block  # the first copy computes the prompt, the others its tail


def test_lower_precision_greedy_uses_the_int8_shortlist_and_sampling_the_full_head(tiny, monkeypatch):
    """Where the bound's rounding margin is too wide to pay (bf16), greedy rows rescore the int8 top-64 and sampled
    rows never touch the bounded scan."""
    import torch

    from agentkit.engine.transformers_llm import _Row

    tiny._build_qhead()
    head = tiny._qhead
    monkeypatch.setattr(head, "proven", False)
    monkeypatch.setattr(head, "candidates", lambda *a: pytest.fail("bounded scan used without a proven bound"))
    torch.manual_seed(5)
    hidden = torch.randn(8, tiny.model.config.hidden_size) * 3
    assert tiny._greedy(hidden).tolist() == tiny._logits(hidden).argmax(dim=-1).tolist()
    cfg = GenerationConfig(do_sample=True, temperature=0.7, top_k=40)
    rows = [_Row(i, [2], cfg, None, torch.Generator().manual_seed(i)) for i in range(3)]
    assert tiny._next_tokens(hidden[:3], rows).shape == (3,)


# -- speculation: a row alone verifies prompt-lookup drafts ----------------------------------------------------


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
    plain = tiny_engine()
    plain.prompt_lookup = 0
    prompts = [*PROMPTS, "abcabcabcabcabc", "1 2 3 1 2 3 1 2 3"]
    before = dict(tiny.stats)
    for n, stop in ((60, []), (9, []), (40, ["\x1a\x1a"]), (40, ["XX"])):
        cfg = GenerationConfig(max_new_tokens=n, stop=stop)
        for prompt in prompts:
            got, want = tiny.generate([prompt], cfg)[0], plain.generate([prompt], cfg)[0]
            assert (got.text, got.finish_reason, got.completion_tokens) == (
                want.text, want.finish_reason, want.completion_tokens)
            if not stop:
                assert got.text == tiny.tokenizer.decode(reference(tiny, prompt, n))
    spent = {k: tiny.stats[k] - before[k] for k in before}
    # measured 142 of 470 drafted tokens accepted, 312 steps for 454 tokens; margins for other CPUs' rounding
    assert spent["accepted_tokens"] > 0.1 * spent["drafted_tokens"] > 0
    assert spent["decode_steps"] < 0.9 * spent["decode_tokens"]  # fewer steps than tokens
    assert plain.stats["drafted_tokens"] == 0


def test_speculation_leaves_the_kv_as_plain_decoding_does(tiny):
    """A finished row's prompt + completion KV goes to the prefix cache (a ReAct follow-up reuses it): after a
    speculating row it must hold what plain decoding leaves, block for block."""
    import torch

    from agentkit.engine.transformers_llm import _Batcher

    plain = tiny_engine()
    plain.prompt_lookup = 0
    cfg = GenerationConfig(max_new_tokens=40)
    seqs, blocks = [], []
    for llm in (tiny, plain):
        llm.prefix_cache.clear()
        before = llm.stats["accepted_tokens"]
        batcher = _Batcher(llm, 1)
        row = llm._row(0, "abcabcabcabcabcabcabcabcabcabcabcab", cfg, None)
        batcher.add(row)
        while not batcher.step():
            pass
        seq = row.ids + row.generated[:-1]  # what the finished row stored
        seqs.append(seq)
        blocks.append(llm.prefix_cache.lookup(seq, len(seq)))
        assert len(blocks[-1]) == len(seq) // llm.prefix_cache.block  # the completion's blocks included
        assert (llm.stats["accepted_tokens"] > before) == (llm is tiny)
    assert seqs[0] == seqs[1] and len(seqs[0]) > len(row.ids) + 16
    for (k1, v1), (k2, v2) in zip(*blocks, strict=True):
        assert torch.allclose(k1, k2, atol=1e-5) and torch.allclose(v1, v2, atol=1e-5)


def test_prompt_lookup_must_not_be_negative():
    from agentkit.engine.transformers_llm import TransformersLLM
    from tiny_engine import tiny_gemma

    with pytest.raises(ValueError, match="prompt_lookup must be >= 0"):
        TransformersLLM.from_model(tiny_gemma(), ByteTokenizer(), prompt_lookup=-1)


# -- oneDNN-packed linears ---------------------------------------------------------------------------------------


def test_packed_linears_replace_the_decoders_linears_and_keep_its_outputs():
    import torch

    from agentkit.engine.packed import PackedLinear, can_pack
    from agentkit.engine.transformers_llm import TransformersLLM
    from tiny_engine import tiny_gemma

    if not can_pack():
        pytest.skip("this torch build has no oneDNN linear ops")
    same = [tiny_gemma(), tiny_gemma()]  # both built before an engine's background thread can touch the RNG
    packed = TransformersLLM.from_model(same[0], ByteTokenizer(), packed_linears=True)
    plain = TransformersLLM.from_model(same[1], ByteTokenizer())  # the caller's model: left as it is
    linears = [m for m in packed._base.modules() if isinstance(m, torch.nn.Linear)]
    assert packed.packed_linears == 4 * 7 and not linears  # q, k, v, o, gate, up, down in each of 4 layers
    assert plain.packed_linears == 0 and not any(isinstance(m, PackedLinear) for m in plain._base.modules())
    assert isinstance(packed._head, torch.nn.Linear)  # the head is the bounded int8 scan's business
    ids = torch.tensor([packed.encode(p) for p in ("Question: 12 + 30 = ?", "The quick brown fox j")])
    with torch.inference_mode():
        a, b = packed.model(ids).logits, plain.model(ids).logits
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-4) and not torch.equal(a, torch.zeros_like(a))
    cfg = GenerationConfig(max_new_tokens=24)
    assert [c.text for c in packed.generate(PROMPTS, cfg)] == [c.text for c in plain.generate(PROMPTS, cfg)]


def test_a_packed_linear_computes_x_wt_plus_b():
    import torch

    from agentkit.engine.packed import PackedLinear, can_pack

    if not can_pack():
        pytest.skip("this torch build has no oneDNN linear ops")
    torch.manual_seed(0)
    linear = torch.nn.Linear(40, 24)
    x = torch.randn(2, 3, 40)
    with torch.inference_mode():
        assert torch.allclose(PackedLinear(linear)(x), linear(x), rtol=1e-5, atol=1e-5)
        assert torch.allclose(PackedLinear(linear)(x[:, -1]), linear(x[:, -1]), rtol=1e-5, atol=1e-5)


def test_building_an_engine_leaves_the_global_rng_alone():
    """The int8 head is built on a background thread: drawing from the global RNG there would change what the
    caller's seeded code draws (and raced with it)."""
    import torch

    from agentkit.engine.transformers_llm import TransformersLLM
    from tiny_engine import tiny_gemma

    model = tiny_gemma()
    torch.manual_seed(123)
    expected = torch.rand(4)
    torch.manual_seed(123)
    llm = TransformersLLM.from_model(model, ByteTokenizer(), packed_linears=True)
    llm.wait_until_ready()
    assert llm._qhead is not None
    assert torch.equal(torch.rand(4), expected)
