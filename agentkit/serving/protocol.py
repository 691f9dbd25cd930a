"""The OpenAI-compatible HTTP API that ``agentkit serve`` speaks and ``ServerLLM`` reads: pydantic models only.

Requests are what a client may send to ``/v1/completions`` and ``/v1/chat/completions``; responses and stream
chunks are what a server sends back. Every field is validated, so a bad value is a 400 that names the field, and a
field the server does not know is a 400 too (``extra="forbid"``): a request is never answered as if a setting it
asked for had been applied. OpenAI fields agentkit does not implement (``logprobs``, ``echo``, penalties, ...) are
taken at their neutral value (unset, false, 0) and refused otherwise; ``user`` is taken and ignored.

Extensions beyond OpenAI's API, as vLLM and SGLang have them: ``top_k`` on requests, ``continue_final_message`` and
``add_generation_prompt`` on chat requests. One of agentkit's own: every choice may carry its own ``usage``
(OpenAI gives only the request's total), so a request with ``n`` samples or a prompt list still yields exact token
counts per completion. Clients that do not know it ignore it.

Constraints come in each server's own fields, at most one per request: OpenAI's ``response_format``, vLLM's
``structured_outputs`` (0.10.2 on) and ``guided_*`` (before), llama.cpp's ``grammar`` / ``json_schema`` (SGLang's
``json_schema`` too), and agentkit's own ``constraint`` (an ``agentkit.llm.Constraint``, ``after`` included).

Tool calls in OpenAI's shapes: a chat request's ``tools`` (functions with a JSON schema of their parameters),
``tool_choice`` (``auto``, ``required``, ``none`` or ``{"type": "function", "function": {"name": ...}}``) and
``parallel_tool_calls``; messages with an assistant's ``tool_calls`` and ``tool`` results; a response's
``message.tool_calls`` (arguments as a JSON string) with ``finish_reason`` ``"tool_calls"``, and in a stream the
``tool_calls`` deltas (``index``, ``id`` and the name first, then the arguments).

Deliberately not here: logprobs, echo, penalties, the legacy ``functions`` / ``function_call``, images, embeddings,
the Responses API.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from agentkit.llm import Constraint

FinishReason = Literal["stop", "length"]
ChatFinishReason = Literal["stop", "length", "tool_calls"]
TOOL_CHOICES = ("auto", "required", "none")
TOOL_FIELDS = ("tools", "tool_choice", "parallel_tool_calls")


# OpenAI request fields agentkit serve does not implement: accepted at their neutral value, a 400 otherwise.
UNSUPPORTED = {
    "logprobs": "log-probabilities",
    "top_logprobs": "log-probabilities",
    "echo": "echoing the prompt",
    "best_of": "best_of (ask for n samples)",
    "suffix": "suffixes (insertion)",
    "presence_penalty": "presence penalties",
    "frequency_penalty": "frequency penalties",
    "logit_bias": "logit biases",
}


# The request fields that carry a constraint, one per server dialect (agentkit serve takes them all).
CONSTRAINT_FIELDS = (
    "constraint",
    "response_format",
    "structured_outputs",
    "guided_regex",
    "guided_json",
    "guided_grammar",
    "guided_choice",
    "grammar",
    "json_schema",
)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0, le=5)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int | None = None  # vLLM/SGLang/llama.cpp extension; -1 or 0 means off
    n: int = Field(1, ge=1, le=128)
    seed: int | None = Field(None, ge=0)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None  # an end user's id for a provider's abuse monitoring: nothing to do with it here
    logprobs: bool | int | None = None
    top_logprobs: int | None = None
    echo: bool = False
    best_of: int | None = None
    suffix: str | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[str, float] | None = None

    # Constraints, each server's way (agentkit.serving.app turns the one given into GenerationConfig.constraint).
    response_format: ResponseFormat | None = None  # OpenAI: a JSON schema, or any JSON object
    structured_outputs: StructuredOutputs | None = None  # vLLM >= 0.10.2
    guided_regex: str | None = None  # vLLM before 0.12
    guided_json: dict[str, Any] | str | None = None
    guided_grammar: str | None = None
    guided_choice: list[str] | None = None
    grammar: str | None = None  # llama.cpp: GBNF, or llguidance Lark (vLLM's rule: no "::=" means Lark)
    json_schema: dict[str, Any] | str | None = None  # llama.cpp (an object), SGLang (a string)
    constraint: Constraint | None = None  # agentkit's own, with the free prefix ``after``

    @field_validator(*UNSUPPORTED)
    @classmethod
    def _unsupported(cls, value: object, info: ValidationInfo) -> object:
        neutral = value in (None, 1) if info.field_name == "best_of" else not value
        if not neutral:
            raise ValueError(f"agentkit serve does not support {UNSUPPORTED[info.field_name]}; leave it unset")
        return value

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, stop: str | list[str] | None) -> list[str]:
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        if any(s == "" for s in stops):
            raise ValueError("stop strings must not be empty")
        return stops

    @field_validator("top_k")
    @classmethod
    def _top_k(cls, top_k: int | None) -> int | None:
        if top_k is not None and top_k < -1:
            raise ValueError("top_k must be -1 (off), 0 (off) or a positive number of tokens")
        return top_k if top_k and top_k > 0 else None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    name: str = "response"
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")  # ``schema`` is a BaseModel method
    strict: bool | None = None  # taken, not needed: a constraint here is always enforced


class ResponseFormat(BaseModel):
    """OpenAI's ``response_format``: plain text, any JSON object, or JSON of a schema."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class StructuredOutputs(BaseModel):
    """vLLM's ``structured_outputs``: exactly one of these. Fields agentkit cannot honour (``structural_tag``,
    ``whitespace_pattern``, ...) are refused with a 400 rather than ignored."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    regex: str | None = None
    json_: dict[str, Any] | str | None = Field(None, alias="json")
    grammar: str | None = None
    choice: list[str] | None = None
    json_object: bool | None = None


class CompletionRequest(_Request):
    """``POST /v1/completions``: continue a text prompt (or each of a list of prompts)."""

    prompt: str | list[str]
    max_tokens: int | None = Field(16, ge=1)  # OpenAI's default for completions
    tools: Any = None  # refused: tool calls are a chat's
    tool_choice: Any = None
    parallel_tool_calls: Any = None

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, prompt: str | list[str]) -> str | list[str]:
        if isinstance(prompt, list) and not prompt:
            raise ValueError("prompt list is empty")
        return prompt

    @field_validator(*TOOL_FIELDS)
    @classmethod
    def _no_tools(cls, value: object) -> object:
        if value is not None:
            raise ValueError("tool calls are taken on /v1/chat/completions only (send the prompt as messages)")
        return value


class FunctionCall(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str
    arguments: str  # JSON text, as OpenAI sends it


class ToolCallItem(BaseModel):
    """One call of an assistant message, in a request's history or a response: ``{"id", "type", "function"}``."""

    model_config = ConfigDict(extra="ignore")

    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None  # an assistant's turn with tool calls may have none
    tool_calls: list[ToolCallItem] | None = None  # the assistant's calls
    tool_call_id: str | None = None  # a tool result: the call it answers
    name: str | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text"]
    text: str


class FunctionSpec(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")  # OpenAI's rule (with dots, as MCP tool names have)
    description: str | None = None
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool | None = None  # taken, not needed: the arguments always match the schema here


class FunctionTool(BaseModel):
    """One entry of ``tools``: ``{"type": "function", "function": {"name", "description", "parameters"}}``."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["function"]
    function: FunctionSpec


class NamedFunction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str


class NamedToolChoice(BaseModel):
    """``tool_choice`` naming the one function to call."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["function"]
    function: NamedFunction


class ChatCompletionRequest(_Request):
    """``POST /v1/chat/completions``: the next assistant message, or the continuation of the last one."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)  # OpenAI's newer name for max_tokens
    continue_final_message: bool = False
    add_generation_prompt: bool = True
    tools: list[FunctionTool] | None = None
    tool_choice: Literal["auto", "required", "none"] | NamedToolChoice | None = None
    parallel_tool_calls: bool = True

    @field_validator("tools")
    @classmethod
    def _tool_names(cls, tools: list[FunctionTool] | None) -> list[FunctionTool] | None:
        names = [t.function.name for t in tools or []]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"each function is named once (given twice: {', '.join(twice)})")
        clash = [n for n in names if n in TOOL_CHOICES]
        if clash:
            raise ValueError(f"a function may not be named {clash[0]!r} (a tool_choice keyword)")
        return tools

    @field_validator("tool_choice", mode="before")
    @classmethod
    def _choice_is_one(cls, choice: object) -> object:
        if isinstance(choice, str) and choice not in TOOL_CHOICES:
            raise ValueError(
                f'{choice!r} is none of auto, required, none or {{"type": "function", "function": {{"name": ...}}}}'
            )
        return choice

    @field_validator("tool_choice")
    @classmethod
    def _choice_names_a_tool(cls, choice: str | NamedToolChoice | None, info: ValidationInfo) -> object:
        if "tools" not in info.data:
            return choice  # the tools themselves were refused
        names = [t.function.name for t in info.data["tools"] or []]
        if isinstance(choice, NamedToolChoice) and choice.function.name not in names:
            known = f"the tools are {', '.join(names)}" if names else "the request has no tools"
            raise ValueError(f"no function named {choice.function.name!r} ({known})")
        if choice == "required" and not names:
            raise ValueError("'required' needs tools")
        return choice

    @property
    def tool_choice_name(self) -> str:
        """``tool_choice`` as ``agentkit.llm.Chat`` takes it: auto, required, none, or the function's name."""
        choice = self.tool_choice or "auto"
        return choice.function.name if isinstance(choice, NamedToolChoice) else choice


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    @classmethod
    def of(cls, prompt_tokens: int, completion_tokens: int) -> Usage:
        return cls(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
        )


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: FinishReason | None = None
    logprobs: None = None
    usage: Usage | None = None  # agentkit extension: this choice's own token counts


class CompletionResponse(BaseModel):
    id: str = Field(default_factory=lambda: f"cmpl-{uuid.uuid4().hex}")
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[ToolCallItem] | None = None


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: ChatFinishReason | None = None
    logprobs: None = None
    usage: Usage | None = None  # agentkit extension, as on CompletionChoice


class ChatCompletionResponse(BaseModel):
    id: str = Field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[ChatChoice]
    usage: Usage | None = None


class FunctionDelta(BaseModel):
    name: str | None = None
    arguments: str | None = None


class ToolCallDelta(BaseModel):
    """A piece of one streamed call: its first carries ``id``, ``type`` and the name, later ones the arguments."""

    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionDelta


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None


class ChatChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: ChatFinishReason | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = None


class CompletionChunk(BaseModel):
    """One SSE event of a streamed ``/v1/completions`` response (OpenAI reuses the response shape)."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=lambda: int(time.time()))
    owned_by: str = "agentkit"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorBody(BaseModel):
    message: str
    type: str = "invalid_request_error"
    param: str | None = None
    code: int | str | None = None


class ErrorResponse(BaseModel):
    """OpenAI's error shape: ``{"error": {"message": ..., "type": ..., "param": ..., "code": ...}}``."""

    error: ErrorBody


_Request.model_rebuild()
CompletionRequest.model_rebuild()
ChatMessage.model_rebuild()
ChatCompletionRequest.model_rebuild()
