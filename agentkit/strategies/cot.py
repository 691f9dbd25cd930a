"""Chain-of-thought prompting (Wei et al., 2022; zero-shot form: Kojima et al., 2022).

The model writes its reasoning and ends with "The answer is N."; the answer is the number after the last
"the answer is", or failing that the last number in the completion. With ``answer="text"`` it is the short
phrase after the last "the answer is".
"""

from __future__ import annotations

from collections.abc import Generator

from agentkit.answers import extract_numeric_answer, extract_text_answer
from agentkit.llm import Completion, GenerationConfig
from agentkit.runtime import Event
from agentkit.strategies.base import Interpretation, SingleCall, no_answer


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
