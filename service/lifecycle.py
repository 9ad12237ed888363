"""A run's lifecycle in the store: claim, lease, per-epoch writes, finish, cancel, recovery.

Every state change is a conditional UPDATE guarded by the state it expects. The attempt number
is the fencing token: a claim increments it, and every write of a worker names the attempt it
holds, so a worker whose run was reclaimed, cancelled or finished writes nothing. A lease is
lost when the reaper takes it back, not the moment it expires: the reap and the write are
conditional UPDATEs of the same row, so exactly one of them wins.

Lease times come from the database's clock on PostgreSQL, so machines whose clocks disagree
still agree on when a lease expires (SQLite is one machine: its clock is the process's).
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    String,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session

from models.spec import trains_stacked
from service.db import session_scope
from service.epoch_writes import CURRENT, EpochWrite, write_epochs
from service.loss_rows import SplitLosses
from service.publishing import publish_trials
from service.records import Dispatch, utcnow
from service.run_values import settle_run_values
from service.schema import Run, RunStatus
from service.study_topup import top_up, top_up_active

RENEWAL_LOCK_TIMEOUT_MS = 1000
LEASE_EXPIRED = "its worker stopped renewing the lease (killed, frozen or cut off)"
_ACTIVE = (RunStatus.QUEUED, RunStatus.RUNNING)
# What a claim starts afresh: the summary of an earlier attempt must not leak into this one.
_ATTEMPT_RESET = {
    "epochs_done": 0,
    "final_train_loss": None,
    "final_val_loss": None,
    "best_train_loss": None,
    "best_val_loss": None,
    "final_metric": None,
    "best_epoch": None,
    "best_metric": None,
    "best_metrics": None,
    "final_metrics": None,
    "error": None,
    "traceback": None,
    "finished_at": None,
}


class LeaseLost(RuntimeError):
    """The run is no longer held by this attempt: it was cancelled, reclaimed or finished."""


def _clock(bind: Session | Connection, now: datetime | None = None) -> Any:
    """The time leases are reckoned by: the database's clock where there is one to share."""
    if now is not None:
        return now
    dialect = bind.get_bind().dialect if isinstance(bind, Session) else bind.dialect
    if dialect.name == "postgresql":
        return func.now()
    return utcnow()


def _update():  # noqa: ANN202 - an Update
    # No ORM objects live in these short sessions, so there is nothing to synchronise.
    return update(Run).execution_options(synchronize_session=False)


def _held(run_id: int, attempt: int):  # noqa: ANN202 - a SQL condition
    return and_(Run.run_id == run_id, Run.attempt == attempt, Run.status == RunStatus.RUNNING)


@dataclass(frozen=True)
class Claim:
    """A run this worker now holds: its attempt (the fencing token) and its stored spec, which
    the worker validates before it trains."""

    attempt: int
    spec: Any


def _claim_values(owner: str, worker: str, device: Any, lease_seconds: float, clock: Any) -> dict:
    return {
        "status": RunStatus.RUNNING,
        "attempt": Run.attempt + 1,
        "lease_owner": owner,
        "lease_expires_at": clock + timedelta(seconds=lease_seconds),
        "worker": worker,
        "device": device,
        "started_at": utcnow(),
        **_ATTEMPT_RESET,
    }


def _claim(
    engine: Engine, run_id: int, owner: str, worker: str, device: Any, lease_seconds: float
) -> Any:
    # A bare connection, not a Session: the claim is on the path from submit to start.
    with engine.begin() as connection:
        values = _claim_values(owner, worker, device, lease_seconds, _clock(connection))
        return connection.execute(
            update(Run)
            .where(Run.run_id == run_id, Run.status == RunStatus.QUEUED)
            .values(**values, group_id=None)
            .returning(Run.attempt, Run.spec)
        ).first()


def claim_run(
    engine: Engine, run_id: int, *, owner: str, worker: str, device: str, lease_seconds: float
) -> int | None:
    """queued → running in one conditional UPDATE; the new attempt number, or None if not ours."""
    claimed = _claim(engine, run_id, owner, worker, device, lease_seconds)
    return None if claimed is None else claimed.attempt


@functools.cache
def _device_choice(auto_device: str) -> Any:
    """The device a claim records, as SQL over the stored spec (built once per process)."""
    requested = Run.spec["device"].as_string()
    return case((requested.in_(("cpu", "cuda")), requested), else_=literal(auto_device))


def claim_for_training(
    engine: Engine, run_id: int, *, owner: str, worker: str, auto_device: str, lease_seconds: float
) -> Claim | None:
    """claim_run for a worker that has not read the spec yet: the one conditional UPDATE also
    records the device, the spec's own cpu or cuda, or `auto_device` (this worker's choice for
    auto), and hands the spec back. None when the run is not queued (another worker holds it,
    it ended or was cancelled, or it does not exist)."""
    claimed = _claim(engine, run_id, owner, worker, _device_choice(auto_device), lease_seconds)
    return None if claimed is None else Claim(claimed.attempt, claimed.spec)


@dataclass(frozen=True)
class MemberClaim:
    """A run a fused worker now holds as a member of its group."""

    run_id: int
    attempt: int
    spec: Any


def _claim_compatible(
    connection: Connection, key: str, queue: str, count: int, values: dict, group: str
) -> list[MemberClaim]:
    """Up to `count` queued runs of fusion key `key` on `queue`, the most urgent first; a run
    another transaction is claiming is skipped, not waited for."""
    compatible = (Run.status == RunStatus.QUEUED, Run.fusion_key == key, Run.queue == queue)
    # Two statements: PostgreSQL may run a LIMIT ... SKIP LOCKED subquery of an UPDATE more
    # than once, and a group then outgrew its size under concurrency.
    ids = connection.scalars(
        select(Run.run_id)
        .where(*compatible)
        .order_by(Run.priority.desc(), Run.queued_at, Run.run_id)
        .limit(count)
        .with_for_update(skip_locked=True)
    ).all()
    if not ids:
        return []
    rows = connection.execute(
        update(Run)
        .where(Run.run_id.in_(ids), *compatible)
        .values(**values, group_id=group)
        .returning(Run.run_id, Run.attempt, Run.spec, Run.priority)
    ).all()
    if rows:
        # The runs the group held alone until now join it by name: a run shows a fused group
        # only once another trains beside it.
        connection.execute(
            update(Run)
            .where(
                Run.lease_owner == values["lease_owner"],
                Run.status == RunStatus.RUNNING,
                Run.group_id.is_(None),
            )
            .values(group_id=group)
        )
    rows.sort(key=lambda row: (-row.priority, row.run_id))
    return [MemberClaim(row.run_id, row.attempt, row.spec) for row in rows]


def claim_group(
    engine: Engine,
    run_id: int,
    *,
    size: int,
    group: str,
    owner: str,
    worker: str,
    auto_device: str,
    lease_seconds: float,
) -> tuple[list[MemberClaim], str | None, str]:
    """Claim run `run_id` and, in the same transaction, up to `size` - 1 queued runs that may
    train beside it (its fusion key and queue), the most urgent first, all as fused group
    `group` under one lease owner (a run alone in it is named no group until another joins):
    ([run_id's claim, others...], key, queue), or ([], None, "") when run_id is not queued.
    A run without a key, or of a kind that fusion does not speed up
    (`models.spec.trains_stacked`), is claimed alone, and its key comes back None: its group
    admits no one."""
    with engine.begin() as connection:
        values = _claim_values(
            owner, worker, _device_choice(auto_device), lease_seconds, _clock(connection)
        )
        first = connection.execute(
            update(Run)
            .where(Run.run_id == run_id, Run.status == RunStatus.QUEUED)
            .values(**values, group_id=None)  # named once another run joins it
            .returning(Run.attempt, Run.spec, Run.fusion_key, Run.queue)
        ).first()
        if first is None:
            return [], None, ""
        claims = [MemberClaim(run_id, first.attempt, first.spec)]
        device = first.spec["device"] if first.spec["device"] != "auto" else auto_device
        fuses = first.fusion_key is not None and trains_stacked(first.spec["model"], device)
        if fuses and size > 1:
            claims += _claim_compatible(
                connection, first.fusion_key, first.queue, size - 1, values, group
            )
    return claims, first.fusion_key if fuses else None, first.queue


def claim_compatible(
    engine: Engine,
    key: str,
    queue: str,
    count: int,
    *,
    group: str,
    owner: str,
    worker: str,
    auto_device: str,
    lease_seconds: float,
) -> list[MemberClaim]:
    """Up to `count` more queued runs for fused group `group` (fusion key `key` on `queue`),
    the most urgent first: the runs a group admits at an epoch boundary."""
    if count < 1:
        return []
    with engine.begin() as connection:
        values = _claim_values(
            owner, worker, _device_choice(auto_device), lease_seconds, _clock(connection)
        )
        return _claim_compatible(connection, key, queue, count, values, group)


def renew_lease(engine: Engine, run_id: int, attempt: int, lease_seconds: float) -> None:
    """Push the lease expiry forward; LeaseLost when this attempt no longer holds the run.

    On PostgreSQL a renewal waits at most RENEWAL_LOCK_TIMEOUT for the run's row: queued behind
    its own process's epoch write, in a process that then froze, it would hold the row for
    another idle-transaction timeout once that write was ended; it retries at the next beat.
    """
    with session_scope(engine) as session:
        clock = _clock(session)
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text(f"SET LOCAL lock_timeout = {RENEWAL_LOCK_TIMEOUT_MS}"))
        result = session.execute(
            _update()
            .where(_held(run_id, attempt))
            .values(lease_expires_at=clock + timedelta(seconds=lease_seconds))
        )
        if result.rowcount != 1:
            raise LeaseLost(f"run {run_id} attempt {attempt} lost its lease")


def renew_leases(
    engine: Engine, leases: Sequence[tuple[int, int]], lease_seconds: float
) -> set[int]:
    """renew_lease for a fused group's members, (run, attempt) pairs, in one transaction: the
    runs whose attempt still holds them, their leases pushed forward (the others lost theirs).
    Rows are locked in run id order, as the group's epoch writes lock them, and on PostgreSQL
    wait at most RENEWAL_LOCK_TIMEOUT, as renew_lease's."""
    if not leases:
        return set()
    with session_scope(engine) as session:
        clock = _clock(session)
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text(f"SET LOCAL lock_timeout = {RENEWAL_LOCK_TIMEOUT_MS}"))
        held = sorted(_lock_held(session, leases))
        if held:
            session.execute(
                _update()
                .where(Run.run_id.in_(held), Run.status == RunStatus.RUNNING)
                .values(lease_expires_at=clock + timedelta(seconds=lease_seconds))
            )
    return set(held)


def _lock_held(session: Session, leases: Sequence[tuple[int, int]]) -> dict[int, Any]:
    """The fence of a batch of writes: of the (run, attempt) pairs, those whose attempt holds
    its run, each run's row read as service.epoch_writes.CURRENT and locked for the rest of the
    transaction (rows in run id order, the order every multi-row lock of a group takes; on
    SQLite the writer's lock on the whole database does it)."""
    attempts = dict(leases)
    rows = session.connection().execute(_LOCK_HELD, {"ids": sorted(attempts)}).all()
    return {row.run_id: row for row in rows if attempts[row.run_id] == row.attempt}


# Built once: an epoch's write is the hot path.
_LOCK_HELD = (
    select(*CURRENT, Run.study_id)
    .where(Run.run_id.in_(bindparam("ids", expanding=True)), Run.status == RunStatus.RUNNING)
    .order_by(Run.run_id)
    .with_for_update()
)


def _record_epoch(
    session: Session,
    run_id: int,
    attempt: int,
    epoch: int,
    splits: Mapping[str, SplitLosses],
    checkpoint: bytes | None = None,
) -> None:
    held = _lock_held(session, [(run_id, attempt)])
    if not held:
        raise LeaseLost(f"run {run_id} attempt {attempt} lost its lease")
    write_epochs(session, [EpochWrite(run_id, attempt, epoch, splits, checkpoint)], held)


def record_epoch(
    engine: Engine,
    run_id: int,
    attempt: int,
    epoch: int,
    splits: Mapping[str, SplitLosses],
    checkpoint: bytes | None = None,
) -> None:
    """One epoch's losses and metrics, each in one batched insert, with the run's summary
    (best epoch included) and the checkpoint after that epoch (kept as the best one too when
    the epoch is the best), in one transaction; LeaseLost when the attempt no longer holds
    the run."""
    with session_scope(engine) as session:
        _record_epoch(session, run_id, attempt, epoch, splits, checkpoint)


def _end(
    session: Session, guard: Any, *, status: RunStatus, **values: Any
) -> list[Dispatch] | None:
    """The one transition into a terminal status, in the caller's transaction: the guarded
    UPDATE of the run, its sort values kept (run_values), then its study topped up under the
    study's lock (the trials added, to publish after the commit). None when the guard did not
    hold: nothing was written.

    Every way a run ends goes through here or, for a fused group's members, `_end_members`
    (its worker finishing or pruning it, a cancel, the reaper giving up), so a study never
    misses the end of one of its trials. Lock order: the run's row, then its study's.
    """
    ended = _end_row(session, guard, status, values)
    return None if ended is None else _after_ends(session, [ended])


def _end_row(session: Session, guard: Any, status: RunStatus, values: Mapping[str, Any]) -> Any:
    return session.execute(
        _update()
        .where(guard)
        .values(
            status=status,
            finished_at=utcnow(),
            lease_owner=None,
            lease_expires_at=None,
            **values,
        )
        .returning(Run.run_id, Run.study_id)
    ).first()


def _after_ends(session: Session, ended: Sequence[Any]) -> list[Dispatch]:
    """The ended runs' sort values settled at once, then each of their studies topped up, in
    study id order; the trials added."""
    settle_run_values(session, [row.run_id for row in ended])
    added: list[Dispatch] = []
    for study_id in sorted({row.study_id for row in ended if row.study_id is not None}):
        added += top_up(session, study_id)
    return added


_ENDING = ("status", "finished_at", "error", "traceback")  # what an Ending's UPDATE sets


@dataclass(frozen=True)
class Ending:
    """How one member's attempt ends: its terminal status, with its error and traceback."""

    run_id: int
    attempt: int
    status: RunStatus
    error: str | None = None
    traceback: str | None = None


def _end_members(
    session: Session, endings: Sequence[Ending], held: Mapping[int, Any]
) -> list[Dispatch]:
    """`_end` for each of a group's endings whose attempt `held` (locked) its run, in one
    statement, their run values and studies settled once: the trials added."""
    if not endings:
        return []
    columns = Run.__table__.c
    bound = {name: bindparam(f"e_{name}", type_=columns[name].type) for name in _ENDING}
    statement = (
        _update()
        .where(
            Run.run_id == bindparam("e_run_id"),
            Run.attempt == bindparam("e_attempt"),
            Run.status == RunStatus.RUNNING,
        )
        .values(lease_owner=None, lease_expires_at=None, **bound)
    )
    now = utcnow()
    session.connection().execute(
        statement,
        [
            {"e_run_id": e.run_id, "e_attempt": e.attempt, "e_status": e.status,
             "e_finished_at": now, "e_error": e.error, "e_traceback": e.traceback}
            for e in endings
        ],
    )  # fmt: skip
    return _after_ends(session, [held[ending.run_id] for ending in endings])


def record_group_epoch(
    engine: Engine, epochs: Sequence[EpochWrite], endings: Sequence[Ending] = ()
) -> set[int]:
    """A fused group's epoch in one transaction: every member's epoch as `record_epoch` writes
    it alone, and the outcome of every member that left, each with its last epoch when that is
    among `epochs` (as `finish_run` commits them together). Each member is fenced by its own
    attempt: one whose attempt no longer holds its run writes nothing, and the others' writes
    land. The runs whose writes landed."""
    leases = {(write.run_id, write.attempt) for write in epochs}
    leases |= {(ending.run_id, ending.attempt) for ending in endings}
    if not leases:
        return set()
    with session_scope(engine) as session:
        held = _lock_held(session, sorted(leases))
        write_epochs(session, [write for write in epochs if write.run_id in held], held)
        ending = [ending for ending in endings if ending.run_id in held]
        added = _end_members(session, ending, held)
    publish_trials(added)
    return set(held)


def finish_run(
    engine: Engine,
    run_id: int,
    attempt: int,
    status: RunStatus,
    *,
    error: str | None = None,
    traceback: str | None = None,
    last_epoch: tuple[int, Mapping[str, SplitLosses], bytes | None] | None = None,
) -> None:
    """running → a terminal status, fenced by the attempt; LeaseLost when no longer ours.

    `last_epoch` (epoch, splits, checkpoint) is written in the same transaction: a run's final
    epoch and its outcome commit together, one commit fewer per run.
    """
    with session_scope(engine) as session:
        if last_epoch is not None:
            _record_epoch(session, run_id, attempt, *last_epoch)
        added = _end(
            session,
            _held(run_id, attempt),
            status=status,
            error=error,
            traceback=traceback,
        )
        if added is None:
            raise LeaseLost(f"run {run_id} attempt {attempt} lost its lease")
    publish_trials(added)


def finished_as(engine: Engine, run_id: int, attempt: int) -> str | None:
    """The status run `run_id` ended in, if `attempt` is the attempt that ended it."""
    with session_scope(engine, read_only=True) as session:
        row = session.execute(select(Run.status, Run.attempt).where(Run.run_id == run_id)).first()
    if row is None or row.attempt != attempt or row.status not in RunStatus.terminal():
        return None
    return row.status


def release_lease(engine: Engine, run_id: int, owner: str, reason: str) -> bool:
    """The process holding the run died or gave up: expire its lease now, noting why, so that
    the next reaper pass queues it again without waiting out the lease."""
    with session_scope(engine) as session:
        clock = _clock(session)
        result = session.execute(
            _update()
            .where(
                Run.run_id == run_id,
                Run.status == RunStatus.RUNNING,
                Run.lease_owner == owner,
            )
            .values(lease_expires_at=clock - timedelta(seconds=1), error=reason)
        )
        return result.rowcount == 1


def give_back_owner(engine: Engine, owner: str, reason: str) -> list[Dispatch]:
    """Every run `owner` holds goes back to `queued` at once (its worker is shutting down): an
    attempt given back, not lost, so max_attempts does not count it. The runs to publish."""
    error = literal("attempt ") + cast(Run.attempt, String) + f" given back: {reason}; queued again"
    with session_scope(engine) as session:
        rows = session.execute(
            _update()
            .where(Run.status == RunStatus.RUNNING, Run.lease_owner == owner)
            .values(
                status=RunStatus.QUEUED,
                queued_at=_clock(session),
                given_back=Run.given_back + 1,
                error=error,
                lease_owner=None,
                lease_expires_at=None,
            )
            .returning(Run.run_id, Run.queue, Run.priority)
        ).all()
    return sorted((Dispatch(*row) for row in rows), key=lambda d: (-d.priority, d.run_id))


def release_owner(engine: Engine, owner: str, reason: str) -> list[int]:
    """release_lease for every run `owner` holds (a fused group's members share their process's
    owner); the runs released."""
    with session_scope(engine) as session:
        clock = _clock(session)
        return list(
            session.scalars(
                _update()
                .where(Run.status == RunStatus.RUNNING, Run.lease_owner == owner)
                .values(lease_expires_at=clock - timedelta(seconds=1), error=reason)
                .returning(Run.run_id)
            )
        )


def cancel_run(engine: Engine, run_id: int) -> str | None:
    """Cancel a queued or running run; the status it had, or None when it does not exist.

    The cancel lives in the database: a queued run's message, whenever a worker gets it, finds
    the run not queued. A running run's worker sees the cancel at its next heartbeat or epoch
    write and stops at the next batch; the losses it recorded stay.
    """
    with session_scope(engine) as session:
        # The row lock orders this against a concurrent claim, so the status returned is the
        # one that was cancelled.
        status = session.scalar(select(Run.status).where(Run.run_id == run_id).with_for_update())
        added = None
        if status in _ACTIVE:
            added = _end(
                session,
                and_(Run.run_id == run_id, Run.status == status),
                status=RunStatus.CANCELLED,
                error="cancelled by user",
            )
    publish_trials(added or [])
    return status


def is_cancelled(engine: Engine, run_id: int) -> bool:
    with session_scope(engine, read_only=True) as session:
        return session.scalar(select(Run.status).where(Run.run_id == run_id)) == RunStatus.CANCELLED


_REAPED = (Run.run_id, Run.attempt, Run.given_back, Run.max_attempts, Run.queue, Run.priority,
           Run.error)  # fmt: skip


def _lost(attempt: int, given_back: int) -> str:
    """The attempts a run lost, for its error: "3 attempts", "3 attempts (and 2 given back)"."""
    lost = f"{attempt - given_back} attempts"
    return f"{lost} (and {given_back} given back)" if given_back else lost


def reap_expired_leases(engine: Engine, now: datetime | None = None) -> list[Dispatch]:
    """Runs whose lease expired go back to `queued` (to be published again) or, when they lost
    max_attempts attempts (those given back do not count), end `failed` with the reason; then
    every active study is topped up. The runs to publish: those queued again and the new
    trials."""
    requeue: list[Dispatch] = []
    with session_scope(engine) as session:
        clock = _clock(session, now)
        # A row another transaction holds (a worker frozen inside its epoch's write) is left
        # for a later pass, once the database has ended that transaction: waiting on it here
        # would stall the recovery of every other run.
        expired = session.execute(
            select(*_REAPED)
            .where(Run.status == RunStatus.RUNNING, Run.lease_expires_at < clock)
            .with_for_update(skip_locked=True)
        ).all()
        for run_id, attempt, given_back, max_attempts, queue, priority, note in expired:
            reason = note or LEASE_EXPIRED
            guard = and_(_held(run_id, attempt), Run.lease_expires_at < clock)
            if attempt - given_back >= max_attempts:
                error = f"gave up after {_lost(attempt, given_back)}; the last: {reason}"
                requeue += _end(session, guard, status=RunStatus.FAILED, error=error) or []
                continue
            result = session.execute(
                _update()
                .where(guard)
                .values(
                    status=RunStatus.QUEUED,
                    queued_at=clock,
                    error=f"attempt {attempt} lost: {reason}; queued again",
                    lease_owner=None,
                    lease_expires_at=None,
                )
            )
            if result.rowcount == 1:
                requeue.append(Dispatch(run_id, queue, priority))
        requeue += top_up_active(session)
    return requeue


def queued_backlog(engine: Engine, older_than: timedelta) -> dict[str, int]:
    """Queued runs per queue, for the queues where one has waited longer than `older_than`."""
    with session_scope(engine, read_only=True) as session:
        cutoff = _clock(session) - older_than
        stale = select(Run.queue).where(Run.status == RunStatus.QUEUED, Run.queued_at < cutoff)
        rows = session.execute(
            select(Run.queue, func.count())
            .where(Run.status == RunStatus.QUEUED, Run.queue.in_(stale.distinct()))
            .group_by(Run.queue)
        ).all()
    return {queue: count for queue, count in rows}


def count_queued(engine: Engine, run_ids: list[int]) -> int:
    """How many of `run_ids` are queued."""
    if not run_ids:
        return 0
    with session_scope(engine, read_only=True) as session:
        return session.scalar(
            select(func.count()).where(Run.run_id.in_(run_ids), Run.status == RunStatus.QUEUED)
        )


def stale_run_ids(engine: Engine, queue: str, older_than: timedelta) -> list[int]:
    """Queued runs of `queue` nobody claimed for `older_than`."""
    with session_scope(engine, read_only=True) as session:
        cutoff = _clock(session) - older_than
        return list(
            session.scalars(
                select(Run.run_id).where(
                    Run.status == RunStatus.QUEUED, Run.queue == queue, Run.queued_at < cutoff
                )
            )
        )


def take_stale_runs(
    engine: Engine,
    queue: str,
    older_than: timedelta,
    limit: int = 1000,
    run_ids: Collection[int] | None = None,
) -> list[Dispatch]:
    """Queued runs of `queue` nobody claimed for `older_than` (of `run_ids` alone, when given),
    most urgent first. Each goes to one caller only: its queued_at moves to now in the same
    conditional UPDATE."""
    with session_scope(engine) as session:
        clock = _clock(session)
        cutoff = clock - older_than
        stale = (Run.status == RunStatus.QUEUED, Run.queue == queue, Run.queued_at < cutoff)
        if run_ids is not None:
            stale += (Run.run_id.in_(list(run_ids)),)
        ids = (
            select(Run.run_id)
            .where(*stale)
            .order_by(Run.queued_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        rows = session.execute(
            _update()
            .where(Run.run_id.in_(ids.scalar_subquery()), *stale)
            .values(queued_at=clock)
            .returning(Run.run_id, Run.queue, Run.priority)
        ).all()
    return sorted((Dispatch(*row) for row in rows), key=lambda d: (-d.priority, d.run_id))
