"""Attention as two batched matmuls for multi-token queries in bfloat16 on CPU, where SDPA's kernel is slow.

PyTorch's CPU flash-attention kernel (what ``scaled_dot_product_attention`` runs on CPU) computes bfloat16 in
float32 block by block without the CPU's native bf16 dot products; oneDNN's bf16 matmul uses them. So for the
engine's prefill chunks (a few to a few hundred queries a row against 500-1,500 keys) ``softmax(q k^T) v`` as two
``torch.matmul`` calls is ~3x faster per attention call, and a whole bf16 prefill forward of the default model
1.2-1.7x faster; in float32 it is no faster (``benchmarks/PERF_NOTES.md`` has the figures). For one query a row
(a decode step) SDPA stays: transformers folds the query heads onto the K/V head there, and the matmuls would need
the K/V copied out of the engine's store first, which costs what they save.

This is transformers' own *eager* attention arithmetic (bf16 scores, softmax in float32, bf16 weights times V),
except that the query heads sharing a K/V head are folded into the query rows of one matmul (grouped-query
attention without repeating K and V), and scaling and mask are applied to the float32 scores. Its bf16 results
differ from SDPA's in rounding, so bf16 greedy texts can differ in near-ties (float32 is not affected: off there).

:func:`install` registers it with transformers' ``AttentionInterface`` (and ``sdpa``'s mask maker, for forwards
transformers masks itself) under :data:`NAME`; a model set to it runs every forward through :func:`attention`,
which hands anything it was not written for (one query a row, no mask or a float mask, dropout) to ``sdpa``.

Deliberately not here: a kernel of our own, float32, attention that reads a prefix shared by several rows once
(the rows of the engine's KV store each hold their own copy).
"""

from __future__ import annotations

from typing import Any

import torch

NAME = "agentkit_matmul"


def attention(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    softcap: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """``softmax(scaling * q k^T + mask) v`` for ``query`` ``[b, heads, m, d]`` and ``key`` / ``value``
    ``[b, kv_heads, L, d]`` with a boolean ``attention_mask`` ``[b, 1, m, L]``; returns ``[b, m, heads, d]``."""
    if query.shape[2] == 1 or attention_mask is None or attention_mask.dtype != torch.bool or dropout:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, softcap=softcap, **kwargs
        )
    b, heads, m, d = query.shape
    kv_heads = key.shape[1]
    # the engine's K/V are views into its store (rows strided by the buffer's capacity), on which oneDNN's batched
    # bf16 matmul is ~8x slower than on a contiguous copy, and the copy costs less than a tenth of the attention
    key, value = key.contiguous(), value.contiguous()
    group = heads // kv_heads
    # the heads of a K/V group become query rows (head-major), so every group is one [group*m, d] x [d, L] matmul
    scores = torch.matmul(query.reshape(b, kv_heads, group * m, d), key.transpose(2, 3)).float()
    scores.mul_(d**-0.5 if scaling is None else scaling)
    if softcap is not None:
        scores = torch.tanh(scores.div_(softcap)).mul_(softcap)
    mask = attention_mask if m == 1 else attention_mask.repeat(1, 1, group, 1)  # [b, 1, 1 or group*m, L]
    scores.masked_fill_(~mask, float("-inf"))  # every query sees its own column, so no row is all -inf
    weights = torch.softmax(scores, dim=-1).to(value.dtype)
    out = torch.matmul(weights, value)  # [b, kv_heads, group*m, d]
    return out.reshape(b, heads, m, d).transpose(1, 2).contiguous(), None


def install() -> str:
    """Register :func:`attention` with transformers under :data:`NAME` (idempotent); returns the name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    return NAME
