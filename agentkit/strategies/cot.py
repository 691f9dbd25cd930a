"""Chain-of-thought prompting (Wei et al., 2022; zero-shot form: Kojima et al., 2022).

The model writes its reasoning and ends with "The answer is N."; the answer is the number after the last
"the answer is", or failing that the last number in the completion. With ``answer="text"`` it is the short
phrase after the last "the answer is".

Constrained (``constrain=True``), the reasoning stays free but cannot end (no stop string, no end of sequence)
before the final "The answer is" line, which then holds a number (or a short text with no second answer in it).
"""

from __future__ import annotations

from collections.abc import Generator

from agentkit.answers import extract_numeric_answer, extract_text_answer
from agentkit.llm import Completion, Constraint, GenerationConfig
from agentkit.runtime import Event
from agentkit.strategies.base import Interpretation, SingleCall, no_answer
from agentkit.strategies.constraints import ANSWER_MARK, ANY, NUMBER, TEXT, reply, without


class CoT(SingleCall):
    name = "cot"
    template = "cot"
    default_config = GenerationConfig(max_new_tokens=160, stop=["\nQuestion:", "\n\n"])
    text_only_stops = ("\n\n",)  # an instruct model may reason in paragraphs; its end of turn ends the answer

    def interpret(self, completion: Completion) -> Generator[Event, None, Interpretation]:
        yield Event("thought", completion.text.strip())
        if self.answer == "text":
            answer = extract_text_answer(completion.text)
            return Interpretation(answer=answer) if answer is not None else no_answer(completion, '"The answer is"')
        answer = extract_numeric_answer(completion.text)
        return Interpretation(answer=answer) if answer is not None else no_answer(completion, "number")

    def constraint(self, config: GenerationConfig) -> Constraint:
        """Free reasoning, then ``The answer is N.``: the last answer mark (any case, "final" or a colon allowed),
        followed by a number, or by a short text holding no other mark (``agentkit.answers`` reads the last one)."""
        if self.answer == "number":
            return reply(f"/{ANY}{ANSWER_MARK} {NUMBER}\\.?/", config.stop)
        return reply(f"(/{ANY}{ANSWER_MARK} / {without(TEXT, ['(?i:answer)', '####'])})", config.stop)
