"""Runs and messages that cannot succeed: a time limit, malformed messages, invalid stored
specs and deterministic failures end their run at once (or are dropped) and never take the
worker down; the runs behind them train."""

from __future__ import annotations

import pytest
from faults.fleet import QUICK, Fleet
from sqlalchemy import update
from support import assert_settled, read_log

pytestmark = pytest.mark.integration


def test_a_run_past_its_time_limit_fails_with_that_reason(fleet: Fleet) -> None:
    fleet.worker()
    (run_id,) = fleet.submit({**QUICK, "epochs": 10_000, "time_limit": 1.5})
    run = fleet.wait_status(run_id, "failed")
    assert run.error == "time limit" and run.attempt == 1 and run.epochs_done < 10_000
    # Seen by the heartbeat, acted on at the next batch.
    assert 1.5 <= (run.finished_at - run.started_at).total_seconds() < 1.5 + 3
    assert_settled(fleet.engine, [run_id])


def test_poison_messages_and_runs_fail_alone(fleet: Fleet) -> None:
    from models.spec import spec_from_dict
    from service.db import session_scope
    from service.schema import Run
    from service.store import NewRun, create_run
    from workers.app import TRAIN_TASK, make_app
    from workers.dispatch import publish_run

    app = make_app(fleet.broker_url)
    for args in (["not-a-run"], [-4], [10**9], [True], [1, 2], []):
        app.send_task(TRAIN_TASK, args=args, queue="cpu")
    app.send_task("expq.no_such_task", args=[1], queue="cpu")

    spec = spec_from_dict({**QUICK, "epochs": 2, "device": "cpu"})
    corrupt = create_run(fleet.engine, spec.to_dict(), spec.params(), NewRun("faults", "cpu")).id
    with session_scope(fleet.engine) as session:
        session.execute(
            update(Run).where(Run.run_id == corrupt).values(spec={**spec.to_dict(), "hidden": -5})
        )
    garbage = create_run(fleet.engine, spec.to_dict(), spec.params(), NewRun("faults", "cpu")).id
    with session_scope(fleet.engine) as session:
        session.execute(update(Run).where(Run.run_id == garbage).values(spec=["not", "a", "spec"]))
    for run_id in (corrupt, garbage):
        publish_run(app, run_id, "cpu")
    # Its data file is not in the database: a deterministic failure, not worth a second try.
    (no_data,) = fleet.submit({**QUICK, "epochs": 2, "data": "0" * 64})
    (healthy,) = fleet.submit({**QUICK, "epochs": 2})

    worker = fleet.worker()
    fleet.wait_status(healthy, "succeeded")
    for run_id, error in (
        (corrupt, "invalid spec: hidden must be in [1, 4096]; got -5"),
        (garbage, "invalid spec: spec must be an object"),
    ):
        run = fleet.wait_status(run_id, "failed")
        assert (run.error, run.attempt, run.traceback) == (error, 1, None)
    run = fleet.wait_status(no_data, "failed")
    assert (
        run.attempt == 1 and "is not in the database" in run.error and "Traceback" in run.traceback
    )
    log = read_log(worker.log_path)
    assert "ignoring a message whose run id is not a positive integer" in log
    assert "run 1000000000: not queued; message dropped" in log
    assert "unregistered task" in log
    assert worker.poll() is None
    assert_settled(fleet.engine, [corrupt, garbage, no_data, healthy])
