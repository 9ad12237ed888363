"""Engines, the transaction helpers (ORM and Core), and the schema check that runs on first use."""

from __future__ import annotations

import functools
import logging
import os
import re
import sqlite3
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

from service.errors import ConfigError, DatabaseError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
BACKENDS = ("sqlite", "postgresql")
SQLITE_BUSY_TIMEOUT_MS = 30_000
FORK_WAIT_SECONDS = SQLITE_BUSY_TIMEOUT_MS / 1000
# On PostgreSQL, a transaction that may write and whose client stops answering mid-way (frozen,
# paused, cut off) is ended by the server after this long idle, and its row locks with it: the
# most that a worker frozen inside a write adds to its run's recovery (README "Recovery").
TRANSACTION_IDLE_TIMEOUT_SECONDS = 10.0
# A silent network (a partition, lost replies) must fail a call rather than hang it: libpq
# gives up a connect after CONNECT_TIMEOUT_SECONDS, and a connection whose sent data or
# keepalive probes go unacknowledged for NETWORK_TIMEOUT_SECONDS (TCP_USER_TIMEOUT) is closed,
# so any call on it fails by then (README "Recovery"). Without them a query on an open
# connection waits out the whole cut, and the kernel's retries (~15 minutes) after it.
CONNECT_TIMEOUT_SECONDS = 5
NETWORK_TIMEOUT_SECONDS = 8
KEEPALIVE_IDLE_SECONDS = 2  # an idle connection is probed after this, then every second
_CLIENT_NETWORK_OPTIONS = {
    "connect_timeout": CONNECT_TIMEOUT_SECONDS,
    "keepalives": 1,
    "keepalives_idle": KEEPALIVE_IDLE_SECONDS,
    "keepalives_interval": 1,
    "keepalives_count": NETWORK_TIMEOUT_SECONDS - KEEPALIVE_IDLE_SECONDS,
    "tcp_user_timeout": NETWORK_TIMEOUT_SECONDS * 1000,
}
# The same on the server's end of each session: a session whose client vanished (cut off,
# its machine gone) is ended, and its locks released, NETWORK_TIMEOUT_SECONDS after the server
# last failed to reach it, instead of when the kernel gives up.
_SERVER_NETWORK_SETTINGS = {
    "tcp_keepalives_idle": KEEPALIVE_IDLE_SECONDS,
    "tcp_keepalives_interval": 1,
    "tcp_keepalives_count": NETWORK_TIMEOUT_SECONDS - KEEPALIVE_IDLE_SECONDS,
    "tcp_user_timeout": NETWORK_TIMEOUT_SECONDS * 1000,
}
# An execution option: transactions that only read begin deferred on SQLite, so that in WAL
# mode they never queue behind a writer for the write lock.
READ_ONLY = "expq_read_only"


class _ForkGuard:
    """Closes this process's SQLite connections before a fork, and holds the fork until they are.

    SQLite keeps each open database's lock state in the process: a child forked while a
    connection is open inherits that state, and one forked inside a write transaction finds
    the database "locked" forever (sqlite.org/howtocorrupt.html, "Carrying an open database
    connection across a fork()"). Celery forks a new pool process whenever one dies, while the
    worker's main process may be writing (the reaper, the dead process's lease). So a fork
    closes the idle pooled connections, waits for those in use to come back (and closes them
    too), and lets none open until it has happened; the pools reconnect afterwards. A
    connection held longer than the busy timeout lets the fork go ahead, logged. Rejected:
    no pooling at all, since closing a WAL database's last connection checkpoints it, which
    made an epoch's write ~20 ms instead of ~1 ms.
    """

    def __init__(self) -> None:
        self._engines: weakref.WeakSet[Engine] = weakref.WeakSet()
        self._reset()
        os.register_at_fork(
            before=self._before_fork,
            after_in_parent=self._after_fork_in_parent,
            after_in_child=self._reset,
        )

    def _reset(self) -> None:
        self._changed = threading.Condition()
        self._open = 0
        self._forking = False

    def watch(self, engine: Engine) -> None:
        self._engines.add(engine)

        @event.listens_for(engine, "checkin")
        def _on_checkin(_dbapi_connection, record) -> None:  # noqa: ANN001
            if self._forking:
                record.invalidate()  # closed now; reconnected on its next checkout

    @contextmanager
    def opening(self) -> Iterator[None]:
        """Count the connection opened inside as open until `closed`."""
        with self._changed:
            self._changed.wait_for(lambda: not self._forking)
            self._open += 1
        try:
            yield
        except BaseException:
            self.closed()
            raise

    def closed(self) -> None:
        with self._changed:
            self._open -= 1
            self._changed.notify_all()

    def _before_fork(self) -> None:
        self._changed.acquire()
        self._forking = True
        for engine in list(self._engines):
            engine.pool.dispose()  # the idle connections
        if not self._changed.wait_for(lambda: self._open == 0, FORK_WAIT_SECONDS):
            log.warning("forking with %d SQLite connections open", self._open)

    def _after_fork_in_parent(self) -> None:
        self._forking = False
        self._changed.notify_all()
        self._changed.release()


_fork_guard = _ForkGuard()


class _GuardedConnection(sqlite3.Connection):
    """A SQLite connection that `_fork_guard` counts from before it opens until it is closed
    or garbage-collected."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        with _fork_guard.opening():
            super().__init__(*args, **kwargs)
        self._uncount = weakref.finalize(self, _fork_guard.closed)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._uncount()  # once only, whether by close or by the garbage collector


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
        # Writers take the write lock up front: a deferred transaction that upgrades to a
        # writer fails with "database is locked" instead of waiting out the busy timeout.
        if connection.get_execution_options().get(READ_ONLY):
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")


def _parse(url: str) -> URL:
    """`url` checked: a database URL of a backend expq supports, whose driver is installed."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(
            "EXPQ_DATABASE_URL is not a database URL; expected sqlite:///PATH "
            "or postgresql+psycopg://USER:PASSWORD@HOST:PORT/DATABASE"
        ) from None
    backend = parsed.get_backend_name()
    if backend not in BACKENDS:
        raise ConfigError(
            f"EXPQ_DATABASE_URL names the database {backend!r}; expq supports "
            f"{' and '.join(BACKENDS)}"
        )
    try:
        parsed.get_dialect().import_dbapi()
    except (ImportError, NoSuchModuleError):
        raise ConfigError(
            f"EXPQ_DATABASE_URL asks for the driver {parsed.drivername!r}, which is not "
            "installed; use sqlite:///PATH or postgresql+psycopg://..."
        ) from None
    return parsed


def sqlite_path(url: URL) -> Path | None:
    """The file a SQLite URL names; None for an in-memory database or another backend."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database).expanduser()


def make_engine(url: str, *, create: bool = True) -> Engine:
    """An engine for `url`: SQLite in WAL mode with immediate transactions, its connections
    closed around a fork (see _ForkGuard), or a pre-pinged pool.

    `create=False` refuses a SQLite file that does not exist instead of creating it (and its
    folders): read commands never make a database.
    """
    parsed = _parse(url)
    path = sqlite_path(parsed)
    if path is not None and not path.exists():
        if not create:
            raise DatabaseError(
                f"no expq database at {path}: nothing was submitted there "
                "(check EXPQ_HOME and EXPQ_DATABASE_URL)"
            )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseError(
                f"cannot create the database folder {path.parent}: {exc.strerror} "
                "(check EXPQ_HOME and EXPQ_DATABASE_URL)"
            ) from None
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(
            url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "factory": _GuardedConnection},
        )
        _configure_sqlite(engine)
        _fork_guard.watch(engine)
        return engine
    # An option the URL gives itself (`?connect_timeout=30`) wins over expq's default.
    network = {k: v for k, v in _CLIENT_NETWORK_OPTIONS.items() if k not in parsed.query}
    engine = create_engine(
        url, pool_pre_ping=True, pool_size=5, max_overflow=5, connect_args=network
    )
    if parsed.get_backend_name() == "postgresql":

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection, _record) -> None:  # noqa: ANN001
            # expq's queries are index probes that finish in milliseconds; PostgreSQL's JIT
            # spent 200 ms compiling one of them (`--sort val_loss_t[3]` on 100k runs).
            with dbapi_connection.cursor() as cursor:
                cursor.execute("SET jit = off")
                cursor.execute(
                    "SET idle_in_transaction_session_timeout = "
                    f"{int(TRANSACTION_IDLE_TIMEOUT_SECONDS * 1000)}"
                )
                for name, value in _SERVER_NETWORK_SETTINGS.items():
                    cursor.execute(f"SET {name} = {value}")
            dbapi_connection.commit()

        @event.listens_for(engine, "begin")
        def _on_begin(connection) -> None:  # noqa: ANN001
            # A transaction that only reads holds no row lock that recovery waits on, and an
            # export streams its rows as fast as the reader of its pipe goes.
            if connection.get_execution_options().get(READ_ONLY):
                connection.exec_driver_sql("SET LOCAL idle_in_transaction_session_timeout = 0")

    return engine


_engines: dict[tuple[int, str], Engine] = {}


def get_engine(url: str, *, create: bool = True) -> Engine:
    """One engine per process and URL, checked against the migrations on first use.

    Keyed by pid: a Celery prefork child must not share its parent's connections.
    `create=False` (read commands) refuses to make a database or its schema.
    """
    key = (os.getpid(), url)
    if key not in _engines:
        engine = make_engine(url, create=create)
        ensure_schema(engine, create=create)
        _engines[key] = engine
    return _engines[key]


@functools.lru_cache(maxsize=64)
def _read_only(engine: Engine) -> Engine:
    # Made once per engine: a new option engine (or sessionmaker) per transaction costs more
    # than a small epoch's whole insert.
    return engine.execution_options(**{READ_ONLY: True})


@functools.lru_cache(maxsize=64)
def _session_factory(engine: Engine, read_only: bool) -> sessionmaker:
    from sqlalchemy.orm import sessionmaker

    return sessionmaker(_read_only(engine) if read_only else engine, expire_on_commit=False)


@contextmanager
def connection_scope(engine: Engine, *, read_only: bool = False) -> Iterator[Connection]:
    """One transaction on a Core connection, as session_scope has it: for the readers, which
    need no ORM (importing it is a fifth of a read command's start-up)."""
    with (_read_only(engine) if read_only else engine).begin() as connection:
        yield connection


@contextmanager
def session_scope(engine: Engine, *, read_only: bool = False) -> Iterator[Session]:
    """One transaction: commit on success, roll back on error, always close.

    `read_only` scopes must not write: on SQLite they run beside a writer instead of after it.
    """
    session = _session_factory(engine, read_only)()
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


_REVISION = re.compile(r"^revision\s*=\s*['\"]([^'\"]+)['\"]", re.MULTILINE)
_DOWN_REVISION = re.compile(r"^down_revision\s*=\s*(?:None|['\"]([^'\"]+)['\"])", re.MULTILINE)


@functools.cache
def known_revisions() -> frozenset[str]:
    """Every revision in migrations/versions.

    Read from the files' `revision =` lines: importing Alembic costs every CLI start ~0.1 s.
    """
    revisions = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        found = _REVISION.search(path.read_text(encoding="utf-8"))
        if found is None:
            from alembic.script import ScriptDirectory

            script = ScriptDirectory.from_config(_alembic_config(None))  # type: ignore[arg-type]
            return frozenset(step.revision for step in script.walk_revisions())
        revisions.add(found.group(1))
    return frozenset(revisions)


def head_revision() -> str:
    """The newest revision in migrations/versions (read like `known_revisions`).

    A layout this cannot read (a merge, a branch) goes to Alembic itself.
    """
    revisions, parents = set(), set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        source = path.read_text(encoding="utf-8")
        revision, down = _REVISION.search(source), _DOWN_REVISION.search(source)
        if revision is None or down is None:
            break
        revisions.add(revision.group(1))
        if down.group(1):
            parents.add(down.group(1))
    else:
        heads = revisions - parents
        if len(heads) == 1:
            return heads.pop()
    from alembic.script import ScriptDirectory

    config = _alembic_config(None)  # type: ignore[arg-type]
    return ScriptDirectory.from_config(config).get_current_head()


# Whether the revision table exists, asked in one statement: SQLAlchemy's inspector costs a
# command's start ~20 ms (its catalog queries compiled and run on PostgreSQL).
_HAS_VERSION_TABLE = {
    "sqlite": "SELECT count(*) FROM sqlite_master"
    " WHERE type = 'table' AND name = 'alembic_version'",
    "postgresql": "SELECT count(to_regclass('alembic_version'))",
}


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at; None for a database Alembic has not touched."""
    with engine.execution_options(**{READ_ONLY: True}).connect() as connection:
        if not connection.exec_driver_sql(_HAS_VERSION_TABLE[engine.dialect.name]).scalar():
            return None
        versions = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    if len(versions) > 1:
        raise DatabaseError(f"database has {len(versions)} schema heads; expq expects one")
    return versions[0][0] if versions else None


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    try:
        current = current_revision(engine)
        if current is not None and current not in known_revisions():
            raise _newer(current)
        command.upgrade(_alembic_config(engine), revision)
    except OperationalError as exc:
        raise _unreachable(engine, exc) from exc


def downgrade(engine: Engine, revision: str = "base") -> None:
    from alembic import command

    command.downgrade(_alembic_config(engine), revision)


def ensure_schema(engine: Engine, *, create: bool = True) -> None:
    """Create an empty database at head (unless `create` is False); refuse one at another
    revision with the fix to run."""
    try:
        current = current_revision(engine)
        if current is None:
            tables = set(inspect(engine).get_table_names())
    except OperationalError as exc:
        raise _unreachable(engine, exc) from exc
    if current is None and not (tables - {"alembic_version"}):
        if not create:
            where = engine.url.render_as_string(hide_password=True)
            raise DatabaseError(f"no expq schema in the database at {where}: run `expq db upgrade`")
        upgrade(engine)
        return
    head = head_revision()
    if current is not None and current not in known_revisions():
        raise _newer(current)
    if current != head:
        raise DatabaseError(
            f"database schema is at revision {current or 'none'}, expq needs {head}: "
            "run `expq db upgrade`"
        )


def _newer(current: str) -> DatabaseError:
    return DatabaseError(
        f"database schema is at revision {current}, newer than this expq knows "
        f"(its newest is {head_revision()}): upgrade expq"
    )


def _unreachable(engine: Engine, exc: OperationalError) -> DatabaseError:
    where = engine.url.render_as_string(hide_password=True)
    lines = str(exc.orig or exc).strip().splitlines()
    return DatabaseError(f"database unreachable at {where}: {lines[0] if lines else exc}")
