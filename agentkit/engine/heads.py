"""The LM heads token choice reads: the model's own (exact) and a bounded int8 copy that shortlists exactly.

* :class:`FullHead` is the model's output layer as it is: float32 logits for the whole vocabulary, soft-capped
  as the model does (Gemma). Every choice can fall back to it.
* :class:`BoundedHead` is an int8 copy (fbgemm, per-channel weights) whose error is *proven* bounded per token,
  so it can say which tokens can possibly be in the exact top-k (or win the Gumbel race) without being trusted for
  anything else: the candidates are rescored exactly with the model's weights.

How the heads are used (greedy, top-k, the race) is :mod:`agentkit.engine.sampling`'s business; the figures the
design rests on (candidate-set sizes, costs per dtype) are in ``benchmarks/ENGINE_NOTES.md``.

Deliberately not here: an approximate mode (a token the bound cannot rule out is always rescored), a proven bound
for lower-precision logits (too loose to pay, see ``BoundedHead``), or int8 anywhere but the head.
"""

from __future__ import annotations

from typing import Any

import torch

from agentkit.engine.packed import linear_holding


class FullHead:
    """The model's output layer, exact: ``logits(hidden)`` for the whole vocabulary, in float32."""

    def __init__(self, model: Any):
        self.linear = model.get_output_embeddings()
        self.weight = self.linear.weight
        cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        self.softcap = getattr(cfg, "final_logit_softcapping", None)

    @property
    def vocab(self) -> int:
        return self.weight.shape[0]

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.softcapped(self.linear(hidden).float())

    def softcapped(self, logits: torch.Tensor) -> torch.Tensor:
        """The model's final logit soft-capping (Gemma), if it has one."""
        if self.softcap is not None:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits


CALIBRATION_TEXT = (  # any text gives a valid bound; ordinary prose with numbers and code gives a tight one
    "Question: A train leaves at 9:15 and arrives 2 hours 40 minutes later. When does it arrive?\n"
    "Thought: 9:15 plus 2:40 is 11:55.\nAction: Finish[11:55]\n"
    "def solution():\n    total = 3 * 12 + 7\n    return total\n"
    "The Eiffel Tower, in Paris, was completed in 1889 and is 330 metres tall."
)
HEAD_CANDIDATES = 64  # greedy shortlist where the bound does not pay (bf16)
MAX_CANDIDATES = 8192  # rows whose proven candidate set is larger use the full head
OUTLIER_DIMS = 32  # hidden dimensions computed exactly next to the int8 head (see BoundedHead)
RESIDUAL_GAIN = 64.0  # the second activation level of the int8 scan (see BoundedHead._scan)
SCAN_ROWS = 15  # hidden states per int8 GEMM call (31 GEMM rows): fbgemm's cost jumps beyond 32 rows
PREFILTER_MAX = 65536  # a row whose plain prefilter keeps more tokens than this uses the full head directly


class BoundedHead:
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

    ``O`` is calibrated once (``calibrate``; any choice keeps the bound valid, a good one keeps it tight).
    Calibrated on Gemma 3 270M, the greedy candidate sets are a token or a few, k = 40 a few hundred of 262k
    (``benchmarks/ENGINE_NOTES.md``).

    ``proven`` is True only for a float32 head: the rounding margin of lower-precision logits (``rel``, ~3% of the
    logit scale in bf16) makes the sets too large to pay, so there token choice uses ``shortlist`` for greedy rows
    and the full head for sampled rows.
    """

    def __init__(self, head: Any, qhead: Any):
        self.head, self.qhead = head, qhead
        self.weight = head.weight
        self.outliers: torch.Tensor | None = None
        self.rel = 4 * torch.finfo(self.weight.dtype).eps  # rounding of the model-dtype logits
        self.proven = self.weight.dtype == torch.float32

    @classmethod
    def build(cls, head: Any) -> BoundedHead | None:
        qhead = quantized_head(head)
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

    def candidates(self, hidden: torch.Tensor, k: int, offset: torch.Tensor | None = None) -> list[torch.Tensor | None]:
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
        for c, part, lo, hi in zip(
            counts, ids.split(counts), (a - eps).split(counts), (a + eps).split(counts), strict=True
        ):
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


def quantized_head(head: Any) -> Any:
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
