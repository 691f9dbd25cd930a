"""Prompting strategies, one short module each, and ``load_strategy`` to build one by name."""

from __future__ import annotations

from typing import Any

from agentkit.errors import UsageError
from agentkit.llm import LLM, GenerationConfig
from agentkit.prompting import Templates

METHODS = {
    "direct": "answer with a number at once (zero/one/few-shot)",
    "cot": "chain-of-thought: reason step by step, then 'The answer is N' (Wei et al., 2022)",
    "cot-sc": "chain-of-thought with self-consistency: k samples, majority vote (Wang et al., 2022)",
    "pal": "program-aided: the model writes solution(), the sandbox runs it (Gao et al., 2022)",
    "pal-sc": "PAL with self-consistency over k sampled programs",
    "react": "ReAct: Thought / Action / Observation with Search, Lookup, Finish (Yao et al., 2022)",
    "react-cot-sc": "ReAct, falling back to chain-of-thought self-consistency when it does not finish",
}


class UnknownMethod(UsageError):
    pass


def load_strategy(
    name: str,
    llm: LLM | None = None,
    *,
    shots: int = 4,
    config: GenerationConfig | dict[str, Any] | None = None,
    templates: Templates | None = None,
    k: int = 5,
    temperature: float = 0.7,
    top_p: float = 0.95,
    answer: str | None = None,
    prompt_format: str = "auto",
    **options: Any,
):
    """Build the strategy called ``name`` (see ``METHODS``).

    ``config`` is either a full ``GenerationConfig`` or a dict of settings laid over the strategy's own
    defaults (so ``{"max_new_tokens": 64}`` keeps the strategy's stop strings). ``k``, ``temperature`` and
    ``top_p`` apply to the self-consistency methods; ``options`` go to the strategy (e.g. ReAct's tools).
    ``answer`` (``"number"`` or ``"text"``) is the kind of answer direct and chain-of-thought give, with
    matching exemplars: number by default, text for ReAct's CoT-SC fallback (which answers questions about the
    world). PAL always computes a number. ``prompt_format`` is ``"auto"`` (chat prompts when the model has a chat
    template), ``"text"`` or ``"chat"`` (see ``agentkit.prompting``).
    """
    from agentkit.strategies.cot import CoT
    from agentkit.strategies.direct import Direct
    from agentkit.strategies.pal import PAL
    from agentkit.strategies.self_consistency import SelfConsistency

    if name not in METHODS:
        raise UnknownMethod(f"unknown method '{name}'; choose one of: {', '.join(METHODS)}")

    def make(cls, **extra):
        settings = config
        if isinstance(config, dict):
            settings = GenerationConfig(**{**cls.default_config.model_dump(), **config})
        return cls(llm, shots=shots, config=settings, templates=templates, prompt_format=prompt_format, **extra)

    sc = dict(k=k, temperature=temperature, top_p=top_p)
    kind = dict(answer=answer or "number")
    if name == "direct":
        return make(Direct, **kind)
    if name == "cot":
        return make(CoT, **kind)
    if name == "cot-sc":
        return SelfConsistency(make(CoT, **kind), **sc)
    if name == "pal":
        return make(PAL, **options)
    if name == "pal-sc":
        return SelfConsistency(make(PAL, **options), **sc)
    from agentkit.strategies.react import ReAct

    if name == "react":
        return make(ReAct, **options)
    fallback = SelfConsistency(make(CoT, answer=answer or "text"), **sc)
    return make(ReAct, fallback=fallback, **options)
