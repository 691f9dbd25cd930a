"""ReAct: reasoning and acting in turn (Yao et al., 2022, "ReAct: Synergizing Reasoning and Acting in Language
Models").

The model writes ``Thought n: ...`` and ``Action n: Tool[argument]``; the strategy runs the tool and appends
``Observation n: ...``; this repeats until ``Finish[answer]`` or the step limit. The tools are the paper's
Wikipedia actions (``Search``, ``Lookup``, ``Finish``; see ``agentkit.tools.wikipedia``) plus any custom
``@tool`` functions. The loop is :meth:`ReAct.episode`; reading one step of model text is :func:`parse_step`.

Small models are sloppy, so the parser is lenient (missing or wrong step numbers, any case, ``Act`` for
``Action``, the action on the thought's line, text after the bracket, quotes, a missing ``]`` at the very end)
and recovery is explicit: a missing or malformed action is first re-asked (the prompt gets ``Action n:`` and
the model writes just the action, the paper's trick), then answered with a corrective observation listing the
valid forms. An unknown tool is an observation too. Running out of steps is a recorded forced finish
(``failure="forced_finish"``), or, with ``fallback=SelfConsistency(CoT(...))``, an answer by CoT
self-consistency (the paper's ReAct -> CoT-SC). Every step is kept in a :class:`Trajectory` (JSON-exportable).

For an instruct model (chat prompt format) the instructions are the system message, the exemplars user / assistant
turns, and the steps one assistant reply that the model keeps extending: the same text, stops and recovery.

Constrained (``constrain=True``), a step's thought stays free text (without brackets, and without what the parser
takes for the end of a step), but the step cannot end before ``Action n: Tool[argument]`` names one of the
episode's tools with an argument its ``Tool.convert`` reads; the re-ask's reply is constrained to the action.

Deliberately not here: the paper's CoT-SC -> ReAct direction, answer normalisation for scoring (the harness
does that), and native (JSON) tool calls: the ``tools`` method, ``agentkit.strategies.tools``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field

from agentkit.llm import LLM, Completion, Constraint, GenerationConfig, Prompt, extend
from agentkit.prompting import Templates
from agentkit.result import Result
from agentkit.runtime import Call, Episode, Event, Generate
from agentkit.strategies.base import Strategy
from agentkit.strategies.constraints import ANY, STEP_CUTS, either, reply, rx, tool_call
from agentkit.tools.base import Tool, strip_quotes

__all__ = ["ParsedStep", "ReAct", "Step", "Trajectory", "parse_action", "parse_step"]


# ------------------------------------------------------------------ the record
class Step(BaseModel):
    """One Thought / Action / Observation step, with the raw model text behind it."""

    n: int
    thought: str = ""
    action: str | None = None  # tool name as the tool spells it ("Search"), or as written if unknown
    argument: str | None = None
    observation: str | None = None  # None only for the Finish step
    status: Literal["ok", "finish", "malformed", "unknown_tool", "bad_arguments"] = "ok"  # the last: tool agent's
    reasked: bool = False  # the action came from (or was tried with) the "Action n:" re-ask
    error: str | None = None  # why the model text was not a valid action
    raw: str = ""  # the model's text for this step
    reask_raw: str | None = None  # the model's answer to the "Action n:" re-ask
    cut: bool = False  # max_new_tokens cut the step's last completion (the re-ask's, if it was re-asked)
    tool_seconds: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Trajectory(BaseModel):
    """A whole ReAct episode; ``model_dump_json()`` exports it."""

    question: str
    max_steps: int
    steps: list[Step] = Field(default_factory=list)
    answer: str | None = None
    finished: bool = False  # the model called Finish[...]
    forced_finish: bool = False  # the step limit ended the episode
    fallback: dict[str, Any] | None = None  # what the fallback strategy answered, if it ran

    def result(self, method: str, completions: Sequence[Completion], prompt: str, finish: str) -> Result:
        """The episode's Result: the answer, or a forced finish (no ``finish`` within the step limit)."""
        failure = error = None
        if self.forced_finish:
            failure, error = "forced_finish", f"no {finish} within {self.max_steps} steps"
        return Result.from_completions(
            method,
            self.question,
            completions,
            answer=self.answer,
            failure=failure,
            error=error,
            prompt=prompt,
            trajectory=self,
        )

    def scratchpad(self) -> str:
        """The steps in the paper's text format."""
        lines = []
        for s in self.steps:
            lines.append(f"Thought {s.n}: {s.thought}")
            lines.append(f"Action {s.n}: {s.action}[{s.argument}]" if s.action else f"Action {s.n}: (invalid)")
            if s.observation is not None:
                lines.append(f"Observation {s.n}: {s.observation}")
        return "\n".join(lines)


# ------------------------------------------------------------------ the parser
@dataclass(frozen=True)
class ParsedStep:
    """What :func:`parse_step` read: a thought and either an action (``name``, ``argument``) or an ``error``.

    ``start``/``end`` delimit the action in the text: the strategy keeps ``text[:end]`` in the prompt, and on a
    re-ask only the thought, ``text[:start]``.
    """

    thought: str
    name: str | None = None
    argument: str | None = None
    start: int = 0
    end: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.name is not None


# "Action 2:", "action:", "Act 1 -", "ACTION 3." ...; without a number or colon a label only counts before a call
_LABEL = re.compile(r"(?<![\w])(?:action|act)(?![\w])\s*(\d+)?\s*([:.\-)]|\uff1a)?[ \t]*", re.IGNORECASE)
_CALL_START = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)[ \t]*\[")
_BARE_CALL_LINE = re.compile(r"^[ \t]*([A-Za-z_][A-Za-z0-9_]*)[ \t]*\[", re.MULTILINE)
_CUT = re.compile(r"(?:\bobservation\s*\d*\s*:|\n\s*question\s*:)", re.IGNORECASE)
_TRAILING_LABEL = re.compile(r"(?<![\w])(?:action|act)\s*\d*\s*[:\uff1a]?\s*$", re.IGNORECASE)
_THOUGHT_LABEL = re.compile(r"^\s*thought\s*(?:\d+\s*[:.\-]?|[:.\-])\s*", re.IGNORECASE)


def parse_step(text: str) -> ParsedStep:
    """Read one step of model output (what follows ``Thought n:``) into a thought and an action."""
    cut = _CUT.search(text)
    body = text[: cut.start()] if cut else text
    labels = list(_LABEL.finditer(body))
    for label in labels:  # the first label followed by a call is the action
        call = _CALL_START.match(body, label.end())
        if call is not None:
            return _finish_call(body, call, _clean_thought(body[: label.start()]), label.start())
    bare = _BARE_CALL_LINE.search(body)
    if bare is not None:  # "Search[X]" on a line of its own, without the "Action n:" label
        call = _CALL_START.match(body, bare.start(1))
        assert call is not None
        return _finish_call(body, call, _clean_thought(body[: bare.start()]), bare.start())
    for label in labels:  # "Action 1: search for X": a label (with a number or a colon) but no call
        if label.group(1) or label.group(2) in (":", "\uff1a"):
            line_end = body.find("\n", label.end())
            line_end = len(body) if line_end == -1 else line_end
            rest = body[label.end() : line_end].strip()
            thought = _clean_thought(body[: label.start()])
            return ParsedStep(thought, error=_describe_bad_action(rest), start=label.start(), end=line_end)
    end = len(body.rstrip())
    return ParsedStep(_clean_thought(body), error="no action", start=end, end=end)


def parse_action(text: str) -> ParsedStep:
    """Read just an action (the answer to the ``Action n:`` re-ask), with or without a label."""
    parsed = parse_step(text)
    if parsed.ok or parsed.error != "no action":
        return parsed
    offset = len(text) - len(text.lstrip())
    call = _CALL_START.match(text, offset)
    if call is None:
        end = len(text.rstrip())
        return ParsedStep("", error=_describe_bad_action(text.strip().split("\n", 1)[0]), start=offset, end=end)
    return _finish_call(text, call, "", offset)


def _finish_call(body: str, call: re.Match[str], thought: str, start: int) -> ParsedStep:
    """Match the bracket that opens at ``call.end() - 1``; nested brackets are allowed."""
    depth, i = 1, call.end()
    while i < len(body) and depth:
        depth += {"[": 1, "]": -1}.get(body[i], 0)
        i += 1
    if depth:  # no closing bracket: fine at the very end of the text, not before more text
        line_end = body.find("\n", call.end())
        if line_end != -1 and body[line_end:].strip():
            bad = body[call.start() : line_end].strip()
            return ParsedStep(thought, error=f"missing ']' in {bad!r}", start=start, end=line_end)
        argument, end = body[call.end() :].strip(), len(body.rstrip())
    else:
        argument, end = body[call.end() : i - 1], i
    argument = strip_quotes(argument.strip())
    return ParsedStep(thought, name=call.group(1), argument=argument, start=start, end=end)


def _clean_thought(text: str) -> str:
    text = _THOUGHT_LABEL.sub("", text.strip(), count=1)
    text = _TRAILING_LABEL.sub("", text)  # "Action 1:" alone on the line before a bare call
    return " ".join(text.split())


def _describe_bad_action(rest: str) -> str:
    if not rest:
        return "empty action"
    if re.match(r"[A-Za-z_]\w*\s*\(", rest):
        return f"use square brackets, not parentheses: {rest!r}"
    return f"not of the form Tool[argument]: {rest!r}"


# ------------------------------------------------------------------ the strategy
class ReAct(Strategy):
    """ReAct over Wikipedia (offline corpus by default) plus custom tools.

    ``corpus``: ``"offline"`` (default), ``"live"``, a JSONL path, a ``WikiBackend``, or ``None`` for no
    Wikipedia tools. ``tools``: extra :class:`~agentkit.tools.base.Tool` objects (``@tool`` functions).
    ``fallback``: a strategy (normally ``SelfConsistency(CoT(...))``) that answers when ReAct runs out of steps.
    """

    name: ClassVar[str] = "react"
    default_config: ClassVar[GenerationConfig] = GenerationConfig(max_new_tokens=128)
    reask_tokens: ClassVar[int] = 48
    max_observation_chars: ClassVar[int] = 2000  # longer tool output is cut (it goes into every later prompt)

    def __init__(
        self,
        llm: LLM | None = None,
        *,
        tools: Sequence[Tool] = (),
        corpus: Any = "offline",
        max_steps: int = 7,
        fallback: Strategy | None = None,
        sentences: int = 5,
        reask: bool = True,
        shots: int = 4,
        config: GenerationConfig | None = None,
        templates: Templates | None = None,
        prompt_format: str = "auto",
        constrain: bool = False,
    ):
        super().__init__(
            llm, shots=shots, config=config, templates=templates, prompt_format=prompt_format, constrain=constrain
        )
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        for t in tools:
            if not isinstance(t, Tool):
                raise TypeError(f"tools must be Tool objects (decorate the function with @tool), got {t!r}")
        reserved = {"search", "lookup", "finish"} if corpus is not None else {"finish"}
        names = [t.name.lower() for t in tools]
        clash = sorted({n for n in names if n in reserved or names.count(n) > 1})
        if clash:
            raise ValueError(f"tool names must be unique and not Search/Lookup/Finish: {clash}")
        self.custom_tools = list(tools)
        self.corpus = corpus
        self.max_steps = max_steps
        self.fallback = fallback
        self.sentences = sentences
        self.reask = reask
        if fallback is not None:
            self.name = f"react-{fallback.name}"  # type: ignore[misc]  # "react-cot-sc"
        # The stop strings end a step before the model can invent its own observation or next question.
        stops = ["\nObservation", "Observation:", "\nQuestion:"] + [
            f"Observation {i}:" for i in range(1, max_steps + 1)
        ]
        self.config = self.config.model_copy(update={"stop": list(dict.fromkeys([*self.config.stop, *stops]))})
        self.reask_config = self.config.model_copy(
            update={
                "stop": ["\n", *self.config.stop],
                "max_new_tokens": min(self.reask_tokens, self.config.max_new_tokens),
            }
        )
        self._backend: Any = None

    @property
    def backend(self) -> Any:
        """The Wikipedia backend, made on first use."""
        if self._backend is None and self.corpus is not None:
            from agentkit.tools.wikipedia import make_backend

            self._backend = make_backend(self.corpus)
        return self._backend

    def episode_tools(self) -> list[Tool]:
        """Fresh tools for one episode: Search/Lookup share that episode's current page; Finish comes last."""
        from agentkit.tools.wikipedia import WikiSession, finish_tool

        wiki = WikiSession(self.backend, sentences=self.sentences).tools() if self.corpus is not None else []
        return [*wiki, *self.custom_tools, finish_tool()]

    def prompt(self, question: str, tools: Sequence[Tool] | None = None) -> Prompt:
        """The instruction, the exemplars and the question (the loop appends ``Thought 1:``)."""
        tools = self.episode_tools() if tools is None else tools
        prompt = self.templates.prompt(
            "react",
            self.resolved_format,
            tools=[{"name": t.name, "signature": t.signature, "description": t.description} for t in tools],
            exemplars=self.exemplars(tools),
            question=question,
        )
        return prompt.rstrip("\n") + "\n" if isinstance(prompt, str) else prompt

    def exemplars(self, tools: Sequence[Tool]) -> list[dict[str, Any]]:
        """The first ``shots`` exemplars of ``react.jsonl`` whose every action calls one of ``tools``.

        The shipped ones call Search and Lookup: an agent without Wikipedia (``corpus=None``) gets none of them,
        only those of a ``react.jsonl`` of its own in ``templates`` (see docs/custom-tools.md)."""
        names = {t.name.lower() for t in tools}
        pool = self.templates.exemplars("react", self.templates.count("react")) if self.shots else []
        fitting = [ex for ex in pool if all(_called(step.get("action")) in names for step in ex.get("steps") or [])]
        return fitting[: self.shots]

    # The ReAct loop. Each prompt extends the previous prompt + completion (in chat form, the assistant's reply),
    # so the engine's prefix cache hits.
    def episode(self, question: str) -> Episode:
        tools = self.episode_tools()
        by_name = {t.name.lower(): t for t in tools}
        prompt = extend(self.prompt(question, tools), "Thought 1:")
        first_prompt, completions = prompt, []
        trajectory = Trajectory(question=question, max_steps=self.max_steps)
        calls = either(tool_call(t) for t in tools)
        for n in range(1, self.max_steps + 1):
            step, kept = yield from self._think_and_act(prompt, n, completions, calls)
            trajectory.steps.append(step)
            yield Event("thought", step.thought, {"step": n})
            tool = by_name.get((step.action or "").lower()) if step.status == "ok" else None
            if tool is not None:
                step.action = tool.name
                yield Event("action", f"{tool.name}[{step.argument}]", {"step": n})
                if tool.terminal and step.argument:
                    step.status, trajectory.answer, trajectory.finished = "finish", step.argument, True
                    yield Event("answer", step.argument, {"step": n})
                    return self._result(first_prompt, completions, trajectory)
                if tool.terminal:
                    step.observation = f"{tool.name} needs an answer inside the brackets: {tool.signature}."
                else:
                    started = time.perf_counter()
                    step.observation = yield Call(tool.invoke, step.argument or "")
                    step.tool_seconds = time.perf_counter() - started
            elif step.status == "ok":  # well-formed, but no such tool
                step.status, step.error = "unknown_tool", f"unknown tool {step.action!r}"
                step.observation = f"There is no action {step.action}[...]. {self._valid_forms(tools)}"
            else:
                step.observation = f"Invalid action ({step.error}). {self._valid_forms(tools)}"
            step.observation = _one_line(step.observation, self.max_observation_chars)
            yield Event("observation", step.observation, {"step": n})
            prompt = extend(prompt, f"{kept}\nObservation {n}: {step.observation}\nThought {n + 1}:")
        trajectory.forced_finish = True
        fallback = None
        if self.fallback is not None:
            fallback = yield from self.fallback.episode(question)
            trajectory.fallback = {
                "method": fallback.method,
                "answer": fallback.answer,
                "failure": fallback.failure,
                "votes": fallback.votes,
            }
            trajectory.answer = fallback.answer
        return self._result(first_prompt, completions, trajectory, fallback)

    def _think_and_act(self, prompt: Prompt, n: int, completions: list[Completion], calls: str) -> Any:
        """Generate step ``n``; re-ask for the action if it is missing or malformed. ``calls``: the regex of the
        episode's tool calls (for the constraints).

        Returns the Step and the text to keep in the prompt (the thought and action, nothing after them).
        """
        completion: Completion = yield Generate(prompt, self._constrained(self.config, calls, n))
        completions.append(completion)
        parsed = parse_step(completion.text)
        step = Step(
            n=n,
            thought=parsed.thought,
            raw=completion.text,
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
        )
        if not parsed.ok and self.reask:
            # The paper's trick: keep the thought, write "Action n:" and let the model give just the action.
            kept = completion.text[: parsed.start].rstrip() + f"\nAction {n}:"
            again: Completion = yield Generate(extend(prompt, kept), self._constrained(self.reask_config, calls))
            completions.append(again)
            step.reasked, step.reask_raw = True, again.text
            step.prompt_tokens += again.prompt_tokens
            step.completion_tokens += again.completion_tokens
            retry = parse_action(again.text)
            if retry.ok:
                parsed = ParsedStep(parsed.thought, retry.name, retry.argument)
                kept += again.text[: retry.end].rstrip()
            else:
                parsed = ParsedStep(parsed.thought, error=f"{parsed.error}; after re-asking: {retry.error}")
                kept = " ".join([kept, *again.text[: retry.end].split()])
        else:
            kept = completion.text[: parsed.end].rstrip()
        step.action, step.argument, step.error = parsed.name, parsed.argument, parsed.error
        step.status = "ok" if parsed.ok else "malformed"
        step.cut = completions[-1].finish_reason == "length"
        return step, kept

    def _constrained(self, config: GenerationConfig, calls: str, n: int | None = None) -> GenerationConfig:
        """``config``, with the action constraint when the strategy is constrained."""
        if not self.constrain:
            return config
        return config.model_copy(update={"constraint": self.action_constraint(config, calls, n)})

    @staticmethod
    def action_constraint(config: GenerationConfig, calls: str, n: int | None = None) -> Constraint:
        """Step ``n``: a thought that holds no bracket (so no call before the action) and nothing the parser cuts
        a step at, then ``Action n: `` and one of ``calls``; what follows the bracket is free, as for the parser.
        ``n=None``: the re-ask's reply, which is the call alone."""
        head = "[ \\t]*" if n is None else f"([^\\[]*\\s)?{rx(f'Action {n}:')} "
        return reply(f"/{head}{calls}/", config.stop, avoid=STEP_CUTS, rest=ANY)

    @staticmethod
    def _valid_forms(tools: Sequence[Tool]) -> str:
        return "Valid actions are " + ", ".join(t.signature for t in tools) + "."

    def _result(
        self,
        prompt: Prompt,
        completions: list[Completion],
        trajectory: Trajectory,
        fallback: Result | None = None,
    ) -> Result:
        result = trajectory.result(self.name, completions, self.llm.render(prompt), "Finish[...]")
        if fallback is not None:  # it answered for the forced finish; its model work is part of this episode's
            why = f"{result.error}; fallback {fallback.method}: {fallback.error}"
            result.failure, result.error = fallback.failure, None if fallback.failure is None else why
            result.completions += fallback.completions
            result.finish_reasons += fallback.finish_reasons
            result.prompt_tokens += fallback.prompt_tokens
            result.completion_tokens += fallback.completion_tokens
            result.votes, result.samples = fallback.votes, fallback.samples
        return result

    def __repr__(self) -> str:
        return (
            f"ReAct(shots={self.shots}, max_steps={self.max_steps}, corpus={self.corpus!r}, fallback={self.fallback!r})"
        )


def _called(action: Any) -> str | None:
    """The tool an exemplar's action calls (``"Search[Paris]"`` -> ``"search"``), or None."""
    call = _CALL_START.match(action) if isinstance(action, str) else None
    return call.group(1).lower() if call else None


def _one_line(observation: object, limit: int) -> str:
    text = " ".join(str(observation).split()) or "(no result)"
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "\u2026"
