"""Token choice: each row's next token from its final hidden state, by the row's ``GenerationConfig``.

The batcher calls one object, :class:`TokenChooser`: ``choose(hidden, rows)`` after a decode step and
``greedy(hidden)`` for the positions a speculating row verifies. Per row:

* **greedy** (no ``do_sample``): the exact argmax of the logits. With the proven int8 head
  (:class:`~agentkit.engine.heads.BoundedHead`, float32) the bounded scan keeps the tokens that can still be the
  argmax and exact logits pick among them; in lower precision the int8 top-64 is rescored exactly; without the
  int8 head, the full head.
* **pure temperature** (no ``top_k``, ``top_p`` 1): the Gumbel-max race. With ``g_i`` independent standard
  Gumbel draws, ``argmax_i (l_i + T g_i)`` is distributed exactly as ``softmax(l / T)`` (Gumbel 1954; as a
  sampler, e.g. Maddison, Tarlow and Minka 2014, "A* Sampling"). The noise is an offset the bounded scan adds to
  every token before proving which can still win, as for greedy; the full head plus the same noise picks the same
  token. ``race=False`` samples these rows like top-p ones instead.
* **top-k** (with or without top-p): temperature, top-k and top-p on the exact top-k logits the bounded scan
  shortlists, or on the full head's.
* **top-p without top-k**: every probability of the vocabulary is needed, so the full head.

Every draw is the same function of the row's own ``torch.Generator`` on either path, so a seeded sample does not
depend on the batch or on whether the int8 head is built yet.

A row may carry a ``constraint`` (:class:`TokenConstraint`, e.g. a grammar's state). A greedy or racing row's
unconstrained choice is made first, as above, and tested with ``allows``: the argmax (or race winner) of the
allowed tokens is that token whenever it is allowed, so only a rejected row pays for the masked choice over the
full head (the masked argmax, or the race over the allowed tokens with the same noise). A constrained row with
top-k or top-p samples over the allowed tokens' logits directly (its truncated distribution is not the
unconstrained one conditioned on being allowed). Advancing the constraint by the accepted token is the caller's.

Deliberately not here: logit processors beyond temperature / top-k / top-p (repetition penalties, logit bias),
beam search, min-p, sampling-time verification of drafts.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch

from agentkit.engine.heads import HEAD_CANDIDATES, BoundedHead, FullHead
from agentkit.llm import GenerationConfig


class TokenConstraint(Protocol):
    """A row's constraint on its next token (the engine's is :class:`agentkit.engine.constrain.RowMatcher`)."""

    def allows(self, token: int) -> bool: ...  # may the row emit ``token`` next? (cheap: asked once per step)

    def mask(self) -> torch.Tensor: ...  # bool ``[vocab]`` of the allowed next tokens (asked only on a rejection)


class ChoiceRow(Protocol):
    """What token choice reads of a row (the batcher's rows carry more)."""

    config: GenerationConfig  # greedy unless do_sample; temperature / top_k / top_p
    gen: Any  # the row's own torch.Generator (sampled rows; None for greedy ones)
    constraint: TokenConstraint | None  # None: any token


class TokenChooser:
    """Next tokens for a batch of rows from their final hidden states (see the module docstring).

    ``bounded`` (the int8 head) may arrive later, from a background thread; every path gives the same tokens with
    it or without it, so a step that sees it arrive half-way is still exact.
    """

    def __init__(self, head: FullHead, bounded: BoundedHead | None = None, *, race: bool = True):
        self.head = head
        self.bounded = bounded
        self.race = race

    def choose(self, hidden: torch.Tensor, rows: list[ChoiceRow]) -> torch.Tensor:
        """One token per row (``hidden``: ``[rows, hidden_size]``), as a long tensor."""
        n = len(rows)
        tokens = torch.empty(n, dtype=torch.long, device=hidden.device)
        greedy = [i for i, r in enumerate(rows) if not r.config.do_sample]
        race = [i for i, r in enumerate(rows) if r.config.do_sample and self.race and _pure_temperature(r.config)]
        # constrained rows that neither argmax nor race: their top-k / top-p set is taken over the allowed tokens
        masked = {i for i, r in enumerate(rows) if r.constraint is not None and r.config.do_sample} - set(race)
        rest = [i for i, r in enumerate(rows) if r.config.do_sample and i not in masked and i not in race]
        if greedy:
            tokens[greedy] = self.greedy(hidden if len(greedy) == n else hidden[greedy])
        noise = {}
        if race:
            offset = torch.stack([gumbel(self.head.vocab, rows[i].gen).mul_(rows[i].config.temperature) for i in race])
            tokens[race] = self._argmax(hidden[race], offset)
            noise = dict(zip(race, offset, strict=True))
        top_k = [i for i in rest if rows[i].config.top_k is not None]
        full = [i for i in rest if rows[i].config.top_k is None]
        bounded = self.bounded
        if top_k and bounded is not None and bounded.proven:
            h = hidden[top_k]
            cands = bounded.candidates(h, max(rows[i].config.top_k or 1 for i in top_k))
            for i, cand, exact in zip(top_k, cands, bounded.exact(h, cands), strict=True):
                if cand is None:
                    full.append(i)
                else:
                    tokens[i] = cand[sample(self.head.softcapped(exact.float()), rows[i].config, rows[i].gen)]
        else:
            full += top_k
        if full:
            logits = self.head.logits(hidden[full])
            for j, i in enumerate(full):
                tokens[i] = sample(logits[j], rows[i].config, rows[i].gen)
        # the per-row constraint hook: test the unconstrained argmax / race winner first, mask only on a rejection
        rejected = sorted(masked)
        for i in (*greedy, *race):
            constraint = rows[i].constraint
            if constraint is not None and not constraint.allows(int(tokens[i])):
                rejected.append(i)
        if rejected:
            self._masked(hidden, rows, tokens, rejected, noise)
        return tokens

    def greedy(self, hidden: torch.Tensor) -> torch.Tensor:
        """Argmax of the LM head per row: exact with the int8 head in float32 or with none yet (``_argmax``). In
        lower precision (see ``BoundedHead.proven``): a shortlist of the ``HEAD_CANDIDATES`` best int8 logits,
        rescored exactly in the model's dtype."""
        bounded = self.bounded
        if bounded is None or bounded.proven:
            return self._argmax(hidden)
        k = min(HEAD_CANDIDATES, bounded.weight.shape[0])
        cand = bounded.shortlist(hidden, k).sort(dim=-1).values  # sorted: ties go to the lowest id
        w = self.head.weight[cand]  # [rows, K, hidden]
        exact = torch.bmm(w, hidden[:, :, None].to(w.dtype))[:, :, 0]
        return cand.gather(1, exact.argmax(dim=-1, keepdim=True))[:, 0]

    def _argmax(self, hidden: torch.Tensor, offset: torch.Tensor | None = None) -> torch.Tensor:
        """Per row, the exact argmax of the logits plus ``offset`` (``[rows, vocab]``, the race's noise; none:
        greedy). With the proven int8 head: among the tokens whose bound can reach the best lower bound, rescored
        exactly (soft-capping is monotonic, so a plain argmax skips it; with an offset it is not skippable, so
        soft-capped models take the full head); rows with too many such tokens, and every row without a proven
        int8 head, use the full head. Either way the same token, up to float rounding."""
        tokens = torch.empty(hidden.shape[0], dtype=torch.long, device=hidden.device)
        full = list(range(hidden.shape[0]))
        bounded = self.bounded
        if bounded is not None and bounded.proven and (offset is None or self.head.softcap is None):
            cands = bounded.candidates(hidden, 1, offset=offset)
            full = []
            for i, (cand, exact) in enumerate(zip(cands, bounded.exact(hidden, cands), strict=True)):
                if cand is None:
                    full.append(i)
                else:  # sorted ids: ties go to the lowest id, like argmax
                    tokens[i] = cand[(exact if offset is None else exact.float() + offset[i, cand]).argmax()]
        if full:
            logits = self.head.logits(hidden[full])
            tokens[full] = (logits if offset is None else logits + offset[full]).argmax(dim=-1)
        return tokens

    def _masked(
        self,
        hidden: torch.Tensor,
        rows: list[ChoiceRow],
        tokens: torch.Tensor,
        which: list[int],
        noise: dict[int, torch.Tensor],
    ) -> None:
        """The masked choice on the full head for the rows ``which``: the argmax over the allowed tokens (greedy),
        the race over them with the row's same noise (so the winner is a sample of the allowed softmax), or
        temperature / top-k / top-p over the allowed tokens' logits."""
        logits = self.head.logits(hidden[which])
        for j, i in enumerate(which):
            row = rows[i]
            assert row.constraint is not None
            allowed = row.constraint.mask().to(logits.device)
            x = logits[j].masked_fill(~allowed, float("-inf"))
            if not row.config.do_sample:
                tokens[i] = x.argmax()
            elif i in noise:
                tokens[i] = (x + noise[i]).argmax()
            else:
                tokens[i] = sample(x, row.config, row.gen)


def _pure_temperature(cfg: GenerationConfig) -> bool:
    return cfg.top_k is None and cfg.top_p >= 1.0


def gumbel(n: int, gen: Any) -> torch.Tensor:
    """``n`` standard Gumbel draws, ``-log(-log(u))``, from the generator ``gen``, as float32. The uniforms and
    the inner log are float64 (steps of 2^-53), so the noise is cut off only beyond ~36.7, which a draw exceeds
    with probability ~1e-16 (float32 uniforms would cut it at ~16.6: once per ~60 steps over a 262k vocabulary);
    ``-log(u)`` keeps its relative precision in float32, so the outer log runs there. On the generator's device
    (a CUDA row draws on the GPU)."""
    return torch.rand(n, dtype=torch.float64, generator=gen, device=gen.device).log_().neg_().float().log_().neg_()


def sample(logits: torch.Tensor, cfg: GenerationConfig, gen: Any) -> torch.Tensor:
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
