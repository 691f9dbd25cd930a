"""Tool calls written as text: each family's format read (malformed calls as data), its constraint making a reply
conform, and lower / lift / generate around the scripted model with a chat template that renders tools."""

from __future__ import annotations

import json

import pytest

from agentkit import grammar
from agentkit.errors import UsageError
from agentkit.llm import Chat, GenerationConfig, Message, ScriptedLLM, ToolCall
from agentkit.runtime import Generate, run_episodes
from agentkit.toolcalls import FORMATS, call_format, generate, lift, lower

# A Hermes-style ChatML template that renders tools, calls and results as Qwen 2.5's does (shortened).
HERMES = r"""
{%- if tools %}
{{- '<|im_start|>system\n' }}
{%- if messages[0].role == 'system' %}{{- messages[0].content + '\n\n' }}{%- endif %}
{{- '# Tools\n<tools>' }}
{%- for tool in tools %}{{- '\n' + (tool | tojson) }}{%- endfor %}
{{- '\n</tools>\nCall a tool as <tool_call>\n{"name": ..., "arguments": ...}\n</tool_call><|im_end|>\n' }}
{%- elif messages[0].role == 'system' %}
{{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
{%- endif %}
{%- for message in messages %}
{%- if message.role == 'user' or (message.role == 'assistant' and not message.tool_calls) %}
{{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' }}
{%- elif message.role == 'assistant' %}
{{- '<|im_start|>assistant\n' + message.content }}
{%- for call in message.tool_calls %}
{{- '\n<tool_call>\n{"name": "' + call.function.name + '", "arguments": ' + (call.function.arguments | tojson) }}
{{- '}\n</tool_call>' }}
{%- endfor %}
{{- '<|im_end|>\n' }}
{%- elif message.role == 'tool' %}
{{- '<|im_start|>user\n<tool_response>\n' + message.content + '\n</tool_response><|im_end|>\n' }}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}
"""
# A ChatML template that knows nothing of tools (SmolLM2's kind): it gets the plain format.
CHATML = r"""
{%- for message in messages %}
{{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}
"""


def function(name: str, **properties: str) -> dict:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": f"The {name} tool.",
            "parameters": {
                "type": "object",
                "properties": {k: {"type": v} for k, v in properties.items()},
                "required": list(properties),
                "additionalProperties": False,
            },
        },
    }


SEARCH, ADD = function("Search", entity="string"), function("Add", a="integer", b="number")
CALLS = [
    ToolCall(id="call_0", name="Search", arguments={"entity": "Marie Curie"}),
    ToolCall(id="call_1", name="Add", arguments={"a": 2, "b": 0.5}),
]


def chat(**fields) -> Chat:
    return Chat(messages=(Message(role="user", content="Who?"),), tools=(SEARCH, ADD), **fields)


# ---------------------------------------------------------------------------------------------- reading each format
@pytest.mark.parametrize("name", list(FORMATS))
def test_each_format_reads_the_calls_it_writes_and_the_text_before_them(name):
    fmt = FORMATS[name]
    written = fmt.write(CALLS)
    parsed = fmt.parse(("I will look it up. " if fmt.opener else "") + written)
    assert parsed.calls == CALLS
    assert parsed.errors == []
    assert parsed.content == ("I will look it up." if fmt.opener else "")
    assert fmt.parse("Marie Curie won two Nobel prizes.").calls == []  # text is text


@pytest.mark.parametrize(
    ("text", "calls", "errors"),
    [
        ('{"name": "Search", "parameters": {"entity": "X"}}', ["Search"], 0),
        ('<|python_tag|>{"name": "Search", "arguments": {"entity": "X"}}; {"name": "Add", "parameters": {}}', 2, 0),
        ('{"name": "Search", "parameters": {"entity": "X"', [], 1),  # cut short
        ("<|python_tag|>", [], 1),
    ],
)
def test_llama3_json_calls_with_parameters_or_arguments_and_the_python_tag(text, calls, errors):
    parsed = FORMATS["llama3"].parse(text)
    assert len(parsed.calls) == (calls if isinstance(calls, int) else len(calls))
    assert len(parsed.errors) == errors


def test_mistral_reads_the_v11_form_too():
    parsed = FORMATS["mistral"].parse('[TOOL_CALLS]Search[ARGS]{"entity": "X"}[TOOL_CALLS]Add[ARGS]{"a": 1, "b": 2}')
    assert [(c.id, c.name, c.arguments) for c in parsed.calls] == [
        ("call_0", "Search", {"entity": "X"}),
        ("call_1", "Add", {"a": 1, "b": 2}),
    ]


def test_functiongemma_values_strings_between_escapes_and_others_as_json():
    text = (
        "<start_function_call>call:Plan{city:<escape>Paris, France<escape>,days:3,"
        "flags:[true,<escape>x<escape>],where:{lat:1.5}}<end_function_call>"
    )
    [call] = FORMATS["functiongemma"].parse(text).calls
    assert call.arguments == {"city": "Paris, France", "days": 3, "flags": [True, "x"], "where": {"lat": 1.5}}


@pytest.mark.parametrize(
    ("name", "text", "why"),
    [
        ("hermes", '<tool_call>\n{"name": "Search", "arguments": {"entity": "X"}\n</tool_call>', "not JSON"),
        ("hermes", '<tool_call>\n{"arguments": {}}\n</tool_call>', 'no "name"'),
        ("hermes", '<tool_call>\n{"name": "Search", "arguments": [1]}\n</tool_call>', "must be a JSON object"),
        ("hermes", '<tool_call>{"name": "A"}<tool_call>{"name": "B"}</tool_call>', "no </tool_call>"),
        ("mistral", '[TOOL_CALLS][{"name": "Search", "arguments": {"entity": "X"}', "not JSON"),
        ("functiongemma", "<start_function_call>call:Search{entity:Paris}<end_function_call>", "cannot read"),
        ("functiongemma", "<start_function_call>Search(entity='X')<end_function_call>", "expected call:NAME"),
    ],
)
def test_a_malformed_call_is_an_error_not_an_exception(name, text, why):
    parsed = FORMATS[name].parse("Thinking. " + text)
    assert parsed.content == "Thinking."
    assert parsed.errors and why in parsed.errors[-1]


def test_a_good_call_beside_a_bad_one_is_kept():
    text = '<tool_call>{"name": "Search", "arguments": {"entity": "X"}}</tool_call>\n<tool_call>{"name": </tool_call>'
    parsed = FORMATS["hermes"].parse(text)
    assert [c.name for c in parsed.calls] == ["Search"]
    assert len(parsed.errors) == 1 and parsed.errors[0].startswith("call 2:")


# ---------------------------------------------------------------------------------------------- choosing a format
@pytest.mark.parametrize(
    ("template", "name"),
    [
        (HERMES, "hermes"),
        (CHATML, "plain"),
        (None, "plain"),
        ("{{ '<|start_header_id|>' }}{% if tools %}<|python_tag|>{% endif %}", "llama3"),
        ("[AVAILABLE_TOOLS] {{ tools | tojson }}[/AVAILABLE_TOOLS]", "mistral"),
        ("<start_function_declaration>{{ tools }}", "functiongemma"),
    ],
)
def test_the_format_is_sniffed_from_the_chat_template(template, name):
    assert call_format(template).name == name


def test_a_format_by_name_or_alias_and_an_unknown_name():
    assert call_format(HERMES, "llama3_json").name == "llama3"
    assert call_format(None, "Qwen").name == "hermes"
    with pytest.raises(UsageError, match="unknown tool call format 'xml'.*hermes"):
        call_format(HERMES, "xml")


# ---------------------------------------------------------------------------------------------- the constraint
def viable(name: str, reply: str, **fields) -> str:
    """Where a model under ``name``'s constraint would have had to leave ``reply``."""
    constraint = FORMATS[name].constraint(chat(**fields))
    assert constraint is not None
    return grammar.longest_viable(constraint, reply)


@pytest.mark.parametrize("name", list(FORMATS))
def test_each_formats_constraint_accepts_its_calls(name):
    fmt = FORMATS[name]
    written = fmt.write(CALLS)
    for choice in ("auto", "required"):
        constraint = fmt.constraint(chat(tool_choice=choice))
        assert grammar.matches(constraint, written), (name, choice)
    if fmt.opener:  # auto: free text first
        assert grammar.matches(fmt.constraint(chat()), "Let me see. " + written)
    assert not grammar.matches(fmt.constraint(chat(parallel_tool_calls=False)), written)  # one call only
    assert grammar.matches(fmt.constraint(chat(parallel_tool_calls=False)), fmt.write(CALLS[:1]))
    assert not grammar.matches(fmt.constraint(chat(tool_choice="Add")), written)  # Search is not Add
    assert grammar.matches(fmt.constraint(chat(tool_choice="Add")), fmt.write(CALLS[1:]))
    assert fmt.constraint(chat(tool_choice="none")) is None


@pytest.mark.parametrize(
    ("reply", "kept"),
    [
        # a tool that is not there, an argument of the wrong type, a missing argument: cut where they go wrong
        ('<tool_call>\n{"name": "Lookup", "arguments": {}}\n</tool_call>', '<tool_call>\n{"name": "'),
        (
            '<tool_call>\n{"name": "Add", "arguments": {"a": "two", "b": 1}}',
            '<tool_call>\n{"name": "Add", "arguments": {"a": ',
        ),
        ('<tool_call>\n{"name": "Search", "arguments": {}}', '<tool_call>\n{"name": "Search", "arguments": {'),
    ],
)
def test_the_constraint_holds_a_call_to_the_tools_schema(reply, kept):
    assert viable("hermes", "Hmm. " + reply) == "Hmm. " + kept


def test_auto_lets_text_alone_through_and_required_does_not():
    assert viable("hermes", "Marie Curie.") == "Marie Curie."
    assert viable("llama3", "Marie Curie.") == "Marie Curie."
    assert viable("hermes", "Marie Curie.", tool_choice="required") == ""


def test_a_named_tool_that_is_not_there_is_a_usage_error():
    with pytest.raises(UsageError, match="tool_choice 'Finish' names no tool.*Search, Add"):
        FORMATS["hermes"].constraint(chat(tool_choice="Finish"))


# ---------------------------------------------------------------------------------------------- lower / lift
def test_lower_renders_the_tools_with_the_template_and_adds_the_constraint():
    llm = ScriptedLLM([], chat_template=HERMES)
    text, config = lower(llm, chat(), GenerationConfig(max_new_tokens=64))
    assert json.dumps(SEARCH) in text and text.endswith("<|im_start|>assistant\n")
    assert config.constraint is not None and config.constraint.after == "<tool_call>"
    assert config.max_new_tokens == 64
    assert lower(llm, chat(), GenerationConfig(), constrain=False)[1].constraint is None


def test_plain_describes_the_tools_and_writes_calls_and_results_as_text():
    llm = ScriptedLLM([], chat_template=CHATML)
    history = Chat(
        messages=(
            Message(role="system", content="Be brief."),
            Message(role="user", content="Who?"),
            Message(role="assistant", content="Looking.", tool_calls=tuple(CALLS)),
            Message(role="tool", content="Marie Curie was a physicist.", tool_call_id="call_0", name="Search"),
            Message(role="tool", content="2.5", tool_call_id="call_1", name="Add"),
        ),
        tools=(SEARCH, ADD),
    )
    text, _ = lower(llm, history, GenerationConfig())
    assert text.startswith("<|im_start|>system\nBe brief.\n\nYou can call these tools")
    assert '"name": "Search"' in text
    assert 'Looking.\n<tool_call>\n{"name": "Search", "arguments": {"entity": "Marie Curie"}}\n</tool_call>' in text
    results = "<tool_response>\nMarie Curie was a physicist.\n</tool_response>\n<tool_response>\n2.5\n</tool_response>"
    assert f"<|im_start|>user\n{results}<|im_end|>" in text  # the two results in one user turn


def test_lift_fills_the_calls_and_keeps_the_text_before_them():
    llm = ScriptedLLM([], chat_template=HERMES)
    reply = "Let me check. " + FORMATS["hermes"].write(CALLS)
    [completion] = ScriptedLLM([reply]).generate(["x"])
    lifted = lift(llm, chat(), completion)
    assert lifted.text == "Let me check."
    assert lifted.tool_calls == CALLS
    assert lift(llm, chat(tool_choice="none"), completion).tool_calls == []


def test_generate_constrains_and_reads_each_chat():
    replies = [
        'Searching. <tool_call>\n{"name": "Search", "arguments": {"entity": "Paris"}}\n</tool_call> and more',
        "Paris is the capital.",
        '<tool_call>\n{"name": "Add", "arguments": {"a": 1, "b": 2}}\n</tool_call>',
    ]
    llm = ScriptedLLM(replies, chat_template=HERMES)
    out = generate(llm, [chat(), chat(), chat(tool_choice="required")])
    assert [c.text for c in out] == ["Searching.", "Paris is the capital.", ""]
    assert [[(c.name, c.arguments) for c in o.tool_calls] for o in out] == [
        [("Search", {"entity": "Paris"})],
        [],
        [("Add", {"a": 1, "b": 2})],
    ]
    assert llm.constraints[2] is not None and llm.constraints[2].after is None  # required: a call at once


def test_the_runner_lowers_tool_chats_and_batches_them_with_text_prompts():
    llm = ScriptedLLM(
        lambda prompt: (
            '<tool_call>{"name": "Search", "arguments": {"entity": "X"}}</tool_call>'
            if "<tools>" in prompt
            else "plain"
        ),
        chat_template=HERMES,
    )

    def episode(prompt):
        completion = yield Generate(prompt, GenerationConfig())
        from agentkit.result import Result

        return Result(method="m", question="q", answer=str([c.name for c in completion.tool_calls]))

    results = run_episodes(llm, [episode(chat()), episode("text prompt"), episode(chat())], batch_size=8)
    assert [r.answer for r in results] == ["['Search']", "[]", "['Search']"]
    assert all(isinstance(p, str) for p in llm.prompts)  # the model saw text
