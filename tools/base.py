"""Custom tools for agents that act with ``Name[argument]`` (ReAct, Yao et al., 2022).

A tool is a typed Python function with a docstring::

    from agentkit import tool

    @tool
    def population(city: str) -> str:
        \"\"\"Return the population of a city from our own table.\"\"\"
        return TABLE.get(city.lower(), "unknown")

The decorator builds a :class:`Tool`: its name is the function name (or ``name=``), its description is the
docstring's first paragraph, its parameters come from the type hints. Mistakes are caught when the tool is
*defined*, not when a model first calls it: a missing docstring, a parameter without a type hint, or an
annotation the argument converter cannot handle raises :class:`ToolDefinitionError` naming the function.

The model calls a tool as ``Name[argument]``. :meth:`Tool.invoke` turns that one bracketed string into the
function's arguments (``str``, ``int``, ``float``, ``bool``, ``Literal[...]`` and ``X | None`` are supported;
several parameters are written comma-separated: ``Distance[Paris, Rome]``), calls the function and returns
the observation text. A conversion failure, or an exception the tool declares as expected (``ToolError``, or
the types listed in ``errors=``), becomes a short observation so the episode goes on; any other exception is a
bug in the tool and propagates.

Every tool is also a JSON-schema function: :attr:`Tool.json_schema` is the JSON schema of its parameters (types
from the hints, descriptions from the ``Args:`` section, defaults; built with pydantic), :meth:`Tool.function`
the OpenAI-style ``{"name", "description", "parameters"}`` record, and ``tool.invoke({"city": "Paris"})`` calls
it with keyword arguments, validated against the schema (a bad argument is a ``ToolError`` observation, like a
bad bracket). A tool from elsewhere (an MCP server, ``agentkit.tools.mcp``) brings its own schema.

Not here: the agent that calls tools natively (``agentkit.strategies.tools``), async tools, or state kept per
episode (a tool is shared by every episode that uses it, and may run in a worker thread: keep it stateless or
thread-safe; the Wikipedia tools get their per-episode state from ``agentkit.tools.wikipedia.WikiSession``).
"""

from __future__ import annotations

import csv
import functools
import inspect
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from agentkit.errors import ToolDefinitionError

__all__ = ["Tool", "ToolDefinitionError", "ToolError", "ToolParameter", "tool"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SCALARS: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}
_TRUE = {"true", "yes", "y", "1", "on"}
_FALSE = {"false", "no", "n", "0", "off"}
_QUOTES = [('"', '"'), ("'", "'"), ("\u201c", "\u201d"), ("\u2018", "\u2019"), ("`", "`")]


class ToolError(Exception):
    """Raise from a tool for an expected failure; its message becomes the observation."""


@dataclass(frozen=True)
class ToolParameter:
    """One parameter of a tool: its name, annotation, JSON-ish type name and description."""

    name: str
    annotation: Any
    type: str
    description: str = ""
    required: bool = True
    default: Any = None


@dataclass(frozen=True)
class Tool:
    """A callable the model can use as ``Name[argument]``, or with keyword arguments that fit :attr:`json_schema`.

    Build one with :func:`tool` or :meth:`Tool.from_function`. ``terminal`` marks actions that end the episode
    (``Finish``); the strategy, not the tool, decides what ending means.
    """

    name: str
    description: str
    fn: Callable[..., Any]
    parameters: tuple[ToolParameter, ...] = ()
    errors: tuple[type[BaseException], ...] = (ToolError,)
    terminal: bool = False
    argument_hint: str = field(default="")
    # A schema of its own (an MCP tool's); None: made from the parameters. What a structured result holds.
    input_schema: dict[str, Any] | None = field(default=None, hash=False, compare=False)
    output_schema: dict[str, Any] | None = field(default=None, hash=False, compare=False)

    # ---------------------------------------------------------------- definition
    @classmethod
    def from_function(
        cls,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        errors: tuple[type[BaseException], ...] = (),
        terminal: bool = False,
        argument_hint: str | None = None,
    ) -> Tool:
        """Make a tool from a typed, documented function (or bound method). Raises ToolDefinitionError."""
        if not callable(fn):
            raise ToolDefinitionError(f"tool: expected a function, got {fn!r}")
        qual = getattr(fn, "__qualname__", repr(fn))
        tool_name = name or getattr(fn, "__name__", "")
        if not _NAME.match(tool_name or ""):
            raise ToolDefinitionError(f"tool {qual}: name {tool_name!r} must be an identifier (letters, digits, _)")
        doc = inspect.getdoc(fn) or ""
        summary, arg_docs = _parse_docstring(doc)
        desc = (description if description is not None else summary).strip()
        if not desc:
            raise ToolDefinitionError(
                f"tool {qual}: missing description; write a docstring saying what the tool returns "
                "(or pass description=...)"
            )
        try:
            hints = typing.get_type_hints(fn)
        except Exception as exc:  # unresolvable forward reference etc.
            raise ToolDefinitionError(f"tool {qual}: cannot resolve type hints: {exc}") from exc
        params: list[ToolParameter] = []
        for p in inspect.signature(fn).parameters.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise ToolDefinitionError(f"tool {qual}: *args/**kwargs are not supported (parameter {p.name!r})")
            if p.name not in hints:
                raise ToolDefinitionError(f"tool {qual}: parameter {p.name!r} has no type hint")
            ann = hints[p.name]
            params.append(
                ToolParameter(
                    name=p.name,
                    annotation=ann,
                    type=_type_name(ann, qual, p.name),
                    description=arg_docs.get(p.name, ""),
                    required=p.default is inspect.Parameter.empty,
                    default=None if p.default is inspect.Parameter.empty else p.default,
                )
            )
        hint = argument_hint if argument_hint is not None else ", ".join(p.name for p in params)
        return cls(
            name=tool_name,
            description=desc,
            fn=fn,
            parameters=tuple(params),
            errors=(ToolError, *errors),
            terminal=terminal,
            argument_hint=hint,
        )

    # ---------------------------------------------------------------- use
    @property
    def signature(self) -> str:
        """How the model writes a call, e.g. ``Search[entity]``."""
        return f"{self.name}[{self.argument_hint}]"

    def convert(self, argument: str) -> list[Any]:
        """Turn the bracketed text into positional arguments. Raises ToolError with a readable reason."""
        argument = strip_quotes(argument.strip())
        if not self.parameters:
            if argument:
                raise ToolError(f"{self.name} takes no argument; write {self.name}[]")
            return []
        if len(self.parameters) == 1:
            pieces = [argument]
        else:
            try:
                pieces = [strip_quotes(p.strip()) for p in next(csv.reader([argument], skipinitialspace=True), [])]
            except csv.Error as exc:  # a line break in an unquoted value, say: the model's mistake
                reason = str(exc).split(" - ")[0]  # csv's hint about files does not apply
                raise ToolError(
                    f"{self.name} could not read its comma-separated values ({reason}); "
                    f"write {self.signature} on one line"
                ) from None
        required = sum(p.required for p in self.parameters)
        if not (required <= len(pieces) <= len(self.parameters)):
            raise ToolError(
                f"{self.name} expects {_count(required, len(self.parameters))} comma-separated values "
                f"({self.argument_hint}), got {len(pieces)}"
            )
        return [
            _convert(piece, p.annotation, self.name, p.name) for piece, p in zip(pieces, self.parameters, strict=False)
        ]

    def invoke(self, argument: str | Mapping[str, Any]) -> str:
        """Call the tool with the bracketed text (``Name[argument]``) or with keyword arguments (a mapping, checked
        against :attr:`json_schema`), and return the observation (expected failures included)."""
        try:
            if isinstance(argument, str):
                result = self.fn(*self.convert(argument))
            else:
                result = self.fn(**self.validate(argument))
        except (ToolError, *self.errors) as exc:
            return str(exc) if isinstance(exc, ToolError) else f"{self.name} failed: {type(exc).__name__}: {exc}"
        return "" if result is None else str(result)

    def validate(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """Keyword arguments checked against the schema (defaults filled in). Raises ToolError with the reason."""
        if not isinstance(arguments, Mapping):
            raise ToolError(f"{self.name}: the arguments must be a JSON object, got {arguments!r}")
        if self.input_schema is not None:
            return _validate_schema(self.name, self.input_schema, arguments)
        try:
            checked = self._arguments_model().model_validate(dict(arguments))
        except ValidationError as exc:
            raise ToolError(f"{self.name}: {_first_problem(exc)}") from None
        return {p.name: getattr(checked, p.name) for p in self.parameters}

    @property
    def json_schema(self) -> dict[str, Any]:
        """The JSON schema of the tool's parameters: an object with one property per parameter."""
        if self.input_schema is not None:
            return self.input_schema
        schema = self._arguments_model().model_json_schema()
        schema.pop("title", None)
        for prop in schema.get("properties", {}).values():
            prop.pop("title", None)
        return schema

    def function(self) -> dict[str, Any]:
        """The tool as a function for native tool calls: ``{"name", "description", "parameters"}``."""
        return {"name": self.name, "description": self.description, "parameters": self.json_schema}

    def _arguments_model(self) -> type[BaseModel]:
        try:
            return _cached_arguments_model(self.name, self.parameters)
        except TypeError:  # a default that cannot be hashed: made afresh
            return _arguments_model(self.name, self.parameters)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Calling the tool calls the function, so decorated functions stay usable from Python."""
        return self.fn(*args, **kwargs)

    def describe(self) -> str:
        """One line for the instruction: ``Name[args]: description``."""
        return f"{self.signature}: {self.description}"


def tool(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    errors: tuple[type[BaseException], ...] = (),
) -> Any:
    """Decorator that turns a typed, documented function into a :class:`Tool`.

    Use bare (``@tool``) or with options (``@tool(name="Calc", errors=(ZeroDivisionError,))``); ``errors``
    lists exception types that are expected failures and become observations instead of propagating.
    """

    def wrap(f: Callable[..., Any]) -> Tool:
        return Tool.from_function(f, name=name, description=description, errors=errors)

    return wrap(fn) if fn is not None else wrap


# -------------------------------------------------------------------- helpers
def _arguments_model(name: str, parameters: tuple[ToolParameter, ...]) -> type[BaseModel]:
    """The pydantic model of a tool's keyword arguments (unknown names refused)."""
    fields: dict[str, Any] = {}
    for p in parameters:
        default = ... if p.required else p.default
        fields[p.name] = (p.annotation, Field(default, description=p.description or None))
    return create_model(f"{name}_arguments", __config__=ConfigDict(extra="forbid"), **fields)


_cached_arguments_model = functools.lru_cache(maxsize=1024)(_arguments_model)  # a tool per episode shares one


def _first_problem(exc: ValidationError) -> str:
    """One line for the first thing pydantic refused: ``city: Field required``."""
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "arguments"
    return f"{where}: {error['msg']}"


def _validate_schema(name: str, schema: Mapping[str, Any], arguments: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``arguments`` against a JSON schema of the tool's own (jsonschema); raises ToolError."""
    import jsonschema

    validator = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)  # its $schema
    error = jsonschema.exceptions.best_match(validator(schema).iter_errors(dict(arguments)))
    if error is not None:
        where = ".".join(str(part) for part in error.absolute_path)
        raise ToolError(f"{name}: {where + ': ' if where else ''}{error.message}")
    return dict(arguments)


def strip_quotes(text: str) -> str:
    """Remove one pair of matching quotes around ``text`` (straight, curly or backticks)."""
    for left, right in _QUOTES:
        if len(text) >= 2 and text.startswith(left) and text.endswith(right):
            return text[1:-1].strip()
    return text


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """First paragraph (the description) and Google-style ``Args:`` entries."""
    paragraphs = re.split(r"\n\s*\n", doc.strip(), maxsplit=1)
    summary = " ".join(paragraphs[0].split()) if paragraphs and paragraphs[0] else ""
    if re.match(r"^(Args|Arguments|Parameters|Returns?)\s*:", summary):
        summary = ""
    args: dict[str, str] = {}
    m = re.search(r"^(?:Args|Arguments|Parameters)\s*:\s*\n((?:[ \t]+.*\n?)+)", doc, re.M)
    if m:
        for line in m.group(1).splitlines():
            am = re.match(r"\s*(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)", line)
            if am:
                args[am.group(1)] = am.group(2).strip()
    return summary, args


def _unwrap_optional(ann: Any) -> tuple[Any, bool]:
    origin = get_origin(ann)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(ann) if a is not type(None)]
        if len(args) == 1 and len(get_args(ann)) == 2:
            return args[0], True
    return ann, False


def _type_name(ann: Any, qual: str, param: str) -> str:
    inner, optional = _unwrap_optional(ann)
    if inner in _SCALARS:
        name = _SCALARS[inner]
    elif get_origin(inner) is Literal and get_args(inner):
        name = "one of " + "/".join(str(a) for a in get_args(inner))
    else:
        raise ToolDefinitionError(
            f"tool {qual}: parameter {param!r} has unsupported type {ann!r}; "
            "use str, int, float, bool, Literal[...] or one of them | None"
        )
    return f"{name} or none" if optional else name


def _convert(text: str, ann: Any, tool_name: str, param: str) -> Any:
    inner, optional = _unwrap_optional(ann)
    if optional and text.lower() in {"", "none", "null"}:
        return None
    try:
        if inner is str:
            return text
        if inner is bool:
            low = text.lower()
            if low in _TRUE or low in _FALSE:
                return low in _TRUE
            raise ValueError
        if inner is int:
            return int(text.replace(",", "").replace("_", ""))
        if inner is float:
            return float(text.replace(",", ""))
        if get_origin(inner) is Literal:
            for choice in get_args(inner):
                if str(choice).lower() == text.lower():
                    return choice
            raise ValueError
    except ValueError:
        pass
    raise ToolError(f"{tool_name}: {param} must be {_type_name(ann, tool_name, param)}, got {text!r}")


def _count(lo: int, hi: int) -> str:
    return str(hi) if lo == hi else f"{lo} to {hi}"
