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
2. **Process** -- every program runs in a warm worker process (``python -I``) started with an empty
   environment, cwd ``/``, in a fresh network namespace when the OS allows it, as ``nobody`` when started as
   root, with rlimits on address space, CPU seconds, file size (0), open files and processes. The parent enforces
   a wall-clock timeout by killing the worker (then starts a new one), which also stops loops that never return
   to the interpreter (``sum(itertools.count())``) and programs that swallow every exception.
3. **Data** -- the answer is converted to plain JSON data inside the worker with exact type checks, sent as one
   JSON line over a pipe, size-capped and schema-checked again by the parent. Nothing is ever unpickled, and the
   program's stdout is never parsed.

What it deliberately does not do: it is not a defence against kernel exploits, CPU side channels or a hostile
co-tenant on the same machine; no seccomp filter is installed; a program that escaped the language layer could
affect later programs run by the *same* worker (workers are recycled every ``max_runs_per_worker`` programs). For
hostile multi-tenant use, run the whole thing inside a container or VM.

Usage::

    with Sandbox(timeout=5.0) as sb:
        r = sb.run("def solution():\\n    return 6 * 7\\n")
        assert r.ok and r.value == 42
        results = sb.run_many([prog1, prog2, prog3])  # all warm workers in parallel
"""

from __future__ import annotations

import json
import math
import os
import select
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from queue import Queue
from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = [
    "AVAILABLE_MODULES",
    "DEFAULT_ALLOWED_IMPORTS",
    "ExecResult",
    "Sandbox",
    "SandboxClosedError",
    "SandboxStartError",
]

_WORKER_SCRIPT = Path(__file__).with_name("_sandbox_worker.py")

#: Modules the worker has a reviewed proxy for; ``allowed_imports`` must be a subset.
AVAILABLE_MODULES: tuple[str, ...] = (
    "bisect", "calendar", "cmath", "collections", "datetime", "decimal", "fractions", "functools", "heapq",
    "itertools", "math", "numbers", "operator", "random", "re", "statistics", "string",
)
DEFAULT_ALLOWED_IMPORTS: tuple[str, ...] = AVAILABLE_MODULES

_MAX_RESULT_BYTES = 1_000_000  # serialised answer; larger answers fail with ResultError
_MAX_ERROR_CHARS = 4_000
_MAX_VALUE_DEPTH = 24
_MAX_VALUE_ITEMS = 10_001


class SandboxClosedError(RuntimeError):
    """``run`` was called on a sandbox after ``close()``."""


class SandboxStartError(RuntimeError):
    """A worker process could not be started (an environment problem, never the program's doing)."""


class ExecResult(BaseModel):
    """The outcome of one program. Only plain JSON data: ``result.model_dump_json()`` always works."""

    model_config = ConfigDict(frozen=True)

    ok: bool
    value: Any = None  # the answer as JSON data (int, float, str, bool, None, list, dict with str keys)
    error: str | None = None  # "TypeName: message", e.g. "TimeoutError: program ran longer than 5.0 s"
    error_type: str | None = None  # "TypeName" alone
    stdout: str = ""  # what the program printed, capped at ``max_output`` characters
    stdout_truncated: bool = False
    duration: float = 0.0  # seconds, measured by the parent from sending the program to receiving the answer


def _failure(error_type: str, message: str, duration: float = 0.0, stdout: str = "",
             truncated: bool = False) -> ExecResult:
    return ExecResult(ok=False, value=None, error=f"{error_type}: {message}", error_type=error_type,
                      stdout=stdout, stdout_truncated=truncated, duration=duration)


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


class _WorkerGone(Exception):
    pass


class _Worker:
    """One worker process and its pipes. Used by one thread at a time (the pool hands slots out)."""

    def __init__(self, argv: list[str], env: dict[str, str], max_reply: int, startup_timeout: float) -> None:
        self.argv, self.env = argv, env
        self.max_reply = max_reply
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen | None = None
        self.buf = bytearray()
        self.runs = 0
        self.layers: dict = {}

    # -- life cycle -------------------------------------------------------------------------------------------
    def start(self) -> None:
        self.stop()
        self.buf = bytearray()
        self.runs = 0
        try:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                close_fds=True, cwd="/", env=self.env, start_new_session=True)
        except OSError as e:
            raise SandboxStartError(f"could not start a sandbox worker: {e}") from e
        os.set_blocking(self.proc.stdin.fileno(), False)
        os.set_blocking(self.proc.stdout.fileno(), False)
        try:
            line = self._read_line(time.monotonic() + self.startup_timeout)
            hello = json.loads(line) if line is not None else None
        except (_WorkerGone, ValueError):
            hello = None
        if type(hello) is not dict or hello.get("ready") is not True:
            self.kill()
            raise SandboxStartError("a sandbox worker did not start (is RestrictedPython installed?)")
        layers = hello.get("layers")
        self.layers = layers if type(layers) is dict else {}

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> int | None:
        """Kill the process and reap it (no zombies). Returns its exit status."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            try:
                proc.kill()
            except ProcessLookupError:
                pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL is not ignorable
            pass
        for f in (proc.stdin, proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        return proc.returncode

    def stop(self) -> None:
        """Ask politely (EOF on stdin), then kill."""
        proc = self.proc
        if proc is None:
            return
        try:
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            pass
        self.kill()

    # -- I/O --------------------------------------------------------------------------------------------------
    def _write_all(self, data: bytes, deadline: float) -> None:
        fd = self.proc.stdin.fileno()
        view = memoryview(data)
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        while view:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            if not poller.poll(remaining * 1000):
                continue
            try:
                n = os.write(fd, view)
            except BlockingIOError:
                continue
            except (BrokenPipeError, OSError) as e:
                raise _WorkerGone from e
            view = view[n:]

    def _read_line(self, deadline: float) -> bytes | None:
        """One line from the worker, or None at the deadline. Raises _WorkerGone on EOF or an oversized line."""
        fd = self.proc.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[: i + 1]
                return line
            if len(self.buf) > self.max_reply:
                raise _WorkerGone("oversized reply")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            if not poller.poll(max(1, int(remaining * 1000))):
                continue
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:
                continue
            except OSError as e:
                raise _WorkerGone from e
            if not chunk:
                raise _WorkerGone("EOF")
            self.buf += chunk

    def request(self, payload: bytes, timeout: float) -> bytes | None:
        """Send one program; return the reply line, or None on timeout. Raises _WorkerGone if the worker died."""
        deadline = time.monotonic() + timeout
        self.runs += 1
        try:
            self._write_all(payload, deadline)
        except TimeoutError:
            return None
        return self._read_line(deadline)


def _shutdown(workers: list[_Worker]) -> None:
    for w in workers:
        try:
            w.stop()
        except Exception:  # noqa: BLE001 - best effort at interpreter exit
            pass


class Sandbox:
    """Runs untrusted PAL programs in a pool of warm, locked-down worker processes.

    Limits (defaults in brackets):

    * ``timeout`` [5.0] -- wall-clock seconds per program, enforced by the parent killing the worker;
    * ``cpu_seconds`` [ceil(timeout) + 1] -- CPU seconds per program (RLIMIT_CPU, re-armed before each program);
    * ``memory_mb`` [512] -- address-space limit of each worker (RLIMIT_AS);
    * ``max_output`` [10_000] -- characters of printed output kept; the rest is dropped;
    * ``allowed_imports`` [all of :data:`AVAILABLE_MODULES`] -- modules a program may import;
    * ``workers`` [number of CPUs, at most 8] -- warm worker processes; ``run_many`` uses all of them;
    * ``max_recursion`` [1000] -- Python call depth a program may use;
    * ``max_source_chars`` [100_000] -- longer programs fail without running;
    * ``random_seed`` [0] -- seed of the fresh ``random.Random`` each program gets (``None``: OS entropy);
    * ``max_runs_per_worker`` [1000] -- a worker is replaced after this many programs;
    * ``drop_privileges`` [True] -- when started as root, workers switch to uid/gid 65534 (nobody).

    ``run`` never raises because of what the program does: every failure is an ``ExecResult`` with
    ``ok=False``. It raises only on misuse: a non-``str`` source (``TypeError``), a closed sandbox
    (:class:`SandboxClosedError`), or a worker that cannot be started at all (:class:`SandboxStartError`).
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
        max_runs_per_worker: int = 1000,
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
        self.max_runs_per_worker = max_runs_per_worker

        config = {
            "memory_mb": memory_mb, "cpu_seconds": self.cpu_seconds, "max_output": max_output,
            "allowed_imports": list(self.allowed_imports), "max_recursion": max_recursion,
            "random_seed": random_seed, "drop_privileges": bool(drop_privileges),
            "max_result_bytes": _MAX_RESULT_BYTES,
        }
        argv = [sys.executable, "-I", "-B", str(_WORKER_SCRIPT), json.dumps(config)]
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
        max_reply = _MAX_RESULT_BYTES + 12 * max_output + 64 * 1024

        self._closed = False
        self._lock = threading.Lock()
        self._slots = [_Worker(argv, env, max_reply, startup_timeout) for _ in range(workers)]
        self._idle: Queue[_Worker] = Queue()
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

        def start(slot: _Worker) -> None:
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
        """What process-level hardening the workers report (netns, uid, no_new_privs, rlimits); informational."""
        return dict(self._slots[0].layers) if self._slots else {}

    @property
    def closed(self) -> bool:
        return self._closed

    def run(self, source: str, *, timeout: float | None = None) -> ExecResult:
        """Run one program and return its result; see the class docstring for what raises.

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
            return _failure("ValueError", f"program is longer than {self.max_source_chars} characters")
        slot = self._idle.get()
        try:
            if self._closed:
                raise SandboxClosedError("this Sandbox is closed")
            return self._run_on(slot, source, float(timeout))
        finally:
            self._idle.put(slot)

    def run_many(self, sources: Sequence[str]) -> list[ExecResult]:
        """Run many programs on all warm workers in parallel; results come back in the order of ``sources``."""
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
        """Stop every worker process (idempotent). Also runs at interpreter exit or garbage collection."""
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
    def _run_on(self, slot: _Worker, source: str, timeout: float) -> ExecResult:
        if not slot.alive() or slot.runs >= self.max_runs_per_worker:
            slot.start()
        payload = (json.dumps({"source": source}) + "\n").encode("utf-8")
        t0 = time.perf_counter()
        try:
            line = slot.request(payload, timeout)
        except _WorkerGone:
            line = b""
        duration = time.perf_counter() - t0
        if line is None:  # wall-clock timeout
            slot.kill()
            self._respawn(slot)
            return _failure("TimeoutError", f"program ran longer than {timeout} s", duration)
        if line == b"":  # the worker died: CPU limit, or a crash
            status = slot.kill()
            self._respawn(slot)
            if status in (-signal.SIGXCPU, -signal.SIGKILL):
                return _failure("TimeoutError", f"program used more than {self.cpu_seconds} s of CPU time",
                                duration)
            return _failure("WorkerCrash", f"the worker process died while running the program (status {status})",
                            duration)
        try:
            reply = json.loads(line)
            result = self._validate(reply, duration)
        except (ValueError, TypeError, KeyError, RecursionError, MemoryError) as e:
            slot.kill()
            self._respawn(slot)
            return _failure("WorkerCrash", f"the worker sent a malformed reply ({type(e).__name__})", duration)
        return result

    def _respawn(self, slot: _Worker) -> None:
        if self._closed:
            return
        try:
            slot.start()
        except SandboxStartError:
            pass  # retried (and raised) on the slot's next use

    def _validate(self, reply: Any, duration: float) -> ExecResult:
        if type(reply) is not dict:
            raise TypeError("reply is not an object")
        ok, value = reply["ok"], reply["value"]
        error_type, error = reply["error_type"], reply["error"]
        stdout, truncated = reply["stdout"], reply["stdout_truncated"]
        if type(ok) is not bool or type(truncated) is not bool or type(stdout) is not str:
            raise TypeError("bad field types")
        if len(stdout) > self.max_output:
            stdout, truncated = stdout[: self.max_output], True
        stdout = _clean_str(stdout)
        if ok:
            value = _clean_value(value)
            return ExecResult(ok=True, value=value, stdout=stdout, stdout_truncated=truncated, duration=duration)
        if type(error_type) is not str or type(error) is not str:
            raise TypeError("bad error fields")
        return _failure(_clean_str(error_type[:100]) or "Error", _clean_str(error[:_MAX_ERROR_CHARS]), duration,
                        stdout, truncated)
