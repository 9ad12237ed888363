"""Fixtures for partition tests: a private PostgreSQL on a bridge, and a network namespace
whose traffic with it nftables can cut. Skipped, with the reason, where namespaces cannot be
made (not root, no nftables)."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.chaos.network import Namespace, Network, unavailable_reason
from benchmarks.chaos.services import Postgres

REPOSITORY = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def network() -> Iterator[Network]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    made = Network(1).create()
    try:
        yield made
    finally:
        made.destroy()


@pytest.fixture
def namespace(network: Network) -> Iterator[Namespace]:
    """The namespace, healed after each test."""
    space = network.namespaces[0]
    space.apply([])
    yield space
    space.apply([])


@pytest.fixture(scope="module")
def bridged_postgres(
    network: Network, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Postgres]:
    root = tmp_path_factory.mktemp("postgres")
    for folder in (root, *root.parents):
        if folder == Path("/tmp") or folder == Path("/"):
            break
        os.chmod(folder, os.stat(folder).st_mode | 0o011)  # PostgreSQL's user passes through
    server = Postgres(root / "cluster").create()
    try:
        yield server
    finally:
        server.destroy()


class Child:
    """A Python process inside a namespace that prints lines the test waits for."""

    def __init__(self, namespace: Namespace, script: str, *args: str) -> None:
        self.process = subprocess.Popen(
            [*namespace.exec_prefix(), sys.executable, "-c", script, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPOSITORY,
        )

    def line(self, timeout: float) -> str | None:
        """Its next line of output, or None if none came within `timeout` seconds."""
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready:
            return None
        line = self.process.stdout.readline()
        if not line:
            raise AssertionError(f"the child exited: {self.process.stderr.read()[-2000:]}")
        return line.strip()

    def say(self, text: str = "go") -> float:
        self.process.stdin.write(text + "\n")
        self.process.stdin.flush()
        return time.monotonic()

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()
