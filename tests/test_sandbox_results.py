"""What a result says, and who said it: the sandbox's verdicts versus a program's own exceptions, private keyword
arguments, and answers that no float can hold."""

from __future__ import annotations

import json
import math

import pytest

from agentkit.tools.sandbox import SANDBOX_KINDS, Sandbox


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(timeout=2.0, workers=1, memory_mb=256) as sb:
        yield sb


# -- the sandbox's verdicts can't be forged by a program ------------------------------------------------------------

# (what the sandbox itself reports, a program that makes it report that, a program that raises a look-alike)
VERDICTS = [
    ("timeout", "while True:\n    pass\n",
     'class TimeoutError(Exception):\n    pass\nraise TimeoutError("program ran longer than 2.0 s")\n'),
    ("memory", "answer = len('a' * (400 * 10**6))\n",
     'raise MemoryError("the program ran out of memory (limit 256 MB)")\n'),
    ("refused", "answer = getattr(1, 'real')\n",
     'class SecurityError(Exception):\n    pass\nraise SecurityError("getattr() is not allowed in the sandbox")\n'),
    ("syntax", "def solution(:\n",
     'class SyntaxError(Exception):\n    pass\nraise SyntaxError("line 1: invalid syntax")\n'),
    ("result", "x = 1\n",
     'class ResultError(Exception):\n    pass\nraise ResultError("the program defines neither a function solution() '
     "nor a variable 'answer'\")\n"),
    ("crash", "x = iter([1])\nfor i in range(1_000_000):\n    x = map(abs, x)\nanswer = next(x)\n",
     'class WorkerCrash(Exception):\n    pass\nraise WorkerCrash("the program\'s process died (SIGSEGV)")\n'),
]


@pytest.mark.parametrize(("kind", "real", "look_alike"), VERDICTS, ids=[v[0] for v in VERDICTS])
def test_a_look_alike_exception_is_the_programs_own(sandbox, kind, real, look_alike):
    verdict = sandbox.run(real, timeout=2.0 if kind == "timeout" else 30.0)
    assert verdict.kind == kind and verdict.sandbox_error, verdict.error
    fake = sandbox.run(look_alike)
    assert fake.kind == "exception" and not fake.sandbox_error
    assert fake.error_type == verdict.error_type  # same class name (and often the same message) ...
    assert fake.kind != verdict.kind  # ... but never the same kind


def test_kinds_of_ordinary_outcomes(sandbox):
    assert sandbox.run("answer = 1").kind == "ok"
    r = sandbox.run("answer = 1 / 0")
    assert (r.kind, r.error_type, r.sandbox_error) == ("exception", "ZeroDivisionError", False)
    r = sandbox.run("def f():\n    return f()\nanswer = f()\n")
    assert r.kind == "exception" and r.error_type == "RecursionError" and "call depth" in r.error
    r = sandbox.run("import os\n")
    assert r.kind == "exception" and r.error_type == "ImportError"  # catchable by the program, like in Python
    r = sandbox.run("try:\n    getattr(1, 'x')\nexcept Exception:\n    pass\nanswer = 1\n")
    assert r.kind == "refused"  # refusals stay sticky
    r = sandbox.run("answer = 1\n" + "#" * 200_000)
    assert r.kind == "too_long" and r.sandbox_error
    assert SANDBOX_KINDS == {"syntax", "refused", "result", "timeout", "memory", "crash", "too_long"}
    assert json.loads(r.model_dump_json())["kind"] == "too_long"


def test_a_memory_error_from_the_interpreter_is_the_sandboxs(sandbox):
    r = sandbox.run("answer = [0] * (2**40)\n")
    assert r.kind == "memory" and "256 MB" in r.error
    r = sandbox.run("def solution():\n    try:\n        x = 'a' * (400 * 10**6)\n    finally:\n        pass\n")
    assert r.kind == "memory"  # re-raised through a finally: still the interpreter's
    r = sandbox.run("def solution():\n    raise MemoryError('mine')\n")
    assert r.kind == "exception" and r.error == "MemoryError: mine"


# -- private keyword arguments ----------------------------------------------------------------------------------


@pytest.mark.parametrize("source", [
    "from fractions import Fraction\nanswer = str(Fraction(4, 6, _normalize=False))\n",
    "from fractions import Fraction\nanswer = str(Fraction(4, 6, **{'_normalize': False}))\n",
    "from fractions import Fraction\nkw = {'_normalize': False}\nanswer = str(Fraction(4, 6, **kw))\n",
    "from fractions import Fraction\nimport functools\nf = functools.partial(Fraction, _normalize=False)\nanswer = 1\n",
    "class K(str):\n    def startswith(self, p):\n        return False\n"
    "from fractions import Fraction\nanswer = str(Fraction(4, 6, **{K('_normalize'): False}))\n",
], ids=["static", "dynamic", "dynamic-variable", "partial", "str-subclass-key"])
def test_private_keyword_arguments_are_refused(sandbox, source):
    r = sandbox.run(source)
    assert r.kind == "refused" and "_normalize" in r.error, r.error


def test_public_keywords_and_private_parameters_still_work(sandbox):
    src = ("def f(_scale=1, *, step=1):\n    return _scale * step\n"
           "kw = {'step': 3}\nanswer = [f(2), f(2, step=5), f(**kw), dict(a=1)['a'], sorted([3, 1], reverse=True)]\n")
    r = sandbox.run(src)
    assert r.ok and r.value == [2, 10, 3, 1, [3, 1]], r.error


# -- answers are exact, or text, never a silent inf or 0 ---------------------------------------------------------

EXACT = [
    ("decimal-beyond-float", "from decimal import Decimal\nanswer = Decimal('1e400')", 10**400),
    ("decimal-huge-non-integral-text", "from decimal import Decimal, getcontext\ngetcontext().Emax = 10**6\n"
     "answer = Decimal('1.5e5000')", "1.5E+5000"),
    ("decimal-below-float", "from decimal import Decimal\nanswer = Decimal('-1e-400')", "-1E-400"),
    ("decimal-fraction", "from decimal import Decimal\nanswer = Decimal('2.5')", 2.5),
    ("decimal-integral", "from decimal import Decimal\nanswer = Decimal('1e50')", 10**50),
    ("decimal-zero", "from decimal import Decimal\nanswer = Decimal('0E-30')", 0),
    ("decimal-snan", "from decimal import Decimal\nanswer = Decimal('sNaN')", "sNaN"),
    ("decimal-infinity", "from decimal import Decimal\nanswer = Decimal('-Infinity')", -math.inf),
    ("fraction-tiny", "from fractions import Fraction\nanswer = Fraction(1, 10**400)", "1/1" + "0" * 400),
    ("fraction-huge", "from fractions import Fraction\nanswer = Fraction(10**400, 3)", "1" + "0" * 400 + "/3"),
    ("fraction-ordinary", "from fractions import Fraction\nanswer = Fraction(1, 4)", 0.25),
    ("fraction-integral", "from fractions import Fraction\nanswer = Fraction(10**30, 5)", 2 * 10**29),
    ("big-int", "answer = 7**500", 7**500),
]


@pytest.mark.parametrize(("name", "source", "expected"), EXACT, ids=[e[0] for e in EXACT])
def test_answers_convert_exactly(sandbox, name, source, expected):
    r = sandbox.run(source)
    assert r.ok, r.error
    assert r.value == expected and type(r.value) is type(expected)
    json.loads(r.model_dump_json())


def test_an_integer_too_long_for_json_is_a_result_error(sandbox):
    r = sandbox.run("answer = 10**5000")
    assert r.kind == "result" and "digits" in r.error
    r = sandbox.run("from fractions import Fraction\nanswer = Fraction(1, 10**5000)")
    assert r.kind == "result"
