"""The engine's knobs (``EngineConfig``) and its running counters (``EngineStats``).

Every performance feature of :class:`~agentkit.engine.transformers_llm.TransformersLLM` is one field here, so a
slowdown or a changed output can be bisected by switching features off one at a time. None of them changes what
the engine generates beyond float rounding in near-ties (the tests compare each switch's greedy output with and
without), except that ``gumbel_race`` changes which sample a seed draws (not the distribution).
Loading options (model, dtype, device, cache directory) are the constructor's own arguments, not engine knobs.

Importing this module does not import torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, field_validator


class EngineConfig(BaseModel):
    """How the engine batches, caches and chooses tokens; the defaults are the fast path."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_batch_size: int = Field(32, ge=1)  # rows `generate` decodes together (a session sets its own)
    prefix_cache_mb: int = Field(512, ge=0)  # bound of the prompt-prefix KV cache; 0 = no prefix reuse
    prompt_lookup: int = 10  # most tokens a greedy row decoding alone drafts by prompt lookup per step; 0 = off
    first_draft: int = Field(4, ge=1)  # a row's first draft length (then adapted to how much of its drafts it keeps)
    prefill_chunk: int = Field(512, ge=1)  # prompt columns per prefill forward (bounds mask and activation memory)
    packed_linears: bool | None = None  # oneDNN-packed decoder linears (float32, x86 CPU); None = pack a model the
    #                                     engine loads itself, not one passed to `from_model` (packing is in place)
    matmul_attention: bool | None = None  # multi-token forwards' attention (prefill) as two matmuls, not SDPA's
    #                                       fused CPU kernel (engine/attention.py); None = for bfloat16 on CPU only
    fast_lm_head: bool = True  # the bounded int8 LM head on CPU (exact greedy / top-k / race; built in the background)
    gumbel_race: bool = True  # pure-temperature rows draw by the Gumbel-max race (through the int8 head when it is
    #                           built); off: softmax + multinomial over the full head, as rows with top-p do
    fast_forward: bool = True  # tokens a constraint's grammar forces (llguidance's canonical tokenization of them)
    #                            are fed without a choice (a row alone: in one forward); off: each is chosen as the
    #                            model would tokenize it (the same text; tokens differ only where the model's are not
    #                            canonical)

    @field_validator("prompt_lookup")
    @classmethod
    def _drafts(cls, v: int) -> int:
        if v < 0:
            raise ValueError(f"prompt_lookup must be >= 0 (drafted tokens per step; 0 = off), not {v}")
        return v

    @classmethod
    def of(cls, config: EngineConfig | None, overrides: dict[str, object], caller: str) -> EngineConfig:
        """``config`` (or the defaults) with keyword arguments such as ``max_batch_size=8`` laid over it."""
        unknown = sorted(set(overrides) - set(cls.model_fields))
        if unknown:
            raise TypeError(f"{caller}() got an unexpected keyword argument {unknown[0]!r}")
        base = config.model_dump(exclude_unset=True) if config is not None else {}
        return cls(**{**base, **overrides})


@dataclass
class EngineStats:
    """What the engine has done since it was built; ``after - before`` gives one run's share."""

    prompt_tokens: int = 0  # prompt tokens of every admitted row (BOS included)
    prefill_tokens: int = 0  # of those, the ones prefilled (the rest came from the prefix cache or join decoding)
    decode_steps: int = 0  # decode forwards (a speculating row's step counts once)
    decode_rows: int = 0  # rows summed over decode steps (mean batch = decode_rows / decode_steps)
    decode_tokens: int = 0  # tokens generated
    drafted_tokens: int = 0  # prompt-lookup tokens verified
    accepted_tokens: int = 0  # of those, the ones the model agreed with
    forced_tokens: int = 0  # tokens a constraint's grammar forced (fed without a choice, see _Batcher._accept)
    prefill_s: float = 0.0  # seconds in admission and prefill
    decode_s: float = 0.0  # seconds in decode steps
    head_s: float = 0.0  # of those, in the LM head and token choice

    def copy(self) -> EngineStats:
        return dataclasses.replace(self)

    def __sub__(self, other: EngineStats) -> EngineStats:
        return EngineStats(**{f.name: getattr(self, f.name) - getattr(other, f.name) for f in dataclasses.fields(self)})
