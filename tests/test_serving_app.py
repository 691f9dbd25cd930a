"""``agentkit serve`` over real loopback HTTP (uvicorn in a thread, scripted models), and ServerLLM against it:
the OpenAI API, errors, shared batches, replicas with one dead, a server that dies mid-benchmark, the chat REPL."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from click.testing import CliRunner
from streams import drain

from agentkit.cli import main
from agentkit.errors import ServerError, UsageError
from agentkit.eval import run_benchmark
from agentkit.llm import LLM, Chat, Completion, Constraint, GenerationConfig, Message, ScriptedLLM, refuse_constraint
from agentkit.serving import ServerLLM
from agentkit.serving.app import running

CHAT_TEMPLATE = (
    "{% for m in messages %}<{{ m.role }}>{{ m.content }}</{{ m.role }}>\n{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SeedEcho(LLM):
    """Replies with the settings it was asked with, so the tests see what reached the model."""

    name = "echo"
    chat_template = CHAT_TEMPLATE

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.batches: list[int] = []

    def generate(self, prompts, config=None):
        config = config or GenerationConfig()
        self.batches.append(len(prompts))
        time.sleep(self.delay)
        out = []
        for prompt in prompts:
            text = f"seed={config.seed} sample={config.do_sample} prompt={prompt!r}\nSTOP here"
            cut = min([i for i in (text.find(s) for s in config.stop) if i >= 0], default=len(text))
            out.append(
                Completion(text=text[:cut], finish_reason="stop", prompt_tokens=len(prompt), completion_tokens=3)
            )
        return out


def post(url: str, path: str, payload: dict) -> httpx.Response:
    return httpx.post(url + path, json=payload, timeout=10)


# -- the API ----------------------------------------------------------------------------------------------------


def test_models_completions_with_a_prompt_list_n_and_seeds():
    with running(SeedEcho()) as url:
        assert httpx.get(url + "/models").json()["data"][0] == {
            "id": "echo",
            "object": "model",
            "created": pytest.approx(time.time(), abs=60),
            "owned_by": "agentkit",
        }
        data = post(
            url,
            "/completions",
            {
                "model": "echo",
                "prompt": ["one", "two"],
                "n": 2,
                "seed": 5,
                "temperature": 0.7,
                "stop": ["\nSTOP"],
                "max_tokens": 8,
            },
        ).json()
    texts = [c["text"] for c in data["choices"]]
    assert texts == [
        "seed=5 sample=True prompt='one'",
        "seed=6 sample=True prompt='one'",
        "seed=5 sample=True prompt='two'",
        "seed=6 sample=True prompt='two'",
    ]
    assert [c["index"] for c in data["choices"]] == [0, 1, 2, 3]
    assert data["usage"] == {"prompt_tokens": 6, "completion_tokens": 12, "total_tokens": 18}
    assert data["choices"][0]["usage"]["completion_tokens"] == 3


def test_temperature_zero_is_greedy():
    with running(SeedEcho()) as url:
        data = post(url, "/completions", {"prompt": "p", "temperature": 0, "seed": 1}).json()
    assert data["choices"][0]["text"].startswith("seed=1 sample=False")


@pytest.mark.parametrize(
    "path, payload, status, fragment",
    [
        ("/completions", {"prompt": "p", "temperature": -1}, 400, "temperature"),
        ("/completions", {"prompt": "p", "stop": ["", "x"]}, 400, "stop strings must not be empty"),
        ("/completions", {"max_tokens": 5}, 400, "prompt"),
        ("/completions", {"prompt": [], "max_tokens": 5}, 400, "prompt list is empty"),
        ("/completions", {"prompt": ["a", "b"], "stream": True}, 400, "streams one prompt"),
        ("/completions", {"prompt": "p", "model": "gpt-4"}, 404, "`gpt-4` does not exist; this server serves `echo`"),
        (
            "/chat/completions",
            {"messages": [{"role": "user", "content": "hi"}], "continue_final_message": True},
            400,
            "continue_final_message needs the last message to be the assistant's",
        ),
        ("/chat/completions", {"messages": [{"role": "wizard", "content": "hi"}]}, 400, "role"),
    ],
)
def test_a_bad_request_is_an_openai_style_json_error(path, payload, status, fragment):
    with running(SeedEcho()) as url:
        response = post(url, path, payload)
    assert response.status_code == status
    error = response.json()["error"]
    assert fragment in error["message"] and error["code"] == status and error["type"]


def test_chat_completions_render_with_the_template_and_continue_the_last_message():
    with running(SeedEcho()) as url:
        new_turn = post(
            url, "/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "stop": ["\nSTOP"]}
        ).json()
        continued = post(
            url,
            "/chat/completions",
            {
                "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Well,"}],
                "continue_final_message": True,
                "add_generation_prompt": False,
                "temperature": 0,
                "stop": ["\nSTOP"],
            },
        ).json()
    assert new_turn["object"] == "chat.completion"
    assert new_turn["choices"][0]["message"]["content"].endswith("prompt='<user>hi</user>\\n<assistant>'")
    assert continued["choices"][0]["message"]["content"].endswith("prompt='<user>hi</user>\\n<assistant>Well,'")


def test_a_model_without_a_chat_template_refuses_chat_with_400():
    with running(ScriptedLLM(["x"], name="base")) as url:
        response = post(url, "/chat/completions", {"messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 400 and "no chat template" in response.json()["error"]["message"]


def sse_events(response: httpx.Response) -> list:
    return [line[6:] for line in response.iter_lines() if line.startswith("data: ")]


def test_completions_and_chat_stream_server_sent_events():
    llm = ScriptedLLM(lambda p: "The answer is 42.\nQuestion: more", name="s")
    llm.chat_template = CHAT_TEMPLATE
    with running(llm) as url:
        with httpx.stream(
            "POST",
            url + "/completions",
            json={"prompt": "q", "stream": True, "stop": ["\nQuestion:"], "stream_options": {"include_usage": True}},
        ) as response:
            events = sse_events(response)
        with httpx.stream(
            "POST",
            url + "/chat/completions",
            json={"messages": [{"role": "user", "content": "q"}], "stream": True, "stop": ["\nQuestion:"]},
        ) as response:
            chat_events = sse_events(response)
    assert events[-1] == "[DONE]" and chat_events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == "The answer is 42."
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop" and chunks[-1]["usage"]["completion_tokens"] == 5
    chat_chunks = [json.loads(e) for e in chat_events[:-1]]
    assert chat_chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chat_chunks) == "The answer is 42."


def test_concurrent_clients_share_the_engines_batches():
    llm = SeedEcho(delay=0.2)
    with running(llm) as url, ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda i: post(url, "/completions", {"prompt": f"q{i}", "temperature": 0}), range(8)))
    assert all(r.status_code == 200 for r in responses)
    assert max(llm.batches) > 1 and sum(llm.batches) == 8


# -- ServerLLM against agentkit serve ---------------------------------------------------------------------------


def test_server_llm_against_agentkit_serve_equals_the_model_in_process():
    reply = "Thought: look it up\nAction: Search[x]\nObservation 1: made up\nMore"
    stops = ["\nObservation", "Observation:", "\nQuestion:", "Observation 1:", "Observation 2:", "More"]
    config = GenerationConfig(stop=stops, max_new_tokens=40)
    local = ScriptedLLM(lambda p: reply, name="m")
    with running(ScriptedLLM(lambda p: reply, name="m")) as url:
        remote = ServerLLM(url)
        assert remote.generate(["a", "b"], config) == local.generate(["a", "b"], config)
        pieces = []
        stream = remote.stream("a", config)
        with contextlib.suppress(StopIteration):
            while True:
                pieces.append(next(stream))
        assert "".join(pieces) == local.generate(["a"], config)[0].text
        chat = Chat(messages=(Message(role="user", content="hi"),))
        with pytest.raises(ServerError, match="HTTP 400.*no chat template"):
            remote.generate([chat], config)


def numbers_reply(prompt: str) -> str:
    question = prompt.rsplit("Question:", 1)[-1]
    return f"Let me think.{len(question)} The answer is {len(question) % 7}.\n\nQuestion: next"


def test_a_benchmark_completes_on_the_live_replica_with_every_example_recorded_once(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    with running(ScriptedLLM(numbers_reply, name="m")) as url:
        llm = ServerLLM([dead, url], backoff=0.05, max_backoff=0.2, timeout=5)
        result = run_benchmark("gsm8k-sample", "cot", llm, output_dir=tmp_path, batch_size=4)
    lines = (tmp_path / "cot" / "samples.jsonl").read_text().splitlines()
    ids = [json.loads(line)["id"] for line in lines]
    assert len(ids) == len(set(ids)) == len(result["cot"].records) > 4
    assert llm.replicas[0].failures >= 1 and llm.replicas[1].failures == 0
    in_process = run_benchmark("gsm8k-sample", "cot", ScriptedLLM(numbers_reply, name="m"))
    assert [r["answer"] for r in result["cot"].records] == [r["answer"] for r in in_process["cot"].records]


class Dying(ScriptedLLM):
    """Answers ``lives`` prompts, then fails every request (a server whose engine died)."""

    def __init__(self, lives: int):
        super().__init__(numbers_reply, name="m")
        self.lives = lives

    def generate(self, prompts, config=None):
        self.lives -= len(prompts)
        if self.lives < 0:
            raise RuntimeError("CUDA error: device lost")
        return super().generate(prompts, config)


def test_a_server_that_dies_stops_the_benchmark_and_a_rerun_resumes_without_duplicates(tmp_path):
    with running(Dying(lives=5)) as url:
        llm = ServerLLM(url, retries=1, backoff=0.01, max_backoff=0.02, timeout=5)
        with pytest.raises(ServerError, match=r"HTTP 500.*device lost.*gave up"):
            run_benchmark("gsm8k-sample", "cot", llm, output_dir=tmp_path, batch_size=1)
    samples = tmp_path / "cot" / "samples.jsonl"
    kept = [json.loads(line)["id"] for line in samples.read_text().splitlines()]
    assert 1 <= len(kept) <= 5
    with running(ScriptedLLM(numbers_reply, name="m")) as url:
        result = run_benchmark("gsm8k-sample", "cot", ServerLLM(url), output_dir=tmp_path)
    ids = [json.loads(line)["id"] for line in samples.read_text().splitlines()]
    assert result["cot"].summary["ran_now"] == len(ids) - len(kept)
    assert len(ids) == len(set(ids)) == len(result["cot"].records) and set(kept) <= set(ids)


def test_agentkit_chat_streams_from_a_server(tmp_path):
    with running(ScriptedLLM(lambda p: "Forty-two, of course.", name="m")) as url:
        result = CliRunner().invoke(
            main, ["chat", "--model", url, "--method", "chat"], input="What is six times seven?\n/quit\n"
        )
    assert result.exit_code == 0, result.output
    assert "Forty-two, of course." in result.output


def test_agentkit_serve_command_is_registered_with_its_options():
    result = CliRunner().invoke(main, ["serve", "--help"])
    assert result.exit_code == 0
    for option in ("--model", "--dtype", "--host", "--port", "--served-model-name", "--batch-size"):
        assert option in result.output
    assert "127.0.0.1" in result.output


def test_a_client_that_gives_up_does_not_stop_the_engine():
    llm = SeedEcho(delay=0.3)
    with running(llm) as url:
        with pytest.raises(httpx.TimeoutException):  # these clients leave while their requests wait
            with ThreadPoolExecutor(4) as pool:
                list(
                    pool.map(
                        lambda i: httpx.post(url + "/completions", json={"prompt": f"q{i}"}, timeout=0.1), range(4)
                    )
                )
        time.sleep(1.0)
        assert post(url, "/completions", {"prompt": "after", "temperature": 0}).status_code == 200


class BySeed(LLM):
    """A 'sampling' model: its reply depends on the seed alone."""

    name = "by-seed"

    def __init__(self):
        self.seeds: list[int | None] = []

    def generate(self, prompts, config=None):
        self.seeds += [config.seed] * len(prompts)
        return [
            Completion(
                text=f"So the answer is {config.seed % 3}.", finish_reason="stop", prompt_tokens=9, completion_tokens=6
            )
            for _ in prompts
        ]


def test_self_consistency_through_a_server_asks_once_with_n_and_votes_as_in_process():
    from agentkit.strategies.cot import CoT
    from agentkit.strategies.self_consistency import SelfConsistency

    local = SelfConsistency(CoT(BySeed()), k=5, seed=4)("How much?")
    model = BySeed()
    with running(model) as url:
        served_llm = ServerLLM(url)
        bodies, send = [], served_llm._send

        def recording(method, path, body, **options):
            bodies.append(body)
            return send(method, path, body, **options)

        served_llm._send = recording
        strategy = SelfConsistency(CoT(served_llm), k=5, seed=4)
        served = strategy.batch(["How much?"])[0]
    assert (served.answer, served.votes, served.completions) == (local.answer, local.votes, local.completions)
    assert served.completion_tokens == local.completion_tokens == 30
    assert model.seeds == [4, 5, 6, 7, 8]
    assert [(b["n"], b["seed"]) for b in bodies] == [(5, 4)]  # one request for the five samples


# -- constraints ------------------------------------------------------------------------------------------------

OBJECT = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
ONE_LINE = Constraint(regex=r"[^\n]*")


class Constrained(LLM):
    """Records the constraint each request reached the model with; refuses Lark, as a backend may."""

    name = "c"

    def __init__(self):
        self.constraints: list[Constraint | None] = []

    def generate(self, prompts, config=None):
        if config.constraint is not None and config.constraint.kind == "lark":
            refuse_constraint("model c", config.constraint)
        self.constraints += [config.constraint] * len(prompts)
        return [Completion(text="1", finish_reason="stop", prompt_tokens=1, completion_tokens=1) for _ in prompts]


@pytest.mark.parametrize(
    "fields, expected",
    [
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "n", "schema": OBJECT, "strict": True},
                }
            },
            Constraint(json_schema=OBJECT),
        ),
        ({"response_format": {"type": "json_object"}}, Constraint(json_schema={"type": "object"})),
        ({"response_format": {"type": "text"}}, None),
        ({"structured_outputs": {"regex": "[0-9]+"}}, Constraint(regex="[0-9]+")),
        ({"structured_outputs": {"json": OBJECT}}, Constraint(json_schema=OBJECT)),
        ({"structured_outputs": {"choice": ["yes", "no."]}}, Constraint(regex=r"(yes)|(no\.)")),
        ({"structured_outputs": {"json_object": True}}, Constraint(json_schema={"type": "object"})),
        ({"guided_regex": "[0-9]+"}, Constraint(regex="[0-9]+")),
        ({"guided_json": json.dumps(OBJECT)}, Constraint(json_schema=OBJECT)),
        ({"guided_choice": ["1", "2"]}, Constraint(regex="(1)|(2)")),
        ({"json_schema": OBJECT}, Constraint(json_schema=OBJECT)),  # llama.cpp
        ({"json_schema": json.dumps(OBJECT)}, Constraint(json_schema=OBJECT)),  # SGLang
        ({"constraint": {"regex": "[0-9]", "after": "A:"}}, Constraint(regex="[0-9]", after="A:")),
    ],
)
def test_each_servers_constraint_fields_reach_the_model_as_one_constraint(fields, expected):
    model = Constrained()
    with running(model) as url:
        for path, prompt in (("/completions", {"prompt": "p"}), ("/chat/completions", None)):
            if prompt is None:
                model.chat_template = CHAT_TEMPLATE
                prompt = {"messages": [{"role": "user", "content": "p"}]}
            response = post(url, path, {**prompt, "temperature": 0, **fields})
            assert response.status_code == 200, response.text
    assert model.constraints == [expected, expected]


@pytest.mark.parametrize("field", ["grammar", "guided_grammar", "structured_outputs"])
def test_gbnf_and_lark_grammars_become_lark_constraints(field):
    seen = []
    model = ScriptedLLM(lambda p: "ab1 and more", name="g")
    with running(model) as url:
        for text in ('root ::= "ab" [0-9]+', '%llguidance {}\nstart: "ab" /[0-9]+/'):
            value = {"grammar": text} if field == "structured_outputs" else text
            data = post(url, "/completions", {"prompt": "p", "temperature": 0, field: value}).json()
            seen.append(data["choices"][0]["text"])
    assert seen == ["ab1", "ab1"]  # the scripted model honoured each grammar
    assert all(c is not None and c.kind == "lark" for c in model.constraints)


@pytest.mark.parametrize(
    "fields, param, fragment",
    [
        ({"guided_regex": "a", "json_schema": OBJECT}, "json_schema", "guided_regex and json_schema: a request takes"),
        ({"guided_regex": "(("}, "guided_regex", "regex constraint does not compile"),
        ({"structured_outputs": {"regex": "a", "json": OBJECT}}, "structured_outputs", "exactly one of regex"),
        ({"structured_outputs": {"structural_tag": "{}"}}, "structured_outputs.structural_tag", "unknown field"),
        ({"response_format": {"type": "json_schema"}}, "response_format", "needs a json_schema object"),
        ({"guided_json": "[1, 2"}, "guided_json", "guided_json"),
        ({"grammar": "root ::= ("}, "grammar", "grammar"),
        ({"constraint": {"regex": "a", "lark": 'start: "a"'}}, "constraint", "exactly one of regex"),
        ({"grammar": 'start: "a"'}, "constraint", "model c cannot honour a lark constraint"),
    ],
)
def test_a_constraint_the_server_cannot_take_is_a_400_naming_its_field(fields, param, fragment):
    with running(Constrained()) as url:
        response = post(url, "/completions", {"prompt": "p", **fields})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert fragment in error["message"] and error["param"] == param and error["type"] == "invalid_request_error"


def test_a_refused_constraint_in_a_stream_is_a_client_error_event():
    with running(ScriptedLLM(["x"], name="s")) as url:
        stream_events = None
        with httpx.stream(
            "POST",
            url + "/completions",
            json={"prompt": "q", "stream": True, "structured_outputs": {"regex": "[0-9]+"}},
        ) as response:
            stream_events = sse_events(response)
    error = json.loads(stream_events[-1])["error"]
    assert "no prefix of its reply 'x' conforms" in error["message"] and error["type"] == "server_error"
    with (
        running(Constrained()) as url,
        httpx.stream(
            "POST", url + "/completions", json={"prompt": "q", "stream": True, "grammar": 'start: "a"'}
        ) as response,
    ):
        error = json.loads(sse_events(response)[-1])["error"]
    assert (error["code"], error["param"], error["type"]) == (400, "constraint", "invalid_request_error")


def test_server_llm_passes_constraints_through_agentkit_serve_as_its_own_dialect():
    reply = "I should look.\nAction 1: Search[Paris] and then\nObservation 1: made up"
    action = Constraint(regex=r" (Search|Finish)\[[^\]\n]*\]", after="Action 1:")
    configs = [
        GenerationConfig(constraint=action),
        GenerationConfig(constraint=action, max_new_tokens=8),
        GenerationConfig(constraint=ONE_LINE, stop=["look"]),
    ]
    local = ScriptedLLM(lambda p: reply, name="m")
    served_model = ScriptedLLM(lambda p: reply, name="m")
    with running(served_model) as url:
        remote = ServerLLM(url)
        for config in configs:
            assert remote.generate(["a", "b"], config) == local.generate(["a", "b"], config)
            assert drain(remote.stream("a", config))[1] == local.generate(["a"], config)[0]
        assert remote.dialect == "agentkit"
        with pytest.raises(UsageError, match=r"refused model c: HTTP 400: model c cannot honour a lark constraint"):
            with running(Constrained()) as other:
                ServerLLM(other).generate(["q"], GenerationConfig(constraint=Constraint(lark='start: "1"')))
    assert served_model.constraints.count(action) == 6  # two prompts, then a stream, for each of two configs


def test_a_model_whose_stream_returns_no_completion_is_an_error_not_an_invented_one():
    class Forgetful(ScriptedLLM):
        def stream(self, prompt, config=None):
            yield "forty-two"  # and no Completion: the contract says a stream returns its own

    with running(Forgetful(["unused"], name="m")) as url:
        with pytest.raises(ServerError, match="must return its Completion"):
            drain(ServerLLM(url).stream("q"))
