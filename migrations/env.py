"""Alembic environment: runs on the engine expq hands over, or on EXPQ_DATABASE_URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, text

from service.config import load_settings
from service.db import make_engine
from service.schema import Base

# Any constant: every expq process upgrading a PostgreSQL database takes this lock first.
_PG_MIGRATION_LOCK = 0x65787071


def run_migrations_online() -> None:
    engine = context.config.attributes.get("engine") or make_engine(load_settings().database_url)
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # A batch migration recreates a table, and dropping the old one with foreign keys
            # on deletes every row that cascades from it (a run's params, tags, losses). The
            # pragma works only outside a transaction, so it goes to the driver directly.
            connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")
        try:
            _run(connection)
        finally:
            if sqlite:
                connection.connection.driver_connection.execute("PRAGMA foreign_keys=ON")


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        # SQLite's DDL is transactional too. Alembic's default for it, a transaction per
        # revision, let a second upgrader read the version between two revisions of the
        # first and apply the next one again ("index ... already exists").
        transactional_ddl=True,
    )
    with context.begin_transaction():
        # Two processes upgrading at once: the second waits here, then finds head applied.
        # SQLite gets the same from its BEGIN IMMEDIATE.
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK}
            )
        context.run_migrations()


run_migrations_online()
