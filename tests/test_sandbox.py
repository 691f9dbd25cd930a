"""Benign programs, limits and API of agentkit.tools.sandbox.

The benign programs are written like the PAL programs of GSM8K/GSM-Hard: plain Python, floats and ints,
``math``, ``round``, ``//``, ``%``, nested functions, lists, a little ``datetime``. Each must give the same value
in the sandbox as under plain Python (checked against a plain ``exec`` here).
"""

from __future__ import annotations

import json
import math
import os
import textwrap
import threading
import time

import pytest
from sandbox_procs import children, template_pid

from agentkit.tools.sandbox import AVAILABLE_MODULES, ExecResult, Sandbox, SandboxClosedError


def _src(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


BENIGN: list[tuple[str, str, object]] = [
    (
        "pal-money-left",
        """
        def solution():
            \"\"\"Olivia has $23. She bought five bagels for $3 each. How much money does she have left?\"\"\"
            money_initial = 23
            bagels = 5
            bagel_cost = 3
            money_spent = bagels * bagel_cost
            money_left = money_initial - money_spent
            result = money_left
            return result
        """,
        8,
    ),
    (
        "pal-float-arithmetic",
        """
        def solution():
            price = 2.5
            quantity = 7
            discount = 0.15
            total = price * quantity * (1 - discount)
            return total
        """,
        2.5 * 7 * (1 - 0.15),
    ),
    (
        "pal-floor-div-mod",
        """
        def solution():
            eggs = 1234567
            per_box = 12
            boxes = eggs // per_box
            left = eggs % per_box
            return boxes * 10 + left
        """,
        (1234567 // 12) * 10 + 1234567 % 12,
    ),
    (
        "pal-round",
        """
        def solution():
            speed = 47.3
            hours = 3.7
            return round(speed * hours, 2)
        """,
        round(47.3 * 3.7, 2),
    ),
    (
        "pal-math-floor-ceil",
        """
        import math
        def solution():
            students = 1037
            per_bus = 45
            return math.ceil(students / per_bus) + math.floor(7.9) + math.sqrt(16)
        """,
        math.ceil(1037 / 45) + 7 + 4.0,
    ),
    (
        "pal-from-math",
        """
        from math import sqrt, pi
        def solution():
            return round(pi * sqrt(2) ** 2, 6)
        """,
        round(math.pi * math.sqrt(2) ** 2, 6),
    ),
    (
        "pal-import-as",
        """
        import math as m
        def solution():
            return m.gcd(84, 126) + m.factorial(5)
        """,
        42 + 120,
    ),
    (
        "top-level-answer",
        """
        apples = 17
        eaten = 4
        answer = apples - eaten
        """,
        13,
    ),
    (
        "loop-accumulate",
        """
        def solution():
            total = 0
            for day in range(1, 31):
                total += day * 2
            return total
        """,
        sum(d * 2 for d in range(1, 31)),
    ),
    (
        "while-loop",
        """
        def solution():
            balance = 1000.0
            years = 0
            while balance < 2000:
                balance *= 1.07
                years += 1
            return years
        """,
        11,
    ),
    (
        "list-comprehension",
        """
        def solution():
            squares = [i * i for i in range(10) if i % 2 == 0]
            return sum(squares)
        """,
        sum(i * i for i in range(10) if i % 2 == 0),
    ),
    (
        "dict-and-set-comprehension",
        """
        def solution():
            words = ['apple', 'banana', 'cherry', 'avocado']
            lengths = {w: len(w) for w in words}
            initials = {w[0] for w in words}
            return lengths['banana'] + len(initials)
        """,
        6 + 3,
    ),
    (
        "dict-counter-plus-equals",
        """
        def solution():
            counts = {}
            for ch in 'mississippi':
                if ch not in counts:
                    counts[ch] = 0
                counts[ch] += 1
            return counts
        """,
        {"m": 1, "i": 4, "s": 4, "p": 2},
    ),
    (
        "nested-subscript-augassign",
        """
        def solution():
            grid = [[0, 0], [0, 0]]
            for i in range(2):
                for j in range(2):
                    grid[i][j] += i + j
            stock = {'a': [1, 2]}
            stock['a'][1] *= 10
            return grid, stock
        """,
        [[[0, 1], [1, 2]], {"a": [1, 20]}],
    ),
    (
        "tuple-unpacking",
        """
        def solution():
            a, b = 3, 4
            (c, d), e = (5, 6), 7
            first, *rest = [1, 2, 3, 4]
            for x, y in [(1, 2), (3, 4)]:
                a += x * y
            return a + b + c + d + e + first + sum(rest)
        """,
        3 + 2 + 12 + 4 + 5 + 6 + 7 + 1 + 9,
    ),
    (
        "sorted-key-lambda",
        """
        def solution():
            people = [('ann', 31), ('bob', 25), ('cy', 40)]
            by_age = sorted(people, key=lambda p: p[1], reverse=True)
            return [name for name, age in by_age]
        """,
        ["cy", "ann", "bob"],
    ),
    (
        "generator-function",
        """
        def evens(n):
            for i in range(n):
                if i % 2 == 0:
                    yield i
        def solution():
            gen = (x * 3 for x in evens(10))
            return sum(gen) + next(iter([5]))
        """,
        sum(x * 3 for x in range(0, 10, 2)) + 5,
    ),
    (
        "try-except-zero-division",
        """
        def solution():
            try:
                rate = 10 / 0
            except ZeroDivisionError:
                rate = -1
            try:
                int('x')
            except (ValueError, TypeError) as e:
                rate -= 1
            return rate
        """,
        -2,
    ),
    (
        "fstring-numbers",
        """
        def solution():
            total = 1234.5678
            count = 42
            return f"{count} items cost ${total:.2f} ({count / 7:.1f} per day, {count:05d}, {total:,.1f})"
        """,
        "42 items cost $1234.57 (6.0 per day, 00042, 1,234.6)",
    ),
    (
        "str-format-plain-fields",
        """
        answer = '{} + {} = {total}'.format(1, 2, total=3) + ' / {0:.1f}'.format(2.25)
        """,
        "1 + 2 = 3 / 2.2",
    ),
    (
        "percent-format",
        """
        answer = '%d%% of %s' % (50, 'cake')
        """,
        "50% of cake",
    ),
    (
        "datetime-arithmetic",
        """
        import datetime
        def solution():
            start = datetime.date(2024, 2, 20)
            end = start + datetime.timedelta(days=14)
            return end.strftime('%Y-%m-%d') + ' ' + str((end - start).days)
        """,
        "2024-03-05 14",
    ),
    (
        "from-datetime-import",
        """
        from datetime import datetime, timedelta
        def solution():
            t = datetime(2023, 1, 1, 9, 30) + timedelta(hours=5, minutes=45)
            parsed = datetime.strptime('2023-03-15', '%Y-%m-%d')
            return t.hour * 100 + t.minute + parsed.day + parsed.weekday()
        """,
        15 * 100 + 15 + 15 + 2,
    ),
    (
        "fractions",
        """
        from fractions import Fraction
        def solution():
            share = Fraction(1, 3) + Fraction(1, 6)
            return share * 4
        """,
        2,
    ),
    (
        "fraction-non-integral",
        """
        from fractions import Fraction
        answer = Fraction(7, 4)
        """,
        1.75,
    ),
    (
        "decimal",
        """
        from decimal import Decimal, ROUND_HALF_UP
        def solution():
            price = Decimal('19.99') * 3
            return price.quantize(Decimal('0.1'), rounding=ROUND_HALF_UP)
        """,
        60.0,
    ),
    (
        "nested-functions-closure",
        """
        def solution():
            def make_adder(n):
                def add(x):
                    return x + n
                return add
            add5 = make_adder(5)
            return add5(10) + make_adder(1)(1)
        """,
        17,
    ),
    (
        "nonlocal-counter",
        """
        def solution():
            count = 0
            def tick():
                nonlocal count
                count += 1
            for _ in range(5):
                tick()
            return count
        """,
        5,
    ),
    (
        "recursion",
        """
        def fib(n):
            return n if n < 2 else fib(n - 1) + fib(n - 2)
        def solution():
            return fib(20)
        """,
        6765,
    ),
    (
        "collections-counter",
        """
        from collections import Counter, defaultdict, deque
        def solution():
            c = Counter('banana')
            d = defaultdict(int)
            for w in ['a', 'b', 'a']:
                d[w] += 1
            q = deque([1, 2, 3])
            q.rotate(1)
            return c.most_common(1)[0][1] + d['a'] + q[0]
        """,
        3 + 2 + 3,
    ),
    (
        "itertools-functools",
        """
        import itertools
        from functools import reduce, lru_cache
        @lru_cache(maxsize=None)
        def ways(n):
            return 1 if n <= 1 else ways(n - 1) + ways(n - 2)
        def solution():
            combos = len(list(itertools.combinations(range(6), 3)))
            product = reduce(lambda a, b: a * b, [1, 2, 3, 4])
            return combos + product + ways(10)
        """,
        20 + 24 + 89,
    ),
    (
        "statistics",
        """
        import statistics
        def solution():
            scores = [88, 92, 79, 93, 85]
            return statistics.mean(scores) + statistics.median(scores)
        """,
        87.4 + 88,
    ),
    (
        "class-with-methods",
        """
        class Account:
            rate = 0.05
            def __init__(self, balance):
                self.balance = balance
            def grow(self, years):
                for _ in range(years):
                    self.balance += self.balance * self.rate
                return self.balance
        def solution():
            acct = Account(1000)
            return round(acct.grow(2), 2)
        """,
        1102.5,
    ),
    (
        "min-max-abs-divmod",
        """
        def solution():
            values = [3, -7, 12, 5]
            q, r = divmod(max(values), 5)
            return min(values) + abs(min(values)) + q * 10 + r + pow(2, 10)
        """,
        0 + 22 + 1024,
    ),
    (
        "string-methods",
        """
        def solution():
            sentence = 'The quick brown fox'
            words = sentence.lower().split()
            return '-'.join(w.capitalize() for w in words) + str(sentence.count('o'))
        """,
        "The-Quick-Brown-Fox2",
    ),
    (
        "isinstance-type-checks",
        """
        def solution():
            items = [1, 2.5, 'x', [1]]
            return [type(i) == int or isinstance(i, float) for i in items]
        """,
        [True, True, False, False],
    ),
    (
        "walrus-and-ternary",
        """
        def solution():
            data = [4, 8, 15]
            if (n := len(data)) > 0:
                return n * 2 if n > 2 else 0
            return -1
        """,
        6,
    ),
    (
        "annotations",
        """
        def solution() -> float:
            total: float = 0.0
            count: int
            for x in [1.5, 2.5]:
                total += x
            return total
        """,
        4.0,
    ),
    (
        "underscore-local-names",
        """
        def solution():
            _total = 10
            for _ in range(3):
                _total -= 1
            return _total
        """,
        7,
    ),
    (
        "reserved-looking-names",
        """
        def solution():
            pages = 120
            printed = pages * 3
            builtins = 4
            return printed + builtins
        """,
        364,
    ),
    (
        "main-guard-and-print",
        """
        def solution():
            return 12
        if __name__ == '__main__':
            print(solution())
        """,
        12,
    ),
    (
        "future-import",
        """
        from __future__ import annotations
        def solution() -> int:
            return 2 ** 10
        """,
        1024,
    ),
    (
        "star-import-math",
        """
        from math import *
        answer = floor(sqrt(50)) + gcd(12, 18)
        """,
        7 + 6,
    ),
    (
        "random-is-seeded",
        """
        import random
        answer = random.randint(1, 10**9) == random.Random(0).randint(1, 10**9) or True
        """,
        True,
    ),
    (
        "bool-and-none-and-nan",
        """
        answer = [True, None, float('inf') > 10**308, 0.1 + 0.2]
        """,
        [True, None, True, 0.1 + 0.2],
    ),
    (
        "string-module-and-re",
        """
        import re, string
        answer = len(re.findall(r'[aeiou]', 'education')) + len(string.digits)
        """,
        5 + 10,
    ),
    (
        "calendar-heapq-bisect",
        """
        import calendar, heapq, bisect
        h = [5, 1, 4]
        heapq.heapify(h)
        answer = calendar.monthrange(2024, 2)[1] + heapq.heappop(h) + bisect.bisect([1, 3, 5], 4)
        """,
        29 + 1 + 2,
    ),
]


def _plain_python(source: str):
    ns: dict = {"__name__": "__plain__"}
    exec(source, ns)  # our own trusted test programs, to check the sandbox returns the same values
    if "solution" in ns:
        return ns["solution"]()
    return ns["answer"]


def _jsonish(value):
    """What the sandbox hands back for a plain-Python value (tuples become lists, etc.)."""
    return json.loads(json.dumps(value, default=float))


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(timeout=2.0, workers=2, max_output=200) as sb:
        yield sb


def test_benign_catalogue_is_large():
    assert len(BENIGN) >= 30


@pytest.mark.parametrize(("name", "source", "expected"), BENIGN, ids=[b[0] for b in BENIGN])
def test_benign_program(sandbox, name, source, expected):
    source = _src(source)
    result = sandbox.run(source)
    assert result.ok, f"{name}: {result.error}"
    assert result.error is None and result.error_type is None
    if isinstance(expected, float):
        assert result.value == pytest.approx(expected, rel=1e-12)
    else:
        assert result.value == _jsonish(expected)
    json.loads(result.model_dump_json())


@pytest.mark.parametrize(
    ("name", "source", "expected"),
    [b for b in BENIGN if "random" not in b[0]],
    ids=[b[0] for b in BENIGN if "random" not in b[0]],
)
def test_benign_program_matches_plain_python(sandbox, name, source, expected):
    source = _src(source)
    plain = _plain_python(source)
    got = sandbox.run(source).value
    if isinstance(plain, float):
        assert got == pytest.approx(plain, rel=1e-12)
    elif type(plain).__name__ in ("Fraction", "Decimal"):
        assert got == pytest.approx(float(plain))
    else:
        assert got == _jsonish(plain)


def test_solution_preferred_over_answer(sandbox):
    r = sandbox.run("answer = 1\ndef solution():\n    return 2\n")
    assert r.ok and r.value == 2


def test_errors_are_readable(sandbox):
    r = sandbox.run("def solution():\n    x = 1\n    return x +\n")
    assert not r.ok and r.error_type == "SyntaxError"
    assert r.error.startswith("SyntaxError: line 3: ")
    r = sandbox.run("def solution():\n    return 1 / 0\n")
    assert r.error == "ZeroDivisionError: division by zero"
    r = sandbox.run("x = 5\n")
    assert r.error_type == "ResultError" and "solution()" in r.error and "answer" in r.error
    r = sandbox.run("import numpy\n")
    assert r.error_type == "ImportError" and "import of 'numpy' is not allowed (allowed: " in r.error
    r = sandbox.run("return 5\n")
    assert r.error_type == "SyntaxError" and r.error.startswith("SyntaxError: line 1: ")
    r = sandbox.run("answer = undefined_name\n")
    assert r.error == "NameError: name 'undefined_name' is not defined"


def test_stdout_captured(sandbox):
    r = sandbox.run("print('hello', 42)\nprint('a', 'b', sep='-', end='!')\nanswer = 1\n")
    assert r.ok and r.stdout == "hello 42\na-b!" and r.stdout_truncated is False


def test_stdout_capped(sandbox):
    r = sandbox.run("for i in range(100000):\n    print('line', i)\nanswer = 7\n")
    assert r.ok and r.value == 7
    assert len(r.stdout) == 200 and r.stdout_truncated is True


def test_stdout_kept_on_failure(sandbox):
    r = sandbox.run("print('before')\nraise ValueError('boom')\n")
    assert not r.ok and r.stdout == "before\n" and r.error == "ValueError: boom"


def test_result_conversion(sandbox):
    r = sandbox.run(
        "import datetime\nanswer = {'t': (1, 2), 's': {3, 1, 2}, 'd': datetime.date(2024, 1, 2),"
        " 'td': datetime.timedelta(hours=1)}\n"
    )
    assert r.ok and r.value == {"t": [1, 2], "s": [1, 2, 3], "d": "2024-01-02", "td": "1:00:00"}
    r = sandbox.run("class I(int):\n    pass\nanswer = [I(1)]\n")
    assert r.error_type == "ResultError"
    r = sandbox.run("answer = {1: 'x'}\n")
    assert r.error_type == "ResultError"


def test_exec_result_is_json_serialisable(sandbox):
    r = sandbox.run("answer = [1, 2.5, 'x', None, True, {'k': []}]\n")
    data = json.loads(r.model_dump_json())
    assert data["ok"] is True and data["value"] == [1, 2.5, "x", None, True, {"k": []}]
    assert set(data) >= {"ok", "value", "error", "error_type", "stdout", "duration"}
    assert isinstance(r, ExecResult) and r.duration >= 0


def _gone(pid: int, within: float = 5.0) -> bool:
    end = time.monotonic() + within
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < end:
        time.sleep(0.01)
    return not os.path.exists(f"/proc/{pid}")


_HAS_CHILDREN = os.path.exists(f"/proc/self/task/{os.getpid()}/children")


def test_timeout_kills_the_program_not_the_template():
    with Sandbox(timeout=0.5, workers=1) as sb:
        template = sb._slots[0].proc.pid
        t0 = time.monotonic()
        r = sb.run("while True:\n    pass\n")
        assert time.monotonic() - t0 < 5
        assert r.ok is False and r.error == "TimeoutError: program ran longer than 0.5 s" and r.kind == "timeout"
        assert 0.5 <= r.duration < 2
        assert sb.run("answer = 3\n").value == 3
        r = sb.run("import itertools\nanswer = sum(itertools.count())\n")
        assert r.error_type == "TimeoutError" and r.kind == "timeout"
        r = sb.run("while True:\n    pass\n", timeout=0.2)  # per-call override
        assert r.error == "TimeoutError: program ran longer than 0.2 s" and r.duration < 1
        assert sb.run("answer = 4\n").value == 4
        assert sb._slots[0].proc.pid == template  # no restart: the template never runs a program


@pytest.mark.skipif(not _HAS_CHILDREN, reason="reads /proc/PID/task/PID/children (CONFIG_PROC_CHILDREN)")
def test_timeout_kills_and_reaps_the_programs_process():
    with Sandbox(timeout=0.5, workers=1) as sb:
        template = template_pid(sb._slots[0])
        end = time.monotonic() + 5
        while len(children(template)) < 2 and time.monotonic() < end:
            time.sleep(0.01)
        before = children(template)  # the children forked ahead; the program goes to one of them
        assert before
        assert sb.run("while True:\n    pass\n").kind == "timeout"
        end = time.monotonic() + 5
        while all(os.path.exists(f"/proc/{pid}") for pid in before) and time.monotonic() < end:
            time.sleep(0.01)
        assert sum(not os.path.exists(f"/proc/{pid}") for pid in before) == 1  # one killed and reaped


def test_cpu_limit():
    with Sandbox(timeout=20, cpu_seconds=1, workers=1) as sb:
        t0 = time.monotonic()
        r = sb.run("while True:\n    pass\n")
        assert r.error_type == "TimeoutError" and "CPU" in r.error and r.kind == "timeout"
        assert time.monotonic() - t0 < 15  # well before the 20 s wall clock
        assert sb.run("answer = 5\n").value == 5


def test_memory_limit():
    with Sandbox(timeout=5, memory_mb=200, workers=1) as sb:
        r = sb.run("answer = len('a' * (300 * 10**6))\n")
        assert r.error_type == "MemoryError" and "200 MB" in r.error and r.kind == "memory"
        assert sb.run("answer = len('a' * (50 * 10**6))\n").value == 50 * 10**6


def test_recursion_limit_configurable():
    with Sandbox(timeout=5, max_recursion=100, workers=1) as sb:
        src = "def depth(n):\n    return 0 if n == 0 else 1 + depth(n - 1)\n"
        assert sb.run(src + "answer = depth(80)\n").value == 80
        assert sb.run(src + "answer = depth(500)\n").error_type == "RecursionError"


def test_allowed_imports_configurable():
    with Sandbox(timeout=5, allowed_imports=["math"], workers=1) as sb:
        assert sb.run("import math\nanswer = math.floor(2.5)\n").value == 2
        r = sb.run("import datetime\nanswer = 1\n")
        assert r.error == "ImportError: import of 'datetime' is not allowed (allowed: math)"
    with pytest.raises(ValueError):
        Sandbox(allowed_imports=["os"])


def test_run_many_parallel_and_ordered(sandbox):
    sources = [f"def solution():\n    return {i} * 3\n" for i in range(50)]
    sources[7] = "raise ValueError('seven')\n"
    results = sandbox.run_many(sources)
    assert [r.value for i, r in enumerate(results) if i != 7] == [i * 3 for i in range(50) if i != 7]
    assert results[7].error == "ValueError: seven"
    assert sandbox.run_many([]) == []


def test_run_many_uses_all_workers(monkeypatch):
    # Both programs must be in flight at once: each waits at a two-party barrier before its worker runs it.
    # Were run_many sequential, the first would wait alone and the barrier would break.
    barrier = threading.Barrier(2, timeout=30)
    real_run_on = Sandbox._run_on
    used = []

    def run_on(self, slot, source, timeout):
        barrier.wait()
        used.append(id(slot))
        return real_run_on(self, slot, source, timeout)

    monkeypatch.setattr(Sandbox, "_run_on", run_on)
    with Sandbox(timeout=10, workers=2) as sb:
        results = sb.run_many(["answer = 1", "answer = 2"])
    assert [r.value for r in results] == [1, 2]
    assert len(set(used)) == 2  # two different workers


def test_misuse_raises():
    sb = Sandbox(timeout=1, workers=1)
    with pytest.raises(TypeError):
        sb.run(b"answer = 1")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        sb.run(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        sb.run_many("answer = 1")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        sb.run_many(["answer = 1", 3])  # type: ignore[list-item]
    sb.close()
    sb.close()  # idempotent
    with pytest.raises(SandboxClosedError):
        sb.run("answer = 1")
    with pytest.raises(SandboxClosedError):
        sb.run_many(["answer = 1"])
    with pytest.raises(ValueError):
        Sandbox(timeout=0)
    with pytest.raises(ValueError):
        Sandbox(workers=0)


@pytest.mark.skipif(not _HAS_CHILDREN, reason="reads /proc/PID/task/PID/children (CONFIG_PROC_CHILDREN)")
def test_close_reaps_templates_and_theirchildren():
    with Sandbox(timeout=1, workers=2) as sb:
        assert sb.run("answer = 1").ok
        pids = [s.proc.pid for s in sb._slots] + [template_pid(s) for s in sb._slots]
        programs = set().union(*(children(template_pid(s)) for s in sb._slots))
        assert all(os.path.exists(f"/proc/{p}") for p in pids) and programs
    assert not any(os.path.exists(f"/proc/{p}") for p in pids)
    assert all(_gone(p) for p in programs)


def test_program_cannot_raise_in_host(sandbox):
    for src in [
        "raise SystemExit(1)",
        "raise KeyboardInterrupt",
        "def solution():\n    raise GeneratorExit",
        "\x00",
        "answer = '\\ud800'",
        "def solution(x):\n    return x",
    ]:
        r = sandbox.run(src)
        assert isinstance(r, ExecResult)
        json.loads(r.model_dump_json())


def test_lone_surrogates_fail_an_answer_and_are_replaced_in_output(sandbox):
    r = sandbox.run("print('\\ud800')\nanswer = ['\\udfff', {'\\ud800': 1}]\n")
    assert r.kind == "result" and "U+DFFF" in r.error and r.stdout == "\ufffd\n"
    json.loads(r.model_dump_json())


def test_layers_reported(sandbox):
    layers = sandbox.layers
    assert {"netns", "uid", "no_new_privs", "rlimits"} <= set(layers)
    assert "RLIMIT_AS" in layers["rlimits"] and "RLIMIT_FSIZE" in layers["rlimits"]


def test_available_modules_match_worker():
    from agentkit.tools import _sandbox_worker

    assert tuple(sorted(AVAILABLE_MODULES)) == _sandbox_worker.KNOWN_MODULES
