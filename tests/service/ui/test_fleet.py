"""The dashboard beside a real fleet: a real `expq worker` on real Redis trains a run while
`expq ui` serves it; /api/workers lists the worker and the run it trains."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from support import expq_env, poll, queue_runs, run_cli
from ui_support import UiServer


def test_a_live_worker_and_its_run_while_it_trains(
    tmp_path: Path,
    database_url: str,
    redis_url: str,
    worker_factory: Callable,
    ui_server: Callable[..., UiServer],
) -> None:
    env = expq_env(tmp_path, database_url, redis_url)
    [run_id] = queue_runs(
        database_url,
        redis_url,
        {"task": "binary", "model": "mlp", "epochs": 100_000, "samples": 64, "hidden": 8},
        experiment="ui-live",
    )
    server = ui_server(database_url, broker_url=redis_url)
    worker_factory(env)

    def trained_two_epochs() -> dict | None:
        run = server.get(f"/api/runs/{run_id}").json()
        return run if run["status"] == "running" and run["epochs_done"] >= 2 else None

    running = poll(trained_two_epochs, 60, "the run training, seen through the dashboard")
    losses = server.get(f"/api/runs/{run_id}/losses").json()
    assert losses["epochs"] >= running["epochs_done"] >= 2
    assert losses["splits"]["val"]["L"]["value"][0] > 0

    def listed() -> dict | None:
        fleet = server.get("/api/workers").json()
        workers = [w for w in fleet["workers"] if w.get("active_runs")]
        return fleet if fleet["up"] and workers else None

    fleet = poll(listed, 30, "the worker and its run in /api/workers")
    [worker] = fleet["workers"]
    assert worker["queues"] == ["auto", "cpu"] and worker["concurrency"] == 1
    assert [run["run_id"] for run in worker["active_runs"]] == [run_id]
    assert {q["queue"] for q in fleet["queues"]} == {"cpu", "gpu", "auto"}
    page = server.get("/workers")
    assert page.status == 200
    cancelled = run_cli(env, "runs", "cancel", str(run_id))
    assert cancelled.returncode == 0, cancelled.stderr
    poll(
        lambda: server.get(f"/api/runs/{run_id}").json()["status"] == "cancelled",
        30,
        "the cancelled run in the dashboard",
    )
