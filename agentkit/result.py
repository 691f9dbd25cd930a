"""What an episode returns: the answer, how it was reached, and why it failed if it did.

A model's mistake is data, not an exception: a missing answer, a program that crashed or a ReAct episode that
ran out of steps all come back as a ``Result`` with ``answer=None`` (or a forced answer) and ``failure`` set.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agentkit.llm import Completion

# The failure reasons the strategies record (free-form strings are allowed for custom strategies).
FAILURES = {
    "no_answer": "the completion contained no answer the strategy could extract",
    "parse_failure": "the completion was not in the expected format (no program, no action)",
    "sandbox_error": "the program failed: syntax error, exception, timeout, no solution()",
    "unreadable_result": "the program ran but its value is not a number that can be read exactly",
    "forced_finish": "a ReAct episode used all its steps without Finish[...]",
    "length": "truncated: generation hit max_new_tokens before the answer (or inside PAL's program)",
    # An episode stopped by its budget (agentkit.runtime.Budget): one kind per limit.
    "budget_input_tokens": "the episode's prompts went over its input-token budget",
    "budget_output_tokens": "the episode's completions went over its output-token budget",
    "budget_model_calls": "the episode asked for more model calls than its budget allows",
    "budget_tool_calls": "the episode asked for more tool calls than its budget allows",
    "budget_seconds": "the episode ran longer than its wall-clock budget",
}
TRUNCATED = "length"  # the failure kind of a cut-off generation, named after its finish_reason


def failure_label(kind: str) -> str:
    """A failure kind as reports name it: ``length`` reads "truncated"."""
    return "truncated" if kind == TRUNCATED else kind


class Result(BaseModel):
    """One question answered by one strategy."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    method: str
    question: str
    answer: str | None = None  # the extracted final answer, as text
    failure: str | None = None  # None when an answer was produced; otherwise a key of FAILURES
    error: str | None = None  # human-readable detail of the failure
    prompt: str = ""  # the first prompt sent to the model
    completions: list[str] = Field(default_factory=list)  # every raw model completion, in order
    finish_reasons: list[str] = Field(default_factory=list)  # what ended each completion: "stop" or "length"
    program: str | None = None  # PAL: the code that was run
    execution: dict[str, Any] | None = None  # PAL: the sandbox's ExecResult as plain data
    trajectory: Any = None  # ReAct: the Trajectory
    votes: dict[str, int] | None = None  # self-consistency: normalized answer -> count
    samples: list[Result] | None = None  # self-consistency: the individual sampled results
    prompt_tokens: int = 0
    completion_tokens: int = 0
    duration: float = 0.0  # wall-clock seconds from the episode's first step to its end
    model_calls: int = 0  # set by the episode runner: model calls the episode made (cache hits included)
    tool_calls: int = 0  # set by the episode runner: tool calls, sandboxed programs included

    @classmethod
    def from_completions(cls, method: str, question: str, completions: Sequence[Completion], **fields: Any) -> Result:
        """The Result of an episode that made ``completions``: their texts, finish reasons and summed token
        counts, plus ``fields``."""
        return cls(
            method=method,
            question=question,
            completions=[c.text for c in completions],
            finish_reasons=[c.finish_reason for c in completions],
            prompt_tokens=sum(c.prompt_tokens for c in completions),
            completion_tokens=sum(c.completion_tokens for c in completions),
            **fields,
        )

    @property
    def ok(self) -> bool:
        return self.failure is None and self.answer is not None
