"""MCP (the Model Context Protocol) both ways, on the official ``mcp`` SDK (2.x; ``pip install agentkit[mcp]``).

**Client.** :class:`MCPTools` connects to one MCP server -- a command line it starts and talks to over stdio, or
a URL of a streamable-HTTP server -- lists the server's tools and turns each into an agentkit
:class:`~agentkit.tools.base.Tool`, so any strategy that takes tools (ReAct's ``tools=``) uses them like
``@tool`` functions::

    with MCPTools("python weather_server.py") as tools:
        agent = ReAct(llm, tools=tools, corpus=None)

Each tool keeps the server's name (made an identifier for the text protocol where it is not one), description,
input schema (``Tool.json_schema``; the bracket form's parameters come from its properties) and output schema
(``Tool.output_schema``). A call runs with a timeout; its observation is the result's text, or its structured
content as JSON where there is no text. A tool error, a bad argument, or a call that times out is an observation
(``ToolError``), like any tool's expected failure. A server that cannot be started or reached, or that goes
away, is an :class:`~agentkit.errors.MCPServerError` naming it: the run stops with one line, and what it wrote
before (a benchmark's finished samples) stays. The SDK is async; each ``MCPTools`` runs its connection on an
event loop in a thread of its own, so tools are called from plain code and from any worker thread.

**Server.** :func:`agentkit_server` serves agentkit's own tools -- ``run_python``, the hardened sandbox PAL runs
programs in (``agentkit.tools.sandbox``), returning its :class:`~agentkit.tools.sandbox.ExecResult` (value,
stdout, error, kind) exactly as PAL sees it, and Wikipedia ``Search``/``Lookup`` (the offline corpus by
default) -- and :func:`serve` runs it over stdio or streamable HTTP (``agentkit mcp``).

Deliberately not here: MCP resources, prompts, sampling and elicitation; authentication; a native tool-calling
agent (the ``tools`` method, ``agentkit.strategies.tools``, calls these as it calls any tool).
The Wikipedia tools' current page belongs to the server process, so clients of one HTTP server share it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import re
import shlex
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal, overload

from agentkit.errors import MCPServerError, UsageError
from agentkit.tools.base import Tool, ToolError, ToolParameter, _type_name
from agentkit.tools.sandbox import ExecResult  # run_python's result, which the SDK reads from its annotation

__all__ = ["SERVED_TOOLS", "LazySandbox", "MCPServerError", "MCPTools", "agentkit_server", "serve", "server_target"]

DEFAULT_TIMEOUT = 30.0  # seconds for one tool call, and for connecting and listing the tools
_INSTALL = "MCP needs the mcp SDK: pip install 'agentkit[mcp]'"
_SCALARS: dict[str, type] = {"string": str, "integer": int, "number": float, "boolean": bool}
_PAGES = 100  # tools/list pages read at most (a server whose cursor never ends cannot hang the start)


def _sdk() -> Any:
    try:
        import mcp
    except ImportError:
        raise UsageError(_INSTALL) from None
    return mcp


def server_target(spec: str | Sequence[str]) -> Any:
    """What ``spec`` names: a URL (``http://``/``https://``: streamable HTTP) as it is, or a command line (one
    string, split as a shell would, or a list of arguments) as the SDK's ``StdioServerParameters``."""
    mcp = _sdk()
    if isinstance(spec, str):
        text = spec.strip()
        if re.match(r"https?://", text, re.IGNORECASE):
            return text
        try:
            argv = shlex.split(text)
        except ValueError as exc:
            raise UsageError(f"MCP server {spec!r}: cannot read the command line ({exc})") from None
    else:
        argv = [str(a) for a in spec]
    if not argv:
        raise UsageError(
            "MCP server: the spec is empty; give a command line (python server.py) or a URL (http://127.0.0.1:8000/mcp)"
        )
    return mcp.StdioServerParameters(command=argv[0], args=argv[1:])


class MCPTools(Sequence[Tool]):
    """The tools of one MCP server, as agentkit tools; connects when made, ``close()`` (or ``with``) ends it.

    ``server``: a command line (``"python server.py"`` or ``["python", "server.py"]``, started and spoken to
    over stdio) or a URL (``http://127.0.0.1:8000/mcp``, streamable HTTP). ``timeout``: seconds for each call
    (a call over it is an observation). ``connect_timeout``: seconds to start, connect and list the tools.
    ``tools``: the names to keep (default: every tool the server lists). Raises ``MCPServerError`` naming the
    server when it cannot be started or reached.
    """

    def __init__(
        self,
        server: str | Sequence[str],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_TIMEOUT,
        tools: Iterable[str] | None = None,
    ):
        self.spec = server.strip() if isinstance(server, str) else shlex.join(server)
        self.timeout, self.connect_timeout = timeout, connect_timeout
        self._target = server_target(server)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._client: Any = None
        self._failure: BaseException | None = None
        self._listed: list[Any] = []
        ready = threading.Event()
        self._thread = threading.Thread(
            target=asyncio.run, args=(self._connection(ready),), daemon=True, name=f"mcp {self.spec}"
        )
        self._thread.start()
        if not ready.wait(connect_timeout + 5) or self._client is None:
            self.close()
            why = _reason(self._failure) if self._failure else f"no answer within {connect_timeout:g} s"
            raise MCPServerError(f"MCP server {self.spec!r} could not be started or reached: {why}")
        wanted = None if tools is None else set(tools)
        self.tools = [self._tool(t) for t in self._listed if wanted is None or t.name in wanted]
        missing = sorted((wanted or set()) - {t.name for t in self._listed})
        if missing:
            self.close()
            raise UsageError(
                f"MCP server {self.spec!r} has no tool {missing[0]!r}; it has: "
                f"{', '.join(t.name for t in self._listed)}"
            )

    async def _connection(self, ready: threading.Event) -> None:
        """The connection's whole life, in one task: connect, list the tools, serve calls until close()."""
        mcp = _sdk()
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        try:
            client = mcp.Client(self._target, read_timeout_seconds=self.connect_timeout)
            async with client:
                self._listed = await asyncio.wait_for(_list_tools(client), self.connect_timeout)
                self._client = client
                ready.set()
                await self._stop.wait()
        except BaseException as exc:  # noqa: BLE001  # reported by the constructor or the next call
            self._failure = exc
        finally:
            self._client = None
            ready.set()

    def _tool(self, listed: Any) -> Tool:
        """One listed MCP tool as an agentkit Tool that calls it."""
        schema = dict(listed.input_schema or {"type": "object", "properties": {}})
        params = _parameters(schema, listed.name)
        server_name = listed.name

        def call(*args: Any, **kwargs: Any) -> str:
            arguments = {p.name: _from_text(p, v) for p, v in zip(params, args, strict=False)}
            return self.call(server_name, {**arguments, **kwargs})

        name = re.sub(r"\W", "_", listed.name, flags=re.ASCII)
        description = " ".join((listed.description or listed.title or f"The MCP tool {listed.name}.").split())
        return Tool(
            name=name if re.match(r"[A-Za-z_]", name) else f"_{name}",
            description=description,
            fn=call,
            parameters=params,
            argument_hint=", ".join(p.name for p in params),
            input_schema=schema,
            output_schema=listed.output_schema,
        )

    def call(self, name: str, arguments: Mapping[str, Any]) -> str:
        """Call the server's tool ``name``; returns the observation text. ToolError for the tool's own failures
        (and a timeout), MCPServerError when the server is gone."""
        from mcp import MCPError
        from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT

        client, loop = self._client, self._loop
        if client is None or loop is None:
            raise self._gone(self._failure)
        try:
            future = asyncio.run_coroutine_threadsafe(
                client.call_tool(name, dict(arguments), read_timeout_seconds=self.timeout), loop
            )
            result = future.result(self.timeout + 5)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise ToolError(f"{name} gave no answer within {self.timeout:g} s") from None
        except MCPError as exc:
            if exc.code == REQUEST_TIMEOUT:
                raise ToolError(f"{name} gave no answer within {self.timeout:g} s") from None
            if exc.code == CONNECTION_CLOSED:
                raise self._gone(exc) from None
            raise ToolError(f"{name} failed: {exc.message}") from None
        except Exception as exc:  # noqa: BLE001  # the transport's own failures (a closed stream, HTTP)
            raise self._gone(exc) from None
        return _observation(name, result)

    def _gone(self, cause: BaseException | None) -> MCPServerError:
        why = f": {_reason(cause)}" if cause is not None else ""
        return MCPServerError(f"MCP server {self.spec!r} is gone{why}; check that it runs, then run again")

    def close(self) -> None:
        """End the connection (a stdio server is stopped as the SDK does: stdin closed, then signals)."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(stop.set)
            except RuntimeError:  # the loop closed in between
                pass
        self._thread.join(self.connect_timeout)

    def __enter__(self) -> MCPTools:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @overload
    def __getitem__(self, index: int) -> Tool: ...

    @overload
    def __getitem__(self, index: slice) -> list[Tool]: ...

    def __getitem__(self, index: int | slice) -> Tool | list[Tool]:
        return self.tools[index]

    def __len__(self) -> int:
        return len(self.tools)

    def __iter__(self) -> Iterator[Tool]:
        return iter(self.tools)

    def __repr__(self) -> str:
        return f"MCPTools({self.spec!r}, tools={[t.name for t in self.tools]})"


async def _list_tools(client: Any) -> list[Any]:
    listed, cursor = [], None
    for _ in range(_PAGES):
        page = await client.list_tools(cursor=cursor)
        listed += page.tools
        cursor = page.next_cursor
        if not cursor:
            break
    return listed


def _reason(exc: BaseException | None) -> str:
    """One line for what ended a connection (the first leaf of an exception group)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = " ".join(str(exc).split()) if exc is not None else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _parameters(schema: Mapping[str, Any], tool: str) -> tuple[ToolParameter, ...]:
    """The bracket form's parameters from an input schema's properties: the required ones first."""
    props = schema.get("properties") or {}
    required = set(schema.get("required") or [])
    names = [n for n in props if n in required] + [n for n in props if n not in required]
    params = []
    for n in names:
        prop = props[n] if isinstance(props[n], Mapping) else {}
        annotation, type_name = _annotation(prop, tool, n)
        params.append(
            ToolParameter(
                name=n,
                annotation=annotation,
                type=type_name,
                required=n in required,
                description=" ".join(str(prop.get("description", "")).split()),
                default=prop.get("default"),
            )
        )
    return tuple(params)


def _annotation(prop: Mapping[str, Any], tool: str, name: str) -> tuple[Any, str]:
    """A property's schema as the annotation the text protocol converts to; anything but a scalar, an enum of
    scalars or either of them or null is written as JSON text (``str``, decoded before the call)."""
    kinds = prop.get("type")
    kinds = list(kinds) if isinstance(kinds, list) else [kinds] if kinds else []
    for option in prop.get("anyOf") or []:
        if isinstance(option, Mapping) and isinstance(option.get("type"), str):
            kinds.append(option["type"])
    nullable = "null" in kinds
    kinds = [k for k in kinds if k != "null"]
    enum = prop.get("enum")
    if isinstance(enum, list) and enum and all(isinstance(v, (str, int, bool)) for v in enum):
        annotation: Any = Literal[tuple(enum)]
    elif len(kinds) == 1 and kinds[0] in _SCALARS:
        annotation = _SCALARS[kinds[0]]
    else:
        return str, "JSON"
    annotation = annotation | None if nullable else annotation
    return annotation, _type_name(annotation, tool, name)


def _from_text(param: ToolParameter, value: Any) -> Any:
    """A bracketed value as the server takes it: JSON-typed values are decoded."""
    if param.type != "JSON" or not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        raise ToolError(f"{param.name} must be JSON, got {value!r}") from None


def _observation(name: str, result: Any) -> str:
    """A call's result as observation text; an error result raises ToolError with its text."""
    pieces = []
    for block in result.content or []:
        if getattr(block, "type", None) == "text":
            pieces.append(block.text)
        else:
            mime = getattr(block, "mime_type", None)
            pieces.append(f"[{block.type}{' ' + mime if mime else ''}]")
    text = "\n".join(pieces)
    if not text.strip() and result.structured_content is not None:
        text = json.dumps(result.structured_content, ensure_ascii=False)
    if result.is_error:
        raise ToolError(text or f"{name} failed (the server gave no reason)")
    return text


# ------------------------------------------------------------------ the server: agentkit's own tools
SERVED_TOOLS = ("run_python", "Search", "Lookup")
RUN_PYTHON = (
    "Runs a Python program in agentkit's hardened sandbox (the one PAL uses: RestrictedPython, a fresh "
    "process per program, no files, network or imports beyond a pure allow-list) and returns ok, value, "
    "stdout, error and kind. The program defines solution() and returns the answer (or sets answer)."
)


class LazySandbox:
    """A ``Sandbox`` of ``timeout`` seconds per program, started on the first program (a server that only
    answers Search never starts one)."""

    def __init__(self, timeout: float = 5.0):
        self.timeout, self._sandbox, self._lock = timeout, None, threading.Lock()

    def run(self, code: str) -> Any:
        with self._lock:
            if self._sandbox is None:
                from agentkit.tools.sandbox import Sandbox

                self._sandbox = Sandbox(timeout=self.timeout)
        return self._sandbox.run(code)

    def close(self) -> None:
        if self._sandbox is not None:
            self._sandbox.close()


def agentkit_server(*, corpus: Any = "offline", tools: Iterable[str] | None = None, sandbox: Any = None) -> Any:
    """An ``mcp`` ``MCPServer`` with agentkit's tools (``SERVED_TOOLS``, or those named in ``tools``).

    ``corpus``: Wikipedia for Search/Lookup (``"offline"``, ``"live"``, a JSONL path; see
    ``agentkit.tools.wikipedia.make_backend``). ``sandbox``: where programs run, a ``Sandbox`` (default: a
    :class:`LazySandbox`; the caller closes what it passes).
    """
    _sdk()
    from mcp.server.mcpserver import MCPServer

    names = list(SERVED_TOOLS if tools is None else tools)
    unknown = [n for n in names if n not in SERVED_TOOLS]
    if unknown:
        raise UsageError(f"agentkit mcp: no tool {unknown[0]!r}; the tools are: {', '.join(SERVED_TOOLS)}")
    server = MCPServer(
        "agentkit", instructions="agentkit's tools: a Python sandbox and Wikipedia.", log_level="WARNING"
    )
    runner = LazySandbox() if sandbox is None else sandbox

    def run_python(code: str) -> ExecResult:
        """Run one program in the sandbox."""
        return runner.run(code)

    if "run_python" in names:
        server.add_tool(run_python, name="run_python", description=RUN_PYTHON)
    if "Search" in names or "Lookup" in names:
        from agentkit.tools.wikipedia import WikiSession, make_backend

        for t in WikiSession(make_backend(corpus)).tools():
            if t.name in names:
                server.add_tool(t.fn, name=t.name, description=t.description)
    return server


def serve(
    transport: Literal["stdio", "http"] = "stdio",
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    path: str = "/mcp",
    timeout: float = 5.0,
    **options: Any,
) -> None:
    """Serve :func:`agentkit_server` (``options`` go to it) over stdio or streamable HTTP at
    ``http://HOST:PORT/mcp``, programs given ``timeout`` seconds; returns when a stdio client closes stdin."""
    sandbox = LazySandbox(timeout)
    server = agentkit_server(sandbox=sandbox, **options)
    try:
        if transport == "stdio":
            server.run("stdio")
        else:
            server.run("streamable-http", host=host, port=port, streamable_http_path=path)
    finally:
        sandbox.close()
