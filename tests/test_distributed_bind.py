"""``--ray`` without an address: a cluster this machine belongs to is joined, else a local Ray starts on loopback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agentkit.eval.distributed import LOOPBACK_RAY, init_ray

LOOPBACK = {"0100007F", "00000000000000000000000001000000", "0000000000000000FFFF00000100007F"}


def listeners() -> set[str]:
    """Every listening TCP socket on this machine, as ``HEXADDRESS:HEXPORT`` from /proc/net/tcp and tcp6."""
    found = set()
    for table in ("tcp", "tcp6"):
        path = Path("/proc/net") / table
        for line in path.read_text().splitlines()[1:] if path.exists() else []:
            local, state = line.split()[1], line.split()[3]
            if state == "0A":
                found.add(local)
    return found


class FakeRay:
    def __init__(self, cluster: bool):
        self.cluster, self.calls = cluster, []

    def init(self, address=None, **options):
        self.calls.append((address, os.environ.get(LOOPBACK_RAY)))
        if address == "auto" and not self.cluster:
            raise ConnectionError("Could not find any running Ray instance")


@pytest.mark.parametrize(
    "address, cluster, calls",
    [
        ("ray://head:10001", False, [("ray://head:10001", None)]),
        (None, True, [("auto", None)]),  # this machine's cluster, as it is
        (None, False, [("auto", None), ("local", "0")]),  # a new one, in Ray's loopback mode
    ],
)
def test_which_ray_is_joined_or_started(address, cluster, calls, monkeypatch):
    monkeypatch.delenv(LOOPBACK_RAY, raising=False)
    ray = FakeRay(cluster)
    init_ray(ray, address)
    assert ray.calls == calls and LOOPBACK_RAY not in os.environ


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads listening sockets from /proc/net")
def test_a_local_ray_listens_on_loopback_only():
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        ray.shutdown()
    before = listeners()
    init_ray(ray, None)
    try:
        opened = listeners() - before
    finally:
        ray.shutdown()
    assert opened, "Ray started without listening anywhere?"
    public = sorted(a for a in opened if a.rsplit(":", 1)[0] not in LOOPBACK)
    assert public == [], f"a local Ray listens beyond loopback: {public}"
