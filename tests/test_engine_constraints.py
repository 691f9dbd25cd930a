"""Grammar-constrained decoding in the engine: the per-row llguidance matcher (agentkit.engine.constrain) on the
tiny BPE tokenizer and on the default model's, then constrained rows in the decode loop of the tiny engine.

Tests marked ``model`` load the real default model's tokenizer or the model itself.
"""

from __future__ import annotations

import json

import pytest
from streams import drain
from tiny_engine import ByteTokenizer, bpe_tokenizer

from agentkit import grammar
from agentkit.engine import constrain
from agentkit.errors import UsageError
from agentkit.llm import Constraint, GenerationConfig

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


@pytest.mark.parametrize(
    "constraint",
    [ACTION, Constraint(json_schema={"type": "integer"}), Constraint(lark='start: "yes" | "no"', after="a")],
)
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


# -- constrained rows in the decode loop (the tiny engine) -------------------------------------------------------
#
# On an ASCII-only BPE every output of the random model is valid UTF-8, so any greedy text can be (part of) a
# grammar, and its words ("the", "azy", "thought") are several characters long, as real tokens are.

PROMPTS = [
    "the quick brown fox",
    "question: what is the capital of france?\nthought:",
    "six times seven is",
    "a lazy dog",
]


@pytest.fixture(scope="module")
def llm():
    from tiny_engine import one_torch_thread, tiny_engine

    with one_torch_thread():
        yield tiny_engine(bpe=True, ascii_only=True)


@pytest.fixture(scope="module")
def stepwise():
    """The same engine with fast-forward off: every token, forced or not, is the model's choice."""
    from tiny_engine import one_torch_thread, tiny_engine

    with one_torch_thread():
        yield tiny_engine(bpe=True, ascii_only=True, fast_forward=False)


@pytest.fixture(scope="module")
def free(llm):
    return llm.generate(PROMPTS, GenerationConfig(max_new_tokens=24))


def lark_literal(text: str) -> str:
    return json.dumps(text)


def conforms(constraint: Constraint, c) -> bool:
    """A constrained completion matches, or max tokens cut it while it still could."""
    cut = c.finish_reason == "length" and grammar.is_prefix(constraint, c.text)
    return grammar.matches(constraint, c.text) or cut


def test_every_kind_of_constraint_with_and_without_after(llm, free):
    after = " and"  # the first row's first token: the constraint applies from its second
    kinds = [
        Constraint(regex=r" (search|finish): [a-z]{1,6}\."),
        Constraint(json_schema={"type": "boolean"}),
        Constraint(lark='start: "yes" | "no" WORD\nWORD: /[a-z]{2}/'),
    ]  # (this vocabulary has no digits)
    for constraint in kinds:
        for c in llm.generate(PROMPTS, GenerationConfig(max_new_tokens=24, constraint=constraint)):
            assert grammar.matches(constraint, c.text) and c.finish_reason == "stop"  # these grammars end early
        with_after = constraint.model_copy(update={"after": after})
        out = llm.generate(PROMPTS, GenerationConfig(max_new_tokens=40, constraint=with_after))
        assert all(conforms(with_after, c) for c in out)
        assert out[0].text.startswith(after)


def test_greedy_text_is_unchanged_where_it_already_conforms(llm, stepwise, free):
    absent = next(ch for ch in "!?.:" if not any(ch in c.text for c in free))
    for constraint in (Constraint(regex=f"[^{absent}]*"), Constraint(regex=f"[^{absent}]*", after=free[0].text[5:9])):
        out = llm.generate(PROMPTS, GenerationConfig(max_new_tokens=24, constraint=constraint))
        assert [c.model_dump() for c in out] == [c.model_dump() for c in free]
    for prompt, f in zip(PROMPTS, free, strict=True):  # each text as the grammar's own literal, and more after it
        constraint = Constraint(lark=f"start: {lark_literal(f.text[:12])} /(?s:.*)/")
        for engine in (stepwise, llm):  # with fast-forward as well: the forced tokens are the model's own here
            (c,) = engine.generate([prompt], GenerationConfig(max_new_tokens=24, constraint=constraint))
            assert c == f


def test_a_grammar_that_is_complete_ends_the_row(llm, free):
    short = llm.generate(PROMPTS, GenerationConfig(max_new_tokens=6))
    for prompt, s, f in zip(PROMPTS, short, free, strict=True):
        if s.finish_reason == "stop":  # the model ended it itself
            continue
        exact = Constraint(lark=f"start: {lark_literal(s.text)}")  # complete after the six tokens: stopped
        more = Constraint(lark=f'start: {lark_literal(s.text)} "!!!"?')  # complete, but "!" could follow
        for constraint in (exact, more):
            (c,) = llm.generate([prompt], GenerationConfig(max_new_tokens=24, constraint=constraint))
            assert (c.text, c.finish_reason) == (s.text, "stop") and f.text.startswith(c.text)


def test_forced_tokens_need_no_choice_and_a_row_alone_feeds_them_in_one_forward(llm):
    forced = "the quick brown fox jumps over a lazy dog and then"
    constraint = Constraint(lark=f"start: {lark_literal(forced)} /[a-z ]*/")
    cfg = GenerationConfig(max_new_tokens=40, constraint=constraint)
    before = llm.stats.copy()
    out = llm.generate(PROMPTS, cfg)
    used = llm.stats - before
    assert all(c.text.startswith(forced) and conforms(constraint, c) for c in out)
    assert used.forced_tokens >= 8 * len(out)  # the literal's tokens, bar the first, are the grammar's
    for prompt, c in zip(PROMPTS, out, strict=True):  # in the batch they ride along; alone, one chunk
        before = llm.stats.copy()
        assert llm.generate([prompt], cfg)[0] == c
        used = llm.stats - before
        assert used.decode_steps == c.completion_tokens - used.forced_tokens


def test_batch_equals_alone_with_constraints_in_float32(llm):
    constraint = Constraint(regex=r"[a-z ]+ (search|finish): [a-z]+", after="th")
    configs = [
        GenerationConfig(max_new_tokens=30, constraint=constraint),
        GenerationConfig(max_new_tokens=30, constraint=constraint, do_sample=True, seed=3),
        GenerationConfig(max_new_tokens=30, constraint=constraint, do_sample=True, seed=4, top_k=5),
        GenerationConfig(max_new_tokens=30),
    ]
    session = llm.session(max_batch_size=4)
    for i, (prompt, cfg) in enumerate(zip(PROMPTS, configs, strict=True)):
        session.add(i, prompt, cfg)
    together: dict = {}
    while session.pending:
        together.update(session.step())
    for i, (prompt, cfg) in enumerate(zip(PROMPTS, configs, strict=True)):
        assert llm.generate([prompt], cfg)[0] == together[i]
        if cfg.constraint is not None:
            assert conforms(constraint, together[i])


def test_stop_strings_and_max_tokens_keep_their_meaning(llm):
    forced = "the quick brown fox jumps over"
    constraint = Constraint(lark=f"start: {lark_literal(forced)} /[a-z ]*/")
    (cut,) = llm.generate([PROMPTS[0]], GenerationConfig(max_new_tokens=3, constraint=constraint))
    assert cut.finish_reason == "length" and cut.completion_tokens == 3 and forced.startswith(cut.text)
    (stopped,) = llm.generate([PROMPTS[0]], GenerationConfig(max_new_tokens=20, constraint=constraint, stop=["own f"]))
    assert (stopped.text, stopped.finish_reason) == ("the quick br", "stop")
    pieces, streamed = drain(
        llm.stream(PROMPTS[0], GenerationConfig(max_new_tokens=20, constraint=constraint, stop=["own f"]))
    )
    assert streamed == stopped and "".join(pieces) == stopped.text


def test_an_engine_pays_nothing_until_a_constraint_arrives_and_a_bad_one_is_one_line():
    from tiny_engine import tiny_engine

    plain = tiny_engine(bpe=True, ascii_only=True)
    plain.generate(["a"], GenerationConfig(max_new_tokens=2))
    assert plain._vocab is None  # no llguidance vocabulary was built
    with pytest.raises(UsageError, match="regex constraint does not compile") as e:
        plain.generate(["a"], GenerationConfig(constraint=Constraint(regex="((")))
    assert "\n" not in str(e.value)
    with pytest.raises(UsageError, match="engine bytes: constrained decoding needs a Hugging Face fast tokenizer"):
        tiny_engine(name="bytes").generate(["a"], GenerationConfig(constraint=Constraint(regex="a")))


# -- the default model (float32) -------------------------------------------------------------------------------

REACT_ACTION = Constraint(regex=r" (Search|Lookup|Finish)\[[^\]\n]+\]", after="Action 1:")


@pytest.fixture(scope="module")
def gemma():
    from agentkit.engine import TransformersLLM

    return TransformersLLM(dtype="float32")


@pytest.mark.model
def test_the_default_models_react_steps_keep_their_text_where_it_conforms(gemma):
    from agentkit.eval.datasets import load_dataset
    from agentkit.llm import extend
    from agentkit.strategies.react import ReAct

    react = ReAct(gemma, shots=4)
    prompts = [extend(react.prompt(e.question), "Thought 1:") for e in load_dataset("wiki-sample")[:6]]
    free_cfg = react.config.model_copy(update={"max_new_tokens": 64})
    cfg = free_cfg.model_copy(update={"constraint": REACT_ACTION})
    free = gemma.generate(prompts, free_cfg)
    out = gemma.generate(prompts, cfg)
    conforming = [i for i, c in enumerate(free) if "Action 1:" in c.text and grammar.matches(REACT_ACTION, c.text)]
    assert conforming  # the model mostly writes its actions right: those steps are untouched
    for i, (f, c) in enumerate(zip(free, out, strict=True)):
        if i in conforming:  # the same text; fewer tokens: the row ends at "]", not at the stop string after it
            assert (c.text, c.finish_reason) == (f.text, f.finish_reason)
            assert c.completion_tokens <= f.completion_tokens
        else:
            assert conforms(REACT_ACTION, c)
    assert [gemma.generate([p], cfg)[0] for p in prompts[:3]] == out[:3]  # batch == alone, float32


@pytest.mark.model
def test_the_default_models_answers_and_json(gemma):
    questions = [
        "Tom has 3 apples and buys 2 more. How many apples does he have?",
        "A box holds 12 eggs. How many eggs are in 3 boxes?",
        "What is 7 times 6?",
    ]
    prompts = [f"Question: {q}\nAnswer:" for q in questions]
    number = Constraint(regex=r" -?[0-9]+")
    free = gemma.generate(prompts, GenerationConfig(max_new_tokens=16, stop=["\n"]))
    out = gemma.generate(prompts, GenerationConfig(max_new_tokens=16, stop=["\n"], constraint=number))
    for f, c in zip(free, out, strict=True):
        assert grammar.matches(number, c.text) and c.finish_reason == "stop"
        if grammar.matches(number, f.text):
            assert (c.text, c.finish_reason) == (f.text, f.finish_reason)
        else:  # " 5 apples": the number is complete where the model goes on with words
            assert f.text.startswith(c.text)
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
        "required": ["city", "country"],
        "additionalProperties": False,
    }
    prompt = (
        'Input: Paris is in France.\nJSON: {"city": "Paris", "country": "France"}\n'
        "Input: Rome is the capital of Italy.\nJSON:"
    )
    before = gemma.stats.copy()
    (c,) = gemma.generate([prompt], GenerationConfig(max_new_tokens=40, constraint=Constraint(json_schema=schema)))
    assert grammar.matches(Constraint(json_schema=schema), c.text) and json.loads(c.text)["city"] == "Rome"
    assert (gemma.stats - before).forced_tokens > 0  # the keys and punctuation are the grammar's
