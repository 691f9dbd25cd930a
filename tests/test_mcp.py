"""MCP both ways: MCPTools against a real MCP server process written here (stdio and streamable HTTP on 127.0.0.1),
ReAct using its tools, a dead server, and `agentkit mcp` (the sandbox and Wikipedia) used by the client half."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import time

import pytest

pytest.importorskip("mcp")

from click.testing import CliRunner

from agentkit import PAL, ReAct, ScriptedLLM
from agentkit.cli import main
from agentkit.errors import MCPServerError, UsageError
from agentkit.tools.mcp import MCPTools, _parameters
from agentkit.tools.sandbox import Sandbox

SERVER = textwrap.dedent('''
    import os, sys, time
    from pydantic import BaseModel
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    server = MCPServer("demo", log_level="ERROR")

    class Weather(BaseModel):
        city: str
        celsius: float

    @server.tool(name="add-numbers")
    def add(a: int, b: int = 1) -> int:
        """Adds two whole numbers."""
        return a + b

    @server.tool()
    def weather(city: str) -> Weather:
        """The weather in a city."""
        return Weather(city=city, celsius=21.5)

    @server.tool()
    def fail(why: str) -> str:
        """Always fails."""
        raise ToolError(f"cannot: {why}")

    @server.tool()
    def slow(seconds: float) -> str:
        """Sleeps, then answers."""
        time.sleep(seconds)
        return "awake"

    @server.tool()
    def die() -> str:
        """Ends the server process."""
        os._exit(3)

    if sys.argv[1:2] == ["http"]:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run()
''')


@pytest.fixture(scope="module")
def server_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("mcp") / "server.py"
    path.write_text(SERVER, encoding="utf-8")
    return path


@pytest.fixture
def stdio_tools(server_file):
    with MCPTools([sys.executable, str(server_file)], timeout=2) as tools:
        yield tools


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_http(argv: list[str], port: int) -> subprocess.Popen:
    """Start a server process and wait until it takes connections on 127.0.0.1:port."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.stderr.read().decode()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("server did not start listening")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def http_url(server_file):
    port = free_port()
    proc = start_http([sys.executable, str(server_file), "http", str(port)], port)
    yield f"http://127.0.0.1:{port}/mcp"
    stop(proc)


def by_name(tools):
    return {t.name: t for t in tools}


# ---------------------------------------------------------------- the client half
def test_listed_tools_become_agentkit_tools(stdio_tools):
    tools = by_name(stdio_tools)
    assert set(tools) == {"add_numbers", "weather", "fail", "slow", "die"}  # "add-numbers" made an identifier
    add = tools["add_numbers"]
    assert add.description == "Adds two whole numbers."
    assert add.signature == "add_numbers[a, b]"
    assert [(p.name, p.type, p.required) for p in add.parameters] == [("a", "integer", True), ("b", "integer", False)]
    assert add.json_schema["properties"]["b"]["default"] == 1  # the server's own schema
    assert tools["weather"].output_schema["properties"]["celsius"]["type"] == "number"


def test_calls_in_bracket_form_and_with_keywords(stdio_tools):
    tools = by_name(stdio_tools)
    assert tools["add_numbers"].invoke("2") == "3"
    assert tools["add_numbers"].invoke({"a": 2, "b": 5}) == "7"
    assert json.loads(tools["weather"].invoke("Paris")) == {"city": "Paris", "celsius": 21.5}  # structured content


def test_tool_errors_bad_arguments_and_timeouts_are_observations(stdio_tools):
    tools = by_name(stdio_tools)
    assert tools["fail"].invoke("x") == "Error executing tool fail: cannot: x"
    assert tools["add_numbers"].invoke({"a": "two"}) == "add_numbers: a: 'two' is not of type 'integer'"
    assert tools["add_numbers"].invoke("two") == "add_numbers: a must be integer, got 'two'"
    assert tools["slow"].invoke("5") == "slow gave no answer within 2 s"
    assert tools["add_numbers"].invoke("1") == "2"  # the connection is still good


def test_a_dead_server_is_one_error_naming_it(server_file):
    spec = f"{sys.executable} {server_file}"
    with MCPTools(spec, timeout=5) as tools:
        tools = by_name(tools)
        with pytest.raises(MCPServerError, match=r"^MCP server '.*server\.py' is gone: MCPError: Connection closed"):
            tools["die"].invoke("")
        with pytest.raises(MCPServerError, match="is gone"):  # and it stays gone
            tools["add_numbers"].invoke("1")


def test_a_server_that_cannot_start_or_be_reached(tmp_path):
    with pytest.raises(MCPServerError, match=r"^MCP server '/no/such/server' could not be started or reached: "):
        MCPTools("/no/such/server", connect_timeout=10)
    with pytest.raises(MCPServerError, match=rf"^MCP server 'http://127.0.0.1:{(port := free_port())}/mcp' could"):
        MCPTools(f"http://127.0.0.1:{port}/mcp", connect_timeout=10)
    with pytest.raises(UsageError, match="the spec is empty"):
        MCPTools("  ")


def test_tools_can_be_chosen(server_file):
    with MCPTools([sys.executable, str(server_file)], tools=["weather"]) as tools:
        assert [t.name for t in tools] == ["weather"]
    with pytest.raises(UsageError, match="has no tool 'nope'; it has: add-numbers, weather"):
        MCPTools([sys.executable, str(server_file)], tools=["nope"])


def test_streamable_http(http_url):
    with MCPTools(http_url, timeout=2) as tools:
        tools = by_name(tools)
        assert tools["add_numbers"].invoke({"a": 40, "b": 2}) == "42"
        assert tools["fail"].invoke("y") == "Error executing tool fail: cannot: y"
        assert tools["slow"].invoke("5") == "slow gave no answer within 2 s"


def test_an_http_server_that_goes_away(server_file):
    port = free_port()
    proc = start_http([sys.executable, str(server_file), "http", str(port)], port)
    try:
        with MCPTools(f"http://127.0.0.1:{port}/mcp", timeout=5) as tools:
            add = by_name(tools)["add_numbers"]
            assert add.invoke("1") == "2"
            stop(proc)
            with pytest.raises(MCPServerError, match=rf"^MCP server 'http://127.0.0.1:{port}/mcp' is gone: "):
                add.invoke("1")
    finally:
        stop(proc)


def test_react_uses_mcp_tools_like_any_other(stdio_tools):
    llm = ScriptedLLM(
        [" I add.\nAction 1: add_numbers[40, 2]", " I check.\nAction 2: fail[it]", " Done.\nAction 3: Finish[42]"]
    )
    result = ReAct(llm, tools=stdio_tools, corpus=None, shots=0)("What is 40 + 2?")
    steps = result.trajectory.steps
    assert [s.observation for s in steps[:2]] == ["42", "Error executing tool fail: cannot: it"]
    assert result.answer == "42" and result.failure is None
    assert "add_numbers[a, b]: Adds two whole numbers." in llm.prompts[0]


def test_the_tool_agent_calls_mcp_tools_natively(stdio_tools):
    from agentkit.strategies.tools import ToolAgent
    from tests.test_tool_agent import call
    from tests.test_toolcalls import HERMES

    replies = [
        call("add_numbers", a=40, b=2) + call("weather", city="Oslo") + call("add_numbers", a="x"),
        call("Finish", answer="42"),
    ]
    llm = ScriptedLLM(replies, chat_template=HERMES)
    result = ToolAgent(llm, tools=stdio_tools, corpus=None)("What is 40 + 2?")
    add, weather, bad, _ = result.trajectory.steps
    assert add.observation == "42" and json.loads(weather.observation) == {"city": "Oslo", "celsius": 21.5}
    assert bad.status == "bad_arguments" and bad.observation.startswith("add_numbers: a: 'x' is not of type 'integer'")
    assert '"name": "add_numbers"' in llm.prompts[0] and '"required": ["a"]' in llm.prompts[0]  # the server's schema
    assert result.answer == "42"


@pytest.mark.parametrize(
    "prop, annotation_type",
    [
        ({"type": "string"}, "string"),
        ({"enum": ["c", "f"]}, "one of c/f"),
        ({"anyOf": [{"type": "integer"}, {"type": "null"}]}, "integer or none"),
        ({"type": ["number", "null"]}, "number or none"),
        ({"type": "array", "items": {"type": "integer"}}, "JSON"),
        ({}, "JSON"),
    ],
)
def test_schema_properties_become_bracket_parameters(prop, annotation_type):
    (param,) = _parameters({"type": "object", "properties": {"x": prop}}, "t")
    assert param.type == annotation_type and not param.required


# ---------------------------------------------------------------- `agentkit mcp`, used by the client half
AGENTKIT_MCP = [sys.executable, "-m", "agentkit.cli", "mcp"]
RED_TEAM = [
    "def solution():\n    return __import__('os').getcwd()\n",
    "def solution():\n    return open('/etc/passwd').read()\n",
    "import os\ndef solution():\n    return os.listdir('/')\n",
    "def solution():\n    return ().__class__.__bases__[0].__subclasses__()\n",
]


@pytest.fixture(scope="module")
def agentkit_tools():
    with MCPTools(AGENTKIT_MCP, timeout=30, connect_timeout=60) as tools:
        yield by_name(tools)


def test_agentkit_mcp_serves_the_sandbox_and_wikipedia(agentkit_tools):
    assert set(agentkit_tools) == {"run_python", "Search", "Lookup"}
    run_python = agentkit_tools["run_python"]
    assert set(run_python.output_schema["properties"]) >= {"ok", "value", "stdout", "error", "kind"}
    result = json.loads(run_python.invoke({"code": "def solution():\n    print('hi')\n    return 6 * 7\n"}))
    assert (result["ok"], result["value"], result["stdout"], result["kind"]) == (True, 42, "hi\n", "ok")
    assert agentkit_tools["Search"].invoke("Paris").startswith("Paris is the capital")
    assert agentkit_tools["Lookup"].invoke("Seine").startswith("(Result 1 /")


@pytest.mark.parametrize("program", RED_TEAM)
def test_red_team_programs_are_refused_through_mcp_as_through_pal(agentkit_tools, program):
    through_mcp = json.loads(agentkit_tools["run_python"].invoke({"code": program}))
    with Sandbox() as sandbox:
        direct = sandbox.run(program).model_dump()
        pal = PAL(ScriptedLLM([program]), sandbox=sandbox)("q")
    assert through_mcp["ok"] is False and through_mcp["kind"] in ("refused", "exception")
    assert {k: v for k, v in through_mcp.items() if k != "duration"} == {
        k: v for k, v in direct.items() if k != "duration"
    }
    assert pal.error == through_mcp["error"]


def test_react_with_the_sandbox_as_an_mcp_tool():
    with MCPTools(AGENTKIT_MCP + ["--tool", "run_python"], timeout=30, connect_timeout=60) as tools:
        llm = ScriptedLLM(
            [
                ' I compute.\nAction 1: run_python["def solution(): return 6 * 7"]',
                " I try the os.\nAction 2: run_python[answer = __import__('os')]",
                " Done.\nAction 3: Finish[42]",
            ]
        )
        result = ReAct(llm, tools=tools, shots=0)("What is 6 times 7?")  # Wikipedia's own Search/Lookup too
    first, second = (json.loads(s.observation) for s in result.trajectory.steps[:2])
    assert (first["ok"], first["value"]) == (True, 42)
    assert (second["ok"], second["kind"]) == (False, "refused")
    assert result.answer == "42"


def test_agentkit_mcp_over_http():
    port = free_port()
    proc = start_http(AGENTKIT_MCP + ["--transport", "http", "--port", str(port), "--tool", "Search"], port)
    try:
        with MCPTools(f"http://127.0.0.1:{port}/mcp", timeout=30) as tools:
            assert [t.name for t in tools] == ["Search"]
            assert tools[0].invoke({"entity": "Paris"}).startswith("Paris is the capital")
    finally:
        stop(proc)


# ---------------------------------------------------------------- --mcp on the command line
def script(tmp_path, replies):
    path = tmp_path / "replies.json"
    path.write_text(json.dumps(replies), encoding="utf-8")
    return f"scripted:{path}"


def with_mcp(tmp_path, server, replies, *args, method="react", input=None):
    """``agentkit ARGS -m METHOD --mcp SERVER`` zero-shot on a scripted model that gives ``replies`` (SERVER: a
    Python file, or a command line)."""
    spec = server if isinstance(server, str) else f"{sys.executable} {server}"
    model = script(tmp_path, replies)
    return CliRunner().invoke(main, [*args, "-m", method, "--model", model, "--shots", "0", "--mcp", spec], input=input)


def test_run_with_mcp_tools(tmp_path, server_file):
    replies = [" I add.\nAction 1: add_numbers[40, 2]", " Done.\nAction 2: Finish[42]"]
    result = with_mcp(tmp_path, server_file, replies, "run", "What is 40 + 2?", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["answer"] == "42" and data["trajectory"]["steps"][0]["observation"] == "42"


def test_a_dead_server_in_a_run_is_one_error_line(tmp_path, server_file):
    result = with_mcp(tmp_path, server_file, [" Bye.\nAction 1: die[]"], "run", "q")
    assert result.exit_code == 1
    assert (
        result.stderr.strip().splitlines()[-1].startswith(f"Error: MCP server '{sys.executable} {server_file}' is gone")
    )


def test_a_dead_server_in_a_benchmark_keeps_what_was_written(tmp_path, server_file):
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"question": f"q{i}", "answer": "42"}) + "\n" for i in range(2)))
    replies, out = [" t\nAction 1: Finish[42]", " t\nAction 1: die[]"], tmp_path / "run"
    result = with_mcp(
        tmp_path, server_file, replies, "bench", "-d", str(data), "--batch-size", "1", "-o", str(out), "-q"
    )
    assert result.exit_code == 1
    assert "is gone" in result.stderr and "1 finished examples are saved" in result.stderr
    assert len((out / "react" / "samples.jsonl").read_text().splitlines()) == 1


def test_mcp_needs_a_method_that_takes_tools(tmp_path, server_file):
    result = with_mcp(tmp_path, server_file, ["x"], "run", "q", method="cot")
    assert result.exit_code == 1
    assert "Error: --mcp gives tools to the react methods; method 'cot' uses none" in result.stderr


def test_chat_lists_and_uses_mcp_tools(tmp_path, server_file):
    replies = [" I add.\nAction 1: add_numbers[1, 2]", " Done.\nAction 2: Finish[3]"]
    result = with_mcp(tmp_path, server_file, replies, "chat", input="/tools\n1 + 2?\n")
    assert result.exit_code == 0, result.output
    assert "add_numbers[a, b]: Adds two whole numbers." in result.stdout
    assert "Observation 1: 3\n" in result.stdout


def test_mcp_tools_may_not_clash_with_reacts_own(tmp_path):
    result = with_mcp(tmp_path, " ".join(AGENTKIT_MCP + ["--tool", "Search"]), ["x"], "run", "q")
    assert result.exit_code == 1
    assert "its tool Search clashes with the react methods' own; serve it without that tool" in result.stderr
