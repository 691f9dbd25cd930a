"""A sandbox for model-written Python programs: the runtime behind agentkit's PAL strategy.

PAL -- "Program-aided Language Models" (Gao, Madaan, Zhou, Alon, Liu, Yang, Callan and Neubig, 2022) -- has the
model write a small Python program (``def solution(): ...``) whose return value is the answer. The paper's own
runtime is a plain ``exec`` with a signal-based timeout; later PAL runtimes (LangChain's PALChain, smolagents'
local interpreter) were escaped again and again. This module runs such programs so that they can compute but not
reach the host.

What it implements, in layers (details and the threat model in docs/sandbox.md):

1. **Language** -- the program is compiled with RestrictedPython and a stricter policy; attribute access, item
   and attribute writes, iteration, imports and ``print`` all go through guards that refuse
   underscore names, frame/code/generator/traceback internals, ``mro``, attribute-reaching ``str.format`` fields
   and writes to anything the program did not make. Builtins are a short allow-list (no ``getattr``, ``eval``,
   ``open``, ``type`` with 3 arguments, ...). Imports come from an allow-list of pure modules, each handed over as
   a read-only proxy that exposes a reviewed list of public names (so no ``datetime.sys`` or ``re.enum``).
2. **Process** -- every program runs in a *fresh* process: a warm template (``python -I``, empty environment,
   cwd ``/``) has imported and warmed everything allowed, entered new network, mount, IPC and PID namespaces (in
   a user namespace when not root) on an empty read-only root, and forks one child per program. The child is
   PID 1 of a PID namespace of its own, drops root to ``nobody`` and every capability, sets its own rlimits
   (address space, CPU seconds, file size 0, open files, no new processes), installs a seccomp filter (no new
   processes or programs, sockets, IPC, mounts, namespaces, prctl, ...), runs exactly one program, sends its
   reply and exits -- or is killed once its reply is in. No program ever sees state another program left
   behind: caches inside allowed modules, ABC registrations, garbage, memory, objects whose code would run
   later, processes, files, IPC objects -- all of it dies with the child. The parent talks to each child over
   two private pipes, so the template is off the path of every run; when the wall clock runs out the template
   kills the child; a program that crashes its interpreter (a C-level stack overflow) takes only its own
   process down. Where the OS refuses a mechanism the sandbox goes on without it and ``Sandbox.layers`` says so.
3. **Data** -- the answer is converted to plain JSON data inside the program's process with exact type checks,
   sent as one JSON line over its pipe, size-capped and schema-checked again by the parent. Nothing is ever
   unpickled, and the program's stdout is never parsed.

What it deliberately does not do: it is not a defence against kernel exploits, CPU side channels or a hostile
co-tenant on the same machine; the seccomp filter is a deny-list (x86_64 only), not an allow-list. For hostile
multi-tenant use, run the whole thing inside a container or VM.

Usage::

    with Sandbox(timeout=5.0) as sb:
        r = sb.run("def solution():\\n    return 6 * 7\\n")
        assert r.ok and r.value == 42
        results = sb.run_many([prog1, prog2, prog3])  # all templates in parallel
"""

from __future__ import annotations

import json
import math
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from queue import Queue
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict

from agentkit.errors import SandboxClosedError, SandboxStartError

__all__ = [
    "AVAILABLE_MODULES",
    "DEFAULT_ALLOWED_IMPORTS",
    "ExecResult",
    "SANDBOX_KINDS",
    "Sandbox",
    "SandboxClosedError",
    "SandboxStartError",
]

_WORKER_SCRIPT = Path(__file__).with_name("_sandbox_worker.py")

#: Modules the worker has a reviewed proxy for; ``allowed_imports`` must be a subset.
AVAILABLE_MODULES: tuple[str, ...] = (
    "bisect",
    "calendar",
    "cmath",
    "collections",
    "datetime",
    "decimal",
    "fractions",
    "functools",
    "heapq",
    "itertools",
    "math",
    "numbers",
    "operator",
    "random",
    "re",
    "statistics",
    "string",
)
DEFAULT_ALLOWED_IMPORTS: tuple[str, ...] = AVAILABLE_MODULES

_MAX_RESULT_BYTES = 1_000_000  # serialised answer; larger answers fail with ResultError
_MAX_ERROR_CHARS = 4_000
_MAX_VALUE_DEPTH = 24
_MAX_VALUE_ITEMS = 10_001


Kind = Literal["ok", "exception", "syntax", "refused", "result", "timeout", "memory", "crash", "too_long"]
#: Kinds only the sandbox itself reports; a program's own exception is always "exception", whatever its name.
SANDBOX_KINDS: frozenset[str] = frozenset({"syntax", "refused", "result", "timeout", "memory", "crash", "too_long"})
_CHILD_KINDS = frozenset({"ok", "exception", "syntax", "refused", "result", "memory"})  # what a child may report


class ExecResult(BaseModel):
    """The outcome of one program. Only plain JSON data: ``result.model_dump_json()`` always works."""

    model_config = ConfigDict(frozen=True)

    ok: bool
    value: Any = None  # the answer as JSON data (int, float, str, bool, None, list, dict with str keys)
    error: str | None = None  # "TypeName: message", e.g. "TimeoutError: program ran longer than 5.0 s"
    error_type: str | None = None  # "TypeName" alone
    # Who ended the run, set by the sandbox alone: "ok"; "exception" (the program raised, whatever the class is
    # called -- a program's own `TimeoutError("program ran longer than 5.0 s")` is an "exception"); or the
    # sandbox's verdicts: "syntax" (did not compile), "refused" (a guard refused), "result" (no answer, or not
    # plain data), "timeout" (wall clock or CPU), "memory" (address-space limit), "crash" (the program's process
    # died, e.g. a C stack overflow; nothing else is affected), "too_long" (source over ``max_source_chars``).
    kind: Kind = "ok"
    stdout: str = ""  # what the program printed, capped at ``max_output`` characters
    stdout_truncated: bool = False
    duration: float = 0.0  # seconds, measured by the parent from sending the program to receiving the answer

    @property
    def sandbox_error(self) -> bool:
        """True when the sandbox, not the program, ended the run with an error (see ``kind``)."""
        return self.kind in SANDBOX_KINDS


def _failure(
    kind: str, error_type: str, message: str, duration: float = 0.0, stdout: str = "", truncated: bool = False
) -> ExecResult:
    return ExecResult(
        ok=False,
        value=None,
        error=f"{error_type}: {message}",
        error_type=error_type,
        kind=kind,
        stdout=stdout,
        stdout_truncated=truncated,
        duration=duration,
    )


def _clean_str(s: str) -> str:
    """Lone surrogates ('\\ud800') survive JSON but not UTF-8 encoding; replace them so results always serialise."""
    if s.isascii():
        return s
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        return s.encode("utf-8", "replace").decode("utf-8")


def _clean_value(value: Any, depth: int = 0, budget: list[int] | None = None) -> Any:
    """Re-check, in the parent, that a decoded answer is small plain data, and clean its strings."""
    if budget is None:
        budget = [_MAX_VALUE_ITEMS]
    budget[0] -= 1
    if budget[0] < 0 or depth > _MAX_VALUE_DEPTH:
        raise ValueError("answer too large or too deep")
    t = type(value)
    if value is None or t is bool or t is int or t is float:
        return value
    if t is str:
        return _clean_str(value)
    if t is list:
        return [_clean_value(v, depth + 1, budget) for v in value]
    if t is dict:
        return {_clean_str(k): _clean_value(v, depth + 1, budget) for k, v in value.items()}
    raise ValueError(f"unexpected type {t.__name__} in answer")


class _TemplateGone(Exception):
    pass


class _NotDelivered(Exception):
    """The child was gone before it read the program: nothing ran, so the program may go to the next child."""


class _Child(NamedTuple):
    pid: int
    src_w: int  # the parent writes the request here, then closes it
    res_r: int  # the child's one reply line comes back here


def _close(*fds: int) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


class _Template:
    """One template process, seen from the parent. Used by one thread at a time (the pool hands slots out).

    The template never runs a program. It keeps a few children forked ahead and hands the parent, over a
    control socket, each child's two private pipes (SCM_RIGHTS); the parent sends the program straight to the
    child and reads the reply straight from it, so the template is off the path of every run. The template
    kills a child when asked (it has not reaped it, so the pid cannot have been reused) and reports each exit.
    """

    def __init__(self, argv: list[str], env: dict[str, str], max_reply: int, startup_timeout: float) -> None:
        self.argv, self.env = argv, env
        self.max_reply = max_reply
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen | None = None
        self.ctl: socket.socket | None = None
        self.ready: deque[_Child] = deque()
        self.exits: dict[int, dict] = {}
        self.layers: dict = {}

    # -- life cycle -------------------------------------------------------------------------------------------
    def start(self) -> None:
        self.stop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = subprocess.Popen(
                [*self.argv, str(theirs.fileno())],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
                cwd="/",
                env=self.env,
                start_new_session=True,
            )
        except OSError as e:
            ours.close()
            raise SandboxStartError(f"could not start a sandbox template process: {e}") from e
        finally:
            theirs.close()
        self.ctl = ours
        try:
            hello = self._receive(time.monotonic() + self.startup_timeout)
        except (_TemplateGone, ValueError):
            hello = None
        if type(hello) is not dict or hello.get("ready") is not True:
            self.kill()
            raise SandboxStartError("a sandbox template process did not start (is RestrictedPython installed?)")
        layers = hello.get("layers")
        self.layers = layers if type(layers) is dict else {}

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> int | None:
        """Kill the template and its children (its process group), reap it, drop its pipes. Returns its status."""
        proc, self.proc = self.proc, None
        ctl, self.ctl = self.ctl, None
        while self.ready:
            child = self.ready.popleft()
            _close(child.src_w, child.res_r)
        self.exits.clear()
        if ctl is not None:
            ctl.close()
        if proc is None:
            return None
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # start_new_session: the group id is the template's pid
            except (ProcessLookupError, PermissionError):
                proc.kill()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL is not ignorable
            pass
        return proc.returncode

    def stop(self) -> None:
        """Ask politely (closing the control socket: the template kills its children and exits), then kill."""
        if self.ctl is not None:
            self.ctl.close()
            self.ctl = None
        if self.proc is not None:
            try:
                self.proc.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    # -- the control socket -----------------------------------------------------------------------------------
    def _receive(self, deadline: float) -> dict | None:
        """One message from the template (a child's pipes are queued, an exit recorded), or None at the deadline."""
        ctl = self.ctl
        if ctl is None:
            raise _TemplateGone("no template")
        poller = select.poll()  # not select(): the host may hold more than FD_SETSIZE descriptors
        poller.register(ctl, select.POLLIN)
        remaining = deadline - time.monotonic()
        if not poller.poll(max(0, math.ceil(remaining * 1000))):
            return None
        try:
            data, fds, _flags, _addr = socket.recv_fds(ctl, 4096, 2)
        except OSError as e:
            raise _TemplateGone from e
        if not data:
            _close(*fds)
            raise _TemplateGone("EOF")
        message = json.loads(data)
        if type(message) is not dict:
            _close(*fds)
            raise ValueError("malformed message")
        if "child" in message:
            if type(message["child"]) is not int or len(fds) != 2:
                _close(*fds)
                raise ValueError("malformed child message")
            self.ready.append(_Child(message["child"], fds[0], fds[1]))
        else:
            _close(*fds)
            if type(message.get("exit")) is int:
                self.exits[message["exit"]] = message
        return message

    def take_child(self, deadline: float) -> _Child | None:
        """The next ready child, or None at the deadline. Children that died while waiting are dropped."""
        while self._receive(0.0) is not None:  # first whatever the template has already said (exits included)
            pass
        while True:
            while not self.ready:
                if self._receive(deadline) is None:
                    return None
            child = self.ready.popleft()
            if child.pid not in self.exits:
                break
            _close(child.src_w, child.res_r)
        waiting = {c.pid for c in self.ready}
        self.exits = {pid: report for pid, report in self.exits.items() if pid in waiting}
        return child

    def wait_exit(self, pid: int, deadline: float) -> dict | None:
        while pid not in self.exits:
            if self._receive(deadline) is None:
                return None
        return self.exits.pop(pid)

    def kill_child(self, pid: int) -> None:
        try:
            self.ctl.send(json.dumps({"kill": pid}).encode())
        except (OSError, AttributeError) as e:
            raise _TemplateGone from e


def _write_all(fd: int, data: bytes, deadline: float) -> bool:
    """Write everything to a non-blocking pipe; False at the deadline or when the reader is gone."""
    view = memoryview(data)
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    while view:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not poller.poll(max(1, math.ceil(remaining * 1000))):
            if time.monotonic() >= deadline:
                return False
            continue
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            continue
        except OSError:
            return False
    return True


def _read_reply(fd: int, deadline: float, limit: int) -> tuple[bytes, bool]:
    """What the child writes until it closes the pipe, the deadline passes or ``limit`` bytes are exceeded;
    and whether it closed the pipe."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    data = bytearray()
    while len(data) <= limit:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        if not poller.poll(max(1, math.ceil(remaining * 1000))):
            continue
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            continue
        if not chunk:
            return bytes(data), True
        data += chunk
    return bytes(data), False


def _shutdown(templates: list[_Template]) -> None:
    for t in templates:
        try:
            t.stop()
        except Exception:  # noqa: BLE001 - best effort at interpreter exit
            pass


# How long the parent waits for the template itself (a child's pipes, an exit report) before it kills and
# restarts it: the template does almost nothing, so this only ever fires if it is stuck or gone.
_TEMPLATE_PATIENCE_S = 10.0


class Sandbox:
    """Runs untrusted PAL programs, each in a fresh process forked from a warm, locked-down template.

    Limits (defaults in brackets), all per program:

    * ``timeout`` [5.0] -- wall-clock seconds, enforced by killing the program's process;
    * ``cpu_seconds`` [ceil(timeout) + 1] -- CPU seconds (RLIMIT_CPU of the program's process);
    * ``memory_mb`` [512] -- address space of the program's process (RLIMIT_AS);
    * ``max_output`` [10_000] -- characters of printed output kept; the rest is dropped;
    * ``allowed_imports`` [all of :data:`AVAILABLE_MODULES`] -- modules a program may import;
    * ``workers`` [number of CPUs, at most 8] -- template processes, i.e. programs run at once by ``run_many``;
    * ``max_recursion`` [1000] -- Python call depth a program may use;
    * ``max_source_chars`` [100_000] -- longer programs fail without running;
    * ``random_seed`` [0] -- seed of the fresh ``random.Random`` each program gets (``None``: OS entropy);
    * ``drop_privileges`` [True] -- when started as root, programs run as uid/gid 65534 (nobody).

    ``run`` never raises because of what the program does: every failure is an ``ExecResult`` with
    ``ok=False`` and a ``kind`` that says whether the program raised or the sandbox stopped it. It raises only on
    misuse: a non-``str`` source (``TypeError``), a closed sandbox (:class:`SandboxClosedError`), or a template
    process that cannot be started at all (:class:`SandboxStartError`).
    """

    def __init__(
        self,
        timeout: float = 5.0,
        cpu_seconds: float | None = None,
        memory_mb: int = 512,
        max_output: int = 10_000,
        allowed_imports: Iterable[str] | None = None,
        workers: int | None = None,
        max_recursion: int = 1000,
        max_source_chars: int = 100_000,
        random_seed: int | None = 0,
        drop_privileges: bool = True,
        startup_timeout: float = 30.0,
    ) -> None:
        if not (isinstance(timeout, (int, float)) and timeout > 0 and math.isfinite(timeout)):
            raise ValueError("timeout must be a positive number of seconds")
        if cpu_seconds is None:
            cpu_seconds = math.ceil(timeout) + 1
        if not (isinstance(cpu_seconds, (int, float)) and cpu_seconds > 0):
            raise ValueError("cpu_seconds must be positive")
        if not (isinstance(memory_mb, int) and memory_mb >= 64):
            raise ValueError("memory_mb must be an int >= 64")
        if not (isinstance(max_output, int) and max_output >= 0):
            raise ValueError("max_output must be an int >= 0")
        if isinstance(allowed_imports, str):
            raise TypeError("allowed_imports must be an iterable of module names, not a str")
        allowed = tuple(DEFAULT_ALLOWED_IMPORTS if allowed_imports is None else allowed_imports)
        unknown = sorted(set(allowed) - set(AVAILABLE_MODULES))
        if unknown:
            raise ValueError(f"no reviewed proxy for module(s) {unknown}; available: {list(AVAILABLE_MODULES)}")
        if workers is None:
            workers = max(1, min(8, os.cpu_count() or 1))
        if not (isinstance(workers, int) and workers >= 1):
            raise ValueError("workers must be an int >= 1")
        if not (isinstance(max_recursion, int) and 50 <= max_recursion <= 20_000):
            raise ValueError("max_recursion must be an int in [50, 20000]")
        if random_seed is not None and not isinstance(random_seed, int):
            raise TypeError("random_seed must be an int or None")

        self.timeout = float(timeout)
        self.cpu_seconds = float(cpu_seconds)
        self.memory_mb = memory_mb
        self.max_output = max_output
        self.allowed_imports = tuple(sorted(set(allowed)))
        self.workers = workers
        self.max_recursion = max_recursion
        self.max_source_chars = max_source_chars
        self.random_seed = random_seed

        config = {
            "memory_mb": memory_mb,
            "cpu_seconds": self.cpu_seconds,
            "max_output": max_output,
            "allowed_imports": list(self.allowed_imports),
            "max_recursion": max_recursion,
            "random_seed": random_seed,
            "drop_privileges": bool(drop_privileges),
            "max_result_bytes": _MAX_RESULT_BYTES,
        }
        argv = [sys.executable, "-I", "-B", str(_WORKER_SCRIPT), json.dumps(config)]
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
        max_reply = _MAX_RESULT_BYTES + 12 * max_output + 64 * 1024  # what the child's own cap lets through

        self._closed = False
        self._lock = threading.Lock()
        self._slots = [_Template(argv, env, max_reply, startup_timeout) for _ in range(workers)]
        self._idle: Queue[_Template] = Queue()
        self._executor: ThreadPoolExecutor | None = None
        self._finalizer = weakref.finalize(self, _shutdown, self._slots)
        try:
            self._start_all()
        except BaseException:
            self.close()
            raise
        for slot in self._slots:
            self._idle.put(slot)

    def _start_all(self) -> None:
        # start the processes concurrently: each start mostly waits for the interpreter to boot
        errors: list[BaseException] = []

        def start(slot: _Template) -> None:
            try:
                slot.start()
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=start, args=(s,), daemon=True) for s in self._slots]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]

    # -- public API -------------------------------------------------------------------------------------------
    @property
    def layers(self) -> dict:
        """What process containment the templates achieved: ``netns``, ``userns``, ``mountns``, ``ipcns``, ``pidns``,
        ``no_new_privs``, ``seccomp`` (bools), ``uid`` and ``rlimits``; docs/sandbox.md says what holds without each."""
        return dict(self._slots[0].layers) if self._slots else {}

    @property
    def closed(self) -> bool:
        return self._closed

    def run(self, source: str, *, timeout: float | None = None) -> ExecResult:
        """Run one program in a fresh process and return its result; see the class docstring for what raises.

        ``timeout`` overrides the sandbox's wall-clock limit for this call (the CPU limit stays as configured).
        """
        if not isinstance(source, str):
            raise TypeError(f"source must be a str, not {type(source).__name__}")
        if timeout is None:
            timeout = self.timeout
        elif not (isinstance(timeout, (int, float)) and timeout > 0 and math.isfinite(timeout)):
            raise ValueError("timeout must be a positive number of seconds")
        if self._closed:
            raise SandboxClosedError("this Sandbox is closed")
        if len(source) > self.max_source_chars:
            return _failure("too_long", "ValueError", f"program is longer than {self.max_source_chars} characters")
        slot = self._idle.get()
        try:
            if self._closed:
                raise SandboxClosedError("this Sandbox is closed")
            return self._run_on(slot, source, float(timeout))
        finally:
            self._idle.put(slot)

    def run_many(self, sources: Sequence[str]) -> list[ExecResult]:
        """Run many programs, one per template at a time, all templates in parallel; results in ``sources`` order."""
        if isinstance(sources, str):
            raise TypeError("run_many takes a sequence of programs, not a single str")
        sources = list(sources)
        for i, s in enumerate(sources):
            if not isinstance(s, str):
                raise TypeError(f"sources[{i}] must be a str, not {type(s).__name__}")
        if self._closed:
            raise SandboxClosedError("this Sandbox is closed")
        if len(sources) <= 1 or self.workers == 1:
            return [self.run(s) for s in sources]
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="sandbox")
            executor = self._executor
        return list(executor.map(self.run, sources))

    def close(self) -> None:
        """Stop every template process (idempotent). Also runs at interpreter exit or garbage collection."""
        with self._lock:
            self._closed = True
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)
        self._finalizer()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self.workers} workers"
        return f"Sandbox(timeout={self.timeout}, memory_mb={self.memory_mb}, {state})"

    # -- internals --------------------------------------------------------------------------------------------
    def _run_on(self, slot: _Template, source: str, timeout: float) -> ExecResult:
        payload = json.dumps({"source": source}).encode("utf-8")
        for attempt in (1, 2, 3):  # another try only when the program never reached a child
            if not slot.alive():
                slot.start()
            try:
                child = slot.take_child(time.monotonic() + _TEMPLATE_PATIENCE_S)
            except (_TemplateGone, ValueError):
                child = None
            if child is None:  # stuck or gone before the program was handed over: a fresh template
                slot.kill()
                if attempt == 1:
                    continue
                self._respawn(slot)
                return _failure(
                    "crash", "WorkerCrash", "the sandbox's template process stopped answering; it was restarted"
                )
            try:
                return self._run_child(slot, child, payload, timeout)
            except _NotDelivered:  # the child was gone before it read the program (killed from outside)
                continue
            except (_TemplateGone, ValueError):
                slot.kill()
                self._respawn(slot)
                return _failure("crash", "WorkerCrash", "the sandbox's template process died; it was restarted")
            finally:
                _close(child.res_r)  # src_w is closed by _run_child, as soon as the request is written
        return _failure("crash", "WorkerCrash", "three of the sandbox's processes died before they read the program")

    def _run_child(self, slot: _Template, child: _Child, payload: bytes, timeout: float) -> ExecResult:
        t0 = time.perf_counter()
        deadline = time.monotonic() + timeout
        try:
            os.set_blocking(child.src_w, False)
            os.set_blocking(child.res_r, False)
            sent = _write_all(child.src_w, payload, deadline)
        finally:
            os.close(child.src_w)  # EOF: the child starts
        if not sent and time.monotonic() < deadline:
            raise _NotDelivered
        reply, closed = _read_reply(child.res_r, deadline, slot.max_reply) if sent else (b"", False)
        if closed and reply.endswith(b"\n") and reply.count(b"\n") == 1:
            duration = time.perf_counter() - t0
            try:  # the process ends with its run, even one that answered and went on (its own exit is quicker)
                slot.kill_child(child.pid)
            except _TemplateGone:
                pass  # and the template's PID namespace, with every process in it, is gone with it
            try:
                return self._validate(json.loads(reply), duration)
            except (ValueError, TypeError, KeyError, RecursionError, MemoryError) as e:
                return _failure(
                    "crash",
                    "WorkerCrash",
                    f"the program's process sent a malformed reply ({type(e).__name__})",
                    duration,
                )
        if time.monotonic() >= deadline:  # the wall clock: the template kills the child
            slot.kill_child(child.pid)
            return _failure("timeout", "TimeoutError", f"program ran longer than {timeout} s", time.perf_counter() - t0)
        # no acceptable reply: the child died (CPU limit, a crash), or sent too much or something malformed
        if not closed and sent:
            slot.kill_child(child.pid)
        report = slot.wait_exit(child.pid, deadline)
        if report is None:
            slot.kill_child(child.pid)
            report = slot.wait_exit(child.pid, time.monotonic() + _TEMPLATE_PATIENCE_S)
            if report is None:
                raise _TemplateGone("no exit report")
        duration = time.perf_counter() - t0
        sig, cpu = report.get("signal"), report.get("cpu")
        if sig == "SIGXCPU" or (
            sig == "SIGKILL" and closed and type(cpu) is float and cpu >= math.ceil(self.cpu_seconds) - 0.05
        ):
            return _failure(
                "timeout", "TimeoutError", f"program used more than {self.cpu_seconds} s of CPU time", duration
            )
        if reply:
            why = "it sent a malformed or oversized reply"
        elif sig == "SIGSEGV":
            why = "SIGSEGV, most likely a C stack overflow from very deeply nested objects"
        elif type(sig) is str:
            why = _clean_str(sig[:40])
        else:
            why = f"exit status {report.get('code')}"
        return _failure(
            "crash",
            "WorkerCrash",
            f"the program's process died ({why}); the sandbox and other programs are unaffected",
            duration,
        )

    def _respawn(self, slot: _Template) -> None:
        if self._closed:
            return
        try:
            slot.start()
        except SandboxStartError:
            pass  # retried (and raised) on the slot's next use

    def _validate(self, reply: Any, duration: float) -> ExecResult:
        """A child's reply: hostile input, checked field by field."""
        kind, value = reply["kind"], reply["value"]
        error_type, error = reply["error_type"], reply["error"]
        stdout, truncated = reply["stdout"], reply["stdout_truncated"]
        if kind not in _CHILD_KINDS or type(truncated) is not bool or type(stdout) is not str:
            raise TypeError("bad field types")
        if len(stdout) > self.max_output:
            stdout, truncated = stdout[: self.max_output], True
        stdout = _clean_str(stdout)
        if kind == "ok":
            value = _clean_value(value)
            return ExecResult(
                ok=True, value=value, kind="ok", stdout=stdout, stdout_truncated=truncated, duration=duration
            )
        if type(error_type) is not str or type(error) is not str:
            raise TypeError("bad error fields")
        return _failure(
            kind,
            _clean_str(error_type[:100]) or "Error",
            _clean_str(error[:_MAX_ERROR_CHARS]),
            duration,
            stdout,
            truncated,
        )
