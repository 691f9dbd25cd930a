"""Custom tools: @tool / Tool from typed, documented functions; argument conversion; errors as observations."""

from typing import Literal

import pytest

from agentkit import Tool, tool
from agentkit.tools.base import ToolDefinitionError, ToolError, strip_quotes


@tool
def population(city: str) -> str:
    """Returns the population of a city from a small table.

    Args:
        city: the city's name, e.g. Paris
    """
    table = {"paris": "2.1 million", "rome": "2.8 million"}
    if city.lower() not in table:
        raise ToolError(f"No population for {city}.")
    return table[city.lower()]


@tool(name="Add", errors=(OverflowError,))
def add(a: int, b: float = 0.5) -> float:
    """Adds two numbers."""
    return a + b


def test_schema_comes_from_hints_and_docstring():
    assert isinstance(population, Tool)
    assert population.name == "population"
    assert population.description == "Returns the population of a city from a small table."
    (param,) = population.parameters
    assert (param.name, param.type, param.required) == ("city", "string", True)
    assert param.description == "the city's name, e.g. Paris"
    assert population.signature == "population[city]"
    assert population.describe() == "population[city]: Returns the population of a city from a small table."


def test_decorated_function_stays_callable():
    assert population("Rome") == "2.8 million"
    assert add(2, 3.0) == 5.0


def test_invoke_converts_the_argument_and_returns_text():
    assert population.invoke("Paris") == "2.1 million"
    assert population.invoke(' "paris" ') == "2.1 million"  # quotes and spaces dropped
    assert add.invoke("2, 3.5") == "5.5"
    assert add.invoke("2") == "2.5"  # the default fills the optional parameter
    assert [p.type for p in add.parameters] == ["integer", "number"]


def test_tool_error_becomes_the_observation():
    assert population.invoke("Atlantis") == "No population for Atlantis."


@pytest.mark.parametrize(
    "argument, message",
    [
        ("two, 3", "Add: a must be integer, got 'two'"),
        ("1, 2, 3", "Add expects 1 to 2 comma-separated values (a, b), got 3"),
        ("1.5", "Add: a must be integer, got '1.5'"),
    ],
)
def test_conversion_failures_are_observations(argument, message):
    assert add.invoke(argument) == message


def test_declared_errors_are_observations_and_others_propagate():
    @tool(errors=(ZeroDivisionError,))
    def ratio(a: int, b: int) -> float:
        """Divides a by b."""
        return a / b

    assert ratio.invoke("1, 0") == "ratio failed: ZeroDivisionError: division by zero"

    @tool
    def buggy(x: str) -> str:
        """Has a bug."""
        return x.no_such_method()

    with pytest.raises(AttributeError):  # a programmer error is not hidden
        buggy.invoke("x")


def test_more_types():
    @tool
    def pick(mode: Literal["fast", "slow"], verbose: bool, limit: int | None) -> str:
        """Shows the converted values."""
        return repr((mode, verbose, limit))

    assert pick.invoke("FAST, yes, none") == "('fast', True, None)"
    assert pick.invoke("slow, false, 1,000") == "pick expects 3 comma-separated values (mode, verbose, limit), got 4"
    assert pick.invoke("slow, false, 12") == "('slow', False, 12)"
    assert pick.invoke("medium, true, 1") == "pick: mode must be one of fast/slow, got 'medium'"
    assert pick.invoke("fast, maybe, 1") == "pick: verbose must be boolean, got 'maybe'"
    assert [p.type for p in pick.parameters] == ["one of fast/slow", "boolean", "integer or none"]


def test_zero_argument_tool():
    @tool
    def now() -> str:
        """Returns a fixed time."""
        return "12:00"

    assert now.signature == "now[]"
    assert now.invoke("") == "12:00"
    assert now.invoke("x") == "now takes no argument; write now[]"


def test_from_function_accepts_bound_methods_and_overrides():
    class Counter:
        def __init__(self):
            self.n = 0

        def bump(self, by: int) -> int:
            """Adds to the counter."""
            self.n += by
            return self.n

    c = Counter()
    t = Tool.from_function(c.bump, name="Bump", argument_hint="amount", description="Counts.")
    assert t.signature == "Bump[amount]" and t.description == "Counts."
    assert t.invoke("3") == "3" and t.invoke("4") == "7"


def test_none_result_is_an_empty_observation():
    @tool
    def nothing(x: str) -> None:
        """Returns nothing."""

    assert nothing.invoke("a") == ""


# ---------------------------------------------------------------- mistakes caught at definition time
def test_missing_docstring_is_an_error_naming_the_function():
    def undocumented(x: str) -> str:
        return x

    with pytest.raises(ToolDefinitionError, match="undocumented.*missing description"):
        tool(undocumented)


def test_missing_type_hint_is_an_error_naming_function_and_parameter():
    def untyped(x) -> str:
        """Has no hint."""
        return x

    with pytest.raises(ToolDefinitionError, match=r"untyped: parameter 'x' has no type hint"):
        tool(untyped)


def test_unsupported_annotation_is_an_error():
    def takes_dict(d: dict) -> str:
        """Takes a dict."""
        return ""

    with pytest.raises(ToolDefinitionError, match=r"takes_dict: parameter 'd' has unsupported type"):
        tool(takes_dict)


def test_varargs_and_bad_names_are_errors():
    def star(*xs: str) -> str:
        """Star args."""
        return ""

    with pytest.raises(ToolDefinitionError, match="star.*args"):
        tool(star)
    with pytest.raises(ToolDefinitionError, match="must be an identifier"):
        tool(name="Bad Name")(population.fn)


def test_args_only_docstring_has_no_description():
    def only_args(x: str) -> str:
        """Args:
        x: something
        """
        return x

    with pytest.raises(ToolDefinitionError, match="missing description"):
        tool(only_args)
    assert tool(description="Echoes x.")(only_args).description == "Echoes x."


@pytest.mark.parametrize(
    "text, expected",
    [('"a b"', "a b"), ("'x'", "x"), ("\u201cy\u201d", "y"), ("`z`", "z"), ('"unbalanced', '"unbalanced'), ("'", "'")],
)
def test_strip_quotes(text, expected):
    assert strip_quotes(text) == expected


# ---------------------------------------------------------------- JSON schemas and keyword arguments
def test_json_schema_comes_from_hints_docstring_and_defaults():
    assert population.json_schema == {
        "type": "object",
        "properties": {"city": {"type": "string", "description": "the city's name, e.g. Paris"}},
        "required": ["city"],
        "additionalProperties": False,
    }
    props = add.json_schema["properties"]
    assert props == {"a": {"type": "integer"}, "b": {"type": "number", "default": 0.5}}
    assert add.json_schema["required"] == ["a"]
    assert add.function() == {"name": "Add", "description": "Adds two numbers.", "parameters": add.json_schema}


def test_json_schema_of_literals_and_optionals():
    @tool
    def pick(mode: Literal["fast", "slow"], limit: int | None = None) -> str:
        """Picks."""
        return mode

    props = pick.json_schema["properties"]
    assert props["mode"] == {"enum": ["fast", "slow"], "type": "string"}
    assert props["limit"] == {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None}


def test_wikipedia_and_finish_tools_have_schemas():
    from agentkit.tools.wikipedia import OfflineCorpus, WikiSession, finish_tool

    search, lookup = WikiSession(OfflineCorpus.from_records({"Paris": "Paris is a city."})).tools()
    for t, param in ((search, "entity"), (lookup, "keyword"), (finish_tool(), "answer")):
        schema = t.json_schema
        assert schema["required"] == [param] and schema["properties"][param]["type"] == "string"
        assert schema["properties"][param]["description"]  # from the docstring's Args: section
    assert search.invoke({"entity": "Paris"}) == "Paris is a city."
    assert search.invoke("Paris") == "Paris is a city."  # the bracket form is unchanged


def test_keyword_arguments_are_validated_and_defaults_filled():
    assert add.invoke({"a": 2}) == "2.5"
    assert add.invoke({"a": 2, "b": 3}) == "5.0"  # b is a float
    assert population.invoke({"city": "Rome"}) == "2.8 million"
    assert population.invoke({"city": "Atlantis"}) == "No population for Atlantis."  # a ToolError, as before


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({}, "Add: a: Field required"),
        ({"a": "two"}, "Add: a: Input should be a valid integer, unable to parse string as an integer"),
        ({"a": 1, "c": 2}, "Add: c: Extra inputs are not permitted"),
        (["a", 1], "Add: the arguments must be a JSON object, got ['a', 1]"),
    ],
)
def test_bad_keyword_arguments_are_observations(arguments, message):
    assert add.invoke(arguments) == message


def test_a_tool_with_a_schema_of_its_own_is_checked_against_it():
    schema = {
        "type": "object",
        "properties": {"xs": {"type": "array", "items": {"type": "integer"}}},
        "required": ["xs"],
    }
    t = Tool(name="Total", description="Adds a list.", fn=lambda xs: sum(xs), input_schema=schema)
    assert t.json_schema is schema
    assert t.invoke({"xs": [1, 2, 3]}) == "6"
    assert t.invoke({"xs": [1, "a"]}) == "Total: xs.1: 'a' is not of type 'integer'"
    assert t.invoke({}) == "Total: 'xs' is a required property"


def test_a_line_break_among_several_values_is_an_observation():
    # csv refuses a carriage return in an unquoted field; that is the model's mistake, not a crash
    observation = add.invoke("1\r2, 3")
    assert observation.startswith("Add could not read its comma-separated values (new-line character seen")
    assert observation.endswith("write Add[a, b] on one line")


def test_tools_page_shows_what_the_code_does():
    import doctest
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "tools.md").read_text(encoding="utf-8")
    definition, *sessions = re.findall(r"```python\n(.*?)```", text, re.DOTALL)
    namespace: dict = {}
    exec(definition, namespace)
    examples = [block for block in sessions if block.startswith(">>>")]
    assert len(examples) == 2
    for block in examples:
        test = doctest.DocTestParser().get_doctest(block, namespace, "docs/tools.md", None, 0)
        runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
        runner.run(test)
        assert runner.failures == 0 and runner.tries > 0
