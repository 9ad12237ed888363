"""One epoch's loss rows: L_t for every timestep and the total L, per split.

The hot write path of the store: one batch per epoch (service.row_batches), inside the
transaction that also updates the run's summary.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Protocol

from sqlalchemy.orm import Session

from service.row_batches import BatchTable, write_batch
from service.schema import Loss

COLUMNS = ("run_id", "attempt", "epoch", "split", "timestep", "value", "value_kind")
TABLE = BatchTable(Loss.__table__.name, COLUMNS)

LossRow = tuple[int, int, int, str, int | None, float | None, str]


class SplitLosses(Protocol):
    """One split's numbers for one epoch (models.training.SplitReport has this shape)."""

    total: float
    per_timestep: list[float]
    metric: float  # the primary metric: accuracy, or token_accuracy for sequence targets
    metrics: Mapping[str, float]  # every whole-split metric by name, the primary included
    per_timestep_metrics: Mapping[str, Sequence[float]]  # by name, values for t = 1..T


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


def insert_losses(
    session: Session, run_id: int, attempt: int, epoch: int, splits: Mapping[str, SplitLosses]
) -> None:
    """Insert the epoch's rows in one batch; the caller's transaction commits them."""
    write_batch(session, TABLE, loss_rows(run_id, attempt, epoch, splits))
