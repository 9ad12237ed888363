"""Checkpoints: a run whose training process is killed at epoch k resumes at epoch k on its
next attempt and ends with exactly the losses, metrics, best epoch and best checkpoint of a
run that was never interrupted (CPU)."""

from __future__ import annotations

import os
import signal

import pytest
import torch
from faults.fleet import ON_EACH_DATABASE, QUICK, training_pid
from sqlalchemy import select
from support import assert_settled

from models.checkpoint import TrainingState
from service.checkpoints import load_checkpoint
from service.db import session_scope
from service.schema import Metric
from service.store import get_losses, get_run

pytestmark = pytest.mark.integration

SPEC = {**QUICK, "epochs": 30, "dropout": 0.1}


def _values(engine, run_id: int) -> list[tuple]:  # noqa: ANN001
    return [(r.epoch, r.split, r.timestep, r.value) for r in get_losses(engine, run_id)]


def _metrics(engine, run_id: int, attempt: int) -> list[tuple]:  # noqa: ANN001
    columns = (Metric.epoch, Metric.split, Metric.name, Metric.timestep, Metric.value)
    with session_scope(engine) as session:
        rows = session.execute(
            select(*columns).where(Metric.run_id == run_id, Metric.attempt == attempt)
        )
        return sorted(rows, key=lambda row: (*row[:3], row[3] or 0))


def _best(run) -> tuple:  # noqa: ANN001 - a runs row
    return (run.best_epoch, run.best_metric, run.best_metrics, run.final_metrics)


@ON_EACH_DATABASE
def test_a_killed_run_resumes_from_its_checkpoint_bit_exactly(fleet) -> None:  # noqa: ANN001
    fleet.worker()
    reference, resumed = fleet.submit(SPEC, SPEC)
    run = fleet.wait_training(resumed, epochs=3)
    os.kill(training_pid(run), signal.SIGKILL)

    done = fleet.wait_status(resumed, "succeeded")
    assert fleet.wait_status(reference, "succeeded").attempt == 1
    assert done.attempt == 2
    assert 3 <= done.resumed_from_epoch < SPEC["epochs"]
    assert_settled(fleet.engine, [reference, resumed])
    assert _values(fleet.engine, resumed) == _values(fleet.engine, reference)
    assert get_run(fleet.engine, resumed).to_json()["resumed_from_epoch"] == done.resumed_from_epoch
    # the metric rows of the epochs before the kill were copied to attempt 2, the rest written
    reference_metrics = _metrics(fleet.engine, reference, 1)
    assert len(reference_metrics) == SPEC["epochs"] * 2  # accuracy, train and val
    assert _metrics(fleet.engine, resumed, 2) == reference_metrics
    # this set overfits from its first epoch: the best lies before the kill, and the resumed
    # attempt kept the checkpoint attempt 1 wrote of it
    finished = fleet.run(reference)
    assert _best(done) == _best(finished)
    assert done.best_epoch < done.resumed_from_epoch
    best, kept = (load_checkpoint(fleet.engine, run, "best") for run in (reference, resumed))
    assert (kept.epoch, kept.attempt) == (done.best_epoch, 1)
    best_weights, kept_weights = (TrainingState.from_bytes(c.state).model for c in (best, kept))
    assert all(torch.equal(best_weights[name], kept_weights[name]) for name in best_weights)
