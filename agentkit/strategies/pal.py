"""Program-aided language models (PAL; Gao et al., 2022).

The model does not compute: it writes ``def solution(): ...`` and the orchestrator runs the program in the
sandbox (``agentkit.tools.sandbox``); the answer is the value it returns. Every failure — no code, a syntax
error, an exception, a timeout, no ``solution``, a non-numeric value — is recorded with the code and the error
and scores as wrong; none stops a run.

Constrained (``constrain=True``), the reply (after the prompt's opening fence) is a program of the skeleton the
exemplars have: ``def solution():``, an indented body, and a ``return`` as its last line.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Generator
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from agentkit.answers import canonical_number, parse_number
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
    """The canonical answer for a program's value, or None when it is not a number.

    Whole numbers stay exact at any size (``10**400`` is not rounded to a float); the sandbox hands back a
    ``Decimal`` or ``Fraction`` beyond float range as its exact text (``"1E+400"``), which is read exactly too.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return canonical_number(value) if math.isfinite(value) else None
    if isinstance(value, str):
        exact = _exact_text(value)
        if exact is not None:
            return exact
        number = parse_number(value)
        return canonical_number(number) if number is not None else None
    return None


_EXACT = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d{1,4})?|-?\d+/\d+")


def _exact_text(text: str) -> str | None:
    """A number written exactly (``"1E+400"``, ``"1/3"``): whole ones as digits, others as their float."""
    text = text.strip()
    if not _EXACT.fullmatch(text) or len(text) > 5000:
        return None
    value = Fraction(text)  # exponents have at most 4 digits: at most a ~10,000-digit integer
    if value.denominator == 1:
        return str(value.numerator)
    try:
        number = float(value)
    except OverflowError:
        return text
    return canonical_number(number) if number else text  # a non-zero value that no float holds stays exact


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
        yield Event("execution", str(result.value) if result.ok else str(result.error), execution)
        if not result.ok:
            return Interpretation(failure="sandbox_error", error=result.error, program=code, execution=execution)
        answer = numeric_value(result.value)
        if answer is None:
            error = f"ValueError: the program returned {result.value!r}, not a number"
            return Interpretation(failure="sandbox_error", error=error, program=code, execution=execution)
        return Interpretation(answer=answer, program=code, execution=execution)

    def constraint(self, config: GenerationConfig) -> Constraint:
        """``def solution():`` and an indented body that ends in a ``return`` (the closing fence is a stop)."""
        body = r"(\n([ \t][^\n]*)?)*\n[ \t]+return[ \t(][^\n]*(\n[ \t]*)*"
        return reply(f"/\\n?def solution\\(\\):{body}/", config.stop)
