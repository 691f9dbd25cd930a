"""Tiny engines for the fast tests: a random-weight Gemma 3 of the default model's architecture on the CPU.

Four layers (sliding-window and full attention, the window shorter than the prompts), 64-wide, built in well under
a second. Two tokenizers: ``ByteTokenizer`` (one token per byte) and ``bpe_tokenizer()``, a byte-level BPE trained
here on a few hundred sentences, so tokens span several characters (a leading space, half a word) as real
tokenizers' do; it goes through the engine's own ``Tokenizer`` wrapper, the path the default model takes.

Also what the engine's unit tests share: ``PROMPTS``, ``reference`` (transformers' own greedy ``generate``) and
``Row``, the least a row must carry for token choice.

Not a test module: the ``test_engine*.py`` files and ``test_model_contract.py`` import it.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from agentkit.llm import GenerationConfig

PAD, EOS, BOS = 0, 1, 2


class ByteTokenizer:
    """ids 0..2 are <pad> <eos> <bos>, byte b is id b + 3."""

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        ids = [b + 3 for b in text.encode()]
        return [BOS, *ids] if add_special_tokens else ids

    def decode(self, ids: list[int]) -> str:
        return bytes(i - 3 for i in ids if i >= 3).decode("utf-8", errors="replace")

    def token_id(self, token: str) -> int | None:
        return {"<pad>": PAD, "<eos>": EOS, "<bos>": BOS}.get(token)


_WORDS = (
    "the quick brown fox jumps over a lazy dog and then we say forty two because six times seven is that "
    "question thought action observation search lookup finish paris france capital of"
).split()


def bpe_tokenizer(vocab_size: int = 320, ascii_only: bool = False) -> Any:
    """A byte-level BPE (``tokenizers``) with <pad> <eos> <bos> as ids 0..2, wrapped like the default model's.
    ``ascii_only``: no tokens for the other bytes, so whatever a model writes with it is valid UTF-8 (any output
    can be a grammar's literal)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    from agentkit.engine.loading import Tokenizer as EngineTokenizer

    rng = random.Random(0)
    corpus = [" ".join(rng.choices(_WORDS, k=12)) + rng.choice([".", "?", "!\n", ":\n"]) for _ in range(400)]
    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "<eos>", "<bos>"],
        initial_alphabet=[] if ascii_only else pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator(corpus, trainer)
    raw.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", BOS)])
    return EngineTokenizer(raw=raw)


def tiny_gemma(vocab_size: int = 259, seed: int = 0) -> Any:
    """A random-weight ``Gemma3ForCausalLM``: varied output, top-2 logit gaps ~1e-2."""
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(seed)
    cfg = Gemma3TextConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=16,
        sliding_window=8,
        layer_types=["sliding_attention", "sliding_attention", "full_attention", "sliding_attention"],
        max_position_embeddings=512,
        pad_token_id=PAD,
        eos_token_id=EOS,
        bos_token_id=BOS,
    )
    return Gemma3ForCausalLM(cfg).float().eval()


def tiny_engine(
    *, bpe: bool = False, ascii_only: bool = False, max_batch_size: int = 4, name: str = "tiny", **knobs: Any
) -> Any:
    """A ``TransformersLLM`` on ``tiny_gemma`` with the byte tokenizer, or with ``bpe_tokenizer(ascii_only=...)``;
    ``knobs`` are ``EngineConfig`` fields (``prompt_lookup=0``, ``fast_lm_head=False``, ...)."""
    from agentkit.engine.transformers_llm import TransformersLLM

    tokenizer = bpe_tokenizer(ascii_only=ascii_only) if bpe else ByteTokenizer()
    vocab_size = tokenizer.raw.get_vocab_size() if bpe else 259
    # packed like a loaded model's (TransformersLLM() packs the model it owns; from_model only when asked)
    knobs = {"packed_linears": True, **knobs}
    return TransformersLLM.from_model(
        tiny_gemma(vocab_size), tokenizer, name=name, max_batch_size=max_batch_size, **knobs
    )


def ready_tiny_engine(**knobs: Any) -> Any:
    """``tiny_engine(**knobs)`` once its int8 head, built in the background, is ready."""
    llm = tiny_engine(**knobs)
    llm.wait_until_ready()
    return llm


PROMPTS = [
    "The quick brown fox jumps over the lazy dog, twice.",
    "ab",
    "Question: 12 + 30 = ?\nAnswer: ",
    "Question: 12 + 30 = ?\nAnswer: It is",
    "x" * 70,
    "Question: 12 + 30 = ?\nAnswer: It is 42.",
]


def reference(llm: Any, prompt: str, n: int) -> list[int]:
    """transformers' own greedy ``generate`` of ``n`` tokens on the engine's model, cut at the EOS."""
    import torch

    ids = torch.tensor([llm.encode(prompt)])
    with torch.no_grad():
        out = llm.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False)
    gen = out[0, ids.shape[1] :].tolist()
    if EOS in gen:
        gen = gen[: gen.index(EOS)]
    return gen


@dataclass
class Row:
    """What ``TokenChooser`` reads of a row: its config, its generator, its constraint."""

    config: GenerationConfig
    gen: Any = None
    constraint: Any = None


def rows(configs: list[GenerationConfig], seed: int = 0) -> list[Row]:
    """One row per config, row ``i`` with its own generator seeded ``seed + i``."""
    import torch

    return [Row(c, torch.Generator().manual_seed(seed + i)) for i, c in enumerate(configs)]


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run a tiny model on one thread: more only add synchronisation (16x slower on a busy 2-core machine)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
