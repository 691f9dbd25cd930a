"""Plain chat as a strategy: the conversation so far plus the new question, answered in one generation.

A model whose tokenizer has a chat template gets it (and stops at the common end-of-turn strings); a base model
gets the transcript template ``chat`` (``User: ...`` / ``Assistant: ...``) with stop strings so it does not
write the user's next turn. ``history`` is a list of ``{"user": ..., "assistant": ...}`` turns; the caller (the
chat loop) appends a turn once it has completed, so an interrupted turn is never remembered.

Deliberately not here: trimming a long conversation to the model's context, system prompts, and extracting an
answer (the whole reply is the answer; ``failure`` is set only when it is empty).
"""

from __future__ import annotations

from typing import Any, ClassVar

from agentkit.llm import LLM, Completion, GenerationConfig
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
    ):
        super().__init__(llm, shots=0, config=config, templates=templates)
        self.history = history if history is not None else []

    def prompt(self, question: str) -> tuple[str, list[str]]:
        """The prompt for ``question`` and the stop strings that end the assistant's turn."""
        tokenizer = chat_tokenizer(self.llm)
        if tokenizer is not None:
            messages: list[dict[str, str]] = []
            for turn in self.history:
                messages += [
                    {"role": "user", "content": turn["user"]},
                    {"role": "assistant", "content": turn["assistant"]},
                ]
            messages.append({"role": "user", "content": question})
            prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            bos = getattr(tokenizer, "bos_token", None)
            if isinstance(bos, str) and bos and prompt.startswith(bos):
                prompt = prompt[len(bos) :]  # the engine adds BOS itself when it encodes the prompt
            return prompt, END_OF_TURN
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
            prompt=prompt,
            completions=[completion.text],
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
        )

    def __repr__(self) -> str:
        return f"ChatStrategy(turns={len(self.history)})"


def chat_tokenizer(llm: LLM) -> Any:
    """The model's tokenizer if it has a chat template (``llm.tokenizer``, or the transformers tokenizer the
    engine wraps as ``llm.tokenizer.hf``), else None."""
    tokenizer = getattr(llm, "tokenizer", None)
    for candidate in (tokenizer, getattr(tokenizer, "hf", None)):
        if getattr(candidate, "chat_template", None) and callable(getattr(candidate, "apply_chat_template", None)):
            return candidate
    return None
