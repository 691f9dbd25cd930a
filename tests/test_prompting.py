"""Templates are data: strict rendering, exemplar files, user overrides, and every shipped template renders."""

import json

import pytest

from agentkit.prompting import PromptError, Templates, builtin_dir

SAMPLE = {"question": "How many?", "exemplars": []}


def test_every_shipped_template_renders_with_every_shot_count():
    t = Templates()
    assert {"direct", "cot", "pal"} <= set(t.names())
    math = t.exemplars("math", 8)
    for name in t.names():
        variables = _sample_variables(t, name)
        for n in (0, 1, 3):
            variables["exemplars"] = variables["exemplars"][:n] if n else []
            text = t.render(name, **variables)
            assert "How many?" in text or "question" not in variables
    cot = t.render("cot", exemplars=math[:2], question="How many?")
    assert cot.count("Question:") == 3 and cot.endswith("Question: How many?\nAnswer:")
    assert t.render("cot", exemplars=[], question="Q").endswith("Let's think step by step.")
    assert t.render("pal", exemplars=math[:1], question="Q").endswith("```python")


def _sample_variables(t, name):
    """Variables for a template: the exemplar set it documents, plus any extra keys its tests need."""
    sets = {"react": "react"}
    exemplar_set = sets.get(name, "math")
    exemplars = t.exemplars(exemplar_set, t.count(exemplar_set))
    variables = {"question": "How many?", "exemplars": exemplars}
    extra = builtin_dir() / "templates" / f"{name}.vars.json"
    if extra.is_file():
        variables.update(json.loads(extra.read_text()))
    return variables


def test_missing_variable_names_template_and_variable():
    with pytest.raises(PromptError, match=r"template 'cot'.*'question' is undefined"):
        Templates().render("cot", exemplars=[])


def test_unknown_template_lists_the_available_ones():
    with pytest.raises(PromptError, match="template 'nope' not found.*available: .*cot"):
        Templates().render("nope")


def test_too_many_shots_is_a_clear_error():
    with pytest.raises(PromptError, match="has 8 exemplars but 9 shots"):
        Templates().exemplars("math", 9)


def test_user_directory_overrides_builtin_templates_and_exemplars(tmp_path):
    (tmp_path / "cot.jinja").write_text("MINE {{ question }} {{ exemplars|length }}")
    (tmp_path / "math.jsonl").write_text(json.dumps({"question": "q", "rationale": "r", "answer": "1"}) + "\n")
    t = Templates(tmp_path)
    assert t.render("cot", question="Q", exemplars=t.exemplars("math", 1)) == "MINE Q 1"
    assert "pal" in t.names()  # built-ins still there
    (tmp_path / "exemplars").mkdir()
    (tmp_path / "exemplars" / "mine.jsonl").write_text("")
    (tmp_path / "note.jinja").write_text("")
    assert t.exemplar_sets() == ["math", "mine", "react", "wiki"] and "note" in t.names() and "mine" not in t.names()


def test_bad_exemplar_line_names_file_and_line(tmp_path):
    (tmp_path / "math.jsonl").write_text('{"question": "a"}\n{broken\n')
    with pytest.raises(PromptError, match=r"math.jsonl:2: invalid JSON"):
        Templates(tmp_path).exemplars("math", 1)


def test_missing_user_directory_is_an_error(tmp_path):
    with pytest.raises(PromptError, match="does not exist"):
        Templates(tmp_path / "absent")


def test_shipped_exemplars_are_consistent():
    for ex in Templates().exemplars("math", 8):
        assert ex["rationale"].endswith(f"The answer is {ex['answer']}.")
        namespace = {}
        exec(ex["program"], namespace)
        assert abs(namespace["solution"]() - float(ex["answer"])) < 1e-9
