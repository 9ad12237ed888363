"""The broker misbehaving: a redelivered message, a Redis that restarts with jobs queued,
a message that is not JSON. The database decides what runs, and how often."""

from __future__ import annotations

from pathlib import Path

import pytest
from faults.fleet import FAULT_ENV, QUICK, Fleet, waiting_run_ids
from support import PrivateRedis, assert_settled, expq_env, log_has, poll, read_log

pytestmark = pytest.mark.integration


def test_a_run_longer_than_the_visibility_timeout_trains_once(fleet: Fleet) -> None:
    """Redis hands the unacked message of a long run to a second worker (celery#5935): that
    worker finds the claim held and drops it; the run trains once, to the end."""
    short = {"EXPQ_VISIBILITY_TIMEOUT_SECONDS": "1"}
    workers = [fleet.worker(**short), fleet.worker(**short)]
    (run_id,) = fleet.submit({**QUICK, "epochs": 60})
    poll(
        lambda: any(log_has(w.log_path, "message dropped") for w in workers),
        60,
        "the redelivered message to be dropped",
    )
    done = fleet.wait_status(run_id, "succeeded")
    assert done.attempt == 1
    assert (
        sum(read_log(w.log_path).count(f"run {run_id} attempt 1 succeeded") for w in workers) == 1
    )
    assert_settled(fleet.engine, [run_id])


@pytest.mark.parametrize("appendonly", [False, True], ids=["no-persistence", "append-only"])
def test_queued_runs_survive_a_redis_restart(
    appendonly: bool,
    postgresql_url: str,
    tmp_path: Path,
    worker_factory,  # noqa: ANN001
) -> None:
    """A worker trains one run while three wait in Redis; Redis restarts. Without persistence
    the three messages are gone and the reaper publishes the runs again from the database;
    with an append-only file they come back by themselves. Either way each trains once."""
    redis = PrivateRedis(tmp_path / "redis", appendonly=appendonly).start()
    try:
        env = expq_env(
            tmp_path, postgresql_url, redis.url, **FAULT_ENV, EXPQ_RESEND_AFTER_SECONDS="1"
        )
        fleet = Fleet(postgresql_url, redis.url, env, worker_factory)
        worker = fleet.worker()
        first, *queued = fleet.submit({**QUICK, "epochs": 100}, *[{**QUICK, "epochs": 2}] * 3)
        fleet.wait_training(first, epochs=1)
        assert sorted(waiting_run_ids(redis.client())) == queued
        redis.restart()
        if appendonly:  # `first` trains on: nobody has taken one since (Celery may have put
            # back `first`'s own unacked message on reconnecting: the claim will drop it)
            assert set(queued) <= set(waiting_run_ids(redis.client()))
        for run_id in (first, *queued):
            assert fleet.wait_status(run_id, "succeeded").attempt == 1
        assert_settled(fleet.engine, [first, *queued])
        lost = "queue cpu: 3 runs queued, 0 messages held; published 3 stale runs again"
        assert log_has(worker.log_path, lost) is not appendonly
    finally:
        redis.stop()


class _Exploit:
    """Unpickling this runs a command: what a pickle message could do to a worker."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        import os

        return os.system, (f"touch {self.marker}",)


def test_a_pickle_message_is_refused_and_runs_nothing(fleet: Fleet, tmp_path: Path) -> None:
    from celery import Celery

    marker = tmp_path / "pwned"
    sender = Celery("attacker", broker=fleet.broker_url)
    sender.conf.update(task_serializer="pickle", accept_content=["pickle", "json"])
    sender.send_task("expq.train_run", args=[_Exploit(marker)], queue="cpu", serializer="pickle")
    worker = fleet.worker()
    (run_id,) = fleet.submit({**QUICK, "epochs": 2})
    # The pickle waits in the most urgent list, so it is normally taken first; either way the
    # worker must refuse it and go on.
    fleet.wait_status(run_id, "succeeded")
    refused = "Refusing to deserialize untrusted content of type pickle"
    poll(lambda: log_has(worker.log_path, refused), 30, "the pickle message's refusal")
    assert not marker.exists()
    assert worker.poll() is None
    assert_settled(fleet.engine, [run_id])
