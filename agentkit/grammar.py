"""Constraints (:class:`agentkit.llm.Constraint`) compiled by llguidance, and checked against text.

llguidance (Microsoft, https://github.com/guidance-ai/llguidance; the grammar engine of vLLM, SGLang and
llama.cpp) turns a regular expression, a JSON schema or a Lark grammar into one grammar it parses with an Earley
parser over a regex lexer. Here that grammar is compiled once per constraint, checked (a broken grammar is a
one-line ``UsageError`` naming the constraint), and matched against *text* with a byte-level vocabulary: every
backend that honours constraints (the scripted model, ``agentkit serve``'s checks, the strategies' tests) uses
these to say whether a completion conforms.

Deliberately not here: token masks over a model's vocabulary (that is the engine's per-row matcher, which needs
the model's tokenizer), and the request fields of each server dialect (``agentkit.serving``).
"""

from __future__ import annotations

import functools
import json
from typing import Any

from agentkit.errors import UsageError
from agentkit.llm import Constraint


def grammar(constraint: Constraint) -> str:
    """The llguidance grammar of ``constraint``; a ``UsageError`` if it does not compile."""
    return _compiled(constraint.model_dump_json())


def constrained_part(constraint: Constraint, text: str) -> str | None:
    """The part of ``text`` the constraint applies to: after the first ``after`` literal, or all of it without
    one; ``None`` when ``after`` is set and does not (yet) occur, so the text is still free."""
    if constraint.after is None:
        return text
    at = text.find(constraint.after)
    return None if at < 0 else text[at + len(constraint.after) :]


def matches(constraint: Constraint, text: str) -> bool:
    """Whether ``text``, a whole completion, conforms: its constrained part is a complete match (free text
    without the ``after`` literal conforms too)."""
    part = constrained_part(constraint, text)
    if part is None:
        return True
    matcher = _matcher(constraint)
    data = part.encode("utf-8")
    return matcher.try_consume_tokens(list(data)) == len(data) and matcher.is_accepting()


def is_prefix(constraint: Constraint, text: str) -> bool:
    """Whether ``text`` can still be continued into a conforming completion (a completion cut by max tokens)."""
    part = constrained_part(constraint, text)
    if part is None:
        return True
    matcher = _matcher(constraint)
    data = part.encode("utf-8")
    return matcher.try_consume_tokens(list(data)) == len(data)


def longest_conforming(constraint: Constraint, text: str) -> str:
    """The longest prefix of ``text``'s constrained part that the grammar accepts, with what comes before it;
    ``text`` itself when it is free. A model that honours a constraint by cutting its reply uses this."""
    part = constrained_part(constraint, text)
    if part is None:
        return text
    head = text[: len(text) - len(part)]
    matcher = _matcher(constraint)
    best = 0 if matcher.is_accepting() else None
    for i, ch in enumerate(part):
        data = ch.encode("utf-8")
        if matcher.try_consume_tokens(list(data)) != len(data):
            break
        if matcher.is_accepting():
            best = i + 1
    return head + part[:best] if best is not None else head


def longest_viable(constraint: Constraint, text: str) -> str:
    """The longest prefix of ``text`` that can still be continued into a conforming completion (``text`` itself
    when it is free): where a model that honours the constraint would have had to leave ``text``."""
    part = constrained_part(constraint, text)
    if part is None:
        return text
    matcher = _matcher(constraint)
    for i, ch in enumerate(part):
        data = ch.encode("utf-8")
        if matcher.try_consume_tokens(list(data)) != len(data):
            return text[: len(text) - len(part) + i]
    return text


def as_lark(constraint: Constraint) -> str:
    """The whole constraint, ``after`` included, as one llguidance Lark grammar, for servers that take a grammar
    but know nothing of ``after`` (vLLM's ``grammar``, llama.cpp's ``%llguidance``).

    With ``after``, a completion is either free text without the literal, or free text up to the literal's first
    occurrence followed by the constrained part; llguidance's lexeme operators ``&`` and ``~`` say "without"
    exactly (a literal that overlaps itself included). The constrained part is the regex as a lexeme, the schema
    as ``%json``, the Lark grammar nested as ``%lark``.
    """
    if constraint.regex is not None:
        body = f"/{_lark_regex(constraint.regex)}/"
    elif constraint.json_schema is not None:
        body = f"%json {json.dumps(constraint.json_schema)}"
    else:
        body = f"%lark {{\n{constraint.lark}\n}}"
    if constraint.after is None:
        return constraint.lark if constraint.lark is not None else f"start: {body}\n"
    literal = _lark_regex(regex_literal(constraint.after))
    return (
        "start: AGENTKIT_FREE | AGENTKIT_HEAD agentkit_body\n"
        f"AGENTKIT_FREE: /(?s:.*)/ & ~/(?s:.*){literal}(?s:.*)/\n"
        f"AGENTKIT_HEAD: /(?s:.*){literal}/ & ~/(?s:.*){literal}(?s:.+)/\n"
        f"agentkit_body: {body}\n"
    )


def regex_literal(text: str) -> str:
    """A regular expression (Rust syntax) that matches exactly ``text``."""
    return "".join("\\" + c if c in _RUST_META else c for c in text)


_RUST_META = set("\\.+*?()|[]{}^$#&-~")  # what Rust's regex syntax escapes


def _lark_regex(regex: str) -> str:
    """``regex`` written between the slashes of a Lark regex literal: unescaped slashes and line breaks escaped."""
    out, escaped = [], False
    for c in regex:
        if c == "/" and not escaped:
            out.append("\\/")
        elif c in "\n\r":
            out.append("\\n" if c == "\n" else "\\r")
        else:
            out.append(c)
        escaped = c == "\\" and not escaped
    return "".join(out)


def _matcher(constraint: Constraint) -> Any:
    import llguidance

    return llguidance.LLMatcher(_byte_tokenizer(), grammar(constraint))


@functools.lru_cache(maxsize=256)
def _compiled(key: str) -> str:
    import llguidance

    constraint = Constraint.model_validate_json(key)
    try:
        if constraint.regex is not None:
            text = llguidance.LLMatcher.grammar_from_regex(constraint.regex)
        elif constraint.json_schema is not None:
            text = llguidance.LLMatcher.grammar_from_json_schema(json.dumps(constraint.json_schema))
        else:
            text = llguidance.LLMatcher.grammar_from_lark(constraint.lark or "")
        failed, messages = llguidance.LLMatcher.validate_grammar_with_warnings(text, _byte_tokenizer())
    except (ValueError, TypeError) as e:  # llguidance rejects some inputs before validation
        failed, messages = True, [str(e)]
    if failed:
        first = " ".join(str(messages[0]).split()) if messages else "invalid grammar"
        raise UsageError(f"{constraint.kind} constraint does not compile: {first}; fix the {constraint.kind}")
    return text


class _Bytes:
    """A vocabulary of the 256 bytes plus an end token, so any text is matched byte by byte."""

    eos_token_id = 256
    bos_token_id = None
    tokens = [bytes([i]) for i in range(256)] + [b"<eos>"]
    special_token_ids = [256]

    def __call__(self, text: str | bytes) -> list[int]:
        return list(text if isinstance(text, bytes) else text.encode("utf-8"))


@functools.cache
def _byte_tokenizer() -> Any:
    import llguidance

    return llguidance.LLTokenizer(llguidance.TokenizerWrapper(_Bytes()))
