"""agentkit's error family: the errors a user can cause or meet, each with a one-line message.

Every error agentkit raises on purpose derives from ``AgentkitError``; its message is one line that names the
input (file and line, URL and model, template and variable) and says what to do. The command line prints these
(and ``OSError``) as ``Error: ...`` with exit status 1; anything else is a bug in agentkit and keeps its
traceback.

- ``UsageError``: bad input the user can fix (a model spec, an option, a template, a dataset line). It is also a
  ``ValueError`` so that code written against the older, plain ``ValueError`` keeps working.
- ``ServerError``: a model server refused a request (a 4xx, with the server's own message) or could not be
  reached after bounded retries.
- ``BenchmarkError``: a benchmark run cannot go on (a clash with an earlier run in the same directory, ...).
- ``SandboxStartError``: the PAL sandbox's processes could not be started (an environment problem, never a
  program's doing); re-exported by ``agentkit.tools.sandbox``.
- ``MCPServerError``: an MCP tool server could not be started or reached, or went away during a run (names the
  server); re-exported by ``agentkit.tools.mcp``. A tool's own error is an observation, not this.

Deliberately not here: model mistakes. A malformed action, a failing program or a missing page are data
(``Result.failure``, an observation), never exceptions that reach the user.
"""

from __future__ import annotations


class AgentkitError(Exception):
    """The root of every error agentkit raises on purpose; the message is one line."""


class UsageError(AgentkitError, ValueError):
    """Bad input a user can fix: the message names the input and what to do."""


class ServerError(AgentkitError, RuntimeError):
    """A model server refused a request or could not be reached; names the URL and the model."""


class BenchmarkError(AgentkitError, RuntimeError):
    """A benchmark run cannot go on; what finished so far is on disk."""


class SandboxStartError(AgentkitError, RuntimeError):
    """A sandbox template process could not be started (an environment problem, never the program's doing)."""


class MCPServerError(AgentkitError, RuntimeError):
    """An MCP tool server could not be started or reached, or went away; the message names the server."""
