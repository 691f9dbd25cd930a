"""Tool calls over HTTP: ServerLLM against servers that do native tool calls and servers that do not (replayed
with respx), and ``agentkit serve`` answering tool calls in OpenAI's shapes over loopback (scripted models)."""

from __future__ import annotations

import json
import logging
import re

import httpx
import pytest
import respx
from streams import drain

from agentkit.errors import ServerError
from agentkit.llm import Chat, Message, ScriptedLLM, ToolCall
from agentkit.serving import ServerLLM
from agentkit.serving.app import running

URL = "http://gpu-1:8000/v1"
ROOT = "http://gpu-1:8000"
FAST = dict(backoff=0.01, max_backoff=0.05, timeout=5.0)
WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TIME = {
    "type": "function",
    "function": {"name": "time", "description": "The time now.", "parameters": {"type": "object", "properties": {}}},
}


def ask(text: str = "Weather in Paris and Rome?", **fields) -> Chat:
    return Chat(messages=(Message(role="user", content=text),), tools=(WEATHER, TIME), **fields)


def answered(call_id: str, **fields) -> Chat:
    """A chat in which the model called weather for Paris (call ``call_id``) and the tool said "sunny"."""
    call = ToolCall(id=call_id, name="weather", arguments={"city": "Paris"})
    messages = (
        Message(role="user", content="Weather in Paris?"),
        Message(role="assistant", content="", tool_calls=(call,)),
        Message(role="tool", content="sunny", tool_call_id=call_id, name="weather"),
    )
    return Chat(messages=messages, tools=(WEATHER,), **fields)


def body(call) -> dict:
    return json.loads(call.request.content)


def reply(content: str | None = "", calls: list | None = None, finish: str = "stop") -> httpx.Response:
    message: dict = {"role": "assistant", "content": content}
    if calls is not None:
        message["tool_calls"] = calls
    choice = {"index": 0, "message": message, "finish_reason": finish}
    return httpx.Response(200, json={"choices": [choice], "usage": {"prompt_tokens": 30, "completion_tokens": 12}})


def wire(ident: str, name: str, arguments: str) -> dict:
    return {"id": ident, "type": "function", "function": {"name": name, "arguments": arguments}}


def sse(*events) -> bytes:
    return ("".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n").encode()


def delta(finish: str | None = None, **fields) -> dict:
    return {"choices": [{"index": 0, "delta": fields, "finish_reason": finish}]}


@pytest.fixture
def server():
    with respx.mock(assert_all_called=False) as mock:
        mock.get(f"{URL}/models").mock(
            return_value=httpx.Response(200, json={"data": [{"id": "qwen", "owned_by": "vllm"}]})
        )
        mock.get(f"{ROOT}/version").mock(return_value=httpx.Response(200, json={"version": "0.11.0"}))
        yield mock


def llm(**options) -> ServerLLM:
    return ServerLLM(URL, **{**FAST, **options})


# -- ServerLLM against a server with native tool calls ----------------------------------------------------------


def test_tools_go_in_openais_fields_and_the_calls_come_back_parsed(server, caplog):
    route = server.post(f"{URL}/chat/completions").mock(
        return_value=reply(
            None,
            [wire("call_a1", "weather", '{"city": "Paris"}'), wire("call_b2", "weather", '{"city": "Rome"}')],
            finish="tool_calls",
        )
    )
    model = llm()
    with caplog.at_level(logging.INFO, logger="agentkit.serving.client"):
        [done] = model.generate([ask(tool_choice="weather", parallel_tool_calls=False)])
    sent = body(route.calls[0])
    assert sent["tools"] == [WEATHER, TIME] and sent["parallel_tool_calls"] is False
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "weather"}}
    assert done.tool_calls == [
        ToolCall(id="call_a1", name="weather", arguments={"city": "Paris"}),
        ToolCall(id="call_b2", name="weather", arguments={"city": "Rome"}),
    ]
    assert (done.text, done.finish_reason) == ("", "stop")  # the server's "tool_calls" reads as "stop"
    assert model.tool_mode == "native" and "native tool calls" in caplog.text


def test_a_conversation_with_calls_and_results_is_sent_in_openais_shapes(server):
    route = server.post(f"{URL}/chat/completions").mock(return_value=reply("It is sunny.", []))
    [done] = llm().generate([answered("call_a1", tool_choice="auto")])
    sent = body(route.calls[0])["messages"]
    assert sent[1]["tool_calls"] == [wire("call_a1", "weather", '{"city": "Paris"}')]
    assert sent[2] == {"role": "tool", "content": "sunny", "tool_call_id": "call_a1", "name": "weather"}
    assert body(route.calls[0])["tool_choice"] == "auto"
    assert (done.text, done.tool_calls) == ("It is sunny.", [])


def test_a_chat_without_tools_sends_no_tool_fields(server):
    route = server.post(f"{URL}/chat/completions").mock(return_value=reply("hi"))
    llm().generate([Chat(messages=(Message(role="user", content="hi"),))])
    assert not {"tools", "tool_choice", "parallel_tool_calls"} & set(body(route.calls[0]))


def test_streamed_tool_call_deltas_are_assembled_and_only_the_text_streams(server):
    events = [
        delta(role="assistant"),
        delta(content="Let me "),
        delta(content="check."),
        delta(tool_calls=[{"index": 0, "id": "call_x", "type": "function", "function": {"name": "weather"}}]),
        delta(tool_calls=[{"index": 0, "function": {"arguments": '{"ci'}}]),
        delta(tool_calls=[{"index": 1, "id": "call_y", "type": "function", "function": {"name": "time"}}]),
        delta(tool_calls=[{"index": 0, "function": {"arguments": 'ty": "Oslo"}'}}]),
        delta(tool_calls=[{"index": 1, "function": {"arguments": "{}"}}]),
        delta(finish="tool_calls"),
    ]
    route = server.post(f"{URL}/chat/completions").mock(return_value=httpx.Response(200, content=sse(*events)))
    pieces, done = drain(llm().stream(ask()))
    assert "".join(pieces) == done.text == "Let me check."
    assert done.tool_calls == [
        ToolCall(id="call_x", name="weather", arguments={"city": "Oslo"}),
        ToolCall(id="call_y", name="time", arguments={}),
    ]
    assert body(route.calls[0])["stream"] is True and body(route.calls[0])["tools"] == [WEATHER, TIME]


def test_arguments_that_are_not_a_json_object_are_a_malformed_call_recorded_not_a_crash(server):
    server.post(f"{URL}/chat/completions").mock(
        return_value=reply(
            "",
            [wire("c1", "weather", '{"city": "Par'), wire("c2", "weather", '["Rome"]'), wire("c3", "time", "")],
        )
    )
    [done] = llm().generate([ask()])
    assert done.tool_calls == [ToolCall(id="c3", name="time", arguments={})]
    assert [e.split(":")[0] for e in done.tool_call_errors] == ["call 1", "call 2"]
    assert "not a JSON object" in done.tool_call_errors[0] and "'[\"Rome\"]'" in done.tool_call_errors[1]


# -- ServerLLM against a server without native tool calls: the prompted fallback --------------------------------

HERMES_CALL = 'I will look.\n<tool_call>\n{"name": "weather", "arguments": {"city": "Paris"}}\n</tool_call>'
VLLM_REFUSAL = {
    "error": {
        "message": '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set',
        "type": "BadRequestError",
        "param": None,
        "code": 400,
    }
}


def prompted_reply(request: httpx.Request) -> httpx.Response:
    sent = json.loads(request.content)
    if "tools" in sent:
        return httpx.Response(400, json=VLLM_REFUSAL)
    return reply(HERMES_CALL)


def test_a_vllm_without_auto_tool_choice_gets_the_tools_in_the_prompt_with_the_call_grammar(server, caplog):
    route = server.post(f"{URL}/chat/completions").mock(side_effect=prompted_reply)
    model = llm()
    with caplog.at_level(logging.INFO, logger="agentkit.serving.client"):
        [done] = model.generate([ask()])
        [again] = model.generate([ask("Weather in Oslo?")])
    assert done.tool_calls == [ToolCall(id="call_0", name="weather", arguments={"city": "Paris"})]
    assert done.text == "I will look." and again.tool_calls == done.tool_calls
    assert [("tools" in body(c)) for c in route.calls] == [True, False, False]  # detected once
    prompted = body(route.calls[1])
    assert prompted["messages"][0]["role"] == "system" and '"name": "weather"' in prompted["messages"][0]["content"]
    assert "<tool_call>" in prompted["structured_outputs"]["grammar"]  # vLLM >= 0.10.2's field, free text first
    [line] = [r for r in caplog.records if "tool calls" in r.getMessage()]
    assert line.levelno == logging.WARNING and model.tool_mode == "prompted"
    assert 'no native tool calls (HTTP 400: "auto" tool choice requires --enable-auto-tool-choice' in line.getMessage()
    assert "constrained to the tools' schemas (vllm)" in line.getMessage()


def test_a_refusal_of_auto_after_native_required_calls_sends_every_later_chat_prompted(server):
    def vllm_without_a_parser(request: httpx.Request) -> httpx.Response:
        sent = json.loads(request.content)
        if "tools" not in sent:
            return reply(HERMES_CALL.split("\n", 1)[1])  # the call alone: what auto and required both allow
        if sent["tool_choice"] == "auto":
            return httpx.Response(400, json=VLLM_REFUSAL)
        return reply(None, [wire("c1", "weather", '{"city": "Rome"}')])  # a forced call, by guided decoding

    route = server.post(f"{URL}/chat/completions").mock(side_effect=vllm_without_a_parser)
    model = llm()
    [forced] = model.generate([ask(tool_choice="required")])
    assert forced.tool_calls[0].arguments == {"city": "Rome"} and model.tool_mode == "native"
    [auto] = model.generate([ask()])
    [later] = model.generate([ask(tool_choice="required")])
    assert auto.tool_calls[0].arguments == later.tool_calls[0].arguments == {"city": "Paris"}
    assert model.tool_mode == "prompted" and ["tools" in body(c) for c in route.calls] == [True, True, False, False]


def test_earlier_calls_and_results_are_written_into_the_prompted_messages(server):
    route = server.post(f"{URL}/chat/completions").mock(return_value=reply("Sunny in Paris."))
    [done] = llm(tool_calls="prompted").generate([answered("call_0")])
    sent = body(route.calls[0])["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert '"arguments": {"city": "Paris"}' in sent[2]["content"] and "tool_calls" not in sent[2]
    assert sent[3]["content"] == "<tool_response>\nsunny\n</tool_response>"
    assert (done.text, done.tool_calls) == ("Sunny in Paris.", [])


@pytest.mark.parametrize(
    "owner, status, refusal, how",
    [
        ("llamacpp", 500, {"error": {"code": 500, "message": "tools param requires --jinja flag"}}, "llama.cpp"),
        ("library", 400, {"error": {"message": "registry.ollama.ai/library/gemma3:1b does not support tools"}}, "none"),
        ("sglang", 500, {"message": "Internal server error: Unsupported tool_call_parser: None", "code": 500}, "none"),
    ],
)
def test_llama_cpp_without_jinja_and_an_ollama_model_without_tools_fall_back_at_once(
    server, caplog, owner, status, refusal, how
):
    server.get(f"{URL}/models").mock(return_value=httpx.Response(200, json={"data": [{"id": "m", "owned_by": owner}]}))
    route = server.post(f"{URL}/chat/completions").mock(
        side_effect=lambda r: (
            httpx.Response(status, json=refusal) if "tools" in json.loads(r.content) else reply(HERMES_CALL)
        )
    )
    with caplog.at_level(logging.WARNING, logger="agentkit.serving.client"):
        [done] = llm().generate([ask()])
    assert done.tool_calls[0].arguments == {"city": "Paris"} and len(route.calls) == 2  # a refusal, not retried
    prompted = body(route.calls[1])
    if how == "llama.cpp":
        assert prompted["grammar"].startswith("%llguidance")
    else:  # Ollama's dialect carries no grammar: the calls are read as written, malformed ones as data
        assert not {"grammar", "response_format", "structured_outputs"} & set(prompted)
        assert "unconstrained: the" in caplog.text and "dialect carries no call grammar" in caplog.text
    assert "retry" not in caplog.text.lower() and "try 1 of" not in caplog.text


def test_a_server_that_ignores_the_tools_is_caught_where_a_call_was_required(server):
    route = server.post(f"{URL}/chat/completions").mock(
        side_effect=lambda r: (
            reply("No tools here.") if "tools" in json.loads(r.content) else reply(HERMES_CALL.split("\n", 1)[1])
        )  # required: the call at once
    )
    model = llm()
    [done] = model.generate([ask(tool_choice="required")])
    assert done.tool_calls[0].name == "weather" and model.tool_mode == "prompted" and len(route.calls) == 2
    assert body(route.calls[1])["structured_outputs"]["grammar"].count("<tool_call>") >= 1


def test_calls_a_server_passed_on_as_text_are_read_and_the_server_is_known_not_to_parse_them(server):
    server.post(f"{URL}/chat/completions").mock(return_value=reply(HERMES_CALL))
    model = llm()
    [done] = model.generate([ask()])
    assert done.tool_calls == [ToolCall(id="call_0", name="weather", arguments={"city": "Paris"})]
    assert done.text == "I will look." and model.tool_mode == "prompted"


def test_a_plain_reply_to_auto_decides_nothing_and_other_refusals_are_errors(server):
    route = server.post(f"{URL}/chat/completions").mock(return_value=reply("Paris is sunny, I believe."))
    model = llm()
    [done] = model.generate([ask()])
    assert (done.text, done.tool_calls, model.tool_mode) == ("Paris is sunny, I believe.", [], None)
    route.mock(return_value=httpx.Response(400, json={"error": {"message": "messages: too long", "param": "messages"}}))
    with pytest.raises(ServerError, match="too long"):
        model.generate([ask()])
    assert model.tool_mode is None


def test_tool_calls_native_in_the_spec_never_falls_back(server):
    from agentkit.models import load_model

    server.post(f"{URL}/chat/completions").mock(return_value=httpx.Response(400, json=VLLM_REFUSAL))
    model = load_model(f"{URL}?tool_calls=native")
    with pytest.raises(ServerError, match="enable-auto-tool-choice"):
        model.generate([ask()])
    assert load_model(f"{URL}?tool_calls=prompted").tool_mode == "prompted"


def test_a_prompted_stream_shows_the_text_and_never_the_call(server):
    pieces_sent = [
        "I will",
        " look.\n<tool",
        '_call>\n{"name": "weather", ',
        '"arguments": {"city": "Paris"}}\n</tool_call>',
    ]
    events = [delta(content=p) for p in pieces_sent] + [delta(finish="stop")]
    server.post(f"{URL}/chat/completions").mock(
        side_effect=lambda r: (
            httpx.Response(400, json=VLLM_REFUSAL)
            if "tools" in json.loads(r.content)
            else httpx.Response(200, content=sse(*events))
        )
    )
    pieces, done = drain(llm().stream(ask()))
    assert "".join(pieces) == done.text == "I will look."
    assert all("<" not in p for p in pieces)
    assert done.tool_calls == [ToolCall(id="call_0", name="weather", arguments={"city": "Paris"})]


# -- agentkit serve answering tool calls (the exact OpenAI shapes, over loopback) -------------------------------

HERMES_TEMPLATE = (
    "{% if tools %}<tools>{% for t in tools %}{{ t.function.name }};{% endfor %}</tools>\n{% endif %}"
    "{% for m in messages %}<{{ m.role }}>{{ m.content }}"
    "{% for c in m.tool_calls or [] %}<tool_call>{{ c.function | tojson }}</tool_call>{% endfor %}"
    "</{{ m.role }}>\n{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"
)
CALL_PARIS = '<tool_call>{"name": "weather", "arguments": {"city": "Paris"}}</tool_call>'
CALL_TIME = '<tool_call>{"name": "time", "arguments": {}}</tool_call>'


def scripted(*replies: str) -> ScriptedLLM:
    return ScriptedLLM(list(replies), name="qwen-tools", chat_template=HERMES_TEMPLATE)


def chat_request(**fields) -> dict:
    return {"messages": [{"role": "user", "content": "Weather in Paris?"}], "tools": [WEATHER, TIME], **fields}


def test_serve_answers_with_openai_tool_calls_and_finish_reason_tool_calls():
    model = scripted("Let me check. " + CALL_PARIS)
    with running(model) as url:
        data = httpx.post(url + "/chat/completions", json=chat_request(), timeout=10).json()
    [choice] = data["choices"]
    [call] = choice["message"]["tool_calls"]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] == "Let me check."
    assert re.fullmatch(r"call_[0-9a-f]{24}", call["id"]) and call["type"] == "function"
    assert call["function"] == {"name": "weather", "arguments": '{"city": "Paris"}'}
    assert "<tools>weather;time;</tools>" in model.prompts[0]  # the template rendered the tools
    assert model.constraints[0].after == "<tool_call>"  # free text, then a call by the schemas


def test_required_and_a_named_function_constrain_the_call_from_the_first_token():
    model = scripted(CALL_TIME, CALL_TIME)
    with running(model) as url:
        required = httpx.post(url + "/chat/completions", json=chat_request(tool_choice="required"), timeout=10)
        named = httpx.post(
            url + "/chat/completions",
            json=chat_request(tool_choice={"type": "function", "function": {"name": "time"}}),
            timeout=10,
        )
    for response in (required, named):
        message = response.json()["choices"][0]["message"]
        assert message["content"] is None and message["tool_calls"][0]["function"]["name"] == "time"
    assert [c.after for c in model.constraints] == [None, None]
    assert '"weather"' in model.constraints[0].lark and '"weather"' not in model.constraints[1].lark


def test_parallel_calls_come_back_together_and_parallel_tool_calls_false_allows_one():
    model = scripted(CALL_PARIS + CALL_TIME, CALL_PARIS + CALL_TIME)
    with running(model) as url:
        both = httpx.post(url + "/chat/completions", json=chat_request(), timeout=10).json()
        one = httpx.post(url + "/chat/completions", json=chat_request(parallel_tool_calls=False), timeout=10).json()
    calls = both["choices"][0]["message"]["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["weather", "time"] and calls[0]["id"] != calls[1]["id"]
    assert [c["function"]["name"] for c in one["choices"][0]["message"]["tool_calls"]] == ["weather"]


def test_a_streamed_reply_sends_content_deltas_then_each_calls_id_and_name_then_its_arguments():
    model = scripted("Checking both. " + CALL_PARIS + CALL_TIME)
    with running(model) as url:
        with httpx.stream("POST", url + "/chat/completions", json=chat_request(stream=True), timeout=10) as response:
            events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    deltas = [json.loads(e)["choices"][0] for e in events[:-1]]
    content = "".join(d["delta"].get("content") or "" for d in deltas)
    calls = [c for d in deltas for c in d["delta"].get("tool_calls") or []]
    assert content == "Checking both." and "<tool_call>" not in content
    assert [(c["index"], "id" in c, c["function"].get("name")) for c in calls] == [
        (0, True, "weather"),
        (0, False, None),
        (1, True, "time"),
        (1, False, None),
    ]
    assert calls[1]["function"]["arguments"] == '{"city": "Paris"}' and calls[3]["function"]["arguments"] == "{}"
    first_call = next(i for i, d in enumerate(deltas) if d["delta"].get("tool_calls"))
    assert all(not d["delta"].get("content") for d in deltas[first_call:])  # the text came first
    assert deltas[-1]["finish_reason"] == "tool_calls"


def test_an_earlier_call_and_its_result_reach_the_template_and_none_leaves_the_reply_free():
    model = scripted("It is sunny in Paris.")
    history = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [wire("call_1", "weather", '{"city": "Paris"}')]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    with running(model) as url:
        data = httpx.post(
            url + "/chat/completions",
            json={"messages": history, "tools": [WEATHER], "tool_choice": "none"},
            timeout=10,
        ).json()
    assert '<assistant><tool_call>{"name": "weather", "arguments": {"city": "Paris"}}</tool_call>' in model.prompts[0]
    assert "<tool>sunny</tool>" in model.prompts[0] and model.constraints == [None]
    assert data["choices"][0]["message"] == {
        "role": "assistant",
        "content": "It is sunny in Paris.",
        "tool_calls": None,
    }
    assert data["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize(
    "path, payload, param, fragment",
    [
        (
            "/chat/completions",
            chat_request(tool_choice={"type": "function", "function": {"name": "stock"}}),
            "tool_choice",
            "no function named 'stock' (the tools are weather, time)",
        ),
        ("/chat/completions", chat_request(tools={"weather": WEATHER}), "tools", "valid list"),
        ("/chat/completions", chat_request(tools=[{"type": "retrieval"}]), "tools.0.type", "'function'"),
        ("/chat/completions", chat_request(tools=[WEATHER, WEATHER]), "tools", "given twice: weather"),
        ("/chat/completions", chat_request(tool_choice="sometimes"), "tool_choice", "auto"),
        (
            "/chat/completions",
            {"messages": [{"role": "user", "content": "x"}], "tool_choice": "required"},
            "tool_choice",
            "'required' needs tools",
        ),
        (
            "/chat/completions",
            chat_request(response_format={"type": "json_object"}),
            "response_format",
            "tools or a constraint, not both",
        ),
        ("/completions", {"prompt": "x", "tools": [WEATHER]}, "tools", "/v1/chat/completions only"),
        (
            "/chat/completions",
            {
                "messages": [
                    {"role": "user", "content": "x"},
                    {"role": "assistant", "content": None, "tool_calls": [wire("c", "weather", "[1]")]},
                    {"role": "tool", "tool_call_id": "c", "content": "?"},
                ],
                "tools": [WEATHER],
            },
            "messages.1.tool_calls.0.function.arguments",
            "not a JSON object",
        ),
    ],
)
def test_a_bad_tool_request_is_an_openai_error_naming_the_field(path, payload, param, fragment):
    with running(scripted()) as url:
        response = httpx.post(url + path, json=payload, timeout=10)
    error = response.json()["error"]
    assert response.status_code == 400 and error["param"] == param, error
    assert fragment in error["message"] and error["type"] == "invalid_request_error"


def test_server_llm_through_agentkit_serve_does_native_tool_calls_streamed_or_not(caplog):
    model = scripted("Looking. " + CALL_PARIS, "Looking. " + CALL_PARIS)
    with running(model) as url:
        client = ServerLLM(url)
        with caplog.at_level(logging.INFO, logger="agentkit.serving.client"):
            [done] = client.generate([ask()])
        pieces, streamed = drain(client.stream(ask()))
    assert client.tool_mode == "native" and "native tool calls" in caplog.text
    for completion in (done, streamed):
        assert completion.text == "Looking." and [c.name for c in completion.tool_calls] == ["weather"]
        assert completion.tool_calls[0].arguments == {"city": "Paris"} and completion.finish_reason == "stop"
    assert "".join(pieces) == "Looking."


# -- the tool agent through ServerLLM and agentkit serve ---------------------------------------------------------


@pytest.mark.parametrize("mode", [None, "prompted"])
def test_the_tool_agent_runs_through_server_llm_and_agentkit_serve_natively_or_prompted(mode):
    from agentkit.strategies.tools import ToolAgent
    from tests.test_tool_agent import CORPUS, call
    from tests.test_toolcalls import HERMES

    served = ScriptedLLM(
        ["Who built it? " + call("Search", entity="Zorblatt Tower"), call("Finish", answer="Ada Quill")],
        chat_template=HERMES,
    )
    with running(served) as url:
        model = ServerLLM(url, tool_calls=mode)
        result = ToolAgent(model, corpus=CORPUS)("Who built Zorblatt Tower?")
    assert result.answer == "Ada Quill" and result.failure is None
    assert [(s.action, s.status) for s in result.trajectory.steps] == [("Search", "ok"), ("Finish", "finish")]
    assert result.trajectory.steps[0].thought == "Who built it?"
    assert model.tool_mode == ("native" if mode is None else "prompted")
    assert '"name": "Search"' in served.prompts[0]  # the tools reached the model: the template's or the prompt's
    assert "<tool_response>\nZorblatt Tower is a tower in Fooville." in served.prompts[1]
    assert all(c is not None and c.after == "<tool_call>" for c in served.constraints)  # every call constrained


def test_agentkit_run_with_method_tools_on_a_server_leaves_the_calls_to_the_server():
    from click.testing import CliRunner

    from agentkit.cli import main
    from tests.test_tool_agent import call
    from tests.test_toolcalls import HERMES

    served = ScriptedLLM(
        [call("Search", entity="Zorblatt Tower"), call("Finish", answer="Ada Quill")], chat_template=HERMES
    )
    with running(served) as url:
        ran = CliRunner().invoke(main, ["run", "Who built Zorblatt Tower?", "--method", "tools", "--model", url])
    assert ran.exit_code == 0, ran.output
    assert "Answer: Ada Quill" in ran.output
    assert served.prompts[0].startswith("<|im_start|>system")  # the chat, rendered by the served template: not JSON


# -- the real engine behind agentkit serve: a tiny random-weights instruct model --------------------------------


def test_the_engine_behind_agentkit_serve_makes_calls_that_parse_and_fit_the_schema(tmp_path_factory):
    """Random weights would write anything; the call grammar leaves them only calls that parse and fit."""
    pytest.importorskip("transformers")
    from test_chat_format_engine import model_dir

    from agentkit.engine import TransformersLLM

    engine = TransformersLLM(str(model_dir.__wrapped__(tmp_path_factory)), dtype="float32", log=lambda _msg: None)
    city = {"type": "string", "enum": ["Paris", "Rome"]}  # bounded schemas: every path through them ends
    clock = {
        "type": "function",
        "function": {"name": "time", "parameters": {"type": "object", "additionalProperties": False}},
    }
    weather = {
        "type": "function",
        "function": {
            "name": "weather",
            "parameters": {
                "type": "object",
                "properties": {"city": city},
                "required": ["city"],
                "additionalProperties": False,
            },
        },
    }
    asked = {
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": [weather, clock],
        "parallel_tool_calls": False,
        "max_tokens": 200,
        "temperature": 0,
    }
    with running(engine) as url:
        required = httpx.post(url + "/chat/completions", json={**asked, "tool_choice": "required"}, timeout=600).json()
        named = {**asked, "tool_choice": {"type": "function", "function": {"name": "weather"}}, "stream": True}
        with httpx.stream("POST", url + "/chat/completions", json=named, timeout=600) as response:
            events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]
    [choice] = required["choices"]
    assert choice["finish_reason"] == "tool_calls", choice
    for call in choice["message"]["tool_calls"]:
        arguments = json.loads(call["function"]["arguments"])
        fitting = [{"city": "Paris"}, {"city": "Rome"}] if call["function"]["name"] == "weather" else [{}]
        assert arguments in fitting
    streamed = [c for e in events for ch in e["choices"] for c in ch["delta"].get("tool_calls") or []]
    assert streamed[0]["function"]["name"] == "weather" and events[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert json.loads(streamed[1]["function"]["arguments"])["city"] in ("Paris", "Rome")
