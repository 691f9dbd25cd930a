"""Tool calls over HTTP: ServerLLM against servers that do native tool calls and servers that do not (replayed
with respx), and ``agentkit serve`` answering tool calls in OpenAI's shapes over loopback (scripted models)."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
import respx
from streams import drain

from agentkit.errors import ServerError
from agentkit.llm import Chat, Message, ToolCall
from agentkit.serving import ServerLLM

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
    call = ToolCall(id="call_a1", name="weather", arguments={"city": "Paris"})
    chat = Chat(
        messages=(
            Message(role="user", content="Weather in Paris?"),
            Message(role="assistant", content="", tool_calls=(call,)),
            Message(role="tool", content="sunny", tool_call_id="call_a1", name="weather"),
        ),
        tools=(WEATHER,),
        tool_choice="auto",
    )
    [done] = llm().generate([chat])
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


def test_earlier_calls_and_results_are_written_into_the_prompted_messages(server):
    route = server.post(f"{URL}/chat/completions").mock(return_value=reply("Sunny in Paris."))
    call = ToolCall(id="call_0", name="weather", arguments={"city": "Paris"})
    chat = Chat(
        messages=(
            Message(role="user", content="Weather in Paris?"),
            Message(role="assistant", content="", tool_calls=(call,)),
            Message(role="tool", content="sunny", tool_call_id="call_0", name="weather"),
        ),
        tools=(WEATHER,),
    )
    [done] = llm(tool_calls="prompted").generate([chat])
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
        assert "unconstrained: the ollama dialect carries no call grammar" in caplog.text
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
