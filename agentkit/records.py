"""Results as plain JSON data: the one converter behind ``agentkit run --json``, chat's ``/save`` and the
benchmark's ``samples.jsonl``.

``jsonable(value)`` turns a ``Result`` (and anything inside it: pydantic models such as a ReAct trajectory,
dataclasses, containers) into JSON-ready data. With a ``timing`` dict, wall-clock numbers (``duration``,
``tool_seconds``...) are moved out into it under their dotted path, so what is left is a deterministic function
of the run (the harness compares resumed and uninterrupted runs that way). ``typed_answer`` gives an answer as
a JSON number when the method answers numbers.

Deliberately not here: what a record holds (the harness adds gold and verdict; chat adds mode and model).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from agentkit.answers import canonical_number, exact_value

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_TIME_KEYS = frozenset({"duration", "elapsed", "seconds", "wall_time", "started_at", "finished_at"})


def is_time_key(key: str) -> bool:
    return key in _TIME_KEYS or key.endswith("_seconds")


def jsonable(value: Any, timing: dict[str, float] | None = None, path: str = "") -> Any:
    """Plain JSON data from pydantic models, dataclasses and containers.

    With ``timing``, wall-clock numbers are moved out into it under their dotted path
    (``trajectory.steps.0.tool_seconds``); without it they stay where they are.
    """
    if isinstance(value, BaseModel):
        try:
            value = value.model_dump(mode="json")
        except Exception:  # noqa: BLE001 - arbitrary types inside: fall back to python mode
            value = value.model_dump()
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            key = str(k)
            where = f"{path}.{key}" if path else key
            if timing is not None and is_time_key(key) and (v is None or isinstance(v, (int, float))):
                if v:
                    timing[where] = round(float(v), 4)
                continue
            out[key] = jsonable(v, timing, where)
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v, timing, f"{path}.{i}" if path else str(i)) for i, v in enumerate(value)]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return _ADDRESS.sub("", repr(value))  # "<function f at 0x7f..>" -> "<function f>": stable across runs


def typed_answer(answer: str | None, kind: str) -> str | int | float | None:
    """``answer`` as a JSON number when ``kind`` is ``"number"`` and it is a number in its canonical spelling
    (``"42"`` -> 42, at any size); a value that no float holds exactly (``"1/3"``) stays text."""
    if answer is None or kind != "number" or canonical_number(answer) != answer.strip():
        return answer
    value = exact_value(answer)
    if value.denominator == 1:
        return value.numerator
    number = float(value)
    return number if canonical_number(number) == answer.strip() else answer
