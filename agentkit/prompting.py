"""Prompts are data: Jinja2 templates and few-shot exemplar files, rendered strictly.

Templates live in ``prompts/templates/<name>.jinja`` and exemplars in ``prompts/exemplars/<name>.jsonl`` (one
JSON object per line). A user's own directory, laid out the same way (or holding the files flat), is searched
first, so any shipped template or exemplar set can be overridden by name. Rendering uses ``StrictUndefined``:
a variable the caller did not pass is an error that names the template and the variable.

Zero-, one- and few-shot prompts are the same template with the first *n* exemplars of a set; chain-of-thought
comes as exemplars with rationales (few-shot) or the "Let's think step by step" cue (zero-shot; Kojima et al.,
2022).

Every strategy template has two forms. The *text* form is the template rendered whole, for base models. The
*chat* form (``Templates.chat``), for instruct models with a chat template, is built from the macros the template
defines and its text form lays out: ``instructions()`` becomes the system message, each exemplar becomes a user
turn ``ask(exemplar.question)`` and an assistant turn ``reply(exemplar)`` (few-shot as multi-turn), the question
a last user turn, and ``cue()``, where it is defined and not empty, starts the assistant's reply. So the wording
lives once, in the template. ``resolve_prompt_format`` decides which form a model gets: ``auto`` (chat when the
model has a chat template), ``text`` or ``chat``.

Deliberately not here: rendering a ``Chat`` to the text a model sees (``LLM.render``, with the model's template).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.resources import files
from pathlib import Path
from typing import Any

import jinja2

from agentkit.errors import PromptError
from agentkit.llm import LLM, Chat, Message, Prompt

PROMPT_FORMATS = ("auto", "text", "chat")
CHAT_PARTS = ("instructions", "ask", "reply")  # the macros a template needs for its chat form; cue() is optional


def resolve_prompt_format(prompt_format: str, llm: LLM) -> str:
    """``"text"`` or ``"chat"``: the form ``llm`` gets under ``prompt_format`` (``auto``, ``text`` or ``chat``)."""
    if prompt_format not in PROMPT_FORMATS:
        raise PromptError(f"prompt format must be one of {', '.join(PROMPT_FORMATS)}; got {prompt_format!r}")
    if prompt_format == "text":
        return "text"
    if llm.chat_template:
        return "chat"
    if prompt_format == "chat":
        if llm.takes_chat:  # a server with its own template: only an explicit chat sends messages
            return "chat"
        raise PromptError(
            f"model {llm.name} has no chat template, so it cannot take chat prompts: "
            "use --prompt-format text (or auto), or an instruct model"
        )
    return "text"


def describe_prompt_format(llm: LLM) -> list[str]:
    """Lines for ``agentkit ls --model``: the form ``auto`` gives ``llm`` and, for chat, how a question looks."""
    if not llm.chat_template:
        return [f"prompt format: text (model {llm.name} has no chat template; --prompt-format chat is refused)"]
    sample = Chat(messages=(Message(role="system", content="INSTRUCTIONS"), Message(role="user", content="QUESTION")))
    return [
        f"prompt format: chat (model {llm.name} has a chat template; --prompt-format text sends plain text instead)",
        f"a chat prompt renders as: {llm.render(sample)!r}",
    ]


def builtin_dir() -> Path:
    """The shipped ``prompts`` directory (installed as the package ``agentkit.prompts``)."""
    return Path(str(files("agentkit.prompts")))


class Templates:
    """Loads and renders prompt templates and exemplar sets, user directory first."""

    def __init__(self, user_dir: str | Path | None = None):
        self.user_dir = Path(user_dir).expanduser() if user_dir is not None else None
        if self.user_dir is not None and not self.user_dir.is_dir():
            raise PromptError(f"template directory {self.user_dir} does not exist: pass an existing directory")
        self._dirs = [d for d in (self.user_dir, builtin_dir()) if d is not None]
        search = []
        for d in self._dirs:
            search += [str(d / "templates"), str(d)]
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(search),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
            autoescape=False,
        )
        self._exemplar_cache: dict[str, list[dict[str, Any]]] = {}

    def names(self) -> list[str]:
        """Every template name available (user and built-in)."""
        return self._stems("templates", "jinja")

    def exemplar_sets(self) -> list[str]:
        return self._stems("exemplars", "jsonl")

    def _stems(self, folder: str, suffix: str) -> list[str]:
        """The names of the ``*.suffix`` files in every directory or its ``folder``."""
        return sorted({p.stem for d in self._dirs for sub in (d / folder, d) for p in sub.glob(f"*.{suffix}")})

    def render(self, name: str, **variables: Any) -> str:
        """Render template ``name`` (without ``.jinja``) with ``variables``: its text form."""
        template = self._template(name)
        with self._naming(name, template, variables):
            return template.render(**variables)

    def chat(self, name: str, *, question: str, exemplars: list[dict[str, Any]], **variables: Any) -> Chat:
        """The chat form of template ``name``: system, exemplar turns, the question (see the module docstring)."""
        template = self._template(name)
        variables = {"question": question, "exemplars": exemplars, **variables}
        with self._naming(name, template, variables):
            module = template.make_module(variables)
            missing = [part for part in CHAT_PARTS if not callable(getattr(module, part, None))]
            if missing:
                raise PromptError(
                    f"template '{name}' ({template.filename}) has no chat form: define the macros "
                    f"{', '.join(p + '()' for p in missing)} (see docs/chat-templates.md), or use --prompt-format text"
                )
            turns = [("system", module.instructions())]
            for ex in exemplars:
                if "question" not in ex:
                    raise PromptError(f"template '{name}': an exemplar has no 'question' field: {json.dumps(ex)[:80]}")
                turns += [("user", module.ask(ex["question"])), ("assistant", module.reply(ex))]
            turns += [("user", module.ask(question)), ("assistant", module.cue() if hasattr(module, "cue") else "")]
        messages = [Message(role=role, content=str(text).strip()) for role, text in turns]
        # The system message and the cue are optional: left out when they render empty.
        first, last = int(not messages[0].content), len(messages) - int(not messages[-1].content)
        return Chat(messages=tuple(messages[first:last]))

    def prompt(self, name: str, prompt_format: str, **variables: Any) -> Prompt:
        """Template ``name`` in ``prompt_format`` (``"text"`` or ``"chat"``, as ``resolve_prompt_format`` gives)."""
        return self.chat(name, **variables) if prompt_format == "chat" else self.render(name, **variables)

    def _template(self, name: str) -> jinja2.Template:
        try:
            return self.env.get_template(f"{name}.jinja")
        except jinja2.TemplateNotFound:
            raise PromptError(
                f"template '{name}' not found in {', '.join(str(d) for d in self._dirs)}; "
                f"available: {', '.join(self.names())}"
            ) from None
        except jinja2.TemplateSyntaxError as exc:
            raise PromptError(f"template {exc.filename}:{exc.lineno}: {exc.message}") from None

    @contextmanager
    def _naming(self, name: str, template: jinja2.Template, variables: dict[str, Any]) -> Iterator[None]:
        """A variable the caller did not pass becomes an error naming the template, the variable and those given."""
        try:
            yield
        except jinja2.UndefinedError as exc:
            given = ", ".join(sorted(variables)) or "none"
            raise PromptError(
                f"template '{name}' ({template.filename}): {exc.message}; the variables it receives are: {given}"
            ) from None

    def exemplars(self, name: str, n: int) -> list[dict[str, Any]]:
        """The first ``n`` exemplars of set ``name``. Asking for more than the set holds is an error."""
        if n < 0:
            raise PromptError(f"shots must be >= 0, got {n}")
        records = self._load_exemplars(name)
        if n > len(records):
            raise PromptError(
                f"exemplar set '{name}' has {len(records)} exemplars but {n} shots were asked for: "
                f"ask for {len(records)} or fewer, or add exemplars to {name}.jsonl"
            )
        return records[:n]

    def count(self, name: str) -> int:
        """How many exemplars set ``name`` holds (the most shots it can give)."""
        return len(self._load_exemplars(name))

    def _load_exemplars(self, name: str) -> list[dict[str, Any]]:
        if name in self._exemplar_cache:
            return self._exemplar_cache[name]
        path = next(
            (p for d in self._dirs for p in (d / "exemplars" / f"{name}.jsonl", d / f"{name}.jsonl") if p.is_file()),
            None,
        )
        if path is None:
            raise PromptError(f"exemplar set '{name}' not found; available: {', '.join(self.exemplar_sets())}")
        records = []
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise PromptError(f"{path}:{lineno}: invalid JSON ({exc.msg}); fix or remove the line") from None
            if not isinstance(record, dict):
                raise PromptError(f"{path}:{lineno}: expected a JSON object per line")
            records.append(record)
        self._exemplar_cache[name] = records
        return records


_default: Templates | None = None


def default_templates() -> Templates:
    """The shared built-in template set (loaded once)."""
    global _default
    if _default is None:
        _default = Templates()
    return _default
