"""service/db.py on a silent network: every PostgreSQL call fails within its stated bound
instead of hanging for the whole cut, and a session whose client vanished stops blocking others.

The client runs in its own network namespace; the cut is an nftables rule that drops packets
(nothing refused), the fault that used to hang a worker's heartbeat for the kernel's ~15 minutes.
"""

from __future__ import annotations

import time

import partition_support
import pytest
from partition_support import Child
from sqlalchemy import create_engine, text

from benchmarks.chaos.network import Cut
from service.db import (
    CONNECT_TIMEOUT_SECONDS,
    NETWORK_TIMEOUT_SECONDS,
    TRANSACTION_IDLE_TIMEOUT_SECONDS,
)

pytestmark = pytest.mark.integration
network = partition_support.network
namespace = partition_support.namespace
bridged_postgres = partition_support.bridged_postgres
# A loaded 2-core machine wakes a timed-out process late; a missing bound hangs for minutes.
SLACK_SECONDS = 4.0
_QUERY_ON_AN_OPEN_CONNECTION = """
import sys, time
from sqlalchemy import text
from service.db import make_engine
engine = make_engine(sys.argv[1])
with engine.connect() as connection:
    connection.execute(text("SELECT 1"))
    print("ready", flush=True)
    sys.stdin.readline()
    started = time.monotonic()
    try:
        connection.execute(text("SELECT 1"))
        print(f"answered {time.monotonic() - started:.2f}", flush=True)
    except Exception as exc:
        print(f"failed {time.monotonic() - started:.2f} {type(exc).__name__}", flush=True)
"""
_CONNECT = """
import sys, time
from sqlalchemy import text
from service.db import make_engine
print("ready", flush=True)
sys.stdin.readline()
started = time.monotonic()
try:
    with make_engine(sys.argv[1]).connect() as connection:
        connection.execute(text("SELECT 1"))
    print(f"answered {time.monotonic() - started:.2f}", flush=True)
except Exception as exc:
    print(f"failed {time.monotonic() - started:.2f} {type(exc).__name__}", flush=True)
"""
_HOLD_A_ROW_LOCK = """
import sys
from sqlalchemy import text
from service.db import make_engine
with make_engine(sys.argv[1]).connect() as connection:
    connection.execute(text("SELECT id FROM held WHERE id = 1 FOR UPDATE"))
    print("locked", flush=True)
    sys.stdin.readline()
"""


def _outcome(child: Child, bound: float) -> tuple[str, float]:
    line = child.line(bound + 30)
    assert line is not None, f"the call still hangs {bound + 30:g} s into the cut"
    verdict, seconds, *_ = line.split()
    return verdict, float(seconds)


@pytest.mark.parametrize("cut", ["partition", "drop_replies"])
def test_a_query_on_an_open_connection_fails_within_the_network_timeout(
    cut: str,
    namespace,
    bridged_postgres,  # noqa: ANN001
) -> None:
    child = Child(
        namespace, _QUERY_ON_AN_OPEN_CONNECTION, bridged_postgres.url(namespace.host_address)
    )
    try:
        assert child.line(60) == "ready"
        namespace.apply([Cut(cut, (bridged_postgres.port,))])
        child.say()
        verdict, seconds = _outcome(child, NETWORK_TIMEOUT_SECONDS)
    finally:
        child.stop()
    assert verdict == "failed"
    assert seconds <= NETWORK_TIMEOUT_SECONDS + SLACK_SECONDS


def test_a_connect_into_a_partition_fails_within_the_connect_timeout(
    namespace,
    bridged_postgres,  # noqa: ANN001
) -> None:
    child = Child(namespace, _CONNECT, bridged_postgres.url(namespace.host_address))
    try:
        assert child.line(60) == "ready"
        namespace.apply([Cut("partition", (bridged_postgres.port,))])
        child.say()
        verdict, seconds = _outcome(child, CONNECT_TIMEOUT_SECONDS)
    finally:
        child.stop()
    assert verdict == "failed"
    assert seconds <= CONNECT_TIMEOUT_SECONDS + SLACK_SECONDS


def test_a_lock_held_by_a_cut_off_client_is_released_within_the_bound(
    namespace,
    bridged_postgres,  # noqa: ANN001
) -> None:
    """Another worker's claim waits at most max(idle timeout, network timeout) for a row
    whose holder was cut off mid-transaction."""
    admin = create_engine(bridged_postgres.url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text("DROP TABLE IF EXISTS held"))
        connection.execute(text("CREATE TABLE held (id int PRIMARY KEY)"))
        connection.execute(text("INSERT INTO held VALUES (1)"))
    child = Child(namespace, _HOLD_A_ROW_LOCK, bridged_postgres.url(namespace.host_address))
    try:
        assert child.line(60) == "locked"
        namespace.apply([Cut("partition", (bridged_postgres.port,))])
        cut_at = time.monotonic()
        with admin.connect() as connection:
            connection.execute(text("SET lock_timeout = '60s'"))
            connection.execute(text("SELECT id FROM held WHERE id = 1 FOR UPDATE"))
        waited = time.monotonic() - cut_at
    finally:
        child.stop()
        admin.dispose()
    bound = max(TRANSACTION_IDLE_TIMEOUT_SECONDS, NETWORK_TIMEOUT_SECONDS)
    assert waited <= bound + SLACK_SECONDS


def test_each_session_carries_the_network_bounds_and_a_url_may_override_them(
    postgresql_url: str,
) -> None:
    from service.db import make_engine

    engine = make_engine(postgresql_url)
    with engine.connect() as connection:
        client = connection.connection.dbapi_connection.info.get_parameters()
        server = connection.execute(text("SHOW tcp_user_timeout")).scalar_one()
    engine.dispose()
    assert client["connect_timeout"] == str(CONNECT_TIMEOUT_SECONDS)
    assert client["tcp_user_timeout"] == str(NETWORK_TIMEOUT_SECONDS * 1000)
    assert server == str(NETWORK_TIMEOUT_SECONDS * 1000)  # milliseconds
    separator = "&" if "?" in postgresql_url else "?"
    engine = make_engine(f"{postgresql_url}{separator}connect_timeout=30")
    with engine.connect() as connection:
        client = connection.connection.dbapi_connection.info.get_parameters()
    engine.dispose()
    assert client["connect_timeout"] == "30"
