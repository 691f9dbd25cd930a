"""Run methods over a dataset, write every finished example at once, resume after a kill, and report.

``run_benchmark`` builds each method with ``agentkit.strategies.load_strategy`` and pushes the examples of
all methods through one ``agentkit.runtime.run_episodes`` call, so they share the engine's batches. As each
example finishes, its record (prompt, raw completions, program and execution, ReAct trajectory, extracted
answer, gold, verdict, failure reason, tokens) is appended to ``<output_dir>/<method>/samples.jsonl`` and
flushed with ``fsync``, so a kill loses only the examples in flight. Rerunning the same command resumes:
finished ids are skipped, a torn last line (the trace of a kill mid-write) is dropped and the file rewritten
cleanly, and a directory made with a different configuration is refused (how it ran, e.g. on how many Ray
workers, may change). When a method completes, its file is rewritten in dataset order, so an interrupted and
resumed run ends byte-identical to an uninterrupted one apart from the ``timing`` fields. What a run is (dataset,
methods, settings) is one ``BenchmarkConfig`` (``agentkit.eval.config``); ``config.json`` holds the part of it a
resumed run must share.

Where the episodes run is an executor's business: ``LocalExecutor`` (the default) runs them in this process on
one model; ``agentkit.eval.distributed.RayExecutor`` runs them on Ray workers, each with its own copy of the
model. Either way every record comes back here, and this process alone writes the run directory.

At the end (of every run, resumed ones included) the output directory holds ``config.json``, ``results.json``
(config, versions, git commit, model, per-method accuracy with a 95% Wilson interval, failure rates, tokens,
time, paired comparisons of the methods, the run's totals and what this invocation ran) and the reports of
``agentkit.eval.report``: ``results.md``, ``results.png`` and ``results.html``.

``prepare`` is every check that needs no model (the dataset, the answer kind, the shots, the output directory);
``run_benchmark`` calls it, or takes what it returned, so a bad setting fails before a model loads.

Deliberately not here: prompting and answer extraction (the strategies), model loading (``agentkit.models``),
and any retry of failed examples (a model's failure is a result, recorded with its reason).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from agentkit.errors import BenchmarkError, UsageError
from agentkit.eval.compare import pairwise
from agentkit.eval.config import BenchmarkConfig
from agentkit.eval.datasets import Example, dataset_fingerprint, load_dataset, repeats
from agentkit.eval.report import (
    SAMPLES,
    TIMING,
    atomic_write,
    markdown_table,
    numbered_records,
    parse_record,
    run_totals,
    summarize,
    write_reports,
)
from agentkit.eval.scoring import Score, is_numeric_answer, score_answer
from agentkit.prompting import resolve_prompt_format
from agentkit.records import jsonable

__all__ = [
    "BenchmarkConfig",
    "BenchmarkError",
    "BenchmarkResult",
    "Executor",
    "LocalExecutor",
    "MethodResult",
    "Prepared",
    "prepare",
    "run_benchmark",
    "SampleStore",
]

CONFIG = "config.json"
# The config key that says how a run is executed (e.g. on how many Ray workers): a resumed run may change it.
EXECUTION = "execution"
# TIMING ("timing"): the record field of wall-clock readings; everything else is a deterministic function of the run.


# --- the per-method sample file --------------------------------------------------------------------------------


class SampleStore:
    """``<dir>/samples.jsonl``: one JSON record per finished example, appended durably.

    ``load()`` returns the records already there (by id). A last line that is not valid JSON is what a kill
    mid-write leaves: it is dropped and the file rewritten without it (a complete record that only lost its
    newline is kept). A bad line anywhere else means the file was damaged some other way, which is an error
    rather than something to paper over.
    """

    def __init__(self, directory: Path):
        self.path = Path(directory) / SAMPLES
        self._file = None

    def load(self) -> dict[str, dict[str, Any]]:
        if not self.path.exists():
            return {}
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        tail = lines.pop()  # b"" when the file ends with a newline; otherwise the last line lost its newline
        damaged = False
        if tail.strip():
            damaged = True  # rewritten below, either without the torn line or with its newline restored
            if parse_record(tail) is not None:  # else a kill in the middle of the write: that example runs again
                lines.append(tail)  # the record was written whole; only the newline is missing
        records: dict[str, dict[str, Any]] = {}
        for lineno, record in numbered_records(lines):
            if record is None:
                if lineno == len(lines) and not tail.strip():
                    damaged = True  # an unreadable last line (e.g. a write cut at a newline inside it)
                    continue
                raise BenchmarkError(
                    f"{self.path}:{lineno}: unreadable record in the middle of the file; "
                    f"use a new --output-dir or --overwrite"
                )
            record_id = record["id"]
            if record_id in records:  # never written twice by us; keep the first if someone else did
                damaged = True
                continue
            records[record_id] = record
        if damaged:
            self.rewrite(records.values())
        return records

    def append(self, record: Mapping[str, Any]) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def rewrite(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Replace the file atomically (write a temporary file, fsync, rename)."""
        self.close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(SAMPLES + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


# --- results ---------------------------------------------------------------------------------------------------


@dataclass
class MethodResult:
    """One method's records (in dataset order) and their summary."""

    method: str
    records: list[dict[str, Any]]
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def accuracy(self) -> float:
        return self.summary["accuracy"]

    @property
    def ci95(self) -> tuple[float, float]:
        return tuple(self.summary["ci95"])  # type: ignore[return-value]


@dataclass
class BenchmarkResult:
    """What ``run_benchmark`` returns: per-method results plus where the files went."""

    methods: dict[str, MethodResult]
    config: dict[str, Any]
    output_dir: Path | None = None
    files: dict[str, Path] = field(default_factory=dict)
    table: str = ""
    wall_seconds: float = 0.0  # this invocation
    usage: Any = None  # this invocation's agentkit.runtime.Usage (model calls, cache hits, tokens) when run locally

    @property
    def accuracy(self) -> float:
        """Accuracy of the only method; with several methods use ``accuracies`` or ``methods[name]``."""
        if len(self.methods) != 1:
            raise ValueError(f"{len(self.methods)} methods were run; use .accuracies or .methods[name].accuracy")
        return next(iter(self.methods.values())).accuracy

    @property
    def accuracies(self) -> dict[str, float]:
        return {name: m.accuracy for name, m in self.methods.items()}

    @property
    def records(self) -> list[dict[str, Any]]:
        """Every per-example record, method by method."""
        return [r for m in self.methods.values() for r in m.records]

    def __getitem__(self, method: str) -> MethodResult:
        return self.methods[method]


# --- records ---------------------------------------------------------------------------------------------------


def make_record(
    example: Example,
    index: int,
    method: str,
    result: Any,
    *,
    rel_tol: float,
    abs_tol: float,
    scorer: Callable[[str | None, Example], Any] | None = None,
) -> dict[str, Any]:
    """The samples.jsonl record for one finished example (scored by ``scorer`` when given, see ``prepare``)."""
    if scorer is None:
        score = score_answer(
            result.answer, example.answer, golds=example.meta.get("answers"), rel_tol=rel_tol, abs_tol=abs_tol
        )
    else:
        score = own_score(scorer(result.answer, example), result.answer, example)
    timing: dict[str, float] = {"duration": round(float(getattr(result, "duration", 0.0) or 0.0), 4)}
    return {
        "id": example.id,
        "index": index,
        "method": method,
        "question": example.question,
        "gold": example.answer,
        "answer": result.answer,
        "normalized_answer": score.prediction,
        "correct": score.correct,
        "kind": score.kind,
        "exact_match": score.exact_match,
        "f1": score.f1,
        "failure": result.failure,
        "error": result.error,
        "prompt": result.prompt,
        "completions": list(result.completions),
        "finish_reasons": list(getattr(result, "finish_reasons", None) or []),  # one per completion
        "program": result.program,
        "execution": jsonable(result.execution, timing, "execution"),
        "trajectory": jsonable(result.trajectory, timing, "trajectory"),
        "votes": result.votes,
        "samples": jsonable(result.samples, timing, "samples"),
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "model_calls": result.model_calls,
        "tool_calls": result.tool_calls,
        TIMING: timing,
    }


def own_score(score: Any, answer: str | None, example: Example) -> Score:
    """What a ``scorer`` returned, as a ``Score``: a ``Score`` itself, or a bool (correct or not)."""
    if isinstance(score, Score):
        return score
    if not isinstance(score, bool):
        raise TypeError(f"a scorer must return a Score or a bool, got {type(score).__name__}")
    return Score(
        correct=score, kind="custom", prediction=answer, gold=example.answer, exact_match=float(score), f1=float(score)
    )


def scorer_name(scorer: Callable[..., Any]) -> str:
    """How config.json names a scorer (its module and qualified name): a resumed run must use the same."""
    return f"{getattr(scorer, '__module__', '?')}.{getattr(scorer, '__qualname__', type(scorer).__name__)}"


# --- provenance ------------------------------------------------------------------------------------------------


def package_versions() -> dict[str, str]:
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for dist in ("agentkit", "torch", "transformers", "pydantic", "gguf", "rouge-score", "sacrebleu"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return versions


def git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and len(commit) >= 7 else None


# --- execution: where the episodes run ------------------------------------------------------------------------


class Job(NamedTuple):
    """One example to answer with one method; ``index`` is the example's position in the dataset."""

    method: str
    index: int
    example: Example


@dataclass(frozen=True)
class Work:
    """Everything but the model that turns jobs into records; every process that runs jobs gets the same."""

    factory: Callable[..., Any]  # (method, llm, shots=, config=, **options) -> strategy
    shots: int
    config: Any  # generation settings: a dict laid over each method's defaults, or a GenerationConfig
    options: Mapping[str, Any]
    batch_size: int
    rel_tol: float
    abs_tol: float
    budget: Any = None  # an agentkit.runtime.Budget for every episode, or None
    run_dir: str | None = None  # where the records go (an attribute of each example's span)
    scorer: Callable[[str | None, Example], Any] | None = None  # None: agentkit.eval.scoring.score_answer


def run_jobs(
    llm: Any,
    jobs: Sequence[Job],
    work: Work,
    emit: Callable[[dict[str, Any]], None],
    strategies: dict[str, Any] | None = None,
    *,
    cache: Any = None,
    tracing: Any = None,
    usage: Any = None,
) -> None:
    """Run ``jobs`` on ``llm`` through one ``run_episodes`` call and ``emit`` each record as its example finishes.

    The jobs share the engine's batch whatever their method, so one method's long generations overlap with the
    others' instead of running alone at the end. ``strategies`` (method -> strategy built from ``work``) keeps
    the strategies for a later call with the same ``work``; missing ones are built and added. ``cache``,
    ``tracing`` and ``usage`` go to ``run_episodes``; with ``tracing`` each example is the root span of its
    episode, with its id, method and the run directory, and its score as a ``gen_ai.evaluation.result`` event.
    """
    from agentkit.runtime import EpisodeInfo, run_episodes

    strategies = {} if strategies is None else strategies
    for job in jobs:
        if job.method not in strategies:
            strategies[job.method] = work.factory(job.method, llm, shots=work.shots, config=work.config, **work.options)

    roots: dict[int, Any] = {}  # job -> its example's open span

    def info(k: int) -> EpisodeInfo:
        job = jobs[k]
        if tracing is not None:
            roots[k] = tracing.example_started(job.example.id, job.method, work.run_dir, job.index)
        return EpisodeInfo(job.method, job.example.question, roots.get(k))

    def on_result(k: int, result: Any) -> None:
        job = jobs[k]
        record = make_record(
            job.example, job.index, job.method, result, rel_tol=work.rel_tol, abs_tol=work.abs_tol, scorer=work.scorer
        )
        if tracing is not None:
            tracing.example_ended(roots.pop(k), record)
        emit(record)

    try:
        run_episodes(
            llm,
            (strategies[job.method].episode(job.example.question) for job in jobs),
            batch_size=work.batch_size,
            on_result=on_result,
            info=info,
            budget=work.budget,
            cache=cache,
            trace=tracing,
            usage=usage,
        )
    finally:
        for span in roots.values():  # examples in flight when an error stopped the run
            tracing.dropped(span)


class Executor(Protocol):
    """Runs a benchmark's jobs somewhere and hands every record back to the one process that writes them."""

    def model_name(self) -> str:
        """The model's name, as recorded in config.json (the same on every worker)."""

    def model_identity(self) -> dict[str, Any]:
        """The model's dtype and weights digest or server (:func:`model_identity`), recorded in config.json."""

    def prompt_format(self, requested: str) -> str:
        """``text`` or ``chat``: the form the model gets under ``requested`` (``auto``, ``text``, ``chat``)."""

    def describe(self) -> dict[str, Any]:
        """How the run executes (``{"backend": "local", "workers": 1}``), for config.json and results.json."""

    def run(self, jobs: Sequence[Job], work: Work, emit: Callable[[dict[str, Any]], None]) -> None:
        """Run every job and ``emit`` its record once, in any order, as it finishes; return when all are done."""


class LocalExecutor:
    """Runs every job in this process, on one model; ``cache``, ``tracing`` and ``usage`` as in ``run_jobs``."""

    def __init__(self, llm: Any, *, cache: Any = None, tracing: Any = None, usage: Any = None):
        self.llm = llm
        self.cache, self.tracing, self.usage = cache, tracing, usage

    def model_name(self) -> str:
        return model_name(self.llm)

    def model_identity(self) -> dict[str, Any]:
        return model_identity(self.llm)

    def prompt_format(self, requested: str) -> str:
        """``text`` or ``chat``: what the model gets under ``requested`` (see ``resolve_prompt_format``)."""
        return resolve_prompt_format(requested, self.llm)

    def describe(self) -> dict[str, Any]:
        urls = server_urls(self.llm)  # where a server runs is how, not what: a restarted one may move
        return {"backend": "local", "workers": 1, **({"server": urls} if urls else {}), **server_seeds(self.llm)}

    def run(self, jobs: Sequence[Job], work: Work, emit: Callable[[dict[str, Any]], None]) -> None:
        if jobs:
            run_jobs(self.llm, jobs, work, emit, cache=self.cache, tracing=self.tracing, usage=self.usage)


# --- the run ---------------------------------------------------------------------------------------------------


def _config_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    keys = sorted(set(old) | set(new))
    diffs = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]
    return "; ".join(diffs)[:300]


def _only_dtype(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """The runs differ in the dtype alone, and the old one's is one ``--dtype`` can ask for."""
    from agentkit.models import DTYPES

    return old.get("dtype") in DTYPES and {k for k in set(old) | set(new) if old.get(k) != new.get(k)} == {"dtype"}


def _read_old_config(output_dir: Path, overwrite: bool) -> dict[str, Any] | None:
    """The config.json of the run already in ``output_dir`` (None: none, or one ``overwrite`` replaces); checks
    what can be checked without writing anything."""
    config_path = output_dir / CONFIG
    if output_dir.exists() and not output_dir.is_dir():
        raise BenchmarkError(f"{output_dir} is a file; pass a directory as --output-dir")
    if overwrite:
        if not config_path.exists() and output_dir.exists() and any(output_dir.iterdir()):
            raise BenchmarkError(f"--overwrite: {output_dir} is not empty and holds no {CONFIG}; refusing to delete it")
        return None
    if not config_path.exists():
        return None
    try:
        old = json.loads(config_path.read_text(encoding="utf-8"))
    except ValueError:
        raise BenchmarkError(f"{config_path} is unreadable; use a new --output-dir or --overwrite") from None
    old.setdefault("prompt_format", "text")  # runs from before the field was recorded sent text
    old.setdefault("dtype", None)  # runs from before the dtype was recorded: resumable only where none is known
    old.setdefault("model_identity", {})
    return old


def _check_config(output_dir: Path, old: Mapping[str, Any], config: Mapping[str, Any], keys: Iterable[str]) -> None:
    """Refuse to continue the run in ``output_dir`` when its config differs from ``config`` on ``keys``."""
    before, now = ({k: c.get(k) for k in keys} for c in (old, config))
    if before != now:
        again = f", or --dtype {before.get('dtype')} to continue it" if _only_dtype(before, now) else ""
        raise BenchmarkError(
            f"{output_dir} holds a run with a different config ({_config_diff(before, now)}); "
            f"use a new --output-dir or --overwrite{again}"
        )


def _prepare_output_dir(output_dir: Path, config: dict[str, Any], overwrite: bool) -> None:
    old = _read_old_config(output_dir, overwrite)
    config_path = output_dir / CONFIG
    if overwrite and config_path.exists():
        shutil.rmtree(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if old is not None:
        _check_config(output_dir, old, config, sorted((set(old) | set(config)) - {EXECUTION}))
        if old != config:  # the same run executed differently: config.json tells the latest way
            atomic_write(config_path, json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    else:
        atomic_write(config_path, json.dumps(config, indent=2, ensure_ascii=False) + "\n")


def model_name(llm: Any) -> str:
    """The model's name as config.json records it."""
    return str(getattr(llm, "name", None) or type(llm).__name__)


def model_identity(llm: Any) -> dict[str, Any]:
    """What the model is beyond its name, for config.json: the dtype its weights ran in (None where agentkit
    cannot know it: a server, a scripted model) and either the digest of its weights (the embedded engine, see
    :func:`weights_digest`) or the model a server serves (its URLs go with how the run executed, since a
    restarted server may listen elsewhere: see :meth:`LocalExecutor.describe`)."""
    dtype = getattr(llm, "dtype", None)
    identity: dict[str, Any] = {"dtype": dtype if isinstance(dtype, str) else None}
    if server_urls(llm):  # agentkit.serving.ServerLLM
        identity["served_model"] = getattr(llm, "model", None)
    weights = weights_digest(llm)
    if weights is not None:
        identity["weights"] = weights
    return identity


def server_urls(llm: Any) -> list[str]:
    """The base URLs of a server model's replicas (none for any other model)."""
    return [replica.url for replica in getattr(llm, "replicas", None) or []]


def server_seeds(llm: Any) -> dict[str, str]:
    """``{"seed": ...}`` saying what it costs when a server model sends its samples without seeds (``?seed=off``):
    how the run executed, so a run that crashed a server on seeds resumes with them off; else nothing."""
    if getattr(llm, "send_seeds", True):
        return {}
    from agentkit.serving.client import UNSEEDED_COST

    return {"seed": f"off (?seed=off): sampled requests go without a seed; {UNSEEDED_COST}"}


def weights_digest(llm: Any) -> str | None:
    """The weights a transformers model was loaded from: a digest of its weight files (their size and the
    sha256 of their first and last MiB, as the engine's cache tells files apart), else its hub revision
    (``repo@commit``); None for anything else."""
    config = getattr(getattr(llm, "model", None), "config", None)
    source = getattr(config, "_name_or_path", None)
    if not source:
        return None
    path = Path(source)
    files = sorted(p for p in path.iterdir() if p.suffix in _WEIGHT_FILES) if path.is_dir() else []
    if files:
        from agentkit.engine.loading import file_fingerprint

        listing = "\n".join(f"{p.name} {file_fingerprint(p)}" for p in files)
        return "sha256:" + hashlib.sha256(listing.encode()).hexdigest()[:16]
    commit = getattr(config, "_commit_hash", None)
    return f"{source}@{commit}" if commit else None


_WEIGHT_FILES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")


def _progress(total: int, initial: int, label: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=label, unit="ex", dynamic_ncols=True, file=sys.stderr)


def answer_kind(examples: Sequence[Example]) -> str:
    """What direct and chain-of-thought answer on these examples: number when every gold answer is one."""
    return "number" if all(is_numeric_answer(ex.answer) for ex in examples) else "text"


# What config.json records about the model and where it ran: known only once the model is loaded.
MODEL_KEYS = frozenset({"model", "prompt_format", "dtype", "model_identity", EXECUTION})


@dataclass
class Prepared:
    """A benchmark checked before any model loads (:func:`prepare`); :func:`run_benchmark` takes it whole."""

    config: BenchmarkConfig
    examples: list[Example]  # the ones to run (the first ``config.limit``)
    size: int  # examples in the whole dataset
    fingerprint: str  # of the whole dataset, as config.json records it
    options: dict[str, Any]  # method options, ``answer`` set to the dataset's kind unless given
    templates: Any = None  # the agentkit.prompting.Templates of ``config.templates``, or None
    strategy_factory: Callable[..., Any] | None = None  # None: agentkit's own methods (load_strategy)
    repeats: Any = None  # agentkit.eval.datasets.Repeats: repeated questions and ids in the data
    previous: dict[str, Any] | None = None  # config.json of the run in output_dir that this one continues
    scorer: Callable[[str | None, Example], Any] | None = None  # None: agentkit.eval.scoring.score_answer
    identity: dict[str, Any] = field(default_factory=dict)  # config.json's settings, the model's part still empty


def prepare(
    dataset: BenchmarkConfig | str | Path | Sequence[Example],
    method: str | Sequence[str] | None = None,
    *,
    strategy_factory: Callable[..., Any] | None = None,
    scorer: Callable[[str | None, Example], Any] | None = None,
    **settings: Any,
) -> Prepared:
    """Everything about a benchmark that can fail before a model loads, checked once, with nothing written.

    Takes what :func:`run_benchmark` takes (a :class:`BenchmarkConfig`, or the dataset, the methods and the
    settings as keywords) and loads the dataset, works out the answer kind (number when every gold answer is a
    number), checks that every method can be scored and has ``shots`` exemplars, and checks the output
    directory: a file, ``overwrite`` of a directory that holds no run, an unreadable ``config.json``, or an
    earlier run there with other settings (the model's part is compared once it is loaded). Pass the result to
    ``run_benchmark(prepared, llm=llm)``; it does not load the dataset again.

    ``scorer(answer, example)`` replaces agentkit's scoring (numbers exactly, short texts by exact match and F1)
    for a dataset whose answers are neither: it returns a bool (correct or not) or an
    ``agentkit.eval.scoring.Score``. config.json records its name, so a resumed run must score the same way.
    """
    if isinstance(dataset, BenchmarkConfig):
        if method is not None or settings:
            raise UsageError("pass either a BenchmarkConfig or the dataset and settings, not both")
        config = dataset
    else:
        config = BenchmarkConfig.of(dataset=dataset, methods=method or "cot", **settings)
    if strategy_factory is not None and config.constrain:
        raise UsageError(
            "run_benchmark: constrain=True builds agentkit's own methods constrained; with a "
            "strategy_factory, build your strategies with constrain=True there and leave it off here"
        )
    if isinstance(config.dataset, (str, Path)):
        all_examples = load_dataset(config.dataset, fields=config.fields)
    else:
        all_examples = list(config.dataset)
    options = dict(config.method_options)
    if strategy_factory is None and "answer" not in options:
        # direct and chain-of-thought answer in the dataset's kind, with matching exemplars
        options["answer"] = answer_kind(all_examples)
    templates = None
    if config.templates is not None:
        from agentkit.prompting import Templates

        templates = Templates(config.templates)
    if strategy_factory is None:
        from agentkit.strategies import check_shots, get_method

        for name in config.methods:
            if not get_method(name).scored:
                raise UsageError(f"method '{name}' is interactive only and cannot be benchmarked")
            check_shots(name, config.shots, answer=options.get("answer"), templates=templates)
    fingerprint = dataset_fingerprint(all_examples)
    identity = config.identity(model="", fingerprint=fingerprint, method_options=options)
    if scorer is not None:  # only when set, so runs made before the hook existed still resume
        identity["scorer"] = scorer_name(scorer)
    previous = None
    if config.output_dir is not None:
        previous = _read_old_config(config.output_dir, config.overwrite)
        if previous is not None:
            _check_config(config.output_dir, previous, identity, sorted((set(previous) | set(identity)) - MODEL_KEYS))
    examples = all_examples[: config.limit] if config.limit is not None else all_examples
    return Prepared(
        config,
        examples,
        len(all_examples),
        fingerprint,
        options,
        templates,
        strategy_factory,
        repeats(all_examples),
        previous,
        scorer,
        identity,
    )


def run_benchmark(
    dataset: Prepared | BenchmarkConfig | str | Path | Sequence[Example],
    method: str | Sequence[str] | None = None,
    llm: Any = None,
    *,
    progress: bool = False,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    notify: Callable[[str], None] | None = None,
    strategy_factory: Callable[..., Any] | None = None,
    executor: Executor | None = None,
    cache: Any = None,
    trace: Any = None,
    scorer: Callable[[str | None, Example], Any] | None = None,
    **settings: Any,
) -> BenchmarkResult:
    """Run one or several methods over a dataset and score them.

    Either pass a :class:`BenchmarkConfig` and the model, ``run_benchmark(config, llm=llm)``, or the dataset,
    the methods, the model and any ``BenchmarkConfig`` setting as keywords::

        run_benchmark("gsm8k-sample", ["cot", "pal"], llm, shots=4, output_dir="runs/demo", limit=20)

    or what :func:`prepare` returned, ``run_benchmark(prepare(config), llm=llm)``, to find a bad setting
    before the model loads (``run_benchmark`` calls ``prepare`` itself otherwise).

    ``dataset``: a path, a shipped name (``gsm8k-sample``, ``wiki-sample``), a Hugging Face name, or a list
    of :class:`Example`. ``method``: a name or a list of names (see ``agentkit.strategies.REGISTRY``).
    ``llm``: any ``agentkit.llm.LLM`` (``ScriptedLLM`` included). The settings: ``generation`` (laid over each
    method's defaults, e.g. ``{"max_new_tokens": 128, "seed": 0}``), ``method_options`` (``k``,
    ``temperature``, ``tools``, ``corpus``...; ``answer`` defaults to the dataset's kind: number when every
    gold answer is a number), ``fields``, ``templates``, ``constrain`` (every reply under its method's
    constraint), ``rel_tol``/``abs_tol``, ``limit``, ``batch_size``, ``output_dir``, ``overwrite``.

    What happens as it runs: ``progress`` shows a bar on stderr, ``on_record`` gets each finished record,
    ``notify`` gets one-line notes (how many examples a resumed run finds done), ``strategy_factory``
    replaces ``load_strategy`` (for custom strategies; or register yours, ``agentkit.strategies.register_method``),
    ``scorer`` replaces the scoring (see :func:`prepare`), ``executor`` says where the episodes run instead of on
    ``llm`` in this process, e.g. ``RayExecutor("default", workers=4)`` from ``agentkit.eval.distributed`` (each
    worker loads its own model; pass no ``llm``), ``cache`` (an ``agentkit.cache.CallCache``) answers repeated
    greedy and seeded model calls from disk, ``trace`` (``True``, an OTLP endpoint URL, a ``TracerProvider``; see
    ``agentkit.tracing``) traces every example. These are not part of the config: a resumed run may change them.
    ``budget`` (a setting, ``agentkit.runtime.Budget``) is: it changes which episodes fail.

    With ``output_dir`` every finished example is written at once and a rerun resumes (see the module
    docstring); without it nothing touches the disk.
    """
    if isinstance(dataset, Prepared):
        if method is not None or settings or strategy_factory is not None or scorer is not None:
            raise UsageError(
                "run_benchmark: a prepared benchmark holds its settings, strategy_factory and scorer; "
                "pass them to prepare()"
            )
        prepared = dataset
    else:
        prepared = prepare(dataset, method, strategy_factory=strategy_factory, scorer=scorer, **settings)
    if llm is None and executor is None:
        raise BenchmarkError("run_benchmark needs an llm (e.g. agentkit.models.load_model(None) or ScriptedLLM)")
    if llm is not None and executor is not None:
        raise BenchmarkError("run_benchmark takes an llm or an executor that loads its own, not both")
    from agentkit.runtime import Usage
    from agentkit.tracing import tracing_for

    tracing = tracing_for(trace)
    if executor is not None and (cache is not None or tracing is not None):
        raise UsageError("the model-call cache and tracing run with the local executor; drop --cache/--trace or --ray")
    usage = Usage()
    executor = executor if executor is not None else LocalExecutor(llm, cache=cache, tracing=tracing, usage=usage)
    config, out = prepared.config, prepared.config.output_dir
    run_config = _run_config(prepared, executor)
    if out is not None:
        _prepare_output_dir(out, run_config, config.overwrite)

    started = time.perf_counter()
    results = _run_methods(
        list(config.methods),
        executor,
        _work(prepared, run_config),
        prepared.examples,
        out,
        progress=progress,
        on_record=on_record,
        notify=notify,
    )
    wall_seconds = round(time.perf_counter() - started, 3)
    summaries = [m.summary for m in results.values()]
    bench = BenchmarkResult(
        methods=results,
        config={**run_config, "methods": list(config.methods), "limit": config.limit},
        output_dir=out,
        table=markdown_table(summaries),
        wall_seconds=wall_seconds,
        usage=usage,
    )
    if out is not None:
        bench.files = _write_results(bench, prepared, summaries)
    return bench


def _run_config(prepared: Prepared, executor: Executor) -> dict[str, Any]:
    """config.json: the settings' identity and the model's (its name, prompt format, dtype, weights)."""
    config = prepared.config
    run_config = {**prepared.identity, "model": executor.model_name()}
    run_config["prompt_format"] = executor.prompt_format(config.prompt_format)  # before anything is written
    identity = executor.model_identity()
    run_config["dtype"] = identity.pop("dtype")
    run_config["model_identity"] = identity
    run_config[EXECUTION] = executor.describe()
    return run_config


def _work(prepared: Prepared, run_config: Mapping[str, Any]) -> Work:
    """What every process that runs the jobs gets: the strategy factory and the settings."""
    config, options = prepared.config, dict(prepared.options)
    if prepared.templates is not None:
        options["templates"] = prepared.templates
    factory = prepared.strategy_factory
    if factory is None:
        from agentkit.strategies import load_strategy

        factory = functools.partial(
            load_strategy, prompt_format=run_config["prompt_format"], constrain=config.constrain
        )
    out = config.output_dir
    return Work(
        factory,
        config.shots,
        config.generation or None,
        options,
        config.batch_size,
        config.rel_tol,
        config.abs_tol,
        config.budget,
        None if out is None else str(out),
        prepared.scorer,
    )


def _write_results(bench: BenchmarkResult, prepared: Prepared, summaries: list[dict[str, Any]]) -> dict[str, Path]:
    """results.json and the reports in the output directory; returns the files written, by name."""
    out = prepared.config.output_dir
    assert out is not None
    records = {name: m.records for name, m in bench.methods.items()}
    usage = bench.usage
    report = {
        "config": bench.config,
        "model": bench.config["model"],
        "versions": package_versions(),
        "git_commit": git_commit(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "wall_seconds": bench.wall_seconds,  # this invocation only (resumed examples cost nothing now)
        "totals": run_totals(summaries),  # every method's records, resumed ones included
        "this_invocation": {**asdict(usage), "wall_seconds": bench.wall_seconds},  # what this command ran
        "methods": {s["method"]: s for s in summaries},
        "comparisons": [c.to_dict() for c in pairwise(records)],  # every pair of methods, paired by example
        "repeats": asdict(repeats(prepared.examples)),  # repeated questions and ids in the data, each its own example
    }
    files = {"config": out / CONFIG, "results_json": out / "results.json"}
    atomic_write(files["results_json"], json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    files.update(write_reports(out, bench.config, records))
    for name in bench.methods:
        files[f"samples:{name}"] = out / name / SAMPLES
    return files


@dataclass
class _MethodRun:
    """Bookkeeping for one method during a run."""

    name: str
    store: SampleStore | None
    done: dict[str, dict[str, Any]]
    todo: list[tuple[int, Example]]
    correct: int = 0
    count: int = 0


def _run_methods(
    methods: Sequence[str],
    executor: Executor,
    work: Work,
    examples: list[Example],
    out: Path | None,
    *,
    progress: bool,
    on_record: Callable[[dict[str, Any]], None] | None,
    notify: Callable[[str], None] | None,
) -> dict[str, MethodResult]:
    """Hand every method's unfinished examples to the executor and write each record as it comes back.

    The jobs go out example by example (direct, cot, pal for example 1, then example 2, ...), so the methods
    share the engine's batches.
    """
    wanted = {ex.id for ex in examples}
    runs: dict[str, _MethodRun] = {}
    for name in methods:
        store = SampleStore(out / name) if out is not None else None
        done = store.load() if store is not None else {}
        finished = [r for r in done.values() if r["id"] in wanted]
        runs[name] = _MethodRun(
            name=name,
            store=store,
            done=done,
            todo=[(i, ex) for i, ex in enumerate(examples) if ex.id not in done],
            correct=sum(bool(r["correct"]) for r in finished),
            count=len(finished),
        )
    already = sum(r.count for r in runs.values())
    if already and notify is not None:
        each = ", ".join(f"{r.name} {r.count}" for r in runs.values())
        notify(f"resuming the run in {out}: {already} of {len(examples) * len(runs)} examples already done ({each})")
    jobs = [
        Job(run.name, index, example)
        for index, example in enumerate(examples)
        for run in runs.values()
        if example.id not in run.done
    ]

    bar = _progress(len(examples) * len(runs), sum(r.count for r in runs.values()), ", ".join(runs), progress)

    def accept(record: dict[str, Any]) -> None:
        run = runs[record["method"]]
        if record["id"] in run.done:  # a re-queued example answered twice (its worker died): keep the first
            return
        if run.store is not None:
            run.store.append(record)
        run.done[record["id"]] = record
        run.count += 1
        run.correct += bool(record["correct"])
        if on_record is not None:
            on_record(record)
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(
                " · ".join(f"{r.name} {100 * r.correct / r.count:.0f}%" for r in runs.values() if r.count)
            )

    try:
        executor.run(jobs, work, accept)
    finally:
        if bar is not None:
            bar.close()
        for run in runs.values():
            if run.store is not None:
                run.store.close()

    order = {ex.id: i for i, ex in enumerate(examples)}
    results: dict[str, MethodResult] = {}
    for run in runs.values():
        records = sorted((r for r in run.done.values() if r["id"] in wanted), key=lambda r: order[r["id"]])
        if run.store is not None:
            # Dataset order, with records beyond the current --limit kept after them for a later, larger run.
            canonical = records + [r for r in run.done.values() if r["id"] not in wanted]
            if list(run.done.values()) != canonical:
                run.store.rewrite(canonical)
        summary = summarize(run.name, records)
        summary["ran_now"] = len(run.todo)
        results[run.name] = MethodResult(method=run.name, records=records, summary=summary)
    return results
