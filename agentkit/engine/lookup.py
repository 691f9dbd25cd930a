"""Draft tokens for speculative decoding by *prompt lookup*: no draft model, just the sequence itself.

If the last ``n`` tokens of a sequence occurred before, the tokens that followed them then are a guess at what
follows now. The engine feeds the guess to the model together with the real next input and keeps the longest
prefix the model itself would have chosen (see ``_Batcher._speculate``), so a guess costs compute, never
correctness. Agent text repeats itself a great deal: a thought quotes the observation, a program reuses the
question's numbers, and a small model that has lost its way loops; there the model verifies several tokens in
one forward pass.

The method is prompt lookup decoding (A. Saxena, 2023, github.com/apoorvumang/prompt-lookup-decoding), an n-gram
form of copying a reference (N. Yang et al., "Inference with Reference: Lossless Acceleration of Large Language
Models", 2023), verified as in speculative decoding (Y. Leviathan, M. Kalman, Y. Matias, "Fast Inference from
Transformers via Speculative Decoding", ICML 2023).

Deliberately not here: draft models, tree drafts, and sampling-time verification (the engine only speculates
for greedy rows, whose output must stay token-for-token the same).
"""

from __future__ import annotations

MAX_NGRAM = 3  # the longest suffix matched; shorter ones are tried when it has no earlier occurrence


class PromptLookup:
    """An index of a growing token sequence: for every n-gram (n <= ``max_ngram``), where it last occurred.

    ``extend`` is O(``max_ngram``) per token and ``draft`` O(``max_ngram + k``), so a row's drafts stay cheap
    however long its prompt is."""

    def __init__(self, tokens: list[int], max_ngram: int = MAX_NGRAM):
        self.tokens: list[int] = []
        self.max_ngram = max_ngram
        self._after: dict[tuple[int, ...], int] = {}  # n-gram -> index of the token after its latest occurrence
        self.extend(tokens)

    def extend(self, tokens: list[int]) -> None:
        seq, after = self.tokens, self._after
        for token in tokens:
            seq.append(token)
            end = len(seq) - 1  # the n-grams ending just before this token are now followed by it
            for n in range(1, min(self.max_ngram, end) + 1):
                after[tuple(seq[end - n : end])] = end

    def draft(self, k: int) -> list[int]:
        """Up to ``k`` tokens that followed the latest earlier occurrence of the longest matching suffix."""
        seq = self.tokens
        if k <= 0:
            return []
        for n in range(min(self.max_ngram, len(seq)), 0, -1):
            start = self._after.get(tuple(seq[len(seq) - n :]))
            if start is not None:
                # a copy that reaches the present goes on copying its own draft (a loop of period len - start),
                # which is what looking up again after each drafted token would give
                out = seq[start : start + k]
                while len(out) < k:
                    out.append(out[len(out) - (len(seq) - start)])
                return out
        return []
