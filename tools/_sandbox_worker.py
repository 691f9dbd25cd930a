"""Worker process of :mod:`agentkit.tools.sandbox` -- the half of the sandbox that runs untrusted code.

This file is run as a *script* (``python -I _sandbox_worker.py CONFIG_JSON``) by the parent, never imported by
it, and imports only the standard library and RestrictedPython: a program that escapes the language layer lands
in a process that holds nothing of the host's (no agentkit state, no model, no open files but its pipes).

Protocol (one JSON object per line, UTF-8):

* parent -> worker on stdin: ``{"source": "..."}``
* worker -> parent on the original stdout (fd 1 is redirected to /dev/null before any program runs, so the program
  cannot write to the pipe through ``print`` or a library that writes to ``sys.stdout``):
  first ``{"ready": true, "layers": {...}}`` once, then one reply per request:
  ``{"ok": bool, "value": <json>, "error_type": str|None, "error": str|None, "stdout": str,
  "stdout_truncated": bool}``.

The parent treats every reply as hostile input (size-capped, schema-checked); nothing here is trusted by it.

Layers applied in this process (see docs/sandbox.md):

1. hardening at start-up: network namespace (``unshare(CLONE_NEWNET)`` when the OS allows), dropping root to
   ``nobody`` when started as root, ``PR_SET_NO_NEW_PRIVS``, rlimits (address space, file size 0, few open files,
   no new processes, no core dumps), CPU-seconds limit re-armed before every program;
2. RestrictedPython compilation with a stricter policy (:class:`SandboxPolicy`) and guards that really guard
   (:func:`_guarded_getattr`, :func:`_guarded_write`, safe ``str.format``, ...);
3. a fresh namespace, fresh builtins, fresh module proxies, a fresh ``random.Random`` and a fresh decimal
   context for every program; proxies expose an explicit list of public names and refuse writes;
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
    """Internal: a failure that is reported as ``error_type: message`` without running anything further."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
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
_EXTRA_MAGIC_METHODS = frozenset({
    "__repr__", "__str__", "__hash__", "__len__", "__iter__", "__next__", "__getitem__", "__setitem__",
    "__delitem__", "__bool__", "__add__", "__radd__", "__iadd__", "__sub__", "__rsub__", "__isub__", "__mul__",
    "__rmul__", "__imul__", "__truediv__", "__rtruediv__", "__floordiv__", "__rfloordiv__", "__mod__",
    "__rmod__", "__pow__", "__rpow__", "__neg__", "__pos__", "__abs__", "__int__", "__float__", "__round__",
    "__call__", "__enter__", "__exit__",
})


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
        if ([a.name for a in node.names] == ["*"] and node.level == 0 and node.module in _STATIC_EXPORTS):
            names = _RANDOM_EXPORTS if node.module == "random" else sorted(_STATIC_EXPORTS[node.module])
            node = _set_locations(ast.ImportFrom(module=node.module, names=[ast.alias(name=n) for n in names],
                                                 level=0), node)
        return super().visit_ImportFrom(node)

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
            # _inplacevar_, 2-3x slower in loops): rebinding a local name reaches nothing, the name itself is
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
            read = ast.Call(ast.Name("_getattr_", ast.Load()),
                            [ast.Name(t_obj, ast.Load()), ast.Constant(target.attr)], [])
            store = ast.Attribute(ast.Call(ast.Name("_write_", ast.Load()), [ast.Name(t_obj, ast.Load())], []),
                                  target.attr, ast.Store())
            stmts = [ast.Assign([ast.Name(t_obj, ast.Store())], obj)]
        elif isinstance(target, ast.Subscript):
            if any(isinstance(n, ast.Slice) for n in ast.walk(target.slice)):
                self.error(node, "Augmented assignment to a slice is not supported; write a[i:j] = a[i:j] + x.")
                return node
            obj = self.visit(target.value)
            index = self.visit(target.slice)
            value = self.visit(node.value)
            t_obj, t_idx = self.gen_tmp_name(), self.gen_tmp_name()
            read = ast.Call(ast.Name("_getitem_", ast.Load()),
                            [ast.Name(t_obj, ast.Load()), ast.Name(t_idx, ast.Load())], [])
            store = ast.Subscript(ast.Call(ast.Name("_write_", ast.Load()), [ast.Name(t_obj, ast.Load())], []),
                                  ast.Name(t_idx, ast.Load()), ast.Store())
            stmts = [ast.Assign([ast.Name(t_obj, ast.Store())], obj),
                     ast.Assign([ast.Name(t_idx, ast.Store())], index)]
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


_RANDOM_METHODS = [
    "random", "uniform", "randint", "randrange", "choice", "choices", "shuffle", "sample", "gauss",
    "normalvariate", "lognormvariate", "expovariate", "vonmisesvariate", "gammavariate", "triangular",
    "betavariate", "paretovariate", "weibullvariate", "getrandbits", "seed", "randbytes",
]

# Every exported name was reviewed: no module objects, no mutable module-level containers, no function that turns
# a *string* into an attribute access (operator.attrgetter/methodcaller, functools.update_wrapper/wraps,
# functools.singledispatch, which evaluates string annotations), nothing that prints to the real stdout or
# changes process-wide state (calendar.setfirstweekday, LocaleTextCalendar, decimal.DefaultContext).
_STATIC_EXPORTS: dict[str, dict] = {
    "math": _public(math),
    "cmath": _public(cmath),
    "fractions": _pick(fractions, ["Fraction"]),
    "decimal": _pick(decimal, [
        "Decimal", "Context", "localcontext", "getcontext", "setcontext", "DecimalException", "InvalidOperation",
        "DivisionByZero", "Overflow", "Underflow", "Inexact", "Rounded", "Subnormal", "Clamped", "FloatOperation",
        "ROUND_UP", "ROUND_DOWN", "ROUND_CEILING", "ROUND_FLOOR", "ROUND_HALF_UP", "ROUND_HALF_DOWN",
        "ROUND_HALF_EVEN", "ROUND_05UP", "MAX_PREC", "MAX_EMAX", "MIN_EMIN", "MIN_ETINY"]),
    "datetime": _pick(datetime, ["date", "datetime", "time", "timedelta", "timezone", "tzinfo", "MINYEAR",
                                 "MAXYEAR", "UTC"]),
    "statistics": _pick(statistics, [
        "mean", "fmean", "geometric_mean", "harmonic_mean", "median", "median_low", "median_high",
        "median_grouped", "mode", "multimode", "quantiles", "pstdev", "pvariance", "stdev", "variance",
        "correlation", "covariance", "linear_regression", "NormalDist", "StatisticsError"]),
    "itertools": _public(itertools),
    "collections": _pick(collections, ["Counter", "defaultdict", "OrderedDict", "deque", "namedtuple",
                                       "ChainMap"]),
    "functools": _pick(functools, ["reduce", "partial", "lru_cache", "cache", "cmp_to_key"]),
    "operator": _public(operator, exclude={"attrgetter", "methodcaller"}),
    "string": _pick(string, ["ascii_letters", "ascii_lowercase", "ascii_uppercase", "digits", "hexdigits",
                             "octdigits", "punctuation", "printable", "whitespace", "capwords"]),
    "re": _pick(re, ["compile", "search", "match", "fullmatch", "findall", "finditer", "sub", "subn", "split",
                     "escape", "purge", "error", "Pattern", "Match", "A", "ASCII", "I", "IGNORECASE", "M",
                     "MULTILINE", "S", "DOTALL", "X", "VERBOSE", "U", "UNICODE", "NOFLAG"]),
    "calendar": {
        **_pick(calendar, ["isleap", "leapdays", "monthrange", "weekday", "monthcalendar", "timegm",
                           "weekheader", "Calendar", "IllegalMonthError", "IllegalWeekdayError", "MONDAY",
                           "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY"]),
        # the originals are shared, lazily-formatting objects with a writable `format` attribute
        "month_name": tuple(calendar.month_name), "month_abbr": tuple(calendar.month_abbr),
        "day_name": tuple(calendar.day_name), "day_abbr": tuple(calendar.day_abbr),
    },
    "heapq": _pick(heapq, ["heappush", "heappop", "heapify", "heapreplace", "heappushpop", "nlargest",
                           "nsmallest", "merge"]),
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
    "eval", "exec", "compile", "open", "input", "help", "breakpoint", "getattr", "setattr", "delattr", "hasattr",
    "vars", "dir", "globals", "locals", "super", "memoryview", "exit", "quit", "id",
]

_SAFE_BUILTIN_NAMES = [
    "abs", "all", "any", "ascii", "bin", "bool", "bytes", "callable", "chr", "complex", "dict", "divmod",
    "enumerate", "filter", "float", "format", "frozenset", "hash", "hex", "int", "isinstance", "issubclass", "iter",
    "len", "list", "map", "max", "min", "next", "object", "oct", "ord", "pow", "range", "repr", "reversed", "round",
    "set", "slice", "sorted", "str", "sum", "tuple", "zip", "staticmethod", "classmethod", "property",
    "NotImplemented", "Ellipsis",
    # exceptions, for try/except and raise
    "BaseException", "Exception", "ArithmeticError", "AssertionError", "AttributeError", "FloatingPointError",
    "GeneratorExit", "ImportError", "IndexError", "KeyError", "KeyboardInterrupt", "LookupError", "MemoryError",
    "ModuleNotFoundError", "NameError", "NotImplementedError", "OverflowError", "RecursionError", "RuntimeError",
    "StopIteration", "SystemExit", "TypeError", "UnboundLocalError", "UnicodeError", "ValueError",
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
    "mro", "cell_contents", "f_trace_lines", "gi_suspended", "format", "format_map", "register",
}
_WRITABLE_BASES = (list, dict, set, bytearray, collections.deque)
_DECIMAL_SIGNAL_DICT = type(decimal.Context().traps)
_IMMUTABLE_EXACT = frozenset({int, float, complex, bool, str, bytes, tuple, frozenset, range, type(None)})
_INPLACE_OPS = {
    "+=": operator.iadd, "-=": operator.isub, "*=": operator.imul, "/=": operator.itruediv,
    "//=": operator.ifloordiv, "%=": operator.imod, "**=": operator.ipow, "<<=": operator.ilshift,
    ">>=": operator.irshift, "|=": operator.ior, "^=": operator.ixor, "&=": operator.iand, "@=": operator.imatmul,
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
                    "like {}, {0} or {name} in the sandbox (f-strings work normally)")
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
            elif name == "register" and (type(obj) in self.classes or
                                         (isinstance(obj, type) and obj in self.classes)):
                return getattr(obj, name, *default)
            raise self.refuse(f"access to attribute {name!r} is not allowed in the sandbox")
        if name == "obj" and isinstance(obj, BaseException):
            raise self.refuse("access to attribute 'obj' of exceptions is not allowed in the sandbox")
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
            "_apply_": lambda f, *a, **kw: f(*a, **kw),
            "_print_": PrintCollector,
        }
        return self.globals


# ----------------------------------------------------------------------------------------------------------------
# turning the answer into plain data

_MAX_DEPTH = 20
_MAX_ITEMS = 10_000


def to_plain(value: object, depth: int = 0, budget: list | None = None):
    """Convert the answer to JSON data with exact type checks; anything else is refused.

    int/float/str/bool/None pass; list/tuple become lists; dicts need str keys; set/frozenset become (sorted when
    possible) lists; Fraction and Decimal become int when integral, else float; date/datetime/time become ISO
    strings, timedelta becomes str(). Subclasses of any of these are refused (an int subclass cannot pose as an
    int).
    """
    if budget is None:
        budget = [_MAX_ITEMS]
    budget[0] -= 1
    if budget[0] < 0:
        raise _ProgramError("ResultError", f"answer has more than {_MAX_ITEMS} items")
    if depth > _MAX_DEPTH:
        raise _ProgramError("ResultError", f"answer is nested deeper than {_MAX_DEPTH} levels")
    cls = type(value)
    if value is None or cls is bool or cls is int or cls is float or cls is str:
        return value
    if cls is list or cls is tuple:
        return [to_plain(v, depth + 1, budget) for v in value]
    if cls is dict:
        out = {}
        for k, v in value.items():
            if type(k) is not str:
                raise _ProgramError("ResultError", "answer dicts must have str keys")
            out[k] = to_plain(v, depth + 1, budget)
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
            raise _ProgramError("ResultError", "malformed Fraction")
        return num if den == 1 else num / den
    if cls is decimal.Decimal:
        if not value.is_finite():
            return float(value)
        if value == value.to_integral_value() and value.adjusted() < 30:
            return int(value)
        return float(value)
    if cls is datetime.date or cls is datetime.datetime or cls is datetime.time:
        return value.isoformat()
    if cls is datetime.timedelta:
        return str(value)
    name = getattr(cls, "__name__", "?")
    name = name if type(name) is str else "?"
    raise _ProgramError(
        "ResultError",
        f"the answer must be plain data (int, float, str, bool, None, list, dict; Fraction, Decimal and dates are "
        f"converted), got {name[:80]}")


# ----------------------------------------------------------------------------------------------------------------
# running one program

_code_cache: collections.OrderedDict = collections.OrderedDict()


def _compile(source: str):
    code = _code_cache.get(source)
    if code is not None:
        _code_cache.move_to_end(source)
        return code
    try:
        tree = ast.parse(source, "<program>", "exec")
    except SyntaxError as e:
        raise _ProgramError("SyntaxError", f"line {e.lineno}: {e.msg}") from None
    except (ValueError, MemoryError, RecursionError) as e:  # null bytes, absurd nesting
        raise _ProgramError("SyntaxError", f"{type(e).__name__}: {e}") from None
    try:
        result = compile_restricted_exec(tree, "<program>", policy=SandboxPolicy)
    except SyntaxError as e:  # found by the compiler, not the parser: `return` outside a function, ...
        raise _ProgramError("SyntaxError", f"line {e.lineno}: {e.msg}") from None
    except (RecursionError, MemoryError) as e:
        raise _ProgramError("SyntaxError", f"program too deeply nested ({type(e).__name__})") from None
    if result.errors:
        msgs = []
        for err in result.errors[:5]:
            m = re.match(r"Line (\S+): (.*)", err, re.S)
            msgs.append(f"line {m.group(1)}: {m.group(2)}" if m else err)
        raise _ProgramError("SecurityError", "; ".join(msgs))
    _code_cache[source] = result.code
    if len(_code_cache) > 256:
        _code_cache.popitem(last=False)
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


def _fresh_decimal_context() -> None:
    decimal.setcontext(decimal.Context(
        prec=28, rounding=decimal.ROUND_HALF_EVEN, Emin=-999999, Emax=999999, capitals=1, clamp=0, flags=[],
        traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow]))


def run_program(source: str, cfg: dict) -> dict:
    global _current_state
    state = _current_state = RunState(cfg)
    ok, value, error_type, error = False, None, None, None
    _fresh_decimal_context()
    depth = len(_stack_depth())
    sys.setrecursionlimit(depth + cfg["max_recursion"] + 60)
    try:
        code = _compile(source)
        glb = state.make_globals()
        exec(code, glb)
        if "solution" in glb:
            sol = glb["solution"]
            if type(sol) is not types.FunctionType:
                name = getattr(type(sol), "__name__", "?")
                raise _ProgramError("ResultError", f"'solution' must be a function, got {name}")
            answer = sol()
        elif "answer" in glb:
            answer = glb["answer"]
        else:
            raise _ProgramError("ResultError",
                                "the program defines neither a function solution() nor a variable 'answer'")
        if state.violations:
            raise _ProgramError("SecurityError", state.violations[0])
        value = to_plain(answer)
        ok = True
    except _ProgramError as e:
        error_type, error = e.error_type, e.message
    except BaseException as e:  # noqa: BLE001 - SystemExit, KeyboardInterrupt, GeneratorExit included
        error_type, error = _describe(e)
        if isinstance(e, MemoryError):
            error = f"the program ran out of memory (limit {cfg['memory_mb']} MB)"
        elif isinstance(e, RecursionError):
            error = f"{error} (the sandbox allows a call depth of about {cfg['max_recursion']})"
    finally:
        sys.setrecursionlimit(depth + 200)
    if state.violations:  # sticky: a refused operation fails the run even if the program caught the error
        ok, value, error_type, error = False, None, "SecurityError", state.violations[0]
    stdout = "".join(state.out)
    truncated = state.truncated
    # Drop the program's objects now, inside the timed window: a generator's `finally` or a cycle must not run
    # later, when the parent is already timing the next program.
    state.globals.clear()
    del state
    _current_state = None
    try:
        gc.collect()
    except BaseException:  # noqa: BLE001
        pass
    _fresh_decimal_context()
    return {"ok": ok, "value": value, "error_type": error_type, "error": error, "stdout": stdout,
            "stdout_truncated": truncated}


def _stack_depth() -> list:
    frames, f = [], sys._getframe(1)
    while f is not None:
        frames.append(None)
        f = f.f_back
    return frames


# ----------------------------------------------------------------------------------------------------------------
# process hardening

_CLONE_NEWNET = 0x40000000
_CLONE_NEWUSER = 0x10000000
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_DUMPABLE = 4


def _harden(cfg: dict) -> dict:
    layers: dict = {}
    libc = None
    for name in (None, "libc.so.6"):  # None: the symbols already loaded into this process, libc included
        try:
            libc = ctypes.CDLL(name, use_errno=True)
            libc.unshare, libc.prctl  # noqa: B018 - both must exist
            break
        except (OSError, AttributeError):
            libc = None
    # 1. no network: a fresh network namespace has only a downed loopback device.
    layers["netns"] = False
    if libc is not None:
        for flags in (_CLONE_NEWNET, _CLONE_NEWUSER | _CLONE_NEWNET):
            try:
                if libc.unshare(flags) == 0:
                    layers["netns"] = True
                    break
            except Exception:  # noqa: BLE001
                break
    # 2. drop root: as `nobody` the process can't touch root's files and RLIMIT_NPROC applies to it.
    layers["uid"] = os.geteuid()
    if cfg.get("drop_privileges", True) and os.geteuid() == 0:
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
        except OSError:
            pass
        layers["uid"] = os.geteuid()
    # 3. no privilege gain through exec of setuid binaries; no core dumps / ptrace by same-uid processes.
    layers["no_new_privs"] = False
    if libc is not None:
        try:
            layers["no_new_privs"] = libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
            libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
        except Exception:  # noqa: BLE001
            pass
    # 4. resource limits
    limits = {
        "RLIMIT_AS": cfg["memory_mb"] * 1024 * 1024,
        "RLIMIT_FSIZE": 0,
        "RLIMIT_NOFILE": 16,
        "RLIMIT_NPROC": 0,
        "RLIMIT_CORE": 0,
        "RLIMIT_MEMLOCK": 0,
    }
    applied = []
    for name, value in limits.items():
        res = getattr(resource, name, None)
        if res is None:
            continue
        try:
            resource.setrlimit(res, (value, value))
            applied.append(name)
        except (ValueError, OSError):
            pass
    layers["rlimits"] = applied
    return layers


def _arm_cpu_limit(seconds: float) -> None:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    used = ru.ru_utime + ru.ru_stime
    soft = int(math.ceil(used + seconds))
    try:
        _soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))
    except (ValueError, OSError):
        pass


def _prewarm() -> None:
    """Import lazily-loaded pieces now, while files can still be opened."""
    datetime.datetime.strptime("2024-01-02", "%Y-%m-%d")
    time.strftime("%A %B")
    statistics.mean([1, 2])
    statistics.NormalDist(0, 1).cdf(0.5)
    fractions.Fraction("1/3") + fractions.Fraction(1.5)
    decimal.Decimal("1.1").quantize(decimal.Decimal("0.1"))
    re.compile(r"(?P<a>\d+)\s*[a-z]+").sub(lambda m: m.group(0), "12 ab")
    re.sub(r"(\d)", r"\1", "1")
    calendar.monthcalendar(2024, 2)
    "x".encode("utf-8").decode("latin-1")
    random.Random(0).gauss(0, 1)
    collections.namedtuple("P", "x y")(1, 2)
    import unicodedata  # noqa: F401 - the parser normalises non-ASCII identifiers (NFKC) with it
    ast.parse("ｘ = 1")
    re.compile(r"[a-zé]+", re.IGNORECASE).findall("Été")
    for codec in ("ascii", "latin-1", "utf-16", "utf-32", "cp1252"):
        "x".encode(codec)
    compile_restricted_exec("def f(a):\n    return [x for x in a]\nprint(f([1]))\n", policy=SandboxPolicy)


def main() -> None:
    cfg = json.loads(sys.argv[1])
    warnings.simplefilter("ignore")  # SyntaxWarnings etc. would only go to /dev/null, through extra imports
    proto = os.fdopen(os.dup(1), "w", encoding="utf-8", newline="\n")
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.close(devnull)
    sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    stdin = sys.stdin.buffer
    _prewarm()
    layers = _harden(cfg)
    gc.collect()
    gc.freeze()  # start-up objects are never scanned again: keeps the per-run collection cheap
    proto.write(json.dumps({"ready": True, "pid": os.getpid(), "layers": layers}) + "\n")
    proto.flush()
    while True:
        line = stdin.readline()
        if not line:
            os._exit(0)
        try:
            request = json.loads(line)
            source = request["source"]
            if type(source) is not str:
                raise TypeError("source must be a string")
        except Exception as e:  # noqa: BLE001 - a broken request from the parent
            reply = {"ok": False, "value": None, "error_type": "SandboxError", "error": f"bad request: {e}",
                     "stdout": "", "stdout_truncated": False}
        else:
            _arm_cpu_limit(cfg["cpu_seconds"])
            try:
                reply = run_program(source, cfg)
            except BaseException as e:  # noqa: BLE001 - never let the worker die on a program
                name, msg = _describe(e)
                reply = {"ok": False, "value": None, "error_type": name, "error": msg, "stdout": "",
                         "stdout_truncated": False}
        try:
            text = json.dumps(reply, ensure_ascii=True)
        except (ValueError, TypeError, RecursionError, MemoryError) as e:
            text = json.dumps({"ok": False, "value": None, "error_type": "ResultError",
                               "error": f"answer could not be serialised: {type(e).__name__}", "stdout": "",
                               "stdout_truncated": False})
        if len(text) > cfg["max_result_bytes"] + 12 * cfg["max_output"]:
            text = json.dumps({"ok": False, "value": None, "error_type": "ResultError",
                               "error": f"answer is too large (more than {cfg['max_result_bytes']} bytes as JSON)",
                               "stdout": "", "stdout_truncated": False})
        proto.write(text + "\n")
        proto.flush()


if __name__ == "__main__":
    main()
