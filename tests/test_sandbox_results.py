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
    (
        "timeout",
        "while True:\n    pass\n",
        'class TimeoutError(Exception):\n    pass\nraise TimeoutError("program ran longer than 2.0 s")\n',
    ),
    (
        "memory",
        "answer = len('a' * (400 * 10**6))\n",
        'raise MemoryError("the program ran out of memory (limit 256 MB)")\n',
    ),
    (
        "refused",
        "answer = getattr(1, 'real')\n",
        'class SecurityError(Exception):\n    pass\nraise SecurityError("getattr() is not allowed in the sandbox")\n',
    ),
    (
        "syntax",
        "def solution(:\n",
        'class SyntaxError(Exception):\n    pass\nraise SyntaxError("line 1: invalid syntax")\n',
    ),
    (
        "result",
        "x = 1\n",
        'class ResultError(Exception):\n    pass\nraise ResultError("the program defines neither a function solution() '
        "nor a variable 'answer'\")\n",
    ),
    (
        "crash",
        "x = iter([1])\nfor i in range(1_000_000):\n    x = map(abs, x)\nanswer = next(x)\n",
        'class WorkerCrash(Exception):\n    pass\nraise WorkerCrash("the program\'s process died (SIGSEGV)")\n',
    ),
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


@pytest.mark.parametrize(
    "source",
    [
        "def g():\n    yield 1\nit = g()\nnext(it)\nit.throw(MemoryError)\n",
        "def g():\n    yield 1\nit = g()\nit.throw(MemoryError('the program ran out of memory (limit 256 MB)'))\n",
        "def g():\n    yield 1\nit = g()\nlist(it)\nit.throw(MemoryError)\n",
        "def g():\n    yield 1\nit = g()\ntype(it).throw(it, MemoryError)\n",
    ],
    ids=["suspended", "unstarted", "exhausted", "unbound"],
)
def test_a_memory_error_thrown_into_a_generator_is_not_the_sandboxs(sandbox, source):
    r = sandbox.run(source)
    assert r.kind != "memory" and not r.ok, r.error


# -- private keyword arguments ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "from fractions import Fraction\nanswer = str(Fraction(4, 6, _normalize=False))\n",
        "from fractions import Fraction\nanswer = str(Fraction(4, 6, **{'_normalize': False}))\n",
        "from fractions import Fraction\nkw = {'_normalize': False}\nanswer = str(Fraction(4, 6, **kw))\n",
        "from fractions import Fraction\nimport functools\n"
        "f = functools.partial(Fraction, _normalize=False)\nanswer = 1\n",
        "class K(str):\n    def startswith(self, p):\n        return False\n"
        "from fractions import Fraction\nanswer = str(Fraction(4, 6, **{K('_normalize'): False}))\n",
        (
            "from fractions import Fraction\nimport functools\nf = functools.partial(Fraction)\n"
            "f.keywords['_normalize'] = False\nanswer = str(f(4, 6))\n"
        ),
        (
            "from fractions import Fraction\nimport functools\nf = functools.partial(functools.partial(Fraction), 4)\n"
            "f.keywords['_normalize'] = False\nanswer = str(f(6))\n"
        ),
        (
            "class K(str):\n    def __eq__(self, other):\n        return other == '_normalize'\n"
            "    def __hash__(self):\n        return hash('_normalize')\n"
            "from fractions import Fraction\nanswer = str(Fraction(4, 6, **{K('normalize'): False}))\n"
        ),
    ],
    ids=[
        "static",
        "dynamic",
        "dynamic-variable",
        "partial",
        "str-subclass-key",
        "partial-keywords-mutated",
        "nested-partial-keywords-mutated",
        "str-subclass-eq",
    ],
)
def test_private_keyword_arguments_are_refused(sandbox, source):
    r = sandbox.run(source)
    assert r.kind == "refused" and ("_normalize" in r.error or "plain strings" in r.error), r.error


def test_partial_still_works(sandbox):
    src = (
        "import functools\nf = functools.partial(int, base=2)\ng = functools.partial(max, 3)\n"
        "answer = [f('101'), g(1, 7), f.keywords, functools.reduce(functools.partial(pow, mod=10**9), [2, 10])]\n"
    )
    r = sandbox.run(src)
    assert r.ok and r.value == [5, 7, {"base": 2}, 1024], r.error


def test_public_keywords_and_private_parameters_still_work(sandbox):
    src = (
        "def f(_scale=1, *, step=1):\n    return _scale * step\n"
        "kw = {'step': 3}\nanswer = [f(2), f(2, step=5), f(**kw), dict(a=1)['a'], sorted([3, 1], reverse=True)]\n"
    )
    r = sandbox.run(src)
    assert r.ok and r.value == [2, 10, 3, 1, [3, 1]], r.error


# -- answers are exact, or text, never a silent inf or 0 ---------------------------------------------------------

EXACT = [
    ("decimal-beyond-float", "from decimal import Decimal\nanswer = Decimal('1e400')", 10**400),
    (
        "decimal-huge-non-integral-text",
        "from decimal import Decimal, getcontext\ngetcontext().Emax = 10**6\nanswer = Decimal('1.5e5000')",
        "1.5E+5000",
    ),
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


def test_subnormal_results_keep_their_exact_value(sandbox):
    for source, text in [
        ("from decimal import Decimal\nanswer = Decimal('3e-324')", "3E-324"),
        ("from decimal import Decimal\nanswer = Decimal('-1.23456789e-315')", "-1.23456789E-315"),
        ("from fractions import Fraction\nanswer = Fraction(3, 10**320)", "3/1" + "0" * 320),
    ]:
        r = sandbox.run(source)
        assert r.ok and r.value == text, (source, r.value)
    r = sandbox.run("answer = 5e-324")  # a float the program computed is its own answer, exactly
    assert r.ok and r.value == 5e-324


# -- strings arrive exactly as sent, or not at all ----------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("answer = '\\ud83d\\ude00'", id="surrogate-pair"),  # two lone surrogates, one emoji on arrival
        pytest.param("answer = 'a\\ud800b'", id="lone-surrogate"),
        pytest.param("answer = {'\\ud800': 1, '\\ud801': 2}", id="dict-keys"),
        pytest.param("answer = ['ok', {'k': '\\udfff'}]", id="nested"),
    ],
)
def test_strings_that_are_not_text_are_a_result_error(sandbox, source):
    r = sandbox.run(source)
    assert r.kind == "result" and "surrogate" in r.error, (r.value, r.error)


def test_unicode_text_arrives_exactly(sandbox):
    text = "caf\u00e9 \U0001f600 \u4e2d\u6587 \U00010348"
    r = sandbox.run(f"answer = {{{text!r}: [{text!r}]}}")
    assert r.ok and r.value == {text: [text]}
    r = sandbox.run("print('\\ud800x')\nanswer = 1")  # printed output is informational: made text, not refused
    assert r.ok and r.stdout == "\ufffdx\n"


def test_the_answer_cap_is_one_megabyte_of_json(sandbox):
    r = sandbox.run("answer = 'a' * 999_000")
    assert r.ok and len(r.value) == 999_000
    r = sandbox.run("answer = 'a' * 1_050_000")
    assert r.kind == "result" and "too large" in r.error
    r = sandbox.run("answer = ['a' * 100_000] * 10 + ['b' * 10_000]")
    assert r.kind == "result"
