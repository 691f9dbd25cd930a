"""Program-aided language models (PAL; Gao et al., 2022).

The model does not compute: it writes ``def solution(): ...`` and the orchestrator runs the program in the
sandbox (``agentkit.tools.sandbox``); the answer is the value it returns, read by ``agentkit.answers``' exact
reader. Every failure is recorded with the code and the error and scores as wrong; none stops a run: no code
(``no_answer``), a syntax error, an exception, a timeout or no ``solution`` (``sandbox_error``), a value that is
not a number that can be read exactly (``unreadable_result``), and any of these in a program the token limit
cut off (``length``).

Constrained (``constrain=True``), the reply (after the prompt's opening fence) is a program of the skeleton the
exemplars have: ``def solution():``, an indented body, and a ``return`` as its last line.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from agentkit.answers import MAX_DIGITS, canonical_number
from agentkit.llm import LLM, Completion, Constraint, GenerationConfig
from agentkit.runtime import Call, Event, Request
from agentkit.strategies.base import Interpretation, SingleCall, no_answer
from agentkit.strategies.constraints import reply

if TYPE_CHECKING:
    from agentkit.tools.sandbox import ExecResult, Sandbox

_FENCE = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE)
_SEPARATORS = ("\nQuestion:", "\nQ:", "```")


def extract_code(text: str) -> str:
    """The program in a completion: the first fenced block if the text opens with one, else the text itself,
    cut at the exemplar separator and dedented."""
    stripped = text.lstrip()
    if stripped.startswith("```"):
        match = _FENCE.match(stripped)
        code = match.group(1) if match else stripped[3:]
    else:
        code = text
    for separator in _SEPARATORS:
        code = code.split(separator, 1)[0]
    return textwrap.dedent(code).strip("\n")


def numeric_value(value: Any) -> str | None:
    """The canonical answer for a program's value (``agentkit.answers``' exact reader), or None when it is not a
    number that can be written exactly.

    Whole numbers stay exact at any size the sandbox returns (``10**400`` is not rounded to a float); the sandbox
    hands back a ``Decimal`` or ``Fraction`` beyond float range as its exact text (``"1E+400"``, ``"1000.../3"``),
    which is read exactly too, and one with more than ``MAX_DIGITS`` digits (``"1E+10000"``) is None.
    """
    return canonical_number(value) if isinstance(value, (int, float, str)) else None


def _shown(value: Any, width: int = 80, show: Callable[[Any], str] = repr) -> str:
    """``show(value)``, cut to ``width`` characters (an int too long for Python to print is described)."""
    try:
        text = show(value)
    except ValueError:  # an int over Python's int-to-text limit, in it
        return f"a {type(value).__name__} too large to print"
    return text if len(text) <= width else f"{text[: width - 20]}... ({len(text)} characters)"


_shared = None


def shared_sandbox():
    """One warm sandbox (worker pool) for every PAL strategy in the process, started on first use."""
    global _shared
    if _shared is None:
        from agentkit.tools.sandbox import Sandbox

        _shared = Sandbox()
    return _shared


class PAL(SingleCall):
    name = "pal"
    template = "pal"
    # Our exemplar programs are ~30 tokens; 160 leaves room for long ones without letting a looping
    # small model run on for long.
    default_config = GenerationConfig(max_new_tokens=160, stop=["```", "\nQuestion:"])

    def __init__(self, llm: LLM | None = None, *, sandbox: Sandbox | None = None, **kwargs: Any):
        super().__init__(llm, **kwargs)
        self._sandbox = sandbox

    @property
    def sandbox(self) -> Sandbox:
        if self._sandbox is None:
            self._sandbox = shared_sandbox()
        return self._sandbox

    def interpret(self, completion: Completion) -> Generator[Request, Any, Interpretation]:
        code = extract_code(completion.text)
        if not code.strip():
            return no_answer(completion, "program")
        yield Event("program", code)
        result: ExecResult = yield Call(self.sandbox.run, code)
        execution = result.model_dump()
        yield Event("execution", _shown(result.value, 2000, str) if result.ok else str(result.error), execution)
        answer = numeric_value(result.value) if result.ok else None
        if answer is not None:
            return Interpretation(answer=answer, program=code, execution=execution)
        if result.ok:
            failure = "unreadable_result"
            error = (
                f"the program returned {_shown(result.value)}, not a number that can be read exactly "
                f"(at most {MAX_DIGITS} digits)"
            )
        else:
            failure, error = "sandbox_error", result.error
        if completion.finish_reason == "length":  # the program was cut off by the token limit
            failure, error = "length", f"generation hit max_new_tokens inside the program ({error})"
        return Interpretation(failure=failure, error=error, program=code, execution=execution)

    def constraint(self, config: GenerationConfig) -> Constraint:
        """``def solution():`` and an indented body that ends in a ``return`` (the closing fence is a stop)."""
        body = r"(\n([ \t][^\n]*)?)*\n[ \t]+return[ \t(][^\n]*(\n[ \t]*)*"
        return reply(f"/\\n?def solution\\(\\):{body}/", config.stop)
