"""Adaptive search on a real fleet: a study with no controller ends with exactly its N trials
whatever is killed or cut on the way: the submitter, a worker in the middle of a top-up, the
broker, the database."""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

import pytest
from faults.fleet import FAULT_ENV, ON_EACH_DATABASE, Fleet
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from study_support import trials
from support import PrivateRedis, TcpProxy, assert_settled, expq_env, log_has, poll, run_cli

pytestmark = pytest.mark.integration

EXPERIMENT = "study"
SPACE = ["--hidden", "8,16", "--range", "lr=0.01:0.5:log"]


def _sweep(fleet: Fleet, *, search: str = "tpe", n: int = 6, p: int = 2, epochs: int = 2) -> None:
    result = run_cli(
        fleet.env,
        *("sweep", "--task", "sentiment", "--model", "rnn", "--samples", "200"),
        *(*SPACE, "--epochs", str(epochs), "--device", "cpu", "--experiment", EXPERIMENT),
        *("--search", search, "--trials", str(n), "--parallel", str(p)),
    )
    assert result.returncode == 0, result.stderr


def _status(fleet: Fleet) -> dict:
    from service.study import study_status

    return study_status(fleet.engine, EXPERIMENT)


def _ended_with_exactly(fleet: Fleet, n: int, timeout: float = 300) -> list:
    """Wait for the study to be done; its trials, numbered 0..n-1, each settled once."""
    poll(lambda: _status(fleet)["state"] == "done", timeout, f"the study's {n} trials to end")
    rows = trials(fleet.engine, EXPERIMENT)
    assert [t.trial_number for t in rows] == list(range(n))
    assert_settled(fleet.engine, [t.run_id for t in rows])
    assert sum(_status(fleet)["counts"].values()) == n
    return rows


@ON_EACH_DATABASE
def test_a_study_runs_to_exactly_n_trials_after_its_submitter_returned(fleet: Fleet) -> None:
    """The sweep command exits once the first trials are queued; two workers (two slots each)
    finish trials at once and top the study up; nothing else drives it."""
    _sweep(fleet, n=8, p=3)
    assert len(trials(fleet.engine, EXPERIMENT)) == 3
    fleet.worker(concurrency=2)
    fleet.worker(concurrency=2)
    rows = _ended_with_exactly(fleet, 8)
    assert all(t.status == "succeeded" for t in rows)
    status = _status(fleet)
    assert status["best"]["value"] == min(t.best_val_loss for t in rows)


def test_trials_committed_but_never_published_are_sent_by_the_reaper(fleet: Fleet) -> None:
    """The submitter killed between its commit and its publish: the study and its first
    trials are in the database, no message is in the broker. The reaper's resend publishes
    them, and the study goes on."""
    from service.config import load_settings
    from service.search_space import Objective, Space
    from service.study import StudyPlan, create_study
    from service.sweep import Range

    plan = StudyPlan(
        experiment=EXPERIMENT,
        search="tpe",
        objective=Objective("best_val_loss", "minimize"),
        trials=4,
        parallel=2,
        seed=0,
        space=Space((Range("lr", 0.01, 0.5, True),), frozenset(), {"hidden": (8, 16)}),
        base_spec={"task": "sentiment", "model": "rnn", "samples": "200", "epochs": "2"},
        queue="auto",
        priority=0,
        max_attempts=load_settings().max_attempts,
    )
    create_study(fleet.engine, plan)  # committed; the process "dies" before publishing
    worker = fleet.worker(EXPQ_RESEND_AFTER_SECONDS="1")
    _ended_with_exactly(fleet, 4)
    assert log_has(worker.log_path, "2 stale runs have no message; published them again")


def _top_up_in_progress(engine) -> bool:  # noqa: ANN001
    """A transaction holds the study's row as a top-up does (FOR NO KEY UPDATE)."""
    from service.schema import Study

    with engine.connect() as connection:
        try:
            connection.execute(select(Study.study_id).with_for_update(nowait=True, key_share=True))
        except OperationalError:
            return True
        finally:
            connection.rollback()
    return False


def test_a_worker_killed_in_the_middle_of_a_top_up_loses_and_doubles_nothing(
    fleet: Fleet,
) -> None:
    """GP proposals take long enough to catch a worker inside the top-up, holding the study's
    row: kill -9 its whole process group there. The ending and the trials it was adding roll
    back together; the trial is reaped, trained again by the next worker, and the study ends
    with exactly its N trials."""
    _sweep(fleet, search="gp", n=6, p=2)
    worker = fleet.worker()
    poll(lambda: _top_up_in_progress(fleet.engine), 240, "a top-up in progress", interval=0)
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(30)
    left = [t.run_id for t in trials(fleet.engine, EXPERIMENT) if t.status == "running"]
    fleet.worker()
    rows = {t.run_id: t for t in _ended_with_exactly(fleet, 6)}
    assert all(rows[run_id].attempt == 2 for run_id in left)  # reaped, then trained again


def test_a_broker_outage_during_a_top_up_loses_no_trial(
    postgresql_url: str,
    tmp_path: Path,
    worker_factory,  # noqa: ANN001
) -> None:
    """Redis goes away while a trial trains: the worker ends it, the top-up commits the next
    trial, its publish fails (logged). Redis comes back empty; the reaper publishes the queued
    trial again and the study ends with exactly its trials."""
    redis = PrivateRedis(tmp_path / "redis").start()
    try:
        env = expq_env(
            tmp_path, postgresql_url, redis.url, **FAULT_ENV, EXPQ_RESEND_AFTER_SECONDS="1"
        )
        fleet = Fleet(postgresql_url, redis.url, env, worker_factory)
        _sweep(fleet, n=3, p=1, epochs=40)
        worker = fleet.worker()
        (first,) = trials(fleet.engine, EXPERIMENT)
        fleet.wait_training(first.run_id, epochs=1)
        redis.stop()
        poll(lambda: len(trials(fleet.engine, EXPERIMENT)) == 2, 120, "trial 1 to be added")
        poll(lambda: log_has(worker.log_path, "not published"), 60, "the failed publish")
        redis.start()
        _ended_with_exactly(fleet, 3)
    finally:
        redis.stop()


def test_a_study_survives_a_database_restart(
    postgresql_url: str,
    redis_url: str,
    tmp_path: Path,
    worker_factory,  # noqa: ANN001
) -> None:
    """The worker reaches PostgreSQL through a proxy. Mid-study the proxy refuses new
    connections and every connection of the worker is ended by the server, as a restart
    does; then it answers again. The study ends with exactly its trials."""
    real = make_url(postgresql_url)
    proxy = TcpProxy(real.port or 5432)
    proxy.open()
    name = f"expq-study-{uuid.uuid4().hex[:8]}"
    options = {**real.query, "application_name": name}
    behind = real.set(port=proxy.port, query=options).render_as_string(hide_password=False)
    env = expq_env(tmp_path, behind, redis_url, **FAULT_ENV)
    fleet = Fleet(postgresql_url, redis_url, env, worker_factory)
    admin = create_engine(postgresql_url, isolation_level="AUTOCOMMIT")
    try:
        _sweep(fleet, n=6, p=2, epochs=20)
        fleet.worker()
        poll(lambda: _status(fleet)["counts"]["succeeded"] >= 1, 240, "a first trial to end")
        proxy.close()
        ended = text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = :name"
        )
        alive = text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name")
        with admin.connect() as connection:
            assert connection.scalar(ended, {"name": name}) >= 1
            poll(lambda: connection.scalar(alive, {"name": name}) == 0, 30, "the restart")
        proxy.open()
        _ended_with_exactly(fleet, 6)
    finally:
        proxy.close()
        admin.dispose()
