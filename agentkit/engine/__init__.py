"""Local-model backend: ``TransformersLLM`` (transformers + torch) with a continuous-batching engine.

Importing this package is cheap: torch and transformers load only when ``TransformersLLM`` is first touched.
``EngineConfig`` (the engine's knobs) and ``EngineStats`` (its counters) import without them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentkit.engine.config import EngineConfig, EngineStats
from agentkit.engine.loading import CACHE_ENV, ModelLoadError, cache_dir

if TYPE_CHECKING:
    from agentkit.engine.transformers_llm import EngineSession, TransformersLLM

__all__ = [
    "CACHE_ENV",
    "EngineConfig",
    "EngineSession",
    "EngineStats",
    "ModelLoadError",
    "TransformersLLM",
    "cache_dir",
]


def __getattr__(name: str) -> Any:
    if name in ("TransformersLLM", "EngineSession"):
        from agentkit.engine import transformers_llm

        return getattr(transformers_llm, name)
    raise AttributeError(f"module 'agentkit.engine' has no attribute {name!r}")
