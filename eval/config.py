"""What a benchmark run is: one pydantic object that ``run_benchmark``, ``agentkit bench`` and ``config.json``
share.

``BenchmarkConfig`` validates every setting once (a negative limit, an unknown or repeated method, a typo in
a keyword are each one error naming the setting). ``identity()`` is the part that must not change when a run is
resumed; it is what ``config.json`` holds and what a rerun is compared with. ``methods`` and ``limit`` may change
between resumed runs (add a method, grow the limit); ``batch_size`` and ``output_dir`` only say how and where.

``BenchmarkConfig.from_settings`` builds one from the same ``Settings`` that ``agentkit run`` and ``agentkit chat``
use, so a setting means the same thing everywhere.

Deliberately not here: running (``agentkit.eval.runner``), datasets and scoring.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agentkit.errors import ConfigError
from agentkit.eval.scoring import DEFAULT_ABS_TOL, DEFAULT_REL_TOL
from agentkit.runtime import Budget
from agentkit.strategies import Settings

DEFAULT_METHODS = ("direct", "cot", "pal")


class BenchmarkConfig(BaseModel):
    """One benchmark run: which methods on which data, with which settings, written where."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    dataset: str | Path | list[Any]  # a path, a shipped name, a Hugging Face name, or a list of ``Example``
    methods: list[str] = Field(default_factory=lambda: ["cot"], min_length=1)  # may grow on a resumed run
    shots: int = Field(4, ge=0)  # few-shot exemplars in each prompt
    limit: int | None = Field(None, ge=1)  # the first N examples; may change on a resumed run
    batch_size: int = Field(16, ge=1)  # episodes decoded together
    output_dir: Path | None = None  # None: nothing is written
    overwrite: bool = False  # delete an earlier run in output_dir instead of resuming it
    generation: dict[str, Any] = Field(default_factory=dict)  # GenerationConfig fields over each method's own
    method_options: dict[str, Any] = Field(default_factory=dict)  # load_strategy options (k, temperature, corpus…)
    fields: dict[str, str] = Field(default_factory=dict)  # dataset field mapping, e.g. {"question": "q"}
    templates: Path | None = None  # a directory of templates/exemplars searched before the shipped ones
    prompt_format: Literal["auto", "text", "chat"] = "auto"  # chat: through the model's chat template
    constrain: bool = False  # every reply under the constraint its method derives (docs/structured.md)
    rel_tol: float = Field(DEFAULT_REL_TOL, ge=0)
    abs_tol: float = Field(DEFAULT_ABS_TOL, ge=0)
    budget: Budget | None = None  # limits on each episode (tokens, calls, seconds); over one is a recorded failure

    @field_validator("methods", mode="before")
    @classmethod
    def _listed(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else list(value)

    @field_validator("methods")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        repeated = sorted({m for m in value if value.count(m) > 1})
        if repeated:
            raise ValueError(f"method '{repeated[0]}' is given more than once; name each method once")
        return value

    @field_validator("generation", mode="before")
    @classmethod
    def _settings(cls, value: Any) -> Any:
        if value is None:
            return {}
        return value.model_dump(mode="json") if hasattr(value, "model_dump") else value  # a full GenerationConfig

    @field_validator("fields", mode="before")
    @classmethod
    def _mapping(cls, value: Any) -> Any:
        if value is None or isinstance(value, dict):
            return value or {}
        from agentkit.eval.datasets import parse_field_mapping

        return parse_field_mapping(value)

    @classmethod
    def of(cls, **values: Any) -> BenchmarkConfig:
        """``BenchmarkConfig(**values)``, with a bad value as one ``ConfigError`` naming the setting."""
        from pydantic import ValidationError

        try:
            return cls(**values)
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(p) for p in error["loc"]) or "config"
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = f"unknown setting; the settings are: {', '.join(cls.model_fields)}"
            raise ConfigError(f"benchmark {where}: {message}") from None

    @classmethod
    def from_settings(cls, settings: Settings, **values: Any) -> BenchmarkConfig:
        """A config whose generation and method options come from the commands' shared ``Settings``."""
        if settings.shots is not None:
            values.setdefault("shots", settings.shots)
        if settings.prompt_format is not None:
            values.setdefault("prompt_format", settings.prompt_format)
        if settings.constrain:
            values.setdefault("constrain", True)
        return cls.of(generation=settings.generation(), method_options=settings.method_options(), **values)

    @property
    def dataset_name(self) -> str:
        return str(self.dataset) if isinstance(self.dataset, (str, Path)) else "<examples>"

    def identity(self, *, model: str, fingerprint: str, method_options: dict[str, Any]) -> dict[str, Any]:
        """``config.json``: what a resumed run must share with the run it continues."""
        from agentkit.records import jsonable

        identity = {
            "dataset": self.dataset_name,
            "dataset_fingerprint": fingerprint,
            "fields": self.fields,
            "model": model,
            "shots": self.shots,
            "generation": jsonable(self.generation),
            "method_options": jsonable(method_options),
            "rel_tol": self.rel_tol,
            "abs_tol": self.abs_tol,
        }
        if self.templates is not None:  # only when set, so runs made before the setting existed still resume
            identity["templates"] = str(self.templates)
        if self.budget is not None and self.budget.limited:  # likewise
            identity["budget"] = self.budget.model_dump(exclude_none=True)
        if self.constrain:  # likewise
            identity["constrain"] = True
        return identity
