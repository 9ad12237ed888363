"""Shared fixtures: databases (SQLite always, PostgreSQL when EXPQ_TEST_DATABASE_URL is set),
brokers (the embedded one always, real Redis when EXPQ_TEST_REDIS_URL is set), worker processes.
"""

from __future__ import annotations

import os
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from service.demo import embedded_broker, start_worker, stop_worker

TEST_DATABASE_URL = os.environ.get("EXPQ_TEST_DATABASE_URL")
BACKENDS = ["sqlite", "postgresql"]
# Tests that start fleets, cut networks or time recoveries run one after another on one
# pytest-xdist worker (`make test` runs two), so that they never meet each other's faults;
# the rest spread over both.
_ONE_AT_A_TIME = (
    "tests/faults/", "tests/chaos/", "tests/test_", "tests/service/test_demo.py",
    "tests/service/test_db_partitions.py",
)  # fmt: skip


def _own_redis_database(url: str | None) -> str | None:
    """EXPQ_TEST_REDIS_URL for this xdist worker: gwN gets the database N below the given one,
    since tests empty theirs."""
    index = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:])
    if url is None or index == 0:
        return url
    parts = urlsplit(url)
    database = (int(parts.path.strip("/") or 0) - index) % 16
    return urlunsplit(parts._replace(path=f"/{database}"))


TEST_REDIS_URL = _own_redis_database(os.environ.get("EXPQ_TEST_REDIS_URL"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid.startswith(_ONE_AT_A_TIME):
            item.add_marker(pytest.mark.xdist_group("one_at_a_time"))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'expq.db'}"


@pytest.fixture
def postgresql_url() -> Iterator[str]:
    """A fresh schema in the test PostgreSQL database, dropped afterwards."""
    if not TEST_DATABASE_URL:
        pytest.skip("EXPQ_TEST_DATABASE_URL is not set")
    schema = f"expq_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(TEST_DATABASE_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(TEST_DATABASE_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    rendered = url.render_as_string(hide_password=False)
    try:
        yield rendered
    finally:
        _dispose_engines(rendered)
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _dispose_engines(url: str) -> None:
    """Close the pooled connections this process keeps for `url`: a whole run's leftovers
    would exceed PostgreSQL's max_connections."""
    from service import db

    for key in [key for key in db._engines if key[1] == url]:
        db._engines.pop(key).dispose()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def engine(database_url: str):  # noqa: ANN201
    from service.db import get_engine

    return get_engine(database_url)


@pytest.fixture
def embedded_broker_url() -> Iterator[str]:
    with embedded_broker() as url:
        yield url


@pytest.fixture
def redis_url() -> str:
    """The real Redis of EXPQ_TEST_REDIS_URL, emptied for this test."""
    if not TEST_REDIS_URL:
        pytest.skip("EXPQ_TEST_REDIS_URL is not set")
    import redis

    client = redis.Redis.from_url(TEST_REDIS_URL)
    client.flushdb()
    client.close()
    return TEST_REDIS_URL


@pytest.fixture
def worker_factory(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """Starts real `expq worker` processes (own process groups); stops them all afterwards.

    `start(env, concurrency=1, queues="cpu,auto", loglevel="WARNING")`; the process has
    `log_path`, the file its output goes to.
    """
    started: list[subprocess.Popen] = []

    def start(env: dict[str, str], concurrency: int = 1, **options: str) -> subprocess.Popen:
        log_path = tmp_path / f"worker-{len(started)}.log"
        process = start_worker(env, log_path, concurrency, **options)
        process.log_path = log_path  # type: ignore[attr-defined]
        started.append(process)
        return process

    yield start
    # In parallel: each warm shutdown takes about a second.
    threads = [threading.Thread(target=stop_worker, args=(p, 5)) for p in started]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


TEST_RABBITMQ_URL = os.environ.get("EXPQ_TEST_RABBITMQ_URL")


@pytest.fixture
def rabbitmq_url() -> Iterator[str]:
    """A vhost of this test's own on the RabbitMQ of EXPQ_TEST_RABBITMQ_URL (an amqp:// URL
    without a vhost), deleted afterwards."""
    if not TEST_RABBITMQ_URL:
        pytest.skip("EXPQ_TEST_RABBITMQ_URL is not set")
    from urllib.parse import urlsplit

    from support import rabbitmqctl

    vhost = f"expq_test_{uuid.uuid4().hex[:10]}"
    user = urlsplit(TEST_RABBITMQ_URL).username or "guest"
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
        yield f"{TEST_RABBITMQ_URL.rstrip('/')}/{vhost}"
    finally:
        rabbitmqctl("delete_vhost", vhost)


@pytest.fixture(params=["redis", "rabbitmq"])
def broker_url(request: pytest.FixtureRequest) -> str:
    """Each real broker in turn."""
    return request.getfixturevalue(f"{request.param}_url")
