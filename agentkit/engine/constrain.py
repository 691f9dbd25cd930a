"""Grammar-constrained decoding for the engine: one llguidance matcher per constrained row.

llguidance (Microsoft, https://github.com/guidance-ai/llguidance; the grammar engine of vLLM, SGLang and llama.cpp)
parses a grammar over *bytes* with an Earley parser on a regex lexer and turns the parser's state into the set of
vocabulary tokens that may come next. This module gives the decode loop what it needs of it, per row:

* ``allows(token)``: may the row take this token? The engine asks this of the token it would choose without the
  constraint (greedy's proven argmax, the Gumbel race's winner) and computes a full token ``mask()`` only when the
  answer is no, the "check the sampled token first" shortcut that llama.cpp's grammar sampler and vLLM's
  structured outputs also take: a model that already follows the format pays a few microseconds a token;
* ``take(token)``: advance the parser, or end the row on a complete match (a token the grammar rejects otherwise
  is a bug in the caller and raises, as does a matcher in an error state);
* ``forced()``: the tokens the grammar now forces (llguidance's fast-forward), which the engine feeds without
  choosing them;
* ``accepting`` / ``stopped``: the text so far is a complete match / the grammar admits nothing more.

``Constraint.after`` is part of the row's grammar, not a separate phase: ``row_grammar`` wraps the constraint's own
grammar in free text that ends at the first occurrence of the literal (regex complement, which llguidance's lexer
supports). So a token that completes the literal *and* carries text past it is checked byte by byte like any other,
free text that ends before the literal is a complete match (end of sequence is allowed there), and the text after
the first literal is what ``agentkit.grammar.matches`` checks.

The vocabulary llguidance needs (each token's bytes, a token trie and its mask "slices") is built once per model
and only when the first constraint arrives (``Vocabulary``): from the tokenizer's ``tokenizer.json`` that took
6.1 s for Gemma 3's 262k tokens (2 busy cores), so the token bytes are also saved under the cache directory, from
which it took 3.6 s (llguidance cannot serialize a built ``LLTokenizer``; within a process it is kept and shared).

Deliberately not here: choosing tokens (the engine's heads and samplers apply ``allows`` / ``mask``), compiling
and checking constraints (``agentkit.grammar``), and tokenizers without a ``tokenizer.json`` (a Hugging Face fast
tokenizer): llguidance needs every token's bytes, which ``decode`` does not give.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import threading
from array import array
from pathlib import Path
from typing import Any

from agentkit.errors import UsageError
from agentkit.grammar import grammar
from agentkit.llm import Constraint

_FORMAT = 1  # bump when the saved vocabulary's layout changes
_built: dict[str, Any] = {}  # LLTokenizers of this process, by vocabulary key
_built_lock = threading.Lock()


class Vocabulary:
    """One model's vocabulary as llguidance sees it, built on first use (``llg``) and kept.

    ``n_vocab`` is the LM head's size (the mask's length), ``eos_ids`` the tokens that end a row (allowed where the
    grammar is complete), ``cache`` the directory to save token bytes in (None: memory only)."""

    def __init__(self, tokenizer: Any, n_vocab: int, eos_ids: frozenset[int], cache: Path | None, name: str):
        self.tokenizer, self.n_vocab, self.eos_ids, self.cache, self.name = tokenizer, n_vocab, eos_ids, cache, name
        self._llg: Any = None
        self._lock = threading.Lock()

    @property
    def llg(self) -> Any:
        """The ``llguidance.LLTokenizer``."""
        with self._lock:
            if self._llg is None:
                self._llg = _llg_tokenizer(
                    _raw_tokenizer(self.tokenizer, self.name), self.n_vocab, sorted(self.eos_ids), self.cache
                )
            return self._llg

    def matcher(self, constraint: Constraint) -> RowMatcher:
        """A fresh matcher for one row (a ``UsageError`` if the constraint does not compile)."""
        return RowMatcher(constraint, row_grammar(constraint), self)


class RowMatcher:
    """The parser state of one constrained row, and the rule for a choice the grammar does not allow.

    ``permits(token)`` is the grammar's answer. ``allows(token)``, what token choice asks, also says yes to a token
    that *ends* the row: once the constrained part is a complete match (``accepting``, past the ``after``
    literal), a choice the grammar does not permit ends the row there, as if the model had chosen end of sequence.
    So a greedy row whose unconstrained text already conforms produces exactly that text (a number constraint
    stops at "42" where the model would go on with "\n"), and a constrained completion ends complete or is cut by
    max tokens. Before the literal a rejected choice is replaced by the best permitted one instead (free text
    never ends for want of a format)."""

    def __init__(self, constraint: Constraint, grammar_text: str, vocab: Vocabulary):
        import llguidance

        self.constraint, self.vocab = constraint, vocab
        self._m = llguidance.LLMatcher(vocab.llg, grammar_text, log_level=0)
        self._literal = constraint.after.encode() if constraint.after is not None else b""
        self._tail = b""  # the last bytes of free text, where the literal may be completing
        self.started = not self._literal  # the constrained part has begun (the literal has appeared)
        self._check("starting")

    @property
    def accepting(self) -> bool:
        """The text so far is a complete match (end of sequence may come next)."""
        return self._m.is_accepting()

    @property
    def stopped(self) -> bool:
        """The grammar admits no further text (the row is done)."""
        return self._m.is_stopped()

    def permits(self, token: int) -> bool:
        """Whether the grammar allows ``token`` next (the parser does not move)."""
        return self._m.validate_tokens([token]) == 1

    def allows(self, token: int) -> bool:
        """Whether the row may take ``token``: the grammar permits it, or it ends a complete match (``take``)."""
        return self.permits(token) or (self.started and self._m.is_accepting())

    def take(self, token: int) -> bool:
        """Advance past a chosen ``token``; False when it ends the row instead (see the class docstring)."""
        if not self.permits(token):
            if self.started and self._m.is_accepting():
                return False
            raise RuntimeError(
                f"constrained decoding ({self.constraint.kind}): token {token} was chosen although "
                "the grammar does not allow it"
            )
        self._m.consume_token(token)
        self._check(f"consuming token {token}")
        if not self.started:
            self._tail += self.vocab.llg.decode_bytes([token])
            self.started = self._literal in self._tail
            self._tail = self._tail[-(len(self._literal) - 1) :] if len(self._literal) > 1 else b""
        return True

    def forced(self) -> list[int]:
        """The tokens the grammar forces next (possibly none), not yet taken."""
        return self._m.compute_ff_tokens()

    def mask(self) -> Any:
        """A bool tensor ``[n_vocab]``, True where the grammar permits a token next."""
        import numpy as np
        import torch

        bits = np.unpackbits(np.frombuffer(self._m.compute_bitmask(), dtype=np.uint8), bitorder="little")
        return torch.from_numpy(bits[: self.vocab.n_vocab].astype(bool))

    def _check(self, doing: str) -> None:
        if self._m.is_error():
            raise RuntimeError(
                f"constrained decoding ({self.constraint.kind}): llguidance's matcher failed "
                f"{doing}: {self._m.get_error()}"
            )


def row_grammar(constraint: Constraint) -> str:
    """The llguidance grammar a row decodes under: the constraint's own, behind free text up to ``after``."""
    return _row_grammar(constraint.model_dump_json())


@functools.lru_cache(maxsize=256)
def _row_grammar(key: str) -> str:
    constraint = Constraint.model_validate_json(key)
    inner = grammar(constraint)  # the UsageError of a constraint that does not compile
    if constraint.after is None:
        return inner
    parts = json.loads(inner)["grammars"] if inner.lstrip().startswith("{") else [{"lark_grammar": inner}]
    parts[0] = {**parts[0], "name": "constrained"}
    lit, text = json.dumps(constraint.after), "/(?s:.*)/"
    free = (  # FREE: text without the literal; HEAD: text that ends at the literal's first occurrence
        f"start: FREE | HEAD @constrained\n"
        f"FREE: {text} & ~({text} {lit} {text})\n"
        f"HEAD: ({text} {lit}) & ~({text} {lit} /(?s:.+)/)\n"
    )
    return json.dumps({"grammars": [{"lark_grammar": free}, *parts]})


def _raw_tokenizer(tokenizer: Any, name: str) -> Any:
    """The ``tokenizers.Tokenizer`` behind the engine's tokenizer (raw, or a transformers fast tokenizer's)."""
    for get in (lambda: getattr(tokenizer, "raw", None), lambda: tokenizer, lambda: getattr(tokenizer, "hf", None)):
        backend = getattr(get(), "backend_tokenizer", None) or get()  # (hf last: it may load transformers)
        if backend is not None and hasattr(backend, "to_str") and hasattr(backend, "encode_batch"):
            return backend
    raise UsageError(
        f"engine {name}: constrained decoding needs a Hugging Face fast tokenizer (tokenizer.json); "
        "this model's tokenizer has none: drop the constraint or use a model that ships one"
    )


def _llg_tokenizer(raw: Any, n_vocab: int, eos: list[int], cache: Path | None) -> Any:
    """An ``LLTokenizer`` for ``raw``: from this process's memory, else from saved token bytes, else built from the
    tokenizer's JSON (and its token bytes saved)."""
    import copy

    import llguidance

    raw = copy.copy(raw)  # as llguidance.hf does: no padding or truncation in the copy it reads
    raw.no_padding()
    raw.no_truncation()
    spec = raw.to_str()
    key = hashlib.sha256(f"{spec}\0{n_vocab}\0{eos}\0{llguidance.__version__}\0{_FORMAT}".encode()).hexdigest()[:32]
    with _built_lock:
        if key in _built:
            return _built[key]
    path = cache / "llguidance" / f"{key}.tokens" if cache is not None else None
    saved = _load(path) if path is not None else None
    if saved is not None:
        llg = llguidance.LLTokenizer(
            llguidance.TokenizerWrapper(_Saved(raw, *saved, eos)), n_vocab=n_vocab, eos_token=eos
        )
    else:
        llg = llguidance.LLTokenizer(spec, n_vocab=n_vocab, eos_token=eos)
        if path is not None:
            tokens = [llg.decode_bytes([i]) for i in range(llg.vocab_size)]
            _save(path, tokens, [i for i in range(llg.vocab_size) if llg.is_special_token(i)])
    with _built_lock:
        return _built.setdefault(key, llg)


class _Saved:
    """What ``llguidance.TokenizerWrapper`` reads: the saved token bytes, and the tokenizer itself to encode."""

    def __init__(self, raw: Any, tokens: list[bytes], special: list[int], eos: list[int]):
        self.raw, self.tokens, self.special_token_ids = raw, tokens, special
        self.eos_token_id, self.bos_token_id = eos[0], None

    def __call__(self, text: bytes) -> list[int]:
        return self.raw.encode(text.decode("utf-8"), add_special_tokens=False).ids


def _save(path: Path, tokens: list[bytes], special: list[int]) -> None:
    """Token bytes as a JSON header line, the lengths (uint32) and the bytes; written whole or not at all."""
    head = json.dumps({"format": _FORMAT, "tokens": len(tokens), "special": special}).encode() + b"\n"
    lengths = array("I", map(len, tokens))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(head + lengths.tobytes() + b"".join(tokens))
        os.replace(tmp, path)
    except OSError:  # a read-only cache only costs the next process the slow build
        tmp.unlink(missing_ok=True)


def _load(path: Path) -> tuple[list[bytes], list[int]] | None:
    try:
        data = path.read_bytes()
        end = data.index(b"\n")
        head = json.loads(data[:end])
        if head["format"] != _FORMAT:
            return None
        n = head["tokens"]
        lengths = array("I")
        lengths.frombytes(data[end + 1 : end + 1 + 4 * n])
        tokens, at = [], end + 1 + 4 * n
        for size in lengths:
            tokens.append(data[at : at + size])
            at += size
        if len(tokens) != n or at != len(data):
            return None
        return tokens, list(head["special"])
    except (OSError, ValueError, KeyError, TypeError):  # missing or damaged: build it again
        return None
