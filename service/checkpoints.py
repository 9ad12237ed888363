"""Checkpoints in the database, so that a fleet across machines can resume any run.

One row per run holds its latest state (models.checkpoint.TrainingState as bytes), written in
the transaction that records its epoch (service/lifecycle.py), fenced by the same attempt: the
epochs a run has recorded and its checkpoint never disagree, and a resume copies the losses of
exactly the epochs the checkpoint covers.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.orm import Session

from service.db import session_scope
from service.records import utcnow
from service.schema import Checkpoint, Loss, Run, RunStatus


@dataclass(frozen=True)
class StoredCheckpoint:
    run_id: int
    attempt: int  # the attempt that wrote it
    epoch: int  # the last epoch it includes
    state: bytes


def store_checkpoint(session: Session, run_id: int, attempt: int, epoch: int, state: bytes) -> None:
    """Replace the run's checkpoint, in a transaction that has checked `attempt` holds the run."""
    session.execute(delete(Checkpoint).where(Checkpoint.run_id == run_id))
    session.execute(
        insert(Checkpoint).values(
            run_id=run_id, attempt=attempt, epoch=epoch, state=state, created_at=utcnow()
        )
    )


def load_checkpoint(engine: Engine, run_id: int) -> StoredCheckpoint | None:
    with session_scope(engine) as session:
        row = session.scalar(select(Checkpoint).where(Checkpoint.run_id == run_id))
        if row is None:
            return None
        return StoredCheckpoint(row.run_id, row.attempt, row.epoch, row.state)


def adopt_checkpoint(
    engine: Engine, run_id: int, attempt: int, checkpoint: StoredCheckpoint
) -> bool:
    """Start `attempt` from `checkpoint`: copy the losses of the epochs it covers from the
    attempt that wrote them and record where the run resumed. False when no longer ours."""
    with session_scope(engine) as session:
        columns = (Loss.epoch, Loss.split, Loss.timestep, Loss.value, Loss.value_kind)
        earlier = session.execute(
            select(*columns).where(
                Loss.run_id == run_id,
                Loss.attempt == checkpoint.attempt,
                Loss.epoch <= checkpoint.epoch,
            )
        ).all()
        result = session.execute(
            update(Run)
            .where(Run.run_id == run_id, Run.attempt == attempt, Run.status == RunStatus.RUNNING)
            .values(resumed_from_epoch=checkpoint.epoch, **_summary(earlier, checkpoint.epoch))
        )
        if result.rowcount != 1:
            return False
        if earlier:
            session.execute(
                insert(Loss),
                [{"run_id": run_id, "attempt": attempt, **row._asdict()} for row in earlier],
            )
        return True


def _summary(rows: list, epoch: int) -> dict[str, float | int | None]:
    """The run's summary columns as the copied epochs left them (the metric comes back with
    the next epoch: the losses table does not hold it)."""
    summary: dict[str, float | int | None] = {"epochs_done": epoch}
    for split in ("train", "val"):
        totals = {r.epoch: r.value for r in rows if r.split == split and r.timestep is None}
        finite = [value for value in totals.values() if value is not None]
        summary[f"final_{split}_loss"] = totals.get(epoch)
        summary[f"best_{split}_loss"] = min(finite) if finite else None
    return summary
