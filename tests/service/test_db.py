"""Schema creation, migrations both ways, and the ORM agreeing with the migrations."""

from __future__ import annotations

import os
import re
import sqlite3
import threading
import time

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from support import poll

from service.db import (
    current_revision,
    downgrade,
    ensure_schema,
    get_engine,
    head_revision,
    known_revisions,
    make_engine,
    session_scope,
    upgrade,
)
from service.errors import ConfigError, DatabaseError
from service.schema import Base

TABLES = {"experiments", "runs", "run_params", "run_tags", "losses", "datasets"}


def test_a_new_database_is_created_at_head(database_url: str) -> None:
    engine = get_engine(database_url)
    assert current_revision(engine) == head_revision()
    assert TABLES <= set(inspect(engine).get_table_names())


def test_migrations_go_down_to_base_and_up_again(database_url: str) -> None:
    engine = make_engine(database_url)
    upgrade(engine)
    downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) - {"alembic_version"} == set()
    assert current_revision(engine) is None
    upgrade(engine)
    assert current_revision(engine) == head_revision()


def test_the_orm_and_the_migrations_agree(database_url: str) -> None:
    engine = make_engine(database_url)
    upgrade(engine)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []


def test_a_database_at_an_older_revision_names_the_upgrade_command(database_url: str) -> None:
    engine = make_engine(database_url)
    upgrade(engine)
    older = sorted(known_revisions() - {head_revision()})[0]
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": older})
    with pytest.raises(DatabaseError, match="run `expq db upgrade`") as caught:
        ensure_schema(engine)
    assert "\n" not in str(caught.value)


def test_a_database_newer_than_expq_says_so_and_upgrade_refuses_it(database_url: str) -> None:
    engine = make_engine(database_url)
    upgrade(engine)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    for attempt in (ensure_schema, upgrade):
        with pytest.raises(DatabaseError, match="newer than this expq knows") as caught:
            attempt(engine)
        assert "\n" not in str(caught.value)
        assert "db upgrade" not in str(caught.value)
    assert current_revision(engine) == "9999_future"


def test_a_read_never_creates_a_database_or_its_schema(tmp_path, postgresql_url: str) -> None:
    missing = tmp_path / "typo" / "expq.db"
    with pytest.raises(DatabaseError, match="no expq database at"):
        get_engine(f"sqlite:///{missing}", create=False)
    assert not (tmp_path / "typo").exists()
    with pytest.raises(DatabaseError, match="no expq schema"):
        get_engine(postgresql_url, create=False)
    assert inspect(make_engine(postgresql_url)).get_table_names() == []


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("notaurl", "is not a database URL"),
        ("foo://bar", "names the database 'foo'"),
        ("mysql://user@host/db", "names the database 'mysql'"),
        ("postgresql+asyncpg://user@127.0.0.1/db", "'postgresql+asyncpg', which is not installed"),
    ],
)
def test_a_database_url_expq_cannot_use_is_a_config_error(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        make_engine(url)


def test_an_unreachable_database_is_one_line_without_its_password() -> None:
    engine = make_engine("postgresql+psycopg://expq:hunter2@127.0.0.1:1/expq?connect_timeout=2")
    with pytest.raises(DatabaseError, match="database unreachable") as caught:
        ensure_schema(engine)
    assert "hunter2" not in str(caught.value)
    assert "\n" not in str(caught.value)


def _exit_code(pid: int) -> int:
    def reaped() -> tuple[int] | None:
        done, status = os.waitpid(pid, os.WNOHANG)
        return (os.waitstatus_to_exitcode(status),) if done == pid else None

    return poll(reaped, 30, f"child {pid} to exit")[0]


def test_a_fork_waits_for_a_sqlite_transaction_in_flight(sqlite_url: str) -> None:
    """Celery forks a new pool process while the worker's main process writes (the reaper, a
    dead process's lease): the child must not inherit that transaction's lock state, or the
    database stays locked to it for ever."""
    engine = make_engine(sqlite_url)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE marks (who TEXT)"))
    inside = threading.Event()

    def write() -> None:
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO marks VALUES ('parent')"))
            inside.set()
            time.sleep(0.3)  # the fault: a transaction still in flight when the fork comes

    writer = threading.Thread(target=write)
    writer.start()
    assert inside.wait(10)
    pid = os.fork()
    if pid == 0:  # the child writes, as a new pool process's claim would
        code = 1
        try:
            path = make_url(sqlite_url).database
            child = sqlite3.connect(path, timeout=2, isolation_level=None)
            child.execute("BEGIN IMMEDIATE")
            # The fork waited for the parent's commit: its row is there.
            if child.execute("SELECT who FROM marks").fetchall() == [("parent",)]:
                child.execute("INSERT INTO marks VALUES ('child')")
                child.execute("COMMIT")
                code = 0
        finally:
            os._exit(code)
    writer.join(10)
    assert _exit_code(pid) == 0
    with engine.connect() as connection:
        marks = connection.execute(text("SELECT who FROM marks")).scalars().all()
    assert sorted(marks) == ["child", "parent"]


def test_postgresql_ends_only_writing_transactions_left_idle(
    postgresql_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer that stops answering mid-transaction is ended after the bound; a reader (an
    export into a slow pipe) may pause as long as it likes."""
    import service.db

    monkeypatch.setattr(service.db, "TRANSACTION_IDLE_TIMEOUT_SECONDS", 0.5)
    engine = make_engine(postgresql_url)
    with session_scope(engine, read_only=True) as reader:
        reader.execute(text("SELECT 1"))
        time.sleep(1)  # the fault: the reader's consumer pauses past the bound
        assert reader.execute(text("SELECT 2")).scalar() == 2
    with pytest.raises(DBAPIError, match="idle-in-transaction timeout"):
        with session_scope(engine) as writer:
            writer.execute(text("SELECT 1"))
            time.sleep(1)  # the fault: a writer frozen mid-transaction
            writer.execute(text("SELECT 2"))
    with engine.connect() as connection:  # the pool hands out a live connection again
        assert connection.execute(text("SELECT 3")).scalar() == 3


def test_a_fork_inherits_no_open_sqlite_connection(sqlite_url: str) -> None:
    """The pool's idle connection is closed before the fork and reopened after it."""
    engine = make_engine(sqlite_url)
    with engine.begin() as connection:  # leaves one connection idle in the pool
        connection.execute(text("CREATE TABLE marks (who TEXT)"))
    pid = os.fork()
    if pid == 0:
        database = os.path.realpath(make_url(sqlite_url).database)
        links = [os.path.realpath(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")]
        os._exit(1 if any(link.startswith(database) for link in links) else 0)
    assert _exit_code(pid) == 0
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO marks VALUES ('parent')"))
    with engine.connect() as connection:
        assert connection.execute(text("SELECT who FROM marks")).scalars().all() == ["parent"]
