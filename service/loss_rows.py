"""Writing one epoch's loss rows: L_t for every timestep and the total L, per split.

This is the hot write path of the store: one multi-row insert per epoch, inside the
transaction that also updates the run's summary.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Protocol

from sqlalchemy import insert
from sqlalchemy.orm import Session

from service.schema import Loss


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


def insert_losses(
    session: Session, run_id: int, attempt: int, epoch: int, splits: Mapping[str, SplitLosses]
) -> None:
    """Insert the epoch's rows in one batch; the caller's transaction commits them."""
    rows = [
        {
            "run_id": run_id,
            "attempt": attempt,
            "epoch": epoch,
            "split": split,
            "timestep": timestep,
            "value": finite_or_none(value),
            "value_kind": value_kind(value),
        }
        for split, losses in splits.items()
        for timestep, value in [*enumerate(losses.per_timestep, start=1), (None, losses.total)]
    ]
    session.execute(insert(Loss), rows)
