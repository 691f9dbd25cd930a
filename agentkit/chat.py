"""``agentkit chat``: an interactive loop that answers each line with the current mode, streaming the work.

A *mode* is ``chat`` (a plain conversation that keeps its history) or any method of
``agentkit.strategies.METHODS`` (direct, cot, cot-sc, pal, pal-sc, react, ...). Every question runs as one
episode (see ``agentkit.runtime``) and is shown as it happens: the model's tokens as they are generated, then
the steps the strategy reports (a ReAct observation, the result of a PAL program), then the answer, labelled.
Lines that start with ``/`` are commands (``/help`` lists them); a bad command or setting gets one line and the
loop goes on. Ctrl-C stops the current generation and keeps the loop; Ctrl-D (end of input) leaves it.

On a terminal, input goes through prompt_toolkit: line editing, history kept across sessions in a file (in the
user data directory unless ``--history-file``), and completion of slash commands. When standard input is not a
terminal, lines are read plainly one by one (and echoed after the prompt), so a session can be scripted::

    printf 'What is 6 times 7?\\n/mode pal\\nWhat is 6 times 7?\\n' | agentkit chat --model scripted:replies.json

This module also holds what ``agentkit run`` shares with the loop: ``build_strategy`` (a mode and settings to
a strategy), ``Display`` (how work is printed) and ``run_streamed``.

Deliberately not here: multi-line input, resuming conversations (``/save`` writes a transcript; it is not
reloaded), trimming a long conversation to the model's context, chat history for the strategy modes (only
``chat`` turns are remembered; every other question stands alone), and tool plug-ins from the command line (see
docs/custom-tools.md for agents with your own tools, from Python).
"""

from __future__ import annotations

import json
import os
import re
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from agentkit.cli_options import (
    answer_option,
    dtype_option,
    max_tokens_option,
    model_option,
    prompt_format_option,
    shots_option,
    templates_option,
)
from agentkit.llm import LLM, Chat, Completion, GenerationConfig, Message, Prompt
from agentkit.prompting import Templates, default_templates, resolve_prompt_format
from agentkit.result import Result
from agentkit.runtime import Episode, Event, Generate, run_episode
from agentkit.strategies import METHODS
from agentkit.strategies.base import ANSWER_KINDS

CHAT_MODE = "chat"
MODES: dict[str, str] = {CHAT_MODE: "plain chat with the model; keeps the conversation (/reset clears it)", **METHODS}

# Strings that end an assistant turn in common chat templates, for models whose engine does not stop on them.
END_OF_TURN = ["<end_of_turn>", "<|im_end|>", "<|eot_id|>", "<|end|>"]
# Stops for the plain transcript (prompts/templates/chat.jinja): the model must not write the user's turn.
TRANSCRIPT_STOP = ["\nUser:", "\nAssistant:"]
CHAT_MAX_TOKENS = 256


# ------------------------------------------------------------------------------------------------ settings
@dataclass
class Settings:
    """What ``/mode``, ``/shots``, ``/temperature`` and ``/max-tokens`` change. ``None`` = the method's default."""

    mode: str = CHAT_MODE
    shots: int | None = None
    temperature: float = 0.0  # 0 = greedy; self-consistency always samples (0 = its default temperature)
    max_tokens: int | None = None
    seed: int | None = None
    k: int | None = None
    answer: str | None = None  # "number" or "text" for direct/cot (None = the method's default)
    prompt_format: str = "auto"  # "auto", "text" or "chat" (see agentkit.prompting)

    def describe(self) -> str:
        shots = "default" if self.shots is None else str(self.shots)
        max_tokens = "default" if self.max_tokens is None else str(self.max_tokens)
        temperature = "0 (greedy)" if not self.temperature else f"{self.temperature:g}"
        answer = "" if self.answer is None else f", answer {self.answer}"
        form = "" if self.prompt_format == "auto" else f", prompt format {self.prompt_format}"
        return f"mode {self.mode}, shots {shots}, temperature {temperature}, max tokens {max_tokens}{answer}{form}"


def parse_mode(value: str) -> str:
    mode = value.strip().lower()
    if mode not in MODES:
        raise ValueError(f"unknown mode '{value}'; choose one of: {', '.join(MODES)}")
    return mode


def parse_shots(value: str) -> int:
    try:
        shots = int(value)
    except ValueError:
        raise ValueError(f"shots must be a whole number >= 0, got '{value}'") from None
    if shots < 0:
        raise ValueError(f"shots must be >= 0, got {shots}")
    return shots


def parse_temperature(value: str) -> float:
    try:
        temperature = float(value)
    except ValueError:
        raise ValueError(f"temperature must be a number >= 0 (0 = greedy), got '{value}'") from None
    if not 0 <= temperature <= 5 or temperature != temperature:
        raise ValueError(f"temperature must be between 0 and 5 (0 = greedy), got {value}")
    return temperature


def parse_answer(value: str) -> str | None:
    answer = value.strip().lower()
    if answer == "default":
        return None
    if answer not in ANSWER_KINDS:
        raise ValueError(f"answer must be one of: {', '.join(ANSWER_KINDS)}, default; got '{value}'")
    return answer


def parse_max_tokens(value: str) -> int | None:
    if value.strip().lower() in ("default", "none"):
        return None
    try:
        max_tokens = int(value)
    except ValueError:
        raise ValueError(f"max tokens must be a whole number >= 1 (or 'default'), got '{value}'") from None
    if max_tokens < 1:
        raise ValueError(f"max tokens must be >= 1, got {max_tokens}")
    return max_tokens


# ------------------------------------------------------------------------------------------------ chat mode
class ChatMode:
    """Plain chat: the conversation so far plus the new question, answered in one generation.

    A ``Chat`` through the model's chat template when ``prompt_format`` resolves to chat (by default: when the
    model has one), else the transcript template ``chat`` (for base models) with stop strings so the model does not
    write the user's next turn. ``history`` is a list of ``{"user": ..., "assistant": ...}`` turns that the caller
    appends to after a completed turn.
    """

    name = CHAT_MODE

    def __init__(
        self,
        llm: LLM,
        *,
        history: list[dict[str, str]] | None = None,
        templates: Templates | None = None,
        config: GenerationConfig | None = None,
        prompt_format: str = "auto",
    ):
        self.llm = llm
        self.prompt_format = prompt_format
        self.history = history if history is not None else []
        self.templates = templates or default_templates()
        self.config = config or GenerationConfig(max_new_tokens=CHAT_MAX_TOKENS)

    def prompt(self, question: str) -> tuple[Prompt, list[str]]:
        """The prompt for ``question`` and the stop strings that end the assistant's turn."""
        if resolve_prompt_format(self.prompt_format, self.llm) == "chat":
            messages: list[Message] = []
            for turn in self.history:
                messages += [Message(role="user", content=turn["user"]),
                             Message(role="assistant", content=turn["assistant"])]
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
            method=CHAT_MODE,
            question=question,
            answer=reply or None,
            failure=failure,
            error=error,
            prompt=self.llm.render(prompt),
            completions=[completion.text],
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
        )


def build_strategy(
    mode: str,
    llm: LLM,
    settings: Settings,
    *,
    templates: Templates | None = None,
    history: list[dict[str, str]] | None = None,
    **options: Any,
):
    """The strategy (or ``ChatMode``) for ``mode`` with ``settings`` laid over the method's own defaults."""
    from agentkit.strategies import load_strategy

    config: dict[str, Any] = {}
    if settings.max_tokens is not None:
        config["max_new_tokens"] = settings.max_tokens
    if settings.seed is not None:
        config["seed"] = settings.seed
    sampled = mode.endswith("-sc")  # self-consistency samples whatever the temperature setting
    if settings.temperature and not sampled:
        config.update(do_sample=True, temperature=settings.temperature)
    if mode == CHAT_MODE:
        chat_config = GenerationConfig(**{"max_new_tokens": CHAT_MAX_TOKENS, **config})
        return ChatMode(llm, history=history, templates=templates, config=chat_config,
                        prompt_format=settings.prompt_format)
    kwargs: dict[str, Any] = {
        "config": config or None, "templates": templates, "prompt_format": settings.prompt_format, **options
    }
    if settings.shots is not None:
        kwargs["shots"] = settings.shots
    if settings.k is not None:
        kwargs["k"] = settings.k
    if sampled and settings.temperature:
        kwargs["temperature"] = settings.temperature
    if settings.answer is not None:
        kwargs["answer"] = settings.answer
    return load_strategy(mode, llm, **kwargs)


# ------------------------------------------------------------------------------------------------ display
_LABELS = {
    "thought": ("Thought", "cyan"),
    "action": ("Action", "yellow"),
    "observation": ("Observation", "magenta"),
    "program": ("Program", "cyan"),
}
_STEP_LABEL = re.compile(r"(?:^|\n)((?:Thought|Action) \d+:)$")
_PROGRAM_FENCE = "```python"
_WAITING = "..."
# Events that repeat text the model has just streamed: shown only when nothing was streamed.
_ECHOES = {"thought", "action", "program"}


class Display:
    """Prints an episode as it happens: tokens, steps, the answer. Colours only when ``color`` is true."""

    def __init__(self, color: bool = False, out: Callable[[str], None] | None = None, terminal: bool = False):
        self.color = color
        self.terminal = terminal  # a terminal echoes "^C" where the user pressed it
        self._out = out
        self._at_line_start = True
        self._waiting = False  # "..." is on screen, waiting for the first token
        self._fresh = ""  # model text streamed since the last step was shown
        self._generations = 0
        self._generation_text = ""  # model text of the current generation
        self.samples = 0  # > 0: label each generation as one of this many samples (self-consistency)
        self.dim_tokens = True

    # -- low level
    def write(self, text: str, **style: Any) -> None:
        if not text:
            return
        self._clear_waiting()
        self._at_line_start = text.endswith("\n")
        if self.color and style:
            text = click.style(text, **style)
        self._raw(text)

    def _raw(self, text: str) -> None:
        if self._out is not None:
            self._out(text)
        else:
            click.echo(text, nl=False, color=self.color)

    def waiting(self) -> None:
        """On a terminal, show "..." until the model's first words (a prompt can take seconds to read)."""
        if self.terminal and not self._waiting:
            at_line_start = self._at_line_start
            self.write(_WAITING, dim=True)
            self._waiting, self._at_line_start = True, at_line_start  # erased before anything else is written

    def _clear_waiting(self) -> None:
        if self._waiting:
            self._waiting = False
            n = len(_WAITING)
            self._raw("\b" * n + " " * n + "\b" * n)

    def newline(self) -> None:
        if not self._at_line_start:
            self.write("\n")

    def line(self, text: str = "", **style: Any) -> None:
        """``text`` on a line of its own."""
        self.newline()
        self.end_line(text, **style)

    def end_line(self, text: str = "", **style: Any) -> None:
        """``text``, then end the current line."""
        self.write(text, **style)
        self.write("\n")

    def message(self, text: str) -> None:
        """A short note from the loop (settings changed, file saved)."""
        self.line(text, fg="bright_black")

    def problem(self, text: str) -> None:
        """One line about a bad command, a bad setting or a failed turn."""
        self.line(text, fg="red")

    def interrupted(self) -> None:
        self._waiting = False  # leave the "..." (the terminal has echoed "^C" after it)
        if self.terminal:
            self.write("\n")  # past the "^C" the terminal echoed, wherever the cursor was
        self.line("(interrupted)", fg="red")

    # -- an episode
    def begin_episode(self, samples: int = 0, dim_tokens: bool = True) -> None:
        self._fresh = ""
        self._generations = 0
        self.samples = samples
        self.dim_tokens = dim_tokens

    def begin_generation(self, prompt: str = "") -> None:
        self._generations += 1
        self._generation_text = ""
        if self.samples and self._generations <= self.samples:
            self.line(f"[sample {self._generations}/{self.samples}]", fg="bright_black")
            self.waiting()
            return
        self.newline()
        label = _STEP_LABEL.search(prompt[-40:])
        if label:  # the prompt ends with "Thought 2:" (ReAct): show it before the model's words
            self.write(label.group(1), fg="yellow" if label.group(1).startswith("Action") else "cyan", bold=True)
        elif prompt.rstrip().endswith(_PROGRAM_FENCE):  # PAL: the model writes the program
            self.line("Program:", fg="cyan", bold=True)
        self.waiting()

    def token(self, piece: str) -> None:
        if self._at_line_start and not self._generation_text:
            piece = piece.lstrip()  # a completion's leading space or newline, at the start of a line
            if not piece:
                return
        self._generation_text += piece
        self._fresh += piece
        self.write(piece, dim=True) if self.dim_tokens else self.write(piece)

    def event(self, event: Event) -> None:
        kind, text = event.kind, event.text.strip()
        if kind == "answer":
            return  # the final answer is shown from the Result, once
        if kind in _ECHOES and self._fresh.strip():
            return
        self._fresh = ""
        if kind == "execution":
            ok = event.data.get("ok", True) if isinstance(event.data, dict) else True
            label, colour = ("Result", "green") if ok else ("Program error", "red")
        else:
            label, colour = _LABELS.get(kind, (kind.replace("_", " ").capitalize(), "blue"))
            step = event.data.get("step") if isinstance(event.data, dict) else None
            if isinstance(step, int):
                label = f"{label} {step}"
        self.newline()
        if text.lower().startswith(label.lower()):  # the strategy already labelled it ("Thought 2: ...")
            self.line(text, fg=colour)
        elif "\n" in text:
            self.line(f"{label}:", fg=colour, bold=True)
            self.line(text)
        else:
            self.write(f"{label}: ", fg=colour, bold=True)
            self.end_line(text)

    def result(self, result: Result, *, show_stats: bool = False) -> None:
        self._fresh = ""
        if result.method == CHAT_MODE and result.answer is not None:
            self.newline()  # the streamed reply is the answer
        elif result.answer is not None:
            votes = ""
            if result.votes and len(result.votes) > 0:
                votes = "  (votes: " + ", ".join(f"{a}: {n}" for a, n in result.votes.items()) + ")"
            self.newline()
            self.write("Answer: ", fg="green", bold=True)
            self.write(result.answer, bold=True)
            self.end_line(votes, fg="bright_black")
        else:  # the model's failure is data: still an "Answer:" line, saying why there is none
            detail = f": {result.error}" if result.error else ""
            self.newline()
            self.write("Answer: ", fg="yellow", bold=True)
            self.end_line(f"(none; {result.failure or 'no_answer'}{detail})", fg="yellow")
        if show_stats:
            tokens = result.prompt_tokens + result.completion_tokens
            self.message(f"({result.duration:.1f} s, {result.completion_tokens} of {tokens} tokens generated)")


def stdout_is_tty() -> bool:
    """Colour and spinners only for a person: a terminal, and no NO_COLOR in the environment."""
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


class _Watched(LLM):
    """Wraps a model so the display learns where each streamed generation starts (and streams get closed)."""

    def __init__(self, inner: LLM, on_start: Callable[[str], None]):
        self.inner = inner
        self.name = getattr(inner, "name", "llm")
        self.on_start = on_start

    def generate(self, prompts, config=None):
        return self.inner.generate(prompts, config)

    def render(self, prompt):
        return self.inner.render(prompt)

    def stream(self, prompt, config=None):
        self.on_start(self.inner.render(prompt))
        inner = self.inner.stream(prompt, config)
        try:
            return (yield from inner)
        finally:
            inner.close()  # an interrupted generation lets the engine clean up

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)


def run_streamed(llm: LLM, strategy: Any, question: str, display: Display | None) -> Result:
    """Answer ``question`` with ``strategy``; with a ``display``, stream tokens and steps to it."""
    if display is None:
        return run_episode(llm, strategy.episode(question))
    samples = getattr(strategy, "k", 0) if hasattr(strategy, "base") else 0
    display.begin_episode(samples=samples, dim_tokens=getattr(strategy, "name", "") != CHAT_MODE)
    watched = _Watched(llm, display.begin_generation)
    return run_episode(watched, strategy.episode(question), on_event=display.event, on_token=display.token)


def result_data(result: Result) -> dict[str, Any]:
    """The Result as JSON-ready data (a pydantic trajectory included)."""
    try:
        return result.model_dump(mode="json")
    except Exception:  # noqa: BLE001 - an exotic trajectory object: fall back to its text
        return json.loads(json.dumps(result.model_dump(), default=_plain))


def _plain(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return str(value)


def one_line(exc: BaseException) -> str:
    """An exception as one readable line."""
    if isinstance(exc, OSError) and exc.strerror and exc.filename:
        return f"{exc.strerror}: {exc.filename}"
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


# ------------------------------------------------------------------------------------------------ the loop
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
            "result": result_data(self.result),
        }


@dataclass
class ChatSession:
    """The state of one ``agentkit chat`` session and what each line does to it."""

    llm: LLM
    model_spec: str
    settings: Settings = field(default_factory=Settings)
    templates: Templates | None = None
    display: Display = field(default_factory=Display)
    debug: bool = False
    show_stats: bool = False
    load: Callable[[str], LLM] | None = None
    history: list[dict[str, str]] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)
    last: Result | None = None

    def __post_init__(self) -> None:
        self.commands: dict[str, Command] = {}
        for names, usage, text, run in [
            (["/mode"], "/mode [NAME]", "show or switch the mode: " + ", ".join(MODES), self._mode),
            (["/shots"], "/shots [N]", "show or set the number of few-shot exemplars", self._shots),
            (["/temperature"], "/temperature [T]", "show or set the sampling temperature (0 = greedy)", self._temp),
            (["/max-tokens"], "/max-tokens [N]", "show or set the token limit per generation ('default')", self._max),
            (["/answer"], "/answer [KIND]", "show or set what direct and cot answer: number, text or default",
             self._answer),
            (["/model"], "/model [SPEC]", "show or switch the model (default, scripted:FILE, HF id, dir, .gguf)",
             self._model),
            (["/tools"], "/tools", "list the tools the react modes can use", self._tools),
            (["/trace"], "/trace", "show the last episode in full: prompt, completions, program or trajectory",
             self._trace),
            (["/save"], "/save FILE", "write the transcript as JSONL, one record per turn", self._save),
            (["/reset"], "/reset", "forget the chat history", self._reset),
            (["/settings"], "/settings", "show the model and the current settings", self._settings),
            (["/help", "/?"], "/help", "show this help", self._help),
            (["/quit", "/exit"], "/quit, /exit", "leave (Ctrl-D too)", lambda _arg: False),
        ]:
            for name in names:
                self.commands[name] = Command(usage, text, run)

    @property
    def prompt_text(self) -> str:
        return f"{self.settings.mode}> "

    def completions(self) -> list[str]:
        """Words for the terminal's completer: every command, and ``/mode NAME`` for every mode."""
        words = [c for c in self.commands if c != "/?"]
        return words + [f"/mode {mode}" for mode in MODES]

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
        mode = self.settings.mode
        try:
            strategy = build_strategy(mode, self.llm, self.settings, templates=self.templates, history=self.history)
            result = run_streamed(self.llm, strategy, question, self.display)
        except KeyboardInterrupt:
            self.display.interrupted()
            return None
        except Exception as exc:  # noqa: BLE001 - one failed turn must not end the session
            self._report(exc)
            return None
        self.display.result(result, show_stats=self.show_stats)
        self.last = result
        self.turns.append(Turn(mode, question, result, self.model_spec))
        if mode == CHAT_MODE and result.answer is not None:
            self.history.append({"user": question, "assistant": result.answer})
        return result

    def _report(self, exc: Exception) -> None:
        """One line for the user; the traceback too under --debug."""
        if self.debug:
            self.display.newline()
            traceback.print_exc()
        self.display.problem(f"Error: {one_line(exc)}")

    # -- commands (each gets the text after the command name)
    def _mode(self, arg: str) -> None:
        if not arg:
            self.display.message(f"mode: {self.settings.mode}  (modes: {', '.join(MODES)})")
            return
        self.settings.mode = parse_mode(arg)
        self.display.message(f"mode: {self.settings.mode} ({MODES[self.settings.mode]})")

    def _shots(self, arg: str) -> None:
        if arg:
            self.settings.shots = parse_shots(arg)
        shots = "the method's default" if self.settings.shots is None else self.settings.shots
        self.display.message(f"shots: {shots}")

    def _temp(self, arg: str) -> None:
        if arg:
            self.settings.temperature = parse_temperature(arg)
        t = self.settings.temperature
        self.display.message(f"temperature: {t:g}" + (" (greedy)" if not t else ""))

    def _max(self, arg: str) -> None:
        if arg:
            self.settings.max_tokens = parse_max_tokens(arg)
        limit = "the method's default" if self.settings.max_tokens is None else self.settings.max_tokens
        self.display.message(f"max tokens: {limit}")

    def _answer(self, arg: str) -> None:
        if arg:
            self.settings.answer = parse_answer(arg)
        kind = "the method's default (number; text for react-cot-sc's fallback)" if self.settings.answer is None \
            else self.settings.answer
        self.display.message(f"answer: {kind}")

    def _model(self, arg: str) -> None:
        if not arg:
            self.display.message(f"model: {self.model_spec}")
            return
        if self.load is None:
            raise ValueError("this session cannot switch models")
        self.llm = self.load(arg)  # raises on a bad spec; the old model stays
        self.model_spec = arg
        self.display.message(f"model: {arg}")

    def _tools(self, _arg: str) -> None:
        try:
            strategy = build_strategy("react", self.llm, self.settings, templates=self.templates)
        except ImportError as exc:
            raise ValueError(f"ReAct is not available: {exc}") from None
        episode_tools = getattr(strategy, "episode_tools", None)
        tools = episode_tools() if callable(episode_tools) else getattr(strategy, "tools", None) or []
        if isinstance(tools, dict):
            tools = list(tools.values())
        if not tools:
            self.display.message("the react modes have no tools")
            return
        self.display.line("ReAct tools:", bold=True)
        for tool in tools:
            describe = getattr(tool, "describe", None)
            self.display.line("  " + (describe() if callable(describe) else str(tool)))

    def _trace(self, _arg: str) -> None:
        if self.last is None:
            self.display.message("no episode yet: ask a question first")
            return
        for title, body in trace_sections(self.last):
            self.display.line(f"--- {title} ---", fg="bright_black")
            self.display.line(body)

    def _save(self, arg: str) -> None:
        if not arg:
            raise ValueError("usage: /save FILE")
        path = Path(arg).expanduser()
        if path.parent and not path.parent.is_dir():
            raise ValueError(f"cannot save to {path}: directory {path.parent} does not exist")
        with path.open("w", encoding="utf-8") as f:
            for turn in self.turns:
                f.write(json.dumps(turn.record(), ensure_ascii=False) + "\n")
        self.display.message(f"saved {len(self.turns)} turn{'s' * (len(self.turns) != 1)} to {path}")

    def _reset(self, _arg: str) -> None:
        self.history.clear()
        self.display.message("chat history cleared")

    def _settings(self, _arg: str) -> None:
        self.display.message(f"model {self.model_spec}; {self.settings.describe()}")

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
    summary += (
        f"; {result.prompt_tokens} prompt + {result.completion_tokens} completion tokens; {result.duration:.2f} s"
    )
    sections = [("episode", summary), ("question", result.question), ("prompt", result.prompt)]
    for i, completion in enumerate(result.completions, 1):
        sections.append((f"completion {i}", completion))
    if result.program is not None:
        sections.append(("program", result.program))
    if result.execution is not None:
        sections.append(("execution", json.dumps(result.execution, indent=2, default=str)))
    if result.trajectory is not None:
        data = result_data(result)["trajectory"]
        sections.append(("trajectory", json.dumps(data, indent=2, ensure_ascii=False)))
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
@click.command("chat", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
               short_help="Chat, or ask an agent questions, interactively.")
@model_option
@click.option("--mode", type=click.Choice(list(MODES)), default=CHAT_MODE, show_default=True,
              help="How each question is answered; /mode switches.")
@shots_option
@click.option("--temperature", type=click.FloatRange(0, 5), default=0.0, show_default=True,
              help="Sampling temperature; 0 = greedy.")
@max_tokens_option
@answer_option
@prompt_format_option
@dtype_option
@templates_option
@click.option("--history-file", type=click.Path(dir_okay=False), default=None,
              help="Where the terminal keeps input history (default: in the user data directory).")
@click.pass_context
def chat(ctx, model_spec, mode, shots, temperature, max_tokens, answer, prompt_format, dtype, templates_dir,
         history_file):
    """Chat with the model, or ask questions of an agent, in an interactive loop.

    Each line is a question answered by the current mode (chat, direct, cot, pal, react, ...), streamed as it
    is worked out; lines starting with / are commands (/help lists them). Ctrl-C stops a generation,
    Ctrl-D leaves. Input that is not a terminal is read line by line, so sessions can be scripted.
    """
    from agentkit.models import load_model

    debug = bool(isinstance(ctx.obj, dict) and ctx.obj.get("debug"))
    debug = debug or os.environ.get("AGENTKIT_DEBUG", "").strip() not in ("", "0")
    templates = Templates(templates_dir) if templates_dir else None
    color = stdout_is_tty()
    display = Display(color=color, terminal=sys.stdout.isatty())

    def load(spec: str) -> LLM:
        if color:
            display.message(f"loading {spec or 'the default model'} ...")
        return load_model(spec, dtype=dtype)

    llm = load(model_spec)
    settings = Settings(mode=mode, shots=shots, temperature=temperature, max_tokens=max_tokens, answer=answer,
                        prompt_format=prompt_format)
    session = ChatSession(
        llm=llm,
        model_spec=model_spec or "default",
        settings=settings,
        templates=templates,
        display=display,
        debug=debug,
        show_stats=color,
        load=load,
    )
    if sys.stdin.isatty() and sys.stdout.isatty():
        display.message(f"agentkit chat: model {session.model_spec}, {settings.describe()}")
        display.message("Type a question; /help for commands, Ctrl-D to leave.")
        terminal_loop(session, Path(history_file).expanduser() if history_file else default_history_file())
    else:
        plain_loop(session)


__all__ = [
    "CHAT_MODE",
    "MODES",
    "ChatMode",
    "ChatSession",
    "Display",
    "Settings",
    "build_strategy",
    "chat",
    "one_line",
    "result_data",
    "run_streamed",
    "trace_sections",
]
