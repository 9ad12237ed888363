"""Claims, fenced writes, cancel and recovery, against SQLite and PostgreSQL."""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from support import BEST_SUMMARY, Split, claim, new_run, poll, run_columns

from service.db import session_scope
from service.lifecycle import (
    LEASE_EXPIRED,
    LeaseLost,
    cancel_run,
    claim_run,
    finish_run,
    give_back_owner,
    reap_expired_leases,
    record_epoch,
    renew_lease,
)
from service.records import Dispatch, utcnow
from service.schema import Loss, Metric, Run, RunStatus
from service.store import (
    get_losses,
    get_run,
)


def test_a_second_delivery_finds_the_claim_held(engine) -> None:  # noqa: ANN001
    run = new_run(engine)
    assert claim(engine, run.id) == 1
    assert (
        claim_run(engine, run.id, owner="w2", worker="h2", device="cpu", lease_seconds=30) is None
    )
    claimed = get_run(engine, run.id)
    assert (claimed.status, claimed.worker, claimed.attempt) == ("running", "host", 1)
    assert claimed.started_at is not None


def test_an_epoch_is_written_with_its_summary(engine) -> None:  # noqa: ANN001
    run = new_run(engine)
    attempt = claim(engine, run.id)
    record_epoch(
        engine,
        run.id,
        attempt,
        1,
        {"train": Split(3.0, [1.0, 2.0]), "val": Split(4.0, [2.5, 1.5], 0.25)},
    )
    record_epoch(
        engine,
        run.id,
        attempt,
        2,
        {"train": Split(2.0, [1.0, 1.0]), "val": Split(4.5, [3.0, 1.5], 0.5)},
    )
    stored = get_run(engine, run.id)
    assert stored.epochs_done == 2
    assert (stored.final_train_loss, stored.final_val_loss) == (2.0, 4.5)
    assert (stored.best_train_loss, stored.best_val_loss) == (2.0, 4.0)
    assert stored.final_metric == 0.5
    losses = get_losses(engine, run.id)
    assert len(losses) == 2 * 2 * (2 + 1)
    last_val = [
        (r.timestep, r.value) for r in get_losses(engine, run.id, split="val", epoch="last")
    ]
    assert last_val == [(1, 3.0), (2, 1.5), (None, 4.5)]


def test_non_finite_losses_are_kept_explicitly(engine) -> None:  # noqa: ANN001
    run = new_run(engine)
    attempt = claim(engine, run.id)
    record_epoch(engine, run.id, attempt, 1, {"train": Split(float("nan"), [float("inf")])})
    values = {r.timestep: r.value for r in get_losses(engine, run.id)}
    assert math.isnan(values[None]) and values[1] == math.inf
    with session_scope(engine) as session:
        kinds = set(session.scalars(select(Loss.value_kind).where(Loss.run_id == run.id)))
    assert kinds == {"nan", "inf"}
    assert get_run(engine, run.id).final_train_loss is None


def test_writes_are_fenced_by_the_attempt(engine) -> None:  # noqa: ANN001
    run = new_run(engine)
    attempt = claim(engine, run.id)
    with pytest.raises(LeaseLost):
        record_epoch(engine, run.id, attempt + 1, 1, {"train": Split(1.0, [1.0])})
    with pytest.raises(LeaseLost):
        renew_lease(engine, run.id, attempt + 1, 30)
    finish_run(engine, run.id, attempt, RunStatus.SUCCEEDED)
    with pytest.raises(LeaseLost):
        record_epoch(engine, run.id, attempt, 1, {"train": Split(1.0, [1.0])})
    with pytest.raises(LeaseLost):
        finish_run(engine, run.id, attempt, RunStatus.FAILED, error="late")
    with session_scope(engine) as session:
        assert session.scalar(select(func.count()).select_from(Loss)) == 0
    finished = get_run(engine, run.id)
    assert finished.status == "succeeded" and finished.finished_at is not None


def test_expired_leases_are_queued_again_until_attempts_run_out(engine) -> None:  # noqa: ANN001
    run = new_run(engine)
    for attempt in (1, 2, 3):
        assert claim(engine, run.id, lease=1) == attempt
        later = utcnow() + timedelta(seconds=5)
        dispatches = reap_expired_leases(engine, now=later)
        status = get_run(engine, run.id).status
        if attempt < 3:
            assert [d.run_id for d in dispatches] == [run.id] and status == "queued"
        else:
            assert dispatches == [] and status == "failed"
    assert "3 attempts" in get_run(engine, run.id).error


def test_a_live_lease_is_left_alone(engine) -> None:  # noqa: ANN001
    run = new_run(engine)
    claim(engine, run.id, lease=60)
    assert reap_expired_leases(engine) == []
    assert get_run(engine, run.id).status == "running"


def test_cancel_queued_and_running(engine) -> None:  # noqa: ANN001
    queued = new_run(engine)
    assert cancel_run(engine, queued.id) == "queued"
    assert (
        claim_run(engine, queued.id, owner="w", worker="h", device="cpu", lease_seconds=5) is None
    )
    running = new_run(engine)
    attempt = claim(engine, running.id)
    assert cancel_run(engine, running.id) == "running"
    with pytest.raises(LeaseLost):
        renew_lease(engine, running.id, attempt, 30)
    assert get_run(engine, running.id).status == "cancelled"
    assert cancel_run(engine, 999_999) is None


def _age_queued(engine, run_id: int, seconds: float) -> None:  # noqa: ANN001
    from sqlalchemy import update

    with session_scope(engine) as session:
        session.execute(
            update(Run)
            .where(Run.run_id == run_id)
            .values(queued_at=utcnow() - timedelta(seconds=seconds))
        )


def test_a_new_attempt_starts_from_a_clean_summary(engine) -> None:  # noqa: ANN001
    run = new_run(engine)
    attempt = claim(engine, run.id, lease=1)
    record_epoch(engine, run.id, attempt, 1, {"train": Split(0.5, [0.5]), "val": Split(0.4, [0.4])})
    reap_expired_leases(engine, now=utcnow() + timedelta(seconds=5))
    assert claim(engine, run.id) == attempt + 1
    again = get_run(engine, run.id)
    assert (again.epochs_done, again.best_val_loss, again.final_train_loss) == (0, None, None)
    assert again.error is None and again.finished_at is None
    assert get_losses(engine, run.id) == []  # attempt 1's rows stay stored, unseen
    with session_scope(engine) as session:
        assert session.scalar(select(func.count()).select_from(Loss)) == 2 * 2


def test_a_dead_process_releases_only_its_own_lease(engine) -> None:  # noqa: ANN001
    from service.lifecycle import release_lease

    run = new_run(engine, max_attempts=2)
    claim(engine, run.id, lease=60)  # owner "w1"
    assert not release_lease(engine, run.id, "someone-else", "the training process died")
    assert reap_expired_leases(engine) == []
    assert release_lease(engine, run.id, "w1", "the training process died: signal 9 (SIGKILL)")
    assert [d.run_id for d in reap_expired_leases(engine)] == [run.id]
    queued = get_run(engine, run.id)
    assert queued.status == "queued"
    assert queued.error == (
        "attempt 1 lost: the training process died: signal 9 (SIGKILL); queued again"
    )
    claim(engine, run.id, lease=60)
    release_lease(engine, run.id, "w1", "the training process died: signal 9 (SIGKILL)")
    assert reap_expired_leases(engine) == []
    failed = get_run(engine, run.id)
    assert failed.status == "failed" and failed.finished_at is not None
    assert failed.error == (
        "gave up after 2 attempts; the last: the training process died: signal 9 (SIGKILL)"
    )


SHUT_DOWN = "its worker was shut down (cold shutdown)"


def test_a_run_given_back_max_attempts_times_is_still_queued_and_trainable(engine) -> None:  # noqa: ANN001
    run = new_run(engine, max_attempts=2)
    for attempt in (1, 2, 3):
        assert claim(engine, run.id, lease=60) == attempt
        assert give_back_owner(engine, "w1", SHUT_DOWN) == [Dispatch(run.id, "cpu", 0)]
        given_back = get_run(engine, run.id)
        assert (given_back.status, given_back.given_back) == ("queued", attempt)
        assert given_back.error == f"attempt {attempt} given back: {SHUT_DOWN}; queued again"
        with pytest.raises(LeaseLost):  # the attempt given back writes nothing more
            renew_lease(engine, run.id, attempt, 30)
        assert reap_expired_leases(engine, now=utcnow() + timedelta(seconds=120)) == []
    attempt = claim(engine, run.id)
    finish_run(engine, run.id, attempt, RunStatus.SUCCEEDED)
    done = get_run(engine, run.id)
    assert (done.status, done.attempt, done.given_back, done.error) == ("succeeded", 4, 3, None)


def test_crashes_still_fail_a_run_whose_earlier_attempts_were_given_back(engine) -> None:  # noqa: ANN001
    run = new_run(engine, max_attempts=2)
    claim(engine, run.id)
    give_back_owner(engine, "w1", SHUT_DOWN)
    assert give_back_owner(engine, "w1", SHUT_DOWN) == []  # it holds nothing any more
    later = utcnow() + timedelta(seconds=5)
    claim(engine, run.id, lease=1)
    assert [d.run_id for d in reap_expired_leases(engine, now=later)] == [run.id]
    assert get_run(engine, run.id).status == "queued"
    claim(engine, run.id, lease=1)
    assert reap_expired_leases(engine, now=later) == []
    failed = get_run(engine, run.id)
    assert (failed.status, failed.attempt, failed.given_back) == ("failed", 3, 1)
    assert failed.error == (
        f"gave up after 2 attempts (and 1 given back); the last: {LEASE_EXPIRED}"
    )


def test_an_expired_lease_names_the_reason_it_was_lost(engine) -> None:  # noqa: ANN001
    run = new_run(engine)
    claim(engine, run.id, lease=1)
    reap_expired_leases(engine, now=utcnow() + timedelta(seconds=5))
    assert get_run(engine, run.id).error == f"attempt 1 lost: {LEASE_EXPIRED}; queued again"


def test_stale_queued_runs_go_to_one_reaper_only(engine) -> None:  # noqa: ANN001
    from service.lifecycle import count_queued, queued_backlog, take_stale_runs
    from service.store import NewRun, create_run

    fresh, old, urgent = new_run(engine), new_run(engine), new_run(engine)
    spec = get_run(engine, fresh.id).spec
    gpu = create_run(engine, spec, {}, NewRun("exp", "gpu"))
    with session_scope(engine) as session:
        from sqlalchemy import update

        from service.schema import Run

        session.execute(update(Run).where(Run.run_id == urgent.id).values(priority=9))
    for run_id in (old.id, urgent.id, gpu.id):
        _age_queued(engine, run_id, 120)
    assert queued_backlog(engine, timedelta(seconds=60)) == {"cpu": 3, "gpu": 1}
    assert queued_backlog(engine, timedelta(seconds=600)) == {}
    taken = take_stale_runs(engine, "cpu", timedelta(seconds=60))
    assert [(d.run_id, d.priority) for d in taken] == [(urgent.id, 9), (old.id, 0)]
    assert take_stale_runs(engine, "cpu", timedelta(seconds=60)) == []  # taken: not stale now
    assert queued_backlog(engine, timedelta(seconds=60)) == {"gpu": 1}
    assert count_queued(engine, [fresh.id, gpu.id, 999_999]) == 2 and count_queued(engine, []) == 0


def test_cancel_releases_the_lease_and_leaves_an_ended_run_alone(engine) -> None:  # noqa: ANN001
    from service.lifecycle import finished_as

    run = new_run(engine)
    attempt = claim(engine, run.id)
    assert cancel_run(engine, run.id) == "running"
    with session_scope(engine) as session:
        from service.schema import Run

        row = session.get(Run, run.id)
        assert (row.lease_owner, row.lease_expires_at) == (None, None)
    assert cancel_run(engine, run.id) == "cancelled"
    assert finished_as(engine, run.id, attempt) == "cancelled"
    assert finished_as(engine, run.id, attempt + 1) is None


def test_a_training_claim_records_the_device_and_returns_the_spec(engine) -> None:  # noqa: ANN001
    from sqlalchemy import update

    from service.lifecycle import claim_for_training

    def take(run_id: int):  # noqa: ANN202
        return claim_for_training(
            engine, run_id, owner="w", worker="h", auto_device="cuda", lease_seconds=30
        )

    for requested, recorded in (("cpu", "cpu"), ("cuda", "cuda"), ("auto", "cuda")):
        run = new_run(engine, device=requested)
        claimed = take(run.id)
        assert claimed.attempt == 1 and claimed.spec["task"] == "translation"
        assert get_run(engine, run.id).device == recorded
        assert take(run.id) is None  # held: a second delivery gets nothing
    garbage = new_run(engine)
    with session_scope(engine) as session:
        session.execute(
            update(Run).where(Run.run_id == garbage.id).values(spec=["not", "a", "spec"])
        )
    assert take(garbage.id).spec == ["not", "a", "spec"]  # the worker fails it, with the reason
    assert take(999_999) is None


def test_a_worker_frozen_inside_its_epoch_write_delays_only_its_own_run(
    postgresql_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker frozen between its epoch's UPDATE and COMMIT holds its run's row. The reaper
    passes that row by and recovers every other run at once; the frozen run follows as soon
    as PostgreSQL ends the idle transaction. (On SQLite such a writer holds the whole
    database: nothing but its death or thaw ends it.)"""
    import service.db
    from service.lifecycle import _record_epoch

    monkeypatch.setattr(service.db, "TRANSACTION_IDLE_TIMEOUT_SECONDS", 1.0)
    engine = service.db.get_engine(postgresql_url)
    frozen_run, other = new_run(engine), new_run(engine)
    attempt = claim(engine, frozen_run.id)
    claim(engine, other.id)
    later = utcnow() + timedelta(seconds=60)  # both leases expired by then
    frozen = Session(engine)
    try:
        _record_epoch(frozen, frozen_run.id, attempt, 1, {"train": Split(1.0), "val": Split(2.0)})
        frozen_at = time.monotonic()
        with ThreadPoolExecutor(1) as pool:
            reaped = pool.submit(reap_expired_leases, engine, later).result(timeout=5)
        assert [d.run_id for d in reaped] == [other.id]
        assert get_run(engine, frozen_run.id).status == "running"
        reaped = poll(lambda: reap_expired_leases(engine, later), 10, "the frozen run's reap")
        assert [d.run_id for d in reaped] == [frozen_run.id]
        assert time.monotonic() - frozen_at >= 1.0  # not before the bound
        with pytest.raises(DBAPIError, match="idle-in-transaction timeout"):
            frozen.commit()
    finally:
        frozen.close()
    assert get_run(engine, frozen_run.id).epochs_done == 0  # the frozen write never landed
    assert get_losses(engine, frozen_run.id) == []


def test_a_renewal_never_queues_behind_its_runs_row_lock(postgresql_url: str) -> None:
    """A heartbeat that found its run's row held (its own process's epoch write, frozen) gives
    up within the lock timeout instead of queuing: queued, it would take the row once that
    write was ended and hold it, frozen, for another idle-transaction timeout."""
    import service.db
    from service.lifecycle import RENEWAL_LOCK_TIMEOUT_MS, _record_epoch

    engine = service.db.get_engine(postgresql_url)
    run = new_run(engine)
    attempt = claim(engine, run.id)
    writer = Session(engine)
    try:
        _record_epoch(writer, run.id, attempt, 1, {"train": Split(1.0), "val": Split(2.0)})
        started = time.monotonic()
        with pytest.raises(DBAPIError, match="lock timeout"):
            renew_lease(engine, run.id, attempt, 30)
        assert time.monotonic() - started < RENEWAL_LOCK_TIMEOUT_MS / 1000 + 2
    finally:
        writer.rollback()
        writer.close()
    renew_lease(engine, run.id, attempt, 30)  # the row free again: renewed


def _summary(engine, run_id: int) -> tuple:  # noqa: ANN001
    return run_columns(engine, run_id, *BEST_SUMMARY)


def _label_split(total: float, accuracy: float) -> Split:
    return Split(total, [total], accuracy, {"accuracy": accuracy})


def _sequence_split(total: float, steps: list[float], exact: float) -> Split:
    """A sequence task's numbers: token accuracy (the primary) is the mean of `steps` here."""
    token = sum(steps) / len(steps)
    metrics = {"token_accuracy": token, "exact_match": exact}
    return Split(
        total, [total / len(steps)] * len(steps), token, metrics, {"token_accuracy": steps}
    )


def _metric_rows(engine, run_id: int) -> set[tuple]:  # noqa: ANN001
    """(attempt, epoch, split, name, timestep, value) of every stored metric row of the run."""
    columns = (Metric.attempt, Metric.epoch, Metric.split, Metric.name, Metric.timestep)
    with session_scope(engine) as session:
        rows = session.execute(select(*columns, Metric.value).where(Metric.run_id == run_id))
        return {tuple(row) for row in rows}


def test_every_metric_of_an_epoch_is_written_beside_its_losses(engine) -> None:  # noqa: ANN001
    run = new_run(engine)
    attempt = claim(engine, run.id)
    train = _sequence_split(2.0, [1.0, 0.75, 0.5], 0.5)
    val = _sequence_split(3.0, [1.0, 0.5, float("nan")], 0.25)
    val.metrics["exact_match"] = float("inf")  # a non-finite metric is left out, not stored
    record_epoch(engine, run.id, attempt, 1, {"train": train, "val": val})
    assert _metric_rows(engine, run.id) == {
        (1, 1, "train", "exact_match", None, 0.5),
        (1, 1, "train", "token_accuracy", None, 0.75),
        (1, 1, "train", "token_accuracy", 1, 1.0),
        (1, 1, "train", "token_accuracy", 2, 0.75),
        (1, 1, "train", "token_accuracy", 3, 0.5),
        (1, 1, "val", "token_accuracy", 1, 1.0),
        (1, 1, "val", "token_accuracy", 2, 0.5),
    }
    # the per-timestep metrics share the losses' numbering
    loss_steps = {r.timestep for r in get_losses(engine, run.id, split="train")} - {None}
    assert loss_steps == {1, 2, 3}


def test_metric_writes_are_fenced_by_the_attempt(engine) -> None:  # noqa: ANN001
    run = new_run(engine, task="binary")
    attempt = claim(engine, run.id, lease=1)
    splits = {"train": _label_split(0.5, 0.75), "val": _label_split(0.4, 0.8)}
    record_epoch(engine, run.id, attempt, 1, splits)
    reap_expired_leases(engine, now=utcnow() + timedelta(seconds=5))
    assert claim(engine, run.id) == attempt + 1
    with pytest.raises(LeaseLost):  # the stale attempt writes nothing more
        record_epoch(engine, run.id, attempt, 2, splits)
    with pytest.raises(LeaseLost):
        finish_run(engine, run.id, attempt, RunStatus.SUCCEEDED, last_epoch=(2, splits, None))
    assert _metric_rows(engine, run.id) == {
        (1, 1, "train", "accuracy", None, 0.75),
        (1, 1, "val", "accuracy", None, 0.8),
    }
    assert _summary(engine, run.id) == (None, None, None, None, None, None)


def test_the_best_epoch_is_the_lowest_val_loss_and_ties_go_to_the_earlier(engine) -> None:  # noqa: ANN001
    from service.checkpoints import load_checkpoint

    run = new_run(engine, task="binary")
    attempt = claim(engine, run.id)
    val = [(4.0, 0.5), (3.0, 0.7), (3.0, 0.9), (5.0, 0.6), (float("nan"), 0.1)]
    for epoch, (total, accuracy) in enumerate(val, start=1):
        splits = {"train": _label_split(1.0 / epoch, 0.9), "val": _label_split(total, accuracy)}
        record_epoch(engine, run.id, attempt, epoch, splits, f"state {epoch}".encode())
        if epoch == 2:
            assert _summary(engine, run.id)[:2] == (2, 0.7)  # kept current while it trains
    best_epoch, best_metric, best_metrics, final_metric, final_metrics, best_loss = _summary(
        engine, run.id
    )
    assert (best_epoch, best_metric, best_metrics, best_loss) == (2, 0.7, {"accuracy": 0.7}, 3.0)
    assert (final_metric, final_metrics) == (0.1, {"accuracy": 0.1})
    best = load_checkpoint(engine, run.id, "best")
    last = load_checkpoint(engine, run.id, "last")
    assert (best.epoch, best.attempt, best.state) == (2, attempt, b"state 2")
    assert (last.epoch, last.state) == (5, b"state 5")


def test_a_sequence_run_keeps_every_val_metric_of_its_best_and_last_epochs(engine) -> None:  # noqa: ANN001
    run = new_run(engine)
    attempt = claim(engine, run.id)
    for epoch, (total, exact) in enumerate([(2.0, 0.5), (1.0, 0.75), (1.5, 0.25)], start=1):
        splits = {
            "train": _sequence_split(1.0, [1.0, 1.0], 1.0),
            "val": _sequence_split(total, [1.0, exact], exact),
        }
        finish = epoch == 3
        if finish:
            finish_run(engine, run.id, attempt, RunStatus.SUCCEEDED, last_epoch=(3, splits, None))
        else:
            record_epoch(engine, run.id, attempt, epoch, splits)
    best_epoch, best_metric, best_metrics, final_metric, final_metrics, _ = _summary(engine, run.id)
    assert (best_epoch, best_metric) == (2, 0.875)
    assert best_metrics == {"token_accuracy": 0.875, "exact_match": 0.75}
    assert (final_metric, final_metrics) == (0.625, {"token_accuracy": 0.625, "exact_match": 0.25})


def test_a_new_claim_resets_the_best_epoch(engine) -> None:  # noqa: ANN001
    run = new_run(engine, task="binary")
    attempt = claim(engine, run.id, lease=1)
    splits = {"train": _label_split(0.5, 0.75), "val": _label_split(0.4, 0.8)}
    record_epoch(engine, run.id, attempt, 1, splits)
    assert _summary(engine, run.id)[:2] == (1, 0.8)
    reap_expired_leases(engine, now=utcnow() + timedelta(seconds=5))
    claim(engine, run.id)
    assert _summary(engine, run.id) == (None, None, None, None, None, None)


def _written(engine, run_id: int) -> tuple:  # noqa: ANN001
    """What a run's epochs wrote: its losses, its summary and its latest checkpoint."""
    from service.checkpoints import load_checkpoint

    losses = [(r.epoch, r.split, r.timestep, r.value) for r in get_losses(engine, run_id)]
    stored = [load_checkpoint(engine, run_id, which) for which in ("last", "best")]
    summary = run_columns(engine, run_id, "status", "epochs_done", *BEST_SUMMARY)
    return losses, summary, [c and (c.epoch, c.state) for c in stored]


def test_a_group_epoch_fences_each_member_by_its_own_attempt(engine) -> None:  # noqa: ANN001
    """One transaction writes every member's epoch and the outcome of those that left; a member
    whose attempt lost its run (cancelled, or reclaimed by a new attempt) writes nothing, and
    the others' rows land exactly as record_epoch and finish_run write them alone."""
    from service.epoch_writes import EpochWrite
    from service.lifecycle import Ending, record_group_epoch

    first = {"train": Split(3.0, [1.0, 2.0]), "val": Split(4.0, [2.5, 1.5], 0.25)}
    second = {"train": Split(2.0, [1.0, 1.0]), "val": Split(4.5, [3.0, 1.5], 0.5)}  # not best
    alone, ended_alone, kept, ending, cancelled, reclaimed = (new_run(engine) for _ in range(6))
    attempt = {run.id: claim(engine, run.id) for run in (alone, ended_alone, kept, ending)}
    attempt |= {cancelled.id: claim(engine, cancelled.id)}
    attempt |= {reclaimed.id: claim(engine, reclaimed.id, lease=1)}
    for run in (alone, ended_alone):
        record_epoch(engine, run.id, attempt[run.id], 1, first, b"epoch 1")
    record_epoch(engine, alone.id, attempt[alone.id], 2, second, b"epoch 2")
    last = (2, second, b"epoch 2")
    finish_run(
        engine, ended_alone.id, attempt[ended_alone.id], RunStatus.SUCCEEDED, last_epoch=last
    )

    members = (kept, ending, cancelled, reclaimed)
    writes = [EpochWrite(run.id, attempt[run.id], 1, first, b"epoch 1") for run in members]
    assert record_group_epoch(engine, writes) == {run.id for run in members}
    cancel_run(engine, cancelled.id)
    assert [d.run_id for d in reap_expired_leases(engine, utcnow() + timedelta(seconds=5))] == [
        reclaimed.id
    ]
    assert claim(engine, reclaimed.id) == attempt[reclaimed.id] + 1

    writes = [EpochWrite(run.id, attempt[run.id], 2, second, b"epoch 2") for run in members]
    endings = [Ending(run.id, attempt[run.id], RunStatus.SUCCEEDED) for run in (ending, cancelled)]
    assert record_group_epoch(engine, writes, endings) == {kept.id, ending.id}

    assert _written(engine, kept.id) == _written(engine, alone.id)
    assert _written(engine, ending.id) == _written(engine, ended_alone.id)
    assert _written(engine, ending.id)[1][0] == "succeeded"
    assert _written(engine, kept.id)[2] == [(2, b"epoch 2"), (1, b"epoch 1")]
    losses, summary, _ = _written(engine, cancelled.id)
    assert summary[:2] == ("cancelled", 1) and {row[0] for row in losses} == {1}
    reclaimed_row = get_run(engine, reclaimed.id)
    assert (reclaimed_row.status, reclaimed_row.epochs_done) == ("running", 0)
    assert get_losses(engine, reclaimed.id) == []  # only the new attempt's rows count
