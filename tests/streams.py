"""Test helper: consume a model's stream."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any


def drain(stream: Generator[str, None, Any]) -> tuple[list[str], Any]:
    """The pieces a stream yields and the value it returns (a model's stream returns its Completion)."""
    pieces = []
    while True:
        try:
            pieces.append(next(stream))
        except StopIteration as end:
            return pieces, end.value
