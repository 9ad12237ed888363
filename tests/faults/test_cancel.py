"""Cancel lives in the database: a queued run never starts, even on a worker that started
after the cancel; a running run stops at its next batch, within seconds, keeping its losses."""

from __future__ import annotations

import time

import pytest
from faults.fleet import FAULT_ENV, QUICK, Fleet
from support import assert_settled, loss_rows, poll, read_log, run_cli

pytestmark = pytest.mark.integration

HEARTBEAT = float(FAULT_ENV["EXPQ_HEARTBEAT_SECONDS"])


def test_a_cancelled_queued_run_never_starts(fleet: Fleet) -> None:
    cancelled, sentinel = fleet.submit({**QUICK, "epochs": 2}, {**QUICK, "epochs": 2})
    result = run_cli(fleet.env, "runs", "cancel", str(cancelled))
    assert result.returncode == 0 and "cancelled (was queued)" in result.stdout
    # This worker never saw the cancel: it only has the database to go by.
    worker = fleet.worker()
    fleet.wait_status(sentinel, "succeeded")  # one pool process, FIFO: the cancelled came first
    run = fleet.run(cancelled)
    assert (run.status, run.attempt, run.started_at, run.epochs_done) == ("cancelled", 0, None, 0)
    assert loss_rows(fleet.engine, cancelled) == []
    assert f"run {cancelled}: not queued; message dropped" in read_log(worker.log_path)
    assert_settled(fleet.engine, [cancelled, sentinel])


def test_a_cancelled_running_run_stops_within_seconds_keeping_its_losses(fleet: Fleet) -> None:
    worker = fleet.worker()
    (run_id,) = fleet.submit({**QUICK, "epochs": 10_000})
    fleet.wait_training(run_id, epochs=2)
    result = run_cli(fleet.env, "runs", "cancel", str(run_id))
    cancelled = time.monotonic()
    assert result.returncode == 0 and "cancelled (was running)" in result.stdout
    poll(
        lambda: f"run {run_id} attempt 1: cancelled; stopped" in read_log(worker.log_path),
        30,
        "the worker to stop training",
    )
    # Seen at the next heartbeat or epoch write, acted on at the next batch: within seconds.
    assert time.monotonic() - cancelled < HEARTBEAT + 4
    run = fleet.run(run_id)
    assert run.status == "cancelled" and run.error == "cancelled by user"
    assert 2 <= run.epochs_done < 10_000
    assert_settled(fleet.engine, [run_id])  # every recorded epoch kept, and nothing after
    (next_id,) = fleet.submit({**QUICK, "epochs": 2})  # the pool process is free again
    fleet.wait_status(next_id, "succeeded")
