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
def fleet_broker() -> str:
    """The fleet's broker: Redis, or each broker in turn for a test marked
    `faults.fleet.ON_EACH_BROKER`."""
    return "redis"


@pytest.fixture
def fleet(
    request: pytest.FixtureRequest,
    fleet_broker: str,
    tmp_path: Path,
    worker_factory,  # noqa: ANN001
) -> Fleet:
    """The fleet on PostgreSQL, or on each database in turn for a test marked
    `faults.fleet.ON_EACH_DATABASE`."""
    database_url = request.getfixturevalue(f"{getattr(request, 'param', 'postgresql')}_url")
    broker_url = request.getfixturevalue(f"{fleet_broker}_url")
    env = expq_env(tmp_path, database_url, broker_url, **FAULT_ENV)
    return Fleet(database_url, broker_url, env, worker_factory)
