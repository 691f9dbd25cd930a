"""``agentkit chat``: an interactive loop that answers each line with the current mode, streaming the work.

A *mode* is any method of ``agentkit.strategies.REGISTRY``: ``chat`` (a plain conversation that keeps its
history), direct, cot, cot-sc, pal, pal-sc, react, ... Every question runs as one episode and is shown as it
happens (see ``agentkit.cli.display``). Lines that start with ``/`` are commands (``/help`` lists them); a bad
command or setting gets one line and the loop goes on. The settings commands (``/shots``, ``/max-tokens``,
``/temperature``, ``/answer``, ``/constrain``) parse their value with the same parsers as the command-line flags,
accept ``default``, and are checked when set. Ctrl-C stops the current generation and keeps the loop; Ctrl-D (end of
input) leaves it.

On a terminal, input goes through prompt_toolkit: line editing, history kept across sessions in a file (in the
user data directory unless ``--history-file``), and completion of slash commands. When standard input is not a
terminal, lines are read plainly one by one (and echoed after the prompt), so a session can be scripted::

    printf 'What is 6 times 7?\\n/mode pal\\nWhat is 6 times 7?\\n' | agentkit chat --model scripted:replies.json

Deliberately not here: the chat mode itself (``agentkit.strategies.chat``), multi-line input, resuming
conversations (``/save`` writes a transcript; it is not reloaded), chat history for the strategy modes (only
``chat`` turns are remembered; every other question stands alone), and tool plug-ins from the command line (see
docs/custom-tools.md for agents with your own tools, from Python).
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from agentkit.cli.display import Display, debug_enabled, one_line, run_streamed, stdout_is_tty
from agentkit.cli.options import (
    ANSWER,
    CONSTRAIN,
    MAX_TOKENS,
    PROMPT_FORMAT,
    SHOTS,
    TEMPERATURE,
    episode_options,
    method_option,
    model_option,
    open_mcp_tools,
    pop_episode_options,
)
from agentkit.errors import AgentkitError, UsageError
from agentkit.llm import LLM
from agentkit.prompting import Templates
from agentkit.records import jsonable
from agentkit.result import Result
from agentkit.strategies import REGISTRY, Settings, build_strategy, check_shots, get_method
from agentkit.strategies.chat import ChatStrategy
from agentkit.strategies.react import ReAct

CHAT = ChatStrategy.name


@dataclass
class Command:
    usage: str
    help: str
    run: Callable[[str], bool | None]


@dataclass
class Turn:
    mode: str
    question: str
    result: Result
    model: str

    def record(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "model": self.model,
            "question": self.question,
            "answer": self.result.answer,
            "result": jsonable(self.result),
        }


def describe(mode: str, settings: Settings) -> str:
    shots = "default" if settings.shots is None else str(settings.shots)
    max_tokens = "default" if settings.max_tokens is None else str(settings.max_tokens)
    temperature = "0 (greedy)" if not settings.temperature else f"{settings.temperature:g}"
    answer = "" if settings.answer is None else f", answer {settings.answer}"
    form = "" if settings.prompt_format is None else f", prompt format {settings.prompt_format}"
    constrained = ", constrained" if settings.constrain else ""
    return f"mode {mode}, shots {shots}, temperature {temperature}, max tokens {max_tokens}{answer}{form}{constrained}"


@dataclass
class ChatSession:
    """The state of one ``agentkit chat`` session and what each line does to it."""

    llm: LLM
    model_spec: str
    settings: Settings = field(default_factory=Settings)
    mode: str = CHAT
    templates: Templates | None = None
    display: Display = field(default_factory=Display)
    debug: bool = False
    show_stats: bool = False
    load: Callable[[str], LLM] | None = None
    history: list[dict[str, str]] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)
    last: Result | None = None
    interrupted: list[str] = field(default_factory=list)  # questions whose turn Ctrl-C stopped
    last_interrupted: str | None = None  # the question of the latest turn, when Ctrl-C stopped it
    run_options: dict[str, Any] = field(default_factory=dict)  # budget, cache, trace for every turn
    tools: list[Any] = field(default_factory=list)  # the --mcp servers' tools, for the react modes

    def __post_init__(self) -> None:
        self.commands: dict[str, Command] = {}
        for names, usage, text, run in [
            (["/mode"], "/mode [NAME]", "show or switch the mode: " + ", ".join(REGISTRY), self._mode),
            (["/shots"], "/shots [N]", "show or set the number of few-shot exemplars ('default')", self._shots),
            (["/temperature"], "/temperature [T]", "show or set the sampling temperature (0 = greedy)", self._temp),
            (["/max-tokens"], "/max-tokens [N]", "show or set the token limit per generation ('default')", self._max),
            (
                ["/answer"],
                "/answer [KIND]",
                "show or set what direct and cot answer: number, text or default",
                self._answer,
            ),
            (
                ["/prompt-format"],
                "/prompt-format [FORMAT]",
                "show or set how prompts reach the model: auto, text, chat or default",
                self._prompt_format,
            ),
            (
                ["/constrain"],
                "/constrain [on|off]",
                "show or set whether replies are constrained to the method's form",
                self._constrain,
            ),
            (
                ["/model"],
                "/model [SPEC]",
                "show or switch the model (default, scripted:FILE, HF id, dir, .gguf)",
                self._model,
            ),
            (["/tools"], "/tools", "list the tools the react modes can use", self._tools),
            (
                ["/trace"],
                "/trace",
                "show the last episode in full: prompt, completions, program or trajectory",
                self._trace,
            ),
            (["/save"], "/save FILE", "write the transcript as JSONL, one record per finished turn", self._save),
            (["/reset"], "/reset", "forget the chat history", self._reset),
            (["/settings"], "/settings", "show the model and the current settings", self._settings),
            (["/help", "/?"], "/help", "show this help", self._help),
            (["/quit", "/exit"], "/quit, /exit", "leave (Ctrl-D too)", lambda _arg: False),
        ]:
            for name in names:
                self.commands[name] = Command(usage, text, run)

    @property
    def prompt_text(self) -> str:
        return f"{self.mode}> "

    def completions(self) -> list[str]:
        """Words for the terminal's completer: every command, and ``/mode NAME`` for every mode."""
        words = [c for c in self.commands if c != "/?"]
        return words + [f"/mode {mode}" for mode in REGISTRY]

    # -- a line of input
    def handle(self, line: str) -> bool:
        """Act on one input line; False means leave the loop."""
        line = line.strip()
        if not line:
            return True
        if line.startswith("/"):
            name, _, argument = line.partition(" ")
            command = self.commands.get(name.lower())
            if command is None:
                self.display.problem(f"Unknown command {name}; /help lists the commands")
                return True
            try:
                return command.run(argument.strip()) is not False
            except KeyboardInterrupt:  # e.g. while /model loads
                self.display.interrupted()
            except Exception as exc:  # noqa: BLE001 - a bad command or setting must not end the session
                self._report(exc)
            return True
        self.ask(line)
        return True

    def ask(self, question: str) -> Result | None:
        mode = self.mode
        try:
            strategy = build_strategy(
                mode, self.llm, self.settings, templates=self.templates, history=self.history, tools=self.tools
            )
            result = run_streamed(self.llm, strategy, question, self.display, **self.run_options)
        except KeyboardInterrupt:
            self.display.interrupted()
            self.interrupted.append(question)
            self.last_interrupted = question
            return None
        except Exception as exc:  # noqa: BLE001 - one failed turn must not end the session
            self._report(exc)
            return None
        self.display.result(result, show_stats=self.show_stats)
        self.last, self.last_interrupted = result, None
        self.turns.append(Turn(mode, question, result, self.model_spec))
        if mode == CHAT and result.answer is not None:
            self.history.append({"user": question, "assistant": result.answer})
        return result

    def _report(self, exc: Exception) -> None:
        """A user's error is one line (the traceback too under --debug); a bug in agentkit keeps its traceback."""
        expected = isinstance(exc, (AgentkitError, OSError))
        if self.debug or not expected:
            self.display.newline()
            traceback.print_exc()
        self.display.problem(f"Error: {one_line(exc)}")

    # -- commands (each gets the text after the command name)
    def _check_shots(self, mode: str, shots: int | None) -> None:
        if shots is not None:
            check_shots(mode, shots, answer=self.settings.answer, templates=self.templates)

    def _mode(self, arg: str) -> None:
        if not arg:
            self.display.message(f"mode: {self.mode}  (modes: {', '.join(REGISTRY)})")
            return
        name = arg.strip().lower()
        if name not in REGISTRY:
            raise UsageError(f"unknown mode '{arg}'; choose one of: {', '.join(REGISTRY)}")
        self._check_shots(name, self.settings.shots)
        self.mode = name
        self.display.message(f"mode: {name} ({get_method(name).description})")

    def _shots(self, arg: str) -> None:
        if arg:
            shots = SHOTS.parse(arg)
            self._check_shots(self.mode, shots)
            self.settings.shots = shots
        shots = "the method's default" if self.settings.shots is None else self.settings.shots
        self.display.message(f"shots: {shots}")

    def _temp(self, arg: str) -> None:
        if arg:
            self.settings.temperature = TEMPERATURE.parse(arg)
        t = self.settings.temperature or 0
        self.display.message(f"temperature: {t:g}" + (" (greedy)" if not t else ""))

    def _max(self, arg: str) -> None:
        if arg:
            self.settings.max_tokens = MAX_TOKENS.parse(arg)
        limit = "the method's default" if self.settings.max_tokens is None else self.settings.max_tokens
        self.display.message(f"max tokens: {limit}")

    def _answer(self, arg: str) -> None:
        if arg:
            self.settings.answer = ANSWER.parse(arg)
        kind = (
            "the method's default (number; text for react-cot-sc's fallback)"
            if self.settings.answer is None
            else self.settings.answer
        )
        self.display.message(f"answer: {kind}")

    def _prompt_format(self, arg: str) -> None:
        if arg:
            self.settings.prompt_format = PROMPT_FORMAT.parse(arg)
        self.display.message(f"prompt format: {self.settings.prompt_format or 'auto'}")

    def _constrain(self, arg: str) -> None:
        if arg:
            self.settings.constrain = CONSTRAIN.parse(arg) == "on"
        state = "on (the chat mode's replies stay free)" if self.settings.constrain else "off"
        self.display.message(f"constrain: {state}")

    def _model(self, arg: str) -> None:
        if not arg:
            self.display.message(f"model: {self.model_spec}")
            return
        if self.load is None:
            raise UsageError("this session cannot switch models")
        self.llm = self.load(arg)  # raises on a bad spec; the old model stays
        self.model_spec = arg
        self.display.message(f"model: {arg}")

    def _tools(self, _arg: str) -> None:
        react = build_strategy("react", self.llm, self.settings, templates=self.templates, tools=self.tools)
        assert isinstance(react, ReAct)
        self.display.line("ReAct tools:", bold=True)
        for tool in react.episode_tools():
            self.display.line("  " + tool.describe())

    def _trace(self, _arg: str) -> None:
        note = self._interrupted_note()
        if self.last is None:
            self.display.message(
                f"{note}; no finished episode to show" if note else "no episode yet: ask a question first"
            )
            return
        if note:
            self.display.message(f"{note}; this is the last finished episode:")
        for title, body in trace_sections(self.last):
            self.display.line(f"--- {title} ---", fg="bright_black")
            self.display.line(body)

    def _interrupted_note(self) -> str:
        """A word about the latest turn when Ctrl-C stopped it ('' otherwise)."""
        if self.last_interrupted is None:
            return ""
        return f"the last turn ({self.last_interrupted!r}) was interrupted and kept nothing"

    def _save(self, arg: str) -> None:
        if not arg:
            raise UsageError("usage: /save FILE")
        path = Path(arg).expanduser()
        if path.parent and not path.parent.is_dir():
            raise UsageError(f"cannot save to {path}: directory {path.parent} does not exist")
        with path.open("w", encoding="utf-8") as f:
            for turn in self.turns:
                f.write(json.dumps(turn.record(), ensure_ascii=False) + "\n")
        message = f"saved {len(self.turns)} turn{'s' * (len(self.turns) != 1)} to {path}"
        if self.interrupted:
            n = len(self.interrupted)
            message += f"; {n} interrupted turn{'s' * (n != 1)} (Ctrl-C) not saved"
        self.display.message(message)

    def _reset(self, _arg: str) -> None:
        self.history.clear()
        self.display.message("chat history cleared")

    def _settings(self, _arg: str) -> None:
        self.display.message(f"model {self.model_spec}; {describe(self.mode, self.settings)}")

    def _help(self, _arg: str) -> None:
        self.display.line("Type a question to answer it with the current mode. Commands:", bold=True)
        seen = set()
        for command in self.commands.values():
            if command.usage in seen:
                continue
            seen.add(command.usage)
            self.display.line(f"  {command.usage:<18} {command.help}")
        self.display.line("Ctrl-C stops a generation; Ctrl-D leaves.")


def trace_sections(result: Result) -> list[tuple[str, str]]:
    """The last episode in full, as (title, text) sections for ``/trace``."""
    summary = f"method {result.method}; answer {result.answer!r}"
    if result.failure:
        summary += f"; failure {result.failure}: {result.error}"
    summary += f"; {result.prompt_tokens} prompt + {result.completion_tokens} generated tokens; {result.duration:.2f} s"
    sections = [("episode", summary), ("question", result.question), ("prompt", result.prompt)]
    for i, completion in enumerate(result.completions, 1):
        sections.append((f"completion {i}", completion))
    if result.program is not None:
        sections.append(("program", result.program))
    if result.execution is not None:
        sections.append(("execution", json.dumps(jsonable(result.execution), indent=2)))
    if result.trajectory is not None:
        sections.append(("trajectory", json.dumps(jsonable(result.trajectory), indent=2, ensure_ascii=False)))
    if result.votes:
        sections.append(("votes", json.dumps(result.votes)))
    return sections


# ------------------------------------------------------------------------------------------------ input
def default_history_file() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("agentkit", appauthor=False)) / "chat_history"


def terminal_loop(session: ChatSession, history_file: Path) -> None:
    """Read lines with prompt_toolkit: editing, persistent history, slash-command completion."""
    from prompt_toolkit import PromptSession
    from prompt_toolkit.completion import WordCompleter
    from prompt_toolkit.history import FileHistory

    history_file.parent.mkdir(parents=True, exist_ok=True)
    completer = WordCompleter(session.completions(), sentence=True)
    prompt = PromptSession(history=FileHistory(str(history_file)), completer=completer)
    while True:
        try:
            line = prompt.prompt(session.prompt_text)
        except KeyboardInterrupt:
            continue  # Ctrl-C at the prompt clears the line
        except EOFError:
            break
        if not session.handle(line):
            break


def plain_loop(session: ChatSession, stream=None) -> None:
    """Read lines one by one from a pipe or file, echoing each after the prompt so the transcript reads well."""
    stream = stream or sys.stdin
    typed = _isatty(stream)  # a person typing while the output goes to a pipe: prompt on stderr, no echo
    while True:
        if typed:
            click.echo(session.prompt_text, nl=False, err=True)
        line = stream.readline()
        if not line:
            break
        line = line.rstrip("\r\n")
        if not typed:
            session.display.line(session.prompt_text + line, fg="bright_black")
        if not session.handle(line):
            break


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


# ------------------------------------------------------------------------------------------------ command
@click.command("chat", short_help="Chat, or ask an agent questions, interactively.")
@model_option
@method_option(
    default=CHAT, help="How each question is answered: chat or a method (see `agentkit ls`); /mode switches."
)
@episode_options(
    click.option(
        "--history-file",
        type=click.Path(dir_okay=False),
        default=None,
        help="Where the terminal keeps input history (default: in the user data directory).",
    )
)
@click.pass_context
def chat(ctx: click.Context, model_spec, method, dtype, templates_dir, history_file, mcp_specs, **kwargs) -> None:
    """Chat with the model, or ask questions of an agent, in an interactive loop.

    Each line is a question answered by the current mode (chat, direct, cot, pal, react, ...), streamed as it
    is worked out; lines starting with / are commands (/help lists them). Ctrl-C stops a generation,
    Ctrl-D leaves. Input that is not a terminal is read line by line, so sessions can be scripted.
    """
    from agentkit.models import load_model

    settings, options = pop_episode_options(kwargs)
    templates = Templates(templates_dir) if templates_dir else None
    if settings.shots is not None:
        check_shots(method, settings.shots, answer=settings.answer, templates=templates)
    tools = open_mcp_tools(mcp_specs)
    color = stdout_is_tty()
    display = Display(color=color, terminal=sys.stdout.isatty())

    def load(spec: str) -> LLM:
        if color:
            display.message(f"loading {spec or 'the default model'} ...")
        return load_model(spec, dtype=dtype)

    session = ChatSession(
        llm=load(model_spec),
        model_spec=model_spec or "default",
        settings=settings,
        mode=method,
        templates=templates,
        display=display,
        debug=debug_enabled(ctx),
        show_stats=color,
        load=load,
        run_options=options,
        tools=tools,
    )
    if sys.stdin.isatty() and sys.stdout.isatty():
        display.message(f"agentkit chat: model {session.model_spec}, {describe(method, settings)}")
        display.message("Type a question; /help for commands, Ctrl-D to leave.")
        terminal_loop(session, Path(history_file).expanduser() if history_file else default_history_file())
    else:
        plain_loop(session)
