"""The values a sort reads for ended runs, one row per run and value: each per-timestep loss
and every metric of the run's last epoch (`at` = "last"), and its val metrics at its best
epoch ("best").

Written once, when the run ends, from the rows its epochs recorded: an epoch's write pays
nothing for sorts (keeping them current each epoch cost two thirds of SQLite's write rate,
benchmarks/results/store_write.md). A sort by such a value walks run_values' index for the
ended runs and probes the few runs still queued or training (service/store.py). Rows carry
the attempt and epoch they came from; readers join on both.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import and_, delete, func, insert, literal, select
from sqlalchemy.orm import Session

from service.schema import Loss, Metric, Run, RunValue
from service.tables import LOSS, WHOLE_SPLIT

COLUMNS = ("run_id", "at", "split", "name", "timestep", "attempt", "epoch", "value")


def _copies(run_ids: Sequence[int]) -> list:
    """INSERT ... SELECT statements copying the runs' last-epoch and best-epoch rows."""
    ended = Run.run_id.in_(run_ids)
    losses = (
        select(
            Loss.run_id, literal("last"), Loss.split, literal(LOSS), Loss.timestep,
            Loss.attempt, Loss.epoch, Loss.value,
        )
        .join(Run, and_(Run.run_id == Loss.run_id, Run.attempt == Loss.attempt))
        .where(ended, Loss.epoch == Run.epochs_done, Loss.timestep.is_not(None))
    )  # fmt: skip
    statements = [insert(RunValue).from_select(COLUMNS, losses)]
    for at, epoch in (("last", Run.epochs_done), ("best", Run.best_epoch)):
        metrics = (
            select(
                Metric.run_id, literal(at), Metric.split, Metric.name,
                func.coalesce(Metric.timestep, WHOLE_SPLIT), Metric.attempt, Metric.epoch,
                Metric.value,
            )
            .join(Run, and_(Run.run_id == Metric.run_id, Run.attempt == Metric.attempt))
            .where(ended, Metric.epoch == epoch)
        )  # fmt: skip
        if at == "best":
            metrics = metrics.where(Metric.split == "val")
        statements.append(insert(RunValue).from_select(COLUMNS, metrics))
    return statements


def settle_run_values(session: Session, run_ids: Sequence[int]) -> None:
    """The ended runs' rows, from what their winning attempt recorded; in the caller's
    transaction, the one that ends them."""
    if not run_ids:
        return
    session.execute(delete(RunValue).where(RunValue.run_id.in_(run_ids)))
    for statement in _copies(run_ids):
        session.execute(statement)
