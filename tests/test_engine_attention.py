"""``agentkit.engine.attention``: attention as two matmuls, against SDPA, and the switch that picks it."""

from __future__ import annotations

import pytest
from tiny_engine import PROMPTS, ByteTokenizer, tiny_engine, tiny_gemma

from agentkit.llm import GenerationConfig

torch = pytest.importorskip("torch")


def _inputs(m: int, dtype):
    """4 query heads on 1 K/V head (Gemma 3's grouping), 3 rows with different first columns, causal for m > 1."""
    gen = torch.Generator().manual_seed(0)
    b, heads, length, d = 3, 4, 40, 16
    q = torch.randn(b, heads, m, d, generator=gen).to(dtype)
    k, v = (torch.randn(b, 1, length, d, generator=gen).to(dtype) for _ in range(2))
    starts = torch.tensor([0, 7, 21])
    kcols, qcols = torch.arange(length), torch.arange(length - m, length)
    mask = (kcols[None, None, :] >= starts[:, None, None]) & (kcols[None, None, :] <= qcols[None, :, None])
    return q, k, v, mask[:, None]


class _Module:
    num_key_value_groups = 4
    is_causal = True
    training = False


@pytest.mark.parametrize("m", [2, 5])
def test_matmul_attention_computes_what_sdpa_does(m):
    """For several queries a row (prefill chunks, a lone row's draft), on K/V that are strided views of a store."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from agentkit.engine.attention import attention

    q, k, v, mask = _inputs(m, torch.float32)
    k, v = (torch.cat([x, x], dim=2)[:, :, 3 : 3 + x.shape[2]].copy_(x) for x in (k, v))  # not contiguous
    assert not k.is_contiguous()
    want, _ = sdpa_attention_forward(_Module(), q, k, v, mask, scaling=0.25)
    got, _ = attention(_Module(), q, k, v, mask, scaling=0.25)
    assert got.shape == want.shape == (3, m, 4, 16)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # bfloat16: within bf16 rounding of the float32 result
    got16, _ = attention(_Module(), q.bfloat16(), k.bfloat16(), v.bfloat16(), mask, scaling=0.25)
    assert got16.dtype == torch.bfloat16
    assert (got16.float() - want).abs().max() < 0.05


def test_one_query_a_row_or_no_boolean_mask_is_sdpa():
    """Decode steps (one query a row) stay on SDPA, which is as fast there; so do forwards transformers masks."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from agentkit.engine.attention import attention

    q, k, v, mask = _inputs(1, torch.bfloat16)
    want, _ = sdpa_attention_forward(_Module(), q, k, v, mask, scaling=0.25)
    assert torch.equal(attention(_Module(), q, k, v, mask, scaling=0.25)[0], want)
    q, k, v, _ = _inputs(5, torch.float32)
    k, v = k[:, :, :5], v[:, :, :5]
    want, _ = sdpa_attention_forward(_Module(), q, k, v, None, scaling=0.25)
    assert torch.equal(attention(_Module(), q, k, v, None, scaling=0.25)[0], want)


def test_the_switch_defaults_to_bfloat16_on_cpu_and_keeps_the_greedy_texts():
    from agentkit.engine.attention import NAME
    from agentkit.engine.transformers_llm import TransformersLLM

    assert tiny_engine().model.config._attn_implementation == "sdpa"  # float32: SDPA's kernel is as fast
    bf16 = TransformersLLM.from_model(tiny_gemma().bfloat16(), ByteTokenizer(), fast_lm_head=False)
    assert bf16.model.config._attn_implementation == NAME
    off = TransformersLLM.from_model(tiny_gemma().bfloat16(), ByteTokenizer(), matmul_attention=False)
    assert off.model.config._attn_implementation == "sdpa"
    on = tiny_engine(matmul_attention=True)
    assert on.model.config._attn_implementation == NAME
    cfg = GenerationConfig(max_new_tokens=16)
    assert [c.text for c in on.generate(PROMPTS, cfg)] == [c.text for c in tiny_engine().generate(PROMPTS, cfg)]
