"""``TransformersLLM``: a local causal LM behind agentkit's ``LLM`` interface, with a continuous-batching engine.

One decode loop serves ``generate``, ``stream`` and ``session``:

* every request is a *row*; its prompt is tokenized whole, the longest block-aligned prefix already in the
  :class:`~agentkit.engine.prefix_cache.PrefixCache` is copied in, and only the rest is prefilled (in chunks,
  up to the last prompt token, which joins the next decode step: the 262k-entry LM head never runs on prompt
  positions and a new row costs no head call of its own);
* rows then decode together, one token per step, in the right-aligned KV layout of :mod:`agentkit.engine.kv`;
  a greedy row that decodes alone (a batch's last, longest row; a chat reply) verifies a prompt-lookup draft
  of several tokens per step instead (:mod:`agentkit.engine.lookup`), with the same output;
* a row leaves the batch the step it finishes (EOS, stop string, or ``max_new_tokens``) and a waiting request
  takes its slot before the next step, so nobody waits for the longest row;
* stop strings are matched on incrementally decoded text (:mod:`agentkit.engine.text`), so they are exact.

Sampling uses one ``torch.Generator`` per row (seeded from ``config.seed``; in ``generate`` row ``i`` uses
``seed + i`` so k copies of one prompt give k different samples), so a row's samples do not depend on the batch.

Deliberately not here: speculative decoding for several rows at once (rows would advance by different amounts,
which the right-aligned KV layout cannot hold, and every verified position adds LM-head work: see
``_Batcher._speculate``) or for sampled rows, draft models, quantized matmuls, multi-device, beam search, logit
processors beyond temperature / top-k / top-p.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Hashable
from pathlib import Path
from typing import Any

import torch

from agentkit.engine.kv import EMPTY, KVStore, ModelShape
from agentkit.engine.loading import cache_dir, load_model, resolve_device, resolve_dtype
from agentkit.engine.lookup import PromptLookup
from agentkit.engine.packed import can_pack, linear_holding, pack_linears
from agentkit.engine.prefix_cache import PrefixCache
from agentkit.engine.text import RowText
from agentkit.errors import UsageError
from agentkit.llm import LLM, BatchSession, Chat, Completion, GenerationConfig, Prompt, refuse_constraint

PREFILL_CHUNK = 512  # prompt tokens per prefill forward (bounds the attention-mask and activation memory)
MAX_DRAFT = 10  # default ``prompt_lookup``: the most drafted tokens one step verifies
FIRST_DRAFT = 4  # a row's first draft length (then adapted to how much of its drafts the model accepts)


def _set_threads() -> None:
    if os.environ.get("OMP_NUM_THREADS"):
        return
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    if torch.get_num_threads() != cores:
        torch.set_num_threads(cores)


class _Row:
    __slots__ = ("key", "ids", "config", "text", "gen", "generated", "pending", "slot", "completion", "lookup",
                 "draft_k")

    def __init__(self, key: Hashable, ids: list[int], config: GenerationConfig, text: RowText, gen: Any):
        self.key, self.ids, self.config, self.text, self.gen = key, ids, config, text, gen
        self.generated: list[int] = []
        self.pending = ids[-1]  # the next token to feed: the last prompt token, then each generated one
        self.slot = -1
        self.completion: Completion | None = None
        self.lookup: PromptLookup | None = None  # built the first step this row decodes alone (see _speculate)
        self.draft_k = FIRST_DRAFT


class _Batcher:
    """The continuous-batching loop: ``add`` rows, call ``step`` until it has returned every row."""

    def __init__(self, llm: TransformersLLM, max_batch_size: int):
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        self.llm = llm
        self.max_batch = max_batch_size
        self.waiting: deque[_Row] = deque()
        self.slots: list[_Row | None] = []  # index = KV slot; None = hole
        self.store: KVStore | None = None

    @property
    def n_active(self) -> int:
        return sum(r is not None for r in self.slots)

    def add(self, row: _Row) -> None:
        self.waiting.append(row)

    def close(self) -> None:
        self.waiting.clear()
        self.slots = []
        self.store = None

    def step(self) -> list[_Row]:
        """Admit waiting rows into free slots, run one decode step; return the rows that finished."""
        finished: list[_Row] = []
        stats = self.llm.stats
        with self.llm._lock, torch.inference_mode():
            t0 = time.perf_counter()
            self._compact()  # active rows in slots 0..n-1, so the rows admitted now get the contiguous n..
            self._admit(finished)
            t1 = time.perf_counter()
            if self.slots:
                self._decode(finished)
            stats["prefill_s"] += t1 - t0
            stats["decode_s"] += time.perf_counter() - t1
        return finished

    # -- admission: prefix-cache lookup + prefill -------------------------------------------------------------

    def _admit(self, finished: list[_Row]) -> None:
        free = self.max_batch - self.n_active
        group = [self.waiting.popleft() for _ in range(min(free, len(self.waiting)))]
        if not group:
            return
        llm = self.llm
        if self.store is None:
            self.store = KVStore(llm._shape, self.max_batch, 0, llm.torch_dtype, llm.device)
        store = self.store
        rows = [r for r in self.slots if r is not None] + group
        need_right = max(r.config.max_new_tokens - len(r.generated) for r in rows) + 1
        store.make_room(max(len(r.ids) for r in group), need_right)
        # Rows whose first uncached block another row of this group also starts with (self-consistency's k
        # copies of a prompt) wait one round: the first row's prefill puts that block in the prefix cache.
        bs = llm.prefix_cache.block if llm.prefix_cache is not None else 0
        leaders, followers, seen = [], [], set()
        for row in group:
            done = self._cached(row)
            key = tuple(row.ids[done : done + bs]) if bs and len(row.ids) - 1 - done >= bs else None
            (followers if key is not None and key in seen else leaders).append(row)
            seen.add(key)
        for part in (leaders, followers):
            if part:
                self._prefill(part)
        store.n = len(self.slots)

    def _cached(self, row: _Row) -> int:
        """How many leading prompt tokens the prefix cache holds (a multiple of its block size)."""
        cache = self.llm.prefix_cache
        return 0 if cache is None else cache.cached_tokens(row.ids, len(row.ids) - 1)

    def _prefill(self, group: list[_Row]) -> None:
        """Put the KV of all prompt tokens but the last of each row into new slots (cached blocks + computed rest),
        in one batched forward per chunk of columns.

        The last prompt token is fed by the next decode step together with the other rows, so prefill never
        needs the LM head and a row's first token costs one batched head call, not one of its own. All rows are
        right-aligned on ``t``, so their uncached tails end at the same column; rows sorted by tail length make
        the rows of every chunk a contiguous run of slots. A row's columns left of its tail in a chunk are fed
        but not written (``keep``), so the cached KV there stays exactly as it was."""
        llm, store = self.llm, self.store
        assert store is not None
        plans = []
        for row in group:
            n = len(row.ids) - 1
            blocks = llm.prefix_cache.lookup(row.ids, n) if llm.prefix_cache is not None else []
            plans.append((row, n, blocks, len(blocks) * (llm.prefix_cache.block if blocks else 0)))
        plans.sort(key=lambda p: p[1] - p[3], reverse=True)
        first = len(self.slots)
        for j, (row, n, blocks, done) in enumerate(plans):
            slot = first + j
            row.slot = slot
            self.slots.append(row)
            store.n = slot + 1
            start = store.t - n
            store.place_row(slot, start)
            bs = llm.prefix_cache.block if blocks else 0
            for b, (kb, vb) in enumerate(blocks):
                store.k[:, slot, :, start + b * bs : start + (b + 1) * bs] = kb
                store.v[:, slot, :, start + b * bs : start + (b + 1) * bs] = vb
            llm.stats["prompt_tokens"] += n + 1
            llm.stats["prefill_tokens"] += n - done
        t = store.t
        tails = [n - done for _, n, _, done in plans]
        for c0 in range(t - tails[0], t, PREFILL_CHUNK):
            c1 = min(t, c0 + PREFILL_CHUNK)
            g = sum(t - m < c1 for m in tails)  # rows whose tail reaches into this chunk: a prefix of the group
            ids, keep = [], []
            for row, n, _, done in plans[:g]:
                start = t - n
                ids.append([row.ids[c - start] if c >= start else 0 for c in range(c0, c1)])
                keep.append([c < start + done for c in range(c0, c1)])
            keep_t = torch.tensor(keep, device=llm.device)
            store.forward(llm._base, torch.tensor(ids, device=llm.device), slice(first, first + g), c0,
                          keep=keep_t[:, None, :, None] if keep_t.any() else None)
        if llm.prefix_cache is not None:
            for row, n, _, done in plans:
                if n > done:
                    llm.prefix_cache.insert(row.ids[:n], *store.row_kv(row.slot))

    # -- decoding ---------------------------------------------------------------------------------------------

    def _compact(self) -> None:
        """Move rows from the tail into holes so active rows occupy slots 0..n-1."""
        store = self.store
        if store is None:
            return
        while None in self.slots:
            hole = self.slots.index(None)
            last = self.slots.pop()
            if last is None:
                continue
            store.move_row(last.slot, hole)
            last.slot = hole
            self.slots[hole] = last
        store.n = len(self.slots)
        for i in range(store.n, store.rows):
            store.start[i] = EMPTY

    def _decode(self, finished: list[_Row]) -> None:
        llm, store = self.llm, self.store
        assert store is not None
        rows = self.slots
        alone = rows[0] if len(rows) == 1 and not rows[0].config.do_sample and llm.prompt_lookup else None
        if alone is not None and self._speculate(alone, finished):
            return
        if store.t >= store.capacity:
            store.make_room(0, max(r.config.max_new_tokens - len(r.generated) for r in rows) + 1)
        ids = torch.tensor([[r.pending] for r in rows], device=llm.device)
        hidden = store.forward(llm._base, ids, slice(0, len(rows)), store.t)
        store.t += 1
        llm.stats["decode_steps"] += 1
        llm.stats["decode_rows"] += len(rows)
        llm.stats["decode_tokens"] += len(rows)
        t_head = time.perf_counter()
        tokens = llm._next_tokens(hidden, rows)
        llm.stats["head_s"] += time.perf_counter() - t_head
        for row, token in zip(list(rows), tokens.tolist(), strict=True):
            if self._accept(row, token):
                self._finish(row, finished)

    def _speculate(self, row: _Row, finished: list[_Row]) -> bool:
        """One step for a greedy row that decodes alone, verifying a prompt-lookup draft (:mod:`.lookup`).

        The row's next input and up to ``draft_k`` drafted tokens go through the model in one forward; the
        model's own greedy choice after each input is taken while it agrees with the draft, plus the first
        choice that does not. So the output is the one plain decoding gives (up to the float rounding that any
        change of batch shape brings: a near-tie could flip), in fewer, wider steps; the KV of rejected draft
        tokens sits beyond the write column and is overwritten by the next step. A row alone is where this
        pays: one forward of a few tokens costs about what one token does when the weights dominate
        (``benchmarks/bench_decode_shapes.py``; on 2 cores, float32 with packed linears: a lone row's forward
        28-32 ms for 1 to 11 tokens, plus ~1 ms of LM head per extra token; with MKL's plain sgemm, 8 rows x 4
        tokens cost 181 ms against 78 ms for 8 rows x 1, a loss). ``draft_k`` grows by 2 after a fully accepted
        draft and shrinks by 1 otherwise. Returns False, having done nothing, when there is nothing to draft."""
        llm, store = self.llm, self.store
        assert store is not None
        if row.lookup is None:
            row.lookup = PromptLookup(row.ids)
        row.lookup.extend(row.generated[len(row.lookup.tokens) - len(row.ids) :])  # tokens of steps without a draft
        room = row.config.max_new_tokens - len(row.generated) - 1  # the last token is never drafted
        draft = row.lookup.draft(min(row.draft_k, llm.prompt_lookup, room))
        if not draft:
            return False
        m = 1 + len(draft)
        if store.t + m > store.capacity:
            store.make_room(0, row.config.max_new_tokens - len(row.generated) + m)
        t = store.t
        hidden = store.forward(llm._base, torch.tensor([[row.pending, *draft]], device=llm.device), slice(0, 1), t,
                               every_position=True)[0]
        t_head = time.perf_counter()
        choices = llm._greedy(hidden).tolist()
        llm.stats["head_s"] += time.perf_counter() - t_head
        taken = 0
        for j, token in enumerate(choices):
            taken = j + 1  # input j is the row's own token (the pending one, or an agreed draft token)
            done = self._accept(row, token)
            if done or j == len(draft) or token != draft[j]:
                break
        store.t = t + taken
        row.draft_k = row.draft_k + 2 if taken == m else max(1, row.draft_k - 1)
        llm.stats["decode_steps"] += 1
        llm.stats["decode_rows"] += 1
        llm.stats["decode_tokens"] += taken
        llm.stats["drafted_tokens"] += len(draft)
        llm.stats["accepted_tokens"] += taken - 1
        if done:
            self._finish(row, finished)
        return True

    def _finish(self, row: _Row, finished: list[_Row]) -> None:
        """Hand a finished row back and free its slot (its KV first goes to the prefix cache); free slots at the
        end are dropped (holes before live rows are filled by ``_compact`` at the next step)."""
        llm, store = self.llm, self.store
        assert store is not None
        finished.append(row)
        if llm.prefix_cache is not None:  # a follow-up prompt (ReAct) may extend prompt + completion
            k, v = store.row_kv(row.slot)
            llm.prefix_cache.insert(row.ids + row.generated[:-1], k, v)
        self.slots[row.slot] = None
        store.start[row.slot] = EMPTY
        while self.slots and self.slots[-1] is None:
            self.slots.pop()

    def _accept(self, row: _Row, token: int) -> bool:
        """Record a sampled token; on finish set ``row.completion`` and return True."""
        row.generated.append(token)
        row.pending = token
        cfg = row.config
        finish = None
        if token in self.llm.eos_ids:
            row.text.flush()
            finish = "stop"
        elif row.text.push(token):
            finish = "stop"
        elif len(row.generated) >= cfg.max_new_tokens:
            row.text.flush()
            finish = "stop" if row.text.stopped else "length"
        if finish is None:
            return False
        row.completion = Completion(
            text=row.text.text,
            finish_reason=finish,
            prompt_tokens=len(row.ids),
            completion_tokens=len(row.generated),
        )
        return True


class EngineSession(BatchSession):
    """Continuous-batching ``BatchSession``: each ``step()`` admits queued requests and decodes one token."""

    def __init__(self, llm: TransformersLLM, max_batch_size: int = 32):
        self.llm = llm
        self.max_batch_size = max_batch_size
        self._batcher = _Batcher(llm, max_batch_size)

    @property
    def free_slots(self) -> int:
        b = self._batcher
        return max(0, self.max_batch_size - b.n_active - len(b.waiting))

    @property
    def pending(self) -> int:
        return self._batcher.n_active + len(self._batcher.waiting)

    def add(self, key: Hashable, prompt: Prompt, config: GenerationConfig) -> None:
        self._batcher.add(self.llm._row(key, prompt, config, config.seed))

    def step(self) -> list[tuple[Hashable, Completion]]:
        return [(r.key, r.completion) for r in self._batcher.step() if r.completion is not None]

    def close(self) -> None:
        self._batcher.close()


class TransformersLLM(LLM):
    """A Hugging Face causal LM (hub id, local directory, ``.gguf`` file, or the embedded default).

    ``max_batch_size`` bounds the rows decoded together by ``generate``; ``prefix_cache_mb`` bounds the prefix
    KV cache (0 disables it); ``prompt_lookup`` is the most tokens a greedy row that decodes alone drafts by
    prompt lookup and verifies per step (0 disables it; the output is the same either way, up to float rounding
    in near-ties, as between batch shapes). ``load_seconds``
    records how long construction took. ``packed_linears`` (float32 on x86 CPUs) runs the decoder's linear
    layers with oneDNN-packed weights (:mod:`agentkit.engine.packed`); ``llm.model`` can then only run forward
    (``packed_linears=False`` keeps it as loaded, to save or convert it).
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        dtype: str = "auto",
        device: str = "auto",
        cache_dir: str | os.PathLike[str] | None = None,
        max_batch_size: int = 32,
        prefix_cache_mb: int = 512,
        fast_lm_head: bool = True,
        prompt_lookup: int = MAX_DRAFT,
        packed_linears: bool = True,
        log: Callable[[str], Any] | None = None,
    ):
        t0 = time.perf_counter()
        _set_threads()
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.torch_dtype = getattr(torch, self.dtype)
        self.cache_dir = _cache_dir(cache_dir)
        model_obj, tokenizer, name = load_model(
            model, dtype=self.dtype, device=self.device, cache=self.cache_dir, log=log or _stderr
        )
        self._setup(model_obj, tokenizer, name, max_batch_size, prefix_cache_mb, fast_lm_head, prompt_lookup,
                    packed_linears)
        self.load_seconds = time.perf_counter() - t0

    @classmethod
    def from_model(
        cls,
        model: Any,
        tokenizer: Any,
        *,
        name: str = "custom",
        max_batch_size: int = 32,
        prefix_cache_mb: int = 512,
        fast_lm_head: bool = True,
        prompt_lookup: int = MAX_DRAFT,
        packed_linears: bool = False,
    ) -> TransformersLLM:
        """Wrap an already loaded causal LM. ``tokenizer`` needs ``encode(text, add_special_tokens)``,
        ``decode(ids)`` (special tokens dropped) and ``token_id(token)``, like :class:`~agentkit.engine.loading.Tokenizer`.
        ``packed_linears`` (float32 on CPU) replaces the decoder's ``nn.Linear`` modules *in place* by oneDNN-packed
        ones, after which the caller's model can only run forward (no saving, pickling, dtype change or training),
        so it is off here unless asked for.
        """
        self = cls.__new__(cls)
        p = next(model.parameters())
        self.device, self.dtype = str(p.device), str(p.dtype).removeprefix("torch.")
        self.torch_dtype, self.cache_dir = p.dtype, None
        self._setup(model, tokenizer, name, max_batch_size, prefix_cache_mb, fast_lm_head, prompt_lookup,
                    packed_linears)
        self.load_seconds = 0.0
        return self

    def _setup(
        self, model: Any, tokenizer: Any, name: str, max_batch_size: int, prefix_cache_mb: int, fast_lm_head: bool,
        prompt_lookup: int, packed_linears: bool,
    ) -> None:
        if prompt_lookup < 0:
            raise ValueError(f"prompt_lookup must be >= 0 (drafted tokens per step; 0 = off), not {prompt_lookup}")
        self.model, self.tokenizer, self.name = model, tokenizer, name
        model.eval()
        self._base = getattr(model, model.base_model_prefix)
        self._head = model.get_output_embeddings()
        # float32 on CPU: the decoder's linears with oneDNN-packed weights (engine/packed.py; 2-4x MKL's sgemm at
        # decode shapes). In place, so anything else that runs this model object gets them too.
        self.packed_linears = 0
        if packed_linears and self.device == "cpu" and self.torch_dtype == torch.float32 and can_pack():
            self.packed_linears = pack_linears(self._base)
        cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        self._softcap = getattr(cfg, "final_logit_softcapping", None)
        # The most positions the model was trained for: prompt + new tokens must fit (None: the config says not).
        self.context_length: int | None = getattr(cfg, "max_position_embeddings", None)
        self._qhead = None
        self._qhead_thread: threading.Thread | None = None
        self.max_batch_size = max_batch_size
        self.prompt_lookup = prompt_lookup
        self._shape = ModelShape(model)
        self.prefix_cache = PrefixCache(prefix_cache_mb << 20) if prefix_cache_mb > 0 else None
        self.eos_ids = self._eos_ids()
        self._lock = threading.RLock()
        self.stats: dict[str, float] = dict.fromkeys(
            ("prompt_tokens", "prefill_tokens", "decode_steps", "decode_tokens", "prefill_s", "decode_s",
             "head_s", "drafted_tokens", "accepted_tokens", "decode_rows"), 0
        )
        if fast_lm_head and self.device == "cpu":
            # Packing the int8 head takes seconds; build it in the background and use the exact head until then.
            # Not a daemon: interpreter exit waits for it (killing it inside a torch op aborts the process).
            self._qhead_thread = threading.Thread(target=self._build_qhead, name="agentkit-int8-head")
            self._qhead_thread.start()

    def _eos_ids(self) -> frozenset[int]:
        ids: set[int] = set()
        for source in (getattr(self.model, "generation_config", None), self.model.config):
            eos = getattr(source, "eos_token_id", None)
            if isinstance(eos, int):
                ids.add(eos)
            elif eos:
                ids.update(int(e) for e in eos)
        end_of_turn = self.tokenizer.token_id("<end_of_turn>")  # Gemma chat models end replies with it
        if end_of_turn is not None:
            ids.add(end_of_turn)
        return frozenset(ids)

    # -- public API -------------------------------------------------------------------------------------------

    def generate(self, prompts: list[Prompt], config: GenerationConfig | None = None) -> list[Completion]:
        config = config or GenerationConfig()
        if not prompts:
            return []
        batcher = _Batcher(self, min(self.max_batch_size, len(prompts)))
        for i, prompt in enumerate(prompts):
            seed = None if config.seed is None else config.seed + i
            batcher.add(self._row(i, prompt, config, seed))
        out: list[Completion | None] = [None] * len(prompts)
        try:
            while batcher.waiting or batcher.slots:
                for row in batcher.step():
                    out[row.key] = row.completion  # type: ignore[index]
        finally:
            batcher.close()
        return out  # type: ignore[return-value]

    def stream(self, prompt: Prompt, config: GenerationConfig | None = None) -> Generator[str, None, Completion]:
        config = config or GenerationConfig()
        batcher = _Batcher(self, 1)
        row = self._row(0, prompt, config, config.seed)
        batcher.add(row)
        try:
            while True:
                done = bool(batcher.step())
                piece = row.text.stream_delta(final=done)
                if piece:
                    yield piece
                if done:
                    return row.completion  # set by the step that finished the row
        finally:  # also runs when the consumer stops iterating (GeneratorExit) or on Ctrl-C
            batcher.close()

    def session(self, max_batch_size: int = 32) -> EngineSession:
        return EngineSession(self, max_batch_size)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def encode(self, prompt: str) -> list[int]:
        """Prompt token ids as the engine feeds them (special tokens such as BOS included: once, even when a chat
        template has already written the BOS into the text)."""
        bos = self.special_tokens.get("bos_token")
        return self.tokenizer.encode(prompt, add_special_tokens=not (bos and prompt.startswith(bos)))

    # -- chat templates: the tokenizer's own ------------------------------------------------------------------

    @property
    def _chat_tokenizer(self) -> Any:
        """The tokenizer that has the chat template (the transformers one the engine's wraps), or None."""
        for candidate in (self.tokenizer, getattr(self.tokenizer, "hf", None)):
            if getattr(candidate, "chat_template", None) and hasattr(candidate, "apply_chat_template"):
                return candidate
        return None

    @property
    def chat_template(self) -> str | None:  # type: ignore[override]
        hf = self._chat_tokenizer
        template = hf.chat_template if hf is not None else None
        return template.get("default") if isinstance(template, dict) else template

    @property
    def special_tokens(self) -> dict[str, str]:  # type: ignore[override]
        hf = self._chat_tokenizer
        named = getattr(hf, "special_tokens_map", {}) if hf is not None else {}
        return {k: v for k, v in named.items() if isinstance(v, str)}

    def apply_chat_template(self, chat: Chat) -> str:
        return self._chat_tokenizer.apply_chat_template(
            [m.model_dump() for m in chat.messages],
            tokenize=False,
            add_generation_prompt=not chat.continues,
            continue_final_message=chat.continues,
        )

    # -- internals --------------------------------------------------------------------------------------------

    def _row(self, key: Hashable, prompt: Prompt, config: GenerationConfig, seed: int | None) -> _Row:
        refuse_constraint(f"engine {self.name}", config.constraint)
        ids = self.encode(self.render(prompt))
        if not ids:
            raise ValueError("empty prompt: the tokenizer produced no tokens (and adds no BOS)")
        self._check_context(len(ids), config.max_new_tokens)
        gen = None
        if config.do_sample:
            gen = torch.Generator(device=self.device)
            gen.manual_seed(seed if seed is not None else int.from_bytes(os.urandom(8), "little") >> 1)
        return _Row(key, ids, config, RowText(self.tokenizer.decode, config.stop, ids), gen)

    def _check_context(self, prompt_tokens: int, max_new_tokens: int) -> None:
        """Refuse a request that cannot fit the model's context (as vLLM does) before any KV is allocated for it."""
        limit = self.context_length
        if limit is None or prompt_tokens + max_new_tokens <= limit:
            return
        room = limit - prompt_tokens
        fix = f"ask for at most {room} new tokens" if room > 0 else "shorten the prompt"
        raise UsageError(
            f"engine {self.name}: the prompt's {prompt_tokens} tokens plus max_new_tokens {max_new_tokens} exceed "
            f"the model's context of {limit} tokens (max_position_embeddings); {fix}"
        )

    def wait_until_ready(self) -> None:
        """Block until background set-up (the int8 LM-head shortlist) is done; generation works before too."""
        if self._qhead_thread is not None:
            self._qhead_thread.join()

    def _build_qhead(self) -> None:
        qhead = _BoundedHead.build(self._head)
        if qhead is not None:
            # calibrate on the hidden states of a short fixed text, here in the background, not in the first step
            ids = self.tokenizer.encode(CALIBRATION_TEXT, add_special_tokens=True)[:64]
            try:
                with self._lock, torch.inference_mode():
                    hidden = self._base(input_ids=torch.tensor([ids], device=self.device)).last_hidden_state[0]
            except Exception:  # noqa: BLE001 - a model that can't run it alone: calibrate on the first decode step
                hidden = None
            if hidden is not None:
                qhead.calibrate(hidden)
        self._qhead = qhead

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self._softcapped(self._head(hidden).float())

    def _softcapped(self, logits: torch.Tensor) -> torch.Tensor:
        """The model's final logit soft-capping (Gemma), if it has one."""
        if self._softcap is not None:
            logits = torch.tanh(logits / self._softcap) * self._softcap
        return logits

    def _greedy(self, hidden: torch.Tensor) -> torch.Tensor:
        """Argmax of the LM head: exact with the int8 head in float32 or with none yet (``_argmax``). In lower
        precision (see ``_BoundedHead.proven``): a shortlist of the ``HEAD_CANDIDATES`` best int8 logits, rescored
        exactly in the model's dtype."""
        qhead = self._qhead
        if qhead is None or qhead.proven:
            return self._argmax(hidden)
        k = min(HEAD_CANDIDATES, qhead.weight.shape[0])
        cand = qhead.shortlist(hidden, k).sort(dim=-1).values  # sorted: ties go to the lowest id
        w = self._head.weight[cand]  # [rows, K, hidden]
        exact = torch.bmm(w, hidden[:, :, None].to(w.dtype))[:, :, 0]
        return cand.gather(1, exact.argmax(dim=-1, keepdim=True))[:, 0]

    def _argmax(self, hidden: torch.Tensor, offset: torch.Tensor | None = None) -> torch.Tensor:
        """Per row, the exact argmax of the logits plus ``offset`` (``[rows, vocab]``, the sampling race's noise;
        none: greedy). With the proven int8 head: among the tokens whose bound can reach the best lower bound,
        rescored exactly (soft-capping is monotonic, so a plain argmax skips it; with an offset it is not
        skippable, so soft-capped models take the full head); rows with too many such tokens, and every row
        without a proven int8 head, use the full head. Either way the same token, up to float rounding."""
        tokens = torch.empty(hidden.shape[0], dtype=torch.long, device=hidden.device)
        full = list(range(hidden.shape[0]))
        qhead = self._qhead
        if qhead is not None and qhead.proven and (offset is None or self._softcap is None):
            cands = qhead.candidates(hidden, 1, offset=offset)
            full = []
            for i, (cand, exact) in enumerate(zip(cands, qhead.exact(hidden, cands), strict=True)):
                if cand is None:
                    full.append(i)
                else:  # sorted ids: ties go to the lowest id, like argmax
                    tokens[i] = cand[(exact if offset is None else exact.float() + offset[i, cand]).argmax()]
        if full:
            logits = self._logits(hidden[full])
            tokens[full] = (logits if offset is None else logits + offset[full]).argmax(dim=-1)
        return tokens

    def _next_tokens(self, hidden: torch.Tensor, rows: list[_Row]) -> torch.Tensor:
        """Next token per row: argmax for greedy rows, seeded sampling (on exact logits) for the others.

        With the proven int8 head (float32), a sampled row with ``top_k`` draws from its exact top-k logits; a
        row with pure temperature (no ``top_k``, ``top_p`` 1) draws by the Gumbel-max race (``_race``), whose
        winner the bounded scan finds exactly, as it finds greedy's argmax. Top-p without ``top_k`` needs every
        probability of the vocabulary, so those rows, rows whose candidate set is too large, and everything
        before the int8 head is built use the full head. Each draw is the same function of the row's generator
        on either path, so a seeded sample does not depend on which path ran."""
        sampled = [i for i, r in enumerate(rows) if r.config.do_sample]
        greedy = [i for i, r in enumerate(rows) if not r.config.do_sample]
        tokens = torch.empty(len(rows), dtype=torch.long, device=hidden.device)
        if greedy:
            tokens[greedy] = self._greedy(hidden if len(greedy) == len(rows) else hidden[greedy])
        race = [i for i in sampled if rows[i].config.top_k is None and rows[i].config.top_p >= 1.0]
        if race:
            tokens[race] = self._race(hidden[race], [rows[i] for i in race])
        top_k = [i for i in sampled if rows[i].config.top_k is not None]
        full = [i for i in sampled if rows[i].config.top_k is None and rows[i].config.top_p < 1.0]
        qhead = self._qhead
        if top_k and qhead is not None and qhead.proven:
            h = hidden[top_k]
            cands = qhead.candidates(h, max(rows[i].config.top_k or 1 for i in top_k))
            for i, cand, exact in zip(top_k, cands, qhead.exact(h, cands), strict=True):
                if cand is None:
                    full.append(i)
                else:
                    tokens[i] = cand[_sample(self._softcapped(exact.float()), rows[i].config, rows[i].gen)]
        else:
            full += top_k
        if full:
            logits = self._logits(hidden[full])
            for j, i in enumerate(full):
                tokens[i] = _sample(logits[j], rows[i].config, rows[i].gen)
        return tokens

    def _race(self, hidden: torch.Tensor, rows: list[_Row]) -> torch.Tensor:
        """Pure-temperature samples by the Gumbel-max race: with ``g_i`` independent standard Gumbel draws,
        ``argmax_i (l_i + T g_i)`` is distributed exactly as ``softmax(l / T)`` (Gumbel 1954; the trick as used
        for sampling by Maddison, Tarlow and Minka 2014, "A* Sampling"). The noise (from the row's generator, a
        fixed number of draws per step) is an offset the bounded int8 scan adds to every token before proving
        which tokens can still win, as for greedy's argmax; the winner among those is found with exact logits.
        Without the int8 head (or with a soft-capped model, whose bound would have to pass through tanh), the full
        head plus the same noise gives the same token."""
        noise = torch.stack([_gumbel(self._head.weight.shape[0], r.gen).mul_(r.config.temperature) for r in rows])
        return self._argmax(hidden, noise)


CALIBRATION_TEXT = (  # any text gives a valid bound; ordinary prose with numbers and code gives a tight one
    "Question: A train leaves at 9:15 and arrives 2 hours 40 minutes later. When does it arrive?\n"
    "Thought: 9:15 plus 2:40 is 11:55.\nAction: Finish[11:55]\n"
    "def solution():\n    total = 3 * 12 + 7\n    return total\n"
    "The Eiffel Tower, in Paris, was completed in 1889 and is 330 metres tall.")
HEAD_CANDIDATES = 64  # greedy shortlist where the bound does not pay (bf16)
MAX_CANDIDATES = 8192  # rows whose proven candidate set is larger use the full head
OUTLIER_DIMS = 32  # hidden dimensions computed exactly next to the int8 head (see _BoundedHead)
RESIDUAL_GAIN = 64.0  # the second activation level of the int8 scan (see _BoundedHead._scan)
SCAN_ROWS = 15  # hidden states per int8 GEMM call (31 GEMM rows): fbgemm's cost jumps beyond 32 rows
PREFILTER_MAX = 65536  # a row whose plain prefilter keeps more tokens than this uses the full head directly


class _BoundedHead:
    """An int8 copy of the LM head whose error is *proven* small enough to shortlist tokens exactly.

    ``approx(h)`` computes, for every token ``i``, ``a_i = W_O,i . h_O + int8(W_R,i) . h~_R``: the few hidden
    dimensions ``O`` where the final hidden state has its (large, model-specific) outliers exactly in float32, the
    rest with fbgemm's int8 GEMM (per-channel weights; activations quantized in two levels, see ``_scan``). Its
    error obeys

        |l_i - a_i| <= ||E_i,R|| ||h_R|| + ||Q_i,R|| ||e|| + margin

    (Cauchy-Schwarz on the weight error ``E = W - Q`` and on the activation error ``e = h_R - h~_R``, which is
    computed with fbgemm's own quantization parameters; ``margin`` covers float rounding). So every token whose
    upper bound is below the k-th largest *lower* bound is provably outside the true top-k, and rescoring the
    rest exactly gives the exact top-k (k = 1: the exact argmax). Without the outlier dimensions the bound is ~20x
    looser (Gemma 3's final hidden state has a few dimensions of size 20-60).

    ``O`` is calibrated once (``calibrate``; any choice keeps the bound valid, a good one keeps it tight). Typical
    candidate sets for Gemma 3 270M in float32, on 1,280 real ReAct decode states: k = 1, median 1 token, at most
    44; k = 40, median 192, at most 724 of 262k.

    ``proven`` is True only for a float32 head: the rounding margin of lower-precision logits (``rel``, ~3% of the
    logit scale in bf16) makes the sets far too large to pay (bf16 Gemma 3 270M: k = 1, 230-6,300 tokens, ~4x the
    cost of the full head; k = 40, over ``MAX_CANDIDATES``), so there the engine uses ``shortlist`` for greedy rows
    and the full head for sampled rows.
    """

    def __init__(self, head: Any, qhead: Any):
        self.head, self.qhead = head, qhead
        self.weight = head.weight
        self.outliers: torch.Tensor | None = None
        self.rel = 4 * torch.finfo(self.weight.dtype).eps  # rounding of the model-dtype logits
        self.proven = self.weight.dtype == torch.float32

    @classmethod
    def build(cls, head: Any) -> _BoundedHead | None:
        qhead = _quantized_head(head)
        return None if qhead is None else cls(head, qhead)

    def calibrate(self, hidden: torch.Tensor) -> None:
        """Choose the outlier dimensions from some final hidden states ``[n, hidden]`` and precompute the norms."""
        w = self.weight.detach().float()
        q = self.qhead.weight().dequantize()
        o = hidden.float().abs().mean(0).topk(min(OUTLIER_DIMS, hidden.shape[1] - 1)).indices.sort().values
        rest = torch.ones(w.shape[1], dtype=torch.bool)
        rest[o] = False
        self.norms = torch.stack([(w - q)[:, rest].norm(dim=1), q[:, rest].norm(dim=1)])  # ||E_i,R||, ||Q_i,R||
        self.norms_max = self.norms.amax(dim=1, keepdim=True)
        self.w_norm_max = float(w.norm(dim=1).max())
        self.w_out_t = w[:, o].T.contiguous()  # [|O|, V], the exact part
        self.outliers = o

    def candidates(
        self, hidden: torch.Tensor, k: int, offset: torch.Tensor | None = None
    ) -> list[torch.Tensor | None]:
        """Per row, sorted token ids that provably contain the exact top-``k`` (None: too many, use the full head)
        of the logits plus ``offset`` (``[rows, vocab]``, the sampling race's noise; none: the logits alone).

        Two stages, so that only a few passes touch the whole vocabulary: a prefilter with each row's *largest*
        bound ``eps_max`` (a token below the k-th best approximation minus ``2 eps_max`` cannot reach the floor),
        then every survivor's own bound."""
        if self.outliers is None:
            self.calibrate(hidden)
        n = hidden.shape[0]
        h = hidden.float()
        if k >= self.weight.shape[0] or not bool(h.isfinite().all()):
            return [None] * n
        h_rest = h.clone()
        h_rest[:, self.outliers] = 0
        approx, act_err, r = self._scan(h_rest)  # approx in units of r (each row's largest |h_R| entry)
        approx.addmm_(h[:, self.outliers] / r, self.w_out_t)
        if offset is not None:  # known exactly: it shifts each token's interval, not its width
            approx.add_(offset / r)
        coef = torch.stack([h_rest.norm(dim=1), act_err], dim=1)  # eps_i = coef . (||E_i,R||, ||Q_i,R||) + margin
        # float rounding of both sides, from |l_i| <= max_i ||W_i|| ||h|| and the largest eps: per-row scalars
        size = self.w_norm_max * h.norm(dim=1)
        worst = (coef @ self.norms_max)[:, 0]
        margin = 1e-3 + 1e-5 * size + self.rel * (size + 2 * worst)
        eps_max = worst + margin
        best = approx.amax(dim=1) if k == 1 else approx.topk(k, dim=1).values[:, -1]
        reach = (best - 2.001 * eps_max / r[:, 0])[:, None]
        rows, ids = (approx >= reach).nonzero(as_tuple=True)  # row-major: ids ascending within a row
        counts = torch.bincount(rows, minlength=n).tolist()
        a = approx[rows, ids].mul_(r[rows, 0])
        eps = (coef[rows] * self.norms[:, ids].T).sum(dim=1).add_(margin[rows])
        out: list[torch.Tensor | None] = []
        for c, part, lo, hi in zip(counts, ids.split(counts), (a - eps).split(counts), (a + eps).split(counts),
                                   strict=True):
            if c > PREFILTER_MAX:
                out.append(None)
                continue
            floor = lo.amax() if k == 1 else lo.topk(k).values[-1]  # <= the exact k-th largest logit
            keep = part[hi >= floor]
            out.append(None if len(keep) > MAX_CANDIDATES else keep)
        return out

    def _scan(self, h_rest: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``Q_R . h_R / r`` for every token with the int8 GEMM, a bound on each row's activation error ``||e||``
        (``|Q_i,R . h_R - r approx_i| <= ||Q_i,R|| ||e||`` up to float rounding), and ``r``.

        fbgemm quantizes the whole activation tensor with one scale, so a single row with large values would
        coarsen every row's step; and one 7-bit step is coarse. So each row is divided by its largest entry ``r``
        (a *pin* row holding -1 and 1 fixes the tensor's range at [-1, 1]), and each row's rounding residual,
        times ``RESIDUAL_GAIN``, rides along as another row of the same GEMM: ``h / r ~ q(x) + q(G (x - q(x))) / G``.
        On Gemma 3 270M this takes the greedy candidate sets from thousands of tokens (often over
        ``MAX_CANDIDATES``) to a handful. Entries within 1e-4 of a rounding tie (where fbgemm's arithmetic could
        round the other way) each add one full step to the bound."""
        n, d = h_rest.shape
        r = h_rest.abs().amax(dim=1, keepdim=True).clamp_min_(1e-30)
        x = h_rest / r
        pin = torch.zeros(1, d)
        pin[0, 0], pin[0, 1] = -1.0, 1.0
        scale, zero = torch._choose_qparams_per_tensor(torch.cat([x, pin]), True)
        level1 = torch.fake_quantize_per_tensor_affine(x, scale, zero, 0, 127)
        res = (x - level1).mul_(RESIDUAL_GAIN)
        parts = []
        step = -(-n // -(-n // SCAN_ROWS))  # balanced chunks of at most SCAN_ROWS rows (2 levels each + the pin)
        for i in range(0, n, step):
            chunk = torch.cat([x[i : i + step], res[i : i + step], pin])
            scale_c, zero_c = torch._choose_qparams_per_tensor(chunk, True)  # what fbgemm uses: the pin's range
            assert (scale_c, zero_c) == (scale, zero), "int8 scan: activation range not pinned"
            m = min(step, n - i)
            o = self.qhead(chunk)
            parts.append(torch.add(o[:m], o[m : 2 * m], alpha=1 / RESIDUAL_GAIN))
        approx = parts[0] if len(parts) == 1 else torch.cat(parts)
        level2 = torch.fake_quantize_per_tensor_affine(res, scale, zero, 0, 127)
        err = (res - level2).div_(RESIDUAL_GAIN)  # = x - level1 - level2 / G: G is a power of two

        def ties(t: torch.Tensor) -> torch.Tensor:
            y = t / scale + zero
            return ((y - y.floor()).sub_(0.5).abs_() < 1e-4).sum(dim=1).float().sqrt_()

        bound = err.norm(dim=1).add_(scale * (ties(x) + (ties(res) + 1) / RESIDUAL_GAIN))
        return approx, bound.mul_(r[:, 0]), r

    def shortlist(self, hidden: torch.Tensor, k: int) -> torch.Tensor:
        """The ``k`` tokens with the largest plain int8 logits per row (no bound: the true best is normally among
        them, but that is not proven)."""
        return self.qhead(hidden.float()).topk(k, dim=-1).indices

    def exact(self, hidden: torch.Tensor, cands: list[torch.Tensor | None]) -> list[torch.Tensor | None]:
        """Exact logits (model dtype) of each row's candidate tokens (None where ``cands`` has None), from one
        gather of all the rows' weight rows."""
        counts = [0 if c is None else len(c) for c in cands]
        if not any(counts):
            return [None if c is None else hidden.new_empty(0) for c in cands]
        ids = torch.cat([c for c in cands if c is not None])
        rows = torch.repeat_interleave(torch.arange(len(cands)), torch.tensor(counts))
        w = self.weight.index_select(0, ids)
        logits = (w * hidden.to(w.dtype).index_select(0, rows)).sum(dim=1)
        return [None if c is None else part for c, part in zip(cands, logits.split(counts), strict=True)]


def _quantized_head(head: Any) -> Any:
    """An int8 (fbgemm, per-channel weights, dynamic activation quantization) copy of the LM head, or None."""
    if head is None or getattr(head, "bias", None) is not None or not hasattr(head, "weight"):
        return None
    if not any(e in torch.backends.quantized.supported_engines for e in ("x86", "fbgemm")):
        return None
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torch.ao.nn.quantized.dynamic import Linear as QLinear

            # (built without a random init, which would take the global RNG from under the caller's seeded code on
            # this background thread)
            lin = linear_holding(head.weight.detach().float())
            lin.qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
            return QLinear.from_float(lin)
    except Exception:  # the quantized backend is optional; fall back to the full head
        return None


def _gumbel(n: int, gen: Any) -> torch.Tensor:
    """``n`` standard Gumbel draws, ``-log(-log(u))``, from the generator ``gen``, as float32. The uniforms and
    the inner log are float64 (steps of 2^-53), so the noise is cut off only beyond ~36.7, which a draw exceeds
    with probability ~1e-16 (float32 uniforms would cut it at ~16.6: once per ~60 steps over a 262k vocabulary);
    ``-log(u)`` keeps its relative precision in float32, so the outer log runs there. On the generator's device
    (a CUDA row draws on the GPU)."""
    return torch.rand(n, dtype=torch.float64, generator=gen, device=gen.device).log_().neg_().float().log_().neg_()


def _sample(logits: torch.Tensor, cfg: GenerationConfig, gen: Any) -> torch.Tensor:
    """One token from temperature / top-k / top-p sampling, drawn with the row's own generator.

    With ``top_k`` only the k best logits are kept (``topk``), so top-p sorts and the softmax runs over k values
    instead of the whole vocabulary (262k for Gemma): the same distribution, a fraction of the work.
    """
    x = logits.float() / cfg.temperature
    ids = None  # vocabulary ids of the entries of x, when x is a shortlist
    if cfg.top_k is not None and cfg.top_k < x.shape[-1]:
        x, ids = torch.topk(x, cfg.top_k)  # sorted, best first
    if cfg.top_p < 1.0:
        if ids is None:
            x, ids = torch.sort(x, descending=True)
        probs = x.softmax(-1)
        drop = probs.cumsum(-1) - probs >= cfg.top_p  # keep the smallest set whose mass reaches top_p
        x = x.masked_fill(drop, float("-inf"))
    choice = torch.multinomial(x.softmax(-1), 1, generator=gen)[0]
    return choice if ids is None else ids[choice]


def _cache_dir(override: str | os.PathLike[str] | None) -> Path:
    return cache_dir(override)


def _stderr(msg: str) -> None:
    import sys

    print(msg, file=sys.stderr, flush=True)
