"""Engines, the one transaction helper, and the schema check that runs on first use."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from service.errors import DatabaseError

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # noqa: ANN001
        # Hand transaction control to SQLAlchemy's "begin" event below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:  # noqa: ANN001
        # Take the write lock up front: a deferred transaction that upgrades to a writer
        # fails with "database is locked" instead of waiting out the busy timeout.
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str) -> Engine:
    """An engine for `url`: SQLite in WAL mode with immediate transactions, or a pre-pinged pool."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        _configure_sqlite(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


_engines: dict[tuple[int, str], Engine] = {}


def get_engine(url: str) -> Engine:
    """One engine per process and URL, checked against the migrations on first use.

    Keyed by pid: a Celery prefork child must not share its parent's connections.
    """
    key = (os.getpid(), url)
    if key not in _engines:
        engine = make_engine(url)
        ensure_schema(engine)
        _engines[key] = engine
    return _engines[key]


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One transaction: commit on success, roll back on error, always close."""
    session = sessionmaker(engine, expire_on_commit=False)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def _alembic_config(engine: Engine):  # noqa: ANN202 - alembic is imported lazily
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    config = _alembic_config(None)  # type: ignore[arg-type]
    return ScriptDirectory.from_config(config).get_current_head()


def current_revision(engine: Engine) -> str | None:
    from alembic.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    try:
        command.upgrade(_alembic_config(engine), revision)
    except OperationalError as exc:
        raise _unreachable(engine, exc) from exc


def downgrade(engine: Engine, revision: str = "base") -> None:
    from alembic import command

    command.downgrade(_alembic_config(engine), revision)


def ensure_schema(engine: Engine) -> None:
    """Create an empty database at head; refuse one at another revision with the fix to run."""
    try:
        tables = set(inspect(engine).get_table_names())
        current = current_revision(engine) if "alembic_version" in tables else None
    except OperationalError as exc:
        raise _unreachable(engine, exc) from exc
    if current is None and not (tables - {"alembic_version"}):
        upgrade(engine)
        return
    head = head_revision()
    if current != head:
        raise DatabaseError(
            f"database schema is at revision {current or 'none'}, expq needs {head}: "
            "run `expq db upgrade`"
        )


def _unreachable(engine: Engine, exc: OperationalError) -> DatabaseError:
    where = engine.url.render_as_string(hide_password=True)
    lines = str(exc.orig or exc).strip().splitlines()
    return DatabaseError(f"database unreachable at {where}: {lines[0] if lines else exc}")
