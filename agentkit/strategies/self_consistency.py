"""Self-consistency (Wang et al., 2022): sample k reasoning paths, answer by majority vote.

Works over any single-call strategy (chain-of-thought, PAL). The k samples share one prompt, so the engine's
prefix cache computes it once; each sample gets its own seed, so a run is reproducible. Votes are counted over
*normalized* answers, numbers read exactly by ``agentkit.answers`` (``18``, ``18.0`` and ``$18`` are one vote;
``1e-7`` and ``0`` are two); a tie goes to the answer that appeared first
among the samples, so the result is deterministic.
"""

from __future__ import annotations

from collections import Counter

from agentkit.answers import normalize_answer
from agentkit.result import Result
from agentkit.runtime import Episode, Event, Generate, gather
from agentkit.strategies.base import SingleCall, Strategy


class SelfConsistency(Strategy):
    def __init__(
        self,
        base: SingleCall,
        *,
        k: int = 5,
        temperature: float = 0.7,
        top_p: float = 0.95,
        top_k: int | None = 40,
        seed: int | None = None,
    ):
        if k < 1:
            raise ValueError(f"self-consistency needs k >= 1 samples, got {k}")
        super().__init__(
            base._llm,
            shots=base.shots,
            config=base.config,
            templates=base.templates,
            prompt_format=base.prompt_format,
            constrain=base.constrain,  # each sample is constrained as the base's reply is (config_for_format)
        )
        self.base = base
        self.k = k
        self.name = f"{base.name}-sc"
        seed = base.config.seed if seed is None else seed
        self.seed = 0 if seed is None else seed
        self.sample_configs = [
            base.config.model_copy(
                update=dict(do_sample=True, temperature=temperature, top_p=top_p, top_k=top_k, seed=self.seed + i)
            )
            for i in range(k)
        ]

    @property
    def llm(self):
        return self.base.llm

    def episode(self, question: str) -> Episode:
        prompt = self.base.prompt(question)
        completions = yield [Generate(prompt, self.base.config_for_format(c)) for c in self.sample_configs]
        readings = yield from gather([self.base.read(c) for c in completions])
        samples = [self.base.result(question, c, r) for c, r in zip(completions, readings, strict=True)]
        keys = [normalize_answer(r.answer) for r in readings]  # None where a sample gave no answer
        votes = Counter(key for key in keys if key is not None)
        first_seen: dict[str, tuple[int, str]] = {}  # normalized answer -> (order, first spelling)
        for key, r in zip(keys, readings, strict=True):
            if key is not None:
                first_seen.setdefault(key, (len(first_seen), r.answer))
        winner = min(votes, key=lambda a: (-votes[a], first_seen[a][0])) if votes else None
        # numbers in canonical form; text as the model first wrote it ("Leonardo da Vinci", not lower-cased)
        answer = None if winner is None else winner if self.base.answer == "number" else first_seen[winner][1]
        failure = error = None
        if answer is None:
            failures = Counter(r.failure for r in readings if r.failure)
            failure = failures.most_common(1)[0][0] if failures else "no_answer"
            error = f"none of the {self.k} samples gave an answer ({dict(failures)})"
        else:
            yield Event("answer", answer, {"votes": dict(votes)})
        return Result.from_completions(
            self.name,
            question,
            completions,
            answer=answer,
            failure=failure,
            error=error,
            prompt=self.llm.render(prompt),
            votes=dict(votes),
            samples=samples,
        )

    def __repr__(self) -> str:
        return f"SelfConsistency({self.base!r}, k={self.k})"
