"""The constraints a strategy puts on its own replies when it runs with ``constrain=True`` (docs/structured.md).

Each strategy derives its constraint from what its reader accepts and from the stop strings it sends, so that a
constrained reply is always one its reader parses: direct's answer line, chain-of-thought's final "The answer is"
line, PAL's ``def solution():`` program, ReAct's ``Action n: Tool[argument]`` with the tools it has. The strategy
builds the pieces (the regular expressions below) and :func:`reply` makes them one ``Constraint``.

Every constraint is a Lark grammar (llguidance syntax) of a single terminal: the reply's language as one regular
expression, with llguidance's ``&`` and ``~`` operators keeping the stop strings (and whatever else the reader
treats as the end of a reply) out of it, then either the end of the reply or a stop string and anything after it
(the model stops there, so "anything" is never generated). One terminal, because llguidance's lexer is greedy:
two terminals side by side where the first could go on (a number, then an optional period) reject text that one
regular expression accepts.

Deliberately not here: Python's grammar (PAL gets its skeleton, not a parser's worth of syntax), native tool calls
(``agentkit.toolcalls``), and checking text against a constraint (``agentkit.grammar``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal, get_args, get_origin

from agentkit.llm import Constraint
from agentkit.tools.base import Tool

ANY = "(?s:.*)"
# A number as answers write it (agentkit.answers reads these): sign, currency, thousands separators, decimals.
NUMBER = r"-?\$?(\d{1,3}(,\d{3})+|\d+)(\.\d+)?"
# A short text answer: one line whose first character survives the reader's stripping of quotes and periods.
TEXT = r"[^\s\"'*.][^\n]*"
# The phrase a final answer follows, in the spellings agentkit.answers reads it after ("The answer is" ends every
# exemplar rationale and is what the CoT template asks for; a model may write "the final answer is:").
ANSWER_MARK = r"(?i:the (final )?answer is):?"
_META = set("\\.+*?()|[]{}^$#&-~/")


def rx(text: str) -> str:
    """``text`` as a literal inside an llguidance ``/.../`` regular expression."""
    return "".join("\\n" if c == "\n" else "\\t" if c == "\t" else "\\" + c if c in _META else c for c in text)


def either(patterns: Iterable[str]) -> str:
    """One regular expression matching any of ``patterns``."""
    return "(" + "|".join(patterns) + ")"


def without(pattern: str, avoid: Iterable[str]) -> str:
    """The terminal for text matching the regex ``pattern`` that contains nothing matching any of ``avoid``."""
    avoid = list(avoid)
    return f"(/{pattern}/ & ~/{ANY}{either(avoid)}{ANY}/)" if avoid else f"/{pattern}/"


def reply(body: str, stops: Sequence[str], *, avoid: Iterable[str] = (), rest: str | None = None) -> Constraint:
    """A reply that is ``body`` (a terminal: ``/regex/`` or one from :func:`without`) holding none of the ``stops``
    and nothing matching ``avoid``, then the end or a stop string (and what a model would write after it), or
    ``rest`` (a regex) where given."""
    forbidden = [*map(rx, stops), *avoid]
    text = f"({body} & ~/{ANY}{either(forbidden)}{ANY}/)" if forbidden else body
    end = f" /{rest}/" if rest is not None else f" /{either(map(rx, stops))}{ANY}/?" if stops else ""
    return Constraint(lark=f"start: REPLY\nREPLY: {text}{end}\n")


# ---------------------------------------------------------------------------------------------- ReAct's actions
# What ReAct's parser takes for the end of a step (agentkit.strategies.react._CUT), so the constrained text of a
# step never holds it before the action: an "Observation n:" label in any case, a "Question:" line.
STEP_CUTS = (r"(?i:observation)\s*\d*\s*:", r"\n\s*(?i:question)\s*:")


def tool_call(tool: Tool) -> str:
    """The regex of ``tool`` called as its text protocol (``Tool.convert``) reads it: ``Name[argument]``, the
    arguments comma-separated where it takes several, each written as its type converts."""
    params = tool.parameters
    if not params:
        return rx(tool.name) + r"\[\]"
    pieces = [_argument(p.annotation, alone=len(params) == 1, required=p.required or tool.terminal) for p in params]
    required = sum(p.required for p in params)
    head, rest, tail = pieces[:required], pieces[required:], ""
    for i in reversed(range(len(rest))):  # the parameters with defaults: each only after the one before it
        tail = f"({', ?' if head or i else ''}{rest[i]}{tail})?"
    return rx(tool.name) + r"\[" + ", ?".join(head) + tail + r"\]"


def _argument(annotation: Any, *, alone: bool, required: bool) -> str:
    """One argument as ``agentkit.tools.base._convert`` reads it; text never holds brackets or a line break (nor a
    comma or a quote among several arguments, which are read as CSV)."""
    args = [a for a in get_args(annotation) if a is not type(None)]
    if len(args) == 1 and type(None) in get_args(annotation):  # X | None: the value, none, null or nothing
        return f"({_argument(args[0], alone=alone, required=True)}|(?i:none|null))?"
    if annotation is int:
        return r"-?\d+"
    if annotation is float:
        return r"-?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?"
    if annotation is bool:
        return "(?i:true|false|yes|no)"
    if get_origin(annotation) is Literal:
        return "(?i:" + "|".join(rx(str(choice)) for choice in get_args(annotation)) + ")"
    if alone:  # the whole bracket is the argument
        return r"[^\s\[\]\"'`\u201c\u2018]([^\[\]\r\n]*[^\s\[\]])?" if required else r"[^\[\]\r\n]*"
    return r"[^\s\[\]\n,\"'`]([^\[\]\r\n,\"]*[^\s\[\]\n,\"])?" if required else r"[^\[\]\r\n,\"]*"
