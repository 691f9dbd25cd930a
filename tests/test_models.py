"""agentkit.models.load_model: scripted files, their errors, and dispatch to the transformers engine."""

import json

import pytest
from streams import drain

import agentkit.engine
from agentkit.llm import GenerationConfig, ScriptedLLM, ScriptError
from agentkit.models import ModelSpecError, SlowScriptedLLM, load_model


def write(tmp_path, data, name="replies.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def test_scripted_list_serves_replies_in_order(tmp_path):
    path = write(tmp_path, ["first", "second"])
    llm = load_model(f"scripted:{path}")
    assert isinstance(llm, ScriptedLLM) and not isinstance(llm, SlowScriptedLLM)
    assert [c.text for c in llm.generate(["a", "b"])] == ["first", "second"]
    assert llm.name == "scripted:replies.json"


def test_scripted_object_answers_by_the_question_found_latest_in_the_prompt(tmp_path):
    path = write(tmp_path, {"apples": "about apples", "pears": ["pears 1", "pears 2"], "*": "fallback"})
    llm = load_model(f"scripted:{path}")
    # "apples" appears in an exemplar, "pears" in the real question at the end: pears wins.
    prompt = "Question: how many apples?\nAnswer: 3\n\nQuestion: how many pears?\nAnswer:"
    assert llm.generate([prompt])[0].text == "pears 1"
    assert llm.generate([prompt])[0].text == "pears 2"
    assert llm.generate([prompt])[0].text == "pears 2"  # the last reply of a list repeats
    assert llm.generate(["apples?"])[0].text == "about apples"
    assert llm.generate(["nothing known"])[0].text == "fallback"


def test_scripted_object_without_a_match_names_the_file(tmp_path):
    path = write(tmp_path, {"apples": "x"})
    llm = load_model(f"scripted:{path}")
    with pytest.raises(ScriptError, match="replies.json has no reply"):
        llm.generate(["pears"])


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "invalid JSON"),
        ("42", "expected a JSON list of replies"),
        ('["ok", 3]', "must be a string"),
        ('{"q": 3}', "must be a string or a list of strings"),
        ('{"q": []}', "must be a string or a list of strings"),
    ],
)
def test_invalid_scripted_files_are_one_line_errors_naming_the_file(tmp_path, content, message):
    path = write(tmp_path, content)
    with pytest.raises(ModelSpecError, match=message) as info:
        load_model(f"scripted:{path}")
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)


def test_missing_scripted_file_is_named(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(ModelSpecError, match=f"{missing} not found"):
        load_model(f"scripted:{missing}")
    with pytest.raises(ModelSpecError, match="needs a file"):
        load_model("scripted:")


def test_delay_option_makes_a_slow_streaming_model(tmp_path, monkeypatch):
    path = write(tmp_path, ["one two three"])
    llm = load_model(f"scripted:{path}?delay=0.5")
    assert isinstance(llm, SlowScriptedLLM) and llm.delay == 0.5
    sleeps = []
    monkeypatch.setattr("agentkit.models.time.sleep", sleeps.append)
    pieces, completion = drain(llm.stream("q", GenerationConfig(max_new_tokens=2)))
    assert "".join(pieces) == completion.text == "one two"
    assert sleeps == [0.5, 0.5]


@pytest.mark.parametrize(
    "option, message", [("delay=abc", "number of seconds"), ("delay=-1", ">= 0"), ("speed=2", "unknown option 'speed'")]
)
def test_bad_delay_options(tmp_path, option, message):
    path = write(tmp_path, ["x"])
    with pytest.raises(ModelSpecError, match=message):
        load_model(f"scripted:{path}?{option}")


class FakeTransformersLLM:
    def __init__(self, model=None, *, dtype="auto", device="auto"):
        self.args = (model, dtype, device)


@pytest.mark.parametrize(
    "spec, expected",
    [
        (None, None),
        ("default", None),
        ("DEFAULT", None),
        ("google/gemma-3-270m", "google/gemma-3-270m"),
        ("./models/tiny", "./models/tiny"),
        ("/data/model.Q4_K_M.gguf", "/data/model.Q4_K_M.gguf"),
    ],
)
def test_other_specs_go_to_the_transformers_engine(monkeypatch, spec, expected):
    monkeypatch.setattr(agentkit.engine, "TransformersLLM", FakeTransformersLLM, raising=False)
    llm = load_model(spec, dtype="float32", device="cpu")
    assert isinstance(llm, FakeTransformersLLM)
    assert llm.args == (expected, "float32", "cpu")


def test_importing_models_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, agentkit.models, agentkit.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
