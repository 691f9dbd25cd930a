"""What ``agentkit serve`` refuses, logs and guards: the model's context, fields it does not implement, OpenAI-shaped
errors on every path, the access log and its 500s, the API key, and the command's bind-first start."""

from __future__ import annotations

import logging
import socket
import time

import httpx
import pytest
from click.testing import CliRunner

import agentkit.models
import agentkit.serving.app
from agentkit.cli import main
from agentkit.errors import ServerError, UsageError
from agentkit.llm import Chat, GenerationConfig, Message, ScriptedLLM
from agentkit.serving import ServerLLM
from agentkit.serving.app import running
from agentkit.serving.client import ServerRefused


class Bounded(ScriptedLLM):
    """A scripted model with a 64-token context (its tokens: the base class's word estimate)."""

    context_length = 64


def post(url: str, path: str, payload: dict, **headers: str) -> httpx.Response:
    return httpx.post(url + path, json=payload, headers=headers, timeout=10)


def error_of(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    return body["error"]


# -- the model's context ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, payload",
    [
        ("/completions", {"prompt": "one two three", "max_tokens": 100_000_000}),
        ("/completions", {"prompt": "one two three", "max_tokens": 62, "stream": True}),
        ("/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 100_000_000}),
    ],
)
def test_max_tokens_beyond_the_models_context_is_a_400(path, payload):
    llm = Bounded(lambda p: "fine")
    llm.chat_template = "{% for m in messages %}{{ m.content }}{% endfor %}"
    with running(llm) as url:
        response = post(url, path, payload)
        assert post(url, "/completions", {"prompt": "one two three", "max_tokens": 61}).status_code == 200
    assert response.status_code == 400
    error = error_of(response)
    assert error["param"] == "max_tokens" and "this model's context is 64 tokens" in error["message"]


def test_a_client_is_told_the_context_limit_once_not_retried():
    with running(Bounded(lambda p: "fine", name="b")) as url:
        llm = ServerLLM(url, retries=3)
        sent = []
        send = llm._client.request

        def counting(*args, **kwargs):
            sent.append(args)
            return send(*args, **kwargs)

        llm._client.request = counting
        with pytest.raises(ServerRefused, match="HTTP 400: max_tokens 100000000 is too large"):
            llm.generate(["one two"], GenerationConfig(max_new_tokens=100_000_000))
    assert len(sent) == 1


def test_the_engine_refuses_a_request_beyond_its_context_in_one_line():
    pytest.importorskip("torch")
    from tiny_engine import tiny_engine

    tiny = tiny_engine()
    assert tiny.context_length == 512  # max_position_embeddings of the tiny Gemma 3
    with pytest.raises(
        UsageError,
        match=r"the prompt's 6 tokens plus max_new_tokens 100000000 exceed the model's "
        r"context of 512 tokens \(max_position_embeddings\); ask for at most 506",
    ):
        tiny.generate(["hello"], GenerationConfig(max_new_tokens=100_000_000))
    with pytest.raises(UsageError, match="shorten the prompt"):
        tiny.generate(["x" * 600], GenerationConfig(max_new_tokens=1))
    assert tiny.generate(["hello"], GenerationConfig(max_new_tokens=3))[0].completion_tokens == 3
    with running(tiny) as url:
        response = post(url, "/completions", {"prompt": "hello", "max_tokens": 507})
    assert response.status_code == 400 and "the prompt has 6 (507 > 512 - 6)" in error_of(response)["message"]


def test_agentkit_run_with_too_many_tokens_is_one_error_line(monkeypatch):
    pytest.importorskip("torch")
    from tiny_engine import tiny_engine

    monkeypatch.setattr(agentkit.models, "load_model", lambda spec, **options: tiny_engine())
    result = CliRunner().invoke(main, ["run", "What is 2 + 3?", "--method", "direct", "--max-tokens", "100000000"])
    assert result.exit_code == 1
    (line,) = [line for line in result.output.splitlines() if line.strip()]
    assert line.startswith("Error: engine tiny: the prompt's") and "context of 512 tokens" in line


class Sessions(ScriptedLLM):
    """Records the sessions the server opens and which of them it has closed."""

    def __init__(self):
        super().__init__(lambda p: "x", name="m")
        self.opened, self.closed = [], []

    def session(self, max_batch_size=32):
        session = super().session(max_batch_size)
        self.opened.append(session)
        close = session.close
        session.close = lambda: (self.closed.append(session), close())
        return session


def test_an_idle_server_lets_go_of_its_session_and_its_buffers():
    llm = Sessions()
    with running(llm) as url:
        assert post(url, "/completions", {"prompt": "p", "max_tokens": 30}).status_code == 200
        deadline = time.monotonic() + 10
        while not llm.closed and time.monotonic() < deadline:
            time.sleep(0.01)  # the engine thread closes it right after handing back the completion
        assert llm.closed == llm.opened[:1] and len(llm.opened) == 2  # a fresh one waits for the next request
        assert post(url, "/completions", {"prompt": "p"}).json()["choices"][0]["text"] == "x"


# -- fields it does not implement, and errors in OpenAI's shape ---------------------------------------------------


@pytest.mark.parametrize(
    "field, value, says",
    [
        ("logprobs", 5, "does not support log-probabilities"),
        ("echo", True, "does not support echoing the prompt"),
        ("frequency_penalty", 0.5, "does not support frequency penalties"),
        ("best_of", 3, "does not support best_of"),
        ("temprature", 0, "unknown field"),
    ],
)
def test_a_field_it_does_not_implement_is_a_400_naming_it(field, value, says):
    with running(ScriptedLLM(lambda p: "x", name="m")) as url:
        response = post(url, "/completions", {"prompt": "p", field: value})
    assert response.status_code == 400
    error = error_of(response)
    assert error["param"] == field and error["message"].startswith(f"{field}: ") and says in error["message"]


def test_neutral_values_of_those_fields_are_taken():
    with running(ScriptedLLM(lambda p: "x", name="m")) as url:
        response = post(
            url,
            "/completions",
            {
                "prompt": "p",
                "logprobs": None,
                "echo": False,
                "best_of": 1,
                "presence_penalty": 0,
                "logit_bias": {},
                "user": "u-1",
            },
        )
        chat = post(url, "/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "logprobs": False})
    assert response.status_code == 200 and response.json()["choices"][0]["text"] == "x"
    assert chat.status_code == 400 and "no chat template" in error_of(chat)["message"]  # past the fields


class Broken(ScriptedLLM):
    """Renders chats by crashing (a bug in a model's renderer), and fails every generation (a model gone bad)."""

    chat_template = "unused"

    def render(self, prompt):
        if isinstance(prompt, Chat):
            raise KeyError("template bug")
        return prompt

    def generate(self, prompts, config=None):
        raise RuntimeError("CUDA error: device lost")


def test_every_error_is_openai_shaped(caplog):
    with running(Broken([], name="m")) as url:
        cases = {
            404: httpx.post(url + "/nowhere", json={}),
            405: httpx.get(url + "/completions"),
            400: httpx.post(url + "/completions", content=b"{not json", headers={"content-type": "application/json"}),
            500: post(url, "/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
        }
        with caplog.at_level(logging.ERROR, logger="agentkit.serving"):
            failed = post(url, "/completions", {"prompt": "p"})
    for status, response in cases.items():
        assert response.status_code == status and error_of(response)["code"] == status
    assert "/nowhere: Not Found" in error_of(cases[404])["message"]
    assert "not valid JSON" in error_of(cases[400])["message"]
    assert error_of(cases[500])["type"] == "server_error" and "KeyError" in error_of(cases[500])["message"]
    assert failed.status_code == 500 and "device lost" in error_of(failed)["message"]
    (record,) = [r for r in caplog.records if r.name == "agentkit.serving" and r.levelno == logging.ERROR]
    assert "device lost" in record.getMessage() and record.exc_info is not None  # the traceback is in the log


def test_every_request_is_logged(caplog):
    with caplog.at_level(logging.INFO, logger="agentkit.serving"), running(ScriptedLLM(["x"], name="m")) as url:
        post(url, "/completions", {"prompt": "p"})
        post(url, "/completions", {"prompt": "p", "echo": True})
    lines = [r.getMessage() for r in caplog.records if r.name == "agentkit.serving"]
    assert any('"POST /v1/completions" 200' in line and line.startswith("127.0.0.1:") for line in lines), lines
    assert any('"POST /v1/completions" 400' in line for line in lines), lines


# -- the API key ---------------------------------------------------------------------------------------------------


def test_an_api_key_is_required_when_the_server_has_one(monkeypatch):
    monkeypatch.delenv("AGENTKIT_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with running(ScriptedLLM(lambda p: "x", name="m"), api_key="sk-test") as url:
        missing = post(url, "/completions", {"prompt": "p"})
        wrong = httpx.get(url + "/models", headers={"Authorization": "Bearer sk-nope"})
        right = post(url, "/completions", {"prompt": "p"}, Authorization="Bearer sk-test")
        with pytest.raises(ServerError, match=r"HTTP 401.*give the server's API key in \$AGENTKIT_API_KEY"):
            ServerLLM(url)
        assert ServerLLM(url, api_key="sk-test").generate(["p"])[0].text == "x"
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")  # the OpenAI clients' convention works too
        assert ServerLLM(url).generate(["p"])[0].text == "x"
    assert missing.status_code == wrong.status_code == 401 and right.status_code == 200
    assert error_of(missing)["type"] == "authentication_error"


# -- the command ---------------------------------------------------------------------------------------------------


@pytest.fixture
def no_model(monkeypatch):
    """``agentkit serve`` with a scripted model that records being loaded, and a server that returns at once."""
    loaded, served = [], []

    def load(spec, **options):
        loaded.append(options)
        return ScriptedLLM(["x"], name="m")

    monkeypatch.setattr(agentkit.models, "load_model", load)
    monkeypatch.setattr(
        agentkit.serving.app, "serve", lambda llm, sock, **options: served.append((sock.getsockname()[1], options))
    )
    return loaded, served


def test_a_busy_port_fails_before_the_model_loads(no_model):
    loaded, _ = no_model
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(main, ["serve", "--port", str(port)])
    assert result.exit_code == 1 and loaded == []
    assert result.output.strip() == (
        f"Error: cannot listen on 127.0.0.1:{port}: Address already in use (choose "
        f"another port, or port 0 for a free one)"
    )


def test_port_zero_prints_the_port_it_got_and_serving_defaults_to_float32_on_a_cpu(no_model, monkeypatch):
    loaded, served = no_model
    monkeypatch.setattr("agentkit.engine.loading.resolve_device", lambda device: "cpu")
    result = CliRunner().invoke(main, ["serve", "--port", "0", "--api-key", "k"])
    assert result.exit_code == 0, result.output
    ((port, options),) = served
    assert port != 0 and f"agentkit serve: m at http://127.0.0.1:{port}/v1" in result.output
    assert options["api_key"] == "k" and loaded == [{"dtype": "float32"}]
    assert "warning" not in result.output


def test_a_public_bind_without_a_key_is_warned_about(no_model, monkeypatch):
    bound, real = [], agentkit.serving.app.bind

    def loopback(host, port):  # the test binds loopback only; the command sees the host it was given
        bound.append(host)
        return real("127.0.0.1", 0)

    monkeypatch.setattr(agentkit.serving.app, "bind", loopback)
    monkeypatch.delenv("AGENTKIT_API_KEY", raising=False)
    open_result = CliRunner().invoke(main, ["serve", "--host", "0.0.0.0", "--port", "0"])
    keyed = CliRunner().invoke(main, ["serve", "--host", "0.0.0.0", "--port", "0"], env={"AGENTKIT_API_KEY": "k"})
    assert open_result.exit_code == keyed.exit_code == 0 and bound == ["0.0.0.0", "0.0.0.0"]
    assert "warning: --host 0.0.0.0 takes connections from other machines and there is no API key" in open_result.output
    assert "warning" not in keyed.output
    _, served = no_model
    assert [options["api_key"] for _, options in served] == [None, "k"]


def test_is_loopback():
    from agentkit.serving.app import is_loopback

    assert all(map(is_loopback, ["127.0.0.1", "127.0.0.2", "::1", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "192.168.1.4", "myhost"]))


def test_a_chat_prompt_still_reaches_a_server_with_a_key():
    llm = ScriptedLLM(lambda p: "hello", name="m")
    llm.chat_template = "{% for m in messages %}{{ m.content }}{% endfor %}"
    with running(llm, api_key="sk-1") as url:
        remote = ServerLLM(url, api_key="sk-1")
        assert remote.generate([Chat(messages=(Message(role="user", content="hi"),))])[0].text == "hello"
