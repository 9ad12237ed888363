"""Median pruning across a sweep: a run worse than its peers at the same epoch is stopped."""

from __future__ import annotations

import statistics

from sqlalchemy import Engine, select

from service.db import session_scope
from service.schema import Loss, Run

MIN_PEERS = 2  # fewer runs to compare with say nothing about a median


def peer_median_val_loss(engine: Engine, run_id: int, epoch: int) -> float | None:
    """The median total val loss at `epoch` of the other runs of this run's experiment
    (their winning attempts); None with fewer than MIN_PEERS of them."""
    with session_scope(engine) as session:
        experiment = select(Run.experiment_id).where(Run.run_id == run_id).scalar_subquery()
        values = session.scalars(
            select(Loss.value)
            .join(Run, (Run.run_id == Loss.run_id) & (Run.attempt == Loss.attempt))
            .where(
                Run.experiment_id == experiment,
                Run.run_id != run_id,
                Loss.epoch == epoch,
                Loss.split == "val",
                Loss.timestep.is_(None),
                Loss.value.is_not(None),
            )
        ).all()
    return statistics.median(values) if len(values) >= MIN_PEERS else None


def prune_reason(engine: Engine, run_id: int, epoch: int, val_loss: float) -> str | None:
    """Why the run should stop now, or None to let it go on."""
    median = peer_median_val_loss(engine, run_id, epoch)
    if median is None or val_loss <= median:
        return None
    return f"pruned at epoch {epoch}: val loss {val_loss:.4g} above the peers' median {median:.4g}"
