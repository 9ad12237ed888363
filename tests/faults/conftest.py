"""Fixtures of the fault suite.

Every test here ends with `support.assert_settled` on the runs it made. Nothing sleeps to
synchronise: tests poll the database, a worker's log or a process's state with a deadline.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from faults.fleet import FAULT_ENV, Fleet
from support import expq_env


@pytest.fixture
def fleet(postgresql_url: str, redis_url: str, tmp_path: Path, worker_factory) -> Fleet:  # noqa: ANN001
    env = expq_env(tmp_path, postgresql_url, redis_url, **FAULT_ENV)
    return Fleet(postgresql_url, redis_url, env, worker_factory)
