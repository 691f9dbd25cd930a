"""The one primitive every strategy is built on: render a template, generate, interpret.

A ``Strategy`` turns a question into an *episode* (see ``agentkit.runtime``). Single-call strategies (direct,
chain-of-thought, PAL) only say how to build the prompt and how to read a completion; multi-step ones (ReAct)
and wrappers (self-consistency) write their own episode. Running is the same for all:
``strategy(question)`` for one question, ``strategy.batch(questions)`` for many in shared batches.

Prompts come in the form the strategy's ``prompt_format`` resolves to for its model (see ``agentkit.prompting``):
text, or a ``Chat`` whose assistant reply is what the model writes. ``Result.prompt`` is the text sent either way.

With ``constrain=True`` every reply is generated under a constraint the strategy derives from what it reads
(``constraint``; see ``agentkit.strategies.constraints`` and docs/structured.md); the prompts stay the same.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Iterable
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from agentkit.errors import UsageError
from agentkit.llm import LLM, Completion, Constraint, GenerationConfig, Prompt
from agentkit.prompting import Templates, default_templates, resolve_prompt_format
from agentkit.result import Result
from agentkit.runtime import Episode, EpisodeInfo, Event, EventHandler, Generate, Request, run_episode, run_episodes


class Strategy(ABC):
    """A way of answering questions with a model."""

    name: ClassVar[str] = "strategy"
    default_config: ClassVar[GenerationConfig] = GenerationConfig(max_new_tokens=256)

    def __init__(
        self,
        llm: LLM | None = None,
        *,
        shots: int = 4,
        config: GenerationConfig | None = None,
        templates: Templates | None = None,
        prompt_format: str = "auto",
        constrain: bool = False,
    ):
        self._llm = llm
        self.shots = shots
        self.templates = templates or default_templates()
        self.config = config or self.default_config
        self.prompt_format = prompt_format  # "auto", "text" or "chat"
        self.constrain = constrain  # generate each reply under the constraint derived from what the strategy reads
        if constrain and self.config.constraint is not None:
            raise UsageError(
                "constrain=True derives the strategy's own constraint: drop config.constraint, or "
                "leave constrain off to send that constraint as it is"
            )
        if llm is not None:
            resolve_prompt_format(prompt_format, llm)  # a bad format or a model without a template fails here

    @property
    def llm(self) -> LLM:
        if self._llm is None:
            from agentkit.engine import TransformersLLM  # the embedded default, loaded on first use

            self._llm = TransformersLLM()
        return self._llm

    @property
    def resolved_format(self) -> str:
        """``"text"`` or ``"chat"``: the prompt form this strategy's model gets."""
        return resolve_prompt_format(self.prompt_format, self.llm)

    @abstractmethod
    def episode(self, question: str) -> Episode:
        """The generator that answers ``question`` (see ``agentkit.runtime``)."""

    def __call__(
        self,
        question: str,
        *,
        on_event: EventHandler | None = None,
        on_token: Callable[[str], None] | None = None,
        **options: Any,
    ) -> Result:
        """Answer one question; ``on_token`` streams the model's text, ``on_event`` the steps. ``options``
        (``budget``, ``cache``, ``trace``, ``usage``) are ``run_episode``'s."""
        return run_episode(
            self.llm,
            self.episode(question),
            on_event=on_event,
            on_token=on_token,
            info=EpisodeInfo(self.name, question),
            **options,
        )

    def batch(
        self,
        questions: Iterable[str],
        *,
        batch_size: int = 32,
        on_result: Callable[[int, Result], None] | None = None,
        **options: Any,
    ) -> list[Result]:
        """Answer many questions, their model calls sharing batches; ``options`` are ``run_episodes``'."""
        questions = list(questions)
        return run_episodes(
            self.llm,
            (self.episode(q) for q in questions),
            batch_size=batch_size,
            on_result=on_result,
            info=lambda i: EpisodeInfo(self.name, questions[i]),
            **options,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shots={self.shots})"


@dataclass(frozen=True)
class Interpretation:
    """What a single-call strategy read from one completion: the fields of its Result that depend on the text."""

    answer: str | None = None
    failure: str | None = None
    error: str | None = None
    program: str | None = None
    execution: dict[str, Any] | None = None


ANSWER_KINDS = ("number", "text")
DEFAULT_EXEMPLARS = {"number": "math", "text": "wiki"}


class SingleCall(Strategy):
    """A strategy that asks the model once: ``prompt`` -> completion -> ``interpret``.

    ``answer`` says what kind of answer the questions have: ``"number"`` (word problems; exemplars from
    ``math.jsonl``) or ``"text"`` (questions about the world; exemplars from ``wiki.jsonl``).
    ``exemplar_set`` names another exemplar file to take the shots from.
    """

    template: ClassVar[str]
    # Stops that end an answer only in the text form; in chat form the end of the assistant's turn does that.
    text_only_stops: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        llm: LLM | None = None,
        *,
        answer: str = "number",
        exemplar_set: str | None = None,
        **kwargs: Any,
    ):
        if answer not in ANSWER_KINDS:
            raise ValueError(f"answer must be one of {', '.join(ANSWER_KINDS)}, got {answer!r}")
        super().__init__(llm, **kwargs)
        self.answer = answer
        self.exemplar_set = exemplar_set or DEFAULT_EXEMPLARS[answer]

    def prompt(self, question: str) -> Prompt:
        exemplars = self.templates.exemplars(self.exemplar_set, self.shots)
        return self.templates.prompt(
            self.template, self.resolved_format, exemplars=exemplars, question=question, answer_kind=self.answer
        )

    def config_for_format(self, config: GenerationConfig) -> GenerationConfig:
        """``config`` as sent: in chat form without the text-only stops; constrained, when the strategy is, by
        the constraint for those stops."""
        if self.resolved_format == "chat" and set(config.stop) & set(self.text_only_stops):
            config = config.model_copy(update={"stop": [s for s in config.stop if s not in self.text_only_stops]})
        if self.constrain:
            config = config.model_copy(update={"constraint": self.constraint(config)})
        return config

    def constraint(self, config: GenerationConfig) -> Constraint:
        """What a reply sent with ``config`` (its stop strings) must match so that ``interpret`` reads it."""
        raise UsageError(f"{type(self).__name__} has no constraint of its own; run it without constrain")

    @abstractmethod
    def interpret(self, completion: Completion) -> Interpretation | Generator[Request, Any, Interpretation]:
        """Read the answer out of a completion.

        Returns an ``Interpretation``, or, where reading needs the runtime (PAL runs its program in the sandbox,
        CoT shows its reasoning), is written as an episode that returns one.
        """

    def read(self, completion: Completion) -> Generator[Request, Any, Interpretation]:
        """``interpret`` as an episode, whichever form it takes (self-consistency gathers k of these)."""
        reading = self.interpret(completion)
        if isinstance(reading, Interpretation):
            return reading
        return (yield from reading)

    def result(self, question: str, completion: Completion, reading: Interpretation, *, prompt: str = "") -> Result:
        """The Result of answering ``question`` with one ``completion`` read as ``reading``."""
        return Result.from_completions(self.name, question, [completion], prompt=prompt, **asdict(reading))

    def episode(self, question: str) -> Episode:
        prompt = self.prompt(question)
        completion = yield Generate(prompt, self.config_for_format(self.config))
        reading = yield from self.read(completion)
        if reading.answer is not None:
            yield Event("answer", reading.answer)
        return self.result(question, completion, reading, prompt=self.llm.render(prompt))


def no_answer(completion: Completion, what: str) -> Interpretation:
    """The failure for a completion with nothing to extract; 'length' when it was cut off by the token limit."""
    if completion.finish_reason == "length":
        return Interpretation(failure="length", error=f"generation hit max_new_tokens before {what}")
    return Interpretation(failure="no_answer", error=f"no {what} in the completion")
