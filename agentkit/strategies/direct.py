"""Direct answering: zero-, one- or few-shot question -> answer (a number, or a short text), no reasoning.

Constrained (``constrain=True``), the reply is the answer alone: a number, or a line of text.
"""

from __future__ import annotations

from agentkit.answers import extract_first_numeric, extract_text_answer
from agentkit.llm import Completion, Constraint, GenerationConfig
from agentkit.strategies.base import Interpretation, SingleCall, no_answer
from agentkit.strategies.constraints import NUMBER, TEXT, reply


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

    def constraint(self, config: GenerationConfig) -> Constraint:
        """The answer on its own: a number, or a short text whose first character the reader keeps."""
        return reply(f"/[ \\t]*{NUMBER if self.answer == 'number' else TEXT}/", config.stop)
