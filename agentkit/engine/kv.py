"""The KV cache that the continuous-batching decode loop owns, and one forward pass over it.

Layout: per layer a K and a V buffer of shape ``[rows, kv_heads, capacity, head_dim]`` (all layers in one tensor,
so copying a row or a block is one op). Every active row is *right-aligned on a shared write column* ``t``: row
``b`` holds its tokens contiguously in columns ``[start[b], t)`` with positions ``0 .. t-start[b]-1``, and its
next token is written at column ``t``. So one decode step writes one column for all rows, a row can join by
placing its prompt KV in ``[t-n, t)``, and a row that leaves just frees its slot (rows are kept dense in slots
``0..n-1`` by moving the last row into a hole). Validity, causality and sliding windows are all masks computed
from ``start``; sliding-window layers are only shown the last ``window`` columns, which is exact because rows
are contiguous.

The model's own decoder layers run unchanged: :class:`StepCache` stands in for a transformers ``Cache`` (it only
needs ``update``) and the masks are passed ready-made (a dict per layer type for hybrid models such as Gemma 3,
a 4D tensor otherwise), so transformers never builds masks or caches of its own.

Growth never zero-fills or copies more than it must: buffers are allocated uninitialized (untouched pages cost no
memory), and an invariant keeps every column a live row can be shown finite: for each live slot, columns
``[lo, t)`` (``lo`` = the smallest ``start``) hold written or zeroed values. Masked columns still enter attention
as ``0 * value``, so uninitialized memory (possibly NaN) must never be inside that span. When the buffer must grow,
it grows geometrically, and a relayout leaves slack on the left for longer rows joining later, so a multi-step
agent whose prompts grow each step does not repack the store at every admission.

Not here: paging, cross-row sharing of prefix KV in the batch (shared prefixes are copied in from
:mod:`agentkit.engine.prefix_cache`), or attention kernels (the model's configured attention is used: sdpa, or
:mod:`agentkit.engine.attention` for bfloat16 prefill).
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import torch

EMPTY = 1 << 62  # ``start`` of a slot that holds no row


class ModelShape:
    """What the KV store needs to know about a decoder-only model."""

    def __init__(self, model: Any):
        cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        self.n_layers = cfg.num_hidden_layers
        self.n_kv_heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        layer_types = getattr(cfg, "layer_types", None)
        window = getattr(cfg, "sliding_window", None)
        self.layer_types: list[str] | None = list(layer_types) if layer_types else None
        self.window: int | None = window if (self.layer_types and "sliding_attention" in self.layer_types) else None
        self.sliding = [t == "sliding_attention" and self.window is not None for t in (self.layer_types or [])]
        if not self.sliding:
            self.sliding = [False] * self.n_layers
        self.bytes_per_token = 2 * self.n_layers * self.n_kv_heads * self.head_dim  # times element size


class StepCache:
    """Duck-typed transformers ``Cache`` for one forward: writes new K/V at ``col`` and returns the visible span."""

    is_compileable = False

    def __init__(
        self, store: KVStore, rows: slice, col: int, lo: int, lo_sliding: int, keep: torch.Tensor | None = None
    ):
        self.store, self.rows, self.col, self.lo, self.lo_sliding = store, rows, col, lo, lo_sliding
        self.keep = keep  # [rows, 1, m, 1]: True where the column's existing K/V stays (cached prefix, padding)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args: Any, **kw: Any):
        m = key_states.shape[2]
        k, v = self.store.k[layer_idx], self.store.v[layer_idx]
        end = self.col + m
        if self.keep is not None:
            key_states = torch.where(self.keep, k[self.rows, :, self.col : end], key_states)
            value_states = torch.where(self.keep, v[self.rows, :, self.col : end], value_states)
        k[self.rows, :, self.col : end] = key_states
        v[self.rows, :, self.col : end] = value_states
        lo = self.lo_sliding if self.store.shape.sliding[layer_idx] else self.lo
        return k[self.rows, :, lo:end], v[self.rows, :, lo:end]

    def get_seq_length(self, layer_idx: int = 0) -> int:  # only used if position_ids are missing
        return self.col - self.lo


class KVStore:
    """KV buffers for up to ``rows`` sequences, right-aligned on the write column ``t`` (see module doc)."""

    def __init__(self, shape: ModelShape, rows: int, capacity: int, dtype: torch.dtype, device: str | torch.device):
        self.shape, self.dtype, self.device = shape, dtype, device
        self.rows = rows
        self.capacity = capacity
        self.k, self.v = self._alloc(capacity)
        self.start = [EMPTY] * rows  # first valid column per slot
        self.n = 0  # active slots are 0..n-1
        self.t = 0

    def _alloc(self, capacity: int) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.shape
        dims = (s.n_layers, self.rows, s.n_kv_heads, capacity, s.head_dim)
        # empty, not zeros: zero-filling [rows, capacity] on every growth was a quarter of ReAct's time; the
        # columns a row can be shown are kept finite by ``place_row`` / ``move_row`` instead (see module doc)
        return (
            torch.empty(dims, dtype=self.dtype, device=self.device),
            torch.empty(dims, dtype=self.dtype, device=self.device),
        )

    def nbytes(self) -> int:
        return self.k.nbytes + self.v.nbytes

    def lo(self) -> int:
        return min((s for s in self.start[: self.n] if s != EMPTY), default=self.t)

    def relayout(self, new_t: int, capacity: int) -> None:
        """Move the live columns so the write column becomes ``new_t``, in a buffer of ``capacity`` columns."""
        lo, shift = self.lo(), new_t - self.t
        assert lo + shift >= 0 and new_t < capacity
        if capacity != self.capacity:
            k, v = self._alloc(capacity)
            if self.n:
                k[:, : self.n, :, lo + shift : new_t] = self.k[:, : self.n, :, lo : self.t]
                v[:, : self.n, :, lo + shift : new_t] = self.v[:, : self.n, :, lo : self.t]
            self.k, self.v, self.capacity = k, v, capacity
        elif shift and self.n:
            # overlapping move inside one buffer: clone the source span first
            self.k[:, : self.n, :, lo + shift : new_t] = self.k[:, : self.n, :, lo : self.t].clone()
            self.v[:, : self.n, :, lo + shift : new_t] = self.v[:, : self.n, :, lo : self.t].clone()
        self.start = [s + shift if (i < self.n and s != EMPTY) else EMPTY for i, s in enumerate(self.start)]
        self.t = new_t

    def make_room(self, need_left: int, need_right: int, slack: int = 256) -> None:
        """Ensure ``t >= need_left`` (a joining row's length) and ``t + need_right <= capacity``.

        A relayout packs the live span to the left edge but leaves ``slack + need_left // 4`` free columns before
        ``t`` beyond what the joiner needs (the next, longer prompt of an agent fits without another move); a new
        buffer is at least 1.5x the old one, so growth copies the store O(log) times."""
        lo = self.lo()
        used = self.t - lo
        if self.t >= need_left and self.t + need_right <= self.capacity:
            return
        new_t = max(need_left + slack + need_left // 4, used)
        capacity = self.capacity
        if new_t + need_right > capacity:
            capacity = max(new_t + need_right + slack, capacity * 3 // 2)
        self.relayout(new_t, capacity)

    def place_row(self, slot: int, start: int) -> None:
        """Make ``slot`` a live row starting at column ``start`` (its columns ``[start, t)`` are written next),
        keeping the invariant that every live slot's columns ``[lo, t)`` are finite."""
        lo = self.lo()
        self.start[slot] = start
        live = [i for i in range(self.n) if self.start[i] != EMPTY and i != slot]
        if start < lo and live:  # the span shown to every row widens to the left: clear it in the other rows
            for i in live:
                self.k[:, i, :, start:lo] = 0
                self.v[:, i, :, start:lo] = 0
        if lo < start:
            self.k[:, slot, :, lo:start] = 0
            self.v[:, slot, :, lo:start] = 0

    def move_row(self, src: int, dst: int) -> None:
        """Move a live row to slot ``dst``; its whole ``[lo, t)`` span moves, so masked columns stay finite."""
        lo, s = self.lo(), self.start[src]
        self.start[src] = EMPTY
        self.k[:, dst, :, lo : self.t] = self.k[:, src, :, lo : self.t]
        self.v[:, dst, :, lo : self.t] = self.v[:, src, :, lo : self.t]
        self.start[dst] = s

    def row_kv(self, slot: int, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Views ``[layers, kv_heads, len, head_dim]`` of a row's first ``n`` tokens."""
        s = self.start[slot]
        end = self.t if n is None else s + n
        return self.k[:, slot, :, s:end], self.v[:, slot, :, s:end]

    def forward(
        self,
        base_model: Any,
        input_ids: torch.Tensor,
        rows: slice,
        col: int,
        keep: torch.Tensor | None = None,
        every_position: bool = False,
    ) -> torch.Tensor:
        """Run ``input_ids`` (``[len(rows), m]``) for slots ``rows`` with KV written at ``col..col+m``, except where
        ``keep`` (``[len(rows), 1, m, 1]``) is True: there the column's K/V stays, and the fed token is padding
        (a query there attends at least to its own column, so it stays finite; its output is never used).

        ``base_model`` is the decoder stack without the LM head. Every row in ``rows`` must already have its
        earlier tokens in ``[start, col)``. Returns the final hidden state of the last position, ``[rows, hidden]``
        (of every position, ``[rows, m, hidden]``, with ``every_position``).
        """
        m = input_ids.shape[1]
        starts = torch.tensor(self.start[rows], device=self.device)
        lo = int(starts.min())
        window = self.shape.window
        lo_s = max(lo, col + 1 - window) if window else lo
        qcols = torch.arange(col, col + m, device=self.device)
        positions = qcols[None, :] - starts[:, None]

        def mask(first: int, sliding: bool) -> torch.Tensor:
            kcols = torch.arange(first, col + m, device=self.device)
            ok = kcols[None, None, :] >= starts[:, None, None]  # [rows, 1, L]
            if m > 1:
                ok = ok & (kcols[None, None, :] <= qcols[None, :, None])
            if sliding and m > 1:
                ok = ok & (qcols[None, :, None] - kcols[None, None, :] < window)
            if keep is not None:
                ok = ok | (kcols[None, None, :] == qcols[None, :, None])
            return ok.expand(-1, m, -1)[:, None]  # [rows, 1, m, L]

        if self.shape.layer_types:
            masks: Any = {
                t: mask(lo_s if t == "sliding_attention" and window else lo, t == "sliding_attention")
                for t in set(self.shape.layer_types)
            }
        else:
            masks = mask(lo, False)
        cache = StepCache(self, rows, col, lo, lo_s, keep)
        out = base_model(
            input_ids=input_ids,
            attention_mask=masks,
            position_ids=positions,
            use_cache=True,
            **{_cache_kwarg(type(base_model)): cache},
        )
        return out.last_hidden_state if every_position else out.last_hidden_state[:, -1]


@functools.cache
def _cache_kwarg(model_class: type) -> str:
    """The name the model's ``forward`` takes its KV cache under: ``cache`` in newer transformers, which
    deprecate ``past_key_values``; ``past_key_values`` before."""
    return "cache" if "cache" in inspect.signature(model_class.forward).parameters else "past_key_values"
