"""Direct answering: zero-, one- or few-shot question -> number, no reasoning written out."""

from __future__ import annotations

from agentkit.answers import extract_first_numeric
from agentkit.llm import Completion, GenerationConfig
from agentkit.strategies.base import Interpretation, SingleCall, no_answer


class Direct(SingleCall):
    name = "direct"
    template = "direct"
    default_config = GenerationConfig(max_new_tokens=24, stop=["\n"])

    def interpret(self, completion: Completion):
        answer = extract_first_numeric(completion.text)
        return Interpretation(answer=answer) if answer is not None else no_answer(completion, "number")
        yield  # an interpretation needs no tools; the bare yield makes this a generator
