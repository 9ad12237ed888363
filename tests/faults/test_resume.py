"""Checkpoints: a run whose training process is killed at epoch k resumes at epoch k on its
next attempt and ends with exactly the losses of a run that was never interrupted (CPU)."""

from __future__ import annotations

import os
import signal

import pytest
from faults.fleet import QUICK, training_pid
from support import assert_settled

from service.store import get_losses, get_run

pytestmark = pytest.mark.integration

SPEC = {**QUICK, "epochs": 30, "dropout": 0.1}


def _values(engine, run_id: int) -> list[tuple]:  # noqa: ANN001
    return [(r.epoch, r.split, r.timestep, r.value) for r in get_losses(engine, run_id)]


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
