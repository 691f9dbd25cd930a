"""Direct answering: zero-, one- or few-shot question -> answer (a number, or a short text), no reasoning."""

from __future__ import annotations

from agentkit.answers import extract_first_numeric, extract_text_answer
from agentkit.llm import Completion, GenerationConfig
from agentkit.strategies.base import Interpretation, SingleCall, no_answer


class Direct(SingleCall):
    name = "direct"
    template = "direct"
    default_config = GenerationConfig(max_new_tokens=24, stop=["\n"])

    def interpret(self, completion: Completion) -> Interpretation:
        if self.answer == "text":
            answer = extract_text_answer(completion.text, marked=False)
            return Interpretation(answer=answer) if answer is not None else no_answer(completion, "answer")
        answer = extract_first_numeric(completion.text)
        return Interpretation(answer=answer) if answer is not None else no_answer(completion, "number")
