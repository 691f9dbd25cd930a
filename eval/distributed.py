"""Run a benchmark's episodes on Ray workers: many machines, one run directory, nothing lost.

``RayExecutor`` is an executor for ``run_benchmark`` (``agentkit bench --ray [ADDRESS] --workers N``). It starts N
long-lived Ray actors (``BenchWorker``); each loads its own model once, from the driver's exact model spec and
dtype, and limits torch to its share of its node's cores. The driver keeps the queue of jobs (one example with
one method) and hands each idle worker a whole shard at a time, so the worker's engine keeps its continuous
batches full. A worker streams each record back the moment its example finishes (a Ray streaming generator);
the driver writes it to ``samples.jsonl`` exactly as a local run does, so resume, the reports and the progress
bar are the same. Shards shrink near the end of the run so that no worker is left idle while another has a
long queue.

Faults. A worker that dies (its process killed, its node lost) loses only the examples of its shard that had not
come back; they go to the front of the queue and run on the next free worker, and a new worker takes the dead
one's place (at most ``max_restarts`` times per place; then the run goes on with fewer). An example whose worker
died ``max_attempts`` times is set aside and the run finishes without it, then stops with a ``BenchmarkError``
naming it: every other record is on disk and rerunning the command retries it. An exception inside a worker
(a bug, a model that cannot load) is raised in the driver as it is. If the driver dies, Ray ends its workers
with it; the run directory is the same as after a local kill and resumes on Ray or not.

Deliberately not here: writing files (the runner does, in the driver only), Ray cluster management (``ray
start``; see docs/distributed.md), and spreading one model over several machines (serve it with vLLM instead).
"""

from __future__ import annotations

import logging
import math
import os
import queue
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentkit.errors import BenchmarkError, UsageError
from agentkit.eval.runner import Job, Work, model_identity, model_name, run_jobs

__all__ = ["BenchWorker", "RayExecutor", "cpus_per_worker", "init_ray"]

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'agentkit[ray]'"


def _ray():
    try:
        import ray
    except ImportError:
        raise UsageError(f"running on Ray needs the ray package: {INSTALL_HINT}") from None
    return ray


LOOPBACK_RAY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray's single-machine mode, every process on 127.0.0.1


def init_ray(ray: Any, address: str | None) -> None:
    """Connect to the cluster at ``address``; without one, to this machine's (``ray start``, ``$RAY_ADDRESS``), or
    else start a local Ray that listens on loopback only.

    A new local Ray listens on every interface on Linux (its node address is the machine's IP, and its servers
    bind all interfaces), so anyone on the network could reach its workers. Ray's single-machine mode, which it
    uses on macOS and Windows, gives every Ray process 127.0.0.1 instead; it is switched on for that start only
    (Ray reads it from the environment and ``ray_constants``, which children inherit or are told on start).
    """
    options = dict(include_dashboard=False, logging_level=logging.WARNING)
    if address is not None:
        ray.init(address=address, **options)
        return
    try:
        ray.init(address="auto", **options)  # a cluster this machine belongs to
        return
    except ConnectionError:
        pass  # none: start one
    constants = sys.modules.get("ray._private.ray_constants")
    saved = os.environ.get(LOOPBACK_RAY), getattr(constants, "ENABLE_RAY_CLUSTER", None)
    os.environ[LOOPBACK_RAY] = "0"
    if constants is not None:
        constants.ENABLE_RAY_CLUSTER = False
    try:
        ray.init(address="local", **options)
    finally:
        if saved[0] is None:
            os.environ.pop(LOOPBACK_RAY, None)
        else:
            os.environ[LOOPBACK_RAY] = saved[0]
        if constants is not None:
            constants.ENABLE_RAY_CLUSTER = saved[1]


# --- the worker ------------------------------------------------------------------------------------------------


class _Raised:
    def __init__(self, exc: BaseException):
        self.exc = exc


_END = object()


class BenchWorker:
    """A Ray actor (``ray.remote(BenchWorker)``): one model, loaded once, running whole shards of jobs."""

    def __init__(self, model: str | None, dtype: str | None, threads: int, cwd: str):
        self.spec, self.dtype, self.threads, self.cwd = model, dtype, threads, cwd
        self.llm: Any = None
        self.work_key: str | None = None  # the run whose Work and strategies this worker holds
        self.work: Work | None = None
        self.strategies: dict[str, Any] = {}

    def load(self) -> str:
        """Load the model and return its name. Torch gets ``threads`` threads: this worker's share of the node."""
        os.environ["OMP_NUM_THREADS"] = str(self.threads)  # read when torch starts its thread pool
        if os.path.isdir(self.cwd):
            os.chdir(self.cwd)  # relative paths in the spec mean what they mean to the driver, where they exist
        from agentkit.models import load_model

        self.llm = load_model(self.spec, **({"dtype": self.dtype} if self.dtype else {}))
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(self.threads)
        return model_name(self.llm)

    def model_identity(self) -> dict[str, Any]:
        """This worker's model's dtype and weights digest (``runner.model_identity``)."""
        return model_identity(self.llm)

    def prompt_format(self, requested: str) -> str:
        """``text`` or ``chat``: what this worker's model gets under ``requested``."""
        from agentkit.prompting import resolve_prompt_format

        return resolve_prompt_format(requested, self.llm)

    def torch_threads(self) -> int | None:
        """The torch intra-op thread count (``None`` when the model does not use torch)."""
        return sys.modules["torch"].get_num_threads() if "torch" in sys.modules else None

    def run(self, jobs: Sequence[Job], work: list[Any]):
        """Run a shard in shared batches and yield each record as its example finishes (a streaming generator).

        ``work`` is ``[ref]``, a reference to the run's ``Work`` (in a list, so Ray does not resolve it): it is
        fetched, and the strategies built, once per run rather than once per shard.
        """
        if work[0].hex() != self.work_key:
            import ray

            self.work, self.strategies, self.work_key = ray.get(work[0]), {}, work[0].hex()
        out: queue.SimpleQueue = queue.SimpleQueue()

        def target() -> None:
            try:
                run_jobs(self.llm, jobs, self.work, out.put, self.strategies)
                out.put(_END)
            except BaseException as exc:  # noqa: BLE001 - re-raised below, in the method Ray is running
                out.put(_Raised(exc))

        threading.Thread(target=target, name="agentkit-shard", daemon=True).start()
        while (item := out.get()) is not _END:
            if isinstance(item, _Raised):
                raise item.exc
            yield item


# --- the driver ------------------------------------------------------------------------------------------------


def cpus_per_worker(node_cpus: Sequence[float], workers: int) -> float:
    """The largest CPU share per worker such that ``workers`` workers fit on nodes with ``node_cpus`` cores.

    Every worker must fit on one node, so nodes of 8 and 4 cores give two workers 4 cores each, not 6.
    """
    nodes = [float(n) for n in node_cpus if n > 0]
    if not nodes:
        raise BenchmarkError("the Ray cluster has no CPUs; start workers with `ray start --address HEAD:6379`")
    candidates = sorted({n / k for n in nodes for k in range(1, workers + 1)}, reverse=True)
    for share in candidates:
        share = math.floor(share * 10_000) / 10_000  # Ray's resource precision
        if share > 0 and sum(int(n / share + 1e-9) for n in nodes) >= workers:
            return share
    raise BenchmarkError(f"{workers} workers do not fit on a Ray cluster with {sum(nodes):g} CPUs")


LOADING, IDLE, BUSY, DEAD = "loading", "idle", "busy", "dead"


@dataclass
class _Place:
    """One worker place: the actor in it now, and what that actor is doing."""

    index: int
    actor: Any = None
    ref: Any = None  # the load call (LOADING) or the shard's record stream (BUSY)
    state: str = LOADING
    since: float = 0.0
    restarts: int = 0
    shard: list[Job] = field(default_factory=list)
    received: set[tuple[str, str]] = field(default_factory=set)


def _key(job: Job) -> tuple[str, str]:
    return job.method, job.example.id


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class RayExecutor:
    """Run a benchmark's jobs on Ray workers, each with its own model (see the module docstring).

    ``model``: the spec every worker loads (``None`` = the default model), or a list of specs, worker ``i``
    taking spec ``i`` modulo its length (e.g. one server URL per worker). ``workers``: how many (default: one
    per node, or one per spec). ``address``: the Ray cluster (``"auto"``, ``"HOST:6379"``, ``"ray://HOST:10001"``;
    ``None`` joins the cluster this machine belongs to or starts a local one). ``cpus_per_worker``: default the
    most each worker can have with all of them placed (``cpus_per_worker()``); torch uses that many threads.
    ``shard_size``: jobs per call (default 4 × the batch size). Use it as a context manager, or ``close()`` it.
    """

    def __init__(
        self,
        model: str | None | Sequence[str | None] = None,
        *,
        workers: int | None = None,
        address: str | None = None,
        dtype: str | None = None,
        cpus_per_worker: float | None = None,
        gpus_per_worker: float = 0.0,
        shard_size: int | None = None,
        max_attempts: int = 3,
        max_restarts: int = 2,
        start_timeout: float = 900.0,
    ):
        self.specs = [model] if model is None or isinstance(model, str) else list(model)
        if not self.specs:
            raise UsageError("RayExecutor: give a model spec, or a list of them")
        for name, value in (("workers", workers), ("shard_size", shard_size), ("max_attempts", max_attempts)):
            if value is not None and value < 1:
                raise UsageError(f"RayExecutor: {name} must be at least 1, got {value}")
        if cpus_per_worker is not None and cpus_per_worker <= 0:
            raise UsageError(f"RayExecutor: cpus_per_worker must be positive, got {cpus_per_worker}")
        _ray()  # say at once when ray is not installed
        self.workers = workers if workers is not None else (len(self.specs) if len(self.specs) > 1 else None)
        self.address, self.dtype = address, dtype
        self.cpus, self.gpus = cpus_per_worker, gpus_per_worker
        self.shard_size, self.max_attempts, self.max_restarts = shard_size, max_attempts, max_restarts
        self.start_timeout = start_timeout
        self._places: list[_Place] = []
        self._remote: Any = None
        self._owns_ray = False
        self._name: str | None = None
        self._queue: deque[Job] = deque()
        self._attempts: Counter[tuple[str, str]] = Counter()
        self._given_up: list[Job] = []

    # -- the Executor interface

    def model_name(self) -> str:
        self._start()
        while self._name is None:
            self._step(lambda record: None)
        return self._name

    def model_identity(self) -> dict[str, Any]:
        """The workers' model's dtype and weights digest (asked of one loaded worker; they share one model)."""
        self.model_name()  # waits until a worker has loaded the model
        place = next(p for p in self._places if p.state in (IDLE, BUSY))
        return _ray().get(place.actor.model_identity.remote())

    def prompt_format(self, requested: str) -> str:
        """What the workers' model gets under ``requested`` (asked of one loaded worker; they share one model)."""
        self.model_name()  # waits until a worker has loaded the model
        place = next(p for p in self._places if p.state in (IDLE, BUSY))
        return _ray().get(place.actor.prompt_format.remote(requested))

    def describe(self) -> dict[str, Any]:
        self._start()
        return {"backend": "ray", "workers": len(self._places), "cpus_per_worker": self.cpus}

    def run(self, jobs: Sequence[Job], work: Work, emit: Callable[[dict[str, Any]], None]) -> None:
        if not jobs:
            return
        ray = _ray()
        self._start()
        work_ref = [ray.put(work)]  # each worker fetches it once per run, not with every shard
        self._queue, self._attempts, self._given_up = deque(jobs), Counter(), []
        target = self.shard_size or 4 * work.batch_size
        try:
            while self._queue or any(p.state == BUSY for p in self._places):
                live = [p for p in self._places if p.state != DEAD]
                if not live:
                    raise BenchmarkError(
                        f"every Ray worker died (each place restarted {self.max_restarts} times); finished "
                        f"examples are saved: rerun the same command to resume"
                    )
                for place in (p for p in live if p.state == IDLE):
                    if not self._queue:
                        break
                    size = max(1, min(target, math.ceil(len(self._queue) / len(live))))
                    place.shard = [self._queue.popleft() for _ in range(min(size, len(self._queue)))]
                    place.received = set()
                    place.ref = place.actor.run.remote(place.shard, work_ref)
                    place.state = BUSY
                self._step(emit)
        except BaseException:
            self._stop()  # their shards run no further; a later run starts fresh workers
            raise
        if self._given_up:
            first = self._given_up[0]
            raise BenchmarkError(
                f"{len(self._given_up)} example(s) (first: {first.method} {first.example.id}) were on Ray workers "
                f"that died {self.max_attempts} times; every other record is saved: rerun the same command to "
                f"retry them"
            )

    # -- lifetime

    def ready(self) -> RayExecutor:
        """Start the workers and wait until every one has loaded its model (or died); returns the executor."""
        self._start()
        while starting := [p for p in self._places if p.state == LOADING]:
            if time.monotonic() - min(p.since for p in starting) > self.start_timeout:
                raise BenchmarkError(f"a Ray worker did not start within {self.start_timeout:.0f} s; see `ray status`")
            self._step(lambda record: None)
        return self

    def close(self) -> None:
        """End the workers, and the local Ray instance if this executor started it."""
        self._stop()
        if self._owns_ray:
            _ray().shutdown()
            self._owns_ray = False

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def torch_threads(self) -> list[int | None]:
        """Each ready worker's torch thread count (for checks)."""
        ray = _ray()
        return ray.get([p.actor.torch_threads.remote() for p in self._places if p.state in (IDLE, BUSY)])

    # -- inside

    def _start(self) -> None:
        if self._places:
            return
        ray = _ray()
        if not ray.is_initialized():
            init_ray(ray, self.address)
            self._owns_ray = True
        nodes = [float(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")]
        count = self.workers or max(1, sum(n > 0 for n in nodes))
        self.cpus = self.cpus or cpus_per_worker(nodes, count)
        self._remote = self._remote or ray.remote(BenchWorker)
        self._places = [_Place(i) for i in range(count)]
        for place in self._places:
            self._launch(place)

    def _launch(self, place: _Place) -> None:
        spec = self.specs[place.index % len(self.specs)]
        threads = max(1, int(self.cpus or 1))
        options: dict[str, Any] = {"num_cpus": self.cpus, "max_restarts": 0}
        if self.gpus:
            options["num_gpus"] = self.gpus
        place.actor = self._remote.options(**options).remote(spec, self.dtype, threads, os.getcwd())
        place.ref, place.state, place.since = place.actor.load.remote(), LOADING, time.monotonic()
        place.shard, place.received = [], set()

    def _stop(self) -> None:
        ray = _ray()
        for place in self._places:
            try:
                ray.kill(place.actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self._places = []

    def _step(self, emit: Callable[[dict[str, Any]], None]) -> None:
        """Wait up to a second for one worker's next event (loaded, a record, shard done, died) and handle it."""
        ray = _ray()
        waiting = [p for p in self._places if p.state in (LOADING, BUSY)]
        if not waiting:
            if not any(p.state == IDLE for p in self._places):
                raise BenchmarkError(f"every Ray worker died (each place restarted {self.max_restarts} times)")
            return
        ready, _ = ray.wait([p.ref for p in waiting], num_returns=1, timeout=1.0)
        if not ready:
            self._check_start_timeout()
            return
        place = next(p for p in waiting if p.ref is ready[0])
        faults = _worker_faults(ray)
        try:
            if place.state == LOADING:
                self._loaded(place, ray.get(place.ref))
                return
            try:
                record = ray.get(next(place.ref))
            except StopIteration:  # the shard is done
                left = [job for job in place.shard if _key(job) not in place.received]
                self._queue.extendleft(reversed(left))  # none, unless a worker skipped a job
                place.state, place.ref, place.shard = IDLE, None, []
                return
            place.received.add((record["method"], record["id"]))
            emit(record)
        except ray.exceptions.RayTaskError as exc:  # raised by our code in the worker: a bug or a bad model
            cause = getattr(exc, "cause", None)
            if isinstance(cause, BaseException):
                raise cause from exc
            raise
        except faults as exc:
            self._lost(place, exc)

    def _loaded(self, place: _Place, name: str) -> None:
        if self._name is None:
            self._name = name
        elif name != self._name:
            raise BenchmarkError(
                f"Ray workers loaded different models ({self._name!r} and {name!r}); give every worker the same model"
            )
        place.state = IDLE

    def _lost(self, place: _Place, exc: BaseException) -> None:
        """A worker died: its unfinished jobs go back to the queue (up to ``max_attempts``), a new one starts."""
        retry = []
        for job in place.shard:
            if _key(job) in place.received:
                continue
            self._attempts[_key(job)] += 1
            (self._given_up if self._attempts[_key(job)] >= self.max_attempts else retry).append(job)
        self._queue.extendleft(reversed(retry))
        try:
            _ray().kill(place.actor, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass
        restart = place.restarts < self.max_restarts
        log.warning(
            "Ray worker %d died (%s); %d example(s) go back to the queue; %s",
            place.index,
            _first_line(exc),
            len(retry),
            "starting a new worker" if restart else "going on without it",
        )
        if restart:
            place.restarts += 1
            self._launch(place)
        else:
            place.state, place.ref, place.shard = DEAD, None, []

    def _check_start_timeout(self) -> None:
        if any(p.state in (IDLE, BUSY) for p in self._places):
            return  # the others are working; a worker still starting joins when it can
        starting = [p.since for p in self._places if p.state == LOADING]
        if starting and time.monotonic() - min(starting) > self.start_timeout:
            gpus = f" and {self.gpus:g} GPU(s)" if self.gpus else ""
            raise BenchmarkError(
                f"no Ray worker started within {self.start_timeout:.0f} s (each needs {self.cpus:g} CPUs{gpus}); "
                f"see `ray status` for the cluster's free resources"
            )


def _worker_faults(ray: Any) -> tuple[type[BaseException], ...]:
    """The errors that mean a worker or its node is gone (as opposed to an error raised by our code)."""
    names = ("RayActorError", "ObjectLostError", "WorkerCrashedError", "NodeDiedError")
    return tuple(getattr(ray.exceptions, n) for n in names if hasattr(ray.exceptions, n))
