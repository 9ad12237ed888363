"""Schema creation, migrations both ways, and the ORM agreeing with the migrations."""

from __future__ import annotations

import re

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from service.db import (
    current_revision,
    downgrade,
    ensure_schema,
    get_engine,
    head_revision,
    known_revisions,
    make_engine,
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
