"""Per-row text bookkeeping for the decode loop: incremental detokenization and exact stop strings.

``RowText`` turns generated token ids into text one token at a time and decides when a row is done. It decodes a
small sliding window of ids (the approach of TGI/vLLM), so each step costs O(1) and a token that completes a
multi-byte character or a merged word only shows up once its text is final. The window starts with the last few
prompt tokens, so the first generated token keeps its leading space ("Answer:" + " 42", not "42").

Stop strings are matched on the decoded text, never on tokens, so a stop that ends mid-token or spans several
tokens is still cut exactly: the returned text ends right before the stop and holds no part of it.
``stream_delta`` returns only text that can no longer turn into the start of a stop string.

No torch here: this module is exercised by the fast tests with a toy tokenizer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from agentkit.llm import partial_stop_suffix

Decode = Callable[[list[int]], str]

CONTEXT_TOKENS = 4  # prompt tokens kept in the decode window


class RowText:
    """Text of one generated row; feed it tokens with :meth:`push`."""

    def __init__(self, decode: Decode, stop: Sequence[str], prompt_ids: Sequence[int] = ()):
        self._decode = decode
        self.stop = list(stop)
        self._ids: list[int] = list(prompt_ids[-CONTEXT_TOKENS:])
        self._prefix = 0  # window start
        self._read = len(self._ids)  # ids before this are already in ``text``
        self._max_stop = max((len(s) for s in self.stop), default=0)
        self.text = ""
        self.stopped = False  # a stop string was found (text is cut before it)
        self._emitted = 0

    def push(self, token_id: int) -> bool:
        """Add one generated token; returns True when a stop string has appeared (``text`` is then final)."""
        if self.stopped:
            return True
        self._ids.append(token_id)
        before = self._decode(self._ids[self._prefix : self._read])
        after = self._decode(self._ids[self._prefix :])
        if len(after) <= len(before) or after.endswith("\ufffd"):
            return False  # incomplete character or a token that merges with the next: wait
        self._prefix = self._read  # the window slides: it keeps the ids of the last piece as context
        self._append(after[len(before) :])
        return self.stopped

    def flush(self) -> None:
        """End of generation without a stop string: take whatever the window still holds back."""
        if self.stopped or self._read == len(self._ids):
            return
        before = self._decode(self._ids[self._prefix : self._read])
        after = self._decode(self._ids[self._prefix :])
        if len(after) > len(before):
            self._append(after[len(before) :])

    def _append(self, piece: str) -> None:
        """Take ``piece`` (the text of every id up to the end) and cut at the first stop string it completes."""
        self._read = len(self._ids)
        old_len = len(self.text)
        self.text += piece
        if self.stop:
            start = max(0, old_len - self._max_stop + 1)
            hits = [i for i in (self.text.find(s, start) for s in self.stop) if i >= 0]
            if hits:
                self.text = self.text[: min(hits)]
                self.stopped = True

    def stream_delta(self, final: bool = False) -> str:
        """New text that is safe to show: excludes a suffix that may still become a stop string."""
        end = len(self.text) if (final or self.stopped) else len(self.text) - partial_stop_suffix(self.text, self.stop)
        if end <= self._emitted:
            return ""
        piece = self.text[self._emitted : end]
        self._emitted = end
        return piece
