"""The values a sort reads, one row per run and value: each run's per-timestep losses and every
metric at its last epoch (`at` = "last"), and its val metrics at its best epoch ("best").

Replaced in the transaction that records an epoch, so the value index holds one entry per run
and value instead of one per epoch: a sort by `val_loss_t[3]` or `val_exact_match` walks it in
value order, and each epoch's write touches the run's own entries only
(benchmarks/results/store_write.md). Rows carry the attempt and epoch they came from and
readers join on both, so a row is never read as current once its epoch is not.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy.orm import Session

from service.loss_rows import SplitLosses, loss_rows
from service.metric_rows import metric_rows
from service.row_batches import BatchTable, write_batch
from service.schema import RunValue

LOSS = "loss"  # the name that a per-timestep loss L_t goes by among the metrics
WHOLE_SPLIT = 0  # the timestep of a whole-split metric: a key column cannot be NULL

COLUMNS = ("run_id", "at", "split", "name", "timestep", "attempt", "epoch", "value")
_TABLE = BatchTable(RunValue.__table__.name, COLUMNS)

# (split, timestep, value) of a per-timestep loss; (split, name, timestep, value) of a metric.
LossValue = tuple[str, int | None, float | None]
MetricValue = tuple[str, str, int | None, float]


def _rows(
    run_id: int,
    attempt: int,
    epoch: int,
    losses: Iterable[LossValue],
    metrics: Iterable[MetricValue],
    *,
    best: bool,
) -> list[tuple[Any, ...]]:
    key = (attempt, epoch)
    rows = [
        (run_id, "last", split, LOSS, timestep, *key, value)
        for split, timestep, value in losses
        if timestep is not None
    ]
    for split, name, timestep, value in metrics:
        step = WHOLE_SPLIT if timestep is None else timestep
        rows.append((run_id, "last", split, name, step, *key, value))
        if best and split == "val":
            rows.append((run_id, "best", split, name, step, *key, value))
    return rows


def replace_run_values(
    session: Session,
    run_id: int,
    attempt: int,
    epoch: int,
    splits: Mapping[str, SplitLosses],
    *,
    best: bool,
) -> None:
    """Put this epoch's values in place of the run's "last" rows, and of its "best" rows when
    the epoch is the run's new best; the caller's transaction commits them."""
    losses = [(r[3], r[4], r[5]) for r in loss_rows(run_id, attempt, epoch, splits)]
    metrics = [r[3:] for r in metric_rows(run_id, attempt, epoch, splits)]
    _delete(session, run_id, ("last", "best") if best else ("last",))
    write_batch(session, _TABLE, _rows(run_id, attempt, epoch, losses, metrics, best=best))


def _delete(session: Session, run_id: int, ats: tuple[str, ...]) -> None:
    # Plain SQL, like the rows' insert: the ORM's bulk delete costs more than a small epoch's
    # whole insert.
    connection = session.connection()
    mark = "%s" if connection.dialect.name == "postgresql" else "?"
    ats_in = ", ".join([mark] * len(ats))
    connection.exec_driver_sql(
        f"DELETE FROM {_TABLE.name} WHERE run_id = {mark} AND at IN ({ats_in})", (run_id, *ats)
    )


def rebuild_run_values(
    session: Session,
    run_id: int,
    attempt: int,
    epochs: tuple[int, int | None],
    losses: Iterable[tuple[int, LossValue]],
    metrics: Iterable[tuple[int, MetricValue]],
) -> None:
    """The run's rows anew from recorded (epoch, value) rows: its last epoch's and its best
    epoch's, `epochs` being (last, best or None). For a resumed attempt."""
    last, best_epoch = epochs
    losses, metrics = list(losses), list(metrics)
    rows = _rows(
        run_id,
        attempt,
        last,
        (value for epoch, value in losses if epoch == last),
        (value for epoch, value in metrics if epoch == last),
        best=False,
    )
    if best_epoch is not None:
        best_metrics = (value for epoch, value in metrics if epoch == best_epoch)
        rows += [
            row
            for row in _rows(run_id, attempt, best_epoch, (), best_metrics, best=True)
            if row[1] == "best"
        ]
    _delete(session, run_id, ("last", "best"))
    write_batch(session, _TABLE, rows)
