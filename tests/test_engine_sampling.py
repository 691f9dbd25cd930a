"""Token choice (``agentkit.engine.sampling``): top-k / top-p sets, the Gumbel race, seeded rows, and the per-row
constraint hook. The int8 paths must draw exactly what the full head draws from the same generators."""

from __future__ import annotations

import pytest
from tiny_engine import PROMPTS, Row, ready_tiny_engine, rows, tiny_engine

from agentkit.engine.sampling import TokenChooser
from agentkit.llm import GenerationConfig


@pytest.fixture(scope="module")
def tiny():
    pytest.importorskip("torch")
    return ready_tiny_engine()


def count_full_head(monkeypatch, chooser) -> list[int]:
    """From now on, the number of rows of each call of ``chooser``'s full head, appended to the list returned."""
    rows, logits = [], chooser.head.logits

    def counting(h):
        rows.append(len(h))
        return logits(h)

    monkeypatch.setattr(chooser.head, "logits", counting)
    return rows


def test_sample_keeps_exactly_the_top_k_and_top_p_sets():
    import torch

    from agentkit.engine.sampling import sample

    logits = torch.tensor([0.0, 5.0, 1.0, 4.0, 2.0, 3.0])  # best first: ids 1, 3, 5, 4, 2, 0
    gen = torch.Generator().manual_seed(0)

    def drawn(**settings) -> set[int]:
        cfg = GenerationConfig(do_sample=True, **settings)
        return {int(sample(logits, cfg, gen)) for _ in range(400)}

    assert drawn(top_k=3, top_p=1.0) == {1, 3, 5}
    assert drawn(top_k=None, top_p=0.5) == {1}  # id 1 alone holds ~64% of the mass
    assert drawn(top_k=None, top_p=0.9) == {1, 3, 5}  # 64% + 24% < 90%, + 9% reaches it
    assert drawn(top_k=2, top_p=0.99) == {1, 3}
    assert drawn(top_k=None, top_p=1.0, temperature=5.0) == set(range(6))


def test_tiny_sampling_is_seeded_per_row(tiny):
    cfg = GenerationConfig(max_new_tokens=15, do_sample=True, temperature=1.5, top_k=50, top_p=0.95, seed=7)
    a = tiny.generate([PROMPTS[0]], cfg)[0].text
    b = tiny.generate([PROMPTS[0], PROMPTS[1], PROMPTS[2]], cfg)[0].text
    assert a == b  # does not depend on the rest of the batch
    many = tiny.generate([PROMPTS[0]] * 4, cfg)  # seeds 7..10: different samples
    assert len({c.text for c in many}) > 1
    assert many[0].text == a


def _draws(chooser, hidden, configs: list[GenerationConfig], steps: int = 50) -> list[list[int]]:
    """``steps`` tokens for one row per config (row i seeded with i), chosen by ``chooser``."""
    rs = rows(configs)
    return [chooser.choose(hidden, rs).tolist() for _ in range(steps)]


def test_sampling_with_top_k_draws_exactly_as_the_full_head(tiny):
    """Same generator state, same exact top-k logits: the shortlist path draws the very same tokens."""
    import torch

    torch.manual_seed(4)
    hidden = torch.randn(6, tiny.model.config.hidden_size) * 3
    configs = [
        GenerationConfig(do_sample=True, temperature=t, top_k=k, top_p=p)
        for t, k, p in [
            (0.7, 40, 0.95),
            (1.0, 5, 1.0),
            (1.5, 100, 0.9),
            (0.5, 1, 1.0),
            (1.0, 258, 1.0),
            (0.7, 40, 0.95),
        ]
    ]

    assert _draws(tiny.chooser, hidden, configs) == _draws(TokenChooser(tiny.chooser.head), hidden, configs)


def test_pure_temperature_sampling_races_through_the_int8_head_to_the_full_heads_draws(tiny, monkeypatch):
    """Rows without top_k and top_p: the Gumbel race's winner, found by the bounded scan plus exact rescoring, is
    the full head's, draw for draw from the same generators; and the scan, not the full head, found it."""
    import torch

    torch.manual_seed(6)
    hidden = torch.randn(6, tiny.model.config.hidden_size) * 3
    configs = [GenerationConfig(do_sample=True, temperature=t) for t in (0.3, 0.7, 1.0, 1.5, 3.0)]
    configs.append(GenerationConfig(do_sample=True, temperature=0.7, top_k=40))  # a top-k row in the same batch
    full_rows = count_full_head(monkeypatch, tiny.chooser)

    fast = _draws(tiny.chooser, hidden, configs)
    assert sum(full_rows) <= 5  # of 300 draws: the scan proved (nearly) every winner
    assert fast == _draws(TokenChooser(tiny.chooser.head), hidden, configs)
    assert len({tuple(step[:5]) for step in fast}) > 10  # they are samples, not one repeated argmax


def test_pure_temperature_draws_follow_the_softmax_at_that_temperature(tiny):
    """The race samples softmax(logits / T): frequencies of the likely tokens over 6,000 draws (300 rows x 20
    steps, each row its own generator) within 4.5 standard errors of the exact probabilities."""
    import torch

    torch.manual_seed(8)
    h = torch.randn(1, tiny.model.config.hidden_size) * 20  # 7 tokens over 2% at T 0.5, 12 at T 2
    for temperature in (0.5, 2.0):
        cfg = GenerationConfig(do_sample=True, temperature=temperature)
        batch = rows([cfg] * 300, seed=1000)
        hidden = h.expand(len(batch), -1).contiguous()
        drawn = torch.cat([tiny.chooser.choose(hidden, batch) for _ in range(20)])
        p = (tiny.chooser.head.logits(h)[0] / temperature).softmax(-1)
        freq = torch.bincount(drawn, minlength=len(p)).double() / len(drawn)
        likely = (p > 0.02).nonzero()[:, 0]
        assert len(likely) >= 3
        err = 4.5 * (p[likely] * (1 - p[likely]) / len(drawn)).sqrt()
        assert ((freq[likely] - p[likely]).abs() <= err).all(), (temperature, freq[likely], p[likely])


def test_without_the_race_pure_temperature_rows_sample_the_full_head(tiny, monkeypatch):
    """``gumbel_race=False``: softmax and one multinomial draw over the full head's logits, as top-p rows do."""
    import torch

    from agentkit.engine.sampling import sample

    torch.manual_seed(7)
    hidden = torch.randn(4, tiny.model.config.hidden_size) * 3
    configs = [GenerationConfig(do_sample=True, temperature=t) for t in (0.5, 0.7, 1.0, 2.0)]
    chooser = TokenChooser(tiny.chooser.head, tiny.chooser.bounded, race=False)
    logits = tiny.chooser.head.logits(hidden)
    gens = [torch.Generator().manual_seed(i) for i in range(4)]
    expected = [[int(sample(logits[i], c, gens[i])) for i, c in enumerate(configs)] for _ in range(10)]
    full_rows = count_full_head(monkeypatch, tiny.chooser)
    assert _draws(chooser, hidden, configs, steps=10) == expected
    assert sum(full_rows) == 4 * 10  # every row, every step, through the full head
    assert tiny_engine(gumbel_race=False).chooser.race is False


class Allowed:
    """A constraint that allows a fixed set of tokens, counting how often it is asked."""

    def __init__(self, ids: set[int], vocab: int):
        self.ids, self.vocab, self.asked, self.masks = set(ids), vocab, 0, 0

    def allows(self, token: int) -> bool:
        self.asked += 1
        return token in self.ids

    def mask(self):
        import torch

        self.masks += 1
        allowed = torch.zeros(self.vocab, dtype=torch.bool)
        allowed[sorted(self.ids)] = True
        return allowed


def test_a_constrained_argmax_is_tested_first_and_masked_only_when_rejected(tiny):
    import torch

    torch.manual_seed(9)
    hidden = torch.randn(2, tiny.model.config.hidden_size) * 3
    logits = tiny.chooser.head.logits(hidden)
    best = logits.argmax(dim=-1).tolist()
    vocab = logits.shape[1]
    kept = Allowed({best[0], 5}, vocab)  # allows row 0's argmax
    others = {t for t in range(0, vocab, 7) if t != best[1]}  # rules row 1's argmax out
    rejected = Allowed(others, vocab)
    tokens = tiny.chooser.choose(
        hidden, [Row(GenerationConfig(), constraint=kept), Row(GenerationConfig(), constraint=rejected)]
    ).tolist()
    assert tokens[0] == best[0] and (kept.asked, kept.masks) == (1, 0)
    assert tokens[1] == max(others, key=lambda t: logits[1, t]) and rejected.masks == 1


def test_a_constrained_race_keeps_its_noise_so_the_masked_winner_is_a_sample_of_the_allowed_softmax(tiny):
    import torch

    from agentkit.engine.sampling import gumbel

    torch.manual_seed(10)
    hidden = torch.randn(1, tiny.model.config.hidden_size) * 3
    logits = tiny.chooser.head.logits(hidden)[0]
    vocab = len(logits)
    cfg = GenerationConfig(do_sample=True, temperature=0.8)
    for step in range(20):
        noise = gumbel(vocab, torch.Generator().manual_seed(step)).mul_(0.8)
        winner = int((logits + noise).argmax())
        allowed = {t for t in range(step % 3, vocab, 3)}
        constraint = Allowed(allowed, vocab)
        got = int(tiny.chooser.choose(hidden, [Row(cfg, torch.Generator().manual_seed(step), constraint)])[0])
        want = winner if winner in allowed else max(allowed, key=lambda t: logits[t] + noise[t])
        assert got == want and constraint.masks == (winner not in allowed)


def test_a_constrained_top_k_row_samples_among_the_allowed_tokens_only(tiny):
    import torch

    torch.manual_seed(11)
    hidden = torch.randn(1, tiny.model.config.hidden_size) * 3
    logits = tiny.chooser.head.logits(hidden)[0]
    allowed = set(range(100, 140))
    constraint = Allowed(allowed, len(logits))
    row = Row(GenerationConfig(do_sample=True, temperature=1.0, top_k=3), torch.Generator().manual_seed(0), constraint)
    drawn = {int(tiny.chooser.choose(hidden, [row])[0]) for _ in range(100)}
    assert drawn <= set(sorted(allowed, key=lambda t: -logits[t])[:3])  # the top 3 of the allowed tokens
    assert constraint.asked == 0 and constraint.masks == 100  # masked before drawing, never tested after
