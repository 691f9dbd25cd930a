"""Every program starts from a clean interpreter: one program must never change another's result.

Each case is an attacker program followed by a victim program in the *same* sandbox with *one* worker. The
attacker leaves something behind in process-wide state that allowed modules keep (a cache, an ABC registry, a
mapping behind a read-only view, an object whose code runs when a later lookup compares keys, a memory hoard);
where it can, it shows in its own answer that the poison took effect in its interpreter. The victim's result must
equal its result on a brand-new sandbox. All of these attacks changed the victim's result when programs shared a
warm interpreter (the design before issue 15).
"""

from __future__ import annotations

import os
import threading
import time

import pytest
from sandbox_procs import template_pid

from agentkit.tools.sandbox import Sandbox

# A flags value that compares equal to 0 and hashes like 0, but is IGNORECASE: re's compile cache stores the
# pattern compiled with it under a key that later equals ("q", 0).
RE_COMPILE_CACHE = (
    """
import re
class Flags(int):
    def __eq__(self, other):
        return True
    def __hash__(self):
        return hash(0)
re.findall("q", "qQq", Flags(2))
answer = len(re.findall("q", "qQq"))
""",
    3,
    'import re\nanswer = len(re.findall("q", "qQq"))\n',
    2,
)

# re.sub's replacement-template cache, keyed by (template, pattern): a str subclass that equals every template.
RE_SUB_TEMPLATE_CACHE = (
    r"""
import re
class Repl(str):
    def __eq__(self, other):
        return True
    def __hash__(self):
        return hash("<\\1>")
re.sub("(z)", Repl("[\\1\\1]"), "zz")
answer = re.sub("(z)", "<\\1>", "zz")
""",
    "[zz][zz]",
    'import re\nanswer = re.sub("(z)", "<\\\\1>", "zz")\n',
    "<z><z>",
)

# _strptime's cache of compiled formats, keyed by the format string.
STRPTIME_CACHE = (
    """
import datetime
class Fmt(str):
    def __eq__(self, other):
        return True
    def __hash__(self):
        return hash("%d/%m/%Y")
datetime.datetime.strptime("03/02/2024", Fmt("%m/%d/%Y"))
answer = datetime.datetime.strptime("03/02/2024", "%d/%m/%Y").month
""",
    3,
    'import datetime\nanswer = datetime.datetime.strptime("03/02/2024", "%d/%m/%Y").month\n',
    2,
)

# enum's cache of combined flag values: IGNORECASE filed under the value of IGNORECASE|MULTILINE.
ENUM_FLAG_CACHE = (
    """
import re
class Value(int):
    def __eq__(self, other):
        return True
    def __hash__(self):
        return hash(10)
type(re.I)(Value(2))
answer = len(re.findall("^q", "Q\\nq", re.I | re.M))
""",
    1,
    'import re\nanswer = len(re.findall("^q", "Q\\nq", re.I | re.M))\n',
    2,
)

# ABC registration on the program's own subclass lands in numbers.Number's global positive cache.
ABC_REGISTER = (
    """
import numbers
class Mine(numbers.Number):
    pass
Mine.register(str)
answer = isinstance("x", numbers.Number)
""",
    True,
    'import numbers\nanswer = isinstance("x", numbers.Number)\n',
    False,
)

# `mappingproxy | x` hands the proxied dict itself to x's type when x is an OrderedDict subclass: the groupindex
# of a cached compiled pattern becomes writable.
MAPPING_VIEW_UNWRAP = (
    """
import collections, re
grabbed = []
class Grab(collections.OrderedDict):
    def __init__(self, *args):
        grabbed.append(args)
pattern = re.compile("(?P<first>a)(?P<second>b)")
pattern.groupindex | Grab()
grabbed[-1][0]["first"] = 2
answer = re.compile("(?P<first>a)(?P<second>b)").match("ab").group("first")
""",
    "b",
    'import re\nanswer = re.compile("(?P<first>a)(?P<second>b)").match("ab").group("first")\n',
    "a",
)

# A key left in re's cache whose __eq__ runs when a later program compiles a pattern with the same hash: it sets
# the *running* program's decimal context (closures, so it needs nothing of its own dead globals).
KEPT_ALIVE_DECIMAL = (
    """
import re

def plant():
    import decimal
    set_context = decimal.setcontext
    Context = decimal.Context

    class Key(int):
        def __eq__(self, other):
            set_context(Context(prec=3))
            return False

        def __hash__(self):
            return hash(0)

    return Key(0)

re.compile("w", plant())
re.compile("w")
import decimal
answer = str(decimal.Decimal(1) / decimal.Decimal(7))
""",
    "0.143",
    'import re, decimal\nre.compile("w")\nanswer = str(decimal.Decimal(1) / decimal.Decimal(7))\n',
    "0.1428571428571428571428571429",
)

# ... that makes the sandbox refuse something on the later program's behalf (refusals are sticky) ...
KEPT_ALIVE_REFUSAL = (
    """
import math, re

def plant():
    proxy_type = type(math)

    class Key(int):
        def __eq__(self, other):
            try:
                proxy_type(None, "x", {})
            except Exception:
                pass
            return False

        def __hash__(self):
            return hash(0)

    return Key(0)

re.compile("v", plant())
answer = 1
""",
    1,
    'import re\nanswer = len(re.compile("v").findall("vvv"))\n',
    3,
)

# ... or that never returns.
KEPT_ALIVE_HANG = (
    """
import re

class Key(int):
    def __eq__(self, other):
        while True:
            pass

    def __hash__(self):
        return hash(0)

re.compile("u", Key(0))
answer = 1
""",
    1,
    'import re\nanswer = len(re.compile("u").findall("uu"))\n',
    2,
)

# 300 MB kept alive in a cache: the next program's 250 MB no longer fits under the 512 MB limit.
MEMORY_HOARD = (
    """
import re

class Key(int):
    def __eq__(self, other):
        return False

    def __hash__(self):
        return hash(0)

key = Key(0)
key.hoard = "h" * (300 * 10**6)
re.compile("t", key)
answer = 1
""",
    1,
    'answer = len("v" * (250 * 10**6))\n',
    250 * 10**6,
)

CASES = {
    "re-compile-cache": RE_COMPILE_CACHE,
    "re-sub-template-cache": RE_SUB_TEMPLATE_CACHE,
    "strptime-cache": STRPTIME_CACHE,
    "enum-flag-cache": ENUM_FLAG_CACHE,
    "abc-register-positive-cache": ABC_REGISTER,
    "mapping-view-unwrap": MAPPING_VIEW_UNWRAP,
    "kept-alive-code-sets-decimal-context": KEPT_ALIVE_DECIMAL,
    "kept-alive-code-raises-refusal": KEPT_ALIVE_REFUSAL,
    "kept-alive-code-hangs": KEPT_ALIVE_HANG,
    "memory-hoard": MEMORY_HOARD,
}
LIMITS = {"timeout": 3.0, "memory_mb": 512}


@pytest.fixture(scope="module")
def shared():
    """One worker for the whole module: every attacker and victim runs through it, one after another."""
    with Sandbox(workers=1, **LIMITS) as sb:
        yield sb


def _outcome(r):
    return r.ok, r.value, r.error, r.kind


@pytest.mark.parametrize("name", list(CASES))
def test_attacker_cannot_change_the_next_programs_result(shared, name):
    attacker, attacker_sees, victim, victim_sees = CASES[name]
    with Sandbox(workers=1, **LIMITS) as fresh:
        want = fresh.run(victim)
    assert want.ok and want.value == victim_sees, want.error

    attack = shared.run(attacker)
    assert attack.ok, f"the attack itself must run: {attack.error}"
    assert attack.value == attacker_sees  # the poison took effect inside the attacker's own interpreter
    got = shared.run(victim)
    assert _outcome(got) == _outcome(want)


def test_every_attack_in_one_row_then_every_victim(shared):
    for attacker, _sees, _victim, _want in CASES.values():
        assert shared.run(attacker).ok
    for _attacker, _sees, victim, want in CASES.values():
        r = shared.run(victim)
        assert r.ok and r.value == want, r.error


# -- the crash of one program stays its own ---------------------------------------------------------------------

DEEP_MAP = "x = iter([1])\nfor i in range(1_000_000):\n    x = map(abs, x)\nanswer = next(x)\n"


def test_a_segfaulting_program_is_reported_as_a_contained_crash():
    with Sandbox(workers=1, timeout=30.0) as sb:
        template = sb._slots[0].proc.pid
        r = sb.run(DEEP_MAP)
        assert not r.ok and r.kind == "crash" and r.error_type == "WorkerCrash" and r.sandbox_error
        assert "SIGSEGV" in r.error and "unaffected" in r.error
        assert sb._slots[0].proc.pid == template  # the template was not touched, no restart
        assert sb.run("answer = 6 * 7").value == 42


# -- every limit applies to the program's own process -----------------------------------------------------------


def _proc(pid: int, name: str) -> str:
    with open(f"/proc/{pid}/{name}") as f:
        return f.read()


def _limit(limits: str, name: str) -> str:
    line = next(line for line in limits.splitlines() if line.startswith(name))
    return line[len(name) :].split()[0]


@pytest.mark.skipif(
    not os.path.exists(f"/proc/self/task/{os.getpid()}/children"),
    reason="reads /proc/PID/task/PID/children (Linux with CONFIG_PROC_CHILDREN)",
)
def test_the_program_runs_in_its_own_limited_process():
    with Sandbox(workers=1, timeout=4.0, memory_mb=300, cpu_seconds=3) as sb:
        template = template_pid(sb._slots[0])
        seen = {}

        def watch():  # find the child busy with the program (it has spun for 0.3 s) and read its limits
            end = time.monotonic() + 3
            ticks = 0.3 * os.sysconf("SC_CLK_TCK")
            while time.monotonic() < end and not seen:
                for pid in _proc(template, f"task/{template}/children").split():
                    try:
                        if int(_proc(int(pid), "stat").split(")")[-1].split()[11]) >= ticks:  # utime
                            seen.update(
                                pid=int(pid),
                                limits=_proc(int(pid), "limits"),
                                status=_proc(int(pid), "status"),
                                ns={n: os.readlink(f"/proc/{pid}/ns/{n}") for n in ("net", "mnt", "pid")},
                            )
                    except (OSError, StopIteration):
                        pass
                time.sleep(0.02)

        watcher = threading.Thread(target=watch)
        watcher.start()
        r = sb.run("while True:\n    pass\n", timeout=2.0)
        watcher.join()
        assert r.kind == "timeout"
        assert seen, "never saw the program's process"
        assert seen["pid"] != template
        limits = seen["limits"]
        assert _limit(limits, "Max address space") == str(300 * 1024 * 1024)
        assert _limit(limits, "Max cpu time") == "3"
        assert _limit(limits, "Max file size") == "0"
        assert _limit(limits, "Max processes") == "0"
        assert _limit(limits, "Max open files") == "16"
        assert "NoNewPrivs:\t1" in seen["status"]
        if os.geteuid() == 0:
            assert "Uid:\t65534\t65534\t65534\t65534" in seen["status"]
        assert "CapEff:\t0000000000000000" in seen["status"]
        if sb.layers.get("seccomp"):
            assert "Seccomp:\t2" in seen["status"]  # a filter
        for layer, ns in (("netns", "net"), ("mountns", "mnt"), ("pidns", "pid")):
            if sb.layers.get(layer):
                assert seen["ns"][ns] != os.readlink(f"/proc/self/ns/{ns}")
        if sb.layers.get("pidns"):  # a PID namespace of its own, below the template's
            assert seen["ns"]["pid"] != os.readlink(f"/proc/{template}/ns/pid")


def test_a_template_killed_from_outside_is_replaced():
    with Sandbox(workers=1, timeout=5.0) as sb:
        template = sb._slots[0].proc.pid
        assert sb.run("answer = 1").ok
        os.kill(template, 9)
        sb._slots[0].proc.wait(timeout=5)
        r = sb.run("answer = 2")
        assert r.ok and r.value == 2, r.error
        assert sb._slots[0].proc.pid != template


@pytest.mark.skipif(
    not os.path.exists(f"/proc/self/task/{os.getpid()}/children"),
    reason="reads /proc/PID/task/PID/children (Linux with CONFIG_PROC_CHILDREN)",
)
def test_a_waiting_child_killed_from_outside_does_not_cost_a_program():
    with Sandbox(workers=1, timeout=5.0) as sb:
        template = template_pid(sb._slots[0])
        end = time.monotonic() + 5
        while len(_proc(template, f"task/{template}/children").split()) < 2 and time.monotonic() < end:
            time.sleep(0.01)
        killed = [int(pid) for pid in _proc(template, f"task/{template}/children").split()]
        for pid in killed:
            os.kill(pid, 9)
        while any(os.path.exists(f"/proc/{pid}") for pid in killed) and time.monotonic() < end + 5:
            time.sleep(0.01)  # reaped by the template
        r = sb.run("answer = 3")
        assert r.ok and r.value == 3, r.error
        assert template_pid(sb._slots[0]) == template
