"""An adaptive search as a user runs it: `expq sweep --search tpe --wait` on a real worker, the
embedded broker and SQLite, then the study seen through `sweep status` and `runs list`."""

from __future__ import annotations

import json
from pathlib import Path

from support import expq_env, run_cli


def test_a_tpe_study_is_waited_for_and_summarised(
    tmp_path: Path,
    embedded_broker_url: str,
    sqlite_url: str,
    worker_factory,  # noqa: ANN001
) -> None:
    env = expq_env(tmp_path, sqlite_url, embedded_broker_url)
    worker_factory(env, concurrency=2)
    result = run_cli(
        env,
        *("sweep", "--task", "binary", "--model", "mlp", "--epochs", "3", "--samples", "200"),
        *("--hidden", "8,16", "--range", "lr=0.01:0.5:log", "--seed", "3"),
        *("--search", "tpe", "--trials", "5", "--parallel", "2", "--experiment", "e2e"),
        *("--objective", "best_metric", "--wait", "--json"),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["state"] == "done" and status["direction"] == "maximize"
    assert status["counts"] == {"succeeded": 5, "running": 0, "queued": 0, "pruned": 0, "failed": 0}
    listed = run_cli(env, "runs", "list", "--experiment", "e2e", "--format", "json")
    runs = json.loads(listed.stdout)
    assert sorted(run["trial"] for run in runs) == [0, 1, 2, 3, 4]
    best = max(runs, key=lambda run: (run["best_metric"], -run["trial"]))
    assert status["best"] == {
        "id": best["id"],
        "trial": best["trial"],
        "value": best["best_metric"],
        "params": {"hidden": best["params"]["hidden"], "lr": best["params"]["lr"]},
    }


def test_asha_prunes_trials_of_a_study_at_its_rungs_on_a_real_worker(
    tmp_path: Path,
    embedded_broker_url: str,
    sqlite_url: str,
    worker_factory,  # noqa: ANN001
) -> None:
    env = expq_env(tmp_path, sqlite_url, embedded_broker_url)
    worker_factory(env)
    result = run_cli(
        env,
        *("sweep", "--task", "binary", "--model", "mlp", "--epochs", "9", "--samples", "200"),
        *("--range", "lr=0.001:1:log", "--search", "random", "--trials", "6"),
        *("--prune", "asha", "--prune-min-epochs", "1", "--prune-reduction", "3"),
        *("--experiment", "asha", "--wait", "--json"),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["pruner"] == "asha" and status["counts"]["pruned"] >= 1
    assert status["counts"]["succeeded"] + status["counts"]["pruned"] == 6
    listed = run_cli(env, "runs", "list", "--experiment", "asha", "--format", "json")
    for run in json.loads(listed.stdout):
        if run["status"] == "pruned":  # stopped at a rung: epoch 1 or 3 (9 is the last)
            assert "ASHA rung" in run["error"] and run["epochs_done"] in (1, 3)
        else:
            assert run["status"] == "succeeded" and run["epochs_done"] == 9
