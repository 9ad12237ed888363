"""Helpers shared by the tests: polling with a deadline, expq processes as users run them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def poll(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Call `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def expq_env(tmp_path: Path, database_url: str, broker_url: str, **extra: str) -> dict[str, str]:
    """The environment of an expq process in a test: its own home, short leases."""
    return {
        **os.environ,
        "EXPQ_HOME": str(tmp_path / "home"),
        "EXPQ_DATABASE_URL": database_url,
        "EXPQ_BROKER_URL": broker_url,
        "EXPQ_HEARTBEAT_SECONDS": "0.5",
        "EXPQ_LEASE_SECONDS": "5",
        "EXPQ_REAP_SECONDS": "1",
        "OMP_NUM_THREADS": "1",
        **extra,
    }


def run_cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`expq ARGS...` as a user runs it: a separate process."""
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@dataclass
class Split:
    """One split's numbers for an epoch, shaped like models.training.SplitReport."""

    total: float
    per_timestep: list[float] = field(default_factory=list)
    metric: float = 0.5


def new_run(engine, task: str = "translation", experiment: str = "exp", **spec_fields):  # noqa: ANN001, ANN201
    """A queued run of `task` with the RNN, tagged team=a."""
    from models.spec import spec_from_dict
    from service.store import NewRun, create_run

    spec = spec_from_dict({"task": task, "model": "rnn", **spec_fields})
    new = NewRun(experiment=experiment, queue="cpu", tags={"team": "a"})
    return create_run(engine, spec.to_dict(), spec.params(), new)


def claim(engine, run_id: int, lease: float = 30.0) -> int:  # noqa: ANN001
    """Claim `run_id` as worker "host"; the attempt number."""
    from service.lifecycle import claim_run

    attempt = claim_run(
        engine, run_id, owner="w1", worker="host", device="cpu", lease_seconds=lease
    )
    assert attempt is not None
    return attempt
