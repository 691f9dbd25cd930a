"""The LM heads (``agentkit.engine.heads``): the bounded int8 head's candidates provably hold the exact top-k, and
greedy token choice through it is the full head's argmax. On a tiny random Gemma 3 and on a bare linear layer."""

from __future__ import annotations

import pytest
from tiny_engine import PROMPTS, ByteTokenizer, ready_tiny_engine, reference, rows, tiny_engine

from agentkit.llm import GenerationConfig


@pytest.fixture(scope="module")
def tiny():
    pytest.importorskip("torch")
    return ready_tiny_engine()


def test_int8_head_shortlist_gives_exact_argmax(tiny):
    import torch

    assert tiny.chooser.bounded is not None  # built in the background (the fixture waited for it)
    hidden = torch.randn(64, tiny.model.config.hidden_size) * 3
    assert torch.equal(tiny.chooser.greedy(hidden), tiny.chooser.head.logits(hidden).argmax(dim=-1))
    texts = [c.text for c in tiny.generate(PROMPTS[:3], GenerationConfig(max_new_tokens=16))]
    assert texts == [tiny.tokenizer.decode(reference(tiny, p, 16)) for p in PROMPTS[:3]]


def test_bounded_int8_head_candidates_provably_hold_the_exact_top_k(tiny):
    import torch

    head = tiny.chooser.bounded
    torch.manual_seed(3)
    hidden = torch.randn(48, tiny.model.config.hidden_size) * 3
    hidden[:, 5] *= 15  # an outlier dimension, as in real final hidden states
    exact = tiny.chooser.head.logits(hidden)
    for k in (1, 5, 40):
        cands = head.candidates(hidden, k)
        truth = exact.topk(k, dim=-1).indices
        sizes = []
        for row, cand in enumerate(cands):
            assert cand is not None
            assert set(truth[row].tolist()) <= set(cand.tolist())
            sizes.append(len(cand))
        assert sum(sizes) / len(sizes) < exact.shape[1]  # the scan does prune
    assert head.candidates(hidden[:2], exact.shape[1]) == [None, None]  # k >= vocabulary: the full head


def test_bounded_head_rows_do_not_coarsen_each_other(tiny):
    """fbgemm quantizes a whole activation tensor with one scale: without per-row scaling, one row with large
    values would widen every other row's bound. Each row's candidates are the same alone as beside it."""
    import torch

    head = tiny.chooser.bounded
    torch.manual_seed(6)
    hidden = torch.randn(20, tiny.model.config.hidden_size) * 3  # 20 rows: more than one int8 GEMM chunk
    hidden[3] *= 40
    exact = tiny.chooser.head.logits(hidden)
    for k in (1, 40):
        together = head.candidates(hidden, k)
        for row in range(len(hidden)):
            alone = head.candidates(hidden[row : row + 1], k)[0]
            assert torch.equal(together[row], alone)
            assert set(exact[row].topk(k).indices.tolist()) <= set(alone.tolist())


def test_a_bounded_int8_head_on_a_bare_linear_layer_shortlists_exactly():
    """The head alone, no model: an outlier dimension is calibrated exactly, candidates hold the exact top-k, and
    ``exact`` rescores them as the full matmul does."""
    torch = pytest.importorskip("torch")
    from agentkit.engine.heads import BoundedHead

    torch.manual_seed(0)
    linear = torch.nn.Linear(48, 500, bias=False)
    head = BoundedHead.build(linear)
    if head is None:
        pytest.skip("this torch build has no fbgemm / x86 quantized engine")
    assert head.proven  # a float32 head
    hidden = torch.randn(10, 48) * 2
    hidden[:, 7] *= 20
    with torch.no_grad():
        head.calibrate(hidden)
        assert 7 in head.outliers.tolist()
        logits = hidden @ linear.weight.T
        for k in (1, 10):
            cands = head.candidates(hidden, k)
            for row, (cand, exact) in enumerate(zip(cands, head.exact(hidden, cands), strict=True)):
                assert set(logits[row].topk(k).indices.tolist()) <= set(cand.tolist()) and len(cand) < 500
                assert torch.allclose(exact, logits[row, cand], rtol=1e-5, atol=1e-5)
    assert BoundedHead.build(torch.nn.Linear(48, 500)) is None  # a head with a bias gets no int8 copy


def test_lower_precision_greedy_uses_the_int8_shortlist_and_sampling_the_full_head(tiny, monkeypatch):
    """Where the bound's rounding margin is too wide to pay (bf16), greedy rows rescore the int8 top-64 and sampled
    rows never touch the bounded scan."""
    import torch

    head = tiny.chooser.bounded
    monkeypatch.setattr(head, "proven", False)
    monkeypatch.setattr(head, "candidates", lambda *a: pytest.fail("bounded scan used without a proven bound"))
    torch.manual_seed(5)
    hidden = torch.randn(8, tiny.model.config.hidden_size) * 3
    assert tiny.chooser.greedy(hidden).tolist() == tiny.chooser.head.logits(hidden).argmax(dim=-1).tolist()
    cfg = GenerationConfig(do_sample=True, temperature=0.7, top_k=40)
    assert tiny.chooser.choose(hidden[:3], rows([cfg] * 3)).shape == (3,)


def test_building_an_engine_leaves_the_global_rng_alone():
    """The int8 head is built on a background thread: drawing from the global RNG there would change what the
    caller's seeded code draws (and raced with it)."""
    import torch
    from tiny_engine import tiny_gemma

    from agentkit.engine.transformers_llm import TransformersLLM

    model = tiny_gemma()
    torch.manual_seed(123)
    expected = torch.rand(4)
    torch.manual_seed(123)
    llm = TransformersLLM.from_model(model, ByteTokenizer(), packed_linears=True)
    llm.wait_until_ready()
    assert llm.chooser.bounded is not None
    assert torch.equal(torch.rand(4), expected)


def test_without_the_int8_head_greedy_texts_are_the_same():
    plain = tiny_engine(fast_lm_head=False)
    plain.wait_until_ready()
    assert plain.chooser.bounded is None
    cfg = GenerationConfig(max_new_tokens=16)
    texts = [c.text for c in plain.generate(PROMPTS[:3], cfg)]
    assert texts == [plain.tokenizer.decode(reference(plain, p, 16)) for p in PROMPTS[:3]]
