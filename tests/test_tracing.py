"""OpenTelemetry traces: span names, attributes, parents and evaluation events of a batched ReAct + PAL benchmark
(scripted model, the SDK's in-memory exporter), a real OTLP/HTTP export, and server spans joining a client's trace."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

from agentkit.eval import run_benchmark  # noqa: E402
from agentkit.eval.datasets import load_dataset, shipped_path  # noqa: E402
from agentkit.llm import GenerationConfig, ScriptedLLM  # noqa: E402
from agentkit.result import Result  # noqa: E402
from agentkit.runtime import Call, Generate, run_episode  # noqa: E402
from agentkit.tracing import Tracing, otlp_provider  # noqa: E402

GOLDS = {e.question: e.answer for e in load_dataset("wiki-sample")}
TITLES = {
    row["question"]: row["supporting_titles"][0]
    for row in map(json.loads, shipped_path("wiki-sample").read_text().splitlines())
}


def reply(prompt: str) -> str:
    """ReAct searches, then finishes with the gold answer; PAL writes a program that returns 7 (wrong)."""
    if "def solution()" in prompt:
        return "def solution():\n    return 3 + 4\n```"
    episode = prompt.rsplit("\nQuestion:", 1)[1]
    question = episode.split("\n", 1)[0].strip()
    if "Observation 1:" not in episode:
        return f" I should look up {TITLES[question]}.\nAction 1: Search[{TITLES[question]}]"
    return f" The page says it.\nAction 2: Finish[{GOLDS[question]}]"


def provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    return tracer_provider, exporter


def traced_benchmark(tmp_path, **options):
    tracer_provider, exporter = provider()
    result = run_benchmark(
        "wiki-sample",
        ["react", "pal"],
        ScriptedLLM(reply),
        output_dir=tmp_path / "run",
        limit=4,
        batch_size=8,
        trace=Tracing(tracer_provider, **options),
    )
    return result, exporter.get_finished_spans()


def test_a_batched_react_and_pal_run_gives_one_tree_per_example(tmp_path):
    result, spans = traced_benchmark(tmp_path)
    by_id = {s.context.span_id: s for s in spans}
    roots = [s for s in spans if s.parent is None]
    assert len(roots) == 8 and {s.name.split()[0] for s in roots} == {"example"}  # 4 examples x 2 methods
    for root in roots:
        assert root.attributes["agentkit.run_dir"] == str(tmp_path / "run")
        assert root.attributes["agentkit.method"] in ("react", "pal")
        assert root.attributes["agentkit.example.id"] in {r["id"] for r in result.records}
    agents = [s for s in spans if s.name.startswith("invoke_agent")]
    assert sorted(s.name for s in agents) == ["invoke_agent pal"] * 4 + ["invoke_agent react"] * 4
    for agent in agents:
        root = by_id[agent.parent.span_id]
        assert root.parent is None and agent.context.trace_id == root.context.trace_id
        assert agent.attributes["gen_ai.operation.name"] == "invoke_agent"
        assert agent.attributes["gen_ai.agent.name"] == root.attributes["agentkit.method"]
        children = [s for s in spans if s.parent is not None and s.parent.span_id == agent.context.span_id]
        names = sorted(s.name for s in children)
        if agent.attributes["gen_ai.agent.name"] == "react":  # Search, then Finish: two model calls, one tool
            assert names == ["execute_tool Search", "text_completion scripted", "text_completion scripted"]
        else:
            assert names == ["execute_tool sandbox", "text_completion scripted"]
        for child in children + [agent]:  # every span lies inside its parent's time
            parent = by_id[child.parent.span_id]
            assert parent.start_time <= child.start_time <= child.end_time <= parent.end_time
        calls = sorted((s for s in children if s.name.startswith("text_completion")), key=lambda s: s.start_time)
        for earlier, later in zip(calls, calls[1:], strict=False):
            assert earlier.end_time <= later.start_time  # one episode's calls follow each other
        assert agent.attributes["agentkit.model_calls"] == len(calls)
        assert agent.attributes["gen_ai.usage.input_tokens"] == sum(
            c.attributes["gen_ai.usage.input_tokens"] for c in calls
        )
    starts = sorted((s.start_time, s.end_time) for s in agents)
    assert any(b_start < a_end for (_, a_end), (b_start, _) in zip(starts, starts[1:], strict=False)), (
        "the episodes should have run side by side"
    )


def test_model_call_spans_carry_the_request_and_the_usage_but_no_content_unless_asked(tmp_path):
    _, spans = traced_benchmark(tmp_path)
    call = next(s for s in spans if s.name == "text_completion scripted" and "def solution" not in str(s.attributes))
    attributes = call.attributes
    assert attributes["gen_ai.operation.name"] == "text_completion"
    assert attributes["gen_ai.request.model"] == "scripted"
    assert attributes["gen_ai.provider.name"] == "agentkit"
    assert attributes["gen_ai.request.max_tokens"] > 0 and attributes["gen_ai.request.temperature"] == 0.0
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert attributes["gen_ai.usage.input_tokens"] > 100 and attributes["gen_ai.usage.output_tokens"] > 0
    assert "gen_ai.request.stop_sequences" in attributes
    assert not any(
        k in s.attributes
        for s in spans
        for k in ("gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.tool.call.arguments")
    )
    _, spans = traced_benchmark(tmp_path / "again", content=True)
    search = next(s for s in spans if s.name == "execute_tool Search")
    assert "Search" not in search.attributes["gen_ai.tool.call.arguments"]  # the argument, e.g. a page title
    assert search.attributes["gen_ai.tool.call.result"]
    call = next(s for s in spans if s.name.startswith("text_completion"))
    assert json.loads(call.attributes["gen_ai.input.messages"])[0]["parts"][0]["content"].endswith("Thought 1:")
    assert json.loads(call.attributes["gen_ai.output.messages"])[0]["finish_reason"] == "stop"
    root = next(s for s in spans if s.parent is None and s.attributes["agentkit.method"] == "react")
    question = root.attributes["input.value"]  # the question and answer: Phoenix lists a trace by its root's
    assert question in GOLDS and root.attributes["output.value"] == GOLDS[question]


def test_each_example_is_scored_by_an_evaluation_event(tmp_path):
    result, spans = traced_benchmark(tmp_path)
    records = {(r["id"], r["method"]): r for r in result.records}
    for root in (s for s in spans if s.parent is None):
        record = records[(root.attributes["agentkit.example.id"], root.attributes["agentkit.method"])]
        (event,) = [e for e in root.events if e.name == "gen_ai.evaluation.result"]
        assert event.attributes["gen_ai.evaluation.name"] == "correct"
        assert event.attributes["gen_ai.evaluation.score.value"] == (1.0 if record["correct"] else 0.0)
        assert event.attributes["gen_ai.evaluation.score.label"] == ("correct" if record["correct"] else "incorrect")
    scores = {r["method"]: r["correct"] for r in result.records}
    assert scores == {"react": True, "pal": False}  # both values occur above


def test_tracing_changes_no_record(tmp_path):
    from agentkit.eval.runner import TIMING

    plain = run_benchmark("wiki-sample", ["react", "pal"], ScriptedLLM(reply), output_dir=tmp_path / "a", limit=4)
    traced, _ = traced_benchmark(tmp_path)
    strip = lambda records: [{k: v for k, v in r.items() if k != TIMING} for r in records]  # noqa: E731
    assert strip(plain.records) == strip(traced.records)


class Receiver(BaseHTTPRequestHandler):
    """Records every POST: path, content type and body."""

    posts: list[tuple[str, str, bytes]] = []

    def do_POST(self):  # noqa: N802 - the http.server API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.posts.append((self.path, self.headers["Content-Type"], body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_spans_reach_an_otlp_http_receiver():
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    server = HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"

        def episode():
            completion = yield Generate("Question: 6 times 7?\nAnswer:", GenerationConfig(max_new_tokens=8))
            yield Call(str.upper, completion.text)
            return Result(method="probe", question="6 times 7?", answer=completion.text)

        run_episode(ScriptedLLM([" 42"]), episode(), trace=endpoint)
        otlp_provider(endpoint).force_flush()
    finally:
        server.shutdown()
    assert Receiver.posts, "no export arrived"
    path, kind, body = Receiver.posts[-1]
    assert path == "/v1/traces" and kind == "application/x-protobuf"
    request = ExportTraceServiceRequest.FromString(body)
    names = {span.name for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans}
    assert names == {"invoke_agent probe", "text_completion scripted", "execute_tool upper"}
    resource = {a.key: a.value.string_value for a in request.resource_spans[0].resource.attributes}
    assert resource["service.name"] == "agentkit"


def test_a_server_joins_the_trace_of_the_client_s_model_call():
    pytest.importorskip("fastapi")
    from agentkit.serving import ServerLLM
    from agentkit.serving.app import running

    tracer_provider, exporter = provider()
    tracing = Tracing(tracer_provider)
    with running(ScriptedLLM(lambda prompt: " 42"), model_name="tiny", trace=tracing) as url:
        llm = ServerLLM(url)

        def episode():
            completion = yield Generate("Question: 6 times 7?\nAnswer:", GenerationConfig(max_new_tokens=8))
            return Result(method="probe", question="q", answer=completion.text)

        from agentkit.runtime import run_episodes

        run_episodes(llm, [episode(), episode()], batch_size=2, trace=tracing)
        llm.close()
    spans = exporter.get_finished_spans()
    clients = [s for s in spans if s.name == "text_completion tiny" and s.kind.name == "CLIENT"]
    servers = [s for s in spans if s.name == "text_completion tiny" and s.kind.name == "SERVER"]
    assert len(clients) == 2 and len(servers) == 2
    assert {s.parent.span_id for s in servers} == {c.context.span_id for c in clients}
    for server in servers:
        assert server.attributes["http.response.status_code"] == 200
        assert server.attributes["gen_ai.usage.output_tokens"] >= 1


def test_a_server_with_an_api_key_traces_the_requests_it_lets_in_only():
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("fastapi")
    from agentkit.serving import ServerLLM
    from agentkit.serving.app import running

    tracer_provider, exporter = provider()
    model = ScriptedLLM(lambda prompt: " 42")
    with running(model, model_name="tiny", api_key="sk-t", trace=Tracing(tracer_provider)) as url:
        refused = httpx.post(url + "/completions", json={"prompt": "p"})
        llm = ServerLLM(url, api_key="sk-t")
        assert llm.generate(["Question: 6 times 7?\nAnswer:"])[0].text == " 42"
        llm.close()
    assert refused.status_code == 401
    servers = [s for s in exporter.get_finished_spans() if s.kind.name == "SERVER"]
    assert [s.attributes["http.response.status_code"] for s in servers] == [200]  # the gate stands outside the span


def test_engine_calls_record_their_time_to_first_token_inside_their_span():
    pytest.importorskip("torch")
    from tiny_engine import one_torch_thread, tiny_engine

    from agentkit.runtime import run_episodes

    llm = tiny_engine(max_batch_size=2)
    tracer_provider, exporter = provider()

    def episode(i):
        completion = yield Generate(f"Question {i}: say something\nAnswer:", GenerationConfig(max_new_tokens=6))
        return Result(method="probe", question=str(i), answer=completion.text)

    with one_torch_thread():
        run_episodes(llm, [episode(i) for i in range(3)], batch_size=2, trace=Tracing(tracer_provider))
    calls = [s for s in exporter.get_finished_spans() if s.name == "text_completion tiny"]
    assert len(calls) == 3
    for call in calls:
        first = call.attributes["gen_ai.response.time_to_first_chunk"]
        assert 0 < first <= (call.end_time - call.start_time) / 1e9 + 1e-3
    from agentkit.cache import model_identity

    assert model_identity(llm).startswith("engine:") and llm.dtype in model_identity(llm)
