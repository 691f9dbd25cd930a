"""How the command line shows work: an episode as it happens (tokens, steps, the answer) and errors as one line.

``Display`` prints what ``run_streamed`` feeds it: the model's tokens as they are generated (dimmed), the steps
a strategy reports (a ReAct observation, the result of a PAL program), then the answer on a labelled line.
Colours and the "..." wait marker only on a terminal. ``run`` and ``chat`` share it. ``show_log`` puts the
library's log lines (a server client's retries, ``agentkit serve``'s requests and failures) on stderr, above any
progress bar.

Deliberately not here: what a step means (the strategies' events) and any command.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Callable
from typing import Any

import click

from agentkit.llm import LLM
from agentkit.result import Result
from agentkit.runtime import EpisodeInfo, Event, run_episode
from agentkit.strategies.base import Strategy
from agentkit.strategies.chat import ChatStrategy
from agentkit.strategies.self_consistency import SelfConsistency

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
        if result.method == ChatStrategy.name and result.answer is not None:
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
            self.message(
                f"({result.duration:.1f} s; {result.completion_tokens} tokens generated, "
                f"{result.prompt_tokens} prompt tokens)"
            )


class _LogLines(logging.Handler):
    """Log records as lines on stderr; printed through tqdm while a progress bar is up, so the bar stays whole."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:  # noqa: BLE001 - logging's own convention: report, never raise
            self.handleError(record)
            return
        tqdm = sys.modules.get("tqdm")
        if tqdm is not None:
            tqdm.tqdm.write(text, file=sys.stderr)
        else:
            click.echo(text, err=True)


def show_log(level: int = logging.WARNING, name: str = "agentkit") -> None:
    """Show the records of logger ``name`` (and below) from ``level`` on stderr, with the time. One handler, on the
    ``agentkit`` logger, prints them all, so a record is never shown twice."""
    logging.getLogger(name).setLevel(level)
    root = logging.getLogger("agentkit")
    if not any(isinstance(h, _LogLines) for h in root.handlers):
        handler = _LogLines()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
        root.addHandler(handler)


def stdout_is_tty() -> bool:
    """Colour and spinners only for a person: a terminal, and no NO_COLOR in the environment."""
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


class _Watched(LLM):
    """Wraps a model so the display learns where each streamed generation starts (and streams get closed)."""

    def __init__(self, inner: LLM, on_start: Callable[[str], None]):
        self.inner = inner
        self.name = inner.name
        self.chat_template, self.special_tokens = inner.chat_template, inner.special_tokens  # so render() agrees
        self.native_tools = inner.native_tools  # a server's tool calls stay the server's
        self.on_start = on_start

    @property
    def takes_chat(self) -> bool:
        return self.inner.takes_chat

    def generate(self, prompts, config=None):
        return self.inner.generate(prompts, config)

    def render(self, prompt):
        return self.inner.render(prompt)  # the model's own renderer (the engine's is the tokenizer's)

    def stream(self, prompt, config=None):
        self.on_start(self.inner.render(prompt))  # the display reads the text's end ("Thought 2:", a fence)
        inner = self.inner.stream(prompt, config)
        try:
            return (yield from inner)
        finally:
            inner.close()  # an interrupted generation lets the engine clean up

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)


def run_streamed(llm: LLM, strategy: Strategy, question: str, display: Display | None, **options: Any) -> Result:
    """Answer ``question`` with ``strategy``; with a ``display``, stream tokens and steps to it. ``options``
    (``budget``, ``cache``, ``trace``) go to ``run_episode``."""
    info = EpisodeInfo(strategy.name, question)
    if display is None:
        return run_episode(llm, strategy.episode(question), info=info, **options)
    samples = strategy.k if isinstance(strategy, SelfConsistency) else 0
    display.begin_episode(samples=samples, dim_tokens=not isinstance(strategy, ChatStrategy))
    watched = _Watched(llm, display.begin_generation)
    return run_episode(
        watched, strategy.episode(question), on_event=display.event, on_token=display.token, info=info, **options
    )


def debug_enabled(ctx: click.Context | None = None) -> bool:
    """``--debug`` or ``AGENTKIT_DEBUG=1``: show tracebacks instead of one-line errors."""
    if os.environ.get("AGENTKIT_DEBUG", "").strip() not in ("", "0"):
        return True
    root = ctx.find_root() if ctx is not None else None
    return bool(root is not None and isinstance(root.obj, dict) and root.obj.get("debug"))


def one_line(exc: BaseException) -> str:
    """An exception as one readable line."""
    if isinstance(exc, OSError) and exc.strerror and exc.filename:
        return f"{exc.strerror}: {exc.filename}"
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
