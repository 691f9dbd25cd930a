"""Our own attack catalogue against agentkit.tools.sandbox.

Every case must end with ``ok=False`` and an error of the expected category, and must leave the host process
exactly as it was (modules, environment, cwd, random state, files in a temp dir). The cases are grouped like
the escapes published against earlier PAL runtimes (LangChain PALChain, smolagents, RestrictedPython itself).
"""

from __future__ import annotations

import os
import random
import sys

import pytest

from agentkit.tools.sandbox import Sandbox

SEC = {"SecurityError"}
IMP = {"ImportError"}
ATTR = {"AttributeError"}
TIME = {"TimeoutError"}
RES = {"ResultError"}

# (id, program, acceptable error types). "{tmp}" is replaced with a per-session temp dir.
ATTACKS: list[tuple[str, str, set[str]]] = [
    # --- imports --------------------------------------------------------------------------------------------
    ("import-os", "import os\nanswer = os.system('id')", IMP),
    ("import-sys", "import sys\nanswer = sys.modules", IMP),
    ("import-subprocess", "import subprocess\nanswer = subprocess.run(['id'])", IMP),
    ("import-importlib", "import importlib\nanswer = importlib.import_module('os')", IMP),
    ("import-builtins", "import builtins\nanswer = builtins.open", IMP | SEC),
    ("import-ctypes", "import ctypes\nanswer = ctypes.CDLL(None)", IMP),
    ("import-socket", "import socket\nanswer = socket.socket()", IMP),
    ("dunder-import-call", "answer = __import__('os')", SEC),
    ("import-submodule-os-path", "import os.path\nanswer = 1", IMP),
    ("from-os-import", "from os import system\nanswer = 1", IMP),
    ("import-collections-abc", "import collections.abc\nanswer = 1", IMP),
    ("from-collections-import-abc", "from collections import abc\nanswer = abc", IMP),
    ("from-datetime-import-sys", "from datetime import sys\nanswer = sys", IMP),
    ("from-fractions-import-math", "from fractions import math\nanswer = math", IMP),
    ("from-re-import-private", "from re import _compiler\nanswer = _compiler", IMP),
    ("relative-import", "from . import sandbox\nanswer = 1", IMP),
    ("star-import-os", "from os import *\nanswer = 1", SEC | IMP),
    ("datetime-sys", "import datetime\nanswer = datetime.sys.modules", ATTR),
    ("re-enum", "import re\nanswer = re.enum.bltns", ATTR),
    ("re-compiler", "import re\nanswer = re._compiler", SEC),
    ("functools-sys", "import functools\nanswer = functools.sys", ATTR),
    ("functools-update-wrapper", "import functools\nanswer = functools.update_wrapper", ATTR),
    ("functools-singledispatch", "import functools\nanswer = functools.singledispatch", ATTR),
    ("statistics-sys", "import statistics\nanswer = statistics.sys", ATTR),
    ("fractions-math-sys", "import fractions\nanswer = fractions.math.sys", ATTR),
    ("decimal-sys", "import decimal\nanswer = decimal.sys", ATTR),
    ("decimal-defaultcontext", "import decimal\ndecimal.DefaultContext.prec = 2\nanswer = 1", ATTR),
    ("calendar-sys", "import calendar\nanswer = calendar.sys", ATTR),
    ("random-os", "import random\nanswer = random._os", SEC),
    ("random-module-attr", "import random\nanswer = random.os", ATTR),
    ("operator-attrgetter", "import operator\nf = operator.attrgetter('__class__')\nanswer = f(1)", ATTR),
    ("operator-methodcaller", "import operator\nanswer = operator.methodcaller('format', 1)", ATTR),
    ("import-typing", "import typing\nanswer = 1", IMP),
    ("import-threading", "import threading\nthreading.Thread(target=print).start()\nanswer = 1", IMP),
    ("import-thread", "import _thread\nanswer = 1", IMP | SEC),
    ("import-multiprocessing", "import multiprocessing\nanswer = 1", IMP),
    ("import-pickle", "import pickle\nanswer = pickle.loads(b'')", IMP),
    ("import-marshal", "import marshal\nanswer = 1", IMP),
    ("import-inspect", "import inspect\nanswer = inspect.currentframe()", IMP),
    ("import-gc", "import gc\nanswer = gc.get_objects()", IMP),
    ("import-time", "import time\ntime.sleep(100)\nanswer = 1", IMP),
    ("from-time-import", "from time import sleep\nanswer = 1", IMP),
    ("import-strptime-helper", "import _strptime\nanswer = _strptime", IMP),
    ("import-fullwidth-os", "import ｏｓ\nanswer = 1", IMP),
    ("import-as-guard-name", "import math as _getattr_\nanswer = 1", SEC),
    # --- builtins -------------------------------------------------------------------------------------------
    ("eval", "answer = eval('1+1')", SEC),
    ("eval-alias", "e = eval\nanswer = e('__import__(\"os\")')", SEC),
    ("exec", "exec('import os')\nanswer = 1", SEC),
    ("compile", "answer = compile('1', 'x', 'eval')", SEC),
    ("open-read", "answer = open('/etc/passwd').read()", SEC),
    ("input", "answer = input()", SEC),
    ("help", "help(len)\nanswer = 1", SEC),
    ("breakpoint", "breakpoint()\nanswer = 1", SEC),
    ("getattr", "answer = getattr(1, 'real')", SEC),
    ("getattr-computed-dunder", "answer = getattr((), '__cl' + 'ass__')", SEC),
    ("setattr", "import math\nsetattr(math, 'pi', 3)\nanswer = 1", SEC),
    ("delattr", "import math\ndelattr(math, 'pi')\nanswer = 1", SEC),
    ("vars", "import math\nanswer = vars(math)", SEC),
    ("dir", "answer = dir()", SEC),
    ("globals", "answer = globals()['__builtins__']", SEC),
    ("locals", "answer = locals()", SEC),
    ("type-3-args", "X = type('X', (), {'__getattr__': print})\nanswer = 1", SEC),
    ("type-of-type-3-args", "T = type(type(1))\nX = T('X', (object,), {})\nanswer = 1", SEC),
    ("metaclass-subclass-call", "class M(type):\n    pass\nX = M('X', (), {})\nanswer = 1", SEC),
    ("super", "answer = super(int, 1)", SEC),
    ("memoryview", "answer = memoryview(b'abc')", SEC),
    ("builtins-name", "answer = __builtins__['eval']", SEC),
    ("mro", "answer = type(1).mro()", SEC),
    ("mro-swallowed", "try:\n    type(1).mro()\nexcept Exception:\n    pass\nanswer = 1", SEC),
    ("format-swallowed", "try:\n    '{0.__class__}'.format(1)\nexcept Exception:\n    pass\nanswer = 1", SEC),
    ("proxy-write-swallowed", "import math\ntry:\n    math.pi = 3\nexcept Exception:\n    pass\nanswer = 1", SEC),
    ("getattr-swallowed", "try:\n    getattr(1, 'x')\nexcept BaseException:\n    pass\nanswer = 1", SEC),
    # --- dunder traversal -----------------------------------------------------------------------------------
    ("subclasses-tuple", "answer = ().__class__.__bases__[0].__subclasses__()", SEC),
    ("list-class", "answer = [].__class__", SEC),
    ("object-subclasses", "answer = object.__subclasses__()", SEC),
    ("func-globals", "def f():\n    pass\nanswer = f.__globals__", SEC),
    ("func-globals-py2-name", "def f():\n    pass\nanswer = f.func_globals", SEC),
    ("func-code", "f = lambda: 0\nanswer = f.__code__.co_consts", SEC),
    ("code-attr-prefix", "f = lambda: 0\nanswer = f.co_consts", SEC),
    ("closure-cell", "def f():\n    x = 1\n    return lambda: x\nanswer = f().cell_contents", SEC),
    ("builtin-self", "answer = len.__self__", SEC),
    ("dict-attr", "class A:\n    pass\nanswer = A.__dict__", SEC),
    ("exception-obj", "try:\n    (1).nope\nexcept AttributeError as e:\n    answer = e.obj", SEC),
    # --- frames ---------------------------------------------------------------------------------------------
    ("gen-gi-frame", "def g():\n    yield 1\nanswer = g().gi_frame.f_back.f_globals", SEC),
    ("genexp-gi-frame", "g = (x for x in [1])\nanswer = g.gi_frame", SEC),
    ("gen-gi-code", "def g():\n    yield 1\nanswer = g().gi_code", SEC),
    ("gen-gi-yieldfrom", "def g():\n    yield from [1]\nanswer = g().gi_yieldfrom", SEC),
    ("coroutine-cr-frame", "async def c():\n    pass\nanswer = c().cr_frame", SEC),
    ("async-gen-ag-frame", "async def a():\n    yield 1\nanswer = a().ag_frame", SEC),
    ("traceback-tb-frame", "try:\n    1/0\nexcept Exception as e:\n    answer = e.__traceback__.tb_frame", SEC),
    (
        "traceback-tb-next",
        "try:\n    1/0\nexcept Exception as e:\n    t = e.with_traceback(None)\n    answer = t.tb_next",
        SEC,
    ),
    ("sys-getframe", "import sys\nanswer = sys._getframe(0).f_back", IMP | SEC),
    ("frame-f-locals", "def g():\n    yield 1\nx = g()\nanswer = x.f_locals", SEC),
    # --- format strings -------------------------------------------------------------------------------------
    ("format-class", "answer = '{0.__class__}'.format(1)", SEC),
    ("format-globals", "def f():\n    pass\nanswer = '{.__globals__}'.format(f)", SEC),
    ("format-item", "answer = '{0[0]}'.format([1])", SEC),
    ("format-nested-spec", "answer = '{0:{1.__class__}}'.format(1, 2)", SEC),
    ("format-map", "answer = '{a.__class__}'.format_map({'a': 1})", SEC),
    ("str-format-unbound", "answer = str.format('{0.__class__}', 1)", SEC),
    ("format-via-type", "answer = type('').format('{0.__class__}', 1)", SEC),
    ("fstring-dunder", "answer = f'{(1).__class__}'", SEC),
    ("fstring-repr-globals", "def f():\n    pass\nanswer = f'{f.__globals__!r}'", SEC),
    ("string-formatter", "import string\nanswer = string.Formatter().get_field('0.__class__', [1], {})", ATTR),
    ("string-template", "import string\nanswer = string.Template", ATTR),
    # --- files and network ----------------------------------------------------------------------------------
    ("write-tmp-file", "f = open('{tmp}/pwned.txt', 'w')\nf.write('x')\nanswer = 1", SEC),
    ("pathlib", "import pathlib\npathlib.Path('{tmp}/pwned.txt').write_text('x')\nanswer = 1", IMP),
    ("io-open", "import io\nanswer = io.open('/etc/passwd').read()", IMP),
    ("shutil-rmtree", "import shutil\nshutil.rmtree('{tmp}')\nanswer = 1", IMP),
    ("urllib", "import urllib.request\nanswer = urllib.request.urlopen('http://127.0.0.1')", IMP),
    ("http-client", "import http.client\nanswer = 1", IMP),
    # --- resource exhaustion --------------------------------------------------------------------------------
    ("infinite-loop", "while True:\n    pass", TIME),
    ("c-level-loop", "import itertools\nanswer = sum(itertools.count())", TIME),
    ("swallowing-loop", "while True:\n    try:\n        pass\n    except:\n        pass", TIME),
    ("swallowing-loop-with-raise", "while True:\n    try:\n        1/0\n    except BaseException:\n        pass", TIME),
    ("try-finally-loop", "try:\n    while True:\n        pass\nfinally:\n    while True:\n        pass", TIME),
    ("string-memory", "answer = 'a' * 10**10", {"MemoryError"}),
    ("list-memory", "answer = [1] * 10**9", {"MemoryError"}),
    ("growing-memory", "x = []\nwhile True:\n    x.append('a' * 10**6)", {"MemoryError"} | TIME),
    ("recursion-bomb", "def f():\n    return f()\nanswer = f()", {"RecursionError"}),
    ("mutual-recursion", "def a(n):\n    return b(n)\ndef b(n):\n    return a(n)\nanswer = a(1)", {"RecursionError"}),
    ("print-flood", "while True:\n    print('x' * 1000)", TIME),
    ("big-power", "answer = 10**10**8", TIME),
    ("regex-backtracking", "import re\nanswer = re.match('(a+)+$', 'a' * 40 + 'b')", TIME),
    ("fork-bomb", "import os\nwhile True:\n    os.fork()", IMP),
    (
        "deep-source-nesting",
        "answer = " + "(" * 300 + "1" + ")" * 300,
        {"SyntaxError", "RecursionError", "MemoryError", "WorkerCrash"},
    ),
    ("huge-source", "answer = 1\n" + "#" * 200_000, {"ValueError"}),
    # --- host mutation --------------------------------------------------------------------------------------
    ("setenv", "import os\nos.environ['PWNED'] = '1'\nanswer = 1", IMP),
    ("chdir", "import os\nos.chdir('/')\nanswer = 1", IMP),
    ("proxy-math-pi", "import math\nmath.pi = 3\nanswer = math.pi", SEC),
    ("proxy-del", "import math\ndel math.pi\nanswer = 1", SEC),
    ("random-seed-overwrite", "import random\nrandom.seed = None\nanswer = 1", SEC),
    ("class-of-module-mutation", "import fractions\nfractions.Fraction.limit_denominator = None\nanswer = 1", SEC),
    ("counter-mutation", "import collections\ncollections.Counter.most_common = len\nanswer = 1", SEC),
    ("exception-class-mutation", "ValueError.pwned = 1\nanswer = 1", SEC),
    ("abc-register", "import numbers\nnumbers.Number.register(str)\nanswer = 1", SEC),
    ("enum-member-mutation", "import re\nre.I.pwned = 1\nanswer = 1", SEC),
    ("library-function-mutation", "import statistics\nstatistics.mean.pwned = 1\nanswer = 1", SEC),
    ("proxy-construct", "import math\nanswer = type(math)(None, 'os', {})", SEC),
    # --- pickling and non-plain answers ---------------------------------------------------------------------
    ("reduce-method", "class A:\n    def __reduce__(self):\n        return (print, ('x',))\nanswer = A()", SEC),
    ("object-answer", "class A:\n    pass\nanswer = A()", RES),
    ("function-answer", "answer = len", RES),
    ("generator-answer", "answer = (i for i in range(3))", RES),
    ("module-answer", "import math\nanswer = math", RES),
    ("int-subclass-answer", "class I(int):\n    def __eq__(self, o):\n        return True\nanswer = I(5)", RES),
    ("str-subclass-answer", "class S(str):\n    pass\nanswer = S('x')", RES),
    ("float-subclass-in-list", "class F(float):\n    pass\nanswer = [1, F(2.0)]", RES),
    ("dict-subclass-answer", "class D(dict):\n    pass\nanswer = D(a=1)", RES),
    ("non-str-key", "answer = {1: 2}", RES),
    ("too-deep-answer", "a = []\nfor i in range(100):\n    a = [a]\nanswer = a", RES),
    ("too-large-answer", "answer = 'x' * 5_000_000", RES),
    ("bytes-answer", "answer = b'abc'", RES),
    # --- decorators and metaclasses -------------------------------------------------------------------------
    ("metaclass-keyword", "class A(metaclass=type):\n    pass\nanswer = 1", SEC),
    ("metaclass-custom", "class M(type):\n    pass\nclass A(metaclass=M):\n    pass\nanswer = 1", SEC),
    ("decorator-returns-eval", "@(lambda f: eval)\ndef g():\n    pass\nanswer = g('1')", SEC),
    ("decorator-getattr", "@getattr\ndef g():\n    pass\nanswer = 1", SEC),
    ("class-getattribute", "class A:\n    def __getattribute__(self, n):\n        return 1\nanswer = 1", SEC),
    ("class-init-subclass", "class A:\n    def __init_subclass__(cls):\n        pass\nanswer = 1", SEC),
    ("class-slots", "class A:\n    __slots__ = ()\nanswer = 1", SEC),
    ("class-del", "class A:\n    def __del__(self):\n        pass\nanswer = 1", SEC),
    ("class-format", "class A:\n    def __format__(self, s):\n        return s\nanswer = 1", SEC),
    # --- guard shadowing ------------------------------------------------------------------------------------
    ("shadow-default-arg", "def f(_getattr_=None):\n    return 1\nanswer = f()", SEC),
    ("shadow-posonly-arg", "def f(_getiter_, /):\n    return 1\nanswer = f(1)", SEC),
    ("shadow-kwonly-arg", "def f(*, _write_=None):\n    return 1\nanswer = f()", SEC),
    ("shadow-varargs", "def f(*_getitem_):\n    return 1\nanswer = f()", SEC),
    ("shadow-lambda-default", "f = lambda _write_=dict: 1\nanswer = f()", SEC),
    ("shadow-class-body", "class A:\n    _getitem_ = dict\nanswer = 1", SEC),
    (
        "shadow-nested-function",
        "def outer():\n    def _getiter_(x):\n        return x\n    return 1\nanswer = outer()",
        SEC,
    ),
    ("shadow-for-target", "for _getiter_ in [1]:\n    pass\nanswer = 1", SEC),
    ("shadow-except-name", "try:\n    1/0\nexcept Exception as _getattr_:\n    pass\nanswer = 1", SEC),
    ("shadow-walrus", "answer = (_getattr_ := 1)", SEC),
    ("shadow-comprehension", "answer = [_getiter_ for _getiter_ in [1]]", SEC),
    ("shadow-global", "def f():\n    global _getattr_\n    return 1\nanswer = f()", SEC),
    (
        "shadow-nonlocal",
        "def f():\n    _print = 1\n    def g():\n        nonlocal _print\n    return 1\nanswer = f()",
        SEC,
    ),
    ("shadow-del", "del _getattr_\nanswer = 1", SEC),
    ("shadow-print-collector", "_print = 1\nanswer = 1", SEC),
    ("shadow-tmp-name", "_tmp0 = 1\nanswer = 1", SEC),
    ("shadow-metaclass", "__metaclass__ = type\nanswer = 1", SEC),
    ("shadow-builtins", "__builtins__ = {}\nanswer = 1", SEC),
    # --- unicode look-alikes (the parser applies NFKC before any check) ------------------------------------
    ("nfkc-fullwidth-eval", "ｅｖａｌ('1')\nanswer = 1", SEC),
    ("nfkc-superscript-eval", "ᵉval('1')\nanswer = 1", SEC),
    ("nfkc-dunder-class", "answer = ().__ｃｌａｓｓ__", SEC),
    ("nfkc-getattr", "answer = ｇｅｔａｔｔｒ(1, 'real')", SEC),
    ("nfkc-guard-name", "_ｇｅｔａｔｔｒ_ = 1\nanswer = 1", SEC),
    # --- BaseException and odd solutions --------------------------------------------------------------------
    ("system-exit", "def solution():\n    raise SystemExit(0)", {"SystemExit"}),
    ("keyboard-interrupt", "raise KeyboardInterrupt", {"KeyboardInterrupt"}),
    ("generator-exit", "def solution():\n    raise GeneratorExit()", {"GeneratorExit"}),
    ("base-exception", "raise BaseException('boom')", {"BaseException"}),
    ("custom-base-exception", "class Boom(BaseException):\n    pass\nraise Boom()", {"Boom"}),
    ("solution-not-function", "solution = 42", RES),
    ("solution-builtin", "solution = len", RES),
    ("solution-class", "class solution:\n    pass", RES),
    ("no-answer", "x = 1", RES),
    ("match-statement", "match 1:\n    case x:\n        pass\nanswer = 1", SEC),
    ("try-star", "try:\n    pass\nexcept* ValueError:\n    pass\nanswer = 1", SEC),
]


def _host_fingerprint(tmp_dir: str) -> dict:
    return {
        "modules": sorted(sys.modules),
        "environ": dict(os.environ),
        "cwd": os.getcwd(),
        "random": random.getstate(),
        "tmp": sorted(os.listdir(tmp_dir)),
    }


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(timeout=1.0, workers=2, memory_mb=512) as sb:
        assert sb.run("answer = 1").ok  # warm: the first call may import lazily in the host
        yield sb


@pytest.fixture(scope="module")
def tmp_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("sandbox_attacks")
    (d / "keep.txt").write_text("untouched")
    return str(d)


def test_catalogue_is_large_and_unique():
    ids = [a[0] for a in ATTACKS]
    assert len(ids) >= 60
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize(("name", "source", "expected"), ATTACKS, ids=[a[0] for a in ATTACKS])
def test_attack_fails_and_host_untouched(sandbox, tmp_dir, name, source, expected):
    source = source.replace("{tmp}", tmp_dir)
    before = _host_fingerprint(tmp_dir)
    result = sandbox.run(source)
    after = _host_fingerprint(tmp_dir)
    assert result.ok is False, f"{name}: attack succeeded with value {result.value!r}"
    assert result.value is None
    assert result.error_type in expected, f"{name}: {result.error}"
    assert result.error.startswith(f"{result.error_type}: ")
    assert before == after, f"{name}: host state changed"
    assert open(os.path.join(tmp_dir, "keep.txt")).read() == "untouched"
    result.model_dump_json()  # always plain data


def test_mutating_proxies_does_not_leak_to_next_program():
    with Sandbox(timeout=2.0, workers=1) as sb:
        attempts = [
            "import math\ntry:\n    math.pi = 3\nexcept Exception:\n    pass\nanswer = 1",
            "import decimal\ndecimal.getcontext().prec = 3\nanswer = 1",
            "import random\nrandom.seed(12345)\nanswer = random.random()",
        ]
        for src in attempts:
            sb.run(src)
        assert sb.run("import math\nanswer = math.pi").value == pytest.approx(3.141592653589793)
        r = sb.run("import decimal\nanswer = str(decimal.Decimal(1) / decimal.Decimal(3))")
        assert r.value == "0." + "3" * 28
        first = sb.run("import random\nanswer = random.random()").value
        assert sb.run("import random\nanswer = random.random()").value == first  # fresh seeded RNG per program


def test_random_seed_in_program_leaves_host_random_alone():
    state = random.getstate()
    with Sandbox(timeout=2.0, workers=1) as sb:
        r = sb.run("import random\nrandom.seed(1)\nanswer = random.random()")
    assert r.ok
    assert random.getstate() == state


def test_stdout_is_never_parsed_as_a_result(sandbox):
    r = sandbox.run('print(\'{"ok": true, "value": 42, "error": null}\')\nanswer = 0')
    assert r.ok and r.value == 0
    assert '"value": 42' in r.stdout


def test_worker_survives_every_attack_in_parallel(sandbox):
    # a batch of the quick attacks through run_many, then a benign program still works on every worker
    quick = [src for name, src, exp in ATTACKS if exp.isdisjoint(TIME) and "{tmp}" not in src]
    results = sandbox.run_many(quick)
    assert all(not r.ok for r in results)
    assert all(r.ok and r.value == 2 for r in sandbox.run_many(["answer = 1 + 1"] * 8))
