"""Plain chat as a strategy: the conversation so far plus the new question, answered in one generation.

A model with a chat template gets the conversation as a ``Chat`` (when ``prompt_format`` resolves to chat; see
``agentkit.prompting``), stopping at the common end-of-turn strings; a base model gets the transcript template
``chat`` (``User: ...`` / ``Assistant: ...``) with stop strings so it does not write the user's next turn.
``history`` is a list of ``{"user": ..., "assistant": ...}`` turns; the caller (the chat loop) appends a turn once
it has completed, so an interrupted turn is never remembered.

Deliberately not here: trimming a long conversation to the model's context, system prompts, extracting an
answer (the whole reply is the answer; ``failure`` is set only when it is empty), and a constraint: a chat reply
is free text, so ``constrain`` (which ``agentkit chat --constrain`` sets for every mode) adds none here.
"""

from __future__ import annotations

from typing import ClassVar

from agentkit.llm import LLM, Chat, Completion, GenerationConfig, Message, Prompt
from agentkit.prompting import Templates
from agentkit.result import Result
from agentkit.runtime import Episode, Generate
from agentkit.strategies.base import Strategy

# Strings that end an assistant turn in common chat templates, for models whose engine does not stop on them.
END_OF_TURN = ["<end_of_turn>", "<|im_end|>", "<|eot_id|>", "<|end|>"]
# Stops for the plain transcript (prompts/templates/chat.jinja): the model must not write the user's turn.
TRANSCRIPT_STOP = ["\nUser:", "\nAssistant:"]


class ChatStrategy(Strategy):
    name: ClassVar[str] = "chat"
    default_config: ClassVar[GenerationConfig] = GenerationConfig(max_new_tokens=256)

    def __init__(
        self,
        llm: LLM | None = None,
        *,
        history: list[dict[str, str]] | None = None,
        config: GenerationConfig | None = None,
        templates: Templates | None = None,
        prompt_format: str = "auto",
        constrain: bool = False,
    ):
        super().__init__(
            llm, shots=0, config=config, templates=templates, prompt_format=prompt_format, constrain=constrain
        )
        self.history = history if history is not None else []

    def prompt(self, question: str) -> tuple[Prompt, list[str]]:
        """The prompt for ``question`` and the stop strings that end the assistant's turn."""
        if self.resolved_format == "chat":
            messages: list[Message] = []
            for turn in self.history:
                messages += [
                    Message(role="user", content=turn["user"]),
                    Message(role="assistant", content=turn["assistant"]),
                ]
            messages.append(Message(role="user", content=question))
            return Chat(messages=tuple(messages)), END_OF_TURN
        return self.templates.render("chat", history=self.history, question=question), TRANSCRIPT_STOP

    def episode(self, question: str) -> Episode:
        prompt, stop = self.prompt(question)
        config = self.config.model_copy(update={"stop": sorted({*self.config.stop, *stop})})
        completion: Completion = yield Generate(prompt, config)
        reply = completion.text.strip()
        failure = error = None
        if not reply:
            failure = "length" if completion.finish_reason == "length" else "no_answer"
            error = "the model's reply was empty"
        return Result(
            method=self.name,
            question=question,
            answer=reply or None,
            failure=failure,
            error=error,
            prompt=self.llm.render(prompt),
            completions=[completion.text],
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
        )

    def __repr__(self) -> str:
        return f"ChatStrategy(turns={len(self.history)})"
