"""One epoch's metric rows: every whole-split metric (timestep NULL) and every per-timestep one
(t = 1..T, the numbering of the losses' L_t), per split.

Written in the same batch form and the same transaction as the epoch's losses. A metric is
a ratio of counts, finite whenever its split had a target; one that is not finite is left
out rather than stored (the value column holds finite numbers only).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from sqlalchemy.orm import Session

from service.loss_rows import SplitLosses
from service.row_batches import BatchTable, write_batch
from service.schema import Metric

COLUMNS = ("run_id", "attempt", "epoch", "split", "name", "timestep", "value")
TABLE = BatchTable(Metric.__table__.name, COLUMNS)

MetricRow = tuple[int, int, int, str, str, int | None, float]


def finite_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """The finite ones of `metrics`, as plain floats by name."""
    return {name: float(value) for name, value in metrics.items() if math.isfinite(value)}


def metric_rows(
    run_id: int, attempt: int, epoch: int, splits: Mapping[str, SplitLosses]
) -> list[MetricRow]:
    """The epoch's rows in COLUMNS order: per split, the whole-split metrics, then each
    per-timestep metric at t = 1..T."""
    rows: list[MetricRow] = []
    for split, report in splits.items():
        key = (run_id, attempt, epoch, split)
        for name, value in finite_metrics(report.metrics).items():
            rows.append((*key, name, None, value))
        for name, values in report.per_timestep_metrics.items():
            for timestep, value in enumerate(values, start=1):
                if math.isfinite(value):
                    rows.append((*key, name, timestep, float(value)))
    return rows


def insert_metrics(
    session: Session, run_id: int, attempt: int, epoch: int, splits: Mapping[str, SplitLosses]
) -> None:
    """Insert the epoch's metric rows in one batch; the caller's transaction commits them."""
    write_batch(session, TABLE, metric_rows(run_id, attempt, epoch, splits))
