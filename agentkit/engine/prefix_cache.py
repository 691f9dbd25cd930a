"""An LRU cache of prompt-prefix KV, in fixed-size token blocks, so shared prefixes are prefilled once.

A block holds the K/V of tokens ``[j*B, (j+1)*B)`` of some sequence and is keyed by a hash of *all* tokens up to
its end (a chain, like vLLM's prefix caching), so two prompts share exactly the blocks of their common token
prefix, stored once. Lookup walks the prompt's blocks from the start and stops at the first miss. Because KV at a
position depends only on the tokens up to it, any block of any earlier sequence (a few-shot prefix, the same
prompt sent k times for self-consistency, a ReAct prompt plus its own completion) is reusable.

Callers match on *token ids* of the whole new prompt, so tokenization boundaries are handled: only blocks whose
tokens agree exactly are used. The tail shorter than a block is always recomputed.

Memory is bounded by ``max_bytes``; least-recently-used blocks go first. A lookup touches a chain from its root,
so a parent block is always more recent than its children and the chain is evicted from the tail.
"""

from __future__ import annotations

import hashlib
import threading
from array import array
from collections import OrderedDict
from collections.abc import Sequence

import torch


class PrefixCache:
    def __init__(self, max_bytes: int, block_size: int = 16):
        self.max_bytes = max_bytes
        self.block = block_size
        self._blocks: OrderedDict[bytes, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0  # tokens served from the cache
        self.lookups = 0  # tokens asked for

    def _keys(self, tokens: Sequence[int], limit: int) -> list[bytes]:
        h = hashlib.blake2b(digest_size=16)
        keys = []
        for j in range(limit // self.block):
            chunk = tokens[j * self.block : (j + 1) * self.block]
            h.update(array("q", chunk).tobytes())
            keys.append(h.copy().digest())
        return keys

    def lookup(self, tokens: Sequence[int], limit: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The cached blocks covering the longest block-aligned prefix of ``tokens[:limit]``."""
        found = []
        with self._lock:
            self.lookups += limit
            for key in self._keys(tokens, limit):
                kv = self._blocks.get(key)
                if kv is None:
                    break
                self._blocks.move_to_end(key)
                found.append(kv)
            self.hits += len(found) * self.block
        return found

    def cached_tokens(self, tokens: Sequence[int], limit: int) -> int:
        """How many leading tokens of ``tokens[:limit]`` ``lookup`` would serve (no statistics, no LRU touch)."""
        with self._lock:
            found = 0
            for key in self._keys(tokens, limit):
                if key not in self._blocks:
                    break
                found += self.block
            return found

    def insert(self, tokens: Sequence[int], k: torch.Tensor, v: torch.Tensor) -> None:
        """Store the blocks of ``tokens`` whose K/V (``[layers, kv_heads, len(tokens), head_dim]``) are new."""
        if self.max_bytes <= 0:
            return
        n = min(len(tokens), k.shape[2])
        with self._lock:
            for j, key in enumerate(self._keys(tokens, n)):
                if key in self._blocks:
                    self._blocks.move_to_end(key)
                    continue
                sl = slice(j * self.block, (j + 1) * self.block)
                kb, vb = k[:, :, sl].clone(), v[:, :, sl].clone()
                self._blocks[key] = (kb, vb)
                self._bytes += kb.nbytes + vb.nbytes
            while self._bytes > self.max_bytes and self._blocks:
                _, (kb, vb) = self._blocks.popitem(last=False)
                self._bytes -= kb.nbytes + vb.nbytes

    def clear(self) -> None:
        with self._lock:
            self._blocks.clear()
            self._bytes = 0

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._blocks)
