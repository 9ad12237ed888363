"""A worker stopped with a run in training: a cold shutdown (a second Ctrl-C, SIGQUIT) gives
the run back at once, and the next worker resumes it from its last checkpoint."""

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
def test_a_cold_shutdown_gives_the_run_back_to_resume(fleet, stop) -> None:  # noqa: ANN001
    worker = fleet.worker(EXPQ_LEASE_SECONDS=str(LONG_LEASE))
    (run_id,) = fleet.submit(RUN)
    fleet.wait_training(run_id, epochs=2)
    stop(worker)
    stopped = time.monotonic()

    given_back = fleet.wait_status(run_id, "queued", timeout=STOP_SECONDS)
    assert time.monotonic() - stopped < LONG_LEASE / 2
    assert given_back.attempt == 1 and given_back.epochs_done >= 2
    assert given_back.error == (
        "attempt 1 lost: its worker was shut down (cold shutdown); queued again"
    )
    worker.wait(max(0.0, STOP_SECONDS - (time.monotonic() - stopped)))

    fleet.worker()  # its message was published again: no resend wait
    done = fleet.wait_status(run_id, "succeeded", timeout=180)
    assert done.attempt == 2 and done.epochs_done == RUN["epochs"]
    assert done.resumed_from_epoch is not None
    assert done.resumed_from_epoch >= given_back.epochs_done
    assert_settled(fleet.engine, [run_id])
