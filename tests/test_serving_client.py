"""ServerLLM at the transport: each way OpenAI-compatible servers differ or fail, replayed with respx."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time

import httpx
import pytest
import respx
from streams import drain

from agentkit import grammar
from agentkit.errors import ServerError, UsageError
from agentkit.llm import Chat, Constraint, GenerationConfig, Message
from agentkit.models import ModelSpecError, load_model
from agentkit.serving import ServerLLM, UnknownServedModel

URL = "http://gpu-1:8000/v1"
URL2 = "http://gpu-2:8000/v1"
FAST = dict(backoff=0.01, max_backoff=0.05, timeout=5.0)


def models(*names: str, owner: str = "vllm") -> httpx.Response:
    return httpx.Response(200, json={"object": "list", "data": [{"id": n, "owned_by": owner} for n in names]})


def completion(*texts: str, finish: str = "stop", usage: dict | None = None, order: list[int] | None = None):
    indices = order or list(range(len(texts)))
    choices = [{"index": i, "text": texts[i], "finish_reason": finish} for i in indices]
    usage = usage or {"prompt_tokens": 7, "completion_tokens": 3}
    return httpx.Response(200, json={"choices": choices, "usage": usage})


def body(call) -> dict:
    return json.loads(call.request.content)


@pytest.fixture
def server():
    with respx.mock(assert_all_called=False) as mock:
        mock.get(f"{URL}/models").mock(return_value=models("gemma"))
        yield mock


def llm(**options) -> ServerLLM:
    return ServerLLM(URL, **{**FAST, **options})


# -- stops and finish reasons -----------------------------------------------------------------------------------


def test_more_than_four_stops_sends_four_and_cuts_at_every_one_client_side(server):
    route = server.post(f"{URL}/completions").mock(return_value=completion("Thought: go\nObservation 5: made up"))
    stops = ["\nQuestion:", "Observation:", "\nThought 9", "zzz", "Observation 5:", "never"]
    [c] = llm().generate(["q"], GenerationConfig(stop=stops))
    assert body(route.calls[0])["stop"] == stops[:4]
    assert c.text == "Thought: go\n" and c.finish_reason == "stop"


def test_stop_text_echoed_back_by_the_server_is_cut(server):
    server.post(f"{URL}/completions").mock(return_value=completion("42.\nQuestion: what", finish="stop"))
    [c] = llm().generate(["q"], GenerationConfig(stop=["\nQuestion:"]))
    assert (c.text, c.finish_reason) == ("42.", "stop")


@pytest.mark.parametrize(
    "text, server_finish, expected",
    [
        ("a b c", "length", ("a b c", "length")),  # the token limit and no stop text
        ("a b\nQ", "length", ("a b", "stop")),  # the limit hit after a stop we cut client-side
        ("a b", "stop", ("a b", "stop")),  # the server's own end of sequence
        ("a b", None, ("a b", "stop")),
    ],
)
def test_finish_reason_is_what_ended_the_text_as_agentkit_sees_it(server, text, server_finish, expected):
    server.post(f"{URL}/completions").mock(return_value=completion(text, finish=server_finish))
    [c] = llm().generate(["q"], GenerationConfig(stop=["\nQ"]))
    assert (c.text, c.finish_reason) == expected


def test_agentkit_serve_gets_every_stop_string(server):
    server.get(f"{URL}/models").mock(return_value=models("gemma", owner="agentkit"))
    route = server.post(f"{URL}/completions").mock(return_value=completion("x"))
    stops = [f"s{i}" for i in range(7)]
    llm().generate(["q"], GenerationConfig(stop=stops))
    assert body(route.calls[0])["stop"] == stops


# -- sampling, n, prompt lists ----------------------------------------------------------------------------------


def test_sampling_settings_and_token_counts_reach_the_request_and_the_completion(server):
    route = server.post(f"{URL}/completions").mock(
        return_value=completion("x", usage={"prompt_tokens": 11, "completion_tokens": 2})
    )
    config = GenerationConfig(do_sample=True, temperature=0.7, top_p=0.9, top_k=40, seed=3, max_new_tokens=9)
    [c] = llm().generate(["q"], config)
    sent = body(route.calls[0])
    assert {k: sent[k] for k in ("model", "temperature", "top_p", "top_k", "seed", "max_tokens", "prompt")} == {
        "model": "gemma",
        "temperature": 0.7,
        "top_p": 0.9,
        "top_k": 40,
        "seed": 3,
        "max_tokens": 9,
        "prompt": "q",
    }
    assert (c.prompt_tokens, c.completion_tokens) == (11, 2)
    llm().generate(["q"], GenerationConfig())
    assert body(route.calls[1])["temperature"] == 0.0 and "seed" not in body(route.calls[1])


def sc_configs(k: int = 3, seed: int = 10) -> list[GenerationConfig]:
    base = GenerationConfig(do_sample=True, temperature=0.7, stop=["\n\n"])
    return [base.model_copy(update={"seed": seed + i}) for i in range(k)]


def run_session(model: ServerLLM, requests) -> dict:
    session = model.session(16)
    for key, prompt, config in requests:
        session.add(key, prompt, config)
    out = {}
    deadline = time.monotonic() + 10
    while session.pending and time.monotonic() < deadline:
        out.update(session.step())
    session.close()
    return out


def test_samples_of_one_prompt_share_a_request_with_n_and_choices_out_of_order_are_sorted(server):
    route = server.post(f"{URL}/completions").mock(
        return_value=completion("s0", "s1", "s2", order=[2, 0, 1], usage={"prompt_tokens": 5, "completion_tokens": 9})
    )
    out = run_session(llm(), [(i, "q", c) for i, c in enumerate(sc_configs())])
    assert len(route.calls) == 1
    sent = body(route.calls[0])
    assert (sent["n"], sent["seed"]) == (3, 10)
    assert [out[i].text for i in range(3)] == ["s0", "s1", "s2"]
    assert sum(out[i].completion_tokens for i in range(3)) == 9 and out[0].prompt_tokens == 5


def test_a_server_that_ignores_n_gets_the_missing_samples_as_seeded_requests(server):
    route = server.post(f"{URL}/completions").mock(side_effect=lambda r: completion(f"seed {body_of(r)['seed']}"))
    model = llm()
    out = run_session(model, [(i, "q", c) for i, c in enumerate(sc_configs())])
    assert [out[i].text for i in range(3)] == ["seed 10", "seed 11", "seed 12"]
    assert [body(c).get("n") for c in route.calls] == [3, None, None]
    assert model.accepts_n is False


def test_a_server_that_refuses_n_gets_one_request_per_sample(server):
    def reply(request):
        sent = body_of(request)
        if sent.get("n", 1) > 1:
            return httpx.Response(400, json={"error": {"message": "n > 1 is not supported"}})
        return completion(f"seed {sent['seed']}")

    server.post(f"{URL}/completions").mock(side_effect=reply)
    model = llm()
    out = run_session(model, [(i, "q", c) for i, c in enumerate(sc_configs())])
    assert [out[i].text for i in range(3)] == ["seed 10", "seed 11", "seed 12"] and model.accepts_n is False


def test_prompt_lists_refused_fall_back_to_one_request_per_prompt(server):
    def reply(request):
        sent = body_of(request)
        if isinstance(sent["prompt"], list):
            return httpx.Response(400, json={"detail": "prompt must be a string"})
        return completion(f"re: {sent['prompt']}")

    route = server.post(f"{URL}/completions").mock(side_effect=reply)
    model = llm()
    out = model.generate(["a", "b", "c"], GenerationConfig())
    assert [c.text for c in out] == ["re: a", "re: b", "re: c"]
    assert model.accepts_prompt_lists is False
    model.generate(["d", "e"], GenerationConfig())
    assert len(route.calls) == 1 + 3 + 2  # the list is not offered again


def test_prompt_lists_are_one_request_where_accepted(server):
    route = server.post(f"{URL}/completions").mock(
        return_value=completion("A", "B", order=[1, 0], usage={"prompt_tokens": 8, "completion_tokens": 4})
    )
    out = llm().generate(["a", "b"], GenerationConfig())
    assert [c.text for c in out] == ["A", "B"] and len(route.calls) == 1
    assert body(route.calls[0])["prompt"] == ["a", "b"]
    assert sum(c.completion_tokens for c in out) == 4 and all(c.prompt_tokens == 4 for c in out)


# -- chat prompts -----------------------------------------------------------------------------------------------


def test_chat_prompts_go_to_chat_completions_and_a_continued_turn_says_so(server):
    route = server.post(f"{URL}/chat/completions").mock(
        return_value=httpx.Response(
            200,
            json={
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": " Paris.\nUser: more"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 20, "completion_tokens": 4},
            },
        )
    )
    chat = Chat(
        messages=(
            Message(role="user", content="Capital of France?"),
            Message(role="assistant", content="The capital is"),
        )
    )
    [c] = llm().generate([chat], GenerationConfig(stop=["\nUser:"]))
    sent = body(route.calls[0])
    assert sent["messages"][-1] == {"role": "assistant", "content": "The capital is"}
    assert sent["continue_final_message"] is True and sent["add_generation_prompt"] is False
    assert (c.text, c.prompt_tokens) == (" Paris.", 20)
    assert json.loads(llm().render(chat))["messages"][0]["content"] == "Capital of France?"


def test_a_server_takes_chat_prompts_when_asked_and_text_by_default(server):
    from agentkit.prompting import resolve_prompt_format

    # the client cannot see the server's chat template: auto stays text, an explicit chat sends messages
    assert resolve_prompt_format("auto", llm()) == "text"
    assert resolve_prompt_format("chat", llm()) == "chat"


def test_a_chat_only_server_refuses_text_prompts_with_a_clear_error(server):
    server.post(f"{URL}/completions").mock(return_value=httpx.Response(404, json={"detail": "Not Found"}))
    with pytest.raises(ServerError, match=r"/v1/completions refused model gemma: HTTP 404.*chat-only"):
        llm().generate(["q"])


# -- faults -----------------------------------------------------------------------------------------------------


def test_429_is_retried_after_its_retry_after(server):
    route = server.post(f"{URL}/completions").mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "0.3"}, json={"error": {"message": "slow down"}}),
            completion("ok"),
        ]
    )
    start = time.monotonic()
    [c] = llm().generate(["q"])
    assert c.text == "ok" and len(route.calls) == 2 and time.monotonic() - start >= 0.25


def test_5xx_is_retried_with_backoff_then_gives_up_with_url_model_and_message(server):
    route = server.post(f"{URL}/completions").mock(
        return_value=httpx.Response(503, json={"error": {"message": "engine overloaded"}})
    )
    with pytest.raises(ServerError) as info:
        llm(retries=3).generate(["q"])
    message = str(info.value)
    assert len(route.calls) == 4 and "\n" not in message
    assert f"{URL}/completions" in message and "gemma" in message and "engine overloaded" in message
    assert "gave up after 4 attempts" in message


def test_each_retry_is_logged_as_it_happens_with_the_try_and_the_wait(server, caplog):
    server.post(f"{URL}/completions").mock(return_value=httpx.Response(503, json={"error": {"message": "down"}}))
    with caplog.at_level(logging.WARNING, logger="agentkit.serving.client"), pytest.raises(ServerError):
        llm(retries=2, backoff=0.2, max_backoff=0.4).generate(["q"])
    lines = [r.getMessage() for r in caplog.records if r.name == "agentkit.serving.client"]
    assert len(lines) == 2  # the third failure is the error itself
    for n, line in enumerate(lines, 1):
        assert line.startswith(f"{URL}/completions (model gemma): HTTP 503: down; try {n} of 3 failed, next try in ")
    assert float(lines[1].split("next try in ")[1].split()[0]) >= 0.3  # the backoff doubled


def test_a_retry_on_another_replica_says_which_replica_and_that_it_goes_now(server, caplog):
    server.get(f"{URL2}/models").mock(return_value=models("gemma"))
    server.post(f"{URL}/completions").mock(side_effect=httpx.ConnectError("connection refused"))
    server.post(f"{URL2}/completions").mock(return_value=completion("ok"))
    model = ServerLLM([URL, URL2], **FAST)
    with caplog.at_level(logging.WARNING, logger="agentkit.serving.client"):
        texts = [model.generate([f"q{i}"])[0].text for i in range(3)]
    assert texts == ["ok"] * 3
    lines = [r.getMessage() for r in caplog.records if r.name == "agentkit.serving.client"]
    assert lines and lines[0] == (
        f"{URL}/completions (replica 1 of 2) (model gemma): cannot connect (connection "
        f"refused); try 1 of 7 failed, next try now, on another replica"
    )


def test_the_command_line_shows_retries_on_stderr_as_they_happen(tmp_path):
    from click.testing import CliRunner

    from agentkit.cli import main

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    result = CliRunner().invoke(main, ["run", "What is 2 + 3?", "--model", f"{dead}?retries=2&model=m"])
    assert result.exit_code == 1
    shown = [line for line in result.output.splitlines() if "WARNING" in line]
    assert [line.split("; try ")[1].split(" failed")[0] for line in shown] == ["1 of 3", "2 of 3"]
    assert f"{dead}/models (model m): cannot connect" in shown[0]
    assert result.output.strip().splitlines()[-1].startswith("Error: ") and "gave up after 3 attempts" in result.output


def test_a_4xx_is_not_retried_and_carries_the_servers_message(server):
    route = server.post(f"{URL}/completions").mock(
        return_value=httpx.Response(
            400, json={"error": {"message": "max_tokens must be at most 2048\n(got 9999)", "type": "BadRequestError"}}
        )
    )
    with pytest.raises(
        ServerError,
        match=r"^http://gpu-1:8000/v1/completions refused model gemma: HTTP 400: "
        r"max_tokens must be at most 2048 \(got 9999\)$",
    ):
        llm().generate(["q"], GenerationConfig(max_new_tokens=9999))
    assert len(route.calls) == 1


def test_a_timeout_is_retried_and_a_dead_server_ends_in_an_error_not_a_hang(server):
    route = server.post(f"{URL}/completions").mock(side_effect=[httpx.ReadTimeout("read timed out"), completion("ok")])
    assert llm().generate(["q"])[0].text == "ok" and len(route.calls) == 2
    route.mock(side_effect=httpx.ReadTimeout("read timed out"))
    with pytest.raises(ServerError, match="timed out.*gave up after 3 attempts"):
        llm(retries=2).generate(["q"])


def test_a_real_read_timeout_fires_on_a_server_that_does_not_answer():
    server = slow_server(delay=2.0)  # a real socket: respx does not enforce httpx's timeouts
    try:
        model = ServerLLM(server.url, timeout=0.3, retries=1, backoff=0.01, max_backoff=0.02)
        start = time.monotonic()
        with pytest.raises(ServerError, match="timed out"):
            model.generate(["q"])
        assert time.monotonic() - start < 1.9
    finally:
        server.close()


# -- streaming --------------------------------------------------------------------------------------------------


def sse(*events, done: bool = True) -> bytes:
    lines = [f"data: {json.dumps(e)}\n\n" for e in events]
    return ("".join(lines) + ("data: [DONE]\n\n" if done else "")).encode()


def chunk(text: str, finish: str | None = None) -> dict:
    return {"choices": [{"index": 0, "text": text, "finish_reason": finish}]}


def test_stream_holds_back_a_partial_stop_and_returns_the_completion(server):
    events = [chunk("The answer"), chunk(" is 4.\nQu"), chunk("estion: next"), chunk(" more", "length")]
    route = server.post(f"{URL}/completions").mock(
        return_value=httpx.Response(200, content=sse(*events), headers={"content-type": "text/event-stream"})
    )
    pieces, final = drain(llm().stream("q", GenerationConfig(stop=["\nQuestion:"])))
    assert "".join(pieces) == final.text == "The answer is 4."
    assert all("\n" not in p for p in pieces) and final.finish_reason == "stop"
    assert body(route.calls[0])["stream"] is True


def test_stream_usage_and_length(server):
    usage = {"prompt_tokens": 9, "completion_tokens": 3}
    events = [chunk("a b"), chunk(" c", "length"), {"choices": [], "usage": usage}]
    server.post(f"{URL}/completions").mock(return_value=httpx.Response(200, content=sse(*events)))
    pieces, final = drain(llm().stream("q", GenerationConfig(max_new_tokens=3)))
    assert (final.text, final.finish_reason, final.prompt_tokens, final.completion_tokens) == ("a b c", "length", 9, 3)


def test_an_sse_stream_cut_mid_way_is_an_error_not_a_truncated_answer(server):
    server.post(f"{URL}/completions").mock(
        return_value=httpx.Response(200, content=sse(chunk("The answer"), chunk(" is"), done=False))
    )
    gen = llm().stream("q")
    assert next(gen) == "The answer"
    with pytest.raises(ServerError, match="stream cut mid-way"):
        drain(gen)


def test_a_stream_that_fails_before_its_first_event_is_retried(server):
    server.post(f"{URL}/completions").mock(
        side_effect=[
            httpx.ConnectError("connection refused"),
            httpx.Response(200, content=sse(chunk("ok", "stop"))),
        ]
    )
    assert drain(llm().stream("q"))[1].text == "ok"


# -- models and specs -------------------------------------------------------------------------------------------


def test_a_wrong_model_name_lists_the_served_models(server):
    server.get(f"{URL}/models").mock(return_value=models("gemma", "qwen"))
    with pytest.raises(UnknownServedModel, match=r"model 'llama' is not served at .*it serves: gemma, qwen"):
        load_model(f"{URL}?model=llama")
    with pytest.raises(UnknownServedModel, match="serves several models.*name one with"):
        load_model(URL)
    assert load_model(f"{URL}?model=qwen").name == "qwen"


def test_spec_options_and_api_key_from_the_environment(server, monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-secret")
    model = load_model(f"{URL},{URL2}?timeout=12&concurrency=3&retries=1&api_key_env=MY_KEY")
    assert (model.urls, model.timeout, model.max_concurrency, model.retries) == ([URL, URL2], 12.0, 3, 1)
    assert server.calls[0].request.headers["authorization"] == "Bearer sk-secret"
    monkeypatch.setenv("AGENTKIT_API_KEY", "sk-default")
    load_model(URL)
    assert server.calls[-1].request.headers["authorization"] == "Bearer sk-default"


@pytest.mark.parametrize(
    "spec, message",
    [
        (f"{URL}?modle=x", "unknown option 'modle'"),
        (f"{URL}?timeout=soon", "timeout must be a float"),
        (f"{URL}?model=a,{URL2}", "put the options once, after the last URL"),
        ("http://", "is not a server base URL"),
        (f"{URL}?api_key_env=NO_SUCH_VARIABLE_X", "NO_SUCH_VARIABLE_X"),
    ],
)
def test_bad_server_specs_are_one_line_errors(spec, message):
    with pytest.raises(ModelSpecError, match=message):
        load_model(spec)


def test_an_unreachable_server_is_a_server_error_naming_it():
    with respx.mock() as mock:
        mock.get(f"{URL}/models").mock(side_effect=httpx.ConnectError("connection refused"))
        with pytest.raises(ServerError, match=r"http://gpu-1:8000/v1/models .*cannot connect"):
            ServerLLM(URL, **FAST)
    assert issubclass(UnknownServedModel, UsageError)


# -- replicas and concurrency -----------------------------------------------------------------------------------


def test_requests_spread_over_replicas_and_a_dead_one_is_taken_out(server):
    server.get(f"{URL2}/models").mock(return_value=models("gemma"))
    dead = server.post(f"{URL}/completions").mock(side_effect=httpx.ConnectError("connection refused"))
    alive = server.post(f"{URL2}/completions").mock(side_effect=lambda r: completion("ok " + body_of(r)["prompt"]))
    model = ServerLLM([URL, URL2], backoff=5.0, max_backoff=5.0, timeout=5.0)
    out = run_session(model, [(i, f"q{i}", GenerationConfig()) for i in range(20)])
    assert [out[i].text for i in range(20)] == [f"ok q{i}" for i in range(20)]
    assert 1 <= len(dead.calls) <= 16  # tried until taken out, then left alone during its backoff
    assert len(alive.calls) == 20
    assert model.replicas[0].down_until > time.monotonic()


def test_least_in_flight_spreads_concurrent_requests_evenly(server):
    server.get(f"{URL2}/models").mock(return_value=models("gemma"))
    seen = {URL: 0, URL2: 0}
    lock = threading.Lock()
    # No request is answered before all 16 are in flight, so the choice never depends on how fast a loaded
    # machine schedules the threads: least-in-flight must alternate.
    all_in_flight = threading.Barrier(16, timeout=5)

    def held(request):
        with lock:
            seen[str(request.url).rsplit("/", 1)[0]] += 1
        all_in_flight.wait()
        return completion("x")

    server.post(f"{URL}/completions").mock(side_effect=held)
    server.post(f"{URL2}/completions").mock(side_effect=held)
    out = run_session(ServerLLM([URL, URL2], **FAST), [(i, f"q{i}", GenerationConfig()) for i in range(16)])
    assert len(out) == 16
    assert seen == {URL: 8, URL2: 8}


def test_a_session_keeps_up_to_its_batch_size_in_flight(server):
    active, peak = [0], [0]
    lock = threading.Lock()
    six_in_flight = threading.Barrier(6, timeout=5)  # reached however slowly a loaded machine starts threads

    def slow(request):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        six_in_flight.wait()
        time.sleep(0.05)  # a seventh request, if the cap let one through, would arrive now
        with lock:
            active[0] -= 1
        return completion("x")

    server.post(f"{URL}/completions").mock(side_effect=slow)
    model = llm(max_concurrency=6)
    session = model.session(32)
    assert session.max_batch_size == 6
    for i in range(12):
        session.add(i, f"q{i}", GenerationConfig())
    done = []
    while session.pending:
        done += session.step()
    session.close()
    assert len(done) == 12 and peak[0] == 6


def body_of(request: httpx.Request) -> dict:
    return json.loads(request.content)


class _LoopbackServer:
    """A loopback HTTP server that lists one model and answers each completion request with ``answer(handler,
    body)``: the JSON reply, or None where ``answer`` dealt with the connection itself."""

    def __init__(self, answer, model: str = "slow", owner: str = "test"):
        import http.server
        import socketserver

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self._reply({"data": [{"id": model, "owned_by": owner}]})

            def do_POST(self):
                data = answer(self, json.loads(self.rfile.read(int(self.headers["content-length"]))))
                try:
                    if data is not None:
                        self._reply(data)
                except OSError:
                    pass

            def _reply(self, data):
                payload = json.dumps(data).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def slow_server(delay: float) -> _LoopbackServer:
    """Answers completions only after ``delay`` seconds."""

    def late(handler, sent):
        time.sleep(delay)
        return {"choices": [{"index": 0, "text": "late", "finish_reason": "stop"}]}

    return _LoopbackServer(late)


# -- constraints: each server's dialect -------------------------------------------------------------------------

ROOT = "http://gpu-1:8000"
DIGITS = Constraint(regex="[0-9]+")
OBJECT = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
AB = Constraint(lark='start: "ab"')
AFTER = Constraint(regex="[0-9]+", after="A:")


def probes(mock, **answers) -> dict:
    """Routes for the dialect probes; ``answers`` maps a probe (props, api_version, version) to its JSON."""
    paths = {"props": "/props", "api_version": "/api/version", "version": "/version"}
    return {
        name: mock.get(ROOT + path).mock(
            return_value=httpx.Response(200, json=answers[name])
            if name in answers
            else httpx.Response(404, json={"detail": "Not Found"})
        )
        for name, path in paths.items()
    }


@pytest.mark.parametrize(
    "owner, answers, dialect",
    [
        ("agentkit", {}, "agentkit"),
        ("vllm", {"version": {"version": "0.11.1"}}, "vllm"),
        ("vllm", {"version": {"version": "0.10.1.1"}}, "vllm-guided"),
        ("sglang", {}, "sglang"),
        ("llamacpp", {}, "llama.cpp"),
        ("library", {}, "ollama"),
        ("owner", {"props": {"default_generation_settings": {}}}, "llama.cpp"),
        ("owner", {"api_version": {"version": "0.12.3"}}, "ollama"),
        ("owner", {"version": {"version": "0.10.2"}}, "vllm"),
        ("owner", {}, "openai"),
    ],
)
def test_the_dialect_is_detected_once_at_the_first_constrained_request(server, owner, answers, dialect):
    server.get(f"{URL}/models").mock(return_value=models("gemma", owner=owner))
    routes = probes(server, **answers)
    server.post(f"{URL}/completions").mock(return_value=completion("42"))
    server.post(f"{URL}/chat/completions").mock(return_value=chat_reply('{"a": 1}'))
    model = llm()
    model.generate(["q"], GenerationConfig())
    assert not any(route.called for route in routes.values())  # an unconstrained run probes nothing
    schema = GenerationConfig(constraint=Constraint(json_schema=OBJECT))  # every dialect takes it on chat
    model.generate([chat()], schema)
    calls = sum(route.call_count for route in routes.values())
    model.generate([chat()], schema)
    assert model.dialect == dialect and sum(route.call_count for route in routes.values()) == calls <= 3


def chat(text: str = "q") -> Chat:
    return Chat(messages=(Message(role="user", content=text),))


def chat_reply(text: str) -> httpx.Response:
    return httpx.Response(200, json={"choices": [{"index": 0, "message": {"content": text}, "finish_reason": "stop"}]})


@pytest.mark.parametrize(
    "dialect, constraint, fields",
    [
        ("agentkit", AFTER, {"constraint": {"regex": "[0-9]+", "after": "A:"}}),
        ("vllm", DIGITS, {"structured_outputs": {"regex": "[0-9]+"}}),
        ("vllm", Constraint(json_schema=OBJECT), {"structured_outputs": {"json": OBJECT}}),
        ("vllm", AB, {"structured_outputs": {"grammar": AB.lark}}),
        ("vllm", AFTER, {"structured_outputs": {"grammar": grammar.as_lark(AFTER)}}),
        ("vllm-guided", DIGITS, {"guided_regex": "[0-9]+"}),
        ("vllm-guided", Constraint(json_schema=OBJECT), {"guided_json": OBJECT}),
        ("vllm-guided", AFTER, {"guided_grammar": grammar.as_lark(AFTER)}),
        ("sglang", DIGITS, {"regex": "[0-9]+"}),
        ("sglang", Constraint(json_schema=OBJECT), {"json_schema": json.dumps(OBJECT)}),
        ("llama.cpp", Constraint(json_schema=OBJECT), {"json_schema": OBJECT}),
        ("llama.cpp", DIGITS, {"grammar": "%llguidance {}\n" + grammar.as_lark(DIGITS)}),
        ("llama.cpp", AFTER, {"grammar": "%llguidance {}\n" + grammar.as_lark(AFTER)}),
    ],
)
def test_a_constraint_goes_in_the_servers_own_fields(server, dialect, constraint, fields):
    text = '{"a": 1}' if constraint.json_schema else "ab" if constraint.lark else "A:42" if constraint.after else "42"
    route = server.post(f"{URL}/completions").mock(return_value=completion(text))
    [done] = llm(dialect=dialect).generate(["q"], GenerationConfig(constraint=constraint))
    sent = body(route.calls[0])
    assert {k: sent[k] for k in fields} == fields and "constraint" not in set(sent) - set(fields)
    assert grammar.matches(constraint, done.text)


@pytest.mark.parametrize("dialect", ["ollama", "openai"])
def test_ollama_and_openai_take_a_json_schema_in_response_format_on_chat(server, dialect):
    route = server.post(f"{URL}/chat/completions").mock(return_value=chat_reply('{"a": 7}'))
    [done] = llm(dialect=dialect).generate([chat()], GenerationConfig(constraint=Constraint(json_schema=OBJECT)))
    assert body(route.calls[0])["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "agentkit", "schema": OBJECT, "strict": True},
    }
    assert done.text == '{"a": 7}'


@pytest.mark.parametrize(
    "dialect, constraint, prompt, why",
    [
        ("sglang", AB, "q", "SGLang takes a regex or a JSON schema"),
        ("sglang", AFTER, "q", r"with a free prefix \(after='A:'\): SGLang"),
        ("ollama", DIGITS, chat(), "Ollama takes a JSON schema"),
        ("ollama", Constraint(json_schema=OBJECT), "q", "on chat prompts only"),
        ("openai", Constraint(json_schema=OBJECT, after="A:"), chat(), "the OpenAI API takes a JSON schema"),
    ],
)
def test_a_kind_the_dialect_cannot_carry_is_one_line_naming_url_model_and_kind_and_nothing_is_sent(
    server, dialect, constraint, prompt, why
):
    route = server.post(url__regex=rf"{URL}/.*").mock(return_value=completion("x"))
    with pytest.raises(
        UsageError,
        match=rf"server {URL} model gemma \({dialect}\) cannot take a {constraint.kind} "
        rf"constraint.*{why}.*; drop the constraint",
    ) as refusal:
        llm(dialect=dialect).generate([prompt], GenerationConfig(constraint=constraint))
    assert "\n" not in str(refusal.value) and not route.called


def test_a_server_that_ignores_the_constraint_is_caught_not_handed_on(server):
    server.post(f"{URL}/completions").mock(return_value=completion("The answer is 42."))
    model = llm(dialect="vllm-guided")  # e.g. a vLLM >= 0.12 that dropped guided_* and ignores it
    with pytest.raises(ServerError, match=r"\(vllm-guided\) returned text that does not match its regex constraint"):
        model.generate(["q"], GenerationConfig(constraint=DIGITS))
    server.post(f"{URL}/completions").mock(return_value=completion("The answer", finish="length"))
    model.generate(["q"], GenerationConfig(constraint=Constraint(regex="The answer is [0-9]+")))  # cut: fine
    server.post(f"{URL}/completions").mock(return_value=completion("12\n"))
    model.generate(["q"], GenerationConfig(constraint=DIGITS))  # trailing whitespace a server's grammar allowed


def test_a_server_refusing_the_constraint_is_a_usage_error_in_a_response_or_a_stream(server):
    refusal = {"error": {"message": "model m cannot honour a regex constraint", "param": "constraint", "code": 400}}
    server.post(f"{URL}/completions").mock(return_value=httpx.Response(400, json=refusal))
    with pytest.raises(UsageError, match="HTTP 400: model m cannot honour a regex constraint"):
        llm(dialect="agentkit").generate(["q"], GenerationConfig(constraint=DIGITS))
    server.post(f"{URL}/completions").mock(return_value=httpx.Response(200, content=sse(refusal)))
    model = llm(dialect="agentkit")
    sent = len(server.calls)
    with pytest.raises(UsageError, match="HTTP 400: error event: model m cannot honour"):
        drain(model.stream("q", GenerationConfig(constraint=DIGITS)))
    assert len(server.calls) == sent + 1  # a refusal is not retried


def test_the_dialect_set_in_the_spec_and_an_unknown_one(server):
    assert load_model(f"{URL}?dialect=llama.cpp").dialect == "llama.cpp"
    with pytest.raises(UsageError, match="unknown dialect 'tgi'; dialects are agentkit, vllm"):
        load_model(f"{URL}?dialect=tgi")


# -- seeds: vLLM's CPU backend dies on seeded samples -----------------------------------------------------------

SEEDED = GenerationConfig(do_sample=True, temperature=0.7, seed=0)
ENGINE_DEAD = "EngineCore encountered an issue. See stack trace (above) for the root cause."


def test_seed_off_sends_samples_without_a_seed_and_greedy_requests_as_before(server):
    route = server.post(f"{URL}/completions").mock(side_effect=lambda r: completion(*["s"] * body_of(r).get("n", 1)))
    model = load_model(f"{URL}?seed=off")
    assert model.send_seeds is False and load_model(URL).send_seeds is True
    out = run_session(model, [(i, "q", c) for i, c in enumerate(sc_configs())])
    assert len(out) == 3 and (body(route.calls[0])["n"], "seed" in body(route.calls[0])) == (3, False)
    model.generate(["q"], SEEDED)
    model.generate(["q"])
    assert "seed" not in body(route.calls[1]) and body(route.calls[2])["temperature"] == 0.0
    with pytest.raises(ModelSpecError, match="seed must be on or off"):
        load_model(f"{URL}?seed=maybe")


def test_samples_sent_without_seeds_are_not_cached(server, tmp_path):
    from agentkit.cache import CallCache

    server.post(f"{URL}/completions").mock(return_value=completion("x"))
    cache = CallCache(tmp_path)
    assert cache.key(load_model(f"{URL}?seed=off"), "q", SEEDED) is None
    assert cache.key(load_model(f"{URL}?seed=off"), "q", GenerationConfig()) is not None  # greedy: as before
    assert cache.key(load_model(URL), "q", SEEDED) is not None


@pytest.mark.parametrize(
    "owner, failure",
    [
        ("vllm", httpx.Response(500, json={"error": {"message": ENGINE_DEAD, "type": "InternalServerError"}})),
        ("test", httpx.Response(500, text="RuntimeError: CPU Generator does not use offset")),  # any server's text
        ("vllm", httpx.RemoteProtocolError("Server disconnected without sending a response.")),
    ],
)
def test_a_server_that_dies_on_a_seeded_sample_is_one_line_with_the_workaround_not_retries(server, owner, failure):
    from agentkit.errors import ServerSeedCrash

    server.get(f"{URL}/models").mock(side_effect=[models("gemma", owner=owner), httpx.ConnectError("refused")])
    kind = "side_effect" if isinstance(failure, Exception) else "return_value"
    route = server.post(f"{URL}/completions").mock(**{kind: failure})
    model = llm()
    with pytest.raises(ServerSeedCrash) as info:
        model.generate(["q"], SEEDED)
    message = str(info.value)
    assert len(route.calls) == 1 and "\n" not in message  # a retry would kill the next replica too
    assert message.startswith(f"{URL}/completions (model gemma): the server ") and "seeded sampled request" in message
    assert "add ?seed=off to the model spec" in message and "cannot be reproduced" in message


def test_a_seeded_sample_retries_as_before_where_the_server_lives_on_or_is_not_vllm(server):
    failure = httpx.RemoteProtocolError("Server disconnected without sending a response.")
    route = server.post(f"{URL}/completions").mock(side_effect=[failure, completion("ok")])
    assert llm().generate(["q"], SEEDED)[0].text == "ok"  # vLLM still answers /models: a passing fault
    server.get(f"{URL}/models").mock(side_effect=[models("gemma", owner="sglang"), httpx.ConnectError("refused")])
    route.mock(side_effect=[failure, completion("ok")])
    assert llm().generate(["q"], SEEDED)[0].text == "ok"
    server.get(f"{URL}/models").mock(return_value=models("gemma"))
    route.mock(return_value=httpx.Response(500, json={"error": {"message": ENGINE_DEAD}}))
    with pytest.raises(ServerError, match="gave up after 2 attempts"):
        llm(retries=1).generate(["q"])  # greedy: an ordinary 5xx


def test_a_stream_that_kills_the_server_on_its_seed_says_so_too(server):
    from agentkit.errors import ServerSeedCrash

    server.post(f"{URL}/completions").mock(return_value=httpx.Response(500, json={"error": {"message": ENGINE_DEAD}}))
    with pytest.raises(ServerSeedCrash, match=r"\?seed=off"):
        drain(llm().stream("q", SEEDED))


def vllm_cpu_like(reply: str) -> _LoopbackServer:
    """Lists a vLLM model and answers completions (``n`` choices of ``reply``) until a seeded sampled request comes:
    then it stops listening and drops the connection, as vLLM's CPU backend does; ``bodies`` are the requests."""
    bodies: list[dict] = []

    def answer(handler, sent):
        bodies.append(sent)
        if sent.get("seed") is not None:
            handler.server.socket.close()  # no new connections: the server is gone
            handler.connection.shutdown(socket.SHUT_RDWR)
            handler.close_connection = True
            return None
        choices = [{"index": i, "text": reply, "finish_reason": "stop"} for i in range(sent.get("n", 1))]
        return {"choices": choices, "usage": {"prompt_tokens": 9, "completion_tokens": 4}}

    server = _LoopbackServer(answer, model="gemma", owner="vllm")
    server.bodies = bodies
    return server


def test_a_benchmark_that_kills_vllm_on_seeds_resumes_with_seed_off_and_its_config_says_the_cost(tmp_path):
    from click.testing import CliRunner

    from agentkit.cli import main

    out = tmp_path / "run"
    common = ["bench", "-d", "gsm8k-sample", "-n", "2", "-o", str(out), "-q", "-m", "cot"]
    args = [*common, "-m", "pal-sc"]
    first = vllm_cpu_like("The answer is 15.")
    try:  # the greedy method first, so finished examples are on disk when the sampled one kills the server
        assert CliRunner().invoke(main, [*common, "--model", first.url]).exit_code == 0
        result = CliRunner().invoke(main, [*args, "--model", f"{first.url}?retries=2"])
    finally:
        first.close()
    assert result.exit_code == 1
    error = result.output.strip().splitlines()[-1]
    assert error.startswith(f"Error: {first.url}/completions (model gemma): the server went away")
    assert "add ?seed=off to the model spec" in error and "rerun with ?seed=off in the model spec to resume" in error
    again = vllm_cpu_like("The answer is 15.")  # restarted (on another port: where a server runs is not the run)
    try:
        result = CliRunner().invoke(main, [*args, "--model", f"{again.url}?seed=off"])
    finally:
        again.close()
    assert result.exit_code == 0, result.output
    assert not [b for b in again.bodies if "seed" in b] and any(b.get("n") == 5 for b in again.bodies)
    execution = json.loads((out / "config.json").read_text())["execution"]
    assert execution["seed"].startswith("off (?seed=off): sampled requests go without a seed")
    assert "cannot be reproduced" in execution["seed"]
