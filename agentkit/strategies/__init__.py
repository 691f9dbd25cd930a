"""Prompting strategies, one short module each, and the one registry of methods that names them.

A *method* is a name a user types (``cot``, ``pal-sc``, ``chat``...) for a strategy built with given options.
``REGISTRY`` holds each one: its description, the options it takes, the answer kinds it gives and the exemplar
sets its prompts draw on. Everything that turns a name into a strategy reads it: ``load_strategy`` (Python),
``build_strategy`` (the command line's ``run`` and ``chat``, from ``Settings``) and the benchmark harness.

``Settings`` are the knobs every command offers under the same names (shots, max tokens, temperature, seed,
samples, answer kind, Wikipedia backend, prompt format, constrained replies); ``None`` means the method's own
default.

Deliberately not here: the strategies themselves (``direct.py``, ``cot.py``, ``pal.py``, ``react.py``,
``self_consistency.py``, ``chat.py``) and anything about the command line (``agentkit.cli``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agentkit.errors import UsageError
from agentkit.llm import LLM, GenerationConfig
from agentkit.prompting import Templates, default_templates
from agentkit.strategies.base import ANSWER_KINDS, DEFAULT_EXEMPLARS, Strategy

SC_OPTIONS = ("k", "temperature", "top_p")
REACT_OPTIONS = ("tools", "corpus", "max_steps", "sentences", "reask")
SC_DEFAULTS = {"k": 5, "temperature": 0.7}


class UnknownMethod(UsageError):
    pass


@dataclass(frozen=True)
class Method:
    """One method a user can name: how to build it, what it takes, what it answers."""

    name: str
    description: str
    build: Callable[..., Strategy]  # build(llm, shots=, config=, templates=, answer=, constrain=, **options)
    options: tuple[str, ...] = ()  # keyword options it takes besides shots, config, templates and answer
    answers: tuple[str, ...] = ANSWER_KINDS  # the answer kinds it can give; the first is its default
    exemplar_sets: Callable[[str], tuple[str, ...]] = lambda answer: (DEFAULT_EXEMPLARS[answer],)
    scored: bool = True  # False: interactive only (chat), not offered by ``bench``
    defaults: dict[str, Any] = field(default_factory=dict)  # option -> default, for ``ls`` and the docs

    def answer_kind(self, answer: str | None = None) -> str:
        """The kind of answer this method gives when asked for ``answer`` (None: its default)."""
        return answer if answer in self.answers else self.answers[0]


def _layer(cls: type[Strategy], config: GenerationConfig | dict[str, Any] | None) -> GenerationConfig | None:
    """``config`` as a dict of settings goes over the strategy's own defaults (keeping its stop strings)."""
    if isinstance(config, dict):
        return GenerationConfig(**{**cls.default_config.model_dump(), **config})
    return config


def _sc(base: Strategy, options: dict[str, Any]):
    from agentkit.strategies.self_consistency import SelfConsistency

    return SelfConsistency(base, **{k: options[k] for k in SC_OPTIONS if k in options})


def _single(cls_path: str, sc: bool = False, extra: tuple[str, ...] = ()):
    def build(llm, *, shots, config, templates, answer, prompt_format, constrain, **options):
        cls = _class(cls_path)
        kind = {} if cls_path.endswith("PAL") else {"answer": answer or "number"}
        own = {k: options[k] for k in extra if k in options}
        base = cls(llm, shots=shots, config=_layer(cls, config), templates=templates, prompt_format=prompt_format,
                   constrain=constrain, **kind, **own)
        return _sc(base, options) if sc else base

    return build


def _react(fallback: bool):
    def build(llm, *, shots, config, templates, answer, prompt_format, constrain, **options):
        react_cls, cot_cls = _class("agentkit.strategies.react.ReAct"), _class("agentkit.strategies.cot.CoT")
        own = {k: options[k] for k in REACT_OPTIONS if k in options}
        if fallback:
            cot = cot_cls(llm, shots=shots, config=_layer(cot_cls, config), templates=templates,
                          answer=answer or "text", prompt_format=prompt_format, constrain=constrain)
            own["fallback"] = _sc(cot, options)
        return react_cls(llm, shots=shots, config=_layer(react_cls, config), templates=templates,
                         prompt_format=prompt_format, constrain=constrain, **own)

    return build


def _chat(llm, *, shots, config, templates, answer, prompt_format, constrain, history=None, **_options):
    from agentkit.strategies.chat import ChatStrategy

    return ChatStrategy(llm, config=_layer(ChatStrategy, config), templates=templates, history=history,
                        prompt_format=prompt_format, constrain=constrain)


def _class(path: str) -> type[Strategy]:
    import importlib

    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


REGISTRY: dict[str, Method] = {
    m.name: m
    for m in [
        Method("chat", "plain chat with the model; keeps the conversation (/reset clears it)", _chat,
               options=("history",), answers=("text",), exemplar_sets=lambda answer: (), scored=False),
        Method("direct", "answer at once, no reasoning (zero/one/few-shot)",
               _single("agentkit.strategies.direct.Direct"), defaults={"shots": 4}),
        Method("cot", "chain-of-thought: reason step by step, then 'The answer is N' (Wei et al., 2022)",
               _single("agentkit.strategies.cot.CoT"), defaults={"shots": 4}),
        Method("cot-sc", "chain-of-thought with self-consistency: k samples, majority vote (Wang et al., 2022)",
               _single("agentkit.strategies.cot.CoT", sc=True), options=SC_OPTIONS,
               defaults={"shots": 4, **SC_DEFAULTS}),
        Method("pal", "program-aided: the model writes solution(), the sandbox runs it (Gao et al., 2022)",
               _single("agentkit.strategies.pal.PAL", extra=("sandbox",)), options=("sandbox",), answers=("number",),
               defaults={"shots": 4}),
        Method("pal-sc", "PAL with self-consistency over k sampled programs",
               _single("agentkit.strategies.pal.PAL", sc=True, extra=("sandbox",)), options=("sandbox", *SC_OPTIONS),
               answers=("number",), defaults={"shots": 4, **SC_DEFAULTS}),
        Method("react", "ReAct: Thought / Action / Observation with Search, Lookup, Finish (Yao et al., 2022)",
               _react(fallback=False), options=REACT_OPTIONS, answers=("text",),
               exemplar_sets=lambda answer: ("react",), defaults={"shots": 4, "corpus": "offline"}),
        Method("react-cot-sc", "ReAct, falling back to chain-of-thought self-consistency when it does not finish",
               _react(fallback=True), options=(*REACT_OPTIONS, *SC_OPTIONS), answers=("text", "number"),
               exemplar_sets=lambda answer: ("react", DEFAULT_EXEMPLARS[answer]),
               defaults={"shots": 4, "corpus": "offline", **SC_DEFAULTS}),
    ]
}
# The methods a benchmark can score, name -> description (``chat`` is interactive only).
METHODS: dict[str, str] = {m.name: m.description for m in REGISTRY.values() if m.scored}
ALL_OPTIONS = frozenset(o for m in REGISTRY.values() for o in m.options)


def get_method(name: str) -> Method:
    method = REGISTRY.get(name)
    if method is None:
        raise UnknownMethod(f"unknown method '{name}'; choose one of: {', '.join(REGISTRY)}")
    return method


def check_shots(name: str, shots: int, *, answer: str | None = None, templates: Templates | None = None) -> None:
    """Raise ``PromptError`` (naming the exemplar set and its size) when ``name`` cannot give ``shots`` shots."""
    method = get_method(name)
    templates = templates or default_templates()
    for exemplar_set in method.exemplar_sets(method.answer_kind(answer)):
        templates.exemplars(exemplar_set, shots)


def load_strategy(
    name: str,
    llm: LLM | None = None,
    *,
    shots: int = 4,
    config: GenerationConfig | dict[str, Any] | None = None,
    templates: Templates | None = None,
    answer: str | None = None,
    prompt_format: str = "auto",
    constrain: bool = False,
    **options: Any,
) -> Strategy:
    """Build the strategy called ``name`` (see ``REGISTRY``).

    ``config`` is either a full ``GenerationConfig`` or a dict of settings laid over the strategy's own
    defaults (so ``{"max_new_tokens": 64}`` keeps the strategy's stop strings). ``answer`` (``"number"`` or
    ``"text"``) is the kind of answer direct and chain-of-thought give, with matching exemplars: number by
    default, text for ReAct's CoT-SC fallback. ``options`` are the method's own (``k``, ``temperature`` and
    ``top_p`` for self-consistency; ``tools``, ``corpus``, ``max_steps`` for ReAct; ``sandbox`` for PAL); an
    option another method takes is ignored (one set of options serves a benchmark of several methods), a name
    no method takes is an error. ``prompt_format`` is ``"auto"`` (chat prompts when the model has a chat
    template), ``"text"`` or ``"chat"`` (see ``agentkit.prompting``). ``constrain=True`` generates every reply
    under the constraint the strategy derives from what it reads (an action, an answer line, a program; see
    docs/structured.md); the model must honour constraints (the engine, ``agentkit serve``, a server that takes
    them), and ``chat`` has none to add.
    """
    method = get_method(name)
    unknown = sorted(set(options) - ALL_OPTIONS)
    if unknown:
        known = ", ".join(sorted(ALL_OPTIONS))
        raise UsageError(f"method '{name}': unknown option {unknown[0]!r}; the options are: {known}")
    if answer is not None and answer not in ANSWER_KINDS:
        raise UsageError(f"answer must be one of: {', '.join(ANSWER_KINDS)}; got {answer!r}")
    own = {k: v for k, v in options.items() if k in method.options}
    return method.build(llm, shots=shots, config=config, templates=templates, answer=answer,
                        prompt_format=prompt_format, constrain=constrain, **own)


class Settings(BaseModel):
    """The knobs every command offers, under one set of names; ``None`` means the method's own default."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    shots: int | None = Field(None, ge=0)  # few-shot exemplars
    max_tokens: int | None = Field(None, ge=1)  # token limit per generation
    temperature: float | None = Field(None, ge=0, le=5)  # 0 = greedy; self-consistency samples at 0.7 unless set
    seed: int | None = Field(None, ge=0)
    k: int | None = Field(None, ge=1)  # samples (votes) for the self-consistency methods
    answer: Literal["number", "text"] | None = None  # what direct and cot answer
    wiki: Literal["offline", "live"] | None = None  # ReAct's Wikipedia: the shipped corpus or the live site
    prompt_format: Literal["auto", "text", "chat"] | None = None  # None: auto (chat when the model has a template)
    constrain: bool = False  # generate each reply under the constraint the method derives (docs/structured.md)

    def generation(self) -> dict[str, Any]:
        """Generation settings laid over each method's own ``GenerationConfig``."""
        config: dict[str, Any] = {}
        if self.max_tokens is not None:
            config["max_new_tokens"] = self.max_tokens
        if self.temperature is not None:
            config.update({"do_sample": True, "temperature": self.temperature} if self.temperature else
                          {"do_sample": False})
        if self.seed is not None:
            config["seed"] = self.seed
        return config

    def method_options(self) -> dict[str, Any]:
        """Keyword options for ``load_strategy`` (each method takes the ones that apply to it)."""
        options: dict[str, Any] = {}
        if self.k is not None:
            options["k"] = self.k
        if self.temperature:  # self-consistency's vote temperature; 0 keeps its default (it must sample)
            options["temperature"] = self.temperature
        if self.answer is not None:
            options["answer"] = self.answer
        if self.wiki is not None:
            options["corpus"] = self.wiki
        return options


def build_strategy(
    name: str,
    llm: LLM,
    settings: Settings | None = None,
    *,
    templates: Templates | None = None,
    history: list[dict[str, str]] | None = None,
    tools: Sequence[Any] = (),
) -> Strategy:
    """The strategy for method ``name`` with ``settings`` laid over its own defaults (``history``: chat only;
    ``tools``: extra tools, e.g. an MCP server's, for the methods that take them)."""
    settings = settings or Settings()
    shots = {} if settings.shots is None else {"shots": settings.shots}
    extra = {"history": history} if history is not None and "history" in get_method(name).options else {}
    if tools:
        extra["tools"] = list(tools)
    return load_strategy(name, llm, config=settings.generation() or None, templates=templates, **shots,
                         prompt_format=settings.prompt_format or "auto", constrain=settings.constrain,
                         **settings.method_options(), **extra)
