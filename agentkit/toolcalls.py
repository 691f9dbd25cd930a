"""Native tool calls for models that write them as text: each family's call format, and the lowering of a ``Chat``
with ``tools`` to the text prompt and grammar constraint a text model is sent, and the lifting of its reply back.

A tool-calling chat (``Chat.tools``, ``tool_choice``, ``parallel_tool_calls``) means one thing to a server with
native tool calls (it takes the tools and returns ``tool_calls``) and another to a model that only writes text:
there the chat template renders the tools, the model writes its calls in its family's syntax, and someone must
read them. That someone is this module, for the in-process engine, the scripted model and any backend whose
``native_tools`` is False (the episode runner calls :func:`lower` and :func:`lift` around such a model call):

- :func:`lower` renders the chat with the model's chat template *and the tools* (``render_chat`` passes them to
  the template as Hugging Face's ``apply_chat_template(tools=...)`` does) and adds the call constraint: free text
  until the model opens a call (``Constraint.after`` the opening marker) for ``tool_choice="auto"``, a call at
  once for ``"required"`` or a named function, no constraint for ``"none"``; one call when
  ``parallel_tool_calls`` is False. The call's JSON is the tool's schema, inlined with llguidance's ``%json``,
  so a constrained call always parses and its arguments always fit.
- :func:`lift` parses the reply into ``Completion.text`` (what the model said before its calls),
  ``Completion.tool_calls`` (ids ``call_0``, ``call_1``, ...) and ``Completion.tool_call_errors`` (calls the model
  opened but that could not be read: a model's mistake is data, never an exception).
- :func:`generate` does both around ``llm.generate`` for Python users.

The formats (:data:`FORMATS`), each as its model family writes calls (their models' chat templates and vLLM's tool
parsers, ``vllm/entrypoints/openai/tool_parsers``, were the reference):

- ``hermes`` (Hermes 2 Pro, Qwen 2.5 / 3, SmolLM3): ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``,
  one block per call;
- ``llama3`` (Llama 3.1 / 3.2 JSON tool calling): ``{"name": ..., "parameters": {...}}``, several joined by ``; ``,
  optionally after ``<|python_tag|>``;
- ``mistral``: ``[TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]`` (read too: the v11 tokenizer's
  ``[TOOL_CALLS]name[ARGS]{...}``);
- ``functiongemma`` (Google's FunctionGemma): ``<start_function_call>call:name{key:<escape>text<escape>,n:3}
  <end_function_call>``;
- ``plain``: for chat templates that do not render tools: the tools are described in the system message, calls
  are written in the Hermes form, and earlier calls and tool results are written into the messages as text.

:func:`call_format` picks one by sniffing the chat template for the format's markers (``plain`` when none is
there), or by name (``format="llama3"``; aliases such as ``qwen`` and ``gemma`` are accepted).

Deliberately not here: sending tools to servers (a backend with ``native_tools`` does), running the calls (the tool
agent, ``agentkit.strategies.tools``), streaming calls piece by piece, and Gemma 3's Python-style ``tool_code``
blocks (a Gemma 3 template renders no tools, so it gets ``plain``).
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from agentkit.errors import UsageError
from agentkit.llm import LLM, Chat, Completion, Constraint, GenerationConfig, Message, ToolCall

__all__ = [
    "FORMATS",
    "CallFormat",
    "ParsedCalls",
    "call_format",
    "function_of",
    "generate",
    "lift",
    "lower",
    "reopened",
]


@dataclass(frozen=True)
class ParsedCalls:
    """What a reply said: ``content`` before its calls, the ``calls`` it made, and why any call could not be read."""

    content: str
    calls: list[ToolCall] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def function_of(tool: Mapping[str, Any]) -> dict[str, Any]:
    """The ``{"name", "description", "parameters"}`` of a ``Chat.tools`` record (OpenAI's ``{"type": "function",
    "function": {...}}``, or the function itself)."""
    return dict(tool["function"]) if "function" in tool else dict(tool)


def _schema(function: Mapping[str, Any]) -> dict[str, Any]:
    return dict(function.get("parameters") or {"type": "object", "properties": {}})


class CallFormat(ABC):
    """How one model family writes tool calls: the markers its chat template shows, how to write and read calls,
    and the grammar a call must follow."""

    name: ClassVar[str]
    markers: ClassVar[tuple[str, ...]] = ()  # text in a chat template that shows it renders this format
    opener: ClassVar[str] = ""  # the literal that opens the calls ("" where a call opens with its JSON)
    renders_tools: ClassVar[bool] = True  # the chat template shows the tools itself (False: ``prepare`` does)

    @abstractmethod
    def write(self, calls: Sequence[ToolCall]) -> str:
        """The calls as the model writes them."""

    @abstractmethod
    def parse(self, text: str) -> ParsedCalls:
        """Read a reply into its content, calls and errors (never raises for what a model wrote)."""

    @abstractmethod
    def body(self, functions: Sequence[Mapping[str, Any]], parallel: bool) -> str:
        """The Lark rules (llguidance syntax, with a ``start`` rule) of what follows the opener: one call, or
        several when ``parallel``, up to the end of the reply."""

    def prepare(self, chat: Chat) -> Chat:
        """The chat as this format's template takes it (the default: as it is)."""
        return chat

    def constraint(self, chat: Chat, opened: bool = False) -> Constraint | None:
        """The constraint for a reply to ``chat``; ``opened``: the reply continues right after the opener."""
        functions = [function_of(t) for t in chat.tools]
        if chat.tool_choice == "none" or not functions:
            return None
        if chat.tool_choice not in ("auto", "required"):
            functions = [f for f in functions if f["name"] == chat.tool_choice]
            if not functions:
                names = ", ".join(function_of(t)["name"] for t in chat.tools)
                raise UsageError(f"tool_choice {chat.tool_choice!r} names no tool of the chat; choose one of: {names}")
        grammar = self.body(functions, chat.parallel_tool_calls)
        if opened:
            return Constraint(lark=grammar)
        if chat.tool_choice == "auto" and self.opener:
            return Constraint(lark=grammar, after=self.opener)
        return Constraint(lark=self.at_once(grammar, chat.tool_choice == "auto"))

    def at_once(self, grammar: str, free: bool) -> str:
        """``grammar`` behind the opener, from the reply's first character (``free``: or a reply with no call,
        for formats without an opener, whose ``auto`` cannot be written with ``after``)."""
        return _rename_start(grammar, "calls") + f"start: {_lit(self.opener)} calls\n"

    def _parse_each(self, text: str, read: Callable[[str, list[ToolCall]], None]) -> ParsedCalls:
        """Read a reply whose calls each follow the opener: ``read(part, calls)`` appends what the text after one
        opener calls, or raises ``ValueError``, which becomes that call's error."""
        at = text.find(self.opener)
        if at < 0:
            return ParsedCalls(text)
        calls: list[ToolCall] = []
        errors: list[str] = []
        for n, part in enumerate(text[at:].split(self.opener)[1:], 1):
            try:
                read(part, calls)
            except ValueError as exc:
                errors.append(f"call {n}: {exc}")
        return ParsedCalls(text[:at].rstrip(), calls, errors)


# ------------------------------------------------------------------------------------------------ grammar pieces
def _lit(text: str) -> str:
    """``text`` as a Lark string literal."""
    return json.dumps(text)


def _rename_start(grammar: str, name: str) -> str:
    return re.sub(r"^start:", f"{name}:", grammar, count=1, flags=re.MULTILINE)


# The JSON of a constrained call is written as json.dumps writes it (and the families' templates show it): one
# space after a comma and a colon, no other whitespace, so a small model cannot wander off into blanks.
_JSON_STYLE = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


def _json(schema: Mapping[str, Any]) -> str:
    """``%json`` of ``schema``, written in the one style above (llguidance's ``x-guidance`` options)."""
    return f"%json {json.dumps({**schema, 'x-guidance': _JSON_STYLE}, ensure_ascii=False)}"


def _json_call(function: Mapping[str, Any], arguments_key: str) -> str:
    """``%json`` of one call object: the name as a constant first, then the arguments by the tool's schema."""
    schema = {
        "type": "object",
        "properties": {"name": {"const": function["name"]}, arguments_key: _schema(function)},
        "required": ["name", arguments_key],
        "additionalProperties": False,
    }
    return _json(schema)


def _call_rules(functions: Sequence[Mapping[str, Any]], arguments_key: str) -> str:
    """``call: call_0 | call_1 ...``, one JSON call rule per function."""
    rules = [f"call_{i}: {_json_call(f, arguments_key)}" for i, f in enumerate(functions)]
    return "call: " + " | ".join(f"call_{i}" for i in range(len(functions))) + "\n" + "\n".join(rules) + "\n"


# ------------------------------------------------------------------------------------------------ reading JSON
def _decode_object(text: str, at: int) -> tuple[Any, int]:
    """The JSON value that starts at ``text[at]`` and where it ends; ``ValueError`` with the reason."""
    try:
        return json.JSONDecoder().raw_decode(text, at)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg} at character {exc.pos - at + 1} of {text[at : at + 60]!r})") from None


def _call_from(obj: Any, index: int, keys: tuple[str, ...] = ("arguments", "parameters")) -> ToolCall:
    """A call from its parsed JSON object; ``ValueError`` naming what is wrong."""
    if not isinstance(obj, dict):
        raise ValueError(f"a call must be a JSON object, got {type(obj).__name__}")
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError('the call has no "name"')
    arguments = next((obj[k] for k in keys if k in obj), {})
    if isinstance(arguments, str):  # some models write the arguments as a JSON string, as the OpenAI wire does
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError:
            raise ValueError(f"{name}: the arguments are a string that is not JSON") from None
    if not isinstance(arguments, dict):
        raise ValueError(f"{name}: the arguments must be a JSON object, got {type(arguments).__name__}")
    return ToolCall(id=f"call_{index}", name=name, arguments=arguments)


# ------------------------------------------------------------------------------------------------ the formats
class Hermes(CallFormat):
    """``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``, a block per call (Hermes 2 Pro, Qwen 2.5/3)."""

    name = "hermes"
    markers = ("<tool_call>",)
    opener = "<tool_call>"
    closer = "</tool_call>"

    def write(self, calls: Sequence[ToolCall]) -> str:
        return "\n".join(
            f"{self.opener}\n{json.dumps({'name': c.name, 'arguments': c.arguments}, ensure_ascii=False)}\n"
            f"{self.closer}"
            for c in calls
        )

    def parse(self, text: str) -> ParsedCalls:
        at = text.find(self.opener)
        if at < 0:
            return ParsedCalls(text)
        calls, errors = [], []
        blocks = text[at:].split(self.opener)[1:]
        for n, block in enumerate(blocks, 1):
            end = block.find(self.closer)
            if end < 0 and n < len(blocks):
                errors.append(f"call {n}: no {self.closer} before the next {self.opener}")
                continue
            inner = (block if end < 0 else block[:end]).strip()
            try:
                obj, stop = _decode_object(inner, 0)
                if inner[stop:].strip():
                    raise ValueError(f"text after the call's JSON: {inner[stop:].strip()[:40]!r}")
                calls.append(_call_from(obj, len(calls)))
            except ValueError as exc:
                errors.append(f"call {n}: {exc}")
        return ParsedCalls(text[:at].rstrip(), calls, errors)

    def body(self, functions: Sequence[Mapping[str, Any]], parallel: bool) -> str:
        one = rf"/\n?/ call /\n?/ {_lit(self.closer)}"
        more = rf" (/\n?/ {_lit(self.opener)} {one})*" if parallel else ""
        return f"start: {one}{more}\n" + _call_rules(functions, "arguments")


class Plain(Hermes):
    """For chat templates that render no tools: the tools described in the system message, calls in the Hermes
    form, earlier calls and results written into the messages as text (as Qwen's template writes them)."""

    name = "plain"
    markers = ()
    renders_tools = False

    def prepare(self, chat: Chat) -> Chat:
        messages: list[Message] = []
        for m in chat.messages:
            if m.role == "tool":
                result = f"<tool_response>\n{m.content}\n</tool_response>"
                if messages and messages[-1].role == "user" and messages[-1].content.endswith("</tool_response>"):
                    last = messages.pop()
                    result = f"{last.content}\n{result}"
                messages.append(Message(role="user", content=result))
            elif m.tool_calls:
                text = "\n".join(part for part in (m.content, self.write(m.tool_calls)) if part)
                messages.append(Message(role="assistant", content=text))
            else:
                messages.append(Message(role=m.role, content=m.content))
        if chat.tools and chat.tool_choice != "none":
            described = self.describe(chat.tools)
            if messages[0].role == "system":
                messages[0] = Message(role="system", content=f"{messages[0].content}\n\n{described}")
            else:
                messages.insert(0, Message(role="system", content=described))
        return Chat(messages=tuple(messages))

    def describe(self, tools: Sequence[Mapping[str, Any]]) -> str:
        """The tools and how to call them, for the system message."""
        listed = "\n".join(json.dumps(function_of(t), ensure_ascii=False) for t in tools)
        return (
            "You can call these tools (JSON schemas of their arguments):\n"
            f"<tools>\n{listed}\n</tools>\n"
            "To call a tool, write a JSON object with its name and arguments between tags, one block per call:\n"
            '<tool_call>\n{"name": "TOOL NAME", "arguments": {ARGUMENTS}}\n</tool_call>\n'
            "A tool's result comes back between <tool_response> and </tool_response> tags."
        )


class Llama3(CallFormat):
    """``{"name": ..., "parameters": {...}}``, several joined by ``; ``, perhaps after ``<|python_tag|>`` (Llama 3.1
    and 3.2 JSON tool calling; vLLM's ``llama3_json`` parser reads it the same way, ``arguments`` included)."""

    name = "llama3"
    markers = ("<|python_tag|>",)
    python_tag = "<|python_tag|>"
    _start = re.compile(r'<\|python_tag\|>|\{\s*"name"\s*:')

    def write(self, calls: Sequence[ToolCall]) -> str:
        return "; ".join(json.dumps({"name": c.name, "parameters": c.arguments}, ensure_ascii=False) for c in calls)

    def parse(self, text: str) -> ParsedCalls:
        start = self._start.search(text)
        if start is None:
            return ParsedCalls(text)
        content, rest = text[: start.start()].rstrip(), text[start.start() :]
        rest = rest[len(self.python_tag) :] if rest.startswith(self.python_tag) else rest
        calls, errors, at, n = [], [], 0, 0
        while True:
            while at < len(rest) and (rest[at].isspace() or rest[at] == ";"):
                at += 1
            if at >= len(rest):
                break
            n += 1
            try:
                obj, at = _decode_object(rest, at)
                calls.append(_call_from(obj, len(calls)))
            except ValueError as exc:
                errors.append(f"call {n}: {exc}")
                break  # where one call does not parse, where the next begins is unknown
        if not calls and not errors:
            errors.append("call 1: <|python_tag|> with no call after it")
        return ParsedCalls(content, calls, errors)

    def body(self, functions: Sequence[Mapping[str, Any]], parallel: bool) -> str:
        more = ' ("; " call)*' if parallel else ""
        return f"start: / ?/ call{more}\n" + _call_rules(functions, "parameters")

    def at_once(self, grammar: str, free: bool) -> str:
        calls = _rename_start(grammar, "calls")
        tag = f"({_lit(self.python_tag)})? calls"
        if not free:
            return calls + f"start: {tag}\n"
        # auto without an opener: a reply is the calls alone, or text that holds no call's beginning; the text
        # cannot start as a call does ({, a space, <), so the lexer (which does not go back) knows at once which
        free_text = r'FREE: /[^{<\s](?s:.*)/ & ~/(?s:.*)(\{\s*"name"|<\|python_tag\|>)(?s:.*)/'
        return calls + f"start: FREE? | {tag}\n{free_text}\n"


class Mistral(CallFormat):
    """``[TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]`` (Mistral 7B v0.3, Mixtral, Nemo); the v11
    tokenizer's ``[TOOL_CALLS]name[ARGS]{...}`` is read too. Call ids are nine letters and digits, as Mistral's
    templates demand."""

    name = "mistral"
    markers = ("[TOOL_CALLS]", "[AVAILABLE_TOOLS]")
    opener = "[TOOL_CALLS]"
    _v11 = re.compile(r"\s*([A-Za-z_][\w.\-]*)\[ARGS\]")

    def write(self, calls: Sequence[ToolCall]) -> str:
        listed = [{"name": c.name, "arguments": c.arguments} for c in calls]
        return self.opener + json.dumps(listed, ensure_ascii=False)

    def parse(self, text: str) -> ParsedCalls:
        return self._parse_each(text, self._read_call)

    def _read_call(self, part: str, calls: list[ToolCall]) -> None:
        v11 = self._v11.match(part)
        if v11 is not None:
            arguments, _ = _decode_object(part, v11.end())
            calls.append(_call_from({"name": v11.group(1), "arguments": arguments}, len(calls)))
            return
        value, _ = _decode_object(part.strip(), 0)
        for obj in value if isinstance(value, list) else [value]:
            calls.append(_call_from(obj, len(calls)))

    def body(self, functions: Sequence[Mapping[str, Any]], parallel: bool) -> str:
        more = ' (", " call)*' if parallel else ""
        return f'start: / ?/ "[" call{more} "]"\n' + _call_rules(functions, "arguments")

    def prepare(self, chat: Chat) -> Chat:
        """Mistral's templates refuse a call id that is not nine letters and digits: ids are made so."""
        messages = []
        for m in chat.messages:
            update: dict[str, Any] = {}
            if m.tool_calls:
                update["tool_calls"] = tuple(c.model_copy(update={"id": _mistral_id(c.id)}) for c in m.tool_calls)
            if m.tool_call_id is not None:
                update["tool_call_id"] = _mistral_id(m.tool_call_id)
            messages.append(m.model_copy(update=update) if update else m)
        return chat.model_copy(update={"messages": tuple(messages)})


def _mistral_id(call_id: str) -> str:
    letters = re.sub(r"[^A-Za-z0-9]", "", call_id)
    return (letters + "0" * 9)[:9] if len(letters) <= 9 else letters[-9:]


class FunctionGemma(CallFormat):
    """``<start_function_call>call:name{key:<escape>text<escape>,n:3}<end_function_call>`` (Google's
    FunctionGemma): strings between ``<escape>`` marks, other values as JSON writes them."""

    name = "functiongemma"
    markers = ("<start_function_call>", "<start_function_declaration>")
    opener = "<start_function_call>"
    closer = "<end_function_call>"
    escape = "<escape>"

    def write(self, calls: Sequence[ToolCall]) -> str:
        return "".join(f"{self.opener}call:{c.name}{self._value(c.arguments)}{self.closer}" for c in calls)

    def _value(self, value: Any) -> str:
        if isinstance(value, str):
            return f"{self.escape}{value}{self.escape}"
        if isinstance(value, dict):
            return "{" + ",".join(f"{k}:{self._value(v)}" for k, v in value.items()) + "}"
        if isinstance(value, list):
            return "[" + ",".join(self._value(v) for v in value) + "]"
        return json.dumps(value)

    def parse(self, text: str) -> ParsedCalls:
        return self._parse_each(text, self._read_call)

    def _read_call(self, part: str, calls: list[ToolCall]) -> None:
        end = part.find(self.closer)
        inner = (part if end < 0 else part[:end]).strip()
        head = re.match(r"call:([A-Za-z_][\w.\-]*)", inner)
        if head is None:
            raise ValueError("expected call:NAME{...}")
        if inner[head.end() : head.end() + 1] != "{":
            raise ValueError(f"{head.group(1)}: expected {{ after the name")
        arguments, stop = self._read(inner, head.end())
        if inner[stop:].strip():
            raise ValueError(f"text after the call: {inner[stop:].strip()[:40]!r}")
        calls.append(ToolCall(id=f"call_{len(calls)}", name=head.group(1), arguments=arguments))

    def _read(self, text: str, at: int) -> tuple[Any, int]:
        """The value at ``text[at]`` and where it ends; ``ValueError`` where it does not read."""
        if text.startswith(self.escape, at):
            end = text.find(self.escape, at + len(self.escape))
            if end < 0:
                raise ValueError("a text value has no closing <escape>")
            return text[at + len(self.escape) : end], end + len(self.escape)
        if text.startswith("{", at) or text.startswith("[", at):
            is_object, out, at = text[at] == "{", {} if text[at] == "{" else [], at + 1
            close = "}" if is_object else "]"
            while at < len(text) and text[at] != close:
                if is_object:
                    key = re.match(r"\s*([^:{}\[\],<]+?)\s*:", text[at:])
                    if key is None:
                        raise ValueError(f"expected key:value at {text[at : at + 20]!r}")
                    at += key.end()
                value, at = self._read(text, at)
                if is_object:
                    out[key.group(1)] = value  # type: ignore[index,union-attr]
                else:
                    out.append(value)  # type: ignore[union-attr]
                at += 1 if text.startswith(",", at) else 0
            if at >= len(text):
                raise ValueError(f"no closing {close}")
            return out, at + 1
        token = re.match(r"[^,}\]]*", text[at:])
        raw = token.group(0).strip() if token else ""
        try:
            return json.loads(raw), at + (token.end() if token else 0)
        except json.JSONDecodeError:
            raise ValueError(f"cannot read the value {raw[:30]!r} (text goes between <escape> marks)") from None

    def body(self, functions: Sequence[Mapping[str, Any]], parallel: bool) -> str:
        rules = [f"call_{i}: {_lit('call:' + f['name'])} {self._object(_schema(f))}" for i, f in enumerate(functions)]
        one = f"call {_lit(self.closer)}"
        more = f" ({_lit(self.opener)} {one})*" if parallel else ""
        calls = "call: " + " | ".join(f"call_{i}" for i in range(len(functions)))
        return f"start: {one}{more}\n{calls}\n" + "\n".join(rules) + f"\n{self._text_rule()}\n"

    def _text_rule(self) -> str:
        return f"ESCAPED: {_lit(self.escape)} (/(?s:.*)/ & ~/(?s:.*)<escape>(?s:.*)/) {_lit(self.escape)}"

    def _object(self, schema: Mapping[str, Any]) -> str:
        """The ``{key:value,...}`` of an object schema: its properties in order, the required ones always."""
        props = schema.get("properties") or {}
        required = set(schema.get("required") or [])
        pieces = [(f"{_lit(k + ':')} {self._valued(v)}", k in required) for k, v in props.items()]
        out, first = "", True
        for piece, needed in pieces:
            sep = "" if first else '","'
            if needed:
                out += f" {sep} {piece}" if sep else f" {piece}"
                first = False
            else:
                out += f" ({sep} {piece})?" if sep else f" ({piece})?"
        return f'"{{"{out} "}}"'

    def _valued(self, schema: Mapping[str, Any]) -> str:
        kind = schema.get("type")
        if "enum" in schema and all(isinstance(v, str) for v in schema["enum"]):
            return f"{_lit(self.escape)} ({' | '.join(_lit(v) for v in schema['enum'])}) {_lit(self.escape)}"
        if kind == "string":
            return "ESCAPED"
        if kind == "integer":
            return "/-?\\d+/"
        if kind == "number":
            return "/-?\\d+(\\.\\d+)?([eE][-+]?\\d+)?/"
        if kind == "boolean":
            return '("true" | "false")'
        return _json(schema)  # an array, an object, a union: as JSON


# Llama's JSON and FunctionGemma's call text are written differently enough that sniffing reads the most specific
# markers first; a template with none of them gets plain.
FORMATS: dict[str, CallFormat] = {f.name: f for f in (FunctionGemma(), Mistral(), Hermes(), Llama3(), Plain())}
_ALIASES = {"qwen": "hermes", "llama3_json": "llama3", "llama": "llama3", "gemma": "functiongemma"}


def call_format(llm_or_template: LLM | str | None, name: str | None = None) -> CallFormat:
    """The call format ``name`` names (a ``UsageError`` listing them if it names none), or the one whose markers
    the chat template (of ``llm``, or given as text) shows; ``plain`` when it shows none."""
    if name is not None:
        found = FORMATS.get(_ALIASES.get(name.lower(), name.lower()))
        if found is None:
            raise UsageError(f"unknown tool call format {name!r}; choose one of: {', '.join(FORMATS)}")
        return found
    template = llm_or_template.chat_template if isinstance(llm_or_template, LLM) else llm_or_template
    for fmt in FORMATS.values():
        if template and any(marker in template for marker in fmt.markers):
            return fmt
    return FORMATS["plain"]


def reopened(chat: Chat, fmt: CallFormat) -> bool:
    """Whether ``chat`` ends in an assistant reply that has just opened a call (a re-ask continues from there)."""
    return bool(fmt.opener) and chat.continues and chat.messages[-1].content.endswith(fmt.opener)


def lower(
    llm: LLM, chat: Chat, config: GenerationConfig, *, format: str | None = None, constrain: bool = True
) -> tuple[str, GenerationConfig]:
    """The text ``llm`` is sent for a tool-calling ``chat`` (its template rendering the tools), and ``config`` with
    the call constraint (``constrain=False``: without it; the calls are still read by :func:`lift`)."""
    fmt = call_format(llm, format)
    text = llm.render(fmt.prepare(chat))
    if not constrain:
        return text, config
    constraint = fmt.constraint(chat, opened=reopened(chat, fmt))
    if constraint is None:
        return text, config
    if config.constraint is not None:
        raise UsageError("a tool-calling chat is constrained by its tools' schemas: drop config.constraint")
    return text, config.model_copy(update={"constraint": constraint})


def lift(llm: LLM, chat: Chat, completion: Completion, *, format: str | None = None) -> Completion:
    """``completion`` of a lowered ``chat`` with its calls read: ``text`` is what came before them, ``tool_calls``
    the calls, ``tool_call_errors`` the calls that could not be read. A reply to ``tool_choice="none"`` is text."""
    if chat.tool_choice == "none" or not chat.tools:
        return completion
    fmt = call_format(llm, format)
    continued = reopened(chat, fmt)
    parsed = fmt.parse(fmt.opener + completion.text if continued else completion.text)
    if not parsed.calls and not parsed.errors:
        return completion
    return completion.model_copy(
        update={
            "text": "" if continued else parsed.content,
            "tool_calls": parsed.calls,
            "tool_call_errors": parsed.errors,
        }
    )


def generate(
    llm: LLM,
    chats: Sequence[Chat],
    config: GenerationConfig | None = None,
    *,
    format: str | None = None,
    constrain: bool = True,
) -> list[Completion]:
    """One completion per chat with its tool calls read; a model with ``native_tools`` gets the chats as they are."""
    config = config or GenerationConfig()
    if llm.native_tools:
        return llm.generate(list(chats), config)
    lowered = [lower(llm, chat, config, format=format, constrain=constrain) for chat in chats]
    out: list[Completion | None] = [None] * len(chats)
    groups: dict[str, list[int]] = {}
    for i, (_, sent) in enumerate(lowered):
        groups.setdefault(sent.key(), []).append(i)
    for indices in groups.values():
        completions = llm.generate([lowered[i][0] for i in indices], lowered[indices[0]][1])
        for i, completion in zip(indices, completions, strict=True):
            out[i] = lift(llm, chats[i], completion, format=format)
    return [c for c in out if c is not None]
