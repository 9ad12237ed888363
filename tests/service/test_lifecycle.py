"""Claims, fenced writes, cancel and recovery, against SQLite and PostgreSQL."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from support import Split, claim, new_run

from service.db import session_scope
from service.lifecycle import (
    LeaseLost,
    cancel_run,
    claim_run,
    finish_run,
    reap_expired_leases,
    record_epoch,
    renew_lease,
)
from service.records import utcnow
from service.schema import Loss, RunStatus
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
