"""A worker stopped with a run in training: a cold shutdown (a second Ctrl-C, SIGQUIT) gives
the run back at once, and the next worker resumes it from its last checkpoint. An attempt given
back does not count toward max_attempts: the runs here may lose none (EXPQ_MAX_ATTEMPTS=1),
and each worker's lease outlasts any stall of a loaded machine."""

from __future__ import annotations

import os
import signal
import time

import pytest
from faults.fleet import QUICK
from support import assert_settled, log_has, poll

pytestmark = pytest.mark.integration

LONG_LEASE = 60.0  # a give-back cannot pass for a lease expiry
STOP_SECONDS = 20.0  # the worker's exit; Celery's own pool teardown took 1-6 s on a loaded machine
RUN = {**QUICK, "epochs": 150}  # seconds: still training when the worker is stopped
GIVEN_BACK = "attempt 1 given back: its worker was shut down (cold shutdown); queued again"
# Only MLPs on the CPU fuse; enough epochs that the group is still training when it stops.
FUSED = {"task": "sentiment", "model": "mlp", "samples": 2000, "hidden": 64, "epochs": 30,
         "data_seed": 1}  # fmt: skip


def _ctrl_c_twice(worker) -> None:  # noqa: ANN001 - the worker's Popen
    """A terminal's Ctrl-C reaches the worker's whole process group; the first starts Celery's
    warm shutdown (which waits for the runs to end), the second its cold one."""
    os.killpg(worker.pid, signal.SIGINT)
    poll(lambda: log_has(worker.log_path, "Warm shutdown"), 30, "the warm shutdown")
    os.killpg(worker.pid, signal.SIGINT)


def _sigquit(worker) -> None:  # noqa: ANN001
    os.kill(worker.pid, signal.SIGQUIT)


@pytest.mark.parametrize("fleet", ["sqlite"], indirect=True)
@pytest.mark.parametrize("stop", [_ctrl_c_twice, _sigquit], ids=["ctrl-c-twice", "sigquit"])
def test_a_cold_shutdown_gives_the_run_back_to_resume(fleet, stop, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("EXPQ_MAX_ATTEMPTS", "1")
    worker = fleet.worker(EXPQ_LEASE_SECONDS=str(LONG_LEASE))
    (run_id,) = fleet.submit(RUN)
    fleet.wait_training(run_id, epochs=2)
    stop(worker)
    stopped = time.monotonic()

    given_back = fleet.wait_status(run_id, "queued", timeout=STOP_SECONDS)
    assert time.monotonic() - stopped < LONG_LEASE / 2
    assert given_back.attempt == given_back.given_back == 1 and given_back.epochs_done >= 2
    assert given_back.error == GIVEN_BACK
    worker.wait(max(0.0, STOP_SECONDS - (time.monotonic() - stopped)))

    fleet.worker(EXPQ_LEASE_SECONDS=str(LONG_LEASE))  # its message was published again
    done = fleet.wait_status(run_id, "succeeded", timeout=180)
    assert (done.attempt, done.given_back, done.epochs_done) == (2, 1, RUN["epochs"])
    assert done.resumed_from_epoch is not None
    assert done.resumed_from_epoch >= given_back.epochs_done
    assert_settled(fleet.engine, [run_id])


@pytest.mark.parametrize("fleet", ["sqlite", "postgresql"], indirect=True)
def test_a_cold_shutdown_gives_back_every_member_of_a_fused_group(fleet, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("EXPQ_MAX_ATTEMPTS", "1")
    runs = fleet.submit(*({**FUSED, "lr": lr, "seed": i} for i, lr in enumerate((0.1, 0.2))))
    worker = fleet.worker(EXPQ_FUSE="4", EXPQ_LEASE_SECONDS=str(LONG_LEASE))
    first = fleet.wait_training(runs[0], epochs=2)
    assert fleet.run(runs[1]).group_id == first.group_id
    _sigquit(worker)
    stopped = time.monotonic()

    for run_id in runs:
        given_back = fleet.wait_status(run_id, "queued", timeout=STOP_SECONDS)
        assert (given_back.attempt, given_back.given_back, given_back.error) == (1, 1, GIVEN_BACK)
    assert time.monotonic() - stopped < LONG_LEASE / 2
    worker.wait(max(0.0, STOP_SECONDS - (time.monotonic() - stopped)))

    fleet.worker(EXPQ_FUSE="4", EXPQ_LEASE_SECONDS=str(LONG_LEASE))
    done = [fleet.wait_status(run_id, "succeeded", timeout=180) for run_id in runs]
    assert [(run.attempt, run.given_back) for run in done] == [(2, 1), (2, 1)]
    assert_settled(fleet.engine, runs)
