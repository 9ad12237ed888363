"""The latest and the best checkpoint of a run, and a resume from them, on SQLite and
PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from support import BEST_SUMMARY, Split, claim, new_run, run_columns

from service.checkpoints import adopt_checkpoint, load_checkpoint
from service.db import session_scope
from service.lifecycle import reap_expired_leases, record_epoch
from service.records import utcnow
from service.schema import Checkpoint, Metric


def _splits(val_loss: float, accuracy: float) -> dict[str, Split]:
    return {
        "train": Split(0.5, [0.5], 0.9, {"accuracy": 0.9}),
        "val": Split(val_loss, [val_loss], accuracy, {"accuracy": accuracy}),
    }


def _reclaim(engine, run_id: int) -> int:  # noqa: ANN001
    """The run's lease expires and a new attempt claims it."""
    reap_expired_leases(engine, now=utcnow() + timedelta(seconds=5))
    return claim(engine, run_id)


def _metrics(engine, run_id: int, attempt: int) -> list[tuple]:  # noqa: ANN001
    with session_scope(engine) as session:
        rows = session.execute(
            select(Metric.epoch, Metric.split, Metric.name, Metric.timestep, Metric.value).where(
                Metric.run_id == run_id, Metric.attempt == attempt
            )
        )
        return sorted(tuple(row) for row in rows)


def test_a_resume_copies_the_metrics_and_keeps_the_best_checkpoint(engine) -> None:  # noqa: ANN001
    run = new_run(engine, task="binary")
    first = claim(engine, run.id, lease=1)
    epochs = [(0.6, 0.7), (0.3, 0.9), (0.4, 0.8)]  # the best is epoch 2
    for epoch, (loss, accuracy) in enumerate(epochs, start=1):
        record_epoch(engine, run.id, first, epoch, _splits(loss, accuracy), b"state %d" % epoch)
    second = _reclaim(engine, run.id)
    latest = load_checkpoint(engine, run.id)
    assert adopt_checkpoint(engine, run.id, second, latest)

    assert _metrics(engine, run.id, second) == _metrics(engine, run.id, first)
    assert len(_metrics(engine, run.id, second)) == 3 * 2
    assert run_columns(engine, run.id, "epochs_done", *BEST_SUMMARY) == (
        3,
        2,
        0.9,
        {"accuracy": 0.9},
        0.8,
        {"accuracy": 0.8},
        0.3,
    )
    record_epoch(engine, run.id, second, 4, _splits(0.5, 0.75), b"state 4")  # no better
    best = load_checkpoint(engine, run.id, "best")
    assert (best.epoch, best.attempt, best.state) == (2, first, b"state 2")
    assert load_checkpoint(engine, run.id).state == b"state 4"
    assert run_columns(engine, run.id, "epochs_done", *BEST_SUMMARY)[:3] == (4, 2, 0.9)
    record_epoch(engine, run.id, second, 5, _splits(0.1, 0.95), b"state 5")  # a new best
    best = load_checkpoint(engine, run.id, "best")
    assert (best.epoch, best.attempt, best.state) == (5, second, b"state 5")


def test_a_fresh_attempt_drops_a_best_checkpoint_an_earlier_attempt_left(engine) -> None:  # noqa: ANN001
    run = new_run(engine, task="binary")
    first = claim(engine, run.id, lease=1)
    record_epoch(engine, run.id, first, 1, _splits(0.3, 0.9), b"attempt 1")
    second = _reclaim(engine, run.id)  # starts again at epoch 1, without adopting
    record_epoch(engine, run.id, second, 1, _splits(float("nan"), 0.5), b"attempt 2")
    assert load_checkpoint(engine, run.id, "best") is None
    assert load_checkpoint(engine, run.id).state == b"attempt 2"
    assert run_columns(engine, run.id, "epochs_done", *BEST_SUMMARY)[1] is None


def test_a_run_without_a_best_checkpoint_has_only_its_latest(engine) -> None:  # noqa: ANN001
    run = new_run(engine, task="binary")
    attempt = claim(engine, run.id)
    assert load_checkpoint(engine, run.id, "best") is None
    record_epoch(engine, run.id, attempt, 1, _splits(float("inf"), 0.5), b"diverged")
    assert load_checkpoint(engine, run.id, "best") is None
    assert load_checkpoint(engine, run.id, "last").state == b"diverged"
    with session_scope(engine) as session:
        assert session.scalar(select(Checkpoint.best_epoch)) is None
    with pytest.raises(ValueError, match="'last' or 'best'"):
        load_checkpoint(engine, run.id, "first")  # type: ignore[arg-type]


def test_a_stale_attempt_stores_no_checkpoint(engine) -> None:  # noqa: ANN001
    from service.lifecycle import LeaseLost

    run = new_run(engine, task="binary")
    first = claim(engine, run.id, lease=1)
    record_epoch(engine, run.id, first, 1, _splits(0.5, 0.8), b"attempt 1")
    second = _reclaim(engine, run.id)
    with pytest.raises(LeaseLost):
        record_epoch(engine, run.id, first, 2, _splits(0.1, 0.9), b"stale")
    record_epoch(engine, run.id, second, 1, _splits(0.6, 0.7), b"attempt 2")
    for which in ("last", "best"):
        assert load_checkpoint(engine, run.id, which).state == b"attempt 2"
