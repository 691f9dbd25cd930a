"""The tool agent: ReAct's loop (Yao et al., 2022) over native tool calls instead of ``Action n: Tool[argument]``.

The model gets the question in a chat with the tools as JSON-schema functions (``Tool.function()``). Each reply
carries zero or more calls; each call runs (the calls of one reply run side by side), and each result goes back as a
``tool`` message answering its call; this repeats until the model calls ``Finish`` or the step limit. The tools are
ReAct's: Wikipedia ``Search`` / ``Lookup`` (the offline corpus by default), any ``@tool`` functions or MCP tools
(``tools=``, ``--mcp``), and ``Finish`` last. The loop is :meth:`ToolAgent.episode`.

How the calls travel depends on the model. A server with native tool calls (``native_tools``) takes the tools and
returns ``tool_calls``; every other chat model (the embedded engine, the scripted model) gets them through its own
chat template and writes its calls in its family's syntax, which ``agentkit.toolcalls`` reads back (the episode
runner does that, so many episodes still batch on one engine). With ``constrain=True`` a call the model opens is
held to the tool's schema, so it always parses; ``tool_format`` names the call format where the template's own
markers do not give it away.

The records are ReAct's (:class:`~agentkit.strategies.react.Trajectory`, one :class:`~agentkit.strategies.react.Step`
per call: the reply's text as its thought, the tool's name as its action, the arguments as JSON as its argument) and
so is recovery. A reply without a call, or whose calls cannot be read, is first re-asked (the reply is continued
with the format's call opener, the paper's "Action n:" trick; for a format without one, a call is required), then
answered with a corrective message. An unknown tool, or arguments that do not fit the tool's schema (checked by
``Tool.validate``, as ``Tool.invoke`` does), is answered in the call's tool message. Running out of steps is a
recorded ``forced_finish``.

Deliberately not here: exemplars (few-shot tool calls), the text protocol (``react``), a fallback strategy, and
rendering or parsing of any call syntax (``agentkit.toolcalls``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any, ClassVar

from agentkit import toolcalls
from agentkit.errors import UsageError
from agentkit.llm import LLM, Chat, Completion, GenerationConfig, Message, ToolCall
from agentkit.prompting import Templates
from agentkit.runtime import Call, Episode, Event, Generate
from agentkit.strategies.base import Strategy
from agentkit.strategies.chat import END_OF_TURN
from agentkit.strategies.react import ReAct, Step, Trajectory, _one_line
from agentkit.tools.base import Tool, ToolError

__all__ = ["ToolAgent"]


class ToolAgent(Strategy):
    """ReAct over native tool calls, with Wikipedia (offline corpus by default) plus custom or MCP tools.

    ``react``: ReAct's ``tools``, ``corpus``, ``max_steps``, ``sentences`` and ``reask``, with its defaults.
    ``parallel``: whether a reply may carry several calls (``Chat.parallel_tool_calls``). ``tool_format``: the call
    format by name (see ``agentkit.toolcalls.FORMATS``); None reads it from the model's chat template.
    """

    name: ClassVar[str] = "tools"
    default_config: ClassVar[GenerationConfig] = GenerationConfig(max_new_tokens=256, stop=END_OF_TURN)
    max_observation_chars: ClassVar[int] = ReAct.max_observation_chars

    def __init__(
        self,
        llm: LLM | None = None,
        *,
        parallel: bool = True,
        tool_format: str | None = None,
        shots: int = 0,
        config: GenerationConfig | None = None,
        templates: Templates | None = None,
        prompt_format: str = "auto",
        constrain: bool = False,
        **react: Any,
    ):
        if prompt_format == "text":
            raise UsageError(
                "method tools calls tools in chat messages, but the prompt format is text: pass --prompt-format chat "
                "(a server's prompts are text unless asked for chat), or use react"
            )
        if llm is not None:
            _check_chat(llm)
        if tool_format is not None:
            toolcalls.call_format(None, tool_format)  # an unknown name fails here
        super().__init__(
            llm, shots=shots, config=config, templates=templates, prompt_format="auto", constrain=constrain
        )
        if "fallback" in react:
            raise TypeError("ToolAgent takes no fallback (ReAct's fallback answers for the text protocol only)")
        # ReAct takes and checks its options (the tools, the step limit), and owns the Wikipedia tools shared here
        self._react = ReAct(llm, shots=0, **react)
        self.custom_tools, self.corpus, self.reask = self._react.custom_tools, self._react.corpus, self._react.reask
        self.max_steps, self.parallel, self.tool_format = self._react.max_steps, parallel, tool_format

    def episode_tools(self) -> list[Tool]:
        """Fresh tools for one episode: Search/Lookup share that episode's current page; Finish comes last."""
        return self._react.episode_tools()

    def prompt(self, question: str, tools: Sequence[Tool] | None = None) -> Chat:
        """The instructions and the question, with the tools as functions the model may call."""
        _check_chat(self.llm)
        tools = self.episode_tools() if tools is None else tools
        chat = self.templates.chat(
            "tools",
            question=question,
            exemplars=[],
            tools=[{"name": t.name, "description": t.description} for t in tools],
        )
        functions = tuple({"type": "function", "function": t.function()} for t in tools)
        return chat.model_copy(update={"tools": functions, "parallel_tool_calls": self.parallel})

    # The loop: each turn the model replies with calls, and the chat grows by that reply and the calls' results.
    def episode(self, question: str) -> Episode:
        tools = self.episode_tools()
        by_name = {t.name.lower(): t for t in tools}
        chat = first = self.prompt(question, tools)
        completions: list[Completion] = []
        trajectory = Trajectory(question=question, max_steps=self.max_steps)
        for n in range(1, self.max_steps + 1):
            reply, reasked = yield from self._reply(chat, completions)
            calls = list(reply.tool_calls)
            finish = next((i for i, c in enumerate(calls) if getattr(_tool(by_name, c), "terminal", False)), None)
            if finish is not None:
                del calls[finish + 1 :]  # the calls after Finish are not run
            steps = [
                Step(n=n, action=c.name, argument=json.dumps(c.arguments, ensure_ascii=False), raw=reply.text)
                for c in calls
            ]
            trouble = "; ".join(reply.tool_call_errors) or ("" if calls else "no tool call")
            if trouble and finish is None:  # no call, or calls that could not be read
                steps.append(Step(n=n, status="malformed", error=trouble, raw=reply.text))
            for step in steps:
                step.reasked, step.cut = reasked, reply.finish_reason == "length"
            steps[0].thought = " ".join(reply.text.split())
            steps[0].prompt_tokens = sum(c.prompt_tokens for c in completions[-1 - reasked :])
            steps[0].completion_tokens = sum(c.completion_tokens for c in completions[-1 - reasked :])
            trajectory.steps += steps
            yield Event("thought", steps[0].thought, {"step": n})
            observations = yield from self._run(calls, steps, by_name, n)
            if finish is not None and steps[finish].status == "finish":
                trajectory.answer, trajectory.finished = steps[finish].argument, True
                yield Event("answer", trajectory.answer or "", {"step": n})
                return trajectory.result(self.name, completions, self.rendered(first), "Finish call")
            malformed = steps[-1] if steps[-1].status == "malformed" else None
            chat = self._next_chat(chat, reply.text, calls, observations, malformed, tools)
        trajectory.forced_finish = True
        return trajectory.result(self.name, completions, self.rendered(first), "Finish call")

    def _reply(self, chat: Chat, completions: list[Completion]) -> Any:
        """One reply; re-asked once, continued from the call opener, when it has no call that could be read.
        Returns the reply (the re-ask's calls under the first reply's text) and whether it was re-asked."""
        completion: Completion = yield self._generate(chat)
        completions.append(completion)
        if completion.tool_calls or not self.reask:
            return completion, False
        fmt = None if self.llm.native_tools else toolcalls.call_format(self.llm, self.tool_format)
        if fmt is not None and fmt.opener:
            head = completion.text.rstrip()
            again_chat = chat.extend(f"{head}\n{fmt.opener}" if head else fmt.opener)
        else:
            again_chat = chat.model_copy(update={"tool_choice": "required"})
        again: Completion = yield self._generate(again_chat)
        completions.append(again)
        errors = list(again.tool_call_errors)
        if not again.tool_calls:
            before, after = ("; ".join(c.tool_call_errors) or "no tool call" for c in (completion, again))
            errors = [f"{before}; after re-asking: {after}"]
        update = {"tool_calls": again.tool_calls, "tool_call_errors": errors, "finish_reason": again.finish_reason}
        return completion.model_copy(update=update), True

    def _generate(self, chat: Chat) -> Generate:
        return Generate(chat, self.config, tool_format=self.tool_format, constrain_calls=self.constrain)

    def _run(self, calls: list[ToolCall], steps: list[Step], by_name: dict[str, Tool], n: int) -> Any:
        """Run the reply's calls (side by side) and fill their steps; returns each call's observation."""
        observations: list[str] = [""] * len(calls)
        runs: list[tuple[int, Tool, dict[str, Any]]] = []
        for i, (call, step) in enumerate(zip(calls, steps, strict=False)):
            tool = _tool(by_name, call)
            if tool is None:
                step.status, step.error = "unknown_tool", f"unknown tool {call.name!r}"
                observations[i] = f"There is no tool {call.name}. {self._valid(by_name)}"
                continue
            step.action = tool.name
            yield Event("action", f"{tool.name}({step.argument})", {"step": n})
            try:
                arguments = tool.validate(call.arguments)
            except ToolError as exc:
                step.status, step.error = "bad_arguments", str(exc)
                observations[i] = f"{exc}. The arguments must fit {tool.name}'s schema: {json.dumps(tool.json_schema)}"
                continue
            if tool.terminal:
                answer = " ".join(str(next(iter(arguments.values()), "")).split())
                if answer:
                    step.status, step.argument, step.observation = "finish", answer, None
                    continue
                observations[i] = f"{tool.name} needs an answer."
            else:
                runs.append((i, tool, arguments))
        started = time.perf_counter()
        results = (yield [Call(tool.invoke, arguments) for _, tool, arguments in runs]) if runs else []
        for (i, _, _), result in zip(runs, results, strict=True):
            observations[i] = result
            steps[i].tool_seconds = time.perf_counter() - started
        for i, step in enumerate(steps[: len(calls)]):
            if step.status != "finish":
                step.observation = observations[i] = _one_line(observations[i], self.max_observation_chars)
                yield Event("observation", step.observation, {"step": n})
        return observations

    def _next_chat(
        self,
        chat: Chat,
        text: str,
        calls: list[ToolCall],
        observations: list[str],
        malformed: Step | None,
        tools: Sequence[Tool],
    ) -> Chat:
        """The chat with the reply and the calls' results added; a reply that went wrong gets a user message."""
        messages = [*chat.messages, Message(role="assistant", content=text.strip(), tool_calls=tuple(calls))]
        messages += [
            Message(role="tool", content=observation, tool_call_id=call.id, name=call.name)
            for call, observation in zip(calls, observations, strict=True)
        ]
        if malformed is not None:
            malformed.observation = f"Invalid tool call ({malformed.error}). {self._valid(tools)}"
            messages.append(Message(role="user", content=malformed.observation))
        return chat.model_copy(update={"messages": tuple(messages)})

    @staticmethod
    def _valid(tools: Sequence[Tool] | dict[str, Tool]) -> str:
        listed = tools.values() if isinstance(tools, dict) else tools
        return "Call one of the tools: " + ", ".join(t.name for t in listed) + "."

    def rendered(self, chat: Chat) -> str:
        """The text the model sees for ``chat`` (as the server renders it, for one with native tool calls)."""
        if self.llm.native_tools:
            return self.llm.render(chat)
        return toolcalls.lower(self.llm, chat, self.config, format=self.tool_format, constrain=False)[0]

    def __repr__(self) -> str:
        return f"ToolAgent(max_steps={self.max_steps}, corpus={self.corpus!r}, tool_format={self.tool_format!r})"


def _tool(by_name: dict[str, Tool], call: ToolCall) -> Tool | None:
    return by_name.get(call.name.lower())


def _check_chat(llm: LLM) -> None:
    if not llm.takes_chat:
        raise UsageError(
            f"method tools needs a chat model: {llm.name} has no chat template; use an instruct model or a server "
            "(or method react, whose tool calls are text)"
        )
