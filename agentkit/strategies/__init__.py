"""Prompting strategies, one short module each, and the one registry of methods that names them.

A *method* is a name a user types (``cot``, ``pal-sc``, ``chat``...) for a strategy built with given options.
``REGISTRY`` holds each one: its description, the options it takes, the answer kinds it gives and the exemplar
sets its prompts draw on. Everything that turns a name into a strategy reads it: ``load_strategy`` (Python),
``build_strategy`` (the command line's ``run`` and ``chat``, from ``Settings``), the benchmark harness and the
commands' ``--method`` choices. ``register_method`` adds one, a strategy of your own included, in one call.

``Settings`` are the knobs every command offers, under the names ``load_strategy`` takes them by (``shots``,
``max_tokens``, ``temperature``, ``seed``, ``k``, ``answer``, ``corpus``, ``prompt_format``, ``constrain``,
``tool_format``);
``None`` means the method's own default.

Deliberately not here: the strategies themselves (``direct.py``, ``cot.py``, ``pal.py``, ``react.py``,
``tools.py``, ``self_consistency.py``, ``chat.py``) and anything about the command line (``agentkit.cli``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from agentkit.errors import UnknownMethod, UsageError
from agentkit.llm import LLM, GenerationConfig
from agentkit.prompting import Templates, default_templates
from agentkit.strategies.base import ANSWER_KINDS, DEFAULT_EXEMPLARS, Strategy
from agentkit.strategies.chat import ChatStrategy
from agentkit.strategies.cot import CoT
from agentkit.strategies.direct import Direct
from agentkit.strategies.pal import PAL
from agentkit.strategies.react import ReAct
from agentkit.strategies.self_consistency import SelfConsistency
from agentkit.strategies.tools import ToolAgent

SC_OPTIONS = ("k", "temperature", "top_p")
REACT_OPTIONS = ("tools", "corpus", "max_steps", "sentences", "reask")
TOOLS_OPTIONS = (*REACT_OPTIONS, "parallel", "tool_format")


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
    classes: tuple[type, ...] = ()  # the strategy classes ``build`` makes: their signatures give ``defaults``

    def answer_kind(self, answer: str | None = None) -> str:
        """The kind of answer this method gives when asked for ``answer`` (None: its default)."""
        return answer if answer in self.answers else self.answers[0]

    @property
    def defaults(self) -> dict[str, Any]:
        """Option -> default, read from the constructors of ``classes`` (for ``ls`` and the docs)."""
        wanted = ("shots", *self.options) if self.exemplar_sets(self.answer_kind()) else self.options
        found: dict[str, Any] = {}
        for cls in self.classes:
            for name, parameter in _parameters(cls).items():
                if name in wanted and parameter.default not in (inspect.Parameter.empty, None, ()):
                    found.setdefault(name, parameter.default)
        return found


def _parameters(cls: type) -> dict[str, inspect.Parameter]:
    """The keyword parameters of ``cls``'s constructor and of those it passes ``**kwargs`` on to."""
    found: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        parameters = inspect.signature(init).parameters
        found.update({k: v for k, v in parameters.items() if k not in found and v.kind is v.KEYWORD_ONLY})
        if not any(v.kind is v.VAR_KEYWORD for v in parameters.values()):
            break
    return found


def _layer(cls: type[Strategy], config: GenerationConfig | dict[str, Any] | None) -> GenerationConfig | None:
    """``config`` as a dict of settings goes over the strategy's own defaults (keeping its stop strings)."""
    if isinstance(config, dict):
        return GenerationConfig(**{**cls.default_config.model_dump(), **config})
    return config


def _sc(base: Strategy, options: dict[str, Any]):
    return SelfConsistency(base, **{k: options[k] for k in SC_OPTIONS if k in options})


def _single(
    cls: type[Strategy], sc: bool = False, extra: tuple[str, ...] = (), answers: tuple[str, ...] = ANSWER_KINDS
):
    """Build ``cls`` (with self-consistency over it when ``sc``); ``answer`` goes to one that gives several kinds."""

    def build(llm, *, shots, config, templates, answer, prompt_format, constrain, **options):
        kind = {"answer": answer or answers[0]} if len(answers) > 1 else {}
        own = {k: options[k] for k in extra if k in options}
        common = {"shots": shots, "templates": templates, "prompt_format": prompt_format, "constrain": constrain}
        base = cls(llm, config=_layer(cls, config), **common, **kind, **own)
        return _sc(base, options) if sc else base

    return build


def _react(fallback: bool):
    def build(llm, *, shots, config, templates, answer, prompt_format, constrain, **options):
        own = {k: options[k] for k in REACT_OPTIONS if k in options}
        common = {"shots": shots, "templates": templates, "prompt_format": prompt_format, "constrain": constrain}
        if fallback:
            own["fallback"] = _sc(CoT(llm, config=_layer(CoT, config), answer=answer or "text", **common), options)
        return ReAct(llm, config=_layer(ReAct, config), **common, **own)

    return build


def _chat(llm, *, shots, config, templates, answer, prompt_format, constrain, history=None, **_options):
    return ChatStrategy(
        llm,
        config=_layer(ChatStrategy, config),
        templates=templates,
        history=history,
        prompt_format=prompt_format,
        constrain=constrain,
    )


REGISTRY: dict[str, Method] = {}
# The methods a benchmark can score, name -> description (``chat`` is interactive only).
METHODS: dict[str, str] = {}


def register_method(
    name: str,
    strategy: type[Strategy] | Callable[..., Strategy] | None = None,
    *,
    description: str,
    options: tuple[str, ...] = (),
    answers: tuple[str, ...] = ANSWER_KINDS,
    exemplar_sets: Callable[[str], tuple[str, ...]] | None = None,
    scored: bool = True,
    self_consistency: bool = False,
    classes: tuple[type, ...] = (),
) -> Any:
    """Make ``name`` a method that ``load_strategy``, ``run_benchmark`` and every command (run, chat, bench, ls)
    offer, in one call, or as a decorator on the class (``@register_method("mine", description=...)``).

    ``strategy`` is a ``Strategy`` subclass, built as agentkit builds its own: with the model, ``shots``, the
    generation settings laid over its ``default_config``, ``templates``, ``prompt_format``, ``constrain``,
    ``answer`` when it gives more than one kind (``answers``; the first is its default) and the ``options`` it
    names. Or it is a function with ``Method.build``'s signature, for one that builds several. ``exemplar_sets``
    (answer kind -> the sets its prompts draw on; the shots are checked against them) defaults to the answer
    kind's shipped set; ``self_consistency=True`` votes over ``k`` samples of it (the options of ``cot-sc``);
    ``classes`` names the classes a build function makes, or those a class hands ``**kwargs`` on to (their
    constructors give ``Method.defaults``).
    A name already registered is an error. Returns the ``Method`` (the class, as a decorator).
    """

    def register(strategy: type[Strategy] | Callable[..., Strategy]) -> Method:
        if name in REGISTRY:
            raise UsageError(f"method '{name}' is registered already; choose another name")
        build, made, takes = strategy, classes, options
        if isinstance(strategy, type):
            made = (*classes, strategy, SelfConsistency) if self_consistency else (*classes, strategy)
            build = _single(strategy, sc=self_consistency, extra=options, answers=answers)
            takes = (*options, *SC_OPTIONS) if self_consistency else options
        fields = {} if exemplar_sets is None else {"exemplar_sets": exemplar_sets}
        method = Method(
            name, description, build, options=tuple(takes), answers=answers, scored=scored, classes=made, **fields
        )
        REGISTRY[name] = method
        if scored:
            METHODS[name] = description
        return method

    if strategy is None:

        def decorate(cls: type[Strategy]) -> type[Strategy]:
            register(cls)
            return cls

        return decorate
    return register(strategy)


def unregister_method(name: str) -> None:
    """Remove a method ``register_method`` added (a test's own, say)."""
    get_method(name)
    del REGISTRY[name]
    METHODS.pop(name, None)


def all_options() -> frozenset[str]:
    """Every option some registered method takes."""
    return frozenset(o for m in REGISTRY.values() for o in m.options)


# The shipped methods: name, strategy (a class, or a build function for one that builds several), description,
# and what else ``register_method`` is told about it.
_PAL = {"options": ("sandbox",), "answers": ("number",)}
_SC = {"self_consistency": True}
for _name, _strategy, _description, _more in (
    (
        "chat",
        _chat,
        "plain chat with the model; keeps the conversation (/reset clears it)",
        {"options": ("history",), "answers": ("text",), "exemplar_sets": lambda answer: (), "scored": False},
    ),
    ("direct", Direct, "answer at once, no reasoning (zero/one/few-shot)", {}),
    ("cot", CoT, "chain-of-thought: reason step by step, then 'The answer is N' (Wei et al., 2022)", {}),
    ("cot-sc", CoT, "chain-of-thought with self-consistency: k samples, majority vote (Wang et al., 2022)", _SC),
    ("pal", PAL, "program-aided: the model writes solution(), the sandbox runs it (Gao et al., 2022)", _PAL),
    ("pal-sc", PAL, "PAL with self-consistency over k sampled programs", {**_PAL, **_SC}),
    (
        "react",
        _react(fallback=False),
        "ReAct: Thought / Action / Observation with Search, Lookup, Finish (Yao et al., 2022)",
        {
            "options": REACT_OPTIONS,
            "answers": ("text",),
            "classes": (ReAct,),
            "exemplar_sets": lambda answer: ("react",),
        },
    ),
    (
        "react-cot-sc",
        _react(fallback=True),
        "ReAct, falling back to chain-of-thought self-consistency when it does not finish",
        {
            "options": (*REACT_OPTIONS, *SC_OPTIONS),
            "classes": (ReAct, SelfConsistency),
            "answers": ("text", "number"),
            "exemplar_sets": lambda answer: ("react", DEFAULT_EXEMPLARS[answer]),
        },
    ),
):
    register_method(_name, _strategy, description=_description, **_more)

register_method(
    "tools",
    ToolAgent,
    options=TOOLS_OPTIONS,
    classes=(ReAct,),  # ReAct's options are ToolAgent's **react
    answers=("text",),
    exemplar_sets=lambda answer: (),
    description="ReAct over native tool calls: Search, Lookup, Finish as JSON-schema functions, several calls a "
    "reply (needs a chat model)",
)


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
    unknown = sorted(set(options) - all_options())
    if unknown:
        known = ", ".join(sorted(all_options()))
        raise UsageError(f"method '{name}': unknown option {unknown[0]!r}; the options are: {known}")
    if answer is not None and answer not in ANSWER_KINDS:
        raise UsageError(f"answer must be one of: {', '.join(ANSWER_KINDS)}; got {answer!r}")
    own = {k: v for k, v in options.items() if k in method.options}
    return method.build(
        llm,
        shots=shots,
        config=config,
        templates=templates,
        answer=answer,
        prompt_format=prompt_format,
        constrain=constrain,
        **own,
    )


class Settings(BaseModel):
    """The knobs every command offers, under one set of names; ``None`` means the method's own default."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    shots: int | None = Field(None, ge=0)  # few-shot exemplars
    max_tokens: int | None = Field(None, ge=1)  # token limit per generation
    temperature: float | None = Field(None, ge=0, le=5)  # 0 = greedy; self-consistency samples at 0.7 unless set
    seed: int | None = Field(None, ge=0)
    k: int | None = Field(None, ge=1)  # samples (votes) for the self-consistency methods
    answer: Literal["number", "text"] | None = None  # what direct and cot answer
    # ReAct's Wikipedia: the shipped corpus or the live site (``wiki=``, its older name, still works)
    corpus: Literal["offline", "live"] | None = Field(None, validation_alias=AliasChoices("corpus", "wiki"))
    prompt_format: Literal["auto", "text", "chat"] | None = None  # None: auto (chat when the model has a template)
    constrain: bool = False  # generate each reply under the constraint the method derives (docs/structured.md)
    tool_format: str | None = None  # the tools method's call format (agentkit.toolcalls.FORMATS); None: sniffed

    def generation(self) -> dict[str, Any]:
        """Generation settings laid over each method's own ``GenerationConfig``."""
        config: dict[str, Any] = {}
        if self.max_tokens is not None:
            config["max_new_tokens"] = self.max_tokens
        if self.temperature is not None:
            config.update(
                {"do_sample": True, "temperature": self.temperature} if self.temperature else {"do_sample": False}
            )
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
        if self.corpus is not None:
            options["corpus"] = self.corpus
        if self.tool_format is not None:
            options["tool_format"] = self.tool_format
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
    return load_strategy(
        name,
        llm,
        config=settings.generation() or None,
        templates=templates,
        **shots,
        prompt_format=settings.prompt_format or "auto",
        constrain=settings.constrain,
        **settings.method_options(),
        **extra,
    )
