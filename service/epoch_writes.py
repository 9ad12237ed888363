"""Epochs' writes for runs whose attempts hold them: each run's summary columns (its best epoch
included), its loss and metric rows and its checkpoint, for one run or a fused group's members
in the caller's transaction. The fence (which attempts hold their runs) is
service/lifecycle.py's: these helpers write what it let through.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import Any

from sqlalchemy import Row, bindparam, update
from sqlalchemy.orm import Session

from service import loss_rows as losses
from service import metric_rows as metrics
from service.checkpoints import BestCheckpoint, NewCheckpoint, store_checkpoints
from service.loss_rows import SplitLosses, finite_or_none
from service.metric_rows import finite_metrics
from service.row_batches import write_batch
from service.schema import Run, RunStatus

# What the summary of an epoch starts from: the run's row as the fence read (and locked) it.
CURRENT = (Run.run_id, Run.attempt, Run.best_train_loss, Run.best_val_loss, Run.best_epoch)


@dataclass(frozen=True)
class EpochWrite:
    """One epoch of one attempt: its losses and metrics per split, and the training state
    after it (None: no checkpoint)."""

    run_id: int
    attempt: int
    epoch: int
    splits: Mapping[str, SplitLosses]
    checkpoint: bytes | None = None


def _summary(write: EpochWrite, current: Row) -> tuple[dict[str, Any], bool]:
    """The run's summary columns after the epoch, and whether the epoch is its best so far
    (the lowest val L)."""
    splits, epoch = write.splits, write.epoch
    summary: dict[str, Any] = {"epochs_done": epoch}
    if splits:
        summary["timesteps"] = max(len(losses.per_timestep) for losses in splits.values())
    improved = False
    for split, best in (("train", current.best_train_loss), ("val", current.best_val_loss)):
        if split not in splits:
            continue
        total = finite_or_none(splits[split].total)
        summary[f"final_{split}_loss"] = total
        if total is not None and (best is None or total < best):
            summary[f"best_{split}_loss"] = total
            improved = improved or split == "val"
    if "val" in splits:
        val = splits["val"]
        summary["final_metric"] = finite_or_none(val.metric)
        summary["final_metrics"] = finite_metrics(val.metrics)
        if improved:
            summary["best_epoch"] = epoch
            summary["best_metric"] = finite_or_none(val.metric)
            summary["best_metrics"] = finite_metrics(val.metrics)
    return summary, improved


@functools.cache
def _summary_update(names: tuple[str, ...]) -> Any:
    """The UPDATE of the summary columns `names`, each row guarded by its attempt (built once
    per set of columns: an epoch's write is the hot path)."""
    columns = Run.__table__.c
    return (
        update(Run)
        .where(
            Run.run_id == bindparam("w_run_id"),
            Run.attempt == bindparam("w_attempt"),
            Run.status == RunStatus.RUNNING,
        )
        .values({name: bindparam(f"w_{name}", type_=columns[name].type) for name in names})
    )


def _update_summaries(session: Session, summaries: list[tuple[EpochWrite, dict]]) -> None:
    """One executemany UPDATE per set of columns."""
    columns = lambda item: tuple(sorted(item[1]))  # noqa: E731
    for names, group in groupby(sorted(summaries, key=columns), key=columns):
        params = [
            {"w_run_id": w.run_id, "w_attempt": w.attempt, **{f"w_{k}": v for k, v in s.items()}}
            for w, s in group
        ]
        session.connection().execute(_summary_update(names), params)


def write_epochs(
    session: Session, writes: Sequence[EpochWrite], current: Mapping[int, Row]
) -> None:
    """Every write's summary, its losses and metrics (one batched insert each for them all)
    and its checkpoint (kept as the best one too when the epoch is the best), in the caller's
    transaction. `current`: each run's CURRENT row, read under the lock that fences it."""
    summaries, checkpoints = [], []
    for write in writes:
        now = current[write.run_id]
        summary, improved = _summary(write, now)
        summaries.append((write, summary))
        if write.checkpoint is not None:
            best = BestCheckpoint.THIS if improved else BestCheckpoint.KEEP
            if not improved and now.best_epoch is None:
                best = BestCheckpoint.NONE  # one an earlier attempt left must not stand for this
            checkpoints.append(
                NewCheckpoint(write.run_id, write.attempt, write.epoch, write.checkpoint, best)
            )
    _update_summaries(session, summaries)
    keys = [(w.run_id, w.attempt, w.epoch, w.splits) for w in writes]
    write_batch(session, losses.TABLE, [row for key in keys for row in losses.loss_rows(*key)])
    write_batch(session, metrics.TABLE, [row for key in keys for row in metrics.metric_rows(*key)])
    store_checkpoints(session, checkpoints)
