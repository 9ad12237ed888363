"""Writing one epoch's loss rows: L_t for every timestep and the total L, per split.

This is the hot write path of the store: one batch per epoch, inside the transaction that
also updates the run's summary. SQLite takes the rows as one DBAPI executemany of a prepared
INSERT (SQLAlchemy's ORM and Core layers would cost more per row than the insert itself);
PostgreSQL takes them through COPY on the session's own connection, several times faster than
any INSERT form. Never a row or a commit at a time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Protocol

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.schema import Loss

COLUMNS = ("run_id", "attempt", "epoch", "split", "timestep", "value", "value_kind")
_TABLE = Loss.__table__.name
_INSERT = f"INSERT INTO {_TABLE} ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
_COPY = f"COPY {_TABLE} ({', '.join(COLUMNS)}) FROM STDIN"
# Below this many rows one multi-row INSERT beats COPY's extra round trips on PostgreSQL.
_COPY_FROM_ROWS = 64

LossRow = tuple[int, int, int, str, int | None, float | None, str]


class SplitLosses(Protocol):
    """One split's numbers for one epoch (models.training.SplitReport has this shape)."""

    total: float
    per_timestep: list[float]
    metric: float


def finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def value_kind(value: float) -> str:
    """How a loss value is stored: finite values as they are, the others by name."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return "finite"


def loss_rows(
    run_id: int, attempt: int, epoch: int, splits: Mapping[str, SplitLosses]
) -> list[LossRow]:
    """The epoch's rows in COLUMNS order: per split, L_1..L_T and then the total (timestep None)."""
    rows: list[LossRow] = []
    for split, losses in splits.items():
        steps = [*enumerate(losses.per_timestep, start=1), (None, losses.total)]
        for timestep, value in steps:
            value = float(value)
            if math.isfinite(value):
                rows.append((run_id, attempt, epoch, split, timestep, value, "finite"))
            else:
                rows.append((run_id, attempt, epoch, split, timestep, None, value_kind(value)))
    return rows


def write_rows(session: Session, rows: Sequence[LossRow]) -> None:
    """Add loss rows in one batch through the session's connection; the caller commits."""
    if not rows:
        return
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        connection.exec_driver_sql(_INSERT, list(rows))
    elif len(rows) < _COPY_FROM_ROWS:
        _insert_values(connection, rows)
    else:
        _copy(connection, rows)


def insert_losses(
    session: Session, run_id: int, attempt: int, epoch: int, splits: Mapping[str, SplitLosses]
) -> None:
    """Insert the epoch's rows in one batch; the caller's transaction commits them."""
    write_rows(session, loss_rows(run_id, attempt, epoch, splits))


def _insert_values(connection, rows: Sequence[LossRow]) -> None:  # noqa: ANN001
    placeholders = ", ".join(["(%s, %s, %s, %s, %s, %s, %s)"] * len(rows))
    flat = [value for row in rows for value in row]
    statement = f"INSERT INTO {_TABLE} ({', '.join(COLUMNS)}) VALUES {placeholders}"
    connection.exec_driver_sql(statement, tuple(flat))


def _copy(connection, rows: Sequence[LossRow]) -> None:  # noqa: ANN001
    import psycopg

    driver = connection.connection.driver_connection
    try:
        with driver.cursor() as cursor, cursor.copy(_COPY) as copy:
            for row in rows:
                copy.write_row(row)
    except psycopg.IntegrityError as exc:
        # What an INSERT would raise through SQLAlchemy, so callers handle one exception type.
        raise IntegrityError(_COPY, None, exc) from exc
