"""One batch of rows into one table, the fastest way each backend takes it, in the caller's
transaction: the write path of every epoch (its losses, its metrics).

SQLite takes the rows as one DBAPI executemany of a prepared INSERT (SQLAlchemy's ORM and Core
layers would cost more per row than the insert itself); PostgreSQL takes them through COPY on
the session's own connection, several times faster than any INSERT form, or, for a handful of
rows, one multi-row INSERT. Never a row or a commit at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

# Below this many rows one multi-row INSERT beats COPY's extra round trips on PostgreSQL.
_COPY_FROM_ROWS = 64


@dataclass(frozen=True)
class BatchTable:
    """A table and the columns its rows give, in order."""

    name: str
    columns: tuple[str, ...]

    def insert(self, placeholder: str = "?", rows: int = 1) -> str:
        values = ", ".join([f"({', '.join([placeholder] * len(self.columns))})"] * rows)
        return f"INSERT INTO {self.name} ({', '.join(self.columns)}) VALUES {values}"

    def copy(self) -> str:
        return f"COPY {self.name} ({', '.join(self.columns)}) FROM STDIN"


def write_batch(session: Session, table: BatchTable, rows: Sequence[tuple[Any, ...]]) -> None:
    """Add `rows` (in `table.columns` order) through the session's connection; the caller
    commits. A duplicate key raises SQLAlchemy's IntegrityError on either backend."""
    if not rows:
        return
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        connection.exec_driver_sql(table.insert(), list(rows))
    elif len(rows) < _COPY_FROM_ROWS:
        flat = tuple(value for row in rows for value in row)
        connection.exec_driver_sql(table.insert("%s", len(rows)), flat)
    else:
        _copy(connection, table, rows)


def _copy(connection, table: BatchTable, rows: Sequence[tuple[Any, ...]]) -> None:  # noqa: ANN001
    import psycopg

    driver = connection.connection.driver_connection
    try:
        with driver.cursor() as cursor, cursor.copy(table.copy()) as copy:
            for row in rows:
                copy.write_row(row)
    except psycopg.IntegrityError as exc:
        # What an INSERT would raise through SQLAlchemy, so callers handle one exception type.
        raise IntegrityError(table.copy(), None, exc) from exc
