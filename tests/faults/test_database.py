"""The database away when a worker starts: the worker waits, says why (password masked), and
consumes nothing until it can claim; then the run trains once."""

from __future__ import annotations

from pathlib import Path

import pytest
from faults.fleet import FAULT_ENV, QUICK, Fleet
from sqlalchemy.engine import make_url
from support import TcpProxy, assert_settled, expq_env, log_has, poll, read_log

pytestmark = pytest.mark.integration

PASSWORD = "s3cret-db-pw"


def test_a_worker_started_without_its_database_waits_for_it(
    postgresql_url: str,
    redis_url: str,
    tmp_path: Path,
    worker_factory,  # noqa: ANN001
) -> None:
    real = make_url(postgresql_url)
    proxy = TcpProxy(real.port or 5432)  # closed: connections are refused
    # The server trusts local clients, so the password is never checked: only carried.
    behind_proxy = real.set(port=proxy.port, password=PASSWORD)
    env = expq_env(
        tmp_path,
        behind_proxy.render_as_string(hide_password=False),
        redis_url,
        **FAULT_ENV,
    )
    fleet = Fleet(postgresql_url, redis_url, env, worker_factory)
    try:
        worker = fleet.worker()
        poll(lambda: log_has(worker.log_path, "database unreachable at"), 30, "the first retry")
        (run_id,) = fleet.submit({**QUICK, "epochs": 2})
        poll(
            lambda: log_has(worker.log_path, "database unreachable at", times=3),
            30,
            "two more retries",
        )
        # Nothing was consumed meanwhile: the message waits in Redis, the run in the database.
        import redis

        assert redis.Redis.from_url(redis_url).llen("cpu:9") == 1
        assert fleet.run(run_id).status == "queued" and worker.poll() is None
        proxy.open()
        done = fleet.wait_status(run_id, "succeeded")
        assert done.attempt == 1
        assert_settled(fleet.engine, [run_id])
        log = read_log(worker.log_path)
        assert PASSWORD not in log and f"postgres:***@127.0.0.1:{proxy.port}" in log
    finally:
        proxy.close()
