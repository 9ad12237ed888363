"""A run's lifecycle in the store: claim, lease, per-epoch writes, finish, cancel, recovery.

Every state change is a conditional UPDATE guarded by the state it expects; a worker's writes
are fenced by the attempt number that holds the lease, so a stale worker writes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, select, update

from service.db import session_scope
from service.loss_rows import SplitLosses, finite_or_none, insert_losses
from service.records import utcnow
from service.schema import Run, RunStatus


class LeaseLost(RuntimeError):
    """The run is no longer held by this attempt: it was cancelled, reclaimed or finished."""


def claim_run(
    engine: Engine, run_id: int, *, owner: str, worker: str, device: str, lease_seconds: float
) -> int | None:
    """queued → running in one conditional UPDATE; the new attempt number, or None if not ours."""
    now = utcnow()
    with session_scope(engine) as session:
        result = session.execute(
            update(Run)
            .where(Run.run_id == run_id, Run.status == RunStatus.QUEUED)
            .values(
                status=RunStatus.RUNNING,
                attempt=Run.attempt + 1,
                lease_owner=owner,
                lease_expires_at=now + timedelta(seconds=lease_seconds),
                worker=worker,
                device=device,
                started_at=now,
            )
        )
        if result.rowcount != 1:
            return None
        return session.scalar(select(Run.attempt).where(Run.run_id == run_id))


def _held(run_id: int, attempt: int):  # noqa: ANN202 - a SQL condition
    return and_(Run.run_id == run_id, Run.attempt == attempt, Run.status == RunStatus.RUNNING)


def renew_lease(engine: Engine, run_id: int, attempt: int, lease_seconds: float) -> None:
    """Push the lease expiry forward; LeaseLost when this attempt no longer holds the run."""
    with session_scope(engine) as session:
        result = session.execute(
            update(Run)
            .where(_held(run_id, attempt))
            .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds))
        )
        if result.rowcount != 1:
            raise LeaseLost(f"run {run_id} attempt {attempt} lost its lease")


def record_epoch(
    engine: Engine, run_id: int, attempt: int, epoch: int, splits: Mapping[str, SplitLosses]
) -> None:
    """One epoch's losses in one batched insert, with the run's summary, in one transaction."""
    with session_scope(engine) as session:
        current = session.execute(
            select(Run.best_train_loss, Run.best_val_loss).where(_held(run_id, attempt))
        ).first()
        if current is None:
            raise LeaseLost(f"run {run_id} attempt {attempt} lost its lease")
        summary: dict[str, Any] = {"epochs_done": epoch}
        for split, best in (("train", current.best_train_loss), ("val", current.best_val_loss)):
            if split not in splits:
                continue
            total = finite_or_none(splits[split].total)
            summary[f"final_{split}_loss"] = total
            if total is not None and (best is None or total < best):
                summary[f"best_{split}_loss"] = total
        if "val" in splits:
            summary["final_metric"] = finite_or_none(splits["val"].metric)
        result = session.execute(update(Run).where(_held(run_id, attempt)).values(**summary))
        if result.rowcount != 1:
            raise LeaseLost(f"run {run_id} attempt {attempt} lost its lease")
        insert_losses(session, run_id, attempt, epoch, splits)


def finish_run(
    engine: Engine,
    run_id: int,
    attempt: int,
    status: RunStatus,
    *,
    error: str | None = None,
    traceback: str | None = None,
) -> None:
    """running → a terminal status, fenced by the attempt; LeaseLost when no longer ours."""
    with session_scope(engine) as session:
        result = session.execute(
            update(Run)
            .where(_held(run_id, attempt))
            .values(
                status=status,
                error=error,
                traceback=traceback,
                finished_at=utcnow(),
                lease_owner=None,
                lease_expires_at=None,
            )
        )
        if result.rowcount != 1:
            raise LeaseLost(f"run {run_id} attempt {attempt} lost its lease")


def cancel_run(engine: Engine, run_id: int) -> str | None:
    """Cancel a queued or running run; the status it had, or None when it does not exist.

    A running run's worker sees the cancel at its next heartbeat and stops.
    """
    with session_scope(engine) as session:
        status = session.scalar(select(Run.status).where(Run.run_id == run_id))
        if status in (RunStatus.QUEUED, RunStatus.RUNNING):
            session.execute(
                update(Run)
                .where(Run.run_id == run_id, Run.status == status)
                .values(status=RunStatus.CANCELLED, finished_at=utcnow(), error="cancelled by user")
            )
        return status


def is_cancelled(engine: Engine, run_id: int) -> bool:
    with session_scope(engine) as session:
        return session.scalar(select(Run.status).where(Run.run_id == run_id)) == RunStatus.CANCELLED


@dataclass(frozen=True)
class Dispatch:
    """A run to (re)publish to the broker."""

    run_id: int
    queue: str
    priority: int


def reap_expired_leases(engine: Engine, now: datetime | None = None) -> list[Dispatch]:
    """Runs whose lease expired go back to `queued` (to be published again) or, when their
    attempts are spent, end `failed` with the reason."""
    now = now or utcnow()
    requeue: list[Dispatch] = []
    with session_scope(engine) as session:
        expired = session.execute(
            select(Run.run_id, Run.attempt, Run.max_attempts, Run.queue, Run.priority).where(
                Run.status == RunStatus.RUNNING, Run.lease_expires_at < now
            )
        ).all()
        for run_id, attempt, max_attempts, queue, priority in expired:
            spent = attempt >= max_attempts
            values: dict[str, Any] = {"lease_owner": None, "lease_expires_at": None}
            if spent:
                values |= {
                    "status": RunStatus.FAILED,
                    "finished_at": now,
                    "error": f"worker lost (lease expired) on each of {attempt} attempts",
                }
            else:
                values |= {"status": RunStatus.QUEUED, "queued_at": now}
            result = session.execute(
                update(Run)
                .where(_held(run_id, attempt), Run.lease_expires_at < now)
                .values(**values)
            )
            if result.rowcount == 1 and not spent:
                requeue.append(Dispatch(run_id, queue, priority))
    return requeue


def stale_queued_runs(engine: Engine, older_than: timedelta) -> list[Dispatch]:
    """Queued runs nobody claimed for a while: their message may have been lost."""
    cutoff = utcnow() - older_than
    with session_scope(engine) as session:
        rows = session.execute(
            select(Run.run_id, Run.queue, Run.priority).where(
                Run.status == RunStatus.QUEUED, Run.queued_at < cutoff
            )
        ).all()
        if rows:
            session.execute(
                update(Run)
                .where(Run.run_id.in_([row.run_id for row in rows]), Run.status == RunStatus.QUEUED)
                .values(queued_at=utcnow())
            )
    return [Dispatch(*row) for row in rows]
