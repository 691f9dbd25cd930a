"""A cache of model calls on disk, so a rerun reuses every call that has not changed.

A completion is stored under the SHA-256 of: the model's identity (``model_identity``: the weights' digest and
dtype for the engine, the server URLs and served model for a server, the script's digest for a scripted model),
the exact prompt (text, or the chat messages), and the generation config as sent (stops, token limit, constraint,
and for a sampled call its sampling parameters and seed). Greedy calls and seeded samples are cached; a sample
without a seed never is (``key`` returns None), since its answer is meant to differ each time, nor is one sent
to a server without its seed (``?seed=off``). Greedy keys leave out the sampling parameters, which greedy
decoding ignores.

The store is one SQLite database in WAL mode (``<dir>/calls.sqlite``): each entry is written in its own
transaction, so concurrent writers (Ray workers, two runs) and a ``kill -9`` mid-write leave either the whole
entry or none; an entry that does not read back as a completion is ignored and deleted. The size is bounded:
past ``max_mb`` the oldest entries go first. ``agentkit cache info|clear`` looks after it.

The episode runner (``agentkit.runtime``) consults the cache before a request reaches the model's session, so
every backend gets it and a hit never reaches the engine (DSPy, Inspect and lm-eval cache the same way, at the
call). Deliberately not here: caching tool calls (tools own their caching) or anything keyed on wall-clock time.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from agentkit.llm import Completion, GenerationConfig, Prompt

DEFAULT_MAX_MB = 1024
DATABASE = "calls.sqlite"
_FORMAT = 1  # bump when what a key covers changes: old entries then simply miss
_SAMPLING = ("temperature", "top_k", "top_p", "seed")


def default_dir() -> Path:
    """``<agentkit cache>/calls`` (``$AGENTKIT_CACHE``, else the user cache directory)."""
    from agentkit.engine import cache_dir  # cheap: torch is not imported

    return cache_dir() / "calls"


def model_identity(llm: Any) -> str:
    """What tells this model's outputs apart from another's: a model's own ``identity`` when it has one, else
    the weights' source and digest with dtype and device (engine), the URLs and served model (server), the
    script's digest (scripted), or the class and name."""
    llm = _unwrapped(llm)
    own = getattr(llm, "identity", None)
    if isinstance(own, str) and own:
        return own
    kind = type(llm).__name__
    if kind == "TransformersLLM":
        config = getattr(llm.model, "config", None)
        source = getattr(config, "_name_or_path", "") or llm.name  # the de-quantized GGUF's directory holds its digest
        revision = getattr(config, "_commit_hash", None) or ""
        return f"engine:{source}@{revision}:{llm.dtype}:{llm.device}"
    if kind == "ServerLLM":
        return f"server:{','.join(sorted(llm.urls))}:{llm.model}"
    path = getattr(llm, "path", None)
    if path is not None and Path(path).is_file():
        return f"{kind}:{llm.name}:{hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]}"
    return f"{kind}:{getattr(llm, 'name', '')}"


def _unwrapped(llm: Any) -> Any:
    while hasattr(llm, "inner"):  # wrappers (the REPL's display) answer as the model they wrap
        llm = llm.inner
    return llm


def call_key(identity: str, prompt: Prompt, config: GenerationConfig) -> str | None:
    """The cache key of one model call, or None for an unseeded sample (never cached)."""
    if config.do_sample and config.seed is None:
        return None
    settings = config.model_dump(mode="json")
    if not config.do_sample:
        for name in _SAMPLING:
            settings.pop(name)
    sent: Any = prompt if isinstance(prompt, str) else [m.as_dict() for m in prompt.messages]
    if not isinstance(prompt, str) and prompt.tools:
        tools = prompt.model_dump(mode="json", include={"tools", "tool_choice", "parallel_tool_calls"})
        sent = {"messages": sent, **tools}
    blob = json.dumps([_FORMAT, identity, sent, settings], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class CallCache:
    """The on-disk cache of model calls in ``directory`` (default ``default_dir()``), at most ``max_mb`` MiB."""

    def __init__(self, directory: str | Path | None = None, *, max_mb: float = DEFAULT_MAX_MB):
        self.directory = Path(directory).expanduser() if directory is not None else default_dir()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / DATABASE
        self.max_bytes = int(max_mb * (1 << 20))
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, value TEXT NOT NULL, size INTEGER NOT NULL, "
            "written REAL NOT NULL)"
        )
        self._identities: dict[int, str] = {}
        self._written = 0  # bytes this process wrote since it last measured the whole store
        self.hits = self.misses = 0

    def key(self, llm: Any, prompt: Prompt, config: GenerationConfig) -> str | None:
        """The key of asking ``llm`` to continue ``prompt`` under ``config`` (None: not cacheable; a server that
        sends samples without their seed, ``?seed=off``, draws new ones each time, as an unseeded sample does)."""
        if config.do_sample and getattr(_unwrapped(llm), "send_seeds", True) is False:
            return None
        identity = self._identities.get(id(llm))
        if identity is None:
            identity = self._identities[id(llm)] = model_identity(llm)
        return call_key(identity, prompt, config)

    def get(self, key: str) -> Completion | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM calls WHERE key = ?", (key,)).fetchone()
        completion = None
        if row is not None:
            try:
                completion = Completion.model_validate_json(row[0])
            except ValueError:
                with self._lock:
                    self._db.execute("DELETE FROM calls WHERE key = ?", (key,))  # unreadable: as if absent
        if completion is None:
            self.misses += 1
        else:
            self.hits += 1
        return completion

    def put(self, key: str, completion: Completion) -> None:
        value = completion.model_dump_json()
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO calls VALUES (?, ?, ?, ?)", (key, value, len(value), time.time()))
            self._written += len(value)
            if self._written > self.max_bytes // 16:
                self._written = 0
                self._trim()

    def _trim(self) -> None:
        """Delete the oldest entries while the store is over its bound (down to 90% of it)."""
        total = self._db.execute("SELECT COALESCE(SUM(size), 0) FROM calls").fetchone()[0]
        if total <= self.max_bytes:
            return
        excess = total - int(0.9 * self.max_bytes)
        freed = 0
        doomed = []
        for key, size in self._db.execute("SELECT key, size FROM calls ORDER BY written"):
            doomed.append((key,))
            freed += size
            if freed >= excess:
                break
        self._db.executemany("DELETE FROM calls WHERE key = ?", doomed)

    def info(self) -> dict[str, Any]:
        """Where the cache is, how many entries it holds and how large they are."""
        with self._lock:
            entries, size = self._db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM calls").fetchone()
        files = sum(p.stat().st_size for p in self.directory.glob(DATABASE + "*") if p.is_file())
        return {
            "path": str(self.path),
            "entries": entries,
            "bytes": size,
            "file_bytes": files,
            "max_bytes": self.max_bytes,
        }

    def clear(self) -> int:
        """Delete every entry; returns how many there were."""
        with self._lock:
            count = self._db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
            self._db.execute("DELETE FROM calls")
            self._db.execute("VACUUM")
        return count

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __repr__(self) -> str:
        return f"CallCache({str(self.directory)!r})"
