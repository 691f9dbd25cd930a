"""Fast tests of ``TransformersLLM``'s decode loop and public API: no downloaded weights.

The loop is checked end to end on a tiny random-weight Gemma 3 (sliding-window and full layers, window shorter
than the prompts) with a byte-level tokenizer, against transformers' own ``generate``. The units have their own
files: ``test_engine_heads.py``, ``test_engine_sampling.py``, ``test_engine_speculation.py``, ``test_engine_kv.py``,
``test_engine_text.py``, ``test_engine_loading.py``.
"""

from __future__ import annotations

import pytest
from tiny_engine import PROMPTS, ByteTokenizer, reference, tiny_engine

from agentkit.llm import GenerationConfig

# -- the decode loop on a tiny random Gemma 3 -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    pytest.importorskip("torch")
    return tiny_engine()  # a random Gemma 3 (tests/tiny_engine.py) with the byte tokenizer


def test_tiny_greedy_matches_transformers_generate(tiny):
    cfg = GenerationConfig(max_new_tokens=24)
    got = tiny.generate(PROMPTS, cfg)  # 6 prompts through 4 slots: rows join and leave mid-flight
    for prompt, completion in zip(PROMPTS, got, strict=True):
        ref = tiny.tokenizer.decode(reference(tiny, prompt, 24))
        assert completion.text == ref
        assert completion.prompt_tokens == len(tiny.encode(prompt))
        assert 1 <= completion.completion_tokens <= 24


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


def test_count_tokens(tiny):
    assert tiny.count_tokens("héllo") == 6


def test_tiny_llama_without_layer_types_matches_transformers():
    torch = pytest.importorskip("torch")
    from transformers import LlamaConfig, LlamaForCausalLM

    from agentkit.engine.transformers_llm import TransformersLLM

    torch.manual_seed(1)
    cfg = LlamaConfig(
        vocab_size=259,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
    )
    llm = TransformersLLM.from_model(LlamaForCausalLM(cfg).float().eval(), ByteTokenizer(), max_batch_size=3)
    got = llm.generate(PROMPTS, GenerationConfig(max_new_tokens=12))
    assert [c.text for c in got] == [llm.tokenizer.decode(reference(llm, p, 12)) for p in PROMPTS]


# -- EngineConfig: one switch per performance feature ---------------------------------------------------------------


@pytest.mark.parametrize(
    "knob",
    [
        {"prefix_cache_mb": 0},
        {"prompt_lookup": 0},
        {"first_draft": 1},
        {"prefill_chunk": 5},
        {"packed_linears": False},
        {"fast_lm_head": False},
        {"gumbel_race": False},
        {"matmul_attention": True},
    ],
    ids=lambda knob: next(iter(knob)),
)
def test_each_performance_switch_leaves_the_greedy_texts_as_they_are(tiny, knob):
    """So a regression can be bisected by switching features off one at a time."""
    llm = tiny_engine(**knob)
    llm.wait_until_ready()
    assert {k: getattr(llm.config, k) for k in knob} == knob
    cfg = GenerationConfig(max_new_tokens=16)
    assert [c.text for c in llm.generate(PROMPTS, cfg)] == [c.text for c in tiny.generate(PROMPTS, cfg)]


def test_keyword_arguments_are_laid_over_the_engine_config():
    from tiny_engine import tiny_gemma

    from agentkit.engine import EngineConfig, TransformersLLM

    config = EngineConfig(max_batch_size=3, prompt_lookup=2)
    llm = TransformersLLM.from_model(tiny_gemma(), ByteTokenizer(), config=config, prompt_lookup=0)
    assert llm.config.model_dump() == EngineConfig(max_batch_size=3, prompt_lookup=0).model_dump()
    assert llm.max_batch_size == 3 and config.prompt_lookup == 2  # the caller's config is left as it was
    assert llm.packed_linears == 0  # from_model packs the caller's model only when asked
    with pytest.raises(TypeError, match="unexpected keyword argument 'max_batch'"):
        TransformersLLM.from_model(tiny_gemma(), ByteTokenizer(), max_batch=3)


# -- oneDNN-packed linears ------------------------------------------------------------------------------------------


def test_packed_linears_replace_the_decoders_linears_and_keep_its_outputs():
    import torch
    from tiny_engine import tiny_gemma

    from agentkit.engine.packed import PackedLinear, can_pack
    from agentkit.engine.transformers_llm import TransformersLLM

    if not can_pack():
        pytest.skip("this torch build has no oneDNN linear ops")
    same = [tiny_gemma(), tiny_gemma()]  # both built before an engine's background thread can touch the RNG
    packed = TransformersLLM.from_model(same[0], ByteTokenizer(), packed_linears=True)
    plain = TransformersLLM.from_model(same[1], ByteTokenizer())  # the caller's model: left as it is
    linears = [m for m in packed.model.model.modules() if isinstance(m, torch.nn.Linear)]
    assert packed.packed_linears == 4 * 7 and not linears  # q, k, v, o, gate, up, down in each of 4 layers
    assert plain.packed_linears == 0 and not any(isinstance(m, PackedLinear) for m in plain.model.model.modules())
    assert isinstance(packed.chooser.head.linear, torch.nn.Linear)  # the head is the bounded int8 scan's business
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
