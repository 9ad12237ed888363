"""A real worker on each real broker and PostgreSQL: priorities as the worker serves them, and
`expq workers` as a user sees the fleet."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import expq_env, free_port, poll, queue_runs, run_cli, run_row

pytestmark = pytest.mark.integration

QUICK = {"task": "binary", "model": "mlp", "samples": 50, "epochs": 1}


def test_a_worker_serves_the_most_urgent_runs_first(
    postgresql_url: str,
    broker_url: str,
    tmp_path: Path,
    worker_factory,  # noqa: ANN001
) -> None:
    priorities = [0, 9, 5, 9, 1, 5, 0]
    run_ids = [
        queue_runs(postgresql_url, broker_url, QUICK, priority=priority)[0]
        for priority in priorities
    ]
    worker_factory(expq_env(tmp_path, postgresql_url, broker_url))  # one pool process
    from service.db import get_engine

    engine = get_engine(postgresql_url)

    def all_done() -> list | None:
        found = [run_row(engine, run_id) for run_id in run_ids]
        return found if all(run.status == "succeeded" for run in found) else None

    runs = poll(all_done, 120, "every run to succeed")
    served = [run.run_id for run in sorted(runs, key=lambda run: run.started_at)]
    by_urgency = sorted(run_ids, key=lambda i: (-priorities[run_ids.index(i)], i))
    assert served == by_urgency


def test_expq_workers_lists_the_live_fleet(
    postgresql_url: str,
    broker_url: str,
    tmp_path: Path,
    worker_factory,  # noqa: ANN001
) -> None:
    env = expq_env(tmp_path, postgresql_url, broker_url)
    worker_factory(env, concurrency=2)
    (run_id,) = queue_runs(postgresql_url, broker_url, {**QUICK, "epochs": 10_000})
    from service.db import get_engine

    engine = get_engine(postgresql_url)
    poll(lambda: run_row(engine, run_id).status == "running", 60, "the run to start")
    listed = json.loads(run_cli(env, "workers", "--format", "json").stdout)
    assert len(listed) == 1
    (info,) = listed
    assert info["worker"].startswith("expq-") and info["queues"] == ["auto", "cpu"]
    assert (info["concurrency"], info["device"]) == (2, "cpu")
    assert [run["run_id"] for run in info["active_runs"]] == [run_id]
    table = run_cli(env, "workers")
    assert table.returncode == 0 and info["worker"] in table.stdout and str(run_id) in table.stdout
    assert run_cli(env, "runs", "cancel", str(run_id)).returncode == 0


def test_expq_workers_with_no_fleet_or_no_broker(tmp_path: Path, broker_url: str) -> None:
    env = expq_env(tmp_path, f"sqlite:///{tmp_path / 'x.db'}", broker_url)
    empty = run_cli(env, "workers", "--timeout", "0.5", "--format", "json")
    assert empty.returncode == 0 and json.loads(empty.stdout) == []
    table = run_cli(env, "workers", "--timeout", "0.5")
    assert table.returncode == 0 and "no live workers answered within 0.5s" in table.stderr
    env["EXPQ_BROKER_URL"] = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    down = run_cli(env, "workers")
    assert down.returncode == 1 and down.stderr.startswith("Error: broker unreachable at")
    assert "hunter2" not in down.stderr


def test_each_run_names_the_worker_that_trained_it(
    postgresql_url: str,
    broker_url: str,
    tmp_path: Path,
    worker_factory,  # noqa: ANN001
) -> None:
    """Two workers on one host: the runs' worker column tells them apart, by the names
    `expq workers` lists."""
    env = expq_env(tmp_path, postgresql_url, broker_url)
    worker_factory(env)
    worker_factory(env)
    run_ids = queue_runs(
        postgresql_url, broker_url, *[{**QUICK, "epochs": 10_000, "seed": s} for s in (1, 2)]
    )
    from service.db import get_engine

    engine = get_engine(postgresql_url)
    poll(
        lambda: all(run_row(engine, run_id).status == "running" for run_id in run_ids),
        60,
        "both runs to start",
    )
    listed = json.loads(run_cli(env, "workers", "--format", "json").stdout)
    training = {info["worker"]: [run["run_id"] for run in info["active_runs"]] for info in listed}
    shown = json.loads(run_cli(env, "runs", "list", "--format", "json").stdout)
    assert len(training) == 2
    assert {run["worker"]: [run["id"]] for run in shown} == training
    for run_id in run_ids:
        assert run_cli(env, "runs", "cancel", str(run_id)).returncode == 0


def test_submit_sweep_and_cancel_through_the_cli(
    postgresql_url: str,
    broker_url: str,
    tmp_path: Path,
    worker_factory,  # noqa: ANN001
) -> None:
    """What a user does, on each broker: a sweep and a submit, trained by a worker; a cancel
    stops the long run."""
    env = expq_env(tmp_path, postgresql_url, broker_url)
    common = ["--task", "binary", "--model", "mlp", "--samples", "50", "--device", "cpu"]
    swept = run_cli(env, "sweep", *common, "--epochs", "1", "--lr", "0.01,0.1", "--json")
    assert swept.returncode == 0, swept.stderr
    long = run_cli(env, "submit", *common, "--epochs", "10000", "--priority", "9", "--json")
    assert long.returncode == 0, long.stderr
    sweep_ids = [run["id"] for run in json.loads(swept.stdout)]
    long_id = json.loads(long.stdout)["id"]
    worker_factory(env, concurrency=2)
    from service.db import get_engine

    engine = get_engine(postgresql_url)
    poll(lambda: run_row(engine, long_id).status == "running", 60, "the long run to start")
    for run_id in sweep_ids:
        poll(lambda: run_row(engine, run_id).status == "succeeded", 60, f"run {run_id}")  # noqa: B023
    assert run_cli(env, "runs", "cancel", str(long_id)).returncode == 0
    poll(lambda: run_row(engine, long_id).status == "cancelled", 30, "the cancel")
    assert run_row(engine, long_id).attempt == 1
