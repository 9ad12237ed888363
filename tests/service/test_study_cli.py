"""`expq sweep --search`, `sweep status` and `sweep stop` from the command line: a study queued
with its first trials, mistakes refused with exit 2 before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis
from support import assert_nothing_written, expq_env, run_cli

SEARCH = ["sweep", "--task", "binary", "--model", "mlp", "--epochs", "2", "--samples", "100"]


@pytest.fixture
def env(tmp_path: Path, embedded_broker_url: str) -> dict[str, str]:
    return expq_env(tmp_path, f"sqlite:///{tmp_path / 'expq.db'}", embedded_broker_url)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--search", "tpe", "--range", "lr=0.01:0.1"], "--search tpe needs --trials N"),
        (["--search", "tpe", "--trials", "4"], "needs something to search"),
        (["--search", "grid", "--range", "lr=0.01:0.1"], "takes lists only"),
        (["--search", "grid", "--hidden", "8,16", "--trials", "3"], "the grid has 2 points"),
        (["--search", "tpe", "--trials", "4", "--hidden", "8,0"], "--hidden 0: hidden must be"),
        (["--search", "tpe", "--trials", "4", "--range", "hidden=2.5:9"], "whole bounds"),
        (["--search", "tpe", "--trials", "4", "--range", "lr=0.01:200"], "--range lr: lr must"),
        (["--search", "tpe", "--trials", "4", "--hidden", "8,16", "--random", "3"], "--random"),
        (["--search", "tpe", "--trials", "4", "--hidden", "8,16", "--seeds", "3"], "--seeds"),
        (["--search", "tpe", "--trials", "4", "--hidden", "8", "--objective", "task"], "numeric"),
        (["--search", "tpe", "--trials", "4", "--hidden", "8,16", "--objective", "lr:up"], "min"),
        (["--search", "tpe", "--trials", "4", "--hidden", "8,16", "--device", "cpu,auto"], "one"),
        (["--hidden", "8,16", "--trials", "4"], "--trials goes with --search"),
        (["--hidden", "8,16", "--prune", "asha", "--prune-reduction", "2"], "goes with --search"),
        (
            ["--search", "random", "--trials", "2", "--hidden", "8,16", "--prune-reduction", "2"],
            "--prune-min-epochs and --prune-reduction go with --prune asha",
        ),
        (["--search", "tpe", "--trials", "4", "--hidden", "8,16", "--search", "anneal"], "anneal"),
    ],
)
def test_a_bad_search_exits_2_and_writes_nothing(
    env: dict[str, str], tmp_path: Path, embedded_broker_url: str, args: list[str], message: str
) -> None:
    result = run_cli(env, *SEARCH, *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert_nothing_written(tmp_path, embedded_broker_url)


def test_a_study_queues_its_first_trials_and_is_seen_and_stopped(
    env: dict[str, str], embedded_broker_url: str
) -> None:
    args = ["--hidden", "8,16", "--range", "lr=0.01:0.5:log", "--search", "tpe", "--trials", "6"]
    queued = run_cli(env, *SEARCH, *args, "--parallel", "3", "--experiment", "s", "--json")
    assert queued.returncode == 0, queued.stderr
    runs = json.loads(queued.stdout)
    assert [run["trial"] for run in runs] == [0, 1, 2]
    assert all(run["params"]["hidden"] in (8, 16) and run["status"] == "queued" for run in runs)
    assert redis.Redis.from_url(embedded_broker_url).llen("auto:9") == 3  # one message each

    shown = run_cli(env, "sweep", "status", "s", "--format", "json")
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    assert {k: status[k] for k in ("experiment", "search", "objective", "direction")} == {
        "experiment": "s",
        "search": "tpe",
        "objective": "best_val_loss",
        "direction": "minimize",
    }
    assert (status["trials"], status["parallel"], status["best"]) == (6, 3, None)
    assert status["counts"] == {"succeeded": 0, "running": 0, "queued": 3, "pruned": 0, "failed": 0}
    table = run_cli(env, "sweep", "status", "s")
    assert "tpe (active)" in table.stdout and "3 of 6, 3 at once" in table.stdout

    lines = run_cli(env, "runs", "list", "--experiment", "s").stdout.splitlines()
    header = next(line for line in lines if "best (ep)" in line)
    columns = [cell.strip() for cell in header.strip("┃").split("┃")]
    rows = [line for line in lines if line.startswith("│ ")]
    cells = [
        dict(zip(columns, (c.strip() for c in row.strip("│").split("│")), strict=True))
        for row in rows
    ]
    assert sorted((int(c["id"]), c["trial"]) for c in cells) == [
        (run["id"], str(run["trial"])) for run in runs
    ]

    again = run_cli(env, *SEARCH, *args, "--experiment", "s")
    assert again.returncode == 2 and "already has a study" in again.stderr

    stopped = run_cli(env, "sweep", "stop", "s")
    assert stopped.returncode == 0 and "3 queued trials cancelled" in stopped.stdout
    after = json.loads(run_cli(env, "sweep", "status", "s", "--format", "json").stdout)
    assert after["state"] == "stopped" and after["counts"]["failed"] == 3


def test_status_of_an_experiment_without_a_study_is_exit_2(env: dict[str, str]) -> None:
    run_cli(env, *SEARCH, "--hidden", "8", "--experiment", "plain")
    result = run_cli(env, "sweep", "status", "plain")
    assert result.returncode == 2 and "has no study" in result.stderr


def test_a_metric_objective_is_maximised_unless_told(env: dict[str, str]) -> None:
    args = [*SEARCH, "--hidden", "8,16", "--search", "random", "--trials", "2", "--dry-run"]
    plan = json.loads(run_cli(env, *args, "--objective", "best_metric", "--json").stdout)
    assert (plan["objective"], plan["direction"]) == ("best_metric", "maximize")
    plan = json.loads(run_cli(env, *args, "--objective", "val_accuracy:min", "--json").stdout)
    assert (plan["objective"], plan["direction"]) == ("val_accuracy", "minimize")


def test_the_sweep_command_never_imports_torch_or_optuna(env: dict[str, str]) -> None:
    import subprocess
    import sys

    for args in (["sweep", "--help"], ["sweep", "status", "--help"]):
        result = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "service", *args],
            env=env,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr
        imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines()}
        assert "torch" not in imported and "optuna" not in imported
