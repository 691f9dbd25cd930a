"""Grammar-constrained decoding in the engine: the per-row llguidance matcher (agentkit.engine.constrain) on the
tiny BPE tokenizer and on the default model's, then constrained rows in the decode loop of the tiny engine.

Tests marked ``model`` load the real default model's tokenizer or the model itself.
"""

from __future__ import annotations

import pytest

from agentkit.engine import constrain
from agentkit.errors import UsageError
from agentkit.llm import Constraint
from tiny_engine import ByteTokenizer, bpe_tokenizer

ACTION = Constraint(regex=r" (Search|Finish)\[[a-z ]*\]", after="action:")


@pytest.fixture(scope="module")
def tok():
    return bpe_tokenizer()


@pytest.fixture(scope="module")
def vocab(tok):
    return constrain.Vocabulary(tok, tok.raw.get_vocab_size(), frozenset({1}), None, "tiny")


def ids(tok, text: str) -> list[int]:
    return tok.encode(text, add_special_tokens=False)


def test_free_text_until_the_literal_then_the_constraint(tok, vocab):
    m = vocab.matcher(ACTION)
    for t in ids(tok, "the quick fox jumps"):
        assert m.allows(t)
        assert m.take(t)
    assert m.accepting and not m.stopped  # free text without the literal is a complete match
    for t in ids(tok, " action:"):
        assert m.take(t)
    assert not m.accepting
    assert not m.allows(ids(tok, " the")[0])  # after the literal only the action line may follow
    for t in ids(tok, " Search[paris]"):
        assert m.allows(t)
        assert m.take(t)
    assert m.stopped and m.accepting


def test_a_token_that_completes_the_literal_is_checked_on_the_bytes_past_it(tok, vocab):
    fo, f = ids(tok, " fo"), ids(tok, " f")
    assert len(fo) == len(f) == 1  # one token each: " fo" carries one byte past the literal " f"
    allowed, rejected = (vocab.matcher(Constraint(regex=r, after=" f")) for r in ("ox", "r"))
    assert allowed.allows(fo[0]) and allowed.allows(f[0])
    assert not rejected.allows(fo[0]) and rejected.allows(f[0])
    assert allowed.take(fo[0]) and allowed.started and not allowed.accepting  # "o" of "ox" is in


def test_forced_tokens_are_the_grammars_fast_forward(tok, vocab):
    m = vocab.matcher(Constraint(regex=r"Search\[[a-z]+\]"))
    assert m.take(ids(tok, "S")[0])
    forced = m.forced()
    assert tok.decode(forced) == "earch["
    for t in forced:
        assert m.take(t)
    assert m.forced() == []  # the argument is free


@pytest.mark.parametrize("constraint", [ACTION, Constraint(json_schema={"type": "integer"}),
                                        Constraint(lark='start: "yes" | "no"', after="a")])
def test_the_mask_is_exactly_the_allowed_tokens(tok, vocab, constraint):
    m = vocab.matcher(constraint)
    for t in ids(tok, "the dog action:")[:3]:
        mask = m.mask()
        assert mask.shape == (vocab.n_vocab,)
        assert [bool(x) for x in mask] == [m.permits(i) for i in range(vocab.n_vocab)]
        if m.permits(t):
            assert m.take(t)


def test_end_of_sequence_is_allowed_only_on_a_complete_match(tok, vocab):
    m = vocab.matcher(Constraint(regex="the+"))
    assert not m.allows(1)
    for t in ids(tok, "the"):
        assert m.take(t)
    assert m.accepting and not m.stopped and m.permits(1)


def test_a_choice_the_grammar_rejects_ends_a_complete_match_and_is_a_bug_before(tok, vocab):
    m = vocab.matcher(Constraint(regex="the+"))
    dog = ids(tok, " dog")[0]
    assert not m.allows(dog)
    with pytest.raises(RuntimeError, match=f"token {dog} was chosen although the grammar does not allow it"):
        m.take(dog)
    for t in ids(tok, "the"):
        assert m.take(t)
    assert m.allows(dog) and not m.permits(dog)  # "the" is complete: " dog" ends the row there
    assert m.take(dog) is False


def test_a_constraint_that_does_not_compile_is_the_one_line_usage_error(vocab):
    with pytest.raises(UsageError, match="regex constraint does not compile") as e:
        vocab.matcher(Constraint(regex="((", after="x"))
    assert "\n" not in str(e.value)


def test_a_tokenizer_without_tokenizer_json_is_refused_in_one_line():
    v = constrain.Vocabulary(ByteTokenizer(), 259, frozenset({1}), None, "tiny")
    with pytest.raises(UsageError, match="engine tiny: constrained decoding needs a Hugging Face fast tokenizer"):
        v.matcher(Constraint(regex="a"))


def test_the_vocabulary_is_saved_once_and_loaded_back_the_same(tok, tmp_path, monkeypatch):
    monkeypatch.setattr(constrain, "_built", {})
    first = constrain.Vocabulary(tok, tok.raw.get_vocab_size(), frozenset({1}), tmp_path, "tiny")
    masks = _masks(first, tok)
    (saved,) = (tmp_path / "llguidance").iterdir()
    monkeypatch.setattr(constrain, "_built", {})  # a new process: from the saved bytes
    again = constrain.Vocabulary(tok, tok.raw.get_vocab_size(), frozenset({1}), tmp_path, "tiny")
    assert again.llg is not first.llg
    assert _masks(again, tok) == masks
    saved.write_bytes(saved.read_bytes()[:-3])  # damaged: built again from the tokenizer
    monkeypatch.setattr(constrain, "_built", {})
    assert _masks(constrain.Vocabulary(tok, tok.raw.get_vocab_size(), frozenset({1}), tmp_path, "t"), tok) == masks


def _masks(vocab: constrain.Vocabulary, tok) -> list[list[bool]]:
    m, out = vocab.matcher(ACTION), []
    for t in ids(tok, "the fox action: Search[paris]"):
        out.append(m.mask().tolist())
        assert m.take(t)
    assert m.stopped
    return out


@pytest.mark.model
def test_the_default_models_vocabulary(tmp_path, monkeypatch):
    from tokenizers import Tokenizer as RawTokenizer

    from agentkit.engine import loading

    cache = loading.cache_dir()
    model_dir = loading._dequantized_gguf(loading.default_gguf(cache), cache, print)
    tok = loading.Tokenizer(raw=RawTokenizer.from_file(str(model_dir / "tokenizer.json")))
    monkeypatch.setattr(constrain, "_built", {})
    built = constrain.Vocabulary(tok, 262144, frozenset({1, 106}), tmp_path, "gemma")
    monkeypatch.setattr(constrain, "_built", {})
    loaded = constrain.Vocabulary(tok, 262144, frozenset({1, 106}), tmp_path, "gemma")
    react = Constraint(regex=r" (Search|Lookup|Finish)\[[^\]\n]*\]", after="Action 1:")
    a, b = built.matcher(react), loaded.matcher(react)
    text = "I need to search Paris.\nAction 1: Search[Paris]"
    for t in tok.encode(text, add_special_tokens=False):
        assert a.allows(t)
        assert bool((a.mask() == b.mask()).all())
        assert a.forced() == b.forced()
        assert a.take(t)
        assert b.take(t)
    assert a.stopped and b.stopped
    assert not a.permits(tok.encode("\n", add_special_tokens=False)[0])
