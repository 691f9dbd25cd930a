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
* a row with a ``GenerationConfig.constraint`` carries an llguidance matcher (:mod:`agentkit.engine.constrain`):
  token choice tests its unconstrained choice against it and masks only on a rejection; the tokens the grammar
  forces are fed without a choice (``_Batcher._accept``); a complete match ends the row (``_Batcher._take``).

Each step's tokens are chosen by one :class:`~agentkit.engine.sampling.TokenChooser` (greedy, the Gumbel race,
top-k / top-p, over the exact head or the bounded int8 one of :mod:`agentkit.engine.heads`). Sampling uses one
``torch.Generator`` per row (seeded from ``config.seed``; in ``generate`` row ``i`` uses ``seed + i`` so k copies
of one prompt give k different samples), so a row's samples do not depend on the batch. Every performance
feature is a switch of :class:`~agentkit.engine.config.EngineConfig`.

Deliberately not here: speculative decoding for several rows at once (rows would advance by different amounts,
which the right-aligned KV layout cannot hold, and every verified position adds LM-head work: see
``_Batcher._speculate``) or for sampled rows, draft models, quantized matmuls beyond the int8 LM head's proven
shortlist, multi-device, beam search.
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

from agentkit.engine import attention
from agentkit.engine.config import EngineConfig, EngineStats
from agentkit.engine.constrain import RowMatcher, Vocabulary
from agentkit.engine.heads import CALIBRATION_TEXT, BoundedHead, FullHead
from agentkit.engine.kv import EMPTY, KVStore, ModelShape
from agentkit.engine.loading import cache_dir, load_model, resolve_device, resolve_dtype
from agentkit.engine.lookup import PromptLookup
from agentkit.engine.packed import can_pack, pack_linears
from agentkit.engine.prefix_cache import PrefixCache
from agentkit.engine.sampling import TokenChooser
from agentkit.engine.text import RowText
from agentkit.errors import UsageError
from agentkit.llm import LLM, BatchSession, Chat, Completion, GenerationConfig, Prompt


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
    __slots__ = (
        "key",
        "ids",
        "config",
        "text",
        "gen",
        "constraint",
        "generated",
        "pending",
        "ahead",
        "slot",
        "completion",
        "lookup",
        "draft_k",
    )

    def __init__(self, key: Hashable, ids: list[int], config: GenerationConfig, text: RowText, gen: Any, draft_k: int):
        self.key, self.ids, self.config, self.text, self.gen = key, ids, config, text, gen
        self.constraint: RowMatcher | None = None  # the row's grammar state (read by sampling.TokenChooser)
        self.generated: list[int] = []
        self.pending = ids[-1]  # the next token to feed: the last prompt token, then each generated one
        self.ahead: list[int] = []  # generated tokens to feed before ``pending`` (a grammar's forced run, _accept)
        self.slot = -1
        self.completion: Completion | None = None
        self.lookup: PromptLookup | None = None  # built the first step this row decodes alone (see _speculate)
        self.draft_k = draft_k  # this row's next draft length (adapted to how much of its drafts it keeps)


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
            stats.prefill_s += t1 - t0
            stats.decode_s += time.perf_counter() - t1
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
            llm.stats.prompt_tokens += n + 1
            llm.stats.prefill_tokens += n - done
        t = store.t
        tails = [n - done for _, n, _, done in plans]
        chunk = llm.config.prefill_chunk
        for c0 in range(t - tails[0], t, chunk):
            c1 = min(t, c0 + chunk)
            g = sum(t - m < c1 for m in tails)  # rows whose tail reaches into this chunk: a prefix of the group
            ids, keep = [], []
            for row, n, _, done in plans[:g]:
                start = t - n
                ids.append([row.ids[c - start] if c >= start else 0 for c in range(c0, c1)])
                keep.append([c < start + done for c in range(c0, c1)])
            keep_t = torch.tensor(keep, device=llm.device)
            store.forward(
                llm._base,
                torch.tensor(ids, device=llm.device),
                slice(first, first + g),
                c0,
                keep=keep_t[:, None, :, None] if keep_t.any() else None,
            )
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
        alone = rows[0] if len(rows) == 1 and not rows[0].config.do_sample and llm.config.prompt_lookup else None
        if alone is not None and alone.constraint is not None:  # drafts are not checked against a constraint
            alone = None
        if alone is not None and self._speculate(alone, finished):
            return
        if len(rows) == 1:  # a row alone feeds its forced run with its next token: one forward (see _accept)
            feed = [[*rows[0].ahead, rows[0].pending]]
            rows[0].ahead = []
        else:  # in a batch a forced run rides along, a token a step, without a choice
            feed = [[r.ahead[0] if r.ahead else r.pending] for r in rows]
        m = len(feed[0])
        if store.t + m > store.capacity:
            store.make_room(0, max(r.config.max_new_tokens - len(r.generated) for r in rows) + m)
        hidden = store.forward(llm._base, torch.tensor(feed, device=llm.device), slice(0, len(rows)), store.t)
        store.t += m
        stats = llm.stats
        stats.decode_steps += 1
        stats.decode_rows += len(rows)
        choosing = [i for i, r in enumerate(rows) if not r.ahead]  # rows that fed their last token
        stats.decode_tokens += len(choosing)
        t_head = time.perf_counter()
        if len(choosing) == len(rows):
            tokens = llm.chooser.choose(hidden, rows).tolist()
        else:
            tokens = llm.chooser.choose(hidden[choosing], [rows[i] for i in choosing]).tolist() if choosing else []
        stats.head_s += time.perf_counter() - t_head
        for row in rows:
            if row.ahead:
                row.ahead.pop(0)
        for row, token in zip([rows[i] for i in choosing], tokens, strict=True):
            if self._accept(row, token):
                self._finish(row, finished)

    def _speculate(self, row: _Row, finished: list[_Row]) -> bool:
        """One step for a greedy row that decodes alone, verifying a prompt-lookup draft (:mod:`.lookup`).

        The row's next input and up to ``draft_k`` drafted tokens go through the model in one forward; the
        model's own greedy choice after each input is taken while it agrees with the draft, plus the first
        choice that does not. So the output is the one plain decoding gives (up to the float rounding that any
        change of batch shape brings: a near-tie could flip), in fewer, wider steps; the KV of rejected draft
        tokens sits beyond the write column and is overwritten by the next step. A row alone is where this
        pays: one forward of a few tokens costs about what one token does when the weights dominate, and for a
        batch it does not (``benchmarks/bench_decode_shapes.py``; figures in ``benchmarks/ENGINE_NOTES.md``).
        ``draft_k`` grows by 2 after a fully accepted draft and shrinks by 1 otherwise. Returns False, having done
        nothing, when there is nothing to draft."""
        llm, store = self.llm, self.store
        assert store is not None
        if row.lookup is None:
            row.lookup = PromptLookup(row.ids)
        row.lookup.extend(row.generated[len(row.lookup.tokens) - len(row.ids) :])  # tokens of steps without a draft
        room = row.config.max_new_tokens - len(row.generated) - 1  # the last token is never drafted
        draft = row.lookup.draft(min(row.draft_k, llm.config.prompt_lookup, room))
        if not draft:
            return False
        m = 1 + len(draft)
        if store.t + m > store.capacity:
            store.make_room(0, row.config.max_new_tokens - len(row.generated) + m)
        t = store.t
        hidden = store.forward(
            llm._base, torch.tensor([[row.pending, *draft]], device=llm.device), slice(0, 1), t, every_position=True
        )[0]
        stats = llm.stats
        t_head = time.perf_counter()
        choices = llm.chooser.greedy(hidden).tolist()
        stats.head_s += time.perf_counter() - t_head
        taken = 0
        for j, token in enumerate(choices):
            taken = j + 1  # input j is the row's own token (the pending one, or an agreed draft token)
            done = self._accept(row, token)
            if done or j == len(draft) or token != draft[j]:
                break
        store.t = t + taken
        row.draft_k = row.draft_k + 2 if taken == m else max(1, row.draft_k - 1)
        stats.decode_steps += 1
        stats.decode_rows += 1
        stats.decode_tokens += taken
        stats.drafted_tokens += len(draft)
        stats.accepted_tokens += taken - 1
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
        """Record a chosen token, and the tokens a constraint then forces; on finish set ``row.completion`` and
        return True.

        Forced tokens (llguidance's fast-forward) need no choice. A row decoding alone feeds its whole run with
        the next token, one forward for the lot: a prefill chunk that costs about what one token does. In a
        batch the rows advance together (they are right-aligned on the KV write column), so the run rides along
        instead, one token a step as the row's input, without LM head or matcher work: a chunk of its own would be
        one more forward per row plus a move of the row's KV, where riding along costs the row's share of a step
        (``benchmarks/ENGINE_NOTES.md``: a lone row's forward ~30 ms, a 16-row step ~90 ms)."""
        if self._take(row, token):
            return True
        if row.constraint is None or not self.llm.config.fast_forward:
            return False
        run = [token]
        while forced := row.constraint.forced():
            self.llm.stats.forced_tokens += len(forced)
            self.llm.stats.decode_tokens += len(forced)
            for f in forced:
                if self._take(row, f):
                    return True
                run.append(f)
        row.ahead = run[:-1]  # fed before ``pending``, the run's last token (see _decode)
        return False

    def _take(self, row: _Row, token: int) -> bool:
        """Record one generated token; on finish set ``row.completion`` and return True."""
        row.generated.append(token)
        row.pending = token
        cfg = row.config
        finish = None
        if token in self.llm.eos_ids:
            row.text.flush()
            finish = "stop"
        elif row.constraint is not None and not row.constraint.take(token):
            row.text.flush()  # a complete match the choice would not continue: it ends here, like end of sequence
            finish = "stop"
        elif row.text.push(token):
            finish = "stop"
        elif row.constraint is not None and row.constraint.stopped:
            row.text.flush()
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

    token_steps = True  # a request's first token comes out of the first step() after add (the runner times it)

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

    ``config`` (:class:`~agentkit.engine.config.EngineConfig`) holds the engine's knobs: batch size, prefix cache,
    prompt lookup, packed linears, the int8 head, the Gumbel race, the prefill chunk; each may also be given as a
    keyword argument (``TransformersLLM(max_batch_size=8, prompt_lookup=0)``), laid over ``config``. Every
    performance feature can be switched off without changing the output beyond float rounding in near-ties.
    ``llm.stats`` (:class:`~agentkit.engine.config.EngineStats`) counts what the engine did; ``load_seconds``
    records how long construction took. With packed linears (float32 on x86 CPUs, :mod:`agentkit.engine.packed`)
    ``llm.model`` can only run forward (``packed_linears=False`` keeps it as loaded, to save or convert it);
    ``llm.packed_linears`` is the number of linears packed.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        dtype: str = "auto",
        device: str = "auto",
        cache_dir: str | os.PathLike[str] | None = None,
        config: EngineConfig | None = None,
        log: Callable[[str], Any] | None = None,
        **knobs: Any,
    ):
        t0 = time.perf_counter()
        config = EngineConfig.of(config, knobs, "TransformersLLM")
        _set_threads()
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.torch_dtype = getattr(torch, self.dtype)
        self.cache_dir = _cache_dir(cache_dir)
        model_obj, tokenizer, name = load_model(
            model, dtype=self.dtype, device=self.device, cache=self.cache_dir, log=log or _stderr
        )
        self._setup(model_obj, tokenizer, name, config, own_model=True)
        self.load_seconds = time.perf_counter() - t0

    @classmethod
    def from_model(
        cls, model: Any, tokenizer: Any, *, name: str = "custom", config: EngineConfig | None = None, **knobs: Any
    ) -> TransformersLLM:
        """Wrap an already loaded causal LM. ``tokenizer`` needs ``encode(text, add_special_tokens)``,
        ``decode(ids)`` (special tokens dropped) and ``token_id(token)``, like
        :class:`~agentkit.engine.loading.Tokenizer`.
        ``packed_linears=True`` (float32 on CPU) replaces the decoder's ``nn.Linear`` modules *in place* by
        oneDNN-packed ones, after which the caller's model can only run forward (no saving, pickling, dtype change
        or training), so it is off here unless asked for. A bfloat16 model on CPU is set to the engine's matmul
        attention (``matmul_attention``), in place too: it computes the same attention, with bf16 rounding.
        """
        config = EngineConfig.of(config, knobs, "from_model")
        self = cls.__new__(cls)
        p = next(model.parameters())
        self.device, self.dtype = str(p.device), str(p.dtype).removeprefix("torch.")
        self.torch_dtype, self.cache_dir = p.dtype, None
        self._setup(model, tokenizer, name, config, own_model=False)
        self.load_seconds = 0.0
        return self

    def _setup(self, model: Any, tokenizer: Any, name: str, config: EngineConfig, own_model: bool) -> None:
        self.config = config
        self.model, self.tokenizer, self.name = model, tokenizer, name
        model.eval()
        self._base = getattr(model, model.base_model_prefix)
        # float32 on CPU: the decoder's linears with oneDNN-packed weights (engine/packed.py; 2-4x MKL's sgemm at
        # decode shapes). In place, so anything else that runs this model object gets them too.
        pack = own_model if config.packed_linears is None else config.packed_linears
        self.packed_linears = 0
        if pack and self.device == "cpu" and self.torch_dtype == torch.float32 and can_pack():
            self.packed_linears = pack_linears(self._base)
        # bfloat16 on CPU: attention as two oneDNN matmuls, which use the CPU's bf16 dot products where SDPA's fused
        # kernel does not (engine/attention.py); set on the model, so its other forwards get it too.
        matmul = config.matmul_attention
        if matmul is None:
            matmul = self.device == "cpu" and self.torch_dtype == torch.bfloat16
        if matmul and hasattr(model, "set_attn_implementation"):
            model.set_attn_implementation(attention.install())
        self.chooser = TokenChooser(FullHead(model), race=config.gumbel_race)
        self._int8_thread: threading.Thread | None = None
        cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        # The most positions the model was trained for: prompt + new tokens must fit (None: the config says not).
        self.context_length: int | None = getattr(cfg, "max_position_embeddings", None)
        self._shape = ModelShape(model)
        self.prefix_cache = PrefixCache(config.prefix_cache_mb << 20) if config.prefix_cache_mb > 0 else None
        self.eos_ids = self._eos_ids()
        self._vocab: Vocabulary | None = None  # for constrained rows (see _vocabulary)
        self._lock = threading.RLock()
        self.stats = EngineStats()
        if config.fast_lm_head and self.device == "cpu":
            # Packing the int8 head takes seconds; build it in the background and use the exact head until then.
            # Not a daemon: interpreter exit waits for it (killing it inside a torch op aborts the process).
            self._int8_thread = threading.Thread(target=self._build_int8_head, name="agentkit-int8-head")
            self._int8_thread.start()

    @property
    def max_batch_size(self) -> int:
        """Rows ``generate`` decodes together (``config.max_batch_size``)."""
        return self.config.max_batch_size

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
            [m.as_dict() for m in chat.messages],
            tools=[dict(t) for t in chat.tools] or None,
            tokenize=False,
            add_generation_prompt=not chat.continues,
            continue_final_message=chat.continues,
        )

    # -- internals --------------------------------------------------------------------------------------------

    def _row(self, key: Hashable, prompt: Prompt, config: GenerationConfig, seed: int | None) -> _Row:
        matcher = self._vocabulary().matcher(config.constraint) if config.constraint is not None else None
        ids = self.encode(self.render(prompt))
        if not ids:
            raise ValueError("empty prompt: the tokenizer produced no tokens (and adds no BOS)")
        self._check_context(len(ids), config.max_new_tokens)
        gen = None
        if config.do_sample:
            gen = torch.Generator(device=self.device)
            gen.manual_seed(seed if seed is not None else int.from_bytes(os.urandom(8), "little") >> 1)
        row = _Row(key, ids, config, RowText(self.tokenizer.decode, config.stop, ids), gen, self.config.first_draft)
        row.constraint = matcher
        return row

    def _vocabulary(self) -> Vocabulary:
        """The model's vocabulary for llguidance, made when the first constraint arrives (built on first use)."""
        if self._vocab is None:  # (two threads may both make one: the built tokenizer is shared, see constrain)
            self._vocab = Vocabulary(self.tokenizer, self.chooser.head.vocab, self.eos_ids, self.cache_dir, self.name)
        return self._vocab

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
        """Block until background set-up (the int8 LM head) is done; generation works before too."""
        if self._int8_thread is not None:
            self._int8_thread.join()

    def _build_int8_head(self) -> None:
        bounded = BoundedHead.build(self.chooser.head.linear)
        if bounded is not None:
            # calibrate on the hidden states of a short fixed text, here in the background, not in the first step
            ids = self.tokenizer.encode(CALIBRATION_TEXT, add_special_tokens=True)[:64]
            try:
                with self._lock, torch.inference_mode():
                    hidden = self._base(input_ids=torch.tensor([ids], device=self.device)).last_hidden_state[0]
            except Exception:  # noqa: BLE001 - a model that can't run it alone: calibrate on the first decode step
                hidden = None
            if hidden is not None:
                bounded.calibrate(hidden)
        self.chooser.bounded = bounded


def _cache_dir(override: str | os.PathLike[str] | None) -> Path:
    return cache_dir(override)


def _stderr(msg: str) -> None:
    import sys

    print(msg, file=sys.stderr, flush=True)
