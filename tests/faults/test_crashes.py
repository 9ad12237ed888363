"""Processes that die or freeze mid-run: the run is recovered from its lease, trains to the
end exactly once more, and the lost attempt's writes stay invisible."""

from __future__ import annotations

import os
import signal
import time

import pytest
from faults.fleet import (
    FAULT_ENV,
    ON_EACH_DATABASE,
    QUICK,
    freeze,
    freeze_inside_a_write,
    thaw,
    training_pid,
    worker_holding,
)
from support import assert_settled, log_has, loss_rows, poll

from service.db import TRANSACTION_IDLE_TIMEOUT_SECONDS
from service.lifecycle import LEASE_EXPIRED, cancel_run

pytestmark = pytest.mark.integration

LEASE = float(FAULT_ENV["EXPQ_LEASE_SECONDS"])
REAP = float(FAULT_ENV["EXPQ_REAP_SECONDS"])
HEARTBEAT = float(FAULT_ENV["EXPQ_HEARTBEAT_SECONDS"])
SLACK = 3.0  # a claim, a message hop and a loaded CI machine
LONG_LEASE = 20.0
LONG = {**QUICK, "epochs": 40}  # ~1-2 s: long enough to be caught mid-run
# Most of an epoch is its write (a checkpoint of ~1M parameters): easy to freeze inside it.
WIDE = {"task": "binary", "model": "mlp", "hidden": 1024, "layers": 2, "samples": 80}


def _lost(run_id: int) -> tuple[str, str]:
    """What a thawed worker logs for attempt 1: its next write refused, or, frozen inside a
    write, PostgreSQL's end of that transaction."""
    return (
        f"run {run_id} attempt 1: lease lost",
        f"run {run_id} attempt 1: database error, attempt abandoned",
    )


def _since(moment: float, run) -> float:  # noqa: ANN001 - a runs row
    return run.started_at.timestamp() - moment


@ON_EACH_DATABASE
def test_a_killed_training_process_is_claimed_again_at_once(fleet) -> None:  # noqa: ANN001
    # A lease far longer than the release path takes, so that the two cannot be mistaken.
    worker = fleet.worker(EXPQ_LEASE_SECONDS=str(LONG_LEASE))
    (run_id,) = fleet.submit(LONG)
    run = fleet.wait_training(run_id, epochs=2)
    killed = time.time()
    os.kill(training_pid(run), signal.SIGKILL)

    again = fleet.wait_attempt(run_id, 2)
    # The worker saw its pool process die and released the lease: no lease wait.
    assert _since(killed, again) < LONG_LEASE / 2, _since(killed, again)
    done = fleet.wait_status(run_id, "succeeded")
    assert done.attempt == 2 and done.error is None
    assert_settled(fleet.engine, [run_id])
    assert {row[0] for row in loss_rows(fleet.engine, run_id)} == {1, 2}  # attempt 1 kept, unseen
    assert log_has(worker.log_path, "the training process died: signal 9 (SIGKILL)")
    assert worker.poll() is None


@ON_EACH_DATABASE
def test_a_killed_worker_is_recovered_by_another_within_the_lease(fleet) -> None:  # noqa: ANN001
    workers = [fleet.worker(), fleet.worker()]
    (run_id,) = fleet.submit(LONG)
    run = fleet.wait_training(run_id, epochs=2)
    holder = worker_holding(run, workers)
    killed = time.time()
    os.killpg(holder.pid, signal.SIGKILL)
    holder.wait(10)

    again = fleet.wait_attempt(run_id, 2)
    assert _since(killed, again) < LEASE + REAP + SLACK, _since(killed, again)
    done = fleet.wait_status(run_id, "succeeded")
    assert done.attempt == 2
    assert_settled(fleet.engine, [run_id])


def test_a_frozen_worker_resumes_to_find_its_writes_refused(fleet) -> None:  # noqa: ANN001
    workers = [fleet.worker(), fleet.worker()]
    (run_id,) = fleet.submit({**QUICK, "epochs": 60})
    run = fleet.wait_training(run_id, epochs=2)
    holder = worker_holding(run, workers)
    freeze(holder)
    frozen = time.time()

    fleet.wait_attempt(run_id, 2)
    # Reclaimed only once the lease ran out (renewed at most one heartbeat before the freeze).
    assert time.time() - frozen > LEASE - HEARTBEAT
    # From here on no write of attempt 1 can commit: the reap changed the row it is fenced on.
    first_attempt = loss_rows(fleet.engine, run_id, attempt=1)
    thaw(holder)
    poll(
        lambda: any(log_has(holder.log_path, line) for line in _lost(run_id)),
        30,
        "the thawed worker to notice it lost the run",
    )
    done = fleet.wait_status(run_id, "succeeded")
    assert done.attempt == 2
    assert loss_rows(fleet.engine, run_id, attempt=1) == first_attempt
    assert_settled(fleet.engine, [run_id])
    assert holder.poll() is None  # it lives on and takes the next run
    (next_id,) = fleet.submit({**QUICK, "epochs": 2})
    fleet.wait_status(next_id, "succeeded")


@ON_EACH_DATABASE
def test_a_run_that_crashes_every_attempt_fails_after_max_attempts(fleet) -> None:  # noqa: ANN001
    """The OOM killer every time: the run gives up after 3 claims, with the reason, while the
    runs queued behind it train meanwhile."""
    worker = fleet.worker()
    poison, *others = fleet.submit(
        {**QUICK, "epochs": 10_000}, {**QUICK, "epochs": 3}, {**QUICK, "epochs": 3, "seed": 1}
    )
    for attempt in (1, 2, 3):
        run = fleet.wait_training(poison, epochs=1, attempt=attempt)
        os.kill(training_pid(run), signal.SIGKILL)
    failed = fleet.wait_status(poison, "failed")
    assert failed.attempt == failed.max_attempts == 3
    died = "the training process died: signal 9 (SIGKILL) (killed: out of memory?)"
    # The worker saw the death and said so; had the machine stalled long enough for the lease
    # to run out first, the reaper's reason stands instead.
    assert failed.error in (
        f"gave up after 3 attempts; the last: {died}",
        f"gave up after 3 attempts; the last: {LEASE_EXPIRED}",
    )
    assert log_has(worker.log_path, f"run {poison}: {died}; lease released")
    for run_id in others:
        done = fleet.wait_status(run_id, "succeeded")
        assert done.finished_at < failed.started_at  # trained between the poison's attempts
    assert_settled(fleet.engine, [poison, *others])


def test_a_worker_frozen_inside_a_write_stalls_no_other_run(fleet) -> None:  # noqa: ANN001
    """The frozen process holds its run's row until PostgreSQL ends its idle transaction;
    meanwhile the reapers pass that row by and recover every other run at once."""
    workers = [fleet.worker(), fleet.worker(concurrency=2)]
    stuck, other = fleet.submit({**WIDE, "epochs": 10_000}, {**WIDE, "epochs": 10_000, "seed": 1})
    run = fleet.wait_training(stuck)
    fleet.wait_training(other)
    freeze_inside_a_write(fleet.engine, training_pid(run), stuck)
    frozen = time.time()
    holder = worker_holding(run, workers)
    # Only once the frozen run's lease ran out can a reaper wait on its row.
    poll(lambda: time.time() > fleet.run(stuck).lease_expires_at.timestamp(), 30, "the lease")
    killed = time.time()
    os.kill(training_pid(fleet.run(other)), signal.SIGKILL)

    # Queued again (the README's bounds; a claim follows when a pool process is free).
    again = fleet.wait_attempt(other, 2)
    assert again.queued_at.timestamp() - killed < LEASE, again.queued_at.timestamp() - killed
    again = fleet.wait_attempt(stuck, 2)
    waited = again.queued_at.timestamp() - frozen
    # Not before PostgreSQL ended the frozen transaction, and soon after.
    bound = max(LEASE, TRANSACTION_IDLE_TIMEOUT_SECONDS) + REAP + SLACK
    assert TRANSACTION_IDLE_TIMEOUT_SECONDS - 1 < waited < bound, waited

    os.kill(training_pid(run), signal.SIGCONT)
    # Its epoch's write or its heartbeat's renewal, whichever it was frozen in, was ended.
    poll(
        lambda: any(log_has(holder.log_path, line) for line in _lost(stuck)),
        30,
        "the thawed process to notice it lost the run",
    )
    for run_id in (stuck, other):
        cancel_run(fleet.engine, run_id)
        fleet.wait_status(run_id, "cancelled")
    assert_settled(fleet.engine, [stuck, other])


PROGRESS_TIMEOUT = 10.0  # above a training process's set-up on a loaded machine


def test_a_hung_training_process_loses_its_lease_and_the_run_trains_again(fleet) -> None:  # noqa: ANN001
    """Its second epoch blocks forever while its heartbeat thread lives on: without a batch for
    EXPQ_PROGRESS_TIMEOUT_SECONDS the heartbeat stops renewing and ends the process, and the
    run is queued again within that bound, not a lease later, nor never."""
    worker = fleet.worker(inject="hang@2", EXPQ_PROGRESS_TIMEOUT_SECONDS=str(PROGRESS_TIMEOUT))
    (run_id,) = fleet.submit({**QUICK, "epochs": 5})
    again = poll(lambda: (run := fleet.run(run_id)).attempt >= 2 and run, 120, "attempt 2")
    hung = os.path.getmtime(fleet.marker("hang"))
    waited = again.queued_at.timestamp() - hung
    assert PROGRESS_TIMEOUT - 1 < waited < PROGRESS_TIMEOUT + HEARTBEAT + SLACK, waited
    done = fleet.wait_status(run_id, "succeeded")
    assert done.attempt == 2 and done.error is None
    assert_settled(fleet.engine, [run_id])
    given_up = f"run {run_id} attempt 1: training made no progress for"
    assert log_has(worker.log_path, given_up)
    assert worker.poll() is None


def test_a_worker_whose_renewals_fail_past_the_lease_stops_training(fleet) -> None:  # noqa: ANN001
    """Every renewal of the first attempt fails (a database its heartbeat cannot reach) and no
    reaper passes to take the run back (its period is an hour here): the worker stops that
    training itself once the lease has run out unrenewed, instead of training on."""
    worker = fleet.worker(inject="renew", EXPQ_REAP_SECONDS="3600")
    (run_id,) = fleet.submit({**QUICK, "epochs": 10_000})
    started = fleet.wait_attempt(run_id, 1).started_at.timestamp()
    stopped = f"run {run_id} attempt 1: lease renewals failed for"
    poll(lambda: log_has(worker.log_path, stopped), 120, "the worker to stop the run")
    assert time.time() - started < LEASE + HEARTBEAT + SLACK
    gone = f"run {run_id} attempt 1: lease lost; stopped without further writes"
    poll(lambda: log_has(worker.log_path, gone), 30, "the training to end")
    run = fleet.run(run_id)
    assert (run.status, run.attempt) == ("running", 1) and run.epochs_done < 10_000
    assert run.lease_expires_at.timestamp() < time.time()  # nobody renewed it, nobody took it
    cancel_run(fleet.engine, run_id)
    assert_settled(fleet.engine, [run_id])
    assert worker.poll() is None


def test_a_device_fault_ends_the_attempt_and_the_worker_leaves_the_device(fleet) -> None:  # noqa: ANN001
    """A broken GPU's error (injected on CPU) is the machine's, not the run's: the run goes back
    to the queue and trains elsewhere; the sick worker stops consuming the queues of that
    device, so the runs after it train elsewhere too, not fail there one by one."""
    sick = fleet.worker(inject="device@2")
    (run_id,) = fleet.submit({**QUICK, "epochs": 5})
    fleet.wait_attempt(run_id, 1)
    poll(lambda: os.path.exists(fleet.marker("device")), 60, "the device fault")
    healthy = fleet.worker()
    done = fleet.wait_status(run_id, "succeeded")
    assert done.attempt == 2 and done.error is None
    assert log_has(sick.log_path, "device fault on cpu: AcceleratorError: CUDA error")
    assert log_has(sick.log_path, "device cpu is broken; no longer consuming cpu")
    later = fleet.submit(*[{**QUICK, "epochs": 2, "seed": seed} for seed in range(3)])
    names = {fleet.wait_status(other, "succeeded").worker for other in later}
    assert names == {done.worker}  # the healthy worker's
    assert_settled(fleet.engine, [run_id, *later])
    assert sick.poll() is None and healthy.poll() is None
