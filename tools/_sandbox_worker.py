"""Template process of :mod:`agentkit.tools.sandbox` -- the half of the sandbox that runs untrusted code.

This file is run as a *script* (``python -I _sandbox_worker.py CONFIG_JSON CONTROL_FD``) by the parent, never
imported by it, and imports only the standard library and RestrictedPython: a program that escapes the language
layer lands in a process that holds nothing of the host's (no agentkit state, no model, no open files but its
pipes).

The process is a *template*: it imports and warms everything allowed, hardens itself, freezes its heap
(``gc.freeze``) and from then on only forks. Every program runs in a child of its own, forked before the program
exists, that runs exactly that one program and exits; no program ever runs in the template, so every child starts
from the same state, which no program has touched. Caches inside allowed modules, ABC registrations, objects
whose code would run later, memory and garbage: whatever a program leaves behind dies with its process.

Protocol. The control socket (``SOCK_SEQPACKET``, one JSON object per message) carries, template -> parent:
``{"ready": true, "layers": {...}}`` once; ``{"child": pid}`` with two file descriptors attached (SCM_RIGHTS), the
write end of the child's request pipe and the read end of its reply pipe; ``{"exit": pid, "signal"|"code": ...,
"cpu": seconds}`` when a child is reaped. Parent -> template: ``{"kill": pid}`` (the wall clock ran out, or the
child's reply is in). The parent writes ``{"source": "..."}`` to the child's request pipe and closes it; the child
answers with one line,
``{"kind": str, "value": <json>, "error_type": str|None, "error": str|None, "stdout": str,
"stdout_truncated": bool}``. A child holds only its own two pipes (fds 1 and 2 are ``/dev/null``): it can't reach
the control socket, the template, or another program's pipes. The parent treats every reply as hostile input.

Layers (see docs/sandbox.md):

1. the template, once: network, mount, IPC and PID namespaces (in a user namespace when not root; the network
   namespace alone, or nothing, where the OS allows no more), an empty read-only tmpfs as its root, PID 1 of its
   PID namespace, ``PR_SET_NO_NEW_PRIVS``, not dumpable, no core dumps, file size 0; each child, before it reads
   its program: PID 1 of a PID namespace of its own (an IPC namespace too without seccomp), drops root to
   ``nobody`` and every capability, dies with the template, sets its own rlimits (address space, CPU seconds,
   no new processes, 16 files) and installs a seccomp filter (:func:`_seccomp_filter`);
2. RestrictedPython compilation with a stricter policy (:class:`SandboxPolicy`) and guards that really guard
   (``RunState.getattr_``, ``RunState.write_``, safe ``str.format``, ``_`` keyword arguments refused, ...);
3. a namespace, builtins and guards built by the template and inherited by each child untouched, module proxies
   and a ``random.Random`` made on first import, a fresh decimal context; proxies expose an explicit list of public
   names and refuse writes;
4. the answer is converted to plain JSON data with exact ``type(x) is ...`` checks before it leaves.
"""

from __future__ import annotations
import __future__

import _string  # the parser behind str.format; used to vet format strings
import ast
import bisect
import builtins
import calendar
import cmath
import collections
import ctypes
import datetime
import decimal
import dis
import errno
import fractions
import functools
import gc
import heapq
import itertools
import json
import math
import numbers
import operator
import os
import random
import re
import resource
import select
import signal
import socket
import statistics
import string
import sys
import time
import types
import warnings

from RestrictedPython import compile_restricted_exec
from RestrictedPython.Guards import guarded_iter_unpack_sequence, guarded_unpack_sequence
from RestrictedPython.transformer import INSPECT_ATTRIBUTES, IOPERATOR_TO_STR, RestrictingNodeTransformer

# ----------------------------------------------------------------------------------------------------------------
# errors raised inside the sandbox


class SecurityError(Exception):
    """A guard refused an operation. Refusals are *sticky*: the run fails even if the program catches this."""


_current_state: RunState | None = None  # the run in progress (a worker runs one program at a time)


def _refuse(message: str) -> SecurityError:
    """Record a refusal on the current run (so it is sticky) and return the exception to raise."""
    if _current_state is not None:
        return _current_state.refuse(message)
    return SecurityError(message)


class _ProgramError(Exception):
    """Internal: a failure the sandbox itself reports (``kind``, ``error_type: message``); no program code runs
    after it. ``kind`` is one of "syntax", "refused", "result" (see ``ExecResult.kind`` in the parent)."""

    def __init__(self, kind: str, error_type: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.error_type = error_type
        self.message = message


# ----------------------------------------------------------------------------------------------------------------
# compile-time policy


def _set_locations(new: ast.AST, old: ast.AST) -> ast.AST:
    for node in ast.walk(new):
        if "lineno" in node._attributes:
            node.lineno = getattr(old, "lineno", 1)
            node.end_lineno = getattr(old, "end_lineno", node.lineno)
            node.col_offset = getattr(old, "col_offset", 0)
            node.end_col_offset = getattr(old, "end_col_offset", 0)
    return new


_PRIVATE_NAME = re.compile(r"_[A-Za-z0-9](?:[A-Za-z0-9_]*[A-Za-z0-9])?")
_GENERATED_NAME = re.compile(r"_print|_tmp[0-9]*")
# reserved by RestrictedPython for Zope's sake, ordinary variables here ("pages printed", ...)
_ORDINARY_NAMES = frozenset({"printed", "builtins"})
_EXTRA_MAGIC_METHODS = frozenset(
    {
        "__repr__",
        "__str__",
        "__hash__",
        "__len__",
        "__iter__",
        "__next__",
        "__getitem__",
        "__setitem__",
        "__delitem__",
        "__bool__",
        "__add__",
        "__radd__",
        "__iadd__",
        "__sub__",
        "__rsub__",
        "__isub__",
        "__mul__",
        "__rmul__",
        "__imul__",
        "__truediv__",
        "__rtruediv__",
        "__floordiv__",
        "__rfloordiv__",
        "__mod__",
        "__rmod__",
        "__pow__",
        "__rpow__",
        "__neg__",
        "__pos__",
        "__abs__",
        "__int__",
        "__float__",
        "__round__",
        "__call__",
        "__enter__",
        "__exit__",
    }
)


class SandboxPolicy(RestrictingNodeTransformer):
    """RestrictedPython's policy, adjusted so ordinary PAL programs run while every guard still applies.

    * ``n += 1`` on a name is native (RestrictedPython routes it through ``_inplacevar_``); on items and
      attributes (``d[k] += 1``, ``self.n += 1``, which RestrictedPython refuses) it is rewritten to temporaries
      plus ``_getitem_``/``_getattr_``, ``_inplacevar_`` and ``_write_``, so the guards still run;
    * annotated assignments (``total: float = 0``) become plain assignments; annotations are dropped, so none is
      ever stored (and so never evaluated by anything like ``typing.get_type_hints``);
    * ``nonlocal`` is allowed (RestrictedPython denies it); names in ``global``/``nonlocal`` are checked like any
      other name (no ``global _getattr_``);
    * names with one leading underscore (``_total``) are allowed, except the generated ``_print``/``_tmpN`` and
      anything ending in ``_`` (every guard name does); attribute names starting with ``_`` stay forbidden;
    * ``printed`` and ``builtins`` are ordinary names (RestrictedPython reserves them for Zope);
    * ``__name__`` may be read (it is ``"__main__"``), so ``if __name__ == "__main__":`` works;
    * ``from math import *`` is expanded to the module's exported names;
    * classes may define a few more dunder methods (``_EXTRA_MAGIC_METHODS``), never ones that change attribute
      lookup, class creation, pickling or finalisation.
    """

    def check_name(self, node: ast.AST, name: str | None, allow_magic_methods: bool = False) -> None:
        if name is not None:
            if name in _ORDINARY_NAMES:
                return
            # `_total`, `_helper`: one leading underscore, no trailing one, not a name the transformer generates.
            # Every guard name ends in "_" (`_getattr_`, `_write_`, ...) and the two generated ones are reserved.
            if _PRIVATE_NAME.fullmatch(name) and not _GENERATED_NAME.fullmatch(name):
                return
            # a few more dunder *methods* than RestrictedPython allows (__repr__, __add__, __len__, ...);
            # never the ones that change attribute lookup, class creation, pickling or finalisation
            if allow_magic_methods and name in _EXTRA_MAGIC_METHODS and getattr(node, "col_offset", 0) != 0:
                return
        super().check_name(node, name, allow_magic_methods)

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id == "__name__" and isinstance(node.ctx, ast.Load):
            return node  # `if __name__ == "__main__":` reads a plain string
        if node.id in _ORDINARY_NAMES:
            return node  # RestrictedPython's magic `printed` variable is not used here: a plain name
        return super().visit_Name(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> ast.AST:
        if [a.name for a in node.names] == ["*"] and node.level == 0 and node.module in _STATIC_EXPORTS:
            names = _RANDOM_EXPORTS if node.module == "random" else sorted(_STATIC_EXPORTS[node.module])
            node = _set_locations(
                ast.ImportFrom(module=node.module, names=[ast.alias(name=n) for n in names], level=0), node
            )
        return super().visit_ImportFrom(node)

    def visit_keyword(self, node: ast.keyword) -> ast.AST:
        # `Fraction(4, 6, _normalize=False)`: private keyword parameters are internals, like private attributes
        # (`**{"_x": 1}` is checked at run time by _apply_)
        if node.arg is not None and node.arg.startswith("_"):
            self.error(node, f'keyword argument "{node.arg}" is not allowed: names starting with "_" are private.')
            return node
        return super().visit_keyword(node)

    def _check_names(self, node: ast.Global | ast.Nonlocal) -> ast.AST:
        for name in node.names:
            self.check_name(node, name)
        return node

    def visit_Global(self, node: ast.Global) -> ast.AST:
        return self._check_names(node)

    def visit_Nonlocal(self, node: ast.Nonlocal) -> ast.AST:
        return self._check_names(node)

    def visit_AnnAssign(self, node: ast.AnnAssign):
        if node.value is None:  # a bare annotation `x: int` does nothing at run time once annotations are dropped
            return _set_locations(ast.Pass(), node)
        assign = ast.Assign(targets=[node.target], value=node.value)
        _set_locations(assign, node)
        # location fields of the target/value sub-nodes are kept as they are
        return self.visit_Assign(assign)

    def visit_AugAssign(self, node: ast.AugAssign):
        target = node.target
        if isinstance(target, ast.Name):
            # `n += 1` stays a native in-place operation (RestrictedPython would route it through
            # _inplacevar_, a call per operation): rebinding a local name reaches nothing, the name itself is
            # checked by visit_Name, and no shared mutable object is reachable to be mutated in place.
            return self.node_contents_visit(node)
        op = IOPERATOR_TO_STR[type(node.op)]
        if isinstance(target, ast.Attribute):
            if target.attr.startswith("_") or target.attr in INSPECT_ATTRIBUTES:
                self.error(node, f'"{target.attr}" is an invalid attribute name.')
                return node
            obj = self.visit(target.value)
            value = self.visit(node.value)
            t_obj = self.gen_tmp_name()
            read = ast.Call(
                ast.Name("_getattr_", ast.Load()), [ast.Name(t_obj, ast.Load()), ast.Constant(target.attr)], []
            )
            store = ast.Attribute(
                ast.Call(ast.Name("_write_", ast.Load()), [ast.Name(t_obj, ast.Load())], []), target.attr, ast.Store()
            )
            stmts = [ast.Assign([ast.Name(t_obj, ast.Store())], obj)]
        elif isinstance(target, ast.Subscript):
            if any(isinstance(n, ast.Slice) for n in ast.walk(target.slice)):
                self.error(node, "Augmented assignment to a slice is not supported; write a[i:j] = a[i:j] + x.")
                return node
            obj = self.visit(target.value)
            index = self.visit(target.slice)
            value = self.visit(node.value)
            t_obj, t_idx = self.gen_tmp_name(), self.gen_tmp_name()
            read = ast.Call(
                ast.Name("_getitem_", ast.Load()), [ast.Name(t_obj, ast.Load()), ast.Name(t_idx, ast.Load())], []
            )
            store = ast.Subscript(
                ast.Call(ast.Name("_write_", ast.Load()), [ast.Name(t_obj, ast.Load())], []),
                ast.Name(t_idx, ast.Load()),
                ast.Store(),
            )
            stmts = [ast.Assign([ast.Name(t_obj, ast.Store())], obj), ast.Assign([ast.Name(t_idx, ast.Store())], index)]
        else:  # pragma: no cover - the grammar allows nothing else
            self.not_allowed(node)
            return node
        combined = ast.Call(ast.Name("_inplacevar_", ast.Load()), [ast.Constant(op), read, value], [])
        stmts.append(ast.Assign([store], combined))
        return [_set_locations(s, node) for s in stmts]


# ----------------------------------------------------------------------------------------------------------------
# module proxies

_PROXY_TOKEN = object()  # only this module can build proxies


class ModuleProxy:
    """A read-only stand-in for an allowed module: exactly the listed public names, nothing else.

    It has no ``__name__``, on purpose: CPython's ``from pkg import name`` falls back to
    ``sys.modules[pkg.__name__ + '.' + name]`` when ``name`` is missing, which would hand out real submodules.
    """

    __slots__ = ("_sb_name", "_sb_attrs")

    def __init__(self, token: object, name: str, attrs: dict) -> None:
        if token is not _PROXY_TOKEN:
            raise _refuse("module proxies cannot be created by programs")
        object.__setattr__(self, "_sb_name", name)
        object.__setattr__(self, "_sb_attrs", types.MappingProxyType(dict(attrs)))

    def __getattr__(self, name: str):
        attrs = object.__getattribute__(self, "_sb_attrs")
        try:
            return attrs[name]
        except KeyError:
            modname = object.__getattribute__(self, "_sb_name")
            raise AttributeError(f"module '{modname}' has no attribute '{name}' in the sandbox") from None

    def __setattr__(self, name: str, value: object) -> None:
        raise _refuse(f"module '{object.__getattribute__(self, '_sb_name')}' is read-only in the sandbox")

    __delattr__ = __setattr__

    def __repr__(self) -> str:
        return f"<sandboxed module '{object.__getattribute__(self, '_sb_name')}'>"


def _public(module: types.ModuleType, exclude: set[str] = frozenset()) -> dict:
    return {n: getattr(module, n) for n in dir(module) if not n.startswith("_") and n not in exclude}


def _pick(module: types.ModuleType, names: list[str]) -> dict:
    return {n: getattr(module, n) for n in names if hasattr(module, n)}


def _check_keywords(keys) -> None:
    """Keyword names must be plain ``str`` and not private: a ``str`` subclass could *compare* equal to a private
    parameter name (``__eq__``) while not starting with ``_`` itself."""
    for key in keys:
        if type(key) is not str:
            raise _refuse(
                "keyword argument names must be plain strings in the sandbox, not "
                f"{getattr(type(key), '__name__', '?')!s:.40} objects"
            )
        if key.startswith("_"):
            raise _refuse(f"keyword argument {key!r} is not allowed in the sandbox (it starts with '_')")


class _Partial(functools.partial):
    """``functools.partial`` whose ``keywords`` -- a plain dict that a program may change after the fact -- are
    checked at every call, like the keywords of any other call."""

    __slots__ = ()

    def __call__(self, /, *args, **kwargs):
        _check_keywords(self.keywords)
        _check_keywords(kwargs)
        return functools.partial.__call__(self, *args, **kwargs)


_Partial.__name__ = _Partial.__qualname__ = "partial"
_Partial.__module__ = "functools"


_RANDOM_METHODS = [
    "random",
    "uniform",
    "randint",
    "randrange",
    "choice",
    "choices",
    "shuffle",
    "sample",
    "gauss",
    "normalvariate",
    "lognormvariate",
    "expovariate",
    "vonmisesvariate",
    "gammavariate",
    "triangular",
    "betavariate",
    "paretovariate",
    "weibullvariate",
    "getrandbits",
    "seed",
    "randbytes",
]

# Every exported name was reviewed: no module objects, no mutable module-level containers, no function that turns
# a *string* into an attribute access (operator.attrgetter/methodcaller, functools.update_wrapper/wraps,
# functools.singledispatch, which evaluates string annotations), nothing that prints to the real stdout or
# changes process-wide state (calendar.setfirstweekday, LocaleTextCalendar, decimal.DefaultContext).
_STATIC_EXPORTS: dict[str, dict] = {
    "math": _public(math),
    "cmath": _public(cmath),
    "fractions": _pick(fractions, ["Fraction"]),
    "decimal": _pick(
        decimal,
        [
            "Decimal",
            "Context",
            "localcontext",
            "getcontext",
            "setcontext",
            "DecimalException",
            "InvalidOperation",
            "DivisionByZero",
            "Overflow",
            "Underflow",
            "Inexact",
            "Rounded",
            "Subnormal",
            "Clamped",
            "FloatOperation",
            "ROUND_UP",
            "ROUND_DOWN",
            "ROUND_CEILING",
            "ROUND_FLOOR",
            "ROUND_HALF_UP",
            "ROUND_HALF_DOWN",
            "ROUND_HALF_EVEN",
            "ROUND_05UP",
            "MAX_PREC",
            "MAX_EMAX",
            "MIN_EMIN",
            "MIN_ETINY",
        ],
    ),
    "datetime": _pick(
        datetime, ["date", "datetime", "time", "timedelta", "timezone", "tzinfo", "MINYEAR", "MAXYEAR", "UTC"]
    ),
    "statistics": _pick(
        statistics,
        [
            "mean",
            "fmean",
            "geometric_mean",
            "harmonic_mean",
            "median",
            "median_low",
            "median_high",
            "median_grouped",
            "mode",
            "multimode",
            "quantiles",
            "pstdev",
            "pvariance",
            "stdev",
            "variance",
            "correlation",
            "covariance",
            "linear_regression",
            "NormalDist",
            "StatisticsError",
        ],
    ),
    "itertools": _public(itertools),
    "collections": _pick(collections, ["Counter", "defaultdict", "OrderedDict", "deque", "namedtuple", "ChainMap"]),
    "functools": {**_pick(functools, ["reduce", "lru_cache", "cache", "cmp_to_key"]), "partial": _Partial},
    "operator": _public(operator, exclude={"attrgetter", "methodcaller"}),
    "string": _pick(
        string,
        [
            "ascii_letters",
            "ascii_lowercase",
            "ascii_uppercase",
            "digits",
            "hexdigits",
            "octdigits",
            "punctuation",
            "printable",
            "whitespace",
            "capwords",
        ],
    ),
    "re": _pick(
        re,
        [
            "compile",
            "search",
            "match",
            "fullmatch",
            "findall",
            "finditer",
            "sub",
            "subn",
            "split",
            "escape",
            "purge",
            "error",
            "Pattern",
            "Match",
            "A",
            "ASCII",
            "I",
            "IGNORECASE",
            "M",
            "MULTILINE",
            "S",
            "DOTALL",
            "X",
            "VERBOSE",
            "U",
            "UNICODE",
            "NOFLAG",
        ],
    ),
    "calendar": {
        **_pick(
            calendar,
            [
                "isleap",
                "leapdays",
                "monthrange",
                "weekday",
                "monthcalendar",
                "timegm",
                "weekheader",
                "Calendar",
                "IllegalMonthError",
                "IllegalWeekdayError",
                "MONDAY",
                "TUESDAY",
                "WEDNESDAY",
                "THURSDAY",
                "FRIDAY",
                "SATURDAY",
                "SUNDAY",
            ],
        ),
        # the originals are shared, lazily-formatting objects with a writable `format` attribute
        "month_name": tuple(calendar.month_name),
        "month_abbr": tuple(calendar.month_abbr),
        "day_name": tuple(calendar.day_name),
        "day_abbr": tuple(calendar.day_abbr),
    },
    "heapq": _pick(
        heapq, ["heappush", "heappop", "heapify", "heapreplace", "heappushpop", "nlargest", "nsmallest", "merge"]
    ),
    "bisect": _pick(bisect, ["bisect", "bisect_left", "bisect_right", "insort", "insort_left", "insort_right"]),
    "numbers": _pick(numbers, ["Number", "Complex", "Real", "Rational", "Integral"]),
    "random": {},  # built per run from a fresh random.Random
}

KNOWN_MODULES = tuple(sorted(_STATIC_EXPORTS))
_RANDOM_EXPORTS = sorted([*_RANDOM_METHODS, "Random"])

# Helpers that C code of allowed modules imports at run time (see RunState.import_); all imported at start-up.
_C_LEVEL_IMPORTS = frozenset({"time", "_strptime"})


# ----------------------------------------------------------------------------------------------------------------
# builtins

_FORBIDDEN_BUILTINS = [
    "eval",
    "exec",
    "compile",
    "open",
    "input",
    "help",
    "breakpoint",
    "getattr",
    "setattr",
    "delattr",
    "hasattr",
    "vars",
    "dir",
    "globals",
    "locals",
    "super",
    "memoryview",
    "exit",
    "quit",
    "id",
]

_SAFE_BUILTIN_NAMES = [
    "abs",
    "all",
    "any",
    "ascii",
    "bin",
    "bool",
    "bytes",
    "callable",
    "chr",
    "complex",
    "dict",
    "divmod",
    "enumerate",
    "filter",
    "float",
    "format",
    "frozenset",
    "hash",
    "hex",
    "int",
    "isinstance",
    "issubclass",
    "iter",
    "len",
    "list",
    "map",
    "max",
    "min",
    "next",
    "object",
    "oct",
    "ord",
    "pow",
    "range",
    "repr",
    "reversed",
    "round",
    "set",
    "slice",
    "sorted",
    "str",
    "sum",
    "tuple",
    "zip",
    "staticmethod",
    "classmethod",
    "property",
    "NotImplemented",
    "Ellipsis",
    # exceptions, for try/except and raise
    "BaseException",
    "Exception",
    "ArithmeticError",
    "AssertionError",
    "AttributeError",
    "FloatingPointError",
    "GeneratorExit",
    "ImportError",
    "IndexError",
    "KeyError",
    "KeyboardInterrupt",
    "LookupError",
    "MemoryError",
    "ModuleNotFoundError",
    "NameError",
    "NotImplementedError",
    "OverflowError",
    "RecursionError",
    "RuntimeError",
    "StopIteration",
    "SystemExit",
    "TypeError",
    "UnboundLocalError",
    "UnicodeError",
    "ValueError",
    "ZeroDivisionError",
]
_BASE_BUILTINS = {name: getattr(builtins, name) for name in _SAFE_BUILTIN_NAMES}


class _SafeTypeMeta(type):
    def __instancecheck__(cls, obj: object) -> bool:
        return isinstance(obj, type)

    def __subclasscheck__(cls, sub: object) -> bool:
        return isinstance(sub, type) and issubclass(sub, type)

    def __repr__(cls) -> str:
        return "<class 'type'>"


# ----------------------------------------------------------------------------------------------------------------
# per-run state and guards

_BLOCKED_ATTR_PREFIXES = ("_", "f_", "co_", "tb_", "gi_", "cr_", "ag_", "func_", "im_")
_BLOCKED_ATTRS = frozenset(INSPECT_ATTRIBUTES) | {
    "mro",
    "cell_contents",
    "f_trace_lines",
    "gi_suspended",
    "format",
    "format_map",
    "register",
}
_WRITABLE_BASES = (list, dict, set, bytearray, collections.deque)
_DECIMAL_SIGNAL_DICT = type(decimal.Context().traps)
_IMMUTABLE_EXACT = frozenset({int, float, complex, bool, str, bytes, tuple, frozenset, range, type(None)})
_INPLACE_OPS = {
    "+=": operator.iadd,
    "-=": operator.isub,
    "*=": operator.imul,
    "/=": operator.itruediv,
    "//=": operator.ifloordiv,
    "%=": operator.imod,
    "**=": operator.ipow,
    "<<=": operator.ilshift,
    ">>=": operator.irshift,
    "|=": operator.ior,
    "^=": operator.ixor,
    "&=": operator.iand,
    "@=": operator.imatmul,
}


def _check_format_string(fmt: str, depth: int = 0) -> None:
    """Refuse replacement fields that reach attributes or items (``{0.__class__}``, ``{x[k]}``)."""
    if depth > 2:
        raise ValueError("Max string recursion exceeded")
    for _literal, field, spec, _conv in _string.formatter_parser(fmt):
        if field is not None:
            _first, rest = _string.formatter_field_name_split(field)
            for _is_attr, _key in rest:
                raise _refuse(
                    f"format field {field!r} reaches an attribute or item; str.format accepts only plain fields "
                    "like {}, {0} or {name} in the sandbox (f-strings work normally)"
                )
        if spec:
            _check_format_string(spec, depth + 1)


class RunState:
    """Everything one program gets: globals, builtins, guards, captured output. Built fresh for every run."""

    def __init__(self, cfg: dict) -> None:
        self.max_output = cfg["max_output"]
        self.allowed = frozenset(cfg["allowed_imports"])
        self.random_seed = cfg["random_seed"]
        self.violations: list[str] = []
        self.out: list[str] = []
        self.out_len = 0
        self.truncated = False
        self.classes: set[type] = set()
        self.modules: dict[str, ModuleProxy] = {}
        self.globals: dict = {}

    # -- refusal -----------------------------------------------------------------------------------------------
    def refuse(self, message: str) -> SecurityError:
        self.violations.append(message)
        return SecurityError(message)

    # -- output ------------------------------------------------------------------------------------------------
    def write(self, text: str) -> None:
        if self.truncated:
            return
        room = self.max_output - self.out_len
        if len(text) > room:
            text = text[:room]
            self.truncated = True
        self.out.append(text)
        self.out_len += len(text)

    # -- the guards --------------------------------------------------------------------------------------------
    def getattr_(self, obj: object, name: str, *default):
        if type(name) is not str:
            raise self.refuse("attribute names must be plain strings")
        if name.startswith(_BLOCKED_ATTR_PREFIXES) or name in _BLOCKED_ATTRS:
            if name in ("format", "format_map"):
                if isinstance(obj, str) and not isinstance(obj, type):
                    return self._safe_format(str.__str__(obj), name)
                if type(obj) in self.classes:
                    return getattr(obj, name, *default)
            elif name == "register" and (type(obj) in self.classes or (isinstance(obj, type) and obj in self.classes)):
                return getattr(obj, name, *default)
            raise self.refuse(f"access to attribute {name!r} is not allowed in the sandbox")
        if name == "obj" and isinstance(obj, BaseException):
            raise self.refuse("access to attribute 'obj' of exceptions is not allowed in the sandbox")
        if name == "throw" and (obj is types.GeneratorType or isinstance(obj, types.GeneratorType)):
            # it raises any exception inside the generator, where no `raise` of the program is to be seen
            # (so a thrown MemoryError would pass for the interpreter's)
            raise self.refuse("generator.throw() is not allowed in the sandbox")
        return getattr(obj, name, *default)

    def _safe_format(self, text: str, which: str):
        def format(*args, **kwargs):  # noqa: A001 - mirrors str.format
            _check_format_string(text)
            return text.format(*args, **kwargs)

        def format_map(mapping):
            _check_format_string(text)
            return text.format_map(mapping)

        return format if which == "format" else format_map

    def write_(self, obj: object):
        cls = type(obj)
        if cls in _IMMUTABLE_EXACT or isinstance(obj, _WRITABLE_BASES):
            return obj  # containers the program built, or immutables that refuse writes themselves
        if cls in self.classes or (isinstance(obj, type) and obj in self.classes):
            return obj  # classes defined by this program and their instances
        if cls is types.FunctionType and obj.__globals__ is self.globals:
            return obj  # functions defined by this program
        if cls is decimal.Context or cls is _DECIMAL_SIGNAL_DICT:
            return obj  # decimal contexts (and their traps/flags) are per program: replaced before every run
        what = "module" if cls is ModuleProxy else f"'{getattr(cls, '__name__', '?')}'"
        raise self.refuse(f"cannot modify {what} objects in the sandbox")

    def inplacevar_(self, op: str, x: object, y: object):
        fn = _INPLACE_OPS.get(op)
        if fn is None:
            raise self.refuse(f"unsupported in-place operator {op!r}")
        return fn(x, y)

    def apply_(self, f, *args, **kwargs):
        """Every call with ``*args`` or ``**kwargs``: keyword names starting with ``_`` are private."""
        _check_keywords(kwargs)
        return f(*args, **kwargs)

    def make_class(self, name, bases, namespace, **kwargs):
        cls = type(name, bases, namespace, **kwargs)
        self.classes.add(cls)
        return cls

    def import_(self, name, globals=None, locals=None, fromlist=(), level=0):
        if type(fromlist) is list and not fromlist and name in _C_LEVEL_IMPORTS and name in sys.modules:
            # C code of an allowed module (datetime.strptime/strftime) imports helpers through the *calling
            # frame's* __import__, i.e. this one, with an empty list as fromlist -- a form `import` statements
            # never produce (they pass None or a tuple). The module goes to that C code, not to the program.
            return sys.modules[name]
        if level != 0:
            raise ImportError("relative imports are not allowed in the sandbox")
        if name == "__future__" and type(name) is str:
            # `from __future__ import annotations` is a compiler directive; the runtime import only binds names
            return ModuleProxy(_PROXY_TOKEN, name, {n: True for n in __future__.all_feature_names})
        if type(name) is not str:
            raise self.refuse("module names must be plain strings")
        if name not in self.allowed:
            raise ImportError(f"import of '{name}' is not allowed (allowed: {', '.join(sorted(self.allowed))})")
        proxy = self.modules.get(name)
        if proxy is None:
            attrs = _STATIC_EXPORTS[name]
            if name == "random":
                rng = random.Random(self.random_seed)
                attrs = {m: getattr(rng, m) for m in _RANDOM_METHODS if hasattr(rng, m)}
                attrs["Random"] = random.Random  # the class; instances made from it are the program's own
            proxy = self.modules[name] = ModuleProxy(_PROXY_TOKEN, name, attrs)
        for item in fromlist or ():
            if type(item) is not str or item not in object.__getattribute__(proxy, "_sb_attrs"):
                raise ImportError(f"cannot import name {str(item)!r} from '{name}' (not exposed in the sandbox)")
        return proxy

    def make_type(self):
        state = self

        class type_(metaclass=_SafeTypeMeta):  # noqa: N801 - stands in for the builtin `type`
            def __new__(cls, *args):
                if len(args) != 1:
                    raise state.refuse("type() with 3 arguments (creating classes dynamically) is not allowed")
                t = type(args[0])
                return type_ if issubclass(t, type) else t  # never hand out a metaclass

        return type_

    def builtins(self) -> dict:
        b = dict(_BASE_BUILTINS)
        for name in _FORBIDDEN_BUILTINS:
            b[name] = self._forbidden(name)
        b["__build_class__"] = builtins.__build_class__  # used by `class` statements; unnameable by programs
        b["type"] = self.make_type()
        b["__import__"] = self.import_
        return b

    def _forbidden(self, name: str):
        def forbidden(*args, **kwargs):
            raise self.refuse(f"{name}() is not allowed in the sandbox")

        forbidden.__name__ = forbidden.__qualname__ = name
        return forbidden

    def make_globals(self) -> dict:
        state = self

        class PrintCollector:
            """RestrictedPython's print target: everything goes to the run's capped buffer."""

            def __init__(self, _getattr_=None) -> None:
                pass

            def _call_print(self, *objects, sep=" ", end="\n", file=None, flush=False):
                if sep is None:
                    sep = " "
                if end is None:
                    end = "\n"
                if type(sep) is not str or type(end) is not str:
                    raise TypeError("sep and end must be None or strings")
                state.write(sep.join(str(o) for o in objects) + end)

        self.globals = {
            "__builtins__": self.builtins(),
            "__name__": "__main__",
            "__metaclass__": self.make_class,
            "_getattr_": self.getattr_,
            "_getitem_": operator.getitem,
            "_getiter_": iter,
            "_write_": self.write_,
            "_inplacevar_": self.inplacevar_,
            "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
            "_unpack_sequence_": guarded_unpack_sequence,
            "_apply_": self.apply_,
            "_print_": PrintCollector,
        }
        return self.globals


# ----------------------------------------------------------------------------------------------------------------
# turning the answer into plain data

_MAX_DEPTH = 20
_MAX_ITEMS = 10_000
# Python refuses to turn ints of more than 4300 digits into text (and back); 13 000 bits is about 3 900 digits
_MAX_INT_BITS = 13_000


def _exact_int(n: int) -> int:
    if n.bit_length() > _MAX_INT_BITS:
        raise _ProgramError(
            "result",
            "ResultError",
            f"the answer is an integer of about {int(n.bit_length() * 0.30103)} digits; at most "
            f"about {int(_MAX_INT_BITS * 0.30103)} digits can be returned",
        )
    return n


def _float_or_exact(f: float, exact: str) -> float | str:
    """``f`` when it is a faithful float (finite and normal: not rounded to 0, nor to a subnormal, which holds
    fewer digits -- 3E-324 would come back as 5e-324), else the exact text."""
    return f if math.isfinite(f) and abs(f) >= sys.float_info.min else exact


_SURROGATE = re.compile("[\ud800-\udfff]")


def _text(s: str) -> str:
    """A string of the answer, which must be text: a surrogate code point is half of a UTF-16 pair, not a
    character, and could not arrive as it was sent (a pair of them arrives as the one character they encode)."""
    if not s.isascii():
        m = _SURROGATE.search(s)
        if m:
            raise _ProgramError(
                "result",
                "ResultError",
                f"the answer contains the surrogate code point U+{ord(m.group()):04X}, which is not text",
            )
    return s


def _as_text(s: str) -> str:
    """Printed output and error messages, which are informational: each surrogate becomes U+FFFD."""
    return s if s.isascii() else _SURROGATE.sub("\ufffd", s)


def to_plain(value: object, depth: int = 0, budget: list | None = None):
    """Convert the answer to JSON data with exact type checks; anything else is refused.

    int/float/str/bool/None pass (ints up to about 3 900 digits); list/tuple become lists; dicts need str keys;
    set/frozenset become (sorted when possible) lists; an integral Fraction or Decimal becomes an int, another one
    the nearest float -- or, when no float holds it (beyond float range, or so small it would round to 0), its
    exact text ("1E+400", "1/10**400" as "1/1000...0"), never a silent inf or 0. date/datetime/time become ISO
    strings, timedelta becomes str(). Subclasses of any of these are refused (an int subclass cannot pose as an
    int).
    """
    if budget is None:
        budget = [_MAX_ITEMS]
    budget[0] -= 1
    if budget[0] < 0:
        raise _ProgramError("result", "ResultError", f"answer has more than {_MAX_ITEMS} items")
    if depth > _MAX_DEPTH:
        raise _ProgramError("result", "ResultError", f"answer is nested deeper than {_MAX_DEPTH} levels")
    cls = type(value)
    if value is None or cls is bool or cls is float:
        return value
    if cls is str:
        return _text(value)
    if cls is int:
        return _exact_int(value)
    if cls is list or cls is tuple:
        return [to_plain(v, depth + 1, budget) for v in value]
    if cls is dict:
        out = {}
        for k, v in value.items():
            if type(k) is not str:
                raise _ProgramError("result", "ResultError", "answer dicts must have str keys")
            out[_text(k)] = to_plain(v, depth + 1, budget)
        return out
    if cls is set or cls is frozenset:
        items = [to_plain(v, depth + 1, budget) for v in value]
        try:
            items.sort()
        except TypeError:
            pass
        return items
    if cls is fractions.Fraction:
        num, den = value.numerator, value.denominator
        if type(num) is not int or type(den) is not int:
            raise _ProgramError("result", "ResultError", "malformed Fraction")
        if den == 1:
            return _exact_int(num)
        _exact_int(num), _exact_int(den)  # both must fit in text
        try:
            f = num / den
        except OverflowError:
            f = math.inf
        return _float_or_exact(f, f"{num}/{den}")
    if cls is decimal.Decimal:
        if value.is_snan():
            return "sNaN"
        if not value.is_finite():
            return float(value)  # inf, -inf and nan are exact
        if value.is_zero():
            return 0
        exact = str(value)
        if value.adjusted() >= 0 and value == value.to_integral_value():
            # integral: an exact int while it stays printable, else its exact text
            return int(value) if value.adjusted() < _MAX_INT_BITS * 0.30103 else exact
        return _float_or_exact(float(value), exact)
    if cls is datetime.date or cls is datetime.datetime or cls is datetime.time:
        return value.isoformat()
    if cls is datetime.timedelta:
        return str(value)
    name = getattr(cls, "__name__", "?")
    name = name if type(name) is str else "?"
    raise _ProgramError(
        "result",
        "ResultError",
        f"the answer must be plain data (int, float, str, bool, None, list, dict; Fraction, Decimal and dates are "
        f"converted), got {name[:80]}",
    )


# ----------------------------------------------------------------------------------------------------------------
# running one program (in a fresh child process; see "the template" below)


def _compile(source: str):
    try:
        tree = ast.parse(source, "<program>", "exec")
    except SyntaxError as e:
        raise _ProgramError("syntax", "SyntaxError", f"line {e.lineno}: {e.msg}") from None
    except (ValueError, MemoryError, RecursionError) as e:  # null bytes, absurd nesting
        raise _ProgramError("syntax", "SyntaxError", f"{type(e).__name__}: {e}") from None
    try:
        result = compile_restricted_exec(tree, "<program>", policy=SandboxPolicy)
    except SyntaxError as e:  # found by the compiler, not the parser: `return` outside a function, ...
        raise _ProgramError("syntax", "SyntaxError", f"line {e.lineno}: {e.msg}") from None
    except (RecursionError, MemoryError) as e:
        raise _ProgramError("syntax", "SyntaxError", f"program too deeply nested ({type(e).__name__})") from None
    if result.errors:
        msgs = []
        for err in result.errors[:5]:
            m = re.match(r"Line (\S+): (.*)", err, re.S)
            msgs.append(f"line {m.group(1)}: {m.group(2)}" if m else err)
        raise _ProgramError("refused", "SecurityError", "; ".join(msgs))
    return result.code


def _describe(exc: BaseException) -> tuple[str, str]:
    name = getattr(type(exc), "__name__", "Exception")
    name = name if type(name) is str else "Exception"
    try:
        msg = str(exc)
    except BaseException:  # noqa: BLE001 - the program's exception may misbehave
        msg = "<unprintable exception>"
    if type(msg) is not str:
        msg = "<unprintable exception>"
    return name[:100], msg[:2000]


_RAISE_OPS = frozenset({dis.opmap["RAISE_VARARGS"], dis.opmap["RERAISE"]})


def _raised_by_program(exc: BaseException) -> bool:
    """Whether the innermost frame that raised ``exc`` is a ``raise`` statement in the program's own code."""
    tb = exc.__traceback__
    if tb is None:
        return True
    while tb.tb_next is not None:
        tb = tb.tb_next
    code = tb.tb_frame.f_code
    if code.co_filename != "<program>":
        return False
    raw = code.co_code
    return 0 <= tb.tb_lasti < len(raw) and raw[tb.tb_lasti] in _RAISE_OPS


def _fresh_decimal_context() -> None:
    decimal.setcontext(
        decimal.Context(
            prec=28,
            rounding=decimal.ROUND_HALF_EVEN,
            Emin=-999999,
            Emax=999999,
            capitals=1,
            clamp=0,
            flags=[],
            traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow],
        )
    )


def _new_state(cfg: dict) -> RunState:
    state = RunState(cfg)
    state.make_globals()
    return state


def run_program(source: str, cfg: dict, state: RunState | None = None) -> dict:
    """Run one program and build its reply. ``kind`` says who ended the run: the program ("ok", "exception")
    or the sandbox ("syntax", "refused", "result", "memory"); the parent adds "timeout" and "crash".

    ``state``: an unused :class:`RunState` with its globals made (the template builds one that every child
    inherits untouched); a new one by default."""
    global _current_state
    state = _current_state = state or _new_state(cfg)
    glb = state.globals
    kind, value, error_type, error = "exception", None, None, None
    _fresh_decimal_context()
    sys.setrecursionlimit(len(_stack_depth()) + cfg["max_recursion"] + 60)
    try:
        code = _compile(source)
        exec(code, glb)
        if "solution" in glb:
            sol = glb["solution"]
            if type(sol) is not types.FunctionType:
                name = getattr(type(sol), "__name__", "?")
                raise _ProgramError("result", "ResultError", f"'solution' must be a function, got {name}")
            answer = sol()
        elif "answer" in glb:
            answer = glb["answer"]
        else:
            raise _ProgramError(
                "result", "ResultError", "the program defines neither a function solution() nor a variable 'answer'"
            )
        if state.violations:
            raise _ProgramError("refused", "SecurityError", state.violations[0])
        value = to_plain(answer)
        kind = "ok"
    except _ProgramError as e:
        kind, error_type, error = e.kind, e.error_type, e.message
    except BaseException as e:  # noqa: BLE001 - SystemExit, KeyboardInterrupt, GeneratorExit included
        error_type, error = _describe(e)
        if type(e) is MemoryError and not _raised_by_program(e):
            kind, error = "memory", f"the program ran out of memory (limit {cfg['memory_mb']} MB)"
        elif type(e) is RecursionError and not _raised_by_program(e):
            error = f"{error} (the sandbox allows a call depth of about {cfg['max_recursion']})"
    if state.violations:  # sticky: a refused operation fails the run even if the program caught the error
        kind, value, error_type, error = "refused", None, "SecurityError", state.violations[0]
    return {
        "kind": kind,
        "value": value if kind == "ok" else None,
        "error_type": error_type and _as_text(error_type),
        "error": error and _as_text(error),
        "stdout": _as_text("".join(state.out)),
        "stdout_truncated": state.truncated,
    }


def _stack_depth() -> list:
    frames, f = [], sys._getframe(1)
    while f is not None:
        frames.append(None)
        f = f.f_back
    return frames


def _reply_line(reply: dict, cfg: dict) -> bytes:
    """The reply as one JSON line (ASCII), or a ResultError when it can't be serialised or is too large."""

    def failure(message: str) -> dict:
        return {
            "kind": "result",
            "value": None,
            "error_type": "ResultError",
            "error": message,
            "stdout": "",
            "stdout_truncated": False,
        }

    try:
        if len(json.dumps(reply["value"], ensure_ascii=True)) > cfg["max_result_bytes"]:  # the answer alone
            reply = failure(f"answer is too large (more than {cfg['max_result_bytes']} bytes as JSON)")
        text = json.dumps(reply, ensure_ascii=True)
    except (ValueError, TypeError, RecursionError, MemoryError) as e:
        text = json.dumps(failure(f"answer could not be serialised: {type(e).__name__}"))
    if len(text) > cfg["max_result_bytes"] + 12 * cfg["max_output"]:  # printed output is capped on its own
        text = json.dumps(failure(f"answer is too large (more than {cfg['max_result_bytes']} bytes as JSON)"))
    return text.encode("ascii") + b"\n"


# ----------------------------------------------------------------------------------------------------------------
# process hardening

_CLONE_NEWNS = 0x00020000
_CLONE_NEWIPC = 0x08000000
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWPID = 0x20000000
_CLONE_NEWNET = 0x40000000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 1, 2, 4, 8
_MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = 32, 4096, 16384, 1 << 18
_MNT_DETACH = 2
_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4
_PR_SET_SECCOMP = 22
_PR_SET_NO_NEW_PRIVS = 38
_NOBODY = 65534
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}  # glibc has no wrapper for it
# What a program's process may not call (x86_64 numbers, from asm/unistd_64.h): new processes and programs, other
# processes' memory, signals to any process (its limits' signals come from the kernel), sockets, System V and POSIX
# IPC, mounts and namespaces, prctl (its death signal stays armed), setsid, and the kernel's larger attack surfaces
# (bpf, perf, io_uring, userfaultfd, keys, modules, handles).
_SECCOMP_DENIED_X86_64 = {
    "clone": 56,
    "fork": 57,
    "vfork": 58,
    "execve": 59,
    "clone3": 435,
    "execveat": 322,
    "ptrace": 101,
    "process_vm_readv": 310,
    "process_vm_writev": 311,
    "pidfd_getfd": 438,
    "kill": 62,
    "tkill": 200,
    "tgkill": 234,
    "rt_sigqueueinfo": 129,
    "rt_tgsigqueueinfo": 297,
    "pidfd_send_signal": 424,
    "socket": 41,
    "socketpair": 53,
    "shmget": 29,
    "shmat": 30,
    "semget": 64,
    "semop": 65,
    "semtimedop": 220,
    "msgget": 68,
    "msgsnd": 69,
    "msgrcv": 70,
    "mq_open": 240,
    "mount": 165,
    "umount2": 166,
    "pivot_root": 155,
    "chroot": 161,
    "unshare": 272,
    "setns": 308,
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "fspick": 433,
    "mount_setattr": 442,
    "prctl": 157,
    "setsid": 112,
    "personality": 135,
    "bpf": 321,
    "perf_event_open": 298,
    "userfaultfd": 323,
    "io_uring_setup": 425,
    "keyctl": 250,
    "add_key": 248,
    "request_key": 249,
    "open_by_handle_at": 304,
    "name_to_handle_at": 303,
    "kexec_load": 246,
    "kexec_file_load": 320,
    "init_module": 175,
    "finit_module": 313,
    "delete_module": 176,
    "acct": 163,
    "swapon": 167,
    "swapoff": 168,
    "reboot": 169,
    "iopl": 172,
    "ioperm": 173,
    "quotactl": 179,
}
_libc = None
_pidns_fd: int | None = None  # the template's own PID namespace, set once the template is its PID 1
_child_ipcns = False  # whether each child can enter an IPC namespace of its own
_seccomp = None  # the filter every child installs on itself (a sock_fprog), when the kernel takes it


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def _load_libc():
    global _libc
    for name in (None, "libc.so.6"):  # None: the symbols already loaded into this process, libc included
        try:
            libc = ctypes.CDLL(name, use_errno=True)
            libc.unshare, libc.prctl, libc.mount, libc.umount2, libc.setns, libc.capset  # noqa: B018 - must exist
        except (OSError, AttributeError):
            continue
        libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
        libc.syscall.restype = ctypes.c_long
        _libc = libc
        return libc
    return None


def _set_rlimits(limits: dict) -> list[str]:
    applied = []
    for name, value in limits.items():
        res = getattr(resource, name, None)
        if res is None:
            continue
        soft, hard = value if type(value) is tuple else (value, value)
        try:
            resource.setrlimit(res, (soft, hard))
            applied.append(name)
        except (ValueError, OSError):
            pass
    return applied


def _unshare(libc) -> int:
    """Enter fresh network, mount, IPC and PID namespaces, all at once: directly when root, else inside a new user
    namespace in which this process is root (its own uid and gid mapped to 0, ``setgroups`` denied). Where the OS
    allows neither, a network namespace alone, as before. Returns the flags that took effect (0: none)."""
    full = _CLONE_NEWNET | _CLONE_NEWNS | _CLONE_NEWIPC | _CLONE_NEWPID
    uid, gid = os.geteuid(), os.getegid()
    for flags in (full, _CLONE_NEWUSER | full, _CLONE_NEWNET, _CLONE_NEWUSER | _CLONE_NEWNET):
        if libc.unshare(flags) == 0:
            break
    else:
        return 0
    if flags & _CLONE_NEWUSER:
        try:
            for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {gid} 1")):
                with open(f"/proc/self/{name}", "w") as f:
                    f.write(text)
        except OSError:
            pass  # unmapped: the mounts below fail, and say so
    return flags


def _empty_root(libc) -> bool:
    """In this (new) mount namespace, make the root an empty, read-only tmpfs holding only the empty directories
    ``/tmp`` and ``/dev/shm``; the host's file system is detached. Everything the template needs is imported and
    open already. False when any step fails (then the host's files stay visible, as without the namespace)."""
    nr = _SYS_PIVOT_ROOT.get(os.uname().machine)
    if nr is None:
        return False
    if libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None) != 0:  # nothing propagates to the host
        return False
    if (
        libc.mount(b"tmpfs", b"/tmp", b"tmpfs", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, b"size=16k,nr_inodes=16,mode=755")
        != 0
    ):
        return False
    try:
        for name in ("tmp", "dev", "dev/shm"):
            os.mkdir(f"/tmp/{name}", 0o755)
    except OSError:
        pass  # a user namespace whose uid could not be mapped creates nothing: an empty root is as good
    os.chdir("/tmp")
    # pivot_root(".", "."): the old root ends up stacked on the new one, and is detached from there
    if libc.syscall(ctypes.c_long(nr), b".", b".") != 0 or libc.umount2(b".", _MNT_DETACH) != 0:
        return False
    os.chdir("/")
    return (
        libc.mount(None, b"/", None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, None)
        == 0
    )


def _become_pid_one() -> None:
    """Fork: the child is PID 1 of the new PID namespace and goes on as the template; when it dies, however, the
    kernel kills every process left in the namespace (a program's process that cleared its death signal and
    left the session included). This process holds nothing, waits for it and leaves with its status."""
    pid = os.fork()
    if pid == 0:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # dies with the process the parent knows
        return
    _close_all_but(set())  # the control socket too: the parent sees EOF when the template is gone
    while True:
        try:
            _pid, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    code = os.waitstatus_to_exitcode(status)
    os._exit(code if code >= 0 else 128 - code)


def _seccomp_filter() -> _SockFprog | None:
    """A classic BPF program for seccomp: EPERM for ``_SECCOMP_DENIED_X86_64`` (and every x32 call), kill for any
    other architecture, allow the rest. x86_64 only; elsewhere None (no filter)."""
    if os.uname().machine != "x86_64":
        return None
    denied = sorted(set(_SECCOMP_DENIED_X86_64.values()))
    n = len(denied)
    ld, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06
    code = [
        (ld, 0, 0, 4),  # A = seccomp_data.arch
        (jeq, 1, 0, 0xC000003E),  # AUDIT_ARCH_X86_64: go on
        (ret, 0, 0, 0x80000000),  # SECCOMP_RET_KILL_PROCESS
        (ld, 0, 0, 0),  # A = seccomp_data.nr
        (jge, n + 1, 0, 0x40000000),
    ]  # the x32 ABI: denied
    code += [(jeq, n - i, 0, nr) for i, nr in enumerate(denied)]
    code += [
        (ret, 0, 0, 0x7FFF0000),  # SECCOMP_RET_ALLOW
        (ret, 0, 0, 0x00050000 | errno.EPERM),
    ]  # SECCOMP_RET_ERRNO
    filters = (_SockFilter * len(code))(*code)
    prog = _SockFprog(len(code), filters)
    prog.keep = filters
    return prog


def _install_seccomp() -> bool:
    return _seccomp is not None and _libc.prctl(_PR_SET_SECCOMP, 2, ctypes.byref(_seccomp), 0, 0) == 0


def _drop_capabilities() -> None:
    """No capabilities left, in any user namespace (a child that stays uid 0 -- in a user namespace, or with
    ``drop_privileges=False`` -- can't mount, unshare or raise its limits either)."""
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    _libc.capset(header, (ctypes.c_uint32 * 6)())


def _harden_template(cfg: dict) -> dict:
    """Once, in the template: namespaces, an empty root, no privilege gain, no files written. What children add is
    in :func:`_enter_child`. Returns what was achieved (reported to the parent as ``layers``)."""
    global _pidns_fd, _seccomp, _child_ipcns
    layers: dict = dict.fromkeys(("netns", "userns", "mountns", "ipcns", "pidns", "no_new_privs", "seccomp"), False)
    libc = _load_libc()
    if libc is not None:
        flags = _unshare(libc)
        for name, flag in (
            ("netns", _CLONE_NEWNET),
            ("userns", _CLONE_NEWUSER),
            ("ipcns", _CLONE_NEWIPC),
            ("pidns", _CLONE_NEWPID),
        ):
            layers[name] = bool(flags & flag)
        if layers["pidns"]:
            _become_pid_one()
            try:
                _pidns_fd = os.open("/proc/self/ns/pid", os.O_RDONLY)  # while /proc is still there
            except OSError:
                pass  # no namespace per child: they share the template's, which still dies with it
        layers["mountns"] = bool(flags & _CLONE_NEWNS) and _empty_root(libc)
        layers["no_new_privs"] = libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0  # inherited by every child
        libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)  # no ptrace, no core dumps
        _seccomp = _seccomp_filter()
    # the children drop root: the template keeps it (it runs no program), so a child can't signal it
    layers["uid"], layers["seccomp"] = _probe_child(cfg)
    if not layers["seccomp"]:
        _seccomp = None
    # the filter refuses System V and POSIX IPC outright; without it, each child gets an IPC namespace of its own
    # (a mount of the kernel's mqueue file system per child, which the filter saves)
    _child_ipcns = layers["ipcns"] and not layers["seccomp"]
    _set_rlimits({"RLIMIT_FSIZE": 0, "RLIMIT_CORE": 0, "RLIMIT_MEMLOCK": 0, "RLIMIT_NOFILE": _TEMPLATE_FDS})
    # the per-program limits every child sets on itself (reported here, applied in _enter_child)
    layers["rlimits"] = [
        name
        for name in (
            "RLIMIT_AS",
            "RLIMIT_CPU",
            "RLIMIT_FSIZE",
            "RLIMIT_NOFILE",
            "RLIMIT_NPROC",
            "RLIMIT_CORE",
            "RLIMIT_MEMLOCK",
        )
        if hasattr(resource, name)
    ]
    return layers


def _drop_root(cfg: dict) -> None:
    """As ``nobody`` a process can't touch root's files, and RLIMIT_NPROC applies to it. Where the OS refuses
    (a container without CAP_SETUID, a user namespace that maps only uid 0), the process stays as it is;
    ``layers["uid"]`` says which."""
    if cfg.get("drop_privileges", True) and os.geteuid() == 0:
        try:
            os.setgroups([])
            os.setgid(_NOBODY)
            os.setuid(_NOBODY)
        except OSError:
            pass


def _probe_child(cfg: dict) -> tuple[int, bool]:
    """The uid a child ends up with, and whether the seccomp filter holds in it (a denied call fails with EPERM),
    found by forking one that takes those steps and reports through its exit status."""
    pid = os.fork()
    if pid == 0:
        _drop_root(cfg)
        code = 1 if os.geteuid() == _NOBODY else 0
        if _install_seccomp():
            try:
                socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
            except PermissionError:
                code |= 2
            except OSError:
                pass
        os._exit(code)
    _pid, status = os.waitpid(pid, 0)
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 0
    return (_NOBODY if code & 1 else os.geteuid()), bool(code & 2)


def _enter_child(cfg: dict, template_pid: int) -> None:
    """In a freshly forked child, before it reads its program: an IPC namespace of its own (where there is no
    seccomp filter), drop root and every capability, die with the template, set the limits, install the seccomp filter.

    Order matters: unshare needs the capabilities that dropping root removes, changing uid clears the
    parent-death signal, RLIMIT_NPROC=0 applies to the new uid, and the filter forbids prctl.
    """
    if _child_ipcns:
        _libc.unshare(_CLONE_NEWIPC)  # System V objects and POSIX queues die with this process
    _drop_root(cfg)
    if _libc is not None:
        _drop_capabilities()
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        _libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    # the template died before the death signal was armed (in PID namespaces the kernel has killed this already)
    if _pidns_fd is None and os.getppid() != template_pid:
        os._exit(1)
    cpu = max(1, math.ceil(cfg["cpu_seconds"]))  # a fresh process: its CPU clock starts at 0
    _set_rlimits(
        {
            "RLIMIT_AS": cfg["memory_mb"] * 1024 * 1024,
            # SIGXCPU at the soft limit, SIGKILL a second later; as PID 1 of its namespace the process ignores
            # SIGXCPU, so there the hard limit (SIGKILL) comes at once
            "RLIMIT_CPU": (cpu, cpu) if _pidns_fd is not None else (cpu, cpu + 1),
            "RLIMIT_NPROC": 0,
            "RLIMIT_NOFILE": 16,
        }
    )
    _install_seccomp()


def _prewarm() -> None:
    """Import lazily-loaded pieces and fill the template's caches with our own inputs, while files can still be
    opened; every child starts from exactly this state."""
    datetime.datetime.strptime("2024-01-02", "%Y-%m-%d")
    time.strftime("%A %B")
    statistics.mean([1, 2])
    statistics.NormalDist(0, 1).cdf(0.5)
    fractions.Fraction("1/3") + fractions.Fraction(1.5)
    decimal.Decimal("1.1").quantize(decimal.Decimal("0.1"))
    re.compile(r"(?P<a>\d+)\s*[a-z]+").sub(lambda m: m.group(0), "12 ab")
    re.sub(r"(\d)", r"\1", "1")
    calendar.monthcalendar(2024, 2)
    b"x".decode("latin-1")
    random.Random(0).gauss(0, 1)
    collections.namedtuple("P", "x y")(1, 2)
    import unicodedata  # noqa: F401 - the parser normalises non-ASCII identifiers (NFKC) with it

    ast.parse("ｘ = 1")
    re.compile(r"[a-zé]+", re.IGNORECASE).findall("Été")
    for codec in ("ascii", "latin-1", "utf-16", "utf-32", "cp1252"):
        "x".encode(codec)
    compile_restricted_exec("def f(a):\n    return [x for x in a]\nprint(f([1]))\n", policy=SandboxPolicy)
    run_program(
        "def solution():\n    return [1, 2.5, 'x']\n",
        {"max_output": 100, "allowed_imports": [], "random_seed": 0, "max_recursion": 100, "memory_mb": 64},
    )
    global _current_state
    _current_state = None
    sys.setrecursionlimit(1000)


# ----------------------------------------------------------------------------------------------------------------
# the template: a warm process that never runs a program; it forks one fresh child per program

_PREFORKED = 2  # children kept ready per template: one can start while the last one still exits
_TEMPLATE_FDS = 64  # RLIMIT_NOFILE of the template (each child holds 16 at most)
_CTL_FD = 3  # the control socket to the parent


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _close_all_but(keep: set[int]) -> None:
    low = 3
    for fd in sorted(k for k in keep if k >= 3):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, _TEMPLATE_FDS + 1)


def _child_main(cfg: dict, template_pid: int, src_r: int, res_w: int, state: RunState) -> None:
    """The whole life of a child: limits, one request (read to EOF), one reply line, exit. Never returns.

    Its only pipes lead to the parent; it holds nothing of the template's (not the control socket, not another
    child's pipes), so even a program that escaped the language layer could not see or answer another program.
    """
    status = 70
    try:
        _close_all_but({src_r, res_w})
        _enter_child(cfg, template_pid)
        request = json.loads(_read_all(src_r))
        os.close(src_r)
        source = request["source"]
        if type(source) is not str:
            raise TypeError("source must be a string")
        _write_all(res_w, _reply_line(run_program(source, cfg, state), cfg))
        os.close(res_w)  # the parent sees EOF now, not after this process's memory is torn down
        status = 0
    finally:
        os._exit(status)  # no clean-up, no finalizers: nothing of the program's runs after its reply


def _exit_report(pid: int, status: int, usage) -> dict:
    report: dict = {"exit": pid, "cpu": usage.ru_utime + usage.ru_stime}
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            report["signal"] = signal.Signals(sig).name
        except ValueError:
            report["signal"] = f"signal {sig}"
    else:
        report["code"] = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
    return report


def _serve(cfg: dict, ctl: socket.socket, state: RunState) -> None:
    """Keep ``_PREFORKED`` children ready, hand each one's pipes to the parent, kill on request, report exits.
    ``state`` is the program's globals, builtins and guards, built once here: each child gets its own copy."""
    children: dict[int, int | None] = {}  # pid -> pidfd (None where pidfds are unavailable: polled instead)
    by_pidfd: dict[int, int] = {}
    poller = select.poll()
    poller.register(ctl.fileno(), select.POLLIN)
    template_pid = os.getpid()

    def spawn() -> None:
        src_r, src_w = os.pipe()
        res_r, res_w = os.pipe()
        if _pidns_fd is not None:  # the child is PID 1 of a namespace of its own: its descendants die with it
            _libc.setns(_pidns_fd, _CLONE_NEWPID)  # back to this one, whose children may have their own
            _libc.unshare(_CLONE_NEWPID)
        pid = os.fork()
        if pid == 0:
            _child_main(cfg, template_pid, src_r, res_w, state)
        os.close(src_r)
        os.close(res_w)
        try:
            pidfd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            pidfd = None
        children[pid] = pidfd
        if pidfd is not None:
            by_pidfd[pidfd] = pid
            poller.register(pidfd, select.POLLIN)
        try:
            socket.send_fds(ctl, [json.dumps({"child": pid}).encode()], [src_w, res_r])
        finally:
            os.close(src_w)
            os.close(res_r)

    def reap(pid: int, flags: int = 0) -> bool:
        got, status, usage = os.wait4(pid, flags)
        if not got:
            return False
        pidfd = children.pop(pid)
        if pidfd is not None:
            poller.unregister(pidfd)
            del by_pidfd[pidfd]
            os.close(pidfd)
        ctl.send(json.dumps(_exit_report(pid, status, usage)).encode())
        return True

    def shut_down() -> None:
        for pid in list(children):
            os.kill(pid, signal.SIGKILL)
        os._exit(0)

    try:
        while True:
            while len(children) < _PREFORKED:
                spawn()
            polled = None in children.values()
            for fd, _event in poller.poll(5 if polled else None):
                if fd == ctl.fileno():
                    message = ctl.recv(4096)
                    if not message:  # the parent closed the socket: Sandbox.close() or the parent died
                        shut_down()
                    pid = json.loads(message).get("kill")
                    if type(pid) is int and pid in children:  # not reaped yet, so the pid is still this child's
                        os.kill(pid, signal.SIGKILL)
                else:
                    reap(by_pidfd[fd])
            if polled:
                for pid, pidfd in list(children.items()):
                    if pidfd is None:
                        reap(pid, os.WNOHANG)
    except OSError:  # the parent is gone (EPIPE, ECONNRESET): take the children along
        shut_down()


def main() -> None:
    cfg = json.loads(sys.argv[1])
    fd = int(sys.argv[2])
    if fd != _CTL_FD:  # a low, fixed number: below the template's RLIMIT_NOFILE, closed in every child
        os.dup2(fd, _CTL_FD)
        os.close(fd)
    ctl = socket.socket(fileno=_CTL_FD)
    warnings.simplefilter("ignore")  # SyntaxWarnings etc. would only go to /dev/null, through extra imports
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    _prewarm()
    layers = _harden_template(cfg)
    state = _new_state(cfg)
    gc.collect()
    gc.freeze()  # everything so far is shared with the children, never scanned by their collections
    ctl.send(json.dumps({"ready": True, "pid": os.getpid(), "layers": layers}).encode())
    _serve(cfg, ctl, state)


if __name__ == "__main__":
    main()
