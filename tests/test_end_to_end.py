"""CLI submit → broker → real `expq worker` process → PyTorch → SQL → CLI query.

Runs on the embedded broker with SQLite always, and on the real Redis and PostgreSQL when
EXPQ_TEST_REDIS_URL and EXPQ_TEST_DATABASE_URL are set.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select
from support import expq_env, run_cli

from service.db import get_engine, session_scope
from service.schema import Loss

SETUPS = {
    "embedded-sqlite": ("embedded_broker_url", "sqlite_url"),
    "redis-postgresql": ("redis_url", "postgresql_url"),
}
JOBS = [("sentiment", "rnn"), ("translation", "mlp"), ("captioning", "rnn")]
EPOCHS = 2


@pytest.mark.parametrize("setup", SETUPS)
def test_submitted_runs_train_on_a_real_worker(
    setup: str, request: pytest.FixtureRequest, tmp_path: Path, worker_factory
) -> None:  # noqa: ANN001
    broker_fixture, database_fixture = SETUPS[setup]
    broker_url = request.getfixturevalue(broker_fixture)
    database_url = request.getfixturevalue(database_fixture)
    env = expq_env(tmp_path, database_url, broker_url)
    worker_factory(env)

    run_ids = []
    for task, model in JOBS:
        submitted = run_cli(
            env,
            "submit",
            "--task",
            task,
            "--model",
            model,
            "--epochs",
            str(EPOCHS),
            "--samples",
            "200",
            "--experiment",
            "e2e",
            "--json",
        )
        assert submitted.returncode == 0, submitted.stderr
        run = json.loads(submitted.stdout)
        assert run["status"] == "queued"
        run_ids.append(run["id"])

    waited = run_cli(env, "runs", "wait", *map(str, run_ids), "--timeout", "180", timeout=200)
    assert waited.returncode == 0, waited.stderr

    listed = json.loads(
        run_cli(env, "runs", "list", "--experiment", "e2e", "--format", "json").stdout
    )
    assert {run["status"] for run in listed} == {"succeeded"}
    assert all(run["device"] == "cpu" and run["worker"] for run in listed)

    engine = get_engine(database_url)
    for run_id in run_ids:
        losses = json.loads(run_cli(env, "runs", "losses", str(run_id), "--format", "json").stdout)
        for epoch in range(1, EPOCHS + 1):
            for split in ("train", "val"):
                rows = [r for r in losses if r["epoch"] == epoch and r["split"] == split]
                steps = [r["timestep"] for r in rows if r["timestep"] is not None]
                assert [r for r in rows if r["timestep"] is None], (run_id, epoch, split)
                assert steps and steps == list(range(1, len(steps) + 1))
        with session_scope(engine) as session:
            stored = session.scalar(
                select(func.count()).select_from(Loss).where(Loss.run_id == run_id)
            )
        assert stored == len(losses)
