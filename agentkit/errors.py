"""agentkit's error family, in one file: every error agentkit raises on purpose, each with a one-line message.

Every one derives from ``AgentkitError``; its message is one line that names the input (file and line, URL and
model, template and variable) and says what to do. The command line prints these (and ``OSError``) as
``Error: ...`` with exit status 1; anything else is a bug in agentkit and keeps its traceback. Each class is
also importable from the module that raises it (``agentkit.llm.ScriptError``, ``agentkit.prompting.PromptError``
...), as before.

- ``UsageError``: bad input the user can fix. It is also a ``ValueError``, which code relies on (the server
  answers any ``ValueError`` of a request, pydantic's and these, with a 400; code written against the older,
  plain ``ValueError`` keeps working). Its kinds:

  - ``ModelSpecError``: a model spec (``scripted:FILE``, a server URL) is malformed or names a missing file.
  - ``ModelLoadError``: a model could not be found or loaded (``agentkit.engine.loading``).
  - ``ScriptError``: a scripted model has no reply for a prompt.
  - ``ConstraintRefused``: a backend cannot honour a generation constraint (``refuse_constraint``).
  - ``PromptError``: a template or exemplar file is missing or wrong (too few exemplars for the shots).
  - ``UnknownMethod``: a method name that is not registered.
  - ``UnknownServedModel``: the model named in a server spec is not among the server's ``/v1/models``.
  - ``DatasetError``: a dataset could not be found or parsed.
  - ``ConfigError``: a benchmark setting is invalid (``BenchmarkConfig``).
  - ``ToolDefinitionError``: a tool was defined wrongly (no docstring, a missing type hint, a bad name); raised
    when the tool is defined, not when it is called.

- ``ServerError``: a model server refused a request or could not be reached after bounded retries. Also a
  ``RuntimeError``: the client's retry loop tells a refusal (re-raised) from a malformed body (retried) by it.

  - ``ServerRefused``: a 4xx, with the server's own message and ``status``; ``ServerConstraintRefused`` is the
    one that refused a request's constraint (a ``ConstraintRefused`` too, as in-process).
  - ``ServerSeedCrash``: a server died on a seeded sampled request (vLLM's CPU backend 0.32 does); not retried,
    since a retry would kill the next replica too; the message names the ``?seed=off`` workaround.

- ``BenchmarkError``: a benchmark run cannot go on (a clash with an earlier run in the same directory, a damaged
  samples file, workers that keep dying).
- ``SandboxStartError``: the PAL sandbox's processes could not be started (an environment problem, never a
  program's doing); re-exported by ``agentkit.tools.sandbox``.
- ``SandboxClosedError``: a sandbox was used after ``close()``.
- ``MCPServerError``: an MCP tool server could not be started or reached, or went away during a run (names the
  server); re-exported by ``agentkit.tools.mcp``. A tool's own error is an observation, not this.

Deliberately not here: model mistakes. A malformed action, a failing or refused program (the sandbox's own
``SecurityError`` inside its worker) or a missing page are data (``Result.failure``, an observation), never
exceptions that reach the user; ``agentkit.tools.base.ToolError`` (and ``WikiUnavailable``) is how a tool says
so, and its message becomes the observation.
"""

from __future__ import annotations


class AgentkitError(Exception):
    """The root of every error agentkit raises on purpose; the message is one line."""


class UsageError(AgentkitError, ValueError):
    """Bad input a user can fix: the message names the input and what to do."""


class ModelSpecError(UsageError):
    """A model spec (e.g. ``scripted:FILE``) is malformed or names a file that is missing or invalid."""


class ModelLoadError(UsageError):
    """A model could not be found or loaded. The message is one line saying what was tried and what to do."""


class ScriptError(UsageError):
    """A scripted model has no reply for a prompt (its script ran out, or no key matches)."""


class ConstraintRefused(UsageError):
    """A backend cannot honour a constraint of this kind (``agentkit serve`` answers it with a 400, not a 500)."""


class PromptError(UsageError):
    """A template or exemplar file is missing or wrong; the message names it and says what to do."""


class UnknownMethod(UsageError):
    """A method name that is not registered; the message lists the registered ones."""


class UnknownServedModel(UsageError):
    """The model named in the spec is not among the server's ``/v1/models``."""


class DatasetError(UsageError):
    """A dataset could not be found or parsed. The message is one readable line."""


class ConfigError(UsageError):
    """A benchmark setting is invalid; the message names the setting."""


class ToolDefinitionError(UsageError):
    """A tool was defined wrongly (missing docstring or type hint, unsupported annotation, bad name)."""


class ServerError(AgentkitError, RuntimeError):
    """A model server refused a request or could not be reached; names the URL and the model."""


class ServerRefused(ServerError):
    """A server answered a request with a 4xx: not retried; ``status`` is the HTTP status, ``param`` the field its
    error body names (if any)."""

    def __init__(self, message: str, status: int, param: str | None = None):
        super().__init__(message)
        self.status = status
        self.param = param


class ServerConstraintRefused(ServerRefused, ConstraintRefused):
    """The server (its model) cannot honour the request's constraint: a ``UsageError`` too, as in-process."""


class ServerSeedCrash(ServerError):
    """A server died on a seeded sampled request; the message names it and the ``?seed=off`` workaround."""


class BenchmarkError(AgentkitError):
    """A benchmark run cannot go on; what finished so far is on disk."""


class SandboxStartError(AgentkitError):
    """A sandbox template process could not be started (an environment problem, never the program's doing)."""


class SandboxClosedError(AgentkitError):
    """``run`` was called on a sandbox after ``close()``."""


class MCPServerError(AgentkitError):
    """An MCP tool server could not be started or reached, or went away; the message names the server."""
