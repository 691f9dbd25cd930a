"""The sandbox's processes as the host sees them through /proc, for the sandbox tests."""

from __future__ import annotations

import time


def children(pid: int) -> set[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return {int(p) for p in f.read().split()}


def template_pid(slot) -> int:
    """The process that forks a worker's programs: the process the parent started, or -- where the template runs
    as PID 1 of a PID namespace of its own -- its only child (the started process just waits for it)."""
    pid = slot.proc.pid
    if not slot.layers.get("pidns"):
        return pid
    end = time.monotonic() + 5
    while not (kids := children(pid)) and time.monotonic() < end:
        time.sleep(0.01)
    (inner,) = kids
    return inner
