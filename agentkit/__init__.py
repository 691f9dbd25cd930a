"""agentkit: build and measure agents that reason and act on a local language model.

Importing the package is cheap: torch and transformers load only when a ``TransformersLLM`` is created.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it (imported on first use)
_EXPORTS = {
    "GenerationConfig": "agentkit.llm",
    "Constraint": "agentkit.llm",
    "Completion": "agentkit.llm",
    "LLM": "agentkit.llm",
    "ScriptedLLM": "agentkit.llm",
    "TransformersLLM": "agentkit.engine",
    "ServerLLM": "agentkit.serving",
    "Sandbox": "agentkit.tools.sandbox",
    "ExecResult": "agentkit.tools.sandbox",
    "Templates": "agentkit.prompting",
    "Result": "agentkit.result",
    "run_episode": "agentkit.runtime",
    "run_episodes": "agentkit.runtime",
    "Direct": "agentkit.strategies.direct",
    "CoT": "agentkit.strategies.cot",
    "PAL": "agentkit.strategies.pal",
    "SelfConsistency": "agentkit.strategies.self_consistency",
    "ReAct": "agentkit.strategies.react",
    "tool": "agentkit.tools.base",
    "Tool": "agentkit.tools.base",
    "load_strategy": "agentkit.strategies",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'agentkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # pragma: no cover
    from agentkit.engine import TransformersLLM
    from agentkit.llm import LLM, Completion, Constraint, GenerationConfig, ScriptedLLM
    from agentkit.serving import ServerLLM
    from agentkit.tools.sandbox import ExecResult, Sandbox
