"""Checkpoints in the database, so that a fleet across machines can resume any run.

One row per run holds its latest state (models.checkpoint.TrainingState as bytes) and the
state after its best epoch (the lowest finite val L, the run's best_epoch), both written in
the transaction that records their epoch (service/lifecycle.py), fenced by the same attempt:
the epochs a run has recorded and its checkpoints never disagree, and a resume copies the
losses and metrics of exactly the epochs the latest checkpoint covers, which include the best.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Engine, and_, bindparam, case, func, insert, select, update
from sqlalchemy.orm import Session

from service.db import session_scope
from service.records import utcnow
from service.schema import Checkpoint, Loss, Metric, Run, RunStatus

# The primary metric of a task: accuracy for labels, token accuracy for sequences (one of them
# is recorded, never both).
PRIMARY_METRICS = ("accuracy", "token_accuracy")


@dataclass(frozen=True)
class StoredCheckpoint:
    run_id: int
    attempt: int  # the attempt that wrote it
    epoch: int  # the last epoch it includes
    state: bytes


class BestCheckpoint(enum.Enum):
    """What an epoch's write does to the best checkpoint."""

    THIS = "this"  # the epoch is the run's best so far: its state becomes the best
    KEEP = "keep"  # an earlier epoch of this run stays the best
    NONE = "none"  # the run has no best epoch (no finite val L yet): drop any stored


@dataclass(frozen=True)
class NewCheckpoint:
    """The state after one epoch of one attempt, and what it does to the run's best."""

    run_id: int
    attempt: int
    epoch: int
    state: bytes
    best: BestCheckpoint = BestCheckpoint.KEEP


def _values(checkpoint: NewCheckpoint, best: BestCheckpoint) -> dict[str, Any]:
    values: dict[str, Any] = {
        "attempt": checkpoint.attempt,
        "epoch": checkpoint.epoch,
        "state": checkpoint.state,
        "created_at": utcnow(),
    }
    if best is BestCheckpoint.THIS:
        values |= {"best_attempt": checkpoint.attempt, "best_epoch": checkpoint.epoch}
    if best is not BestCheckpoint.KEEP:
        values |= {"best_state": None}
    if best is BestCheckpoint.NONE:
        values |= {"best_attempt": None, "best_epoch": None}
    return values


@functools.cache
def _replace(best: BestCheckpoint) -> Any:
    """The UPDATE of a run's row for checkpoints of kind `best`, its values bound by name."""
    names = ("attempt", "epoch", "state", "created_at")
    names += {
        BestCheckpoint.THIS: ("best_attempt", "best_epoch", "best_state"),
        BestCheckpoint.NONE: ("best_attempt", "best_epoch", "best_state"),
        BestCheckpoint.KEEP: (),
    }[best]
    columns = Checkpoint.__table__.c
    values: dict[str, Any] = {
        name: bindparam(f"c_{name}", type_=columns[name].type) for name in names
    }
    if best is BestCheckpoint.KEEP:
        latest_is_best = and_(Checkpoint.best_epoch.is_not(None), Checkpoint.best_state.is_(None))
        values["best_state"] = case((latest_is_best, Checkpoint.state), else_=Checkpoint.best_state)
    return (
        update(Checkpoint)
        .where(Checkpoint.run_id == bindparam("c_run_id"))
        .values(values)
        .execution_options(synchronize_session=False)
    )


def store_checkpoints(session: Session, checkpoints: Sequence[NewCheckpoint]) -> None:
    """Replace each run's latest checkpoint, and its best as its `best` says, in a transaction
    that has checked each attempt holds its run: one statement per kind of best for the runs
    that have a row, one for those that have none.

    The state crosses the wire once an epoch, as before the best one was kept: a best epoch's
    best_state is NULL, meaning "the latest state", and the next epoch that is not the best
    moves that state to best_state inside the database (an UPDATE reads the row as it was).
    Sending it twice would double the time the epoch's transaction holds the run's row lock,
    which the heartbeat and the reaper wait on.
    """
    keep_none = {BestCheckpoint.KEEP: BestCheckpoint.NONE}  # a best with no row cannot be kept
    new = [
        {"run_id": c.run_id, **_values(c, keep_none.get(c.best, c.best))}
        for c in _replace_stored(session, checkpoints)
    ]
    if new:
        session.connection().execute(insert(Checkpoint), new)


def _replace_stored(session: Session, checkpoints: Sequence[NewCheckpoint]) -> list[NewCheckpoint]:
    """Replace the rows the runs have; the checkpoints of runs that have none. One run's row is
    found by its UPDATE alone, as a solo run's epoch always did; several runs' by one read."""
    if len(checkpoints) == 1:
        return [] if _replace_rows(session, checkpoints) == 1 else list(checkpoints)
    ids = [c.run_id for c in checkpoints]
    stored = set(session.scalars(select(Checkpoint.run_id).where(Checkpoint.run_id.in_(ids))))
    _replace_rows(session, [c for c in checkpoints if c.run_id in stored])
    return [c for c in checkpoints if c.run_id not in stored]


def _replace_rows(session: Session, checkpoints: Sequence[NewCheckpoint]) -> int:
    """One executemany UPDATE per kind of best; the rows replaced."""
    replaced = 0
    for best in BestCheckpoint:
        rows = [
            {"c_run_id": c.run_id, **{f"c_{k}": v for k, v in _values(c, best).items()}}
            for c in checkpoints
            if c.best is best
        ]
        if rows:
            replaced += session.connection().execute(_replace(best), rows).rowcount
    return replaced


def store_checkpoint(
    session: Session,
    run_id: int,
    attempt: int,
    epoch: int,
    state: bytes,
    best: BestCheckpoint = BestCheckpoint.KEEP,
) -> None:
    """store_checkpoints for one run."""
    store_checkpoints(session, [NewCheckpoint(run_id, attempt, epoch, state, best)])


def load_checkpoint(
    engine: Engine, run_id: int, which: Literal["last", "best"] = "last"
) -> StoredCheckpoint | None:
    """The run's latest checkpoint, or the one of its best epoch; None when there is none
    (a best one: none before the first finite val L, nor for runs trained before it was kept)."""
    if which not in ("last", "best"):
        raise ValueError(f"which must be 'last' or 'best'; got {which!r}")
    columns = (
        (Checkpoint.attempt, Checkpoint.epoch, Checkpoint.state)
        if which == "last"
        else (
            Checkpoint.best_attempt,
            Checkpoint.best_epoch,
            func.coalesce(Checkpoint.best_state, Checkpoint.state),
        )
    )
    with session_scope(engine, read_only=True) as session:
        row = session.execute(select(*columns).where(Checkpoint.run_id == run_id)).first()
    if row is None or row[1] is None:
        return None
    return StoredCheckpoint(run_id, *row)


def load_checkpoints(engine: Engine, run_ids: Sequence[int]) -> dict[int, StoredCheckpoint]:
    """load_checkpoint (the latest) of each of `run_ids` that has one, in one read."""
    if not run_ids:
        return {}
    columns = (Checkpoint.run_id, Checkpoint.attempt, Checkpoint.epoch, Checkpoint.state)
    with session_scope(engine, read_only=True) as session:
        rows = session.execute(select(*columns).where(Checkpoint.run_id.in_(run_ids))).all()
    return {row.run_id: StoredCheckpoint(*row) for row in rows}


def adopt_checkpoint(
    engine: Engine, run_id: int, attempt: int, checkpoint: StoredCheckpoint
) -> bool:
    """Start `attempt` from `checkpoint`: copy the losses and metrics of the epochs it covers
    from the attempt that wrote them, restore the run's summary (best epoch included) as those
    epochs left it, and record where the run resumed. The best checkpoint stays as stored: it
    is one of the copied epochs. False when the run is no longer ours."""
    with session_scope(engine) as session:
        losses = _earlier(
            session,
            Loss,
            (Loss.epoch, Loss.split, Loss.timestep, Loss.value, Loss.value_kind),
            run_id,
            checkpoint,
        )
        metrics = _earlier(
            session,
            Metric,
            (Metric.epoch, Metric.split, Metric.name, Metric.timestep, Metric.value),
            run_id,
            checkpoint,
        )
        summary = _summary(losses, metrics, checkpoint.epoch)
        result = session.execute(
            update(Run)
            .where(Run.run_id == run_id, Run.attempt == attempt, Run.status == RunStatus.RUNNING)
            .values(resumed_from_epoch=checkpoint.epoch, **summary)
        )
        if result.rowcount != 1:
            return False
        for table, rows in ((Loss, losses), (Metric, metrics)):
            if rows:
                session.execute(
                    insert(table),
                    [{"run_id": run_id, "attempt": attempt, **row._asdict()} for row in rows],
                )
        return True


def _earlier(session: Session, table, columns: tuple, run_id: int, checkpoint: StoredCheckpoint):  # noqa: ANN001, ANN202
    """The rows of `table` that `checkpoint`'s attempt recorded up to its epoch."""
    return session.execute(
        select(*columns).where(
            table.run_id == run_id,
            table.attempt == checkpoint.attempt,
            table.epoch <= checkpoint.epoch,
        )
    ).all()


def _summary(losses: list, metrics: list, epoch: int) -> dict[str, Any]:
    """The run's summary columns as the copied epochs left them."""
    summary: dict[str, Any] = {"epochs_done": epoch}
    totals: dict[str, dict[int, float | None]] = {}
    for split in ("train", "val"):
        rows = (r for r in losses if r.split == split and r.timestep is None)
        totals[split] = {r.epoch: r.value for r in rows}
        finite = [value for value in totals[split].values() if value is not None]
        summary[f"final_{split}_loss"] = totals[split].get(epoch)
        summary[f"best_{split}_loss"] = min(finite) if finite else None
    val = {}  # epoch -> {name: value}, the whole-split val metrics
    for row in metrics:
        if row.split == "val" and row.timestep is None:
            val.setdefault(row.epoch, {})[row.name] = row.value
    finite_val = [(value, e) for e, value in totals["val"].items() if value is not None]
    best_epoch = min(finite_val)[1] if finite_val else None  # ties go to the earlier epoch
    summary["final_metrics"] = val.get(epoch, {})
    summary["final_metric"] = _primary(val.get(epoch, {}))
    summary["best_epoch"] = best_epoch
    summary["best_metrics"] = None if best_epoch is None else val.get(best_epoch, {})
    summary["best_metric"] = None if best_epoch is None else _primary(val.get(best_epoch, {}))
    return summary


def _primary(metrics: dict[str, float]) -> float | None:
    return next((metrics[name] for name in PRIMARY_METRICS if name in metrics), None)
